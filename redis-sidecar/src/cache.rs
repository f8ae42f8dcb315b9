//! The in-memory view of the current snapshot: the signed index bytes to serve, the content
//! they hold and the [`Index`] the token endpoint decides from, all keyed by (epoch,
//! generation) and published through a `tokio::sync::watch` so long-polling fetchers wake on
//! change. The 1.x JSON envelope of the same generation, for fetchers that announce 1.x, is
//! made from the content the first time one asks.
//!
//! The view is fed by this process's own publishes ([`Cache::install_published`]) and by
//! [`Cache::refresh`], which the background poller runs every 100 ms to learn of publishes by
//! other sidecar instances and of Redis losing its data. It must never move backwards within
//! an epoch, never invent a snapshot (no head in Redis means no snapshot, never an empty one)
//! and never drop the view merely because Redis is unreachable.
//!
//! It also notices when the store's history was *rewound* (a backup restored, a failover that
//! lost acknowledged writes): Redis's head in an epoch is below a generation already seen in
//! that epoch — by this process, or held by a fetcher ([`Cache::refresh_claimed`]). Serving the
//! rewound head would hand out an older access state under numbers fetchers may already hold
//! with other content, so instead the epoch is replaced (a compare-and-set in Redis) and
//! nothing is served until the next publish, exactly as when Redis lost its data.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::body::Bytes;
use registry_gate_core::generation::Generation;
use registry_gate_core::index::Index;
use registry_gate_core::snapshot::{self, legacy, Content, SnapshotError, Stamp};
use registry_gate_index::layout::MAGIC;
use registry_gate_index::Signer;
use tokio::sync::{watch, Mutex};

use crate::store::{HeadState, Restart, Store, StoreError};

/// How many recent epochs [`Seen`] remembers.
const SEEN_EPOCHS: usize = 8;
/// How often a rewind is re-examined when the epoch switch loses its compare-and-set.
const RESTART_ATTEMPTS: u32 = 4;

/// One generation, immutable once built.
#[derive(Debug)]
pub struct Current {
    pub stamp: Stamp,
    /// The signed index: what the store holds (or, for a generation a previous sidecar wrote
    /// as 1.x JSON, its index signed here) and what 2.x fetchers get.
    pub body: Bytes,
    /// What the index holds, canonical.
    pub content: Content,
    pub index: Index,
    /// The 1.x JSON envelope of this generation, made on the first 1.x fetcher's request.
    legacy: OnceLock<Result<Bytes, SnapshotError>>,
}

/// A generation's content is a million small allocations at Katello scale: freeing it takes
/// a tenth of a publish. The last holder of a replaced generation is often a request (the
/// publish that replaced it), so the freeing is handed to a blocking thread.
impl Drop for Current {
    fn drop(&mut self) {
        let content = std::mem::take(&mut self.content);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn_blocking(move || drop(content));
        }
    }
}

impl Current {
    /// A generation from its parts (a local publish: the body was just built from `content`).
    pub fn new(stamp: Stamp, body: Bytes, content: Content) -> Result<Current, SnapshotError> {
        // The builder validated what it wrote: a check of identity and shape suffices.
        let checksum = registry_gate_index::layout::carried_checksum(&body).unwrap_or_default();
        let opened = snapshot::open_known(body.to_vec(), checksum)?;
        Ok(Current::of(stamp, body, content, opened.index))
    }

    fn of(stamp: Stamp, body: Bytes, content: Content, index: Index) -> Current {
        Current {
            stamp,
            body,
            content,
            index,
            legacy: OnceLock::new(),
        }
    }

    /// Reads what the store holds: a signed index, or the 1.x JSON envelope a sidecar before
    /// schema 2 wrote (converted, and signed with `signer`, so 2.x fetchers can install the
    /// generation too). CPU-bound: call from a blocking context for large snapshots.
    pub fn decode(body: Bytes, signer: &Signer) -> Result<Current, SnapshotError> {
        if !body.starts_with(&MAGIC) {
            let decoded = legacy::decode(&body)?;
            let header = decoded.header;
            let stamp = Stamp {
                epoch: header.epoch,
                generation: header.generation,
                published_at: header.published_at,
                producer: header.producer,
                allow_empty: header.allow_empty,
            };
            let mut index = snapshot::build_index(&decoded.content, &stamp)?;
            signer.sign(&mut index)?;
            let current = Current::new(stamp, Bytes::from(index), decoded.content)?;
            // The 1.x readers get exactly what was stored.
            let _ = current.legacy.set(Ok(body));
            return Ok(current);
        }
        let opened = snapshot::open(body.to_vec())?;
        let stored = opened.index.stored();
        let stamp = Stamp {
            epoch: stored.epoch().to_owned(),
            generation: stored.generation(),
            published_at: stored.published_at(),
            producer: stored.producer().to_owned(),
            allow_empty: stored.allow_empty(),
        };
        let content = snapshot::content_of(stored)?;
        Ok(Current::of(stamp, body, content, opened.index))
    }

    /// The identity this generation is served under (its `ETag`).
    pub fn generation(&self) -> Generation {
        Generation::new(self.stamp.epoch.as_str(), self.stamp.generation)
    }

    /// The 1.x JSON envelope of this generation (made once; CPU-bound the first time).
    pub fn legacy_body(&self) -> Result<Bytes, SnapshotError> {
        self.legacy
            .get_or_init(|| legacy::encode(&self.content, &self.stamp).map(Bytes::from))
            .clone()
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

    /// The epoch the view belongs to, if known.
    pub fn epoch(&self) -> Option<&str> {
        match self {
            View::Unknown => None,
            View::Empty { epoch } => Some(epoch),
            View::Ready(current) => Some(&current.stamp.epoch),
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
    #[error(
        "the store's history was rewound in epoch {epoch} but the epoch could not be switched \
         after {attempts} attempts (the head kept moving)"
    )]
    RestartContended { epoch: String, attempts: u32 },
}

/// The highest generation seen in each of the last [`SEEN_EPOCHS`] epochs (newest last). A head
/// below it in the same epoch means the store's history was rewound.
#[derive(Debug, Default)]
struct Seen {
    highest: VecDeque<Generation>,
}

impl Seen {
    /// Raises the mark of `generation`'s epoch to it (remembering the epoch if new).
    fn record(&mut self, generation: &Generation) {
        if let Some(held) = self
            .highest
            .iter_mut()
            .find(|held| held.epoch == generation.epoch)
        {
            held.number = held.number.max(generation.number);
            return;
        }
        if self.highest.len() >= SEEN_EPOCHS {
            self.highest.pop_front();
        }
        self.highest.push_back(generation.clone());
    }

    /// The generation seen in `state`'s epoch that its head is below (no head counts as
    /// below everything), if any: the proof that the history was rewound.
    fn rewound(&self, state: &HeadState) -> Option<&Generation> {
        self.highest.iter().find(|held| {
            held.epoch == state.epoch && state.head.is_none_or(|head| head < held.number)
        })
    }
}

/// The current-snapshot view and its change notifications.
#[derive(Debug)]
pub struct Cache {
    tx: watch::Sender<View>,
    /// Serializes "read Redis, then update the view" against installs by local publishes, so
    /// that a slow refresh can never overwrite a newer generation with an older one; guards
    /// the generations seen, against which every head read is checked for a rewind.
    update: Mutex<Seen>,
    /// The last (epoch, generation) that failed to decode, so a broken body is reported
    /// once rather than every 100 ms.
    refused: std::sync::Mutex<Option<Generation>>,
    /// Signs the index of a generation the store holds as 1.x JSON.
    signer: Arc<Signer>,
    /// When the store last answered a read of epoch and head: how fresh this view is known
    /// to be.
    last_read: std::sync::Mutex<Option<Instant>>,
    /// The generation a local publish is writing, which it installs itself: a refresh that
    /// finds it at the head leaves it to that publish rather than read and decode it back
    /// from Redis (under the lock the publish then waits for).
    local: Arc<std::sync::Mutex<Option<Generation>>>,
}

/// A local publish of one generation in flight ([`Cache::publishing`]); dropping it (the
/// publish installed the generation, failed, or was cancelled) lets refreshes read that
/// generation again.
#[derive(Debug)]
pub struct Publishing {
    local: Arc<std::sync::Mutex<Option<Generation>>>,
}

impl Drop for Publishing {
    fn drop(&mut self) {
        if let Ok(mut local) = self.local.lock() {
            *local = None;
        }
    }
}

impl Cache {
    /// An empty view (nothing learned yet) whose 1.x conversions are signed by `signer`.
    pub fn new(signer: Arc<Signer>) -> Cache {
        Cache {
            tx: watch::Sender::new(View::Unknown),
            update: Mutex::new(Seen::default()),
            refused: std::sync::Mutex::new(None),
            signer,
            last_read: std::sync::Mutex::new(None),
            local: Arc::default(),
        }
    }

    /// Marks `generation` as being written by a local publish, until the guard drops.
    pub fn publishing(&self, generation: &Generation) -> Publishing {
        if let Ok(mut local) = self.local.lock() {
            *local = Some(generation.clone());
        }
        Publishing {
            local: Arc::clone(&self.local),
        }
    }

    /// [`Current::decode`] of a body read from the store, off the async runtime (`Err`: the
    /// blocking task failed).
    pub async fn decode(&self, body: Vec<u8>) -> Result<Result<Current, SnapshotError>, String> {
        let signer = Arc::clone(&self.signer);
        tokio::task::spawn_blocking(move || Current::decode(Bytes::from(body), &signer))
            .await
            .map_err(|e| e.to_string())
    }

    /// How long ago the store last answered a read (`None`: never since start).
    pub fn since_last_read(&self) -> Option<std::time::Duration> {
        self.last_read
            .lock()
            .ok()
            .and_then(|at| at.map(|at| at.elapsed()))
    }

    fn read_succeeded(&self) {
        if let Ok(mut at) = self.last_read.lock() {
            *at = Some(Instant::now());
        }
    }

    pub fn view(&self) -> View {
        self.tx.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<View> {
        self.tx.subscribe()
    }

    /// Installs a generation this process just published, unless the view has meanwhile
    /// moved to another epoch or to a newer generation (the poller saw it first).
    pub async fn install_published(&self, current: Arc<Current>) {
        let mut seen = self.update.lock().await;
        seen.record(&current.generation());
        self.tx.send_if_modified(|view| {
            let newer = match view {
                View::Unknown => true,
                View::Empty { epoch } => *epoch == current.stamp.epoch,
                View::Ready(held) => {
                    held.stamp.epoch == current.stamp.epoch
                        && held.stamp.generation < current.stamp.generation
                }
            };
            if newer {
                *view = View::Ready(current);
            }
            newer
        });
    }

    /// Reads epoch and head from Redis and brings the view up to date: a new generation is
    /// fetched once, decoded and indexed; a missing head empties the view; a rewound history
    /// starts a new epoch (see the module doc). On error the view is kept. Returns the view.
    pub async fn refresh(&self, store: &Store) -> Result<View, RefreshError> {
        self.refresh_with(store, None).await
    }

    /// [`Cache::refresh`] for a fetcher that holds `claimed`, a generation newer than this
    /// view in the same epoch: either another instance published it and this one has not
    /// polled yet (Redis has it: it is installed), or Redis's head is below it and the history
    /// was rewound (a new epoch starts).
    pub async fn refresh_claimed(
        &self,
        store: &Store,
        claimed: &Generation,
    ) -> Result<View, RefreshError> {
        self.refresh_with(store, Some(claimed)).await
    }

    /// Epoch and head as the publisher must build on: read from Redis and, if the history
    /// was rewound, after starting a new epoch.
    pub async fn store_state(&self, store: &Store) -> Result<HeadState, RefreshError> {
        let mut seen = self.update.lock().await;
        let state = reconcile(&mut seen, store, None).await?;
        self.read_succeeded();
        if state.head.is_none() {
            self.empty(state.epoch.clone());
        }
        Ok(state)
    }

    async fn refresh_with(
        &self,
        store: &Store,
        claimed: Option<&Generation>,
    ) -> Result<View, RefreshError> {
        let mut seen = self.update.lock().await;
        // Held to the end: the view is updated under the same lock as the read.
        // The view counts as read fresh only once it holds what the store's head names: a
        // head whose body cannot be read or is refused leaves it ageing.
        let state = reconcile(&mut seen, store, claimed).await?;
        let Some(generation) = state.head else {
            self.empty(state.epoch);
            self.read_succeeded();
            return Ok(self.view());
        };
        let wanted = Generation::new(state.epoch.clone(), generation);
        if self.view().generation().as_ref() == Some(&wanted) {
            self.read_succeeded();
            return Ok(self.view());
        }
        let refused = self
            .refused
            .lock()
            .map(|r| r.as_ref() == Some(&wanted))
            .unwrap_or(false);
        let local = self
            .local
            .lock()
            .map(|l| l.as_ref() == Some(&wanted))
            .unwrap_or(false);
        if refused || local {
            return Ok(self.view());
        }
        let body = store
            .body(generation)
            .await?
            .ok_or_else(|| RefreshError::Missing {
                epoch: wanted.epoch.clone(),
                generation,
            })?;
        let decoded = self.decode(body).await.map_err(RefreshError::Task)?;
        let current = match decoded {
            Ok(current)
                if current.stamp.epoch == wanted.epoch
                    && current.stamp.generation == generation =>
            {
                current
            }
            Ok(current) => {
                return Err(self.refuse(
                    wanted,
                    SnapshotError::Invalid(format!(
                        "body claims epoch {} generation {}",
                        current.stamp.epoch, current.stamp.generation
                    )),
                ))
            }
            Err(error) => return Err(self.refuse(wanted, error)),
        };
        let current = Arc::new(current);
        self.tx.send_replace(View::Ready(current));
        self.read_succeeded();
        Ok(self.view())
    }

    /// Empties the view: `epoch` has no snapshot.
    fn empty(&self, epoch: String) {
        self.tx.send_if_modified(|view| match view {
            View::Empty { epoch: held } if *held == epoch => false,
            _ => {
                *view = View::Empty { epoch };
                true
            }
        });
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

/// Reads epoch and head and checks them against the generations seen (and `claimed`, one a
/// fetcher holds): a head below one of them in the same epoch means the history was rewound,
/// so the epoch is replaced by compare-and-set and the state under the new epoch (no head)
/// is returned. Otherwise the head is recorded as seen and the state returned as read.
async fn reconcile(
    seen: &mut Seen,
    store: &Store,
    claimed: Option<&Generation>,
) -> Result<HeadState, RefreshError> {
    let mut epoch = String::new();
    for _ in 0..RESTART_ATTEMPTS {
        let state = store.state().await?;
        if state.created_epoch {
            tracing::warn!(
                epoch = %state.epoch,
                "Redis had no epoch (first start or data lost): created a new one; \
                 no snapshot is served until one is published"
            );
        }
        if let Some(claimed) = claimed.filter(|c| c.epoch == state.epoch) {
            seen.record(claimed);
        }
        let Some(highest) = seen.rewound(&state).cloned() else {
            if let Some(head) = state.head {
                seen.record(&Generation::new(state.epoch.clone(), head));
            }
            return Ok(state);
        };
        match store.restart_epoch(&state.epoch, state.head).await? {
            Restart::Restarted { epoch } => {
                tracing::warn!(
                    old_epoch = %state.epoch,
                    head = ?state.head,
                    seen = highest.number,
                    new_epoch = %epoch,
                    "the snapshot store's history was rewound (backup restored or writes lost \
                     in a failover): started a new epoch; no snapshot is served until the \
                     next publish"
                );
                return Ok(HeadState {
                    epoch,
                    head: None,
                    created_epoch: false,
                });
            }
            Restart::Moved => epoch = state.epoch,
        }
    }
    Err(RefreshError::RestartContended {
        epoch,
        attempts: RESTART_ATTEMPTS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(epoch: &str, head: Option<u64>) -> HeadState {
        HeadState {
            epoch: epoch.into(),
            head,
            created_epoch: false,
        }
    }

    #[test]
    fn a_head_below_a_generation_seen_in_its_epoch_is_a_rewind() {
        let mut seen = Seen::default();
        seen.record(&Generation::new("e", 10));
        seen.record(&Generation::new("e", 7));
        seen.record(&Generation::new("f", 3));
        struct Row {
            case: &'static str,
            state: HeadState,
            rewound: bool,
        }
        let rows = [
            Row {
                case: "same head",
                state: state("e", Some(10)),
                rewound: false,
            },
            Row {
                case: "newer head",
                state: state("e", Some(11)),
                rewound: false,
            },
            Row {
                case: "older head (a lower record does not lower the mark)",
                state: state("e", Some(9)),
                rewound: true,
            },
            Row {
                case: "no head in a seen epoch",
                state: state("e", None),
                rewound: true,
            },
            Row {
                case: "an epoch never seen",
                state: state("g", Some(1)),
                rewound: false,
            },
            Row {
                case: "no head in an epoch never seen",
                state: state("g", None),
                rewound: false,
            },
            Row {
                case: "another seen epoch, below its mark",
                state: state("f", Some(2)),
                rewound: true,
            },
        ];
        for row in rows {
            assert_eq!(
                seen.rewound(&row.state).is_some(),
                row.rewound,
                "{}",
                row.case
            );
        }
    }

    #[test]
    fn only_the_last_epochs_are_remembered() {
        let mut seen = Seen::default();
        for i in 0..=SEEN_EPOCHS {
            seen.record(&Generation::new(format!("e{i}"), 5));
        }
        assert!(seen.rewound(&state("e0", Some(1))).is_none(), "forgotten");
        assert!(seen.rewound(&state("e1", Some(1))).is_some());
        assert_eq!(seen.highest.len(), SEEN_EPOCHS);
    }
}
