//! The token endpoint refuses bad credentials with 401: a wrong password, an unknown user.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use registry_gate_tests::{Auth, HttpVersion, Stack};

#[test]
fn wrong_password_is_refused_at_the_token_endpoint() {
    let stack = Stack::start();
    for version in HttpVersion::ALL {
        let wrong = stack.token_response(
            Some(("alice", "not-her-password")),
            &["repository:team/private:pull"],
            version,
        );
        assert_eq!(
            wrong.status,
            401,
            "wrong password over {version}: {}",
            wrong.summary()
        );
        assert!(
            !wrong.text().contains("\"token\""),
            "a token was issued: {}",
            wrong.summary()
        );

        let nobody = stack.token_response(
            Some(("mallory", "whatever")),
            &["repository:team/private:pull"],
            version,
        );
        assert_eq!(
            nobody.status,
            401,
            "unknown user over {version}: {}",
            nobody.summary()
        );

        // The right password still works, so the 401s above are about the credentials.
        let ok = stack.token_response(
            Some(("alice", stack.password("alice"))),
            &["repository:team/private:pull"],
            version,
        );
        assert_eq!(
            ok.status,
            200,
            "right password over {version}: {}",
            ok.summary()
        );
    }

    let (run, _) = stack.skopeo_pull(
        "team/private:latest",
        Auth::Basic("alice", "not-her-password"),
    );
    run.assert_failure();
}
