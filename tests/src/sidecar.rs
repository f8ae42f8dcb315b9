//! registry-gate-sidecar as a process: its key, htpasswd, sync-secret and read-secret files,
//! `serve`, and the native publish API (`PUT /v1/snapshot`).
//!
//! The files are generated per scenario: the signing key by the sidecar's own `keygen` (its
//! default algorithm, ES256), the publisher key (Ed25519) by this build's `keygen`, the
//! htpasswd with bcrypt (`$2y$`, as `htpasswd -B` writes it), the sync, admin and snapshot
//! read secrets (the read secret is the fetcher's `authorization`) from the OS RNG. The signing key's path is exposed so tests can mint tokens with the real key
//! (`tokens::SidecarKey`: expired, wrong audience) — nothing else reads it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::http::{Auth, Request, Response};
use crate::process::Process;

/// Issuer and service (= token audience) used throughout the local stack.
pub const ISSUER: &str = "registry-gate";
pub const SERVICE: &str = "registry-gate";

/// Files the sidecar is started with.
#[derive(Debug, Clone)]
pub struct SidecarFiles {
    pub signing_key: PathBuf,
    pub htpasswd: PathBuf,
    pub sync_secret_file: PathBuf,
    pub sync_secret: String,
    /// Bearer secret of `GET /v1/snapshot`: the Envoy fetcher's `authorization`.
    pub read_secret_file: PathBuf,
    pub read_secret: String,
    /// The admin secret: the one credential that may change `keys` and `min_token_iat`.
    pub admin_secret_file: PathBuf,
    pub admin_secret: String,
    /// The Ed25519 key that signs every published index (`--publisher-key`).
    pub publisher_key: PathBuf,
    /// Its public half as `keygen` printed it: what the filters' `publisher_keys` list.
    pub publisher_public: String,
}

/// What `PUT /v1/snapshot` answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub epoch: serde_json::Value,
    pub generation: u64,
    pub changed: bool,
}

/// Settings beyond the ones every sidecar of a scenario shares.
#[derive(Debug, Clone, Default)]
pub struct SidecarExtra {
    /// More `serve` flags. With `--katello-url` among them, no `--htpasswd` is passed.
    pub args: Vec<String>,
    /// The CA of the sidecar's HTTPS certificate, when `args` turn HTTPS on.
    pub https: Option<PathBuf>,
    /// The binary to run instead of the one built here (`rolling_upgrade.rs` runs a previous
    /// release's).
    pub binary: Option<PathBuf>,
    /// `keygen --algorithm` of the signing key (`ES256`, `EdDSA`); none: the binary's default.
    pub key_algorithm: Option<&'static str>,
}

impl SidecarExtra {
    /// The sidecar binary that runs: [`SidecarExtra::binary`], else the one built here.
    pub fn binary(&self) -> PathBuf {
        self.binary.clone().unwrap_or_else(crate::paths::sidecar)
    }
}

#[derive(Debug)]
pub struct Sidecar {
    pub process: Process,
    pub port: u16,
    pub files: SidecarFiles,
    /// Runs a previous release's binary (no publisher key, no admin secret).
    pub previous_release: bool,
}

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::getrandom(&mut bytes).unwrap_or_else(|err| panic!("OS RNG: {err}"));
    hex::encode(bytes)
}

/// Writes an htpasswd file with one bcrypt (`$2y$`) line per user.
pub fn write_htpasswd(path: &Path, users: &BTreeMap<String, String>, cost: u32) {
    let mut out = String::new();
    for (user, password) in users {
        let hash = bcrypt::hash_with_result(password, cost)
            .unwrap_or_else(|err| panic!("bcrypt for {user}: {err}"))
            .format_for_version(bcrypt::Version::TwoY);
        out.push_str(&format!("{user}:{hash}\n"));
    }
    std::fs::write(path, out).unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
}

/// Runs `registry-gate-sidecar keygen [--algorithm <algorithm>] --out <path>`, checks the key
/// file appeared and returns what it printed.
pub fn keygen(bin: &Path, out: &Path, algorithm: Option<&str>) -> String {
    let mut command = Command::new(bin);
    command.arg("keygen");
    if let Some(algorithm) = algorithm {
        command.args(["--algorithm", algorithm]);
    }
    let output = command
        .arg("--out")
        .arg(out)
        .output()
        .unwrap_or_else(|err| panic!("run {} keygen: {err}", bin.display()));
    assert!(
        output.status.success(),
        "{} keygen --out {} failed ({}):\nstdout: {}\nstderr: {}",
        bin.display(),
        out.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        out.is_file(),
        "{} keygen --out {} exited 0 but wrote no file",
        bin.display(),
        out.display()
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Makes a publisher key at `out` with this build's `keygen` and returns its public half,
/// from the `publisher key: <key>` line keygen prints.
pub fn publisher_keygen(out: &Path) -> String {
    let printed = keygen(&crate::paths::sidecar(), out, Some("EdDSA"));
    printed
        .lines()
        .find_map(|line| line.strip_prefix("publisher key: "))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("keygen printed no publisher key: {printed}"))
}

impl Sidecar {
    /// Prepares the files (key, htpasswd for `users`, sync and read secrets) under `dir`. The
    /// key is made by the `keygen` of the binary `extra` runs, as its deployment would have
    /// made it (a previous release's keygen writes the key kind that release reads).
    pub fn prepare(
        dir: &Path,
        users: &BTreeMap<String, String>,
        bcrypt_cost: u32,
        extra: &SidecarExtra,
    ) -> SidecarFiles {
        let bin = extra.binary();
        let files = SidecarFiles {
            signing_key: dir.join("sidecar-signing-key.pem"),
            htpasswd: dir.join("htpasswd"),
            sync_secret_file: dir.join("sync-secret"),
            sync_secret: random_hex(32),
            read_secret_file: dir.join("snapshot-read-secret"),
            read_secret: random_hex(32),
            admin_secret_file: dir.join("admin-secret"),
            admin_secret: random_hex(32),
            publisher_key: dir.join("sidecar-publisher-key.pem"),
            publisher_public: String::new(),
        };
        let files = SidecarFiles {
            publisher_public: publisher_keygen(&files.publisher_key),
            ..files
        };
        keygen(&bin, &files.signing_key, extra.key_algorithm);
        write_htpasswd(&files.htpasswd, users, bcrypt_cost);
        std::fs::write(&files.sync_secret_file, &files.sync_secret)
            .unwrap_or_else(|err| panic!("write {}: {err}", files.sync_secret_file.display()));
        std::fs::write(&files.read_secret_file, &files.read_secret)
            .unwrap_or_else(|err| panic!("write {}: {err}", files.read_secret_file.display()));
        std::fs::write(&files.admin_secret_file, &files.admin_secret)
            .unwrap_or_else(|err| panic!("write {}: {err}", files.admin_secret_file.display()));
        files
    }

    /// Starts `serve` on `port` and waits for `GET /healthz` = 200.
    pub fn start(dir: &Path, port: u16, redis_url: &str, files: SidecarFiles) -> Sidecar {
        Sidecar::start_with(
            dir,
            "sidecar",
            port,
            redis_url,
            files,
            &SidecarExtra::default(),
        )
    }

    /// [`Sidecar::start`] as process `name`, with `extra` settings (over HTTPS when
    /// `extra.https` is set, ready once `GET /healthz` = 200 with that CA).
    pub fn start_with(
        dir: &Path,
        name: &str,
        port: u16,
        redis_url: &str,
        files: SidecarFiles,
        extra: &SidecarExtra,
    ) -> Sidecar {
        let mut cmd = Command::new(extra.binary());
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"));
        // Sentinel discovery (in `extra.args`) replaces the URL.
        if !extra.args.iter().any(|a| a == "--redis-sentinels") {
            cmd.arg("--redis-url").arg(redis_url);
        }
        cmd.arg("--signing-key")
            .arg(&files.signing_key)
            .arg("--sync-secret-file")
            .arg(&files.sync_secret_file)
            .arg("--read-secret-file")
            .arg(&files.read_secret_file)
            .arg("--service")
            .arg(SERVICE)
            .arg("--issuer")
            .arg(ISSUER)
            .arg("--token-ttl-secs")
            .arg("300");
        if !extra.args.iter().any(|a| a == "--katello-url") {
            cmd.arg("--htpasswd").arg(&files.htpasswd);
        }
        if extra.binary.is_none() {
            // A previous release (before signed indexes) knows neither flag.
            cmd.arg("--publisher-key")
                .arg(&files.publisher_key)
                .arg("--admin-secret-file")
                .arg(&files.admin_secret_file);
        }
        cmd.args(&extra.args);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let mut process = Process::spawn(name, cmd, dir);
        let scheme = if extra.https.is_some() {
            "https"
        } else {
            "http"
        };
        process.wait_ready("GET /healthz = 200", Duration::from_secs(20), || {
            crate::wait::tcp_accepts(std::net::SocketAddr::from((
                std::net::Ipv4Addr::LOCALHOST,
                port,
            )))?;
            let mut request = Request::get(format!("{scheme}://127.0.0.1:{port}/healthz"))
                .timeout(Duration::from_secs(2));
            if let Some(ca) = &extra.https {
                request = request.cacert(ca);
            }
            match request.send()? {
                resp if resp.status == 200 => Ok(()),
                resp => Err(resp.summary()),
            }
        });
        Sidecar {
            process,
            port,
            files,
            previous_release: extra.binary.is_some(),
        }
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `PUT /v1/snapshot` as the operator (the admin secret, which may also change keys and
    /// `min_token_iat`; a previous release has none and takes the sync secret); panics (with
    /// the sidecar's log) unless 2xx.
    pub fn publish(&mut self, content: &serde_json::Value) -> Published {
        let body = serde_json::to_vec(content).unwrap_or_else(|err| panic!("snapshot JSON: {err}"));
        let secret = if self.previous_release {
            &self.files.sync_secret
        } else {
            &self.files.admin_secret
        };
        let resp = Request::new("PUT", format!("{}/v1/snapshot", self.url()))
            .auth(Auth::Bearer(secret))
            .header("Content-Type", "application/json")
            .body(body)
            .send();
        let resp = match resp {
            Ok(resp) => resp,
            Err(err) => {
                self.process.assert_running();
                panic!("PUT /v1/snapshot: {err}");
            }
        };
        if !(200..300).contains(&resp.status) {
            self.process.print_tail();
            panic!("PUT /v1/snapshot refused: {}", resp.summary());
        }
        parse_published(&resp)
    }

    /// The value of one series on `/metrics`, named with its labels as exposed
    /// (`registry_gate_sidecar_logins_total{outcome="issued"}`); `Err` if not there.
    pub fn metric(&self, series: &str) -> Result<u64, String> {
        let resp = Request::get(format!("{}/metrics", self.url()))
            .timeout(Duration::from_secs(5))
            .send()?;
        resp.text()
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .map(|value| value as u64)
            .ok_or_else(|| format!("no {series:?} in /metrics: {}", resp.summary()))
    }

    /// Waits until the ext_authz checks decide from `generation` or a newer one (the
    /// `ext_authz_generation` metric).
    pub fn wait_for_ext_authz_generation(&mut self, generation: u64, timeout: Duration) {
        self.process.assert_running();
        crate::wait::wait_until(
            &format!("the ext_authz checks at generation {generation}"),
            timeout,
            || {
                let installed = self.metric("registry_gate_sidecar_ext_authz_generation")?;
                if installed >= generation {
                    Ok(())
                } else {
                    Err(format!("at generation {installed}"))
                }
            },
        );
    }

    /// A token for `user` to pull `repository`, straight from the sidecar's `/v2/token`
    /// (Basic credentials); `Err` unless it answers 200 with a token.
    pub fn token(&self, user: &str, password: &str, repository: &str) -> Result<String, String> {
        let url = format!(
            "{}/v2/token?service={SERVICE}&scope=repository:{repository}:pull",
            self.url()
        );
        let resp = Request::get(url)
            .auth(Auth::Basic(user, password))
            .timeout(Duration::from_secs(10))
            .send()?;
        if resp.status != 200 {
            return Err(format!("token for {user}: {}", resp.summary()));
        }
        let json: serde_json::Value = serde_json::from_slice(&resp.body)
            .map_err(|err| format!("token response is not JSON ({err}): {}", resp.summary()))?;
        json.get("token")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("token response has no token: {}", resp.summary()))
    }

    /// `GET /v1/snapshot?schema=2.0` (no long-poll) with the read secret: the signed index,
    /// opened (not its signature), or why not.
    pub fn get_index(&self) -> Result<registry_gate_index::Index, String> {
        let resp = Request::get(format!("{}/v1/snapshot?schema=2.0", self.url()))
            .auth(Auth::Bearer(&self.files.read_secret))
            .timeout(Duration::from_secs(5))
            .send()?;
        if resp.status != 200 {
            return Err(resp.summary());
        }
        registry_gate_index::Index::open(resp.body).map_err(|err| err.to_string())
    }

    /// `GET /v1/snapshot` (no long-poll, no schema announced: the 1.x JSON envelope) with
    /// the read secret, the raw response.
    pub fn get_snapshot(&self) -> Result<Response, String> {
        Request::get(format!("{}/v1/snapshot", self.url()))
            .auth(Auth::Bearer(&self.files.read_secret))
            .timeout(Duration::from_secs(5))
            .send()
    }
}

fn parse_published(resp: &Response) -> Published {
    let json = resp.json();
    let generation = json
        .get("generation")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| {
            panic!(
                "publish answer has no numeric generation: {}",
                resp.summary()
            )
        });
    let changed = json
        .get("changed")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or_else(|| panic!("publish answer has no boolean changed: {}", resp.summary()));
    Published {
        epoch: json
            .get("epoch")
            .cloned()
            .unwrap_or(serde_json::Value::Null),
        generation,
        changed,
    }
}
