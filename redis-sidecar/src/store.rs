//! The Redis side of snapshot distribution: key layout, the one bounded connection pool, the
//! epoch, the head pointer and the atomic compare-and-set that advances it.
//!
//! Key layout (all under the configured prefix `P`):
//! - `P epoch` — random hex string, created with `SET NX` whenever it is missing. A missing
//!   epoch means Redis lost its data (flush, restart without persistence), so generations
//!   restart at 1 under a new epoch and fetchers accept them because the epoch changed. It is
//!   also replaced, by [`RESTART_SCRIPT`], when the history was rewound (a backup restored, a
//!   failover that lost writes): the head is then below a generation already seen.
//! - `P head` — decimal generation of the current snapshot; advanced only by [`CAS_SCRIPT`].
//! - `P snapshot:<generation>` — the envelope bytes of that generation, written once and
//!   never changed; all but the newest `keep` generations are deleted by the same script.
//!
//! This module moves opaque bytes: it must never decode or validate a snapshot (that is
//! `publisher`'s and `cache`'s job), never advance `head` except through the script, never
//! decide by itself that history was rewound (the cache does), and never panic on a Redis
//! failure — every failure is a [`StoreError`].

use crate::metrics::PoolState;
use std::time::Duration;

use deadpool_redis::{Manager, Pool, Runtime};
use redis::{AsyncConnectionConfig, Script};
use thiserror::Error;

/// How long one Redis round trip may take before it counts as a failure.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting or waiting for a pooled connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Reads the epoch (creating it with `SET NX` when missing) and the head in one atomic step,
/// so the pair is always consistent.
///
/// KEYS: epoch, head. ARGV: a fresh random epoch to use if none exists.
/// Returns `{epoch, head-or-"", created(0|1)}`.
const STATE_SCRIPT: &str = r"
local epoch = redis.call('GET', KEYS[1])
local created = 0
if not epoch then
  redis.call('SET', KEYS[1], ARGV[1], 'NX')
  epoch = ARGV[1]
  created = 1
end
local head = redis.call('GET', KEYS[2]) or ''
return {epoch, head, created}
";

/// The compare-and-set that publishes a generation: only if the epoch and the head are still
/// what the publisher read does it write the new body, point `head` at it and delete the
/// generations that fell out of the kept window (walking down from `new - keep` until the
/// first already-missing one, so the work is bounded by what exists).
///
/// KEYS: epoch, head, body key of the new generation.
/// ARGV: expected epoch, expected head ("" when there is none), new generation, body, keep,
/// body key prefix (for trimming).
/// Returns 1 when published, 0 when the head moved, -1 when the epoch changed or vanished.
pub const CAS_SCRIPT: &str = r"
local epoch = redis.call('GET', KEYS[1])
if epoch ~= ARGV[1] then return -1 end
local head = redis.call('GET', KEYS[2]) or ''
if head ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[3], ARGV[4])
redis.call('SET', KEYS[2], ARGV[3])
local g = tonumber(ARGV[3]) - tonumber(ARGV[5])
while g > 0 do
  if redis.call('DEL', ARGV[6] .. g) == 0 then break end
  g = g - 1
end
return 1
";

/// Starts a new epoch after the history was rewound, as a compare-and-set: only if the epoch
/// and the head are still what the caller judged rewound does it replace the epoch, delete
/// the head (nothing is served under the new epoch until the next publish) and delete the
/// rewound bodies (walking down from the head until the first missing one). Two sidecars
/// detecting the same rewind switch the epoch once: the second finds the epoch changed.
///
/// KEYS: epoch, head. ARGV: expected epoch, expected head ("" when there is none), new epoch,
/// body key prefix.
/// Returns `{epoch now in force, 1 if this call switched it else 0}`.
pub const RESTART_SCRIPT: &str = r"
local epoch = redis.call('GET', KEYS[1]) or ''
local head = redis.call('GET', KEYS[2]) or ''
if epoch ~= ARGV[1] or head ~= ARGV[2] then return {epoch, 0} end
redis.call('SET', KEYS[1], ARGV[3])
redis.call('DEL', KEYS[2])
local g = tonumber(head)
while g and g > 0 do
  if redis.call('DEL', ARGV[4] .. g) == 0 then break end
  g = g - 1
end
return {ARGV[3], 1}
";

/// A Redis failure, already phrased for an operator.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("Redis is unavailable: {0}")]
    Unavailable(String),
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Redis holds an unexpected value at {key}: {detail}")]
    Corrupt { key: String, detail: String },
}

impl From<redis::RedisError> for StoreError {
    fn from(error: redis::RedisError) -> Self {
        StoreError::Unavailable(error.to_string())
    }
}

impl From<deadpool_redis::PoolError> for StoreError {
    fn from(error: deadpool_redis::PoolError) -> Self {
        StoreError::Unavailable(error.to_string())
    }
}

/// The epoch and head as read together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadState {
    pub epoch: String,
    /// `None` until the first publish under this epoch.
    pub head: Option<u64>,
    /// Whether this read had to create the epoch (Redis was empty or lost its data).
    pub created_epoch: bool,
}

/// Outcome of a compare-and-set publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CasOutcome {
    Published,
    /// Another writer advanced `head` first.
    HeadMoved,
    /// The epoch changed (Redis lost its data) since it was read.
    EpochChanged,
}

/// Outcome of [`Store::restart_epoch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restart {
    /// This call replaced the epoch; the new one has no head yet.
    Restarted { epoch: String },
    /// The epoch or head had changed since they were read (another sidecar switched first,
    /// or a publish landed): nothing was written; read the state again.
    Moved,
}

/// Redis access for one key prefix through one bounded pool.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    prefix: String,
    /// Number of generations kept (the newest included); older bodies are deleted on publish.
    keep: u64,
    state_script: Script,
    cas_script: Script,
    restart_script: Script,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("prefix", &self.prefix)
            .field("keep", &self.keep)
            .field("pool", &self.pool.status())
            .finish()
    }
}

impl Store {
    /// Creates the pool (no connection is made until first use).
    pub fn new(url: &str, pool_size: usize, prefix: &str, keep: u64) -> Result<Store, StoreError> {
        let connection = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let manager = Manager::new_with_config(url, connection)?;
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Store {
            pool,
            prefix: prefix.to_owned(),
            keep,
            state_script: Script::new(STATE_SCRIPT),
            cas_script: Script::new(CAS_SCRIPT),
            restart_script: Script::new(RESTART_SCRIPT),
        })
    }

    /// The pool's connections now, for metrics.
    pub fn pool_state(&self) -> PoolState {
        let status = self.pool.status();
        PoolState {
            max: status.max_size,
            open: status.size,
            idle: status.available,
            waiting: status.waiting,
        }
    }

    pub fn epoch_key(&self) -> String {
        format!("{}epoch", self.prefix)
    }

    pub fn head_key(&self) -> String {
        format!("{}head", self.prefix)
    }

    fn body_prefix(&self) -> String {
        format!("{}snapshot:", self.prefix)
    }

    pub fn body_key(&self, generation: u64) -> String {
        format!("{}{generation}", self.body_prefix())
    }

    async fn connection(&self) -> Result<deadpool_redis::Connection, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// `PING`: readiness.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        let _: String = bounded(redis::cmd("PING").query_async(&mut conn)).await?;
        Ok(())
    }

    /// Reads epoch and head atomically, creating the epoch (`SET NX`) when it is missing.
    pub async fn state(&self) -> Result<HeadState, StoreError> {
        let fresh = random_epoch()?;
        let mut conn = self.connection().await?;
        let (epoch, head, created): (String, String, i64) = bounded(
            self.state_script
                .key(self.epoch_key())
                .key(self.head_key())
                .arg(fresh)
                .invoke_async(&mut conn),
        )
        .await?;
        let head = if head.is_empty() {
            None
        } else {
            Some(head.parse::<u64>().map_err(|e| StoreError::Corrupt {
                key: self.head_key(),
                detail: format!("{head:?} is not a generation: {e}"),
            })?)
        };
        Ok(HeadState {
            epoch,
            head,
            created_epoch: created == 1,
        })
    }

    /// The stored envelope of one generation, if it is still kept.
    pub async fn body(&self, generation: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let mut conn = self.connection().await?;
        let body: Option<Vec<u8>> = bounded(
            redis::cmd("GET")
                .arg(self.body_key(generation))
                .query_async(&mut conn),
        )
        .await?;
        Ok(body)
    }

    /// Publishes `body` as `generation` iff epoch and head are still `epoch` / `expected`.
    pub async fn compare_and_publish(
        &self,
        epoch: &str,
        expected: Option<u64>,
        generation: u64,
        body: &[u8],
    ) -> Result<CasOutcome, StoreError> {
        let expected = expected.map(|g| g.to_string()).unwrap_or_default();
        let mut conn = self.connection().await?;
        let outcome: i64 = bounded(
            self.cas_script
                .key(self.epoch_key())
                .key(self.head_key())
                .key(self.body_key(generation))
                .arg(epoch)
                .arg(expected)
                .arg(generation)
                .arg(body)
                .arg(self.keep)
                .arg(self.body_prefix())
                .invoke_async(&mut conn),
        )
        .await?;
        match outcome {
            1 => Ok(CasOutcome::Published),
            0 => Ok(CasOutcome::HeadMoved),
            -1 => Ok(CasOutcome::EpochChanged),
            other => Err(StoreError::Corrupt {
                key: self.head_key(),
                detail: format!("compare-and-set script returned {other}"),
            }),
        }
    }

    /// Replaces `epoch` with a fresh one iff epoch and head are still `epoch` / `head` (see
    /// [`RESTART_SCRIPT`]).
    pub async fn restart_epoch(
        &self,
        epoch: &str,
        head: Option<u64>,
    ) -> Result<Restart, StoreError> {
        let fresh = random_epoch()?;
        let head = head.map(|g| g.to_string()).unwrap_or_default();
        let mut conn = self.connection().await?;
        let (now, switched): (String, i64) = bounded(
            self.restart_script
                .key(self.epoch_key())
                .key(self.head_key())
                .arg(epoch)
                .arg(head)
                .arg(fresh)
                .arg(self.body_prefix())
                .invoke_async(&mut conn),
        )
        .await?;
        Ok(if switched == 1 {
            Restart::Restarted { epoch: now }
        } else {
            Restart::Moved
        })
    }
}

/// Bounds one Redis call in time (the connection also has a response timeout; this covers
/// script loading and anything else that could wait).
async fn bounded<T>(
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(RESPONSE_TIMEOUT, call).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(StoreError::Timeout(RESPONSE_TIMEOUT)),
    }
}

/// A new random epoch: 128 bits as lowercase hex (never contains the `.` that separates
/// epoch and generation in an ETag).
pub fn random_epoch() -> Result<String, StoreError> {
    let mut bytes = [0_u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| StoreError::Unavailable(format!("no randomness for a new epoch: {e}")))?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_hex_and_distinct() {
        let a = random_epoch().unwrap();
        let b = random_epoch().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn key_layout() {
        let store = Store::new("redis://127.0.0.1:1/0", 2, "rg:", 10).unwrap();
        assert_eq!(store.epoch_key(), "rg:epoch");
        assert_eq!(store.head_key(), "rg:head");
        assert_eq!(store.body_key(42), "rg:snapshot:42");
    }
}
