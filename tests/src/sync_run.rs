//! One finished `registry-gate-sidecar sync` process, read for assertions: its exit code,
//! its diff lines and its one summary line's `key=value` fields. Used by the sidecar's
//! `--from-file` tests and the Pulp scenario alike; it must never run anything itself.

use std::process::Output;

/// A finished `sync` run.
pub struct SyncRun {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl SyncRun {
    pub fn from_output(output: &Output) -> SyncRun {
        SyncRun {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// A field of the summary line (the last line on stdout); panics when it has none.
    pub fn field(&self, key: &str) -> String {
        let line = self.stdout.lines().last().unwrap_or_default();
        line.split(' ')
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in {line:?}; {self:?}"))
            .to_owned()
    }

    /// The number of the summary's `generation=<epoch>.<n>`.
    pub fn generation(&self) -> u64 {
        let text = self.field("generation");
        text.rsplit_once('.')
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or_else(|| panic!("generation={text:?} is not <epoch>.<n>"))
    }
}

impl std::fmt::Debug for SyncRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}
