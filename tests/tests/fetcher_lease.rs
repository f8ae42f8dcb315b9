//! One snapshot fetcher per Envoy without a bootstrap extension: Envoy as a plain ingress
//! (`envoy/ingress/envoy.yaml`: the HTTP filter only, its configuration carrying the `fetcher`
//! object) with four workers, the real sidecar, Redis and docker-registry.
//!
//! - Exactly one fetch stream: sampled throughout the scenario, the sidecar never has more
//!   than one long-poll waiter and Envoy's snapshot cluster never more than one active
//!   request, and exactly one worker ever took the lease.
//! - Every worker converges on each new generation: after each of several publishes
//!   (revoking, then granting back alice's repository), requests over fresh connections
//!   (which Envoy spreads over its workers) are driven until a window in which every worker
//!   took a connection and every request obeyed the new snapshot, and each of those requests'
//!   access-log lines names the new generation.
//! - Authenticated pulls work (skopeo with alice's password).
//!
//! Takeover after the holder stops renewing is not shown here: nothing outside Envoy can
//! stop one worker's timer while the others run. The core's lease tests
//! (`filter/core/src/lease/tests.rs`) cover it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use registry_gate_tests::envoy::{parse_stats, query_escape, SNAPSHOT_CLUSTER};
use registry_gate_tests::expect::get_manifest;
use registry_gate_tests::http::Request;
use registry_gate_tests::stack::{default_snapshot, StackOptions};
use registry_gate_tests::wait::{poll, POLL_INTERVAL};
use registry_gate_tests::{oci, Auth, HttpVersion, Stack};
use serde_json::json;

const WORKERS: u32 = 4;
/// How long a publish gets to be obeyed on every worker.
const CONVERGED_WITHIN: Duration = Duration::from_secs(30);
const WAITERS_METRIC: &str = "registry_gate_sidecar_long_poll_waiters";

/// The largest fetch-stream counts seen while it ran.
#[derive(Debug, Default, Clone, Copy)]
struct Peaks {
    /// The sidecar's long-poll waiters.
    waiters: u64,
    /// Envoy's active requests on the snapshot cluster.
    active: u64,
    samples: u64,
}

/// Samples the fetch stream on both ends until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Peaks>,
}

impl Sampler {
    fn start(sidecar_url: String, admin_port: u16) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut peaks = Peaks::default();
            while !stopped.load(Ordering::Relaxed) {
                if let (Ok(waiters), Ok(active)) =
                    (sidecar_waiters(&sidecar_url), snapshot_active(admin_port))
                {
                    peaks.waiters = peaks.waiters.max(waiters);
                    peaks.active = peaks.active.max(active);
                    peaks.samples += 1;
                }
                std::thread::sleep(POLL_INTERVAL);
            }
            peaks
        });
        Sampler { stop, thread }
    }

    fn finish(self) -> Peaks {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

fn sidecar_waiters(sidecar_url: &str) -> Result<u64, String> {
    let resp = Request::get(format!("{sidecar_url}/metrics"))
        .timeout(Duration::from_secs(5))
        .send()?;
    resp.text()
        .lines()
        .find_map(|line| line.strip_prefix(WAITERS_METRIC)?.trim().parse().ok())
        .ok_or_else(|| format!("no {WAITERS_METRIC} in /metrics: {}", resp.summary()))
}

fn admin_stats(admin_port: u16, filter: &str) -> Result<BTreeMap<String, u64>, String> {
    let resp = Request::get(format!(
        "http://127.0.0.1:{admin_port}/stats?filter={}",
        query_escape(filter)
    ))
    .timeout(Duration::from_secs(5))
    .send()?;
    Ok(parse_stats(&resp.text()))
}

fn snapshot_active(admin_port: u16) -> Result<u64, String> {
    let name = format!("cluster.{SNAPSHOT_CLUSTER}.upstream_rq_active");
    admin_stats(admin_port, &format!("^{}$", name.replace('.', "\\.")))?
        .get(&name)
        .copied()
        .ok_or_else(|| format!("Envoy lists no {name}"))
}

/// Connections each worker has accepted so far (`listener.<addr>.worker_<n>.downstream_cx_total`).
fn worker_connections(stack: &mut Stack) -> BTreeMap<String, u64> {
    let connections = stack
        .envoy
        .stats(r"^listener\..*\.worker_[0-9]+\.downstream_cx_total$")
        .unwrap();
    assert_eq!(
        connections.len(),
        WORKERS as usize,
        "one listener with {WORKERS} workers: {connections:?}"
    );
    connections
}

/// The one counter whose name ends in `suffix` (Envoy prefixes the filter's metric names).
fn filter_counter(stack: &mut Stack, suffix: &str) -> u64 {
    let stats = stack.envoy.stats("registry_gate").unwrap();
    let found: Vec<u64> = stats
        .iter()
        .filter(|(name, _)| name.ends_with(suffix))
        .map(|(_, value)| *value)
        .collect();
    assert_eq!(found.len(), 1, "one stat ending in {suffix}: {stats:?}");
    found[0]
}

/// alice's snapshot: `team/private` granted or not.
fn snapshot(alice_granted: bool) -> serde_json::Value {
    if alice_granted {
        default_snapshot()
    } else {
        let mut content = default_snapshot();
        content["users"] = json!({"alice": []});
        content
    }
}

const MANIFEST_LINE: &str = "GET /v2/team/private/manifests/latest ";

/// Drives alice's manifest requests over fresh connections until a window in which every
/// worker accepted a connection and every request got `status`; returns the number of
/// manifest requests sent before that window and how many it held. A request that disobeys
/// starts a new window. `sent` counts every manifest request of the scenario.
fn converge(stack: &mut Stack, token: &str, status: u16, sent: &mut usize) -> (usize, usize) {
    let (window, _) = poll(CONVERGED_WITHIN, || {
        let before = worker_connections(stack);
        let sent_before = *sent;
        let mut requests = 0;
        // Bounded, so a window that keeps missing a worker is retried from scratch.
        while requests < 64 {
            requests += 1;
            let version = HttpVersion::ALL[requests % 2];
            let resp = get_manifest(
                stack,
                "team/private",
                "latest",
                version,
                Auth::Bearer(token),
            );
            *sent += 1;
            if resp.status != status {
                return Err(format!(
                    "request {requests} of the window got {} instead of {status}",
                    resp.summary()
                ));
            }
            let after = worker_connections(stack);
            let idle: Vec<&String> = before
                .iter()
                .filter(|(name, count)| after.get(*name) <= Some(*count))
                .map(|(name, _)| name)
                .collect();
            if idle.is_empty() {
                return Ok((sent_before, requests));
            }
        }
        Err(format!("{requests} requests did not reach every worker"))
    })
    .unwrap_or_else(|err| {
        stack.print_logs();
        panic!("publish not obeyed on every worker (want {status}): {err}")
    });
    window
}

/// The access-log lines of the window's requests (the manifest requests after the first
/// `from`), once Envoy has written them all (it writes lines in completion order, flushing
/// every 100 ms).
fn window_lines(stack: &Stack, from: usize, requests: usize) -> Vec<String> {
    let (lines, _) = poll(Duration::from_secs(10), || {
        let lines: Vec<String> = stack
            .envoy
            .access_log()
            .into_iter()
            .filter(|line| line.contains(MANIFEST_LINE))
            .skip(from)
            .collect();
        if lines.len() >= requests {
            Ok(lines)
        } else {
            Err(format!("{} of {requests} lines so far", lines.len()))
        }
    })
    .unwrap_or_else(|err| panic!("access log lacks the window's requests: {err}"));
    lines
}

#[test]
fn one_elected_fetcher_feeds_every_worker() {
    let mut options = StackOptions::new("fetcher_lease");
    options.elected_fetcher = true;
    options.concurrency = WORKERS;
    let mut stack = Stack::start_with(options);
    let sampler = Sampler::start(stack.sidecar.url(), stack.admin_port());

    // There is a fetch stream: one waiter at the sidecar, one request on the cluster.
    poll(Duration::from_secs(30), || {
        let waiters = sidecar_waiters(&stack.sidecar.url())?;
        let active = snapshot_active(stack.admin_port())?;
        if waiters == 1 && active == 1 {
            Ok(())
        } else {
            Err(format!(
                "{waiters} waiters, {active} active snapshot requests"
            ))
        }
    })
    .unwrap_or_else(|err| panic!("not exactly one long-poll from the elected fetcher: {err}"));

    let token = stack.token(
        Some("alice"),
        &["repository:team/private:pull"],
        HttpVersion::Http1,
    );
    let mut sent = 0;
    for alice_granted in [false, true, false, true] {
        let published = stack.publish(&snapshot(alice_granted));
        assert!(published.changed, "{published:?}");
        let epoch = published.epoch.as_str().expect("epoch is a string");
        let generation = format!("generation={epoch}.{}", published.generation);
        let status = if alice_granted { 200 } else { 404 };
        let (log_from, requests) = converge(&mut stack, &token, status, &mut sent);
        let lines = window_lines(&stack, log_from, requests);
        for line in &lines {
            assert!(
                line.contains(&format!("{MANIFEST_LINE}{status} "))
                    && line.split_whitespace().any(|field| field == generation),
                "a request of the window was not decided by {generation}: {line}"
            );
        }
        eprintln!(
            "{generation} obeyed on every worker: {requests} requests, {} log lines",
            lines.len()
        );
    }

    let (run, dest) = stack.skopeo_pull(
        "team/private:latest",
        Auth::Basic("alice", stack.password("alice")),
    );
    run.assert_success();
    oci::layout_has_image(&dest, stack.image("team/private:latest")).unwrap();

    let peaks = sampler.finish();
    eprintln!("fetch stream peaks: {peaks:?}");
    assert!(peaks.samples > 10, "too few samples: {peaks:?}");
    assert_eq!(
        peaks.waiters, 1,
        "the sidecar saw more than one long-poll from one Envoy: {peaks:?}"
    );
    assert_eq!(
        peaks.active, 1,
        "Envoy had more than one snapshot request in flight: {peaks:?}"
    );
    assert_eq!(
        filter_counter(&mut stack, "fetcher_lease.acquired"),
        1,
        "exactly one worker took the lease, once"
    );
    assert_eq!(filter_counter(&mut stack, "fetcher_lease.lost"), 0);
}
