//! registry-gate end-to-end harness: starts the real pieces as plain processes on loopback
//! (docker-registry, Redis, registry-gate-sidecar, Envoy running the built filter `.wasm`) and
//! drives them with real clients (skopeo, curl over HTTP/1.1 and HTTP/2). For Katello's side it
//! runs the smart-proxy plugin in a smart-proxy stand-in and calls it the way Katello does
//! (`smart_proxy`, `katello_sync`, `capture`).
//!
//! Used by the scenarios in `tests/tests/*.rs` and by the `demo` binary (`make run`).
//!
//! It must never skip: a missing binary or build artifact is a panic naming the exact path and
//! the `make` target that provides it. It must never sleep in place of a readiness check:
//! every wait polls a condition against a deadline. Every process it starts writes to a log
//! file in the scenario's directory, is killed when its guard drops, and has the tail of its
//! log printed when a test fails.
//!
//! Failing loudly by panicking is this crate's job, so the workspace's no-panic lints are
//! relaxed here (and only here) — the filter and the sidecar keep them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test harness reports failure by panicking with a precise message"
)]

pub mod capture;
pub mod echo;
pub mod envoy;
pub mod expect;
pub mod http;
pub mod issuers;
pub mod katello;
pub mod katello_sync;
pub mod kubernetes;
pub mod oci;
pub mod paths;
pub mod ports;
pub mod previous;
pub mod process;
pub mod pulp;
pub mod redis;
pub mod registry;
pub mod scenario;
pub mod sidecar;
pub mod skopeo;
pub mod smart_proxy;
pub mod stack;
pub mod storm;
pub mod stress;
pub mod sync_run;
pub mod tls;
pub mod tokens;
pub mod wait;

pub use http::{Auth, HttpVersion, Response};
pub use oci::OciImage;
pub use process::Process;
pub use scenario::Scenario;
pub use stack::{Stack, StackOptions};
