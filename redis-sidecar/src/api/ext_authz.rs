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
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::any;
use axum::Router;

use registry_gate_core::reply::Reply;

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
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_FOUND;
        return response;
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
    response(reply)
}

/// The reply as an HTTP response, status and every header included, or a bare 500 if any
/// part cannot be sent (a header value that is no valid header text): Envoy then fails the
/// request closed. A check answer that lost its identity header must never read as allowed.
fn response(reply: Reply) -> Response {
    let mut builder = Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        match (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            (Ok(name), Ok(value)) => builder = builder.header(name, value),
            _ => {
                tracing::warn!(header = %name, "ext_authz: a header of the gate's answer cannot be sent; failing the request closed");
                return internal();
            }
        }
    }
    builder
        .body(Body::from(reply.body))
        .unwrap_or_else(|_| internal())
}

fn internal() -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_and_every_header_are_sent_or_the_request_fails_closed() {
        let reply = Reply {
            status: 503,
            headers: vec![("retry-after".into(), "5".into())],
            body: "{}".into(),
        };
        let sent = response(reply);
        assert_eq!(sent.status(), 503);
        assert_eq!(sent.headers()["retry-after"], "5");

        let allowed = Reply {
            status: 200,
            headers: vec![("x-registry-gate-identity".into(), "user:a\nb".into())],
            body: String::new(),
        };
        assert_eq!(
            response(allowed).status(),
            500,
            "no allow without its identity"
        );
    }
}
