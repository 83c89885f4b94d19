//! Policies a platform team rolls out with, through the real binary against the real registry:
//! warn mode (gRPC and admission), namespace scopes, exclusions and static policies.

mod support;

use support::certs::TestWebhook;
use support::cosign::{Image, SigningKey, payload, signature_layer};
use support::registry::Registry;
use support::served::Served;
use umpire::proto::{VerifyRequest, VerifyResponse};

const REPO: &str = "team/app";

struct Setup {
    registry: Registry,
    release: SigningKey,
    other: SigningKey,
    signed: String,
}

impl Setup {
    async fn new() -> Self {
        let registry = Registry::start().await;
        let release = SigningKey::p256();
        let signed = registry
            .push_signed(REPO, "signed", "rollout signed", &release)
            .await;
        registry
            .push_image(REPO, "unsigned", &Image::new("rollout unsigned"))
            .await;
        registry
            .push_image("team/debug-shell", "v1", &Image::new("debug"))
            .await;
        Self {
            registry,
            release,
            other: SigningKey::p256(),
            signed,
        }
    }

    fn img(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.registry.host())
    }

    /// A config trusting `release` and `other`, with `policies` (YAML list items).
    fn yaml(&self, policies: &str, extra: &str) -> String {
        support::config_yaml(
            &self.registry.host(),
            &[
                ("release", &self.release.public_pem()),
                ("other", &self.other.public_pem()),
            ],
            policies,
            extra,
        )
    }
}

async fn ask(served: &Served, image: &str, namespace: &str) -> VerifyResponse {
    served
        .client()
        .await
        .verify(VerifyRequest {
            image: image.into(),
            namespace: namespace.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

fn codes(f: &[umpire::proto::Finding]) -> Vec<&str> {
    f.iter().map(|f| f.code.as_str()).collect()
}

#[tokio::test]
async fn a_warn_policy_reports_and_never_denies() {
    let s = Setup::new().await;
    let host = s.registry.host();
    let policies = format!(
        "  - name: enforced\n    images: [\"{host}/**\"]\n    signatures:\n      authorities: [ {{ key: release }} ]\n  - name: trial\n    mode: warn\n    images: [\"{host}/**\"]\n    signatures:\n      authorities: [ {{ key: other }} ]\n"
    );
    let served = Served::start(&s.yaml(&policies, ""), &[]).await;

    // The enforced policy holds; the warn one does not: allowed, with its findings as warnings.
    let r = ask(&served, &s.img(&format!("{REPO}:signed")), "").await;
    assert!(r.allowed, "{r:?}");
    assert_eq!(r.digest, s.signed);
    assert_eq!(codes(&r.warnings), ["UNTRUSTED_SIGNER"], "{r:?}");
    assert_eq!(r.warnings[0].policy, "trial");
    assert!(r.findings.iter().all(|f| f.policy == "enforced"), "{r:?}");

    // Unsigned: the enforced policy denies; the warn policy's findings still come as warnings.
    let r = ask(&served, &s.img(&format!("{REPO}:unsigned")), "").await;
    assert!(!r.allowed);
    assert_eq!(codes(&r.findings), ["NO_SIGNATURES"]);
    assert_eq!(codes(&r.warnings), ["NO_SIGNATURES"]);
    assert_eq!(r.warnings[0].policy, "trial");
}

#[tokio::test]
async fn warn_findings_reach_admission_as_warnings() {
    let s = Setup::new().await;
    let host = s.registry.host();
    let hook = TestWebhook::new();
    let policies = format!(
        "  - name: trial\n    mode: warn\n    images: [\"{host}/**\"]\n    signatures:\n      authorities: [ {{ key: release }} ]\n"
    );
    let served = Served::start(&s.yaml(&policies, &hook.yaml), &[]).await;
    served.wait_for(hook.port).await;
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "w", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "namespace": "apps", "operation": "CREATE",
                    "object": {"spec": {"containers": [{"name": "c", "image": s.img(&format!("{REPO}:unsigned"))}]}}}
    });
    let r: serde_json::Value = hook.post("/admission/validate", &review).await;
    assert_eq!(r["response"]["allowed"], true, "{r}");
    let warnings = r["response"]["warnings"].as_array().expect("warnings");
    assert!(
        warnings[0].as_str().unwrap().contains("NO_SIGNATURES")
            && warnings[0].as_str().unwrap().contains("trial"),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn namespace_scopes_and_exclusions_decide_which_policy_applies() {
    let s = Setup::new().await;
    let host = s.registry.host();
    let policies = format!(
        "  - name: prod\n    images: [\"{host}/**\"]\n    exclude: [\"{host}/team/debug-*\"]\n    namespaces: [\"prod-*\"]\n    signatures:\n      authorities: [ {{ key: release }} ]\n"
    );
    let served = Served::start(&s.yaml(&policies, ""), &[]).await;
    let unsigned = s.img(&format!("{REPO}:unsigned"));
    let r = ask(&served, &unsigned, "prod-payments").await;
    assert_eq!(r.policy, "prod");
    assert_eq!(codes(&r.findings), ["NO_SIGNATURES"]);
    for namespace in ["dev", ""] {
        let r = ask(&served, &unsigned, namespace).await;
        assert!(!r.allowed);
        assert_eq!(codes(&r.findings), ["NO_MATCHING_POLICY"], "{namespace:?}");
    }
    let r = ask(&served, &s.img(&format!("{REPO}:signed")), "prod-payments").await;
    assert!(r.allowed, "{r:?}");
    let r = ask(&served, &s.img("team/debug-shell:v1"), "prod-payments").await;
    assert_eq!(
        codes(&r.findings),
        ["NO_MATCHING_POLICY"],
        "excluded: {r:?}"
    );
}

#[tokio::test]
async fn static_policies_allow_or_deny_without_evidence() {
    let s = Setup::new().await;
    let host = s.registry.host();
    // The blocked registry does not exist: a static deny must not need it.
    let policies = format!(
        "  - name: system\n    images: [\"{host}/team/**\"]\n    action: allow\n  - name: blocked\n    images: [\"127.0.0.1:1/**\"]\n    action: deny\n"
    );
    let served = Served::start(&s.yaml(&policies, ""), &[]).await;
    let r = ask(&served, &s.img(&format!("{REPO}:unsigned")), "").await;
    assert!(r.allowed, "{r:?}");
    assert_eq!(codes(&r.findings), ["SATISFIED"]);
    assert!(r.digest.starts_with("sha256:"), "pinned to a digest: {r:?}");
    let r = ask(&served, "127.0.0.1:1/anything:v1", "").await;
    assert!(!r.allowed && !r.retryable, "{r:?}");
    assert_eq!(codes(&r.findings), ["POLICY_VIOLATION"]);
    assert!(r.findings[0].message.contains("blocked"), "{r:?}");
    // A static policy takes no requirements.
    let bad = s.yaml(
        &format!("  - name: x\n    images: [\"{host}/**\"]\n    action: allow\n    signatures:\n      authorities: [ {{ key: release }} ]\n"),
        "",
    );
    let e = umpire::config::Config::from_yaml(&bad, std::path::Path::new("."), "t")
        .unwrap_err()
        .to_string();
    assert!(e.contains("policies[0].action"), "{e}");
}

/// An image whose config says `user`, `created` and `labels`.
fn image_with(user: &str, created: &str, labels: serde_json::Value) -> Image {
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": created,
        "config": {"User": user, "Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": []},
    }))
    .unwrap();
    Image::from_parts(
        support::cosign::Blob::new("application/vnd.oci.image.config.v1+json", config),
        vec![support::cosign::Blob::new(
            "application/vnd.oci.image.layer.v1.tar",
            vec![0; 1024],
        )],
        &[],
    )
}

#[tokio::test]
async fn image_rules_are_checked_on_the_verified_config_of_every_platform() {
    let s = Setup::new().await;
    let host = s.registry.host();
    let fresh = jiff::Timestamp::now().to_string();
    let source =
        serde_json::json!({"org.opencontainers.image.source": "https://github.com/acme/app"});
    let good = image_with("65532:65532", &fresh, source.clone());
    let good_digest = s.registry.push_image(REPO, "good", &good).await;
    let root = s
        .registry
        .push_image(REPO, "root", &image_with("0:0", &fresh, source.clone()))
        .await;
    let old = s
        .registry
        .push_image(
            REPO,
            "old",
            &image_with("1000", "2020-01-01T00:00:00Z", source.clone()),
        )
        .await;
    let unlabelled = s
        .registry
        .push_image(
            REPO,
            "unlabelled",
            &image_with("1000", &fresh, serde_json::json!({})),
        )
        .await;
    // An index whose second platform runs as root.
    let as_root = image_with("root", &fresh, source);
    s.registry.push_image(REPO, "as-root", &as_root).await;
    let index = support::cosign::index(&[&good, &as_root]);
    s.registry
        .push_manifest(REPO, "multi", &index, support::cosign::OCI_INDEX)
        .await;
    let policies = format!(
        "  - name: hygiene\n    images: [\"{host}/**\"]\n    image:\n      non_root: true\n      max_age: 90d\n      labels: {{ org.opencontainers.image.source: \"https://github\\\\.com/acme/.*\" }}\n"
    );
    let served = Served::start(&s.yaml(&policies, ""), &[]).await;
    let r = ask(&served, &s.img(&format!("{REPO}:good")), "").await;
    assert!(r.allowed, "{r:?}");
    assert_eq!(r.digest, good_digest);
    for (tag, digest, rule) in [
        ("root", &root, "image.non_root"),
        ("old", &old, "image.max_age"),
        ("unlabelled", &unlabelled, "image.labels"),
    ] {
        let r = ask(&served, &s.img(&format!("{REPO}:{tag}")), "").await;
        assert!(!r.allowed, "{tag}: {r:?}");
        assert_eq!(&r.digest, digest);
        assert_eq!(codes(&r.findings), ["POLICY_VIOLATION"], "{tag}: {r:?}");
        assert!(r.findings[0].message.starts_with(rule), "{tag}: {r:?}");
    }
    let r = ask(&served, &s.img(&format!("{REPO}:multi")), "").await;
    assert!(!r.allowed, "{r:?}");
    assert!(
        r.findings[0].message.contains("image.non_root")
            && r.findings[0].message.contains("platform"),
        "{r:?}"
    );
}

#[tokio::test]
async fn signatures_are_read_from_another_repository_when_a_policy_says_so() {
    let s = Setup::new().await;
    let host = s.registry.host();
    // Signed, but the signature lives in sigs/app (cosign's COSIGN_REPOSITORY).
    let image = s
        .registry
        .push_image(REPO, "elsewhere", &Image::new("signed elsewhere"))
        .await;
    s.registry
        .push_signatures(
            "sigs/app",
            &image,
            vec![signature_layer(&s.release, payload("x", &image))],
        )
        .await;
    let policy = |extra: &str| {
        format!(
            "  - name: prod\n    images: [\"{host}/team/**\"]\n{extra}    signatures:\n      authorities: [ {{ key: release }} ]\n"
        )
    };
    let served = Served::start(
        &s.yaml(
            &policy(&format!("    signatures_repository: {host}/sigs/app\n")),
            "",
        ),
        &[],
    )
    .await;
    let r = ask(&served, &s.img(&format!("{REPO}:elsewhere")), "").await;
    assert!(r.allowed, "{r:?}");
    assert_eq!(r.digest, image);
    // The image's own signature is not read from there.
    let r = ask(&served, &s.img(&format!("{REPO}:signed")), "").await;
    assert_eq!(codes(&r.findings), ["NO_SIGNATURES"], "{r:?}");
    drop(served);
    let served = Served::start(&s.yaml(&policy(""), ""), &[]).await;
    let r = ask(&served, &s.img(&format!("{REPO}:elsewhere")), "").await;
    assert_eq!(codes(&r.findings), ["NO_SIGNATURES"], "{r:?}");
}
