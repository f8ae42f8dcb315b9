//! The running sidecar's shared state — store, snapshot cache, publisher, login refresher, authenticator,
//! minter, the ext_authz gates and settings — and the background task that keeps the cache in
//! step with Redis.
//!
//! It wires parts together and owns no policy of its own: it must never decide access, encode
//! snapshots or talk HTTP.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use registry_gate_core::generation::Generation;
use tokio::sync::{watch, Semaphore};

use crate::cache::{Cache, View};
use crate::config::{Config, LoginBackend, Secret};
use crate::ext_authz::{self, ExtAuthz};
use crate::katello::form::{self, FormLimits};
use crate::katello::{KatelloClient, KatelloError};
use crate::login::{AuthError, Authenticator, Backend, HtpasswdSource, LoginSettings};
use crate::metrics::Metrics;
use crate::publisher::Publisher;
use crate::refresh::Refresher;
use crate::store::{Store, StoreError};
use crate::token::Minter;

/// How often the head key is polled to learn of other instances' publishes and of Redis
/// losing its data.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Limits on Katello's form bodies. Rack's 4096-parameter default would refuse a user mapping
/// of 50 users × 41 repositories, so the parameter count is bounded far higher; the body size
/// (`--max-body-bytes`) is what bounds the work.
const SYNC_FORM_LIMITS: FormLimits = FormLimits {
    max_params: 4_000_000,
    max_depth: form::DEFAULT_MAX_DEPTH,
};

/// Why the state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot build the Katello client: {0}")]
    Katello(#[from] KatelloError),
    #[error("cannot build the authenticator: {0}")]
    Login(#[from] AuthError),
}

/// Everything a request handler needs, cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub store: Store,
    pub cache: Arc<Cache>,
    pub publisher: Arc<Publisher>,
    /// Coalesces the grant refreshes of logins into few publishes.
    pub refresher: Refresher,
    /// Katello logins refresh the user's grants (`--refresh-repositories-on-login`).
    pub refresh_on_login: bool,
    pub authenticator: Authenticator,
    /// The header a login's client address is read from (`--client-address-header`).
    pub client_address_header: Option<String>,
    pub minter: Minter,
    pub sync_secret: Secret,
    /// Lowercased CNs of client certificates allowed to call the Katello sync API.
    pub sync_client_subjects: Vec<String>,
    /// Limits on Katello's form-encoded bodies.
    pub form_limits: FormLimits,
    pub read_secret: Secret,
    /// The only credential that may change `keys` and `min_token_iat`, if configured.
    pub admin_secret: Option<Secret>,
    /// Past this long without a successful store read, snapshot reads get 503.
    pub max_store_silence: Duration,
    pub long_poll_max: Duration,
    /// One permit per snapshot long-poll allowed to wait at once.
    pub long_poll_waiters: Arc<Semaphore>,
    /// The waiter bound (`--max-long-poll-waiters`), so metrics can tell how many wait.
    pub max_long_poll_waiters: usize,
    pub metrics: Arc<Metrics>,
    pub max_body_bytes: usize,
    /// The one wall-clock seam (token times, `published_at`).
    pub clock: fn() -> SystemTime,
    /// Flips to `true` when the server starts shutting down, so long-polls return at once.
    pub shutdown: watch::Receiver<bool>,
    /// The ext_authz check endpoint's gates (`--ext-authz-config`), fed from `cache`.
    pub ext_authz: Option<Arc<ExtAuthz>>,
}

impl AppState {
    /// Builds the state from validated settings and starts the login refresher and, in
    /// ext_authz mode, the task feeding the check gates (so it must run inside the tokio
    /// runtime). Nothing is contacted yet.
    pub fn new(config: Config, shutdown: watch::Receiver<bool>) -> Result<AppState, StateError> {
        let store = Store::new(
            &config.redis,
            config.redis_pool_size,
            &config.key_prefix,
            config.keep_generations,
            config.replica_acks,
        )?;
        let cache = Arc::new(Cache::new(Arc::clone(&config.publisher_key)));
        let clock: fn() -> SystemTime = SystemTime::now;
        let metrics = Arc::new(Metrics::new());
        tracing::info!(
            publisher_key = %config.publisher_key.public(),
            "snapshots are signed with this publisher key (the filters' publisher_keys)"
        );
        let publisher = Publisher::start(
            store.clone(),
            Arc::clone(&cache),
            config.signing_key.key_spec(),
            Arc::clone(&config.publisher_key),
            clock,
            Arc::clone(&metrics),
        );
        let refresher = Refresher::start(
            Arc::clone(&publisher),
            Arc::clone(&cache),
            config.login_cache_ttl,
            config.login_users_between_syncs,
        );
        let backend = match config.login {
            LoginBackend::None => Backend::None,
            LoginBackend::Htpasswd { path, file } => {
                Backend::Htpasswd(HtpasswdSource::new(path, file))
            }
            LoginBackend::Katello(settings) => Backend::Katello(Arc::new(KatelloClient::new(
                &settings,
                config.login_queue_timeout,
            )?)),
        };
        let authenticator = Authenticator::new(
            backend,
            LoginSettings {
                concurrency: config.login_concurrency,
                queue_timeout: config.login_queue_timeout,
                cache_ttl: config.login_cache_ttl,
                refusal_ttl: config.login_refusal_ttl,
                limits: config.login_limits,
            },
        )?;
        let ext_authz = config.ext_authz.map(|settings| {
            let gates = Arc::new(ExtAuthz::new(settings));
            tokio::spawn(ext_authz::feed(
                Arc::clone(&gates),
                Arc::clone(&cache),
                config.max_store_silence,
                clock,
                Arc::clone(&metrics),
                shutdown.clone(),
            ));
            gates
        });
        Ok(AppState {
            inner: Arc::new(Inner {
                store,
                cache,
                publisher,
                refresher,
                refresh_on_login: config.refresh_repositories_on_login,
                authenticator,
                client_address_header: config.client_address_header,
                minter: Minter::new(
                    config.signing_key,
                    config.issuer,
                    config.service,
                    config.token_ttl,
                ),
                sync_secret: config.sync_secret,
                sync_client_subjects: config.sync_client_subjects,
                form_limits: SYNC_FORM_LIMITS,
                read_secret: config.read_secret,
                admin_secret: config.admin_secret,
                max_store_silence: config.max_store_silence,
                long_poll_max: config.long_poll_max,
                long_poll_waiters: Arc::new(Semaphore::new(config.max_long_poll_waiters)),
                max_long_poll_waiters: config.max_long_poll_waiters,
                metrics,
                max_body_bytes: config.max_body_bytes,
                clock,
                shutdown,
                ext_authz,
            }),
        })
    }

    /// The current snapshot view.
    pub fn view(&self) -> View {
        self.inner.cache.view()
    }

    /// One poll: refresh the view from Redis and, if the current generation lacks this
    /// sidecar's key, republish it with the key. Errors are logged once per kind, not thrown.
    pub async fn poll_once(&self, health: &mut PollHealth) {
        match self.inner.cache.refresh(&self.inner.store).await {
            Ok(view) => {
                if !health.redis_ok {
                    tracing::info!("snapshot store reachable");
                }
                health.redis_ok = true;
                health.last_error = None;
                if let View::Ready(current) = view {
                    let generation = current.generation();
                    if health.key_checked.as_ref() != Some(&generation) {
                        health.key_checked = Some(generation.clone());
                        match self.inner.publisher.ensure_own_key(&current).await {
                            Ok(Some(published)) => tracing::info!(
                                generation = published.generation.number,
                                "republished the current snapshot with this sidecar's key"
                            ),
                            Ok(None) => {}
                            Err(error) => {
                                // Re-examined on the next generation (or retried next poll
                                // if the store was the problem).
                                if matches!(error, crate::publisher::PublishError::Store(_)) {
                                    health.key_checked = None;
                                }
                                tracing::warn!(
                                    %error,
                                    generation = %generation,
                                    "could not add this sidecar's key to the current snapshot"
                                );
                            }
                        }
                    }
                }
            }
            Err(error) => {
                let text = error.to_string();
                if health.last_error.as_deref() != Some(text.as_str()) {
                    tracing::warn!(error = %text, "snapshot refresh failed; serving the last known view");
                }
                health.redis_ok = false;
                health.last_error = Some(text);
            }
        }
    }

    /// Polls until `shutdown` flips.
    pub async fn poll_forever(self, mut shutdown: watch::Receiver<bool>) {
        let mut health = PollHealth::default();
        let mut ticker = tokio::time::interval(POLL_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => self.poll_once(&mut health).await,
                () = stopping(&mut shutdown) => break,
            }
        }
    }
}

/// Resolves once `shutdown` is `true` (or its sender is gone).
pub async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    // Map the guard away at once: a `watch::Ref` must not live across an await.
    let _ = shutdown.wait_for(|stop| *stop).await.is_ok();
}

/// What the poller remembers between ticks (to log transitions once).
#[derive(Debug, Default)]
pub struct PollHealth {
    redis_ok: bool,
    last_error: Option<String>,
    /// The generation whose key set was last examined.
    key_checked: Option<Generation>,
}
