//! Rotating the sidecar's signing key without downtime, exactly as README.md ("Kubernetes")
//! tells an operator to, with `envoy/kubernetes/snapshot-key.sh` against the real sidecar,
//! Redis and Envoy (the HTTP filter only, as in Kubernetes), from an EdDSA key to an ES256
//! one (`keygen`'s default) — the move an installation with an Ed25519 key makes:
//!
//! 1. the new key's public half is published in the snapshot first (`snapshot-key.sh add`);
//! 2. the sidecar is replaced by one signing with the new key (a rolling restart): tokens of
//!    both keys are honoured meanwhile — nobody is logged out;
//! 3. the old key is removed (`snapshot-key.sh remove`): its tokens are refused, the new
//!    key's keep working.
//!
//! And the script's refusals, which publish nothing: a kid already published, a kid not
//! published, a key of another kind (P-384), a wrong secret.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use std::process::{Command, Output};
use std::time::Duration;

use registry_gate_tests::expect::bearer_manifest_status;
use registry_gate_tests::sidecar::{keygen, Sidecar, SidecarExtra};
use registry_gate_tests::stack::StackOptions;
use registry_gate_tests::{paths, tokens, HttpVersion, Stack};

const INSTALLED_WITHIN: Duration = Duration::from_secs(20);
const SCOPE: &str = "repository:team/private:pull";

fn snapshot_key(args: &[&str]) -> Output {
    let script = paths::kubernetes_dir().join("snapshot-key.sh");
    Command::new("/bin/sh")
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("run {}: {err}", script.display()))
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `snapshot-key.sh` and waits until Envoy installed what it published.
fn publish_key_change(stack: &mut Stack, args: &[&str]) {
    let output = snapshot_key(args);
    assert!(
        output.status.success(),
        "snapshot-key.sh {args:?}: {}",
        text(&output)
    );
    let answer: serde_json::Value = serde_json::from_str(
        String::from_utf8_lossy(&output.stdout)
            .split_once(": ")
            .and_then(|(_, rest)| rest.split_once(": "))
            .map(|(_, json)| json.trim())
            .unwrap_or_default(),
    )
    .unwrap_or_else(|err| panic!("no publish answer in {}: {err}", text(&output)));
    assert_eq!(answer["changed"], true, "{answer}");
    let generation = answer["generation"].as_u64().expect("generation");
    // Every worker: the next request may land on any of them.
    stack
        .envoy
        .wait_for_every_worker(generation, INSTALLED_WITHIN);
}

/// The published snapshot's ETag (its generation).
fn published_etag(stack: &Stack) -> String {
    let resp = stack.sidecar.get_snapshot().unwrap();
    assert_eq!(resp.status, 200, "{}", resp.summary());
    resp.header("etag").expect("ETag").to_owned()
}

/// The `kid`s of the published snapshot.
fn published_kids(stack: &Stack) -> Vec<String> {
    let resp = stack.sidecar.get_snapshot().unwrap();
    assert_eq!(resp.status, 200, "{}", resp.summary());
    resp.json()["content"]["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|key| key["kid"].as_str().expect("kid").to_owned())
        .collect()
}

/// The `kid` a token names in its header.
fn token_kid(token: &str) -> String {
    tokens::kid(token)
}

/// The `alg` a token names in its header.
fn token_alg(token: &str) -> String {
    tokens::header(token)["alg"]
        .as_str()
        .expect("alg")
        .to_owned()
}

fn pull_status(stack: &Stack, token: &str) -> u16 {
    bearer_manifest_status(stack, "team/private", token)
}

#[test]
fn the_signing_key_rotates_without_logging_anyone_out() {
    let mut options = StackOptions::new("signing_key_rotation");
    options.elected_fetcher = true;
    options.sidecar.key_algorithm = Some("EdDSA");
    let mut stack = Stack::start_with(options);
    let url = stack.sidecar.url();
    let secret = stack
        .sidecar
        .files
        .admin_secret_file
        .to_str()
        .unwrap()
        .to_owned();

    let old_token = stack.token(Some("alice"), &[SCOPE], HttpVersion::Http1);
    let old_kid = token_kid(&old_token);
    assert_eq!(token_alg(&old_token), "EdDSA");
    assert_eq!(published_kids(&stack), vec![old_kid.clone()]);
    assert_eq!(pull_status(&stack, &old_token), 200);

    // 1. Publish the new key first — with the admin secret: the sync secret may change
    // repositories and grants only, and is refused without a write.
    let new_key = stack.dir().join("new-signing-key.pem");
    keygen(&paths::sidecar(), &new_key, None);
    let new_key_arg = new_key.to_str().unwrap();
    let etag = published_etag(&stack);
    let sync_secret = stack.sidecar.files.sync_secret_file.display().to_string();
    let refused = snapshot_key(&["add", &url, &sync_secret, new_key_arg]);
    assert!(
        !refused.status.success() && text(&refused).contains("403"),
        "{}",
        text(&refused)
    );
    assert!(
        text(&refused).contains("needs the admin secret"),
        "{}",
        text(&refused)
    );
    assert_eq!(published_etag(&stack), etag, "nothing was written");
    publish_key_change(&mut stack, &["add", &url, &secret, new_key_arg]);
    let kids = published_kids(&stack);
    assert_eq!(kids.len(), 2, "{kids:?}");
    let new_kid = kids.iter().find(|kid| **kid != old_kid).unwrap().clone();
    // Publishing it twice is refused and changes nothing.
    let etag = published_etag(&stack);
    let again = snapshot_key(&["add", &url, &secret, new_key_arg]);
    assert!(!again.status.success() && text(&again).contains("is already published"));
    assert_eq!(published_etag(&stack), etag);
    // A key the sidecar cannot sign with is refused, and nothing is published.
    let p384 = stack.dir().join("p384.pem");
    let made = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
            "-out",
        ])
        .arg(&p384)
        .output()
        .unwrap();
    assert!(made.status.success(), "openssl: {}", text(&made));
    let refused = snapshot_key(&["add", &url, &secret, p384.to_str().unwrap()]);
    assert!(
        !refused.status.success()
            && text(&refused).contains("neither a P-256 (ES256) nor an Ed25519 (EdDSA) key"),
        "{}",
        text(&refused)
    );
    assert_eq!(published_etag(&stack), etag);

    // 2. Switch minting: the sidecar restarts with the new key on the same address.
    stack.kill_sidecar();
    let mut files = stack.sidecar.files.clone();
    files.signing_key = new_key.clone();
    let port = stack.sidecar.port;
    let redis_url = stack.redis.url();
    stack.sidecar = Sidecar::start_with(
        stack.dir(),
        "sidecar-new-key",
        port,
        &redis_url,
        files,
        &SidecarExtra::default(),
    );
    let new_token = stack.token(Some("alice"), &[SCOPE], HttpVersion::Http1);
    assert_eq!(
        token_kid(&new_token),
        new_kid,
        "the new sidecar signs with the new key, under the kid the script published"
    );
    assert_eq!(token_alg(&new_token), "ES256");
    // The new sidecar found its key published: it added no second copy.
    assert_eq!(published_kids(&stack).len(), 2);
    assert_eq!(
        pull_status(&stack, &old_token),
        200,
        "an old token was refused mid-rotation"
    );
    assert_eq!(pull_status(&stack, &new_token), 200);

    // 3. Remove the old key once no sidecar signs with it (and its tokens would have expired).
    publish_key_change(&mut stack, &["remove", &url, &secret, &old_kid]);
    assert_eq!(published_kids(&stack), vec![new_kid.clone()]);
    assert_eq!(
        pull_status(&stack, &old_token),
        401,
        "the removed key still verifies"
    );
    assert_eq!(pull_status(&stack, &new_token), 200);
    let etag = published_etag(&stack);
    let again = snapshot_key(&["remove", &url, &secret, &old_kid]);
    assert!(!again.status.success() && text(&again).contains("is not published"));

    // A wrong secret is refused by the sidecar, and nothing is published.
    let wrong = stack.dir().join("wrong-secret");
    std::fs::write(&wrong, registry_gate_tests::sidecar::random_hex(32)).unwrap();
    let refused = snapshot_key(&["remove", &url, wrong.to_str().unwrap(), &new_kid]);
    assert!(
        !refused.status.success() && text(&refused).contains("answered 401"),
        "{}",
        text(&refused)
    );
    assert_eq!(published_etag(&stack), etag);
}
