//! Everything Katello: its sync API (`PUT /container_gateway/repository_list` and its
//! siblings, `GET /container_gateway/users`) as pure functions — the bodies Katello sends,
//! decoded into a typed [`Change`], and how each change replaces its part of a snapshot
//! [`Content`](registry_gate_core::snapshot::Content) — and the client that forwards logins to
//! Katello's registry API.
//!
//! `form` (Rack-compatible nested form parsing) and `sync` (payload shapes, validation and
//! replace semantics) never do I/O, publish, authenticate or map errors to HTTP: the routes
//! that call them do that. `client` is the one place that talks to Katello.

pub mod client;
pub mod form;
pub mod sync;

#[cfg(test)]
mod wire;

pub use client::{
    ClientIdentity, KatelloClient, KatelloConfigError, KatelloError, KatelloSettings, TokenAnswer,
};
pub use form::{parse_nested_query, FormError, FormLimits};
pub use sync::{apply, decode, decode_value, users, Applied, Change, Endpoint, SyncError};
