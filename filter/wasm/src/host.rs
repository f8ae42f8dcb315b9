//! The host adapter: every call into Envoy goes through here, straight to the proxy-wasm ABI,
//! with every status the host returns checked.
//!
//! The SDK's `hostcalls` helpers panic on any status they do not expect and on bytes that are
//! not UTF-8 (`get_map_value`), and a panic traps the VM: every request on that worker then
//! fails until Envoy reloads it. So this module declares the ABI functions itself, reads
//! every value as bytes, and turns every failure into a [`HostError`] or the safe fallback
//! its caller asks for. Nothing here decides anything; nothing here panics. Each call is
//! counted ([`calls`]) so the stats can report host calls per request.
//!
//! This is the crate's one ABI boundary, so it is the one module allowed `unsafe` code; each
//! unsafe call passes pointers derived from live slices and locals of the stated sizes.
#![allow(
    unsafe_code,
    reason = "the proxy-wasm ABI is a C ABI: calling it is unsafe"
)]

use std::cell::Cell;
use std::time::Duration;

use registry_gate_core::reply::Reply;

pub use registry_gate_glue::{HostError, Level};

/// A compare-and-swap write lost: someone else wrote the value since it was read.
pub fn is_cas_mismatch(error: &HostError) -> bool {
    error.status == CAS_MISMATCH
}

/// The ABI's number of a log level.
fn level_number(level: Level) -> u32 {
    match level {
        Level::Info => 2,
        Level::Warn => 3,
        Level::Critical => 5,
    }
}

/// Header maps of the ABI that the filter reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Map {
    Request = 0,
    Response = 2,
    CallResponse = 6,
}

/// Buffers of the ABI that the filter reads (and, for the response body, replaces).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Buffer {
    ResponseBody = 1,
    CallResponseBody = 4,
    PluginConfiguration = 7,
}

/// Metric kinds of the ABI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter = 0,
    Gauge = 1,
}

const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
const CAS_MISMATCH: u32 = 8;

thread_local! {
    static CALLS: Cell<u64> = const { Cell::new(0) };
}

/// Host calls made by this VM so far.
pub fn calls() -> u64 {
    CALLS.with(Cell::get)
}

fn counted<T>(result: T) -> T {
    CALLS.with(|calls| calls.set(calls.get().wrapping_add(1)));
    result
}

/// A value that may be absent: `NOT_FOUND` is `None`, any other failure is logged and `None`.
fn optional(status: u32, bytes: Vec<u8>, call: &'static str) -> Option<Vec<u8>> {
    match status {
        OK => Some(bytes),
        NOT_FOUND => None,
        status => {
            failed(HostError { call, status });
            None
        }
    }
}

fn check(call: &'static str, status: u32) -> Result<(), HostError> {
    if status == OK {
        Ok(())
    } else {
        Err(HostError { call, status })
    }
}

/// The raw ABI. Every function here is an import of the `env` module that Envoy provides;
/// the signatures are the proxy-wasm ABI 0.2.1 ones, with every enum passed as its `u32`
/// (so an unexpected status is a number to check, never an invalid enum value).
mod abi {
    #[link(wasm_import_module = "env")]
    extern "C" {
        pub fn proxy_log(level: u32, data: *const u8, size: usize) -> u32;
        pub fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
        pub fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
        pub fn proxy_get_buffer_bytes(
            buffer: u32,
            start: usize,
            max_size: usize,
            data: *mut *mut u8,
            size: *mut usize,
        ) -> u32;
        pub fn proxy_set_buffer_bytes(
            buffer: u32,
            start: usize,
            size: usize,
            data: *const u8,
            data_size: usize,
        ) -> u32;
        pub fn proxy_get_header_map_pairs(map: u32, data: *mut *mut u8, size: *mut usize) -> u32;
        pub fn proxy_get_header_map_value(
            map: u32,
            key: *const u8,
            key_size: usize,
            data: *mut *mut u8,
            size: *mut usize,
        ) -> u32;
        pub fn proxy_replace_header_map_value(
            map: u32,
            key: *const u8,
            key_size: usize,
            value: *const u8,
            value_size: usize,
        ) -> u32;
        pub fn proxy_remove_header_map_value(map: u32, key: *const u8, key_size: usize) -> u32;
        pub fn proxy_get_property(
            path: *const u8,
            path_size: usize,
            data: *mut *mut u8,
            size: *mut usize,
        ) -> u32;
        pub fn proxy_set_property(
            path: *const u8,
            path_size: usize,
            value: *const u8,
            value_size: usize,
        ) -> u32;
        pub fn proxy_get_shared_data(
            key: *const u8,
            key_size: usize,
            data: *mut *mut u8,
            size: *mut usize,
            cas: *mut u32,
        ) -> u32;
        pub fn proxy_set_shared_data(
            key: *const u8,
            key_size: usize,
            value: *const u8,
            value_size: usize,
            cas: u32,
        ) -> u32;
        pub fn proxy_send_local_response(
            status: u32,
            details: *const u8,
            details_size: usize,
            body: *const u8,
            body_size: usize,
            headers: *const u8,
            headers_size: usize,
            grpc_status: i32,
        ) -> u32;
        pub fn proxy_define_metric(
            kind: u32,
            name: *const u8,
            name_size: usize,
            id: *mut u32,
        ) -> u32;
        pub fn proxy_increment_metric(id: u32, offset: i64) -> u32;
        pub fn proxy_record_metric(id: u32, value: u64) -> u32;
        pub fn proxy_call_foreign_function(
            name: *const u8,
            name_size: usize,
            arguments: *const u8,
            arguments_size: usize,
            results: *mut *mut u8,
            results_size: *mut usize,
        ) -> u32;
    }

    /// Takes ownership of bytes the host wrote into memory it obtained from this module's
    /// `proxy_on_memory_allocate` (the SDK's, which hands out a boxed `[u8]` of exactly
    /// `size` bytes). A null pointer is no data.
    pub fn owned(data: *mut u8, size: usize) -> Vec<u8> {
        if data.is_null() {
            return Vec::new();
        }
        // SAFETY: the host returned `data`/`size` from one `proxy_on_memory_allocate(size)`
        // call, which allocated exactly `size` bytes with the global allocator and gave up
        // ownership; nothing else refers to it.
        unsafe { Vec::from_raw_parts(data, size, size) }
    }

    /// Runs an ABI call that returns bytes through out-pointers.
    pub fn returning_bytes(call: impl FnOnce(*mut *mut u8, *mut usize) -> u32) -> (u32, Vec<u8>) {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        let status = call(&mut data, &mut size);
        let bytes = owned(data, size);
        (status, bytes)
    }

    macro_rules! call {
        ($e:expr) => {
            // SAFETY: every pointer passed is derived from a live slice or local of the
            // stated size, and the host writes only through the out-pointers given.
            unsafe { $e }
        };
    }
    pub(crate) use call;
}

use abi::call;

/// Logs through Envoy (`wasm log registry_gate: ...`). If logging fails there is nowhere
/// left to report it.
pub fn log(level: Level, message: &str) {
    let _ = counted(call!(abi::proxy_log(
        level_number(level),
        message.as_ptr(),
        message.len()
    )));
}

fn failed(error: HostError) {
    log(Level::Warn, &error.to_string());
}

/// The proxy-wasm host as the glue sees it: every call goes to the functions below.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wasm;

impl registry_gate_glue::Env for Wasm {
    fn now_secs(&mut self) -> u64 {
        now_secs()
    }

    fn now_ms(&mut self) -> u64 {
        now_ms()
    }

    fn log(&mut self, level: Level, message: &str) {
        log(level, message);
    }
}

impl registry_gate_glue::Host for Wasm {
    fn set_request_header(&mut self, name: &str, value: &[u8]) -> Result<(), HostError> {
        set_request_header(name, value)
    }

    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError> {
        remove_request_header(name)
    }

    fn response_header(&mut self, name: &str) -> Result<Option<Vec<u8>>, HostError> {
        response_header(name)
    }

    fn remove_response_header(&mut self, name: &str) -> Result<(), HostError> {
        remove_response_header(name)
    }

    fn take_response_body(
        &mut self,
        size: usize,
        held: &mut Vec<u8>,
        end_of_stream: bool,
    ) -> Result<(), HostError> {
        held.extend_from_slice(&response_body(size)?);
        // Paused with `StopIterationAndBuffer`, Envoy would keep every chunk: empty its
        // buffer, so that only the next chunk is there next time.
        if end_of_stream {
            Ok(())
        } else {
            replace_response_body(&[])
        }
    }

    fn send_reply(&mut self, reply: &Reply) -> Result<(), HostError> {
        send_reply(reply)
    }

    fn set_filter_state(&mut self, name: &str, value: &[u8]) -> Result<(), HostError> {
        set_filter_state(name, value)
    }

    fn peer_certificate(&mut self) -> Option<Vec<u8>> {
        property(&registry_gate_glue::PEER_CERTIFICATE_SUBJECT)
    }
}

/// Host wall clock in whole seconds since the Unix epoch (0 if the host cannot tell, which
/// makes every token look unexpired for no one: verification then refuses `nbf`/`iat` in the
/// future and the snapshot looks stale, so the gate fails closed).
pub fn now_secs() -> u64 {
    now_ms() / 1000
}

/// Host wall clock in milliseconds since the Unix epoch (0 if the host cannot tell).
pub fn now_ms() -> u64 {
    let mut nanos: u64 = 0;
    let status = counted(call!(abi::proxy_get_current_time_nanoseconds(&mut nanos)));
    match check("get_current_time", status) {
        Ok(()) => nanos / 1_000_000,
        Err(error) => {
            failed(error);
            0
        }
    }
}

/// Arms the calling root context's timer.
pub fn set_tick_period(period: Duration) {
    let millis = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
    let status = counted(call!(abi::proxy_set_tick_period_milliseconds(millis)));
    if let Err(error) = check("set_tick_period", status) {
        failed(error);
    }
}

fn buffer(kind: Buffer, max: usize, name: &'static str) -> Result<Vec<u8>, HostError> {
    let (status, bytes) = abi::returning_bytes(|data, size| {
        counted(call!(abi::proxy_get_buffer_bytes(
            kind as u32,
            0,
            max,
            data,
            size
        )))
    });
    match status {
        OK => Ok(bytes),
        // No buffer at all (e.g. an empty configuration or body).
        NOT_FOUND => Ok(Vec::new()),
        status => Err(HostError { call: name, status }),
    }
}

/// The plugin configuration bytes (empty if there are none or the host refuses).
pub fn plugin_configuration() -> Vec<u8> {
    buffer(
        Buffer::PluginConfiguration,
        usize::MAX,
        "get_buffer(plugin configuration)",
    )
    .unwrap_or_else(|error| {
        failed(error);
        Vec::new()
    })
}

/// The body of the HTTP call response being delivered.
pub fn call_response_body(size: usize) -> Result<Vec<u8>, HostError> {
    buffer(Buffer::CallResponseBody, size, "get_buffer(call response)")
}

/// The HTTP response body buffered so far (the whole body once `end_of_stream` is seen and
/// every earlier chunk was buffered), at most `size` bytes.
pub fn response_body(size: usize) -> Result<Vec<u8>, HostError> {
    buffer(Buffer::ResponseBody, size, "get_buffer(response body)")
}

/// Replaces the whole buffered HTTP response body with `bytes`. Envoy replaces the buffer
/// when the replaced range starts at 0 and covers all of it; `usize::MAX` always covers it.
pub fn replace_response_body(bytes: &[u8]) -> Result<(), HostError> {
    let status = counted(call!(abi::proxy_set_buffer_bytes(
        Buffer::ResponseBody as u32,
        0,
        usize::MAX,
        bytes.as_ptr(),
        bytes.len()
    )));
    check("set_buffer(response body)", status)
}

/// Calls the host's foreign function `name` (Envoy: `verify_signature`, `compress`, ...) with
/// serialized `arguments`; its serialized result, or the status (`NOT_FOUND` when the host
/// has no such function). Not logged: the caller decides what a failure means.
pub fn foreign_function(name: &str, arguments: &[u8]) -> Result<Vec<u8>, HostError> {
    let (status, bytes) = abi::returning_bytes(|data, size| {
        counted(call!(abi::proxy_call_foreign_function(
            name.as_ptr(),
            name.len(),
            arguments.as_ptr(),
            arguments.len(),
            data,
            size
        )))
    });
    check("call_foreign_function", status).map(|()| bytes)
}

/// A property, as bytes (`None` if absent or refused).
pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    let serialized = path.join("\0");
    let (status, bytes) = abi::returning_bytes(|data, size| {
        counted(call!(abi::proxy_get_property(
            serialized.as_ptr(),
            serialized.len(),
            data,
            size
        )))
    });
    optional(status, bytes, "get_property")
}

/// Writes a filter-state value (`wasm.<name>` in access logs).
pub fn set_filter_state(name: &str, value: &[u8]) -> Result<(), HostError> {
    let status = counted(call!(abi::proxy_set_property(
        name.as_ptr(),
        name.len(),
        value.as_ptr(),
        value.len()
    )));
    check("set_property", status)
}

/// A request's headers as one serialized map, read in a single host call.
#[derive(Debug)]
pub struct HeaderMap {
    bytes: Vec<u8>,
}

impl HeaderMap {
    /// The (name, value) pairs, as bytes. A map the host serialized inconsistently yields
    /// the pairs up to the inconsistency and nothing after it.
    pub fn pairs(&self) -> Pairs<'_> {
        let count = read_u32(&self.bytes, 0).unwrap_or(0);
        Pairs {
            bytes: &self.bytes,
            index: 0,
            count,
            data: 4usize.saturating_add((count as usize).saturating_mul(8)),
        }
    }
}

/// Iterator over a serialized header map: `u32` count, then a (`u32` name size, `u32` value
/// size) per pair, then each name and value followed by a NUL.
#[derive(Debug)]
pub struct Pairs<'a> {
    bytes: &'a [u8],
    index: u32,
    count: u32,
    data: usize,
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.index >= self.count {
            return None;
        }
        let sizes = 4usize.saturating_add((self.index as usize).saturating_mul(8));
        let name_size = read_u32(self.bytes, sizes)? as usize;
        let value_size = read_u32(self.bytes, sizes.saturating_add(4))? as usize;
        let name_end = self.data.checked_add(name_size)?;
        let name = self.bytes.get(self.data..name_end)?;
        let value_start = name_end.checked_add(1)?;
        let value_end = value_start.checked_add(value_size)?;
        let value = self.bytes.get(value_start..value_end)?;
        self.data = value_end.checked_add(1)?;
        self.index += 1;
        Some((name, value))
    }
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let end = at.checked_add(4)?;
    let word: [u8; 4] = bytes.get(at..end)?.try_into().ok()?;
    Some(u32::from_le_bytes(word))
}

fn serialize_map(pairs: &[(&str, &[u8])]) -> Vec<u8> {
    let size = pairs
        .iter()
        .map(|(name, value)| name.len() + value.len() + 10)
        .sum::<usize>()
        + 4;
    let mut bytes = Vec::with_capacity(size);
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    bytes.extend_from_slice(&len(pairs.len()));
    for (name, value) in pairs {
        bytes.extend_from_slice(&len(name.len()));
        bytes.extend_from_slice(&len(value.len()));
    }
    for (name, value) in pairs {
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(value);
        bytes.push(0);
    }
    bytes
}

/// All request headers, pseudo-headers included, in one host call.
pub fn request_headers() -> Result<HeaderMap, HostError> {
    let (status, bytes) = abi::returning_bytes(|data, size| {
        counted(call!(abi::proxy_get_header_map_pairs(
            Map::Request as u32,
            data,
            size
        )))
    });
    check("get_header_map_pairs", status)?;
    Ok(HeaderMap { bytes })
}

/// Sets (replaces) a request header.
pub fn set_request_header(name: &str, value: &[u8]) -> Result<(), HostError> {
    let status = counted(call!(abi::proxy_replace_header_map_value(
        Map::Request as u32,
        name.as_ptr(),
        name.len(),
        value.as_ptr(),
        value.len()
    )));
    check("replace_header_map_value", status)
}

/// Removes every copy of a request header.
pub fn remove_request_header(name: &str) -> Result<(), HostError> {
    let status = counted(call!(abi::proxy_remove_header_map_value(
        Map::Request as u32,
        name.as_ptr(),
        name.len()
    )));
    check("remove_header_map_value", status)
}

/// A response header, as bytes (`None` if absent; any other failure is an error, so the
/// caller can fail closed).
pub fn response_header(name: &str) -> Result<Option<Vec<u8>>, HostError> {
    let (status, bytes) = abi::returning_bytes(|data, size| {
        counted(call!(abi::proxy_get_header_map_value(
            Map::Response as u32,
            name.as_ptr(),
            name.len(),
            data,
            size
        )))
    });
    match status {
        OK => Ok(Some(bytes)),
        NOT_FOUND => Ok(None),
        status => Err(HostError {
            call: "get_header_map_value(response)",
            status,
        }),
    }
}

/// Removes every copy of a response header.
pub fn remove_response_header(name: &str) -> Result<(), HostError> {
    let status = counted(call!(abi::proxy_remove_header_map_value(
        Map::Response as u32,
        name.as_ptr(),
        name.len()
    )));
    check("remove_header_map_value(response)", status)
}

/// A header of the HTTP call response being delivered, as bytes.
pub fn call_response_header(name: &str) -> Option<Vec<u8>> {
    let (status, bytes) = abi::returning_bytes(|data, size| {
        counted(call!(abi::proxy_get_header_map_value(
            Map::CallResponse as u32,
            name.as_ptr(),
            name.len(),
            data,
            size
        )))
    });
    optional(status, bytes, "get_header_map_value(call response)")
}

/// Sends a local reply.
pub fn send_reply(reply: &Reply) -> Result<(), HostError> {
    let headers: Vec<(&str, &[u8])> = reply
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
        .collect();
    let headers = serialize_map(&headers);
    let details = "registry_gate";
    let status = counted(call!(abi::proxy_send_local_response(
        u32::from(reply.status),
        details.as_ptr(),
        details.len(),
        reply.body.as_ptr(),
        reply.body.len(),
        headers.as_ptr(),
        headers.len(),
        -1
    )));
    check("send_local_response", status)
}

/// Shared data by key; an empty value counts as absent (the ABI has no delete).
pub fn shared_data(key: &str) -> Option<Vec<u8>> {
    match shared_data_with_cas(key) {
        Ok((Some(bytes), _)) if !bytes.is_empty() => Some(bytes),
        Ok(_) => None,
        Err(error) => {
            failed(error);
            None
        }
    }
}

/// Shared data by key with its compare-and-swap token, for a later
/// [`set_shared_data_if`]: `(None, 0)` if the key was never written. An empty value is
/// returned as such.
pub fn shared_data_with_cas(key: &str) -> Result<(Option<Vec<u8>>, u32), HostError> {
    let mut cas: u32 = 0;
    let (status, bytes) = abi::returning_bytes(|data, size| {
        counted(call!(abi::proxy_get_shared_data(
            key.as_ptr(),
            key.len(),
            data,
            size,
            &mut cas
        )))
    });
    match status {
        OK => Ok((Some(bytes), cas)),
        NOT_FOUND => Ok((None, 0)),
        status => Err(HostError {
            call: "get_shared_data",
            status,
        }),
    }
}

/// Overwrites shared data.
pub fn set_shared_data(key: &str, value: &[u8]) -> Result<(), HostError> {
    set_shared_data_if(key, value, 0)
}

/// Writes shared data only if it still carries the token `cas` read with it (0: always).
/// A lost race is an error for which [`is_cas_mismatch`] holds. A key never
/// written before is written whatever `cas` says (the host has no create-if-absent).
pub fn set_shared_data_if(key: &str, value: &[u8], cas: u32) -> Result<(), HostError> {
    let status = counted(call!(abi::proxy_set_shared_data(
        key.as_ptr(),
        key.len(),
        value.as_ptr(),
        value.len(),
        cas
    )));
    check("set_shared_data", status)
}

/// Eight random bytes from the host (WASI `random_get`, which Envoy serves from BoringSSL),
/// or `None` if it refuses.
pub fn random_u64() -> Option<u64> {
    let mut bytes = [0u8; 8];
    match counted(getrandom::getrandom(&mut bytes)) {
        Ok(()) => Some(u64::from_le_bytes(bytes)),
        Err(error) => {
            log(Level::Warn, &format!("random_get failed: {error}"));
            None
        }
    }
}

/// A random 64-bit id as 16 hex digits (a lease holder, a VM in the access log), or `None`
/// if the host gave no randomness.
pub fn random_id() -> Option<String> {
    random_u64().map(|random| format!("{random:016x}"))
}

/// Defines a metric; `None` if the host refused (the metric is then not recorded).
pub fn define_metric(kind: MetricKind, name: &str) -> Option<u32> {
    let mut id: u32 = 0;
    let status = counted(call!(abi::proxy_define_metric(
        kind as u32,
        name.as_ptr(),
        name.len(),
        &mut id
    )));
    match check("define_metric", status) {
        Ok(()) => Some(id),
        Err(error) => {
            failed(error);
            None
        }
    }
}

/// Adds to a counter.
pub fn increment(metric: Option<u32>, by: u64) {
    if let Some(id) = metric {
        let by = i64::try_from(by).unwrap_or(i64::MAX);
        let status = counted(call!(abi::proxy_increment_metric(id, by)));
        if let Err(error) = check("increment_metric", status) {
            failed(error);
        }
    }
}

/// Sets a gauge.
pub fn record(metric: Option<u32>, value: u64) {
    if let Some(id) = metric {
        let status = counted(call!(abi::proxy_record_metric(id, value)));
        if let Err(error) = check("record_metric", status) {
            failed(error);
        }
    }
}

/// Starts an HTTP call to `cluster`; the response arrives in `on_http_call_response`.
///
/// The one SDK host call left: the SDK's dispatcher must register the call's token to route
/// its response to the root context, and only `hostcalls::dispatch_http_call` can. It maps
/// every status Envoy's `httpCall` returns (ok, bad argument, internal failure); it is made
/// only by the fetcher, never on a client's request.
pub fn dispatch(
    cluster: &str,
    headers: Vec<(&str, &str)>,
    timeout: Duration,
) -> Result<u32, HostError> {
    counted(proxy_wasm::hostcalls::dispatch_http_call(
        cluster,
        headers,
        None,
        vec![],
        timeout,
    ))
    .map_err(|status| HostError {
        call: "http_call",
        status: status as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_maps_round_trip_and_tolerate_garbage() {
        let pairs: [(&str, &[u8]); 3] = [
            (":path", b"/v2/"),
            ("authorization", b"Bearer \xff\xfe"),
            ("empty", b""),
        ];
        let map = HeaderMap {
            bytes: serialize_map(&pairs),
        };
        let read: Vec<(&[u8], &[u8])> = map.pairs().collect();
        let want: Vec<(&[u8], &[u8])> = pairs.iter().map(|(n, v)| (n.as_bytes(), *v)).collect();
        assert_eq!(read, want);
        // Cut anywhere before the last value's terminating NUL, a pair goes missing.
        for cut in 0..map.bytes.len() - 1 {
            let truncated = HeaderMap {
                bytes: map.bytes[..cut].to_vec(),
            };
            assert!(truncated.pairs().count() < pairs.len(), "cut at {cut}");
        }
        let lying = HeaderMap {
            bytes: [u32::MAX.to_le_bytes(), u32::MAX.to_le_bytes()].concat(),
        };
        assert_eq!(lying.pairs().count(), 0);
        assert_eq!(HeaderMap { bytes: vec![] }.pairs().count(), 0);
    }
}
