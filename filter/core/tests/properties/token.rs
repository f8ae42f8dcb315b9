//! `token::verify`: arbitrary strings and byte soup are refused without a panic; structured
//! tokens (random protected headers and claims, duplicate and escaped member names, odd JSON
//! types, times around `now` up to the i64 extremes, random `aud` and `access` shapes) signed
//! with real keys made here are accepted exactly when an oracle written from the documented
//! rules says so; a changed byte of a valid token is never accepted.
//!
//! The oracle restates the rules of `token.rs`'s module docs and of [`VerifierSettings`],
//! not its code. Where the rules leave a reading open (a fractional or out-of-calendar
//! NumericDate), the oracle lists every plausible reading and the verdict must match one.

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jwt_compact::alg::{Hs256, Hs256Key};
use jwt_compact::{Algorithm as _, AlgorithmSignature as _};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use serde_json::{json, Map, Value};

use registry_gate_core::scope::{AccessEntry, MAX_ACCESS_ENTRIES, MAX_ACTIONS};
use registry_gate_core::token::{verify, Algorithm, KeyRing, KeySpec, Verified, VerifierSettings};

use crate::{config, json_value};

const NOW: u64 = 1_700_000_000;
const ISSUER: &str = "https://registry-gate.test/token";
const AUDIENCE: &str = "registry.test";

/// Years 1 to 9999 in unix seconds: every NumericDate in this range must decode exactly.
/// Outside it (but within i64) a verifier may or may not represent the date.
const CALENDAR: std::ops::RangeInclusive<i128> = -62_135_596_800..=253_402_300_799;

// ---------------------------------------------------------------------------------------
// Keys, made at test time from fixed seeds.
// ---------------------------------------------------------------------------------------

struct Fixture {
    ring: KeyRing,
    ed1: ed25519_compact::KeyPair,
    ed2: ed25519_compact::KeyPair,
    /// Not in the ring.
    stranger: ed25519_compact::KeyPair,
    hs: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let pair =
            |byte: u8| ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([byte; 32]));
        let (ed1, ed2, stranger) = (pair(1), pair(2), pair(3));
        let hs: Vec<u8> = (0..32).map(|i| i * 7 + 1).collect();
        let ed_spec = |kid: &str, pair: &ed25519_compact::KeyPair| KeySpec {
            kid: kid.to_owned(),
            alg: Algorithm::EdDSA,
            jwk: object(json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&pair.pk[..])})),
        };
        let specs = vec![
            ed_spec("ed-1", &ed1),
            ed_spec("ed-2", &ed2),
            KeySpec {
                kid: "hs-1".to_owned(),
                alg: Algorithm::HS256,
                jwk: object(json!({"kty": "oct", "k": b64(&hs)})),
            },
        ];
        Fixture {
            ring: KeyRing::from_specs(&specs).unwrap(),
            ed1,
            ed2,
            stranger,
            hs,
        }
    })
}

/// The ring's keys: kid → the one algorithm it is bound to.
const RING: &[(&str, &str)] = &[("ed-1", "EdDSA"), ("ed-2", "EdDSA"), ("hs-1", "HS256")];

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Who signs the signing input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signer {
    /// The ring's key `ed-1`.
    Ed1,
    /// The ring's key `ed-2`.
    Ed2,
    /// An Ed25519 key the ring does not have.
    Stranger,
    /// HS256 with the ring's secret `hs-1`.
    Hs,
    /// HS256 with `ed-1`'s public key bytes as the secret (key confusion, attack case B2).
    HsWithEdPublicKey,
    /// 64 bytes that sign nothing.
    Garbage,
}

impl Signer {
    fn sign(self, input: &[u8]) -> Vec<u8> {
        let fixture = fixture();
        let hmac = |secret: &[u8]| {
            Hs256
                .sign(&Hs256Key::new(secret), input)
                .as_bytes()
                .into_owned()
        };
        match self {
            Signer::Ed1 => fixture.ed1.sk.sign(input, None).to_vec(),
            Signer::Ed2 => fixture.ed2.sk.sign(input, None).to_vec(),
            Signer::Stranger => fixture.stranger.sk.sign(input, None).to_vec(),
            Signer::Hs => hmac(&fixture.hs),
            Signer::HsWithEdPublicKey => hmac(&fixture.ed1.pk[..]),
            Signer::Garbage => vec![0x5a; 64],
        }
    }

    /// The ring key (kid, alg) whose signature this is, if any.
    fn ring_key(self) -> Option<(&'static str, &'static str)> {
        match self {
            Signer::Ed1 => Some(("ed-1", "EdDSA")),
            Signer::Ed2 => Some(("ed-2", "EdDSA")),
            Signer::Hs => Some(("hs-1", "HS256")),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Structured tokens.
// ---------------------------------------------------------------------------------------

/// A NumericDate member as written in the JSON text.
#[derive(Debug, Clone)]
enum Time {
    /// An integer literal, possibly beyond i64 or u64.
    Int(i128),
    Float(f64),
    /// Not a number at all.
    Other(Value),
}

impl Time {
    fn text(&self) -> String {
        match self {
            Time::Int(t) => t.to_string(),
            Time::Float(f) => serde_json::to_string(f).unwrap(),
            Time::Other(value) => value.to_string(),
        }
    }

    fn from_value(value: &Value) -> Time {
        match value {
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => Time::Int(i.into()),
                (_, Some(u), _) => Time::Int(u.into()),
                (_, _, Some(f)) => Time::Float(f),
                _ => Time::Other(value.clone()),
            },
            other => Time::Other(other.clone()),
        }
    }

    /// Every reading the rules allow: `Some(seconds)` or `None` for "not a usable date".
    /// A NumericDate is a JSON number of seconds (RFC 7519 §2); a fraction may be dropped
    /// either way, and a date outside years 1–9999 may be unrepresentable.
    fn readings(&self) -> Vec<Option<i128>> {
        let mut readings = Vec::new();
        let (low, high) = match self {
            Time::Int(t) if i64::try_from(*t).is_ok() => (*t, *t),
            Time::Float(f) if f.abs() < 9.2e18 => (f.floor() as i128, f.ceil() as i128),
            // An arbitrary JSON value that happens to be a number is read as one.
            Time::Other(value) if value.is_number() => {
                return match Time::from_value(value) {
                    number @ (Time::Int(_) | Time::Float(_)) => number.readings(),
                    Time::Other(_) => vec![None],
                }
            }
            _ => return vec![None],
        };
        for t in [low, high] {
            if !readings.contains(&Some(t)) {
                readings.push(Some(t));
            }
        }
        if !CALENDAR.contains(&low) || !CALENDAR.contains(&high) {
            readings.push(None);
        }
        readings
    }
}

/// A member value as written.
#[derive(Debug, Clone)]
enum Member {
    Json(Value),
    Time(Time),
}

impl Member {
    fn text(&self) -> String {
        match self {
            Member::Json(value) => value.to_string(),
            Member::Time(time) => time.text(),
        }
    }

    fn value(&self) -> Value {
        match self {
            Member::Json(value) => value.clone(),
            Member::Time(time) => serde_json::from_str(&time.text()).unwrap_or(Value::Null),
        }
    }

    fn time(&self) -> Time {
        match self {
            Member::Json(value) => Time::from_value(value),
            Member::Time(time) => time.clone(),
        }
    }
}

/// One segment's decoded bytes, as generated.
#[derive(Debug, Clone)]
enum Segment {
    /// An object written member by member: (name, escape mask for the name, value).
    /// Names may repeat, and may be spelled with `\uXXXX` escapes.
    Members(Vec<(String, Vec<bool>, Member)>),
    /// Any JSON value, written by serde_json.
    Json(Value),
    /// Any bytes.
    Bytes(Vec<u8>),
}

impl Segment {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Segment::Members(members) => {
                let members: Vec<String> = members
                    .iter()
                    .map(|(name, escapes, value)| {
                        format!("{}:{}", spell(name, escapes), value.text())
                    })
                    .collect();
                format!("{{{}}}", members.join(",")).into_bytes()
            }
            Segment::Json(value) => serde_json::to_vec(value).unwrap(),
            Segment::Bytes(bytes) => bytes.clone(),
        }
    }

    /// The members as a JSON parser sees them: `None` if the segment is not a JSON object
    /// or repeats a member name (RFC 7515 §4, RFC 8725 §3.7: such a token is refused).
    fn object(&self) -> Option<Vec<(String, Member)>> {
        let members: Vec<(String, Member)> = match self {
            Segment::Members(members) => members
                .iter()
                .map(|(name, _, value)| (name.clone(), value.clone()))
                .collect(),
            Segment::Json(Value::Object(map)) => map
                .iter()
                .map(|(name, value)| (name.clone(), Member::Json(value.clone())))
                .collect(),
            Segment::Json(_) => return None,
            // Arbitrary bytes are an object only by accident; the caller treats that as
            // "no expectation" rather than guessing how duplicates would parse.
            Segment::Bytes(_) => return None,
        };
        for (i, (name, _)) in members.iter().enumerate() {
            if members[..i].iter().any(|(seen, _)| seen == name) {
                return None;
            }
        }
        Some(members)
    }
}

/// A JSON string literal for `name`, with the characters the mask selects as `\uXXXX`.
fn spell(name: &str, escapes: &[bool]) -> String {
    let mut out = String::from("\"");
    for (i, c) in name.chars().enumerate() {
        let escape = escapes.get(i).copied().unwrap_or(false);
        if escape || c == '"' || c == '\\' || c.is_control() {
            let mut units = [0_u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    out.push('"');
    out
}

#[derive(Debug, Clone)]
struct Case {
    settings: VerifierSettings,
    now: u64,
    header: Segment,
    payload: Segment,
    signer: Signer,
}

impl Case {
    fn token(&self) -> String {
        let input = format!(
            "{}.{}",
            b64(&self.header.bytes()),
            b64(&self.payload.bytes())
        );
        let signature = self.signer.sign(input.as_bytes());
        format!("{input}.{}", b64(&signature))
    }
}

fn settings() -> impl Strategy<Value = VerifierSettings> {
    (
        prop_oneof![
            8 => Just(Algorithm::ALL.to_vec()),
            1 => prop::sample::subsequence(Algorithm::ALL.to_vec(), 0..=4),
        ],
        select(&[0_u64, 60, 300][..]),
        prop_oneof![
            3 => Just(3600_u64),
            1 => select(&[60_u64, 86_400, u64::MAX][..]),
        ],
        select(&[8 * 1024_usize, 64 * 1024][..]),
    )
        .prop_map(
            |(algorithms, leeway_secs, max_lifetime_secs, max_token_bytes)| VerifierSettings {
                issuer: ISSUER.to_owned(),
                audience: AUDIENCE.to_owned(),
                algorithms,
                leeway_secs,
                max_token_bytes,
                max_lifetime_secs,
            },
        )
}

fn now() -> impl Strategy<Value = u64> {
    prop_oneof![
        40 => Just(NOW),
        1 => any::<u64>(),
        1 => select(&[0, u64::MAX, i64::MAX as u64][..]),
    ]
}

/// A member name: usually the wanted one, sometimes another JOSE or JWT name.
fn json_string(wanted: &'static [&'static str]) -> impl Strategy<Value = Value> {
    select(wanted).prop_map(|s| Value::String(s.to_owned()))
}

/// Members of a protected header, most of them valid, each sometimes off.
fn header_members() -> BoxedStrategy<Vec<(String, Member)>> {
    let alg = prop_oneof![
        12 => json_string(&["EdDSA", "HS256"]),
        2 => json_string(&["ES256", "RS256", "none", "None", "eddsa", "EdDSA ", "HS256\u{0}", "", "HS512"]),
        1 => json_value(),
    ];
    let kid = prop_oneof![
        12 => json_string(&["ed-1", "ed-2", "hs-1"]),
        2 => json_string(&["ed-3", "", "../../etc/passwd", "ED-1", "ed-1 "]),
        1 => json_value(),
    ];
    // Mostly a ring key's own (alg, kid) pair, else each drawn on its own.
    let alg_kid = prop_oneof![
        30 => select(RING).prop_map(|(kid, alg)| (Some(json!(alg)), Some(json!(kid)))),
        1 => (prop::option::weighted(0.95, alg), prop::option::weighted(0.95, kid)),
    ];
    let typ = prop_oneof![
        40 => json_string(&["JWT"]),
        2 => json_string(&["jwt", "Jwt", "at+jwt", "JOSE", "JWT "]),
        1 => json_value(),
    ];
    let forbidden = prop::collection::vec(
        (
            select(
                &[
                    "jwk", "jku", "x5u", "x5c", "x5t", "crit", "zip", "cty", "b64", "enc",
                ][..],
            ),
            json_value(),
        ),
        0..2,
    );
    (
        alg_kid,
        prop::option::weighted(0.6, typ),
        prop::option::weighted(0.04, forbidden),
    )
        .prop_map(|((alg, kid), typ, forbidden)| {
            let mut members = Vec::new();
            if let Some(alg) = alg {
                members.push(("alg".to_owned(), Member::Json(alg)));
            }
            if let Some(kid) = kid {
                members.push(("kid".to_owned(), Member::Json(kid)));
            }
            if let Some(typ) = typ {
                members.push(("typ".to_owned(), Member::Json(typ)));
            }
            for (name, value) in forbidden.unwrap_or_default() {
                members.push((name.to_owned(), Member::Json(value)));
            }
            members
        })
        .boxed()
}

/// A NumericDate: mostly `NOW` plus an offset from `usual`, sometimes anything.
fn time(usual: std::ops::Range<i128>) -> BoxedStrategy<Time> {
    let near = prop_oneof![
        12 => usual,
        1 => -5000_i128..5000,
        1 =>
        select(&[0_i128, -1, 1, -59, -60, -61, 59, 60, 61, -300, -301, 300, 301, 3600, 3601,
                 3660, 3661, 86_400, 86_401][..]),
    ];
    prop_oneof![
        60 => near.clone().prop_map(|offset| Time::Int(i128::from(NOW) + offset)),
        1 => select(vec![
            i128::from(i64::MIN), i128::from(i64::MAX), i128::from(i64::MAX) + 1,
            i128::from(u64::MAX), i128::from(u64::MAX) + 1, i128::from(i64::MIN) - 1,
            *CALENDAR.end(), *CALENDAR.end() + 1, *CALENDAR.start(), *CALENDAR.start() - 1,
            0, -1, 8_210_266_876_799, 8_210_266_876_800,
        ])
        .prop_map(Time::Int),
        1 => (near, select(&[0.0, 0.25, 0.5, 0.999, -0.5][..]))
            .prop_map(|(offset, fraction)| Time::Float(NOW as f64 + offset as f64 + fraction)),
        1 => select(&[1e300, -1e300, 9.3e18, -9.3e18, 1e19, 0.5, -0.0][..]).prop_map(Time::Float),
        1 => prop_oneof![
            Just(Value::Null),
            json_string(&["1700000300", ""]),
            json_value(),
        ]
        .prop_map(Time::Other),
    ]
    .boxed()
}

/// One `access` entry: mostly well-formed, sometimes with extra, missing or mistyped fields.
fn access_entry() -> BoxedStrategy<Value> {
    let action = prop_oneof![
        80 => json_string(&["pull", "push", "delete", "*", ""]),
        1 => json_value(),
    ];
    let actions = prop_oneof![
        20 => prop::collection::vec(action.clone(), 0..4),
        1 => prop::collection::vec(action, MAX_ACTIONS - 1..=MAX_ACTIONS + 1),
    ];
    let entry = (
        prop_oneof![30 => json_string(&["repository"]), 1 => json_string(&["registry", "Repository", ""])],
        prop_oneof![30 => json_string(&["team/app", "team/other"]), 1 => json_value()],
        prop_oneof![30 => actions.prop_map(Value::Array), 1 => json_string(&["pull,push"])],
    )
        .prop_map(|(t, name, actions)| json!({"type": t, "name": name, "actions": actions}));
    prop_oneof![
        60 => entry.clone(),
        1 => (entry.clone(), "[a-z]{1,4}", json_value()).prop_map(|(mut entry, extra, value)| {
            entry[extra] = value;
            entry
        }),
        1 => (entry, select(&["type", "name", "actions"][..])).prop_map(|(mut entry, gone)| {
            entry.as_object_mut().unwrap().remove(gone);
            entry
        }),
        1 => json_value(),
    ]
    .boxed()
}

fn access() -> BoxedStrategy<Value> {
    let ok_entry = json!({"type": "repository", "name": "team/app", "actions": ["pull"]});
    prop_oneof![
        30 => prop::collection::vec(access_entry(), 0..4).prop_map(Value::Array),
        1 => (MAX_ACCESS_ENTRIES - 1..=MAX_ACCESS_ENTRIES + 1)
            .prop_map(move |n| Value::Array(vec![ok_entry.clone(); n])),
        1 => json_value(),
    ]
    .boxed()
}

fn audience() -> BoxedStrategy<Value> {
    prop_oneof![
        60 => Just(json!(AUDIENCE)),
        20 => Just(json!([AUDIENCE])),
        1 => Just(json!([AUDIENCE, AUDIENCE])),
        1 => Just(json!(["other", AUDIENCE])),
        1 => Just(json!([])),
        1 => Just(json!("registry.test ")),
        1 => Just(json!("REGISTRY.TEST")),
        1 => json_value(),
    ]
    .boxed()
}

/// Claims members, most of them valid, each sometimes off.
fn claim_members() -> BoxedStrategy<Vec<(String, Member)>> {
    let iss = prop_oneof![
        40 => Just(json!(ISSUER)),
        1 => json_string(&["https://registry-gate.test/token/", "", "https://registry-gate.test/TOKEN"]),
        1 => json_value(),
    ];
    let sub = prop_oneof![30 => json_string(&["alice", "", "bob"]), 1 => json_value()];
    let jti = prop_oneof![30 => json_string(&["token-1"]), 1 => json_value()];
    (
        prop::option::weighted(0.99, iss),
        prop::option::weighted(0.9, sub),
        prop::option::weighted(0.99, audience()),
        prop::option::weighted(0.98, time(-100..3000)),
        prop::option::weighted(0.6, time(-3000..100)),
        prop::option::weighted(0.6, time(-3000..100)),
        prop::option::weighted(0.3, jti),
        prop::option::weighted(0.8, access()),
    )
        .prop_map(|(iss, sub, aud, exp, nbf, iat, jti, access)| {
            let mut members = Vec::new();
            let mut push = |name: &str, member: Option<Member>| {
                if let Some(member) = member {
                    members.push((name.to_owned(), member));
                }
            };
            push("iss", iss.map(Member::Json));
            push("sub", sub.map(Member::Json));
            push("aud", aud.map(Member::Json));
            push("exp", exp.map(Member::Time));
            push("nbf", nbf.map(Member::Time));
            push("iat", iat.map(Member::Time));
            push("jti", jti.map(Member::Json));
            push("access", access.map(Member::Json));
            members
        })
        .boxed()
}

/// Members as written: extra members, maybe one name repeated, in some order, with names
/// sometimes spelled with escapes.
fn written(
    members: impl Strategy<Value = Vec<(String, Member)>>,
    known: &'static [&'static str],
) -> impl Strategy<Value = Segment> {
    (
        members,
        prop::collection::vec(
            (
                prop_oneof![
                    1 => select(known).prop_map(str::to_owned),
                    30 => "[a-z]{1,4}",
                    10 => "\\PC{0,4}",
                ],
                json_value(),
            ),
            0..3,
        ),
        prop::option::weighted(
            0.04,
            (
                any::<Index>(),
                prop_oneof![Just(None), json_value().prop_map(Some)],
            ),
        ),
        any::<u64>(),
        prop::collection::vec(prop::bool::weighted(0.05), 0..16),
    )
        .prop_map(|(mut members, extra, repeat, order, escapes)| {
            members.extend(
                extra
                    .into_iter()
                    .map(|(name, value)| (name, Member::Json(value))),
            );
            if let (Some((index, value)), false) = (repeat, members.is_empty()) {
                let (name, original) = index.get(&members).clone();
                members.push((name, value.map_or(original, Member::Json)));
            }
            // A cheap deterministic shuffle driven by `order`.
            let mut state = order;
            for i in (1..members.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                members.swap(i, (state >> 33) as usize % (i + 1));
            }
            Segment::Members(
                members
                    .into_iter()
                    .map(|(name, value)| (name, escapes.clone(), value))
                    .collect(),
            )
        })
}

fn segment(
    members: impl Strategy<Value = Vec<(String, Member)>>,
    known: &'static [&'static str],
) -> impl Strategy<Value = Segment> {
    prop_oneof![
        60 => written(members, known),
        1 => json_value().prop_map(Segment::Json),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Segment::Bytes),
    ]
}

const HEADER_NAMES: &[&str] = &["alg", "kid", "typ", "crit", "jwk", "x5c", "zip"];
const CLAIM_NAMES: &[&str] = &["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "access"];

fn case() -> BoxedStrategy<Case> {
    (
        settings(),
        now(),
        segment(header_members(), HEADER_NAMES),
        segment(claim_members(), CLAIM_NAMES),
        prop_oneof![
            30 => Just(None),
            1 => select(&[Signer::Stranger, Signer::HsWithEdPublicKey, Signer::Garbage,
                          Signer::Ed1, Signer::Ed2, Signer::Hs][..]).prop_map(Some),
        ],
    )
        .prop_map(|(settings, now, header, payload, signer)| {
            // Usually the signer the header's kid names, so that signatures verify.
            let signer = signer.unwrap_or_else(|| {
                let kid = header.object().and_then(|members| {
                    members
                        .into_iter()
                        .find(|(name, _)| name == "kid")
                        .map(|(_, kid)| kid.value())
                });
                match kid.as_ref().and_then(Value::as_str) {
                    Some("ed-2") => Signer::Ed2,
                    Some("hs-1") => Signer::Hs,
                    _ => Signer::Ed1,
                }
            });
            Case {
                settings,
                now,
                header,
                payload,
                signer,
            }
        })
        .boxed()
}

// ---------------------------------------------------------------------------------------
// The oracle.
// ---------------------------------------------------------------------------------------

/// Every outcome the documented rules allow: `None` is a refusal.
fn oracle(case: &Case, token: &str) -> Vec<Option<Verified>> {
    let refuse = vec![None];
    let settings = &case.settings;
    if token.len() > settings.max_token_bytes {
        return refuse;
    }
    // The protected header: a JSON object without repeated members; `alg` an exact,
    // allowed name; no key material, `crit`, `zip` or `cty`; `typ` absent or "JWT" (a
    // case-insensitive media type, RFC 7515 §4.1.9); `kid` a string naming a ring key bound
    // to exactly that algorithm; and the signature of that key.
    let Some(header) = case.header.object() else {
        return refuse;
    };
    let get = |name: &str| {
        header
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m.value())
    };
    let Some(Value::String(alg)) = get("alg") else {
        return refuse;
    };
    let allowed = settings.algorithms.iter().any(|a| a.name() == alg);
    let forbidden = ["jwk", "jku", "x5u", "x5c", "crit", "zip", "cty"]
        .iter()
        .any(|name| get(name).is_some());
    let typ_ok = match get("typ") {
        None => true,
        Some(Value::String(typ)) => typ.eq_ignore_ascii_case("JWT"),
        Some(_) => false,
    };
    let Some(Value::String(kid)) = get("kid") else {
        return refuse;
    };
    let bound = RING.contains(&(kid.as_str(), alg.as_str()));
    let signed = case.signer.ring_key() == Some((kid.as_str(), alg.as_str()));
    if !allowed || forbidden || !typ_ok || !bound || !signed {
        return refuse;
    }

    // The claims: only now, after the signature. A JSON object without repeated members;
    // `iss` exactly the issuer; `aud` exactly the audience (one string, or a list of just
    // it); `sub` a string if present; `jti` a string or null if present; `access` absent,
    // null, or a list of at most 64 entries {type, name, actions} (nothing else, strings,
    // at most 16 actions).
    let claims = match (&case.payload, case.payload.object()) {
        (_, Some(claims)) => claims,
        (Segment::Bytes(bytes), None) => {
            // Bytes that happen to parse as a JSON object: no expectation beyond the
            // safety invariants. Anything else is refused.
            return match serde_json::from_slice::<Value>(bytes) {
                Ok(Value::Object(_)) => Vec::new(),
                _ => refuse,
            };
        }
        _ => return refuse,
    };
    let get = |name: &str| {
        claims
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m.clone())
    };
    let value = |name: &str| get(name).map(|m| m.value());
    if value("iss") != Some(Value::String(ISSUER.to_owned())) {
        return refuse;
    }
    let audience_ok = match value("aud") {
        Some(Value::String(aud)) => aud == AUDIENCE,
        Some(Value::Array(auds)) => auds == [json!(AUDIENCE)],
        _ => false,
    };
    if !audience_ok {
        return refuse;
    }
    let subject = match value("sub") {
        None => String::new(),
        Some(Value::String(sub)) => sub,
        Some(_) => return refuse,
    };
    if !matches!(value("jti"), None | Some(Value::Null | Value::String(_))) {
        return refuse;
    }
    let access = match value("access") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let mut entries = Vec::new();
            for item in items {
                match access_entry_of(&item) {
                    Some(entry) => entries.push(entry),
                    None => return refuse,
                }
            }
            if entries.len() > MAX_ACCESS_ENTRIES
                || entries.iter().any(|e| e.actions.len() > MAX_ACTIONS)
            {
                return refuse;
            }
            Some(entries)
        }
        Some(_) => return refuse,
    };

    // Times, in every reading.
    let readings = |name: &str| {
        get(name).map_or(vec![Some(None)], |m| {
            m.time()
                .readings()
                .into_iter()
                .map(|r| r.map(Some))
                .collect()
        })
    };
    let now = i128::from(case.now);
    let leeway = i128::from(settings.leeway_secs);
    let max_lifetime = i128::from(settings.max_lifetime_secs);
    let mut outcomes = Vec::new();
    for exp in readings("exp") {
        for nbf in readings("nbf") {
            for iat in readings("iat") {
                // `None` here: present but not a usable date, so the token is refused.
                let (Some(exp), Some(nbf), Some(iat)) = (exp, nbf, iat) else {
                    outcomes.push(None);
                    continue;
                };
                let Some(exp) = exp else {
                    outcomes.push(None); // exp is required
                    continue;
                };
                let expired = exp + leeway < now;
                let early = nbf.is_some_and(|nbf| nbf - leeway > now)
                    || iat.is_some_and(|iat| iat - leeway > now);
                let too_long = match iat.or(nbf) {
                    Some(start) => exp - start > max_lifetime,
                    None => exp - now > max_lifetime + leeway,
                };
                outcomes.push((!expired && !early && !too_long).then(|| Verified {
                    issued_at: iat.and_then(|iat| u64::try_from(iat).ok()),
                    subject: subject.clone(),
                    access: access.clone(),
                    expires_at: u64::try_from(exp.max(0)).unwrap_or(u64::MAX),
                }));
            }
        }
    }
    outcomes
}

fn access_entry_of(item: &Value) -> Option<AccessEntry> {
    let Value::Object(entry) = item else {
        return None;
    };
    if entry.len() != 3 {
        return None;
    }
    let string = |v: &Value| v.as_str().map(str::to_owned);
    Some(AccessEntry {
        resource_type: string(entry.get("type")?)?,
        name: string(entry.get("name")?)?,
        actions: entry
            .get("actions")?
            .as_array()?
            .iter()
            .map(string)
            .collect::<Option<Vec<_>>>()?,
    })
}

/// What any acceptance must satisfy, checked straight from the token text, independently
/// of the oracle: an allowed algorithm bound to a known kid, no repeated or key-carrying
/// header member, the exact issuer and audience, an `exp` not past the leeway.
fn check_accepted(
    settings: &VerifierSettings,
    token: &str,
    now: u64,
    got: &Verified,
) -> Result<(), TestCaseError> {
    let parts: Vec<&str> = token.split('.').collect();
    prop_assert_eq!(parts.len(), 3);
    let decode = |s: &str| -> Map<String, Value> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap()
    };
    let (header, claims) = (decode(parts[0]), decode(parts[1]));
    let alg = header["alg"].as_str().unwrap_or_default();
    let kid = header["kid"].as_str().unwrap_or_default();
    prop_assert!(
        settings.algorithms.iter().any(|a| a.name() == alg),
        "alg {:?}",
        alg
    );
    prop_assert!(
        RING.contains(&(kid, alg)),
        "kid {:?} with alg {:?}",
        kid,
        alg
    );
    for name in ["jwk", "jku", "x5u", "x5c", "crit", "zip", "cty"] {
        prop_assert!(!header.contains_key(name), "header member {}", name);
    }
    prop_assert_eq!(&claims["iss"], &json!(ISSUER));
    prop_assert!(claims["aud"] == json!(AUDIENCE) || claims["aud"] == json!([AUDIENCE]));
    prop_assert!(claims.contains_key("exp"), "no exp");
    let exp = claims["exp"].as_f64().unwrap_or(f64::NAN);
    prop_assert!(
        exp + settings.leeway_secs as f64 + 1.0 >= now as f64,
        "exp {} at {}",
        exp,
        now
    );
    prop_assert!(got.expires_at as f64 + settings.leeway_secs as f64 >= now as f64);
    Ok(())
}

/// A valid token and what it verifies to: EdDSA or HS256, times around `NOW`.
fn valid_token() -> impl Strategy<Value = (String, Verified)> {
    (
        select(&[Signer::Ed1, Signer::Ed2, Signer::Hs][..]),
        "\\PC{0,12}",
        -300_i64..0,
        1_i64..3000,
        prop::collection::vec(
            (
                "[a-z]{1,8}(/[a-z]{1,8}){0,2}",
                prop::collection::vec("pull|push|\\*", 0..4),
            ),
            0..4,
        ),
    )
        .prop_map(|(signer, sub, issued, lifetime, access)| {
            let (kid, alg) = signer.ring_key().unwrap();
            let iat = NOW as i64 + issued;
            let exp = NOW as i64 + lifetime;
            let access: Vec<AccessEntry> = access
                .into_iter()
                .map(|(name, actions)| AccessEntry {
                    resource_type: "repository".to_owned(),
                    name,
                    actions,
                })
                .collect();
            let header = json!({"typ": "JWT", "alg": alg, "kid": kid});
            let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": iat,
                                "exp": exp, "access": access});
            let input = format!(
                "{}.{}",
                b64(&serde_json::to_vec(&header).unwrap()),
                b64(&serde_json::to_vec(&claims).unwrap())
            );
            let token = format!("{input}.{}", b64(&signer.sign(input.as_bytes())));
            let verified = Verified {
                issued_at: u64::try_from(iat).ok(),
                subject: sub,
                access: Some(access),
                expires_at: exp as u64,
            };
            (token, verified)
        })
}

fn default_settings() -> VerifierSettings {
    VerifierSettings {
        issuer: ISSUER.to_owned(),
        audience: AUDIENCE.to_owned(),
        algorithms: Algorithm::ALL.to_vec(),
        leeway_secs: 60,
        max_token_bytes: 8 * 1024,
        max_lifetime_secs: 3600,
    }
}

/// Base64url-alphabet text with many dots: the splitter's worst case.
fn dotted() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![3 => Just(".".to_owned()), 1 => "[A-Za-z0-9_-]{0,8}"],
        0..400,
    )
    .prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(config(2048))]

    /// Any string is refused, under settings that let long inputs reach the splitter.
    #[test]
    fn arbitrary_strings_are_refused(token in any::<String>(), settings in settings()) {
        prop_assert!(verify(&settings, &fixture().ring, &token, NOW).is_err());
    }

    /// Byte soup, decoded lossily (so invalid UTF-8 becomes U+FFFD), is refused.
    #[test]
    fn byte_soup_is_refused(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let token = String::from_utf8_lossy(&bytes);
        prop_assert!(verify(&default_settings(), &fixture().ring, &token, NOW).is_err());
    }

    /// Base64url text with many dots, and three random segments, are refused.
    #[test]
    fn dotted_and_segmented_text_is_refused(
        dotted in dotted(),
        segments in prop::collection::vec("[A-Za-z0-9_-]{0,90}", 3),
    ) {
        let ring = &fixture().ring;
        prop_assert!(verify(&default_settings(), ring, &dotted, NOW).is_err());
        prop_assert!(verify(&default_settings(), ring, &segments.join("."), NOW).is_err());
    }

    /// Structured tokens: the verdict is one the oracle allows, and an acceptance passes the
    /// independent safety checks.
    #[test]
    fn structured_tokens_match_the_oracle(case in case()) {
        let token = case.token();
        let got = verify(&case.settings, &fixture().ring, &token, case.now);
        let allowed = oracle(&case, &token);
        let got_outcome = got.clone().ok();
        prop_assert!(
            allowed.is_empty() || allowed.contains(&got_outcome),
            "verify gave {:?}; the rules allow {:?}\nheader {}\nclaims {}",
            got, allowed,
            String::from_utf8_lossy(&case.header.bytes()),
            String::from_utf8_lossy(&case.payload.bytes()),
        );
        if let Ok(verified) = &got {
            check_accepted(&case.settings, &token, case.now, verified)?;
        }
    }

    /// A valid token verifies; a changed byte of its text, or of its decoded header, payload
    /// or signature, is refused.
    #[test]
    fn changed_bytes_are_refused(
        (token, verified) in valid_token(),
        at in any::<Index>(),
        mask in 1..=255_u8,
        segment in 0..3_usize,
    ) {
        let ring = &fixture().ring;
        let settings = default_settings();
        prop_assert_eq!(verify(&settings, ring, &token, NOW), Ok(verified));

        let mut text = token.clone().into_bytes();
        let i = at.index(text.len());
        text[i] ^= mask;
        let changed = String::from_utf8_lossy(&text);
        let got = verify(&settings, ring, &changed, NOW);
        prop_assert!(got.is_err(), "text byte {} ^ {:#x}: {:?}", i, mask, got);

        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut bytes = URL_SAFE_NO_PAD.decode(&parts[segment]).unwrap();
        let j = at.index(bytes.len());
        bytes[j] ^= mask;
        parts[segment] = b64(&bytes);
        let got = verify(&settings, ring, &parts.join("."), NOW);
        prop_assert!(got.is_err(), "segment {} byte {} ^ {:#x}: {:?}", segment, j, mask, got);
    }
}

proptest! {
    #![proptest_config(config(16))]

    /// Huge inputs (up to 1 MiB of dots, base64url text, or three long base64url segments):
    /// refused, under the default 8 KiB cap and under a cap that lets them through to the
    /// splitter and the decoders.
    #[test]
    fn huge_inputs_are_refused(
        unit in prop_oneof![Just(".".to_owned()), "[A-Za-z0-9_.-]{1,16}", "\\PC{1,4}"],
        len in 8 * 1024..=1024 * 1024_usize,
    ) {
        let token: String = unit.repeat(len / unit.len() + 1);
        let segment = "eyJ".repeat(len / 9 + 1);
        let segments = format!("{segment}.{segment}.{segment}");
        let mut settings = default_settings();
        for token in [&token, &segments] {
            settings.max_token_bytes = 8 * 1024;
            prop_assert!(verify(&settings, &fixture().ring, token, NOW).is_err());
            settings.max_token_bytes = usize::MAX;
            prop_assert!(verify(&settings, &fixture().ring, token, NOW).is_err());
        }
    }
}

/// The structured generator is worth its cases: a fair share of tokens are accepted, and a
/// fair share of those the oracle calls certain are refused, so both verdicts are tested.
#[test]
fn structured_generator_covers_both_verdicts() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let strategy = case();
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..400 {
        let case = strategy.new_tree(&mut runner).unwrap().current();
        let token = case.token();
        match verify(&case.settings, &fixture().ring, &token, case.now) {
            Ok(_) => accepted += 1,
            Err(_) => refused += 1,
        }
    }
    assert!(accepted >= 40, "only {accepted} of 400 accepted");
    assert!(refused >= 40, "only {refused} of 400 refused");
}
