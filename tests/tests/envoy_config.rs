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

use registry_gate_core::token::Algorithm;
use registry_gate_tests::issuers::Issuer;
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
        publisher_keys: vec!["11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".into()],
    };
    let mut vars: BTreeMap<&str, String> = params.vars();
    // The request benchmark's configs (envoy/bench/envoy-request-*.yaml): the no-op filter,
    // the registry route (the direct response is a fixed line), jwt_authn with a real JWKS and
    // its cache.
    vars.insert("NOOP_WASM_PATH", paths::noop_wasm().display().to_string());
    vars.insert(
        "V2_ACTION",
        "route: { cluster: registry, timeout: 30s }".to_owned(),
    );
    let issuer = Issuer::generate(Algorithm::ES256).unwrap();
    vars.insert(
        "JWKS",
        serde_json::json!({"keys": [issuer.jwk()]}).to_string(),
    );
    vars.insert(
        "JWT_ISSUER",
        registry_gate_tests::sidecar::ISSUER.to_owned(),
    );
    vars.insert(
        "JWT_AUDIENCE",
        registry_gate_tests::sidecar::SERVICE.to_owned(),
    );
    vars.insert(
        "JWT_CACHE_CONFIG",
        "jwt_cache_config: { jwt_cache_size: 100 }".to_owned(),
    );
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
