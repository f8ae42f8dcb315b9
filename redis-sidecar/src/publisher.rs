//! The publish protocol: turns a validated [`Content`] into the next generation in Redis.
//!
//! One publish reads epoch + head (through the cache, which first starts a new epoch if the
//! store's history was rewound), builds the new content (a whole document as given, or a
//! [`Source::Change`] applied to the current content — re-applied on every attempt, so writers
//! of different parts never lose each other's), compares its checksum with the current
//! snapshot's (equal → nothing is written), checks the caller's precondition and the
//! empty-snapshot guard, encodes the envelope stamped with `head + 1` and advances the head
//! with the store's compare-and-set. A conditional publish (`If-Match`) that loses the race
//! fails with [`PublishError::PreconditionFailed`]; an unconditional one re-reads and retries a
//! bounded number of times. With replica acknowledgements required (`--redis-min-replicas-acked`)
//! the store answers a publish only once enough replicas hold it, and a publish that finds
//! its content already current answers only once that head is confirmed current and
//! replicated, so a success always means "held by the replicas". Publishes from this process
//! are serialized, so local writers queue instead of fighting over the CAS; other instances
//! are kept honest by the CAS alone. Unconditional changes (Katello's sync calls, login
//! refreshes) coalesce: one task takes every change waiting, applies them in order to one
//! copy of the current content and publishes once, answering each caller with that
//! generation, so a burst of a thousand calls makes a handful of snapshots.
//!
//! It must never write a generation that did not pass `Content::validate`, never write two
//! bodies for one generation, never skip or reuse a generation within an epoch, and never
//! publish without this sidecar's own verification key in the key set.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use registry_gate_core::generation::{Generation, Preconditions};
use registry_gate_core::snapshot::{self, Content, SnapshotError, Stamp};
use registry_gate_core::token::KeySpec;
use registry_gate_index::Signer;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::cache::{Cache, Current, RefreshError};
use crate::keys;
use crate::metrics::{Metrics, PublishOutcome};
use crate::store::{CasOutcome, Store, StoreError};

/// Attempts an unconditional publish makes before giving up under contention.
const MAX_ATTEMPTS: u32 = 32;

/// The result of a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub generation: Generation,
    /// False when the content equalled the current snapshot and nothing was written.
    pub changed: bool,
}

/// Changes waiting to be coalesced into one publish, at most.
const QUEUE: usize = 4096;
/// How long the first change of a batch waits for others to join it: a burst of sync calls
/// arrives over tens of milliseconds, and each publish rebuilds and signs the whole index.
const LINGER: Duration = Duration::from_millis(20);

/// Why a publish did not happen. Nothing was written in any of these cases.
#[derive(Debug, Clone, Error)]
pub enum PublishError {
    #[error("{0}")]
    Invalid(String),
    /// The caller may change repositories and grants only.
    #[error(
        "changing {0} needs the admin secret (--admin-secret-file): the sync secret, Katello's \
         client certificates and the sync job change repositories and grants only"
    )]
    Forbidden(&'static str),
    #[error(
        "the body carries key id {0:?} with key material different from this sidecar's signing key"
    )]
    KeyConflict(String),
    #[error("precondition failed: the current generation is not what If-Match or If-None-Match required")]
    PreconditionFailed { current: Option<Generation> },
    #[error(
        "refusing to replace a snapshot of {current} repositories with one that has none; \
         add ?allow_empty=true to publish an empty snapshot on purpose"
    )]
    WouldEmpty { current: usize },
    #[error("gave up after {0} attempts: other writers kept publishing first; retry")]
    Contended(u32),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// A change to the current content, made in place; it may be called more than once (once per
/// attempt, on whatever is current then).
pub type Change = Arc<dyn Fn(&mut Content) + Send + Sync>;

/// Where the published content comes from.
#[derive(Clone)]
pub enum Source {
    /// A whole document (`PUT /v1/snapshot`, re-keying).
    Whole(Content),
    /// One part replaced on whatever is current when the publish runs (the Katello sync API,
    /// login refreshes); before the first publish it applies to an empty content.
    Change(Change),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Whole(content) => f.debug_tuple("Whole").field(content).finish(),
            Source::Change(_) => f.write_str("Change(..)"),
        }
    }
}

/// A source made ready to publish: a whole document is prepared once, outside the lock.
enum Build {
    Ready(Content),
    Change(Change),
}

impl Build {
    /// Gives a whole document back for the next attempt (a change is applied afresh).
    fn retry_with(&mut self, content: Content) {
        if let Build::Ready(ready) = self {
            *ready = content;
        }
    }
}

/// What a caller asks to publish.
#[derive(Debug, Clone)]
pub struct Request {
    pub source: Source,
    /// `If-Match` or `If-None-Match`, when given.
    pub precondition: Option<Precondition>,
    /// Permit replacing a non-empty snapshot with one without repositories.
    pub allow_empty: bool,
    pub authority: Authority,
}

/// Who asks, and so what may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authority {
    /// The admin secret (and this sidecar's own key upkeep): anything.
    Admin,
    /// The sync secret, Katello's client certificates, login refreshes: repositories and
    /// grants only; `keys` and `min_token_iat` must stay as they are.
    Sync,
}

/// A change waiting in the coalescing queue, with where its answer goes.
struct Queued {
    change: Change,
    allow_empty: bool,
    done: oneshot::Sender<Result<Published, PublishError>>,
}

/// A caller's condition on the current generation (RFC 9110 §13.1.1–13.1.2).
#[derive(Debug, Clone)]
pub enum Precondition {
    /// `If-Match`: publish only if the current generation is one of these (`*`: any).
    IfMatch(Preconditions),
    /// `If-None-Match`: publish only if it is none of these; `*` means only when nothing has
    /// been published in this epoch (the first publish after Redis lost its data).
    IfNoneMatch(Preconditions),
}

impl Precondition {
    /// Whether the condition holds for `current` (`None`: nothing published).
    fn holds(&self, current: Option<&Generation>) -> bool {
        match self {
            Precondition::IfMatch(tags) => current.is_some_and(|held| tags.matches(held)),
            Precondition::IfNoneMatch(tags) => !current.is_some_and(|held| tags.matches(held)),
        }
    }
}

/// Publishes snapshots for this sidecar.
#[derive(Debug)]
pub struct Publisher {
    store: Store,
    cache: Arc<Cache>,
    /// Added to every published key set so minted tokens verify.
    own_key: KeySpec,
    /// Signs every index published.
    signer: Arc<Signer>,
    producer: String,
    clock: fn() -> SystemTime,
    /// Serializes this process's publishes (see the module doc).
    lock: Mutex<()>,
    metrics: Arc<Metrics>,
    /// Into the coalescing task.
    queue: mpsc::Sender<Queued>,
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Queued(..)")
    }
}

impl Publisher {
    /// The publisher, with its coalescing task started (so it must run inside the tokio
    /// runtime; the task ends with the publisher).
    pub fn start(
        store: Store,
        cache: Arc<Cache>,
        own_key: KeySpec,
        signer: Arc<Signer>,
        clock: fn() -> SystemTime,
        metrics: Arc<Metrics>,
    ) -> Arc<Publisher> {
        let (queue, receiver) = mpsc::channel(QUEUE);
        let publisher = Arc::new(Publisher {
            store,
            cache,
            own_key,
            signer,
            producer: format!("registry-gate-sidecar/{}", env!("CARGO_PKG_VERSION")),
            clock,
            lock: Mutex::new(()),
            metrics,
            queue,
        });
        tokio::spawn(coalesce(Arc::downgrade(&publisher), receiver));
        publisher
    }

    /// Publishes a request (see the module doc for the protocol), counted by outcome.
    pub async fn publish(&self, request: Request) -> Result<Published, PublishError> {
        let started = std::time::Instant::now();
        let result = match request {
            Request {
                source: Source::Change(change),
                precondition: None,
                allow_empty,
                authority: Authority::Sync,
            } => self.queued(change, allow_empty).await,
            request => self.publish_now(request).await,
        };
        let outcome = match &result {
            Ok(published) if published.changed => PublishOutcome::Published,
            Ok(_) => PublishOutcome::Unchanged,
            Err(PublishError::PreconditionFailed { .. }) => PublishOutcome::PreconditionFailed,
            Err(
                PublishError::Invalid(_)
                | PublishError::KeyConflict(_)
                | PublishError::Forbidden(_),
            ) => PublishOutcome::Invalid,
            Err(PublishError::WouldEmpty { .. }) => PublishOutcome::WouldEmpty,
            Err(PublishError::Contended(_)) => PublishOutcome::Contended,
            Err(PublishError::Store(StoreError::NotReplicated { .. })) => {
                PublishOutcome::NotReplicated
            }
            Err(PublishError::Store(_)) => PublishOutcome::Unavailable,
            Err(PublishError::Internal(_)) => PublishOutcome::Internal,
        };
        self.metrics.publish(outcome, started.elapsed());
        result
    }

    /// Hands an unconditional change to the coalescing task and waits for its publish.
    async fn queued(&self, change: Change, allow_empty: bool) -> Result<Published, PublishError> {
        let (done, answer) = oneshot::channel();
        let queued = Queued {
            change,
            allow_empty,
            done,
        };
        self.queue
            .send(queued)
            .await
            .map_err(|_| PublishError::Internal("the publish queue stopped".into()))?;
        answer
            .await
            .map_err(|_| PublishError::Internal("the publish queue dropped a change".into()))?
    }

    async fn publish_now(&self, request: Request) -> Result<Published, PublishError> {
        // A whole document is prepared once, outside the lock; a change needs the current
        // content, so it is prepared on every attempt.
        let Request {
            source,
            precondition,
            allow_empty,
            authority,
        } = request;
        let mut build = match source {
            Source::Whole(content) => Build::Ready(self.prepared(content).await?),
            Source::Change(change) => Build::Change(change),
        };
        let _serial = self.lock.lock().await;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let state = self
                .cache
                .store_state(&self.store)
                .await
                .map_err(|e| match e {
                    RefreshError::Store(store) => PublishError::Store(store),
                    RefreshError::RestartContended { attempts, .. } => {
                        PublishError::Contended(attempts)
                    }
                    other => PublishError::Internal(other.to_string()),
                })?;
            let current_generation = state
                .head
                .map(|number| Generation::new(state.epoch.clone(), number));
            if let Some(precondition) = &precondition {
                if !precondition.holds(current_generation.as_ref()) {
                    self.catch_up().await;
                    return Err(PublishError::PreconditionFailed {
                        current: current_generation,
                    });
                }
            }
            let current = match &current_generation {
                Some(held) => match self.load(held).await? {
                    Some(current) => Some(current),
                    // Trimmed or flushed between the two reads: read again.
                    None => {
                        if attempt >= MAX_ATTEMPTS {
                            return Err(PublishError::Contended(attempt));
                        }
                        continue;
                    }
                },
                None => None,
            };
            // A whole document moves into this attempt (a million grants are not cloned);
            // an attempt that retries puts it back.
            let content = match &mut build {
                Build::Ready(content) => std::mem::take(content),
                Build::Change(change) => {
                    let mut content = current
                        .as_ref()
                        .map_or_else(Content::default, |c| c.content.clone());
                    change(&mut content);
                    self.prepared(content).await?
                }
            };
            if authority == Authority::Sync {
                self.within_sync_authority(current.as_deref(), &content)?;
            }
            if let Some(current) = &current {
                if current.content == content {
                    // Nothing to write — but a retry after a publish that was refused as not
                    // replicated lands here, so "unchanged" is answered only once the head is
                    // (still current and) replicated as a new write would be.
                    let generation = current.generation();
                    if !self
                        .store
                        .confirm_current(&generation.epoch, generation.number)
                        .await?
                    {
                        if attempt >= MAX_ATTEMPTS {
                            return Err(PublishError::Contended(attempt));
                        }
                        build.retry_with(content);
                        continue;
                    }
                    return Ok(Published {
                        generation,
                        changed: false,
                    });
                }
                let held = current.content.repositories.len();
                if content.repositories.is_empty() && held > 0 && !allow_empty {
                    return Err(PublishError::WouldEmpty { current: held });
                }
            }
            let generation = state.head.map_or(1, |head| head.saturating_add(1));
            let stamp = Stamp {
                epoch: state.epoch.clone(),
                generation,
                published_at: unix_seconds((self.clock)()),
                producer: self.producer.clone(),
                allow_empty,
            };
            let mut encoded = encode(content, stamp, Arc::clone(&self.signer)).await?;
            let _publishing = self.cache.publishing(&encoded.generation());
            match self
                .store
                .compare_and_publish(&state.epoch, state.head, generation, &encoded.body)
                .await?
            {
                CasOutcome::Published => {
                    let generation = encoded.generation();
                    tracing::info!(
                        epoch = %generation.epoch,
                        generation = generation.number,
                        repositories = encoded.content.repositories.len(),
                        bytes = encoded.body.len(),
                        "published snapshot"
                    );
                    self.cache.install_published(Arc::new(encoded)).await;
                    return Ok(Published {
                        generation,
                        changed: true,
                    });
                }
                CasOutcome::HeadMoved | CasOutcome::EpochChanged if precondition.is_some() => {
                    self.catch_up().await;
                    let current = self.store.state().await?;
                    return Err(PublishError::PreconditionFailed {
                        current: current
                            .head
                            .map(|number| Generation::new(current.epoch, number)),
                    });
                }
                CasOutcome::HeadMoved | CasOutcome::EpochChanged => {
                    if attempt >= MAX_ATTEMPTS {
                        return Err(PublishError::Contended(attempt));
                    }
                    build.retry_with(std::mem::take(&mut encoded.content));
                    tracing::debug!(attempt, "publish lost the compare-and-set; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
    }

    /// A sync caller may change repositories and grants, never the verification keys (which
    /// decide whose tokens verify) or `min_token_iat`: both must be what is current (before
    /// the first publish: this sidecar's key alone, no `min_token_iat`).
    fn within_sync_authority(
        &self,
        current: Option<&Current>,
        content: &Content,
    ) -> Result<(), PublishError> {
        let (keys, min_token_iat) = match current {
            Some(current) => (current.content.keys.clone(), current.content.min_token_iat),
            None => (vec![self.own_key.clone()], None),
        };
        let mut wanted = keys;
        if !wanted.iter().any(|k| k.kid == self.own_key.kid) {
            // This sidecar adds its own key to whatever it publishes.
            wanted.push(self.own_key.clone());
            wanted.sort_by(|a, b| a.kid.cmp(&b.kid));
        }
        if content.keys != wanted {
            return Err(PublishError::Forbidden("keys"));
        }
        if content.min_token_iat != min_token_iat {
            return Err(PublishError::Forbidden("min_token_iat"));
        }
        Ok(())
    }

    /// If the current snapshot lacks this sidecar's key, republishes it with the key added
    /// (conditional on it still being current). Called at startup and whenever the poller
    /// sees a generation without the key (e.g. published by another instance).
    pub async fn ensure_own_key(
        &self,
        current: &Current,
    ) -> Result<Option<Published>, PublishError> {
        match current
            .content
            .keys
            .iter()
            .find(|k| k.kid == self.own_key.kid)
        {
            Some(existing) if keys::same_material(existing, &self.own_key) => return Ok(None),
            Some(_) => return Err(PublishError::KeyConflict(self.own_key.kid.clone())),
            None => {}
        }
        let request = Request {
            source: Source::Whole(current.content.clone()),
            precondition: Some(Precondition::IfMatch(Preconditions::Tags(vec![
                current.generation()
            ]))),
            allow_empty: current.stamp.allow_empty,
            authority: Authority::Admin,
        };
        self.publish(request).await.map(Some)
    }

    /// The content with this sidecar's key, validated and canonical (CPU-bound, so off the
    /// async runtime).
    async fn prepared(&self, content: Content) -> Result<Content, PublishError> {
        let own_key = self.own_key.clone();
        tokio::task::spawn_blocking(move || prepare(&own_key, content))
            .await
            .map_err(|e| PublishError::Internal(e.to_string()))?
    }

    /// After losing a race, brings the cache up to date at once (rather than at the next
    /// poll) so the writer's next read sees the generation it must build on.
    async fn catch_up(&self) {
        if let Err(error) = self.cache.refresh(&self.store).await {
            tracing::debug!(%error, "refresh after a failed precondition did not complete");
        }
    }

    /// The decoded generation `wanted`, from the cache when it holds it.
    async fn load(&self, wanted: &Generation) -> Result<Option<Arc<Current>>, PublishError> {
        if let Some(current) = self.cache.view().current() {
            if current.generation() == *wanted {
                return Ok(Some(Arc::clone(current)));
            }
        }
        let Some(body) = self.store.body(wanted.number).await? else {
            return Ok(None);
        };
        let decoded = self
            .cache
            .decode(body)
            .await
            .map_err(PublishError::Internal)?;
        match decoded {
            Ok(current) if current.generation() == *wanted => Ok(Some(Arc::new(current))),
            Ok(current) => Err(PublishError::Internal(format!(
                "stored generation {wanted} claims to be {}",
                current.generation()
            ))),
            // A current snapshot this sidecar cannot read (e.g. a newer schema major written
            // by an upgraded instance) must not be silently replaced.
            Err(error) => Err(PublishError::Internal(format!(
                "the current snapshot {wanted} cannot be read: {error}"
            ))),
        }
    }
}

/// Adds the sidecar's key to `content.keys` (refused if the kid is taken by other material)
/// and validates the result (every problem in one message). CPU-bound for large contents.
fn prepare(own_key: &KeySpec, mut content: Content) -> Result<Content, PublishError> {
    match content.keys.iter().find(|k| k.kid == own_key.kid) {
        Some(existing) if keys::same_material(existing, own_key) => {}
        Some(_) => return Err(PublishError::KeyConflict(own_key.kid.clone())),
        None => content.keys.push(own_key.clone()),
    }
    content
        .validate()
        .map_err(|e| PublishError::Invalid(e.to_string()))?;
    content.canonicalize();
    Ok(content)
}

/// Builds and signs the index off the async runtime, as the generation the cache will hold
/// (built from what was encoded, so the cache needs no Redis read after a local publish).
async fn encode(
    content: Content,
    stamp: Stamp,
    signer: Arc<Signer>,
) -> Result<Current, PublishError> {
    tokio::task::spawn_blocking(move || -> Result<Current, SnapshotError> {
        let mut body = snapshot::build_index(&content, &stamp)?;
        signer.sign(&mut body)?;
        Current::new(stamp, Bytes::from(body), content)
    })
    .await
    .map_err(|e| PublishError::Internal(e.to_string()))?
    .map_err(|e| PublishError::Internal(format!("encoding failed: {e}")))
}

/// The coalescing task: takes every change waiting (the first lingers [`LINGER`] for others),
/// publishes them as one, answers each.
async fn coalesce(publisher: Weak<Publisher>, mut queue: mpsc::Receiver<Queued>) {
    while let Some(first) = queue.recv().await {
        tokio::time::sleep(LINGER).await;
        let mut batch = vec![first];
        while let Ok(next) = queue.try_recv() {
            batch.push(next);
        }
        let Some(publisher) = publisher.upgrade() else {
            break;
        };
        let changes: Vec<Change> = batch.iter().map(|q| Arc::clone(&q.change)).collect();
        let request = Request {
            source: Source::Change(Arc::new(move |content: &mut Content| {
                for change in &changes {
                    change(content);
                }
            })),
            precondition: None,
            allow_empty: batch.iter().any(|q| q.allow_empty),
            authority: Authority::Sync,
        };
        let result = publisher.publish_now(request).await;
        tracing::debug!(
            changes = batch.len(),
            ok = result.is_ok(),
            "coalesced publish"
        );
        for queued in batch {
            let _ = queued.done.send(result.clone());
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    let mut byte = [0_u8; 1];
    let jitter = getrandom::fill(&mut byte).map_or(0, |()| u64::from(u8::from_ne_bytes(byte) % 8));
    Duration::from_millis(u64::from(attempt.min(10)) + jitter)
}

pub fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
