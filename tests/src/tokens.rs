//! Minting registry tokens in tests, good and bad, with jwt-compact: with the sidecar's real
//! key ([`SidecarKey`], read from the PEM file the harness had it generate: ES256 or EdDSA) or
//! with a key made up in the test (a forgery), with any claims (expired, wrong audience).
//!
//! Also decodes a token's header and claims without verifying them, to copy the real `kid`.
//! Nothing here is trusted by the gateway; it is what an attacker or a broken issuer sends.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use ed25519_compact::{KeyPair, SecretKey, Seed};
use jwt_compact::alg::{Ed25519, Es256};
use jwt_compact::{Algorithm, AlgorithmExt as _, Claims, Header};
use p256::pkcs8::DecodePrivateKey as _;
use serde::Serialize;

/// jwt-compact's ES256 signing key (p256's ECDSA key).
pub type EsSigningKey = <Es256 as Algorithm>::SigningKey;

/// The registry claim set, as the sidecar mints it (`filter/core` `RegistryClaims`).
#[derive(Debug, Clone, Serialize)]
pub struct RegistryClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<serde_json::Value>,
}

/// A token to mint: claims plus times as Unix seconds.
#[derive(Debug, Clone)]
pub struct Mint {
    pub kid: String,
    pub claims: RegistryClaims,
    pub issued_at: i64,
    pub not_before: i64,
    pub expires_at: i64,
}

impl Mint {
    /// A token like the sidecar's for `sub`: valid from a minute ago for five minutes, with a
    /// pull grant on each of `repositories`.
    pub fn like_sidecar(kid: &str, sub: &str, repositories: &[&str]) -> Mint {
        let now = now_secs();
        let access: Vec<serde_json::Value> = repositories
            .iter()
            .map(
                |name| serde_json::json!({"type": "repository", "name": name, "actions": ["pull"]}),
            )
            .collect();
        Mint {
            kid: kid.to_owned(),
            claims: RegistryClaims {
                iss: crate::sidecar::ISSUER.to_owned(),
                sub: sub.to_owned(),
                aud: crate::sidecar::SERVICE.to_owned(),
                jti: Some(crate::sidecar::random_hex(16)),
                access: Some(serde_json::Value::Array(access)),
            },
            issued_at: now - 60,
            not_before: now - 60,
            expires_at: now + 300,
        }
    }
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn datetime(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_else(|| panic!("timestamp {secs} out of range"))
}

/// Signs `mint` with `key` for `alg` (header `{"alg":..,"kid":..,"typ":"JWT"}`).
pub fn mint_with<A: Algorithm>(alg: &A, key: &A::SigningKey, mint: &Mint) -> String {
    let header = Header::empty()
        .with_key_id(mint.kid.clone())
        .with_token_type("JWT");
    let mut claims = Claims::new(mint.claims.clone());
    claims.issued_at = Some(datetime(mint.issued_at));
    claims.not_before = Some(datetime(mint.not_before));
    claims.expiration = Some(datetime(mint.expires_at));
    alg.token(&header, &claims, key)
        .unwrap_or_else(|err| panic!("mint token: {err}"))
}

/// A fresh Ed25519 key from the OS RNG: a key the gateway has never seen.
pub fn random_key() -> SecretKey {
    let mut seed = [0u8; Seed::BYTES];
    getrandom::getrandom(&mut seed).unwrap_or_else(|err| panic!("OS RNG: {err}"));
    KeyPair::from_seed(Seed::new(seed)).sk
}

/// A fresh P-256 key from the OS RNG: a key the gateway has never seen.
pub fn random_es256_key() -> EsSigningKey {
    // 32 random bytes are a valid scalar but with probability below 2^-32.
    let mut scalar = [0u8; 32];
    getrandom::getrandom(&mut scalar).unwrap_or_else(|err| panic!("OS RNG: {err}"));
    EsSigningKey::from_slice(&scalar).unwrap_or_else(|err| panic!("P-256 key: {err}"))
}

/// The sidecar's own signing key, read from the PKCS#8 PEM file its `keygen` wrote: ES256
/// (`keygen`'s default) or EdDSA. Tests mint with it what only the real issuer could.
#[derive(Clone)]
pub enum SidecarKey {
    Es256(EsSigningKey),
    EdDsa(SecretKey),
}

impl std::fmt::Debug for SidecarKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SidecarKey::Es256(_) => "SidecarKey::Es256(..)",
            SidecarKey::EdDsa(_) => "SidecarKey::EdDsa(..)",
        })
    }
}

impl SidecarKey {
    /// Reads the key file; panics describing the file if it holds neither kind.
    pub fn load(path: &Path) -> SidecarKey {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|err| panic!("read signing key {}: {err}", path.display()));
        if let Ok(key) = EsSigningKey::from_pkcs8_pem(&text) {
            return SidecarKey::Es256(key);
        }
        match KeyPair::from_pem(&text) {
            Ok(pair) => SidecarKey::EdDsa(pair.sk),
            Err(err) => panic!(
                "{} is neither a P-256 nor an Ed25519 PKCS#8 private key (Ed25519: {err}); \
                 first line: {:?}",
                path.display(),
                text.lines().next()
            ),
        }
    }

    /// A fresh key of the same algorithm: what a forger signs with under the real `kid`.
    pub fn stranger(&self) -> SidecarKey {
        match self {
            SidecarKey::Es256(_) => SidecarKey::Es256(random_es256_key()),
            SidecarKey::EdDsa(_) => SidecarKey::EdDsa(random_key()),
        }
    }

    /// Signs `mint` with this key in its algorithm.
    pub fn mint(&self, mint: &Mint) -> String {
        match self {
            SidecarKey::Es256(key) => mint_with(&Es256, key, mint),
            SidecarKey::EdDsa(key) => mint_with(&Ed25519, key, mint),
        }
    }
}

fn decode_part(token: &str, index: usize) -> serde_json::Value {
    let part = token
        .split('.')
        .nth(index)
        .unwrap_or_else(|| panic!("token has no part {index}: {token:?}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .unwrap_or_else(|err| panic!("token part {index} is not base64url ({err}): {token:?}"));
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|err| panic!("token part {index} is not JSON ({err}): {token:?}"))
}

/// The JOSE header, unverified.
pub fn header(token: &str) -> serde_json::Value {
    decode_part(token, 0)
}

/// The claims, unverified.
pub fn claims(token: &str) -> serde_json::Value {
    decode_part(token, 1)
}

/// The `kid` of a token, unverified; panics if it has none.
pub fn kid(token: &str) -> String {
    header(token)
        .get("kid")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("token header has no kid: {}", header(token)))
}
