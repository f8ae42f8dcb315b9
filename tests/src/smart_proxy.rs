//! registry-gate's smart-proxy plugin (`smart-proxy-plugin/`) running in the smart-proxy
//! stand-in (`tests/ruby/smart_proxy_standin.rb`): HTTPS with optional, CA-verified client
//! certificates, smart-proxy's `do_authorize_any`, the plugin mounted at `/container_gateway`.
//!
//! The plugin's settings are written as smart-proxy reads them, `settings.d/container_gateway.yml`.
//! It must never start without Ruby and the Debian Ruby libraries: that is a panic naming them.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::process::Process;
use crate::scenario::Scenario;
use crate::tls::Tls;

/// The line the stand-in (like smart-proxy's launcher) logs once it accepts connections.
const LAUNCHED: &str = "Smart proxy has launched on 1 socket(s), waiting for requests";
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How the smart proxy and its plugin are configured.
#[derive(Debug, Clone)]
pub struct SmartProxyOptions {
    /// smart-proxy's `:trusted_hosts:`. `None` leaves it unset (any verified client
    /// certificate is trusted); `Some(vec![])` trusts nobody.
    pub trusted_hosts: Option<Vec<String>>,
    /// The plugin's `:sidecar_url:`.
    pub sidecar_url: String,
    /// The plugin's `:sync_secret_file:`.
    pub sync_secret_file: PathBuf,
    /// The plugin's `:sidecar_read_timeout:` in seconds (`None`: the plugin's default).
    pub sidecar_read_timeout: Option<u32>,
}

#[derive(Debug)]
pub struct SmartProxy {
    pub process: Process,
    pub port: u16,
}

impl SmartProxy {
    /// Starts the stand-in as `<name>` with the server certificate of `tls` and its CA for
    /// client certificates, and waits until it accepts connections.
    pub fn start(
        scenario: &Scenario,
        name: &str,
        tls: &Tls,
        options: &SmartProxyOptions,
    ) -> SmartProxy {
        let ruby = crate::paths::ruby_with_plugin_libs();
        let settings_dir = scenario.subdir(&format!("{name}/settings.d"));
        let mut yaml = format!(
            "---\n:enabled: https\n:sidecar_url: '{}'\n:sync_secret_file: '{}'\n",
            options.sidecar_url,
            options.sync_secret_file.display()
        );
        if let Some(seconds) = options.sidecar_read_timeout {
            yaml.push_str(&format!(":sidecar_read_timeout: {seconds}\n"));
        }
        let settings = settings_dir.join("container_gateway.yml");
        std::fs::write(&settings, yaml)
            .unwrap_or_else(|err| panic!("write {}: {err}", settings.display()));

        let port = crate::ports::free_port();
        let mut command = Command::new(ruby);
        command
            .arg(crate::paths::ruby_script("smart_proxy_standin.rb"))
            .arg("--port")
            .arg(port.to_string())
            .arg("--cert")
            .arg(&tls.server_cert)
            .arg("--key")
            .arg(&tls.server_key)
            .arg("--ca")
            .arg(&tls.ca_cert)
            .arg("--settings-dir")
            .arg(&settings_dir)
            .arg("--plugin-lib")
            .arg(crate::paths::smart_proxy_plugin_lib());
        if let Some(hosts) = &options.trusted_hosts {
            command.arg(format!("--trusted-hosts={}", hosts.join(",")));
        }
        let mut process = Process::spawn(name, command, scenario.path());
        process.wait_ready("its launch message", START_TIMEOUT, || {
            let log = std::fs::read_to_string(scenario.path().join(format!("{name}.log")))
                .unwrap_or_default();
            if log.contains(LAUNCHED) {
                Ok(())
            } else {
                Err(format!("no {LAUNCHED:?} in the log yet"))
            }
        });
        SmartProxy { process, port }
    }

    /// The URL Katello has for this smart proxy.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}
