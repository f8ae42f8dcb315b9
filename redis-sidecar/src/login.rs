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

use std::borrow::Cow;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::http::HeaderValue;
use registry_gate_core::identity::Principal;
use thiserror::Error;
use tokio::sync::Semaphore;

use crate::katello::{KatelloClient, KatelloError, TokenAnswer};
use crate::token::{Credentials, Htpasswd};

use self::cache::LoginCache;

/// Why a login was refused or could not be checked.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    #[error("invalid username or password")]
    BadCredentials,
    /// No bcrypt slot or Katello connection within the login queue timeout.
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
}

/// Login settings that do not depend on the backend.
#[derive(Debug, Clone, Copy)]
pub struct LoginSettings {
    /// bcrypt verifications run at once.
    pub concurrency: usize,
    /// Longest a login waits for a bcrypt slot or a Katello connection.
    pub queue_timeout: Duration,
    /// How long a successful login is remembered; zero disables the cache.
    pub cache_ttl: Duration,
}

/// Checks Basic credentials against the configured backend.
#[derive(Debug)]
pub struct Authenticator {
    backend: Backend,
    cache: LoginCache,
    /// bcrypt is deliberately slow; at most this many run at once so a login storm queues
    /// instead of exhausting the blocking pool.
    permits: Semaphore,
    /// Longest a login waits for a permit before it is refused as busy, so a storm gets
    /// prompt 503s instead of piling up requests that time out anyway.
    queue_timeout: Duration,
    /// Backend checks run: bcrypt verifications or Katello `/v2/token` calls.
    upstream_calls: AtomicU64,
    /// Logins answered from the positive cache.
    cache_hits: AtomicU64,
}

impl Authenticator {
    pub fn new(backend: Backend, settings: LoginSettings) -> Result<Authenticator, AuthError> {
        Ok(Authenticator {
            backend,
            cache: LoginCache::new(settings.cache_ttl).map_err(|e| {
                AuthError::Internal(format!("no randomness for the cache key: {e}"))
            })?,
            permits: Semaphore::new(settings.concurrency.max(1)),
            queue_timeout: settings.queue_timeout,
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
                let check = self.check(user, password, request);
                (self.cache.flight(key, check).await?, false)
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
                let _permit = tokio::time::timeout(self.queue_timeout, self.permits.acquire())
                    .await
                    .map_err(|_| AuthError::Busy)?
                    .map_err(|e| AuthError::Internal(e.to_string()))?;
                self.upstream_calls.fetch_add(1, Ordering::Relaxed);
                let (user, password) = (user.to_owned(), password.to_owned());
                let (user, ok) = tokio::task::spawn_blocking(move || {
                    let ok = file.verify(&user, &password);
                    (user, ok)
                })
                .await
                .map_err(|e| AuthError::Internal(e.to_string()))?;
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
