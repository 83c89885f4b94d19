//! Keyed cosign signatures, end to end: images and signatures pushed to a real registry
//! (Debian's docker-registry), verified over gRPC by an in-process umpire server.

mod support;

use support::cosign::{self, Image, SigningKey, payload, signature_layer, signature_layer_with};
use support::registry::Registry;
use support::{Umpire, config_yaml, key_policy};
use umpire::proto::{VerifyBatchRequest, VerifyRequest, VerifyResponse};

const REPO: &str = "team/app";

async fn verify(umpire: &Umpire, image: &str) -> VerifyResponse {
    let mut client = umpire.client().await;
    client
        .verify(VerifyRequest {
            image: image.to_owned(),
            policy: String::new(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|s| panic!("Verify({image}) failed: {s}"))
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

/// A registry with one image pushed as `REPO:v1`, and umpire trusting `release` (policy) and
/// `other` (known, but not accepted by the policy).
struct Setup {
    registry: Registry,
    release: SigningKey,
    other: SigningKey,
    image: Image,
    digest: String,
}

impl Setup {
    async fn new() -> Self {
        let registry = Registry::start().await;
        let image = Image::new("app v1");
        let digest = registry.push_image(REPO, "v1", &image).await;
        Self {
            registry,
            release: SigningKey::p256(),
            other: SigningKey::p256(),
            image,
            digest,
        }
    }

    fn host(&self) -> String {
        self.registry.host()
    }

    fn yaml(&self, threshold: usize, authorities: &[&str], extra: &str) -> String {
        let policy = key_policy("prod", &self.host(), threshold, authorities);
        config_yaml(
            &self.host(),
            &[
                ("release", &self.release.public_pem()),
                ("other", &self.other.public_pem()),
            ],
            &policy,
            extra,
        )
    }

    async fn umpire(&self) -> Umpire {
        Umpire::start(&self.yaml(1, &["release"], "")).await
    }

    fn by_digest(&self) -> String {
        format!("{}/{REPO}@{}", self.host(), self.digest)
    }

    async fn sign_with(&self, key: &SigningKey) {
        let layer = signature_layer(
            key,
            payload(&format!("{}/{REPO}", self.host()), &self.digest),
        );
        self.registry
            .push_signatures(REPO, &self.digest, vec![layer])
            .await;
    }
}

#[tokio::test]
async fn signed_image_is_allowed_with_its_digest() {
    let s = Setup::new().await;
    s.sign_with(&s.release).await;
    let umpire = s.umpire().await;
    let r = verify(&umpire, &s.by_digest()).await;
    assert!(r.allowed, "{r:?}");
    assert_eq!(r.digest, s.digest);
    assert_eq!(codes(&r), ["SATISFIED"]);
    assert_eq!(r.findings[0].authority, "key:release");
    assert_eq!(r.policy, "prod");
    assert!(!r.retryable);
}

#[tokio::test]
async fn request_by_tag_names_the_digest() {
    let s = Setup::new().await;
    s.sign_with(&s.release).await;
    let umpire = s.umpire().await;
    let r = verify(&umpire, &format!("{}/{REPO}:v1", s.host())).await;
    assert!(r.allowed, "{r:?}");
    assert_eq!(r.digest, s.digest);
    assert_eq!(r.media_type, cosign::OCI_MANIFEST);
}

#[tokio::test]
async fn unsigned_image_is_denied_with_no_signatures() {
    let s = Setup::new().await;
    let umpire = s.umpire().await;
    let r = verify(&umpire, &s.by_digest()).await;
    assert!(!r.allowed);
    assert_eq!(codes(&r), ["NO_SIGNATURES"]);
    assert_eq!(r.digest, s.digest);
    assert!(!r.retryable);
    assert!(
        r.findings[0].message.contains("key:release"),
        "{}",
        r.findings[0].message
    );
}

#[tokio::test]
async fn signature_by_a_key_the_policy_does_not_accept_is_untrusted_signer() {
    let s = Setup::new().await;
    s.sign_with(&s.other).await;
    let umpire = s.umpire().await;
    let r = verify(&umpire, &s.by_digest()).await;
    assert!(!r.allowed);
    assert_eq!(codes(&r), ["UNTRUSTED_SIGNER"]);
    assert!(r.findings[0].message.contains("key:other"));
}

#[tokio::test]
async fn signature_by_an_unknown_key_is_signature_invalid() {
    let s = Setup::new().await;
    s.sign_with(&SigningKey::p256()).await;
    let umpire = s.umpire().await;
    let r = verify(&umpire, &s.by_digest()).await;
    assert!(!r.allowed);
    assert_eq!(codes(&r), ["SIGNATURE_INVALID"]);
}

#[tokio::test]
async fn payload_naming_another_digest_is_denied() {
    let s = Setup::new().await;
    let elsewhere = Image::new("another image").digest();
    let layer = signature_layer(&s.release, payload("x/y", &elsewhere));
    s.registry
        .push_signatures(REPO, &s.digest, vec![layer])
        .await;
    let umpire = s.umpire().await;
    let r = verify(&umpire, &s.by_digest()).await;
    assert!(!r.allowed);
    assert_eq!(codes(&r), ["DIGEST_MISMATCH"]);
    assert!(r.findings[0].message.contains(&elsewhere));
}

#[tokio::test]
async fn a_valid_signature_copied_to_another_images_tag_is_denied() {
    let s = Setup::new().await;
    s.sign_with(&s.release).await;
    // The attacker pushes a second image and copies the first image's valid .sig manifest to it.
    let victim = Image::new("attacker's image");
    let victim_digest = s.registry.push_image(REPO, "evil", &victim).await;
    let layer = signature_layer(&s.release, payload("x", &s.digest));
    s.registry
        .push_signatures(REPO, &victim_digest, vec![layer])
        .await;
    let umpire = s.umpire().await;
    let r = verify(&umpire, &format!("{}/{REPO}:evil", s.host())).await;
    assert!(!r.allowed);
    assert_eq!(r.digest, victim_digest);
    assert_eq!(codes(&r), ["DIGEST_MISMATCH"]);
}

#[tokio::test]
async fn tampered_signature_is_signature_invalid() {
    let s = Setup::new().await;
    let good = signature_layer(&s.release, payload("x", &s.digest));
    // Same signature, payload altered after signing.
    let sig = good.annotations[0].1.clone();
    let mut tampered_payload = good.bytes.clone();
    tampered_payload.extend_from_slice(b" ");
    let tampered = signature_layer_with(tampered_payload, Some(sig));
    s.registry
        .push_signatures(REPO, &s.digest, vec![tampered])
        .await;
    let umpire = s.umpire().await;
    let r = verify(&umpire, &s.by_digest()).await;
    assert!(!r.allowed);
    assert_eq!(codes(&r), ["SIGNATURE_INVALID"]);
}

#[tokio::test]
async fn threshold_two_with_one_key_is_threshold_not_met() {
    let s = Setup::new().await;
    s.sign_with(&s.release).await;
    let umpire = Umpire::start(&s.yaml(2, &["release", "other"], "")).await;
    let r = verify_fresh(&umpire, &s.by_digest()).await;
    assert!(!r.allowed);
    assert_eq!(codes(&r), ["THRESHOLD_NOT_MET"]);
    assert!(r.findings[0].message.contains("key:release"));

    // Two signatures by the same key are still one authority.
    let twice = vec![
        signature_layer(&s.release, payload("x", &s.digest)),
        signature_layer(&s.release, payload("y", &s.digest)),
    ];
    s.registry.push_signatures(REPO, &s.digest, twice).await;
    let r = verify_fresh(&umpire, &s.by_digest()).await;
    assert_eq!(codes(&r), ["THRESHOLD_NOT_MET"]);

    // Both authorities → allowed.
    let both = vec![
        signature_layer(&s.release, payload("x", &s.digest)),
        signature_layer(&s.other, payload("x", &s.digest)),
    ];
    s.registry.push_signatures(REPO, &s.digest, both).await;
    let r = verify_fresh(&umpire, &s.by_digest()).await;
    assert!(r.allowed, "{r:?}");
    assert_eq!(codes(&r), ["SATISFIED", "SATISFIED"]);
}

#[tokio::test]
async fn p384_and_ed25519_keys_verify() {
    for key in [SigningKey::p384(), SigningKey::ed25519()] {
        let registry = Registry::start().await;
        let image = Image::new("algo");
        let digest = registry.push_image(REPO, "v1", &image).await;
        let layer = signature_layer(&key, payload("x", &digest));
        registry.push_signatures(REPO, &digest, vec![layer]).await;
        let yaml =
            support::one_key_yaml(&registry.host(), ("release", &key.public_pem()), "prod", "");
        let umpire = Umpire::start(&yaml).await;
        let r = verify(&umpire, &format!("{}/{REPO}@{digest}", registry.host())).await;
        assert!(r.allowed, "{r:?}");
    }
}

#[tokio::test]
async fn stopped_registry_is_denied_and_retryable() {
    let mut s = Setup::new().await;
    s.sign_with(&s.release).await;
    let umpire = s.umpire().await;
    s.registry.stop();
    let r = verify(&umpire, &s.by_digest()).await;
    assert!(!r.allowed);
    assert!(r.retryable);
    assert_eq!(codes(&r), ["REGISTRY_UNAVAILABLE"]);
    assert!(
        r.findings[0].message.contains(&s.host()),
        "{}",
        r.findings[0].message
    );
}

#[tokio::test]
async fn manifest_over_the_size_limit_is_limit_exceeded() {
    let s = Setup::new().await;
    s.sign_with(&s.release).await;
    let limits = "limits:\n  max_manifest_bytes: 256\n";
    let umpire = Umpire::start(&s.yaml(1, &["release"], limits)).await;
    assert!(s.image.manifest.len() > 256);
    let r = verify(&umpire, &s.by_digest()).await;
    assert!(!r.allowed);
    assert_eq!(codes(&r), ["LIMIT_EXCEEDED"]);
}

#[tokio::test]
async fn too_many_signatures_is_limit_exceeded() {
    let s = Setup::new().await;
    let layers = (0..4)
        .map(|i| signature_layer(&s.release, payload(&format!("r{i}"), &s.digest)))
        .collect();
    s.registry.push_signatures(REPO, &s.digest, layers).await;
    let umpire = Umpire::start(&s.yaml(1, &["release"], "limits:\n  max_signatures: 3\n")).await;
    let r = verify(&umpire, &s.by_digest()).await;
    assert!(!r.allowed);
    assert_eq!(codes(&r), ["LIMIT_EXCEEDED"]);
}

#[tokio::test]
async fn missing_image_is_image_not_found() {
    let s = Setup::new().await;
    let umpire = s.umpire().await;
    let absent = Image::new("never pushed").digest();
    let r = verify(&umpire, &format!("{}/{REPO}@{absent}", s.host())).await;
    assert!(!r.allowed);
    assert_eq!(codes(&r), ["IMAGE_NOT_FOUND"]);
    let r = verify(&umpire, &format!("{}/{REPO}:nope", s.host())).await;
    assert_eq!(codes(&r), ["IMAGE_NOT_FOUND"]);
}

#[tokio::test]
async fn image_index_is_verified_on_the_index_digest_and_platforms_on_their_own() {
    let registry = Registry::start().await;
    let key = SigningKey::p256();
    let (amd64, arm64) = (Image::new("amd64"), Image::new("arm64"));
    let amd64_digest = registry.push_image(REPO, "amd64", &amd64).await;
    registry.push_image(REPO, "arm64", &arm64).await;
    let index = cosign::index(&[&amd64, &arm64]);
    registry
        .push_manifest(REPO, "multi", &index, cosign::OCI_INDEX)
        .await;
    let index_digest = cosign::sha256(&index);
    registry
        .push_signatures(
            REPO,
            &index_digest,
            vec![signature_layer(&key, payload("x", &index_digest))],
        )
        .await;
    let yaml = support::one_key_yaml(&registry.host(), ("release", &key.public_pem()), "prod", "");
    let umpire = Umpire::start(&yaml).await;

    let r = verify(&umpire, &format!("{}/{REPO}:multi", registry.host())).await;
    assert!(r.allowed, "{r:?}");
    assert_eq!(r.digest, index_digest);
    assert_eq!(r.media_type, cosign::OCI_INDEX);

    // The platform manifest has no signature of its own.
    let r = verify(
        &umpire,
        &format!("{}/{REPO}@{amd64_digest}", registry.host()),
    )
    .await;
    assert!(!r.allowed);
    assert_eq!(codes(&r), ["NO_SIGNATURES"]);
    registry
        .push_signatures(
            REPO,
            &amd64_digest,
            vec![signature_layer(&key, payload("x", &amd64_digest))],
        )
        .await;
    let r = verify_fresh(
        &umpire,
        &format!("{}/{REPO}@{amd64_digest}", registry.host()),
    )
    .await;
    assert!(r.allowed, "{r:?}");
    assert_eq!(r.media_type, cosign::OCI_MANIFEST);
}

#[tokio::test]
async fn docker_v2_media_types_are_accepted() {
    let registry = Registry::start().await;
    let key = SigningKey::p256();
    let base = Image::new("docker");
    let docker = cosign::Image::from_parts(
        cosign::Blob::new(
            "application/vnd.docker.container.image.v1+json",
            base.config.bytes.clone(),
        ),
        vec![cosign::Blob::new(
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            base.layers[0].bytes.clone(),
        )],
        &[(
            "mediaType",
            "application/vnd.docker.distribution.manifest.v2+json".into(),
        )],
    );
    let mut docker = docker;
    docker.media_type = "application/vnd.docker.distribution.manifest.v2+json".into();
    let digest = registry.push_image(REPO, "docker", &docker).await;
    registry
        .push_signatures(
            REPO,
            &digest,
            vec![signature_layer(&key, payload("x", &digest))],
        )
        .await;
    let yaml = support::one_key_yaml(&registry.host(), ("release", &key.public_pem()), "prod", "");
    let umpire = Umpire::start(&yaml).await;
    let r = verify(&umpire, &format!("{}/{REPO}:docker", registry.host())).await;
    assert!(r.allowed, "{r:?}");
    assert_eq!(
        r.media_type,
        "application/vnd.docker.distribution.manifest.v2+json"
    );
}

#[tokio::test]
async fn batch_answers_in_order_and_once_per_digest() {
    let s = Setup::new().await;
    s.sign_with(&s.release).await;
    let unsigned = Image::new("unsigned");
    s.registry.push_image(REPO, "unsigned", &unsigned).await;
    let umpire = s.umpire().await;
    let mut client = umpire.client().await;
    let images = [
        s.by_digest(),
        format!("{}/{REPO}:unsigned", s.host()),
        format!("{}/{REPO}:v1", s.host()),
        s.by_digest(),
        "elsewhere.example/app@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".to_owned(),
    ];
    let r = client
        .verify_batch(VerifyBatchRequest {
            requests: images
                .iter()
                .map(|i| VerifyRequest {
                    image: i.clone(),
                    policy: String::new(),
                    ..Default::default()
                })
                .collect(),
        })
        .await
        .unwrap()
        .into_inner();
    let allowed: Vec<bool> = r.responses.iter().map(|v| v.allowed).collect();
    assert_eq!(allowed, [true, false, true, true, false]);
    let images_back: Vec<&str> = r.responses.iter().map(|v| v.image.as_str()).collect();
    assert_eq!(
        images_back,
        images.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(r.responses[2].digest, s.digest);
    assert_eq!(codes(&r.responses[1]), ["NO_SIGNATURES"]);
    assert_eq!(codes(&r.responses[4]), ["NO_MATCHING_POLICY"]);
}

#[tokio::test]
async fn malformed_requests_are_invalid_argument() {
    let s = Setup::new().await;
    let umpire = s.umpire().await;
    let mut client = umpire.client().await;
    for (image, policy) in [
        ("", ""),
        ("UPPER/Case", ""),
        ("reg.io/a@sha256:123", ""),
        ("reg.io/a", "no-such-policy"),
    ] {
        let status = client
            .verify(VerifyRequest {
                image: image.into(),
                policy: policy.into(),
                ..Default::default()
            })
            .await
            .expect_err("should be refused");
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{image:?}: {status:?}"
        );
    }
    let status = client
        .verify_batch(VerifyBatchRequest {
            requests: vec![
                VerifyRequest {
                    image: s.by_digest(),
                    policy: String::new(),
                    ..Default::default()
                },
                VerifyRequest {
                    image: String::new(),
                    policy: String::new(),
                    ..Default::default()
                },
            ],
        })
        .await
        .expect_err("should be refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("request 1"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn named_policy_must_match_the_image() {
    let s = Setup::new().await;
    s.sign_with(&s.release).await;
    let policies = format!(
        "{}{}",
        key_policy("prod", &s.host(), 1, &["release"]),
        "  - name: elsewhere\n    images: [\"other.example/**\"]\n    signatures:\n      authorities:\n        - key: release\n"
    );
    let yaml = config_yaml(
        &s.host(),
        &[("release", &s.release.public_pem())],
        &policies,
        "",
    );
    let umpire = Umpire::start(&yaml).await;
    let mut client = umpire.client().await;
    let r = client
        .verify(VerifyRequest {
            image: s.by_digest(),
            policy: "elsewhere".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!r.allowed);
    assert_eq!(codes(&r), ["NO_MATCHING_POLICY"]);
    let r = client
        .verify(VerifyRequest {
            image: s.by_digest(),
            policy: "prod".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.allowed);
}

#[tokio::test]
async fn default_allow_allows_unmatched_images_pinned_to_their_digest() {
    let s = Setup::new().await;
    let policy = key_policy("prod", "other.example", 1, &["release"]);
    let yaml = config_yaml(
        &s.host(),
        &[("release", &s.release.public_pem())],
        &policy,
        "default: allow\n",
    );
    let umpire = Umpire::start(&yaml).await;
    let r = verify(&umpire, &format!("{}/{REPO}:v1", s.host())).await;
    assert!(r.allowed);
    assert_eq!(r.digest, s.digest);
    assert_eq!(codes(&r), ["NO_MATCHING_POLICY"]);
    // ...but never when the image cannot even be resolved.
    let r = verify(&umpire, &format!("{}/{REPO}:missing", s.host())).await;
    assert!(!r.allowed);
}

#[tokio::test]
async fn an_unusual_host_spelling_does_not_skip_the_policy() {
    // Under `default: allow`, a spelling that policy selection did not recognise would be allowed.
    let registry = Registry::start().await;
    let key = SigningKey::p256();
    registry
        .push_image(REPO, "unsigned", &Image::new("spelled"))
        .await;
    let port = registry.host().rsplit(':').next().unwrap().to_owned();
    let host = format!("localhost:{port}");
    let yaml = support::one_key_yaml(
        &host,
        ("release", &key.public_pem()),
        "prod",
        "default: allow\n",
    );
    let umpire = Umpire::start(&yaml).await;
    for spelling in [
        format!("localhost:{port}/{REPO}:unsigned"),
        format!("LOCALHOST:{port}/{REPO}:unsigned"),
        format!("LocalHost:{port}/{REPO}:unsigned"),
    ] {
        let r = verify(&umpire, &spelling).await;
        assert!(!r.allowed, "{spelling}: {r:?}");
        assert_eq!(r.policy, "prod", "{spelling}");
        assert_eq!(codes(&r), ["NO_SIGNATURES"], "{spelling}");
    }
}

#[tokio::test]
async fn a_plain_http_registry_not_listed_insecure_is_a_lasting_denial_that_says_so() {
    // Debian's docker-registry serves plain HTTP; umpire expects HTTPS from a host not listed.
    let registry = Registry::start().await;
    let key = SigningKey::p256();
    let digest = registry.push_image(REPO, "v1", &Image::new("plain")).await;
    let yaml = config_yaml(
        &registry.host(),
        &[("release", &key.public_pem())],
        &key_policy("prod", &registry.host(), 1, &["release"]),
        "",
    )
    .replace(
        &format!(
            "registries:\n  - host: {}\n    insecure: true\n",
            registry.host()
        ),
        "",
    );
    let umpire = Umpire::start(&yaml).await;
    let r = verify(&umpire, &format!("{}/{REPO}@{digest}", registry.host())).await;
    assert!(!r.allowed);
    assert!(!r.retryable, "retrying cannot help: {r:?}");
    assert_eq!(codes(&r)[0], "REGISTRY_ERROR", "{r:?}");
    let message = &r.findings[0].message;
    assert!(
        message.contains("plain HTTP") && message.contains("insecure: true"),
        "{message}"
    );
}

#[tokio::test]
async fn bypass_cache_is_per_entry_in_a_batch() {
    let s = Setup::new().await;
    s.sign_with(&s.release).await;
    let umpire = Umpire::start(&s.yaml(1, &["release"], "")).await;
    assert!(verify(&umpire, &s.by_digest()).await.allowed);
    let entry = |bypass_cache: bool| VerifyRequest {
        image: s.by_digest(),
        bypass_cache,
        ..Default::default()
    };
    let r = umpire
        .client()
        .await
        .verify_batch(VerifyBatchRequest {
            requests: vec![entry(true), entry(false)],
        })
        .await
        .unwrap()
        .into_inner();
    // One flagged entry does not make the whole batch skip the cache.
    assert!(!r.responses[0].cached, "{:?}", r.responses[0]);
    assert!(r.responses[1].cached, "{:?}", r.responses[1]);
}
