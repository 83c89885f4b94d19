//! BuildKit attestations (`docker buildx build --push`, provenance on by default) through
//! `umpire serve`: in-toto statements stored in the image's own index (Docker's "Image attestation
//! storage" layout), trusted only through the index's signature.

mod support;

use support::cosign::{Blob, Image, OCI_INDEX, SigningKey, payload, signature_layer};
use support::registry::Registry;
use support::served::Served;

const REPO: &str = "team/app";
const SLSA_V02: &str = "https://slsa.dev/provenance/v0.2";

/// BuildKit's SLSA v0.2 provenance predicate, in its shape.
fn buildkit_provenance() -> serde_json::Value {
    serde_json::json!({
        "builder": {"id": "https://github.com/acme/app/actions/runs/1"},
        "buildType": "https://mobyproject.org/buildkit@v1",
        "materials": [{"uri": "pkg:docker/cgr.dev/chainguard/static@latest", "digest": {"sha256": "a".repeat(64)}}],
        "invocation": {"configSource": {"entryPoint": "Dockerfile"}, "parameters": {"frontend": "dockerfile.v0"}},
        "metadata": {"buildInvocationID": "x", "completeness": {"parameters": true, "environment": true, "materials": false}, "reproducible": false},
    })
}

const SLSA_V1: &str = "https://slsa.dev/provenance/v1";
const SPDX: &str = "https://spdx.dev/Document";

/// BuildKit's SLSA v1 provenance predicate (`--provenance=mode=max,version=v1`), in its shape.
fn buildkit_provenance_v1() -> serde_json::Value {
    serde_json::json!({
        "buildDefinition": {
            "buildType": "https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md",
            "externalParameters": {"configSource": {"path": "Dockerfile"}, "request": {"frontend": "dockerfile.v0"}},
            "resolvedDependencies": [{"uri": "pkg:docker/cgr.dev/chainguard/static@latest", "digest": {"sha256": "a".repeat(64)}}],
        },
        "runDetails": {"builder": {"id": "https://github.com/acme/app/actions/runs/1"}, "metadata": {"invocationID": "x"}},
    })
}

/// An SPDX 2.3 document as BuildKit's syft scanner writes it.
fn syft_spdx() -> serde_json::Value {
    serde_json::json!({
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": "sbom", "documentNamespace": "https://anchore.com/syft/dir/sbom-1",
        "creationInfo": {"creators": ["Tool: syft-v1.0.0", "Tool: buildkit-v0.13.0"], "created": "2026-12-01T00:00:00Z"},
        "packages": [{"name": "musl", "SPDXID": "SPDXRef-Package-apk-musl", "versionInfo": "1.2.4-r2",
            "licenseConcluded": "MIT", "licenseDeclared": "MIT", "downloadLocation": "NOASSERTION",
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": "pkg:apk/alpine/musl@1.2.4-r2"}]}],
    })
}

/// An index with one linux/amd64 image and BuildKit's attestation manifest for it, whose
/// statement names `subject` (the platform manifest, unless a test says otherwise); its digest.
async fn push_buildkit_index(
    registry: &Registry,
    tag: &str,
    label: &str,
    subject: Option<&str>,
) -> String {
    let image = Image::new(label);
    let platform = registry
        .push_image(REPO, &format!("{tag}-amd64"), &image)
        .await;
    let statement = support::cosign::statement(
        subject.unwrap_or(&platform),
        SLSA_V02,
        buildkit_provenance(),
    );
    let in_toto = |predicate_type: &str, statement: Vec<u8>| {
        let mut layer = Blob::new("application/vnd.in-toto+json", statement);
        layer
            .annotations
            .push(("in-toto.io/predicate-type".into(), predicate_type.into()));
        layer
    };
    let about = subject.unwrap_or(&platform);
    // BuildKit's three statements: SLSA v0.2 (the default), v1 (`--provenance=version=v1`) and
    // an SPDX SBOM from its syft scanner (`--sbom=true`).
    let layers = vec![
        in_toto(SLSA_V02, statement),
        in_toto(
            SLSA_V1,
            support::cosign::statement(about, SLSA_V1, buildkit_provenance_v1()),
        ),
        in_toto(SPDX, support::cosign::statement(about, SPDX, syft_spdx())),
    ];
    let attestation = Image::from_parts(
        Blob::new(
            "application/vnd.oci.image.config.v1+json",
            br#"{"architecture":"unknown","os":"unknown","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec(),
        ),
        layers,
        &[],
    );
    registry
        .push_image(REPO, &format!("{tag}-att"), &attestation)
        .await;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": image.media_type, "digest": platform, "size": image.manifest.len(),
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": attestation.media_type, "digest": attestation.digest(), "size": attestation.manifest.len(),
             "platform": {"os": "unknown", "architecture": "unknown"},
             "annotations": {"vnd.docker.reference.type": "attestation-manifest",
                             "vnd.docker.reference.digest": platform}},
        ],
    });
    let bytes = serde_json::to_vec(&index).unwrap();
    registry.push_manifest(REPO, tag, &bytes, OCI_INDEX).await;
    support::cosign::sha256(&bytes)
}

fn policy_yaml(host: &str, key: &SigningKey) -> String {
    support::config_yaml(
        host,
        &[("release", &key.public_pem())],
        &format!(
            "  - name: built\n    images: [\"{host}/**\"]\n    signatures:\n      authorities: [ {{ key: release }} ]\n    attestations:\n      - type: {SLSA_V02}\n        source: buildkit\n        provenance:\n          build_types: [\"https://mobyproject.org/buildkit@v1\"]\n"
        ),
        "",
    )
}

#[tokio::test]
async fn a_signed_index_with_buildkit_provenance_meets_the_requirement_and_unsigned_does_not() {
    let registry = Registry::start().await;
    let host = registry.host();
    let key = SigningKey::p256();
    let signed = push_buildkit_index(&registry, "signed", "buildkit signed", None).await;
    registry
        .push_signatures(
            REPO,
            &signed,
            vec![signature_layer(
                &key,
                payload(&format!("{host}/{REPO}"), &signed),
            )],
        )
        .await;
    let unsigned = push_buildkit_index(&registry, "unsigned", "buildkit unsigned", None).await;
    let served = Served::start(&policy_yaml(&host, &key), &[]).await;

    let r = served.ask(&format!("{host}/{REPO}:signed")).await;
    assert!(r.allowed, "{r:?}");
    assert_eq!(r.digest, signed);
    assert!(
        r.findings
            .iter()
            .any(|f| f.code == "SATISFIED" && f.message.contains("BuildKit")),
        "{r:?}"
    );

    let r = served.ask(&format!("{host}/{REPO}@{unsigned}")).await;
    assert!(!r.allowed, "{r:?}");
    let codes: Vec<&str> = r.findings.iter().map(|f| f.code.as_str()).collect();
    assert!(codes.contains(&"NO_SIGNATURES"), "{r:?}");
    assert!(
        codes.contains(&"ATTESTATION_INVALID"),
        "never trusted without a verified index: {r:?}"
    );
}

#[tokio::test]
async fn a_statement_about_another_manifest_does_not_count() {
    let registry = Registry::start().await;
    let host = registry.host();
    let key = SigningKey::p256();
    let elsewhere = format!("sha256:{}", "c".repeat(64));
    let index =
        push_buildkit_index(&registry, "v1", "buildkit other subject", Some(&elsewhere)).await;
    registry
        .push_signatures(
            REPO,
            &index,
            vec![signature_layer(
                &key,
                payload(&format!("{host}/{REPO}"), &index),
            )],
        )
        .await;
    let served = Served::start(&policy_yaml(&host, &key), &[]).await;
    let r = served.ask(&format!("{host}/{REPO}@{index}")).await;
    assert!(!r.allowed, "{r:?}");
    assert!(
        r.findings
            .iter()
            .any(|f| f.code == "ATTESTATION_MISSING" && f.message.contains("platform manifest")),
        "{r:?}"
    );
}

#[test]
fn buildkit_requirements_are_trusted_through_signatures_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("umpire.yaml");
    std::fs::write(
        &path,
        format!("policies:\n  - name: p\n    images: [\"ghcr.io/**\"]\n    attestations:\n      - type: {SLSA_V02}\n        source: buildkit\n"),
    )
    .unwrap();
    let out = support::umpire_cli(
        &["config", "check", "--config", path.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        support::text(&out.stderr).contains("needs `signatures`"),
        "{}",
        support::text(&out.stderr)
    );
}

#[tokio::test]
async fn buildkit_v1_provenance_and_its_spdx_sbom_are_checked_too() {
    let registry = Registry::start().await;
    let host = registry.host();
    let key = SigningKey::p256();
    let index = push_buildkit_index(&registry, "v1", "buildkit v1 and sbom", None).await;
    registry
        .push_signatures(
            REPO,
            &index,
            vec![signature_layer(
                &key,
                payload(&format!("{host}/{REPO}"), &index),
            )],
        )
        .await;
    let yaml = |licenses: &str| {
        support::config_yaml(
            &host,
            &[("release", &key.public_pem())],
            &format!(
                "  - name: built\n    images: [\"{host}/**\"]\n    signatures:\n      authorities: [ {{ key: release }} ]\n    attestations:\n      - type: {SLSA_V1}\n        source: buildkit\n      - type: {SPDX}\n        source: buildkit\n        sbom:\n          require_packages: true\n          deny_licenses: [{licenses}]\n"
            ),
            "",
        )
    };
    let r = Served::start(&yaml("\"AGPL-*\""), &[])
        .await
        .ask(&format!("{host}/{REPO}@{index}"))
        .await;
    assert!(r.allowed, "{r:?}");
    let r = Served::start(&yaml("\"MIT\""), &[])
        .await
        .ask(&format!("{host}/{REPO}@{index}"))
        .await;
    assert!(!r.allowed, "{r:?}");
    assert!(
        r.findings
            .iter()
            .any(|f| f.code == "POLICY_VIOLATION" && f.message.contains("MIT")),
        "{r:?}"
    );
}
