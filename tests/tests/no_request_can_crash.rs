//! No request can crash the filter. Header values that are not UTF-8 (Envoy passes such bytes
//! through) once panicked inside the SDK's header read, trapped the VM and turned every
//! request on that worker into a 503 until Envoy reloaded it. Here such requests, over
//! HTTP/1.1 and HTTP/2, get their ordinary refusal; no worker VM is reloaded or restarted
//! (Envoy's `vm_reload` stats and the filter's own `vm_starts` stay put); and the ordinary
//! requests right after them are all served.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use registry_gate_tests::expect::{assert_is_manifest_of, assert_registry_error, get_manifest};
use registry_gate_tests::paths;
use registry_gate_tests::{Auth, HttpVersion, Stack};

/// Hostile bytes in one header, and what the client must get back.
struct Attack {
    case: &'static str,
    path: &'static str,
    header: &'static str,
    value: &'static [u8],
    status: u16,
    code: &'static str,
}

const PRIVATE: &str = "/v2/team/private/manifests/latest";
const PUBLIC: &str = "/v2/library/public/tags/list";

const ATTACKS: [Attack; 6] = [
    Attack {
        case: "bearer token of bytes that are not UTF-8",
        path: PRIVATE,
        header: "authorization",
        value: b"Bearer \xff\xfe",
        status: 401,
        code: "UNAUTHORIZED",
    },
    Attack {
        case: "scheme that is not UTF-8",
        path: PRIVATE,
        header: "authorization",
        value: b"B\xe9arer abc.def.ghi",
        status: 401,
        code: "UNAUTHORIZED",
    },
    Attack {
        case: "truncated UTF-8 in a token",
        path: PUBLIC,
        header: "authorization",
        value: b"Bearer abc.\xc3",
        status: 401,
        code: "UNAUTHORIZED",
    },
    Attack {
        case: "API-version header that is not UTF-8",
        path: "/v1/search?q=team",
        header: "docker-distribution-api-version",
        value: b"registry/2.\xff",
        status: 200,
        code: "",
    },
    Attack {
        case: "identity header that is not UTF-8",
        path: PUBLIC,
        header: "x-registry-gate-identity",
        value: b"user:\xffroot",
        status: 200,
        code: "",
    },
    Attack {
        case: "method override that is not UTF-8",
        path: PUBLIC,
        header: "x-http-method-override",
        value: b"DEL\xffTE",
        status: 400,
        code: "UNSUPPORTED",
    },
];

#[test]
fn hostile_header_bytes_get_refusals_and_every_worker_keeps_serving() {
    let mut stack = Stack::start();
    let public = stack.image("library/public:latest").clone();
    let before = stack.envoy.filter_restarts();
    assert!(
        before.iter().any(|count| *count > 0),
        "the filter counts its starts: {before:?}"
    );

    for version in HttpVersion::ALL {
        // Several rounds on fresh connections, so the requests land on every worker.
        for round in 0..4 {
            for attack in &ATTACKS {
                let context = format!("{} over {version}, round {round}", attack.case);
                let resp = stack
                    .request("GET", attack.path, version)
                    .header_bytes(attack.header, attack.value)
                    .send()
                    .unwrap_or_else(|err| panic!("{context}: no response: {err}"));
                if attack.code.is_empty() {
                    assert_eq!(resp.status, attack.status, "{context}: {}", resp.summary());
                } else {
                    assert_registry_error(&resp, attack.status, attack.code, &context);
                }
            }
        }
    }

    assert_eq!(
        stack.envoy.filter_restarts(),
        before,
        "(wasm: vm_reload, vm_reload_success, vm_starts; native: starts, panics): no VM \
         trapped or restarted, no hook panicked"
    );
    // Every worker still serves: many fresh connections, each answered by the registry.
    for version in HttpVersion::ALL {
        for round in 0..8 {
            let resp = get_manifest(&stack, "library/public", "latest", version, Auth::Anonymous);
            assert_is_manifest_of(
                &resp,
                &public,
                &format!("ordinary pull {round} over {version}"),
            );
        }
    }
    assert_eq!(
        stack
            .envoy
            .stat(&paths::build().stat("registry_gate.decisions.internal")),
        0,
        "no host call failed"
    );
}
