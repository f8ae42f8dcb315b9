//! The in-memory view of the current snapshot: the exact envelope bytes to serve, the decoded
//! content and the [`Index`] the token endpoint decides from, all keyed by (epoch, generation)
//! and published through a `tokio::sync::watch` so long-polling fetchers wake on change.
//!
//! The view is fed by this process's own publishes ([`Cache::install_published`]) and by
//! [`Cache::refresh`], which the background poller runs every 100 ms to learn of publishes by
//! other sidecar instances and of Redis losing its data. It must never move backwards within
//! an epoch, never invent a snapshot (no head in Redis means no snapshot, never an empty one)
//! and never drop the view merely because Redis is unreachable.

use std::sync::Arc;

use axum::body::Bytes;
use registry_gate_core::index::Index;
use registry_gate_core::snapshot::{self, Content, Header, SnapshotError};
use tokio::sync::{watch, Mutex};

use crate::store::{Store, StoreError};

/// One decoded generation, immutable once built.
#[derive(Debug)]
pub struct Current {
    pub header: Header,
    /// The envelope exactly as stored in Redis.
    pub body: Bytes,
    pub content: Content,
    pub index: Index,
}

impl Current {
    /// Decodes and indexes envelope bytes (CPU-bound: call from a blocking context for
    /// large snapshots).
    pub fn decode(body: Bytes) -> Result<Current, SnapshotError> {
        let decoded = snapshot::decode(&body)?;
        let index = Index::build(&decoded.content);
        Ok(Current {
            header: decoded.header,
            body,
            content: decoded.content,
            index,
        })
    }

    pub fn tag(&self) -> Tag {
        Tag {
            epoch: self.header.epoch.clone(),
            generation: self.header.generation,
        }
    }
}

/// The identity of a generation: what an ETag names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tag {
    pub epoch: String,
    pub generation: u64,
}

impl Tag {
    /// The quoted ETag form `"<epoch>.<generation>"`.
    pub fn etag(&self) -> String {
        format!("\"{}.{}\"", self.epoch, self.generation)
    }

    /// Parses one entity tag (`"<epoch>.<generation>"`, optionally weak `W/"..."`).
    pub fn parse(text: &str) -> Option<Tag> {
        let text = text.trim();
        let text = text.strip_prefix("W/").unwrap_or(text);
        let inner = text.strip_prefix('"')?.strip_suffix('"')?;
        let (epoch, generation) = inner.rsplit_once('.')?;
        if epoch.is_empty() || epoch.contains('"') {
            return None;
        }
        if generation.is_empty() || !generation.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Tag {
            epoch: epoch.to_owned(),
            generation: generation.parse().ok()?,
        })
    }

    /// Parses an `If-None-Match` / `If-Match` list: `*` or comma-separated entity tags.
    /// Unparseable members are kept as non-matching (they name no generation of ours).
    pub fn parse_list(header: &str) -> TagList {
        if header.trim() == "*" {
            return TagList::Any;
        }
        TagList::Tags(header.split(',').filter_map(Tag::parse).collect())
    }
}

/// A parsed precondition header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagList {
    /// `*`: any current representation.
    Any,
    Tags(Vec<Tag>),
}

impl TagList {
    /// Whether the list names `tag` exactly (or is `*`): the `If-Match` test.
    pub fn matches(&self, tag: &Tag) -> bool {
        match self {
            TagList::Any => true,
            TagList::Tags(tags) => tags.iter().any(|t| t == tag),
        }
    }

    /// Whether a fetcher holding these tags already has `tag` or something newer in the same
    /// epoch (or sent `*`): the `If-None-Match` test. Behind a load balancer a fetcher may
    /// hold a generation this instance has not polled yet; it then waits for a newer one
    /// instead of being handed an older snapshot it would refuse.
    pub fn covers(&self, tag: &Tag) -> bool {
        match self {
            TagList::Any => true,
            TagList::Tags(tags) => tags
                .iter()
                .any(|t| t.epoch == tag.epoch && t.generation >= tag.generation),
        }
    }
}

/// What the sidecar currently knows.
#[derive(Debug, Clone)]
pub enum View {
    /// Nothing learned from Redis yet (starting, or Redis unreachable since start).
    Unknown,
    /// Redis answered: this epoch has no published snapshot.
    Empty {
        epoch: String,
    },
    Ready(Arc<Current>),
}

impl View {
    pub fn current(&self) -> Option<&Arc<Current>> {
        match self {
            View::Ready(current) => Some(current),
            View::Unknown | View::Empty { .. } => None,
        }
    }

    pub fn tag(&self) -> Option<Tag> {
        self.current().map(|c| c.tag())
    }

    fn epoch(&self) -> Option<&str> {
        match self {
            View::Unknown => None,
            View::Empty { epoch } => Some(epoch),
            View::Ready(current) => Some(&current.header.epoch),
        }
    }
}

/// Why a refresh could not complete. The view is left as it was.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("generation {generation} of epoch {epoch} is not stored (trimmed or lost)")]
    Missing { epoch: String, generation: u64 },
    #[error("stored generation {generation} of epoch {epoch} is refused: {error}")]
    Refused {
        epoch: String,
        generation: u64,
        error: SnapshotError,
    },
    #[error("decoding task failed: {0}")]
    Task(String),
}

/// The current-snapshot view and its change notifications.
#[derive(Debug)]
pub struct Cache {
    tx: watch::Sender<View>,
    /// Serializes "read Redis, then update the view" against installs by local publishes, so
    /// that a slow refresh can never overwrite a newer generation with an older one.
    update: Mutex<()>,
    /// The last (epoch, generation) that failed to decode, so a broken body is reported
    /// once rather than every 100 ms.
    refused: std::sync::Mutex<Option<Tag>>,
}

impl Default for Cache {
    fn default() -> Self {
        Cache {
            tx: watch::Sender::new(View::Unknown),
            update: Mutex::new(()),
            refused: std::sync::Mutex::new(None),
        }
    }
}

impl Cache {
    pub fn view(&self) -> View {
        self.tx.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<View> {
        self.tx.subscribe()
    }

    /// Installs a generation this process just published, unless the view has meanwhile
    /// moved to another epoch or to a newer generation (the poller saw it first).
    pub async fn install_published(&self, current: Arc<Current>) {
        let _guard = self.update.lock().await;
        self.tx.send_if_modified(|view| {
            let newer = match view {
                View::Unknown => true,
                View::Empty { epoch } => *epoch == current.header.epoch,
                View::Ready(held) => {
                    held.header.epoch == current.header.epoch
                        && held.header.generation < current.header.generation
                }
            };
            if newer {
                *view = View::Ready(current);
            }
            newer
        });
    }

    /// Reads epoch and head from Redis and brings the view up to date: a new generation is
    /// fetched once, decoded and indexed; a missing head empties the view. On error the view
    /// is kept. Returns the state read, so the caller can log epoch changes.
    pub async fn refresh(&self, store: &Store) -> Result<View, RefreshError> {
        let _guard = self.update.lock().await;
        let state = store.state().await?;
        if state.created_epoch {
            tracing::warn!(
                epoch = %state.epoch,
                "Redis had no epoch (first start or data lost): created a new one; \
                 no snapshot is served until one is published"
            );
        }
        let Some(generation) = state.head else {
            let epoch = state.epoch;
            self.tx.send_if_modified(|view| match view {
                View::Empty { epoch: held } if *held == epoch => false,
                _ => {
                    *view = View::Empty { epoch };
                    true
                }
            });
            return Ok(self.view());
        };
        let wanted = Tag {
            epoch: state.epoch.clone(),
            generation,
        };
        if self.view().tag().as_ref() == Some(&wanted) {
            return Ok(self.view());
        }
        if self
            .refused
            .lock()
            .map(|r| r.as_ref() == Some(&wanted))
            .unwrap_or(false)
        {
            return Ok(self.view());
        }
        let body = store
            .body(generation)
            .await?
            .ok_or_else(|| RefreshError::Missing {
                epoch: wanted.epoch.clone(),
                generation,
            })?;
        let decoded = tokio::task::spawn_blocking(move || Current::decode(Bytes::from(body)))
            .await
            .map_err(|e| RefreshError::Task(e.to_string()))?;
        let current = match decoded {
            Ok(current)
                if current.header.epoch == wanted.epoch
                    && current.header.generation == generation =>
            {
                current
            }
            Ok(current) => {
                return Err(self.refuse(
                    wanted,
                    SnapshotError::Invalid(format!(
                        "body claims epoch {} generation {}",
                        current.header.epoch, current.header.generation
                    )),
                ))
            }
            Err(error) => return Err(self.refuse(wanted, error)),
        };
        let current = Arc::new(current);
        self.tx.send_replace(View::Ready(current));
        Ok(self.view())
    }

    fn refuse(&self, tag: Tag, error: SnapshotError) -> RefreshError {
        if let Ok(mut refused) = self.refused.lock() {
            *refused = Some(tag.clone());
        }
        RefreshError::Refused {
            epoch: tag.epoch,
            generation: tag.generation,
            error,
        }
    }

    /// The epoch the view belongs to, if known.
    pub fn epoch(&self) -> Option<String> {
        self.tx.borrow().epoch().map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_parsing() {
        type Case<'a> = (&'a str, &'a str, Option<(&'a str, u64)>);
        let cases: &[Case] = &[
            ("plain", "\"abc.7\"", Some(("abc", 7))),
            ("weak", "W/\"abc.7\"", Some(("abc", 7))),
            ("spaces", "  \"abc.7\" ", Some(("abc", 7))),
            (
                "dotted epoch splits on last dot",
                "\"a.b.3\"",
                Some(("a.b", 3)),
            ),
            ("unquoted", "abc.7", None),
            ("no generation", "\"abc.\"", None),
            ("no epoch", "\".7\"", None),
            ("no dot", "\"abc7\"", None),
            ("signed generation", "\"abc.+7\"", None),
            ("non-numeric generation", "\"abc.x\"", None),
            ("overflow", "\"abc.99999999999999999999999\"", None),
            ("empty", "", None),
        ];
        for (name, text, want) in cases {
            let got = Tag::parse(text);
            let want = want.map(|(epoch, generation)| Tag {
                epoch: epoch.into(),
                generation,
            });
            assert_eq!(got, want, "case {name}");
        }
    }

    #[test]
    fn etag_round_trip() {
        let tag = Tag {
            epoch: "00ff".into(),
            generation: 12,
        };
        assert_eq!(tag.etag(), "\"00ff.12\"");
        assert_eq!(Tag::parse(&tag.etag()), Some(tag));
    }

    #[test]
    fn tag_lists() {
        let tag = Tag {
            epoch: "e".into(),
            generation: 2,
        };
        assert!(Tag::parse_list("*").matches(&tag));
        assert!(Tag::parse_list("\"e.1\", \"e.2\"").matches(&tag));
        assert!(Tag::parse_list("garbage, W/\"e.2\"").matches(&tag));
        assert!(!Tag::parse_list("\"e.1\"").matches(&tag));
        assert!(!Tag::parse_list("\"f.2\"").matches(&tag));
        assert!(!Tag::parse_list("").matches(&tag));
    }

    #[test]
    fn if_none_match_covers_same_epoch_newer_generations() {
        let tag = Tag {
            epoch: "e".into(),
            generation: 5,
        };
        let cases: &[(&str, &str, bool)] = &[
            ("same", "\"e.5\"", true),
            ("client ahead of this instance", "\"e.9\"", true),
            ("client behind", "\"e.4\"", false),
            ("other epoch", "\"f.9\"", false),
            ("star", "*", true),
            ("list with one covering", "\"f.1\", \"e.6\"", true),
            ("garbage", "nonsense", false),
        ];
        for (name, header, want) in cases {
            assert_eq!(Tag::parse_list(header).covers(&tag), *want, "case {name}");
        }
        assert!(
            !Tag::parse_list("\"e.9\"").matches(&tag),
            "If-Match stays exact"
        );
    }
}
