//! A header name with an underscore never gets past Envoy: `x_registry_gate_identity` (which an
//! upstream such as gunicorn would fold into the filter's `x-registry-gate-identity`) is
//! refused by the HCM's `headers_with_underscores_action: REJECT_REQUEST` — over HTTP/1.1 with
//! 400, over HTTP/2 by resetting the stream — on a granted private pull and on an otherwise
//! public anonymous pull alike. The registry never sees such a request, Envoy's own
//! underscore counter proves which rule refused it, and the same request without the header
//! is served right after.
//!
//! And where Envoy lets such names through (`ALLOW`, Istio's default), the filter itself
//! refuses any header spelled like its identity or trusted certificate header but for case or
//! `_`: 400 `UNSUPPORTED`, nothing forwarded, in either build.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use registry_gate_tests::expect::{assert_is_manifest_of, MANIFEST_ACCEPT};
use registry_gate_tests::{Auth, HttpVersion, Stack, StackOptions};

/// The filter's identity header spelt with underscores.
const UNDERSCORE_IDENTITY: &str = "x_registry_gate_identity";

/// Envoy's counter of requests refused for an underscore in a header name, per codec.
fn rejected_counter(version: HttpVersion) -> &'static str {
    match version {
        HttpVersion::Http1 => "http1.requests_rejected_with_underscores_in_headers",
        HttpVersion::Http2 => "http2.requests_rejected_with_underscores_in_headers",
    }
}

fn rejected_so_far(stack: &mut Stack, version: HttpVersion) -> u64 {
    let name = rejected_counter(version);
    let stats = stack
        .envoy
        .stats(&format!("^{}$", name.replace('.', "\\.")))
        .unwrap_or_else(|err| panic!("read {name}: {err}"));
    stats.get(name).copied().unwrap_or(0)
}

/// One request that would be served without the underscore header.
struct Case<'a> {
    who: &'static str,
    name: &'static str,
    auth: Auth<'a>,
}

#[test]
fn underscore_identity_header_is_rejected_before_the_filter_and_the_registry() {
    let mut stack = Stack::start();
    let alice = stack.token(
        Some("alice"),
        &["repository:team/private:pull"],
        HttpVersion::Http1,
    );
    let cases = [
        Case {
            who: "alice, granted private pull",
            name: "team/private",
            auth: Auth::Bearer(&alice),
        },
        Case {
            who: "anonymous, public pull",
            name: "library/public",
            auth: Auth::Anonymous,
        },
    ];
    for Case { who, name, auth } in cases {
        let image = stack.image(&format!("{name}:latest")).clone();
        let path = format!("/v2/{name}/manifests/latest");
        for version in HttpVersion::ALL {
            let context = format!("{who}: GET {path} over {version}");
            let upstream_before = stack.upstream_requests();
            // Envoy creates a codec's stats with its first connection: absent reads as 0 here,
            // but the count after the request must exist.
            let rejected_before = rejected_so_far(&mut stack, version);

            let outcome = stack
                .request("GET", &path, version)
                .header("Accept", MANIFEST_ACCEPT)
                .header(UNDERSCORE_IDENTITY, "user:alice")
                .auth(auth)
                .send();
            match (version, &outcome) {
                // HTTP/1.1: Envoy answers 400 itself.
                (HttpVersion::Http1, Ok(resp)) => assert_eq!(
                    resp.status,
                    400,
                    "{context}: expected Envoy's 400: {}",
                    resp.summary()
                ),
                // HTTP/2: Envoy resets the stream (curl: "stream 1 was not closed cleanly").
                (HttpVersion::Http2, Err(err)) => assert!(
                    err.contains("not closed cleanly"),
                    "{context}: expected a stream reset, got: {err}"
                ),
                (_, other) => panic!("{context}: unexpected outcome: {other:?}"),
            }
            assert_eq!(
                stack.upstream_requests(),
                upstream_before,
                "{context}: the registry received a request carrying {UNDERSCORE_IDENTITY}"
            );
            assert_eq!(
                stack.envoy.stat(rejected_counter(version)),
                rejected_before + 1,
                "{context}: Envoy's underscore rule did not count this request"
            );

            // The same request without the header is served, from the registry.
            let resp = stack
                .request("GET", &path, version)
                .header("Accept", MANIFEST_ACCEPT)
                .auth(auth)
                .send_ok();
            assert_is_manifest_of(&resp, &image, &format!("{context}, then without it"));
            assert!(
                stack.upstream_requests() > upstream_before,
                "{context}: the ordinary request did not reach the registry"
            );
        }
    }
}

#[test]
fn the_filter_refuses_lookalike_headers_when_envoy_allows_underscores() {
    let mut options = StackOptions::new("underscores-allowed");
    options.envoy_rewrites = vec![(
        "headers_with_underscores_action: REJECT_REQUEST",
        "headers_with_underscores_action: ALLOW",
    )];
    let mut stack = Stack::start_with(options);
    let alice = stack.token(
        Some("alice"),
        &["repository:team/private:pull"],
        HttpVersion::Http1,
    );
    let lookalikes = [
        UNDERSCORE_IDENTITY,
        "x-registry-gate_identity",
        "X_Registry_Gate_Identity",
    ];
    for (name, auth) in [
        ("team/private", Auth::Bearer(&alice)),
        ("library/public", Auth::Anonymous),
    ] {
        let path = format!("/v2/{name}/manifests/latest");
        for header in lookalikes {
            for version in HttpVersion::ALL {
                let context = format!("GET {path} with {header} over {version}");
                let upstream_before = stack.upstream_requests();
                let resp = stack
                    .request("GET", &path, version)
                    .header("Accept", MANIFEST_ACCEPT)
                    .header(header, "user:admin")
                    .auth(auth)
                    .send()
                    .unwrap_or_else(|err| panic!("{context}: {err}"));
                assert_eq!(resp.status, 400, "{context}: {}", resp.summary());
                let body: serde_json::Value = serde_json::from_slice(&resp.body)
                    .unwrap_or_else(|err| panic!("{context}: not JSON: {err}"));
                assert_eq!(body["errors"][0]["code"], "UNSUPPORTED", "{context}");
                assert_eq!(
                    stack.upstream_requests(),
                    upstream_before,
                    "{context}: forwarded to the registry"
                );
            }
        }
        // The request itself is fine: served without the lookalike.
        let image = stack.image(&format!("{name}:latest")).clone();
        let resp = stack
            .request("GET", &path, HttpVersion::Http1)
            .header("Accept", MANIFEST_ACCEPT)
            .auth(auth)
            .send_ok();
        assert_is_manifest_of(&resp, &image, &format!("{path} without a lookalike"));
    }
}
