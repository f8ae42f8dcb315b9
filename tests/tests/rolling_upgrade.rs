//! Rolling upgrades without waiting: the previous release (`registry_gate_tests::previous`,
//! built from git: snapshot schema 1.0, no negotiation) beside this one (schema 1.1, which
//! added `min_token_iat`), in both directions, with no component waiting for the other.
//!
//! - The previous filter against this sidecar reads its 1.1 snapshots, refuses one that
//!   requires `min_token_iat` (counted as `snapshot.rejected.unknown_features`) and keeps
//!   serving its last good one, then installs the next one it can read.
//! - This filter against the previous sidecar reads its 1.0 snapshots (the `schema=` it
//!   announces is ignored there), and the previous sidecar refuses a document with
//!   `min_token_iat` with a 400 rather than drop the restriction.
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
use registry_gate_tests::http::Request;
use registry_gate_tests::stack::default_snapshot;
use registry_gate_tests::wait::wait_until;
use registry_gate_tests::{previous, Auth, HttpVersion, Stack, StackOptions};
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
    let now = registry_gate_tests::tokens::now_secs();

    // The previous filter, this sidecar.
    let mut options = StackOptions::new("rolling_upgrade_previous_filter");
    options.wasm = Some(previous.wasm.clone());
    let mut stack = Stack::start_with(options);
    let token = alice_token(&stack);
    assert_eq!(
        status(&stack, &token),
        200,
        "the previous filter reads schema 1.1"
    );
    let refused = stack.publish(&revoked(Some(now - 3600)));
    let served = stack.sidecar.get_snapshot().unwrap().json();
    assert_eq!(
        (&served["schema"], &served["required_features"]),
        (&json!({"major": 1, "minor": 1}), &json!(["min_token_iat"])),
        "{served}"
    );
    wait_until(
        "the previous filter to refuse a snapshot requiring min_token_iat",
        Duration::from_secs(30),
        || {
            let stats = stack.envoy.stats("snapshot.rejected").unwrap_or_default();
            stats
                .iter()
                .find(|(name, value)| name.ends_with("unknown_features") && **value > 0)
                .map(|_| ())
                .ok_or_else(|| format!("rejections so far: {stats:?}"))
        },
    );
    assert_eq!(
        status(&stack, &token),
        200,
        "the last good snapshot (generation {} refused) keeps serving",
        refused.generation
    );
    stack.publish(&revoked(None));
    enforced(
        &stack,
        &token,
        404,
        "then the next readable one is enforced",
    );
    drop(stack);

    // This filter, the previous sidecar.
    let mut options = StackOptions::new("rolling_upgrade_previous_sidecar");
    options.sidecar.binary = Some(previous.sidecar.clone());
    let mut stack = Stack::start_with(options);
    let token = alice_token(&stack);
    assert_eq!(status(&stack, &token), 200, "this filter reads schema 1.0");
    let snapshot = stack.sidecar.get_snapshot().unwrap().json();
    assert_eq!(snapshot["schema"], json!({"major": 1, "minor": 0}));
    let refusal = Request::new("PUT", format!("{}/v1/snapshot", stack.sidecar.url()))
        .auth(Auth::Bearer(&stack.sidecar.files.sync_secret))
        .header("Content-Type", "application/json")
        .body(revoked(Some(now)).to_string())
        .send_ok();
    assert_eq!(refusal.status, 400, "{}", refusal.summary());
    assert!(
        refusal.text().contains("min_token_iat"),
        "{}",
        refusal.summary()
    );
    stack.publish(&revoked(None));
    enforced(&stack, &token, 404, "the previous sidecar's snapshot");
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
