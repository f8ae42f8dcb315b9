//! The fetcher lease: how the worker root contexts of one Envoy process elect exactly one of
//! themselves as the snapshot fetcher when no `envoy.bootstrap.wasm` singleton can be
//! deployed (Istio `WasmPlugin`, Envoy Gateway: HTTP filter only).
//!
//! The lease is one shared-data value naming its holder (a random id per root context) and
//! when it expires. Each contender, on its timer, reads the value with its compare-and-swap
//! token and asks [`decide`] what to do: go on holding, renew, take a lease that is free, or
//! leave it to the live holder. Every write goes back with the CAS token read, so of two
//! contenders racing for a free lease only one write lands; the other gets a CAS mismatch and
//! does not hold. A lease that does not decode is free (never a panic), and a lease claiming
//! to run for longer than one [`LeaseSettings::duration_ms`] from now (the clock went back)
//! is not trusted to be live.
//!
//! This module only decides; it never reads the clock or shared data: the glue passes the
//! bytes and the time in and performs the write it is told to.

use serde::{Deserialize, Serialize};

/// How long a lease lasts and when its holder renews it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseSettings {
    /// A lease not renewed for this long is free for any contender to take.
    pub duration_ms: u64,
}

impl LeaseSettings {
    /// The holder renews once less than half the duration is left, so a few missed timer
    /// ticks never lose the lease.
    fn renew_when_left_ms(&self) -> u64 {
        self.duration_ms / 2
    }
}

/// The lease as stored in shared data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lease {
    /// The holding contender's id.
    pub holder: String,
    /// Unix milliseconds after which the lease is free.
    pub expires_at_ms: u64,
}

impl Lease {
    /// Shared-data bytes.
    pub fn encode(&self) -> Vec<u8> {
        // A struct of a string and an integer always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// From shared-data bytes; `None` for anything else (an empty placeholder included).
    pub fn decode(bytes: &[u8]) -> Option<Lease> {
        serde_json::from_slice(bytes).ok()
    }
}

/// What a contender does with the lease it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Move {
    /// The lease is mine and not yet due for renewal: keep fetching, write nothing.
    Hold,
    /// The lease is mine but due for renewal (or already expired, or not trusted): write
    /// these bytes with the CAS token read. Hold only if the write succeeds.
    Renew(Vec<u8>),
    /// The lease is free (absent, expired, malformed or not trusted): write these bytes with
    /// the CAS token read. Hold only if the write succeeds.
    Take(Vec<u8>),
    /// Another contender holds a live lease: do not fetch.
    Leave,
}

/// Decides what contender `me` does with the lease bytes `current` (`None`: no value) at
/// unix millisecond `now_ms`.
pub fn decide(current: Option<&[u8]>, me: &str, now_ms: u64, settings: LeaseSettings) -> Move {
    let fresh = Lease {
        holder: me.to_owned(),
        expires_at_ms: now_ms.saturating_add(settings.duration_ms),
    };
    let Some(lease) = current.and_then(Lease::decode) else {
        return Move::Take(fresh.encode());
    };
    let left_ms = lease.expires_at_ms.saturating_sub(now_ms);
    let live = !lease.holder.is_empty() && left_ms > 0 && left_ms <= settings.duration_ms;
    match (lease.holder == me, live) {
        (true, true) if left_ms > settings.renew_when_left_ms() => Move::Hold,
        // Mine but due, expired or not trusted: renewing (taking it back) is by CAS too.
        (true, _) => Move::Renew(fresh.encode()),
        (false, true) => Move::Leave,
        (false, false) => Move::Take(fresh.encode()),
    }
}

#[cfg(test)]
mod tests;
