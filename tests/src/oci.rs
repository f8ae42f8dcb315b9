//! Tiny test images, built in pure Rust as OCI image layouts (image-spec `image-layout.md`):
//! one uncompressed tar layer holding a small text file unique to the image, a config, a
//! manifest and an `index.json` naming the tag with `org.opencontainers.image.ref.name`.
//!
//! Each image's content (and so every digest) differs by name and tag, so a test can tell
//! exactly which repository a response came from. Every image is labelled as a Flatpak
//! application (`org.flatpak.ref`), so Pulp's Flatpak index lists it. Nothing here talks to a
//! registry.

use std::path::{Path, PathBuf};

use serde_json::json;
use sha2::{Digest, Sha256};

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// One built image and the facts tests assert on.
#[derive(Debug, Clone)]
pub struct OciImage {
    /// Repository name, e.g. `team/private`.
    pub name: String,
    pub tag: String,
    /// The OCI layout directory (`oci:<layout_dir>:<tag>` for skopeo).
    pub layout_dir: PathBuf,
    /// The manifest bytes exactly as pushed.
    pub manifest: Vec<u8>,
    /// `sha256:<hex>` of [`OciImage::manifest`].
    pub manifest_digest: String,
    pub config_digest: String,
    pub layer_digest: String,
    /// Path of the file inside the layer.
    pub file_path: String,
    /// Contents of that file: a marker unique to this image.
    pub file_contents: String,
}

impl OciImage {
    /// `<name>:<tag>`
    pub fn reference(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }
}

fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn write_blob(layout: &Path, bytes: &[u8]) -> String {
    let digest = sha256_digest(bytes);
    let hex = digest.trim_start_matches("sha256:");
    let path = layout.join("blobs/sha256").join(hex);
    std::fs::write(&path, bytes).unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
    digest
}

/// An uncompressed tar of `files` (`(path, contents)`, in order), with fixed metadata so the
/// same input always gives the same bytes (and digest).
fn layer_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (file_path, contents) in files {
        let mut header = tar::Header::new_ustar();
        header
            .set_path(file_path)
            .unwrap_or_else(|err| panic!("tar path {file_path}: {err}"));
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder
            .append(&header, *contents)
            .unwrap_or_else(|err| panic!("tar append {file_path}: {err}"));
    }
    builder
        .into_inner()
        .unwrap_or_else(|err| panic!("tar finish: {err}"))
}

/// Path, inside the layer, of the payload file [`build_layout_with_payload`] adds.
pub const PAYLOAD_PATH: &str = "registry-gate-payload.bin";

/// Builds the image `name:tag` as an OCI layout in `dir` (created).
pub fn build_layout(dir: &Path, name: &str, tag: &str) -> OciImage {
    build_layout_with_payload(dir, name, tag, &[])
}

/// [`build_layout`] with a second file, [`PAYLOAD_PATH`], holding `payload` in the layer
/// (e.g. random bytes, to make blob transfer visible in a benchmark). An empty `payload`
/// adds nothing: the image is byte for byte what [`build_layout`] builds.
pub fn build_layout_with_payload(dir: &Path, name: &str, tag: &str, payload: &[u8]) -> OciImage {
    std::fs::create_dir_all(dir.join("blobs/sha256"))
        .unwrap_or_else(|err| panic!("create {}: {err}", dir.display()));
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .unwrap_or_else(|err| panic!("write oci-layout in {}: {err}", dir.display()));

    let file_path = "registry-gate.txt".to_owned();
    let file_contents = format!("registry-gate test image {name}:{tag}\n");
    let mut files: Vec<(&str, &[u8])> = vec![(&file_path, file_contents.as_bytes())];
    if !payload.is_empty() {
        files.push((PAYLOAD_PATH, payload));
    }
    let layer = layer_tar(&files);
    let layer_digest = write_blob(dir, &layer);

    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Labels": {
                "org.opencontainers.image.title": format!("{name}:{tag}"),
                "org.flatpak.ref": format!("app/org.registrygate.{}/x86_64/{tag}", name.replace('/', "_")),
            }
        },
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
        "history": [{ "created_by": "registry-gate test harness" }]
    }))
    .unwrap_or_else(|err| panic!("config JSON: {err}"));
    let config_digest = write_blob(dir, &config);

    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": config_digest,
            "size": config.len()
        },
        "layers": [{
            "mediaType": LAYER_MEDIA_TYPE,
            "digest": layer_digest,
            "size": layer.len()
        }]
    }))
    .unwrap_or_else(|err| panic!("manifest JSON: {err}"));
    let manifest_digest = write_blob(dir, &manifest);

    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [{
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": { "org.opencontainers.image.ref.name": tag }
        }]
    }))
    .unwrap_or_else(|err| panic!("index JSON: {err}"));
    std::fs::write(dir.join("index.json"), index)
        .unwrap_or_else(|err| panic!("write index.json in {}: {err}", dir.display()));

    OciImage {
        name: name.to_owned(),
        tag: tag.to_owned(),
        layout_dir: dir.to_path_buf(),
        manifest,
        manifest_digest,
        config_digest,
        layer_digest,
        file_path,
        file_contents,
    }
}

/// Whether the OCI layout at `dir` (as written by `skopeo copy ... oci:<dir>:<tag>`) holds
/// `image`'s manifest, layer and config: the copy brought exactly the seeded bytes.
/// Returns what is missing.
pub fn layout_has_image(dir: &Path, image: &OciImage) -> Result<(), String> {
    let mut missing = Vec::new();
    for digest in [
        &image.manifest_digest,
        &image.layer_digest,
        &image.config_digest,
    ] {
        let path = dir
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        if !path.is_file() {
            missing.push(path.display().to_string());
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} copied to {} lacks blobs: {}",
            image.reference(),
            dir.display(),
            missing.join(", ")
        ))
    }
}
