//! Registry bearer-token verification (JWS compact form only) and the per-VM cache of
//! verified tokens.
//!
//! Owns: the algorithm allow-list, key lookup by `kid`, the registered-claim checks and the
//! registry claim set that the sidecar also uses when it mints tokens. It must never take the
//! algorithm or key material from the token itself, never fetch anything, and never panic on
//! input: every failure is a [`TokenError`] with a stable reason for stats.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::scope::AccessEntry;

/// Signature algorithms the filter can verify. The allow-list comes from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    EdDSA,
    ES256,
    RS256,
    HS256,
}

/// A verification key as it appears in configuration and in a snapshot's key set: a JWK
/// (RFC 7517) carrying the `kid` it is selected by and the one algorithm it may be used with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySpec {
    pub kid: String,
    pub alg: Algorithm,
    /// The key members (`kty`, `crv`, `x`, `y`, `n`, `e`, `k`), kept as JSON so the wire
    /// form round-trips exactly.
    #[serde(flatten)]
    pub jwk: serde_json::Map<String, serde_json::Value>,
}

/// The registry claim set (distribution's JWT profile). The sidecar mints exactly this; the
/// filter reads it after the signature and time checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryClaims {
    pub iss: String,
    /// Authenticated user; empty for an anonymous token.
    #[serde(default)]
    pub sub: String,
    pub aud: Audience,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Vec<AccessEntry>>,
}

/// `aud` may be one string or a list (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

/// Why a token was refused. `reason()` names it for stats and logs.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenError {
    #[error("token is larger than the configured limit")]
    TooLarge,
    #[error("token is not a compact JWS")]
    BadFormat,
    #[error("token header is malformed")]
    BadHeader,
    #[error("algorithm is not allowed")]
    AlgorithmNotAllowed,
    #[error("unknown key id")]
    UnknownKey,
    #[error("header carries key material ({0})")]
    KeyMaterialInHeader(&'static str),
    #[error("header has an unsupported crit parameter")]
    UnsupportedCrit,
    #[error("signature does not verify")]
    BadSignature,
    #[error("claims are malformed")]
    BadClaims,
    #[error("token has no exp claim")]
    MissingExpiration,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("issuer does not match")]
    WrongIssuer,
    #[error("audience does not match")]
    WrongAudience,
    #[error("token lifetime exceeds the configured maximum")]
    LifetimeTooLong,
}
