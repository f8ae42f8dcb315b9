//! Snapshot distribution end to end: real Redis, real HTTP, the shared core decoder.

// A test crate: its helper functions fail loudly too (clippy.toml covers only `#[test]`s).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use harness::{content, eventually, parse_etag, Options, Redis, Sidecar};
use registry_gate_sidecar::keys::{KeyAlgorithm, SigningKey};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_served_before_the_first_publish() {
    let redis = Redis::start();
    let sidecar = Sidecar::start(&redis, Options::default()).await;

    let health = sidecar
        .client
        .get(sidecar.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.text().await.unwrap(), "ok");

    let reply = sidecar.get(None, "").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.json(), json!({"error": "no snapshot published yet"}));
    assert!(reply.header("retry-after").is_some());
    // Even a long-poll is answered at once: there is nothing to wait on.
    let reply = sidecar.get(Some("\"x.1\""), "?wait=5").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_then_get_serves_the_stored_envelope_with_its_etag() {
    let redis = Redis::start();
    let sidecar = Sidecar::start(&redis, Options::default()).await;
    let published = sidecar
        .put(
            &content(
                &[("team/app", true), ("pub/base", false)],
                &[("alice", &["team/app"])],
            ),
            None,
            "",
        )
        .await;
    assert_eq!(published.status, StatusCode::OK, "{}", published.text());
    let body = published.json();
    assert_eq!(body["generation"], 1);
    assert_eq!(body["changed"], true);
    let epoch = body["epoch"].as_str().unwrap().to_owned();
    let etag = format!("\"{epoch}.1\"");
    assert_eq!(published.etag().as_deref(), Some(etag.as_str()));
    assert_eq!(
        parse_etag(&etag),
        (epoch.clone(), 1),
        "the core's Generation parses what the sidecar serves"
    );

    let reply = sidecar.get(None, "?schema=2.0").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.etag().as_deref(), Some(etag.as_str()));
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/vnd.registry-gate.index.v2")
    );
    let stored = redis.get("rg-test:snapshot:1").unwrap();
    assert_eq!(
        reply.body, stored,
        "served bytes are exactly the stored index"
    );
    assert_eq!(redis.get("rg-test:head").unwrap(), b"1");
    assert_eq!(redis.get("rg-test:epoch").unwrap(), epoch.as_bytes());

    let decoded = harness::decode(&reply.body).unwrap();
    assert_eq!(decoded.header.epoch, epoch);
    assert_eq!(decoded.header.generation, 1);
    assert_eq!(decoded.content.repositories.len(), 2);
    assert_eq!(
        decoded.content.keys,
        vec![sidecar.key.key_spec()],
        "own key added"
    );
    let spec = serde_json::to_value(&decoded.content.keys[0]).unwrap();
    // The default key: ES256 on P-256.
    assert_eq!(spec["alg"], "ES256");
    assert_eq!(spec["kty"], "EC");
    assert_eq!(spec["crv"], "P-256");
    assert!(spec["x"].is_string() && spec["y"].is_string(), "{spec}");
    assert!(spec.get("d").is_none(), "no private member: {spec}");
    assert_eq!(spec["kid"], sidecar.key.kid());

    // If-None-Match with the current ETag and no wait: 304 at once.
    let reply = sidecar.get(Some(&etag), "").await;
    assert_eq!(reply.status, StatusCode::NOT_MODIFIED);
    assert_eq!(reply.etag().as_deref(), Some(etag.as_str()));
    // A different ETag: the body.
    let reply = sidecar.get(Some("\"other.1\""), "?wait=5").await;
    assert_eq!(reply.status, StatusCode::OK);
    // A malformed wait is a 400.
    assert_eq!(
        sidecar.get(None, "?wait=soon").await.status,
        StatusCode::BAD_REQUEST
    );
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_wakes_within_a_second_of_a_publish_here_or_on_another_instance() {
    let redis = Redis::start();
    let (here, there) = Sidecar::pair(&redis).await;
    let first = here.put(&content(&[("a/one", true)], &[]), None, "").await;
    let mut etag = first.etag().unwrap();
    eventually("the other instance serves the snapshot", || async {
        there.get(None, "").await.etag() == Some(etag.clone())
    })
    .await;

    for (name, waiter) in [("same instance", &here), ("other instance", &there)] {
        let (_, generation) = parse_etag(&etag);
        let poll = {
            let client = waiter.client.clone();
            let url = waiter.url("/v1/snapshot?wait=20");
            let etag = etag.clone();
            let read_secret = waiter.read_secret.clone();
            tokio::spawn(async move {
                let response = client
                    .get(url)
                    .bearer_auth(read_secret)
                    .header("if-none-match", etag)
                    .send()
                    .await
                    .unwrap();
                (
                    Instant::now(),
                    response.status(),
                    response.headers().clone(),
                )
            })
        };
        // Give the long-poll time to be parked (not an assertion: the check below holds
        // either way, since a poll started after the publish returns at once).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let repositories = format!("a/gen{generation}");
        let reply = here
            .put(
                &content(&[("a/one", true), (&repositories, true)], &[]),
                None,
                "",
            )
            .await;
        let published_at = Instant::now();
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let (answered_at, status, headers) = tokio::time::timeout(Duration::from_secs(5), poll)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status, StatusCode::OK, "{name}");
        let latency = answered_at.saturating_duration_since(published_at);
        assert!(
            latency < Duration::from_secs(1),
            "{name}: woke after {latency:?}"
        );
        etag = headers["etag"].to_str().unwrap().to_owned();
        assert_eq!(Some(etag.clone()), reply.etag(), "{name}");
    }

    // Unchanged: the long-poll ends with 304 after the wait.
    let started = Instant::now();
    let reply = there.get(Some(&etag), "?wait=1").await;
    assert_eq!(reply.status, StatusCode::NOT_MODIFIED);
    assert!(started.elapsed() >= Duration::from_millis(900));
    here.stop().await;
    there.stop().await;
}

/// A fetcher says which schema it reads (`schema=<major>.<minor>`): 2.x gets the signed index,
/// 1.x the JSON envelope, another major a 406 naming both (it keeps its last good snapshot), a
/// malformed announcement a 400; a fetcher that says nothing is one from before negotiation
/// (1.0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetchers_get_a_schema_they_read_or_a_406() {
    let redis = Redis::start();
    let sidecar = Sidecar::start(&redis, Options::default()).await;
    let published = sidecar
        .put(&content(&[("a/one", true)], &[]), None, "")
        .await;
    assert_eq!(published.status, StatusCode::OK, "{}", published.text());
    for query in ["", "?schema=1.0", "?schema=1.9", "?wait=0&schema=1.0"] {
        let reply = sidecar.get(None, query).await;
        assert_eq!(reply.status, StatusCode::OK, "{query}: {}", reply.text());
        assert_eq!(reply.json()["schema"]["major"], 1, "{query}");
    }
    let index = sidecar.get(None, "?schema=2.0").await;
    assert_eq!(index.status, StatusCode::OK, "{}", index.text());
    assert!(index.body.starts_with(&registry_gate_index::layout::MAGIC));
    let newer = sidecar.get(None, "?schema=3.0").await;
    assert_eq!(newer.status, StatusCode::NOT_ACCEPTABLE, "{}", newer.text());
    let text = newer.text();
    assert!(
        text.contains("schemas 2.0 and 1.1") && text.contains("schema 3.0"),
        "{text}"
    );
    // Also when the fetcher holds a generation: it is not told "not modified".
    let tag = published.etag().unwrap();
    let held = sidecar.get(Some(&tag), "?schema=3.0").await;
    assert_eq!(held.status, StatusCode::NOT_ACCEPTABLE, "{}", held.text());
    for bad in ["x", "1", "1.0.0", "-1.0"] {
        let reply = sidecar.get(None, &format!("?schema={bad}")).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            reply.text()
        );
        assert!(reply.text().contains("<major>.<minor>"), "{}", reply.text());
    }
}

/// `If-None-Match: *` publishes only into an epoch with nothing published yet — how the
/// source of truth republishes after Redis lost its data without overwriting a sync call that
/// got there first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_none_match_any_publishes_only_when_nothing_is_published() {
    let redis = Redis::start();
    let sidecar = Sidecar::start(&redis, Options::default()).await;
    let body = |name: &str| serde_json::to_vec(&content(&[(name, true)], &[])).unwrap();
    let first = sidecar
        .put_with_headers(body("a/one"), &[("if-none-match", "*")], "")
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(first.json()["generation"], 1);
    let before = redis.dump();

    let again = sidecar
        .put_with_headers(body("a/two"), &[("if-none-match", "*")], "")
        .await;
    assert_eq!(
        again.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        again.text()
    );
    assert_eq!(
        again.etag(),
        first.etag(),
        "412 names the current generation"
    );
    assert!(again.text().contains("If-None-Match"), "{}", again.text());
    let both = sidecar
        .put_with_headers(
            body("a/two"),
            &[("if-none-match", "*"), ("if-match", &first.etag().unwrap())],
            "",
        )
        .await;
    assert_eq!(both.status, StatusCode::BAD_REQUEST, "{}", both.text());
    assert!(both.text().contains("not both"), "{}", both.text());
    assert_eq!(redis.dump(), before, "refused preconditions wrote nothing");

    // An entity tag that is not current does not stop the publish.
    let other = sidecar
        .put_with_headers(
            body("a/two"),
            &[("if-none-match", "\"0123456789abcdef.1\"")],
            "",
        )
        .await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.text());
    assert_eq!(other.json()["generation"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_match_is_412_and_changes_nothing() {
    let redis = Redis::start();
    let sidecar = Sidecar::start(&redis, Options::default()).await;
    let first = sidecar
        .put(&content(&[("a/one", true)], &[]), None, "")
        .await;
    let first_tag = first.etag().unwrap();
    let second = sidecar
        .put(&content(&[("a/two", true)], &[]), Some(&first_tag), "")
        .await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.json()["generation"], 2);
    let before = redis.dump();

    let stale = sidecar
        .put(&content(&[("a/three", true)], &[]), Some(&first_tag), "")
        .await;
    assert_eq!(
        stale.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        stale.text()
    );
    assert_eq!(
        stale.etag(),
        second.etag(),
        "412 names the current generation"
    );
    let garbage = sidecar
        .put(
            &content(&[("a/three", true)], &[]),
            Some("\"nonsense\""),
            "",
        )
        .await;
    assert_eq!(garbage.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(redis.dump(), before, "nothing written");
    let (_, current) = sidecar.snapshot().await;
    assert_eq!(current.header.generation, 2);
    assert_eq!(current.content.repositories[0].name, "a/two");

    // `If-Match: *` holds whenever a snapshot exists.
    let star = sidecar
        .put(&content(&[("a/four", true)], &[]), Some("*"), "")
        .await;
    assert_eq!(star.status, StatusCode::OK);
    assert_eq!(star.json()["generation"], 3);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_content_creates_no_generation() {
    let redis = Redis::start();
    let sidecar = Sidecar::start(&redis, Options::default()).await;
    let first = sidecar
        .put(
            &content(&[("b/two", true), ("a/one", false)], &[("u", &["b/two"])]),
            None,
            "",
        )
        .await;
    assert_eq!(first.json()["generation"], 1);
    let before = redis.dump();
    // Same content in another order, and with this sidecar's key already present.
    let mut same = content(
        &[("a/one", false), ("b/two", true)],
        &[("u", &["b/two", "b/two"])],
    );
    same["keys"] = json!([sidecar.key.key_spec()]);
    let again = sidecar.put(&same, Some(&first.etag().unwrap()), "").await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text());
    assert_eq!(again.json()["generation"], 1);
    assert_eq!(again.json()["changed"], false);
    assert_eq!(again.etag(), first.etag());
    assert_eq!(redis.dump(), before, "nothing written");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_are_400_and_change_nothing() {
    let redis = Redis::start();
    let sidecar = Sidecar::start(&redis, Options::default()).await;
    sidecar
        .put(&content(&[("a/one", true)], &[]), None, "")
        .await;
    let before = redis.dump();
    let other_key = SigningKey::generate(KeyAlgorithm::default()).unwrap();
    let mut stolen_kid = other_key.key_spec();
    stolen_kid.kid = sidecar.key.kid().to_owned();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not JSON", b"{nope".to_vec(), "malformed snapshot content"),
        ("unknown field", br#"{"repositories":[],"extra":1}"#.to_vec(), "unknown field"),
        ("missing field", br#"{"users":{}}"#.to_vec(), "repositories"),
        (
            "invalid name",
            br#"{"repositories":[{"name":"UPPER/case","auth_required":true}]}"#.to_vec(),
            "invalid",
        ),
        (
            "grant to unknown repository, and a duplicate",
            br#"{"repositories":[{"name":"a/one","auth_required":true},{"name":"a/one","auth_required":true}],"users":{"u":["ghost/repo"]}}"#.to_vec(),
            "ghost/repo",
        ),
        (
            "our kid with other key material",
            serde_json::to_vec(&json!({
                "repositories": [{"name": "a/one", "auth_required": true}],
                "keys": [stolen_kid],
            }))
            .unwrap(),
            "key material",
        ),
    ];
    for (name, body, needle) in cases {
        let reply = sidecar.put_raw(body, None, "").await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "case {name}: {}",
            reply.text()
        );
        let message = reply.json()["error"].as_str().unwrap().to_owned();
        assert!(message.contains(needle), "case {name}: {message}");
    }
    // Both validation problems are reported in one message.
    let reply = sidecar
        .put_raw(
            br#"{"repositories":[{"name":"a/one","auth_required":true},{"name":"a/one","auth_required":true}],"users":{"u":["ghost/repo"]}}"#.to_vec(),
            None,
            "",
        )
        .await;
    let message = reply.json()["error"].as_str().unwrap().to_owned();
    assert!(
        message.contains("twice") && message.contains("ghost/repo"),
        "{message}"
    );
    assert_eq!(redis.dump(), before, "nothing written");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_need_the_sync_secret() {
    let redis = Redis::start();
    let sidecar = Sidecar::start(&redis, Options::default()).await;
    let body = serde_json::to_vec(&content(&[("a/one", true)], &[])).unwrap();
    for (name, auth) in [
        ("none", None),
        ("wrong", Some("Bearer wrong-secret-wrong-secret")),
        ("prefix of the secret", Some("Bearer sync-secret")),
        ("basic", Some("Basic dXNlcjpwYXNz")),
    ] {
        let mut request = sidecar
            .client
            .put(sidecar.url("/v1/snapshot"))
            .body(body.clone());
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "case {name}");
        assert!(
            response.headers().contains_key("www-authenticate"),
            "case {name}"
        );
    }
    assert!(redis.get("rg-test:head").is_none());
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emptying_needs_allow_empty_and_bodies_are_size_limited() {
    let redis = Redis::start();
    let options = Options {
        extra: vec!["--max-body-bytes".into(), "2048".into()],
        ..Options::default()
    };
    let sidecar = Sidecar::start(&redis, options).await;
    sidecar
        .put(&content(&[("a/one", true)], &[]), None, "")
        .await;
    let empty = content(&[], &[]);
    let refused = sidecar.put(&empty, None, "").await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text());
    assert!(refused.json()["error"]
        .as_str()
        .unwrap()
        .contains("allow_empty=true"));
    let accepted = sidecar.put(&empty, None, "?allow_empty=true").await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text());
    let (_, current) = sidecar.snapshot().await;
    assert!(current.content.repositories.is_empty());
    assert!(current.header.allow_empty);

    let names: Vec<String> = (0..100).map(|i| format!("big/repository-{i}")).collect();
    let repositories: Vec<(&str, bool)> = names.iter().map(|n| (n.as_str(), true)).collect();
    let too_big = sidecar.put(&content(&repositories, &[]), None, "").await;
    assert_eq!(too_big.status, StatusCode::PAYLOAD_TOO_LARGE);
    let (_, current) = sidecar.snapshot().await;
    assert_eq!(current.header.generation, 2);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushall_means_a_new_epoch_and_no_snapshot_until_republished() {
    let redis = Redis::start();
    let sidecar = Sidecar::start(&redis, Options::default()).await;
    let first = sidecar
        .put(&content(&[("a/one", true)], &[]), None, "")
        .await;
    sidecar
        .put(&content(&[("a/two", true)], &[]), None, "")
        .await;
    let (old_epoch, _) = parse_etag(&first.etag().unwrap());

    redis.flushall();
    eventually("the flushed store is noticed", || async {
        let reply = sidecar.get(None, "").await;
        if reply.status == StatusCode::OK {
            // Until the poller notices, only the last real generation may be served.
            let decoded = harness::decode(&reply.body).unwrap();
            assert!(
                !decoded.content.repositories.is_empty(),
                "never an empty snapshot"
            );
            return false;
        }
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(reply.header("retry-after").is_some());
        true
    })
    .await;
    // The epoch was recreated (SET NX) by the poller.
    let new_epoch = String::from_utf8(redis.get("rg-test:epoch").unwrap()).unwrap();
    assert_ne!(new_epoch, old_epoch);
    assert!(redis.get("rg-test:head").is_none());
    // Still 503 a little later: nothing republishes on its own.
    assert_eq!(
        sidecar.get(None, "").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // A stale If-Match from before the flush is refused.
    let stale = sidecar
        .put(
            &content(&[("a/three", true)], &[]),
            first.etag().as_deref(),
            "",
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);

    let republished = sidecar
        .put(&content(&[("a/two", true)], &[]), None, "")
        .await;
    assert_eq!(republished.status, StatusCode::OK);
    let body = republished.json();
    assert_eq!(
        body["generation"], 1,
        "generations restart under the new epoch"
    );
    assert_eq!(body["epoch"], new_epoch.as_str());
    let (etag, current) = sidecar.snapshot().await;
    assert_eq!(parse_etag(&etag), (new_epoch, 1));
    assert_eq!(current.content.repositories[0].name, "a/two");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starting_sidecar_adds_its_key_to_the_current_snapshot() {
    let redis = Redis::start();
    let first = Sidecar::start(&redis, Options::default()).await;
    first.put(&content(&[("a/one", true)], &[]), None, "").await;
    let second = Sidecar::start(&redis, Options::default()).await;
    eventually("the second key is published", || async {
        let (_, current) = first.snapshot().await;
        current.content.keys.len() == 2
    })
    .await;
    let (etag, current) = second.snapshot().await;
    assert_eq!(parse_etag(&etag).1, 2, "exactly one republish");
    assert!(current.content.keys.contains(&first.key.key_spec()));
    assert!(current.content.keys.contains(&second.key.key_spec()));
    assert_eq!(current.content.repositories.len(), 1);
    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_newest_generations_are_kept() {
    let redis = Redis::start();
    let options = Options {
        extra: vec!["--keep-generations".into(), "3".into()],
        ..Options::default()
    };
    let sidecar = Sidecar::start(&redis, options).await;
    for i in 0..7 {
        let name = format!("a/r{i}");
        let reply = sidecar.put(&content(&[(&name, true)], &[]), None, "").await;
        assert_eq!(reply.json()["generation"], i + 1);
    }
    let keys: Vec<String> = redis.dump().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        [
            "rg-test:epoch",
            "rg-test:head",
            "rg-test:snapshot:5",
            "rg-test:snapshot:6",
            "rg-test:snapshot:7"
        ]
    );
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_means_not_ready_and_503_on_publish() {
    let redis = Redis::start();
    let sidecar = Sidecar::start(&redis, Options::default()).await;
    sidecar
        .put(&content(&[("a/one", true)], &[]), None, "")
        .await;
    drop(redis);
    eventually("readiness reports Redis down", || async {
        let response = sidecar
            .client
            .get(sidecar.url("/readyz"))
            .send()
            .await
            .unwrap();
        response.status() == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    let reply = sidecar
        .put(&content(&[("a/two", true)], &[]), None, "")
        .await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.text()
    );
    assert!(reply.json()["error"]
        .as_str()
        .unwrap()
        .contains("unavailable"));
    // The last good snapshot keeps being served from memory.
    let reply = sidecar.get(None, "").await;
    assert_eq!(reply.status, StatusCode::OK);
    sidecar.stop().await;
}

/// Publishes generations 1..=`to` of distinct content (`a/gen<N>`), returning the store's
/// keys as they were right after generation `backup_at`: a backup taken then.
async fn publish_with_backup(
    redis: &Redis,
    sidecar: &Sidecar,
    to: u64,
    backup_at: u64,
) -> Vec<(String, Vec<u8>)> {
    let mut backup = Vec::new();
    for generation in 1..=to {
        let name = format!("a/gen{generation}");
        let reply = sidecar.put(&content(&[(&name, true)], &[]), None, "").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(reply.json()["generation"], generation);
        if generation == backup_at {
            backup = redis.dump();
        }
    }
    backup
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetcher_ahead_of_a_restored_backup_gets_a_new_epoch_never_a_304() {
    let redis = Redis::start();
    let writer = Sidecar::start(&redis, Options::default()).await;
    let backup = publish_with_backup(&redis, &writer, 5, 3).await;
    let (epoch, held) = parse_etag(&writer.get(None, "").await.etag().unwrap());
    assert_eq!(held, 5);
    // The instance that saw generation 5 goes away; Redis is restored to generation 3.
    writer.stop().await;
    redis.restore(&backup);
    assert_eq!(redis.get("rg-test:head").unwrap(), b"3");

    // A sidecar that never saw anything newer than the restored head learns it only from
    // the fetcher, which holds generation 5 of the same epoch.
    let sidecar = Sidecar::start(&redis, Options::default()).await;
    let fetcher_holds = format!("\"{epoch}.{held}\"");
    let started = Instant::now();
    let reply = sidecar.get(Some(&fetcher_holds), "?wait=5").await;
    assert_ne!(
        reply.status,
        StatusCode::NOT_MODIFIED,
        "(a) never confirmed"
    );
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.text()
    );
    assert!(reply.header("retry-after").is_some());
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "answered at once, not after the long-poll"
    );

    // (b) a new epoch, with no head and without the rewound bodies.
    let new_epoch = String::from_utf8(redis.get("rg-test:epoch").unwrap()).unwrap();
    assert_ne!(new_epoch, epoch, "(b) the epoch changed");
    assert!(redis.get("rg-test:head").is_none());
    for generation in 1..=3 {
        assert!(
            redis
                .get(&format!("rg-test:snapshot:{generation}"))
                .is_none(),
            "rewound body {generation} deleted"
        );
    }
    // The rewound generation 3 is never served, to anyone.
    let reply = sidecar.get(None, "").await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.text()
    );

    // (c) the next publish is generation 1 of the new epoch, and it is served.
    let republished = sidecar
        .put(&content(&[("a/after", true)], &[]), None, "")
        .await;
    assert_eq!(republished.status, StatusCode::OK, "{}", republished.text());
    assert_eq!(republished.json()["generation"], 1);
    assert_eq!(republished.json()["epoch"], new_epoch.as_str());
    let reply = sidecar.get(Some(&fetcher_holds), "?wait=5").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(parse_etag(&reply.etag().unwrap()), (new_epoch, 1));
    let decoded = harness::decode(&reply.body).unwrap();
    assert_eq!(decoded.content.repositories[0].name, "a/after");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_notices_a_rewound_history_by_itself() {
    let redis = Redis::start();
    // Two instances that both saw generation 5 detect the rewind together.
    let (here, there) = Sidecar::pair(&redis).await;
    let backup = publish_with_backup(&redis, &here, 5, 3).await;
    let latest = here.get(None, "").await.etag().unwrap();
    eventually("the other instance serves generation 5", || async {
        there.get(None, "").await.etag() == Some(latest.clone())
    })
    .await;
    let (epoch, _) = parse_etag(&latest);

    redis.restore(&backup);
    for sidecar in [&here, &there] {
        eventually("the rewind is noticed without any fetcher", || async {
            let reply = sidecar.get(None, "").await;
            if reply.status == StatusCode::OK {
                // Until then only the last good generation may be served, never the
                // restored one.
                assert_eq!(reply.etag(), Some(latest.clone()), "rewound content served");
                return false;
            }
            assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
            true
        })
        .await;
    }
    let new_epoch = String::from_utf8(redis.get("rg-test:epoch").unwrap()).unwrap();
    assert_ne!(new_epoch, epoch);
    assert!(redis.get("rg-test:head").is_none());

    let republished = there
        .put(&content(&[("a/after", true)], &[]), None, "")
        .await;
    assert_eq!(republished.status, StatusCode::OK, "{}", republished.text());
    assert_eq!(republished.json()["generation"], 1);
    assert_eq!(
        republished.json()["epoch"],
        new_epoch.as_str(),
        "one epoch switch for both instances"
    );
    let served = format!("\"{new_epoch}.1\"");
    for sidecar in [&here, &there] {
        eventually(
            "both instances serve the new epoch's first generation",
            || async { sidecar.get(None, "").await.etag() == Some(served.clone()) },
        )
        .await;
    }
    here.stop().await;
    there.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_epoch_switch_is_a_compare_and_set() {
    use registry_gate_sidecar::store::{ReplicaAcks, Restart, Store, Target};
    let redis = Redis::start();
    let store = Store::new(
        &Target::Url(redis.url()),
        2,
        "rg-test:",
        10,
        ReplicaAcks::NONE,
    )
    .unwrap();
    let first = store.state().await.unwrap();
    assert_eq!(first.head, None);
    assert!(store
        .compare_and_publish(&first.epoch, None, 1, b"one")
        .await
        .unwrap()
        .eq(&registry_gate_sidecar::store::CasOutcome::Published));
    // Two detectors read the same (epoch, head 1) and both try to switch.
    let one = store.restart_epoch(&first.epoch, Some(1)).await.unwrap();
    let two = store.restart_epoch(&first.epoch, Some(1)).await.unwrap();
    let Restart::Restarted { epoch: switched } = one else {
        panic!("the first switch must win: {one:?}");
    };
    assert_eq!(
        two,
        Restart::Moved,
        "the second finds the epoch already switched"
    );
    let now = store.state().await.unwrap();
    assert_eq!((now.epoch.as_str(), now.head), (switched.as_str(), None));
    // A stale head is refused too, and nothing is written.
    let before = redis.dump();
    assert_eq!(
        store.restart_epoch(&switched, Some(7)).await.unwrap(),
        Restart::Moved
    );
    assert_eq!(redis.dump(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_reads_need_the_read_secret() {
    let redis = Redis::start();
    let sidecar = Sidecar::start(&redis, Options::default()).await;
    let published = sidecar
        .put(&content(&[("team/very-private", true)], &[]), None, "")
        .await;
    let etag = published.etag().unwrap();
    let read = format!("Bearer {}", sidecar.read_secret);
    let sync = format!("Bearer {}", sidecar.secret);
    let prefix = format!(
        "Bearer {}",
        &sidecar.read_secret[..sidecar.read_secret.len() - 1]
    );
    struct Row<'a> {
        case: &'a str,
        authorization: Option<&'a str>,
        long_poll: bool,
        ok: bool,
    }
    let rows = [
        Row {
            case: "none",
            authorization: None,
            long_poll: false,
            ok: false,
        },
        Row {
            case: "none, long-poll",
            authorization: None,
            long_poll: true,
            ok: false,
        },
        Row {
            case: "wrong",
            authorization: Some("Bearer wrong-secret-wrong-secret"),
            long_poll: false,
            ok: false,
        },
        Row {
            case: "prefix of the read secret",
            authorization: Some(&prefix),
            long_poll: false,
            ok: false,
        },
        Row {
            case: "read secret as Basic",
            authorization: Some("Basic cmVhZDpzZWNyZXQ="),
            long_poll: false,
            ok: false,
        },
        Row {
            case: "read secret",
            authorization: Some(&read),
            long_poll: false,
            ok: true,
        },
        Row {
            case: "read secret, lower-case scheme",
            authorization: Some(&read.replacen("Bearer", "bearer", 1)),
            long_poll: false,
            ok: true,
        },
        Row {
            case: "sync secret",
            authorization: Some(&sync),
            long_poll: false,
            ok: true,
        },
    ];
    for row in rows {
        let query = if row.long_poll {
            "/v1/snapshot?wait=5"
        } else {
            "/v1/snapshot"
        };
        let mut request = sidecar.client.get(sidecar.url(query));
        if row.long_poll {
            request = request.header("if-none-match", &etag);
        }
        if let Some(authorization) = row.authorization {
            request = request.header("authorization", authorization);
        }
        let started = Instant::now();
        let reply = harness::Reply::from(request.send().await.unwrap()).await;
        if row.ok {
            assert_eq!(reply.status, StatusCode::OK, "{}", row.case);
            assert_eq!(reply.etag(), Some(etag.clone()), "{}", row.case);
            continue;
        }
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", row.case);
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{}: refused at once",
            row.case
        );
        assert_eq!(
            reply.json(),
            json!({"error": "missing or wrong snapshot read bearer secret"}),
            "{}",
            row.case
        );
        assert_eq!(
            reply.header("www-authenticate").as_deref(),
            Some("Bearer realm=\"registry-gate-snapshot\""),
            "{}",
            row.case
        );
        assert!(
            reply.etag().is_none(),
            "{}: no generation revealed",
            row.case
        );
        assert!(
            !reply.text().contains("very-private"),
            "{}: no snapshot bytes",
            row.case
        );
    }
    // The read secret does not open the sync endpoints.
    let write = sidecar
        .client
        .put(sidecar.url("/v1/snapshot"))
        .header("authorization", &read)
        .body(serde_json::to_vec(&content(&[("a/x", true)], &[])).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), StatusCode::UNAUTHORIZED);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_waiters_are_capped() {
    let redis = Redis::start();
    let options = Options {
        extra: vec!["--max-long-poll-waiters".into(), "2".into()],
        ..Options::default()
    };
    let sidecar = Sidecar::start(&redis, options).await;
    let first = sidecar
        .put(&content(&[("a/one", true)], &[]), None, "")
        .await;
    let etag = first.etag().unwrap();
    // Five long-polls at once for the current generation: whatever order they arrive in,
    // exactly two wait (nothing frees a slot before the publish below) and three are
    // refused at once.
    let polls: Vec<_> = (0..5)
        .map(|_| {
            let request = sidecar
                .client
                .get(sidecar.url("/v1/snapshot?wait=20"))
                .bearer_auth(&sidecar.read_secret)
                .header("if-none-match", &etag);
            tokio::spawn(async move {
                let started = Instant::now();
                let reply = harness::Reply::from(request.send().await.unwrap()).await;
                (started.elapsed(), reply)
            })
        })
        .collect();
    eventually("three long-polls are refused", || async {
        polls.iter().filter(|p| p.is_finished()).count() >= 3
    })
    .await;
    let (finished, waiting): (Vec<_>, Vec<_>) = polls.into_iter().partition(|p| p.is_finished());
    assert_eq!((finished.len(), waiting.len()), (3, 2));
    for poll in finished {
        let (elapsed, reply) = poll.await.unwrap();
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            reply.text()
        );
        assert!(elapsed < Duration::from_secs(10), "refused without waiting");
        assert_eq!(reply.header("retry-after").as_deref(), Some("1"));
        assert!(reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("long-polls"));
    }
    // Requests that would not wait are still answered.
    assert_eq!(sidecar.get(None, "").await.status, StatusCode::OK);
    assert_eq!(
        sidecar.get(Some(&etag), "").await.status,
        StatusCode::NOT_MODIFIED
    );
    // A publish wakes the two waiting, which frees their slots.
    sidecar
        .put(&content(&[("a/two", true)], &[]), None, "")
        .await;
    for poll in waiting {
        let (_, reply) = tokio::time::timeout(Duration::from_secs(5), poll)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reply.status, StatusCode::OK);
    }
    let current = sidecar.get(None, "").await.etag().unwrap();
    let started = Instant::now();
    let reply = sidecar.get(Some(&current), "?wait=1").await;
    assert_eq!(
        reply.status,
        StatusCode::NOT_MODIFIED,
        "a slot is free again"
    );
    assert!(started.elapsed() >= Duration::from_millis(900), "it waited");
    sidecar.stop().await;
}
