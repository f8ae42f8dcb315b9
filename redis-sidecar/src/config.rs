//! Command line and environment: every setting is a flag and an environment variable with a
//! documented default (`--help` shows both), parsed as text by clap and then validated here
//! into a [`Config`] in one pass that reports every bad setting at once.
//!
//! This module owns reading the files the settings name (signing key, htpasswd, secrets,
//! Katello CA and client certificate) so that a bad file is a startup error, not a runtime
//! surprise. It must never start anything or touch the network, and never echo a secret in
//! an error.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use thiserror::Error;

use registry_gate_core::config::Settings;
use registry_gate_index::Signer;

use crate::katello::{ClientIdentity, KatelloSettings};

mod sync;

use crate::keys::{KeyAlgorithm, SigningKey};
use crate::login::limits::LimitSettings;
use crate::store::{ReplicaAcks, Target, MAX_REPLICA_ACK_TIMEOUT};
use crate::tls::Tls;
use crate::token::Htpasswd;
pub use sync::{SyncArgs, SyncConfig, SyncSource};

/// registry-gate sidecar: snapshot distribution over Redis, sync API and Docker token endpoint.
#[derive(Debug, Parser)]
#[command(name = "registry-gate-sidecar", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the snapshot, sync and token HTTP API.
    Serve(Box<ServeArgs>),
    /// Write a fresh token signing key (PKCS#8 PEM, mode 0600); never overwrites.
    Keygen(KeygenArgs),
    /// Publish one complete snapshot from a file or from Pulp through a sidecar, then exit
    /// (for a CronJob or a timer). Exit codes: 0 published or unchanged (or a dry run), 2 bad
    /// settings or a source that cannot be read, 3 refused by the shrink guard, 4 the sidecar
    /// unreachable, refusing, or its generation kept changing.
    Sync(Box<SyncArgs>),
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the private key.
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// Signing algorithm of the key: ES256 (ECDSA P-256), whose signatures the filter has
    /// Envoy's own crypto check, or EdDSA (Ed25519), which the filter checks in wasm (slower
    /// on a token's first use). `serve` reads either kind.
    #[arg(long, value_enum, default_value_t)]
    pub algorithm: KeyAlgorithm,
}

/// `serve` settings exactly as given: text, validated by [`Config::from_args`] so that every
/// bad value is reported together.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "RG_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: String,
    /// Redis URL (redis:// or unix://; the database number selects the keyspace) [default:
    /// redis://127.0.0.1:6379/0]. Excludes --redis-sentinels.
    #[arg(long, env = "RG_REDIS_URL", value_name = "URL")]
    pub redis_url: Option<String>,
    /// Comma-separated `host:port` of Redis Sentinels, asked in order for the primary of
    /// --redis-sentinel-master (database 0; no AUTH) [default: none, use --redis-url].
    #[arg(long, env = "RG_REDIS_SENTINELS", value_name = "HOST:PORT,...")]
    pub redis_sentinels: Option<String>,
    /// The master name the sentinels monitor (`sentinel monitor <name> ...`); goes with
    /// --redis-sentinels.
    #[arg(long, env = "RG_REDIS_SENTINEL_MASTER", value_name = "NAME")]
    pub redis_sentinel_master: Option<String>,
    /// Replicas that must acknowledge a publish (Redis `WAIT`) before it is acknowledged;
    /// past --redis-replica-ack-timeout-ms the publish gets 503 (0..=16; 0 = no wait).
    #[arg(long, env = "RG_REDIS_MIN_REPLICAS_ACKED", default_value = "0")]
    pub redis_min_replicas_acked: String,
    /// How long a publish waits for --redis-min-replicas-acked replicas, in milliseconds
    /// (1..=4000).
    #[arg(long, env = "RG_REDIS_REPLICA_ACK_TIMEOUT_MS", default_value = "1000")]
    pub redis_replica_ack_timeout_ms: String,
    /// Maximum Redis connections (one bounded pool for everything).
    #[arg(long, env = "RG_REDIS_POOL_SIZE", default_value = "16")]
    pub redis_pool_size: String,
    /// Prefix of every Redis key this sidecar uses.
    #[arg(long, env = "RG_KEY_PREFIX", default_value = "registry-gate:")]
    pub key_prefix: String,
    /// Private key (PKCS#8 PEM) that signs tokens: ES256 (P-256) or EdDSA (Ed25519); see
    /// `keygen`. Required.
    #[arg(long, env = "RG_SIGNING_KEY", value_name = "PATH")]
    pub signing_key: Option<PathBuf>,
    /// Private key (PKCS#8 PEM, Ed25519: `keygen --algorithm EdDSA`) that signs every
    /// snapshot index this sidecar publishes; filters list its public half (which keygen
    /// prints and the sidecar logs at start) in `publisher_keys`. Required.
    #[arg(long, env = "RG_PUBLISHER_KEY", value_name = "PATH")]
    pub publisher_key: Option<PathBuf>,
    /// Key id (`kid`) of minted tokens and of the published key [default: RFC 7638
    /// thumbprint of the public key].
    #[arg(long, env = "RG_KEY_ID")]
    pub key_id: Option<String>,
    /// `iss` of minted tokens.
    #[arg(long, env = "RG_ISSUER", default_value = "registry-gate")]
    pub issuer: String,
    /// Service name: the `service` token requests must name and the `aud` of tokens.
    #[arg(long, env = "RG_SERVICE", default_value = "registry-gate")]
    pub service: String,
    /// Lifetime of minted tokens in seconds (60..=86400).
    #[arg(long, env = "RG_TOKEN_TTL_SECS", default_value = "300")]
    pub token_ttl_secs: String,
    /// htpasswd file with bcrypt entries for Basic logins, re-read when it changes [default:
    /// none]. Excludes --katello-url; with neither, only anonymous tokens are issued.
    #[arg(long, env = "RG_HTPASSWD", value_name = "PATH")]
    pub htpasswd: Option<PathBuf>,
    /// Katello (Foreman) base URL whose `/v2/token` checks Basic logins, e.g.
    /// https://foreman.example.com [default: none]. Excludes --htpasswd.
    #[arg(long, env = "RG_KATELLO_URL", value_name = "URL")]
    pub katello_url: Option<String>,
    /// PEM CA certificate(s) that Katello's server certificate must chain to [default: the
    /// system trust store].
    #[arg(long, env = "RG_KATELLO_CA_FILE", value_name = "PATH")]
    pub katello_ca_file: Option<PathBuf>,
    /// PEM client certificate chain presented to Katello [default: none].
    #[arg(long, env = "RG_KATELLO_CLIENT_CERT_FILE", value_name = "PATH")]
    pub katello_client_cert_file: Option<PathBuf>,
    /// PEM private key of --katello-client-cert-file.
    #[arg(long, env = "RG_KATELLO_CLIENT_KEY_FILE", value_name = "PATH")]
    pub katello_client_key_file: Option<PathBuf>,
    /// Bound on connecting to Katello and on each whole Katello request, in milliseconds
    /// (1..=60000); past it a login gets 503 + Retry-After.
    #[arg(long, env = "RG_KATELLO_TIMEOUT_MS", default_value = "5000")]
    pub katello_timeout_ms: String,
    /// Katello requests in flight at once (and idle connections kept); more logins queue for
    /// up to --login-queue-timeout-ms (1..=1024).
    #[arg(long, env = "RG_KATELLO_MAX_CONNECTIONS", default_value = "16")]
    pub katello_max_connections: String,
    /// How long a successful Basic login is remembered in memory, so a burst of logins by
    /// one user costs one check, in seconds (0 disables, ..=3600).
    #[arg(long, env = "RG_LOGIN_CACHE_TTL_SECS", default_value = "30")]
    pub login_cache_ttl_secs: String,
    /// With the Katello backend, re-read a user's repositories from Katello's `/v2/_catalog`
    /// at login (as the old container gateway did) and publish them when they changed;
    /// `false` leaves grants to the sync API alone.
    #[arg(
        long,
        env = "RG_REFRESH_REPOSITORIES_ON_LOGIN",
        default_value = "true",
        value_name = "BOOL"
    )]
    pub refresh_repositories_on_login: String,
    /// Users that login refreshes may add to the snapshot between two syncs (0..=1000000):
    /// a login of a user the sync has not listed yet adds one; past the bound such logins
    /// still succeed but wait for the next sync for their grants.
    #[arg(long, env = "RG_LOGIN_USERS_BETWEEN_SYNCS", default_value = "1000")]
    pub login_users_between_syncs: String,
    /// File holding the bearer secret that PUT requests must present. Required.
    #[arg(long, env = "RG_SYNC_SECRET_FILE", value_name = "PATH")]
    pub sync_secret_file: Option<PathBuf>,
    /// File holding the admin bearer secret: the only credential that may change a
    /// snapshot's `keys` or `min_token_iat` (`PUT /v1/snapshot`) [default: none, they cannot
    /// be changed through the API].
    #[arg(long, env = "RG_ADMIN_SECRET_FILE", value_name = "PATH")]
    pub admin_secret_file: Option<PathBuf>,
    /// File holding the bearer secret that `GET /v1/snapshot` must present (the snapshot
    /// fetcher's `authorization`; the sync secret is accepted too). Required.
    #[arg(long, env = "RG_READ_SECRET_FILE", value_name = "PATH")]
    pub read_secret_file: Option<PathBuf>,
    /// Longest long-poll a snapshot fetcher may ask for, in seconds (0..=300).
    #[arg(long, env = "RG_LONG_POLL_MAX_SECS", default_value = "30")]
    pub long_poll_max_secs: String,
    /// Longest this sidecar keeps confirming its view of the snapshot (`304`, or `200` of
    /// what it holds) since it last read the store successfully, in seconds (1..=3600); past
    /// it snapshot reads get 503, so every fetcher's `max_staleness_secs` runs out instead of
    /// being kept fresh by a sidecar cut off from Redis.
    #[arg(long, env = "RG_MAX_STORE_SILENCE_SECS", default_value = "10")]
    pub max_store_silence_secs: String,
    /// Most snapshot long-polls waiting at once; beyond it a request that would wait gets 503
    /// + Retry-After at once (1..=1000000).
    #[arg(long, env = "RG_MAX_LONG_POLL_WAITERS", default_value = "1024")]
    pub max_long_poll_waiters: String,
    /// The longest wait a bcrypt verification is admitted to, in milliseconds (1..=60000):
    /// one is admitted when the verifications queued ahead of it (measured, on
    /// --login-concurrency CPUs) are expected to be done within it, else it gets 503 +
    /// Retry-After at once; admitted, it waits its turn. Also the longest a Katello login
    /// waits for a connection.
    #[arg(long, env = "RG_LOGIN_QUEUE_TIMEOUT_MS", default_value = "10000")]
    pub login_queue_timeout_ms: String,
    /// How long a refused login (wrong password, unknown user) is remembered and refused
    /// again without a bcrypt run or a Katello call, in seconds (0 disables, ..=3600).
    #[arg(long, env = "RG_LOGIN_REFUSAL_CACHE_SECS", default_value = "10")]
    pub login_refusal_cache_secs: String,
    /// Failed logins allowed per user in a --login-failure-window-secs window; past it that
    /// user's logins not already cached get 429 + Retry-After (0 disables, ..=1000000).
    #[arg(long, env = "RG_LOGIN_FAILURES_PER_USER", default_value = "10")]
    pub login_failures_per_user: String,
    /// Failed logins allowed per client address in a window, whatever the user (0 disables,
    /// ..=1000000).
    #[arg(long, env = "RG_LOGIN_FAILURES_PER_ADDRESS", default_value = "30")]
    pub login_failures_per_address: String,
    /// The window the failure limits count in, in seconds (1..=86400).
    #[arg(long, env = "RG_LOGIN_FAILURE_WINDOW_SECS", default_value = "60")]
    pub login_failure_window_secs: String,
    /// Request header carrying the client's address as the front proxy saw it; the shipped
    /// Envoy templates set it on the token route, replacing any copy the client sent.
    /// Without it (or empty) every login counts as one unknown address.
    #[arg(
        long,
        env = "RG_CLIENT_ADDRESS_HEADER",
        default_value = "x-registry-gate-client-address"
    )]
    pub client_address_header: String,
    /// bcrypt verifications run at once (1..=1024) [default: the number of CPUs].
    #[arg(long, env = "RG_LOGIN_CONCURRENCY")]
    pub login_concurrency: Option<String>,
    /// Generations kept in Redis, the newest included (2..=10000).
    #[arg(long, env = "RG_KEEP_GENERATIONS", default_value = "10")]
    pub keep_generations: String,
    /// Largest accepted request body in bytes.
    #[arg(long, env = "RG_MAX_BODY_BYTES", default_value = "67108864")]
    pub max_body_bytes: String,
    /// PEM certificate chain (leaf first) for HTTPS; with --tls-key-file the listener serves
    /// HTTPS only [default: none, plain HTTP].
    #[arg(long, env = "RG_TLS_CERT_FILE", value_name = "PATH")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert-file.
    #[arg(long, env = "RG_TLS_KEY_FILE", value_name = "PATH")]
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA bundle that client certificates are verified against (needs the TLS files and
    /// --sync-client-subjects) [default: none, no client certificates].
    #[arg(long, env = "RG_SYNC_CLIENT_CA_FILE", value_name = "PATH")]
    pub sync_client_ca_file: Option<PathBuf>,
    /// Comma-separated subject CNs whose verified client certificates may call the Katello
    /// sync API without the sync secret (compared case-insensitively, like smart-proxy's
    /// `:trusted_hosts:`), e.g. `foreman.example.com`.
    #[arg(long, env = "RG_SYNC_CLIENT_SUBJECTS", value_name = "CN,...")]
    pub sync_client_subjects: Option<String>,
    /// Turn on the ext_authz check endpoint (`/ext_authz/...` for Envoy's
    /// `envoy.filters.http.ext_authz` `http_service`) with this file: the filter's JSON
    /// configuration document (issuer, service, realm, identity_header, ...), without
    /// `fetcher`, with `publisher_keys` [default: none, no ext_authz endpoint].
    #[arg(long, env = "RG_EXT_AUTHZ_CONFIG", value_name = "PATH")]
    pub ext_authz_config: Option<PathBuf>,
    /// Log format: `json` (one object per line) or `text`. Verbosity comes from `RUST_LOG`
    /// (default `info`).
    #[arg(long, env = "RG_LOG_FORMAT", default_value = "json")]
    pub log_format: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Every bad setting, one per line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid configuration:\n  - {}", problems.join("\n  - "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

/// Redis when neither --redis-url nor --redis-sentinels is given.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/0";

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

/// Where Basic logins are checked.
#[derive(Debug, Clone)]
pub enum LoginBackend {
    /// Every Basic login is refused; only anonymous tokens are issued.
    None,
    /// The file as read at startup, and its path to re-read it when it changes.
    Htpasswd {
        path: PathBuf,
        file: Htpasswd,
    },
    Katello(KatelloSettings),
}

/// Validated runtime settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// A Redis URL or the sentinels that name the primary.
    pub redis: Target,
    pub redis_pool_size: usize,
    /// Replicas that must hold a publish before it is acknowledged.
    pub replica_acks: ReplicaAcks,
    pub key_prefix: String,
    pub signing_key: SigningKey,
    /// Signs every published index.
    pub publisher_key: Arc<Signer>,
    pub issuer: String,
    pub service: String,
    pub token_ttl: Duration,
    pub login: LoginBackend,
    /// Zero disables the login cache.
    pub login_cache_ttl: Duration,
    /// Katello logins refresh the user's grants from Katello's catalog.
    pub refresh_repositories_on_login: bool,
    /// Users login refreshes may add between two syncs.
    pub login_users_between_syncs: usize,
    /// Bearer secret for PUT endpoints (trailing newline of the file removed).
    pub sync_secret: Secret,
    /// Bearer secret for snapshot reads (trailing newline of the file removed).
    pub read_secret: Secret,
    /// Bearer secret that may change `keys` and `min_token_iat`, if configured.
    pub admin_secret: Option<Secret>,
    /// How long a view is confirmed without a successful store read.
    pub max_store_silence: Duration,
    pub long_poll_max: Duration,
    pub max_long_poll_waiters: usize,
    pub login_queue_timeout: Duration,
    pub login_concurrency: usize,
    /// Zero remembers no refusal.
    pub login_refusal_ttl: Duration,
    pub login_limits: LimitSettings,
    /// Lower-case; `None`: addresses are unknown.
    pub client_address_header: Option<String>,
    pub keep_generations: u64,
    pub max_body_bytes: usize,
    pub log_format: LogFormat,
    /// When set, the listener serves HTTPS only.
    pub tls: Option<Tls>,
    /// Lowercased subject CNs whose verified client certificates may call the sync API.
    pub sync_client_subjects: Vec<String>,
    /// The ext_authz endpoint's gate settings, when it is on.
    pub ext_authz: Option<Settings>,
}

/// A bearer secret (sync or read); never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Config {
    /// Validates every setting, reading the files they name, and reports all problems.
    pub fn from_args(args: &ServeArgs) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();

        let listen = args
            .listen
            .parse::<SocketAddr>()
            .map_err(|e| format!("--listen/RG_LISTEN {:?}: {e}", args.listen))
            .map_err(|p| problems.push(p))
            .ok();
        let redis = redis_target(args, &mut problems);
        let replica_acks = replica_acks(args, &mut problems);
        let pool = number(
            &mut problems,
            "--redis-pool-size/RG_REDIS_POOL_SIZE",
            &args.redis_pool_size,
            1,
            1024,
        );
        if args.key_prefix.is_empty()
            || args.key_prefix.len() > 128
            || args
                .key_prefix
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            problems.push(format!(
                "--key-prefix/RG_KEY_PREFIX {:?}: must be 1..=128 characters without spaces",
                args.key_prefix
            ));
        }
        if let Some(kid) = &args.key_id {
            if kid.is_empty() || kid.len() > 128 || kid.chars().any(|c| c.is_control()) {
                problems.push(format!(
                    "--key-id/RG_KEY_ID {kid:?}: must be 1..=128 printable characters"
                ));
            }
        }
        let signing_key = match &args.signing_key {
            None => {
                problems.push("--signing-key/RG_SIGNING_KEY is required (see `keygen`)".into());
                None
            }
            Some(path) => SigningKey::load(path, args.key_id.clone())
                .map_err(|e| problems.push(format!("--signing-key/RG_SIGNING_KEY: {e}")))
                .ok(),
        };
        let publisher_key = match &args.publisher_key {
            None => {
                problems.push(
                    "--publisher-key/RG_PUBLISHER_KEY is required (see `keygen --algorithm EdDSA`)"
                        .into(),
                );
                None
            }
            Some(path) => SigningKey::load_publisher(path)
                .map_err(|e| problems.push(format!("--publisher-key/RG_PUBLISHER_KEY: {e}")))
                .ok(),
        };
        for (flag, value) in [
            ("--issuer/RG_ISSUER", &args.issuer),
            ("--service/RG_SERVICE", &args.service),
        ] {
            if value.is_empty() || value.chars().any(|c| c.is_control()) {
                problems.push(format!(
                    "{flag} {value:?}: must be non-empty printable text"
                ));
            }
        }
        let ttl = number(
            &mut problems,
            "--token-ttl-secs/RG_TOKEN_TTL_SECS",
            &args.token_ttl_secs,
            60,
            86_400,
        );
        let katello_timeout = number(
            &mut problems,
            "--katello-timeout-ms/RG_KATELLO_TIMEOUT_MS",
            &args.katello_timeout_ms,
            1,
            60_000,
        );
        let katello_connections = number(
            &mut problems,
            "--katello-max-connections/RG_KATELLO_MAX_CONNECTIONS",
            &args.katello_max_connections,
            1,
            1024,
        );
        let refresh_repositories_on_login = match args.refresh_repositories_on_login.as_str() {
            "true" => true,
            "false" => false,
            other => {
                problems.push(format!(
                    "--refresh-repositories-on-login/RG_REFRESH_REPOSITORIES_ON_LOGIN {other:?}: \
                     expected true or false"
                ));
                false
            }
        };
        let login_cache_ttl = number(
            &mut problems,
            "--login-cache-ttl-secs/RG_LOGIN_CACHE_TTL_SECS",
            &args.login_cache_ttl_secs,
            0,
            3600,
        );
        let login_users_between_syncs = number(
            &mut problems,
            "--login-users-between-syncs/RG_LOGIN_USERS_BETWEEN_SYNCS",
            &args.login_users_between_syncs,
            0,
            1_000_000,
        );
        let login = login_backend(args, &mut problems, katello_timeout, katello_connections);
        let secret = match &args.sync_secret_file {
            None => {
                problems.push("--sync-secret-file/RG_SYNC_SECRET_FILE is required".into());
                None
            }
            Some(path) => read_secret(path)
                .map_err(|e| problems.push(format!("--sync-secret-file/RG_SYNC_SECRET_FILE {e}")))
                .ok(),
        };
        let read_secret = match &args.read_secret_file {
            None => {
                problems.push("--read-secret-file/RG_READ_SECRET_FILE is required".into());
                None
            }
            Some(path) => read_secret(path)
                .map_err(|e| problems.push(format!("--read-secret-file/RG_READ_SECRET_FILE {e}")))
                .ok(),
        };
        let admin_secret = args.admin_secret_file.as_ref().and_then(|path| {
            self::read_secret(path)
                .map_err(|e| problems.push(format!("--admin-secret-file/RG_ADMIN_SECRET_FILE {e}")))
                .ok()
        });
        if let (Some(admin), Some(sync), Some(read)) = (&admin_secret, &secret, &read_secret) {
            if admin == sync || admin == read {
                problems.push(
                    "--admin-secret-file/RG_ADMIN_SECRET_FILE must differ from the sync and read \
                     secrets"
                        .into(),
                );
            }
        }
        let silence = number(
            &mut problems,
            "--max-store-silence-secs/RG_MAX_STORE_SILENCE_SECS",
            &args.max_store_silence_secs,
            1,
            3600,
        );
        let long_poll = number(
            &mut problems,
            "--long-poll-max-secs/RG_LONG_POLL_MAX_SECS",
            &args.long_poll_max_secs,
            0,
            300,
        );
        let waiters = number(
            &mut problems,
            "--max-long-poll-waiters/RG_MAX_LONG_POLL_WAITERS",
            &args.max_long_poll_waiters,
            1,
            1_000_000,
        );
        let queue_timeout = number(
            &mut problems,
            "--login-queue-timeout-ms/RG_LOGIN_QUEUE_TIMEOUT_MS",
            &args.login_queue_timeout_ms,
            1,
            60_000,
        );
        let refusal_ttl = number(
            &mut problems,
            "--login-refusal-cache-secs/RG_LOGIN_REFUSAL_CACHE_SECS",
            &args.login_refusal_cache_secs,
            0,
            3600,
        );
        let per_user = number(
            &mut problems,
            "--login-failures-per-user/RG_LOGIN_FAILURES_PER_USER",
            &args.login_failures_per_user,
            0,
            1_000_000,
        );
        let per_address = number(
            &mut problems,
            "--login-failures-per-address/RG_LOGIN_FAILURES_PER_ADDRESS",
            &args.login_failures_per_address,
            0,
            1_000_000,
        );
        let window = number(
            &mut problems,
            "--login-failure-window-secs/RG_LOGIN_FAILURE_WINDOW_SECS",
            &args.login_failure_window_secs,
            1,
            86_400,
        );
        let login_limits = match (per_user, per_address, window) {
            (Some(per_user), Some(per_address), Some(window)) => Some(LimitSettings {
                per_user: u32::try_from(per_user).unwrap_or(u32::MAX),
                per_address: u32::try_from(per_address).unwrap_or(u32::MAX),
                window: Duration::from_secs(window),
            }),
            _ => None,
        };
        let client_address_header = match args.client_address_header.trim() {
            "" => None,
            name if axum::http::HeaderName::from_bytes(name.as_bytes()).is_ok() => {
                Some(name.to_ascii_lowercase())
            }
            name => {
                problems.push(format!(
                    "--client-address-header/RG_CLIENT_ADDRESS_HEADER {name:?}: not a header name"
                ));
                None
            }
        };
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let login_concurrency = match &args.login_concurrency {
            None => Some(cpus as u64),
            Some(text) => number(
                &mut problems,
                "--login-concurrency/RG_LOGIN_CONCURRENCY",
                text,
                1,
                1024,
            ),
        };
        let keep = number(
            &mut problems,
            "--keep-generations/RG_KEEP_GENERATIONS",
            &args.keep_generations,
            2,
            10_000,
        );
        let max_body = number(
            &mut problems,
            "--max-body-bytes/RG_MAX_BODY_BYTES",
            &args.max_body_bytes,
            1024,
            4 * 1024 * 1024 * 1024,
        );
        let sync_client_subjects = subjects(args.sync_client_subjects.as_deref());
        match (&args.sync_client_ca_file, sync_client_subjects.is_empty()) {
            (Some(_), true) => problems.push(
                "--sync-client-ca-file/RG_SYNC_CLIENT_CA_FILE needs \
                 --sync-client-subjects/RG_SYNC_CLIENT_SUBJECTS: the CNs allowed to sync"
                    .into(),
            ),
            (None, false) => problems.push(
                "--sync-client-subjects/RG_SYNC_CLIENT_SUBJECTS needs \
                 --sync-client-ca-file/RG_SYNC_CLIENT_CA_FILE to verify certificates against"
                    .into(),
            ),
            _ => {}
        }
        if args.sync_client_ca_file.is_some() && args.tls_cert_file.is_none() {
            problems.push(
                "--sync-client-ca-file/RG_SYNC_CLIENT_CA_FILE needs HTTPS \
                 (--tls-cert-file and --tls-key-file)"
                    .into(),
            );
        }
        let tls = match (&args.tls_cert_file, &args.tls_key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => Tls::load(cert, key, args.sync_client_ca_file.as_deref())
                .map_err(|e| problems.push(format!("--tls-cert-file/--tls-key-file: {e}")))
                .ok(),
            (Some(_), None) | (None, Some(_)) => {
                problems.push(
                    "--tls-cert-file/RG_TLS_CERT_FILE and --tls-key-file/RG_TLS_KEY_FILE go \
                     together: give both for HTTPS, or neither"
                        .into(),
                );
                None
            }
        };
        let ext_authz = args.ext_authz_config.as_deref().and_then(|path| {
            ext_authz_settings(path)
                .map_err(|e| problems.push(format!("--ext-authz-config/RG_EXT_AUTHZ_CONFIG {e}")))
                .ok()
        });
        let log_format = match args.log_format.as_str() {
            "json" => Some(LogFormat::Json),
            "text" => Some(LogFormat::Text),
            other => {
                problems.push(format!(
                    "--log-format/RG_LOG_FORMAT {other:?}: expected json or text"
                ));
                None
            }
        };

        match (
            (listen, redis, replica_acks),
            pool,
            (signing_key, publisher_key, silence),
            (ttl, login_cache_ttl, login_users_between_syncs),
            (secret, read_secret),
            (long_poll, waiters, queue_timeout, login_concurrency),
            keep,
            max_body,
            log_format,
            (refusal_ttl, login_limits),
        ) {
            (
                (Some(listen), Some(redis), Some(replica_acks)),
                Some(pool),
                (Some(signing_key), Some(publisher_key), Some(silence)),
                (Some(ttl), Some(login_cache_ttl), Some(login_users_between_syncs)),
                (Some(secret), Some(read_secret)),
                (Some(long_poll), Some(waiters), Some(queue_timeout), Some(login_concurrency)),
                Some(keep),
                Some(max_body),
                Some(log_format),
                (Some(refusal_ttl), Some(login_limits)),
            ) if problems.is_empty() => Ok(Config {
                listen,
                redis,
                replica_acks,
                redis_pool_size: usize::try_from(pool).unwrap_or(usize::MAX),
                key_prefix: args.key_prefix.clone(),
                signing_key,
                publisher_key: Arc::new(publisher_key),
                issuer: args.issuer.clone(),
                service: args.service.clone(),
                token_ttl: Duration::from_secs(ttl),
                login,
                login_cache_ttl: Duration::from_secs(login_cache_ttl),
                refresh_repositories_on_login,
                login_users_between_syncs: usize::try_from(login_users_between_syncs)
                    .unwrap_or(usize::MAX),
                sync_secret: secret,
                read_secret,
                admin_secret,
                max_store_silence: Duration::from_secs(silence),
                long_poll_max: Duration::from_secs(long_poll),
                max_long_poll_waiters: usize::try_from(waiters).unwrap_or(usize::MAX),
                login_queue_timeout: Duration::from_millis(queue_timeout),
                login_concurrency: usize::try_from(login_concurrency).unwrap_or(1),
                login_refusal_ttl: Duration::from_secs(refusal_ttl),
                login_limits,
                client_address_header,
                keep_generations: keep,
                max_body_bytes: usize::try_from(max_body).unwrap_or(usize::MAX),
                log_format,
                tls,
                sync_client_subjects,
                ext_authz,
            }),
            _ => Err(ConfigError { problems }),
        }
    }
}

/// Where Redis is: `--redis-url` (or its default), or `--redis-sentinels` with
/// `--redis-sentinel-master`; never both.
fn redis_target(args: &ServeArgs, problems: &mut Vec<String>) -> Option<Target> {
    const URL: &str = "--redis-url/RG_REDIS_URL";
    const SENTINELS: &str = "--redis-sentinels/RG_REDIS_SENTINELS";
    const MASTER: &str = "--redis-sentinel-master/RG_REDIS_SENTINEL_MASTER";
    match (
        &args.redis_url,
        &args.redis_sentinels,
        &args.redis_sentinel_master,
    ) {
        (Some(_), Some(_), _) => {
            problems.push(format!(
                "{URL} and {SENTINELS} exclude each other: give one Redis server, or the \
                 sentinels that name the primary"
            ));
            None
        }
        (url, None, None) => {
            let url = url.as_deref().unwrap_or(DEFAULT_REDIS_URL);
            match redis::Client::open(url) {
                Ok(_) => Some(Target::Url(url.to_owned())),
                Err(e) => {
                    problems.push(format!("{URL}: {e}"));
                    None
                }
            }
        }
        (_, None, Some(_)) => {
            problems.push(format!("{MASTER} needs {SENTINELS}"));
            None
        }
        (_, Some(_), None) => {
            problems.push(format!(
                "{SENTINELS} needs {MASTER}: the master name the sentinels monitor"
            ));
            None
        }
        (None, Some(list), Some(master)) => {
            let mut sentinels = Vec::new();
            for item in list.split(',').map(str::trim) {
                match host_port(item) {
                    Some(address) => sentinels.push(address),
                    None => problems.push(format!(
                        "{SENTINELS} {item:?}: expected host:port with a port in 1..=65535"
                    )),
                }
            }
            if master.is_empty()
                || master.len() > 128
                || master.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                problems.push(format!(
                    "{MASTER} {master:?}: must be 1..=128 characters without spaces"
                ));
                return None;
            }
            (sentinels.len() == list.split(',').count()).then(|| Target::Sentinel {
                sentinels,
                master: master.clone(),
            })
        }
    }
}

/// `host:port` (an IPv6 host in brackets) with a non-zero port.
fn host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = port.parse::<u16>().ok().filter(|p| *p > 0)?;
    (!host.is_empty() && !host.chars().any(|c| c.is_whitespace() || c.is_control()))
        .then(|| (host.to_owned(), port))
}

/// `--redis-min-replicas-acked` with its timeout.
fn replica_acks(args: &ServeArgs, problems: &mut Vec<String>) -> Option<ReplicaAcks> {
    let replicas = number(
        problems,
        "--redis-min-replicas-acked/RG_REDIS_MIN_REPLICAS_ACKED",
        &args.redis_min_replicas_acked,
        0,
        16,
    );
    let timeout = number(
        problems,
        "--redis-replica-ack-timeout-ms/RG_REDIS_REPLICA_ACK_TIMEOUT_MS",
        &args.redis_replica_ack_timeout_ms,
        1,
        u64::try_from(MAX_REPLICA_ACK_TIMEOUT.as_millis()).unwrap_or(u64::MAX),
    );
    Some(ReplicaAcks {
        replicas: replicas?,
        timeout: Duration::from_millis(timeout?),
    })
}

/// The allow-list's CNs: comma-separated, trimmed, lowercased, empty items dropped.
fn subjects(text: Option<&str>) -> Vec<String> {
    text.unwrap_or("")
        .split(',')
        .map(|cn| cn.trim().to_lowercase())
        .filter(|cn| !cn.is_empty())
        .collect()
}

/// The login backend: htpasswd, Katello or none (anonymous only); both is a problem.
fn login_backend(
    args: &ServeArgs,
    problems: &mut Vec<String>,
    timeout_ms: Option<u64>,
    max_connections: Option<u64>,
) -> LoginBackend {
    let katello_files = [
        (
            "--katello-ca-file/RG_KATELLO_CA_FILE",
            &args.katello_ca_file,
        ),
        (
            "--katello-client-cert-file/RG_KATELLO_CLIENT_CERT_FILE",
            &args.katello_client_cert_file,
        ),
        (
            "--katello-client-key-file/RG_KATELLO_CLIENT_KEY_FILE",
            &args.katello_client_key_file,
        ),
    ];
    if args.katello_url.is_none() {
        for (flag, value) in katello_files {
            if value.is_some() {
                problems.push(format!("{flag} needs --katello-url/RG_KATELLO_URL"));
            }
        }
    }
    match (&args.htpasswd, &args.katello_url) {
        (None, None) => LoginBackend::None,
        (Some(_), Some(_)) => {
            problems.push(
                "--htpasswd/RG_HTPASSWD and --katello-url/RG_KATELLO_URL exclude each other: \
                 choose one login backend"
                    .into(),
            );
            LoginBackend::None
        }
        (Some(path), None) => match Htpasswd::load(path) {
            Ok(file) => LoginBackend::Htpasswd {
                path: path.clone(),
                file,
            },
            Err(e) => {
                for problem in e.problems {
                    problems.push(format!(
                        "--htpasswd/RG_HTPASSWD {}: {problem}",
                        path.display()
                    ));
                }
                LoginBackend::None
            }
        },
        (None, Some(url)) => {
            let identity = match (
                &args.katello_client_cert_file,
                &args.katello_client_key_file,
            ) {
                (None, None) => None,
                (Some(cert_file), Some(key_file)) => Some(ClientIdentity {
                    cert_file,
                    key_file,
                }),
                _ => {
                    problems.push(
                        "--katello-client-cert-file/RG_KATELLO_CLIENT_CERT_FILE and \
                         --katello-client-key-file/RG_KATELLO_CLIENT_KEY_FILE go together"
                            .into(),
                    );
                    return LoginBackend::None;
                }
            };
            let (Some(timeout), Some(max)) = (timeout_ms, max_connections) else {
                return LoginBackend::None;
            };
            match KatelloSettings::load(
                url,
                args.katello_ca_file.as_deref(),
                identity,
                Duration::from_millis(timeout),
                usize::try_from(max).unwrap_or(1),
            ) {
                Ok(settings) => LoginBackend::Katello(settings),
                Err(errors) => {
                    problems.extend(errors.iter().map(ToString::to_string));
                    LoginBackend::None
                }
            }
        }
    }
}

/// Parses an integer setting within `min..=max`, recording a problem otherwise.
fn number(problems: &mut Vec<String>, flag: &str, text: &str, min: u64, max: u64) -> Option<u64> {
    match text.trim().parse::<u64>() {
        Ok(value) if (min..=max).contains(&value) => Some(value),
        Ok(value) => {
            problems.push(format!("{flag} {value}: must be within {min}..={max}"));
            None
        }
        Err(_) => {
            problems.push(format!("{flag} {text:?}: not a whole number"));
            None
        }
    }
}

/// A file's bytes less trailing line breaks.
fn read_trimmed(path: &Path) -> Result<Vec<u8>, String> {
    let mut bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    Ok(bytes)
}

fn read_secret(path: &Path) -> Result<Secret, String> {
    let bytes = read_trimmed(path)?;
    if bytes.len() < MIN_SECRET_LEN {
        return Err(format!(
            "{}: the secret must be at least {MIN_SECRET_LEN} bytes",
            path.display()
        ));
    }
    if bytes
        .iter()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(format!(
            "{}: the secret must not contain whitespace or control characters",
            path.display()
        ));
    }
    Ok(Secret(bytes))
}

/// Largest ext_authz configuration file read.
const MAX_EXT_AUTHZ_CONFIG_BYTES: u64 = 1024 * 1024;

/// The filter's configuration document at `path`, validated by the filter's own rules; a
/// `fetcher` object is refused (the sidecar holds the snapshot itself).
fn ext_authz_settings(path: &Path) -> Result<Settings, String> {
    let shown = path.display();
    let size = std::fs::metadata(path)
        .map_err(|e| format!("{shown}: {e}"))?
        .len();
    if size > MAX_EXT_AUTHZ_CONFIG_BYTES {
        return Err(format!(
            "{shown}: {size} bytes, more than {MAX_EXT_AUTHZ_CONFIG_BYTES}"
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("{shown}: {e}"))?;
    let settings = Settings::from_json(&bytes).map_err(|e| format!("{shown}: {e}"))?;
    if settings.elected_fetcher.is_some() {
        return Err(format!(
            "{shown}: `fetcher` has no place in ext_authz mode: the sidecar decides from the \
             snapshot it holds"
        ));
    }
    if settings.publisher_keys.is_empty() {
        return Err(format!(
            "{shown}: `publisher_keys` must name the publisher key(s) whose signatures the \
             check accepts (what `keygen` printed for --publisher-key)"
        ));
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// `serve` with `args`, and a fresh publisher key unless `args` name one.
    fn parse(args: &[&str]) -> ServeArgs {
        let mut argv = vec!["registry-gate-sidecar", "serve"];
        argv.extend_from_slice(args);
        let publisher;
        if !args.contains(&"--publisher-key") {
            let key = SigningKey::generate(KeyAlgorithm::EdDSA).unwrap();
            let (mut file, path) = tempfile::NamedTempFile::new().unwrap().keep().unwrap();
            file.write_all(key.to_pem().unwrap().as_bytes()).unwrap();
            publisher = path.display().to_string();
            argv.extend(["--publisher-key", publisher.as_str()]);
        }
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(args) => *args,
            _ => unreachable!(),
        }
    }

    fn file(dir: &tempfile::TempDir, name: &str, content: &str) -> String {
        let path = dir.path().join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(content.as_bytes())
            .unwrap();
        path.display().to_string()
    }

    /// A fresh signing key (`keygen`'s default algorithm) in `dir`.
    fn key_file(dir: &tempfile::TempDir) -> String {
        let key = SigningKey::generate(KeyAlgorithm::default()).unwrap();
        file(dir, "key.pem", &key.to_pem().unwrap())
    }

    #[test]
    fn defaults_are_documented_values() {
        let dir = tempfile::tempdir().unwrap();
        let key = key_file(&dir);
        let secret = file(&dir, "secret", "0123456789abcdef0123\n");
        let read = file(&dir, "read", "read-secret-0123456789\r\n");
        let config = Config::from_args(&parse(&[
            "--signing-key",
            &key,
            "--sync-secret-file",
            &secret,
            "--read-secret-file",
            &read,
        ]))
        .unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8081");
        assert_eq!(config.redis, Target::Url("redis://127.0.0.1:6379/0".into()));
        assert_eq!(config.replica_acks, ReplicaAcks::NONE);
        assert_eq!(config.redis_pool_size, 16);
        assert_eq!(config.key_prefix, "registry-gate:");
        assert_eq!(config.issuer, "registry-gate");
        assert_eq!(config.service, "registry-gate");
        assert_eq!(config.token_ttl, Duration::from_secs(300));
        assert!(matches!(config.login, LoginBackend::None));
        assert_eq!(config.login_cache_ttl, Duration::from_secs(30));
        assert_eq!(config.long_poll_max, Duration::from_secs(30));
        assert_eq!(config.max_long_poll_waiters, 1024);
        assert_eq!(config.login_queue_timeout, Duration::from_millis(10_000));
        assert_eq!(
            config.login_concurrency,
            std::thread::available_parallelism().unwrap().get()
        );
        assert_eq!(config.keep_generations, 10);
        assert_eq!(config.max_body_bytes, 67_108_864);
        assert_eq!(config.sync_secret.0, b"0123456789abcdef0123");
        assert_eq!(config.read_secret.0, b"read-secret-0123456789");
        assert!(
            config.admin_secret.is_none(),
            "no admin secret unless given"
        );
        assert_eq!(config.max_store_silence, Duration::from_secs(10));
        assert!(
            config.ext_authz.is_none(),
            "ext_authz is off unless configured"
        );
        assert_eq!(format!("{:?}", config.read_secret), "Secret(..)");
        assert_eq!(config.signing_key.kid().len(), 43, "thumbprint kid");
        assert!(
            config.tls.is_none(),
            "plain HTTP unless both TLS files are given"
        );
    }

    #[test]
    fn every_bad_setting_is_reported_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let key = file(&dir, "key.pem", "not a pem");
        let secret = file(&dir, "secret", "short\n");
        let read = file(&dir, "read", "has a space in it, and long enough\n");
        let htpasswd = file(
            &dir,
            "htpasswd",
            "alice:$apr1$abc$def\n# comment\nbob:{SHA}xyz\n",
        );
        let error = Config::from_args(&parse(&[
            "--listen",
            "nowhere",
            "--redis-url",
            "ftp://x",
            "--redis-pool-size",
            "0",
            "--key-prefix",
            "",
            "--signing-key",
            &key,
            "--publisher-key",
            &key,
            "--max-store-silence-secs",
            "0",
            "--token-ttl-secs",
            "10",
            "--htpasswd",
            &htpasswd,
            "--sync-secret-file",
            &secret,
            "--read-secret-file",
            &read,
            "--long-poll-max-secs",
            "abc",
            "--max-long-poll-waiters",
            "0",
            "--login-queue-timeout-ms",
            "0",
            "--login-concurrency",
            "many",
            "--keep-generations",
            "1",
            "--max-body-bytes",
            "12",
        ]))
        .unwrap_err();
        let text = error.to_string();
        for needle in [
            "--listen",
            "--redis-url",
            "--redis-pool-size",
            "--key-prefix",
            "--signing-key",
            "--publisher-key",
            "--max-store-silence-secs",
            "--token-ttl-secs",
            "line 1",
            "line 3",
            "--sync-secret-file",
            "--read-secret-file",
            "--long-poll-max-secs",
            "--max-long-poll-waiters",
            "--login-queue-timeout-ms",
            "--login-concurrency",
            "--keep-generations",
            "--max-body-bytes",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
        assert_eq!(error.problems.len(), 18, "{text}");
        assert!(!text.contains("short"), "the secret is never echoed");
        assert!(!text.contains("space in it"), "the secret is never echoed");
    }

    #[test]
    fn the_publisher_key_is_ed25519_and_the_admin_secret_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let es256 = key_file(&dir);
        let secret = file(&dir, "secret", "0123456789abcdef0123\n");
        let read = file(&dir, "read", "read-secret-0123456789\n");
        let error = Config::from_args(&parse(&[
            "--signing-key",
            &es256,
            "--publisher-key",
            &es256,
            "--sync-secret-file",
            &secret,
            "--read-secret-file",
            &read,
            "--admin-secret-file",
            &secret,
        ]))
        .unwrap_err()
        .to_string();
        assert!(error.contains("keygen --algorithm EdDSA"), "{error}");
        assert!(
            error.contains("--admin-secret-file/RG_ADMIN_SECRET_FILE must differ"),
            "{error}"
        );
        let admin = file(&dir, "admin", "admin-secret-0123456789\n");
        let config = Config::from_args(&parse(&[
            "--signing-key",
            &es256,
            "--sync-secret-file",
            &secret,
            "--read-secret-file",
            &read,
            "--admin-secret-file",
            &admin,
            "--max-store-silence-secs",
            "3",
        ]))
        .unwrap();
        assert_eq!(
            config.admin_secret.map(|s| s.0),
            Some(b"admin-secret-0123456789".to_vec())
        );
        assert_eq!(config.max_store_silence, Duration::from_secs(3));
    }

    #[test]
    fn required_files_are_reported_when_absent() {
        let error = Config::from_args(&parse(&[])).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("--signing-key/RG_SIGNING_KEY is required"));
        assert!(text.contains("--sync-secret-file/RG_SYNC_SECRET_FILE is required"));
        assert!(text.contains("--read-secret-file/RG_READ_SECRET_FILE is required"));
        let error = Config::from_args(
            &Cli::try_parse_from(["registry-gate-sidecar", "serve"])
                .map(|cli| match cli.command {
                    Command::Serve(args) => *args,
                    _ => unreachable!(),
                })
                .unwrap(),
        )
        .unwrap_err();
        assert!(error
            .to_string()
            .contains("--publisher-key/RG_PUBLISHER_KEY is required"));
    }

    #[test]
    fn tls_and_client_certificates_need_their_companions_and_usable_files() {
        let dir = tempfile::tempdir().unwrap();
        let key = key_file(&dir);
        let secret = file(&dir, "secret", "0123456789abcdef0123\n");
        let not_pem = file(&dir, "not.pem", "not a certificate\n");
        let base = [
            "--signing-key",
            key.as_str(),
            "--sync-secret-file",
            secret.as_str(),
            "--read-secret-file",
            secret.as_str(),
        ];
        let rows: [(&str, &[&str], &str); 6] = [
            (
                "client CA without allowed subjects",
                &["--sync-client-ca-file", &not_pem],
                "needs --sync-client-subjects",
            ),
            (
                "allowed subjects without a client CA",
                &["--sync-client-subjects", "foreman.example.com"],
                "needs --sync-client-ca-file",
            ),
            (
                "client certificates without HTTPS",
                &[
                    "--sync-client-ca-file",
                    &not_pem,
                    "--sync-client-subjects",
                    "foreman.example.com",
                ],
                "needs HTTPS",
            ),
            (
                "certificate without key",
                &["--tls-cert-file", &not_pem],
                "go together",
            ),
            (
                "key without certificate",
                &["--tls-key-file", &not_pem],
                "go together",
            ),
            (
                "files that hold no certificate",
                &["--tls-cert-file", &not_pem, "--tls-key-file", &not_pem],
                "certificate file",
            ),
        ];
        for (case, extra, needle) in rows {
            let mut args = base.to_vec();
            args.extend_from_slice(extra);
            let error = Config::from_args(&parse(&args)).unwrap_err();
            assert!(
                error.problems.iter().any(|p| p.contains(needle)),
                "{case}: {error}"
            );
            // Each problem is reported once, and nothing unrelated is.
            assert!(error.problems.len() <= 2, "{case}: {error}");
        }
    }

    #[test]
    fn login_backends_are_one_of_htpasswd_and_katello() {
        let dir = tempfile::tempdir().unwrap();
        let key = key_file(&dir);
        let secret = file(&dir, "secret", "0123456789abcdef0123\n");
        let htpasswd = file(&dir, "htpasswd", "# nobody yet\n");
        let pem = file(&dir, "any.pem", "not a certificate\n");
        let base = [
            "--signing-key",
            key.as_str(),
            "--sync-secret-file",
            secret.as_str(),
            "--read-secret-file",
            secret.as_str(),
        ];
        let url = "https://foreman.example.com";
        let rows: [(&str, &[&str], &[&str]); 4] = [
            (
                "both backends",
                &["--htpasswd", &htpasswd, "--katello-url", url],
                &["--htpasswd/RG_HTPASSWD and --katello-url/RG_KATELLO_URL"],
            ),
            (
                "Katello files without a URL",
                &["--katello-ca-file", &pem, "--katello-client-key-file", &pem],
                &["--katello-ca-file", "--katello-client-key-file"],
            ),
            (
                "certificate without key",
                &["--katello-url", url, "--katello-client-cert-file", &pem],
                &["go together"],
            ),
            (
                "bad numbers",
                &[
                    "--katello-url",
                    url,
                    "--katello-timeout-ms",
                    "0",
                    "--katello-max-connections",
                    "x",
                    "--login-cache-ttl-secs",
                    "3601",
                ],
                &[
                    "--katello-timeout-ms",
                    "--katello-max-connections",
                    "--login-cache-ttl-secs",
                ],
            ),
        ];
        for (case, extra, needles) in rows {
            let mut args = base.to_vec();
            args.extend_from_slice(extra);
            let error = Config::from_args(&parse(&args)).unwrap_err();
            assert_eq!(error.problems.len(), needles.len(), "{case}: {error}");
            for (problem, needle) in error.problems.iter().zip(needles) {
                assert!(problem.contains(needle), "{case}: {error}");
            }
        }
        let mut args = base.to_vec();
        args.extend_from_slice(&["--htpasswd", &htpasswd, "--login-cache-ttl-secs", "0"]);
        let config = Config::from_args(&parse(&args)).unwrap();
        assert!(matches!(config.login, LoginBackend::Htpasswd { .. }));
        assert_eq!(config.login_cache_ttl, Duration::ZERO);
    }

    #[test]
    fn redis_is_a_url_or_sentinels_with_a_master_name() {
        let dir = tempfile::tempdir().unwrap();
        let key = key_file(&dir);
        let secret = file(&dir, "secret", "0123456789abcdef0123\n");
        let base = [
            "--signing-key",
            key.as_str(),
            "--sync-secret-file",
            secret.as_str(),
            "--read-secret-file",
            secret.as_str(),
        ];
        struct Row {
            case: &'static str,
            args: &'static [&'static str],
            problems: &'static [&'static str],
        }
        let rows = [
            Row {
                case: "URL and sentinels",
                args: &["--redis-url", "redis://h/0", "--redis-sentinels", "h:26379", "--redis-sentinel-master", "m"],
                problems: &["--redis-url/RG_REDIS_URL and --redis-sentinels/RG_REDIS_SENTINELS exclude each other"],
            },
            Row {
                case: "sentinels without a master name",
                args: &["--redis-sentinels", "h:26379"],
                problems: &["--redis-sentinels/RG_REDIS_SENTINELS needs --redis-sentinel-master"],
            },
            Row {
                case: "a master name without sentinels",
                args: &["--redis-sentinel-master", "m"],
                problems: &["--redis-sentinel-master/RG_REDIS_SENTINEL_MASTER needs --redis-sentinels"],
            },
            Row {
                case: "bad sentinel addresses, each reported",
                args: &["--redis-sentinels", "h,:1,h:0,h:26379", "--redis-sentinel-master", "m"],
                problems: &["\"h\": expected host:port", "\":1\": expected host:port", "\"h:0\": expected host:port"],
            },
            Row {
                case: "a master name with a space",
                args: &["--redis-sentinels", "h:26379", "--redis-sentinel-master", "my master"],
                problems: &["--redis-sentinel-master/RG_REDIS_SENTINEL_MASTER \"my master\": must be"],
            },
            Row {
                case: "replica acknowledgements out of range",
                args: &["--redis-min-replicas-acked", "17", "--redis-replica-ack-timeout-ms", "4001"],
                problems: &["--redis-min-replicas-acked/RG_REDIS_MIN_REPLICAS_ACKED 17: must be within 0..=16", "--redis-replica-ack-timeout-ms/RG_REDIS_REPLICA_ACK_TIMEOUT_MS 4001: must be within 1..=4000"],
            },
            Row {
                case: "a zero ack timeout (WAIT 0 would wait forever)",
                args: &["--redis-replica-ack-timeout-ms", "0"],
                problems: &["--redis-replica-ack-timeout-ms/RG_REDIS_REPLICA_ACK_TIMEOUT_MS 0: must be within 1..=4000"],
            },
        ];
        for row in rows {
            let mut args = base.to_vec();
            args.extend_from_slice(row.args);
            let error = Config::from_args(&parse(&args)).unwrap_err();
            assert_eq!(
                error.problems.len(),
                row.problems.len(),
                "{}: {error}",
                row.case
            );
            for (problem, needle) in error.problems.iter().zip(row.problems) {
                assert!(
                    problem.contains(needle),
                    "{}: {problem:?} lacks {needle:?}",
                    row.case
                );
            }
        }
        let mut args = base.to_vec();
        args.extend_from_slice(&[
            "--redis-sentinels",
            "10.0.0.1:26379, [::1]:26380",
            "--redis-sentinel-master",
            "registry-gate",
            "--redis-min-replicas-acked",
            "1",
            "--redis-replica-ack-timeout-ms",
            "250",
        ]);
        let config = Config::from_args(&parse(&args)).unwrap();
        assert_eq!(
            config.redis,
            Target::Sentinel {
                sentinels: vec![("10.0.0.1".into(), 26379), ("::1".into(), 26380)],
                master: "registry-gate".into(),
            }
        );
        assert_eq!(
            config.replica_acks,
            ReplicaAcks {
                replicas: 1,
                timeout: Duration::from_millis(250)
            }
        );
    }

    #[test]
    fn environment_variables_are_read() {
        // Each flag's env name is declared; check one end to end through clap.
        let command = <Cli as clap::CommandFactory>::command();
        let serve = command.find_subcommand("serve").unwrap();
        let envs: Vec<String> = serve
            .get_arguments()
            .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
            .collect();
        for name in [
            "RG_LISTEN",
            "RG_REDIS_URL",
            "RG_REDIS_SENTINELS",
            "RG_REDIS_SENTINEL_MASTER",
            "RG_REDIS_MIN_REPLICAS_ACKED",
            "RG_REDIS_REPLICA_ACK_TIMEOUT_MS",
            "RG_REDIS_POOL_SIZE",
            "RG_KEY_PREFIX",
            "RG_SIGNING_KEY",
            "RG_KEY_ID",
            "RG_ISSUER",
            "RG_SERVICE",
            "RG_TOKEN_TTL_SECS",
            "RG_HTPASSWD",
            "RG_KATELLO_URL",
            "RG_KATELLO_CA_FILE",
            "RG_KATELLO_CLIENT_CERT_FILE",
            "RG_KATELLO_CLIENT_KEY_FILE",
            "RG_KATELLO_TIMEOUT_MS",
            "RG_KATELLO_MAX_CONNECTIONS",
            "RG_LOGIN_CACHE_TTL_SECS",
            "RG_SYNC_SECRET_FILE",
            "RG_READ_SECRET_FILE",
            "RG_LONG_POLL_MAX_SECS",
            "RG_MAX_LONG_POLL_WAITERS",
            "RG_LOGIN_QUEUE_TIMEOUT_MS",
            "RG_LOGIN_CONCURRENCY",
            "RG_KEEP_GENERATIONS",
            "RG_MAX_BODY_BYTES",
            "RG_LOG_FORMAT",
            "RG_TLS_CERT_FILE",
            "RG_TLS_KEY_FILE",
        ] {
            assert!(envs.iter().any(|e| e == name), "{name} not declared");
        }
    }
    #[test]
    fn ext_authz_config_is_the_filters_document_without_a_fetcher() {
        let dir = tempfile::tempdir().unwrap();
        let key = key_file(&dir);
        let secret = file(&dir, "secret", "0123456789abcdef0123\n");
        let unsigned = r#"{"issuer":"registry-gate","service":"registry-gate","realm":"https://gw.test/v2/token","identity_header":"X-Who"}"#;
        let filter = unsigned.replace(
            '}',
            r#","publisher_keys":["11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"]}"#,
        );
        let good = file(&dir, "good.json", &filter);
        let no_publisher = file(&dir, "no-publisher.json", unsigned);
        let with_fetcher = file(
            &dir,
            "fetcher.json",
            &filter.replace("]}", r#"],"fetcher":{"cluster":"sidecar","authority":"s","authorization":"read-secret-0123456789","publisher_keys":["11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"]}}"#),
        );
        let invalid = file(&dir, "invalid.json", r#"{"issuer":"","service":"s"}"#);
        let run = |path: &str| {
            Config::from_args(&parse(&[
                "--signing-key",
                &key,
                "--sync-secret-file",
                &secret,
                "--read-secret-file",
                &secret,
                "--ext-authz-config",
                path,
            ]))
        };
        let settings = run(&good).unwrap().ext_authz.expect("configured");
        assert_eq!(settings.identity_header, "x-who");
        struct Row {
            case: &'static str,
            path: String,
            problem: &'static str,
        }
        for row in [
            Row {
                case: "a fetcher object",
                path: with_fetcher,
                problem: "`fetcher` has no place in ext_authz mode",
            },
            Row {
                case: "no publisher keys",
                path: no_publisher,
                problem: "`publisher_keys` must name the publisher key(s)",
            },
            Row {
                case: "not the filter's document",
                path: invalid,
                problem: "--ext-authz-config/RG_EXT_AUTHZ_CONFIG",
            },
            Row {
                case: "no such file",
                path: dir.path().join("missing.json").display().to_string(),
                problem: "missing.json",
            },
        ] {
            let error = run(&row.path).unwrap_err().to_string();
            assert!(error.contains(row.problem), "{}: {error}", row.case);
        }
    }
}
