//! Notation envelopes from the Notary Project's own test data (tests/data/notation, cases.json)
//! through `umpire notation verify-envelope`: each case ends as the corpus expects (JWS and COSE,
//! with and without RFC 3161 countersignatures), failing under the validation the corpus names;
//! and the layout cases through the image path (module `image_path`).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/notation")
        .join(rel)
}

struct Run {
    code: Option<i32>,
    stderr: String,
}

fn run(case: &serde_json::Value, cases: &serde_json::Value, dir: &Path) -> Run {
    let (envelope, media_type, target) = match case["type"].as_str().unwrap() {
        "envelope" => (
            case["envelope"].as_str().unwrap(),
            if case["envelope"].as_str().unwrap().contains("cose") {
                "application/cose"
            } else {
                "application/jose+json"
            },
            case["target"].clone(),
        ),
        // The alpine layout's manifest, as both envelopes' payloads name it.
        _ => (
            case["envelope"].as_str().unwrap(),
            case["envelope_media_type"].as_str().unwrap(),
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": "sha256:19dbd2e48e921426ee8ace4dc892edfb2ecdc1d1a72d5416c83670c30acecef0",
                "size": 481,
            }),
        ),
    };
    let mut policy = case["policy"].clone();
    if policy.as_str() == Some("same as D14") {
        policy = cases["D14"]["policy"].clone();
    }
    if let Some(text) = policy.as_str().filter(|p| p.starts_with("MOCK_POLICY")) {
        let mut p = cases["D23"]["policy"].clone();
        let list = text
            .split_once('[')
            .and_then(|(_, rest)| rest.split_once(']'))
            .map(|(inner, _)| inner)
            .unwrap();
        let items: Vec<serde_json::Value> = if list.starts_with("x509.subject") {
            vec![list.into()]
        } else {
            list.split(", ").map(|s| s.trim().into()).collect()
        };
        let field = if text.contains("trustStores") {
            "trustStores"
        } else {
            "trustedIdentities"
        };
        p["trustPolicies"][0][field] = items.into();
        policy = p;
    }
    let policy_path = dir.join("trustpolicy.json");
    std::fs::write(&policy_path, policy.to_string()).unwrap();
    let digest = target["digest"].as_str().unwrap();
    let scope = case["reference"]
        .as_str()
        .unwrap()
        .replace("{target.digest}", digest);
    let at = case["verification_time"].as_str().filter(|t| *t != "now");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_umpire"));
    cmd.args(["notation", "verify-envelope", "--envelope"])
        .arg(data(envelope))
        .args(["--media-type", media_type, "--target-digest", digest])
        .args(["--target-size", &target["size"].to_string()])
        .args(["--target-media-type", target["mediaType"].as_str().unwrap()])
        .arg("--trust-policy")
        .arg(&policy_path)
        .arg("--trust-store")
        .arg(data("truststore"))
        .args(["--scope", &scope]);
    if let Some(at) = at {
        cmd.args(["--at", at]);
    }
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn every_envelope_case_of_the_corpus() {
    let cases: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data("cases.json")).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (id, case) in cases["cases"].as_object().unwrap() {
        let kind = case["type"].as_str().unwrap();
        if kind != "envelope" && kind != "oci-layout+detached-envelope" {
            continue;
        }
        let expected = case["expected"].as_str().unwrap();
        let r = run(case, &cases["cases"], dir.path());
        checked += 1;
        if expected.starts_with("PASS") {
            assert_eq!(r.code, Some(0), "{id}: expected {expected}; {}", r.stderr);
        } else {
            assert_eq!(r.code, Some(1), "{id}: expected {expected}; {}", r.stderr);
            // "FAIL <validation> (...)": the failure is reported under that validation.
            let validation = expected.split_whitespace().nth(1).unwrap_or_default();
            assert!(
                r.stderr.contains(validation),
                "{id}: expected a {validation} failure ({expected}); got {}",
                r.stderr
            );
        }
    }
    assert!(checked >= 14, "only {checked} envelope cases found");
}

#[test]
fn bad_input_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_umpire"))
        .args(["notation", "verify-envelope", "--envelope"])
        .arg(data("envelopes/alpine-v2/jws_signature.sig"))
        .args([
            "--media-type",
            "application/jose+json",
            "--target-digest",
            "sha256:00",
        ])
        .args(["--target-size", "1", "--target-media-type", "x"])
        .arg("--trust-policy")
        .arg(data("trustpolicies/invalid_format_trustpolicy.json"))
        .arg("--trust-store")
        .arg(data("truststore"))
        .args(["--scope", "local/alpine"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

mod image_path {
    //! The layout cases of the corpus (D01–D13, D28) through the image path: each layout pushed
    //! to the test registry (image, signature manifests with no top-level artifactType, and the
    //! `sha256-<hex>` referrers tag), then verified by the engine under a `notation` authority
    //! that points at the case's trust policy document; and a Notation-signed image over gRPC and
    //! the CLI under both config forms.

    use std::path::{Path, PathBuf};
    use std::process::Command;

    use super::data;
    use crate::support::cosign::Blob;
    use crate::support::registry::Registry;
    use umpire::verdict::{Code, Verdict};

    const IMAGE: &str = "sha256:b8479de3f88fb259a0a9ea82a5b2a052a1ef3c4ebbcfc61482d5ae4c831f8af9";

    /// Pushes every blob and manifest of `layout` into `repo`, tags as index.json names them.
    pub(super) async fn push_layout(registry: &Registry, repo: &str, layout: &Path) {
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let blob = |d: &str| {
            std::fs::read(
                layout
                    .join("blobs/sha256")
                    .join(d.trim_start_matches("sha256:")),
            )
            .unwrap()
        };
        let entries = index["manifests"].as_array().unwrap();
        let mut manifests = Vec::new();
        for e in entries {
            manifests.push(e["digest"].as_str().unwrap().to_owned());
        }
        // Every blob that is not a listed manifest or index.
        for entry in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
            let path = entry.unwrap().path();
            let name = format!("sha256:{}", path.file_name().unwrap().to_string_lossy());
            if !manifests.contains(&name) {
                registry
                    .push_blob(
                        repo,
                        &Blob::new("application/octet-stream", std::fs::read(&path).unwrap()),
                    )
                    .await;
            }
        }
        // Image manifests first (what indexes and signatures name), then indexes.
        let mut ordered: Vec<&serde_json::Value> = entries.iter().collect();
        ordered.sort_by_key(|e| e["mediaType"].as_str().unwrap().contains("index"));
        for e in ordered {
            let d = e["digest"].as_str().unwrap();
            let media_type = e["mediaType"].as_str().unwrap();
            let reference = e["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap_or(d);
            registry
                .push_manifest(repo, reference, &blob(d), media_type)
                .await;
            if reference != d {
                registry.push_manifest(repo, d, &blob(d), media_type).await;
            }
        }
    }

    /// A trust store folder holding, under each `TYPE:NAME` the case maps, that folder's files.
    fn store_for(case: &serde_json::Value, dir: &Path) -> PathBuf {
        let root = dir.join("store");
        let _ = std::fs::remove_dir_all(&root);
        if let Some(map) = case["trust_store_override"].as_object() {
            for (store, folder) in map {
                let (kind, name) = store.split_once(':').unwrap();
                let to = root.join("x509").join(kind).join(name);
                std::fs::create_dir_all(&to).unwrap();
                for f in std::fs::read_dir(data(folder.as_str().unwrap())).unwrap() {
                    let f = f.unwrap().path();
                    std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
                }
            }
        }
        std::fs::create_dir_all(root.join("x509")).unwrap();
        root
    }

    fn yaml(host: &str, store: &Path, authority: &str) -> String {
        format!(
            r#"registries:
  - host: {host}
    insecure: true
trust:
  notation:
    store: {store}
policies:
  - name: notation
    images: ["{host}/**"]
    signatures:
      authorities:
        - notation:
{authority}
"#,
            store = store.display()
        )
    }

    fn codes(v: &Verdict) -> Vec<Code> {
        v.findings.iter().map(|f| f.code).collect()
    }

    /// What the corpus expects, as a verdict: allowed (with or without warnings) or the code of
    /// the denial.
    fn check(id: &str, expected: &str, v: &Verdict) {
        let all = format!("{id}: expected {expected}; got {v:#?}");
        if expected == "PASS" || expected.starts_with("SKIPPED") {
            assert!(v.allowed, "{all}");
            assert!(v.warnings.is_empty(), "{all}");
            // Checked against the current time, the signing certificate bounds how long the
            // verdict may be kept.
            if expected == "PASS" {
                assert!(
                    v.valid_until.is_some_and(|t| t > jiff::Timestamp::now()),
                    "{all}"
                );
            }
            return;
        }
        if expected.starts_with("PASS with warning") {
            assert!(v.allowed && !v.warnings.is_empty(), "{all}");
            let what = expected
                .split_once('(')
                .and_then(|(_, r)| r.split_whitespace().next())
                .unwrap();
            assert!(v.warnings.iter().any(|w| w.message.contains(what)), "{all}");
            return;
        }
        assert!(!v.allowed, "{all}");
        let want = if expected.contains("no signature found") {
            Code::NoSignatures
        } else if expected.contains("no applicable trust policy") {
            Code::PolicyViolation
        } else if expected.contains("trusted identity") {
            Code::IdentityMismatch
        } else if expected.contains("chain not trusted") {
            Code::UntrustedSigner
        } else if expected.starts_with("FAIL authenticTimestamp") {
            Code::CertificateInvalid
        } else if expected.starts_with("FAIL expiry") || expected.starts_with("FAIL integrity") {
            Code::SignatureInvalid
        } else {
            panic!("{id}: no code known for {expected}")
        };
        assert!(codes(v).contains(&want), "{all}");
    }

    #[tokio::test]
    async fn every_layout_case_of_the_corpus() {
        let cases: serde_json::Value =
            serde_json::from_slice(&std::fs::read(data("cases.json")).unwrap()).unwrap();
        let registry = Registry::start().await;
        let host = registry.host();
        let dir = tempfile::tempdir().unwrap();
        let mut pushed = Vec::new();
        let mut checked = 0;
        for (id, case) in cases["cases"].as_object().unwrap() {
            if case["type"] != "oci-layout" {
                continue;
            }
            let layout = case["layout"].as_str().unwrap();
            let repo = layout.trim_start_matches("layouts/");
            if !pushed.contains(&repo.to_owned()) {
                push_layout(&registry, repo, &data(layout)).await;
                pushed.push(repo.to_owned());
            }
            let store = store_for(case, dir.path());
            let expected = case["expected"].as_str().unwrap();
            if case["verification_time"] != "now" {
                // A verification time in the past is for the offline command only (D10).
                let code = super::envelope_from_layout(id, case, &data(layout), &store, dir.path());
                assert_eq!(code, Some(0), "{id}: expected {expected}");
                checked += 1;
                continue;
            }
            let policy = data(case["policy"].as_str().unwrap());
            let authority = format!("            trust_policy: {}", policy.display());
            let engine = crate::support::engine(&yaml(&host, &store, &authority));
            let v = engine
                .verify(&format!("{host}/{repo}@{IMAGE}"), None)
                .await
                .unwrap();
            check(id, expected, &v);
            checked += 1;
        }
        assert!(checked >= 14, "only {checked} layout cases found");
    }

    #[tokio::test]
    async fn a_notation_signed_image_over_grpc_and_the_cli_under_both_config_forms() {
        let registry = Registry::start().await;
        let host = registry.host();
        push_layout(&registry, "e2e", &data("layouts/e2e-valid-signature")).await;
        push_layout(&registry, "unsigned", &data("layouts/e2e")).await;
        let dir = tempfile::tempdir().unwrap();
        let case =
            serde_json::json!({"trust_store_override": {"ca:e2e": "truststore/x509/ca/e2e"}});
        let store = store_for(&case, dir.path());
        let inline = "            trust_stores: [\"ca:e2e\"]\n            trusted_identities: [\"x509.subject: C=US, ST=WA, L=Seattle, O=Notary, CN=e2e\"]";
        let document = format!(
            "            trust_policy: {}",
            data("trustpolicies/valid_trusted_identity_trustpolicy.json").display()
        );
        let wrong = "            trust_stores: [\"ca:e2e\"]\n            trusted_identities: [\"x509.subject: C=US, ST=WA, O=Notary, CN=someone-else\"]";
        for (form, authority, allowed) in [
            ("inline", inline, true),
            ("trust_policy", document.as_str(), true),
            ("inline, another identity", wrong, false),
        ] {
            let config = yaml(&host, &store, authority);
            // gRPC
            let server = crate::support::Umpire::start(&config).await;
            let mut client = server.client().await;
            let signed = client
                .verify(umpire::proto::VerifyRequest {
                    image: format!("{host}/e2e:v1"),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(signed.allowed, allowed, "{form}: {signed:#?}");
            assert_eq!(signed.digest, IMAGE, "{form}");
            if allowed {
                assert!(
                    signed
                        .findings
                        .iter()
                        .any(|f| f.message.contains("CN=e2e") && f.message.contains("revocation")),
                    "{form}: {signed:#?}"
                );
            } else {
                assert!(
                    signed
                        .findings
                        .iter()
                        .any(|f| f.code == "IDENTITY_MISMATCH"),
                    "{form}: {signed:#?}"
                );
            }
            let unsigned = client
                .verify(umpire::proto::VerifyRequest {
                    image: format!("{host}/unsigned:v1"),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            assert!(!unsigned.allowed, "{form}");
            assert!(
                unsigned.findings.iter().any(|f| f.code == "NO_SIGNATURES"),
                "{form}"
            );
            server.stop().await.unwrap();
            // CLI
            let file = dir.path().join("umpire.yaml");
            std::fs::write(&file, &config).unwrap();
            let out = Command::new(env!("CARGO_BIN_EXE_umpire"))
                .args(["verify", "--config"])
                .arg(&file)
                .arg(format!("{host}/e2e:v1"))
                .env("DOCKER_CONFIG", "/nonexistent")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                out.status.code(),
                Some(if allowed { 0 } else { 1 }),
                "{form}: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Two authorities that differ only in level (one audit, one strict) under policies on the
    /// same image: the envelope the audit level admits must not count for the strict one.
    #[tokio::test]
    async fn an_audit_authority_does_not_vouch_for_a_strict_one() {
        let registry = Registry::start().await;
        let host = registry.host();
        push_layout(&registry, "e2e", &data("layouts/e2e-valid-signature")).await;
        let dir = tempfile::tempdir().unwrap();
        // A store that does not hold the signer's certificate.
        let case =
            serde_json::json!({"trust_store_override": {"ca:other": "truststore/x509/ca/e2e-new"}});
        let store = store_for(&case, dir.path());
        let statement = |level: &str| {
            format!(
                "            trust_stores: [\"ca:other\"]\n            trusted_identities: [\"*\"]\n            level: {level}"
            )
        };
        let audit_only = yaml(&host, &store, &statement("audit"));
        let v = crate::support::engine(&audit_only)
            .verify(&format!("{host}/e2e@{IMAGE}"), None)
            .await
            .unwrap();
        assert!(v.allowed && !v.warnings.is_empty(), "{v:#?}");
        let both = format!(
            "{}  - name: strict\n    images: [\"{host}/**\"]\n    signatures:\n      authorities:\n        - notation:\n{}\n",
            audit_only,
            statement("strict")
        );
        let v = crate::support::engine(&both)
            .verify(&format!("{host}/e2e@{IMAGE}"), None)
            .await
            .unwrap();
        assert!(!v.allowed, "{v:#?}");
        assert!(codes(&v).contains(&Code::UntrustedSigner), "{v:#?}");
    }

    #[test]
    fn notation_config_errors_are_load_errors() {
        let dir = tempfile::tempdir().unwrap();
        let case =
            serde_json::json!({"trust_store_override": {"ca:e2e": "truststore/x509/ca/e2e"}});
        let store = store_for(&case, dir.path());
        let load = |authority: &str| {
            umpire::Config::from_yaml(
                &yaml("registry.example", &store, authority),
                Path::new("."),
                "test",
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
        };
        // A store that does not exist.
        let err = load(
            "            trust_stores: [\"ca:missing\"]\n            trusted_identities: [\"*\"]",
        )
        .unwrap_err();
        assert!(err.contains("ca:missing"), "{err}");
        // Documents Notation rejects (D29–D34).
        for bad in [
            "unset_trusted_identity_trustpolicy.json",
            "wildcard_trust_store_trustpolicy.json",
            "invalid_format_trustpolicy.json",
            "override_integrity_for_permissive_trustpolicy.json",
        ] {
            let err = load(&format!(
                "            trust_policy: {}",
                data(&format!("trustpolicies/{bad}")).display()
            ))
            .unwrap_err();
            assert!(err.contains("notation"), "{bad}: {err}");
        }
        // Inline statements follow Notation's rules too: no wildcard store, identities required.
        assert!(load("            trust_stores: [\"ca:e2e\"]").is_err());
        assert!(load("            trust_stores: [\"ca:e2e\"]\n            trusted_identities: [\"x509.subject: CN=e2e\"]").is_err());
        assert!(
            load("            trust_stores: [\"ca:e2e\"]\n            trusted_identities: [\"*\"]")
                .is_ok()
        );
    }
}

/// Runs `umpire notation verify-envelope` on the signature a layout carries for its image, with
/// the case's policy and the verification time it gives.
fn envelope_from_layout(
    id: &str,
    case: &serde_json::Value,
    layout: &Path,
    store: &Path,
    dir: &Path,
) -> Option<i32> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let blob = |d: &str| {
        std::fs::read(
            layout
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    let image = &index["manifests"][0];
    let signature = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            serde_json::from_slice::<serde_json::Value>(&blob(m["digest"].as_str().unwrap()))
                .unwrap()
        })
        .find(|m| m["config"]["mediaType"] == "application/vnd.cncf.notary.signature")
        .unwrap_or_else(|| panic!("{id}: no signature in the layout"));
    let layer = &signature["layers"][0];
    let envelope = dir.join("envelope");
    std::fs::write(&envelope, blob(layer["digest"].as_str().unwrap())).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_umpire"))
        .args(["notation", "verify-envelope", "--envelope"])
        .arg(&envelope)
        .args(["--media-type", layer["mediaType"].as_str().unwrap()])
        .args(["--target-digest", image["digest"].as_str().unwrap()])
        .args(["--target-size", &image["size"].to_string()])
        .args(["--target-media-type", image["mediaType"].as_str().unwrap()])
        .arg("--trust-policy")
        .arg(data(case["policy"].as_str().unwrap()))
        .arg("--trust-store")
        .arg(store)
        .args(["--scope", case["reference"].as_str().unwrap()])
        .args(["--at", case["verification_time"].as_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.code() == Some(0),
        "{id}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.status.code()
}

mod artifacts {
    //! Ratify-style artifacts: an SPDX SBOM attached to an image as an OCI referrer (through the
    //! `sha256-<hex>` referrers tag, as `oras attach` writes it where the registry has no
    //! referrers API), signed in turn by a cosign key or a Notation signature attached to the
    //! artifact's manifest, enforced by a policy's `artifacts:` requirement.

    use sha2::Digest as _;

    use super::image_path::push_layout;
    use crate::support::cosign::{Blob, SigningKey, payload, signature_layer, spdx};
    use crate::support::registry::Registry;
    use umpire::verdict::Code;
    use umpire::verify::notation::Target;

    const IMAGE: &str = "sha256:b8479de3f88fb259a0a9ea82a5b2a052a1ef3c4ebbcfc61482d5ae4c831f8af9";
    const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

    fn digest_of(bytes: &[u8]) -> String {
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
    }

    /// Pushes an artifact manifest of `artifact_type` holding `content`, referring to `subject`
    /// (a manifest digest and size), and lists it in `subject`'s referrers tag with `siblings`.
    /// Returns (digest, size) of the artifact manifest.
    async fn attach(
        registry: &Registry,
        repo: &str,
        (subject, subject_size): (&str, usize),
        artifact_type: &str,
        config_type: &str,
        layer_type: &str,
        content: &[u8],
    ) -> (String, usize) {
        let config = Blob::new(config_type, b"{}".to_vec());
        let layer = Blob::new(layer_type, content.to_vec());
        registry.push_blob(repo, &config).await;
        registry.push_blob(repo, &layer).await;
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": config_type, "digest": config.digest(), "size": 2},
            "layers": [{"mediaType": layer_type, "digest": layer.digest(), "size": content.len()}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": subject_size},
        }))
        .unwrap();
        let digest = digest_of(&manifest);
        registry
            .push_manifest(repo, &digest, &manifest, OCI_MANIFEST)
            .await;
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest, "size": manifest.len(), "artifactType": artifact_type}],
        }))
        .unwrap();
        registry
            .push_manifest(repo, &subject.replace(':', "-"), &index, OCI_INDEX)
            .await;
        (digest, manifest.len())
    }

    /// A Notation JWS envelope (ES256, `notary.x509`) over `target` by a leaf of a fresh CA (as
    /// `hostile_envelopes` mints them); returns (envelope, the CA's PEM).
    fn notation_envelope(target: &Target) -> (Vec<u8>, String) {
        use super::hostile_envelopes::{envelope, payload, signer};
        let s = signer();
        let bytes = envelope(
            &s,
            &payload(target),
            serde_json::json!({}),
            &[],
            &[&s.leaf_der, &s.ca_der],
        );
        let ca_pem = pem::encode(&pem::Pem::new("CERTIFICATE", s.ca_der.clone()));
        (bytes, ca_pem)
    }

    fn config(host: &str, store: &std::path::Path, key_pem: &str, artifacts: &str) -> String {
        format!(
            r#"registries:
  - host: {host}
    insecure: true
trust:
  keys:
    release: |
{key}
  notation:
    store: {store}
policies:
  - name: sbom
    images: ["{host}/**"]
    artifacts:
{artifacts}
"#,
            key = key_pem
                .lines()
                .map(|l| format!("      {l}"))
                .collect::<Vec<_>>()
                .join("\n"),
            store = store.display()
        )
    }

    #[tokio::test]
    async fn a_signed_sbom_attached_as_a_referrer_is_enforced() {
        let registry = Registry::start().await;
        let host = registry.host();
        let layout = super::data("layouts/e2e");
        let sbom = serde_json::to_vec(&spdx(&[
            ("left-pad", "1.3.0", "MIT", "pkg:npm/left-pad@1.3.0"),
            ("event-stream", "3.3.6", "MIT", "pkg:npm/event-stream@3.3.6"),
        ]))
        .unwrap();
        let key = SigningKey::p256();
        let dir = tempfile::tempdir().unwrap();

        // cosign-signed SBOM in `keyed`; Notation-signed in `notation`; unsigned in `unsigned`.
        for repo in ["keyed", "notation", "unsigned"] {
            push_layout(&registry, repo, &layout).await;
        }
        let spdx_type = "application/spdx+json";
        let (keyed, _) = attach(
            &registry,
            "keyed",
            (IMAGE, 517),
            spdx_type,
            "application/vnd.oci.empty.v1+json",
            spdx_type,
            &sbom,
        )
        .await;
        registry
            .push_signatures(
                "keyed",
                &keyed,
                vec![signature_layer(
                    &key,
                    payload(&format!("{host}/keyed"), &keyed),
                )],
            )
            .await;
        let (signed, signed_size) = attach(
            &registry,
            "notation",
            (IMAGE, 517),
            spdx_type,
            "application/vnd.oci.empty.v1+json",
            spdx_type,
            &sbom,
        )
        .await;
        let (envelope, ca_pem) = notation_envelope(&Target {
            media_type: OCI_MANIFEST.into(),
            digest: signed.clone(),
            size: signed_size as u64,
        });
        let notary = "application/vnd.cncf.notary.signature";
        attach(
            &registry,
            "notation",
            (&signed, signed_size),
            notary,
            notary,
            "application/jose+json",
            &envelope,
        )
        .await;
        attach(
            &registry,
            "unsigned",
            (IMAGE, 517),
            spdx_type,
            "application/vnd.oci.empty.v1+json",
            spdx_type,
            &sbom,
        )
        .await;
        let store = dir.path().join("store");
        std::fs::create_dir_all(store.join("x509/ca/acme")).unwrap();
        std::fs::write(store.join("x509/ca/acme/root.pem"), &ca_pem).unwrap();

        let by_key = "      - type: application/spdx+json\n        authorities: [ { key: release } ]\n        sbom:\n          deny_licenses: [\"AGPL-*\"]\n";
        let by_notation = "      - type: application/spdx+json\n        authorities:\n          - notation:\n              trust_stores: [\"ca:acme\"]\n              trusted_identities: [\"x509.subject: C=US, ST=WA, O=Acme, CN=release\"]\n        sbom:\n          deny_licenses: [\"AGPL-*\"]\n";
        let denying = "      - type: application/spdx+json\n        authorities: [ { key: release } ]\n        sbom:\n          deny_packages: [\"pkg:npm/event-stream@*\"]\n";
        let verdict = |artifacts: &'static str, repo: &'static str| {
            let engine =
                crate::support::engine(&config(&host, &store, &key.public_pem(), artifacts));
            let image = format!("{host}/{repo}@{IMAGE}");
            async move { engine.verify(&image, None).await.unwrap() }
        };

        let v = verdict(by_key, "keyed").await;
        assert!(v.allowed, "{v:#?}");
        let v = verdict(by_notation, "notation").await;
        assert!(v.allowed, "{v:#?}");
        assert!(
            v.findings.iter().any(|f| f.code == Code::Satisfied),
            "{v:#?}"
        );
        // The content is checked: a denied package in the signed SBOM denies.
        let v = verdict(denying, "keyed").await;
        assert!(!v.allowed, "{v:#?}");
        assert!(
            v.findings
                .iter()
                .any(|f| f.code == Code::PolicyViolation && f.message.contains("event-stream")),
            "{v:#?}"
        );
        // An SBOM nobody signed, or signed by another authority, does not count.
        for (artifacts, repo) in [
            (by_key, "unsigned"),
            (by_notation, "keyed"),
            (by_key, "notation"),
        ] {
            let v = verdict(artifacts, repo).await;
            assert!(!v.allowed, "{repo}: {v:#?}");
            assert!(
                v.findings.iter().all(|f| f.attestation_type == spdx_type),
                "{repo}: {v:#?}"
            );
            assert!(
                v.findings
                    .iter()
                    .any(|f| f.message.contains("application/spdx+json")),
                "{repo}: {v:#?}"
            );
        }
        // No SBOM at all.
        push_layout(&registry, "bare", &layout).await;
        let v = verdict(by_key, "bare").await;
        assert!(!v.allowed, "{v:#?}");
        assert!(
            v.findings
                .iter()
                .any(|f| f.code == Code::AttestationMissing),
            "{v:#?}"
        );
    }
}

mod hostile_envelopes {
    //! Envelopes an attacker would send, minted here (a CA and a code-signing leaf, JWS ES256):
    //! each is refused for its own reason by the pure verification the image path uses.

    use base64::Engine as _;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    use umpire::verify::Check;
    use umpire::verify::notation::Target;
    use umpire::verify::notation_rules::{Level, Rules, TrustedIdentity, verify};

    pub(super) struct Signer {
        pub(super) ca_der: Vec<u8>,
        pub(super) leaf_der: Vec<u8>,
        leaf_key: KeyPair,
    }

    /// A fresh CA and a code-signing leaf (C=US, ST=WA, O=Acme, CN=release) it issued.
    pub(super) fn signer() -> Signer {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        ca.distinguished_name.push(DnType::CommonName, "Root");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
        for (t, v) in [
            (DnType::CountryName, "US"),
            (DnType::StateOrProvinceName, "WA"),
            (DnType::OrganizationName, "Acme"),
            (DnType::CommonName, "release"),
        ] {
            leaf.distinguished_name.push(t, v);
        }
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
        Signer {
            ca_der: ca_cert.der().to_vec(),
            leaf_der: leaf_cert.der().to_vec(),
            leaf_key,
        }
    }

    fn target() -> Target {
        Target {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: format!("sha256:{}", "ab".repeat(32)),
            size: 517,
        }
    }

    /// A JWS envelope by `s` over `payload`, with `extra` protected headers and `crit`.
    pub(super) fn envelope(
        s: &Signer,
        payload: &serde_json::Value,
        extra: serde_json::Value,
        crit: &[&str],
        chain: &[&[u8]],
    ) -> Vec<u8> {
        let mut protected = serde_json::json!({
            "alg": "ES256",
            "cty": "application/vnd.cncf.notary.payload.v1+json",
            "io.cncf.notary.signingScheme": "notary.x509",
            "io.cncf.notary.signingTime": jiff::Timestamp::now().to_string(),
        });
        for (k, v) in extra.as_object().unwrap() {
            protected[k] = v.clone();
        }
        let mut all_crit = vec!["io.cncf.notary.signingScheme"];
        all_crit.extend(crit);
        protected["crit"] = serde_json::json!(all_crit);
        envelope_with_protected(s, payload, &protected.to_string(), chain)
    }

    /// A JWS envelope by `s` over `payload` whose protected header is exactly `protected`.
    pub(super) fn envelope_with_protected(
        s: &Signer,
        payload: &serde_json::Value,
        protected: &str,
        chain: &[&[u8]],
    ) -> Vec<u8> {
        let b64u = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let protected = b64u(protected.as_bytes());
        let body = b64u(payload.to_string().as_bytes());
        let key = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &s.leaf_key.serialize_der(),
        )
        .unwrap();
        let sig = key
            .sign(
                &aws_lc_rs::rand::SystemRandom::new(),
                format!("{protected}.{body}").as_bytes(),
            )
            .unwrap();
        let std = base64::engine::general_purpose::STANDARD;
        serde_json::json!({
            "payload": body,
            "protected": protected,
            "header": {"x5c": chain.iter().map(|c| std.encode(c)).collect::<Vec<_>>()},
            "signature": b64u(sig.as_ref()),
        })
        .to_string()
        .into_bytes()
    }

    pub(super) fn payload(t: &Target) -> serde_json::Value {
        serde_json::json!({"targetArtifact": {"mediaType": t.media_type, "digest": t.digest, "size": t.size}})
    }

    fn rules(level: Level, ca: &[u8]) -> Rules {
        Rules {
            level,
            overrides: Default::default(),
            identities: vec![TrustedIdentity::Any],
            ca: vec![ca.to_vec()],
            signing_authority: Vec::new(),
            tsa: Vec::new(),
            verify_timestamp_always: true,
        }
    }

    const JWS: &str = "application/jose+json";

    #[test]
    fn a_well_made_envelope_verifies_and_every_forgery_is_refused_for_its_reason() {
        let s = signer();
        let chain: &[&[u8]] = &[&s.leaf_der, &s.ca_der];
        let strict = rules(Level::Strict, &s.ca_der);
        let now = jiff::Timestamp::now();
        let good = envelope(&s, &payload(&target()), serde_json::json!({}), &[], chain);
        let r = verify(&strict, &good, JWS, &target(), now);
        assert!(r.verified(), "{r:?}");
        assert!(
            r.valid_until.is_some(),
            "the leaf's notAfter bounds the verdict"
        );

        // Another artifact: digest, size or media type.
        for other in [
            Target {
                digest: format!("sha256:{}", "cd".repeat(32)),
                ..target()
            },
            Target {
                size: 518,
                ..target()
            },
            Target {
                media_type: "application/vnd.oci.image.index.v1+json".into(),
                ..target()
            },
        ] {
            let r = verify(&strict, &good, JWS, &other, now);
            assert_eq!(r.failed.first(), Some(&Check::Signature), "{r:?}");
            assert!(r.enforced[0].contains("integrity"), "{r:?}");
        }

        // A payload swapped under the signature.
        let mut swapped: serde_json::Value = serde_json::from_slice(&good).unwrap();
        let other_payload = payload(&Target {
            digest: format!("sha256:{}", "ef".repeat(32)),
            ..target()
        });
        swapped["payload"] = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(other_payload.to_string())
            .into();
        let r = verify(&strict, swapped.to_string().as_bytes(), JWS, &target(), now);
        assert!(r.enforced[0].contains("does not verify"), "{r:?}");

        // Critical headers umpire does not understand, plugins, and known ones left uncritical.
        let unknown = envelope(
            &s,
            &payload(&target()),
            serde_json::json!({"io.cncf.notary.someExtension": "x"}),
            &["io.cncf.notary.someExtension"],
            chain,
        );
        let r = verify(&strict, &unknown, JWS, &target(), now);
        assert!(r.enforced[0].contains("not understood"), "{r:?}");
        let plugin = envelope(
            &s,
            &payload(&target()),
            serde_json::json!({"io.cncf.notary.verificationPlugin": "com.example.plugin"}),
            &[],
            chain,
        );
        let r = verify(&strict, &plugin, JWS, &target(), now);
        assert!(r.enforced[0].contains("verification plugin"), "{r:?}");
        let soon = (now + jiff::SignedDuration::from_hours(1)).to_string();
        let uncritical = envelope(
            &s,
            &payload(&target()),
            serde_json::json!({"io.cncf.notary.expiry": soon}),
            &[],
            chain,
        );
        let r = verify(&strict, &uncritical, JWS, &target(), now);
        assert!(r.enforced[0].contains("not marked critical"), "{r:?}");

        // RFC 7515 4.1.11 and notation-go's reading: `crit` names only headers that are there,
        // holds names only, and no header hides under another spelling.
        let absent = envelope(
            &s,
            &payload(&target()),
            serde_json::json!({}),
            &["io.cncf.notary.expiry"],
            chain,
        );
        let r = verify(&strict, &absent, JWS, &target(), now);
        assert!(r.enforced[0].contains("does not hold"), "{r:?}");
        let past = (now - jiff::SignedDuration::from_hours(1)).to_string();
        let spelled = envelope(
            &s,
            &payload(&target()),
            serde_json::json!({"IO.CNCF.NOTARY.EXPIRY": past}),
            &[],
            chain,
        );
        let r = verify(&strict, &spelled, JWS, &target(), now);
        assert!(
            !r.verified(),
            "an expiry notation-go reads was ignored: {r:?}"
        );
        assert!(r.enforced[0].contains("another spelling"), "{r:?}");
        let scheme = "io.cncf.notary.signingScheme";
        for crit in [
            serde_json::json!([scheme, 7]),
            serde_json::json!([]),
            serde_json::json!(scheme),
        ] {
            let protected = serde_json::json!({
                "alg": "ES256",
                "cty": "application/vnd.cncf.notary.payload.v1+json",
                scheme: "notary.x509",
                "io.cncf.notary.signingTime": now.to_string(),
                "crit": crit,
            });
            let e = envelope_with_protected(&s, &payload(&target()), &protected.to_string(), chain);
            let r = verify(&strict, &e, JWS, &target(), now);
            assert!(!r.verified(), "crit {crit}: {r:?}");
            assert!(r.enforced[0].contains("crit"), "crit {crit}: {r:?}");
        }
        let twice = format!(
            r#"{{"alg":"ES256","cty":"application/vnd.cncf.notary.payload.v1+json","{scheme}":"notary.x509","io.cncf.notary.signingTime":"{now}","crit":["{scheme}"],"Alg":"PS256"}}"#
        );
        let e = envelope_with_protected(&s, &payload(&target()), &twice, chain);
        assert!(!verify(&strict, &e, JWS, &target(), now).verified());

        // An expired signature: enforced on strict, only logged on permissive.
        let past = (now - jiff::SignedDuration::from_hours(1)).to_string();
        let expired = envelope(
            &s,
            &payload(&target()),
            serde_json::json!({"io.cncf.notary.expiry": past}),
            &["io.cncf.notary.expiry"],
            chain,
        );
        let r = verify(&strict, &expired, JWS, &target(), now);
        assert!(r.enforced[0].contains("expiry"), "{r:?}");
        let r = verify(
            &rules(Level::Permissive, &s.ca_der),
            &expired,
            JWS,
            &target(),
            now,
        );
        assert!(
            r.verified() && r.logged.iter().any(|l| l.contains("expiry")),
            "{r:?}"
        );

        // A chain to a CA no store holds; a trusted CA carried beside a leaf it did not issue.
        let stranger = signer();
        let r = verify(
            &rules(Level::Strict, &stranger.ca_der),
            &good,
            JWS,
            &target(),
            now,
        );
        assert_eq!(r.failed.first(), Some(&Check::UntrustedSigner), "{r:?}");
        let borrowed = envelope(
            &stranger,
            &payload(&target()),
            serde_json::json!({}),
            &[],
            &[&stranger.leaf_der, &s.ca_der],
        );
        let r = verify(&strict, &borrowed, JWS, &target(), now);
        assert_eq!(r.failed.first(), Some(&Check::Certificate), "{r:?}");

        // An identity the statement does not trust.
        let mut picky = rules(Level::Strict, &s.ca_der);
        picky.identities =
            vec![TrustedIdentity::parse("x509.subject: C=US, ST=WA, O=Acme, CN=other").unwrap()];
        let r = verify(&picky, &good, JWS, &target(), now);
        assert_eq!(r.failed.first(), Some(&Check::Identity), "{r:?}");

        // The same bytes declared as COSE, or as something else.
        assert!(!verify(&strict, &good, "application/cose", &target(), now).verified());
        assert!(!verify(&strict, &good, "application/json", &target(), now).verified());
    }
}

mod hostile_cose {
    //! The corpus's COSE envelope with a byte changed in each part an attacker could reach.

    use umpire::verify::notation::Target;
    use umpire::verify::notation_rules::verify;

    #[test]
    fn a_cose_envelope_with_any_byte_changed_does_not_verify() {
        let bytes = std::fs::read(super::data("envelopes/alpine-v2/cose_signature.sig")).unwrap();
        let store = umpire::trust::notation::parse_trust_policy(
            &serde_json::json!({"version": "1.0", "trustPolicies": [{
                "name": "alpine", "registryScopes": ["*"],
                "signatureVerification": {"level": "strict"},
                "trustStores": ["ca:alpine-2123"],
                "trustedIdentities": ["*"],
            }]})
            .to_string(),
        )
        .unwrap();
        let rules = store[0].rules(&super::data("truststore")).unwrap();
        let target = Target {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: "sha256:19dbd2e48e921426ee8ace4dc892edfb2ecdc1d1a72d5416c83670c30acecef0"
                .into(),
            size: 481,
        };
        let now = jiff::Timestamp::now();
        assert!(verify(&rules, &bytes, "application/cose", &target, now).verified());
        // notation-go (go-cose) reads tagged COSE_Sign1 only: the same envelope untagged is not
        // one.
        assert_eq!(bytes[0], 0xd2, "tag 18");
        let untagged = &bytes[1..];
        let r = verify(&rules, untagged, "application/cose", &target, now);
        assert!(!r.verified(), "{r:?}");
        assert!(r.enforced[0].contains("tagged"), "{r:?}");
        // Every 7th byte flipped in turn: none of them yields a verified envelope.
        let mut verified = Vec::new();
        for i in (0..bytes.len()).step_by(7) {
            let mut forged = bytes.clone();
            forged[i] ^= 0x01;
            if verify(&rules, &forged, "application/cose", &target, now).verified() {
                verified.push(i);
            }
        }
        // Flips inside the unprotected, unsigned signing-agent entry (label and value), which
        // no check reads, may leave it verified; nothing signed or trusted may change.
        let label = b"io.cncf.notary.signingAgent";
        let agent = bytes.windows(label.len()).position(|w| w == label).unwrap();
        let agent_entry = agent - 2..agent + label.len() + 1 + "Notation/1.0.0".len();
        for i in &verified {
            let in_agent = agent_entry.contains(i);
            assert!(in_agent, "a flip at byte {i} still verified");
        }
    }
}
