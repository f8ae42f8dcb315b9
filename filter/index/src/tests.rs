#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::layout::{carried_checksum, header, seal, u32_at, Section, HEADER_LEN, TRAILER_LEN};
use crate::{verify, BuildError, Builder, Index, IndexError, Part, PublisherKey, Signer, Stamp};

const STAMP: Stamp<'static> = Stamp {
    epoch: "e1",
    producer: "tests/1",
    generation: 7,
    published_at: 1_700_000_000,
    allow_empty: false,
    min_token_iat: Some(1_600_000_000),
};

fn built() -> Vec<u8> {
    let mut builder = Builder::new([
        ("team/b", true),
        ("library/public", false),
        ("team/a", true),
        ("zz/public", false),
    ])
    .unwrap();
    builder
        .grant(Part::Users, "alice", ["team/b", "team/a", "team/a"])
        .unwrap();
    builder.grant(Part::Users, "bob", []).unwrap();
    builder.grant(Part::Hosts, "host-1", ["team/b"]).unwrap();
    builder.grant(Part::Writers, "alice", ["team/a"]).unwrap();
    builder.key("k2", r#"{"kid":"k2"}"#);
    builder.key("k1", r#"{"kid":"k1"}"#);
    builder.finish(&STAMP).unwrap()
}

/// Recomputes the checksum after a deliberate change, so the validator (not the checksum)
/// has to catch it.
fn resealed(mut bytes: Vec<u8>) -> Vec<u8> {
    seal(&mut bytes);
    bytes
}

/// Where section `section` starts.
fn section_start(bytes: &[u8], section: Section) -> usize {
    let count = u32_at(bytes, header::SECTION_COUNT).unwrap() as usize;
    (0..count)
        .map(|i| HEADER_LEN + 12 * i)
        .find(|at| u32_at(bytes, *at) == Some(section.kind()))
        .map(|at| u32_at(bytes, at + 4).unwrap() as usize)
        .unwrap()
}

#[test]
fn answers_every_query_from_the_bytes() {
    let index = Index::open(built()).unwrap();
    assert_eq!(index.epoch(), "e1");
    assert_eq!(index.producer(), "tests/1");
    assert_eq!(index.generation(), 7);
    assert_eq!(index.published_at(), 1_700_000_000);
    assert_eq!(index.min_token_iat(), Some(1_600_000_000));
    assert!(!index.allow_empty());
    assert_eq!(index.len(), 4);
    let names: Vec<_> = index.repositories().collect();
    assert_eq!(
        names,
        [
            ("library/public", false),
            ("team/a", true),
            ("team/b", true),
            ("zz/public", false)
        ]
    );
    let a = index.repository("team/a").unwrap();
    assert!(a.auth_required);
    assert!(!index.repository("library/public").unwrap().auth_required);
    assert_eq!(index.repository("team/c"), None);
    assert_eq!(index.repository(""), None);
    let alice = index.grants(Part::Users, "alice").unwrap();
    assert_eq!(alice.iter().collect::<Vec<_>>(), [1, 2]);
    assert!(alice.contains(a.id));
    assert!(!alice.contains(0));
    assert!(index.grants(Part::Users, "bob").unwrap().is_empty());
    assert!(index.grants(Part::Users, "carol").is_none());
    assert!(index.grants(Part::Hosts, "alice").is_none());
    assert_eq!(
        index
            .grants(Part::Writers, "alice")
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
        [1]
    );
    assert_eq!(index.public().iter().collect::<Vec<_>>(), [0, 3]);
    let all: Vec<_> = index.pullable(alice, 0).collect();
    assert_eq!(all, ["library/public", "team/a", "team/b", "zz/public"]);
    let after: Vec<_> = index.pullable(alice, index.first_after("team/a")).collect();
    assert_eq!(after, ["team/b", "zz/public"]);
    assert_eq!(index.first_after("team/aa"), 2);
    assert_eq!(index.first_after("zzz"), 4);
    assert_eq!(index.first_after(""), 0);
    let keys: Vec<_> = index.keys().collect();
    assert_eq!(keys, [("k1", r#"{"kid":"k1"}"#), ("k2", r#"{"kid":"k2"}"#)]);
    let principals: Vec<_> = index
        .principals(Part::Users)
        .map(|(name, ids)| (name, ids.len()))
        .collect();
    assert_eq!(principals, [("alice", 2), ("bob", 0)]);
}

#[test]
fn equal_contents_build_equal_bytes() {
    assert_eq!(built(), built());
    let empty = Builder::new([]).unwrap().finish(&STAMP).unwrap();
    let index = Index::open(empty).unwrap();
    assert!(index.is_empty());
    assert_eq!(index.pullable(crate::Ids::EMPTY, 0).count(), 0);
}

#[test]
fn the_builder_refuses_what_a_reader_would() {
    struct Row {
        case: &'static str,
        build: fn() -> Result<Vec<u8>, BuildError>,
        problem: &'static str,
    }
    let rows = [
        Row {
            case: "duplicate repository",
            build: || Builder::new([("a", true), ("a", false)])?.finish(&STAMP),
            problem: "listed twice",
        },
        Row {
            case: "unknown grant",
            build: || {
                let mut b = Builder::new([("a", true)])?;
                b.grant(Part::Hosts, "h", ["b"])?;
                b.finish(&STAMP)
            },
            problem: "unknown repository \"b\"",
        },
        Row {
            case: "duplicate principal",
            build: || {
                let mut b = Builder::new([("a", true)])?;
                b.grant(Part::Users, "u", ["a"])?;
                b.grant(Part::Users, "u", [])?;
                b.finish(&STAMP)
            },
            problem: "\"u\" is listed twice",
        },
        Row {
            case: "bad repository name",
            build: || Builder::new([("Team/A", true)])?.finish(&STAMP),
            problem: "not a valid name",
        },
        Row {
            case: "bad principal name",
            build: || {
                let mut b = Builder::new([])?;
                b.grant(Part::Users, "a\nb", [])?;
                b.finish(&STAMP)
            },
            problem: "not a valid name",
        },
        Row {
            case: "bad epoch",
            build: || {
                Builder::new([])?.finish(&Stamp {
                    epoch: "with space",
                    ..STAMP
                })
            },
            problem: "epoch",
        },
        Row {
            case: "unknown feature",
            build: || {
                let mut b = Builder::new([])?;
                b.require("time_travel");
                b.finish(&STAMP)
            },
            problem: "time_travel",
        },
        Row {
            case: "duplicate key",
            build: || {
                let mut b = Builder::new([])?;
                b.key("k", "{}");
                b.key("k", "{}");
                b.finish(&STAMP)
            },
            problem: "key id \"k\"",
        },
    ];
    for row in rows {
        let error = (row.build)().expect_err(row.case);
        assert!(
            error.to_string().contains(row.problem),
            "{}: {error}",
            row.case
        );
    }
}

#[test]
fn every_truncation_and_every_flipped_byte_is_refused() {
    let bytes = built();
    let body_end = bytes.len() - TRAILER_LEN;
    for len in 0..bytes.len() {
        assert!(Index::open(bytes[..len].to_vec()).is_err(), "cut at {len}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        Index::open(longer),
        Err(IndexError::Truncated { .. })
    ));
    // The trailer is the signature's business; everything before it is checked.
    for at in 0..body_end {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x20;
        assert!(Index::open(flipped).is_err(), "byte {at} flipped");
    }
}

#[test]
fn the_validator_refuses_tables_that_disagree() {
    struct Row {
        case: &'static str,
        change: fn(&mut Vec<u8>),
        reason: &'static str,
    }
    let rows = [
        Row {
            case: "unknown major",
            change: |b| b[header::MAJOR] = 3,
            reason: "unsupported_schema",
        },
        Row {
            case: "unknown flag",
            change: |b| b[header::FLAGS] |= 4,
            reason: "invalid",
        },
        Row {
            case: "reserved bytes",
            change: |b| b[header::RESERVED] = 1,
            reason: "invalid",
        },
        Row {
            case: "names out of order",
            change: |b| {
                // "team/a" becomes "team/c", after "team/b".
                let at = b.windows(6).position(|w| w == b"team/a").unwrap();
                b[at + 5] = b'c';
            },
            reason: "invalid",
        },
        Row {
            case: "a name outside the grammar",
            change: |b| {
                let at = b.windows(6).position(|w| w == b"team/b").unwrap();
                b[at] = b'T';
            },
            reason: "invalid",
        },
        Row {
            case: "a flag that is neither 0 nor 1",
            change: |b| {
                let at = section_start(b, Section::RepositoryFlags);
                b[at] = 2;
            },
            reason: "invalid",
        },
        Row {
            case: "a public id that is private",
            change: |b| {
                let at = section_start(b, Section::Public);
                b[at] = 1;
            },
            reason: "invalid",
        },
        Row {
            case: "a slot out of range",
            change: |b| {
                let at = section_start(b, Section::RepositoryHash);
                let slot = (0..8)
                    .map(|i| at + 4 * i)
                    .find(|s| u32_at(b, *s) != Some(u32::MAX))
                    .unwrap();
                b[slot..slot + 4].copy_from_slice(&9_u32.to_le_bytes());
            },
            reason: "invalid",
        },
        Row {
            case: "a grant out of range",
            change: |b| {
                let at = section_start(b, Section::UserGrants);
                // starts[0..=2] then alice's first id.
                b[at + 12..at + 16].copy_from_slice(&4_u32.to_le_bytes());
            },
            reason: "invalid",
        },
        Row {
            case: "grants out of order",
            change: |b| {
                let at = section_start(b, Section::UserGrants);
                b[at + 12..at + 16].copy_from_slice(&2_u32.to_le_bytes());
            },
            reason: "invalid",
        },
        Row {
            case: "a section count that lies",
            change: |b| b[header::SECTION_COUNT] = 15,
            reason: "invalid",
        },
        Row {
            case: "a section moved",
            change: |b| {
                let entry = HEADER_LEN + 12;
                b[entry + 4] = b[entry + 4].wrapping_add(1);
            },
            reason: "invalid",
        },
    ];
    for row in rows {
        let mut bytes = built();
        (row.change)(&mut bytes);
        let error = Index::open(resealed(bytes)).expect_err(row.case);
        assert_eq!(error.reason(), row.reason, "{}: {error}", row.case);
    }
}

#[test]
fn signatures() {
    let publisher = Signer::from_seed([7; 32]);
    let successor = Signer::from_seed([8; 32]);
    let stranger = Signer::from_seed([9; 32]);
    let mut signed = built();
    publisher.sign(&mut signed).unwrap();
    let mut rotated = built();
    successor.sign(&mut rotated).unwrap();
    let mut foreign = built();
    stranger.sign(&mut foreign).unwrap();
    let mut tampered = signed.clone();
    let body = section_start(&tampered, Section::UserGrants);
    tampered[body + 12] ^= 1;
    let tampered = resealed(tampered);
    let trusted = [publisher.public(), successor.public()];
    struct Row<'a> {
        case: &'a str,
        bytes: &'a [u8],
        result: Result<PublisherKey, &'a str>,
    }
    let rows = [
        Row {
            case: "signed",
            bytes: &signed,
            result: Ok(publisher.public()),
        },
        Row {
            case: "rotated: the second configured key",
            bytes: &rotated,
            result: Ok(successor.public()),
        },
        Row {
            case: "unsigned",
            bytes: &built(),
            result: Err("unsigned"),
        },
        Row {
            case: "another publisher",
            bytes: &foreign,
            result: Err("unknown_publisher"),
        },
        Row {
            case: "changed after signing",
            bytes: &tampered,
            result: Err("bad_signature"),
        },
        Row {
            case: "truncated",
            bytes: &signed[..signed.len() - 1],
            result: Err("truncated"),
        },
        Row {
            case: "not an index",
            bytes: b"{\"schema\":{\"major\":1,\"minor\":1}}",
            result: Err("malformed"),
        },
    ];
    for row in rows {
        let result = verify(row.bytes, &trusted).map_err(|e| e.reason());
        assert_eq!(result, row.result, "{}", row.case);
    }
    assert_eq!(
        verify(&signed, &[successor.public()]).map_err(|e| e.reason()),
        Err("unknown_publisher"),
        "the old key dropped from the configuration"
    );
    assert_eq!(signed, {
        let mut again = built();
        publisher.sign(&mut again).unwrap();
        again
    });
    let opened = Index::open(signed.clone()).unwrap();
    assert_eq!(opened.bytes(), &signed[..]);
}

#[test]
fn publisher_keys_round_trip_as_text() {
    let key = Signer::from_seed([1; 32]).public();
    let text = key.to_string();
    assert_eq!(text.len(), 43);
    assert_eq!(PublisherKey::parse(&text), Ok(key));
    for bad in [
        "",
        "abc",
        &format!("{text}A"),
        "!!!",
        &text.replace('-', "+"),
    ] {
        if bad == text {
            continue;
        }
        assert!(PublisherKey::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn sorts_before_is_bytewise_order() {
    let words: [&[u8]; 12] = [
        b"",
        b"a",
        b"ab",
        b"abcdefgh",
        b"abcdefgh0",
        b"abcdefgi",
        b"abcdefg",
        b"abcdefghabcdefgh",
        b"abcdefghabcdefgi",
        b"b",
        b"\xff",
        b"abcdefgh\x00",
    ];
    for a in words {
        for b in words {
            assert_eq!(crate::layout::sorts_before(a, b), a < b, "{a:?} {b:?}");
        }
    }
}

#[test]
fn repository_grammar() {
    use crate::names::is_valid_repository_name;
    let long = "a".repeat(255);
    let too_long = "a".repeat(256);
    for good in [
        "a",
        "library/ubuntu",
        "a.b",
        "a_b",
        "a__b",
        "a-b",
        "a---b",
        "a/b/c",
        "0",
        &long,
    ] {
        assert!(is_valid_repository_name(good), "{good:?}");
    }
    for bad in [
        "", "A", "a/", "/a", "a//b", "a..b", "a___b", "a_-b", "a-", "-a", "a.", "a._b", "a/-b",
        "é", "a b", &too_long,
    ] {
        assert!(!is_valid_repository_name(bad), "{bad:?}");
    }
}

#[test]
fn open_known_checks_identity_and_shape_not_items() {
    let bytes = built();
    let index = Index::open(bytes.clone()).unwrap();
    let sum = index.checksum();
    assert_eq!(Index::open_known(bytes.clone(), sum).unwrap(), index);
    assert_eq!(
        Index::open_known(bytes.clone(), sum ^ 1).unwrap_err(),
        IndexError::ChecksumMismatch,
        "bytes other than the ones named"
    );
    let mut torn = bytes.clone();
    torn.truncate(bytes.len() - 1);
    assert!(
        Index::open_known(torn, sum).is_err(),
        "the frame is checked"
    );

    // A repository name out of grammar, resealed: a full validation refuses it, a check of
    // shape does not look (the bytes it is meant for passed a full validation already).
    let mut wrong = bytes.clone();
    let names = section_start(&wrong, Section::RepositoryNames);
    let count = u32_at(&wrong, names).unwrap() as usize;
    let data = names + 4 + 4 * count;
    wrong[data] = b'A';
    let wrong = resealed(wrong);
    let sum = carried_checksum(&wrong).unwrap();
    assert!(matches!(
        Index::open(wrong.clone()),
        Err(IndexError::Invalid(_))
    ));
    let known = Index::open_known(wrong, sum).unwrap();
    assert_eq!(
        known.repository("team/a").map(|r| r.auth_required),
        Some(true)
    );

    // A flag byte is an item too; a table of the wrong shape is refused at either depth.
    let mut flagged = bytes.clone();
    let flags = section_start(&flagged, Section::RepositoryFlags);
    flagged[flags] = 2;
    let flagged = resealed(flagged);
    let sum = carried_checksum(&flagged).unwrap();
    assert!(Index::open(flagged.clone()).is_err());
    assert!(Index::open_known(flagged, sum).is_ok());
    let mut shapeless = bytes;
    shapeless[names..names + 4].copy_from_slice(&(count as u32 + 1000).to_le_bytes());
    let shapeless = resealed(shapeless);
    let sum = carried_checksum(&shapeless).unwrap();
    assert!(Index::open(shapeless.clone()).is_err());
    assert!(matches!(
        Index::open_known(shapeless, sum),
        Err(IndexError::Invalid(_))
    ));
}
