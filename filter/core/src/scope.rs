//! Docker scopes and the `access` claim: parsing `repository:<name>:<actions>` strings and
//! checking whether a token's `access` list covers a request.
//!
//! Parsing is bounded (entry count, length) and follows the distribution scope grammar,
//! where a resource name may itself contain one `:` (a registry port). It never grants
//! anything by itself: the decision combines this with the snapshot.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::route::Action;

/// One entry of a registry token's `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessEntry {
    #[serde(rename = "type")]
    pub resource_type: String,
    pub name: String,
    pub actions: Vec<String>,
}

/// Why a scope string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScopeError {
    #[error("scope is malformed: {0}")]
    Malformed(&'static str),
    #[error("too many scopes")]
    TooMany,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Action as A;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn smoke() {
        assert_eq!(A::Pull.as_str(), "pull");
    }
}
