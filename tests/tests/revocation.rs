//! Revoking a grant takes effect within a second: after a snapshot without alice's grant is
//! published, her next pull with the token she already holds fails (404 `NAME_UNKNOWN`),
//! while public pulls keep working. A grant given back works again.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use std::time::Duration;

use registry_gate_tests::expect::{assert_is_manifest_of, assert_registry_error, get_manifest};
use registry_gate_tests::wait::poll;
use registry_gate_tests::{Auth, HttpVersion, Stack};
use serde_json::json;

/// Publish → enforced, end to end (DESIGN: well under a second).
const ENFORCED_WITHIN: Duration = Duration::from_secs(1);

#[test]
fn revoked_grant_fails_the_next_pull_within_a_second() {
    let mut stack = Stack::start();
    let private = stack.image("team/private:latest").clone();
    let public = stack.image("library/public:latest").clone();

    let tokens: Vec<(HttpVersion, String)> = HttpVersion::ALL
        .iter()
        .map(|v| {
            (
                *v,
                stack.token(Some("alice"), &["repository:team/private:pull"], *v),
            )
        })
        .collect();
    for (version, token) in &tokens {
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
            &format!("alice before revocation, {version}"),
        );
    }

    let before = stack.generation();
    let revoked = stack.publish(&json!({
        "repositories": [
            {"name": "library/public", "auth_required": false},
            {"name": "team/private", "auth_required": true},
            {"name": "team/other", "auth_required": true}
        ],
        "users": {"alice": []}
    }));
    assert!(revoked.changed, "revocation must be a change: {revoked:?}");
    assert!(
        revoked.generation > before,
        "generation must advance: {before} -> {revoked:?}"
    );

    for (version, token) in &tokens {
        let outcome = poll(ENFORCED_WITHIN, || {
            let resp = get_manifest(
                &stack,
                "team/private",
                "latest",
                *version,
                Auth::Bearer(token),
            );
            if resp.status == 200 {
                Err("still served the private manifest".to_owned())
            } else {
                Ok(resp)
            }
        });
        let (resp, took) = outcome.unwrap_or_else(|err| {
            panic!(
                "alice's revoked grant still works over {version} after {ENFORCED_WITHIN:?}: {err}"
            )
        });
        eprintln!("revocation enforced over {version} after {took:?}");
        assert_registry_error(
            &resp,
            404,
            "NAME_UNKNOWN",
            &format!("alice after revocation, {version}"),
        );
    }

    for version in HttpVersion::ALL {
        let resp = get_manifest(&stack, "library/public", "latest", version, Auth::Anonymous);
        assert_is_manifest_of(
            &resp,
            &public,
            &format!("public after revocation, {version}"),
        );
    }
    let (run, _) = stack.skopeo_pull(
        "team/private:latest",
        Auth::Basic("alice", stack.password("alice")),
    );
    run.assert_failure();

    // Granting again brings access back (with a fresh token, as a client would get).
    let regranted = stack.publish(&registry_gate_tests::stack::default_snapshot());
    assert!(regranted.generation > revoked.generation, "{regranted:?}");
    for version in HttpVersion::ALL {
        let token = stack.token(Some("alice"), &["repository:team/private:pull"], version);
        let (resp, took) = poll(ENFORCED_WITHIN, || {
            let resp = get_manifest(
                &stack,
                "team/private",
                "latest",
                version,
                Auth::Bearer(&token),
            );
            if resp.status == 200 {
                Ok(resp)
            } else {
                Err(resp.summary())
            }
        })
        .unwrap_or_else(|err| panic!("re-granted access not enforced over {version}: {err}"));
        eprintln!("re-grant enforced over {version} after {took:?}");
        assert_is_manifest_of(&resp, &private, &format!("alice after re-grant, {version}"));
    }
}
