//! registry-gate as a proxy-wasm module: glue only. It moves bytes between Envoy and
//! `registry-gate-core` and holds no decision logic of its own.
//!
//! - `root`: configuration and role (HTTP filter or snapshot fetcher)
//! - `http`: one request through the core
//! - `worker`: a worker's gate, and applying its verdicts
//! - `fetcher`: the fetch loop that long-polls the sidecar into shared data (the singleton's,
//!   or the elected worker's)
//! - `elected`: a worker's candidacy for the fetcher lease, when there is no singleton
//! - `shared`: the shared-data protocol between the two
//! - `host`: every host call, straight to the ABI, every status checked
//! - `stats`: the Envoy stats the filter defines

mod crypto;
mod elected;
mod fetcher;
mod host;
mod http;
mod root;
mod shared;
mod stats;
mod worker;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    // A panic is a bug: log it loudly. The trap that follows fails the request closed (503).
    std::panic::set_hook(Box::new(|info| {
        host::log(host::Level::Critical, &format!("registry-gate panicked: {info}"));
    }));
    proxy_wasm::set_root_context(|_| Box::new(root::Root::new()));
}}
