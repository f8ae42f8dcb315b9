//! The no-op proxy-wasm HTTP filter `make bench` runs as its wasm baseline: a root context
//! and an HTTP context whose request-headers callback returns `Action::Continue`. It reads
//! nothing and calls nothing, so what it costs is the price of running any Rust proxy-wasm
//! filter in Envoy (VM entry, the per-request context lifecycle) and nothing else.
//!
//! It must stay this small: any work added here would hide that much of registry-gate's own
//! cost in the comparison.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| Box::new(NoopRoot));
}}

/// Creates one [`Noop`] per request.
struct NoopRoot;

impl Context for NoopRoot {}

impl RootContext for NoopRoot {
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Noop))
    }
}

/// Lets every request through untouched.
struct Noop;

impl Context for Noop {}

impl HttpContext for Noop {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
}
