//! What a results file says about where and on what its figures were measured.

use std::path::Path;
use std::process::Command;

use registry_gate_tests::paths;

fn git(args: &[&str]) -> String {
    Command::new("git")
        .arg("-C")
        .arg(paths::repo_root())
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// The short commit hash, marked when tracked files differ from it (untracked files and
/// earlier results do not change what was measured).
pub fn commit() -> String {
    let hash = git(&["rev-parse", "--short=12", "HEAD"]);
    let changes = git(&[
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        ".",
        ":(exclude)bench/results",
    ]);
    if changes.is_empty() {
        hash
    } else {
        format!("{hash} (with uncommitted changes)")
    }
}

/// The first non-empty line `program args` prints (stdout, then stderr); empty if it cannot
/// run.
pub fn first_line(program: &Path, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            text.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_default()
}
