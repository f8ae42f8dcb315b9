//! The HTTP contexts: each request goes to its worker, or, where the plugin is not a
//! configured filter, is refused. Fail closed: nothing here ever lets a request continue
//! without the gate's verdict, nor a Flatpak index answer through unfiltered.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use registry_gate_core::identity::Identity;
use registry_gate_core::reply::{self, Code};

use crate::worker::{respond, Step, Worker};

/// One request of a configured filter.
pub struct Request {
    pub worker: Rc<RefCell<Worker>>,
    pub response: Response,
    /// The request was answered locally. With `allow_on_headers_stop_iteration` a paused
    /// request head is held by StopIteration, which a later `Continue` from a body or
    /// trailers callback would release to the upstream: those callbacks pause instead.
    pub answered: bool,
}

/// What the request's response needs from the filter.
#[derive(Debug, Default)]
pub enum Response {
    /// Nothing: it passes (also after a local reply, which comes through here too).
    #[default]
    Untouched,
    /// The Flatpak index: its head is still to be read.
    FilterFor(Identity),
    /// The Flatpak index: its head held, its body so far moved out of Envoy.
    Buffering(Identity, Vec<u8>),
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match self.worker.try_borrow_mut() {
            Ok(mut worker) => {
                let (action, filter_for) = worker.on_request_headers();
                if let Some(caller) = filter_for {
                    self.response = Response::FilterFor(caller);
                }
                self.answered = action != Action::Continue;
                action
            }
            // Unreachable on Envoy's single-threaded workers; fail closed regardless.
            Err(_) => {
                self.answered = true;
                internal_error()
            }
        }
    }

    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        if self.answered {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if self.answered {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Response::FilterFor(caller) = std::mem::take(&mut self.response) else {
            return Action::Continue;
        };
        let step = match self.worker.try_borrow_mut() {
            Ok(mut worker) => worker.on_flatpak_response_headers(end_of_stream),
            Err(_) => Step::Answered(internal_error()),
        };
        self.advance(step, caller, Vec::new())
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Response::Buffering(caller, mut held) = std::mem::take(&mut self.response) else {
            return Action::Continue;
        };
        let step = match self.worker.try_borrow_mut() {
            Ok(mut worker) => {
                worker.on_flatpak_response_body(&caller, &mut held, body_size, end_of_stream)
            }
            Err(_) => Step::Answered(internal_error()),
        };
        self.advance(step, caller, held)
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        // Trailers end the body: filter what was held, never release it unfiltered.
        self.on_http_response_body(0, true)
    }
}

impl Request {
    fn advance(&mut self, step: Step, caller: Identity, held: Vec<u8>) -> Action {
        match step {
            Step::Buffer => {
                self.response = Response::Buffering(caller, held);
                Action::Pause
            }
            Step::Done(action) | Step::Answered(action) => action,
        }
    }
}

fn internal_error() -> Action {
    respond(&reply::error(500, Code::Unknown, "internal error", None))
}

/// The HTTP context of a root that is not a configured filter: refuses everything.
pub struct Refuse;

impl Context for Refuse {}

impl HttpContext for Refuse {
    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        Action::Pause
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        Action::Pause
    }

    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        respond(
            &reply::error(
                503,
                Code::Unavailable,
                "registry-gate filter is not configured",
                None,
            )
            .with_header("retry-after", "5".into()),
        )
    }
}
