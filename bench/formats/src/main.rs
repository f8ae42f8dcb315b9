//! `formats`: measures our schema-2 index layout against two alternatives — fst maps and an
//! rkyv archive — on the scale benchmark's data (100,000 repositories, 10,000 users, 100
//! grants each), and prints one markdown table: serialized size, build time, open + validate
//! time and the per-query cost of "may user U pull repository R".
//!
//! Native: `cargo build --release -p registry-gate-bench-formats && target/release/formats`.
//! Under V8 (where the filter runs): build for `wasm32-wasip1` and run `run-wasm.mjs` beside
//! this crate's `Cargo.toml`. `FORMATS_QUERIES`, `FORMATS_OPEN_ROUNDS` and
//! `FORMATS_BUILD_ROUNDS` lower the work; `FORMATS_CPU` and `FORMATS_RUNTIME` label a run
//! that cannot read `/proc` (the wasm runner sets them).

mod data;
#[cfg(feature = "fst")]
mod fst_format;
mod measure;
mod ours;
#[cfg(feature = "rkyv")]
mod rkyv_format;

use data::Data;
use measure::{Row, Settings};

fn main() -> Result<(), String> {
    let settings = Settings::from_env()?;
    let data = Data::generate();
    let queries = data.queries(settings.queries);
    print_header(&data, &settings);

    let mut rows: Vec<Result<Row, String>> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    rows.push(ours::run(&data, &queries, &settings).map_err(|e| format!("ours: {e}")));

    #[cfg(feature = "fst")]
    match fst_format::run(&data, &queries, &settings) {
        Ok(both) => rows.extend(both.map(Ok)),
        Err(e) => rows.push(Err(format!("fst: {e}"))),
    }
    #[cfg(not(feature = "fst"))]
    notes.push(format!(
        "fst: not in this build (feature `fst` off: it did not build for {})",
        target()
    ));

    #[cfg(feature = "rkyv")]
    match rkyv_format::run(&data, &queries, &settings) {
        Ok((row, unaligned)) => {
            rows.push(Ok(row));
            notes.push(format!(
                "rkyv `access` on the same bytes one byte off 16-byte alignment: {unaligned}"
            ));
        }
        Err(e) => rows.push(Err(format!("rkyv: {e}"))),
    }
    #[cfg(not(feature = "rkyv"))]
    notes.push(format!(
        "rkyv: not in this build (feature `rkyv` off: it did not build for {})",
        target()
    ));

    print_table(&rows, &settings, &mut notes);
    println!();
    for note in notes {
        println!("- {note}");
    }
    Ok(())
}

/// The target a format did not build for (named when one is compiled out).
#[cfg(not(all(feature = "fst", feature = "rkyv")))]
fn target() -> &'static str {
    if cfg!(target_family = "wasm") {
        "wasm32-wasip1"
    } else {
        "this target"
    }
}

fn print_header(data: &Data, settings: &Settings) {
    println!(
        "## Index formats: {} repositories, {} users, {} grants",
        data.repositories.len(),
        data.users.len(),
        data.grant_count()
    );
    println!();
    println!("- CPU: {}", cpu());
    let build = if cfg!(debug_assertions) {
        "debug build (numbers not meaningful)"
    } else {
        "release build (lto, codegen-units = 1, opt-level 3)"
    };
    match std::env::var("FORMATS_RUNTIME") {
        Ok(runtime) => println!("- {} {build}, run under {runtime}", target_triple()),
        Err(_) => println!("- native {} {build}", target_triple()),
    }
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        let load: Vec<&str> = load.split_whitespace().take(3).collect();
        println!("- load average (1/5/15 min) at start: {}", load.join(" "));
    }
    println!(
        "- {} queries (half for a repository the user holds, half uniformly random), timed in \
         batches of {}: lookup = median over batches of the mean; open = median of {} rounds; \
         build = median of {}",
        settings.queries,
        measure::BATCH,
        settings.open_rounds,
        settings.build_rounds
    );
    println!();
}

fn target_triple() -> String {
    if cfg!(all(target_family = "wasm", target_os = "wasi")) {
        "wasm32-wasip1".into()
    } else {
        format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS)
    }
}

/// The CPU model from `/proc/cpuinfo` (or `FORMATS_CPU`), with the CPUs online.
fn cpu() -> String {
    if let Ok(label) = std::env::var("FORMATS_CPU") {
        return label;
    }
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
        return "unknown (no /proc/cpuinfo)".into();
    };
    let model = info
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map_or("unknown", |(_, model)| model.trim());
    let cpus = info
        .lines()
        .filter(|line| line.starts_with("processor"))
        .count();
    format!("{model} ({cpus} CPUs online)")
}

fn print_table(rows: &[Result<Row, String>], settings: &Settings, notes: &mut Vec<String>) {
    println!(
        "| format | size (MiB) | build (ms) | open + validate (ms, median of {}) | lookup (ns/query) \
         | checks every name |",
        settings.open_rounds
    );
    println!("|---|---:|---:|---:|---:|---|");
    let mut allowed = Vec::new();
    for row in rows {
        match row {
            Ok(row) => {
                println!(
                    "| {} | {:.2} | {:.0} | {:.2} | {:.0} | {} |",
                    row.format,
                    row.bytes as f64 / (1024.0 * 1024.0),
                    row.build_ms,
                    row.open_ms,
                    row.lookup_ns,
                    if row.every_name { "yes" } else { "no" }
                );
                notes.push(format!(
                    "{} ({} bytes) validates: {}",
                    row.format, row.bytes, row.checks
                ));
                allowed.push(row.allowed);
            }
            Err(e) => println!("| {e} | — | — | — | — | — |"),
        }
    }
    let agree = allowed.windows(2).all(|w| match w {
        [a, b] => a == b,
        _ => true,
    });
    notes.push(format!(
        "queries answered \"may pull\": {} ({})",
        allowed
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(" / "),
        if agree {
            "every format agrees"
        } else {
            "FORMATS DISAGREE"
        }
    ));
}
