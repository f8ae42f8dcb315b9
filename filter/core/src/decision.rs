//! The access decision: `decide(&Index, &Policy, &Identity, &RegistryRequest, Facts)`.
//!
//! A pure function over plain data. It owns the behaviour table of DESIGN §2 step 4: public
//! repositories are open to anyone; private ones need a snapshot grant for the verified
//! principal, and the token's `access` claim (when present) must cover the request too (for
//! the catalog: `registry:catalog:*`, as distribution requires); authenticated callers see
//! unknown and forbidden repositories alike; anonymous callers get a challenge naming the
//! exact scope. The Flatpak index is open to anyone and filtered to what the caller may pull
//! or, with a catalog-scoped token, list ([`may_list`]). It never verifies tokens (that is `token`), never builds error replies (that
//! is `refusal`) and never forwards anything itself: it returns what should happen.

use crate::catalog;
use crate::identity::{Identity, Principal};
use crate::index::Index;
use crate::policy::Policy;
use crate::reply::Reply;
use crate::route::{Action, RegistryRequest, Route};
use crate::scope::{access_covers, access_covers_catalog, CATALOG_SCOPE};

/// Facts about the request beyond its route that some endpoints look at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    /// The client sent `Docker-Distribution-API-Version: registry/2.0` (v2 clients get 404 on
    /// `/v1/search` so they fall back to the catalog).
    pub v2_client: bool,
}

/// What should happen to the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let it through to the upstream.
    Forward,
    /// Let it through, and cut the upstream's answer down to the repositories the caller
    /// may list ([`may_list`]): the Flatpak index, which anyone may ask for.
    ForwardFiltered,
    /// Answer it locally with content (catalog, search, `/v1/_ping`).
    Answer(Reply),
    /// Refuse it.
    Refuse(Denial),
}

/// Why the decision refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No credentials, or only anonymous ones: authenticate (for `scope`, if named).
    /// `insufficient_scope` is set when an (anonymous) token was presented.
    Unauthenticated {
        scope: Option<String>,
        insufficient_scope: bool,
    },
    /// A granted user whose token's `access` claim does not cover the request.
    InsufficientScope { scope: String },
    /// Unknown or not granted: indistinguishable on purpose.
    NameUnknown,
    /// A content host (client certificate) without a pull grant for the repository, unknown
    /// or not: the old gateway's certificate-path `401 unauthorized`, whatever the repository.
    HostUnauthorized { scope: String },
    /// Pulls are granted but this write is not.
    Denied,
    /// Not an endpoint this gateway serves to this client.
    NotFound,
    /// Writes are switched off in this deployment.
    WritesUnsupported,
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
        Route::Catalog(_) => Some(CATALOG_SCOPE.into()),
        route => route
            .repository()
            .map(|name| scope_for(name, request.action)),
    }
}

/// Decides one request.
pub fn decide(
    index: &Index,
    policy: &Policy,
    identity: &Identity,
    request: &RegistryRequest,
    facts: Facts,
) -> Decision {
    match &request.route {
        Route::Token => Decision::Forward,
        Route::V1Ping => Decision::Answer(Reply::json(200, "{}".into())),
        Route::Ping if identity.credentialed => Decision::Forward,
        Route::Ping => Decision::Refuse(Denial::Unauthenticated {
            scope: None,
            insufficient_scope: false,
        }),
        Route::Catalog(page) => {
            if !identity.credentialed {
                return Decision::Refuse(Denial::Unauthenticated {
                    scope: Some(CATALOG_SCOPE.into()),
                    insufficient_scope: false,
                });
            }
            if identity
                .access
                .as_deref()
                .is_some_and(|access| !access_covers_catalog(access))
            {
                return Decision::Refuse(Denial::InsufficientScope {
                    scope: CATALOG_SCOPE.into(),
                });
            }
            Decision::Answer(catalog::catalog(index, &identity.principal, page, policy))
        }
        Route::FlatpakIndex => Decision::ForwardFiltered,
        Route::V1Search { .. } if facts.v2_client => Decision::Refuse(Denial::NotFound),
        Route::V1Search { query, n } => Decision::Answer(catalog::search(
            index,
            &identity.principal,
            query,
            *n,
            policy,
        )),
        route => match route.repository() {
            Some(name) => decide_repository(index, policy, identity, name, request.action),
            None => Decision::Refuse(Denial::NotFound),
        },
    }
}

/// Whether `identity` may pull `name`: exactly when a pull of it would be forwarded (public,
/// or granted and covered by the token's `access` claim). Lists of repositories filtered for
/// a caller, like the Flatpak index, show these and nothing else.
pub fn may_pull(index: &Index, policy: &Policy, identity: &Identity, name: &str) -> bool {
    decide_repository(index, policy, identity, name, Action::Pull) == Decision::Forward
}

/// Whether `name` appears in a list of repositories filtered for `identity` (the Flatpak
/// index): what it [`may_pull`], and, for a token whose `access` claim covers the catalog
/// (`registry:catalog:*`), every repository the catalog lists for it: its grants and the
/// public ones.
pub fn may_list(index: &Index, policy: &Policy, identity: &Identity, name: &str) -> bool {
    may_pull(index, policy, identity, name)
        || (identity
            .access
            .as_deref()
            .is_some_and(access_covers_catalog)
            && index.permits(&identity.principal, name, Action::Pull))
}

fn decide_repository(
    index: &Index,
    policy: &Policy,
    identity: &Identity,
    name: &str,
    action: Action,
) -> Decision {
    if action != Action::Pull && !policy.allow_push {
        return Decision::Refuse(Denial::WritesUnsupported);
    }
    if action == Action::Pull && index.is_public(name) {
        return Decision::Forward;
    }
    if identity.principal == Principal::Anonymous {
        // Anonymous callers (with or without an anonymous token) learn nothing about
        // whether the repository exists: they are told to authenticate.
        return Decision::Refuse(Denial::Unauthenticated {
            scope: Some(scope_for(name, action)),
            insufficient_scope: identity.credentialed,
        });
    }
    if !index.permits(&identity.principal, name, action) {
        if action != Action::Pull && index.permits(&identity.principal, name, Action::Pull) {
            return Decision::Refuse(Denial::Denied);
        }
        if matches!(identity.principal, Principal::Host(_)) {
            return Decision::Refuse(Denial::HostUnauthorized {
                scope: scope_for(name, action),
            });
        }
        return Decision::Refuse(Denial::NameUnknown);
    }
    // Distribution's rule: a push needs `pull` and `push` in the token's scope.
    let covered = identity.access.as_deref().is_none_or(|access| {
        access_covers(access, name, action)
            && (action != Action::Push || access_covers(access, name, Action::Pull))
    });
    if !covered {
        return Decision::Refuse(Denial::InsufficientScope {
            scope: scope_for(name, action),
        });
    }
    Decision::Forward
}

#[cfg(test)]
mod tests;
