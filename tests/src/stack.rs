//! The whole local gateway for one scenario: docker-registry with seeded images, Redis, the
//! sidecar with a published snapshot, and Envoy running the built filter, all on loopback.
//! With [`Upstream::Pulp`] Envoy fronts a Pulp the caller started (`crate::pulp`) through the
//! capsule template (`envoy/capsule/envoy.yaml`) instead, and no docker-registry runs.
//!
//! `Stack::start()` returns only when Envoy is ready *and* the filter reports the published
//! generation, so a scenario can assert at once. Client helpers (curl, skopeo, tokens) talk
//! to Envoy's TLS listener only; seeding and publishing go to the registry and the sidecar
//! directly. Dropping the stack stops everything (Envoy first) and removes the directory
//! unless the test failed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::envoy::{Envoy, EnvoyParams, Launch};
use crate::http::{Auth, HttpVersion, Request, Response};
use crate::oci::OciImage;
use crate::redis::Redis;
use crate::registry::Registry;
use crate::scenario::Scenario;
use crate::sidecar::{Published, Sidecar, SidecarExtra};
use crate::skopeo::{Skopeo, SkopeoRun};
use crate::tls::{ClientCert, Tls};

/// How long Envoy gets to install a generation the sidecar has published.
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Ports to try first; any that is taken falls back to a random free port.
#[derive(Debug, Clone, Copy, Default)]
pub struct PreferredPorts {
    pub listen: Option<u16>,
    pub admin: Option<u16>,
    pub sidecar: Option<u16>,
    pub registry: Option<u16>,
    pub redis: Option<u16>,
}

fn port(preferred: Option<u16>) -> u16 {
    match preferred {
        Some(p) => crate::ports::preferred_or_free(p),
        None => crate::ports::free_port(),
    }
}

/// What Envoy fronts.
#[derive(Debug, Clone, Default)]
pub enum Upstream {
    /// distribution's docker-registry, seeded with [`StackOptions::images`], through
    /// `envoy/local/envoy.yaml`.
    #[default]
    DockerRegistry,
    /// A running Pulp (API app over TLS, content app), through `envoy/capsule/envoy.yaml`.
    /// Its images are the caller's to push; [`StackOptions::images`] must be empty.
    Pulp {
        api_port: u16,
        content_port: u16,
        /// CA of the API app's certificate.
        api_ca: PathBuf,
    },
}

#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Scenario name (directory prefix).
    pub name: String,
    /// Images to seed, as `(repository, tag)`.
    pub images: Vec<(String, String)>,
    /// Users in the htpasswd file; each gets a random password.
    pub users: Vec<String>,
    /// The first snapshot content published (`PUT /v1/snapshot`); `None` starts Envoy
    /// before anything is published.
    pub snapshot: Option<serde_json::Value>,
    /// bcrypt cost of the htpasswd entries (4 keeps test logins fast).
    pub bcrypt_cost: u32,
    pub ports: PreferredPorts,
    /// Sidecar settings beyond the shared ones (e.g. the Katello login backend).
    pub sidecar: SidecarExtra,
    /// CNs of client certificates to issue from the scenario CA (content hosts), in
    /// [`Stack::clients`].
    pub client_cns: Vec<String>,
    pub upstream: Upstream,
    /// Envoy as a plain ingress (`envoy/ingress/envoy.yaml`): no bootstrap fetcher, the
    /// workers elect one through the shared-data lease. Only with
    /// [`Upstream::DockerRegistry`].
    pub elected_fetcher: bool,
    /// The filter to load instead of the one built here (`rolling_upgrade.rs` loads a previous
    /// release's).
    pub wasm: Option<PathBuf>,
    /// Envoy's `--concurrency` (worker threads).
    pub concurrency: u32,
    /// ext_authz mode (`envoy/ext-authz/envoy.yaml`): no wasm, Envoy asks the sidecar
    /// (`--ext-authz-config`, [`crate::envoy::ext_authz_config`]). Only with
    /// [`Upstream::DockerRegistry`].
    pub ext_authz: bool,
    /// Text replaced in the rendered Envoy config ([`Launch::rewrites`]).
    pub envoy_rewrites: Vec<(&'static str, &'static str)>,
}

/// The snapshot every scenario starts from unless it says otherwise: one public repository,
/// two private ones, alice granted `team/private`, bob (a valid user) granted nothing.
pub fn default_snapshot() -> serde_json::Value {
    json!({
        "repositories": [
            {"name": "library/public", "auth_required": false},
            {"name": "team/private", "auth_required": true},
            {"name": "team/other", "auth_required": true}
        ],
        "users": {"alice": ["team/private"]}
    })
}

impl StackOptions {
    pub fn new(name: &str) -> StackOptions {
        StackOptions {
            name: name.to_owned(),
            images: vec![
                ("library/public".to_owned(), "latest".to_owned()),
                ("team/private".to_owned(), "latest".to_owned()),
                ("team/other".to_owned(), "latest".to_owned()),
            ],
            users: vec!["alice".to_owned(), "bob".to_owned()],
            snapshot: Some(default_snapshot()),
            bcrypt_cost: 4,
            ports: PreferredPorts::default(),
            sidecar: SidecarExtra::default(),
            client_cns: Vec::new(),
            upstream: Upstream::DockerRegistry,
            elected_fetcher: false,
            wasm: None,
            concurrency: Launch::default().concurrency,
            ext_authz: false,
            envoy_rewrites: Vec::new(),
        }
    }
}

/// Field order is drop order: clients' servers stop before the directory is removed.
#[derive(Debug)]
pub struct Stack {
    pub envoy: Envoy,
    pub sidecar: Sidecar,
    pub redis: Redis,
    /// `None` when Envoy fronts Pulp (see [`Stack::registry`]).
    registry: Option<Registry>,
    pub tls: Tls,
    /// Client certificates issued by the scenario CA ([`StackOptions::client_cns`]).
    pub clients: Vec<ClientCert>,
    pub skopeo: Skopeo,
    images: BTreeMap<String, OciImage>,
    passwords: BTreeMap<String, String>,
    published: Published,
    /// Whether Envoy asks the sidecar (ext_authz mode) instead of running the filter.
    ext_authz: bool,
    pub scenario: Scenario,
}

impl Stack {
    /// The default stack (see [`StackOptions::new`]), named after the calling test thread.
    pub fn start() -> Stack {
        let name = std::thread::current()
            .name()
            .unwrap_or("scenario")
            .to_owned();
        Stack::start_with(StackOptions::new(&name))
    }

    pub fn start_with(options: StackOptions) -> Stack {
        let started = std::time::Instant::now();
        // Fail on a missing artifact before starting anything.
        let wasm = options.wasm.clone().unwrap_or_else(crate::paths::wasm);
        let _ = crate::paths::sidecar();
        let _ = crate::paths::envoy();

        let scenario = Scenario::new(&options.name);
        let dir = scenario.path().to_path_buf();
        let client_cns: Vec<&str> = options.client_cns.iter().map(String::as_str).collect();
        let (tls, clients) =
            crate::tls::generate_with_clients(&scenario.subdir("tls"), &client_cns);
        let skopeo = Skopeo::new(&dir);

        let mut images = BTreeMap::new();
        let (registry, upstream_port) = match &options.upstream {
            Upstream::DockerRegistry => {
                let registry = Registry::start(&dir, port(options.ports.registry));
                for (name, tag) in &options.images {
                    let layout =
                        scenario.subdir(&format!("images/{}-{tag}", name.replace('/', "_")));
                    let image = crate::oci::build_layout(&layout, name, tag);
                    registry.push(&skopeo, &image);
                    images.insert(image.reference(), image);
                }
                let port = registry.port;
                (Some(registry), port)
            }
            Upstream::Pulp { api_port, .. } => {
                assert!(
                    options.images.is_empty(),
                    "a stack in front of Pulp seeds no images (push them to Pulp): {:?}",
                    options.images
                );
                (None, *api_port)
            }
        };

        let redis = Redis::start(&dir, port(options.ports.redis));

        let passwords: BTreeMap<String, String> = options
            .users
            .iter()
            .map(|u| (u.clone(), crate::sidecar::random_hex(12)))
            .collect();
        let files = Sidecar::prepare(&dir, &passwords, options.bcrypt_cost, &options.sidecar);
        let listen_port = port(options.ports.listen);
        let mut sidecar_extra = options.sidecar.clone();
        if options.ext_authz {
            assert!(
                matches!(options.upstream, Upstream::DockerRegistry) && !options.elected_fetcher,
                "ext_authz mode runs in front of docker-registry, without a fetcher"
            );
            let config = dir.join("ext-authz.json");
            std::fs::write(
                &config,
                crate::envoy::ext_authz_config(listen_port, &files.publisher_public),
            )
            .unwrap_or_else(|err| panic!("write {}: {err}", config.display()));
            sidecar_extra.args.push("--ext-authz-config".to_owned());
            sidecar_extra.args.push(config.display().to_string());
        }
        let mut sidecar = Sidecar::start_with(
            &dir,
            "sidecar",
            port(options.ports.sidecar),
            &redis.url(),
            files,
            &sidecar_extra,
        );
        let published = match &options.snapshot {
            Some(content) => sidecar.publish(content),
            None => Published {
                epoch: serde_json::Value::Null,
                generation: 0,
                changed: false,
            },
        };

        let params = EnvoyParams {
            listen_port,
            admin_port: port(options.ports.admin),
            sidecar_port: sidecar.port,
            registry_port: upstream_port,
            tls_cert: tls.server_cert.clone(),
            tls_key: tls.server_key.clone(),
            client_ca: tls.ca_cert.clone(),
            wasm,
            access_log_state: true,
            snapshot_read_secret: sidecar.files.read_secret.clone(),
            // A previous release's filter knows no `publisher_keys`.
            publisher_keys: if options.wasm.is_some() {
                Vec::new()
            } else {
                vec![sidecar.files.publisher_public.clone()]
            },
        };
        let launch = Launch {
            concurrency: options.concurrency,
            rewrites: options.envoy_rewrites.clone(),
            ..Launch::default()
        };
        let mut envoy = match &options.upstream {
            Upstream::DockerRegistry => {
                let template = if options.ext_authz {
                    crate::paths::ext_authz_envoy_template()
                } else if options.elected_fetcher {
                    crate::paths::ingress_envoy_template()
                } else {
                    crate::paths::local_envoy_template()
                };
                Envoy::start_with(&dir, &template, params, &launch)
            }
            Upstream::Pulp {
                content_port,
                api_ca,
                ..
            } => {
                assert!(
                    !options.elected_fetcher,
                    "the capsule template has a bootstrap fetcher: no elected fetcher in front of Pulp"
                );
                let launch = Launch {
                    extra_vars: vec![
                        ("CLIENT_CA", tls.ca_cert.display().to_string()),
                        ("PULP_CA", api_ca.display().to_string()),
                        ("PULP_CONTENT_PORT", content_port.to_string()),
                    ],
                    ..launch
                };
                Envoy::start_with(
                    &dir,
                    &crate::paths::capsule_envoy_template(),
                    params,
                    &launch,
                )
            }
        };
        if options.snapshot.is_some() {
            if options.ext_authz {
                sidecar.wait_for_ext_authz_generation(published.generation, INSTALL_TIMEOUT);
            } else {
                envoy.wait_for_generation(published.generation, INSTALL_TIMEOUT);
            }
        }
        eprintln!(
            "[harness] stack up in {:.1?}: envoy https://127.0.0.1:{} (admin {}), sidecar {}, upstream {}, redis {}; generation {}",
            started.elapsed(),
            envoy.params.listen_port,
            envoy.params.admin_port,
            sidecar.port,
            envoy.params.registry_port,
            redis.port,
            published.generation
        );
        Stack {
            envoy,
            sidecar,
            redis,
            registry,
            tls,
            clients,
            skopeo,
            images,
            passwords,
            published,
            ext_authz: options.ext_authz,
            scenario,
        }
    }

    /// The docker-registry behind Envoy; panics for a stack in front of Pulp.
    pub fn registry(&self) -> &Registry {
        self.registry
            .as_ref()
            .unwrap_or_else(|| panic!("this stack fronts Pulp: it has no docker-registry"))
    }

    pub fn dir(&self) -> &Path {
        self.scenario.path()
    }

    /// `127.0.0.1:<listen port>`: the registry host clients use.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.envoy.params.listen_port)
    }

    /// `https://127.0.0.1:<listen port>`
    pub fn base_url(&self) -> String {
        format!("https://{}", self.host())
    }

    /// The Docker token realm the filter advertises.
    pub fn realm(&self) -> String {
        format!("{}/v2/token", self.base_url())
    }

    pub fn listen_port(&self) -> u16 {
        self.envoy.params.listen_port
    }

    pub fn admin_port(&self) -> u16 {
        self.envoy.params.admin_port
    }

    /// Directory with `ca.crt` (`--src-cert-dir` / `--cert-dir`).
    pub fn cert_dir(&self) -> &Path {
        &self.tls.cert_dir
    }

    pub fn ca_cert(&self) -> &Path {
        &self.tls.ca_cert
    }

    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.passwords.keys().map(String::as_str)
    }

    pub fn password(&self, user: &str) -> &str {
        self.passwords
            .get(user)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no user {user} in this stack"))
    }

    /// A seeded image by `name:tag`.
    pub fn image(&self, reference: &str) -> &OciImage {
        self.images
            .get(reference)
            .unwrap_or_else(|| panic!("no seeded image {reference}"))
    }

    /// The generation of the last snapshot this stack published.
    pub fn generation(&self) -> u64 {
        self.published.generation
    }

    /// Publishes `content` through the sidecar; returns at once (see
    /// [`Stack::publish_and_wait`]).
    pub fn publish(&mut self, content: &serde_json::Value) -> Published {
        let published = self.sidecar.publish(content);
        self.published = published.clone();
        published
    }

    /// Publishes and waits until Envoy's filter (in ext_authz mode: the sidecar's check)
    /// reports the new generation.
    pub fn publish_and_wait(&mut self, content: &serde_json::Value) -> Published {
        let published = self.publish(content);
        if self.ext_authz {
            self.sidecar
                .wait_for_ext_authz_generation(published.generation, INSTALL_TIMEOUT);
        } else {
            self.envoy
                .wait_for_generation(published.generation, INSTALL_TIMEOUT);
        }
        published
    }

    /// A request to Envoy's listener (`path` starts with `/`), trusting the stack's CA.
    pub fn request(&self, method: &str, path: &str, version: HttpVersion) -> Request {
        Request::new(method, format!("{}{path}", self.base_url()))
            .version(version)
            .cacert(self.ca_cert())
    }

    /// `GET <path>` through Envoy with `auth`; panics on a transport failure.
    pub fn get(&self, path: &str, version: HttpVersion, auth: Auth<'_>) -> Response {
        let resp = self.request("GET", path, version).auth(auth).send_ok();
        assert_eq!(
            resp.http_version,
            version.wire_name(),
            "asked curl for {version} but it spoke HTTP/{} for GET {path}",
            resp.http_version
        );
        resp
    }

    /// `GET /v2/token?service=..&scope=..` through Envoy.
    pub fn token_response(
        &self,
        credentials: Option<(&str, &str)>,
        scopes: &[&str],
        version: HttpVersion,
    ) -> Response {
        let mut path = format!("/v2/token?service={}", crate::sidecar::SERVICE);
        for scope in scopes {
            path.push_str("&scope=");
            path.push_str(&crate::envoy::query_escape(scope));
        }
        let auth = match credentials {
            Some((user, password)) => Auth::Basic(user, password),
            None => Auth::Anonymous,
        };
        self.get(&path, version, auth)
    }

    /// A token for `user` (with the stack's password; `None` = anonymous) and `scopes`.
    /// Panics unless the token endpoint answers 200 with a token.
    pub fn token(&self, user: Option<&str>, scopes: &[&str], version: HttpVersion) -> String {
        let credentials = user.map(|u| (u, self.password(u)));
        let resp = self.token_response(credentials, scopes, version);
        assert_eq!(
            resp.status,
            200,
            "token for {user:?} {scopes:?} over {version}: {}",
            resp.summary()
        );
        let json = resp.json();
        json.get("token")
            .or_else(|| json.get("access_token"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("token response has no token: {}", resp.summary()))
    }

    /// `skopeo copy docker://<envoy>/<reference> oci:<fresh dir>:<tag>` with the stack's CA
    /// and `credentials` (`--src-no-creds`, `--src-creds`, or `--src-registry-token`).
    /// Returns the run and the destination layout.
    pub fn skopeo_pull(&self, reference: &str, credentials: Auth<'_>) -> (SkopeoRun, PathBuf) {
        let tag = reference
            .rsplit_once(':')
            .map(|(_, t)| t)
            .unwrap_or("latest");
        let dest = self.scenario.subdir(&format!(
            "pulls/{}-{}",
            reference.replace(['/', ':'], "_"),
            crate::sidecar::random_hex(4)
        ));
        let src = format!("docker://{}/{reference}", self.host());
        let dest_ref = format!("oci:{}:{tag}", dest.display());
        let cert_dir = self.cert_dir().display().to_string();
        let creds;
        // --preserve-digests: keep our uncompressed layer as is, so the copy can be checked
        // blob by blob against the seeded image.
        let mut args = vec!["copy", "--preserve-digests", "--src-cert-dir", &cert_dir];
        match credentials {
            Auth::Anonymous => args.push("--src-no-creds"),
            Auth::Basic(user, password) => {
                creds = format!("{user}:{password}");
                args.push("--src-creds");
                args.push(&creds);
            }
            Auth::Bearer(token) => {
                args.push("--src-registry-token");
                args.push(token);
            }
        }
        args.push(&src);
        args.push(&dest_ref);
        (self.skopeo.run(&args), dest)
    }

    /// The client certificate issued for `cn` (one of [`StackOptions::client_cns`]).
    pub fn client(&self, cn: &str) -> &ClientCert {
        self.clients
            .iter()
            .find(|c| c.cn == cn)
            .unwrap_or_else(|| panic!("no client certificate {cn} (add it to client_cns)"))
    }

    /// A containers/image cert dir for content host `cn` (one of [`StackOptions::client_cns`]):
    /// the CA as `ca.crt`, the client certificate and key as `<cn>.cert` and `<cn>.key`.
    pub fn host_cert_dir(&self, cn: &str) -> PathBuf {
        let client = self.client(cn);
        let dir = self.scenario.subdir(&format!("host-certs/{cn}"));
        for (from, to) in [
            (self.ca_cert().to_path_buf(), dir.join("ca.crt")),
            (client.cert.clone(), dir.join(format!("{cn}.cert"))),
            (client.key.clone(), dir.join(format!("{cn}.key"))),
        ] {
            std::fs::copy(&from, &to)
                .unwrap_or_else(|err| panic!("copy {} to {}: {err}", from.display(), to.display()));
        }
        dir
    }

    /// `skopeo copy` of `reference` through Envoy as the content host whose cert dir is
    /// `cert_dir` (see [`Stack::host_cert_dir`]), with no credentials.
    pub fn skopeo_pull_as_host(&self, reference: &str, cert_dir: &Path) -> SkopeoRun {
        let dest = self.scenario.subdir(&format!(
            "pulls/{}-{}",
            reference.replace(['/', ':'], "_"),
            crate::sidecar::random_hex(4)
        ));
        let src = format!("docker://{}/{reference}", self.host());
        let dest_ref = format!("oci:{}:latest", dest.display());
        let cert_dir = cert_dir.display().to_string();
        self.skopeo.run(&[
            "copy",
            "--preserve-digests",
            "--src-cert-dir",
            &cert_dir,
            "--src-no-creds",
            &src,
            &dest_ref,
        ])
    }

    /// Requests Envoy has sent to the registry so far.
    pub fn upstream_requests(&mut self) -> u64 {
        self.envoy.upstream_registry_requests()
    }

    /// SIGKILLs the sidecar: the token endpoint and the snapshot source are gone.
    pub fn kill_sidecar(&mut self) {
        self.sidecar.process.kill();
    }

    /// Prints the tail of every process log (for debugging a passing test).
    pub fn print_logs(&self) {
        self.envoy.process.print_tail();
        self.sidecar.process.print_tail();
        if let Some(registry) = &self.registry {
            registry.process.print_tail();
        }
        self.redis.process.print_tail();
    }
}
