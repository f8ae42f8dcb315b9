//! Logins: who a token request's Basic credentials prove the caller to be, checked by the
//! configured backend — an htpasswd-bcrypt file (re-read when it changes) or Katello's
//! `/v2/token` — behind the short positive cache and single-flight table of [`cache`].
//!
//! Identity is only ever the Basic username whose password the backend accepted: never
//! `account`, never anything Katello says. No credentials means anonymous, and so does
//! Katello's `unauthenticated` answer. A change of the htpasswd file drops every cached
//! login at once, so a changed password stops working on the next request.
//!
//! This module must never write anything anywhere (a login is read-only), never log a
//! password, an `Authorization` header or a token, and never run bcrypt on the async
//! runtime's threads.

pub mod cache;
pub mod limits;

use std::borrow::Cow;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::http::HeaderValue;
use registry_gate_core::identity::Principal;
use thiserror::Error;
use tokio::sync::Semaphore;

use crate::katello::{KatelloClient, KatelloError, TokenAnswer};
use crate::token::{Credentials, Htpasswd};

use self::cache::LoginCache;
use self::limits::{Attempt, FailureLimits, LimitSettings, Limited};

/// Why a login was refused or could not be checked.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    #[error("invalid username or password")]
    BadCredentials,
    /// The same credentials were refused a moment ago ([`cache`]'s refusals): refused again
    /// without asking the backend.
    #[error("invalid username or password")]
    RememberedRefusal,
    /// Too many failed logins for this user or from this address ([`limits`]).
    #[error("too many failed logins")]
    Limited(Limited),
    /// More verifications are queued than the CPUs clear within the login queue bound, or no
    /// Katello connection within it.
    #[error("too many logins in progress")]
    Busy,
    /// Katello gave no usable answer (its status, a malformed answer, or none at all).
    #[error(transparent)]
    Katello(KatelloError),
    #[error("password check failed: {0}")]
    Internal(String),
}

impl From<KatelloError> for AuthError {
    fn from(error: KatelloError) -> Self {
        match error {
            KatelloError::Busy => AuthError::Busy,
            other => AuthError::Katello(other),
        }
    }
}

/// Where Basic credentials are checked.
#[derive(Debug)]
pub enum Backend {
    /// Every Basic login is refused: only anonymous tokens are issued.
    None,
    Htpasswd(HtpasswdSource),
    Katello(Arc<KatelloClient>),
}

/// What a login proved, and for Katello logins, a way to ask Katello which repositories the
/// same credentials may read.
#[derive(Debug)]
pub struct Login {
    pub principal: Principal,
    /// Whether the positive cache answered (no backend check ran for this request).
    pub cached: bool,
    /// Set for a Katello login that authenticated a user.
    pub catalog: Option<CatalogRefresh>,
}

/// Runs Katello's `/v2/_catalog` with the login's own `Authorization`, through the same
/// client and connection bound as logins.
pub struct CatalogRefresh {
    client: Arc<KatelloClient>,
    authorization: HeaderValue,
}

impl std::fmt::Debug for CatalogRefresh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the credentials.
        f.write_str("CatalogRefresh(..)")
    }
}

impl CatalogRefresh {
    /// The repository names Katello lets this login read.
    pub async fn run(&self) -> Result<Vec<String>, KatelloError> {
        self.client.catalog(&self.authorization).await
    }
}

/// A token request's login: its parsed credentials, the raw `Authorization` header (Katello
/// gets it verbatim) and the raw `scope` values (Katello gets them too).
#[derive(Debug, Clone, Copy)]
pub struct LoginRequest<'a> {
    pub credentials: &'a Credentials,
    pub authorization: Option<&'a HeaderValue>,
    pub scopes: &'a [String],
    /// The client's address as the front proxy saw it, when it says.
    pub address: Option<IpAddr>,
}

/// Login settings that do not depend on the backend.
#[derive(Debug, Clone, Copy)]
pub struct LoginSettings {
    /// bcrypt verifications run at once.
    pub concurrency: usize,
    /// The longest wait a bcrypt verification is admitted to (by the work queued ahead of
    /// it), and the longest a Katello login waits for a connection.
    pub queue_timeout: Duration,
    /// How long a successful login is remembered; zero disables the cache.
    pub cache_ttl: Duration,
    /// How long a refused login is remembered; zero remembers none.
    pub refusal_ttl: Duration,
    /// Failed logins allowed per user and per address.
    pub limits: LimitSettings,
}

/// Checks Basic credentials against the configured backend.
#[derive(Debug)]
pub struct Authenticator {
    backend: Backend,
    cache: LoginCache,
    /// bcrypt is deliberately slow; at most this many run at once so a login storm queues
    /// instead of exhausting the blocking pool.
    permits: Semaphore,
    concurrency: usize,
    /// A verification is admitted only if the ones queued ahead of it are expected to be
    /// done within this; once admitted it waits its turn (the queue is bounded in work, not
    /// in wall time, so a burst the CPUs can clear is served, not timed out halfway).
    queue_timeout: Duration,
    /// Verifications admitted and not finished.
    queued: AtomicUsize,
    /// What one verification takes, in µs: measured at start, then a moving average.
    verify_micros: AtomicU64,
    limits: FailureLimits,
    /// Backend checks run: bcrypt verifications or Katello `/v2/token` calls.
    upstream_calls: AtomicU64,
    /// Logins answered from the positive cache.
    cache_hits: AtomicU64,
}

impl Authenticator {
    pub fn new(backend: Backend, settings: LoginSettings) -> Result<Authenticator, AuthError> {
        // One verification of an unknown user, timed: what the first admissions assume.
        let verify_micros = match &backend {
            Backend::Htpasswd(source) => {
                let file = source.current();
                let started = Instant::now();
                file.verify("\0registry-gate-probe", "");
                micros(started.elapsed())
            }
            Backend::None | Backend::Katello(_) => 0,
        };
        Ok(Authenticator {
            backend,
            cache: LoginCache::new(settings.cache_ttl, settings.refusal_ttl).map_err(|e| {
                AuthError::Internal(format!("no randomness for the cache key: {e}"))
            })?,
            permits: Semaphore::new(settings.concurrency.max(1)),
            concurrency: settings.concurrency.max(1),
            queue_timeout: settings.queue_timeout,
            queued: AtomicUsize::new(0),
            verify_micros: AtomicU64::new(verify_micros),
            limits: FailureLimits::new(settings.limits),
            upstream_calls: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
        })
    }

    /// Backend checks run so far (bcrypt verifications or Katello `/v2/token` calls).
    pub fn upstream_calls(&self) -> u64 {
        self.upstream_calls.load(Ordering::Relaxed)
    }

    /// Logins answered from the positive cache so far.
    pub fn cache_hits(&self) -> u64 {
        self.cache_hits.load(Ordering::Relaxed)
    }

    /// What one bcrypt verification takes now, as the admissions assume it.
    pub fn verify_time(&self) -> Duration {
        Duration::from_micros(self.verify_micros.load(Ordering::Relaxed))
    }

    /// Admits one more bcrypt verification if the ones queued ahead of it are expected to
    /// be done within the queue bound, or answers busy at once.
    fn admit(&self) -> Result<Queued<'_>, AuthError> {
        let each = self.verify_micros.load(Ordering::Relaxed);
        let bound = micros(self.queue_timeout);
        let concurrency = self.concurrency;
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                // Rounds of `concurrency` ahead of it, then its own.
                let rounds = u64::try_from(queued / concurrency).unwrap_or(u64::MAX);
                let done_after = rounds.saturating_add(1).saturating_mul(each);
                (done_after <= bound || queued == 0).then_some(queued + 1)
            })
            .map(|_| Queued(&self.queued))
            .map_err(|_| AuthError::Busy)
    }

    /// Takes a verification's measured time into the average (one eighth of it).
    fn measured(&self, took: Duration) {
        let took = micros(took);
        let _ = self
            .verify_micros
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |mean| {
                Some(mean - mean / 8 + took / 8)
            });
    }

    /// The principal the credentials prove.
    pub async fn authenticate(&self, request: LoginRequest<'_>) -> Result<Login, AuthError> {
        let (user, password) = match request.credentials {
            Credentials::Anonymous => {
                return Ok(Login {
                    principal: Principal::Anonymous,
                    cached: false,
                    catalog: None,
                })
            }
            Credentials::Basic { user, password } => (user, password),
        };
        // Foreman finds a login by its lower-case form (`lower_login`): `JDoe` is `jdoe`, one
        // principal, one cache entry and one catalog.
        let user = match &self.backend {
            Backend::Katello(_) => Cow::Owned(user.to_lowercase()),
            Backend::None | Backend::Htpasswd(_) => Cow::Borrowed(user.as_str()),
        };
        let user = user.as_ref();
        if let Backend::Htpasswd(source) = &self.backend {
            source.refresh(&self.cache).await;
        }
        let key = self.cache.key(user, password);
        let (principal, cached) = match self.cache.get(&key) {
            Some(principal) => {
                self.cache_hits.fetch_add(1, Ordering::Relaxed);
                (principal, true)
            }
            None => {
                // Katello's answer to wrong credentials depends on the scopes (public ones
                // get an anonymous token): a refusal is remembered with them.
                let refusal = self
                    .cache
                    .key(user, &refusal_subject(password, request.scopes));
                if self.cache.refused(&refusal) {
                    return Err(AuthError::RememberedRefusal);
                }
                let era = self.cache.era();
                // Only checks count against the failure limits, one per flight: identical
                // logins at once are one attempt.
                let check = async {
                    let attempt = self
                        .limits
                        .attempt(user, request.address)
                        .map_err(AuthError::Limited)?;
                    settle(attempt, self.check(user, password, request).await)
                };
                let outcome = self.cache.flight(key, check).await;
                if matches!(outcome, Err(AuthError::BadCredentials)) {
                    self.cache.remember_refusal(refusal, era);
                }
                (outcome?, false)
            }
        };
        let catalog = match (&self.backend, &principal, request.authorization) {
            (Backend::Katello(client), Principal::User(_), Some(authorization)) => {
                Some(CatalogRefresh {
                    client: Arc::clone(client),
                    authorization: authorization.clone(),
                })
            }
            _ => None,
        };
        Ok(Login {
            principal,
            cached,
            catalog,
        })
    }

    /// One backend check, uncached.
    async fn check(
        &self,
        user: &str,
        password: &str,
        request: LoginRequest<'_>,
    ) -> Result<Principal, AuthError> {
        match &self.backend {
            Backend::None => Err(AuthError::BadCredentials),
            Backend::Htpasswd(source) => {
                let file = source.current();
                let _queued = self.admit()?;
                let _permit = self
                    .permits
                    .acquire()
                    .await
                    .map_err(|e| AuthError::Internal(e.to_string()))?;
                self.upstream_calls.fetch_add(1, Ordering::Relaxed);
                let (user, password) = (user.to_owned(), password.to_owned());
                let (user, ok, took) = tokio::task::spawn_blocking(move || {
                    let started = Instant::now();
                    let ok = file.verify(&user, &password);
                    (user, ok, started.elapsed())
                })
                .await
                .map_err(|e| AuthError::Internal(e.to_string()))?;
                self.measured(took);
                if ok {
                    Ok(Principal::User(user))
                } else {
                    Err(AuthError::BadCredentials)
                }
            }
            Backend::Katello(client) => {
                let authorization = request.authorization.ok_or(AuthError::BadCredentials)?;
                self.upstream_calls.fetch_add(1, Ordering::Relaxed);
                match client.token(authorization, user, request.scopes).await? {
                    TokenAnswer::Authenticated => Ok(Principal::User(user.to_owned())),
                    TokenAnswer::Anonymous => Ok(Principal::Anonymous),
                    TokenAnswer::Refused => Err(AuthError::BadCredentials),
                }
            }
        }
    }
}

/// A verification admitted to the queue, until it is done.
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A login's outcome, and its attempt kept as a failure if the credentials were refused.
fn settle(attempt: Attempt, outcome: Result<Principal, AuthError>) -> Result<Principal, AuthError> {
    if matches!(outcome, Err(AuthError::BadCredentials)) {
        attempt.failed();
    }
    outcome
}

/// What a refusal is remembered under beside the user: the password and the scopes asked.
fn refusal_subject(password: &str, scopes: &[String]) -> String {
    let mut subject = password.to_owned();
    for scope in scopes {
        subject.push('\0');
        subject.push_str(scope);
    }
    subject
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    inode: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        len: meta.len(),
        inode: meta.ino(),
        mtime: (meta.mtime(), meta.mtime_nsec()),
        ctime: (meta.ctime(), meta.ctime_nsec()),
    })
}

#[derive(Debug)]
struct Loaded {
    file: Arc<Htpasswd>,
    stamp: Option<Stamp>,
}

/// An htpasswd file that is re-read when its length, inode, mtime or ctime change (one
/// `stat` per login). A file that no longer parses or cannot be read is logged and the last
/// good users are kept (a half-written file does not lock everyone out); the login cache is
/// dropped either way.
#[derive(Debug)]
pub struct HtpasswdSource {
    path: PathBuf,
    loaded: RwLock<Loaded>,
    /// One reload at a time; others wait for it and then see its result.
    reloading: tokio::sync::Mutex<()>,
}

impl HtpasswdSource {
    /// `file` is `path` as read at startup (a configuration error if it was bad).
    pub fn new(path: PathBuf, file: Htpasswd) -> HtpasswdSource {
        let stamp = stamp(&path);
        HtpasswdSource {
            path,
            loaded: RwLock::new(Loaded {
                file: Arc::new(file),
                stamp,
            }),
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    fn current(&self) -> Arc<Htpasswd> {
        let loaded = self
            .loaded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(&loaded.file)
    }

    fn loaded_stamp(&self) -> Option<Stamp> {
        self.loaded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .stamp
    }

    /// Re-reads the file if it changed, dropping `cache` when it did.
    async fn refresh(&self, cache: &LoginCache) {
        if stamp(&self.path) == self.loaded_stamp() {
            return;
        }
        let _reloading = self.reloading.lock().await;
        let now = stamp(&self.path);
        if now == self.loaded_stamp() {
            return;
        }
        let path = self.path.clone();
        let read = tokio::task::spawn_blocking(move || Htpasswd::load(&path)).await;
        let mut loaded = self
            .loaded
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loaded.stamp = now;
        match read {
            Ok(Ok(file)) => {
                tracing::info!(users = file.len(), path = %self.path.display(), "htpasswd file re-read");
                loaded.file = Arc::new(file);
            }
            Ok(Err(error)) => {
                tracing::error!(%error, path = %self.path.display(), "htpasswd file changed but cannot be used; keeping the previous users");
            }
            Err(error) => {
                tracing::error!(%error, "htpasswd reload task failed; keeping the previous users");
            }
        }
        cache.clear();
    }
}

#[cfg(test)]
mod tests;
