//! The upstream registry: distribution's `docker-registry serve` on loopback, plain HTTP, no
//! auth, filesystem storage in the scenario directory — a stand-in for Pulp.
//!
//! Images are seeded straight into it with skopeo (never through Envoy), so the gateway is
//! only ever exercised by the test's own requests.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::oci::OciImage;
use crate::process::Process;
use crate::skopeo::Skopeo;

#[derive(Debug)]
pub struct Registry {
    pub process: Process,
    pub port: u16,
}

impl Registry {
    /// Starts the registry on `port` and waits until `GET /v2/` answers 200.
    pub fn start(dir: &Path, port: u16) -> Registry {
        let bin = crate::paths::docker_registry();
        let data = dir.join("registry-data");
        std::fs::create_dir_all(&data)
            .unwrap_or_else(|err| panic!("create {}: {err}", data.display()));
        let config = dir.join("registry-config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\n\
                 log:\n  level: info\n  accesslog:\n    disabled: false\n\
                 storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n\
                 health:\n  storagedriver:\n    enabled: false\n",
                data = data.display()
            ),
        )
        .unwrap_or_else(|err| panic!("write {}: {err}", config.display()));
        let mut cmd = Command::new(bin);
        cmd.arg("serve").arg(&config);
        // Configuration comes from the file only.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("REGISTRY_") {
                cmd.env_remove(key);
            }
        }
        let mut process = Process::spawn("registry", cmd, dir);
        process.wait_ready("GET /v2/ = 200", Duration::from_secs(20), || {
            crate::wait::http_ok(port, "/v2/")
        });
        Registry { process, port }
    }

    /// `127.0.0.1:<port>`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes `image` (an OCI layout) into this registry as `<name>:<tag>`.
    pub fn push(&self, skopeo: &Skopeo, image: &OciImage) {
        let src = format!("oci:{}:{}", image.layout_dir.display(), image.tag);
        let dest = format!("docker://{}/{}:{}", self.host(), image.name, image.tag);
        skopeo
            .run(&[
                "copy",
                "--dest-tls-verify=false",
                "--preserve-digests",
                "--dest-no-creds",
                "--retry-times",
                "2",
                &src,
                &dest,
            ])
            .assert_success();
    }
}
