//! Dot segments, doubled and encoded slashes cannot walk from a public repository into a
//! private one: Envoy normalises or rejects the path before the filter decides, and the
//! private manifest never leaks — over HTTP/1.1 and HTTP/2, anonymous or not granted.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use registry_gate_tests::expect::{assert_upstream_untouched, MANIFEST_ACCEPT};
use registry_gate_tests::{Auth, HttpVersion, Stack};

#[test]
fn traversal_from_public_into_private_does_not_leak() {
    let mut stack = Stack::start();
    let private = stack.image("team/private:latest").clone();
    let bob = stack.token(
        Some("bob"),
        &["repository:library/public:pull"],
        HttpVersion::Http1,
    );

    let paths = [
        "/v2/library/public/../../team/private/manifests/latest",
        "/v2/library/public/%2e%2e/%2e%2e/team/private/manifests/latest",
        "/v2/library/public/%2E%2E/%2E%2E/team/private/manifests/latest",
        "/v2/library/public/..%2f..%2fteam/private/manifests/latest",
        "/v2/library/public%2f..%2f..%2fteam%2fprivate/manifests/latest",
        "/v2/library/public/..%5c..%5cteam/private/manifests/latest",
        "//v2//team//private//manifests//latest",
        "/v2/./team/./private/manifests/latest",
        "/v2/library/public/manifests/../../../team/private/manifests/latest",
    ];
    for path in paths {
        for version in HttpVersion::ALL {
            for (who, auth) in [("anonymous", Auth::Anonymous), ("bob", Auth::Bearer(&bob))] {
                let context = format!("{who} GET {path} over {version}");
                let resp = assert_upstream_untouched(&mut stack, &context, |s| {
                    s.request("GET", path, version)
                        .path_as_is()
                        .header("Accept", MANIFEST_ACCEPT)
                        .auth(auth)
                        .send_ok()
                });
                assert_ne!(resp.status, 200, "{context}: {}", resp.summary());
                assert!(
                    resp.status < 500,
                    "{context}: a bad path must not cause a 5xx: {}",
                    resp.summary()
                );
                assert_ne!(
                    resp.body, private.manifest,
                    "{context}: private manifest leaked"
                );
                assert!(
                    !resp.text().contains(&private.config_digest),
                    "{context}: private config digest leaked: {}",
                    resp.summary()
                );
            }
        }
    }
}
