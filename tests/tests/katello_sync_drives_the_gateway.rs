//! Katello's sync calls, made with rest-client 2.1.0 exactly as Katello makes them, drive what
//! Envoy lets through: through the smart-proxy plugin (under the smart-proxy stand-in) to the
//! sidecar, and straight to the sidecar over TLS with Foreman's client certificate. Every
//! endpoint is sent, with the edge cases (a user with no repositories, `@` in logins, names
//! with slashes, booleans as strings, an empty list), and every answer is checked by pulling.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use registry_gate_tests::http::{Auth, HttpVersion};
use registry_gate_tests::katello_sync::KatelloSync;
use registry_gate_tests::sidecar::{Sidecar, SidecarExtra};
use registry_gate_tests::smart_proxy::{SmartProxy, SmartProxyOptions};
use registry_gate_tests::stack::{Stack, StackOptions, INSTALL_TIMEOUT};
use registry_gate_tests::tls;
use serde_json::{json, Value};

const FOREMAN: &str = "foreman.example.com";
const ROGUE: &str = "rogue.example.com";
const BUSYBOX: &str = "acme_corp/containers/busybox";
const NGINX: &str = "acme_corp/dev/web_cv/containers/nginx";
const FEDORA: &str = "acme_corp/containers/fedora";
const JDOE: &str = "jdoe@example.com";
const HOST: &str = "6f1e0a8c-3b7d-4f2a-9c55-0d2e8b1a7f34";

fn repo(name: &str, auth_required: Value) -> Value {
    json!({ "repository": name, "auth_required": auth_required })
}

/// The sidecar's current generation, and Envoy waits until it serves it.
fn installed(stack: &mut Stack) -> u64 {
    let reply = stack.sidecar.get_snapshot().unwrap();
    assert_eq!(reply.status, 200, "{}", reply.summary());
    let generation = reply.json()["generation"].as_u64().unwrap();
    stack.envoy.wait_for_generation(generation, INSTALL_TIMEOUT);
    generation
}

/// The status of `GET /v2/<repository>/manifests/latest` for `user` (`None`: anonymous).
fn manifest_status(stack: &Stack, user: Option<&str>, repository: &str) -> u16 {
    let scope = format!("repository:{repository}:pull");
    let token = stack.token(user, &[&scope], HttpVersion::Http1);
    let resp = stack
        .request(
            "GET",
            &format!("/v2/{repository}/manifests/latest"),
            HttpVersion::Http1,
        )
        .header(
            "Accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
        )
        .auth(Auth::Bearer(&token))
        .send_ok();
    resp.status
}

/// Waits until `user` gets `expected` for `repository`: Envoy's workers each install a new
/// generation on their own, so the first requests after a publish may meet a worker that is
/// a generation behind.
fn converges(stack: &Stack, user: Option<&str>, repository: &str, expected: u16) {
    registry_gate_tests::wait::wait_until(
        &format!("{user:?} to get {expected} for {repository}"),
        INSTALL_TIMEOUT,
        || match manifest_status(stack, user, repository) {
            status if status == expected => Ok(()),
            status => Err(format!("got {status}")),
        },
    );
}

fn assert_ok(answer: &registry_gate_tests::katello_sync::SyncAnswer, what: &str) {
    assert_eq!(answer.status, 200, "{what}: {answer:?}");
}

#[test]
fn katello_sync_drives_the_gateway() {
    let mut options = StackOptions::new("katello_sync_drives_the_gateway");
    options.images = [BUSYBOX, NGINX, FEDORA]
        .iter()
        .map(|name| ((*name).to_owned(), "latest".to_owned()))
        .collect();
    options.users = vec![JDOE.to_owned(), "admin".to_owned(), "nobody".to_owned()];
    options.snapshot = None;
    let mut stack = Stack::start_with(options);
    let (proxy_tls, clients) =
        tls::generate_with_clients(&stack.scenario.subdir("proxy-tls"), &[FOREMAN, ROGUE]);
    let proxy = SmartProxy::start(
        &stack.scenario,
        "smart-proxy",
        &proxy_tls,
        &SmartProxyOptions {
            trusted_hosts: Some(vec![FOREMAN.to_owned()]),
            sidecar_url: stack.sidecar.url(),
            sync_secret_file: stack.sidecar.files.sync_secret_file.clone(),
            sidecar_read_timeout: None,
        },
    );
    let katello = KatelloSync::start(
        &stack.scenario,
        "katello-via-proxy",
        &proxy.url(),
        &proxy_tls.ca_cert,
        Some(&clients[0]),
    );

    // Katello's sync, in Katello's order.
    let answer = katello.call(
        "repository_list",
        json!({"repositories": [
            repo(BUSYBOX, json!(true)),
            repo(NGINX, json!(false)),
            repo(FEDORA, json!(true)),
        ]}),
    );
    assert_ok(&answer, "repository_list");
    assert!(answer.body.is_empty(), "{answer:?}");
    let first = installed(&mut stack);
    let users = katello.call("users", Value::Null);
    assert_ok(&users, "users");
    assert_eq!(
        serde_json::from_str::<Value>(&users.body).unwrap(),
        json!({"users": []})
    );
    assert_ok(
        &katello.call(
            "user_repository_mapping",
            json!({"users": [
                {"admin": [repo(BUSYBOX, json!(true))]},
                {(JDOE): [repo(BUSYBOX, json!("true")), repo(NGINX, json!("false"))]},
                {"nobody": []},
            ]}),
        ),
        "user_repository_mapping",
    );
    assert_ok(
        &katello.call("update_hosts", json!({"hosts": [{"uuid": HOST}]})),
        "update_hosts",
    );
    assert_ok(
        &katello.call(
            "host_repository_mapping",
            json!({"hosts": [{(HOST): [repo(FEDORA, json!(true))]}]}),
        ),
        "host_repository_mapping",
    );
    assert_ok(
        &katello.call(
            "update_host_repositories",
            json!({"hosts": [{(HOST): [repo(FEDORA, json!(true)), repo(BUSYBOX, json!(true))]}]}),
        ),
        "update_host_repositories",
    );
    let after_sync = installed(&mut stack);
    assert_eq!(
        after_sync,
        first + 4,
        "one publish per call that changed something"
    );
    let users = katello.call("users", Value::Null);
    assert_eq!(
        serde_json::from_str::<Value>(&users.body).unwrap(),
        json!({"users": ["admin", JDOE, "nobody"]})
    );
    let snapshot = stack.sidecar.get_snapshot().unwrap().json();
    assert_eq!(
        snapshot["content"]["hosts"][HOST],
        json!([BUSYBOX, FEDORA]),
        "{snapshot}"
    );

    // What the sync granted is what Envoy lets through.
    converges(&stack, Some(JDOE), BUSYBOX, 200);
    assert_eq!(manifest_status(&stack, Some("admin"), BUSYBOX), 200);
    assert_eq!(manifest_status(&stack, Some("nobody"), BUSYBOX), 404);
    assert_eq!(manifest_status(&stack, Some(JDOE), FEDORA), 404);
    assert_eq!(manifest_status(&stack, None, NGINX), 200);
    assert_eq!(manifest_status(&stack, None, BUSYBOX), 401);
    let password = stack.password(JDOE).to_owned();
    let (run, _) = stack.skopeo_pull(&format!("{BUSYBOX}:latest"), Auth::Basic(JDOE, &password));
    run.assert_success();

    // The same sync again publishes nothing.
    assert_ok(
        &katello.call(
            "update_hosts",
            json!({"hosts": [{"uuid": HOST}, {"uuid": ""}]}),
        ),
        "update_hosts again",
    );
    assert_eq!(installed(&mut stack), after_sync);

    // A new repository list keeps the grants of what remains, with no mapping call after it.
    assert_ok(
        &katello.call(
            "repository_list",
            json!({"repositories": [repo(BUSYBOX, json!("true")), repo(FEDORA, json!("TRUE"))]}),
        ),
        "repository_list without nginx",
    );
    installed(&mut stack);
    // nginx is gone: no longer public, so an anonymous caller is challenged to log in.
    converges(&stack, None, NGINX, 401);
    assert_eq!(manifest_status(&stack, Some(JDOE), BUSYBOX), 200);
    assert_eq!(manifest_status(&stack, Some(JDOE), NGINX), 404);

    // Straight to the sidecar over TLS, as a site without smart-proxy runs it: Foreman's
    // certificate is allowed, another certificate from the same CA is not, nothing else is.
    let tls_dir = stack.scenario.subdir("sidecar-tls");
    let (sidecar_tls, _) = tls::generate_with_clients(&tls_dir, &[]);
    let port = registry_gate_tests::ports::free_port();
    let direct = Sidecar::start_with(
        stack.dir(),
        "sidecar-tls",
        port,
        &stack.redis.url(),
        stack.sidecar.files.clone(),
        &SidecarExtra {
            binary: None,
            key_algorithm: None,
            args: vec![
                "--tls-cert-file".into(),
                sidecar_tls.server_cert.display().to_string(),
                "--tls-key-file".into(),
                sidecar_tls.server_key.display().to_string(),
                "--sync-client-ca-file".into(),
                proxy_tls.ca_cert.display().to_string(),
                "--sync-client-subjects".into(),
                format!("{}, other.example.com", FOREMAN.to_uppercase()),
            ],
            https: Some(sidecar_tls.ca_cert.clone()),
        },
    );
    let url = format!("https://127.0.0.1:{}", direct.port);
    let foreman = KatelloSync::start(
        &stack.scenario,
        "katello-direct",
        &url,
        &sidecar_tls.ca_cert,
        Some(&clients[0]),
    );
    let rogue = KatelloSync::start(
        &stack.scenario,
        "rogue-direct",
        &url,
        &sidecar_tls.ca_cert,
        Some(&clients[1]),
    );
    let anonymous = KatelloSync::start(
        &stack.scenario,
        "anonymous-direct",
        &url,
        &sidecar_tls.ca_cert,
        None,
    );
    let before = installed(&mut stack);
    let wipe = json!({"repositories": []});
    let refused = rogue.call("repository_list", wipe.clone());
    assert_eq!(refused.status, 403, "{refused:?}");
    assert!(refused.body.contains(ROGUE), "{refused:?}");
    let refused = anonymous.call("repository_list", wipe.clone());
    assert_eq!(refused.status, 401, "{refused:?}");
    assert_eq!(installed(&mut stack), before, "a refused call wrote");
    let users = foreman.call("users", Value::Null);
    assert_eq!(
        serde_json::from_str::<Value>(&users.body).unwrap(),
        json!({"users": ["admin", JDOE, "nobody"]})
    );
    // The empty list (rest-client's bare key `repositories`) is published: nothing is served.
    assert_ok(
        &foreman.call("repository_list", wipe),
        "empty repository_list",
    );
    // Published by the TLS instance; the first one learns of it at its next Redis poll.
    registry_gate_tests::wait::wait_until(
        "the first sidecar to see the TLS instance's publish",
        INSTALL_TIMEOUT,
        || match stack.sidecar.get_snapshot()?.json()["generation"].as_u64() {
            Some(generation) if generation == before + 1 => Ok(()),
            other => Err(format!("generation {other:?}")),
        },
    );
    assert_eq!(installed(&mut stack), before + 1);
    converges(&stack, Some(JDOE), BUSYBOX, 404);
}
