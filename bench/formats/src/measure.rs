//! How every format is timed, the same way: the run's settings (from the environment), the
//! median helpers, the batched query loop, and the table row each format hands back.

use std::hint::black_box;
use std::time::Instant;

/// Queries timed per batch: the per-lookup figure is the median over batches of a batch's
/// mean, so the clock (slow under WASI) is read once per 1,000 queries, not per query.
pub const BATCH: usize = 1_000;

/// How much to measure. Each knob can be lowered from the environment (the wasm runner
/// passes them through).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// `FORMATS_QUERIES`: lookups timed (default 1,000,000).
    pub queries: usize,
    /// `FORMATS_OPEN_ROUNDS`: open + validate repetitions, median reported (default 9).
    pub open_rounds: usize,
    /// `FORMATS_BUILD_ROUNDS`: builds, median reported (default 3).
    pub build_rounds: usize,
}

impl Settings {
    pub fn from_env() -> Result<Settings, String> {
        Ok(Settings {
            queries: knob("FORMATS_QUERIES", 1_000_000)?,
            open_rounds: knob("FORMATS_OPEN_ROUNDS", 9)?,
            build_rounds: knob("FORMATS_BUILD_ROUNDS", 3)?,
        })
    }
}

fn knob(name: &str, default: usize) -> Result<usize, String> {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{name}={text:?} is not a positive integer")),
        Err(_) => Ok(default),
    }
}

/// One line of the table.
#[derive(Debug)]
pub struct Row {
    pub format: String,
    pub bytes: usize,
    pub build_ms: f64,
    pub open_ms: f64,
    pub lookup_ns: f64,
    /// Queries answered "may pull": equal across formats, or one of them is wrong.
    pub allowed: usize,
    /// Whether opening checks every name against its grammar.
    pub every_name: bool,
    /// What its validation guarantees.
    pub checks: String,
}

/// The median of `values` (the upper one of an even count); 0 for none.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Milliseconds since `start`.
pub fn ms_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

/// Runs `build` `rounds` times; the median time and the last result.
pub fn time_build<T>(
    rounds: usize,
    mut build: impl FnMut() -> Result<T, String>,
) -> Result<(f64, T), String> {
    let mut times = Vec::with_capacity(rounds);
    let mut last = None;
    for _ in 0..rounds.max(1) {
        let start = Instant::now();
        let built = black_box(build()?);
        times.push(ms_since(start));
        last = Some(built);
    }
    let built = last.ok_or("no build round ran")?;
    Ok((median(times), built))
}

/// Runs `open` `rounds` times (dropping what it opened inside the timing); the median time.
pub fn time_open<T>(
    rounds: usize,
    mut open: impl FnMut() -> Result<T, String>,
) -> Result<f64, String> {
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds.max(1) {
        let start = Instant::now();
        drop(black_box(open()?));
        times.push(ms_since(start));
    }
    Ok(median(times))
}

/// Times `may_pull` over `queries` in batches of [`BATCH`] after one untimed warm-up pass
/// over up to 100,000 of them: the median per-query nanoseconds, and how many were allowed.
pub fn time_queries(
    queries: &[(&str, &str)],
    mut may_pull: impl FnMut(&str, &str) -> bool,
) -> (f64, usize) {
    for (user, repository) in queries.iter().take(100_000) {
        black_box(may_pull(black_box(user), black_box(repository)));
    }
    let mut allowed = 0;
    let mut per_query = Vec::with_capacity(queries.len() / BATCH + 1);
    for batch in queries.chunks(BATCH) {
        let start = Instant::now();
        for (user, repository) in batch {
            if may_pull(black_box(user), black_box(repository)) {
                allowed += 1;
            }
        }
        let elapsed = start.elapsed().as_secs_f64() * 1e9;
        per_query.push(elapsed / batch.len() as f64);
    }
    (median(per_query), allowed)
}
