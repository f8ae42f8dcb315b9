//! What reaches the upstream: exactly one identity header, the one the filter verified, and
//! no `Authorization` (removed by the registry route, `authorization_removed_by_route`), over
//! HTTP/1.1 and HTTP/2, whatever identity header the client sent. A second Envoy, rendered
//! from the same local template, forwards to an echo server that answers with the request
//! head it received.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use registry_gate_tests::envoy::{Envoy, EnvoyParams};
use registry_gate_tests::http::Request;
use registry_gate_tests::stack::INSTALL_TIMEOUT;
use registry_gate_tests::{echo, ports, Auth, HttpVersion, Stack};

#[test]
fn the_upstream_sees_one_verified_identity_and_no_token() {
    let stack = Stack::start();
    let params = EnvoyParams {
        listen_port: ports::free_port(),
        admin_port: ports::free_port(),
        registry_port: echo::start(),
        ..stack.envoy.params.clone()
    };
    let mut envoy = Envoy::start(
        &stack.scenario.subdir("envoy-echo"),
        &registry_gate_tests::paths::local_envoy_template(),
        params,
    );
    envoy.wait_for_generation(stack.generation(), INSTALL_TIMEOUT);
    let base = format!("https://127.0.0.1:{}", envoy.params.listen_port);

    for version in HttpVersion::ALL {
        let token = stack.token(Some("alice"), &["repository:team/private:pull"], version);
        for (case, client_identity) in [
            ("no identity header from the client", None),
            ("the client claims to be root", Some("user:root")),
        ] {
            let context = format!("{case}, {version}");
            let mut request = Request::get(format!("{base}/v2/team/private/manifests/latest"))
                .version(version)
                .cacert(stack.ca_cert())
                .auth(Auth::Bearer(&token));
            if let Some(claimed) = client_identity {
                request = request.header("x-registry-gate-identity", claimed);
            }
            let resp = request.send_ok();
            assert_eq!(resp.status, 200, "{context}: {}", resp.summary());
            let head = resp.text();
            assert_eq!(
                echo::header_lines(&head, "x-registry-gate-identity"),
                ["x-registry-gate-identity: user:alice"],
                "{context}: {head}"
            );
            assert!(
                echo::header_lines(&head, "authorization").is_empty(),
                "{context}: the bearer token reached the upstream: {head}"
            );
        }
        echo::assert_forged_identity_becomes_anonymous(&base, stack.ca_cert(), version);
    }
}
