//! Verified callers shared by the gates of one process (the native build's worker threads):
//! a second level behind each gate's own cache. A gate looks here only when its own cache
//! misses, so a cached request takes no lock, and a token verified on one worker is not
//! verified again on the others (`make bench-token-cache`: a shared cache on the hit path
//! costs a lock on every request; behind the gate's own, only on a worker's first use).
//!
//! Entries are tagged with the key ring they were verified under ([`Installed::ring`]):
//! a gate that still holds another ring (a worker not yet handed the new snapshot, or one
//! already past it) neither finds nor is found by them.

use core::hash::BuildHasher;
use std::sync::{Mutex, PoisonError};

use hashbrown::DefaultHashBuilder;

use super::Caller;
use crate::token::{Expiring, TokenCache};

/// How many locks the shared cache is split behind.
const SHARDS: usize = 16;

/// A caller, and the key ring its token was verified under.
#[derive(Debug, Clone)]
struct Tagged {
    ring: u64,
    caller: Caller,
}

impl Expiring for Tagged {
    fn expires_at(&self) -> u64 {
        self.caller.expires_at
    }
}

/// The callers every gate of a process may take over ([`super::Gate::share_callers`]).
#[derive(Debug)]
pub struct SharedCallers {
    shards: Vec<Mutex<TokenCache<Tagged>>>,
    hasher: DefaultHashBuilder,
}

impl SharedCallers {
    /// Holding about `entries` tokens (the gates' `token_cache_entries`); 0 holds none.
    pub fn new(entries: usize) -> SharedCallers {
        let each = entries.div_ceil(SHARDS);
        SharedCallers {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(TokenCache::new(each)))
                .collect(),
            hasher: DefaultHashBuilder::default(),
        }
    }

    fn shard(&self, token: &str) -> Option<&Mutex<TokenCache<Tagged>>> {
        let at = self.hasher.hash_one(token) % SHARDS as u64;
        self.shards.get(usize::try_from(at).ok()?)
    }

    /// The caller cached for `token` under key ring `ring`, if any and not expired at `now`.
    pub(super) fn get(&self, token: &str, ring: u64, now: u64) -> Option<Caller> {
        let shard = self.shard(token)?;
        let cache = shard.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .get(token, now)
            .filter(|tagged| tagged.ring == ring)
            .map(|tagged| tagged.caller.clone())
    }

    /// Remembers `caller`, verified from `token` under key ring `ring`.
    pub(super) fn insert(&self, token: &str, ring: u64, caller: Caller, now: u64) {
        if let Some(shard) = self.shard(token) {
            let mut cache = shard.lock().unwrap_or_else(PoisonError::into_inner);
            cache.insert(token, Tagged { ring, caller }, now);
        }
    }
}
