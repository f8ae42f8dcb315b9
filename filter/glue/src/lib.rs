//! What a registry-gate filter does between Envoy and the core, written once for both
//! builds: the proxy-wasm module (`filter/wasm`) and the native dynamic module
//! (`filter/native`) each implement the [`Host`] traits over their ABI and drive these types
//! from their hooks.
//!
//! - `host`: the traits a build implements, and the [`Action`] a hook returns
//! - `worker`: one worker's gate, applying its verdicts, taking in snapshots
//! - `exchange`: one request and its response (the Flatpak index state machine)
//! - `budget`: the Flatpak index bytes held at once
//! - `fetcher`: the long-poll of the sidecar (what to send, what each answer means)
//! - `tally`: turning the gate's counters into stat increments
//!
//! Nothing here performs I/O or reads a clock except through a host, and nothing here
//! decides: the gate does.

mod budget;
mod exchange;
mod fetcher;
mod host;
mod tally;
mod worker;

#[cfg(test)]
mod fake;

pub use budget::Budget;
pub use exchange::Exchange;
pub use fetcher::{FetchHost, Fetcher, TICK};
pub use host::{Action, Env, Host, HostError, Level};
pub use tally::{metric_names, Tally};
pub use worker::{respond, Installed, Step, Worker, PEER_CERTIFICATE_SUBJECT};
