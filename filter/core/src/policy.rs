//! Deployment policy the decision and the catalog read: where clients get tokens, whether
//! writes are allowed at all, and catalog page sizes. Plain data built by `config`; it decides
//! nothing by itself.

use crate::reply::Challenge;

/// Deployment policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub challenge: Challenge,
    /// Writes (push, delete) are refused with `UNSUPPORTED` unless this is set.
    pub allow_push: bool,
    /// Catalog page size when `n` is absent.
    pub catalog_default_page: usize,
    /// Largest catalog / search page served.
    pub catalog_max_page: usize,
}
