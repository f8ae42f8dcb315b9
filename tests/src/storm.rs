//! Login storms: many `podman login`s at once against a stack, or bursts of many more
//! `/v2/token` logins from curl, and the latency figures they leave behind — each client's
//! own wall time and the gateway's time to answer `/v2/token` (Envoy's access-log
//! `duration_ms`, which excludes the clients' own start-up).
//!
//! Shared by the storm test (correctness under load), the stress suite (curl bursts),
//! `bench_login` (the figures side by side) and `bench_scale` (1,000 concurrent logins). It only runs clients and reads logs; what a storm must achieve is the caller's to
//! assert.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::katello::{KatelloOptions, KatelloStandIn, KatelloUser, Refusal};
use crate::scenario::Scenario;
use crate::sidecar::SidecarExtra;
use crate::stack::Stack;

/// One `podman login`.
#[derive(Debug, Clone)]
pub struct LoginRun {
    pub user: String,
    pub ok: bool,
    pub wall: Duration,
    /// podman's stderr when it failed.
    pub error: String,
}

/// Runs one `podman login` per `(user, password)`, all at once, each with its own auth file
/// and runtime directory under `dir`, trusting the stack's CA. The clients run at the lowest
/// CPU priority (`nice -n 19`): on a real site they run on other machines, and here a hundred
/// of them would otherwise starve the gateway they measure of the machine's two cores.
pub fn podman_logins(stack: &Stack, dir: &Path, logins: &[(String, String)]) -> Vec<LoginRun> {
    let podman = crate::paths::podman();
    let host = stack.host();
    let cert_dir = stack.cert_dir().to_path_buf();
    std::thread::scope(|scope| {
        let runs: Vec<_> = logins
            .iter()
            .enumerate()
            .map(|(i, (user, password))| {
                let (podman, host, cert_dir) = (&podman, &host, &cert_dir);
                scope.spawn(move || {
                    let run_dir = dir.join(format!("podman-{i}"));
                    std::fs::create_dir_all(&run_dir)
                        .unwrap_or_else(|err| panic!("create {}: {err}", run_dir.display()));
                    let started = Instant::now();
                    let output = Command::new("nice")
                        .args(["-n", "19"])
                        .arg(podman)
                        .arg("login")
                        .arg("--cert-dir")
                        .arg(cert_dir)
                        .arg("--authfile")
                        .arg(run_dir.join("auth.json"))
                        .arg("--username")
                        .arg(user)
                        .arg("--password-stdin")
                        .arg(host)
                        .env("XDG_RUNTIME_DIR", &run_dir)
                        .stdin(std::process::Stdio::piped())
                        .stdout(std::process::Stdio::piped())
                        .stderr(std::process::Stdio::piped())
                        .spawn()
                        .and_then(|mut child| {
                            if let Some(mut stdin) = child.stdin.take() {
                                use std::io::Write as _;
                                stdin.write_all(password.as_bytes())?;
                            }
                            child.wait_with_output()
                        })
                        .unwrap_or_else(|err| panic!("run {}: {err}", podman.display()));
                    LoginRun {
                        user: user.clone(),
                        ok: output.status.success(),
                        wall: started.elapsed(),
                        error: String::from_utf8_lossy(&output.stderr).into_owned(),
                    }
                })
            })
            .collect();
        runs.into_iter()
            .map(|run| {
                run.join()
                    .unwrap_or_else(|_| panic!("a podman login thread panicked"))
            })
            .collect()
    })
}

/// Where a curl login burst goes: `GET <base_url>/v2/token?service=…&scope=repository:
/// <repository>:pull` with Basic credentials, trusting `ca`; curl's config files go in `dir`.
#[derive(Debug, Clone, Copy)]
pub struct CurlBurst<'a> {
    pub base_url: &'a str,
    pub ca: &'a Path,
    pub repository: &'a str,
    pub dir: &'a Path,
    /// The local address curl sends from (`--interface`), e.g. another loopback address;
    /// `None`: the system's choice.
    pub interface: Option<&'a str>,
}

/// One `/v2/token` login of a curl burst: the status (0 when no response arrived) and curl's
/// `time_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurlLogin {
    pub status: u16,
    pub duration: Duration,
}

/// What one bcrypt verification at `cost` takes here (the best of three runs): with the
/// CPUs the sidecar verifies on, the floor of a burst of distinct logins.
pub fn bcrypt_verify_time(cost: u32) -> Duration {
    let hash = bcrypt::hash("registry-gate-floor", cost)
        .unwrap_or_else(|err| panic!("bcrypt at cost {cost}: {err}"));
    (0..3)
        .map(|_| {
            let started = std::time::Instant::now();
            let _ = bcrypt::verify("registry-gate-floor", &hash);
            started.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// The most transfers curl runs in parallel in one process.
const CURL_PARALLEL_MAX: usize = 250;

/// `count` logins at once, cycling through `logins`, as `podman login`-sized `/v2/token`
/// requests from curl (all transfers in parallel: several curl processes started together,
/// since one runs at most a few hundred at once). Returns every transfer's outcome and curl's
/// error messages counted (digits taken out, so "after 14 ms" and ports count as one).
pub fn curl_logins(
    burst: &CurlBurst<'_>,
    logins: &[(String, String)],
    count: usize,
) -> (Vec<CurlLogin>, BTreeMap<String, usize>) {
    if logins.is_empty() {
        return (Vec::new(), BTreeMap::new());
    }
    std::fs::create_dir_all(burst.dir)
        .unwrap_or_else(|err| panic!("create {}: {err}", burst.dir.display()));
    let children: Vec<std::process::Child> = (0..count)
        .collect::<Vec<_>>()
        .chunks(CURL_PARALLEL_MAX)
        .enumerate()
        .map(|(part, numbers)| {
            let config = burst.dir.join(format!("logins-{part}.curl"));
            let text: Vec<String> = numbers
                .iter()
                .filter_map(|n| logins.get(n % logins.len()))
                .map(|(user, password)| {
                    format!(
                        "url = \"{}/v2/token?service={}&scope=repository:{}:pull\"\n\
                         user = \"{user}:{password}\"\ncacert = \"{}\"\n\
                         output = \"/dev/null\"\nmax-time = 30\n\
                         write-out = \"%{{http_code}} %{{time_total}}\\n\"\n{}",
                        burst.base_url,
                        crate::sidecar::SERVICE,
                        burst.repository,
                        burst.ca.display(),
                        burst
                            .interface
                            .map(|address| format!("interface = \"{address}\"\n"))
                            .unwrap_or_default(),
                    )
                })
                .collect();
            // `next` separates transfers (after the last it would start an empty one).
            std::fs::write(&config, text.join("next\n"))
                .unwrap_or_else(|err| panic!("write {}: {err}", config.display()));
            Command::new(crate::paths::curl())
                .args([
                    "--silent",
                    "--show-error",
                    "--parallel",
                    "--parallel-immediate",
                ])
                .arg("--parallel-max")
                .arg(numbers.len().to_string())
                .arg("--config")
                .arg(&config)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap_or_else(|err| panic!("run curl: {err}"))
        })
        .collect();
    let mut outcomes = Vec::new();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for child in children {
        let output = child
            .wait_with_output()
            .unwrap_or_else(|err| panic!("wait for curl: {err}"));
        for line in String::from_utf8_lossy(&output.stderr)
            .lines()
            .filter(|l| l.starts_with("curl:"))
        {
            let message: String = line.chars().filter(|c| !c.is_ascii_digit()).collect();
            *errors.entry(message).or_default() += 1;
        }
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let mut words = line.split_whitespace();
            let status = words.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            let seconds: f64 = words.next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
            outcomes.push(CurlLogin {
                status,
                duration: Duration::from_secs_f64(seconds.max(0.0)),
            });
        }
    }
    (outcomes, errors)
}

/// Envoy's `duration_ms` of every `/v2/token` request in the access log after the first
/// `skip` lines, with its status.
pub fn token_durations(stack: &Stack, skip: usize) -> Vec<(u16, Duration)> {
    stack
        .envoy
        .access_log()
        .iter()
        .skip(skip)
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|word| *word == "/v2/token" || word.starts_with("/v2/token?"))?;
            let status = words.next()?.parse::<u16>().ok()?;
            let millis = line
                .rsplit("duration_ms=")
                .next()?
                .trim()
                .parse::<u64>()
                .ok()?;
            Some((status, Duration::from_millis(millis)))
        })
        .collect()
}

/// The `p`-th percentile (0..=100, nearest rank) of `values`; zero when there are none.
pub fn percentile(values: &[Duration], p: u32) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    let rank = (sorted.len() * p as usize).div_ceil(100).max(1);
    sorted.get(rank - 1).copied().unwrap_or_default()
}

/// `p50 / p99 / max` in milliseconds, for a report line.
pub fn summary(values: &[Duration]) -> String {
    format!(
        "p50 {} ms, p99 {} ms, max {} ms (n={})",
        percentile(values, 50).as_millis(),
        percentile(values, 99).as_millis(),
        percentile(values, 100).as_millis(),
        values.len()
    )
}

/// A Katello stand-in over mutual TLS and the sidecar settings that make it the login backend.
#[derive(Debug)]
pub struct KatelloSite {
    pub katello: KatelloStandIn,
    /// Add to [`crate::stack::StackOptions::sidecar`].
    pub sidecar: SidecarExtra,
    /// Holds the stand-in's certificates; dropped last.
    _dir: Scenario,
}

impl KatelloSite {
    /// Katello knowing `users` and `public` repositories, answering after `delay` (a real one
    /// takes a while), with the sidecar's client certificate issued by Katello's CA.
    pub fn start(
        name: &str,
        users: &BTreeMap<String, KatelloUser>,
        public: &[String],
        delay: Duration,
    ) -> KatelloSite {
        let dir = Scenario::new(&format!("{name}-katello"));
        let (tls, mut clients) =
            crate::tls::generate_with_clients(dir.path(), &["capsule.example.com"]);
        let capsule = clients.remove(0);
        let katello = KatelloStandIn::start(KatelloOptions {
            users: users.clone(),
            public_repositories: public.to_vec(),
            server_cert: tls.server_cert.clone(),
            server_key: tls.server_key.clone(),
            client_ca: Some(tls.ca_cert.clone()),
            refusal: Refusal::Status401,
        });
        katello.delay(delay);
        let args = [
            "--katello-url".to_owned(),
            katello.url(),
            "--katello-ca-file".to_owned(),
            tls.ca_cert.display().to_string(),
            "--katello-client-cert-file".to_owned(),
            capsule.cert.display().to_string(),
            "--katello-client-key-file".to_owned(),
            capsule.key.display().to_string(),
        ];
        KatelloSite {
            katello,
            sidecar: SidecarExtra {
                args: args.to_vec(),
                ..SidecarExtra::default()
            },
            _dir: dir,
        }
    }
}
