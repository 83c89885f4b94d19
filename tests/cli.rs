//! `umpire verify` as a user runs it: exit codes, text and JSON output, config errors.

mod support;

use std::process::Output;

use support::cosign::{Image, SigningKey, payload, signature_layer};
use support::registry::Registry;
use support::{config_file, config_yaml};

const REPO: &str = "team/app";

fn umpire(args: &[&str]) -> Output {
    support::umpire_cli(args, &[])
}

fn text(b: &[u8]) -> String {
    support::text(b)
}

#[test]
fn readme_demo_command_allows_the_signed_and_denies_the_unsigned() {
    let out = umpire(&[
        "verify",
        "oci:examples/demo:signed",
        "oci:examples/demo:unsigned",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("ALLOWED oci:examples/demo:signed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("DENIED  oci:examples/demo:unsigned"),
        "{stdout}"
    );
    assert!(
        stdout.contains("SATISFIED") && stdout.contains("NO_SIGNATURES"),
        "{stdout}"
    );

    let out = umpire(&["verify", "oci:examples/demo:signed"]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn json_lines_carry_the_grpc_fields() {
    let out = umpire(&[
        "verify",
        "--json",
        "oci:examples/demo:signed",
        "oci:examples/demo:unsigned",
    ]);
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["allowed"], true);
    assert!(lines[0]["digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(lines[0]["policy"], "demo");
    assert_eq!(lines[0]["findings"][0]["code"], "SATISFIED");
    assert_eq!(lines[0]["findings"][0]["authority"], "key:demo");
    assert_eq!(lines[1]["allowed"], false);
    assert_eq!(lines[1]["retryable"], false);
    assert_eq!(lines[1]["findings"][0]["code"], "NO_SIGNATURES");
}

#[test]
fn bad_config_and_bad_references_exit_2_with_a_message() {
    let (_dir, path) = config_file(
        "policies:\n  - name: p\n    images: [\"a.io/**\"]\n    signatures:\n      authorities:\n        - key: nope\n",
    );
    let out = umpire(&["verify", "--config", path.to_str().unwrap(), "a.io/x:1"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("policies[0].signatures.authorities[0].key") && err.contains("nope"),
        "{err}"
    );

    let out = umpire(&["verify", "Not A Reference"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("Not A Reference"));

    let out = umpire(&["verify", "--policy", "missing", "oci:examples/demo:signed"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("missing"));
}

#[tokio::test]
async fn against_a_real_registry_exit_codes_follow_the_verdicts() {
    let mut registry = Registry::start().await;
    let key = SigningKey::p256();
    let signed = Image::new("cli signed");
    let digest = registry.push_image(REPO, "signed", &signed).await;
    registry
        .push_signatures(
            REPO,
            &digest,
            vec![signature_layer(&key, payload("x", &digest))],
        )
        .await;
    registry
        .push_image(REPO, "unsigned", &Image::new("cli unsigned"))
        .await;
    let yaml = support::one_key_yaml(&registry.host(), ("release", &key.public_pem()), "prod", "");
    let (_dir, path) = config_file(&yaml);
    let config = path.to_str().unwrap();
    let signed_ref = format!("{}/{REPO}:signed", registry.host());
    let unsigned_ref = format!("{}/{REPO}:unsigned", registry.host());

    let out = umpire(&["verify", "--config", config, &signed_ref]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains(&digest),
        "the verdict names the digest"
    );

    let out = umpire(&["verify", "--config", config, &signed_ref, &unsigned_ref]);
    assert_eq!(out.status.code(), Some(1));

    registry.stop();
    let out = umpire(&["verify", "--config", config, "--json", &signed_ref]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "registry down: could not be decided"
    );
    let v: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(v["allowed"], false);
    assert_eq!(v["retryable"], true);
    assert_eq!(v["findings"][0]["code"], "REGISTRY_UNAVAILABLE");
}

#[test]
fn the_readme_worked_example_allows_the_attested_demo_image() {
    let out = umpire(&[
        "verify",
        "--config",
        "examples/supply-chain.yaml",
        "oci:examples/demo:signed",
        "oci:examples/demo:unsigned",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("ALLOWED oci:examples/demo:signed"),
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("SATISFIED").count(),
        3,
        "signature, provenance and SBOM: {stdout}"
    );
    assert!(stdout.contains("ATTESTATION_MISSING"), "{stdout}");
}

#[test]
fn table_output_has_one_line_per_image() {
    let out = umpire(&[
        "verify",
        "--format",
        "table",
        "oci:examples/demo:signed",
        "oci:examples/demo:unsigned",
    ]);
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with("VERDICT")
            && lines[1].starts_with("ALLOWED")
            && lines[2].starts_with("DENIED"),
        "{stdout}"
    );
    assert!(lines[2].contains("NO_SIGNATURES"));
}

#[test]
fn config_check_prints_canonical_scopes_and_what_deserves_a_look() {
    let key = SigningKey::p256();
    let yaml = config_yaml(
        "LOCALHOST:5000",
        &[
            ("release", &key.public_pem()),
            ("spare", &SigningKey::p256().public_pem()),
        ],
        "  - name: prod\n    images: [\"LOCALHOST:5000/team/**\", \"team/App\"]\n    mode: warn\n    signatures:\n      authorities: [ { key: release } ]\n",
        "",
    );
    let (_dir, path) = config_file(&yaml);
    let out = umpire(&["config", "check", "--config", path.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout
            .contains("policy prod: images [localhost:5000/team/**, docker.io/team/App] mode warn"),
        "{stdout}"
    );
    assert!(
        stdout.contains("warning: policies[0].images[1]: can never match"),
        "{stdout}"
    );
    assert!(
        stdout.contains("warning: trust.keys.spare is used by no authority"),
        "{stdout}"
    );

    let (_dir, bad) = config_file(&yaml.replace("key: release", "key: relase"));
    let out = umpire(&["config", "check", "--config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("relase"),
        "{}",
        text(&out.stderr)
    );
    let out = umpire(&["config", "check"]);
    assert_eq!(out.status.code(), Some(0), "the built-in default is valid");
}

/// A registry holding `REPO:signed` (signed by the returned key, its digest returned) and
/// `REPO:unsigned`.
async fn signed_and_unsigned(label: &str) -> (Registry, SigningKey, String) {
    let registry = Registry::start().await;
    let key = SigningKey::p256();
    let signed = registry
        .push_signed(REPO, "signed", &format!("{label} signed"), &key)
        .await;
    registry
        .push_image(REPO, "unsigned", &Image::new(&format!("{label} unsigned")))
        .await;
    (registry, key, signed)
}

#[tokio::test]
async fn cosign_like_flags_verify_without_a_config_file() {
    use support::cosign::{self, attestation_layer, statement};
    let (registry, key, signed) = signed_and_unsigned("cli").await;
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("release.pub");
    std::fs::write(&pem, key.public_pem()).unwrap();
    let img = |t: &str| format!("{}/{REPO}:{t}", registry.host());
    let flags = |extra: &[&str], image: &str| {
        let mut args = vec![
            "verify",
            "--key",
            pem.to_str().unwrap(),
            "--allow-insecure-registry",
        ];
        args.extend_from_slice(extra);
        args.push(image);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        umpire(&refs)
    };
    // cosign 2: a keyed signature must be in the transparency log unless --insecure-ignore-tlog
    // says otherwise (this one is not logged).
    let out = run(flags(&[], &img("signed")));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("TLOG_INVALID"),
        "{}",
        text(&out.stdout)
    );
    let out = run(flags(&["--insecure-ignore-tlog"], &img("signed")));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("--insecure-ignore-tlog"),
        "said loudly"
    );
    let out = run(flags(&["--insecure-ignore-tlog"], &img("unsigned")));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));

    // --type (or --attestation-type), with cosign's shorthands: the same signer must also have
    // attested.
    let provenance = "https://slsa.dev/provenance/v1";
    let out = run(flags(
        &["--insecure-ignore-tlog", "--type", "slsaprovenance1"],
        &img("signed"),
    ));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("ATTESTATION_MISSING"),
        "{}",
        text(&out.stdout)
    );
    registry
        .push_attestations(
            REPO,
            &signed,
            vec![attestation_layer(
                Some(&key),
                &statement(
                    &signed,
                    provenance,
                    serde_json::json!({"buildDefinition": {}}),
                ),
            )],
        )
        .await;
    for t in ["slsaprovenance1", provenance] {
        let out = run(flags(
            &["--insecure-ignore-tlog", "--type", t],
            &img("signed"),
        ));
        assert_eq!(out.status.code(), Some(0), "{t}: {}", text(&out.stdout));
    }
    let out = run(flags(
        &["--insecure-ignore-tlog", "--attestation-type", provenance],
        &img("signed"),
    ));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let out = run(flags(&["--type", "not a type"], &img("signed")));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let _ = cosign::OCI_MANIFEST;

    // With --config, the flags add a policy for the images named.
    let config = dir.path().join("umpire.yaml");
    std::fs::write(
        &config,
        format!(
            "registries:\n  - host: {}\n    insecure: true\npolicies: []\ndefault: deny\n",
            registry.host()
        ),
    )
    .unwrap();
    let out = umpire(&[
        "verify",
        "--config",
        config.to_str().unwrap(),
        "--key",
        pem.to_str().unwrap(),
        "--insecure-ignore-tlog",
        &img("signed"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // Key references umpire cannot read are refused, saying what to do.
    let out = umpire(&["verify", "--key", "k8s://ns/cosign", &img("signed")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cosign public-key"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn cosign_like_keyless_flags_match_the_identity() {
    use support::sigstore::{GITHUB_ISSUER, Identity, TestSigstore};
    let registry = Registry::start().await;
    let sigstore = TestSigstore::new();
    let digest = registry
        .push_image(REPO, "v1", &Image::new("cli keyless"))
        .await;
    let layer = sigstore.legacy_layer(
        &Identity::github("acme/app"),
        payload(&format!("{}/{REPO}", registry.host()), &digest),
    );
    registry.push_signatures(REPO, &digest, vec![layer]).await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("trusted_root.json");
    std::fs::write(&root, sigstore.trusted_root_json()).unwrap();
    let image = format!("{}/{REPO}:v1", registry.host());
    let keyless = |identity_flag: &str, identity: &str| {
        let args = [
            "verify",
            identity_flag,
            identity,
            "--certificate-oidc-issuer",
            GITHUB_ISSUER,
            "--trusted-root",
            root.to_str().unwrap(),
            "--allow-insecure-registry",
            &image,
        ];
        umpire(&args)
    };
    let out = keyless(
        "--certificate-identity-regexp",
        "https://github\\.com/acme/.+",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let out = keyless(
        "--certificate-identity",
        "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let out = keyless(
        "--certificate-identity-regexp",
        "https://github\\.com/evil/.+",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("IDENTITY_MISMATCH"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_missing_config_file_is_reported_once() {
    for args in [
        ["serve", "--config", "/nonexistent/umpire.yaml", ""],
        ["verify", "--config", "/nonexistent/umpire.yaml", "a/b:c"],
    ] {
        let args: Vec<&str> = args.into_iter().filter(|a| !a.is_empty()).collect();
        let out = umpire(&args);
        assert_eq!(out.status.code(), Some(2));
        let stderr = text(&out.stderr);
        assert_eq!(
            stderr.matches("/nonexistent/umpire.yaml").count(),
            1,
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.matches("No such file").count(), 1, "{stderr}");
    }
}

#[test]
fn config_check_refuses_a_certificate_and_a_key_that_do_not_belong_together() {
    let pki = support::certs::Pki::new("check");
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = pki.server().write(dir.path(), "a");
    let (_, other_key) = pki.server().write(dir.path(), "b");
    let yaml = |key: &std::path::Path| {
        format!(
            "tls:\n  cert: {}\n  key: {}\npolicies:\n  - name: p\n    images: [\"r.example/**\"]\n    signatures:\n      authorities:\n        - key: k\ntrust:\n  keys:\n    k: |\n{}",
            cert.display(),
            key.display(),
            SigningKey::p256()
                .public_pem()
                .lines()
                .map(|l| format!("      {l}\n"))
                .collect::<String>()
        )
    };
    let path = dir.path().join("umpire.yaml");
    std::fs::write(&path, yaml(&dir.path().join("a.key"))).unwrap();
    let out = umpire(&["config", "check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    std::fs::write(&path, yaml(&other_key)).unwrap();
    let out = umpire(&["config", "check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("tls"), "{}", text(&out.stderr));
}

#[test]
fn config_check_works_in_a_policy_repositorys_ci() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::p256();
    std::fs::write(dir.path().join("scanner.pub"), key.public_pem()).unwrap();
    // Secrets and TLS files exist only where umpire runs.
    let yaml = "webhook:\n  listen: 0.0.0.0:8443\n  tls_cert: /etc/umpire/tls/tls.crt\n  tls_key: /etc/umpire/tls/tls.key\n  timeout: 15s\ntrust:\n  keys:\n    scanner: scanner.pub\npolicies:\n  - name: team\n    images: [\"registry.example.com/team/*\"]\n    artifacts:\n      - type: application/sarif+json\n        authorities: [ { key: scanner } ]\n        vulnerabilities: { max_severity: high }\nlimits:\n  deadline: 14s\ncache:\n  redis:\n    url: redis://redis:6379\n    hmac_key_env: UMPIRE_TEST_ABSENT_KEY\n    password_env: UMPIRE_TEST_ABSENT_PASSWORD\n";
    let path = dir.path().join("umpire.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = umpire(&["config", "check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    let out = umpire(&[
        "config",
        "check",
        "--offline",
        "--config",
        path.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    // A key only an artifact requirement uses is in use.
    assert!(
        !stdout.contains("scanner is used by no authority"),
        "{stdout}"
    );
    // `*` stays within a segment: said, with the `**` that crosses them.
    assert!(stdout.contains("registry.example.com/team/**"), "{stdout}");
    // A deadline the API server would outwait.
    assert!(stdout.contains("webhook.timeout"), "{stdout}");

    // The same configuration inside a ConfigMap (as `kubectl kustomize deploy/` renders it).
    let mut data = String::new();
    for (name, content) in [
        ("umpire.yaml", yaml.to_owned()),
        ("scanner.pub", key.public_pem()),
    ] {
        data.push_str(&format!("  {name}: |\n"));
        for line in content.lines() {
            data.push_str(&format!("    {line}\n"));
        }
    }
    let manifest = dir.path().join("rendered.yaml");
    std::fs::write(
        &manifest,
        format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: umpire-config\ndata:\n{data}"),
    )
    .unwrap();
    let out = umpire(&[
        "config",
        "check",
        "--offline",
        "-f",
        manifest.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("ConfigMap umpire-config"), "{stdout}");
    // deploy/ itself, rendered, passes.
    if let Ok(out) = std::process::Command::new("kubectl")
        .args(["kustomize", concat!(env!("CARGO_MANIFEST_DIR"), "/deploy")])
        .output()
        && out.status.success()
    {
        std::fs::write(&manifest, &out.stdout).unwrap();
        let out = umpire(&[
            "config",
            "check",
            "--offline",
            "-f",
            manifest.to_str().unwrap(),
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    let missing = umpire(&["config", "check", "-f", path.to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(2));
}

#[tokio::test]
async fn admission_dry_runs_print_what_the_webhook_would_answer() {
    let (registry, key, signed) = signed_and_unsigned("dry run").await;
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("umpire.yaml");
    std::fs::write(
        &config,
        support::config_yaml(
            &host,
            &[("k", &key.public_pem())],
            &format!(
                "{}  - name: tenants\n    images: [\"{host}/**\"]\n    namespaces: [\"prod-*\"]\n    action: deny\n",
                support::key_policy("p", &host, 1, &["k"])
            ),
            "",
        ),
    )
    .unwrap();
    let manifests = dir.path().join("workloads.yaml");
    std::fs::write(
        &manifests,
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: apps}}\nspec:\n  template:\n    spec:\n      containers: [{{name: c, image: \"{host}/{REPO}:signed\"}}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: bad}}\nspec:\n  initContainers: [{{name: i, image: \"{host}/{REPO}:unsigned\"}}]\n  containers: [{{name: c, image: \"{host}/{REPO}:signed\"}}]\n"
        ),
    )
    .unwrap();
    let out = umpire(&[
        "verify",
        "--config",
        config.to_str().unwrap(),
        "-f",
        manifests.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("Deployment apps/web (CREATE): ADMITTED"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "pin (mutate): /spec/template/spec/containers/0/image={host}/{REPO}:signed@{signed}"
        )),
        "{stdout}"
    );
    // The init container is judged too (the webhook's own extraction).
    assert!(
        stdout.contains("Pod default/bad (CREATE): DENIED"),
        "{stdout}"
    );
    assert!(stdout.contains("NO_SIGNATURES"), "{stdout}");

    // The same through an AdmissionReview, and a namespaced policy applied with --namespace.
    let review = dir.path().join("review.json");
    std::fs::write(
        &review,
        serde_json::json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "namespace": "prod-eu", "operation": "CREATE",
                "object": {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": format!("{host}/{REPO}:signed")}]}}}
        })
        .to_string(),
    )
    .unwrap();
    let out = umpire(&[
        "verify",
        "--config",
        config.to_str().unwrap(),
        "--admission-review",
        review.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("Pod prod-eu/p (CREATE): DENIED"),
        "{stdout}"
    );
    let image = format!("{host}/{REPO}:signed");
    let plain = umpire(&["verify", "--config", config.to_str().unwrap(), &image]);
    assert_eq!(plain.status.code(), Some(0), "{}", text(&plain.stdout));
    let namespaced = umpire(&[
        "verify",
        "--config",
        config.to_str().unwrap(),
        "--namespace",
        "prod-eu",
        &image,
    ]);
    assert_eq!(
        namespaced.status.code(),
        Some(1),
        "{}",
        text(&namespaced.stdout)
    );
}

#[test]
fn a_key_file_without_pem_says_so_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("release.pub");
    std::fs::write(
        &key,
        "# Replace with your release key (cosign public key, PEM).\n",
    )
    .unwrap();
    let path = dir.path().join("umpire.yaml");
    std::fs::write(
        &path,
        "trust:\n  keys:\n    release: release.pub\npolicies: []\n",
    )
    .unwrap();
    let out = umpire(&["config", "check", "--config", path.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no PEM block found in") && stderr.contains(key.to_str().unwrap()),
        "{stderr}"
    );
}

#[test]
fn flags_never_replace_the_trust_a_configuration_names() {
    let dir = tempfile::tempdir().unwrap();
    let theirs = SigningKey::p256();
    let mine = SigningKey::p256();
    std::fs::write(dir.path().join("cli.pub"), theirs.public_pem()).unwrap();
    let pem = dir.path().join("mine.pub");
    std::fs::write(&pem, mine.public_pem()).unwrap();
    let config = dir.path().join("umpire.yaml");
    std::fs::write(
        &config,
        "trust:\n  keys:\n    cli: cli.pub\npolicies:\n  - name: p\n    images: [\"registry.example.com/**\"]\n    signatures: { authorities: [ { key: cli } ] }\n",
    )
    .unwrap();
    let out = umpire(&[
        "verify",
        "--config",
        config.to_str().unwrap(),
        "--key",
        pem.to_str().unwrap(),
        "--insecure-ignore-tlog",
        "registry.example.com/app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("trust.keys.cli"),
        "{}",
        text(&out.stderr)
    );
}
