//! Every value that decides a verdict is read as the component that acts on it reads it: image
//! configs as runc/containerd and the kubelet read them (Go's encoding/json, `strconv.Atoi` then
//! `uint32`), hosts as Go dials them, cosign payloads as cosign parses them, Notation scopes as
//! notation-go matches them. Each test is written as the attacker (or the surprised user) would
//! try it, through the real binary where the value arrives at a surface.

mod support;

use std::time::Duration;

use support::cosign::{Blob, Image, SigningKey, payload, signature_layer};
use support::registry::Registry;
use support::served::Served;
use support::text;
use umpire::proto::{VerifyRequest, VerifyResponse};

const REPO: &str = "team/app";

fn umpire(args: &[&str]) -> std::process::Output {
    support::umpire_cli(args, &[])
}

fn codes(r: &VerifyResponse) -> Vec<&str> {
    r.findings.iter().map(|f| f.code.as_str()).collect()
}

/// An image whose config is exactly `config` (bytes as written: key order and case kept).
fn image_with_config(config: &str) -> Image {
    Image::from_parts(
        Blob::new(
            "application/vnd.oci.image.config.v1+json",
            config.as_bytes().to_vec(),
        ),
        vec![Blob::new(
            "application/vnd.oci.image.layer.v1.tar",
            vec![0; 1024],
        )],
        &[],
    )
}

fn user_config(user: &str) -> String {
    format!(
        r#"{{"architecture":"amd64","os":"linux","created":"{}","config":{{"User":{user:?}}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#,
        jiff::Timestamp::now()
    )
}

fn rules_yaml(host: &str, rules: &str) -> String {
    support::config_yaml(
        host,
        &[],
        &format!("  - name: hygiene\n    images: [\"{host}/**\"]\n    image:\n{rules}"),
        "",
    )
}

#[tokio::test]
async fn non_root_reads_the_uid_as_runc_and_containerd_do() {
    let registry = Registry::start().await;
    let host = registry.host();
    let mut cases = Vec::new();
    // Each of these runs as uid 0 (Atoi, then uint32), or cannot be verified (a name).
    for (tag, user) in [
        ("zeros", "00"),
        ("plus", "+0:0"),
        ("wraps", "4294967296"),
        ("minus-zero", "-0"),
        ("name", "app"),
        ("root-name", "root"),
        ("three-parts", "1000:1000:1"),
    ] {
        registry
            .push_image(REPO, tag, &image_with_config(&user_config(user)))
            .await;
        cases.push((tag, user));
    }
    registry
        .push_image(REPO, "ok", &image_with_config(&user_config("65532:65532")))
        .await;
    let served = Served::start(&rules_yaml(&host, "      non_root: true\n"), &[]).await;
    let r = served.ask(&format!("{host}/{REPO}:ok")).await;
    assert!(r.allowed, "{r:?}");
    for (tag, user) in cases {
        let r = served.ask(&format!("{host}/{REPO}:{tag}")).await;
        assert!(!r.allowed, "User {user:?} passed non_root: {r:?}");
        assert_eq!(codes(&r), ["POLICY_VIOLATION"], "{user:?}: {r:?}");
        assert!(r.findings[0].message.contains("image.non_root"), "{r:?}");
    }
    let r = served.ask(&format!("{host}/{REPO}:name")).await;
    assert!(
        r.findings[0].message.contains("numeric USER"),
        "a name is refused with what to do: {r:?}"
    );
}

#[tokio::test]
async fn configs_whose_keys_go_folds_together_are_refused() {
    let registry = Registry::start().await;
    let host = registry.host();
    let now = jiff::Timestamp::now();
    for (tag, config) in [
        // containerd reads `user` (the last match) and runs as root.
        (
            "user-twice",
            format!(r#"{{"created":"{now}","config":{{"User":"1000","user":"0"}}}}"#),
        ),
        (
            "config-twice",
            format!(r#"{{"created":"{now}","config":{{"User":"1000"}},"Config":{{"User":"0"}}}}"#),
        ),
        // The Kelvin sign folds to K: `\u212Aey`-style tricks on any field.
        (
            "kelvin",
            format!(
                "{{\"created\":\"{now}\",\"config\":{{\"User\":\"1000\",\"U\u{17F}er\":\"0\"}}}}"
            ),
        ),
    ] {
        registry
            .push_image(REPO, tag, &image_with_config(&config))
            .await;
    }
    // Go reads `config.user` as `User`: a lower-case key alone is honoured, not ignored.
    registry
        .push_image(
            REPO,
            "lower",
            &image_with_config(&format!(r#"{{"created":"{now}","Config":{{"user":"0"}}}}"#)),
        )
        .await;
    let served = Served::start(&rules_yaml(&host, "      non_root: true\n"), &[]).await;
    for tag in ["user-twice", "config-twice", "kelvin"] {
        let r = served.ask(&format!("{host}/{REPO}:{tag}")).await;
        assert!(!r.allowed, "{tag}: {r:?}");
        assert!(
            r.findings[0].message.contains("encoding/json"),
            "{tag}: {r:?}"
        );
    }
    let r = served.ask(&format!("{host}/{REPO}:lower")).await;
    assert!(!r.allowed, "{r:?}");
    assert!(r.findings[0].message.contains("uid 0"), "{r:?}");
}

#[tokio::test]
async fn a_build_date_in_the_future_is_a_violation_and_max_age_bounds_the_cached_allow() {
    let registry = Registry::start().await;
    let host = registry.host();
    let created = |ahead: i64| {
        let t = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(ahead);
        format!(r#"{{"created":"{t}","config":{{"User":"1000"}}}}"#)
    };
    let future = registry
        .push_image(REPO, "future", &image_with_config(&created(3600)))
        .await;
    let skewed = registry
        .push_image(REPO, "skewed", &image_with_config(&created(60)))
        .await;
    let yaml = rules_yaml(&host, "      max_age: 10d\n");
    let served = Served::start(&yaml, &[]).await;
    let r = served.ask(&format!("{host}/{REPO}@{future}")).await;
    assert!(
        !r.allowed,
        "a build date an hour ahead passes max_age forever: {r:?}"
    );
    assert!(r.findings[0].message.contains("future"), "{r:?}");
    let r = served.ask(&format!("{host}/{REPO}@{skewed}")).await;
    assert!(r.allowed, "a minute of clock skew is tolerated: {r:?}");

    // The allow holds until created + max_age, and the cache keeps it no longer.
    let nine_days = registry
        .push_image(REPO, "old", &image_with_config(&created(-9 * 86_400)))
        .await;
    let engine = support::engine(&yaml);
    let v = engine
        .verify(&format!("{host}/{REPO}@{nine_days}"), None)
        .await
        .unwrap();
    assert!(v.allowed, "{v:?}");
    let until = v
        .valid_until
        .expect("an allow resting on max_age is time-bound");
    let left = until.duration_since(jiff::Timestamp::now());
    assert!(
        left <= jiff::SignedDuration::from_secs(86_400) && left.as_secs() > 86_000,
        "{until}"
    );
}

#[tokio::test]
async fn buildkit_attestation_manifests_are_not_platforms() {
    let registry = Registry::start().await;
    let host = registry.host();
    let runnable = image_with_config(&user_config("1000"));
    registry.push_image(REPO, "amd64", &runnable).await;
    // BuildKit's attestation manifest: config of an unknown platform with no User, one in-toto layer.
    let attestation = Image::from_parts(
        Blob::new(
            "application/vnd.oci.image.config.v1+json",
            br#"{"architecture":"unknown","os":"unknown","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec(),
        ),
        vec![Blob::new("application/vnd.in-toto+json", b"{}".to_vec())],
        &[],
    );
    registry.push_image(REPO, "att", &attestation).await;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": support::cosign::OCI_INDEX,
        "manifests": [
            {"mediaType": runnable.media_type, "digest": runnable.digest(), "size": runnable.manifest.len(),
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": attestation.media_type, "digest": attestation.digest(), "size": attestation.manifest.len(),
             "platform": {"os": "unknown", "architecture": "unknown"},
             "annotations": {"vnd.docker.reference.type": "attestation-manifest",
                             "vnd.docker.reference.digest": runnable.digest()}},
        ],
    });
    registry
        .push_manifest(
            REPO,
            "multi",
            &serde_json::to_vec(&index).unwrap(),
            support::cosign::OCI_INDEX,
        )
        .await;
    let served = Served::start(&rules_yaml(&host, "      non_root: true\n"), &[]).await;
    let r = served.ask(&format!("{host}/{REPO}:multi")).await;
    assert!(
        r.allowed,
        "every docker buildx image was denied as running as root: {r:?}"
    );
}

#[tokio::test]
async fn other_spellings_of_a_port_or_an_ip_do_not_skip_the_policy() {
    let registry = Registry::start().await;
    let host = registry.host();
    let image = Image::new("spellings");
    let digest = registry.push_image(REPO, "v1", &image).await;
    let key = SigningKey::p256();
    let port = host.rsplit(':').next().unwrap().to_owned();
    // Under `default: allow`, an unmatched spelling would be allowed without a signature.
    let yaml = format!(
        "{}{}",
        support::config_yaml(
            &host,
            &[("k", &key.public_pem())],
            &format!(
                "{}  - name: v6\n    images: [\"[::1]:5000/**\"]\n    action: deny\n  - name: named\n    images: [\"localhost:5000/**\"]\n    action: deny\n",
                support::key_policy("p", &host, 1, &["k"])
            ),
            "",
        ),
        "default: allow\n"
    );
    let served = Served::start(&yaml, &[]).await;
    for spelling in [
        format!("127.0.0.1:0{port}/{REPO}@{digest}"),
        format!("127.0.0.1:000{port}/{REPO}@{digest}"),
    ] {
        let r = served.ask(&spelling).await;
        assert!(!r.allowed, "{spelling}: {r:?}");
        assert_eq!(codes(&r), ["NO_SIGNATURES"], "{spelling}: {r:?}");
    }
    for spelling in [
        format!("[0::1]:5000/app@{digest}"),
        format!("[0:0:0:0:0:0:0:1]:05000/app@{digest}"),
        format!("LOCALHOST:05000/app@{digest}"),
    ] {
        let r = served.ask(&spelling).await;
        assert!(!r.allowed, "{spelling}: {r:?}");
        assert_eq!(codes(&r), ["POLICY_VIOLATION"], "{spelling}: {r:?}");
    }
    // Spellings a resolver reads in more than one way are refused outright.
    for spelling in [
        format!("127.1:{port}/{REPO}@{digest}"),
        format!("2130706433:{port}/{REPO}@{digest}"),
        format!("127.0.0.1:0/{REPO}@{digest}"),
    ] {
        let e = served
            .client()
            .await
            .verify(VerifyRequest {
                image: spelling.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{spelling}: {e}");
    }
}

#[tokio::test]
async fn registries_and_the_gate_upstream_take_the_canonical_spelling() {
    let c = support::config(
        "registries:\n  - host: LOCALHOST:05000\n    insecure: true\n  - host: \"[0::1]:0443\"\next_authz_listen: 127.0.0.1:0\next_authz:\n  upstream: \"[0:0::1]:05000\"\npolicies: []\n",
    );
    assert!(
        c.registries.contains_key("localhost:5000"),
        "{:?}",
        c.registries.keys()
    );
    assert!(
        c.registries.contains_key("[::1]"),
        "{:?}",
        c.registries.keys()
    );
    assert_eq!(c.ext_authz.unwrap().upstream, "[::1]:5000");
    let err = umpire::Config::from_yaml(
        "registries:\n  - host: localhost:0\npolicies: []\n",
        std::path::Path::new("."),
        "t",
    )
    .unwrap_err();
    assert!(err.to_string().contains("registries[0].host"), "{err}");
}

#[tokio::test]
async fn a_payload_of_another_type_than_cosigns_is_refused() {
    let registry = Registry::start().await;
    let host = registry.host();
    let image = Image::new("atomic");
    let digest = registry.push_image(REPO, "v1", &image).await;
    let key = SigningKey::p256();
    let mut p: serde_json::Value =
        serde_json::from_slice(&payload(&format!("{host}/{REPO}"), &digest)).unwrap();
    p["critical"]["type"] = "atomic container signature".into();
    registry
        .push_signatures(
            REPO,
            &digest,
            vec![signature_layer(&key, serde_json::to_vec(&p).unwrap())],
        )
        .await;
    let yaml = support::one_key_yaml(&host, ("k", &key.public_pem()), "p", "");
    let served = Served::start(&yaml, &[]).await;
    let r = served.ask(&format!("{host}/{REPO}@{digest}")).await;
    assert!(!r.allowed, "cosign refuses this payload type: {r:?}");
    assert_eq!(codes(&r), ["SIGNATURE_INVALID"], "{r:?}");
    assert!(r.findings[0].message.contains("atomic"), "{r:?}");
    assert_eq!(
        r.findings[0].authority, "key:k",
        "denials name their authority"
    );
}

#[tokio::test]
async fn a_warn_policy_whose_evidence_cannot_be_fetched_only_warns() {
    let registry = Registry::start().await;
    let host = registry.host();
    let image = Image::new("warned");
    let digest = registry.push_image(REPO, "v1", &image).await;
    let key = SigningKey::p256();
    registry
        .push_signatures(
            REPO,
            &digest,
            vec![signature_layer(
                &key,
                payload(&format!("{host}/{REPO}"), &digest),
            )],
        )
        .await;
    let yaml = support::config_yaml(
        &host,
        &[("k", &key.public_pem())],
        &format!(
            "{}  - name: trial\n    images: [\"{host}/**\"]\n    mode: warn\n    signatures_repository: 127.0.0.1:1/sigs\n    signatures:\n      authorities: [ {{ key: k }} ]\n    image:\n      non_root: true\n",
            support::key_policy("p", &host, 1, &["k"])
        ),
        "",
    )
    .replacen(
        "registries:\n",
        "registries:\n  - host: 127.0.0.1:1\n    insecure: true\n",
        1,
    );
    let served = Served::start(&yaml, &[]).await;
    let r = served.ask(&format!("{host}/{REPO}@{digest}")).await;
    assert!(r.allowed, "every enforce policy held: {r:?}");
    assert!(!r.retryable, "{r:?}");
    let warned: Vec<&str> = r.warnings.iter().map(|f| f.code.as_str()).collect();
    assert!(warned.contains(&"REGISTRY_UNAVAILABLE"), "{r:?}");
    assert!(r.warnings.iter().all(|f| f.policy == "trial"), "{r:?}");
}

#[test]
fn config_check_says_what_it_sees() {
    let (_dir, path) = support::config_file(
        "ext_authz_listen: 127.0.0.1:0\next_authz:\n  upstream: registry.example.com\npolicies:\n  - name: odd\n    images: [\"**/nomatch*x[\"]\n    action: deny\n  - name: tenants\n    images: [\"registry.example.com/**\"]\n    namespaces: [\"prod-*\"]\n    action: deny\n",
    );
    let out = umpire(&["config", "check", "--config", path.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("warning:") && l.contains("nomatch*x[")),
        "a glob that can never match is named: {stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("warning:")
            && l.contains("policy tenants has namespaces")
            && l.contains("registry gate")),
        "{stdout}"
    );
}

#[test]
fn an_empty_value_for_a_key_with_a_default_is_an_error_naming_it() {
    let (_dir, path) = support::config_file(
        "policies:\n  - name: p\n    images: [\"ghcr.io/**\"]\n    signatures:\n      threshold:\n      authorities: [ { key: k } ]\n",
    );
    let out = umpire(&["config", "check", "--config", path.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("policies[0].signatures.threshold") && stderr.contains("empty value"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_cli_names_its_own_flag_for_a_plain_http_registry() {
    let registry = Registry::start().await;
    let host = registry.host();
    let digest = registry.push_image(REPO, "v1", &Image::new("plain")).await;
    let key = SigningKey::p256();
    let dir = tempfile::tempdir().unwrap();
    let pub_path = dir.path().join("cosign.pub");
    std::fs::write(&pub_path, key.public_pem()).unwrap();
    let out = umpire(&[
        "verify",
        "--key",
        pub_path.to_str().unwrap(),
        "--insecure-ignore-tlog",
        &format!("{host}/{REPO}@{digest}"),
    ]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("--allow-insecure-registry"), "{stdout}");
    assert!(!stdout.contains("insecure: true"), "{stdout}");
}

#[cfg(unix)]
#[tokio::test]
async fn a_busy_folder_does_not_postpone_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("umpire.yaml");
    let yaml = |glob: &str| {
        format!(
            "listen: 127.0.0.1:0\nmetrics_listen: 127.0.0.1:0\npolicies:\n  - name: p\n    images: [\"{glob}/**\"]\n    action: deny\n"
        )
    };
    std::fs::write(&config, yaml("127.0.0.1:1")).unwrap();
    let served = support::served::Served::start_file(&config, &[]).await;
    let port = served.grpc;
    // A log file beside the config, appended every 100 ms for the whole test.
    let log = dir.path().join("app.log");
    let writer = tokio::spawn(async move {
        loop {
            use std::io::Write as _;
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
            {
                let _ = writeln!(f, "busy");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(&config, yaml("127.0.0.1:2")).unwrap();
    let mut written = std::time::Instant::now();
    let image = format!("127.0.0.1:2/app@sha256:{}", "a".repeat(64));
    let client = || async {
        umpire::proto::verifier_client::VerifierClient::connect(format!("http://127.0.0.1:{port}"))
            .await
            .unwrap()
    };
    let mut reloaded = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Written again now and then, in case the first write came before the watcher was set up
        // (the busy log file never stops, so only the fix lets any of them through).
        if written.elapsed() > Duration::from_secs(3) {
            std::fs::write(&config, yaml("127.0.0.1:2")).unwrap();
            written = std::time::Instant::now();
        }
        let r = client()
            .await
            .verify(VerifyRequest {
                image: image.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        if r.findings[0].code == "POLICY_VIOLATION" {
            reloaded = true;
            break;
        }
    }
    writer.abort();
    assert!(
        reloaded,
        "writes to another file in the folder postponed the reload for 10 s"
    );
}

#[test]
fn notation_scopes_are_read_as_references_and_printed_canonical() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/notation/truststore");
    let document = |scopes: &str| {
        format!(
            r#"{{"version":"1.0","trustPolicies":[{{"name":"team","registryScopes":[{scopes}],"signatureVerification":{{"level":"strict"}},"trustStores":["ca:e2e"],"trustedIdentities":["*"]}},{{"name":"rest","registryScopes":["*"],"signatureVerification":{{"level":"skip"}}}}]}}"#
        )
    };
    let policy = dir.path().join("trustpolicy.json");
    let config = dir.path().join("umpire.yaml");
    std::fs::write(
        &config,
        format!(
            "trust:\n  notation:\n    store: {}\npolicies:\n  - name: n\n    images: [\"**\"]\n    signatures:\n      authorities:\n        - notation:\n            trust_policy: {}\n",
            store.display(),
            policy.display()
        ),
    )
    .unwrap();
    // A trust policy written on a workstation: other spellings of the same repositories.
    std::fs::write(
        &policy,
        document(r#""LOCALHOST:05000/app","docker.io/nginx""#),
    )
    .unwrap();
    let out = umpire(&["config", "check", "--config", config.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("statement \"team\" scopes [localhost:5000/app, docker.io/library/nginx]"),
        "{stdout}"
    );
    // Two spellings of one repository in two statements: notation-go's one-statement rule.
    std::fs::write(
        &policy,
        r#"{"version":"1.0","trustPolicies":[{"name":"a","registryScopes":["docker.io/nginx"],"signatureVerification":{"level":"skip"}},{"name":"b","registryScopes":["docker.io/library/nginx"],"signatureVerification":{"level":"skip"}}]}"#,
    )
    .unwrap();
    let out = umpire(&["config", "check", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("two statements"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn a_signature_copied_to_another_repository_is_refused_under_signed_identity() {
    let registry = Registry::start().await;
    let host = registry.host();
    let key = SigningKey::p256();
    let image = Image::new("copied");
    // Signed for acme/app, then image and signature copied to acme/other (crane cp does this).
    let mut digest = String::new();
    for repo in ["acme/app", "acme/other"] {
        digest = registry.push_image(repo, "v1", &image).await;
        registry
            .push_signatures(
                repo,
                &digest,
                vec![signature_layer(
                    &key,
                    payload(&format!("{host}/acme/app"), &digest),
                )],
            )
            .await;
    }
    let yaml = |identity: &str| {
        support::config_yaml(
            &host,
            &[("k", &key.public_pem())],
            &format!(
                "  - name: p\n    images: [\"{host}/**\"]\n    signatures:\n      authorities:\n        - key: k\n{identity}"
            ),
            "",
        )
    };
    // cosign's reading (the default): the name in the payload is not checked.
    let served = Served::start(&yaml(""), &[]).await;
    let r = served.ask(&format!("{host}/acme/other@{digest}")).await;
    assert!(r.allowed, "{r:?}");
    let served = Served::start(&yaml("          signed_identity: repository\n"), &[]).await;
    let r = served.ask(&format!("{host}/acme/app@{digest}")).await;
    assert!(r.allowed, "{r:?}");
    let r = served.ask(&format!("{host}/acme/other@{digest}")).await;
    assert!(!r.allowed, "{r:?}");
    assert_eq!(codes(&r), ["IDENTITY_MISMATCH"], "{r:?}");
    assert!(r.findings[0].message.contains("acme/app"), "{r:?}");
    // `exact` also asks for the tag: a payload naming only the repository is `latest`.
    let served = Served::start(&yaml("          signed_identity: exact\n"), &[]).await;
    let r = served.ask(&format!("{host}/acme/app:v1")).await;
    assert_eq!(codes(&r), ["IDENTITY_MISMATCH"], "{r:?}");
}
