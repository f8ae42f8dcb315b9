//! The stress suite at CI size (`make stress` runs it larger by hand): concurrent Katello and
//! native writers, readers, probes, a login burst and skopeo pulls through real Envoy, two
//! sidecars on one Redis, while faults are injected — then the checker over the recorded
//! history must find nothing broken. (`registry_gate_tests::stress` says what runs; its checker
//! is shown to catch violations in `stress_checker.rs`.)

use registry_gate_tests::stress::{self, Params};

#[test]
fn every_promise_holds_under_writers_logins_and_faults() {
    let params = Params::from_env(Params::ci());
    eprintln!("[stress] {params:?}");
    let outcome = stress::run("stress", &params);
    let report = &outcome.report;
    eprintln!("[stress] {}", report.summary());
    eprintln!(
        "[stress] skopeo pulls: {} completed, {} failed; history in {}",
        outcome.pulls.0,
        outcome.pulls.1,
        outcome.history.display()
    );
    for violation in &report.violations {
        eprintln!(
            "[stress] VIOLATION {:?}: {}",
            violation.rule, violation.detail
        );
    }
    assert!(
        report.violations.is_empty(),
        "{} violations (listed above)",
        report.violations.len()
    );
    // The run did what it claims, or a quiet pass would prove nothing.
    assert!(report.writes_changed > 0, "no write changed anything");
    assert!(report.decisions_checked > 0, "no decision was checked");
    assert_eq!(
        report.logins,
        params.logins * params.login_bursts,
        "every login answered"
    );
    let injected: usize = report.faults.values().sum();
    assert!(injected > 0, "no fault was injected");
    assert!(outcome.pulls.0 > 0, "no skopeo pull completed");
}
