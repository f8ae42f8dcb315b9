//! `/v2/_catalog` and `/v1/search`, answered from the index.
//!
//! A caller sees exactly the repositories it may pull (its grants ∪ public ones), sorted by
//! name, paginated with `n`/`last` and an RFC 5988 `Link` header as distribution does. Page
//! sizes are capped by policy. It never lists a repository the caller could not pull.

use serde::Serialize;

use crate::identity::Principal;
use crate::index::Index;
use crate::policy::Policy;
use crate::reply::Reply;
use crate::route::Page;

#[derive(Serialize)]
struct CatalogBody<'a> {
    repositories: Vec<&'a str>,
}

#[derive(Serialize)]
struct SearchBody<'a> {
    num_results: usize,
    query: &'a str,
    results: Vec<SearchResult<'a>>,
}

#[derive(Serialize)]
struct SearchResult<'a> {
    name: &'a str,
    description: &'a str,
}

/// One catalog page for `who`.
pub fn catalog(index: &Index, who: &Principal, page: &Page, policy: &Policy) -> Reply {
    let n = page
        .n
        .unwrap_or(policy.catalog_default_page)
        .min(policy.catalog_max_page);
    let mut names = index.pullable(who, page.last.as_deref());
    let repositories: Vec<&str> = names.by_ref().take(n).collect();
    let more = names.next().is_some();
    let body = to_json(&CatalogBody {
        repositories: repositories.clone(),
    });
    let reply = Reply::json(200, body);
    match repositories.last() {
        Some(last) if more => reply.with_header(
            "link",
            format!(
                "</v2/_catalog?last={}&n={n}>; rel=\"next\"",
                percent_encode(last)
            ),
        ),
        _ => reply,
    }
}

/// `/v1/search`: repositories `who` may pull whose name contains `query`, at most `n`.
pub fn search(
    index: &Index,
    who: &Principal,
    query: &str,
    n: Option<usize>,
    policy: &Policy,
) -> Reply {
    let n = n.unwrap_or(25).min(policy.catalog_max_page);
    let results: Vec<SearchResult> = index
        .pullable(who, None)
        .filter(|name| name.contains(query))
        .take(n)
        .map(|name| SearchResult {
            name,
            description: "",
        })
        .collect();
    let body = to_json(&SearchBody {
        num_results: results.len(),
        query,
        results,
    });
    Reply::json(200, body)
}

fn to_json<T: Serialize>(value: &T) -> String {
    // Serializing strings and numbers cannot fail; an empty object is the safe fallback.
    serde_json::to_string(value).unwrap_or_else(|_| "{}".into())
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::reply::Challenge;
    use crate::snapshot::{Content, Repository};

    fn policy(default: usize, max: usize) -> Policy {
        Policy {
            challenge: Challenge {
                realm: "https://gw/v2/token".into(),
                service: "svc".into(),
            },
            allow_push: false,
            catalog_default_page: default,
            catalog_max_page: max,
        }
    }

    fn index() -> Index {
        let mut repositories: Vec<Repository> = (0..10)
            .map(|i| Repository {
                name: format!("org/private-{i}"),
                auth_required: true,
            })
            .collect();
        repositories.push(Repository {
            name: "library/public".into(),
            auth_required: false,
        });
        Index::of(&Content {
            repositories,
            users: [(
                "alice".to_string(),
                vec!["org/private-1".to_string(), "org/private-7".to_string()],
            )]
            .into_iter()
            .collect(),
            ..Content::default()
        })
    }

    fn names(reply: &Reply) -> Vec<String> {
        let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        body["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn catalog_pages() {
        let index = index();
        let alice = Principal::User("alice".into());
        let page = |n: Option<usize>, last: Option<&str>| Page {
            n,
            last: last.map(Into::into),
        };
        type Row<'a> = (
            &'a str,
            &'a Principal,
            Page,
            Policy,
            &'a [&'a str],
            Option<&'a str>,
        );
        let rows: &[Row] = &[
            (
                "user sees grants and public, sorted",
                &alice,
                page(None, None),
                policy(100, 1000),
                &["library/public", "org/private-1", "org/private-7"],
                None,
            ),
            (
                "anonymous sees only public",
                &Principal::Anonymous,
                page(None, None),
                policy(100, 1000),
                &["library/public"],
                None,
            ),
            (
                "first page of one has a next link",
                &alice,
                page(Some(1), None),
                policy(100, 1000),
                &["library/public"],
                Some("</v2/_catalog?last=library%2Fpublic&n=1>; rel=\"next\""),
            ),
            (
                "last page has no link",
                &alice,
                page(Some(2), Some("library/public")),
                policy(100, 1000),
                &["org/private-1", "org/private-7"],
                None,
            ),
            (
                "n is capped by policy",
                &alice,
                page(Some(1_000_000), None),
                policy(100, 2),
                &["library/public", "org/private-1"],
                Some("</v2/_catalog?last=org%2Fprivate-1&n=2>; rel=\"next\""),
            ),
            (
                "default page size applies",
                &alice,
                page(None, None),
                policy(1, 10),
                &["library/public"],
                Some("</v2/_catalog?last=library%2Fpublic&n=1>; rel=\"next\""),
            ),
            (
                "n=0 gives an empty page",
                &alice,
                page(Some(0), None),
                policy(100, 1000),
                &[],
                None,
            ),
            (
                "last past the end is empty",
                &alice,
                page(None, Some("zzz")),
                policy(100, 1000),
                &[],
                None,
            ),
        ];
        for (case, who, page, policy, expected, link) in rows {
            let reply = catalog(&index, who, page, policy);
            assert_eq!(reply.status, 200, "{case}");
            assert_eq!(names(&reply), *expected, "{case}");
            assert_eq!(reply.header("link"), *link, "{case}");
        }
    }

    #[test]
    fn search_filters_by_substring_and_visibility() {
        let index = index();
        let alice = Principal::User("alice".into());
        let reply = search(&index, &alice, "private", None, &policy(100, 1000));
        let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(body["num_results"], 2);
        assert_eq!(body["query"], "private");
        assert_eq!(body["results"][0]["name"], "org/private-1");
        let anon = search(
            &index,
            &Principal::Anonymous,
            "private",
            None,
            &policy(100, 1000),
        );
        let body: serde_json::Value = serde_json::from_str(&anon.body).unwrap();
        assert_eq!(body["num_results"], 0);
        let capped = search(&index, &alice, "", Some(1), &policy(100, 1000));
        let body: serde_json::Value = serde_json::from_str(&capped.body).unwrap();
        assert_eq!(body["num_results"], 1);
    }
}
