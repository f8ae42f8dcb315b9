//! `make bench`: what registry-gate costs on the request path, next to the price of wasm itself.
//!
//! Three Envoys answer the same `GET /v2/team/private/manifests/latest` with the same valid
//! bearer token through a `direct_response` route (no upstream), in one invocation:
//!
//! - **no filter** (`envoy/bench/envoy-request-nofilter.yaml`): the floor;
//! - **no-op wasm** (`envoy-request-noop.yaml`): the same plus `bench/noop-filter`, a Rust
//!   proxy-wasm filter that only returns `Continue` — the price of any wasm filter;
//! - **registry-gate** (`envoy-request-gate.yaml`): the same plus the real filter and snapshot
//!   fetcher, configured as in `envoy/local/envoy.yaml`, with the sidecar and Redis running and
//!   a snapshot granting alice `team/private`; the token is verified once and then served from
//!   the filter's token cache (the path every request of a pull takes after the first).
//!
//! Each Envoy runs `--concurrency 1` pinned to one CPU (`taskset -c 0`), wrk runs on another
//! (`taskset -c 1`; Redis and the sidecar, idle during the runs, are moved there too). After a
//! warm-up, `BENCH_ROUNDS` rounds run each configuration for `BENCH_SECONDS`, in an order that
//! rotates every round, so machine noise hits all three alike. Per run: requests/s and p50/p99
//! latency (wrk), Envoy CPU per request (utime+stime delta of `/proc/<pid>/stat` over the
//! requests Envoy answered), VmRSS, and for registry-gate the filter's `host_calls` counter per
//! allowed request. The table holds medians over rounds with min–max; ratios are taken within
//! a round, then summarised.
//!
//! It must never report a figure built on failed requests: any socket error, non-2xx answer,
//! 4xx/5xx Envoy counted, or answer count Envoy does not confirm (beyond the at most one
//! request per connection wrk leaves unanswered when it stops) is listed and the exit status is
//! 1 (no results file is written). It must never leave a process behind: the harness guards stop every server on
//! return or panic (`make bench` builds this launcher with the dev profile, which unwinds).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use registry_gate_tests::envoy::{Envoy, EnvoyParams, Launch};
use registry_gate_tests::http::Request;
use registry_gate_tests::redis::Redis;
use registry_gate_tests::sidecar::{Sidecar, SERVICE};
use registry_gate_tests::{paths, ports, Auth, Scenario};

use registry_gate_bench::report::{cell, markdown_table, Spread};
use registry_gate_bench::{env_number, procfs, wrk};

const USER: &str = "alice";
const REPOSITORY: &str = "team/private";
const PATH: &str = "/v2/team/private/manifests/latest";
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json";
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
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let settings = Settings {
            rounds: env_number("BENCH_ROUNDS", 5)?,
            seconds: env_number("BENCH_SECONDS", 5)?,
            warmup_seconds: env_number("BENCH_WARMUP_SECONDS", 2)?,
            connections: env_number("BENCH_CONNECTIONS", 32)?,
            envoy_cpus: std::env::var("BENCH_ENVOY_CPUS").unwrap_or_else(|_| "0".to_owned()),
            load_cpus: std::env::var("BENCH_LOAD_CPUS").unwrap_or_else(|_| "1".to_owned()),
        };
        if settings.rounds == 0 || settings.seconds == 0 || settings.connections == 0 {
            return Err("BENCH_ROUNDS, BENCH_SECONDS and BENCH_CONNECTIONS must be > 0".into());
        }
        Ok(settings)
    }
}

// ---- configurations -------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Config {
    NoFilter,
    NoopWasm,
    Gate,
}

impl Config {
    const ALL: [Config; 3] = [Config::NoFilter, Config::NoopWasm, Config::Gate];

    fn label(self) -> &'static str {
        match self {
            Config::NoFilter => "Envoy, no filter",
            Config::NoopWasm => "no-op Rust wasm filter",
            Config::Gate => "registry-gate (cached token)",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Config::NoFilter => "envoy-nofilter",
            Config::NoopWasm => "envoy-noop",
            Config::Gate => "envoy-gate",
        }
    }

    fn template(self) -> PathBuf {
        let file = match self {
            Config::NoFilter => "envoy-request-nofilter.yaml",
            Config::NoopWasm => "envoy-request-noop.yaml",
            Config::Gate => "envoy-request-gate.yaml",
        };
        paths::repo_root().join("envoy/bench").join(file)
    }
}

// ---- one run --------------------------------------------------------------------------------

/// What one configuration did in one round.
#[derive(Debug, Clone, Copy)]
struct Run {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_us_per_request: f64,
    rss_mib: f64,
    /// `None` when the filter exports no `host_calls` counter (or for the other configs).
    host_calls_per_request: Option<f64>,
}

struct Bench {
    settings: Settings,
    wrk: PathBuf,
    script: PathBuf,
    ticks_per_sec: u64,
}

impl Bench {
    fn headers(token: &str) -> Vec<(&'static str, String)> {
        vec![
            ("Authorization", format!("Bearer {token}")),
            ("Accept", ACCEPT.to_owned()),
        ]
    }

    fn url(envoy: &Envoy) -> String {
        format!("http://127.0.0.1:{}{PATH}", envoy.params.listen_port)
    }

    /// One request with curl: it must be 200 (also puts the token into the filter's cache).
    fn check_one(envoy: &Envoy, token: &str, config: Config) -> Result<(), String> {
        let resp = Request::get(Bench::url(envoy))
            .header("Accept", ACCEPT)
            .auth(Auth::Bearer(token))
            .timeout(Duration::from_secs(5))
            .send()?;
        if resp.status == 200 {
            Ok(())
        } else {
            Err(format!(
                "{}: expected 200 for GET {PATH} with alice's token: {}",
                config.label(),
                resp.summary()
            ))
        }
    }

    fn load(&self, envoy: &Envoy, token: &str, seconds: u64) -> Result<wrk::Summary, String> {
        let headers = Bench::headers(token);
        let url = Bench::url(envoy);
        wrk::run(&wrk::Load {
            wrk: &self.wrk,
            script: &self.script,
            cpus: &self.settings.load_cpus,
            connections: self.settings.connections,
            seconds,
            headers: &headers,
            url: &url,
        })
    }

    /// A measured run; `Err` when any request failed or a figure cannot be read.
    fn measure(&self, envoy: &mut Envoy, token: &str) -> Result<Run, String> {
        let pid = envoy.process.pid().ok_or("Envoy has no pid")?;
        let before = envoy.stats(STATS_FILTER)?;
        let ticks_before = procfs::cpu_ticks(pid)?;
        let load = self.load(envoy, token, self.settings.seconds)?;
        let ticks_after = procfs::cpu_ticks(pid)?;
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
        let cpu_us =
            ticks_after.saturating_sub(ticks_before) as f64 * 1e6 / self.ticks_per_sec as f64;
        let host_calls = sum_suffix(&after, HOST_CALLS_SUFFIX).map(|a| {
            let b = sum_suffix(&before, HOST_CALLS_SUFFIX).unwrap_or(0);
            a.saturating_sub(b) as f64 / ok as f64
        });
        Ok(Run {
            rps: load.requests_per_sec(),
            p50_ms: load.p50_us as f64 / 1000.0,
            p99_ms: load.p99_us as f64 / 1000.0,
            cpu_us_per_request: cpu_us / ok as f64,
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

/// A fresh token for alice from the sidecar's `/v2/token`.
fn token(sidecar: &Sidecar, password: &str) -> Result<String, String> {
    let url = format!(
        "{}/v2/token?service={SERVICE}&scope=repository:{REPOSITORY}:pull",
        sidecar.url()
    );
    let resp = Request::get(url)
        .auth(Auth::Basic(USER, password))
        .timeout(Duration::from_secs(10))
        .send()?;
    if resp.status != 200 {
        return Err(format!("token for {USER}: {}", resp.summary()));
    }
    let json: serde_json::Value = serde_json::from_slice(&resp.body)
        .map_err(|err| format!("token response is not JSON ({err}): {}", resp.summary()))?;
    json.get("token")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("token response has no token: {}", resp.summary()))
}

fn git(args: &[&str]) -> String {
    Command::new("git")
        .arg("-C")
        .arg(paths::repo_root())
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn command_line_output(program: &Path, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            text.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_default()
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
    let wrk = locate_wrk()?;
    let ticks_per_sec = procfs::clock_ticks_per_sec()?;
    let load_at_start = procfs::load_average();
    let scenario = Scenario::new("bench-request");
    let dir = scenario.path().to_path_buf();
    let script = dir.join("bench.lua");
    std::fs::write(&script, wrk::SCRIPT)
        .map_err(|err| format!("write {}: {err}", script.display()))?;
    let bench = Bench {
        settings: settings.clone(),
        wrk,
        script,
        ticks_per_sec,
    };

    // Redis + sidecar with a snapshot granting alice the private repository.
    let redis = Redis::start(&dir, ports::free_port());
    pin(redis.process.pid(), &settings.load_cpus, "redis")?;
    let password = registry_gate_tests::sidecar::random_hex(12);
    let users = BTreeMap::from([(USER.to_owned(), password.clone())]);
    let files = Sidecar::prepare(&dir, &users, 4);
    let mut sidecar = Sidecar::start(&dir, ports::free_port(), &redis.url(), files);
    pin(sidecar.process.pid(), &settings.load_cpus, "sidecar")?;
    let published = sidecar.publish(&serde_json::json!({
        "repositories": [{"name": REPOSITORY, "auth_required": true}],
        "users": {USER: [REPOSITORY]}
    }));

    let wasm = paths::wasm();
    let noop_wasm = paths::noop_wasm();
    let mut envoys = Vec::new();
    for config in Config::ALL {
        let params = EnvoyParams {
            listen_port: ports::free_port(),
            admin_port: ports::free_port(),
            sidecar_port: sidecar.port,
            // No upstream registry and no TLS listener in the bench configs.
            registry_port: 0,
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            client_ca: PathBuf::new(),
            wasm: wasm.clone(),
            access_log_state: false,
            snapshot_read_secret: sidecar.files.read_secret.clone(),
        };
        let launch = Launch {
            name: config.name().to_owned(),
            concurrency: 1,
            log_level: "warn".to_owned(),
            cpus: Some(settings.envoy_cpus.clone()),
            extra_vars: vec![("NOOP_WASM_PATH", noop_wasm.display().to_string())],
        };
        let mut envoy = Envoy::start_with(&dir, &config.template(), params, &launch);
        if config == Config::Gate {
            envoy.wait_for_generation(published.generation, Duration::from_secs(30));
        }
        envoys.push((config, envoy));
    }

    let mut token_now = token(&sidecar, &password)?;
    eprintln!(
        "[bench] warm-up: {} s per configuration, wrk -t1 -c{}",
        settings.warmup_seconds, settings.connections
    );
    for (config, envoy) in &envoys {
        Bench::check_one(envoy, &token_now, *config)?;
        if settings.warmup_seconds > 0 {
            bench.load(envoy, &token_now, settings.warmup_seconds)?;
        }
    }

    let mut runs: BTreeMap<Config, Vec<(usize, Run)>> = BTreeMap::new();
    let mut failures = Vec::new();
    for round in 0..settings.rounds {
        // A token lives 300 s: a fresh one per round (checked, so cached, before each run).
        if round > 0 {
            token_now = token(&sidecar, &password)?;
        }
        let count = envoys.len();
        for i in 0..count {
            if STOP.load(Ordering::SeqCst) {
                return Err("interrupted".to_owned());
            }
            let Some((config, envoy)) = envoys.get_mut((i + round) % count) else {
                continue;
            };
            let config = *config;
            Bench::check_one(envoy, &token_now, config)?;
            match bench.measure(envoy, &token_now) {
                Ok(run) => {
                    eprintln!(
                        "[bench] round {}/{} {:<30} {:>9.0} req/s  p50 {:.3} ms  p99 {:.3} ms  \
                         {:.1} µs CPU/req  RSS {:.1} MiB{}",
                        round + 1,
                        settings.rounds,
                        config.label(),
                        run.rps,
                        run.p50_ms,
                        run.p99_ms,
                        run.cpu_us_per_request,
                        run.rss_mib,
                        run.host_calls_per_request
                            .map(|h| format!("  {h:.1} host calls/req"))
                            .unwrap_or_default()
                    );
                    runs.entry(config).or_default().push((round, run));
                }
                Err(err) => {
                    eprintln!("[bench] round {} {}: {err}", round + 1, config.label());
                    failures.push(format!("round {} {}: {err}", round + 1, config.label()));
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

    let table = table(&runs);
    let envoy_version = command_line_output(&paths::envoy(), &["--version"]);
    let commit = {
        let hash = git(&["rev-parse", "--short=12", "HEAD"]);
        // Untracked files and earlier results do not change what was measured.
        let changes = git(&[
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ".",
            ":(exclude)bench/results",
        ]);
        if changes.is_empty() {
            hash
        } else {
            format!("{hash} (with uncommitted changes)")
        }
    };
    let date = command_line_output(Path::new("date"), &["-u", "+%Y-%m-%d %H:%M:%S UTC"]);
    let s = &settings;
    let context = format!(
        "- commit: {commit}\n- date: {date}\n- CPU: {} ({} CPUs online); kernel {}\n\
         - load average (1/5/15 min) at start: {load_at_start}; at end: {}\n\
         - {envoy_version}\n\
         - method: Envoy `--concurrency 1` on CPU {}, wrk `-t1 -c{}` on CPU {}; {} rounds of \
         {} s per configuration (order rotating each round) after a {} s warm-up; \
         `direct_response` 200, same bearer token on every request (a fresh one per round, \
         verified before the round's run)\n",
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
    );
    println!("\n{table}\n{context}");
    let document = format!(
        "# `make bench`: the request path at the price of wasm itself\n\n\
         Medians over rounds, min–max in parentheses. Ratios are requests/s of the row divided \
         by requests/s of the baseline in the same round. Design targets: registry-gate ≥ 0.95× \
         the no-op wasm filter and ≥ 0.75× no filter.\n\n{table}\n{context}"
    );
    let out = paths::repo_root().join(RESULTS);
    std::fs::write(&out, document).map_err(|err| format!("write {}: {err}", out.display()))?;
    eprintln!("[bench] written to {}", out.display());
    Ok(())
}

/// The per-configuration table (medians over rounds, min–max).
fn table(runs: &BTreeMap<Config, Vec<(usize, Run)>>) -> String {
    let of = |config: Config, f: &dyn Fn(&Run) -> Option<f64>| -> Option<Spread> {
        let values: Vec<f64> = runs
            .get(&config)
            .map(|r| r.iter().filter_map(|(_, run)| f(run)).collect())
            .unwrap_or_default();
        Spread::of(&values)
    };
    // Requests/s of `config` over `base`, within each round both ran in.
    let ratio = |config: Config, base: Config| -> Option<Spread> {
        let base_runs = runs.get(&base)?;
        let values: Vec<f64> = runs
            .get(&config)?
            .iter()
            .filter_map(|(round, run)| {
                let (_, b) = base_runs.iter().find(|(r, _)| r == round)?;
                (b.rps > 0.0).then(|| run.rps / b.rps)
            })
            .collect();
        Spread::of(&values)
    };
    let rows: Vec<Vec<String>> = Config::ALL
        .iter()
        .map(|&config| {
            let host_calls = match config {
                Config::Gate => cell(of(config, &|r| r.host_calls_per_request), 1, "n/a"),
                _ => "—".to_owned(),
            };
            vec![
                config.label().to_owned(),
                cell(of(config, &|r| Some(r.rps)), 0, "—"),
                cell(of(config, &|r| Some(r.p50_ms)), 3, "—"),
                cell(of(config, &|r| Some(r.p99_ms)), 3, "—"),
                cell(of(config, &|r| Some(r.cpu_us_per_request)), 1, "—"),
                cell(of(config, &|r| Some(r.rss_mib)), 1, "—"),
                cell(ratio(config, Config::NoFilter), 3, "—"),
                cell(ratio(config, Config::NoopWasm), 3, "—"),
                host_calls,
            ]
        })
        .collect();
    markdown_table(
        &[
            "configuration",
            "requests/s",
            "p50 ms",
            "p99 ms",
            "Envoy CPU µs/request",
            "Envoy RSS MiB",
            "× no filter",
            "× no-op wasm",
            "host calls/request",
        ],
        &rows,
    )
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
    fn every_configuration_has_its_own_template_in_the_tree() {
        for config in Config::ALL {
            let template = config.template();
            assert!(template.is_file(), "{config:?}: {}", template.display());
        }
    }
}
