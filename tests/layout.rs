//! Local OCI image layouts (`oci:PATH`) get the same checks as a registry.

mod support;

use std::path::Path;

use support::cosign::{
    self, Image, SigningKey, payload, sig_tag, signature_layer, signature_manifest,
};
use umpire::verdict::Code;

const REF_NAME: &str = "org.opencontainers.image.ref.name";

fn write_blob(root: &Path, bytes: &[u8]) {
    let d = cosign::sha256(bytes);
    std::fs::write(
        root.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:")),
        bytes,
    )
    .unwrap();
}

/// A layout with a signed image tagged `v1`; returns (dir, key, image).
fn layout() -> (tempfile::TempDir, SigningKey, Image) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("blobs/sha256")).unwrap();
    std::fs::write(
        root.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let key = SigningKey::p256();
    let image = Image::new("layout");
    let sig = signature_manifest(vec![signature_layer(&key, payload("x", &image.digest()))]);
    let mut entries = Vec::new();
    for (img, tag) in [(&image, "v1".to_owned()), (&sig, sig_tag(&image.digest()))] {
        for b in img.blobs() {
            write_blob(root, &b.bytes);
        }
        write_blob(root, &img.manifest);
        entries.push(serde_json::json!({
            "mediaType": img.media_type, "digest": img.digest(), "size": img.manifest.len(),
            "annotations": {REF_NAME: tag},
        }));
    }
    std::fs::write(
        root.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": entries})).unwrap(),
    )
    .unwrap();
    (dir, key, image)
}

fn engine(root: &Path, key: &SigningKey) -> std::sync::Arc<umpire::engine::Engine> {
    let policy = format!(
        "  - name: local\n    images: [\"oci:{}\"]\n    signatures:\n      authorities:\n        - key: k\n",
        root.display()
    );
    support::engine(&support::config_yaml(
        "unused.example",
        &[("k", &key.public_pem())],
        &policy,
        "",
    ))
}

#[tokio::test]
async fn signed_layout_image_is_allowed_by_tag_and_by_digest() {
    let (dir, key, image) = layout();
    let engine = engine(dir.path(), &key);
    let v = engine
        .verify(&format!("oci:{}:v1", dir.path().display()), None)
        .await
        .unwrap();
    assert!(v.allowed, "{v:?}");
    assert_eq!(v.digest, image.digest());
    let v = engine
        .verify(
            &format!("oci:{}@{}", dir.path().display(), image.digest()),
            None,
        )
        .await
        .unwrap();
    assert!(v.allowed, "{v:?}");
}

#[tokio::test]
async fn a_tampered_blob_in_a_layout_is_denied() {
    let (dir, key, image) = layout();
    let path = dir
        .path()
        .join("blobs/sha256")
        .join(image.digest().trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.push(b'\n');
    std::fs::write(&path, bytes).unwrap();
    let v = engine(dir.path(), &key)
        .verify(&format!("oci:{}:v1", dir.path().display()), None)
        .await
        .unwrap();
    assert!(!v.allowed);
    assert_eq!(v.codes(), [Code::DigestMismatch]);
}

#[tokio::test]
async fn missing_layouts_and_tags_are_image_not_found() {
    let (dir, key, _) = layout();
    let engine = engine(dir.path(), &key);
    let v = engine
        .verify(&format!("oci:{}:nope", dir.path().display()), None)
        .await
        .unwrap();
    assert_eq!(v.codes(), [Code::ImageNotFound]);
    std::fs::remove_file(dir.path().join("index.json")).unwrap();
    let v = engine
        .verify(&format!("oci:{}:v1", dir.path().display()), None)
        .await
        .unwrap();
    assert!(!v.allowed);
    assert_eq!(v.codes(), [Code::ImageNotFound]);
}
