//! `GET /index/static` (the Flatpak registry index) reaches the upstream with its query as
//! sent and without `Accept-Encoding`, and its answer reaches the client cut down to the
//! repositories the caller may pull: anonymous sees the public ones, a user the public ones
//! and its grants, and a repository nobody granted never appears. An upstream error passes
//! through; an answer that cannot be filtered (no `Results`, over the configured bound) is a
//! 502, never the unfiltered body.
//!
//! docker-registry has no `/index/static`, so a second Envoy, rendered from the local
//! template with a small `flatpak_index_max_bytes`, forwards to a capture server that answers
//! like Pulp with `FLATPAK_INDEX` on.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use std::time::Duration;

use registry_gate_tests::capture::{CaptureServer, CapturedRequest, Reply};
use registry_gate_tests::envoy::{filter_config, Envoy, EnvoyParams, Launch};
use registry_gate_tests::expect::assert_registry_error;
use registry_gate_tests::http::{Request, Response};
use registry_gate_tests::stack::INSTALL_TIMEOUT;
use registry_gate_tests::wait::wait_until;
use registry_gate_tests::{ports, Auth, HttpVersion, Stack};

/// The filter's bound in this scenario; below Envoy's default 1 MiB buffer limit, so the
/// filter, not Envoy, refuses the larger index.
const MAX_INDEX_BYTES: usize = 256 * 1024;

const QUERY: &str = "label:org.flatpak.ref:exists=1&architecture=amd64&tag=latest";

/// One `Results` entry, padded with `images` images so the index spans many body chunks.
fn entry(name: &str, images: usize) -> serde_json::Value {
    let image = serde_json::json!({
        "Digest": format!("sha256:{}", "ab".repeat(32)),
        "MediaType": "application/vnd.oci.image.manifest.v1+json",
        "OS": "linux", "Architecture": "amd64", "Tags": ["latest"],
        "Labels": {"org.flatpak.ref": format!("app/org.example.{}/x86_64/stable", name.replace('/', "."))},
    });
    serde_json::json!({"Name": name, "Images": vec![image; images], "Lists": []})
}

/// What the upstream stand-in answers, chosen by the request's `case` parameter.
fn upstream(request: &CapturedRequest) -> Reply {
    let case = request
        .target
        .split(['?', '&'])
        .find_map(|pair| pair.strip_prefix("case="))
        .unwrap_or("index");
    match case {
        "no-results" => Reply::json(200, r#"{"Registry":"https://pulp.test/"}"#),
        "not-found" => Reply::json(
            404,
            r#"{"errors":[{"code":"NOT_FOUND","message":"flatpak index disabled"}]}"#,
        ),
        "huge" => Reply::json(
            200,
            &serde_json::json!({
                "Registry": "https://pulp.test/",
                "Results": [entry("library/public", 2000)]
            })
            .to_string(),
        ),
        _ => Reply::json(
            200,
            &serde_json::json!({
                "Registry": "https://pulp.test/",
                "Results": [
                    entry("library/public", 300),
                    entry("team/private", 2),
                    entry("team/other", 2),
                    entry("nobody/knows", 2)
                ]
            })
            .to_string(),
        ),
    }
}

fn names(resp: &Response, context: &str) -> Vec<String> {
    assert_eq!(resp.status, 200, "{context}: {}", resp.summary());
    let body = resp.json();
    assert_eq!(
        body["Registry"], "https://pulp.test/",
        "{context}: other fields kept"
    );
    body["Results"]
        .as_array()
        .unwrap_or_else(|| panic!("{context}: no Results: {}", resp.summary()))
        .iter()
        .map(|e| e["Name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_flatpak_index_shows_only_what_the_caller_may_pull() {
    let stack = Stack::start();
    let pulp = CaptureServer::start(upstream);
    let params = EnvoyParams {
        listen_port: ports::free_port(),
        admin_port: ports::free_port(),
        registry_port: pulp.port,
        ..stack.envoy.params.clone()
    };
    let mut config: serde_json::Value =
        serde_json::from_str(&filter_config(params.listen_port, false)).unwrap();
    config["flatpak_index_max_bytes"] = MAX_INDEX_BYTES.into();
    let launch = Launch {
        extra_vars: vec![("FILTER_CONFIG", config.to_string())],
        ..Launch::default()
    };
    let mut envoy = Envoy::start_with(
        &stack.scenario.subdir("envoy-flatpak"),
        &registry_gate_tests::paths::local_envoy_template(),
        params,
        &launch,
    );
    envoy.wait_for_generation(stack.generation(), INSTALL_TIMEOUT);
    let base = format!("https://127.0.0.1:{}", envoy.params.listen_port);
    let index = |version: HttpVersion, query: &str, auth: Auth<'_>| {
        Request::get(format!("{base}/index/static?{query}"))
            .version(version)
            .cacert(stack.ca_cert())
            .header("accept-encoding", "gzip, br")
            .auth(auth)
            .send_ok()
    };

    let mut filtered = 0;
    for version in HttpVersion::ALL {
        let alice = stack.token(Some("alice"), &["repository:team/private:pull"], version);
        let alice_catalog = stack.token(Some("alice"), &["registry:catalog:*"], version);
        let bob = stack.token(Some("bob"), &["repository:team/private:pull"], version);
        let rows: [(&str, Auth<'_>, &[&str]); 4] = [
            ("anonymous", Auth::Anonymous, &["library/public"]),
            (
                "alice, granted team/private",
                Auth::Bearer(&alice),
                &["library/public", "team/private"],
            ),
            (
                "alice with a catalog token",
                Auth::Bearer(&alice_catalog),
                &["library/public", "team/private"],
            ),
            (
                "bob, granted nothing, asking for team/private",
                Auth::Bearer(&bob),
                &["library/public"],
            ),
        ];
        for (case, auth, visible) in rows {
            let context = format!("{case}, {version}");
            let resp = index(version, QUERY, auth);
            assert_eq!(names(&resp, &context), *visible, "{context}");
            assert!(
                resp.header("etag").is_none(),
                "{context}: no validator of the unfiltered body"
            );
            filtered += 1;
            let seen = pulp.take();
            assert_eq!(seen.len(), 1, "{context}: one upstream request");
            assert_eq!(
                seen[0].target,
                format!("/index/static?{QUERY}"),
                "{context}: the query goes upstream as sent"
            );
            assert_eq!(
                seen[0].header("accept-encoding"),
                None,
                "{context}: the body must come unencoded"
            );
            assert!(
                seen[0].header("authorization").is_none(),
                "{context}: the token stays at the gate"
            );
        }

        let resp = index(version, "case=not-found", Auth::Anonymous);
        assert_eq!(resp.status, 404, "upstream errors pass, {version}");
        assert_eq!(
            resp.json()["errors"][0]["message"],
            "flatpak index disabled",
            "the upstream's own body, {version}"
        );

        let resp = index(version, "case=no-results", Auth::Anonymous);
        assert_registry_error(&resp, 502, "UNKNOWN", &format!("no Results, {version}"));

        let resp = index(version, "case=huge", Auth::Anonymous);
        assert_registry_error(&resp, 502, "UNKNOWN", &format!("over the bound, {version}"));
        assert!(
            !resp.text().contains("org.flatpak.ref"),
            "nothing of the index leaks, {version}"
        );
        pulp.take();
    }

    for version in HttpVersion::ALL {
        // A refused request with a body: refused before its body arrives, and never forwarded.
        // (Over HTTP/2 Envoy may reset the stream once the reply is sent, before the client
        // has finished sending: curl then reports a stream error instead of the 405.)
        let resp = Request::new("POST", format!("{base}/index/static"))
            .version(version)
            .cacert(stack.ca_cert())
            .body(vec![b'x'; 200_000])
            .send();
        if let Ok(resp) = resp {
            assert_eq!(resp.status, 405, "read-only, {version}: {}", resp.summary());
        }
        assert!(
            pulp.take().is_empty(),
            "a refused request never reaches the upstream, {version}"
        );
    }

    wait_until("the filter's stats", Duration::from_secs(10), || {
        let stats = envoy.stats("registry_gate.flatpak_index")?;
        let get = |reason: &str| {
            stats
                .get(
                    &registry_gate_tests::paths::build()
                        .stat(&format!("registry_gate.flatpak_index.{reason}")),
                )
                .copied()
                .unwrap_or(0)
        };
        let want = [
            ("filtered", filtered),
            ("passed_through", 2),
            ("no_results", 2),
            ("too_large", 2),
        ];
        if want.iter().all(|(reason, count)| get(reason) == *count) {
            Ok(())
        } else {
            Err(format!("{stats:?}"))
        }
    });
}
