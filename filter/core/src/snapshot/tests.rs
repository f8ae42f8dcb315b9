#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::json;

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
        hosts: [("host-1".to_string(), vec![])].into_iter().collect(),
        writers: [("alice".to_string(), vec!["team/app".to_string()])]
            .into_iter()
            .collect(),
        keys: vec![serde_json::from_value(json!({
            "kid": "k1", "alg": "EdDSA", "kty": "OKP", "crv": "Ed25519",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        }))
        .unwrap()],
        min_token_iat: Some(1_600_000_000),
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

#[test]
fn a_content_survives_the_index_whole() {
    let bytes = build_index(&content(), &stamp(7)).unwrap();
    let opened = open(bytes.clone()).unwrap();
    let stored = opened.index.stored();
    assert_eq!((stored.epoch(), stored.generation()), ("e1", 7));
    assert_eq!(stored.producer(), "test");
    assert_eq!(stored.published_at(), 1_700_000_000);
    let mut expected = content();
    expected.canonicalize();
    assert_eq!(content_of(stored).unwrap(), expected);
    assert_eq!(opened.keys, KeyRing::from_specs(&content().keys).unwrap());
    assert_eq!(
        check(&bytes).unwrap(),
        Held {
            generation: Generation::new("e1", 7),
            repositories: 2,
            allow_empty: false,
            checksum: opened.index.stored().checksum(),
        }
    );
}

#[test]
fn order_and_duplicates_do_not_change_the_bytes() {
    let mut shuffled = content();
    shuffled.repositories.reverse();
    shuffled
        .users
        .insert("alice".into(), vec!["team/app".into(), "team/app".into()]);
    assert_eq!(
        build_index(&shuffled, &stamp(1)).unwrap(),
        build_index(&content(), &stamp(1)).unwrap()
    );
    let mut changed = content();
    changed.repositories[0].auth_required = false;
    assert_ne!(
        build_index(&changed, &stamp(1)).unwrap(),
        build_index(&content(), &stamp(1)).unwrap()
    );
}

#[test]
fn keys_in_an_index_are_held_to_the_content_rules() {
    struct Row {
        case: &'static str,
        spec: serde_json::Value,
        problem: &'static str,
    }
    let rows = [
        Row {
            case: "a symmetric key",
            spec: json!({"kid": "k1", "alg": "HS256", "kty": "oct", "k": "c2VjcmV0"}),
            problem: "symmetric",
        },
        Row {
            case: "a spec naming another kid",
            spec: json!({"kid": "k2", "alg": "EdDSA", "kty": "OKP", "crv": "Ed25519",
                "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}),
            problem: "its spec names kid",
        },
        Row {
            case: "a spec that is no key",
            spec: json!({"kid": "k1"}),
            problem: "key \"k1\"",
        },
    ];
    for row in rows {
        // Written past the content's own validation, as a broken publisher might.
        let mut builder = Builder::new([]).unwrap();
        let json = row.spec.to_string();
        builder.key("k1", &json);
        let bytes = builder
            .finish(&registry_gate_index::Stamp {
                epoch: "e",
                producer: "p",
                generation: 1,
                published_at: 0,
                allow_empty: false,
                min_token_iat: None,
            })
            .unwrap();
        let error = open(bytes.clone()).unwrap_err();
        assert!(
            error.to_string().contains(row.problem),
            "{}: {error}",
            row.case
        );
        assert_eq!(check(&bytes).unwrap_err(), error, "{}", row.case);
    }
}

#[test]
fn validation_reports_every_problem() {
    let mut bad = content();
    bad.repositories.push(Repository {
        name: "UPPER".into(),
        auth_required: true,
    });
    bad.users.insert("bob".into(), vec!["ghost".into()]);
    bad.keys[0].kid = "k\n1".into();
    let SnapshotError::Invalid(message) = bad.validate().unwrap_err() else {
        panic!("expected Invalid");
    };
    assert!(message.contains("UPPER"), "{message}");
    assert!(message.contains("ghost"), "{message}");
    assert!(message.contains("key id \"k\\n1\""), "{message}");
    assert!(build_index(&bad, &stamp(1)).is_err());
}

#[test]
fn admission() {
    let offered = |epoch: &str, number, repositories, allow_empty| Held {
        generation: Generation::new(epoch, number),
        repositories,
        allow_empty,
        checksum: 0,
    };
    let held = offered("e1", 5, 3, false);
    struct Row<'a> {
        case: &'a str,
        held: Option<&'a Held>,
        offered: Held,
        refused: Option<&'a str>,
    }
    let rows = [
        Row {
            case: "first snapshot",
            held: None,
            offered: offered("e1", 1, 0, false),
            refused: None,
        },
        Row {
            case: "newer generation",
            held: Some(&held),
            offered: offered("e1", 6, 3, false),
            refused: None,
        },
        Row {
            case: "same generation",
            held: Some(&held),
            offered: offered("e1", 5, 3, false),
            refused: Some("not_newer"),
        },
        Row {
            case: "older generation",
            held: Some(&held),
            offered: offered("e1", 4, 3, false),
            refused: Some("not_newer"),
        },
        Row {
            case: "new epoch restarts generations",
            held: Some(&held),
            offered: offered("e2", 1, 3, false),
            refused: None,
        },
        Row {
            case: "wipe of every repository",
            held: Some(&held),
            offered: offered("e1", 6, 0, false),
            refused: Some("suspiciously_empty"),
        },
        Row {
            case: "announced wipe",
            held: Some(&held),
            offered: offered("e1", 6, 0, true),
            refused: None,
        },
    ];
    for row in rows {
        let result = admit(row.held, &row.offered);
        assert_eq!(
            result.err().map(|e| e.reason()),
            row.refused,
            "{}",
            row.case
        );
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
    assert_eq!(Schema::CURRENT.to_string(), "2.0");
    assert_eq!(Schema::LEGACY.to_string(), "1.1");
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
    assert!(Schema::UNANNOUNCED.reads(Schema::LEGACY));
    assert!(!Schema::UNANNOUNCED.reads(Schema::CURRENT));
}
