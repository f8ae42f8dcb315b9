//! The host seam: everything the worker logic needs from Envoy, as a trait each build
//! implements over its ABI (and the tests over a fake that records every edit).
//!
//! Every call that can fail returns a [`HostError`] naming the call and the status the host
//! gave, so the caller can fail closed; none of them may panic.

use registry_gate_core::reply::Reply;

/// A host call that did not succeed: the ABI status it returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError {
    pub call: &'static str,
    pub status: u32,
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "host call {} failed with status {}",
            self.call, self.status
        )
    }
}

/// Log levels the filter uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Critical,
}

/// What a request or response hook tells Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Go on to the next filter.
    Continue,
    /// Hold what came so far: a local reply was sent (the request must never continue), or a
    /// response body is being buffered.
    Stop,
}

/// The clock and the log: all that the timer-driven parts (taking in a snapshot, the
/// fetcher) need.
pub trait Env {
    /// Host wall clock in whole seconds since the Unix epoch (0 if the host cannot tell:
    /// tokens then look issued in the future and snapshots stale, so the gate fails closed).
    fn now_secs(&mut self) -> u64;

    /// Host wall clock in milliseconds since the Unix epoch (0 if the host cannot tell).
    fn now_ms(&mut self) -> u64;

    fn log(&mut self, level: Level, message: &str);
}

/// The calls one HTTP stream's hooks make.
pub trait Host: Env {
    /// Sets (replaces) a request header.
    fn set_request_header(&mut self, name: &str, value: &[u8]) -> Result<(), HostError>;

    /// Removes every copy of a request header.
    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError>;

    /// A response header (`None` if absent; any failure is an error).
    fn response_header(&mut self, name: &str) -> Result<Option<Vec<u8>>, HostError>;

    /// Removes every copy of a response header.
    fn remove_response_header(&mut self, name: &str) -> Result<(), HostError>;

    /// Moves the response body chunk just received (`size` bytes) out of Envoy onto the end
    /// of `held`, so nothing unfiltered can leave. At `end_of_stream` the chunk may stay in
    /// Envoy's buffer: the local reply that follows replaces the whole response.
    fn take_response_body(
        &mut self,
        size: usize,
        held: &mut Vec<u8>,
        end_of_stream: bool,
    ) -> Result<(), HostError>;

    /// Sends a local reply.
    fn send_reply(&mut self, reply: &Reply) -> Result<(), HostError>;

    /// Writes a filter-state value for the access log (`registry_gate.identity`, ...).
    fn set_filter_state(&mut self, name: &str, value: &[u8]) -> Result<(), HostError>;

    /// The subject DN of the downstream connection's verified client certificate, if any.
    fn peer_certificate(&mut self) -> Option<Vec<u8>>;
}
