//! Real Pulp 3 (pulpcore + pulp-container from `.venv-pulp`) on loopback, for the capsule
//! scenarios: a private PostgreSQL cluster, a settings file, `migrate`, a generated admin
//! password, and the API app (gunicorn over TLS), the content app and one task worker, each
//! a process group stopped as a whole.
//!
//! Pulp runs as under Katello: `TOKEN_AUTH_DISABLED = True`, so Pulp lets every GET through
//! and registry-gate alone decides who may pull. `CONTENT_ORIGIN` is the gateway's public
//! URL, so the `302 Location` Pulp answers a blob GET with comes back through Envoy to the
//! content app, which checks the signed `validate_token` itself.
//!
//! Images are pushed straight to the API app as admin (never through the gateway). The admin
//! password is generated per run and only ever written into the scenario directory. It must
//! never skip: a missing Pulp or PostgreSQL is a panic naming `make deps`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::http::{Auth, Request};
use crate::oci::OciImage;
use crate::process::Process;
use crate::scenario::Scenario;
use crate::skopeo::Skopeo;
use crate::tls::Tls;

/// `migrate` on a fresh database takes about 20 s on two cores; leave room for a busy one.
const MIGRATE_TIMEOUT: Duration = Duration::from_secs(300);
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Ports a Pulp is started on.
#[derive(Debug, Clone)]
pub struct PulpOptions {
    pub postgres_port: u16,
    pub api_port: u16,
    pub content_port: u16,
    /// Where Pulp's blob redirects point: the gateway's `https://host:port`.
    pub content_origin: String,
}

/// One PostgreSQL cluster; `pg_ctl stop` when dropped.
#[derive(Debug)]
struct Postgres {
    data: PathBuf,
    as_postgres: bool,
    port: u16,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut cmd = pg_command(self.as_postgres, "pg_ctl");
        cmd.arg("-D")
            .arg(&self.data)
            .arg("-m")
            .arg("immediate")
            .arg("-w")
            .arg("stop");
        let _ = cmd.output();
        eprintln!("[harness] stopped postgres on port {}", self.port);
    }
}

/// A running Pulp. Field order is drop order: services, then the database, then the files.
#[derive(Debug)]
pub struct Pulp {
    pub api: Process,
    pub content: Process,
    pub worker: Process,
    postgres: Postgres,
    pub options: PulpOptions,
    /// The API app's TLS (its CA is what skopeo and Envoy trust).
    pub tls: Tls,
    admin_password: String,
    skopeo: Skopeo,
    /// How long [`Pulp::start`] took, by step.
    pub timings: Vec<(&'static str, Duration)>,
    pub scenario: Scenario,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A PostgreSQL program, run as `postgres` when we are root (PostgreSQL refuses root).
fn pg_command(as_postgres: bool, name: &str) -> Command {
    let program = crate::paths::postgres_command(name);
    if as_postgres {
        let mut cmd = Command::new("runuser");
        cmd.arg("-u").arg("postgres").arg("--").arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// Runs `cmd` to completion with its output appended to `log`; panics with the log tail.
fn run_logged(what: &str, mut cmd: Command, log: &Path, timeout: Duration) {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|err| panic!("open {}: {err}", log.display()));
    let err = out
        .try_clone()
        .unwrap_or_else(|err| panic!("dup {}: {err}", log.display()));
    cmd.stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|err| panic!("{what}: start {cmd:?}: {err}"));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .unwrap_or_else(|err| panic!("{what}: {err}"))
        {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not finish within {timeout:?}; log {}",
                log.display()
            );
        }
        std::thread::sleep(crate::wait::POLL_INTERVAL);
    };
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!(
            "{what} failed ({status}): {cmd:?}\n--- {} ---\n{}",
            log.display(),
            tail.join("\n")
        );
    }
}

impl Pulp {
    /// Brings Pulp up from nothing (about 25 s with the venv in place) and returns once the
    /// status endpoint lists a worker and a content app.
    pub fn start(options: PulpOptions) -> Pulp {
        // Fail on a missing install before creating anything.
        let manager = crate::paths::pulp_command("pulpcore-manager");
        let _ = crate::paths::pulp_command("pulpcore-api");
        let _ = crate::paths::pulp_command("pulpcore-content");
        let _ = crate::paths::pulp_command("pulpcore-worker");
        let _ = crate::paths::postgres_command("initdb");
        let mut timings = Vec::new();
        let started = Instant::now();
        let mut step = Instant::now();
        let mut mark = |timings: &mut Vec<(&'static str, Duration)>, what: &'static str| {
            timings.push((what, step.elapsed()));
            step = Instant::now();
        };

        let scenario = Scenario::new("pulp");
        let dir = scenario.path().to_path_buf();
        let log = dir.join("pulp-setup.log");
        let as_postgres = is_root();

        // PostgreSQL: its own cluster in the scenario directory, trust auth on loopback.
        let pg_dir = scenario.subdir("pg");
        let data = pg_dir.join("data");
        if as_postgres {
            // The scenario directory is 0700 (tempfile); postgres must reach pg/ inside it.
            chmod(&dir, "0711");
            let status = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&pg_dir)
                .status()
                .unwrap_or_else(|err| panic!("chown: {err}"));
            assert!(status.success(), "chown postgres {}", pg_dir.display());
        }
        let mut initdb = pg_command(as_postgres, "initdb");
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ]);
        run_logged("initdb", initdb, &log, Duration::from_secs(120));
        let port = options.postgres_port;
        let mut pg_start = pg_command(as_postgres, "pg_ctl");
        pg_start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(pg_dir.join("postgres.log"))
            .arg("-w")
            .arg("-o")
            .arg(format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                pg_dir.display()
            ))
            .arg("start");
        run_logged("pg_ctl start", pg_start, &log, Duration::from_secs(60));
        let postgres = Postgres {
            data: data.clone(),
            as_postgres,
            port,
        };
        // Separate `-c`s: one `-c` is one transaction, and CREATE DATABASE refuses to run in one.
        for sql in [
            "CREATE USER pulp PASSWORD 'pulp'",
            "CREATE DATABASE pulp OWNER pulp",
        ] {
            let mut psql = Command::new(crate::paths::postgres_command("psql"));
            psql.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
                .args(["-v", "ON_ERROR_STOP=1", "-c", sql]);
            run_logged("psql", psql, &log, Duration::from_secs(30));
        }
        mark(&mut timings, "postgres");

        // Keys and TLS.
        let etc = scenario.subdir("etc");
        let db_key = etc.join("db.key");
        let python = crate::paths::pulp_command("python");
        let mut fernet = Command::new(&python);
        fernet.arg("-c").arg(format!(
            "from cryptography.fernet import Fernet; open('{}','wb').write(Fernet.generate_key())",
            db_key.display()
        ));
        run_logged("Fernet key", fernet, &log, Duration::from_secs(30));
        let tls = crate::tls::generate(&scenario.subdir("tls"));
        let var = scenario.subdir("var");
        for sub in ["media", "assets", "tmp"] {
            let _ = scenario.subdir(&format!("var/{sub}"));
        }
        let settings = etc.join("settings.py");
        let secret = crate::sidecar::random_hex(32);
        std::fs::write(
            &settings,
            format!(
                r#"SECRET_KEY = "{secret}"
DATABASES = {{"default": {{"ENGINE": "django.db.backends.postgresql", "NAME": "pulp", "USER": "pulp",
             "PASSWORD": "pulp", "HOST": "127.0.0.1", "PORT": {port}, "CONN_MAX_AGE": 0}}}}
DB_ENCRYPTION_KEY = "{db_key}"
DEPLOY_ROOT = "{var}"
MEDIA_ROOT = "{var}/media"
STATIC_ROOT = "{var}/assets"
WORKING_DIRECTORY = "{var}/tmp"
FILE_UPLOAD_TEMP_DIR = "{var}/tmp"
# Blob GETs are answered with a 302 to here: the gateway, which routes /pulp/container/ to
# the content app.
CONTENT_ORIGIN = "{origin}"
ALLOWED_CONTENT_CHECKSUMS = ["sha224", "sha256", "sha384", "sha512"]
ANALYTICS = False
CACHE_ENABLED = False
# As under Katello: registry-gate alone decides who may pull.
TOKEN_AUTH_DISABLED = True
# /index/static (Flatpak index) served by the API app.
FLATPAK_INDEX = True
"#,
                db_key = db_key.display(),
                var = var.display(),
                origin = options.content_origin,
            ),
        )
        .unwrap_or_else(|err| panic!("write {}: {err}", settings.display()));
        mark(&mut timings, "keys and settings");

        let pulp_env = |cmd: &mut Command| {
            cmd.env("PULP_SETTINGS", &settings)
                .env("DJANGO_SETTINGS_MODULE", "pulpcore.app.settings")
                .current_dir(&dir);
        };
        let mut migrate = Command::new(&manager);
        migrate.arg("migrate").arg("--noinput");
        pulp_env(&mut migrate);
        run_logged("pulpcore-manager migrate", migrate, &log, MIGRATE_TIMEOUT);
        mark(&mut timings, "migrate");

        let admin_password = crate::sidecar::random_hex(16);
        let mut reset = Command::new(&manager);
        reset
            .arg("reset-admin-password")
            .arg("--password")
            .arg(&admin_password);
        pulp_env(&mut reset);
        run_logged(
            "pulpcore-manager reset-admin-password",
            reset,
            &log,
            Duration::from_secs(60),
        );
        mark(&mut timings, "admin password");

        let mut api = Command::new(crate::paths::pulp_command("pulpcore-api"));
        api.arg("--bind")
            .arg(format!("127.0.0.1:{}", options.api_port))
            .args([
                "--workers",
                "2",
                "--no-control-socket",
                "--access-logfile",
                "-",
            ])
            // skopeo tries https first and only falls back to http after a 10 s handshake
            // timeout: serve TLS. pulpcore-api has no flag for it; gunicorn reads this.
            .env(
                "GUNICORN_CMD_ARGS",
                format!(
                    "--certfile={} --keyfile={}",
                    tls.server_cert.display(),
                    tls.server_key.display()
                ),
            );
        pulp_env(&mut api);
        let api = Process::spawn_group("pulp-api", api, &dir);
        let mut content = Command::new(crate::paths::pulp_command("pulpcore-content"));
        content
            .arg("--bind")
            .arg(format!("127.0.0.1:{}", options.content_port))
            .args([
                "--workers",
                "1",
                "--no-control-socket",
                "--access-logfile",
                "-",
            ]);
        pulp_env(&mut content);
        let content = Process::spawn_group("pulp-content", content, &dir);
        let mut worker = Command::new(crate::paths::pulp_command("pulpcore-worker"));
        pulp_env(&mut worker);
        let worker = Process::spawn_group("pulp-worker", worker, &dir);

        let mut pulp = Pulp {
            api,
            content,
            worker,
            postgres,
            options,
            tls,
            admin_password,
            skopeo: Skopeo::new(&dir),
            timings,
            scenario,
        };
        pulp.wait_ready();
        pulp.timings.push(("services ready", step.elapsed()));
        pulp.timings.push(("total", started.elapsed()));
        eprintln!(
            "[harness] pulp up in {:.1?} ({}): api https://127.0.0.1:{}, content http://127.0.0.1:{}, postgres {}",
            started.elapsed(),
            pulp.timings
                .iter()
                .map(|(what, took)| format!("{what} {took:.1?}"))
                .collect::<Vec<_>>()
                .join(", "),
            pulp.options.api_port,
            pulp.options.content_port,
            pulp.postgres.port
        );
        pulp
    }

    fn wait_ready(&mut self) {
        let url = self.api_url("/pulp/api/v3/status/");
        let ca = self.tls.ca_cert.clone();
        let content = self.options.content_port;
        let start = Instant::now();
        loop {
            self.api.assert_running();
            self.content.assert_running();
            self.worker.assert_running();
            let probe = || -> Result<(), String> {
                crate::wait::tcp_accepts(std::net::SocketAddr::from((
                    std::net::Ipv4Addr::LOCALHOST,
                    content,
                )))?;
                let resp = Request::get(&url)
                    .cacert(&ca)
                    .timeout(Duration::from_secs(5))
                    .send()?;
                if resp.status != 200 {
                    return Err(resp.summary());
                }
                let json = resp.json();
                let listed = |key: &str| {
                    json.get(key)
                        .and_then(serde_json::Value::as_array)
                        .is_some_and(|a| !a.is_empty())
                };
                if listed("online_workers") && listed("online_content_apps") {
                    Ok(())
                } else {
                    Err(format!("status lists no worker or content app yet: {json}"))
                }
            };
            match probe() {
                Ok(()) => return,
                Err(reason) if start.elapsed() > READY_TIMEOUT => {
                    self.api.print_tail();
                    self.content.print_tail();
                    self.worker.print_tail();
                    panic!("Pulp not ready after {READY_TIMEOUT:?}: {reason}");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// `https://127.0.0.1:<api port><path>`
    pub fn api_url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.options.api_port)
    }

    /// `127.0.0.1:<api port>`: the registry host for pushes.
    pub fn api_host(&self) -> String {
        format!("127.0.0.1:{}", self.options.api_port)
    }

    /// The scenario directory holding Pulp's files and logs.
    pub fn dir(&self) -> &Path {
        self.scenario.path()
    }

    /// `GET <api><path>` as admin.
    pub fn admin_get(&self, path: &str) -> crate::http::Response {
        Request::get(self.api_url(path))
            .cacert(&self.tls.ca_cert)
            .auth(Auth::Basic("admin", &self.admin_password))
            .send_ok()
    }

    /// `<method> <api><path>` as admin with a JSON `body`; the answer, whatever its status.
    pub fn admin_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> crate::http::Response {
        let mut request = Request::new(method, self.api_url(path))
            .cacert(&self.tls.ca_cert)
            .auth(Auth::Basic("admin", &self.admin_password));
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        request.send_ok()
    }

    /// Like [`Pulp::admin_request`], and for an asynchronous change (`202 {"task": href}`)
    /// waits until the task completed; panics unless the change succeeded. The answer's JSON.
    pub fn admin_change(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> serde_json::Value {
        let resp = self.admin_request(method, path, body);
        assert!(
            (200..300).contains(&resp.status),
            "{method} {path}: {}",
            resp.summary()
        );
        if resp.body.is_empty() {
            return serde_json::Value::Null;
        }
        let json = resp.json();
        let Some(task) = json.get("task").and_then(serde_json::Value::as_str) else {
            return json;
        };
        crate::wait::wait_until(&format!("Pulp task {task}"), READY_TIMEOUT, || {
            let state = self.admin_get(task).json();
            match state["state"].as_str() {
                Some("completed") => Ok(state),
                Some("failed" | "canceled") => panic!("{method} {path}: task {state}"),
                other => Err(format!("task state {other:?}")),
            }
        })
    }

    /// Writes the admin password to `path` (for a client that reads it from a file).
    pub fn write_admin_password(&self, path: &Path) {
        std::fs::write(path, format!("{}\n", self.admin_password))
            .unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
    }

    /// Builds a tiny image `<name>:<tag>` and pushes it to Pulp as admin (this creates the
    /// repository and its distribution). Returns the image.
    pub fn push_new_image(&self, name: &str, tag: &str) -> OciImage {
        let layout = self
            .scenario
            .subdir(&format!("images/{}-{tag}", name.replace('/', "_")));
        let image = crate::oci::build_layout(&layout, name, tag);
        self.push(&image);
        image
    }

    /// Pushes `image` to Pulp's API app as admin, verifying its TLS.
    pub fn push(&self, image: &OciImage) {
        let src = format!("oci:{}:{}", image.layout_dir.display(), image.tag);
        let dest = format!("docker://{}/{}:{}", self.api_host(), image.name, image.tag);
        let creds = format!("admin:{}", self.admin_password);
        let cert_dir = self.tls.cert_dir.display().to_string();
        self.skopeo
            .run(&[
                "copy",
                "--dest-cert-dir",
                &cert_dir,
                "--preserve-digests",
                "--dest-creds",
                &creds,
                "--retry-times",
                "2",
                &src,
                &dest,
            ])
            .assert_success();
    }

    /// Prints the tail of every Pulp log.
    pub fn print_logs(&self) {
        self.api.print_tail();
        self.content.print_tail();
        self.worker.print_tail();
    }
}

fn chmod(path: &Path, mode: &str) {
    let status = Command::new("chmod")
        .arg(mode)
        .arg(path)
        .status()
        .unwrap_or_else(|err| panic!("chmod {mode} {}: {err}", path.display()));
    assert!(status.success(), "chmod {mode} {}", path.display());
}
