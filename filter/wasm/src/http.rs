//! The HTTP contexts: each request goes to its worker through the glue's
//! [`Exchange`], or, where the plugin is not a configured filter, is refused. Fail closed:
//! nothing here ever lets a request continue without the gate's verdict, nor a Flatpak index
//! answer through unfiltered.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use registry_gate_core::reply::{self, Code};
use registry_gate_glue::{respond, Exchange};

use crate::host::{self, Wasm};
use crate::worker::WasmWorker;

/// One request of a configured filter.
pub struct Request {
    pub worker: Rc<RefCell<WasmWorker>>,
    pub exchange: Exchange,
}

/// The proxy-wasm action of the glue's.
fn action(action: registry_gate_glue::Action) -> Action {
    match action {
        registry_gate_glue::Action::Continue => Action::Continue,
        registry_gate_glue::Action::Stop => Action::Pause,
    }
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Ok(mut worker) = self.worker.try_borrow_mut() else {
            // Unreachable on Envoy's single-threaded workers; fail closed regardless.
            return action(self.exchange.answered(internal_error()));
        };
        let headers = match host::request_headers() {
            Ok(headers) => headers,
            Err(error) => {
                let answered = worker.worker.fail(&mut Wasm, error);
                return action(self.exchange.answered(answered));
            }
        };
        if worker.worker.gate().generation().is_none() {
            // Just started: the timer may not have run yet.
            worker.refresh();
        }
        action(
            self.exchange
                .on_request_headers(&mut worker.worker, &mut Wasm, headers.pairs()),
        )
    }

    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        action(self.exchange.on_request_rest())
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        action(self.exchange.on_request_rest())
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if !self.exchange.wants_response() {
            return Action::Continue;
        }
        match self.worker.try_borrow_mut() {
            Ok(mut worker) => action(self.exchange.on_response_headers(
                &mut worker.worker,
                &mut Wasm,
                end_of_stream,
            )),
            Err(_) => action(internal_error()),
        }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.exchange.wants_response() {
            return Action::Continue;
        }
        match self.worker.try_borrow_mut() {
            Ok(mut worker) => action(self.exchange.on_response_body(
                &mut worker.worker,
                &mut Wasm,
                body_size,
                end_of_stream,
            )),
            Err(_) => action(internal_error()),
        }
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        if !self.exchange.wants_response() {
            return Action::Continue;
        }
        match self.worker.try_borrow_mut() {
            Ok(mut worker) => action(
                self.exchange
                    .on_response_trailers(&mut worker.worker, &mut Wasm),
            ),
            Err(_) => action(internal_error()),
        }
    }
}

fn internal_error() -> registry_gate_glue::Action {
    respond(
        &mut Wasm,
        &reply::error(500, Code::Unknown, "internal error", None),
    )
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
        action(respond(
            &mut Wasm,
            &reply::error(
                503,
                Code::Unavailable,
                "registry-gate filter is not configured",
                None,
            )
            .with_header("retry-after", "5".into()),
        ))
    }
}
