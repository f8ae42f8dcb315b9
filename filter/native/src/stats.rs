//! The module's Envoy stats, defined once when the filter configuration is created (Envoy
//! refuses definitions after that) and reported from the main thread. Names are the wasm
//! build's (`registry_gate.<name>`, under Envoy's `metrics_namespace`), so dashboards and
//! tests read either build the same way.
#![allow(
    unsafe_code,
    reason = "the dynamic-module ABI is a C ABI: calling it is unsafe"
)]

use core::ffi::c_void;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use registry_gate_glue::{metric_names, Level};

use crate::abi::{self, Buffer};
use crate::host;

/// Counters beside the gate's: the fetcher's, and this build's own.
const COUNTERS: [&str; 4] = [
    "snapshot.fetch_failures",
    "snapshot.rejected.too_large",
    // A hook that panicked: answered 503, and the module kept serving.
    "panics",
    "vm_starts",
];

/// Gauges.
const GAUGES: [&str; 4] = [
    "snapshot.generation",
    "snapshot.age_seconds",
    "snapshot.unconfirmed_seconds",
    "snapshot.install_ms",
];

/// Metric ids by name.
#[derive(Debug, Default)]
pub struct Stats {
    counters: HashMap<String, usize>,
    gauges: HashMap<&'static str, usize>,
    /// A name reported that was not defined up front has been logged once.
    undefined_logged: AtomicBool,
}

fn define(
    config: *mut c_void,
    name: &str,
    call: unsafe extern "C" fn(*mut c_void, Buffer, *mut Buffer, usize, *mut usize) -> u32,
) -> Option<usize> {
    let full = format!("registry_gate.{name}");
    let mut id = 0usize;
    // SAFETY: `config` is the filter configuration being created; the name names live
    // memory for the call and no labels are passed.
    let result = unsafe {
        call(
            config,
            Buffer::of(full.as_bytes()),
            core::ptr::null_mut(),
            0,
            &mut id,
        )
    };
    if result == abi::SUCCESS {
        Some(id)
    } else {
        host::log(
            Level::Warn,
            &format!("cannot define the stat {full}: result {result}"),
        );
        None
    }
}

impl Stats {
    /// Defines every metric. Call only from `config_new`.
    pub fn define(config: *mut c_void) -> Stats {
        let mut stats = Stats::default();
        let counters = metric_names(true)
            .into_iter()
            .chain(COUNTERS.iter().map(|name| (*name).to_owned()));
        for name in counters {
            if let Some(id) = define(
                config,
                &name,
                abi::envoy_dynamic_module_callback_http_filter_config_define_counter,
            ) {
                stats.counters.insert(name, id);
            }
        }
        for name in GAUGES {
            if let Some(id) = define(
                config,
                name,
                abi::envoy_dynamic_module_callback_http_filter_config_define_gauge,
            ) {
                stats.gauges.insert(name, id);
            }
        }
        stats
    }

    /// Adds `by` to the counter `registry_gate.<name>`.
    pub fn counter(&self, config: *mut c_void, name: &str, by: u64) {
        let Some(id) = self.counters.get(name) else {
            if !self.undefined_logged.swap(true, Ordering::Relaxed) {
                host::log(
                    Level::Warn,
                    &format!(
                        "the stat registry_gate.{name} was not defined at start: not reported"
                    ),
                );
            }
            return;
        };
        // SAFETY: `config` is the live filter configuration the id was defined on.
        unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_increment_counter(
                config,
                *id,
                core::ptr::null_mut(),
                0,
                by,
            );
        }
    }

    /// Sets the gauge `registry_gate.<name>`.
    pub fn gauge(&self, config: *mut c_void, name: &str, value: u64) {
        if let Some(id) = self.gauges.get(name) {
            // SAFETY: `config` is the live filter configuration the id was defined on.
            unsafe {
                abi::envoy_dynamic_module_callback_http_filter_config_set_gauge(
                    config,
                    *id,
                    core::ptr::null_mut(),
                    0,
                    value,
                );
            }
        }
    }
}
