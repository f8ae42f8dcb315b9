//! Inside real Envoy, ES256 and RS256 signatures are checked by Envoy's BoringSSL (the
//! `verify_signature` foreign function) and EdDSA by the module's own Rust: each worker's
//! start-up probe says so in the log, every algorithm's valid token pulls, a token whose
//! signature was tampered with is refused whichever side checked it, and
//! `registry_gate.signatures.<alg>_<host|wasm>` counts each check on the side that made it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use std::collections::BTreeMap;
use std::time::Duration;

use registry_gate_core::token::Algorithm;
use registry_gate_tests::expect::{assert_is_manifest_of, assert_registry_error, get_manifest};
use registry_gate_tests::issuers::Issuer;
use registry_gate_tests::stack::{default_snapshot, StackOptions};
use registry_gate_tests::tokens::Mint;
use registry_gate_tests::wait::poll;
use registry_gate_tests::{Auth, HttpVersion, Stack};

/// Signature checks counted so far, by stat suffix (`es256_host`, ...), over every worker.
fn signature_counts(stack: &mut Stack) -> BTreeMap<String, u64> {
    let stats = stack.envoy.stats(r"registry_gate\.signatures\.").unwrap();
    let mut counts = BTreeMap::new();
    for (name, value) in stats {
        if let Some((_, suffix)) = name.rsplit_once("registry_gate.signatures.") {
            *counts.entry(suffix.to_owned()).or_insert(0) += value;
        }
    }
    counts
}

/// The token with one character of its signature changed (not the last: its spare bits must
/// stay zero, or the token is malformed rather than wrongly signed).
fn tampered(token: &str) -> String {
    let at = token.len() - 5;
    let changed = if &token[at..=at] == "A" { "B" } else { "A" };
    format!("{}{changed}{}", &token[..at], &token[at + 1..])
}

#[test]
fn es256_and_rs256_are_checked_by_envoy_and_eddsa_by_the_module() {
    let issuers: Vec<Issuer> = [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256]
        .into_iter()
        .map(|alg| Issuer::generate(alg).unwrap())
        .collect();
    let mut snapshot = default_snapshot();
    snapshot["keys"] = issuers.iter().map(Issuer::jwk).collect();
    let mut options = StackOptions::new("host-signatures");
    options.snapshot = Some(snapshot);
    let mut stack = Stack::start_with(options);
    let image = stack.image("team/private:latest").clone();

    let log = std::fs::read_to_string(stack.dir().join("envoy.log")).unwrap();
    let probes: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("signatures checked by the host:"))
        .collect();
    assert!(!probes.is_empty(), "no worker logged its probe:\n{log}");
    for line in &probes {
        assert!(
            line.ends_with("signatures checked by the host: ES256, RS256"),
            "{line}"
        );
    }

    for issuer in &issuers {
        let alg = issuer.alg;
        let (checked, other) = match alg {
            Algorithm::EdDSA => ("eddsa_wasm", "eddsa_host"),
            Algorithm::ES256 => ("es256_host", "es256_wasm"),
            Algorithm::RS256 => ("rs256_host", "rs256_wasm"),
            Algorithm::HS256 => unreachable!(),
        };
        let before = signature_counts(&mut stack);
        let token = issuer.mint(&Mint::like_sidecar("", "alice", &["team/private"]));
        let context = format!("alice's {alg:?} token");
        let manifest = get_manifest(
            &stack,
            "team/private",
            "latest",
            HttpVersion::Http1,
            Auth::Bearer(&token),
        );
        assert_is_manifest_of(&manifest, &image, &context);
        let forged = get_manifest(
            &stack,
            "team/private",
            "latest",
            HttpVersion::Http1,
            Auth::Bearer(&tampered(&token)),
        );
        assert_registry_error(
            &forged,
            401,
            "UNAUTHORIZED",
            &format!("{context} with a tampered signature"),
        );

        // Two checks (the token, the forgery), both on the expected side: the timer reports
        // them within `snapshot_check_ms`.
        let grown = |now: &BTreeMap<String, u64>, name: &str| {
            now.get(name).copied().unwrap_or(0) - before.get(name).copied().unwrap_or(0)
        };
        let (now, _) = poll(Duration::from_secs(10), || {
            let now = signature_counts(&mut stack);
            if grown(&now, checked) >= 2 {
                Ok(now)
            } else {
                Err(format!("{context}: {checked} not yet grown by 2: {now:?}"))
            }
        })
        .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(grown(&now, checked), 2, "{context}: {now:?}");
        assert_eq!(grown(&now, other), 0, "{context}: {now:?}");
    }
}
