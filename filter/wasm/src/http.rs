//! The HTTP contexts: each request goes to its worker, or, where the plugin is not a
//! configured filter, is refused. Fail closed: nothing here ever lets a request continue
//! without the gate's verdict.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use registry_gate_core::reply::{self, Code};

use crate::worker::{respond, Worker};

/// One request of a configured filter.
pub struct Request {
    pub worker: Rc<RefCell<Worker>>,
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match self.worker.try_borrow_mut() {
            Ok(mut worker) => worker.on_request_headers(),
            // Unreachable on Envoy's single-threaded workers; fail closed regardless.
            Err(_) => respond(&reply::error(500, Code::Unknown, "internal error", None)),
        }
    }
}

/// The HTTP context of a root that is not a configured filter: refuses everything.
pub struct Refuse;

impl Context for Refuse {}

impl HttpContext for Refuse {
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
