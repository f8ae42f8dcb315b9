//! The gate: the whole per-request procedure of one worker as one object with plain data in
//! and out, so every rule is tested natively without Envoy.
//!
//! [`Gate::check`] takes the request head (bytes as the client sent them) and the time, and
//! returns a [`Verdict`]: forward, with the identity header to set and the headers to strip,
//! or answer with a reply and its [`Outcome`]. [`Gate::announced`] and [`Gate::offer`] feed it
//! snapshots: it installs a generation only if it decodes and validates (the same
//! [`snapshot::decode`] the sidecar and the fetcher use) and is newer, and it measures
//! staleness from the confirmations of the generation it actually installed. It never
//! performs I/O and never reads the clock: the glue moves bytes and passes the time in.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::certificate::host_from_subject;
use crate::config::{CertificateSource, Settings};
use crate::decision::{decide, may_list, request_scope, Decision, Facts};
use crate::fetch::Announcement;
use crate::flatpak::{self, FlatpakError, Plan};
use crate::generation::Generation;
use crate::identity::{credential, Credential, Identity, Principal, ANONYMOUS_LABEL};
use crate::index::Index;
use crate::refusal::{HeadError, Outcome, Refusal};
use crate::reply::Reply;
use crate::route::{parse_request, RegistryRequest, Route};
use crate::signature::{Path, RustOnly, SignatureHost};
use crate::snapshot::{self, Held, SnapshotError};
use crate::token::{verify_using, Algorithm, Expiring, KeyRing, TokenCache, TokenError, Verified};

/// Request headers clients use to make an upstream act on another method than the one the
/// gate decided on (`X-HTTP-Method-Override` and friends). A request carrying one is refused.
pub const METHOD_OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// The parts of a request head the gate reads, as the client sent them (bytes: nothing here
/// has been checked to be text).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestHead<'a> {
    pub method: Option<&'a [u8]>,
    pub path: Option<&'a [u8]>,
    pub authorization: Option<&'a [u8]>,
    /// More than one `Authorization` header: never a valid credential.
    pub repeated_authorization: bool,
    /// `Docker-Distribution-API-Version`.
    pub api_version: Option<&'a [u8]>,
    /// The first method-override header present, by its lower-case name.
    pub method_override: Option<&'static str>,
    /// Whether the client sent its own copy of the identity header.
    pub identity_header: bool,
    /// The first header spelled like the identity or client-certificate header but for case
    /// or `_` for `-` (which of the two it imitates).
    pub lookalike: Option<&'static str>,
    /// The configured `client_certificate_header` (a front proxy's verified subject DN, or a
    /// client's forgery: only the settings say which).
    pub client_certificate_header: Option<&'a [u8]>,
    /// More than one `client_certificate_header`: never a certificate.
    pub repeated_client_certificate_header: bool,
    /// The subject DN of the connection's verified client certificate
    /// (`connection.subject_peer_certificate`), when the glue read it because
    /// [`Gate::wants_peer_certificate`] said so.
    pub peer_certificate: Option<&'a [u8]>,
}

impl<'a> RequestHead<'a> {
    /// Picks the fields out of a header map given as (lower-case name, value) byte pairs, as
    /// Envoy hands them over in one call.
    pub fn from_pairs<I>(pairs: I, identity_header: &str) -> RequestHead<'a>
    where
        I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
    {
        RequestHead::from_pairs_with(pairs, identity_header, None)
    }

    /// [`RequestHead::from_pairs`], also picking out the (lower-case) client-certificate
    /// header when one is configured.
    pub fn from_pairs_with<I>(
        pairs: I,
        identity_header: &str,
        certificate_header: Option<&str>,
    ) -> RequestHead<'a>
    where
        I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
    {
        let certificate_header = certificate_header.map(str::as_bytes);
        let mut head = RequestHead::default();
        for (name, value) in pairs {
            match name {
                b":method" => head.method = Some(value),
                b":path" => head.path = Some(value),
                b"authorization" => {
                    head.repeated_authorization |= head.authorization.is_some();
                    head.authorization = Some(value);
                }
                b"docker-distribution-api-version" => head.api_version = Some(value),
                name if name == identity_header.as_bytes() => head.identity_header = true,
                name if Some(name) == certificate_header => {
                    head.repeated_client_certificate_header |=
                        head.client_certificate_header.is_some();
                    head.client_certificate_header = Some(value);
                }
                name => {
                    if head.method_override.is_none() {
                        head.method_override = METHOD_OVERRIDE_HEADERS
                            .into_iter()
                            .find(|header| same_spelling(name, header.as_bytes()));
                    }
                    if head.lookalike.is_none() {
                        head.lookalike = if same_spelling(name, identity_header.as_bytes()) {
                            Some("identity header")
                        } else if certificate_header
                            .is_some_and(|header| same_spelling(name, header))
                        {
                            Some("client certificate header")
                        } else {
                            None
                        };
                    }
                }
            }
        }
        head
    }
}

/// Whether two header names are the same once case is ignored and `_` is read as `-`, as
/// CGI, WSGI and gunicorn fold them.
fn same_spelling(name: &[u8], header: &[u8]) -> bool {
    let fold = |b: &u8| match b {
        b'_' => b'-',
        b => b.to_ascii_lowercase(),
    };
    name.len() == header.len() && name.iter().map(fold).eq(header.iter().map(fold))
}

/// What the glue must do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<'g> {
    Forward(Forward<'g>),
    /// Answer locally; nothing reaches the upstream.
    Respond {
        reply: Reply,
        outcome: Outcome,
        /// The verified caller's label (`user:<name>`, `host:<uuid>`, `anonymous`) when the
        /// refusal came after the caller was established (no grant, a write refused), for the
        /// access log; `None` when the request was refused before (bad token, no snapshot).
        identity: Option<String>,
    },
}

/// How to forward a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward<'g> {
    /// Value of the identity header to set (`user:<name>`, `host:<uuid>`, `anonymous`);
    /// borrowed from the token cache on the steady path.
    pub identity: Cow<'g, str>,
    /// The client sent its own identity header: remove it before setting ours (setting
    /// replaces a single copy, but removing first also drops repeated ones).
    pub remove_identity: bool,
    /// Remove the client's `Authorization` header (it must not reach the upstream), unless
    /// configured to forward it or to leave its removal to the route.
    pub remove_authorization: bool,
    /// The client (or the front proxy) sent the configured `client_certificate_header`:
    /// remove every copy, trusted or not, so the upstream never sees one.
    pub remove_client_certificate_header: bool,
    /// The Flatpak index: the caller whose repositories the upstream's answer must be cut
    /// down to ([`Gate::flatpak_response_head`], [`Gate::flatpak_buffered`],
    /// [`Gate::filter_flatpak_index`]). The glue also removes
    /// [`FLATPAK_INDEX_REQUEST_HEADERS`] so the answer comes whole and plain.
    pub filter_for: Option<Identity>,
}

/// Request headers removed from a Flatpak index request: the body must come unencoded (to be
/// read) and whole (a `304` or a range would leave the client with bytes not filtered for
/// it).
pub const FLATPAK_INDEX_REQUEST_HEADERS: [&str; 5] = [
    "accept-encoding",
    "if-none-match",
    "if-modified-since",
    "range",
    "if-range",
];

/// Response headers removed from a Flatpak index answer that has no body to filter (`HEAD`):
/// they describe the unfiltered body. An answer with a body is replaced whole.
pub const FLATPAK_INDEX_RESPONSE_HEADERS: [&str; 4] =
    ["content-length", "etag", "last-modified", "content-md5"];

/// A caller established from one verified token, cached until the token expires.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Caller {
    identity: Identity,
    /// `identity.principal.label()`, computed once: sent upstream on every request.
    label: String,
    expires_at: u64,
    /// The token's `iat`, held against the snapshot's `min_token_iat` on every request.
    issued_at: Option<u64>,
}

impl Caller {
    /// The caller a verified token establishes. It stays valid as long as verification
    /// would: until `exp` plus the leeway.
    fn new(verified: Verified, leeway_secs: u64) -> Caller {
        let principal = if verified.subject.is_empty() {
            Principal::Anonymous
        } else {
            Principal::User(verified.subject)
        };
        Caller {
            label: principal.label(),
            identity: Identity {
                principal,
                access: verified.access,
                credentialed: true,
            },
            expires_at: verified.expires_at.saturating_add(leeway_secs),
            issued_at: verified.issued_at,
        }
    }
}

impl Expiring for Caller {
    fn expires_at(&self) -> u64 {
        self.expires_at
    }
}

/// The snapshot the gate decides from.
#[derive(Debug)]
struct Installed {
    held: Held,
    published_at: u64,
    index: Index,
    /// Static keys ∪ the snapshot's keys.
    keys: KeyRing,
    /// Names `keys` in [`SharedCallers`]: unique in the process, kept while the keys stay
    /// the same from one snapshot to the next.
    ring: u64,
    /// `content.min_token_iat`: tokens issued before it are refused.
    min_token_iat: Option<u64>,
}

/// Counters the glue turns into stats. They only grow; the glue reports differences.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// By [`Outcome::position`].
    pub outcomes: [u64; Outcome::ALL.len()],
    /// By [`TokenError::reason`].
    pub token_failures: Vec<(&'static str, u64)>,
    /// Client-certificate subjects that named no host, by
    /// [`crate::certificate::CertificateError::reason`] (a front proxy sending another DN
    /// format shows here, not as silent anonymity).
    pub certificate_failures: Vec<(&'static str, u64)>,
    pub installed: u64,
    /// By [`SnapshotError::reason`].
    pub rejected: Vec<(&'static str, u64)>,
    /// Flatpak index answers: `filtered`, `passed_through`, or a [`FlatpakError::reason`].
    pub flatpak_index: Vec<(&'static str, u64)>,
    /// Signatures checked, by [`signature_stat`]: algorithm and where (`host`, `wasm`).
    pub signatures: Vec<(&'static str, u64)>,
    /// Tokens this gate's own cache missed that another gate of the process had verified
    /// ([`Gate::share_callers`]).
    pub shared_callers: u64,
}

/// The counter of a signature checked with `alg` along `path`, e.g. `es256_host`.
pub fn signature_stat(alg: Algorithm, path: Path) -> &'static str {
    match (alg, path) {
        (Algorithm::EdDSA, Path::Host) => "eddsa_host",
        (Algorithm::EdDSA, Path::Wasm) => "eddsa_wasm",
        (Algorithm::ES256, Path::Host) => "es256_host",
        (Algorithm::ES256, Path::Wasm) => "es256_wasm",
        (Algorithm::RS256, Path::Host) => "rs256_host",
        (Algorithm::RS256, Path::Wasm) => "rs256_wasm",
        (Algorithm::HS256, Path::Host) => "hs256_host",
        (Algorithm::HS256, Path::Wasm) => "hs256_wasm",
    }
}

fn bump(counters: &mut Vec<(&'static str, u64)>, reason: &'static str) {
    match counters.iter_mut().find(|(name, _)| *name == reason) {
        Some((_, count)) => *count = count.saturating_add(1),
        None => counters.push((reason, 1)),
    }
}

/// One worker's gate.
#[derive(Debug)]
pub struct Gate {
    settings: Settings,
    /// Shared, so that gates with the same settings can decide from one decoded snapshot
    /// ([`Gate::adopt`]).
    installed: Option<Arc<Installed>>,
    /// Unix seconds of the last confirmation of exactly the installed generation.
    confirmed_at: u64,
    /// The generation last refused, so the same bad bytes are not decoded on every tick.
    refused: Option<Generation>,
    callers: TokenCache<Caller>,
    /// Behind `callers`, the callers other gates of this process verified, if shared.
    shared: Option<Arc<SharedCallers>>,
    counts: Counts,
    /// Checks signatures where it can ([`Gate::set_signature_host`]); Rust otherwise.
    host: Box<dyn SignatureHost>,
}

impl Gate {
    pub fn new(settings: Settings) -> Gate {
        Gate {
            callers: TokenCache::new(settings.token_cache_entries),
            shared: None,
            settings,
            installed: None,
            confirmed_at: 0,
            refused: None,
            counts: Counts::default(),
            host: Box::new(RustOnly),
        }
    }

    /// Signatures are checked by `host` from now on, for the algorithms it takes.
    pub fn set_signature_host(&mut self, host: Box<dyn SignatureHost>) {
        self.host = host;
    }

    /// From now on a token this gate's own cache misses is looked up in `shared` before it
    /// is verified, and one it verifies is added there: for gates deciding from one snapshot
    /// ([`Gate::adopt`]) on several threads.
    pub fn share_callers(&mut self, shared: Arc<SharedCallers>) {
        self.shared = Some(shared);
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// The installed generation, if any.
    pub fn generation(&self) -> Option<&Generation> {
        self.installed.as_deref().map(|i| &i.held.generation)
    }

    /// Seconds since the installed snapshot was published.
    pub fn age_secs(&self, now: u64) -> Option<u64> {
        self.installed
            .as_ref()
            .map(|i| now.saturating_sub(i.published_at))
    }

    /// Seconds since the installed generation was last confirmed.
    pub fn unconfirmed_secs(&self, now: u64) -> u64 {
        now.saturating_sub(self.confirmed_at)
    }

    /// Takes note of the fetcher's announcement. Returns whether the announced generation is
    /// one to [`Gate::offer`] (newer than the installed one and not already refused); a
    /// confirmation counts only for the generation installed.
    pub fn announced(&mut self, announcement: &Announcement) -> bool {
        let announced = announcement.generation();
        if let Some(installed) = self.generation() {
            if *installed == announced {
                self.confirmed_at = self.confirmed_at.max(announcement.confirmed_at);
                return false;
            }
            if !announced.supersedes(installed) {
                // Already past it (the bytes were read ahead of their announcement).
                return false;
            }
        }
        self.refused.as_ref() != Some(&announced)
    }

    /// Offers the snapshot bytes the fetcher announced with `announcement`. Installs them if
    /// they are signed by a configured publisher (when [`Settings::publisher_keys`] names
    /// any: otherwise the fetcher checked), validate and are newer than what is installed;
    /// otherwise the installed snapshot keeps serving and the refusal is counted.
    pub fn offer(
        &mut self,
        bytes: Vec<u8>,
        announcement: &Announcement,
    ) -> Result<Generation, SnapshotError> {
        match self.install(bytes, announcement) {
            Ok(generation) => {
                self.counts.installed = self.counts.installed.saturating_add(1);
                self.refused = None;
                Ok(generation)
            }
            Err(err) => {
                bump(&mut self.counts.rejected, err.reason());
                self.refused = Some(announcement.generation());
                Err(err)
            }
        }
    }

    fn install(
        &mut self,
        bytes: Vec<u8>,
        announcement: &Announcement,
    ) -> Result<Generation, SnapshotError> {
        // The checksum the bytes carry (recomputed by either open below).
        let carried = registry_gate_index::layout::carried_checksum(&bytes);
        let opened = match announcement.checksum {
            // The fetcher validated these bytes in full and named them: check that these are
            // they, and their shape (a worker's install then costs little more than the
            // checksum), unless this gate checks signatures itself. Bytes the announcement
            // does not name (shared data moved on between the two reads) are checked in full.
            Some(named) if carried == Some(named) && self.settings.publisher_keys.is_empty() => {
                snapshot::open_known(bytes, named)?
            }
            _ => {
                if !self.settings.publisher_keys.is_empty() {
                    registry_gate_index::verify(&bytes, &self.settings.publisher_keys)?;
                }
                snapshot::open(bytes)?
            }
        };
        let held = Held::of(opened.index.stored());
        snapshot::admit(self.installed.as_deref().map(|i| &i.held), &held)?;
        let generation = held.generation.clone();
        // Operator-configured keys win over a snapshot key of the same kid: the snapshot
        // cannot replace a key the configuration pins.
        let keys = self
            .settings
            .static_keys
            .merge_preferring_self(&opened.keys);
        let ring = match self.installed.as_deref() {
            Some(installed) if installed.keys == keys => installed.ring,
            _ => {
                self.callers.clear();
                RINGS.fetch_add(1, Ordering::Relaxed)
            }
        };
        // Usually the announcement names these very bytes. If shared data moved on between
        // the two reads, the bytes are a newer generation the fetcher fetched after that
        // confirmation, so they are at least that fresh; the next tick reads their own.
        self.confirmed_at = announcement.confirmed_at;
        let stored = opened.index.stored();
        self.installed = Some(Arc::new(Installed {
            published_at: stored.published_at(),
            min_token_iat: stored.min_token_iat(),
            held,
            index: opened.index,
            keys,
            ring,
        }));
        Ok(generation)
    }

    /// Takes over the snapshot `source` has installed, and its confirmation, sharing the
    /// decoded index instead of decoding the bytes again: for a host that decides with
    /// several gates over one snapshot (each with its own token cache), of which one is fed
    /// by [`Gate::announced`] and [`Gate::offer`]. `source` must have been built from the same
    /// settings (its key ring merges this gate's configured keys). Cached callers are dropped
    /// when the key ring changes, as on [`Gate::offer`]. Returns whether a different snapshot
    /// was taken over.
    pub fn adopt(&mut self, source: &Gate) -> bool {
        let Some(theirs) = &source.installed else {
            return false;
        };
        self.confirmed_at = source.confirmed_at;
        if self
            .installed
            .as_ref()
            .is_some_and(|mine| Arc::ptr_eq(mine, theirs))
        {
            return false;
        }
        if self
            .installed
            .as_ref()
            .is_some_and(|mine| mine.keys != theirs.keys)
        {
            self.callers.clear();
        }
        self.installed = Some(Arc::clone(theirs));
        self.counts.installed = self.counts.installed.saturating_add(1);
        true
    }

    /// Whether requests can be decided at `now`: `Ok`, or the refusal every request gets
    /// (no snapshot yet, or the installed one is stale).
    pub fn readiness(&self, now: u64) -> Result<(), Refusal> {
        ready(
            self.installed.as_deref(),
            self.confirmed_at,
            &self.settings,
            now,
        )
        .map(|_| ())
    }

    /// Decides one request at unix second `now`.
    pub fn check(&mut self, head: &RequestHead<'_>, now: u64) -> Verdict<'_> {
        let Gate {
            settings,
            installed,
            confirmed_at,
            callers,
            shared,
            counts,
            host,
            ..
        } = self;
        let request = Request {
            settings,
            shared: shared.as_deref(),
            shared_hits: &mut counts.shared_callers,
            installed: installed.as_deref(),
            confirmed_at: *confirmed_at,
            token_failures: &mut counts.token_failures,
            certificate_failures: &mut counts.certificate_failures,
            host: host.as_mut(),
            signatures: &mut counts.signatures,
        };
        let (verdict, outcome) = match request.run(callers, head, now) {
            Ok(forward) => (Verdict::Forward(forward), Outcome::Allowed),
            Err(Answer::Content(reply)) => (
                Verdict::Respond {
                    reply,
                    outcome: Outcome::Answered,
                    identity: None,
                },
                Outcome::Answered,
            ),
            Err(Answer::Refused { refusal, identity }) => {
                let outcome = refusal.outcome();
                let reply = refusal.reply(&settings.policy.challenge, settings.retry_after_secs);
                let verdict = Verdict::Respond {
                    reply,
                    outcome,
                    identity,
                };
                (verdict, outcome)
            }
        };
        if let Some(count) = counts.outcomes.get_mut(outcome.position()) {
            *count = count.saturating_add(1);
        }
        verdict
    }

    /// Whether the glue should read the connection's verified client certificate subject into
    /// [`RequestHead::peer_certificate`]: only when configured and only for requests without
    /// `Authorization` (a token decides when present), so token requests cost no host call
    /// more.
    pub fn wants_peer_certificate(&self, head: &RequestHead<'_>) -> bool {
        self.settings.client_certificate == CertificateSource::Connection
            && head.authorization.is_none()
    }

    /// Records that the glue could not carry out a verdict, and what to answer instead.
    pub fn internal_error(&mut self, what: &'static str) -> Reply {
        let refusal = Refusal::Internal(what);
        if let Some(count) = self.counts.outcomes.get_mut(refusal.outcome().position()) {
            *count = count.saturating_add(1);
        }
        refusal.reply(
            &self.settings.policy.challenge,
            self.settings.retry_after_secs,
        )
    }
}

impl Gate {
    /// The upstream's response head to a forwarded Flatpak index request (`:status`,
    /// `Content-Encoding`, and the length its `Content-Length` declares, read by
    /// [`flatpak::declared_length`]): pass it through or buffer and filter it, or the reply
    /// to send instead. A declared length over the bound is refused before any of the body
    /// is buffered.
    pub fn flatpak_response_head(
        &mut self,
        status: Option<&[u8]>,
        content_encoding: Option<&[u8]>,
        declared_length: Option<usize>,
    ) -> Result<Plan, Reply> {
        match flatpak::plan(status, content_encoding) {
            Ok(Plan::PassThrough) => {
                bump(&mut self.counts.flatpak_index, "passed_through");
                Ok(Plan::PassThrough)
            }
            Ok(Plan::Filter) => match declared_length {
                Some(length) => self.flatpak_buffered(length).map(|()| Plan::Filter),
                None => Ok(Plan::Filter),
            },
            Err(error) => Err(self.flatpak_refused(&error)),
        }
    }

    /// Checks the size of the Flatpak index buffered so far against the configured bound.
    pub fn flatpak_buffered(&mut self, size: usize) -> Result<(), Reply> {
        let limit = self.settings.flatpak_index_max_bytes;
        if size > limit {
            return Err(self.flatpak_refused(&FlatpakError::TooLarge { limit }));
        }
        Ok(())
    }

    /// The reply that replaces the upstream's answer to a Flatpak index request: the whole
    /// index `body` cut down to what `caller` may list by the snapshot installed now, with
    /// the upstream's [`flatpak::KEPT_HEADERS`] among `upstream_headers`; or, instead, 503 if
    /// no snapshot is fit to decide from and 502 if the body is no index. Never the body
    /// unfiltered.
    pub fn filter_flatpak_index<'h>(
        &mut self,
        caller: &Identity,
        body: &[u8],
        upstream_headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
        now: u64,
    ) -> Reply {
        let installed = match ready(
            self.installed.as_deref(),
            self.confirmed_at,
            &self.settings,
            now,
        ) {
            Ok(installed) => installed,
            Err(refusal) => {
                bump(&mut self.counts.flatpak_index, "unready");
                return refusal.reply(
                    &self.settings.policy.challenge,
                    self.settings.retry_after_secs,
                );
            }
        };
        let policy = &self.settings.policy;
        let filtered = flatpak::filtered_reply(
            body,
            self.settings.flatpak_index_max_bytes,
            |name| may_list(&installed.index, policy, caller, name),
            upstream_headers,
        );
        match filtered {
            Ok(reply) => {
                bump(&mut self.counts.flatpak_index, "filtered");
                reply
            }
            Err(error) => self.flatpak_refused(&error),
        }
    }

    /// The reply to a Flatpak index answer that would take the answers held at once past
    /// `flatpak_buffer_budget_bytes`: 503 with `Retry-After`, counted `over_budget`.
    pub fn flatpak_over_budget(&mut self) -> Reply {
        let budget = self.settings.flatpak_buffer_budget_bytes;
        self.flatpak_refused(&FlatpakError::OverBudget { budget })
    }

    fn flatpak_refused(&mut self, error: &FlatpakError) -> Reply {
        bump(&mut self.counts.flatpak_index, error.reason());
        error.reply(self.settings.retry_after_secs)
    }
}

/// The parts of a gate one request reads, borrowed apart from the token cache so that the
/// forwarded identity can borrow from the cache while the outcome is counted.
struct Request<'g> {
    settings: &'g Settings,
    shared: Option<&'g SharedCallers>,
    shared_hits: &'g mut u64,
    installed: Option<&'g Installed>,
    confirmed_at: u64,
    token_failures: &'g mut Vec<(&'static str, u64)>,
    certificate_failures: &'g mut Vec<(&'static str, u64)>,
    host: &'g mut dyn SignatureHost,
    signatures: &'g mut Vec<(&'static str, u64)>,
}

impl<'g> Request<'g> {
    fn run(
        mut self,
        callers: &'g mut TokenCache<Caller>,
        head: &RequestHead<'_>,
        now: u64,
    ) -> Result<Forward<'g>, Answer> {
        let method = text(head.method, ":method")?;
        let path = text(head.path, ":path")?;
        let request = parse_request(method, path).map_err(Refusal::Route)?;
        if let Some(header) = head.method_override {
            return Err(Refusal::Head(HeadError::MethodOverride(header)).into());
        }
        if let Some(header) = head.lookalike {
            return Err(Refusal::Head(HeadError::Lookalike(header)).into());
        }
        let remove_identity = head.identity_header;
        let remove_client_certificate_header = head.client_certificate_header.is_some();
        if request.route == Route::Token {
            // A login: its credentials go to the token endpoint untouched.
            return Ok(Forward {
                identity: Cow::Borrowed(ANONYMOUS_LABEL),
                remove_identity,
                remove_authorization: false,
                remove_client_certificate_header,
                filter_for: None,
            });
        }
        let installed = ready(self.installed, self.confirmed_at, self.settings, now)?;
        let anonymous = Identity::anonymous();
        let credential = if head.repeated_authorization {
            Credential::Invalid
        } else {
            credential(head.authorization)
        };
        let caller = match credential {
            // No token: a verified client certificate may name a content host. Never cached
            // (nothing to verify: Envoy or the front proxy did), so `expires_at` is moot.
            Credential::None => self.host(head).map(|host| {
                Cow::Owned(Caller {
                    label: host.label(),
                    identity: Identity {
                        principal: host,
                        access: None,
                        credentialed: true,
                    },
                    expires_at: now,
                    // Not a token: `min_token_iat` does not apply.
                    issued_at: None,
                })
            }),
            // Clients logged in with `docker login` send Basic credentials to `/v1/search`;
            // that endpoint serves the anonymous view (the token endpoint is the only place a
            // password is checked).
            Credential::Basic if matches!(request.route, Route::V1Search { .. }) => None,
            Credential::Basic | Credential::Invalid => {
                return Err(self.token_refusal(&request, TokenError::BadFormat));
            }
            Credential::Bearer(token) => {
                let hash = callers.hash(token);
                let mut fresh = None;
                if callers.get_hashed(hash, token, now).is_none() {
                    let shared = self
                        .shared
                        .and_then(|shared| shared.get(token, installed.ring, now));
                    let caller = match shared {
                        Some(caller) => {
                            *self.shared_hits = self.shared_hits.saturating_add(1);
                            caller
                        }
                        None => {
                            let (verified, checked) = verify_using(
                                &self.settings.verifier,
                                &installed.keys,
                                token,
                                now,
                                self.host,
                            );
                            if let Some((alg, path)) = checked {
                                bump(self.signatures, signature_stat(alg, path));
                            }
                            let verified =
                                verified.map_err(|error| self.token_refusal(&request, error))?;
                            let caller = Caller::new(verified, self.settings.verifier.leeway_secs);
                            if let Some(shared) = self.shared {
                                shared.insert(token, installed.ring, caller.clone(), now);
                            }
                            caller
                        }
                    };
                    callers.insert(token, caller.clone(), now);
                    fresh = Some(caller);
                }
                let callers: &'g TokenCache<Caller> = callers;
                // A token just verified that the cache did not keep (it never happens with a
                // positive capacity, but the decision must not depend on the cache).
                let caller = match (callers.get_hashed(hash, token, now), fresh) {
                    (Some(cached), _) => Cow::Borrowed(cached),
                    (None, Some(fresh)) => Cow::Owned(fresh),
                    (None, None) => return Err(self.token_refusal(&request, TokenError::BadFormat)),
                };
                // Checked on every request, cached or not: a snapshot can revoke at any time.
                if let Some(min) = installed.min_token_iat {
                    if caller.issued_at.is_none_or(|iat| iat < min) {
                        return Err(self.token_refusal(&request, TokenError::Revoked));
                    }
                }
                Some(caller)
            }
        };
        let identity = caller
            .as_deref()
            .map_or(&anonymous, |caller| &caller.identity);
        let facts = Facts {
            v2_client: head
                .api_version
                .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"registry/2.0")),
        };
        let decision = decide(
            &installed.index,
            &self.settings.policy,
            identity,
            &request,
            facts,
        );
        let filter_for = match decision {
            Decision::ForwardFiltered => Some(identity.clone()),
            _ => None,
        };
        match decision {
            Decision::Forward | Decision::ForwardFiltered => Ok(Forward {
                identity: match caller {
                    None => Cow::Borrowed(ANONYMOUS_LABEL),
                    Some(Cow::Borrowed(caller)) => Cow::Borrowed(caller.label.as_str()),
                    Some(Cow::Owned(caller)) => Cow::Owned(caller.label),
                },
                remove_identity,
                remove_authorization: !(self.settings.forward_authorization
                    || self.settings.authorization_removed_by_route),
                remove_client_certificate_header,
                filter_for,
            }),
            Decision::Answer(reply) => Err(Answer::Content(reply)),
            Decision::Refuse(denial) => Err(Answer::Refused {
                refusal: Refusal::Denied(denial),
                identity: Some(
                    caller
                        .map_or_else(|| ANONYMOUS_LABEL.to_owned(), |caller| caller.label.clone()),
                ),
            }),
        }
    }

    /// The content host a verified client certificate names, from the configured source
    /// only. A subject that names no host with certainty (not text, no or several CNs, a CN
    /// that is not a host UUID) is no certificate: the request is anonymous.
    fn host(&mut self, head: &RequestHead<'_>) -> Option<Principal> {
        let subject = match self.settings.client_certificate {
            CertificateSource::None => None,
            CertificateSource::Connection => head.peer_certificate,
            CertificateSource::TrustedHeader if head.repeated_client_certificate_header => None,
            CertificateSource::TrustedHeader => head.client_certificate_header,
        }?;
        match host_from_subject(subject) {
            Ok(host) => Some(Principal::Host(host.to_owned())),
            Err(error) => {
                bump(self.certificate_failures, error.reason());
                None
            }
        }
    }

    fn token_refusal(&mut self, request: &RegistryRequest, error: TokenError) -> Answer {
        bump(self.token_failures, error.reason());
        Refusal::Token {
            error,
            scope: request_scope(request),
        }
        .into()
    }
}

/// How a request ends when it is not forwarded.
enum Answer {
    /// Answered with content (catalog, search, `/v1/_ping`).
    Content(Reply),
    /// Refused, by the caller named when it was known.
    Refused {
        refusal: Refusal,
        identity: Option<String>,
    },
}

impl From<Refusal> for Answer {
    fn from(refusal: Refusal) -> Answer {
        Answer::Refused {
            refusal,
            identity: None,
        }
    }
}

/// The installed snapshot, if there is one and its generation was confirmed within
/// `max_staleness_secs`; otherwise the refusal that says which is missing.
fn ready<'a>(
    installed: Option<&'a Installed>,
    confirmed_at: u64,
    settings: &Settings,
    now: u64,
) -> Result<&'a Installed, Refusal> {
    let installed = installed.ok_or(Refusal::NoSnapshot)?;
    let unconfirmed_secs = now.saturating_sub(confirmed_at);
    if unconfirmed_secs > settings.max_staleness_secs {
        return Err(Refusal::Stale { unconfirmed_secs });
    }
    Ok(installed)
}

/// A pseudo-header as text.
fn text<'a>(value: Option<&'a [u8]>, name: &'static str) -> Result<&'a str, Refusal> {
    let bytes = value.ok_or(Refusal::Head(HeadError::Missing(name)))?;
    core::str::from_utf8(bytes).map_err(|_| Refusal::Head(HeadError::NotText(name)))
}

mod shared;
#[cfg(test)]
mod tests;

pub use shared::SharedCallers;

/// The next key ring's [`Installed::ring`].
static RINGS: AtomicU64 = AtomicU64::new(1);
