//! Notation envelopes from the Notary Project's own test data (tests/data/notation, cases.json)
//! through `umpire notation verify-envelope`: each case ends as the corpus expects (JWS and COSE,
//! with and without RFC 3161 countersignatures), failing under the validation the corpus names.

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
