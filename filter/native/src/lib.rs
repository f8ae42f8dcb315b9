//! registry-gate as a native Envoy dynamic module (`libregistry_gate.so`, ABI `v0.2.0`,
//! Envoy 1.40): the exported hooks, each moving bytes between Envoy and the glue that the
//! wasm build shares (`registry-gate-glue`). It decides nothing itself.
//!
//! - `abi`: the C types and the callbacks imported, declared by hand
//! - `host`: the glue's `Host` over those callbacks, for one stream
//! - `config`: the filter configuration shared by every worker thread (one index per process)
//! - `crypto`: token signatures checked with ring
//! - `fetch`: the fetcher's host (a configuration-level HTTP stream)
//! - `stats`: the Envoy stats, defined up front
//!
//! **Never unwind into Envoy.** Every hook runs inside [`guard`]: a panic is caught, logged,
//! counted (`registry_gate.panics`) and, on a request, answered 503; the module keeps
//! serving. (Built with the `native` profile, which unwinds: the workspace's release profile
//! aborts.)
#![allow(
    unsafe_code,
    reason = "a dynamic module is a C ABI: its hooks are called by Envoy and it calls Envoy"
)]

mod abi;
mod config;
mod crypto;
mod fetch;
mod host;
mod stats;

use core::ffi::{c_char, c_void};
use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};

use registry_gate_core::reply::{self, Code, Reply};
use registry_gate_glue::{Action, Exchange, Host, Level};

use crate::abi::{Buffer, Header};
use crate::config::{lock, Config, Raw};
use crate::fetch::Delivered;
use crate::host::Stream;

/// One HTTP stream's filter.
#[derive(Debug)]
struct Filter {
    /// Outlives every filter made from it (Envoy destroys a configuration after its filters).
    config: *const Config,
    /// Envoy's index of the worker thread this stream runs on.
    slot: usize,
    exchange: RefCell<Exchange>,
}

thread_local! {
    /// This thread's worker index, asked of Envoy once per thread.
    static WORKER_INDEX: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Runs `hook`; if it panics, logs the panic, runs `on_panic` and returns `fallback`. Nothing
/// unwinds past this.
fn guard<T>(fallback: T, hook: impl FnOnce() -> T, on_panic: impl FnOnce()) -> T {
    match catch_unwind(AssertUnwindSafe(hook)) {
        Ok(value) => value,
        Err(_) => {
            // The panic hook has logged the message and where it happened.
            let _ = catch_unwind(AssertUnwindSafe(on_panic));
            fallback
        }
    }
}

/// What a request gets when a hook panicked or the glue cannot be reached.
fn unavailable() -> Reply {
    reply::error(
        503,
        Code::Unavailable,
        "registry-gate failed on this request",
        None,
    )
    .with_header("retry-after", "5".into())
}

/// The filter behind Envoy's module pointer.
///
/// # Safety
/// `module` must be a pointer [`envoy_dynamic_module_on_http_filter_new`] returned and not yet
/// destroyed.
unsafe fn filter<'a>(module: *const c_void) -> &'a Filter {
    // SAFETY: the caller's guarantee; Envoy passes back exactly what `filter_new` returned.
    unsafe { &*module.cast::<Filter>() }
}

/// A request hook's panic: answer 503 and count it.
///
/// # Safety
/// As [`filter`], and `envoy` the stream's filter pointer of the hook running now.
unsafe fn panicked(envoy: *mut c_void, module: *const c_void) {
    // SAFETY: the caller's guarantees.
    let (filter, mut stream) = unsafe { (filter(module), Stream::new(envoy)) };
    // SAFETY: the configuration outlives its filters.
    let config = unsafe { &*filter.config };
    config
        .panics
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if let Err(error) = stream.send_reply(&unavailable()) {
        host::log(Level::Warn, &error.to_string());
    }
}

/// Runs a stream hook that needs the worker: `hook` gets the exchange, this thread's worker
/// and the stream. Fails closed (500, counted) if the state cannot be reached.
///
/// # Safety
/// As [`panicked`].
unsafe fn with_worker(
    envoy: *mut c_void,
    module: *const c_void,
    hook: impl FnOnce(&mut Exchange, &mut registry_gate_glue::Worker, &mut Stream) -> Action,
) -> Action {
    // SAFETY: the caller's guarantees.
    let (filter, mut stream) = unsafe { (filter(module), Stream::new(envoy)) };
    // SAFETY: the configuration outlives its filters.
    let config = unsafe { &*filter.config };
    let Ok(mut exchange) = filter.exchange.try_borrow_mut() else {
        // A hook re-entered by Envoy while another ran: never decided twice, never let through.
        return registry_gate_glue::respond(
            &mut stream,
            &reply::error(500, Code::Unknown, "internal error", None),
        );
    };
    let Some(slot) = config.slots.get(filter.slot) else {
        let reply = reply::error(500, Code::Unknown, "internal error", None);
        return exchange.answered(registry_gate_glue::respond(&mut stream, &reply));
    };
    let mut slot = lock(slot);
    hook(&mut exchange, &mut slot.worker, &mut stream)
}

fn headers_status(action: Action) -> u32 {
    match action {
        Action::Continue => abi::CONTINUE,
        Action::Stop => abi::STOP_ITERATION,
    }
}

fn body_status(action: Action) -> u32 {
    match action {
        Action::Continue => abi::CONTINUE,
        Action::Stop => abi::STOP_ITERATION_NO_BUFFER,
    }
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    guard(
        core::ptr::null(),
        || {
            std::panic::set_hook(Box::new(|info| {
                host::log(Level::Critical, &format!("registry-gate panicked: {info}"));
            }));
            abi::ABI_VERSION.as_ptr().cast()
        },
        || {},
    )
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    envoy: *mut c_void,
    _name: Buffer,
    config: Buffer,
) -> *const c_void {
    guard(
        core::ptr::null(),
        || {
            // SAFETY: Envoy's view of the configuration bytes, valid for this hook; parsed
            // (copied) before it returns.
            let bytes = unsafe { config.bytes() };
            // SAFETY: called on the main thread, as the ABI requires.
            let workers = unsafe { abi::envoy_dynamic_module_callback_get_concurrency() };
            match Config::new(Raw(envoy), bytes, workers as usize) {
                Ok(config) => Box::into_raw(Box::new(config)).cast_const().cast(),
                Err(err) => {
                    host::log(
                        Level::Critical,
                        &format!("registry-gate configuration refused: {err}"),
                    );
                    core::ptr::null()
                }
            }
        },
        || {},
    )
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: *const c_void) {
    guard(
        (),
        || {
            if !config.is_null() {
                // SAFETY: `config` came from `Box::into_raw` in `config_new`, and Envoy
                // destroys it once, after its filters.
                drop(unsafe { Box::from_raw(config.cast::<Config>().cast_mut()) });
            }
        },
        || {},
    );
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    _envoy: *mut c_void,
    config: *const c_void,
    _event_id: u64,
) {
    with_config(config, Config::on_tick);
}

// The fetch stream's hooks: the answer is copied out piece by piece as it arrives.

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_headers(
    _envoy: *mut c_void,
    config: *const c_void,
    stream_id: u64,
    headers: *const Header,
    headers_size: usize,
    _end_stream: bool,
) {
    receive(config, stream_id, |delivered, limit| {
        // SAFETY: the array Envoy passed to this hook, with its length.
        unsafe { delivered.add_headers(headers, headers_size, limit) }
    });
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_data(
    _envoy: *mut c_void,
    config: *const c_void,
    stream_id: u64,
    data: *const Buffer,
    data_count: usize,
    _end_stream: bool,
) {
    receive(config, stream_id, |delivered, limit| {
        // SAFETY: the array Envoy passed to this hook, with its length.
        unsafe { delivered.add_data(data, data_count, limit) }
    });
}

/// The snapshot answer carries no trailers; any are ignored.
#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_trailers() {}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_complete(
    _envoy: *mut c_void,
    config: *const c_void,
    stream_id: u64,
) {
    stream_end(config, stream_id, true);
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_reset(
    _envoy: *mut c_void,
    config: *const c_void,
    stream_id: u64,
    _reason: u32,
) {
    stream_end(config, stream_id, false);
}

fn receive(config: *const c_void, stream_id: u64, add: impl FnOnce(&mut Delivered, usize)) {
    with_config(config, |config| config.receive(stream_id, add));
}

fn stream_end(config: *const c_void, stream_id: u64, complete: bool) {
    with_config(config, |config| config.on_stream_end(stream_id, complete));
}

/// Runs a configuration-level hook on the configuration Envoy passed it, behind [`guard`].
fn with_config(config: *const c_void, hook: impl FnOnce(&Config)) {
    guard(
        (),
        || {
            // SAFETY: Envoy passes the live configuration `config_new` returned.
            let config = unsafe { &*config.cast::<Config>() };
            hook(config);
        },
        || {},
    );
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: *const c_void,
    envoy: *mut c_void,
) -> *const c_void {
    guard(
        core::ptr::null(),
        || {
            let slot = WORKER_INDEX.with(|index| match index.get() {
                Some(slot) => slot,
                None => {
                    // SAFETY: `envoy` is the new stream's filter, on its worker thread.
                    let asked = unsafe {
                        abi::envoy_dynamic_module_callback_http_filter_get_worker_index(envoy)
                    } as usize;
                    index.set(Some(asked));
                    asked
                }
            });
            let filter = Filter {
                config: config.cast::<Config>(),
                slot,
                exchange: RefCell::new(Exchange::default()),
            };
            Box::into_raw(Box::new(filter)).cast_const().cast()
        },
        || {},
    )
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_destroy(module: *const c_void) {
    guard(
        (),
        || {
            if !module.is_null() {
                // SAFETY: `module` came from `Box::into_raw` in `filter_new`; Envoy destroys
                // it once, when no hook of it runs.
                drop(unsafe { Box::from_raw(module.cast::<Filter>().cast_mut()) });
            }
        },
        || {},
    );
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    envoy: *mut c_void,
    module: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    guard(
        abi::STOP_ITERATION,
        || {
            // SAFETY: Envoy's pointers for this hook.
            let action = unsafe {
                with_worker(envoy, module, |exchange, worker, stream| {
                    let headers = match stream.request_headers() {
                        Ok(headers) => headers,
                        Err(error) => return exchange.answered(worker.fail(stream, error)),
                    };
                    // Within the `unsafe` above: views into Envoy's request headers, read by
                    // the gate before the verdict sets any header, all within this hook.
                    let pairs = headers.iter().map(|header| header.pair());
                    exchange.on_request_headers(worker, stream, pairs)
                })
            };
            headers_status(action)
        },
        // SAFETY: Envoy's pointers for this hook.
        || unsafe { panicked(envoy, module) },
    )
}

/// The request's body chunk or trailers: they pass unless the request was answered.
fn request_rest(module: *const c_void) -> Action {
    // SAFETY: Envoy's module pointer for this hook.
    let filter = unsafe { filter(module) };
    match filter.exchange.try_borrow() {
        Ok(exchange) => exchange.on_request_rest(),
        Err(_) => Action::Stop,
    }
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _envoy: *mut c_void,
    module: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    guard(
        abi::STOP_ITERATION_NO_BUFFER,
        || body_status(request_rest(module)),
        || {},
    )
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _envoy: *mut c_void,
    module: *const c_void,
) -> u32 {
    guard(
        abi::STOP_ITERATION,
        || headers_status(request_rest(module)),
        || {},
    )
}

/// Whether the stream's response needs the worker (only the Flatpak index's does).
fn wants_response(module: *const c_void) -> bool {
    // SAFETY: Envoy's module pointer for this hook.
    let filter = unsafe { filter(module) };
    filter
        .exchange
        .try_borrow()
        .map_or(true, |exchange| exchange.wants_response())
}

/// A response hook: nothing to do unless the response needs the worker (the Flatpak index),
/// else `hook` through [`with_worker`]; `status` maps its action (and, on a panic, `Stop`).
fn response_hook(
    envoy: *mut c_void,
    module: *const c_void,
    status: fn(Action) -> u32,
    hook: impl FnOnce(&mut Exchange, &mut registry_gate_glue::Worker, &mut Stream) -> Action,
) -> u32 {
    guard(
        status(Action::Stop),
        || {
            if !wants_response(module) {
                return abi::CONTINUE;
            }
            // SAFETY: Envoy's pointers for the hook running now.
            status(unsafe { with_worker(envoy, module, hook) })
        },
        // SAFETY: Envoy's pointers for the hook running now.
        || unsafe { panicked(envoy, module) },
    )
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    envoy: *mut c_void,
    module: *const c_void,
    end_of_stream: bool,
) -> u32 {
    response_hook(envoy, module, headers_status, |exchange, worker, stream| {
        exchange.on_response_headers(worker, stream, end_of_stream)
    })
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    envoy: *mut c_void,
    module: *const c_void,
    end_of_stream: bool,
) -> u32 {
    response_hook(envoy, module, body_status, |exchange, worker, stream| {
        let size = stream.received_response_body_size();
        exchange.on_response_body(worker, stream, size, end_of_stream)
    })
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    envoy: *mut c_void,
    module: *const c_void,
) -> u32 {
    response_hook(envoy, module, headers_status, |exchange, worker, stream| {
        exchange.on_response_trailers(worker, stream)
    })
}

// Hooks Envoy requires of every HTTP filter module that this filter has no use for: it starts
// no per-stream callouts, streams or schedules and is never a terminal filter. Declared
// without the arguments they ignore (the C calling convention lets a callee do so).

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete() {}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done() {}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers() {}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data() {}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers() {}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete() {}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset() {}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_scheduled() {}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark() {}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark() {}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::guard;

    #[test]
    fn a_panicking_hook_returns_its_fallback_and_runs_the_panic_path() {
        let panics = AtomicU64::new(0);
        let status = guard(
            1u32,
            || -> u32 { panic!("a bug") },
            || {
                panics.fetch_add(1, Ordering::Relaxed);
            },
        );
        assert_eq!(status, 1);
        assert_eq!(panics.load(Ordering::Relaxed), 1);
        // A hook that does not panic returns its own value and skips the panic path.
        assert_eq!(guard(1u32, || 0, || panic!("not called")), 0);
        // A panic on the panic path does not unwind either.
        assert_eq!(guard(1u32, || -> u32 { panic!("a") }, || panic!("b")), 1);
    }
}
