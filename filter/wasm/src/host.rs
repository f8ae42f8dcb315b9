//! The host adapter: every call into Envoy goes through here, as `proxy_wasm::hostcalls`
//! results rather than the SDK's unwrapping helpers.
//!
//! A failed host call is logged and turned into the safe fallback its caller asks for (no
//! header, no data, a failed send). Nothing here decides anything; nothing here panics.

use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{Bytes, LogLevel, MapType, MetricType, Status};
use registry_gate_core::reply::Reply;

/// Logs through Envoy (`wasm log registry_gate: ...`).
pub fn log(level: LogLevel, message: &str) {
    // If logging itself fails there is nowhere left to report it.
    let _ = hostcalls::log(level, message);
}

fn failed(what: &str, status: Status) {
    log(
        LogLevel::Warn,
        &format!("host call {what} failed: {status:?}"),
    );
}

/// Host wall clock in milliseconds since the Unix epoch (0 if the host cannot tell).
pub fn now_ms() -> u64 {
    match hostcalls::get_current_time() {
        Ok(time) => time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        Err(status) => {
            failed("get_current_time", status);
            0
        }
    }
}

/// Host wall clock in seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    now_ms() / 1000
}

/// A request header's value.
pub fn request_header(name: &str) -> Option<String> {
    hostcalls::get_map_value(MapType::HttpRequestHeaders, name).unwrap_or_else(|status| {
        failed("get_map_value", status);
        None
    })
}

/// Removes a request header; `false` if the host refused.
pub fn remove_request_header(name: &str) -> bool {
    hostcalls::remove_map_value(MapType::HttpRequestHeaders, name)
        .map_err(|status| failed("remove_map_value", status))
        .is_ok()
}

/// Sets (replaces) a request header; `false` if the host refused.
pub fn set_request_header(name: &str, value: &str) -> bool {
    hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value))
        .map_err(|status| failed("set_map_value", status))
        .is_ok()
}

/// Sends a local reply. `false` if the host refused (the caller must still not forward).
pub fn send_reply(reply: &Reply) -> bool {
    let headers: Vec<(&str, &str)> = reply
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    hostcalls::send_http_response(
        u32::from(reply.status),
        headers,
        Some(reply.body.as_bytes()),
    )
    .map_err(|status| failed("send_http_response", status))
    .is_ok()
}

/// Writes a filter-state value (`wasm.<name>` in access logs).
pub fn set_filter_state(name: &str, value: &str) {
    if let Err(status) = hostcalls::set_property(vec![name], Some(value.as_bytes())) {
        failed("set_property", status);
    }
}

/// A property of the plugin / stream.
pub fn property(path: Vec<&str>) -> Option<Bytes> {
    hostcalls::get_property(path).unwrap_or_else(|status| {
        failed("get_property", status);
        None
    })
}

/// The plugin configuration bytes.
pub fn plugin_configuration() -> Option<Bytes> {
    hostcalls::get_buffer(
        proxy_wasm::types::BufferType::PluginConfiguration,
        0,
        usize::MAX,
    )
    .unwrap_or_else(|status| {
        failed("get_buffer(plugin configuration)", status);
        None
    })
}

/// Shared data by key; an empty value counts as absent (the ABI has no delete).
pub fn shared_data(key: &str) -> Option<Bytes> {
    match hostcalls::get_shared_data(key) {
        Ok((Some(bytes), _)) if !bytes.is_empty() => Some(bytes),
        Ok(_) => None,
        Err(status) => {
            failed("get_shared_data", status);
            None
        }
    }
}

/// Overwrites shared data; `false` if the host refused.
pub fn set_shared_data(key: &str, value: &[u8]) -> bool {
    hostcalls::set_shared_data(key, Some(value), None)
        .map_err(|status| failed("set_shared_data", status))
        .is_ok()
}

/// Arms the calling root context's timer.
pub fn set_tick_period(period: Duration) {
    if let Err(status) = hostcalls::set_tick_period(period) {
        failed("set_tick_period", status);
    }
}

/// Defines a metric; `None` if the host refused (the metric is then not recorded).
pub fn define_metric(kind: MetricType, name: &str) -> Option<u32> {
    hostcalls::define_metric(kind, name)
        .map_err(|status| failed("define_metric", status))
        .ok()
}

/// Adds to a counter.
pub fn increment(metric: Option<u32>) {
    if let Some(id) = metric {
        if let Err(status) = hostcalls::increment_metric(id, 1) {
            failed("increment_metric", status);
        }
    }
}

/// Sets a gauge.
pub fn record(metric: Option<u32>, value: u64) {
    if let Some(id) = metric {
        if let Err(status) = hostcalls::record_metric(id, value) {
            failed("record_metric", status);
        }
    }
}

/// Starts an HTTP call to `cluster`; the response arrives in `on_http_call_response`.
pub fn dispatch(
    cluster: &str,
    headers: Vec<(&str, &str)>,
    timeout: Duration,
) -> Result<u32, Status> {
    hostcalls::dispatch_http_call(cluster, headers, None, vec![], timeout)
}

/// A header of the HTTP call response being delivered.
pub fn call_response_header(name: &str) -> Option<String> {
    hostcalls::get_map_value(MapType::HttpCallResponseHeaders, name).unwrap_or_else(|status| {
        failed("get_map_value(call response)", status);
        None
    })
}

/// The body of the HTTP call response being delivered.
pub fn call_response_body(size: usize) -> Option<Bytes> {
    hostcalls::get_buffer(proxy_wasm::types::BufferType::HttpCallResponseBody, 0, size)
        .unwrap_or_else(|status| {
            failed("get_buffer(call response)", status);
            None
        })
}
