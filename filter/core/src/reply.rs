//! Local replies in the registry's own format: status, the `{"errors":[...]}` body, the
//! `Docker-Distribution-API-Version` header and the Docker `WWW-Authenticate` challenge.
//!
//! Every error the filter answers with is built here, and each error type of the core maps to
//! a reply in exactly one function. It never decides who may do what (that is `decision`).

use serde::Serialize;

use crate::route::RouteError;
use crate::token::TokenError;

/// Header every registry reply carries.
pub const API_VERSION_HEADER: (&str, &str) = ("docker-distribution-api-version", "registry/2.0");

/// A complete local reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// A JSON reply with the registry API version header.
    pub fn json(status: u16, body: String) -> Reply {
        Reply {
            status,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                (API_VERSION_HEADER.0.into(), API_VERSION_HEADER.1.into()),
            ],
            body,
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: String) -> Reply {
        self.headers.push((name.into(), value));
        self
    }

    /// The value of a header, if set (first match, case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Registry error codes used by the filter (OCI distribution-spec and distribution).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Unauthorized,
    Denied,
    NameUnknown,
    NameInvalid,
    ManifestInvalid,
    DigestInvalid,
    BlobUploadInvalid,
    Unsupported,
    Unavailable,
    NotFound,
    /// 429: the distribution spec's `TOOMANYREQUESTS`.
    TooManyRequests,
    Unknown,
}

impl Code {
    fn as_str(self) -> &'static str {
        match self {
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Denied => "DENIED",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::ManifestInvalid => "MANIFEST_INVALID",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Code::Unsupported => "UNSUPPORTED",
            Code::Unavailable => "UNAVAILABLE",
            Code::NotFound => "NOT_FOUND",
            Code::TooManyRequests => "TOOMANYREQUESTS",
            Code::Unknown => "UNKNOWN",
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    errors: [ErrorEntry<'a>; 1],
}

#[derive(Serialize)]
struct ErrorEntry<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
}

/// A registry error reply: `{"errors":[{"code":..,"message":..,"detail":..}]}`.
pub fn error(status: u16, code: Code, message: &str, detail: Option<&str>) -> Reply {
    let body = ErrorBody {
        errors: [ErrorEntry {
            code: code.as_str(),
            message,
            detail,
        }],
    };
    // Serializing plain strings cannot fail; fall back to a fixed body rather than panic.
    let body = serde_json::to_string(&body)
        .unwrap_or_else(|_| r#"{"errors":[{"code":"UNKNOWN","message":"error"}]}"#.into());
    Reply::json(status, body)
}

/// Where clients get tokens, named in every challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Token endpoint URL, e.g. `https://registry.example.com/v2/token`.
    pub realm: String,
    /// The token service (`aud`).
    pub service: String,
}

/// Why a challenge is sent (RFC 6750 `error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeError {
    /// No credentials: no `error` parameter.
    None,
    InvalidToken,
    InsufficientScope,
}

impl Challenge {
    /// `WWW-Authenticate: Bearer realm="..",service="..",scope="..",error=".."`.
    pub fn header(&self, scope: Option<&str>, error: ChallengeError) -> String {
        let mut value = format!(
            "Bearer realm=\"{}\",service=\"{}\"",
            self.realm, self.service
        );
        if let Some(scope) = scope {
            value.push_str(&format!(",scope=\"{scope}\""));
        }
        match error {
            ChallengeError::None => {}
            ChallengeError::InvalidToken => value.push_str(",error=\"invalid_token\""),
            ChallengeError::InsufficientScope => value.push_str(",error=\"insufficient_scope\""),
        }
        value
    }

    /// A 401 `UNAUTHORIZED` reply carrying this challenge.
    pub fn unauthorized(&self, scope: Option<&str>, error: ChallengeError, message: &str) -> Reply {
        self::error(401, Code::Unauthorized, message, None)
            .with_header("www-authenticate", self.header(scope, error))
    }
}

/// The one mapping from route errors to replies.
pub fn route_error(err: &RouteError) -> Reply {
    let message = err.to_string();
    match err {
        RouteError::NotRegistry => error(404, Code::NotFound, &message, None),
        RouteError::NameInvalid | RouteError::Ambiguous => {
            error(400, Code::NameInvalid, &message, None)
        }
        RouteError::TagInvalid => error(400, Code::ManifestInvalid, &message, None),
        RouteError::DigestInvalid => error(400, Code::DigestInvalid, &message, None),
        RouteError::UploadInvalid => error(400, Code::BlobUploadInvalid, &message, None),
        RouteError::QueryInvalid(_) => error(400, Code::Unsupported, &message, None),
        RouteError::MethodNotAllowed(_) => error(405, Code::Unsupported, &message, None),
    }
}

/// The one mapping from token failures to replies: always 401 with an `invalid_token`
/// challenge, and the reason in the detail (it names a rule, never a secret).
pub fn token_error(challenge: &Challenge, scope: Option<&str>, err: &TokenError) -> Reply {
    challenge.unauthorized(
        scope,
        ChallengeError::InvalidToken,
        &format!("authentication required: {err}"),
    )
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn challenge() -> Challenge {
        Challenge {
            realm: "https://gw.example/v2/token".into(),
            service: "registry-gate".into(),
        }
    }

    #[test]
    fn challenge_headers() {
        let rows = [
            (
                "no credentials, with scope",
                Some("repository:team/app:pull"),
                ChallengeError::None,
                r#"Bearer realm="https://gw.example/v2/token",service="registry-gate",scope="repository:team/app:pull""#,
            ),
            (
                "ping without scope",
                None,
                ChallengeError::None,
                r#"Bearer realm="https://gw.example/v2/token",service="registry-gate""#,
            ),
            (
                "invalid token",
                Some("repository:a:pull"),
                ChallengeError::InvalidToken,
                r#"Bearer realm="https://gw.example/v2/token",service="registry-gate",scope="repository:a:pull",error="invalid_token""#,
            ),
            (
                "insufficient scope",
                Some("repository:a:pull"),
                ChallengeError::InsufficientScope,
                r#"Bearer realm="https://gw.example/v2/token",service="registry-gate",scope="repository:a:pull",error="insufficient_scope""#,
            ),
        ];
        for (case, scope, error, expected) in rows {
            assert_eq!(challenge().header(scope, error), expected, "{case}");
        }
    }

    #[test]
    fn error_body_is_registry_format() {
        let reply = error(
            404,
            Code::NameUnknown,
            "repository name not known to registry",
            None,
        );
        assert_eq!(reply.status, 404);
        assert_eq!(
            reply.header("Docker-Distribution-API-Version"),
            Some("registry/2.0")
        );
        let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(body["errors"][0]["code"], "NAME_UNKNOWN");
        assert_eq!(
            body["errors"][0]["message"],
            "repository name not known to registry"
        );
        assert!(body["errors"][0].get("detail").is_none());
    }

    #[test]
    fn route_errors_map_to_spec_codes() {
        let rows = [
            (RouteError::NotRegistry, 404, "NOT_FOUND"),
            (RouteError::NameInvalid, 400, "NAME_INVALID"),
            (RouteError::Ambiguous, 400, "NAME_INVALID"),
            (RouteError::TagInvalid, 400, "MANIFEST_INVALID"),
            (RouteError::DigestInvalid, 400, "DIGEST_INVALID"),
            (RouteError::UploadInvalid, 400, "BLOB_UPLOAD_INVALID"),
            (RouteError::QueryInvalid("n"), 400, "UNSUPPORTED"),
            (
                RouteError::MethodNotAllowed("TRACE".into()),
                405,
                "UNSUPPORTED",
            ),
        ];
        for (err, status, code) in rows {
            let reply = route_error(&err);
            assert_eq!(reply.status, status, "{err}");
            let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
            assert_eq!(body["errors"][0]["code"], code, "{err}");
        }
    }

    #[test]
    fn token_errors_are_401_invalid_token() {
        let reply = token_error(
            &challenge(),
            Some("repository:a:pull"),
            &TokenError::Expired,
        );
        assert_eq!(reply.status, 401);
        assert!(reply
            .header("www-authenticate")
            .unwrap()
            .ends_with(r#"error="invalid_token""#));
    }
}
