//! The access decision: `decide(&Index, &Policy, &Identity, &RegistryRequest)`.
//!
//! A pure function over plain data. It owns the behaviour table of DESIGN §2 step 4: public
//! repositories are open to anyone; private ones need a snapshot grant for the verified
//! principal, and the token's `access` claim (when present) must cover the request too;
//! authenticated callers see unknown and forbidden repositories alike; anonymous callers get
//! a challenge naming the exact scope. It never verifies tokens (that is `token`) and never
//! forwards anything itself: it returns what the glue should do.

use crate::catalog;
use crate::index::Index;
use crate::reply::{self, Challenge, ChallengeError, Code, Reply};
use crate::route::{Action, RegistryRequest, Route};
use crate::scope::{access_covers, AccessEntry};

/// Who the caller is, as established by verified credentials only.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    Anonymous,
    /// A user named by a verified token's `sub`.
    User(String),
    /// A content host named by its verified client certificate.
    Host(String),
}

impl Principal {
    /// `anonymous`, `user:<name>` or `host:<uuid>`: the value of the identity header sent
    /// upstream and of the access-log metadata.
    pub fn label(&self) -> String {
        match self {
            Principal::Anonymous => "anonymous".into(),
            Principal::User(user) => format!("user:{user}"),
            Principal::Host(host) => format!("host:{host}"),
        }
    }
}

/// The verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub principal: Principal,
    /// The token's `access` claim; `None` when the credential carries no such limit.
    pub access: Option<Vec<AccessEntry>>,
    /// Whether any credential was verified (a token, even an anonymous one, or a certificate).
    pub credentialed: bool,
}

impl Identity {
    /// No credentials at all.
    pub fn anonymous() -> Identity {
        Identity {
            principal: Principal::Anonymous,
            access: None,
            credentialed: false,
        }
    }
}

/// What the `Authorization` header holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    None,
    Bearer(&'a str),
    /// Present but not a single bearer token (Basic, empty, two spaces, ...).
    Invalid,
}

/// Reads an `Authorization` header value: scheme compared case-insensitively (RFC 7235), then
/// exactly one space and one non-empty token without whitespace.
pub fn credential(header: Option<&str>) -> Credential<'_> {
    let Some(value) = header else {
        return Credential::None;
    };
    let Some((scheme, token)) = value.split_once(' ') else {
        return Credential::Invalid;
    };
    if !scheme.eq_ignore_ascii_case("bearer")
        || token.is_empty()
        || token
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Credential::Invalid;
    }
    Credential::Bearer(token)
}

/// Deployment policy the decision needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub challenge: Challenge,
    /// Writes (push, delete) are refused with `UNSUPPORTED` unless this is set.
    pub allow_push: bool,
    /// Catalog page size when `n` is absent.
    pub catalog_default_page: usize,
    /// Largest catalog / search page served.
    pub catalog_max_page: usize,
}

/// Facts about the request beyond its route that some endpoints look at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    /// The client sent `Docker-Distribution-API-Version: registry/2.0` (v2 clients get 404 on
    /// `/v1/search` so they fall back to the catalog).
    pub v2_client: bool,
}

/// Outcome label for stats and access logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    Answered,
    Unauthorized,
    NotFound,
    Denied,
    Invalid,
    Unsupported,
    Unavailable,
}

impl Outcome {
    /// Every outcome, for defining stats up front.
    pub const ALL: [Outcome; 8] = [
        Outcome::Allowed,
        Outcome::Answered,
        Outcome::Unauthorized,
        Outcome::NotFound,
        Outcome::Denied,
        Outcome::Invalid,
        Outcome::Unsupported,
        Outcome::Unavailable,
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
        }
    }

    /// The outcome a local reply stands for, from its status.
    pub fn of_reply(reply: &Reply) -> Outcome {
        match reply.status {
            200..=299 => Outcome::Answered,
            401 => Outcome::Unauthorized,
            403 => Outcome::Denied,
            404 => Outcome::NotFound,
            405 => Outcome::Unsupported,
            503 => Outcome::Unavailable,
            _ => Outcome::Invalid,
        }
    }
}

/// What the glue must do with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let it through to the upstream.
    Forward,
    /// Answer locally.
    Reply(Reply),
}

impl Decision {
    /// Its stats / access-log label.
    pub fn outcome(&self) -> Outcome {
        match self {
            Decision::Forward => Outcome::Allowed,
            Decision::Reply(reply) => Outcome::of_reply(reply),
        }
    }
}

/// The scope a client needs for `action` on `name`, as named in challenges.
pub fn scope_for(name: &str, action: Action) -> String {
    match action {
        Action::Pull => format!("repository:{name}:pull"),
        Action::Push => format!("repository:{name}:pull,push"),
        Action::Delete => format!("repository:{name}:delete"),
    }
}

/// The challenge scope of a request (for token failures too).
pub fn request_scope(request: &RegistryRequest) -> Option<String> {
    match &request.route {
        Route::Catalog(_) => Some("registry:catalog:*".into()),
        route => route
            .repository()
            .map(|name| scope_for(name, request.action)),
    }
}

const NAME_UNKNOWN: &str = "repository name not known to registry";

/// Decides one request.
pub fn decide(
    index: &Index,
    policy: &Policy,
    identity: &Identity,
    request: &RegistryRequest,
    facts: Facts,
) -> Decision {
    let challenge = &policy.challenge;
    match &request.route {
        Route::Token => Decision::Forward,
        Route::V1Ping => Decision::Reply(Reply::json(200, "{}".into())),
        Route::Ping => {
            if identity.credentialed {
                Decision::Forward
            } else {
                Decision::Reply(challenge.unauthorized(
                    None,
                    ChallengeError::None,
                    "authentication required",
                ))
            }
        }
        Route::Catalog(page) => {
            if identity.credentialed {
                Decision::Reply(catalog::catalog(index, &identity.principal, page, policy))
            } else {
                Decision::Reply(challenge.unauthorized(
                    request_scope(request).as_deref(),
                    ChallengeError::None,
                    "authentication required",
                ))
            }
        }
        Route::V1Search { query, n } => {
            if facts.v2_client {
                Decision::Reply(reply::error(404, Code::NotFound, "not found", None))
            } else {
                Decision::Reply(catalog::search(
                    index,
                    &identity.principal,
                    query,
                    *n,
                    policy,
                ))
            }
        }
        route => match route.repository() {
            Some(name) => decide_repository(index, policy, identity, name, request.action),
            None => Decision::Reply(reply::error(404, Code::NotFound, "not found", None)),
        },
    }
}

fn decide_repository(
    index: &Index,
    policy: &Policy,
    identity: &Identity,
    name: &str,
    action: Action,
) -> Decision {
    let scope = scope_for(name, action);
    if action != Action::Pull && !policy.allow_push {
        return Decision::Reply(reply::error(
            405,
            Code::Unsupported,
            "pushing and deleting content is not supported through this gateway",
            None,
        ));
    }
    if action == Action::Pull && index.is_public(name) {
        return Decision::Forward;
    }
    let challenge = &policy.challenge;
    if identity.principal == Principal::Anonymous {
        // Anonymous callers (with or without an anonymous token) learn nothing about
        // whether the repository exists: they are told to authenticate.
        let error = if identity.credentialed {
            ChallengeError::InsufficientScope
        } else {
            ChallengeError::None
        };
        return Decision::Reply(challenge.unauthorized(
            Some(&scope),
            error,
            "authentication required",
        ));
    }
    if !index.permits(&identity.principal, name, action) {
        if action != Action::Pull && index.permits(&identity.principal, name, Action::Pull) {
            return Decision::Reply(reply::error(
                403,
                Code::Denied,
                "requested access to the resource is denied",
                None,
            ));
        }
        return Decision::Reply(reply::error(404, Code::NameUnknown, NAME_UNKNOWN, None));
    }
    // Distribution's rule: a push needs `pull` and `push` in the token's scope.
    let covered = identity.access.as_deref().is_none_or(|access| {
        access_covers(access, name, action)
            && (action != Action::Push || access_covers(access, name, Action::Pull))
    });
    if !covered {
        return Decision::Reply(challenge.unauthorized(
            Some(&scope),
            ChallengeError::InsufficientScope,
            "token does not cover the requested access",
        ));
    }
    Decision::Forward
}

#[cfg(test)]
mod tests;
