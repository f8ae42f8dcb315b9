//! `make bench`: what a pull through registry-gate costs, measured in one run on one stack and
//! printed next to the same pull straight from the registry (the baseline).
//!
//! 1. Whole-image pulls with real skopeo: `team/private:latest` (the harness's tiny image) and
//!    `team/private:big` (seeded here with a 4 MiB random layer). Through Envoy with
//!    `--src-creds`, so every run pays for the 401 challenge and a `/v2/token` fetch as a real
//!    client does, versus the registry directly over plain HTTP with no auth. Runs alternate
//!    direct, gateway, direct, gateway… after one warm-up of each.
//! 2. Per-request latency: sequential `GET /v2/team/private/manifests/latest` on one
//!    keep-alive HTTP/1.1 connection per block (curl, many URLs in one `--config`), through
//!    Envoy (TLS, bearer token) versus the registry (plain HTTP). Each gateway block uses a
//!    freshly minted token, so its first request misses the filter's token cache (reported
//!    apart) and the rest hit it. Direct and gateway blocks alternate.
//! 3. Envoy CPU per request for part 2 (`/proc/<pid>/stat` utime+stime deltas, and the
//!    per-thread `schedstat` run time as a finer cross-check), Envoy's VmRSS, the wasm size.
//!
//! It must never report a figure built on failed requests: any non-2xx answer, failed pull or
//! short curl run is listed and makes the exit status 1. It must never leave a process
//! behind: the harness guards stop everything on return, Ctrl-C / SIGTERM end the run at the
//! next step, and a panic (the release profile aborts, so guards would not run) first stops
//! every child process of this one from the panic hook.
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
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use registry_gate_tests::oci::{self, OciImage, MANIFEST_MEDIA_TYPE};
use registry_gate_tests::{HttpVersion, Stack, StackOptions};

const DEFAULT_ITERATIONS: usize = 20;
const DEFAULT_REQUESTS: usize = 2000;
/// Part 2 runs in this many direct/gateway block pairs (one connection, one token each).
const BLOCKS: usize = 10;
/// Size of the random payload in the big image's layer.
const BIG_PAYLOAD_BYTES: usize = 4 * 1024 * 1024;
const REPOSITORY: &str = "team/private";
const BIG_TAG: &str = "big";
const USER: &str = "alice";
const SCOPE: &str = "repository:team/private:pull";
/// curl's per-transfer line: status, seconds, new connections, body bytes, protocol.
const WRITE_OUT: &str =
    r"%{http_code} %{time_total} %{num_connects} %{size_download} %{http_version}\n";

/// Set by Ctrl-C / SIGTERM: finish the current step, then stop.
static STOP: AtomicBool = AtomicBool::new(false);
/// The scenario directory, for the panic hook's message.
static SCENARIO_DIR: OnceLock<PathBuf> = OnceLock::new();

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
  --iterations N  skopeo pulls per arm and image (default 20; env BENCH_ITERATIONS)
  --requests M    manifest GETs per arm, at least 20 (default 2000; env BENCH_REQUESTS)";

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

/// CPU of the stack's three server processes the requests touch.
#[derive(Debug, Clone, Copy, Default)]
struct StackCpu {
    envoy: Cpu,
    sidecar: Cpu,
    registry: Cpu,
}

impl StackCpu {
    fn read(stack: &Stack) -> StackCpu {
        let read = |pid: Option<u32>, what: &str| {
            Cpu::read(pid).unwrap_or_else(|| {
                if !stopping() {
                    eprintln!("[bench] cannot read CPU of {what} (pid {pid:?})");
                }
                Cpu::default()
            })
        };
        StackCpu {
            envoy: read(stack.envoy.process.pid(), "envoy"),
            sidecar: read(stack.sidecar.process.pid(), "sidecar"),
            registry: read(stack.registry.process.pid(), "registry"),
        }
    }

    fn since(self, before: StackCpu) -> StackCpu {
        StackCpu {
            envoy: self.envoy.since(before.envoy),
            sidecar: self.sidecar.since(before.sidecar),
            registry: self.registry.since(before.registry),
        }
    }

    fn add(&mut self, other: StackCpu) {
        self.envoy.add(other.envoy);
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

fn clock_ticks_per_sec() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

/// Envoy's downstream response counters on the registry listener.
#[derive(Debug, Clone, Copy, Default)]
struct EnvoyRequests {
    total: u64,
    xx2: u64,
    xx4: u64,
    xx5: u64,
}

impl EnvoyRequests {
    fn read(stack: &mut Stack) -> EnvoyRequests {
        let stats = stack
            .envoy
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

// ---- part 1: skopeo pulls -------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arm {
    Direct,
    Gateway,
}

impl Arm {
    fn name(self) -> &'static str {
        match self {
            Arm::Direct => "direct",
            Arm::Gateway => "gateway",
        }
    }
}

#[derive(Debug, Default)]
struct PullArm {
    wall_ms: Samples,
    cpu: StackCpu,
}

#[derive(Debug)]
struct PullResult {
    image: OciImage,
    layer_bytes: u64,
    direct: PullArm,
    gateway: PullArm,
    /// Envoy's downstream requests over this image's gateway pulls (warm-up included).
    envoy_requests: EnvoyRequests,
    gateway_runs: u64,
}

/// One `skopeo copy` into a fresh OCI layout; `Ok(wall-clock ms, CPU used)`.
fn pull_once(
    stack: &Stack,
    arm: Arm,
    image: &OciImage,
    run: &str,
) -> Result<(f64, StackCpu), String> {
    let dest = stack
        .scenario
        .subdir(&format!("bench-pulls/{}-{}-{run}", arm.name(), image.tag));
    let dest_ref = format!("oci:{}:{}", dest.display(), image.tag);
    let cert_dir = stack.cert_dir().display().to_string();
    let creds = format!("{USER}:{}", stack.password(USER));
    let mut args = vec!["copy", "--preserve-digests"];
    let src = match arm {
        Arm::Direct => {
            args.extend(["--src-tls-verify=false", "--src-no-creds"]);
            format!("docker://{}/{}", stack.registry.host(), image.reference())
        }
        Arm::Gateway => {
            args.extend(["--src-cert-dir", &cert_dir, "--src-creds", &creds]);
            format!("docker://{}/{}", stack.host(), image.reference())
        }
    };
    args.push(&src);
    args.push(&dest_ref);

    let mut cmd = stack.skopeo.command(&args);
    cmd.stdin(Stdio::null());
    let cpu_before = StackCpu::read(stack);
    let started = Instant::now();
    let output = cmd.output();
    let elapsed = started.elapsed();
    let cpu = StackCpu::read(stack).since(cpu_before);

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
    stack: &mut Stack,
    image: &OciImage,
    iterations: usize,
    failures: &mut Vec<String>,
) -> PullResult {
    let mut direct = PullArm::default();
    let mut gateway = PullArm::default();
    let envoy_before = EnvoyRequests::read(stack);
    let mut gateway_runs = 0;
    // Warm-up (page cache, skopeo's blob-info cache, Envoy's upstream connections), then
    // measured runs alternating direct, gateway.
    let runs = std::iter::once(None).chain((1..=iterations).map(Some));
    for (i, measured) in runs.enumerate() {
        for arm in [Arm::Direct, Arm::Gateway] {
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
            if arm == Arm::Gateway {
                gateway_runs += 1;
            }
            match pull_once(stack, arm, image, &format!("{i}")) {
                Ok((ms, cpu)) => {
                    if measured.is_some() {
                        let target = match arm {
                            Arm::Direct => &mut direct,
                            Arm::Gateway => &mut gateway,
                        };
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
        EnvoyRequests::default()
    } else {
        EnvoyRequests::read(stack).since(envoy_before)
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
        direct,
        gateway,
        envoy_requests,
        gateway_runs,
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
    cpu: StackCpu,
    /// Requests sent in those blocks, warm-up included.
    requests_sent: u64,
    /// Measured requests that opened a new connection instead of reusing the block's one.
    reconnects: u64,
}

impl RequestArm {
    fn all_us(&self) -> Samples {
        Samples(
            self.first_us
                .0
                .iter()
                .chain(&self.warm_us.0)
                .copied()
                .collect(),
        )
    }
}

/// The curl `--config` text for one block: an anonymous warm-up GET of the public manifest
/// (opens the connection; TLS handshake for the gateway), then `count` GETs of the private
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
    stack: &Stack,
    arm: Arm,
    block: usize,
    token: &str,
    count: usize,
    manifest_len: u64,
    result: &mut RequestArm,
    failures: &mut Vec<String>,
) {
    let (base, ca) = match arm {
        Arm::Direct => (format!("http://{}", stack.registry.host()), None),
        Arm::Gateway => (stack.base_url(), Some(stack.ca_cert())),
    };
    let config = stack
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
    let cpu_before = StackCpu::read(stack);
    let output = cmd.output();
    result.cpu.add(StackCpu::read(stack).since(cpu_before));
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
    direct: RequestArm,
    gateway: RequestArm,
    /// Envoy's downstream requests over part 2 (gateway blocks and token fetches).
    envoy_requests: EnvoyRequests,
    token_fetches: u64,
}

fn bench_requests(
    stack: &mut Stack,
    requests: usize,
    manifest_len: u64,
    failures: &mut Vec<String>,
) -> RequestResult {
    let mut result = RequestResult::default();
    let envoy_before = EnvoyRequests::read(stack);
    for block in 0..BLOCKS {
        if stopping() {
            break;
        }
        let count = requests / BLOCKS + usize::from(block < requests % BLOCKS);
        eprintln!(
            "[bench] requests block {}/{BLOCKS}: {count} direct, {count} gateway",
            block + 1
        );
        // A fresh token per block (outside every timed or CPU-counted window): the gateway
        // block's first request is the filter's first sight of it.
        let token = stack.token(Some(USER), &[SCOPE], HttpVersion::Http1);
        result.token_fetches += 1;
        for arm in [Arm::Direct, Arm::Gateway] {
            let target = match arm {
                Arm::Direct => &mut result.direct,
                Arm::Gateway => &mut result.gateway,
            };
            request_block(
                stack,
                arm,
                block,
                &token,
                count,
                manifest_len,
                target,
                failures,
            );
        }
    }
    if !stopping() {
        result.envoy_requests = EnvoyRequests::read(stack).since(envoy_before);
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

fn print_pulls(results: &[PullResult], iterations: usize, hz: u64) {
    println!(
        "## 1. Whole-image pull: `skopeo copy docker://… oci:<fresh dir>` ({iterations} per arm, direct/gateway alternating, 1 warm-up each)"
    );
    println!();
    println!("direct = `--src-tls-verify=false --src-no-creds` to docker-registry over plain HTTP (skopeo tries HTTPS first, then falls back); gateway = `--src-cert-dir <ca> --src-creds alice:…` to Envoy over TLS: each run gets the 401 challenge, fetches a token from /v2/token through Envoy (sidecar: bcrypt cost 4 + Ed25519 signing), then pulls. Wall clock of the whole skopeo process (start-up included). CPU rows: each server process's CPU over each measured run (per-thread schedstat run time; 10 ms /proc ticks are too coarse for one pull), averaged per pull.");
    println!();
    println!("| image | metric | direct registry (baseline) | through gateway | gateway − direct | gateway / direct |");
    println!("|---|---|---:|---:|---:|---:|");
    for r in results {
        let d = &r.direct.wall_ms;
        let g = &r.gateway.wall_ms;
        let name = format!(
            "`{}` (layer {})",
            r.image.reference(),
            human_bytes(r.layer_bytes)
        );
        let rows: [(&str, f64, f64); 4] = [
            ("min ms", d.min(), g.min()),
            ("**median ms**", d.median(), g.median()),
            ("p90 ms", d.percentile(90.0), g.percentile(90.0)),
            ("mean ms", d.mean(), g.mean()),
        ];
        for (i, (metric, dv, gv)) in rows.iter().enumerate() {
            let first = if i == 0 { name.as_str() } else { "" };
            println!(
                "| {first} | {metric} | {} | {} | {} | {} |",
                ms(*dv),
                ms(*gv),
                signed(ms, gv - dv),
                ratio(*gv, *dv)
            );
        }
        let dn = d.len() as u64;
        let gn = g.len() as u64;
        let cpu_rows: [(&str, Cpu, Cpu); 3] = [
            ("Envoy CPU ms/pull", Cpu::default(), r.gateway.cpu.envoy),
            ("sidecar CPU ms/pull", Cpu::default(), r.gateway.cpu.sidecar),
            (
                "registry CPU ms/pull",
                r.direct.cpu.registry,
                r.gateway.cpu.registry,
            ),
        ];
        for (metric, dc, gc) in cpu_rows {
            let dv = finest(per(dc, dn, hz, 1e3));
            let gv = finest(per(gc, gn, hz, 1e3));
            let direct_cell = if metric.starts_with("registry") {
                ms(dv)
            } else {
                "– (not in path)".to_owned()
            };
            let dv0 = if metric.starts_with("registry") {
                dv
            } else {
                0.0
            };
            println!(
                "| | {metric} | {direct_cell} | {} | {} | {} |",
                ms(gv),
                signed(ms, gv - dv0),
                if metric.starts_with("registry") {
                    ratio(gv, dv)
                } else {
                    "–".to_owned()
                }
            );
        }
    }
    println!();
    for r in results {
        let e = r.envoy_requests;
        let runs = r.gateway_runs.max(1) as f64;
        println!(
            "- `{}` gateway pulls (warm-up included, {} runs): Envoy answered {} requests = {:.1} per pull ({:.1}×2xx, {:.1}×4xx = the 401 challenge on GET /v2/, {}×5xx); samples: direct {}, gateway {}.",
            r.image.reference(),
            r.gateway_runs,
            e.total,
            e.total as f64 / runs,
            e.xx2 as f64 / runs,
            e.xx4 as f64 / runs,
            e.xx5,
            r.direct.wall_ms.len(),
            r.gateway.wall_ms.len()
        );
    }
    println!();
}

fn print_requests(r: &RequestResult, requests: usize, manifest_len: u64, hz: u64) {
    let d = r.direct.all_us();
    let gw = &r.gateway.warm_us;
    let gc = &r.gateway.first_us;
    println!(
        "## 2. Per-request latency: sequential `GET /v2/{REPOSITORY}/manifests/latest` ({requests} per arm, {BLOCKS} direct/gateway block pairs, one keep-alive HTTP/1.1 connection per block)"
    );
    println!();
    println!("curl 7.88 with all of a block's URLs in one `--config` (connection reused, checked with `%{{num_connects}}`), `Accept: {MANIFEST_MEDIA_TYPE}`, `Authorization: Bearer <alice's token>` on both arms (the registry ignores it). Latency is curl's `%{{time_total}}` per request; each block starts with an unmeasured anonymous GET of `library/public` that opens the connection (the TLS handshake for the gateway). Every measured response: 2xx, HTTP/1.1, {manifest_len}-byte manifest body.");
    println!();
    println!("| metric | direct registry (baseline) | gateway, token cache warm | gateway, fresh token (cache miss) |");
    println!("|---|---:|---:|---:|");
    println!(
        "| requests measured | {} | {} | {} |",
        d.len(),
        gw.len(),
        gc.len()
    );
    let rows: [(&str, f64, f64, f64); 5] = [
        ("min µs", d.min(), gw.min(), gc.min()),
        ("**median µs**", d.median(), gw.median(), gc.median()),
        (
            "p90 µs",
            d.percentile(90.0),
            gw.percentile(90.0),
            gc.percentile(90.0),
        ),
        (
            "p99 µs",
            d.percentile(99.0),
            gw.percentile(99.0),
            gc.percentile(99.0),
        ),
        ("mean µs", d.mean(), gw.mean(), gc.mean()),
    ];
    for (metric, dv, wv, cv) in rows {
        println!("| {metric} | {} | {} | {} |", us(dv), us(wv), us(cv));
    }
    println!(
        "| **median vs direct** | 1.00x | {} ({} µs) | {} ({} µs) |",
        ratio(gw.median(), d.median()),
        signed(us, gw.median() - d.median()),
        ratio(gc.median(), d.median()),
        signed(us, gc.median() - d.median())
    );
    println!(
        "| mean vs direct | 1.00x | {} | {} |",
        ratio(gw.mean(), d.mean()),
        ratio(gc.mean(), d.mean())
    );
    println!(
        "| new connections among measured requests | {} | {} | – |",
        r.direct.reconnects, r.gateway.reconnects
    );
    println!();
    let e = r.envoy_requests;
    println!(
        "- Envoy over part 2: {} requests ({} gateway-block requests + {} token fetches), {}×2xx, {}×4xx, {}×5xx.",
        e.total, r.gateway.requests_sent, r.token_fetches, e.xx2, e.xx4, e.xx5
    );
    println!();

    println!("## 3. Envoy cost of part 2, memory, artifact");
    println!();
    let dn = r.direct.requests_sent;
    let gn = r.gateway.requests_sent;
    let (env_t, env_ns) = per(r.gateway.cpu.envoy, gn, hz, 1e6);
    let (idle_t, idle_ns) = per(r.direct.cpu.envoy, dn, hz, 1e6);
    let (reg_d_t, reg_d_ns) = per(r.direct.cpu.registry, dn, hz, 1e6);
    let (reg_g_t, reg_g_ns) = per(r.gateway.cpu.registry, gn, hz, 1e6);
    println!("CPU per request = Δ(utime+stime) of the process over whole curl runs (warm-up request and connection set-up included) / requests sent; /proc/<pid>/stat counts in {} ms ticks, so the per-thread schedstat run time (ns) is shown beside it as a finer cross-check. The direct column's Envoy figure is Envoy sitting idle (snapshot long-poll, stats) over the direct blocks: the noise floor of the gateway figure.", 1000 / hz.max(1));
    println!();
    println!("| metric | direct registry (baseline) | through gateway | gateway − direct |");
    println!("|---|---:|---:|---:|");
    println!("| requests sent (incl. warm-ups) | {dn} | {gn} | |");
    println!(
        "| **Envoy CPU µs/request** (stat) | {} (idle) | {} | {} |",
        us(idle_t),
        us(env_t),
        signed(us, env_t - idle_t)
    );
    println!(
        "| Envoy CPU µs/request (schedstat) | {} (idle) | {} | {} |",
        us(idle_ns),
        us(env_ns),
        signed(us, env_ns - idle_ns)
    );
    println!(
        "| Envoy CPU total over the blocks, ms (stat / schedstat) | {} / {} | {} / {} | |",
        r.direct.cpu.envoy.ticks * 1000 / hz.max(1),
        ms(r.direct.cpu.envoy.ns as f64 / 1e6),
        r.gateway.cpu.envoy.ticks * 1000 / hz.max(1),
        ms(r.gateway.cpu.envoy.ns as f64 / 1e6)
    );
    println!(
        "| registry CPU µs/request (stat / schedstat) | {} / {} | {} / {} | {} |",
        us(reg_d_t),
        us(reg_d_ns),
        us(reg_g_t),
        us(reg_g_ns),
        signed(us, reg_g_ns - reg_d_ns)
    );
}

fn print_memory(rss: &[(&str, Option<u64>)], wasm: &Path) {
    let mib = |v: Option<u64>| v.map_or("?".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0));
    for (label, value) in rss {
        println!(
            "| Envoy VmRSS {label}, MiB | – (no Envoy) | {} | |",
            mib(*value)
        );
    }
    let size = std::fs::metadata(wasm).map(|m| m.len()).unwrap_or(0);
    println!(
        "| filter .wasm size | – | {size} bytes ({}) | |",
        human_bytes(size)
    );
    println!();
}

// ---- cleanup on panic -----------------------------------------------------------------------

/// Direct children of this process (the harness's servers, a running skopeo or curl).
fn child_pids() -> Vec<u32> {
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            stat_fields(*pid).is_some_and(|f| {
                f.get(1).map(String::as_str) == Some(me.as_str())
                    && f.first().map(String::as_str) != Some("Z")
            })
        })
        .collect()
}

fn signal(sig: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(sig)
        .args(pids.iter().map(u32::to_string))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The release profile aborts on panic, so the harness guards never drop: stop the children
/// here (SIGTERM, then SIGKILL after 3 s), before the abort.
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        let pids = child_pids();
        eprintln!("[bench] panic: stopping child processes {pids:?}");
        signal("-TERM", &pids);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && !child_pids().is_empty() {
            std::thread::sleep(Duration::from_millis(50));
        }
        signal("-KILL", &child_pids());
        if let Some(dir) = SCENARIO_DIR.get() {
            eprintln!("[bench] logs and state kept in {}", dir.display());
        }
    }));
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
    install_panic_hook();
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

    let mut stack = Stack::start_with(StackOptions::new("bench-pull"));
    let _ = SCENARIO_DIR.set(stack.dir().to_path_buf());
    let rss_idle = vm_rss_kib(stack.envoy.process.pid());

    // The big image: same repository (alice's grant covers it), its own tag, seeded straight
    // into the registry like the harness's images.
    let mut payload = vec![0u8; BIG_PAYLOAD_BYTES];
    getrandom::getrandom(&mut payload).unwrap_or_else(|err| panic!("OS RNG: {err}"));
    let layout = stack.scenario.subdir("images/team_private-big");
    let big = oci::build_layout_with_payload(&layout, REPOSITORY, BIG_TAG, &payload);
    drop(payload);
    stack.registry.push(&stack.skopeo, &big);
    let small = stack.image(&format!("{REPOSITORY}:latest")).clone();

    let mut failures = Vec::new();
    let mut pulls = Vec::new();
    for image in [&small, &big] {
        if stopping() {
            break;
        }
        pulls.push(bench_pulls(
            &mut stack,
            image,
            args.iterations,
            &mut failures,
        ));
    }
    let rss_after_pulls = vm_rss_kib(stack.envoy.process.pid());
    let requests = if stopping() {
        RequestResult::default()
    } else {
        bench_requests(
            &mut stack,
            args.requests,
            small.manifest.len() as u64,
            &mut failures,
        )
    };
    let rss_after = vm_rss_kib(stack.envoy.process.pid());

    if stopping() {
        eprintln!("[bench] interrupted: no report; stopping the stack");
        drop(stack);
        return ExitCode::from(130);
    }

    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("# bench_pull: a pull through registry-gate vs. straight from the registry");
    println!();
    println!(
        "- machine: {nproc} CPUs ({}), {} GiB RAM, Linux {}; nothing pinned, every process on loopback on this machine",
        cpu_model(),
        mem_total_gib(),
        command_line_output(Path::new("uname"), &["-r"])
    );
    for (name, version) in &versions {
        println!("- {name}: {version}");
    }
    println!(
        "- registry-gate {}; filter {} ({} bytes); Envoy `--concurrency 2 --log-level info`, access log to a file; docker-registry filesystem storage, access log on; sidecar + Redis",
        git_revision(),
        wasm.display(),
        std::fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0)
    );
    println!(
        "- run: `bench_pull --iterations {} --requests {}`",
        args.iterations, args.requests
    );
    println!();
    print_pulls(&pulls, args.iterations, hz);
    print_requests(&requests, args.requests, small.manifest.len() as u64, hz);
    print_memory(
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
        stack.print_logs();
        ExitCode::FAILURE
    };
    drop(stack);
    status
}
