//! The gate, natively: the README's request table row by row through [`Gate::check`], and the
//! snapshot rules through [`Gate::announced`] / [`Gate::offer`].

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jwt_compact::alg::Ed25519;
use jwt_compact::{Algorithm as _, AlgorithmSignature as _};
use serde_json::{json, Value};

use super::*;
use crate::snapshot::{Content, Repository};
use crate::token::{Algorithm, KeySpec};

const NOW: u64 = 1_700_000_000;
const KID: &str = "gate-1";

type SigningKey = <Ed25519 as jwt_compact::Algorithm>::SigningKey;

fn signing_key(seed: u8) -> SigningKey {
    let pair = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([seed; 32]));
    SigningKey::from_slice(pair.sk.as_ref()).unwrap()
}

fn key_spec(kid: &str, key: &SigningKey) -> KeySpec {
    let Value::Object(jwk) = json!({
        "kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(&key.public_key()[..])
    }) else {
        unreachable!()
    };
    KeySpec {
        kid: kid.into(),
        alg: Algorithm::EdDSA,
        jwk,
    }
}

/// A registry token signed by the snapshot's key.
fn mint(claims: Value) -> String {
    mint_with(KID, &signing_key(1), claims)
}

fn mint_with(kid: &str, key: &SigningKey, claims: Value) -> String {
    let header = json!({"alg": "EdDSA", "kid": kid, "typ": "JWT"});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = Ed25519.sign(key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_bytes()))
}

fn claims(sub: &str, access: Option<Value>) -> Value {
    let mut claims = json!({
        "iss": "registry-gate", "sub": sub, "aud": "svc",
        "exp": NOW + 300, "iat": NOW, "nbf": NOW,
    });
    if let Some(access) = access {
        claims["access"] = access;
    }
    claims
}

fn pull_access(name: &str) -> Value {
    json!([{"type": "repository", "name": name, "actions": ["pull"]}])
}

fn token(sub: &str) -> String {
    mint(claims(sub, None))
}

/// The snapshot every test starts from: one public and two private repositories, alice
/// granted `team/private`, bob granted nothing, the signing key published.
#[derive(Clone)]
struct Fixture {
    content: Content,
}

fn snapshot() -> Fixture {
    let repo = |name: &str, auth_required| Repository {
        name: name.into(),
        auth_required,
    };
    Fixture {
        content: Content {
            repositories: vec![
                repo("library/public", false),
                repo("team/private", true),
                repo("team/other", true),
            ],
            users: [
                ("alice".to_string(), vec!["team/private".to_string()]),
                ("bob".to_string(), vec![]),
            ]
            .into_iter()
            .collect(),
            keys: vec![key_spec(KID, &signing_key(1))],
            ..Content::default()
        },
    }
}

impl Fixture {
    fn revoke(mut self, user: &str, repository: &str) -> Fixture {
        if let Some(grants) = self.content.users.get_mut(user) {
            grants.retain(|r| r != repository);
        }
        self
    }

    fn keys(mut self, keys: Vec<KeySpec>) -> Fixture {
        self.content.keys = keys;
        self
    }

    fn raw_key(mut self, jwk: Value) -> Fixture {
        let Value::Object(jwk) = jwk else {
            unreachable!()
        };
        self.content.keys.push(KeySpec {
            kid: "raw".into(),
            alg: Algorithm::EdDSA,
            jwk,
        });
        self
    }

    /// Index bytes of generation `generation` of epoch `e1`, unsigned, written past the
    /// content's own validation (to offer what a broken publisher would send).
    fn bytes(&self, generation: u64) -> Vec<u8> {
        let stamp = crate::snapshot::Stamp {
            epoch: "e1".into(),
            generation,
            published_at: NOW,
            producer: "test".into(),
            allow_empty: false,
        };
        crate::snapshot::build_index(&self.content, &stamp).unwrap()
    }
}

/// An announcement of generation `generation` naming no bytes (the gate validates in full).
fn announcement(generation: u64, confirmed_at: u64) -> Announcement {
    Announcement {
        epoch: "e1".into(),
        generation,
        confirmed_at,
        checksum: None,
    }
}

/// The announcement a fetcher makes after validating `bytes` in full: it names them.
fn naming(bytes: &[u8], confirmed_at: u64) -> Announcement {
    let summary = registry_gate_index::check(bytes).unwrap();
    Announcement {
        epoch: summary.epoch,
        generation: summary.generation,
        confirmed_at,
        checksum: Some(summary.checksum),
    }
}

fn settings(extra: Value) -> Settings {
    let mut config = json!({
        "issuer": "registry-gate", "service": "svc", "realm": "https://gw.test/v2/token",
        "max_staleness_secs": 600, "retry_after_secs": 7,
    });
    for (name, value) in extra.as_object().unwrap() {
        config[name] = value.clone();
    }
    Settings::from_json(config.to_string().as_bytes()).unwrap()
}

/// A gate with generation 1 of [`snapshot`] installed and confirmed at `NOW`.
fn ready_gate(extra: Value) -> Gate {
    let mut gate = Gate::new(settings(extra));
    let announced = announcement(1, NOW);
    assert!(gate.announced(&announced));
    gate.offer(snapshot().bytes(1), &announced).unwrap();
    gate
}

/// A request head; `headers` are (name, value) pairs besides the pseudo-headers.
fn head<'a>(method: &'a str, path: &'a str, headers: &'a [(&'a str, &'a [u8])]) -> RequestHead<'a> {
    let pairs = [(":method", method.as_bytes()), (":path", path.as_bytes())];
    RequestHead::from_pairs(
        pairs
            .into_iter()
            .chain(headers.iter().copied())
            .map(|(name, value)| (name.as_bytes(), value)),
        "x-registry-gate-identity",
    )
}

/// What a row expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Forwarded with this identity header value.
    Forward(&'static str),
    /// Answered locally with this status, registry error code (if an error), and a
    /// fragment of `WWW-Authenticate` (if any).
    Reply {
        status: u16,
        code: Option<&'static str>,
        challenge: Option<&'static str>,
    },
}

fn reply(status: u16, code: &'static str) -> Want {
    Want::Reply {
        status,
        code: Some(code),
        challenge: None,
    }
}

fn challenge(fragment: &'static str) -> Want {
    Want::Reply {
        status: 401,
        code: Some("UNAUTHORIZED"),
        challenge: Some(fragment),
    }
}

fn answered() -> Want {
    Want::Reply {
        status: 200,
        code: None,
        challenge: None,
    }
}

struct Row {
    case: &'static str,
    method: &'static str,
    path: &'static str,
    authorization: Option<Vec<u8>>,
    extra: Vec<(&'static str, &'static [u8])>,
    want: Want,
}

fn bearer(token: &str) -> Option<Vec<u8>> {
    Some(format!("Bearer {token}").into_bytes())
}

fn row(case: &'static str, method: &'static str, path: &'static str, want: Want) -> Row {
    Row {
        case,
        method,
        path,
        authorization: None,
        extra: vec![],
        want,
    }
}

impl Row {
    fn auth(mut self, authorization: Option<Vec<u8>>) -> Row {
        self.authorization = authorization;
        self
    }

    fn header(mut self, name: &'static str, value: &'static [u8]) -> Row {
        self.extra.push((name, value));
        self
    }
}

fn check_rows(gate: &mut Gate, rows: Vec<Row>) {
    for row in rows {
        let mut headers: Vec<(&str, &[u8])> = row.extra.clone();
        if let Some(authorization) = &row.authorization {
            headers.push(("authorization", authorization));
        }
        let head = head(row.method, row.path, &headers);
        let verdict = gate.check(&head, NOW);
        match (row.want, verdict) {
            (Want::Forward(identity), Verdict::Forward(forward)) => {
                assert_eq!(forward.identity, identity, "{}", row.case);
            }
            (
                Want::Reply {
                    status,
                    code,
                    challenge,
                },
                Verdict::Respond { reply, .. },
            ) => {
                assert_eq!(reply.status, status, "{}: {reply:?}", row.case);
                let body: Value = serde_json::from_str(&reply.body).unwrap();
                if let Some(code) = code {
                    assert_eq!(body["errors"][0]["code"], code, "{}", row.case);
                }
                let header = reply.header("www-authenticate");
                assert_eq!(header.is_some(), status == 401, "{}", row.case);
                if let Some(fragment) = challenge {
                    let header = header.unwrap_or_default();
                    assert!(header.contains(fragment), "{}: {header}", row.case);
                }
                assert_eq!(
                    reply.header("docker-distribution-api-version"),
                    Some("registry/2.0"),
                    "{}",
                    row.case
                );
            }
            (want, got) => panic!("{}: wanted {want:?}, got {got:?}", row.case),
        }
    }
}

#[test]
fn the_readme_request_table() {
    let mut gate = ready_gate(json!({}));
    let alice = token("alice");
    let anonymous = token("");
    let expired = mint(json!({
        "iss": "registry-gate", "sub": "alice", "aud": "svc", "exp": NOW - 61, "iat": NOW - 400,
    }));
    let forged = mint_with(KID, &signing_key(2), claims("alice", None));
    let unknown_kid = mint_with("nope", &signing_key(1), claims("alice", None));
    let wrong_issuer = mint(json!({
        "iss": "elsewhere", "sub": "alice", "aud": "svc", "exp": NOW + 60, "iat": NOW,
    }));
    let wrong_audience = mint(json!({
        "iss": "registry-gate", "sub": "alice", "aud": "other", "exp": NOW + 60, "iat": NOW,
    }));
    let control_subject = token("ali\u{7}ce");
    let long_subject = token(&"a".repeat(300));
    let scoped_elsewhere = mint(claims("alice", Some(pull_access("team/other"))));
    let scoped = mint(claims("alice", Some(pull_access("team/private"))));
    let catalog_scoped = mint(claims(
        "alice",
        Some(json!([{"type": "registry", "name": "catalog", "actions": ["*"]}])),
    ));
    let private = "/v2/team/private/manifests/latest";
    let rows = vec![
        row("malformed name", "GET", "/v2/Team/manifests/latest", reply(400, "NAME_INVALID")),
        row("malformed tag", "GET", "/v2/team/private/manifests/-x", reply(400, "MANIFEST_INVALID")),
        row("malformed digest", "GET", "/v2/team/private/blobs/sha256:zz", reply(400, "DIGEST_INVALID")),
        row("not a registry path", "GET", "/metrics", reply(404, "NOT_FOUND")),
        row("method not allowed", "TRACE", private, reply(405, "UNSUPPORTED")),
        row("method override on a pull", "GET", private, reply(400, "UNSUPPORTED"))
            .header("x-http-method-override", b"DELETE"),
        row("x-http-method on a pull", "GET", "/v2/library/public/manifests/latest", reply(400, "UNSUPPORTED"))
            .header("x-http-method", b"PUT"),
        row("x-method-override", "HEAD", private, reply(400, "UNSUPPORTED"))
            .header("x-method-override", b"PATCH"),
        row("Basic on a pull", "GET", private, challenge("error=\"invalid_token\""))
            .auth(Some(b"Basic YWxpY2U6cHc=".to_vec())),
        row("two spaces", "GET", private, challenge("error=\"invalid_token\""))
            .auth(Some(format!("Bearer  {alice}").into_bytes())),
        row("authorization bytes that are not text", "GET", private, challenge("error=\"invalid_token\""))
            .auth(Some(b"Bearer \xff\xfe".to_vec())),
        row("garbage token", "GET", private, challenge("error=\"invalid_token\""))
            .auth(bearer("not-a-jwt")),
        row("expired token", "GET", private, challenge("error=\"invalid_token\"")).auth(bearer(&expired)),
        row("forged signature", "GET", private, challenge("error=\"invalid_token\"")).auth(bearer(&forged)),
        row("unknown kid", "GET", private, challenge("error=\"invalid_token\"")).auth(bearer(&unknown_kid)),
        row("wrong issuer", "GET", private, challenge("error=\"invalid_token\"")).auth(bearer(&wrong_issuer)),
        row("wrong audience", "GET", private, challenge("error=\"invalid_token\"")).auth(bearer(&wrong_audience)),
        row("control character in sub", "GET", private, challenge("error=\"invalid_token\""))
            .auth(bearer(&control_subject)),
        row("overlong sub", "GET", private, challenge("error=\"invalid_token\"")).auth(bearer(&long_subject)),
        row("token endpoint keeps Basic", "GET", "/v2/token?service=svc", Want::Forward("anonymous"))
            .auth(Some(b"Basic YWxpY2U6cHc=".to_vec())),
        row("ping without a token", "GET", "/v2/", challenge("service=\"svc\"")),
        row("ping with a token", "GET", "/v2/", Want::Forward("user:alice")).auth(bearer(&alice)),
        row("ping with an anonymous token", "GET", "/v2/", Want::Forward("anonymous")).auth(bearer(&anonymous)),
        row("public pull, no token", "GET", "/v2/library/public/manifests/latest", Want::Forward("anonymous")),
        row("public blob, user", "GET", "/v2/library/public/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000", Want::Forward("user:alice"))
            .auth(bearer(&alice)),
        row("private pull, no token", "GET", private, challenge("scope=\"repository:team/private:pull\"")),
        row("private pull, anonymous token", "GET", private, challenge("error=\"insufficient_scope\""))
            .auth(bearer(&anonymous)),
        row("private pull, granted", "GET", private, Want::Forward("user:alice")).auth(bearer(&alice)),
        row("private tags list, granted", "GET", "/v2/team/private/tags/list", Want::Forward("user:alice"))
            .auth(bearer(&alice)),
        row("private pull, access covers it", "HEAD", private, Want::Forward("user:alice")).auth(bearer(&scoped)),
        row("private pull, access covers another repository", "GET", private, challenge("error=\"insufficient_scope\""))
            .auth(bearer(&scoped_elsewhere)),
        row("private pull, not granted", "GET", "/v2/team/other/manifests/latest", reply(404, "NAME_UNKNOWN"))
            .auth(bearer(&alice)),
        row("private pull, unknown repository", "GET", "/v2/team/ghost/manifests/latest", reply(404, "NAME_UNKNOWN"))
            .auth(bearer(&alice)),
        row("granted user without grants", "GET", private, reply(404, "NAME_UNKNOWN")).auth(bearer(&token("bob"))),
        row("push, writes off", "PUT", private, reply(405, "UNSUPPORTED")).auth(bearer(&alice)),
        row("delete, writes off", "DELETE", private, reply(405, "UNSUPPORTED")).auth(bearer(&alice)),
        row("catalog, no token", "GET", "/v2/_catalog", challenge("scope=\"registry:catalog:*\"")),
        row("catalog, token without access claim", "GET", "/v2/_catalog", answered()).auth(bearer(&alice)),
        row("catalog, token scoped to a repository", "GET", "/v2/_catalog", challenge("error=\"insufficient_scope\""))
            .auth(bearer(&scoped)),
        row("catalog, registry:catalog:*", "GET", "/v2/_catalog?n=1", answered()).auth(bearer(&catalog_scoped)),
        row("search, anyone", "GET", "/v1/search?q=team", answered()),
        row("search with Basic credentials", "GET", "/v1/search?q=team", answered())
            .auth(Some(b"Basic YWxpY2U6cHc=".to_vec())),
        row("search from a v2 client", "GET", "/v1/search?q=team", reply(404, "NOT_FOUND"))
            .header("docker-distribution-api-version", b"registry/2.0"),
        row("v1 ping", "GET", "/v1/_ping", answered()),
        row("flatpak index, no token", "GET", "/index/static?label:org.flatpak.ref:exists=1", Want::Forward("anonymous")),
        row("flatpak index, user", "HEAD", "/index/static", Want::Forward("user:alice")).auth(bearer(&alice)),
        row("flatpak index, bad token", "GET", "/index/static", challenge("error=\"invalid_token\"")).auth(bearer(&forged)),
        row("flatpak index is read-only", "POST", "/index/static", reply(405, "UNSUPPORTED")),
        row("path bytes that are not text", "GET", "/v2/\u{ff}", reply(400, "NAME_INVALID")),
        row("repeated authorization", "GET", private, challenge("error=\"invalid_token\""))
            .auth(bearer(&alice))
            .header("authorization", b"Bearer x.y.z"),
    ];
    check_rows(&mut gate, rows);
}

#[test]
fn pushes_follow_the_writers_when_allowed() {
    let mut gate = Gate::new(settings(json!({"allow_push": true})));
    let mut fixture = snapshot();
    fixture
        .content
        .writers
        .insert("alice".into(), vec!["team/private".into()]);
    let announced = announcement(1, NOW);
    gate.offer(fixture.bytes(1), &announced).unwrap();
    let push_scope = mint(claims(
        "alice",
        Some(json!([{"type": "repository", "name": "team/private", "actions": ["pull", "push"]}])),
    ));
    let pull_only = mint(claims("alice", Some(pull_access("team/private"))));
    let upload = "/v2/team/private/blobs/uploads/";
    let rows = vec![
        row("writer pushes", "POST", upload, Want::Forward("user:alice")).auth(bearer(&push_scope)),
        row("writer's token lacks push", "POST", upload, challenge("error=\"insufficient_scope\""))
            .auth(bearer(&pull_only)),
        row("reader may not push", "PUT", "/v2/team/private/manifests/v1", reply(404, "NAME_UNKNOWN"))
            .auth(bearer(&token("bob"))),
        row("anonymous push", "POST", upload, challenge("scope=\"repository:team/private:pull,push\"")),
        row("mount after a semicolon", "POST", "/v2/team/private/blobs/uploads/?a=1;mount=sha256:0000000000000000000000000000000000000000000000000000000000000000", reply(400, "UNSUPPORTED"))
            .auth(bearer(&push_scope)),
    ];
    check_rows(&mut gate, rows);
}

#[test]
fn forward_strips_what_the_upstream_must_not_see() {
    let mut gate = ready_gate(json!({}));
    let alice = format!("Bearer {}", token("alice"));
    let private = "/v2/team/private/manifests/latest";
    let headers: [(&str, &[u8]); 2] = [
        ("authorization", alice.as_bytes()),
        ("x-registry-gate-identity", b"user:root"),
    ];
    let Verdict::Forward(forward) = gate.check(&head("GET", private, &headers), NOW) else {
        panic!("granted pull must be forwarded");
    };
    assert!(forward.remove_identity, "the client's identity header goes");
    assert!(forward.remove_authorization, "the token stays at the gate");
    let headers: [(&str, &[u8]); 1] = [("authorization", alice.as_bytes())];
    let Verdict::Forward(forward) = gate.check(&head("GET", private, &headers), NOW) else {
        panic!("granted pull must be forwarded");
    };
    assert!(
        !forward.remove_identity,
        "nothing to remove: no extra host call"
    );

    let mut keeping = ready_gate(json!({"forward_authorization": true}));
    let Verdict::Forward(forward) = keeping.check(&head("GET", private, &headers), NOW) else {
        panic!("granted pull must be forwarded");
    };
    assert!(!forward.remove_authorization);
    assert!(matches!(forward.identity, Cow::Borrowed("user:alice")));

    let mut routed = ready_gate(json!({"authorization_removed_by_route": true}));
    let Verdict::Forward(forward) = routed.check(&head("GET", private, &headers), NOW) else {
        panic!("granted pull must be forwarded");
    };
    assert!(!forward.remove_authorization, "the route removes it");
    assert!(
        Settings::from_json(
            br#"{"issuer":"i","service":"s","realm":"https://r","forward_authorization":true,"authorization_removed_by_route":true}"#
        )
        .is_err(),
        "keeping and removing by route contradict"
    );
}

#[test]
fn no_snapshot_then_stale_then_confirmed() {
    let mut gate = Gate::new(settings(json!({})));
    let public = head("GET", "/v2/library/public/manifests/latest", &[]);
    let status = |verdict: Verdict<'_>| match verdict {
        Verdict::Forward(_) => 0,
        Verdict::Respond { reply, .. } => {
            if reply.status == 503 {
                assert_eq!(reply.header("retry-after"), Some("7"));
            }
            reply.status
        }
    };
    assert_eq!(status(gate.check(&public, NOW)), 503, "nothing installed");
    assert_eq!(gate.readiness(NOW), Err(Refusal::NoSnapshot));
    let first = announcement(1, NOW);
    gate.offer(snapshot().bytes(1), &first).unwrap();
    assert_eq!(
        status(gate.check(&public, NOW + 600)),
        0,
        "confirmed 600 s ago"
    );
    assert_eq!(
        gate.readiness(NOW + 601),
        Err(Refusal::Stale {
            unconfirmed_secs: 601
        })
    );
    assert_eq!(
        status(gate.check(&public, NOW + 601)),
        503,
        "stale: fail closed"
    );
    assert!(
        !gate.announced(&announcement(1, NOW + 500)),
        "a confirmation, not news"
    );
    assert_eq!(status(gate.check(&public, NOW + 601)), 0, "confirmed again");
}

#[test]
fn staleness_counts_only_confirmations_of_the_installed_generation() {
    let mut gate = ready_gate(json!({}));
    // The fetcher moved to generation 2, which this worker refuses (an invalid key that a
    // broken publisher let through): its confirmations must not keep generation 1 fresh.
    let bad = snapshot().raw_key(json!({"kty": "OKP", "crv": "Ed25519", "x": "!!"}));
    let second = announcement(2, NOW + 500);
    assert!(gate.announced(&second));
    let err = gate.offer(bad.bytes(2), &second).unwrap_err();
    assert_eq!(err.reason(), "invalid", "{err}");
    assert_eq!(gate.generation(), Some(&Generation::new("e1", 1)));
    assert!(
        !gate.announced(&announcement(2, NOW + 590)),
        "refused once, not re-read"
    );
    assert_eq!(gate.readiness(NOW + 600), Ok(()));
    assert!(
        matches!(gate.readiness(NOW + 601), Err(Refusal::Stale { .. })),
        "generation 1 was last confirmed at NOW"
    );
    assert_eq!(gate.counts().rejected, vec![("invalid", 1)]);
}

#[test]
fn bytes_newer_than_their_announcement_are_as_fresh_as_it() {
    // The fetcher wrote generation 2 between the worker's read of the announcement (still
    // naming 1, confirmed at NOW) and its read of the snapshot bytes.
    let mut gate = Gate::new(settings(json!({})));
    let announced = announcement(1, NOW);
    assert!(gate.announced(&announced));
    assert_eq!(
        gate.offer(snapshot().bytes(2), &announced).unwrap(),
        Generation::new("e1", 2)
    );
    assert_eq!(gate.readiness(NOW + 10), Ok(()), "no 503 in between");
    assert!(
        !gate.announced(&announcement(1, NOW + 5)),
        "already past 1: nothing to read"
    );
    assert!(gate.counts().rejected.is_empty(), "and nothing refused");
    assert!(!gate.announced(&announcement(2, NOW + 20)));
    assert_eq!(gate.unconfirmed_secs(NOW + 20), 0);
}

#[test]
fn a_new_generation_revokes_at_once_even_for_cached_tokens() {
    let mut gate = ready_gate(json!({}));
    let alice = format!("Bearer {}", token("alice"));
    let headers: [(&str, &[u8]); 1] = [("authorization", alice.as_bytes())];
    let private = head("GET", "/v2/team/private/manifests/latest", &headers);
    assert!(matches!(gate.check(&private, NOW), Verdict::Forward(_)));
    let second = announcement(2, NOW);
    assert!(gate.announced(&second));
    gate.offer(snapshot().revoke("alice", "team/private").bytes(2), &second)
        .unwrap();
    let Verdict::Respond { reply, outcome, .. } = gate.check(&private, NOW) else {
        panic!("revoked");
    };
    assert_eq!((reply.status, outcome), (404, Outcome::NotFound));
}

#[test]
fn min_token_iat_refuses_tokens_issued_before_it_even_cached() {
    let mut gate = ready_gate(json!({}));
    let before = format!("Bearer {}", token("alice"));
    let mut after_claims = claims("alice", None);
    after_claims["iat"] = json!(NOW + 1);
    let after = format!("Bearer {}", mint(after_claims));
    let mut undated_claims = claims("alice", None);
    undated_claims.as_object_mut().unwrap().remove("iat");
    let undated = format!("Bearer {}", mint(undated_claims));
    let check = |gate: &mut Gate, authorization: &str, path: &str| {
        let headers: [(&str, &[u8]); 1] = [("authorization", authorization.as_bytes())];
        match gate.check(&head("GET", path, &headers), NOW + 2) {
            Verdict::Forward(_) => 200,
            Verdict::Respond { reply, .. } => reply.status,
        }
    };
    assert_eq!(
        check(&mut gate, &before, PRIVATE),
        200,
        "cached before the revocation"
    );
    let mut revoking = snapshot();
    revoking.content.min_token_iat = Some(NOW + 1);
    let second = announcement(2, NOW + 2);
    assert!(gate.announced(&second));
    gate.offer(revoking.bytes(2), &second).unwrap();
    let failures_before = gate.counts().token_failures.clone();
    assert_eq!(
        check(&mut gate, &before, PRIVATE),
        401,
        "issued before: refused, cached or not"
    );
    assert_eq!(
        check(&mut gate, &before, PUBLIC),
        401,
        "a revoked token is no anonymous one"
    );
    assert_eq!(check(&mut gate, &undated, PRIVATE), 401, "no iat: refused");
    assert_eq!(
        check(&mut gate, &after, PRIVATE),
        200,
        "issued at the bound: served"
    );
    let revoked = |counts: &[(&str, u64)]| {
        counts
            .iter()
            .find(|(reason, _)| *reason == "revoked")
            .map_or(0, |(_, n)| *n)
    };
    assert_eq!(
        revoked(&gate.counts().token_failures) - revoked(&failures_before),
        3
    );
}

#[test]
fn a_removed_key_stops_cached_tokens() {
    let mut gate = ready_gate(json!({}));
    let alice = format!("Bearer {}", token("alice"));
    let headers: [(&str, &[u8]); 1] = [("authorization", alice.as_bytes())];
    let private = head("GET", "/v2/team/private/manifests/latest", &headers);
    assert!(matches!(gate.check(&private, NOW), Verdict::Forward(_)));
    let rotated = snapshot().keys(vec![key_spec("gate-2", &signing_key(2))]);
    gate.offer(rotated.bytes(2), &announcement(2, NOW)).unwrap();
    let Verdict::Respond { reply, .. } = gate.check(&private, NOW) else {
        panic!("the key is gone");
    };
    assert_eq!(reply.status, 401);
}

#[test]
fn configured_keys_are_not_replaced_by_the_snapshot() {
    let pinned = key_spec(KID, &signing_key(3));
    let mut gate = ready_gate(json!({ "keys": [pinned] }));
    let snapshot_signed = format!("Bearer {}", token("alice"));
    let pinned_signed = format!(
        "Bearer {}",
        mint_with(KID, &signing_key(3), claims("alice", None))
    );
    let path = "/v2/team/private/manifests/latest";
    for (case, authorization, forwarded) in [
        (
            "signed by the snapshot's key of a pinned kid",
            &snapshot_signed,
            false,
        ),
        ("signed by the pinned key", &pinned_signed, true),
    ] {
        let headers: [(&str, &[u8]); 1] = [("authorization", authorization.as_bytes())];
        let verdict = gate.check(&head("GET", path, &headers), NOW);
        assert_eq!(matches!(verdict, Verdict::Forward(_)), forwarded, "{case}");
    }
}

#[test]
fn refused_snapshots_leave_the_last_good_one_serving() {
    struct Offer {
        case: &'static str,
        bytes: Vec<u8>,
        generation: u64,
        reason: &'static str,
    }
    let symmetric =
        snapshot().raw_key(json!({"kty": "oct", "k": URL_SAFE_NO_PAD.encode([7_u8; 32])}));
    let mut hs = symmetric.clone();
    if let Some(key) = hs.content.keys.last_mut() {
        key.alg = Algorithm::HS256;
    }
    let mut empty = snapshot();
    empty.content = Content::default();
    let offers = [
        Offer {
            case: "not JSON",
            bytes: b"{".to_vec(),
            generation: 2,
            reason: "malformed",
        },
        Offer {
            case: "older generation",
            bytes: snapshot().bytes(1),
            generation: 1,
            reason: "not_newer",
        },
        Offer {
            case: "an oct key under an asymmetric alg",
            bytes: symmetric.bytes(3),
            generation: 3,
            reason: "invalid",
        },
        Offer {
            case: "an HS256 key",
            bytes: hs.bytes(4),
            generation: 4,
            reason: "invalid",
        },
        Offer {
            case: "a wipe without allow_empty",
            bytes: empty.bytes(5),
            generation: 5,
            reason: "suspiciously_empty",
        },
    ];
    let mut gate = ready_gate(json!({}));
    for offer in offers {
        let err = gate
            .offer(offer.bytes.clone(), &announcement(offer.generation, NOW))
            .unwrap_err();
        assert_eq!(err.reason(), offer.reason, "{}: {err}", offer.case);
        assert_eq!(
            gate.generation(),
            Some(&Generation::new("e1", 1)),
            "{}",
            offer.case
        );
    }
    assert!(matches!(
        gate.check(
            &head("GET", "/v2/library/public/manifests/latest", &[]),
            NOW
        ),
        Verdict::Forward(_)
    ));
}

#[test]
fn outcomes_and_token_failures_are_counted() {
    let mut gate = ready_gate(json!({}));
    let garbage: [(&str, &[u8]); 1] = [("authorization", b"Bearer nope")];
    let private = "/v2/team/private/manifests/latest";
    let _ = gate.check(
        &head("GET", "/v2/library/public/manifests/latest", &[]),
        NOW,
    );
    let _ = gate.check(&head("GET", private, &garbage), NOW);
    let _ = gate.check(&head("GET", private, &garbage), NOW);
    let _ = gate.check(&head("GET", "/v1/_ping", &[]), NOW);
    let _ = gate.internal_error("set header");
    let counts = gate.counts();
    let count = |outcome: Outcome| counts.outcomes[outcome.position()];
    assert_eq!(count(Outcome::Allowed), 1);
    assert_eq!(count(Outcome::Unauthorized), 2);
    assert_eq!(count(Outcome::Answered), 1);
    assert_eq!(count(Outcome::Internal), 1);
    assert_eq!(
        count(Outcome::Invalid),
        0,
        "internal errors are not the client's"
    );
    assert_eq!(counts.token_failures, vec![("bad_format", 2)]);
    assert_eq!(counts.installed, 1);
}

#[test]
fn a_token_valid_within_the_leeway_is_served_from_the_cache() {
    let mut gate = ready_gate(json!({}));
    let late = mint(json!({
        "iss": "registry-gate", "sub": "alice", "aud": "svc", "exp": NOW - 30, "iat": NOW - 300,
    }));
    let authorization = format!("Bearer {late}");
    let headers: [(&str, &[u8]); 1] = [("authorization", authorization.as_bytes())];
    let private = head("GET", "/v2/team/private/manifests/latest", &headers);
    for _ in 0..2 {
        let Verdict::Forward(forward) = gate.check(&private, NOW) else {
            panic!("within the 60 s leeway");
        };
        assert_eq!(forward.identity, "user:alice");
    }
    assert!(matches!(
        gate.check(&private, NOW + 31),
        Verdict::Respond { .. }
    ));
}

#[test]
fn request_head_from_pairs() {
    let pairs: [(&[u8], &[u8]); 6] = [
        (b":method", b"GET"),
        (b":path", b"/v2/"),
        (b"authorization", b"Bearer a"),
        (b"x-http-method-override", b"DELETE"),
        (b"x-registry-gate-identity", b"user:root"),
        (b"docker-distribution-api-version", b"registry/2.0"),
    ];
    let head = RequestHead::from_pairs(pairs, "x-registry-gate-identity");
    assert_eq!(head.method, Some(&b"GET"[..]));
    assert_eq!(head.path, Some(&b"/v2/"[..]));
    assert_eq!(head.authorization, Some(&b"Bearer a"[..]));
    assert!(!head.repeated_authorization);
    assert_eq!(head.method_override, Some("x-http-method-override"));
    assert!(head.identity_header);
    assert_eq!(head.api_version, Some(&b"registry/2.0"[..]));
    let missing = RequestHead::from_pairs([], "x-registry-gate-identity");
    let mut gate = ready_gate(json!({}));
    let Verdict::Respond { reply, outcome, .. } = gate.check(&missing, NOW) else {
        panic!("no :path");
    };
    assert_eq!((reply.status, outcome), (400, Outcome::Invalid));
}

#[test]
fn headers_spelled_like_the_gates_own_are_refused() {
    let mut gate = ready_gate(json!({"client_certificate_header": "ssl-client-s-dn"}));
    let certificate_header = gate.settings.client_certificate_header.clone();
    let rows: [(&str, &[u8], Option<&str>); 8] = [
        (
            "underscores",
            b"x_registry_gate_identity",
            Some("identity header"),
        ),
        (
            "one underscore",
            b"x-registry-gate_identity",
            Some("identity header"),
        ),
        (
            "upper case",
            b"X-Registry-Gate-Identity",
            Some("identity header"),
        ),
        (
            "certificate",
            b"ssl_client_s_dn",
            Some("client certificate header"),
        ),
        (
            "certificate, case",
            b"SSL-CLIENT-S-DN",
            Some("client certificate header"),
        ),
        (
            "the identity header itself: stripped",
            b"x-registry-gate-identity",
            None,
        ),
        (
            "the certificate header itself: read",
            b"ssl-client-s-dn",
            None,
        ),
        ("a longer name", b"x-registry-gate-identity-2", None),
    ];
    for (case, name, lookalike) in rows {
        let pairs: [(&[u8], &[u8]); 3] = [
            (b":method", b"GET"),
            (b":path", b"/v2/library/public/manifests/latest"),
            (name, b"user:admin"),
        ];
        let head = RequestHead::from_pairs_with(
            pairs,
            "x-registry-gate-identity",
            certificate_header.as_deref(),
        );
        assert_eq!(head.lookalike, lookalike, "{case}");
        let verdict = gate.check(&head, NOW);
        match lookalike {
            Some(header) => {
                let Verdict::Respond { reply, outcome, .. } = verdict else {
                    panic!("{case}: forwarded");
                };
                assert_eq!((reply.status, outcome), (400, Outcome::Invalid), "{case}");
                assert!(reply.body.contains(header), "{case}: {}", reply.body);
            }
            None => assert!(
                matches!(verdict, Verdict::Forward(_)),
                "{case}: {verdict:?}"
            ),
        }
    }
    // Without a certificate header configured, its spelling means nothing.
    let pairs: [(&[u8], &[u8]); 1] = [(b"ssl_client_s_dn", b"CN=x")];
    let head = RequestHead::from_pairs(pairs, "x-registry-gate-identity");
    assert_eq!(head.lookalike, None);
    // Method overrides are recognised however they are spelled.
    let pairs: [(&[u8], &[u8]); 1] = [(b"x_http_method_override", b"DELETE")];
    let head = RequestHead::from_pairs(pairs, "x-registry-gate-identity");
    assert_eq!(head.method_override, Some("x-http-method-override"));
}

#[test]
fn pseudo_headers_that_are_not_text_are_refused() {
    let mut gate = ready_gate(json!({}));
    for (case, method, path) in [
        ("path", &b"GET"[..], &b"/v2/team/\xff/manifests/latest"[..]),
        ("method", &b"G\xffT"[..], &b"/v2/"[..]),
    ] {
        let pairs: [(&[u8], &[u8]); 2] = [(b":method", method), (b":path", path)];
        let head = RequestHead::from_pairs(pairs, "x-registry-gate-identity");
        let Verdict::Respond { reply, outcome, .. } = gate.check(&head, NOW) else {
            panic!("{case}: must not be forwarded");
        };
        assert_eq!((reply.status, outcome), (400, Outcome::Invalid), "{case}");
    }
}

const HOST: &str = "8f2b6c3e-1d2a-4c5b-9e7f-0a1b2c3d4e5f";
const HOST_DN: &[u8] = b"O=ACME,CN=8f2b6c3e-1d2a-4c5b-9e7f-0a1b2c3d4e5f";
const OTHER_HOST_DN: &[u8] = b"CN=0000aaaa-1d2a-4c5b-9e7f-0a1b2c3d4e5f,O=ACME";
const DN_HEADER: &str = "ssl-client-s-dn";

/// A gate whose snapshot grants [`HOST`] `team/private`; `extra` configures the certificate
/// source.
fn host_gate(extra: Value) -> Gate {
    let mut fixture = snapshot();
    fixture
        .content
        .hosts
        .insert(HOST.to_string(), vec!["team/private".to_string()]);
    let mut gate = Gate::new(settings(extra));
    let announced = announcement(1, NOW);
    assert!(gate.announced(&announced));
    gate.offer(fixture.bytes(1), &announced).unwrap();
    gate
}

struct CertRow {
    case: &'static str,
    path: &'static str,
    authorization: Option<Vec<u8>>,
    /// Copies of the `ssl-client-s-dn` header the request carries.
    dn_headers: Vec<&'static [u8]>,
    /// What Envoy's `connection.subject_peer_certificate` holds.
    peer: Option<&'static [u8]>,
    want: Want,
}

fn cert_row(case: &'static str, path: &'static str, want: Want) -> CertRow {
    CertRow {
        case,
        path,
        authorization: None,
        dn_headers: vec![],
        peer: None,
        want,
    }
}

impl CertRow {
    fn dn(mut self, value: &'static [u8]) -> CertRow {
        self.dn_headers.push(value);
        self
    }
    fn peer(mut self, value: &'static [u8]) -> CertRow {
        self.peer = Some(value);
        self
    }
    fn auth(mut self, authorization: Option<Vec<u8>>) -> CertRow {
        self.authorization = authorization;
        self
    }
}

/// Runs `rows` through a gate configured by `extra`: the verdict, that every forwarded
/// request drops the DN header it carried, and that the glue is asked to read the peer
/// certificate only for requests without `Authorization` on the connection source.
fn check_cert_rows(extra: Value, rows: Vec<CertRow>) {
    let mut gate = host_gate(extra);
    let connection = gate.settings.client_certificate == CertificateSource::Connection;
    for row in rows {
        let mut pairs: Vec<(&[u8], &[u8])> =
            vec![(b":method", b"GET"), (b":path", row.path.as_bytes())];
        if let Some(authorization) = &row.authorization {
            pairs.push((b"authorization", authorization));
        }
        for value in &row.dn_headers {
            pairs.push((DN_HEADER.as_bytes(), value));
        }
        let certificate_header = gate.settings.client_certificate_header.clone();
        let mut head = RequestHead::from_pairs_with(
            pairs,
            "x-registry-gate-identity",
            certificate_header.as_deref(),
        );
        assert_eq!(
            gate.wants_peer_certificate(&head),
            connection && row.authorization.is_none(),
            "{}: peer certificate read",
            row.case
        );
        if gate.wants_peer_certificate(&head) {
            head.peer_certificate = row.peer;
        }
        match (row.want, gate.check(&head, NOW)) {
            (Want::Forward(identity), Verdict::Forward(forward)) => {
                assert_eq!(forward.identity, identity, "{}", row.case);
                assert_eq!(
                    forward.remove_client_certificate_header,
                    !row.dn_headers.is_empty() && certificate_header.is_some(),
                    "{}: DN header stripped",
                    row.case
                );
            }
            (
                Want::Reply {
                    status,
                    code,
                    challenge,
                },
                Verdict::Respond { reply, .. },
            ) => {
                assert_eq!(reply.status, status, "{}: {reply:?}", row.case);
                let body: Value = serde_json::from_str(&reply.body).unwrap();
                match code {
                    Some(code) => assert_eq!(body["errors"][0]["code"], code, "{}", row.case),
                    // The catalog: the host's grants and the public repositories.
                    None => assert_eq!(
                        body["repositories"],
                        json!(["library/public", "team/private"]),
                        "{}",
                        row.case
                    ),
                }
                if let Some(fragment) = challenge {
                    let header = reply.header("www-authenticate").unwrap_or_default();
                    assert!(header.contains(fragment), "{}: {header}", row.case);
                }
            }
            (want, got) => panic!("{}: wanted {want:?}, got {got:?}", row.case),
        }
    }
}

/// The certificate path's refusal: 401 `unauthorized` with the usual challenge.
fn host_unauthorized(scope: &'static str) -> Want {
    challenge(scope)
}

const HOST_LABEL: &str = "host:8f2b6c3e-1d2a-4c5b-9e7f-0a1b2c3d4e5f";
const PRIVATE: &str = "/v2/team/private/manifests/latest";
const OTHER: &str = "/v2/team/other/manifests/latest";
const PUBLIC: &str = "/v2/library/public/manifests/latest";

#[test]
fn content_hosts_by_connection_certificate() {
    let alice = token("alice");
    let bob = token("bob");
    check_cert_rows(
        json!({"client_certificate_from_connection": true}),
        vec![
            cert_row("host granted", PRIVATE, Want::Forward(HOST_LABEL)).peer(HOST_DN),
            cert_row(
                "host not granted",
                OTHER,
                host_unauthorized("repository:team/other:pull"),
            )
            .peer(HOST_DN),
            cert_row("host, public repository", PUBLIC, Want::Forward(HOST_LABEL)).peer(HOST_DN),
            cert_row("host, ping", "/v2/", Want::Forward(HOST_LABEL)).peer(HOST_DN),
            cert_row(
                "host, catalog: its grants and public",
                "/v2/_catalog",
                answered(),
            )
            .peer(HOST_DN),
            cert_row(
                "unknown host: no grants until the next sync",
                PRIVATE,
                host_unauthorized("repository:team/private:pull"),
            )
            .peer(OTHER_HOST_DN),
            cert_row(
                "unknown host, public repository",
                PUBLIC,
                Want::Forward("host:0000aaaa-1d2a-4c5b-9e7f-0a1b2c3d4e5f"),
            )
            .peer(OTHER_HOST_DN),
            cert_row(
                "token beats certificate",
                PRIVATE,
                Want::Forward("user:alice"),
            )
            .peer(HOST_DN)
            .auth(bearer(&alice)),
            cert_row(
                "token beats certificate, also when refused",
                PRIVATE,
                reply(404, "NAME_UNKNOWN"),
            )
            .peer(HOST_DN)
            .auth(bearer(&bob)),
            cert_row(
                "no certificate: anonymous",
                PRIVATE,
                challenge("repository:team/private:pull"),
            ),
            cert_row(
                "malformed DN: no certificate",
                PRIVATE,
                challenge("repository:team/private:pull"),
            )
            .peer(b"O=ACME"),
            cert_row(
                "malformed DN, public repository",
                PUBLIC,
                Want::Forward("anonymous"),
            )
            .peer(b"CN=a,CN=b"),
            cert_row(
                "DN header ignored without trust",
                PRIVATE,
                challenge("repository:team/private:pull"),
            )
            .dn(HOST_DN),
        ],
    );
}

#[test]
fn content_hosts_by_trusted_header() {
    let alice = token("alice");
    check_cert_rows(
        json!({"client_certificate_header": "SSL-Client-S-DN", "trust_client_certificate_header": true}),
        vec![
            cert_row("trusted header used", PRIVATE, Want::Forward(HOST_LABEL)).dn(HOST_DN),
            cert_row("legacy DN form", PRIVATE, Want::Forward(HOST_LABEL))
                .dn(b"/CN=8f2b6c3e-1d2a-4c5b-9e7f-0a1b2c3d4e5f/O=ACME"),
            cert_row(
                "legacy DN form, CN after O: ambiguous",
                PRIVATE,
                challenge("repository:team/private:pull"),
            )
            .dn(b"/O=ACME/OU=x/CN=8f2b6c3e-1d2a-4c5b-9e7f-0a1b2c3d4e5f"),
            cert_row(
                "host not granted",
                OTHER,
                host_unauthorized("repository:team/other:pull"),
            )
            .dn(HOST_DN),
            cert_row("token beats header", PRIVATE, Want::Forward("user:alice"))
                .dn(OTHER_HOST_DN)
                .auth(bearer(&alice)),
            cert_row(
                "token route strips the header",
                "/v2/token",
                Want::Forward("anonymous"),
            )
            .dn(HOST_DN),
            cert_row(
                "non-UTF-8 DN: no certificate",
                PRIVATE,
                challenge("repository:team/private:pull"),
            )
            .dn(b"CN=\xff"),
            cert_row(
                "repeated header: no certificate",
                PRIVATE,
                challenge("repository:team/private:pull"),
            )
            .dn(HOST_DN)
            .dn(HOST_DN),
            cert_row(
                "malformed DN, public repository, stripped",
                PUBLIC,
                Want::Forward("anonymous"),
            )
            .dn(b"garbage"),
            cert_row(
                "peer certificate is not this source",
                PRIVATE,
                challenge("repository:team/private:pull"),
            )
            .peer(HOST_DN),
        ],
    );
}

#[test]
fn untrusted_certificate_header_is_stripped_and_ignored() {
    check_cert_rows(
        json!({"client_certificate_header": "ssl-client-s-dn"}),
        vec![
            cert_row(
                "untrusted header ignored",
                PRIVATE,
                challenge("repository:team/private:pull"),
            )
            .dn(HOST_DN),
            cert_row(
                "untrusted header stripped",
                PUBLIC,
                Want::Forward("anonymous"),
            )
            .dn(HOST_DN),
            cert_row(
                "no header: nothing to strip",
                PUBLIC,
                Want::Forward("anonymous"),
            ),
        ],
    );
}

#[test]
fn the_certificate_path_refusal_says_unauthorized() {
    let mut gate = host_gate(json!({"client_certificate_from_connection": true}));
    let pairs: [(&[u8], &[u8]); 2] = [(b":method", b"GET"), (b":path", OTHER.as_bytes())];
    let mut head = RequestHead::from_pairs(pairs, "x-registry-gate-identity");
    head.peer_certificate = Some(HOST_DN);
    let Verdict::Respond { reply, outcome, .. } = gate.check(&head, NOW) else {
        panic!("must be refused");
    };
    assert_eq!((reply.status, outcome), (401, Outcome::Unauthorized));
    let body: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED");
    assert_eq!(body["errors"][0]["message"], "unauthorized");
}

#[test]
fn unreadable_subjects_are_counted() {
    let mut gate = host_gate(json!({"client_certificate_from_connection": true}));
    for subject in [&b"O=ACME"[..], b"CN=a,CN=b", b"O=ACME", HOST_DN] {
        let pairs: [(&[u8], &[u8]); 2] = [(b":method", b"GET"), (b":path", PUBLIC.as_bytes())];
        let mut head = RequestHead::from_pairs(pairs, "x-registry-gate-identity");
        head.peer_certificate = Some(subject);
        assert!(matches!(gate.check(&head, NOW), Verdict::Forward(_)));
    }
    assert_eq!(
        gate.counts().certificate_failures,
        [("no_cn", 2), ("many_cn", 1)]
    );
}

/// The Flatpak index the upstream answers in these tests: every repository of [`snapshot`],
/// and one the snapshot does not know.
fn flatpak_index_body() -> Vec<u8> {
    let entry = |name: &str| json!({"Name": name, "Images": [{"Tags": ["latest"]}], "Lists": []});
    serde_json::to_vec(&json!({
        "Registry": "https://pulp.test/",
        "Results": [entry("library/public"), entry("team/private"), entry("team/other"), entry("nobody/knows")]
    }))
    .unwrap()
}

fn names(body: &[u8]) -> Vec<String> {
    let body: Value = serde_json::from_slice(body).unwrap();
    body["Results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Name"].as_str().unwrap().to_owned())
        .collect()
}

/// The caller a Flatpak index request is forwarded for.
fn flatpak_caller(gate: &mut Gate, authorization: Option<&str>) -> Identity {
    let headers: Vec<(&str, &[u8])> = authorization
        .map(|a| vec![("authorization", a.as_bytes())])
        .unwrap_or_default();
    let path = "/index/static?label:org.flatpak.ref:exists=1&architecture=amd64";
    match gate.check(&head("GET", path, &headers), NOW) {
        Verdict::Forward(forward) => forward.filter_for.expect("the index is filtered"),
        Verdict::Respond { reply, .. } => panic!("the index must be forwarded: {reply:?}"),
    }
}

#[test]
fn the_flatpak_index_is_filtered_to_the_caller() {
    let mut gate = ready_gate(json!({}));
    let alice = format!("Bearer {}", token("alice"));
    let bob = format!("Bearer {}", token("bob"));
    let narrow = format!(
        "Bearer {}",
        mint(claims("alice", Some(pull_access("team/other"))))
    );
    let rows: [(&str, Option<&str>, &[&str]); 4] = [
        ("anonymous sees public only", None, &["library/public"]),
        (
            "alice sees public and her grant",
            Some(&alice),
            &["library/public", "team/private"],
        ),
        ("bob has no grant", Some(&bob), &["library/public"]),
        (
            "a token whose access claim misses the grant",
            Some(&narrow),
            &["library/public"],
        ),
    ];
    for (case, authorization, visible) in rows {
        let caller = flatpak_caller(&mut gate, authorization);
        assert_eq!(
            gate.flatpak_response_head(Some(b"200"), None, Some(100)),
            Ok(Plan::Filter),
            "{case}"
        );
        let upstream: [(&str, &[u8]); 3] = [
            ("content-type", b"application/json; charset=utf-8"),
            ("etag", b"\"unfiltered\""),
            ("cache-control", b"max-age=60"),
        ];
        let reply = gate.filter_flatpak_index(&caller, &flatpak_index_body(), upstream, NOW);
        assert_eq!(reply.status, 200, "{case}");
        assert_eq!(names(reply.body.as_bytes()), *visible, "{case}");
        assert_eq!(
            reply.headers,
            [
                (
                    "content-type".to_string(),
                    "application/json; charset=utf-8".to_string()
                ),
                ("cache-control".to_string(), "max-age=60".to_string())
            ],
            "{case}: the upstream's kept headers, no validator"
        );
    }
    assert_eq!(
        gate.counts().flatpak_index,
        vec![("filtered", 4)],
        "every answer counted"
    );
}

#[test]
fn other_routes_are_not_filtered() {
    let mut gate = ready_gate(json!({}));
    let Verdict::Forward(forward) =
        gate.check(&head("GET", "/v2/library/public/tags/list", &[]), NOW)
    else {
        panic!("public pull is forwarded");
    };
    assert_eq!(forward.filter_for, None);
}

#[test]
fn flatpak_answers_that_cannot_be_filtered_fail_closed() {
    let mut gate = ready_gate(json!({"flatpak_index_max_bytes": 2048}));
    let caller = flatpak_caller(&mut gate, None);
    assert_eq!(
        gate.flatpak_response_head(Some(b"404"), None, Some(999999)),
        Ok(Plan::PassThrough),
        "upstream errors pass"
    );
    let status = |result: Result<Plan, Reply>| result.map_err(|reply| reply.status);
    assert_eq!(
        status(gate.flatpak_response_head(Some(b"200"), Some(b"gzip"), None)),
        Err(502)
    );
    assert_eq!(
        status(gate.flatpak_response_head(Some(b"304"), None, None)),
        Err(502)
    );
    assert_eq!(
        status(gate.flatpak_response_head(Some(b"200"), None, Some(2049))),
        Err(502),
        "a declared length over the bound"
    );
    assert_eq!(
        gate.flatpak_response_head(Some(b"200"), None, Some(2048)),
        Ok(Plan::Filter)
    );
    assert_eq!(gate.flatpak_buffered(2048), Ok(()));
    assert_eq!(gate.flatpak_buffered(2049).map_err(|r| r.status), Err(502));
    let no_results = gate.filter_flatpak_index(&caller, br#"{"Registry":"x"}"#, [], NOW);
    assert_eq!(no_results.status, 502);
    let stale = gate.filter_flatpak_index(&caller, &flatpak_index_body(), [], NOW + 601);
    assert_eq!(stale.status, 503, "no fit snapshot: no index");
    let mut counts = gate.counts().flatpak_index.clone();
    counts.sort_unstable();
    assert_eq!(
        counts,
        vec![
            ("encoded", 1),
            ("no_results", 1),
            ("passed_through", 1),
            ("too_large", 2),
            ("unexpected_status", 1),
            ("unready", 1),
        ]
    );
}

#[test]
fn a_revocation_between_request_and_answer_applies_to_the_answer() {
    let mut gate = ready_gate(json!({}));
    let alice = format!("Bearer {}", token("alice"));
    let caller = flatpak_caller(&mut gate, Some(&alice));
    let second = announcement(2, NOW);
    assert!(gate.announced(&second));
    gate.offer(snapshot().revoke("alice", "team/private").bytes(2), &second)
        .unwrap();
    let reply = gate.filter_flatpak_index(&caller, &flatpak_index_body(), [], NOW);
    assert_eq!(names(reply.body.as_bytes()), ["library/public"]);
    assert_eq!(
        reply.header("content-type"),
        Some("application/json"),
        "the default type"
    );
}

#[test]
fn refusals_name_the_caller_once_it_is_known() {
    let mut gate = ready_gate(json!({}));
    let bob = format!("Bearer {}", token("bob"));
    let with_bob: [(&str, &[u8]); 1] = [("authorization", bob.as_bytes())];
    let forged: [(&str, &[u8]); 1] = [("authorization", b"Bearer not.a.token")];
    for (case, headers, want) in [
        ("no grant", &with_bob[..], Some("user:bob")),
        ("anonymous, private", &[][..], Some("anonymous")),
        ("bad token", &forged[..], None),
    ] {
        let Verdict::Respond { identity, .. } = gate.check(&head("GET", PRIVATE, headers), NOW)
        else {
            panic!("{case}: forwarded");
        };
        assert_eq!(identity.as_deref(), want, "{case}");
    }
}

#[test]
fn an_adopting_gate_decides_from_the_snapshot_its_source_installed() {
    let mut source = ready_gate(json!({}));
    let mut adopter = Gate::new(settings(json!({})));
    let alice = format!("Bearer {}", token("alice"));
    let headers: [(&str, &[u8]); 1] = [("authorization", alice.as_bytes())];
    let private = head("GET", PRIVATE, &headers);
    let Verdict::Respond { outcome, .. } = adopter.check(&private, NOW) else {
        panic!("nothing adopted yet: no snapshot");
    };
    assert_eq!(outcome, Outcome::Unavailable);

    assert!(adopter.adopt(&source), "the first snapshot is taken over");
    assert_eq!(adopter.generation(), source.generation());
    assert!(matches!(adopter.check(&private, NOW), Verdict::Forward(_)));
    assert!(
        !adopter.adopt(&source),
        "the same snapshot again: nothing new"
    );

    // A confirmation of the source's generation reaches the adopter.
    let later = NOW + 20;
    assert!(!source.announced(&announcement(1, later)));
    adopter.adopt(&source);
    assert_eq!(adopter.unconfirmed_secs(later), 0);

    // A revocation in the source's next generation applies to the adopter's cached caller.
    let second = announcement(2, later);
    assert!(source.announced(&second));
    source
        .offer(snapshot().revoke("alice", "team/private").bytes(2), &second)
        .unwrap();
    assert!(adopter.adopt(&source));
    let Verdict::Respond { reply, .. } = adopter.check(&private, later) else {
        panic!("revoked in generation 2");
    };
    assert_eq!(reply.status, 404);
    assert_eq!(adopter.counts().installed, 2);
}

#[test]
fn an_adopting_gate_drops_cached_callers_when_the_keys_change() {
    let mut source = ready_gate(json!({}));
    let mut adopter = Gate::new(settings(json!({})));
    adopter.adopt(&source);
    let alice = format!("Bearer {}", token("alice"));
    let headers: [(&str, &[u8]); 1] = [("authorization", alice.as_bytes())];
    let private = head("GET", PRIVATE, &headers);
    assert!(matches!(adopter.check(&private, NOW), Verdict::Forward(_)));
    let rotated = snapshot().keys(vec![key_spec("gate-2", &signing_key(2))]);
    source
        .offer(rotated.bytes(2), &announcement(2, NOW))
        .unwrap();
    adopter.adopt(&source);
    let Verdict::Respond { reply, .. } = adopter.check(&private, NOW) else {
        panic!("the key is gone: the cached caller must not serve");
    };
    assert_eq!(reply.status, 401);
}

#[test]
fn a_gate_given_publisher_keys_checks_signatures_itself() {
    let publisher = registry_gate_index::Signer::from_seed([5; 32]);
    let stranger = registry_gate_index::Signer::from_seed([6; 32]);
    let signed_by = |signer: &registry_gate_index::Signer, generation| {
        let mut bytes = snapshot().bytes(generation);
        signer.sign(&mut bytes).unwrap();
        bytes
    };
    let mut gate = Gate::new(settings(
        json!({"publisher_keys": [publisher.public().to_string()]}),
    ));
    for (case, bytes, reason) in [
        ("unsigned", snapshot().bytes(1), "unsigned"),
        (
            "another publisher",
            signed_by(&stranger, 2),
            "unknown_publisher",
        ),
    ] {
        // Even when the announcement names the bytes, a gate with publisher keys checks.
        let named = naming(&bytes, NOW);
        let err = gate.offer(bytes, &named).unwrap_err();
        assert_eq!(err.reason(), reason, "{case}: {err}");
        assert_eq!(gate.generation(), None, "{case}");
    }
    gate.offer(signed_by(&publisher, 3), &announcement(3, NOW))
        .unwrap();
    assert_eq!(gate.generation(), Some(&Generation::new("e1", 3)));
    assert_eq!(
        gate.counts().rejected,
        vec![("unsigned", 1), ("unknown_publisher", 1)]
    );
}

#[test]
fn bytes_the_announcement_names_are_trusted_and_others_validated_in_full() {
    // A repository name no full validation accepts, with the checksum recomputed (what only
    // a broken fetcher could put in shared data).
    let good = snapshot().bytes(2);
    let mut broken = good.clone();
    let at = broken
        .windows(b"team/private".len())
        .position(|w| w == b"team/private")
        .unwrap();
    broken[at] = b'T';
    registry_gate_index::layout::seal(&mut broken);
    let sum = registry_gate_index::layout::carried_checksum(&broken).unwrap();

    // Not named (the announcement names the good bytes, or none): validated in full.
    for announced in [naming(&good, NOW), announcement(2, NOW)] {
        let mut gate = Gate::new(settings(json!({})));
        let err = gate.offer(broken.clone(), &announced).unwrap_err();
        assert_eq!(err.reason(), "invalid", "{announced:?}: {err}");
    }
    // Named: the fetcher validated these very bytes, so only their identity and shape are
    // checked (and every query stays bounds-checked).
    let mut gate = Gate::new(settings(json!({})));
    let named = Announcement {
        checksum: Some(sum),
        ..naming(&good, NOW)
    };
    assert_eq!(
        gate.offer(broken, &named).unwrap(),
        Generation::new("e1", 2)
    );
    // The good bytes, named, install and decide as after a full validation.
    let mut gate = Gate::new(settings(json!({})));
    gate.offer(good.clone(), &naming(&good, NOW)).unwrap();
    let mut full = Gate::new(settings(json!({})));
    full.offer(good, &announcement(2, NOW)).unwrap();
    assert_eq!(gate.generation(), full.generation());
    for user in ["alice", "bob"] {
        let authorization = format!("Bearer {}", token(user));
        let headers: [(&str, &[u8]); 1] = [("authorization", authorization.as_bytes())];
        for repository in ["library/public", "team/private", "team/other", "nope/x"] {
            let path = format!("/v2/{repository}/manifests/latest");
            assert_eq!(
                gate.check(&head("GET", &path, &headers), NOW),
                full.check(&head("GET", &path, &headers), NOW),
                "{user} pulling {repository}"
            );
        }
    }
}

/// The signatures a gate has checked, over every algorithm and path.
fn signatures_checked(gate: &Gate) -> u64 {
    gate.counts().signatures.iter().map(|(_, n)| n).sum()
}

#[test]
fn a_token_verified_by_one_gate_is_taken_from_the_shared_callers_by_another() {
    let source = ready_gate(json!({}));
    let shared = Arc::new(SharedCallers::new(64));
    let mut gates: Vec<Gate> = (0..2)
        .map(|_| {
            let mut gate = Gate::new(settings(json!({})));
            gate.share_callers(Arc::clone(&shared));
            gate.adopt(&source);
            gate
        })
        .collect();
    let alice = format!("Bearer {}", token("alice"));
    let headers: [(&str, &[u8]); 1] = [("authorization", alice.as_bytes())];
    let private = head("GET", PRIVATE, &headers);
    for gate in &mut gates {
        assert!(matches!(gate.check(&private, NOW), Verdict::Forward(_)));
    }
    let [first, second] = &gates[..] else {
        unreachable!()
    };
    assert_eq!(signatures_checked(first), 1, "the first gate verifies");
    assert_eq!(signatures_checked(second), 0, "the second takes it over");
    assert_eq!(second.counts().shared_callers, 1);
    // A token that fails verification is shared by nobody: each gate refuses it itself.
    let forged = format!(
        "Bearer {}",
        mint_with(KID, &signing_key(9), claims("alice", None))
    );
    let forged_headers: [(&str, &[u8]); 1] = [("authorization", forged.as_bytes())];
    for gate in &mut gates {
        let Verdict::Respond { reply, .. } =
            gate.check(&head("GET", PRIVATE, &forged_headers), NOW)
        else {
            panic!("a forged token forwarded");
        };
        assert_eq!(reply.status, 401);
    }
    assert_eq!(gates[1].counts().shared_callers, 1);
}

#[test]
fn shared_callers_verified_under_other_keys_are_not_taken_over() {
    let mut source = ready_gate(json!({}));
    let shared = Arc::new(SharedCallers::new(64));
    let mut early = Gate::new(settings(json!({})));
    let mut late = Gate::new(settings(json!({})));
    for gate in [&mut early, &mut late] {
        gate.share_callers(Arc::clone(&shared));
        gate.adopt(&source);
    }
    // A new snapshot with the same keys keeps the ring: shared callers still serve.
    source
        .offer(snapshot().bytes(2), &announcement(2, NOW))
        .unwrap();
    early.adopt(&source);
    let alice = format!("Bearer {}", token("alice"));
    let headers: [(&str, &[u8]); 1] = [("authorization", alice.as_bytes())];
    let private = head("GET", PRIVATE, &headers);
    assert!(matches!(early.check(&private, NOW), Verdict::Forward(_)));
    late.adopt(&source);
    assert!(matches!(late.check(&private, NOW), Verdict::Forward(_)));
    assert_eq!(late.counts().shared_callers, 1, "same keys: taken over");

    // The key is rotated out. A gate still on the old keys verifies and shares alice's
    // token; a gate on the new keys must not take that caller over.
    let mut rotated_source = ready_gate(json!({}));
    let rotated = snapshot().keys(vec![key_spec("gate-2", &signing_key(2))]);
    rotated_source
        .offer(rotated.bytes(2), &announcement(2, NOW))
        .unwrap();
    let mut old_keys = Gate::new(settings(json!({})));
    let mut new_keys = Gate::new(settings(json!({})));
    let fresh = Arc::new(SharedCallers::new(64));
    old_keys.share_callers(Arc::clone(&fresh));
    new_keys.share_callers(Arc::clone(&fresh));
    old_keys.adopt(&source);
    new_keys.adopt(&rotated_source);
    assert!(matches!(old_keys.check(&private, NOW), Verdict::Forward(_)));
    let Verdict::Respond { reply, .. } = new_keys.check(&private, NOW) else {
        panic!("a caller verified under a removed key served");
    };
    assert_eq!(reply.status, 401);
    assert_eq!(new_keys.counts().shared_callers, 0);
}
