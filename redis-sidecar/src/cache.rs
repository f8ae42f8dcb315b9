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
use registry_gate_core::generation::Generation;
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

    /// The identity this generation is served under (its `ETag`).
    pub fn generation(&self) -> Generation {
        Generation::new(self.header.epoch.clone(), self.header.generation)
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

    pub fn generation(&self) -> Option<Generation> {
        self.current().map(|c| c.generation())
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
    refused: std::sync::Mutex<Option<Generation>>,
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
        let wanted = Generation::new(state.epoch.clone(), generation);
        if self.view().generation().as_ref() == Some(&wanted) {
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

    fn refuse(&self, wanted: Generation, error: SnapshotError) -> RefreshError {
        if let Ok(mut refused) = self.refused.lock() {
            *refused = Some(wanted.clone());
        }
        RefreshError::Refused {
            epoch: wanted.epoch,
            generation: wanted.number,
            error,
        }
    }

    /// The epoch the view belongs to, if known.
    pub fn epoch(&self) -> Option<String> {
        self.tx.borrow().epoch().map(str::to_owned)
    }
}
