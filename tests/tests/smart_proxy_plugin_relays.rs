//! registry-gate's smart-proxy plugin, called the way Katello calls the container gateway
//! (rest-client 2.1.0, Foreman's client certificate), relays every sync call to the sidecar
//! byte for byte, with the sync secret; refuses what smart-proxy refuses without relaying it;
//! and tells Katello when the sidecar fails or is away.
//!
//! The "sidecar" here is a capturing server, so the test needs no sidecar endpoint: it asserts
//! the exact bytes the plugin sends (the bodies of katello-wire.md §1.3, edge cases included).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;

use registry_gate_tests::capture::{CaptureServer, CapturedRequest, Reply};
use registry_gate_tests::katello_sync::{KatelloSync, SyncAnswer};
use registry_gate_tests::sidecar::random_hex;
use registry_gate_tests::smart_proxy::{SmartProxy, SmartProxyOptions};
use registry_gate_tests::tls::{self, ClientCert, Tls};
use registry_gate_tests::Scenario;
use serde_json::{json, Value};

const FOREMAN: &str = "foreman.example.com";
const ROGUE: &str = "rogue.example.com";
const USERS: &str = r#"{"users":["admin","jdoe@example.com"]}"#;
const FORM: &str = "application/x-www-form-urlencoded";
const HOST: &str = "6f1e0a8c-3b7d-4f2a-9c55-0d2e8b1a7f34";

/// One sync call and the exact body rest-client must put on the wire for it.
struct Row {
    name: &'static str,
    call: &'static str,
    payload: Value,
    body: String,
    /// Katello always sends the trailing slash; `false` checks the route without it.
    trailing_slash: bool,
}

fn repo(name: &str, auth_required: bool) -> Value {
    json!({ "repository": name, "auth_required": auth_required })
}

fn rows() -> Vec<Row> {
    let busybox = "acme_corp/containers/busybox";
    let nginx = "acme_corp/dev/web_cv/containers/nginx";
    let fedora = "acme_corp/containers/fedora";
    // More params than Rack 2.2.22 parses (4096): only an unparsed relay gets it through.
    let many: Vec<String> = (0..2100)
        .map(|i| format!("acme_corp/containers/r{i}"))
        .collect();
    let many_body = many
        .iter()
        .map(|name| {
            let escaped = name.replace('/', "%2F");
            format!("repositories[][repository]={escaped}&repositories[][auth_required]=true")
        })
        .collect::<Vec<_>>()
        .join("&");
    let host_mapping = json!({ "hosts": [{ HOST: [repo(busybox, true), repo(fedora, true)] }] });
    let host_body = format!(
        "hosts[][{HOST}][][repository]=acme_corp%2Fcontainers%2Fbusybox&hosts[][{HOST}][][auth_required]=true&hosts[][{HOST}][][repository]=acme_corp%2Fcontainers%2Ffedora&hosts[][{HOST}][][auth_required]=true"
    );
    vec![
        Row {
            name: "repository_list, one repo needing auth and one not (§1.3)",
            call: "repository_list",
            payload: json!({ "repositories": [repo(busybox, true), repo(nginx, false)] }),
            body: "repositories[][repository]=acme_corp%2Fcontainers%2Fbusybox&repositories[][auth_required]=true&repositories[][repository]=acme_corp%2Fdev%2Fweb_cv%2Fcontainers%2Fnginx&repositories[][auth_required]=false".to_owned(),
            trailing_slash: true,
        },
        Row {
            name: "repository_list, empty: a bare key",
            call: "repository_list",
            payload: json!({ "repositories": [] }),
            body: "repositories".to_owned(),
            trailing_slash: true,
        },
        Row {
            name: "repository_list beyond Rack's params limit (4200 params)",
            call: "repository_list",
            payload: json!({ "repositories": many.iter().map(|name| repo(name, true)).collect::<Vec<_>>() }),
            body: many_body,
            trailing_slash: true,
        },
        Row {
            name: "user_repository_mapping, %40 in a login (§1.3)",
            call: "user_repository_mapping",
            payload: json!({ "users": [
                { "admin": [repo(busybox, true)] },
                { "jdoe@example.com": [repo(busybox, true), repo(nginx, false)] },
            ] }),
            body: "users[][admin][][repository]=acme_corp%2Fcontainers%2Fbusybox&users[][admin][][auth_required]=true&users[][jdoe%40example.com][][repository]=acme_corp%2Fcontainers%2Fbusybox&users[][jdoe%40example.com][][auth_required]=true&users[][jdoe%40example.com][][repository]=acme_corp%2Fdev%2Fweb_cv%2Fcontainers%2Fnginx&users[][jdoe%40example.com][][auth_required]=false".to_owned(),
            trailing_slash: true,
        },
        Row {
            name: "user_repository_mapping, a user with no repos: a bare key",
            call: "user_repository_mapping",
            payload: json!({ "users": [{ "admin": [] }] }),
            body: "users[][admin]".to_owned(),
            trailing_slash: true,
        },
        Row {
            name: "update_hosts",
            call: "update_hosts",
            payload: json!({ "hosts": [{ "uuid": "u1" }, { "uuid": "u2" }] }),
            body: "hosts[][uuid]=u1&hosts[][uuid]=u2".to_owned(),
            trailing_slash: true,
        },
        Row {
            name: "update_hosts without the trailing slash",
            call: "update_hosts",
            payload: json!({ "hosts": [{ "uuid": "u1" }] }),
            body: "hosts[][uuid]=u1".to_owned(),
            trailing_slash: false,
        },
        Row {
            name: "host_repository_mapping (§1.3)",
            call: "host_repository_mapping",
            payload: host_mapping.clone(),
            body: host_body.clone(),
            trailing_slash: true,
        },
        Row {
            name: "host_repository_mapping, a host with no repos: a bare key",
            call: "host_repository_mapping",
            payload: json!({ "hosts": [{ "uuid-1": [] }] }),
            body: "hosts[][uuid-1]".to_owned(),
            trailing_slash: true,
        },
        Row {
            name: "update_host_repositories (the host mapping's shape)",
            call: "update_host_repositories",
            payload: host_mapping,
            body: host_body,
            trailing_slash: true,
        },
    ]
}

/// The certificates, the sync secret and a capturing "sidecar" answering like the real one.
struct Setup {
    scenario: Scenario,
    tls: Tls,
    foreman: ClientCert,
    rogue: ClientCert,
    secret: String,
    secret_file: PathBuf,
    sidecar: CaptureServer,
}

fn setup(name: &str) -> Setup {
    let scenario = Scenario::new(name);
    let (tls, clients) = tls::generate_with_clients(scenario.path(), &[FOREMAN, ROGUE]);
    let [foreman, rogue]: [ClientCert; 2] = clients.try_into().unwrap();
    let secret = random_hex(32);
    let secret_file = scenario.file("sync-secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let sidecar = CaptureServer::start(|request| {
        if request.method == "GET" {
            Reply::json(200, USERS)
        } else {
            Reply::empty(200)
        }
    });
    Setup {
        scenario,
        tls,
        foreman,
        rogue,
        secret,
        secret_file,
        sidecar,
    }
}

impl Setup {
    fn smart_proxy(
        &self,
        name: &str,
        trusted_hosts: Option<&[&str]>,
        sidecar_url: &str,
    ) -> SmartProxy {
        self.smart_proxy_with(name, trusted_hosts, sidecar_url, None)
    }

    fn smart_proxy_with(
        &self,
        name: &str,
        trusted_hosts: Option<&[&str]>,
        sidecar_url: &str,
        sidecar_read_timeout: Option<u32>,
    ) -> SmartProxy {
        let options = SmartProxyOptions {
            trusted_hosts: trusted_hosts
                .map(|hosts| hosts.iter().map(|h| (*h).to_owned()).collect()),
            sidecar_url: sidecar_url.to_owned(),
            sync_secret_file: self.secret_file.clone(),
            sidecar_read_timeout,
        };
        SmartProxy::start(&self.scenario, name, &self.tls, &options)
    }

    fn katello(&self, name: &str, proxy: &SmartProxy, client: Option<&ClientCert>) -> KatelloSync {
        KatelloSync::start(
            &self.scenario,
            name,
            &proxy.url(),
            &self.tls.ca_cert,
            client,
        )
    }

    fn assert_relayed(&self, request: &CapturedRequest, method: &str, call: &str, what: &str) {
        assert_eq!(request.method, method, "{what}: method");
        assert_eq!(
            request.target,
            format!("/container_gateway/{call}"),
            "{what}: path"
        );
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {}", self.secret).as_str()),
            "{what}: the sync secret"
        );
        let request_id = request.header("x-request-id").unwrap_or_default();
        assert_eq!(
            request_id.len(),
            36,
            "{what}: Katello's X-Request-Id, got {request_id:?}"
        );
    }
}

fn assert_status(answer: &SyncAnswer, status: u16, what: &str) {
    assert_eq!(answer.status, status, "{what}: Katello got {answer:?}");
}

#[test]
fn every_sync_call_reaches_the_sidecar_byte_for_byte() {
    let s = setup("smart_proxy_plugin_relays");
    let proxy = s.smart_proxy("smart-proxy", Some(&[FOREMAN]), &s.sidecar.url());
    let katello = s.katello("katello", &proxy, Some(&s.foreman));

    for row in rows() {
        let answer = katello.request(json!({
            "call": row.call,
            "payload": row.payload,
            "trailing_slash": row.trailing_slash,
        }));
        assert_status(&answer, 200, row.name);
        assert_eq!(
            answer.body, "",
            "{}: a PUT answers with an empty body",
            row.name
        );

        let relayed = s.sidecar.take();
        assert_eq!(relayed.len(), 1, "{}: relayed {relayed:?}", row.name);
        let request = &relayed[0];
        s.assert_relayed(request, "PUT", row.call, row.name);
        assert_eq!(
            request.header("content-type"),
            Some(FORM),
            "{}: Content-Type",
            row.name
        );
        assert_eq!(
            request.body_text(),
            row.body,
            "{}: the body rest-client sent, byte for byte",
            row.name
        );
        assert_eq!(
            request.header("content-length"),
            Some(row.body.len().to_string().as_str()),
            "{}: Content-Length",
            row.name
        );
    }

    for (what, slash) in [("GET users", false), ("GET users/", true)] {
        let answer = katello.request(json!({ "call": "users", "trailing_slash": slash }));
        assert_status(&answer, 200, what);
        assert_eq!(answer.body, USERS, "{what}: the sidecar's user list");
        assert!(
            answer
                .content_type
                .as_deref()
                .unwrap_or_default()
                .starts_with("application/json"),
            "{what}: {answer:?}"
        );
        let relayed = s.sidecar.take();
        assert_eq!(relayed.len(), 1, "{what}: relayed {relayed:?}");
        s.assert_relayed(&relayed[0], "GET", "users", what);
        assert!(relayed[0].body.is_empty(), "{what}: no body");
    }
}

#[test]
fn untrusted_or_certificateless_callers_are_refused_and_nothing_is_relayed() {
    let s = setup("smart_proxy_plugin_refuses");
    let proxy = s.smart_proxy("smart-proxy", Some(&[FOREMAN]), &s.sidecar.url());
    let rogue = s.katello("katello-rogue", &proxy, Some(&s.rogue));
    let anonymous = s.katello("katello-no-cert", &proxy, None);
    let payload = json!({ "repositories": [repo("acme_corp/containers/busybox", true)] });

    for (who, katello, message) in [
        (
            "a certificate whose CN is not trusted",
            &rogue,
            "Untrusted client rogue.example.com",
        ),
        // :trusted_hosts is set, so smart-proxy reads the CN first and finds no certificate.
        (
            "no client certificate",
            &anonymous,
            "could not read client cert from environment",
        ),
    ] {
        for answer in [
            katello.call("repository_list", payload.clone()),
            katello.call("users", Value::Null),
        ] {
            assert_status(&answer, 403, who);
            assert!(answer.body.contains(message), "{who}: {answer:?}");
        }
    }
    assert_eq!(
        s.sidecar.take(),
        Vec::new(),
        "nothing may be relayed for a refused caller"
    );

    // The same smart proxy still relays Foreman's call.
    let katello = s.katello("katello", &proxy, Some(&s.foreman));
    assert_status(&katello.call("repository_list", payload), 200, "Foreman");
    assert_eq!(s.sidecar.take().len(), 1);
}

#[test]
fn sidecar_errors_and_outages_reach_katello() {
    let s = setup("smart_proxy_plugin_sidecar_errors");
    let payload = json!({ "repositories": [repo("acme_corp/containers/busybox", true)] });

    // The sidecar refuses the body: Katello sees its status and message.
    let refusal = r#"{"error":"repositories[0]: auth_required must be true or false"}"#;
    s.sidecar.set_reply(move |_| Reply::json(400, refusal));
    let proxy = s.smart_proxy("smart-proxy", Some(&[FOREMAN]), &s.sidecar.url());
    let katello = s.katello("katello", &proxy, Some(&s.foreman));
    let answer = katello.call("repository_list", payload.clone());
    assert_status(&answer, 400, "sidecar answers 400");
    assert_eq!(answer.body, refusal);
    assert_eq!(s.sidecar.take().len(), 1);

    // Nothing listens at the sidecar's address: 502 with a message, logged. With
    // :trusted_hosts unset any certificate from the CA is accepted (so the rogue one reaches
    // the relay), and a caller without one gets smart-proxy's "No client SSL certificate".
    let nobody = format!(
        "http://127.0.0.1:{}",
        registry_gate_tests::ports::free_port()
    );
    let mut down = s.smart_proxy("smart-proxy-sidecar-down", None, &nobody);
    for (who, client) in [
        ("Foreman", &s.foreman),
        ("any verified certificate", &s.rogue),
    ] {
        let katello = s.katello(&format!("katello-{}", client.cn), &down, Some(client));
        let answer = katello.call("repository_list", payload.clone());
        assert_status(&answer, 502, who);
        assert!(answer.body.contains("unreachable"), "{who}: {answer:?}");
        serde_json::from_str::<Value>(&answer.body).expect("a JSON error");
    }
    let anonymous = s.katello("katello-no-cert", &down, None);
    let answer = anonymous.call("users", Value::Null);
    assert_status(&answer, 403, "no client certificate");
    assert!(
        answer.body.contains("No client SSL certificate supplied"),
        "{answer:?}"
    );
    down.process.assert_running();
    assert!(
        down.process.log().contains("unreachable"),
        "the smart proxy's log says why:\n{}",
        down.process.tail(20)
    );

    // The sidecar accepts the connection and never answers: 504 after the read timeout.
    let silent = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let silent_url = format!("http://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let slow = s.smart_proxy_with(
        "smart-proxy-sidecar-silent",
        Some(&[FOREMAN]),
        &silent_url,
        Some(1),
    );
    let katello = s.katello("katello-slow", &slow, Some(&s.foreman));
    let answer = katello.call("repository_list", payload);
    assert_status(&answer, 504, "sidecar silent");
    assert!(answer.body.contains("timed out"), "{answer:?}");
}
