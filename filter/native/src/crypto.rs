//! Token signatures at native speed: ES256, EdDSA and RS256 checked with `ring` (BoringSSL's
//! arithmetic, compiled into the module), as the wasm build asks Envoy's BoringSSL through
//! the `verify_signature` foreign function. The core hands over each check in the host's form
//! ([`HostCheck`]: a DER SubjectPublicKeyInfo, a DER ECDSA signature); every rule of the
//! token stays in the core.
//!
//! As with the wasm build's host, an algorithm is trusted to this path only after a
//! known-good probe signature verified and a tampered one did not ([`Probe`]); anything else
//! (HS256, a key ring cannot import) stays with the pure-Rust check. Counted as
//! `registry_gate.signatures.<alg>_host`.

use registry_gate_core::signature::{HostCheck, Probe, SignatureHost};
use registry_gate_core::token::Algorithm;
use ring::signature::{
    UnparsedPublicKey, VerificationAlgorithm, ECDSA_P256_SHA256_ASN1, ED25519,
    RSA_PKCS1_2048_8192_SHA256,
};

/// The algorithms ring checks in this module.
#[derive(Debug, Clone, Default)]
pub struct NativeCrypto {
    takes: Vec<Algorithm>,
}

impl NativeCrypto {
    /// Probes ring for every asymmetric algorithm.
    pub fn probe() -> NativeCrypto {
        let takes = Probe::all()
            .into_iter()
            .filter(|probe| probe.passes(&mut |check| verify(check)))
            .map(|probe| probe.alg)
            .collect();
        NativeCrypto { takes }
    }

    /// The algorithms that passed, by name.
    pub fn describe(&self) -> String {
        let names: Vec<&str> = self.takes.iter().map(|alg| alg.name()).collect();
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    }
}

impl SignatureHost for NativeCrypto {
    fn handles(&self, alg: Algorithm) -> bool {
        self.takes.contains(&alg)
    }

    fn check(&mut self, check: &HostCheck<'_>) -> Option<bool> {
        verify(check)
    }
}

/// `Some(valid)`, or `None` when ring cannot check it (the pure-Rust check decides).
fn verify(check: &HostCheck<'_>) -> Option<bool> {
    let algorithm: &'static dyn VerificationAlgorithm = match check.alg {
        Algorithm::ES256 => &ECDSA_P256_SHA256_ASN1,
        Algorithm::EdDSA => &ED25519,
        Algorithm::RS256 => &RSA_PKCS1_2048_8192_SHA256,
        Algorithm::HS256 => return None,
    };
    let key = subject_public_key(check.public_key)?;
    Some(
        UnparsedPublicKey::new(algorithm, key)
            .verify(check.text, &check.signature)
            .is_ok(),
    )
}

/// The key bits of a DER SubjectPublicKeyInfo (`SEQUENCE { AlgorithmIdentifier, BIT STRING
/// }`): the EC point, the Ed25519 key, or the PKCS#1 RSAPublicKey, as ring takes each.
fn subject_public_key(der: &[u8]) -> Option<&[u8]> {
    let (info, _) = element(der, 0x30)?;
    let (_, rest) = element(info, 0x30)?;
    let (bits, _) = element(rest, 0x03)?;
    // The first octet of a BIT STRING counts its unused bits: none in a key.
    match bits.split_first()? {
        (0, key) => Some(key),
        _ => None,
    }
}

/// One DER element of `tag` at the start of `bytes`: its contents and what follows it.
fn element(bytes: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = bytes.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let octets = usize::from(first & 0x7f);
        if octets == 0 || octets > 4 {
            return None;
        }
        let (length, rest) = rest.split_at_checked(octets)?;
        let length = length
            .iter()
            .fold(0usize, |sum, octet| (sum << 8) | usize::from(*octet));
        (length, rest)
    };
    rest.split_at_checked(length)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_passes_every_probe_and_refuses_what_is_not_a_key() {
        let crypto = NativeCrypto::probe();
        for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256] {
            assert!(crypto.handles(alg), "{alg:?}: {}", crypto.describe());
        }
        assert!(!crypto.handles(Algorithm::HS256));
        // Truncated, mistagged or lying DER names no key.
        for der in [
            &[][..],
            &[0x30],
            &[0x30, 0x03, 0x30, 0x00, 0x03],
            &[0x31, 0x00],
            &[0x30, 0x85, 0, 0, 0, 0, 1],
            &[0x30, 0x06, 0x30, 0x00, 0x03, 0x02, 0x01, 0xff],
        ] {
            assert_eq!(subject_public_key(der), None, "{der:?}");
        }
        assert_eq!(
            subject_public_key(&[0x30, 0x06, 0x30, 0x00, 0x03, 0x02, 0x00, 0xab]),
            Some(&[0xab][..])
        );
    }
}
