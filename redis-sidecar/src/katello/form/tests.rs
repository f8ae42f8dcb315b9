//! Tables for the Rack-compatible form parser (every body of `katello-wire.md` §1.3, Rack's
//! nesting rules and their edge cases, every error), then properties: no input panics, the
//! decoding agrees with `form_urlencoded` on valid input, and every Katello-shaped payload
//! encoded the way rest-client 2.1.0 does parses back to the structure Rack builds from it.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::katello::wire::{
    rest_client_encode, BUSYBOX, FEDORA, HOST, HOST_REPOSITORY_MAPPING, NGINX, REPOSITORY_LIST,
    USER_REPOSITORY_MAPPING,
};

struct Parses {
    case: &'static str,
    body: &'static [u8],
    want: Value,
}

#[test]
fn parses_table() {
    let rows = [
        Parses {
            case: "repository_list example",
            body: REPOSITORY_LIST.as_bytes(),
            want: json!({"repositories": [
                {"repository": BUSYBOX, "auth_required": "true"},
                {"repository": NGINX, "auth_required": "false"},
            ]}),
        },
        Parses {
            case: "user_repository_mapping example: every login in one hash",
            body: USER_REPOSITORY_MAPPING.as_bytes(),
            want: json!({"users": [{
                "admin": [{"repository": BUSYBOX, "auth_required": "true"}],
                "jdoe@example.com": [
                    {"repository": BUSYBOX, "auth_required": "true"},
                    {"repository": NGINX, "auth_required": "false"},
                ],
            }]}),
        },
        Parses {
            case: "host_repository_mapping example",
            body: HOST_REPOSITORY_MAPPING.as_bytes(),
            want: json!({"hosts": [{HOST: [
                {"repository": BUSYBOX, "auth_required": "true"},
                {"repository": FEDORA, "auth_required": "true"},
            ]}]}),
        },
        Parses {
            case: "update_hosts: a repeated child starts a new hash",
            body: b"hosts[][uuid]=u1&hosts[][uuid]=u2",
            want: json!({"hosts": [{"uuid": "u1"}, {"uuid": "u2"}]}),
        },
        Parses {
            case: "update_hosts with a nil uuid",
            body: b"hosts[][uuid]=u1&hosts[][uuid]",
            want: json!({"hosts": [{"uuid": "u1"}, {"uuid": null}]}),
        },
        Parses {
            case: "empty repository list is a bare key",
            body: b"repositories",
            want: json!({"repositories": null}),
        },
        Parses {
            case: "user with no repositories",
            body: b"users[][admin]",
            want: json!({"users": [{"admin": null}]}),
        },
        Parses {
            case: "host with no repositories",
            body: b"hosts[][uuid-1]",
            want: json!({"hosts": [{"uuid-1": null}]}),
        },
        Parses {
            case: "a user without repositories between two with",
            body: b"users[][a][][repository]=x&users[][b]&users[][c][][repository]=y",
            want: json!({"users": [{
                "a": [{"repository": "x"}],
                "b": null,
                "c": [{"repository": "y"}],
            }]}),
        },
        Parses {
            case: "empty body",
            body: b"",
            want: json!({}),
        },
        Parses {
            case: "a JSON body read as a form has no usable key",
            body: br#"{"repositories":[]}"#,
            want: json!({"{\"repositories\":": [{"}": null}]}),
        },
        Parses {
            case: "%40 in a login and %2F in a name",
            body: b"users[][jdoe%40example.com][][repository]=a%2Fb",
            want: json!({"users": [{"jdoe@example.com": [{"repository": "a/b"}]}]}),
        },
        Parses {
            case: "%5B and %5D are brackets",
            body: b"users%5B%5D%5Badmin%5D%5B%5D%5Brepository%5D=x",
            want: json!({"users": [{"admin": [{"repository": "x"}]}]}),
        },
        Parses {
            case: "true and false stay text",
            body: b"a=true&b=false&c=TRUE",
            want: json!({"a": "true", "b": "false", "c": "TRUE"}),
        },
        Parses {
            case: "plus and %20 are spaces, %2B a plus",
            body: b"a=b+c%20d%2Be",
            want: json!({"a": "b c d+e"}),
        },
        Parses {
            case: "UTF-8, raw and escaped",
            body: "a=é&b=%C3%A9".as_bytes(),
            want: json!({"a": "é", "b": "é"}),
        },
        Parses {
            case: "duplicate plain keys: the last wins",
            body: b"a=1&a=2",
            want: json!({"a": "2"}),
        },
        Parses {
            case: "bare key then value, and value then empty",
            body: b"a&b=1&c=",
            want: json!({"a": null, "b": "1", "c": ""}),
        },
        Parses {
            case: "only the first = splits",
            body: b"a=x=y",
            want: json!({"a": "x=y"}),
        },
        Parses {
            case: "semicolons separate, spaces after a separator are skipped",
            body: b"a=1;b=2&  c=3",
            want: json!({"a": "1", "b": "2", "c": "3"}),
        },
        Parses {
            case: "empty pieces are ignored",
            body: b"&&a=1&;",
            want: json!({"a": "1"}),
        },
        Parses {
            case: "names without a key are ignored",
            body: b"=x&[]=y&[]&[[]]=z",
            want: json!({}),
        },
        Parses {
            case: "arrays",
            body: b"a[]=1&a[]=2&a[]",
            want: json!({"a": ["1", "2", null]}),
        },
        Parses {
            case: "a null slot becomes an array or a hash",
            body: b"a&a[]=1&b&b[c]=2",
            want: json!({"a": ["1"], "b": {"c": "2"}}),
        },
        Parses {
            case: "hashes",
            body: b"a[b][c]=1&a[b][d]=2&a[e]=3",
            want: json!({"a": {"b": {"c": "1", "d": "2"}, "e": "3"}}),
        },
        Parses {
            case: "array of hashes: distinct children merge",
            body: b"a[][b]=1&a[][c]=2",
            want: json!({"a": [{"b": "1", "c": "2"}]}),
        },
        Parses {
            case: "array of hashes: a present child, even null, starts a new hash",
            body: b"a[][b]&a[][b]=2",
            want: json!({"a": [{"b": null}, {"b": "2"}]}),
        },
        Parses {
            case: "a child containing [] always merges",
            body: b"a[][b][]=1&a[][b][]=2",
            want: json!({"a": [{"b": ["1", "2"]}]}),
        },
        Parses {
            case: "nested child path checked in full",
            body: b"a[][b][c]=1&a[][b][d]=2&a[][b][c]=3",
            want: json!({"a": [{"b": {"c": "1", "d": "2"}}, {"b": {"c": "3"}}]}),
        },
        Parses {
            case: "a hash after a string element starts a new one",
            body: b"a[]=1&a[][b]=2",
            want: json!({"a": ["1", {"b": "2"}]}),
        },
        Parses {
            case: "[][ pushes Rack's nil",
            body: b"a[][=1",
            want: json!({"a": [null]}),
        },
        Parses {
            case: "[][] pushes a wrapped value",
            body: b"a[][]=1",
            want: json!({"a": [["1"]]}),
        },
        Parses {
            case: "a trailing [ is part of the key",
            body: b"a[=1",
            want: json!({"a[": "1"}),
        },
        Parses {
            case: "a stray ] closes the key",
            body: b"a]b=1&[c]=2",
            want: json!({"a": {"b": "1"}, "c": "2"}),
        },
        Parses {
            case: "an unkeyed hash child nils the slot",
            body: b"a[b]=1&a[[]]=2",
            want: json!({"a": null}),
        },
        Parses {
            case: "a string may be replaced by a plain assignment",
            body: b"a[b]=1&a=2",
            want: json!({"a": "2"}),
        },
    ];
    for row in rows {
        let got = parse_nested_query(row.body, &FormLimits::default());
        assert_eq!(got, Ok(row.want), "case {}", row.case);
    }
}

struct Refuses {
    case: &'static str,
    body: &'static [u8],
    limits: FormLimits,
    want: &'static str,
}

#[test]
fn refuses_table() {
    let tight = FormLimits {
        max_params: 2,
        max_depth: 2,
    };
    let rows = [
        Refuses {
            case: "lone %",
            body: b"a=%",
            limits: FormLimits::default(),
            want: r#"invalid %-encoding in "%""#,
        },
        Refuses {
            case: "one hex digit",
            body: b"a=x%4",
            limits: FormLimits::default(),
            want: r#"invalid %-encoding in "x%4""#,
        },
        Refuses {
            case: "not hex, in a name",
            body: b"users[]%zz=1",
            limits: FormLimits::default(),
            want: r#"invalid %-encoding in "users[]%zz""#,
        },
        Refuses {
            case: "escaped non-UTF-8",
            body: b"a=%FF",
            limits: FormLimits::default(),
            want: r#""%FF" does not decode to UTF-8 text"#,
        },
        Refuses {
            case: "raw non-UTF-8",
            body: b"a\xff=1",
            limits: FormLimits::default(),
            want: "\"a\u{fffd}\" does not decode to UTF-8 text",
        },
        Refuses {
            case: "string then array",
            body: b"users=x&users[]=y",
            limits: FormLimits::default(),
            want: "expected Array (got String) for param `users`",
        },
        Refuses {
            case: "array then hash",
            body: b"users[]=x&users[a]=y",
            limits: FormLimits::default(),
            want: "expected Hash (got Array) for param `users`",
        },
        Refuses {
            case: "hash then array of hashes",
            body: b"users[a]=x&users[][b]=y",
            limits: FormLimits::default(),
            want: "expected Array (got Hash) for param `users`",
        },
        Refuses {
            case: "nested conflict names the inner key",
            body: b"users[][admin]=x&users[][admin][][repository]=y",
            limits: FormLimits::default(),
            want: "expected Array (got String) for param `admin`",
        },
        Refuses {
            case: "too many params (empty pieces count)",
            body: b"a&&b",
            limits: tight,
            want: "the body has more than 2 parameters",
        },
        Refuses {
            case: "too deep",
            body: b"a[b][c]=1",
            limits: tight,
            want: r#"param "a[b][c]" is nested deeper than 2 levels"#,
        },
        Refuses {
            case: "a long name is shortened",
            body: b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa%",
            limits: FormLimits::default(),
            want: r#"invalid %-encoding in "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa…""#,
        },
    ];
    for row in rows {
        let got = parse_nested_query(row.body, &row.limits).map_err(|e| e.to_string());
        assert_eq!(got, Err(row.want.to_owned()), "case {}", row.case);
    }
}

#[test]
fn default_limits_are_rack_params_and_32_levels() {
    let limits = FormLimits::default();
    let at_limit = vec!["a[]=1"; 4096].join("&");
    assert!(parse_nested_query(at_limit.as_bytes(), &limits).is_ok());
    let over = format!("{at_limit}&b");
    assert_eq!(
        parse_nested_query(over.as_bytes(), &limits),
        Err(FormError::TooManyParams { limit: 4096 })
    );
    let deepest = format!("a{}=1", "[b]".repeat(31));
    assert!(parse_nested_query(deepest.as_bytes(), &limits).is_ok());
    let deeper = format!("a{}=1", "[b]".repeat(32));
    assert!(matches!(
        parse_nested_query(deeper.as_bytes(), &limits),
        Err(FormError::TooDeep { limit: 32, .. })
    ));
}

// ---------------------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------------------

/// Bytes built from the characters the parser treats specially, so that structure is dense.
fn formish() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop::sample::select(b"[]&;=%+ abAF09\xff\xc3".to_vec());
    prop::collection::vec(byte, 0..64)
}

/// A login or host key: anything but brackets, which Rack would read as structure (a
/// limitation of the wire form, not of the parser).
fn principal() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9._-]{0,12}(@example\\.com)?",
        "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "[^\\[\\]\\p{C}]{1,12}",
    ]
}

/// Arbitrary text values: anything, escaped by the encoder.
fn text() -> impl Strategy<Value = String> {
    "\\PC{0,16}"
}

fn entries() -> impl Strategy<Value = Vec<(String, bool)>> {
    prop::collection::vec((text(), any::<bool>()), 0..4)
}

/// What Katello sends, and what Rack makes of it: bools become text, empty lists null, and
/// every principal of a push lands in one hash.
fn payload() -> impl Strategy<Value = (Value, Value)> {
    let grants = prop::collection::btree_map(principal(), entries(), 0..4);
    prop_oneof![
        entries().prop_map(|repos| {
            let sent = json!({"repositories": repos.iter().map(entry).collect::<Vec<_>>()});
            let parsed = json!({"repositories": list_or_null(repos.iter().map(entry_text))});
            (sent, parsed)
        }),
        (prop_oneof![Just("users"), Just("hosts")], grants).prop_map(|(key, grants)| {
            let sent: Vec<Value> = grants
                .iter()
                .map(|(principal, repos)| {
                    json!({principal: repos.iter().map(entry).collect::<Vec<_>>()})
                })
                .collect();
            let merged: serde_json::Map<String, Value> = grants
                .iter()
                .map(|(principal, repos)| {
                    (
                        principal.clone(),
                        list_or_null(repos.iter().map(entry_text)),
                    )
                })
                .collect();
            let parsed = if grants.is_empty() {
                json!({key: null})
            } else {
                json!({key: [merged]})
            };
            (json!({key: sent}), parsed)
        }),
        prop::collection::vec(prop::option::of(text()), 0..4).prop_map(|uuids| {
            let hosts: Vec<Value> = uuids.iter().map(|uuid| json!({"uuid": uuid})).collect();
            let parsed = if hosts.is_empty() {
                Value::Null
            } else {
                Value::Array(hosts.clone())
            };
            (json!({"hosts": hosts}), json!({"hosts": parsed}))
        }),
    ]
}

fn entry((repository, auth_required): &(String, bool)) -> Value {
    json!({"repository": repository, "auth_required": auth_required})
}

fn entry_text((repository, auth_required): &(String, bool)) -> Value {
    json!({"repository": repository, "auth_required": auth_required.to_string()})
}

fn list_or_null(items: impl Iterator<Item = Value>) -> Value {
    let items: Vec<Value> = items.collect();
    if items.is_empty() {
        Value::Null
    } else {
        Value::Array(items)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_nested_query(&body, &FormLimits::default());
    }

    #[test]
    fn dense_structure_never_panics(body in formish(), params in 1_usize..8, depth in 1_usize..6) {
        let limits = FormLimits { max_params: params, max_depth: depth };
        let _ = parse_nested_query(&body, &limits);
        let _ = parse_nested_query(&body, &FormLimits::default());
    }

    #[test]
    fn decoding_agrees_with_form_urlencoded(raw in prop::collection::vec(
        prop::sample::select(b"ab+%2F0e\xc3\xa9 ".to_vec()), 0..24,
    )) {
        // One name, no separators: form_urlencoded::parse yields exactly (name, "").
        if let Ok(ours) = unescape(&raw) {
            let theirs: Vec<_> = form_urlencoded::parse(&raw).collect();
            prop_assert_eq!(theirs.len(), usize::from(!raw.is_empty()));
            if let Some((name, value)) = theirs.first() {
                prop_assert_eq!(name.as_ref(), ours.as_str());
                prop_assert_eq!(value.as_ref(), "");
            }
        }
    }

    #[test]
    fn escaped_text_round_trips(text in "\\PC{0,32}") {
        let escaped: String = form_urlencoded::byte_serialize(text.as_bytes()).collect();
        prop_assert_eq!(unescape(escaped.as_bytes()), Ok(text));
    }

    #[test]
    fn rest_client_bodies_parse_back((sent, parsed) in payload()) {
        let body = rest_client_encode(&sent);
        prop_assert_eq!(parse_nested_query(body.as_bytes(), &FormLimits::default()), Ok(parsed));
    }
}
