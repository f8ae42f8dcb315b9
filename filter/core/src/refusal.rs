//! One refusal vocabulary: every reason the gate answers a request itself instead of
//! forwarding it, mapped in exactly one place to the reply the client gets and to the
//! [`Outcome`] that stats and access logs count.
//!
//! Nothing here decides whether to refuse; the gate and the decision do. Nothing elsewhere
//! builds an error reply for a refused request or works an outcome out from a status code.

use thiserror::Error;

use crate::decision::Denial;
use crate::reply::{self, Challenge, ChallengeError, Code, Reply};
use crate::route::RouteError;
use crate::token::TokenError;

/// Why the gate refuses a request.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    #[error("no access snapshot loaded yet")]
    NoSnapshot,
    #[error("access snapshot not confirmed for {unconfirmed_secs} s")]
    Stale { unconfirmed_secs: u64 },
    #[error(transparent)]
    Head(#[from] HeadError),
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error("authentication required: {error}")]
    Token {
        #[source]
        error: TokenError,
        /// The scope the request needs, named in the challenge.
        scope: Option<String>,
    },
    #[error("{0:?}")]
    Denied(Denial),
    /// The glue could not carry out a verdict (a host call failed). Never the client's fault.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// A request head that cannot be read as a registry request.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HeadError {
    #[error("header {0} is not valid text")]
    NotText(&'static str),
    #[error("header {0} is missing")]
    Missing(&'static str),
    /// `X-HTTP-Method-Override` and friends: an upstream honouring one would act on a method
    /// this gate never decided on.
    #[error("method override header {0} is not accepted")]
    MethodOverride(&'static str),
    /// A header spelled like one the gate trusts or sets, but for case or `_` in place of
    /// `-` (`x_registry_gate_identity`): an upstream that folds the spelling (gunicorn turns
    /// `_` into `-`) would read it as the real one.
    #[error("header {0} is spelled like the gate's own and is not accepted")]
    Lookalike(&'static str),
}

/// What happened to a request, for stats (`decisions.<outcome>`) and access logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Allowed,
    Answered,
    Unauthorized,
    NotFound,
    Denied,
    Invalid,
    Unsupported,
    Unavailable,
    /// The gateway failed, not the request.
    Internal,
}

impl Outcome {
    /// Every outcome, in a fixed order (stats are defined up front in this order).
    pub const ALL: [Outcome; 9] = [
        Outcome::Allowed,
        Outcome::Answered,
        Outcome::Unauthorized,
        Outcome::NotFound,
        Outcome::Denied,
        Outcome::Invalid,
        Outcome::Unsupported,
        Outcome::Unavailable,
        Outcome::Internal,
    ];

    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Answered => "answered",
            Outcome::Unauthorized => "unauthorized",
            Outcome::NotFound => "not_found",
            Outcome::Denied => "denied",
            Outcome::Invalid => "invalid",
            Outcome::Unsupported => "unsupported",
            Outcome::Unavailable => "unavailable",
            Outcome::Internal => "internal",
        }
    }

    /// Position in [`Outcome::ALL`].
    pub fn position(self) -> usize {
        match self {
            Outcome::Allowed => 0,
            Outcome::Answered => 1,
            Outcome::Unauthorized => 2,
            Outcome::NotFound => 3,
            Outcome::Denied => 4,
            Outcome::Invalid => 5,
            Outcome::Unsupported => 6,
            Outcome::Unavailable => 7,
            Outcome::Internal => 8,
        }
    }
}

impl Refusal {
    /// The outcome this refusal counts as.
    pub fn outcome(&self) -> Outcome {
        match self {
            Refusal::NoSnapshot | Refusal::Stale { .. } => Outcome::Unavailable,
            Refusal::Head(HeadError::MethodOverride(_)) => Outcome::Unsupported,
            Refusal::Head(_) => Outcome::Invalid,
            Refusal::Route(RouteError::NotRegistry) => Outcome::NotFound,
            Refusal::Route(RouteError::MethodNotAllowed(_)) => Outcome::Unsupported,
            Refusal::Route(_) => Outcome::Invalid,
            Refusal::Token { .. } => Outcome::Unauthorized,
            Refusal::Denied(denial) => match denial {
                Denial::Unauthenticated { .. }
                | Denial::InsufficientScope { .. }
                | Denial::HostUnauthorized { .. } => Outcome::Unauthorized,
                Denial::NameUnknown | Denial::NotFound => Outcome::NotFound,
                Denial::Denied => Outcome::Denied,
                Denial::WritesUnsupported => Outcome::Unsupported,
            },
            Refusal::Internal(_) => Outcome::Internal,
        }
    }

    /// The reply the client gets: the registry error format, with a Docker challenge on
    /// every 401 and `Retry-After` on every 503.
    pub fn reply(&self, challenge: &Challenge, retry_after_secs: u64) -> Reply {
        let message = self.to_string();
        match self {
            Refusal::NoSnapshot | Refusal::Stale { .. } => {
                reply::error(503, Code::Unavailable, &message, None)
                    .with_header("retry-after", retry_after_secs.to_string())
            }
            Refusal::Head(_) => reply::error(400, Code::Unsupported, &message, None),
            Refusal::Route(error) => reply::route_error(error),
            Refusal::Token { error, scope } => {
                reply::token_error(challenge, scope.as_deref(), error)
            }
            Refusal::Denied(denial) => denied(challenge, denial),
            Refusal::Internal(_) => reply::error(500, Code::Unknown, "internal error", None),
        }
    }
}

fn denied(challenge: &Challenge, denial: &Denial) -> Reply {
    match denial {
        Denial::Unauthenticated {
            scope,
            insufficient_scope,
        } => {
            let error = if *insufficient_scope {
                ChallengeError::InsufficientScope
            } else {
                ChallengeError::None
            };
            challenge.unauthorized(scope.as_deref(), error, "authentication required")
        }
        Denial::InsufficientScope { scope } => challenge.unauthorized(
            Some(scope),
            ChallengeError::InsufficientScope,
            "token does not cover the requested access",
        ),
        // The old gateway answered a content host's refused request `401 unauthorized`; here
        // in the registry error format, with the challenge every 401 carries.
        Denial::HostUnauthorized { scope } => {
            challenge.unauthorized(Some(scope), ChallengeError::None, "unauthorized")
        }
        Denial::NameUnknown => reply::error(
            404,
            Code::NameUnknown,
            "repository name not known to registry",
            None,
        ),
        Denial::Denied => reply::error(
            403,
            Code::Denied,
            "requested access to the resource is denied",
            None,
        ),
        Denial::NotFound => reply::error(404, Code::NotFound, "not found", None),
        Denial::WritesUnsupported => reply::error(
            405,
            Code::Unsupported,
            "pushing and deleting content is not supported through this gateway",
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    struct Row {
        case: &'static str,
        refusal: Refusal,
        status: u16,
        code: &'static str,
        outcome: Outcome,
    }

    #[test]
    fn every_refusal_maps_to_one_reply_and_outcome() {
        let rows = [
            Row {
                case: "no snapshot",
                refusal: Refusal::NoSnapshot,
                status: 503,
                code: "UNAVAILABLE",
                outcome: Outcome::Unavailable,
            },
            Row {
                case: "stale",
                refusal: Refusal::Stale {
                    unconfirmed_secs: 9,
                },
                status: 503,
                code: "UNAVAILABLE",
                outcome: Outcome::Unavailable,
            },
            Row {
                case: "header not text",
                refusal: Refusal::Head(HeadError::NotText(":path")),
                status: 400,
                code: "UNSUPPORTED",
                outcome: Outcome::Invalid,
            },
            Row {
                case: "method override",
                refusal: Refusal::Head(HeadError::MethodOverride("x-http-method-override")),
                status: 400,
                code: "UNSUPPORTED",
                outcome: Outcome::Unsupported,
            },
            Row {
                case: "lookalike header",
                refusal: Refusal::Head(HeadError::Lookalike("identity header")),
                status: 400,
                code: "UNSUPPORTED",
                outcome: Outcome::Invalid,
            },
            Row {
                case: "not a registry path",
                refusal: Refusal::Route(RouteError::NotRegistry),
                status: 404,
                code: "NOT_FOUND",
                outcome: Outcome::NotFound,
            },
            Row {
                case: "bad name",
                refusal: Refusal::Route(RouteError::NameInvalid),
                status: 400,
                code: "NAME_INVALID",
                outcome: Outcome::Invalid,
            },
            Row {
                case: "method not allowed",
                refusal: Refusal::Route(RouteError::MethodNotAllowed("TRACE".into())),
                status: 405,
                code: "UNSUPPORTED",
                outcome: Outcome::Unsupported,
            },
            Row {
                case: "bad token",
                refusal: Refusal::Token {
                    error: TokenError::Expired,
                    scope: None,
                },
                status: 401,
                code: "UNAUTHORIZED",
                outcome: Outcome::Unauthorized,
            },
            Row {
                case: "no credentials",
                refusal: Refusal::Denied(Denial::Unauthenticated {
                    scope: None,
                    insufficient_scope: false,
                }),
                status: 401,
                code: "UNAUTHORIZED",
                outcome: Outcome::Unauthorized,
            },
            Row {
                case: "insufficient scope",
                refusal: Refusal::Denied(Denial::InsufficientScope {
                    scope: "repository:a:pull".into(),
                }),
                status: 401,
                code: "UNAUTHORIZED",
                outcome: Outcome::Unauthorized,
            },
            Row {
                case: "name unknown",
                refusal: Refusal::Denied(Denial::NameUnknown),
                status: 404,
                code: "NAME_UNKNOWN",
                outcome: Outcome::NotFound,
            },
            Row {
                case: "write denied",
                refusal: Refusal::Denied(Denial::Denied),
                status: 403,
                code: "DENIED",
                outcome: Outcome::Denied,
            },
            Row {
                case: "not found",
                refusal: Refusal::Denied(Denial::NotFound),
                status: 404,
                code: "NOT_FOUND",
                outcome: Outcome::NotFound,
            },
            Row {
                case: "writes off",
                refusal: Refusal::Denied(Denial::WritesUnsupported),
                status: 405,
                code: "UNSUPPORTED",
                outcome: Outcome::Unsupported,
            },
            Row {
                case: "internal",
                refusal: Refusal::Internal("set header"),
                status: 500,
                code: "UNKNOWN",
                outcome: Outcome::Internal,
            },
        ];
        let challenge = Challenge {
            realm: "https://gw/v2/token".into(),
            service: "svc".into(),
        };
        for row in rows {
            let reply = row.refusal.reply(&challenge, 7);
            assert_eq!(reply.status, row.status, "{}", row.case);
            let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
            assert_eq!(body["errors"][0]["code"], row.code, "{}", row.case);
            assert_eq!(row.refusal.outcome(), row.outcome, "{}", row.case);
            assert_eq!(
                reply.header("www-authenticate").is_some(),
                reply.status == 401,
                "{}",
                row.case
            );
            assert_eq!(
                reply.header("retry-after") == Some("7"),
                reply.status == 503,
                "{}",
                row.case
            );
        }
        for (position, outcome) in Outcome::ALL.iter().enumerate() {
            assert_eq!(outcome.position(), position, "{outcome:?}");
        }
    }
}
