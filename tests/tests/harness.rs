//! The harness's own pieces, without the gateway: a seeded registry serves the images it was
//! given, Redis answers, the TLS material chains to its CA, and template rendering refuses
//! missing values. When one of these breaks, every gateway scenario would fail for a reason
//! that is not the gateway's; this file says so first.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use std::collections::BTreeMap;
use std::process::Command;

use registry_gate_tests::http::Request;
use registry_gate_tests::redis::Redis;
use registry_gate_tests::registry::Registry;
use registry_gate_tests::skopeo::Skopeo;
use registry_gate_tests::{envoy, oci, ports, Scenario};

#[test]
fn seeded_registry_serves_the_built_image() {
    let scenario = Scenario::new("harness-registry");
    let skopeo = Skopeo::new(scenario.path());
    let registry = Registry::start(scenario.path(), ports::free_port());
    let image = oci::build_layout(&scenario.subdir("image"), "team/private", "v1");
    registry.push(&skopeo, &image);

    let manifest = Request::get(format!(
        "http://{}/v2/team/private/manifests/v1",
        registry.host()
    ))
    .header("Accept", oci::MANIFEST_MEDIA_TYPE)
    .send_ok();
    assert_eq!(manifest.status, 200, "{}", manifest.summary());
    assert_eq!(
        manifest.header("docker-content-digest"),
        Some(image.manifest_digest.as_str()),
        "the registry must serve the manifest bytes we built: {}",
        manifest.summary()
    );

    let blob = Request::get(format!(
        "http://{}/v2/team/private/blobs/{}",
        registry.host(),
        image.layer_digest
    ))
    .send_ok();
    assert_eq!(blob.status, 200, "{}", blob.summary());
    assert!(
        String::from_utf8_lossy(&blob.body).contains(&image.file_contents),
        "layer must hold the image's marker file"
    );

    let dest = scenario.subdir("pulled");
    skopeo
        .run(&[
            "copy",
            "--src-tls-verify=false",
            "--preserve-digests",
            "--src-no-creds",
            &format!("docker://{}/team/private:v1", registry.host()),
            &format!("oci:{}:v1", dest.display()),
        ])
        .assert_success();
    oci::layout_has_image(&dest, &image).unwrap();
}

#[test]
fn redis_starts_and_answers() {
    let scenario = Scenario::new("harness-redis");
    let mut redis = Redis::start(scenario.path(), ports::free_port());
    redis.process.assert_running();
    assert!(redis.url().starts_with("redis://127.0.0.1:"));
}

#[test]
fn tls_server_certificate_chains_to_the_ca() {
    let scenario = Scenario::new("harness-tls");
    let tls = registry_gate_tests::tls::generate(&scenario.subdir("tls"));
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(&tls.ca_cert)
        .arg("-verify_ip")
        .arg("127.0.0.1")
        .arg(&tls.server_cert)
        .output()
        .expect("run openssl (make deps installs it)");
    assert!(
        out.status.success(),
        "openssl verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<String> = std::fs::read_dir(&tls.cert_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec!["ca.crt".to_owned()],
        "cert dir holds only the CA"
    );
}

#[test]
fn render_fills_every_placeholder_and_refuses_gaps() {
    let vars = BTreeMap::from([("A", "1".to_owned()), ("B", "two".to_owned())]);
    assert_eq!(
        envoy::render("x{{A}}y{{B}}z{{A}}", &vars).unwrap(),
        "x1ytwoz1"
    );
    let err = envoy::render("{{A}} {{C}} {{D}}", &vars).unwrap_err();
    assert!(err.contains("C, D"), "{err}");
    let quote = BTreeMap::from([("A", "it's".to_owned())]);
    assert!(envoy::render("'{{A}}'", &quote).is_err());

    let template =
        std::fs::read_to_string(registry_gate_tests::paths::local_envoy_template()).unwrap();
    let params = envoy::EnvoyParams {
        listen_port: 1,
        admin_port: 2,
        sidecar_port: 3,
        registry_port: 4,
        tls_cert: "/c".into(),
        tls_key: "/k".into(),
        client_ca: "/ca".into(),
        wasm: "/w.wasm".into(),
        access_log_state: true,
        snapshot_read_secret: "0123456789abcdef".into(),
        publisher_keys: vec!["11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".into()],
    };
    let rendered = envoy::render(&template, &params.vars()).unwrap();
    assert!(!rendered.contains("{{"), "placeholders left:\n{rendered}");
    assert!(rendered.contains(r#""realm":"https://127.0.0.1:1/v2/token""#));
    assert!(
        rendered.contains(r#""authorization":"0123456789abcdef""#),
        "the fetcher carries the sidecar's read secret:\n{rendered}"
    );
}
