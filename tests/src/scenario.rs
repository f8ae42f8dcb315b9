//! A scenario's private directory: configs, data, certificates and every process log.
//!
//! Created under `<target>/e2e/` so logs of a failed run are easy to find. It is deleted when
//! the scenario ends, except when the test is failing (panicking) or `REGISTRY_GATE_KEEP=1`:
//! then it is kept and its path printed.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// Owns the directory; drop it after every process that writes into it.
#[derive(Debug)]
pub struct Scenario {
    dir: Option<TempDir>,
    path: PathBuf,
}

impl Scenario {
    /// A fresh directory named after the scenario.
    pub fn new(name: &str) -> Scenario {
        let base = crate::paths::target_dir().join("e2e");
        std::fs::create_dir_all(&base)
            .unwrap_or_else(|err| panic!("create {}: {err}", base.display()));
        let safe: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let dir = tempfile::Builder::new()
            .prefix(&format!("{safe}-"))
            .tempdir_in(&base)
            .unwrap_or_else(|err| panic!("create a scenario dir in {}: {err}", base.display()));
        let path = dir.path().to_path_buf();
        Scenario {
            dir: Some(dir),
            path,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `<scenario>/<rel>`, with its parent directories created.
    pub fn file(&self, rel: &str) -> PathBuf {
        let path = self.path.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|err| panic!("create {}: {err}", parent.display()));
        }
        path
    }

    /// `<scenario>/<rel>/`, created.
    pub fn subdir(&self, rel: &str) -> PathBuf {
        let path = self.path.join(rel);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|err| panic!("create {}: {err}", path.display()));
        path
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        let keep =
            std::thread::panicking() || std::env::var("REGISTRY_GATE_KEEP").is_ok_and(|v| v == "1");
        if let Some(dir) = self.dir.take() {
            if keep {
                let path = dir.keep();
                eprintln!("[harness] scenario files kept in {}", path.display());
            }
        }
    }
}
