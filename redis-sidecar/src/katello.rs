//! Katello's sync API (`PUT /container_gateway/repository_list` and its siblings,
//! `GET /container_gateway/users`) as pure functions: the bodies Katello sends, decoded into a
//! typed [`Change`], and how each change replaces its part of a snapshot
//! [`Content`](registry_gate_core::snapshot::Content).
//!
//! Owns the wire forms (`form`: Rack-compatible nested form parsing; `sync`: the payload
//! shapes, their validation and the replace semantics). It must never do I/O, publish,
//! authenticate or map errors to HTTP: the routes that call it do that.

pub mod form;
pub mod sync;

#[cfg(test)]
mod wire;

pub use form::{parse_nested_query, FormError, FormLimits};
pub use sync::{apply, decode, users, Applied, Change, Endpoint, SyncError};
