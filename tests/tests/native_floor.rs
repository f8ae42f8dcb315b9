//! The pinned Envoy loads the bench's native floor (`bench/native-floor`, an Envoy 1.40
//! dynamic module with hand-written bindings) from the shipped template
//! `envoy/bench/envoy-request-native.yaml`: Envoy accepts its ABI version (`v0.2.0`) and every
//! request passes through its hooks, which read `authorization` and `:path` and set
//! `x-registry-gate-floor` — echoed back here by the route, so both reads and the write are
//! seen to happen.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use std::path::PathBuf;

use registry_gate_tests::envoy::{Envoy, EnvoyParams, Launch};
use registry_gate_tests::http::Request;
use registry_gate_tests::{paths, ports, Auth, Scenario};

/// The route's answer: a 200 carrying back the header the module set (`%REQ(…)%` is the
/// request header as the filter chain left it). Indented as the template's `{{V2_ACTION}}`.
const ECHO: &str = "direct_response: { status: 200, body: { inline_string: \"ok\" } }
                          response_headers_to_add:
                            - header: { key: x-floor-seen, value: \"%REQ(x-registry-gate-floor)%\" }";

#[test]
fn envoy_loads_the_native_floor_and_every_request_runs_through_it() {
    paths::native_floor();
    let scenario = Scenario::new("native_floor");
    let params = EnvoyParams {
        listen_port: ports::free_port(),
        admin_port: ports::free_port(),
        sidecar_port: 0,
        registry_port: 0,
        tls_cert: PathBuf::new(),
        tls_key: PathBuf::new(),
        client_ca: PathBuf::new(),
        wasm: PathBuf::new(),
        access_log_state: false,
        snapshot_read_secret: String::new(),
        publisher_keys: Vec::new(),
    };
    let launch = Launch {
        name: "envoy-native-floor".to_owned(),
        ..Launch::default()
    };
    // The shipped template with the echoing route in place of V2_ACTION (two YAML lines,
    // more than a placeholder value may hold); the harness renders the rest.
    let shipped =
        std::fs::read_to_string(paths::repo_root().join("envoy/bench/envoy-request-native.yaml"))
            .unwrap();
    assert_eq!(shipped.matches("{{V2_ACTION}}").count(), 1);
    let template = scenario.path().join("envoy-request-native-echo.yaml");
    std::fs::write(&template, shipped.replace("{{V2_ACTION}}", ECHO)).unwrap();
    let mut envoy = Envoy::start_with(scenario.path(), &template, params, &launch);
    let log = envoy.process.log();
    assert!(
        log.contains("Dynamic module ABI version v0.2.0 matched"),
        "Envoy did not accept the module's ABI version:\n{log}"
    );

    let base = format!("http://127.0.0.1:{}", envoy.params.listen_port);
    let path = "/v2/team/private/manifests/latest";
    for (auth, credential) in [(Auth::Bearer("a-token"), "1"), (Auth::Anonymous, "0")] {
        let resp = Request::get(format!("{base}{path}")).auth(auth).send_ok();
        assert_eq!(resp.status, 200, "{}", resp.summary());
        assert_eq!(
            resp.header("x-floor-seen"),
            Some(format!("{};{credential}", path.len()).as_str()),
            "the module read :path and authorization and set its header: {}",
            resp.summary()
        );
    }
    envoy.process.assert_running();
}
