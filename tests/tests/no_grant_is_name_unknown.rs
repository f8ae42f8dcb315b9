//! An authenticated user without a grant sees a private repository exactly as a repository
//! that does not exist: 404 `NAME_UNKNOWN`, and the registry never hears of it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use registry_gate_tests::expect::{assert_registry_error, assert_upstream_untouched, get_manifest};
use registry_gate_tests::{Auth, HttpVersion, Stack};

#[test]
fn valid_user_without_grant_gets_name_unknown() {
    let mut stack = Stack::start();
    let password = stack.password("bob").to_owned();

    for version in HttpVersion::ALL {
        let token = stack.token(Some("bob"), &["repository:team/private:pull"], version);
        let forbidden = assert_upstream_untouched(&mut stack, "bob's private manifest", |s| {
            get_manifest(s, "team/private", "latest", version, Auth::Bearer(&token))
        });
        assert_registry_error(
            &forbidden,
            404,
            "NAME_UNKNOWN",
            &format!("bob, team/private, {version}"),
        );

        let unknown = assert_upstream_untouched(&mut stack, "bob's unknown manifest", |s| {
            get_manifest(
                s,
                "team/does-not-exist",
                "latest",
                version,
                Auth::Bearer(&token),
            )
        });
        assert_registry_error(
            &unknown,
            404,
            "NAME_UNKNOWN",
            &format!("bob, unknown repository, {version}"),
        );
        assert_eq!(
            forbidden.status, unknown.status,
            "forbidden and unknown must look the same over {version}"
        );

        // A different private repository alice cannot see either.
        let alice = stack.token(Some("alice"), &["repository:team/other:pull"], version);
        let other = assert_upstream_untouched(&mut stack, "alice's ungranted manifest", |s| {
            get_manifest(s, "team/other", "latest", version, Auth::Bearer(&alice))
        });
        assert_registry_error(
            &other,
            404,
            "NAME_UNKNOWN",
            &format!("alice, team/other, {version}"),
        );
    }

    let (run, _) = stack.skopeo_pull("team/private:latest", Auth::Basic("bob", &password));
    run.assert_failure();
}
