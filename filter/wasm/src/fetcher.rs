//! The snapshot fetcher: long-polls the sidecar and moves each answer between the host and
//! the core's `fetch::Fetch`, which decides what to publish and what to confirm, and
//! `backoff::Backoff`, which decides when to try again after a failure.
//!
//! One per Envoy process: the singleton (`envoy.bootstrap.wasm`) root context, or the worker
//! root context holding the fetcher lease (`elected`). It writes the snapshot bytes, then the
//! announcement, into shared data; if a write fails it re-reads what shared data really holds
//! rather than believe it published. It never serves requests and never decides anything
//! itself.

use std::time::Duration;

use registry_gate_core::backoff::Backoff;
use registry_gate_core::config::FetcherSettings;
use registry_gate_core::fetch::{Announcement, Answer, Fetch, Step};
use registry_gate_core::snapshot::Schema;

use crate::host::{self, HostError, Level};
use crate::shared::{ANNOUNCEMENT_KEY, SNAPSHOT_KEY};
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
    fetch: Fetch,
    backoff: Backoff,
    state: State,
    stats: Stats,
}

/// Tick period of the fetcher's timer (it only schedules retries; long-polls re-arm at once).
pub const TICK: Duration = Duration::from_millis(50);

impl Fetcher {
    /// Starts from whatever a previous fetcher instance already published (shared data
    /// survives VM reloads), so a restart never goes back a generation. The first fetch
    /// waits a random part of `retry_ms`, so Envoys restarting together do not call the
    /// sidecar in lockstep.
    pub fn new(settings: FetcherSettings) -> Fetcher {
        let backoff = Backoff::new(settings.retry_ms, settings.retry_max_ms);
        let first_at_ms = host::now_ms().saturating_add(backoff.first_delay_ms(random()));
        let fetch = Fetch::resume(
            settings.publisher_keys.clone(),
            host::shared_data(SNAPSHOT_KEY).as_deref(),
        );
        Fetcher {
            settings,
            fetch,
            backoff,
            state: State::Idle {
                next_at_ms: first_at_ms,
            },
            stats: Stats::new(),
        }
    }

    /// Timer: start a fetch when one is due, and report stats.
    pub fn on_tick(&mut self) {
        if let State::Idle { next_at_ms } = self.state {
            if host::now_ms() >= next_at_ms {
                self.start();
            }
        }
        if let Some(generation) = self.fetch.held() {
            let number = generation.number;
            self.stats.gauge("snapshot.generation", number);
        }
    }

    fn start(&mut self) {
        // `schema`: the newest envelope schema this filter reads, so a sidecar that could only
        // serve a major it does not speak says so (406) instead of sending what it refuses.
        let path = format!(
            "{}?wait={}&schema={}",
            self.settings.path,
            self.settings.wait_secs,
            Schema::CURRENT
        );
        let etag = self.fetch.if_none_match();
        let bearer = self
            .settings
            .authorization
            .as_ref()
            .map(|secret| format!("Bearer {secret}"));
        let mut headers = vec![
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", self.settings.authority.as_str()),
            ("accept", "application/vnd.registry-gate.index.v2"),
        ];
        if let Some(etag) = &etag {
            headers.push(("if-none-match", etag.as_str()));
        }
        if let Some(bearer) = &bearer {
            headers.push(("authorization", bearer.as_str()));
        }
        let timeout = Duration::from_millis(self.settings.timeout_ms);
        match host::dispatch(&self.settings.cluster, headers, timeout) {
            Ok(token) => self.state = State::InFlight { token },
            Err(error) => {
                host::log(
                    Level::Warn,
                    &format!("cannot call cluster {}: {error}", self.settings.cluster),
                );
                self.retry_later();
            }
        }
    }

    fn retry_later(&mut self) {
        self.stats.counter("snapshot.fetch_failures", 1);
        let pause = self.backoff.failed(random());
        self.state = State::Idle {
            next_at_ms: host::now_ms().saturating_add(pause),
        };
    }

    /// The sidecar answered (or the call failed: then there is no `:status`).
    pub fn on_response(&mut self, token: u32, body_size: usize) {
        if self.state != (State::InFlight { token }) {
            return;
        }
        let status = host::call_response_header(":status");
        let now = host::now_secs();
        let body;
        let etag;
        let answer = match status.as_deref() {
            Some(b"200") if body_size > self.settings.max_snapshot_bytes => {
                host::log(
                    Level::Warn,
                    &format!("snapshot refused: {body_size} bytes exceed max_snapshot_bytes"),
                );
                self.stats.counter("snapshot.rejected.too_large", 1);
                return self.retry_later();
            }
            Some(b"200") => match host::call_response_body(body_size) {
                Ok(bytes) => {
                    body = bytes;
                    Answer::Snapshot(&body)
                }
                Err(error) => {
                    host::log(Level::Warn, &error.to_string());
                    return self.retry_later();
                }
            },
            Some(b"304") => {
                etag = host::call_response_header("etag");
                Answer::NotModified {
                    etag: etag.as_deref(),
                }
            }
            other => {
                let status = other
                    .and_then(|s| std::str::from_utf8(s).ok())
                    .and_then(|s| s.parse().ok());
                let message = match status {
                    // A sidecar before schema 2 refuses the schema this fetcher announces.
                    Some(406) => format!(
                        "snapshot fetch refused (406): the sidecar cannot serve snapshot schema \
                         {} (signed index); upgrade the sidecars before the filters. The last \
                         good snapshot keeps serving until max_staleness_secs",
                        Schema::CURRENT
                    ),
                    Some(status) => format!("snapshot fetch failed: status {status}"),
                    None => "snapshot fetch failed: status none (transport failure)".to_owned(),
                };
                host::log(Level::Warn, &message);
                Answer::Failed { status }
            }
        };
        match self.fetch.answer(answer, now) {
            Step::Publish { body, announcement } => {
                let written = host::set_shared_data(SNAPSHOT_KEY, body)
                    .and_then(|()| announce(&announcement));
                match written {
                    Ok(()) => {
                        host::log(
                            Level::Info,
                            &format!(
                                "published snapshot generation {} to workers",
                                announcement.generation()
                            ),
                        );
                        self.again();
                    }
                    Err(error) => {
                        host::log(Level::Warn, &error.to_string());
                        // Hold what shared data really holds, not what we meant to write.
                        self.fetch = Fetch::resume(
                            self.settings.publisher_keys.clone(),
                            host::shared_data(SNAPSHOT_KEY).as_deref(),
                        );
                        self.retry_later();
                    }
                }
            }
            Step::Confirm(announcement) => match announce(&announcement) {
                Ok(()) => self.again(),
                Err(error) => {
                    host::log(Level::Warn, &error.to_string());
                    self.retry_later();
                }
            },
            Step::Refused(err) => {
                host::log(Level::Warn, &format!("snapshot refused: {err}"));
                self.stats
                    .counter(&format!("snapshot.rejected.{}", err.reason()), 1);
                self.retry_later();
            }
            Step::Retry => self.retry_later(),
        }
    }

    /// The fetch succeeded: poll again at once, and back off from scratch next time.
    fn again(&mut self) {
        self.backoff.succeeded();
        self.state = State::Idle { next_at_ms: 0 };
        self.start();
    }
}

/// Randomness for the backoff's jitter; if the host refuses, the clock's low bits still
/// spread Envoys apart.
fn random() -> u64 {
    host::random_u64().unwrap_or_else(host::now_ms)
}

fn announce(announcement: &Announcement) -> Result<(), HostError> {
    host::set_shared_data(ANNOUNCEMENT_KEY, &announcement.encode())
}
