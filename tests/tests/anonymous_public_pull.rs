//! Anonymous clients pull a public repository through the gateway: skopeo end to end, and
//! the manifest and blob over HTTP/1.1 and HTTP/2.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use registry_gate_tests::expect::{assert_is_manifest_of, get_manifest};
use registry_gate_tests::{oci, Auth, HttpVersion, Stack};

#[test]
fn anonymous_pull_of_a_public_repository_works() {
    let stack = Stack::start();
    let image = stack.image("library/public:latest").clone();

    for version in HttpVersion::ALL {
        let manifest = get_manifest(&stack, "library/public", "latest", version, Auth::Anonymous);
        assert_is_manifest_of(
            &manifest,
            &image,
            &format!("anonymous manifest over {version}"),
        );

        let blob = stack.get(
            &format!("/v2/library/public/blobs/{}", image.layer_digest),
            version,
            Auth::Anonymous,
        );
        assert_eq!(
            blob.status,
            200,
            "anonymous blob over {version}: {}",
            blob.summary()
        );
        assert!(
            String::from_utf8_lossy(&blob.body).contains(&image.file_contents),
            "blob over {version} is not the seeded layer: {}",
            blob.summary()
        );
    }

    let (run, dest) = stack.skopeo_pull("library/public:latest", Auth::Anonymous);
    run.assert_success();
    oci::layout_has_image(&dest, &image).unwrap();
}
