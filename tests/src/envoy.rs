//! Envoy as a process: rendering a config template, `--mode validate`, starting it, its admin
//! endpoints (`/ready`, `/stats`) and the wait for the filter to install a snapshot generation.
//!
//! Templates carry `{{NAME}}` placeholders (see `envoy/local/envoy.yaml`). Rendering must
//! never leave one behind nor put a single quote into a single-quoted YAML string.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::http::Request;
use crate::process::Process;

/// Suffix of the gauge(s) the filter sets to the generation it has installed.
pub const GENERATION_GAUGE_SUFFIX: &str = "snapshot.generation";

/// Replaces every `{{NAME}}` in `template` with `vars[NAME]`. Fails naming any placeholder
/// without a value, and any value that would break the YAML it lands in.
pub fn render(template: &str, vars: &BTreeMap<&str, String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    let mut missing = Vec::new();
    while let Some(start) = rest.find("{{") {
        let (before, after) = rest.split_at(start);
        out.push_str(before);
        let Some(end) = after.find("}}") else {
            return Err("unterminated `{{` in template".to_owned());
        };
        let name = after.get(2..end).unwrap_or_default();
        match vars.get(name) {
            Some(value) => {
                if value.contains('\'') || value.contains('\n') {
                    return Err(format!(
                        "value of {name} contains a quote or newline, which the template's YAML cannot hold: {value:?}"
                    ));
                }
                out.push_str(value);
            }
            None => missing.push(name.to_owned()),
        }
        rest = after.get(end + 2..).unwrap_or_default();
    }
    out.push_str(rest);
    if missing.is_empty() {
        Ok(out)
    } else {
        missing.sort();
        missing.dedup();
        Err(format!("no value for placeholders: {}", missing.join(", ")))
    }
}

/// A line of Envoy's log about a snapshot: when (unix ms), which thread, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub at_ms: u64,
    pub thread: u64,
    pub event: LogEvent,
}

/// What a [`Logged`] line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEvent {
    /// A filter VM swapped in generation `generation` after `took_ms`.
    Installed { generation: u64, took_ms: u64 },
    /// The fetcher wrote generation `generation` to shared data.
    Published { generation: u64 },
}

/// Parses Envoy's default log format, `[%Y-%m-%d %T.%e][%t][%l][%n] [%g:%#] %v` (local time),
/// for the filter's install and the fetcher's publish lines; `None` for any other line.
pub fn parse_log_line(line: &str) -> Option<Logged> {
    let rest = line.strip_prefix('[')?;
    let (stamp, rest) = rest.split_once("][")?;
    let (thread, rest) = rest.split_once(']')?;
    let naive = chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S%.3f").ok()?;
    let at = naive.and_local_timezone(chrono::Local).single()?;
    let at_ms = u64::try_from(at.timestamp_millis()).ok()?;
    let thread = thread.parse().ok()?;
    let event = if let Some((_, tail)) = rest.split_once("installed snapshot generation ") {
        let generation = generation_number(tail.split_whitespace().next()?)?;
        let took_ms = tail
            .rsplit_once(" in ")?
            .1
            .strip_suffix(" ms")?
            .trim()
            .parse()
            .ok()?;
        LogEvent::Installed {
            generation,
            took_ms,
        }
    } else if let Some((_, tail)) = rest.split_once("published snapshot generation ") {
        LogEvent::Published {
            generation: generation_number(tail.split_whitespace().next()?)?,
        }
    } else {
        return None;
    };
    Some(Logged {
        at_ms,
        thread,
        event,
    })
}

/// The number of a logged generation, `<epoch>.<number>`.
fn generation_number(word: &str) -> Option<u64> {
    word.rsplit_once('.')?.1.parse().ok()
}

/// The cluster of the snapshot long-poll in envoy/ingress/envoy.yaml (the token route has
/// its own): its stats show the fetch stream alone.
pub const SNAPSHOT_CLUSTER: &str = "registry_gate_snapshot";

/// The HTTP filter's configuration for a listener on `listen_port`.
pub fn filter_config(listen_port: u16, access_log_state: bool) -> String {
    filter_json(listen_port, access_log_state).to_string()
}

/// The HTTP filter's configuration carrying a `fetcher` object (to `SNAPSHOT_CLUSTER`): the
/// workers elect the fetcher among themselves (envoy/ingress/envoy.yaml).
pub fn elected_filter_config(
    listen_port: u16,
    access_log_state: bool,
    authorization: &str,
    publisher_keys: &[String],
) -> String {
    let mut config = filter_json(listen_port, access_log_state);
    if let Some(object) = config.as_object_mut() {
        object.insert(
            "fetcher".to_owned(),
            fetcher_json(SNAPSHOT_CLUSTER, authorization, publisher_keys),
        );
    }
    config.to_string()
}

/// The native module's configuration (envoy/local/envoy-native.yaml): the HTTP filter's, with
/// the `fetcher` object the module fetches with for every worker of its Envoy.
pub fn native_filter_config(
    listen_port: u16,
    access_log_state: bool,
    authorization: &str,
    publisher_keys: &[String],
) -> String {
    with_fetcher(
        filter_json(listen_port, access_log_state),
        authorization,
        publisher_keys,
    )
}

/// `filter` (a filter configuration) with the native module's `fetcher` object.
fn with_fetcher(
    mut filter: serde_json::Value,
    authorization: &str,
    publisher_keys: &[String],
) -> String {
    if let Some(object) = filter.as_object_mut() {
        object.insert(
            "fetcher".to_owned(),
            fetcher_json("registry_gate_sidecar", authorization, publisher_keys),
        );
    }
    filter.to_string()
}

fn filter_json(listen_port: u16, access_log_state: bool) -> serde_json::Value {
    json!({
        "issuer": crate::sidecar::ISSUER,
        "service": crate::sidecar::SERVICE,
        "realm": format!("https://127.0.0.1:{listen_port}/v2/token"),
        "algorithms": ["EdDSA", "ES256", "RS256"],
        "max_staleness_secs": 3600,
        "retry_after_secs": 2,
        "access_log_state": access_log_state,
        // envoy/local/envoy.yaml's registry route removes `Authorization`.
        "authorization_removed_by_route": true,
        // The listener verifies client certificates against CLIENT_CA: their CN names a
        // content host. A front proxy's subject header is not trusted here, only removed.
        "client_certificate_from_connection": true,
        "client_certificate_header": "ssl-client-s-dn"
    })
}

/// The sidecar's `--ext-authz-config` for a listener on `listen_port`: the filter's
/// configuration, with `Authorization` removed by the check (envoy/ext-authz/envoy.yaml's
/// routes do not), the `Retry-After` of that template's local reply and the publisher key
/// whose signatures the check accepts.
pub fn ext_authz_config(listen_port: u16, publisher_key: &str) -> String {
    let mut config = filter_json(listen_port, false);
    if let Some(object) = config.as_object_mut() {
        object.insert("authorization_removed_by_route".to_owned(), json!(false));
        object.insert("retry_after_secs".to_owned(), json!(5));
        object.insert("publisher_keys".to_owned(), json!([publisher_key]));
        // As the template intends: content hosts by the connection's certificate, whose
        // subject Envoy passes to the check.
        object.insert("client_certificate_from_connection".to_owned(), json!(true));
    }
    config.to_string()
}

/// The snapshot fetcher's configuration; `authorization` is the sidecar's read secret (the
/// fetcher sends `Authorization: Bearer <it>`), `publisher_keys` the keys whose signatures it
/// accepts (none: a filter from before signed indexes, which knows no such field).
pub fn fetcher_config(authorization: &str, publisher_keys: &[String]) -> String {
    fetcher_json("registry_gate_sidecar", authorization, publisher_keys).to_string()
}

fn fetcher_json(
    cluster: &str,
    authorization: &str,
    publisher_keys: &[String],
) -> serde_json::Value {
    let mut config = json!({
        "cluster": cluster,
        "authority": "registry-gate-sidecar",
        "path": "/v1/snapshot",
        "wait_secs": 20,
        "timeout_ms": 25000,
        "retry_ms": 250,
        "authorization": authorization
    });
    if !publisher_keys.is_empty() {
        config["publisher_keys"] = json!(publisher_keys);
    }
    config
}

/// The address every scenario server listens on.
const LOOPBACK: &str = "127.0.0.1";

/// Ports and files an Envoy instance is rendered with.
#[derive(Debug, Clone)]
pub struct EnvoyParams {
    pub listen_port: u16,
    pub admin_port: u16,
    pub sidecar_port: u16,
    pub registry_port: u16,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// CA of the client certificates the listener accepts (content hosts).
    pub client_ca: PathBuf,
    pub wasm: PathBuf,
    /// The filter writes identity and decision filter state for the access log (the local
    /// stack's log names both; the benchmark measures the default, without).
    pub access_log_state: bool,
    /// The sidecar's snapshot read secret, rendered into the fetcher's `authorization`.
    pub snapshot_read_secret: String,
    /// The fetcher's `publisher_keys` (empty for a filter from before signed indexes).
    pub publisher_keys: Vec<String>,
}

impl EnvoyParams {
    pub fn vars(&self) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            // Every server of a scenario listens on loopback (envoy/ingress/envoy.yaml names
            // its addresses; the other templates write 127.0.0.1 themselves).
            ("LISTEN_ADDRESS", LOOPBACK.to_owned()),
            ("SIDECAR_HOST", LOOPBACK.to_owned()),
            ("REGISTRY_HOST", LOOPBACK.to_owned()),
            ("LISTEN_PORT", self.listen_port.to_string()),
            ("ADMIN_PORT", self.admin_port.to_string()),
            ("SIDECAR_PORT", self.sidecar_port.to_string()),
            ("REGISTRY_PORT", self.registry_port.to_string()),
            ("TLS_CERT", self.tls_cert.display().to_string()),
            ("TLS_KEY", self.tls_key.display().to_string()),
            ("CLIENT_CA", self.client_ca.display().to_string()),
            ("WASM_PATH", self.wasm.display().to_string()),
            (
                "FILTER_CONFIG",
                filter_config(self.listen_port, self.access_log_state),
            ),
            (
                "FETCHER_CONFIG",
                fetcher_config(&self.snapshot_read_secret, &self.publisher_keys),
            ),
            (
                "NATIVE_FILTER_CONFIG",
                native_filter_config(
                    self.listen_port,
                    self.access_log_state,
                    &self.snapshot_read_secret,
                    &self.publisher_keys,
                ),
            ),
            (
                "ELECTED_FILTER_CONFIG",
                elected_filter_config(
                    self.listen_port,
                    self.access_log_state,
                    &self.snapshot_read_secret,
                    &self.publisher_keys,
                ),
            ),
        ])
    }
}

/// Renders `template` with `vars` into `out`.
pub fn render_file(template: &Path, vars: &BTreeMap<&str, String>, out: &Path) {
    let text = std::fs::read_to_string(template)
        .unwrap_or_else(|err| panic!("read {}: {err}", template.display()));
    let rendered =
        render(&text, vars).unwrap_or_else(|err| panic!("render {}: {err}", template.display()));
    std::fs::write(out, rendered).unwrap_or_else(|err| panic!("write {}: {err}", out.display()));
}

/// Applies `rewrites` to the file at `path`; a `from` that does not occur is a test bug.
fn rewrite_file(path: &Path, rewrites: &[(&str, &str)]) {
    if rewrites.is_empty() {
        return;
    }
    let mut text = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    for (from, to) in rewrites {
        assert!(
            text.contains(from),
            "{}: no {from:?} to rewrite",
            path.display()
        );
        text = text.replace(from, to);
    }
    std::fs::write(path, text).unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
}

/// The dynamic-module ABI the native modules are built for (Envoy 1.40's).
const DYNAMIC_MODULE_ABI: &str = "v0.2.0";

/// The variable Envoy looks in for a dynamic module a config names
/// (`lib<name>.so` in that directory).
const DYNAMIC_MODULES_SEARCH_PATH: &str = "ENVOY_DYNAMIC_MODULES_SEARCH_PATH";

/// Where `make build` puts the dynamic modules (the native build, the bench's native floor).
fn dynamic_modules_dir() -> PathBuf {
    crate::paths::target_dir().join("native")
}

/// `envoy --mode validate -c <config>`: `Ok(output)` or `Err(output)`.
pub fn validate(config: &Path) -> Result<String, String> {
    let envoy = crate::paths::envoy();
    let output = Command::new(&envoy)
        .env(DYNAMIC_MODULES_SEARCH_PATH, dynamic_modules_dir())
        .arg("--mode")
        .arg("validate")
        .arg("-c")
        .arg(config)
        .arg("--log-level")
        .arg("warn")
        .output()
        .unwrap_or_else(|err| panic!("run {}: {err}", envoy.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

#[derive(Debug)]
pub struct Envoy {
    pub process: Process,
    pub params: EnvoyParams,
    pub config: PathBuf,
    /// `--concurrency`: its worker threads.
    pub concurrency: u32,
}

/// How an Envoy process is launched. [`Launch::default`] is what the scenarios use.
#[derive(Debug, Clone)]
pub struct Launch {
    /// Process name: its log is `<dir>/<name>.log`, its rendered config `<dir>/<name>.yaml`.
    pub name: String,
    /// `--concurrency` (worker threads).
    pub concurrency: u32,
    /// `--log-level`.
    pub log_level: String,
    /// Run under `taskset -c <cpus>` (e.g. `"0"`) so it stays on those CPUs.
    pub cpus: Option<String>,
    /// Placeholders beyond [`EnvoyParams::vars`] (e.g. `NOOP_WASM_PATH` for the bench).
    pub extra_vars: Vec<(&'static str, String)>,
    /// Text replaced in the rendered config, `(from, to)`, each `from` required to occur: a
    /// scenario that runs a shipped template as another deployment would configure it.
    pub rewrites: Vec<(&'static str, &'static str)>,
}

impl Default for Launch {
    fn default() -> Launch {
        Launch {
            name: "envoy".to_owned(),
            concurrency: 2,
            log_level: "info".to_owned(),
            cpus: None,
            extra_vars: Vec::new(),
            rewrites: Vec::new(),
        }
    }
}

impl Envoy {
    /// Renders `template` into `dir/envoy.yaml`, starts Envoy and waits for admin `/ready`.
    pub fn start(dir: &Path, template: &Path, params: EnvoyParams) -> Envoy {
        Envoy::start_with(dir, template, params, &Launch::default())
    }

    /// Renders `template` into `dir/<launch.name>.yaml`, starts Envoy as `launch` says and
    /// waits for admin `/ready`.
    pub fn start_with(dir: &Path, template: &Path, params: EnvoyParams, launch: &Launch) -> Envoy {
        let config = dir.join(format!("{}.yaml", launch.name));
        let mut vars = params.vars();
        vars.extend(launch.extra_vars.iter().cloned());
        // A scenario's own filter configuration is the native module's too (with its fetcher).
        if let Some((_, filter)) = launch
            .extra_vars
            .iter()
            .find(|(name, _)| *name == "FILTER_CONFIG")
        {
            let filter = serde_json::from_str(filter)
                .unwrap_or_else(|err| panic!("FILTER_CONFIG is not JSON: {err}"));
            vars.insert(
                "NATIVE_FILTER_CONFIG",
                with_fetcher(filter, &params.snapshot_read_secret, &params.publisher_keys),
            );
        }
        render_file(template, &vars, &config);
        rewrite_file(&config, &launch.rewrites);
        let envoy = crate::paths::envoy();
        let mut cmd = match &launch.cpus {
            // taskset execs Envoy: the child's pid is Envoy's.
            Some(cpus) => {
                let mut cmd = Command::new("taskset");
                cmd.arg("-c").arg(cpus).arg(&envoy);
                cmd
            }
            None => Command::new(&envoy),
        };
        cmd.arg("-c")
            .arg(&config)
            .arg("--concurrency")
            .arg(launch.concurrency.to_string())
            // Unique per live Envoy: the admin port is bound by this very process.
            .arg("--base-id")
            .arg(params.admin_port.to_string())
            .arg("--log-level")
            .arg(&launch.log_level)
            // Access-log lines are asserted on: flush them promptly (Envoy's default is 10 s).
            .arg("--file-flush-interval-msec")
            .arg("100")
            .env(DYNAMIC_MODULES_SEARCH_PATH, dynamic_modules_dir());
        let mut process = Process::spawn(&launch.name, cmd, dir);
        let admin = params.admin_port;
        process.wait_ready("admin /ready = 200", Duration::from_secs(60), || {
            crate::wait::http_ok(admin, "/ready")
        });
        // A dynamic module loads only if Envoy accepts the ABI version it was built for
        // (Envoy says so at info level).
        let logs_info = matches!(launch.log_level.as_str(), "trace" | "debug" | "info");
        if logs_info
            && std::fs::read_to_string(&config)
                .is_ok_and(|text| text.contains("envoy.filters.http.dynamic_modules"))
        {
            let log = process.log();
            assert!(
                log.contains(&format!(
                    "Dynamic module ABI version {DYNAMIC_MODULE_ABI} matched"
                )),
                "Envoy did not accept a module built for ABI {DYNAMIC_MODULE_ABI}:\n{log}"
            );
        }
        Envoy {
            process,
            params,
            config,
            concurrency: launch.concurrency,
        }
    }

    /// `GET <admin><path>`, the body; panics if Envoy is gone.
    pub fn admin(&mut self, path: &str) -> Result<String, String> {
        self.process.assert_running();
        let resp = Request::get(format!("http://127.0.0.1:{}{path}", self.params.admin_port))
            .timeout(Duration::from_secs(5))
            .send()?;
        if resp.status == 200 {
            Ok(resp.text())
        } else {
            Err(resp.summary())
        }
    }

    /// Integer stats whose name matches the admin `filter` regex.
    pub fn stats(&mut self, filter: &str) -> Result<BTreeMap<String, u64>, String> {
        let text = self.admin(&format!("/stats?filter={}", query_escape(filter)))?;
        Ok(parse_stats(&text))
    }

    /// One counter or gauge by exact name; panics if Envoy does not list it (a misspelt name
    /// must not read as a quiet zero).
    pub fn stat(&mut self, name: &str) -> u64 {
        let escaped = name.replace('.', "\\.");
        let stats = self
            .stats(&format!("^{escaped}$"))
            .unwrap_or_else(|err| panic!("read stat {name}: {err}"));
        stats
            .get(name)
            .copied()
            .unwrap_or_else(|| panic!("Envoy lists no stat named {name}: {stats:?}"))
    }

    /// The counts that move only when the filter failed: Envoy's and the filter's counts of
    /// wasm VM (re)starts, or the native module's starts and caught panics.
    pub fn filter_restarts(&mut self) -> Vec<u64> {
        use crate::paths::{self, Build};
        let names = match paths::build() {
            Build::Wasm => vec![
                "wasm.registry_gate.vm_reload".to_owned(),
                "wasm.registry_gate.vm_reload_success".to_owned(),
                Build::Wasm.stat("registry_gate.vm_starts"),
            ],
            Build::Native => vec![
                Build::Native.stat("registry_gate.vm_starts"),
                Build::Native.stat("registry_gate.panics"),
            ],
        };
        names.iter().map(|name| self.stat(name)).collect()
    }

    /// Requests Envoy has sent to the registry cluster so far.
    pub fn upstream_registry_requests(&mut self) -> u64 {
        self.stat("cluster.registry.upstream_rq_total")
    }

    /// The worker VMs' install lines and the fetcher's publish line of `generation` so far,
    /// from the log. Lines of Envoy's main thread (whose id is the pid: its VM holds the
    /// filter's root context too) are not workers'.
    pub fn snapshot_lines(&self, generation: u64) -> (Vec<Logged>, Option<Logged>) {
        // The wasm filter's main-thread VM installs too, serving nothing; the native module
        // installs only there, once for every worker.
        let main_thread = match crate::paths::build() {
            crate::paths::Build::Wasm => self.process.pid().map(u64::from),
            crate::paths::Build::Native => None,
        };
        let mut installs = Vec::new();
        let mut published = None;
        for logged in self.process.log().lines().filter_map(parse_log_line) {
            match logged.event {
                LogEvent::Installed { generation: g, .. }
                    if g == generation && Some(logged.thread) != main_thread =>
                {
                    installs.push(logged);
                }
                LogEvent::Published { generation: g } if g == generation => {
                    published = Some(logged);
                }
                _ => {}
            }
        }
        (installs, published)
    }

    /// Waits until every gauge ending in `snapshot.generation` is ≥ `generation`.
    pub fn wait_for_generation(&mut self, generation: u64, timeout: Duration) {
        let mut last = BTreeMap::new();
        let start = std::time::Instant::now();
        loop {
            self.process.assert_running();
            let stats = self.stats("registry_gate").unwrap_or_default();
            let gauges: BTreeMap<String, u64> = stats
                .iter()
                .filter(|(name, _)| name.ends_with(GENERATION_GAUGE_SUFFIX))
                .map(|(n, v)| (n.clone(), *v))
                .collect();
            if !gauges.is_empty() && gauges.values().all(|v| *v >= generation) {
                return;
            }
            if start.elapsed() >= timeout {
                self.process.print_tail();
                panic!(
                    "Envoy did not install snapshot generation {generation} within {timeout:?}: \
                     no gauge ending in `{GENERATION_GAUGE_SUFFIX}` reached it.\n\
                     gauges: {gauges:?}\nall registry_gate stats: {stats:?}\nprevious poll: {last:?}"
                );
            }
            last = gauges;
            std::thread::sleep(crate::wait::POLL_INTERVAL);
        }
    }

    /// Waits until every worker decides by `generation` or a newer one. The generation gauge
    /// cannot say so (the wasm build's workers share one gauge; the last to report sets it):
    /// the log can. Each wasm worker logs its own install, on its own thread; the native module
    /// installs once, on the main thread, for every worker.
    pub fn wait_for_every_worker(&mut self, generation: u64, timeout: Duration) {
        let main_thread = self.process.pid().map(u64::from);
        let wanted = match crate::paths::build() {
            crate::paths::Build::Wasm => self.concurrency as usize,
            crate::paths::Build::Native => 1,
        };
        let waited = crate::wait::poll(timeout, || {
            self.process.assert_running();
            let threads: std::collections::BTreeSet<u64> = self
                .process
                .log()
                .lines()
                .filter_map(parse_log_line)
                .filter(|logged| match logged.event {
                    LogEvent::Installed { generation: g, .. } => g >= generation,
                    LogEvent::Published { .. } => false,
                })
                .filter(|logged| {
                    crate::paths::build() == crate::paths::Build::Native
                        || Some(logged.thread) != main_thread
                })
                .map(|logged| logged.thread)
                .collect();
            if threads.len() >= wanted {
                Ok(())
            } else {
                Err(format!(
                    "generation {generation} or newer installed on threads {threads:?}, {wanted} wanted"
                ))
            }
        });
        if let Err(err) = waited {
            self.process.print_tail();
            panic!("not every worker installed generation {generation}: {err}");
        }
    }

    /// Access-log lines (`[access] ...`) Envoy has written so far.
    pub fn access_log(&self) -> Vec<String> {
        self.process
            .log()
            .lines()
            .filter(|l| l.starts_with("[access]"))
            .map(str::to_owned)
            .collect()
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986) for a query value.
pub fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `name: value` lines with an integer value.
pub fn parse_stats(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(": ")?;
            Some((name.trim().to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local_ms(stamp: &str) -> u64 {
        let naive = chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S%.3f").unwrap();
        u64::try_from(
            naive
                .and_local_timezone(chrono::Local)
                .single()
                .unwrap()
                .timestamp_millis(),
        )
        .unwrap()
    }

    #[test]
    fn install_and_publish_lines_are_parsed_and_others_ignored() {
        let install = "[2026-11-30 17:01:02.345][4242][info][wasm] [source/extensions/common/wasm/context.cc:1192] wasm log registry_gate registry_gate_filter registry_gate: installed snapshot generation 54bfcfe4.17 (31457280 bytes) in 412 ms";
        assert_eq!(
            parse_log_line(install),
            Some(Logged {
                at_ms: local_ms("2026-11-30 17:01:02.345"),
                thread: 4242,
                event: LogEvent::Installed {
                    generation: 17,
                    took_ms: 412
                }
            })
        );
        let published = "[2026-11-30 17:01:01.900][77][info][wasm] [source/extensions/common/wasm/context.cc:1192] wasm log registry_gate_fetcher: published snapshot generation 54bfcfe4.17 to workers";
        assert_eq!(
            parse_log_line(published).map(|l| l.event),
            Some(LogEvent::Published { generation: 17 })
        );
        for other in [
            "[2026-11-30 17:01:01.900][77][info][main] [source/server/server.cc:1] starting main dispatch loop",
            "[access] 2026-11-30T17:01:01.900Z HTTP/1.1 GET /v2/ 200",
            "installed snapshot generation e.3 (1 bytes) in 2 ms",
            "[2026-11-30 17:01:01.900][77][info][wasm] installed snapshot generation 3 (1 bytes) in 2 ms",
            "[2026-11-30 17:01:01.900][x][info][wasm] installed snapshot generation e.3 (1 bytes) in 2 ms",
        ] {
            assert_eq!(parse_log_line(other), None, "{other}");
        }
    }
}
