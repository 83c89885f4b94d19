//! Attestations end to end: in-toto statements in DSSE envelopes, pushed to a real registry as
//! cosign `.att` layers (keyed) and as referrer bundles (keyless), judged by built-in checks and Rego.

mod support;

use support::cosign::{
    self, GITHUB_BUILDER, Image, SLSA_V1, SPDX, SigningKey, VULN, attestation_layer, statement,
};
use support::registry::Registry;
use support::sigstore::{GITHUB_ISSUER, Identity, TestSigstore};
use support::{config_file, config_yaml};
use umpire::verdict::{Code, Verdict};

const REPO: &str = "acme/app";

struct Setup {
    registry: Registry,
    key: SigningKey,
    digest: String,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Self {
        let registry = Registry::start().await;
        let digest = registry
            .push_image(REPO, "v1", &Image::new("attested"))
            .await;
        Self {
            registry,
            key: SigningKey::p256(),
            digest,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn image(&self) -> String {
        format!("{}/{REPO}@{}", self.registry.host(), self.digest)
    }

    /// A config whose one policy requires the attestations in `requirements` (YAML list items).
    fn engine(&self, requirements: &str) -> std::sync::Arc<umpire::engine::Engine> {
        let host = self.registry.host();
        let policy = format!(
            "  - name: supply-chain\n    images: [\"{host}/**\"]\n    attestations:\n{requirements}"
        );
        let yaml = config_yaml(&host, &[("release", &self.key.public_pem())], &policy, "");
        let path = self.dir.path().join("umpire.yaml");
        std::fs::write(&path, yaml).unwrap();
        umpire::engine::Engine::standalone(
            umpire::config::Config::load(&path).unwrap(),
            Default::default(),
        )
        .unwrap()
    }

    async fn attest(&self, layers: Vec<cosign::Blob>) {
        self.registry
            .push_attestations(REPO, &self.digest, layers)
            .await;
    }

    fn signed(&self, predicate_type: &str, predicate: serde_json::Value) -> cosign::Blob {
        attestation_layer(
            Some(&self.key),
            &statement(&self.digest, predicate_type, predicate),
        )
    }
}

const PROVENANCE: &str = "      - type: https://slsa.dev/provenance/v1\n        authorities: [ { key: release } ]\n        provenance:\n          builder_ids: [\"https://github.com/actions/runner/github-hosted\"]\n          source_repositories: [\"github.com/acme/*\"]\n          source_refs: [\"refs/heads/main\", \"refs/tags/v*\"]\n          base_images:\n            repositories: [\"cgr.dev/chainguard/**\"]\n";

fn codes(v: &Verdict) -> Vec<Code> {
    v.codes()
}

fn good_provenance() -> serde_json::Value {
    cosign::provenance(
        GITHUB_BUILDER,
        "acme/app",
        "refs/heads/main",
        &[(
            "pkg:docker/chainguard/static@latest?repository_url=cgr.dev",
            "sha256:00",
        )],
    )
}

#[tokio::test]
async fn provenance_from_an_allowed_builder_is_allowed() {
    let s = Setup::new().await;
    s.attest(vec![s.signed(SLSA_V1, good_provenance())]).await;
    let v = s.engine(PROVENANCE).verify(&s.image(), None).await.unwrap();
    assert!(v.allowed, "{v:?}");
    assert_eq!(codes(&v), [Code::Satisfied]);
    assert_eq!(v.findings[0].attestation_type, SLSA_V1);
}

#[tokio::test]
async fn provenance_from_another_builder_is_a_policy_violation_naming_it() {
    let s = Setup::new().await;
    let evil = cosign::provenance(
        "https://evil.example/builder",
        "acme/app",
        "refs/heads/main",
        &[(
            "pkg:docker/chainguard/static@latest?repository_url=cgr.dev",
            "sha256:00",
        )],
    );
    s.attest(vec![s.signed(SLSA_V1, evil)]).await;
    let v = s.engine(PROVENANCE).verify(&s.image(), None).await.unwrap();
    assert!(!v.allowed);
    assert_eq!(codes(&v), [Code::PolicyViolation]);
    assert!(
        v.findings[0]
            .message
            .contains("https://evil.example/builder"),
        "{}",
        v.findings[0].message
    );
}

#[tokio::test]
async fn base_images_must_come_from_allowed_repositories() {
    let s = Setup::new().await;
    let p = cosign::provenance(
        GITHUB_BUILDER,
        "acme/app",
        "refs/heads/main",
        &[("docker://docker.io/library/ubuntu:22.04", "sha256:11")],
    );
    s.attest(vec![s.signed(SLSA_V1, p)]).await;
    let v = s.engine(PROVENANCE).verify(&s.image(), None).await.unwrap();
    assert!(!v.allowed);
    assert_eq!(codes(&v), [Code::PolicyViolation]);
    assert!(
        v.findings[0].message.contains("docker.io/library/ubuntu"),
        "{}",
        v.findings[0].message
    );
}

#[tokio::test]
async fn a_statement_about_another_digest_is_attestation_invalid() {
    let s = Setup::new().await;
    let other = Image::new("another").digest();
    s.attest(vec![attestation_layer(
        Some(&s.key),
        &statement(&other, SLSA_V1, good_provenance()),
    )])
    .await;
    let v = s.engine(PROVENANCE).verify(&s.image(), None).await.unwrap();
    assert!(!v.allowed);
    assert_eq!(codes(&v), [Code::AttestationInvalid]);
    assert!(v.findings[0].message.contains(&other));
}

#[tokio::test]
async fn only_an_sbom_when_provenance_is_required_is_attestation_missing() {
    let s = Setup::new().await;
    s.attest(vec![s.signed(
        SPDX,
        cosign::spdx(&[("openssl", "3.0", "Apache-2.0", "pkg:deb/debian/openssl@3.0")]),
    )])
    .await;
    let v = s.engine(PROVENANCE).verify(&s.image(), None).await.unwrap();
    assert!(!v.allowed);
    assert_eq!(codes(&v), [Code::AttestationMissing]);
}

#[tokio::test]
async fn predicate_types_differing_by_a_suffix_or_case_are_not_counted() {
    let s = Setup::new().await;
    s.attest(vec![
        s.signed("https://slsa.dev/provenance/v1.1", good_provenance()),
        s.signed("https://SLSA.dev/provenance/v1", good_provenance()),
        s.signed("https://slsa.dev/provenance/v", good_provenance()),
    ])
    .await;
    let v = s.engine(PROVENANCE).verify(&s.image(), None).await.unwrap();
    assert!(!v.allowed);
    assert_eq!(codes(&v), [Code::AttestationMissing]);
}

#[tokio::test]
async fn only_signed_attestations_are_seen_by_policy() {
    let s = Setup::new().await;
    let evil = cosign::provenance(
        "https://evil.example/builder",
        "acme/app",
        "refs/heads/main",
        &[(
            "pkg:docker/chainguard/static@latest?repository_url=cgr.dev",
            "sha256:00",
        )],
    );
    // Signed but failing, next to an unsigned one that would pass: denied.
    s.attest(vec![
        s.signed(SLSA_V1, evil.clone()),
        attestation_layer(None, &statement(&s.digest, SLSA_V1, good_provenance())),
    ])
    .await;
    let v = s.engine(PROVENANCE).verify(&s.image(), None).await.unwrap();
    assert!(!v.allowed);
    assert_eq!(codes(&v), [Code::PolicyViolation]);

    // Signed and passing, next to an unsigned permissive-but-failing one: allowed.
    s.attest(vec![
        s.signed(SLSA_V1, good_provenance()),
        attestation_layer(None, &statement(&s.digest, SLSA_V1, evil)),
    ])
    .await;
    let v = s.engine(PROVENANCE).verify(&s.image(), None).await.unwrap();
    assert!(v.allowed, "{v:?}");

    // Signed by a key nobody accepts: not seen either.
    let stranger = SigningKey::p256();
    s.attest(vec![attestation_layer(
        Some(&stranger),
        &statement(&s.digest, SLSA_V1, good_provenance()),
    )])
    .await;
    let v = s.engine(PROVENANCE).verify(&s.image(), None).await.unwrap();
    assert!(!v.allowed);
    assert_eq!(codes(&v), [Code::AttestationInvalid]);
}

#[tokio::test]
async fn dsse_signed_over_the_raw_payload_instead_of_pae_is_attestation_invalid() {
    let s = Setup::new().await;
    let payload = statement(&s.digest, SLSA_V1, good_provenance());
    let blob = cosign::Blob::new(
        cosign::DSSE_ENVELOPE,
        cosign::envelope(Some(&s.key), &payload, true),
    );
    s.attest(vec![blob]).await;
    let v = s.engine(PROVENANCE).verify(&s.image(), None).await.unwrap();
    assert!(!v.allowed);
    assert_eq!(codes(&v), [Code::AttestationInvalid]);
}

const SBOM: &str = "      - type: https://spdx.dev/Document\n        authorities: [ { key: release } ]\n        sbom:\n          deny_packages: [\"pkg:npm/event-stream@*\"]\n          deny_licenses: [\"AGPL-*\"]\n          require_packages: true\n";

#[tokio::test]
async fn sbom_with_a_denied_license_or_package_is_denied_naming_it() {
    let s = Setup::new().await;
    let engine = s.engine(SBOM);
    s.attest(vec![s.signed(
        SPDX,
        cosign::spdx(&[("db", "1.0", "AGPL-3.0-only", "pkg:generic/db@1.0")]),
    )])
    .await;
    let v = engine.verify(&s.image(), None).await.unwrap();
    assert!(!v.allowed);
    assert_eq!(codes(&v), [Code::PolicyViolation]);
    assert!(
        v.findings[0].message.contains("AGPL-3.0-only"),
        "{}",
        v.findings[0].message
    );

    s.attest(vec![s.signed(
        SPDX,
        cosign::spdx(&[("event-stream", "3.3.6", "MIT", "pkg:npm/event-stream@3.3.6")]),
    )])
    .await;
    let v = engine
        .verify_with(&s.image(), None, bypass())
        .await
        .unwrap();
    assert!(!v.allowed);
    assert!(
        v.findings[0].message.contains("pkg:npm/event-stream@3.3.6"),
        "{}",
        v.findings[0].message
    );

    s.attest(vec![s.signed(
        SPDX,
        cosign::spdx(&[("openssl", "3.0", "Apache-2.0", "pkg:deb/debian/openssl@3.0")]),
    )])
    .await;
    let v = engine
        .verify_with(&s.image(), None, bypass())
        .await
        .unwrap();
    assert!(v.allowed, "{v:?}");

    s.attest(vec![s.signed(SPDX, cosign::spdx(&[]))]).await;
    let v = engine
        .verify_with(&s.image(), None, bypass())
        .await
        .unwrap();
    assert!(!v.allowed, "an SBOM must list at least one package");
}

fn bypass() -> umpire::engine::Options {
    umpire::engine::Options {
        bypass_cache: true,
        ..Default::default()
    }
}

const VULNS: &str = "      - type: https://cosign.sigstore.dev/attestation/vuln/v1\n        authorities: [ { key: release } ]\n        vulnerabilities:\n          max_severity: high\n          max_age: 168h\n          deny_cves: [CVE-2024-3094]\n";

#[tokio::test]
async fn a_vulnerability_report_too_old_or_with_a_critical_cve_is_denied() {
    let s = Setup::new().await;
    let engine = s.engine(VULNS);
    let now = jiff::Timestamp::now();
    let fresh = now.to_string();
    let old = (now - jiff::SignedDuration::from_hours(24 * 30)).to_string();

    s.attest(vec![s.signed(
        VULN,
        cosign::vuln_report(&fresh, &[("CVE-2023-1", "HIGH")]),
    )])
    .await;
    assert!(engine.verify(&s.image(), None).await.unwrap().allowed);

    s.attest(vec![s.signed(
        VULN,
        cosign::vuln_report(&fresh, &[("CVE-2023-2", "CRITICAL")]),
    )])
    .await;
    let v = engine
        .verify_with(&s.image(), None, bypass())
        .await
        .unwrap();
    assert!(!v.allowed);
    assert!(
        v.findings[0].message.contains("CVE-2023-2 (critical)"),
        "{}",
        v.findings[0].message
    );

    s.attest(vec![s.signed(VULN, cosign::vuln_report(&old, &[]))])
        .await;
    let v = engine
        .verify_with(&s.image(), None, bypass())
        .await
        .unwrap();
    assert!(!v.allowed);
    assert!(
        v.findings[0].message.contains("scan finished"),
        "{}",
        v.findings[0].message
    );

    s.attest(vec![s.signed(
        VULN,
        cosign::vuln_report(&fresh, &[("CVE-2024-3094", "LOW")]),
    )])
    .await;
    let v = engine
        .verify_with(&s.image(), None, bypass())
        .await
        .unwrap();
    assert!(!v.allowed);
    assert!(v.findings[0].message.contains("CVE-2024-3094"));
}

#[tokio::test]
async fn a_rego_rule_denying_denies_with_its_message() {
    let s = Setup::new().await;
    std::fs::write(
        s.dir.path().join("provenance.rego"),
        "package umpire\n\ndeny contains msg if {\n    input.predicate.buildDefinition.externalParameters.workflow.ref != \"refs/heads/main\"\n    msg := sprintf(\"%v must be built from main\", [input.image.reference])\n}\n",
    )
    .unwrap();
    let requirement = "      - type: https://slsa.dev/provenance/v1\n        authorities: [ { key: release } ]\n        rego: provenance.rego\n";
    let engine = s.engine(requirement);
    s.attest(vec![s.signed(
        SLSA_V1,
        cosign::provenance(GITHUB_BUILDER, "acme/app", "refs/heads/feature", &[]),
    )])
    .await;
    let v = engine.verify(&s.image(), None).await.unwrap();
    assert!(!v.allowed);
    assert_eq!(codes(&v), [Code::PolicyViolation]);
    assert!(
        v.findings[0].message.contains("must be built from main"),
        "{}",
        v.findings[0].message
    );

    s.attest(vec![s.signed(SLSA_V1, good_provenance())]).await;
    assert!(
        engine
            .verify_with(&s.image(), None, bypass())
            .await
            .unwrap()
            .allowed
    );
}

#[tokio::test]
async fn keyless_attestations_through_keyless_authorities() {
    let s = Setup::new().await;
    let sigstore = TestSigstore::new();
    let (_root_dir, root) = config_file(&sigstore.trusted_root_json());
    let host = s.registry.host();
    let yaml = format!(
        "registries:\n  - host: {host}\n    insecure: true\ntrust:\n  sigstore:\n    test: {}\npolicies:\n  - name: slsa\n    images: [\"{host}/**\"]\n    attestations:\n      - type: https://slsa.dev/provenance/v1\n        authorities:\n          - keyless:\n              trust: test\n              issuer: {GITHUB_ISSUER}\n              subject_regex: https://github\\.com/acme/.+\n        provenance:\n          builder_ids: [\"{GITHUB_BUILDER}\"]\n",
        root.display()
    );
    let engine = support::engine(&yaml);
    let good = sigstore.dsse_bundle(
        &Identity::github("acme/app"),
        &statement(&s.digest, SLSA_V1, good_provenance()),
    );
    s.registry
        .push_referrer_bundles(REPO, &s.digest, &[good])
        .await;
    let v = engine.verify(&s.image(), None).await.unwrap();
    assert!(v.allowed, "{v:?}");

    // Signed by another identity: not accepted.
    let wrong = sigstore.dsse_bundle(
        &Identity::github("evil/app"),
        &statement(&s.digest, SLSA_V1, good_provenance()),
    );
    s.registry
        .push_referrer_bundles(REPO, &s.digest, &[wrong])
        .await;
    let v = engine
        .verify_with(&s.image(), None, bypass())
        .await
        .unwrap();
    assert!(!v.allowed);
    assert_eq!(codes(&v), [Code::IdentityMismatch]);
}

#[tokio::test]
async fn a_vulnerability_report_umpire_cannot_read_denies_and_sarif_is_read() {
    let s = Setup::new().await;
    let engine = s.engine(VULNS);
    let fresh = jiff::Timestamp::now().to_string();
    // A scanner result in a shape umpire does not read: before, no finding was read, so the
    // critical CVE in it passed max_severity and deny_cves.
    let unreadable = serde_json::json!({
        "scanner": {"uri": "pkg:github/acme/scanner", "result": {"vulns": [{"cve": "CVE-2024-3094", "severity": "CRITICAL"}]}},
        "metadata": {"scanFinishedOn": fresh},
    });
    s.attest(vec![s.signed(VULN, unreadable)]).await;
    let v = engine.verify(&s.image(), None).await.unwrap();
    assert!(!v.allowed, "{v:?}");
    assert_eq!(codes(&v), [Code::AttestationInvalid]);
    assert!(
        v.findings[0].message.contains("SARIF 2.1.0"),
        "{}",
        v.findings[0].message
    );

    let sarif = serde_json::json!({
        "scanner": {"uri": "pkg:github/aquasecurity/trivy", "result": {
            "version": "2.1.0",
            "runs": [{"tool": {"driver": {"name": "Trivy", "rules": [
                {"id": "CVE-2023-9", "properties": {"security-severity": "9.8"}}]}},
                "results": [{"ruleId": "CVE-2023-9", "level": "error"}]}]}},
        "metadata": {"scanFinishedOn": fresh},
    });
    s.attest(vec![s.signed(VULN, sarif)]).await;
    let v = engine
        .verify_with(&s.image(), None, bypass())
        .await
        .unwrap();
    assert!(!v.allowed);
    assert_eq!(codes(&v), [Code::PolicyViolation]);
    assert!(
        v.findings[0].message.contains("CVE-2023-9 (critical)"),
        "{}",
        v.findings[0].message
    );
}

#[tokio::test]
async fn base_images_check_denies_a_provenance_naming_no_image() {
    let s = Setup::new().await;
    let p = cosign::provenance(GITHUB_BUILDER, "acme/app", "refs/heads/main", &[]);
    s.attest(vec![s.signed(SLSA_V1, p)]).await;
    let v = s.engine(PROVENANCE).verify(&s.image(), None).await.unwrap();
    assert!(!v.allowed, "{v:?}");
    assert_eq!(codes(&v), [Code::PolicyViolation]);
    assert!(
        v.findings[0].message.contains("no image dependency"),
        "{}",
        v.findings[0].message
    );
    let lenient = PROVENANCE.replace(
        "            repositories: [\"cgr.dev/chainguard/**\"]\n",
        "            repositories: [\"cgr.dev/chainguard/**\"]\n            allow_none: true\n",
    );
    let v = s.engine(&lenient).verify(&s.image(), None).await.unwrap();
    assert!(v.allowed, "{v:?}");
}
