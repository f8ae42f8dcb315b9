#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;

/// A valid sha256 digest; `{D}` in a table path stands for it.
const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// A valid sha512 digest; `{D512}` in a table path stands for it.
const D512: &str = "sha512:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\
                    0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// An upload session id as Pulp and distribution issue them (a UUID).
const UUID: &str = "6f1c2a3e-9b8d-4c7a-8e2f-1a2b3c4d5e6f";

type Expected = Result<RegistryRequest, RouteError>;

fn expand(template: &str) -> String {
    template
        .replace("{D512}", D512)
        .replace("{D}", D)
        .replace("{UUID}", UUID)
}

fn ok(route: Route, action: Action) -> Expected {
    Ok(RegistryRequest { route, action })
}
fn pull(route: Route) -> Expected {
    ok(route, Action::Pull)
}
fn push(route: Route) -> Expected {
    ok(route, Action::Push)
}
fn delete(route: Route) -> Expected {
    ok(route, Action::Delete)
}
fn manifest(name: &str, reference: &str) -> Route {
    Route::Manifest {
        name: name.into(),
        reference: expand(reference),
    }
}
fn blob(name: &str, digest: &str) -> Route {
    Route::Blob {
        name: name.into(),
        digest: expand(digest),
    }
}
fn upload(name: &str) -> Route {
    Route::BlobUpload { name: name.into() }
}
fn tags(name: &str) -> Route {
    Route::TagsList { name: name.into() }
}
fn referrers(name: &str, digest: &str) -> Route {
    Route::Referrers {
        name: name.into(),
        digest: expand(digest),
    }
}
fn catalog(n: Option<usize>, last: Option<&str>) -> Route {
    Route::Catalog(Page {
        n,
        last: last.map(str::to_owned),
    })
}
fn search(query: &str, n: Option<usize>) -> Route {
    Route::V1Search {
        query: query.into(),
        n,
    }
}
fn mna(method: &str) -> Expected {
    Err(RouteError::MethodNotAllowed(method.into()))
}

use RouteError::{
    DigestInvalid, NameInvalid, NotRegistry, QueryInvalid, TagInvalid, UploadInvalid,
};

/// The table: (case, method, path with `{D}`/`{D512}`/`{UUID}` placeholders, expected).
fn cases() -> Vec<(&'static str, &'static str, &'static str, Expected)> {
    vec![
        // ---- endpoints and method mapping ----
        ("ping", "GET", "/v2/", pull(Route::Ping)),
        ("ping without slash", "GET", "/v2", pull(Route::Ping)),
        ("ping HEAD", "HEAD", "/v2/", pull(Route::Ping)),
        ("ping with query", "GET", "/v2/?x=1", pull(Route::Ping)),
        ("ping without slash with query", "GET", "/v2?x=1", pull(Route::Ping)),
        ("ping POST", "POST", "/v2/", mna("POST")),
        ("ping DELETE", "DELETE", "/v2/", mna("DELETE")),
        ("catalog", "GET", "/v2/_catalog", pull(catalog(None, None))),
        ("catalog HEAD", "HEAD", "/v2/_catalog", pull(catalog(None, None))),
        ("catalog page", "GET", "/v2/_catalog?n=10&last=team/app", pull(catalog(Some(10), Some("team/app")))),
        ("catalog last percent-encoded", "GET", "/v2/_catalog?last=team%2Fapp", pull(catalog(None, Some("team/app")))),
        ("catalog n zero", "GET", "/v2/_catalog?n=0", pull(catalog(Some(0), None))),
        ("catalog n at cap", "GET", "/v2/_catalog?n=100000", pull(catalog(Some(100_000), None))),
        ("catalog n leading zeros", "GET", "/v2/_catalog?n=007", pull(catalog(Some(7), None))),
        ("catalog n percent-encoded", "GET", "/v2/_catalog?n=%31%30", pull(catalog(Some(10), None))),
        ("catalog unknown params ignored", "GET", "/v2/_catalog?foo=%zz&n=5&bar", pull(catalog(Some(5), None))),
        ("catalog empty pairs ignored", "GET", "/v2/_catalog?&&n=5&", pull(catalog(Some(5), None))),
        ("catalog empty query", "GET", "/v2/_catalog?", pull(catalog(None, None))),
        ("G7 catalog n=1000000", "GET", "/v2/_catalog?n=1000000", Err(QueryInvalid("n"))),
        ("catalog n just over cap", "GET", "/v2/_catalog?n=100001", Err(QueryInvalid("n"))),
        ("catalog n negative", "GET", "/v2/_catalog?n=-1", Err(QueryInvalid("n"))),
        ("catalog n empty", "GET", "/v2/_catalog?n=", Err(QueryInvalid("n"))),
        ("catalog n without value", "GET", "/v2/_catalog?n", Err(QueryInvalid("n"))),
        ("catalog n hex", "GET", "/v2/_catalog?n=0x10", Err(QueryInvalid("n"))),
        ("catalog n plus sign", "GET", "/v2/_catalog?n=+5", Err(QueryInvalid("n"))),
        ("catalog n huge", "GET", "/v2/_catalog?n=99999999999999999999999", Err(QueryInvalid("n"))),
        ("catalog n repeated", "GET", "/v2/_catalog?n=1&n=2", Err(QueryInvalid("n"))),
        ("catalog n repeated via encoded key", "GET", "/v2/_catalog?n=1&%6E=2", Err(QueryInvalid("n"))),
        ("catalog last uppercase", "GET", "/v2/_catalog?last=Team/app", Err(QueryInvalid("last"))),
        ("catalog last empty", "GET", "/v2/_catalog?last=", Err(QueryInvalid("last"))),
        ("catalog last bad escape", "GET", "/v2/_catalog?last=%zz", Err(QueryInvalid("last"))),
        ("catalog last truncated escape", "GET", "/v2/_catalog?last=a%2", Err(QueryInvalid("last"))),
        ("catalog last repeated", "GET", "/v2/_catalog?last=a&last=b", Err(QueryInvalid("last"))),
        ("catalog last dot-segment", "GET", "/v2/_catalog?last=a/../b", Err(QueryInvalid("last"))),
        ("catalog POST", "POST", "/v2/_catalog", mna("POST")),
        ("catalog DELETE", "DELETE", "/v2/_catalog", mna("DELETE")),
        ("catalog bad query after bad method", "PUT", "/v2/_catalog?n=x", mna("PUT")),
        ("token GET", "GET", "/v2/token", pull(Route::Token)),
        ("token POST", "POST", "/v2/token", pull(Route::Token)),
        ("token with scope query", "GET", "/v2/token?service=registry&scope=repository:team/app:pull,push&scope=repository:b:pull", pull(Route::Token)),
        ("token HEAD", "HEAD", "/v2/token", mna("HEAD")),
        ("token PUT", "PUT", "/v2/token", mna("PUT")),
        ("token DELETE", "DELETE", "/v2/token", mna("DELETE")),
        ("manifest GET", "GET", "/v2/team/app/manifests/latest", pull(manifest("team/app", "latest"))),
        ("manifest HEAD", "HEAD", "/v2/team/app/manifests/latest", pull(manifest("team/app", "latest"))),
        ("manifest PUT", "PUT", "/v2/team/app/manifests/v1.0", push(manifest("team/app", "v1.0"))),
        ("manifest DELETE", "DELETE", "/v2/team/app/manifests/{D}", delete(manifest("team/app", "{D}"))),
        ("manifest by digest", "GET", "/v2/app/manifests/{D}", pull(manifest("app", "{D}"))),
        ("manifest by sha512 digest", "GET", "/v2/app/manifests/{D512}", pull(manifest("app", "{D512}"))),
        ("manifest with ignored query", "GET", "/v2/app/manifests/latest?foo=bar", pull(manifest("app", "latest"))),
        ("manifest POST", "POST", "/v2/app/manifests/latest", mna("POST")),
        ("manifest PATCH", "PATCH", "/v2/app/manifests/latest", mna("PATCH")),
        ("manifest deep name", "GET", "/v2/a/b/c/d/manifests/latest", pull(manifest("a/b/c/d", "latest"))),
        ("blob GET", "GET", "/v2/team/app/blobs/{D}", pull(blob("team/app", "{D}"))),
        ("blob HEAD", "HEAD", "/v2/team/app/blobs/{D}", pull(blob("team/app", "{D}"))),
        ("blob DELETE", "DELETE", "/v2/team/app/blobs/{D}", delete(blob("team/app", "{D}"))),
        ("blob sha512", "GET", "/v2/app/blobs/{D512}", pull(blob("app", "{D512}"))),
        ("blob PUT", "PUT", "/v2/app/blobs/{D}", mna("PUT")),
        ("blob POST", "POST", "/v2/app/blobs/{D}", mna("POST")),
        ("blob PATCH", "PATCH", "/v2/app/blobs/{D}", mna("PATCH")),
        ("blob with tag", "GET", "/v2/app/blobs/latest", Err(DigestInvalid)),
        ("upload start", "POST", "/v2/team/app/blobs/uploads/", push(upload("team/app"))),
        ("upload start without slash", "POST", "/v2/team/app/blobs/uploads", push(upload("team/app"))),
        ("upload start monolithic digest param", "POST", "/v2/app/blobs/uploads/?digest={D}", push(upload("app"))),
        ("upload start GET", "GET", "/v2/app/blobs/uploads/", mna("GET")),
        ("upload start PUT", "PUT", "/v2/app/blobs/uploads/", mna("PUT")),
        ("upload start without slash GET", "GET", "/v2/app/blobs/uploads", mna("GET")),
        ("upload start DELETE", "DELETE", "/v2/app/blobs/uploads/", mna("DELETE")),
        ("upload mount", "POST", "/v2/mine/blobs/uploads/?mount={D}&from=secret", Err(QueryInvalid("mount"))),
        ("upload from without mount", "POST", "/v2/mine/blobs/uploads/?from=secret", Err(QueryInvalid("from"))),
        ("upload mount encoded key", "POST", "/v2/mine/blobs/uploads/?%6Dount={D}", Err(QueryInvalid("mount"))),
        ("upload mount after a semicolon", "POST", "/v2/mine/blobs/uploads/?a=1;mount={D}", Err(QueryInvalid("mount"))),
        ("upload from after a semicolon", "POST", "/v2/mine/blobs/uploads/?digest={D};from=secret", Err(QueryInvalid("from"))),
        ("catalog keeps & as its only separator", "GET", "/v2/_catalog?n=5;last=x", Err(QueryInvalid("n"))),
        ("upload PATCH", "PATCH", "/v2/app/blobs/uploads/{UUID}", push(upload("app"))),
        ("upload PUT with digest", "PUT", "/v2/app/blobs/uploads/{UUID}?digest={D}", push(upload("app"))),
        ("upload status GET", "GET", "/v2/app/blobs/uploads/{UUID}", pull(upload("app"))),
        ("upload cancel DELETE", "DELETE", "/v2/app/blobs/uploads/{UUID}", delete(upload("app"))),
        ("upload session HEAD", "HEAD", "/v2/app/blobs/uploads/{UUID}", mna("HEAD")),
        ("upload session POST", "POST", "/v2/app/blobs/uploads/{UUID}", mna("POST")),
        ("upload session with = and _", "PATCH", "/v2/app/blobs/uploads/abc_DEF=.-9", push(upload("app"))),
        ("upload session with colon", "PATCH", "/v2/app/blobs/uploads/a:b", Err(UploadInvalid)),
        ("upload session dot", "PATCH", "/v2/app/blobs/uploads/.", Err(UploadInvalid)),
        ("upload session dot-dot", "PATCH", "/v2/app/blobs/uploads/..", Err(UploadInvalid)),
        ("upload session with percent", "PATCH", "/v2/app/blobs/uploads/a%2Fb", Err(UploadInvalid)),
        ("upload session bad name", "PATCH", "/v2/App/blobs/uploads/{UUID}", Err(NameInvalid)),
        ("tags list GET", "GET", "/v2/team/app/tags/list", pull(tags("team/app"))),
        ("tags list HEAD", "HEAD", "/v2/team/app/tags/list", pull(tags("team/app"))),
        ("G7 tags list with n and last", "GET", "/v2/team/app/tags/list?n=1000000&last=x", pull(tags("team/app"))),
        ("tags list DELETE", "DELETE", "/v2/app/tags/list", mna("DELETE")),
        ("tags list PUT", "PUT", "/v2/app/tags/list", mna("PUT")),
        ("tags without list", "GET", "/v2/app/tags", Err(NameInvalid)),
        ("tags other", "GET", "/v2/app/tags/all", Err(NameInvalid)),
        ("referrers GET", "GET", "/v2/team/app/referrers/{D}", pull(referrers("team/app", "{D}"))),
        ("referrers HEAD", "HEAD", "/v2/app/referrers/{D}", pull(referrers("app", "{D}"))),
        ("referrers with artifactType", "GET", "/v2/app/referrers/{D}?artifactType=application%2Fx", pull(referrers("app", "{D}"))),
        ("referrers by tag", "GET", "/v2/app/referrers/latest", Err(DigestInvalid)),
        ("referrers PUT", "PUT", "/v2/app/referrers/{D}", mna("PUT")),
        ("referrers DELETE", "DELETE", "/v2/app/referrers/{D}", mna("DELETE")),
        ("v1 ping", "GET", "/v1/_ping", pull(Route::V1Ping)),
        ("v1 ping HEAD", "HEAD", "/v1/_ping", pull(Route::V1Ping)),
        ("v1 ping POST", "POST", "/v1/_ping", mna("POST")),
        ("v1 search", "GET", "/v1/search?q=team&n=5", pull(search("team", Some(5)))),
        ("v1 search HEAD", "HEAD", "/v1/search?q=team", pull(search("team", None))),
        ("v1 search no query", "GET", "/v1/search", pull(search("", None))),
        ("v1 search plus is space", "GET", "/v1/search?q=a+b", pull(search("a b", None))),
        ("v1 search percent-decoded", "GET", "/v1/search?q=team%2Fapp%20x", pull(search("team/app x", None))),
        ("v1 search UTF-8", "GET", "/v1/search?q=%C3%A9", pull(search("\u{e9}", None))),
        ("v1 search bad UTF-8", "GET", "/v1/search?q=%C0%AF", Err(QueryInvalid("q"))),
        ("v1 search control char", "GET", "/v1/search?q=a%00b", Err(QueryInvalid("q"))),
        ("v1 search newline", "GET", "/v1/search?q=a%0Ab", Err(QueryInvalid("q"))),
        ("v1 search q repeated", "GET", "/v1/search?q=a&q=b", Err(QueryInvalid("q"))),
        ("v1 search n too big", "GET", "/v1/search?q=a&n=100001", Err(QueryInvalid("n"))),
        ("v1 search POST", "POST", "/v1/search", mna("POST")),
        ("v1 unknown", "GET", "/v1/foo", Err(NameInvalid)),
        ("v1 bare", "GET", "/v1", Err(NameInvalid)),
        ("v1 slash", "GET", "/v1/", Err(NameInvalid)),
        ("v1 ping trailing slash", "GET", "/v1/_ping/", Err(NameInvalid)),
        // ---- not registry paths ----
        ("root", "GET", "/", Err(NotRegistry)),
        ("v3", "GET", "/v3", Err(NotRegistry)),
        ("v3 path", "GET", "/v3/team/app/manifests/latest", Err(NotRegistry)),
        ("v20", "GET", "/v20/", Err(NotRegistry)),
        ("v2 prefix of a word", "GET", "/v2abc/x", Err(NotRegistry)),
        ("pulp content", "GET", "/pulp/content/team/app/blobs/{D}", Err(NotRegistry)),
        ("pulp content with harmless escape", "GET", "/pulp/content/a%3Ab", Err(NotRegistry)),
        ("index static", "GET", "/index/static?label:org.flatpak.ref:exists=1", pull(Route::FlatpakIndex)),
        ("index static trailing slash", "GET", "/index/static/", pull(Route::FlatpakIndex)),
        ("index static without query", "GET", "/index/static", pull(Route::FlatpakIndex)),
        ("index static HEAD", "HEAD", "/index/static?architecture=amd64", pull(Route::FlatpakIndex)),
        ("index static repeated params are the upstream's", "GET", "/index/static?tag=a&tag=b&label%3Aorg.flatpak.ref%3Aexists=1", pull(Route::FlatpakIndex)),
        ("index static POST", "POST", "/index/static", mna("POST")),
        ("index static DELETE", "DELETE", "/index/static/", mna("DELETE")),
        ("index static query at the cap", "GET", "/index/static?{MAXQ}", pull(Route::FlatpakIndex)),
        ("index static query too long", "GET", "/index/static?{LONGQ}", Err(QueryInvalid("query"))),
        ("index static query with a space", "GET", "/index/static?a=b c", Err(QueryInvalid("query"))),
        ("index static two trailing slashes", "GET", "/index/static//", Err(NameInvalid)),
        ("index dynamic is not served", "GET", "/index/dynamic", Err(NotRegistry)),
        ("index static below is not served", "GET", "/index/static/x", Err(NotRegistry)),
        ("index static encoded is not the index", "GET", "/index/st%61tic", Err(NotRegistry)),
        ("not registry ignores method", "PROPFIND", "/pulp/api/v3/", Err(NotRegistry)),
        // ---- paths that could become /v2 are never NotRegistry ----
        ("F3 leading double slash", "GET", "//v2/secret/manifests/latest", Err(NameInvalid)),
        ("dot-dot into v2", "GET", "/foo/../v2/secret/manifests/latest", Err(NameInvalid)),
        ("dot into v2", "GET", "/./v2/secret/manifests/latest", Err(NameInvalid)),
        ("percent-encoded v2", "GET", "/%76%32/secret/manifests/latest", Err(NameInvalid)),
        ("encoded slash in foreign path", "GET", "/foo%2F..%2Fv2/secret/manifests/latest", Err(NameInvalid)),
        ("encoded dots in foreign path", "GET", "/foo/%2e%2e/v2/secret/manifests/latest", Err(NameInvalid)),
        ("encoded backslash in foreign path", "GET", "/foo/a%5Cb", Err(NameInvalid)),
        ("double-encoded in foreign path", "GET", "/foo/a%252F", Err(NameInvalid)),
        ("broken escape in foreign path", "GET", "/foo/a%2", Err(NameInvalid)),
        ("backslash in foreign path", "GET", "/foo\\..\\v2/secret", Err(NameInvalid)),
        ("empty path", "GET", "", Err(NameInvalid)),
        ("asterisk form", "OPTIONS", "*", Err(NameInvalid)),
        ("relative v2", "GET", "v2/secret/manifests/latest", Err(NameInvalid)),
        ("v2 followed by backslash", "GET", "/v2\\..\\secret/manifests/latest", Err(NameInvalid)),
        ("v2 followed by dot", "GET", "/v2./secret/manifests/latest", Err(NameInvalid)),
        ("v2 followed by escape", "GET", "/v2%2Fsecret/manifests/latest", Err(NameInvalid)),
        ("v2 followed by hash", "GET", "/v2#/secret", Err(NameInvalid)),
        // ---- unknown /v2 shapes ----
        ("v2 bare name", "GET", "/v2/foo", Err(NameInvalid)),
        ("v2 name without endpoint", "GET", "/v2/foo/bar", Err(NameInvalid)),
        ("manifests without reference", "GET", "/v2/app/manifests", Err(NameInvalid)),
        ("manifests empty reference", "GET", "/v2/app/manifests/", Err(TagInvalid)),
        ("manifests without name", "GET", "/v2/manifests/latest", Err(NameInvalid)),
        ("manifest trailing slash", "GET", "/v2/app/manifests/latest/", Err(NameInvalid)),
        ("tags list trailing slash", "GET", "/v2/app/tags/list/", Err(NameInvalid)),
        ("blobs list", "GET", "/v2/app/blobs", Err(NameInvalid)),
        ("catalog trailing slash", "GET", "/v2/_catalog/", Err(NameInvalid)),
        ("catalog as a name", "GET", "/v2/_catalog/manifests/latest", Err(NameInvalid)),
        ("token trailing slash", "GET", "/v2/token/", Err(NameInvalid)),
        ("token as a name", "GET", "/v2/token/manifests/latest", pull(manifest("token", "latest"))),
        ("v2 double slash only", "GET", "/v2//", Err(NameInvalid)),
        // ---- 1F path normalization ----
        ("F1 dot-dot segment", "GET", "/v2/allowed/../secret/manifests/latest", Err(NameInvalid)),
        ("F1 encoded dot-dot upper", "GET", "/v2/a/%2E%2E/secret/manifests/latest", Err(NameInvalid)),
        ("F1 encoded dot-dot lower", "GET", "/v2/a/%2e%2e/secret/manifests/latest", Err(NameInvalid)),
        ("F1 half-encoded dot-dot", "GET", "/v2/a/%2E./secret/manifests/latest", Err(NameInvalid)),
        ("F1 dot segment", "GET", "/v2/allowed/./secret/manifests/latest", Err(NameInvalid)),
        ("F1 dot-dot at name start", "GET", "/v2/../secret/manifests/latest", Err(NameInvalid)),
        ("F2 encoded slash", "GET", "/v2/allowed%2F..%2Fsecret/manifests/latest", Err(NameInvalid)),
        ("F2 encoded slash lower", "GET", "/v2/allowed%2fsecret/manifests/latest", Err(NameInvalid)),
        ("F2 encoded backslash", "GET", "/v2/allowed%5C..%5Csecret/manifests/latest", Err(NameInvalid)),
        ("F2 backslash in name", "GET", "/v2/allowed\\..\\secret/manifests/latest", Err(NameInvalid)),
        ("F2 backslash in tag", "GET", "/v2/app/manifests/lat\\est", Err(TagInvalid)),
        ("F3 empty segment in name", "GET", "/v2//secret/manifests/latest", Err(NameInvalid)),
        ("F3 double slash then dot-dot", "GET", "/v2/allowed//../secret/manifests/latest", Err(NameInvalid)),
        ("F3 double slash before suffix", "GET", "/v2/app//manifests/latest", Err(NameInvalid)),
        ("F3 double slash before reference", "GET", "/v2/app/manifests//latest", Err(NameInvalid)),
        ("F4 encoded NUL", "GET", "/v2/.%00../x", Err(NameInvalid)),
        ("F4 encoded NUL in name", "GET", "/v2/a%00/manifests/latest", Err(NameInvalid)),
        ("F4 raw NUL in name", "GET", "/v2/a\0b/manifests/latest", Err(NameInvalid)),
        ("F4 raw CR in name", "GET", "/v2/a\rb/manifests/latest", Err(NameInvalid)),
        ("F4 raw LF in name", "GET", "/v2/a\nb/manifests/latest", Err(NameInvalid)),
        ("F4 raw TAB in name", "GET", "/v2/a\tb/manifests/latest", Err(NameInvalid)),
        ("F4 raw NUL in tag", "GET", "/v2/app/manifests/latest\0", Err(TagInvalid)),
        ("F4 raw DEL in digest", "GET", "/v2/app/blobs/sha256:\x7f", Err(DigestInvalid)),
        ("F4 raw TAB in query", "GET", "/v2/_catalog?n=1\t", Err(QueryInvalid("query"))),
        ("F4 space in query", "GET", "/v1/search?q=a b", Err(QueryInvalid("query"))),
        ("F4 space in name", "GET", "/v2/a b/manifests/latest", Err(NameInvalid)),
        ("F5 fragment after tag", "GET", "/v2/secret/manifests/latest#x", Err(TagInvalid)),
        ("F5 fragment in name", "GET", "/v2/allowed#/../secret/manifests/latest", Err(NameInvalid)),
        ("F5 fragment in query", "GET", "/v2/_catalog?n=1#x", Err(QueryInvalid("query"))),
        ("F5 fragment in manifest query", "GET", "/v2/app/manifests/latest?a#/../../secret", Err(QueryInvalid("query"))),
        ("F7 uppercase everything", "GET", "/V2/Team/App/Manifests/Latest", Err(NotRegistry)),
        ("F7 uppercase name", "GET", "/v2/Team/App/manifests/latest", Err(NameInvalid)),
        ("F7 uppercase keyword", "GET", "/v2/team/app/Manifests/latest", Err(NameInvalid)),
        ("F7 uppercase tag is a tag", "GET", "/v2/team/app/manifests/Latest", pull(manifest("team/app", "Latest"))),
        ("F8 overlong slash", "GET", "/v2/%c0%af/manifests/latest", Err(NameInvalid)),
        ("F8 fullwidth solidus", "GET", "/v2/team\u{ff0f}app/manifests/latest", Err(NameInvalid)),
        ("F8 cyrillic homoglyph", "GET", "/v2/te\u{430}m/app/manifests/latest", Err(NameInvalid)),
        ("F8 non-ASCII query", "GET", "/v1/search?q=\u{e9}", Err(QueryInvalid("query"))),
        ("F8 non-ASCII tag", "GET", "/v2/app/manifests/lat\u{e9}st", Err(TagInvalid)),
        ("query too long", "GET", "/v2/app/manifests/latest?{LONGQ}", Err(QueryInvalid("query"))),
        ("query at limit", "GET", "/v2/app/manifests/latest?{MAXQ}", pull(manifest("app", "latest"))),
        ("token query at its limit", "GET", "/v2/token?{MAXTQ}", pull(Route::Token)),
        ("token query too long", "GET", "/v2/token?{LONGTQ}", Err(QueryInvalid("query"))),
        // ---- 1G grammar and route semantics ----
        ("G1 uppercase name", "GET", "/v2/Team/app/manifests/latest", Err(NameInvalid)),
        ("G1 leading dash", "GET", "/v2/-foo/manifests/latest", Err(NameInvalid)),
        ("G1 trailing dash", "GET", "/v2/foo-/manifests/latest", Err(NameInvalid)),
        ("G1 double dot", "GET", "/v2/a..b/manifests/latest", Err(NameInvalid)),
        ("G1 triple underscore", "GET", "/v2/a___b/manifests/latest", Err(NameInvalid)),
        ("G1 double slash", "GET", "/v2/a//b/manifests/latest", Err(NameInvalid)),
        ("G1 name of 256 chars", "GET", "/v2/{A256}/manifests/latest", Err(NameInvalid)),
        ("G1 name of 255 chars", "GET", "/v2/{A255}/manifests/latest", pull(manifest(&"a".repeat(255), "latest"))),
        ("G1 nested name of 256 chars", "GET", "/v2/{A127}/{A128}/tags/list", Err(NameInvalid)),
        ("G1 nested name of 255 chars", "GET", "/v2/{A127}/{A127}/tags/list", pull(tags(&format!("{}/{}", "a".repeat(127), "a".repeat(127))))),
        ("G1 double underscore ok", "GET", "/v2/a__b/manifests/latest", pull(manifest("a__b", "latest"))),
        ("G1 dash run ok", "GET", "/v2/a---b/manifests/latest", pull(manifest("a---b", "latest"))),
        ("G1 mixed separators ok", "GET", "/v2/a.b_c-d/e/manifests/latest", pull(manifest("a.b_c-d/e", "latest"))),
        ("G1 dot-underscore", "GET", "/v2/a._b/manifests/latest", Err(NameInvalid)),
        ("G2 tag of 129 chars", "GET", "/v2/app/manifests/{A129}", Err(TagInvalid)),
        ("G2 tag of 128 chars", "GET", "/v2/app/manifests/{A128}", pull(manifest("app", &"a".repeat(128)))),
        ("G2 tag starting with dot", "GET", "/v2/app/manifests/.latest", Err(TagInvalid)),
        ("G2 tag starting with dash", "GET", "/v2/app/manifests/-latest", Err(TagInvalid)),
        ("G2 tag starting with underscore", "GET", "/v2/app/manifests/_latest", pull(manifest("app", "_latest"))),
        ("G2 tag with colon", "GET", "/v2/app/manifests/lat:est", Err(DigestInvalid)),
        ("G2 tag with slash", "GET", "/v2/app/manifests/lat/est", Err(NameInvalid)),
        ("G2 tag with plus", "GET", "/v2/app/manifests/1.0+build", Err(TagInvalid)),
        ("G2 digest of 63 hex", "GET", "/v2/app/blobs/sha256:{H63}", Err(DigestInvalid)),
        ("G2 digest of 65 hex", "GET", "/v2/app/blobs/sha256:{H65}", Err(DigestInvalid)),
        ("G2 md5 digest", "GET", "/v2/app/blobs/md5:0123456789abcdef0123456789abcdef", Err(DigestInvalid)),
        ("G2 digest with ZZ", "GET", "/v2/app/blobs/sha256:ZZ{H62}", Err(DigestInvalid)),
        ("G2 digest uppercase hex", "GET", "/v2/app/blobs/sha256:{HUP}", Err(DigestInvalid)),
        ("G2 digest empty", "GET", "/v2/app/blobs/sha256:", Err(DigestInvalid)),
        ("G2 digest unregistered algorithm", "GET", "/v2/app/blobs/sha384:{H64}", Err(DigestInvalid)),
        ("G2 digest uppercase algorithm", "GET", "/v2/app/blobs/SHA256:{H64}", Err(DigestInvalid)),
        ("G2 manifest digest of 63 hex", "GET", "/v2/app/manifests/sha256:{H63}", Err(DigestInvalid)),
        ("G2 referrers md5", "GET", "/v2/app/referrers/md5:0123456789abcdef0123456789abcdef", Err(DigestInvalid)),
        ("G2 name checked before reference", "GET", "/v2/App/manifests/lat:est", Err(NameInvalid)),
        ("G5 upload PATCH names its repository", "PATCH", "/v2/secret/blobs/uploads/{UUID}", push(upload("secret"))),
        ("G5 upload PUT names its repository", "PUT", "/v2/secret/blobs/uploads/{UUID}?digest={D}", push(upload("secret"))),
        ("G6 OPTIONS", "OPTIONS", "/v2/app/manifests/latest", mna("OPTIONS")),
        ("G6 TRACE", "TRACE", "/v2/app/manifests/latest", mna("TRACE")),
        ("G6 PROPFIND", "PROPFIND", "/v2/app/manifests/latest", mna("PROPFIND")),
        ("G6 lowercase get", "get", "/v2/app/manifests/latest", mna("get")),
        ("G6 mixed-case Get", "Get", "/v2/", mna("Get")),
        ("G6 CONNECT", "CONNECT", "/v2/", mna("CONNECT")),
        ("G6 empty method", "", "/v2/app/manifests/latest", mna("")),
        ("G6 method with space", "GET ", "/v2/app/manifests/latest", mna("GET?")),
        ("G6 method with newline", "DELETE\nX", "/v2/app/manifests/latest", mna("DELETE?X")),
        ("G6 non-ASCII method", "G\u{c9}T", "/v2/", mna("G?T")),
        ("G6 long method is truncated", "{M40}", "/v2/", mna(&"M".repeat(32))),
        ("G6 path error before method error", "OPTIONS", "/v2/App/manifests/latest", Err(NameInvalid)),
        ("G7 ping", "GET", "/v2/", pull(Route::Ping)),
        // ---- reading names from the end; ambiguity ----
        ("name with blobs/uploads components is a blob", "GET", "/v2/a/blobs/uploads/blobs/{D}", pull(blob("a/blobs/uploads", "{D}"))),
        ("blobs/uploads without slash is an upload start, not a blob", "POST", "/v2/a/blobs/uploads", push(upload("a"))),
        ("session called uploads", "PATCH", "/v2/a/blobs/uploads/uploads", push(upload("a"))),
        ("session called blobs", "PATCH", "/v2/a/blobs/uploads/blobs", push(upload("a"))),
        ("upload start in a repo called blobs/uploads", "POST", "/v2/blobs/uploads/blobs/uploads/", push(upload("blobs/uploads"))),
        ("upload start without slash in a repo ending blobs/uploads", "POST", "/v2/a/blobs/uploads/blobs/uploads", push(upload("a/blobs/uploads"))),
        ("name with manifests component", "GET", "/v2/a/manifests/b/manifests/latest", pull(manifest("a/manifests/b", "latest"))),
        ("name with tags/list components", "GET", "/v2/a/tags/list/manifests/latest", pull(manifest("a/tags/list", "latest"))),
        ("repository called manifests", "GET", "/v2/manifests/manifests/manifests", pull(manifest("manifests", "manifests"))),
        ("name with referrers component", "GET", "/v2/a/referrers/x/tags/list", pull(tags("a/referrers/x"))),
        ("name ending in blobs", "GET", "/v2/x/blobs/tags/list", pull(tags("x/blobs"))),
        ("name ending in uploads", "GET", "/v2/x/uploads/manifests/latest", pull(manifest("x/uploads", "latest"))),
        ("reference containing a suffix is no reading", "GET", "/v2/a/manifests/b/blobs", Err(NameInvalid)),
    ]
}

/// Expands the placeholders used in the table.
fn expand_all(template: &str) -> String {
    let hex = "0123456789abcdef".repeat(9);
    let long_query = |len: usize| format!("x={}", "y".repeat(len - 2));
    expand(template)
        .replace("{A256}", &"a".repeat(256))
        .replace("{A255}", &"a".repeat(255))
        .replace("{A129}", &"a".repeat(129))
        .replace("{A128}", &"a".repeat(128))
        .replace("{A127}", &"a".repeat(127))
        .replace("{H65}", &hex[..65])
        .replace("{H64}", &hex[..64])
        .replace("{H63}", &hex[..63])
        .replace("{H62}", &hex[..62])
        .replace("{HUP}", &hex[..64].to_uppercase())
        .replace("{M40}", &"M".repeat(40))
        .replace("{MAXQ}", &long_query(MAX_QUERY_LEN))
        .replace("{LONGQ}", &long_query(MAX_QUERY_LEN + 1))
        .replace("{MAXTQ}", &long_query(MAX_TOKEN_QUERY_LEN))
        .replace("{LONGTQ}", &long_query(MAX_TOKEN_QUERY_LEN + 1))
}

#[test]
fn parse_request_table() {
    let mut failures = Vec::new();
    let cases = cases();
    let mut names = std::collections::HashSet::new();
    for (case, method, path, expected) in &cases {
        assert!(names.insert(*case), "duplicate case name {case:?}");
        let method = expand_all(method);
        let path = expand_all(path);
        let got = parse_request(&method, &path);
        if &got != expected {
            failures.push(format!(
                "{case}: {method} {path:?}\n    expected {expected:?}\n    got      {got:?}"
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
fn name_length_boundary() {
    let cases = [
        ("255 chars in one component", "a".repeat(255), true),
        ("256 chars in one component", "a".repeat(256), false),
        (
            "255 chars over components",
            format!("{}/{}", "a".repeat(127), "b".repeat(127)),
            true,
        ),
        (
            "256 chars over components",
            format!("{}/{}", "a".repeat(128), "b".repeat(127)),
            false,
        ),
    ];
    for (case, name, valid) in cases {
        assert_eq!(is_valid_repository_name(&name), valid, "{case}");
        let got = parse_request("GET", &format!("/v2/{name}/tags/list"));
        let expected = if valid {
            pull(tags(&name))
        } else {
            Err(NameInvalid)
        };
        assert_eq!(got, expected, "{case}");
    }
}

#[test]
fn repository_name_grammar() {
    let cases = [
        ("single component", "app", true),
        ("two components", "team/app", true),
        ("digits", "0/1", true),
        ("dot separator", "a.b", true),
        ("underscore separator", "a_b", true),
        ("double underscore", "a__b", true),
        ("dash run", "a--b", true),
        ("all separators", "a.b_c__d-e--f", true),
        ("empty", "", false),
        ("uppercase", "A", false),
        ("leading slash", "/a", false),
        ("trailing slash", "a/", false),
        ("empty component", "a//b", false),
        ("leading dot", ".a", false),
        ("trailing dot", "a.", false),
        ("double dot", "a..b", false),
        ("triple underscore", "a___b", false),
        ("dot then dash", "a.-b", false),
        ("underscore then dash", "a_-b", false),
        ("dash then dot", "a-.b", false),
        ("dot segment", "a/./b", false),
        ("dot-dot segment", "a/../b", false),
        ("colon", "a:b", false),
        ("space", "a b", false),
        ("percent", "a%2fb", false),
        ("non-ASCII", "caf\u{e9}", false),
    ];
    for (case, name, valid) in cases {
        assert_eq!(is_valid_repository_name(name), valid, "{case}: {name:?}");
    }
}

#[test]
fn tag_grammar() {
    let cases = [
        ("word", "latest".to_string(), true),
        ("version", "v1.2.3-rc_1".to_string(), true),
        ("leading underscore", "_x".to_string(), true),
        ("leading digit", "1".to_string(), true),
        ("uppercase", "Latest".to_string(), true),
        ("128 chars", "a".repeat(128), true),
        ("129 chars", "a".repeat(129), false),
        ("empty", String::new(), false),
        ("leading dot", ".x".to_string(), false),
        ("leading dash", "-x".to_string(), false),
        ("colon", "a:b".to_string(), false),
        ("slash", "a/b".to_string(), false),
        ("plus", "a+b".to_string(), false),
        ("non-ASCII", "\u{e9}".to_string(), false),
    ];
    for (case, tag, valid) in cases {
        assert_eq!(is_valid_tag(&tag), valid, "{case}: {tag:?}");
    }
}

#[test]
fn digest_grammar() {
    let hex = "0123456789abcdef".repeat(8);
    let cases = [
        ("sha256", format!("sha256:{}", &hex[..64]), true),
        ("sha512", format!("sha512:{hex}"), true),
        ("sha256 with 128 hex", format!("sha256:{hex}"), false),
        (
            "sha512 with 64 hex",
            format!("sha512:{}", &hex[..64]),
            false,
        ),
        (
            "sha256 uppercase hex",
            format!("sha256:{}", hex[..64].to_uppercase()),
            false,
        ),
        (
            "unregistered sha384",
            format!("sha384:{}", &hex[..96]),
            false,
        ),
        (
            "grammatical but unregistered",
            format!("sha256+b64u:{}", &hex[..64]),
            false,
        ),
        ("no algorithm", format!(":{}", &hex[..64]), false),
        ("no colon", hex[..64].to_string(), false),
        ("two colons", format!("sha256:{}:", &hex[..63]), false),
        ("empty", String::new(), false),
    ];
    for (case, digest, valid) in cases {
        assert_eq!(is_valid_digest(&digest), valid, "{case}: {digest:?}");
    }
}

#[test]
fn upload_session_grammar() {
    let cases = [
        ("uuid", UUID.to_string(), true),
        ("all allowed bytes", "aZ09_.=-".to_string(), true),
        ("256 chars", "a".repeat(256), true),
        ("257 chars", "a".repeat(257), false),
        ("empty", String::new(), false),
        ("dot", ".".to_string(), false),
        ("dot-dot", "..".to_string(), false),
        ("three dots", "...".to_string(), true),
        ("slash", "a/b".to_string(), false),
        ("colon", "a:b".to_string(), false),
        ("percent", "a%20".to_string(), false),
        ("plus", "a+b".to_string(), false),
    ];
    for (case, id, valid) in cases {
        assert_eq!(is_valid_upload_session(&id), valid, "{case}: {id:?}");
    }
}

#[test]
fn resolve_rule() {
    let a = || Ok((Shape::Blob, blob("a", "{D}")));
    let b = || Ok((Shape::UploadStart, upload("a")));
    type Row = (&'static str, Vec<Candidate>, Candidate);
    let cases: Vec<Row> = vec![
        ("no reading", vec![], Err(NameInvalid)),
        ("one valid reading", vec![a()], a()),
        ("valid after invalid", vec![Err(DigestInvalid), b()], b()),
        (
            "two valid readings are ambiguous",
            vec![a(), b()],
            Err(RouteError::Ambiguous),
        ),
        (
            "ambiguous despite an invalid one",
            vec![a(), Err(NameInvalid), b()],
            Err(RouteError::Ambiguous),
        ),
        (
            "first error wins",
            vec![Err(DigestInvalid), Err(NameInvalid)],
            Err(DigestInvalid),
        ),
    ];
    for (case, candidates, expected) in cases {
        assert_eq!(resolve(candidates), expected, "{case}");
    }
}

/// No path in the table (nor any generated one) has more than one valid reading: `Ambiguous`
/// is a guard, and this shows the current suffix table never trips it.
#[test]
fn readings_never_overlap() {
    for (case, _, path, _) in cases() {
        let path = expand_all(path);
        if let Some(rest) = path.strip_prefix("/v2/") {
            let rest = rest.split_once('?').map_or(rest, |(p, _)| p);
            let valid = candidates(rest).into_iter().filter(Result::is_ok).count();
            assert!(valid <= 1, "{case}: {valid} valid readings");
        }
    }
}

/// A small deterministic generator (xorshift64*), so the junk is the same on every run.
struct Junk(u64);

impl Junk {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

const FRAGMENTS: &[&str] = &[
    "/",
    "/",
    "/",
    "v2",
    "v1",
    "/v2/",
    "manifests",
    "blobs",
    "uploads",
    "tags",
    "list",
    "referrers",
    "_catalog",
    "token",
    "_ping",
    "search",
    "a",
    "team",
    "app",
    "latest",
    D,
    D512,
    UUID,
    "sha256:",
    ":",
    ".",
    "..",
    "-",
    "_",
    "__",
    "?",
    "&",
    "n=",
    "last=",
    "q=",
    "=",
    "%",
    "%2F",
    "%2e",
    "%zz",
    "%C3%A9",
    "%00",
    "+",
    "#",
    "\\",
    " ",
    "\t",
    "\0",
    "\u{e9}",
    "\u{ff0f}",
    "A",
    "0",
    "99999999",
    "*",
    "mount=",
    "from=",
];

const NAME_PARTS: &[&str] = &[
    "a",
    "team",
    "app",
    "manifests",
    "blobs",
    "uploads",
    "tags",
    "list",
    "a.b",
    "a__b",
    "a-b",
];

const SUFFIXES: &[&str] = &[
    "/manifests/latest",
    "/manifests/sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "/blobs/sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "/blobs/uploads/",
    "/blobs/uploads",
    "/blobs/uploads/6f1c2a3e-9b8d-4c7a-8e2f-1a2b3c4d5e6f",
    "/tags/list",
    "/tags/list?n=10&last=a",
    "/referrers/sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "?n=5",
    "",
];

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "get", "", "TRACE",
];

#[test]
fn junk_never_panics_and_results_are_consistent() {
    let mut junk = Junk(0x9e37_79b9_7f4a_7c15);
    let mut accepted = 0;
    for _ in 0..5000 {
        let mut path = String::new();
        if junk.below(2) == 0 {
            // Free junk.
            if junk.below(2) == 0 {
                path.push_str("/v2/");
            }
            for _ in 0..junk.next() % 24 {
                path.push_str(junk.pick(FRAGMENTS));
            }
        } else {
            // A plausible request, sometimes with one fragment spliced in.
            path.push_str("/v2/");
            for i in 0..=junk.next() % 3 {
                if i > 0 {
                    path.push('/');
                }
                path.push_str(junk.pick(NAME_PARTS));
            }
            path.push_str(junk.pick(SUFFIXES));
            if junk.below(3) == 0 {
                let at = (junk.next() % (path.len() as u64 + 1)) as usize;
                if path.is_char_boundary(at) {
                    path.insert_str(at, junk.pick(FRAGMENTS));
                }
            }
        }
        let method = junk.pick(METHODS);
        let Ok(request) = parse_request(method, &path) else {
            continue;
        };
        accepted += 1;
        // Whatever was accepted is well-formed.
        if let Some(name) = request.route.repository() {
            assert!(is_valid_repository_name(name), "{method} {path:?}");
        }
        match &request.route {
            Route::Manifest { reference, .. } => {
                assert!(
                    is_valid_tag(reference) || is_valid_digest(reference),
                    "{path:?}"
                )
            }
            Route::Blob { digest, .. } | Route::Referrers { digest, .. } => {
                assert!(is_valid_digest(digest), "{path:?}")
            }
            Route::Catalog(Page { n, last }) => {
                assert!(n.is_none_or(|n| n <= MAX_PAGE_SIZE));
                assert!(last.as_deref().is_none_or(is_valid_repository_name));
            }
            _ => {}
        }
        let expected_action = match method {
            "GET" | "HEAD" => Action::Pull,
            "POST" if request.route == Route::Token => Action::Pull,
            "POST" | "PUT" | "PATCH" => Action::Push,
            "DELETE" => Action::Delete,
            other => panic!("accepted method {other:?} for {path:?}"),
        };
        assert_eq!(request.action, expected_action, "{method} {path:?}");
        // Accepted paths only ever hold visible ASCII before the query.
        let before_query = path.split_once('?').map_or(path.as_str(), |(p, _)| p);
        assert!(
            before_query.bytes().all(|b| b.is_ascii_graphic()),
            "{path:?}"
        );
        assert!(!before_query.contains(['%', '\\', '#']), "{path:?}");
    }
    println!("accepted {accepted} of 5000 generated requests");
    assert!(
        accepted > 100,
        "the generator should reach accepted routes too"
    );
}

#[test]
fn random_bytes_never_panic() {
    let mut junk = Junk(0x0123_4567_89ab_cdef);
    for _ in 0..3000 {
        let len = (junk.next() % 64) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| (junk.next() & 0xff) as u8).collect();
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_request(&text, &text);
        let _ = parse_request("GET", &format!("/v2/{text}"));
        let _ = parse_request("GET", &format!("/v2/_catalog?{text}"));
        let _ = parse_request("GET", &format!("/v1/search?q={text}"));
    }
}
