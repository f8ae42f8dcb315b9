//! Prometheus metrics (`GET /metrics`, text exposition format via `prometheus-client`):
//! publishes by outcome and their latency, the current epoch and generation, the Redis pool's
//! connections (in use, idle, waiting; read at scrape time), snapshot long-poll waiters,
//! logins by outcome and their latency, and in ext_authz mode the checks and answers by
//! outcome and the generation they decide from.
//!
//! It only counts: it must never decide anything, and never carry a secret, a login name or a
//! token in a label (labels are closed sets of outcomes; the epoch is a random identifier).

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// What a publish came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PublishOutcome {
    Published,
    Unchanged,
    PreconditionFailed,
    Invalid,
    WouldEmpty,
    Contended,
    Unavailable,
    /// Written on the primary, but too few replicas acknowledged it in time (`WAIT`).
    NotReplicated,
    Internal,
}

impl PublishOutcome {
    fn label(self) -> &'static str {
        match self {
            PublishOutcome::Published => "published",
            PublishOutcome::Unchanged => "unchanged",
            PublishOutcome::PreconditionFailed => "precondition_failed",
            PublishOutcome::Invalid => "invalid",
            PublishOutcome::WouldEmpty => "would_empty",
            PublishOutcome::Contended => "contended",
            PublishOutcome::Unavailable => "unavailable",
            PublishOutcome::NotReplicated => "not_replicated",
            PublishOutcome::Internal => "internal",
        }
    }
}

/// What a `/v2/token` request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoginOutcome {
    Issued,
    /// Wrong credentials, checked by the backend.
    Refused,
    /// Wrong credentials refused again from memory, without the backend.
    RefusedRemembered,
    /// Refused unchecked: too many failed logins for the user, or from the address.
    LimitedUser,
    LimitedAddress,
    Busy,
    Unavailable,
    Failed,
}

impl LoginOutcome {
    fn label(self) -> &'static str {
        match self {
            LoginOutcome::Issued => "issued",
            LoginOutcome::Refused => "refused",
            LoginOutcome::RefusedRemembered => "refused_remembered",
            LoginOutcome::LimitedUser => "limited_user",
            LoginOutcome::LimitedAddress => "limited_address",
            LoginOutcome::Busy => "busy",
            LoginOutcome::Unavailable => "unavailable",
            LoginOutcome::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EpochLabel {
    epoch: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PoolLabel {
    state: &'static str,
}

/// The sidecar's metrics; cheap to share behind the app state.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    publishes: Family<OutcomeLabel, Counter>,
    publish_seconds: Histogram,
    generation: Family<EpochLabel, Gauge>,
    pool: Family<PoolLabel, Gauge>,
    pool_max: Gauge,
    long_poll_waiters: Gauge,
    logins: Family<OutcomeLabel, Counter>,
    login_seconds: Histogram,
    ext_authz_checks: Family<OutcomeLabel, Counter>,
    ext_authz_answers: Family<OutcomeLabel, Counter>,
    ext_authz_generation: Gauge,
}

/// Redis pool connections as the pool reports them at scrape time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    pub max: usize,
    pub open: usize,
    pub idle: usize,
    pub waiting: usize,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("registry_gate_sidecar");
        let publishes = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "publishes",
            "Snapshot publishes (sync API, PUT /v1/snapshot, login refreshes) by outcome",
            publishes.clone(),
        );
        let publish_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "publish_seconds",
            "Time from a publish request to its outcome",
            publish_seconds.clone(),
        );
        let generation = Family::<EpochLabel, Gauge>::default();
        registry.register(
            "snapshot_generation",
            "Generation of the snapshot this sidecar serves, labelled with its epoch",
            generation.clone(),
        );
        let pool = Family::<PoolLabel, Gauge>::default();
        registry.register(
            "redis_pool_connections",
            "Redis pool connections: open (in use + idle), idle, and requests waiting for one",
            pool.clone(),
        );
        let pool_max = Gauge::default();
        registry.register(
            "redis_pool_max_connections",
            "The Redis pool's bound (--redis-pool-size)",
            pool_max.clone(),
        );
        let long_poll_waiters = Gauge::default();
        registry.register(
            "long_poll_waiters",
            "Snapshot long-polls waiting now",
            long_poll_waiters.clone(),
        );
        let logins = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "logins",
            "GET /v2/token requests by outcome",
            logins.clone(),
        );
        let login_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "login_seconds",
            "Time to answer GET /v2/token",
            login_seconds.clone(),
        );
        let ext_authz_checks = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "ext_authz_checks",
            "ext_authz check requests by outcome (the filter's decision outcomes, and flatpak_index_refused)",
            ext_authz_checks.clone(),
        );
        let ext_authz_answers = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "ext_authz_answers",
            "Requests the ext_authz check routed to the sidecar's answer endpoint (catalog, search, /v1/_ping), by outcome",
            ext_authz_answers.clone(),
        );
        let ext_authz_generation = Gauge::default();
        registry.register(
            "ext_authz_generation",
            "Generation of the snapshot the ext_authz checks decide from (0 before the first)",
            ext_authz_generation.clone(),
        );
        Metrics {
            registry,
            publishes,
            publish_seconds,
            generation,
            pool,
            pool_max,
            long_poll_waiters,
            logins,
            login_seconds,
            ext_authz_checks,
            ext_authz_answers,
            ext_authz_generation,
        }
    }

    /// One ext_authz check (`answer` false) or answer, by outcome label.
    pub fn ext_authz(&self, answer: bool, outcome: &'static str) {
        let family = if answer {
            &self.ext_authz_answers
        } else {
            &self.ext_authz_checks
        };
        family.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// The generation the ext_authz checks now decide from.
    pub fn ext_authz_generation(&self, generation: u64) {
        self.ext_authz_generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
    }

    pub fn publish(&self, outcome: PublishOutcome, took: Duration) {
        self.publishes
            .get_or_create(&OutcomeLabel {
                outcome: outcome.label(),
            })
            .inc();
        self.publish_seconds.observe(took.as_secs_f64());
    }

    pub fn login(&self, outcome: LoginOutcome, took: Duration) {
        self.logins
            .get_or_create(&OutcomeLabel {
                outcome: outcome.label(),
            })
            .inc();
        self.login_seconds.observe(took.as_secs_f64());
    }

    /// Long-poll waiters now (read at scrape time from the waiter semaphore).
    fn long_poll_waiters(&self, waiting: usize) {
        self.long_poll_waiters
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
    }

    /// The text exposition of everything, with the scrape-time readings filled in first.
    pub fn render(
        &self,
        served: Option<(&str, u64)>,
        pool: PoolState,
        long_poll_waiters: usize,
    ) -> Result<String, std::fmt::Error> {
        self.generation.clear();
        if let Some((epoch, generation)) = served {
            self.generation
                .get_or_create(&EpochLabel {
                    epoch: epoch.to_owned(),
                })
                .set(i64::try_from(generation).unwrap_or(i64::MAX));
        }
        for (state, value) in [
            ("open", pool.open),
            ("idle", pool.idle),
            ("waiting", pool.waiting),
        ] {
            self.pool
                .get_or_create(&PoolLabel { state })
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        }
        self.pool_max
            .set(i64::try_from(pool.max).unwrap_or(i64::MAX));
        self.long_poll_waiters(long_poll_waiters);
        let mut text = String::new();
        encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_outcomes_generation_and_pool() {
        let metrics = Metrics::new();
        metrics.publish(PublishOutcome::Published, Duration::from_millis(3));
        metrics.publish(PublishOutcome::Unchanged, Duration::from_millis(1));
        metrics.publish(PublishOutcome::Unchanged, Duration::from_millis(1));
        metrics.publish(PublishOutcome::NotReplicated, Duration::from_millis(9));
        metrics.login(LoginOutcome::Refused, Duration::from_millis(40));
        metrics.ext_authz(false, "allowed");
        metrics.ext_authz(false, "allowed");
        metrics.ext_authz(true, "answered");
        metrics.ext_authz_generation(5);
        let pool = PoolState {
            max: 16,
            open: 3,
            idle: 2,
            waiting: 0,
        };
        let text = metrics.render(Some(("e1", 7)), pool, 4).unwrap();
        for line in [
            "registry_gate_sidecar_publishes_total{outcome=\"published\"} 1",
            "registry_gate_sidecar_publishes_total{outcome=\"unchanged\"} 2",
            "registry_gate_sidecar_publishes_total{outcome=\"not_replicated\"} 1",
            "registry_gate_sidecar_logins_total{outcome=\"refused\"} 1",
            "registry_gate_sidecar_snapshot_generation{epoch=\"e1\"} 7",
            "registry_gate_sidecar_redis_pool_connections{state=\"open\"} 3",
            "registry_gate_sidecar_redis_pool_max_connections 16",
            "registry_gate_sidecar_long_poll_waiters 4",
            "registry_gate_sidecar_publish_seconds_count 4",
            "registry_gate_sidecar_ext_authz_checks_total{outcome=\"allowed\"} 2",
            "registry_gate_sidecar_ext_authz_answers_total{outcome=\"answered\"} 1",
            "registry_gate_sidecar_ext_authz_generation 5",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
        // A new epoch replaces the old one's series.
        let text = metrics.render(Some(("e2", 1)), pool, 0).unwrap();
        assert!(!text.contains("epoch=\"e1\""), "{text}");
        assert!(text.contains("registry_gate_sidecar_snapshot_generation{epoch=\"e2\"} 1"));
    }
}
