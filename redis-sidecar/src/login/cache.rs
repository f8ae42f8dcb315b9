//! The short positive login cache and the single-flight table in front of the login backends.
//!
//! A login is keyed by HMAC-SHA256, under a key drawn from the OS at startup, of
//! `user || 0x00 || password`: the password is never kept, and a key is useless outside this
//! process. Only authenticated users are cached, each until its expiry; the cache holds at
//! most [`MAX_ENTRIES`] (expired entries go first, then arbitrary ones). Concurrent logins
//! with the same key share one backend check ([`LoginCache::flight`]): a burst of identical
//! logins costs one bcrypt run or one Katello call, whatever its outcome.
//!
//! [`LoginCache::clear`] starts a new era: everything cached is dropped, and a check that was
//! already running when it happened cannot cache its result. This module must never write
//! anything outside memory, never hold a password, and never cache a refusal or an error.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use registry_gate_core::identity::Principal;
use sha2::Sha256;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::AuthError;

/// Most logins kept at once.
pub const MAX_ENTRIES: usize = 10_000;

/// A login's cache key: HMAC-SHA256 of user, 0, password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key([u8; 32]);

/// What one backend check decided: the principal (a user, or anonymous when the backend let
/// the caller in without identity), or why not.
pub type Outcome = Result<Principal, AuthError>;

type Flight = Arc<OnceCell<Outcome>>;

#[derive(Debug)]
struct Entries {
    /// Bumped by [`LoginCache::clear`]; a check started in an older era does not cache.
    era: u64,
    users: HashMap<Key, (String, Instant)>,
    flights: HashMap<Key, Flight>,
}

/// In-memory positive cache plus single-flight table.
pub struct LoginCache {
    hmac_key: [u8; 32],
    /// Zero disables caching (single flight still applies).
    ttl: Duration,
    entries: Mutex<Entries>,
}

impl std::fmt::Debug for LoginCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginCache")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl LoginCache {
    /// A cache with a fresh random HMAC key.
    pub fn new(ttl: Duration) -> Result<LoginCache, getrandom::Error> {
        let mut hmac_key = [0_u8; 32];
        getrandom::fill(&mut hmac_key)?;
        Ok(LoginCache {
            hmac_key,
            ttl,
            entries: Mutex::new(Entries {
                era: 0,
                users: HashMap::new(),
                flights: HashMap::new(),
            }),
        })
    }

    /// The key of a login.
    pub fn key(&self, user: &str, password: &str) -> Key {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.hmac_key) {
            Ok(mac) => mac,
            // HMAC takes keys of any length; this arm is never taken.
            Err(_) => return Key([0; 32]),
        };
        mac.update(user.as_bytes());
        mac.update(&[0]);
        mac.update(password.as_bytes());
        Key(mac.finalize().into_bytes().into())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic while holding the lock leaves plain data behind; keep using it.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached user for `key`, if any and not expired.
    pub fn get(&self, key: &Key) -> Option<Principal> {
        cached(&self.lock(), key)
    }

    /// Drops every cached login and starts a new era.
    pub fn clear(&self) {
        let mut entries = self.lock();
        entries.era = entries.era.wrapping_add(1);
        entries.users.clear();
    }

    /// How many logins are cached (expired ones included until evicted).
    pub fn len(&self) -> usize {
        self.lock().users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `check` once for all concurrent callers with the same `key` and gives each the
    /// same outcome; an authenticated user is cached, unless [`LoginCache::clear`] ran
    /// meanwhile. A caller arriving after the check finished finds the cache instead. If the
    /// caller running `check` goes away, a waiting one takes over.
    pub async fn flight<F>(&self, key: Key, check: F) -> Outcome
    where
        F: Future<Output = Outcome>,
    {
        let (flight, era) = {
            let mut entries = self.lock();
            if let Some(user) = cached(&entries, &key) {
                return Ok(user);
            }
            let flight = Arc::clone(entries.flights.entry(key).or_default());
            (flight, entries.era)
        };
        flight
            .get_or_init(|| async {
                let outcome = check.await;
                let mut entries = self.lock();
                if entries
                    .flights
                    .get(&key)
                    .is_some_and(|current| Arc::ptr_eq(current, &flight))
                {
                    entries.flights.remove(&key);
                }
                if let Ok(Principal::User(user)) = &outcome {
                    if entries.era == era && !self.ttl.is_zero() {
                        insert(&mut entries, key, user, Instant::now() + self.ttl);
                    }
                }
                outcome
            })
            .await
            .clone()
    }
}

fn cached(entries: &Entries, key: &Key) -> Option<Principal> {
    let (user, expires) = entries.users.get(key)?;
    (Instant::now() < *expires).then(|| Principal::User(user.clone()))
}

fn insert(entries: &mut Entries, key: Key, user: &str, expires: Instant) {
    if entries.users.len() >= MAX_ENTRIES && !entries.users.contains_key(&key) {
        let now = Instant::now();
        entries.users.retain(|_, (_, until)| *until > now);
        if entries.users.len() >= MAX_ENTRIES {
            if let Some(victim) = entries.users.keys().next().copied() {
                entries.users.remove(&victim);
            }
        }
    }
    entries.users.insert(key, (user.to_owned(), expires));
}
