#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use crate::identity::Principal;
use crate::refusal::Refusal;
use crate::reply::Challenge;
use crate::route::Page;
use crate::scope::AccessEntry;
use crate::snapshot::{Content, Repository};

fn policy(allow_push: bool) -> Policy {
    Policy {
        challenge: Challenge {
            realm: "https://gw.example/v2/token".into(),
            service: "registry-gate".into(),
        },
        allow_push,
        catalog_default_page: 100,
        catalog_max_page: 1000,
    }
}

fn index() -> Index {
    let repo = |name: &str, auth_required| Repository {
        name: name.into(),
        auth_required,
    };
    let grants = |pairs: &[(&str, &[&str])]| {
        pairs
            .iter()
            .map(|(who, names)| {
                (
                    who.to_string(),
                    names.iter().map(|n| n.to_string()).collect(),
                )
            })
            .collect()
    };
    Index::of(&Content {
        min_token_iat: None,
        repositories: vec![
            repo("library/public", false),
            repo("team/app", true),
            repo("team/other", true),
        ],
        users: grants(&[("alice", &["team/app"]), ("bob", &[])]),
        hosts: grants(&[("host-1", &["team/other"])]),
        writers: grants(&[("alice", &["team/app"])]),
        keys: vec![],
    })
}

fn user(name: &str, access: Option<Vec<AccessEntry>>) -> Identity {
    Identity {
        principal: Principal::User(name.into()),
        access,
        credentialed: true,
    }
}

fn anonymous_token() -> Identity {
    Identity {
        principal: Principal::Anonymous,
        access: Some(vec![]),
        credentialed: true,
    }
}

fn host(uuid: &str) -> Identity {
    Identity {
        principal: Principal::Host(uuid.into()),
        access: None,
        credentialed: true,
    }
}

fn access(name: &str, actions: &[&str]) -> Option<Vec<AccessEntry>> {
    Some(vec![AccessEntry {
        resource_type: "repository".into(),
        name: name.into(),
        actions: actions.iter().map(|a| a.to_string()).collect(),
    }])
}

fn manifest(name: &str, action: Action) -> RegistryRequest {
    RegistryRequest {
        route: Route::Manifest {
            name: name.into(),
            reference: "latest".into(),
        },
        action,
    }
}

fn simple(route: Route) -> RegistryRequest {
    RegistryRequest {
        route,
        action: Action::Pull,
    }
}

/// (case, identity, request, allow_push, expected status (0 = forward), expected code,
/// expected challenge fragment)
type Row = (
    &'static str,
    Identity,
    RegistryRequest,
    bool,
    u16,
    Option<&'static str>,
    Option<&'static str>,
);

#[test]
fn behaviour_table() {
    let index = index();
    let rows: Vec<Row> = vec![
        (
            "public pull, no token",
            Identity::anonymous(),
            manifest("library/public", Action::Pull),
            false,
            0,
            None,
            None,
        ),
        (
            "public pull, user token scoped elsewhere",
            user("bob", access("team/x", &["pull"])),
            manifest("library/public", Action::Pull),
            false,
            0,
            None,
            None,
        ),
        (
            "A1 private pull, no token: 401 naming the scope",
            Identity::anonymous(),
            manifest("team/app", Action::Pull),
            false,
            401,
            Some("UNAUTHORIZED"),
            Some(r#"scope="repository:team/app:pull""#),
        ),
        (
            "unknown repo, no token: same 401 as private",
            Identity::anonymous(),
            manifest("team/nope", Action::Pull),
            false,
            401,
            Some("UNAUTHORIZED"),
            Some(r#"scope="repository:team/nope:pull""#),
        ),
        (
            "private pull, anonymous token: 401 insufficient scope",
            anonymous_token(),
            manifest("team/app", Action::Pull),
            false,
            401,
            Some("UNAUTHORIZED"),
            Some("insufficient_scope"),
        ),
        (
            "private pull, grantee with covering token",
            user("alice", access("team/app", &["pull"])),
            manifest("team/app", Action::Pull),
            false,
            0,
            None,
            None,
        ),
        (
            "private pull, grantee, token without access claim",
            user("alice", None),
            manifest("team/app", Action::Pull),
            false,
            0,
            None,
            None,
        ),
        (
            "G8 private pull, stranger: 404 like unknown",
            user("bob", access("team/app", &["pull"])),
            manifest("team/app", Action::Pull),
            false,
            404,
            Some("NAME_UNKNOWN"),
            None,
        ),
        (
            "G8 unknown repository, authenticated: 404",
            user("alice", None),
            manifest("team/nope", Action::Pull),
            false,
            404,
            Some("NAME_UNKNOWN"),
            None,
        ),
        (
            "E1 grantee, token for another repo: 401 insufficient scope",
            user("alice", access("team/other", &["pull"])),
            manifest("team/app", Action::Pull),
            false,
            401,
            Some("UNAUTHORIZED"),
            Some("insufficient_scope"),
        ),
        (
            "E2 grantee, token with push only",
            user("alice", access("team/app", &["push"])),
            manifest("team/app", Action::Pull),
            false,
            401,
            Some("UNAUTHORIZED"),
            Some("insufficient_scope"),
        ),
        (
            "E5 token grants pull but snapshot revoked it",
            user("bob", access("team/app", &["pull"])),
            manifest("team/app", Action::Pull),
            false,
            404,
            Some("NAME_UNKNOWN"),
            None,
        ),
        (
            "host with grant",
            host("host-1"),
            manifest("team/other", Action::Pull),
            false,
            0,
            None,
            None,
        ),
        (
            // The old gateway's certificate path: `401 unauthorized`, not `NAME_UNKNOWN`.
            "host without grant",
            host("host-1"),
            manifest("team/app", Action::Pull),
            false,
            401,
            Some("UNAUTHORIZED"),
            Some("scope=\"repository:team/app:pull\""),
        ),
        (
            "push refused when writes are off",
            user("alice", access("team/app", &["pull", "push"])),
            manifest("team/app", Action::Push),
            false,
            405,
            Some("UNSUPPORTED"),
            None,
        ),
        (
            "delete refused when writes are off",
            user("alice", access("team/app", &["delete"])),
            manifest("team/app", Action::Delete),
            false,
            405,
            Some("UNSUPPORTED"),
            None,
        ),
        (
            "push to public refused when writes are off",
            Identity::anonymous(),
            manifest("library/public", Action::Push),
            false,
            405,
            Some("UNSUPPORTED"),
            None,
        ),
        (
            "push by writer with covering token",
            user("alice", access("team/app", &["pull", "push"])),
            manifest("team/app", Action::Push),
            true,
            0,
            None,
            None,
        ),
        (
            "E2 push by writer, push-only token (push needs pull too)",
            user("alice", access("team/app", &["push"])),
            manifest("team/app", Action::Push),
            true,
            401,
            Some("UNAUTHORIZED"),
            Some("insufficient_scope"),
        ),
        (
            "E2 push by writer, pull-only token",
            user("alice", access("team/app", &["pull"])),
            manifest("team/app", Action::Push),
            true,
            401,
            Some("UNAUTHORIZED"),
            Some("insufficient_scope"),
        ),
        (
            "push by stranger to a private repo: 404",
            user("alice", None),
            manifest("team/other", Action::Push),
            true,
            404,
            Some("NAME_UNKNOWN"),
            None,
        ),
        (
            "push without token",
            Identity::anonymous(),
            manifest("team/app", Action::Push),
            true,
            401,
            Some("UNAUTHORIZED"),
            Some(r#"scope="repository:team/app:pull,push""#),
        ),
        (
            "push to public by anonymous",
            Identity::anonymous(),
            manifest("library/public", Action::Push),
            true,
            401,
            Some("UNAUTHORIZED"),
            None,
        ),
        (
            "host cannot push",
            host("host-1"),
            manifest("team/other", Action::Push),
            true,
            403,
            Some("DENIED"),
            None,
        ),
        (
            "G7 ping without token: 401 without scope",
            Identity::anonymous(),
            simple(Route::Ping),
            false,
            401,
            Some("UNAUTHORIZED"),
            None,
        ),
        (
            "ping with a token",
            user("bob", None),
            simple(Route::Ping),
            false,
            0,
            None,
            None,
        ),
        (
            "ping with an anonymous token",
            anonymous_token(),
            simple(Route::Ping),
            false,
            0,
            None,
            None,
        ),
        (
            "catalog without token: 401 catalog scope",
            Identity::anonymous(),
            simple(Route::Catalog(Page::default())),
            false,
            401,
            Some("UNAUTHORIZED"),
            Some(r#"scope="registry:catalog:*""#),
        ),
        (
            "catalog with token answered locally",
            user("alice", None),
            simple(Route::Catalog(Page::default())),
            false,
            200,
            None,
            None,
        ),
        (
            "token endpoint passes through",
            Identity::anonymous(),
            simple(Route::Token),
            false,
            0,
            None,
            None,
        ),
        (
            "v1 ping answered locally",
            Identity::anonymous(),
            simple(Route::V1Ping),
            false,
            200,
            None,
            None,
        ),
        (
            "v1 search answered locally",
            Identity::anonymous(),
            simple(Route::V1Search {
                query: "team".into(),
                n: None,
            }),
            false,
            200,
            None,
            None,
        ),
    ];
    for (case, identity, request, allow_push, status, code, challenge) in rows {
        let decision = decide(
            &index,
            &policy(allow_push),
            &identity,
            &request,
            Facts::default(),
        );
        let reply = match &decision {
            Decision::Forward => None,
            Decision::ForwardFiltered => panic!("{case}: only the flatpak index is filtered"),
            Decision::Answer(reply) => Some(reply.clone()),
            Decision::Refuse(denial) => {
                Some(Refusal::Denied(denial.clone()).reply(&policy(allow_push).challenge, 5))
            }
        };
        match (&reply, status) {
            (None, 0) => {}
            (Some(reply), status) if status != 0 => {
                assert_eq!(reply.status, status, "{case}: {reply:?}");
                if let Some(code) = code {
                    let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
                    assert_eq!(body["errors"][0]["code"], code, "{case}");
                }
                if let Some(fragment) = challenge {
                    let header = reply.header("www-authenticate").unwrap_or_default();
                    assert!(header.contains(fragment), "{case}: {header}");
                }
                if status == 401 {
                    assert!(reply.header("www-authenticate").is_some(), "{case}");
                }
            }
            _ => panic!("{case}: expected status {status}, got {decision:?}"),
        }
    }
}

#[test]
fn flatpak_index_is_forwarded_filtered_for_anyone() {
    for (case, identity) in [
        ("anonymous", Identity::anonymous()),
        ("anonymous token", anonymous_token()),
        ("user", user("alice", None)),
        (
            "user with a narrow access claim",
            user("alice", Some(vec![])),
        ),
        ("host", host("host-1")),
    ] {
        let request = simple(Route::FlatpakIndex);
        let decision = decide(
            &index(),
            &policy(false),
            &identity,
            &request,
            Facts::default(),
        );
        assert_eq!(decision, Decision::ForwardFiltered, "{case}");
    }
}

#[test]
fn may_pull_is_what_a_pull_would_be_forwarded_for() {
    struct Row {
        case: &'static str,
        identity: Identity,
        /// The repositories visible, of library/public, team/app, team/other, unknown/repo.
        visible: &'static [&'static str],
    }
    let rows = [
        Row {
            case: "anonymous sees public only",
            identity: Identity::anonymous(),
            visible: &["library/public"],
        },
        Row {
            case: "anonymous token sees public only",
            identity: anonymous_token(),
            visible: &["library/public"],
        },
        Row {
            case: "alice sees public and her grant",
            identity: user("alice", None),
            visible: &["library/public", "team/app"],
        },
        Row {
            case: "bob has no grants",
            identity: user("bob", None),
            visible: &["library/public"],
        },
        Row {
            case: "an unknown user sees public only",
            identity: user("mallory", None),
            visible: &["library/public"],
        },
        Row {
            case: "an access claim covering the grant",
            identity: user("alice", access("team/app", &["pull"])),
            visible: &["library/public", "team/app"],
        },
        Row {
            case: "an access claim not covering the grant hides it",
            identity: user("alice", access("team/other", &["pull"])),
            visible: &["library/public"],
        },
        Row {
            case: "an access claim for push only hides it",
            identity: user("alice", access("team/app", &["push"])),
            visible: &["library/public"],
        },
        Row {
            case: "an access claim cannot widen the grants",
            identity: user("bob", access("team/app", &["pull"])),
            visible: &["library/public"],
        },
        Row {
            case: "a host sees public and its grant",
            identity: host("host-1"),
            visible: &["library/public", "team/other"],
        },
    ];
    let index = index();
    for row in rows {
        let visible: Vec<&str> = ["library/public", "team/app", "team/other", "unknown/repo"]
            .into_iter()
            .filter(|name| may_pull(&index, &policy(false), &row.identity, name))
            .collect();
        assert_eq!(visible, row.visible, "{}", row.case);
    }
}

#[test]
fn may_list_adds_the_catalog_to_a_catalog_scoped_token() {
    let catalog = || {
        Some(vec![AccessEntry {
            resource_type: "registry".into(),
            name: "catalog".into(),
            actions: vec!["*".into()],
        }])
    };
    let anonymous_catalog = Identity {
        principal: Principal::Anonymous,
        access: catalog(),
        credentialed: true,
    };
    let rows: [(&str, Identity, &[&str]); 5] = [
        (
            "catalog scope lists every grant",
            user("alice", catalog()),
            &["library/public", "team/app"],
        ),
        (
            "catalog scope cannot widen the grants",
            user("bob", catalog()),
            &["library/public"],
        ),
        (
            "anonymous with catalog scope",
            anonymous_catalog,
            &["library/public"],
        ),
        (
            "no access claim: what alice may pull",
            user("alice", None),
            &["library/public", "team/app"],
        ),
        (
            "another repository's scope lists no grant",
            user("alice", access("team/other", &["pull"])),
            &["library/public"],
        ),
    ];
    let index = index();
    for (case, identity, expected) in rows {
        let visible: Vec<&str> = ["library/public", "team/app", "team/other", "unknown/repo"]
            .into_iter()
            .filter(|name| may_list(&index, &policy(false), &identity, name))
            .collect();
        assert_eq!(visible, expected, "{case}");
    }
}

#[test]
fn catalog_lists_only_pullable() {
    let decision = decide(
        &index(),
        &policy(false),
        &user("alice", None),
        &simple(Route::Catalog(Page::default())),
        Facts::default(),
    );
    let Decision::Answer(reply) = decision else {
        panic!("catalog must be answered locally");
    };
    let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(
        body["repositories"],
        serde_json::json!(["library/public", "team/app"])
    );
}

#[test]
fn v1_search_is_404_for_v2_clients() {
    let decision = decide(
        &index(),
        &policy(false),
        &Identity::anonymous(),
        &simple(Route::V1Search {
            query: String::new(),
            n: None,
        }),
        Facts { v2_client: true },
    );
    assert_eq!(decision, Decision::Refuse(Denial::NotFound));
}
