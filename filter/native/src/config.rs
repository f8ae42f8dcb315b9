//! The filter configuration: one per configured filter, created on the main thread and used
//! by every worker thread, so the index it decides from exists once per Envoy process.
//!
//! A source [`Worker`] takes in each snapshot the fetcher publishes (validated once, on the
//! main thread) and every worker thread's gate adopts it: the decoded index is shared behind
//! an `Arc`, each thread keeps its own token cache (behind it one shared by all, so a token
//! is verified once per process rather than once per thread), and a worker waits at most for one
//! decision of another thread's while the new index is handed over. A timer thread wakes the
//! main thread every [`TICK`] through the configuration's scheduler: the fetcher runs and the
//! stats are reported there.
#![allow(
    unsafe_code,
    reason = "the dynamic-module ABI is a C ABI: calling it is unsafe"
)]

use core::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use registry_gate_core::config::{FetcherSettings, Settings};
use registry_gate_core::gate::{Gate, SharedCallers};
use registry_gate_glue::{Budget, Fetcher, Level, Tally, Worker, TICK};

use crate::abi;
use crate::crypto::NativeCrypto;
use crate::fetch::{Delivered, Publisher};
use crate::host;
use crate::stats::Stats;

/// How often the counters are reported (every this many ticks).
const REPORT_EVERY_TICKS: u64 = 10;

/// A raw pointer Envoy gave, moved between threads as the ABI allows (the configuration
/// pointer is used from worker threads; the scheduler from the timer thread).
#[derive(Debug, Clone, Copy)]
pub struct Raw(pub *mut c_void);

// SAFETY: Envoy's configuration and scheduler objects are thread-safe for the calls made
// with them (stats and scheduler commits from any thread); the pointer itself is plain data.
unsafe impl Send for Raw {}
// SAFETY: as above.
unsafe impl Sync for Raw {}

/// One worker thread's gate, and what it reported last.
#[derive(Debug)]
pub struct Slot {
    pub worker: Worker,
    tally: Tally,
}

/// The main thread's side: the source gate and the fetcher.
#[derive(Debug)]
pub struct Main {
    pub source: Worker,
    pub fetcher: Option<Fetcher>,
    ticks: u64,
}

/// The filter configuration.
#[derive(Debug)]
pub struct Config {
    pub envoy: Raw,
    pub stats: Stats,
    /// One per worker thread, by Envoy's worker index.
    pub slots: Vec<Mutex<Slot>>,
    pub main: Mutex<Main>,
    /// Hooks that panicked since the last report.
    pub panics: AtomicU64,
    /// The fetch streams' answers being received, by stream id.
    receiving: Mutex<Vec<(u64, Delivered)>>,
    /// The most body bytes kept of an answer (the fetcher's `max_snapshot_bytes`).
    body_limit: usize,
    /// Answers that ended while the fetcher was busy on this same thread (Envoy may fail a
    /// stream inside the call that starts it): handled on the next tick.
    deferred: Mutex<Vec<(u64, Option<Delivered>)>>,
    timer: Mutex<Option<Timer>>,
}

/// The timer thread and the scheduler it commits to.
#[derive(Debug)]
struct Timer {
    shared: Arc<TimerShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug)]
struct TimerShared {
    /// Cleared (and the scheduler deleted) when the configuration goes.
    scheduler: Mutex<Option<Raw>>,
    stop: AtomicBool,
}

// The configuration is used from every worker thread through the raw pointer Envoy holds:
// the compiler cannot see that, so say it here.
const _: () = {
    const fn shared_between_threads<T: Send + Sync>() {}
    shared_between_threads::<Config>();
};

/// Locks, recovering from a panic that poisoned the lock: the state behind it is caches and
/// counters, and serving on beats failing every request after one bug.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Config {
    /// The configuration for `config` (the filter's JSON), on Envoy's configuration object
    /// `envoy`; `Err` says why it can never work.
    pub fn new(envoy: Raw, config: &[u8], workers: usize) -> Result<Config, String> {
        let settings = Settings::from_json(config).map_err(|err| err.to_string())?;
        let Some(elected) = settings.elected_fetcher.clone() else {
            return Err(
                "the native module needs a `fetcher` object (the snapshot long-poll): \
                        it fetches for every worker of this Envoy"
                    .to_owned(),
            );
        };
        let stats = Stats::define(envoy.0);
        let crypto = NativeCrypto::probe();
        if settings.host_signatures {
            host::log(
                Level::Info,
                &format!("signatures checked by ring: {}", crypto.describe()),
            );
        }
        // Behind each worker's own token cache, the tokens any worker verified.
        let shared = Arc::new(SharedCallers::new(settings.token_cache_entries));
        // One budget of buffered Flatpak index bytes for the whole process: the workers share
        // its memory.
        let budget = Budget::new(settings.flatpak_buffer_budget_bytes);
        let slots = (0..workers.max(1))
            .map(|_| {
                let mut gate = Gate::new(settings.clone());
                gate.share_callers(Arc::clone(&shared));
                if settings.host_signatures {
                    gate.set_signature_host(Box::new(crypto.clone()));
                }
                Mutex::new(Slot {
                    worker: Worker::new(gate, random_id(), budget.clone()),
                    tally: Tally::default(),
                })
            })
            .collect();
        let source = Worker::new(Gate::new(settings), None, budget);
        let config = Config {
            envoy,
            stats,
            slots,
            receiving: Mutex::new(Vec::new()),
            body_limit: elected.fetcher.max_snapshot_bytes,
            main: Mutex::new(Main {
                source,
                fetcher: None,
                ticks: 0,
            }),
            deferred: Mutex::new(Vec::new()),
            panics: AtomicU64::new(0),
            timer: Mutex::new(None),
        };
        config.stats.counter(envoy.0, "vm_starts", 1);
        config.start_fetching(elected.fetcher);
        Ok(config)
    }

    fn start_fetching(&self, settings: FetcherSettings) {
        {
            let mut main = lock(&self.main);
            let Main {
                source, fetcher, ..
            } = &mut *main;
            let mut publisher = self.publisher(source, None);
            *fetcher = Some(Fetcher::new(&mut publisher, settings));
        }
        // SAFETY: `envoy` is the live configuration object, on the main thread.
        let scheduler = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_scheduler_new(self.envoy.0)
        };
        if scheduler.is_null() {
            host::log(
                Level::Critical,
                "no configuration scheduler: this filter will never fetch snapshots",
            );
            return;
        }
        let shared = Arc::new(TimerShared {
            scheduler: Mutex::new(Some(Raw(scheduler))),
            stop: AtomicBool::new(false),
        });
        let ticking = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("registry-gate-timer".to_owned())
            .spawn(move || tick(&ticking));
        let thread = match thread {
            Ok(thread) => Some(thread),
            Err(err) => {
                host::log(
                    Level::Critical,
                    &format!("cannot start the timer thread ({err}): no snapshots will be fetched"),
                );
                None
            }
        };
        *lock(&self.timer) = Some(Timer { shared, thread });
    }

    /// The fetcher's host, publishing into `source`.
    pub fn publisher<'a>(
        &'a self,
        source: &'a mut Worker,
        delivered: Option<&'a mut Delivered>,
    ) -> Publisher<'a> {
        Publisher {
            config: self,
            source,
            delivered,
        }
    }

    /// The main thread's tick: run the fetcher, and now and then report the stats.
    pub fn on_tick(&self) {
        let deferred = std::mem::take(&mut *lock(&self.deferred));
        let report = {
            let mut main = lock(&self.main);
            let Main {
                source,
                fetcher,
                ticks,
            } = &mut *main;
            if let Some(fetcher) = fetcher {
                for (id, mut delivered) in deferred {
                    self.deliver(fetcher, source, id, delivered.as_mut());
                }
                fetcher.on_tick(&mut self.publisher(source, None));
            }
            *ticks = ticks.wrapping_add(1);
            *ticks % REPORT_EVERY_TICKS == 0
        };
        if report {
            self.report();
        }
    }

    /// Adds to the answer stream `id` is receiving: `add` gets it and the most body bytes to
    /// keep.
    pub fn receive(&self, id: u64, add: impl FnOnce(&mut Delivered, usize)) {
        let mut receiving = lock(&self.receiving);
        let index = match receiving.iter().position(|(known, _)| *known == id) {
            Some(index) => index,
            None => {
                receiving.push((id, Delivered::default()));
                receiving.len().saturating_sub(1)
            }
        };
        if let Some((_, delivered)) = receiving.get_mut(index) {
            add(delivered, self.body_limit);
        }
    }

    /// Stream `id` ended: complete (`true`) with what it received, or reset.
    pub fn on_stream_end(&self, id: u64, complete: bool) {
        let delivered = {
            let mut receiving = lock(&self.receiving);
            receiving
                .iter()
                .position(|(known, _)| *known == id)
                .map(|index| receiving.swap_remove(index).1)
        };
        // A stream that completes without headers delivered nothing: a failure too.
        self.on_answer(id, delivered.filter(|_| complete));
    }

    /// The answer to fetch `id` (`None`: the fetch failed).
    fn on_answer(&self, id: u64, mut delivered: Option<Delivered>) {
        // Envoy may end a stream inside the call that started it, while the
        // fetcher holds the lock on this same thread: then it waits for the next tick.
        let mut main = match self.main.try_lock() {
            Ok(main) => main,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => {
                lock(&self.deferred).push((id, delivered));
                return;
            }
        };
        let Main {
            source, fetcher, ..
        } = &mut *main;
        if let Some(fetcher) = fetcher {
            self.deliver(fetcher, source, id, delivered.as_mut());
        }
    }

    /// Hands the fetcher the answer to fetch `id` (`None`: the fetch failed).
    fn deliver(
        &self,
        fetcher: &mut Fetcher,
        source: &mut Worker,
        id: u64,
        delivered: Option<&mut Delivered>,
    ) {
        let size = delivered.as_ref().map_or(0, |d| d.received);
        fetcher.on_response(&mut self.publisher(source, delivered), id, size);
    }

    /// Reports every worker's counters and the source's gauges.
    fn report(&self) {
        for slot in &self.slots {
            let grown = {
                let mut slot = lock(slot);
                let Slot { worker, tally } = &mut *slot;
                tally.growth(worker.gate().counts())
            };
            for (name, by) in grown {
                self.stats.counter(self.envoy.0, &name, by);
            }
        }
        let panics = self.panics.swap(0, Ordering::Relaxed);
        if panics > 0 {
            self.stats.counter(self.envoy.0, "panics", panics);
        }
        let main = lock(&self.main);
        for (name, value) in main.source.gauges(host::now_ms() / 1000) {
            self.stats.gauge(self.envoy.0, name, value);
        }
    }

    /// Hands what the source holds now (its index and confirmation) to every worker.
    pub fn hand_over(&self, source: &Worker) {
        for slot in &self.slots {
            lock(slot).worker.gate_mut().adopt(source.gate());
        }
    }
}

impl Drop for Config {
    fn drop(&mut self) {
        let timer = lock(&self.timer).take();
        if let Some(mut timer) = timer {
            timer.shared.stop.store(true, Ordering::Relaxed);
            if let Some(Raw(scheduler)) = lock(&timer.shared.scheduler).take() {
                // SAFETY: the scheduler was created for this configuration and, taken out of
                // the lock, can no longer be committed to by the timer thread.
                unsafe {
                    abi::envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
                        scheduler,
                    );
                }
            }
            if let Some(thread) = timer.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// The timer thread: commits a tick to the main thread every [`TICK`] until stopped.
fn tick(shared: &TimerShared) {
    let mut next = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        next += TICK;
        std::thread::sleep(
            next.saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        );
        let scheduler = lock(&shared.scheduler);
        let Some(Raw(scheduler)) = *scheduler else {
            return;
        };
        // SAFETY: the scheduler is live while it is in the lock, which is held for the call.
        unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_scheduler_commit(scheduler, 0);
        }
    }
}

/// A random 64-bit id as 16 hex digits (a worker in the access log), from the standard
/// library's randomly keyed hasher; `None` never happens but keeps the glue's contract.
pub fn random_id() -> Option<String> {
    Some(format!("{:016x}", random()))
}

/// 64 random bits: each `RandomState` is keyed from the OS's randomness.
pub fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(host::now_ms());
    hasher.finish()
}
