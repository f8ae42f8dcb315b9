//! Failed-login limits: how many logins that are not known good may be tried per user and
//! per client address in a window, so wrong passwords cannot fill the bcrypt slots (or make
//! a Katello call each) and lock everyone else out.
//!
//! An attempt holds a slot of its user's and its address's budget while it runs; a refusal
//! keeps it until the window ends, a success gives it back. So concurrent wrong passwords
//! count as they start, not only once they failed. A login the positive cache knows never
//! asks (its password proved itself without work). At most [`MAX_TRACKED`] users and
//! addresses are tracked at once; past that, entries whose window ended go first, then
//! arbitrary idle ones.
//!
//! This module must never hold a password, and never refuse a login for anything but the
//! failures counted here.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Users plus addresses tracked at once.
pub const MAX_TRACKED: usize = 100_000;

/// Attempts allowed per window; zero turns that limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSettings {
    pub per_user: u32,
    pub per_address: u32,
    pub window: Duration,
}

/// Whose budget ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    User { retry_after: Duration },
    Address { retry_after: Duration },
}

impl Limited {
    pub fn retry_after(self) -> Duration {
        match self {
            Limited::User { retry_after } | Limited::Address { retry_after } => retry_after,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    User(String),
    Address(Option<IpAddr>),
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
    running: u32,
}

/// The failure counts of every user and address.
#[derive(Debug, Clone)]
pub struct FailureLimits {
    settings: LimitSettings,
    windows: Arc<Mutex<HashMap<Subject, Window>>>,
}

/// One login being tried: its slots, given back on drop unless [`Attempt::failed`] keeps them.
#[derive(Debug)]
pub struct Attempt {
    limits: FailureLimits,
    subjects: Vec<Subject>,
    failed: bool,
}

impl FailureLimits {
    pub fn new(settings: LimitSettings) -> FailureLimits {
        FailureLimits {
            settings,
            windows: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Subject, Window>> {
        self.windows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a login of `user` from `address`, or whose budget is spent.
    pub fn attempt(&self, user: &str, address: Option<IpAddr>) -> Result<Attempt, Limited> {
        let now = Instant::now();
        let window = self.settings.window;
        let checks = [
            (Subject::User(user.to_owned()), self.settings.per_user),
            (Subject::Address(address), self.settings.per_address),
        ];
        let mut windows = self.lock();
        for (subject, limit) in &checks {
            let Some(current) = windows.get_mut(subject) else {
                continue;
            };
            if now.saturating_duration_since(current.started) >= window {
                *current = Window {
                    started: now,
                    failures: 0,
                    running: current.running,
                };
            }
            if *limit > 0 && current.failures.saturating_add(current.running) >= *limit {
                let retry_after =
                    window.saturating_sub(now.saturating_duration_since(current.started));
                return Err(match subject {
                    Subject::User(_) => Limited::User { retry_after },
                    Subject::Address(_) => Limited::Address { retry_after },
                });
            }
        }
        let mut subjects = Vec::with_capacity(checks.len());
        for (subject, limit) in checks {
            if limit == 0 {
                continue;
            }
            if !windows.contains_key(&subject) && windows.len() >= MAX_TRACKED {
                evict(&mut windows, now, window);
            }
            let entry = windows.entry(subject.clone()).or_insert(Window {
                started: now,
                failures: 0,
                running: 0,
            });
            entry.running = entry.running.saturating_add(1);
            subjects.push(subject);
        }
        Ok(Attempt {
            limits: self.clone(),
            subjects,
            failed: false,
        })
    }
}

impl Attempt {
    /// The login was refused: its slots count as failures until their windows end.
    pub fn failed(mut self) {
        self.failed = true;
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        let mut windows = self.limits.lock();
        for subject in &self.subjects {
            if let Some(window) = windows.get_mut(subject) {
                window.running = window.running.saturating_sub(1);
                if self.failed {
                    window.failures = window.failures.saturating_add(1);
                }
            }
        }
    }
}

/// Makes room for one more entry: windows that ended and are idle go first, then any idle one.
fn evict(windows: &mut HashMap<Subject, Window>, now: Instant, window: Duration) {
    windows.retain(|_, w| w.running > 0 || now.saturating_duration_since(w.started) < window);
    if windows.len() >= MAX_TRACKED {
        let idle = windows
            .iter()
            .find(|(_, w)| w.running == 0)
            .map(|(subject, _)| subject.clone());
        if let Some(idle) = idle {
            windows.remove(&idle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(60);

    fn limits(per_user: u32, per_address: u32) -> FailureLimits {
        FailureLimits::new(LimitSettings {
            per_user,
            per_address,
            window: WINDOW,
        })
    }

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, last]))
    }

    #[tokio::test(start_paused = true)]
    async fn failures_spend_the_users_budget_from_any_address() {
        let limits = limits(3, 0);
        for last in 1..=3 {
            limits.attempt("alice", ip(last)).unwrap().failed();
        }
        let refused = limits.attempt("alice", ip(9)).unwrap_err();
        assert!(matches!(refused, Limited::User { .. }), "{refused:?}");
        assert_eq!(refused.retry_after(), WINDOW);
        assert!(
            limits.attempt("bob", ip(1)).is_ok(),
            "other users are not limited"
        );
        tokio::time::advance(WINDOW).await;
        assert!(limits.attempt("alice", ip(1)).is_ok(), "a new window");
    }

    #[tokio::test(start_paused = true)]
    async fn an_address_is_limited_across_users_and_successes_give_back() {
        let limits = limits(0, 2);
        drop(limits.attempt("u1", ip(1)).unwrap());
        drop(limits.attempt("u2", ip(1)).unwrap());
        limits.attempt("u3", ip(1)).unwrap().failed();
        limits.attempt("u4", ip(1)).unwrap().failed();
        let refused = limits.attempt("u5", ip(1)).unwrap_err();
        assert!(matches!(refused, Limited::Address { .. }), "{refused:?}");
        assert!(limits.attempt("u5", ip(2)).is_ok(), "another address");
        assert!(
            limits.attempt("u5", None).is_ok(),
            "an unknown address is one more"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_count_while_they_run() {
        let limits = limits(2, 0);
        let first = limits.attempt("alice", ip(1)).unwrap();
        let second = limits.attempt("alice", ip(2)).unwrap();
        assert!(
            limits.attempt("alice", ip(3)).is_err(),
            "two running fill a budget of two"
        );
        drop(first);
        assert!(
            limits.attempt("alice", ip(3)).is_ok(),
            "a success gave its slot back"
        );
        second.failed();
    }

    #[tokio::test(start_paused = true)]
    async fn zero_turns_a_limit_off() {
        let limits = limits(0, 0);
        for _ in 0..100 {
            limits.attempt("alice", ip(1)).unwrap().failed();
        }
        assert!(limits.lock().is_empty(), "nothing tracked");
    }
}
