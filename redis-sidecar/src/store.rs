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
//! Where the connections go ([`Target`]): one Redis URL, or whatever primary Redis Sentinel
//! names for a master name. In Sentinel mode every new connection asks the sentinels (in the
//! configured order) for the primary's address, connects and checks with `ROLE` that the
//! server really is a primary, and every pooled connection is checked with `ROLE` again each
//! time it is taken from the pool, and against the primary the sentinels name (asked at most
//! once a second): a connection to a demoted or dead primary is dropped and replaced by one to
//! the new primary, so a failover moves the pool within about a second, and
//! the pool's bound still holds (the discovery talks to the sentinels only). The connection
//! that passed the `ROLE` check is the one used: nothing is ever written to a server that did
//! not just say it is the primary. (deadpool-redis's `sentinel` manager has no connect or
//! response timeouts and only `PING`s on recycle, and redis's `SentinelClient` verifies the
//! role over an extra, untimed connection; hence this small manager over the same primitives.)
//!
//! With [`ReplicaAcks`] above zero, a publish is acknowledged only after `WAIT` on the very
//! connection that wrote it reports enough replicas holding it; otherwise the caller gets
//! [`StoreError::NotReplicated`] (the write may exist on the primary; retrying is safe).
//!
//! This module moves opaque bytes: it must never decode or validate a snapshot (that is
//! `publisher`'s and `cache`'s job), never advance `head` except through the script, never
//! decide by itself that history was rewound (the cache does), and never panic on a Redis
//! failure — every failure is a [`StoreError`].

use crate::metrics::PoolState;
use std::time::Duration;

use tokio::time::Instant;

use deadpool::managed::{self, Metrics, Object, Pool, PoolError, RecycleError, TimeoutType};
use deadpool::Runtime;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Role, Script};
use thiserror::Error;

/// How long one Redis round trip may take before it counts as a failure.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting or waiting for a pooled connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest `WAIT` for replica acknowledgements: it must end before [`RESPONSE_TIMEOUT`]
/// gives up on the connection.
pub const MAX_REPLICA_ACK_TIMEOUT: Duration = Duration::from_secs(4);
/// `CLIENT SETNAME` of every pooled connection, so an operator (and the tests) can count them
/// in `CLIENT LIST`.
pub const CLIENT_NAME: &str = "registry-gate-sidecar";

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

/// Confirms that a generation is still the head, for a publish that found nothing to change:
/// only if the epoch and the head are still the expected ones does it write the head again
/// (the same value). That write is replicated like any other, so a `WAIT` on the same
/// connection afterwards covers it — and, replication being ordered, everything written
/// before it, the head's body and pointer included. (A `WAIT` after reads alone would prove
/// nothing: it waits only for the connection's own writes.)
///
/// KEYS: epoch, head. ARGV: expected epoch, expected head.
/// Returns 1 when still current (and rewritten), 0 otherwise.
pub const CONFIRM_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
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
#[derive(Debug, Clone, Error)]
pub enum StoreError {
    #[error("Redis is unavailable: {0}")]
    Unavailable(String),
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Redis holds an unexpected value at {key}: {detail}")]
    Corrupt { key: String, detail: String },
    #[error("no Redis primary for master {master:?} could be reached through Sentinel: {detail}")]
    NoPrimary { master: String, detail: String },
    #[error("all {0} pooled Redis connections stayed busy; try again shortly")]
    PoolBusy(usize),
    #[error(
        "the write reached the Redis primary but only {acked} of the {wanted} replica \
         acknowledgements required arrived within {timeout:?}, so it might not survive a \
         failover; retry (republishing the same content is safe)"
    )]
    NotReplicated {
        acked: u64,
        wanted: u64,
        timeout: Duration,
    },
}

impl From<redis::RedisError> for StoreError {
    fn from(error: redis::RedisError) -> Self {
        StoreError::Unavailable(error.to_string())
    }
}

/// Where the pool connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One Redis server (`redis://` or `unix://` URL).
    Url(String),
    /// The primary that these sentinels (`host`, `port`; asked in order) name for `master`;
    /// database 0.
    Sentinel {
        sentinels: Vec<(String, u16)>,
        master: String,
    },
}

/// How many replicas must hold a publish before it is acknowledged (`WAIT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaAcks {
    /// 0: acknowledged once the primary has it (no `WAIT`).
    pub replicas: u64,
    /// How long `WAIT` waits for them (at most [`MAX_REPLICA_ACK_TIMEOUT`]).
    pub timeout: Duration,
}

impl ReplicaAcks {
    /// No replica acknowledgement required.
    pub const NONE: ReplicaAcks = ReplicaAcks {
        replicas: 0,
        timeout: Duration::from_millis(1000),
    };
}

/// The pool's connection manager (see the module doc).
struct Connector {
    target: Connect,
    config: AsyncConnectionConfig,
}

enum Connect {
    Url(redis::Client),
    Sentinel {
        /// The sentinels with their `host:port` for messages.
        sentinels: Vec<(String, redis::Client)>,
        master: String,
        /// What the sentinels last named, and when they were asked.
        named: tokio::sync::Mutex<Option<(Instant, Address)>>,
    },
}

/// A server's `host` and `port`.
type Address = (String, u16);

/// How often (at most) a checkout asks the sentinels whether its primary is still the one
/// they name: a primary demoted by a failover may go on calling itself primary until the
/// sentinels reconfigure it (up to ten seconds), so `ROLE` alone would keep writing to it.
const RECHECK: Duration = Duration::from_secs(1);

/// A pooled connection and the primary it reaches (`None`: a plain URL).
struct Linked {
    connection: MultiplexedConnection,
    address: Option<Address>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.target {
            Connect::Url(_) => f.write_str("Connector(url)"),
            Connect::Sentinel { master, .. } => write!(f, "Connector(sentinel {master:?})"),
        }
    }
}

impl Connector {
    fn new(target: &Target) -> Result<Connector, StoreError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let target = match target {
            Target::Url(url) => Connect::Url(redis::Client::open(url.as_str())?),
            Target::Sentinel { sentinels, master } => Connect::Sentinel {
                sentinels: sentinels
                    .iter()
                    .map(|(host, port)| {
                        redis::Client::open((host.clone(), *port))
                            .map(|client| (format!("{host}:{port}"), client))
                    })
                    .collect::<Result<_, _>>()?,
                master: master.clone(),
                named: tokio::sync::Mutex::new(None),
            },
        };
        Ok(Connector { target, config })
    }

    /// A connection to the primary `sentinels` name for `master`: the first sentinel that
    /// names one that answers `ROLE` as primary.
    async fn primary(
        &self,
        sentinels: &[(String, redis::Client)],
        master: &str,
    ) -> Result<Linked, StoreError> {
        let mut problems = Vec::new();
        for (name, sentinel) in sentinels {
            let connected = match self.named_by(sentinel, master).await {
                Ok(address) => self.connect_primary(address).await,
                Err(error) => Err(error),
            };
            match connected {
                Ok(linked) => return Ok(linked),
                Err(error) => problems.push(format!("sentinel {name}: {error}")),
            }
        }
        Err(StoreError::NoPrimary {
            master: master.to_owned(),
            detail: problems.join("; "),
        })
    }

    /// The primary one sentinel names for `master`.
    async fn named_by(
        &self,
        sentinel: &redis::Client,
        master: &str,
    ) -> Result<Address, StoreError> {
        let mut asking = sentinel
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        let address: Option<Address> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(master)
            .query_async(&mut asking)
            .await?;
        address.ok_or_else(|| {
            StoreError::Unavailable(format!("the sentinel does not monitor {master:?}"))
        })
    }

    /// Connects to `address` and checks that it is a primary.
    async fn connect_primary(&self, address: Address) -> Result<Linked, StoreError> {
        let (host, port) = &address;
        let mut connection = redis::Client::open((host.clone(), *port))?
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        check_primary(&mut connection)
            .await
            .map_err(|e| StoreError::Unavailable(format!("{host}:{port}: {e}")))?;
        Ok(Linked {
            connection,
            address: Some(address),
        })
    }

    /// The primary the sentinels name now, asked at most once per [`RECHECK`] (`None` when no
    /// sentinel answered: then the `ROLE` check alone decides).
    async fn named_now(
        &self,
        sentinels: &[(String, redis::Client)],
        master: &str,
        named: &tokio::sync::Mutex<Option<(Instant, Address)>>,
    ) -> Option<Address> {
        let mut named = named.lock().await;
        if let Some((asked, address)) = named.as_ref() {
            if asked.elapsed() < RECHECK {
                return Some(address.clone());
            }
        }
        *named = None;
        for (_, sentinel) in sentinels {
            if let Ok(address) = self.named_by(sentinel, master).await {
                *named = Some((Instant::now(), address.clone()));
                return Some(address);
            }
        }
        None
    }
}

/// Fails unless `ROLE` says the server is a primary.
async fn check_primary(connection: &mut MultiplexedConnection) -> Result<(), StoreError> {
    let role: Role = redis::cmd("ROLE").query_async(connection).await?;
    match role {
        Role::Primary { .. } => Ok(()),
        other => Err(StoreError::Unavailable(format!(
            "the server is not (or no longer) the primary: ROLE answered {other:?}"
        ))),
    }
}

impl managed::Manager for Connector {
    type Type = Linked;
    type Error = StoreError;

    async fn create(&self) -> Result<Linked, StoreError> {
        let mut linked = match &self.target {
            Connect::Url(client) => Linked {
                connection: client
                    .get_multiplexed_async_connection_with_config(&self.config)
                    .await?,
                address: None,
            },
            Connect::Sentinel {
                sentinels, master, ..
            } => self.primary(sentinels, master).await?,
        };
        let () = redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(CLIENT_NAME)
            .query_async(&mut linked.connection)
            .await?;
        Ok(linked)
    }

    async fn recycle(
        &self,
        linked: &mut Linked,
        _: &Metrics,
    ) -> managed::RecycleResult<StoreError> {
        let Connect::Sentinel {
            sentinels,
            master,
            named,
        } = &self.target
        else {
            let _: String = redis::cmd("PING")
                .query_async(&mut linked.connection)
                .await
                .map_err(|e| RecycleError::Backend(e.into()))?;
            return Ok(());
        };
        check_primary(&mut linked.connection)
            .await
            .map_err(RecycleError::Backend)?;
        match (
            self.named_now(sentinels, master, named).await,
            &linked.address,
        ) {
            (Some(now), Some(mine)) if now != *mine => {
                Err(RecycleError::Backend(StoreError::Unavailable(format!(
                    "the sentinels now name {}:{} as primary, not {}:{}",
                    now.0, now.1, mine.0, mine.1
                ))))
            }
            _ => Ok(()),
        }
    }
}

/// A pooled connection.
type Connection = Object<Connector>;

impl StoreError {
    /// The error a pool checkout failed with, phrased for an operator.
    fn from_pool(error: PoolError<StoreError>, max: usize) -> StoreError {
        match error {
            PoolError::Backend(error) => error,
            PoolError::Timeout(TimeoutType::Wait) => StoreError::PoolBusy(max),
            PoolError::Timeout(TimeoutType::Create | TimeoutType::Recycle) => {
                StoreError::Timeout(CONNECT_TIMEOUT)
            }
            other => StoreError::Unavailable(other.to_string()),
        }
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
    pool: Pool<Connector>,
    prefix: String,
    /// Number of generations kept (the newest included); older bodies are deleted on publish.
    keep: u64,
    /// Replicas that must hold a publish before it is acknowledged.
    acks: ReplicaAcks,
    state_script: Script,
    cas_script: Script,
    confirm_script: Script,
    restart_script: Script,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("prefix", &self.prefix)
            .field("keep", &self.keep)
            .field("acks", &self.acks)
            .field("pool", &self.pool.status())
            .finish()
    }
}

impl Store {
    /// Creates the pool (no connection is made until first use).
    pub fn new(
        target: &Target,
        pool_size: usize,
        prefix: &str,
        keep: u64,
        acks: ReplicaAcks,
    ) -> Result<Store, StoreError> {
        let pool = Pool::builder(Connector::new(target)?)
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
            acks,
            state_script: Script::new(STATE_SCRIPT),
            cas_script: Script::new(CAS_SCRIPT),
            confirm_script: Script::new(CONFIRM_SCRIPT),
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

    async fn connection(&self) -> Result<Connection, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::from_pool(e, self.pool.status().max_size))
    }

    /// With replica acknowledgements required, `WAIT`s on `connection` until that many
    /// replicas hold everything it wrote, or fails with [`StoreError::NotReplicated`].
    async fn replicated(&self, connection: &mut Connection) -> Result<(), StoreError> {
        let ReplicaAcks { replicas, timeout } = self.acks;
        if replicas == 0 {
            return Ok(());
        }
        let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let acked: u64 = bounded(
            redis::cmd("WAIT")
                .arg(replicas)
                .arg(millis)
                .query_async(&mut connection.connection),
        )
        .await?;
        if acked >= replicas {
            Ok(())
        } else {
            Err(StoreError::NotReplicated {
                acked,
                wanted: replicas,
                timeout,
            })
        }
    }

    /// `PING`: readiness.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        let _: String = bounded(redis::cmd("PING").query_async(&mut conn.connection)).await?;
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
                .invoke_async(&mut conn.connection),
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
                .query_async(&mut conn.connection),
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
                .invoke_async(&mut conn.connection),
        )
        .await?;
        match outcome {
            1 => {
                self.replicated(&mut conn).await?;
                Ok(CasOutcome::Published)
            }
            0 => Ok(CasOutcome::HeadMoved),
            -1 => Ok(CasOutcome::EpochChanged),
            other => Err(StoreError::Corrupt {
                key: self.head_key(),
                detail: format!("compare-and-set script returned {other}"),
            }),
        }
    }

    /// For a publish that found `head` already holding its content: whether `head` is still
    /// the current generation of `epoch` — and, with replica acknowledgements required,
    /// replicated (see [`CONFIRM_SCRIPT`]). `false`: the head moved; read the state again.
    pub async fn confirm_current(&self, epoch: &str, head: u64) -> Result<bool, StoreError> {
        if self.acks.replicas == 0 {
            return Ok(true);
        }
        let mut conn = self.connection().await?;
        let current: i64 = bounded(
            self.confirm_script
                .key(self.epoch_key())
                .key(self.head_key())
                .arg(epoch)
                .arg(head.to_string())
                .invoke_async(&mut conn.connection),
        )
        .await?;
        if current != 1 {
            return Ok(false);
        }
        self.replicated(&mut conn).await?;
        Ok(true)
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
                .invoke_async(&mut conn.connection),
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
        let store = Store::new(
            &Target::Url("redis://127.0.0.1:1/0".into()),
            2,
            "rg:",
            10,
            ReplicaAcks::NONE,
        )
        .unwrap();
        assert_eq!(store.epoch_key(), "rg:epoch");
        assert_eq!(store.head_key(), "rg:head");
        assert_eq!(store.body_key(42), "rg:snapshot:42");
    }
}
