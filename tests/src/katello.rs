//! An in-process stand-in for Katello's registry login endpoints, for tests of the sidecar's
//! Katello login backend: `GET /v2/token` and `GET /v2/_catalog` over HTTPS, optionally
//! requiring a client certificate signed by a given CA.
//!
//! It answers as Katello's `Api::Registry::RegistryProxiesController` does (read from
//! Katello's public code, not copied):
//! - `/v2/token` without `scope` and without `account` → 200 `{"token":"unauthenticated"}`
//!   (3 minutes), credentials or not; likewise, without checking the credentials, when the
//!   `scope` (the last one, as Rails keeps it) names a public repository
//!   (`repository:<name>:pull`, Katello's "unauthenticated pull").
//! - otherwise Basic credentials must be a known user's: 200 `{"token","expires_in",
//!   "issued_at"}` (a fresh random token, `expires_in` 360, RFC 3339 `issued_at`); bad or
//!   missing credentials → 401 `{"error":{"message":"Unable to authenticate user"}}`, or,
//!   with [`Refusal::UnauthorizedToken`], 200 `{"token":"unauthorized"}`.
//! - logins are case-insensitive, as Foreman's (`find_by(lower_login: login.downcase)`).
//! - `/v2/_catalog` → `{"repositories":[...]}`: the user's repositories plus the public ones
//!   with good Basic credentials, the public ones without credentials, 401 with bad ones.
//!
//! Tests can make it answer a fixed status ([`KatelloStandIn::fail_with`]) or answer late
//! ([`KatelloStandIn::delay`]), and read per-endpoint call counters and the last token query.
//! It runs on a runtime thread of its own, so it works from plain `#[test]`s, from
//! `#[tokio::test]`s and from a long-running binary alike; dropping it stops the server.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How a refused login is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 401 with Foreman's JSON error (what Katello's `authorize` answers).
    Status401,
    /// 200 `{"token":"unauthorized"}`.
    UnauthorizedToken,
}

/// One Katello user.
#[derive(Debug, Clone)]
pub struct KatelloUser {
    pub password: String,
    /// Repositories `/v2/_catalog` lists for this user (besides the public ones).
    pub repositories: Vec<String>,
}

/// What the stand-in knows and how it serves.
#[derive(Debug, Clone)]
pub struct KatelloOptions {
    pub users: BTreeMap<String, KatelloUser>,
    /// Repositories with unauthenticated pull.
    pub public_repositories: Vec<String>,
    /// PEM server certificate chain and key.
    pub server_cert: std::path::PathBuf,
    pub server_key: std::path::PathBuf,
    /// When set, a client certificate signed by this PEM CA is required.
    pub client_ca: Option<std::path::PathBuf>,
    pub refusal: Refusal,
}

#[derive(Debug, Default)]
struct Faults {
    status: Option<u16>,
    delay: Duration,
}

#[derive(Debug)]
struct Shared {
    users: BTreeMap<String, KatelloUser>,
    public: Vec<String>,
    refusal: Refusal,
    faults: Mutex<Faults>,
    token_calls: AtomicU64,
    catalog_calls: AtomicU64,
    last_token_query: Mutex<Vec<(String, String)>>,
}

/// A running stand-in; stops when dropped.
#[derive(Debug)]
pub struct KatelloStandIn {
    shared: Arc<Shared>,
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn server_config(options: &KatelloOptions) -> ServerConfig {
    let chain = CertificateDer::pem_file_iter(&options.server_cert)
        .unwrap_or_else(|err| panic!("read {}: {err}", options.server_cert.display()))
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|err| panic!("parse {}: {err}", options.server_cert.display()));
    let key = PrivateKeyDer::from_pem_file(&options.server_key)
        .unwrap_or_else(|err| panic!("read {}: {err}", options.server_key.display()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|err| panic!("TLS versions: {err}"));
    let builder = match &options.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca) {
                roots
                    .add(cert)
                    .unwrap_or_else(|err| panic!("client CA {}: {err}", ca.display()));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap_or_else(|err| panic!("client verifier: {err}"));
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .unwrap_or_else(|err| panic!("server certificate: {err}"));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

fn read_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|err| panic!("parse {}: {err}", path.display()))
}

impl KatelloStandIn {
    /// Binds `127.0.0.1:0` and serves until dropped.
    pub fn start(options: KatelloOptions) -> KatelloStandIn {
        let config = Arc::new(server_config(&options));
        let shared = Arc::new(Shared {
            users: options.users,
            public: options.public_repositories,
            refusal: options.refusal,
            faults: Mutex::new(Faults::default()),
            token_calls: AtomicU64::new(0),
            catalog_calls: AtomicU64::new(0),
            last_token_query: Mutex::new(Vec::new()),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap_or_else(|err| panic!("Katello stand-in runtime: {err}"));
        // Bound here, not on the runtime: `start` may be called from inside another runtime.
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
            .unwrap_or_else(|err| panic!("bind the Katello stand-in: {err}"));
        let address = listener
            .local_addr()
            .unwrap_or_else(|err| panic!("Katello stand-in address: {err}"));
        let (stop, stopped) = oneshot::channel::<()>();
        let router = Router::new()
            .route("/v2/token", get(token))
            .route("/v2/_catalog", get(catalog))
            .with_state(Arc::clone(&shared));
        let thread = std::thread::Builder::new()
            .name("katello-stand-in".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = TlsListener {
                        tcp: TcpListener::from_std(listener)
                            .unwrap_or_else(|err| panic!("Katello stand-in listener: {err}")),
                        acceptor: TlsAcceptor::from(config),
                    };
                    let _ = axum::serve(listener, router)
                        .with_graceful_shutdown(async move {
                            let _ = stopped.await;
                        })
                        .await;
                });
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .unwrap_or_else(|err| panic!("spawn the Katello stand-in thread: {err}"));
        KatelloStandIn {
            shared,
            address,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `https://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.address.port())
    }

    /// From now on every request is answered with `status` (and a short body), or normally
    /// again with `None`.
    pub fn fail_with(&self, status: Option<u16>) {
        self.faults().status = status;
    }

    /// From now on every answer waits `delay` first.
    pub fn delay(&self, delay: Duration) {
        self.faults().delay = delay;
    }

    /// `/v2/token` requests received.
    pub fn token_calls(&self) -> u64 {
        self.shared.token_calls.load(Ordering::SeqCst)
    }

    /// `/v2/_catalog` requests received.
    pub fn catalog_calls(&self) -> u64 {
        self.shared.catalog_calls.load(Ordering::SeqCst)
    }

    /// The query pairs of the last `/v2/token` request, in order.
    pub fn last_token_query(&self) -> Vec<(String, String)> {
        self.shared
            .last_token_query
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for KatelloStandIn {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Yields only connections that completed a TLS handshake (with a valid client certificate
/// when one is required); a failed handshake is dropped and the next connection accepted.
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, address)) = self.tcp.accept().await else {
                continue;
            };
            let handshake = self.acceptor.accept(tcp);
            if let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(5), handshake).await {
                return (tls, address);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// The injected fault, after the injected delay.
async fn fault(shared: &Shared) -> Option<Response> {
    let (status, delay) = {
        let faults = shared.faults.lock().unwrap_or_else(PoisonError::into_inner);
        (faults.status, faults.delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let status = StatusCode::from_u16(status?).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Some((status, "Katello stand-in: injected failure\n").into_response())
}

/// `Some(Some(user))` for good Basic credentials, `Some(None)` for none, `None` for bad ones.
fn basic_user<'a>(shared: &'a Shared, headers: &HeaderMap) -> Option<Option<&'a str>> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Some(None);
    };
    let text = value.to_str().ok()?;
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    // Foreman finds a login by its lower-case form: `Alice` is `alice`.
    let (name, known) = shared
        .users
        .iter()
        .find(|(name, _)| name.to_lowercase() == user.to_lowercase())?;
    (known.password == password).then_some(Some(name.as_str()))
}

fn unable_to_authenticate() -> Response {
    json(
        StatusCode::UNAUTHORIZED,
        serde_json::json!({"error": {"message": "Unable to authenticate user"}}),
    )
}

async fn token(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    shared.token_calls.fetch_add(1, Ordering::SeqCst);
    let pairs: Vec<(String, String)> = url_pairs(query.as_deref());
    *shared
        .last_token_query
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = pairs.clone();
    if let Some(response) = fault(&shared).await {
        return response;
    }
    let scopes: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.as_str())
        .collect();
    let has_account = pairs.iter().any(|(k, v)| k == "account" && !v.is_empty());
    // Rails keeps only the last of repeated `scope` parameters: that one decides.
    let public_scope = scopes.last().is_some_and(|scope| {
        let mut parts = scope.splitn(3, ':');
        matches!(
            (parts.next(), parts.next(), parts.next()),
            (Some("repository"), Some(name), Some("pull")) if shared.public.iter().any(|p| p == name)
        )
    });
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    if (scopes.is_empty() && !has_account) || public_scope {
        return json(
            StatusCode::OK,
            serde_json::json!({"token": "unauthenticated", "expires_in": 180, "issued_at": now}),
        );
    }
    match basic_user(&shared, &headers) {
        Some(Some(_)) => json(
            StatusCode::OK,
            serde_json::json!({
                "token": crate::sidecar::random_hex(20),
                "expires_in": 360,
                "issued_at": now,
            }),
        ),
        _ => match shared.refusal {
            Refusal::Status401 => unable_to_authenticate(),
            Refusal::UnauthorizedToken => {
                json(StatusCode::OK, serde_json::json!({"token": "unauthorized"}))
            }
        },
    }
}

async fn catalog(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    shared.catalog_calls.fetch_add(1, Ordering::SeqCst);
    if let Some(response) = fault(&shared).await {
        return response;
    }
    let mut repositories = shared.public.clone();
    match basic_user(&shared, &headers) {
        None => return unable_to_authenticate(),
        Some(None) => {}
        Some(Some(user)) => {
            if let Some(known) = shared.users.get(user) {
                repositories.extend(known.repositories.iter().cloned());
            }
        }
    }
    repositories.sort();
    repositories.dedup();
    json(
        StatusCode::OK,
        serde_json::json!({ "repositories": repositories }),
    )
}

/// Decoded `application/x-www-form-urlencoded` query pairs, in order.
fn url_pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}
