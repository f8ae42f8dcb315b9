//! The filter's Envoy stats, defined once per root context.
//!
//! Names (Envoy may prefix them, e.g. `wasmcustom.`): `registry_gate.decisions.<outcome>`,
//! `registry_gate.token_failures.<reason>`, `registry_gate.snapshot.generation`,
//! `registry_gate.snapshot.age_seconds`, `registry_gate.snapshot.installed`,
//! `registry_gate.snapshot.rejected.<reason>`, `registry_gate.snapshot.fetch_failures`.

use hashbrown::HashMap;
use proxy_wasm::types::MetricType;
use registry_gate_core::decision::Outcome;

use crate::host;

/// Metric ids, defined lazily for label values that are only known at run time.
#[derive(Debug, Default)]
pub struct Stats {
    ids: HashMap<String, Option<u32>>,
    /// Decision counters by `Outcome::ALL` position: counted on every request, so looked
    /// up without formatting a name.
    decisions: Vec<(Outcome, Option<u32>)>,
}

impl Stats {
    /// Defines the metrics every root context reports, so they show up as 0 from the start.
    pub fn new() -> Stats {
        let mut stats = Stats::default();
        stats.decisions = Outcome::ALL
            .iter()
            .map(|outcome| {
                let id = stats.counter_id(&format!("decisions.{}", outcome.as_str()));
                (*outcome, id)
            })
            .collect();
        stats
    }

    fn id(&mut self, kind: MetricType, name: &str) -> Option<u32> {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = host::define_metric(kind, &format!("registry_gate.{name}"));
        self.ids.insert(name.to_string(), id);
        id
    }

    fn counter_id(&mut self, name: &str) -> Option<u32> {
        self.id(MetricType::Counter, name)
    }

    /// Adds one to `registry_gate.<name>`.
    pub fn count(&mut self, name: &str) {
        let id = self.counter_id(name);
        host::increment(id);
    }

    /// Sets the gauge `registry_gate.<name>`.
    pub fn gauge(&mut self, name: &str, value: u64) {
        let id = self.id(MetricType::Gauge, name);
        host::record(id, value);
    }

    /// Counts a decision.
    pub fn decision(&mut self, outcome: Outcome) {
        let id = self
            .decisions
            .iter()
            .find(|(o, _)| *o == outcome)
            .and_then(|(_, id)| *id);
        host::increment(id);
    }
}
