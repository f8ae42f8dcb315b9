//! `make run`: the whole gateway on this machine, for a person to try with real clients.
//!
//! Starts docker-registry, Redis, the sidecar and Envoy with the built filter (on 8443 / 9901
//! / 8081 / 5000 / 6379 when free, else random ports), seeds `library/hello` (public) and
//! `demo/private` (private, granted to user `demo`), prints ready-to-paste skopeo, podman and
//! curl commands, and runs until Ctrl-C or SIGTERM, then stops everything.
//! It must never print a password other than the demo user's, once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a demo launcher reports failure by panicking with a precise message"
)]

use std::sync::mpsc;

use registry_gate_tests::stack::PreferredPorts;
use registry_gate_tests::{Stack, StackOptions};
use serde_json::json;

fn main() {
    let mut options = StackOptions::new("demo");
    options.images = vec![
        ("library/hello".to_owned(), "latest".to_owned()),
        ("demo/private".to_owned(), "latest".to_owned()),
    ];
    options.users = vec!["demo".to_owned()];
    options.snapshot = Some(json!({
        "repositories": [
            {"name": "library/hello", "auth_required": false},
            {"name": "demo/private", "auth_required": true}
        ],
        "users": {"demo": ["demo/private"]}
    }));
    options.bcrypt_cost = 10;
    options.ports = PreferredPorts {
        listen: Some(8443),
        admin: Some(9901),
        sidecar: Some(8081),
        registry: Some(5000),
        redis: Some(6379),
    };

    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    ctrlc::set_handler(move || {
        let _ = stop_tx.send(());
    })
    .expect("install the Ctrl-C / SIGTERM handler");

    let stack = Stack::start_with(options);
    let host = stack.host();
    let cert_dir = stack.cert_dir().display().to_string();
    let ca = stack.ca_cert().display().to_string();
    let password = stack.password("demo").to_owned();
    let dir = stack.dir().display().to_string();

    println!();
    println!("registry-gate demo is up");
    println!("  registry (through Envoy + filter): https://{host}");
    println!("  token endpoint:                    {}", stack.realm());
    println!(
        "  Envoy admin:                       http://127.0.0.1:{}",
        stack.admin_port()
    );
    println!(
        "  sidecar:                           {} (GET /v1/snapshot needs the bearer secret in {})",
        stack.sidecar.url(),
        stack.sidecar.files.read_secret_file.display()
    );
    println!(
        "  upstream registry (direct):        http://{}",
        stack.registry().host()
    );
    println!("  CA certificate dir:                {cert_dir}");
    println!("  logs and state:                    {dir}");
    println!();
    println!("  user: demo   password: {password}   (granted demo/private)");
    println!();
    println!("Public image, anonymously:");
    println!(
        "  skopeo inspect --cert-dir {cert_dir} --no-creds docker://{host}/library/hello:latest"
    );
    println!("  skopeo copy --src-cert-dir {cert_dir} --src-no-creds docker://{host}/library/hello:latest oci:/tmp/hello:latest");
    println!();
    println!("Private image, as demo:");
    println!("  skopeo copy --src-cert-dir {cert_dir} --src-creds demo:{password} docker://{host}/demo/private:latest oci:/tmp/private:latest");
    println!("  podman login --cert-dir {cert_dir} -u demo -p {password} {host}");
    println!("  podman pull --cert-dir {cert_dir} {host}/demo/private:latest");
    println!(
        "  (or, without the CA dir: podman pull --tls-verify=false {host}/demo/private:latest)"
    );
    println!();
    println!("By hand with curl:");
    println!("  TOKEN=$(curl -s --cacert {ca} -u demo:{password} '{}?service=registry-gate&scope=repository:demo/private:pull' | sed 's/.*\"token\":\"\\([^\"]*\\)\".*/\\1/')", stack.realm());
    println!("  curl --cacert {ca} -H \"Authorization: Bearer $TOKEN\" -H 'Accept: application/vnd.oci.image.manifest.v1+json' https://{host}/v2/demo/private/manifests/latest");
    println!("  curl --cacert {ca} -i https://{host}/v2/demo/private/manifests/latest   # 401 with a Bearer challenge");
    println!();
    println!("Press Ctrl-C to stop.");

    let _ = stop_rx.recv();
    println!("stopping...");
    drop(stack);
    println!("stopped.");
}
