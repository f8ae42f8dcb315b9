//! An index not signed by a publisher key the filter trusts is refused end to end, on every
//! one of Envoy's four workers: a sidecar started with another publisher key (a spoofed
//! sidecar, or one whose key was changed before the filters were told) serves its index; the
//! fetcher refuses it, counts `snapshot.rejected.unknown_publisher`, and the last good index
//! keeps deciding — neither the revocation nor the grant the refused index carries is
//! enforced. Back with the trusted key, the sidecar's next publish is installed everywhere.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use std::collections::BTreeSet;
use std::time::Duration;

use registry_gate_tests::expect::get_manifest;
use registry_gate_tests::paths::{self, Build};
use registry_gate_tests::sidecar::{publisher_keygen, Sidecar, SidecarExtra};
use registry_gate_tests::wait::wait_until;
use registry_gate_tests::{Auth, HttpVersion, Stack, StackOptions};
use serde_json::json;

const WORKERS: u32 = 4;

/// The counter of indexes refused for their publisher, and the installed generation's gauge.
fn rejected_stat() -> String {
    paths::build().stat("registry_gate.snapshot.rejected.unknown_publisher")
}

fn generation_stat() -> String {
    paths::build().stat("registry_gate.snapshot.generation")
}

/// How many threads install each generation: every wasm worker VM installs its own copy;
/// the native module installs once per process, on the main thread, for all workers.
fn installers() -> usize {
    match paths::build() {
        Build::Wasm => WORKERS as usize,
        Build::Native => 1,
    }
}

/// alice loses `team/private`, bob gains `team/other`; `extra` more repositories (a content
/// the sidecar has not published yet).
fn changed_grants(extra: &[&str]) -> serde_json::Value {
    let mut repositories = vec![
        json!({"name": "library/public", "auth_required": false}),
        json!({"name": "team/private", "auth_required": true}),
        json!({"name": "team/other", "auth_required": true}),
    ];
    repositories.extend(
        extra
            .iter()
            .map(|name| json!({"name": name, "auth_required": true})),
    );
    json!({"repositories": repositories, "users": {"alice": [], "bob": ["team/other"]}})
}

/// [`rejected_stat`] so far (Envoy lists a counter once it was first counted).
fn rejected(stack: &mut Stack) -> u64 {
    let name = rejected_stat();
    let stats = stack
        .envoy
        .stats(&format!("^{}$", name.replace('.', "\\.")))
        .unwrap();
    stats.get(&name).copied().unwrap_or(0)
}

fn status(stack: &Stack, repository: &str, token: &str) -> u16 {
    get_manifest(
        stack,
        repository,
        "latest",
        HttpVersion::Http1,
        Auth::Bearer(token),
    )
    .status
}

/// The worker threads that logged installing `generation` (each worker VM logs it on its own
/// thread; see `Envoy::snapshot_lines`).
fn installed_on(stack: &Stack, generation: u64) -> BTreeSet<u64> {
    let (installs, _) = stack.envoy.snapshot_lines(generation);
    installs.iter().map(|line| line.thread).collect()
}

/// Restarts the sidecar on the same port and Redis with `publisher_key`.
fn restart_sidecar(stack: &mut Stack, name: &str, publisher_key: &std::path::Path) {
    stack.kill_sidecar();
    let mut files = stack.sidecar.files.clone();
    files.publisher_key = publisher_key.to_path_buf();
    let (dir, port, redis) = (
        stack.dir().to_path_buf(),
        stack.sidecar.port,
        stack.redis.url(),
    );
    stack.sidecar = Sidecar::start_with(&dir, name, port, &redis, files, &SidecarExtra::default());
}

#[test]
fn an_index_from_an_unknown_publisher_is_refused_and_the_last_good_one_serves() {
    let mut options = StackOptions::new("signed_snapshots");
    options.concurrency = WORKERS;
    let mut stack = Stack::start_with(options);
    let trusted = stack.sidecar.files.publisher_key.clone();
    let alice = stack.token(
        Some("alice"),
        &["repository:team/private:pull"],
        HttpVersion::Http1,
    );
    let bob = stack.token(
        Some("bob"),
        &["repository:team/other:pull"],
        HttpVersion::Http1,
    );
    assert_eq!(status(&stack, "team/private", &alice), 200);
    assert_eq!(
        status(&stack, "team/other", &bob),
        404,
        "bob holds no grant yet"
    );
    let good = stack.generation();
    wait_until(
        "every worker installs the first generation",
        Duration::from_secs(10),
        || match installed_on(&stack, good) {
            workers if workers.len() == installers() => Ok(()),
            workers => Err(format!("installed on {workers:?}")),
        },
    );
    assert_eq!(rejected(&mut stack), 0);

    // Another publisher key: the change it publishes is signed by a key no filter trusts.
    let other = stack.dir().join("other-publisher-key.pem");
    let other_public = publisher_keygen(&other);
    assert_ne!(other_public, stack.sidecar.files.publisher_public);
    restart_sidecar(&mut stack, "sidecar-other-publisher", &other);
    let refused = stack.sidecar.publish(&changed_grants(&[])).generation;
    assert!(refused > good);
    wait_until(
        "the fetcher refuses the index of the unknown publisher",
        Duration::from_secs(10),
        || match rejected(&mut stack) {
            0 => Err("none counted".to_owned()),
            _ => Ok(()),
        },
    );
    let log = stack.envoy.process.log();
    assert!(log.contains("snapshot refused"), "the refusal is logged");
    // Give the workers their chance to install what they must not.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        installed_on(&stack, refused),
        BTreeSet::new(),
        "no worker installs the unknown publisher's generation {refused}"
    );
    assert_eq!(stack.envoy.stat(&generation_stat()), good);
    assert_eq!(
        status(&stack, "team/private", &alice),
        200,
        "the refused index's revocation is not enforced: the last good one decides"
    );
    // The sidecar believes its own index: it issues bob a token for team/other. The filter
    // decides from the last good index, where bob holds no grant.
    let bob = stack.token(
        Some("bob"),
        &["repository:team/other:pull"],
        HttpVersion::Http1,
    );
    assert_eq!(
        status(&stack, "team/other", &bob),
        404,
        "the refused index's grant is not enforced"
    );

    // The trusted key back: its next publish is installed on every worker.
    restart_sidecar(&mut stack, "sidecar-trusted-again", &trusted);
    let installed = stack
        .publish_and_wait(&changed_grants(&["team/new"]))
        .generation;
    assert!(installed > refused);
    wait_until(
        "every worker installs the trusted publisher's generation",
        Duration::from_secs(10),
        || match installed_on(&stack, installed) {
            workers if workers.len() == installers() => Ok(()),
            workers => Err(format!("installed on {workers:?}")),
        },
    );
    assert_eq!(status(&stack, "team/private", &alice), 404, "revoked");
    // A token issued while bob held no grant carries no access to it: log in again.
    let bob = stack.token(
        Some("bob"),
        &["repository:team/other:pull"],
        HttpVersion::Http1,
    );
    assert_eq!(status(&stack, "team/other", &bob), 200, "granted");
}
