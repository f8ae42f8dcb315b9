//! The fetcher's host in the native module: the glue's [`Fetcher`] long-polls the sidecar
//! through a configuration-level HTTP stream, and what it publishes the source gate takes in
//! (validated once per process, on the main thread) and hands to every worker.
//!
//! A stream rather than a callout: Envoy hands each piece of the body over as it arrives and
//! drops it, so the index exists once, in the buffer it is received into and then decided
//! from (a callout buffers the whole body in Envoy first, and that second copy stays in the
//! allocator's free pages).
//!
//! [`Fetcher`]: registry_gate_glue::Fetcher
#![allow(
    unsafe_code,
    reason = "the dynamic-module ABI is a C ABI: calling it is unsafe"
)]

use std::time::Duration;

use registry_gate_core::fetch::Announcement;
use registry_gate_glue::{Env, FetchHost, HostError, Level, Worker};

use crate::abi::{self, Buffer, Header};
use crate::config::{self, Config};
use crate::host;

/// An answer being received from the sidecar, copied out of Envoy piece by piece.
#[derive(Debug, Default)]
pub struct Delivered {
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// The body, while it fits in the fetcher's `max_snapshot_bytes`; emptied past that.
    pub body: Vec<u8>,
    /// How many body bytes arrived (the fetcher refuses a body over its limit by this).
    pub received: usize,
}

impl Delivered {
    /// Adds the headers Envoy delivered, and reserves room for a body whose
    /// `content-length` fits in `limit`.
    ///
    /// # Safety
    /// `headers` must be the array (with its length) Envoy passed to the hook running now,
    /// or null.
    pub unsafe fn add_headers(
        &mut self,
        headers: *const Header,
        headers_size: usize,
        limit: usize,
    ) {
        if headers.is_null() {
            return;
        }
        // SAFETY: Envoy passed `headers_size` headers at `headers`, valid for this hook.
        let headers = unsafe { core::slice::from_raw_parts(headers, headers_size) };
        for header in headers {
            // SAFETY: as above, for each header's views.
            let (name, value) = unsafe { header.pair() };
            if name.eq_ignore_ascii_case(b"content-length") {
                let length = core::str::from_utf8(value)
                    .ok()
                    .and_then(|length| length.parse::<usize>().ok());
                if let Some(length) = length.filter(|length| *length <= limit) {
                    self.body.reserve_exact(length);
                }
            }
            self.headers.push((name.to_vec(), value.to_vec()));
        }
    }

    /// Appends the pieces of body Envoy delivered, keeping at most `limit` bytes: past it the
    /// body is dropped and only counted.
    ///
    /// # Safety
    /// `chunks` must be the array (with its length) Envoy passed to the hook running now, or
    /// null.
    pub unsafe fn add_data(&mut self, chunks: *const Buffer, chunks_size: usize, limit: usize) {
        if chunks.is_null() {
            return;
        }
        // SAFETY: Envoy passed `chunks_size` buffers at `chunks`, valid for this hook.
        let chunks = unsafe { core::slice::from_raw_parts(chunks, chunks_size) };
        for chunk in chunks {
            // SAFETY: as above, for each piece of the body.
            let bytes = unsafe { chunk.bytes() };
            self.received = self.received.saturating_add(bytes.len());
            if self.received <= limit {
                self.body.extend_from_slice(bytes);
            } else {
                self.body = Vec::new();
            }
        }
    }
}

/// The host of the native fetcher.
#[derive(Debug)]
pub struct Publisher<'a> {
    pub config: &'a Config,
    pub source: &'a mut Worker,
    /// The answer being delivered, if any (`None` also when the fetch failed); its body is
    /// taken, not copied, when the fetcher asks for it.
    pub delivered: Option<&'a mut Delivered>,
}

/// The fetcher's clock and log are the process's.
impl Env for Publisher<'_> {
    fn now_secs(&mut self) -> u64 {
        host::Process.now_secs()
    }

    fn now_ms(&mut self) -> u64 {
        host::Process.now_ms()
    }

    fn log(&mut self, level: Level, message: &str) {
        host::Process.log(level, message);
    }
}

impl FetchHost for Publisher<'_> {
    fn random(&mut self) -> Option<u64> {
        Some(config::random())
    }

    fn dispatch(
        &mut self,
        cluster: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<u64, HostError> {
        let mut headers: Vec<Header> = headers
            .iter()
            .map(|(name, value)| Header::of(name.as_bytes(), value.as_bytes()))
            .collect();
        let mut id = 0u64;
        let timeout = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        // SAFETY: the configuration object is live (this runs on the main thread, inside one
        // of its hooks); `headers` and the cluster name name live memory for the call, which
        // copies them; `id` is a local Envoy writes.
        let result = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_start_http_stream(
                self.config.envoy.0,
                &mut id,
                Buffer::of(cluster.as_bytes()),
                headers.as_mut_ptr(),
                headers.len(),
                Buffer::EMPTY,
                true,
                timeout,
            )
        };
        if result == abi::SUCCESS {
            Ok(id)
        } else {
            Err(HostError {
                call: "http_filter_config_start_http_stream",
                status: result,
            })
        }
    }

    fn response_header(&mut self, name: &str) -> Option<Vec<u8>> {
        self.delivered
            .as_ref()?
            .headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, value)| value.clone())
    }

    fn response_body(&mut self, size: usize) -> Result<Vec<u8>, HostError> {
        let mut body = self
            .delivered
            .as_mut()
            .map(|delivered| std::mem::take(&mut delivered.body))
            .unwrap_or_default();
        body.truncate(size);
        Ok(body)
    }

    fn publish(&mut self, body: Vec<u8>, announcement: &Announcement) -> Result<(), HostError> {
        let installed = self
            .source
            .take_in(&mut host::Process, announcement, || Some(body));
        match installed {
            Some(installed) => {
                self.config.stats.gauge(
                    self.config.envoy.0,
                    "snapshot.install_ms",
                    installed.took_ms,
                );
                self.config.hand_over(self.source);
                Ok(())
            }
            None => Err(HostError {
                call: "install snapshot",
                status: 1,
            }),
        }
    }

    fn confirm(&mut self, announcement: &Announcement) -> Result<(), HostError> {
        self.source.gate_mut().announced(announcement);
        self.config.hand_over(self.source);
        Ok(())
    }

    fn published(&mut self) -> Option<Vec<u8>> {
        None
    }

    fn counter(&mut self, name: &str, by: u64) {
        self.config.stats.counter(self.config.envoy.0, name, by);
    }
}

#[cfg(test)]
mod tests {
    use super::Delivered;
    use crate::abi::{Buffer, Header};

    #[test]
    fn an_answer_is_received_piece_by_piece_and_a_body_over_the_limit_only_counted() {
        let mut delivered = Delivered::default();
        let headers = [
            Header::of(b":status", b"200"),
            Header::of(b"Content-Length", b"10"),
        ];
        // SAFETY: the array and its length, live for the call.
        unsafe { delivered.add_headers(headers.as_ptr(), headers.len(), 10) };
        assert_eq!(delivered.headers[0], (b":status".to_vec(), b"200".to_vec()));
        assert!(
            delivered.body.capacity() >= 10,
            "room for the announced body"
        );
        let pieces = [Buffer::of(b"0123"), Buffer::of(b"456")];
        // SAFETY: as above.
        unsafe { delivered.add_data(pieces.as_ptr(), pieces.len(), 10) };
        assert_eq!(delivered.body, b"0123456");
        // Past the limit the body is dropped; what arrived is still counted.
        let more = [Buffer::of(b"789x")];
        // SAFETY: as above.
        unsafe { delivered.add_data(more.as_ptr(), more.len(), 10) };
        assert!(delivered.body.is_empty());
        assert_eq!(delivered.received, 11);
        // Null arrays add nothing.
        // SAFETY: null is allowed.
        unsafe { delivered.add_data(core::ptr::null(), 3, 10) };
        assert_eq!(delivered.received, 11);
    }

    #[test]
    fn a_content_length_over_the_limit_reserves_nothing() {
        let mut delivered = Delivered::default();
        let headers = [Header::of(b"content-length", b"999999999")];
        // SAFETY: the array and its length, live for the call.
        unsafe { delivered.add_headers(headers.as_ptr(), headers.len(), 10) };
        assert_eq!(delivered.body.capacity(), 0);
    }
}
