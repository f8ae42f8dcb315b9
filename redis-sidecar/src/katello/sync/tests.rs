//! Tables for decoding every Katello push (the bodies of `katello-wire.md` §1.3 and their JSON
//! equivalents, the edge cases, every error message) and for each change's replace semantics,
//! then properties: form and JSON bodies of one payload decode alike, no body panics, and
//! applying any change to any valid content stays valid and is idempotent.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::sample::Index;
use registry_gate_core::snapshot::{Content, Repository};
use serde_json::{json, Value};

use super::*;
use crate::katello::form::FormLimits;
use crate::katello::wire::{
    rest_client_encode, BUSYBOX, FEDORA, HOST, HOST_REPOSITORY_MAPPING, NGINX, REPOSITORY_LIST,
    USER_REPOSITORY_MAPPING,
};

const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
const JSON: Option<&str> = Some("application/json; charset=utf-8");

fn repository(name: &str, auth_required: bool) -> Repository {
    Repository {
        name: name.to_owned(),
        auth_required,
    }
}

fn grants(rows: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    rows.iter()
        .map(|(principal, names)| {
            let names = names.iter().map(|name| (*name).to_owned()).collect();
            ((*principal).to_owned(), names)
        })
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

fn decode_default(
    endpoint: Endpoint,
    body: &[u8],
    content_type: Option<&str>,
) -> Result<Change, SyncError> {
    decode(endpoint, body, content_type, &FormLimits::default())
}

struct Decodes {
    case: &'static str,
    endpoint: Endpoint,
    body: String,
    content_type: Option<&'static str>,
    want: Change,
}

#[test]
fn decodes_table() {
    let repositories =
        Change::Repositories(vec![repository(BUSYBOX, true), repository(NGINX, false)]);
    let users = Change::Users(grants(&[
        ("admin", &[BUSYBOX]),
        ("jdoe@example.com", &[BUSYBOX, NGINX]),
    ]));
    let host_grants = grants(&[(HOST, &[BUSYBOX, FEDORA])]);
    let rows = [
        Decodes {
            case: "repository_list example",
            endpoint: Endpoint::RepositoryList,
            body: REPOSITORY_LIST.into(),
            content_type: FORM,
            want: repositories.clone(),
        },
        Decodes {
            case: "repository_list example without a content type",
            endpoint: Endpoint::RepositoryList,
            body: REPOSITORY_LIST.into(),
            content_type: None,
            want: repositories.clone(),
        },
        Decodes {
            case: "repository_list as JSON",
            endpoint: Endpoint::RepositoryList,
            body: json!({"repositories": [
                {"repository": NGINX, "auth_required": false},
                {"repository": BUSYBOX, "auth_required": true},
            ]})
            .to_string(),
            content_type: JSON,
            want: repositories.clone(),
        },
        Decodes {
            case: "repository_list with text flags in any case, as JSON",
            endpoint: Endpoint::RepositoryList,
            body: json!({"repositories": [
                {"repository": NGINX, "auth_required": "False"},
                {"repository": BUSYBOX, "auth_required": "TRUE"},
            ]})
            .to_string(),
            content_type: Some("Application/JSON"),
            want: repositories.clone(),
        },
        Decodes {
            case: "exact duplicates and unknown keys are ignored",
            endpoint: Endpoint::RepositoryList,
            body: format!(
                "{REPOSITORY_LIST}&{REPOSITORY_LIST}&repositories[][repository]=acme_corp%2Fcontainers%2Fbusybox&repositories[][auth_required]=true&repositories[][label]=x&extra=1"
            ),
            content_type: FORM,
            want: repositories.clone(),
        },
        Decodes {
            case: "empty repository list: bare key",
            endpoint: Endpoint::RepositoryList,
            body: "repositories".into(),
            content_type: FORM,
            want: Change::Repositories(Vec::new()),
        },
        Decodes {
            case: "empty repository list: JSON",
            endpoint: Endpoint::RepositoryList,
            body: r#"{"repositories":[]}"#.into(),
            content_type: JSON,
            want: Change::Repositories(Vec::new()),
        },
        Decodes {
            case: "empty repository list: JSON null",
            endpoint: Endpoint::RepositoryList,
            body: r#"{"repositories":null}"#.into(),
            content_type: JSON,
            want: Change::Repositories(Vec::new()),
        },
        Decodes {
            case: "user_repository_mapping example",
            endpoint: Endpoint::UserRepositoryMapping,
            body: USER_REPOSITORY_MAPPING.into(),
            content_type: FORM,
            want: users.clone(),
        },
        Decodes {
            case: "user_repository_mapping as JSON, one hash per login",
            endpoint: Endpoint::UserRepositoryMapping,
            body: json!({"users": [
                {"admin": [{"repository": BUSYBOX, "auth_required": true}]},
                {"jdoe@example.com": [
                    {"repository": BUSYBOX, "auth_required": true},
                    {"repository": NGINX, "auth_required": false},
                ]},
            ]})
            .to_string(),
            content_type: JSON,
            want: users.clone(),
        },
        Decodes {
            case: "a login named twice gets the union",
            endpoint: Endpoint::UserRepositoryMapping,
            body: json!({"users": [
                {"admin": [{"repository": BUSYBOX, "auth_required": true}]},
                {"jdoe@example.com": [{"repository": NGINX, "auth_required": false}]},
                {"jdoe@example.com": [{"repository": BUSYBOX, "auth_required": true}]},
            ]})
            .to_string(),
            content_type: JSON,
            want: users.clone(),
        },
        Decodes {
            case: "user with no repositories",
            endpoint: Endpoint::UserRepositoryMapping,
            body: "users[][admin]".into(),
            content_type: FORM,
            want: Change::Users(grants(&[("admin", &[])])),
        },
        Decodes {
            case: "user with no repositories, JSON null and empty",
            endpoint: Endpoint::UserRepositoryMapping,
            body: r#"{"users":[{"admin":null},{"bob":[]}]}"#.into(),
            content_type: JSON,
            want: Change::Users(grants(&[("admin", &[]), ("bob", &[])])),
        },
        Decodes {
            case: "host_repository_mapping example",
            endpoint: Endpoint::HostRepositoryMapping,
            body: HOST_REPOSITORY_MAPPING.into(),
            content_type: FORM,
            want: Change::HostGrants(host_grants.clone()),
        },
        Decodes {
            case: "update_host_repositories: the same shape",
            endpoint: Endpoint::UpdateHostRepositories,
            body: HOST_REPOSITORY_MAPPING.into(),
            content_type: FORM,
            want: Change::SomeHostGrants(host_grants.clone()),
        },
        Decodes {
            case: "host_repository_mapping as JSON",
            endpoint: Endpoint::HostRepositoryMapping,
            body: json!({"hosts": [{HOST: [
                {"repository": FEDORA, "auth_required": true},
                {"repository": BUSYBOX, "auth_required": true},
            ]}]})
            .to_string(),
            content_type: JSON,
            want: Change::HostGrants(host_grants.clone()),
        },
        Decodes {
            case: "host with no repositories",
            endpoint: Endpoint::HostRepositoryMapping,
            body: "hosts[][uuid-1]".into(),
            content_type: FORM,
            want: Change::HostGrants(grants(&[("uuid-1", &[])])),
        },
        Decodes {
            case: "update_hosts",
            endpoint: Endpoint::UpdateHosts,
            body: "hosts[][uuid]=u1&hosts[][uuid]=u2".into(),
            content_type: FORM,
            want: Change::Hosts(set(&["u1", "u2"])),
        },
        Decodes {
            case: "update_hosts skips nil and empty uuids",
            endpoint: Endpoint::UpdateHosts,
            body: "hosts[][uuid]&hosts[][uuid]=u1&hosts[][uuid]=".into(),
            content_type: FORM,
            want: Change::Hosts(set(&["u1"])),
        },
        Decodes {
            case: "update_hosts as JSON skips null, empty and absent uuids",
            endpoint: Endpoint::UpdateHosts,
            body: r#"{"hosts":[{"uuid":"u1"},{"uuid":null},{"uuid":""},{},{"uuid":"u2","name":"x"}]}"#
                .into(),
            content_type: JSON,
            want: Change::Hosts(set(&["u1", "u2"])),
        },
        Decodes {
            case: "update_hosts: no hosts",
            endpoint: Endpoint::UpdateHosts,
            body: "hosts".into(),
            content_type: FORM,
            want: Change::Hosts(BTreeSet::new()),
        },
    ];
    for row in rows {
        let got = decode_default(row.endpoint, row.body.as_bytes(), row.content_type);
        match got {
            Ok(change) => assert_eq!(change, row.want, "case {}", row.case),
            Err(error) => panic!("case {}: {error}", row.case),
        }
    }
}

struct Refuses {
    case: &'static str,
    endpoint: Endpoint,
    body: &'static str,
    content_type: Option<&'static str>,
    want: &'static str,
}

#[test]
fn refuses_table() {
    let rows = [
        Refuses {
            case: "another content type",
            endpoint: Endpoint::RepositoryList,
            body: REPOSITORY_LIST,
            content_type: Some("text/plain"),
            want: r#"content type "text/plain" is not accepted: send application/x-www-form-urlencoded or application/json"#,
        },
        Refuses {
            case: "a JSON body sent as a form",
            endpoint: Endpoint::RepositoryList,
            body: r#"{"repositories":[]}"#,
            content_type: None,
            want: "repositories is missing (send an empty list to clear it)",
        },
        Refuses {
            case: "an empty form",
            endpoint: Endpoint::UserRepositoryMapping,
            body: "",
            content_type: FORM,
            want: "users is missing (send an empty list to clear it)",
        },
        Refuses {
            case: "an empty JSON object",
            endpoint: Endpoint::UpdateHosts,
            body: "{}",
            content_type: JSON,
            want: "hosts is missing (send an empty list to clear it)",
        },
        Refuses {
            case: "an empty JSON body",
            endpoint: Endpoint::RepositoryList,
            body: "",
            content_type: JSON,
            want: "JSON body: EOF while parsing a value at line 1 column 0",
        },
        Refuses {
            case: "a malformed form",
            endpoint: Endpoint::RepositoryList,
            body: "repositories[][repository]=%",
            content_type: FORM,
            want: r#"form body: invalid %-encoding in "%""#,
        },
        Refuses {
            case: "a form type conflict",
            endpoint: Endpoint::UserRepositoryMapping,
            body: "users=x&users[][admin]",
            content_type: FORM,
            want: "form body: expected Array (got String) for param `users`",
        },
        Refuses {
            case: "a JSON list body",
            endpoint: Endpoint::RepositoryList,
            body: "[]",
            content_type: JSON,
            want: "body: expected an object, got a list",
        },
        Refuses {
            case: "top-level text",
            endpoint: Endpoint::RepositoryList,
            body: "repositories=x",
            content_type: FORM,
            want: "repositories: expected a list, got a string",
        },
        Refuses {
            case: "an invalid repository name",
            endpoint: Endpoint::RepositoryList,
            body: r#"{"repositories":[{"repository":"ok","auth_required":true},{"repository":"Foo","auth_required":true}]}"#,
            content_type: JSON,
            want: r#"repositories[1].repository: "Foo" is not a valid repository name"#,
        },
        Refuses {
            case: "every missing field",
            endpoint: Endpoint::RepositoryList,
            body: "repositories[][label]=x",
            content_type: FORM,
            want: "repositories[0].repository is missing; repositories[0].auth_required is missing",
        },
        Refuses {
            case: "a bare entry",
            endpoint: Endpoint::RepositoryList,
            body: "repositories[]",
            content_type: FORM,
            want: "repositories[0]: expected an object, got null",
        },
        Refuses {
            case: "bare fields",
            endpoint: Endpoint::RepositoryList,
            body: "repositories[][repository]&repositories[][auth_required]",
            content_type: FORM,
            want: "repositories[0].repository: expected a string, got null; repositories[0].auth_required: expected true or false, got null",
        },
        Refuses {
            case: "auth_required neither true nor false",
            endpoint: Endpoint::RepositoryList,
            body: "repositories[][repository]=a&repositories[][auth_required]=yes",
            content_type: FORM,
            want: r#"repositories[0].auth_required: "yes" is not true or false"#,
        },
        Refuses {
            case: "auth_required a number",
            endpoint: Endpoint::RepositoryList,
            body: r#"{"repositories":[{"repository":"a","auth_required":1}]}"#,
            content_type: JSON,
            want: "repositories[0].auth_required: expected true or false, got a number",
        },
        Refuses {
            case: "a repository listed with both flags",
            endpoint: Endpoint::RepositoryList,
            body: "repositories[][repository]=a&repositories[][auth_required]=true&repositories[][repository]=b&repositories[][auth_required]=true&repositories[][repository]=a&repositories[][auth_required]=false",
            content_type: FORM,
            want: r#"repositories[2].auth_required: "a" is already listed at repositories[0] with auth_required true"#,
        },
        Refuses {
            case: "an invalid login",
            endpoint: Endpoint::UserRepositoryMapping,
            body: "users[][bad%01]",
            content_type: FORM,
            want: r#"users[0]: "bad\u{1}" is not a valid login"#,
        },
        Refuses {
            case: "a user's repositories as text",
            endpoint: Endpoint::UserRepositoryMapping,
            body: "users[][admin]=x",
            content_type: FORM,
            want: r#"users[0]["admin"]: expected a list, got a string"#,
        },
        Refuses {
            case: "an invalid name in a user's list",
            endpoint: Endpoint::UserRepositoryMapping,
            body: "users[][jdoe%40example.com][][repository]=Bad&users[][jdoe%40example.com][][auth_required]=true",
            content_type: FORM,
            want: r#"users[0]["jdoe@example.com"][0].repository: "Bad" is not a valid repository name"#,
        },
        Refuses {
            case: "a user element that is not a hash",
            endpoint: Endpoint::UserRepositoryMapping,
            body: r#"{"users":["admin"]}"#,
            content_type: JSON,
            want: r#"users[0]: expected an object, got a string"#,
        },
        Refuses {
            case: "an invalid host uuid in a mapping",
            endpoint: Endpoint::UpdateHostRepositories,
            body: "hosts[][a%0Ab]",
            content_type: FORM,
            want: r#"hosts[0]: "a\nb" is not a valid host UUID"#,
        },
        Refuses {
            case: "an invalid host uuid",
            endpoint: Endpoint::UpdateHosts,
            body: "hosts[][uuid]=a%0Ab",
            content_type: FORM,
            want: r#"hosts[0].uuid: "a\nb" is not a valid host UUID"#,
        },
        Refuses {
            case: "a host uuid that is a number",
            endpoint: Endpoint::UpdateHosts,
            body: r#"{"hosts":[{"uuid":"u1"},{"uuid":7}]}"#,
            content_type: JSON,
            want: "hosts[1].uuid: expected a string, got a number",
        },
        Refuses {
            case: "a host element that is not a hash",
            endpoint: Endpoint::UpdateHosts,
            body: "hosts[]=u1",
            content_type: FORM,
            want: "hosts[0]: expected an object, got a string",
        },
    ];
    for row in rows {
        let got = decode_default(row.endpoint, row.body.as_bytes(), row.content_type)
            .map_err(|error| error.to_string());
        assert_eq!(got, Err(row.want.to_owned()), "case {}", row.case);
    }
}

#[test]
fn many_problems_are_bounded() {
    let entries: Vec<Value> = (0..25)
        .map(|_| json!({"repository": "Bad", "auth_required": true}))
        .collect();
    let body = json!({ "repositories": entries }).to_string();
    let error = decode_default(Endpoint::RepositoryList, body.as_bytes(), JSON).unwrap_err();
    assert_eq!(error.reason(), "invalid");
    let SyncError::Invalid { problems, total } = &error else {
        panic!("{error}");
    };
    assert_eq!((problems.len(), *total), (SHOWN_PROBLEMS, 25));
    let message = error.to_string();
    assert!(message.starts_with(r#"repositories[0].repository: "Bad" is not"#));
    assert!(message.contains(r#"repositories[19].repository"#));
    assert!(!message.contains(r#"repositories[20]"#));
    assert!(message.ends_with("; and 5 more problems"), "{message}");
}

#[test]
fn form_limits_apply() {
    let limits = FormLimits {
        max_params: 3,
        ..FormLimits::default()
    };
    let error = decode(
        Endpoint::RepositoryList,
        REPOSITORY_LIST.as_bytes(),
        None,
        &limits,
    );
    assert_eq!(
        error.map_err(|e| e.to_string()),
        Err("form body: the body has more than 3 parameters".to_owned())
    );
}

#[test]
fn endpoints_are_named_by_their_segment() {
    let names: Vec<&str> = Endpoint::ALL.iter().map(|e| e.name()).collect();
    assert_eq!(
        names,
        [
            "repository_list",
            "user_repository_mapping",
            "update_hosts",
            "host_repository_mapping",
            "update_host_repositories",
        ]
    );
    for endpoint in Endpoint::ALL {
        assert_eq!(Endpoint::from_path_segment(endpoint.name()), Some(endpoint));
    }
    for other in ["", "users", "repository_list/", "Repository_List", "v2"] {
        assert_eq!(Endpoint::from_path_segment(other), None, "{other:?}");
    }
}

// ---------------------------------------------------------------------------------------
// apply.
// ---------------------------------------------------------------------------------------

/// Repositories a, b (both need grants) and c (public); alice and bob, hosts h1 and h2,
/// alice writes to a.
fn current() -> Content {
    Content {
        min_token_iat: None,
        repositories: vec![
            repository("a", true),
            repository("b", true),
            repository("c", false),
        ],
        users: grants(&[("alice", &["a", "b"]), ("bob", &["c"])]),
        hosts: grants(&[("h1", &["a"]), ("h2", &["b"])]),
        writers: grants(&[("alice", &["a", "b"])]),
        keys: Vec::new(),
    }
}

struct Applies {
    case: &'static str,
    change: Change,
    want: Content,
    dropped: usize,
}

#[test]
fn applies_table() {
    let rows = [
        Applies {
            case: "repository_list keeps the grants of remaining repositories",
            change: Change::Repositories(vec![
                repository("a", false),
                repository("c", true),
                repository("d", true),
            ]),
            want: Content {
                repositories: vec![
                    repository("a", false),
                    repository("c", true),
                    repository("d", true),
                ],
                users: grants(&[("alice", &["a"]), ("bob", &["c"])]),
                hosts: grants(&[("h1", &["a"]), ("h2", &[])]),
                writers: grants(&[("alice", &["a"])]),
                ..current()
            },
            dropped: 3,
        },
        Applies {
            case: "repository_list with the same names changes no grant",
            change: Change::Repositories(vec![
                repository("a", true),
                repository("b", false),
                repository("c", false),
            ]),
            want: Content {
                repositories: vec![
                    repository("a", true),
                    repository("b", false),
                    repository("c", false),
                ],
                ..current()
            },
            dropped: 0,
        },
        Applies {
            case: "an empty repository_list empties every grant, principals stay",
            change: Change::Repositories(Vec::new()),
            want: Content { min_token_iat: None,
                repositories: Vec::new(),
                users: grants(&[("alice", &[]), ("bob", &[])]),
                hosts: grants(&[("h1", &[]), ("h2", &[])]),
                writers: grants(&[("alice", &[])]),
                keys: Vec::new(),
            },
            dropped: 7,
        },
        Applies {
            case: "user_repository_mapping replaces the named users' grants, keeps the others, drops unknown repositories",
            change: Change::Users(grants(&[("alice", &["b", "zzz"]), ("carol", &[])])),
            want: Content {
                users: grants(&[("alice", &["b"]), ("bob", &["c"]), ("carol", &[])]),
                ..current()
            },
            dropped: 1,
        },
        Applies {
            case: "update_hosts keeps listed hosts' grants, adds and removes hosts",
            change: Change::Hosts(set(&["h2", "h3"])),
            want: Content {
                hosts: grants(&[("h2", &["b"]), ("h3", &[])]),
                ..current()
            },
            dropped: 0,
        },
        Applies {
            case: "host_repository_mapping replaces every host's grants",
            change: Change::HostGrants(grants(&[("h1", &["b"]), ("h3", &["a", "zzz"])])),
            want: Content {
                hosts: grants(&[("h1", &["b"]), ("h2", &[]), ("h3", &["a"])]),
                ..current()
            },
            dropped: 1,
        },
        Applies {
            case: "update_host_repositories replaces the listed hosts' grants only",
            change: Change::SomeHostGrants(grants(&[("h1", &["c"]), ("h3", &["b"])])),
            want: Content {
                hosts: grants(&[("h1", &["c"]), ("h2", &["b"]), ("h3", &["b"])]),
                ..current()
            },
            dropped: 0,
        },
    ];
    for row in rows {
        let applied = apply(&row.change, &current());
        assert_eq!(applied.content, row.want, "case {}", row.case);
        assert_eq!(applied.dropped, row.dropped, "case {}", row.case);
        assert_eq!(applied.content.validate(), Ok(()), "case {}", row.case);
        let again = apply(&row.change, &applied.content);
        assert_eq!(
            again.content, applied.content,
            "case {}: idempotent",
            row.case
        );
    }
}

#[test]
fn decoded_examples_apply_end_to_end() {
    let limits = FormLimits::default();
    let mut content = Content::default();
    for (endpoint, body) in [
        (Endpoint::RepositoryList, REPOSITORY_LIST),
        (Endpoint::UserRepositoryMapping, USER_REPOSITORY_MAPPING),
        (
            Endpoint::UpdateHosts,
            "hosts[][uuid]=6f1e0a8c-3b7d-4f2a-9c55-0d2e8b1a7f34",
        ),
        (Endpoint::HostRepositoryMapping, HOST_REPOSITORY_MAPPING),
    ] {
        let change = decode(endpoint, body.as_bytes(), FORM, &limits).unwrap();
        content = apply(&change, &content).content;
        assert_eq!(content.validate(), Ok(()), "after {}", endpoint.name());
    }
    assert_eq!(users(&content), ["admin", "jdoe@example.com"]);
    assert_eq!(
        content.users,
        grants(&[
            ("admin", &[BUSYBOX]),
            ("jdoe@example.com", &[BUSYBOX, NGINX])
        ])
    );
    // fedora is not in the repository list: the host keeps busybox only.
    assert_eq!(content.hosts, grants(&[(HOST, &[BUSYBOX])]));
}

#[test]
fn users_lists_logins_sorted() {
    let content = Content {
        users: grants(&[("zed", &[]), ("Alice", &[]), ("bob", &[])]),
        writers: grants(&[("writer-only", &[])]),
        ..Content::default()
    };
    assert_eq!(users(&content), ["Alice", "bob", "zed"]);
    assert!(users(&Content::default()).is_empty());
}

// ---------------------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------------------

/// A repository name; often one of a few, so that pushes and contents share names.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec!["a", "b", "c/d", "e_f/g"]).prop_map(String::from),
        "[a-z0-9]{1,5}(_[a-z0-9]{1,3})?(/[a-z0-9]{1,5}){0,2}",
    ]
}

fn principal() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9._-]{0,10}(@example\\.com)?",
        "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{12}",
    ]
}

fn entries() -> impl Strategy<Value = Vec<(String, bool)>> {
    prop::collection::vec((name(), any::<bool>()), 0..4)
}

fn entry_values(entries: &[(String, bool)]) -> Vec<Value> {
    entries
        .iter()
        .map(|(name, flag)| json!({"repository": name, "auth_required": flag}))
        .collect()
}

/// A valid Katello push as Katello builds it (one hash per principal, booleans).
fn push() -> impl Strategy<Value = (Endpoint, Value)> {
    let repository_list =
        prop::collection::btree_map(name(), any::<bool>(), 0..5).prop_map(|repos| {
            let list: Vec<Value> = repos
                .iter()
                .map(|(name, flag)| json!({"repository": name, "auth_required": flag}))
                .collect();
            (Endpoint::RepositoryList, json!({"repositories": list}))
        });
    let mapping = (
        prop::sample::select(vec![
            Endpoint::UserRepositoryMapping,
            Endpoint::HostRepositoryMapping,
            Endpoint::UpdateHostRepositories,
        ]),
        prop::collection::btree_map(principal(), entries(), 0..4),
    )
        .prop_map(|(endpoint, grants)| {
            let list: Vec<Value> = grants
                .iter()
                .map(|(principal, entries)| json!({ principal: entry_values(entries) }))
                .collect();
            (endpoint, json!({ endpoint.key(): list }))
        });
    let update_hosts =
        prop::collection::vec(prop::option::of(principal()), 0..4).prop_map(|uuids| {
            let list: Vec<Value> = uuids.iter().map(|uuid| json!({"uuid": uuid})).collect();
            (Endpoint::UpdateHosts, json!({"hosts": list}))
        });
    prop_oneof![repository_list, mapping, update_hosts]
}

/// A valid content: repositories from `name()`, grants on them.
fn content() -> impl Strategy<Value = Content> {
    prop::collection::btree_map(name(), any::<bool>(), 0..6).prop_flat_map(|repos| {
        let names: Vec<String> = repos.keys().cloned().collect();
        let repositories: Vec<Repository> = repos
            .into_iter()
            .map(|(name, auth_required)| Repository {
                name,
                auth_required,
            })
            .collect();
        (
            Just(repositories),
            granted(names.clone()),
            granted(names.clone()),
            granted(names),
        )
            .prop_map(|(repositories, users, hosts, writers)| Content {
                min_token_iat: None,
                repositories,
                users,
                hosts,
                writers,
                keys: Vec::new(),
            })
    })
}

fn granted(names: Vec<String>) -> impl Strategy<Value = BTreeMap<String, Vec<String>>> {
    let picks = prop::collection::vec(any::<Index>(), 0..4);
    prop::collection::btree_map(principal(), picks, 0..4).prop_map(move |picked| {
        picked
            .into_iter()
            .map(|(principal, picks)| {
                let chosen = if names.is_empty() {
                    Vec::new()
                } else {
                    picks.iter().map(|pick| pick.get(&names).clone()).collect()
                };
                (principal, chosen)
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn form_and_json_bodies_decode_alike((endpoint, payload) in push()) {
        let json = decode_default(endpoint, payload.to_string().as_bytes(), JSON);
        let form = decode_default(endpoint, rest_client_encode(&payload).as_bytes(), FORM);
        let json = json.map_err(|e| e.to_string());
        prop_assert!(json.is_ok(), "{:?}", json);
        prop_assert_eq!(json, form.map_err(|e| e.to_string()));
    }

    #[test]
    fn no_body_panics(
        body in prop::collection::vec(any::<u8>(), 0..128),
        endpoint in prop::sample::select(Endpoint::ALL.to_vec()),
        content_type in prop::sample::select(vec![None, FORM, JSON, Some("text/plain")]),
    ) {
        let _ = decode_default(endpoint, &body, content_type);
    }

    #[test]
    fn any_change_keeps_content_valid_and_is_idempotent(
        current in content(),
        (endpoint, payload) in push(),
    ) {
        prop_assert_eq!(current.validate(), Ok(()));
        let change = decode_default(endpoint, payload.to_string().as_bytes(), JSON).unwrap();
        let applied = apply(&change, &current);
        prop_assert_eq!(applied.content.validate(), Ok(()));
        prop_assert_eq!(&applied.content.keys, &current.keys);
        let again = apply(&change, &applied.content);
        prop_assert_eq!(again.content, applied.content);
    }
}
