//! An anonymous client asking for a private repository gets 401 with the exact Docker
//! challenge (realm, service, scope) and never reaches the registry; skopeo without
//! credentials cannot copy it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use registry_gate_tests::expect::{assert_challenge, assert_upstream_untouched, get_manifest};
use registry_gate_tests::{Auth, HttpVersion, Stack};

#[test]
fn anonymous_private_manifest_gets_a_bearer_challenge() {
    let mut stack = Stack::start();
    let private = stack.image("team/private:latest").clone();

    for version in HttpVersion::ALL {
        let resp = assert_upstream_untouched(&mut stack, "anonymous private manifest", |s| {
            get_manifest(s, "team/private", "latest", version, Auth::Anonymous)
        });
        assert_challenge(
            &stack,
            &resp,
            "team/private",
            &format!("anonymous manifest over {version}"),
        );
        assert_ne!(
            resp.body, private.manifest,
            "private manifest leaked over {version}"
        );

        let blob = assert_upstream_untouched(&mut stack, "anonymous private blob", |s| {
            s.get(
                &format!("/v2/team/private/blobs/{}", private.layer_digest),
                version,
                Auth::Anonymous,
            )
        });
        assert_challenge(
            &stack,
            &blob,
            "team/private",
            &format!("anonymous blob over {version}"),
        );
        assert!(
            !String::from_utf8_lossy(&blob.body).contains(&private.file_contents),
            "private layer leaked over {version}"
        );
    }

    let (run, _) = stack.skopeo_pull("team/private:latest", Auth::Anonymous);
    run.assert_failure();
}
