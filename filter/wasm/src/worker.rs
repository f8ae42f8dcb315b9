//! One worker VM: its gate, and the bytes it moves between Envoy and the gate.
//!
//! Per request it reads the header map in one host call, asks the gate, and applies the
//! verdict: the identity header set (and the client's copy removed only when the client sent
//! one), `Authorization` removed unless configured otherwise, or a local reply sent. On its
//! timer it reads the fetcher's announcement and offers the snapshot bytes when the gate asks
//! for them, and reports the gate's counters as stats. It decides nothing itself.

use proxy_wasm::types::Action;
use registry_gate_core::config::Settings;
use registry_gate_core::fetch::Announcement;
use registry_gate_core::gate::{Forward, Gate, RequestHead, Verdict};
use registry_gate_core::refusal::Outcome;
use registry_gate_core::reply::Reply;

use crate::host::{self, HostError, Level};
use crate::shared::{ANNOUNCEMENT_KEY, SNAPSHOT_KEY};
use crate::stats::Stats;

/// Per-worker state shared by the root context and its HTTP contexts.
#[derive(Debug)]
pub struct Worker {
    gate: Gate,
    stats: Stats,
    /// `settings.identity_header`, held apart so a request borrows it while the gate is busy.
    identity_header: String,
    /// `settings.access_log_state`.
    log_state: bool,
    /// `settings.client_certificate_header`: picked out of every request, removed from
    /// every forwarded one.
    certificate_header: Option<String>,
}

/// Envoy's attribute holding the subject DN of the downstream connection's client
/// certificate; present only once the listener's validation context verified it.
const PEER_CERTIFICATE_SUBJECT: [&str; 2] = ["connection", "subject_peer_certificate"];

impl Worker {
    pub fn new(settings: Settings) -> Worker {
        let mut stats = Stats::new();
        // One per VM start: a trap makes Envoy reload the VM, which counts here again.
        stats.counter("vm_starts", 1);
        Worker {
            identity_header: settings.identity_header.clone(),
            log_state: settings.access_log_state,
            certificate_header: settings.client_certificate_header.clone(),
            gate: Gate::new(settings),
            stats,
        }
    }

    /// Timer: look for a new generation, then report counters and gauges.
    pub fn on_tick(&mut self) {
        self.refresh();
        let now = host::now_secs();
        if let Some(generation) = self.gate.generation() {
            let number = generation.number;
            self.stats.gauge("snapshot.generation", number);
        }
        if let Some(age) = self.gate.age_secs(now) {
            self.stats.gauge("snapshot.age_seconds", age);
            self.stats.gauge(
                "snapshot.unconfirmed_seconds",
                self.gate.unconfirmed_secs(now),
            );
        }
        self.stats.flush(self.gate.counts());
    }

    /// Offers the announced snapshot to the gate if the gate wants it.
    fn refresh(&mut self) {
        let Some(announcement) =
            host::shared_data(ANNOUNCEMENT_KEY).and_then(|bytes| Announcement::decode(&bytes))
        else {
            return;
        };
        if !self.gate.announced(&announcement) {
            return;
        }
        let Some(bytes) = host::shared_data(SNAPSHOT_KEY) else {
            return;
        };
        match self.gate.offer(&bytes, &announcement) {
            Ok(generation) => host::log(
                Level::Info,
                &format!("installed snapshot generation {generation}"),
            ),
            Err(err) => host::log(Level::Warn, &format!("snapshot refused: {err}")),
        }
    }

    /// One request's headers.
    pub fn on_request_headers(&mut self) -> Action {
        let headers = match host::request_headers() {
            Ok(headers) => headers,
            Err(error) => return self.fail(error),
        };
        if self.gate.generation().is_none() {
            // Just started: the timer may not have run yet.
            self.refresh();
        }
        let now = host::now_secs();
        let log_state = self.log_state;
        let peer_certificate: Option<Vec<u8>>;
        let mut head = RequestHead::from_pairs_with(
            headers.pairs(),
            &self.identity_header,
            self.certificate_header.as_deref(),
        );
        // Only when configured and only without `Authorization`: token requests make no
        // host call more.
        if self.gate.wants_peer_certificate(&head) {
            peer_certificate = host::property(&PEER_CERTIFICATE_SUBJECT);
            head.peer_certificate = peer_certificate.as_deref();
        }
        match self.gate.check(&head, now) {
            Verdict::Forward(forward) => match apply(
                &forward,
                &self.identity_header,
                self.certificate_header.as_deref(),
            ) {
                Ok(()) => {
                    if log_state {
                        record(&forward.identity, Outcome::Allowed);
                    }
                    Action::Continue
                }
                Err(error) => self.fail(error),
            },
            Verdict::Respond { reply, outcome } => {
                if log_state {
                    record("-", outcome);
                }
                respond(&reply)
            }
        }
    }

    /// The glue could not carry out a verdict: answer 500 and count it as internal.
    fn fail(&mut self, error: HostError) -> Action {
        host::log(Level::Warn, &error.to_string());
        let reply = self.gate.internal_error(error.call);
        respond(&reply)
    }
}

/// Carries out a forward verdict on the request headers.
fn apply(
    forward: &Forward<'_>,
    identity_header: &str,
    certificate_header: Option<&str>,
) -> Result<(), HostError> {
    if let (true, Some(name)) = (forward.remove_client_certificate_header, certificate_header) {
        host::remove_request_header(name)?;
    }
    if forward.remove_identity {
        host::remove_request_header(identity_header)?;
    }
    host::set_request_header(identity_header, forward.identity.as_bytes())?;
    if forward.remove_authorization {
        host::remove_request_header("authorization")?;
    }
    Ok(())
}

/// Sends a local reply. Whether or not the host accepted it, the request must not continue.
pub fn respond(reply: &Reply) -> Action {
    if let Err(error) = host::send_reply(reply) {
        host::log(Level::Warn, &error.to_string());
    }
    Action::Pause
}

/// Access-log state (`%FILTER_STATE(wasm.registry_gate.*:PLAIN)%`), when configured.
fn record(identity: &str, outcome: Outcome) {
    for (name, value) in [
        ("registry_gate.identity", identity),
        ("registry_gate.decision", outcome.as_str()),
    ] {
        if let Err(error) = host::set_filter_state(name, value.as_bytes()) {
            host::log(Level::Warn, &error.to_string());
        }
    }
}
