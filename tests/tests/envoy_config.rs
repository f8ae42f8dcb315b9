//! Every Envoy bootstrap in the tree (`envoy/**/envoy*.yaml`) passes `envoy --mode validate`
//! once rendered with real files: a generated certificate and key, the built filter `.wasm` and
//! the bench's no-op filter `.wasm` (required: validation loads them, and a missing build fails
//! this test loudly).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use std::collections::BTreeMap;

use registry_gate_tests::{envoy, paths, ports, Scenario};

#[test]
fn every_envoy_config_in_the_tree_validates() {
    let configs = paths::envoy_configs();
    assert!(
        !configs.is_empty(),
        "no envoy*.yaml under {}/envoy",
        paths::repo_root().display()
    );
    let scenario = Scenario::new("envoy-validate");
    let tls = registry_gate_tests::tls::generate(&scenario.subdir("tls"));
    let wasm = paths::wasm();
    let params = envoy::EnvoyParams {
        listen_port: ports::free_port(),
        admin_port: ports::free_port(),
        sidecar_port: ports::free_port(),
        registry_port: ports::free_port(),
        tls_cert: tls.server_cert.clone(),
        tls_key: tls.server_key.clone(),
        client_ca: tls.ca_cert.clone(),
        wasm,
        access_log_state: true,
        snapshot_read_secret: registry_gate_tests::sidecar::random_hex(32),
    };
    let mut vars: BTreeMap<&str, String> = params.vars();
    // The request benchmark's no-op-filter config (envoy/bench/envoy-request-noop.yaml).
    vars.insert("NOOP_WASM_PATH", paths::noop_wasm().display().to_string());
    // The capsule config (envoy/capsule/envoy.yaml): client-certificate CA, Pulp's API CA and
    // content app.
    vars.insert("CLIENT_CA", tls.ca_cert.display().to_string());
    vars.insert("PULP_CA", tls.ca_cert.display().to_string());
    vars.insert("PULP_CONTENT_PORT", ports::free_port().to_string());
    let mut failures = Vec::new();
    for (i, template) in configs.iter().enumerate() {
        let rendered = scenario.file(&format!("rendered-{i}.yaml"));
        envoy::render_file(template, &vars, &rendered);
        match envoy::validate(&rendered) {
            Ok(_) => eprintln!("validated {}", template.display()),
            Err(output) => failures.push(format!(
                "{} (rendered to {}):\n{output}",
                template.display(),
                rendered.display()
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "envoy --mode validate failed for:\n{}",
        failures.join("\n\n")
    );
}
