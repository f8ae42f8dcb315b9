//! Before any snapshot is published, the filter fails closed with 503 `UNAVAILABLE` and a
//! `Retry-After`, for public and private repositories alike, and nothing reaches the
//! registry; their access-log lines name no generation (`generation=-`). The first publish
//! then opens public pulls without restarting anything, logged with its generation.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use registry_gate_tests::expect::{assert_is_manifest_of, assert_registry_error, get_manifest};
use registry_gate_tests::stack::{default_snapshot, StackOptions};
use registry_gate_tests::wait::wait_until;
use registry_gate_tests::{Auth, HttpVersion, Stack};

#[test]
fn requests_get_503_until_the_first_snapshot_arrives() {
    let mut options = StackOptions::new("no-snapshot-yet");
    options.snapshot = None;
    let mut stack = Stack::start_with(options);
    let before = stack.upstream_requests();

    for version in HttpVersion::ALL {
        for repository in ["library/public", "team/private"] {
            let resp = get_manifest(&stack, repository, "latest", version, Auth::Anonymous);
            let context = format!("{repository} before any snapshot, {version}");
            assert_registry_error(&resp, 503, "UNAVAILABLE", &context);
            let retry_after = resp.header("retry-after").unwrap_or_default();
            assert!(
                retry_after.parse::<u64>().is_ok_and(|s| s > 0),
                "{context}: Retry-After {retry_after:?}"
            );
        }
    }
    assert_eq!(
        stack.upstream_requests(),
        before,
        "no request may reach the registry without a snapshot"
    );

    // Envoy writes access-log lines when streams complete: wait for all four.
    let refused = wait_until("the refused requests' access-log lines", LOG_WAIT, || {
        manifest_lines(&stack, " 503 ", 4)
    });
    for line in &refused {
        assert!(
            line.split_whitespace()
                .any(|field| field == "decision=unavailable")
                && line.split_whitespace().any(|field| field == "generation=-"),
            "a request refused before any snapshot names a generation: {line}"
        );
    }

    let published = stack.publish_and_wait(&default_snapshot());
    let image = stack.image("library/public:latest").clone();
    for version in HttpVersion::ALL {
        let resp = get_manifest(&stack, "library/public", "latest", version, Auth::Anonymous);
        assert_is_manifest_of(
            &resp,
            &image,
            &format!("public pull after publish, {version}"),
        );
    }
    let generation = format!(
        "generation={}.{}",
        published.epoch.as_str().unwrap(),
        published.generation
    );
    let allowed = wait_until("the public pulls' access-log lines", LOG_WAIT, || {
        manifest_lines(&stack, " 200 ", 2)
    });
    for line in &allowed {
        assert!(
            line.split_whitespace().any(|field| field == generation),
            "a pull after the publish is not logged with {generation}: {line}"
        );
    }
}

const LOG_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The access log's manifest lines with `status`, once there are `count` of them.
fn manifest_lines(stack: &Stack, status: &str, count: usize) -> Result<Vec<String>, String> {
    let lines: Vec<String> = stack
        .envoy
        .access_log()
        .into_iter()
        .filter(|line| line.contains("/manifests/latest") && line.contains(status))
        .collect();
    if lines.len() >= count {
        Ok(lines)
    } else {
        Err(format!("{} of {count} lines so far", lines.len()))
    }
}
