use super::*;

const DIST: &str = "/pulp/api/v3/distributions/container/container/";
const NS: &str = "/pulp/api/v3/pulp_container/namespaces/";

fn distribution(id: &str, base_path: &str, private: bool, namespace: &str) -> Distribution {
    Distribution {
        pulp_href: format!("{DIST}{id}/"),
        base_path: base_path.into(),
        private,
        namespace: Some(format!("{NS}{namespace}/")),
    }
}

fn role(name: &str, permissions: &[&str]) -> Role {
    Role {
        name: name.into(),
        permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
    }
}

fn user(id: u32, username: &str, groups: &[&str]) -> User {
    User {
        pulp_href: format!("/pulp/api/v3/users/{id}/"),
        username: username.into(),
        is_active: true,
        groups: groups
            .iter()
            .map(|g| GroupRef {
                pulp_href: format!("/pulp/api/v3/groups/{g}/"),
            })
            .collect(),
    }
}

fn assign(role: &str, object: Option<String>) -> Assignment {
    Assignment {
        role: role.into(),
        content_object: object,
    }
}

/// The locked roles as pulp-container 2.30 defines them (permissions abridged to the ones
/// that matter, plus one that does not).
fn roles() -> Vec<Role> {
    vec![
        role(
            "container.containerdistribution_consumer",
            &["container.view_containerdistribution", PULL],
        ),
        role(
            "container.containerdistribution_collaborator",
            &[PULL, "container.push_containerdistribution"],
        ),
        role(
            "container.containerdistribution_owner",
            &[PULL, "container.delete_containerdistribution"],
        ),
        role(
            "container.containernamespace_consumer",
            &["container.view_containernamespace", NAMESPACE_PULL],
        ),
        role(
            "container.containernamespace_owner",
            &[
                NAMESPACE_PULL,
                "container.namespace_push_containerdistribution",
            ],
        ),
        role(
            "container.containerdistribution_creator",
            &["container.add_containerdistribution"],
        ),
        role("core.task_viewer", &["core.view_task"]),
    ]
}

fn inventory() -> Inventory {
    Inventory {
        distributions: vec![
            distribution("d1", "team/private", true, "team"),
            distribution("d2", "team/other", true, "team"),
            distribution("d3", "library/public", false, "library"),
            distribution("d4", "Bad Name", true, "bad"),
        ],
        roles: roles(),
        users: vec![
            user(1, "admin", &[]),
            user(2, "dave", &[]),
            user(3, "erin", &[]),
            user(4, "frank", &["g1"]),
            user(5, "grace", &[]),
            User {
                is_active: false,
                ..user(6, "ivan", &[])
            },
            user(7, "heidi", &[]),
        ],
        user_roles: [
            (
                "/pulp/api/v3/users/2/",
                vec![assign(
                    "container.containerdistribution_consumer",
                    Some(format!("{DIST}d1/")),
                )],
            ),
            (
                "/pulp/api/v3/users/3/",
                vec![assign(
                    "container.containernamespace_consumer",
                    Some(format!("{NS}team/")),
                )],
            ),
            (
                "/pulp/api/v3/users/5/",
                vec![assign("container.containerdistribution_consumer", None)],
            ),
            (
                "/pulp/api/v3/users/6/",
                vec![assign("container.containerdistribution_owner", None)],
            ),
            (
                "/pulp/api/v3/users/7/",
                vec![
                    // Roles that do not confer pull, a distribution role on a namespace, and
                    // an unknown role: nothing.
                    assign("container.containerdistribution_creator", None),
                    assign("core.task_viewer", Some(format!("{DIST}d1/"))),
                    assign(
                        "container.containerdistribution_consumer",
                        Some(format!("{NS}team/")),
                    ),
                    assign("no.such_role", Some(format!("{DIST}d2/"))),
                ],
            ),
        ]
        .into_iter()
        .map(|(href, list)| (href.to_owned(), list))
        .collect(),
        group_roles: [(
            "/pulp/api/v3/groups/g1/".to_owned(),
            vec![assign(
                "container.containerdistribution_collaborator",
                Some(format!("{DIST}d2/")),
            )],
        )]
        .into_iter()
        .collect(),
    }
}

#[test]
fn distributions_and_roles_map_to_repositories_and_grants() {
    let mapped = map(&inventory());
    let repositories: Vec<(&str, bool)> = mapped
        .desired
        .repositories
        .iter()
        .map(|r| (r.name.as_str(), r.auth_required))
        .collect();
    assert_eq!(
        repositories,
        [
            ("library/public", false),
            ("team/other", true),
            ("team/private", true)
        ],
        "private → auth_required"
    );
    let users = mapped.desired.users.unwrap();
    let of = |name: &str| -> Vec<&str> { users[name].iter().map(String::as_str).collect() };
    assert_eq!(of("admin"), Vec::<&str>::new(), "no roles, no grants");
    assert_eq!(of("dave"), ["team/private"], "consumer on one distribution");
    assert_eq!(
        of("erin"),
        ["team/other", "team/private"],
        "namespace consumer"
    );
    assert_eq!(of("frank"), ["team/other"], "a group's collaborator role");
    assert_eq!(
        of("grace"),
        ["library/public", "team/other", "team/private"],
        "model-wide consumer"
    );
    assert_eq!(
        of("heidi"),
        Vec::<&str>::new(),
        "no role that confers pull where assigned"
    );
    assert!(!users.contains_key("ivan"), "inactive users are left out");
    assert_eq!(mapped.skipped.len(), 1, "{:?}", mapped.skipped);
    assert!(
        mapped.skipped[0].contains("\"Bad Name\""),
        "{:?}",
        mapped.skipped
    );
    assert_eq!(
        mapped.desired.hosts, None,
        "Pulp does not say anything about hosts"
    );
}

#[test]
fn pages_parse_and_next_links_stay_on_the_origin() {
    let page: Page<Distribution> = serde_json::from_str(
        r#"{"count": 2, "next": "https://elsewhere.example/pulp/api/v3/distributions/container/container/?limit=1&offset=1",
            "previous": null,
            "results": [{"pulp_href": "/d/1/", "base_path": "a/b", "private": true, "namespace": "/n/1/", "name": "x"}]}"#,
    )
    .unwrap();
    assert_eq!(page.results[0].base_path, "a/b");
    assert_eq!(
        on_origin(page.next.as_deref().unwrap()).unwrap(),
        "/pulp/api/v3/distributions/container/container/?limit=1&offset=1"
    );
    assert_eq!(on_origin("/x/?offset=2").unwrap(), "/x/?offset=2");
    assert!(on_origin("not a url").is_err());
}
