//! `make bench-scale`: the snapshot at Katello scale — 100,000 repositories, 10,000 users and
//! 1,000,000 grants ([`registry_gate_bench::scale`]) — through the whole path, the previous
//! release (schema 1.1 JSON) and this one (schema 2.0 signed index) side by side in one run,
//! then this release at 10k, 100k, 1M and 4M grants (the slope), 100 fetchers on one sidecar
//! (the fan-out) and 1,000 concurrent logins.
//!
//! **Builds.** The previous release is [`registry_gate_tests::previous`]'s (built from git:
//! its sidecar and filter, JSON snapshots); this release is this build's. Each runs its own
//! Redis, sidecar and one Envoy at `--concurrency 2` with the filter and fetcher
//! (`envoy/bench/envoy-request-gate.yaml`: allowed requests get a `direct_response` 200, so a
//! refusal is the filter's), one build after the other on the same CPUs.
//!
//! **A stage** is one size of snapshot on one build: its content is published once (the first
//! install, from whatever was installed before), then `SCALE_PUBLISHES` (20) times more at the
//! main size (`SCALE_SLOPE_PUBLISHES`, 5, at the others), each a small change of it (one
//! repository more, granted to the probe user). Per publish:
//!
//! - *publish*: `PUT /v1/snapshot` of the content JSON with the sync secret, answered (parse,
//!   validation, the index built and signed — or, previously, the canonical JSON — and the
//!   Redis write);
//! - *enforced everywhere*: from the start of that `PUT` until the last worker has installed
//!   the generation. Every worker VM logs `installed snapshot generation G (N bytes) in T ms`
//!   right after it swapped, on its own thread; Envoy stamps each log line with the time and
//!   the thread id, so the latest such line over the worker threads is the moment every worker
//!   enforces G. The fetcher's `published snapshot generation G to workers` splits the time
//!   into distribution and install. A probe then confirms it: the new repository answers 404
//!   before the publish and 200 after;
//! - *install*: the `T ms` of each worker's line — this release: the copy out of shared data,
//!   checksum and validation of the index; the previous one: decode, validation and the hash
//!   maps built from JSON (`registry_gate.snapshot.install_ms`).
//!
//! Meanwhile `SCALE_LOAD_CONNECTIONS` (4) keep-alive connections each send a request for the
//! probe's repository every `SCALE_LOAD_INTERVAL_MS` (2 ms), timed one by one. A request is
//! *during an install* when it overlaps any worker's install (`[logged − T, logged]`); the
//! rest are steady. Envoy's RSS is read with a small snapshot installed and after each stage;
//! (after − small) / workers is the cost per worker (it also holds the fetcher's copy and
//! shared data, so it is an upper bound). The wire size is what `GET /v1/snapshot` serves the
//! build's fetcher.
//!
//! **Fan-out.** With this release's main-size index current, `SCALE_FETCHERS` (100) threads
//! each open a connection to the sidecar at once and `GET /v1/snapshot?schema=2.0` as the
//! fetcher does (read secret, the index media type); reported: the time until all hold the
//! whole index, and the sidecar's CPU time and RSS across it.
//!
//! **Logins.** Two stacks (htpasswd, bcrypt cost 10) take `SCALE_LOGINS` (1,000; 0 skips)
//! concurrent `/v2/token` logins from curl ([`registry_gate_tests::storm::curl_logins`]) of
//! `SCALE_LOGIN_USERS` (100) users: without the positive login cache and with the default.
//! Beside them the floor: the distinct verifications (one per user: concurrent logins of a
//! user share one) × one bcrypt cost-10 verification measured here ÷ the CPUs.
//!
//! The tables are printed and written to `bench/results/scale.md` with the commit and
//! machine, the picture of request latency over the main stage's publishes to
//! `bench/results/scale-latency.svg`. Any refused probe, failed load request or missing
//! install line fails the run (exit 1, no file). The harness guards stop every server.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use registry_gate_bench::http1::{Connection, Response};
use registry_gate_bench::plot::{self, Panel};
use registry_gate_bench::report::markdown_table;
use registry_gate_bench::scale::{self, Scale};
use registry_gate_bench::{context, env_number, htpasswd_logins, procfs, V2_DIRECT_RESPONSE};
use registry_gate_tests::envoy::{Envoy, EnvoyParams, Launch, LogEvent};
use registry_gate_tests::previous::{self, PreviousRelease};
use registry_gate_tests::redis::Redis;
use registry_gate_tests::sidecar::{random_hex, Sidecar, SidecarExtra};
use registry_gate_tests::stack::Stack;
use registry_gate_tests::storm::{self, percentile, CurlBurst};
use registry_gate_tests::{paths, ports, tokens, Scenario};

/// Where the tables and the picture are written, relative to the repository root.
const RESULTS: &str = "bench/results/scale.md";
const PICTURE: &str = "bench/results/scale-latency.svg";
/// Envoy workers (`--concurrency 2`).
const WORKERS: usize = 2;
/// Targets (issue 16).
const TARGET_ENFORCED_MS: u64 = 1000;
const TARGET_INSTALL_MS: u64 = 20;
const TARGET_PUT_MS: u64 = 1000;
const TARGET_RSS_PER_WORKER_MIB: f64 = 40.0;
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json";
/// What the fetcher of this release asks for.
const INDEX_MEDIA_TYPE: &str = "application/vnd.registry-gate.index.v2";
/// How long one generation may take to reach every worker before the run fails.
const ENFORCE_TIMEOUT: Duration = Duration::from_secs(120);

static STOP: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Clone)]
struct Settings {
    scale: Scale,
    /// The slope's grant counts (repositories and users scale with them: grants / 10 and
    /// grants / 100, as at the main size).
    slope: Vec<usize>,
    publishes: usize,
    slope_publishes: usize,
    load_connections: usize,
    load_interval: Duration,
    pause: Duration,
    fetchers: usize,
    logins: usize,
    login_users: usize,
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let slope = std::env::var("SCALE_SLOPE")
            .unwrap_or_else(|_| "10000,100000,1000000,4000000".to_owned())
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                s.trim()
                    .parse()
                    .map_err(|err| format!("SCALE_SLOPE {s:?}: {err}"))
            })
            .collect::<Result<Vec<usize>, String>>()?;
        let settings = Settings {
            scale: Scale {
                repositories: env_number("SCALE_REPOSITORIES", Scale::ISSUE_9.repositories)?,
                users: env_number("SCALE_USERS", Scale::ISSUE_9.users)?,
                grants: env_number("SCALE_GRANTS", Scale::ISSUE_9.grants)?,
                seed: env_number("SCALE_SEED", Scale::ISSUE_9.seed)?,
            },
            slope,
            publishes: env_number("SCALE_PUBLISHES", 20)?,
            slope_publishes: env_number("SCALE_SLOPE_PUBLISHES", 5)?,
            load_connections: env_number("SCALE_LOAD_CONNECTIONS", 4)?,
            load_interval: Duration::from_millis(env_number("SCALE_LOAD_INTERVAL_MS", 2)?),
            pause: Duration::from_millis(env_number("SCALE_PAUSE_MS", 1000)?),
            fetchers: env_number("SCALE_FETCHERS", 100)?,
            logins: env_number("SCALE_LOGINS", 1000)?,
            login_users: env_number("SCALE_LOGIN_USERS", 100)?,
        };
        if settings.scale.probe().is_none()
            || settings.publishes == 0
            || settings.slope_publishes == 0
        {
            return Err(
                "SCALE_REPOSITORIES, SCALE_USERS, SCALE_PUBLISHES and SCALE_SLOPE_PUBLISHES must \
                 be > 0"
                    .to_owned(),
            );
        }
        Ok(settings)
    }

    /// The stages this release runs: the slope's sizes and the main one, ascending by grants.
    fn stages(&self) -> Vec<Scale> {
        let mut stages: Vec<Scale> = self
            .slope
            .iter()
            .filter(|grants| **grants != self.scale.grants)
            .map(|grants| Scale {
                repositories: (grants / 10).max(1),
                users: (grants / 100).max(1),
                grants: *grants,
                seed: self.scale.seed,
            })
            .collect();
        stages.push(self.scale);
        stages.sort_by_key(|s| s.grants);
        stages
    }

    fn publishes_at(&self, spec: &Scale) -> usize {
        if *spec == self.scale {
            self.publishes
        } else {
            self.slope_publishes
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What one publish took.
#[derive(Debug, Clone)]
struct Publish {
    generation: u64,
    started_ms: u64,
    publish_ms: u64,
    /// The fetcher's publish line, ms after `started_ms`.
    fetched_ms: Option<u64>,
    /// Each worker's install line: (thread, logged at, took).
    installs: Vec<(u64, u64, u64)>,
}

impl Publish {
    fn enforced_ms(&self) -> u64 {
        self.installs
            .iter()
            .map(|(_, at, _)| at.saturating_sub(self.started_ms))
            .max()
            .unwrap_or(u64::MAX)
    }
}

// ---- the snapshot stack ---------------------------------------------------------------------

/// A build measured: the previous release or this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Build {
    Previous,
    Current,
}

impl Build {
    fn label(self) -> &'static str {
        match self {
            Build::Previous => "previous release (schema 1.1 JSON)",
            Build::Current => "this release (schema 2.0 signed index)",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Build::Previous => "previous",
            Build::Current => "current",
        }
    }

    /// The path and `Accept` of the snapshot as this build's fetcher asks for it.
    fn snapshot_request(self) -> (&'static str, &'static str) {
        match self {
            Build::Previous => ("/v1/snapshot?schema=1.1", "application/json"),
            Build::Current => ("/v1/snapshot?schema=2.0", INDEX_MEDIA_TYPE),
        }
    }
}

struct Bench {
    build: Build,
    sidecar: Sidecar,
    envoy: Envoy,
    token: String,
    rss_small: f64,
    /// Kept for its drop (after the sidecar and Envoy).
    _redis: Redis,
}

impl Bench {
    /// Redis, the build's sidecar (the probe user in its htpasswd), a small first snapshot and
    /// Envoy with the build's filter; a token for the probe user; the RSS with the small
    /// snapshot installed.
    fn start(
        dir: &Path,
        build: Build,
        previous: &PreviousRelease,
        probe: &scale::Probe,
    ) -> Result<Bench, String> {
        let dir = dir.join(build.name());
        std::fs::create_dir_all(&dir).map_err(|err| format!("{}: {err}", dir.display()))?;
        let redis = Redis::start(&dir, ports::free_port());
        let password = random_hex(12);
        // Many publishes of a large snapshot: keep Redis small; what it keeps is not measured.
        // The slope's 4M grants are about 190 MB of content JSON: above the default body
        // limit (64 MiB).
        let extra = SidecarExtra {
            args: ["--keep-generations", "3", "--max-body-bytes", "536870912"]
                .map(str::to_owned)
                .to_vec(),
            binary: (build == Build::Previous).then(|| previous.sidecar.clone()),
            ..SidecarExtra::default()
        };
        let files = Sidecar::prepare(
            &dir,
            &BTreeMap::from([(probe.user.clone(), password.clone())]),
            4,
            &extra,
        );
        let mut sidecar = Sidecar::start_with(
            &dir,
            "sidecar",
            ports::free_port(),
            &redis.url(),
            files,
            &extra,
        );
        let small = sidecar.publish(&serde_json::json!({
            "repositories": [{"name": probe.repository, "auth_required": true}],
            "users": {probe.user.clone(): [probe.repository]}
        }));
        let (wasm, publisher_keys) = match build {
            Build::Previous => (previous.wasm.clone(), Vec::new()),
            Build::Current => (paths::wasm(), vec![sidecar.files.publisher_public.clone()]),
        };
        let params = EnvoyParams {
            listen_port: ports::free_port(),
            admin_port: ports::free_port(),
            sidecar_port: sidecar.port,
            registry_port: 0,
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            client_ca: PathBuf::new(),
            wasm,
            access_log_state: false,
            snapshot_read_secret: sidecar.files.read_secret.clone(),
            publisher_keys,
        };
        let launch = Launch {
            name: format!("envoy-scale-{}", build.name()),
            concurrency: u32::try_from(WORKERS).unwrap_or(2),
            log_level: "info".to_owned(),
            cpus: None,
            extra_vars: vec![("V2_ACTION", V2_DIRECT_RESPONSE.to_owned())],
            ..Launch::default()
        };
        let template = paths::repo_root().join("envoy/bench/envoy-request-gate.yaml");
        let mut envoy = Envoy::start_with(&dir, &template, params, &launch);
        envoy.wait_for_generation(small.generation, Duration::from_secs(30));

        // A token without an `access` claim (the snapshot alone decides), valid for the run.
        let signed = sidecar.token(&probe.user, &password, &probe.repository)?;
        let key = tokens::SidecarKey::load(&sidecar.files.signing_key);
        let mut mint = tokens::Mint::like_sidecar(&tokens::kid(&signed), &probe.user, &[]);
        mint.claims.access = None;
        // Under the filter's default maximum lifetime (one hour): each build runs for less.
        mint.expires_at = tokens::now_secs() + 3500;
        let token = key.mint(&mint);
        let mut bench = Bench {
            build,
            sidecar,
            envoy,
            token,
            rss_small: 0.0,
            _redis: redis,
        };
        let response = bench.pull(&probe.repository)?;
        if response.status != 200 {
            return Err(format!(
                "{}: the probe answered {} with the small snapshot: {}",
                build.label(),
                response.status,
                String::from_utf8_lossy(&response.body)
            ));
        }
        std::thread::sleep(Duration::from_secs(2));
        bench.rss_small = bench.rss_mib()?;
        Ok(bench)
    }

    fn envoy_port(&self) -> u16 {
        self.envoy.params.listen_port
    }

    /// `GET /v2/<repository>/manifests/latest` as the probe user on a fresh connection.
    fn probe(&self, repository: &str) -> Result<u16, String> {
        self.pull(repository).map(|response| response.status)
    }

    /// [`Bench::probe`]'s whole answer.
    fn pull(&self, repository: &str) -> Result<Response, String> {
        let mut connection = Connection::open(self.envoy_port(), Duration::from_secs(10))?;
        let authorization = format!("Bearer {}", self.token);
        connection.request(
            "GET",
            &format!("/v2/{repository}/manifests/latest"),
            &[("Authorization", &authorization), ("Accept", ACCEPT)],
            b"",
        )
    }

    /// `PUT /v1/snapshot` of `body` with the sync secret (repositories and grants: what a
    /// sync job sends); the generation published and how long the answer took.
    fn put(&self, body: &[u8]) -> Result<(u64, Duration), String> {
        let mut connection = Connection::open(self.sidecar.port, Duration::from_secs(300))?;
        let authorization = format!("Bearer {}", self.sidecar.files.sync_secret);
        let started = Instant::now();
        let response = connection.request(
            "PUT",
            "/v1/snapshot",
            &[
                ("Authorization", &authorization),
                ("Content-Type", "application/json"),
            ],
            body,
        )?;
        let took = started.elapsed();
        if response.status != 200 {
            return Err(format!(
                "PUT /v1/snapshot answered {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            ));
        }
        let json: serde_json::Value = serde_json::from_slice(&response.body)
            .map_err(|err| format!("publish answer: {err}"))?;
        let generation = json
            .get("generation")
            .and_then(serde_json::Value::as_u64)
            .ok_or("publish answer has no generation")?;
        Ok((generation, took))
    }

    /// Publishes `body` and waits until every worker logged installing its generation.
    fn publish(&mut self, body: &[u8]) -> Result<Publish, String> {
        let started_ms = unix_ms();
        let (generation, took) = self.put(body)?;
        let deadline = Instant::now() + ENFORCE_TIMEOUT;
        loop {
            self.envoy.process.assert_running();
            let (installs, published) = self.envoy.snapshot_lines(generation);
            let threads: std::collections::BTreeSet<u64> =
                installs.iter().map(|l| l.thread).collect();
            if threads.len() > WORKERS {
                return Err(format!(
                    "generation {generation} installed on {} threads, expected {WORKERS} workers",
                    threads.len()
                ));
            }
            if threads.len() == WORKERS {
                return Ok(Publish {
                    generation,
                    started_ms,
                    publish_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
                    fetched_ms: published.map(|p| p.at_ms.saturating_sub(started_ms)),
                    installs: installs
                        .iter()
                        .filter_map(|l| match l.event {
                            LogEvent::Installed { took_ms, .. } => {
                                Some((l.thread, l.at_ms, took_ms))
                            }
                            LogEvent::Published { .. } => None,
                        })
                        .collect(),
                });
            }
            if Instant::now() >= deadline {
                self.envoy.process.print_tail();
                return Err(format!(
                    "generation {generation} was not installed by {WORKERS} workers within \
                     {ENFORCE_TIMEOUT:?} (install lines: {installs:?})"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn rss_mib(&self) -> Result<f64, String> {
        let pid = self.envoy.process.pid().ok_or("Envoy has no pid")?;
        Ok(procfs::vm_rss_kib(pid)? as f64 / 1024.0)
    }

    /// `GET /v1/snapshot` as this build's fetcher asks for it (the read secret; this release:
    /// the index): the bytes served.
    fn wire(&self) -> Result<Vec<u8>, String> {
        let mut connection = Connection::open(self.sidecar.port, Duration::from_secs(60))?;
        let authorization = format!("Bearer {}", self.sidecar.files.read_secret);
        let (path, accept) = self.build.snapshot_request();
        let response = connection.request(
            "GET",
            path,
            &[("Authorization", &authorization), ("Accept", accept)],
            b"",
        )?;
        if response.status != 200 {
            return Err(format!("GET {path}: {}", response.status));
        }
        Ok(response.body)
    }
}

// ---- load during the publishes --------------------------------------------------------------

/// One timed request of the load.
#[derive(Debug, Clone, Copy)]
struct Sample {
    started_ms: u64,
    latency: Duration,
    ok: bool,
}

/// `connections` paced request loops until `stop`; every request's sample.
fn load(
    port: u16,
    path: &str,
    token: &str,
    connections: usize,
    interval: Duration,
    stop: &AtomicBool,
) -> Result<Vec<Sample>, String> {
    let samples = Mutex::new(Vec::new());
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..connections {
            scope.spawn(|| {
                let authorization = format!("Bearer {token}");
                let headers = [
                    ("Authorization", authorization.as_str()),
                    ("Accept", ACCEPT),
                ];
                let mut mine = Vec::new();
                let mut connection = match Connection::open(port, Duration::from_secs(10)) {
                    Ok(c) => c,
                    Err(err) => {
                        failures.lock().map(|mut f| f.push(err)).ok();
                        return;
                    }
                };
                let mut next = Instant::now();
                while !stop.load(Ordering::SeqCst) {
                    let started_ms = unix_ms();
                    let started = Instant::now();
                    let result = connection.request("GET", path, &headers, b"");
                    let latency = started.elapsed();
                    match result {
                        Ok(response) => mine.push(Sample {
                            started_ms,
                            latency,
                            ok: response.status == 200,
                        }),
                        Err(err) => {
                            failures.lock().map(|mut f| f.push(err)).ok();
                            break;
                        }
                    }
                    next += interval;
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else {
                        next = now;
                    }
                }
                samples.lock().map(|mut s| s.extend(mine)).ok();
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_default();
    if !failures.is_empty() {
        return Err(format!("load connections failed: {failures:?}"));
    }
    Ok(samples.into_inner().unwrap_or_default())
}

/// Latency of the steady requests and of those overlapping an install window.
#[derive(Debug, Default)]
struct Windows {
    steady: Vec<Duration>,
    rebuilding: Vec<Duration>,
    failed: usize,
}

fn split(samples: &[Sample], installs: &[(u64, u64)]) -> Windows {
    let mut windows = Windows::default();
    for sample in samples {
        if !sample.ok {
            windows.failed += 1;
        }
        let end = sample.started_ms + u64::try_from(sample.latency.as_millis()).unwrap_or(0);
        // Log stamps and sample starts are whole milliseconds: widen by one each side.
        let overlaps = installs
            .iter()
            .any(|(from, to)| sample.started_ms <= to + 1 && end + 1 >= *from);
        if overlaps {
            windows.rebuilding.push(sample.latency);
        } else {
            windows.steady.push(sample.latency);
        }
    }
    windows
}

// ---- a stage: one size of snapshot on one build ---------------------------------------------

/// What one stage measured.
struct Stage {
    build: Build,
    spec: Scale,
    content_bytes: usize,
    wire_bytes: usize,
    /// The first publish of this size (from the stage before, or the small snapshot).
    first: Publish,
    publishes: Vec<Publish>,
    samples: Vec<Sample>,
    /// When the first measured publish started (the picture's origin).
    origin_ms: u64,
    rss_small: f64,
    rss_after: f64,
}

impl Stage {
    fn rss_per_worker(&self) -> f64 {
        (self.rss_after - self.rss_small) / WORKERS as f64
    }

    fn installs(&self) -> Vec<u64> {
        self.publishes
            .iter()
            .flat_map(|p| p.installs.iter().map(|i| i.2))
            .collect()
    }

    fn windows(&self) -> Vec<(u64, u64)> {
        self.publishes
            .iter()
            .flat_map(|p| {
                p.installs
                    .iter()
                    .map(|(_, at, took)| (at.saturating_sub(*took), *at))
            })
            .collect()
    }

    fn split(&self) -> Windows {
        split(&self.samples, &self.windows())
    }

    fn panel(&self) -> Panel {
        let seconds = |ms: u64| ms.saturating_sub(self.origin_ms) as f64 / 1000.0;
        Panel {
            title: format!(
                "{}: {} grants, {} publishes",
                self.build.label(),
                self.spec.grants,
                self.publishes.len()
            ),
            requests: slowest_per_bucket(&self.samples, self.origin_ms),
            installs: self
                .windows()
                .iter()
                .map(|(from, to)| (seconds(*from), seconds(*to)))
                .collect(),
        }
    }
}

/// Width of the picture's time buckets: each draws only its slowest request, so a stall
/// shows while the SVG stays small (a run is about half a million requests).
const BUCKET_MS: u64 = 50;

/// (seconds since `origin_ms`, latency in ms) of the slowest request of each
/// [`BUCKET_MS`] bucket, in time order.
fn slowest_per_bucket(samples: &[Sample], origin_ms: u64) -> Vec<(f64, f64)> {
    let mut buckets: BTreeMap<u64, Duration> = BTreeMap::new();
    for sample in samples {
        let bucket = sample.started_ms.saturating_sub(origin_ms) / BUCKET_MS;
        let slowest = buckets.entry(bucket).or_default();
        *slowest = (*slowest).max(sample.latency);
    }
    buckets
        .into_iter()
        .map(|(bucket, latency)| {
            (
                (bucket * BUCKET_MS) as f64 / 1000.0,
                latency.as_secs_f64() * 1000.0,
            )
        })
        .collect()
}

/// Publishes `spec`'s content on `bench` once, then `publishes` small changes of it under
/// load.
fn stage(
    bench: &mut Bench,
    spec: &Scale,
    publishes: usize,
    settings: &Settings,
) -> Result<Stage, String> {
    let probe = spec.probe().ok_or("the spec has no probe pair")?;
    eprintln!(
        "[bench-scale] {}: generating {} repositories, {} users, {} grants",
        bench.build.name(),
        spec.repositories,
        spec.users,
        spec.grants
    );
    let base = scale::content(spec);
    let body = serde_json::to_vec(&base).map_err(|err| format!("content JSON: {err}"))?;
    let first = bench.publish(&body)?;
    eprintln!(
        "[bench-scale] {}: first install of {} of content JSON: generation {} enforced \
         everywhere after {} ms",
        bench.build.name(),
        mib(body.len()),
        first.generation,
        first.enforced_ms()
    );
    let wire_bytes = bench.wire()?.len();

    let stop = AtomicBool::new(false);
    let mut measured = Vec::new();
    let probe_path = format!("/v2/{}/manifests/latest", probe.repository);
    let (port, token) = (bench.envoy_port(), bench.token.clone());
    let origin_ms = unix_ms() + u64::try_from(settings.pause.as_millis()).unwrap_or(0);
    let samples = std::thread::scope(|scope| -> Result<Vec<Sample>, String> {
        let loader = scope.spawn(|| {
            load(
                port,
                &probe_path,
                &token,
                settings.load_connections,
                settings.load_interval,
                &stop,
            )
        });
        let result = (|| -> Result<(), String> {
            for n in 1..=publishes {
                if STOP.load(Ordering::SeqCst) {
                    return Err("interrupted".to_owned());
                }
                std::thread::sleep(settings.pause);
                let mut content = base.clone();
                let marker = scale::mark(&mut content, spec, n as u64)
                    .ok_or("the content has no probe user to mark")?;
                let body = serde_json::to_vec(&content).map_err(|err| format!("JSON: {err}"))?;
                let before = bench.probe(&marker)?;
                let publish = bench.publish(&body)?;
                let after = bench.probe(&marker)?;
                if (before, after) != (404, 200) {
                    return Err(format!(
                        "probe {marker} answered {before} before and {after} after generation {}",
                        publish.generation
                    ));
                }
                eprintln!(
                    "[bench-scale] {} {} grants, publish {n}/{publishes}: generation {} PUT {} \
                     ms, fetched +{} ms, enforced everywhere +{} ms, installs {:?} ms",
                    bench.build.name(),
                    spec.grants,
                    publish.generation,
                    publish.publish_ms,
                    publish.fetched_ms.map_or("?".to_owned(), |v| v.to_string()),
                    publish.enforced_ms(),
                    publish.installs.iter().map(|i| i.2).collect::<Vec<_>>()
                );
                measured.push(publish);
            }
            std::thread::sleep(settings.pause);
            Ok(())
        })();
        stop.store(true, Ordering::SeqCst);
        let samples = loader
            .join()
            .map_err(|_| "the load thread panicked".to_owned())??;
        result.map(|()| samples)
    })?;
    let stage = Stage {
        build: bench.build,
        spec: *spec,
        content_bytes: body.len(),
        wire_bytes,
        first,
        publishes: measured,
        samples,
        origin_ms,
        rss_small: bench.rss_small,
        rss_after: bench.rss_mib()?,
    };
    let failed = stage.split().failed;
    if failed > 0 {
        return Err(format!("{failed} load requests were not answered 200"));
    }
    Ok(stage)
}

// ---- fan-out --------------------------------------------------------------------------------

/// `fetchers` clients fetching the current index from one sidecar at once.
struct FanOut {
    fetchers: usize,
    bytes: usize,
    all_hold: Duration,
    slowest: Duration,
    cpu: Duration,
    rss_before: f64,
    rss_peak: f64,
}

fn fan_out(bench: &Bench, fetchers: usize) -> Result<FanOut, String> {
    let pid = bench
        .sidecar
        .process
        .pid()
        .ok_or("the sidecar has no pid")?;
    let expected = bench.wire()?;
    let ticks = procfs::clock_ticks_per_sec()?;
    let rss_before = procfs::vm_rss_kib(pid)? as f64 / 1024.0;
    let cpu_before = procfs::cpu_ticks(pid)?;
    let port = bench.sidecar.port;
    let authorization = format!("Bearer {}", bench.sidecar.files.read_secret);
    let (path, accept) = bench.build.snapshot_request();
    let gate = Barrier::new(fetchers + 1);
    let done = AtomicBool::new(false);
    let (results, rss_peak, all_hold) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut peak = rss_before;
            while !done.load(Ordering::SeqCst) {
                if let Ok(kib) = procfs::vm_rss_kib(pid) {
                    peak = peak.max(kib as f64 / 1024.0);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        });
        let clients: Vec<_> = (0..fetchers)
            .map(|_| {
                scope.spawn(|| -> Result<(usize, Duration), String> {
                    let mut connection = Connection::open(port, Duration::from_secs(120))?;
                    gate.wait();
                    let started = Instant::now();
                    let response = connection.request(
                        "GET",
                        path,
                        &[("Authorization", &authorization), ("Accept", accept)],
                        b"",
                    )?;
                    if response.status != 200 || response.body != expected {
                        return Err(format!(
                            "a fetcher got {} with {} bytes",
                            response.status,
                            response.body.len()
                        ));
                    }
                    Ok((response.body.len(), started.elapsed()))
                })
            })
            .collect();
        gate.wait();
        let started = Instant::now();
        let results: Vec<Result<(usize, Duration), String>> = clients
            .into_iter()
            .map(|c| {
                c.join()
                    .unwrap_or_else(|_| Err("a fetcher panicked".into()))
            })
            .collect();
        let all_hold = started.elapsed();
        done.store(true, Ordering::SeqCst);
        (results, sampler.join().unwrap_or(rss_before), all_hold)
    });
    let cpu_ticks = procfs::cpu_ticks(pid)?.saturating_sub(cpu_before);
    let results = results.into_iter().collect::<Result<Vec<_>, String>>()?;
    Ok(FanOut {
        fetchers,
        bytes: results.first().map_or(0, |r| r.0),
        all_hold,
        slowest: results.iter().map(|r| r.1).max().unwrap_or_default(),
        cpu: Duration::from_secs_f64(cpu_ticks as f64 / ticks.max(1) as f64),
        rss_before,
        rss_peak,
    })
}

// ---- logins ---------------------------------------------------------------------------------

struct LoginRow {
    backend: &'static str,
    logins: Vec<storm::CurlLogin>,
    elapsed: Duration,
    errors: BTreeMap<String, usize>,
}

fn login_burst(settings: &Settings, backend: &'static str, ttl: &str) -> LoginRow {
    let users: Vec<String> = (0..settings.login_users)
        .map(|i| format!("user{i:03}"))
        .collect();
    let options = htpasswd_logins(&format!("bench-scale-logins-ttl{ttl}"), users.clone(), ttl);
    let stack = Stack::start_with(options);
    let logins: Vec<(String, String)> = users
        .iter()
        .map(|u| (u.clone(), stack.password(u).to_owned()))
        .collect();
    let base_url = stack.base_url();
    let dir = stack.scenario.subdir("burst");
    let started = Instant::now();
    let (outcomes, errors) = storm::curl_logins(
        &CurlBurst {
            base_url: &base_url,
            ca: stack.ca_cert(),
            repository: "team/private",
            dir: &dir,
            interface: None,
        },
        &logins,
        settings.logins,
    );
    LoginRow {
        backend,
        logins: outcomes,
        elapsed: started.elapsed(),
        errors,
    }
}

// ---- report ---------------------------------------------------------------------------------

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn ms_percentile(values: &[u64], p: u32) -> u64 {
    let durations: Vec<Duration> = values.iter().map(|v| Duration::from_millis(*v)).collect();
    u64::try_from(percentile(&durations, p).as_millis()).unwrap_or(u64::MAX)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// A stage's figures, each as the cell the tables print.
struct Figures {
    wire: String,
    put: String,
    put_p99: u64,
    fetched: String,
    install: String,
    install_p99: u64,
    enforced: String,
    enforced_p99: u64,
    first: String,
    steady: String,
    during: String,
    stall_ok: bool,
    stall_bound: String,
    rss: String,
    rss_per_worker: f64,
}

impl Figures {
    fn of(stage: &Stage) -> Figures {
        let p = ms_percentile;
        let put: Vec<u64> = stage.publishes.iter().map(|p| p.publish_ms).collect();
        let fetched: Vec<u64> = stage
            .publishes
            .iter()
            .filter_map(|p| p.fetched_ms)
            .collect();
        let enforced: Vec<u64> = stage.publishes.iter().map(Publish::enforced_ms).collect();
        let installs = stage.installs();
        let windows = stage.split();
        let steady_p99 = percentile(&windows.steady, 99);
        let during_max = percentile(&windows.rebuilding, 100);
        Figures {
            wire: format!("{} ({} bytes)", mib(stage.wire_bytes), stage.wire_bytes),
            put: format!("{} / {} ms", p(&put, 50), p(&put, 99)),
            put_p99: p(&put, 99),
            fetched: format!("{} / {} ms", p(&fetched, 50), p(&fetched, 99)),
            install: format!(
                "{} / {} / {} ms (n={})",
                p(&installs, 50),
                p(&installs, 99),
                p(&installs, 100),
                installs.len()
            ),
            install_p99: p(&installs, 99),
            enforced: format!(
                "{} / {} ms (n={})",
                p(&enforced, 50),
                p(&enforced, 99),
                enforced.len()
            ),
            enforced_p99: p(&enforced, 99),
            first: format!(
                "{} ms (enforced everywhere after {} ms)",
                stage.first.installs.iter().map(|i| i.2).max().unwrap_or(0),
                stage.first.enforced_ms()
            ),
            steady: format!(
                "{} / {} ms (n={})",
                ms(percentile(&windows.steady, 50)),
                ms(steady_p99),
                windows.steady.len()
            ),
            during: format!(
                "{} / {} ms (n={})",
                ms(percentile(&windows.rebuilding, 99)),
                ms(during_max),
                windows.rebuilding.len()
            ),
            stall_ok: during_max <= steady_p99 * 2,
            stall_bound: format!("max ≤ 2 × steady p99 = {} ms", ms(steady_p99 * 2)),
            rss: format!(
                "{:.0} → {:.0} MiB; {:.1} MiB per worker",
                stage.rss_small,
                stage.rss_after,
                stage.rss_per_worker()
            ),
            rss_per_worker: stage.rss_per_worker(),
        }
    }
}

/// The main size, both builds: figure | previous | this | target | this release's verdict.
fn main_table(previous: &Stage, current: &Stage) -> String {
    let (was, now) = (Figures::of(previous), Figures::of(current));
    let row = |figure: &str, was: &str, now: &str, target: String, ok: Option<bool>| {
        vec![
            figure.to_owned(),
            was.to_owned(),
            now.to_owned(),
            target,
            ok.map_or("—", verdict).to_owned(),
        ]
    };
    let rows = vec![
        row(
            "snapshot on the wire",
            &was.wire,
            &now.wire,
            "reported".into(),
            None,
        ),
        row(
            "sidecar `PUT /v1/snapshot` answered, p50 / p99",
            &was.put,
            &now.put,
            format!("p99 < {TARGET_PUT_MS} ms"),
            Some(now.put_p99 < TARGET_PUT_MS),
        ),
        row(
            "publish → fetcher published to shared data, p50 / p99",
            &was.fetched,
            &now.fetched,
            "—".into(),
            None,
        ),
        row(
            "install per worker (the worker serves nothing meanwhile), p50 / p99 / max",
            &was.install,
            &now.install,
            format!("p99 < {TARGET_INSTALL_MS} ms"),
            Some(now.install_p99 < TARGET_INSTALL_MS),
        ),
        row(
            "publish → enforced on every worker, p50 / p99",
            &was.enforced,
            &now.enforced,
            format!("p99 < {TARGET_ENFORCED_MS} ms"),
            Some(now.enforced_p99 < TARGET_ENFORCED_MS),
        ),
        row(
            "first install of this size (from a smaller one), slowest worker",
            &was.first,
            &now.first,
            "—".into(),
            None,
        ),
        row(
            "request latency, steady, p50 / p99",
            &was.steady,
            &now.steady,
            "—".into(),
            None,
        ),
        row(
            "request latency while a worker installs, p99 / max",
            &was.during,
            &now.during,
            now.stall_bound.clone(),
            Some(now.stall_ok),
        ),
        row(
            "Envoy RSS: small snapshot → after the publishes",
            &was.rss,
            &now.rss,
            format!("< {TARGET_RSS_PER_WORKER_MIB:.0} MiB per worker"),
            Some(now.rss_per_worker < TARGET_RSS_PER_WORKER_MIB),
        ),
    ];
    markdown_table(
        &[
            "figure",
            previous.build.label(),
            current.build.label(),
            "target",
            "this release",
        ],
        &rows,
    )
}

/// This release at every size.
fn slope_table(stages: &[Stage]) -> String {
    let rows: Vec<Vec<String>> = stages
        .iter()
        .map(|stage| {
            let f = Figures::of(stage);
            vec![
                stage.spec.grants.to_string(),
                stage.spec.repositories.to_string(),
                stage.spec.users.to_string(),
                mib(stage.content_bytes),
                f.wire,
                f.put,
                f.install,
                f.enforced,
                format!(
                    "{} ({}, {})",
                    f.during,
                    f.stall_bound,
                    verdict(f.stall_ok).trim_matches('*')
                ),
                format!("{:.1} MiB", f.rss_per_worker),
            ]
        })
        .collect();
    markdown_table(
        &[
            "grants",
            "repositories",
            "users",
            "content JSON",
            "index on the wire",
            "PUT p50 / p99",
            "install p50 / p99 / max",
            "enforced everywhere p50 / p99",
            "latency while installing p99 / max",
            "Envoy RSS per worker",
        ],
        &rows,
    )
}

fn fan_out_table(f: &FanOut) -> String {
    markdown_table(
        &[
            "fetchers",
            "index",
            "all hold it after",
            "slowest fetcher",
            "sidecar CPU",
            "sidecar RSS before → peak",
        ],
        &[vec![
            f.fetchers.to_string(),
            mib(f.bytes),
            format!("{} ms", ms(f.all_hold)),
            format!("{} ms", ms(f.slowest)),
            format!("{} ms", ms(f.cpu)),
            format!("{:.0} → {:.0} MiB", f.rss_before, f.rss_peak),
        ]],
    )
}

/// The burst's floor: its distinct verifications (one per user, however many logins share
/// it) at the measured bcrypt cost, on the CPUs the sidecar verifies on.
fn login_floor(settings: &Settings) -> (Duration, String) {
    let each = storm::bcrypt_verify_time(10);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let users = settings.login_users.min(settings.logins);
    let floor = each * u32::try_from(users).unwrap_or(u32::MAX) / u32::try_from(cpus).unwrap_or(1);
    let text = format!(
        "Floor: {users} distinct verifications × {} ms (one bcrypt cost-10 verification here) ÷ \
         {cpus} CPUs = {} ms. Every login should be answered 200 within it plus a small \
         margin.",
        ms(each),
        ms(floor)
    );
    (floor, text)
}

fn login_table(settings: &Settings, login_rows: &[LoginRow]) -> String {
    let (floor, floor_text) = login_floor(settings);
    let table = markdown_table(
        &[
            "backend",
            "logins",
            "answered 200",
            "logins/s",
            "p50",
            "p99",
            "max",
            "max / floor",
            "curl errors",
        ],
        &login_rows
            .iter()
            .map(|row| {
                let ok: Vec<Duration> = row
                    .logins
                    .iter()
                    .filter(|l| l.status == 200)
                    .map(|l| l.duration)
                    .collect();
                let all: Vec<Duration> = row.logins.iter().map(|l| l.duration).collect();
                let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
                for login in &row.logins {
                    *statuses.entry(login.status).or_default() += 1;
                }
                vec![
                    row.backend.to_owned(),
                    settings.logins.to_string(),
                    format!("{} ({statuses:?})", ok.len()),
                    format!(
                        "{:.0}",
                        ok.len() as f64 / row.elapsed.as_secs_f64().max(1e-9)
                    ),
                    format!("{} ms", ms(percentile(&all, 50))),
                    format!("{} ms", ms(percentile(&all, 99))),
                    format!("{} ms", ms(percentile(&all, 100))),
                    format!(
                        "{:.2}",
                        percentile(&all, 100).as_secs_f64() / floor.as_secs_f64().max(1e-9)
                    ),
                    if row.errors.is_empty() {
                        "0".to_owned()
                    } else {
                        format!("{:?}", row.errors)
                    },
                ]
            })
            .collect::<Vec<_>>(),
    );
    format!("{floor_text}\n\n{table}")
}

// ---- main -----------------------------------------------------------------------------------

fn run() -> Result<(), String> {
    let settings = Settings::from_env()?;
    let spec = settings.scale;
    let probe = spec.probe().ok_or("the spec has no probe pair")?;
    let load_at_start = procfs::load_average();
    let scenario = Scenario::new("bench-scale");
    let dir = scenario.path().to_path_buf();
    let previous_release = previous::build();

    // The previous release at the main size: the baseline.
    let mut bench = Bench::start(&dir, Build::Previous, &previous_release, &probe)?;
    let baseline = stage(&mut bench, &spec, settings.publishes, &settings)?;
    drop(bench);

    // This release at every size, ascending; the fan-out once the main size is current.
    let mut bench = Bench::start(&dir, Build::Current, &previous_release, &probe)?;
    let mut stages = Vec::new();
    let mut fan = None;
    for size in settings.stages() {
        stages.push(stage(
            &mut bench,
            &size,
            settings.publishes_at(&size),
            &settings,
        )?);
        if size == spec && settings.fetchers > 0 {
            eprintln!("[bench-scale] fan-out: {} fetchers", settings.fetchers);
            fan = Some(fan_out(&bench, settings.fetchers)?);
        }
    }
    drop(bench);
    let current = stages
        .iter()
        .find(|s| s.spec == spec)
        .ok_or("no stage at the main size")?;

    // Logins.
    let login_rows: Vec<LoginRow> = if settings.logins == 0 {
        Vec::new()
    } else {
        vec![
            login_burst(
                &settings,
                "htpasswd, no cache (`--login-cache-ttl-secs 0`)",
                "0",
            ),
            login_burst(&settings, "htpasswd, positive cache (default 30 s)", "30"),
        ]
    };

    let picture = paths::repo_root().join(PICTURE);
    plot::latency_svg(&picture, &[baseline.panel(), current.panel()], 1200)?;

    let commit = context::commit();
    let s = &settings;
    let context = format!(
        "- commit: {commit}; previous release: {}\n- date: {}\n- CPU: {} ({} CPUs online); \
         kernel {}\n- load average (1/5/15 min) at start: {load_at_start}; at end: {}\n\
         - main size: {} repositories, {} users, {} grants (uniform, seed {}), {} of content \
         JSON; {} publishes at it ({} at each other size), each {} ms after the previous was \
         enforced; at the other sizes repositories = grants / 10, users = grants / 100\n\
         - load during the publishes: {} keep-alive connections, one request each every {} ms \
         (the probe's repository, cached bearer token, `direct_response` 200)\n\
         - Envoy `--concurrency {WORKERS}`, not pinned; the sidecar, Redis, the load and the \
         generator share the same CPUs\n",
        previous::PREVIOUS_RELEASE,
        unix_date(),
        procfs::cpu_model(),
        std::thread::available_parallelism().map_or(0, usize::from),
        procfs::kernel(),
        procfs::load_average(),
        spec.repositories,
        spec.users,
        spec.grants,
        spec.seed,
        mib(current.content_bytes),
        s.publishes,
        s.slope_publishes,
        s.pause.as_millis(),
        s.load_connections,
        s.load_interval.as_millis(),
    );
    let mut document = format!(
        "# `make bench-scale`: the snapshot at Katello scale\n\n\
         ## {} repositories, {} users, {} grants: the previous release beside this one\n\n{}\n\
         Request latency over these publishes, both builds: \
         [scale-latency.svg](scale-latency.svg).\n\n\
         ## The slope: this release from {} to {} grants\n\n{}\n",
        spec.repositories,
        spec.users,
        spec.grants,
        main_table(&baseline, current),
        stages.first().map_or(0, |s| s.spec.grants),
        stages.last().map_or(0, |s| s.spec.grants),
        slope_table(&stages),
    );
    if let Some(fan) = &fan {
        document.push_str(&format!(
            "## Fan-out: {} fetchers on one sidecar, the {}-grant index\n\n{}\n",
            fan.fetchers,
            spec.grants,
            fan_out_table(fan)
        ));
    }
    if !login_rows.is_empty() {
        document.push_str(&format!(
            "## {} concurrent `/v2/token` logins\n\n{}\n- logins: {} at once (curl, \
             `--parallel`), {} users cycled, bcrypt cost 10, through Envoy's TLS listener to \
             `/v2/token`\n\n",
            s.logins,
            login_table(&settings, &login_rows),
            s.logins,
            s.login_users
        ));
    }
    document.push_str(&context);
    println!("\n{document}");
    let out = paths::repo_root().join(RESULTS);
    std::fs::write(&out, &document).map_err(|err| format!("write {}: {err}", out.display()))?;
    eprintln!(
        "[bench-scale] written to {} and {}",
        out.display(),
        picture.display()
    );
    Ok(())
}

fn unix_date() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}

fn main() -> ExitCode {
    if let Err(err) = ctrlc::set_handler(|| STOP.store(true, Ordering::SeqCst)) {
        eprintln!("[bench-scale] cannot install the Ctrl-C handler: {err}");
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("[bench-scale] FAILED: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_overlapping_an_install_are_apart() {
        let sample = |started_ms: u64, latency_ms: u64| Sample {
            started_ms,
            latency: Duration::from_millis(latency_ms),
            ok: true,
        };
        let samples = [
            sample(100, 1),
            sample(500, 2),
            sample(990, 15),
            sample(980, 5),
            sample(1_200, 300),
            sample(2_000, 1),
        ];
        let windows = split(&samples, &[(1_000, 1_400)]);
        assert_eq!(
            windows.steady.len(),
            4,
            "100, 500, 980 (ends at 985) and 2000 are steady"
        );
        assert_eq!(
            windows.rebuilding.len(),
            2,
            "990 ends inside, 1200 starts inside"
        );
        assert_eq!(windows.failed, 0);
    }

    #[test]
    fn the_picture_keeps_the_slowest_request_of_each_bucket() {
        let sample = |started_ms: u64, latency_ms: u64| Sample {
            started_ms,
            latency: Duration::from_millis(latency_ms),
            ok: true,
        };
        let samples = [
            sample(1_000, 1),
            sample(1_010, 30),
            sample(1_049, 2),
            sample(1_050, 3),
            sample(1_200, 1),
        ];
        assert_eq!(
            slowest_per_bucket(&samples, 1_000),
            vec![(0.0, 30.0), (0.05, 3.0), (0.2, 1.0)]
        );
    }

    #[test]
    fn enforced_is_the_last_worker() {
        let publish = Publish {
            generation: 3,
            started_ms: 1_000,
            publish_ms: 80,
            fetched_ms: Some(300),
            installs: vec![(1, 1_700, 400), (2, 1_650, 300)],
        };
        assert_eq!(publish.enforced_ms(), 700);
    }
}
