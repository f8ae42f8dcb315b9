//! The 1.x JSON envelope (`snapshot::legacy::decode` and `encode`, still written for 1.x
//! fetchers and read from a store a previous sidecar wrote): arbitrary bytes and mutated
//! envelopes never panic; valid contents round-trip to their canonical form; any changed byte inside the
//! checksummed `content` is refused.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::sample::{select, Index};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use registry_gate_core::identity::MAX_PRINCIPAL_LEN;
use registry_gate_core::snapshot::legacy::{checksum, decode, encode, Snapshot, SCHEMA};
use registry_gate_core::snapshot::{Content, Repository, Stamp};
use registry_gate_core::token::{Algorithm, KeySpec};

use crate::route::name;
use crate::{config, json_value};

// ---------------------------------------------------------------------------------------
// Generators.
// ---------------------------------------------------------------------------------------

/// A principal: 1 to 255 bytes, no control character.
fn principal() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z][a-z0-9._-]{0,15}",
        2 => "\\PC{1,20}",
        1 => "[a-z]{250,255}",
    ]
    .prop_filter("principals are at most 255 bytes", |p| {
        p.len() <= MAX_PRINCIPAL_LEN
    })
}

/// Grants: principal → names picked from `names`, with repeats and in any order.
fn grants(names: Vec<String>) -> impl Strategy<Value = BTreeMap<String, Vec<String>>> {
    let pick = prop::collection::vec(any::<Index>(), 0..6);
    let size = if names.is_empty() { 0..1 } else { 0..5 };
    prop::collection::btree_map(principal(), pick, size).prop_map(move |picked| {
        picked
            .into_iter()
            .map(|(principal, picks)| {
                let repos = picks.iter().map(|i| i.get(&names).clone()).collect();
                (principal, repos)
            })
            .collect()
    })
}

/// A public Ed25519 JWK from a seed: a snapshot carries only keys that parse as public
/// EdDSA/ES256/RS256 keys (`Content::validate` parses every one), optionally with a `use`.
fn jwk() -> impl Strategy<Value = Map<String, Value>> {
    // ed25519-compact refuses the all-zero seed.
    (1_u8.., any::<bool>()).prop_map(|(seed, with_use)| {
        let pair = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([seed; 32]));
        let x = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, *pair.pk);
        let mut jwk = Map::new();
        jwk.insert("kty".into(), Value::from("OKP"));
        jwk.insert("crv".into(), Value::from("Ed25519"));
        jwk.insert("x".into(), Value::from(x));
        if with_use {
            jwk.insert("use".into(), Value::from("sig"));
        }
        jwk
    })
}

fn keys() -> impl Strategy<Value = Vec<KeySpec>> {
    let kid = prop_oneof!["[a-zA-Z0-9_-]{1,12}", "\\PC{1,10}"];
    prop::collection::btree_map(kid, jwk(), 0..4).prop_map(|keys| {
        keys.into_iter()
            .map(|(kid, jwk)| KeySpec {
                kid,
                alg: Algorithm::EdDSA,
                jwk,
            })
            .collect()
    })
}

/// A valid content in canonical form (sorted, no repeats), as `Content::validate` defines
/// validity: distinct valid repository names, grants naming only listed repositories,
/// principals of 1 to 255 bytes without control characters, distinct key ids.
pub fn canonical_content() -> impl Strategy<Value = Content> {
    prop::collection::btree_map(name(), any::<bool>(), 0..10)
        .prop_flat_map(|repositories| {
            let names: Vec<String> = repositories.keys().cloned().collect();
            (
                Just(repositories),
                grants(names.clone()),
                grants(names.clone()),
                grants(names),
                keys(),
            )
        })
        .prop_map(|(repositories, users, hosts, writers, keys)| {
            let canonical = |grants: BTreeMap<String, Vec<String>>| {
                grants
                    .into_iter()
                    .map(|(principal, repos)| {
                        let sorted: BTreeSet<String> = repos.into_iter().collect();
                        (principal, sorted.into_iter().collect())
                    })
                    .collect()
            };
            Content {
                min_token_iat: None,
                repositories: repositories
                    .into_iter()
                    .map(|(name, auth_required)| Repository {
                        name,
                        auth_required,
                    })
                    .collect(),
                users: canonical(users),
                hosts: canonical(hosts),
                writers: canonical(writers),
                keys,
            }
        })
}

/// The same content as the sidecar might hold it: lists shuffled, repositories and grants
/// repeated (identically). Returns (canonical, scrambled).
pub fn scrambled_content() -> impl Strategy<Value = (Content, Content)> {
    (
        canonical_content(),
        any::<u64>(),
        prop::collection::vec(any::<Index>(), 0..4),
    )
        .prop_map(|(canonical, seed, repeats)| {
            let mut scrambled = canonical.clone();
            let mut seed = seed;
            let mut next = move |bound: usize| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 33) as usize % bound.max(1)
            };
            for repeat in &repeats {
                if !canonical.repositories.is_empty() {
                    scrambled
                        .repositories
                        .push(repeat.get(&canonical.repositories).clone());
                }
            }
            shuffle(&mut scrambled.repositories, &mut next);
            shuffle(&mut scrambled.keys, &mut next);
            for grants in [
                &mut scrambled.users,
                &mut scrambled.hosts,
                &mut scrambled.writers,
            ] {
                for repos in grants.values_mut() {
                    if let Some(first) = repos.first().cloned() {
                        repos.push(first);
                    }
                    shuffle(repos, &mut next);
                }
            }
            (canonical, scrambled)
        })
}

fn shuffle<T>(items: &mut [T], next: &mut impl FnMut(usize) -> usize) {
    for i in (1..items.len()).rev() {
        items.swap(i, next(i + 1));
    }
}

pub fn stamp() -> impl Strategy<Value = Stamp> {
    (
        // An epoch travels in an entity tag: visible ASCII without '"'.
        "[!#-~]{1,16}",
        any::<u64>(),
        any::<u64>(),
        any::<String>(),
        any::<bool>(),
    )
        .prop_map(
            |(epoch, generation, published_at, producer, allow_empty)| Stamp {
                epoch,
                generation,
                published_at,
                producer,
                allow_empty,
            },
        )
}

/// One edit of an envelope's bytes.
#[derive(Debug, Clone)]
enum Mutation {
    Xor(Index, u8),
    Set(Index, u8),
    Delete(Index, usize),
    Insert(Index, Vec<u8>),
    Truncate(Index),
    Duplicate(Index, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 1..=255_u8).prop_map(|(at, mask)| Mutation::Xor(at, mask)),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set(at, byte)),
        (any::<Index>(), 1..16_usize).prop_map(|(at, len)| Mutation::Delete(at, len)),
        (
            any::<Index>(),
            prop_oneof![
                prop::collection::vec(any::<u8>(), 1..8),
                select(vec![" ", "\n", ",", "{", "}", "\"", "\\", "0", "null"])
                    .prop_map(|s| s.as_bytes().to_vec()),
            ]
        )
            .prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), 1..64_usize).prop_map(|(at, len)| Mutation::Duplicate(at, len)),
    ]
}

fn apply(mutation: &Mutation, bytes: &mut Vec<u8>) {
    let len = bytes.len();
    match mutation {
        Mutation::Xor(at, mask) => bytes[at.index(len)] ^= mask,
        Mutation::Set(at, byte) => bytes[at.index(len)] = *byte,
        Mutation::Delete(at, n) => {
            let start = at.index(len);
            bytes.drain(start..(start + n).min(len));
        }
        Mutation::Insert(at, new) => {
            let at = at.index(len + 1);
            bytes.splice(at..at, new.iter().copied());
        }
        Mutation::Truncate(at) => bytes.truncate(at.index(len)),
        Mutation::Duplicate(at, n) => {
            let start = at.index(len);
            let copy = bytes[start..(start + n).min(len)].to_vec();
            bytes.splice(start..start, copy);
        }
    }
}

/// Where the raw `content` value sits in an envelope, as a byte range.
fn content_range(bytes: &[u8]) -> std::ops::Range<usize> {
    #[derive(Deserialize)]
    struct Raw<'a> {
        #[serde(borrow)]
        content: &'a RawValue,
    }
    let text = std::str::from_utf8(bytes).unwrap();
    let raw: Raw<'_> = serde_json::from_str(text).unwrap();
    let start = raw.content.get().as_ptr() as usize - text.as_ptr() as usize;
    start..start + raw.content.get().len()
}

/// What every accepted snapshot must satisfy: a valid content whose exact bytes the
/// checksum names.
fn check_accepted(bytes: &[u8], snapshot: &Snapshot) -> Result<(), TestCaseError> {
    prop_assert_eq!(snapshot.content.validate(), Ok(()));
    prop_assert_eq!(snapshot.header.schema.major, SCHEMA.major);
    prop_assert!(snapshot.header.required_features.is_empty());
    let range = content_range(bytes);
    let digest = hex_sha256(&bytes[range]);
    prop_assert_eq!(&snapshot.header.checksum, &format!("sha256:{digest}"));
    Ok(())
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

proptest! {
    #![proptest_config(config(512))]

    /// Arbitrary bytes: no panic. (An acceptance would have to be a valid envelope.)
    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(snapshot) = decode(&bytes) {
            check_accepted(&bytes, &snapshot)?;
        }
    }

    /// Envelope-shaped JSON with arbitrary members and an arbitrary `content` whose checksum
    /// matches, so the content parser and validator see hostile input: no panic, and an
    /// acceptance is a valid content.
    #[test]
    fn envelopes_with_arbitrary_content(
        content in prop_oneof![
            json_value(),
            canonical_content().prop_map(|c| serde_json::to_value(c).unwrap()),
        ],
        extra in prop::collection::btree_map(
            select(&["schema", "required_features", "epoch", "generation", "published_at",
                     "producer", "checksum", "allow_empty", "other"][..]),
            json_value(),
            0..3,
        ),
        checksum_matches in any::<bool>(),
    ) {
        let content_text = serde_json::to_string(&content).unwrap();
        let checksum = if checksum_matches {
            format!("sha256:{}", hex_sha256(content_text.as_bytes()))
        } else {
            "sha256:00".to_owned()
        };
        let mut envelope = serde_json::json!({
            "schema": {"major": SCHEMA.major, "minor": SCHEMA.minor},
            "epoch": "e",
            "generation": 1,
            "published_at": 1,
            "producer": "p",
            "checksum": checksum,
        });
        for (member, value) in extra {
            envelope[member] = value;
        }
        // The content goes in as raw text, so its bytes are exactly the ones hashed above.
        let mut bytes = serde_json::to_vec(&envelope).unwrap();
        bytes.pop();
        bytes.extend_from_slice(format!(",\"content\":{content_text}}}").as_bytes());
        if let Ok(snapshot) = decode(&bytes) {
            check_accepted(&bytes, &snapshot)?;
        }
    }

    /// encode then decode gives the canonical content and the stamp back, whatever order
    /// and repeats the content was built with; equal contents encode to equal bytes.
    #[test]
    fn valid_contents_round_trip((canonical, scrambled) in scrambled_content(), stamp in stamp()) {
        let bytes = encode(&scrambled, &stamp);
        prop_assert!(bytes.is_ok(), "{:?}", bytes);
        let bytes = bytes.unwrap();
        let canonical_bytes = encode(&canonical, &stamp);
        prop_assert_eq!(canonical_bytes.as_ref(), Ok(&bytes), "canonical bytes");
        let snapshot = decode(&bytes);
        prop_assert!(snapshot.is_ok(), "{:?}", snapshot);
        let snapshot = snapshot.unwrap();
        prop_assert_eq!(&snapshot.content, &canonical);
        let header = &snapshot.header;
        prop_assert_eq!(header.schema, SCHEMA);
        prop_assert_eq!(&header.epoch, &stamp.epoch);
        prop_assert_eq!(header.generation, stamp.generation);
        prop_assert_eq!(header.published_at, stamp.published_at);
        prop_assert_eq!(&header.producer, &stamp.producer);
        prop_assert_eq!(header.allow_empty, stamp.allow_empty);
        prop_assert_eq!(Ok(header.checksum.clone()), checksum(&scrambled));
        check_accepted(&bytes, &snapshot)?;
    }

    /// One random edit anywhere in a valid envelope: no panic, and an acceptance still
    /// carries exactly the original content (only envelope fields outside it can change).
    #[test]
    fn mutated_envelopes(content in canonical_content(), stamp in stamp(), edit in mutation()) {
        let mut bytes = encode(&content, &stamp).unwrap();
        apply(&edit, &mut bytes);
        if let Ok(snapshot) = decode(&bytes) {
            prop_assert_eq!(&snapshot.content, &content, "after {:?}", edit);
            check_accepted(&bytes, &snapshot)?;
        }
    }

    /// Any changed byte inside `content` is refused: the checksum covers its exact bytes.
    /// With the checksum recomputed (a writer bug, not an attack), the altered content
    /// reaches the parser and validator: no panic, and an acceptance is valid.
    #[test]
    fn changed_content_byte_is_refused(
        content in canonical_content(),
        stamp in stamp(),
        at in any::<Index>(),
        mask in 1..=255_u8,
    ) {
        let mut bytes = encode(&content, &stamp).unwrap();
        let range = content_range(&bytes);
        let at = range.start + at.index(range.len());
        bytes[at] ^= mask;
        let got = decode(&bytes);
        prop_assert!(
            matches!(&got, Err(e) if matches!(e.reason(), "checksum_mismatch" | "malformed")),
            "byte {} of content changed: {:?}", at - range.start, got
        );

        let Ok(text) = std::str::from_utf8(&bytes[range.clone()]) else {
            return Ok(());
        };
        let fixed = format!("sha256:{}", hex_sha256(text.as_bytes()));
        let mut envelope: Value = serde_json::from_slice(&encode(&content, &stamp).unwrap()).unwrap();
        envelope["checksum"] = Value::String(fixed);
        envelope.as_object_mut().unwrap().remove("content");
        let mut refixed = serde_json::to_vec(&envelope).unwrap();
        refixed.pop();
        refixed.extend_from_slice(format!(",\"content\":{text}}}").as_bytes());
        if let Ok(snapshot) = decode(&refixed) {
            check_accepted(&refixed, &snapshot)?;
        }
    }
}
