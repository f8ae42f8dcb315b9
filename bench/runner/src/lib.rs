//! What `make bench` and its siblings share: reading `/proc` ([`procfs`]), timing single
//! requests ([`http1`]), the latency picture ([`plot`]), wrk as the load
//! generator ([`wrk`]), the report tables ([`report`]), large generated snapshots ([`scale`])
//! and settings from the environment ([`env_number`]). The binaries in `src/bin/` start the stacks (with the end-to-end tests'
//! harness, `registry-gate-tests`) and print their tables.

pub mod context;
pub mod http1;
pub mod plot;
pub mod procfs;
pub mod report;
pub mod scale;
pub mod wrk;

/// `V2_ACTION` of the `envoy/bench/envoy-request-*.yaml` templates for an Envoy that answers
/// every `/v2/` request itself (a 200, no upstream): only Envoy and the filter are measured.
pub const V2_DIRECT_RESPONSE: &str =
    r#"direct_response: { status: 200, body: { inline_string: "{}" } }"#;

/// A stack whose sidecar checks the logins of `users` against its htpasswd file at bcrypt
/// cost 10 (what a site runs), with the positive login cache for `cache_ttl_secs` seconds
/// (`"0"`: none) — the login benchmarks' two backends.
pub fn htpasswd_logins(
    name: &str,
    users: Vec<String>,
    cache_ttl_secs: &str,
) -> registry_gate_tests::StackOptions {
    let mut options = registry_gate_tests::StackOptions::new(name);
    options.users = users;
    options.bcrypt_cost = 10;
    options.sidecar = registry_gate_tests::sidecar::SidecarExtra {
        args: vec![
            "--login-cache-ttl-secs".to_owned(),
            cache_ttl_secs.to_owned(),
        ],
        ..registry_gate_tests::sidecar::SidecarExtra::default()
    };
    options
}

/// `name` from the environment as a number, or `default` when unset; a value that does not
/// parse is an error naming it (a typo must not silently run the default).
pub fn env_number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .map_err(|err| format!("{name}={value:?}: {err}")),
        Err(_) => Ok(default),
    }
}
