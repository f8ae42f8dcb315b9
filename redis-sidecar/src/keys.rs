//! The sidecar's token signing key: loading it from a PKCS#8 PEM file, generating a new one
//! (`keygen`), its RFC 7638 thumbprint (the default `kid`) and the public [`KeySpec`] that is
//! published in every snapshot so the filter can verify the tokens this sidecar mints.
//!
//! It must never log, serialize or publish secret key material: only [`SigningKey::key_spec`]
//! leaves this module, and it carries the public half alone.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_compact::{KeyPair, PublicKey, SecretKey, Seed};
use registry_gate_core::token::{Algorithm, KeySpec};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Why a key could not be loaded or written.
#[derive(Debug, Error)]
pub enum KeyError {
    #[error("cannot read signing key {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("signing key {path} is not an Ed25519 PKCS#8 PEM private key ({reason})")]
    Parse { path: PathBuf, reason: String },
    #[error("refusing to overwrite existing file {0}")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate a key: {0}")]
    Random(String),
}

/// An Ed25519 signing key and the `kid` its tokens carry.
#[derive(Clone)]
pub struct SigningKey {
    secret: SecretKey,
    public: PublicKey,
    /// The `kid` header of minted tokens and of the published [`KeySpec`]; the filter selects
    /// the verification key by it, so it must be unique within a snapshot's key set.
    kid: String,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret half.
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Parses a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, as written by `keygen` or
    /// `openssl genpkey -algorithm ed25519`). `kid` defaults to the RFC 7638 thumbprint.
    pub fn from_pem(pem: &str, kid: Option<String>) -> Result<SigningKey, String> {
        let pair = KeyPair::from_pem(pem).map_err(|e| e.to_string())?;
        let kid = kid.unwrap_or_else(|| thumbprint(&pair.pk));
        Ok(SigningKey {
            secret: pair.sk,
            public: pair.pk,
            kid,
        })
    }

    /// Reads and parses a PEM key file.
    pub fn load(path: &Path, kid: Option<String>) -> Result<SigningKey, KeyError> {
        let pem = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        SigningKey::from_pem(&pem, kid).map_err(|reason| KeyError::Parse {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// A fresh random key.
    pub fn generate() -> Result<SigningKey, KeyError> {
        let mut seed = [0_u8; Seed::BYTES];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        let pair = KeyPair::from_seed(Seed::new(seed));
        Ok(SigningKey {
            kid: thumbprint(&pair.pk),
            secret: pair.sk,
            public: pair.pk,
        })
    }

    /// The PKCS#8 PEM of the private key (what `keygen` writes).
    pub fn to_pem(&self) -> String {
        self.secret.to_pem()
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub(crate) fn secret(&self) -> &SecretKey {
        &self.secret
    }

    /// The public key as published in snapshots: `{"kid","alg":"EdDSA","kty":"OKP",
    /// "crv":"Ed25519","x"}`.
    pub fn key_spec(&self) -> KeySpec {
        let mut jwk = serde_json::Map::new();
        jwk.insert("kty".into(), "OKP".into());
        jwk.insert("crv".into(), "Ed25519".into());
        jwk.insert(
            "x".into(),
            URL_SAFE_NO_PAD.encode(self.public.as_ref()).into(),
        );
        KeySpec {
            kid: self.kid.clone(),
            alg: Algorithm::EdDSA,
            jwk,
        }
    }
}

/// RFC 7638 JWK thumbprint (SHA-256, base64url without padding) of an Ed25519 public key:
/// the hash of `{"crv":"Ed25519","kty":"OKP","x":"<x>"}` (required members, sorted, no spaces).
pub fn thumbprint(public: &PublicKey) -> String {
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(public.as_ref())
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// Whether two key specs describe the same verification key (same algorithm and the same
/// `kty`/`crv`/`x`/`y`/`n`/`e` members; other JWK members such as `use` are not material).
pub fn same_material(a: &KeySpec, b: &KeySpec) -> bool {
    const MATERIAL: [&str; 6] = ["kty", "crv", "x", "y", "n", "e"];
    a.alg == b.alg
        && MATERIAL
            .iter()
            .all(|member| a.jwk.get(*member) == b.jwk.get(*member))
}

/// `keygen`: writes a fresh key to `path` with mode 0600; never overwrites an existing file.
pub fn write_new_key(path: &Path) -> Result<SigningKey, KeyError> {
    let key = SigningKey::generate()?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists(path.to_path_buf())
            } else {
                KeyError::Write {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
    file.write_all(key.to_pem().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| KeyError::Write {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn rfc8037_thumbprint_vector() {
        // RFC 8037 Appendix A.3: the thumbprint of the example Ed25519 public key.
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        let public = PublicKey::from_slice(&x).unwrap();
        assert_eq!(
            thumbprint(&public),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn pem_round_trip_keeps_kid_and_spec() {
        let key = SigningKey::generate().unwrap();
        let again = SigningKey::from_pem(&key.to_pem(), None).unwrap();
        assert_eq!(key.kid(), again.kid());
        assert_eq!(key.key_spec(), again.key_spec());
        let spec = key.key_spec();
        assert_eq!(spec.alg, Algorithm::EdDSA);
        assert_eq!(spec.jwk.get("kty").unwrap(), "OKP");
        assert_eq!(spec.jwk.get("crv").unwrap(), "Ed25519");
        assert!(format!("{key:?}").contains(key.kid()));
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }

    #[test]
    fn explicit_kid_overrides_thumbprint() {
        let key = SigningKey::generate().unwrap();
        let named = SigningKey::from_pem(&key.to_pem(), Some("k1".into())).unwrap();
        assert_eq!(named.kid(), "k1");
        assert_eq!(named.key_spec().kid, "k1");
    }

    #[test]
    fn garbage_pem_is_rejected() {
        assert!(SigningKey::from_pem("not a key", None).is_err());
    }

    #[test]
    fn material_comparison_ignores_non_key_members() {
        let key = SigningKey::generate().unwrap();
        let mut with_use = key.key_spec();
        with_use.jwk.insert("use".into(), "sig".into());
        assert!(same_material(&key.key_spec(), &with_use));
        let other = SigningKey::generate().unwrap();
        assert!(!same_material(&key.key_spec(), &other.key_spec()));
    }

    #[test]
    fn keygen_writes_0600_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        let key = write_new_key(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = SigningKey::load(&path, None).unwrap();
        assert_eq!(loaded.kid(), key.kid());
        assert!(matches!(write_new_key(&path), Err(KeyError::Exists(_))));
    }
}
