//! `make bench`: what registry-gate costs on the request path, side by side with the price of
//! wasm itself and with the alternatives a skeptical Envoy engineer would reach for.
//!
//! Every row answers the same `GET /v2/team/private/manifests/latest` with a valid bearer
//! token, through its own Envoy (`--concurrency 1` pinned to one CPU, `taskset -c 0`), driven
//! by wrk on the other CPU (`taskset -c 1`, where Redis and the registry run too). The sidecar
//! shares Envoy's CPU: in ext_authz mode it makes the decision, so its work comes out of the
//! same budget as the filter's, and its CPU per request is reported beside Envoy's. Rows, by
//! the issue's numbering:
//!
//! 1. **Envoy, no filter** (`envoy/bench/envoy-request-nofilter.yaml`): the floor.
//! 2. **no-op Rust wasm** (`envoy-request-noop.yaml`, `bench/noop-filter`): the price of wasm;
//!    and the **native floor** (`envoy-request-native.yaml`, `bench/native-floor`): an Envoy
//!    dynamic module that reads `authorization` and `:path` and sets one header, deciding
//!    nothing — what a native registry-gate cannot go below.
//! 3. **registry-gate, cached token** (`envoy-request-gate.yaml`): the steady state of a pull.
//! 4. **registry-gate, first use** of every token, per algorithm: wrk sends the next token of
//!    a pool larger than the filter's token cache (FIFO), so each request verifies anew.
//! 5. **Envoy `jwt_authn`** (`envoy-request-jwtauthn.yaml`) with the same tokens per
//!    algorithm: with its JWT cache and one token, without it and one token, and without it
//!    with the pool (a fresh token per request) — the C++ anchor for the token check alone.
//! 6. **ext_authz** (`envoy-request-extauthz.yaml`) calling the sidecar's check endpoint,
//!    which decides with the same core: the architecture most teams would reach for.
//! 7. Rows 1 and 3 again with the route going to a real docker-registry upstream.
//! 8. Row 3 with a large snapshot installed (`BENCH_LARGE_*`, default 100k repositories,
//!    10k users, 1M grants, from [`registry_gate_bench::scale`]).
//!
//! After a warm-up, `BENCH_ROUNDS` rounds run every row for `BENCH_SECONDS`, in an order that
//! rotates each round, so machine noise hits all alike. Per run: requests/s and p50/p99
//! (wrk), Envoy CPU per request (utime+stime of `/proc/<pid>/stat` over the requests Envoy
//! answered), VmRSS, and for registry-gate the host calls per request. Medians over rounds
//! with min–max; ratios are taken within a round, then summarised, and the targets table puts
//! each ratio next to its bound. `BENCH_ROWS=gate,noop,...` runs a subset (by row id).
//!
//! It must never report a figure built on failed requests: any socket error, non-2xx answer,
//! 4xx/5xx Envoy counted, or answer count Envoy does not confirm (beyond the at most one
//! request per connection wrk leaves unanswered when it stops) is listed and the exit status
//! is 1 (no results file is written). It must never leave a process behind: the harness
//! guards stop every server on return or panic (`make bench` builds this launcher with the
//! dev profile, which unwinds).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use registry_gate_bench::report::{cell, markdown_table, Spread};
use registry_gate_bench::scale::{self, Scale};
use registry_gate_bench::{context, env_number, procfs, wrk, V2_DIRECT_RESPONSE};
use registry_gate_core::token::Algorithm;
use registry_gate_tests::envoy::{ext_authz_config, Envoy, EnvoyParams, Launch};
use registry_gate_tests::http::Request;
use registry_gate_tests::issuers::Issuer;
use registry_gate_tests::oci::{self, MANIFEST_MEDIA_TYPE};
use registry_gate_tests::redis::Redis;
use registry_gate_tests::registry::Registry;
use registry_gate_tests::sidecar::{Sidecar, SidecarExtra, ISSUER, SERVICE};
use registry_gate_tests::skopeo::Skopeo;
use registry_gate_tests::tokens::{now_secs, Mint};
use registry_gate_tests::{paths, ports, Auth, Scenario};

const USER: &str = "alice";
const REPOSITORY: &str = "team/private";
const TAG: &str = "latest";
const PATH: &str = "/v2/team/private/manifests/latest";
/// Where the table is written, relative to the repository root.
const RESULTS: &str = "bench/results/latest.md";
/// Envoy stats read around every run (admin `/stats?filter=`).
const STATS_FILTER: &str = r"^http\.bench\.downstream_rq_(total|2xx|4xx|5xx)$|host_calls$";
const RQ_TOTAL: &str = "http.bench.downstream_rq_total";
const RQ_2XX: &str = "http.bench.downstream_rq_2xx";
const RQ_4XX: &str = "http.bench.downstream_rq_4xx";
const RQ_5XX: &str = "http.bench.downstream_rq_5xx";
/// Suffix of the filter's counter (Envoy may prefix it, e.g. `wasmcustom.`).
const HOST_CALLS_SUFFIX: &str = "registry_gate.host_calls";
/// The algorithm the sidecar mints (`registry-gate-sidecar keygen`): its first-use row is
/// held to the tighter bound.
const SIDECAR_ALGORITHM: Algorithm = Algorithm::ES256;
/// The algorithms rows 4 and 5 cover.
const ALGORITHMS: [Algorithm; 3] = [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256];
/// Workers of the memory comparison's Envoys.
const MEMORY_WORKERS: u32 = 4;
/// `V2_ACTION` of the rows with an upstream (the others: [`V2_DIRECT_RESPONSE`]).
const UPSTREAM: &str = "route: { cluster: registry, timeout: 30s }";

/// Set by Ctrl-C / SIGTERM: stop after the current run.
static STOP: AtomicBool = AtomicBool::new(false);

// ---- settings -------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Settings {
    rounds: usize,
    seconds: u64,
    warmup_seconds: u64,
    connections: u32,
    envoy_cpus: String,
    load_cpus: String,
    /// Tokens per first-use pool: above the filter's 4096-entry token cache.
    pool: usize,
    /// Row ids to run; empty = all.
    only: Vec<String>,
    /// Row 8's snapshot (`BENCH_LARGE_REPOSITORIES`, `_USERS`, `_GRANTS`).
    large: Scale,
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let settings = Settings {
            rounds: env_number("BENCH_ROUNDS", 5)?,
            seconds: env_number("BENCH_SECONDS", 4)?,
            warmup_seconds: env_number("BENCH_WARMUP_SECONDS", 1)?,
            connections: env_number("BENCH_CONNECTIONS", 32)?,
            envoy_cpus: std::env::var("BENCH_ENVOY_CPUS").unwrap_or_else(|_| "0".to_owned()),
            load_cpus: std::env::var("BENCH_LOAD_CPUS").unwrap_or_else(|_| "1".to_owned()),
            pool: env_number("BENCH_TOKEN_POOL", 6000)?,
            only: std::env::var("BENCH_ROWS")
                .map(|rows| {
                    rows.split(',')
                        .map(str::trim)
                        .filter(|r| !r.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            large: Scale {
                repositories: env_number("BENCH_LARGE_REPOSITORIES", Scale::ISSUE_9.repositories)?,
                users: env_number("BENCH_LARGE_USERS", Scale::ISSUE_9.users)?,
                grants: env_number("BENCH_LARGE_GRANTS", Scale::ISSUE_9.grants)?,
                seed: Scale::ISSUE_9.seed,
            },
        };
        if settings.rounds == 0 || settings.seconds == 0 || settings.connections == 0 {
            return Err("BENCH_ROUNDS, BENCH_SECONDS and BENCH_CONNECTIONS must be > 0".into());
        }
        if settings.pool <= 4096 {
            return Err(format!(
                "BENCH_TOKEN_POOL={} must exceed the filter's 4096-entry token cache, or \
                 tokens would be reused from it",
                settings.pool
            ));
        }
        Ok(settings)
    }
}

// ---- rows -----------------------------------------------------------------------------------

/// One Envoy configuration (several rows may share one Envoy: they differ in tokens only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Proxy {
    NoFilter,
    Noop,
    /// The native floor module (bench/native-floor).
    NativeFloor,
    Gate,
    JwtAuthnCache,
    JwtAuthn,
    ExtAuthz,
    NoFilterRegistry,
    GateRegistry,
    /// registry-gate fetching from its own sidecar, whose snapshot is large.
    GateLarge,
    /// registry-gate's native build (filter/native).
    Native,
    /// The native build fetching from the large snapshot's sidecar.
    NativeLarge,
}

impl Proxy {
    const ALL: [Proxy; 12] = [
        Proxy::NoFilter,
        Proxy::Noop,
        Proxy::NativeFloor,
        Proxy::Gate,
        Proxy::JwtAuthnCache,
        Proxy::JwtAuthn,
        Proxy::ExtAuthz,
        Proxy::NoFilterRegistry,
        Proxy::GateRegistry,
        Proxy::GateLarge,
        Proxy::Native,
        Proxy::NativeLarge,
    ];

    fn name(self) -> &'static str {
        match self {
            Proxy::NoFilter => "envoy-nofilter",
            Proxy::Noop => "envoy-noop",
            Proxy::NativeFloor => "envoy-native-floor",
            Proxy::Gate => "envoy-gate",
            Proxy::JwtAuthnCache => "envoy-jwtauthn-cache",
            Proxy::JwtAuthn => "envoy-jwtauthn",
            Proxy::ExtAuthz => "envoy-extauthz",
            Proxy::NoFilterRegistry => "envoy-nofilter-registry",
            Proxy::GateRegistry => "envoy-gate-registry",
            Proxy::GateLarge => "envoy-gate-large",
            Proxy::Native => "envoy-native",
            Proxy::NativeLarge => "envoy-native-large",
        }
    }

    fn template(self) -> PathBuf {
        let file = match self {
            Proxy::NoFilter | Proxy::NoFilterRegistry => "envoy-request-nofilter.yaml",
            Proxy::Noop => "envoy-request-noop.yaml",
            Proxy::NativeFloor => "envoy-request-native.yaml",
            Proxy::Gate | Proxy::GateRegistry | Proxy::GateLarge => "envoy-request-gate.yaml",
            Proxy::Native | Proxy::NativeLarge => "envoy-request-gate-native.yaml",
            Proxy::JwtAuthnCache | Proxy::JwtAuthn => "envoy-request-jwtauthn.yaml",
            Proxy::ExtAuthz => "envoy-request-extauthz.yaml",
        };
        paths::repo_root().join("envoy/bench").join(file)
    }

    fn v2_action(self) -> &'static str {
        match self {
            Proxy::NoFilterRegistry | Proxy::GateRegistry => UPSTREAM,
            _ => V2_DIRECT_RESPONSE,
        }
    }

    /// Whether it runs registry-gate (waits for the snapshot; reports host calls).
    fn is_gate(self) -> bool {
        matches!(
            self,
            Proxy::Gate
                | Proxy::GateRegistry
                | Proxy::GateLarge
                | Proxy::Native
                | Proxy::NativeLarge
        )
    }

    /// Whether it fetches from the large snapshot's sidecar.
    fn is_large(self) -> bool {
        matches!(self, Proxy::GateLarge | Proxy::NativeLarge)
    }
}

/// The token a row sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Credential {
    /// One token from the sidecar's `/v2/token` (EdDSA), fresh each round.
    Sidecar,
    /// One token of the bench's issuer for the algorithm, fresh each round.
    Same(Algorithm),
    /// The next token of the algorithm's pool on every request.
    Fresh(Algorithm),
}

#[derive(Debug, Clone)]
struct Row {
    /// The issue's row number.
    number: u8,
    id: String,
    label: String,
    proxy: Proxy,
    credential: Credential,
}

fn alg_id(alg: Algorithm) -> String {
    alg.name().to_ascii_lowercase()
}

fn all_rows() -> Vec<Row> {
    let row = |number, id: &str, label: &str, proxy, credential| Row {
        number,
        id: id.to_owned(),
        label: label.to_owned(),
        proxy,
        credential,
    };
    let mut rows = vec![
        row(
            1,
            "nofilter",
            "Envoy, no filter",
            Proxy::NoFilter,
            Credential::Sidecar,
        ),
        row(
            2,
            "noop",
            "no-op Rust wasm filter",
            Proxy::Noop,
            Credential::Sidecar,
        ),
        row(
            2,
            "native-floor",
            "native floor: a dynamic module reading two headers, setting one",
            Proxy::NativeFloor,
            Credential::Sidecar,
        ),
        row(
            3,
            "gate",
            "registry-gate, cached token",
            Proxy::Gate,
            Credential::Sidecar,
        ),
        row(
            3,
            "native",
            "registry-gate native, cached token",
            Proxy::Native,
            Credential::Sidecar,
        ),
    ];
    for alg in ALGORITHMS {
        let (name, id) = (alg.name(), alg_id(alg));
        rows.push(row(
            4,
            &format!("gate-fresh-{id}"),
            &format!("registry-gate, first use, {name}"),
            Proxy::Gate,
            Credential::Fresh(alg),
        ));
        rows.push(row(
            4,
            &format!("native-fresh-{id}"),
            &format!("registry-gate native, first use, {name}"),
            Proxy::Native,
            Credential::Fresh(alg),
        ));
    }
    for alg in ALGORITHMS {
        let (name, id) = (alg.name(), alg_id(alg));
        for (prefix, what, proxy, credential) in [
            (
                "jwt-cache",
                "jwt_authn + cache, same token",
                Proxy::JwtAuthnCache,
                Credential::Same(alg),
            ),
            (
                "jwt",
                "jwt_authn, same token",
                Proxy::JwtAuthn,
                Credential::Same(alg),
            ),
            (
                "jwt-fresh",
                "jwt_authn, fresh token",
                Proxy::JwtAuthn,
                Credential::Fresh(alg),
            ),
        ] {
            rows.push(row(
                5,
                &format!("{prefix}-{id}"),
                &format!("{what}, {name}"),
                proxy,
                credential,
            ));
        }
    }
    rows.push(row(
        6,
        "extauthz",
        "ext_authz → the sidecar's check, cached token",
        Proxy::ExtAuthz,
        Credential::Sidecar,
    ));
    rows.extend([
        row(
            7,
            "nofilter-registry",
            "Envoy, no filter → registry",
            Proxy::NoFilterRegistry,
            Credential::Sidecar,
        ),
        row(
            7,
            "gate-registry",
            "registry-gate, cached → registry",
            Proxy::GateRegistry,
            Credential::Sidecar,
        ),
        // A bench issuer's token: the large snapshot comes from its own sidecar, and once
        // cached a token costs the same whatever signed it.
        row(
            8,
            "gate-large",
            "registry-gate, cached token, large snapshot",
            Proxy::GateLarge,
            Credential::Same(Algorithm::ES256),
        ),
        row(
            8,
            "native-large",
            "registry-gate native, cached token, large snapshot",
            Proxy::NativeLarge,
            Credential::Same(Algorithm::ES256),
        ),
    ]);
    rows
}

// ---- one run --------------------------------------------------------------------------------

/// What one row did in one round.
#[derive(Debug, Clone, Copy)]
struct Run {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_us_per_request: f64,
    /// The sidecar's CPU over the run per request: its checks in ext_authz mode, ~0 else.
    sidecar_cpu_us_per_request: f64,
    rss_mib: f64,
    /// `None` when the filter exports no `host_calls` counter (or for the other proxies).
    host_calls_per_request: Option<f64>,
}

/// What a row's requests carry: one token, or a pool file for wrk's pool hooks.
enum Sending<'a> {
    Token(&'a str),
    Pool(&'a Path),
}

struct Bench {
    settings: Settings,
    wrk: PathBuf,
    script: PathBuf,
    pool_script: PathBuf,
    ticks_per_sec: u64,
}

impl Bench {
    fn url(envoy: &Envoy) -> String {
        format!("http://127.0.0.1:{}{PATH}", envoy.params.listen_port)
    }

    /// One request with curl: it must be 200 (also puts the token into the filter's cache).
    fn check_one(envoy: &Envoy, token: &str, label: &str) -> Result<(), String> {
        let resp = Request::get(Bench::url(envoy))
            .header("Accept", MANIFEST_MEDIA_TYPE)
            .auth(Auth::Bearer(token))
            .timeout(Duration::from_secs(5))
            .send()?;
        if resp.status == 200 {
            Ok(())
        } else {
            Err(format!(
                "{label}: expected 200 for GET {PATH} with alice's token: {}",
                resp.summary()
            ))
        }
    }

    fn load(
        &self,
        envoy: &Envoy,
        sending: &Sending<'_>,
        seconds: u64,
    ) -> Result<wrk::Summary, String> {
        let url = Bench::url(envoy);
        let (script, headers, args) = match sending {
            Sending::Token(token) => (
                &self.script,
                vec![
                    ("Authorization", format!("Bearer {token}")),
                    ("Accept", MANIFEST_MEDIA_TYPE.to_owned()),
                ],
                Vec::new(),
            ),
            Sending::Pool(pool) => (
                &self.pool_script,
                Vec::new(),
                vec![pool.display().to_string(), MANIFEST_MEDIA_TYPE.to_owned()],
            ),
        };
        wrk::run(&wrk::Load {
            wrk: &self.wrk,
            script,
            cpus: &self.settings.load_cpus,
            connections: self.settings.connections,
            seconds,
            headers: &headers,
            url: &url,
            script_args: &args,
        })
    }

    /// A measured run; `Err` when any request failed or a figure cannot be read.
    /// `sidecar`: the sidecar's pid, whose CPU time over the run is reported per request too
    /// (the decision's cost in ext_authz mode).
    fn measure(
        &self,
        envoy: &mut Envoy,
        sending: &Sending<'_>,
        sidecar: u32,
    ) -> Result<Run, String> {
        let pid = envoy.process.pid().ok_or("Envoy has no pid")?;
        let before = envoy.stats(STATS_FILTER)?;
        let ticks_before = procfs::cpu_ticks(pid)?;
        let sidecar_before = procfs::cpu_ticks(sidecar)?;
        let load = self.load(envoy, sending, self.settings.seconds)?;
        let ticks_after = procfs::cpu_ticks(pid)?;
        let sidecar_after = procfs::cpu_ticks(sidecar)?;
        let after = envoy.stats(STATS_FILTER)?;
        let rss_kib = procfs::vm_rss_kib(pid)?;

        let delta = |name: &str| -> Result<u64, String> {
            let b = before.get(name).copied().unwrap_or(0);
            let a = after
                .get(name)
                .copied()
                .ok_or_else(|| format!("Envoy lists no stat {name}"))?;
            Ok(a.saturating_sub(b))
        };
        let total = delta(RQ_TOTAL)?;
        let ok = delta(RQ_2XX)?;
        // Envoy creates the 4xx/5xx counters with the first such answer: absent = none.
        let refused = delta(RQ_4XX).unwrap_or(0) + delta(RQ_5XX).unwrap_or(0);
        // wrk stops with up to one request in flight per connection: Envoy counted those
        // requests but never answered them. Anything beyond that is a failure.
        let cut_off = total.saturating_sub(ok);
        if load.socket_errors > 0
            || load.status_errors > 0
            || refused > 0
            || cut_off > u64::from(self.settings.connections)
        {
            return Err(format!(
                "failed requests: wrk socket errors {}, non-2xx {}; Envoy counted {total} \
                 requests, {ok} answered 2xx, {refused} 4xx/5xx",
                load.socket_errors, load.status_errors
            ));
        }
        if ok < load.requests || ok == 0 {
            return Err(format!(
                "Envoy answered {ok} requests 2xx but wrk received {} answers",
                load.requests
            ));
        }
        let micros = |ticks: u64| ticks as f64 * 1e6 / self.ticks_per_sec as f64;
        let cpu_us = micros(ticks_after.saturating_sub(ticks_before));
        let sidecar_us = micros(sidecar_after.saturating_sub(sidecar_before));
        let host_calls = sum_suffix(&after, HOST_CALLS_SUFFIX).map(|a| {
            let b = sum_suffix(&before, HOST_CALLS_SUFFIX).unwrap_or(0);
            a.saturating_sub(b) as f64 / ok as f64
        });
        Ok(Run {
            rps: load.requests_per_sec(),
            p50_ms: load.p50_us as f64 / 1000.0,
            p99_ms: load.p99_us as f64 / 1000.0,
            cpu_us_per_request: cpu_us / ok as f64,
            sidecar_cpu_us_per_request: sidecar_us / ok as f64,
            rss_mib: rss_kib as f64 / 1024.0,
            host_calls_per_request: host_calls,
        })
    }
}

/// The sum of every stat whose name ends with `suffix`; `None` if there is none.
fn sum_suffix(stats: &BTreeMap<String, u64>, suffix: &str) -> Option<u64> {
    let mut matching = stats
        .iter()
        .filter(|(name, _)| name.ends_with(suffix))
        .peekable();
    matching.peek()?;
    Some(matching.map(|(_, v)| v).sum())
}

// ---- the stack ------------------------------------------------------------------------------

/// `taskset -a -p -c <cpus> <pid>`: moves every thread of a running process.
/// A bench Envoy's parameters, fetching from `fetch_from`.
fn params_for(fetch_from: &Sidecar, registry_port: u16, wasm: &Path) -> EnvoyParams {
    EnvoyParams {
        listen_port: ports::free_port(),
        admin_port: ports::free_port(),
        sidecar_port: fetch_from.port,
        registry_port,
        // No TLS listener in the bench configs.
        tls_cert: PathBuf::new(),
        tls_key: PathBuf::new(),
        client_ca: PathBuf::new(),
        wasm: wasm.to_path_buf(),
        access_log_state: false,
        snapshot_read_secret: fetch_from.files.read_secret.clone(),
        publisher_keys: vec![fetch_from.files.publisher_public.clone()],
    }
}

/// Envoy's memory with the large index: each build at `--concurrency 4` (`MEMORY_WORKERS`),
/// once with the small snapshot and once with the large one installed; the difference over
/// the index's size is how many copies of it the process holds (the wasm build: one per
/// worker VM, the main thread's and the fetcher's; the native build: one). Beside RSS, the
/// bytes Envoy's allocator (tcmalloc) holds allocated (its admin `/memory`): the native
/// module allocates there, so the growth of `allocated` is what it keeps live, while RSS
/// also counts pages freed but not yet returned (the fetch's buffers); a wasm VM's linear
/// memory is mapped outside tcmalloc and shows in RSS only.
fn memory(
    dir: &Path,
    small: (&Sidecar, u64),
    large: (&Sidecar, u64),
    registry_port: u16,
    wasm: &Path,
) -> Result<String, String> {
    let mut rows = Vec::new();
    for (build, proxy) in [("wasm", Proxy::Gate), ("native", Proxy::Native)] {
        let mut rss = Vec::new();
        let mut allocated = Vec::new();
        let mut index_bytes = 0usize;
        for (size, (fetch_from, generation)) in [("small", small), ("large", large)] {
            let launch = Launch {
                name: format!("envoy-memory-{build}-{size}"),
                concurrency: MEMORY_WORKERS,
                log_level: "info".to_owned(),
                cpus: None,
                extra_vars: vec![("V2_ACTION", V2_DIRECT_RESPONSE.to_owned())],
                ..Launch::default()
            };
            let params = params_for(fetch_from, registry_port, wasm);
            let mut envoy = Envoy::start_with(dir, &proxy.template(), params, &launch);
            envoy.wait_for_generation(generation, Duration::from_secs(300));
            // Every worker takes it in on its own timer: give them time, then read.
            std::thread::sleep(Duration::from_secs(3));
            let pid = envoy.process.pid().ok_or("Envoy has no pid")?;
            rss.push(procfs::vm_rss_kib(pid)? as f64 / 1024.0);
            allocated.push(allocated_bytes(&envoy.admin("/memory")?)? as f64 / MIB);
            if size == "large" {
                index_bytes = installed_bytes(&envoy.process.log(), generation)
                    .ok_or("no install line of the large generation")?;
            }
        }
        let (small_rss, large_rss, small_allocated, large_allocated) =
            match (rss.as_slice(), allocated.as_slice()) {
                ([small, large], [small_allocated, large_allocated]) => {
                    (*small, *large, *small_allocated, *large_allocated)
                }
                _ => return Err("two readings of each expected".to_owned()),
            };
        let index_mib = index_bytes as f64 / MIB;
        let grown = large_rss - small_rss;
        let allocated_grown = large_allocated - small_allocated;
        rows.push(vec![
            build.to_owned(),
            format!("{small_rss:.1}"),
            format!("{large_rss:.1}"),
            format!("{grown:.1}"),
            format!("{index_mib:.1}"),
            format!("{:.1}", grown / index_mib),
            format!("{allocated_grown:.1}"),
            format!("{:.1}", allocated_grown / index_mib),
        ]);
    }
    Ok(markdown_table(
        &[
            "build (`--concurrency 4`)",
            "RSS, small snapshot (MiB)",
            "RSS, large index (MiB)",
            "grown (MiB)",
            "index (MiB)",
            "copies (grown ÷ index)",
            "tcmalloc allocated, grown (MiB)",
            "live copies (allocated grown ÷ index)",
        ],
        &rows,
    ))
}

const MIB: f64 = 1024.0 * 1024.0;

/// The `allocated` bytes of Envoy's admin `/memory` answer (a JSON object whose numbers are
/// strings, as Envoy's protobuf JSON writes 64-bit integers).
fn allocated_bytes(memory: &str) -> Result<u64, String> {
    let value: serde_json::Value =
        serde_json::from_str(memory).map_err(|err| format!("admin /memory: {err}"))?;
    let allocated = value
        .get("allocated")
        .ok_or("admin /memory: no `allocated`")?;
    allocated
        .as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| allocated.as_u64())
        .ok_or_else(|| format!("admin /memory: `allocated` is {allocated}"))
}

/// The size an `installed snapshot generation <epoch>.<generation> (N bytes)` line gives.
fn installed_bytes(log: &str, generation: u64) -> Option<usize> {
    log.lines().find_map(|line| {
        let (_, tail) = line.split_once("installed snapshot generation ")?;
        let (name, tail) = tail.split_once(" (")?;
        let number: u64 = name.rsplit_once('.')?.1.parse().ok()?;
        if number != generation {
            return None;
        }
        tail.split_once(" bytes)")?.0.parse().ok()
    })
}

fn pin(pid: Option<u32>, cpus: &str, what: &str) -> Result<(), String> {
    let pid = pid.ok_or_else(|| format!("{what} has no pid"))?;
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .map_err(|err| format!("run taskset for {what}: {err}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("taskset -p -c {cpus} {what} ({pid}): {status}"))
    }
}

/// Alice's claims, as the sidecar would mint them, valid for `lifetime` seconds from a minute
/// ago.
fn alice(lifetime: i64) -> Mint {
    let mut mint = Mint::like_sidecar("", USER, &[REPOSITORY]);
    let now = now_secs();
    mint.issued_at = now - 60;
    mint.not_before = now - 60;
    mint.expires_at = now - 60 + lifetime;
    mint
}

/// Writes `count` tokens of `issuer`, each with its own `jti`, one per line; the first one
/// (a row is checked with it before its run).
fn write_pool(issuer: &Issuer, count: usize, path: &Path) -> Result<String, String> {
    let mut text = String::new();
    for _ in 0..count {
        // Under the filter's 3600 s lifetime cap, and valid for the whole bench.
        let mut mint = alice(3000);
        mint.claims.jti = Some(registry_gate_tests::sidecar::random_hex(16));
        text.push_str(&issuer.mint(&mint));
        text.push('\n');
    }
    let first = text.lines().next().unwrap_or_default().to_owned();
    std::fs::write(path, text).map_err(|err| format!("write {}: {err}", path.display()))?;
    Ok(first)
}

fn locate_wrk() -> Result<PathBuf, String> {
    let path = std::env::var_os("WRK_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/wrk"));
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "wrk not found at {} (override with $WRK_BIN); run `make deps`",
            path.display()
        ))
    }
}

// ---- main -----------------------------------------------------------------------------------

fn run() -> Result<(), String> {
    let settings = Settings::from_env()?;
    let rows: Vec<Row> = all_rows()
        .into_iter()
        .filter(|row| settings.only.is_empty() || settings.only.contains(&row.id))
        .collect();
    if rows.is_empty() {
        return Err(format!(
            "BENCH_ROWS={:?} names no row; rows: {}",
            settings.only.join(","),
            all_rows()
                .iter()
                .map(|r| r.id.clone())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let wrk = locate_wrk()?;
    let ticks_per_sec = procfs::clock_ticks_per_sec()?;
    let load_at_start = procfs::load_average();
    let scenario = Scenario::new("bench-request");
    let dir = scenario.path().to_path_buf();
    let script = dir.join("bench.lua");
    std::fs::write(&script, wrk::SCRIPT)
        .map_err(|err| format!("write {}: {err}", script.display()))?;
    let pool_script = dir.join("bench-pool.lua");
    std::fs::write(&pool_script, format!("{}{}", wrk::POOL_HOOKS, wrk::SCRIPT))
        .map_err(|err| format!("write {}: {err}", pool_script.display()))?;
    let bench = Bench {
        settings: settings.clone(),
        wrk,
        script,
        pool_script,
        ticks_per_sec,
    };

    // The bench's issuers, and their first-use pools.
    let mut issuers = BTreeMap::new();
    let mut pools = BTreeMap::new();
    for alg in ALGORITHMS {
        let issuer = Issuer::generate(alg)?;
        if rows.iter().any(|r| r.credential == Credential::Fresh(alg)) {
            let path = dir.join(format!("pool-{}.txt", alg_id(alg)));
            eprintln!("[bench] minting {} {} tokens", settings.pool, alg.name());
            let first = write_pool(&issuer, settings.pool, &path)?;
            pools.insert(alg_id(alg), (path, first));
        }
        issuers.insert(alg_id(alg), issuer);
    }
    // Their public keys: in every snapshot and in jwt_authn's JWKS.
    let keys: Vec<serde_json::Value> = issuers.values().map(Issuer::jwk).collect();
    let jwks = serde_json::json!({ "keys": keys });

    // The registry the upstream rows route to, with alice's image.
    let registry = Registry::start(&dir, ports::free_port());
    pin(registry.process.pid(), &settings.load_cpus, "registry")?;
    let skopeo = Skopeo::new(&dir);
    let image = oci::build_layout(&dir, REPOSITORY, TAG);
    registry.push(&skopeo, &image);

    // Redis + sidecar with a snapshot granting alice the private repository and carrying the
    // bench issuers' keys.
    let redis = Redis::start(&dir, ports::free_port());
    pin(redis.process.pid(), &settings.load_cpus, "redis")?;
    let password = registry_gate_tests::sidecar::random_hex(12);
    let users = BTreeMap::from([(USER.to_owned(), password.clone())]);
    // The sidecar also answers ext_authz checks (row 6), with the filter's configuration.
    let extauthz_port = ports::free_port();
    let extauthz_config = dir.join("ext-authz.json");
    let extra = SidecarExtra {
        args: vec![
            "--ext-authz-config".to_owned(),
            extauthz_config.display().to_string(),
        ],
        ..SidecarExtra::default()
    };
    let files = Sidecar::prepare(&dir, &users, 4, &extra);
    std::fs::write(
        &extauthz_config,
        ext_authz_config(extauthz_port, &files.publisher_public),
    )
    .map_err(|err| format!("write {}: {err}", extauthz_config.display()))?;
    let mut sidecar = Sidecar::start_with(
        &dir,
        "sidecar",
        ports::free_port(),
        &redis.url(),
        files,
        &extra,
    );
    // On Envoy's CPU: in ext_authz mode the sidecar decides, and its work must come out of
    // the same CPU budget as the filter's (otherwise idle: the fetchers' long-polls).
    pin(sidecar.process.pid(), &settings.envoy_cpus, "sidecar")?;
    let sidecar_pid = sidecar.process.pid().ok_or("the sidecar has no pid")?;
    let published = sidecar.publish(&serde_json::json!({
        "repositories": [{"name": REPOSITORY, "auth_required": true}],
        "users": {USER: [REPOSITORY]},
        "keys": keys,
    }));
    sidecar.wait_for_ext_authz_generation(published.generation, Duration::from_secs(30));

    // Row 8's own Redis and sidecar, holding the large snapshot (plus alice's grant and the
    // issuers' keys, so row 8 sends what row 3 sends).
    let large = if rows.iter().any(|r| r.proxy.is_large()) {
        let large_dir = dir.join("large");
        std::fs::create_dir_all(&large_dir)
            .map_err(|err| format!("create {}: {err}", large_dir.display()))?;
        let redis = Redis::start(&large_dir, ports::free_port());
        pin(redis.process.pid(), &settings.load_cpus, "redis (large)")?;
        let files = Sidecar::prepare(&large_dir, &users, 4, &SidecarExtra::default());
        let mut sidecar = Sidecar::start(&large_dir, ports::free_port(), &redis.url(), files);
        pin(
            sidecar.process.pid(),
            &settings.load_cpus,
            "sidecar (large)",
        )?;
        let mut content = scale::content(&settings.large);
        let object = content
            .as_object_mut()
            .ok_or("the generated content is not an object")?;
        if let Some(repositories) = object
            .get_mut("repositories")
            .and_then(serde_json::Value::as_array_mut)
        {
            repositories.push(serde_json::json!({"name": REPOSITORY, "auth_required": true}));
        }
        if let Some(users) = object
            .get_mut("users")
            .and_then(serde_json::Value::as_object_mut)
        {
            users.insert(USER.to_owned(), serde_json::json!([REPOSITORY]));
        }
        object.insert("keys".to_owned(), serde_json::Value::from(keys.clone()));
        eprintln!(
            "[bench] publishing the large snapshot: {} repositories, {} users, {} grants",
            settings.large.repositories, settings.large.users, settings.large.grants
        );
        let published = sidecar.publish(&content);
        Some((redis, sidecar, published))
    } else {
        None
    };

    let wasm = paths::wasm();
    let noop_wasm = paths::noop_wasm();
    if rows.iter().any(|r| r.proxy == Proxy::NativeFloor) {
        // Envoy finds it by name; this fails early, naming `make build`, if it is not built.
        paths::native_floor();
    }
    if rows
        .iter()
        .any(|r| matches!(r.proxy, Proxy::Native | Proxy::NativeLarge))
    {
        paths::native_module();
    }
    let mut envoys: BTreeMap<Proxy, Envoy> = BTreeMap::new();
    for proxy in Proxy::ALL {
        if !rows.iter().any(|r| r.proxy == proxy) {
            continue;
        }
        let (fetch_from, generation) = match (&large, proxy) {
            (Some((_, large, published)), proxy) if proxy.is_large() => {
                (large, published.generation)
            }
            _ => (&sidecar, published.generation),
        };
        let mut params = params_for(fetch_from, registry.port, &wasm);
        if proxy == Proxy::ExtAuthz {
            params.listen_port = extauthz_port;
        }
        let cache = match proxy {
            Proxy::JwtAuthnCache => "jwt_cache_config: { jwt_cache_size: 100 }",
            _ => "# no jwt_cache_config: every request verifies",
        };
        let launch = Launch {
            name: proxy.name().to_owned(),
            concurrency: 1,
            log_level: "warn".to_owned(),
            cpus: Some(settings.envoy_cpus.clone()),
            extra_vars: vec![
                ("NOOP_WASM_PATH", noop_wasm.display().to_string()),
                ("V2_ACTION", proxy.v2_action().to_owned()),
                ("JWT_ISSUER", ISSUER.to_owned()),
                ("JWT_AUDIENCE", SERVICE.to_owned()),
                ("JWKS", jwks.to_string()),
                ("JWT_CACHE_CONFIG", cache.to_owned()),
            ],
            ..Launch::default()
        };
        let mut envoy = Envoy::start_with(&dir, &proxy.template(), params, &launch);
        if proxy.is_gate() {
            // A large snapshot takes seconds per worker to install.
            envoy.wait_for_generation(generation, Duration::from_secs(300));
        }
        envoys.insert(proxy, envoy);
    }

    // Each round's single tokens: the sidecar's, and one per issuer.
    let round_tokens = || -> Result<BTreeMap<String, String>, String> {
        let mut tokens = BTreeMap::from([(
            "sidecar".to_owned(),
            sidecar.token(USER, &password, REPOSITORY)?,
        )]);
        for (id, issuer) in &issuers {
            tokens.insert(id.clone(), issuer.mint(&alice(300)));
        }
        Ok(tokens)
    };
    // What the row sends, and the token it is checked with first.
    let sending_of = |row: &Row,
                      tokens: &BTreeMap<String, String>|
     -> Result<(String, Option<PathBuf>), String> {
        match row.credential {
            Credential::Sidecar => Ok((tokens.get("sidecar").cloned().unwrap_or_default(), None)),
            Credential::Same(alg) => {
                Ok((tokens.get(&alg_id(alg)).cloned().unwrap_or_default(), None))
            }
            Credential::Fresh(alg) => {
                let (pool, first) = pools
                    .get(&alg_id(alg))
                    .ok_or_else(|| format!("no {} pool", alg.name()))?;
                Ok((first.clone(), Some(pool.clone())))
            }
        }
    };

    let mut tokens = round_tokens()?;
    eprintln!(
        "[bench] warm-up: {} s per row, wrk -t1 -c{}",
        settings.warmup_seconds, settings.connections
    );
    for row in &rows {
        let envoy = envoys.get(&row.proxy).ok_or("no Envoy for a row")?;
        let (token, pool) = sending_of(row, &tokens)?;
        Bench::check_one(envoy, &token, &row.label)?;
        if settings.warmup_seconds > 0 {
            let sending = match &pool {
                Some(pool) => Sending::Pool(pool),
                None => Sending::Token(&token),
            };
            bench.load(envoy, &sending, settings.warmup_seconds)?;
        }
    }

    let mut runs: BTreeMap<String, Vec<(usize, Run)>> = BTreeMap::new();
    let mut failures = Vec::new();
    for round in 0..settings.rounds {
        // A single token lives 300 s: fresh ones per round (checked, so cached, before each run).
        if round > 0 {
            tokens = round_tokens()?;
        }
        let count = rows.len();
        for i in 0..count {
            if STOP.load(Ordering::SeqCst) {
                return Err("interrupted".to_owned());
            }
            let Some(row) = rows.get((i + round) % count) else {
                continue;
            };
            let envoy = envoys.get_mut(&row.proxy).ok_or("no Envoy for a row")?;
            let (token, pool) = sending_of(row, &tokens)?;
            Bench::check_one(envoy, &token, &row.label)?;
            let sending = match &pool {
                Some(pool) => Sending::Pool(pool),
                None => Sending::Token(&token),
            };
            match bench.measure(envoy, &sending, sidecar_pid) {
                Ok(run) => {
                    eprintln!(
                        "[bench] round {}/{} {:<40} {:>9.0} req/s  p50 {:.3} ms  p99 {:.3} ms  \
                         {:.1} µs CPU/req  RSS {:.1} MiB{}",
                        round + 1,
                        settings.rounds,
                        row.label,
                        run.rps,
                        run.p50_ms,
                        run.p99_ms,
                        run.cpu_us_per_request,
                        run.rss_mib,
                        run.host_calls_per_request
                            .filter(|_| row.proxy.is_gate())
                            .map(|h| format!("  {h:.1} host calls/req"))
                            .unwrap_or_default()
                    );
                    runs.entry(row.id.clone()).or_default().push((round, run));
                }
                Err(err) => {
                    eprintln!("[bench] round {} {}: {err}", round + 1, row.label);
                    failures.push(format!("round {} {}: {err}", round + 1, row.label));
                }
            }
        }
    }
    if !failures.is_empty() {
        return Err(format!(
            "{} run(s) failed; no figures reported:\n{}",
            failures.len(),
            failures.join("\n")
        ));
    }

    let mut signature_paths = Vec::new();
    if let Some(envoy) = envoys.get_mut(&Proxy::Gate) {
        for (name, value) in envoy.stats("registry_gate\\.signatures\\.")? {
            signature_paths.push(format!("{name} {value}"));
        }
    }
    let table = table(&rows, &runs);
    let targets = targets(&rows, &runs);
    // Both builds' memory with the large index, when the large rows ran.
    let memory = match &large {
        Some((_, large, large_published)) if rows.iter().any(|r| r.proxy == Proxy::NativeLarge) => {
            eprintln!("[bench] memory: each build at --concurrency {MEMORY_WORKERS}, small and large snapshot");
            let table = memory(
                &dir,
                (&sidecar, published.generation),
                (large, large_published.generation),
                registry.port,
                &wasm,
            )?;
            format!(
                "\n## Memory at `--concurrency {MEMORY_WORKERS}` with the large index\n\n{table}"
            )
        }
        _ => String::new(),
    };
    let envoy_version = context::first_line(&paths::envoy(), &["--version"]);
    let commit = context::commit();
    let date = context::first_line(Path::new("date"), &["-u", "+%Y-%m-%d %H:%M:%S UTC"]);
    let s = &settings;
    let context = format!(
        "- commit: {commit}\n- date: {date}\n- CPU: {} ({} CPUs online); kernel {}\n\
         - load average (1/5/15 min) at start: {load_at_start}; at end: {}\n\
         - {envoy_version}\n\
         - method: each row's Envoy `--concurrency 1` on CPU {}, wrk `-t1 -c{}` on CPU {}; \
         {} rounds of {} s per row (order rotating each round) after a {} s warm-up; \
         first-use rows cycle a pool of {} tokens per algorithm (the filter's token cache \
         holds 4096, first in first out)\n\
         - where registry-gate checked signatures (Envoy stats at the end): {}\n",
        procfs::cpu_model(),
        std::thread::available_parallelism().map_or(0, usize::from),
        procfs::kernel(),
        procfs::load_average(),
        s.envoy_cpus,
        s.connections,
        s.load_cpus,
        s.rounds,
        s.seconds,
        s.warmup_seconds,
        s.pool,
        if signature_paths.is_empty() {
            "—".to_owned()
        } else {
            signature_paths.join(", ")
        },
    );
    println!("\n{table}\n{targets}\n{memory}\n{context}");
    let document = format!(
        "# `make bench`: the request path side by side\n\n\
         Medians over rounds, min–max in parentheses. Ratios are taken between two rows in \
         the same round, then summarised.\n\n{table}\n## Targets\n\n{targets}{memory}\n{context}"
    );
    let out = paths::repo_root().join(RESULTS);
    std::fs::write(&out, document).map_err(|err| format!("write {}: {err}", out.display()))?;
    eprintln!("[bench] written to {}", out.display());
    drop(scenario);
    Ok(())
}

type Runs = BTreeMap<String, Vec<(usize, Run)>>;

/// `metric` of row `id` over row `base`, within each round both ran in.
fn ratio(runs: &Runs, id: &str, base: &str, metric: fn(&Run) -> f64) -> Option<Spread> {
    let base_runs = runs.get(base)?;
    let values: Vec<f64> = runs
        .get(id)?
        .iter()
        .filter_map(|(round, run)| {
            let (_, b) = base_runs.iter().find(|(r, _)| r == round)?;
            let denominator = metric(b);
            (denominator > 0.0).then(|| metric(run) / denominator)
        })
        .collect();
    Spread::of(&values)
}

/// The per-row table (medians over rounds, min–max).
fn table(rows: &[Row], runs: &Runs) -> String {
    let of = |id: &str, f: &dyn Fn(&Run) -> Option<f64>| -> Option<Spread> {
        let values: Vec<f64> = runs
            .get(id)
            .map(|r| r.iter().filter_map(|(_, run)| f(run)).collect())
            .unwrap_or_default();
        Spread::of(&values)
    };
    let rps = |run: &Run| run.rps;
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let id = row.id.as_str();
            let host_calls = if row.proxy.is_gate() {
                cell(of(id, &|r| r.host_calls_per_request), 1, "n/a")
            } else {
                "—".to_owned()
            };
            let floor = if row.proxy == Proxy::GateRegistry {
                "nofilter-registry"
            } else {
                "nofilter"
            };
            vec![
                row.number.to_string(),
                format!("{} (`{id}`)", row.label),
                cell(of(id, &|r| Some(r.rps)), 0, "—"),
                cell(of(id, &|r| Some(r.p50_ms)), 3, "—"),
                cell(of(id, &|r| Some(r.p99_ms)), 3, "—"),
                cell(of(id, &|r| Some(r.cpu_us_per_request)), 1, "—"),
                if row.proxy == Proxy::ExtAuthz {
                    cell(of(id, &|r| Some(r.sidecar_cpu_us_per_request)), 1, "—")
                } else {
                    "—".to_owned()
                },
                cell(of(id, &|r| Some(r.rss_mib)), 1, "—"),
                cell(ratio(runs, id, floor, rps), 3, "—"),
                cell(ratio(runs, id, "noop", rps), 3, "—"),
                host_calls,
            ]
        })
        .collect();
    markdown_table(
        &[
            "#",
            "row",
            "requests/s",
            "p50 ms",
            "p99 ms",
            "Envoy CPU µs/request",
            "sidecar CPU µs/request",
            "Envoy RSS MiB",
            "× no filter",
            "× no-op wasm",
            "host calls/request",
        ],
        &cells,
    )
}

/// One target: `id` over `base` by `metric`, against `bound` (`None`: reported only).
struct Target {
    what: String,
    id: String,
    base: String,
    metric: (&'static str, fn(&Run) -> f64),
    bound: Option<Bound>,
}

#[derive(Clone, Copy)]
enum Bound {
    AtLeast(f64),
    AtMost(f64),
}

const RPS: (&str, fn(&Run) -> f64) = ("requests/s", |run| run.rps);
const CPU: (&str, fn(&Run) -> f64) = ("Envoy CPU µs/request", |run| run.cpu_us_per_request);

/// The issue's targets, each a ratio within rounds; rows not run are left out.
fn targets(rows: &[Row], runs: &Runs) -> String {
    let target = |what: String, id: &str, base: &str, metric, bound| Target {
        what,
        id: id.to_owned(),
        base: base.to_owned(),
        metric,
        bound,
    };
    let mut list = vec![
        target(
            "registry-gate (cached) vs the no-op wasm filter".into(),
            "gate",
            "noop",
            RPS,
            Some(Bound::AtLeast(0.95)),
        ),
        target(
            "the price of wasm: no-op wasm vs no filter".into(),
            "noop",
            "nofilter",
            RPS,
            None,
        ),
        target(
            "the native floor: a dynamic module's two header reads and one write vs no filter"
                .into(),
            "native-floor",
            "nofilter",
            RPS,
            None,
        ),
    ];
    for alg in ALGORITHMS {
        let bound = if alg == SIDECAR_ALGORITHM { 1.2 } else { 1.5 };
        let id = alg_id(alg);
        list.push(target(
            format!(
                "first use, {} vs jwt_authn with a fresh token{}",
                alg.name(),
                if alg == SIDECAR_ALGORITHM {
                    " (the sidecar's algorithm)"
                } else {
                    ""
                }
            ),
            &format!("gate-fresh-{id}"),
            &format!("jwt-fresh-{id}"),
            CPU,
            Some(Bound::AtMost(bound)),
        ));
    }
    list.push(target(
        "native (cached) vs jwt_authn + cache, ES256: Envoy CPU per request (stretch ≤ 1.0)".into(),
        "native",
        "jwt-cache-es256",
        CPU,
        Some(Bound::AtMost(1.05)),
    ));
    list.push(target(
        "native (cached) vs the native floor".into(),
        "native",
        "native-floor",
        RPS,
        Some(Bound::AtLeast(0.97)),
    ));
    for alg in [Algorithm::ES256, Algorithm::EdDSA] {
        let id = alg_id(alg);
        list.push(target(
            format!(
                "native first use, {} vs jwt_authn with a fresh token",
                alg.name()
            ),
            &format!("native-fresh-{id}"),
            &format!("jwt-fresh-{id}"),
            CPU,
            Some(Bound::AtMost(1.0)),
        ));
    }
    list.push(target(
        "native (cached) with the large snapshot vs the small one".into(),
        "native-large",
        "native",
        RPS,
        Some(Bound::AtLeast(0.97)),
    ));
    list.push(target(
        "registry-gate (cached) vs ext_authz to the sidecar".into(),
        "gate",
        "extauthz",
        RPS,
        Some(Bound::AtLeast(3.0)),
    ));
    list.push(target(
        "registry-gate (cached) with the large snapshot vs the small one".into(),
        "gate-large",
        "gate",
        RPS,
        Some(Bound::AtLeast(0.95)),
    ));
    list.push(target(
        "a real pull's request: registry-gate vs no filter, registry upstream".into(),
        "gate-registry",
        "nofilter-registry",
        RPS,
        None,
    ));
    let present = |id: &str| rows.iter().any(|r| r.id == id);
    let cells: Vec<Vec<String>> = list
        .iter()
        .filter(|t| present(&t.id) && present(&t.base))
        .map(|t| {
            let spread = ratio(runs, &t.id, &t.base, t.metric.1);
            let verdict = match (t.bound, spread) {
                (None, _) => "reported".to_owned(),
                (Some(_), None) => "no figure".to_owned(),
                (Some(Bound::AtLeast(b)), Some(s)) => {
                    if s.median >= b { "met" } else { "missed" }.to_owned()
                }
                (Some(Bound::AtMost(b)), Some(s)) => {
                    if s.median <= b { "met" } else { "missed" }.to_owned()
                }
            };
            let bound = match t.bound {
                None => "—".to_owned(),
                Some(Bound::AtLeast(b)) => format!("≥ {b}"),
                Some(Bound::AtMost(b)) => format!("≤ {b}"),
            };
            vec![
                t.what.clone(),
                format!("`{}` / `{}` ({})", t.id, t.base, t.metric.0),
                cell(spread, 3, "—"),
                bound,
                verdict,
            ]
        })
        .collect();
    markdown_table(&["target", "ratio", "measured", "bound", "verdict"], &cells)
}

fn main() -> ExitCode {
    if let Err(err) = ctrlc::set_handler(|| STOP.store(true, Ordering::SeqCst)) {
        eprintln!("[bench] cannot install the Ctrl-C handler: {err}");
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("[bench] FAILED: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocated_bytes_reads_envoys_memory_answer() {
        let answer = r#"{"allocated": "6291456", "heap_size": "12582912"}"#;
        assert_eq!(allocated_bytes(answer), Ok(6_291_456));
        assert!(allocated_bytes(r#"{"heap_size": "1"}"#).is_err());
        assert!(allocated_bytes(r#"{"allocated": "many"}"#).is_err());
        assert!(allocated_bytes("not json").is_err());
    }

    #[test]
    fn host_calls_are_summed_over_every_prefix_and_absent_is_none() {
        let stats = BTreeMap::from([
            ("wasmcustom.registry_gate.host_calls".to_owned(), 30),
            ("registry_gate.host_calls".to_owned(), 12),
            ("http.bench.downstream_rq_total".to_owned(), 7),
        ]);
        assert_eq!(sum_suffix(&stats, HOST_CALLS_SUFFIX), Some(42));
        let without = BTreeMap::from([("http.bench.downstream_rq_total".to_owned(), 7)]);
        assert_eq!(sum_suffix(&without, HOST_CALLS_SUFFIX), None);
    }

    #[test]
    fn every_proxy_has_its_template_in_the_tree_and_row_ids_are_unique() {
        for proxy in Proxy::ALL {
            let template = proxy.template();
            assert!(template.is_file(), "{proxy:?}: {}", template.display());
        }
        let rows = all_rows();
        let mut ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), rows.len());
    }

    #[test]
    fn ratios_pair_runs_of_the_same_round_only() {
        let run = |rps| Run {
            rps,
            p50_ms: 1.0,
            p99_ms: 1.0,
            cpu_us_per_request: 1.0,
            sidecar_cpu_us_per_request: 0.0,
            rss_mib: 1.0,
            host_calls_per_request: None,
        };
        let runs: Runs = BTreeMap::from([
            (
                "a".to_owned(),
                vec![(0, run(50.0)), (1, run(90.0)), (2, run(7.0))],
            ),
            ("b".to_owned(), vec![(0, run(100.0)), (1, run(100.0))]),
        ]);
        let spread = ratio(&runs, "a", "b", RPS.1).unwrap();
        assert!((spread.min - 0.5).abs() < 1e-9 && (spread.max - 0.9).abs() < 1e-9);
        assert!(ratio(&runs, "a", "missing", RPS.1).is_none());
    }
}
