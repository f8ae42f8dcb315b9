//! skopeo, isolated from the machine's containers configuration.
//!
//! Every invocation uses a policy, a registries.conf and an auth file of its own in the
//! scenario directory, so stored logins or mirrors on the machine can never change what a
//! test sees. It must never use credentials the test did not pass explicitly.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[derive(Debug, Clone)]
pub struct Skopeo {
    bin: PathBuf,
    policy: PathBuf,
    registries_conf: PathBuf,
    auth_file: PathBuf,
    tmp: PathBuf,
}

/// The outcome of one skopeo run.
#[derive(Debug)]
pub struct SkopeoRun {
    pub args: Vec<String>,
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl SkopeoRun {
    pub fn assert_success(&self) -> &SkopeoRun {
        assert!(
            self.success,
            "skopeo {} failed:\nstdout: {}\nstderr: {}",
            self.args.join(" "),
            self.stdout,
            self.stderr
        );
        self
    }

    pub fn assert_failure(&self) -> &SkopeoRun {
        assert!(
            !self.success,
            "skopeo {} succeeded but must fail:\nstdout: {}\nstderr: {}",
            self.args.join(" "),
            self.stdout,
            self.stderr
        );
        self
    }
}

impl Skopeo {
    /// Writes the isolated configuration under `dir/skopeo/`.
    pub fn new(dir: &Path) -> Skopeo {
        let base = dir.join("skopeo");
        let tmp = base.join("tmp");
        std::fs::create_dir_all(&tmp)
            .unwrap_or_else(|err| panic!("create {}: {err}", tmp.display()));
        let policy = base.join("policy.json");
        std::fs::write(
            &policy,
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .unwrap_or_else(|err| panic!("write {}: {err}", policy.display()));
        let registries_conf = base.join("registries.conf");
        std::fs::write(&registries_conf, "unqualified-search-registries = []\n")
            .unwrap_or_else(|err| panic!("write {}: {err}", registries_conf.display()));
        let auth_file = base.join("auth.json");
        std::fs::write(&auth_file, r#"{"auths":{}}"#)
            .unwrap_or_else(|err| panic!("write {}: {err}", auth_file.display()));
        Skopeo {
            bin: crate::paths::skopeo(),
            policy,
            registries_conf,
            auth_file,
            tmp,
        }
    }

    /// The isolated `skopeo --policy <own> <args...>` command, not yet run (for callers that
    /// run it themselves, e.g. to time it); [`Skopeo::run`] runs exactly this.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--policy")
            .arg(&self.policy)
            .args(args)
            .env("CONTAINERS_REGISTRIES_CONF", &self.registries_conf)
            .env("REGISTRY_AUTH_FILE", &self.auth_file)
            .env("TMPDIR", &self.tmp)
            .env_remove("DOCKER_CONFIG");
        cmd
    }

    /// `skopeo --policy <own> <args...>`.
    pub fn run(&self, args: &[&str]) -> SkopeoRun {
        let output: Output = self
            .command(args)
            .output()
            .unwrap_or_else(|err| panic!("run {}: {err}", self.bin.display()));
        let run = SkopeoRun {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        eprintln!(
            "[harness] skopeo {} -> {}",
            run.args.join(" "),
            if run.success { "ok" } else { "FAILED" }
        );
        run
    }
}
