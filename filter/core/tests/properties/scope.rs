//! `scope::parse_scopes`: arbitrary input never panics and what parses re-parses to itself
//! through `ResourceScope::to_scope_string`; generated scopes round-trip, with the class
//! suffix, empty and repeated actions the grammar allows dropped.

use proptest::prelude::*;
use proptest::sample::select;

use registry_gate_core::scope::{
    parse_scopes, ResourceScope, ScopeError, MAX_ACTIONS, MAX_SCOPES, MAX_SCOPE_LEN,
};

use crate::config;
use crate::route::name;

/// A hostname `[a-zA-Z0-9-]+(\.[a-zA-Z0-9-]+)*` with an optional `:port` of 1 to 5 digits.
fn host() -> impl Strategy<Value = String> {
    (
        "[a-zA-Z0-9-]{1,12}(\\.[a-zA-Z0-9-]{1,12}){0,3}",
        proptest::option::of("[0-9]{1,5}"),
    )
        .prop_map(|(host, port)| match port {
            Some(port) => format!("{host}:{port}"),
            None => host,
        })
}

/// A resource name: a repository name, optionally behind `host[:port]/`, at most 255 bytes.
fn resource_name() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => name(),
        1 => (host(), name()).prop_map(|(host, name)| format!("{host}/{name}")),
    ]
    .prop_filter("resource names are at most 255 bytes", |name| {
        name.len() <= 255
    })
}

/// A distinct, non-empty action list in request order (`[a-z]+` or `*`), at most 16.
fn actions() -> impl Strategy<Value = Vec<String>> {
    let action = prop_oneof![
        4 => select(&["pull", "push", "delete", "*"][..]).prop_map(str::to_owned),
        1 => "[a-z]{1,8}",
    ];
    prop::collection::vec(action, 0..=MAX_ACTIONS).prop_map(|list| {
        let mut distinct: Vec<String> = Vec::new();
        for action in list {
            if !distinct.contains(&action) {
                distinct.push(action);
            }
        }
        distinct
    })
}

fn resource_scope() -> impl Strategy<Value = ResourceScope> {
    (
        prop_oneof![
            3 => Just("repository".to_owned()),
            1 => Just("registry".to_owned()),
            1 => "[a-z0-9]{1,10}",
        ],
        resource_name(),
        actions(),
    )
        .prop_map(|(resource_type, name, actions)| ResourceScope {
            resource_type,
            name,
            actions,
        })
}

/// A scope in a wire form the grammar allows for it: an optional `(class)` after the type,
/// and the actions with repeats and empty items mixed in, within 16 items.
fn noisy_scope_string() -> impl Strategy<Value = (ResourceScope, String)> {
    (
        resource_scope(),
        proptest::option::of("[a-z0-9]{1,8}"),
        prop::collection::vec(any::<prop::sample::Index>(), 0..MAX_ACTIONS),
    )
        .prop_map(|(scope, class, noise)| {
            let mut items = scope.actions.clone();
            for index in noise {
                if items.len() >= MAX_ACTIONS {
                    break;
                }
                // An empty item, or a repeat of an action, at some position.
                let at = index.index(items.len() + 1);
                let item = if scope.actions.is_empty() || at % 2 == 0 {
                    String::new()
                } else {
                    scope.actions[index.index(scope.actions.len())].clone()
                };
                // Insert after the first occurrence of every action so the order is kept.
                let first_seen = |item: &str| items.iter().position(|a| a == item);
                let at = match first_seen(&item) {
                    Some(first) if !item.is_empty() => at.max(first + 1),
                    _ => at,
                };
                items.insert(at.min(items.len()), item);
            }
            let class = class.map(|c| format!("({c})")).unwrap_or_default();
            let text = format!(
                "{}{class}:{}:{}",
                scope.resource_type,
                scope.name,
                items.join(",")
            );
            (scope, text)
        })
}

fn scope_list() -> impl Strategy<Value = Vec<(ResourceScope, String)>> {
    prop::collection::vec(noisy_scope_string(), 1..=MAX_SCOPES)
        .prop_filter("the joined string fits the length cap", |scopes| {
            scopes.iter().map(|(_, text)| text.len() + 1).sum::<usize>() <= MAX_SCOPE_LEN
        })
}

/// What any accepted scope list must satisfy.
fn check_accepted(input: &str, scopes: &[ResourceScope]) -> Result<(), TestCaseError> {
    prop_assert!(input.len() <= MAX_SCOPE_LEN);
    prop_assert!(!scopes.is_empty() && scopes.len() <= MAX_SCOPES);
    for scope in scopes {
        prop_assert!(scope.actions.len() <= MAX_ACTIONS);
        for (i, action) in scope.actions.iter().enumerate() {
            prop_assert!(
                action == "*"
                    || (!action.is_empty() && action.bytes().all(|b| b.is_ascii_lowercase())),
                "action {:?}",
                action
            );
            prop_assert!(
                !scope.actions[..i].contains(action),
                "repeated {:?}",
                action
            );
        }
        // What was parsed is its own canonical form.
        let text = scope.to_scope_string();
        prop_assert_eq!(parse_scopes(&text), Ok(vec![scope.clone()]), "{:?}", text);
    }
    Ok(())
}

/// Scope-ish text: the grammar's bytes, with separators over-represented.
fn scope_soup() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => select(&[
            "repository", "registry", ":", "::", "/", ",", " ", "(", ")", "*", "pull", "push",
            "localhost:5000/", "a", "0", ".", "-", "_", "__", "(class)", "",
        ][..])
        .prop_map(str::to_owned),
        1 => name(),
        1 => "[ -~]{0,3}",
    ];
    prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(config(512))]

    /// Any string: no panic; an acceptance is bounded, and each scope re-parses to itself.
    #[test]
    fn arbitrary_strings(input in any::<String>()) {
        if let Ok(scopes) = parse_scopes(&input) {
            check_accepted(&input, &scopes)?;
        }
    }

    /// Scope-ish soup reaches the acceptance paths; the same promises hold.
    #[test]
    fn scope_soup_is_consistent(input in scope_soup()) {
        if let Ok(scopes) = parse_scopes(&input) {
            check_accepted(&input, &scopes)?;
        }
    }

    /// Generated scopes round-trip: through `to_scope_string` exactly, and from a noisy wire
    /// form (class suffix, empty and repeated actions) to the same scopes.
    #[test]
    fn generated_scopes_round_trip(list in scope_list()) {
        let (want, noisy): (Vec<ResourceScope>, Vec<String>) = list.into_iter().unzip();
        let canonical: Vec<String> = want.iter().map(ResourceScope::to_scope_string).collect();
        prop_assert_eq!(parse_scopes(&canonical.join(" ")), Ok(want.clone()));
        let noisy = noisy.join(" ");
        let got = parse_scopes(&noisy);
        prop_assert_eq!(&got, &Ok(want), "{:?}", noisy);
        if let Ok(scopes) = &got {
            check_accepted(&noisy, scopes)?;
        }
    }

    /// One scope more than the cap is `TooMany`, however valid each scope is.
    #[test]
    fn more_than_the_cap_is_refused(scope in resource_scope()) {
        let text = scope.to_scope_string();
        let list = vec![text.as_str(); MAX_SCOPES + 1].join(" ");
        let want = if list.len() > MAX_SCOPE_LEN {
            Err(ScopeError::Malformed("scope string too long"))
        } else {
            Err(ScopeError::TooMany)
        };
        prop_assert_eq!(parse_scopes(&list), want);
    }
}
