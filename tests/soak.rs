//! A bounded soak on loopback: thousands of verifications against a registry that injects faults
//! (5xx, stalls, wrong bytes, missing evidence), and thousands of distinct cold images. Zero wrong
//! verdicts, no crash, memory bounded. Figures are printed (see BENCHMARKS.md), never asserted on time.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::cosign::{
    self, Image, SigningKey, payload, sig_tag, signature_layer, signature_manifest,
};
use support::hostile::{Reply, Request, Scripted};
use support::{config_yaml, key_policy};

const REPO: &str = "soak/app";

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

/// A cheap deterministic "random" in 0..100 per request.
fn roll(counter: &AtomicU64) -> u64 {
    let n = counter.fetch_add(1, Ordering::Relaxed);
    (n.wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        >> 33)
        % 100
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_never_produce_a_wrong_verdict_and_memory_stays_bounded() {
    let key = SigningKey::p256();
    let mut routes: HashMap<String, Vec<u8>> = HashMap::new();
    let mut signed = Vec::new();
    let mut unsigned = Vec::new();
    for i in 0..40 {
        let image = Image::new(&format!("soak {i}"));
        let digest = image.digest();
        routes.insert(
            format!("/v2/{REPO}/manifests/{digest}"),
            image.manifest.clone(),
        );
        if i % 2 == 0 {
            let sig = signature_manifest(vec![signature_layer(&key, payload("x", &digest))]);
            routes.insert(
                format!("/v2/{REPO}/manifests/{}", sig_tag(&digest)),
                sig.manifest.clone(),
            );
            for b in sig.blobs() {
                routes.insert(format!("/v2/{REPO}/blobs/{}", b.digest()), b.bytes.clone());
            }
            signed.push(digest);
        } else {
            unsigned.push(digest);
        }
    }
    let wrong = Image::new("substitute").manifest;
    let counter = Arc::new(AtomicU64::new(0));
    let c = Arc::clone(&counter);
    let server = Scripted::start(move |r: &Request| {
        let dice = roll(&c);
        match (dice, routes.get(&r.path)) {
            (0..=9, _) => Reply::new(503, "injected"),
            (10..=14, Some(body)) => {
                Reply::new(200, body.clone()).delayed(Duration::from_millis(30))
            }
            (15..=19, Some(_)) => {
                Reply::new(200, wrong.clone()).header("Content-Type", cosign::OCI_MANIFEST)
            }
            (_, Some(body)) => {
                Reply::new(200, body.clone()).header("Content-Type", cosign::OCI_MANIFEST)
            }
            (_, None) => Reply::new(404, "{}"),
        }
    })
    .await;
    let host = server.host();
    let yaml = support::one_key_yaml(
        &host,
        ("release", &key.public_pem()),
        "prod",
        "cache:\n  allowed_ttl: 0\n  denied_ttl: 0\n  retry_ttl: 0\n",
    );
    let engine = support::engine(&yaml);

    let before = rss_bytes();
    let started = Instant::now();
    let total = 3000;
    let signed = Arc::new(signed);
    let unsigned = Arc::new(unsigned);
    let mut tasks = Vec::new();
    for worker in 0..32 {
        let (engine, signed, unsigned, host) = (
            Arc::clone(&engine),
            Arc::clone(&signed),
            Arc::clone(&unsigned),
            host.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut counts = [0u32; 3]; // allowed, denied, retryable
            for i in (worker..total).step_by(32) {
                let (digest, is_signed) = if i % 2 == 0 {
                    (&signed[i % signed.len()], true)
                } else {
                    (&unsigned[i % unsigned.len()], false)
                };
                let v = engine
                    .verify(&format!("{host}/{REPO}@{digest}"), None)
                    .await
                    .unwrap();
                if v.allowed {
                    assert!(is_signed, "WRONG VERDICT: unsigned {digest} allowed: {v:?}");
                    assert_eq!(&v.digest, digest);
                    counts[0] += 1;
                } else if v.retryable {
                    counts[2] += 1;
                } else {
                    counts[1] += 1;
                }
            }
            counts
        }));
    }
    let mut counts = [0u32; 3];
    for t in tasks {
        let c = t.await.expect("no panic, no wrong verdict");
        for k in 0..3 {
            counts[k] += c[k];
        }
    }
    let elapsed = started.elapsed();
    let growth = rss_bytes().saturating_sub(before);
    println!(
        "soak: {total} verifications in {elapsed:?} ({:.0}/s): {} allowed, {} denied, {} retryable; {} registry requests; RSS growth {} MiB",
        total as f64 / elapsed.as_secs_f64(),
        counts[0],
        counts[1],
        counts[2],
        server.requests().len(),
        growth / (1024 * 1024)
    );
    assert!(counts[0] > 0, "some signed images got through the faults");
    assert!(growth < 256 * 1024 * 1024, "memory grew by {growth} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_distinct_cold_images_keep_memory_bounded() {
    let mut routes: HashMap<String, Vec<u8>> = HashMap::new();
    let mut digests = Vec::new();
    for i in 0..10_000 {
        let image = Image::new(&format!("cold {i}"));
        digests.push(image.digest());
        routes.insert(
            format!("/v2/{REPO}/manifests/{}", image.digest()),
            image.manifest,
        );
    }
    let server = Scripted::start(move |r: &Request| match routes.get(&r.path) {
        Some(body) => Reply::new(200, body.clone()).header("Content-Type", cosign::OCI_MANIFEST),
        None => Reply::new(404, "{}"),
    })
    .await;
    let key = SigningKey::p256();
    let host = server.host();
    let engine = support::engine(&config_yaml(
        &host,
        &[("release", &key.public_pem())],
        &key_policy("prod", &host, 1, &["release"]),
        "",
    ));
    let before = rss_bytes();
    let started = Instant::now();
    let digests = Arc::new(digests);
    let mut tasks = Vec::new();
    for worker in 0..64 {
        let (engine, digests, host) = (Arc::clone(&engine), Arc::clone(&digests), host.clone());
        tasks.push(tokio::spawn(async move {
            for i in (worker..digests.len()).step_by(64) {
                let v = engine
                    .verify(&format!("{host}/{REPO}@{}", digests[i]), None)
                    .await
                    .unwrap();
                assert!(!v.allowed, "unsigned");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let growth = rss_bytes().saturating_sub(before);
    println!(
        "cold: 10000 distinct images in {:?}; RSS growth {} MiB",
        started.elapsed(),
        growth / (1024 * 1024)
    );
    assert!(growth < 256 * 1024 * 1024, "memory grew by {growth} bytes");
}
