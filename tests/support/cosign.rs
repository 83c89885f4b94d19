//! Builds OCI images and cosign-format signatures the way cosign's SIGNATURE_SPEC describes them:
//! a simple-signing payload as a layer of an image manifest tagged `sha256-<hex>.sig`, with the
//! base64 signature in the `dev.cosignproject.cosign/signature` annotation. Pure: it only makes
//! bytes; `registry.rs` and `examples/make_demo.rs` put them somewhere.

#![allow(dead_code)]

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `sha256-<hex>.sig` for a `sha256:<hex>` digest.
pub fn sig_tag(digest: &str) -> String {
    format!("{}.sig", digest.replace(':', "-"))
}

/// A content-addressed blob.
#[derive(Clone, Debug)]
pub struct Blob {
    pub media_type: String,
    pub bytes: Vec<u8>,
    pub annotations: Vec<(String, String)>,
}

impl Blob {
    pub fn new(media_type: &str, bytes: Vec<u8>) -> Self {
        Self {
            media_type: media_type.to_owned(),
            bytes,
            annotations: Vec::new(),
        }
    }

    pub fn digest(&self) -> String {
        sha256(&self.bytes)
    }

    pub fn descriptor(&self) -> serde_json::Value {
        let mut d = serde_json::json!({
            "mediaType": self.media_type,
            "digest": self.digest(),
            "size": self.bytes.len(),
        });
        if !self.annotations.is_empty() {
            d["annotations"] = self
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone())))
                .collect();
        }
        d
    }
}

/// An image manifest with its config and layers.
#[derive(Clone, Debug)]
pub struct Image {
    pub config: Blob,
    pub layers: Vec<Blob>,
    pub manifest: Vec<u8>,
    pub media_type: String,
}

impl Image {
    /// A small OCI image whose content (and so digest) depends on `label`.
    pub fn new(label: &str) -> Self {
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"org.opencontainers.image.title": label}},
            "rootfs": {"type": "layers", "diff_ids": []},
        }))
        .unwrap();
        // An empty tar archive: two zero blocks.
        let layer = Blob::new("application/vnd.oci.image.layer.v1.tar", vec![0; 1024]);
        Self::from_parts(
            Blob::new("application/vnd.oci.image.config.v1+json", config),
            vec![layer],
            &[],
        )
    }

    pub fn from_parts(
        config: Blob,
        layers: Vec<Blob>,
        extra: &[(&str, serde_json::Value)],
    ) -> Self {
        let mut m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
        });
        for (k, v) in extra {
            m[*k] = v.clone();
        }
        Self {
            config,
            layers,
            manifest: serde_json::to_vec(&m).unwrap(),
            media_type: OCI_MANIFEST.to_owned(),
        }
    }

    pub fn digest(&self) -> String {
        sha256(&self.manifest)
    }

    pub fn blobs(&self) -> Vec<&Blob> {
        std::iter::once(&self.config).chain(&self.layers).collect()
    }
}

/// An image index over `images`, each with a linux platform.
pub fn index(images: &[&Image]) -> Vec<u8> {
    let manifests: Vec<_> = images
        .iter()
        .enumerate()
        .map(|(i, img)| {
            let arch = ["amd64", "arm64", "s390x"][i % 3];
            serde_json::json!({
                "mediaType": img.media_type,
                "digest": img.digest(),
                "size": img.manifest.len(),
                "platform": {"os": "linux", "architecture": arch},
            })
        })
        .collect();
    serde_json::to_vec(
        &serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}),
    )
    .unwrap()
}

/// The simple-signing payload cosign signs for `digest`.
pub fn payload(docker_reference: &str, digest: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": null,
    }))
    .unwrap()
}

/// A signing key in one of the algorithms umpire accepts.
pub enum SigningKey {
    P256(EcdsaKeyPair),
    P384(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl SigningKey {
    pub fn p256() -> Self {
        Self::P256(EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_ASN1_SIGNING).unwrap())
    }
    pub fn p384() -> Self {
        Self::P384(EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_ASN1_SIGNING).unwrap())
    }
    pub fn ed25519() -> Self {
        Self::Ed25519(Ed25519KeyPair::generate().unwrap())
    }

    pub fn public_pem(&self) -> String {
        let der = match self {
            Self::P256(k) | Self::P384(k) => k.public_key().as_der().unwrap().as_ref().to_vec(),
            Self::Ed25519(k) => k.public_key().as_der().unwrap().as_ref().to_vec(),
        };
        pem::encode(&pem::Pem::new("PUBLIC KEY", der))
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            Self::P256(k) | Self::P384(k) => k
                .sign(&SystemRandom::new(), message)
                .unwrap()
                .as_ref()
                .to_vec(),
            Self::Ed25519(k) => k.sign(message).as_ref().to_vec(),
        }
    }
}

/// A signature layer: `payload` signed with `key` (the annotation carries the base64 signature).
pub fn signature_layer(key: &SigningKey, payload: Vec<u8>) -> Blob {
    let sig = base64::engine::general_purpose::STANDARD.encode(key.sign(&payload));
    signature_layer_with(payload, Some(sig))
}

/// A signature layer with whatever annotation the test wants (or none).
pub fn signature_layer_with(payload: Vec<u8>, signature_b64: Option<String>) -> Blob {
    let mut blob = Blob::new(SIMPLE_SIGNING, payload);
    if let Some(s) = signature_b64 {
        blob.annotations.push((SIGNATURE_ANNOTATION.to_owned(), s));
    }
    blob
}

/// The signature manifest cosign pushes under `sha256-<hex>.sig`: an image whose layers are the
/// signatures, with an empty JSON config.
pub fn signature_manifest(layers: Vec<Blob>) -> Image {
    let config = Blob::new("application/vnd.oci.image.config.v1+json", b"{}".to_vec());
    Image::from_parts(config, layers, &[])
}

pub const DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";
pub const IN_TOTO: &str = "application/vnd.in-toto+json";
pub const SLSA_V1: &str = "https://slsa.dev/provenance/v1";
pub const SPDX: &str = "https://spdx.dev/Document";
pub const VULN: &str = "https://cosign.sigstore.dev/attestation/vuln/v1";
pub const GITHUB_BUILDER: &str = "https://github.com/actions/runner/github-hosted";

/// An in-toto v1 statement about `digest`.
pub fn statement(digest: &str, predicate_type: &str, predicate: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "image", "digest": {"sha256": digest.trim_start_matches("sha256:")}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    }))
    .unwrap()
}

/// DSSE pre-authentication encoding.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    [
        format!(
            "DSSEv1 {} {payload_type} {} ",
            payload_type.len(),
            payload.len()
        )
        .into_bytes(),
        payload.to_vec(),
    ]
    .concat()
}

/// A DSSE envelope over `payload`, signed with `key` over the PAE (or over the raw payload, when
/// `over_raw_payload`, as a broken signer would).
pub fn envelope(key: Option<&SigningKey>, payload: &[u8], over_raw_payload: bool) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let signatures: Vec<serde_json::Value> = key
        .map(|k| {
            let message = if over_raw_payload {
                payload.to_vec()
            } else {
                pae(IN_TOTO, payload)
            };
            vec![serde_json::json!({"keyid": "", "sig": b64.encode(k.sign(&message))})]
        })
        .unwrap_or_else(|| {
            vec![serde_json::json!({"keyid": "", "sig": b64.encode(b"not a signature")})]
        });
    serde_json::to_vec(&serde_json::json!({"payloadType": IN_TOTO, "payload": b64.encode(payload), "signatures": signatures})).unwrap()
}

/// A cosign `.att` layer: a DSSE envelope over `statement` (unsigned with `key` None).
pub fn attestation_layer(key: Option<&SigningKey>, statement: &[u8]) -> Blob {
    let mut blob = Blob::new(DSSE_ENVELOPE, envelope(key, statement, false));
    let claimed: serde_json::Value = serde_json::from_slice(statement).unwrap_or_default();
    if let Some(t) = claimed.get("predicateType").and_then(|t| t.as_str()) {
        blob.annotations
            .push(("predicateType".to_owned(), t.to_owned()));
    }
    blob
}

/// SLSA v1 provenance from `builder`, for `repo` at `git_ref`, built on `base` images.
pub fn provenance(
    builder: &str,
    repo: &str,
    git_ref: &str,
    base: &[(&str, &str)],
) -> serde_json::Value {
    let mut deps = vec![
        serde_json::json!({"uri": format!("git+https://github.com/{repo}@{git_ref}"), "digest": {"gitCommit": "0123456789abcdef0123456789abcdef01234567"}}),
    ];
    for (uri, digest) in base {
        deps.push(serde_json::json!({"uri": uri, "digest": {"sha256": digest.trim_start_matches("sha256:")}}));
    }
    serde_json::json!({
        "buildDefinition": {
            "buildType": "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1",
            "externalParameters": {"workflow": {"ref": git_ref, "repository": format!("https://github.com/{repo}"), "path": ".github/workflows/release.yml"}},
            "resolvedDependencies": deps,
        },
        "runDetails": {"builder": {"id": builder}, "metadata": {"invocationId": "https://github.com/acme/app/actions/runs/1/attempts/1"}},
    })
}

/// An SPDX 2.3 document listing `packages` as (name, version, license, purl).
pub fn spdx(packages: &[(&str, &str, &str, &str)]) -> serde_json::Value {
    serde_json::json!({
        "spdxVersion": "SPDX-2.3",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": "image",
        "packages": packages.iter().enumerate().map(|(i, (name, version, license, purl))| serde_json::json!({
            "SPDXID": format!("SPDXRef-Package-{i}"),
            "name": name, "versionInfo": version, "licenseConcluded": license,
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": purl}],
        })).collect::<Vec<_>>(),
    })
}

/// A cosign vuln/v1 report with a Trivy result, finished at `finished` (RFC 3339).
pub fn vuln_report(finished: &str, vulns: &[(&str, &str)]) -> serde_json::Value {
    serde_json::json!({
        "invocation": {"uri": "", "event_id": "", "builder.id": ""},
        "scanner": {"uri": "pkg:github/aquasecurity/trivy@0.50.0", "version": "0.50.0",
            "result": {"Results": [{"Target": "image", "Vulnerabilities": vulns.iter().map(|(id, sev)| serde_json::json!({"VulnerabilityID": id, "Severity": sev})).collect::<Vec<_>>()}]}},
        "metadata": {"scanStartedOn": finished, "scanFinishedOn": finished},
    })
}
