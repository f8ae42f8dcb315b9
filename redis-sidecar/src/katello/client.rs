//! Katello as the login backend: one pooled HTTPS client that forwards a token request's
//! Basic credentials to Katello's `GET /v2/token` (and, for whoever refreshes a user's
//! repositories, `GET /v2/_catalog`), and the pure functions that read Katello's answers.
//!
//! The request is the one the old container gateway sent: `account` = the Basic username,
//! each of the client's `scope`s, the client's `Authorization` header verbatim, `Accept:
//! application/json`; never `service`. Identity is decided by the caller from the Basic
//! username, never from anything in Katello's answer.
//!
//! | Katello answers | [`TokenAnswer`] / [`KatelloError`] |
//! |---|---|
//! | 200 `{"token":"unauthorized"}`, or 401 | `Refused` (bad credentials) |
//! | 200 `{"token":"unauthenticated"}` | `Anonymous` |
//! | 200 with any other non-empty `token` | `Authenticated` |
//! | 200 without a string `token`, non-JSON, or a status outside 200/400..=599 | `Malformed` (502) |
//! | other 4xx/5xx | `Status(code)`: the client gets that status with a fixed registry error body; Katello's body is not passed on (it may hold Rails internals) |
//! | connect failure, timeout, broken body | `Unreachable` (503 + `Retry-After`) |
//! | no connection slot within the login queue timeout | `Busy` (503 + `Retry-After`) |
//!
//! This module must never log a password, an `Authorization` header or a token, never follow
//! a redirect (it would carry the credentials elsewhere), and never open more than
//! `--katello-max-connections` requests at once: a login storm queues on a semaphore.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::header::{ACCEPT, AUTHORIZATION};
use axum::http::HeaderValue;
use rustls::ClientConfig;
use serde::Deserialize;
use thiserror::Error;
use tokio::sync::Semaphore;

pub use crate::client_tls::ClientIdentity;
use crate::client_tls::{check_base_url, client_config, http_client, ClientTlsError};

/// The largest `/v2/token` answer read; a token response is a few hundred bytes.
const MAX_TOKEN_BODY: usize = 64 * 1024;
/// The largest `/v2/_catalog` answer read.
const MAX_CATALOG_BODY: usize = 16 * 1024 * 1024;

/// Why the Katello settings cannot be used (a configuration error at startup).
#[derive(Debug, Error)]
pub enum KatelloConfigError {
    #[error("--katello-url {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("--katello-ca-file {path}: {reason}")]
    Ca { path: String, reason: String },
    #[error("--katello-client-cert-file/--katello-client-key-file: {0}")]
    Identity(String),
    #[error("the system trust store has no usable certificate: {0}")]
    SystemRoots(String),
}

/// Validated Katello settings, its TLS configuration built from the files they name.
#[derive(Debug, Clone)]
pub struct KatelloSettings {
    /// Base URL without a trailing slash, e.g. `https://foreman.example.com`.
    pub url: String,
    pub tls: Arc<ClientConfig>,
    /// Bound on connecting and on each whole request.
    pub timeout: Duration,
    /// Requests in flight at once, and idle connections kept.
    pub max_connections: usize,
}

impl KatelloSettings {
    /// Checks the URL and reads the CA (else the system trust store) and client identity.
    pub fn load(
        url: &str,
        ca_file: Option<&Path>,
        identity: Option<ClientIdentity<'_>>,
        timeout: Duration,
        max_connections: usize,
    ) -> Result<KatelloSettings, Vec<KatelloConfigError>> {
        let mut problems = Vec::new();
        if let Err(reason) = check_base_url(url) {
            problems.push(KatelloConfigError::Url {
                url: url.to_owned(),
                reason,
            });
        }
        let tls = match client_config(ca_file, identity) {
            Ok(tls) => Some(tls),
            Err(errors) => {
                problems.extend(errors.into_iter().map(|e| match e {
                    ClientTlsError::Ca { path, reason } => KatelloConfigError::Ca { path, reason },
                    ClientTlsError::Identity(e) => KatelloConfigError::Identity(e),
                    ClientTlsError::SystemRoots(e) => KatelloConfigError::SystemRoots(e),
                }));
                None
            }
        };
        let (Some(tls), true) = (tls, problems.is_empty()) else {
            return Err(problems);
        };
        Ok(KatelloSettings {
            url: url.trim_end_matches('/').to_owned(),
            tls,
            timeout,
            max_connections,
        })
    }
}

/// What a `/v2/token` answer says about the credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAnswer {
    /// Katello issued a token: the Basic username is authenticated.
    Authenticated,
    /// `{"token":"unauthenticated"}`: Katello let the caller in anonymously.
    Anonymous,
    /// `{"token":"unauthorized"}` or 401: bad credentials.
    Refused,
}

/// Why a Katello call gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KatelloError {
    #[error("no Katello connection slot within the login queue timeout")]
    Busy,
    #[error("Katello is unreachable: {0}")]
    Unreachable(String),
    #[error("Katello answered {0}")]
    Status(u16),
    #[error("Katello's answer is malformed: {0}")]
    Malformed(String),
}

#[derive(Deserialize)]
struct TokenBody {
    token: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct CatalogBody {
    repositories: Vec<String>,
}

/// Reads a `/v2/token` answer (see the module table).
pub fn interpret_token(status: u16, body: &[u8]) -> Result<TokenAnswer, KatelloError> {
    match status {
        200 => {}
        401 => return Ok(TokenAnswer::Refused),
        400..=599 => return Err(KatelloError::Status(status)),
        other => {
            return Err(KatelloError::Malformed(format!(
                "unexpected status {other}"
            )))
        }
    }
    let parsed: TokenBody = serde_json::from_slice(body)
        .map_err(|e| KatelloError::Malformed(format!("token body is not JSON: {e}")))?;
    match parsed.token {
        Some(serde_json::Value::String(token)) => match token.as_str() {
            "unauthorized" => Ok(TokenAnswer::Refused),
            "unauthenticated" => Ok(TokenAnswer::Anonymous),
            "" => Err(KatelloError::Malformed("empty token".into())),
            _ => Ok(TokenAnswer::Authenticated),
        },
        Some(_) => Err(KatelloError::Malformed("token is not a string".into())),
        None => Err(KatelloError::Malformed("no token in the answer".into())),
    }
}

/// Reads a `/v2/_catalog` answer: 200 `{"repositories":[names]}`, else the status.
pub fn interpret_catalog(status: u16, body: &[u8]) -> Result<Vec<String>, KatelloError> {
    match status {
        200 => serde_json::from_slice::<CatalogBody>(body)
            .map(|catalog| catalog.repositories)
            .map_err(|e| KatelloError::Malformed(format!("catalog body: {e}"))),
        400..=599 => Err(KatelloError::Status(status)),
        other => Err(KatelloError::Malformed(format!(
            "unexpected status {other}"
        ))),
    }
}

/// One pooled HTTPS client to Katello, at most `max_connections` requests at once.
#[derive(Debug)]
pub struct KatelloClient {
    http: reqwest::Client,
    base: String,
    /// A storm of logins queues here instead of opening sockets.
    permits: Semaphore,
    /// Longest a call waits for a permit before it is refused as busy.
    queue_timeout: Duration,
    /// `/v2/token` requests sent.
    token_calls: AtomicU64,
    /// `/v2/_catalog` requests sent.
    catalog_calls: AtomicU64,
}

impl KatelloClient {
    /// Builds the client; nothing is contacted yet.
    pub fn new(
        settings: &KatelloSettings,
        queue_timeout: Duration,
    ) -> Result<KatelloClient, KatelloError> {
        let http = http_client(&settings.tls, settings.timeout)
            .pool_max_idle_per_host(settings.max_connections)
            .build()
            .map_err(|e| KatelloError::Unreachable(format!("cannot build the client: {e}")))?;
        Ok(KatelloClient {
            http,
            base: settings.url.clone(),
            permits: Semaphore::new(settings.max_connections.max(1)),
            queue_timeout,
            token_calls: AtomicU64::new(0),
            catalog_calls: AtomicU64::new(0),
        })
    }

    /// `/v2/token` requests sent so far.
    pub fn token_calls(&self) -> u64 {
        self.token_calls.load(Ordering::Relaxed)
    }

    /// `/v2/_catalog` requests sent so far.
    pub fn catalog_calls(&self) -> u64 {
        self.catalog_calls.load(Ordering::Relaxed)
    }

    /// `GET {url}/v2/token?account=<account>&scope=..` with `authorization` verbatim.
    pub async fn token(
        &self,
        authorization: &HeaderValue,
        account: &str,
        scopes: &[String],
    ) -> Result<TokenAnswer, KatelloError> {
        let mut query: Vec<(&str, &str)> = vec![("account", account)];
        query.extend(scopes.iter().map(|scope| ("scope", scope.as_str())));
        self.token_calls.fetch_add(1, Ordering::Relaxed);
        let (status, body) = self
            .get("/v2/token", &query, authorization, MAX_TOKEN_BODY)
            .await?;
        interpret_token(status, &body)
    }

    /// `GET {url}/v2/_catalog` with `authorization` verbatim: the repository names Katello
    /// lets that login read.
    pub async fn catalog(&self, authorization: &HeaderValue) -> Result<Vec<String>, KatelloError> {
        self.catalog_calls.fetch_add(1, Ordering::Relaxed);
        let (status, body) = self
            .get("/v2/_catalog", &[], authorization, MAX_CATALOG_BODY)
            .await?;
        interpret_catalog(status, &body)
    }

    async fn get(
        &self,
        path: &str,
        query: &[(&str, &str)],
        authorization: &HeaderValue,
        limit: usize,
    ) -> Result<(u16, Vec<u8>), KatelloError> {
        let _permit = tokio::time::timeout(self.queue_timeout, self.permits.acquire())
            .await
            .map_err(|_| KatelloError::Busy)?
            .map_err(|_| KatelloError::Busy)?;
        let mut url = format!("{}{path}", self.base);
        if !query.is_empty() {
            url.push('?');
            url.push_str(
                &form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(query)
                    .finish(),
            );
        }
        let unreachable =
            |e: reqwest::Error| KatelloError::Unreachable(e.without_url().to_string());
        let mut response = self
            .http
            .get(url)
            .header(AUTHORIZATION, authorization.clone())
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status().as_u16();
        if response
            .content_length()
            .is_some_and(|length| length > limit as u64)
        {
            return Err(KatelloError::Malformed(format!(
                "answer larger than {limit} bytes"
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > limit {
                return Err(KatelloError::Malformed(format!(
                    "answer larger than {limit} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_answers_are_read_as_the_old_gateway_read_them() {
        struct Row {
            case: &'static str,
            status: u16,
            body: &'static str,
            want: Result<TokenAnswer, KatelloError>,
        }
        let malformed = |text: &str| Err(KatelloError::Malformed(text.into()));
        let rows = [
            Row {
                case: "token issued",
                status: 200,
                body: r#"{"token":"abc","expires_in":360,"issued_at":"2025-01-01T00:00:00Z"}"#,
                want: Ok(TokenAnswer::Authenticated),
            },
            Row {
                case: "unauthorized token value",
                status: 200,
                body: r#"{"token":"unauthorized"}"#,
                want: Ok(TokenAnswer::Refused),
            },
            Row {
                case: "unauthenticated token value",
                status: 200,
                body: r#"{"token":"unauthenticated","expires_in":180}"#,
                want: Ok(TokenAnswer::Anonymous),
            },
            Row {
                case: "401",
                status: 401,
                body: r#"{"error":{"message":"Unable to authenticate user"}}"#,
                want: Ok(TokenAnswer::Refused),
            },
            Row {
                case: "403 passes through",
                status: 403,
                body: "forbidden",
                want: Err(KatelloError::Status(403)),
            },
            Row {
                case: "404 (registry not configured) passes through",
                status: 404,
                body: r#"{"displayMessage":"Registry not configured"}"#,
                want: Err(KatelloError::Status(404)),
            },
            Row {
                case: "500 passes through",
                status: 500,
                body: "<html>stack trace</html>",
                want: Err(KatelloError::Status(500)),
            },
            Row {
                case: "503 passes through",
                status: 503,
                body: "",
                want: Err(KatelloError::Status(503)),
            },
            Row {
                case: "redirect is not followed",
                status: 302,
                body: "",
                want: malformed("unexpected status 302"),
            },
            Row {
                case: "201 is not a token answer",
                status: 201,
                body: r#"{"token":"abc"}"#,
                want: malformed("unexpected status 201"),
            },
            Row {
                case: "no token field",
                status: 200,
                body: r#"{"expires_in":60}"#,
                want: malformed("no token in the answer"),
            },
            Row {
                case: "null token",
                status: 200,
                body: r#"{"token":null}"#,
                want: malformed("no token in the answer"),
            },
            Row {
                case: "numeric token",
                status: 200,
                body: r#"{"token":7}"#,
                want: malformed("token is not a string"),
            },
            Row {
                case: "empty token",
                status: 200,
                body: r#"{"token":""}"#,
                want: malformed("empty token"),
            },
        ];
        for row in rows {
            assert_eq!(
                interpret_token(row.status, row.body.as_bytes()),
                row.want,
                "case {}",
                row.case
            );
        }
        for (case, body) in [("not JSON", "<html>"), ("JSON array", "[]")] {
            assert!(
                matches!(
                    interpret_token(200, body.as_bytes()),
                    Err(KatelloError::Malformed(_))
                ),
                "case {case}"
            );
        }
    }

    #[test]
    fn catalog_answers() {
        assert_eq!(
            interpret_catalog(200, br#"{"repositories":["a/b","c"]}"#),
            Ok(vec!["a/b".to_owned(), "c".to_owned()])
        );
        assert_eq!(
            interpret_catalog(401, b"no"),
            Err(KatelloError::Status(401))
        );
        assert!(matches!(
            interpret_catalog(200, br#"{"repos":[]}"#),
            Err(KatelloError::Malformed(_))
        ));
        assert!(matches!(
            interpret_catalog(304, b""),
            Err(KatelloError::Malformed(_))
        ));
    }

    #[test]
    fn settings_report_every_problem() {
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("not.pem");
        std::fs::write(&not_pem, "nothing here\n").unwrap();
        let problems = KatelloSettings::load(
            "ftp://foreman.example.com",
            Some(&not_pem),
            Some(ClientIdentity {
                cert_file: &not_pem,
                key_file: &not_pem,
            }),
            Duration::from_secs(1),
            4,
        )
        .unwrap_err();
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 3, "{text:?}");
        assert!(text[0].contains("--katello-url"), "{text:?}");
        assert!(text[1].contains("--katello-ca-file"), "{text:?}");
        assert!(text[2].contains("--katello-client-cert-file"), "{text:?}");
    }
}
