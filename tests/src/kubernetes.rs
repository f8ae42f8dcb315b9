//! The Kubernetes manifests as the tests see them: the offline validator
//! (`envoy/kubernetes/validate.py`) run on overlays or on doctored copies, the rendered objects
//! of an overlay (as JSON), and the plain-Envoy overlay's pod: the template its ConfigMap
//! ships, its render script, and the environment and arguments of its Envoy container.
//!
//! It must never interpret the manifests beyond reading them: rendering is `kubectl
//! kustomize`'s, validation the validator's, and the pod's Envoy configuration comes from
//! running the overlay's own render script.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::paths;

/// The plain-Envoy overlay (Envoy itself as the ingress).
pub const PLAIN_ENVOY: &str = "envoy";
/// The plain-Envoy overlay with the native build (the dynamic module instead of the wasm
/// filter).
pub const PLAIN_ENVOY_NATIVE: &str = "envoy-native";
/// The Envoy Gateway overlay with the native build (an EnvoyExtensionPolicy's
/// `dynamicModule` list).
pub const ENVOY_GATEWAY_NATIVE: &str = "envoy-gateway-native";

/// The plain-Envoy overlay of the build the scenarios run against.
pub fn plain_envoy() -> &'static str {
    match paths::build() {
        paths::Build::Wasm => PLAIN_ENVOY,
        paths::Build::Native => PLAIN_ENVOY_NATIVE,
    }
}
/// The Istio overlay (a WasmPlugin on the ingress gateway).
pub const ISTIO: &str = "istio";
/// The Envoy Gateway overlay (an EnvoyExtensionPolicy).
pub const ENVOY_GATEWAY: &str = "envoy-gateway";

/// `envoy/kubernetes/overlays/<name>`.
pub fn overlay(name: &str) -> PathBuf {
    let path = paths::kubernetes_dir().join("overlays").join(name);
    assert!(path.is_dir(), "no overlay {}", path.display());
    path
}

/// One run of the validator.
#[derive(Debug)]
pub struct Validation {
    pub success: bool,
    /// stdout and stderr.
    pub output: String,
}

fn validator(args: &[&Path]) -> Command {
    let mut command = Command::new(paths::venv_python());
    command
        .arg(paths::kubernetes_dir().join("validate.py"))
        .args(args)
        .env("KUBECTL", paths::kubectl());
    command
}

/// `validate.py [PATH...]`: every overlay (and the base with each component) without paths.
pub fn validate(targets: &[&Path]) -> Validation {
    let output = validator(targets)
        .output()
        .unwrap_or_else(|err| panic!("run validate.py: {err}"));
    Validation {
        success: output.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// The rendered objects of an overlay (`kubectl kustomize`, through `validate.py --dump-json`).
pub fn render(overlay_name: &str) -> Vec<Value> {
    let dir = overlay(overlay_name);
    let output = validator(&[Path::new("--dump-json"), &dir])
        .output()
        .unwrap_or_else(|err| panic!("run validate.py --dump-json: {err}"));
    assert!(
        output.status.success(),
        "rendering {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    match serde_json::from_slice(&output.stdout) {
        Ok(Value::Array(objects)) => objects,
        other => panic!(
            "rendering {} gave no list of objects: {other:?}",
            dir.display()
        ),
    }
}

/// The one object of `kind` whose name is `name` (or, for generated ConfigMaps, starts with
/// `name-` and a hash).
pub fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = objects
        .iter()
        .filter(|obj| obj["kind"] == kind)
        .filter(|obj| {
            let this = obj["metadata"]["name"].as_str().unwrap_or_default();
            this == name
                || this
                    .strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix('-'))
                    .is_some_and(|hash| !hash.contains('-'))
        })
        .collect();
    assert_eq!(found.len(), 1, "one {kind} named {name}: {found:?}");
    found[0]
}

/// A mutable reference to the one object of `kind` named `name` (see [`find`]).
pub fn find_mut<'a>(objects: &'a mut [Value], kind: &str, name: &str) -> &'a mut Value {
    let wanted = find(objects, kind, name).clone();
    objects
        .iter_mut()
        .find(|obj| **obj == wanted)
        .unwrap_or_else(|| panic!("{kind} {name} vanished"))
}

/// An environment variable of a container, as the manifest declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvValue {
    /// `value:` (may hold `$(NAME)` references, which the kubelet expands).
    Literal(String),
    /// `valueFrom: secretKeyRef` (secret, key).
    Secret(String, String),
}

/// The plain-Envoy overlay's pod, read from the rendered manifests.
#[derive(Debug, Clone)]
pub struct PlainEnvoyPod {
    /// `envoy.yaml` of the ConfigMap the pod mounts as its template.
    pub template: String,
    /// `render-envoy.sh` of the ConfigMap the pod mounts.
    pub render_script: String,
    /// The Envoy container's `command`.
    pub command: Vec<String>,
    /// The Envoy container's `args`.
    pub args: Vec<String>,
    /// The Envoy container's `env`, in order.
    pub env: Vec<(String, EnvValue)>,
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|item| {
            item.as_str()
                .unwrap_or_else(|| panic!("not a string: {item}"))
                .to_owned()
        })
        .collect()
}

impl PlainEnvoyPod {
    pub fn from_manifests(objects: &[Value]) -> PlainEnvoyPod {
        let deployment = find(objects, "Deployment", "registry-gate-envoy");
        let spec = &deployment["spec"]["template"]["spec"];
        let container = &spec["containers"][0];
        assert_eq!(container["name"], "envoy", "{container}");
        // The ConfigMaps the pod mounts, by volume name.
        let mounted = |volume: &str| -> String {
            let volumes = spec["volumes"].as_array().expect("volumes");
            let entry = volumes
                .iter()
                .find(|v| v["name"] == volume)
                .unwrap_or_else(|| panic!("no volume {volume}"));
            entry["configMap"]["name"]
                .as_str()
                .unwrap_or_else(|| panic!("volume {volume} is no ConfigMap: {entry}"))
                .to_owned()
        };
        let config_map = |name: String| -> &Value {
            objects
                .iter()
                .find(|obj| obj["kind"] == "ConfigMap" && obj["metadata"]["name"] == *name)
                .unwrap_or_else(|| panic!("the pod mounts ConfigMap {name}, which is not rendered"))
        };
        let template = config_map(mounted("envoy-template"))["data"]["envoy.yaml"]
            .as_str()
            .expect("envoy.yaml in the template ConfigMap")
            .to_owned();
        let render_script = config_map(mounted("render"))["data"]["render-envoy.sh"]
            .as_str()
            .expect("render-envoy.sh in the render ConfigMap")
            .to_owned();
        let env = container["env"]
            .as_array()
            .expect("env")
            .iter()
            .map(|var| {
                let name = var["name"].as_str().expect("env name").to_owned();
                let value = match (&var["value"], &var["valueFrom"]["secretKeyRef"]) {
                    (Value::String(text), Value::Null) => EnvValue::Literal(text.clone()),
                    (Value::Null, Value::Object(secret)) => EnvValue::Secret(
                        secret["name"].as_str().expect("secret name").to_owned(),
                        secret["key"].as_str().expect("secret key").to_owned(),
                    ),
                    _ => panic!("env {name}: neither a value nor a secretKeyRef: {var}"),
                };
                (name, value)
            })
            .collect();
        PlainEnvoyPod {
            template,
            render_script,
            command: strings(&container["command"]),
            args: strings(&container["args"]),
            env,
        }
    }

    /// The value of Envoy's `--concurrency` argument.
    pub fn concurrency(&self) -> u32 {
        let at = self
            .args
            .iter()
            .position(|arg| arg == "--concurrency")
            .unwrap_or_else(|| panic!("no --concurrency in {:?}", self.args));
        self.args
            .get(at + 1)
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("--concurrency without a number in {:?}", self.args))
    }

    /// The container's environment as the kubelet builds it: `secrets` supplies each
    /// secretKeyRef's value (by secret name), and `$(NAME)` in a literal is replaced by an
    /// earlier variable's value (a reference to an unknown name stays as written).
    pub fn environment(&self, secrets: &BTreeMap<&str, String>) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in &self.env {
            let resolved = match value {
                EnvValue::Secret(secret, _) => secrets
                    .get(secret.as_str())
                    .unwrap_or_else(|| panic!("no value for secret {secret}"))
                    .clone(),
                EnvValue::Literal(text) => out.iter().fold(text.clone(), |text, (key, val)| {
                    text.replace(&format!("$({key})"), val)
                }),
            };
            out.insert(name.clone(), resolved);
        }
        out
    }

    /// Runs the overlay's render script (with `sh`, as the pod does) on its template with
    /// exactly `environment`; `Ok(rendered)` or `Err(stderr)`. `dir` holds the files.
    pub fn render(
        &self,
        dir: &Path,
        environment: &BTreeMap<String, String>,
    ) -> Result<String, String> {
        std::fs::create_dir_all(dir).unwrap();
        let script = dir.join("render-envoy.sh");
        let template = dir.join("envoy.yaml.template");
        let out = dir.join("envoy.yaml");
        std::fs::write(&script, &self.render_script).unwrap();
        std::fs::write(&template, &self.template).unwrap();
        let _ = std::fs::remove_file(&out);
        let output = Command::new("/bin/sh")
            .arg(&script)
            .arg(&template)
            .arg(&out)
            .env_clear()
            .envs(environment)
            .output()
            .unwrap_or_else(|err| panic!("run {}: {err}", script.display()));
        if output.status.success() {
            Ok(std::fs::read_to_string(&out).unwrap())
        } else {
            assert!(!out.exists(), "a failed render left {}", out.display());
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }
}

/// The `{{NAME}}` placeholders of a template, sorted, once each.
pub fn placeholders(template: &str) -> Vec<String> {
    let mut names: Vec<String> = template
        .split("{{")
        .skip(1)
        .filter_map(|rest| rest.split_once("}}").map(|(name, _)| name.to_owned()))
        .collect();
    names.sort();
    names.dedup();
    names
}
