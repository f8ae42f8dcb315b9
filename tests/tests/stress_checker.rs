//! The stress checker catches what it claims to. `tests/fixtures/stress/recorded.jsonl` is
//! the first seconds of a real `make stress` run (writes, harvested generations, reader
//! observations, Envoy decisions, logins, a fault): as recorded it passes; doctored with a lost
//! write, a regressed generation, a torn snapshot or a forbidden request allowed, it fails
//! with exactly that rule.

use registry_gate_tests::stress::checker::{check, Rule};
use registry_gate_tests::stress::history::{self, Change, Event, Gen, Observation};

fn recorded() -> Vec<Event> {
    history::load(
        &registry_gate_tests::paths::repo_root().join("tests/fixtures/stress/recorded.jsonl"),
    )
}

/// The rules the checker reported.
fn broken(events: &[Event]) -> Vec<Rule> {
    let mut rules: Vec<Rule> = check(events).violations.iter().map(|v| v.rule).collect();
    rules.dedup();
    rules
}

#[test]
fn the_recorded_history_passes_and_exercises_every_rule() {
    let events = recorded();
    let report = check(&events);
    assert!(report.violations.is_empty(), "{:#?}", report.violations);
    assert!(
        report.writes_acknowledged > 0 && report.writes_changed > 0,
        "{}",
        report.summary()
    );
    assert!(report.contents > 1, "{}", report.summary());
    assert!(report.observations > 1, "{}", report.summary());
    assert!(report.decisions_checked > 0, "{}", report.summary());
}

#[test]
fn a_lost_repository_is_caught() {
    let mut events = recorded();
    let (repository, acknowledged) = events
        .iter()
        .find_map(|e| match e {
            Event::Write(w) if w.acknowledged() => match &w.change {
                Change::Add { repository } => Some((repository.clone(), w.generation.clone()?)),
                _ => None,
            },
            _ => None,
        })
        .expect("the recording has an acknowledged added repository");
    // A later generation of the same epoch without it: the write was lost.
    let later = events
        .iter_mut()
        .filter_map(|e| match e {
            Event::Content(c)
                if c.generation.epoch == acknowledged.epoch
                    && c.generation.number > acknowledged.number =>
            {
                Some(c)
            }
            _ => None,
        })
        .last()
        .expect("a later generation was harvested");
    assert!(later.repositories.remove(&repository).is_some());
    assert_eq!(broken(&events), vec![Rule::LostWrite]);
}

#[test]
fn a_lost_grant_is_caught() {
    let mut events = recorded();
    let (user, acknowledged) = events
        .iter()
        .find_map(|e| match e {
            Event::Write(w) if w.acknowledged() => match &w.change {
                Change::Grant { user, version } if *version > 0 => {
                    Some((user.clone(), w.generation.clone()?))
                }
                _ => None,
            },
            _ => None,
        })
        .expect("the recording has an acknowledged grant");
    let content = events
        .iter_mut()
        .find_map(|e| match e {
            Event::Content(c) if c.generation == acknowledged => Some(c),
            _ => None,
        })
        .expect("the acknowledged generation was harvested");
    content.users.remove(&user);
    assert!(broken(&events).contains(&Rule::LostWrite));
}

#[test]
fn a_regressed_generation_is_caught() {
    let mut events = recorded();
    let (reader, last) = events
        .iter()
        .filter_map(|e| match e {
            Event::Observation(o) => Some((o.reader.clone(), o.generation.clone()?, o.at_ms)),
            _ => None,
        })
        .max_by_key(|(_, generation, at)| (generation.number, *at))
        .map(|(reader, generation, _)| (reader, generation))
        .expect("the recording has observations");
    assert!(last.number > 1);
    // The same reader, later, served an older generation of the same epoch.
    let at_ms = events.iter().map(event_time).max().unwrap_or(0) + 1;
    events.push(Event::Observation(Observation {
        at_ms,
        reader,
        generation: Some(Gen {
            epoch: last.epoch.clone(),
            number: last.number - 1,
        }),
        checksum: None,
        error: None,
    }));
    assert_eq!(broken(&events), vec![Rule::Regressed]);
}

#[test]
fn a_torn_snapshot_is_caught() {
    let mut events = recorded();
    events.push(Event::Observation(Observation {
        at_ms: 1,
        reader: "sidecar".into(),
        generation: None,
        checksum: None,
        error: Some("snapshot checksum does not match its content".into()),
    }));
    assert_eq!(broken(&events), vec![Rule::TornSnapshot]);
}

#[test]
fn a_forbidden_request_allowed_is_caught() {
    let mut events = recorded();
    let refused = events
        .iter_mut()
        .find_map(|e| match e {
            Event::Decision(d)
                if d.decision == "not_found"
                    && d.generation.is_some()
                    && d.path.contains("/manifests/") =>
            {
                Some(d)
            }
            _ => None,
        })
        .expect("the recording has a refused probe");
    refused.decision = "allowed".into();
    refused.status = 200;
    assert_eq!(broken(&events), vec![Rule::ForbiddenAllowed]);
}

fn event_time(event: &Event) -> u64 {
    match event {
        Event::Write(e) => e.at_ms,
        Event::Observation(e) => e.at_ms,
        Event::Decision(e) => e.at_ms,
        Event::Login(e) => e.at_ms,
        Event::Fault(e) => e.at_ms,
        Event::Pool(e) => e.at_ms,
        Event::Content(_) => 0,
    }
}
