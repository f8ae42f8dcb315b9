//! The root context: reads the plugin configuration and takes one of two roles, chosen by
//! the plugin's `root_id`: the HTTP filter (one per worker) or the snapshot fetcher (the
//! singleton service). A filter whose configuration carries a `fetcher` object is also a
//! candidate for the fetcher lease (`elected`): the worker holding it fetches as well.
//!
//! `on_configure` refuses only a configuration that can never work; a missing snapshot is
//! transient state and never fails configuration.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use registry_gate_core::config::{FetcherConfig, Settings};

use crate::elected::Candidate;
use crate::fetcher::{self, Fetcher};
use crate::host::{self, Level};
use crate::http::Request;
use crate::worker::WasmWorker;

/// `root_id` of the fetcher service; any other root id is the HTTP filter.
pub const FETCHER_ROOT_ID: &str = "registry_gate_fetcher";

enum Role {
    Unconfigured,
    Filter {
        worker: Rc<RefCell<WasmWorker>>,
        /// With a `fetcher` object: this root's candidacy for the fetcher lease.
        candidate: Option<Box<Candidate>>,
    },
    Fetcher(Box<Fetcher>),
}

/// The root context of either role.
pub struct Root {
    role: Role,
}

impl Root {
    pub fn new() -> Root {
        Root {
            role: Role::Unconfigured,
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        match &mut self.role {
            Role::Fetcher(fetcher) => fetcher.on_response(token_id, body_size),
            Role::Filter {
                candidate: Some(candidate),
                ..
            } => candidate.on_response(token_id, body_size),
            Role::Filter {
                candidate: None, ..
            }
            | Role::Unconfigured => {}
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let root_id = host::property(&["plugin_root_id"]).unwrap_or_default();
        let config = host::plugin_configuration();
        if root_id == FETCHER_ROOT_ID.as_bytes() {
            match FetcherConfig::from_json(&config) {
                Ok(settings) => {
                    self.role = Role::Fetcher(Box::new(Fetcher::new(settings)));
                    host::set_tick_period(fetcher::TICK);
                    true
                }
                Err(err) => {
                    host::log(Level::Critical, &err.to_string());
                    false
                }
            }
        } else {
            match Settings::from_json(&config) {
                Ok(settings) => {
                    let period = Duration::from_millis(settings.snapshot_check_ms);
                    let candidate = settings
                        .elected_fetcher
                        .clone()
                        .map(|elected| Box::new(Candidate::new(elected)));
                    let worker = WasmWorker::new(settings);
                    self.role = Role::Filter {
                        worker: Rc::new(RefCell::new(worker)),
                        candidate,
                    };
                    host::set_tick_period(period);
                    true
                }
                Err(err) => {
                    host::log(Level::Critical, &err.to_string());
                    false
                }
            }
        }
    }

    fn on_tick(&mut self) {
        match &mut self.role {
            Role::Filter { worker, candidate } => {
                // Fetch first: a generation this tick publishes is installed in the same tick.
                if let Some(candidate) = candidate {
                    candidate.on_tick();
                }
                if let Ok(mut worker) = worker.try_borrow_mut() {
                    worker.on_tick();
                }
            }
            Role::Fetcher(fetcher) => fetcher.on_tick(),
            Role::Unconfigured => {}
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        match &self.role {
            Role::Filter { worker, .. } => Some(Box::new(Request {
                worker: Rc::clone(worker),
                exchange: registry_gate_glue::Exchange::default(),
            })),
            // Not configured as a filter: a context that refuses every request.
            Role::Fetcher(_) | Role::Unconfigured => Some(Box::new(crate::http::Refuse)),
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
