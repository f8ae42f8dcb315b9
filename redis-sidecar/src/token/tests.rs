//! Unit tests of htpasswd parsing, Basic credentials, scope ∩ grant and token minting.

use super::*;
use crate::keys::KeyAlgorithm;
use jwt_compact::UntrustedToken;
use registry_gate_core::scope::parse_scopes;
use registry_gate_core::snapshot::{Content, Repository};
use registry_gate_core::token::{verify, Algorithm, KeyRing, TokenError, VerifierSettings};
use std::collections::BTreeMap;

/// A `$2y$` (htpasswd's default) bcrypt hash at the minimum cost.
fn hash(password: &str) -> String {
    bcrypt::hash_with_result(password, 4)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY)
}

#[test]
fn htpasswd_accepts_bcrypt_variants_comments_and_blank_lines() {
    let y = hash("pw-a");
    let b = y.replacen("$2y$", "$2b$", 1);
    let a = y.replacen("$2y$", "$2a$", 1);
    let text = format!("# users\n\nalice:{y}\r\nbob:{b}  \ncarol:{a}\n");
    let file = Htpasswd::parse(&text).unwrap();
    assert_eq!(file.len(), 3);
    assert!(file.verify("alice", "pw-a"));
    assert!(file.verify("bob", "pw-a"));
    assert!(file.verify("carol", "pw-a"));
    assert!(!file.verify("alice", "wrong"));
    assert!(!file.verify("nobody", "pw-a"));
}

#[test]
fn htpasswd_rejects_every_bad_line_with_its_number() {
    let good = hash("x");
    let cases: &[(&str, String, &str)] = &[
        ("apr1", "u:$apr1$salt$hash".into(), "MD5"),
        ("sha1", "u:{SHA}abc=".into(), "SHA-1"),
        ("sha-crypt", "u:$6$salt$hash".into(), "SHA-crypt"),
        ("plain", "u:secret".into(), "plain-text"),
        (
            "2x",
            format!("u:{}", good.replacen("$2y$", "$2x$", 1)),
            "legacy",
        ),
        ("no colon", "just-a-name".into(), "expected user:hash"),
        ("empty user", format!(":{good}"), "invalid user"),
        ("truncated bcrypt", "u:$2y$04$short".into(), "u"),
        (
            "cost too high",
            format!("u:{}", good.replacen("$04$", "$99$", 1)),
            "cost",
        ),
    ];
    for (name, line, needle) in cases {
        let text = format!("ok:{good}\n{line}\n");
        let error = Htpasswd::parse(&text).unwrap_err();
        assert_eq!(error.problems.len(), 1, "case {name}: {error}");
        let problem = &error.problems[0];
        assert!(problem.starts_with("line 2:"), "case {name}: {problem}");
        assert!(problem.contains(needle), "case {name}: {problem}");
    }
    let error = Htpasswd::parse(&format!("a:{good}\na:{good}\nb:plain\n")).unwrap_err();
    assert_eq!(error.problems.len(), 2, "{error}");
    assert!(error.problems[0].contains("line 2") && error.problems[0].contains("twice"));
    assert!(error.problems[1].contains("line 3"));
}

#[test]
fn authorization_header_parsing() {
    let basic = |s: &str| format!("Basic {}", STANDARD.encode(s));
    let cases: Vec<(&str, Option<String>, Option<Credentials>)> = vec![
        ("absent", None, Some(Credentials::Anonymous)),
        (
            "basic",
            Some(basic("alice:pw")),
            Some(Credentials::Basic {
                user: "alice".into(),
                password: "pw".into(),
            }),
        ),
        (
            "colon in password",
            Some(basic("alice:p:w")),
            Some(Credentials::Basic {
                user: "alice".into(),
                password: "p:w".into(),
            }),
        ),
        (
            "lowercase scheme",
            Some(format!("basic {}", STANDARD.encode("a:b"))),
            Some(Credentials::Basic {
                user: "a".into(),
                password: "b".into(),
            }),
        ),
        ("bearer", Some("Bearer abc".into()), None),
        ("bad base64", Some("Basic !!!".into()), None),
        ("no colon", Some(basic("alice")), None),
        ("empty user", Some(basic(":pw")), None),
        ("scheme only", Some("Basic".into()), None),
    ];
    for (name, header, want) in cases {
        assert_eq!(
            credentials(header.as_deref().map(str::as_bytes)),
            want,
            "case {name}"
        );
    }
}

fn content() -> Content {
    let repo = |name: &str, auth_required| Repository {
        name: name.into(),
        auth_required,
    };
    Content {
        repositories: vec![
            repo("public/app", false),
            repo("private/app", true),
            repo("private/other", true),
        ],
        users: BTreeMap::from([("alice".into(), vec!["private/app".into()])]),
        ..Content::default()
    }
}

/// The index of `content`, as the sidecar's cache holds it.
fn index(content: &Content) -> Index {
    let stamp = registry_gate_core::snapshot::Stamp {
        epoch: "e".into(),
        generation: 1,
        published_at: 0,
        producer: "test".into(),
        allow_empty: false,
    };
    Index::open(registry_gate_core::snapshot::build_index(content, &stamp).unwrap()).unwrap()
}

#[test]
fn access_is_requested_intersected_with_granted() {
    let index = index(&content());
    let alice = Principal::User("alice".into());
    let bob = Principal::User("bob".into());
    let entry = |name: &str| AccessEntry {
        resource_type: "repository".into(),
        name: name.into(),
        actions: vec!["pull".into()],
    };
    let cases: Vec<(&str, &str, &Principal, Vec<AccessEntry>)> = vec![
        (
            "granted private pull",
            "repository:private/app:pull",
            &alice,
            vec![entry("private/app")],
        ),
        (
            "push is dropped, pull kept",
            "repository:private/app:pull,push",
            &alice,
            vec![entry("private/app")],
        ),
        (
            "push only grants nothing",
            "repository:private/app:push",
            &alice,
            vec![],
        ),
        (
            "delete only grants nothing",
            "repository:private/app:delete",
            &alice,
            vec![],
        ),
        (
            "star means pull",
            "repository:private/app:*",
            &alice,
            vec![entry("private/app")],
        ),
        (
            "ungranted private",
            "repository:private/other:pull",
            &alice,
            vec![],
        ),
        ("other user", "repository:private/app:pull", &bob, vec![]),
        (
            "public for anyone",
            "repository:public/app:pull",
            &Principal::Anonymous,
            vec![entry("public/app")],
        ),
        (
            "anonymous private",
            "repository:private/app:pull",
            &Principal::Anonymous,
            vec![],
        ),
        (
            "unknown repository",
            "repository:nope/app:pull",
            &alice,
            vec![],
        ),
        (
            "catalog for a user",
            "registry:catalog:*",
            &alice,
            vec![catalog()],
        ),
        (
            "catalog for anonymous (the listing is filtered anyway)",
            "registry:catalog:*",
            &Principal::Anonymous,
            vec![catalog()],
        ),
        (
            "catalog asked twice, granted once",
            "registry:catalog:* registry:catalog:*",
            &alice,
            vec![catalog()],
        ),
        ("catalog without *", "registry:catalog:pull", &alice, vec![]),
        (
            "other registry resource",
            "registry:other:*",
            &alice,
            vec![],
        ),
        (
            "class suffix",
            "repository(plugin):public/app:pull",
            &bob,
            vec![entry("public/app")],
        ),
        (
            "several, merged",
            "repository:public/app:pull repository:private/app:pull repository:public/app:pull",
            &alice,
            vec![entry("public/app"), entry("private/app")],
        ),
    ];
    fn catalog() -> AccessEntry {
        AccessEntry {
            resource_type: "registry".into(),
            name: "catalog".into(),
            actions: vec!["*".into()],
        }
    }
    for (name, scope, who, want) in cases {
        let requested = parse_scopes(scope).unwrap();
        assert_eq!(grant(&requested, who, &index), want, "case {name}");
    }
}

/// How the filter is configured to check the test minter's tokens.
fn verifier(algorithms: Vec<Algorithm>) -> VerifierSettings {
    VerifierSettings {
        issuer: "issuer-x".into(),
        audience: "service-y".into(),
        algorithms,
        leeway_secs: 60,
        max_token_bytes: 8192,
        max_lifetime_secs: 3600,
    }
}

#[test]
fn minted_token_verifies_with_the_published_key_and_carries_the_claims() {
    let rows = [
        (KeyAlgorithm::ES256, Algorithm::ES256, Algorithm::EdDSA),
        (KeyAlgorithm::EdDSA, Algorithm::EdDSA, Algorithm::ES256),
    ];
    for (algorithm, alg, other) in rows {
        let key = SigningKey::generate(algorithm).unwrap();
        let minter = Minter::new(
            key.clone(),
            "issuer-x".into(),
            "service-y".into(),
            Duration::from_secs(300),
        );
        let unix = 1_700_000_000;
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(unix);
        let access = vec![AccessEntry {
            resource_type: "repository".into(),
            name: "a/b".into(),
            actions: vec!["pull".into()],
        }];
        let minted = minter
            .mint(&Principal::User("alice".into()), access.clone(), now)
            .unwrap();
        assert_eq!(minted.expires_in, 300);
        assert_eq!(minted.issued_at, "2023-11-14T22:13:20Z");

        let untrusted = UntrustedToken::new(&minted.token).unwrap();
        assert_eq!(untrusted.algorithm(), alg.name(), "{algorithm:?}");
        assert_eq!(untrusted.header().key_id.as_deref(), Some(key.kid()));
        assert_eq!(untrusted.header().token_type.as_deref(), Some("JWT"));

        // What the filter does: the published key spec, the core's verification.
        let ring = KeyRing::from_specs(&[key.key_spec()]).unwrap();
        let verified = verify(&verifier(vec![alg]), &ring, &minted.token, unix).unwrap();
        assert_eq!(verified.subject, "alice", "{algorithm:?}");
        assert_eq!(verified.access, Some(access.clone()));
        assert_eq!(verified.expires_at, unix + 300);
        assert_eq!(verified.issued_at, Some(unix));
        // The allow-list decides, not the token: without its algorithm it is refused.
        assert_eq!(
            verify(&verifier(vec![other]), &ring, &minted.token, unix),
            Err(TokenError::AlgorithmNotAllowed),
            "{algorithm:?}"
        );
        // Another key of the same algorithm under the same kid does not verify it.
        let stranger = SigningKey::from_pem(
            &SigningKey::generate(algorithm).unwrap().to_pem().unwrap(),
            Some(key.kid().to_owned()),
        )
        .unwrap();
        let ring = KeyRing::from_specs(&[stranger.key_spec()]).unwrap();
        assert_eq!(
            verify(&verifier(vec![alg]), &ring, &minted.token, unix),
            Err(TokenError::BadSignature),
            "{algorithm:?}"
        );

        let claims: Claims<RegistryClaims> = untrusted.deserialize_claims_unchecked().unwrap();
        assert_eq!(claims.custom.iss, "issuer-x");
        assert_eq!(claims.custom.aud, Audience::One("service-y".into()));
        let jti = claims.custom.jti.clone().unwrap();
        assert_eq!(jti.len(), 32);
        assert!(jti.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(claims.not_before.unwrap().timestamp(), 1_700_000_000);

        let anonymous = minter.mint(&Principal::Anonymous, vec![], now).unwrap();
        let untrusted = UntrustedToken::new(&anonymous.token).unwrap();
        let anonymous: Claims<RegistryClaims> = untrusted.deserialize_claims_unchecked().unwrap();
        assert_eq!(anonymous.custom.sub, "");
        assert_eq!(anonymous.custom.access, Some(vec![]));
        assert_ne!(anonymous.custom.jti, claims.custom.jti, "jti is fresh");
    }
}

#[test]
fn unknown_users_get_dummies_at_the_files_costs_in_its_proportions() {
    let at = |password: &str, cost: u32| {
        bcrypt::hash_with_result(password, cost)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY)
    };
    // Three users at cost 4, one at cost 5.
    let (a, b, c, d) = (at("a", 4), at("b", 4), at("c", 4), at("d", 5));
    let file = Htpasswd::parse(&format!("alice:{a}\nbob:{b}\ncarol:{c}\ndave:{d}\n")).unwrap();
    let cost = |hash: &str| hash.parse::<bcrypt::HashParts>().unwrap().get_cost();
    let (alice, known) = file.hash_for("alice");
    assert_eq!((alice, known), (a.as_str(), true));
    let unknown: Vec<&str> = (0..400)
        .map(|n| {
            let (dummy, known) = file.hash_for(&format!("nobody{n}"));
            assert!(!known);
            assert!(![&a, &b, &c, &d].contains(&&dummy.to_owned()), "a dummy");
            dummy
        })
        .collect();
    let cheap = unknown.iter().filter(|hash| cost(hash) == 4).count();
    let dearer = unknown.iter().filter(|hash| cost(hash) == 5).count();
    assert_eq!(cheap + dearer, 400, "only the file's costs");
    // Expected 300 of 400 at cost 4 (three quarters of the users); sd about 9.
    assert!((250..=350).contains(&cheap), "{cheap} of 400 at cost 4");
    assert_eq!(
        file.hash_for("nobody7").0,
        unknown[7],
        "the same unknown user always gets the same dummy"
    );
    // A dummy is a real bcrypt hash, so verifying against it costs a full bcrypt run.
    assert!(bcrypt::verify("anything", unknown[0]).is_ok());
    // An empty file still has a dummy, at the default cost.
    let empty = Htpasswd::parse("# nobody\n").unwrap();
    assert_eq!(cost(empty.hash_for("alice").0), DEFAULT_COST);
}
