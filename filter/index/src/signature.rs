//! The publisher's signature: Ed25519 over every byte before the trailer, with the signing
//! key's public half in the trailer so a reader configured with two keys (a rotation) knows
//! which one to check with.
//!
//! [`verify`] is what a fetcher runs once on bytes from the network, before it validates and
//! shares them; workers that read bytes the fetcher shared trust its check and the checksum.
//! [`Signer`] is the sidecar's side. This module never logs or formats secret key material.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::error::IndexError;
use crate::layout::{PUBLIC_KEY_LEN, SIGNATURE_LEN, TRAILER_LEN};
use crate::validate::frame;

/// A publisher's Ed25519 public key: what the filter's `publisher_keys` lists, as 43
/// characters of unpadded base64url (the 32 raw bytes, as a JWK's `x`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublisherKey([u8; PUBLIC_KEY_LEN]);

/// Why a text is not a publisher key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "publisher key {0:?} is not 43 characters of unpadded base64url encoding a 32-byte Ed25519 \
     public key (as `registry-gate-sidecar keygen --algorithm EdDSA` prints it)"
)]
pub struct PublisherKeyError(String);

impl PublisherKey {
    pub fn from_bytes(bytes: [u8; PUBLIC_KEY_LEN]) -> PublisherKey {
        PublisherKey(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }

    /// Parses the unpadded base64url form.
    pub fn parse(text: &str) -> Result<PublisherKey, PublisherKeyError> {
        let shown: String = text.chars().take(64).collect();
        let raw = URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| PublisherKeyError(shown.clone()))?;
        let bytes: [u8; PUBLIC_KEY_LEN] = raw.try_into().map_err(|_| PublisherKeyError(shown))?;
        Ok(PublisherKey(bytes))
    }
}

impl core::fmt::Display for PublisherKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl core::fmt::Debug for PublisherKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "PublisherKey({self})")
    }
}

/// Checks that `bytes` are signed by one of `trusted`, and returns which. The frame (magic,
/// major, length) is checked first; nothing else is read.
pub fn verify(bytes: &[u8], trusted: &[PublisherKey]) -> Result<PublisherKey, IndexError> {
    let body_end = frame(bytes)?;
    let (Some(signed), Some(trailer)) = (bytes.get(..body_end), bytes.get(body_end..)) else {
        return Err(IndexError::NotIndex("no trailer"));
    };
    if trailer.len() != TRAILER_LEN {
        return Err(IndexError::NotIndex("no trailer"));
    }
    if trailer.iter().all(|b| *b == 0) {
        return Err(IndexError::Unsigned);
    }
    let (key, signature) = trailer
        .split_at_checked(PUBLIC_KEY_LEN)
        .ok_or(IndexError::NotIndex("no trailer"))?;
    let key: [u8; PUBLIC_KEY_LEN] = key
        .try_into()
        .map_err(|_| IndexError::NotIndex("no trailer"))?;
    let key = PublisherKey(key);
    if !trusted.contains(&key) {
        return Err(IndexError::UnknownPublisher(key.to_string()));
    }
    let signature: [u8; SIGNATURE_LEN] = signature
        .try_into()
        .map_err(|_| IndexError::NotIndex("no trailer"))?;
    ed25519_compact::PublicKey::new(key.0)
        .verify(signed, &ed25519_compact::Signature::new(signature))
        .map_err(|_| IndexError::BadSignature(key.to_string()))?;
    Ok(key)
}

/// The publisher's signing key.
pub struct Signer {
    pair: ed25519_compact::KeyPair,
}

impl core::fmt::Debug for Signer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Signer({})", self.public())
    }
}

impl Signer {
    /// The key whose 32-byte Ed25519 seed (the PKCS#8 private key) is `seed`.
    pub fn from_seed(seed: [u8; 32]) -> Signer {
        Signer {
            pair: ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed)),
        }
    }

    pub fn public(&self) -> PublisherKey {
        PublisherKey(*self.pair.pk)
    }

    /// Signs `index` in place: its trailer gets this key and the signature over everything
    /// before it.
    pub fn sign(&self, index: &mut [u8]) -> Result<(), IndexError> {
        let body_end = frame(index)?;
        let (signed, trailer) = index
            .split_at_mut_checked(body_end)
            .ok_or(IndexError::NotIndex("no trailer"))?;
        // Deterministic (no noise): equal indexes signed by one key are equal bytes.
        let signature = self.pair.sk.sign(&*signed, None);
        let sealed = self.pair.pk.iter().chain(signature.iter());
        for (byte, value) in trailer.iter_mut().zip(sealed) {
            *byte = *value;
        }
        Ok(())
    }
}
