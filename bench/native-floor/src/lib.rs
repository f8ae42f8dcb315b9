//! The native floor of `make bench`: an Envoy 1.40 dynamic module (ABI `v0.2.0`) that, per
//! request, reads `authorization` and `:path` and sets `x-registry-gate-floor` to the path's
//! length and whether a credential came — the header reads and the one header write a cached
//! registry-gate decision needs — and decides nothing. It is to the native build what
//! `bench/noop-filter` is to the wasm one: what any native filter doing that work costs.
//!
//! It exports the 21 hooks Envoy requires of an HTTP filter module and imports two callbacks
//! (`envoy_dynamic_module_callback_http_get_header`, `…_set_header`); Envoy opens modules
//! with `RTLD_NOW`, so every imported symbol must exist in the binary. Hooks whose arguments
//! are not read are declared without them (the C calling convention lets a callee ignore its
//! arguments); every hook that returns a status returns 0, "continue". Nothing here can
//! panic, so nothing can unwind into Envoy. (The workspace's release profile aborts on a
//! panic, and Cargo cannot set `panic` per package: a module whose hooks catch panics needs
//! a profile of its own that unwinds.)
#![allow(
    unsafe_code,
    reason = "a dynamic module is a C ABI: its hooks are called by Envoy and it calls Envoy"
)]

use core::ffi::{c_char, c_void};

/// The ABI this module was built for (Envoy 1.40: `v0.2.0`), NUL-terminated.
const ABI_VERSION: &[u8] = b"v0.2.0\0";
/// `envoy_dynamic_module_type_http_header_type_RequestHeader`.
const REQUEST_HEADER: u32 = 0;
/// Every `…_status_Continue`.
const CONTINUE: u32 = 0;

/// `envoy_dynamic_module_type_module_buffer` / `…_envoy_buffer`: a pointer and a length.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct Buffer {
    ptr: *const u8,
    length: usize,
}

impl Buffer {
    const EMPTY: Buffer = Buffer {
        ptr: core::ptr::null(),
        length: 0,
    };

    fn of(bytes: &[u8]) -> Buffer {
        Buffer {
            ptr: bytes.as_ptr(),
            length: bytes.len(),
        }
    }
}

extern "C" {
    fn envoy_dynamic_module_callback_http_get_header(
        filter_envoy_ptr: *mut c_void,
        header_type: u32,
        key: Buffer,
        result: *mut Buffer,
        index: usize,
        optional_size: *mut usize,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_set_header(
        filter_envoy_ptr: *mut c_void,
        header_type: u32,
        key: Buffer,
        value: Buffer,
    ) -> bool;
}

/// The one module-side object: Envoy needs a non-null pointer for the filter config and for
/// each filter, and this module keeps no state.
static CONFIG: u8 = 0;

fn config_ptr() -> *const c_void {
    core::ptr::addr_of!(CONFIG).cast()
}

/// The length of request header `name`'s first value (`None` if absent).
fn header_len(filter: *mut c_void, name: &[u8]) -> Option<usize> {
    let mut value = Buffer::EMPTY;
    // SAFETY: `filter` is the filter_envoy_ptr Envoy passed to the running hook; `name`
    // outlives the call; `value` is a live local Envoy writes a (pointer, length) into, and a
    // null optional_size is allowed.
    let found = unsafe {
        envoy_dynamic_module_callback_http_get_header(
            filter,
            REQUEST_HEADER,
            Buffer::of(name),
            &mut value,
            0,
            core::ptr::null_mut(),
        )
    };
    (found && !value.ptr.is_null()).then_some(value.length)
}

/// `path-length;credential` into `out`, without allocating: the value depends on both reads.
fn floor_value(path: usize, credential: bool, out: &mut [u8; 24]) -> &[u8] {
    use std::io::Write as _;
    let room = out.len();
    let mut rest = &mut out[..];
    // At most 20 digits, a semicolon and a digit: it always fits.
    let _ = write!(rest, "{path};{}", u8::from(credential));
    let written = room - rest.len();
    out.get(..written).unwrap_or_default()
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    ABI_VERSION.as_ptr().cast()
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_new() -> *const c_void {
    config_ptr()
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy() {}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_new() -> *const c_void {
    config_ptr()
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_destroy() {}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy_ptr: *mut c_void,
) -> u32 {
    let credential = header_len(filter_envoy_ptr, b"authorization").is_some();
    let path = header_len(filter_envoy_ptr, b":path").unwrap_or(0);
    let mut out = [0_u8; 24];
    let value = floor_value(path, credential, &mut out);
    // SAFETY: as in `header_len`; Envoy copies key and value before returning.
    unsafe {
        envoy_dynamic_module_callback_http_set_header(
            filter_envoy_ptr,
            REQUEST_HEADER,
            Buffer::of(b"x-registry-gate-floor"),
            Buffer::of(value),
        );
    }
    CONTINUE
}

/// The hooks this module has nothing to do in: a status hook continues, the rest return.
macro_rules! continue_hooks {
    ($($name:ident),* $(,)?) => {$(
        #[no_mangle]
        extern "C" fn $name() -> u32 {
            CONTINUE
        }
    )*};
}

macro_rules! empty_hooks {
    ($($name:ident),* $(,)?) => {$(
        #[no_mangle]
        extern "C" fn $name() {}
    )*};
}

continue_hooks!(
    envoy_dynamic_module_on_http_filter_request_body,
    envoy_dynamic_module_on_http_filter_request_trailers,
    envoy_dynamic_module_on_http_filter_response_headers,
    envoy_dynamic_module_on_http_filter_response_body,
    envoy_dynamic_module_on_http_filter_response_trailers,
);

empty_hooks!(
    envoy_dynamic_module_on_http_filter_stream_complete,
    envoy_dynamic_module_on_http_filter_http_callout_done,
    envoy_dynamic_module_on_http_filter_http_stream_headers,
    envoy_dynamic_module_on_http_filter_http_stream_data,
    envoy_dynamic_module_on_http_filter_http_stream_trailers,
    envoy_dynamic_module_on_http_filter_http_stream_complete,
    envoy_dynamic_module_on_http_filter_http_stream_reset,
    envoy_dynamic_module_on_http_filter_scheduled,
    envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark,
    envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_value_names_both_reads() {
        let mut out = [0; 24];
        assert_eq!(floor_value(0, false, &mut out), b"0;0");
        assert_eq!(floor_value(37, true, &mut out), b"37;1");
        assert_eq!(
            floor_value(usize::MAX, true, &mut out),
            b"18446744073709551615;1"
        );
    }

    #[test]
    fn the_abi_version_is_envoy_1_40s() {
        assert_eq!(ABI_VERSION, b"v0.2.0\0");
    }
}
