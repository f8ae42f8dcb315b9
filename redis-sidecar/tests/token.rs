//! `GET /v2/token` end to end: htpasswd logins, requested ∩ granted, and a JWT that verifies
//! with the key published in the snapshot.

// A test crate: its helper functions fail loudly too (clippy.toml covers only `#[test]`s).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/harness.rs"]
mod harness;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use harness::{content, Options, Redis, Reply, Sidecar};
use jwt_compact::alg::{Ed25519, Es256};
use jwt_compact::jwk::JsonWebKey;
use jwt_compact::{AlgorithmExt, UntrustedToken};
use registry_gate_core::token::{Algorithm, Audience, RegistryClaims};
use registry_gate_sidecar::keys::{KeyAlgorithm, SigningKey};
use reqwest::StatusCode;
use serde_json::{json, Value};

type EsVerifyingKey = <Es256 as jwt_compact::Algorithm>::VerifyingKey;
type EdVerifyingKey = <Ed25519 as jwt_compact::Algorithm>::VerifyingKey;

async fn start() -> (Redis, Sidecar) {
    start_signing_with(KeyAlgorithm::default()).await
}

async fn start_signing_with(algorithm: KeyAlgorithm) -> (Redis, Sidecar) {
    let redis = Redis::start();
    let options = Options {
        key: Some(SigningKey::generate(algorithm).unwrap()),
        users: vec![
            ("alice".into(), "alice-pw".into()),
            ("bob".into(), "bob-pw".into()),
        ],
        ..Options::default()
    };
    let sidecar = Sidecar::start(&redis, options).await;
    (redis, sidecar)
}

async fn publish(sidecar: &Sidecar) {
    let reply = sidecar
        .put(
            &content(
                &[
                    ("public/base", false),
                    ("public/tools", false),
                    ("team/app", true),
                    ("team/secret", true),
                ],
                &[("alice", &["team/app"]), ("bob", &["team/secret"])],
            ),
            None,
            "",
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
}

/// Verifies the token with the key the snapshot publishes under the token's `kid`, by the
/// algorithm of the sidecar's key (its `alg` header must say the same).
async fn verified_claims(
    sidecar: &Sidecar,
    token: &str,
) -> (jwt_compact::Claims<RegistryClaims>, Value) {
    let untrusted = UntrustedToken::new(token).unwrap();
    let alg = sidecar.key.key_spec().alg;
    assert_eq!(untrusted.algorithm(), alg.name());
    let kid = untrusted.header().key_id.clone().unwrap();
    let (_, snapshot) = sidecar.snapshot().await;
    let key = snapshot
        .content
        .keys
        .iter()
        .find(|k| k.kid == kid)
        .expect("the token's kid is published");
    let jwk: JsonWebKey<'_> = serde_json::from_value(Value::Object(key.jwk.clone())).unwrap();
    let verified = match alg {
        Algorithm::ES256 => Es256
            .validator::<RegistryClaims>(&EsVerifyingKey::try_from(&jwk).unwrap())
            .validate(&untrusted),
        Algorithm::EdDSA => Ed25519
            .validator::<RegistryClaims>(&EdVerifyingKey::try_from(&jwk).unwrap())
            .validate(&untrusted),
        other => panic!("the sidecar signs with {other:?}"),
    }
    .expect("signature verifies with the published key");
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    (verified.claims().clone(), header)
}

fn access(claims: &jwt_compact::Claims<RegistryClaims>) -> Value {
    serde_json::to_value(claims.custom.access.as_ref().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn right_password_gets_a_verifiable_token_with_requested_and_granted_access() {
    // ES256 (the default) and EdDSA keys alike.
    for algorithm in [KeyAlgorithm::ES256, KeyAlgorithm::EdDSA] {
        right_password_gets_a_verifiable_token(algorithm).await;
    }
}

async fn right_password_gets_a_verifiable_token(algorithm: KeyAlgorithm) {
    let (_redis, sidecar) = start_signing_with(algorithm).await;
    publish(&sidecar).await;
    let reply = sidecar
        .token(
            &[
                ("service", "test-registry"),
                ("account", "bob"), // ignored: identity is the Basic user only
                ("scope", "repository:team/app:pull,push"),
                (
                    "scope",
                    "repository:team/secret:pull repository:public/base:pull",
                ),
                ("scope", "registry:catalog:*"),
            ],
            Some(("alice", "alice-pw")),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("cache-control").as_deref(), Some("no-store"));
    let body = reply.json();
    let token_text = body["token"].as_str().unwrap();
    assert_eq!(body["access_token"], body["token"]);
    assert_eq!(body["expires_in"], 300);
    let issued_at = body["issued_at"].as_str().unwrap();
    assert!(issued_at.ends_with('Z'), "{issued_at}");
    let issued = chrono::DateTime::parse_from_rfc3339(issued_at).unwrap();

    let (claims, header) = verified_claims(&sidecar, token_text).await;
    assert_eq!(header["alg"], algorithm.jose().name());
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["kid"], sidecar.key.kid());
    assert_eq!(claims.custom.iss, "test-issuer");
    assert_eq!(claims.custom.sub, "alice");
    assert_eq!(claims.custom.aud, Audience::One("test-registry".into()));
    assert_eq!(claims.custom.jti.as_ref().unwrap().len(), 32);
    let iat = claims.issued_at.unwrap().timestamp();
    assert_eq!(iat, issued.timestamp());
    assert_eq!(claims.not_before.unwrap().timestamp(), iat);
    assert_eq!(claims.expiration.unwrap().timestamp(), iat + 300);
    let now = chrono::Utc::now().timestamp();
    assert!((now - iat).abs() < 60);
    // team/app: pull only (push dropped); team/secret: not granted to alice; public/base:
    // open to all; the catalog: granted (its listing is filtered to what the caller may pull).
    assert_eq!(
        access(&claims),
        json!([
            {"type": "repository", "name": "team/app", "actions": ["pull"]},
            {"type": "repository", "name": "public/base", "actions": ["pull"]},
            {"type": "registry", "name": "catalog", "actions": ["*"]},
        ])
    );

    // No scope at all (docker login): a token that grants nothing.
    let login = sidecar
        .token(&[("service", "test-registry")], Some(("bob", "bob-pw")))
        .await;
    assert_eq!(login.status, StatusCode::OK);
    let (claims, _) = verified_claims(&sidecar, login.json()["token"].as_str().unwrap()).await;
    assert_eq!(claims.custom.sub, "bob");
    assert_eq!(access(&claims), json!([]));
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_gets_public_repositories_only() {
    let (_redis, sidecar) = start().await;
    publish(&sidecar).await;
    let reply = sidecar
        .token(
            &[
                ("service", "test-registry"),
                (
                    "scope",
                    "repository:team/app:pull repository:public/tools:pull",
                ),
                ("scope", "repository:public/base:push"),
                ("account", "alice"),
            ],
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let (claims, _) = verified_claims(&sidecar, reply.json()["token"].as_str().unwrap()).await;
    assert_eq!(claims.custom.sub, "");
    assert_eq!(
        access(&claims),
        json!([{"type": "repository", "name": "public/tools", "actions": ["pull"]}])
    );
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_are_401_with_a_basic_challenge() {
    let (_redis, sidecar) = start().await;
    publish(&sidecar).await;
    let query = [
        ("service", "test-registry"),
        ("scope", "repository:team/app:pull"),
    ];
    for (name, login) in [
        ("wrong password", Some(("alice", "bob-pw"))),
        ("unknown user", Some(("mallory", "alice-pw"))),
        ("empty password", Some(("alice", ""))),
    ] {
        let reply = sidecar.token(&query, login).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "case {name}");
        assert_eq!(
            reply.header("www-authenticate").as_deref(),
            Some("Basic realm=\"registry-gate\""),
            "case {name}"
        );
        assert_eq!(
            reply.json()["errors"][0]["code"],
            "UNAUTHORIZED",
            "case {name}"
        );
        assert_eq!(
            reply.header("docker-distribution-api-version").as_deref(),
            Some("registry/2.0")
        );
    }
    let reply = Reply::from(
        sidecar
            .client
            .get(sidecar.url("/v2/token"))
            .query(&query)
            .header("authorization", "Bearer something")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "a non-Basic scheme");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_400_unsupported_and_no_snapshot_is_503() {
    let (_redis, sidecar) = start().await;
    let reply = sidecar.token(&[("service", "test-registry")], None).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.header("retry-after").is_some());
    assert_eq!(reply.json()["errors"][0]["code"], "UNAVAILABLE");

    publish(&sidecar).await;
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("no service", vec![("scope", "repository:team/app:pull")]),
        ("wrong service", vec![("service", "elsewhere")]),
        (
            "malformed scope",
            vec![
                ("service", "test-registry"),
                ("scope", "repository:team/app"),
            ],
        ),
        (
            "bad name in scope",
            vec![
                ("service", "test-registry"),
                ("scope", "repository:Team/App:pull"),
            ],
        ),
        (
            "double space",
            vec![
                ("service", "test-registry"),
                ("scope", "repository:a/b:pull  repository:c/d:pull"),
            ],
        ),
    ];
    for (name, query) in cases {
        let reply = sidecar.token(&query, Some(("alice", "alice-pw"))).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "case {name}: {}",
            reply.text()
        );
        assert_eq!(
            reply.json()["errors"][0]["code"],
            "UNSUPPORTED",
            "case {name}"
        );
    }
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_write_nothing_to_redis() {
    let (redis, sidecar) = start().await;
    publish(&sidecar).await;
    let before = redis.dump();
    let mut logins = tokio::task::JoinSet::new();
    for i in 0..20 {
        let request = sidecar.client.get(sidecar.url("/v2/token")).query(&[
            ("service", "test-registry"),
            ("scope", "repository:team/app:pull"),
        ]);
        let request = match i % 3 {
            0 => request.basic_auth("alice", Some("alice-pw")),
            1 => request.basic_auth("bob", Some("wrong")),
            _ => request,
        };
        logins.spawn(async move { request.send().await.unwrap().status() });
    }
    let statuses = logins.join_all().await;
    assert!(statuses
        .iter()
        .all(|s| *s == StatusCode::OK || *s == StatusCode::UNAUTHORIZED));
    assert_eq!(redis.dump(), before);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_beyond_the_bcrypt_queue_timeout_get_503_with_retry_after() {
    let redis = Redis::start();
    // One bcrypt slot, bcrypt runs of a few hundred milliseconds, and a 1 ms queue: of
    // logins sent together, the first takes the slot and the others cannot wait for it.
    // Six different users: identical logins would share one check (single flight).
    let users = ["alice", "bob", "carol", "dave", "erin", "frank"];
    let options = Options {
        users: users
            .iter()
            .map(|user| ((*user).to_owned(), format!("{user}-pw")))
            .collect(),
        bcrypt_cost: 12,
        extra: vec![
            "--login-concurrency".into(),
            "1".into(),
            "--login-queue-timeout-ms".into(),
            "1".into(),
        ],
        ..Options::default()
    };
    let sidecar = Sidecar::start(&redis, options).await;
    publish(&sidecar).await;
    let query = [("service", sidecar.service.as_str())];
    let logins: Vec<_> = users
        .iter()
        .map(|user| {
            let request = sidecar
                .client
                .get(sidecar.url("/v2/token"))
                .query(&query)
                .basic_auth(user, Some(format!("{user}-pw")));
            tokio::spawn(async move { Reply::from(request.send().await.unwrap()).await })
        })
        .collect();
    let mut replies = Vec::new();
    for login in logins {
        replies.push(login.await.unwrap());
    }
    let ok = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    let busy: Vec<&Reply> = replies
        .iter()
        .filter(|r| r.status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert_eq!(ok + busy.len(), replies.len(), "only 200s and 503s");
    assert!(ok >= 1, "the login holding the slot succeeds");
    assert!(
        !busy.is_empty(),
        "the others are refused instead of queueing"
    );
    for reply in busy {
        assert_eq!(reply.header("retry-after").as_deref(), Some("1"));
        assert_eq!(
            reply.header("docker-distribution-api-version").as_deref(),
            Some("registry/2.0")
        );
        assert_eq!(reply.json()["errors"][0]["code"], "UNAVAILABLE");
    }
    // With the storm over, the same login succeeds.
    let again = sidecar.token(&query, Some(("alice", "alice-pw"))).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text());
    sidecar.stop().await;
}
