//! `/v2/_catalog` is answered from the snapshot: a user sees exactly the public repositories
//! plus the ones granted to them, sorted; anonymous sees only public ones.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use registry_gate_tests::expect::catalog_names;
use registry_gate_tests::{Auth, HttpVersion, Stack};

const CATALOG_SCOPE: &str = "registry:catalog:*";

#[test]
fn catalog_lists_public_plus_granted_repositories() {
    let stack = Stack::start();
    for version in HttpVersion::ALL {
        let alice = stack.token(Some("alice"), &[CATALOG_SCOPE], version);
        let resp = stack.get("/v2/_catalog", version, Auth::Bearer(&alice));
        assert_eq!(
            catalog_names(&resp, &format!("alice over {version}")),
            vec!["library/public", "team/private"],
            "alice's catalog over {version}"
        );

        let bob = stack.token(Some("bob"), &[CATALOG_SCOPE], version);
        let resp = stack.get("/v2/_catalog", version, Auth::Bearer(&bob));
        assert_eq!(
            catalog_names(&resp, &format!("bob over {version}")),
            vec!["library/public"],
            "bob's catalog over {version}"
        );

        let anonymous = stack.token(None, &[CATALOG_SCOPE], version);
        let resp = stack.get("/v2/_catalog", version, Auth::Bearer(&anonymous));
        assert_eq!(
            catalog_names(&resp, &format!("anonymous token over {version}")),
            vec!["library/public"],
            "anonymous catalog over {version}"
        );
    }
}
