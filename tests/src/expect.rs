//! Assertions the scenarios share: registry error bodies, the Docker challenge, "the upstream
//! never saw it", and manifest fetches. Each failure message carries the whole response.

use crate::http::{Auth, HttpVersion, Response};
use crate::oci::{OciImage, MANIFEST_MEDIA_TYPE};
use crate::stack::Stack;

/// `Accept` for manifest GETs: distribution serves an OCI manifest only to clients that
/// accept it.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// `GET /v2/<name>/manifests/<tag>` through Envoy.
pub fn get_manifest(
    stack: &Stack,
    name: &str,
    tag: &str,
    version: HttpVersion,
    auth: Auth<'_>,
) -> Response {
    let path = format!("/v2/{name}/manifests/{tag}");
    let resp = stack
        .request("GET", &path, version)
        .header("Accept", MANIFEST_ACCEPT)
        .auth(auth)
        .send_ok();
    assert_eq!(
        resp.http_version,
        version.wire_name(),
        "asked for {version}, got HTTP/{}",
        resp.http_version
    );
    resp
}

/// The status of `GET /v2/<name>/manifests/latest` through Envoy over HTTP/1.1 with `token`.
pub fn bearer_manifest_status(stack: &Stack, name: &str, token: &str) -> u16 {
    get_manifest(
        stack,
        name,
        "latest",
        HttpVersion::Http1,
        Auth::Bearer(token),
    )
    .status
}

/// The response is `image`'s manifest, byte for byte.
pub fn assert_is_manifest_of(resp: &Response, image: &OciImage, context: &str) {
    assert_eq!(
        resp.status,
        200,
        "{context}: expected {}'s manifest: {}",
        image.reference(),
        resp.summary()
    );
    assert_eq!(
        resp.body,
        image.manifest,
        "{context}: body is not {}'s manifest: {}",
        image.reference(),
        resp.summary()
    );
    if let Some(ct) = resp.header("content-type") {
        assert!(
            ct.starts_with(MANIFEST_MEDIA_TYPE),
            "{context}: content-type {ct}"
        );
    }
}

/// `status` with a registry error body whose first error has `code`
/// (`{"errors":[{"code":..}]}`).
pub fn assert_registry_error(resp: &Response, status: u16, code: &str, context: &str) {
    assert_eq!(
        resp.status,
        status,
        "{context}: expected {status} {code}: {}",
        resp.summary()
    );
    let json: serde_json::Value = serde_json::from_slice(&resp.body).unwrap_or_else(|err| {
        panic!(
            "{context}: error body is not JSON ({err}): {}",
            resp.summary()
        )
    });
    let first = json
        .get("errors")
        .and_then(|e| e.get(0))
        .and_then(|e| e.get("code"))
        .and_then(serde_json::Value::as_str);
    assert_eq!(
        first,
        Some(code),
        "{context}: expected errors[0].code = {code}: {}",
        resp.summary()
    );
}

/// The exact Docker challenge for an anonymous pull of `name`.
pub fn expected_challenge(stack: &Stack, name: &str) -> String {
    format!(
        r#"Bearer realm="{}",service="{}",scope="repository:{name}:pull""#,
        stack.realm(),
        crate::sidecar::SERVICE
    )
}

/// 401 with exactly the Docker challenge for `name`.
pub fn assert_challenge(stack: &Stack, resp: &Response, name: &str, context: &str) {
    assert_eq!(
        resp.status,
        401,
        "{context}: expected 401 with a challenge: {}",
        resp.summary()
    );
    assert_eq!(
        resp.header("www-authenticate"),
        Some(expected_challenge(stack, name).as_str()),
        "{context}: WWW-Authenticate: {}",
        resp.summary()
    );
}

/// Runs `f` and asserts Envoy sent nothing to the registry cluster meanwhile.
pub fn assert_upstream_untouched<T>(
    stack: &mut Stack,
    context: &str,
    f: impl FnOnce(&Stack) -> T,
) -> T {
    let before = stack.upstream_requests();
    let out = f(stack);
    let after = stack.upstream_requests();
    assert_eq!(
        after,
        before,
        "{context}: the registry (upstream) received {} request(s) it must never see",
        after.saturating_sub(before)
    );
    out
}

/// The catalog body's `repositories` list.
pub fn catalog_names(resp: &Response, context: &str) -> Vec<String> {
    assert_eq!(resp.status, 200, "{context}: catalog: {}", resp.summary());
    resp.json()
        .get("repositories")
        .and_then(serde_json::Value::as_array)
        .unwrap_or_else(|| {
            panic!(
                "{context}: catalog has no repositories list: {}",
                resp.summary()
            )
        })
        .iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("{context}: non-string repository: {}", resp.summary()))
                .to_owned()
        })
        .collect()
}
