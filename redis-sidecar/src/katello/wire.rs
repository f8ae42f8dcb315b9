//! Test fixtures for the Katello wire form: the example bodies of
//! `research/katello-wire.md` §1.3, byte for byte, and an encoder that writes any structure the
//! way rest-client 2.1.0 does, so tests can produce bodies Katello would send.
//!
//! Test-only: nothing here may be used to build a real request.

use serde_json::Value;

/// `repository_list`: two repositories, one `auth_required` true and one false.
pub const REPOSITORY_LIST: &str = "repositories[][repository]=acme_corp%2Fcontainers%2Fbusybox&repositories[][auth_required]=true&repositories[][repository]=acme_corp%2Fdev%2Fweb_cv%2Fcontainers%2Fnginx&repositories[][auth_required]=false";

/// `user_repository_mapping`: `admin` has one repository, `jdoe@example.com` two.
pub const USER_REPOSITORY_MAPPING: &str = "users[][admin][][repository]=acme_corp%2Fcontainers%2Fbusybox&users[][admin][][auth_required]=true&users[][jdoe%40example.com][][repository]=acme_corp%2Fcontainers%2Fbusybox&users[][jdoe%40example.com][][auth_required]=true&users[][jdoe%40example.com][][repository]=acme_corp%2Fdev%2Fweb_cv%2Fcontainers%2Fnginx&users[][jdoe%40example.com][][auth_required]=false";

/// `host_repository_mapping` (and `update_host_repositories`): one host, two repositories.
pub const HOST_REPOSITORY_MAPPING: &str = "hosts[][6f1e0a8c-3b7d-4f2a-9c55-0d2e8b1a7f34][][repository]=acme_corp%2Fcontainers%2Fbusybox&hosts[][6f1e0a8c-3b7d-4f2a-9c55-0d2e8b1a7f34][][auth_required]=true&hosts[][6f1e0a8c-3b7d-4f2a-9c55-0d2e8b1a7f34][][repository]=acme_corp%2Fcontainers%2Ffedora&hosts[][6f1e0a8c-3b7d-4f2a-9c55-0d2e8b1a7f34][][auth_required]=true";

/// The host of [`HOST_REPOSITORY_MAPPING`].
pub const HOST: &str = "6f1e0a8c-3b7d-4f2a-9c55-0d2e8b1a7f34";
pub const BUSYBOX: &str = "acme_corp/containers/busybox";
pub const NGINX: &str = "acme_corp/dev/web_cv/containers/nginx";
pub const FEDORA: &str = "acme_corp/containers/fedora";

/// rest-client 2.1.0's `Utils.encode_query_string(object)`: `flatten_params(object, true)`
/// (an array element becomes `parent[]`, a hash key `parent[key]`, an empty array or hash a
/// bare `parent`; the leaf key and the value are escaped with
/// `URI.encode_www_form_component`, brackets are literal), a null value a bare key, pairs
/// joined with `&`. Booleans and numbers are sent as their `to_s`.
pub fn rest_client_encode(object: &Value) -> String {
    let mut pairs = Vec::new();
    flatten(object, None, &mut pairs);
    pairs
        .into_iter()
        .map(|(key, value)| match value {
            Some(value) => format!("{key}={value}"),
            None => key,
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn flatten(object: &Value, parent: Option<&str>, pairs: &mut Vec<(String, Option<String>)>) {
    let items: Vec<(String, &Value)> = match object {
        Value::Array(list) => list.iter().map(|v| (String::new(), v)).collect(),
        Value::Object(map) => map.iter().map(|(k, v)| (escape(k), v)).collect(),
        _ => panic!("flatten_params expects a Hash or an Array, got {object}"),
    };
    if let (true, Some(parent)) = (items.is_empty(), parent) {
        pairs.push((parent.to_owned(), None));
        return;
    }
    for (key, value) in items {
        let key = match parent {
            Some(parent) => format!("{parent}[{key}]"),
            None => key,
        };
        match value {
            Value::Array(_) | Value::Object(_) => flatten(value, Some(&key), pairs),
            Value::Null => pairs.push((key, None)),
            Value::String(text) => pairs.push((key, Some(escape(text)))),
            other => pairs.push((key, Some(escape(&other.to_string())))),
        }
    }
}

/// `URI.encode_www_form_component`: `*-._`, digits and ASCII letters stay, a space is `+`,
/// everything else `%XX` — exactly `form_urlencoded::byte_serialize`.
fn escape(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[test]
fn encoder_reproduces_the_captured_bodies() {
    use serde_json::json;
    let repositories = json!({"repositories": [
        {"repository": BUSYBOX, "auth_required": true},
        {"repository": NGINX, "auth_required": false},
    ]});
    let users = json!({"users": [
        {"admin": [{"repository": BUSYBOX, "auth_required": true}]},
        {"jdoe@example.com": [
            {"repository": BUSYBOX, "auth_required": true},
            {"repository": NGINX, "auth_required": false},
        ]},
    ]});
    let hosts = json!({"hosts": [{HOST: [
        {"repository": BUSYBOX, "auth_required": true},
        {"repository": FEDORA, "auth_required": true},
    ]}]});
    // serde_json's map sorts keys (Katello sends `repository` first): compare the pairs as
    // multisets.
    for (value, body, length) in [
        (repositories, REPOSITORY_LIST, 203),
        (users, USER_REPOSITORY_MAPPING, 362),
        (hosts, HOST_REPOSITORY_MAPPING, 320),
    ] {
        assert_eq!(body.len(), length, "Content-Length of {body}");
        let mut ours: Vec<String> = rest_client_encode(&value)
            .split('&')
            .map(String::from)
            .collect();
        let mut theirs: Vec<String> = body.split('&').map(String::from).collect();
        ours.sort();
        theirs.sort();
        assert_eq!(ours, theirs);
    }
    assert_eq!(
        rest_client_encode(&json!({"repositories": []})),
        "repositories"
    );
    assert_eq!(
        rest_client_encode(&json!({"users": [{"admin": []}]})),
        "users[][admin]"
    );
    assert_eq!(
        rest_client_encode(&json!({"hosts": [{"uuid-1": []}]})),
        "hosts[][uuid-1]"
    );
    assert_eq!(rest_client_encode(&json!({"a": null})), "a");
}
