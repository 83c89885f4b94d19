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

criterion_group!(benches, bench);
criterion_main!(benches);
