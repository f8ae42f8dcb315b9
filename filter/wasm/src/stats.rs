//! The filter's Envoy stats. Requests never call the host to count: the gate keeps plain
//! counters, and the root context's timer turns their growth into metric increments.
//!
//! Names (Envoy may prefix them, e.g. `wasmcustom.`): `registry_gate.decisions.<outcome>`,
//! `registry_gate.token_failures.<reason>`, `registry_gate.certificate_failures.<reason>`,
//! `registry_gate.snapshot.installed`,
//! `registry_gate.snapshot.rejected.<reason>`, `registry_gate.snapshot.generation`,
//! `registry_gate.snapshot.age_seconds`, `registry_gate.snapshot.unconfirmed_seconds`,
//! `registry_gate.snapshot.install_ms` (the last install on this worker),
//! `registry_gate.snapshot.fetch_failures`, `registry_gate.host_calls`,
//! `registry_gate.vm_starts`, `registry_gate.flatpak_index.<filtered, passed_through or the
//! reason it was refused>`, `registry_gate.fetcher_lease.<acquired|lost>` (elected fetcher),
//! `registry_gate.signatures.<alg>_<host|wasm>` (where each token signature was checked).

use hashbrown::HashMap;
use registry_gate_core::gate::Counts;
use registry_gate_core::refusal::Outcome;

use crate::host::{self, MetricKind};

/// Metric ids, defined once, and what has been reported so far.
#[derive(Debug, Default)]
pub struct Stats {
    ids: HashMap<String, Option<u32>>,
    reported: Counts,
    host_calls: u64,
}

impl Stats {
    /// Defines the metrics every root context reports, so they show up as 0 from the start.
    pub fn new() -> Stats {
        let mut stats = Stats::default();
        for outcome in Outcome::ALL {
            stats.counter(&format!("decisions.{}", outcome.as_str()), 0);
        }
        stats.counter("host_calls", 0);
        stats
    }

    fn id(&mut self, kind: MetricKind, name: &str) -> Option<u32> {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = host::define_metric(kind, &format!("registry_gate.{name}"));
        self.ids.insert(name.to_string(), id);
        id
    }

    /// Adds `by` to the counter `registry_gate.<name>` (defining it if needed).
    pub fn counter(&mut self, name: &str, by: u64) {
        let id = self.id(MetricKind::Counter, name);
        if by > 0 {
            host::increment(id, by);
        }
    }

    /// Sets the gauge `registry_gate.<name>`.
    pub fn gauge(&mut self, name: &str, value: u64) {
        let id = self.id(MetricKind::Gauge, name);
        host::record(id, value);
    }

    /// Reports what the gate counted since the last flush, and the host calls made.
    pub fn flush(&mut self, counts: &Counts) {
        let before = self.reported.outcomes;
        for (outcome, (now, before)) in Outcome::ALL
            .iter()
            .zip(counts.outcomes.iter().zip(before.iter()))
        {
            let grown = now.saturating_sub(*before);
            if grown > 0 {
                self.counter(&format!("decisions.{}", outcome.as_str()), grown);
            }
        }
        self.grown("token_failures", &counts.token_failures, |r| {
            &r.token_failures
        });
        self.grown("certificate_failures", &counts.certificate_failures, |r| {
            &r.certificate_failures
        });
        self.grown("snapshot.rejected", &counts.rejected, |r| &r.rejected);
        self.grown("flatpak_index", &counts.flatpak_index, |r| &r.flatpak_index);
        self.grown("signatures", &counts.signatures, |r| &r.signatures);
        let installed = counts.installed.saturating_sub(self.reported.installed);
        if installed > 0 {
            self.counter("snapshot.installed", installed);
        }
        self.reported = counts.clone();
        // Calls made by this flush itself are counted in the next one.
        let calls = host::calls();
        let grown = calls.saturating_sub(self.host_calls);
        self.host_calls = calls;
        self.counter("host_calls", grown);
    }

    fn grown(
        &mut self,
        prefix: &str,
        now: &[(&'static str, u64)],
        before: fn(&Counts) -> &Vec<(&'static str, u64)>,
    ) {
        for (reason, count) in now {
            let reported = before(&self.reported)
                .iter()
                .find(|(r, _)| r == reason)
                .map_or(0, |(_, c)| *c);
            let grown = count.saturating_sub(reported);
            if grown > 0 {
                self.counter(&format!("{prefix}.{reason}"), grown);
            }
        }
    }
}
