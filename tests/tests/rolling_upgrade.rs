//! Rolling upgrades across the signed index: the previous release (`registry_gate_tests::
//! previous`, built from git: JSON snapshots, schema 1.1) beside this one (schema 2.0), in both
//! directions.
//!
//! - The previous filter against this sidecar: it announces 1.1 and is served the JSON
//!   envelope of every generation, and enforces what this sidecar publishes (a revocation and
//!   `min_token_iat`).
//! - This filter against the previous sidecar: the sidecar cannot serve 2.0 (406), and this
//!   filter does not fall back to unsigned JSON — whoever could answer as the sidecar could
//!   otherwise hand it any keys — so it installs nothing, says why in its log and answers
//!   503. Sidecars are upgraded first. Once this sidecar replaces the previous one on the
//!   same Redis, it serves the previous sidecar's last 1.x generation as a signed index and
//!   the filter installs it.
//! - This filter and sidecar enforce `min_token_iat`: a token issued before it is refused,
//!   a fresh login works.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use std::time::Duration;

use registry_gate_tests::expect::bearer_manifest_status;
use registry_gate_tests::sidecar::{Sidecar, SidecarExtra};
use registry_gate_tests::stack::default_snapshot;
use registry_gate_tests::wait::wait_until;
use registry_gate_tests::{previous, HttpVersion, Stack, StackOptions};
use serde_json::json;

fn alice_token(stack: &Stack) -> String {
    stack.token(
        Some("alice"),
        &["repository:team/private:pull"],
        HttpVersion::Http1,
    )
}

fn status(stack: &Stack, token: &str) -> u16 {
    bearer_manifest_status(stack, "team/private", token)
}

/// Waits until every worker answers `token`'s pull with `want` (each installs a generation on
/// its own timer, so the first to install does not speak for the others).
fn enforced(stack: &Stack, token: &str, want: u16, what: &str) {
    wait_until(what, Duration::from_secs(30), || {
        let answers: Vec<u16> = (0..8).map(|_| status(stack, token)).collect();
        if answers.iter().all(|s| *s == want) {
            Ok(())
        } else {
            Err(format!("answers {answers:?}, want {want}"))
        }
    });
}

/// Alice's grant taken away, and `min_token_iat` set when given.
fn revoked(min_token_iat: Option<i64>) -> serde_json::Value {
    let mut content = default_snapshot();
    content["users"]["alice"] = json!([]);
    if let Some(min) = min_token_iat {
        content["min_token_iat"] = json!(min);
    }
    content
}

#[test]
fn previous_and_current_run_side_by_side() {
    let previous = previous::build();

    // The previous filter, this sidecar: the JSON envelope, and what it carries enforced.
    let mut options = StackOptions::new("rolling_upgrade_previous_filter");
    options.wasm = Some(previous.wasm.clone());
    let mut stack = Stack::start_with(options);
    let token = alice_token(&stack);
    assert_eq!(status(&stack, &token), 200, "the previous filter reads 1.1");
    let served = stack.sidecar.get_snapshot().unwrap().json();
    assert_eq!(
        served["schema"],
        json!({"major": 1, "minor": 1}),
        "{served}"
    );
    let issued = registry_gate_tests::tokens::claims(&token)["iat"]
        .as_i64()
        .unwrap();
    stack.publish(&revoked(Some(issued + 1)));
    enforced(
        &stack,
        &token,
        401,
        "the previous filter refuses a token issued before min_token_iat",
    );
    drop(stack);

    // This filter, the previous sidecar: refused, said, and 503 — never unsigned JSON.
    let mut options = StackOptions::new("rolling_upgrade_previous_sidecar");
    options.sidecar.binary = Some(previous.sidecar.clone());
    options.snapshot = None;
    let mut stack = Stack::start_with(options);
    stack.publish(&default_snapshot());
    let log = wait_until(
        "this filter to say why it installs nothing",
        Duration::from_secs(30),
        || {
            let log = stack.envoy.process.log();
            log.contains("upgrade the sidecars before the filters")
                .then_some(log)
                .ok_or("not yet".to_owned())
        },
    );
    assert!(log.contains("refused (406)"), "{log}");
    let token = alice_token(&stack);
    assert_eq!(status(&stack, &token), 503, "no snapshot: fail closed");

    // The sidecar upgraded in place (same Redis, port and publisher key): it serves the
    // previous sidecar's generation, signed, and the filter installs it.
    let generation = stack.generation();
    let port = stack.sidecar.port;
    let files = stack.sidecar.files.clone();
    let dir = stack.dir().to_path_buf();
    let redis = stack.redis.url();
    stack.sidecar.process.stop();
    stack.sidecar = Sidecar::start_with(
        &dir,
        "sidecar-upgraded",
        port,
        &redis,
        files,
        &SidecarExtra::default(),
    );
    let index = stack.sidecar.get_index().unwrap();
    assert!(
        index.generation() >= generation,
        "the previous sidecar's generation {generation} or the one adding this sidecar's key"
    );
    stack
        .envoy
        .wait_for_generation(index.generation(), Duration::from_secs(30));
    assert_eq!(status(&stack, &token), 200, "enforced after the upgrade");
    drop(stack);

    // This filter and this sidecar: min_token_iat is enforced.
    let mut stack = Stack::start_with(StackOptions::new("rolling_upgrade_min_token_iat"));
    let old = alice_token(&stack);
    assert_eq!(status(&stack, &old), 200);
    let issued = registry_gate_tests::tokens::claims(&old)["iat"]
        .as_i64()
        .expect("the sidecar's tokens carry iat");
    let mut content = default_snapshot();
    content["min_token_iat"] = json!(issued + 1);
    stack.publish(&content);
    enforced(&stack, &old, 401, "a token issued before min_token_iat");
    let fresh = wait_until(
        "a login issued after min_token_iat",
        Duration::from_secs(10),
        || {
            let token = alice_token(&stack);
            let iat = registry_gate_tests::tokens::claims(&token)["iat"]
                .as_i64()
                .unwrap_or(0);
            (iat > issued)
                .then_some(token)
                .ok_or("same second".to_owned())
        },
    );
    assert_eq!(status(&stack, &fresh), 200);
}
