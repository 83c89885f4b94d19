//! Regenerates the bundled demo: an OCI image layout under `examples/demo` holding a signed image
//! (`signed`) with its cosign signature and two attestations (SLSA v1 provenance and an SPDX SBOM),
//! and an unsigned one (`unsigned`); plus the demo public key in `examples/default-config.yaml` and
//! `trust-roots/demo.pub`. A fresh key each run; its private half is dropped.
//!
//!     cargo run --example make_demo

#[path = "../tests/support/cosign.rs"]
mod cosign;

use std::path::Path;

use cosign::{
    Blob, Image, SigningKey, attestation_layer, payload, sig_tag, signature_layer,
    signature_manifest, statement,
};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The builder the demo provenance names (a demo: no real builder made it).
const DEMO_BUILDER: &str =
    "https://github.com/umpire-demo/builder/.github/workflows/build.yml@refs/heads/main";

fn write_blob(root: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let digest = cosign::sha256(bytes);
    let hex = digest.trim_start_matches("sha256:");
    std::fs::write(root.join("blobs/sha256").join(hex), bytes)
}

fn write_image(root: &Path, image: &Image) -> std::io::Result<()> {
    for blob in image.blobs() {
        write_blob(root, &blob.bytes)?;
    }
    write_blob(root, &image.manifest)
}

fn entry(image: &Image, tag: &str) -> serde_json::Value {
    let mut blob = Blob::new(&image.media_type, image.manifest.clone());
    blob.annotations.push((REF_NAME.to_owned(), tag.to_owned()));
    blob.descriptor()
}

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo");
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    std::fs::create_dir_all(root.join("blobs/sha256"))?;
    std::fs::write(
        root.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;

    let key = SigningKey::p256();
    let signed = Image::new("umpire demo: signed");
    let unsigned = Image::new("umpire demo: unsigned");
    let signature = signature_manifest(vec![signature_layer(
        &key,
        payload("examples/demo", &signed.digest()),
    )]);
    let provenance = cosign::provenance(DEMO_BUILDER, "umpire-demo/app", "refs/heads/main", &[]);
    let sbom = cosign::spdx(&[
        (
            "busybox",
            "1.36.1",
            "GPL-2.0-only",
            "pkg:generic/busybox@1.36.1",
        ),
        ("musl", "1.2.4", "MIT", "pkg:generic/musl@1.2.4"),
    ]);
    let attestations = signature_manifest(vec![
        attestation_layer(
            Some(&key),
            &statement(&signed.digest(), cosign::SLSA_V1, provenance),
        ),
        attestation_layer(Some(&key), &statement(&signed.digest(), cosign::SPDX, sbom)),
    ]);
    for image in [&signed, &unsigned, &signature, &attestations] {
        write_image(&root, image)?;
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": cosign::OCI_INDEX,
        "manifests": [
            entry(&signed, "signed"),
            entry(&unsigned, "unsigned"),
            entry(&signature, &sig_tag(&signed.digest())),
            entry(&attestations, &format!("{}.att", signed.digest().replace(':', "-"))),
        ],
    });
    std::fs::write(root.join("index.json"), serde_json::to_vec_pretty(&index)?)?;

    let config_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/default-config.yaml");
    let config = std::fs::read_to_string(&config_path)?;
    let start = config
        .find("      -----BEGIN PUBLIC KEY-----")
        .expect("demo key block");
    let end_marker = "-----END PUBLIC KEY-----\n";
    let end = config[start..].find(end_marker).expect("demo key end") + start + end_marker.len();
    let indented: String = key
        .public_pem()
        .lines()
        .map(|l| format!("      {l}\n"))
        .collect();
    std::fs::write(
        &config_path,
        format!("{}{indented}{}", &config[..start], &config[end..]),
    )?;
    std::fs::write(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("trust-roots/demo.pub"),
        key.public_pem(),
    )?;

    println!(
        "signed   {}\nunsigned {}",
        signed.digest(),
        unsigned.digest()
    );
    Ok(())
}
