//! The HTTP context: reads the request head, asks the core, and either forwards the request
//! (with the verified identity header and the client's copy removed) or answers locally.
//!
//! Fail closed: any step that cannot complete ends in a local reply, never in forwarding.
//! It decides nothing itself.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use registry_gate_core::decision::{
    self, credential, decide, Credential, Decision, Facts, Identity, Outcome, Principal,
};
use registry_gate_core::reply::{self, Reply};
use registry_gate_core::route::{parse_request, RegistryRequest, Route};
use registry_gate_core::token::{verify, TokenError, Verified};

use crate::host;
use crate::worker::{Readiness, Worker};

/// One request.
pub struct Request {
    pub worker: Rc<RefCell<Worker>>,
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let mut worker = self.worker.borrow_mut();
        let identity_header = worker.settings.identity_header.clone();
        // The upstream must only ever see the identity this filter verified.
        if !host::remove_request_header(&identity_header) {
            return answer(
                &mut worker,
                &reply::error(500, reply::Code::Unavailable, "internal error", None),
                None,
            );
        }
        match handle(&mut worker) {
            Ok(Forward {
                identity,
                repository,
                login,
            }) => {
                // The token endpoint needs the client's Basic credentials; everything else
                // upstream only ever sees the verified identity.
                let keep_authorization = login || worker.settings.forward_authorization;
                let forwarded =
                    host::set_request_header(&identity_header, &identity.principal.label())
                        && (keep_authorization || host::remove_request_header("authorization"));
                if !forwarded {
                    let failure =
                        reply::error(500, reply::Code::Unavailable, "internal error", None);
                    return answer(&mut worker, &failure, None);
                }
                record(
                    &identity.principal.label(),
                    repository.as_deref(),
                    Outcome::Allowed,
                );
                worker.stats.decision(Outcome::Allowed);
                Action::Continue
            }
            Err((reply, principal)) => answer(&mut worker, &reply, principal.as_ref()),
        }
    }
}

/// Sends a local reply and records it.
fn answer(worker: &mut Worker, reply: &Reply, principal: Option<&Principal>) -> Action {
    let outcome = Outcome::of_reply(reply);
    worker.stats.decision(outcome);
    let label = principal.map_or_else(|| "unknown".to_string(), Principal::label);
    record(&label, None, outcome);
    // Whether or not the host accepted the reply, the request must not continue.
    host::send_reply(reply);
    Action::Pause
}

/// Access-log metadata (`%FILTER_STATE(wasm.registry_gate.*:PLAIN)%`).
fn record(identity: &str, repository: Option<&str>, outcome: Outcome) {
    host::set_filter_state("registry_gate.identity", identity);
    host::set_filter_state("registry_gate.repository", repository.unwrap_or("-"));
    host::set_filter_state("registry_gate.decision", outcome.as_str());
}

type Denied = (Reply, Option<Principal>);

/// A request to let through.
struct Forward {
    identity: Identity,
    repository: Option<String>,
    /// A login at the token endpoint: its credentials go to the sidecar untouched.
    login: bool,
}

/// Runs the request through the core. `Ok` means forward.
fn handle(worker: &mut Worker) -> Result<Forward, Denied> {
    let method = host::request_header(":method").unwrap_or_default();
    let path = host::request_header(":path").unwrap_or_default();
    let request = parse_request(&method, &path).map_err(|e| (reply::route_error(&e), None))?;
    if request.route == Route::Token {
        return Ok(Forward {
            identity: Identity::anonymous(),
            repository: None,
            login: true,
        });
    }
    let now = host::now_secs();
    if worker.installed.is_none() {
        worker.refresh();
    }
    let settings = Rc::clone(&worker.settings);
    match worker.readiness(now) {
        Readiness::Ready => {}
        Readiness::NoSnapshot => {
            return Err((
                reply::unavailable(settings.retry_after_secs, "no access snapshot loaded yet"),
                None,
            ))
        }
        Readiness::Stale { unconfirmed_secs } => {
            return Err((
                reply::unavailable(
                    settings.retry_after_secs,
                    &format!("access snapshot not confirmed for {unconfirmed_secs} s"),
                ),
                None,
            ))
        }
    }
    let identity = identify(worker, &request, now)?;
    let Some(installed) = worker.installed.clone() else {
        return Err((
            reply::unavailable(settings.retry_after_secs, "no access snapshot loaded yet"),
            None,
        ));
    };
    // Only `/v1/search` looks at the client's API-version header: read it only there.
    let facts = Facts {
        v2_client: matches!(request.route, Route::V1Search { .. })
            && host::request_header("docker-distribution-api-version")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("registry/2.0")),
    };
    match decide(
        &installed.index,
        &settings.policy,
        &identity,
        &request,
        facts,
    ) {
        Decision::Forward => Ok(Forward {
            repository: request.route.repository().map(str::to_string),
            identity,
            login: false,
        }),
        Decision::Reply(reply) => Err((reply, Some(identity.principal))),
    }
}

/// Establishes the caller from verified credentials only.
fn identify(worker: &mut Worker, request: &RegistryRequest, now: u64) -> Result<Identity, Denied> {
    let header = host::request_header("authorization");
    let token = match credential(header.as_deref()) {
        Credential::None => return Ok(Identity::anonymous()),
        Credential::Bearer(token) => token,
        Credential::Invalid => {
            worker.stats.count("token_failures.bad_format");
            return Err((refusal(worker, request, &TokenError::BadFormat), None));
        }
    };
    let verified = match worker.cache.get(token, now) {
        Some(verified) => verified,
        None => {
            let Some(installed) = worker.installed.clone() else {
                return Err((refusal(worker, request, &TokenError::UnknownKey), None));
            };
            match verify(&worker.settings.verifier, &installed.keys, token, now) {
                Ok(verified) => {
                    worker.cache.insert(token, verified.clone(), now);
                    verified
                }
                Err(err) => {
                    worker
                        .stats
                        .count(&format!("token_failures.{}", err.reason()));
                    return Err((refusal(worker, request, &err), None));
                }
            }
        }
    };
    Ok(identity_of(verified))
}

fn refusal(worker: &Worker, request: &RegistryRequest, err: &TokenError) -> Reply {
    let scope = decision::request_scope(request);
    reply::token_error(&worker.settings.policy.challenge, scope.as_deref(), err)
}

fn identity_of(verified: Verified) -> Identity {
    let principal = if verified.subject.is_empty() {
        Principal::Anonymous
    } else {
        Principal::User(verified.subject)
    };
    Identity {
        principal,
        access: verified.access,
        credentialed: true,
    }
}

/// The HTTP context of a root that is not a configured filter: refuses everything.
pub struct Refuse;

impl Context for Refuse {}

impl HttpContext for Refuse {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        host::send_reply(&reply::unavailable(
            5,
            "registry-gate filter is not configured",
        ));
        Action::Pause
    }
}
