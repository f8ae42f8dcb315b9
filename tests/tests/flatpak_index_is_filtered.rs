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

/// A second Envoy of the stack's, forwarding to `pulp`, its filter configured with `settings`
/// on top of the stack's, ready with the stack's generation.
fn envoy_for(stack: &Stack, pulp: &CaptureServer, settings: serde_json::Value) -> Envoy {
    let params = EnvoyParams {
        listen_port: ports::free_port(),
        admin_port: ports::free_port(),
        registry_port: pulp.port,
        ..stack.envoy.params.clone()
    };
    let mut config: serde_json::Value =
        serde_json::from_str(&filter_config(params.listen_port, false)).unwrap();
    for (name, value) in settings.as_object().unwrap() {
        config[name] = value.clone();
    }
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
    envoy
}

#[test]
fn the_flatpak_index_shows_only_what_the_caller_may_pull() {
    let stack = Stack::start();
    let pulp = CaptureServer::start(upstream);
    let mut envoy = envoy_for(
        &stack,
        &pulp,
        serde_json::json!({"flatpak_index_max_bytes": MAX_INDEX_BYTES}),
    );
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

/// What concurrent clients got: status, `Retry-After`, body.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: String,
}

/// `count` index requests in flight at once over HTTP/2 from real curl (`--parallel`, which
/// multiplexes up to Envoy's 100 streams per connection), as two curls of half each.
fn concurrent_index_requests(base: &str, stack: &Stack, count: usize) -> Vec<Answer> {
    let scratch = tempfile::tempdir().unwrap();
    let half = count / 2;
    let curls: Vec<_> = (0..2)
        .map(|curl| {
            let dir = scratch.path().join(format!("curl{curl}"));
            std::fs::create_dir(&dir).unwrap();
            let child = std::process::Command::new(registry_gate_tests::paths::curl())
                .args(["--silent", "--show-error", "--http2", "--parallel"])
                .arg("--parallel-max")
                .arg(half.to_string())
                .args(["--max-time", "60", "--cacert"])
                .arg(stack.ca_cert())
                .arg("--write-out")
                .arg("%{url_effective} %{http_code} %header{retry-after}\\n")
                .arg("--output")
                .arg(dir.join("body_#1"))
                .arg(format!("{base}/index/static?{QUERY}&n=[1-{half}]"))
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            (dir, child)
        })
        .collect();
    let mut answers = Vec::new();
    for (dir, child) in curls {
        let out = child.wait_with_output().unwrap();
        let written = String::from_utf8(out.stdout).unwrap();
        let mut lines: Vec<(usize, &str)> = written
            .lines()
            .map(|line| {
                let (url, rest) = line.split_once(' ').unwrap();
                let n = url.rsplit_once("&n=").unwrap().1;
                (n.parse().unwrap(), rest)
            })
            .collect();
        lines.sort_unstable();
        assert_eq!(lines.len(), half, "an answer to every request: {written}");
        for (n, line) in lines {
            let (status, retry_after) = line.split_once(' ').unwrap_or((line, ""));
            let body = std::fs::read_to_string(dir.join(format!("body_{n}"))).unwrap_or_default();
            answers.push(Answer {
                status: status.parse().unwrap(),
                retry_after: Some(retry_after.trim().to_owned()).filter(|v| !v.is_empty()),
                body,
            });
        }
    }
    answers
}

/// 400 anonymous requests for an 8 MiB index at once, each answer held upstream until all
/// are in flight: far more than the workers' budget (64 MiB each by default), which without
/// it would take a wasm VM past its 1 GiB and trap it. Every answer is the filtered index or
/// 503 with `Retry-After`; no VM restarts; once they are done, the budget is free again.
#[test]
fn concurrent_flatpak_indexes_past_the_budget_get_503_and_no_worker_fails() {
    const INDEX_BYTES: usize = 8 * 1024 * 1024;
    const STREAMS: usize = 400;
    let stack = Stack::start();
    // One visible entry; the rest of the 8 MiB is a repository nobody may see.
    let mut body = serde_json::to_vec(&serde_json::json!({
        "Registry": "https://pulp.test/",
        "Results": [entry("library/public", 1), entry("nobody/knows", 1)],
    }))
    .unwrap();
    let padding = format!(
        ",\"Padding\":\"{}\"}}",
        "x".repeat(INDEX_BYTES - body.len())
    );
    body.pop();
    body.extend_from_slice(padding.as_bytes());
    assert!(body.len() >= INDEX_BYTES);
    let pulp = CaptureServer::concurrent(move |_| {
        Reply {
            status: 200,
            content_type: Some("application/json".to_owned()),
            body: body.clone(),
            stall: None,
        }
        .stalled(Duration::from_secs(3))
    });
    let mut envoy = envoy_for(&stack, &pulp, serde_json::json!({}));
    let base = format!("https://127.0.0.1:{}", envoy.params.listen_port);
    let before = envoy.filter_restarts();
    let one_index = || {
        Request::get(format!("{base}/index/static?{QUERY}"))
            .version(HttpVersion::Http2)
            .cacert(stack.ca_cert())
            .timeout(Duration::from_secs(30))
            .send_ok()
    };
    assert_eq!(names(&one_index(), "alone"), ["library/public"]);

    let answers = concurrent_index_requests(&base, &stack, STREAMS);
    let (mut filtered, mut refused) = (0, 0);
    for (n, answer) in answers.iter().enumerate() {
        match answer.status {
            200 => {
                let index: serde_json::Value = serde_json::from_str(&answer.body)
                    .unwrap_or_else(|err| panic!("request {n}: not the index: {err}"));
                let names: Vec<_> = index["Results"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["Name"].as_str().unwrap())
                    .collect();
                assert_eq!(names, ["library/public"], "request {n}: filtered");
                filtered += 1;
            }
            503 => {
                assert!(
                    answer.body.contains("UNAVAILABLE"),
                    "request {n}: {:.300}",
                    answer.body
                );
                assert!(answer.retry_after.is_some(), "request {n}: Retry-After");
                refused += 1;
            }
            status => panic!("request {n}: status {status}: {:.300}", answer.body),
        }
        assert!(!answer.body.contains("nobody/knows"), "request {n}: leaked");
    }
    eprintln!("{STREAMS} concurrent 8 MiB indexes: {filtered} filtered, {refused} got 503");
    assert!(filtered > 0, "the budget serves some at once");
    assert!(refused > 0, "3.2 GB in flight cannot fit the budget");
    assert_eq!(
        envoy.filter_restarts(),
        before,
        "no VM trapped, no hook panicked"
    );

    // The budget was given back: one more index is filtered.
    assert_eq!(names(&one_index(), "after the burst"), ["library/public"]);
    wait_until("over_budget counted", Duration::from_secs(10), || {
        let name =
            registry_gate_tests::paths::build().stat("registry_gate.flatpak_index.over_budget");
        let counted = envoy.stat(&name);
        if counted == refused {
            Ok(())
        } else {
            Err(format!("{name} = {counted}, {refused} refused"))
        }
    });
}
