//! `route::parse_request`: arbitrary methods and paths never panic and are accepted only in
//! the grammar; every request the parser can return round-trips through a renderer written
//! here from the endpoint table; keyword soup under `/v2/` is never `NotRegistry`.

use proptest::prelude::*;
use proptest::sample::select;

use registry_gate_core::route::{
    is_valid_digest, is_valid_repository_name, is_valid_tag, parse_request, Action, Page,
    RegistryRequest, Route, RouteError, MAX_NAME_LEN, MAX_PAGE_SIZE,
};

use crate::config;

// ---------------------------------------------------------------------------------------
// Generators of the OCI grammar.
// ---------------------------------------------------------------------------------------

/// Registry keywords that are themselves valid name components: a name may contain them.
const KEYWORD_COMPONENTS: &[&str] = &[
    "manifests",
    "blobs",
    "uploads",
    "tags",
    "list",
    "referrers",
    "v2",
    "token",
    "search",
];

/// One name component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z0-9]{1,8}((\\.|_|__|-{1,3})[a-z0-9]{1,8}){0,3}",
        1 => select(KEYWORD_COMPONENTS).prop_map(str::to_owned),
        1 => "[a-z0-9]{1,60}",
    ]
}

/// A valid repository name, including names right at the 255-byte cap.
pub(crate) fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::collection::vec(component(), 1..5).prop_map(|parts| parts.join("/")),
        1 => "[a-z0-9]{1,50}(/[a-z0-9]{1,50}){0,4}",
        1 => (245..=MAX_NAME_LEN).prop_map(|len| {
            // `a/a/…` up to exactly `len` bytes, ending in a component.
            let mut name = "ab/".repeat(len / 3);
            name.truncate(len);
            while name.ends_with('/') {
                name.pop();
            }
            name
        }),
    ]
    .prop_filter("names are at most 255 bytes", |name| {
        name.len() <= MAX_NAME_LEN
    })
}

/// `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn tag() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_][A-Za-z0-9._-]{0,20}",
        "[A-Za-z0-9_][A-Za-z0-9._-]{120,127}",
        select(&["latest", "list", "uploads", "manifests", "_", "v1.0"][..])
            .prop_map(str::to_owned),
    ]
}

/// A registered digest: `sha256` with 64 or `sha512` with 128 lowercase hex digits.
fn digest() -> impl Strategy<Value = String> {
    prop_oneof!["sha256:[0-9a-f]{64}", "sha512:[0-9a-f]{128}"]
}

/// `[A-Za-z0-9_.=-]{1,256}`, not a dot-segment.
fn session() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "[A-Za-z0-9_.=-]{1,40}",
        "[A-Za-z0-9_.=-]{250,256}",
    ]
    .prop_filter("not a dot-segment", |id| id != "." && id != "..")
}

/// Query parameters no route reads (names never equal `n`, `last`, `q`, `mount`, `from`).
fn noise_params() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec("x-[a-z]{0,5}(=[A-Za-z0-9._%-]{0,8})?", 0..3)
}

/// Form-encodes `text` (`application/x-www-form-urlencoded`), choosing per byte between the
/// raw byte (unreserved characters only), `%XX` in either case, and `+` for a space.
fn form_encode(text: &str, choices: &[u8]) -> String {
    let mut out = String::new();
    for (i, byte) in text.bytes().enumerate() {
        let choice = choices.get(i % choices.len().max(1)).copied().unwrap_or(0);
        let unreserved = byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~');
        match (byte, choice % 3) {
            (b' ', 0) => out.push('+'),
            (_, 0) | (_, 1) if unreserved => out.push(char::from(byte)),
            (_, 2) => out.push_str(&format!("%{byte:02x}")),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// `n` as 1 to 6 decimal digits, possibly zero-padded.
fn render_n(n: usize, width: usize) -> String {
    format!("{n:0width$}", width = width.clamp(1, 6))
}

/// A query from `params` (already `key=value` text) in the given order, `?` included when
/// there is anything to send.
fn render_query(mut params: Vec<String>, order: &[usize]) -> String {
    for (i, j) in order.iter().enumerate() {
        if params.len() > 1 {
            let (a, b) = (i % params.len(), j % params.len());
            params.swap(a, b);
        }
    }
    if params.is_empty() {
        String::new()
    } else {
        format!("?{}", params.join("&"))
    }
}

/// A request the parser may return, with a (method, path) that must parse to it.
#[derive(Debug, Clone)]
struct Rendered {
    method: &'static str,
    path: String,
    want: RegistryRequest,
}

fn rendered(method: &'static str, path: String, route: Route) -> Rendered {
    // The endpoint table's method → action mapping (the token endpoint only ever reads).
    let action = match (method, &route) {
        (_, Route::Token) => Action::Pull,
        ("GET" | "HEAD", _) => Action::Pull,
        ("POST" | "PUT" | "PATCH", _) => Action::Push,
        _ => Action::Delete,
    };
    Rendered {
        method,
        path,
        want: RegistryRequest { route, action },
    }
}

const PULL: &[&str] = &["GET", "HEAD"];

fn valid_request() -> impl Strategy<Value = Rendered> {
    let ping = (
        select(PULL),
        select(&["/v2", "/v2/"][..]),
        noise_params(),
        any::<Vec<usize>>(),
    )
        .prop_map(|(method, path, noise, order)| {
            rendered(
                method,
                format!("{path}{}", render_query(noise, &order)),
                Route::Ping,
            )
        });
    let catalog = (
        select(PULL),
        proptest::option::of((0..=MAX_PAGE_SIZE, 1..=6_usize)),
        proptest::option::of((name(), any::<Vec<u8>>())),
        noise_params(),
        any::<Vec<usize>>(),
    )
        .prop_map(|(method, n, last, mut params, order)| {
            if let Some((n, width)) = n {
                params.push(format!("n={}", render_n(n, width)));
            }
            if let Some((last, choices)) = &last {
                params.push(format!("last={}", form_encode(last, choices)));
            }
            let page = Page {
                n: n.map(|(n, _)| n),
                last: last.map(|(last, _)| last),
            };
            let path = format!("/v2/_catalog{}", render_query(params, &order));
            rendered(method, path, Route::Catalog(page))
        });
    let token =
        (select(&["GET", "POST"][..]), "[A-Za-z0-9=&:/,._%-]{0,60}").prop_map(|(method, query)| {
            let query = if query.is_empty() {
                query
            } else {
                format!("?{query}")
            };
            rendered(method, format!("/v2/token{query}"), Route::Token)
        });
    let manifest = (
        select(&["GET", "HEAD", "PUT", "DELETE"][..]),
        name(),
        prop_oneof![tag(), digest()],
    )
        .prop_map(|(method, name, reference)| {
            let path = format!("/v2/{name}/manifests/{reference}");
            rendered(method, path, Route::Manifest { name, reference })
        });
    let blob = (select(&["GET", "HEAD", "DELETE"][..]), name(), digest()).prop_map(
        |(method, name, digest)| {
            let path = format!("/v2/{name}/blobs/{digest}");
            rendered(method, path, Route::Blob { name, digest })
        },
    );
    let upload_start = (name(), any::<bool>(), noise_params(), any::<Vec<usize>>()).prop_map(
        |(name, slash, noise, order)| {
            let slash = if slash { "/" } else { "" };
            let path = format!(
                "/v2/{name}/blobs/uploads{slash}{}",
                render_query(noise, &order)
            );
            rendered("POST", path, Route::BlobUpload { name })
        },
    );
    let upload_session = (
        select(&["GET", "PATCH", "PUT", "DELETE"][..]),
        name(),
        session(),
    )
        .prop_map(|(method, name, session)| {
            let path = format!("/v2/{name}/blobs/uploads/{session}");
            rendered(method, path, Route::BlobUpload { name })
        });
    let tags_list = (select(PULL), name()).prop_map(|(method, name)| {
        let path = format!("/v2/{name}/tags/list");
        rendered(method, path, Route::TagsList { name })
    });
    let referrers = (select(PULL), name(), digest()).prop_map(|(method, name, digest)| {
        let path = format!("/v2/{name}/referrers/{digest}");
        rendered(method, path, Route::Referrers { name, digest })
    });
    let v1_ping =
        select(PULL).prop_map(|method| rendered(method, "/v1/_ping".to_owned(), Route::V1Ping));
    let v1_search = (
        select(PULL),
        "\\PC{0,30}",
        any::<bool>(),
        any::<Vec<u8>>(),
        proptest::option::of((0..=MAX_PAGE_SIZE, 1..=6_usize)),
        noise_params(),
        any::<Vec<usize>>(),
    )
        .prop_map(
            |(method, query, send_empty, choices, n, mut params, order)| {
                if !query.is_empty() || send_empty {
                    params.push(format!("q={}", form_encode(&query, &choices)));
                }
                if let Some((n, width)) = n {
                    params.push(format!("n={}", render_n(n, width)));
                }
                let path = format!("/v1/search{}", render_query(params, &order));
                let route = Route::V1Search {
                    query,
                    n: n.map(|(n, _)| n),
                };
                rendered(method, path, route)
            },
        );
    prop_oneof![
        1 => ping,
        1 => catalog,
        1 => token,
        3 => manifest,
        2 => blob,
        2 => upload_start,
        2 => upload_session,
        1 => tags_list,
        1 => referrers,
        1 => v1_ping,
        1 => v1_search,
    ]
}

// ---------------------------------------------------------------------------------------
// What an accepted request must satisfy, whatever the input.
// ---------------------------------------------------------------------------------------

/// Checks an accepted (method, path) against the module's promises: methods map to actions
/// exactly, the path holds no byte outside the grammars (no `%`, `\`, `#`, `;`, control or
/// non-ASCII byte), no empty or dot segment, and every name and reference is valid.
fn check_accepted(method: &str, path: &str, got: &RegistryRequest) -> Result<(), TestCaseError> {
    let want_action = match (method, &got.route) {
        ("GET" | "POST", Route::Token) => Action::Pull,
        ("GET" | "HEAD", _) => Action::Pull,
        ("POST" | "PUT" | "PATCH", _) => Action::Push,
        ("DELETE", _) => Action::Delete,
        _ => return Err(TestCaseError::fail(format!("method {method:?} accepted"))),
    };
    prop_assert_eq!(got.action, want_action, "action of {}", method);
    let bare = path.split_once('?').map_or(path, |(bare, _)| bare);
    prop_assert!(
        bare.bytes()
            .all(|b| b.is_ascii_alphanumeric()
                || matches!(b, b'/' | b'.' | b'_' | b'-' | b':' | b'=')),
        "byte outside the grammars in accepted path {:?}",
        bare
    );
    prop_assert!(
        bare.starts_with("/v2") || bare.starts_with("/v1"),
        "{:?}",
        bare
    );
    let segments: Vec<&str> = bare.split('/').skip(1).collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        prop_assert!(
            !matches!(*segment, "." | "..") && (last || !segment.is_empty()),
            "dot or empty segment in accepted path {:?}",
            bare
        );
    }
    if let Some(name) = got.route.repository() {
        prop_assert!(is_valid_repository_name(name), "name {:?}", name);
        let expected_prefix = format!("/v2/{name}/");
        prop_assert!(
            bare.starts_with(&expected_prefix),
            "{:?} names {:?}",
            bare,
            name
        );
    }
    match &got.route {
        Route::Manifest { reference, .. } => {
            prop_assert!(
                is_valid_tag(reference) || is_valid_digest(reference),
                "{:?}",
                reference
            )
        }
        Route::Blob { digest, .. } | Route::Referrers { digest, .. } => {
            prop_assert!(is_valid_digest(digest), "{:?}", digest)
        }
        Route::Catalog(Page { n, last }) => {
            prop_assert!(n.is_none_or(|n| n <= MAX_PAGE_SIZE));
            prop_assert!(last.as_deref().is_none_or(is_valid_repository_name));
        }
        Route::V1Search { query, n } => {
            prop_assert!(n.is_none_or(|n| n <= MAX_PAGE_SIZE));
            prop_assert!(!query.chars().any(char::is_control), "{:?}", query);
        }
        _ => {}
    }
    Ok(())
}

/// Methods worth trying besides arbitrary text: every known one, their lowercase forms and
/// methods no endpoint lists.
fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(&[
            "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "get", "Get", "OPTIONS", "TRACE",
            "PROPFIND", "CONNECT", "GET ", " GET", "",
        ][..])
        .prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

/// Path pieces: registry keywords, encodings of `/` and `.`, parameters, query and fragment
/// marks, valid names, references and sessions, and a little printable junk.
fn soup_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(&[
            "manifests", "blobs", "uploads", "tags", "list", "referrers", "_catalog", "token",
            "search", "_ping", "v2", "v1", "..", ".", "%2F", "%2f", "%2E%2E", "%2e", "%00", "%",
            ";", ";x=y", "?", "?n=1", "?mount=x", "&", "#", "\\", "", "/", "~", ":",
        ][..])
        .prop_map(str::to_owned),
        2 => name(),
        1 => tag(),
        1 => digest(),
        1 => session(),
        1 => "[ -~]{0,4}",
    ]
}

fn soup_path(prefix: &'static [&'static str]) -> impl Strategy<Value = String> {
    (
        select(prefix),
        prop::collection::vec((soup_piece(), select(&["/", "/", "", "//"][..])), 0..10),
    )
        .prop_map(|(prefix, pieces)| {
            let mut path = prefix.to_owned();
            for (piece, separator) in pieces {
                path.push_str(&piece);
                path.push_str(separator);
            }
            path
        })
}

proptest! {
    #![proptest_config(config(2048))]

    /// Any method and any path: no panic, and an acceptance satisfies `check_accepted`.
    #[test]
    fn arbitrary_method_and_path(method in method(), path in any::<String>()) {
        if let Ok(got) = parse_request(&method, &path) {
            check_accepted(&method, &path, &got)?;
        }
    }

    /// Lossy-decoded byte soup and long inputs (the work is linear; nothing may panic).
    #[test]
    fn byte_soup_paths(
        method in method(),
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        repeat in 1..200_usize,
    ) {
        let path = String::from_utf8_lossy(&bytes).repeat(repeat);
        let prefixed = format!("/v2/{path}");
        for path in [path.as_str(), prefixed.as_str()] {
            if let Ok(got) = parse_request(&method, path) {
                check_accepted(&method, path, &got)?;
            }
        }
    }

    /// Every request the parser can produce, rendered from the endpoint table, parses back
    /// to itself.
    #[test]
    fn valid_requests_round_trip(request in valid_request()) {
        let got = parse_request(request.method, &request.path);
        prop_assert_eq!(&got, &Ok(request.want.clone()), "{} {}", request.method, request.path);
        if let Ok(got) = &got {
            check_accepted(request.method, &request.path, got)?;
        }
    }

    /// A valid request with a method its endpoint does not list is `MethodNotAllowed`.
    #[test]
    fn other_methods_are_refused(request in valid_request(), method in method()) {
        let listed: &[&str] = match &request.want.route {
            Route::Token => &["GET", "POST"],
            Route::Manifest { .. } => &["GET", "HEAD", "PUT", "DELETE"],
            Route::Blob { .. } => &["GET", "HEAD", "DELETE"],
            // The renderer's path says whether this is an upload start or a session.
            Route::BlobUpload { .. } if request.method == "POST" => &["POST"],
            Route::BlobUpload { .. } => &["GET", "PATCH", "PUT", "DELETE"],
            _ => &["GET", "HEAD"],
        };
        let got = parse_request(&method, &request.path);
        if listed.contains(&method.as_str()) {
            prop_assert!(got.is_ok(), "{} {}: {:?}", method, request.path, got);
        } else {
            prop_assert!(
                matches!(got, Err(RouteError::MethodNotAllowed(_))),
                "{:?} {}: {:?}", method, request.path, got
            );
        }
    }

    /// A valid request with a hostile byte or sequence spliced into its path (before any
    /// query) is never accepted with that byte: acceptances stay in the grammar.
    #[test]
    fn near_valid_paths_stay_in_the_grammar(
        request in valid_request(),
        at in any::<prop::sample::Index>(),
        splice in select(&[
            "%", "%2F", "%2e", "\\", "#", ";", " ", "\t", "\n", "\u{0}", "\u{7f}", "é", "\u{ff0f}",
            "/", "//", "/./", "/../", ".", "..", "?", "&", "+", "*", ":", "=", "@", "A",
        ][..]),
    ) {
        let bare_len = request.path.find('?').unwrap_or(request.path.len());
        let at = at.index(bare_len + 1);
        let mut path = request.path.clone();
        if path.is_char_boundary(at) {
            path.insert_str(at, splice);
        }
        if let Ok(got) = parse_request(request.method, &path) {
            check_accepted(request.method, &path, &got)?;
        }
    }

    /// Keyword soup under `/v2/` and `/v1/`: never `NotRegistry` (a registry path is never
    /// forwarded unauthorized), never a panic, and acceptances stay in the grammar.
    #[test]
    fn keyword_soup_is_never_foreign(
        method in method(),
        path in soup_path(&["/v2/", "/v1/"]),
    ) {
        let got = parse_request(&method, &path);
        prop_assert_ne!(&got, &Err(RouteError::NotRegistry), "{:?}", path);
        if let Ok(got) = &got {
            check_accepted(&method, &path, got)?;
        }
    }

    /// The same soup after other prefixes (`/v2` glued to a piece, `/V2/`, none): no panic,
    /// and acceptances stay in the grammar.
    #[test]
    fn keyword_soup_elsewhere(
        method in method(),
        path in soup_path(&["/v2", "/V2/", "/", "", "//v2/", "/v2/../", "/x/../v2/"]),
    ) {
        if let Ok(got) = parse_request(&method, &path) {
            check_accepted(&method, &path, &got)?;
        }
    }
}
