//! Token issuers other than the sidecar: one fresh key per algorithm (EdDSA, ES256, RS256),
//! made at run time and never written down. Their public keys go into a snapshot (for
//! registry-gate) or a JWKS (for Envoy's `jwt_authn` in `make bench`), so tests and the bench
//! can send tokens of every algorithm the filter verifies.

use crate::tokens::{mint_with, random_es256_key, random_key, EsSigningKey, Mint};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jwt_compact::alg::{Ed25519, Es256, ModulusBits, Rsa, RsaPrivateKey};
use jwt_compact::jwk::JsonWebKey;
use registry_gate_core::token::Algorithm;

enum Key {
    Ed(ed25519_compact::SecretKey),
    Es(EsSigningKey),
    Rs(Box<RsaPrivateKey>),
}

/// One algorithm's issuer.
pub struct Issuer {
    pub alg: Algorithm,
    pub kid: String,
    key: Key,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// A fresh key for `alg` (EdDSA, ES256 or RS256 with a 2048-bit modulus).
    pub fn generate(alg: Algorithm) -> Result<Issuer, String> {
        let key = match alg {
            Algorithm::EdDSA => Key::Ed(random_key()),
            Algorithm::ES256 => Key::Es(random_es256_key()),
            Algorithm::RS256 => {
                let (private, _) = Rsa::generate(&mut rand_core::OsRng, ModulusBits::TwoKibibytes)
                    .map_err(|err| format!("RSA key: {err}"))?;
                Key::Rs(Box::new(private.into_inner()))
            }
            Algorithm::HS256 => {
                return Err("no HS256 issuer: its key would be a shared secret".to_owned())
            }
        };
        Ok(Issuer {
            alg,
            kid: format!("issuer-{}", alg.name().to_ascii_lowercase()),
            key,
        })
    }

    /// The public JWK with `kid`, `alg` and `use`: a snapshot key and a JWKS entry at once.
    pub fn jwk(&self) -> serde_json::Value {
        let mut jwk = match &self.key {
            Key::Ed(secret) => serde_json::json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(secret.public_key().as_ref()),
            }),
            Key::Es(key) => {
                serde_json::to_value(JsonWebKey::from(key.verifying_key())).unwrap_or_default()
            }
            Key::Rs(key) => {
                serde_json::to_value(JsonWebKey::from(&key.to_public_key())).unwrap_or_default()
            }
        };
        if let Some(members) = jwk.as_object_mut() {
            members.insert("kid".into(), self.kid.clone().into());
            members.insert("alg".into(), self.alg.name().into());
            members.insert("use".into(), "sig".into());
        }
        jwk
    }

    /// A token for `mint` (its `kid` replaced by this issuer's).
    pub fn mint(&self, mint: &Mint) -> String {
        let mint = Mint {
            kid: self.kid.clone(),
            ..mint.clone()
        };
        match &self.key {
            Key::Ed(secret) => mint_with(&Ed25519, secret, &mint),
            Key::Es(key) => mint_with(&Es256, key, &mint),
            Key::Rs(key) => mint_with(&Rsa::rs256(), key.as_ref(), &mint),
        }
    }
}
