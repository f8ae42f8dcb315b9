//! The Kubernetes manifests (`envoy/kubernetes`), checked without a cluster:
//!
//! - every overlay, and the base with each component, renders and validates
//!   (`validate.py`: kubernetes-validate --strict for core kinds, the upstream CRD schemas for
//!   WasmPlugin and EnvoyExtensionPolicy);
//! - the validator refuses doctored copies of the rendered overlays: a typo'd field, a wrong
//!   type, a value outside a CRD enum, an unknown kind, a CRD kind at a version it lacks;
//! - the filter configuration each overlay carries is one the filter accepts, and its
//!   `fetcher` names the cluster the platform provides;
//! - the plain-Envoy overlay ships `envoy/ingress/envoy.yaml` byte for byte, its pod renders
//!   it from its own environment into a configuration `envoy --mode validate` accepts, and a
//!   missing variable stops the pod before Envoy starts;
//! - end to end: Envoy runs what that pod renders (the HTTP filter only, the pod's
//!   `--concurrency`, no bootstrap extension) against the sidecar, Redis and docker-registry,
//!   and skopeo pulls through it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use std::collections::BTreeMap;

use registry_gate_core::config::Settings;
use registry_gate_tests::kubernetes::{
    self, find, find_mut, placeholders, plain_envoy, PlainEnvoyPod, ENVOY_GATEWAY,
    ENVOY_GATEWAY_NATIVE, ISTIO, PLAIN_ENVOY,
};
use registry_gate_tests::paths::Build;
use registry_gate_tests::{envoy, oci, paths, Auth, Scenario, Stack, StackOptions};
use serde_json::{json, Value};

/// The placeholder the CRD overlays carry for the sidecar's read secret (substituted at
/// install time: README.md, "Kubernetes").
const READ_SECRET_PLACEHOLDER: &str = "${REGISTRY_GATE_READ_SECRET}";
const PUBLISHER_KEY_PLACEHOLDER: &str = "${REGISTRY_GATE_PUBLISHER_KEY}";
/// A publisher key, for the manifests' placeholders.
const PUBLISHER_KEY: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

#[test]
fn every_overlay_and_component_validates() {
    let run = kubernetes::validate(&[]);
    assert!(run.success, "validate.py failed:\n{}", run.output);
    for expected in [
        "overlays/envoy: apps/v1 Deployment registry-gate/registry-gate-envoy [kubernetes-validate]",
        "overlays/istio: extensions.istio.io/v1alpha1 WasmPlugin istio-system/registry-gate [crd-schema]",
        "overlays/envoy-gateway: gateway.envoyproxy.io/v1alpha1 EnvoyExtensionPolicy registry-gate/registry-gate [crd-schema]",
        "overlays/envoy-native: apps/v1 Deployment registry-gate/registry-gate-envoy [kubernetes-validate]",
        "overlays/envoy-gateway-native: gateway.envoyproxy.io/v1alpha1 EnvoyExtensionPolicy registry-gate/registry-gate [crd-schema]",
        "base+components/redis-sentinel: apps/v1 StatefulSet registry-gate/registry-gate-redis [kubernetes-validate]",
        "base+components/external-redis: apps/v1 Deployment registry-gate/registry-gate-sidecar [kubernetes-validate]",
        " 0 invalid",
    ] {
        assert!(
            run.output.contains(expected),
            "no `{expected}` in:\n{}",
            run.output
        );
    }
}

/// One doctored copy of an overlay's rendered objects.
struct Doctored {
    name: &'static str,
    overlay: &'static str,
    doctor: fn(&mut Vec<Value>),
    /// What the validator must say.
    refusal: &'static str,
}

const DOCTORED: &[Doctored] = &[
    Doctored {
        name: "a typo'd container field",
        overlay: PLAIN_ENVOY,
        doctor: |objects| {
            let deployment = find_mut(objects, "Deployment", "registry-gate-envoy");
            deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] =
                json!("Always");
        },
        refusal: "'imagePullPolcy' was unexpected",
    },
    Doctored {
        name: "replicas as a string",
        overlay: PLAIN_ENVOY,
        doctor: |objects| {
            find_mut(objects, "Deployment", "registry-gate-sidecar")["spec"]["replicas"] =
                json!("two");
        },
        refusal: "'two' is not of type 'integer'",
    },
    Doctored {
        name: "a typo'd CronJob field",
        overlay: ISTIO,
        doctor: |objects| {
            let job = &mut find_mut(objects, "CronJob", "registry-gate-sync")["spec"]
                ["jobTemplate"]["spec"];
            let limit = job.as_object_mut().unwrap().remove("backoffLimit").unwrap();
            job["backofLimit"] = limit;
        },
        refusal: "'backofLimit' was unexpected",
    },
    Doctored {
        name: "an unknown kind",
        overlay: ISTIO,
        doctor: |objects| {
            objects.push(json!({
                "apiVersion": "networking.istio.io/v1",
                "kind": "VirtualService",
                "metadata": {"name": "registry-gate"},
                "spec": {"hosts": ["registry.example.com"]}
            }));
        },
        refusal: "unknown kind VirtualService (networking.istio.io/v1)",
    },
    Doctored {
        name: "a WasmPlugin field the CRD lacks",
        overlay: ISTIO,
        doctor: |objects| {
            find_mut(objects, "WasmPlugin", "registry-gate")["spec"]["vmId"] = json!("x");
        },
        refusal: "'vmId' was unexpected",
    },
    Doctored {
        name: "a WasmPlugin failStrategy outside the enum",
        overlay: ISTIO,
        doctor: |objects| {
            find_mut(objects, "WasmPlugin", "registry-gate")["spec"]["failStrategy"] =
                json!("FAIL_SOMETIMES");
        },
        refusal: "'FAIL_SOMETIMES' is not one of ['FAIL_CLOSE', 'FAIL_OPEN', 'FAIL_RELOAD']",
    },
    Doctored {
        name: "a WasmPlugin at a version the CRD does not serve",
        overlay: ISTIO,
        doctor: |objects| {
            find_mut(objects, "WasmPlugin", "registry-gate")["apiVersion"] =
                json!("extensions.istio.io/v1");
        },
        refusal: "unknown kind WasmPlugin (extensions.istio.io/v1)",
    },
    Doctored {
        name: "an EnvoyExtensionPolicy code type Envoy Gateway lacks",
        overlay: ENVOY_GATEWAY,
        doctor: |objects| {
            find_mut(objects, "EnvoyExtensionPolicy", "registry-gate")["spec"]["wasm"][0]["code"]
                ["type"] = json!("Docker");
        },
        refusal: "'Docker' is not one of ['HTTP', 'Image', 'ConfigMap']",
    },
    Doctored {
        name: "an EnvoyExtensionPolicy failOpen as a string",
        overlay: ENVOY_GATEWAY,
        doctor: |objects| {
            find_mut(objects, "EnvoyExtensionPolicy", "registry-gate")["spec"]["wasm"][0]
                ["failOpen"] = json!("no");
        },
        refusal: "'no' is not of type 'boolean'",
    },
    Doctored {
        name: "an EnvoyExtensionPolicy without a name",
        overlay: ENVOY_GATEWAY,
        doctor: |objects| {
            let policy = find_mut(objects, "EnvoyExtensionPolicy", "registry-gate");
            policy["metadata"].as_object_mut().unwrap().remove("name");
        },
        refusal: "'name' is a required property",
    },
];

#[test]
fn the_validator_refuses_doctored_manifests() {
    let scenario = Scenario::new("k8s-doctored");
    let mut rendered = BTreeMap::new();
    for overlay in [PLAIN_ENVOY, ISTIO, ENVOY_GATEWAY] {
        // The undoctored dump validates: each refusal below is the doctoring's.
        let objects = kubernetes::render(overlay);
        let file = scenario.file(&format!("{overlay}.json"));
        std::fs::write(&file, Value::Array(objects.clone()).to_string()).unwrap();
        let run = kubernetes::validate(&[&file]);
        assert!(run.success, "undoctored {overlay} refused:\n{}", run.output);
        rendered.insert(overlay, objects);
    }
    // One validator run over every doctored copy: each is reported under its own file name.
    let files: Vec<_> = DOCTORED
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let mut objects = rendered[row.overlay].clone();
            (row.doctor)(&mut objects);
            let file = scenario.file(&format!("doctored-{i}.json"));
            std::fs::write(&file, Value::Array(objects).to_string()).unwrap();
            file
        })
        .collect();
    let run = kubernetes::validate(&files.iter().map(|f| f.as_path()).collect::<Vec<_>>());
    assert!(!run.success, "doctored manifests passed:\n{}", run.output);
    for (row, file) in DOCTORED.iter().zip(&files) {
        // The FAIL lines of this file, each with its indented problems.
        let label = format!("FAIL {}: ", file.display());
        let mut failures: Vec<String> = Vec::new();
        let mut in_block = false;
        for line in run.output.lines() {
            if line.starts_with("     ") {
                if let (true, Some(block)) = (in_block, failures.last_mut()) {
                    block.push_str(line);
                }
            } else {
                in_block = line.starts_with(&label);
                if in_block {
                    failures.push(line.to_owned());
                }
            }
        }
        assert!(
            failures.len() == 1 && failures[0].contains(row.refusal),
            "{}: not refused with `{}` (and nothing else): {failures:#?}",
            row.name,
            row.refusal
        );
        eprintln!("refused: {}", row.name);
    }
}

/// Parses a filter configuration as the filter does and returns its elected fetcher's
/// cluster and authority.
fn elected_fetcher(overlay: &str, config: &str) -> (String, String) {
    let settings = Settings::from_json(config.as_bytes())
        .unwrap_or_else(|err| panic!("{overlay}: the filter refuses its configuration: {err:?}"));
    let elected = settings
        .elected_fetcher
        .unwrap_or_else(|| panic!("{overlay}: no `fetcher` object: nothing would fetch snapshots"));
    (elected.fetcher.cluster, elected.fetcher.authority)
}

/// `<name>.<namespace>.svc.cluster.local` and the port of the sidecar's Service.
fn sidecar_service(objects: &[Value]) -> (String, u64) {
    let service = find(objects, "Service", "registry-gate-sidecar");
    let host = format!(
        "{}.{}.svc.cluster.local",
        service["metadata"]["name"].as_str().unwrap(),
        service["metadata"]["namespace"].as_str().unwrap()
    );
    (host, service["spec"]["ports"][0]["port"].as_u64().unwrap())
}

#[test]
fn every_overlay_carries_a_filter_configuration_the_filter_accepts() {
    let secret = registry_gate_tests::sidecar::random_hex(32);

    let objects = kubernetes::render(plain_envoy());
    let pod = PlainEnvoyPod::from_manifests(&objects);
    let environment = pod.environment(&BTreeMap::from([
        ("registry-gate-read-secret", secret.clone()),
        ("registry-gate-publisher-key", PUBLISHER_KEY.to_owned()),
    ]));
    let (cluster, authority) =
        elected_fetcher(plain_envoy(), &environment["ELECTED_FILTER_CONFIG"]);
    let (sidecar_host, sidecar_port) = sidecar_service(&objects);
    assert!(
        pod.template.contains(&format!("- name: {cluster}\n")),
        "the fetcher's cluster {cluster} is not in the pod's template"
    );
    assert_eq!(authority, sidecar_host);
    assert_eq!(environment["SIDECAR_HOST"], sidecar_host);
    assert_eq!(environment["SIDECAR_PORT"], sidecar_port.to_string());
    assert!(
        environment["ELECTED_FILTER_CONFIG"].contains(&secret),
        "the read secret is not expanded into the fetcher's authorization"
    );

    // Istio names the cluster of an in-mesh Service outbound|<port>||<host>.
    let objects = kubernetes::render(ISTIO);
    let plugin = find(&objects, "WasmPlugin", "registry-gate");
    let config = plugin["spec"]["pluginConfig"]
        .to_string()
        .replace(READ_SECRET_PLACEHOLDER, &secret)
        .replace(PUBLISHER_KEY_PLACEHOLDER, PUBLISHER_KEY);
    let (cluster, authority) = elected_fetcher(ISTIO, &config);
    let (sidecar_host, sidecar_port) = sidecar_service(&objects);
    assert_eq!(cluster, format!("outbound|{sidecar_port}||{sidecar_host}"));
    assert_eq!(authority, sidecar_host);

    // Envoy Gateway names the cluster of a route rule httproute/<ns>/<route>/rule/<index>:
    // the wasm filter's policy, and the native module's (`dynamicModule`).
    for (overlay, filters) in [
        (ENVOY_GATEWAY, "wasm"),
        (ENVOY_GATEWAY_NATIVE, "dynamicModule"),
    ] {
        let objects = kubernetes::render(overlay);
        let policy = find(&objects, "EnvoyExtensionPolicy", "registry-gate");
        let route = &policy["spec"]["targetRefs"][0];
        assert_eq!(route["kind"], "HTTPRoute");
        let config = policy["spec"][filters][0]["config"]
            .to_string()
            .replace(READ_SECRET_PLACEHOLDER, &secret)
            .replace(PUBLISHER_KEY_PLACEHOLDER, PUBLISHER_KEY);
        let (cluster, authority) = elected_fetcher(overlay, &config);
        let (sidecar_host, _) = sidecar_service(&objects);
        assert_eq!(
            cluster,
            format!(
                "httproute/{}/{}/rule/0",
                policy["metadata"]["namespace"].as_str().unwrap(),
                route["name"].as_str().unwrap()
            ),
            "{overlay}"
        );
        assert_eq!(authority, sidecar_host, "{overlay}");
    }
}

#[test]
fn the_plain_envoy_pod_renders_the_shipped_template_into_a_valid_configuration() {
    let objects = kubernetes::render(plain_envoy());
    let pod = PlainEnvoyPod::from_manifests(&objects);
    let template = paths::ingress_envoy_template();
    let shipped = std::fs::read_to_string(&template).unwrap();
    assert!(
        pod.template == shipped,
        "the ConfigMap's envoy.yaml differs from {}",
        template.display()
    );
    assert!(
        pod.command.first().map(String::as_str) == Some("/bin/sh")
            && pod
                .command
                .iter()
                .any(|arg| arg.ends_with("render-envoy.sh"))
            && pod.args.first().map(String::as_str) == Some("envoy"),
        "the pod does not render its configuration and exec Envoy: {:?} {:?}",
        pod.command,
        pod.args
    );
    assert!(pod.concurrency() > 1, "one worker elects nothing");

    // The pod's own environment, with the files only the pod has replaced by local ones.
    let scenario = Scenario::new("k8s-plain-envoy");
    let tls = registry_gate_tests::tls::generate(&scenario.subdir("tls"));
    let secret = registry_gate_tests::sidecar::random_hex(32);
    let mut environment = pod.environment(&BTreeMap::from([
        ("registry-gate-read-secret", secret),
        ("registry-gate-publisher-key", PUBLISHER_KEY.to_owned()),
    ]));
    let missing: Vec<String> = placeholders(&pod.template)
        .into_iter()
        .filter(|name| !environment.contains_key(name))
        .collect();
    assert!(missing.is_empty(), "the pod sets no {missing:?}");
    let mut local = vec![
        ("TLS_CERT", tls.server_cert.clone()),
        ("TLS_KEY", tls.server_key.clone()),
    ];
    match paths::build() {
        Build::Wasm => local.push(("WASM_PATH", paths::wasm())),
        Build::Native => {
            assert!(
                !environment.contains_key("WASM_PATH"),
                "the native pod still sets WASM_PATH"
            );
            assert_eq!(
                environment
                    .get("ENVOY_DYNAMIC_MODULES_SEARCH_PATH")
                    .map(String::as_str),
                Some("/etc/registry-gate/filter"),
                "Envoy does not look for the module where the pod mounts it"
            );
        }
    }
    for (name, local) in local {
        environment.insert(name.to_owned(), local.display().to_string());
    }
    let rendered = pod
        .render(&scenario.subdir("rendered"), &environment)
        .unwrap_or_else(|err| panic!("the pod's render script failed: {err}"));
    assert!(
        !rendered.contains("{{"),
        "a placeholder survived: {rendered}"
    );
    assert!(rendered.contains("address: registry-gate-sidecar.registry-gate.svc.cluster.local"));
    let config = scenario.file("rendered/envoy.yaml");
    if let Err(output) = envoy::validate(&config) {
        panic!("envoy --mode validate refused the pod's configuration:\n{output}");
    }

    // The pod stops before Envoy starts: a variable the template needs is missing, or a value
    // is one the template's YAML cannot hold.
    for (variable, value, refusal) in [
        (
            "SIDECAR_HOST",
            None,
            "no value for placeholders: SIDECAR_HOST",
        ),
        (
            "REGISTRY_HOST",
            Some("it's"),
            "value of REGISTRY_HOST contains a quote",
        ),
    ] {
        let mut doctored = environment.clone();
        match value {
            None => doctored.remove(variable),
            Some(value) => doctored.insert(variable.to_owned(), value.to_owned()),
        };
        let err = pod
            .render(&scenario.subdir(variable), &doctored)
            .expect_err("rendered a broken environment");
        assert!(err.contains(refusal), "{variable}: {err}");
    }
}

#[test]
fn skopeo_pulls_through_what_the_plain_envoy_pod_runs() {
    let pod = PlainEnvoyPod::from_manifests(&kubernetes::render(plain_envoy()));
    let mut options = StackOptions::new("k8s_plain_envoy");
    options.elected_fetcher = true;
    options.concurrency = pod.concurrency();
    let mut stack = Stack::start_with(options);

    // What Envoy runs is what the pod's script renders from the ConfigMap's template with
    // this stack's values.
    let environment: BTreeMap<String, String> = stack
        .envoy
        .params
        .vars()
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    let rendered = pod
        .render(&stack.dir().join("pod-render"), &environment)
        .unwrap_or_else(|err| panic!("the pod's render script failed: {err}"));
    let running = std::fs::read_to_string(&stack.envoy.config).unwrap();
    assert!(
        rendered == running,
        "Envoy runs {} but the pod would render something else",
        stack.envoy.config.display()
    );
    assert!(
        !running.contains("bootstrap_extensions"),
        "the ingress configuration has a bootstrap extension"
    );

    let (run, dest) = stack.skopeo_pull(
        "team/private:latest",
        Auth::Basic("alice", stack.password("alice")),
    );
    run.assert_success();
    oci::layout_has_image(&dest, stack.image("team/private:latest")).unwrap();
    let (run, dest) = stack.skopeo_pull("library/public:latest", Auth::Anonymous);
    run.assert_success();
    oci::layout_has_image(&dest, stack.image("library/public:latest")).unwrap();
    let (run, _) = stack.skopeo_pull(
        "team/private:latest",
        Auth::Basic("bob", stack.password("bob")),
    );
    run.assert_failure();

    match paths::build() {
        Build::Wasm => {
            // One worker of the pod's four fetched the snapshots.
            let acquired: u64 = stack
                .envoy
                .stats("fetcher_lease")
                .unwrap()
                .iter()
                .filter(|(name, _)| name.ends_with("fetcher_lease.acquired"))
                .map(|(_, value)| value)
                .sum();
            assert_eq!(acquired, 1, "exactly one worker took the fetcher lease");
        }
        Build::Native => {
            // The module fetched and installed the snapshot once, for all four workers.
            let (installs, published) = stack.envoy.snapshot_lines(stack.generation());
            assert_eq!(installs.len(), 1, "one install per process: {installs:?}");
            assert!(published.is_some(), "the module published what it fetched");
        }
    }
}
