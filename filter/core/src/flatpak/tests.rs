#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::{json, Value};

use super::*;

const LIMIT: usize = 1 << 20;

/// `library/public` and `team/granted` pass; everything else does not.
fn may_pull(name: &str) -> bool {
    matches!(name, "library/public" | "team/granted")
}

fn entry(name: &str) -> Value {
    json!({"Name": name, "Images": [{"Digest": "sha256:00", "Labels": {"org.flatpak.ref": format!("app/{name}")}}], "Lists": []})
}

struct Row {
    case: &'static str,
    body: Value,
    /// The `Name`s kept, in order; `Err(reason)` for an error.
    expected: Result<Vec<&'static str>, &'static str>,
}

#[test]
fn filter_index_table() {
    let rows = [
        Row {
            case: "keeps the passing entries in order",
            body: json!({"Registry": "https://r/", "Results": [entry("team/granted"), entry("team/secret"), entry("library/public")]}),
            expected: Ok(vec!["team/granted", "library/public"]),
        },
        Row {
            case: "nothing passes: an empty Results",
            body: json!({"Registry": "https://r/", "Results": [entry("team/secret")]}),
            expected: Ok(vec![]),
        },
        Row {
            case: "empty Results stays empty",
            body: json!({"Registry": "https://r/", "Results": []}),
            expected: Ok(vec![]),
        },
        Row {
            case: "entry without Name is dropped",
            body: json!({"Results": [{"Images": []}, entry("library/public")]}),
            expected: Ok(vec!["library/public"]),
        },
        Row {
            case: "entry with a non-string Name is dropped",
            body: json!({"Results": [{"Name": ["library/public"]}, {"Name": 7}]}),
            expected: Ok(vec![]),
        },
        Row {
            case: "entry that is not an object is dropped",
            body: json!({"Results": ["library/public", null, 1]}),
            expected: Ok(vec![]),
        },
        Row {
            case: "lower-case name is another field",
            body: json!({"Results": [{"name": "library/public"}]}),
            expected: Ok(vec![]),
        },
        Row {
            case: "Results missing",
            body: json!({"Registry": "https://r/"}),
            expected: Err("no_results"),
        },
        Row {
            case: "Results is an object",
            body: json!({"Results": {"Name": "library/public"}}),
            expected: Err("no_results"),
        },
        Row {
            case: "Results is null",
            body: json!({"Results": null}),
            expected: Err("no_results"),
        },
        Row {
            case: "results in lower case is not Results",
            body: json!({"results": []}),
            expected: Err("no_results"),
        },
        Row {
            case: "top level is an array",
            body: json!([entry("library/public")]),
            expected: Err("not_json"),
        },
        Row {
            case: "top level is a string",
            body: json!("Results"),
            expected: Err("not_json"),
        },
    ];
    for row in rows {
        let body = serde_json::to_vec(&row.body).unwrap();
        let got = filter_index(&body, LIMIT, may_pull).map(|out| {
            let out: Value = serde_json::from_slice(&out).unwrap();
            out["Results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["Name"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        });
        match (&got, &row.expected) {
            (Ok(names), Ok(expected)) => assert_eq!(names, expected, "{}", row.case),
            (Err(err), Err(reason)) => assert_eq!(err.reason(), *reason, "{}", row.case),
            _ => panic!("{}: got {got:?}, expected {:?}", row.case, row.expected),
        }
    }
}

#[test]
fn other_fields_and_kept_entries_are_unchanged() {
    let body = json!({
        "Registry": "https://pulp.example/",
        "Extra": {"nested": [1, 2.5, "x"]},
        "Results": [entry("library/public"), entry("team/secret")]
    });
    let out = filter_index(&serde_json::to_vec(&body).unwrap(), LIMIT, may_pull).unwrap();
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(out["Registry"], body["Registry"]);
    assert_eq!(out["Extra"], body["Extra"]);
    assert_eq!(out["Results"], json!([entry("library/public")]));
}

#[test]
fn bytes_that_are_not_an_index() {
    let rows: [(&str, &[u8], &str); 6] = [
        ("empty body", b"", "not_json"),
        ("truncated", br#"{"Results": ["#, "not_json"),
        ("trailing garbage", br#"{"Results": []} x"#, "not_json"),
        ("invalid UTF-8", b"{\"Results\": [\"\xff\"]}", "not_json"),
        (
            "duplicate Results: the last one is read",
            br#"{"Results": 1, "Results": 2}"#,
            "no_results",
        ),
        (
            "deep nesting is refused, not a stack overflow",
            &[b'['; 10_000],
            "not_json",
        ),
    ];
    for (case, body, reason) in rows {
        let err = filter_index(body, LIMIT, may_pull).unwrap_err();
        assert_eq!(err.reason(), reason, "{case}: {err}");
    }
}

#[test]
fn the_size_bound() {
    let body = serde_json::to_vec(&json!({"Results": [entry("library/public")]})).unwrap();
    assert!(
        filter_index(&body, body.len(), may_pull).is_ok(),
        "at the limit"
    );
    let err = filter_index(&body, body.len() - 1, may_pull).unwrap_err();
    assert_eq!(err.reason(), "too_large");
}

#[test]
fn plan_table() {
    type Row<'a> = (
        &'a str,
        Option<&'a [u8]>,
        Option<&'a [u8]>,
        Result<Plan, &'a str>,
    );
    let rows: &[Row] = &[
        ("200 plain", Some(b"200"), None, Ok(Plan::Filter)),
        (
            "200 identity",
            Some(b"200"),
            Some(b"Identity"),
            Ok(Plan::Filter),
        ),
        (
            "200 empty encoding",
            Some(b"200"),
            Some(b" "),
            Ok(Plan::Filter),
        ),
        ("200 gzip", Some(b"200"), Some(b"gzip"), Err("encoded")),
        ("200 br", Some(b"200"), Some(b"br"), Err("encoded")),
        ("400 passes", Some(b"400"), None, Ok(Plan::PassThrough)),
        ("404 passes", Some(b"404"), None, Ok(Plan::PassThrough)),
        (
            "404 gzip passes",
            Some(b"404"),
            Some(b"gzip"),
            Ok(Plan::PassThrough),
        ),
        ("503 passes", Some(b"503"), None, Ok(Plan::PassThrough)),
        ("204", Some(b"204"), None, Err("unexpected_status")),
        ("206", Some(b"206"), None, Err("unexpected_status")),
        ("302", Some(b"302"), None, Err("unexpected_status")),
        ("304", Some(b"304"), None, Err("unexpected_status")),
        ("no status", None, None, Err("no_status")),
        ("status not a number", Some(b"2xx"), None, Err("no_status")),
        ("status not text", Some(b"\xff"), None, Err("no_status")),
    ];
    for (case, status, encoding, expected) in rows {
        let got = plan(*status, *encoding).map_err(|e| e.reason());
        assert_eq!(got, *expected, "{case}");
    }
}

#[test]
fn errors_answer_502_in_the_registry_format() {
    let reply = FlatpakError::NoResults.reply(5);
    assert_eq!(reply.status, 502);
    let body: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["errors"][0]["code"], "UNKNOWN");
    assert_eq!(
        body["errors"][0]["detail"],
        "flatpak index has no Results array"
    );
}

#[test]
fn over_the_budget_answers_503_with_retry_after() {
    let reply = FlatpakError::OverBudget { budget: 1 << 20 }.reply(7);
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("retry-after"), Some("7"));
    let body: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAVAILABLE");
}

#[test]
fn kept_bytes_are_the_bytes_sent() {
    let body = br#"{"Registry":"https://r/","N":1.0305942164110693e+193,"Results":[{"Name":"library\/public","X":0.1000000000000000055511151231257827},{"Name":"team/secret"}]}"#;
    let out = String::from_utf8(filter_index(body, LIMIT, may_pull).unwrap()).unwrap();
    assert!(out.contains(r#""N":1.0305942164110693e+193"#), "{out}");
    assert!(
        out.contains(r#"[{"Name":"library\/public","X":0.1000000000000000055511151231257827}]"#),
        "{out}"
    );
    assert!(!out.contains("team/secret"), "{out}");
}

#[test]
fn an_entry_naming_itself_twice_is_dropped() {
    let body = br#"{"Results":[{"Name":"team/secret","Name":"library/public"}]}"#;
    let out: Value = serde_json::from_slice(&filter_index(body, LIMIT, may_pull).unwrap()).unwrap();
    assert_eq!(out["Results"], json!([]));
}

#[test]
fn an_array_is_no_entry() {
    let body = br#"{"Results":[["library/public"],{"Name":"library\u002fpublic"}]}"#;
    let out: Value = serde_json::from_slice(&filter_index(body, LIMIT, may_pull).unwrap()).unwrap();
    assert_eq!(
        out["Results"],
        json!([{"Name": "library/public"}]),
        "escaped names are read unescaped"
    );
}
