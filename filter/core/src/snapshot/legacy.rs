//! Schema 1.x, the JSON envelope that filters and sidecars before schema 2 speak: written by
//! the sidecar only for a fetcher that announces 1.x, and read only where a rolling upgrade
//! needs it (a store holding what a previous sidecar published). Nothing on the request path
//! reads it.
//!
//! The envelope carries the header fields beside the raw content bytes, so its checksum
//! (`sha256:<hex>`) is over exactly what was sent. 1.1 added `min_token_iat`, announced in
//! `required_features` so that a 1.0 reader refuses it rather than ignore a revocation.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::{Content, Schema, SnapshotError, Stamp};
use crate::generation::{is_valid_epoch, Generation};

/// The 1.x schema this code writes.
pub const SCHEMA: Schema = Schema { major: 1, minor: 1 };
/// Features a 1.x reader of this code implements.
pub const KNOWN_FEATURES: &[&str] = &[FEATURE_MIN_TOKEN_IAT];
/// `content.min_token_iat` is set: a reader that ignored it would accept revoked tokens, so
/// readers that do not know it must refuse the snapshot (schema 1.1).
pub const FEATURE_MIN_TOKEN_IAT: &str = "min_token_iat";

/// The envelope fields of a decoded 1.x snapshot.
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

/// A decoded, validated 1.x snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub header: Header,
    pub content: Content,
}

/// The features a reader must know to read `content` safely (an older reader that ignored
/// them would loosen policy), for the envelope's `required_features`.
pub fn required_features(content: &Content) -> Vec<String> {
    content
        .min_token_iat
        .map(|_| FEATURE_MIN_TOKEN_IAT.to_owned())
        .into_iter()
        .collect()
}

/// `sha256:<hex>` of a content's canonical encoding: equal for equal contents.
pub fn checksum(content: &Content) -> Result<String, SnapshotError> {
    let mut canonical = content.clone();
    canonical.canonicalize();
    Ok(checksum_of(&to_json(&canonical)?))
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
        schema: SCHEMA,
        required_features: required_features(&canonical),
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
    if header.schema.major != SCHEMA.major {
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
    Ok(Snapshot { header, content })
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

#[cfg(test)]
mod tests;
