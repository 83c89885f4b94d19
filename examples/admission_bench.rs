//! Admission under a deployment storm, against `umpire serve` as its own process: 30 pods × 8
//! containers (240 distinct images in a local registry, each signed by one of 5 keys), every image
//! under a policy with 5 key authorities. The 30 AdmissionReviews (one per pod, as the API server
//! sends them) go out at once, cold (nothing cached) and then warm; the wall time of the whole storm
//! is printed for each.
//!
//!     cargo build --release && cargo run --release --example admission_bench
//!
//! Needs `docker-registry`. Everything runs on loopback.

#[path = "../tests/support/certs.rs"]
mod certs;
#[path = "../tests/support/cosign.rs"]
mod cosign;
#[path = "../tests/support/registry.rs"]
mod registry;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PODS: usize = 30;
const CONTAINERS: usize = 8;
const KEYS: usize = 5;

/// A child process killed and reaped when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn review(uid: usize, images: &[String]) -> serde_json::Value {
    let containers: Vec<serde_json::Value> = images
        .iter()
        .enumerate()
        .map(|(i, image)| serde_json::json!({"name": format!("c{i}"), "image": image}))
        .collect();
    serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("pod-{uid}"),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": "CREATE",
            "namespace": "default",
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": format!("pod-{uid}"), "namespace": "default"},
                "spec": {"containers": containers},
            },
        },
    })
}

/// Sends every review at once; the storm's wall time and how many were allowed.
async fn storm(
    client: &reqwest::Client,
    url: &str,
    reviews: &[serde_json::Value],
) -> (Duration, usize) {
    let started = Instant::now();
    let answers = futures::future::join_all(reviews.iter().map(|r| {
        let client = client.clone();
        async move {
            let response = client.post(url).json(r).send().await.ok()?;
            let body: serde_json::Value = response.json().await.ok()?;
            body["response"]["allowed"].as_bool()
        }
    }))
    .await;
    let allowed = answers.iter().filter(|a| **a == Some(true)).count();
    (started.elapsed(), allowed)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let umpire_bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/umpire");
    anyhow::ensure!(
        umpire_bin.exists(),
        "build umpire first: cargo build --release"
    );
    eprintln!(
        "starting a local registry and pushing {} signed images...",
        PODS * CONTAINERS
    );
    let registry = registry::Registry::start().await;
    let host = registry.host();
    let keys: Vec<cosign::SigningKey> = (0..KEYS).map(|_| cosign::SigningKey::p256()).collect();
    let mut images = Vec::new();
    for i in 0..PODS * CONTAINERS {
        let repo = format!("storm/app{}", i % CONTAINERS);
        let image = cosign::Image::new(&format!("storm image {i}"));
        let digest = registry.push_image(&repo, &format!("v{i}"), &image).await;
        let key = &keys[i % KEYS];
        registry
            .push_signatures(
                &repo,
                &digest,
                vec![cosign::signature_layer(
                    key,
                    cosign::payload(&repo, &digest),
                )],
            )
            .await;
        images.push(format!("{host}/{repo}@{digest}"));
    }

    let webhook = certs::TestWebhook::new();
    let dir = tempfile::tempdir()?;
    let mut yaml = format!("registries:\n  - host: {host}\n    insecure: true\ntrust:\n  keys:\n");
    for (k, key) in keys.iter().enumerate() {
        yaml.push_str(&format!("    k{k}: |\n"));
        for line in key.public_pem().lines() {
            yaml.push_str(&format!("      {line}\n"));
        }
    }
    yaml.push_str(&format!(
        "policies:\n  - name: storm\n    images: [\"{host}/**\"]\n    signatures:\n      authorities:\n"
    ));
    for k in 0..KEYS {
        yaml.push_str(&format!("        - key: k{k}\n"));
    }
    yaml.push_str(&webhook.yaml);
    let config = dir.path().join("umpire.yaml");
    std::fs::write(&config, yaml)?;
    let _umpire = Reaped(
        Command::new(&umpire_bin)
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let client = webhook.client();
    let url = webhook.url("/admission/validate");
    for _ in 0..300 {
        if client.get(webhook.url("/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let reviews: Vec<serde_json::Value> = images
        .chunks(CONTAINERS)
        .enumerate()
        .map(|(uid, pod)| review(uid, pod))
        .collect();
    let (cold, cold_allowed) = storm(&client, &url, &reviews).await;
    let (warm, warm_allowed) = storm(&client, &url, &reviews).await;
    println!(
        "| storm: {PODS} pods × {CONTAINERS} containers, {KEYS} key authorities | wall time | pods allowed |"
    );
    println!("|---|---|---|");
    println!(
        "| cold (nothing cached; goal ≤ 1 s) | {:.3} s | {cold_allowed}/{PODS} |",
        cold.as_secs_f64()
    );
    println!(
        "| warm (cached verdicts; goal ≤ 5 ms) | {:.2} ms | {warm_allowed}/{PODS} |",
        warm.as_secs_f64() * 1e3
    );
    Ok(())
}
