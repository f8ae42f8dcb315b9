//! `make stress`: everything at once against the real parts, then a checker over what
//! happened.
//!
//! One run starts Redis, two sidecars on it, Envoy running the filter in front of
//! docker-registry, and at the same time:
//! - Katello writers, each owning one user, pushing `user_repository_mapping` through either
//!   sidecar as fast as they are answered (each version of a user's grants is a different set
//!   of slot repositories, so a decision tells which version was in force);
//! - native writers doing read-modify-write `PUT /v1/snapshot` with `If-Match` (adding a
//!   repository, or republishing exactly what they read: a no-op), and republishing the base
//!   repositories with `If-None-Match: *` or `If-Match` when Redis lost them;
//! - readers long-polling each sidecar like fetchers, and a harvester reading every
//!   generation's body straight from Redis;
//! - probes through Envoy by every writer's user and anonymously, whose decisions Envoy's
//!   access log records with the generation that made them;
//! - bursts of concurrent `podman login`-sized `/v2/token` logins (curl, in parallel), and
//!   skopeo pulls;
//! - a fault injector: Redis flushed, Redis killed and restarted empty, a sidecar killed and
//!   restarted, Envoy restarted.
//!
//! Everything lands in `history.jsonl` in the scenario directory, and [`checker::check`] then
//! says whether any promise was broken. Sizes come from [`Params`] (`STRESS_*` variables).

pub mod checker;
pub mod history;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::envoy::{Envoy, Launch};
use crate::http::{Auth, Request, Response};
use crate::redis::{Redis, Replicated, ReplicatedOptions};
use crate::sidecar::{Sidecar, SidecarExtra};
use crate::stack::{Stack, StackOptions};
use history::{
    grants_for, slot, Change, Content, Decision, Event, Fault, FaultKind, Gen, Login, Observation,
    PoolSample, Write, SLOTS,
};

/// The sidecars' key prefix (their default).
const PREFIX: &str = "registry-gate:";
/// The image pulled for real during the run, granted to [`PULLER`].
const PULL_REPOSITORY: &str = "stress/pull";
const PULLER: &str = "puller";
/// Redis pool size of each sidecar: the bound the checker holds them to.
const POOL_SIZE: u64 = 8;

/// How big a run is.
#[derive(Debug, Clone)]
pub struct Params {
    /// How long writers, probes and faults run.
    pub seconds: u64,
    pub katello_writers: usize,
    pub native_writers: usize,
    /// Concurrent logins per burst, and how many bursts.
    pub logins: usize,
    pub login_bursts: usize,
    /// Time between two faults.
    pub fault_every: Duration,
    /// Concurrent probe connections.
    pub probe_connections: usize,
}

impl Params {
    /// The size CI runs (`make test`).
    pub fn ci() -> Params {
        Params {
            seconds: 60,
            katello_writers: 4,
            native_writers: 2,
            logins: 1000,
            login_bursts: 1,
            fault_every: Duration::from_secs(8),
            probe_connections: 8,
        }
    }

    /// `defaults`, overridden by `STRESS_SECONDS`, `STRESS_KATELLO_WRITERS`,
    /// `STRESS_NATIVE_WRITERS`, `STRESS_LOGINS`, `STRESS_LOGIN_BURSTS`,
    /// `STRESS_FAULT_EVERY_SECS` and `STRESS_PROBE_CONNECTIONS`.
    pub fn from_env(defaults: Params) -> Params {
        fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
            match std::env::var(name) {
                Ok(text) => text
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}={text:?} is not a valid number")),
                Err(_) => default,
            }
        }
        Params {
            seconds: var("STRESS_SECONDS", defaults.seconds),
            katello_writers: var("STRESS_KATELLO_WRITERS", defaults.katello_writers),
            native_writers: var("STRESS_NATIVE_WRITERS", defaults.native_writers),
            logins: var("STRESS_LOGINS", defaults.logins),
            login_bursts: var("STRESS_LOGIN_BURSTS", defaults.login_bursts),
            fault_every: Duration::from_secs(var(
                "STRESS_FAULT_EVERY_SECS",
                defaults.fault_every.as_secs(),
            )),
            probe_connections: var("STRESS_PROBE_CONNECTIONS", defaults.probe_connections),
        }
    }
}

/// The shared event log of one run, with its clock.
#[derive(Debug)]
struct Recorder {
    started: Instant,
    /// Wall-clock ms at `started` (Envoy's access log carries wall-clock times).
    wall_ms: u64,
    events: Mutex<Vec<Event>>,
}

impl Recorder {
    fn new() -> Recorder {
        Recorder {
            started: Instant::now(),
            wall_ms: wall_ms(),
            events: Mutex::new(Vec::new()),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn push(&self, event: Event) {
        self.events.lock().unwrap().push(event);
    }
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Where a sidecar is and how to talk to it.
#[derive(Debug, Clone)]
struct Endpoint {
    name: String,
    url: String,
    sync_secret: String,
    read_secret: String,
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    pub report: checker::Report,
    pub history: PathBuf,
    /// Pulls that completed, and that failed (a fault can fail a pull without breaking a
    /// promise: the decisions say whether one was).
    pub pulls: (usize, usize),
}

/// The content every run starts from and republishes after Redis lost its data: the slot
/// repositories (private), the pulled image's repository granted to [`PULLER`].
fn base_content() -> serde_json::Value {
    let mut repositories: Vec<serde_json::Value> = (0..SLOTS)
        .map(|bit| json!({"name": slot(bit), "auth_required": true}))
        .collect();
    repositories.push(json!({"name": PULL_REPOSITORY, "auth_required": true}));
    json!({"repositories": repositories, "users": {PULLER: [PULL_REPOSITORY]}})
}

/// Runs one stress run named `name` and checks it.
pub fn run(name: &str, params: &Params) -> Outcome {
    let writers: Vec<String> = (0..params.katello_writers)
        .map(|i| format!("writer{i}"))
        .collect();
    let mut options = StackOptions::new(name);
    options.images = vec![(PULL_REPOSITORY.to_owned(), "latest".to_owned())];
    options.users = writers.iter().cloned().chain([PULLER.to_owned()]).collect();
    options.snapshot = Some(base_content());
    let mut stack = Stack::start_with(options);
    let dir = stack.dir().to_path_buf();
    // The sidecars run on Redis with two replicas behind three sentinels, acknowledging a
    // publish once a replica holds it; the stack's own Redis served only its first publish.
    let mut redis = Replicated::start(
        &dir,
        ReplicatedOptions {
            replicas: 2,
            ..ReplicatedOptions::default()
        },
    );
    let extra = sidecar_extra(&redis);
    let (port, files) = (stack.sidecar.port, stack.sidecar.files.clone());
    stack.sidecar.process.kill();
    stack.sidecar = Sidecar::start_with(&dir, "sidecar", port, "", files.clone(), &extra);
    let first = stack.sidecar.publish(&base_content());
    stack
        .envoy
        .wait_for_generation(first.generation, Duration::from_secs(60));
    let mut second = Sidecar::start_with(
        &dir,
        "sidecar-b",
        crate::ports::free_port(),
        "",
        files,
        &extra,
    );
    let endpoint = |sidecar: &Sidecar, name: &str| Endpoint {
        name: name.to_owned(),
        url: sidecar.url(),
        sync_secret: sidecar.files.sync_secret.clone(),
        read_secret: sidecar.files.read_secret.clone(),
    };
    let endpoints = vec![
        endpoint(&stack.sidecar, "sidecar"),
        endpoint(&second, "sidecar-b"),
    ];

    let key = crate::tokens::SidecarKey::load(&stack.sidecar.files.signing_key);
    let kid = crate::tokens::kid(&stack.token(Some(PULLER), &[], crate::HttpVersion::Http1));
    let minter = Minter { key, kid };
    let logins: Vec<(String, String)> = stack
        .users()
        .map(|u| (u.to_owned(), stack.password(u).to_owned()))
        .collect();

    let recorder = Arc::new(Recorder::new());
    let stop = Arc::new(AtomicBool::new(false));
    let primary = redis
        .primary()
        .unwrap_or_else(|err| panic!("no primary: {err}"));
    let redis_port = Arc::new(AtomicU64::new(u64::from(primary)));
    let mut envoy_logs: Vec<(String, Vec<String>)> = Vec::new();
    let mut pulls = (0, 0);
    let base_url = stack.base_url();
    let ca = stack.ca_cert().to_path_buf();

    std::thread::scope(|scope| {
        for (index, user) in writers.iter().enumerate() {
            let (recorder, stop, endpoints) = (&recorder, &stop, &endpoints);
            scope.spawn(move || katello_writer(index, user, endpoints, recorder, stop));
        }
        for index in 0..params.native_writers {
            let (recorder, stop, endpoints) = (&recorder, &stop, &endpoints);
            scope.spawn(move || native_writer(index, endpoints, recorder, stop));
        }
        for endpoint in &endpoints {
            let (recorder, stop) = (&recorder, &stop);
            scope.spawn(move || reader(endpoint, recorder, stop));
        }
        {
            let (recorder, stop, redis_port) = (&recorder, &stop, &redis_port);
            scope.spawn(move || harvester(redis_port, recorder, stop));
        }
        {
            let (recorder, stop, endpoints) = (&recorder, &stop, &endpoints);
            scope.spawn(move || pool_sampler(endpoints, recorder, stop));
        }
        for connection in 0..params.probe_connections {
            let (stop, minter, writers, base_url, ca) = (&stop, &minter, &writers, &base_url, &ca);
            scope.spawn(move || prober(connection, minter, writers, base_url, ca, stop));
        }
        {
            let (recorder, stop, logins, base_url, ca, dir) =
                (&recorder, &stop, &logins, &base_url, &ca, &dir);
            let params = params.clone();
            scope.spawn(move || login_bursts(&params, logins, base_url, ca, dir, recorder, stop));
        }

        // The fault injector and the pulls run here: they own the processes.
        let faults = [
            FaultKind::SidecarRestart,
            FaultKind::RedisFailover,
            FaultKind::RedisFlush,
            FaultKind::EnvoyRestart,
            FaultKind::RedisPrimaryKilled,
        ];
        let deadline = Instant::now() + Duration::from_secs(params.seconds);
        let mut next_fault = Instant::now() + params.fault_every;
        let mut injected = 0usize;
        let mut envoys = 0usize;
        while Instant::now() < deadline {
            if Instant::now() >= next_fault {
                let kind = faults[injected % faults.len()];
                let mut target = Target {
                    stack: &mut stack,
                    second: &mut second,
                    redis: &mut redis,
                    extra: &extra,
                };
                let detail = target.inject(kind, injected, &mut envoys, &mut envoy_logs);
                if let Ok(primary) = redis.primary() {
                    redis_port.store(u64::from(primary), Ordering::SeqCst);
                }
                recorder.push(Event::Fault(Fault {
                    at_ms: recorder.now_ms(),
                    kind,
                    detail,
                }));
                injected += 1;
                next_fault = Instant::now() + params.fault_every;
            }
            let (run, _) = stack.skopeo_pull(
                &format!("{PULL_REPOSITORY}:latest"),
                Auth::Basic(PULLER, stack.password(PULLER)),
            );
            if run.success {
                pulls.0 += 1;
            } else {
                pulls.1 += 1;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        stop.store(true, Ordering::SeqCst);
    });

    // Quiet: every writer's last state is in, every reader and Envoy converge on one head.
    settle(&mut stack, &redis, &endpoints, &recorder);
    envoy_logs.push((envoy_name(envoy_logs.len()), stack.envoy.access_log()));
    for (envoy, lines) in &envoy_logs {
        for line in lines {
            if let Some(decision) = parse_access_line(envoy, line, recorder.wall_ms) {
                recorder.push(Event::Decision(decision));
            }
        }
    }
    let events = std::mem::take(&mut *recorder.events.lock().unwrap());
    // Kept past the scenario directory (removed when the run passes), for a second look.
    let kept = crate::paths::target_dir().join("stress");
    std::fs::create_dir_all(&kept).unwrap_or_else(|err| panic!("create {}: {err}", kept.display()));
    let history = kept.join(format!("{name}-history.jsonl"));
    history::save(&history, &events);
    let report = checker::check(&events);
    Outcome {
        report,
        history,
        pulls,
    }
}

/// Both sidecars' settings: Sentinel discovery, WAIT for one replica, the pool the checker
/// holds them to, and enough generations kept that the harvester reads every one before it is
/// trimmed.
fn sidecar_extra(redis: &Replicated) -> SidecarExtra {
    let mut args = redis.sidecar_args();
    args.extend(
        [
            "--redis-min-replicas-acked",
            "1",
            "--redis-pool-size",
            &POOL_SIZE.to_string(),
            "--keep-generations",
            "2000",
        ]
        .map(str::to_owned),
    );
    SidecarExtra {
        args,
        ..SidecarExtra::default()
    }
}

fn envoy_name(index: usize) -> String {
    format!("envoy-{index}")
}

/// What the fault injector acts on.
struct Target<'a> {
    stack: &'a mut Stack,
    second: &'a mut Sidecar,
    redis: &'a mut Replicated,
    extra: &'a SidecarExtra,
}

impl Target<'_> {
    /// Injects one fault and says what was done.
    fn inject(
        &mut self,
        kind: FaultKind,
        round: usize,
        envoys: &mut usize,
        envoy_logs: &mut Vec<(String, Vec<String>)>,
    ) -> String {
        let dir = self.stack.dir().to_path_buf();
        match kind {
            FaultKind::SidecarRestart => {
                // Mostly the one Envoy does not fetch from; now and then that one.
                let sidecar = if round % 3 == 0 {
                    &mut self.stack.sidecar
                } else {
                    &mut *self.second
                };
                let name = sidecar.process.name().to_owned();
                let (port, files) = (sidecar.port, sidecar.files.clone());
                sidecar.process.kill();
                *sidecar = Sidecar::start_with(&dir, &name, port, "", files, self.extra);
                format!("killed and restarted {name}")
            }
            FaultKind::RedisFailover => {
                let old = self.redis.force_failover();
                let new = self.redis.wait_for_new_primary(old);
                format!("SENTINEL FAILOVER: primary {old} → {new}")
            }
            FaultKind::RedisPrimaryKilled => {
                let old = self.redis.kill_primary();
                let new = self.redis.wait_for_new_primary(old);
                let server = self
                    .redis
                    .servers
                    .iter_mut()
                    .find(|s| s.port == old)
                    .unwrap_or_else(|| panic!("no server on {old}"));
                let name = server.process.name().to_owned();
                let replica_of = [
                    "--replicaof".to_owned(),
                    "127.0.0.1".to_owned(),
                    new.to_string(),
                ];
                *server = Redis::start_named(&dir, &name, old, &replica_of);
                format!("SIGKILLed primary {old}; Sentinel promoted {new}; {old} back, empty, as its replica")
            }
            FaultKind::RedisFlush => {
                let primary = self
                    .redis
                    .primary()
                    .unwrap_or_else(|err| panic!("no primary: {err}"));
                let reply: String = crate::redis::query(primary, &["FLUSHALL"])
                    .unwrap_or_else(|err| panic!("FLUSHALL: {err}"));
                format!("FLUSHALL on primary {primary} answered {reply}")
            }
            FaultKind::EnvoyRestart => {
                envoy_logs.push((envoy_name(*envoys), self.stack.envoy.access_log()));
                *envoys += 1;
                let params = self.stack.envoy.params.clone();
                self.stack.envoy.process.stop();
                let launch = Launch {
                    name: envoy_name(*envoys),
                    ..Launch::default()
                };
                self.stack.envoy =
                    Envoy::start_with(&dir, &crate::paths::local_envoy_template(), params, &launch);
                format!("restarted Envoy as {}", envoy_name(*envoys))
            }
        }
    }
}

/// The generation an answer's `ETag` names.
fn etag(response: &Response) -> Option<Gen> {
    response.header("etag").and_then(Gen::parse)
}

/// Katello's sync for one user, as fast as it is answered: each round a new version of the
/// user's grants, through the two sidecars in turn.
fn katello_writer(
    index: usize,
    user: &str,
    endpoints: &[Endpoint],
    recorder: &Recorder,
    stop: &AtomicBool,
) {
    let mut version: u64 = 0;
    let mut round = index;
    while !stop.load(Ordering::SeqCst) {
        version = (version + 1) % (1 << SLOTS);
        round += 1;
        let endpoint = &endpoints[round % endpoints.len()];
        let grants: Vec<serde_json::Value> = grants_for(version)
            .into_iter()
            .map(|name| json!({"repository": name, "auth_required": true}))
            .collect();
        let body = json!({"users": [{user: grants}]}).to_string();
        let answer = Request::new(
            "PUT",
            format!("{}/container_gateway/user_repository_mapping", endpoint.url),
        )
        .auth(Auth::Bearer(&endpoint.sync_secret))
        .header("Content-Type", "application/json")
        .body(body)
        .timeout(Duration::from_secs(10))
        .send();
        record_write(
            recorder,
            &format!("katello{index}"),
            endpoint,
            Change::Grant {
                user: user.to_owned(),
                version,
            },
            answer.as_ref().ok(),
        );
        // Flat out for a second, then a breath for one, so read-modify-write writers win the
        // race sometimes too.
        let flat_out = recorder.started.elapsed().as_secs() % 2 == 0;
        let pause = match (answer.is_err(), flat_out) {
            (true, _) => 100,
            (false, true) => 0,
            (false, false) => 250,
        };
        std::thread::sleep(Duration::from_millis(pause));
    }
}

fn record_write(
    recorder: &Recorder,
    writer: &str,
    endpoint: &Endpoint,
    change: Change,
    answer: Option<&Response>,
) {
    let changed = answer
        .filter(|r| r.status == 200 && !r.body.is_empty())
        .and_then(|r| r.json().get("changed").and_then(serde_json::Value::as_bool));
    recorder.push(Event::Write(Write {
        at_ms: recorder.now_ms(),
        writer: writer.to_owned(),
        sidecar: endpoint.name.clone(),
        change,
        status: answer.map_or(0, |r| r.status),
        generation: answer.filter(|r| r.status == 200).and_then(etag),
        changed,
        refusal: answer
            .filter(|r| r.status >= 400)
            .map(|r| r.text().chars().take(300).collect()),
    }));
}

/// `GET /v1/snapshot` (immediately), the answer.
/// `GET /v1/snapshot`: as a fetcher does (the signed index, long-polling `If-None-Match`)
/// with `wait`; the 1.x JSON a writer edits without.
fn read_snapshot(endpoint: &Endpoint, wait: Option<(&str, u64)>) -> Result<Response, String> {
    let query = wait.map_or(String::new(), |(_, secs)| {
        format!("?wait={secs}&schema=2.0")
    });
    let mut request = Request::get(format!("{}/v1/snapshot{query}", endpoint.url))
        .auth(Auth::Bearer(&endpoint.read_secret))
        .timeout(Duration::from_secs(wait.map_or(5, |(_, secs)| secs + 5)));
    if let Some((tag, _)) = wait {
        request = request.header("If-None-Match", tag);
    }
    request.send()
}

/// Read-modify-write with `If-Match`: add a repository of its own, or republish exactly what
/// it read (a no-op); and when the base repositories are missing (Redis lost its data), put
/// them back without touching anything else.
fn native_writer(index: usize, endpoints: &[Endpoint], recorder: &Recorder, stop: &AtomicBool) {
    let writer = format!("native{index}");
    let mut sequence = 0u64;
    while !stop.load(Ordering::SeqCst) {
        sequence += 1;
        let endpoint = &endpoints[usize::try_from(sequence).unwrap_or(0) % endpoints.len()];
        let grow = (sequence % 4 != 0).then_some(sequence);
        if write_once(&writer, endpoint, grow, recorder).is_none() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// One read-modify-write (see [`native_writer`]): the base restored if it is missing, else
/// repository number `grow` added, or with `None` exactly what was read republished. The change
/// it tried and the status it got, or `None` when the read failed.
fn write_once(
    writer: &str,
    endpoint: &Endpoint,
    grow: Option<u64>,
    recorder: &Recorder,
) -> Option<(Change, u16)> {
    let read = read_snapshot(endpoint, None).ok()?;
    let (content, precondition) = match read.status {
        200 => {
            let tag = read.header("etag")?.to_owned();
            (read.json()["content"].clone(), ("If-Match", tag))
        }
        // Nothing published in this epoch: only a first publish may go in.
        503 | 404 => (
            json!({"repositories": []}),
            ("If-None-Match", "*".to_owned()),
        ),
        _ => return None,
    };
    let (body, change) = match with_base(&content, &base_content()) {
        Some(restored) => (restored, Change::Base),
        None => match grow {
            None => (content.clone(), Change::NoOp),
            Some(number) => {
                let repository = format!("stress/{writer}/r{number}");
                let mut added = content.clone();
                if let Some(list) = added["repositories"].as_array_mut() {
                    list.push(json!({"name": repository, "auth_required": true}));
                }
                (added, Change::Add { repository })
            }
        },
    };
    let answer = Request::new("PUT", format!("{}/v1/snapshot", endpoint.url))
        .auth(Auth::Bearer(&endpoint.sync_secret))
        .header("Content-Type", "application/json")
        .header(precondition.0, &precondition.1)
        .body(body.to_string())
        .timeout(Duration::from_secs(10))
        .send();
    record_write(
        recorder,
        writer,
        endpoint,
        change.clone(),
        answer.as_ref().ok(),
    );
    Some((change, answer.map_or(0, |a| a.status)))
}

/// `content` with the base repositories and grants it lacks added, or `None` when it has them.
fn with_base(content: &serde_json::Value, base: &serde_json::Value) -> Option<serde_json::Value> {
    let names: BTreeSet<&str> = content["repositories"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str())
        .collect();
    let missing: Vec<&serde_json::Value> = base["repositories"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["name"].as_str().is_some_and(|n| !names.contains(n)))
        .collect();
    let puller_granted = content["users"][PULLER]
        .as_array()
        .is_some_and(|grants| grants.iter().any(|g| g == PULL_REPOSITORY));
    if missing.is_empty() && puller_granted {
        return None;
    }
    let mut restored = content.clone();
    if !restored["repositories"].is_array() {
        restored["repositories"] = json!([]);
    }
    if let Some(list) = restored["repositories"].as_array_mut() {
        list.extend(missing.into_iter().cloned());
    }
    if !restored["users"].is_object() {
        restored["users"] = json!({});
    }
    restored["users"][PULLER] = json!([PULL_REPOSITORY]);
    Some(restored)
}

/// A fetcher-like long-poll of one sidecar: records every snapshot it is served.
fn reader(endpoint: &Endpoint, recorder: &Recorder, stop: &AtomicBool) {
    let mut held: Option<String> = None;
    while !stop.load(Ordering::SeqCst) {
        let answer = read_snapshot(endpoint, Some((held.as_deref().unwrap_or("\"none.0\""), 2)));
        match answer {
            Ok(response) if response.status == 200 => {
                let observation = match registry_gate_index::Index::open(&response.body[..]) {
                    Ok(index) => Observation {
                        at_ms: recorder.now_ms(),
                        reader: endpoint.name.clone(),
                        generation: Some(Gen {
                            epoch: index.epoch().to_owned(),
                            number: index.generation(),
                        }),
                        checksum: Some(format!("{:016x}", index.checksum())),
                        error: None,
                    },
                    Err(error) => Observation {
                        at_ms: recorder.now_ms(),
                        reader: endpoint.name.clone(),
                        generation: None,
                        checksum: None,
                        error: Some(error.to_string()),
                    },
                };
                held = observation.generation.as_ref().map(|g| format!("\"{g}\""));
                recorder.push(Event::Observation(observation));
            }
            Ok(response) if response.status == 304 => {}
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Reads every generation's body straight from Redis as soon as it exists.
fn harvester(redis_port: &AtomicU64, recorder: &Recorder, stop: &AtomicBool) {
    let mut done: BTreeMap<String, u64> = BTreeMap::new();
    let mut connection: Option<redis::Connection> = None;
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        let port = u16::try_from(redis_port.load(Ordering::SeqCst)).unwrap_or(0);
        if connection.is_none() {
            connection = crate::redis::connect(port).ok();
        }
        if let Some(open) = connection.as_mut() {
            if harvest(open, &mut done, recorder).is_err() {
                connection = None;
            }
        }
        if stopping {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn harvest(
    connection: &mut redis::Connection,
    done: &mut BTreeMap<String, u64>,
    recorder: &Recorder,
) -> Result<(), redis::RedisError> {
    let epoch: Option<String> = redis::cmd("GET")
        .arg(format!("{PREFIX}epoch"))
        .query(connection)?;
    let Some(epoch) = epoch else {
        return Ok(());
    };
    let head: Option<u64> = redis::cmd("GET")
        .arg(format!("{PREFIX}head"))
        .query(connection)?;
    let head = head.unwrap_or(0);
    let from = done.get(&epoch).copied().unwrap_or(0) + 1;
    for number in from..=head {
        let body: Option<Vec<u8>> = redis::cmd("GET")
            .arg(format!("{PREFIX}snapshot:{number}"))
            .query(connection)?;
        let Some(body) = body else {
            continue;
        };
        if let Ok(index) = registry_gate_index::Index::open(&body[..]) {
            recorder.push(Event::Content(Content {
                generation: Gen {
                    epoch: index.epoch().to_owned(),
                    number: index.generation(),
                },
                checksum: format!("{:016x}", index.checksum()),
                repositories: index
                    .repositories()
                    .map(|(name, auth_required)| (name.to_owned(), auth_required))
                    .collect(),
                users: index
                    .principals(registry_gate_index::Part::Users)
                    .map(|(user, ids)| {
                        let names = ids
                            .iter()
                            .filter_map(|id| index.name(id))
                            .map(str::to_owned);
                        (user.to_owned(), names.collect())
                    })
                    .collect(),
            }));
        }
    }
    done.insert(epoch, head.max(from - 1));
    Ok(())
}

/// Samples each sidecar's Redis pool from its `/metrics`.
fn pool_sampler(endpoints: &[Endpoint], recorder: &Recorder, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        for endpoint in endpoints {
            let Ok(answer) = Request::get(format!("{}/metrics", endpoint.url))
                .timeout(Duration::from_secs(2))
                .send()
            else {
                continue;
            };
            let text = answer.text();
            let metric = |name: &str| -> Option<u64> {
                text.lines()
                    .find(|l| l.starts_with(name))
                    .and_then(|l| l.rsplit(' ').next())
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .map(|v| v as u64)
            };
            if let (Some(open), Some(max)) = (
                metric("registry_gate_sidecar_redis_pool_connections{state=\"open\"}"),
                metric("registry_gate_sidecar_redis_pool_max_connections"),
            ) {
                recorder.push(Event::Pool(PoolSample {
                    at_ms: recorder.now_ms(),
                    sidecar: endpoint.name.clone(),
                    connections: open,
                    max,
                }));
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Mints the probes' tokens with the sidecar's own key.
struct Minter {
    key: crate::tokens::SidecarKey,
    kid: String,
}

impl Minter {
    /// A fresh token for `user` with no `access` claim: the snapshot alone decides, so each
    /// decision can be checked against the generation that made it.
    fn token(&self, user: &str) -> String {
        let mut mint = crate::tokens::Mint::like_sidecar(&self.kid, user, &[]);
        mint.claims.access = None;
        self.key.mint(&mint)
    }
}

/// Pulls by every writer's user and anonymously, over one connection at a time, as fast as
/// Envoy answers.
fn prober(
    connection: usize,
    minter: &Minter,
    users: &[String],
    base_url: &str,
    ca: &Path,
    stop: &AtomicBool,
) {
    let mut round = connection;
    while !stop.load(Ordering::SeqCst) {
        round += 1;
        let bit = u32::try_from(round % usize::try_from(SLOTS).unwrap_or(1)).unwrap_or(0);
        let path = format!("/v2/{}/manifests/latest", slot(bit));
        let request = Request::get(format!("{base_url}{path}"))
            .cacert(ca)
            .timeout(Duration::from_secs(5));
        let token = users
            .get(round % (users.len() + 1))
            .map(|u| minter.token(u));
        let request = match &token {
            Some(token) => request.auth(Auth::Bearer(token)),
            None => request,
        };
        if request.send().is_err() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Bursts of concurrent logins through Envoy (curl, all transfers in parallel).
fn login_bursts(
    params: &Params,
    logins: &[(String, String)],
    base_url: &str,
    ca: &Path,
    dir: &Path,
    recorder: &Recorder,
    stop: &AtomicBool,
) {
    for burst in 0..params.login_bursts {
        // Spread over the run, the first a few seconds in.
        let at = Duration::from_secs(
            params.seconds * (burst as u64 + 1) / (params.login_bursts as u64 + 1),
        );
        while recorder.started.elapsed() < at {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let burst_dir = dir.join(format!("logins-{burst}"));
        let (logins, errors) = crate::storm::curl_logins(
            &crate::storm::CurlBurst {
                base_url,
                ca,
                repository: &slot(0),
                dir: &burst_dir,
                interface: None,
            },
            logins,
            params.logins,
        );
        if !errors.is_empty() {
            eprintln!("[stress] login burst {burst}: curl reported {errors:?}");
        }
        let at_ms = recorder.now_ms();
        for login in logins {
            recorder.push(Event::Login(Login {
                at_ms,
                status: login.status,
                duration_ms: u64::try_from(login.duration.as_millis()).unwrap_or(u64::MAX),
            }));
        }
    }
}

/// After the storm: every Katello writer's last version is acknowledged again, the stores
/// settle, and every reader and Envoy worker converges on the head.
fn settle(stack: &mut Stack, redis: &Replicated, endpoints: &[Endpoint], recorder: &Recorder) {
    // A fault just before the end may have left Redis without the base: put it back, as the
    // source of truth would.
    crate::wait::wait_until(
        "the base content to be published",
        Duration::from_secs(60),
        || match write_once("settle", &endpoints[0], None, recorder) {
            Some((Change::NoOp, 200)) => Ok(()),
            other => Err(format!("wrote {other:?}")),
        },
    );
    let head = crate::wait::wait_until(
        "the sidecars to agree on one head",
        Duration::from_secs(60),
        || {
            let tags: BTreeSet<String> = endpoints
                .iter()
                .map(|e| {
                    read_snapshot(e, None)
                        .ok()
                        .filter(|r| r.status == 200)
                        .and_then(|r| r.header("etag").map(str::to_owned))
                        .ok_or_else(|| format!("{} has no snapshot", e.name))
                })
                .collect::<Result<_, _>>()?;
            match tags.len() {
                1 => Ok(tags
                    .into_iter()
                    .next()
                    .and_then(|t| Gen::parse(&t))
                    .unwrap()),
                _ => Err(format!("sidecars serve {tags:?}")),
            }
        },
    );
    stack
        .envoy
        .wait_for_generation(head.number, Duration::from_secs(60));
    // The harvester stopped with the others; read what was published since.
    if let Some(mut connection) = redis
        .primary()
        .ok()
        .and_then(|p| crate::redis::connect(p).ok())
    {
        let _ = harvest(&mut connection, &mut BTreeMap::new(), recorder);
    }
}

/// One access-log line as a decision (`None` for lines that are not registry requests).
fn parse_access_line(envoy: &str, line: &str, wall_start_ms: u64) -> Option<Decision> {
    let mut words = line.split_whitespace();
    if words.next()? != "[access]" {
        return None;
    }
    let started = chrono::DateTime::parse_from_rfc3339(words.next()?).ok()?;
    let _protocol = words.next()?;
    let method = words.next()?.to_owned();
    let path = words.next()?.to_owned();
    let status = words.next()?.parse().ok()?;
    let flags = words.next()?.to_owned();
    let fields: BTreeMap<&str, &str> = words.filter_map(|w| w.split_once('=')).collect();
    let present = |name: &str| {
        fields
            .get(name)
            .copied()
            .filter(|v| !v.is_empty() && *v != "-")
    };
    let at = u64::try_from(started.timestamp_millis()).ok()?;
    let (worker, sequence) = match present("worker").map(|w| w.rsplit_once('.')) {
        Some(Some((id, n))) => (Some(id), n.parse().ok()),
        _ => (present("worker"), None),
    };
    Some(Decision {
        at_ms: at.saturating_sub(wall_start_ms),
        envoy: envoy.to_owned(),
        worker: worker.map(str::to_owned),
        sequence,
        generation: present("generation").and_then(Gen::parse),
        identity: present("identity").unwrap_or("-").to_owned(),
        method,
        path,
        status,
        decision: present("decision").unwrap_or("-").to_owned(),
        duration_ms: present("duration_ms").and_then(|d| d.parse().ok()),
        flags,
    })
}
