//! A guard for one server process started by the harness.
//!
//! stdout and stderr go to `<scenario>/<name>.log`; stdin is closed. Dropping the guard stops
//! the process (SIGTERM, then SIGKILL after a grace period) and, when the test is failing,
//! prints the tail of its log first. It must never leave a process behind.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// Lines of log printed when a test fails.
const TAIL_LINES: usize = 60;
/// How long a process gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(3);

#[derive(Debug)]
pub struct Process {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    command_line: String,
    /// Started as the leader of its own process group: signals go to the whole group (a
    /// forking server such as gunicorn, so no worker outlives its master).
    group: bool,
}

impl Process {
    /// Starts `command` with its output in `<log_dir>/<name>.log`.
    pub fn spawn(name: &str, mut command: Command, log_dir: &Path) -> Process {
        let log = log_dir.join(format!("{name}.log"));
        let out =
            File::create(&log).unwrap_or_else(|err| panic!("create {}: {err}", log.display()));
        let err = out
            .try_clone()
            .unwrap_or_else(|err| panic!("dup log handle {}: {err}", log.display()));
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        Process::start(name, command, log)
    }

    /// Like [`Process::spawn`], but as the leader of a new process group (`setsid`-like), so
    /// stopping it signals every process it forked.
    pub fn spawn_group(name: &str, mut command: Command, log_dir: &Path) -> Process {
        use std::os::unix::process::CommandExt as _;
        command.process_group(0);
        let mut process = Process::spawn(name, command, log_dir);
        process.group = true;
        process
    }

    /// Starts a driver that speaks a line protocol: its stdin and stdout are the caller's,
    /// only its stderr goes to `<log_dir>/<name>.log`.
    pub fn spawn_piped(
        name: &str,
        mut command: Command,
        log_dir: &Path,
    ) -> (Process, ChildStdin, ChildStdout) {
        let log = log_dir.join(format!("{name}.log"));
        let err =
            File::create(&log).unwrap_or_else(|err| panic!("create {}: {err}", log.display()));
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err));
        let mut process = Process::start(name, command, log);
        let child = process.child.as_mut().expect("just started");
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        (process, stdin, stdout)
    }

    fn start(name: &str, mut command: Command, log: PathBuf) -> Process {
        let command_line = format!("{command:?}");
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("start {name}: {command_line}: {err}"));
        eprintln!(
            "[harness] started {name} (pid {}), log {}",
            child.id(),
            log.display()
        );
        Process {
            name: name.to_owned(),
            child: Some(child),
            log,
            command_line,
            group: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The whole log so far (lossy UTF-8).
    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        let from = all.len().saturating_sub(lines);
        all.get(from..).unwrap_or_default().join("\n")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `Some(description)` if the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.as_mut() {
            None => Some("stopped by the harness".to_owned()),
            Some(child) => match child.try_wait() {
                Ok(Some(status)) => Some(status.to_string()),
                Ok(None) => None,
                Err(err) => Some(format!("unknown ({err})")),
            },
        }
    }

    /// Panics with the log tail if the process is no longer running.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.exited() {
            panic!(
                "{} exited ({status}); command: {}\n--- {} (last {TAIL_LINES} lines) ---\n{}",
                self.name,
                self.command_line,
                self.log.display(),
                self.tail(TAIL_LINES)
            );
        }
    }

    /// Polls `probe` until it succeeds, failing at once (with the log tail) if the process
    /// dies, or at `timeout` (with the last probe error and the log tail).
    pub fn wait_ready<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut() -> Result<T, String>,
    ) -> T {
        let start = Instant::now();
        loop {
            self.assert_running();
            match probe() {
                Ok(value) => return value,
                Err(reason) if start.elapsed() >= timeout => panic!(
                    "{} not ready after {:.1?} waiting for {what}: {reason}\n--- {} (last {TAIL_LINES} lines) ---\n{}",
                    self.name,
                    start.elapsed(),
                    self.log.display(),
                    self.tail(TAIL_LINES)
                ),
                Err(_) => std::thread::sleep(crate::wait::POLL_INTERVAL),
            }
        }
    }

    /// SIGKILL, no grace: a crash as far as the rest of the stack can tell.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.group {
                signal_group("-KILL", child.id());
            }
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("[harness] killed {} (SIGKILL)", self.name);
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within the grace period.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            if self.group {
                signal_group("-TERM", child.id());
            } else {
                // std has no SIGTERM and this workspace forbids `unsafe`: use kill(1).
                let _ = Command::new("kill")
                    .arg("-TERM")
                    .arg(child.id().to_string())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            let deadline = Instant::now() + STOP_GRACE;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if !matches!(child.try_wait(), Ok(Some(_))) {
                let _ = child.kill();
            }
        }
        let _ = child.wait();
        if self.group {
            // Whatever the leader left behind (workers finishing their requests).
            signal_group("-KILL", child.id());
        }
    }

    /// Prints the log tail to stderr (what a failing test shows).
    pub fn print_tail(&self) {
        eprintln!(
            "--- {} log {} (last {TAIL_LINES} lines) ---\n{}\n--- end of {} log ---",
            self.name,
            self.log.display(),
            self.tail(TAIL_LINES),
            self.name
        );
    }
}

/// `kill <signal> -- -<pgid>`: the whole process group led by `leader`.
fn signal_group(signal: &str, leader: u32) {
    let _ = Command::new("kill")
        .arg(signal)
        .arg("--")
        .arg(format!("-{leader}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Drop for Process {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_tail();
        }
        self.stop();
    }
}
