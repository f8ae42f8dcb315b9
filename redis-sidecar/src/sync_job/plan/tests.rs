use super::*;

fn repo(name: &str, auth_required: bool) -> Repository {
    Repository {
        name: name.into(),
        auth_required,
    }
}

fn grants(rows: &[(&str, &[&str])]) -> Grants {
    rows.iter()
        .map(|(p, names)| {
            (
                (*p).to_owned(),
                names.iter().map(|n| (*n).to_owned()).collect(),
            )
        })
        .collect()
}

fn current() -> Content {
    Content {
        repositories: vec![
            repo("a/one", true),
            repo("a/two", false),
            repo("b/three", true),
        ],
        users: grants(&[("alice", &["a/one"]), ("bob", &["b/three"])]),
        hosts: grants(&[("host-1", &["a/one", "b/three"])]),
        writers: grants(&[("alice", &["a/one"])]),
        min_token_iat: Some(7),
        ..Content::default()
    }
}

#[test]
fn named_parts_replace_and_the_others_are_kept_less_vanished_grants() {
    let desired = Desired {
        repositories: vec![repo("a/one", false), repo("c/four", true)],
        users: Some(grants(&[("carol", &["c/four"])])),
        ..Desired::default()
    };
    let composed = compose(&current(), &desired).unwrap();
    let content = composed.content;
    assert_eq!(
        content.repositories,
        [repo("a/one", false), repo("c/four", true)]
    );
    assert_eq!(
        content.users,
        grants(&[("carol", &["c/four"])]),
        "users replaced"
    );
    assert_eq!(
        content.hosts,
        grants(&[("host-1", &["a/one"])]),
        "hosts kept"
    );
    assert_eq!(
        content.writers,
        grants(&[("alice", &["a/one"])]),
        "writers kept"
    );
    assert_eq!(content.min_token_iat, Some(7), "kept");
    // host-1 lost b/three; the users' lost grants are not counted (the source named users).
    assert_eq!(composed.dropped, 1);
}

#[test]
fn a_grant_on_an_unlisted_repository_is_an_error() {
    let desired = Desired {
        repositories: vec![repo("a/one", true)],
        users: Some(grants(&[("carol", &["nowhere/else"])])),
        ..Desired::default()
    };
    let error = compose(&current(), &desired).unwrap_err();
    assert!(
        error.contains("\"carol\" is granted unknown repository \"nowhere/else\""),
        "{error}"
    );
}

#[test]
fn diff_names_every_change_and_nothing_else() {
    let old = current();
    let mut new = old.clone();
    assert!(diff(&old, &new).is_empty());
    assert_eq!(diff(&old, &new).to_string(), "");
    new.repositories = vec![
        repo("a/one", false),
        repo("a/two", false),
        repo("c/four", true),
    ];
    new.users = grants(&[("alice", &["a/one", "c/four"]), ("carol", &[])]);
    new.hosts = grants(&[("host-1", &["a/one"])]);
    new.min_token_iat = None;
    let diff = diff(&old, &new);
    assert_eq!(
        diff.to_string(),
        "+ repository c/four (auth_required)\n\
         - repository b/three\n\
         ~ repository a/one now public\n\
         + user carol\n\
         - user bob\n\
         + grant user alice c/four\n\
         - grant user bob b/three\n\
         - grant host host-1 b/three\n\
         ~ min_token_iat\n"
    );
}

#[test]
fn the_shrink_guard_counts_published_repositories_that_disappear() {
    let names = |n: usize| -> Content {
        Content {
            repositories: (0..n).map(|i| repo(&format!("r/{i}"), true)).collect(),
            ..Content::default()
        }
    };
    struct Row {
        case: &'static str,
        old: usize,
        new: usize,
        max_percent: u8,
        refused: bool,
    }
    let rows = [
        Row {
            case: "nothing published",
            old: 0,
            new: 0,
            max_percent: 0,
            refused: false,
        },
        Row {
            case: "growth",
            old: 4,
            new: 9,
            max_percent: 0,
            refused: false,
        },
        Row {
            case: "exactly half",
            old: 4,
            new: 2,
            max_percent: 50,
            refused: false,
        },
        Row {
            case: "more than half",
            old: 4,
            new: 1,
            max_percent: 50,
            refused: true,
        },
        Row {
            case: "all gone",
            old: 4,
            new: 0,
            max_percent: 50,
            refused: true,
        },
        Row {
            case: "all gone, guard off",
            old: 4,
            new: 0,
            max_percent: 100,
            refused: false,
        },
        Row {
            case: "one gone, no loss allowed",
            old: 4,
            new: 3,
            max_percent: 0,
            refused: true,
        },
    ];
    for row in rows {
        let got = shrink(&names(row.old), &names(row.new), row.max_percent);
        assert_eq!(got.is_some(), row.refused, "{}: {got:?}", row.case);
        if let Some(shrink) = got {
            assert_eq!(shrink.current, row.old, "{}", row.case);
            assert_eq!(shrink.disappearing, row.old - row.new, "{}", row.case);
        }
    }
    // Renames count as disappearing: the same number of repositories, none of the old ones.
    let renamed = Content {
        repositories: (0..4).map(|i| repo(&format!("s/{i}"), true)).collect(),
        ..Content::default()
    };
    let refused = shrink(&names(4), &renamed, 50).unwrap();
    assert_eq!(
        refused.to_string(),
        "4 of the 4 published repositories would disappear (more than 50%)"
    );
}
