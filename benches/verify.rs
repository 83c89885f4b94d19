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

criterion_group!(benches, bench, attestation);
criterion_main!(benches);
