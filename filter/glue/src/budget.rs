//! The bytes of Flatpak index answers held at once, against `flatpak_buffer_budget_bytes`.
//!
//! Each buffered answer holds a [`Reservation`] for what it has (or declared it will have);
//! dropping it, whichever way the stream ends, gives the bytes back. The wasm build keeps one
//! [`Budget`] per worker (each worker is its own VM), the native build one per process, shared
//! by its workers. Nothing here allocates the bytes: it only counts them, so a response is
//! refused before its body is moved anywhere.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The bytes all answers sharing it may hold at once.
#[derive(Debug, Clone)]
pub struct Budget {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    limit: usize,
    held: AtomicUsize,
}

/// Bytes one answer holds of its budget, given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    shared: Arc<Shared>,
    bytes: usize,
}

impl Budget {
    pub fn new(limit: usize) -> Budget {
        Budget {
            shared: Arc::new(Shared {
                limit,
                held: AtomicUsize::new(0),
            }),
        }
    }

    /// Holds `bytes` for one answer, or `None` if that would pass the limit.
    pub fn reserve(&self, bytes: usize) -> Option<Reservation> {
        let mut reservation = Reservation {
            shared: Arc::clone(&self.shared),
            bytes: 0,
        };
        reservation.grow_to(bytes).then_some(reservation)
    }

    /// The bytes held now, by every answer together.
    pub fn held(&self) -> usize {
        self.shared.held.load(Ordering::Relaxed)
    }
}

impl Reservation {
    /// Holds `bytes` in all (never less than now); `false`, holding what it held, if that
    /// would take the budget past its limit.
    pub fn grow_to(&mut self, bytes: usize) -> bool {
        let Some(more) = bytes.checked_sub(self.bytes) else {
            return true;
        };
        let limit = self.shared.limit;
        let grown = self
            .shared
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(more).filter(|total| *total <= limit)
            });
        if grown.is_ok() {
            self.bytes = bytes;
        }
        grown.is_ok()
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.shared.held.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_share_the_limit_and_give_back_when_dropped() {
        let budget = Budget::new(100);
        let mut first = budget.reserve(60).unwrap();
        assert!(budget.reserve(41).is_none(), "60 + 41 passes 100");
        let second = budget.reserve(40).unwrap();
        assert_eq!(budget.held(), 100);
        assert!(!first.grow_to(61), "no room left");
        assert_eq!(budget.held(), 100, "a refused growth holds nothing more");
        assert!(first.grow_to(10), "never shrinks, so always fits");
        drop(second);
        assert_eq!(budget.held(), 60);
        assert!(first.grow_to(100));
        drop(first);
        assert_eq!(budget.held(), 0);
        assert!(budget.reserve(100).is_some());
        assert!(budget.reserve(usize::MAX).is_none());
    }

    #[test]
    fn clones_count_against_one_budget() {
        let budget = Budget::new(10);
        let other = budget.clone();
        let _held = other.reserve(10).unwrap();
        assert!(budget.reserve(1).is_none());
    }
}
