//! The Katello sync API over HTTP (`/container_gateway/...`), with the bodies exactly as
//! Katello's rest-client sends them: each call replaces its part and publishes one complete
//! snapshot, identical content publishes nothing, a bad body or caller changes nothing, and an
//! explicitly empty list is published while a missing one is refused.

// A test crate: its helper functions fail loudly too (clippy.toml covers only `#[test]`s).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/harness.rs"]
mod harness;

use harness::{parse_etag, Options, Redis, Reply, Sidecar};
use reqwest::StatusCode;

/// katello-wire.md §1.3, byte for byte.
const REPOSITORY_LIST: &str = "repositories[][repository]=acme_corp%2Fcontainers%2Fbusybox&repositories[][auth_required]=true&repositories[][repository]=acme_corp%2Fdev%2Fweb_cv%2Fcontainers%2Fnginx&repositories[][auth_required]=false";
const USER_MAPPING: &str = "users[][admin][][repository]=acme_corp%2Fcontainers%2Fbusybox&users[][admin][][auth_required]=true&users[][jdoe%40example.com][][repository]=acme_corp%2Fcontainers%2Fbusybox&users[][jdoe%40example.com][][auth_required]=true&users[][jdoe%40example.com][][repository]=acme_corp%2Fdev%2Fweb_cv%2Fcontainers%2Fnginx&users[][jdoe%40example.com][][auth_required]=false";
const HOST: &str = "6f1e0a8c-3b7d-4f2a-9c55-0d2e8b1a7f34";

async fn sync(sidecar: &Sidecar, method: &str, path: &str, body: &str, bearer: bool) -> Reply {
    sync_as(
        sidecar,
        method,
        path,
        body,
        bearer,
        "application/x-www-form-urlencoded",
    )
    .await
}

async fn sync_as(
    sidecar: &Sidecar,
    method: &str,
    path: &str,
    body: &str,
    bearer: bool,
    content_type: &str,
) -> Reply {
    let mut request = sidecar
        .client
        .request(
            method.parse().unwrap(),
            sidecar.url(&format!("/container_gateway/{path}")),
        )
        .header("content-type", content_type)
        .body(body.to_owned());
    if bearer {
        request = request.bearer_auth(&sidecar.secret);
    }
    Reply::from(request.send().await.unwrap()).await
}

async fn generation(sidecar: &Sidecar) -> u64 {
    parse_etag(&sidecar.snapshot().await.0).1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_call_replaces_its_part_in_one_publish() {
    let redis = Redis::start();
    let sidecar = Sidecar::start(&redis, Options::default()).await;

    let reply = sync(&sidecar, "PUT", "repository_list/", REPOSITORY_LIST, true).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(reply.body.is_empty(), "Katello expects an empty body");
    assert_eq!(generation(&sidecar).await, 1);

    // No users yet: Katello would skip the mapping.
    let users = sync(&sidecar, "GET", "users", "", true).await;
    assert_eq!(users.json(), serde_json::json!({"users": []}));

    let reply = sync(
        &sidecar,
        "PUT",
        "user_repository_mapping/",
        USER_MAPPING,
        true,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let (_, snapshot) = sidecar.snapshot().await;
    assert_eq!(snapshot.header.generation, 2);
    assert_eq!(
        snapshot.content.users["jdoe@example.com"],
        vec![
            "acme_corp/containers/busybox".to_owned(),
            "acme_corp/dev/web_cv/containers/nginx".to_owned()
        ]
    );
    assert_eq!(snapshot.content.repositories.len(), 2);
    let users = sync(&sidecar, "GET", "users/", "", true).await;
    assert_eq!(
        users.json(),
        serde_json::json!({"users": ["admin", "jdoe@example.com"]})
    );

    // The same push again publishes nothing.
    let reply = sync(
        &sidecar,
        "PUT",
        "user_repository_mapping",
        USER_MAPPING,
        true,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(generation(&sidecar).await, 2);
    // Its JSON form is the same push: nothing published either.
    let json = serde_json::json!({"users": [
        {"admin": [{"repository": "acme_corp/containers/busybox", "auth_required": true}]},
        {"jdoe@example.com": [
            {"repository": "acme_corp/containers/busybox", "auth_required": "true"},
            {"repository": "acme_corp/dev/web_cv/containers/nginx", "auth_required": false},
        ]},
    ]});
    let reply = sync_as(
        &sidecar,
        "PUT",
        "user_repository_mapping/",
        &json.to_string(),
        true,
        "application/json; charset=utf-8",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(generation(&sidecar).await, 2);

    // Hosts, then their grants.
    let reply = sync(
        &sidecar,
        "PUT",
        "update_hosts/",
        &format!("hosts[][uuid]={HOST}"),
        true,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let grant = format!(
        "hosts[][{HOST}][][repository]=acme_corp%2Fcontainers%2Fbusybox&hosts[][{HOST}][][auth_required]=true"
    );
    let reply = sync(&sidecar, "PUT", "host_repository_mapping/", &grant, true).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let (_, snapshot) = sidecar.snapshot().await;
    assert_eq!(
        snapshot.content.hosts[HOST],
        vec!["acme_corp/containers/busybox".to_owned()]
    );

    // A new repository list keeps the grants of the repositories that remain (the old
    // gateway wiped every grant here until the next mapping call) and drops the others.
    let reply = sync(
        &sidecar,
        "PUT",
        "repository_list/",
        "repositories[][repository]=acme_corp%2Fcontainers%2Fbusybox&repositories[][auth_required]=true",
        true,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let (_, snapshot) = sidecar.snapshot().await;
    assert_eq!(
        snapshot.content.users["jdoe@example.com"],
        vec!["acme_corp/containers/busybox".to_owned()]
    );
    assert_eq!(
        snapshot.content.users["admin"],
        vec!["acme_corp/containers/busybox".to_owned()]
    );
    assert_eq!(
        snapshot.content.hosts[HOST],
        vec!["acme_corp/containers/busybox".to_owned()]
    );

    // Every publish was counted by outcome, and the served generation is exported.
    let metrics = sidecar.metrics().await;
    let (epoch, number) = parse_etag(&sidecar.snapshot().await.0);
    for line in [
        "registry_gate_sidecar_publishes_total{outcome=\"published\"} 5".to_owned(),
        "registry_gate_sidecar_publishes_total{outcome=\"unchanged\"} 2".to_owned(),
        format!("registry_gate_sidecar_snapshot_generation{{epoch=\"{epoch}\"}} {number}"),
        "registry_gate_sidecar_redis_pool_max_connections ".to_owned(),
    ] {
        assert!(metrics.contains(&line), "{line:?} missing from:\n{metrics}");
    }

    // An explicitly empty list (rest-client's bare key) is Katello saying "none": published.
    let reply = sync(&sidecar, "PUT", "repository_list/", "repositories", true).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let (_, snapshot) = sidecar.snapshot().await;
    assert!(snapshot.content.repositories.is_empty());
    assert!(snapshot.content.users["admin"].is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_and_callers_change_nothing() {
    let redis = Redis::start();
    let sidecar = Sidecar::start(&redis, Options::default()).await;
    let reply = sync(&sidecar, "PUT", "repository_list/", REPOSITORY_LIST, true).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let before = sidecar.snapshot().await.0;

    let cases: [(&str, &str, bool, StatusCode, &str); 6] = [
        (
            "repository_list/",
            REPOSITORY_LIST,
            false,
            StatusCode::UNAUTHORIZED,
            "sync bearer secret",
        ),
        (
            "repository_list/",
            "",
            true,
            StatusCode::BAD_REQUEST,
            "repositories is missing",
        ),
        (
            "repository_list/",
            "repositories[][repository]=Bad%20Name&repositories[][auth_required]=true",
            true,
            StatusCode::BAD_REQUEST,
            "is not a valid repository name",
        ),
        (
            "repository_list/",
            "repositories[][repository]=a%2Fb&repositories[][auth_required]=maybe",
            true,
            StatusCode::BAD_REQUEST,
            "auth_required",
        ),
        (
            "user_repository_mapping/",
            "users=x%ZZ",
            true,
            StatusCode::BAD_REQUEST,
            "%-encoding",
        ),
        (
            "drop_everything/",
            "",
            true,
            StatusCode::NOT_FOUND,
            "no sync endpoint",
        ),
    ];
    for (path, body, bearer, status, message) in cases {
        let reply = sync(&sidecar, "PUT", path, body, bearer).await;
        assert_eq!(reply.status, status, "{path} {body:?}: {}", reply.text());
        assert!(
            reply.text().contains(message),
            "{path} {body:?}: {:?} lacks {message:?}",
            reply.text()
        );
        assert_eq!(sidecar.snapshot().await.0, before, "{path} {body:?} wrote");
    }
    let users = sync(&sidecar, "GET", "users", "", false).await;
    assert_eq!(users.status, StatusCode::UNAUTHORIZED);
}
