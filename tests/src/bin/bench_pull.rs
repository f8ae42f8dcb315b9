//! `make bench`: what a pull through registry-gate costs, measured in one run on one stack and
//! printed next to two baselines: the same pull straight from the registry, and the same pull
//! through an Envoy that has everything the gateway's Envoy has except registry-gate.
//!
//! Three arms, all against the same docker-registry:
//!
//! - **direct**: the registry itself, plain HTTP, no auth.
//! - **no filter**: a second Envoy started beside the gateway's from
//!   `envoy/bench/envoy-nofilter.yaml` — `envoy/local/envoy.yaml` minus the wasm HTTP filter
//!   and the wasm bootstrap fetcher (same TLS listener, HCM options, access log, routes,
//!   clusters; same command-line flags via the harness's `Envoy::start`). Checked at start-up
//!   not to have drifted from the local template in anything else.
//! - **gateway**: the harness's Envoy running the built filter (plus sidecar + Redis).
//!
//! Envoy alone (TLS, codec, routing, access log, proxying) costs far more than the filter does,
//! so "gateway − no filter" is the column that shows the filter's own cost.
//!
//! 1. Whole-image pulls with real skopeo: `team/private:latest` (the harness's tiny image) and
//!    `team/private:big` (seeded here with a 4 MiB random layer). Through both Envoys with
//!    the CA and `--src-creds`: the gateway answers 401, so every gateway run also fetches a
//!    `/v2/token` as a real client does; the no-filter Envoy never challenges, so its runs
//!    send no credentials. Direct runs go to the registry over plain HTTP with no auth.
//!    After one warm-up of each arm, runs go in rotating arm order (direct, no filter,
//!    gateway; no filter, gateway, direct; …).
//! 2. Per-request latency: sequential `GET /v2/team/private/manifests/latest` on one
//!    keep-alive HTTP/1.1 connection per block (curl, many URLs in one `--config`), through
//!    either Envoy (TLS, the same bearer token) versus the registry (plain HTTP; it ignores the
//!    token). Each round mints a fresh token, so the gateway block's first request misses the
//!    filter's token cache; every arm's first request is reported apart from the rest. The
//!    three arms' blocks go in rotating order, round after round, so drift hits all alike.
//! 3. Envoy CPU per request for part 2 (`/proc/<pid>/stat` utime+stime deltas, and the
//!    per-thread `schedstat` run time as a finer cross-check) for each Envoy over its own
//!    blocks, and each one idle over the other arms' blocks (the noise floor); both Envoys'
//!    VmRSS; the wasm size.
//!
//! It must never report a figure built on failed requests: any non-2xx answer, failed pull,
//! short curl run or Envoy request count that does not match what curl sent is listed and
//! makes the exit status 1. It must never leave a process behind: the harness guards stop
//! everything on return, Ctrl-C / SIGTERM end the run at the next step, and a panic
//! unwinds through them (`make bench` builds this launcher with the dev profile, which
//! unwinds; the release profile would abort past the guards). The measured processes are
//! release builds either way.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark launcher reports a broken harness by panicking with a precise message"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use registry_gate_tests::envoy::{Envoy, EnvoyParams};
use registry_gate_tests::oci::{self, OciImage, MANIFEST_MEDIA_TYPE};
use registry_gate_tests::{HttpVersion, Stack, StackOptions};

const DEFAULT_ITERATIONS: usize = 20;
const DEFAULT_REQUESTS: usize = 2000;
/// Part 2 runs in this many rounds, one block (one connection) per arm each, one token each.
const BLOCKS: usize = 10;
/// Size of the random payload in the big image's layer.
const BIG_PAYLOAD_BYTES: usize = 4 * 1024 * 1024;
const REPOSITORY: &str = "team/private";
const BIG_TAG: &str = "big";
const USER: &str = "alice";
const SCOPE: &str = "repository:team/private:pull";
/// The baseline Envoy's template, relative to the repository root.
const NOFILTER_TEMPLATE: &str = "envoy/bench/envoy-nofilter.yaml";
/// curl's per-transfer line: status, seconds, new connections, body bytes, protocol.
const WRITE_OUT: &str =
    r"%{http_code} %{time_total} %{num_connects} %{size_download} %{http_version}\n";

/// Set by Ctrl-C / SIGTERM: finish the current step, then stop.
static STOP: AtomicBool = AtomicBool::new(false);
fn stopping() -> bool {
    STOP.load(Ordering::SeqCst)
}

// ---- arguments ------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct Args {
    /// Part 1: measured pulls per arm and image.
    iterations: usize,
    /// Part 2: measured requests per arm.
    requests: usize,
}

const USAGE: &str = "usage: bench_pull [--iterations N] [--requests M]
  --iterations N  skopeo pulls per arm (3 arms) and image (default 20; env BENCH_ITERATIONS)
  --requests M    manifest GETs per arm (3 arms), at least 20 (default 2000; env BENCH_REQUESTS)";

fn parse_count(name: &str, value: Option<String>) -> Result<usize, String> {
    let value = value.ok_or_else(|| format!("{name} needs a value"))?;
    value
        .trim()
        .parse::<usize>()
        .map_err(|err| format!("{name} {value:?}: {err}"))
}

/// `Ok(None)` for `--help`.
fn parse_args() -> Result<Option<Args>, String> {
    let mut iterations = match std::env::var("BENCH_ITERATIONS") {
        Ok(v) => parse_count("BENCH_ITERATIONS", Some(v))?,
        Err(_) => DEFAULT_ITERATIONS,
    };
    let mut requests = match std::env::var("BENCH_REQUESTS") {
        Ok(v) => parse_count("BENCH_REQUESTS", Some(v))?,
        Err(_) => DEFAULT_REQUESTS,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        match flag.as_str() {
            "--iterations" => iterations = parse_count(&flag, inline.or_else(|| args.next()))?,
            "--requests" => requests = parse_count(&flag, inline.or_else(|| args.next()))?,
            "-h" | "--help" => return Ok(None),
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    if iterations == 0 {
        return Err("--iterations must be at least 1".to_owned());
    }
    if requests < 2 * BLOCKS {
        return Err(format!("--requests must be at least {}", 2 * BLOCKS));
    }
    Ok(Some(Args {
        iterations,
        requests,
    }))
}

// ---- statistics -----------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
struct Samples(Vec<f64>);

impl Samples {
    fn push(&mut self, v: f64) {
        self.0.push(v);
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }

    fn median(&self) -> f64 {
        let v = self.sorted();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    /// Nearest-rank percentile (`p` in 0..=100).
    fn percentile(&self, p: f64) -> f64 {
        let v = self.sorted();
        if v.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
        v[rank.min(v.len()) - 1]
    }

    fn mean(&self) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        self.0.iter().sum::<f64>() / self.0.len() as f64
    }
}

// ---- process accounting ---------------------------------------------------------------------

/// Fields after the `(comm)` of `/proc/<pid>/stat`: index 0 is field 3 (state).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = text.get(text.rfind(')')? + 1..)?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// CPU a process has used, two ways.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    /// utime + stime from `/proc/<pid>/stat`, in clock ticks.
    ticks: u64,
    /// Sum of `/proc/<pid>/task/*/schedstat` run time, in ns (0 if unavailable).
    ns: u64,
}

impl Cpu {
    fn read(pid: Option<u32>) -> Option<Cpu> {
        let pid = pid?;
        let fields = stat_fields(pid)?;
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        let mut ns = 0;
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for task in tasks.flatten() {
                let run = std::fs::read_to_string(task.path().join("schedstat"))
                    .ok()
                    .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
                ns += run.unwrap_or(0);
            }
        }
        Some(Cpu {
            ticks: utime + stime,
            ns,
        })
    }

    fn since(self, before: Cpu) -> Cpu {
        Cpu {
            ticks: self.ticks.saturating_sub(before.ticks),
            ns: self.ns.saturating_sub(before.ns),
        }
    }

    fn add(&mut self, other: Cpu) {
        self.ticks += other.ticks;
        self.ns += other.ns;
    }
}

// ---- the three arms and the baseline Envoy --------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arm {
    /// The registry itself, plain HTTP.
    Direct,
    /// Envoy from `envoy/bench/envoy-nofilter.yaml`: no registry-gate.
    NoFilter,
    /// The harness's Envoy running the registry-gate filter.
    Gateway,
}

const ARMS: [Arm; 3] = [Arm::Direct, Arm::NoFilter, Arm::Gateway];

impl Arm {
    fn name(self) -> &'static str {
        match self {
            Arm::Direct => "direct",
            Arm::NoFilter => "nofilter",
            Arm::Gateway => "gateway",
        }
    }
}

/// Run or round `i`'s arm order: the three arms rotated by `i`, so over every three rounds
/// each arm goes first, second and third once (drift and order effects hit all alike).
fn arm_order(i: usize) -> [Arm; 3] {
    let mut order = ARMS;
    order.rotate_left(i % ARMS.len());
    order
}

/// One value per arm.
#[derive(Debug, Default)]
struct PerArm<T> {
    direct: T,
    nofilter: T,
    gateway: T,
}

impl<T> PerArm<T> {
    fn get_mut(&mut self, arm: Arm) -> &mut T {
        match arm {
            Arm::Direct => &mut self.direct,
            Arm::NoFilter => &mut self.nofilter,
            Arm::Gateway => &mut self.gateway,
        }
    }
}

/// The stack plus the baseline Envoy. Field order is drop order: the baseline Envoy stops
/// before the stack (whose scenario directory holds its config and log).
#[derive(Debug)]
struct Rig {
    /// Envoy without registry-gate, proxying to the stack's registry (and sidecar).
    bare: Envoy,
    stack: Stack,
}

impl Rig {
    /// `host:port` an arm's clients connect to.
    fn host(&self, arm: Arm) -> String {
        match arm {
            Arm::Direct => self.stack.registry().host(),
            Arm::NoFilter => format!("127.0.0.1:{}", self.bare.params.listen_port),
            Arm::Gateway => self.stack.host(),
        }
    }

    fn print_logs(&self) {
        self.bare.process.print_tail();
        self.stack.print_logs();
    }
}

fn nofilter_template() -> PathBuf {
    let path = registry_gate_tests::paths::repo_root().join(NOFILTER_TEMPLATE);
    assert!(
        path.is_file(),
        "baseline Envoy template missing: {}",
        path.display()
    );
    path
}

/// Starts the baseline Envoy beside the stack's: same parameters (TLS files, registry and
/// sidecar ports), its own listener and admin ports, its own directory (config and log), and
/// the harness's command line (`Envoy::start`: concurrency 2, base id, log level, flush).
fn start_bare_envoy(stack: &Stack) -> Envoy {
    let params = EnvoyParams {
        listen_port: registry_gate_tests::ports::free_port(),
        admin_port: registry_gate_tests::ports::free_port(),
        ..stack.envoy.params.clone()
    };
    let dir = stack.scenario.subdir("envoy-nofilter");
    let envoy = Envoy::start(&dir, &nofilter_template(), params);
    eprintln!(
        "[bench] baseline Envoy (no filter) up: https://127.0.0.1:{} (admin {}), config {}",
        envoy.params.listen_port,
        envoy.params.admin_port,
        envoy.config.display()
    );
    envoy
}

/// A template's meaningful lines: comments, blank lines and trailing blanks dropped and, when
/// `strip_filter`, the `bootstrap_extensions` block and the `envoy.filters.http.wasm` list
/// item (everything indented under it) removed.
fn template_lines(text: &str, strip_filter: bool) -> Vec<String> {
    let mut out = Vec::new();
    // Skipping a block: lines indented deeper than this belong to it.
    let mut skip_deeper_than: Option<usize> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if let Some(level) = skip_deeper_than {
            if indent > level {
                continue;
            }
            skip_deeper_than = None;
        }
        if strip_filter
            && ((indent == 0 && trimmed == "bootstrap_extensions:")
                || trimmed == "- name: envoy.filters.http.wasm")
        {
            skip_deeper_than = Some(indent);
            continue;
        }
        out.push(line.trim_end().to_owned());
    }
    out
}

/// `Err(why)` unless the baseline template is the local one minus the wasm filter and the
/// bootstrap fetcher, and nothing else (comments aside).
fn check_baseline_template() -> Result<(), String> {
    let local_path = registry_gate_tests::paths::local_envoy_template();
    let bare_path = nofilter_template();
    let read =
        |p: &Path| std::fs::read_to_string(p).map_err(|err| format!("read {}: {err}", p.display()));
    let local_text = read(&local_path)?;
    let bare_text = read(&bare_path)?;
    let local_all = template_lines(&local_text, false);
    let local = template_lines(&local_text, true);
    let bare = template_lines(&bare_text, true);
    if template_lines(&bare_text, false) != bare {
        return Err(format!(
            "{} still has a wasm filter or bootstrap_extensions",
            bare_path.display()
        ));
    }
    if local_all.len() == local.len() {
        return Err(format!(
            "{} has no bootstrap_extensions block and no envoy.filters.http.wasm filter to strip",
            local_path.display()
        ));
    }
    if local == bare {
        return Ok(());
    }
    let at = local
        .iter()
        .zip(&bare)
        .position(|(l, b)| l != b)
        .unwrap_or(local.len().min(bare.len()));
    let show = |v: &[String]| v.get(at).map_or("(end of file)".to_owned(), Clone::clone);
    Err(format!(
        "{} has drifted from {} (minus the wasm filter and bootstrap_extensions): first difference at meaningful line {}:\n  local:    {}\n  baseline: {}",
        bare_path.display(),
        local_path.display(),
        at + 1,
        show(&local),
        show(&bare)
    ))
}

// ---- process accounting of the rig ----------------------------------------------------------

/// CPU of the server processes the requests may touch.
#[derive(Debug, Clone, Copy, Default)]
struct RigCpu {
    /// The gateway's Envoy (with the filter).
    envoy: Cpu,
    /// The baseline Envoy (no filter).
    bare: Cpu,
    sidecar: Cpu,
    registry: Cpu,
}

impl RigCpu {
    fn read(rig: &Rig) -> RigCpu {
        let read = |pid: Option<u32>, what: &str| {
            Cpu::read(pid).unwrap_or_else(|| {
                if !stopping() {
                    eprintln!("[bench] cannot read CPU of {what} (pid {pid:?})");
                }
                Cpu::default()
            })
        };
        RigCpu {
            envoy: read(rig.stack.envoy.process.pid(), "gateway envoy"),
            bare: read(rig.bare.process.pid(), "no-filter envoy"),
            sidecar: read(rig.stack.sidecar.process.pid(), "sidecar"),
            registry: read(rig.stack.registry().process.pid(), "registry"),
        }
    }

    fn since(self, before: RigCpu) -> RigCpu {
        RigCpu {
            envoy: self.envoy.since(before.envoy),
            bare: self.bare.since(before.bare),
            sidecar: self.sidecar.since(before.sidecar),
            registry: self.registry.since(before.registry),
        }
    }

    fn add(&mut self, other: RigCpu) {
        self.envoy.add(other.envoy);
        self.bare.add(other.bare);
        self.sidecar.add(other.sidecar);
        self.registry.add(other.registry);
    }
}

fn vm_rss_kib(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// VmRSS of both Envoys, KiB.
#[derive(Debug, Clone, Copy, Default)]
struct Rss {
    bare: Option<u64>,
    gateway: Option<u64>,
}

impl Rss {
    fn read(rig: &Rig) -> Rss {
        Rss {
            bare: vm_rss_kib(rig.bare.process.pid()),
            gateway: vm_rss_kib(rig.stack.envoy.process.pid()),
        }
    }
}

fn clock_ticks_per_sec() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

/// An Envoy's downstream response counters on the registry listener (both templates use the
/// stat prefix `registry_gate`).
#[derive(Debug, Clone, Copy, Default)]
struct EnvoyRequests {
    total: u64,
    xx2: u64,
    xx4: u64,
    xx5: u64,
}

impl EnvoyRequests {
    fn read(envoy: &mut Envoy) -> EnvoyRequests {
        let stats = envoy
            .stats(r"^http\.registry_gate\.downstream_rq_(total|[1-5]xx)$")
            .unwrap_or_else(|err| panic!("read Envoy request counters: {err}"));
        let get = |suffix: &str| {
            let name = format!("http.registry_gate.downstream_rq_{suffix}");
            *stats
                .get(&name)
                .unwrap_or_else(|| panic!("Envoy lists no {name}: {stats:?}"))
        };
        EnvoyRequests {
            total: get("total"),
            xx2: get("2xx"),
            xx4: get("4xx"),
            xx5: get("5xx"),
        }
    }

    fn since(self, before: EnvoyRequests) -> EnvoyRequests {
        EnvoyRequests {
            total: self.total - before.total,
            xx2: self.xx2 - before.xx2,
            xx4: self.xx4 - before.xx4,
            xx5: self.xx5 - before.xx5,
        }
    }
}

/// Both Envoys' counters.
#[derive(Debug, Clone, Copy, Default)]
struct RigRequests {
    bare: EnvoyRequests,
    gateway: EnvoyRequests,
}

impl RigRequests {
    fn read(rig: &mut Rig) -> RigRequests {
        RigRequests {
            bare: EnvoyRequests::read(&mut rig.bare),
            gateway: EnvoyRequests::read(&mut rig.stack.envoy),
        }
    }

    fn since(self, before: RigRequests) -> RigRequests {
        RigRequests {
            bare: self.bare.since(before.bare),
            gateway: self.gateway.since(before.gateway),
        }
    }
}

// ---- part 1: skopeo pulls -------------------------------------------------------------------

#[derive(Debug, Default)]
struct PullArm {
    wall_ms: Samples,
    cpu: RigCpu,
    /// Runs of this arm, warm-up included.
    runs: u64,
}

#[derive(Debug)]
struct PullResult {
    image: OciImage,
    layer_bytes: u64,
    arms: PerArm<PullArm>,
    /// Both Envoys' downstream requests over this image's pulls (warm-up included).
    envoy_requests: RigRequests,
}

/// One `skopeo copy` into a fresh OCI layout; `Ok(wall-clock ms, CPU used)`.
fn pull_once(rig: &Rig, arm: Arm, image: &OciImage, run: &str) -> Result<(f64, RigCpu), String> {
    let stack = &rig.stack;
    let dest = stack
        .scenario
        .subdir(&format!("bench-pulls/{}-{}-{run}", arm.name(), image.tag));
    let dest_ref = format!("oci:{}:{}", dest.display(), image.tag);
    let cert_dir = stack.cert_dir().display().to_string();
    let creds = format!("{USER}:{}", stack.password(USER));
    let mut args = vec!["copy", "--preserve-digests"];
    match arm {
        Arm::Direct => args.extend(["--src-tls-verify=false", "--src-no-creds"]),
        // The same client set-up for both Envoys; only the gateway challenges.
        Arm::NoFilter | Arm::Gateway => {
            args.extend(["--src-cert-dir", &cert_dir, "--src-creds", &creds]);
        }
    }
    let src = format!("docker://{}/{}", rig.host(arm), image.reference());
    args.push(&src);
    args.push(&dest_ref);

    let mut cmd = stack.skopeo.command(&args);
    cmd.stdin(Stdio::null());
    let cpu_before = RigCpu::read(rig);
    let started = Instant::now();
    let output = cmd.output();
    let elapsed = started.elapsed();
    let cpu = RigCpu::read(rig).since(cpu_before);

    let output = output.map_err(|err| format!("run skopeo: {err}"))?;
    let result = if !output.status.success() {
        Err(format!(
            "{} pull {run} of {} failed ({}): {}",
            arm.name(),
            image.reference(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    } else {
        oci::layout_has_image(&dest, image)
            .map(|()| (elapsed.as_secs_f64() * 1e3, cpu))
            .map_err(|err| format!("{} pull {run}: {err}", arm.name()))
    };
    let _ = std::fs::remove_dir_all(&dest);
    result
}

fn bench_pulls(
    rig: &mut Rig,
    image: &OciImage,
    iterations: usize,
    failures: &mut Vec<String>,
) -> PullResult {
    let mut arms = PerArm::<PullArm>::default();
    let requests_before = RigRequests::read(rig);
    // Warm-up (page cache, skopeo's blob-info cache, Envoy's upstream connections), then
    // measured runs in rotating arm order.
    let runs = std::iter::once(None).chain((1..=iterations).map(Some));
    for (i, measured) in runs.enumerate() {
        for arm in arm_order(i) {
            if stopping() {
                break;
            }
            let label = measured.map_or("warm-up".to_owned(), |n| n.to_string());
            eprintln!(
                "[bench] pull {} {}/{iterations} {}",
                image.reference(),
                label,
                arm.name()
            );
            arms.get_mut(arm).runs += 1;
            match pull_once(rig, arm, image, &format!("{i}")) {
                Ok((ms, cpu)) => {
                    if measured.is_some() {
                        let target = arms.get_mut(arm);
                        target.wall_ms.push(ms);
                        target.cpu.add(cpu);
                    }
                }
                Err(err) if !stopping() => {
                    eprintln!("[bench] FAILED: {err}");
                    failures.push(err);
                }
                Err(_) => {}
            }
        }
    }
    let envoy_requests = if stopping() {
        RigRequests::default()
    } else {
        RigRequests::read(rig).since(requests_before)
    };
    let layer_bytes = std::fs::metadata(
        image
            .layout_dir
            .join("blobs/sha256")
            .join(image.layer_digest.trim_start_matches("sha256:")),
    )
    .map(|m| m.len())
    .unwrap_or(0);
    PullResult {
        image: image.clone(),
        layer_bytes,
        arms,
        envoy_requests,
    }
}

// ---- part 2: manifest GETs on a keep-alive connection ---------------------------------------

#[derive(Debug)]
struct Transfer {
    status: u16,
    secs: f64,
    connects: u32,
    size: u64,
    http_version: String,
}

fn parse_transfer(line: &str) -> Option<Transfer> {
    let mut it = line.split_whitespace();
    Some(Transfer {
        status: it.next()?.parse().ok()?,
        secs: it.next()?.parse().ok()?,
        connects: it.next()?.parse().ok()?,
        size: it.next()?.parse().ok()?,
        http_version: it.next()?.to_owned(),
    })
}

#[derive(Debug, Default)]
struct RequestArm {
    /// Measured requests after the block's first (for the gateway: token cache warm).
    warm_us: Samples,
    /// The first measured request of each block (for the gateway: a token the filter has
    /// never seen, so its cache misses).
    first_us: Samples,
    /// CPU over whole blocks (curl start to exit).
    cpu: RigCpu,
    /// Wall-clock seconds of those blocks (curl start to exit).
    wall_secs: f64,
    /// Requests sent in those blocks, warm-up included.
    requests_sent: u64,
    /// Measured requests that opened a new connection instead of reusing the block's one.
    reconnects: u64,
}

/// The curl `--config` text for one block: an anonymous warm-up GET of the public manifest
/// (opens the connection; TLS handshake for an Envoy), then `count` GETs of the private
/// manifest with `token`, all on that connection.
fn curl_config(base: &str, ca: Option<&Path>, token: &str, count: usize) -> String {
    let common = |out: &mut String| {
        out.push_str("http1.1\n");
        out.push_str("max-time = 30\n");
        out.push_str(&format!("header = \"Accept: {MANIFEST_MEDIA_TYPE}\"\n"));
        out.push_str(&format!("write-out = \"{WRITE_OUT}\"\n"));
        if let Some(ca) = ca {
            out.push_str(&format!("cacert = \"{}\"\n", ca.display()));
        }
    };
    let mut out = String::new();
    common(&mut out);
    out.push_str(&format!(
        "url = \"{base}/v2/library/public/manifests/latest\"\noutput = \"/dev/null\"\nnext\n"
    ));
    common(&mut out);
    out.push_str(&format!("header = \"Authorization: Bearer {token}\"\n"));
    let url =
        format!("url = \"{base}/v2/{REPOSITORY}/manifests/latest\"\noutput = \"/dev/null\"\n");
    for _ in 0..count {
        out.push_str(&url);
    }
    out
}

#[allow(
    clippy::too_many_arguments,
    reason = "one call site, every argument named"
)]
fn request_block(
    rig: &Rig,
    arm: Arm,
    block: usize,
    token: &str,
    count: usize,
    manifest_len: u64,
    result: &mut RequestArm,
    failures: &mut Vec<String>,
) {
    let (base, ca) = match arm {
        Arm::Direct => (format!("http://{}", rig.host(arm)), None),
        Arm::NoFilter | Arm::Gateway => (
            format!("https://{}", rig.host(arm)),
            Some(rig.stack.ca_cert()),
        ),
    };
    let config = rig
        .stack
        .scenario
        .file(&format!("bench-curl/{}-{block}.cfg", arm.name()));
    std::fs::write(&config, curl_config(&base, ca, token, count))
        .unwrap_or_else(|err| panic!("write {}: {err}", config.display()));
    let mut cmd = Command::new(registry_gate_tests::paths::curl());
    cmd.arg("--silent")
        .arg("--show-error")
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null());
    let cpu_before = RigCpu::read(rig);
    let started = Instant::now();
    let output = cmd.output();
    result.wall_secs += started.elapsed().as_secs_f64();
    result.cpu.add(RigCpu::read(rig).since(cpu_before));
    let output = output.unwrap_or_else(|err| panic!("run curl: {err}"));
    if stopping() {
        return;
    }

    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let label = format!("{} block {block}", arm.name());
    if lines.len() != count + 1 {
        failures.push(format!(
            "{label}: curl reported {} transfers, expected {} ({}): {}",
            lines.len(),
            count + 1,
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    result.requests_sent += lines.len() as u64;
    let mut bad = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(t) = parse_transfer(line) else {
            bad.push(format!("#{i}: unparsable {line:?}"));
            continue;
        };
        if !(200..300).contains(&t.status) || t.http_version != "1.1" {
            bad.push(format!("#{i}: HTTP/{} {}", t.http_version, t.status));
            continue;
        }
        if i == 0 {
            continue; // the warm-up
        }
        if t.size != manifest_len {
            bad.push(format!(
                "#{i}: {} body bytes, the manifest has {manifest_len}",
                t.size
            ));
            continue;
        }
        if t.connects > 0 {
            result.reconnects += 1;
        }
        let us = t.secs * 1e6;
        if i == 1 {
            result.first_us.push(us);
        } else {
            result.warm_us.push(us);
        }
    }
    if !bad.is_empty() {
        let shown: Vec<&str> = bad.iter().take(5).map(String::as_str).collect();
        failures.push(format!(
            "{label}: {} bad transfer(s): {}",
            bad.len(),
            shown.join("; ")
        ));
    }
}

#[derive(Debug, Default)]
struct RequestResult {
    arms: PerArm<RequestArm>,
    /// Both Envoys' downstream requests over part 2 (blocks, and the gateway's token fetches).
    envoy_requests: RigRequests,
    token_fetches: u64,
}

fn bench_requests(
    rig: &mut Rig,
    requests: usize,
    manifest_len: u64,
    failures: &mut Vec<String>,
) -> RequestResult {
    let mut result = RequestResult::default();
    let requests_before = RigRequests::read(rig);
    for block in 0..BLOCKS {
        if stopping() {
            break;
        }
        let count = requests / BLOCKS + usize::from(block < requests % BLOCKS);
        let order = arm_order(block);
        eprintln!(
            "[bench] requests round {}/{BLOCKS}: {count} per arm, order {}",
            block + 1,
            order.map(Arm::name).join(", ")
        );
        // A fresh token per round (outside every timed or CPU-counted window): the gateway
        // block's first request is the filter's first sight of it. The other arms send the
        // same token (the registry ignores it).
        let token = rig.stack.token(Some(USER), &[SCOPE], HttpVersion::Http1);
        result.token_fetches += 1;
        for arm in order {
            if stopping() {
                break;
            }
            request_block(
                rig,
                arm,
                block,
                &token,
                count,
                manifest_len,
                result.arms.get_mut(arm),
                failures,
            );
        }
    }
    if stopping() {
        return result;
    }
    let e = RigRequests::read(rig).since(requests_before);
    result.envoy_requests = e;
    // Each Envoy must have answered exactly what its blocks sent (plus, for the gateway, the
    // token fetches): a figure is only about the Envoy it names.
    let checks = [
        (
            "no-filter Envoy",
            e.bare,
            result.arms.nofilter.requests_sent,
            0,
        ),
        (
            "gateway Envoy",
            e.gateway,
            result.arms.gateway.requests_sent + result.token_fetches,
            result.token_fetches,
        ),
    ];
    for (what, counted, expected, tokens) in checks {
        if counted.total != expected || counted.xx2 != expected {
            failures.push(format!(
                "part 2: {what} counted {} requests ({}×2xx, {}×4xx, {}×5xx) but curl sent {expected} (incl. {tokens} token fetches), all 2xx",
                counted.total, counted.xx2, counted.xx4, counted.xx5
            ));
        }
    }
    result
}

// ---- the machine and the versions -----------------------------------------------------------

/// The first non-empty line a command prints (stdout, else stderr), or why not.
fn command_line_output(program: &Path, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(o) => {
            let text = format!(
                "{}\n{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            text.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("(no output)")
                .to_owned()
        }
        Err(err) => format!("({} failed: {err})", program.display()),
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn mem_total_gib() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or("?".to_owned(), |kib| {
            format!("{:.1}", kib / 1024.0 / 1024.0)
        })
}

/// `/proc/loadavg`'s 1, 5 and 15-minute figures.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".to_owned())
}

fn git_revision() -> String {
    let root = registry_gate_tests::paths::repo_root();
    let head = Command::new("git")
        .arg("-C")
        .arg(&root)
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let dirty = Command::new("git")
        .arg("-C")
        .arg(&root)
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .map(|o| !o.stdout.is_empty());
    match (head, dirty) {
        (Some(h), Some(true)) => format!("{h} + uncommitted changes"),
        (Some(h), _) => h,
        (None, _) => "unknown (no git)".to_owned(),
    }
}

// ---- the report -----------------------------------------------------------------------------

fn ms(v: f64) -> String {
    if v.is_nan() {
        "–".to_owned()
    } else {
        format!("{v:.1}")
    }
}

fn us(v: f64) -> String {
    if v.is_nan() {
        "–".to_owned()
    } else {
        format!("{v:.0}")
    }
}

fn ratio(gateway: f64, direct: f64) -> String {
    if gateway.is_nan() || direct.is_nan() || direct == 0.0 {
        "–".to_owned()
    } else {
        format!("{:.2}x", gateway / direct)
    }
}

fn signed(fmt: fn(f64) -> String, v: f64) -> String {
    let s = fmt(v);
    if v >= 0.0 {
        format!("+{s}")
    } else {
        s
    }
}

fn human_bytes(bytes: u64) -> String {
    if bytes >= 1024 * 1024 {
        format!("{:.2} MiB", bytes as f64 / 1024.0 / 1024.0)
    } else if bytes >= 1024 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

/// CPU per unit in the given scale: `(ticks-based, schedstat-based)`.
fn per(cpu: Cpu, n: u64, hz: u64, scale: f64) -> (f64, f64) {
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let secs_ticks = cpu.ticks as f64 / hz as f64;
    let secs_ns = cpu.ns as f64 / 1e9;
    (
        secs_ticks * scale / n as f64,
        if cpu.ns == 0 {
            f64::NAN
        } else {
            secs_ns * scale / n as f64
        },
    )
}

/// The schedstat-based figure when there is one, else the tick-based one.
fn finest((ticks, ns): (f64, f64)) -> f64 {
    if ns.is_nan() {
        ticks
    } else {
        ns
    }
}

/// One statistic of a sample set (a table row).
type Stat = fn(&Samples) -> f64;

/// The report's value columns, in order.
const COLUMNS: &str = "direct registry | Envoy, no filter | gateway (Envoy + registry-gate) | **gateway − no filter** | gateway − direct";

/// `| <lead cells> | d | n | g | g − n | g − d |`, values and differences in `fmt`.
fn row(lead: &str, d: f64, n: f64, g: f64, fmt: fn(f64) -> String) {
    println!(
        "| {lead} | {} | {} | {} | **{}** | {} |",
        fmt(d),
        fmt(n),
        fmt(g),
        signed(fmt, g - n),
        signed(fmt, g - d)
    );
}

/// Envoy CPU when it is not the one serving: its CPU over the other arms' blocks, as a rate
/// per wall-clock second of those blocks, scaled to its own blocks' duration and divided by
/// its own requests (µs per request; the noise floor under its own figure).
fn idle_floor_us(idle: Cpu, idle_wall_secs: f64, own: &RequestArm) -> f64 {
    if idle_wall_secs <= 0.0 || own.requests_sent == 0 || idle.ns == 0 {
        return f64::NAN;
    }
    let rate = idle.ns as f64 / 1e9 / idle_wall_secs;
    rate * own.wall_secs * 1e6 / own.requests_sent as f64
}

fn print_pulls(results: &[PullResult], iterations: usize, hz: u64) {
    println!(
        "## 1. Whole-image pull: `skopeo copy docker://… oci:<fresh dir>` ({iterations} per arm, arms in rotating order, 1 warm-up each)"
    );
    println!();
    println!("direct = `--src-tls-verify=false --src-no-creds` to docker-registry over plain HTTP (skopeo tries HTTPS first, then falls back). Envoy, no filter = `--src-cert-dir <ca> --src-creds alice:…` to the baseline Envoy over TLS: it never challenges, so skopeo sends no credentials and fetches no token. gateway = the same flags to the gateway Envoy: each run gets the 401 challenge, fetches a token from /v2/token through Envoy (sidecar: bcrypt cost 4 + Ed25519 signing), then pulls. So here gateway − no filter = the filter **plus** the Docker token round trips a real client pays (401 on GET /v2/, /v2/token); parts 2–3 isolate the filter. Wall clock of the whole skopeo process (start-up included). CPU rows: each server process's CPU over each measured run (per-thread schedstat run time; {} ms /proc ticks are too coarse for one pull), averaged per pull; \"idle\" = that process is not in this arm's path.", 1000 / hz.max(1));
    println!();
    println!("| image | metric | {COLUMNS} |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for r in results {
        let d = &r.arms.direct;
        let n = &r.arms.nofilter;
        let g = &r.arms.gateway;
        let name = format!(
            "`{}` (layer {})",
            r.image.reference(),
            human_bytes(r.layer_bytes)
        );
        let rows: [(&str, Stat); 4] = [
            ("min ms", Samples::min),
            ("**median ms**", Samples::median),
            ("p90 ms", |s| s.percentile(90.0)),
            ("mean ms", Samples::mean),
        ];
        for (i, (metric, stat)) in rows.iter().enumerate() {
            let first = if i == 0 { name.as_str() } else { "" };
            row(
                &format!("{first} | {metric}"),
                stat(&d.wall_ms),
                stat(&n.wall_ms),
                stat(&g.wall_ms),
                ms,
            );
        }
        let per_pull =
            |arm: &PullArm, cpu: Cpu| finest(per(cpu, arm.wall_ms.len() as u64, hz, 1e3));
        // Envoy: the arm's own Envoy (none for direct).
        let envoy_n = per_pull(n, n.cpu.bare);
        let envoy_g = per_pull(g, g.cpu.envoy);
        println!(
            "| | Envoy CPU ms/pull (the arm's Envoy) | – (no Envoy) | {} | {} | **{}** | {} |",
            ms(envoy_n),
            ms(envoy_g),
            signed(ms, envoy_g - envoy_n),
            signed(ms, envoy_g)
        );
        let side = [d, n, g].map(|a| per_pull(a, a.cpu.sidecar));
        println!(
            "| | sidecar CPU ms/pull | {} (idle) | {} (idle) | {} | **{}** | {} |",
            ms(side[0]),
            ms(side[1]),
            ms(side[2]),
            signed(ms, side[2] - side[1]),
            signed(ms, side[2] - side[0])
        );
        let reg = [d, n, g].map(|a| per_pull(a, a.cpu.registry));
        row("| registry CPU ms/pull", reg[0], reg[1], reg[2], ms);
    }
    println!();
    for r in results {
        let e = r.envoy_requests;
        let line = |what: &str, e: EnvoyRequests, runs: u64| {
            let runs_f = runs.max(1) as f64;
            format!(
                "{what} answered {} requests over {runs} runs = {:.1} per pull ({:.1}×2xx, {:.1}×4xx, {}×5xx)",
                e.total,
                e.total as f64 / runs_f,
                e.xx2 as f64 / runs_f,
                e.xx4 as f64 / runs_f,
                e.xx5
            )
        };
        println!(
            "- `{}` (warm-up included): {}; {} (4xx = the 401 challenge on GET /v2/); samples: direct {}, no filter {}, gateway {}.",
            r.image.reference(),
            line("no-filter Envoy", e.bare, r.arms.nofilter.runs),
            line("gateway Envoy", e.gateway, r.arms.gateway.runs),
            r.arms.direct.wall_ms.len(),
            r.arms.nofilter.wall_ms.len(),
            r.arms.gateway.wall_ms.len()
        );
    }
    println!();
}

fn print_requests(r: &RequestResult, requests: usize, manifest_len: u64) {
    let d = &r.arms.direct;
    let n = &r.arms.nofilter;
    let g = &r.arms.gateway;
    println!(
        "## 2. Per-request latency: sequential `GET /v2/{REPOSITORY}/manifests/latest` ({requests} per arm, {BLOCKS} rounds of one block per arm in rotating order, one keep-alive HTTP/1.1 connection per block)"
    );
    println!();
    println!("curl 7.88 with all of a block's URLs in one `--config` (connection reused, checked with `%{{num_connects}}`), `Accept: {MANIFEST_MEDIA_TYPE}`, the same `Authorization: Bearer <alice's token>` on all three arms (the registry ignores it; only the gateway's filter checks it). Latency is curl's `%{{time_total}}` per request; each block starts with an unmeasured anonymous GET of `library/public` that opens the connection (the TLS handshake for both Envoys). Every round mints a fresh token, so the gateway block's first measured request is the filter's first sight of it (token-cache miss): first requests are shown apart below, the table has the rest (gateway: token cache warm). Every measured response: 2xx, HTTP/1.1, {manifest_len}-byte manifest body.");
    println!();
    println!("| metric | {COLUMNS} |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| requests measured (2nd and later of each block) | {} | {} | {} | | |",
        d.warm_us.len(),
        n.warm_us.len(),
        g.warm_us.len()
    );
    let rows: [(&str, Stat); 5] = [
        ("min µs", Samples::min),
        ("**median µs**", Samples::median),
        ("p90 µs", |s| s.percentile(90.0)),
        ("p99 µs", |s| s.percentile(99.0)),
        ("mean µs", Samples::mean),
    ];
    for (metric, stat) in rows {
        row(
            metric,
            stat(&d.warm_us),
            stat(&n.warm_us),
            stat(&g.warm_us),
            us,
        );
    }
    println!(
        "| median vs direct | 1.00x | {} | {} | gateway / no filter = {} | |",
        ratio(n.warm_us.median(), d.warm_us.median()),
        ratio(g.warm_us.median(), d.warm_us.median()),
        ratio(g.warm_us.median(), n.warm_us.median())
    );
    println!(
        "| new connections among measured requests | {} | {} | {} | | |",
        d.reconnects, n.reconnects, g.reconnects
    );
    println!();
    println!("First measured request of each block ({BLOCKS} per arm; for the gateway a token its filter has never seen, so its token cache misses):");
    println!();
    println!("| metric | {COLUMNS} |");
    println!("|---|---:|---:|---:|---:|---:|");
    let rows: [(&str, Stat); 4] = [
        ("min µs", Samples::min),
        ("**median µs**", Samples::median),
        ("max µs", Samples::max),
        ("mean µs", Samples::mean),
    ];
    for (metric, stat) in rows {
        row(
            metric,
            stat(&d.first_us),
            stat(&n.first_us),
            stat(&g.first_us),
            us,
        );
    }
    println!();
    let e = r.envoy_requests;
    println!(
        "- no-filter Envoy over part 2: {} requests ({} block requests), {}×2xx, {}×4xx, {}×5xx.",
        e.bare.total, n.requests_sent, e.bare.xx2, e.bare.xx4, e.bare.xx5
    );
    println!(
        "- gateway Envoy over part 2: {} requests ({} block requests + {} token fetches), {}×2xx, {}×4xx, {}×5xx.",
        e.gateway.total, g.requests_sent, r.token_fetches, e.gateway.xx2, e.gateway.xx4, e.gateway.xx5
    );
    println!();
}

fn print_cost(r: &RequestResult, hz: u64, rss: &[(&str, Rss)], wasm: &Path) {
    let d = &r.arms.direct;
    let n = &r.arms.nofilter;
    let g = &r.arms.gateway;
    println!("## 3. Envoy cost of part 2, memory, artifact");
    println!();
    println!("CPU per request = Δ(utime+stime) of the process over whole curl runs (warm-up request and connection set-up included) / requests sent; /proc/<pid>/stat counts in {} ms ticks, so the per-thread schedstat run time (ns) is shown beside it as a finer cross-check. Each arm's Envoy figure is that Envoy over its own blocks. The idle-floor row is the same Envoy while the other two arms' blocks ran (timers, stats; the gateway's snapshot long-poll), as CPU per second scaled to its own blocks' duration per request: the noise under its figure.", 1000 / hz.max(1));
    println!();
    println!("| metric | direct registry | Envoy, no filter | gateway (Envoy + registry-gate) | **gateway − no filter** |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| requests sent (incl. warm-ups) | {} | {} | {} | |",
        d.requests_sent, n.requests_sent, g.requests_sent
    );
    let (n_t, n_ns) = per(n.cpu.bare, n.requests_sent, hz, 1e6);
    let (g_t, g_ns) = per(g.cpu.envoy, g.requests_sent, hz, 1e6);
    println!(
        "| **Envoy CPU µs/request** (stat) | – (no Envoy) | {} | {} | **{}** |",
        us(n_t),
        us(g_t),
        signed(us, g_t - n_t)
    );
    println!(
        "| **Envoy CPU µs/request** (schedstat) | – (no Envoy) | {} | {} | **{}** |",
        us(n_ns),
        us(g_ns),
        signed(us, g_ns - n_ns)
    );
    let mut n_idle = d.cpu.bare;
    n_idle.add(g.cpu.bare);
    let mut g_idle = d.cpu.envoy;
    g_idle.add(n.cpu.envoy);
    let n_floor = idle_floor_us(n_idle, d.wall_secs + g.wall_secs, n);
    let g_floor = idle_floor_us(g_idle, d.wall_secs + n.wall_secs, g);
    println!(
        "| Envoy idle floor µs/request (schedstat) | – | {} | {} | {} |",
        us(n_floor),
        us(g_floor),
        signed(us, g_floor - n_floor)
    );
    let total = |c: Cpu| format!("{} / {}", c.ticks * 1000 / hz.max(1), ms(c.ns as f64 / 1e6));
    println!(
        "| Envoy CPU total over its blocks, ms (stat / schedstat) | – | {} | {} | |",
        total(n.cpu.bare),
        total(g.cpu.envoy)
    );
    println!(
        "| blocks' wall clock, s | {:.2} | {:.2} | {:.2} | {} |",
        d.wall_secs,
        n.wall_secs,
        g.wall_secs,
        signed(|v| format!("{v:.2}"), g.wall_secs - n.wall_secs)
    );
    let reg = [d, n, g].map(|a| per(a.cpu.registry, a.requests_sent, hz, 1e6));
    println!(
        "| registry CPU µs/request (stat / schedstat) | {} / {} | {} / {} | {} / {} | {} |",
        us(reg[0].0),
        us(reg[0].1),
        us(reg[1].0),
        us(reg[1].1),
        us(reg[2].0),
        us(reg[2].1),
        signed(us, reg[2].1 - reg[1].1)
    );
    let mib = |v: Option<u64>| v.map_or(f64::NAN, |k| k as f64 / 1024.0);
    for (label, value) in rss {
        let (nv, gv) = (mib(value.bare), mib(value.gateway));
        println!(
            "| Envoy VmRSS {label}, MiB | – (no Envoy) | {} | {} | **{}** |",
            ms(nv),
            ms(gv),
            signed(ms, gv - nv)
        );
    }
    let size = std::fs::metadata(wasm).map(|m| m.len()).unwrap_or(0);
    println!(
        "| filter .wasm size | – | – | {size} bytes ({}) | |",
        human_bytes(size)
    );
    println!();
    let filter_cpu = g_ns - n_ns;
    let filter_lat = g.warm_us.median() - n.warm_us.median();
    println!(
        "- The filter's own cost per request (gateway − no filter, token cache warm): **{} µs median latency**, **{} µs Envoy CPU** (schedstat; {} of the gateway Envoy's {} µs). Envoy alone (no filter) costs {} µs CPU and {} µs median latency over the direct registry.",
        signed(us, filter_lat),
        signed(us, filter_cpu),
        if g_ns > 0.0 && !filter_cpu.is_nan() {
            format!("{:.0}%", 100.0 * filter_cpu / g_ns)
        } else {
            "–".to_owned()
        },
        us(g_ns),
        us(n_ns),
        signed(us, n.warm_us.median() - d.warm_us.median())
    );
    println!();
}

// ---- main -----------------------------------------------------------------------------------

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("bench_pull: {err}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // The baseline is only a baseline if it is the gateway's Envoy minus the filter.
    if let Err(err) = check_baseline_template() {
        eprintln!("bench_pull: {err}");
        return ExitCode::FAILURE;
    }
    ctrlc::set_handler(|| {
        STOP.store(true, Ordering::SeqCst);
        eprintln!("[bench] interrupted: stopping after the current step");
    })
    .expect("install the Ctrl-C / SIGTERM handler");

    let started = Instant::now();
    let hz = clock_ticks_per_sec();
    let wasm = registry_gate_tests::paths::wasm();
    let envoy_bin = registry_gate_tests::paths::envoy();
    let versions = [
        ("envoy", command_line_output(&envoy_bin, &["--version"])),
        (
            "skopeo",
            command_line_output(&registry_gate_tests::paths::skopeo(), &["--version"]),
        ),
        (
            "docker-registry",
            command_line_output(
                &registry_gate_tests::paths::docker_registry(),
                &["--version"],
            ),
        ),
        (
            "curl",
            command_line_output(&registry_gate_tests::paths::curl(), &["--version"])
                .split_whitespace()
                .take(4)
                .collect::<Vec<_>>()
                .join(" "),
        ),
    ];

    let stack = Stack::start_with(StackOptions::new("bench-pull"));
    let bare = start_bare_envoy(&stack);
    let mut rig = Rig { bare, stack };
    let rss_idle = Rss::read(&rig);

    // The big image: same repository (alice's grant covers it), its own tag, seeded straight
    // into the registry like the harness's images.
    let mut payload = vec![0u8; BIG_PAYLOAD_BYTES];
    getrandom::getrandom(&mut payload).unwrap_or_else(|err| panic!("OS RNG: {err}"));
    let layout = rig.stack.scenario.subdir("images/team_private-big");
    let big = oci::build_layout_with_payload(&layout, REPOSITORY, BIG_TAG, &payload);
    drop(payload);
    rig.stack.registry().push(&rig.stack.skopeo, &big);
    let small = rig.stack.image(&format!("{REPOSITORY}:latest")).clone();

    let mut failures = Vec::new();
    let mut pulls = Vec::new();
    for image in [&small, &big] {
        if stopping() {
            break;
        }
        pulls.push(bench_pulls(&mut rig, image, args.iterations, &mut failures));
    }
    let rss_after_pulls = Rss::read(&rig);
    let requests = if stopping() {
        RequestResult::default()
    } else {
        bench_requests(
            &mut rig,
            args.requests,
            small.manifest.len() as u64,
            &mut failures,
        )
    };
    let rss_after = Rss::read(&rig);

    if stopping() {
        eprintln!("[bench] interrupted: no report; stopping the stack");
        drop(rig);
        return ExitCode::from(130);
    }

    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("# bench_pull: a pull through registry-gate vs. the same Envoy without it vs. straight from the registry");
    println!();
    println!(
        "- machine: {nproc} CPUs ({}), {} GiB RAM, Linux {}; load average at report time {}; nothing pinned, every process on loopback on this machine",
        cpu_model(),
        mem_total_gib(),
        command_line_output(Path::new("uname"), &["-r"]),
        load_average()
    );
    for (name, version) in &versions {
        println!("- {name}: {version}");
    }
    println!(
        "- registry-gate {}; filter {} ({} bytes); docker-registry filesystem storage, access log on; sidecar + Redis",
        git_revision(),
        wasm.display(),
        std::fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0)
    );
    println!(
        "- two Envoys, both `--concurrency 2 --log-level info --file-flush-interval-msec 100`, access log to a file, same registry: gateway = `envoy/local/envoy.yaml` (wasm filter + bootstrap fetcher); no filter = `{NOFILTER_TEMPLATE}` (the same bootstrap minus those two, checked at start-up)"
    );
    println!(
        "- run: `bench_pull --iterations {} --requests {}`",
        args.iterations, args.requests
    );
    println!();
    print_pulls(&pulls, args.iterations, hz);
    print_requests(&requests, args.requests, small.manifest.len() as u64);
    print_cost(
        &requests,
        hz,
        &[
            ("idle after start", rss_idle),
            ("after part 1", rss_after_pulls),
            ("after part 2 (end of run)", rss_after),
        ],
        &wasm,
    );

    let elapsed = started.elapsed();
    let status = if failures.is_empty() {
        println!(
            "All measured requests succeeded (2xx). Run took {:.1} s (stack start to report).",
            elapsed.as_secs_f64()
        );
        ExitCode::SUCCESS
    } else {
        println!(
            "**{} FAILURE(S) — figures above exclude them and must not be used:**",
            failures.len()
        );
        for f in &failures {
            println!("- {f}");
        }
        // Keep the scenario directory (logs) for a look; the guards still stop everything.
        std::env::set_var("REGISTRY_GATE_KEEP", "1");
        rig.print_logs();
        ExitCode::FAILURE
    };
    drop(rig);
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The baseline template in the tree is the local one minus the filter: this runs with
    /// the e2e crate's tests, so a drift fails CI, not only `make bench`.
    #[test]
    fn baseline_template_is_the_local_one_minus_the_filter() {
        check_baseline_template().unwrap();
    }

    #[test]
    fn template_lines_strip_the_wasm_blocks_and_comments() {
        let text = "\
admin: {}
# comment
bootstrap_extensions:
  - name: envoy.bootstrap.wasm
    typed_config: {}

static_resources:
  http_filters:
    - name: envoy.filters.http.wasm
      typed_config:
        config: {}
    - name: envoy.filters.http.router   \n";
        assert_eq!(
            template_lines(text, true),
            [
                "admin: {}",
                "static_resources:",
                "  http_filters:",
                "    - name: envoy.filters.http.router"
            ]
        );
        assert_eq!(template_lines(text, false).len(), 10);
    }

    #[test]
    fn arm_order_rotates_through_every_position() {
        assert_eq!(arm_order(0), [Arm::Direct, Arm::NoFilter, Arm::Gateway]);
        assert_eq!(arm_order(1), [Arm::NoFilter, Arm::Gateway, Arm::Direct]);
        assert_eq!(arm_order(2), [Arm::Gateway, Arm::Direct, Arm::NoFilter]);
        assert_eq!(arm_order(3), arm_order(0));
    }
}
