//! With the sidecar killed (no token endpoint, no snapshot source), Envoy keeps enforcing the
//! last snapshot: public and granted pulls keep working, forbidden ones stay forbidden.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use std::time::{Duration, Instant};

use registry_gate_tests::expect::{
    assert_challenge, assert_is_manifest_of, assert_registry_error, get_manifest,
};
use registry_gate_tests::{oci, Auth, HttpVersion, Stack};

/// How long pulls are checked after the kill: several fetcher retry periods (250 ms) and
/// well past any "no snapshot" fallback that a lost source could trigger.
const OBSERVE_FOR: Duration = Duration::from_secs(3);

#[test]
fn pulls_keep_working_on_the_last_snapshot_when_the_sidecar_dies() {
    let mut stack = Stack::start();
    let private = stack.image("team/private:latest").clone();
    let public = stack.image("library/public:latest").clone();
    let alice: Vec<(HttpVersion, String)> = HttpVersion::ALL
        .iter()
        .map(|v| {
            (
                *v,
                stack.token(Some("alice"), &["repository:team/private:pull"], *v),
            )
        })
        .collect();
    let bob = stack.token(
        Some("bob"),
        &["repository:team/private:pull"],
        HttpVersion::Http1,
    );

    stack.kill_sidecar();
    let token_down = stack.token_response(
        None,
        &["repository:library/public:pull"],
        HttpVersion::Http1,
    );
    assert!(
        token_down.status >= 500,
        "the token endpoint must be down now: {}",
        token_down.summary()
    );

    let start = Instant::now();
    let mut rounds = 0;
    while rounds < 2 || start.elapsed() < OBSERVE_FOR {
        rounds += 1;
        for (version, token) in &alice {
            let resp = get_manifest(
                &stack,
                "team/private",
                "latest",
                *version,
                Auth::Bearer(token),
            );
            assert_is_manifest_of(
                &resp,
                &private,
                &format!("alice, sidecar down {:?}, {version}", start.elapsed()),
            );
            let resp = get_manifest(
                &stack,
                "library/public",
                "latest",
                *version,
                Auth::Anonymous,
            );
            assert_is_manifest_of(
                &resp,
                &public,
                &format!(
                    "anonymous public, sidecar down {:?}, {version}",
                    start.elapsed()
                ),
            );
            let resp = get_manifest(&stack, "team/private", "latest", *version, Auth::Anonymous);
            assert_challenge(
                &stack,
                &resp,
                "team/private",
                &format!("anonymous private, sidecar down, {version}"),
            );
        }
        let resp = get_manifest(
            &stack,
            "team/private",
            "latest",
            HttpVersion::Http2,
            Auth::Bearer(&bob),
        );
        assert_registry_error(&resp, 404, "NAME_UNKNOWN", "bob, sidecar down");
        std::thread::sleep(Duration::from_millis(200));
    }

    // A whole pull with a token obtained before the sidecar died.
    let (run, dest) = stack.skopeo_pull("team/private:latest", Auth::Bearer(&alice[0].1));
    run.assert_success();
    oci::layout_has_image(&dest, &private).unwrap();
    stack.envoy.process.assert_running();
}
