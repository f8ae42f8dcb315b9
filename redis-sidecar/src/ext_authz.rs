//! The ext_authz mode: Envoy's `envoy.filters.http.ext_authz` (`http_service`) asks the
//! sidecar about each request, and the sidecar decides with the filter's own core gate
//! ([`Gate`]), fed from the snapshot this sidecar already holds.
//!
//! [`ExtAuthz`] owns the gates: one *source* gate that decodes each new generation of the
//! cache's view ([`feed`], off the request path, in a blocking task) and [`SHARDS`]-many
//! deciding gates that [`Gate::adopt`] it (one decoded index, one token cache each). A request
//! takes the lock of one deciding gate only, chosen by its `Authorization` value, so the
//! requests of one token meet one token cache and verify once; nothing on the request path
//! reads Redis or decodes a snapshot. Confirmations follow the view: while the view holds
//! the installed generation (and the store was read within `--max-store-silence-secs`) it is
//! confirmed every [`CONFIRM_INTERVAL`], exactly as a
//! filter's fetcher confirms it on each answer of this sidecar; while the view has no
//! snapshot (a new epoch, or Redis lost) the installed one keeps serving and ages towards
//! `max_staleness_secs`, as in the filter.
//!
//! [`ExtAuthz::check`] turns the gate's verdict into the answer `http_service` understands,
//! as plain data (a [`Reply`]): `200` with the identity header for the upstream and
//! `x-envoy-auth-headers-to-remove` naming what the upstream must not see; the filter's own
//! reply (status, challenge, registry error body) for a refusal; `200` with [`ANSWER_HEADER`]
//! for content the gate answers itself (catalog, search, `/v1/_ping`), which Envoy then routes
//! to [`ExtAuthz::answer`]. It must never decide anything itself: every rule is the gate's.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use axum::http::HeaderMap;
use registry_gate_core::config::Settings;
use registry_gate_core::fetch::Announcement;
use registry_gate_core::gate::{Forward, Gate, RequestHead, Verdict};
use registry_gate_core::refusal::Outcome;
use registry_gate_core::reply::{self, Code, Reply};
use tokio::sync::watch;

use crate::cache::{Cache, Current, View};
use crate::metrics::Metrics;
use crate::publisher::unix_seconds;
use crate::state::stopping;

/// Path prefix of check requests (`http_service.path_prefix`): Envoy asks about
/// `<prefix><original path>`.
pub const CHECK_PREFIX: &str = "/ext_authz";
/// Path prefix under which Envoy sends a request whose content the gate answers (the
/// answer route's `prefix_rewrite`). Never a prefix of a check path: those continue with `/`.
pub const ANSWER_PREFIX: &str = "/ext_authz_answer";
/// Upstream header of an allowed check meaning "the gate answers this one": Envoy's answer
/// route sends such requests to [`ANSWER_PREFIX`]. Removed from every forwarded request, so
/// a client cannot steer a request there by sending it.
pub const ANSWER_HEADER: &str = "x-registry-gate-answer";
/// Check-request header carrying the subject DN of the downstream connection's verified
/// client certificate (`%DOWNSTREAM_PEER_SUBJECT%`, added by Envoy to the check request and to
/// the answer route), read only with `client_certificate_from_connection`.
pub const PEER_SUBJECT_HEADER: &str = "x-registry-gate-peer-subject";
/// Envoy's `http_service` header listing request headers to remove before forwarding.
pub const HEADERS_TO_REMOVE: &str = "x-envoy-auth-headers-to-remove";
/// How often the installed generation is confirmed while the view still holds it.
pub const CONFIRM_INTERVAL: Duration = Duration::from_secs(1);
/// Deciding gates at most (one per CPU up to this).
pub const SHARDS: usize = 16;

/// The check endpoint's gates.
#[derive(Debug)]
pub struct ExtAuthz {
    /// Fed by [`feed`]; never decides a request.
    source: Mutex<Gate>,
    /// The deciding gates, each adopting `source`; a request locks one.
    shards: Box<[Mutex<Gate>]>,
    /// Spreads requests without `Authorization` over the shards.
    next: AtomicUsize,
    /// `settings.identity_header` (lower case).
    identity_header: String,
    /// `settings.client_certificate_header` (lower case), if configured.
    certificate_header: Option<String>,
}

/// What a check came to, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// The gate's outcome.
    Gate(Outcome),
    /// The gate forwarded a Flatpak index request, whose answer must be filtered: ext_authz
    /// cannot rewrite a response body, so it is refused instead.
    FlatpakIndex,
}

impl Checked {
    pub fn label(self) -> &'static str {
        match self {
            Checked::Gate(outcome) => outcome.as_str(),
            Checked::FlatpakIndex => "flatpak_index_refused",
        }
    }
}

impl ExtAuthz {
    /// Gates over `settings` (the filter's configuration document): one deciding gate per
    /// CPU, at most [`SHARDS`].
    pub fn new(settings: Settings) -> ExtAuthz {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        ExtAuthz::with_shards(settings, cpus.clamp(1, SHARDS))
    }

    /// [`ExtAuthz::new`] with `shards` deciding gates (at least one).
    pub fn with_shards(settings: Settings, shards: usize) -> ExtAuthz {
        ExtAuthz {
            identity_header: settings.identity_header.clone(),
            certificate_header: settings.client_certificate_header.clone(),
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(Gate::new(settings.clone())))
                .collect(),
            source: Mutex::new(Gate::new(settings)),
            next: AtomicUsize::new(0),
        }
    }

    /// The generation the deciding gates decide from, if any.
    pub fn generation(&self) -> Option<u64> {
        lock(&self.source).generation().map(|g| g.number)
    }

    /// Offers the view's generation `current`, confirmed at unix second `now`: decoded by the
    /// source gate if it is new to it (CPU-bound: call from a blocking context), then adopted
    /// by every deciding gate. Returns the generation newly installed, if any.
    pub fn offer(&self, current: &Current, now: u64) -> Option<u64> {
        let announcement = Announcement {
            epoch: current.stamp.epoch.clone(),
            generation: current.stamp.generation,
            confirmed_at: now,
            // The check verifies the signature and validates in full itself.
            checksum: None,
        };
        let mut source = lock(&self.source);
        let mut installed = None;
        if source.announced(&announcement) {
            match source.offer(current.body.to_vec(), &announcement) {
                Ok(generation) => {
                    tracing::info!(%generation, "ext_authz: installed snapshot generation");
                    installed = Some(generation.number);
                }
                Err(error) => {
                    tracing::warn!(%error, generation = current.stamp.generation, "ext_authz: snapshot refused");
                }
            }
        }
        for shard in &*self.shards {
            lock(shard).adopt(&source);
        }
        installed
    }

    /// Decides the request Envoy asks about: `method` and `path` as the client sent them
    /// (after Envoy's normalization), `headers` as the check request carries them. The
    /// answer for Envoy, and what it came to.
    pub fn check(
        &self,
        method: &[u8],
        path: &[u8],
        headers: &HeaderMap,
        now: u64,
    ) -> (Reply, Checked) {
        self.decide(
            method,
            path,
            headers,
            now,
            |verdict, identity_header, certificate_header| match verdict {
                Verdict::Forward(forward) => {
                    forwarded(&forward, identity_header, certificate_header)
                }
                Verdict::Respond { reply, outcome, .. } => responded(reply, outcome),
            },
        )
    }

    /// Answers a request the check sent to the answer route (catalog, search, `/v1/_ping`):
    /// decided again, by the same gate, from the request as it reached the sidecar, so a
    /// request that was not the check's to answer gets nothing here. The reply for the
    /// client, and what it came to.
    pub fn answer(
        &self,
        method: &[u8],
        path: &[u8],
        headers: &HeaderMap,
        now: u64,
    ) -> (Reply, Checked) {
        self.decide(method, path, headers, now, |verdict, _, _| match verdict {
            Verdict::Respond { reply, outcome, .. } => (reply, Checked::Gate(outcome)),
            // Never reached through Envoy (a forwarded request carries no answer header);
            // from anywhere else it is no request to answer.
            Verdict::Forward(_) => (
                reply::error(404, Code::NotFound, "not found", None),
                Checked::Gate(Outcome::NotFound),
            ),
        })
    }

    fn decide<T>(
        &self,
        method: &[u8],
        path: &[u8],
        headers: &HeaderMap,
        now: u64,
        then: impl FnOnce(Verdict<'_>, &str, Option<&str>) -> T,
    ) -> T {
        let pairs = [(&b":method"[..], method), (&b":path"[..], path)]
            .into_iter()
            .chain(
                headers
                    .iter()
                    .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes())),
            );
        let mut head = RequestHead::from_pairs_with(
            pairs,
            &self.identity_header,
            self.certificate_header.as_deref(),
        );
        let mut gate = lock(self.shard(head.authorization));
        if gate.wants_peer_certificate(&head) {
            head.peer_certificate = headers
                .get(PEER_SUBJECT_HEADER)
                .map(|value| value.as_bytes())
                .filter(|subject| !subject.is_empty());
        }
        let verdict = gate.check(&head, now);
        then(
            verdict,
            &self.identity_header,
            self.certificate_header.as_deref(),
        )
    }

    /// The deciding gate for a request: by its token (the requests of one pull meet one
    /// token cache), else in turn.
    fn shard(&self, authorization: Option<&[u8]>) -> &Mutex<Gate> {
        let spread = match authorization {
            // The token's last bytes are its signature: as good as random.
            Some(value) if !value.is_empty() => {
                value.iter().rev().take(16).fold(0_usize, |hash, byte| {
                    hash.wrapping_mul(31).wrapping_add(usize::from(*byte))
                })
            }
            _ => self.next.fetch_add(1, Ordering::Relaxed),
        };
        let index = spread % self.shards.len().max(1);
        // `index` is below the length (never zero: `with_shards` makes at least one).
        self.shards.get(index).unwrap_or(&self.source)
    }
}

/// A gate's lock, even if a panicking holder poisoned it (a gate is consistent between calls).
fn lock(gate: &Mutex<Gate>) -> MutexGuard<'_, Gate> {
    gate.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `200` for Envoy to forward the request: the identity header set (replacing every client
/// copy: Envoy sets `allowed_upstream_headers` by replacing), and the headers the upstream
/// must not see removed. A Flatpak index request, whose answer the filter cuts down to the
/// caller's repositories, is refused instead: ext_authz cannot rewrite a response body, and
/// the unfiltered index would list every repository.
fn forwarded(
    forward: &Forward<'_>,
    identity_header: &str,
    certificate_header: Option<&str>,
) -> (Reply, Checked) {
    if forward.filter_for.is_some() {
        let reply = reply::error(
            403,
            Code::Unsupported,
            "the Flatpak index is not served in ext_authz mode (it must be filtered per caller, which needs the registry-gate filter)",
            None,
        );
        return (reply, Checked::FlatpakIndex);
    }
    let mut remove = vec![ANSWER_HEADER];
    if forward.remove_authorization {
        remove.push("authorization");
    }
    if let (true, Some(header)) = (forward.remove_client_certificate_header, certificate_header) {
        remove.push(header);
    }
    let reply = Reply {
        status: 200,
        headers: vec![
            (
                identity_header.to_owned(),
                forward.identity.clone().into_owned(),
            ),
            (HEADERS_TO_REMOVE.to_owned(), remove.join(",")),
        ],
        body: String::new(),
    };
    (reply, Checked::Gate(Outcome::Allowed))
}

/// The gate's reply for a refusal, as is (Envoy passes a non-`200` check answer to the
/// client with its body); content the gate answers (`200`) goes to the answer route.
fn responded(reply: Reply, outcome: Outcome) -> (Reply, Checked) {
    if reply.status != 200 {
        return (reply, Checked::Gate(outcome));
    }
    let reply = Reply {
        status: 200,
        headers: vec![(ANSWER_HEADER.to_owned(), "1".to_owned())],
        body: String::new(),
    };
    (reply, Checked::Gate(outcome))
}

/// Keeps `ext_authz`'s gates in step with the cache's view until `shutdown`: each new
/// generation is offered (decoded in a blocking task) as soon as the view changes, and the
/// installed one confirmed every [`CONFIRM_INTERVAL`] while the view holds it.
pub async fn feed(
    ext_authz: Arc<ExtAuthz>,
    cache: Arc<Cache>,
    max_store_silence: Duration,
    clock: fn() -> SystemTime,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut changes = cache.subscribe();
    let mut ticker = tokio::time::interval(CONFIRM_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let view = changes.borrow_and_update().clone();
        // A view the store has not confirmed lately is not confirmed to the gates either:
        // they age towards `max_staleness_secs` as a fetcher's would.
        let heard = cache
            .since_last_read()
            .is_some_and(|silence| silence <= max_store_silence);
        if let (View::Ready(current), true) = (view, heard) {
            let gates = Arc::clone(&ext_authz);
            let now = unix_seconds(clock());
            match tokio::task::spawn_blocking(move || gates.offer(&current, now)).await {
                Ok(Some(generation)) => metrics.ext_authz_generation(generation),
                Ok(None) => {}
                Err(error) => tracing::error!(%error, "ext_authz: offering a snapshot failed"),
            }
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { break },
            _ = ticker.tick() => {}
            () = stopping(&mut shutdown) => break,
        }
    }
}

#[cfg(test)]
mod tests;
