#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use crate::snapshot::Repository;

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
    assert_eq!(snapshot.header.schema, SCHEMA);
    assert!(snapshot.header.required_features.is_empty());
    let mut expected = content();
    expected.canonicalize();
    assert_eq!(snapshot.content, expected);
    assert_eq!(snapshot.header.checksum, checksum(&content()).unwrap());
}

#[test]
fn checksum_ignores_order_and_duplicates() {
    let mut shuffled = content();
    shuffled.repositories.reverse();
    shuffled
        .users
        .insert("alice".into(), vec!["team/app".into(), "team/app".into()]);
    assert_eq!(checksum(&shuffled).unwrap(), checksum(&content()).unwrap());
    let mut changed = content();
    changed.repositories[0].auth_required = false;
    assert_ne!(checksum(&changed).unwrap(), checksum(&content()).unwrap());
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
        &format!(r#"{{"schema":{{"major":1,"minor":{}}}"#, SCHEMA.minor),
        r#"{"optional_hint":"x","schema":{"major":1,"minor":9}"#,
        1,
    );
    assert_ne!(edited, text);
    let bytes = edited.into_bytes();
    assert_eq!(decode(&bytes).unwrap().header.schema.minor, 9);
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
