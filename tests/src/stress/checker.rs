//! The stress run's checker: reads a recorded history (`history.rs`) and lists every
//! violation of what registry-gate promises. Pure: no process, clock or file.
//!
//! The rules, each a [`Rule`]:
//! - no acknowledged write lost: every generation of the same epoch from the acknowledged one
//!   on still carries it (a Katello writer's version never goes back, an added repository
//!   never disappears);
//! - no two writes acknowledged as the same new generation (a lost update), and republishing
//!   exactly what was read publishes nothing;
//! - no torn snapshot: every body a reader was served decodes and verifies, and one generation
//!   has one checksum;
//! - no regression: each reader and each Envoy worker only moves forward (a higher number in
//!   its epoch, or an epoch it has never held), and no more epochs appear than faults that lose
//!   data or fail Redis over can explain;
//! - no request allowed that the generation in force forbade (nor refused that it allowed);
//! - no 5xx but the documented fail-closed 503s (the filter's `unavailable`, Envoy's own when
//!   the upstream it forwards to is down — response flags `UF`, `UH`, ... — and the token
//!   endpoint's 503 when it has no snapshot or no login slot in time);
//! - no Redis pool above its size.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use super::history::{version_of, Change, Content, Decision, Event, FaultKind, Gen, Write};

/// A promise broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    LostWrite,
    DuplicateGeneration,
    NoOpPublished,
    TornSnapshot,
    Regressed,
    UnexplainedEpoch,
    ForbiddenAllowed,
    AllowedRefused,
    ServerError,
    PoolExceeded,
}

/// One violation, with the evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: Rule,
    pub detail: String,
}

/// What the checker counted and found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub writes: usize,
    pub writes_acknowledged: usize,
    pub writes_changed: usize,
    pub contents: usize,
    pub observations: usize,
    pub decisions: usize,
    /// Decisions checked against the content of the generation that made them.
    pub decisions_checked: usize,
    pub fail_closed: usize,
    /// 503s Envoy gave because the upstream (a sidecar killed by the injector, say) was down,
    /// and the sidecar's own documented 503s for `/v2/token`.
    pub upstream_down: usize,
    pub logins: usize,
    pub logins_failed: usize,
    /// As the client saw them (curl's total time, TLS included), and as Envoy did.
    pub login_p99_ms: u64,
    pub gateway_login_p99_ms: u64,
    pub faults: BTreeMap<FaultKind, usize>,
    pub epochs: usize,
    pub peak_pool: BTreeMap<String, (u64, u64)>,
    /// Acknowledged write → every live Envoy worker deciding with it (ms): worst and p99.
    pub enforcement_max_ms: u64,
    pub enforcement_p99_ms: u64,
    pub violations: Vec<Violation>,
}

impl Report {
    fn violate(&mut self, rule: Rule, detail: String) {
        self.violations.push(Violation { rule, detail });
    }

    /// One line per figure, for the run's output.
    pub fn summary(&self) -> String {
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(kind, n)| format!("{kind:?}={n}"))
            .collect();
        let pools: Vec<String> = self
            .peak_pool
            .iter()
            .map(|(sidecar, (peak, max))| format!("{sidecar} {peak}/{max}"))
            .collect();
        format!(
            "writes {} (acknowledged {}, changed {}), generations harvested {}, observations {}, \
             decisions {} (checked {}, fail-closed 503 {}, upstream or token endpoint 503 {}), logins {} (failed {}, p99 {} ms at the client, {} ms in Envoy), \
             faults [{}], epochs {}, peak Redis connections [{}], publish→enforced max {} ms \
             p99 {} ms, violations {}",
            self.writes,
            self.writes_acknowledged,
            self.writes_changed,
            self.contents,
            self.observations,
            self.decisions,
            self.decisions_checked,
            self.fail_closed,
            self.upstream_down,
            self.logins,
            self.logins_failed,
            self.login_p99_ms,
            self.gateway_login_p99_ms,
            faults.join(" "),
            self.epochs,
            pools.join(", "),
            self.enforcement_max_ms,
            self.enforcement_p99_ms,
            self.violations.len()
        )
    }
}

/// Checks a history. Events may come in any order; each carries its time.
pub fn check(events: &[Event]) -> Report {
    let mut report = Report::default();
    let mut writes: Vec<&Write> = Vec::new();
    let mut contents: BTreeMap<Gen, &Content> = BTreeMap::new();
    let mut decisions: Vec<&Decision> = Vec::new();
    let mut login_ms: Vec<u64> = Vec::new();
    for event in events {
        match event {
            Event::Write(write) => writes.push(write),
            Event::Content(content) => {
                if let Some(held) = contents.get(&content.generation) {
                    if held.checksum != content.checksum {
                        report.violate(
                            Rule::TornSnapshot,
                            format!(
                                "generation {} harvested with checksums {} and {}",
                                content.generation, held.checksum, content.checksum
                            ),
                        );
                    }
                } else {
                    contents.insert(content.generation.clone(), content);
                }
            }
            Event::Observation(_) => report.observations += 1,
            Event::Decision(decision) => decisions.push(decision),
            Event::Login(login) => {
                report.logins += 1;
                login_ms.push(login.duration_ms);
                if !(200..300).contains(&login.status) {
                    report.logins_failed += 1;
                }
                if login.status >= 500 && login.status != 503 {
                    report.violate(
                        Rule::ServerError,
                        format!("login answered {} at {} ms", login.status, login.at_ms),
                    );
                }
            }
            Event::Fault(fault) => *report.faults.entry(fault.kind).or_default() += 1,
            Event::Pool(sample) => {
                let peak = report
                    .peak_pool
                    .entry(sample.sidecar.clone())
                    .or_insert((0, sample.max));
                peak.0 = peak.0.max(sample.connections);
                if sample.connections > sample.max {
                    report.violate(
                        Rule::PoolExceeded,
                        format!(
                            "{} had {} Redis connections (pool size {}) at {} ms",
                            sample.sidecar, sample.connections, sample.max, sample.at_ms
                        ),
                    );
                }
            }
        }
    }
    writes.sort_by_key(|w| w.at_ms);
    decisions.sort_by_key(|d| d.at_ms);
    report.writes = writes.len();
    report.contents = contents.len();
    report.decisions = decisions.len();
    report.login_p99_ms = percentile(&login_ms, 99);
    let gateway_ms: Vec<u64> = decisions
        .iter()
        .filter(|d| d.path.starts_with("/v2/token"))
        .filter_map(|d| d.duration_ms)
        .collect();
    report.gateway_login_p99_ms = percentile(&gateway_ms, 99);

    check_writes(&mut report, &writes, &contents);
    check_observations(&mut report, events, &contents);
    check_epochs(&mut report, events, &contents);
    check_decisions(&mut report, &decisions, &contents);
    enforcement(&mut report, &writes, &decisions);
    report
}

/// The slot bits `content`'s repository list has (a Katello grant to a repository the list
/// lacks is dropped by the sidecar, as Katello's own gateway does).
fn present(content: &Content) -> u64 {
    version_of(&content.repositories.keys().cloned().collect())
}

/// The slot bits `content` grants `user`.
fn granted(content: &Content, user: &str) -> u64 {
    content.users.get(user).map_or(0, version_of)
}

fn check_writes(report: &mut Report, writes: &[&Write], contents: &BTreeMap<Gen, &Content>) {
    let mut new_generations: HashMap<&Gen, &Write> = HashMap::new();
    let mut by_user: BTreeMap<&str, Vec<&Write>> = BTreeMap::new();
    for write in writes {
        if write.status >= 500 && write.status != 503 {
            report.violate(
                Rule::ServerError,
                format!(
                    "{} got {} from {} at {} ms",
                    write.writer, write.status, write.sidecar, write.at_ms
                ),
            );
        }
        if let Change::Grant { user, .. } = &write.change {
            by_user.entry(user).or_default().push(write);
        }
        let Some(generation) = write.generation.as_ref().filter(|_| write.acknowledged()) else {
            continue;
        };
        report.writes_acknowledged += 1;
        if write.changed == Some(true) {
            report.writes_changed += 1;
            if let Some(other) = new_generations.insert(generation, write) {
                report.violate(
                    Rule::DuplicateGeneration,
                    format!(
                        "{} ({} ms) and {} ({} ms) were both acknowledged as new generation {generation}",
                        other.writer, other.at_ms, write.writer, write.at_ms
                    ),
                );
            }
        }
        if write.change == Change::NoOp && write.changed != Some(false) {
            report.violate(
                Rule::NoOpPublished,
                format!(
                    "{} republished what it read at {} ms and {} answered {generation} changed={:?}",
                    write.writer, write.at_ms, write.sidecar, write.changed
                ),
            );
        }
        if let Change::Add { repository } = &write.change {
            let later = contents
                .range(generation.clone()..)
                .filter(|(held, _)| held.epoch == generation.epoch);
            for (held, content) in later {
                if !content.repositories.contains_key(repository) {
                    report.violate(
                        Rule::LostWrite,
                        format!(
                            "{}'s repository {repository}, acknowledged as {generation} at {} ms, is missing from {held}",
                            write.writer, write.at_ms
                        ),
                    );
                    break;
                }
            }
        }
    }
    for (user, sequence) in by_user {
        check_grants(report, user, &sequence, contents);
    }
}

/// One Katello writer's grants: each acknowledged version is in the generation it was
/// acknowledged with and in every later one of that epoch until the writer's next attempt.
fn check_grants(
    report: &mut Report,
    user: &str,
    sequence: &[&Write],
    contents: &BTreeMap<Gen, &Content>,
) {
    for (index, write) in sequence.iter().enumerate() {
        let (Change::Grant { version, .. }, Some(generation)) = (&write.change, &write.generation)
        else {
            continue;
        };
        if !write.acknowledged() {
            continue;
        }
        let Some(acknowledged) = contents.get(generation) else {
            continue;
        };
        let mask = present(acknowledged);
        // Until the writer's next attempt: if that was acknowledged, up to its generation; if
        // not, it may have landed anywhere after, so only this generation is certain.
        let next = sequence.get(index + 1);
        let window = contents
            .range(generation.clone()..)
            .filter(|(held, _)| held.epoch == generation.epoch)
            .take_while(|(held, _)| match next {
                None => true,
                Some(next) if next.acknowledged() => next
                    .generation
                    .as_ref()
                    .is_none_or(|n| n.epoch != held.epoch || *held < n),
                Some(_) => *held == generation,
            });
        for (held, content) in window {
            let bits = mask & present(content);
            if granted(content, user) & bits != version & bits {
                report.violate(
                    Rule::LostWrite,
                    format!(
                        "{}'s version {version} of {user}, acknowledged as {generation} at {} ms, \
                         is not what {held} grants (slots {:#x})",
                        write.writer,
                        write.at_ms,
                        granted(content, user)
                    ),
                );
                break;
            }
        }
    }
}

fn check_observations(report: &mut Report, events: &[Event], contents: &BTreeMap<Gen, &Content>) {
    let mut streams: BTreeMap<String, Vec<(u64, Gen)>> = BTreeMap::new();
    for event in events {
        let Event::Observation(seen) = event else {
            continue;
        };
        if let Some(error) = &seen.error {
            report.violate(
                Rule::TornSnapshot,
                format!(
                    "{} was served a snapshot that does not verify at {} ms: {error}",
                    seen.reader, seen.at_ms
                ),
            );
        }
        let Some(generation) = &seen.generation else {
            continue;
        };
        if let (Some(checksum), Some(content)) = (&seen.checksum, contents.get(generation)) {
            if *checksum != content.checksum {
                report.violate(
                    Rule::TornSnapshot,
                    format!(
                        "{} was served {generation} with checksum {checksum}, the store held {}",
                        seen.reader, content.checksum
                    ),
                );
            }
        }
        streams
            .entry(seen.reader.clone())
            .or_default()
            .push((seen.at_ms, generation.clone()));
    }
    for (reader, mut seen) in streams {
        seen.sort_by_key(|(at, _)| *at);
        forward_only(report, &reader, seen, "ms");
    }
}

/// Each stream moves only forward: within an epoch the number never drops, and an epoch left
/// is never returned to.
/// `seen` is in order: by time for readers (`unit` "ms"), by decision count for workers.
fn forward_only(report: &mut Report, stream: &str, seen: Vec<(u64, Gen)>, unit: &str) {
    let mut left: BTreeSet<String> = BTreeSet::new();
    let mut held: Option<Gen> = None;
    for (at, generation) in seen {
        if let Some(previous) = &held {
            if previous.epoch == generation.epoch && generation.number < previous.number {
                report.violate(
                    Rule::Regressed,
                    format!("{stream} went from {previous} back to {generation} at {unit} {at}"),
                );
            }
            if previous.epoch != generation.epoch {
                if left.contains(&generation.epoch) {
                    report.violate(
                        Rule::Regressed,
                        format!(
                            "{stream} returned to epoch {} (from {previous}) at {unit} {at}",
                            generation.epoch
                        ),
                    );
                }
                left.insert(previous.epoch.clone());
            }
        }
        held = Some(generation);
    }
}

fn check_epochs(report: &mut Report, events: &[Event], contents: &BTreeMap<Gen, &Content>) {
    let epochs: BTreeSet<&str> = contents.keys().map(|g| g.epoch.as_str()).collect();
    report.epochs = epochs.len();
    let explained = events
        .iter()
        .filter(|e| matches!(e, Event::Fault(f) if f.kind.may_start_epoch()))
        .count();
    if epochs.len() > explained + 1 {
        report.violate(
            Rule::UnexplainedEpoch,
            format!(
                "{} epochs, but only {explained} faults that lose Redis data or fail it over",
                epochs.len()
            ),
        );
    }
}

/// The repository a registry read names (`/v2/<name>/manifests|blobs/<ref>`, `/v2/<name>/tags/list`).
fn repository_of(path: &str) -> Option<&str> {
    let rest = path.split('?').next()?.strip_prefix("/v2/")?;
    let (name, tail) = rest.rsplit_once('/')?;
    let (name, kind) = name.rsplit_once('/')?;
    match kind {
        "manifests" | "blobs" => Some(name),
        "tags" if tail == "list" => Some(name),
        _ => None,
    }
}

/// Whether `content` lets `identity` (`anonymous` or `user:<login>`) pull `repository`.
fn permits(content: &Content, identity: &str, repository: &str) -> bool {
    match content.repositories.get(repository) {
        None => false,
        Some(false) => true,
        Some(true) => identity
            .strip_prefix("user:")
            .and_then(|user| content.users.get(user))
            .is_some_and(|grants| grants.contains(repository)),
    }
}

fn check_decisions(
    report: &mut Report,
    decisions: &[&Decision],
    contents: &BTreeMap<Gen, &Content>,
) {
    // Per worker, in the order it decided (its sequence; the start time when not logged).
    let mut streams: BTreeMap<String, Vec<(u64, Gen)>> = BTreeMap::new();
    for decision in decisions {
        let at = decision.at_ms;
        let order = decision.sequence.unwrap_or(at);
        if decision.status == 503 && decision.decision == "unavailable" {
            report.fail_closed += 1;
        } else if decision.upstream_down()
            || (decision.status == 503 && decision.path.starts_with("/v2/token"))
        {
            // Envoy's own 503 for a downed upstream, or the token endpoint's documented 503
            // (no snapshot in a new epoch, no login slot in time): closed, not a gateway bug.
            report.upstream_down += 1;
        } else if decision.status >= 500 {
            report.violate(
                Rule::ServerError,
                format!(
                    "{} {} answered {} ({}) at {at} ms",
                    decision.method, decision.path, decision.status, decision.decision
                ),
            );
        }
        let Some(generation) = &decision.generation else {
            continue;
        };
        if let Some(worker) = &decision.worker {
            streams
                .entry(format!("{} worker {worker}", decision.envoy))
                .or_default()
                .push((order, generation.clone()));
        }
        let allowed = match decision.decision.as_str() {
            "allowed" => true,
            "not_found" | "unauthorized" | "denied" => false,
            _ => continue,
        };
        let (Some(repository), Some(content)) =
            (repository_of(&decision.path), contents.get(generation))
        else {
            continue;
        };
        // A refusal logged without a caller (`-`: refused before one was established, e.g. a
        // bad token) says nothing about what the snapshot allows; nor does a 401 to a known
        // user, which is its token's `access` claim not covering the request (the snapshot
        // refuses a user with 404).
        let not_the_snapshots = decision.identity == "-"
            || (decision.decision == "unauthorized" && decision.identity.starts_with("user:"));
        if !matches!(decision.method.as_str(), "GET" | "HEAD") || (!allowed && not_the_snapshots) {
            continue;
        }
        report.decisions_checked += 1;
        let permitted = permits(content, &decision.identity, repository);
        if allowed && !permitted {
            report.violate(
                Rule::ForbiddenAllowed,
                format!(
                    "{} {} by {} allowed at {at} ms by {generation}, which forbids it",
                    decision.method, decision.path, decision.identity
                ),
            );
        } else if !allowed && permitted {
            report.violate(
                Rule::AllowedRefused,
                format!(
                    "{} {} by {} refused ({}) at {at} ms by {generation}, which allows it",
                    decision.method, decision.path, decision.identity, decision.decision
                ),
            );
        }
    }
    for (stream, mut seen) in streams {
        seen.sort_by_key(|(order, _)| *order);
        forward_only(report, &stream, seen, "decision");
    }
}

/// For each acknowledged new generation, how long until every Envoy worker that decided
/// anything afterwards decided with it (or a later one of its epoch).
fn enforcement(report: &mut Report, writes: &[&Write], decisions: &[&Decision]) {
    let mut by_worker: BTreeMap<(&str, &str), Vec<(u64, &Gen)>> = BTreeMap::new();
    for decision in decisions {
        if let (Some(worker), Some(generation)) = (&decision.worker, &decision.generation) {
            by_worker
                .entry((decision.envoy.as_str(), worker.as_str()))
                .or_default()
                .push((decision.at_ms, generation));
        }
    }
    let mut delays: Vec<u64> = Vec::new();
    for write in writes.iter().filter(|w| w.changed == Some(true)) {
        let Some(generation) = &write.generation else {
            continue;
        };
        let mut worst: Option<u64> = None;
        for seen in by_worker.values() {
            let before = seen.iter().any(|(at, _)| *at <= write.at_ms);
            let first = seen.iter().find(|(at, held)| {
                *at >= write.at_ms
                    && held.epoch == generation.epoch
                    && held.number >= generation.number
            });
            if let (true, Some((at, _))) = (before, first) {
                worst = Some(worst.unwrap_or(0).max(at - write.at_ms));
            }
        }
        delays.extend(worst);
    }
    report.enforcement_max_ms = delays.iter().copied().max().unwrap_or(0);
    report.enforcement_p99_ms = percentile(&delays, 99);
}

/// The `p`th percentile (nearest rank) of `values` in ms, 0 when empty.
fn percentile(values: &[u64], p: u32) -> u64 {
    let durations: Vec<Duration> = values.iter().map(|ms| Duration::from_millis(*ms)).collect();
    u64::try_from(crate::storm::percentile(&durations, p).as_millis()).unwrap_or(u64::MAX)
}
