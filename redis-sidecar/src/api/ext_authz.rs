//! The ext_authz endpoints (only with `--ext-authz-config`): `/ext_authz/<original path>`, the
//! check Envoy's `envoy.filters.http.ext_authz` (`http_service`, `path_prefix: /ext_authz`)
//! sends for each request with the original method and headers, and
//! `/ext_authz_answer/<original path>`, where Envoy's answer route sends the requests whose
//! content the gate answers itself.
//!
//! This module only moves bytes between HTTP and `crate::ext_authz`, which decides with the
//! filter's gate, and counts the outcomes.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use axum::routing::any;
use axum::Router;

use super::reply_response;
use crate::ext_authz::{ANSWER_PREFIX, CHECK_PREFIX};
use crate::publisher::unix_seconds;
use crate::state::AppState;

/// The routes: every method, every path under the two prefixes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(CHECK_PREFIX, any(check))
        .route(&format!("{CHECK_PREFIX}/{{*path}}"), any(check))
        .route(&format!("{ANSWER_PREFIX}/{{*path}}"), any(answer))
}

async fn check(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    decide(&state, false, &method, &uri, &headers)
}

async fn answer(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    decide(&state, true, &method, &uri, &headers)
}

fn decide(
    state: &AppState,
    answer: bool,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Response {
    let inner = &state.inner;
    let Some(gates) = &inner.ext_authz else {
        // Routed only when configured.
        return Response::builder()
            .status(404)
            .body(Body::empty())
            .unwrap_or_default();
    };
    let prefix = if answer { ANSWER_PREFIX } else { CHECK_PREFIX };
    let target = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let path = target.strip_prefix(prefix).unwrap_or(target).as_bytes();
    let method = method.as_str().as_bytes();
    let now = unix_seconds((inner.clock)());
    let (reply, checked) = if answer {
        gates.answer(method, path, headers, now)
    } else {
        gates.check(method, path, headers, now)
    };
    inner.metrics.ext_authz(answer, checked.label());
    reply_response(reply)
}
