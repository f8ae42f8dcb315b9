//! The sidecar's token signing key: an ES256 (ECDSA P-256, the default) or EdDSA (Ed25519)
//! key loaded from a PKCS#8 PEM file or generated (`keygen`), its RFC 7638 thumbprint (the
//! default `kid`), the signature of a token, and the public [`KeySpec`] that is published in
//! every snapshot so the filter can verify the tokens this sidecar mints.
//!
//! It must never log, serialize or publish secret key material: only [`SigningKey::key_spec`]
//! and the tokens [`SigningKey::sign`] makes leave this module, and they carry the public half
//! alone.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_compact::alg::{Ed25519, Es256};
use jwt_compact::{AlgorithmExt, Claims, CreationError, Header};
use p256::pkcs8::{
    AssociatedOid, DecodePrivateKey, EncodePrivateKey, LineEnding, ObjectIdentifier,
    PrivateKeyInfo, SecretDocument,
};
use registry_gate_core::token::{Algorithm, KeySpec};
use registry_gate_index::Signer;
use serde::Serialize;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// What `keygen --algorithm` and [`SigningKey::generate`] take, and what a key signs with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyAlgorithm {
    /// ECDSA on P-256 with SHA-256: Envoy's own crypto checks these signatures for the
    /// filter, so a token's first use costs about what Envoy's native `jwt_authn` does.
    #[default]
    #[value(name = "ES256")]
    ES256,
    /// Ed25519: checked in the filter's pure Rust (Envoy offers no Ed25519 check to wasm).
    #[value(name = "EdDSA")]
    EdDSA,
}

impl KeyAlgorithm {
    /// The JOSE `alg` of tokens signed with such a key.
    pub fn jose(self) -> Algorithm {
        match self {
            KeyAlgorithm::ES256 => Algorithm::ES256,
            KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        }
    }
}

/// The accepted key kinds, for every refusal.
const ACCEPTED: &str = "accepted: an ES256 (ECDSA P-256) or EdDSA (Ed25519) PKCS#8 private key \
                        (`-----BEGIN PRIVATE KEY-----`), as `registry-gate-sidecar keygen` writes";

/// PKCS#8 algorithm identifiers: the two accepted, and the common ones named in refusals.
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const NAMED: [(&str, &str); 9] = [
    ("1.2.840.113549.1.1.1", "an RSA key"),
    ("1.2.840.113549.1.1.10", "an RSA-PSS key"),
    ("1.3.101.113", "an Ed448 key"),
    ("1.3.101.110", "an X25519 key"),
    ("1.3.101.111", "an X448 key"),
    ("1.3.132.0.34", "a P-384 key"),
    ("1.3.132.0.35", "a P-521 key"),
    ("1.3.132.0.10", "a secp256k1 key"),
    ("1.2.840.10040.4.1", "a DSA key"),
];

/// Why a PEM text is not a signing key.
#[derive(Debug, Error)]
pub enum PemError {
    #[error("not a PEM-encoded DER document ({0}); {ACCEPTED}")]
    NotPem(#[source] p256::pkcs8::der::Error),
    #[error("a PEM labelled `{0}` (a key openssl reads converts with `openssl pkcs8 -topk8 -nocrypt`); {ACCEPTED}")]
    Label(String),
    #[error("not a PKCS#8 private key ({0}); {ACCEPTED}")]
    NotPkcs8(#[source] p256::pkcs8::Error),
    #[error("{0}; {ACCEPTED}")]
    Unsupported(String),
    #[error("malformed Ed25519 key: {0}")]
    Ed25519(#[source] ed25519_compact::Error),
    #[error("malformed P-256 key: {0}")]
    P256(#[source] p256::pkcs8::Error),
    #[error("a P-256 key whose public point has no affine coordinates")]
    Identity,
}

/// Why a key could not be loaded, made or written.
#[derive(Debug, Error)]
pub enum KeyError {
    #[error("cannot read signing key {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("signing key {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: PemError,
    },
    #[error("refusing to overwrite existing file {0}")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate a key: {0}")]
    Random(String),
    #[error("cannot encode the key as PKCS#8: {0}")]
    Encode(#[source] p256::pkcs8::Error),
    #[error("the generated key is unusable: {0}")]
    Generated(#[source] PemError),
    #[error(
        "{0}: a publisher key signs snapshots with Ed25519; this is an ES256 key (make one with \
         `registry-gate-sidecar keygen --algorithm EdDSA`)"
    )]
    NotPublisher(PathBuf),
}

/// The private half, by algorithm.
#[derive(Clone)]
enum Secret {
    Ed25519(ed25519_compact::KeyPair),
    Es256(p256::ecdsa::SigningKey),
}

/// A signing key and the `kid` its tokens carry.
#[derive(Clone)]
pub struct SigningKey {
    secret: Secret,
    /// The public JWK's required members (RFC 7638 §3.2), sorted by name: the thumbprint's
    /// input and the published key, computed once so neither can fail later.
    public: Vec<(&'static str, String)>,
    /// The `kid` header of minted tokens and of the published [`KeySpec`]; the filter selects
    /// the verification key by it, so it must be unique within a snapshot's key set.
    kid: String,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret half.
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm())
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    fn new(secret: Secret, kid: Option<String>) -> Result<SigningKey, PemError> {
        let public = match &secret {
            Secret::Ed25519(pair) => vec![
                ("crv", "Ed25519".to_owned()),
                ("kty", "OKP".to_owned()),
                ("x", URL_SAFE_NO_PAD.encode(pair.pk.as_ref())),
            ],
            Secret::Es256(key) => {
                let point = key.verifying_key().to_encoded_point(false);
                let (Some(x), Some(y)) = (point.x(), point.y()) else {
                    return Err(PemError::Identity);
                };
                vec![
                    ("crv", "P-256".to_owned()),
                    ("kty", "EC".to_owned()),
                    ("x", URL_SAFE_NO_PAD.encode(x)),
                    ("y", URL_SAFE_NO_PAD.encode(y)),
                ]
            }
        };
        let kid = kid.unwrap_or_else(|| thumbprint(&public));
        Ok(SigningKey {
            secret,
            public,
            kid,
        })
    }

    /// Parses a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) of a P-256 or an Ed25519 key, as
    /// written by `keygen`, `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`
    /// or `openssl genpkey -algorithm ed25519`; the key's algorithm identifier says which.
    /// `kid` defaults to the RFC 7638 thumbprint.
    pub fn from_pem(pem: &str, kid: Option<String>) -> Result<SigningKey, PemError> {
        let (label, document) = SecretDocument::from_pem(pem).map_err(PemError::NotPem)?;
        if label != "PRIVATE KEY" {
            return Err(PemError::Label(label.to_owned()));
        }
        let der = document.as_bytes();
        let info = PrivateKeyInfo::try_from(der).map_err(PemError::NotPkcs8)?;
        let secret = if info.algorithm.oid == OID_ED25519 {
            Secret::Ed25519(ed25519_compact::KeyPair::from_der(der).map_err(PemError::Ed25519)?)
        } else if info.algorithm.oid == OID_EC_PUBLIC_KEY {
            match info.algorithm.parameters_oid() {
                Ok(curve) if curve == p256::NistP256::OID => Secret::Es256(
                    p256::ecdsa::SigningKey::from_pkcs8_der(der).map_err(PemError::P256)?,
                ),
                Ok(curve) => return Err(PemError::Unsupported(named(curve, "an EC key on"))),
                Err(_) => {
                    return Err(PemError::Unsupported(
                        "an EC key without a named curve".to_owned(),
                    ))
                }
            }
        } else {
            return Err(PemError::Unsupported(named(info.algorithm.oid, "a key of")));
        };
        SigningKey::new(secret, kid)
    }

    /// Reads and parses a PEM key file.
    pub fn load(path: &Path, kid: Option<String>) -> Result<SigningKey, KeyError> {
        let pem = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        SigningKey::from_pem(&pem, kid).map_err(|source| KeyError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// A fresh random key for `algorithm`.
    pub fn generate(algorithm: KeyAlgorithm) -> Result<SigningKey, KeyError> {
        let random =
            |bytes: &mut [u8]| getrandom::fill(bytes).map_err(|e| KeyError::Random(e.to_string()));
        let secret = match algorithm {
            KeyAlgorithm::EdDSA => {
                let mut seed = [0_u8; ed25519_compact::Seed::BYTES];
                random(&mut seed)?;
                Secret::Ed25519(ed25519_compact::KeyPair::from_seed(
                    ed25519_compact::Seed::new(seed),
                ))
            }
            KeyAlgorithm::ES256 => {
                // A uniformly random scalar: 32 random bytes, drawn again in the rare case
                // (below 2^-32) that they are zero or not below the group order.
                let mut scalar = p256::elliptic_curve::zeroize::Zeroizing::new([0_u8; 32]);
                let mut key = None;
                for _ in 0..4 {
                    random(scalar.as_mut())?;
                    if let Ok(valid) = p256::ecdsa::SigningKey::from_slice(scalar.as_ref()) {
                        key = Some(valid);
                        break;
                    }
                }
                Secret::Es256(key.ok_or_else(|| {
                    KeyError::Random("four draws were no valid P-256 scalar".to_owned())
                })?)
            }
        };
        SigningKey::new(secret, None).map_err(KeyError::Generated)
    }

    /// The snapshot publisher's signer of this key, if it is Ed25519 (publisher keys are).
    pub fn publisher(&self) -> Option<Signer> {
        match &self.secret {
            Secret::Ed25519(pair) => Some(Signer::from_seed(*pair.sk.seed())),
            Secret::Es256(_) => None,
        }
    }

    /// Reads the publisher key: an Ed25519 PKCS#8 PEM.
    pub fn load_publisher(path: &Path) -> Result<Signer, KeyError> {
        SigningKey::load(path, None)?
            .publisher()
            .ok_or_else(|| KeyError::NotPublisher(path.to_path_buf()))
    }

    /// The PKCS#8 PEM of the private key (what `keygen` writes).
    pub fn to_pem(&self) -> Result<String, KeyError> {
        match &self.secret {
            Secret::Ed25519(pair) => Ok(pair.sk.to_pem()),
            Secret::Es256(key) => key
                .to_pkcs8_pem(LineEnding::LF)
                .map(|pem| pem.as_str().to_owned())
                .map_err(KeyError::Encode),
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// What this key signs with.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match self.secret {
            Secret::Ed25519(_) => KeyAlgorithm::EdDSA,
            Secret::Es256(_) => KeyAlgorithm::ES256,
        }
    }

    /// A compact JWS of `claims` under `header` (whose `alg` becomes this key's algorithm).
    pub fn sign<T: Serialize>(
        &self,
        header: &Header,
        claims: &Claims<T>,
    ) -> Result<String, CreationError> {
        match &self.secret {
            Secret::Ed25519(pair) => Ed25519.token(header, claims, &pair.sk),
            Secret::Es256(key) => Es256.token(header, claims, key),
        }
    }

    /// The public key as published in snapshots: `{"kid","alg":"ES256","kty":"EC",
    /// "crv":"P-256","x","y"}` or `{"kid","alg":"EdDSA","kty":"OKP","crv":"Ed25519","x"}`.
    pub fn key_spec(&self) -> KeySpec {
        KeySpec {
            kid: self.kid.clone(),
            alg: self.algorithm().jose(),
            jwk: self
                .public
                .iter()
                .map(|(name, value)| ((*name).to_owned(), value.as_str().into()))
                .collect(),
        }
    }
}

/// `a P-384 key`, or `<prefix> <oid>` for an identifier not in [`NAMED`].
fn named(oid: ObjectIdentifier, prefix: &str) -> String {
    let dotted = oid.to_string();
    NAMED
        .iter()
        .find(|(known, _)| *known == dotted)
        .map(|(_, name)| (*name).to_owned())
        .unwrap_or_else(|| format!("{prefix} {dotted}"))
}

/// RFC 7638 JWK thumbprint (SHA-256, base64url without padding) of a public key given by its
/// required members sorted by name: the hash of e.g. `{"crv":"P-256","kty":"EC","x":"…",
/// "y":"…"}` (no spaces; the values are base64url and names, so nothing needs escaping).
fn thumbprint(required: &[(&'static str, String)]) -> String {
    let members: Vec<String> = required
        .iter()
        .map(|(name, value)| format!(r#""{name}":"{value}""#))
        .collect();
    let canonical = format!("{{{}}}", members.join(","));
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

/// `keygen`: writes a fresh `algorithm` key to `path` with mode 0600; never overwrites an
/// existing file.
pub fn write_new_key(path: &Path, algorithm: KeyAlgorithm) -> Result<SigningKey, KeyError> {
    let key = SigningKey::generate(algorithm)?;
    let pem = key.to_pem()?;
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
    file.write_all(pem.as_bytes())
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
    use std::process::Command;

    const ALGORITHMS: [KeyAlgorithm; 2] = [KeyAlgorithm::ES256, KeyAlgorithm::EdDSA];

    fn b64(text: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(text).unwrap()
    }

    fn member(spec: &KeySpec, name: &str) -> String {
        spec.jwk.get(name).unwrap().as_str().unwrap().to_owned()
    }

    /// Runs `openssl` with `args`, panicking with its stderr if it fails.
    fn openssl(args: &[&str]) -> Vec<u8> {
        let output = Command::new("openssl").args(args).output().unwrap();
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    /// The raw public key openssl derives from a private key file: the end of its DER
    /// SubjectPublicKeyInfo (Ed25519: the 32-byte key; P-256: 0x04 ‖ x ‖ y).
    fn openssl_public(path: &Path, raw_len: usize) -> Vec<u8> {
        let path = path.to_str().unwrap();
        let spki = openssl(&["pkey", "-in", path, "-pubout", "-outform", "DER"]);
        spki[spki.len() - raw_len..].to_vec()
    }

    /// The raw public key the published spec carries, in the same layout.
    fn published_public(spec: &KeySpec) -> Vec<u8> {
        match spec.alg {
            Algorithm::ES256 => {
                [vec![0x04], b64(&member(spec, "x")), b64(&member(spec, "y"))].concat()
            }
            _ => b64(&member(spec, "x")),
        }
    }

    #[test]
    fn rfc8037_thumbprint_vector() {
        // RFC 8037 Appendix A.1 (private key) and A.3 (thumbprint of its public key).
        let seed =
            ed25519_compact::Seed::from_slice(&b64("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"))
                .unwrap();
        let pair = ed25519_compact::KeyPair::from_seed(seed);
        let key = SigningKey::new(Secret::Ed25519(pair), None).unwrap();
        assert_eq!(
            member(&key.key_spec(), "x"),
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        );
        assert_eq!(key.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn p256_thumbprint_of_the_rfc7515_key() {
        // RFC 7515 Appendix A.3's ES256 key. RFC 7638 has no EC example: the thumbprint was
        // computed independently (Python's hashlib over the RFC 7638 canonical JSON), and
        // jwt-compact's own RFC 7638 implementation must agree.
        let d = b64("jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI");
        let es = p256::ecdsa::SigningKey::from_slice(&d).unwrap();
        let key = SigningKey::new(Secret::Es256(es.clone()), None).unwrap();
        let spec = key.key_spec();
        assert_eq!(
            member(&spec, "x"),
            "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"
        );
        assert_eq!(
            member(&spec, "y"),
            "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
        );
        assert_eq!(key.kid(), "oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U");
        let jwk = jwt_compact::jwk::JsonWebKey::from(es.verifying_key());
        assert_eq!(
            URL_SAFE_NO_PAD.encode(jwk.thumbprint::<Sha256>()),
            key.kid()
        );
    }

    #[test]
    fn pem_round_trip_keeps_algorithm_kid_and_spec() {
        let rows = [
            (KeyAlgorithm::ES256, Algorithm::ES256, "EC", "P-256", true),
            (
                KeyAlgorithm::EdDSA,
                Algorithm::EdDSA,
                "OKP",
                "Ed25519",
                false,
            ),
        ];
        for (algorithm, alg, kty, crv, has_y) in rows {
            let key = SigningKey::generate(algorithm).unwrap();
            let pem = key.to_pem().unwrap();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
            let again = SigningKey::from_pem(&pem, None).unwrap();
            assert_eq!(again.algorithm(), algorithm);
            assert_eq!(key.kid(), again.kid());
            assert_eq!(key.key_spec(), again.key_spec());
            let spec = key.key_spec();
            assert_eq!(spec.alg, alg, "{algorithm:?}");
            assert_eq!(member(&spec, "kty"), kty);
            assert_eq!(member(&spec, "crv"), crv);
            assert_eq!(spec.jwk.contains_key("y"), has_y, "{algorithm:?}");
            assert_eq!(
                spec.jwk.len(),
                if has_y { 4 } else { 3 },
                "public members only"
            );
            // The spec is a key the filter accepts.
            registry_gate_core::token::KeyRing::from_specs(&[spec]).unwrap();
            assert_eq!(
                format!("{key:?}"),
                format!(
                    "SigningKey {{ algorithm: {algorithm:?}, kid: {:?}, .. }}",
                    key.kid()
                ),
                "nothing but the algorithm and the kid"
            );
        }
        let es = SigningKey::generate(KeyAlgorithm::ES256).unwrap();
        let other = SigningKey::generate(KeyAlgorithm::ES256).unwrap();
        assert_ne!(es.kid(), other.kid(), "fresh keys");
    }

    #[test]
    fn openssl_keys_load_and_ours_load_in_openssl() {
        let dir = tempfile::tempdir().unwrap();
        let rows: [(&str, &[&str], KeyAlgorithm, usize); 2] = [
            (
                "p256.pem",
                &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
                KeyAlgorithm::ES256,
                65,
            ),
            (
                "ed25519.pem",
                &["-algorithm", "ed25519"],
                KeyAlgorithm::EdDSA,
                32,
            ),
        ];
        for (name, genpkey, algorithm, raw_len) in rows {
            let theirs = dir.path().join(name);
            let out = theirs.to_str().unwrap();
            openssl(&[&["genpkey"], genpkey, &["-out", out]].concat());
            let key = SigningKey::load(&theirs, None).unwrap();
            assert_eq!(key.algorithm(), algorithm, "{name}");
            assert_eq!(
                published_public(&key.key_spec()),
                openssl_public(&theirs, raw_len),
                "{name}: the published key is openssl's public key"
            );
            let ours = dir.path().join(format!("ours-{name}"));
            let key = write_new_key(&ours, algorithm).unwrap();
            assert_eq!(
                published_public(&key.key_spec()),
                openssl_public(&ours, raw_len),
                "{name}: openssl reads keygen's file and derives the published key"
            );
        }
    }

    #[test]
    fn unsupported_keys_are_refused_naming_what_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let generate = |name: &str, args: &[&str]| {
            let path = dir.path().join(name);
            openssl(&[args, &["-out", path.to_str().unwrap()]].concat());
            std::fs::read_to_string(path).unwrap()
        };
        let ours = SigningKey::generate(KeyAlgorithm::ES256)
            .unwrap()
            .to_pem()
            .unwrap();
        let truncated: String = ours
            .lines()
            .take(2)
            .chain(ours.lines().last())
            .collect::<Vec<_>>()
            .join("\n");
        let rows = [
            (
                "RSA",
                generate(
                    "rsa.pem",
                    &[
                        "genpkey",
                        "-algorithm",
                        "RSA",
                        "-pkeyopt",
                        "rsa_keygen_bits:2048",
                    ],
                ),
                "an RSA key",
            ),
            (
                "P-384",
                generate(
                    "p384.pem",
                    &[
                        "genpkey",
                        "-algorithm",
                        "EC",
                        "-pkeyopt",
                        "ec_paramgen_curve:P-384",
                    ],
                ),
                "a P-384 key",
            ),
            (
                "Ed448",
                generate("ed448.pem", &["genpkey", "-algorithm", "ed448"]),
                "an Ed448 key",
            ),
            (
                "SEC1 P-256",
                generate(
                    "sec1.pem",
                    &["ecparam", "-genkey", "-noout", "-name", "prime256v1"],
                ),
                "a PEM labelled `EC PRIVATE KEY`",
            ),
            (
                "garbage",
                "not a key".to_owned(),
                "not a PEM-encoded DER document",
            ),
            ("empty", String::new(), "not a PEM-encoded DER document"),
            ("truncated", truncated, "incomplete"),
        ];
        for (name, pem, says) in rows {
            let error = SigningKey::from_pem(&pem, None).unwrap_err().to_string();
            assert!(error.contains(says), "{name}: {error}");
            assert!(
                error.contains("accepted: an ES256 (ECDSA P-256) or EdDSA (Ed25519) PKCS#8"),
                "{name}: {error}"
            );
        }
        let path = dir.path().join("rsa.pem");
        let error = SigningKey::load(&path, None).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("signing key {}: an RSA key", path.display())),
            "{error}"
        );
    }

    #[test]
    fn explicit_kid_overrides_thumbprint() {
        for algorithm in ALGORITHMS {
            let key = SigningKey::generate(algorithm).unwrap();
            let named = SigningKey::from_pem(&key.to_pem().unwrap(), Some("k1".into())).unwrap();
            assert_eq!(named.kid(), "k1");
            assert_eq!(named.key_spec().kid, "k1");
        }
    }

    #[test]
    fn material_comparison_ignores_non_key_members() {
        for algorithm in ALGORITHMS {
            let key = SigningKey::generate(algorithm).unwrap();
            let mut with_use = key.key_spec();
            with_use.jwk.insert("use".into(), "sig".into());
            assert!(same_material(&key.key_spec(), &with_use));
            let other = SigningKey::generate(algorithm).unwrap();
            assert!(!same_material(&key.key_spec(), &other.key_spec()));
        }
        let es = SigningKey::generate(KeyAlgorithm::ES256).unwrap();
        let ed = SigningKey::generate(KeyAlgorithm::EdDSA).unwrap();
        assert!(!same_material(&es.key_spec(), &ed.key_spec()));
    }

    #[test]
    fn keygen_writes_0600_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        for algorithm in ALGORITHMS {
            let path = dir.path().join(format!("{algorithm:?}.pem"));
            let key = write_new_key(&path, algorithm).unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let loaded = SigningKey::load(&path, None).unwrap();
            assert_eq!(loaded.kid(), key.kid());
            assert_eq!(loaded.algorithm(), algorithm);
            let before = std::fs::read(&path).unwrap();
            assert!(matches!(
                write_new_key(&path, algorithm),
                Err(KeyError::Exists(_))
            ));
            assert_eq!(std::fs::read(&path).unwrap(), before, "unchanged");
        }
    }
}
