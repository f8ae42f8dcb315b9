//! One request and its response through the filter: the request goes to its worker, and the
//! Flatpak index's answer through the buffering state machine. Fail closed: nothing here ever
//! lets a request continue without the gate's verdict, nor a Flatpak index answer through
//! unfiltered.

use registry_gate_core::identity::Identity;

use crate::host::{Action, Host};
use crate::worker::{Held, Step, Worker};

/// The state of one HTTP stream.
#[derive(Debug, Default)]
pub struct Exchange {
    response: Response,
    /// The request was answered locally. A paused request head is held by StopIteration,
    /// which a later `Continue` from a body or trailers callback would release to the
    /// upstream: those callbacks stop instead.
    answered: bool,
}

/// What the request's response needs from the filter.
#[derive(Debug, Default)]
enum Response {
    /// Nothing: it passes (also after a local reply, which comes through here too).
    #[default]
    Untouched,
    /// The Flatpak index: its head is still to be read.
    FilterFor(Identity),
    /// The Flatpak index: its head held, its body so far moved out of Envoy.
    Buffering(Identity, Held),
}

impl Exchange {
    /// The request head, as (lower-case name, value) pairs.
    pub fn on_request_headers<'h, H: Host>(
        &mut self,
        worker: &mut Worker,
        host: &mut H,
        pairs: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
    ) -> Action {
        let (action, filter_for) = worker.on_request_headers(host, pairs);
        if let Some(caller) = filter_for {
            self.response = Response::FilterFor(caller);
        }
        self.answered(action)
    }

    /// The request was answered without the worker (the glue could not reach it): it must
    /// stay stopped.
    pub fn answered(&mut self, action: Action) -> Action {
        self.answered = action != Action::Continue;
        action
    }

    /// A request body chunk or the trailers: they pass unless the request was answered.
    pub fn on_request_rest(&self) -> Action {
        if self.answered {
            Action::Stop
        } else {
            Action::Continue
        }
    }

    /// Whether the response needs the worker at all (only the Flatpak index does).
    pub fn wants_response(&self) -> bool {
        !matches!(self.response, Response::Untouched)
    }

    pub fn on_response_headers(
        &mut self,
        worker: &mut Worker,
        host: &mut impl Host,
        end_of_stream: bool,
    ) -> Action {
        let Response::FilterFor(caller) = std::mem::take(&mut self.response) else {
            return Action::Continue;
        };
        let step = worker.on_flatpak_response_headers(host, end_of_stream);
        self.advance(step, caller)
    }

    pub fn on_response_body(
        &mut self,
        worker: &mut Worker,
        host: &mut impl Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        let Response::Buffering(caller, held) = std::mem::take(&mut self.response) else {
            return Action::Continue;
        };
        let step = worker.on_flatpak_response_body(host, &caller, held, body_size, end_of_stream);
        self.advance(step, caller)
    }

    /// Trailers end the body: filter what was held, never release it unfiltered.
    pub fn on_response_trailers(&mut self, worker: &mut Worker, host: &mut impl Host) -> Action {
        self.on_response_body(worker, host, 0, true)
    }

    fn advance(&mut self, step: Step, caller: Identity) -> Action {
        match step {
            Step::Buffer(held) => {
                self.response = Response::Buffering(caller, held);
                Action::Stop
            }
            Step::Done(action) | Step::Answered(action) => action,
        }
    }
}
