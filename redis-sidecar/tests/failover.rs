//! Two sidecars on a Sentinel-managed Redis (a primary, replicas and three sentinels), with
//! `--redis-min-replicas-acked 1`, while a writer publishes continuously through both and
//! fetchers long-poll both: a forced `SENTINEL FAILOVER` and a crashed (SIGKILL) primary lose
//! no acknowledged publish, no fetcher sees a generation go backwards within an epoch (or
//! return to an epoch it left), and no server ever holds more sidecar connections than the two
//! pools allow. And with Redis unreachable, `/readyz` is not ready and a write is a clear 503
//! that changes nothing; with Redis back, writes work. And without a replica, neither a
//! publish nor its retry (which finds the content already written) is acknowledged; with one,
//! the retry is.
//!
//! The writer is a read-modify-write client, as the sync side is: it reads the snapshot a
//! sidecar serves, adds one repository and publishes with `If-Match`. So a lost acknowledged
//! publish would stay lost in everything built on it — unless the history was rewound and a
//! new epoch started, which a sidecar answers with "no snapshot": then the writer republishes
//! everything it was ever acknowledged, as a sync service republishes from its source of
//! truth.

// A test crate: its helper functions fail loudly too (clippy.toml covers only `#[test]`s).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/harness.rs"]
mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::{parse_etag, Options, Sidecar};
use registry_gate_core::snapshot::{Content, Repository};
use registry_gate_sidecar::keys::{KeyAlgorithm, SigningKey};
use registry_gate_sidecar::store::CLIENT_NAME;
use registry_gate_tests::redis::{self as servers, Replicated, ReplicatedOptions};
use reqwest::StatusCode;

/// Each sidecar's `--redis-pool-size`.
const POOL: usize = 4;
/// Publishes acknowledged before the failover, and again after it.
const ACKS_AROUND_FAILOVER: usize = 25;
/// How long the whole scenario may take to reach each milestone.
const DEADLINE: Duration = Duration::from_secs(90);

/// One sidecar's HTTP face, cheap to hand to tasks.
#[derive(Clone)]
struct Endpoint {
    name: &'static str,
    client: reqwest::Client,
    base: String,
    secret: String,
    read_secret: String,
}

impl Endpoint {
    fn of(name: &'static str, sidecar: &Sidecar) -> Endpoint {
        Endpoint {
            name,
            client: sidecar.client.clone(),
            base: sidecar.base.clone(),
            secret: sidecar.secret.clone(),
            read_secret: sidecar.read_secret.clone(),
        }
    }

    /// `GET /v1/snapshot[?wait=1]` with `If-None-Match`; `None` when the request failed.
    async fn get(
        &self,
        known: Option<&str>,
        wait: bool,
    ) -> Option<(StatusCode, Option<String>, Vec<u8>)> {
        let query = if wait { "?wait=1" } else { "" };
        let mut request = self
            .client
            .get(format!("{}/v1/snapshot{query}", self.base))
            .bearer_auth(&self.read_secret)
            .timeout(Duration::from_secs(10));
        if let Some(tag) = known {
            request = request.header("if-none-match", tag);
        }
        let response = request.send().await.ok()?;
        let status = response.status();
        let etag = response
            .headers()
            .get("etag")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.bytes().await.ok()?.to_vec();
        Some((status, etag, body))
    }

    async fn put(&self, content: &Content, if_match: Option<&str>) -> Option<(StatusCode, String)> {
        let mut request = self
            .client
            .put(format!("{}/v1/snapshot", self.base))
            .bearer_auth(&self.secret)
            .timeout(Duration::from_secs(20))
            .body(serde_json::to_vec(content).unwrap());
        if let Some(tag) = if_match {
            request = request.header("if-match", tag);
        }
        let response = request.send().await.ok()?;
        let status = response.status();
        Some((status, response.text().await.ok()?))
    }

    async fn metrics(&self) -> Option<String> {
        let response = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await;
        response.ok()?.text().await.ok()
    }
}

/// One acknowledged publish: repository `repository` is in generation `generation` of `epoch`.
#[derive(Debug, Clone)]
struct Ack {
    epoch: String,
    generation: u64,
    repository: String,
}

/// What every task reports to the test.
#[derive(Default)]
struct Record {
    acks: Vec<Ack>,
    /// Broken promises, described; the test fails if any.
    violations: Vec<String>,
    /// Distinct epochs the fetchers were served, in order of first sight.
    epochs: Vec<String>,
    /// Fetcher answers with a new generation.
    fetched: usize,
    /// The most sidecar connections one server held at once.
    max_connections: usize,
    /// Publishes that got 503 (store unavailable or not replicated), and 412s.
    refused: usize,
    conflicts: usize,
}

type Shared = Arc<Mutex<Record>>;

fn repository(name: String) -> Repository {
    Repository {
        name,
        auth_required: true,
    }
}

/// Every acknowledged repository of `epoch` up to `generation` must be in `content`.
fn check_acks(record: &mut Record, who: &str, epoch: &str, generation: u64, content: &Content) {
    let names: BTreeSet<&str> = content
        .repositories
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    let missing: Vec<String> = record
        .acks
        .iter()
        .filter(|a| {
            a.epoch == epoch && a.generation <= generation && !names.contains(a.repository.as_str())
        })
        .map(|a| {
            format!(
                "{} (acknowledged as {}.{})",
                a.repository, a.epoch, a.generation
            )
        })
        .collect();
    if !missing.is_empty() {
        record.violations.push(format!(
            "{who}: generation {epoch}.{generation} lacks acknowledged publishes: {missing:?}"
        ));
    }
}

/// Publishes `w/r<i>` for i = 0, 1, ... through the sidecars in turn until `stop`.
async fn writer(sidecars: Vec<Endpoint>, record: Shared, stop: Arc<AtomicBool>) {
    let mut acknowledged: BTreeSet<String> = BTreeSet::new();
    let mut i = 0_usize;
    while !stop.load(Ordering::Relaxed) {
        let sidecar = &sidecars[i % sidecars.len()];
        let name = format!("w/r{i:05}");
        let Some((status, etag, body)) = sidecar.get(None, false).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let (base, if_match) = match status {
            StatusCode::OK => {
                let etag = etag.unwrap();
                let (epoch, generation) = parse_etag(&etag);
                let served = harness::decode(&body).unwrap().content;
                check_acks(
                    &mut record.lock().unwrap(),
                    sidecar.name,
                    &epoch,
                    generation,
                    &served,
                );
                (served, Some(etag))
            }
            // No snapshot in this epoch (a rewound history started a new one) or the store
            // is unreachable: republish everything acknowledged, from the writer's own truth.
            StatusCode::SERVICE_UNAVAILABLE => (
                Content {
                    repositories: acknowledged.iter().cloned().map(repository).collect(),
                    ..Content::default()
                },
                None,
            ),
            other => panic!("{}: GET /v1/snapshot answered {other}", sidecar.name),
        };
        let mut content = base;
        if !content.repositories.iter().any(|r| r.name == name) {
            content.repositories.push(repository(name.clone()));
        }
        match sidecar.put(&content, if_match.as_deref()).await {
            Some((StatusCode::OK, text)) => {
                let reply: serde_json::Value = serde_json::from_str(&text).unwrap();
                let ack = Ack {
                    epoch: reply["epoch"].as_str().unwrap().to_owned(),
                    generation: reply["generation"].as_u64().unwrap(),
                    repository: name.clone(),
                };
                acknowledged.extend(content.repositories.iter().map(|r| r.name.clone()));
                record.lock().unwrap().acks.push(ack);
                i += 1;
            }
            Some((StatusCode::PRECONDITION_FAILED, _)) => record.lock().unwrap().conflicts += 1,
            Some((StatusCode::SERVICE_UNAVAILABLE, text)) => {
                assert!(
                    text.contains("snapshot store unavailable") || text.contains("no snapshot"),
                    "{}: a 503 must say why: {text}",
                    sidecar.name
                );
                record.lock().unwrap().refused += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Some((other, text)) => panic!("{}: PUT answered {other}: {text}", sidecar.name),
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Long-polls one sidecar, checking that generations only move forward within an epoch and
/// that an epoch once left never comes back.
async fn fetcher(sidecar: Endpoint, record: Shared, stop: Arc<AtomicBool>) {
    let mut held: Option<(String, u64)> = None;
    let mut left: BTreeSet<String> = BTreeSet::new();
    while !stop.load(Ordering::Relaxed) {
        let known = held.as_ref().map(|(e, g)| format!("\"{e}.{g}\""));
        let Some((status, etag, body)) = sidecar.get(known.as_deref(), true).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        match status {
            StatusCode::OK => {
                let (epoch, generation) = parse_etag(&etag.unwrap());
                let content = harness::decode(&body).unwrap().content;
                let mut record = record.lock().unwrap();
                record.fetched += 1;
                check_acks(&mut record, sidecar.name, &epoch, generation, &content);
                if !record.epochs.contains(&epoch) {
                    record.epochs.push(epoch.clone());
                }
                if left.contains(&epoch) {
                    record.violations.push(format!(
                        "{}: served epoch {epoch} again after moving on from it",
                        sidecar.name
                    ));
                }
                if let Some((held_epoch, held_generation)) = &held {
                    if *held_epoch == epoch && generation < *held_generation {
                        record.violations.push(format!(
                            "{}: went back from {epoch}.{held_generation} to {epoch}.{generation}",
                            sidecar.name
                        ));
                    }
                    if *held_epoch != epoch {
                        left.insert(held_epoch.clone());
                    }
                }
                held = Some((epoch, generation));
            }
            StatusCode::NOT_MODIFIED | StatusCode::SERVICE_UNAVAILABLE => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => panic!("{}: GET /v1/snapshot answered {other}", sidecar.name),
        }
    }
}

/// Samples every running server's sidecar connections (`CLIENT LIST`) and each sidecar's
/// pool gauge, recording the most seen and any excess.
async fn monitor(ports: Vec<u16>, sidecars: Vec<Endpoint>, record: Shared, stop: Arc<AtomicBool>) {
    let bound = POOL * sidecars.len();
    while !stop.load(Ordering::Relaxed) {
        for port in &ports {
            let port = *port;
            // A killed server simply does not answer.
            if let Ok(Ok(count)) =
                tokio::task::spawn_blocking(move || servers::clients_named(port, CLIENT_NAME)).await
            {
                let mut record = record.lock().unwrap();
                record.max_connections = record.max_connections.max(count);
                if count > bound {
                    record.violations.push(format!(
                        "server {port} held {count} sidecar connections; the pools allow {bound}"
                    ));
                }
            }
        }
        for sidecar in &sidecars {
            let Some(metrics) = sidecar.metrics().await else {
                continue;
            };
            let open = pool_open(&metrics);
            if open > POOL {
                record.lock().unwrap().violations.push(format!(
                    "{} reports {open} open pool connections; its pool allows {POOL}",
                    sidecar.name
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pool_open(metrics: &str) -> usize {
    metric(
        metrics,
        "registry_gate_sidecar_redis_pool_connections{state=\"open\"}",
    ) as usize
}

/// The value of the sample `series` (0 when absent).
fn metric(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

/// Waits (without blocking the runtime) until `check` holds.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How the primary goes away.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// `SENTINEL FAILOVER`: the old primary is demoted and rejoins as a replica.
    Forced,
    /// SIGKILL: the old primary is gone; the sentinels agree it is down and promote a replica.
    Crash,
}

async fn failover_loses_no_acknowledged_publish(fault: Fault) {
    let scenario = tempfile::tempdir().unwrap();
    // A crash leaves one server fewer: two replicas, so the new primary still has one to
    // acknowledge publishes.
    let replicas = match fault {
        Fault::Forced => 1,
        Fault::Crash => 2,
    };
    let mut set = Replicated::start(
        scenario.path(),
        ReplicatedOptions {
            replicas,
            ..ReplicatedOptions::default()
        },
    );
    let ports = set.server_ports();
    let mut extra = set.sidecar_args();
    extra.extend(
        [
            "--redis-min-replicas-acked",
            "1",
            "--redis-replica-ack-timeout-ms",
            "1000",
            "--redis-pool-size",
            "4",
        ]
        .map(String::from),
    );
    let options = Options {
        key: Some(SigningKey::generate(KeyAlgorithm::default()).unwrap()),
        ..Options::default()
    };
    let a = Sidecar::start_at(extra.clone(), options.clone()).await;
    let b = Sidecar::start_at(extra, options).await;
    let endpoints = vec![Endpoint::of("sidecar a", &a), Endpoint::of("sidecar b", &b)];

    let record = Shared::default();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_writer = Arc::new(AtomicBool::new(false));
    let mut tasks = vec![tokio::spawn(monitor(
        ports,
        endpoints.clone(),
        Arc::clone(&record),
        Arc::clone(&stop),
    ))];
    for endpoint in &endpoints {
        tasks.push(tokio::spawn(fetcher(
            endpoint.clone(),
            Arc::clone(&record),
            Arc::clone(&stop),
        )));
    }
    let writing = tokio::spawn(writer(
        endpoints.clone(),
        Arc::clone(&record),
        Arc::clone(&stop_writer),
    ));

    let acks = || record.lock().unwrap().acks.len();
    until("publishes are acknowledged", || {
        acks() >= ACKS_AROUND_FAILOVER
    })
    .await;
    let started = Instant::now();
    let acks_before = acks();
    let (old, new) = tokio::task::block_in_place(|| {
        let old = match fault {
            Fault::Forced => set.force_failover(),
            Fault::Crash => set.kill_primary(),
        };
        let new = set.wait_for_new_primary(old);
        (old, new)
    });
    let promoted_after = started.elapsed();
    until(
        "publishes are acknowledged again after the failover",
        || acks() >= acks_before + ACKS_AROUND_FAILOVER,
    )
    .await;
    let resumed_after = started.elapsed();
    stop_writer.store(true, Ordering::Relaxed);
    writing.await.unwrap();

    // Both sidecars come to serve the new primary's head. A sidecar that saw an
    // unacknowledged write of the old primary starts a new epoch when it meets the new one
    // (possibly only now) and then serves nothing: the writer republishes everything
    // acknowledged, as a sync service republishes from its source of truth.
    let settling = Instant::now();
    let mut last = String::new();
    let (epoch, generation, served) = loop {
        assert!(
            settling.elapsed() < DEADLINE,
            "the sidecars never came to serve the new primary's head: {last}"
        );
        let (epoch, head): (String, Option<u64>) = tokio::task::block_in_place(|| {
            let epoch: String = servers::query(new, &["GET", "rg-test:epoch"]).unwrap();
            let head: Option<String> = servers::query(new, &["GET", "rg-test:head"]).unwrap();
            (epoch, head.map(|h| h.parse().unwrap()))
        });
        let tag = head.map(|head| format!("\"{epoch}.{head}\""));
        let mut served = Vec::new();
        for endpoint in &endpoints {
            match endpoint.get(None, false).await {
                Some((StatusCode::OK, Some(etag), body)) if Some(&etag) == tag.as_ref() => {
                    served.push((endpoint.name, harness::decode(&body).unwrap().content));
                }
                Some((StatusCode::SERVICE_UNAVAILABLE, _, _)) => {
                    let everything = Content {
                        repositories: record
                            .lock()
                            .unwrap()
                            .acks
                            .iter()
                            .map(|a| repository(a.repository.clone()))
                            .collect(),
                        ..Content::default()
                    };
                    endpoint.put(&everything, None).await;
                }
                other => {
                    last = format!(
                        "{}: {:?} (head {tag:?})",
                        endpoint.name,
                        other.map(|o| (o.0, o.1))
                    )
                }
            }
        }
        if let (Some(head), 2) = (head, served.len()) {
            break (epoch, head, served);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let head_tag = format!("\"{epoch}.{generation}\"");
    for (name, served) in served {
        let names: BTreeSet<String> = served.repositories.iter().map(|r| r.name.clone()).collect();
        let record = record.lock().unwrap();
        let lost: Vec<&Ack> = record
            .acks
            .iter()
            .filter(|a| !names.contains(&a.repository))
            .collect();
        assert!(
            lost.is_empty(),
            "{name}: acknowledged publishes lost: {lost:?}"
        );
        let ahead: Vec<&Ack> = record
            .acks
            .iter()
            .filter(|a| a.epoch == epoch && a.generation > generation)
            .collect();
        assert!(
            ahead.is_empty(),
            "{name}: the head {head_tag} is below acknowledged {ahead:?}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }

    let mut not_replicated = 0.0;
    for endpoint in &endpoints {
        let text = endpoint.metrics().await.unwrap();
        not_replicated += metric(
            &text,
            "registry_gate_sidecar_publishes_total{outcome=\"not_replicated\"}",
        );
    }
    a.stop().await;
    b.stop().await;
    let record = record.lock().unwrap();
    let by_epoch: BTreeMap<&str, usize> = record.acks.iter().fold(BTreeMap::new(), |mut m, a| {
        *m.entry(a.epoch.as_str()).or_default() += 1;
        m
    });
    eprintln!(
        "[failover {fault:?}] primary {old} -> {new}: promoted after {promoted_after:.1?}, \
         publishes acknowledged again by {resumed_after:.1?}; {} acknowledged ({by_epoch:?} by \
         epoch), {} refused with 503 ({not_replicated} not replicated), {} precondition \
         conflicts; fetchers saw {} new generations in {} epochs; at most {} sidecar \
         connections on one server (bound {})",
        record.acks.len(),
        record.refused,
        record.conflicts,
        record.fetched,
        record.epochs.len(),
        record.max_connections,
        POOL * 2,
    );
    assert!(record.violations.is_empty(), "{:#?}", record.violations);
    assert!(record.fetched > 0, "the fetchers saw nothing");
    assert!(
        record.max_connections > 0,
        "the monitor never saw a sidecar connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_sentinel_failover_loses_no_acknowledged_publish() {
    failover_loses_no_acknowledged_publish(Fault::Forced).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_primary_loses_no_acknowledged_publish() {
    failover_loses_no_acknowledged_publish(Fault::Crash).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_means_not_ready_and_writes_refused_until_it_is_back() {
    let scenario = tempfile::tempdir().unwrap();
    let port = registry_gate_tests::ports::free_port();
    let mut redis = servers::Redis::start(scenario.path(), port);
    let sidecar =
        Sidecar::start_at(vec!["--redis-url".into(), redis.url()], Options::default()).await;
    let first = harness::content(&[("team/a", true)], &[]);
    let published = sidecar.put(&first, None, "").await;
    assert_eq!(published.status, StatusCode::OK, "{}", published.text());
    let etag = published.etag().unwrap();

    // Persist what is there, then take Redis away.
    let () = servers::query(port, &["SAVE"]).unwrap();
    redis.process.kill();
    let ready = |sidecar: &Sidecar| {
        let request = sidecar.client.get(sidecar.url("/readyz"));
        async move { request.send().await.map(|r| r.status()).ok() }
    };
    harness::eventually("/readyz reports not ready", || async {
        ready(&sidecar).await == Some(StatusCode::SERVICE_UNAVAILABLE)
    })
    .await;
    let second = harness::content(&[("team/a", true), ("team/b", true)], &[]);
    for if_match in [None, Some(etag.as_str())] {
        let refused = sidecar.put(&second, if_match, "").await;
        assert_eq!(
            refused.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            refused.text()
        );
        assert!(
            refused.json()["error"]
                .as_str()
                .unwrap()
                .starts_with("snapshot store unavailable: "),
            "{}",
            refused.text()
        );
        assert_eq!(refused.header("retry-after").as_deref(), Some("1"));
    }

    // Back with its data: nothing changed while it was away, and writes work again.
    let redis = servers::Redis::start(scenario.path(), port);
    harness::eventually("/readyz reports ready again", || async {
        ready(&sidecar).await == Some(StatusCode::OK)
    })
    .await;
    let (tag, held) = sidecar.snapshot().await;
    assert_eq!(tag, etag, "the refused writes changed nothing");
    assert_eq!(
        serde_json::to_value(&held.content.repositories).unwrap(),
        first["repositories"]
    );
    let again = sidecar.put(&second, Some(&etag), "").await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text());
    assert_eq!(
        parse_etag(&again.etag().unwrap()).1,
        parse_etag(&etag).1 + 1
    );
    sidecar.stop().await;
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_and_its_retry_are_acknowledged_only_once_a_replica_holds_them() {
    let scenario = tempfile::tempdir().unwrap();
    let primary = servers::Redis::start(scenario.path(), registry_gate_tests::ports::free_port());
    let options = Options {
        extra: [
            "--redis-min-replicas-acked",
            "1",
            "--redis-replica-ack-timeout-ms",
            "200",
        ]
        .map(String::from)
        .to_vec(),
        ..Options::default()
    };
    let sidecar = Sidecar::start_at(vec!["--redis-url".into(), primary.url()], options).await;
    let content = harness::content(&[("team/a", true)], &[]);

    // No replica: the write lands on the primary but is not acknowledged...
    let refused = sidecar.put(&content, None, "").await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.text()
    );
    let error = refused.json()["error"].as_str().unwrap().to_owned();
    assert!(
        error.contains("only 0 of the 1 replica acknowledgements"),
        "{error}"
    );
    assert!(error.contains("retry"), "{error}");
    let head: Option<String> = tokio::task::block_in_place(|| {
        servers::query(primary.port, &["GET", "rg-test:head"]).unwrap()
    });
    assert_eq!(
        head.as_deref(),
        Some("1"),
        "the write itself is on the primary"
    );
    // ...and neither is a retry that finds the content already there.
    let retried = sidecar.put(&content, None, "").await;
    assert_eq!(
        retried.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        retried.text()
    );

    // With a replica in sync, the same retry is acknowledged, as unchanged.
    let replica = tokio::task::block_in_place(|| {
        let extra = [
            "--replicaof".to_owned(),
            "127.0.0.1".to_owned(),
            primary.port.to_string(),
        ];
        servers::Redis::start_named(
            scenario.path(),
            "redis-replica",
            registry_gate_tests::ports::free_port(),
            &extra,
        )
    });
    harness::eventually("the retry is acknowledged", || async {
        sidecar.put(&content, None, "").await.status == StatusCode::OK
    })
    .await;
    let again = sidecar.put(&content, None, "").await;
    assert_eq!(again.json()["changed"], false, "{}", again.text());
    assert_eq!(again.json()["generation"], 1);
    let copied: Option<String> = tokio::task::block_in_place(|| {
        servers::query(replica.port, &["GET", "rg-test:head"]).unwrap()
    });
    assert_eq!(
        copied.as_deref(),
        Some("1"),
        "the replica holds the acknowledged head"
    );
    let metrics = sidecar.metrics().await;
    assert!(
        metric(
            &metrics,
            "registry_gate_sidecar_publishes_total{outcome=\"not_replicated\"}"
        ) >= 2.0,
        "{metrics}"
    );
    sidecar.stop().await;
}
