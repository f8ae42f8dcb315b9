#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use registry_gate_index::Signer;

use crate::snapshot::{build_index, Content, Repository, Stamp};

const NOW: u64 = 1_700_000_000;

fn publisher() -> Signer {
    Signer::from_seed([3; 32])
}

fn fetch() -> Fetch {
    Fetch::resume(vec![publisher().public()], None)
}

fn body(epoch: &str, generation: u64, repositories: usize) -> Vec<u8> {
    let content = Content {
        repositories: (0..repositories)
            .map(|i| Repository {
                name: format!("r{i}"),
                auth_required: true,
            })
            .collect(),
        ..Content::default()
    };
    let stamp = Stamp {
        epoch: epoch.into(),
        generation,
        published_at: NOW,
        producer: "test".into(),
        allow_empty: false,
    };
    signed(&publisher(), build_index(&content, &stamp).unwrap())
}

fn signed(signer: &Signer, mut bytes: Vec<u8>) -> Vec<u8> {
    signer.sign(&mut bytes).unwrap();
    bytes
}

/// The checksum that names `body`.
fn checksum(body: &[u8]) -> Option<u64> {
    Some(registry_gate_index::check(body).unwrap().checksum)
}

/// A confirmation of `held` (generation `epoch.generation`) at `at`.
fn confirmed(held: &[u8], epoch: &str, generation: u64, at: u64) -> Step {
    Step::Confirm(Announcement {
        epoch: epoch.into(),
        generation,
        confirmed_at: at,
        checksum: checksum(held),
    })
}

fn published(body: &[u8], epoch: &str, generation: u64, at: u64) -> Step {
    Step::Publish(Announcement {
        epoch: epoch.into(),
        generation,
        confirmed_at: at,
        checksum: checksum(body),
    })
}

#[test]
fn publishes_newer_and_confirms_only_exact_matches() {
    let mut fetch = fetch();
    assert_eq!(fetch.if_none_match(), None);
    let ten = body("e", 10, 2);
    assert_eq!(
        fetch.answer(Answer::Snapshot(&ten), NOW),
        published(&ten, "e", 10, NOW)
    );
    assert_eq!(fetch.if_none_match().as_deref(), Some("\"e.10\""));

    struct Row {
        case: &'static str,
        answer: Answer<'static>,
        want: Step,
    }
    let held = ten.clone();
    let rows = [
        Row {
            case: "304 naming the held generation",
            answer: Answer::NotModified {
                etag: Some(b"\"e.10\""),
            },
            want: confirmed(&held, "e", 10, NOW + 1),
        },
        Row {
            case: "304 naming an older generation (store rewound)",
            answer: Answer::NotModified {
                etag: Some(b"\"e.5\""),
            },
            want: Step::Retry,
        },
        Row {
            case: "304 naming a newer generation",
            answer: Answer::NotModified {
                etag: Some(b"\"e.11\""),
            },
            want: Step::Retry,
        },
        Row {
            case: "304 without an ETag",
            answer: Answer::NotModified { etag: None },
            want: Step::Retry,
        },
        Row {
            case: "304 with bytes that are not text",
            answer: Answer::NotModified {
                etag: Some(b"\"e.\xff\""),
            },
            want: Step::Retry,
        },
        Row {
            case: "sidecar down",
            answer: Answer::Failed { status: None },
            want: Step::Retry,
        },
        Row {
            case: "sidecar error",
            answer: Answer::Failed { status: Some(503) },
            want: Step::Retry,
        },
    ];
    for row in rows {
        assert_eq!(fetch.answer(row.answer, NOW + 1), row.want, "{}", row.case);
    }
    let rewound = body("e", 5, 2);
    let Step::Refused(err) = fetch.answer(Answer::Snapshot(&rewound), NOW + 2) else {
        panic!("an older generation of the same epoch is refused, not confirmed");
    };
    assert_eq!(err.reason(), "not_newer");
    assert_eq!(
        fetch.answer(Answer::Snapshot(&ten), NOW + 3),
        confirmed(&ten, "e", 10, NOW + 3),
        "the same generation again is a confirmation"
    );
    let new_epoch = body("f", 1, 2);
    assert_eq!(
        fetch.answer(Answer::Snapshot(&new_epoch), NOW + 4),
        published(&new_epoch, "f", 1, NOW + 4)
    );
    let Step::Refused(err) = fetch.answer(Answer::Snapshot(b"{}"), NOW + 5) else {
        panic!("garbage is refused");
    };
    assert_eq!(err.reason(), "malformed");
    assert_eq!(fetch.held(), Some(&Generation::new("f", 1)));
}

#[test]
fn resumes_from_shared_data() {
    let bytes = body("e", 3, 1);
    let trusted = || vec![publisher().public()];
    let fetch = Fetch::resume(trusted(), Some(&bytes));
    assert_eq!(fetch.held(), Some(&Generation::new("e", 3)));
    assert_eq!(Fetch::resume(trusted(), Some(b"garbage")).held(), None);
    assert_eq!(Fetch::resume(trusted(), None).held(), None);
    let rotated_away = Fetch::resume(vec![Signer::from_seed([4; 32]).public()], Some(&bytes));
    assert_eq!(rotated_away.held(), None, "a publisher no longer trusted");
}

#[test]
fn only_indexes_signed_by_a_configured_publisher_are_published() {
    let mut fetch = fetch();
    let one = body("e", 1, 1);
    assert_eq!(
        fetch.answer(Answer::Snapshot(&one), NOW),
        published(&one, "e", 1, NOW)
    );
    let unsigned = {
        let mut bytes = body("e", 2, 1);
        let trailer = bytes.len() - 96;
        bytes[trailer..].fill(0);
        bytes
    };
    let stranger = {
        let bytes = body("e", 3, 1);
        let trailer = bytes.len() - 96;
        signed(
            &Signer::from_seed([9; 32]),
            bytes[..trailer].iter().copied().chain([0; 96]).collect(),
        )
    };
    let tampered = {
        let mut bytes = body("e", 4, 1);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        bytes
    };
    let truncated = {
        let bytes = body("e", 5, 1);
        bytes[..bytes.len() - 1].to_vec()
    };
    for (case, bytes, reason) in [
        ("unsigned", unsigned, "unsigned"),
        ("signed by another publisher", stranger, "unknown_publisher"),
        (
            "a signature that does not verify",
            tampered,
            "bad_signature",
        ),
        ("truncated", truncated, "truncated"),
    ] {
        let Step::Refused(err) = fetch.answer(Answer::Snapshot(&bytes), NOW + 1) else {
            panic!("{case}: published");
        };
        assert_eq!(err.reason(), reason, "{case}: {err}");
        assert_eq!(fetch.held(), Some(&Generation::new("e", 1)), "{case}");
    }
}

#[test]
fn announcements_round_trip_and_refuse_garbage() {
    let announcement = Announcement {
        epoch: "e".into(),
        generation: 4,
        confirmed_at: NOW,
        checksum: Some(u64::MAX),
    };
    assert_eq!(
        Announcement::decode(&announcement.encode()),
        Some(announcement.clone())
    );
    // A fetcher from before the checksum announced none: still read, as naming no bytes.
    assert_eq!(
        Announcement::decode(br#"{"epoch":"e","generation":4,"confirmed_at":1700000000}"#),
        Some(Announcement {
            checksum: None,
            ..announcement.clone()
        })
    );
    assert_eq!(announcement.generation(), Generation::new("e", 4));
    assert_eq!(Announcement::decode(b"{\"epoch\":1}"), None);
    assert_eq!(Announcement::decode(b"\xff"), None);
}
