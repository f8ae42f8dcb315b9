//! The short positive login cache and the single-flight table in front of the login backends.
//!
//! A login is keyed by HMAC-SHA256, under a key drawn from the OS at startup, of
//! `user || 0x00 || password`: the password is never kept, and a key is useless outside this
//! process. Only authenticated users are cached, each until its expiry; the cache holds at
//! most [`MAX_ENTRIES`] (expired entries go first, then arbitrary ones). Concurrent logins
//! with the same key share one backend check ([`LoginCache::flight`]): a burst of identical
//! logins costs one bcrypt run or one Katello call, whatever its outcome.
//!
//! A refusal (wrong password, unknown user) is remembered for a shorter while, when that is
//! configured: the same wrong login again is refused without a bcrypt run or a Katello call.
//! Never an error (busy, Katello unreachable): those are not answers about the credentials.
//!
//! [`LoginCache::clear`] starts a new era: everything cached is dropped, and a check that was
//! already running when it happened cannot cache its result. This module must never write
//! anything outside memory, and never hold a password.

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
    /// Refused logins, until when they stay refused.
    refused: HashMap<Key, Instant>,
    flights: HashMap<Key, Flight>,
}

/// In-memory positive cache plus single-flight table.
pub struct LoginCache {
    hmac_key: [u8; 32],
    /// Zero disables caching (single flight still applies).
    ttl: Duration,
    /// How long a refusal is remembered; zero remembers none.
    refusal_ttl: Duration,
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
    /// A cache with a fresh random HMAC key, remembering logins for `ttl` and refusals for
    /// `refusal_ttl`.
    pub fn new(ttl: Duration, refusal_ttl: Duration) -> Result<LoginCache, getrandom::Error> {
        let mut hmac_key = [0_u8; 32];
        getrandom::fill(&mut hmac_key)?;
        Ok(LoginCache {
            hmac_key,
            ttl,
            refusal_ttl,
            entries: Mutex::new(Entries {
                era: 0,
                users: HashMap::new(),
                refused: HashMap::new(),
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

    /// The era now: what [`LoginCache::remember_refusal`] compares against.
    pub fn era(&self) -> u64 {
        self.lock().era
    }

    /// Remembers that the login of `key` was refused, unless the cache was cleared since
    /// `era` (the file changed while it was checked) or refusals are not remembered.
    pub fn remember_refusal(&self, key: Key, era: u64) {
        let mut entries = self.lock();
        if entries.era == era && !self.refusal_ttl.is_zero() {
            let until = Instant::now() + self.refusal_ttl;
            insert(&mut entries.refused, key, until, |t| *t);
        }
    }

    /// Whether `key` was refused within the refusal lifetime.
    pub fn refused(&self, key: &Key) -> bool {
        self.lock()
            .refused
            .get(key)
            .is_some_and(|until| Instant::now() < *until)
    }

    /// Drops every cached login and refusal and starts a new era.
    pub fn clear(&self) {
        let mut entries = self.lock();
        entries.era = entries.era.wrapping_add(1);
        entries.users.clear();
        entries.refused.clear();
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
                        let until = Instant::now() + self.ttl;
                        insert(&mut entries.users, key, (user.clone(), until), |(_, t)| *t);
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

/// Inserts into a map of at most [`MAX_ENTRIES`]: expired entries go first, then an
/// arbitrary one.
fn insert<V>(map: &mut HashMap<Key, V>, key: Key, value: V, expires: impl Fn(&V) -> Instant) {
    if map.len() >= MAX_ENTRIES && !map.contains_key(&key) {
        let now = Instant::now();
        map.retain(|_, value| expires(value) > now);
        if map.len() >= MAX_ENTRIES {
            if let Some(victim) = map.keys().next().copied() {
                map.remove(&victim);
            }
        }
    }
    map.insert(key, value);
}
