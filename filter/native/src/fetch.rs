//! The fetcher's host in the native module: the glue's [`Fetcher`] long-polls the sidecar
//! through Envoy's configuration-level HTTP callout, and what it publishes the source gate
//! takes in (validated once per process, on the main thread) and hands to every worker.
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

/// A callout's answer, copied out of Envoy.
#[derive(Debug, Default)]
pub struct Delivered {
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Delivered {
    /// Copies what Envoy delivered to the callout-done hook.
    ///
    /// # Safety
    /// `headers`/`chunks` must be the arrays (with their lengths) Envoy passed to the hook
    /// running now, or null.
    pub unsafe fn copy(
        headers: *const Header,
        headers_size: usize,
        chunks: *const Buffer,
        chunks_size: usize,
    ) -> Delivered {
        let mut delivered = Delivered::default();
        if !headers.is_null() {
            // SAFETY: Envoy passed `headers_size` headers at `headers`, valid for this hook.
            let headers = unsafe { core::slice::from_raw_parts(headers, headers_size) };
            for header in headers {
                // SAFETY: as above, for each header's views.
                let (name, value) = unsafe { header.pair() };
                delivered.headers.push((name.to_vec(), value.to_vec()));
            }
        }
        if !chunks.is_null() {
            // SAFETY: Envoy passed `chunks_size` buffers at `chunks`, valid for this hook.
            let chunks = unsafe { core::slice::from_raw_parts(chunks, chunks_size) };
            let size = chunks.iter().map(|chunk| chunk.length).sum();
            delivered.body.reserve_exact(size);
            for chunk in chunks {
                // SAFETY: as above, for each slice of the body.
                delivered.body.extend_from_slice(unsafe { chunk.bytes() });
            }
        }
        delivered
    }
}

/// The host of the native fetcher.
#[derive(Debug)]
pub struct Publisher<'a> {
    pub config: &'a Config,
    pub source: &'a mut Worker,
    /// The answer being delivered, if any (`None` also when the callout failed).
    pub delivered: Option<&'a Delivered>,
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
            abi::envoy_dynamic_module_callback_http_filter_config_http_callout(
                self.config.envoy.0,
                &mut id,
                Buffer::of(cluster.as_bytes()),
                headers.as_mut_ptr(),
                headers.len(),
                Buffer::EMPTY,
                timeout,
            )
        };
        if result == abi::SUCCESS {
            Ok(id)
        } else {
            Err(HostError {
                call: "http_filter_config_http_callout",
                status: result,
            })
        }
    }

    fn response_header(&mut self, name: &str) -> Option<Vec<u8>> {
        self.delivered?
            .headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, value)| value.clone())
    }

    fn response_body(&mut self, size: usize) -> Result<Vec<u8>, HostError> {
        let body = self.delivered.map_or(&[][..], |d| d.body.as_slice());
        Ok(body.get(..size).unwrap_or(body).to_vec())
    }

    fn publish(&mut self, body: &[u8], announcement: &Announcement) -> Result<(), HostError> {
        let installed = self
            .source
            .take_in(&mut host::Process, announcement, || Some(body.to_vec()));
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
