#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;

const NOW: u64 = 1_700_000_000_000;
const SETTINGS: LeaseSettings = LeaseSettings { duration_ms: 5_000 };

fn lease(holder: &str, expires_at_ms: u64) -> Vec<u8> {
    Lease {
        holder: holder.into(),
        expires_at_ms,
    }
    .encode()
}

/// What a row expects: the kind of move, and for writes the lease written.
#[derive(Debug, PartialEq, Eq)]
enum Want {
    Hold,
    Leave,
    Renew { expires_at_ms: u64 },
    Take { expires_at_ms: u64 },
}

fn kind(decided: &Move, me: &str) -> Want {
    let written = |bytes: &[u8]| {
        let lease = Lease::decode(bytes).unwrap();
        assert_eq!(lease.holder, me, "a write always names the writer");
        lease.expires_at_ms
    };
    match decided {
        Move::Hold => Want::Hold,
        Move::Leave => Want::Leave,
        Move::Renew(bytes) => Want::Renew {
            expires_at_ms: written(bytes),
        },
        Move::Take(bytes) => Want::Take {
            expires_at_ms: written(bytes),
        },
    }
}

struct Row {
    case: &'static str,
    current: Option<Vec<u8>>,
    now_ms: u64,
    want: Want,
}

#[test]
fn decisions() {
    let renewed = NOW + SETTINGS.duration_ms;
    let rows = [
        Row {
            case: "no lease yet",
            current: None,
            now_ms: NOW,
            want: Want::Take {
                expires_at_ms: renewed,
            },
        },
        Row {
            case: "empty placeholder",
            current: Some(vec![]),
            now_ms: NOW,
            want: Want::Take {
                expires_at_ms: renewed,
            },
        },
        Row {
            case: "garbage bytes are a free lease",
            current: Some(b"\xff\x00{not json".to_vec()),
            now_ms: NOW,
            want: Want::Take {
                expires_at_ms: renewed,
            },
        },
        Row {
            case: "unknown field is a free lease",
            current: Some(br#"{"holder":"b","expires_at_ms":1700000001000,"x":1}"#.to_vec()),
            now_ms: NOW,
            want: Want::Take {
                expires_at_ms: renewed,
            },
        },
        Row {
            case: "negative expiry is a free lease",
            current: Some(br#"{"holder":"b","expires_at_ms":-1}"#.to_vec()),
            now_ms: NOW,
            want: Want::Take {
                expires_at_ms: renewed,
            },
        },
        Row {
            case: "empty holder is a free lease",
            current: Some(lease("", NOW + 4_000)),
            now_ms: NOW,
            want: Want::Take {
                expires_at_ms: renewed,
            },
        },
        Row {
            case: "another's live lease",
            current: Some(lease("b", NOW + 4_000)),
            now_ms: NOW,
            want: Want::Leave,
        },
        Row {
            case: "another's lease one millisecond before expiry",
            current: Some(lease("b", NOW + 1)),
            now_ms: NOW,
            want: Want::Leave,
        },
        Row {
            case: "another's lease at its expiry is free",
            current: Some(lease("b", NOW)),
            now_ms: NOW,
            want: Want::Take {
                expires_at_ms: renewed,
            },
        },
        Row {
            case: "another's long-expired lease",
            current: Some(lease("b", NOW - 60_000)),
            now_ms: NOW,
            want: Want::Take {
                expires_at_ms: renewed,
            },
        },
        Row {
            case: "another's lease running for exactly one duration",
            current: Some(lease("b", NOW + SETTINGS.duration_ms)),
            now_ms: NOW,
            want: Want::Leave,
        },
        Row {
            case: "clock went back: another's lease claims more than one duration",
            current: Some(lease("b", NOW + SETTINGS.duration_ms + 1)),
            now_ms: NOW,
            want: Want::Take {
                expires_at_ms: renewed,
            },
        },
        Row {
            case: "mine, fresh",
            current: Some(lease("me", NOW + 4_000)),
            now_ms: NOW,
            want: Want::Hold,
        },
        Row {
            case: "mine, just over half left",
            current: Some(lease("me", NOW + 2_501)),
            now_ms: NOW,
            want: Want::Hold,
        },
        Row {
            case: "mine, half left: renew",
            current: Some(lease("me", NOW + 2_500)),
            now_ms: NOW,
            want: Want::Renew {
                expires_at_ms: renewed,
            },
        },
        Row {
            case: "mine, expired (timer stalled): renew by CAS",
            current: Some(lease("me", NOW - 10)),
            now_ms: NOW,
            want: Want::Renew {
                expires_at_ms: renewed,
            },
        },
        Row {
            case: "clock went back: mine claims more than one duration",
            current: Some(lease("me", NOW + 3_600_000)),
            now_ms: NOW,
            want: Want::Renew {
                expires_at_ms: renewed,
            },
        },
        Row {
            case: "host clock unavailable (0): another's lease from before is not trusted",
            current: Some(lease("b", NOW)),
            now_ms: 0,
            want: Want::Take {
                expires_at_ms: SETTINGS.duration_ms,
            },
        },
        Row {
            case: "host clock unavailable (0): a lease written at 0 stays live",
            current: Some(lease("b", SETTINGS.duration_ms)),
            now_ms: 0,
            want: Want::Leave,
        },
        Row {
            case: "end of time: the expiry saturates",
            current: None,
            now_ms: u64::MAX - 1,
            want: Want::Take {
                expires_at_ms: u64::MAX,
            },
        },
        Row {
            case: "end of time: a saturated lease of mine is renewed",
            current: Some(lease("me", u64::MAX)),
            now_ms: u64::MAX - 1,
            want: Want::Renew {
                expires_at_ms: u64::MAX,
            },
        },
    ];
    for row in rows {
        let decided = decide(row.current.as_deref(), "me", row.now_ms, SETTINGS);
        assert_eq!(kind(&decided, "me"), row.want, "{}", row.case);
    }
}

/// Envoy's shared data for one key: a value and its CAS token; a write with a stale token
/// fails, every write takes a new token.
#[derive(Debug, Default)]
struct Store {
    value: Option<Vec<u8>>,
    cas: u32,
}

impl Store {
    fn get(&self) -> (Option<Vec<u8>>, u32) {
        (self.value.clone(), self.cas)
    }

    fn set(&mut self, value: &[u8], cas: u32) -> bool {
        if cas != self.cas {
            return false;
        }
        self.value = Some(value.to_vec());
        self.cas += 1;
        true
    }
}

/// One contender's timer tick, as the glue runs it: read, decide, write with the CAS read.
/// Returns whether it holds the lease afterwards.
fn tick(store: &mut Store, me: &str, now_ms: u64) -> bool {
    let (value, cas) = store.get();
    match decide(value.as_deref(), me, now_ms, SETTINGS) {
        Move::Hold => true,
        Move::Leave => false,
        Move::Renew(bytes) | Move::Take(bytes) => store.set(&bytes, cas),
    }
}

fn holder(store: &Store) -> Option<String> {
    store
        .value
        .as_deref()
        .and_then(Lease::decode)
        .map(|lease| lease.holder)
}

#[test]
fn of_two_contenders_only_the_cas_winner_holds() {
    let mut store = Store::default();
    // Both read the same free lease and token before either writes.
    let (value, cas) = store.get();
    let a = decide(value.as_deref(), "a", NOW, SETTINGS);
    let b = decide(value.as_deref(), "b", NOW, SETTINGS);
    let (Move::Take(a), Move::Take(b)) = (a, b) else {
        panic!("both should take a free lease");
    };
    assert!(store.set(&a, cas), "first write lands");
    assert!(!store.set(&b, cas), "second write is a CAS mismatch");
    assert_eq!(holder(&store).as_deref(), Some("a"));
    // On their next ticks the winner holds and the loser leaves it.
    assert!(tick(&mut store, "a", NOW + 100));
    assert!(!tick(&mut store, "b", NOW + 100));
}

#[test]
fn a_renewing_holder_keeps_the_lease_against_contenders() {
    let mut store = Store::default();
    assert!(tick(&mut store, "a", NOW));
    // Ticks every 100 ms for a minute: a renews, b, c and d never get it.
    for step in 1..600 {
        let now = NOW + step * 100;
        assert!(
            tick(&mut store, "a", now),
            "a lost the lease at +{step}00 ms"
        );
        for other in ["b", "c", "d"] {
            assert!(!tick(&mut store, other, now), "{other} took a live lease");
        }
    }
    assert_eq!(holder(&store).as_deref(), Some("a"));
}

#[test]
fn a_contender_takes_over_after_the_holder_stops_renewing() {
    let mut store = Store::default();
    assert!(tick(&mut store, "a", NOW));
    // a stops ticking (its VM is gone or stuck); b keeps trying every 100 ms.
    let mut took_at = None;
    for step in 1..200 {
        let now = NOW + step * 100;
        if tick(&mut store, "b", now) {
            took_at = Some(now);
            break;
        }
    }
    let took_at = took_at.expect("b never took the abandoned lease");
    assert!(
        took_at >= NOW + SETTINGS.duration_ms,
        "b took the lease at +{} ms, before it expired",
        took_at - NOW
    );
    assert!(took_at <= NOW + SETTINGS.duration_ms + 100);
    assert_eq!(holder(&store).as_deref(), Some("b"));
    // a comes back: it sees b's live lease and stops fetching.
    assert!(!tick(&mut store, "a", took_at + 50));
    assert!(tick(&mut store, "b", took_at + 100));
}

#[test]
fn malformed_lease_bytes_are_taken_over_without_a_panic() {
    let mut store = Store::default();
    for garbage in [
        &b""[..],
        b"null",
        b"[]",
        b"{}",
        b"\xc3\x28",
        b"{\"holder\":7}",
    ] {
        store.value = Some(garbage.to_vec());
        store.cas += 1;
        assert!(tick(&mut store, "a", NOW), "{garbage:?}");
        assert_eq!(holder(&store).as_deref(), Some("a"));
    }
}
