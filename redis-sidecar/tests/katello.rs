//! `GET /v2/token` with the Katello login backend, end to end over real HTTPS with a client
//! certificate: the sidecar (with Redis) forwards Basic logins to the Katello stand-in of the
//! tests crate (`registry_gate_tests::katello`) and mints its own tokens.

// A test crate: its helper functions fail loudly too (clippy.toml covers only `#[test]`s).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/harness.rs"]
mod harness;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use harness::{content, Options, Redis, Reply, Sidecar};
use registry_gate_sidecar::katello::{ClientIdentity, KatelloClient, KatelloSettings};
use registry_gate_sidecar::login::limits::LimitSettings;
use registry_gate_sidecar::login::{Authenticator, Backend, LoginRequest, LoginSettings};
use registry_gate_sidecar::token::Credentials;
use registry_gate_tests::katello::{KatelloOptions, KatelloStandIn, KatelloUser, Refusal};
use registry_gate_tests::tls::{self, ClientCert, Tls};
use reqwest::StatusCode;
use serde_json::Value;

const SERVICE: &str = "test-registry";

fn katello(tls: &Tls, refusal: Refusal) -> KatelloStandIn {
    let user = |password: &str, repositories: &[&str]| KatelloUser {
        password: password.into(),
        repositories: repositories.iter().map(|r| (*r).to_owned()).collect(),
    };
    KatelloStandIn::start(KatelloOptions {
        users: BTreeMap::from([
            ("alice".to_owned(), user("alice-pw", &["team/app"])),
            ("bob".to_owned(), user("bob-pw", &["team/secret"])),
            ("carol".to_owned(), user("carol-pw", &[])),
        ]),
        public_repositories: vec!["public/base".into()],
        server_cert: tls.server_cert.clone(),
        server_key: tls.server_key.clone(),
        client_ca: Some(tls.ca_cert.clone()),
        refusal,
    })
}

/// The scenario's CA, Katello's server certificate and the sidecar's client certificate.
fn material(dir: &Path) -> (Tls, ClientCert) {
    let (tls, mut clients) = tls::generate_with_clients(dir, &["registry-gate-sidecar"]);
    (tls, clients.remove(0))
}

fn katello_flags(url: &str, tls: &Tls, client: &ClientCert, timeout_ms: u64) -> Vec<String> {
    [
        "--katello-url",
        url,
        "--katello-ca-file",
        &tls.ca_cert.display().to_string(),
        "--katello-client-cert-file",
        &client.cert.display().to_string(),
        "--katello-client-key-file",
        &client.key.display().to_string(),
        "--katello-timeout-ms",
        &timeout_ms.to_string(),
        "--login-queue-timeout-ms",
        "5000",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

async fn sidecar(redis: &Redis, flags: Vec<String>) -> Sidecar {
    sidecar_with(redis, flags, &Options::default().prefix).await
}

/// A sidecar with Katello `flags` on its own key `prefix`, holding the test's snapshot.
async fn sidecar_with(redis: &Redis, flags: Vec<String>, prefix: &str) -> Sidecar {
    let sidecar = Sidecar::start(
        redis,
        Options {
            extra: flags,
            prefix: prefix.to_owned(),
            ..Options::default()
        },
    )
    .await;
    let reply = sidecar
        .put(
            &content(
                &[
                    ("public/base", false),
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
    sidecar
}

/// The unverified claims of a minted token (its signature is covered by tests/token.rs).
fn claims(reply: &Reply) -> Value {
    let token = reply.json()["token"].as_str().unwrap().to_owned();
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn granted(claims: &Value) -> Vec<String> {
    claims["access"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn katello_decides_who_the_basic_user_is() {
    let dir = tempfile::tempdir().unwrap();
    let (tls, client) = material(dir.path());
    let katello = katello(&tls, Refusal::Status401);
    let redis = Redis::start();
    let sidecar = sidecar(&redis, katello_flags(&katello.url(), &tls, &client, 2000)).await;

    // `account` names someone else: Katello is asked about the Basic user, and the token is
    // the Basic user's.
    let reply = sidecar
        .token(
            &[
                ("service", SERVICE),
                ("account", "bob"),
                ("scope", "repository:team/app:pull"),
                ("scope", "repository:team/secret:pull"),
            ],
            Some(("alice", "alice-pw")),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let alice = claims(&reply);
    assert_eq!(alice["sub"], "alice");
    assert_eq!(granted(&alice), ["team/app"]);
    assert_eq!(
        katello.last_token_query(),
        [
            ("account".to_owned(), "alice".to_owned()),
            ("scope".to_owned(), "repository:team/app:pull".to_owned()),
            ("scope".to_owned(), "repository:team/secret:pull".to_owned()),
        ],
        "account = the Basic user, the scopes as sent, no service"
    );

    struct Row {
        case: &'static str,
        query: Vec<(&'static str, &'static str)>,
        login: Option<(&'static str, &'static str)>,
        status: StatusCode,
        /// `sub` of the minted token, for 200s.
        sub: Option<&'static str>,
    }
    let rows = [
        Row {
            case: "flatpak: no account",
            query: vec![
                ("service", SERVICE),
                ("scope", "repository:team/secret:pull"),
            ],
            login: Some(("bob", "bob-pw")),
            status: StatusCode::OK,
            sub: Some("bob"),
        },
        Row {
            case: "bad password",
            query: vec![("service", SERVICE), ("scope", "repository:team/app:pull")],
            login: Some(("carol", "wrong")),
            status: StatusCode::UNAUTHORIZED,
            sub: None,
        },
        Row {
            case: "Katello says unauthenticated: anonymous token",
            query: vec![
                ("service", SERVICE),
                ("scope", "repository:public/base:pull"),
            ],
            login: Some(("carol", "wrong")),
            status: StatusCode::OK,
            sub: Some(""),
        },
        Row {
            case: "no credentials: anonymous without asking Katello",
            query: vec![
                ("service", SERVICE),
                ("scope", "repository:public/base:pull"),
            ],
            login: None,
            status: StatusCode::OK,
            sub: Some(""),
        },
    ];
    for row in rows {
        let reply = sidecar.token(&row.query, row.login).await;
        assert_eq!(reply.status, row.status, "{}: {}", row.case, reply.text());
        if let Some(sub) = row.sub {
            assert_eq!(claims(&reply)["sub"], sub, "{}", row.case);
        } else {
            assert_eq!(
                reply.header("www-authenticate").as_deref(),
                Some("Basic realm=\"registry-gate\""),
                "{}",
                row.case
            );
        }
    }
    let before = katello.token_calls();
    sidecar.token(&[("service", SERVICE)], None).await;
    assert_eq!(
        katello.token_calls(),
        before,
        "anonymous never reaches Katello"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn katello_answering_unauthorized_is_a_bad_password() {
    let dir = tempfile::tempdir().unwrap();
    let (tls, client) = material(dir.path());
    let katello = katello(&tls, Refusal::UnauthorizedToken);
    let redis = Redis::start();
    let sidecar = sidecar(&redis, katello_flags(&katello.url(), &tls, &client, 2000)).await;
    let query = [("service", SERVICE), ("scope", "repository:team/app:pull")];
    let reply = sidecar.token(&query, Some(("alice", "wrong"))).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());
    let reply = sidecar.token(&query, Some(("alice", "alice-pw"))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn katello_errors_reach_the_client_with_their_status() {
    let dir = tempfile::tempdir().unwrap();
    let (tls, client) = material(dir.path());
    let katello = katello(&tls, Refusal::Status401);
    let redis = Redis::start();
    let sidecar = sidecar(&redis, katello_flags(&katello.url(), &tls, &client, 300)).await;
    let query = [("service", SERVICE), ("scope", "repository:team/app:pull")];
    let rows: [(&str, Option<u16>, Duration, StatusCode); 4] = [
        (
            "500",
            Some(500),
            Duration::ZERO,
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
        ("403", Some(403), Duration::ZERO, StatusCode::FORBIDDEN),
        ("404", Some(404), Duration::ZERO, StatusCode::NOT_FOUND),
        (
            "too slow",
            None,
            Duration::from_secs(2),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
    ];
    for (case, status, delay, want) in rows {
        katello.fail_with(status);
        katello.delay(delay);
        let reply = sidecar.token(&query, Some(("alice", "alice-pw"))).await;
        assert_eq!(reply.status, want, "{case}: {}", reply.text());
        let body = reply.json();
        assert!(
            body["errors"][0]["code"].is_string(),
            "{case}: registry error format"
        );
        assert!(
            !reply.text().contains("injected"),
            "{case}: Katello's body is not relayed"
        );
        if want == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(reply.header("retry-after").as_deref(), Some("1"), "{case}");
        }
    }
    katello.fail_with(None);
    katello.delay(Duration::ZERO);
    let reply = sidecar.token(&query, Some(("alice", "alice-pw"))).await;
    assert_eq!(reply.status, StatusCode::OK, "recovers: {}", reply.text());

    // Katello gone: 503 + Retry-After; a cached login keeps working meanwhile.
    drop(katello);
    let reply = sidecar.token(&query, Some(("bob", "bob-pw"))).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.text()
    );
    assert_eq!(reply.header("retry-after").as_deref(), Some("1"));
    let reply = sidecar.token(&query, Some(("alice", "alice-pw"))).await;
    assert_eq!(reply.status, StatusCode::OK, "cached: {}", reply.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_logins_by_one_user_costs_one_katello_call() {
    let dir = tempfile::tempdir().unwrap();
    let (tls, client) = material(dir.path());
    let katello = katello(&tls, Refusal::Status401);
    katello.delay(Duration::from_millis(200));
    let redis = Redis::start();
    let sidecar =
        Arc::new(sidecar(&redis, katello_flags(&katello.url(), &tls, &client, 5000)).await);
    let logins: Vec<_> = (0..100)
        .map(|_| {
            let sidecar = Arc::clone(&sidecar);
            tokio::spawn(async move {
                let query = [("service", SERVICE), ("scope", "repository:team/app:pull")];
                sidecar
                    .token(&query, Some(("alice", "alice-pw")))
                    .await
                    .status
            })
        })
        .collect();
    for login in logins {
        assert_eq!(login.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(katello.token_calls(), 1);
}

fn authenticator(url: &str, tls: &Tls, client: &ClientCert, identity: bool) -> Authenticator {
    let settings = KatelloSettings::load(
        url,
        Some(&tls.ca_cert),
        identity.then(|| ClientIdentity {
            cert_file: &client.cert,
            key_file: &client.key,
        }),
        Duration::from_secs(2),
        4,
    )
    .unwrap();
    let client = KatelloClient::new(&settings, Duration::from_secs(2)).unwrap();
    Authenticator::new(
        Backend::Katello(Arc::new(client)),
        LoginSettings {
            concurrency: 1,
            queue_timeout: Duration::from_secs(2),
            cache_ttl: Duration::from_secs(30),
            refusal_ttl: Duration::from_secs(10),
            limits: LimitSettings {
                per_user: 10,
                per_address: 30,
                window: Duration::from_secs(60),
            },
        },
    )
    .unwrap()
}

/// A Basic login of `user` with `password` for `scopes`, as the token endpoint makes it.
async fn basic_login(
    auth: &Authenticator,
    user: &str,
    password: &str,
    scopes: &[String],
) -> Result<registry_gate_sidecar::login::Login, registry_gate_sidecar::login::AuthError> {
    let header = reqwest::header::HeaderValue::from_str(&format!(
        "Basic {}",
        STANDARD.encode(format!("{user}:{password}"))
    ))
    .unwrap();
    let credentials = Credentials::Basic {
        user: user.into(),
        password: password.into(),
    };
    auth.authenticate(LoginRequest {
        credentials: &credentials,
        authorization: Some(&header),
        scopes,
        address: None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_katello_login_can_refresh_its_catalog_through_the_same_client() {
    let dir = tempfile::tempdir().unwrap();
    let (tls, client) = material(dir.path());
    let katello = katello(&tls, Refusal::Status401);
    let auth = authenticator(&katello.url(), &tls, &client, true);
    let scopes = ["repository:team/app:pull".to_owned()];
    let login = basic_login(&auth, "alice", "alice-pw", &scopes)
        .await
        .unwrap();
    let repositories = login
        .catalog
        .expect("a Katello user login")
        .run()
        .await
        .unwrap();
    assert_eq!(repositories, ["public/base", "team/app"]);
    assert_eq!((katello.token_calls(), katello.catalog_calls()), (1, 1));

    // A wrong password is asked of Katello once; the same again is refused from memory.
    for want_remembered in [false, true] {
        let refused = basic_login(&auth, "alice", "wrong", &scopes)
            .await
            .unwrap_err();
        let remembered = matches!(
            refused,
            registry_gate_sidecar::login::AuthError::RememberedRefusal
        );
        assert_eq!(remembered, want_remembered, "{refused:?}");
    }
    assert_eq!(
        katello.token_calls(),
        2,
        "one Katello call for two wrong logins"
    );

    // Without the client certificate Katello's TLS refuses the connection: unreachable.
    let anonymous_tls = authenticator(&katello.url(), &tls, &client, false);
    let refused = basic_login(&anonymous_tls, "alice", "alice-pw", &scopes)
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            registry_gate_sidecar::login::AuthError::Katello(
                registry_gate_sidecar::katello::KatelloError::Unreachable(_)
            )
        ),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_refresh_grants_from_katellos_catalog_coalesced() {
    let dir = tempfile::tempdir().unwrap();
    let (tls, client) = material(dir.path());
    let katello = katello(&tls, Refusal::Status401);
    let redis = Redis::start();
    let sidecar =
        Arc::new(sidecar(&redis, katello_flags(&katello.url(), &tls, &client, 5000)).await);
    // The sync API has not granted anyone anything yet.
    let reply = sidecar
        .put(
            &content(
                &[
                    ("public/base", false),
                    ("team/app", true),
                    ("team/secret", true),
                ],
                &[],
            ),
            None,
            "",
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let before = sidecar.snapshot().await.1.header.generation;

    let logins: Vec<_> = ["alice", "bob", "carol"]
        .iter()
        .flat_map(|user| std::iter::repeat_n(*user, 10))
        .map(|user| {
            let sidecar = Arc::clone(&sidecar);
            tokio::spawn(async move {
                let query = [("service", SERVICE), ("scope", "repository:team/app:pull")];
                let reply = sidecar
                    .token(&query, Some((user, &format!("{user}-pw"))))
                    .await;
                assert_eq!(reply.status, StatusCode::OK, "{user}: {}", reply.text());
                (user, granted(&claims(&reply)))
            })
        })
        .collect();
    for login in logins {
        let (user, granted) = login.await.unwrap();
        // The refreshed grant is in the very login that fetched it.
        let expected: &[&str] = if user == "alice" { &["team/app"] } else { &[] };
        assert_eq!(granted, expected, "{user}");
    }
    assert_eq!(katello.catalog_calls(), 3, "one catalog call per user");
    let metrics = sidecar.metrics().await;
    assert!(
        metrics.contains("registry_gate_sidecar_logins_total{outcome=\"issued\"} 30"),
        "{metrics}"
    );
    let (_, snapshot) = sidecar.snapshot().await;
    assert_eq!(snapshot.content.users["alice"], vec!["team/app".to_owned()]);
    assert_eq!(
        snapshot.content.users["bob"],
        vec!["team/secret".to_owned()]
    );
    assert!(
        !snapshot.content.users.contains_key("carol"),
        "carol's catalog grants nothing: no entry"
    );
    let publishes = snapshot.header.generation - before;
    assert!(
        (1..=3).contains(&publishes),
        "30 logins of 3 users made {publishes} publishes"
    );

    // Within the login cache's lifetime nobody is asked again.
    let query = [("service", SERVICE)];
    let reply = sidecar.token(&query, Some(("bob", "bob-pw"))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(katello.catalog_calls(), 3);
    assert_eq!(
        sidecar.snapshot().await.1.header.generation,
        before + publishes
    );

    // Refreshing can be turned off.
    let mut flags = katello_flags(&katello.url(), &tls, &client, 5000);
    flags.extend([
        "--refresh-repositories-on-login".to_owned(),
        "false".to_owned(),
    ]);
    let quiet = sidecar_with(&redis, flags, "rg-quiet:").await;
    let reply = quiet.token(&query, Some(("alice", "alice-pw"))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(katello.catalog_calls(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_are_case_insensitive_and_add_few_users_between_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let (tls, client) = material(dir.path());
    let katello = katello(&tls, Refusal::Status401);
    let redis = Redis::start();
    let mut flags = katello_flags(&katello.url(), &tls, &client, 5000);
    flags.extend(["--login-users-between-syncs".to_owned(), "1".to_owned()]);
    let sidecar = sidecar(&redis, flags).await;
    let repositories = [
        ("public/base", false),
        ("team/app", true),
        ("team/secret", true),
    ];
    // A sync that lists nobody.
    let reply = sidecar.put(&content(&repositories, &[]), None, "").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let query = [("service", SERVICE), ("scope", "repository:team/app:pull")];

    // Katello's `alice`, however the login is spelled: one principal, one Katello check,
    // one catalog call, one entry.
    for login in ["alice", "Alice", "ALICE", "aLiCe"] {
        let reply = sidecar.token(&query, Some((login, "alice-pw"))).await;
        assert_eq!(reply.status, StatusCode::OK, "{login}: {}", reply.text());
        let claims = claims(&reply);
        assert_eq!(claims["sub"], "alice", "{login}");
        assert_eq!(granted(&claims), ["team/app"], "{login}");
    }
    assert_eq!(katello.token_calls(), 1, "one login, however spelled");
    assert_eq!(katello.catalog_calls(), 1);
    let users = |snapshot: &registry_gate_core::snapshot::legacy::Snapshot| {
        snapshot.content.users.keys().cloned().collect::<Vec<_>>()
    };
    assert_eq!(users(&sidecar.snapshot().await.1), ["alice"]);

    // carol's catalog grants nothing: she gets no entry, and does not count.
    let reply = sidecar.token(&query, Some(("carol", "carol-pw"))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    // bob would be the second user logins add before a sync: he logs in, without grants.
    let bob_query = [
        ("service", SERVICE),
        ("scope", "repository:team/secret:pull"),
    ];
    let reply = sidecar.token(&bob_query, Some(("bob", "bob-pw"))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(granted(&claims(&reply)).is_empty());
    assert_eq!(users(&sidecar.snapshot().await.1), ["alice"]);

    // After a sync (which kept alice), bob's next login adds him.
    let reply = sidecar
        .put(
            &content(&repositories, &[("alice", &["team/app"])]),
            None,
            "",
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let reply = sidecar.token(&bob_query, Some(("bob", "bob-pw"))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(granted(&claims(&reply)), ["team/secret"]);
    assert_eq!(users(&sidecar.snapshot().await.1), ["alice", "bob"]);
}
