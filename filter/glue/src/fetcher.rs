//! The snapshot fetcher: long-polls the sidecar and moves each answer between the host and
//! the core's `fetch::Fetch`, which decides what to publish and what to confirm, and
//! `backoff::Backoff`, which decides when to try again after a failure.
//!
//! One per Envoy process. The host publishes what it is told to (wasm: into shared data for
//! the workers; native: into the one index every worker thread reads); if publishing fails
//! the fetcher resumes from what the host really holds rather than believe it published. It
//! never serves requests and never decides anything itself.

use std::time::Duration;

use registry_gate_core::backoff::Backoff;
use registry_gate_core::config::FetcherSettings;
use registry_gate_core::fetch::{Announcement, Answer, Fetch, Step};
use registry_gate_core::generation::Generation;
use registry_gate_core::snapshot::Schema;

use crate::host::{Env, HostError, Level};

/// What the fetcher needs from its host, beside the clock and the log.
pub trait FetchHost: Env {
    /// Eight random bytes, or `None` if the host refuses.
    fn random(&mut self) -> Option<u64>;

    /// Starts an HTTP call; its answer comes back through [`Fetcher::on_response`] with the
    /// token returned.
    fn dispatch(
        &mut self,
        cluster: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<u64, HostError>;

    /// A header of the answer being delivered.
    fn response_header(&mut self, name: &str) -> Option<Vec<u8>>;

    /// The body of the answer being delivered (`size` bytes); a host may hand over the bytes
    /// it received rather than copy them, as each answer's body is asked for once.
    fn response_body(&mut self, size: usize) -> Result<Vec<u8>, HostError>;

    /// Hands the workers a new snapshot and its announcement. The body is the one
    /// [`FetchHost::response_body`] gave, passed on so a host that keeps it keeps these bytes
    /// and makes no copy.
    fn publish(&mut self, body: Vec<u8>, announcement: &Announcement) -> Result<(), HostError>;

    /// Tells the workers the held snapshot was confirmed.
    fn confirm(&mut self, announcement: &Announcement) -> Result<(), HostError>;

    /// The snapshot the workers hold now, as published (`None`: none).
    fn published(&mut self) -> Option<Vec<u8>>;

    /// Adds `by` to the counter `registry_gate.<name>`.
    fn counter(&mut self, name: &str, by: u64);
}

/// Where the fetch loop is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Next fetch not before this time (ms).
    Idle { next_at_ms: u64 },
    /// A call is in flight.
    InFlight { token: u64 },
}

/// The fetcher's state.
#[derive(Debug)]
pub struct Fetcher {
    settings: FetcherSettings,
    fetch: Fetch,
    backoff: Backoff,
    state: State,
}

/// How often the host should call [`Fetcher::on_tick`] (it only schedules retries;
/// long-polls re-arm at once).
pub const TICK: Duration = Duration::from_millis(50);

impl Fetcher {
    /// Starts from whatever the host already holds (wasm shared data survives VM reloads),
    /// so a restart never goes back a generation. The first fetch waits a random part of
    /// `retry_ms`, so Envoys restarting together do not call the sidecar in lockstep.
    pub fn new(host: &mut impl FetchHost, settings: FetcherSettings) -> Fetcher {
        let backoff = Backoff::new(settings.retry_ms, settings.retry_max_ms);
        let random = random(host);
        let first_at_ms = host.now_ms().saturating_add(backoff.first_delay_ms(random));
        let fetch = Fetch::resume(settings.publisher_keys.clone(), host.published().as_deref());
        Fetcher {
            settings,
            fetch,
            backoff,
            state: State::Idle {
                next_at_ms: first_at_ms,
            },
        }
    }

    /// The generation published last, if any.
    pub fn held(&self) -> Option<&Generation> {
        self.fetch.held()
    }

    /// Timer: start a fetch when one is due.
    pub fn on_tick(&mut self, host: &mut impl FetchHost) {
        if let State::Idle { next_at_ms } = self.state {
            if host.now_ms() >= next_at_ms {
                self.start(host);
            }
        }
    }

    fn start(&mut self, host: &mut impl FetchHost) {
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
        match host.dispatch(&self.settings.cluster, &headers, timeout) {
            Ok(token) => self.state = State::InFlight { token },
            Err(error) => {
                host.log(
                    Level::Warn,
                    &format!("cannot call cluster {}: {error}", self.settings.cluster),
                );
                self.retry_later(host);
            }
        }
    }

    fn retry_later(&mut self, host: &mut impl FetchHost) {
        host.counter("snapshot.fetch_failures", 1);
        let random = random(host);
        let pause = self.backoff.failed(random);
        self.state = State::Idle {
            next_at_ms: host.now_ms().saturating_add(pause),
        };
    }

    /// The sidecar answered call `token` (or the call failed: then there is no `:status`).
    pub fn on_response(&mut self, host: &mut impl FetchHost, token: u64, body_size: usize) {
        if self.state != (State::InFlight { token }) {
            return;
        }
        let status = host.response_header(":status");
        let now = host.now_secs();
        let mut body = Vec::new();
        let etag;
        let answer = match status.as_deref() {
            Some(b"200") if body_size > self.settings.max_snapshot_bytes => {
                host.log(
                    Level::Warn,
                    &format!("snapshot refused: {body_size} bytes exceed max_snapshot_bytes"),
                );
                host.counter("snapshot.rejected.too_large", 1);
                return self.retry_later(host);
            }
            Some(b"200") => match host.response_body(body_size) {
                Ok(bytes) => {
                    body = bytes;
                    Answer::Snapshot(&body)
                }
                Err(error) => {
                    host.log(Level::Warn, &error.to_string());
                    return self.retry_later(host);
                }
            },
            Some(b"304") => {
                etag = host.response_header("etag");
                Answer::NotModified {
                    etag: etag.as_deref(),
                }
            }
            other => {
                let status = other
                    .and_then(|s| std::str::from_utf8(s).ok())
                    .and_then(|s| s.parse().ok());
                host.log(Level::Warn, &failure(status));
                Answer::Failed { status }
            }
        };
        match self.fetch.answer(answer, now) {
            // The very bytes received are handed over.
            Step::Publish(announcement) => match host.publish(body, &announcement) {
                Ok(()) => {
                    host.log(
                        Level::Info,
                        &format!(
                            "published snapshot generation {} to workers",
                            announcement.generation()
                        ),
                    );
                    self.again(host);
                }
                Err(error) => {
                    host.log(Level::Warn, &error.to_string());
                    // Hold what the workers really hold, not what we meant to hand them.
                    self.fetch = Fetch::resume(
                        self.settings.publisher_keys.clone(),
                        host.published().as_deref(),
                    );
                    self.retry_later(host);
                }
            },
            Step::Confirm(announcement) => match host.confirm(&announcement) {
                Ok(()) => self.again(host),
                Err(error) => {
                    host.log(Level::Warn, &error.to_string());
                    self.retry_later(host);
                }
            },
            Step::Refused(err) => {
                host.log(Level::Warn, &format!("snapshot refused: {err}"));
                host.counter(&format!("snapshot.rejected.{}", err.reason()), 1);
                self.retry_later(host);
            }
            Step::Retry => self.retry_later(host),
        }
    }

    /// The fetch succeeded: poll again at once, and back off from scratch next time.
    fn again(&mut self, host: &mut impl FetchHost) {
        self.backoff.succeeded();
        self.state = State::Idle { next_at_ms: 0 };
        self.start(host);
    }
}

/// What the log says of a failed fetch.
fn failure(status: Option<u16>) -> String {
    match status {
        // A sidecar before schema 2 refuses the schema this fetcher announces.
        Some(406) => format!(
            "snapshot fetch refused (406): the sidecar cannot serve snapshot schema {} (signed \
             index); upgrade the sidecars before the filters. The last good snapshot keeps \
             serving until max_staleness_secs",
            Schema::CURRENT
        ),
        Some(status) => format!("snapshot fetch failed: status {status}"),
        None => "snapshot fetch failed: status none (transport failure)".to_owned(),
    }
}

/// Randomness for the backoff's jitter; if the host refuses, the clock's low bits still
/// spread Envoys apart.
fn random(host: &mut impl FetchHost) -> u64 {
    match host.random() {
        Some(random) => random,
        None => host.now_ms(),
    }
}
