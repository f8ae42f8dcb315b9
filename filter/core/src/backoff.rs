//! When the snapshot fetcher tries again: exponential backoff with full jitter after failed
//! fetches, and a small jitter before the first fetch, so a fleet of Envoys restarting
//! together (or all finding the sidecar down) does not hit it in lockstep.
//!
//! After the n-th consecutive failure the pause is uniform in `[0, min(cap, base × 2ⁿ⁻¹)]`
//! ("full jitter"); a success resets the count. The first fetch after start waits uniformly
//! in `[0, base]`. Randomness comes in as a plain `u64` from the glue, so every delay is
//! deterministic in tests; this module never reads a clock or a random source itself.

/// Backoff state of one fetch loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    /// Ceiling of the first retry's pause (the fetcher's `retry_ms`).
    base_ms: u64,
    /// Largest ceiling (the fetcher's `retry_max_ms`).
    cap_ms: u64,
    /// Consecutive failures so far.
    failures: u32,
}

impl Backoff {
    pub fn new(base_ms: u64, cap_ms: u64) -> Backoff {
        Backoff {
            base_ms,
            cap_ms: cap_ms.max(base_ms),
            failures: 0,
        }
    }

    /// Pause before the first fetch after start, from `random`.
    pub fn first_delay_ms(&self, random: u64) -> u64 {
        jitter(self.base_ms, random)
    }

    /// The ceiling of the pause after one more failure.
    pub fn ceiling_ms(&self) -> u64 {
        let factor = 1u64.checked_shl(self.failures).unwrap_or(u64::MAX);
        self.base_ms.saturating_mul(factor).min(self.cap_ms)
    }

    /// A fetch failed: the pause before the next one, from `random`.
    pub fn failed(&mut self, random: u64) -> u64 {
        let delay = jitter(self.ceiling_ms(), random);
        self.failures = self.failures.saturating_add(1);
        delay
    }

    /// A fetch succeeded: the next failure starts from `base` again.
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }
}

/// Uniform in `[0, ceiling]` for a uniform `random`.
fn jitter(ceiling: u64, random: u64) -> u64 {
    match ceiling.checked_add(1) {
        Some(span) => random % span,
        None => random,
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn ceilings_double_from_base_up_to_the_cap_and_reset_on_success() {
        let mut backoff = Backoff::new(500, 30_000);
        let mut ceilings = Vec::new();
        for _ in 0..9 {
            let ceiling = backoff.ceiling_ms();
            ceilings.push(ceiling);
            // `random` = the ceiling itself lands exactly on the ceiling.
            assert_eq!(backoff.failed(ceiling), ceiling);
        }
        assert_eq!(
            ceilings,
            [500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]
        );
        backoff.succeeded();
        assert_eq!(backoff.ceiling_ms(), 500);
    }

    #[test]
    fn delays_are_full_jitter_within_the_ceiling() {
        struct Row {
            case: &'static str,
            failures_before: u32,
            random: u64,
            want: u64,
        }
        let rows = [
            Row {
                case: "zero random: no pause",
                failures_before: 0,
                random: 0,
                want: 0,
            },
            Row {
                case: "first failure wraps at base + 1",
                failures_before: 0,
                random: 501,
                want: 0,
            },
            Row {
                case: "first failure, mid",
                failures_before: 0,
                random: 250,
                want: 250,
            },
            Row {
                case: "third failure: ceiling 2000",
                failures_before: 2,
                random: 2_000,
                want: 2_000,
            },
            Row {
                case: "largest random stays within the cap",
                failures_before: 40,
                random: u64::MAX,
                want: u64::MAX % 30_001,
            },
            Row {
                case: "shift beyond 64 bits saturates to the cap",
                failures_before: 200,
                random: 30_000,
                want: 30_000,
            },
        ];
        for row in rows {
            let mut backoff = Backoff::new(500, 30_000);
            for _ in 0..row.failures_before {
                backoff.failed(0);
            }
            let delay = backoff.failed(row.random);
            assert_eq!(delay, row.want, "{}", row.case);
            assert!(delay <= 30_000, "{}", row.case);
        }
    }

    #[test]
    fn first_fetch_is_jittered_within_base() {
        let backoff = Backoff::new(500, 30_000);
        assert_eq!(backoff.first_delay_ms(0), 0);
        assert_eq!(backoff.first_delay_ms(500), 500);
        assert_eq!(backoff.first_delay_ms(501), 0);
        assert!(backoff.first_delay_ms(u64::MAX) <= 500);
    }

    #[test]
    fn extreme_settings_never_overflow() {
        let mut backoff = Backoff::new(u64::MAX, u64::MAX);
        assert_eq!(backoff.failed(7), 7);
        assert_eq!(backoff.ceiling_ms(), u64::MAX);
        assert_eq!(backoff.first_delay_ms(u64::MAX), u64::MAX);
        // A cap below the base is the base.
        assert_eq!(Backoff::new(500, 10).ceiling_ms(), 500);
    }
}
