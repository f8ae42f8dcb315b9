//! Registry bearer-token verification (JWS compact form only) and the per-VM cache of
//! verified tokens.
//!
//! Owns: the algorithm allow-list, key lookup by `kid`, the registered-claim checks and the
//! registry claim set that the sidecar also uses when it mints tokens. It must never take the
//! algorithm or key material from the token itself, never fetch anything, and never panic on
//! input: every failure is a [`TokenError`] with a stable reason for stats.
//!
//! [`verify`] checks, in this order: the size cap (before the token is even split), the
//! compact structure (exactly three non-empty unpadded base64url segments, found in one
//! pass), the protected header (a JSON object without duplicate members; `alg` an exact
//! match of an allowed name; no embedded key material, `crit`, `zip` or `cty`; `typ`, if
//! present, `JWT`; `kid` a string), the key (looked up by `kid` in a fixed [`KeyRing`], and
//! bound to exactly the header's algorithm), the signature, and only then the claims: they
//! are never parsed before the signature has verified. Time is passed in as unix seconds.
//!
//! [`TokenCache`] remembers what verified tokens established, per VM, so that a pull's many
//! requests verify once. It is keyed by the token itself and knows nothing about keys or
//! settings: the owner must [`TokenCache::clear`] it whenever the [`KeyRing`] or
//! [`VerifierSettings`] change.

use std::collections::VecDeque;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use core::hash::BuildHasher as _;

use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use jwt_compact::alg::{Ed25519, Es256, Hs256, Hs256Key, Rsa, RsaPublicKey, StrongAlg, StrongKey};
use jwt_compact::jwk::JsonWebKey;
use jwt_compact::{Algorithm as JwsAlgorithm, AlgorithmSignature as _, Claims};
use serde::de::{Error as _, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::identity::is_valid_principal_name;
use crate::scope::{check_access_bounds, AccessEntry};
use crate::signature::{self, HostCheck, Path, RustOnly, SignatureHost};

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
    #[error("subject is too long or contains control characters")]
    BadSubject,
    #[error("token was issued before the snapshot's min_token_iat (revoked); log in again")]
    Revoked,
}

impl TokenError {
    /// Stable snake_case name for stats and logs. Never change a name once released: it is
    /// part of metric names operators alert on.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::BadFormat => "bad_format",
            Self::BadHeader => "bad_header",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::UnknownKey => "unknown_key",
            Self::KeyMaterialInHeader(_) => "key_material_in_header",
            Self::UnsupportedCrit => "unsupported_crit",
            Self::BadSignature => "bad_signature",
            Self::BadClaims => "bad_claims",
            Self::MissingExpiration => "missing_exp",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::LifetimeTooLong => "lifetime_too_long",
            Self::BadSubject => "bad_subject",
            Self::Revoked => "revoked",
        }
    }
}

impl Algorithm {
    /// Every algorithm the filter can verify.
    pub const ALL: [Algorithm; 4] = [Self::EdDSA, Self::ES256, Self::RS256, Self::HS256];

    /// The JOSE `alg` name (RFC 7518 / RFC 8037).
    pub const fn name(self) -> &'static str {
        match self {
            Self::EdDSA => "EdDSA",
            Self::ES256 => "ES256",
            Self::RS256 => "RS256",
            Self::HS256 => "HS256",
        }
    }

    /// The algorithm whose JOSE name is exactly `name` (byte for byte: no case folding, no
    /// trimming), if the filter supports it.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.name() == name)
    }

    /// The JWK `kty` a key for this algorithm must have.
    const fn key_type(self) -> &'static str {
        match self {
            Self::EdDSA => "OKP",
            Self::ES256 => "EC",
            Self::RS256 => "RSA",
            Self::HS256 => "oct",
        }
    }
}

/// Shortest HS256 key accepted: the hash output size (RFC 7518 §3.2).
pub const MIN_HMAC_KEY_BYTES: usize = 32;

/// Header parameters that carry or point at key material. Keys come only from a
/// [`KeyRing`], so a token naming its own key is refused outright (RFC 8725 §3.10, attack
/// cases C2/C3) and nothing is ever fetched.
const KEY_MATERIAL_PARAMS: [&str; 4] = ["jwk", "jku", "x5u", "x5c"];

/// Private members of RSA / EC / OKP JWKs. A verification key set must never carry them.
const PRIVATE_JWK_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "oth"];

/// How tokens are checked. Built by the configuration layer; nothing here comes from a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierSettings {
    /// Expected `iss`, compared byte for byte.
    pub issuer: String,
    /// Expected `aud`: the registry's `service` name.
    pub audience: String,
    /// The algorithm allow-list. A token naming anything else is refused before key lookup.
    pub algorithms: Vec<Algorithm>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway_secs: u64,
    /// Longest token accepted, checked before the token is split or decoded.
    pub max_token_bytes: usize,
    /// Longest lifetime accepted: `exp − iat`, else `exp − nbf`, else `exp − now` (then with
    /// the leeway added), so a stolen long-lived token is refused (attack case D5).
    pub max_lifetime_secs: u64,
}

/// What a verified token says. Cached per VM until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// `sub`; empty for an anonymous token.
    pub subject: String,
    /// The `access` claim, if the token carries one, within
    /// [`check_access_bounds`](crate::scope::check_access_bounds) (attack case E4).
    pub access: Option<Vec<AccessEntry>>,
    /// `exp`, in unix seconds.
    pub expires_at: u64,
    /// `iat`, in unix seconds, if the token has one (a snapshot's `min_token_iat` refuses
    /// tokens issued before it, and those without).
    pub issued_at: Option<u64>,
}

/// Why a key set was refused. Every variant names the offending `kid`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    #[error("a key has an empty kid")]
    EmptyKid,
    #[error("key {kid:?}: duplicate kid")]
    DuplicateKid { kid: String },
    #[error("key {kid:?}: member `{member}` is missing or not a string")]
    MissingMember { kid: String, member: &'static str },
    #[error("key {kid:?}: unknown kty {kty:?} (expected OKP, EC, RSA or oct)")]
    UnknownKeyType { kid: String, kty: String },
    #[error("key {kid:?}: kty {kty:?} cannot be used with alg {alg:?}")]
    AlgorithmMismatch {
        kid: String,
        kty: String,
        alg: Algorithm,
    },
    #[error("key {kid:?}: unsupported crv {crv:?} (expected {expected})")]
    UnsupportedCurve {
        kid: String,
        crv: String,
        expected: &'static str,
    },
    #[error("key {kid:?}: member `{member}` is not unpadded base64url")]
    BadBase64 { kid: String, member: &'static str },
    #[error("key {kid:?}: member `{member}` must be {expected} bytes, got {actual}")]
    BadLength {
        kid: String,
        member: &'static str,
        expected: usize,
        actual: usize,
    },
    #[error("key {kid:?}: RSA modulus is {bits} bits; 2048, 3072 or 4096 bits are required")]
    RsaKeySize { kid: String, bits: usize },
    #[error("key {kid:?}: HMAC key is {len} bytes; at least 32 bytes are required")]
    HmacKeyTooShort { kid: String, len: usize },
    #[error("key {kid:?}: carries private member `{member}`; verification keys must be public")]
    PrivateKeyMaterial { kid: String, member: &'static str },
    #[error("key {kid:?}: JWK member `{member}` contradicts the key spec")]
    Inconsistent { kid: String, member: &'static str },
    #[error("key {kid:?}: not a valid {alg:?} public key: {reason}")]
    InvalidKey {
        kid: String,
        alg: Algorithm,
        reason: String,
    },
}

type EdPublicKey = <Ed25519 as JwsAlgorithm>::VerifyingKey;
type EsPublicKey = <Es256 as JwsAlgorithm>::VerifyingKey;

/// A parsed verifying key; the variant is the one algorithm it may be used with. Public keys
/// also carry their DER SubjectPublicKeyInfo, the form the host's check takes.
#[derive(Clone)]
enum VerifyingKey {
    EdDSA(EdPublicKey, Vec<u8>),
    ES256(EsPublicKey, Vec<u8>),
    /// At least 2048 bits, enforced by jwt-compact's `StrongKey`.
    RS256(StrongKey<RsaPublicKey>, Vec<u8>),
    /// At least [`MIN_HMAC_KEY_BYTES`].
    HS256(Hs256Key),
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key bytes: an HS256 key is a secret.
        f.write_str(self.algorithm().name())
    }
}

impl VerifyingKey {
    fn algorithm(&self) -> Algorithm {
        match self {
            Self::EdDSA(..) => Algorithm::EdDSA,
            Self::ES256(..) => Algorithm::ES256,
            Self::RS256(..) => Algorithm::RS256,
            Self::HS256(_) => Algorithm::HS256,
        }
    }

    /// The DER SubjectPublicKeyInfo of a public key (`None` for an HMAC secret).
    fn public_key_der(&self) -> Option<&[u8]> {
        match self {
            Self::EdDSA(_, der) | Self::ES256(_, der) | Self::RS256(_, der) => Some(der),
            Self::HS256(_) => None,
        }
    }

    /// Checks the signature, by the host when it takes this algorithm, else in Rust. A host
    /// that answers decides; one that cannot leaves it to Rust.
    fn verifies(
        &self,
        host: &mut dyn SignatureHost,
        signing_input: &[u8],
        signature: &[u8],
    ) -> (bool, Path) {
        let alg = self.algorithm();
        if let Some(der) = self.public_key_der().filter(|_| host.handles(alg)) {
            let Some(check) = HostCheck::new(alg, der, signature, signing_input) else {
                // Not even the right length: no signature of this algorithm.
                return (false, Path::Host);
            };
            if let Some(valid) = host.check(&check) {
                return (valid, Path::Host);
            }
        }
        let valid = match self {
            Self::EdDSA(key, _) => signature_matches(&Ed25519, key, signing_input, signature),
            Self::ES256(key, _) => signature_matches(&Es256, key, signing_input, signature),
            Self::RS256(key, _) => {
                signature_matches(&StrongAlg(Rsa::rs256()), key, signing_input, signature)
            }
            Self::HS256(key) => signature_matches(&Hs256, key, signing_input, signature),
        };
        (valid, Path::Wasm)
    }
}

/// jwt-compact's signature check, as its `Validator` does it: the length check first (the
/// fixed-size signature types would otherwise panic on a wrong length), then the parse,
/// then the algorithm's verification (constant-time for HMAC).
fn signature_matches<A: JwsAlgorithm>(
    alg: &A,
    key: &A::VerifyingKey,
    signing_input: &[u8],
    signature: &[u8],
) -> bool {
    if let Some(expected) = A::Signature::LENGTH {
        if signature.len() != expected.get() {
            return false;
        }
    }
    match A::Signature::try_from_slice(signature) {
        Ok(signature) => alg.verify_signature(&signature, key, signing_input),
        Err(_) => false,
    }
}

/// The verifying keys, by `kid`. Each key is bound to exactly one [`Algorithm`] (RFC 8725
/// §3.1), so an HS256 token can never be checked against a public key's bytes.
#[derive(Clone, Default)]
pub struct KeyRing {
    /// The source specs, sorted by `kid`: the canonical form [`PartialEq`] compares, so the
    /// glue can tell whether keys changed regardless of order.
    specs: Vec<KeySpec>,
    keys: HashMap<String, VerifyingKey>,
}

impl PartialEq for KeyRing {
    fn eq(&self, other: &Self) -> bool {
        self.specs == other.specs
    }
}

impl Eq for KeyRing {}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_map();
        for spec in &self.specs {
            list.entry(&spec.kid, &spec.alg);
        }
        list.finish()
    }
}

impl KeyRing {
    /// Parses and checks every spec. Refuses unknown key types and curves, bad base64url,
    /// RSA moduli other than 2048/3072/4096 bits, HMAC keys under 32 bytes, private key
    /// members, a JWK whose `kty` does not fit the spec's algorithm, and duplicate kids.
    pub fn from_specs(specs: &[KeySpec]) -> Result<KeyRing, KeyError> {
        let mut ring = KeyRing::default();
        for spec in specs {
            let key = parse_key(spec)?;
            if ring.keys.contains_key(&spec.kid) {
                return Err(KeyError::DuplicateKid {
                    kid: spec.kid.clone(),
                });
            }
            ring.keys.insert(spec.kid.clone(), key);
            ring.specs.push(spec.clone());
        }
        ring.specs.sort_by(|a, b| a.kid.cmp(&b.kid));
        Ok(ring)
    }

    /// Both rings' keys, where a kid present in both keeps this ring's key (configured keys
    /// pin their kids; a snapshot cannot replace them).
    pub fn merge_preferring_self(&self, other: &KeyRing) -> KeyRing {
        let mut merged = self.clone();
        for spec in &other.specs {
            if merged.keys.contains_key(&spec.kid) {
                continue;
            }
            if let Some(key) = other.keys.get(&spec.kid) {
                merged.keys.insert(spec.kid.clone(), key.clone());
                merged.specs.push(spec.clone());
            }
        }
        merged.specs.sort_by(|a, b| a.kid.cmp(&b.kid));
        merged
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }
}

fn parse_key(spec: &KeySpec) -> Result<VerifyingKey, KeyError> {
    let kid = spec.kid.as_str();
    if kid.is_empty() {
        return Err(KeyError::EmptyKid);
    }
    let jwk = &spec.jwk;
    let inconsistent = |member: &'static str| KeyError::Inconsistent {
        kid: kid.to_owned(),
        member,
    };
    if jwk
        .get("alg")
        .is_some_and(|alg| alg.as_str() != Some(spec.alg.name()))
    {
        return Err(inconsistent("alg"));
    }
    if jwk.get("kid").is_some_and(|k| k.as_str() != Some(kid)) {
        return Err(inconsistent("kid"));
    }
    if jwk.get("use").is_some_and(|u| u.as_str() != Some("sig")) {
        return Err(inconsistent("use"));
    }
    let kty = member_str(jwk, kid, "kty")?;
    if !Algorithm::ALL.iter().any(|alg| alg.key_type() == kty) {
        return Err(KeyError::UnknownKeyType {
            kid: kid.to_owned(),
            kty: kty.to_owned(),
        });
    }
    if kty != spec.alg.key_type() {
        return Err(KeyError::AlgorithmMismatch {
            kid: kid.to_owned(),
            kty: kty.to_owned(),
            alg: spec.alg,
        });
    }
    if spec.alg != Algorithm::HS256 {
        if let Some(member) = PRIVATE_JWK_MEMBERS
            .into_iter()
            .find(|m| jwk.contains_key(*m))
        {
            return Err(KeyError::PrivateKeyMaterial {
                kid: kid.to_owned(),
                member,
            });
        }
    }
    let invalid = |reason: String| KeyError::InvalidKey {
        kid: kid.to_owned(),
        alg: spec.alg,
        reason,
    };
    match spec.alg {
        Algorithm::EdDSA => {
            expect_curve(jwk, kid, "Ed25519")?;
            let x = member_bytes(jwk, kid, "x", Some(32))?;
            let key = EdPublicKey::from_slice(&x).map_err(|e| invalid(e.to_string()))?;
            // Canonical encoding of a point that is not of small order.
            key.validate().map_err(|e| invalid(e.to_string()))?;
            Ok(VerifyingKey::EdDSA(key, signature::ed25519_spki(&x)))
        }
        Algorithm::ES256 => {
            expect_curve(jwk, kid, "P-256")?;
            let x = member_bytes(jwk, kid, "x", Some(32))?;
            let y = member_bytes(jwk, kid, "y", Some(32))?;
            let mut sec1 = Vec::with_capacity(65);
            sec1.push(0x04); // uncompressed point
            sec1.extend_from_slice(&x);
            sec1.extend_from_slice(&y);
            // Checks that the point is on the curve.
            let key = EsPublicKey::from_sec1_bytes(&sec1).map_err(|e| invalid(e.to_string()))?;
            Ok(VerifyingKey::ES256(key, signature::p256_spki(&sec1)))
        }
        Algorithm::RS256 => {
            let n = member_bytes(jwk, kid, "n", None)?;
            let e = member_bytes(jwk, kid, "e", None)?;
            let bits = bit_length(&n);
            if !matches!(bits, 2048 | 3072 | 4096) {
                return Err(KeyError::RsaKeySize {
                    kid: kid.to_owned(),
                    bits,
                });
            }
            let jwk = JsonWebKey::Rsa {
                modulus: n.as_slice().into(),
                public_exponent: e.as_slice().into(),
                private_parts: None,
            };
            let key = RsaPublicKey::try_from(&jwk).map_err(|e| invalid(e.to_string()))?;
            let key = StrongKey::try_from(key).map_err(|_| KeyError::RsaKeySize {
                kid: kid.to_owned(),
                bits,
            })?;
            Ok(VerifyingKey::RS256(key, signature::rsa_spki(&n, &e)))
        }
        Algorithm::HS256 => {
            let k = member_bytes(jwk, kid, "k", None)?;
            if k.len() < MIN_HMAC_KEY_BYTES {
                return Err(KeyError::HmacKeyTooShort {
                    kid: kid.to_owned(),
                    len: k.len(),
                });
            }
            Ok(VerifyingKey::HS256(Hs256Key::new(k)))
        }
    }
}

fn member_str<'a>(
    jwk: &'a Map<String, Value>,
    kid: &str,
    member: &'static str,
) -> Result<&'a str, KeyError> {
    jwk.get(member)
        .and_then(Value::as_str)
        .ok_or_else(|| KeyError::MissingMember {
            kid: kid.to_owned(),
            member,
        })
}

fn member_bytes(
    jwk: &Map<String, Value>,
    kid: &str,
    member: &'static str,
    expected_len: Option<usize>,
) -> Result<Vec<u8>, KeyError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(member_str(jwk, kid, member)?)
        .map_err(|_| KeyError::BadBase64 {
            kid: kid.to_owned(),
            member,
        })?;
    match expected_len {
        Some(expected) if bytes.len() != expected => Err(KeyError::BadLength {
            kid: kid.to_owned(),
            member,
            expected,
            actual: bytes.len(),
        }),
        _ => Ok(bytes),
    }
}

fn expect_curve(
    jwk: &Map<String, Value>,
    kid: &str,
    expected: &'static str,
) -> Result<(), KeyError> {
    let crv = member_str(jwk, kid, "crv")?;
    if crv == expected {
        Ok(())
    } else {
        Err(KeyError::UnsupportedCurve {
            kid: kid.to_owned(),
            crv: crv.to_owned(),
            expected,
        })
    }
}

/// Bits in a big-endian unsigned integer, ignoring leading zero bytes.
fn bit_length(be: &[u8]) -> usize {
    match be.iter().position(|&b| b != 0) {
        None => 0,
        Some(first) => {
            let top = be.get(first).copied().unwrap_or(0);
            (be.len() - first - 1) * 8 + (8 - top.leading_zeros() as usize)
        }
    }
}

/// Verifies a compact JWS registry token against `settings` and `keys` at unix time `now`,
/// every signature in Rust.
///
/// Never panics and never reads the clock; see the module docs for the order of checks.
pub fn verify(
    settings: &VerifierSettings,
    keys: &KeyRing,
    token: &str,
    now: u64,
) -> Result<Verified, TokenError> {
    verify_using(settings, keys, token, now, &mut RustOnly).0
}

/// [`verify`], with the signature checked by `host` where it takes the algorithm. Also
/// returns where the signature was checked (`None` if the token failed before that).
pub fn verify_using(
    settings: &VerifierSettings,
    keys: &KeyRing,
    token: &str,
    now: u64,
    host: &mut dyn SignatureHost,
) -> (Result<Verified, TokenError>, Option<(Algorithm, Path)>) {
    let mut checked = None;
    let result = verify_checked(settings, keys, token, now, host, &mut checked);
    (result, checked)
}

fn verify_checked(
    settings: &VerifierSettings,
    keys: &KeyRing,
    token: &str,
    now: u64,
    host: &mut dyn SignatureHost,
    checked: &mut Option<(Algorithm, Path)>,
) -> Result<Verified, TokenError> {
    // Before anything else touches the token (attack case A5).
    if token.len() > settings.max_token_bytes {
        return Err(TokenError::TooLarge);
    }
    let parts = CompactParts::split(token)?;
    let header = decode_segment(parts.header)?;
    let payload = decode_segment(parts.payload)?;
    let signature = decode_segment(parts.signature)?;

    let header = parse_object(&header).ok_or(TokenError::BadHeader)?;
    let (alg, kid) = check_header(settings, &header)?;
    let key = keys.keys.get(kid).ok_or(TokenError::UnknownKey)?;
    if key.algorithm() != alg {
        // E.g. HS256 presented with an asymmetric key's kid (attack case B2).
        return Err(TokenError::AlgorithmNotAllowed);
    }
    let (valid, path) = key.verifies(host, parts.signing_input.as_bytes(), &signature);
    *checked = Some((alg, path));
    if !valid {
        return Err(TokenError::BadSignature);
    }

    let claims = parse_object(&payload).ok_or(TokenError::BadClaims)?;
    let claims: Claims<RegistryClaims> =
        serde_json::from_value(Value::Object(claims)).map_err(|_| TokenError::BadClaims)?;
    check_claims(settings, claims, now)
}

/// The three segments of a compact JWS and the signing input (`header.payload`), borrowed.
struct CompactParts<'a> {
    signing_input: &'a str,
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
}

impl<'a> CompactParts<'a> {
    /// One pass over the bytes, no allocation: exactly two dots, only the base64url alphabet
    /// (so `=`, `+`, `/`, `%`, whitespace and the JSON serialization all fail), and no empty
    /// segment (an empty signature is refused here, before any key lookup).
    fn split(token: &'a str) -> Result<Self, TokenError> {
        let mut dots = [0_usize; 2];
        let mut found = 0_usize;
        for (index, byte) in token.bytes().enumerate() {
            if byte == b'.' {
                let slot = dots.get_mut(found).ok_or(TokenError::BadFormat)?;
                *slot = index;
                found += 1;
            } else if !(byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_') {
                return Err(TokenError::BadFormat);
            }
        }
        if found != 2 {
            return Err(TokenError::BadFormat);
        }
        let [first, second] = dots;
        let segment = |range: Option<&'a str>| match range {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(TokenError::BadFormat),
        };
        Ok(Self {
            header: segment(token.get(..first))?,
            payload: segment(token.get(first + 1..second))?,
            signature: segment(token.get(second + 1..))?,
            signing_input: segment(token.get(..second))?,
        })
    }
}

/// Strict unpadded base64url (RFC 7515 §2): padding and non-canonical trailing bits fail.
fn decode_segment(segment: &str) -> Result<Vec<u8>, TokenError> {
    decode_base64url(segment).ok_or(TokenError::BadFormat)
}

pub(crate) fn decode_base64url(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// The DER SubjectPublicKeyInfo of the key `spec` describes, once it passes every check of
/// [`KeyRing::from_specs`]; `None` for an HMAC key.
pub(crate) fn public_key_der(spec: &KeySpec) -> Result<Option<Vec<u8>>, KeyError> {
    Ok(parse_key(spec)?.public_key_der().map(<[u8]>::to_vec))
}

/// A JSON object with no duplicate member names (RFC 7515 §4, RFC 8725 §3.7). Anything else
/// (array, string, truncated text, a BOM, invalid UTF-8, trailing bytes) is `None`.
fn parse_object(bytes: &[u8]) -> Option<Map<String, Value>> {
    serde_json::from_slice::<StrictObject>(bytes)
        .ok()
        .map(|object| object.0)
}

struct StrictObject(Map<String, Value>);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(StrictObjectVisitor)
    }
}

struct StrictObjectVisitor;

impl<'de> Visitor<'de> for StrictObjectVisitor {
    type Value = StrictObject;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object without duplicate members")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut access: M) -> Result<StrictObject, M::Error> {
        let mut object = Map::new();
        while let Some(name) = access.next_key::<String>()? {
            if object.contains_key(&name) {
                return Err(M::Error::custom("duplicate member"));
            }
            let value: Value = access.next_value()?;
            object.insert(name, value);
        }
        Ok(StrictObject(object))
    }
}

/// The algorithm and `kid`, once the header has passed every rule. Nothing in the header
/// chooses a key or an algorithm the configuration did not already allow.
fn check_header<'h>(
    settings: &VerifierSettings,
    header: &'h Map<String, Value>,
) -> Result<(Algorithm, &'h str), TokenError> {
    let alg = match header.get("alg") {
        None => return Err(TokenError::BadHeader),
        // Exact byte compare: `none`, `None`, `rs256`, `"RS256 "` all fail here.
        Some(Value::String(name)) => {
            Algorithm::from_name(name).ok_or(TokenError::AlgorithmNotAllowed)?
        }
        Some(_) => return Err(TokenError::AlgorithmNotAllowed),
    };
    if !settings.algorithms.contains(&alg) {
        return Err(TokenError::AlgorithmNotAllowed);
    }
    if let Some(param) = KEY_MATERIAL_PARAMS
        .into_iter()
        .find(|param| header.contains_key(*param))
    {
        return Err(TokenError::KeyMaterialInHeader(param));
    }
    // We understand no extension, so any `crit` (even an empty list) is refused.
    if header.contains_key("crit") {
        return Err(TokenError::UnsupportedCrit);
    }
    // Never decompress (RFC 8725 §3.6); claims are always plain JSON.
    if header.contains_key("zip") || header.contains_key("cty") {
        return Err(TokenError::BadHeader);
    }
    match header.get("typ") {
        None => {}
        Some(Value::String(typ)) if typ.eq_ignore_ascii_case("JWT") => {}
        Some(_) => return Err(TokenError::BadHeader),
    }
    match header.get("kid") {
        Some(Value::String(kid)) => Ok((alg, kid.as_str())),
        _ => Err(TokenError::BadHeader),
    }
}

fn check_claims(
    settings: &VerifierSettings,
    claims: Claims<RegistryClaims>,
    now: u64,
) -> Result<Verified, TokenError> {
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let leeway = i64::try_from(settings.leeway_secs).unwrap_or(i64::MAX);
    let max_lifetime = i64::try_from(settings.max_lifetime_secs).unwrap_or(i64::MAX);

    let exp = claims
        .expiration
        .map(|t| t.timestamp())
        .ok_or(TokenError::MissingExpiration)?;
    let nbf = claims.not_before.map(|t| t.timestamp());
    let iat = claims.issued_at.map(|t| t.timestamp());

    if exp.saturating_add(leeway) < now {
        return Err(TokenError::Expired);
    }
    if nbf.is_some_and(|nbf| nbf.saturating_sub(leeway) > now) {
        return Err(TokenError::NotYetValid);
    }
    if iat.is_some_and(|iat| iat.saturating_sub(leeway) > now) {
        return Err(TokenError::NotYetValid);
    }
    let lifetime_ok = match iat.or(nbf) {
        Some(start) => exp.saturating_sub(start) <= max_lifetime,
        None => exp.saturating_sub(now) <= max_lifetime.saturating_add(leeway),
    };
    if !lifetime_ok {
        return Err(TokenError::LifetimeTooLong);
    }

    let custom = claims.custom;
    if custom.iss != settings.issuer {
        return Err(TokenError::WrongIssuer);
    }
    let audience_ok = match &custom.aud {
        Audience::One(aud) => *aud == settings.audience,
        // Exactly the audience: a token meant for several services is refused (RFC 8725 §3.9).
        Audience::Many(auds) => matches!(auds.as_slice(), [aud] if *aud == settings.audience),
    };
    if !audience_ok {
        return Err(TokenError::WrongAudience);
    }
    if let Some(access) = &custom.access {
        check_access_bounds(access).map_err(|_| TokenError::BadClaims)?;
    }
    // `sub` becomes the identity header upstream and an access-log field.
    if !is_valid_principal_name(&custom.sub) && !custom.sub.is_empty() {
        return Err(TokenError::BadSubject);
    }
    Ok(Verified {
        subject: custom.sub,
        access: custom.access,
        expires_at: u64::try_from(exp).unwrap_or(0),
        issued_at: iat.and_then(|iat| u64::try_from(iat).ok()),
    })
}

/// A cached value that stops being valid at a point in time.
pub trait Expiring {
    /// Unix seconds after which the value is a miss.
    fn expires_at(&self) -> u64;
}

impl Expiring for Verified {
    fn expires_at(&self) -> u64 {
        self.expires_at
    }
}

/// Values derived from verified tokens, per VM, keyed by the token itself, so that a pull's
/// many requests verify the signature once.
///
/// Keys are the full token text (compared in full on every hit) hashed with hashbrown's
/// randomly seeded hasher: a lookup costs one fast hash of the token and one comparison, with
/// no digest computed and nothing allocated or cloned; [`TokenCache::hash`] lets a caller
/// that looks twice hash once. Only verified tokens are ever stored, so an attacker cannot
/// fill the cache without valid tokens. Bounded by `capacity`. An entry past its `expires_at`
/// is a miss. When an insert finds the cache full it first sweeps out expired entries (at
/// most one sweep per clock second, so a full cache of live tokens costs O(1) per insert),
/// then evicts in insertion (FIFO) order. The cache does not know which keys or settings
/// verified an entry, so its owner must [`TokenCache::clear`] it whenever either changes.
pub struct TokenCache<V> {
    capacity: usize,
    entries: HashTable<Slot<V>>,
    hasher: DefaultHashBuilder,
    /// Insertion order for FIFO eviction, as (hash, sequence number). A slot whose entry was
    /// dropped (no entry with that sequence number) is stale and skipped; stale slots are
    /// compacted away once they outnumber live ones, keeping this within `2 × capacity`.
    order: VecDeque<(u64, u64)>,
    next_seq: u64,
    /// Clock second of the last expiry sweep.
    last_sweep: Option<u64>,
}

struct Slot<V> {
    token: Box<str>,
    hash: u64,
    seq: u64,
    value: V,
}

impl<V> fmt::Debug for TokenCache<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("capacity", &self.capacity)
            .field("len", &self.entries.len())
            .finish()
    }
}

impl<V: Expiring> TokenCache<V> {
    /// A cache holding at most `capacity` tokens; 0 disables caching.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            order: VecDeque::new(),
            next_seq: 0,
            last_sweep: None,
        }
    }

    /// The hash [`TokenCache::get_hashed`] takes for `token`.
    pub fn hash(&self, token: &str) -> u64 {
        self.hasher.hash_one(token)
    }

    /// The value cached for `token`, unless absent or past its `expires_at`.
    pub fn get(&self, token: &str, now: u64) -> Option<&V> {
        self.get_hashed(self.hash(token), token, now)
    }

    /// [`TokenCache::get`] with the token's [`TokenCache::hash`] already computed.
    pub fn get_hashed(&self, hash: u64, token: &str, now: u64) -> Option<&V> {
        self.entries
            .find(hash, |slot| &*slot.token == token)
            .map(|slot| &slot.value)
            .filter(|value| value.expires_at() >= now)
    }

    /// Remembers a value for `token` until its `expires_at`. A value already expired at
    /// `now` is not stored.
    pub fn insert(&mut self, token: &str, value: V, now: u64) {
        if self.capacity == 0 || value.expires_at() < now {
            return;
        }
        let hash = self.hash(token);
        if let Some(slot) = self.entries.find_mut(hash, |slot| &*slot.token == token) {
            slot.value = value;
            return;
        }
        if self.entries.len() >= self.capacity {
            self.make_room(now);
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.order.push_back((hash, seq));
        self.entries.insert_unique(
            hash,
            Slot {
                token: token.into(),
                hash,
                seq,
                value,
            },
            |slot| slot.hash,
        );
        if self.order.len() > self.capacity.saturating_mul(2) {
            self.compact_order();
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Frees at least one slot: expired entries first, then the oldest insertions.
    fn make_room(&mut self, now: u64) {
        if self.last_sweep != Some(now) {
            self.last_sweep = Some(now);
            self.entries.retain(|slot| slot.value.expires_at() >= now);
            self.compact_order();
        }
        while self.entries.len() >= self.capacity {
            let Some((hash, seq)) = self.order.pop_front() else {
                // Unreachable while every entry owns a slot; stay bounded regardless.
                self.entries.clear();
                break;
            };
            if let Ok(entry) = self.entries.find_entry(hash, |slot| slot.seq == seq) {
                entry.remove();
            }
        }
    }

    fn compact_order(&mut self) {
        let entries = &self.entries;
        self.order
            .retain(|(hash, seq)| entries.find(*hash, |slot| slot.seq == *seq).is_some());
    }
}

#[cfg(test)]
mod tests;
