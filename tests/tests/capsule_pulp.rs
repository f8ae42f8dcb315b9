//! registry-gate in front of REAL Pulp, as on a Katello capsule (`envoy/capsule/envoy.yaml`):
//! one Pulp (pulpcore + pulp-container, `TOKEN_AUTH_DISABLED`) for the whole binary, since its
//! start-up (PostgreSQL, `migrate`) is the expensive part, and the scenarios in sequence with
//! real clients through Envoy: skopeo, podman (login against the Katello stand-in, pull),
//! curl; Katello's sync (rest-client through the smart-proxy plugin) granting a pull; and the
//! sync job (`registry-gate-sidecar sync --from-pulp`) publishing Pulp's distributions and
//! pull roles to a second gateway in front of the same Pulp.
//!
//! Pulp not installed is a failure naming `make deps`, never a skip.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use registry_gate_tests::expect;
use registry_gate_tests::http::{Auth, HttpVersion, Request};
use registry_gate_tests::katello::KatelloUser;
use registry_gate_tests::katello_sync::KatelloSync;
use registry_gate_tests::pulp::{Pulp, PulpOptions};
use registry_gate_tests::sidecar::random_hex;
use registry_gate_tests::smart_proxy::{SmartProxy, SmartProxyOptions};
use registry_gate_tests::stack::{PreferredPorts, Stack, StackOptions, Upstream};
use registry_gate_tests::storm::KatelloSite;
use registry_gate_tests::sync_run::SyncRun;
use registry_gate_tests::wait::wait_until;
use registry_gate_tests::{oci, ports, tls, OciImage};
use serde_json::json;

const PUBLIC: &str = "library/public";
const PRIVATE: &str = "team/private";
const OTHER: &str = "team/other";
/// Granted `team/private` by Katello.
const ALICE: &str = "alice";
/// A valid Katello user granted nothing.
const BOB: &str = "bob";
/// Granted `team/other` by Katello's sync during the test (Katello's login answer lists
/// nothing for her).
const CAROL: &str = "carol";
/// How soon a Katello sync grant must let the user pull.
/// Content hosts (RHSM certificate CN = the host's subscription UUID).
const HOST_GRANTED: &str = "6f1e0a8c-3b7d-4f2a-9c55-0d2e8b1a7f34";
const HOST_UNGRANTED: &str = "0b7c2d9e-5a41-4c6f-8e3d-2f9a6b1c4d70";
const GRANT_DEADLINE: Duration = Duration::from_secs(1);

struct Capsule {
    stack: Stack,
    /// The Katello stand-in the sidecar logs users in against; kept running.
    _site: KatelloSite,
    pulp: Pulp,
    images: BTreeMap<&'static str, OciImage>,
}

impl Capsule {
    fn password(&self, user: &str) -> String {
        users()[user].password.clone()
    }

    /// A token for `user` from `/v2/token` through Envoy (the sidecar asks Katello).
    fn token(&self, user: &str, repository: &str) -> String {
        self.token_for_scope(user, &format!("repository:{repository}:pull"))
    }

    fn token_for_scope(&self, user: &str, scope: &str) -> String {
        let password = self.password(user);
        let resp = self
            .stack
            .token_response(Some((user, &password)), &[scope], HttpVersion::Http1);
        assert_eq!(resp.status, 200, "login {user}: {}", resp.summary());
        resp.json()["token"].as_str().unwrap().to_owned()
    }

    fn manifest_status(&self, token: &str, repository: &str) -> u16 {
        expect::get_manifest(
            &self.stack,
            repository,
            "latest",
            HttpVersion::Http1,
            Auth::Bearer(token),
        )
        .status
    }

    fn content_requests(&self) -> Vec<String> {
        self.stack
            .envoy
            .access_log()
            .into_iter()
            .filter(|l| l.contains(" /pulp/container/"))
            .collect()
    }
}

/// The Katello users (fixed passwords per binary run: generated once).
fn users() -> BTreeMap<String, KatelloUser> {
    static USERS: std::sync::OnceLock<BTreeMap<String, KatelloUser>> = std::sync::OnceLock::new();
    USERS
        .get_or_init(|| {
            [(ALICE, vec![PRIVATE]), (BOB, vec![]), (CAROL, vec![])]
                .into_iter()
                .map(|(user, repos)| {
                    (
                        user.to_owned(),
                        KatelloUser {
                            password: random_hex(12),
                            repositories: repos.into_iter().map(str::to_owned).collect(),
                        },
                    )
                })
                .collect()
        })
        .clone()
}

fn start() -> Capsule {
    let listen = ports::free_port_for_later();
    let pulp_started = Instant::now();
    let pulp = Pulp::start(PulpOptions {
        postgres_port: ports::free_port(),
        api_port: ports::free_port(),
        content_port: ports::free_port(),
        content_origin: format!("https://127.0.0.1:{listen}"),
    });
    let mut images = BTreeMap::new();
    for name in [PUBLIC, PRIVATE, OTHER] {
        images.insert(name, pulp.push_new_image(name, "latest"));
    }
    eprintln!(
        "[capsule] Pulp set up in {:.1?} (with 3 pushes)",
        pulp_started.elapsed()
    );

    let site = KatelloSite::start(
        "capsule_pulp",
        &users(),
        &[PUBLIC.to_owned()],
        Duration::ZERO,
    );
    let mut options = StackOptions::new("capsule_pulp");
    options.images = Vec::new();
    options.users = Vec::new();
    options.snapshot = Some(json!({
        "repositories": [
            {"name": PUBLIC, "auth_required": false},
            {"name": PRIVATE, "auth_required": true},
            {"name": OTHER, "auth_required": true}
        ],
        "hosts": {(HOST_GRANTED): [PRIVATE], (HOST_UNGRANTED): []}
    }));
    options.client_cns = vec![HOST_GRANTED.to_owned(), HOST_UNGRANTED.to_owned()];
    options.sidecar = site.sidecar.clone();
    options.ports = PreferredPorts {
        listen: Some(listen),
        ..PreferredPorts::default()
    };
    options.upstream = Upstream::Pulp {
        api_port: pulp.options.api_port,
        content_port: pulp.options.content_port,
        api_ca: pulp.tls.ca_cert.clone(),
    };
    let stack = Stack::start_with(options);
    assert_eq!(
        stack.listen_port(),
        listen,
        "Envoy must listen where Pulp's CONTENT_ORIGIN points"
    );
    Capsule {
        stack,
        _site: site,
        pulp,
        images,
    }
}

#[test]
fn capsule_pulp() {
    let started = Instant::now();
    let capsule = start();
    let setup = started.elapsed();
    let mut steps: Vec<(&str, Duration)> = Vec::new();
    let mut run = |name: &'static str, scenario: &dyn Fn(&Capsule)| {
        let t = Instant::now();
        eprintln!("[capsule] --- {name}");
        scenario(&capsule);
        steps.push((name, t.elapsed()));
    };
    run(
        "anonymous skopeo pull of a public repository",
        &anonymous_public_pull,
    );
    run(
        "anonymous refused a private repository",
        &anonymous_private_refused,
    );
    run(
        "blobs through Pulp's 302 to the content app",
        &blob_redirect,
    );
    run(
        "podman login and pull of a granted repository",
        &podman_login_and_pull,
    );
    run(
        "a user without a grant gets NAME_UNKNOWN",
        &no_grant_name_unknown,
    );
    run(
        "a content host pulls with its client certificate",
        &content_host_pulls,
    );
    run("catalog filtered to the caller", &catalog_filtered);
    run(
        "Pulp's Flatpak index filtered to the caller",
        &flatpak_index_filtered,
    );
    run(
        "the old gateway's other endpoints: v1 ping and search, tags, pushes",
        &other_endpoints,
    );
    run("Katello sync grant lets the user pull", &katello_sync_grant);
    run(
        "the sync job publishes Pulp's distributions and pull roles",
        &sync_job_from_pulp,
    );
    for (name, took) in &steps {
        eprintln!("[capsule] {took:>10.1?}  {name}");
    }
    eprintln!(
        "[capsule] Pulp {:?}; setup (Pulp + pushes + Katello + stack) {setup:.1?}; whole test {:.1?}",
        capsule
            .pulp
            .timings
            .iter()
            .map(|(w, t)| format!("{w} {t:.1?}"))
            .collect::<Vec<_>>(),
        started.elapsed()
    );
}

fn anonymous_public_pull(c: &Capsule) {
    let before = c.content_requests().len();
    let (run, dest) = c
        .stack
        .skopeo_pull(&format!("{PUBLIC}:latest"), Auth::Anonymous);
    run.assert_success();
    oci::layout_has_image(&dest, &c.images[PUBLIC]).unwrap();
    // The blobs came from the content app, through Envoy. Envoy writes an access-log line
    // when its stream completes and flushes the log every 100 ms, so poll for it.
    wait_until(
        "a /pulp/container/ request in Envoy's access log",
        Duration::from_secs(5),
        || {
            let content = c.content_requests();
            if content.len() > before {
                Ok(())
            } else {
                Err(format!("content-app lines so far: {content:?}"))
            }
        },
    );
}

fn anonymous_private_refused(c: &Capsule) {
    let resp = expect::get_manifest(
        &c.stack,
        PRIVATE,
        "latest",
        HttpVersion::Http1,
        Auth::Anonymous,
    );
    expect::assert_challenge(
        &c.stack,
        &resp,
        PRIVATE,
        "anonymous manifest of a private repository",
    );
    let (run, _) = c
        .stack
        .skopeo_pull(&format!("{PRIVATE}:latest"), Auth::Anonymous);
    run.assert_failure();
}

fn blob_redirect(c: &Capsule) {
    let image = &c.images[PRIVATE];
    let token = c.token(ALICE, PRIVATE);
    for version in [HttpVersion::Http1, HttpVersion::Http2] {
        // alice's grant came with her login (the sidecar's refresh from Katello): each
        // Envoy worker installs it on its own, so the first answers may still be 404.
        let path = format!("/v2/{PRIVATE}/blobs/{}", image.layer_digest);
        let resp = registry_gate_tests::wait::wait_until(
            "alice's grant in the answering Envoy worker",
            Duration::from_secs(10),
            || match c.stack.get(&path, version, Auth::Bearer(&token)) {
                resp if resp.status == 404 => Err(resp.summary()),
                resp => Ok(resp),
            },
        );
        assert_eq!(
            resp.status,
            302,
            "blob GET over {version}: {}",
            resp.summary()
        );
        let location = resp.header("location").unwrap().to_owned();
        let prefix = format!("{}/pulp/container/{PRIVATE}/blobs/", c.stack.base_url());
        assert!(
            location.starts_with(&prefix) && location.contains("validate_token="),
            "Location {location} is not {prefix}...?validate_token=..."
        );
        // The redirect, followed without credentials, is served by the content app.
        let blob = Request::get(&location)
            .version(version)
            .cacert(c.stack.ca_cert())
            .send_ok();
        assert_eq!(
            blob.status,
            200,
            "content app over {version}: {}",
            blob.summary()
        );
        let layer = std::fs::read(
            image
                .layout_dir
                .join("blobs/sha256")
                .join(image.layer_digest.trim_start_matches("sha256:")),
        )
        .unwrap();
        assert_eq!(
            blob.body,
            layer,
            "the blob is not {}'s layer",
            image.reference()
        );
        // Without Pulp's signature the content app refuses: the filter is off on this route,
        // so this is the check that keeps content behind the gate.
        let unsigned = location.split('?').next().unwrap();
        let refused = Request::get(unsigned)
            .version(version)
            .cacert(c.stack.ca_cert())
            .send_ok();
        assert_eq!(
            refused.status,
            403,
            "unsigned content URL: {}",
            refused.summary()
        );
        let forged = format!("{unsigned}?expires=9999999999&validate_token=0000:1111");
        let refused = Request::get(&forged)
            .version(version)
            .cacert(c.stack.ca_cert())
            .send_ok();
        assert_eq!(
            refused.status,
            403,
            "forged content URL: {}",
            refused.summary()
        );
    }
}

/// podman with its storage under `dir` (vfs: no overlay mounts needed) and its run root in
/// `runroot` (podman refuses one longer than 50 characters, so it cannot live in `dir`).
fn podman(dir: &Path, runroot: &Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let podman = registry_gate_tests::paths::podman();
    let mut cmd = Command::new(&podman);
    cmd.arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(runroot)
        .arg("--storage-driver")
        .arg("vfs")
        .args(args)
        .env("XDG_RUNTIME_DIR", dir)
        .env("CONTAINERS_REGISTRIES_CONF", dir.join("registries.conf"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(mut input) = child.stdin.take() {
        if let Some(text) = stdin {
            use std::io::Write as _;
            input.write_all(text.as_bytes()).unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

fn podman_login_and_pull(c: &Capsule) {
    let dir = c.stack.scenario.subdir("podman-alice");
    let runroot = tempfile::Builder::new()
        .prefix("rg-podman-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::write(
        dir.join("registries.conf"),
        "unqualified-search-registries = []\n",
    )
    .unwrap();
    let cert_dir = c.stack.cert_dir().display().to_string();
    let authfile = dir.join("auth.json").display().to_string();
    let host = c.stack.host();
    let password = c.password(ALICE);
    let t = Instant::now();
    let login = podman(
        &dir,
        runroot.path(),
        &[
            "login",
            "--cert-dir",
            &cert_dir,
            "--authfile",
            &authfile,
            "--username",
            ALICE,
            "--password-stdin",
            &host,
        ],
        Some(&password),
    );
    assert!(
        login.status.success(),
        "podman login: {}",
        String::from_utf8_lossy(&login.stderr)
    );
    eprintln!("[capsule] podman login in {:.1?}", t.elapsed());
    let reference = format!("{host}/{PRIVATE}:latest");
    let pull_from = |reference: &str| {
        podman(
            &dir,
            runroot.path(),
            &[
                "pull",
                "--cert-dir",
                &cert_dir,
                "--authfile",
                &authfile,
                "--quiet",
                reference,
            ],
            None,
        )
    };
    let t = Instant::now();
    let pull = registry_gate_tests::wait::wait_until(
        "alice's grant (login refresh) in every Envoy worker",
        Duration::from_secs(10),
        || {
            let out = pull_from(&reference);
            if out.status.success() {
                Ok(out)
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        },
    );
    eprintln!("[capsule] podman pull in {:.1?}", t.elapsed());
    let image_id = String::from_utf8_lossy(&pull.stdout).trim().to_owned();
    assert!(!image_id.is_empty(), "podman pull printed no image id");
    // podman stored the very image Pulp holds (its config digest is the image id).
    assert_eq!(
        format!("sha256:{image_id}"),
        c.images[PRIVATE].config_digest,
        "podman pulled another image"
    );
    // The same login may not pull what alice is not granted.
    let refused = pull_from(&format!("{host}/{OTHER}:latest"));
    assert!(!refused.status.success(), "alice pulled {OTHER}");
}

fn content_host_pulls(c: &Capsule) {
    let granted = c.stack.host_cert_dir(HOST_GRANTED);
    c.stack
        .skopeo_pull_as_host(&format!("{PRIVATE}:latest"), &granted)
        .assert_success();
    c.stack
        .skopeo_pull_as_host(&format!("{PUBLIC}:latest"), &granted)
        .assert_success();
    let ungranted = c.stack.host_cert_dir(HOST_UNGRANTED);
    c.stack
        .skopeo_pull_as_host(&format!("{PRIVATE}:latest"), &ungranted)
        .assert_failure();
    c.stack
        .skopeo_pull_as_host(&format!("{PUBLIC}:latest"), &ungranted)
        .assert_success();
}

/// The repository names of Pulp's Flatpak index (`/index/static`, as flatpak asks for it)
/// answered to `request`.
fn flatpak_names(request: Request) -> Vec<String> {
    let resp = request.send_ok();
    assert_eq!(resp.status, 200, "{}", resp.summary());
    let mut names: Vec<String> = resp.json()["Results"]
        .as_array()
        .unwrap_or_else(|| panic!("no Results: {}", resp.summary()))
        .iter()
        .map(|entry| entry["Name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

fn flatpak_index_filtered(c: &Capsule) {
    let path = "/index/static?label:org.flatpak.ref:exists=1&tag=latest";
    let index = || c.stack.request("GET", path, HttpVersion::Http1);
    // Pulp itself lists every repository.
    let all = flatpak_names(Request::get(c.pulp.api_url(path)).cacert(&c.pulp.tls.ca_cert));
    assert_eq!(all, [PUBLIC, OTHER, PRIVATE]);
    assert_eq!(flatpak_names(index()), [PUBLIC], "anonymous");
    let token = c.token(ALICE, PRIVATE);
    assert_eq!(
        flatpak_names(index().auth(Auth::Bearer(&token))),
        [PUBLIC, PRIVATE],
        "alice"
    );
    let host = c.stack.client(HOST_GRANTED);
    assert_eq!(
        flatpak_names(index().client_cert(&host.cert, &host.key)),
        [PUBLIC, PRIVATE],
        "a granted content host"
    );
}

fn other_endpoints(c: &Capsule) {
    let get = |path: &str| c.stack.request("GET", path, HttpVersion::Http1);
    // `/v1/_ping`: answered by the gateway, as the old one answered it from Pulp.
    assert_eq!(get("/v1/_ping").send_ok().status, 200);
    // `/v1/search`: the caller's catalog (anonymous: public only); v2 clients get 404 so
    // podman falls back to the catalog (#37705).
    let search = get("/v1/search?q=library").send_ok();
    assert_eq!(search.status, 200, "{}", search.summary());
    let names: Vec<String> = search.json()["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, [PUBLIC], "{}", search.summary());
    let private = get("/v1/search?q=team").send_ok();
    assert_eq!(private.json()["num_results"], 0, "{}", private.summary());
    let v2 = get("/v1/search?q=library")
        .header("Docker-Distribution-API-Version", "registry/2.0")
        .send_ok();
    assert_eq!(v2.status, 404, "{}", v2.summary());
    // Tags of a granted repository come from Pulp.
    let token = c.token(ALICE, PRIVATE);
    let tags = get(&format!("/v2/{PRIVATE}/tags/list"))
        .auth(Auth::Bearer(&token))
        .send_ok();
    assert_eq!(tags.status, 200, "{}", tags.summary());
    assert_eq!(tags.json()["tags"], json!(["latest"]), "{}", tags.summary());
    // Pushes: the spec's UNSUPPORTED, before anything reaches Pulp.
    let push = c
        .stack
        .request(
            "POST",
            &format!("/v2/{PRIVATE}/blobs/uploads/"),
            HttpVersion::Http1,
        )
        .auth(Auth::Bearer(&token))
        .send_ok();
    expect::assert_registry_error(&push, 405, "UNSUPPORTED", "alice's blob upload");
    let put = c
        .stack
        .request(
            "PUT",
            &format!("/v2/{PRIVATE}/manifests/pushed"),
            HttpVersion::Http1,
        )
        .auth(Auth::Bearer(&token))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(b"{}".to_vec())
        .send_ok();
    expect::assert_registry_error(&put, 405, "UNSUPPORTED", "alice's manifest PUT");
}

fn no_grant_name_unknown(c: &Capsule) {
    let token = c.token(BOB, PRIVATE);
    let resp = expect::get_manifest(
        &c.stack,
        PRIVATE,
        "latest",
        HttpVersion::Http1,
        Auth::Bearer(&token),
    );
    expect::assert_registry_error(&resp, 404, "NAME_UNKNOWN", "bob's manifest GET");
    let password = c.password(BOB);
    let (run, _) = c
        .stack
        .skopeo_pull(&format!("{PRIVATE}:latest"), Auth::Basic(BOB, &password));
    run.assert_failure();
}

fn catalog(c: &Capsule, auth: Auth<'_>) -> Vec<String> {
    let resp = c.stack.get("/v2/_catalog", HttpVersion::Http1, auth);
    let mut names = expect::catalog_names(&resp, "catalog");
    names.sort();
    names
}

fn catalog_filtered(c: &Capsule) {
    let token = c.token_for_scope(ALICE, "registry:catalog:*");
    assert_eq!(
        catalog(c, Auth::Bearer(&token)),
        vec![PUBLIC.to_owned(), PRIVATE.to_owned()],
        "alice's catalog"
    );
    let token = c.token_for_scope(BOB, "registry:catalog:*");
    assert_eq!(
        catalog(c, Auth::Bearer(&token)),
        vec![PUBLIC.to_owned()],
        "bob's catalog"
    );
    // Pulp itself lists all three (what the filter narrowed).
    let all = c.pulp.admin_get("/v2/_catalog");
    assert_eq!(all.status, 200, "{}", all.summary());
    assert_eq!(
        all.json()["repositories"].as_array().unwrap().len(),
        3,
        "{}",
        all.summary()
    );
}

fn katello_sync_grant(c: &Capsule) {
    let (proxy_tls, mut foreman) = tls::generate_with_clients(
        &c.stack.scenario.subdir("proxy-tls"),
        &["foreman.example.com"],
    );
    let proxy = SmartProxy::start(
        &c.stack.scenario,
        "smart-proxy",
        &proxy_tls,
        &SmartProxyOptions {
            trusted_hosts: Some(vec!["foreman.example.com".to_owned()]),
            sidecar_url: c.stack.sidecar.url(),
            sync_secret_file: c.stack.sidecar.files.sync_secret_file.clone(),
            sidecar_read_timeout: None,
        },
    );
    let sync = KatelloSync::start(
        &c.stack.scenario,
        "katello-sync",
        &proxy.url(),
        &proxy_tls.ca_cert,
        Some(&foreman.remove(0)),
    );
    let repo = |name: &str, auth: bool| json!({"repository": name, "auth_required": auth});
    let answer = sync.call(
        "repository_list",
        json!({"repositories": [repo(PUBLIC, false), repo(PRIVATE, true), repo(OTHER, true)]}),
    );
    assert_eq!(answer.status, 200, "repository_list: {answer:?}");

    // carol logs in before her grant: a valid token, and the gate refuses her.
    let before = c.token(CAROL, OTHER);
    assert_eq!(
        c.manifest_status(&before, OTHER),
        404,
        "carol before her grant"
    );
    let answer = sync.call(
        "user_repository_mapping",
        json!({"users": [
            {(ALICE): [repo(PRIVATE, true)]},
            {(CAROL): [repo(OTHER, true)]},
        ]}),
    );
    assert_eq!(answer.status, 200, "user_repository_mapping: {answer:?}");
    // Within a second she pulls: a client refused with 401 (her old token does not cover
    // the now-granted repository) logs in again, and the new token is honoured.
    let (token, took) = registry_gate_tests::wait::poll(GRANT_DEADLINE, || {
        let token = c.token(CAROL, OTHER);
        match c.manifest_status(&token, OTHER) {
            200 => Ok(token),
            status => Err(format!("got {status}")),
        }
    })
    .unwrap_or_else(|err| {
        panic!("Katello sync grant did not reach Envoy within {GRANT_DEADLINE:?}: {err}")
    });
    eprintln!("[capsule] Katello sync grant: carol pulls {took:.1?} after the sync answered");
    let token = token.as_str();
    // The whole pull, with the same token.
    registry_gate_tests::wait::wait_until("carol's skopeo pull", Duration::from_secs(5), || {
        let (run, dest) = c
            .stack
            .skopeo_pull(&format!("{OTHER}:latest"), Auth::Bearer(token));
        if !run.success {
            return Err(run.stderr.clone());
        }
        oci::layout_has_image(&dest, &c.images[OTHER])
    });
}

/// A user given `container.containerdistribution_consumer` on `team/private` in Pulp.
const DAVE: &str = "dave";
/// A user given `container.containernamespace_consumer` on the `team` namespace in Pulp.
const ERIN: &str = "erin";
/// A distribution created through Pulp's REST API (no content), then deleted.
const MADE: &str = "team/made";
/// How long every Envoy worker may take to install a generation the filter reported.
const ENFORCE_DEADLINE: Duration = Duration::from_secs(10);

/// The pull status of `repository`'s manifest through `stack`, for `user` (a fresh token)
/// or anonymously.
fn pull_status(stack: &Stack, user: Option<&str>, repository: &str) -> u16 {
    let scope = format!("repository:{repository}:pull");
    let token = stack.token(user, &[&scope], HttpVersion::Http1);
    expect::get_manifest(
        stack,
        repository,
        "latest",
        HttpVersion::Http1,
        Auth::Bearer(&token),
    )
    .status
}

fn sync_job_from_pulp(c: &Capsule) {
    let pulp = &c.pulp;
    // A second gateway in front of the same Pulp, its users in htpasswd (no Katello login
    // refresh, which would replace the job's grants), nothing published yet.
    let mut options = StackOptions::new("capsule_pulp_sync");
    options.images = Vec::new();
    options.users = vec![DAVE.to_owned(), ERIN.to_owned()];
    options.snapshot = None;
    options.upstream = Upstream::Pulp {
        api_port: pulp.options.api_port,
        content_port: pulp.options.content_port,
        api_ca: pulp.tls.ca_cert.clone(),
    };
    let mut stack = Stack::start_with(options);
    let dir = stack.scenario.subdir("sync-job");
    let password_file = dir.join("pulp-password");
    pulp.write_admin_password(&password_file);
    let sync = |extra: &[&str]| -> SyncRun {
        let t = Instant::now();
        let output = Command::new(registry_gate_tests::paths::sidecar())
            .arg("sync")
            .args(["--from-pulp", &pulp.api_url("")])
            .args(["--pulp-username", "admin"])
            .arg("--pulp-password-file")
            .arg(&password_file)
            .arg("--pulp-ca-file")
            .arg(&pulp.tls.ca_cert)
            .args(["--sidecar-url", &stack.sidecar.url()])
            .arg("--sync-secret-file")
            .arg(&stack.sidecar.files.sync_secret_file)
            .args(extra)
            .output()
            .unwrap();
        let run = SyncRun::from_output(&output);
        eprintln!(
            "[capsule] sync {extra:?} in {:.1?}: {}",
            t.elapsed(),
            run.stdout.trim_end()
        );
        run
    };

    // Pulp: the pushed distributions made private (but library/public), one more made through
    // the REST API, two users and their roles.
    let distribution = |base_path: &str| -> serde_json::Value {
        let list = pulp.admin_get(&format!(
            "/pulp/api/v3/distributions/container/container/?base_path={base_path}"
        ));
        list.json()["results"][0].clone()
    };
    for name in [PRIVATE, OTHER] {
        let href = distribution(name)["pulp_href"].as_str().unwrap().to_owned();
        pulp.admin_change("PATCH", &href, Some(&json!({"private": true})));
    }
    pulp.admin_change(
        "POST",
        "/pulp/api/v3/distributions/container/container/",
        Some(&json!({"name": "made", "base_path": MADE, "private": true})),
    );
    let private = distribution(PRIVATE);
    assert_eq!(private["private"], true, "{private}");
    let role = |user: &str, role: &str, object: &str| -> String {
        let created = pulp.admin_change(
            "POST",
            "/pulp/api/v3/users/",
            Some(&json!({"username": user, "password": random_hex(12)})),
        );
        let user_href = created["pulp_href"].as_str().unwrap().to_owned();
        let assigned = pulp.admin_change(
            "POST",
            &format!("{user_href}roles/"),
            Some(&json!({"role": role, "content_object": object})),
        );
        assigned["pulp_href"].as_str().unwrap().to_owned()
    };
    let dave_role = role(
        DAVE,
        "container.containerdistribution_consumer",
        private["pulp_href"].as_str().unwrap(),
    );
    role(
        ERIN,
        "container.containernamespace_consumer",
        private["namespace"].as_str().unwrap(),
    );

    // The first run publishes on nothing.
    let first = sync(&[]);
    assert_eq!(first.code, Some(0), "{first:?}");
    assert_eq!(first.field("outcome"), "published", "{first:?}");
    assert_eq!(first.field("repositories"), "4", "{first:?}");
    stack.envoy.wait_for_generation(
        first.generation(),
        registry_gate_tests::stack::INSTALL_TIMEOUT,
    );
    let published = stack.sidecar.get_snapshot().unwrap().json();
    let content = &published["content"];
    assert_eq!(
        content["repositories"],
        json!([
            {"name": PUBLIC, "auth_required": false},
            {"name": MADE, "auth_required": true},
            {"name": OTHER, "auth_required": true},
            {"name": PRIVATE, "auth_required": true},
        ]),
        "{published}"
    );
    assert_eq!(content["users"][DAVE], json!([PRIVATE]), "{published}");
    assert_eq!(
        content["users"][ERIN],
        json!([MADE, OTHER, PRIVATE]),
        "{published}"
    );
    // Enforced through Envoy: private for the granted only, public for everyone.
    let rows: [(Option<&str>, &str, u16); 7] = [
        (Some(DAVE), PRIVATE, 200),
        (Some(DAVE), OTHER, 404),
        (Some(ERIN), OTHER, 200),
        (Some(ERIN), PRIVATE, 200),
        (None, PRIVATE, 401),
        (None, PUBLIC, 200),
        (Some(DAVE), PUBLIC, 200),
    ];
    // Every Envoy worker installs the generation on its own: poll until all of them do.
    registry_gate_tests::wait::wait_until(
        "the published grants in every Envoy worker",
        ENFORCE_DEADLINE,
        || {
            let wrong: Vec<String> = rows
                .iter()
                .map(|(user, repository, want)| {
                    (
                        user,
                        repository,
                        want,
                        pull_status(&stack, *user, repository),
                    )
                })
                .filter(|(_, _, want, got)| *want != got)
                .map(|(user, repository, want, got)| {
                    format!("{user:?} {repository}: {got}, not {want}")
                })
                .collect();
            if wrong.is_empty() {
                Ok(())
            } else {
                Err(wrong.join("; "))
            }
        },
    );
    // (Blobs are not pulled here: Pulp's CONTENT_ORIGIN is the first gateway's listener.)

    let dave_token = stack.token(
        Some(DAVE),
        &[&format!("repository:{PRIVATE}:pull")],
        HttpVersion::Http1,
    );
    // Nothing changed in Pulp: nothing published.
    let again = sync(&[]);
    assert_eq!(again.code, Some(0), "{again:?}");
    assert_eq!(again.field("outcome"), "unchanged", "{again:?}");
    assert_eq!(again.generation(), first.generation(), "{again:?}");

    // dave's role removed in Pulp: a dry run shows it and publishes nothing; the run enforces it.
    pulp.admin_change("DELETE", &dave_role, None);
    let dry = sync(&["--dry-run"]);
    assert_eq!(dry.code, Some(0), "{dry:?}");
    assert_eq!(
        dry.stdout.lines().next(),
        Some(format!("- grant user {DAVE} {PRIVATE}").as_str()),
        "{dry:?}"
    );
    assert_eq!(dry.field("outcome"), "dry-run", "{dry:?}");
    assert_eq!(
        dry.generation(),
        first.generation(),
        "dry run published nothing"
    );
    let revoked = sync(&[]);
    assert_eq!(revoked.code, Some(0), "{revoked:?}");
    assert_eq!(revoked.field("outcome"), "published", "{revoked:?}");
    assert!(revoked.generation() > first.generation(), "{revoked:?}");
    stack.envoy.wait_for_generation(
        revoked.generation(),
        registry_gate_tests::stack::INSTALL_TIMEOUT,
    );
    // The token he got while granted still names team/private: the gate refuses it now, as
    // an unknown name; a new login gets a token without it (401 or, if the token endpoint
    // minted it before it read the new generation, 404).
    let old_token = registry_gate_tests::wait::wait_until(
        "dave's revocation in every Envoy worker",
        ENFORCE_DEADLINE,
        || {
            let resp = expect::get_manifest(
                &stack,
                PRIVATE,
                "latest",
                HttpVersion::Http1,
                Auth::Bearer(&dave_token),
            );
            match resp.status {
                200 => Err(resp.summary()),
                _ => Ok(resp),
            }
        },
    );
    expect::assert_registry_error(&old_token, 404, "NAME_UNKNOWN", "dave's earlier token");
    let fresh = pull_status(&stack, Some(DAVE), PRIVATE);
    assert!(
        matches!(fresh, 401 | 404),
        "dave after his role went: {fresh}"
    );
    assert_eq!(
        pull_status(&stack, Some(ERIN), PRIVATE),
        200,
        "erin keeps hers"
    );

    // The source loses a repository: refused under a tight threshold (nothing published), then
    // forced.
    let made = distribution(MADE)["pulp_href"].as_str().unwrap().to_owned();
    pulp.admin_change("DELETE", &made, None);
    let refused = sync(&["--max-shrink-percent", "20"]);
    assert_eq!(refused.code, Some(3), "{refused:?}");
    assert_eq!(refused.field("outcome"), "refused", "{refused:?}");
    assert!(
        refused.stderr.contains("1 of the 4 published repositories"),
        "{refused:?}"
    );
    assert_eq!(
        refused.generation(),
        revoked.generation(),
        "nothing published"
    );
    let forced = sync(&["--max-shrink-percent", "20", "--force"]);
    assert_eq!(forced.code, Some(0), "{forced:?}");
    assert_eq!(forced.field("repositories"), "3", "{forced:?}");
    assert!(forced.generation() > revoked.generation(), "{forced:?}");
}
