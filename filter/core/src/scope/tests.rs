#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;

fn scope(resource_type: &str, name: &str, actions: &[&str]) -> ResourceScope {
    ResourceScope {
        resource_type: resource_type.into(),
        name: name.into(),
        actions: actions.iter().map(|a| a.to_string()).collect(),
    }
}

fn repo(name: &str, actions: &[&str]) -> ResourceScope {
    scope("repository", name, actions)
}

fn malformed(why: &'static str) -> Result<Vec<ResourceScope>, ScopeError> {
    Err(ScopeError::Malformed(why))
}

const BAD_NAME: &str = "invalid resource name";
const BAD_TYPE: &str = "invalid resource type";
const BAD_ACTION: &str = "invalid action";

/// `n` space-separated copies of `one`.
fn repeated(one: &str, n: usize) -> String {
    vec![one; n].join(" ")
}

#[test]
fn parse_scopes_table() {
    let a255 = "a".repeat(255);
    let a256 = "a".repeat(256);
    let long_scope = format!("repository:{a255}:pull");
    let letters: Vec<String> = ('a'..='q').map(|c| c.to_string()).collect();
    let sixteen = letters[..16].join(",");
    let seventeen = letters.join(",");
    let sixteen_refs: Vec<&str> = letters[..16].iter().map(String::as_str).collect();
    let host_name_255 = format!("localhost:5000/{}", "a".repeat(240));
    let host_name_256 = format!("localhost:5000/{}", "a".repeat(241));
    #[rustfmt::skip]
    type Row = (&'static str, String, Result<Vec<ResourceScope>, ScopeError>);
    let cases: Vec<Row> = vec![
        (
            "single pull",
            "repository:foo:pull".into(),
            Ok(vec![repo("foo", &["pull"])]),
        ),
        (
            "nested name",
            "repository:team/app:pull,push".into(),
            Ok(vec![repo("team/app", &["pull", "push"])]),
        ),
        (
            "E6 port in scope name",
            "repository:localhost:5000/foo:pull".into(),
            Ok(vec![repo("localhost:5000/foo", &["pull"])]),
        ),
        (
            "E6 port with two actions",
            "repository:localhost:5000/foo/bar:pull,push".into(),
            Ok(vec![repo("localhost:5000/foo/bar", &["pull", "push"])]),
        ),
        (
            "E6 second scope after space",
            "repository:foo:pull,push repository:bar:pull".into(),
            Ok(vec![repo("foo", &["pull", "push"]), repo("bar", &["pull"])]),
        ),
        (
            "E6 empty action list",
            "repository:foo:".into(),
            Ok(vec![repo("foo", &[])]),
        ),
        (
            "E6 empty action list beside another",
            "repository:foo: repository:bar:pull".into(),
            Ok(vec![repo("foo", &[]), repo("bar", &["pull"])]),
        ),
        (
            "E6 port without path",
            "repository:localhost:5000:pull".into(),
            malformed(BAD_NAME),
        ),
        (
            "E6 two ports",
            "repository:a:1/b:2/c:pull".into(),
            malformed(BAD_NAME),
        ),
        (
            "E6 colons in name",
            "repository:a:b:c:pull".into(),
            malformed(BAD_NAME),
        ),
        (
            "hostname with dots",
            "repository:registry.example.com/team/app:pull".into(),
            Ok(vec![repo("registry.example.com/team/app", &["pull"])]),
        ),
        (
            "hostname with uppercase",
            "repository:Registry.Example.COM/app:pull".into(),
            Ok(vec![repo("Registry.Example.COM/app", &["pull"])]),
        ),
        (
            "hostname with dash and port",
            "repository:my-host:443/app:pull".into(),
            Ok(vec![repo("my-host:443/app", &["pull"])]),
        ),
        (
            "port not numeric",
            "repository:localhost:http/app:pull".into(),
            malformed(BAD_NAME),
        ),
        (
            "port empty",
            "repository:localhost:/app:pull".into(),
            malformed(BAD_NAME),
        ),
        (
            "port of six digits",
            "repository:localhost:123456/app:pull".into(),
            malformed(BAD_NAME),
        ),
        (
            "hostname with empty label",
            "repository:a..b:5000/app:pull".into(),
            malformed(BAD_NAME),
        ),
        (
            "hostname with underscore and port",
            "repository:my_host:5000/app:pull".into(),
            malformed(BAD_NAME),
        ),
        (
            "host prefix with uppercase path",
            "repository:localhost:5000/App:pull".into(),
            malformed(BAD_NAME),
        ),
        (
            "host prefix only",
            "repository:localhost:5000/:pull".into(),
            malformed(BAD_NAME),
        ),
        (
            "registry catalog star",
            "registry:catalog:*".into(),
            Ok(vec![scope("registry", "catalog", &["*"])]),
        ),
        (
            "class stripped",
            "repository(plugin):foo:pull".into(),
            Ok(vec![repo("foo", &["pull"])]),
        ),
        (
            "class with digits",
            "repository(v2):foo:pull".into(),
            Ok(vec![repo("foo", &["pull"])]),
        ),
        (
            "class uppercase",
            "repository(Plugin):foo:pull".into(),
            malformed(BAD_TYPE),
        ),
        (
            "class empty",
            "repository():foo:pull".into(),
            malformed(BAD_TYPE),
        ),
        (
            "class unclosed",
            "repository(plugin:foo:pull".into(),
            malformed(BAD_TYPE),
        ),
        (
            "class with trailing junk",
            "repository(plugin)x:foo:pull".into(),
            malformed(BAD_TYPE),
        ),
        (
            "class nested",
            "repository((a)):foo:pull".into(),
            malformed(BAD_TYPE),
        ),
        (
            "type uppercase",
            "Repository:foo:pull".into(),
            malformed(BAD_TYPE),
        ),
        ("type empty", ":foo:pull".into(), malformed(BAD_TYPE)),
        (
            "type with dash",
            "repo-sitory:foo:pull".into(),
            malformed(BAD_TYPE),
        ),
        (
            "other type kept",
            "plugin:foo:pull".into(),
            Ok(vec![scope("plugin", "foo", &["pull"])]),
        ),
        (
            "duplicate actions deduped",
            "repository:foo:pull,pull,push,pull".into(),
            Ok(vec![repo("foo", &["pull", "push"])]),
        ),
        (
            "empty actions dropped",
            "repository:foo:pull,,push,".into(),
            Ok(vec![repo("foo", &["pull", "push"])]),
        ),
        (
            "only commas",
            "repository:foo:,,".into(),
            Ok(vec![repo("foo", &[])]),
        ),
        (
            "star mixed with pull",
            "repository:foo:pull,*".into(),
            Ok(vec![repo("foo", &["pull", "*"])]),
        ),
        (
            "delete action",
            "repository:foo:delete".into(),
            Ok(vec![repo("foo", &["delete"])]),
        ),
        (
            "unknown lowercase action kept",
            "repository:foo:admin".into(),
            Ok(vec![repo("foo", &["admin"])]),
        ),
        (
            "action uppercase",
            "repository:foo:PULL".into(),
            malformed(BAD_ACTION),
        ),
        (
            "action with digit",
            "repository:foo:pull1".into(),
            malformed(BAD_ACTION),
        ),
        (
            "double star",
            "repository:foo:**".into(),
            malformed(BAD_ACTION),
        ),
        (
            "star with letters",
            "repository:foo:pu*".into(),
            malformed(BAD_ACTION),
        ),
        (
            "action with space-like tab",
            "repository:foo:pull\tpush".into(),
            malformed(BAD_ACTION),
        ),
        (
            "G1 uppercase name",
            "repository:Foo:pull".into(),
            malformed(BAD_NAME),
        ),
        (
            "G1 leading dash",
            "repository:-foo:pull".into(),
            malformed(BAD_NAME),
        ),
        (
            "G1 double dot",
            "repository:a..b/c:pull".into(),
            malformed(BAD_NAME),
        ),
        (
            "G1 triple underscore",
            "repository:a___b:pull".into(),
            malformed(BAD_NAME),
        ),
        (
            "G1 double slash",
            "repository:a//b:pull".into(),
            malformed(BAD_NAME),
        ),
        (
            "G1 name of 255 chars",
            format!("repository:{a255}:pull"),
            Ok(vec![repo(&a255, &["pull"])]),
        ),
        (
            "G1 name of 256 chars",
            format!("repository:{a256}:pull"),
            malformed(BAD_NAME),
        ),
        (
            "host-prefixed name of 255 chars",
            format!("repository:{host_name_255}:pull"),
            Ok(vec![repo(&host_name_255, &["pull"])]),
        ),
        (
            "host-prefixed name of 256 chars",
            format!("repository:{host_name_256}:pull"),
            malformed(BAD_NAME),
        ),
        (
            "F1 dot-dot segment",
            "repository:a/../b:pull".into(),
            malformed(BAD_NAME),
        ),
        (
            "F1 dot-dot host",
            "repository:../b:pull".into(),
            malformed(BAD_NAME),
        ),
        (
            "F1 dot host",
            "repository:./b:pull".into(),
            malformed(BAD_NAME),
        ),
        (
            "F2 backslash in name",
            "repository:a\\b:pull".into(),
            malformed(BAD_NAME),
        ),
        (
            "F2 percent in name",
            "repository:a%2Fb:pull".into(),
            malformed(BAD_NAME),
        ),
        (
            "F4 NUL in name",
            "repository:a\0:pull".into(),
            malformed(BAD_NAME),
        ),
        (
            "F8 non-ASCII name",
            "repository:caf\u{e9}:pull".into(),
            malformed(BAD_NAME),
        ),
        (
            "F8 fullwidth solidus",
            "repository:a\u{ff0f}b:pull".into(),
            malformed(BAD_NAME),
        ),
        ("empty name", "repository::pull".into(), malformed(BAD_NAME)),
        (
            "missing actions",
            "repository:foo".into(),
            malformed("missing actions"),
        ),
        (
            "type only",
            "repository".into(),
            malformed("missing resource name"),
        ),
        ("empty string", String::new(), malformed("empty scope")),
        (
            "double space",
            "repository:a:pull  repository:b:pull".into(),
            malformed("empty resource scope"),
        ),
        (
            "leading space",
            " repository:a:pull".into(),
            malformed("empty resource scope"),
        ),
        (
            "trailing space",
            "repository:a:pull ".into(),
            malformed("empty resource scope"),
        ),
        (
            "single space",
            " ".into(),
            malformed("empty resource scope"),
        ),
        (
            "newline separator",
            "repository:a:pull\nrepository:b:pull".into(),
            malformed(BAD_NAME),
        ),
        (
            "comma-separated scopes",
            "repository:a:pull,repository:b:pull".into(),
            malformed(BAD_NAME),
        ),
        (
            "32 scopes",
            repeated("repository:a:pull", 32),
            Ok(vec![repo("a", &["pull"]); 32]),
        ),
        (
            "33 scopes",
            repeated("repository:a:pull", 33),
            Err(ScopeError::TooMany),
        ),
        (
            "10000 scopes",
            repeated("repository:a:pull", 10_000),
            malformed("scope string too long"),
        ),
        (
            "16 actions",
            format!("repository:a:{sixteen}"),
            Ok(vec![repo("a", &sixteen_refs)]),
        ),
        (
            "17 actions",
            format!("repository:a:{seventeen}"),
            Err(ScopeError::TooMany),
        ),
        (
            "17 repeated actions",
            format!("repository:a:{}", ["pull"; 17].join(",")),
            Err(ScopeError::TooMany),
        ),
        (
            "15 long scopes under the byte cap",
            repeated(&long_scope, 15),
            Ok(vec![repo(&a255, &["pull"]); 15]),
        ),
        (
            "4097 bytes",
            format!("repository:a:{}", "p".repeat(4097 - 13)),
            malformed("scope string too long"),
        ),
    ];
    let mut failures = Vec::new();
    for (case, input, expected) in &cases {
        let got = parse_scopes(input);
        if &got != expected {
            failures.push(format!(
                "{case}: {input:?}\n    expected {expected:?}\n    got      {got:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn four_kib_is_the_byte_cap() {
    // Exactly 4096 bytes parses (as far as the byte cap is concerned); one more does not.
    let at_cap = format!("repository:a:{}", "p".repeat(MAX_SCOPE_LEN - 13));
    assert_eq!(at_cap.len(), MAX_SCOPE_LEN);
    assert_eq!(
        parse_scopes(&at_cap).map(|s| s.len()),
        Ok(1),
        "one action of 4083 letters"
    );
    let over = format!("{at_cap}p");
    assert_eq!(
        parse_scopes(&over),
        Err(ScopeError::Malformed("scope string too long"))
    );
}

#[test]
fn to_scope_string_round_trips() {
    let cases = [
        ("pull", repo("foo", &["pull"]), "repository:foo:pull"),
        (
            "pull and push",
            repo("team/app", &["pull", "push"]),
            "repository:team/app:pull,push",
        ),
        ("no actions", repo("foo", &[]), "repository:foo:"),
        (
            "port in name",
            repo("localhost:5000/foo", &["pull"]),
            "repository:localhost:5000/foo:pull",
        ),
        (
            "catalog",
            scope("registry", "catalog", &["*"]),
            "registry:catalog:*",
        ),
    ];
    for (case, parsed, wire) in cases {
        assert_eq!(parsed.to_scope_string(), wire, "{case}");
        assert_eq!(parse_scopes(wire), Ok(vec![parsed]), "{case}");
    }
    // The class is dropped on the way in, so it does not come back out.
    let with_class = parse_scopes("repository(plugin):foo:pull").unwrap();
    assert_eq!(with_class[0].to_scope_string(), "repository:foo:pull");
}

fn entry(resource_type: &str, name: &str, actions: &[&str]) -> AccessEntry {
    AccessEntry {
        resource_type: resource_type.into(),
        name: name.into(),
        actions: actions.iter().map(|a| a.to_string()).collect(),
    }
}

#[test]
fn access_covers_table() {
    use Action::{Delete, Pull, Push};
    let pull_app = || vec![entry("repository", "team/app", &["pull"])];
    #[rustfmt::skip]
    let cases: Vec<(&str, Vec<AccessEntry>, &str, Action, bool)> = vec![
        ("exact pull", pull_app(), "team/app", Pull, true),
        ("E1 other repository", vec![entry("repository", "team/other", &["pull"])], "team/app", Pull, false),
        ("E2 push only, pull requested", vec![entry("repository", "team/app", &["push"])], "team/app", Pull, false),
        ("E2 pull only, push requested", pull_app(), "team/app", Push, false),
        ("E2 pull only, delete requested", pull_app(), "team/app", Delete, false),
        ("E6 empty actions grant nothing", vec![entry("repository", "team/app", &[])], "team/app", Pull, false),
        ("push granted", vec![entry("repository", "team/app", &["pull", "push"])], "team/app", Push, true),
        ("delete granted", vec![entry("repository", "team/app", &["delete"])], "team/app", Delete, true),
        ("star grants pull", vec![entry("repository", "team/app", &["*"])], "team/app", Pull, true),
        ("star grants delete", vec![entry("repository", "team/app", &["*"])], "team/app", Delete, true),
        ("second entry matches", vec![entry("repository", "x", &["pull"]), entry("repository", "team/app", &["pull"])], "team/app", Pull, true),
        ("actions split across entries", vec![entry("repository", "team/app", &["pull"]), entry("repository", "team/app", &["push"])], "team/app", Push, true),
        ("no entries", vec![], "team/app", Pull, false),
        ("registry type", vec![entry("registry", "team/app", &["pull"])], "team/app", Pull, false),
        ("type with class", vec![entry("repository(plugin)", "team/app", &["pull"])], "team/app", Pull, false),
        ("type uppercase", vec![entry("Repository", "team/app", &["pull"])], "team/app", Pull, false),
        ("name case differs", vec![entry("repository", "Team/App", &["pull"])], "team/app", Pull, false),
        ("name with host prefix", vec![entry("repository", "localhost:5000/team/app", &["pull"])], "team/app", Pull, false),
        ("name prefix", vec![entry("repository", "team/ap", &["pull"])], "team/app", Pull, false),
        ("name parent", vec![entry("repository", "team", &["pull"])], "team/app", Pull, false),
        ("name trailing slash", vec![entry("repository", "team/app/", &["pull"])], "team/app", Pull, false),
        ("name wildcard is literal", vec![entry("repository", "*", &["pull"])], "team/app", Pull, false),
        ("action case differs", vec![entry("repository", "team/app", &["PULL"])], "team/app", Pull, false),
        ("action with space", vec![entry("repository", "team/app", &["pull "])], "team/app", Pull, false),
        ("combined action string", vec![entry("repository", "team/app", &["pull,push"])], "team/app", Pull, false),
    ];
    for (case, access, name, action, covered) in cases {
        assert_eq!(access_covers(&access, name, action), covered, "{case}");
    }
}

#[test]
fn check_access_bounds_table() {
    let one = entry("repository", "a", &["pull"]);
    let sixteen: Vec<String> = (0..16).map(|i| format!("a{i}")).collect();
    let sixteen: Vec<&str> = sixteen.iter().map(String::as_str).collect();
    let seventeen: Vec<&str> = sixteen.iter().copied().chain(["x"]).collect();
    #[rustfmt::skip]
    let cases: Vec<(&str, Vec<AccessEntry>, Result<(), ScopeError>)> = vec![
        ("empty", vec![], Ok(())),
        ("one entry", vec![one.clone()], Ok(())),
        ("64 entries", vec![one.clone(); MAX_ACCESS_ENTRIES], Ok(())),
        ("E4 65 entries", vec![one.clone(); MAX_ACCESS_ENTRIES + 1], Err(ScopeError::TooMany)),
        ("E4 10000 entries", vec![one.clone(); 10_000], Err(ScopeError::TooMany)),
        ("16 actions", vec![entry("repository", "a", &sixteen)], Ok(())),
        ("17 actions", vec![entry("repository", "a", &seventeen)], Err(ScopeError::TooMany)),
        ("17 actions in a later entry", vec![one.clone(), entry("repository", "a", &seventeen)], Err(ScopeError::TooMany)),
    ];
    for (case, access, expected) in cases {
        assert_eq!(check_access_bounds(&access), expected, "{case}");
    }
}

#[test]
fn junk_never_panics_and_round_trips() {
    const FRAGMENTS: &[&str] = &[
        "repository",
        "registry",
        ":",
        ":",
        ":",
        "/",
        " ",
        ",",
        "(",
        ")",
        "plugin",
        "a",
        "team",
        "app",
        "pull",
        "push",
        "*",
        "localhost",
        "5000",
        ".",
        "..",
        "-",
        "_",
        "__",
        "A",
        "\0",
        "\u{e9}",
        "\\",
        "%",
        "\t",
        "",
    ];
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut accepted = 0;
    for i in 0..5000 {
        let mut input = String::new();
        if i % 2 == 0 {
            for _ in 0..next() % 16 {
                input.push_str(FRAGMENTS[(next() % FRAGMENTS.len() as u64) as usize]);
            }
        } else {
            // A plausible scope with one fragment spliced in.
            input.push_str("repository:team/app:pull,push");
            let at = (next() % (input.len() as u64 + 1)) as usize;
            input.insert_str(at, FRAGMENTS[(next() % FRAGMENTS.len() as u64) as usize]);
        }
        let Ok(scopes) = parse_scopes(&input) else {
            continue;
        };
        accepted += 1;
        assert!(
            !scopes.is_empty() && scopes.len() <= MAX_SCOPES,
            "{input:?}"
        );
        for parsed in &scopes {
            assert!(parsed.actions.len() <= MAX_ACTIONS, "{input:?}");
            assert!(parsed.actions.iter().all(|a| !a.is_empty()), "{input:?}");
            let wire = parsed.to_scope_string();
            assert_eq!(
                parse_scopes(&wire),
                Ok(vec![parsed.clone()]),
                "{input:?} -> {wire:?}"
            );
        }
    }
    assert!(accepted > 100, "only {accepted} generated scopes parsed");

    // Raw bytes, including invalid UTF-8 made lossy.
    for _ in 0..3000 {
        let bytes: Vec<u8> = (0..next() % 64).map(|_| (next() & 0xff) as u8).collect();
        let _ = parse_scopes(&String::from_utf8_lossy(&bytes));
    }
}
