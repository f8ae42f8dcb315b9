//! One token's signature is checked once per Envoy process by the native build, on whichever
//! worker first meets it, and taken over by the other workers from the callers they share
//! (`token_cache.shared_hits`); the wasm build's workers are separate VMs and each verifies
//! it itself. Run on four workers, with the token sent on a new connection each time until
//! the access log shows it served by more than one of them.
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
use registry_gate_tests::wait::wait_until;
use registry_gate_tests::{Auth, HttpVersion, Stack, StackOptions};

const WORKERS: u32 = 4;

/// The workers that served alice's pulls of `team/private` (the access log's `worker=`
/// values are `<worker id>.<request number>`).
fn serving_workers(stack: &Stack) -> BTreeSet<String> {
    stack
        .envoy
        .access_log()
        .iter()
        .filter(|line| line.contains("/v2/team/private/manifests/") && line.contains(" 200 "))
        .filter_map(|line| {
            let (_, tail) = line.split_once(" worker=")?;
            let (id, _) = tail.split_whitespace().next()?.split_once('.')?;
            Some(id.to_owned())
        })
        .collect()
}

/// The sum of the stats matching `pattern` (0 while none is listed).
fn counted(stack: &mut Stack, pattern: &str) -> u64 {
    stack.envoy.stats(pattern).unwrap().values().sum()
}

#[test]
fn a_token_is_verified_once_per_process_natively_and_once_per_worker_in_wasm() {
    let mut options = StackOptions::new("token_cache_shared");
    options.concurrency = WORKERS;
    let mut stack = Stack::start_with(options);
    let generation = stack.generation();
    stack
        .envoy
        .wait_for_every_worker(generation, Duration::from_secs(10));
    let alice = stack.token(
        Some("alice"),
        &["repository:team/private:pull"],
        HttpVersion::Http1,
    );
    let mut sent = 0u64;
    while serving_workers(&stack).len() < 2 {
        assert!(sent < 200, "200 connections all served by one worker");
        let status = get_manifest(
            &stack,
            "team/private",
            "latest",
            HttpVersion::Http1,
            Auth::Bearer(&alice),
        )
        .status;
        assert_eq!(status, 200);
        sent += 1;
    }
    let workers = serving_workers(&stack).len() as u64;
    let signatures = paths::build().stat("registry_gate.signatures.");
    let shared_hits = paths::build().stat("registry_gate.token_cache.shared_hits");
    let (want_signatures, want_shared) = match paths::build() {
        Build::Native => (1, workers - 1),
        Build::Wasm => (workers, 0),
    };
    // Counters are reported on a timer: wait for the workers' reports.
    wait_until(
        "the signature and shared-cache counters",
        Duration::from_secs(10),
        || {
            let checked = counted(&mut stack, &format!("^{}", signatures.replace('.', "\\.")));
            let shared = counted(
                &mut stack,
                &format!("^{}$", shared_hits.replace('.', "\\.")),
            );
            if (checked, shared) == (want_signatures, want_shared) {
                Ok(())
            } else {
                Err(format!(
                    "{checked} signatures checked and {shared} shared hits over {workers} \
                     workers and {sent} requests; want {want_signatures} and {want_shared}"
                ))
            }
        },
    );
}
