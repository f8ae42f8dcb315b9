//! Registry tokens: the credentials a token request carries and the htpasswd-bcrypt file
//! format (checked by [`crate::login`]), what the caller may have (requested scopes ∩
//! snapshot grants) and the signed JWT that says so.
//!
//! An absent `Authorization` header means anonymous. In this slice only `repository` scopes
//! and only `pull` are ever granted. This module must never write anything anywhere (a login
//! is read-only), never log a password or a token, and never run bcrypt on the async
//! runtime's threads.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use jwt_compact::{Claims, Header};
use registry_gate_core::identity::Principal;
use registry_gate_core::index::Index;
use registry_gate_core::route::Action;
use registry_gate_core::scope::{AccessEntry, ResourceScope};
use registry_gate_core::token::{Audience, RegistryClaims};
use thiserror::Error;

use crate::keys::SigningKey;

/// The bcrypt cost of the dummy hash checked for unknown users when the file has no entries.
const DEFAULT_COST: u32 = 10;

/// Why an htpasswd file was refused; every bad line is listed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}", problems.join("; "))]
pub struct HtpasswdError {
    pub problems: Vec<String>,
}

/// User → bcrypt hash, from an htpasswd file with bcrypt entries only.
#[derive(Clone)]
pub struct Htpasswd {
    users: HashMap<String, String>,
    /// Verified against for unknown users so that "no such user" and "wrong password" take
    /// the same time: one hash of a random secret per bcrypt cost the file uses, computed
    /// once when the file is loaded. See [`Htpasswd::hash_for`].
    dummies: Dummies,
}

/// The dummy hashes, each with how many users of the file have its cost.
#[derive(Clone)]
struct Dummies {
    /// `(hash, users at that cost)`, by cost.
    hashes: Vec<(String, usize)>,
    /// Keys the choice of a dummy for an unknown user name.
    key: [u8; 32],
}

impl std::fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Htpasswd")
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

impl Htpasswd {
    /// Parses `user:hash` lines; blank lines and `#` comments are skipped. Only bcrypt
    /// (`$2y$`, `$2b$`, `$2a$`) hashes are accepted; anything else is reported with its line.
    pub fn parse(text: &str) -> Result<Htpasswd, HtpasswdError> {
        let mut users = HashMap::new();
        let mut problems = Vec::new();
        let mut costs: std::collections::BTreeMap<u32, usize> = std::collections::BTreeMap::new();
        for (number, line) in text.lines().enumerate() {
            let number = number + 1;
            let line = line.trim_end_matches(['\r', ' ', '\t']);
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                problems.push(format!("line {number}: expected user:hash"));
                continue;
            };
            if user.is_empty() || user.chars().any(|c| c.is_control() || c.is_whitespace()) {
                problems.push(format!("line {number}: invalid user name"));
                continue;
            }
            if !["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p)) {
                problems.push(format!(
                    "line {number}: user {user:?} has a {} hash; only bcrypt ($2y$, $2b$, $2a$) is accepted",
                    hash_kind(hash)
                ));
                continue;
            }
            match hash.parse::<bcrypt::HashParts>() {
                Ok(parts) if (4..=31).contains(&parts.get_cost()) => {
                    *costs.entry(parts.get_cost()).or_default() += 1;
                }
                Ok(parts) => {
                    problems.push(format!(
                        "line {number}: user {user:?} has bcrypt cost {} outside 4..=31",
                        parts.get_cost()
                    ));
                    continue;
                }
                Err(e) => {
                    problems.push(format!("line {number}: user {user:?}: {e}"));
                    continue;
                }
            }
            if users.insert(user.to_owned(), hash.to_owned()).is_some() {
                problems.push(format!("line {number}: user {user:?} is listed twice"));
            }
        }
        if !problems.is_empty() {
            return Err(HtpasswdError { problems });
        }
        let dummy_problem = |e: String| HtpasswdError {
            problems: vec![format!("cannot prepare the dummy hashes: {e}")],
        };
        if costs.is_empty() {
            costs.insert(DEFAULT_COST, 1);
        }
        if costs.len() > 1 {
            tracing::warn!(
                ?costs,
                "htpasswd file mixes bcrypt costs: a login's time tells which cost its user has; \
                 rehash every user at one cost"
            );
        }
        let mut key = [0_u8; 32];
        getrandom::fill(&mut key).map_err(|e| dummy_problem(e.to_string()))?;
        let mut hashes = Vec::with_capacity(costs.len());
        for (cost, count) in costs {
            let mut secret = [0_u8; 18];
            getrandom::fill(&mut secret).map_err(|e| dummy_problem(e.to_string()))?;
            let hash = bcrypt::hash(hex::encode(secret), cost)
                .map_err(|e| dummy_problem(e.to_string()))?;
            hashes.push((hash, count));
        }
        Ok(Htpasswd {
            users,
            dummies: Dummies { hashes, key },
        })
    }

    pub fn load(path: &Path) -> Result<Htpasswd, HtpasswdError> {
        let text = std::fs::read_to_string(path).map_err(|e| HtpasswdError {
            problems: vec![format!("cannot read {}: {e}", path.display())],
        })?;
        Htpasswd::parse(&text)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `password` is `user`'s. CPU-heavy (bcrypt): call from a blocking thread.
    /// Known and unknown users take one path: one bcrypt verification against
    /// [`Htpasswd::hash_for`] (the dummy for an unknown user, at the file's highest cost).
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let (hash, known) = self.hash_for(user);
        let matched = bcrypt::verify(password, hash).unwrap_or(false);
        known & matched
    }

    /// The hash a login as `user` is verified against, and whether `user` exists. An
    /// unknown user always gets the same dummy, picked by a keyed hash of its name so that
    /// the costs of unknown users are spread as the file's users' costs are: with mixed
    /// costs, the time a login takes says which cost a user has, not whether it exists.
    pub fn hash_for(&self, user: &str) -> (&str, bool) {
        match self.users.get(user) {
            Some(hash) => (hash, true),
            None => (self.dummies.pick(user), false),
        }
    }
}

impl Dummies {
    fn pick(&self, user: &str) -> &str {
        use hmac::Mac as _;
        let total: usize = self.hashes.iter().map(|(_, count)| count).sum();
        let point = match hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.key) {
            Ok(mut mac) => {
                mac.update(user.as_bytes());
                let digest = mac.finalize().into_bytes();
                let mut first = [0_u8; 8];
                first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
                u64::from_le_bytes(first) % u64::try_from(total.max(1)).unwrap_or(1)
            }
            // HMAC takes keys of any length; this arm is never taken.
            Err(_) => 0,
        };
        let mut below = 0_u64;
        for (hash, count) in &self.hashes {
            below = below.saturating_add(u64::try_from(*count).unwrap_or(u64::MAX));
            if point < below {
                return hash;
            }
        }
        self.hashes.last().map_or("", |(hash, _)| hash.as_str())
    }
}

fn hash_kind(hash: &str) -> &'static str {
    if hash.starts_with("$apr1$") {
        "MD5 (apr1)"
    } else if hash.starts_with("{SHA}") {
        "SHA-1"
    } else if hash.starts_with("$5$") || hash.starts_with("$6$") {
        "SHA-crypt"
    } else if hash.starts_with("$2x$") {
        "legacy bcrypt ($2x$)"
    } else if hash.starts_with('$') {
        "non-bcrypt"
    } else {
        "crypt or plain-text"
    }
}

/// The credentials a token request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    Anonymous,
    Basic { user: String, password: String },
}

/// Parses the `Authorization` header of a token request: none → anonymous; `Basic` with a
/// well-formed `user:password` → Basic; anything else is refused (`None`).
pub fn credentials(header: Option<&[u8]>) -> Option<Credentials> {
    let Some(header) = header else {
        return Some(Credentials::Anonymous);
    };
    let header = std::str::from_utf8(header).ok()?.trim();
    let (scheme, value) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(value.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    if user.is_empty() {
        return None;
    }
    Some(Credentials::Basic {
        user: user.to_owned(),
        password: password.to_owned(),
    })
}

/// `access` = requested ∩ granted. Only `repository` scopes with `pull`, and the catalog
/// scope `registry:catalog:*`, are granted; scopes asking for the same repository are merged; a repository with nothing
/// granted is left out (lack of access is not an error, the token just does not carry it).
pub fn grant(requested: &[ResourceScope], who: &Principal, index: &Index) -> Vec<AccessEntry> {
    let mut granted: Vec<AccessEntry> = Vec::new();
    for scope in requested {
        if scope.resource_type == "registry" && scope.name == "catalog" {
            // Listing is filtered to what the caller may pull, so the catalog scope is
            // granted to anyone who asks for it (distribution's `registry:catalog:*`).
            let wants_all = scope.actions.iter().any(|a| a == "*");
            if wants_all
                && !granted
                    .iter()
                    .any(|e| e.resource_type == "registry" && e.name == "catalog")
            {
                granted.push(AccessEntry {
                    resource_type: "registry".into(),
                    name: "catalog".into(),
                    actions: vec!["*".into()],
                });
            }
            continue;
        }
        if scope.resource_type != "repository" {
            continue;
        }
        let wants_pull = scope.actions.iter().any(|a| a == "pull" || a == "*");
        if !wants_pull || !index.permits(who, &scope.name, Action::Pull) {
            continue;
        }
        if granted.iter().any(|e| e.name == scope.name) {
            continue;
        }
        granted.push(AccessEntry {
            resource_type: "repository".into(),
            name: scope.name.clone(),
            actions: vec![Action::Pull.as_str().into()],
        });
    }
    granted
}

/// A minted token and the response fields that go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minted {
    pub token: String,
    pub expires_in: u64,
    /// RFC 3339 UTC.
    pub issued_at: String,
}

/// Why a token could not be minted.
#[derive(Debug, Error)]
pub enum MintError {
    #[error("no randomness for jti: {0}")]
    Random(String),
    #[error("clock is out of range")]
    Clock,
    #[error("signing failed: {0}")]
    Sign(String),
}

/// Signs registry tokens with the sidecar's key.
#[derive(Debug)]
pub struct Minter {
    key: SigningKey,
    issuer: String,
    /// `aud` of every token: the registry service name the filter is configured with.
    service: String,
    ttl: Duration,
}

impl Minter {
    pub fn new(key: SigningKey, issuer: String, service: String, ttl: Duration) -> Minter {
        Minter {
            key,
            issuer,
            service,
            ttl,
        }
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    /// A JWT signed with the key's algorithm (`{"alg":"ES256" or "EdDSA","kid","typ":"JWT"}`)
    /// with iss, sub, aud, exp, nbf, iat, jti and access. `sub` is empty for anonymous.
    pub fn mint(
        &self,
        who: &Principal,
        access: Vec<AccessEntry>,
        now: SystemTime,
    ) -> Result<Minted, MintError> {
        let sub = match who {
            Principal::User(user) => user.clone(),
            Principal::Host(host) => host.clone(),
            Principal::Anonymous => String::new(),
        };
        let now = whole_seconds(DateTime::<Utc>::from(now));
        let ttl = chrono::Duration::from_std(self.ttl).map_err(|_| MintError::Clock)?;
        let expires = now.checked_add_signed(ttl).ok_or(MintError::Clock)?;
        let mut claims = Claims::new(RegistryClaims {
            iss: self.issuer.clone(),
            sub,
            aud: Audience::One(self.service.clone()),
            jti: Some(jti()?),
            access: Some(access),
        });
        claims.expiration = Some(expires);
        claims.not_before = Some(now);
        claims.issued_at = Some(now);
        let header = Header::empty()
            .with_key_id(self.key.kid())
            .with_token_type("JWT");
        let token = self
            .key
            .sign(&header, &claims)
            .map_err(|e| MintError::Sign(e.to_string()))?;
        Ok(Minted {
            token,
            expires_in: self.ttl.as_secs(),
            issued_at: now.to_rfc3339_opts(SecondsFormat::Secs, true),
        })
    }
}

fn whole_seconds(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(time.timestamp(), 0).unwrap_or(time)
}

/// 128 random bits as hex.
fn jti() -> Result<String, MintError> {
    let mut bytes = [0_u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| MintError::Random(e.to_string()))?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests;
