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

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;

use registry_gate_tests::envoy::{Envoy, EnvoyParams};
use registry_gate_tests::http::Request;
use registry_gate_tests::stack::INSTALL_TIMEOUT;
use registry_gate_tests::{ports, Auth, HttpVersion, Stack};

/// Answers every request with `200` and its request head (lower-cased header lines) as the
/// body, one request per connection. Runs until the test process ends.
fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line.to_ascii_lowercase());
            }
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{head}",
                head.len()
            );
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    port
}

fn header_lines<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    let prefix = format!("{name}:");
    head.lines()
        .filter(|line| line.starts_with(&prefix))
        .collect()
}

#[test]
fn the_upstream_sees_one_verified_identity_and_no_token() {
    let stack = Stack::start();
    let params = EnvoyParams {
        listen_port: ports::free_port(),
        admin_port: ports::free_port(),
        registry_port: echo_server(),
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
                header_lines(&head, "x-registry-gate-identity"),
                ["x-registry-gate-identity: user:alice"],
                "{context}: {head}"
            );
            assert!(
                header_lines(&head, "authorization").is_empty(),
                "{context}: the bearer token reached the upstream: {head}"
            );
        }
        let anonymous = Request::get(format!("{base}/v2/library/public/tags/list"))
            .version(version)
            .cacert(stack.ca_cert())
            .header("x-registry-gate-identity", "user:alice")
            .send_ok();
        assert_eq!(
            header_lines(&anonymous.text(), "x-registry-gate-identity"),
            ["x-registry-gate-identity: anonymous"],
            "anonymous public pull, {version}"
        );
    }
}
