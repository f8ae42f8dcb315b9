//! Property-based and arbitrary-input tests of the core's parsers and verifiers (issue 5 §6).
//!
//! A panic in the filter traps the Envoy VM, so every input-facing function of the core is
//! driven here with arbitrary and structured inputs: [`token::verify`], the route parser, the
//! scope parser, the snapshot index (against the JSON-built index it replaced) and the
//! legacy snapshot decoder. Each property states what must hold (never a
//! panic, never an acceptance the documented rules forbid, exact round trips) and can fail.
//!
//! Runs natively only: proptest does not build for `wasm32-unknown-unknown`, where the
//! table tests in `src/**/tests.rs` run instead.
//!
//! Case counts: each property names a short default suited to CI (the whole set stays well
//! under 20 s in a debug build); `PROPTEST_CASES` overrides every count (`make fuzz`).
//! Failing inputs proptest shrinks are persisted beside the source file as
//! `<module>.proptest-regressions` and replayed first on every later run; commit them.
//!
//! [`token::verify`]: registry_gate_core::token::verify
#![cfg(not(target_arch = "wasm32"))]
// Test code: a failed unwrap or index is a failed test. clippy.toml allows these in `#[test]`
// functions and `#[cfg(test)]` modules; an integration test's helpers are neither.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod flatpak;
mod index;
mod reference;
mod route;
mod scope;
mod snapshot;
mod token;

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use serde_json::{Map, Value};

/// The proptest configuration of a property: `default_cases` unless `PROPTEST_CASES` is set.
pub fn config(default_cases: u32) -> Config {
    let mut config = Config {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..Config::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default_cases;
    }
    config
}

/// Any JSON value, nested up to three levels: every type, odd numbers (extremes, negative
/// zero, fractions), and strings with escapes and non-ASCII text.
pub fn json_value() -> impl Strategy<Value = Value> {
    let number = any::<f64>()
        .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
        .prop_map(Value::from);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        number,
        "\\PC{0,12}".prop_map(Value::String),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,6}", inner, 0..4)
                .prop_map(|members| Value::Object(members.into_iter().collect::<Map<_, _>>())),
        ]
    })
}
