//! The snapshot fetcher over the proxy-wasm host: the glue's [`Fetcher`], publishing into
//! shared data. It writes the snapshot bytes, then the announcement; the workers read the
//! announcement on their timer and copy the snapshot only when their gate asks for it.
//!
//! One per Envoy process: the singleton (`envoy.bootstrap.wasm`) root context, or the worker
//! root context holding the fetcher lease (`elected`).

use std::time::Duration;

use registry_gate_core::config::FetcherSettings;
use registry_gate_core::fetch::Announcement;
use registry_gate_glue::{Env, FetchHost, Fetcher as Fetch, HostError, Level};

use crate::host;
use crate::shared::{ANNOUNCEMENT_KEY, SNAPSHOT_KEY};
use crate::stats::Stats;

pub use registry_gate_glue::TICK;

/// The fetcher and its stats.
#[derive(Debug)]
pub struct Fetcher {
    fetch: Fetch,
    host: Shared,
}

impl Fetcher {
    pub fn new(settings: FetcherSettings) -> Fetcher {
        let mut host = Shared {
            stats: Stats::new(),
        };
        Fetcher {
            fetch: Fetch::new(&mut host, settings),
            host,
        }
    }

    /// Timer: start a fetch when one is due, and report stats.
    pub fn on_tick(&mut self) {
        self.fetch.on_tick(&mut self.host);
        if let Some(generation) = self.fetch.held() {
            let number = generation.number;
            self.host.stats.gauge("snapshot.generation", number);
        }
    }

    /// The sidecar answered (or the call failed: then there is no `:status`).
    pub fn on_response(&mut self, token: u32, body_size: usize) {
        self.fetch
            .on_response(&mut self.host, u64::from(token), body_size);
    }
}

/// The host of a wasm fetcher: publishes into shared data.
#[derive(Debug)]
struct Shared {
    stats: Stats,
}

impl Env for Shared {
    fn now_secs(&mut self) -> u64 {
        host::now_secs()
    }

    fn now_ms(&mut self) -> u64 {
        host::now_ms()
    }

    fn log(&mut self, level: Level, message: &str) {
        host::log(level, message);
    }
}

impl FetchHost for Shared {
    fn random(&mut self) -> Option<u64> {
        host::random_u64()
    }

    fn dispatch(
        &mut self,
        cluster: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<u64, HostError> {
        host::dispatch(cluster, headers.to_vec(), timeout).map(u64::from)
    }

    fn response_header(&mut self, name: &str) -> Option<Vec<u8>> {
        host::call_response_header(name)
    }

    fn response_body(&mut self, size: usize) -> Result<Vec<u8>, HostError> {
        host::call_response_body(size)
    }

    fn publish(&mut self, body: Vec<u8>, announcement: &Announcement) -> Result<(), HostError> {
        host::set_shared_data(SNAPSHOT_KEY, &body).and_then(|()| self.confirm(announcement))
    }

    fn confirm(&mut self, announcement: &Announcement) -> Result<(), HostError> {
        host::set_shared_data(ANNOUNCEMENT_KEY, &announcement.encode())
    }

    fn published(&mut self) -> Option<Vec<u8>> {
        host::shared_data(SNAPSHOT_KEY)
    }

    fn counter(&mut self, name: &str, by: u64) {
        self.stats.counter(name, by);
    }
}
