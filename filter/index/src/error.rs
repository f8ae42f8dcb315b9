//! Why bytes are not an index this reader may install. One variant per outcome that an
//! operator or a stat tells apart; [`IndexError::reason`] names it for stats.

use thiserror::Error;

use crate::layout::MAJOR;

/// Why an index was refused. Nothing is installed when any of these is returned.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IndexError {
    #[error("not a registry-gate index: {0}")]
    NotIndex(&'static str),
    #[error("index schema major {0} is not supported (this reader understands {MAJOR})")]
    UnsupportedSchema(u16),
    #[error("index is {actual} bytes but its header says {expected}: truncated or padded")]
    Truncated { expected: u64, actual: usize },
    #[error("index checksum does not match its bytes")]
    ChecksumMismatch,
    #[error("index requires unknown features: {0}")]
    UnknownFeatures(String),
    #[error("index is invalid: {0}")]
    Invalid(String),
    #[error("index is not signed")]
    Unsigned,
    #[error(
        "index is signed by publisher key {0}, which is not among the configured publisher_keys"
    )]
    UnknownPublisher(String),
    #[error("index signature does not verify with publisher key {0}")]
    BadSignature(String),
}

impl IndexError {
    /// Stable snake_case name for stats.
    pub fn reason(&self) -> &'static str {
        match self {
            IndexError::NotIndex(_) => "malformed",
            IndexError::UnsupportedSchema(_) => "unsupported_schema",
            IndexError::Truncated { .. } => "truncated",
            IndexError::ChecksumMismatch => "checksum_mismatch",
            IndexError::UnknownFeatures(_) => "unknown_features",
            IndexError::Invalid(_) => "invalid",
            IndexError::Unsigned => "unsigned",
            IndexError::UnknownPublisher(_) => "unknown_publisher",
            IndexError::BadSignature(_) => "bad_signature",
        }
    }
}
