//! Route parsing: turns an (Envoy-normalized) method and `:path` into a [`RegistryRequest`].
//!
//! Owns the OCI grammar for repository names, tags and digests. It must never guess: a path
//! that is malformed or that could be read in more than one way is an error, and the caller
//! denies it. It never looks anything up; authorization happens in `decision`.
//!
//! # Endpoints
//!
//! | path | route | methods |
//! |---|---|---|
//! | `/v2`, `/v2/` | [`Route::Ping`] | GET HEAD |
//! | `/v2/_catalog?n=&last=` | [`Route::Catalog`] | GET HEAD |
//! | `/v2/token` | [`Route::Token`] | GET POST (both [`Action::Pull`]) |
//! | `/v2/<name>/manifests/<tag or digest>` | [`Route::Manifest`] | GET HEAD PUT DELETE |
//! | `/v2/<name>/blobs/<digest>` | [`Route::Blob`] | GET HEAD DELETE |
//! | `/v2/<name>/blobs/uploads/` (or without the final `/`) | [`Route::BlobUpload`] | POST |
//! | `/v2/<name>/blobs/uploads/<session>` | [`Route::BlobUpload`] | GET PATCH PUT DELETE |
//! | `/v2/<name>/tags/list` | [`Route::TagsList`] | GET HEAD |
//! | `/v2/<name>/referrers/<digest>` | [`Route::Referrers`] | GET HEAD |
//! | `/v1/_ping` | [`Route::V1Ping`] | GET HEAD |
//! | `/v1/search?q=&n=` | [`Route::V1Search`] | GET HEAD |
//! | `/index/static`, `/index/static/` (any valid query, forwarded as sent) | [`Route::FlatpakIndex`] | GET HEAD |
//!
//! Methods map to actions exactly (case-sensitive): GET/HEAD → pull, POST/PUT/PATCH → push,
//! DELETE → delete. Any other method, and a known method an endpoint does not list, is
//! [`RouteError::MethodNotAllowed`]; there is no default action.
//!
//! # Reading a `/v2/<name>/...` path
//!
//! The name is everything before a fixed suffix matched at the **end** of the path: the last
//! two segments (three for an upload session) pick the endpoint, so a name may itself contain
//! components called `manifests`, `blobs`, `uploads`, `tags` or `list`. This is how the
//! upstreams read it too (distribution's and Pulp's routers anchor a greedy name at the end).
//! Every reading the suffix allows is validated in full (name, then tag/digest/session); if
//! more than one reading is valid the path is [`RouteError::Ambiguous`]. With the current
//! endpoint table the keyword in the second-to-last segment tells the readings apart, and the
//! only overlap (`.../blobs/uploads`, a blob whose digest is `uploads` or an upload start) is
//! settled because `uploads` is no digest. `Ambiguous` is the guard that keeps it so when an
//! endpoint is added.
//!
//! # Choosing the error
//!
//! Checks run in this order; the first failure is returned.
//! 1. The `?query` is split off at the first `?`.
//! 2. Namespace. A path that starts with `/v1` or `/v2` followed by the end, `/`, or a byte
//!    that is not ASCII alphanumeric (`/v2\..`, `/v2%2F`, `/v2#`) is a registry path; the last
//!    kind is [`RouteError::NameInvalid`]. Any other path is [`RouteError::NotRegistry`] only if
//!    it could not become a registry path by decoding or normalization (see
//!    `is_clean_foreign_path`); otherwise it is also `NameInvalid`. `/V2/...` and `/v3` are
//!    `NotRegistry`.
//! 3. Path shape. `/v2` paths that match no endpoint, and unknown `/v1` paths, are
//!    `NameInvalid`: a registry path is never `NotRegistry`, so it can never be forwarded
//!    unauthorized. Otherwise the first failing check of the (first) reading is returned: the
//!    name (`NameInvalid`), then the reference. A reference containing `:` is judged as a
//!    digest (`DigestInvalid`), else as a tag (`TagInvalid`); blob and referrers digests give
//!    `DigestInvalid`; session ids `UploadInvalid`. Control bytes, spaces, `%`, `\`, `#`,
//!    non-ASCII, empty and dot segments fail whichever of these grammars they fall in, so the
//!    error names the position (a bad byte in the name is `NameInvalid`, in a tag
//!    `TagInvalid`). No byte outside these grammars is ever accepted.
//! 4. Method ([`RouteError::MethodNotAllowed`], echoing at most 32 visible-ASCII characters).
//! 5. Query: at most [`MAX_QUERY_LEN`] bytes ([`MAX_TOKEN_QUERY_LEN`] on `/v2/token`) of
//!    visible ASCII other than `#`, else `QueryInvalid("query")`. Only the parameters a route
//!    reads are decoded (`application/x-www-form-urlencoded`: `%XX` and `+` for space, valid
//!    UTF-8, no control characters); a bad or repeated one is `QueryInvalid(<its name>)` and
//!    unknown parameters are ignored. `n` is 1 to 6 decimal digits with a value of at most
//!    [`MAX_PAGE_SIZE`]; `last` must be a valid repository name. An upload start carrying
//!    `mount` or `from` (a cross-repository mount reads another repository, which
//!    [`Route::BlobUpload`] cannot name) is `QueryInvalid("mount")` / `QueryInvalid("from")`;
//!    there `;` separates parameters as well as `&`, as older parsers upstream read it.

pub use registry_gate_index::names::{is_valid_repository_name, MAX_NAME_LEN};
use thiserror::Error;

/// What a request does to a repository, derived from the HTTP method only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// GET, HEAD.
    Pull,
    /// POST, PUT, PATCH.
    Push,
    /// DELETE.
    Delete,
}

impl Action {
    /// The action's name in a Docker scope / `access` claim.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }
}

/// Pagination parameters of `/v2/_catalog` (`n`, `last`), already range-checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// Requested page size; `None` when absent.
    pub n: Option<usize>,
    /// Percent-decoded `last` repository name; `None` when absent.
    pub last: Option<String>,
}

/// A registry endpoint the filter understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`
    Ping,
    /// `/v2/_catalog`
    Catalog(Page),
    /// `/v2/token` (passed through to the sidecar).
    Token,
    /// `/v2/<name>/manifests/<tag|digest>`
    Manifest { name: String, reference: String },
    /// `/v2/<name>/blobs/<digest>`
    Blob { name: String, digest: String },
    /// `/v2/<name>/blobs/uploads/` and `/v2/<name>/blobs/uploads/<session>`
    BlobUpload { name: String },
    /// `/v2/<name>/tags/list`
    TagsList { name: String },
    /// `/v2/<name>/referrers/<digest>`
    Referrers { name: String, digest: String },
    /// `/v1/_ping`
    V1Ping,
    /// `/v1/search?q=&n=`
    V1Search { query: String, n: Option<usize> },
    /// `/index/static`: the Flatpak registry index, forwarded with its query untouched and
    /// its response filtered to the caller's repositories (see `flatpak`).
    FlatpakIndex,
}

impl Route {
    /// The repository the route touches, if any.
    pub fn repository(&self) -> Option<&str> {
        match self {
            Route::Manifest { name, .. }
            | Route::Blob { name, .. }
            | Route::BlobUpload { name }
            | Route::TagsList { name }
            | Route::Referrers { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// A parsed request: what endpoint, and what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRequest {
    pub route: Route,
    pub action: Action,
}

/// Why a path was not accepted. Each variant maps to one registry error in `reply`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RouteError {
    #[error("not a registry path")]
    NotRegistry,
    #[error("invalid repository name")]
    NameInvalid,
    #[error("invalid tag")]
    TagInvalid,
    #[error("invalid digest")]
    DigestInvalid,
    #[error("invalid upload session id")]
    UploadInvalid,
    #[error("invalid query parameter {0}")]
    QueryInvalid(&'static str),
    #[error("path is ambiguous")]
    Ambiguous,
    #[error("method {0} is not supported here")]
    MethodNotAllowed(String),
}

/// Longest accepted tag (the OCI tag grammar allows 1 + 127 characters).
pub const MAX_TAG_LEN: usize = 128;
/// Longest accepted upload session id.
pub const MAX_SESSION_LEN: usize = 256;
/// Longest accepted query string (after the `?`) on every registry route but the token route.
pub const MAX_QUERY_LEN: usize = 2048;
/// Longest accepted query string on `/v2/token`, which may repeat `scope=` several times.
pub const MAX_TOKEN_QUERY_LEN: usize = 8192;
/// Largest accepted `n` page size on `/v2/_catalog` and `/v1/search`.
pub const MAX_PAGE_SIZE: usize = 100_000;
/// Longest method name echoed back in [`RouteError::MethodNotAllowed`].
const MAX_METHOD_ECHO: usize = 32;

/// Parses a request's method and Envoy `:path` (which may carry a `?query`).
///
/// See the module documentation for the accepted endpoints and the order in which errors
/// are chosen. Never panics; work is linear in the input length.
pub fn parse_request(method: &str, path: &str) -> Result<RegistryRequest, RouteError> {
    let (path, query) = match path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path, None),
    };
    if matches!(path, FLATPAK_INDEX_PATH | "/index/static/") {
        return flatpak_index(method, query);
    }
    let (namespace, rest) = match classify(path) {
        Namespace::Foreign => return Err(RouteError::NotRegistry),
        Namespace::Suspicious => return Err(RouteError::NameInvalid),
        Namespace::V1(rest) => (Version::V1, rest),
        Namespace::V2(rest) => (Version::V2, rest),
    };
    let endpoint = match namespace {
        Version::V1 => match rest {
            Some("_ping") => Endpoint::V1Ping,
            Some("search") => Endpoint::V1Search,
            _ => return Err(RouteError::NameInvalid),
        },
        Version::V2 => match rest {
            None | Some("") => Endpoint::Ping,
            Some("_catalog") => Endpoint::Catalog,
            Some("token") => Endpoint::Token,
            Some(rest) => {
                let (shape, route) = resolve(candidates(rest))?;
                Endpoint::Repository(shape, route)
            }
        },
    };
    let action = endpoint.action(method)?;
    let max_query = match endpoint {
        Endpoint::Token => MAX_TOKEN_QUERY_LEN,
        _ => MAX_QUERY_LEN,
    };
    let query = query.unwrap_or("");
    if query.len() > max_query || !query.bytes().all(is_query_byte) {
        return Err(RouteError::QueryInvalid("query"));
    }
    let route = match endpoint {
        Endpoint::Ping => Route::Ping,
        Endpoint::Token => Route::Token,
        Endpoint::V1Ping => Route::V1Ping,
        Endpoint::Catalog => {
            let params = Params::parse(query, &["n", "last"], &['&'])?;
            let last = match params.get("last") {
                Some(last) if is_valid_repository_name(last) => Some(last.to_owned()),
                Some(_) => return Err(RouteError::QueryInvalid("last")),
                None => None,
            };
            Route::Catalog(Page {
                n: page_size(&params)?,
                last,
            })
        }
        Endpoint::V1Search => {
            let params = Params::parse(query, &["q", "n"], &['&'])?;
            Route::V1Search {
                query: params.get("q").unwrap_or_default().to_owned(),
                n: page_size(&params)?,
            }
        }
        Endpoint::Repository(shape, route) => {
            if shape == Shape::UploadStart {
                // A cross-repository mount (`?mount=<digest>[&from=<repo>]`) reads a blob from
                // another repository, which `Route::BlobUpload` cannot name for the decision.
                // `;` separates too: older parsers (Go before 1.17) split on it, so
                // `?a=1;mount=...` would mount upstream.
                let params = Params::parse(query, &["mount", "from"], &['&', ';'])?;
                if params.get("mount").is_some() {
                    return Err(RouteError::QueryInvalid("mount"));
                }
                if params.get("from").is_some() {
                    return Err(RouteError::QueryInvalid("from"));
                }
            }
            route
        }
    };
    Ok(RegistryRequest { route, action })
}

/// The Flatpak registry index path (`/index/static`; one trailing `/` is accepted too).
pub const FLATPAK_INDEX_PATH: &str = "/index/static";

/// `/index/static`: GET or HEAD, any query of visible ASCII within [`MAX_QUERY_LEN`]. The
/// parameters are the upstream's business (`architecture`, `label:...`, `tag`): none is read
/// here, and the query is forwarded as sent.
fn flatpak_index(method: &str, query: Option<&str>) -> Result<RegistryRequest, RouteError> {
    let action = match method {
        "GET" | "HEAD" => Action::Pull,
        _ => return Err(method_not_allowed(method)),
    };
    let query = query.unwrap_or("");
    if query.len() > MAX_QUERY_LEN || !query.bytes().all(is_query_byte) {
        return Err(RouteError::QueryInvalid("query"));
    }
    Ok(RegistryRequest {
        route: Route::FlatpakIndex,
        action,
    })
}

/// Whether `tag` matches the OCI tag grammar `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn is_valid_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    match bytes.next() {
        Some(first) if first.is_ascii_alphanumeric() || first == b'_' => {}
        _ => return false,
    }
    tag.len() <= MAX_TAG_LEN
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Whether `digest` is `algorithm:encoded` with a registered algorithm: `sha256` with 64 or
/// `sha512` with 128 lowercase hex digits. Other grammatically valid algorithms are refused.
pub fn is_valid_digest(digest: &str) -> bool {
    let Some((algorithm, encoded)) = digest.split_once(':') else {
        return false;
    };
    let expected_len = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        _ => return false,
    };
    encoded.len() == expected_len
        && encoded
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `id` is an acceptable upload session id: 1 to [`MAX_SESSION_LEN`] characters of
/// `[A-Za-z0-9_.=-]`, and not a dot-segment.
pub fn is_valid_upload_session(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_SESSION_LEN
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'=' | b'-'))
}

/// What the first segment of a path says about it.
enum Namespace<'a> {
    /// Clean, and outside `/v1` and `/v2`.
    Foreign,
    /// Not `/v1` or `/v2` as written, but it could become one after decoding or dot-segment
    /// removal, or is otherwise something Envoy's normalizer never produces.
    Suspicious,
    /// `/v1`; `Some(rest)` is what follows `/v1/`.
    V1(Option<&'a str>),
    /// `/v2`; `Some(rest)` is what follows `/v2/`.
    V2(Option<&'a str>),
}

#[derive(Clone, Copy)]
enum Version {
    V1,
    V2,
}

fn classify(path: &str) -> Namespace<'_> {
    for (prefix, version) in [("/v1", Version::V1), ("/v2", Version::V2)] {
        let Some(after) = path.strip_prefix(prefix) else {
            continue;
        };
        let rest = match after.as_bytes().first() {
            None => None,
            Some(b'/') => after.get(1..),
            // `/v2abc` is some other path; `/v2\..`, `/v2.`, `/v2%2F` are not.
            Some(b) if b.is_ascii_alphanumeric() => break,
            Some(_) => return Namespace::Suspicious,
        };
        return match version {
            Version::V1 => Namespace::V1(rest),
            Version::V2 => Namespace::V2(rest),
        };
    }
    if is_clean_foreign_path(path) {
        Namespace::Foreign
    } else {
        Namespace::Suspicious
    }
}

/// A path that cannot reach `/v1` or `/v2` under any decoding or normalization: it starts
/// with `/`, holds only visible ASCII other than `\` and `#`, has no empty segment (but may
/// end in `/`), no `.` or `..` segment, no `%` in its first segment, and every other `%` is a
/// well-formed escape of a visible ASCII byte that is not `/`, `\`, `.` or `%`.
fn is_clean_foreign_path(path: &str) -> bool {
    if path == "/" {
        return true;
    }
    let Some(body) = path.strip_prefix('/') else {
        return false;
    };
    if !path
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'\\' && b != b'#')
    {
        return false;
    }
    // One trailing `/` is fine (`/index/static/`); `//` leaves an empty segment below.
    let body = body.strip_suffix('/').unwrap_or(body);
    if body
        .split('/')
        .next()
        .is_none_or(|first| first.contains('%'))
    {
        return false;
    }
    body.split('/')
        .all(|segment| !matches!(segment, "" | "." | "..") && escapes_are_harmless(segment))
}

fn escapes_are_harmless(segment: &str) -> bool {
    let mut bytes = segment.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            continue;
        }
        let decoded = match (
            bytes.next().and_then(hex_value),
            bytes.next().and_then(hex_value),
        ) {
            (Some(hi), Some(lo)) => hi * 16 + lo,
            _ => return false,
        };
        if !decoded.is_ascii_graphic() || matches!(decoded, b'/' | b'\\' | b'.' | b'%') {
            return false;
        }
    }
    true
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A query byte: visible ASCII other than `#` (so no control byte, space or non-ASCII).
fn is_query_byte(b: u8) -> bool {
    b.is_ascii_graphic() && b != b'#'
}

/// The endpoint a path addresses, before the method is known.
enum Endpoint {
    Ping,
    Catalog,
    Token,
    V1Ping,
    V1Search,
    Repository(Shape, Route),
}

/// Which `/v2/<name>/...` suffix a path ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Manifest,
    Blob,
    UploadStart,
    UploadSession,
    TagsList,
    Referrers,
}

impl Endpoint {
    /// The action of `method` on this endpoint, or `MethodNotAllowed`.
    fn action(&self, method: &str) -> Result<Action, RouteError> {
        let allowed: &[&str] = match self {
            Endpoint::Ping | Endpoint::Catalog | Endpoint::V1Ping | Endpoint::V1Search => {
                &["GET", "HEAD"]
            }
            // The token endpoint only ever reads: GET (Docker) and POST (OAuth2 form).
            Endpoint::Token => {
                return match method {
                    "GET" | "POST" => Ok(Action::Pull),
                    _ => Err(method_not_allowed(method)),
                }
            }
            Endpoint::Repository(shape, _) => match shape {
                Shape::Manifest => &["GET", "HEAD", "PUT", "DELETE"],
                Shape::Blob => &["GET", "HEAD", "DELETE"],
                Shape::UploadStart => &["POST"],
                // GET is the upload's status: it still touches the repository.
                Shape::UploadSession => &["GET", "PATCH", "PUT", "DELETE"],
                Shape::TagsList | Shape::Referrers => &["GET", "HEAD"],
            },
        };
        if !allowed.contains(&method) {
            return Err(method_not_allowed(method));
        }
        match method {
            "GET" | "HEAD" => Ok(Action::Pull),
            "POST" | "PUT" | "PATCH" => Ok(Action::Push),
            "DELETE" => Ok(Action::Delete),
            _ => Err(method_not_allowed(method)),
        }
    }
}

/// `MethodNotAllowed` with the method echoed only as far as it is a short visible-ASCII
/// token: the error text can end up in a response body.
fn method_not_allowed(method: &str) -> RouteError {
    let echo: String = method
        .chars()
        .take(MAX_METHOD_ECHO)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect();
    RouteError::MethodNotAllowed(echo)
}

/// One reading of a `/v2/<name>/...` path, already validated.
type Candidate = Result<(Shape, Route), RouteError>;

/// Every reading of `rest` (what follows `/v2/`) as `<name>/<fixed suffix>`, in table order.
/// At most two readings exist for any input.
fn candidates(rest: &str) -> Vec<Candidate> {
    let mut found = Vec::new();
    let Some((head, last)) = rest.rsplit_once('/') else {
        return found;
    };
    let Some((name, keyword)) = head.rsplit_once('/') else {
        return found;
    };
    match keyword {
        "manifests" => found.push(manifest(name, last)),
        "blobs" => {
            found.push(digest_route(Shape::Blob, name, last));
            if last == "uploads" {
                found.push(upload(name, None));
            }
        }
        "uploads" => {
            if let Some((name, "blobs")) = name.rsplit_once('/') {
                let session = if last.is_empty() { None } else { Some(last) };
                found.push(upload(name, session));
            }
        }
        "tags" if last == "list" => {
            found.push(checked_name(name).map(|name| (Shape::TagsList, Route::TagsList { name })))
        }
        "referrers" => found.push(digest_route(Shape::Referrers, name, last)),
        _ => {}
    }
    found
}

/// Picks the single valid reading. None valid: the first reading's error, or `NameInvalid`
/// when the path matches no endpoint at all. More than one valid: `Ambiguous`.
fn resolve(candidates: Vec<Candidate>) -> Result<(Shape, Route), RouteError> {
    let mut first_error = None;
    let mut valid = None;
    for candidate in candidates {
        match candidate {
            Ok(reading) => {
                if valid.is_some() {
                    return Err(RouteError::Ambiguous);
                }
                valid = Some(reading);
            }
            Err(err) => {
                first_error.get_or_insert(err);
            }
        }
    }
    match (valid, first_error) {
        (Some(reading), _) => Ok(reading),
        (None, Some(err)) => Err(err),
        (None, None) => Err(RouteError::NameInvalid),
    }
}

fn checked_name(name: &str) -> Result<String, RouteError> {
    if is_valid_repository_name(name) {
        Ok(name.to_owned())
    } else {
        Err(RouteError::NameInvalid)
    }
}

fn manifest(name: &str, reference: &str) -> Candidate {
    let name = checked_name(name)?;
    let valid = if reference.contains(':') {
        is_valid_digest(reference)
            .then_some(())
            .ok_or(RouteError::DigestInvalid)
    } else {
        is_valid_tag(reference)
            .then_some(())
            .ok_or(RouteError::TagInvalid)
    };
    valid?;
    Ok((
        Shape::Manifest,
        Route::Manifest {
            name,
            reference: reference.to_owned(),
        },
    ))
}

fn digest_route(shape: Shape, name: &str, digest: &str) -> Candidate {
    let name = checked_name(name)?;
    if !is_valid_digest(digest) {
        return Err(RouteError::DigestInvalid);
    }
    let digest = digest.to_owned();
    let route = match shape {
        Shape::Referrers => Route::Referrers { name, digest },
        _ => Route::Blob { name, digest },
    };
    Ok((shape, route))
}

fn upload(name: &str, session: Option<&str>) -> Candidate {
    let name = checked_name(name)?;
    let shape = match session {
        None => Shape::UploadStart,
        Some(id) if is_valid_upload_session(id) => Shape::UploadSession,
        Some(_) => return Err(RouteError::UploadInvalid),
    };
    Ok((shape, Route::BlobUpload { name }))
}

/// The parameters of one query that a route reads, decoded.
struct Params {
    values: Vec<(&'static str, String)>,
}

impl Params {
    /// Decodes the parameters named in `wanted`, in pairs separated by any of `separators`;
    /// all others are ignored undecoded.
    fn parse(
        query: &str,
        wanted: &[&'static str],
        separators: &[char],
    ) -> Result<Params, RouteError> {
        let mut values: Vec<(&'static str, String)> = Vec::new();
        for pair in query.split(separators).filter(|pair| !pair.is_empty()) {
            let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let Some(key) = decode_component(raw_key) else {
                continue;
            };
            let Some(&name) = wanted.iter().find(|w| **w == key) else {
                continue;
            };
            if values.iter().any(|(seen, _)| *seen == name) {
                return Err(RouteError::QueryInvalid(name));
            }
            let value = decode_component(raw_value).ok_or(RouteError::QueryInvalid(name))?;
            values.push((name, value));
        }
        Ok(Params { values })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// `application/x-www-form-urlencoded` decoding of one key or value: `%XX` escapes and `+`
/// for space. `None` for a broken escape, invalid UTF-8 or a control character.
fn decode_component(raw: &str) -> Option<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hi = bytes.next().and_then(hex_value)?;
                let lo = bytes.next().and_then(hex_value)?;
                out.push(hi * 16 + lo);
            }
            b'+' => out.push(b' '),
            other => out.push(other),
        }
    }
    let text = String::from_utf8(out).ok()?;
    (!text.chars().any(char::is_control)).then_some(text)
}

/// The `n` parameter: 1 to 6 decimal digits, at most [`MAX_PAGE_SIZE`].
fn page_size(params: &Params) -> Result<Option<usize>, RouteError> {
    let Some(raw) = params.get("n") else {
        return Ok(None);
    };
    let invalid = RouteError::QueryInvalid("n");
    if raw.is_empty() || raw.len() > 6 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid);
    }
    match raw.parse::<usize>() {
        Ok(n) if n <= MAX_PAGE_SIZE => Ok(Some(n)),
        _ => Err(invalid),
    }
}

#[cfg(test)]
mod tests;
