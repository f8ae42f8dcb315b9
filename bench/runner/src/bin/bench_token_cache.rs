//! `make bench-token-cache`: the native build's token cache, per worker thread (what it does)
//! against one cache shared by every thread, sharded behind locks (what it could do), in one
//! run on this machine's cores.
//!
//! Each of `BENCH_THREADS` threads (default: the cores online, as Envoy's `--concurrency`
//! default) looks up `BENCH_LOOKUPS` (2,000,000) cached tokens drawn from `BENCH_HOT` (256)
//! hot ones, with the core's own `TokenCache` holding 4,096 JWT-sized tokens (the filter's
//! default). Per thread: each thread its own cache, no lock, as each worker's gate has.
//! Sharded: one cache split into `SHARDS` caches behind a `Mutex` each, the shard chosen by
//! the token's last bytes (its signature, random), the decision read under the lock.
//!
//! What a shared cache would save is the first use on every other worker: a token new to a
//! worker is verified there (ES256 about 100 µs of Envoy CPU, `make bench` rows 3 and 4), at
//! most once per worker and token. What it costs is paid on every cached request: the lock.
//! Written to `bench/results/token-cache.md`.

use std::hint::black_box;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use registry_gate_bench::env_number;
use registry_gate_core::token::{Expiring, TokenCache};
use registry_gate_tests::paths;

const CACHED: usize = 4096;
const SHARDS: usize = 16;
const NOW: u64 = 1_700_000_000;

/// What the gate caches per token, in size and shape: who, and until when.
#[derive(Debug, Clone)]
struct Caller {
    expires_at: u64,
    subject: u32,
}

impl Expiring for Caller {
    fn expires_at(&self) -> u64 {
        self.expires_at
    }
}

/// A xorshift generator: the bench's tokens and draws, the same every run.
struct Draw(u64);

impl Draw {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// `n` characters of base64url.
    fn base64(&mut self, n: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        (0..n)
            .map(|_| {
                let at = (self.next() % 64) as usize;
                char::from(ALPHABET.get(at).copied().unwrap_or(b'A'))
            })
            .collect()
    }
}

/// JWT-shaped tokens of the sidecar's size (ES256: header, a claims set with one access
/// entry, a 64-byte signature).
fn tokens(count: usize) -> Vec<String> {
    let mut draw = Draw(0x9e37_79b9_7f4a_7c15);
    (0..count)
        .map(|_| {
            format!(
                "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6InNpZGVjYXIifQ.{}.{}",
                draw.base64(380),
                draw.base64(86)
            )
        })
        .collect()
}

fn shard_of(token: &str) -> usize {
    let tail = token.as_bytes().iter().rev().take(8);
    let mixed = tail.fold(0u64, |acc, byte| acc.rotate_left(8) ^ u64::from(*byte));
    (mixed % SHARDS as u64) as usize
}

/// Runs `lookup` on `threads` threads at once, `lookups` times each over the hot tokens;
/// returns the nanoseconds each lookup took its thread (wall time over each thread's
/// lookups, every thread running on a core of its own).
fn run(
    threads: usize,
    lookups: usize,
    hot: &Arc<Vec<String>>,
    lookup: impl Fn(usize, &str) -> u32 + Send + Sync + Clone + 'static,
) -> f64 {
    let start = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|thread| {
            let start = Arc::clone(&start);
            let hot = Arc::clone(hot);
            let lookup = lookup.clone();
            std::thread::spawn(move || {
                let mut draw = Draw(0x2545_f491_4f6c_dd1d ^ (thread as u64 + 1));
                start.wait();
                let mut found = 0u32;
                for _ in 0..lookups {
                    let at = (draw.next() % hot.len() as u64) as usize;
                    if let Some(token) = hot.get(at) {
                        found = found.wrapping_add(lookup(thread, black_box(token)));
                    }
                }
                black_box(found)
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    for handle in handles {
        let _ = handle.join();
    }
    let elapsed = began.elapsed();
    ns_per(elapsed, lookups)
}

fn ns_per(elapsed: Duration, lookups: usize) -> f64 {
    elapsed.as_nanos() as f64 / lookups.max(1) as f64
}

fn filled(tokens: &[String]) -> TokenCache<Caller> {
    let mut cache = TokenCache::new(CACHED);
    for (subject, token) in tokens.iter().enumerate() {
        let caller = Caller {
            expires_at: NOW + 300,
            subject: subject as u32,
        };
        cache.insert(token, caller, NOW);
    }
    cache
}

fn main() -> Result<(), String> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let threads: usize = env_number("BENCH_THREADS", cores)?;
    let lookups: usize = env_number("BENCH_LOOKUPS", 2_000_000)?;
    let hot_count: usize = env_number("BENCH_HOT", 256)?;
    if threads == 0 || lookups == 0 || hot_count == 0 || hot_count > CACHED {
        return Err(format!(
            "BENCH_THREADS and BENCH_LOOKUPS must be > 0, BENCH_HOT within 1..={CACHED}"
        ));
    }
    let all = tokens(CACHED);
    let hot = Arc::new(all.iter().take(hot_count).cloned().collect::<Vec<_>>());

    // Per thread: every thread its own cache (each filled alike), no lock.
    let own: Arc<Vec<TokenCache<Caller>>> = Arc::new((0..threads).map(|_| filled(&all)).collect());
    let per_thread = {
        let own = Arc::clone(&own);
        move |thread: usize, token: &str| {
            own.get(thread)
                .and_then(|cache| cache.get(token, NOW))
                .map_or(0, |caller| caller.subject)
        }
    };
    // Sharded: one cache, `SHARDS` locks.
    let mut shards: Vec<Vec<String>> = vec![Vec::new(); SHARDS];
    for token in &all {
        if let Some(shard) = shards.get_mut(shard_of(token)) {
            shard.push(token.clone());
        }
    }
    let shared: Arc<Vec<Mutex<TokenCache<Caller>>>> = Arc::new(
        shards
            .iter()
            .map(|tokens| Mutex::new(filled(tokens)))
            .collect(),
    );
    let sharded = {
        let shared = Arc::clone(&shared);
        move |_thread: usize, token: &str| {
            shared.get(shard_of(token)).map_or(0, |shard| {
                let cache = shard
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                cache.get(token, NOW).map_or(0, |caller| caller.subject)
            })
        }
    };

    let mut rows = Vec::new();
    // Alone (the lock's own price) and all threads at once (with contention): warm both,
    // then alternate three times and keep the medians.
    for at_once in [1, threads] {
        run(at_once, lookups / 10, &hot, per_thread.clone());
        run(at_once, lookups / 10, &hot, sharded.clone());
        let mut mine = Vec::new();
        let mut theirs = Vec::new();
        for _ in 0..3 {
            mine.push(run(at_once, lookups, &hot, per_thread.clone()));
            theirs.push(run(at_once, lookups, &hot, sharded.clone()));
        }
        let (mine, theirs) = (median(&mut mine), median(&mut theirs));
        rows.push(format!(
            "| {at_once} | {mine:.1} | {theirs:.1} | {:.2} | +{:.1} |",
            theirs / mine,
            theirs - mine
        ));
    }
    let report = format!(
        "# `make bench-token-cache`: per-thread token cache vs one sharded cache\n\n\
         {lookups} cached lookups per thread over {hot_count} hot tokens of {} bytes, \
         {CACHED} cached, one thread and then {threads} at once; medians of 3 alternating \
         runs. Per thread: each thread its own cache, as each worker's gate has. Sharded: one \
         cache in {SHARDS} shards behind a `Mutex` each.\n\n\
         | threads at once | per thread (the build), ns per cached lookup | one sharded cache, ns | × per thread | ns more per cached request |\n\
         |---|---|---|---|---|\n{}\n\n\
         A shared cache saves at most one verification per token on each other worker it \
         lands on (ES256 about 100 µs of Envoy CPU, `make bench` rows 3 and 4); it costs the \
         last column on every cached request (with two threads looking up nothing but tokens, \
         the contended row is the worst case; inside Envoy a lookup is a small part of a \
         request).\n",
        hot.first().map_or(0, String::len),
        rows.join("\n")
    );
    print!("{report}");
    let out = paths::repo_root().join("bench/results/token-cache.md");
    std::fs::write(&out, report).map_err(|err| format!("write {}: {err}", out.display()))?;
    eprintln!("[bench] written to {}", out.display());
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}
