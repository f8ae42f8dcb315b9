//! One worker VM's view of the world: its settings, the snapshot index it decides from, its
//! verified-token cache and its stats.
//!
//! It notices a new generation by reading the fetcher's small announcement, copies and
//! decodes the snapshot only when the generation changed, and swaps the index whole. A
//! snapshot that fails validation is counted and ignored; the last good one keeps serving.
//! It never talks to the network.

use std::rc::Rc;

use proxy_wasm::types::LogLevel;
use registry_gate_core::config::Settings;
use registry_gate_core::index::Index;
use registry_gate_core::snapshot::{self, Held, SnapshotError};
use registry_gate_core::token::{KeyRing, TokenCache};

use crate::host;
use crate::shared::{self, SNAPSHOT_KEY};
use crate::stats::Stats;

/// A snapshot this worker has installed.
#[derive(Debug)]
pub struct Installed {
    pub held: Held,
    pub published_at: u64,
    pub index: Index,
    /// Static keys ∪ the snapshot's keys.
    pub keys: KeyRing,
}

/// Whether requests can be decided now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    NoSnapshot,
    Stale { unconfirmed_secs: u64 },
}

/// Per-worker state shared by the root context and its HTTP contexts.
#[derive(Debug)]
pub struct Worker {
    pub settings: Rc<Settings>,
    pub installed: Option<Rc<Installed>>,
    /// Unix seconds the sidecar last confirmed the announced snapshot.
    confirmed_at: u64,
    /// Generation last refused, so the same bad bytes are not decoded on every tick.
    refused: Option<(String, u64)>,
    pub cache: TokenCache,
    pub stats: Stats,
}

impl Worker {
    pub fn new(settings: Settings) -> Worker {
        Worker {
            cache: TokenCache::new(settings.token_cache_entries),
            settings: Rc::new(settings),
            installed: None,
            confirmed_at: 0,
            refused: None,
            stats: Stats::new(),
        }
    }

    /// Looks for a newer announced generation and installs it if it validates.
    pub fn refresh(&mut self) {
        let Some(announcement) = shared::announcement() else {
            return;
        };
        self.confirmed_at = announcement.confirmed_at;
        let now = host::now_secs();
        if let Some(installed) = &self.installed {
            self.stats.gauge(
                "snapshot.age_seconds",
                now.saturating_sub(installed.published_at),
            );
        }
        let current = self
            .installed
            .as_ref()
            .map(|i| (i.held.epoch.as_str(), i.held.generation));
        let announced = (announcement.epoch.as_str(), announcement.generation);
        let already_refused = self
            .refused
            .as_ref()
            .is_some_and(|(e, g)| (e.as_str(), *g) == announced);
        if current == Some(announced) || already_refused {
            return;
        }
        let Some(bytes) = host::shared_data(SNAPSHOT_KEY) else {
            return;
        };
        match self.install(&bytes) {
            Ok(()) => {}
            Err(err) => {
                host::log(LogLevel::Warn, &format!("snapshot refused: {err}"));
                self.stats
                    .count(&format!("snapshot.rejected.{}", err.reason()));
                self.refused = Some((announcement.epoch, announcement.generation));
            }
        }
    }

    fn install(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        let decoded = snapshot::decode(bytes)?;
        snapshot::admit(self.installed.as_ref().map(|i| &i.held), &decoded)?;
        let snapshot_keys = KeyRing::from_specs(&decoded.content.keys)
            .map_err(|e| SnapshotError::Invalid(format!("keys: {e}")))?;
        let keys = self
            .settings
            .static_keys
            .merge(&snapshot_keys)
            .map_err(|e| SnapshotError::Invalid(format!("keys: {e}")))?;
        if self.installed.as_ref().is_some_and(|i| i.keys != keys) {
            self.cache.clear();
        }
        let index = Index::build(&decoded.content);
        let generation = decoded.header.generation;
        self.installed = Some(Rc::new(Installed {
            held: Held {
                epoch: decoded.header.epoch,
                generation,
                repositories: index.len(),
            },
            published_at: decoded.header.published_at,
            index,
            keys,
        }));
        self.refused = None;
        self.stats.gauge("snapshot.generation", generation);
        self.stats.count("snapshot.installed");
        host::log(
            LogLevel::Info,
            &format!("installed snapshot generation {generation}"),
        );
        Ok(())
    }

    /// Whether a snapshot is installed and recently confirmed.
    pub fn readiness(&self, now: u64) -> Readiness {
        if self.installed.is_none() {
            return Readiness::NoSnapshot;
        }
        let unconfirmed_secs = now.saturating_sub(self.confirmed_at);
        if unconfirmed_secs > self.settings.max_staleness_secs {
            Readiness::Stale { unconfirmed_secs }
        } else {
            Readiness::Ready
        }
    }
}
