//! Schema 2 through a real sidecar and Redis: what is stored and served is the signed index;
//! 1.x readers get the JSON envelope of the same generation; a 1.x body a previous sidecar
//! left in Redis is served as a signed index; only the admin secret changes keys or
//! `min_token_iat`; a burst of Katello calls makes few snapshots; and a sidecar cut off from
//! Redis stops confirming while another one publishes.

#[path = "support/harness.rs"]
mod harness;

use std::collections::BTreeSet;
use std::time::Duration;

use harness::{content, eventually, Options, Redis, Relay, Sidecar};
use registry_gate_core::snapshot::legacy;
use registry_gate_core::snapshot::{Content, Repository, Stamp};
use reqwest::StatusCode;
use serde_json::json;

const HOST_PREFIX: &str = "6a1f2c3d-0000-4000-8000-";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_holds_the_signed_index_and_1x_readers_get_its_json() {
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
    let etag = published.etag().unwrap();

    let index = sidecar.get(None, "?schema=2.0").await;
    assert_eq!(index.status, StatusCode::OK);
    assert_eq!(
        index.header("content-type").as_deref(),
        Some("application/vnd.registry-gate.index.v2")
    );
    assert_eq!(index.etag(), Some(etag.clone()));
    assert_eq!(
        Some(index.body.clone()),
        redis.get("rg-test:snapshot:1"),
        "served bytes are exactly the stored index"
    );
    assert_eq!(
        registry_gate_index::verify(&index.body, &[sidecar.publisher.public()]),
        Ok(sidecar.publisher.public())
    );
    let from_index = harness::decode(&index.body).unwrap();

    for query in ["", "?schema=1.0", "?schema=1.1"] {
        let json = sidecar.get(None, query).await;
        assert_eq!(json.status, StatusCode::OK, "{query}");
        assert_eq!(
            json.header("content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(
            json.etag(),
            Some(etag.clone()),
            "{query}: the same generation"
        );
        let decoded = legacy::decode(&json.body).unwrap();
        assert_eq!(decoded.header.schema, legacy::SCHEMA);
        assert_eq!(
            decoded.content, from_index.content,
            "{query}: the same content"
        );
    }
    let future = sidecar.get(None, "?schema=3.0").await;
    assert_eq!(future.status, StatusCode::NOT_ACCEPTABLE);
    assert!(future.text().contains("2.0 and 1.1"), "{}", future.text());
    sidecar.stop().await;
}

/// A previous sidecar's 1.x envelope at the head: a sidecar of this release serves it to 2.x
/// fetchers as an index of the same generation signed with its publisher key, and to 1.x
/// fetchers exactly as stored; its next publish builds on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1x_body_left_in_redis_is_served_signed() {
    let redis = Redis::start();
    let previous = Content {
        repositories: vec![Repository {
            name: "team/app".into(),
            auth_required: true,
        }],
        users: [("alice".to_owned(), vec!["team/app".to_owned()])].into(),
        ..Content::default()
    };
    let stamp = Stamp {
        epoch: "0123abcd".into(),
        generation: 41,
        published_at: 1_700_000_000,
        producer: "registry-gate-sidecar/0.0.9".into(),
        allow_empty: false,
    };
    let stored = legacy::encode(&previous, &stamp).unwrap();
    redis.restore(&[
        ("rg-test:epoch".to_owned(), b"0123abcd".to_vec()),
        ("rg-test:head".to_owned(), b"41".to_vec()),
        ("rg-test:snapshot:41".to_owned(), stored.clone()),
    ]);
    let sidecar = Sidecar::start(&redis, Options::default()).await;
    // The starting sidecar adds its own key (generation 42); generation 41 was served first.
    eventually("the sidecar serves the store's head", || async {
        sidecar.get(None, "?schema=2.0").await.status == StatusCode::OK
    })
    .await;
    let (etag, snapshot) = sidecar.snapshot().await;
    assert!(etag.starts_with("\"0123abcd."), "{etag}");
    assert_eq!(snapshot.content.users["alice"], vec!["team/app".to_owned()]);
    let reply = sidecar
        .put(
            &content(&[("team/app", true), ("team/new", true)], &[]),
            None,
            "",
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(reply.json()["generation"].as_u64().unwrap() > 41);
    sidecar.stop().await;

    // Before any publish of its own, a 1.x reader gets the stored bytes themselves.
    let redis = Redis::start();
    let key = registry_gate_sidecar::keys::SigningKey::generate(
        registry_gate_sidecar::keys::KeyAlgorithm::default(),
    )
    .unwrap();
    // Its own key already published: no republish, generation 41 stays the head.
    let mut with_key = previous.clone();
    with_key.keys.push(key.key_spec());
    let stored = legacy::encode(&with_key, &stamp).unwrap();
    redis.restore(&[
        ("rg-test:epoch".to_owned(), b"0123abcd".to_vec()),
        ("rg-test:head".to_owned(), b"41".to_vec()),
        ("rg-test:snapshot:41".to_owned(), stored.clone()),
    ]);
    let sidecar = Sidecar::start(
        &redis,
        Options {
            key: Some(key),
            ..Options::default()
        },
    )
    .await;
    let json = sidecar.get(None, "").await;
    assert_eq!(json.status, StatusCode::OK, "{}", json.text());
    assert_eq!(json.body, stored);
    let index = sidecar.get(None, "?schema=2.0").await;
    assert_eq!(index.etag().as_deref(), Some("\"0123abcd.41\""));
    registry_gate_index::verify(&index.body, &[sidecar.publisher.public()]).unwrap();
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_admin_secret_changes_keys_or_min_token_iat() {
    let redis = Redis::start();
    let sidecar = Sidecar::start(&redis, Options::default()).await;
    let base = content(&[("team/app", true)], &[("alice", &["team/app"])]);
    let first = sidecar.put_as_sync(&base).await;
    assert_eq!(
        first.status,
        StatusCode::OK,
        "grants need no admin: {}",
        first.text()
    );
    let foreign = json!({"kid": "foreign", "alg": "EdDSA", "kty": "OKP", "crv": "Ed25519",
        "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
    let mut with_key = base.clone();
    with_key["keys"] = json!([foreign]);
    let mut revoking = base.clone();
    revoking["min_token_iat"] = json!(1_700_000_000);
    let mut more_grants = base.clone();
    more_grants["users"]["bob"] = json!(["team/app"]);
    for (case, document, what) in [
        ("a key added", &with_key, "keys"),
        ("min_token_iat set", &revoking, "min_token_iat"),
    ] {
        let before = redis.dump();
        let reply = sidecar.put_as_sync(document).await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{case}: {}",
            reply.text()
        );
        assert!(
            reply
                .text()
                .contains(&format!("changing {what} needs the admin secret")),
            "{case}: {}",
            reply.text()
        );
        assert_eq!(redis.dump(), before, "{case}: nothing written");
    }
    let grants = sidecar.put_as_sync(&more_grants).await;
    assert_eq!(grants.status, StatusCode::OK, "{}", grants.text());
    for (case, document) in [("a key added", &with_key), ("min_token_iat set", &revoking)] {
        let reply = sidecar.put(document, None, "").await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "admin, {case}: {}",
            reply.text()
        );
    }
    let (_, snapshot) = sidecar.snapshot().await;
    assert_eq!(snapshot.content.min_token_iat, Some(1_700_000_000));
    // The sync secret keeps what the admin set, so its next grant change passes.
    let mut kept = revoking.clone();
    kept["users"]["carol"] = json!(["team/app"]);
    let reply = sidecar.put_as_sync(&kept).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    sidecar.stop().await;
}

/// A thousand `update_host_repositories` calls for a thousand hosts at once: each one is
/// acknowledged, few snapshots are written, and the last holds every host's grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_sync_calls_coalesces() {
    let redis = Redis::start();
    let sidecar = Sidecar::start(&redis, Options::default()).await;
    let reply = sidecar
        .put(&content(&[("team/app", true)], &[]), None, "")
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let before = reply.json()["generation"].as_u64().unwrap();
    let calls = 1000_u64;
    let mut tasks = Vec::new();
    for i in 0..calls {
        let client = sidecar.client.clone();
        let url = sidecar.url("/container_gateway/update_host_repositories/");
        let secret = sidecar.secret.clone();
        tasks.push(tokio::spawn(async move {
            let host = format!("{HOST_PREFIX}{i:012}");
            let body =
                json!({"hosts": [{host: [{"repository": "team/app", "auth_required": true}]}]});
            client
                .put(url)
                .bearer_auth(secret)
                .json(&body)
                .timeout(Duration::from_secs(60))
                .send()
                .await
                .map(|r| r.status())
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), StatusCode::OK);
    }
    let (etag, snapshot) = sidecar.snapshot().await;
    let after = harness::parse_etag(&etag).1;
    let written = after - before;
    assert!(
        (1..=100).contains(&written),
        "{calls} calls made {written} snapshots"
    );
    let granted: BTreeSet<&String> = snapshot
        .content
        .hosts
        .iter()
        .filter(|(_, grants)| grants == &&vec!["team/app".to_owned()])
        .map(|(host, _)| host)
        .collect();
    assert_eq!(granted.len(), usize::try_from(calls).unwrap());
    sidecar.stop().await;
}

/// Two sidecars on one Redis, one reached through a relay that is then cut: while the other
/// publishes a revocation, the cut-off one stops confirming (503) once
/// `--max-store-silence-secs` passed, so its fetchers' staleness limit fires instead of
/// their keeping the revoked grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_cut_off_from_redis_stops_confirming() {
    let redis = Redis::start();
    let relay = Relay::start(redis.port).await;
    // One deployment: the same signing key, so neither republishes to add its own.
    let silence = Options {
        key: Some(
            registry_gate_sidecar::keys::SigningKey::generate(
                registry_gate_sidecar::keys::KeyAlgorithm::default(),
            )
            .unwrap(),
        ),
        extra: vec!["--max-store-silence-secs".into(), "2".into()],
        ..Options::default()
    };
    let publisher = Sidecar::start(&redis, silence.clone()).await;
    let cut_off = Sidecar::start_at(vec!["--redis-url".into(), relay.url()], silence).await;
    let reply = publisher
        .put(
            &content(&[("team/app", true)], &[("alice", &["team/app"])]),
            None,
            "",
        )
        .await;
    let etag = reply.etag().unwrap();
    eventually("both sidecars serve the first generation", || async {
        cut_off.get(None, "?schema=2.0").await.etag().as_deref() == Some(etag.as_str())
    })
    .await;
    assert_eq!(
        cut_off.get(Some(&etag), "").await.status,
        StatusCode::NOT_MODIFIED,
        "confirmed while it reads Redis"
    );

    relay.cut();
    let revoked = publisher
        .put(&content(&[("team/app", true)], &[("alice", &[])]), None, "")
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    eventually("the cut-off sidecar stops confirming", || async {
        cut_off.get(Some(&etag), "").await.status == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    let refusal = cut_off.get(Some(&etag), "?wait=1&schema=2.0").await;
    assert_eq!(refusal.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        refusal.text().contains("--max-store-silence-secs"),
        "{}",
        refusal.text()
    );
    assert!(refusal.header("retry-after").is_some());
    // The other sidecar serves the revocation.
    let (_, snapshot) = publisher.snapshot().await;
    assert!(snapshot.content.users["alice"].is_empty());
    publisher.stop().await;
    cut_off.stop().await;
}
