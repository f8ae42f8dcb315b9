//! Plugin configuration: the JSON an operator writes into Envoy's `PluginConfig`, and its
//! validated runtime form.
//!
//! Two documents share one `.wasm`: the HTTP filter's ([`FilterConfig`] → [`Settings`]) and
//! the snapshot fetcher's ([`FetcherConfig`] → [`FetcherSettings`]). Where no fetcher
//! singleton can be deployed, the filter's document carries the fetcher's as its `fetcher`
//! object (the same type, validated by the same rules) and the workers elect one of
//! themselves to fetch ([`ElectedFetcher`]). Parsing is strict
//! (`deny_unknown_fields`), every default is named, and validation reports every bad field at
//! once in a [`ConfigError`]. It never reads the environment or the network.

use registry_gate_index::PublisherKey;
use serde::Deserialize;
use thiserror::Error;

use crate::lease::LeaseSettings;
use crate::policy::Policy;
use crate::reply::Challenge;
use crate::token::{Algorithm, KeyRing, KeySpec, VerifierSettings};

/// Why a configuration was refused: every problem, one per line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid registry-gate configuration: {}", .problems.join("; "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

/// The HTTP filter's configuration as written by the operator.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Exact `iss` every token must carry.
    pub issuer: String,
    /// The token service: `aud` every token must carry, and the challenge's `service`.
    pub service: String,
    /// Token endpoint URL named in challenges, e.g. `https://registry.example.com/v2/token`.
    pub realm: String,
    /// Allowed signature algorithms; never taken from a token.
    #[serde(default = "defaults::algorithms")]
    pub algorithms: Vec<Algorithm>,
    /// Static verification keys, in addition to the snapshot's key set.
    #[serde(default)]
    pub keys: Vec<KeySpec>,
    #[serde(default = "defaults::leeway_secs")]
    pub leeway_secs: u64,
    #[serde(default = "defaults::max_token_bytes")]
    pub max_token_bytes: usize,
    #[serde(default = "defaults::max_token_lifetime_secs")]
    pub max_token_lifetime_secs: u64,
    #[serde(default = "defaults::token_cache_entries")]
    pub token_cache_entries: usize,
    /// A snapshot not confirmed by the sidecar for this long is no longer trusted: requests
    /// get 503 until a fetch succeeds again.
    #[serde(default = "defaults::max_staleness_secs")]
    pub max_staleness_secs: u64,
    #[serde(default = "defaults::retry_after_secs")]
    pub retry_after_secs: u64,
    /// Header carrying the verified identity to the upstream; any client copy is removed.
    #[serde(default = "defaults::identity_header")]
    pub identity_header: String,
    /// Keep the client's `Authorization` header on forwarded requests.
    #[serde(default)]
    pub forward_authorization: bool,
    /// Every route this filter forwards to an upstream removes `Authorization` itself
    /// (`request_headers_to_remove`), so the filter need not: one header mutation fewer per
    /// request. The token route must not remove it.
    #[serde(default)]
    pub authorization_removed_by_route: bool,
    #[serde(default)]
    pub allow_push: bool,
    #[serde(default = "defaults::catalog_default_page")]
    pub catalog_default_page: usize,
    #[serde(default = "defaults::catalog_max_page")]
    pub catalog_max_page: usize,
    /// How often a worker looks for a new snapshot generation in shared data.
    #[serde(default = "defaults::snapshot_check_ms")]
    pub snapshot_check_ms: u64,
    /// Write `wasm.registry_gate.identity` / `.decision` filter state for access logs on
    /// every request (two host calls each). Off by default: access logs can read the
    /// forwarded identity header instead.
    #[serde(default)]
    pub access_log_state: bool,
    /// Check ES256 and RS256 signatures with the host's crypto (Envoy's `verify_signature`
    /// foreign function, BoringSSL) for the algorithms the host passes a probe for; `false`
    /// checks every signature in the module's pure Rust.
    #[serde(default = "defaults::host_signatures")]
    pub host_signatures: bool,
    /// Read the subject of the downstream connection's client certificate, which Envoy
    /// exposes only after the listener's validation context verified it
    /// (`connection.subject_peer_certificate`), for requests without `Authorization`: its CN
    /// names a content host. One host call more for such requests; none for token requests.
    #[serde(default)]
    pub client_certificate_from_connection: bool,
    /// Request header in which a TLS-terminating front proxy (a capsule's Apache:
    /// `ssl-client-s-dn`) passes the verified client certificate's subject DN. Always
    /// removed before forwarding; read only with `trust_client_certificate_header`.
    #[serde(default)]
    pub client_certificate_header: Option<String>,
    /// The listener accepts connections only from the front proxy that sets
    /// `client_certificate_header`, so the header's value is that proxy's verification.
    #[serde(default)]
    pub trust_client_certificate_header: bool,
    /// Largest Flatpak index (`/index/static`) body the filter buffers to filter; a larger
    /// one is answered 502. Envoy's own buffer limit (`per_connection_buffer_limit_bytes`,
    /// 1 MiB by default) must be at least this, or Envoy answers first.
    #[serde(default = "defaults::flatpak_index_max_bytes")]
    pub flatpak_index_max_bytes: usize,
    /// Flatpak index bytes all responses together may hold at once: per worker in the wasm
    /// build (one VM each), per process in the native one. A response that would go over is
    /// answered 503 with `Retry-After` before it is buffered, so concurrent anonymous index
    /// requests cannot exhaust the VM. At least `flatpak_index_max_bytes`; by default four
    /// times it ([`defaults::flatpak_buffer_budget_bytes`]).
    #[serde(default)]
    pub flatpak_buffer_budget_bytes: Option<usize>,
    /// Publisher keys this gate checks every snapshot's signature against itself. Workers fed
    /// by a fetcher need none (the fetcher checked, and the checksum says they read what it
    /// checked); the ext_authz check, fed by the sidecar, must name them. At most two (a
    /// rotation).
    #[serde(default, deserialize_with = "publisher_keys")]
    pub publisher_keys: Vec<PublisherKey>,
    /// Fetch snapshots from the worker root contexts, one of them elected through a lease
    /// in shared data, instead of from an `envoy.bootstrap.wasm` singleton (for deployments
    /// that can only add an HTTP filter). The same document as the singleton's.
    #[serde(default)]
    pub fetcher: Option<FetcherConfig>,
    /// How long the elected fetcher's lease lasts without renewal: after this long a silent
    /// holder is replaced. Used only with `fetcher`.
    #[serde(default = "defaults::fetcher_lease_ms")]
    pub fetcher_lease_ms: u64,
}

/// Upper bound of `flatpak_index_max_bytes`: the filtered copy is built beside the buffered
/// one in the worker's VM memory.
pub const MAX_FLATPAK_INDEX_BYTES: usize = 128 * 1024 * 1024;

/// Upper bound of `flatpak_buffer_budget_bytes`: Envoy caps a wasm VM at 1 GiB, and the
/// snapshot index, the filtered copy and everything else the worker holds need room beside
/// the buffered bodies.
pub const MAX_FLATPAK_BUFFER_BUDGET_BYTES: usize = 512 * 1024 * 1024;

/// Named defaults, so documentation and code agree.
pub mod defaults {
    use crate::token::Algorithm;

    /// What the sidecar mints by default (ES256, which the filter has Envoy's crypto check)
    /// and its other algorithm (EdDSA, so existing Ed25519 signing keys keep working).
    pub fn algorithms() -> Vec<Algorithm> {
        vec![Algorithm::ES256, Algorithm::EdDSA]
    }
    pub const fn leeway_secs() -> u64 {
        60
    }
    pub const fn max_token_bytes() -> usize {
        8192
    }
    pub const fn max_token_lifetime_secs() -> u64 {
        3600
    }
    pub const fn host_signatures() -> bool {
        true
    }

    pub const fn token_cache_entries() -> usize {
        4096
    }
    pub const fn max_staleness_secs() -> u64 {
        3600
    }
    pub const fn retry_after_secs() -> u64 {
        5
    }
    pub fn identity_header() -> String {
        "x-registry-gate-identity".into()
    }
    pub const fn catalog_default_page() -> usize {
        100
    }
    pub const fn catalog_max_page() -> usize {
        1000
    }
    pub const fn snapshot_check_ms() -> u64 {
        100
    }
    pub const fn flatpak_index_max_bytes() -> usize {
        16 * 1024 * 1024
    }
    /// Four indexes of the largest size at once (64 MiB with the default bound).
    pub const fn flatpak_buffer_budget_bytes(flatpak_index_max_bytes: usize) -> usize {
        flatpak_index_max_bytes.saturating_mul(4)
    }
    pub fn path() -> String {
        "/v1/snapshot".into()
    }
    pub const fn wait_secs() -> u64 {
        20
    }
    pub const fn timeout_ms() -> u64 {
        25_000
    }
    pub const fn retry_ms() -> u64 {
        500
    }
    pub const fn retry_max_ms() -> u64 {
        30_000
    }
    pub const fn fetcher_lease_ms() -> u64 {
        5_000
    }
    pub const fn max_snapshot_bytes() -> usize {
        256 * 1024 * 1024
    }
}

/// The filter's validated runtime settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub verifier: VerifierSettings,
    pub static_keys: KeyRing,
    pub policy: Policy,
    pub token_cache_entries: usize,
    pub max_staleness_secs: u64,
    pub retry_after_secs: u64,
    /// Lower-case header name.
    pub identity_header: String,
    pub forward_authorization: bool,
    pub authorization_removed_by_route: bool,
    pub snapshot_check_ms: u64,
    pub access_log_state: bool,
    pub host_signatures: bool,
    pub flatpak_index_max_bytes: usize,
    pub flatpak_buffer_budget_bytes: usize,
    /// Where a verified client certificate's subject comes from, if anywhere.
    pub client_certificate: CertificateSource,
    /// Lower-case `client_certificate_header`: removed from every forwarded request, trusted
    /// or not, so no client can pass a subject to the upstream.
    pub client_certificate_header: Option<String>,
    /// Publisher keys the gate checks snapshot signatures against itself (none: the
    /// fetcher does).
    pub publisher_keys: Vec<PublisherKey>,
    /// The workers elect a fetcher among themselves (the `fetcher` object was given).
    pub elected_fetcher: Option<ElectedFetcher>,
}

/// A fetcher run by whichever worker holds the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectedFetcher {
    pub fetcher: FetcherSettings,
    pub lease: LeaseSettings,
}

/// Bounds of `fetcher_lease_ms`.
pub const FETCHER_LEASE_MS: std::ops::RangeInclusive<u64> = 1_000..=300_000;

/// Bounds of `retry_max_ms`.
pub const MAX_RETRY_MAX_MS: u64 = 3_600_000;

/// Where the gate reads a verified client certificate's subject DN from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateSource {
    /// Client certificates identify no one.
    None,
    /// Envoy's own TLS listener verified it (`connection.subject_peer_certificate`).
    Connection,
    /// The trusted front proxy verified it and put its subject in `client_certificate_header`.
    TrustedHeader,
}

/// Whether `name` is a plain (token-character, lower-case-able) header name.
fn plain_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl Settings {
    /// Parses and validates the filter configuration JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Settings, ConfigError> {
        let config: FilterConfig = serde_json::from_slice(bytes).map_err(|e| ConfigError {
            problems: vec![e.to_string()],
        })?;
        Settings::try_from(config)
    }
}

impl TryFrom<FilterConfig> for Settings {
    type Error = ConfigError;

    fn try_from(config: FilterConfig) -> Result<Settings, ConfigError> {
        let mut problems = Vec::new();
        if config.issuer.is_empty() {
            problems.push("issuer must not be empty".to_string());
        }
        if config.service.is_empty() || config.service.contains('"') {
            problems.push("service must be non-empty and contain no '\"'".to_string());
        }
        if !(config.realm.starts_with("https://") || config.realm.starts_with("http://"))
            || config.realm.contains('"')
        {
            problems.push(format!(
                "realm {:?} must be an http(s) URL without '\"'",
                config.realm
            ));
        }
        if config.algorithms.is_empty() {
            problems.push("algorithms must name at least one algorithm".to_string());
        }
        if config.leeway_secs > 300 {
            problems.push(format!(
                "leeway_secs {} exceeds 300 (RFC 7519 allows a few minutes at most)",
                config.leeway_secs
            ));
        }
        if !(512..=65536).contains(&config.max_token_bytes) {
            problems.push(format!(
                "max_token_bytes {} must be between 512 and 65536",
                config.max_token_bytes
            ));
        }
        if config.max_token_lifetime_secs < 60 {
            problems.push(format!(
                "max_token_lifetime_secs {} must be at least 60 (registry tokens live at least 60 s)",
                config.max_token_lifetime_secs
            ));
        }
        if !(1..=1_000_000).contains(&config.token_cache_entries) {
            problems.push(format!(
                "token_cache_entries {} must be between 1 and 1000000",
                config.token_cache_entries
            ));
        }
        if config.max_staleness_secs == 0 {
            problems.push("max_staleness_secs must be positive".to_string());
        }
        if config.identity_header.is_empty()
            || !config
                .identity_header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            problems.push(format!(
                "identity_header {:?} must be a plain header name",
                config.identity_header
            ));
        }
        if config.forward_authorization && config.authorization_removed_by_route {
            problems.push(
                "forward_authorization and authorization_removed_by_route contradict each other"
                    .to_string(),
            );
        }
        if config.identity_header.eq_ignore_ascii_case("authorization") {
            problems.push("identity_header must not be authorization".to_string());
        }
        if config.catalog_default_page == 0
            || config.catalog_max_page == 0
            || config.catalog_default_page > config.catalog_max_page
        {
            problems.push(format!(
                "catalog_default_page {} must be positive and at most catalog_max_page {}",
                config.catalog_default_page, config.catalog_max_page
            ));
        }
        if !(10..=60_000).contains(&config.snapshot_check_ms) {
            problems.push(format!(
                "snapshot_check_ms {} must be between 10 and 60000",
                config.snapshot_check_ms
            ));
        }
        let certificate_header = config
            .client_certificate_header
            .as_deref()
            .map(str::to_ascii_lowercase);
        if let Some(header) = &certificate_header {
            if !plain_header_name(header)
                || header == "authorization"
                || *header == config.identity_header.to_ascii_lowercase()
            {
                problems.push(format!(
                    "client_certificate_header {header:?} must be a plain header name other than authorization and identity_header"
                ));
            }
        }
        if config.trust_client_certificate_header && certificate_header.is_none() {
            problems.push(
                "trust_client_certificate_header needs client_certificate_header".to_string(),
            );
        }
        if config.trust_client_certificate_header && config.client_certificate_from_connection {
            problems.push(
                "client_certificate_from_connection and trust_client_certificate_header contradict each other (behind a trusted front proxy the connection's certificate is the proxy's)"
                    .to_string(),
            );
        }
        let client_certificate = if config.trust_client_certificate_header {
            CertificateSource::TrustedHeader
        } else if config.client_certificate_from_connection {
            CertificateSource::Connection
        } else {
            CertificateSource::None
        };
        if !(1024..=MAX_FLATPAK_INDEX_BYTES).contains(&config.flatpak_index_max_bytes) {
            problems.push(format!(
                "flatpak_index_max_bytes {} must be between 1024 and {MAX_FLATPAK_INDEX_BYTES}",
                config.flatpak_index_max_bytes
            ));
        }
        let flatpak_buffer_budget_bytes = config.flatpak_buffer_budget_bytes.unwrap_or_else(|| {
            defaults::flatpak_buffer_budget_bytes(config.flatpak_index_max_bytes)
                .min(MAX_FLATPAK_BUFFER_BUDGET_BYTES)
        });
        if !(config.flatpak_index_max_bytes..=MAX_FLATPAK_BUFFER_BUDGET_BYTES)
            .contains(&flatpak_buffer_budget_bytes)
        {
            problems.push(format!(
                "flatpak_buffer_budget_bytes {flatpak_buffer_budget_bytes} must be between flatpak_index_max_bytes ({}) and {MAX_FLATPAK_BUFFER_BUDGET_BYTES}",
                config.flatpak_index_max_bytes
            ));
        }
        if !FETCHER_LEASE_MS.contains(&config.fetcher_lease_ms) {
            problems.push(format!(
                "fetcher_lease_ms {} must be between {} and {}",
                config.fetcher_lease_ms,
                FETCHER_LEASE_MS.start(),
                FETCHER_LEASE_MS.end()
            ));
        }
        if let Some(fetcher) = &config.fetcher {
            problems.extend(
                fetcher
                    .problems()
                    .into_iter()
                    .map(|problem| format!("fetcher: {problem}")),
            );
            // The holder renews on its timer once half the lease is left: it needs a few
            // ticks in that half.
            if config.fetcher_lease_ms < config.snapshot_check_ms.saturating_mul(4) {
                problems.push(format!(
                    "fetcher_lease_ms {} must be at least 4 × snapshot_check_ms {}",
                    config.fetcher_lease_ms, config.snapshot_check_ms
                ));
            }
        }
        problems.extend(too_many_publisher_keys(&config.publisher_keys));
        let elected_fetcher = config.fetcher.map(|fetcher| ElectedFetcher {
            fetcher,
            lease: LeaseSettings {
                duration_ms: config.fetcher_lease_ms,
            },
        });
        let static_keys = match KeyRing::from_specs(&config.keys) {
            Ok(keys) => Some(keys),
            Err(err) => {
                problems.push(format!("keys: {err}"));
                None
            }
        };
        match static_keys {
            Some(static_keys) if problems.is_empty() => Ok(Settings {
                verifier: VerifierSettings {
                    issuer: config.issuer,
                    audience: config.service.clone(),
                    algorithms: config.algorithms,
                    leeway_secs: config.leeway_secs,
                    max_token_bytes: config.max_token_bytes,
                    max_lifetime_secs: config.max_token_lifetime_secs,
                },
                static_keys,
                policy: Policy {
                    challenge: Challenge {
                        realm: config.realm,
                        service: config.service,
                    },
                    allow_push: config.allow_push,
                    catalog_default_page: config.catalog_default_page,
                    catalog_max_page: config.catalog_max_page,
                },
                token_cache_entries: config.token_cache_entries,
                max_staleness_secs: config.max_staleness_secs,
                retry_after_secs: config.retry_after_secs,
                identity_header: config.identity_header.to_ascii_lowercase(),
                forward_authorization: config.forward_authorization,
                authorization_removed_by_route: config.authorization_removed_by_route,
                snapshot_check_ms: config.snapshot_check_ms,
                access_log_state: config.access_log_state,
                host_signatures: config.host_signatures,
                client_certificate,
                client_certificate_header: certificate_header,
                flatpak_index_max_bytes: config.flatpak_index_max_bytes,
                flatpak_buffer_budget_bytes,
                publisher_keys: config.publisher_keys,
                elected_fetcher,
            }),
            _ => Err(ConfigError { problems }),
        }
    }
}

/// The snapshot fetcher's configuration: the singleton `envoy.bootstrap.wasm` service's
/// document, or the HTTP filter's `fetcher` object.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetcherConfig {
    /// Envoy cluster of the sidecar.
    pub cluster: String,
    /// `:authority` sent to the sidecar.
    pub authority: String,
    #[serde(default = "defaults::path")]
    pub path: String,
    /// Long-poll wait the sidecar is asked for.
    #[serde(default = "defaults::wait_secs")]
    pub wait_secs: u64,
    /// Timeout of one fetch; must exceed the wait.
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
    /// Ceiling of the pause after the first failed fetch; it doubles with each further
    /// failure (the pause is random below it) up to `retry_max_ms`. The first fetch after
    /// start also waits a random part of it.
    #[serde(default = "defaults::retry_ms")]
    pub retry_ms: u64,
    /// Largest ceiling of the pause between failed fetches.
    #[serde(default = "defaults::retry_max_ms")]
    pub retry_max_ms: u64,
    #[serde(default = "defaults::max_snapshot_bytes")]
    pub max_snapshot_bytes: usize,
    /// Bearer secret sent to the sidecar, if it requires one for reads.
    #[serde(default)]
    pub authorization: Option<String>,
    /// The publishers' Ed25519 public keys (unpadded base64url, as `registry-gate-sidecar
    /// keygen` prints them): a snapshot not signed by one of them is refused. One, or two
    /// while the publisher key is rotated.
    #[serde(default, deserialize_with = "publisher_keys")]
    pub publisher_keys: Vec<PublisherKey>,
}

/// Most publisher keys configured at once: the current one and its successor.
pub const MAX_PUBLISHER_KEYS: usize = 2;

/// `publisher_keys` from their text form.
fn publisher_keys<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<PublisherKey>, D::Error> {
    let texts = Vec::<String>::deserialize(deserializer)?;
    texts
        .iter()
        .map(|text| PublisherKey::parse(text).map_err(serde::de::Error::custom))
        .collect()
}

fn too_many_publisher_keys(keys: &[PublisherKey]) -> Option<String> {
    (keys.len() > MAX_PUBLISHER_KEYS).then(|| {
        format!(
            "publisher_keys names {} keys; at most {MAX_PUBLISHER_KEYS} (the current one and \
             its successor)",
            keys.len()
        )
    })
}

/// Validated fetcher settings (same fields, checked).
pub type FetcherSettings = FetcherConfig;

impl FetcherConfig {
    /// Parses and validates the fetcher configuration JSON.
    pub fn from_json(bytes: &[u8]) -> Result<FetcherSettings, ConfigError> {
        let config: FetcherConfig = serde_json::from_slice(bytes).map_err(|e| ConfigError {
            problems: vec![e.to_string()],
        })?;
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Every rule this configuration breaks, one line each.
    fn problems(&self) -> Vec<String> {
        let config = self;
        let mut problems = Vec::new();
        if config.cluster.is_empty() {
            problems.push("cluster must not be empty".to_string());
        }
        if config.authority.is_empty() {
            problems.push("authority must not be empty".to_string());
        }
        if !config.path.starts_with('/') {
            problems.push(format!("path {:?} must start with '/'", config.path));
        }
        if config.timeout_ms <= config.wait_secs.saturating_mul(1000) {
            problems.push(format!(
                "timeout_ms {} must exceed wait_secs {} × 1000",
                config.timeout_ms, config.wait_secs
            ));
        }
        if config.retry_ms == 0 {
            problems.push("retry_ms must be positive".to_string());
        }
        if !(config.retry_ms..=MAX_RETRY_MAX_MS).contains(&config.retry_max_ms) {
            problems.push(format!(
                "retry_max_ms {} must be between retry_ms {} and {MAX_RETRY_MAX_MS}",
                config.retry_max_ms, config.retry_ms
            ));
        }
        if config.max_snapshot_bytes < 1024 {
            problems.push("max_snapshot_bytes must be at least 1024".to_string());
        }
        if config.publisher_keys.is_empty() {
            problems.push(
                "publisher_keys must name the sidecar's publisher key (snapshots are signed)"
                    .to_string(),
            );
        }
        problems.extend(too_many_publisher_keys(&config.publisher_keys));
        problems
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    const MINIMAL: &str =
        r#"{"issuer":"registry-gate","service":"svc","realm":"https://gw.example/v2/token"}"#;

    #[test]
    fn minimal_config_takes_named_defaults() {
        let settings = Settings::from_json(MINIMAL.as_bytes()).unwrap();
        assert_eq!(settings.verifier.algorithms, defaults::algorithms());
        // Both algorithms the sidecar's keys sign with (README's configuration table).
        assert_eq!(
            defaults::algorithms(),
            vec![Algorithm::ES256, Algorithm::EdDSA]
        );
        assert_eq!(settings.verifier.leeway_secs, defaults::leeway_secs());
        assert_eq!(settings.verifier.audience, "svc");
        assert_eq!(settings.identity_header, defaults::identity_header());
        assert_eq!(
            settings.policy.challenge.realm,
            "https://gw.example/v2/token"
        );
        assert!(!settings.policy.allow_push);
        assert_eq!(
            settings.flatpak_index_max_bytes,
            defaults::flatpak_index_max_bytes()
        );
        assert_eq!(settings.flatpak_buffer_budget_bytes, 64 * 1024 * 1024);
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let json = r#"{"issuer":"","service":"svc","realm":"ftp://x","algorithms":[],
            "leeway_secs":999,"max_token_bytes":10,"catalog_default_page":5000,
            "identity_header":"x bad","flatpak_index_max_bytes":0,
            "flatpak_buffer_budget_bytes":2000000000}"#;
        let err = Settings::from_json(json.as_bytes()).unwrap_err();
        let rows = [
            ("empty issuer", "issuer"),
            ("bad realm", "realm"),
            ("no algorithms", "algorithms"),
            ("leeway too large", "leeway_secs"),
            ("token cap too small", "max_token_bytes"),
            ("page sizes", "catalog_default_page"),
            ("identity header", "identity_header"),
            ("flatpak index bound", "flatpak_index_max_bytes"),
            ("flatpak buffer budget", "flatpak_buffer_budget_bytes"),
        ];
        for (case, field) in rows {
            assert!(
                err.problems.iter().any(|p| p.contains(field)),
                "{case}: {err}"
            );
        }
        assert_eq!(err.problems.len(), rows.len(), "{err}");
    }

    #[test]
    fn unknown_fields_and_algorithms_are_refused() {
        let rows = [
            (
                "unknown field",
                r#"{"issuer":"i","service":"s","realm":"https://r","extra":1}"#,
            ),
            (
                "unknown algorithm",
                r#"{"issuer":"i","service":"s","realm":"https://r","algorithms":["none"]}"#,
            ),
            ("not json", "issuer=i"),
            ("missing issuer", r#"{"service":"s","realm":"https://r"}"#),
        ];
        for (case, json) in rows {
            assert!(Settings::from_json(json.as_bytes()).is_err(), "{case}");
        }
    }

    #[test]
    fn client_certificate_settings() {
        let with = |extra: &str| {
            Settings::from_json(
                format!(r#"{{"issuer":"i","service":"s","realm":"https://r"{extra}}}"#).as_bytes(),
            )
        };
        let rows = [
            ("default: none", "", Some((CertificateSource::None, None))),
            (
                "connection",
                r#","client_certificate_from_connection":true"#,
                Some((CertificateSource::Connection, None)),
            ),
            (
                "untrusted header is only stripped",
                r#","client_certificate_header":"SSL-Client-S-DN""#,
                Some((CertificateSource::None, Some("ssl-client-s-dn"))),
            ),
            (
                "trusted header",
                r#","client_certificate_header":"ssl-client-s-dn","trust_client_certificate_header":true"#,
                Some((CertificateSource::TrustedHeader, Some("ssl-client-s-dn"))),
            ),
            (
                "trust without a header",
                r#","trust_client_certificate_header":true"#,
                None,
            ),
            (
                "trusted header and connection",
                r#","client_certificate_header":"ssl-client-s-dn","trust_client_certificate_header":true,"client_certificate_from_connection":true"#,
                None,
            ),
            (
                "header is authorization",
                r#","client_certificate_header":"Authorization""#,
                None,
            ),
            (
                "header is the identity header",
                r#","client_certificate_header":"x-registry-gate-identity""#,
                None,
            ),
            (
                "header is not a plain name",
                r#","client_certificate_header":"ssl client""#,
                None,
            ),
        ];
        for (case, extra, want) in rows {
            let got = with(extra)
                .ok()
                .map(|s| (s.client_certificate, s.client_certificate_header));
            assert_eq!(
                got.as_ref()
                    .map(|(source, header)| (*source, header.as_deref())),
                want,
                "{case}"
            );
        }
    }

    #[test]
    fn fetcher_config() {
        let ok =
            FetcherConfig::from_json(br#"{"cluster":"sidecar","authority":"sidecar","publisher_keys":["11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"]}"#).unwrap();
        assert_eq!(ok.path, "/v1/snapshot");
        assert!(ok.timeout_ms > ok.wait_secs * 1000);
        let err = FetcherConfig::from_json(
            br#"{"cluster":"","authority":"a","path":"v1","wait_secs":30,"timeout_ms":1000}"#,
        )
        .unwrap_err();
        assert_eq!(err.problems.len(), 4, "{err}");
        assert!(
            err.problems
                .iter()
                .any(|p| p.contains("publisher_keys must name")),
            "{err}"
        );
        assert_eq!(ok.retry_max_ms, defaults::retry_max_ms());
        let err = FetcherConfig::from_json(
            br#"{"cluster":"c","authority":"a","retry_ms":1000,"retry_max_ms":999,"publisher_keys":["11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"]}"#,
        )
        .unwrap_err();
        assert!(err.problems[0].contains("retry_max_ms"), "{err}");
    }

    #[test]
    fn publisher_keys_are_parsed_and_bounded() {
        const KEY: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
        let fetcher = |keys: &str| {
            FetcherConfig::from_json(
                format!(r#"{{"cluster":"c","authority":"a","publisher_keys":{keys}}}"#).as_bytes(),
            )
        };
        let two = fetcher(&format!(r#"["{KEY}","{}"]"#, KEY.replace('1', "2"))).unwrap();
        assert_eq!(two.publisher_keys.len(), 2);
        assert_eq!(two.publisher_keys[0].to_string(), KEY);
        let three = fetcher(&format!(r#"["{KEY}","{KEY}","{KEY}"]"#)).unwrap_err();
        assert!(three.to_string().contains("at most 2"), "{three}");
        let bad = fetcher(r#"["not-a-key"]"#).unwrap_err();
        assert!(bad.to_string().contains("not-a-key"), "{bad}");
        let filter = Settings::from_json(
            format!(
                r#"{{"issuer":"i","service":"s","realm":"https://r","publisher_keys":["{KEY}"]}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(filter.publisher_keys.len(), 1);
        assert!(Settings::from_json(MINIMAL.as_bytes())
            .unwrap()
            .publisher_keys
            .is_empty());
    }

    #[test]
    fn elected_fetcher() {
        let with = |extra: &str| {
            Settings::from_json(
                format!(r#"{{"issuer":"i","service":"s","realm":"https://r"{extra}}}"#).as_bytes(),
            )
        };
        struct Row {
            case: &'static str,
            extra: &'static str,
            /// `Ok(lease ms)` when a fetcher is elected, `Ok(None)` without, `Err(fields)`
            /// naming every problem reported.
            want: Result<Option<u64>, &'static [&'static str]>,
        }
        let rows = [
            Row {
                case: "no fetcher object",
                extra: "",
                want: Ok(None),
            },
            Row {
                case: "fetcher with defaults",
                extra: r#","fetcher":{"cluster":"sidecar","authority":"sidecar","publisher_keys":["11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"]}"#,
                want: Ok(Some(defaults::fetcher_lease_ms())),
            },
            Row {
                case: "lease duration set",
                extra: r#","fetcher":{"cluster":"c","authority":"a","publisher_keys":["11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"]},"fetcher_lease_ms":10000"#,
                want: Ok(Some(10_000)),
            },
            Row {
                case: "the fetcher's own rules apply, prefixed",
                extra: r#","fetcher":{"cluster":"","authority":"a","retry_ms":0,"publisher_keys":["11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"]}"#,
                want: Err(&["fetcher: cluster", "fetcher: retry_ms"]),
            },
            Row {
                case: "unknown field in the fetcher object",
                extra: r#","fetcher":{"cluster":"c","authority":"a","lease":1}"#,
                want: Err(&["unknown field"]),
            },
            Row {
                case: "lease too short",
                extra: r#","fetcher":{"cluster":"c","authority":"a","publisher_keys":["11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"]},"fetcher_lease_ms":999"#,
                want: Err(&["fetcher_lease_ms 999 must be between"]),
            },
            Row {
                case: "lease too long",
                extra: r#","fetcher_lease_ms":300001"#,
                want: Err(&["fetcher_lease_ms 300001 must be between"]),
            },
            Row {
                case: "lease shorter than four timer ticks",
                extra: r#","fetcher":{"cluster":"c","authority":"a","publisher_keys":["11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"]},"fetcher_lease_ms":2000,"snapshot_check_ms":600"#,
                want: Err(&["at least 4 × snapshot_check_ms"]),
            },
            Row {
                case: "slow timer without a fetcher is fine",
                extra: r#","snapshot_check_ms":60000"#,
                want: Ok(None),
            },
        ];
        for row in rows {
            match (with(row.extra), row.want) {
                (Ok(settings), Ok(want)) => assert_eq!(
                    settings.elected_fetcher.map(|e| e.lease.duration_ms),
                    want,
                    "{}",
                    row.case
                ),
                (Err(err), Err(fields)) => {
                    for field in fields {
                        assert!(
                            err.problems.iter().any(|p| p.contains(field)),
                            "{}: {err}",
                            row.case
                        );
                    }
                    assert_eq!(err.problems.len(), fields.len(), "{}: {err}", row.case);
                }
                (got, want) => panic!("{}: got {got:?}, want {want:?}", row.case),
            }
        }
    }
}
