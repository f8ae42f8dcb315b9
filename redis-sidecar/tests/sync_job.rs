//! `registry-gate-sidecar sync --from-file`, the real binary against a real sidecar and
//! Redis: every document shape publishes what it says, a second run publishes nothing, bad
//! documents exit 2 and publish nothing, the shrink guard exits 3 until `--force`, a dry run
//! prints the diff and publishes nothing, and an unreachable or refusing sidecar exits 4.
//! (The Pulp source runs against real Pulp in `tests/tests/capsule_pulp.rs`.)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;

use harness::{content, parse_etag, Options, Redis, Sidecar};
use registry_gate_core::snapshot::Content;
use registry_gate_tests::sync_run::SyncRun;
use serde_json::json;

const BINARY: &str = env!("CARGO_BIN_EXE_registry-gate-sidecar");

/// A sidecar and the files a job needs to reach it.
struct Fixture {
    _redis: Redis,
    sidecar: Sidecar,
    dir: tempfile::TempDir,
    secret: PathBuf,
}

impl Fixture {
    async fn start() -> Fixture {
        let redis = Redis::start();
        let sidecar = Sidecar::start(&redis, Options::default()).await;
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("sync-secret");
        std::fs::write(&secret, format!("{}\n", sidecar.secret)).unwrap();
        Fixture {
            _redis: redis,
            sidecar,
            dir,
            secret,
        }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Runs `sync --from-file <file> <extra>` against this sidecar.
    async fn sync(&self, file: &Path, extra: &[&str]) -> SyncRun {
        let mut command = Command::new(BINARY);
        command
            .arg("sync")
            .arg("--from-file")
            .arg(file)
            .args(extra)
            .env("RG_SIDECAR_URL", &self.sidecar.base)
            .env("RG_SYNC_SECRET_FILE", &self.secret);
        run(command).await
    }

    /// The published ETag and content (`None` before the first publish).
    async fn published(&self) -> Option<(String, Content)> {
        let reply = self.sidecar.get(None, "?schema=1.1").await;
        (reply.status == 200).then(|| {
            let (etag, snapshot) = (reply.etag().unwrap(), {
                harness::decode(&reply.body).unwrap()
            });
            (etag, snapshot.content)
        })
    }
}

async fn run(mut command: Command) -> SyncRun {
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    SyncRun::from_output(&output)
}

/// `content` as the sidecar stores it (its own key added), for comparing.
fn without_keys(mut content: Content) -> Content {
    content.keys.clear();
    content
}

fn expected(repositories: &[(&str, bool)], users: &[(&str, &[&str])]) -> Content {
    let mut content: Content = serde_json::from_value(content(repositories, users)).unwrap();
    content.canonicalize();
    content
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shape_publishes_and_a_second_run_publishes_nothing() {
    let f = Fixture::start().await;
    struct Row {
        case: &'static str,
        file: &'static str,
        text: &'static str,
        repositories: &'static [(&'static str, bool)],
        users: &'static [(&'static str, &'static [&'static str])],
    }
    let rows = [
        Row {
            case: "Katello JSON (the first publish, on nothing)",
            file: "katello.json",
            text: r#"{"repositories": [
                {"repository": "acme/busybox", "auth_required": "true"},
                {"repository": "acme/nginx", "auth_required": false}],
              "users": [{"admin": [{"repository": "acme/busybox", "auth_required": true}]},
                        {"jdoe@example.com": [{"repository": "acme/nginx", "auth_required": false}]}]}"#,
            repositories: &[("acme/busybox", true), ("acme/nginx", false)],
            users: &[
                ("admin", &["acme/busybox"]),
                ("jdoe@example.com", &["acme/nginx"]),
            ],
        },
        Row {
            case: "Katello YAML",
            file: "katello.yaml",
            text: "repositories:\n  - {repository: acme/busybox, auth_required: true}\n  \
                   - {repository: acme/nginx, auth_required: true}\nusers:\n  - admin:\n      \
                   - {repository: acme/nginx, auth_required: true}\n",
            repositories: &[("acme/busybox", true), ("acme/nginx", true)],
            users: &[("admin", &["acme/nginx"])],
        },
        Row {
            case: "native JSON",
            file: "native.json",
            text: r#"{"repositories": [{"name": "acme/busybox", "auth_required": true},
                {"name": "acme/fedora", "auth_required": false}],
              "users": {"admin": ["acme/busybox", "acme/fedora"]}}"#,
            repositories: &[("acme/busybox", true), ("acme/fedora", false)],
            users: &[("admin", &["acme/busybox", "acme/fedora"])],
        },
        Row {
            case: "native YAML",
            file: "native.yml",
            text: "repositories:\n  - {name: acme/busybox, auth_required: false}\n  \
                   - {name: acme/fedora, auth_required: false}\nusers:\n  bob: [acme/fedora]\n",
            repositories: &[("acme/busybox", false), ("acme/fedora", false)],
            users: &[("bob", &["acme/fedora"])],
        },
    ];
    let mut last_generation = 0;
    for row in rows {
        let file = f.write(row.file, row.text);
        let first = f.sync(&file, &[]).await;
        assert_eq!(first.code, Some(0), "{}: {first:?}", row.case);
        assert_eq!(
            first.field("outcome"),
            "published",
            "{}: {first:?}",
            row.case
        );
        assert_eq!(first.field("changed"), "true", "{}", row.case);
        assert_eq!(first.field("source"), "file", "{}", row.case);
        assert_eq!(
            first.field("repositories"),
            row.repositories.len().to_string(),
            "{}",
            row.case
        );
        let (etag, published) = f.published().await.unwrap();
        let (_, generation) = parse_etag(&etag);
        assert!(
            generation > last_generation,
            "{}: a new generation",
            row.case
        );
        last_generation = generation;
        assert_eq!(
            first.field("generation"),
            etag.trim_matches('"'),
            "{}: the summary names the published generation",
            row.case
        );
        assert_eq!(
            without_keys(published),
            expected(row.repositories, row.users),
            "{}",
            row.case
        );
        let again = f.sync(&file, &[]).await;
        assert_eq!(again.code, Some(0), "{}: {again:?}", row.case);
        assert_eq!(
            again.field("outcome"),
            "unchanged",
            "{}: {again:?}",
            row.case
        );
        assert_eq!(again.field("changed"), "false", "{}", row.case);
        assert_eq!(
            f.published().await.unwrap().0,
            etag,
            "{}: nothing published the second time",
            row.case
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_documents_exit_2_and_publish_nothing() {
    let f = Fixture::start().await;
    let good = f.write(
        "good.json",
        r#"{"repositories": [{"name": "acme/busybox", "auth_required": true}]}"#,
    );
    assert_eq!(f.sync(&good, &[]).await.code, Some(0));
    let (etag, _) = f.published().await.unwrap();
    let rows: [(&str, &str, &str, &str); 7] = [
        (
            "truncated JSON",
            "a.json",
            r#"{"repositories": ["#,
            "not valid JSON",
        ),
        (
            "bad YAML",
            "b.yaml",
            "repositories: [\n - : :",
            "not valid YAML",
        ),
        (
            "no repositories",
            "c.json",
            r#"{"users": {}}"#,
            "repositories is missing",
        ),
        (
            "Katello entry without its flag",
            "d.json",
            r#"{"repositories": [{"repository": "acme/busybox"}]}"#,
            "repositories[0].auth_required is missing",
        ),
        (
            "native unknown field",
            "e.yaml",
            "repositories: []\ngroups: {}\n",
            "unknown field `groups`",
        ),
        (
            "a grant on an unlisted repository",
            "f.json",
            r#"{"repositories": [{"name": "acme/busybox", "auth_required": true}],
                "users": {"admin": ["acme/other"]}}"#,
            "is granted unknown repository \\\"acme/other\\\"",
        ),
        ("no such file", "", "", "No such file"),
    ];
    for (case, name, text, needle) in rows {
        let path = if name.is_empty() {
            f.dir.path().join("missing.json")
        } else {
            f.write(name, text)
        };
        let run = f.sync(&path, &[]).await;
        assert_eq!(run.code, Some(2), "{case}: {run:?}");
        let needle = needle.replace("\\\"", "\"");
        assert!(
            run.stderr.contains(&needle),
            "{case}: {needle:?} not in {run:?}"
        );
        assert_eq!(
            run.stdout, "",
            "{case}: no summary for a source that cannot be read"
        );
        assert_eq!(
            f.published().await.unwrap().0,
            etag,
            "{case}: nothing published"
        );
    }
    // Bad settings are exit 2 too, each named.
    let mut command = Command::new(BINARY);
    command
        .args(["sync", "--max-shrink-percent", "150"])
        .env_remove("RG_SYNC_SECRET_FILE");
    let run = run(command).await;
    assert_eq!(run.code, Some(2), "{run:?}");
    for needle in [
        "--max-shrink-percent",
        "RG_SYNC_SECRET_FILE is required",
        "give a source",
    ] {
        assert!(run.stderr.contains(needle), "{needle}: {run:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_lost_most_repositories_is_refused_until_forced() {
    let f = Fixture::start().await;
    let repositories = |names: &[&str]| {
        json!({"repositories": names.iter().map(|n| json!({"name": n, "auth_required": true})).collect::<Vec<_>>()})
            .to_string()
    };
    let four = f.write("four.json", &repositories(&["a/1", "a/2", "a/3", "a/4"]));
    assert_eq!(f.sync(&four, &[]).await.code, Some(0));
    let (etag, _) = f.published().await.unwrap();
    let one = f.write("one.json", &repositories(&["a/1"]));
    let refused = f.sync(&one, &[]).await;
    assert_eq!(refused.code, Some(3), "{refused:?}");
    assert_eq!(refused.field("outcome"), "refused", "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("3 of the 4 published repositories would disappear"),
        "{refused:?}"
    );
    assert_eq!(f.published().await.unwrap().0, etag, "nothing published");
    // A looser threshold lets it through; so does --force.
    let two = f.write("two.json", &repositories(&["a/1", "a/2"]));
    let half = f.sync(&two, &[]).await;
    assert_eq!(half.code, Some(0), "exactly half may go: {half:?}");
    let none = f.write("none.json", &repositories(&[]));
    let emptied = f.sync(&none, &["--max-shrink-percent", "100"]).await;
    assert_eq!(
        emptied.code,
        Some(3),
        "the sidecar's own empty guard: {emptied:?}"
    );
    assert!(
        emptied.stderr.contains("refused by the sidecar"),
        "{emptied:?}"
    );
    let forced = f.sync(&none, &["--force"]).await;
    assert_eq!(forced.code, Some(0), "{forced:?}");
    assert_eq!(forced.field("outcome"), "published");
    assert_eq!(forced.field("repositories"), "0");
    assert!(f.published().await.unwrap().1.repositories.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_prints_the_diff_and_publishes_nothing() {
    let f = Fixture::start().await;
    let before = f.write(
        "before.json",
        r#"{"repositories": [{"name": "a/one", "auth_required": true},
                             {"name": "a/two", "auth_required": true},
                             {"name": "a/three", "auth_required": true}],
            "users": {"alice": ["a/one"], "bob": ["a/two"]}}"#,
    );
    assert_eq!(f.sync(&before, &[]).await.code, Some(0));
    let (etag, _) = f.published().await.unwrap();
    let after = f.write(
        "after.json",
        r#"{"repositories": [{"name": "a/one", "auth_required": false},
                             {"name": "a/two", "auth_required": true},
                             {"name": "a/four", "auth_required": true}],
            "users": {"alice": ["a/one", "a/four"], "carol": []}}"#,
    );
    let run = f.sync(&after, &["--dry-run"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let diff: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        diff[..diff.len() - 1],
        [
            "+ repository a/four (auth_required)",
            "- repository a/three",
            "~ repository a/one now public",
            "+ user carol",
            "- user bob",
            "+ grant user alice a/four",
            "- grant user bob a/two",
        ],
        "{run:?}"
    );
    assert_eq!(run.field("outcome"), "dry-run");
    assert_eq!(run.field("changed"), "true");
    assert_eq!(run.field("generation"), etag.trim_matches('"'));
    assert_eq!(f.published().await.unwrap().0, etag, "nothing published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_or_refusing_sidecar_exits_4() {
    let f = Fixture::start().await;
    let file = f.write("doc.json", r#"{"repositories": []}"#);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut command = Command::new(BINARY);
    command
        .arg("sync")
        .arg("--from-file")
        .arg(&file)
        .args(["--sidecar-url", &format!("http://{closed}")])
        .env("RG_SYNC_SECRET_FILE", &f.secret);
    let unreachable = run(command).await;
    assert_eq!(unreachable.code, Some(4), "{unreachable:?}");
    assert!(
        unreachable.stderr.contains("unreachable"),
        "{unreachable:?}"
    );

    let wrong = f.write("wrong-secret", "not-the-sync-secret-at-all\n");
    let mut command = Command::new(BINARY);
    command
        .arg("sync")
        .arg("--from-file")
        .arg(&file)
        .env("RG_SIDECAR_URL", &f.sidecar.base)
        .env("RG_SYNC_SECRET_FILE", &wrong);
    let refused = run(command).await;
    assert_eq!(refused.code, Some(4), "{refused:?}");
    assert!(refused.stderr.contains("answered 401"), "{refused:?}");
    assert!(
        !refused.stderr.contains("not-the-sync-secret"),
        "the secret is never printed: {refused:?}"
    );
    assert!(f.published().await.is_none(), "nothing published");
}
