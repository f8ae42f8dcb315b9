//! ext_authz mode end to end: Envoy (`envoy/ext-authz/envoy.yaml`, no wasm) asks the sidecar
//! (`--ext-authz-config`) about every request, and clients get the filter's decisions: a
//! granted user pulls with skopeo, anonymous gets the Docker challenge, a user without a grant
//! gets 404 `NAME_UNKNOWN`, a malformed token 401, the catalog is answered from the snapshot,
//! a new generation is enforced once published, and the upstream sees the verified identity
//! only — never the client's token or forged identity headers. Before any snapshot every
//! request gets 503 `UNAVAILABLE` with `Retry-After`, and nothing reaches the registry. A
//! content host is named by its connection's certificate only: a client without one that
//! sends the peer-subject header itself is anonymous.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use registry_gate_tests::envoy::{Envoy, EnvoyParams};
use registry_gate_tests::expect::{
    assert_challenge, assert_is_manifest_of, assert_registry_error, assert_upstream_untouched,
    catalog_names, get_manifest,
};
use registry_gate_tests::http::Request;
use registry_gate_tests::stack::{default_snapshot, StackOptions, INSTALL_TIMEOUT};
use registry_gate_tests::wait::wait_until;
use registry_gate_tests::{echo, oci, paths, ports, Auth, HttpVersion, Stack};

fn ext_authz_stack(name: &str, snapshot: bool) -> Stack {
    let mut options = StackOptions::new(name);
    options.ext_authz = true;
    if !snapshot {
        options.snapshot = None;
    }
    Stack::start_with(options)
}

#[test]
fn the_sidecars_check_decides_as_the_filter_does() {
    let mut stack = ext_authz_stack("ext-authz-decides", true);
    let private = stack.image("team/private:latest").clone();
    let password = stack.password("alice").to_owned();

    let (run, dest) = stack.skopeo_pull("team/private:latest", Auth::Basic("alice", &password));
    run.assert_success();
    oci::layout_has_image(&dest, &private).unwrap();

    for version in HttpVersion::ALL {
        let alice = stack.token(Some("alice"), &["repository:team/private:pull"], version);
        let resp = get_manifest(
            &stack,
            "team/private",
            "latest",
            version,
            Auth::Bearer(&alice),
        );
        assert_is_manifest_of(&resp, &private, &format!("alice, {version}"));

        let anonymous = assert_upstream_untouched(&mut stack, "anonymous, private", |s| {
            get_manifest(s, "team/private", "latest", version, Auth::Anonymous)
        });
        assert_challenge(
            &stack,
            &anonymous,
            "team/private",
            &format!("anonymous, {version}"),
        );
        assert_registry_error(&anonymous, 401, "UNAUTHORIZED", "anonymous");
        assert_eq!(
            anonymous.header("docker-distribution-api-version"),
            Some("registry/2.0"),
            "{}",
            anonymous.summary()
        );

        let bob = stack.token(Some("bob"), &["repository:team/private:pull"], version);
        let no_grant = assert_upstream_untouched(&mut stack, "bob, private", |s| {
            get_manifest(s, "team/private", "latest", version, Auth::Bearer(&bob))
        });
        assert_registry_error(&no_grant, 404, "NAME_UNKNOWN", &format!("bob, {version}"));

        let malformed = assert_upstream_untouched(&mut stack, "malformed token", |s| {
            get_manifest(
                s,
                "team/private",
                "latest",
                version,
                Auth::Bearer("not.a.token"),
            )
        });
        assert_registry_error(
            &malformed,
            401,
            "UNAUTHORIZED",
            &format!("malformed, {version}"),
        );

        // Content the gate answers comes from the sidecar's answer endpoint.
        let catalog = stack.token(Some("alice"), &["registry:catalog:*"], version);
        let resp = assert_upstream_untouched(&mut stack, "catalog", |s| {
            s.get("/v2/_catalog", version, Auth::Bearer(&catalog))
        });
        assert_eq!(
            catalog_names(&resp, &format!("alice's catalog, {version}")),
            ["library/public", "team/private"]
        );
    }

    // A new generation is enforced: alice's grant revoked.
    let alice = stack.token(
        Some("alice"),
        &["repository:team/private:pull"],
        HttpVersion::Http1,
    );
    let mut revoked = default_snapshot();
    revoked["users"]["alice"] = serde_json::json!([]);
    stack.publish(&revoked);
    wait_until("the revocation enforced", INSTALL_TIMEOUT, || {
        let resp = get_manifest(
            &stack,
            "team/private",
            "latest",
            HttpVersion::Http1,
            Auth::Bearer(&alice),
        );
        match resp.status {
            404 => Ok(resp),
            _ => Err(resp.summary()),
        }
    });

    let checks = Request::get(format!("{}/metrics", stack.sidecar.url()))
        .send_ok()
        .text();
    for outcome in ["allowed", "unauthorized", "not_found", "answered"] {
        let series =
            format!("registry_gate_sidecar_ext_authz_checks_total{{outcome=\"{outcome}\"}} ");
        assert!(
            checks.lines().any(|line| line.starts_with(&series)),
            "no {series:?} in the sidecar's metrics:\n{checks}"
        );
    }
}

#[test]
fn the_upstream_sees_the_verified_identity_and_no_token() {
    let stack = ext_authz_stack("ext-authz-upstream", true);
    // A second Envoy from the same template, in front of an echo server that answers with the
    // request head it received.
    let params = EnvoyParams {
        listen_port: ports::free_port(),
        admin_port: ports::free_port(),
        registry_port: echo::start(),
        ..stack.envoy.params.clone()
    };
    let envoy = Envoy::start(
        &stack.scenario.subdir("envoy-echo"),
        &paths::ext_authz_envoy_template(),
        params,
    );
    let base = format!("https://127.0.0.1:{}", envoy.params.listen_port);
    for version in HttpVersion::ALL {
        let token = stack.token(Some("alice"), &["repository:team/private:pull"], version);
        for (case, forged) in [
            ("no identity header from the client", vec![]),
            ("the client claims to be root", vec!["user:root"]),
            ("two forged copies", vec!["user:root", "host:x"]),
        ] {
            let context = format!("{case}, {version}");
            let mut request = Request::get(format!("{base}/v2/team/private/manifests/latest"))
                .version(version)
                .cacert(stack.ca_cert())
                .auth(Auth::Bearer(&token))
                .header("x-registry-gate-answer", "1");
            for claim in &forged {
                request = request.header("x-registry-gate-identity", claim);
            }
            let resp = request.send_ok();
            assert_eq!(resp.status, 200, "{context}: {}", resp.summary());
            let head = resp.text();
            assert_eq!(
                echo::header_lines(&head, "x-registry-gate-identity"),
                ["x-registry-gate-identity: user:alice"],
                "{context}: {head}"
            );
            for hidden in [
                "authorization",
                "x-registry-gate-answer",
                "x-envoy-auth-headers-to-remove",
            ] {
                assert!(
                    echo::header_lines(&head, hidden).is_empty(),
                    "{context}: {hidden} reached the upstream: {head}"
                );
            }
        }
        echo::assert_forged_identity_becomes_anonymous(&base, stack.ca_cert(), version);
    }
}

#[test]
fn before_any_snapshot_the_check_fails_closed() {
    let mut stack = ext_authz_stack("ext-authz-no-snapshot", false);
    for version in HttpVersion::ALL {
        for repository in ["library/public", "team/private"] {
            let context = format!("{repository} before any snapshot, {version}");
            let resp = assert_upstream_untouched(&mut stack, &context, |s| {
                get_manifest(s, repository, "latest", version, Auth::Anonymous)
            });
            assert_registry_error(&resp, 503, "UNAVAILABLE", &context);
            let retry_after = resp.header("retry-after").unwrap_or_default();
            assert!(
                retry_after.parse::<u64>().is_ok_and(|s| s > 0),
                "{context}: Retry-After {retry_after:?}"
            );
        }
    }
    stack.publish_and_wait(&default_snapshot());
    let public = stack.image("library/public:latest").clone();
    let resp = get_manifest(
        &stack,
        "library/public",
        "latest",
        HttpVersion::Http2,
        Auth::Anonymous,
    );
    assert_is_manifest_of(&resp, &public, "public pull after the first publish");
}

/// A granted content host's UUID, as its certificate's CN.
const HOST: &str = "6a1c1e52-3f0b-4a8e-9d41-8f5f0c2b7e10";

#[test]
fn the_peer_subject_comes_from_the_connection_only() {
    let mut options = StackOptions::new("ext-authz-peer-subject");
    options.ext_authz = true;
    let mut snapshot = default_snapshot();
    snapshot["hosts"] = serde_json::json!({ HOST: ["team/private"] });
    options.snapshot = Some(snapshot);
    options.client_cns = vec![HOST.to_owned()];
    // Even with the check allowed to see a client's copy of the header (a widened
    // `allowed_headers`), the template removes it before the check.
    options.envoy_rewrites = vec![(
        "- exact: ssl-client-s-dn\n",
        "- exact: ssl-client-s-dn\n                          - exact: x-registry-gate-peer-subject\n",
    )];
    let mut stack = Stack::start_with(options);
    let private = stack.image("team/private:latest").clone();
    let url = format!("{}/v2/team/private/manifests/latest", stack.base_url());
    for version in HttpVersion::ALL {
        // The host's own certificate: its subject names it, and it is granted.
        let host = stack.client(HOST).clone();
        let resp = Request::get(&url)
            .version(version)
            .cacert(stack.ca_cert())
            .client_cert(&host.cert, &host.key)
            .header("Accept", registry_gate_tests::expect::MANIFEST_ACCEPT)
            .send_ok();
        assert_is_manifest_of(
            &resp,
            &private,
            &format!("the host's certificate, {version}"),
        );
        // No certificate, the subject claimed in the header the check reads: anonymous.
        for subject in [format!("CN={HOST}"), format!("O=ACME,CN={HOST}")] {
            let context = format!("claimed {subject}, {version}");
            let resp = assert_upstream_untouched(&mut stack, &context, |s| {
                Request::get(&url)
                    .version(version)
                    .cacert(s.ca_cert())
                    .header("x-registry-gate-peer-subject", &subject)
                    .header("Accept", registry_gate_tests::expect::MANIFEST_ACCEPT)
                    .send_ok()
            });
            assert_challenge(&stack, &resp, "team/private", &context);
        }
    }
}
