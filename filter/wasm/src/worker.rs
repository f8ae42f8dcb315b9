//! One worker VM: its gate, and the bytes it moves between Envoy and the gate.
//!
//! Per request it reads the header map in one host call, asks the gate, and applies the
//! verdict: the identity header set (and the client's copy removed only when the client sent
//! one), `Authorization` removed unless configured otherwise, or a local reply sent. On its
//! timer it reads the fetcher's announcement and offers the snapshot bytes when the gate asks
//! for them, and reports the gate's counters as stats. For the Flatpak index it also moves the
//! upstream's answer: its head to the gate, its buffered body to the gate's filter and the
//! filtered copy back. It decides nothing itself.

use proxy_wasm::types::Action;
use registry_gate_core::config::Settings;
use registry_gate_core::fetch::Announcement;
use registry_gate_core::flatpak::{self, Plan};
use registry_gate_core::gate::{
    Forward, Gate, RequestHead, Verdict, FLATPAK_INDEX_REQUEST_HEADERS,
    FLATPAK_INDEX_RESPONSE_HEADERS,
};
use registry_gate_core::identity::Identity;
use registry_gate_core::refusal::Outcome;
use registry_gate_core::reply::Reply;

use crate::crypto::EnvoyCrypto;
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
    /// This VM's random id in the access log (`wasm.registry_gate.worker`), so each worker's
    /// decisions can be followed; `-` if the host gave no randomness.
    vm: String,
    /// Requests this VM decided, logged after the id (`<id>.<n>`): the order of its decisions,
    /// which the access log's start times (per millisecond) cannot give.
    decided: u64,
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
        let mut gate = Gate::new(settings);
        if gate.settings().host_signatures {
            let crypto = EnvoyCrypto::probe();
            host::log(
                Level::Info,
                &format!("signatures checked by the host: {}", crypto.describe()),
            );
            gate.set_signature_host(Box::new(crypto));
        }
        let settings = gate.settings();
        Worker {
            identity_header: settings.identity_header.clone(),
            log_state: settings.access_log_state,
            vm: host::random_id().unwrap_or_else(|| "-".to_owned()),
            decided: 0,
            certificate_header: settings.client_certificate_header.clone(),
            gate,
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
        let started = host::now_ms();
        let Some(bytes) = host::shared_data(SNAPSHOT_KEY) else {
            return;
        };
        let size = bytes.len();
        match self.gate.offer(bytes, &announcement) {
            Ok(generation) => {
                // The copy out of shared data, the checksum and validation of the index, and
                // its keys: what a new snapshot costs this worker, which serves nothing
                // meanwhile.
                let took = host::now_ms().saturating_sub(started);
                self.stats.gauge("snapshot.install_ms", took);
                host::log(
                    Level::Info,
                    &format!(
                        "installed snapshot generation {generation} ({size} bytes) in {took} ms"
                    ),
                );
            }
            Err(err) => host::log(Level::Warn, &format!("snapshot refused: {err}")),
        }
    }

    /// One request's headers. With the action, the caller whose repositories the response
    /// must be cut down to, if it must (the Flatpak index).
    pub fn on_request_headers(&mut self) -> (Action, Option<Identity>) {
        let headers = match host::request_headers() {
            Ok(headers) => headers,
            Err(error) => return (self.fail(error), None),
        };
        if self.gate.generation().is_none() {
            // Just started: the timer may not have run yet.
            self.refresh();
        }
        let now = host::now_secs();
        // The generation deciding this request, for the access log (none before the first).
        let generation = self
            .log_state
            .then(|| self.gate.generation().map(ToString::to_string))
            .flatten();
        let log_state = self.log_state;
        let vm = if log_state {
            self.decided = self.decided.wrapping_add(1);
            format!("{}.{}", self.vm, self.decided)
        } else {
            String::new()
        };
        let vm = vm.as_str();
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
                        record(
                            &forward.identity,
                            Outcome::Allowed,
                            generation.as_deref(),
                            vm,
                        );
                    }
                    (Action::Continue, forward.filter_for)
                }
                Err(error) => (self.fail(error), None),
            },
            Verdict::Respond {
                reply,
                outcome,
                identity,
            } => {
                if log_state {
                    let identity = identity.as_deref().unwrap_or("-");
                    record(identity, outcome, generation.as_deref(), vm);
                }
                (respond(&reply), None)
            }
        }
    }

    /// The upstream's response head to a Flatpak index request: pass an upstream error
    /// through, refuse what cannot be filtered, or hold the head (its length and validators
    /// removed) while the body is buffered.
    pub fn on_flatpak_response_headers(&mut self, end_of_stream: bool) -> Step {
        let head = host::response_header(":status").and_then(|status| {
            let encoding = host::response_header("content-encoding")?;
            let length = host::response_header("content-length")?;
            Ok((status, encoding, length))
        });
        let (status, encoding, length) = match head {
            Ok(head) => head,
            Err(error) => return Step::Answered(self.fail(error)),
        };
        match self.gate.flatpak_response_head(
            status.as_deref(),
            encoding.as_deref(),
            length.as_deref(),
        ) {
            Ok(Plan::PassThrough) => Step::Done(Action::Continue),
            Ok(Plan::Filter) if end_of_stream => {
                // No body (HEAD, or an empty answer): nothing to filter, nothing shown; the
                // head loses what describes the unfiltered body.
                for header in FLATPAK_INDEX_RESPONSE_HEADERS {
                    if let Err(error) = host::remove_response_header(header) {
                        return Step::Answered(self.fail(error));
                    }
                }
                Step::Done(Action::Continue)
            }
            Ok(Plan::Filter) => Step::Buffer,
            Err(reply) => Step::Answered(respond(&reply)),
        }
    }

    /// A Flatpak index body chunk: move it out of Envoy into `held` (within the bound) until
    /// the end, then answer with the gate's reply: the filtered index, or the error. The
    /// upstream's head is still held (`Pause` on response headers is a real StopIteration
    /// with `allow_on_headers_stop_iteration`), so the local reply replaces it whole.
    ///
    /// The body is kept here rather than in Envoy's buffer, and the filtered index goes out
    /// as a local reply rather than through `set_buffer`: Envoy answers 500 (synchronously,
    /// inside the host call) once a buffered body passes the stream's buffer limit, 64 KiB
    /// on an HTTP/2 stream of the local listener, far below an index's size.
    /// `flatpak_index_max_bytes` bounds `held` instead.
    pub fn on_flatpak_response_body(
        &mut self,
        caller: &Identity,
        held: &mut Vec<u8>,
        body_size: usize,
        end_of_stream: bool,
    ) -> Step {
        if let Err(reply) = self
            .gate
            .flatpak_buffered(held.len().saturating_add(body_size))
        {
            return Step::Answered(respond(&reply));
        }
        match host::response_body(body_size) {
            Ok(chunk) => held.extend_from_slice(&chunk),
            Err(error) => return Step::Answered(self.fail(error)),
        }
        if !end_of_stream {
            return match host::replace_response_body(&[]) {
                Ok(()) => Step::Buffer,
                Err(error) => Step::Answered(self.fail(error)),
            };
        }
        let mut kept = Vec::new();
        for name in flatpak::KEPT_HEADERS {
            match host::response_header(name) {
                Ok(Some(value)) => kept.push((name, value)),
                Ok(None) => {}
                Err(error) => return Step::Answered(self.fail(error)),
            }
        }
        let reply = self.gate.filter_flatpak_index(
            caller,
            held,
            kept.iter().map(|(name, value)| (*name, value.as_slice())),
            host::now_secs(),
        );
        Step::Answered(respond(&reply))
    }

    /// The glue could not carry out a verdict: answer 500 and count it as internal.
    fn fail(&mut self, error: HostError) -> Action {
        host::log(Level::Warn, &error.to_string());
        let reply = self.gate.internal_error(error.call);
        respond(&reply)
    }
}

/// Where a filtered response stands after a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Hold the response head and buffer the body (`Action::Pause` in either callback:
    /// `StopIteration` for headers, `StopIterationAndBuffer` for a body chunk).
    Buffer,
    /// Nothing more to do for this response: continue (or pause, after a local reply).
    Done(Action),
    /// A local reply was sent instead of the upstream's answer.
    Answered(Action),
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
    if forward.filter_for.is_some() {
        for header in FLATPAK_INDEX_REQUEST_HEADERS {
            host::remove_request_header(header)?;
        }
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

/// Access-log state (`%FILTER_STATE(wasm.registry_gate.*:PLAIN)%`), when configured: the
/// identity, the decision, the VM that decided with its decision count (`<id>.<n>`) and the
/// generation (`<epoch>.<number>`) of the snapshot it decided by; no generation before one is
/// installed (the log prints `-`).
fn record(identity: &str, outcome: Outcome, generation: Option<&str>, vm: &str) {
    let generation = generation.map(|generation| ("registry_gate.generation", generation));
    for (name, value) in [
        ("registry_gate.identity", identity),
        ("registry_gate.decision", outcome.as_str()),
        ("registry_gate.worker", vm),
    ]
    .into_iter()
    .chain(generation)
    {
        if let Err(error) = host::set_filter_state(name, value.as_bytes()) {
            host::log(Level::Warn, &error.to_string());
        }
    }
}
