//! The previous release, built from git: the filter and the sidecar as they were at
//! [`PREVIOUS_RELEASE`], the last commit before snapshot schema 2 (the signed index), for the
//! rolling-upgrade scenario (old and new side by side).
//!
//! The sources come from `git archive` of this repository (so a clone with its history is
//! needed, as any `git clone` has), into `<target>/previous-release/<commit>/`; the build
//! starts from a copy of this build's `release` and `wasm32-wasip1` directories, so only the
//! workspace's own crates compile again. The artifacts are kept and reused.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The last commit whose filter and sidecar speak only the JSON snapshot, schema 1.1.
pub const PREVIOUS_RELEASE: &str = "64a6bd0aaa19158ae09f0dea82944f3bd6781819";

/// The previous release's filter and sidecar.
#[derive(Debug, Clone)]
pub struct PreviousRelease {
    pub wasm: PathBuf,
    pub sidecar: PathBuf,
}

fn run(what: &str, command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("{what}: cannot run {command:?}: {err}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Copies `from` to `to` (preserving times, so cargo sees its artifacts as fresh) unless `to`
/// exists.
fn seed(from: &Path, to: &Path) {
    if to.exists() || !from.exists() {
        return;
    }
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)
            .unwrap_or_else(|err| panic!("create {}: {err}", parent.display()));
    }
    run(
        "seed the previous release's build",
        Command::new("cp").arg("-a").arg(from).arg(to),
    );
}

/// Builds (once) and returns the previous release.
pub fn build() -> PreviousRelease {
    let home = crate::paths::target_dir()
        .join("previous-release")
        .join(PREVIOUS_RELEASE);
    let release = PreviousRelease {
        wasm: home.join("registry_gate_wasm.wasm"),
        sidecar: home.join("registry-gate-sidecar"),
    };
    if release.wasm.exists() && release.sidecar.exists() {
        return release;
    }
    let source = home.join("src");
    let target = home.join("target");
    if !source.join("Cargo.toml").exists() {
        std::fs::create_dir_all(&source)
            .unwrap_or_else(|err| panic!("create {}: {err}", source.display()));
        let archive = home.join("src.tar");
        run(
            &format!("git archive {PREVIOUS_RELEASE} (a clone with history is needed)"),
            Command::new("git")
                .arg("-C")
                .arg(crate::paths::repo_root())
                .args(["archive", "--format=tar", "-o"])
                .arg(&archive)
                .arg(PREVIOUS_RELEASE),
        );
        // `--touch`: sources newer than the seeded artifacts. git archive stamps files with
        // the commit's time, and cargo fingerprints workspace crates by paths relative to the
        // workspace and by mtime, so older stamps would pass this build's artifacts off as
        // the previous release's.
        run(
            "unpack the previous release",
            Command::new("tar")
                .arg("-xf")
                .arg(&archive)
                .arg("--touch")
                .arg("-C")
                .arg(&source),
        );
    }
    let built = crate::paths::target_dir();
    seed(&built.join("release"), &target.join("release"));
    seed(&built.join("wasm32-wasip1"), &target.join("wasm32-wasip1"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    for args in [
        &[
            "build",
            "--release",
            "--locked",
            "-p",
            "registry-gate-sidecar",
        ][..],
        &[
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip1",
            "-p",
            "registry-gate-wasm",
        ][..],
    ] {
        eprintln!(
            "[harness] previous release {PREVIOUS_RELEASE}: cargo {}",
            args.join(" ")
        );
        run(
            "build the previous release",
            Command::new(&cargo)
                .args(args)
                .current_dir(&source)
                .env("CARGO_TARGET_DIR", &target),
        );
    }
    for (from, to) in [
        (
            target.join("wasm32-wasip1/release/registry_gate_wasm.wasm"),
            &release.wasm,
        ),
        (
            target.join("release/registry-gate-sidecar"),
            &release.sidecar,
        ),
    ] {
        let this_build = built.join(from.strip_prefix(&target).unwrap_or(&from));
        assert_ne!(
            std::fs::read(&from).ok(),
            std::fs::read(&this_build).ok(),
            "{} is byte for byte {}: the previous release was not rebuilt",
            from.display(),
            this_build.display()
        );
        std::fs::copy(&from, to)
            .unwrap_or_else(|err| panic!("copy {} to {}: {err}", from.display(), to.display()));
    }
    release
}
