//! One worker VM: the glue's [`Worker`] over the proxy-wasm host, fed from shared data.
//!
//! On its timer it reads the fetcher's announcement and offers the snapshot bytes when the
//! gate asks for them, and reports the gate's counters as stats. Requests go through the
//! glue (`registry_gate_glue::Exchange`); this module only says where the bytes are.

use registry_gate_core::config::Settings;
use registry_gate_core::fetch::Announcement;
use registry_gate_core::gate::Gate;
use registry_gate_glue::{Budget, Level, Worker};

use crate::crypto::EnvoyCrypto;
use crate::host::{self, Wasm};
use crate::shared::{ANNOUNCEMENT_KEY, SNAPSHOT_KEY};
use crate::stats::Stats;

/// Per-worker state shared by the root context and its HTTP contexts.
#[derive(Debug)]
pub struct WasmWorker {
    pub worker: Worker,
    stats: Stats,
}

impl WasmWorker {
    pub fn new(settings: Settings) -> WasmWorker {
        let mut stats = Stats::new();
        // One per VM start: a trap makes Envoy reload the VM, which counts here again.
        stats.counter("vm_starts", 1);
        // This worker's own budget: each worker is a VM of its own.
        let budget = Budget::new(settings.flatpak_buffer_budget_bytes);
        let mut gate = Gate::new(settings);
        if gate.settings().host_signatures {
            let crypto = EnvoyCrypto::probe();
            host::log(
                Level::Info,
                &format!("signatures checked by the host: {}", crypto.describe()),
            );
            gate.set_signature_host(Box::new(crypto));
        }
        WasmWorker {
            worker: Worker::new(gate, host::random_id(), budget),
            stats,
        }
    }

    /// Timer: look for a new generation, then report counters and gauges.
    pub fn on_tick(&mut self) {
        self.refresh();
        for (name, value) in self.worker.gauges(host::now_secs()) {
            self.stats.gauge(name, value);
        }
        self.stats.flush(self.worker.gate().counts());
    }

    /// Offers the announced snapshot to the gate if the gate wants it.
    pub fn refresh(&mut self) {
        let Some(announcement) =
            host::shared_data(ANNOUNCEMENT_KEY).and_then(|bytes| Announcement::decode(&bytes))
        else {
            return;
        };
        if let Some(installed) = self
            .worker
            .take_in(&mut Wasm, &announcement, || host::shared_data(SNAPSHOT_KEY))
        {
            self.stats.gauge("snapshot.install_ms", installed.took_ms);
        }
    }
}
