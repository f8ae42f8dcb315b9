//! The snapshot: the one document that carries every repository, grant and verification key
//! from the sidecar to every Envoy worker.
//!
//! Owns the content model ([`Content`]: the JSON input format of the sidecar's APIs), its
//! validation and canonical form, its conversion into the schema-2 index the readers decide
//! from ([`build_index`]) and back ([`content_of`]), opening an index for deciding ([`open`],
//! [`check`]: the index's own validation plus its keys), schema negotiation ([`Schema`]) and
//! the admission rule a reader applies before installing a newer snapshot ([`admit`]). The
//! byte format itself is `registry_gate_index`'s; the 1.x JSON envelope, written and read only
//! for rolling upgrades, is [`legacy`]'s. It must never accept a snapshot it does not fully
//! understand: unknown fields, an unknown schema major or an unknown required feature are
//! errors.

use std::collections::{BTreeMap, BTreeSet};

use hashbrown::HashSet;
use registry_gate_index::names::is_valid_key_id;
use registry_gate_index::{Builder, IndexError, Part};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::generation::Generation;
use crate::identity::is_valid_principal_name;
use crate::index::Index;
use crate::route::is_valid_repository_name;
use crate::token::{Algorithm, KeyRing, KeySpec};

pub mod legacy;

/// Schema major this code reads and writes: the binary index. A different major is refused.
pub const SCHEMA_MAJOR: u32 = registry_gate_index::layout::MAJOR as u32;
/// Schema minor this code writes.
pub const SCHEMA_MINOR: u32 = registry_gate_index::layout::MINOR as u32;

pub use registry_gate_index::{MAX_KEYS, MAX_PRINCIPALS, MAX_REPOSITORIES};

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

/// Schema version of a snapshot: 2.x is the binary index, 1.x the JSON envelope of
/// [`legacy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schema {
    pub major: u32,
    pub minor: u32,
}

impl Schema {
    /// The schema this code writes and reads best: the binary index.
    pub const CURRENT: Schema = Schema {
        major: SCHEMA_MAJOR,
        minor: SCHEMA_MINOR,
    };

    /// The JSON envelope this code still writes for readers of 1.x ([`legacy`]).
    pub const LEGACY: Schema = legacy::SCHEMA;

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

    /// Whether a reader speaking `self` can read a snapshot written as `written`: the same
    /// major, whatever the minor (a newer minor only adds what its required features announce
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
    /// The index refused by its validator or its signature check.
    #[error(transparent)]
    Index(#[from] IndexError),
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
            SnapshotError::Index(error) => error.reason(),
            SnapshotError::NotNewer { .. } => "not_newer",
            SnapshotError::SuspiciouslyEmpty { .. } => "suspiciously_empty",
        }
    }
}

impl Content {
    /// Checks every rule and reports every problem at once (up to a bounded number).
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
            if !is_valid_key_id(&key.kid) {
                problems.add(format!(
                    "key id {:?} is not 1 to 256 characters without control characters",
                    key.kid
                ));
            } else if !kids.insert(key.kid.as_str()) {
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
}

/// Builds a content (validated: see [`Content::validate`]) into an unsigned schema-2 index
/// stamped with `stamp`. The index's own validator runs over the result.
pub fn build_index(content: &Content, stamp: &Stamp) -> Result<Vec<u8>, SnapshotError> {
    let invalid = |e: registry_gate_index::BuildError| SnapshotError::Invalid(e.to_string());
    let mut builder = Builder::new(
        content
            .repositories
            .iter()
            .map(|r| (r.name.as_str(), r.auth_required)),
    )
    .map_err(invalid)?;
    for (part, grants) in [
        (Part::Users, &content.users),
        (Part::Hosts, &content.hosts),
        (Part::Writers, &content.writers),
    ] {
        for (principal, names) in grants {
            builder
                .grant(part, principal, names.iter().map(String::as_str))
                .map_err(invalid)?;
        }
    }
    let specs = content
        .keys
        .iter()
        .map(|key| serde_json::to_string(key).map(|json| (key.kid.as_str(), json)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SnapshotError::Malformed(e.to_string()))?;
    for (kid, json) in &specs {
        builder.key(kid, json);
    }
    builder
        .finish(&registry_gate_index::Stamp {
            epoch: &stamp.epoch,
            producer: &stamp.producer,
            generation: stamp.generation,
            published_at: stamp.published_at,
            allow_empty: stamp.allow_empty,
            min_token_iat: content.min_token_iat,
        })
        .map_err(|e| match e {
            registry_gate_index::BuildError::Invalid(index) => SnapshotError::Index(index),
            other => invalid(other),
        })
}

/// The content an index holds (canonical: sorted and deduplicated), for the sidecar reading
/// what its store holds and for tools.
pub fn content_of<B: AsRef<[u8]>>(
    index: &registry_gate_index::Index<B>,
) -> Result<Content, SnapshotError> {
    let part = |part: Part| -> BTreeMap<String, Vec<String>> {
        index
            .principals(part)
            .map(|(principal, ids)| {
                let names = ids
                    .iter()
                    .filter_map(|id| index.name(id))
                    .map(str::to_owned)
                    .collect();
                (principal.to_owned(), names)
            })
            .collect()
    };
    Ok(Content {
        repositories: index
            .repositories()
            .map(|(name, auth_required)| Repository {
                name: name.to_owned(),
                auth_required,
            })
            .collect(),
        users: part(Part::Users),
        hosts: part(Part::Hosts),
        writers: part(Part::Writers),
        keys: key_specs(index)?,
        min_token_iat: index.min_token_iat(),
    })
}

/// The key specs of an index, each checked as [`Content::validate`] checks keys.
fn key_specs<B: AsRef<[u8]>>(
    index: &registry_gate_index::Index<B>,
) -> Result<Vec<KeySpec>, SnapshotError> {
    index
        .keys()
        .map(|(kid, json)| {
            let spec: KeySpec = serde_json::from_str(json)
                .map_err(|e| SnapshotError::Invalid(format!("key {kid:?}: {e}")))?;
            if spec.kid != kid {
                return Err(SnapshotError::Invalid(format!(
                    "key {kid:?}: its spec names kid {:?}",
                    spec.kid
                )));
            }
            if spec.alg == Algorithm::HS256 || spec.jwk.contains_key("k") {
                return Err(SnapshotError::Invalid(format!(
                    "key {kid:?}: symmetric (oct / HS256) keys are never distributed in snapshots"
                )));
            }
            Ok(spec)
        })
        .collect()
}

fn key_ring<B: AsRef<[u8]>>(
    index: &registry_gate_index::Index<B>,
) -> Result<KeyRing, SnapshotError> {
    KeyRing::from_specs(&key_specs(index)?)
        .map_err(|e| SnapshotError::Invalid(format!("keys: {e}")))
}

/// An index opened for deciding: validated, with its keys parsed.
#[derive(Debug, Clone)]
pub struct Opened {
    pub index: Index,
    pub keys: KeyRing,
}

/// Opens index bytes for deciding: the index's validation (not its signature), then its keys.
pub fn open(bytes: Vec<u8>) -> Result<Opened, SnapshotError> {
    let index = Index::open(bytes)?;
    let keys = key_ring(index.stored())?;
    Ok(Opened { index, keys })
}

/// [`open`] for the bytes a full validation accepted before, named by their `checksum` (a
/// worker opening what the fetcher checked): identity and shape are checked, not each item
/// (`registry_gate_index::Index::open_known`); the keys are parsed as by [`open`].
pub fn open_known(bytes: Vec<u8>, checksum: u64) -> Result<Opened, SnapshotError> {
    let index = Index::open_known(bytes, checksum)?;
    let keys = key_ring(index.stored())?;
    Ok(Opened { index, keys })
}

/// [`open`] without keeping the bytes: what holding them would mean.
pub fn check(bytes: &[u8]) -> Result<Held, SnapshotError> {
    let index = registry_gate_index::Index::open(bytes)?;
    key_ring(&index)?;
    Ok(Held::of(&index))
}

/// What an installer knows about the snapshot it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub generation: Generation,
    pub repositories: usize,
    /// The publisher meant it to replace one with repositories even if it has none.
    pub allow_empty: bool,
    /// The index's checksum: what names exactly these bytes.
    pub checksum: u64,
}

impl Held {
    /// What holding `index` means.
    pub fn of<B: AsRef<[u8]>>(index: &registry_gate_index::Index<B>) -> Held {
        Held {
            generation: Generation::new(index.epoch(), index.generation()),
            repositories: index.len(),
            allow_empty: index.allow_empty(),
            checksum: index.checksum(),
        }
    }
}

/// The admission rule: a snapshot replaces the held one only if it is newer (or from a new
/// epoch) and is not an unannounced wipe of every repository.
pub fn admit(held: Option<&Held>, offered: &Held) -> Result<(), SnapshotError> {
    let Some(held) = held else {
        return Ok(());
    };
    if !offered.generation.supersedes(&held.generation) {
        return Err(SnapshotError::NotNewer {
            held: held.generation.clone(),
            offered: offered.generation.clone(),
        });
    }
    if offered.repositories == 0 && held.repositories > 0 && !offered.allow_empty {
        return Err(SnapshotError::SuspiciouslyEmpty {
            held: held.repositories,
        });
    }
    Ok(())
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
