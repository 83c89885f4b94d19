//! `umpire verify` as a user runs it: exit codes, text and JSON output, config errors.

mod support;

use std::process::{Command, Output};

use support::cosign::{Image, SigningKey, payload, signature_layer};
use support::registry::Registry;
use support::{config_file, config_yaml, key_policy};

const REPO: &str = "team/app";

fn umpire(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_umpire"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DOCKER_CONFIG", "/nonexistent")
        .output()
        .expect("run umpire")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
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
    let yaml = config_yaml(
        &registry.host(),
        &[("release", &key.public_pem())],
        &key_policy("prod", &registry.host(), 1, &["release"]),
        "",
    );
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
