//! What a stress run records, one event per line of `history.jsonl`: every write with its
//! answer, every snapshot a reader saw, every decision Envoy logged, every login, every fault
//! injected and every sample of the sidecars' Redis pools. The checker (`checker.rs`) reads
//! nothing else, so a history saved from one run can be checked again, or doctored to prove the
//! checker catches what it claims to.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Write as _};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// A snapshot generation: the epoch it belongs to and its number within it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Gen {
    pub epoch: String,
    pub number: u64,
}

impl Gen {
    /// Parses `<epoch>.<number>`, with or without the ETag's quotes.
    pub fn parse(text: &str) -> Option<Gen> {
        let text = text.trim().trim_matches('"');
        let (epoch, number) = text.rsplit_once('.')?;
        if epoch.is_empty() {
            return None;
        }
        Some(Gen {
            epoch: epoch.to_owned(),
            number: number.parse().ok()?,
        })
    }
}

impl std::fmt::Display for Gen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.epoch, self.number)
    }
}

/// What a write asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// Katello's `user_repository_mapping` for one user: its grants encode `version`
    /// (see [`version_of`]).
    Grant { user: String, version: u64 },
    /// A whole-document `PUT /v1/snapshot` with `If-Match` of exactly what was read: it must
    /// publish nothing.
    NoOp,
    /// A whole-document `PUT /v1/snapshot` with `If-Match`, adding one repository to what was
    /// read.
    Add { repository: String },
    /// A whole-document republish of the base content (after Redis lost its data), as the
    /// source of truth does.
    Base,
}

/// One write and its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Write {
    /// When the answer arrived (ms since the run began).
    pub at_ms: u64,
    pub writer: String,
    /// The sidecar written to.
    pub sidecar: String,
    pub change: Change,
    /// HTTP status; 0 when no answer arrived.
    pub status: u16,
    /// The generation the answer named (its ETag), on success.
    pub generation: Option<Gen>,
    /// Whether the sidecar said it wrote something (`PUT /v1/snapshot` says; Katello's calls
    /// answer with an empty body).
    pub changed: Option<bool>,
    /// What a refusal said (its body, shortened).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
}

impl Write {
    /// The sidecar acknowledged it.
    pub fn acknowledged(&self) -> bool {
        (200..300).contains(&self.status) && self.generation.is_some()
    }
}

/// The decision-relevant content of one generation, as harvested from the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Content {
    pub generation: Gen,
    pub checksum: String,
    /// Repository → `auth_required`.
    pub repositories: BTreeMap<String, bool>,
    pub users: BTreeMap<String, BTreeSet<String>>,
}

/// A snapshot one reader (a fetcher-like long-poll of one sidecar) was served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub at_ms: u64,
    pub reader: String,
    /// `None` when the body did not decode (a torn or corrupt snapshot).
    pub generation: Option<Gen>,
    pub checksum: Option<String>,
    pub error: Option<String>,
}

/// One request Envoy decided, from its access log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub at_ms: u64,
    /// The Envoy process (restarts make a new one) and the worker VM within it.
    pub envoy: String,
    pub worker: Option<String>,
    /// The worker's count of decisions at this one (`worker=<id>.<n>`): their true order.
    #[serde(default)]
    pub sequence: Option<u64>,
    /// The generation that decided it; `None` when none was installed.
    pub generation: Option<Gen>,
    /// The authenticated user, or `-` for an anonymous caller.
    pub identity: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    /// The filter's outcome (`allowed`, `not_found`, `unauthorized`, `unavailable`, ...).
    pub decision: String,
    /// Envoy's `%DURATION%`.
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// Envoy's `%RESPONSE_FLAGS%` (`-` when none): `UF`, `UH`, ... say Envoy itself answered
    /// because an upstream (the sidecar, the registry) was down.
    #[serde(default)]
    pub flags: String,
}

impl Decision {
    /// Envoy answered 503 because the upstream it forwarded to was unreachable (connection
    /// failure, no healthy host, reset, retries exhausted): closed, and no gateway decision.
    pub fn upstream_down(&self) -> bool {
        self.status == 503
            && self
                .flags
                .split(',')
                .any(|flag| matches!(flag, "UF" | "UH" | "UR" | "URX" | "UC" | "UO"))
    }
}

/// One `/v2/token` login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    pub at_ms: u64,
    pub status: u16,
    pub duration_ms: u64,
}

/// The faults the injector knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// SIGKILL the Redis primary; Sentinel promotes a replica, and the old primary comes back
    /// empty (persistence is off) as its replica.
    RedisPrimaryKilled,
    /// `FLUSHALL` on the primary (the replicas follow).
    RedisFlush,
    /// Promote a replica (`SENTINEL FAILOVER`).
    RedisFailover,
    /// SIGKILL a sidecar and start it again.
    SidecarRestart,
    /// Stop Envoy and start it again (shared data is lost).
    EnvoyRestart,
}

impl FaultKind {
    /// Whether this fault may legitimately lose acknowledged writes (Redis lost its data), so
    /// generations restart under a new epoch.
    pub fn loses_data(self) -> bool {
        self == FaultKind::RedisFlush
    }

    /// Whether this fault may start a new epoch: data lost, or a failover that lost a write a
    /// sidecar had seen but no replica acknowledged (a rewind).
    pub fn may_start_epoch(self) -> bool {
        self.loses_data()
            || matches!(
                self,
                FaultKind::RedisFailover | FaultKind::RedisPrimaryKilled
            )
    }
}

/// One fault injected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub at_ms: u64,
    pub kind: FaultKind,
    pub detail: String,
}

/// One sample of a sidecar's Redis pool (from its `/metrics`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSample {
    pub at_ms: u64,
    pub sidecar: String,
    pub connections: u64,
    pub max: u64,
}

/// Everything a run recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Write(Write),
    Content(Content),
    Observation(Observation),
    Decision(Decision),
    Login(Login),
    Fault(Fault),
    Pool(PoolSample),
}

/// The grants that encode `version` for a Katello writer: bit `i` set ↔ `slot(i)` granted.
pub fn grants_for(version: u64) -> BTreeSet<String> {
    (0..SLOTS)
        .filter(|bit| version & (1 << bit) != 0)
        .map(slot)
        .collect()
}

/// The version a user's grants encode (the inverse of [`grants_for`]; other grants ignored).
pub fn version_of(grants: &BTreeSet<String>) -> u64 {
    (0..SLOTS)
        .filter(|bit| grants.contains(&slot(*bit)))
        .fold(0, |acc, bit| acc | (1 << bit))
}

/// How many slot repositories encode a version: versions stay below `2^SLOTS`.
pub const SLOTS: u32 = 20;

/// The repository of slot `bit`.
pub fn slot(bit: u32) -> String {
    format!("stress/slot/{bit}")
}

/// Writes `events` as JSON Lines.
pub fn save(path: &Path, events: &[Event]) {
    let file = std::fs::File::create(path)
        .unwrap_or_else(|err| panic!("create {}: {err}", path.display()));
    let mut out = std::io::BufWriter::new(file);
    for event in events {
        serde_json::to_writer(&mut out, event).unwrap_or_else(|err| panic!("history: {err}"));
        out.write_all(b"\n")
            .unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
    }
    out.flush()
        .unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
}

/// Reads a history written by [`save`].
pub fn load(path: &Path) -> Vec<Event> {
    let file =
        std::fs::File::open(path).unwrap_or_else(|err| panic!("open {}: {err}", path.display()));
    std::io::BufReader::new(file)
        .lines()
        .enumerate()
        .filter_map(|(number, line)| {
            let line = line.unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
            (!line.trim().is_empty()).then(|| {
                serde_json::from_str(&line).unwrap_or_else(|err| {
                    panic!(
                        "{}:{}: not a history event: {err}",
                        path.display(),
                        number + 1
                    )
                })
            })
        })
        .collect()
}
