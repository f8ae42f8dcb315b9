//! Test harness: a real `redis-server` on a free loopback port and sidecars started through
//! `registry_gate_sidecar::run` on `127.0.0.1:0`, with their key, htpasswd, sync secret and
//! read secret generated into a temporary directory (nothing secret is committed).
//!
//! It fails loudly when `redis-server` is missing rather than skipping, and waits for
//! readiness with deadlines instead of sleeping.
// Helpers are test code even though they sit outside `#[test]` functions: failing loudly is
// their job, so the workspace's no-panic lints do not apply here. Not every test binary
// uses every helper.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::future::Future;
use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use registry_gate_core::generation::Generation;
use registry_gate_core::snapshot::legacy::{self, Header, Snapshot};
use registry_gate_core::snapshot::{self, Content, Repository, Schema};
use registry_gate_sidecar::keys::{KeyAlgorithm, SigningKey};
use registry_gate_sidecar::{Cli, Command as SidecarCommand, Config};
use reqwest::StatusCode;
use rustls::pki_types::CertificateDer;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any readiness wait may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// The binary, from `REDIS_SERVER` or the usual places.
fn redis_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("REDIS_SERVER") {
        return PathBuf::from(path);
    }
    for candidate in ["/usr/bin/redis-server", "/usr/local/bin/redis-server"] {
        if std::path::Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!(
        "redis-server not found (looked at $REDIS_SERVER, /usr/bin, /usr/local/bin): \
         install it (apt-get install redis-server); these tests never skip"
    );
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// A throwaway Redis: no persistence, killed on drop.
pub struct Redis {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        let binary = redis_server_binary();
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(&binary)
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                ])
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
            let started = Instant::now();
            while started.elapsed() < DEADLINE {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // exited: port taken meanwhile; try another
                }
                if ping(port) {
                    return Redis {
                        child,
                        port,
                        _dir: dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not answer PING");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    pub fn flushall(&self) {
        let _: () = redis::cmd("FLUSHALL")
            .query(&mut self.connection())
            .unwrap();
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        redis::cmd("GET")
            .arg(key)
            .query(&mut self.connection())
            .unwrap()
    }

    /// Replaces everything in Redis with `keys` in one transaction, as restoring a backup
    /// (a `dump`) does: no client ever sees the store half restored.
    pub fn restore(&self, keys: &[(String, Vec<u8>)]) {
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("FLUSHALL").ignore();
        for (key, value) in keys {
            pipe.cmd("SET").arg(key).arg(value).ignore();
        }
        let _: () = pipe.query(&mut self.connection()).unwrap();
    }

    /// Every key and its value (all keys are strings in our layout).
    pub fn dump(&self) -> Vec<(String, Vec<u8>)> {
        let mut conn = self.connection();
        let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
        keys.sort();
        keys.into_iter()
            .map(|k| {
                let v: Vec<u8> = redis::cmd("GET").arg(&k).query(&mut conn).unwrap();
                (k, v)
            })
            .collect()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0_u8; 7];
    stream.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// How to start a sidecar.
#[derive(Clone)]
pub struct Options {
    pub prefix: String,
    /// `(user, password)` pairs written to an htpasswd file at `bcrypt_cost`.
    pub users: Vec<(String, String)>,
    /// 4 keeps logins fast; raise it to make a bcrypt run take a while.
    pub bcrypt_cost: u32,
    /// Use this key instead of a fresh one.
    pub key: Option<SigningKey>,
    /// Use this publisher key (Ed25519) instead of a fresh one.
    pub publisher: Option<SigningKey>,
    pub extra: Vec<String>,
    /// Serve HTTPS with a certificate generated for `127.0.0.1` by a generated CA.
    pub tls: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            prefix: "rg-test:".into(),
            users: vec![],
            bcrypt_cost: 4,
            key: None,
            publisher: None,
            extra: vec![],
            tls: false,
        }
    }
}

/// A reqwest client for the sidecar's plain-HTTP API. The sidecar builds reqwest with
/// `rustls-no-provider` (ring, not aws-lc), so reqwest needs a process-wide rustls provider
/// even for plain HTTP; installing one more than once is harmless.
pub fn plain_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A running sidecar.
pub struct Sidecar {
    pub base: String,
    /// The sync secret (PUT).
    pub secret: String,
    /// The read secret (`GET /v1/snapshot`).
    pub read_secret: String,
    /// The admin secret: the operator's `PUT /v1/snapshot`, which may change keys.
    pub admin_secret: String,
    /// Signs what this sidecar publishes.
    pub publisher: registry_gate_index::Signer,
    pub key: SigningKey,
    pub service: String,
    pub client: reqwest::Client,
    /// The CA that signed the HTTPS certificate, when started with `tls`.
    pub ca: Option<CertificateDer<'static>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

/// The publisher key every sidecar of this test process shares unless told otherwise: the
/// instances of one deployment on one Redis sign alike.
fn deployment_publisher() -> SigningKey {
    static KEY: std::sync::OnceLock<SigningKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate(KeyAlgorithm::EdDSA).unwrap())
        .clone()
}

impl Sidecar {
    /// Two instances of one deployment on `redis`: they share the signing key (and, as every
    /// sidecar here, the publisher key).
    pub async fn pair(redis: &Redis) -> (Sidecar, Sidecar) {
        let shared = Options {
            key: Some(SigningKey::generate(KeyAlgorithm::default()).unwrap()),
            ..Options::default()
        };
        let here = Sidecar::start(redis, shared.clone()).await;
        let there = Sidecar::start(redis, shared).await;
        (here, there)
    }

    pub async fn start(redis: &Redis, options: Options) -> Sidecar {
        Sidecar::start_at(vec!["--redis-url".into(), redis.url()], options).await
    }

    /// A sidecar whose Redis is given by `redis_args` (e.g. `--redis-sentinels ...`).
    pub async fn start_at(redis_args: Vec<String>, options: Options) -> Sidecar {
        let dir = tempfile::tempdir().unwrap();
        let key = options
            .key
            .unwrap_or_else(|| SigningKey::generate(KeyAlgorithm::default()).unwrap());
        let key_path = dir.path().join("key.pem");
        std::fs::write(&key_path, key.to_pem().unwrap()).unwrap();
        let secret = format!("sync-secret-{}", key.kid().replace(['-', '_'], "x"));
        let secret_path = dir.path().join("secret");
        std::fs::write(&secret_path, format!("{secret}\n")).unwrap();
        let read_secret = format!("read-secret-{}", key.kid().replace(['-', '_'], "y"));
        let read_secret_path = dir.path().join("read-secret");
        std::fs::write(&read_secret_path, format!("{read_secret}\n")).unwrap();
        let admin_secret = format!("admin-secret-{}", key.kid().replace(['-', '_'], "z"));
        let admin_secret_path = dir.path().join("admin-secret");
        std::fs::write(&admin_secret_path, format!("{admin_secret}\n")).unwrap();
        let publisher = options.publisher.unwrap_or_else(deployment_publisher);
        let publisher_path = dir.path().join("publisher.pem");
        std::fs::write(&publisher_path, publisher.to_pem().unwrap()).unwrap();
        let mut argv: Vec<String> = vec![
            "registry-gate-sidecar".into(),
            "serve".into(),
            "--key-prefix".into(),
            options.prefix.clone(),
            "--signing-key".into(),
            key_path.display().to_string(),
            "--sync-secret-file".into(),
            secret_path.display().to_string(),
            "--read-secret-file".into(),
            read_secret_path.display().to_string(),
            "--admin-secret-file".into(),
            admin_secret_path.display().to_string(),
            "--publisher-key".into(),
            publisher_path.display().to_string(),
            "--service".into(),
            "test-registry".into(),
            "--issuer".into(),
            "test-issuer".into(),
            "--log-format".into(),
            "text".into(),
        ];
        if !options.users.is_empty() {
            let htpasswd: String = options
                .users
                .iter()
                .map(|(user, password)| {
                    let hash = bcrypt::hash_with_result(password, options.bcrypt_cost)
                        .unwrap()
                        .format_for_version(bcrypt::Version::TwoY);
                    format!("{user}:{hash}\n")
                })
                .collect();
            let path = dir.path().join("htpasswd");
            std::fs::write(&path, htpasswd).unwrap();
            argv.push("--htpasswd".into());
            argv.push(path.display().to_string());
        }
        let ca = options.tls.then(|| {
            let (ca, cert, key) = generate_tls();
            let cert_path = dir.path().join("server.crt");
            let key_path = dir.path().join("server.key");
            std::fs::write(&cert_path, cert).unwrap();
            std::fs::write(&key_path, key).unwrap();
            argv.push("--tls-cert-file".into());
            argv.push(cert_path.display().to_string());
            argv.push("--tls-key-file".into());
            argv.push(key_path.display().to_string());
            ca
        });
        argv.extend(redis_args);
        argv.extend(options.extra);
        let SidecarCommand::Serve(args) = Cli::try_parse_from(argv).unwrap().command else {
            unreachable!()
        };
        let config = Config::from_args(&args).unwrap_or_else(|e| panic!("{e}"));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let scheme = if ca.is_some() { "https" } else { "http" };
        let base = format!("{scheme}://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            registry_gate_sidecar::run(listener, config, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        let sidecar = Sidecar {
            base,
            secret,
            read_secret,
            admin_secret,
            publisher: publisher.publisher().unwrap(),
            key,
            service: "test-registry".into(),
            client: plain_client(),
            ca,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        };
        eventually("sidecar answers /readyz", || async {
            if sidecar.ca.is_some() {
                return matches!(sidecar.https("GET /readyz", &[]).await, Ok(r) if r.status == 200);
            }
            matches!(
                sidecar.client.get(sidecar.url("/readyz")).send().await,
                Ok(r) if r.status() == StatusCode::OK
            )
        })
        .await;
        sidecar
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `host:port` of the listener.
    pub fn address(&self) -> &str {
        self.base.split_once("://").unwrap().1
    }

    /// One HTTP/1.1 request over TLS to this sidecar (see [`https`]).
    pub async fn https(
        &self,
        request_line: &str,
        headers: &[(&str, &str)],
    ) -> Result<RawReply, String> {
        https(
            self.address(),
            self.ca.as_ref().expect("started without tls"),
            request_line,
            headers,
        )
        .await
    }

    /// Stops the server and waits for it (graceful shutdown).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(DEADLINE, task)
                .await
                .expect("sidecar did not shut down in time")
                .unwrap();
        }
    }

    /// `PUT /v1/snapshot` with the sync secret.
    pub async fn put(&self, content: &Value, if_match: Option<&str>, query: &str) -> Reply {
        self.put_raw(serde_json::to_vec(content).unwrap(), if_match, query)
            .await
    }

    pub async fn put_raw(&self, body: Vec<u8>, if_match: Option<&str>, query: &str) -> Reply {
        let headers: Vec<(&str, &str)> =
            if_match.map(|tag| ("if-match", tag)).into_iter().collect();
        self.put_with_headers(body, &headers, query).await
    }

    /// `PUT /v1/snapshot` as the operator (the admin secret) with extra `headers`
    /// (preconditions).
    pub async fn put_with_headers(
        &self,
        body: Vec<u8>,
        headers: &[(&str, &str)],
        query: &str,
    ) -> Reply {
        self.put_as(&self.admin_secret, body, headers, query).await
    }

    /// `PUT /v1/snapshot` with the sync secret: repositories and grants only.
    pub async fn put_as_sync(&self, content: &Value) -> Reply {
        let body = serde_json::to_vec(content).unwrap();
        self.put_as(&self.secret, body, &[], "").await
    }

    async fn put_as(
        &self,
        secret: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
        query: &str,
    ) -> Reply {
        let mut request = self
            .client
            .put(self.url(&format!("/v1/snapshot{query}")))
            .bearer_auth(secret)
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Reply::from(request.send().await.unwrap()).await
    }

    /// `GET /v1/snapshot` with the read secret and optional `If-None-Match`.
    pub async fn get(&self, if_none_match: Option<&str>, query: &str) -> Reply {
        let mut request = self
            .client
            .get(self.url(&format!("/v1/snapshot{query}")))
            .bearer_auth(&self.read_secret);
        if let Some(tag) = if_none_match {
            request = request.header("if-none-match", tag);
        }
        Reply::from(request.send().await.unwrap()).await
    }

    /// `GET /v2/token?<query>`, with Basic credentials when `login` is given.
    pub async fn token(&self, query: &[(&str, &str)], login: Option<(&str, &str)>) -> Reply {
        let mut request = self.client.get(self.url("/v2/token")).query(query);
        if let Some((user, password)) = login {
            request = request.basic_auth(user, Some(password));
        }
        Reply::from(request.send().await.unwrap()).await
    }

    /// `GET /metrics`: the Prometheus text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The current snapshot as a fetcher of this build gets it (`schema=2.0`: the signed
    /// index), its signature checked against this sidecar's publisher key.
    pub async fn snapshot(&self) -> (String, Snapshot) {
        let reply = self.get(None, "?schema=2.0").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        registry_gate_index::verify(&reply.body, &[self.publisher.public()]).unwrap();
        (reply.etag().unwrap(), decode(&reply.body).unwrap())
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// One HTTP/1.1 request over TLS to `address`, trusting only `ca` (and checking that the
/// certificate names `127.0.0.1`): `request_line` is e.g. `GET /healthz`.
pub async fn https(
    address: &str,
    ca: &CertificateDer<'static>,
    request_line: &str,
    headers: &[(&str, &str)],
) -> Result<RawReply, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let mut request =
        format!("{request_line} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    tls.read_to_end(&mut response)
        .await
        .map_err(|e| format!("read: {e}"))?;
    RawReply::parse(&response)
}

/// An HTTP/1.1 response read from a raw connection (`Connection: close`, no chunking).
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawReply {
    fn parse(bytes: &[u8]) -> Result<RawReply, String> {
        let split = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| format!("no HTTP response: {:?}", String::from_utf8_lossy(bytes)))?;
        let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        Ok(RawReply {
            status,
            headers,
            body: bytes[split + 4..].to_vec(),
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A CA certificate (DER), and a server certificate for `127.0.0.1` and `localhost` signed by
/// it with its key (both PEM).
pub fn generate_tls() -> (CertificateDer<'static>, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose, SanType,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::default();
    let mut ca_name = DistinguishedName::new();
    ca_name.push(DnType::CommonName, "registry-gate sidecar test CA");
    ca_params.distinguished_name = ca_name;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![
        SanType::DnsName("localhost".to_owned().try_into().unwrap()),
        SanType::IpAddress(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    (ca.der().clone(), cert.pem(), key.serialize_pem())
}

/// A response read whole.
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub async fn from(response: reqwest::Response) -> Reply {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap().to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    pub fn etag(&self) -> Option<String> {
        self.header("etag")
    }
}

/// Polls `check` until it holds or the deadline passes (then fails naming `what`).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A content with the given `(name, auth_required)` repositories and user grants, as JSON.
pub fn content(repositories: &[(&str, bool)], users: &[(&str, &[&str])]) -> Value {
    let content = Content {
        repositories: repositories
            .iter()
            .map(|(name, auth_required)| Repository {
                name: (*name).into(),
                auth_required: *auth_required,
            })
            .collect(),
        users: users
            .iter()
            .map(|(user, names)| {
                (
                    (*user).to_owned(),
                    names.iter().map(|n| (*n).to_owned()).collect(),
                )
            })
            .collect(),
        ..Content::default()
    };
    serde_json::to_value(content).unwrap()
}

/// `(epoch, generation)` of an ETag, parsed by the core's one definition (so every test
/// also checks that what the sidecar serves is what the filter's fetcher can parse).
pub fn parse_etag(etag: &str) -> (String, u64) {
    let generation = Generation::parse(etag)
        .unwrap_or_else(|| panic!("{etag:?} is not a generation entity tag"));
    (generation.epoch, generation.number)
}

/// Decodes what a sidecar serves or stores: the signed index (schema 2) or the 1.x JSON
/// envelope, as one shape (the index's checksum as 16 hex digits).
pub fn decode(body: &[u8]) -> Result<Snapshot, String> {
    if !body.starts_with(&registry_gate_index::layout::MAGIC) {
        return legacy::decode(body).map_err(|e| e.to_string());
    }
    let index = registry_gate_index::Index::open(body).map_err(|e| e.to_string())?;
    let content = snapshot::content_of(&index).map_err(|e| e.to_string())?;
    Ok(Snapshot {
        header: Header {
            schema: Schema::CURRENT,
            required_features: index.required_features().map(str::to_owned).collect(),
            epoch: index.epoch().to_owned(),
            generation: index.generation(),
            published_at: index.published_at(),
            producer: index.producer().to_owned(),
            checksum: format!("{:016x}", index.checksum()),
            allow_empty: index.allow_empty(),
        },
        content,
    })
}

/// A TCP relay in front of a server (Redis): what passes through it can be cut off, as a
/// network partition cuts one sidecar off from the store while another still reaches it.
pub struct Relay {
    pub port: u16,
    cut: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Relay {
    /// Relays `127.0.0.1:<port>` to `127.0.0.1:<target>`.
    pub async fn start(target: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, cut_off) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if *cut_off.borrow() {
                    continue; // dropped: the connection closes at once
                }
                let mut cut_off = cut_off.clone();
                tokio::spawn(async move {
                    let Ok(mut server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut_off.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Relay { port, cut, task }
    }

    /// `redis://127.0.0.1:<port>/0` through the relay.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Closes every relayed connection and every new one from now on.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
