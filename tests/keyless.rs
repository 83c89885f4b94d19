//! Keyless signatures end to end: the tests' own Sigstore instance (support/sigstore.rs) signs
//! images pushed to a real registry, as legacy cosign `.sig` layers and as referrer bundles.

mod support;

use base64::Engine as _;
use std::time::Duration as StdDuration;

use support::cosign::{self, Image, payload, signature_manifest};
use support::registry::Registry;
use support::sigstore::{
    GITHUB_ISSUER, Identity, Leaf, LogEntry, TestSigstore, cosign_sign_statement,
};
use support::{Umpire, config_file};
use umpire::proto::{VerifyRequest, VerifyResponse};

const REPO: &str = "acme/app";

struct Setup {
    registry: Registry,
    sigstore: TestSigstore,
    digest: String,
    _root_dir: tempfile::TempDir,
    root_path: std::path::PathBuf,
}

impl Setup {
    async fn new() -> Self {
        let registry = Registry::start().await;
        let digest = registry
            .push_image(REPO, "v1", &Image::new("keyless"))
            .await;
        let sigstore = TestSigstore::new();
        let (root_dir, root_path) = config_file(&sigstore.trusted_root_json());
        Self {
            registry,
            sigstore,
            digest,
            _root_dir: root_dir,
            root_path,
        }
    }

    /// A config with one keyless authority written as `authority` (YAML lines under `keyless:`).
    fn yaml(&self, authority: &str) -> String {
        let host = self.registry.host();
        format!(
            "registries:\n  - host: {host}\n    insecure: true\ntrust:\n  sigstore:\n    test: {}\npolicies:\n  - name: prod\n    images: [\"{host}/**\"]\n    signatures:\n      authorities:\n        - keyless:\n            trust: test\n{authority}",
            self.root_path.display()
        )
    }

    fn github_authority(&self) -> String {
        format!(
            "            issuer: {GITHUB_ISSUER}\n            subject_regex: https://github\\.com/acme/.+\n            repository: acme/app\n"
        )
    }

    async fn umpire(&self) -> Umpire {
        Umpire::start(&self.yaml(&self.github_authority())).await
    }

    /// The verdict once a legacy `.sig` layer of `leaf`'s signature (with `entry`) is pushed.
    async fn legacy_verdict(
        &self,
        leaf: &Leaf,
        payload: Vec<u8>,
        signature: &[u8],
        entry: Option<&LogEntry>,
    ) -> VerifyResponse {
        let layer = self
            .sigstore
            .legacy_layer_from(leaf, payload, signature, entry);
        self.push_legacy(layer).await;
        verify(&self.umpire().await, &self.image()).await
    }

    async fn push_legacy(&self, layer: cosign::Blob) {
        self.registry
            .push_signatures(REPO, &self.digest, vec![layer])
            .await;
    }

    fn payload(&self) -> Vec<u8> {
        payload(&format!("{}/{REPO}", self.registry.host()), &self.digest)
    }

    /// Attaches `bundle_json` as an OCI 1.1 referrer through the `sha256-<hex>` fallback tag.
    async fn push_referrer_bundle(&self, bundle_json: &str) {
        self.registry
            .push_referrer_bundles(REPO, &self.digest, &[bundle_json.to_owned()])
            .await;
    }
}

async fn verify(umpire: &Umpire, image: &str) -> VerifyResponse {
    umpire
        .client()
        .await
        .verify(VerifyRequest {
            image: image.to_owned(),
            policy: String::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

/// Verifies afresh, past the verdict cache (for tests that change the registry between calls).
async fn verify_fresh(umpire: &Umpire, image: &str) -> VerifyResponse {
    umpire
        .client()
        .await
        .verify(VerifyRequest {
            image: image.to_owned(),
            bypass_cache: true,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|s| panic!("Verify({image}) failed: {s}"))
        .into_inner()
}

fn codes(r: &VerifyResponse) -> Vec<&str> {
    r.findings.iter().map(|f| f.code.as_str()).collect()
}

impl Setup {
    fn image(&self) -> String {
        format!("{}/{REPO}@{}", self.registry.host(), self.digest)
    }
}

#[tokio::test]
async fn legacy_keyless_signature_with_the_right_identity_is_allowed() {
    let s = Setup::new().await;
    s.push_legacy(
        s.sigstore
            .legacy_layer(&Identity::github("acme/app"), s.payload()),
    )
    .await;
    let r = verify(&s.umpire().await, &s.image()).await;
    assert!(r.allowed, "{r:?}");
    assert_eq!(codes(&r), ["SATISFIED"]);
    assert!(
        r.findings[0].authority.starts_with("keyless:test"),
        "{:?}",
        r.findings[0]
    );
}

#[tokio::test]
async fn referrer_bundle_with_the_right_identity_is_allowed() {
    let s = Setup::new().await;
    let statement = cosign_sign_statement(&format!("{}/{REPO}", s.registry.host()), &s.digest);
    s.push_referrer_bundle(
        &s.sigstore
            .dsse_bundle(&Identity::github("acme/app"), &statement),
    )
    .await;
    let r = verify(&s.umpire().await, &s.image()).await;
    assert!(r.allowed, "{r:?}");
}

#[tokio::test]
async fn referrer_bundle_for_another_digest_is_denied() {
    let s = Setup::new().await;
    let other = Image::new("other").digest();
    let statement = cosign_sign_statement("x", &other);
    s.push_referrer_bundle(
        &s.sigstore
            .dsse_bundle(&Identity::github("acme/app"), &statement),
    )
    .await;
    let r = verify(&s.umpire().await, &s.image()).await;
    assert!(!r.allowed);
    assert_eq!(codes(&r), ["DIGEST_MISMATCH"]);
}

#[tokio::test]
async fn wrong_subject_issuer_or_claim_is_identity_mismatch() {
    let s = Setup::new().await;
    let umpire = s.umpire().await;
    let mut wrong_issuer = Identity::github("acme/app");
    wrong_issuer.issuer = "https://accounts.google.com".into();
    let mut wrong_repo = Identity::github("acme/app");
    wrong_repo.repository = Some("acme/other".into());
    for identity in [Identity::github("evil/app"), wrong_issuer, wrong_repo] {
        s.push_legacy(s.sigstore.legacy_layer(&identity, s.payload()))
            .await;
        let r = verify_fresh(&umpire, &s.image()).await;
        assert!(!r.allowed, "{identity:?}");
        assert_eq!(codes(&r), ["IDENTITY_MISMATCH"], "{identity:?}");
        // The message shows the identity found next to the one expected.
        assert!(
            r.findings[0].message.contains(&identity.subject)
                || r.findings[0].message.contains(&identity.issuer)
        );
    }
}

#[tokio::test]
async fn a_subject_only_an_unanchored_regex_would_match_is_identity_mismatch() {
    let s = Setup::new().await;
    let mut sneaky = Identity::github("acme/app");
    sneaky.subject = "https://evil.example/https://github.com/acme/app".into();
    s.push_legacy(s.sigstore.legacy_layer(&sneaky, s.payload()))
        .await;
    let r = verify(&s.umpire().await, &s.image()).await;
    assert!(!r.allowed);
    assert_eq!(codes(&r), ["IDENTITY_MISMATCH"]);
}

#[tokio::test]
async fn expired_certificate_without_a_verified_time_is_denied() {
    let s = Setup::new().await;
    let now = time::OffsetDateTime::now_utc();
    let leaf = s.sigstore.issue_at(
        &Identity::github("acme/app"),
        now - time::Duration::days(2),
        now - time::Duration::days(2) + time::Duration::minutes(10),
    );
    let payload = s.payload();
    let signature = sign_with(&leaf, &payload);
    // No Rekor entry: nothing establishes when it was signed.
    s.push_legacy(
        s.sigstore
            .legacy_layer_from(&leaf, payload.clone(), &signature, None),
    )
    .await;
    let umpire = s.umpire().await;
    let r = verify(&umpire, &s.image()).await;
    assert!(!r.allowed);
    assert!(!r.retryable);
    // Logged now, long after the certificate expired: still denied.
    let entry = s.sigstore.log(
        TestSigstore::hashedrekord_body(&payload, &signature, &leaf.pem()),
        "hashedrekord",
    );
    s.push_legacy(
        s.sigstore
            .legacy_layer_from(&leaf, payload, &signature, Some(&entry)),
    )
    .await;
    let r = verify_fresh(&umpire, &s.image()).await;
    assert!(!r.allowed, "{r:?}");
}

fn sign_with(leaf: &support::sigstore::Leaf, msg: &[u8]) -> Vec<u8> {
    leaf.key
        .sign(&aws_lc_rs::rand::SystemRandom::new(), msg)
        .unwrap()
        .as_ref()
        .to_vec()
}

#[tokio::test]
async fn set_from_an_untrusted_log_is_tlog_invalid() {
    let s = Setup::new().await;
    let leaf = s.sigstore.issue(&Identity::github("acme/app"));
    let payload = s.payload();
    let signature = sign_with(&leaf, &payload);
    let rogue = aws_lc_rs::signature::EcdsaKeyPair::generate(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
    )
    .unwrap();
    let entry = s.sigstore.log_with(
        &rogue,
        TestSigstore::hashedrekord_body(&payload, &signature, &leaf.pem()),
        "hashedrekord",
    );
    let r = s
        .legacy_verdict(&leaf, payload, &signature, Some(&entry))
        .await;
    assert!(!r.allowed);
    assert_eq!(codes(&r), ["TLOG_INVALID"], "{r:?}");
}

#[tokio::test]
async fn log_entry_for_another_signature_is_tlog_invalid() {
    let s = Setup::new().await;
    let leaf = s.sigstore.issue(&Identity::github("acme/app"));
    let payload = s.payload();
    let signature = sign_with(&leaf, &payload);
    let other_signature = sign_with(&leaf, b"something else");
    let entry = s.sigstore.log(
        TestSigstore::hashedrekord_body(b"something else", &other_signature, &leaf.pem()),
        "hashedrekord",
    );
    let r = s
        .legacy_verdict(&leaf, payload, &signature, Some(&entry))
        .await;
    assert!(!r.allowed);
    assert_eq!(codes(&r), ["TLOG_INVALID"], "{r:?}");
}

#[tokio::test]
async fn certificate_from_an_untrusted_ca_is_certificate_invalid() {
    let s = Setup::new().await;
    let stranger = TestSigstore::new();
    let leaf = stranger.issue(&Identity::github("acme/app"));
    let payload = s.payload();
    let signature = sign_with(&leaf, &payload);
    // Logged in the trusted log, but issued by a CA nobody trusts.
    let entry = s.sigstore.log(
        TestSigstore::hashedrekord_body(&payload, &signature, &leaf.pem()),
        "hashedrekord",
    );
    let r = s
        .legacy_verdict(&leaf, payload, &signature, Some(&entry))
        .await;
    assert!(!r.allowed);
    assert_eq!(codes(&r), ["CERTIFICATE_INVALID"], "{r:?}");
}

#[tokio::test]
async fn keyless_signature_copied_from_another_image_is_digest_mismatch() {
    let s = Setup::new().await;
    let elsewhere = payload("x", &Image::new("elsewhere").digest());
    s.push_legacy(
        s.sigstore
            .legacy_layer(&Identity::github("acme/app"), elsewhere),
    )
    .await;
    let r = verify(&s.umpire().await, &s.image()).await;
    assert!(!r.allowed);
    assert_eq!(codes(&r), ["DIGEST_MISMATCH"]);
}

#[tokio::test]
async fn config_rejects_keyless_authorities_without_both_constraints() {
    let s = Setup::new().await;
    let only_issuer = format!("            issuer: {GITHUB_ISSUER}\n");
    let e =
        umpire::config::Config::from_yaml(&s.yaml(&only_issuer), std::path::Path::new("."), "t")
            .unwrap_err()
            .to_string();
    assert!(e.contains("keyless.subject"), "{e}");
    let only_subject = "            subject: me@example.com\n";
    let e =
        umpire::config::Config::from_yaml(&s.yaml(only_subject), std::path::Path::new("."), "t")
            .unwrap_err()
            .to_string();
    assert!(e.contains("keyless.issuer"), "{e}");
    let _ = StdDuration::ZERO;
    let _ = signature_manifest(vec![]);
}

#[tokio::test]
async fn key_authorities_accept_referrer_bundles_signed_with_their_key() {
    let s = Setup::new().await;
    let key = cosign::SigningKey::p256();
    let statement = cosign_sign_statement("x", &s.digest);
    s.push_referrer_bundle(&s.sigstore.keyed_dsse_bundle(&key, &statement))
        .await;
    let host = s.registry.host();
    let yaml = support::one_key_yaml(&host, ("release", &key.public_pem()), "prod", "");
    let umpire = Umpire::start(&yaml).await;
    let r = verify(&umpire, &s.image()).await;
    assert!(r.allowed, "{r:?}");

    // The same bundle under another key is not a signature by `release`.
    let other = cosign::SigningKey::p256();
    let yaml = support::one_key_yaml(&host, ("release", &other.public_pem()), "prod", "");
    let r = verify(&Umpire::start(&yaml).await, &s.image()).await;
    assert!(!r.allowed);
    assert_eq!(codes(&r), ["SIGNATURE_INVALID"]);
}

#[tokio::test]
async fn tuf_roots_start_embedded_keep_working_when_refresh_fails_and_ignore_planted_copies() {
    let s = Setup::new().await;
    let cache = tempfile::tempdir().unwrap();
    let mirror_root = cache.path().join("root.json");
    std::fs::write(&mirror_root, "{}").unwrap();
    let host = s.registry.host();
    let yaml = format!(
        "registries:\n  - host: {host}\n    insecure: true\ntrust:\n  sigstore:\n    refreshed: tuf\n  tuf:\n    cache_dir: {}\n    mirror: http://127.0.0.1:1/tuf\n    mirror_root: {}\npolicies:\n  - name: prod\n    images: [\"{host}/**\"]\n    signatures:\n      authorities:\n        - keyless:\n            trust: refreshed\n{}",
        cache.path().display(),
        mirror_root.display(),
        s.github_authority()
    );
    let config = umpire::config::Config::from_yaml(&yaml, std::path::Path::new("."), "t").unwrap();
    assert_eq!(config.tuf_roots, ["refreshed"]);

    // The mirror is unreachable: the refresh fails and writes nothing.
    assert!(
        umpire::trust::tuf::refresh_once(&config.tuf, "refreshed")
            .await
            .is_err()
    );
    assert!(
        std::fs::read_dir(cache.path())
            .unwrap()
            .filter_map(Result::ok)
            .all(|e| e.file_name() == "root.json" || e.file_name() == "metadata"),
        "a failed refresh leaves no root behind"
    );

    // Signed by the test instance, which the embedded public-good root does not trust.
    s.push_legacy(
        s.sigstore
            .legacy_layer(&Identity::github("acme/app"), s.payload()),
    )
    .await;
    let engine = support::engine(&yaml);
    let v = engine.verify(&s.image(), None).await.unwrap();
    assert!(!v.allowed && !v.retryable, "{v:?}");

    // A root planted in the cache folder (where earlier versions read a refreshed copy from, and
    // as a bare target file) is not TUF-verified: it is never loaded.
    std::fs::write(
        cache.path().join("refreshed.trusted_root.json"),
        s.sigstore.trusted_root_json(),
    )
    .unwrap();
    let targets = cache.path().join("metadata").join("targets");
    std::fs::create_dir_all(&targets).unwrap();
    std::fs::write(
        targets.join("trusted_root.json"),
        s.sigstore.trusted_root_json(),
    )
    .unwrap();
    let engine = support::engine(&yaml);
    let v = engine.verify(&s.image(), None).await.unwrap();
    assert!(!v.allowed, "a planted root chose what umpire trusts: {v:?}");
}

#[tokio::test]
async fn a_bundle_whose_chain_ends_with_the_trusted_root_verifies() {
    // Real v0.1 bundles (npm provenance from 2023) carry leaf, issuer and root in order: the root
    // byte-identical to the trusted root's CA is accepted (sigstore-python and -js verify them).
    let s = Setup::new().await;
    let ca = s.sigstore.ca_der.clone();
    let r = verify_with_chain_ending(&s, &ca).await;
    assert!(r.allowed, "{r:?}");
}

/// The image signed with a DSSE bundle whose certificate chain has `last` appended.
async fn verify_with_chain_ending(s: &Setup, last: &[u8]) -> VerifyResponse {
    let statement = cosign_sign_statement(&format!("{}/{REPO}", s.registry.host()), &s.digest);
    let bundle = s
        .sigstore
        .dsse_bundle(&Identity::github("acme/app"), &statement);
    let mut bundle: serde_json::Value = serde_json::from_str(&bundle).unwrap();
    bundle
        .pointer_mut("/verificationMaterial/x509CertificateChain/certificates")
        .and_then(serde_json::Value::as_array_mut)
        .expect("a chain")
        .push(serde_json::json!({
            "rawBytes": base64::engine::general_purpose::STANDARD.encode(last)
        }));
    s.push_referrer_bundle(&bundle.to_string()).await;
    verify(&s.umpire().await, &s.image()).await
}

#[tokio::test]
async fn a_bundle_whose_chain_carries_a_root_the_trusted_root_lacks_is_certificate_invalid() {
    // bundle-with-root-cert of the conformance corpus, without an inclusion proof: only a SET.
    // Here the root the chain carries is self-signed and not the trusted root's.
    let s = Setup::new().await;
    let stranger = {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().der().to_vec()
    };
    let r = verify_with_chain_ending(&s, &stranger).await;
    assert!(!r.allowed, "{r:?}");
    assert_eq!(codes(&r), ["CERTIFICATE_INVALID"], "{r:?}");
    assert!(r.findings[0].message.contains("root"), "{r:?}");
}

/// The `key` authority's transparency-log rule: no log needed by default; with
/// `transparency_log: required` an entry that verifies under the named root's log and binds this
/// signature, for every form a keyed signature takes.
mod keyed_transparency_log {
    use super::*;
    use support::cosign::{SigningKey, attestation_layer, statement};

    fn yaml(s: &Setup, key: &SigningKey, authority: &str, attest: bool) -> String {
        let host = s.registry.host();
        let requirement = if attest {
            format!(
                "    attestations:\n      - type: {}\n        authorities:\n          - {authority}\n",
                cosign::SLSA_V1
            )
        } else {
            format!("    signatures:\n      authorities:\n        - {authority}\n")
        };
        let mut pem = String::new();
        for line in key.public_pem().lines() {
            pem.push_str(&format!("      {line}\n"));
        }
        format!(
            "registries:\n  - host: {host}\n    insecure: true\ntrust:\n  keys:\n    release: |\n{pem}  sigstore:\n    test: {}\npolicies:\n  - name: prod\n    images: [\"{host}/**\"]\n{requirement}",
            s.root_path.display()
        )
    }

    const REQUIRED: &str = "{ key: release, transparency_log: required, trust: test }";

    async fn image(s: &Setup, label: &str) -> String {
        s.registry.push_image(REPO, label, &Image::new(label)).await
    }

    fn reference(s: &Setup, digest: &str) -> String {
        format!("{}/{REPO}@{digest}", s.registry.host())
    }

    #[tokio::test]
    async fn keyed_bundles_verify_with_or_without_a_log_entry_under_a_plain_key_authority() {
        let s = Setup::new().await;
        let key = SigningKey::p256();
        let umpire = Umpire::start(&yaml(&s, &key, "key: release", false)).await;

        let unlogged = image(&s, "unlogged").await;
        let bundle =
            TestSigstore::unlogged_keyed_dsse_bundle(&key, &cosign_sign_statement("x", &unlogged));
        s.registry
            .push_referrer_bundles(REPO, &unlogged, &[bundle])
            .await;
        let r = verify(&umpire, &reference(&s, &unlogged)).await;
        assert!(r.allowed, "{r:?}");

        // Unlogged, but about another image: a copied signature is not this image's.
        let copied = image(&s, "copied").await;
        let bundle =
            TestSigstore::unlogged_keyed_dsse_bundle(&key, &cosign_sign_statement("x", &unlogged));
        s.registry
            .push_referrer_bundles(REPO, &copied, &[bundle])
            .await;
        let r = verify(&umpire, &reference(&s, &copied)).await;
        assert!(!r.allowed, "{r:?}");

        // Unlogged and signed by another key.
        let forged = image(&s, "forged").await;
        let bundle = TestSigstore::unlogged_keyed_dsse_bundle(
            &SigningKey::p256(),
            &cosign_sign_statement("x", &forged),
        );
        s.registry
            .push_referrer_bundles(REPO, &forged, &[bundle])
            .await;
        let r = verify(&umpire, &reference(&s, &forged)).await;
        assert!(!r.allowed, "{r:?}");
        assert_eq!(codes(&r), ["SIGNATURE_INVALID"]);

        let logged = image(&s, "logged").await;
        let bundle = s
            .sigstore
            .keyed_dsse_bundle(&key, &cosign_sign_statement("x", &logged));
        s.registry
            .push_referrer_bundles(REPO, &logged, &[bundle])
            .await;
        assert!(verify(&umpire, &reference(&s, &logged)).await.allowed);
    }

    #[tokio::test]
    async fn required_log_entries_are_enforced_for_bundles_sig_layers_and_att_layers() {
        let s = Setup::new().await;
        let key = SigningKey::p256();
        let umpire = Umpire::start(&yaml(&s, &key, REQUIRED, false)).await;

        // A bundle logged in the test root's log: allowed. The same signature unlogged: denied.
        let logged = image(&s, "logged").await;
        let bundle = s
            .sigstore
            .keyed_dsse_bundle(&key, &cosign_sign_statement("x", &logged));
        s.registry
            .push_referrer_bundles(REPO, &logged, &[bundle])
            .await;
        let r = verify(&umpire, &reference(&s, &logged)).await;
        assert!(r.allowed, "{r:?}");

        let unlogged = image(&s, "unlogged").await;
        let bundle =
            TestSigstore::unlogged_keyed_dsse_bundle(&key, &cosign_sign_statement("x", &unlogged));
        s.registry
            .push_referrer_bundles(REPO, &unlogged, &[bundle])
            .await;
        let r = verify(&umpire, &reference(&s, &unlogged)).await;
        assert!(!r.allowed, "{r:?}");
        assert_eq!(codes(&r), ["TLOG_INVALID"]);

        // Logged, but in a log the named root does not trust.
        let elsewhere = image(&s, "elsewhere").await;
        let bundle =
            TestSigstore::new().keyed_dsse_bundle(&key, &cosign_sign_statement("x", &elsewhere));
        s.registry
            .push_referrer_bundles(REPO, &elsewhere, &[bundle])
            .await;
        let r = verify(&umpire, &reference(&s, &elsewhere)).await;
        assert!(!r.allowed, "{r:?}");
        assert_eq!(codes(&r), ["TLOG_INVALID"]);

        // Legacy `.sig` layers: with cosign's hashedrekord entry, and without any.
        let sig_logged = image(&s, "sig-logged").await;
        let layer = s.sigstore.keyed_legacy_layer(
            &key,
            payload(&format!("{}/{REPO}", s.registry.host()), &sig_logged),
        );
        s.registry
            .push_signatures(REPO, &sig_logged, vec![layer])
            .await;
        let r = verify(&umpire, &reference(&s, &sig_logged)).await;
        assert!(r.allowed, "{r:?}");

        let sig_plain = image(&s, "sig-plain").await;
        let layer = cosign::signature_layer(
            &key,
            payload(&format!("{}/{REPO}", s.registry.host()), &sig_plain),
        );
        s.registry
            .push_signatures(REPO, &sig_plain, vec![layer])
            .await;
        let r = verify(&umpire, &reference(&s, &sig_plain)).await;
        assert!(!r.allowed, "{r:?}");
        assert_eq!(codes(&r), ["TLOG_INVALID"]);
        assert!(
            r.findings[0].message.contains("transparency-log entry"),
            "{r:?}"
        );

        // A `.sig` entry for another payload does not bind this signature.
        let sig_swapped = image(&s, "sig-swapped").await;
        let mut layer = cosign::signature_layer(
            &key,
            payload(&format!("{}/{REPO}", s.registry.host()), &sig_swapped),
        );
        let other = s.sigstore.keyed_legacy_layer(
            &key,
            payload(&format!("{}/{REPO}", s.registry.host()), &sig_logged),
        );
        layer.annotations.extend(
            other
                .annotations
                .into_iter()
                .filter(|(k, _)| k == "dev.sigstore.cosign/bundle"),
        );
        s.registry
            .push_signatures(REPO, &sig_swapped, vec![layer])
            .await;
        let r = verify(&umpire, &reference(&s, &sig_swapped)).await;
        assert!(!r.allowed, "{r:?}");
    }

    #[tokio::test]
    async fn required_log_entries_are_enforced_for_keyed_att_layers() {
        let s = Setup::new().await;
        let key = SigningKey::p256();
        let umpire = Umpire::start(&yaml(&s, &key, REQUIRED, true)).await;
        let predicate = serde_json::json!({"buildDefinition": {}, "runDetails": {}});

        let logged = image(&s, "att-logged").await;
        let layer = s.sigstore.keyed_intoto_layer(
            &key,
            &statement(&logged, cosign::SLSA_V1, predicate.clone()),
        );
        s.registry
            .push_attestations(REPO, &logged, vec![layer])
            .await;
        let r = verify(&umpire, &reference(&s, &logged)).await;
        assert!(r.allowed, "{r:?}");

        let plain = image(&s, "att-plain").await;
        let layer = attestation_layer(
            Some(&key),
            &statement(&plain, cosign::SLSA_V1, predicate.clone()),
        );
        s.registry
            .push_attestations(REPO, &plain, vec![layer])
            .await;
        let r = verify(&umpire, &reference(&s, &plain)).await;
        assert!(!r.allowed, "{r:?}");
        assert_eq!(codes(&r), ["TLOG_INVALID"]);

        // Without the requirement, the same unlogged layer is enough.
        let relaxed = Umpire::start(&yaml(&s, &key, "key: release", true)).await;
        assert!(verify(&relaxed, &reference(&s, &plain)).await.allowed);
    }

    #[test]
    fn a_required_log_names_a_configured_root() {
        let s_root = TestSigstore::new().trusted_root_json();
        let (_dir, root) = config_file(&s_root);
        let key = SigningKey::p256();
        let mut pem = String::new();
        for line in key.public_pem().lines() {
            pem.push_str(&format!("      {line}\n"));
        }
        let config = |authority: &str| {
            format!(
                "trust:\n  keys:\n    release: |\n{pem}  sigstore:\n    test: {}\npolicies:\n  - name: p\n    images: [\"r.example/**\"]\n    signatures:\n      authorities:\n        - {authority}\n",
                root.display()
            )
        };
        let load = |authority: &str| {
            umpire::config::Config::from_yaml(&config(authority), std::path::Path::new("."), "t")
        };
        assert!(load(REQUIRED).is_ok());
        let err = load("{ key: release, transparency_log: required }")
            .unwrap_err()
            .to_string();
        assert!(err.contains("trust"), "{err}");
        let err = load("{ key: release, transparency_log: required, trust: nowhere }")
            .unwrap_err()
            .to_string();
        assert!(err.contains("nowhere"), "{err}");
        assert!(load("{ key: release, trust: test }").is_err());
    }
}

/// A root with no transparency log and no CT log (GitHub's instance): a verified RFC 3161 timestamp
/// is the signing time, and nothing else stands in for it.
mod tsa_only_root {
    use super::*;
    use std::path::PathBuf;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/tsa-only")
            .join(name)
    }

    fn read(name: &str) -> String {
        std::fs::read_to_string(fixture(name)).unwrap()
    }

    async fn push_fixture_image(registry: &Registry) -> String {
        for name in ["config.json", "layer"] {
            let bytes = std::fs::read(fixture(name)).unwrap();
            registry
                .push_blob(REPO, &cosign::Blob::new("application/octet-stream", bytes))
                .await;
        }
        let manifest = std::fs::read(fixture("manifest.json")).unwrap();
        registry
            .push_manifest(REPO, "v1", &manifest, cosign::OCI_MANIFEST)
            .await;
        cosign::sha256(&manifest)
    }

    fn yaml(host: &str) -> String {
        format!(
            "registries:\n  - host: {host}\n    insecure: true\ntrust:\n  sigstore:\n    gh: {}\npolicies:\n  - name: prod\n    images: [\"{host}/**\"]\n    attestations:\n      - type: {}\n        authorities:\n          - keyless:\n              trust: gh\n              issuer: {}\n              subject: {}\n",
            fixture("trusted_root.json").display(),
            cosign::SLSA_V1,
            read("issuer"),
            read("identity"),
        )
    }

    #[tokio::test]
    async fn a_bundle_timestamped_by_the_roots_tsa_verifies_and_one_without_is_denied() {
        let registry = Registry::start().await;
        let digest = push_fixture_image(&registry).await;
        let umpire = Umpire::start(&yaml(&registry.host())).await;
        let image = format!("{}/{REPO}@{digest}", registry.host());

        registry
            .push_referrer_bundles(
                REPO,
                &digest,
                &[read("bundle-without-timestamp.sigstore.json")],
            )
            .await;
        let r = verify_fresh(&umpire, &image).await;
        assert!(!r.allowed, "{r:?}");
        assert_eq!(codes(&r), ["ATTESTATION_INVALID"]);
        assert!(r.findings[0].message.contains("RFC 3161"), "{r:?}");

        registry
            .push_referrer_bundles(REPO, &digest, &[read("bundle.sigstore.json")])
            .await;
        let r = verify_fresh(&umpire, &image).await;
        assert!(r.allowed, "{r:?}");
    }

    #[test]
    fn conformance_verify_bundle_takes_the_same_path() {
        let digest = format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                std::fs::read(fixture("manifest.json")).unwrap()
            ))
        );
        let run = |bundle: &str| {
            std::process::Command::new(env!("CARGO_BIN_EXE_umpire"))
                .args(["conformance", "verify-bundle", "--bundle"])
                .arg(fixture(bundle))
                .args(["--certificate-identity", &read("identity")])
                .args(["--certificate-oidc-issuer", &read("issuer")])
                .arg("--trusted-root")
                .arg(fixture("trusted_root.json"))
                .arg(&digest)
                .output()
                .unwrap()
        };
        assert_eq!(run("bundle.sigstore.json").status.code(), Some(0));
        let out = run("bundle-without-timestamp.sigstore.json");
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 3161"));
    }

    #[test]
    fn a_timestamp_alone_is_not_enough_under_a_root_with_transparency_logs() {
        // The same bundle and root, the root now listing a transparency log: as cosign requires
        // by default, a keyless signature must then be in it.
        let mut root: serde_json::Value = serde_json::from_str(&read("trusted_root.json")).unwrap();
        let with_log: serde_json::Value =
            serde_json::from_str(&TestSigstore::new().trusted_root_json()).unwrap();
        root["tlogs"] = with_log["tlogs"].clone();
        let (_dir, root_path) = config_file(&root.to_string());
        let digest = format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                std::fs::read(fixture("manifest.json")).unwrap()
            ))
        );
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_umpire"))
            .args(["conformance", "verify-bundle", "--bundle"])
            .arg(fixture("bundle.sigstore.json"))
            .args(["--certificate-identity", &read("identity")])
            .args(["--certificate-oidc-issuer", &read("issuer")])
            .arg("--trusted-root")
            .arg(&root_path)
            .arg(&digest)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("no transparency-log entry"), "{stderr}");
    }

    #[test]
    fn the_github_root_is_built_in_and_has_no_transparency_log() {
        let yaml = "trust:\n  sigstore:\n    gh: github\npolicies:\n  - name: p\n    images: [\"ghcr.io/acme/**\"]\n    signatures:\n      authorities:\n        - keyless:\n            trust: gh\n            issuer: https://token.actions.githubusercontent.com\n            subject_regex: https://github\\.com/acme/.+\n";
        let config =
            umpire::config::Config::from_yaml(yaml, std::path::Path::new("."), "t").unwrap();
        let root = config.sigstore.get("gh").expect("the github root");
        assert!(!root.has_tlogs());
    }
}

/// Legacy keyless `.att` layers logged as Rekor `intoto` 0.0.1 entries, which umpire verifies
/// step by step itself (sigstore-verify does not read them): each step refuses its forgery.
mod legacy_intoto_attestations {
    use super::*;
    use support::cosign::statement;
    use support::sigstore::Identity;
    use time::{Duration as TimeDuration, OffsetDateTime};

    fn yaml(s: &Setup, root: &std::path::Path) -> String {
        let host = s.registry.host();
        format!(
            "registries:\n  - host: {host}\n    insecure: true\ntrust:\n  sigstore:\n    test: {}\npolicies:\n  - name: prod\n    images: [\"{host}/**\"]\n    attestations:\n      - type: {}\n        authorities:\n          - keyless:\n              trust: test\n              issuer: {GITHUB_ISSUER}\n              subject_regex: https://github\\.com/acme/.+\n",
            root.display(),
            cosign::SLSA_V1
        )
    }

    fn provenance(s: &Setup) -> Vec<u8> {
        statement(
            &s.digest,
            cosign::SLSA_V1,
            serde_json::json!({"buildDefinition": {}, "runDetails": {}}),
        )
    }

    async fn verdict(s: &Setup, root: &std::path::Path, layer: cosign::Blob) -> VerifyResponse {
        s.registry
            .push_attestations(REPO, &s.digest, vec![layer])
            .await;
        verify_fresh(&Umpire::start(&yaml(s, root)).await, &s.image()).await
    }

    fn assert_invalid(r: &VerifyResponse, reason: &str) {
        assert!(!r.allowed, "{r:?}");
        assert_eq!(codes(r), ["ATTESTATION_INVALID"], "{r:?}");
        assert!(
            r.findings[0].message.contains(reason),
            "expected {reason:?}: {r:?}"
        );
    }

    #[tokio::test]
    async fn a_minted_intoto_attestation_verifies() {
        let s = Setup::new().await;
        let layer = s
            .sigstore
            .keyless_intoto_layer(&Identity::github("acme/app"), &provenance(&s));
        let r = verdict(&s, &s.root_path, layer).await;
        assert!(r.allowed, "{r:?}");
    }

    #[tokio::test]
    async fn an_entry_naming_another_certificate_is_denied() {
        let s = Setup::new().await;
        let id = Identity::github("acme/app");
        let (leaf, other) = (s.sigstore.issue(&id), s.sigstore.issue(&id));
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let layer = s
            .sigstore
            .keyless_intoto_layer_from(&leaf, &provenance(&s), &other.pem(), now);
        assert_invalid(
            &verdict(&s, &s.root_path, layer).await,
            "records another signer",
        );
    }

    #[tokio::test]
    async fn a_certificate_not_valid_at_the_integrated_time_is_denied() {
        let s = Setup::new().await;
        let now = OffsetDateTime::now_utc();
        let leaf = s.sigstore.issue_at(
            &Identity::github("acme/app"),
            now - TimeDuration::minutes(30),
            now - TimeDuration::minutes(20),
        );
        let layer = s.sigstore.keyless_intoto_layer_from(
            &leaf,
            &provenance(&s),
            &leaf.pem(),
            now.unix_timestamp(),
        );
        assert_invalid(
            &verdict(&s, &s.root_path, layer).await,
            "not valid at the signing time",
        );
    }

    #[tokio::test]
    async fn an_integrated_time_in_the_future_is_denied() {
        let s = Setup::new().await;
        let leaf = s.sigstore.issue(&Identity::github("acme/app"));
        let later = OffsetDateTime::now_utc().unix_timestamp() + 3600;
        let layer =
            s.sigstore
                .keyless_intoto_layer_from(&leaf, &provenance(&s), &leaf.pem(), later);
        assert_invalid(&verdict(&s, &s.root_path, layer).await, "in the future");
    }

    #[tokio::test]
    async fn an_sct_from_an_untrusted_ct_log_is_denied() {
        let s = Setup::new().await;
        // The same root, but trusting another CT log.
        let mut root: serde_json::Value =
            serde_json::from_str(&s.sigstore.trusted_root_json()).unwrap();
        let other: serde_json::Value =
            serde_json::from_str(&TestSigstore::new().trusted_root_json()).unwrap();
        root["ctlogs"] = other["ctlogs"].clone();
        let (_dir, path) = config_file(&root.to_string());
        let layer = s
            .sigstore
            .keyless_intoto_layer(&Identity::github("acme/app"), &provenance(&s));
        assert_invalid(&verdict(&s, &path, layer).await, "SCT");
    }
}
