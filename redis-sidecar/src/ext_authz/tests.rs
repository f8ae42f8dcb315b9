//! Unit tests of the ext_authz translation: the gate's verdicts as `http_service` answers,
//! refusals identical to the filter's, content answers through the answer route, the Flatpak
//! index refused, new generations and peer certificates.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::http::{HeaderName, HeaderValue};
use registry_gate_core::identity::Principal;
use registry_gate_core::scope::AccessEntry;
use registry_gate_core::snapshot::{self, Content, Repository, Stamp};
use serde_json::{json, Value};

use super::*;
use crate::keys::{KeyAlgorithm, SigningKey};
use crate::token::Minter;

const HOST: &str = "6a1f2c3d-0000-4000-8000-000000000001";

/// The publisher whose signatures the check accepts.
fn publisher() -> Arc<registry_gate_index::Signer> {
    Arc::new(registry_gate_index::Signer::from_seed([11; 32]))
}

struct Fixture {
    key: SigningKey,
    settings: Settings,
    now: SystemTime,
}

fn fixture(extra: Value) -> Fixture {
    let mut config = json!({
        "issuer": "registry-gate",
        "service": "registry-gate",
        "realm": "https://gw.test/v2/token",
        "retry_after_secs": 7,
        "client_certificate_from_connection": true,
        "publisher_keys": [publisher().public().to_string()],
    });
    for (name, value) in extra.as_object().unwrap() {
        config[name] = value.clone();
    }
    Fixture {
        key: SigningKey::generate(KeyAlgorithm::default()).unwrap(),
        settings: Settings::from_json(config.to_string().as_bytes()).unwrap(),
        now: SystemTime::now(),
    }
}

impl Fixture {
    fn unix(&self) -> u64 {
        unix_seconds(self.now)
    }

    /// Generation `generation` of: `library/public` public, `team/private` and `team/other`
    /// private, alice granted `team/private` unless `revoked`, the host granted
    /// `team/private`, with this fixture's key.
    fn current(&self, generation: u64, revoked: bool) -> Current {
        let alice = if revoked {
            vec![]
        } else {
            vec!["team/private".to_owned()]
        };
        let content = Content {
            repositories: vec![
                repository("library/public", false),
                repository("team/private", true),
                repository("team/other", true),
                repository("apps/flatpak", true),
            ],
            users: BTreeMap::from([("alice".to_owned(), alice), ("bob".to_owned(), vec![])]),
            hosts: BTreeMap::from([(HOST.to_owned(), vec!["team/private".to_owned()])]),
            keys: vec![self.key.key_spec()],
            ..Content::default()
        };
        let stamp = Stamp {
            epoch: "e1".to_owned(),
            generation,
            published_at: self.unix(),
            producer: "test".to_owned(),
            allow_empty: false,
        };
        let mut body = snapshot::build_index(&content, &stamp).unwrap();
        publisher().sign(&mut body).unwrap();
        Current::decode(Bytes::from(body), &publisher()).unwrap()
    }

    fn token(&self, user: &str, repository: &str) -> String {
        self.token_for(user, "repository", repository, "pull")
    }

    fn token_for(&self, user: &str, resource_type: &str, name: &str, action: &str) -> String {
        let minter = Minter::new(
            self.key.clone(),
            "registry-gate".to_owned(),
            "registry-gate".to_owned(),
            Duration::from_secs(300),
        );
        let access = vec![AccessEntry {
            resource_type: resource_type.to_owned(),
            name: name.to_owned(),
            actions: vec![action.to_owned()],
        }];
        minter
            .mint(&Principal::User(user.to_owned()), access, self.now)
            .unwrap()
            .token
    }

    /// Gates with generation 1 installed.
    fn ready(&self) -> ExtAuthz {
        let gates = ExtAuthz::with_shards(self.settings.clone(), 3);
        assert_eq!(gates.offer(&self.current(1, false), self.unix()), Some(1));
        gates
    }

    /// A gate of the filter itself, with the same generation 1.
    fn filter(&self) -> Gate {
        let mut gate = Gate::new(self.settings.clone());
        let current = self.current(1, false);
        let announcement = Announcement {
            epoch: "e1".to_owned(),
            generation: 1,
            confirmed_at: self.unix(),
            checksum: None,
        };
        assert!(gate.announced(&announcement));
        gate.offer(current.body.to_vec(), &announcement).unwrap();
        gate
    }
}

fn repository(name: &str, auth_required: bool) -> Repository {
    Repository {
        name: name.to_owned(),
        auth_required,
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn check(
    gates: &ExtAuthz,
    method: &str,
    path: &str,
    pairs: &[(&str, &str)],
    now: u64,
) -> (Reply, Checked) {
    gates.check(method.as_bytes(), path.as_bytes(), &headers(pairs), now)
}

fn error_code(reply: &Reply) -> String {
    let body: Value = serde_json::from_str(&reply.body).unwrap();
    body["errors"][0]["code"].as_str().unwrap().to_owned()
}

#[test]
fn before_any_snapshot_the_check_answers_the_filters_503() {
    let fixture = fixture(json!({}));
    let gates = ExtAuthz::with_shards(fixture.settings.clone(), 2);
    let (reply, checked) = check(
        &gates,
        "GET",
        "/v2/library/public/manifests/latest",
        &[],
        fixture.unix(),
    );
    assert_eq!(reply.status, 503);
    assert_eq!(error_code(&reply), "UNAVAILABLE");
    assert_eq!(reply.header("retry-after"), Some("7"));
    assert_eq!(checked, Checked::Gate(Outcome::Unavailable));
    assert_eq!(gates.generation(), None);
}

#[test]
fn an_allowed_request_sets_the_identity_and_removes_what_the_upstream_must_not_see() {
    let fixture = fixture(json!({ "client_certificate_header": "ssl-client-s-dn" }));
    let gates = fixture.ready();
    let bearer = format!("Bearer {}", fixture.token("alice", "team/private"));
    struct Row {
        case: &'static str,
        path: &'static str,
        headers: Vec<(&'static str, String)>,
        identity: &'static str,
        removed: &'static str,
    }
    let rows = [
        Row {
            case: "granted user",
            path: "/v2/team/private/manifests/latest",
            headers: vec![("authorization", bearer.clone())],
            identity: "user:alice",
            removed: "x-registry-gate-answer,authorization",
        },
        Row {
            case: "granted user forging the identity and a certificate subject",
            path: "/v2/team/private/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000",
            headers: vec![
                ("authorization", bearer.clone()),
                ("x-registry-gate-identity", "user:root".to_owned()),
                ("ssl-client-s-dn", format!("CN={HOST}")),
            ],
            identity: "user:alice",
            removed: "x-registry-gate-answer,authorization,ssl-client-s-dn",
        },
        Row {
            case: "anonymous public pull",
            path: "/v2/library/public/manifests/latest",
            headers: vec![],
            identity: "anonymous",
            removed: "x-registry-gate-answer,authorization",
        },
        Row {
            case: "a login keeps its credentials for the token endpoint",
            path: "/v2/token?service=registry-gate",
            headers: vec![("authorization", "Basic YWxpY2U6cHc=".to_owned())],
            identity: "anonymous",
            removed: "x-registry-gate-answer",
        },
        Row {
            case: "a content host named by its verified certificate",
            path: "/v2/team/private/manifests/latest",
            headers: vec![(PEER_SUBJECT_HEADER, format!("CN={HOST},O=org"))],
            identity: "host:6a1f2c3d-0000-4000-8000-000000000001",
            removed: "x-registry-gate-answer,authorization",
        },
    ];
    for row in rows {
        let pairs: Vec<(&str, &str)> = row.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let (reply, checked) = check(&gates, "GET", row.path, &pairs, fixture.unix());
        assert_eq!(
            (reply.status, checked),
            (200, Checked::Gate(Outcome::Allowed)),
            "{}: {reply:?}",
            row.case
        );
        assert_eq!(
            reply.header("x-registry-gate-identity"),
            Some(row.identity),
            "{}",
            row.case
        );
        assert_eq!(
            reply.header(HEADERS_TO_REMOVE),
            Some(row.removed),
            "{}",
            row.case
        );
        assert!(reply.body.is_empty(), "{}", row.case);
    }
}

#[test]
fn refusals_are_the_filters_own_replies() {
    let fixture = fixture(json!({}));
    let gates = fixture.ready();
    let mut filter = fixture.filter();
    let alice = format!("Bearer {}", fixture.token("alice", "team/private"));
    let bob = format!("Bearer {}", fixture.token("bob", "team/private"));
    struct Refused<'a> {
        case: &'static str,
        method: &'static str,
        path: &'static str,
        headers: Vec<(&'static str, &'a str)>,
        status: u16,
        code: &'static str,
    }
    let rows = [
        Refused {
            case: "anonymous, private",
            method: "GET",
            path: "/v2/team/private/manifests/latest",
            headers: vec![],
            status: 401,
            code: "UNAUTHORIZED",
        },
        Refused {
            case: "no grant",
            method: "GET",
            path: "/v2/team/private/manifests/latest",
            headers: vec![("authorization", &bob)],
            status: 404,
            code: "NAME_UNKNOWN",
        },
        Refused {
            case: "unknown repository",
            method: "GET",
            path: "/v2/team/other/manifests/latest",
            headers: vec![("authorization", &alice)],
            status: 404,
            code: "NAME_UNKNOWN",
        },
        Refused {
            case: "malformed token",
            method: "GET",
            path: "/v2/team/private/manifests/latest",
            headers: vec![("authorization", "Bearer not.a.jwt")],
            status: 401,
            code: "UNAUTHORIZED",
        },
        Refused {
            case: "push",
            method: "PUT",
            path: "/v2/team/private/manifests/latest",
            headers: vec![("authorization", &alice)],
            status: 405,
            code: "UNSUPPORTED",
        },
        Refused {
            case: "bad name",
            method: "GET",
            path: "/v2/Team/private/manifests/latest",
            headers: vec![],
            status: 400,
            code: "NAME_INVALID",
        },
        Refused {
            case: "method override",
            method: "GET",
            path: "/v2/library/public/manifests/latest",
            headers: vec![("x-http-method-override", "DELETE")],
            status: 400,
            code: "UNSUPPORTED",
        },
    ];
    for Refused {
        case,
        method,
        path,
        headers: pairs,
        status,
        code,
    } in rows
    {
        let (reply, checked) = check(&gates, method, path, &pairs, fixture.unix());
        assert_eq!(
            (reply.status, error_code(&reply).as_str()),
            (status, code),
            "{case}: {reply:?}"
        );
        let map = headers(&pairs);
        let head_pairs = [
            (&b":method"[..], method.as_bytes()),
            (&b":path"[..], path.as_bytes()),
        ]
        .into_iter()
        .chain(
            map.iter()
                .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())),
        );
        let head = RequestHead::from_pairs(head_pairs, "x-registry-gate-identity");
        let Verdict::Respond {
            reply: filters,
            outcome,
            ..
        } = filter.check(&head, fixture.unix())
        else {
            panic!("{case}: the filter forwards it");
        };
        assert_eq!(reply, filters, "{case}: the check's reply is the filter's");
        assert_eq!(checked, Checked::Gate(outcome), "{case}");
        if status == 401 {
            let challenge = reply.header("www-authenticate").unwrap();
            assert!(
                challenge.starts_with("Bearer realm=\"https://gw.test/v2/token\""),
                "{case}: {challenge}"
            );
        }
    }
}

#[test]
fn content_the_gate_answers_goes_through_the_answer_route() {
    let fixture = fixture(json!({}));
    let gates = fixture.ready();
    let alice = format!(
        "Bearer {}",
        fixture.token_for("alice", "registry", "catalog", "*")
    );
    let (reply, checked) = check(
        &gates,
        "GET",
        "/v2/_catalog",
        &[("authorization", &alice)],
        fixture.unix(),
    );
    assert_eq!(
        (reply.status, checked),
        (200, Checked::Gate(Outcome::Answered))
    );
    assert_eq!(reply.header(ANSWER_HEADER), Some("1"));
    assert_eq!(
        reply.header(HEADERS_TO_REMOVE),
        None,
        "the answer route needs the token"
    );

    let (answer, checked) = gates.answer(
        b"GET",
        b"/v2/_catalog",
        &headers(&[("authorization", &alice)]),
        fixture.unix(),
    );
    assert_eq!(
        (answer.status, checked),
        (200, Checked::Gate(Outcome::Answered))
    );
    let body: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(
        body["repositories"],
        json!(["library/public", "team/private"]),
        "{body}"
    );

    // A request the gate forwards gets nothing at the answer endpoint.
    let (answer, _) = gates.answer(
        b"GET",
        b"/v2/library/public/manifests/latest",
        &headers(&[(ANSWER_HEADER, "1")]),
        fixture.unix(),
    );
    assert_eq!(answer.status, 404);
}

#[test]
fn the_flatpak_index_is_refused_rather_than_served_unfiltered() {
    let fixture = fixture(json!({}));
    let gates = fixture.ready();
    let (reply, checked) = check(
        &gates,
        "GET",
        "/index/static?label:org.flatpak.ref:exists=1&tag=latest",
        &[],
        fixture.unix(),
    );
    assert_eq!(
        (reply.status, checked),
        (403, Checked::FlatpakIndex),
        "{reply:?}"
    );
    assert_eq!(error_code(&reply), "UNSUPPORTED");
    assert_eq!(reply.header("x-registry-gate-identity"), None);
}

#[test]
fn a_new_generation_applies_to_every_shard_and_cached_tokens() {
    let fixture = fixture(json!({}));
    let gates = fixture.ready();
    let alice = format!("Bearer {}", fixture.token("alice", "team/private"));
    let private = "/v2/team/private/manifests/latest";
    assert_eq!(
        check(
            &gates,
            "GET",
            private,
            &[("authorization", &alice)],
            fixture.unix()
        )
        .0
        .status,
        200
    );
    assert_eq!(
        gates.offer(&fixture.current(2, true), fixture.unix()),
        Some(2)
    );
    assert_eq!(gates.generation(), Some(2));
    assert_eq!(
        gates.offer(&fixture.current(2, true), fixture.unix()),
        None,
        "nothing new"
    );
    for shard in &*gates.shards {
        assert_eq!(lock(shard).generation().map(|g| g.number), Some(2));
    }
    let (reply, _) = check(
        &gates,
        "GET",
        private,
        &[("authorization", &alice)],
        fixture.unix(),
    );
    assert_eq!(reply.status, 404, "revoked: {reply:?}");
}

#[test]
fn confirmations_keep_a_generation_fresh_and_their_absence_lets_it_go_stale() {
    let fixture = fixture(json!({ "max_staleness_secs": 60 }));
    let gates = fixture.ready();
    let public = "/v2/library/public/manifests/latest";
    let later = fixture.unix() + 61;
    let (reply, checked) = check(&gates, "GET", public, &[], later);
    assert_eq!(
        (reply.status, checked),
        (503, Checked::Gate(Outcome::Unavailable)),
        "unconfirmed for 61 s"
    );
    gates.offer(&fixture.current(1, false), later);
    assert_eq!(
        check(&gates, "GET", public, &[], later).0.status,
        200,
        "confirmed again"
    );
}

#[test]
fn a_peer_subject_counts_only_when_configured() {
    let fixture = fixture(json!({ "client_certificate_from_connection": false }));
    let gates = fixture.ready();
    let (reply, _) = check(
        &gates,
        "GET",
        "/v2/team/private/manifests/latest",
        &[(PEER_SUBJECT_HEADER, &format!("CN={HOST}"))],
        fixture.unix(),
    );
    assert_eq!(
        reply.status, 401,
        "certificates identify no one here: {reply:?}"
    );
}

#[test]
fn requests_of_one_token_meet_one_shard() {
    let fixture = fixture(json!({}));
    let gates = ExtAuthz::with_shards(fixture.settings.clone(), 8);
    let token = fixture.token("alice", "team/private");
    let first = gates.shard(Some(token.as_bytes())) as *const _;
    assert!((0..10).all(|_| std::ptr::eq(gates.shard(Some(token.as_bytes())), first)));
    let anonymous: std::collections::BTreeSet<*const Mutex<Gate>> =
        (0..8).map(|_| gates.shard(None) as *const _).collect();
    assert_eq!(
        anonymous.len(),
        8,
        "requests without a token take the shards in turn"
    );
}
