//! Content hosts by client certificate (the old gateway's RHSM host access): the listener asks
//! for a client certificate without requiring one and verifies it against the scenario CA; the
//! filter (`client_certificate_from_connection`) takes the host UUID from the verified
//! certificate's CN and decides with the host's snapshot grants plus public repositories.
//!
//! A granted host pulls a private repository with skopeo (containers/image reads
//! `<cert-dir>/*.cert` + `*.key` beside the CA `*.crt`); an ungranted host gets the
//! certificate path's 401 `unauthorized` but still reads public repositories; a certificate
//! from another CA fails the handshake; and the upstream (an echo server behind a second
//! Envoy) sees `host:<uuid>` as the identity, never a client-sent `ssl-client-s-dn`, and a
//! token still beats the certificate. Then a capsule's layout (a third Envoy, configured with
//! `trust_client_certificate_header`): the subject DN comes from the trusted front proxy's
//! `ssl-client-s-dn` (RFC 2253 or legacy form), a malformed one is no certificate, the header
//! never reaches the upstream, and the connection's own certificate is not read.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use registry_gate_tests::envoy::{Envoy, EnvoyParams, Launch};
use registry_gate_tests::http::Request;
use registry_gate_tests::stack::{default_snapshot, StackOptions, INSTALL_TIMEOUT};
use registry_gate_tests::tls::ClientCert;
use registry_gate_tests::{echo, ports, Auth, HttpVersion, Stack};

const GRANTED: &str = "6a1c1e52-3f0b-4a8e-9d41-8f5f0c2b7e10";
const UNGRANTED: &str = "b2d4f6a8-0c1e-4d3f-8a5b-7c9e1f2a4b6d";

#[test]
fn content_hosts_pull_with_their_verified_certificate() {
    let mut snapshot = default_snapshot();
    snapshot["hosts"] = serde_json::json!({ GRANTED: ["team/private"] });
    let mut options = StackOptions::new("content_host_certificate");
    options.snapshot = Some(snapshot);
    options.client_cns = vec![GRANTED.to_owned(), UNGRANTED.to_owned()];
    let mut stack = Stack::start_with(options);
    let granted = stack.client(GRANTED).clone();
    let ungranted = stack.client(UNGRANTED).clone();

    // A granted host pulls a private repository with its certificate alone.
    let granted_dir = stack.host_cert_dir(GRANTED);
    stack
        .skopeo_pull_as_host("team/private:latest", &granted_dir)
        .assert_success();

    // An ungranted host is refused on the certificate path.
    let ungranted_dir = stack.host_cert_dir(UNGRANTED);
    stack
        .skopeo_pull_as_host("team/private:latest", &ungranted_dir)
        .assert_failure();
    let base = stack.base_url();
    let ca = stack.ca_cert().to_path_buf();
    let manifest = |name: &str, cert: &ClientCert| {
        Request::get(format!("{base}/v2/{name}/manifests/latest"))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .cacert(&ca)
            .client_cert(&cert.cert, &cert.key)
    };
    let refused = manifest("team/private", &ungranted).send_ok();
    assert_eq!(refused.status, 401, "{}", refused.summary());
    let body = refused.json();
    assert_eq!(
        body["errors"][0]["code"],
        "UNAUTHORIZED",
        "{}",
        refused.summary()
    );
    assert_eq!(
        body["errors"][0]["message"],
        "unauthorized",
        "{}",
        refused.summary()
    );
    assert!(
        refused
            .header("www-authenticate")
            .is_some_and(|h| h.contains("scope=\"repository:team/private:pull\"")),
        "{}",
        refused.summary()
    );
    // ... but reads public repositories, as anyone does.
    let public = manifest("library/public", &ungranted).send_ok();
    assert_eq!(public.status, 200, "{}", public.summary());

    // A certificate from another CA never completes the handshake.
    let other = registry_gate_tests::tls::generate_with_clients(
        &stack.scenario.subdir("other-ca"),
        &[GRANTED],
    )
    .1;
    // (With TLS 1.3 the client may see the server's alert or only a closed connection, so
    // the listener's own count of failed verifications says why.)
    let failed_verify = format!(
        "listener.127.0.0.1_{}.ssl.fail_verify_error",
        stack.envoy.params.listen_port
    );
    let failed_before = stack.envoy.stat(&failed_verify);
    let forged = manifest("team/private", &other[0]).send();
    assert!(
        forged.is_err(),
        "another CA's certificate was accepted: {forged:?}"
    );
    assert_eq!(
        stack.envoy.stat(&failed_verify),
        failed_before + 1,
        "the refusal was not the certificate's verification"
    );

    // What the upstream sees.
    let echo_port = echo::start();
    let params = EnvoyParams {
        listen_port: ports::free_port(),
        admin_port: ports::free_port(),
        registry_port: echo_port,
        ..stack.envoy.params.clone()
    };
    let mut envoy = Envoy::start(
        &stack.scenario.subdir("envoy-echo"),
        &registry_gate_tests::paths::local_envoy_template(),
        params,
    );
    envoy.wait_for_generation(stack.generation(), INSTALL_TIMEOUT);
    let echo_base = format!("https://127.0.0.1:{}", envoy.params.listen_port);
    for version in HttpVersion::ALL {
        let request = || {
            Request::get(format!("{echo_base}/v2/team/private/manifests/latest"))
                .version(version)
                .cacert(stack.ca_cert())
                .client_cert(&granted.cert, &granted.key)
                // A client-sent subject header is neither trusted nor forwarded.
                .header("ssl-client-s-dn", &format!("CN={UNGRANTED}"))
        };
        let resp = request().send_ok();
        assert_eq!(resp.status, 200, "{version}: {}", resp.summary());
        let head = resp.text();
        assert_eq!(
            echo::header_lines(&head, "x-registry-gate-identity"),
            [format!("x-registry-gate-identity: host:{GRANTED}").as_str()],
            "{version}: {head}"
        );
        assert!(
            echo::header_lines(&head, "ssl-client-s-dn").is_empty(),
            "{version}: the subject header reached the upstream: {head}"
        );

        // A token, when present, decides: the host that also sends one is the token's user.
        let token = stack.token(Some("alice"), &["repository:team/private:pull"], version);
        let resp = request().auth(Auth::Bearer(&token)).send_ok();
        assert_eq!(resp.status, 200, "{version}: {}", resp.summary());
        assert_eq!(
            echo::header_lines(&resp.text(), "x-registry-gate-identity"),
            ["x-registry-gate-identity: user:alice"],
            "{version}"
        );
    }

    // A capsule's layout: Apache terminates TLS and passes the verified subject in
    // `ssl-client-s-dn`; the listener accepts only Apache, so the header is trusted (here the
    // test client plays Apache). The connection's own certificate is then not read.
    let mut filter_config: serde_json::Value =
        serde_json::from_str(&registry_gate_tests::envoy::filter_config(0, false)).unwrap();
    let filter = filter_config.as_object_mut().unwrap();
    filter.remove("client_certificate_from_connection");
    filter.insert("trust_client_certificate_header".into(), true.into());
    let params = EnvoyParams {
        listen_port: ports::free_port(),
        admin_port: ports::free_port(),
        registry_port: echo_port,
        ..stack.envoy.params.clone()
    };
    let mut capsule = Envoy::start_with(
        &stack.scenario.subdir("envoy-capsule"),
        &registry_gate_tests::paths::local_envoy_template(),
        params,
        &Launch {
            name: "envoy-capsule".to_owned(),
            extra_vars: vec![("FILTER_CONFIG", filter_config.to_string())],
            ..Launch::default()
        },
    );
    capsule.wait_for_generation(stack.generation(), INSTALL_TIMEOUT);
    let capsule_base = format!("https://127.0.0.1:{}", capsule.params.listen_port);
    let granted_dn = format!("O=ACME,CN={GRANTED}");
    let legacy_dn = format!("/CN={GRANTED}/O=ACME");
    // mod_ssl's legacy form does not escape `/`: this is also how a certificate with no CN
    // and `OU=x/CN=<granted>` prints.
    let ambiguous_dn = format!("/O=ACME/OU=x/CN={GRANTED}");
    let ungranted_dn = format!("CN={UNGRANTED},O=ACME");
    let alice = stack.token(
        Some("alice"),
        &["repository:team/private:pull"],
        HttpVersion::Http1,
    );
    for (case, path, dn, cert, token, want) in [
        (
            "trusted subject, granted",
            "team/private",
            Some(granted_dn.as_str()),
            None,
            None,
            Ok("host:GRANTED"),
        ),
        (
            "legacy DN form",
            "team/private",
            Some(legacy_dn.as_str()),
            None,
            None,
            Ok("host:GRANTED"),
        ),
        (
            "legacy DN form, CN after another attribute: ambiguous, no certificate",
            "team/private",
            Some(ambiguous_dn.as_str()),
            None,
            None,
            Err(401),
        ),
        (
            "trusted subject, not granted",
            "team/private",
            Some(ungranted_dn.as_str()),
            None,
            None,
            Err(401),
        ),
        (
            "token beats the subject",
            "team/private",
            Some(ungranted_dn.as_str()),
            None,
            Some(alice.as_str()),
            Ok("user:alice"),
        ),
        (
            "malformed subject: anonymous",
            "library/public",
            Some("garbage"),
            None,
            None,
            Ok("anonymous"),
        ),
        (
            "malformed subject, private",
            "team/private",
            Some("garbage"),
            None,
            None,
            Err(401),
        ),
        (
            "connection certificate not read",
            "team/private",
            None,
            Some(&granted),
            None,
            Err(401),
        ),
    ] {
        let mut request = Request::get(format!("{capsule_base}/v2/{path}/manifests/latest"))
            .cacert(stack.ca_cert());
        if let Some(dn) = dn {
            request = request.header("ssl-client-s-dn", dn);
        }
        if let Some(cert) = cert {
            request = request.client_cert(&cert.cert, &cert.key);
        }
        if let Some(token) = token {
            request = request.auth(Auth::Bearer(token));
        }
        let resp = request.send_ok();
        match want {
            Ok(identity) => {
                assert_eq!(resp.status, 200, "{case}: {}", resp.summary());
                let head = resp.text();
                let identity = identity.replace("GRANTED", GRANTED);
                assert_eq!(
                    echo::header_lines(&head, "x-registry-gate-identity"),
                    [format!("x-registry-gate-identity: {identity}").as_str()],
                    "{case}: {head}"
                );
                assert!(
                    echo::header_lines(&head, "ssl-client-s-dn").is_empty(),
                    "{case}: the subject header reached the upstream: {head}"
                );
            }
            Err(status) => assert_eq!(resp.status, status, "{case}: {}", resp.summary()),
        }
    }
}
