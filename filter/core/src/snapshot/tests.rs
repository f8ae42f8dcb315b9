#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;

fn content() -> Content {
    Content {
        repositories: vec![
            Repository {
                name: "team/app".into(),
                auth_required: true,
            },
            Repository {
                name: "library/public".into(),
                auth_required: false,
            },
        ],
        users: [("alice".to_string(), vec!["team/app".to_string()])]
            .into_iter()
            .collect(),
        ..Content::default()
    }
}

fn stamp(generation: u64) -> Stamp {
    Stamp {
        epoch: "e1".into(),
        generation,
        published_at: 1_700_000_000,
        producer: "test".into(),
        allow_empty: false,
    }
}

fn envelope(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn round_trip() {
    let bytes = encode(&content(), &stamp(7)).unwrap();
    let snapshot = decode(&bytes).unwrap();
    assert_eq!(snapshot.header.generation, 7);
    assert_eq!(snapshot.header.epoch, "e1");
    assert_eq!(snapshot.header.schema, Schema::CURRENT);
    assert!(snapshot.header.required_features.is_empty());
    let mut expected = content();
    expected.canonicalize();
    assert_eq!(snapshot.content, expected);
    assert_eq!(snapshot.header.checksum, content().checksum().unwrap());
}

#[test]
fn checksum_ignores_order_and_duplicates() {
    let mut shuffled = content();
    shuffled.repositories.reverse();
    shuffled
        .users
        .insert("alice".into(), vec!["team/app".into(), "team/app".into()]);
    assert_eq!(shuffled.checksum().unwrap(), content().checksum().unwrap());
    let mut changed = content();
    changed.repositories[0].auth_required = false;
    assert_ne!(changed.checksum().unwrap(), content().checksum().unwrap());
}

/// Rewrites one envelope field and returns the bytes. (`Value` sorts keys, so the content
/// bytes change too: only for cases whose check comes before the checksum, or that target it.)
fn tampered(edit: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
    let mut value = envelope(&encode(&content(), &stamp(1)).unwrap());
    edit(&mut value);
    serde_json::to_vec(&value).unwrap()
}

#[test]
fn decode_rejects_bad_documents() {
    let rows: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not json", b"{".to_vec(), "malformed"),
        ("empty", Vec::new(), "malformed"),
        ("json array", b"[]".to_vec(), "malformed"),
        (
            "unknown schema major",
            tampered(|v| v["schema"]["major"] = 2.into()),
            "unsupported_schema",
        ),
        (
            "unknown required feature",
            tampered(|v| v["required_features"] = serde_json::json!(["deny-lists"])),
            "unknown_features",
        ),
        (
            "checksum mismatch",
            tampered(|v| v["checksum"] = "sha256:00".into()),
            "checksum_mismatch",
        ),
        (
            "content edited after signing the checksum",
            tampered(|v| v["content"]["repositories"][0]["auth_required"] = false.into()),
            "checksum_mismatch",
        ),
        (
            "missing generation",
            tampered(|v| {
                v.as_object_mut().unwrap().remove("generation");
            }),
            "malformed",
        ),
        (
            "negative generation",
            tampered(|v| v["generation"] = (-1).into()),
            "malformed",
        ),
        (
            "missing content",
            tampered(|v| {
                v.as_object_mut().unwrap().remove("content");
            }),
            "malformed",
        ),
    ];
    for (case, bytes, reason) in rows {
        let err = decode(&bytes).unwrap_err();
        assert_eq!(err.reason(), reason, "{case}: {err}");
    }
}

/// Encodes an arbitrary content JSON with a correct checksum, bypassing `encode`'s checks.
fn raw_envelope(content_json: &str) -> Vec<u8> {
    let checksum = format!(
        "sha256:{}",
        hex::encode(Sha256::digest(content_json.as_bytes()))
    );
    format!(
        r#"{{"schema":{{"major":1,"minor":0}},"required_features":[],"epoch":"e","generation":1,"published_at":0,"producer":"t","checksum":"{checksum}","content":{content_json}}}"#
    )
    .into_bytes()
}

#[test]
fn decode_validates_content() {
    let rows = [
        (
            "unknown content field",
            r#"{"repositories":[],"deny":[]}"#,
            "malformed",
        ),
        (
            "invalid repository name",
            r#"{"repositories":[{"name":"Team/App","auth_required":true}]}"#,
            "invalid",
        ),
        (
            "duplicate repository",
            r#"{"repositories":[{"name":"a","auth_required":true},{"name":"a","auth_required":false}]}"#,
            "invalid",
        ),
        (
            "grant to unknown repository",
            r#"{"repositories":[],"users":{"alice":["ghost"]}}"#,
            "invalid",
        ),
        (
            "empty principal",
            r#"{"repositories":[{"name":"a","auth_required":true}],"users":{"":["a"]}}"#,
            "invalid",
        ),
        (
            "auth_required as string",
            r#"{"repositories":[{"name":"a","auth_required":"true"}]}"#,
            "malformed",
        ),
    ];
    for (case, json, reason) in rows {
        let err = decode(&raw_envelope(json)).unwrap_err();
        assert_eq!(err.reason(), reason, "{case}: {err}");
    }
    assert!(decode(&raw_envelope(
        r#"{"repositories":[{"name":"a","auth_required":true}]}"#
    ))
    .is_ok());
}

#[test]
fn unknown_envelope_fields_from_newer_minors_are_tolerated() {
    // Edited as text: re-serializing through `Value` would reorder the content's keys.
    let text = String::from_utf8(encode(&content(), &stamp(1)).unwrap()).unwrap();
    let edited = text.replacen(
        &format!(r#"{{"schema":{{"major":1,"minor":{SCHEMA_MINOR}}}"#),
        r#"{"optional_hint":"x","schema":{"major":1,"minor":9}"#,
        1,
    );
    assert_ne!(edited, text);
    let bytes = edited.into_bytes();
    assert_eq!(decode(&bytes).unwrap().header.schema.minor, 9);
}

#[test]
fn validation_reports_every_problem() {
    let mut bad = content();
    bad.repositories.push(Repository {
        name: "UPPER".into(),
        auth_required: true,
    });
    bad.users.insert("bob".into(), vec!["ghost".into()]);
    let SnapshotError::Invalid(message) = bad.validate().unwrap_err() else {
        panic!("expected Invalid");
    };
    assert!(message.contains("UPPER"), "{message}");
    assert!(message.contains("ghost"), "{message}");
    assert!(encode(&bad, &stamp(1)).is_err());
}

#[test]
fn admission() {
    let snapshot = |epoch: &str, generation, repositories: usize, allow_empty| Snapshot {
        header: Header {
            schema: Schema { major: 1, minor: 0 },
            required_features: vec![],
            epoch: epoch.into(),
            generation,
            published_at: 0,
            producer: "t".into(),
            checksum: String::new(),
            allow_empty,
        },
        content: Content {
            repositories: (0..repositories)
                .map(|i| Repository {
                    name: format!("r{i}"),
                    auth_required: true,
                })
                .collect(),
            ..Content::default()
        },
        keys: KeyRing::default(),
    };
    let held = Held {
        generation: Generation::new("e1", 5),
        repositories: 3,
    };
    let rows = [
        ("first snapshot", None, snapshot("e1", 1, 0, false), None),
        (
            "newer generation",
            Some(&held),
            snapshot("e1", 6, 3, false),
            None,
        ),
        (
            "same generation",
            Some(&held),
            snapshot("e1", 5, 3, false),
            Some("not_newer"),
        ),
        (
            "older generation",
            Some(&held),
            snapshot("e1", 4, 3, false),
            Some("not_newer"),
        ),
        (
            "new epoch restarts generations",
            Some(&held),
            snapshot("e2", 1, 3, false),
            None,
        ),
        (
            "wipe of every repository",
            Some(&held),
            snapshot("e1", 6, 0, false),
            Some("suspiciously_empty"),
        ),
        (
            "announced wipe",
            Some(&held),
            snapshot("e1", 6, 0, true),
            None,
        ),
    ];
    for (case, held, offered, expected) in rows {
        let result = admit(held, &offered);
        assert_eq!(result.err().map(|e| e.reason()), expected, "{case}");
    }
}

#[test]
fn schema_announcements_parse_strictly() {
    let schema = |major, minor| Some(Schema { major, minor });
    for (text, want) in [
        ("1.0", schema(1, 0)),
        ("1.12", schema(1, 12)),
        ("2.0", schema(2, 0)),
        ("1", None),
        ("1.", None),
        (".0", None),
        ("1.0.0", None),
        ("+1.0", None),
        ("1.-1", None),
        (" 1.0", None),
        ("1.0 ", None),
        ("1234567890.0", None),
        ("x.y", None),
        ("", None),
    ] {
        assert_eq!(Schema::parse(text), want, "{text:?}");
    }
    assert_eq!(
        Schema::CURRENT.to_string(),
        format!("{SCHEMA_MAJOR}.{SCHEMA_MINOR}")
    );
    assert_eq!(
        Schema::parse(&Schema::CURRENT.to_string()),
        Some(Schema::CURRENT)
    );
}

#[test]
fn a_reader_reads_its_major_at_any_minor_and_no_other_major() {
    let reader = Schema { major: 1, minor: 0 };
    assert!(reader.reads(Schema { major: 1, minor: 0 }));
    assert!(reader.reads(Schema { major: 1, minor: 7 }));
    assert!(Schema { major: 1, minor: 7 }.reads(reader));
    assert!(!reader.reads(Schema { major: 2, minor: 0 }));
    assert!(!Schema { major: 2, minor: 0 }.reads(reader));
    assert!(Schema::UNANNOUNCED.reads(Schema::CURRENT));
}

#[test]
fn min_token_iat_is_a_required_feature_this_reader_knows() {
    let mut with = content();
    with.min_token_iat = Some(1_700_000_000);
    let bytes = encode(&with, &stamp(3)).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(
        text.contains(r#""required_features":["min_token_iat"]"#),
        "{text}"
    );
    let snapshot = decode(&bytes).unwrap();
    assert_eq!(snapshot.content.min_token_iat, Some(1_700_000_000));
    assert_eq!(
        snapshot.header.required_features,
        vec![FEATURE_MIN_TOKEN_IAT.to_owned()]
    );
    // Without it, nothing is required and the field is not written: a 1.0 reader reads it.
    let text = String::from_utf8(encode(&content(), &stamp(3)).unwrap()).unwrap();
    assert!(text.contains(r#""required_features":[]"#), "{text}");
    assert!(!text.contains("min_token_iat"), "{text}");
    // A reader that did not know the feature would refuse rather than drop the restriction.
    let unknown = text.replacen(
        r#""required_features":[]"#,
        r#""required_features":["min_token_iat","from_the_future"]"#,
        1,
    );
    assert_eq!(
        decode(unknown.as_bytes()).unwrap_err(),
        SnapshotError::UnknownFeatures("from_the_future".to_owned())
    );
}
