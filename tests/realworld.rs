//! Real images attested by the SLSA GitHub generator (legacy keyless cosign `.att`, one logged as a
//! Rekor `intoto` 0.0.1 entry, one as `dsse` 0.0.1; see tests/data/realworld/README.md), pushed to a
//! real registry and read as `cosign save` layouts, and negative twins derived from them, each denied
//! for its own reason.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use support::cosign::{Blob, SigningKey, signature_manifest};
use support::registry::Registry;
use support::sigstore::TestSigstore;
use umpire::verdict::{Code, Verdict};

const PROVENANCE_V02: &str = "https://slsa.dev/provenance/v0.2";
const ISSUER: &str = "https://token.actions.githubusercontent.com";
const GENERATOR: &str = "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_container_slsa3.yml";

/// One saved image: its folder, digest, generator version and its attestation layer.
struct Saved {
    dir: PathBuf,
    digest: String,
    version: &'static str,
    att_manifest: Vec<u8>,
    att_layer: Blob,
}

fn saved(version: &'static str) -> Saved {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/realworld/slsa-github-generator-containers")
        .join(version)
        .join("container_workflow_dispatch");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let by_kind = |kind: &str| {
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["annotations"]["kind"].as_str().unwrap().ends_with(kind))
            .unwrap()["digest"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let digest = by_kind("/imageIndex");
    let att_manifest = blob(&dir, &by_kind("/atts"));
    let m: serde_json::Value = serde_json::from_slice(&att_manifest).unwrap();
    let layer = &m["layers"][0];
    let mut att_layer = Blob::new(
        layer["mediaType"].as_str().unwrap(),
        blob(&dir, layer["digest"].as_str().unwrap()),
    );
    for (k, v) in layer["annotations"].as_object().unwrap() {
        att_layer
            .annotations
            .push((k.clone(), v.as_str().unwrap().to_owned()));
    }
    Saved {
        dir,
        digest,
        version,
        att_manifest,
        att_layer,
    }
}

fn blob(dir: &Path, digest: &str) -> Vec<u8> {
    std::fs::read(
        dir.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .unwrap()
}

impl Saved {
    fn subject(&self) -> String {
        format!("{GENERATOR}@refs/tags/{}", self.version)
    }

    fn annotation(&self, key: &str) -> &str {
        &self
            .att_layer
            .annotations
            .iter()
            .find(|(k, _)| k == key)
            .unwrap()
            .1
    }

    /// The attestation layer with one annotation replaced.
    fn with_annotation(&self, key: &str, value: &str) -> Blob {
        let mut layer = Blob::new(&self.att_layer.media_type, self.att_layer.bytes.clone());
        layer.annotations = self
            .att_layer
            .annotations
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    if k == key {
                        value.to_owned()
                    } else {
                        v.clone()
                    },
                )
            })
            .collect();
        layer
    }

    /// Pushes the image (index, platform manifests, every blob) under `tag` and its attestations
    /// under `sha256-<hex>.att`: the saved ones, or a manifest holding `att_layer` instead.
    async fn push(&self, registry: &Registry, repo: &str, att_layer: Option<Blob>) {
        let blobs = self.dir.join("blobs/sha256");
        for entry in std::fs::read_dir(&blobs).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            registry
                .push_blob(repo, &Blob::new("application/octet-stream", bytes))
                .await;
        }
        let index_bytes = blob(&self.dir, &self.digest);
        let index: serde_json::Value = serde_json::from_slice(&index_bytes).unwrap();
        for child in index["manifests"].as_array().unwrap() {
            let d = child["digest"].as_str().unwrap();
            registry
                .push_manifest(
                    repo,
                    d,
                    &blob(&self.dir, d),
                    child["mediaType"].as_str().unwrap(),
                )
                .await;
        }
        registry
            .push_manifest(
                repo,
                "latest",
                &index_bytes,
                "application/vnd.oci.image.index.v1+json",
            )
            .await;
        let att_tag = format!("{}.att", self.digest.replace(':', "-"));
        match att_layer {
            None => {
                registry
                    .push_manifest(
                        repo,
                        &att_tag,
                        &self.att_manifest,
                        "application/vnd.oci.image.manifest.v1+json",
                    )
                    .await;
            }
            Some(layer) => {
                registry
                    .push_image(repo, &att_tag, &signature_manifest(vec![layer]))
                    .await;
            }
        }
    }
}

/// A policy over `host` requiring SLSA v0.2 provenance (or `predicate_type`) signed keyless by
/// `subject_regex` under the trust root `trust` (`public-good: embedded` unless `roots` says more).
fn policy_yaml(host: &str, predicate_type: &str, subject_regex: &str, roots: &str) -> String {
    format!(
        r#"registries:
  - host: {host}
    insecure: true
trust:
  sigstore:
    public-good: embedded
{roots}policies:
  - name: slsa
    images: ["{host}/**"]
    attestations:
      - type: {predicate_type}
        authorities:
          - keyless:
              trust: public-good
              issuer: {ISSUER}
              subject_regex: {subject_regex}
"#
    )
}

fn generator_policy(host: &str) -> String {
    policy_yaml(
        host,
        PROVENANCE_V02,
        &format!("{}@refs/tags/v.+", regex_escape(GENERATOR)),
        "",
    )
}

fn regex_escape(s: &str) -> String {
    regex::escape(s)
}

async fn verify(yaml: &str, reference: &str) -> Verdict {
    support::engine(yaml).verify(reference, None).await.unwrap()
}

fn codes(v: &Verdict) -> Vec<Code> {
    v.findings.iter().map(|f| f.code).collect()
}

fn messages(v: &Verdict) -> String {
    v.findings
        .iter()
        .map(|f| f.message.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn slsa_generator_images_are_allowed_over_grpc_and_the_cli() {
    let registry = Registry::start().await;
    let host = registry.host();
    let yaml = generator_policy(&host);
    let umpire = support::Umpire::start(&yaml).await;
    let mut client = umpire.client().await;
    let (dir, config) = support::config_file(&yaml);
    for version in ["v1.9.0", "v2.0.0"] {
        let image = saved(version);
        let repo = format!("slsa/{}", version.replace('.', "-"));
        image.push(&registry, &repo, None).await;
        let reference = format!("{host}/{repo}:latest");

        let reply = client
            .verify(umpire::proto::VerifyRequest {
                image: reference.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(reply.allowed, "{version}: {reply:?}");
        assert_eq!(reply.digest, image.digest);

        let out = Command::new(env!("CARGO_BIN_EXE_umpire"))
            .args(["verify", "--config"])
            .arg(&config)
            .arg(&reference)
            .env("DOCKER_CONFIG", "/nonexistent")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{version}: {stdout}");
        assert!(stdout.contains(PROVENANCE_V02), "{stdout}");
    }
    drop(dir);
    umpire.stop().await.unwrap();
}

#[test]
fn slsa_generator_layouts_are_allowed_as_cosign_saved_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/realworld/slsa-github-generator-containers");
    let yaml = format!(
        r#"trust:
  sigstore:
    public-good: embedded
policies:
  - name: slsa
    images: ["oci:{}/**"]
    attestations:
      - type: {PROVENANCE_V02}
        authorities:
          - keyless:
              trust: public-good
              issuer: {ISSUER}
              subject_regex: {}@refs/tags/v.+
"#,
        root.display(),
        regex_escape(GENERATOR)
    );
    let (_dir, config) = support::config_file(&yaml);
    let mut args = vec![
        "verify".to_owned(),
        "--config".into(),
        config.display().to_string(),
    ];
    for version in ["v1.9.0", "v2.0.0"] {
        let image = saved(version);
        args.push(format!("oci:{}@{}", image.dir.display(), image.digest));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_umpire"))
        .args(&args)
        .env("DOCKER_CONFIG", "/nonexistent")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches("ALLOWED").count(), 2, "{stdout}");
}

#[tokio::test]
async fn another_subject_is_identity_mismatch_and_another_type_is_missing() {
    let registry = Registry::start().await;
    let host = registry.host();
    for version in ["v1.9.0", "v2.0.0"] {
        let image = saved(version);
        let repo = format!("slsa/{}", version.replace('.', "-"));
        image.push(&registry, &repo, None).await;
        let reference = format!("{host}/{repo}@{}", image.digest);

        // The right workflow, but another tag: the identity must match as a whole value.
        let other_subject = policy_yaml(
            &host,
            PROVENANCE_V02,
            &regex_escape(&format!("{GENERATOR}@refs/tags/v0.0.1")),
            "",
        );
        let v = verify(&other_subject, &reference).await;
        assert!(!v.allowed, "{v:?}");
        assert_eq!(codes(&v), [Code::IdentityMismatch], "{v:?}");
        assert!(messages(&v).contains(&image.subject()), "{v:?}");

        let other_type = policy_yaml(
            &host,
            "https://slsa.dev/provenance/v1",
            &format!("{}@refs/tags/v.+", regex_escape(GENERATOR)),
            "",
        );
        let v = verify(&other_type, &reference).await;
        assert!(!v.allowed);
        assert_eq!(codes(&v), [Code::AttestationMissing], "{v:?}");
    }
}

/// Pushes `layer` as the attestation of `image` and returns the verdict under the generator policy
/// (with extra trust roots in `roots`, and the policy's authority under `trust`).
async fn twin_verdict(image: &Saved, layer: Blob, yaml_for: impl Fn(&str) -> String) -> Verdict {
    let registry = Registry::start().await;
    let host = registry.host();
    image.push(&registry, "slsa/twin", Some(layer)).await;
    verify(
        &yaml_for(&host),
        &format!("{host}/slsa/twin@{}", image.digest),
    )
    .await
}

fn assert_invalid(v: &Verdict, reason: &str) {
    assert!(!v.allowed, "{v:?}");
    assert_eq!(codes(v), [Code::AttestationInvalid], "{v:?}");
    assert!(
        messages(v).contains(reason),
        "expected {reason:?} in {}",
        messages(v)
    );
}

#[tokio::test]
async fn the_twins_pushed_unchanged_are_allowed() {
    // The control for the twins below: the same push path with the layer rebuilt verifies.
    for version in ["v1.9.0", "v2.0.0"] {
        let image = saved(version);
        let layer = image.with_annotation("predicateType", PROVENANCE_V02);
        let v = twin_verdict(&image, layer, generator_policy).await;
        assert!(v.allowed, "{version}: {v:?}");
    }
}

#[tokio::test]
async fn a_byte_changed_in_the_envelope_is_denied() {
    // intoto 0.0.1: one payload character changed; the entry records another envelope.
    let image = saved("v1.9.0");
    let mut layer = image.with_annotation("predicateType", PROVENANCE_V02);
    let text = String::from_utf8(layer.bytes.clone()).unwrap();
    let at = text.find("\"payload\":\"").unwrap() + 200;
    let flipped = if &text[at..=at] == "A" { "B" } else { "A" };
    layer.bytes = format!("{}{flipped}{}", &text[..at], &text[at + 1..]).into_bytes();
    let v = twin_verdict(&image, layer, generator_policy).await;
    assert_invalid(&v, "records another envelope");

    // dsse 0.0.1: the same envelope, re-serialised with a space. Its signature and payload still
    // verify; only the logged envelope hash tells it from the one that was logged.
    let image = saved("v2.0.0");
    let mut layer = image.with_annotation("predicateType", PROVENANCE_V02);
    let mut bytes = b" ".to_vec();
    bytes.extend(&layer.bytes);
    layer.bytes = bytes;
    let v = twin_verdict(&image, layer, generator_policy).await;
    assert_invalid(&v, "records another envelope");
}

#[tokio::test]
async fn an_entry_for_another_envelope_is_denied() {
    let v19 = saved("v1.9.0");
    let v20 = saved("v2.0.0");
    // v2.0.0's envelope and certificate under v1.9.0's (valid, logged) intoto entry.
    let layer = v20.with_annotation(
        "dev.sigstore.cosign/bundle",
        v19.annotation("dev.sigstore.cosign/bundle"),
    );
    let v = twin_verdict(&v20, layer, generator_policy).await;
    assert_invalid(&v, "records another envelope");

    // v1.9.0's envelope and certificate under v2.0.0's dsse entry.
    let layer = v19.with_annotation(
        "dev.sigstore.cosign/bundle",
        v20.annotation("dev.sigstore.cosign/bundle"),
    );
    let v = twin_verdict(&v19, layer, generator_policy).await;
    assert_invalid(&v, "records another envelope");
}

#[tokio::test]
async fn a_set_from_another_log_key_is_denied() {
    let other_log = SigningKey::p256();
    for version in ["v1.9.0", "v2.0.0"] {
        let image = saved(version);
        let mut bundle: serde_json::Value =
            serde_json::from_str(image.annotation("dev.sigstore.cosign/bundle")).unwrap();
        let p = &bundle["Payload"];
        // The payload the log signs, in canonical (sorted-key) JSON, signed by another key.
        let set_payload = format!(
            r#"{{"body":"{}","integratedTime":{},"logID":"{}","logIndex":{}}}"#,
            p["body"].as_str().unwrap(),
            p["integratedTime"],
            p["logID"].as_str().unwrap(),
            p["logIndex"]
        );
        bundle["SignedEntryTimestamp"] = base64::engine::general_purpose::STANDARD
            .encode(other_log.sign(set_payload.as_bytes()))
            .into();
        let layer = image.with_annotation("dev.sigstore.cosign/bundle", &bundle.to_string());
        let v = twin_verdict(&image, layer, generator_policy).await;
        assert!(!v.allowed, "{version}: {v:?}");
        assert_eq!(codes(&v), [Code::AttestationInvalid], "{v:?}");
        assert!(messages(&v).contains("SET"), "{version}: {}", messages(&v));
    }
}

#[tokio::test]
async fn a_certificate_chain_to_another_root_is_denied() {
    // A root that trusts public-good's logs (so the SET and SCT verify) but another Fulcio CA.
    let other = TestSigstore::new();
    let mut root: serde_json::Value =
        serde_json::from_str(sigstore_trust_root::SIGSTORE_PRODUCTION_TRUSTED_ROOT).unwrap();
    let test_root: serde_json::Value = serde_json::from_str(&other.trusted_root_json()).unwrap();
    root["certificateAuthorities"] = test_root["certificateAuthorities"].clone();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.json");
    std::fs::write(&path, root.to_string()).unwrap();
    let yaml_for = |host: &str| {
        generator_policy(host).replace(
            "    public-good: embedded\n",
            &format!("    public-good: {}\n", path.display()),
        )
    };
    for version in ["v1.9.0", "v2.0.0"] {
        let image = saved(version);
        let layer = image.with_annotation("predicateType", PROVENANCE_V02);
        let v = twin_verdict(&image, layer, yaml_for).await;
        assert!(!v.allowed, "{version}: {v:?}");
        assert_eq!(codes(&v), [Code::AttestationInvalid], "{v:?}");
        assert!(
            messages(&v).contains("certificate chain"),
            "{version}: {}",
            messages(&v)
        );
    }
}
