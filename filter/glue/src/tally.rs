//! The gate's counters as stat increments. Requests never call the host to count: the gate
//! keeps plain counters, and a timer turns their growth since the last report into metric
//! increments, which each build hands to its host.
//!
//! Names (each build prefixes `registry_gate.`, and Envoy its namespace):
//! `decisions.<outcome>`, `token_failures.<reason>`, `certificate_failures.<reason>`,
//! `snapshot.installed`, `snapshot.rejected.<reason>`, `flatpak_index.<outcome>`,
//! `signatures.<alg>_<path>`, `token_cache.shared_hits`.

use registry_gate_core::gate::{signature_stat, Counts};
use registry_gate_core::refusal::Outcome;
use registry_gate_core::signature::Path;
use registry_gate_core::token::Algorithm;

/// Counters by reason, as the gate keeps them.
type Reasons = [(&'static str, u64)];

/// What has been reported so far.
#[derive(Debug, Default)]
pub struct Tally {
    reported: Counts,
}

/// Every reason the core counts, by group: `TokenError`, `CertificateError`,
/// `SnapshotError` (with the index's `IndexError`) and `FlatpakError` reasons, and what the
/// gate counts of the Flatpak index itself. A build that must define its stats up front (the
/// native module) defines these; one it meets that is not here it logs.
const REASONS: [(&str, &[&str]); 4] = [
    (
        "token_failures",
        &[
            "too_large",
            "bad_format",
            "bad_header",
            "algorithm_not_allowed",
            "unknown_key",
            "key_material_in_header",
            "unsupported_crit",
            "bad_signature",
            "bad_claims",
            "missing_exp",
            "expired",
            "not_yet_valid",
            "wrong_issuer",
            "wrong_audience",
            "lifetime_too_long",
            "bad_subject",
            "revoked",
        ],
    ),
    (
        "certificate_failures",
        &[
            "not_text",
            "malformed",
            "no_cn",
            "many_cn",
            "ambiguous",
            "bad_host_name",
        ],
    ),
    (
        "snapshot.rejected",
        &[
            "malformed",
            "unsupported_schema",
            "unknown_features",
            "checksum_mismatch",
            "invalid",
            "not_newer",
            "suspiciously_empty",
            "truncated",
            "unsigned",
            "unknown_publisher",
            "bad_signature",
        ],
    ),
    (
        "flatpak_index",
        &[
            "filtered",
            "passed_through",
            "unready",
            "unexpected_status",
            "no_status",
            "encoded",
            "too_large",
            "not_json",
            "no_results",
            "over_budget",
        ],
    ),
];

/// Tokens a gate took over from the callers another worker verified.
const SHARED_HITS: &str = "token_cache.shared_hits";

/// The counters every worker reports from the start, as 0: the decisions by outcome; with
/// `all`, also every counter the gate may report ([`REASONS`], the signature paths,
/// `snapshot.installed` and the shared token cache's hits).
pub fn metric_names(all: bool) -> Vec<String> {
    let mut names: Vec<String> = Outcome::ALL
        .iter()
        .map(|outcome| format!("decisions.{}", outcome.as_str()))
        .collect();
    if all {
        for (group, reasons) in REASONS {
            names.extend(reasons.iter().map(|reason| format!("{group}.{reason}")));
        }
        for alg in Algorithm::ALL {
            for path in [Path::Host, Path::Wasm] {
                names.push(format!("signatures.{}", signature_stat(alg, path)));
            }
        }
        names.push("snapshot.installed".to_owned());
        names.push(SHARED_HITS.to_owned());
    }
    names
}

impl Tally {
    /// The growth of each counter since the last call, by name (only those that grew).
    pub fn growth(&mut self, counts: &Counts) -> Vec<(String, u64)> {
        let mut grown = Vec::new();
        for (outcome, (now, before)) in Outcome::ALL
            .iter()
            .zip(counts.outcomes.iter().zip(self.reported.outcomes.iter()))
        {
            let by = now.saturating_sub(*before);
            if by > 0 {
                grown.push((format!("decisions.{}", outcome.as_str()), by));
            }
        }
        let groups: [(&str, &Reasons, &Reasons); 5] = [
            (
                "token_failures",
                &counts.token_failures,
                &self.reported.token_failures,
            ),
            (
                "certificate_failures",
                &counts.certificate_failures,
                &self.reported.certificate_failures,
            ),
            (
                "snapshot.rejected",
                &counts.rejected,
                &self.reported.rejected,
            ),
            (
                "flatpak_index",
                &counts.flatpak_index,
                &self.reported.flatpak_index,
            ),
            ("signatures", &counts.signatures, &self.reported.signatures),
        ];
        for (prefix, now, before) in groups {
            for (reason, count) in now {
                let reported = before
                    .iter()
                    .find(|(r, _)| r == reason)
                    .map_or(0, |(_, c)| *c);
                let by = count.saturating_sub(reported);
                if by > 0 {
                    grown.push((format!("{prefix}.{reason}"), by));
                }
            }
        }
        for (name, now, before) in [
            (
                "snapshot.installed",
                counts.installed,
                self.reported.installed,
            ),
            (
                SHARED_HITS,
                counts.shared_callers,
                self.reported.shared_callers,
            ),
        ] {
            let by = now.saturating_sub(before);
            if by > 0 {
                grown.push((name.to_owned(), by));
            }
        }
        self.reported = counts.clone();
        grown
    }
}
