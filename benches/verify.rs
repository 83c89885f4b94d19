//! Pure verification cost, each next to the cost of its signature checks alone:
//! one keyed cosign signature layer, one keyless (Fulcio + Rekor SET) signature layer.
//!
//!     cargo bench --bench verify

#[path = "../tests/support/cosign.rs"]
mod cosign;
#[path = "../tests/support/sigstore.rs"]
mod sigstore;

use std::collections::BTreeMap;

use criterion::{Criterion, criterion_group, criterion_main};
use umpire::digest::Digest;
use umpire::verify::keys::PublicKey;
use umpire::verify::signature::{SignatureLayer, Trust, check_layer};
use umpire::verify::sigstore::SigstoreRoot;

fn layer_of(blob: &cosign::Blob) -> SignatureLayer {
    SignatureLayer {
        payload: blob.bytes.clone(),
        annotations: blob.annotations.iter().cloned().collect::<BTreeMap<_, _>>(),
    }
}

fn bench(c: &mut Criterion) {
    let digest = cosign::Image::new("bench").digest();
    let image_digest = Digest::parse(&digest).unwrap();
    let payload = cosign::payload("registry.example/app", &digest);

    // Keyed.
    let key = cosign::SigningKey::p256();
    let public = PublicKey::from_pem(key.public_pem().as_bytes()).unwrap();
    let keyed = layer_of(&cosign::signature_layer(&key, payload.clone()));
    let keys = vec![("release".to_owned(), &public)];
    let offline = SigstoreRoot::offline();
    let keyed_trust = Trust {
        keys: &keys,
        roots: &[],
        offline: &offline,
        now: jiff::Timestamp::now(),
        log_checks: true,
    };
    let raw_signature = key.sign(&payload);
    c.bench_function("keyed: one cosign signature layer", |b| {
        b.iter(|| check_layer(&keyed, &keyed_trust, &image_digest))
    });
    c.bench_function("keyed: its ECDSA P-256 check alone", |b| {
        b.iter(|| public.verify(&payload, &raw_signature))
    });

    // Keyless.
    let instance = sigstore::TestSigstore::new();
    let root = SigstoreRoot::from_json("test", &instance.trusted_root_json()).unwrap();
    let keyless =
        layer_of(&instance.legacy_layer(&sigstore::Identity::github("acme/app"), payload.clone()));
    let roots = vec![&root];
    let keyless_trust = Trust {
        keys: &[],
        roots: &roots,
        offline: &offline,
        now: jiff::Timestamp::now(),
        log_checks: true,
    };
    assert!(matches!(
        check_layer(&keyless, &keyless_trust, &image_digest),
        umpire::verify::signature::SignatureOutcome::Valid { .. }
    ));
    c.bench_function(
        "keyless: one legacy signature layer (chain, SCT, SET, entry, identity)",
        |b| b.iter(|| check_layer(&keyless, &keyless_trust, &image_digest)),
    );
    // The four ECDSA P-256 checks inside it: certificate, SCT, SET and the signature itself.
    c.bench_function("keyless: its four ECDSA P-256 checks alone", |b| {
        b.iter(|| {
            for _ in 0..4 {
                std::hint::black_box(public.verify(&payload, &raw_signature));
            }
        })
    });
}

fn attestation(c: &mut Criterion) {
    use umpire::verify::attestation::{
        AttestationLayer, AttestationOutcome, check_layer as check_attestation,
    };
    let digest = cosign::Image::new("bench").digest();
    let image_digest = Digest::parse(&digest).unwrap();
    let key = cosign::SigningKey::p256();
    let public = PublicKey::from_pem(key.public_pem().as_bytes()).unwrap();
    let keys = vec![("release".to_owned(), &public)];
    let offline = SigstoreRoot::offline();
    let trust = Trust {
        keys: &keys,
        roots: &[],
        offline: &offline,
        now: jiff::Timestamp::now(),
        log_checks: true,
    };
    let provenance = cosign::provenance(cosign::GITHUB_BUILDER, "acme/app", "refs/heads/main", &[]);
    let statement = cosign::statement(&digest, cosign::SLSA_V1, provenance);
    let blob = cosign::attestation_layer(Some(&key), &statement);
    let layer = AttestationLayer {
        envelope: blob.bytes.clone(),
        annotations: Default::default(),
    };
    let rego = umpire::rego::RegoPolicy::compile(
        "provenance.rego",
        "package umpire\n\ndeny contains msg if {\n    input.predicate.buildDefinition.externalParameters.workflow.ref != \"refs/heads/main\"\n    msg := \"not from main\"\n}\n",
    )
    .unwrap();
    let AttestationOutcome::Verified {
        statement: verified,
        ..
    } = check_attestation(&layer, &trust, &image_digest)
    else {
        panic!("the bench attestation verifies");
    };
    let input = serde_json::json!({"image": {"reference": "r/a", "digest": digest}, "statement": verified, "predicate": verified.predicate});
    c.bench_function("attestation: one DSSE envelope (PAE signature, statement, subject) + Rego", |b| {
        b.iter(|| {
            let AttestationOutcome::Verified { statement, .. } = check_attestation(&layer, &trust, &image_digest) else {
                unreachable!()
            };
            let input = serde_json::json!({"image": {"reference": "r/a", "digest": digest}, "statement": statement, "predicate": statement.predicate});
            rego.deny(&input).unwrap()
        })
    });
    c.bench_function("attestation: its Rego evaluation alone", |b| {
        b.iter(|| rego.deny(&input).unwrap())
    });
    let pae = cosign::pae(cosign::IN_TOTO, &statement);
    let sig = key.sign(&pae);
    c.bench_function("attestation: its ECDSA P-256 check alone", |b| {
        b.iter(|| public.verify(&pae, &sig))
    });
}

/// The real SLSA generator attestations (tests/data/realworld): one legacy keyless `.att` layer
/// verified end to end, next to the signature checks inside it.
fn legacy_attestation(c: &mut Criterion) {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, ECDSA_P384_SHA384_ASN1, UnparsedPublicKey};
    use base64::Engine as _;
    use umpire::verify::attestation::{
        AttestationLayer, AttestationOutcome, check_layer as check_attestation,
    };
    use x509_parser::prelude::{FromDer, X509Certificate};

    let root = SigstoreRoot::public_good("public-good").unwrap();
    let roots = vec![&root];
    let offline = SigstoreRoot::offline();
    let trust = Trust {
        keys: &[],
        roots: &roots,
        offline: &offline,
        now: jiff::Timestamp::now(),
        log_checks: true,
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    for (version, entry_kind) in [("v1.9.0", "intoto 0.0.1"), ("v2.0.0", "dsse 0.0.1")] {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/realworld/slsa-github-generator-containers")
            .join(version)
            .join("container_workflow_dispatch");
        let blob = |d: &str| {
            std::fs::read(
                dir.join("blobs/sha256")
                    .join(d.trim_start_matches("sha256:")),
            )
            .unwrap()
        };
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
        let find = |kind: &str| {
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
        let image_digest = Digest::parse(&find("/imageIndex")).unwrap();
        let atts: serde_json::Value = serde_json::from_slice(&blob(&find("/atts"))).unwrap();
        let l = &atts["layers"][0];
        let layer = AttestationLayer {
            envelope: blob(l["digest"].as_str().unwrap()),
            annotations: l["annotations"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect(),
        };
        assert!(matches!(
            check_attestation(&layer, &trust, &image_digest),
            AttestationOutcome::Verified { .. }
        ));
        c.bench_function(
            &format!(
                "legacy keyless .att ({entry_kind}, real): SET, entry, chain, SCT, DSSE, statement"
            ),
            |b| b.iter(|| check_attestation(&layer, &trust, &image_digest)),
        );

        // The signature checks inside it: the DSSE signature and the SET (P-256), the leaf
        // certificate's signature by the P-384 intermediate, and the SCT (P-256, costed here as a
        // second DSSE check).
        let envelope: serde_json::Value = serde_json::from_slice(&layer.envelope).unwrap();
        let payload = b64.decode(envelope["payload"].as_str().unwrap()).unwrap();
        let sig = b64
            .decode(envelope["signatures"][0]["sig"].as_str().unwrap())
            .unwrap();
        let pae = cosign::pae(cosign::IN_TOTO, &payload);
        let leaf_pem =
            pem::parse(layer.annotations["dev.sigstore.cosign/certificate"].as_bytes()).unwrap();
        let (_, leaf) = X509Certificate::from_der(leaf_pem.contents()).unwrap();
        let chain =
            pem::parse_many(layer.annotations["dev.sigstore.cosign/chain"].as_bytes()).unwrap();
        let (_, intermediate) = X509Certificate::from_der(chain[0].contents()).unwrap();
        let leaf_key = UnparsedPublicKey::new(
            &ECDSA_P256_SHA256_ASN1,
            leaf.public_key().subject_public_key.data.to_vec(),
        );
        let ca_key = UnparsedPublicKey::new(
            &ECDSA_P384_SHA384_ASN1,
            intermediate.public_key().subject_public_key.data.to_vec(),
        );
        let tbs = leaf.tbs_certificate.as_ref().to_vec();
        let cert_sig = leaf.signature_value.data.to_vec();
        let rekor: serde_json::Value =
            serde_json::from_str(&layer.annotations["dev.sigstore.cosign/bundle"]).unwrap();
        let p = &rekor["Payload"];
        let set_payload = format!(
            r#"{{"body":"{}","integratedTime":{},"logID":"{}","logIndex":{}}}"#,
            p["body"].as_str().unwrap(),
            p["integratedTime"],
            p["logID"].as_str().unwrap(),
            p["logIndex"]
        );
        let set = b64
            .decode(rekor["SignedEntryTimestamp"].as_str().unwrap())
            .unwrap();
        let trusted: serde_json::Value =
            serde_json::from_str(sigstore_trust_root::SIGSTORE_PRODUCTION_TRUSTED_ROOT).unwrap();
        let rekor_spki = trusted["tlogs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                b64.decode(t["publicKey"]["rawBytes"].as_str().unwrap())
                    .unwrap()
            })
            .find(|spki| {
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(spki))
                    == p["logID"].as_str().unwrap()
            })
            .unwrap();
        let (_, rekor_key) =
            x509_parser::x509::SubjectPublicKeyInfo::from_der(&rekor_spki).unwrap();
        let rekor_key = UnparsedPublicKey::new(
            &ECDSA_P256_SHA256_ASN1,
            rekor_key.subject_public_key.data.to_vec(),
        );
        assert!(leaf_key.verify(&pae, &sig).is_ok());
        assert!(ca_key.verify(&tbs, &cert_sig).is_ok());
        assert!(rekor_key.verify(set_payload.as_bytes(), &set).is_ok());
        c.bench_function(
            &format!("legacy keyless .att ({entry_kind}, real): its signature checks alone"),
            |b| {
                b.iter(|| {
                    std::hint::black_box(leaf_key.verify(&pae, &sig).is_ok());
                    std::hint::black_box(leaf_key.verify(&pae, &sig).is_ok());
                    std::hint::black_box(rekor_key.verify(set_payload.as_bytes(), &set).is_ok());
                    std::hint::black_box(ca_key.verify(&tbs, &cert_sig).is_ok());
                })
            },
        );
    }
}

criterion_group!(benches, bench, attestation, legacy_attestation);
criterion_main!(benches);
