//! Signature checks by Envoy's BoringSSL, through the `verify_signature` foreign function.
//!
//! At start each VM probes the host once per asymmetric algorithm
//! ([`registry_gate_core::signature::Probe`]): an algorithm whose genuine probe signature
//! the host accepts and whose tampered one it refuses is checked by the host from then on;
//! any other (no foreign function, a key the host will not import, Ed25519 which Envoy's
//! digest-verify cannot take) stays with the pure-Rust check. A host call that fails later
//! answers `None`, and Rust decides that token. Which path ran is counted per algorithm
//! (`registry_gate.signatures.<alg>_<host|wasm>`).

use registry_gate_core::signature::{
    decode_result, HostCheck, Probe, SignatureHost, FOREIGN_FUNCTION,
};
use registry_gate_core::token::Algorithm;

use crate::host;

/// The algorithms this VM's host checks.
#[derive(Debug, Clone, Default)]
pub struct EnvoyCrypto {
    takes: Vec<Algorithm>,
}

impl EnvoyCrypto {
    /// Probes the host for every asymmetric algorithm.
    pub fn probe() -> EnvoyCrypto {
        let takes = Probe::all()
            .into_iter()
            .filter(|probe| probe.passes(&mut |check| call(check)))
            .map(|probe| probe.alg)
            .collect();
        EnvoyCrypto { takes }
    }

    /// The algorithms the host passed the probe for, by name.
    pub fn describe(&self) -> String {
        if self.takes.is_empty() {
            return "none".to_owned();
        }
        self.takes
            .iter()
            .map(|alg| alg.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn call(check: &HostCheck<'_>) -> Option<bool> {
    host::foreign_function(FOREIGN_FUNCTION, &check.arguments())
        .ok()
        .and_then(|bytes| decode_result(&bytes))
}

impl SignatureHost for EnvoyCrypto {
    fn handles(&self, alg: Algorithm) -> bool {
        self.takes.contains(&alg)
    }

    fn check(&mut self, check: &HostCheck<'_>) -> Option<bool> {
        call(check)
    }
}
