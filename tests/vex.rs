//! OpenVEX in vulnerability checks, through `umpire serve`: a CVE a listed authority says does
//! not affect the image is not counted (and the finding says on whose word); the same statement
//! signed by anyone else, about another product, or superseded by a later one, removes nothing.

mod support;

use support::cosign::{self, Image, SigningKey, attestation_layer, statement};
use support::registry::Registry;
use support::served::Served;

const REPO: &str = "team/app";
const OPENVEX: &str = "https://openvex.dev/ns/v0.2.0";

fn openvex(statements: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": "https://acme.example/vex/2026-0001",
        "author": "Acme Security",
        "timestamp": "2026-12-01T00:00:00Z",
        "version": 1,
        "statements": statements,
    })
}

struct Setup {
    registry: Registry,
    digest: String,
    scanner: SigningKey,
    supplier: SigningKey,
    stranger: SigningKey,
}

impl Setup {
    async fn new(label: &str) -> Self {
        let registry = Registry::start().await;
        let digest = registry.push_image(REPO, "v1", &Image::new(label)).await;
        Self {
            registry,
            digest,
            scanner: SigningKey::p256(),
            supplier: SigningKey::p256(),
            stranger: SigningKey::p256(),
        }
    }

    /// The scan (one critical CVE) and the given VEX attestations, by their signers.
    async fn attest(&self, vex: &[(&SigningKey, serde_json::Value)]) {
        let now = jiff::Timestamp::now().to_string();
        let mut layers = vec![attestation_layer(
            Some(&self.scanner),
            &statement(
                &self.digest,
                cosign::VULN,
                cosign::vuln_report(&now, &[("CVE-2026-0001", "CRITICAL")]),
            ),
        )];
        for (key, doc) in vex {
            layers.push(attestation_layer(
                Some(key),
                &statement(&self.digest, OPENVEX, doc.clone()),
            ));
        }
        self.registry
            .push_attestations(REPO, &self.digest, layers)
            .await;
    }

    async fn serve(&self) -> Served {
        let host = self.registry.host();
        let policy = format!(
            "  - name: vulns\n    images: [\"{host}/**\"]\n    attestations:\n      - type: {}\n        authorities: [ {{ key: scanner }} ]\n        vulnerabilities:\n          max_severity: high\n          vex:\n            authorities: [ {{ key: supplier }} ]\n",
            cosign::VULN
        );
        let yaml = support::config_yaml(
            &host,
            &[
                ("scanner", &self.scanner.public_pem()),
                ("supplier", &self.supplier.public_pem()),
                ("stranger", &self.stranger.public_pem()),
            ],
            &policy,
            "",
        );
        Served::start(&yaml, &[]).await
    }

    fn image(&self) -> String {
        format!("{}/{REPO}@{}", self.registry.host(), self.digest)
    }
}

#[tokio::test]
async fn a_signed_not_affected_statement_removes_the_cve_and_says_on_whose_word() {
    let s = Setup::new("vex allowed").await;
    let doc = openvex(serde_json::json!([{
        "vulnerability": {"name": "CVE-2026-0001"},
        "status": "not_affected",
        "justification": "vulnerable_code_not_in_execute_path",
    }]));
    s.attest(&[(&s.supplier, doc)]).await;
    let r = s.serve().await.ask(&s.image()).await;
    assert!(r.allowed, "{r:?}");
    assert!(
        r.findings.iter().any(|f| f.code == "SATISFIED"
            && f.message.contains("CVE-2026-0001")
            && f.message.contains("Acme Security")
            && f.message.contains("vulnerable_code_not_in_execute_path")),
        "{r:?}"
    );
}

#[tokio::test]
async fn vex_signed_by_another_key_removes_nothing_and_says_so() {
    let s = Setup::new("vex stranger").await;
    let doc = openvex(serde_json::json!([{
        "vulnerability": {"name": "CVE-2026-0001"},
        "status": "not_affected",
        "justification": "component_not_present",
    }]));
    s.attest(&[(&s.stranger, doc)]).await;
    let r = s.serve().await.ask(&s.image()).await;
    assert!(!r.allowed, "{r:?}");
    assert!(r.findings[0].message.contains("CVE-2026-0001"), "{r:?}");
    assert!(
        r.warnings
            .iter()
            .any(|w| w.message.contains("VEX") && w.message.contains("removes nothing")),
        "{r:?}"
    );
}

#[tokio::test]
async fn statements_for_other_products_affected_or_superseded_remove_nothing() {
    for (label, statements) in [
        (
            "another product",
            serde_json::json!([{
                "vulnerability": {"name": "CVE-2026-0001"},
                "products": [{"@id": "pkg:oci/other@sha256%3A0000000000000000000000000000000000000000000000000000000000000000"}],
                "status": "not_affected", "justification": "component_not_present",
            }]),
        ),
        (
            "affected",
            serde_json::json!([{"vulnerability": {"name": "CVE-2026-0001"}, "status": "affected"}]),
        ),
        (
            "under investigation",
            serde_json::json!([{"vulnerability": {"name": "CVE-2026-0001"}, "status": "under_investigation"}]),
        ),
        (
            "superseded",
            serde_json::json!([
                {"vulnerability": {"name": "CVE-2026-0001"}, "status": "not_affected",
                 "justification": "component_not_present", "timestamp": "2026-11-01T00:00:00Z"},
                {"vulnerability": {"name": "CVE-2026-0001"}, "status": "affected",
                 "timestamp": "2026-11-15T00:00:00Z"},
            ]),
        ),
    ] {
        let s = Setup::new(label).await;
        s.attest(&[(&s.supplier, openvex(statements))]).await;
        let r = s.serve().await.ask(&s.image()).await;
        assert!(!r.allowed, "{label}: {r:?}");
    }
    // `fixed`, and a statement naming this image's digest as a pkg:oci purl, do remove it.
    let s = Setup::new("fixed for this image").await;
    let purl = format!("pkg:oci/app@{}", s.digest.replace(':', "%3A"));
    s.attest(&[(
        &s.supplier,
        openvex(serde_json::json!([{
            "vulnerability": {"name": "CVE-2026-0001"},
            "products": [{"@id": purl}],
            "status": "fixed",
        }])),
    )])
    .await;
    let r = s.serve().await.ask(&s.image()).await;
    assert!(r.allowed, "{r:?}");
}
