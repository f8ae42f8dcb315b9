//! A granted user pulls a private repository: skopeo with `--src-creds` (the token comes from
//! `/v2/token` through Envoy), and curl with a token over HTTP/1.1 and HTTP/2. The access log
//! records who it was.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use std::time::Duration;

use registry_gate_tests::expect::{assert_is_manifest_of, get_manifest};
use registry_gate_tests::wait::poll;
use registry_gate_tests::{oci, tokens, Auth, HttpVersion, Stack};

#[test]
fn granted_user_pulls_a_private_repository() {
    let stack = Stack::start();
    let image = stack.image("team/private:latest").clone();
    let password = stack.password("alice").to_owned();

    for version in HttpVersion::ALL {
        let token = stack.token(Some("alice"), &["repository:team/private:pull"], version);
        let claims = tokens::claims(&token);
        assert_eq!(claims["sub"], "alice", "token subject: {claims}");
        assert_eq!(claims["aud"], "registry-gate", "token audience: {claims}");

        let manifest = get_manifest(
            &stack,
            "team/private",
            "latest",
            version,
            Auth::Bearer(&token),
        );
        assert_is_manifest_of(
            &manifest,
            &image,
            &format!("alice's manifest over {version}"),
        );

        let blob = stack.get(
            &format!("/v2/team/private/blobs/{}", image.layer_digest),
            version,
            Auth::Bearer(&token),
        );
        assert_eq!(
            blob.status,
            200,
            "alice's blob over {version}: {}",
            blob.summary()
        );
        assert!(String::from_utf8_lossy(&blob.body).contains(&image.file_contents));

        // Public content stays readable with a user token.
        let public = stack.image("library/public:latest").clone();
        let manifest = get_manifest(
            &stack,
            "library/public",
            "latest",
            version,
            Auth::Bearer(&token),
        );
        assert_is_manifest_of(
            &manifest,
            &public,
            &format!("public manifest with alice's token over {version}"),
        );
    }

    let (run, dest) = stack.skopeo_pull("team/private:latest", Auth::Basic("alice", &password));
    run.assert_success();
    oci::layout_has_image(&dest, &image).unwrap();

    // The access log names the verified caller and the decision (filter state the filter
    // sets with `access_log_state`); Envoy writes the line when the stream completes, so
    // poll for it.
    let line = poll(Duration::from_secs(5), || {
        let log = stack.envoy.access_log();
        log.iter()
            .find(|l| {
                l.contains("GET /v2/team/private/manifests/latest 200")
                    && l.split_whitespace()
                        .any(|field| field == "identity=user:alice")
                    && l.split_whitespace()
                        .any(|field| field == "decision=allowed")
            })
            .cloned()
            .ok_or_else(|| format!("access log so far:\n{}", log.join("\n")))
    });
    if let Err(err) = line {
        panic!("no access-log line records alice's manifest pull of team/private: {err}");
    }
}
