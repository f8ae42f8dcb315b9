//! The elected fetcher: for deployments with only the HTTP filter (no `envoy.bootstrap.wasm`
//! singleton), every worker root context is a candidate, and the one holding the lease in
//! shared data runs the ordinary [`Fetcher`].
//!
//! On each timer tick, and again before handling a fetch answer, a candidate reads the lease
//! with its CAS token, asks the core (`lease::decide`) what to do and performs the write it is
//! told to with that token. It fetches only while it holds the lease: on losing it, it drops
//! its fetcher, so an answer still in flight is ignored and nothing is published, and a fetch
//! answer is published only after the lease was found still held. It decides nothing itself.
//!
//! The host cannot create a key only if it is absent (a write to a missing key succeeds
//! whatever the CAS), so a candidate finding no lease writes an empty placeholder and contends
//! from its next tick on; from then on every write is a CAS.

use registry_gate_core::config::ElectedFetcher;
use registry_gate_core::lease::{self, Move};

use crate::fetcher::Fetcher;
use crate::host::{self, Level};
use crate::shared::LEASE_KEY;
use crate::stats::Stats;

/// One worker root context's candidacy.
#[derive(Debug)]
pub struct Candidate {
    /// This root context's random holder id; `None` if the host gave no randomness, and then
    /// it never contends (a guessable id could be shared with another candidate).
    id: Option<String>,
    settings: ElectedFetcher,
    /// Present exactly while this candidate holds the lease.
    fetcher: Option<Fetcher>,
    stats: Stats,
}

impl Candidate {
    pub fn new(settings: ElectedFetcher) -> Candidate {
        let id = host::random_id();
        if id.is_none() {
            host::log(
                Level::Critical,
                "no random holder id: this worker will never fetch snapshots",
            );
        }
        let mut stats = Stats::new();
        stats.counter("fetcher_lease.acquired", 0);
        stats.counter("fetcher_lease.lost", 0);
        Candidate {
            id,
            settings,
            fetcher: None,
            stats,
        }
    }

    /// Timer: keep, renew or take the lease, and fetch while holding it.
    pub fn on_tick(&mut self) {
        if let Some(fetcher) = self.elect() {
            fetcher.on_tick();
        }
    }

    /// A fetch answer: handled only if the lease is still held, else ignored.
    pub fn on_response(&mut self, token: u32, body_size: usize) {
        if let Some(fetcher) = self.elect() {
            fetcher.on_response(token, body_size);
        }
    }

    /// Settles whether this candidate holds the lease now; its fetcher if it does.
    fn elect(&mut self) -> Option<&mut Fetcher> {
        let holds = self.holds();
        match (holds, self.fetcher.is_some()) {
            (true, false) => {
                host::log(Level::Info, "took the fetcher lease: fetching snapshots");
                self.stats.counter("fetcher_lease.acquired", 1);
                self.fetcher = Some(Fetcher::new(self.settings.fetcher.clone()));
            }
            (false, true) => {
                host::log(Level::Info, "lost the fetcher lease: stopped fetching");
                self.stats.counter("fetcher_lease.lost", 1);
                self.fetcher = None;
            }
            _ => {}
        }
        self.fetcher.as_mut()
    }

    /// Reads the lease and performs the core's move; whether this candidate holds it.
    fn holds(&self) -> bool {
        let Some(id) = &self.id else {
            return false;
        };
        let (current, cas) = match host::shared_data_with_cas(LEASE_KEY) {
            Ok((Some(current), cas)) => (current, cas),
            Ok((None, _)) => {
                // Never written: create it empty; contend by CAS from the next tick.
                if let Err(error) = host::set_shared_data(LEASE_KEY, &[]) {
                    host::log(Level::Warn, &error.to_string());
                }
                return false;
            }
            Err(error) => {
                host::log(Level::Warn, &error.to_string());
                return false;
            }
        };
        let bytes = match lease::decide(Some(&current), id, host::now_ms(), self.settings.lease) {
            Move::Hold => return true,
            Move::Leave => return false,
            Move::Renew(bytes) | Move::Take(bytes) => bytes,
        };
        match host::set_shared_data_if(LEASE_KEY, &bytes, cas) {
            Ok(()) => true,
            Err(error) => {
                if !host::is_cas_mismatch(&error) {
                    host::log(Level::Warn, &error.to_string());
                }
                false
            }
        }
    }
}
