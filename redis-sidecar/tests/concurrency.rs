//! Concurrent writers through two sidecar instances sharing one Redis: generations strictly
//! increase with no gaps and no duplicates, no read-modify-write is lost, and every stored
//! generation is a whole, valid snapshot.

// A test crate: its helper functions fail loudly too (clippy.toml covers only `#[test]`s).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/harness.rs"]
mod harness;

use std::collections::BTreeSet;

use harness::{Options, Redis, Sidecar};
use registry_gate_core::snapshot::{Content, Repository};
use registry_gate_sidecar::keys::{KeyAlgorithm, SigningKey};
use reqwest::StatusCode;

const PUBLISHES_PER_WRITER: usize = 200;

async fn pair(redis: &Redis) -> (Sidecar, Sidecar) {
    let options = Options {
        key: Some(SigningKey::generate(KeyAlgorithm::default()).unwrap()),
        extra: vec!["--keep-generations".into(), "10000".into()],
        ..Options::default()
    };
    let a = Sidecar::start(redis, options.clone()).await;
    let b = Sidecar::start(redis, options).await;
    (a, b)
}

/// Read-modify-write with `If-Match`, retrying on 412 until the write lands. Returns the
/// generation of each successful publish, in order.
async fn writer(sidecar: &Sidecar, name: &str) -> Vec<u64> {
    let mut generations = Vec::new();
    let mut conflicts = 0_usize;
    for i in 0..PUBLISHES_PER_WRITER {
        loop {
            let (etag, current) = sidecar.snapshot().await;
            let mut content = current.content;
            content.repositories.push(Repository {
                name: format!("{name}/r{i}"),
                auth_required: true,
            });
            let reply = sidecar
                .put(&serde_json::to_value(&content).unwrap(), Some(&etag), "")
                .await;
            match reply.status {
                StatusCode::OK => {
                    let body = reply.json();
                    assert_eq!(body["changed"], true, "{name}");
                    generations.push(body["generation"].as_u64().unwrap());
                    break;
                }
                StatusCode::PRECONDITION_FAILED => {
                    conflicts += 1;
                    assert!(conflicts < 100 * PUBLISHES_PER_WRITER, "{name} starved");
                }
                other => panic!("{name}: unexpected {other}: {}", reply.text()),
            }
        }
    }
    generations
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_with_if_match_lose_nothing() {
    let redis = Redis::start();
    let (a, b) = pair(&redis).await;
    let seed = a
        .put(
            &serde_json::to_value(Content {
                repositories: vec![Repository {
                    name: "seed/repo".into(),
                    auth_required: false,
                }],
                ..Content::default()
            })
            .unwrap(),
            None,
            "",
        )
        .await;
    assert_eq!(seed.json()["generation"], 1);
    harness::eventually("the second instance has polled the seed", || async {
        b.get(None, "").await.status == StatusCode::OK
    })
    .await;

    let (first, second) = tokio::join!(writer(&a, "wa"), writer(&b, "wb"));
    for (name, generations) in [("wa", &first), ("wb", &second)] {
        assert_eq!(generations.len(), PUBLISHES_PER_WRITER, "{name}");
        assert!(
            generations.windows(2).all(|w| w[0] < w[1]),
            "{name}: generations strictly increase"
        );
    }
    let all: BTreeSet<u64> = first.iter().chain(&second).copied().collect();
    assert_eq!(
        all.len(),
        2 * PUBLISHES_PER_WRITER,
        "no generation published twice"
    );
    let expected: BTreeSet<u64> = (2..=(1 + 2 * PUBLISHES_PER_WRITER as u64)).collect();
    assert_eq!(all, expected, "no gaps");

    // Every generation is a whole snapshot that extends its predecessor by exactly one
    // repository: nothing was lost, nothing torn.
    let mut previous: Option<BTreeSet<String>> = None;
    for generation in 1..=(1 + 2 * PUBLISHES_PER_WRITER as u64) {
        let body = redis
            .get(&format!("rg-test:snapshot:{generation}"))
            .unwrap_or_else(|| panic!("generation {generation} missing"));
        let decoded = harness::decode(&body).unwrap();
        assert_eq!(decoded.header.generation, generation);
        let names: BTreeSet<String> = decoded
            .content
            .repositories
            .iter()
            .map(|r| r.name.clone())
            .collect();
        if let Some(previous) = &previous {
            assert!(
                previous.is_subset(&names),
                "generation {generation} lost a repository"
            );
            assert_eq!(names.len(), previous.len() + 1, "generation {generation}");
        }
        previous = Some(names);
    }
    let (_, last) = a.snapshot().await;
    assert_eq!(
        last.content.repositories.len(),
        1 + 2 * PUBLISHES_PER_WRITER
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconditional_writers_each_get_their_own_generation() {
    let redis = Redis::start();
    let (a, b) = pair(&redis).await;
    let publish_all = |sidecar: &Sidecar, name: &'static str| {
        let client = sidecar.client.clone();
        let url = sidecar.url("/v1/snapshot");
        let secret = sidecar.secret.clone();
        async move {
            let mut generations = Vec::new();
            for i in 0..100 {
                let content = Content {
                    repositories: vec![Repository {
                        name: format!("{name}/r{i}"),
                        auth_required: true,
                    }],
                    ..Content::default()
                };
                let response = client
                    .put(&url)
                    .bearer_auth(&secret)
                    .body(serde_json::to_vec(&content).unwrap())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                let body: serde_json::Value = response.json().await.unwrap();
                assert_eq!(body["changed"], true);
                generations.push(body["generation"].as_u64().unwrap());
            }
            generations
        }
    };
    let (first, second) = tokio::join!(publish_all(&a, "ua"), publish_all(&b, "ub"));
    assert!(first.windows(2).all(|w| w[0] < w[1]));
    assert!(second.windows(2).all(|w| w[0] < w[1]));
    let all: BTreeSet<u64> = first.iter().chain(&second).copied().collect();
    assert_eq!(all, (1..=200).collect::<BTreeSet<u64>>());
    for generation in all {
        let body = redis
            .get(&format!("rg-test:snapshot:{generation}"))
            .unwrap();
        assert_eq!(
            harness::decode(&body).unwrap().header.generation,
            generation
        );
    }
    a.stop().await;
    b.stop().await;
}
