//! The seed failure, reproduced and beaten: 100 concurrent `podman login`s (Katello
//! authenticator, against the Katello stand-in) while Katello's sync — repository list, users,
//! user mapping, through rest-client and the smart-proxy plugin — runs every 100 ms, adding
//! and removing 300 repositories each time. Meanwhile one user keeps pulling a repository it
//! is granted (the old gateway wiped every grant at each repository-list call). Then every
//! user pulls what its grants allow.
//!
//! Asserted: every login succeeds, no pull gets a wrong answer during or after the storm,
//! every sync call succeeds, Katello sees one token and one catalog call per user (not per
//! login), and the gateway answers logins with p99 under 1 s (Envoy's own `duration_ms`, so
//! the 100 podman processes' start-up is not counted). The figures are printed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use registry_gate_tests::http::{Auth, HttpVersion};
use registry_gate_tests::katello::KatelloUser;
use registry_gate_tests::katello_sync::KatelloSync;
use registry_gate_tests::sidecar::random_hex;
use registry_gate_tests::smart_proxy::{SmartProxy, SmartProxyOptions};
use registry_gate_tests::stack::{Stack, StackOptions, INSTALL_TIMEOUT};
use registry_gate_tests::{storm, tls};
use serde_json::{json, Value};

const USERS: usize = 50;
const LOGINS: usize = 100;
const CHURN: usize = 300;
const APPS: usize = 6;
const PUBLIC: &str = "acme_corp/prod/base";
const CHECKER: &str = "checker@example.com";
const SYNC_PERIOD: Duration = Duration::from_millis(100);

fn app(i: usize) -> String {
    format!("acme_corp/prod/app{i}")
}

fn user(i: usize) -> String {
    format!("user{i:02}@example.com")
}

/// What Katello lets user `i` read besides the public repository: two of the apps.
fn grants(i: usize) -> Vec<String> {
    vec![app(i % APPS), app((i + 1) % APPS)]
}

/// Katello's repository list: the apps and the public repository, plus the churn on even
/// rounds.
fn repository_list(round: u64) -> Value {
    let mut repositories: Vec<Value> = (0..APPS)
        .map(|i| json!({"repository": app(i), "auth_required": true}))
        .collect();
    repositories.push(json!({"repository": PUBLIC, "auth_required": false}));
    if round % 2 == 0 {
        repositories.extend((0..CHURN).map(
            |i| json!({"repository": format!("acme_corp/churn/repo{i}"), "auth_required": true}),
        ));
    }
    json!({ "repositories": repositories })
}

/// Katello's user mapping for the logins the gateway reports, from Katello's own truth.
fn user_mapping(logins: &[String], truth: &BTreeMap<String, KatelloUser>) -> Value {
    let users: Vec<Value> = logins
        .iter()
        .filter_map(|login| {
            let known = truth.get(login)?;
            let mut repositories: Vec<Value> = known
                .repositories
                .iter()
                .map(|name| json!({"repository": name, "auth_required": true}))
                .collect();
            repositories.push(json!({"repository": PUBLIC, "auth_required": false}));
            Some(json!({ login.clone(): repositories }))
        })
        .collect();
    json!({ "users": users })
}

/// Status of `GET /v2/<repository>/manifests/latest` with `token`.
fn manifest_status(stack: &Stack, token: &str, repository: &str) -> u16 {
    stack
        .request(
            "GET",
            &format!("/v2/{repository}/manifests/latest"),
            HttpVersion::Http1,
        )
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .auth(Auth::Bearer(token))
        .send_ok()
        .status
}

/// A token for `user` covering every app and the public repository. (The public one comes
/// first: Katello decides by the last `scope` alone, and answers `unauthenticated` when it
/// names a public repository.)
fn token_for(stack: &Stack, user: &str, password: &str) -> String {
    let scopes: Vec<String> = [PUBLIC.to_owned()]
        .into_iter()
        .chain((0..APPS).map(app))
        .map(|name| format!("repository:{name}:pull"))
        .collect();
    let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
    let resp = stack.token_response(Some((user, password)), &scopes, HttpVersion::Http1);
    assert_eq!(resp.status, 200, "token for {user}: {}", resp.summary());
    resp.json()["token"].as_str().unwrap().to_owned()
}

#[test]
fn login_storm_under_sync() {
    // Katello: the users, their passwords and what each may read.
    let mut truth: BTreeMap<String, KatelloUser> = (0..USERS)
        .map(|i| {
            (
                user(i),
                KatelloUser {
                    password: random_hex(12),
                    repositories: grants(i),
                },
            )
        })
        .collect();
    truth.insert(
        CHECKER.to_owned(),
        KatelloUser {
            password: random_hex(12),
            repositories: vec![app(0)],
        },
    );
    let site = storm::KatelloSite::start(
        "login_storm",
        &truth,
        &[PUBLIC.to_owned()],
        Duration::from_millis(20),
    );
    let katello = &site.katello;

    let mut options = StackOptions::new("login_storm_under_sync");
    options.images = (0..APPS)
        .map(app)
        .chain([PUBLIC.to_owned()])
        .map(|name| (name, "latest".to_owned()))
        .collect();
    options.users = Vec::new();
    options.snapshot = Some(json!({
        "repositories": (0..APPS).map(|i| json!({"name": app(i), "auth_required": true}))
            .chain([json!({"name": PUBLIC, "auth_required": false})])
            .collect::<Vec<_>>(),
    }));
    options.sidecar = site.sidecar.clone();
    let mut stack = Stack::start_with(options);

    // Katello's sync path: rest-client → smart-proxy plugin → sidecar.
    let (proxy_tls, mut foreman) = tls::generate_with_clients(
        &stack.scenario.subdir("proxy-tls"),
        &["foreman.example.com"],
    );
    let proxy = SmartProxy::start(
        &stack.scenario,
        "smart-proxy",
        &proxy_tls,
        &SmartProxyOptions {
            trusted_hosts: Some(vec!["foreman.example.com".to_owned()]),
            sidecar_url: stack.sidecar.url(),
            sync_secret_file: stack.sidecar.files.sync_secret_file.clone(),
            sidecar_read_timeout: None,
        },
    );
    let sync = KatelloSync::start(
        &stack.scenario,
        "katello-sync",
        &proxy.url(),
        &proxy_tls.ca_cert,
        Some(&foreman.remove(0)),
    );

    // The checker logs in once (its grant arrives by the login refresh) and can pull.
    let checker_password = truth[CHECKER].password.clone();
    let checker_token = token_for(&stack, CHECKER, &checker_password);
    // The refresh was published before the token was answered; Envoy takes it within its
    // long-poll round trip.
    let generation_before = stack.sidecar.get_snapshot().unwrap().json()["generation"]
        .as_u64()
        .unwrap();
    stack
        .envoy
        .wait_for_generation(generation_before, INSTALL_TIMEOUT);
    // (Each Envoy worker installs it on its own: wait until the one answering has.)
    registry_gate_tests::wait::wait_until("the checker's grant in Envoy", INSTALL_TIMEOUT, || {
        match manifest_status(&stack, &checker_token, &app(0)) {
            200 => Ok(()),
            status => Err(format!("got {status}")),
        }
    });
    let access_lines_before = stack.envoy.access_log().len();
    let token_calls_before = katello.token_calls();
    let catalog_calls_before = katello.catalog_calls();
    let logins: Vec<(String, String)> = (0..LOGINS)
        .map(|i| {
            let name = user(i % USERS);
            let password = truth[&name].password.clone();
            (name, password)
        })
        .collect();

    let storming = AtomicBool::new(true);
    let rounds = AtomicU64::new(0);
    let sync_failures = AtomicU64::new(0);
    let checks = AtomicU64::new(0);
    let sync_times = std::sync::Mutex::new(Vec::new());
    let wrong = AtomicU64::new(0);
    let (runs, storm_time) = std::thread::scope(|scope| {
        // Katello syncs every 100 ms until the logins are done.
        scope.spawn(|| {
            while storming.load(Ordering::SeqCst) {
                let started = Instant::now();
                let round = rounds.fetch_add(1, Ordering::SeqCst);
                let answers = [
                    sync.call("repository_list", repository_list(round)),
                    sync.call("users", Value::Null),
                ];
                let listed: Vec<String> = serde_json::from_str::<Value>(&answers[1].body)
                    .ok()
                    .and_then(|v| serde_json::from_value(v["users"].clone()).ok())
                    .unwrap_or_default();
                let mapping = sync.call("user_repository_mapping", user_mapping(&listed, &truth));
                for answer in answers.iter().chain([&mapping]) {
                    sync_times.lock().unwrap().push(answer.elapsed);
                    if answer.status != 200 {
                        eprintln!("sync call failed: {answer:?}");
                        sync_failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
                std::thread::sleep(SYNC_PERIOD.saturating_sub(started.elapsed()));
            }
        });
        // A granted user keeps pulling: never a wrong answer mid-sync.
        scope.spawn(|| {
            while storming.load(Ordering::SeqCst) {
                checks.fetch_add(1, Ordering::SeqCst);
                if manifest_status(&stack, &checker_token, &app(0)) != 200 {
                    wrong.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        let started = Instant::now();
        let runs = storm::podman_logins(&stack, &stack.scenario.subdir("storm"), &logins);
        let storm_time = started.elapsed();
        // Let the sync run on a moment after the logins, as it would.
        std::thread::sleep(Duration::from_millis(300));
        storming.store(false, Ordering::SeqCst);
        (runs, storm_time)
    });

    let failed: Vec<_> = runs.iter().filter(|run| !run.ok).collect();
    assert!(failed.is_empty(), "failed podman logins: {failed:#?}");
    assert_eq!(sync_failures.load(Ordering::SeqCst), 0, "sync calls failed");
    assert_eq!(
        wrong.load(Ordering::SeqCst),
        0,
        "the checker was refused mid-storm ({} checks)",
        checks.load(Ordering::SeqCst)
    );
    let token_calls = katello.token_calls() - token_calls_before;
    let catalog_calls = katello.catalog_calls() - catalog_calls_before;
    assert_eq!(token_calls, USERS as u64, "one Katello login per user");
    assert_eq!(catalog_calls, USERS as u64, "one catalog refresh per user");
    let durations = storm::token_durations(&stack, access_lines_before);
    let storm_tokens: Vec<Duration> = durations
        .iter()
        .filter(|(status, _)| *status == 200)
        .map(|(_, duration)| *duration)
        .collect();
    assert!(
        storm_tokens.len() >= LOGINS,
        "{} token answers for {LOGINS} logins: {durations:?}",
        storm_tokens.len()
    );
    let generation_after = stack.sidecar.get_snapshot().unwrap().json()["generation"]
        .as_u64()
        .unwrap();
    stack
        .envoy
        .wait_for_generation(generation_after, INSTALL_TIMEOUT);
    let walls: Vec<Duration> = runs.iter().map(|run| run.wall).collect();
    let sidecar_log = stack.sidecar.process.log();
    let refresh_publishes = sidecar_log
        .lines()
        .filter(|line| {
            line.contains("login refreshes published") && line.contains("\"changed\":true")
        })
        .count();
    eprintln!(
        "[storm] {LOGINS} podman logins of {USERS} users in {storm_time:.1?} during {} sync rounds \
         ({CHURN} repositories added/removed each): gateway /v2/token {}; podman wall {}; \
         Katello calls: {token_calls} token + {catalog_calls} catalog; publishes: {} \
         ({refresh_publishes} from login refreshes); sync calls {}; checker pulls during the storm: {} (0 wrong)",
        rounds.load(Ordering::SeqCst),
        storm::summary(&storm_tokens),
        storm::summary(&walls),
        generation_after - generation_before,
        storm::summary(&sync_times.lock().unwrap()),
        checks.load(Ordering::SeqCst),
    );
    let p99 = storm::percentile(&storm_tokens, 99);
    assert!(
        p99 < Duration::from_secs(1),
        "gateway login p99 {p99:?} (target under 1 s)"
    );

    // Every user pulls what its grants allow, and nothing else.
    for i in 0..USERS {
        let name = user(i);
        let token = token_for(&stack, &name, &truth[&name].password);
        for repository in (0..APPS).map(app).chain([PUBLIC.to_owned()]) {
            let allowed = repository == PUBLIC || grants(i).contains(&repository);
            let expected = if allowed { 200 } else { 404 };
            assert_eq!(
                manifest_status(&stack, &token, &repository),
                expected,
                "{name} pulling {repository}"
            );
        }
    }
    for i in [0, USERS / 2, USERS - 1] {
        let name = user(i);
        let (run, _) = stack.skopeo_pull(
            &format!("{}:latest", grants(i)[0]),
            Auth::Basic(&name, &truth[&name].password),
        );
        run.assert_success();
    }
}
