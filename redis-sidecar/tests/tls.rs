//! HTTPS on the sidecar's listener: with `--tls-cert-file`/`--tls-key-file` it answers over
//! TLS (certificate checked against a generated CA), refuses plain HTTP, and still shuts down
//! gracefully, waking a long-poll in progress.

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

use harness::{content, eventually, Options, Redis, Sidecar, DEADLINE};
use registry_gate_sidecar::keys::{KeyAlgorithm, SigningKey};
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_serves_https_only_when_given_a_certificate() {
    let redis = Redis::start();
    let shared = Options {
        key: Some(SigningKey::generate(KeyAlgorithm::default()).unwrap()),
        ..Options::default()
    };
    // A plain instance publishes; the HTTPS instance serves what it finds in Redis.
    let plain = Sidecar::start(&redis, shared.clone()).await;
    let secure = Sidecar::start(
        &redis,
        Options {
            tls: true,
            ..shared
        },
    )
    .await;
    assert!(secure.base.starts_with("https://"));

    let health = secure.https("GET /healthz", &[]).await.unwrap();
    assert_eq!(health.status, 200);
    assert_eq!(health.body, b"ok");

    let published = plain
        .put(&content(&[("team/app", true)], &[]), None, "")
        .await;
    assert_eq!(published.status, StatusCode::OK, "{}", published.text());
    let etag = published.etag().unwrap();
    let bearer = format!("Bearer {}", secure.read_secret);
    eventually("the HTTPS instance serves the snapshot", || async {
        let reply = secure
            .https("GET /v1/snapshot", &[("authorization", &bearer)])
            .await
            .unwrap();
        reply.status == 200 && reply.header("etag") == Some(etag.as_str())
    })
    .await;
    let reply = secure
        .https("GET /v1/snapshot", &[("authorization", &bearer)])
        .await
        .unwrap();
    let decoded = harness::decode(&reply.body).unwrap();
    assert_eq!(decoded.content.repositories[0].name, "team/app");
    // The read secret is still required over TLS.
    let refused = secure.https("GET /v1/snapshot", &[]).await.unwrap();
    assert_eq!(refused.status, 401);

    // Plain HTTP to the HTTPS port gets no HTTP answer at all (the handshake fails and the
    // connection is closed), so nothing is ever served in clear text.
    let plain_request = plain
        .client
        .get(format!("http://{}/healthz", secure.address()))
        .timeout(DEADLINE)
        .send()
        .await;
    assert!(plain_request.is_err(), "{plain_request:?}");
    let raw = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(secure.address())
            .await
            .unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer))
            .await
            .expect("the connection is closed, not left hanging")
            .ok();
        answer
    };
    assert!(
        !raw.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    assert!(!raw.windows(2).any(|w| w == b"ok"));
    // A certificate from another CA is not trusted: the client really checks the chain.
    let (other_ca, _, _) = harness::generate_tls();
    let impostor = harness::https(secure.address(), &other_ca, "GET /healthz", &[]).await;
    assert!(impostor.is_err(), "{impostor:?}");

    // Graceful shutdown still works over TLS and wakes a long-poll at once.
    let poll = {
        let etag = etag.clone();
        let bearer = bearer.clone();
        let address = secure.address().to_owned();
        let ca = secure.ca.clone().unwrap();
        tokio::spawn(async move {
            let started = Instant::now();
            let reply = harness::https(
                &address,
                &ca,
                "GET /v1/snapshot?wait=30",
                &[("authorization", &bearer), ("if-none-match", &etag)],
            )
            .await;
            (started.elapsed(), reply)
        })
    };
    // Give the long-poll time to be parked before the shutdown starts (nothing observable
    // tells when it is; a loopback TLS request takes a few milliseconds).
    tokio::time::sleep(Duration::from_millis(500)).await;
    secure.stop().await;
    let (waited, reply) = tokio::time::timeout(DEADLINE, poll).await.unwrap().unwrap();
    assert_eq!(reply.unwrap().status, 304);
    assert!(
        waited < Duration::from_secs(10),
        "woken by the shutdown after {waited:?}"
    );
    plain.stop().await;
}
