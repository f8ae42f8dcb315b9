//! Katello's container gateway sync calls, made by `tests/ruby/katello_sync_client.rb` with
//! rest-client 2.1.0 exactly as Katello and Foreman make them (form-encoded Hash payloads,
//! `[""]` trailing slash on PUTs, Foreman's headers and client certificate).
//!
//! The driver is one long-running Ruby process speaking JSON lines on stdin/stdout, so each
//! call costs a request, not a Ruby start. It must never retry or reinterpret an answer: the
//! test sees the status and body rest-client got.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{ChildStdin, Command};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::Deserialize;

use crate::process::Process;
use crate::scenario::Scenario;
use crate::tls::ClientCert;

/// Longer than Foreman's 60 s request timeout, so the driver always answers first.
const CALL_TIMEOUT: Duration = Duration::from_secs(75);

/// What Katello got back from one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncAnswer {
    /// The HTTP status; 0 when no HTTP answer came (see `error`).
    pub status: u16,
    pub body: String,
    pub content_type: Option<String>,
    /// Why there was no HTTP answer (TLS failure, refused connection, timeout).
    pub error: Option<String>,
    pub elapsed: Duration,
}

#[derive(Debug, Deserialize)]
struct Line {
    status: Option<u16>,
    body: Option<String>,
    content_type: Option<String>,
    error: Option<String>,
    elapsed_ms: u64,
}

#[derive(Debug)]
struct Pipe {
    stdin: ChildStdin,
    answers: Receiver<String>,
}

#[derive(Debug)]
pub struct KatelloSync {
    process: Mutex<Process>,
    pipe: Mutex<Pipe>,
}

impl KatelloSync {
    /// Starts the driver as `<name>` against `proxy_url`, trusting `ca` and presenting
    /// `client` (Foreman's certificate) when given.
    pub fn start(
        scenario: &Scenario,
        name: &str,
        proxy_url: &str,
        ca: &Path,
        client: Option<&ClientCert>,
    ) -> KatelloSync {
        let mut command = Command::new(crate::paths::ruby_with_plugin_libs());
        command
            .arg(crate::paths::ruby_script("katello_sync_client.rb"))
            .arg("--url")
            .arg(proxy_url)
            .arg("--ca")
            .arg(ca);
        if let Some(client) = client {
            command
                .arg("--cert")
                .arg(&client.cert)
                .arg("--key")
                .arg(&client.key);
        }
        let (process, stdin, stdout) = Process::spawn_piped(name, command, scenario.path());
        let (send, answers) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        KatelloSync {
            process: Mutex::new(process),
            pipe: Mutex::new(Pipe { stdin, answers }),
        }
    }

    /// One sync call as Katello makes it: `users` is a GET, every other name a PUT of
    /// `payload` (the JSON form of Katello's Hash; Null for `users`).
    pub fn call(&self, call: &str, payload: serde_json::Value) -> SyncAnswer {
        self.request(serde_json::json!({ "call": call, "payload": payload }))
    }

    /// Like [`KatelloSync::call`], with the driver's options spelled out, e.g.
    /// `{"call": "update_hosts", "payload": {...}, "trailing_slash": false}`.
    pub fn request(&self, request: serde_json::Value) -> SyncAnswer {
        let mut pipe = self.pipe.lock().unwrap_or_else(PoisonError::into_inner);
        let written = writeln!(pipe.stdin, "{request}").and_then(|()| pipe.stdin.flush());
        let line = match written {
            Ok(()) => pipe.answers.recv_timeout(CALL_TIMEOUT),
            Err(_) => Err(RecvTimeoutError::Disconnected),
        };
        let line = line.unwrap_or_else(|err| {
            let mut process = self.process.lock().unwrap_or_else(PoisonError::into_inner);
            process.assert_running();
            panic!(
                "Katello driver gave no answer to {request} ({err}); its log:\n{}",
                process.tail(40)
            )
        });
        let parsed: Line = serde_json::from_str(&line)
            .unwrap_or_else(|err| panic!("Katello driver answered {line:?}: {err}"));
        SyncAnswer {
            status: parsed.status.unwrap_or(0),
            body: parsed.body.unwrap_or_default(),
            content_type: parsed.content_type,
            error: parsed.error,
            elapsed: Duration::from_millis(parsed.elapsed_ms),
        }
    }
}
