//! `make bench-login`: a login storm — `BENCH_LOGINS` (100) concurrent `podman login`s of
//! `BENCH_USERS` (50) users through Envoy — against three login backends in one run, printed
//! side by side:
//!
//! - **htpasswd, no cache** (`--login-cache-ttl-secs 0`): every login a bcrypt verify at cost
//!   10, as the sidecar did before the positive cache (the baseline);
//! - **htpasswd, cache** (the default 30 s): one verify per user and password, identical
//!   concurrent logins sharing it;
//! - **Katello** (the stand-in, answering after 20 ms): one upstream token call and one catalog
//!   refresh per user.
//!
//! Reported per backend: the gateway's `/v2/token` latency (Envoy's `duration_ms`), podman's
//! own wall time (the clients run at `nice 19`), failed logins, and for Katello the upstream
//! calls. A failed login outside the baseline makes the exit status 1 (the baseline's failures
//! — 503 once a login has waited `--login-queue-timeout-ms` for bcrypt — are a finding).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use registry_gate_bench::{env_number, htpasswd_logins};
use registry_gate_tests::katello::KatelloUser;
use registry_gate_tests::sidecar::random_hex;
use registry_gate_tests::stack::{Stack, StackOptions};
use registry_gate_tests::storm::{self, KatelloSite};

struct Row {
    backend: &'static str,
    tokens: Vec<Duration>,
    walls: Vec<Duration>,
    failed: usize,
    elapsed: Duration,
    note: String,
}

fn storm(
    backend: &'static str,
    options: StackOptions,
    logins: &[(String, String)],
    note: impl Fn() -> String,
) -> Row {
    let stack = Stack::start_with(options);
    // The stack writes its htpasswd users with passwords of its own.
    let logins: Vec<(String, String)> = logins
        .iter()
        .map(|(user, password)| {
            let password = if stack.users().any(|u| u == user) {
                stack.password(user).to_owned()
            } else {
                password.clone()
            };
            (user.clone(), password)
        })
        .collect();
    let before = stack.envoy.access_log().len();
    let started = Instant::now();
    let runs = storm::podman_logins(&stack, &stack.scenario.subdir("storm"), &logins);
    let elapsed = started.elapsed();
    let tokens = storm::token_durations(&stack, before)
        .into_iter()
        .filter(|(status, _)| *status == 200)
        .map(|(_, duration)| duration)
        .collect();
    let failed: Vec<_> = runs.iter().filter(|run| !run.ok).collect();
    for run in &failed {
        eprintln!(
            "[bench] {backend}: login of {} failed: {}",
            run.user,
            run.error.trim()
        );
    }
    Row {
        backend,
        tokens,
        walls: runs.iter().map(|run| run.wall).collect(),
        failed: failed.len(),
        elapsed,
        note: note(),
    }
}

fn main() -> Result<(), String> {
    let users = env_number("BENCH_USERS", 50_usize)?;
    let count = env_number("BENCH_LOGINS", 100_usize)?;
    let passwords: Vec<(String, String)> = (0..users)
        .map(|i| (format!("user{i:02}"), random_hex(12)))
        .collect();
    let logins: Vec<(String, String)> = (0..count)
        .filter_map(|i| passwords.get(i % users.max(1)).cloned())
        .collect();

    let htpasswd = |name: &str, ttl: &str| {
        htpasswd_logins(
            name,
            passwords.iter().map(|(user, _)| user.clone()).collect(),
            ttl,
        )
    };
    let mut rows = Vec::new();
    rows.push(storm(
        "htpasswd, no cache (baseline)",
        htpasswd("bench_login-htpasswd-nocache", "0"),
        &logins,
        String::new,
    ));
    rows.push(storm(
        "htpasswd, cache 30 s",
        htpasswd("bench_login-htpasswd-cache", "30"),
        &logins,
        String::new,
    ));
    let truth: BTreeMap<String, KatelloUser> = passwords
        .iter()
        .map(|(name, password)| {
            (
                name.clone(),
                KatelloUser {
                    password: password.clone(),
                    repositories: vec!["team/private".to_owned()],
                },
            )
        })
        .collect();
    let site = KatelloSite::start("bench_login", &truth, &[], Duration::from_millis(20));
    let mut options = StackOptions::new("bench_login-katello");
    options.users = Vec::new();
    options.sidecar = site.sidecar.clone();
    rows.push(storm("Katello (stand-in, 20 ms)", options, &logins, || {
        format!(
            "{} token + {} catalog calls",
            site.katello.token_calls(),
            site.katello.catalog_calls()
        )
    }));

    println!();
    println!("## Login storm: {count} concurrent podman logins of {users} users (bcrypt cost 10)");
    println!();
    println!("| backend | gateway /v2/token p50 | p99 | max | podman wall p50 | p99 | storm | failed | upstream |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {} ms | {} ms | {} ms | {} ms | {} ms | {:.1} s | {} | {} |",
            row.backend,
            storm::percentile(&row.tokens, 50).as_millis(),
            storm::percentile(&row.tokens, 99).as_millis(),
            storm::percentile(&row.tokens, 100).as_millis(),
            storm::percentile(&row.walls, 50).as_millis(),
            storm::percentile(&row.walls, 99).as_millis(),
            row.elapsed.as_secs_f64(),
            row.failed,
            row.note
        );
    }
    // The baseline's failures (503 once a login waits longer than the queue timeout for
    // bcrypt) are what it measures; anywhere else a failed login fails the run.
    let failed: usize = rows.iter().skip(1).map(|row| row.failed).sum();
    if failed > 0 {
        return Err(format!("{failed} login(s) failed outside the baseline"));
    }
    Ok(())
}
