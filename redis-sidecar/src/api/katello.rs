//! The Katello sync API, at the paths Katello calls on a smart proxy's container gateway:
//! `PUT /container_gateway/{repository_list,user_repository_mapping,update_hosts,
//! host_repository_mapping,update_host_repositories}[/]` and `GET /container_gateway/users[/]`.
//!
//! Callers are the smart-proxy plugin (relaying Katello's raw body with the sync secret) or
//! Katello itself over TLS with a client certificate whose subject CN is on
//! `--sync-client-subjects`. Each PUT replaces its part of the current content and publishes
//! one complete snapshot (nothing when the content does not change); a PUT answers 200 with an
//! empty body, as the old gateway did, and `GET users` answers `{"users":[...]}`.
//!
//! This module only translates HTTP: parsing and the part semantics are `crate::katello`'s, and
//! nothing is written unless the whole body decoded and validated.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::header::{CONTENT_TYPE, ETAG};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Extension, Router};
use serde::Serialize;

use super::{bearer_is_one_of, header_text, read_body, ApiError};
use crate::katello::sync::{self, Endpoint};
use crate::publisher::{Authority, Request, Source};
use crate::state::AppState;
use crate::tls::ClientCertificate;

/// The routes, with and without the trailing slash Katello's client adds.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/container_gateway/users", get(users))
        .route("/container_gateway/users/", get(users))
        .route("/container_gateway/{endpoint}", put(put_part))
        .route("/container_gateway/{endpoint}/", put(put_part))
}

/// The sync secret as bearer, or a verified client certificate whose CN is allowed (the CN is
/// compared lowercased, as smart-proxy's `trusted_hosts` check does).
fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    client: Option<&ClientCertificate>,
) -> Result<(), ApiError> {
    if bearer_is_one_of(headers, &[&state.inner.sync_secret]) {
        return Ok(());
    }
    match client.and_then(|c| c.0.as_deref()) {
        Some(cn)
            if state
                .inner
                .sync_client_subjects
                .contains(&cn.to_lowercase()) =>
        {
            Ok(())
        }
        Some(cn) => Err(ApiError::Forbidden(format!(
            "untrusted client {cn:?}: its certificate's CN is not in --sync-client-subjects"
        ))),
        None => Err(ApiError::SyncUnauthorized),
    }
}

/// `PUT /container_gateway/<endpoint>[/]`. (The connection's client certificate is read as an
/// optional extension: a router driven without a socket has none.)
async fn put_part(
    State(state): State<AppState>,
    Path(endpoint): Path<String>,
    client: Option<Extension<ConnectInfo<ClientCertificate>>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Some(endpoint) = Endpoint::from_path_segment(&endpoint) else {
        return Err(ApiError::NotFound(format!(
            "no sync endpoint {endpoint:?} (expected one of {})",
            Endpoint::ALL.map(Endpoint::name).join(", ")
        )));
    };
    authorize(&state, &headers, client.as_ref().map(|c| &c.0 .0))?;
    let bytes = read_body(body, &headers, state.inner.max_body_bytes).await?;
    let content_type = header_text(&headers, &CONTENT_TYPE).map(str::to_owned);
    let limits = state.inner.form_limits;
    let change = tokio::task::spawn_blocking(move || {
        sync::decode(endpoint, &bytes, content_type.as_deref(), &limits)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::BadRequest(format!("{}: {e}", endpoint.name())))?;
    let allow_empty = change.empties_repositories();
    let dropped = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&dropped);
    let change = Arc::new(change);
    let published = state
        .inner
        .publisher
        .publish(Request {
            source: Source::Change(Arc::new(move |content| {
                let dropped = sync::apply_in_place(&change, content);
                counted.store(dropped, Ordering::Relaxed);
            })),
            precondition: None,
            allow_empty,
            authority: Authority::Sync,
        })
        .await?;
    state.inner.refresher.synced();
    tracing::info!(
        endpoint = endpoint.name(),
        changed = published.changed,
        generation = published.generation.number,
        dropped_grants = dropped.load(Ordering::Relaxed),
        "sync call applied"
    );
    let mut response = Response::new(Body::empty());
    if let Ok(etag) = HeaderValue::from_str(&published.generation.etag()) {
        response.headers_mut().insert(ETAG, etag);
    }
    Ok(response)
}

#[derive(Serialize)]
struct UsersBody {
    users: Vec<String>,
}

/// `GET /container_gateway/users[/]`: the logins the current snapshot grants to (none before
/// the first publish).
async fn users(
    State(state): State<AppState>,
    client: Option<Extension<ConnectInfo<ClientCertificate>>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, client.as_ref().map(|c| &c.0 .0))?;
    let users = match super::ready(&state.view()) {
        Ok(current) => sync::users(&current.content),
        Err(ApiError::NoSnapshot) => Vec::new(),
        Err(other) => return Err(other),
    };
    Ok(axum::Json(UsersBody { users }).into_response())
}
