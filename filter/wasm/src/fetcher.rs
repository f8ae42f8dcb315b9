//! The snapshot fetcher: the singleton (`envoy.bootstrap.wasm`) root context that long-polls
//! the sidecar, validates each snapshot and publishes it into shared data for the workers.
//!
//! One per Envoy process. A snapshot is published only if it decodes, validates and is newer
//! (or from a new epoch) than the one already in shared data; otherwise it is counted and the
//! last good one stays. Every successful answer (200 or 304) refreshes the confirmation time
//! the workers use for staleness. It never serves requests.

use std::time::Duration;

use proxy_wasm::types::LogLevel;
use registry_gate_core::config::FetcherSettings;
use registry_gate_core::snapshot::{self, Held, SnapshotError};

use crate::host;
use crate::shared::{self, Announcement, SNAPSHOT_KEY};
use crate::stats::Stats;

/// Where the fetch loop is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Next fetch not before this time (ms).
    Idle { next_at_ms: u64 },
    /// A call is in flight.
    InFlight { token: u32 },
}

/// The fetcher's state.
#[derive(Debug)]
pub struct Fetcher {
    settings: FetcherSettings,
    held: Option<Held>,
    state: State,
    stats: Stats,
}

/// Tick period of the fetcher's timer (it only schedules retries; long-polls re-arm at once).
pub const TICK: Duration = Duration::from_millis(50);

impl Fetcher {
    /// Starts from whatever a previous fetcher instance already published (shared data
    /// survives VM reloads), so a restart never goes back a generation.
    pub fn new(settings: FetcherSettings) -> Fetcher {
        let held = host::shared_data(SNAPSHOT_KEY)
            .and_then(|bytes| snapshot::decode(&bytes).ok())
            .map(|s| Held {
                epoch: s.header.epoch,
                generation: s.header.generation,
                repositories: s.content.repositories.len(),
            });
        Fetcher {
            settings,
            held,
            state: State::Idle { next_at_ms: 0 },
            stats: Stats::new(),
        }
    }

    /// Timer: start a fetch when one is due.
    pub fn on_tick(&mut self) {
        if let State::Idle { next_at_ms } = self.state {
            if host::now_ms() >= next_at_ms {
                self.start();
            }
        }
    }

    fn start(&mut self) {
        let etag = self
            .held
            .as_ref()
            .map(|h| format!("\"{}.{}\"", h.epoch, h.generation));
        let path = format!("{}?wait={}", self.settings.path, self.settings.wait_secs);
        let mut headers = vec![
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", self.settings.authority.as_str()),
            ("accept", "application/json"),
        ];
        if let Some(etag) = &etag {
            headers.push(("if-none-match", etag.as_str()));
        }
        let bearer = self
            .settings
            .authorization
            .as_ref()
            .map(|secret| format!("Bearer {secret}"));
        if let Some(bearer) = &bearer {
            headers.push(("authorization", bearer.as_str()));
        }
        let timeout = Duration::from_millis(self.settings.timeout_ms);
        match host::dispatch(&self.settings.cluster, headers, timeout) {
            Ok(token) => self.state = State::InFlight { token },
            Err(status) => {
                host::log(
                    LogLevel::Warn,
                    &format!("cannot call cluster {}: {status:?}", self.settings.cluster),
                );
                self.retry_later();
            }
        }
    }

    fn retry_later(&mut self) {
        self.stats.count("snapshot.fetch_failures");
        self.state = State::Idle {
            next_at_ms: host::now_ms().saturating_add(self.settings.retry_ms),
        };
    }

    /// The sidecar answered (or the call failed: then there is no `:status`).
    pub fn on_response(&mut self, token: u32, body_size: usize) {
        if self.state != (State::InFlight { token }) {
            return;
        }
        let status = host::call_response_header(":status");
        match status.as_deref() {
            Some("200") => {
                if body_size > self.settings.max_snapshot_bytes {
                    self.reject(&SnapshotError::Malformed(format!(
                        "{body_size} bytes exceed max_snapshot_bytes"
                    )));
                    return;
                }
                let body = host::call_response_body(body_size).unwrap_or_default();
                match self.accept(&body) {
                    Ok(()) => self.again(),
                    Err(err) => self.reject(&err),
                }
            }
            Some("304") => {
                self.confirm();
                self.again();
            }
            other => {
                host::log(
                    LogLevel::Warn,
                    &format!(
                        "snapshot fetch failed: status {}",
                        other.unwrap_or("none (transport failure)")
                    ),
                );
                self.retry_later();
            }
        }
    }

    fn again(&mut self) {
        self.state = State::Idle { next_at_ms: 0 };
        self.start();
    }

    fn reject(&mut self, err: &SnapshotError) {
        host::log(LogLevel::Warn, &format!("snapshot refused: {err}"));
        self.stats
            .count(&format!("snapshot.rejected.{}", err.reason()));
        // The sidecar is reachable, so the held snapshot is still the newest good one we
        // can have; keep polling at the retry pace.
        self.retry_later();
    }

    fn accept(&mut self, body: &[u8]) -> Result<(), SnapshotError> {
        let decoded = snapshot::decode(body)?;
        match snapshot::admit(self.held.as_ref(), &decoded) {
            Ok(()) => {}
            // The same generation again (e.g. after a fetcher restart): just a confirmation.
            Err(SnapshotError::NotNewer { held, offered }) if held == offered => {
                self.confirm();
                return Ok(());
            }
            Err(err) => return Err(err),
        }
        let held = Held {
            epoch: decoded.header.epoch,
            generation: decoded.header.generation,
            repositories: decoded.content.repositories.len(),
        };
        let announcement = Announcement {
            epoch: held.epoch.clone(),
            generation: held.generation,
            confirmed_at: host::now_secs(),
        };
        if !shared::publish(body, &announcement) {
            return Err(SnapshotError::Malformed(
                "shared data refused the snapshot".into(),
            ));
        }
        self.stats.gauge("snapshot.generation", held.generation);
        host::log(
            LogLevel::Info,
            &format!(
                "published snapshot generation {} to workers",
                held.generation
            ),
        );
        self.held = Some(held);
        Ok(())
    }

    fn confirm(&mut self) {
        if let Some(held) = &self.held {
            shared::announce(&Announcement {
                epoch: held.epoch.clone(),
                generation: held.generation,
                confirmed_at: host::now_secs(),
            });
        }
    }
}
