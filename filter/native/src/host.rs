//! The glue's [`Host`] over the dynamic-module ABI, for one HTTP stream: every call goes
//! straight to Envoy, every result is checked, nothing here panics or decides.
//!
//! The clock is the process's own (`SystemTime`, a vDSO read): a native module needs no host
//! call for the time.
#![allow(
    unsafe_code,
    reason = "the dynamic-module ABI is a C ABI: calling it is unsafe"
)]

use core::ffi::c_void;
use std::time::{SystemTime, UNIX_EPOCH};

use registry_gate_core::reply::Reply;
use registry_gate_glue::{Env, Host, HostError, Level};

use crate::abi::{self, Buffer, Header};

/// The status a failed boolean callback is reported with.
const FAILED: u32 = 1;

/// A boolean callback's answer as the glue takes it.
fn succeeded(done: bool, call: &'static str) -> Result<(), HostError> {
    if done {
        Ok(())
    } else {
        Err(HostError {
            call,
            status: FAILED,
        })
    }
}

/// Logs through Envoy (`[dynamic_modules]`). If logging fails there is nowhere left to report
/// it.
pub fn log(level: Level, message: &str) {
    let level = match level {
        Level::Info => abi::LOG_INFO,
        Level::Warn => abi::LOG_WARN,
        Level::Critical => abi::LOG_CRITICAL,
    };
    // SAFETY: both buffers name live memory for the duration of the call, which only reads
    // them.
    unsafe {
        abi::envoy_dynamic_module_callback_log_v2(
            level,
            Buffer::of(message.as_bytes()),
            Buffer::of(file!().as_bytes()),
            line!(),
        );
    }
}

/// Wall clock in milliseconds since the Unix epoch (0 if the clock is before it: tokens then
/// look issued in the future and snapshots stale, so the gate fails closed).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// The process clock and Envoy's log, for the parts that run on no stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct Process;

impl Env for Process {
    fn now_secs(&mut self) -> u64 {
        now_ms() / 1000
    }

    fn now_ms(&mut self) -> u64 {
        now_ms()
    }

    fn log(&mut self, level: Level, message: &str) {
        log(level, message);
    }
}

/// One HTTP stream's filter in Envoy (`envoy_dynamic_module_type_http_filter_envoy_ptr`),
/// valid for the hook it was passed to.
#[derive(Debug)]
pub struct Stream {
    filter: *mut c_void,
}

impl Stream {
    /// # Safety
    /// `filter` must be the filter pointer Envoy passed to the hook running now, and the
    /// `Stream` must not outlive that hook.
    pub unsafe fn new(filter: *mut c_void) -> Stream {
        Stream { filter }
    }

    /// Every request header, pseudo-headers included, as views into Envoy's header map
    /// (no copy), valid until the hook returns or a header is set ([`Header::pair`] reads
    /// them). Two host calls: the count, then the headers.
    pub fn request_headers(&mut self) -> Result<Vec<Header>, HostError> {
        // SAFETY: `filter` is the live filter of this hook.
        let count = unsafe {
            abi::envoy_dynamic_module_callback_http_get_headers_size(
                self.filter,
                abi::REQUEST_HEADER,
            )
        };
        let mut headers = vec![Header::EMPTY; count];
        // SAFETY: `headers` has room for the `count` headers Envoy writes, and Envoy reported
        // `count` for this very map in this hook.
        let read = unsafe {
            abi::envoy_dynamic_module_callback_http_get_headers(
                self.filter,
                abi::REQUEST_HEADER,
                headers.as_mut_ptr(),
            )
        };
        succeeded(count == 0 || read, "get_headers")?;
        Ok(headers)
    }

    fn set(&mut self, header_type: u32, name: &str, value: &[u8]) -> Result<(), HostError> {
        // SAFETY: both buffers name live memory for the duration of the call.
        let done = unsafe {
            abi::envoy_dynamic_module_callback_http_set_header(
                self.filter,
                header_type,
                Buffer::of(name.as_bytes()),
                Buffer::of(value),
            )
        };
        succeeded(done, "set_header")
    }

    /// The size of the response body chunk this hook received.
    pub fn received_response_body_size(&mut self) -> usize {
        // SAFETY: `filter` is the live filter of this hook.
        unsafe {
            abi::envoy_dynamic_module_callback_http_get_body_size(
                self.filter,
                abi::RECEIVED_RESPONSE_BODY,
            )
        }
    }
}

/// A stream's clock and log are the process's.
impl Env for Stream {
    fn now_secs(&mut self) -> u64 {
        Process.now_secs()
    }

    fn now_ms(&mut self) -> u64 {
        Process.now_ms()
    }

    fn log(&mut self, level: Level, message: &str) {
        Process.log(level, message);
    }
}

impl Host for Stream {
    fn set_request_header(&mut self, name: &str, value: &[u8]) -> Result<(), HostError> {
        // Envoy removes a header set to nothing: never the identity's meaning.
        succeeded(!value.is_empty(), "set_header(empty value)")?;
        self.set(abi::REQUEST_HEADER, name, value)
    }

    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError> {
        self.set(abi::REQUEST_HEADER, name, &[])
    }

    fn response_header(&mut self, name: &str) -> Result<Option<Vec<u8>>, HostError> {
        let mut value = Buffer::EMPTY;
        let mut count = 0usize;
        // SAFETY: the key names live memory; `value` and `count` are locals Envoy writes.
        let found = unsafe {
            abi::envoy_dynamic_module_callback_http_get_header(
                self.filter,
                abi::RESPONSE_HEADER,
                Buffer::of(name.as_bytes()),
                &mut value,
                0,
                &mut count,
            )
        };
        if !found || count == 0 {
            return Ok(None);
        }
        // SAFETY: Envoy's view of the value is valid until this hook returns; copied now.
        Ok(Some(unsafe { value.bytes() }.to_vec()))
    }

    fn remove_response_header(&mut self, name: &str) -> Result<(), HostError> {
        self.set(abi::RESPONSE_HEADER, name, &[])
    }

    fn take_response_body(
        &mut self,
        size: usize,
        held: &mut Vec<u8>,
        _end_of_stream: bool,
    ) -> Result<(), HostError> {
        // SAFETY: `filter` is the live filter of this hook.
        let count = unsafe {
            abi::envoy_dynamic_module_callback_http_get_body_chunks_size(
                self.filter,
                abi::RECEIVED_RESPONSE_BODY,
            )
        };
        if count > 0 {
            let mut chunks = vec![Buffer::EMPTY; count];
            // SAFETY: `chunks` has room for the `count` buffers Envoy reported for this body.
            let read = unsafe {
                abi::envoy_dynamic_module_callback_http_get_body_chunks(
                    self.filter,
                    abi::RECEIVED_RESPONSE_BODY,
                    chunks.as_mut_ptr(),
                )
            };
            succeeded(read, "get_body_chunks")?;
            for chunk in chunks {
                // SAFETY: Envoy's views of its body slices, valid until the drain below.
                held.extend_from_slice(unsafe { chunk.bytes() });
            }
        }
        // SAFETY: `filter` is the live filter of this hook.
        let drained = unsafe {
            abi::envoy_dynamic_module_callback_http_drain_body(
                self.filter,
                abi::RECEIVED_RESPONSE_BODY,
                size,
            )
        };
        succeeded(drained || size == 0, "drain_body")
    }

    fn send_reply(&mut self, reply: &Reply) -> Result<(), HostError> {
        let mut headers: Vec<Header> = reply
            .headers
            .iter()
            .map(|(name, value)| Header::of(name.as_bytes(), value.as_bytes()))
            .collect();
        // SAFETY: `headers` and the two buffers name live memory for the duration of the
        // call, which copies them.
        unsafe {
            abi::envoy_dynamic_module_callback_http_send_response(
                self.filter,
                u32::from(reply.status),
                headers.as_mut_ptr(),
                headers.len(),
                Buffer::of(reply.body.as_bytes()),
                Buffer::of(b"registry_gate"),
            );
        }
        Ok(())
    }

    fn set_filter_state(&mut self, name: &str, value: &[u8]) -> Result<(), HostError> {
        // SAFETY: both buffers name live memory for the duration of the call, which copies.
        let done = unsafe {
            abi::envoy_dynamic_module_callback_http_set_filter_state_bytes(
                self.filter,
                Buffer::of(name.as_bytes()),
                Buffer::of(value),
            )
        };
        succeeded(done, "set_filter_state_bytes")
    }

    fn peer_certificate(&mut self) -> Option<Vec<u8>> {
        let mut subject = Buffer::EMPTY;
        // SAFETY: `subject` is a local Envoy writes.
        let found = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.filter,
                abi::ATTRIBUTE_SUBJECT_PEER_CERTIFICATE,
                &mut subject,
            )
        };
        // SAFETY: Envoy's view of the subject is valid until this hook returns; copied now.
        (found && subject.length > 0).then(|| unsafe { subject.bytes() }.to_vec())
    }
}
