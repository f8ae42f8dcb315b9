//! registry-gate core: everything the filter decides, as plain functions over plain data.
//!
//! This crate owns route parsing, the OCI name grammar, Docker scopes, registry-token
//! verification, the snapshot model and wire format, the access decision and catalog
//! pagination. It must never depend on `proxy-wasm` or perform I/O: the glue crate moves
//! bytes between Envoy and these functions, and the sidecar uses the same snapshot format.

pub mod backoff;
pub mod catalog;
pub mod certificate;
pub mod config;
pub mod decision;
pub mod fetch;
pub mod flatpak;
pub mod gate;
pub mod generation;
pub mod identity;
pub mod index;
pub mod lease;
pub mod policy;
pub mod refusal;
pub mod reply;
pub mod route;
pub mod scope;
pub mod signature;
pub mod snapshot;
pub mod token;
