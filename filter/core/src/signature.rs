//! Signature checks the host can do at native speed: Envoy's `verify_signature` foreign
//! function (BoringSSL), reached through `proxy_call_foreign_function`.
//!
//! Owns: the wire form of that call (the `VerifySignatureArguments` and
//! `VerifySignatureResult` protobuf messages of Envoy's
//! `source/extensions/common/wasm/ext/verify_signature.proto`, hand-encoded: four fields in,
//! two out), the DER forms BoringSSL takes (a SubjectPublicKeyInfo per key, and an ECDSA
//! signature as `SEQUENCE { r, s }` rather than JWS's fixed-width `r‖s`), and the
//! known-answer probes that tell which algorithms a host really checks.
//!
//! The host only does the arithmetic. Which key, which algorithm, and every rule of
//! [`crate::token`] stay in Rust; a host that cannot answer (no such function, a key it will
//! not import, an algorithm it does not take) answers `None` and the pure-Rust check decides.
//! A host is trusted for an algorithm only after it accepted a known-good signature and
//! refused a tampered one ([`Probe`]): BoringSSL's digest-verify cannot take Ed25519 with a
//! hash function, and answers such a call `false` rather than with an error, so an
//! unprobed `false` could refuse every valid EdDSA token.

use std::borrow::Cow;
use std::fmt;

use crate::token::{public_key_der, Algorithm, KeySpec};

/// The foreign function's name in Envoy.
pub const FOREIGN_FUNCTION: &str = "verify_signature";

/// Where the signatures of one algorithm are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// By the host (BoringSSL in Envoy).
    Host,
    /// By the pure-Rust implementation compiled into the module.
    Wasm,
}

/// The host's signature arithmetic, as the glue offers it. `Send`, so that a gate can move
/// between threads (the sidecar's ext_authz gates live behind mutexes on a thread pool).
pub trait SignatureHost: fmt::Debug + Send {
    /// Whether [`SignatureHost::check`] is worth calling for `alg` (the host passed the
    /// probe for it). When `false` the pure-Rust check runs without building a request.
    fn handles(&self, alg: Algorithm) -> bool;

    /// `Some(valid)` when the host checked the signature; `None` when it could not (the
    /// call failed, or its answer did not decode), and the pure-Rust check decides.
    fn check(&mut self, check: &HostCheck<'_>) -> Option<bool>;
}

/// No host: every signature is checked in Rust (tests, the sidecar, hosts without the
/// foreign function).
#[derive(Debug, Clone, Copy, Default)]
pub struct RustOnly;

impl SignatureHost for RustOnly {
    fn handles(&self, _alg: Algorithm) -> bool {
        false
    }

    fn check(&mut self, _check: &HostCheck<'_>) -> Option<bool> {
        None
    }
}

/// One signature check in the form the host takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCheck<'a> {
    pub alg: Algorithm,
    /// DER SubjectPublicKeyInfo.
    pub public_key: &'a [u8],
    /// As BoringSSL takes it: DER for ECDSA, the raw bytes otherwise.
    pub signature: Cow<'a, [u8]>,
    /// The signed bytes (the JWS signing input).
    pub text: &'a [u8],
}

impl<'a> HostCheck<'a> {
    /// The check of a JWS `signature` (as it appears in the token, decoded) over `text`.
    /// `None` when the signature cannot be valid for `alg` in any case (an ES256 signature
    /// that is not 64 bytes): the caller refuses it as the Rust check would.
    pub fn new(
        alg: Algorithm,
        public_key: &'a [u8],
        signature: &'a [u8],
        text: &'a [u8],
    ) -> Option<HostCheck<'a>> {
        let signature = match alg {
            Algorithm::ES256 => Cow::Owned(ecdsa_der(signature, 32)?),
            Algorithm::EdDSA | Algorithm::RS256 | Algorithm::HS256 => Cow::Borrowed(signature),
        };
        Some(HostCheck {
            alg,
            public_key,
            signature,
            text,
        })
    }

    /// The hash function BoringSSL digests with before checking (Envoy's name for it).
    fn hash_function(&self) -> &'static str {
        // EdDSA hashes inside the algorithm; BoringSSL refuses any digest for it, which the
        // probe finds out. Every JWS algorithm here is a SHA-256 one.
        "sha256"
    }

    /// The serialized `VerifySignatureArguments`: `hash_function = 1`, `public_key = 2`
    /// (DER), `signature = 3`, `text = 4`.
    pub fn arguments(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(16 + self.public_key.len() + self.signature.len() + self.text.len());
        protobuf_bytes(&mut out, 1, self.hash_function().as_bytes());
        protobuf_bytes(&mut out, 2, self.public_key);
        protobuf_bytes(&mut out, 3, &self.signature);
        protobuf_bytes(&mut out, 4, self.text);
        out
    }
}

/// The `result` of a serialized `VerifySignatureResult` (`result = 1` bool, `error = 2`
/// string); `None` if the bytes are not such a message.
pub fn decode_result(mut bytes: &[u8]) -> Option<bool> {
    let mut result = false;
    while !bytes.is_empty() {
        let (key, rest) = varint(bytes)?;
        bytes = rest;
        match (key >> 3, key & 7) {
            (1, 0) => {
                let (value, rest) = varint(bytes)?;
                bytes = rest;
                result = value != 0;
            }
            // A varint field this reader does not know.
            (_, 0) => bytes = varint(bytes)?.1,
            // `error`, or any length-delimited field: skipped.
            (_, 2) => {
                let (len, rest) = varint(bytes)?;
                bytes = rest.get(usize::try_from(len).ok()?..)?;
            }
            _ => return None,
        }
    }
    Some(result)
}

fn protobuf_bytes(out: &mut Vec<u8>, field: u64, value: &[u8]) {
    push_varint(out, field << 3 | 2);
    push_varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// One varint and the bytes after it; `None` if truncated or longer than 10 bytes.
fn varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value: u64 = 0;
    for (index, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Some((value, bytes.get(index + 1..)?));
        }
    }
    None
}

// ---- DER ------------------------------------------------------------------------------------

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;

/// `AlgorithmIdentifier` of id-Ed25519 (RFC 8410).
const ED25519_ALGORITHM: &[u8] = &[0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];
/// `AlgorithmIdentifier` of id-ecPublicKey on prime256v1 (RFC 5480).
const P256_ALGORITHM: &[u8] = &[
    0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
    0xce, 0x3d, 0x03, 0x01, 0x07,
];
/// `AlgorithmIdentifier` of rsaEncryption with NULL parameters (RFC 3279).
const RSA_ALGORITHM: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];

fn der(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        let significant = bytes.get(skip..).unwrap_or_default();
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
}

/// A DER INTEGER holding the big-endian unsigned `value`: leading zeros dropped, one zero
/// put back when the top bit is set (it would read as negative).
fn der_unsigned(out: &mut Vec<u8>, value: &[u8]) {
    let skip = value.iter().take_while(|&&b| b == 0).count();
    let digits = value.get(skip..).unwrap_or_default();
    let mut content = Vec::with_capacity(digits.len() + 1);
    if digits.first().is_none_or(|&b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(digits);
    der(out, INTEGER, &content);
}

/// `SubjectPublicKeyInfo { algorithm, BIT STRING (no unused bits) key }`.
fn spki(algorithm: &[u8], key: &[u8]) -> Vec<u8> {
    let mut bits = Vec::with_capacity(key.len() + 1);
    bits.push(0); // unused bits in the last byte
    bits.extend_from_slice(key);
    let mut content = algorithm.to_vec();
    der(&mut content, BIT_STRING, &bits);
    let mut out = Vec::with_capacity(content.len() + 4);
    der(&mut out, SEQUENCE, &content);
    out
}

/// The SubjectPublicKeyInfo of an Ed25519 public key (its 32 bytes).
pub(crate) fn ed25519_spki(x: &[u8]) -> Vec<u8> {
    spki(ED25519_ALGORITHM, x)
}

/// The SubjectPublicKeyInfo of a P-256 public key (its uncompressed SEC 1 point).
pub(crate) fn p256_spki(point: &[u8]) -> Vec<u8> {
    spki(P256_ALGORITHM, point)
}

/// The SubjectPublicKeyInfo of an RSA public key (`RSAPublicKey { n, e }`, PKCS #1).
pub(crate) fn rsa_spki(n: &[u8], e: &[u8]) -> Vec<u8> {
    let mut integers = Vec::with_capacity(n.len() + e.len() + 8);
    der_unsigned(&mut integers, n);
    der_unsigned(&mut integers, e);
    let mut key = Vec::with_capacity(integers.len() + 4);
    der(&mut key, SEQUENCE, &integers);
    spki(RSA_ALGORITHM, &key)
}

/// JWS's `r‖s` (each `width` bytes, RFC 7518 §3.4) as DER `SEQUENCE { r, s }`; `None` if
/// the signature is not exactly `2 × width` bytes.
fn ecdsa_der(signature: &[u8], width: usize) -> Option<Vec<u8>> {
    if signature.len() != 2 * width {
        return None;
    }
    let (r, s) = signature.split_at(width);
    let mut integers = Vec::with_capacity(2 * width + 6);
    der_unsigned(&mut integers, r);
    der_unsigned(&mut integers, s);
    let mut out = Vec::with_capacity(integers.len() + 2);
    der(&mut out, SEQUENCE, &integers);
    Some(out)
}

// ---- probes ---------------------------------------------------------------------------------

/// A known-answer test of the host for one algorithm: a public key and a signature made for
/// this purpose (the private keys were discarded) over [`PROBE_TEXT`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub alg: Algorithm,
    public_key: Vec<u8>,
    signature: Vec<u8>,
}

/// What the probe signatures sign.
const PROBE_TEXT: &[u8] = b"registry-gate: does the host verify this signature?";
/// The same text, one byte changed: the host must refuse it.
const PROBE_TAMPERED: &[u8] = b"registry-gate: does the host verify this signature!";

/// The probe keys (JWK members) and signatures (base64url, JWS form).
pub(crate) const PROBES: [(Algorithm, &str, &str); 3] = [
    (
        Algorithm::EdDSA,
        r#"{"kid":"probe","alg":"EdDSA","kty":"OKP","crv":"Ed25519",
            "x":"HzwvHykIWSK2cj2-YE8026rpeZ0uOzEAaK7vk5NIllc"}"#,
        "n71YTpRHRlkfRZjo9sKtPWgxndKNYAh_pvgKIy-60YZN5b0Tadc4UKheXDbl2cAmDVbXBzNslLZ1Rg9wsTkFBA",
    ),
    (
        Algorithm::ES256,
        r#"{"kid":"probe","alg":"ES256","kty":"EC","crv":"P-256",
            "x":"RNGoad8zkTZnXyrS4YOGd_j3Dsp-Jvgnp8rAd0MEVDA",
            "y":"148b9bBt5vmRlT1drX0Db5ZHXC9C5xVVkwMNIoIMD0A"}"#,
        "COT_mcoRgyyr8-rmPoOfLf42L1CUgYWVCn9n4-H5NtCBGvuyPGQijZzi3gJshzsAy-CUrM8ienCfzPrEYufrUA",
    ),
    (
        Algorithm::RS256,
        r#"{"kid":"probe","alg":"RS256","kty":"RSA","e":"AQAB",
            "n":"4pE4LOqDwGyLr7delI9Hy9rp5k8JtOiRsImHHj0KwxNpQwV1xE1I0q37KpATGb0zgHO7cnWbNPu-vNQcdVR0A79VzBhABbGYoMgYvUymiKvBgcFY0aCCC0eNltUYvpO_VmjvjXhIyCAi8oPlxA3SGWqNxvWwFZ2RnCV5zXPHXB1VNbImEx67wIwWItqfWTdBmUbTkoBcF3UM3J9mT-6pW2ZRsqN7iiEYrUXuYkpfytcaalxD5Pz12SjzBAt-XpxlmqkTgMf-TH7ib6JSyu6BVu2U6B6hl5E1epv6pIMQoH7-az1jiPijx65VyM5DF2AxnHCqoMqR9GfnApMbQLRUhw"}"#,
        "DHTzrRxHGn1SoTeNseFeb5Czm93G9TH1OPhXeOa3jR4DFmDsHzKRACLCTqpZOnnd9kBTyaBiiUjcEdGkQ_soxbrZkPuEv43Zn43__qEKwaw0EnaRbeHlWtKqUZxE0QHekrOetF3obM7t7YttDBTNNwvnO4Nsc89kqh0lAdDKIfeWSl0USxKuszr9JF89nqp-CJGL0ZyuIdX0ZJ7wP4K8q9mmBnwzV5ffMZkD7YapatLQwzhHuK3fLNAQtBr2-eRyxA8gn172soKteSnNspiKyX7yCka0PucSbA-q_sdG-D0BuUgpEk0NFhP4wy2QHJ2hH0k2rR5fxs_KtgRXOZYV9A",
    ),
];

impl Probe {
    /// The probes of every asymmetric algorithm (HS256 is never the host's: it is cheap in
    /// Rust, and its key is a secret the host need not see).
    pub fn all() -> Vec<Probe> {
        PROBES
            .iter()
            .filter_map(|&(alg, jwk, signature)| {
                let spec: KeySpec = serde_json::from_str(jwk).ok()?;
                let public_key = public_key_der(&spec).ok()??;
                let signature = crate::token::decode_base64url(signature)?;
                Some(Probe {
                    alg,
                    public_key,
                    signature,
                })
            })
            .collect()
    }

    /// The check the host must pass.
    pub fn genuine(&self) -> Option<HostCheck<'_>> {
        HostCheck::new(self.alg, &self.public_key, &self.signature, PROBE_TEXT)
    }

    /// The check the host must refuse.
    pub fn tampered(&self) -> Option<HostCheck<'_>> {
        HostCheck::new(self.alg, &self.public_key, &self.signature, PROBE_TAMPERED)
    }

    /// Whether `host` checks this algorithm correctly: it accepts the genuine signature and
    /// refuses the tampered text (a host that answers `true` to everything fails here).
    pub fn passes(&self, host: &mut dyn FnMut(&HostCheck<'_>) -> Option<bool>) -> bool {
        let (Some(genuine), Some(tampered)) = (self.genuine(), self.tampered()) else {
            return false;
        };
        host(&genuine) == Some(true) && host(&tampered) == Some(false)
    }
}

#[cfg(test)]
mod tests;
