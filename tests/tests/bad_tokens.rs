//! Tokens the gateway must refuse with 401, without the registry ever seeing the request:
//! forged (another key of the sidecar key's algorithm under the real `kid`), expired and wrong-audience (both
//! signed with the sidecar's real key), over HTTP/1.1 and HTTP/2. A token minted the same way
//! but valid is accepted, so each refusal is about the one thing that is wrong.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use registry_gate_tests::expect::{assert_is_manifest_of, assert_upstream_untouched, get_manifest};
use registry_gate_tests::tokens::{self, Mint, SidecarKey};
use registry_gate_tests::{Auth, HttpVersion, Stack};

#[test]
fn forged_expired_and_wrong_audience_tokens_are_refused_before_the_upstream() {
    let mut stack = Stack::start();
    let private = stack.image("team/private:latest").clone();
    let real = stack.token(
        Some("alice"),
        &["repository:team/private:pull"],
        HttpVersion::Http1,
    );
    let kid = tokens::kid(&real);
    let real_key = SidecarKey::load(&stack.sidecar.files.signing_key);

    // Control: our minting with the real key is accepted (same claims shape as the sidecar's).
    let control = real_key.mint(&Mint::like_sidecar(&kid, "alice", &["team/private"]));
    for version in HttpVersion::ALL {
        let upstream_before = stack.upstream_requests();
        let resp = get_manifest(
            &stack,
            "team/private",
            "latest",
            version,
            Auth::Bearer(&control),
        );
        assert_is_manifest_of(
            &resp,
            &private,
            &format!("control token minted with the real key, {version}"),
        );
        // The counter the refusals below are checked against does count real traffic.
        assert!(
            stack.upstream_requests() > upstream_before,
            "cluster.registry.upstream_rq_total did not count an allowed request over {version}"
        );
    }

    let forged = real_key
        .stranger()
        .mint(&Mint::like_sidecar(&kid, "alice", &["team/private"]));
    let expired = {
        let mut m = Mint::like_sidecar(&kid, "alice", &["team/private"]);
        let now = tokens::now_secs();
        m.issued_at = now - 7200;
        m.not_before = now - 7200;
        m.expires_at = now - 3600;
        real_key.mint(&m)
    };
    let wrong_audience = {
        let mut m = Mint::like_sidecar(&kid, "alice", &["team/private"]);
        m.claims.aud = "some-other-registry".to_owned();
        real_key.mint(&m)
    };
    let wrong_issuer = {
        let mut m = Mint::like_sidecar(&kid, "alice", &["team/private"]);
        m.claims.iss = "someone-else".to_owned();
        real_key.mint(&m)
    };
    let not_yet_valid = {
        let mut m = Mint::like_sidecar(&kid, "alice", &["team/private"]);
        let now = tokens::now_secs();
        m.issued_at = now + 3600;
        m.not_before = now + 3600;
        m.expires_at = now + 7200;
        real_key.mint(&m)
    };
    // The real token with one signature character altered. Not the last one: its low bits
    // are base64 padding, which a lenient decoder ignores.
    let tampered = {
        let mut chars: Vec<char> = real.chars().collect();
        let at = chars.len() - 10;
        chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
        chars.into_iter().collect::<String>()
    };
    // alg "none" with the real kid and no signature.
    let unsigned = {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(format!(r#"{{"alg":"none","kid":"{kid}","typ":"JWT"}}"#));
        let claims = real.split('.').nth(1).unwrap().to_owned();
        format!("{header}.{claims}.")
    };

    let cases = [
        ("forged (other key, real kid)", forged),
        ("expired (real key)", expired),
        ("wrong audience (real key)", wrong_audience),
        ("wrong issuer (real key)", wrong_issuer),
        ("not yet valid (real key)", not_yet_valid),
        ("tampered signature", tampered),
        ("alg none", unsigned),
    ];
    for (name, token) in &cases {
        for version in HttpVersion::ALL {
            for path in [
                "/v2/team/private/manifests/latest".to_owned(),
                format!("/v2/team/private/blobs/{}", private.layer_digest),
                "/v2/library/public/manifests/latest".to_owned(),
            ] {
                let context = format!("{name} token, GET {path}, {version}");
                let resp = assert_upstream_untouched(&mut stack, &context, |s| {
                    s.request("GET", &path, version)
                        .header("Accept", registry_gate_tests::expect::MANIFEST_ACCEPT)
                        .auth(Auth::Bearer(token))
                        .send_ok()
                });
                assert_eq!(resp.status, 401, "{context}: {}", resp.summary());
                assert_ne!(
                    resp.body, private.manifest,
                    "{context}: private manifest leaked"
                );
            }
        }
    }
}
