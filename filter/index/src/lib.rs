//! registry-gate's snapshot index, schema 2: everything the gate decides from, laid out as
//! tables of little-endian integers and byte strings that every reader queries in place.
//!
//! One crate owns the format: the sidecar builds an index once per publish ([`Builder`]) and
//! signs it ([`Signer`]); the filter's fetcher checks the signature once ([`verify`]); every
//! reader — the wasm workers, the native module, the ext_authz check, the token endpoint —
//! validates the bytes once ([`Index::open`]) and then answers every query from them without
//! building a map. It must never read out of bounds or panic on any bytes, never assume
//! alignment, and never accept an index it does not fully understand (an unknown major, flag
//! or required feature). It has no I/O and no clock.

mod build;
mod error;
mod index;
pub mod layout;
pub mod names;
mod signature;
mod tables;
mod validate;

pub use build::{BuildError, Builder, Stamp};
pub use error::IndexError;
pub use index::{check, Index, Repository, Summary};
pub use layout::Part;
pub use signature::{verify, PublisherKey, PublisherKeyError, Signer};
pub use tables::Ids;
pub use validate::{KNOWN_FEATURES, MAX_KEYS, MAX_PRINCIPALS, MAX_REPOSITORIES};

#[cfg(test)]
mod tests;
