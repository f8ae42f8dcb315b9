//! `make bench-scale`: issue 9's scale measurement — a snapshot of 100,000 repositories, 10,000
//! users and 1,000,000 grants ([`registry_gate_bench::scale`]) through the whole path, and
//! 1,000 concurrent logins.
//!
//! **Snapshot.** Redis, the sidecar and one Envoy at `--concurrency 2` running the filter and
//! fetcher (`envoy/bench/envoy-request-gate.yaml`: allowed requests get a `direct_response`
//! 200, so a refusal is the filter's). After a small snapshot, the large one is published once
//! (its first install), then `SCALE_PUBLISHES` (20) times more, each a small change of it (one
//! repository more, granted to the probe user). Per publish:
//!
//! - *publish*: `PUT /v1/snapshot` of the content, sent to the sidecar and answered (parse,
//!   validation, canonical encoding, Redis write);
//! - *enforced everywhere*: from the start of that `PUT` until the last worker has installed
//!   the generation. Every worker VM logs `installed snapshot generation G (N bytes) in T ms`
//!   right after it swapped its index, on its own thread; Envoy stamps each log line with the
//!   time and the thread id, so the latest such line over the worker threads is the moment
//!   every worker enforces G (exact to the millisecond, whichever worker requests land on).
//!   The fetcher's `published snapshot generation G to workers` splits the time into
//!   distribution (sidecar → fetcher, which decodes and validates once) and install. A probe
//!   then confirms it: the new repository answers 404 before the publish and 200 after;
//! - *install*: the `T ms` of each worker's line (decode, checksum, validation, index build —
//!   the gauge `registry_gate.snapshot.install_ms`).
//!
//! Meanwhile `SCALE_LOAD_CONNECTIONS` (4) keep-alive connections each send a request for the
//! probe's repository every `SCALE_LOAD_INTERVAL_MS` (2 ms), timed one by one. A request is
//! *during a rebuild* when it overlaps any worker's install (`[logged − T, logged]`); the rest
//! are steady. Reported: steady p50/p99, and p99/max during rebuilds against 2× the steady
//! p99. Envoy's RSS is read with the small snapshot installed, after the first large install
//! and after the last publish; (after − before) / workers is the cost per worker (it also holds
//! the fetcher's copy and shared data, so it is an upper bound).
//!
//! The wire size is the envelope `GET /v1/snapshot` serves; gzip -6 and zstd -3 (the system's
//! tools) report what compression would save and cost to encode and decode, beside the time
//! the uncompressed envelope takes from sidecar to fetcher on loopback.
//!
//! **Logins.** Two stacks (htpasswd, bcrypt cost 10) take `SCALE_LOGINS` (1,000) concurrent
//! `/v2/token` logins from curl ([`registry_gate_tests::storm::curl_logins`], as the stress
//! suite bursts them) of `SCALE_LOGIN_USERS` (100) users: without the positive login cache
//! (`--login-cache-ttl-secs 0`) and with the default. Reported: logins/s over the burst and
//! curl's p50/p99.
//!
//! The tables are printed and written to `bench/results/scale.md` with the commit and machine.
//! Any refused probe, failed load request or missing install line fails the run (exit 1, no
//! file). The harness guards stop every server on return or panic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use registry_gate_bench::http1::Connection;
use registry_gate_bench::report::markdown_table;
use registry_gate_bench::scale::{self, Scale};
use registry_gate_bench::{context, env_number, htpasswd_logins, procfs, V2_DIRECT_RESPONSE};
use registry_gate_tests::envoy::{Envoy, EnvoyParams, Launch};
use registry_gate_tests::redis::Redis;
use registry_gate_tests::sidecar::{random_hex, Sidecar, SidecarExtra};
use registry_gate_tests::stack::Stack;
use registry_gate_tests::storm::{self, percentile, CurlBurst};
use registry_gate_tests::{paths, ports, tokens, Scenario};

/// Where the tables are written, relative to the repository root.
const RESULTS: &str = "bench/results/scale.md";
/// Envoy workers (issue 9: `--concurrency 2`).
const WORKERS: usize = 2;
/// Targets (DESIGN.md §5).
const TARGET_ENFORCED_MS: u64 = 1000;
const TARGET_INSTALL_MS: u64 = 1000;
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json";
/// How long one generation may take to reach every worker before the run fails.
const ENFORCE_TIMEOUT: Duration = Duration::from_secs(60);

static STOP: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Clone)]
struct Settings {
    scale: Scale,
    publishes: usize,
    load_connections: usize,
    load_interval: Duration,
    pause: Duration,
    logins: usize,
    login_users: usize,
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let settings = Settings {
            scale: Scale {
                repositories: env_number("SCALE_REPOSITORIES", Scale::ISSUE_9.repositories)?,
                users: env_number("SCALE_USERS", Scale::ISSUE_9.users)?,
                grants: env_number("SCALE_GRANTS", Scale::ISSUE_9.grants)?,
                seed: env_number("SCALE_SEED", Scale::ISSUE_9.seed)?,
            },
            publishes: env_number("SCALE_PUBLISHES", 20)?,
            load_connections: env_number("SCALE_LOAD_CONNECTIONS", 4)?,
            load_interval: Duration::from_millis(env_number("SCALE_LOAD_INTERVAL_MS", 2)?),
            pause: Duration::from_millis(env_number("SCALE_PAUSE_MS", 1000)?),
            logins: env_number("SCALE_LOGINS", 1000)?,
            login_users: env_number("SCALE_LOGIN_USERS", 100)?,
        };
        if settings.scale.probe().is_none() || settings.publishes == 0 {
            return Err(
                "SCALE_REPOSITORIES, SCALE_USERS and SCALE_PUBLISHES must be > 0".to_owned(),
            );
        }
        Ok(settings)
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

// ---- Envoy's log ----------------------------------------------------------------------------

/// One line of Envoy's log this bench reads: when (unix ms), which thread, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Logged {
    at_ms: u64,
    thread: u64,
    event: Event,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    /// A worker swapped in generation `generation` after `took_ms`.
    Installed { generation: u64, took_ms: u64 },
    /// The fetcher wrote generation `generation` to shared data.
    Published { generation: u64 },
}

/// Parses Envoy's default log format, `[%Y-%m-%d %T.%e][%t][%l][%n] [%g:%#] %v` (local time),
/// for the filter's install and the fetcher's publish lines; `None` for any other line.
fn parse_log_line(line: &str) -> Option<Logged> {
    let rest = line.strip_prefix('[')?;
    let (stamp, rest) = rest.split_once("][")?;
    let (thread, rest) = rest.split_once(']')?;
    let naive = chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S%.3f").ok()?;
    let at = naive.and_local_timezone(chrono::Local).single()?;
    let at_ms = u64::try_from(at.timestamp_millis()).ok()?;
    let thread = thread.parse().ok()?;
    let event = if let Some((_, tail)) = rest.split_once("installed snapshot generation ") {
        let generation = generation_number(tail.split_whitespace().next()?)?;
        let took_ms = tail
            .rsplit_once(" in ")?
            .1
            .strip_suffix(" ms")?
            .trim()
            .parse()
            .ok()?;
        Event::Installed {
            generation,
            took_ms,
        }
    } else if let Some((_, tail)) = rest.split_once("published snapshot generation ") {
        Event::Published {
            generation: generation_number(tail.split_whitespace().next()?)?,
        }
    } else {
        return None;
    };
    Some(Logged {
        at_ms,
        thread,
        event,
    })
}

/// The number of a logged generation, `<epoch>.<number>`.
fn generation_number(word: &str) -> Option<u64> {
    word.rsplit_once('.')?.1.parse().ok()
}

/// The workers' install lines and the fetcher's publish line of `generation` so far. Lines
/// of Envoy's main thread (thread id = pid) are not workers'.
fn lines_of(envoy: &Envoy, generation: u64, main_thread: u64) -> (Vec<Logged>, Option<Logged>) {
    let mut installs = Vec::new();
    let mut published = None;
    for logged in envoy.process.log().lines().filter_map(parse_log_line) {
        match logged.event {
            Event::Installed { generation: g, .. }
                if g == generation && logged.thread != main_thread =>
            {
                installs.push(logged);
            }
            Event::Published { generation: g } if g == generation => published = Some(logged),
            _ => {}
        }
    }
    (installs, published)
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

    fn first_install_start_ms(&self) -> u64 {
        self.installs
            .iter()
            .map(|(_, at, took)| at.saturating_sub(*took).saturating_sub(self.started_ms))
            .min()
            .unwrap_or(u64::MAX)
    }
}

// ---- the snapshot stack ---------------------------------------------------------------------

struct Bench {
    sidecar: Sidecar,
    envoy: Envoy,
    main_thread: u64,
    token: String,
}

impl Bench {
    fn envoy_port(&self) -> u16 {
        self.envoy.params.listen_port
    }

    /// `GET /v2/<repository>/manifests/latest` as the probe user on a fresh connection.
    fn probe(&self, repository: &str) -> Result<u16, String> {
        let mut connection = Connection::open(self.envoy_port(), Duration::from_secs(10))?;
        let authorization = format!("Bearer {}", self.token);
        let response = connection.request(
            "GET",
            &format!("/v2/{repository}/manifests/latest"),
            &[("Authorization", &authorization), ("Accept", ACCEPT)],
            b"",
        )?;
        Ok(response.status)
    }

    /// `PUT /v1/snapshot` of `body`; the generation published and how long the answer took.
    fn put(&self, body: &[u8]) -> Result<(u64, Duration), String> {
        let mut connection = Connection::open(self.sidecar.port, Duration::from_secs(120))?;
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
            let (installs, published) = lines_of(&self.envoy, generation, self.main_thread);
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
                            Event::Installed { took_ms, .. } => Some((l.thread, l.at_ms, took_ms)),
                            Event::Published { .. } => None,
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

// ---- compression ----------------------------------------------------------------------------

/// Size and time of one compressor over the envelope.
struct Compressed {
    name: &'static str,
    bytes: usize,
    encode: Duration,
    decode: Duration,
}

fn run_filter(
    program: &str,
    args: &[&str],
    input: &Path,
    output: &Path,
) -> Result<Duration, String> {
    let started = Instant::now();
    let status = Command::new(program)
        .args(args)
        .stdin(std::fs::File::open(input).map_err(|err| format!("{}: {err}", input.display()))?)
        .stdout(
            std::fs::File::create(output).map_err(|err| format!("{}: {err}", output.display()))?,
        )
        .status()
        .map_err(|err| format!("run {program}: {err}"))?;
    if !status.success() {
        return Err(format!("{program} {args:?}: {status}"));
    }
    Ok(started.elapsed())
}

fn compress(
    name: &'static str,
    program: &str,
    level: &str,
    envelope: &Path,
) -> Result<Compressed, String> {
    let packed = envelope.with_extension(name);
    let unpacked = envelope.with_extension(format!("{name}.out"));
    let encode = run_filter(program, &[level, "-c"], envelope, &packed)?;
    let decode = run_filter(program, &["-d", "-c"], &packed, &unpacked)?;
    let bytes = std::fs::metadata(&packed)
        .map_err(|err| format!("{}: {err}", packed.display()))?
        .len();
    let same = std::fs::read(&unpacked).ok() == std::fs::read(envelope).ok();
    if !same {
        return Err(format!("{program} did not round-trip the envelope"));
    }
    Ok(Compressed {
        name,
        bytes: usize::try_from(bytes).unwrap_or(usize::MAX),
        encode,
        decode,
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

// ---- main -----------------------------------------------------------------------------------

fn run() -> Result<(), String> {
    let settings = Settings::from_env()?;
    let spec = settings.scale;
    let probe = spec.probe().ok_or("the spec has no probe pair")?;
    let load_at_start = procfs::load_average();
    let scenario = Scenario::new("bench-scale");
    let dir = scenario.path().to_path_buf();

    // Redis, the sidecar (the probe user in its htpasswd) and a small first snapshot.
    let redis = Redis::start(&dir, ports::free_port());
    let password = random_hex(12);
    // 20 × a 30 MB snapshot: keep Redis small; what it keeps is not measured.
    let extra = SidecarExtra {
        args: vec!["--keep-generations".to_owned(), "3".to_owned()],
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
    let params = EnvoyParams {
        listen_port: ports::free_port(),
        admin_port: ports::free_port(),
        sidecar_port: sidecar.port,
        registry_port: 0,
        tls_cert: PathBuf::new(),
        tls_key: PathBuf::new(),
        client_ca: PathBuf::new(),
        wasm: paths::wasm(),
        access_log_state: false,
        snapshot_read_secret: sidecar.files.read_secret.clone(),
        publisher_keys: vec![sidecar.files.publisher_public.clone()],
    };
    let launch = Launch {
        name: "envoy-scale".to_owned(),
        concurrency: u32::try_from(WORKERS).unwrap_or(2),
        log_level: "info".to_owned(),
        cpus: None,
        extra_vars: vec![("V2_ACTION", V2_DIRECT_RESPONSE.to_owned())],
    };
    let template = paths::repo_root().join("envoy/bench/envoy-request-gate.yaml");
    let mut envoy = Envoy::start_with(&dir, &template, params, &launch);
    envoy.wait_for_generation(small.generation, Duration::from_secs(30));
    let main_thread = u64::from(envoy.process.pid().ok_or("Envoy has no pid")?);

    // A token without an `access` claim (the snapshot alone decides), valid for the run.
    let signed = sidecar.token(&probe.user, &password, &probe.repository)?;
    let key = tokens::SidecarKey::load(&sidecar.files.signing_key);
    let mut mint = tokens::Mint::like_sidecar(&tokens::kid(&signed), &probe.user, &[]);
    mint.claims.access = None;
    mint.expires_at = tokens::now_secs() + 3000;
    let token = key.mint(&mint);
    let mut bench = Bench {
        sidecar,
        envoy,
        main_thread,
        token,
    };
    let probe_path = format!("/v2/{}/manifests/latest", probe.repository);
    match bench.probe(&probe.repository)? {
        200 => {}
        status => {
            return Err(format!(
                "probe {probe_path} answered {status} with the small snapshot"
            ))
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let rss_before = bench.rss_mib()?;

    // The large snapshot.
    eprintln!(
        "[bench-scale] generating {} repositories, {} users, {} grants (seed {})",
        spec.repositories, spec.users, spec.grants, spec.seed
    );
    let started = Instant::now();
    let base = scale::content(&spec);
    let body = serde_json::to_vec(&base).map_err(|err| format!("content JSON: {err}"))?;
    eprintln!(
        "[bench-scale] generated {} of content JSON in {:.1} s",
        mib(body.len()),
        started.elapsed().as_secs_f64()
    );
    let first = bench.publish(&body)?;
    eprintln!(
        "[bench-scale] first large install: generation {} enforced everywhere after {} ms",
        first.generation,
        first.enforced_ms()
    );
    std::thread::sleep(Duration::from_secs(2));
    let rss_first = bench.rss_mib()?;

    // The envelope on the wire, and what compression would make of it.
    let envelope = bench.sidecar.get_snapshot()?;
    if envelope.status != 200 {
        return Err(format!("GET /v1/snapshot: {}", envelope.summary()));
    }
    let envelope_path = dir.join("envelope.json");
    std::fs::write(&envelope_path, &envelope.body)
        .map_err(|err| format!("write {}: {err}", envelope_path.display()))?;
    let compressed = [
        compress("gzip", "gzip", "-6", &envelope_path)?,
        compress("zst", "zstd", "-3", &envelope_path)?,
    ];

    // The measured publishes, under load.
    let stop = AtomicBool::new(false);
    let mut publishes = Vec::new();
    let (port, token) = (bench.envoy_port(), bench.token.clone());
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
            for n in 1..=settings.publishes {
                if STOP.load(Ordering::SeqCst) {
                    return Err("interrupted".to_owned());
                }
                std::thread::sleep(settings.pause);
                let mut content = base.clone();
                let marker = scale::mark(&mut content, &spec, n as u64)
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
                    "[bench-scale] publish {n}/{}: generation {} PUT {} ms, fetched +{} ms, \
                     enforced everywhere +{} ms, installs {:?} ms",
                    settings.publishes,
                    publish.generation,
                    publish.publish_ms,
                    publish.fetched_ms.map_or("?".to_owned(), |v| v.to_string()),
                    publish.enforced_ms(),
                    publish.installs.iter().map(|i| i.2).collect::<Vec<_>>()
                );
                publishes.push(publish);
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
    let rss_after = bench.rss_mib()?;
    drop(bench);
    drop(redis);

    // Logins.
    let login_rows = [
        login_burst(
            &settings,
            "htpasswd, no cache (`--login-cache-ttl-secs 0`)",
            "0",
        ),
        login_burst(&settings, "htpasswd, positive cache (default 30 s)", "30"),
    ];

    // ---- figures ----
    let enforced: Vec<u64> = publishes.iter().map(Publish::enforced_ms).collect();
    let publish_ms: Vec<u64> = publishes.iter().map(|p| p.publish_ms).collect();
    let fetched: Vec<u64> = publishes.iter().filter_map(|p| p.fetched_ms).collect();
    let first_start: Vec<u64> = publishes
        .iter()
        .map(Publish::first_install_start_ms)
        .collect();
    let mut by_worker: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for publish in &publishes {
        for (thread, _, took) in &publish.installs {
            by_worker.entry(*thread).or_default().push(*took);
        }
    }
    let windows: Vec<(u64, u64)> = publishes
        .iter()
        .flat_map(|p| {
            p.installs
                .iter()
                .map(|(_, at, took)| (at.saturating_sub(*took), *at))
        })
        .collect();
    let split = split(&samples, &windows);
    if split.failed > 0 {
        return Err(format!(
            "{} load requests were not answered 200",
            split.failed
        ));
    }
    let steady_p99 = percentile(&split.steady, 99);
    let rebuild_p99 = percentile(&split.rebuilding, 99);
    let rebuild_max = percentile(&split.rebuilding, 100);
    let p = |values: &[u64], q: u32| ms_percentile(values, q);

    let n = publishes.len();
    let wire = envelope.body.len();
    let mut rows: Vec<Vec<String>> = vec![
        vec![
            "snapshot on the wire (envelope, JSON)".into(),
            format!("{} ({wire} bytes)", mib(wire)),
            "—".into(),
            "—".into(),
        ],
        vec![
            "sidecar publish (`PUT /v1/snapshot` answered), p50 / p99".into(),
            format!("{} / {} ms", p(&publish_ms, 50), p(&publish_ms, 99)),
            "—".into(),
            "—".into(),
        ],
        vec![
            "publish → fetcher published to shared data, p50 / p99".into(),
            format!("{} / {} ms", p(&fetched, 50), p(&fetched, 99)),
            "—".into(),
            "—".into(),
        ],
        vec![
            "publish → first worker starts installing, p50 / p99".into(),
            format!("{} / {} ms", p(&first_start, 50), p(&first_start, 99)),
            "—".into(),
            "—".into(),
        ],
        vec![
            format!("publish → enforced on every worker, p50 / p99 (n={n})"),
            format!("{} / {} ms", p(&enforced, 50), p(&enforced, 99)),
            format!("p99 < {TARGET_ENFORCED_MS} ms"),
            verdict(p(&enforced, 99) < TARGET_ENFORCED_MS).into(),
        ],
    ];
    for (i, (_, took)) in by_worker.iter().enumerate() {
        rows.push(vec![
            format!(
                "install in wasm (decode + validate + index), worker {}, p50 / p99 / max",
                i + 1
            ),
            format!("{} / {} / {} ms", p(took, 50), p(took, 99), p(took, 100)),
            format!("< {TARGET_INSTALL_MS} ms"),
            verdict(p(took, 100) < TARGET_INSTALL_MS).into(),
        ]);
    }
    rows.push(vec![
        "first install of the large snapshot (from a small one), slowest worker".into(),
        format!(
            "{} ms (enforced everywhere after {} ms)",
            first.installs.iter().map(|i| i.2).max().unwrap_or(0),
            first.enforced_ms()
        ),
        format!("< {TARGET_INSTALL_MS} ms"),
        verdict(first.installs.iter().all(|i| i.2 < TARGET_INSTALL_MS)).into(),
    ]);
    rows.push(vec![
        "Envoy RSS: small snapshot → first large → after the publishes".into(),
        format!("{rss_before:.0} → {rss_first:.0} → {rss_after:.0} MiB"),
        "reported".into(),
        "—".into(),
    ]);
    rows.push(vec![
        format!("Envoy RSS per worker, (after − small) / {WORKERS}"),
        format!(
            "{:.0} MiB after the first, {:.0} MiB after the publishes",
            (rss_first - rss_before) / WORKERS as f64,
            (rss_after - rss_before) / WORKERS as f64
        ),
        "reported".into(),
        "—".into(),
    ]);
    rows.push(vec![
        format!(
            "request latency, steady (n={}) p50 / p99",
            split.steady.len()
        ),
        format!(
            "{} / {} ms",
            ms(percentile(&split.steady, 50)),
            ms(steady_p99)
        ),
        "—".into(),
        "—".into(),
    ]);
    rows.push(vec![
        format!(
            "request latency during a rebuild (n={}) p99 / max",
            split.rebuilding.len()
        ),
        format!("{} / {} ms", ms(rebuild_p99), ms(rebuild_max)),
        format!("≤ 2 × steady p99 = {} ms", ms(steady_p99 * 2)),
        verdict(rebuild_max <= steady_p99 * 2).into(),
    ]);
    let snapshot_table = markdown_table(&["figure", "measured", "target", ""], &rows);

    let mut compression_rows = vec![vec![
        "JSON (as sent)".to_owned(),
        mib(wire),
        "1.00".to_owned(),
        "—".to_owned(),
        "—".to_owned(),
    ]];
    for c in &compressed {
        compression_rows.push(vec![
            c.name.to_owned(),
            mib(c.bytes),
            format!("{:.2}", c.bytes as f64 / wire.max(1) as f64),
            format!("{} ms", c.encode.as_millis()),
            format!("{} ms", c.decode.as_millis()),
        ]);
    }
    let compression_table = markdown_table(
        &["encoding", "size", "× JSON", "encode (CLI)", "decode (CLI)"],
        &compression_rows,
    );

    let login_table = markdown_table(
        &[
            "backend",
            "logins",
            "answered 200",
            "logins/s",
            "p50",
            "p99",
            "max",
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
                    if row.errors.is_empty() {
                        "0".to_owned()
                    } else {
                        format!("{:?}", row.errors)
                    },
                ]
            })
            .collect::<Vec<_>>(),
    );

    let commit = context::commit();
    let s = &settings;
    let context = format!(
        "- commit: {commit}\n- date: {}\n- CPU: {} ({} CPUs online); kernel {}\n\
         - load average (1/5/15 min) at start: {load_at_start}; at end: {}\n\
         - snapshot: {} repositories, {} users, {} grants (uniform, seed {}), {} of content \
         JSON; {} publishes, each {} ms after the previous was enforced\n\
         - load during the publishes: {} keep-alive connections, one request each every {} ms \
         (`GET {probe_path}`, cached bearer token, `direct_response` 200)\n\
         - Envoy `--concurrency {WORKERS}`, not pinned; the sidecar, Redis, the load and the \
         generator share the same CPUs\n\
         - logins: {} at once (curl, `--parallel`), {} users cycled, bcrypt cost 10, through \
         Envoy's TLS listener to `/v2/token`\n",
        unix_date(),
        procfs::cpu_model(),
        std::thread::available_parallelism().map_or(0, usize::from),
        procfs::kernel(),
        procfs::load_average(),
        spec.repositories,
        spec.users,
        spec.grants,
        spec.seed,
        mib(body.len()),
        s.publishes,
        s.pause.as_millis(),
        s.load_connections,
        s.load_interval.as_millis(),
        s.logins,
        s.login_users,
    );
    let document = format!(
        "# `make bench-scale`: issue 9's scale measurement\n\n\
         ## Snapshot of {} repositories, {} users, {} grants\n\n{snapshot_table}\n\
         ## Compression of the envelope (measured, not used)\n\n{compression_table}\n\
         ## {} concurrent `/v2/token` logins\n\n{login_table}\n{context}",
        spec.repositories, spec.users, spec.grants, s.logins
    );
    println!("\n{document}");
    let out = paths::repo_root().join(RESULTS);
    std::fs::write(&out, &document).map_err(|err| format!("write {}: {err}", out.display()))?;
    eprintln!("[bench-scale] written to {}", out.display());
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

    fn local_ms(stamp: &str) -> u64 {
        let naive = chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S%.3f").unwrap();
        u64::try_from(
            naive
                .and_local_timezone(chrono::Local)
                .single()
                .unwrap()
                .timestamp_millis(),
        )
        .unwrap()
    }

    #[test]
    fn install_and_publish_lines_are_parsed_and_others_ignored() {
        let install = "[2026-11-30 17:01:02.345][4242][info][wasm] [source/extensions/common/wasm/context.cc:1192] wasm log registry_gate registry_gate_filter registry_gate: installed snapshot generation 54bfcfe4.17 (31457280 bytes) in 412 ms";
        assert_eq!(
            parse_log_line(install),
            Some(Logged {
                at_ms: local_ms("2026-11-30 17:01:02.345"),
                thread: 4242,
                event: Event::Installed {
                    generation: 17,
                    took_ms: 412
                }
            })
        );
        let published = "[2026-11-30 17:01:01.900][77][info][wasm] [source/extensions/common/wasm/context.cc:1192] wasm log registry_gate_fetcher: published snapshot generation 54bfcfe4.17 to workers";
        assert_eq!(
            parse_log_line(published).map(|l| l.event),
            Some(Event::Published { generation: 17 })
        );
        for other in [
            "[2026-11-30 17:01:01.900][77][info][main] [source/server/server.cc:1] starting main dispatch loop",
            "[access] 2026-11-30T17:01:01.900Z HTTP/1.1 GET /v2/ 200",
            "installed snapshot generation e.3 (1 bytes) in 2 ms",
            "[2026-11-30 17:01:01.900][77][info][wasm] installed snapshot generation 3 (1 bytes) in 2 ms",
            "[2026-11-30 17:01:01.900][x][info][wasm] installed snapshot generation e.3 (1 bytes) in 2 ms",
        ] {
            assert_eq!(parse_log_line(other), None, "{other}");
        }
    }

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
    fn enforced_is_the_last_worker_and_first_start_the_earliest() {
        let publish = Publish {
            generation: 3,
            started_ms: 1_000,
            publish_ms: 80,
            fetched_ms: Some(300),
            installs: vec![(1, 1_700, 400), (2, 1_650, 300)],
        };
        assert_eq!(publish.enforced_ms(), 700);
        assert_eq!(publish.first_install_start_ms(), 300);
    }
}
