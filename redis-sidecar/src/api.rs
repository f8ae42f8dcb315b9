//! The HTTP face: routes, request parsing and the one place ([`ApiError`]'s `IntoResponse`)
//! where failures become statuses.
//!
//! | route | answers |
//! |---|---|
//! | `GET /healthz` | 200 `ok` while the process runs |
//! | `GET /metrics` | 200 Prometheus text exposition (see `metrics`) |
//! | `GET /readyz` | 200 when Redis answers `PING`, else 503 |
//! | `GET /v1/snapshot[?wait=SECS][&schema=M.N]` | read secret (or the sync or admin secret) as bearer, else 401; 200 + `ETag`: the signed index for `schema=2.x`, the 1.x JSON envelope for `1.x` or no `schema`, 406 for another major; 304 only when `If-None-Match` names exactly the current generation (after long-polling up to `wait` while it stays current); 503 + `Retry-After` before the first publish, after a rewound history started a new epoch, when the store was not read for `--max-store-silence-secs`, and at once when `--max-long-poll-waiters` requests already wait |
//! | `PUT /v1/snapshot[?allow_empty=true]` | the sync secret (repositories and grants only: a changed `keys` or `min_token_iat` gets 403) or the admin secret; 200 `{"epoch","generation","changed"}` + `ETag`; 400 bad body, 401, 409 would empty, 412 stale `If-Match`, 413, 503 Redis |
//! | `PUT /container_gateway/<part>[/]` | Katello's sync calls (`katello` submodule): sync secret as bearer, or a TLS client certificate with an allowed CN (403 otherwise); 200 empty body; 400 with the problems, 404 unknown part, 413, 503 Redis |
//! | `GET /container_gateway/users[/]` | same callers; 200 `{"users":[...]}` |
//! | `ANY /ext_authz/<path>` | only with `--ext-authz-config`: Envoy's ext_authz check of the request `<path>` (`ext_authz` module): 200 + identity header + `x-envoy-auth-headers-to-remove` to forward, 200 + `x-registry-gate-answer` for content the gate answers, else the filter's refusal (status, challenge, registry error body) |
//! | `ANY /ext_authz_answer/<path>` | only with `--ext-authz-config`: the gate's content answer (catalog, search, `/v1/_ping`) for a request the check sent here |
//! | `GET /v2/token` | Docker token spec; 200 token, 400 `UNSUPPORTED` (unknown service or malformed scope), 401 `UNAUTHORIZED`, 503 `UNAVAILABLE` + `Retry-After` (no snapshot yet, no bcrypt slot or Katello connection within `--login-queue-timeout-ms`, Katello unreachable or too slow); with Katello: Katello's own 4xx/5xx status with a fixed registry error body, 502 for a malformed Katello answer |
//!
//! Handlers only translate between HTTP and the other modules. They must never leak
//! internals in an error body (internal errors are logged, the client gets a fixed text),
//! never log secrets, and never write to Redis from the token endpoint.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_MATCH, IF_NONE_MATCH,
    RETRY_AFTER, WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use registry_gate_core::generation::{Generation, Preconditions};
use registry_gate_core::identity::Principal;
use registry_gate_core::reply::{self, Code, Reply};
use registry_gate_core::scope::{parse_scopes, ResourceScope};
use registry_gate_core::snapshot::{Content, Schema};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::cache::{Current, View};
use crate::config::Secret;
use crate::katello::KatelloError;
use crate::login::limits::Limited;
use crate::login::{AuthError, LoginRequest};
use crate::metrics::LoginOutcome;
use crate::publisher::{Authority, Precondition, PublishError, Request, Source};
use crate::refresh::Outcome;
use crate::state::{stopping, AppState};
use crate::store::StoreError;
use crate::token::{self, MintError};

mod ext_authz;
mod katello;

/// Seconds a client is told to wait before retrying a 503.
const RETRY_AFTER_SECS: &str = "1";
/// Realm of the Basic challenge on the token endpoint.
const BASIC_REALM: &str = "Basic realm=\"registry-gate\"";
/// Realm of the bearer challenge on the sync endpoints.
const SYNC_REALM: &str = "Bearer realm=\"registry-gate-sync\"";
/// Realm of the bearer challenge on snapshot reads.
const READ_REALM: &str = "Bearer realm=\"registry-gate-snapshot\"";

/// The router. Tests drive it without a socket; `run` serves it.
pub fn router(state: AppState) -> Router {
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/snapshot", get(get_snapshot).put(put_snapshot))
        .route("/v2/token", get(get_token))
        .merge(katello::routes());
    let router = if state.inner.ext_authz.is_some() {
        router.merge(ext_authz::routes())
    } else {
        router
    };
    router.with_state(state)
}

/// Every way a request can fail, mapped to HTTP in exactly one place.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Redis answered, and no snapshot has been published under the current epoch (or the
    /// sidecar has not been able to read one yet).
    #[error("no snapshot published yet")]
    NoSnapshot,
    /// The sidecar has not been able to read Redis since it started.
    #[error("snapshot not loaded yet: the snapshot store has not been reachable")]
    NotLoaded,
    #[error("snapshot store unavailable: {0}")]
    Store(#[from] StoreError),
    #[error("missing or wrong sync bearer secret")]
    SyncUnauthorized,
    #[error("missing or wrong snapshot read bearer secret")]
    ReadUnauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("request body exceeds {0} bytes")]
    PayloadTooLarge(usize),
    #[error("precondition failed: the current generation is not what If-Match or If-None-Match required")]
    PreconditionFailed { current: Option<Generation> },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    NotAcceptable(String),
    /// The store has not been read for longer than `--max-store-silence-secs`.
    #[error("{0}")]
    StoreSilent(String),
    /// Logged in full; the client sees a fixed text.
    #[error("internal error")]
    Internal(String),
    /// Token-endpoint failures, answered in the registry error format.
    #[error(transparent)]
    Token(#[from] TokenFailure),
}

/// Token-endpoint failures (registry error format, `Docker-Distribution-API-Version`).
#[derive(Debug, thiserror::Error)]
pub enum TokenFailure {
    /// 400 `UNSUPPORTED`: the request names a service this server does not issue tokens for.
    #[error("unknown or missing service: this token server issues tokens for {expected:?}")]
    Service { expected: String },
    /// 400 `UNSUPPORTED`: a `scope` parameter does not follow the scope grammar. (The spec
    /// defines no code for a bad token request; `UNSUPPORTED` — "the operation is
    /// unsupported" — is the closest registry code and keeps the body in the registry format.)
    #[error("malformed scope {scope:?}: {reason}")]
    Scope { scope: String, reason: String },
    /// 400 `UNSUPPORTED`: a query parameter is malformed.
    #[error("{0}")]
    Query(String),
    /// 401 `UNAUTHORIZED` + `WWW-Authenticate: Basic`.
    #[error("authentication required: invalid username or password")]
    BadCredentials,
    /// The same 401, for credentials refused a moment ago (not asked again).
    #[error("authentication required: invalid username or password")]
    RememberedRefusal,
    /// 429 `TOOMANYREQUESTS` + `Retry-After`: too many failed logins for this user or from
    /// this address.
    #[error("too many failed logins; try again later")]
    Limited(Limited),
    /// 503 `UNAVAILABLE` + `Retry-After`.
    #[error("no snapshot published yet; try again shortly")]
    NoSnapshot,
    /// 503 `UNAVAILABLE` + `Retry-After`: no bcrypt slot or Katello connection within the
    /// login queue timeout.
    #[error("too many logins in progress; try again shortly")]
    Busy,
    /// 503 `UNAVAILABLE` + `Retry-After`: Katello could not be reached in time; logged.
    #[error("the login service is unreachable; try again shortly")]
    LoginUnreachable(String),
    /// Katello's own error status, passed on with a fixed text: Katello's body may hold
    /// internals (Rails messages, host names), so it is logged by size only, never relayed.
    #[error("the login service refused the request ({status})")]
    LoginStatus { status: u16 },
    /// 502 `UNKNOWN`: Katello's answer could not be read; logged.
    #[error("the login service gave an answer that cannot be read")]
    LoginMalformed(String),
    /// 500 `UNKNOWN`; logged.
    #[error("token could not be issued")]
    Internal(String),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        let (status, mut response) = match &self {
            ApiError::NoSnapshot | ApiError::NotLoaded => {
                (StatusCode::SERVICE_UNAVAILABLE, json_error(&message))
            }
            ApiError::Store(error) => {
                tracing::warn!(%error, "request failed: snapshot store unavailable");
                (StatusCode::SERVICE_UNAVAILABLE, json_error(&message))
            }
            ApiError::SyncUnauthorized | ApiError::ReadUnauthorized => {
                (StatusCode::UNAUTHORIZED, json_error(&message))
            }
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, json_error(&message)),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, json_error(&message)),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, json_error(&message)),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, json_error(&message)),
            ApiError::PreconditionFailed { .. } => {
                (StatusCode::PRECONDITION_FAILED, json_error(&message))
            }
            ApiError::Conflict(_) => (StatusCode::CONFLICT, json_error(&message)),
            ApiError::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, json_error(&message)),
            ApiError::StoreSilent(_) => {
                tracing::warn!(%message, "snapshot read refused");
                (StatusCode::SERVICE_UNAVAILABLE, json_error(&message))
            }
            ApiError::NotAcceptable(_) => (StatusCode::NOT_ACCEPTABLE, json_error(&message)),
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, json_error(&message))
            }
            ApiError::Token(failure) => {
                let (status, code) = match failure {
                    TokenFailure::Service { .. }
                    | TokenFailure::Scope { .. }
                    | TokenFailure::Query(_) => (400, Code::Unsupported),
                    TokenFailure::BadCredentials | TokenFailure::RememberedRefusal => {
                        (401, Code::Unauthorized)
                    }
                    TokenFailure::Limited(_) => (429, Code::TooManyRequests),
                    TokenFailure::NoSnapshot
                    | TokenFailure::Busy
                    | TokenFailure::LoginUnreachable(_) => (503, Code::Unavailable),
                    TokenFailure::LoginStatus { status } => (*status, login_status_code(*status)),
                    TokenFailure::LoginMalformed(_) => (502, Code::Unknown),
                    TokenFailure::Internal(detail) => {
                        tracing::error!(%detail, "token endpoint internal error");
                        (500, Code::Unavailable)
                    }
                };
                let reply = reply::error(status, code, &message, None);
                (
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    reply_response(reply),
                )
            }
        };
        *response.status_mut() = status;
        let headers = response.headers_mut();
        match &self {
            ApiError::NoSnapshot
            | ApiError::NotLoaded
            | ApiError::Store(_)
            | ApiError::Busy(_)
            | ApiError::StoreSilent(_)
            | ApiError::Token(
                TokenFailure::NoSnapshot
                | TokenFailure::Busy
                | TokenFailure::LoginUnreachable(_)
                | TokenFailure::LoginStatus { status: 429 | 503 },
            ) => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
            }
            ApiError::SyncUnauthorized => {
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(SYNC_REALM));
            }
            ApiError::ReadUnauthorized => {
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(READ_REALM));
            }
            ApiError::Token(TokenFailure::BadCredentials | TokenFailure::RememberedRefusal) => {
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(BASIC_REALM));
            }
            ApiError::Token(TokenFailure::Limited(limited)) => {
                // Whole seconds, rounded up: a client retrying at once would be refused again.
                let secs = limited.retry_after().as_secs_f64().ceil().max(1.0);
                headers.insert(RETRY_AFTER, HeaderValue::from(secs as u64));
            }
            ApiError::PreconditionFailed {
                current: Some(current),
            } => {
                if let Ok(value) = HeaderValue::from_str(&current.etag()) {
                    headers.insert(ETAG, value);
                }
            }
            _ => {}
        }
        response
    }
}

impl From<PublishError> for ApiError {
    fn from(error: PublishError) -> Self {
        match error {
            PublishError::Forbidden(_) => ApiError::Forbidden(error.to_string()),
            PublishError::Invalid(_) | PublishError::KeyConflict(_) => {
                ApiError::BadRequest(error.to_string())
            }
            PublishError::PreconditionFailed { current } => {
                ApiError::PreconditionFailed { current }
            }
            PublishError::WouldEmpty { .. } => ApiError::Conflict(error.to_string()),
            PublishError::Contended(_) => ApiError::Busy(error.to_string()),
            PublishError::Store(store) => ApiError::Store(store),
            PublishError::Internal(detail) => ApiError::Internal(detail),
        }
    }
}

/// The registry error code that goes with a status Katello answered.
fn login_status_code(status: u16) -> Code {
    match status {
        401 => Code::Unauthorized,
        403 => Code::Denied,
        404 => Code::NotFound,
        429 | 502..=504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

impl From<AuthError> for TokenFailure {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::BadCredentials => {
                tracing::info!("login refused: invalid username or password");
                TokenFailure::BadCredentials
            }
            AuthError::RememberedRefusal => {
                tracing::info!("login refused again: the same credentials were just refused");
                TokenFailure::RememberedRefusal
            }
            AuthError::Limited(limited) => {
                tracing::warn!(?limited, "login refused: too many failed logins");
                TokenFailure::Limited(limited)
            }
            AuthError::Busy | AuthError::Katello(KatelloError::Busy) => {
                tracing::warn!("login refused: no login slot within the login queue timeout");
                TokenFailure::Busy
            }
            AuthError::Katello(KatelloError::Unreachable(detail)) => {
                tracing::warn!(%detail, "login failed: Katello unreachable");
                TokenFailure::LoginUnreachable(detail)
            }
            AuthError::Katello(KatelloError::Status(status)) => {
                tracing::warn!(status, "login failed: Katello answered an error status");
                TokenFailure::LoginStatus { status }
            }
            AuthError::Katello(KatelloError::Malformed(detail)) => {
                tracing::warn!(%detail, "login failed: Katello's answer is malformed");
                TokenFailure::LoginMalformed(detail)
            }
            AuthError::Internal(detail) => TokenFailure::Internal(detail),
        }
    }
}

fn json_error(message: &str) -> Response {
    let body = serde_json::to_vec(&ErrorBody { error: message })
        .unwrap_or_else(|_| br#"{"error":"error"}"#.to_vec());
    ([(CONTENT_TYPE, "application/json")], body).into_response()
}

fn reply_response(reply: Reply) -> Response {
    let mut response = Response::new(Body::from(reply.body));
    for (name, value) in reply.headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::try_from(name),
            HeaderValue::try_from(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

async fn healthz() -> &'static str {
    "ok"
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let inner = &state.inner;
    let view = inner.cache.view();
    let served = view
        .current()
        .map(|current| (current.stamp.epoch.as_str(), current.stamp.generation));
    let waiting = inner
        .max_long_poll_waiters
        .saturating_sub(inner.long_poll_waiters.available_permits());
    let text = inner
        .metrics
        .render(served, inner.store.pool_state(), waiting)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut response = Response::new(Body::from(text));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok(response)
}

async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    state.inner.store.ping().await?;
    Ok("ready")
}

/// The value of the one query parameter `name` (the last one if repeated).
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
        .last()
}

fn header_text<'a>(headers: &'a HeaderMap, name: &axum::http::HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The media type of a schema-2 index.
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.registry-gate.index.v2";

/// What a fetcher is served, by the schema it announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Served {
    /// The signed index (2.x).
    Index,
    /// The 1.x JSON envelope of the same generation.
    Legacy,
}

impl Served {
    /// What a fetcher announcing `reader` gets, or 406 for a major this sidecar does not
    /// serve, so the fetcher keeps its last good snapshot and says why.
    fn to(reader: Schema) -> Result<Served, ApiError> {
        if reader.reads(Schema::CURRENT) {
            Ok(Served::Index)
        } else if reader.reads(Schema::LEGACY) {
            Ok(Served::Legacy)
        } else {
            Err(ApiError::NotAcceptable(format!(
                "this sidecar serves snapshot schemas {} and {}; a fetcher speaking schema \
                 {reader} cannot read either: upgrade the filter",
                Schema::CURRENT,
                Schema::LEGACY
            )))
        }
    }
}

/// `current` as `served` (the 1.x envelope is made on first request, off the async runtime).
async fn snapshot_response(current: Arc<Current>, served: Served) -> Result<Response, ApiError> {
    let (body, media_type) = match served {
        Served::Index => (current.body.clone(), INDEX_MEDIA_TYPE),
        Served::Legacy => {
            let legacy = Arc::clone(&current);
            let body = tokio::task::spawn_blocking(move || legacy.legacy_body())
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?
                .map_err(|e| ApiError::Internal(format!("the 1.x envelope cannot be made: {e}")))?;
            (body, "application/json")
        }
    };
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(media_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(etag) = HeaderValue::from_str(&current.generation().etag()) {
        headers.insert(ETAG, etag);
    }
    Ok(response)
}

/// Refuses (503) to confirm a view the store has not confirmed within
/// `--max-store-silence-secs`: a sidecar cut off from Redis must not keep fetchers' snapshots
/// looking fresh while another sidecar publishes a revocation.
fn store_heard_from(state: &AppState) -> Result<(), ApiError> {
    let bound = state.inner.max_store_silence;
    match state.inner.cache.since_last_read() {
        Some(silence) if silence <= bound => Ok(()),
        Some(silence) => Err(ApiError::StoreSilent(format!(
            "the snapshot store has not been read for {} s (more than --max-store-silence-secs \
             {}): this sidecar no longer confirms its snapshot",
            silence.as_secs(),
            bound.as_secs()
        ))),
        None => Err(ApiError::NotLoaded),
    }
}

fn not_modified(generation: &Generation) -> Response {
    let mut response = StatusCode::NOT_MODIFIED.into_response();
    if let Ok(etag) = HeaderValue::from_str(&generation.etag()) {
        response.headers_mut().insert(ETAG, etag);
    }
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn ready(view: &View) -> Result<std::sync::Arc<Current>, ApiError> {
    match view {
        View::Ready(current) => Ok(std::sync::Arc::clone(current)),
        View::Empty { .. } => Err(ApiError::NoSnapshot),
        View::Unknown => Err(ApiError::NotLoaded),
    }
}

/// The newest generation `known` names in the view's epoch beyond what the view holds (any
/// number when the epoch has no snapshot here): a fetcher that holds it learnt of it from
/// another instance, or from a history that has since been rewound.
fn newer_claim(known: &Preconditions, view: &View) -> Option<Generation> {
    let Preconditions::Tags(held) = known else {
        return None;
    };
    let epoch = view.epoch()?;
    let number = view.generation().map_or(0, |current| current.number);
    held.iter()
        .filter(|h| h.epoch == epoch && h.number > number)
        .max_by_key(|h| h.number)
        .cloned()
}

/// `GET /v1/snapshot[?wait=SECS]`: 304 only when `If-None-Match` names exactly the current
/// generation; a long-poll waits only while that stays so.
async fn get_snapshot(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let inner = &state.inner;
    let readers: Vec<&Secret> = [&inner.read_secret, &inner.sync_secret]
        .into_iter()
        .chain(inner.admin_secret.as_ref())
        .collect();
    if !bearer_is_one_of(&headers, &readers) {
        return Err(ApiError::ReadUnauthorized);
    }
    let wait = match query_param(query.as_deref(), "wait") {
        None => 0,
        Some(text) => text
            .parse::<u64>()
            .map_err(|_| ApiError::BadRequest(format!("wait={text:?}: expected whole seconds")))?,
    };
    let wait = Duration::from_secs(wait).min(state.inner.long_poll_max);
    let reader = match query_param(query.as_deref(), "schema") {
        None => Schema::UNANNOUNCED,
        Some(text) => Schema::parse(&text).ok_or_else(|| {
            ApiError::BadRequest(format!("schema={text:?}: expected <major>.<minor>"))
        })?,
    };
    // Before any 304: a fetcher that cannot read what is served must not be told its
    // snapshot is current.
    let served = Served::to(reader)?;
    let known = header_text(&headers, &IF_NONE_MATCH).map(Preconditions::parse);
    let cache = &state.inner.cache;
    let mut changes = cache.subscribe();
    if matches!(*changes.borrow(), View::Unknown) {
        // Asked before the poller's first read (just started, or Redis was down): read
        // Redis now rather than answer from ignorance. A failure leaves the view Unknown.
        if let Err(error) = cache.refresh(&state.inner.store).await {
            tracing::debug!(%error, "snapshot read on demand failed");
        }
    }
    let claimed = known
        .as_ref()
        .and_then(|known| newer_claim(known, &changes.borrow()));
    if let Some(claimed) = claimed {
        // Either this instance lags another one's publish, or the store was rewound below
        // what the fetcher holds; re-reading Redis tells which (and starts a new epoch in
        // the second case). The rewound content is never served.
        if let Err(error) = cache.refresh_claimed(&state.inner.store, &claimed).await {
            tracing::warn!(%error, %claimed, "re-reading the store for a fetcher ahead of this view failed");
        }
    }
    let current = ready(&changes.borrow_and_update())?;
    store_heard_from(&state)?;
    let Some(known) = known else {
        return snapshot_response(current, served).await;
    };
    let held = current.generation();
    if !known.matches(&held) {
        return snapshot_response(current, served).await;
    }
    if wait.is_zero() {
        return Ok(not_modified(&held));
    }
    // Bounded: beyond the cap a request that would wait is refused at once, so idle
    // long-polls cannot pile up without limit.
    let Ok(_waiter) = Arc::clone(&state.inner.long_poll_waiters).try_acquire_owned() else {
        return Err(ApiError::Busy(
            "too many snapshot long-polls waiting; try again shortly".into(),
        ));
    };
    let mut shutdown = state.inner.shutdown.clone();
    let unchanged = |view: &View| view.generation().as_ref() == Some(&held);
    tokio::select! {
        _ = tokio::time::timeout(wait, async { changes.wait_for(|view| !unchanged(view)).await.is_ok() }) => {}
        () = stopping(&mut shutdown) => {}
    }
    let view = changes.borrow().clone();
    let latest = ready(&view)?;
    store_heard_from(&state)?;
    if known.matches(&latest.generation()) {
        Ok(not_modified(&latest.generation()))
    } else {
        snapshot_response(latest, served).await
    }
}

#[derive(Serialize)]
struct PublishedBody<'a> {
    epoch: &'a str,
    generation: u64,
    changed: bool,
}

/// Whether `Authorization: Bearer <secret>` names one of `accepted`, compared in constant
/// time (over SHA-256 digests, so the comparison does not reveal a secret's length either,
/// and against every accepted secret, so it does not reveal which one matched).
fn bearer_is_one_of(headers: &HeaderMap, accepted: &[&Secret]) -> bool {
    let Some(presented) = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().as_bytes())
        })
    else {
        return false;
    };
    let presented = Sha256::digest(presented);
    let matched = accepted
        .iter()
        .fold(subtle::Choice::from(0), |matched, secret| {
            matched | Sha256::digest(&secret.0).ct_eq(&presented)
        });
    bool::from(matched)
}

/// Sync endpoints accept the sync secret only.
fn check_sync_secret(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    if bearer_is_one_of(headers, &[&state.inner.sync_secret]) {
        Ok(())
    } else {
        Err(ApiError::SyncUnauthorized)
    }
}

fn parse_bool(name: &str, text: &str) -> Result<bool, ApiError> {
    match text {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" | "" => Ok(false),
        _ => Err(ApiError::BadRequest(format!(
            "{name}={text:?}: expected true or false"
        ))),
    }
}

/// Reads a body up to `limit` bytes (413 beyond).
async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
    let declared = header_text(headers, &CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::PayloadTooLarge(limit))
}

/// `PUT /v1/snapshot[?allow_empty=true]` with a whole `Content` document.
async fn put_snapshot(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let authority = match &state.inner.admin_secret {
        Some(admin) if bearer_is_one_of(&headers, &[admin]) => Authority::Admin,
        _ => {
            check_sync_secret(&state, &headers)?;
            Authority::Sync
        }
    };
    let allow_empty = match query_param(query.as_deref(), "allow_empty") {
        Some(text) => parse_bool("allow_empty", &text)?,
        None => false,
    };
    let precondition = match (
        header_preconditions(&headers, &IF_MATCH)?,
        header_preconditions(&headers, &IF_NONE_MATCH)?,
    ) {
        (None, None) => None,
        (Some(tags), None) => Some(Precondition::IfMatch(tags)),
        (None, Some(tags)) => Some(Precondition::IfNoneMatch(tags)),
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "send If-Match or If-None-Match, not both".into(),
            ))
        }
    };
    let bytes = read_body(body, &headers, state.inner.max_body_bytes).await?;
    let content: Content = tokio::task::spawn_blocking(move || serde_json::from_slice(&bytes))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::BadRequest(format!("malformed snapshot content: {e}")))?;
    let published = state
        .inner
        .publisher
        .publish(Request {
            source: Source::Whole(content),
            precondition,
            allow_empty,
            authority,
        })
        .await?;
    state.inner.refresher.synced();
    let body = serde_json::to_vec(&PublishedBody {
        epoch: &published.generation.epoch,
        generation: published.generation.number,
        changed: published.changed,
    })
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut response = Response::new(Body::from(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(etag) = HeaderValue::from_str(&published.generation.etag()) {
        response.headers_mut().insert(ETAG, etag);
    }
    Ok(response)
}

/// The entity tags of a conditional header (`*` or a list), if the request carries it.
fn header_preconditions(
    headers: &HeaderMap,
    name: &HeaderName,
) -> Result<Option<Preconditions>, ApiError> {
    headers
        .get(name)
        .map(|value| {
            value
                .to_str()
                .map(Preconditions::parse)
                .map_err(|_| ApiError::BadRequest(format!("{name} is not valid text")))
        })
        .transpose()
}

#[derive(Serialize)]
struct TokenBody<'a> {
    token: &'a str,
    access_token: &'a str,
    expires_in: u64,
    issued_at: &'a str,
}

/// The parsed scopes of a token request, and their text as sent (Katello gets that).
#[derive(Debug)]
struct TokenRequest {
    scopes: Vec<ResourceScope>,
    raw_scopes: Vec<String>,
}

/// The `service` and scopes of a token request. `account` is deliberately not read:
/// identity comes from the verified credentials alone.
fn token_request(query: Option<&str>, service: &str) -> Result<TokenRequest, TokenFailure> {
    let mut services = Vec::new();
    let mut scopes = Vec::new();
    let mut raw_scopes = Vec::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*key {
            "service" => services.push(value.into_owned()),
            "scope" => {
                let parsed = parse_scopes(&value).map_err(|e| TokenFailure::Scope {
                    scope: value.clone().into_owned(),
                    reason: e.to_string(),
                })?;
                scopes.extend(parsed);
                raw_scopes.push(value.into_owned());
            }
            _ => {}
        }
    }
    match services.as_slice() {
        [one] if one == service => Ok(TokenRequest { scopes, raw_scopes }),
        _ => Err(TokenFailure::Service {
            expected: service.to_owned(),
        }),
    }
}

/// `GET /v2/token` (Docker token spec), counted by outcome.
async fn get_token(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let result = issue_token(&state, query, headers).await;
    let outcome = match &result {
        Ok(_) => LoginOutcome::Issued,
        Err(ApiError::Token(TokenFailure::BadCredentials)) => LoginOutcome::Refused,
        Err(ApiError::Token(TokenFailure::RememberedRefusal)) => LoginOutcome::RefusedRemembered,
        Err(ApiError::Token(TokenFailure::Limited(Limited::User { .. }))) => {
            LoginOutcome::LimitedUser
        }
        Err(ApiError::Token(TokenFailure::Limited(Limited::Address { .. }))) => {
            LoginOutcome::LimitedAddress
        }
        Err(ApiError::Token(TokenFailure::Busy)) => LoginOutcome::Busy,
        Err(ApiError::Token(TokenFailure::NoSnapshot | TokenFailure::LoginUnreachable(_))) => {
            LoginOutcome::Unavailable
        }
        Err(_) => LoginOutcome::Failed,
    };
    state.inner.metrics.login(outcome, started.elapsed());
    result
}

/// The client's address from `header`, as the front proxy set it; `None` if not configured,
/// absent or not an address.
fn client_address(header: Option<&str>, headers: &HeaderMap) -> Option<std::net::IpAddr> {
    headers.get(header?)?.to_str().ok()?.trim().parse().ok()
}

async fn issue_token(
    state: &AppState,
    query: Option<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let inner = &state.inner;
    let request = token_request(query.as_deref(), inner.minter.service())?;
    let authorization = headers.get(AUTHORIZATION);
    let credentials = token::credentials(authorization.map(HeaderValue::as_bytes))
        .ok_or(TokenFailure::BadCredentials)?;
    // Refuse at once before the first snapshot, before anyone is asked about credentials.
    inner
        .cache
        .view()
        .current()
        .ok_or(TokenFailure::NoSnapshot)?;
    let login = inner
        .authenticator
        .authenticate(LoginRequest {
            credentials: &credentials,
            authorization,
            scopes: &request.raw_scopes,
            address: client_address(inner.client_address_header.as_deref(), &headers),
        })
        .await
        .map_err(TokenFailure::from)?;
    if let (Some(catalog), Principal::User(user), true) =
        (&login.catalog, &login.principal, inner.refresh_on_login)
    {
        let outcome = inner.refresher.after_login(user, catalog).await;
        match &outcome {
            Outcome::Failed(error) => {
                tracing::warn!(%error, "login refresh failed; the user keeps its grants");
            }
            other => tracing::debug!(outcome = ?other, "login refresh"),
        }
    }
    let principal = login.principal;
    // Read after the refresh: a refresh that published is in the cache by now.
    let current = inner
        .cache
        .view()
        .current()
        .cloned()
        .ok_or(TokenFailure::NoSnapshot)?;
    let requested = request.scopes;
    let access = token::grant(&requested, &principal, &current.index);
    let granted = access.len();
    let minted = inner
        .minter
        .mint(&principal, access, (inner.clock)())
        .map_err(|e: MintError| TokenFailure::Internal(e.to_string()))?;
    tracing::info!(
        principal = %principal.label(),
        requested = requested.len(),
        granted,
        generation = current.stamp.generation,
        "issued token"
    );
    let body = serde_json::to_vec(&TokenBody {
        token: &minted.token,
        access_token: &minted.token,
        expires_in: minted.expires_in,
        issued_at: &minted.issued_at,
    })
    .map_err(|e| TokenFailure::Internal(e.to_string()))?;
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_last_wins_and_decode() {
        assert_eq!(
            query_param(Some("wait=5&wait=7"), "wait").as_deref(),
            Some("7")
        );
        assert_eq!(
            query_param(Some("a=1&b=x%20y"), "b").as_deref(),
            Some("x y")
        );
        assert_eq!(query_param(None, "wait"), None);
    }

    #[test]
    fn token_request_needs_exactly_the_configured_service() {
        let cases: &[(&str, Option<&str>, bool)] = &[
            ("right", Some("service=registry-gate"), true),
            ("missing", Some("scope=repository:a:pull"), false),
            ("wrong", Some("service=other"), false),
            (
                "twice",
                Some("service=registry-gate&service=registry-gate"),
                false,
            ),
            ("no query", None, false),
        ];
        for (name, query, ok) in cases {
            assert_eq!(
                token_request(*query, "registry-gate").is_ok(),
                *ok,
                "case {name}"
            );
        }
    }

    #[test]
    fn bools() {
        assert!(parse_bool("x", "true").unwrap());
        assert!(!parse_bool("x", "false").unwrap());
        assert!(parse_bool("x", "maybe").is_err());
    }
}
