//! The filter's Envoy stats. Requests never call the host to count: the gate keeps plain
//! counters, and the root context's timer reports their growth (the glue's [`Tally`]).
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
use registry_gate_glue::{metric_names, Tally};

use crate::host::{self, MetricKind};

/// Metric ids, defined once, and what has been reported so far.
#[derive(Debug, Default)]
pub struct Stats {
    ids: HashMap<String, Option<u32>>,
    tally: Tally,
    host_calls: u64,
}

impl Stats {
    /// Defines the metrics every root context reports, so they show up as 0 from the start.
    pub fn new() -> Stats {
        let mut stats = Stats::default();
        for name in metric_names(false) {
            stats.counter(&name, 0);
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
        for (name, by) in self.tally.growth(counts) {
            self.counter(&name, by);
        }
        // Calls made by this flush itself are counted in the next one.
        let calls = host::calls();
        let grown = calls.saturating_sub(self.host_calls);
        self.host_calls = calls;
        self.counter("host_calls", grown);
    }
}
