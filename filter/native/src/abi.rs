//! The dynamic-module ABI of Envoy 1.40 (`v0.2.0`): the types and the callbacks this module
//! imports, declared by hand from the ABI header as documented at that release, and nothing
//! else. Envoy opens modules with `RTLD_NOW`, so every symbol named here must exist in the
//! binary (`nm -D`); keep the set small.
//!
//! Enums cross as their `u32` values, so an unexpected value is a number to check, never an
//! invalid Rust enum. Buffers Envoy returns point into Envoy's memory and are valid only until
//! the hook that obtained them returns (or a setter is called): copy what must outlive it.
#![allow(
    unsafe_code,
    reason = "the dynamic-module ABI is a C ABI: declaring its imports is unsafe"
)]

use core::ffi::c_void;

/// The ABI version this module was built for, NUL-terminated
/// (`envoy_dynamic_module_on_program_init`'s answer).
pub const ABI_VERSION: &[u8] = b"v0.2.0\0";

/// `envoy_dynamic_module_type_http_header_type`.
pub const REQUEST_HEADER: u32 = 0;
pub const RESPONSE_HEADER: u32 = 2;

/// `envoy_dynamic_module_type_http_body_type_ReceivedResponseBody`.
pub const RECEIVED_RESPONSE_BODY: u32 = 2;

/// `envoy_dynamic_module_type_attribute_id_ConnectionSubjectPeerCertificate`.
pub const ATTRIBUTE_SUBJECT_PEER_CERTIFICATE: u32 = 33;

/// `envoy_dynamic_module_type_log_level`.
pub const LOG_INFO: u32 = 2;
pub const LOG_WARN: u32 = 3;
pub const LOG_CRITICAL: u32 = 5;

/// `envoy_dynamic_module_type_metrics_result_Success`; `…_http_callout_init_result_Success`.
pub const SUCCESS: u32 = 0;

/// Header and trailer statuses (`FilterHeadersStatus`, `FilterTrailersStatus`).
pub const CONTINUE: u32 = 0;
pub const STOP_ITERATION: u32 = 1;
/// Body statuses (`FilterDataStatus`): `Continue` is 0 too.
pub const STOP_ITERATION_NO_BUFFER: u32 = 3;

/// `envoy_dynamic_module_type_envoy_buffer` and `…_module_buffer`: a pointer and a length.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Buffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl Buffer {
    pub const EMPTY: Buffer = Buffer {
        ptr: core::ptr::null(),
        length: 0,
    };

    /// A buffer naming `bytes` (valid while they are).
    pub fn of(bytes: &[u8]) -> Buffer {
        Buffer {
            ptr: bytes.as_ptr(),
            length: bytes.len(),
        }
    }

    /// The bytes of a buffer Envoy filled in.
    ///
    /// # Safety
    /// `ptr`/`length` must name live memory for `'a` (Envoy's buffers: until the hook
    /// returns), or `ptr` be null.
    pub unsafe fn bytes<'a>(self) -> &'a [u8] {
        if self.ptr.is_null() || self.length == 0 {
            return &[];
        }
        // SAFETY: the caller guarantees `ptr` names `length` live bytes for `'a`.
        unsafe { core::slice::from_raw_parts(self.ptr, self.length) }
    }
}

/// `envoy_dynamic_module_type_envoy_http_header` and `…_module_http_header`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub key: *const u8,
    pub key_length: usize,
    pub value: *const u8,
    pub value_length: usize,
}

impl Header {
    pub const EMPTY: Header = Header {
        key: core::ptr::null(),
        key_length: 0,
        value: core::ptr::null(),
        value_length: 0,
    };

    /// A header naming `name` and `value` (valid while they are).
    pub fn of(name: &[u8], value: &[u8]) -> Header {
        Header {
            key: name.as_ptr(),
            key_length: name.len(),
            value: value.as_ptr(),
            value_length: value.len(),
        }
    }

    /// The name and value of a header Envoy filled in.
    ///
    /// # Safety
    /// As [`Buffer::bytes`], for both halves.
    pub unsafe fn pair<'a>(self) -> (&'a [u8], &'a [u8]) {
        // SAFETY: the caller's guarantee, for each half.
        unsafe {
            (
                Buffer {
                    ptr: self.key,
                    length: self.key_length,
                }
                .bytes(),
                Buffer {
                    ptr: self.value,
                    length: self.value_length,
                }
                .bytes(),
            )
        }
    }
}

extern "C" {
    pub fn envoy_dynamic_module_callback_log_v2(
        level: u32,
        message: Buffer,
        source_file: Buffer,
        source_line: u32,
    );
    pub fn envoy_dynamic_module_callback_get_concurrency() -> u32;

    pub fn envoy_dynamic_module_callback_http_get_headers_size(
        filter: *mut c_void,
        header_type: u32,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_headers(
        filter: *mut c_void,
        header_type: u32,
        result: *mut Header,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_get_header(
        filter: *mut c_void,
        header_type: u32,
        key: Buffer,
        result: *mut Buffer,
        index: usize,
        optional_size: *mut usize,
    ) -> bool;
    /// An empty value removes the header.
    pub fn envoy_dynamic_module_callback_http_set_header(
        filter: *mut c_void,
        header_type: u32,
        key: Buffer,
        value: Buffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_send_response(
        filter: *mut c_void,
        status_code: u32,
        headers: *mut Header,
        headers_size: usize,
        body: Buffer,
        details: Buffer,
    );
    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: *mut c_void,
        attribute_id: u32,
        result: *mut Buffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_filter_get_worker_index(filter: *mut c_void) -> u32;
    pub fn envoy_dynamic_module_callback_http_get_body_size(
        filter: *mut c_void,
        body_type: u32,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_body_chunks_size(
        filter: *mut c_void,
        body_type: u32,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_body_chunks(
        filter: *mut c_void,
        body_type: u32,
        result: *mut Buffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_drain_body(
        filter: *mut c_void,
        body_type: u32,
        number_of_bytes: usize,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_set_filter_state_bytes(
        filter: *mut c_void,
        key: Buffer,
        value: Buffer,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: *mut c_void,
        name: Buffer,
        label_names: *mut Buffer,
        label_names_length: usize,
        counter_id: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        config: *mut c_void,
        name: Buffer,
        label_names: *mut Buffer,
        label_names_length: usize,
        gauge_id: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        config: *mut c_void,
        id: usize,
        label_values: *mut Buffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_set_gauge(
        config: *mut c_void,
        id: usize,
        label_values: *mut Buffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        config: *mut c_void,
    ) -> *mut c_void;
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler: *mut c_void,
        event_id: u64,
    );
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
        scheduler: *mut c_void,
    );
    pub fn envoy_dynamic_module_callback_http_filter_config_start_http_stream(
        config: *mut c_void,
        stream_id: *mut u64,
        cluster_name: Buffer,
        headers: *mut Header,
        headers_size: usize,
        body: Buffer,
        end_stream: bool,
        timeout_milliseconds: u64,
    ) -> u32;
}
