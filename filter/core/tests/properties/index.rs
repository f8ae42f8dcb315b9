//! The schema-2 index against the index the filter built from JSON before it
//! ([`Reference`]): for generated contents every query the gate asks (known, public, granted
//! for each action, catalog pages from every start) answers the same, and the content comes
//! back whole. And the validator: arbitrary and mutated bytes are refused or valid, never a
//! panic, and whatever it accepts answers every query without one.

use proptest::prelude::*;
use proptest::sample::Index as Pick;

use registry_gate_core::identity::Principal;
use registry_gate_core::index::Index;
use registry_gate_core::route::Action;
use registry_gate_core::snapshot::{build_index, content_of, Content};
use registry_gate_index::layout::{carried_checksum, seal, MAGIC, TRAILER_LEN};
use registry_gate_index::Part;

use crate::config;
use crate::reference::Reference;
use crate::snapshot::scrambled_content;

/// A stamp an index accepts (the legacy generator's producers are any text).
fn stamp() -> impl Strategy<Value = registry_gate_core::snapshot::Stamp> {
    (crate::snapshot::stamp(), "[a-z-]{1,20}/[0-9.]{1,8}").prop_map(|(mut stamp, producer)| {
        stamp.producer = producer;
        stamp
    })
}

/// Everyone the content names, anonymous, and strangers (a user named like a host, a name
/// nobody has).
fn principals(content: &Content) -> Vec<Principal> {
    let mut all = vec![
        Principal::Anonymous,
        Principal::User("nobody-at-all".into()),
    ];
    for user in content.users.keys().chain(content.writers.keys()) {
        all.push(Principal::User(user.clone()));
        all.push(Principal::Host(user.clone()));
    }
    for host in content.hosts.keys() {
        all.push(Principal::Host(host.clone()));
        all.push(Principal::User(host.clone()));
    }
    all
}

/// Names to ask about: every repository, names next to them and strangers.
fn names(content: &Content) -> Vec<String> {
    let mut all: Vec<String> = vec![String::new(), "a".into(), "zzzz/zzzz".into()];
    for repository in &content.repositories {
        all.push(repository.name.clone());
        all.push(format!("{}a", repository.name));
        let mut shorter = repository.name.clone();
        shorter.pop();
        all.push(shorter);
    }
    all
}

/// Every query of the gate answers alike on both.
fn agree(content: &Content, index: &Index, reference: &Reference) -> Result<(), TestCaseError> {
    prop_assert_eq!(index.len(), reference.len());
    prop_assert_eq!(index.is_empty(), reference.is_empty());
    let names = names(content);
    for name in &names {
        prop_assert_eq!(
            index.is_public(name),
            reference.is_public(name),
            "is_public({})",
            name
        );
    }
    for who in principals(content) {
        for name in &names {
            for action in [Action::Pull, Action::Push, Action::Delete] {
                prop_assert_eq!(
                    index.permits(&who, name, action),
                    reference.permits(&who, name, action),
                    "permits({:?}, {}, {:?})",
                    who,
                    name,
                    action
                );
            }
        }
        for after in std::iter::once(None).chain(names.iter().map(|n| Some(n.as_str()))) {
            let ours: Vec<&str> = index.pullable(&who, after).collect();
            let theirs: Vec<&str> = reference.pullable(&who, after).collect();
            prop_assert_eq!(ours, theirs, "pullable({:?}, {:?})", who, after);
        }
    }
    Ok(())
}

/// Every query over an index the validator accepted, for the panic properties.
/// Asks `index` every kind of query. `checked`: it passed full validation, so a principal's
/// grants are found in it; otherwise (opened by `open_known` from bytes no full validation
/// saw) only that nothing fails is asked.
fn query_everything(index: &registry_gate_index::Index<&[u8]>, checked: bool) {
    let names: Vec<String> = index.repositories().map(|(n, _)| n.to_owned()).collect();
    for name in names.iter().map(String::as_str).chain(["", "x"]) {
        let found = index.repository(name);
        let _ = found.map(|r| index.name(r.id));
        let _ = index.first_after(name);
    }
    for part in Part::ALL {
        let principals: Vec<(String, Vec<u32>)> = index
            .principals(part)
            .map(|(p, ids)| (p.to_owned(), ids.iter().collect()))
            .collect();
        for (principal, ids) in &principals {
            let grants = index.grants(part, principal).unwrap_or_default();
            for id in ids {
                assert!(grants.contains(*id) || !checked);
            }
            let _ = index.pullable(grants, 0).count();
        }
    }
    let _ = index.keys().count();
    let _ = index.required_features().count();
    let _ = content_of(index);
}

/// Recomputes the checksum, so that a mutation reaches the validator's table checks.
fn resealed(mut bytes: Vec<u8>) -> Vec<u8> {
    seal(&mut bytes);
    bytes
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: Pick, bit: u8 },
    Word { at: Pick, value: u32 },
    Truncate { at: Pick },
    Insert { at: Pick, byte: u8 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Pick>(), 0_u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (
            any::<Pick>(),
            prop_oneof![Just(0), Just(1), Just(u32::MAX), any::<u32>()]
        )
            .prop_map(|(at, value)| Mutation::Word { at, value }),
        any::<Pick>().prop_map(|at| Mutation::Truncate { at }),
        (any::<Pick>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
    ]
}

fn mutate(bytes: &mut Vec<u8>, mutation: &Mutation) {
    if bytes.len() < 4 {
        bytes.clear();
        return;
    }
    match mutation {
        Mutation::Flip { at, bit } => {
            let at = at.index(bytes.len());
            bytes[at] ^= 1 << bit;
        }
        Mutation::Word { at, value } => {
            let at = at.index(bytes.len().saturating_sub(3)) & !3;
            bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
        }
        Mutation::Truncate { at } => bytes.truncate(at.index(bytes.len())),
        Mutation::Insert { at, byte } => bytes.insert(at.index(bytes.len()), *byte),
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// The binary index answers every query as the JSON-built index does, and gives the
    /// content back canonical.
    #[test]
    fn the_index_answers_as_the_json_built_one((canonical, scrambled) in scrambled_content(), stamp in stamp()) {
        let bytes = build_index(&canonical, &stamp).unwrap();
        let index = Index::open(bytes).unwrap();
        agree(&canonical, &index, &Reference::build(&scrambled))?;
        prop_assert_eq!(content_of(index.stored()).unwrap(), canonical);
    }

    /// Bytes that are no index are refused without a panic (with a valid frame sometimes,
    /// so the directory and tables are reached).
    #[test]
    fn arbitrary_bytes_are_refused_or_valid(body in prop::collection::vec(any::<u8>(), 0..1024), framed in any::<bool>()) {
        let bytes = if framed {
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&[0; 8]);
            bytes.extend_from_slice(&2_u16.to_le_bytes());
            bytes.extend_from_slice(&body);
            let end = bytes.len().max(64) as u64;
            if bytes.len() >= 32 {
                bytes[24..32].copy_from_slice(&end.to_le_bytes());
            }
            bytes.resize(end as usize + TRAILER_LEN, 0);
            resealed(bytes)
        } else {
            body
        };
        if let Ok(index) = registry_gate_index::Index::open(bytes.as_slice()) {
            query_everything(&index, true);
        }
    }

    /// A changed index is refused (any change before the trailer, by the checksum alone) or,
    /// with the checksum recomputed, refused or valid — never a panic, and what is valid
    /// answers every query.
    #[test]
    fn mutated_indexes_are_refused_or_valid(
        (content, _) in scrambled_content(),
        stamp in stamp(),
        mutations in prop::collection::vec(mutation(), 1..4),
        reseal in any::<bool>(),
    ) {
        let original = build_index(&content, &stamp).unwrap();
        let mut bytes = original.clone();
        for mutation in &mutations {
            mutate(&mut bytes, mutation);
        }
        let bytes = if reseal { resealed(bytes) } else { bytes };
        let unchanged_body = bytes.len() == original.len()
            && bytes[..bytes.len() - TRAILER_LEN] == original[..original.len() - TRAILER_LEN];
        match registry_gate_index::Index::open(bytes.as_slice()) {
            Ok(index) => {
                prop_assert!(reseal || unchanged_body, "a changed body passed its checksum");
                query_everything(&index, true);
            }
            Err(_) => prop_assert!(!unchanged_body, "the original body was refused"),
        }
    }

    /// What a worker opens after the fetcher validated it (`open_known`, checks of shape
    /// only): the same index as a full validation for the bytes the fetcher checked; for
    /// changed bytes carrying their own checksum, refused or queried without a failure.
    #[test]
    fn known_bytes_open_as_validated_ones_and_changed_ones_never_fail(
        (content, _) in scrambled_content(),
        stamp in stamp(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let original = build_index(&content, &stamp).unwrap();
        let sum = registry_gate_index::Index::open(original.as_slice()).unwrap().checksum();
        prop_assert_eq!(
            registry_gate_index::Index::open_known(original.as_slice(), sum),
            registry_gate_index::Index::open(original.as_slice())
        );
        prop_assert!(
            registry_gate_index::Index::open_known(original.as_slice(), sum ^ 1).is_err(),
            "another checksum than the one named"
        );
        let mut bytes = original.clone();
        for mutation in &mutations {
            mutate(&mut bytes, mutation);
        }
        let bytes = resealed(bytes);
        let named = carried_checksum(&bytes).unwrap_or(0);
        if let Ok(index) = registry_gate_index::Index::open_known(bytes.as_slice(), named) {
            query_everything(&index, false);
        }
    }
}
