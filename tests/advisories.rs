//! One test per published advisory against cosign, sigstore clients and notation whose attack
//! applies to umpire, named after it: each attack must end in a denial.

mod support;

use std::sync::Arc;

use support::cosign::{
    self, Image, SLSA_V1, SigningKey, attestation_layer, payload, signature_layer, statement,
};
use support::registry::Registry;
use support::sigstore::{Identity, TestSigstore};
use support::{config_file, config_yaml, key_policy};
use umpire::engine::Engine;
use umpire::verdict::Code;

const REPO: &str = "acme/app";

struct Setup {
    registry: Registry,
    key: SigningKey,
    digest: String,
}

impl Setup {
    async fn new() -> Self {
        let registry = Registry::start().await;
        let digest = registry
            .push_image(REPO, "v1", &Image::new("advisory"))
            .await;
        Self {
            registry,
            key: SigningKey::p256(),
            digest,
        }
    }

    fn image(&self) -> String {
        format!("{}/{REPO}@{}", self.registry.host(), self.digest)
    }

    fn keyed(&self, extra: &str) -> Arc<Engine> {
        let host = self.registry.host();
        support::engine(&config_yaml(
            &host,
            &[("release", &self.key.public_pem())],
            &key_policy("prod", &host, 1, &["release"]),
            extra,
        ))
    }

    fn attested(&self, extra: &str) -> Arc<Engine> {
        let host = self.registry.host();
        let policy = format!(
            "  - name: slsa\n    images: [\"{host}/**\"]\n    attestations:\n      - type: {SLSA_V1}\n        authorities: [ {{ key: release }} ]\n"
        );
        support::engine(&config_yaml(
            &host,
            &[("release", &self.key.public_pem())],
            &policy,
            extra,
        ))
    }
}

/// GHSA-vfp6-jrw2-99g9 (CVE-2023-46737, cosign): a registry returning endless signatures or
/// attestations kept verifiers looping. umpire considers at most `max_signatures` and denies.
#[tokio::test]
async fn ghsa_vfp6_jrw2_99g9_endless_signatures_are_cut_off() {
    let s = Setup::new().await;
    let layers = (0..101)
        .map(|i| signature_layer(&s.key, payload(&format!("copy {i}"), &s.digest)))
        .collect();
    s.registry.push_signatures(REPO, &s.digest, layers).await;
    let v = s.keyed("").verify(&s.image(), None).await.unwrap();
    assert!(!v.allowed);
    assert_eq!(v.codes(), [Code::LimitExceeded]);
}

/// GHSA-95pr-fxf5-86gv (CVE-2024-29902, cosign): oversized attachments exhausted memory. umpire
/// refuses a layer over its limit before fetching it.
#[tokio::test]
async fn ghsa_95pr_fxf5_86gv_oversized_attachments_are_refused() {
    let s = Setup::new().await;
    let big = statement(
        &s.digest,
        SLSA_V1,
        serde_json::json!({"padding": "x".repeat(64 * 1024)}),
    );
    s.registry
        .push_attestations(REPO, &s.digest, vec![attestation_layer(Some(&s.key), &big)])
        .await;
    let v = s
        .attested("limits:\n  max_attestation_bytes: 16384\n")
        .verify(&s.image(), None)
        .await
        .unwrap();
    assert!(!v.allowed);
    assert_eq!(v.codes(), [Code::LimitExceeded]);
}

/// GHSA-88jx-383q-w4qc (CVE-2024-29903, cosign): a huge number of attestations exhausted CPU.
#[tokio::test]
async fn ghsa_88jx_383q_w4qc_too_many_attestations_are_refused() {
    let s = Setup::new().await;
    let st = statement(&s.digest, SLSA_V1, serde_json::json!({}));
    let layers = (0..101)
        .map(|_| attestation_layer(Some(&s.key), &st))
        .collect();
    s.registry.push_attestations(REPO, &s.digest, layers).await;
    let v = s.attested("").verify(&s.image(), None).await.unwrap();
    assert!(!v.allowed);
    assert_eq!(v.codes(), [Code::LimitExceeded]);
}

/// GHSA-vjxv-45g9-9296 (cosign): `verify-attestation` accepted an attestation of any type. umpire
/// counts only signed statements whose predicateType is exactly the required one.
#[tokio::test]
async fn ghsa_vjxv_45g9_9296_attestation_type_confusion() {
    let s = Setup::new().await;
    let other = statement(
        &s.digest,
        "https://example.com/anything/v1",
        serde_json::json!({}),
    );
    s.registry
        .push_attestations(
            REPO,
            &s.digest,
            vec![attestation_layer(Some(&s.key), &other)],
        )
        .await;
    let v = s.attested("").verify(&s.image(), None).await.unwrap();
    assert!(!v.allowed);
    assert_eq!(v.codes(), [Code::AttestationMissing]);
}

fn sign(leaf: &support::sigstore::Leaf, msg: &[u8]) -> Vec<u8> {
    leaf.key
        .sign(&aws_lc_rs::rand::SystemRandom::new(), msg)
        .unwrap()
        .as_ref()
        .to_vec()
}

/// Keyless engine trusting `sigstore`, for `acme/*` GitHub identities.
fn keyless(s: &Setup, sigstore: &TestSigstore, dir: &std::path::Path) -> Arc<Engine> {
    let root = dir.join("trusted_root.json");
    std::fs::write(&root, sigstore.trusted_root_json()).unwrap();
    let host = s.registry.host();
    support::engine(&format!(
        "registries:\n  - host: {host}\n    insecure: true\ntrust:\n  sigstore:\n    test: {}\npolicies:\n  - name: prod\n    images: [\"{host}/**\"]\n    signatures:\n      authorities:\n        - keyless:\n            trust: test\n            issuer: {}\n            subject_regex: https://github\\.com/acme/.+\n",
        root.display(),
        support::sigstore::GITHUB_ISSUER
    ))
}

/// GHSA-whqx-f9j3-ch6m (CVE-2026-22703, cosign) and CVE-2022-36056: a valid Rekor entry for another
/// artifact or signature pasted next to a signature. The entry must match this signature,
/// certificate and payload.
#[tokio::test]
async fn ghsa_whqx_f9j3_ch6m_unrelated_rekor_entry_is_tlog_invalid() {
    let s = Setup::new().await;
    let sigstore = TestSigstore::new();
    let dir = tempfile::tempdir().unwrap();
    let leaf = sigstore.issue(&Identity::github("acme/app"));
    let p = payload("x", &s.digest);
    let signature = sign(&leaf, &p);
    // A genuine entry of the same signer, for something else.
    let other = b"another artifact".to_vec();
    let entry = sigstore.log(
        TestSigstore::hashedrekord_body(&other, &sign(&leaf, &other), &leaf.pem()),
        "hashedrekord",
    );
    s.registry
        .push_signatures(
            REPO,
            &s.digest,
            vec![sigstore.legacy_layer_from(&leaf, p, &signature, Some(&entry))],
        )
        .await;
    let v = keyless(&s, &sigstore, dir.path())
        .verify(&s.image(), None)
        .await
        .unwrap();
    assert!(!v.allowed);
    assert_eq!(v.codes(), [Code::TlogInvalid]);
}

/// GHSA-xhg5-42rf-296r (CVE-2023-33959, notation-go): a fetched artifact was not checked against
/// its descriptor. umpire hashes every blob and compares it with the digest it asked for.
#[tokio::test]
async fn ghsa_xhg5_42rf_296r_blobs_are_checked_against_their_descriptors() {
    use support::hostile::{Reply, Request, Scripted};
    let key = SigningKey::p256();
    let image = Image::new("descriptor");
    let digest = image.digest();
    let sig = cosign::signature_manifest(vec![signature_layer(&key, payload("x", &digest))]);
    let layer_path = format!("/v2/{REPO}/blobs/{}", sig.layers[0].digest());
    let mut routes = std::collections::HashMap::new();
    routes.insert(
        format!("/v2/{REPO}/manifests/{digest}"),
        Reply::new(200, image.manifest.clone()).header("Content-Type", cosign::OCI_MANIFEST),
    );
    routes.insert(
        format!("/v2/{REPO}/manifests/{}", cosign::sig_tag(&digest)),
        Reply::new(200, sig.manifest.clone()).header("Content-Type", cosign::OCI_MANIFEST),
    );
    // The signature layer is swapped for another payload.
    routes.insert(layer_path, Reply::new(200, payload("swapped", &digest)));
    let server = Scripted::start(move |r: &Request| {
        routes
            .get(&r.path)
            .cloned()
            .unwrap_or_else(|| Reply::new(404, "{}"))
    })
    .await;
    let host = server.host();
    let engine = support::engine(&config_yaml(
        &host,
        &[("release", &key.public_pem())],
        &key_policy("prod", &host, 1, &["release"]),
        "",
    ));
    let v = engine
        .verify(&format!("{host}/{REPO}@{digest}"), None)
        .await
        .unwrap();
    assert!(!v.allowed);
    assert_eq!(v.codes(), [Code::DigestMismatch]);
}

/// A certificate whose two Fulcio issuer extensions disagree must not pass as the trusted issuer.
#[tokio::test]
async fn certificate_with_conflicting_issuer_extensions_is_denied() {
    let s = Setup::new().await;
    let sigstore = TestSigstore::new();
    let dir = tempfile::tempdir().unwrap();
    let mut identity = Identity::github("acme/app");
    identity.issuer = "https://evil.example".into();
    identity.legacy_issuer = Some(support::sigstore::GITHUB_ISSUER.into());
    s.registry
        .push_signatures(
            REPO,
            &s.digest,
            vec![sigstore.legacy_layer(&identity, payload("x", &s.digest))],
        )
        .await;
    let v = keyless(&s, &sigstore, dir.path())
        .verify(&s.image(), None)
        .await
        .unwrap();
    assert!(!v.allowed, "{v:?}");
    let mut swapped = identity.clone();
    swapped.issuer = support::sigstore::GITHUB_ISSUER.into();
    swapped.legacy_issuer = Some("https://evil.example".into());
    s.registry
        .push_signatures(
            REPO,
            &s.digest,
            vec![sigstore.legacy_layer(&swapped, payload("x", &s.digest))],
        )
        .await;
    let v = keyless(&s, &sigstore, dir.path())
        .verify(&s.image(), None)
        .await
        .unwrap();
    // The v2 extension is what Fulcio writes today and what is matched; a verdict either way must
    // never rest on the legacy value alone.
    assert!(v.allowed || v.codes() == [Code::IdentityMismatch], "{v:?}");
}

/// A keyed policy, and a signature by another key that carries a certificate for that other key:
/// the certificate does not make it a signature by the configured key.
#[tokio::test]
async fn keyed_policy_and_a_signature_carrying_a_certificate_for_another_key() {
    let s = Setup::new().await;
    let sigstore = TestSigstore::new();
    let leaf = sigstore.issue(&Identity::github("acme/app"));
    let p = payload("x", &s.digest);
    let signature = sign(&leaf, &p);
    s.registry
        .push_signatures(
            REPO,
            &s.digest,
            vec![sigstore.legacy_layer_from(&leaf, p, &signature, None)],
        )
        .await;
    let v = s.keyed("").verify(&s.image(), None).await.unwrap();
    assert!(!v.allowed);
    assert!(
        matches!(
            v.codes()[..],
            [Code::SignatureInvalid] | [Code::CertificateInvalid]
        ),
        "{v:?}"
    );
    let _ = config_file;
}

/// A leaf issued by an intermediate CA that had expired when it signed: the chain must be valid at
/// the signing time, intermediates included.
#[tokio::test]
async fn certificate_chaining_through_an_expired_intermediate_is_certificate_invalid() {
    let s = Setup::new().await;
    let sigstore = TestSigstore::with_expired_intermediate();
    let dir = tempfile::tempdir().unwrap();
    s.registry
        .push_signatures(
            REPO,
            &s.digest,
            vec![sigstore.legacy_layer(&Identity::github("acme/app"), payload("x", &s.digest))],
        )
        .await;
    let v = keyless(&s, &sigstore, dir.path())
        .verify(&s.image(), None)
        .await
        .unwrap();
    assert!(!v.allowed);
    assert_eq!(v.codes(), [Code::CertificateInvalid], "{v:?}");
}
