//! One worker's gate and the bytes it moves between Envoy and the gate.
//!
//! Per request it picks the head out of the header pairs, asks the gate, and applies the
//! verdict through the [`Host`]: the identity header set (the client's copy removed only when
//! the client sent one), `Authorization` removed unless configured otherwise, or a local
//! reply sent. It takes in the snapshot a fetcher announces when the gate asks for it. For
//! the Flatpak index it moves the upstream's answer: its head to the gate, its body to the
//! gate's filter and the filtered copy back. It decides nothing itself.

use registry_gate_core::config::Settings;
use registry_gate_core::fetch::Announcement;
use registry_gate_core::flatpak::{self, Plan};
use registry_gate_core::gate::{
    Forward, Gate, RequestHead, Verdict, FLATPAK_INDEX_REQUEST_HEADERS,
    FLATPAK_INDEX_RESPONSE_HEADERS,
};
use registry_gate_core::generation::Generation;
use registry_gate_core::identity::Identity;
use registry_gate_core::refusal::Outcome;
use registry_gate_core::reply::Reply;
use registry_gate_core::snapshot::SnapshotError;

use crate::budget::{Budget, Reservation};
use crate::host::{Action, Env, Host, HostError, Level};

/// Envoy's attribute holding the subject DN of the downstream connection's client
/// certificate; present only once the listener's validation context verified it.
pub const PEER_CERTIFICATE_SUBJECT: [&str; 2] = ["connection", "subject_peer_certificate"];

/// A worker's gate and what it needs beside it.
#[derive(Debug)]
pub struct Worker {
    gate: Gate,
    /// `settings.identity_header`, held apart so a request borrows it while the gate is busy.
    identity_header: String,
    /// `settings.access_log_state`.
    log_state: bool,
    /// This worker's random id in the access log (`registry_gate.worker`), so each worker's
    /// decisions can be followed; `-` if the host gave no randomness.
    id: String,
    /// Requests this worker decided, logged after the id (`<id>.<n>`): the order of its
    /// decisions, which the access log's start times (per millisecond) cannot give.
    decided: u64,
    /// `settings.client_certificate_header`: picked out of every request, removed from
    /// every forwarded one.
    certificate_header: Option<String>,
    /// The Flatpak index bytes this worker's answers (the native build: every worker's) may
    /// hold at once.
    budget: Budget,
}

/// A snapshot a worker took in: what its log line and gauge report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub generation: Generation,
    pub size: usize,
    /// The copy, the checksum and the validation of the index, and its keys: what a new
    /// snapshot costs this worker, which serves nothing meanwhile.
    pub took_ms: u64,
}

impl std::fmt::Display for Installed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The harness parses this line (tests/src/envoy.rs `parse_log_line`).
        write!(
            f,
            "installed snapshot generation {} ({} bytes) in {} ms",
            self.generation, self.size, self.took_ms
        )
    }
}

impl Worker {
    /// A worker deciding with `gate`, known in the access log as `id`, holding Flatpak index
    /// answers within `budget` (a clone shares it).
    pub fn new(gate: Gate, id: Option<String>, budget: Budget) -> Worker {
        let settings: &Settings = gate.settings();
        Worker {
            budget,
            identity_header: settings.identity_header.clone(),
            log_state: settings.access_log_state,
            certificate_header: settings.client_certificate_header.clone(),
            id: id.unwrap_or_else(|| "-".to_owned()),
            decided: 0,
            gate,
        }
    }

    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    pub fn gate_mut(&mut self) -> &mut Gate {
        &mut self.gate
    }

    /// The gauges a worker reports at `now`: the installed generation, its age and how long
    /// since it was last confirmed.
    pub fn gauges(&self, now: u64) -> Vec<(&'static str, u64)> {
        let mut gauges = Vec::with_capacity(3);
        if let Some(generation) = self.gate.generation() {
            gauges.push(("snapshot.generation", generation.number));
        }
        if let Some(age) = self.gate.age_secs(now) {
            gauges.push(("snapshot.age_seconds", age));
            gauges.push((
                "snapshot.unconfirmed_seconds",
                self.gate.unconfirmed_secs(now),
            ));
        }
        gauges
    }

    /// Takes note of `announcement` and, if the gate wants the announced snapshot, offers it
    /// the bytes `read` returns (`None`: not there after all; nothing changes). Logs what
    /// happened; returns what was installed.
    pub fn take_in(
        &mut self,
        env: &mut impl Env,
        announcement: &Announcement,
        read: impl FnOnce() -> Option<Vec<u8>>,
    ) -> Option<Installed> {
        if !self.gate.announced(announcement) {
            return None;
        }
        let started = env.now_ms();
        let bytes = read()?;
        let size = bytes.len();
        match self.gate.offer(bytes, announcement) {
            Ok(generation) => {
                let installed = Installed {
                    generation,
                    size,
                    took_ms: env.now_ms().saturating_sub(started),
                };
                env.log(Level::Info, &installed.to_string());
                Some(installed)
            }
            Err(err) => {
                refused(env, &err);
                None
            }
        }
    }

    /// One request's headers, given as (lower-case name, value) pairs. With the action, the
    /// caller whose repositories the response must be cut down to, if it must (the Flatpak
    /// index).
    pub fn on_request_headers<'h, H: Host>(
        &mut self,
        host: &mut H,
        pairs: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
    ) -> (Action, Option<Identity>) {
        let now = host.now_secs();
        // The generation deciding this request, for the access log (none before the first).
        let generation = self
            .log_state
            .then(|| self.gate.generation().map(ToString::to_string))
            .flatten();
        let log_state = self.log_state;
        let id = if log_state {
            self.decided = self.decided.wrapping_add(1);
            format!("{}.{}", self.id, self.decided)
        } else {
            String::new()
        };
        let peer_certificate: Option<Vec<u8>>;
        let mut head = RequestHead::from_pairs_with(
            pairs,
            &self.identity_header,
            self.certificate_header.as_deref(),
        );
        // Only when configured and only without `Authorization`: token requests make no
        // host call more.
        if self.gate.wants_peer_certificate(&head) {
            peer_certificate = host.peer_certificate();
            head.peer_certificate = peer_certificate.as_deref();
        }
        match self.gate.check(&head, now) {
            Verdict::Forward(forward) => match apply(
                host,
                &forward,
                &self.identity_header,
                self.certificate_header.as_deref(),
            ) {
                Ok(()) => {
                    if log_state {
                        record(
                            host,
                            &forward.identity,
                            Outcome::Allowed,
                            generation.as_deref(),
                            &id,
                        );
                    }
                    (Action::Continue, forward.filter_for)
                }
                Err(error) => (self.fail(host, error), None),
            },
            Verdict::Respond {
                reply,
                outcome,
                identity,
            } => {
                if log_state {
                    let identity = identity.as_deref().unwrap_or("-");
                    record(host, identity, outcome, generation.as_deref(), &id);
                }
                (respond(host, &reply), None)
            }
        }
    }

    /// The upstream's response head to a Flatpak index request: pass an upstream error
    /// through, refuse what cannot be filtered, refuse (503) what the budget has no room for
    /// (a declared `Content-Length` is reserved whole, now), or hold the head (its length and
    /// validators removed) while the body is buffered.
    pub fn on_flatpak_response_headers(
        &mut self,
        host: &mut impl Host,
        end_of_stream: bool,
    ) -> Step {
        let head = host.response_header(":status").and_then(|status| {
            let encoding = host.response_header("content-encoding")?;
            let length = host.response_header("content-length")?;
            Ok((status, encoding, length))
        });
        let (status, encoding, length) = match head {
            Ok(head) => head,
            Err(error) => return Step::Answered(self.fail(host, error)),
        };
        let declared = flatpak::declared_length(length.as_deref());
        match self
            .gate
            .flatpak_response_head(status.as_deref(), encoding.as_deref(), declared)
        {
            Ok(Plan::PassThrough) => Step::Done(Action::Continue),
            Ok(Plan::Filter) if end_of_stream => {
                // No body (HEAD, or an empty answer): nothing to filter, nothing shown; the
                // head loses what describes the unfiltered body.
                for header in FLATPAK_INDEX_RESPONSE_HEADERS {
                    if let Err(error) = host.remove_response_header(header) {
                        return Step::Answered(self.fail(host, error));
                    }
                }
                Step::Done(Action::Continue)
            }
            // Reserved whole before any of the body moves; without a length, chunk by chunk.
            Ok(Plan::Filter) => match self.budget.reserve(declared.unwrap_or(0)) {
                Some(reservation) => Step::Buffer(Held {
                    body: Vec::new(),
                    reservation,
                }),
                None => self.over_budget(host),
            },
            Err(reply) => Step::Answered(respond(host, &reply)),
        }
    }

    /// A Flatpak index body chunk: move it out of Envoy into `held` (within the bound, and
    /// within the budget, else 503 before it moves) until the end, then answer with the
    /// gate's reply: the filtered index, or the error. The upstream's head is still held, so
    /// the local reply replaces it whole.
    ///
    /// The body is kept here rather than in Envoy's buffer, and the filtered index goes out
    /// as a local reply rather than as a rewritten body: Envoy answers 500 once a buffered
    /// body passes the stream's buffer limit, 64 KiB on an HTTP/2 stream of the local
    /// listener, far below an index's size. `flatpak_index_max_bytes` bounds `held` instead.
    pub fn on_flatpak_response_body(
        &mut self,
        host: &mut impl Host,
        caller: &Identity,
        mut held: Held,
        body_size: usize,
        end_of_stream: bool,
    ) -> Step {
        let size = held.body.len().saturating_add(body_size);
        if let Err(reply) = self.gate.flatpak_buffered(size) {
            return Step::Answered(respond(host, &reply));
        }
        if !held.reservation.grow_to(size) {
            return self.over_budget(host);
        }
        if let Err(error) = host.take_response_body(body_size, &mut held.body, end_of_stream) {
            return Step::Answered(self.fail(host, error));
        }
        if !end_of_stream {
            return Step::Buffer(held);
        }
        let mut kept = Vec::new();
        for name in flatpak::KEPT_HEADERS {
            match host.response_header(name) {
                Ok(Some(value)) => kept.push((name, value)),
                Ok(None) => {}
                Err(error) => return Step::Answered(self.fail(host, error)),
            }
        }
        let now = host.now_secs();
        let reply = self.gate.filter_flatpak_index(
            caller,
            &held.body,
            kept.iter().map(|(name, value)| (*name, value.as_slice())),
            now,
        );
        Step::Answered(respond(host, &reply))
    }

    /// No room in the budget for this Flatpak index answer: 503 with `Retry-After`.
    fn over_budget(&mut self, host: &mut impl Host) -> Step {
        let reply = self.gate.flatpak_over_budget();
        Step::Answered(respond(host, &reply))
    }

    /// The glue could not carry out a verdict: answer 500 and count it as internal.
    pub fn fail(&mut self, host: &mut impl Host, error: HostError) -> Action {
        host.log(Level::Warn, &error.to_string());
        let reply = self.gate.internal_error(error.call);
        respond(host, &reply)
    }
}

/// Logs a snapshot the gate refused.
fn refused(env: &mut impl Env, err: &SnapshotError) {
    env.log(Level::Warn, &format!("snapshot refused: {err}"));
}

/// A Flatpak index answer's body so far, moved out of Envoy, and the part of the budget it
/// holds (given back when this is dropped, however the stream ends).
#[derive(Debug)]
pub struct Held {
    body: Vec<u8>,
    reservation: Reservation,
}

/// Where a filtered response stands after a callback.
#[derive(Debug)]
pub enum Step {
    /// Hold the response head and buffer the body.
    Buffer(Held),
    /// Nothing more to do for this response.
    Done(Action),
    /// A local reply was sent instead of the upstream's answer.
    Answered(Action),
}

/// Carries out a forward verdict on the request headers.
fn apply(
    host: &mut impl Host,
    forward: &Forward<'_>,
    identity_header: &str,
    certificate_header: Option<&str>,
) -> Result<(), HostError> {
    if let (true, Some(name)) = (forward.remove_client_certificate_header, certificate_header) {
        host.remove_request_header(name)?;
    }
    if forward.remove_identity {
        host.remove_request_header(identity_header)?;
    }
    host.set_request_header(identity_header, forward.identity.as_bytes())?;
    if forward.remove_authorization {
        host.remove_request_header("authorization")?;
    }
    if forward.filter_for.is_some() {
        for header in FLATPAK_INDEX_REQUEST_HEADERS {
            host.remove_request_header(header)?;
        }
    }
    Ok(())
}

/// Sends a local reply. Whether or not the host accepted it, the request must not continue.
pub fn respond(host: &mut impl Host, reply: &Reply) -> Action {
    if let Err(error) = host.send_reply(reply) {
        host.log(Level::Warn, &error.to_string());
    }
    Action::Stop
}

/// Access-log state, when configured: the identity, the decision, the worker that decided
/// with its decision count (`<id>.<n>`) and the generation (`<epoch>.<number>`) of the
/// snapshot it decided by; no generation before one is installed (the log prints `-`).
fn record(
    host: &mut impl Host,
    identity: &str,
    outcome: Outcome,
    generation: Option<&str>,
    id: &str,
) {
    let generation = generation.map(|generation| ("registry_gate.generation", generation));
    for (name, value) in [
        ("registry_gate.identity", identity),
        ("registry_gate.decision", outcome.as_str()),
        ("registry_gate.worker", id),
    ]
    .into_iter()
    .chain(generation)
    {
        if let Err(error) = host.set_filter_state(name, value.as_bytes()) {
            host.log(Level::Warn, &error.to_string());
        }
    }
}
