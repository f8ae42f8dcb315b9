//! The snapshot: the one document that carries every repository, grant and verification key
//! from the sidecar to every Envoy worker, and its wire format.
//!
//! Owns the content model ([`Content`]), its validation and canonical form, the envelope
//! ([`Header`]: schema version, required features, epoch, generation, checksum) and the
//! admission rule a fetcher applies before installing a newer snapshot ([`admit`]). Both the
//! sidecar (which encodes) and the filter (which decodes) use this module, so there is one
//! definition of the format. It must never accept a document it does not fully understand:
//! unknown fields, an unknown schema major or an unknown required feature are errors.

use std::collections::{BTreeMap, BTreeSet};

use hashbrown::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::generation::{is_valid_epoch, Generation};
use crate::identity::is_valid_principal_name;
use crate::route::is_valid_repository_name;
use crate::token::{Algorithm, KeyRing, KeySpec};

/// Schema major this code reads and writes. A different major is refused.
pub const SCHEMA_MAJOR: u32 = 1;
/// Schema minor this code writes. Newer minors only add optional fields, which older
/// readers are told about through `required_features` when they matter. 1.1 added
/// `min_token_iat`.
pub const SCHEMA_MINOR: u32 = 1;
/// Features this reader implements; a snapshot requiring anything else is refused.
pub const KNOWN_FEATURES: &[&str] = &[FEATURE_MIN_TOKEN_IAT];
/// `content.min_token_iat` is set: a reader that ignored it would accept revoked tokens, so
/// readers that do not know it must refuse the snapshot (schema 1.1).
pub const FEATURE_MIN_TOKEN_IAT: &str = "min_token_iat";

/// Upper bounds that keep a hostile or broken document from exhausting a worker.
pub const MAX_REPOSITORIES: usize = 1_000_000;
/// Upper bound on principals (users plus hosts plus writers).
pub const MAX_PRINCIPALS: usize = 1_000_000;
/// Upper bound on verification keys.
pub const MAX_KEYS: usize = 64;

/// One repository and whether pulling it needs a grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repository {
    pub name: String,
    /// `false` means anyone, even without a token, may pull it (Katello's
    /// "unauthenticated pull" lifecycle environments).
    pub auth_required: bool,
}

/// Everything the filter decides from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Content {
    pub repositories: Vec<Repository>,
    /// User login → repositories the user may pull.
    #[serde(default)]
    pub users: BTreeMap<String, Vec<String>>,
    /// Content-host UUID (client-certificate CN) → repositories the host may pull.
    #[serde(default)]
    pub hosts: BTreeMap<String, Vec<String>>,
    /// User login → repositories the user may push to and delete from.
    #[serde(default)]
    pub writers: BTreeMap<String, Vec<String>>,
    /// Token verification keys, selected by `kid`.
    #[serde(default)]
    pub keys: Vec<KeySpec>,
    /// Tokens issued (`iat`) before this unix second, or without `iat`, are refused: "log
    /// everyone out" without rotating keys (schema 1.1, feature `min_token_iat`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_token_iat: Option<u64>,
}

/// What the publisher stamps on a content to make it a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub epoch: String,
    pub generation: u64,
    /// Unix seconds.
    pub published_at: u64,
    pub producer: String,
    /// Set only when the publisher explicitly asked to publish a content with no
    /// repositories; otherwise readers refuse an empty snapshot replacing a non-empty one.
    pub allow_empty: bool,
}

/// Schema version of an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schema {
    pub major: u32,
    pub minor: u32,
}

impl Schema {
    /// The schema this code writes and reads best.
    pub const CURRENT: Schema = Schema {
        major: SCHEMA_MAJOR,
        minor: SCHEMA_MINOR,
    };

    /// What a fetcher that does not say which schema it speaks speaks (those before
    /// negotiation): 1.0.
    pub const UNANNOUNCED: Schema = Schema { major: 1, minor: 0 };

    /// Parses `<major>.<minor>` (decimal, as a fetcher announces it); `None` otherwise.
    pub fn parse(text: &str) -> Option<Schema> {
        let (major, minor) = text.split_once('.')?;
        let number = |part: &str| -> Option<u32> {
            if part.is_empty() || part.len() > 9 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            part.parse().ok()
        };
        Some(Schema {
            major: number(major)?,
            minor: number(minor)?,
        })
    }

    /// Whether a reader speaking `self` can read an envelope written as `written`: the same
    /// major, whatever the minor (a newer minor only adds what `required_features` announces
    /// when it matters, and a reader refuses a feature it does not know).
    pub fn reads(self, written: Schema) -> bool {
        self.major == written.major
    }
}

impl std::fmt::Display for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The envelope fields of a decoded snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub schema: Schema,
    pub required_features: Vec<String>,
    /// Changes whenever the distribution store lost its data, so generations restart.
    pub epoch: String,
    pub generation: u64,
    pub published_at: u64,
    pub producer: String,
    /// `sha256:<hex>` of the exact `content` bytes in the envelope.
    pub checksum: String,
    pub allow_empty: bool,
}

impl Header {
    /// The generation this snapshot is.
    pub fn generation(&self) -> Generation {
        Generation::new(self.epoch.as_str(), self.generation)
    }
}

/// A decoded, validated snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub header: Header,
    pub content: Content,
    /// `content.keys`, parsed: every reader needs them, and parsing is part of validation.
    pub keys: KeyRing,
}

/// Why a snapshot was refused. `reason()` names it for stats.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SnapshotError {
    #[error("snapshot is not valid JSON for this schema: {0}")]
    Malformed(String),
    #[error("snapshot schema major {0} is not supported (this reader understands {SCHEMA_MAJOR})")]
    UnsupportedSchema(u32),
    #[error("snapshot requires unknown features: {0}")]
    UnknownFeatures(String),
    #[error("snapshot checksum does not match its content")]
    ChecksumMismatch,
    #[error("snapshot content is invalid: {0}")]
    Invalid(String),
    #[error("snapshot generation {offered} is not newer than the installed {held}")]
    NotNewer {
        held: Generation,
        offered: Generation,
    },
    #[error("snapshot has no repositories while the installed one has {held}")]
    SuspiciouslyEmpty { held: usize },
}

impl SnapshotError {
    /// Stable snake_case name for stats.
    pub fn reason(&self) -> &'static str {
        match self {
            SnapshotError::Malformed(_) => "malformed",
            SnapshotError::UnsupportedSchema(_) => "unsupported_schema",
            SnapshotError::UnknownFeatures(_) => "unknown_features",
            SnapshotError::ChecksumMismatch => "checksum_mismatch",
            SnapshotError::Invalid(_) => "invalid",
            SnapshotError::NotNewer { .. } => "not_newer",
            SnapshotError::SuspiciouslyEmpty { .. } => "suspiciously_empty",
        }
    }
}

impl Content {
    /// Checks every rule and reports every problem at once (up to a bounded number).
    /// The features a reader must know to read this content safely (an older reader that
    /// ignored them would loosen policy), for the envelope's `required_features`.
    pub fn required_features(&self) -> Vec<String> {
        self.min_token_iat
            .map(|_| FEATURE_MIN_TOKEN_IAT.to_owned())
            .into_iter()
            .collect()
    }

    pub fn validate(&self) -> Result<(), SnapshotError> {
        let mut problems = Problems::default();
        if self.repositories.len() > MAX_REPOSITORIES {
            problems.add(format!(
                "{} repositories exceed the limit of {MAX_REPOSITORIES}",
                self.repositories.len()
            ));
        }
        let principals = self.users.len() + self.hosts.len() + self.writers.len();
        if principals > MAX_PRINCIPALS {
            problems.add(format!(
                "{principals} principals exceed the limit of {MAX_PRINCIPALS}"
            ));
        }
        if self.keys.len() > MAX_KEYS {
            problems.add(format!(
                "{} keys exceed the limit of {MAX_KEYS}",
                self.keys.len()
            ));
        }
        // Hashed, not ordered: a grant's lookup is one probe instead of a walk through a tree
        // whose every step is a cache miss (a million grants took seconds that way).
        let mut known = HashSet::with_capacity(self.repositories.len());
        for repository in &self.repositories {
            if !is_valid_repository_name(&repository.name) {
                problems.add(format!("repository name {:?} is invalid", repository.name));
            } else if !known.insert(repository.name.as_str()) {
                problems.add(format!("repository {:?} is listed twice", repository.name));
            }
        }
        for (part, grants) in [
            ("users", &self.users),
            ("hosts", &self.hosts),
            ("writers", &self.writers),
        ] {
            for (principal, repositories) in grants {
                if !is_valid_principal_name(principal) {
                    problems.add(format!("{part}: principal {principal:?} is invalid"));
                }
                for name in repositories {
                    if !known.contains(name.as_str()) {
                        problems.add(format!(
                            "{part}: {principal:?} is granted unknown repository {name:?}"
                        ));
                    }
                }
            }
        }
        let mut kids = BTreeSet::new();
        for key in &self.keys {
            if !kids.insert(key.kid.as_str()) {
                problems.add(format!("key id {:?} is listed twice", key.kid));
            } else if key.alg == Algorithm::HS256 || key.jwk.contains_key("k") {
                // Everyone who can read a snapshot would learn the signing secret.
                problems.add(format!(
                    "key {:?}: symmetric (oct / HS256) keys are never distributed in snapshots",
                    key.kid
                ));
            } else if let Err(err) = KeyRing::from_specs(core::slice::from_ref(key)) {
                problems.add(format!("keys: {err}"));
            }
        }
        problems.into_result()
    }

    /// The validated key set. Call after [`Content::validate`].
    fn key_ring(&self) -> Result<KeyRing, SnapshotError> {
        KeyRing::from_specs(&self.keys).map_err(|e| SnapshotError::Invalid(format!("keys: {e}")))
    }

    /// Sorts and dedupes every list so that equal contents encode to equal bytes.
    pub fn canonicalize(&mut self) {
        self.repositories.sort_by(|a, b| a.name.cmp(&b.name));
        self.repositories.dedup_by(|a, b| a.name == b.name);
        for grants in [&mut self.users, &mut self.hosts, &mut self.writers] {
            for repositories in grants.values_mut() {
                repositories.sort();
                repositories.dedup();
            }
        }
        self.keys.sort_by(|a, b| a.kid.cmp(&b.kid));
    }

    /// `sha256:<hex>` of the canonical encoding: equal for equal contents.
    pub fn checksum(&self) -> Result<String, SnapshotError> {
        let mut canonical = self.clone();
        canonical.canonicalize();
        Ok(checksum_of(&to_json(&canonical)?))
    }
}

/// Encodes a content (canonicalized, validated) under a stamp into envelope bytes.
pub fn encode(content: &Content, stamp: &Stamp) -> Result<Vec<u8>, SnapshotError> {
    if !is_valid_epoch(&stamp.epoch) {
        return Err(bad_epoch(&stamp.epoch));
    }
    let mut canonical = content.clone();
    canonical.canonicalize();
    canonical.validate()?;
    let content_bytes = to_json(&canonical)?;
    let content_text =
        String::from_utf8(content_bytes).map_err(|e| SnapshotError::Malformed(e.to_string()))?;
    let checksum = checksum_of(content_text.as_bytes());
    let raw =
        RawValue::from_string(content_text).map_err(|e| SnapshotError::Malformed(e.to_string()))?;
    let envelope = Envelope {
        schema: Schema::CURRENT,
        required_features: canonical.required_features(),
        epoch: stamp.epoch.clone(),
        generation: stamp.generation,
        published_at: stamp.published_at,
        producer: stamp.producer.clone(),
        checksum,
        allow_empty: stamp.allow_empty,
        content: raw,
    };
    serde_json::to_vec(&envelope).map_err(|e| SnapshotError::Malformed(e.to_string()))
}

/// Decodes envelope bytes: schema, required features, checksum over the exact content bytes,
/// then the content's own validation.
pub fn decode(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
    let envelope: Envelope =
        serde_json::from_slice(bytes).map_err(|e| SnapshotError::Malformed(e.to_string()))?;
    let header = Header {
        schema: envelope.schema,
        required_features: envelope.required_features,
        epoch: envelope.epoch,
        generation: envelope.generation,
        published_at: envelope.published_at,
        producer: envelope.producer,
        checksum: envelope.checksum,
        allow_empty: envelope.allow_empty,
    };
    if !is_valid_epoch(&header.epoch) {
        return Err(bad_epoch(&header.epoch));
    }
    if header.schema.major != SCHEMA_MAJOR {
        return Err(SnapshotError::UnsupportedSchema(header.schema.major));
    }
    let unknown: Vec<&str> = header
        .required_features
        .iter()
        .map(String::as_str)
        .filter(|feature| !KNOWN_FEATURES.contains(feature))
        .collect();
    if !unknown.is_empty() {
        return Err(SnapshotError::UnknownFeatures(unknown.join(", ")));
    }
    if checksum_of(envelope.content.get().as_bytes()) != header.checksum {
        return Err(SnapshotError::ChecksumMismatch);
    }
    let content: Content = serde_json::from_str(envelope.content.get())
        .map_err(|e| SnapshotError::Malformed(e.to_string()))?;
    content.validate()?;
    let keys = content.key_ring()?;
    Ok(Snapshot {
        header,
        content,
        keys,
    })
}

/// What an installer knows about the snapshot it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub generation: Generation,
    pub repositories: usize,
}

impl Held {
    /// What holding `snapshot` means.
    pub fn of(snapshot: &Snapshot) -> Held {
        Held {
            generation: snapshot.header.generation(),
            repositories: snapshot.content.repositories.len(),
        }
    }
}

/// The admission rule: a decoded snapshot replaces the held one only if it is newer (or from
/// a new epoch) and is not an unannounced wipe of every repository.
pub fn admit(held: Option<&Held>, offered: &Snapshot) -> Result<(), SnapshotError> {
    let Some(held) = held else {
        return Ok(());
    };
    let generation = offered.header.generation();
    if !generation.supersedes(&held.generation) {
        return Err(SnapshotError::NotNewer {
            held: held.generation.clone(),
            offered: generation,
        });
    }
    if offered.content.repositories.is_empty()
        && held.repositories > 0
        && !offered.header.allow_empty
    {
        return Err(SnapshotError::SuspiciouslyEmpty {
            held: held.repositories,
        });
    }
    Ok(())
}

/// The wire envelope: the header fields beside the raw content bytes, so the checksum is
/// computed over exactly what was sent. No `flatten` here: serde cannot combine it with
/// `RawValue`. Unknown envelope fields are tolerated (newer minors add optional ones); the
/// content itself is strict.
#[derive(Serialize, Deserialize)]
struct Envelope {
    schema: Schema,
    #[serde(default)]
    required_features: Vec<String>,
    epoch: String,
    generation: u64,
    published_at: u64,
    producer: String,
    checksum: String,
    #[serde(default)]
    allow_empty: bool,
    content: Box<RawValue>,
}

fn bad_epoch(epoch: &str) -> SnapshotError {
    SnapshotError::Malformed(format!(
        "epoch {epoch:?} is not 1 to 64 visible ASCII characters without '\"'"
    ))
}

fn to_json(content: &Content) -> Result<Vec<u8>, SnapshotError> {
    serde_json::to_vec(content).map_err(|e| SnapshotError::Malformed(e.to_string()))
}

fn checksum_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Collects validation problems; reports the first few and how many there were.
#[derive(Default)]
struct Problems {
    shown: Vec<String>,
    total: usize,
}

impl Problems {
    const SHOWN: usize = 20;

    fn add(&mut self, problem: String) {
        self.total += 1;
        if self.shown.len() < Self::SHOWN {
            self.shown.push(problem);
        }
    }

    fn into_result(self) -> Result<(), SnapshotError> {
        if self.total == 0 {
            return Ok(());
        }
        let mut message = self.shown.join("; ");
        if self.total > self.shown.len() {
            message.push_str(&format!(
                "; and {} more problems",
                self.total - self.shown.len()
            ));
        }
        Err(SnapshotError::Invalid(message))
    }
}

#[cfg(test)]
mod tests;
