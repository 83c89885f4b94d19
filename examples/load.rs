//! The load tool: drives umpire over gRPC on loopback with concurrent clients and prints
//! requests/s, p50, p99 and p99.9 for
//! - cached verdicts, next to the same load against an empty tonic handler (the baseline ratio);
//! - cold verifications of distinct signed images in a local registry (Debian's docker-registry);
//! - 1,000 concurrent cold requests for one digest, with the registry requests they caused.
//!
//!     cargo run --release --example load [-- --requests 50000 --concurrency 64 --images 300]
//!
//! Everything runs on this machine, bounded in count; nothing is sent anywhere else.

#[path = "../tests/support/cosign.rs"]
mod cosign;
#[path = "../tests/support/registry.rs"]
mod registry;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use umpire::evidence::auth::Credentials;
use umpire::proto::verifier_client::VerifierClient;
use umpire::proto::verifier_server::{Verifier, VerifierServer};
use umpire::proto::{VerifyBatchRequest, VerifyBatchResponse, VerifyRequest, VerifyResponse};
use umpire::service::Live;

#[derive(clap::Parser)]
#[command(about = "Drives umpire over gRPC on loopback and prints throughput and latency")]
struct Args {
    /// Cached requests per scenario.
    #[arg(long, default_value_t = 50_000)]
    requests: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Distinct signed images for the cold scenario.
    #[arg(long, default_value_t = 300)]
    images: usize,
}

fn args() -> Args {
    <Args as clap::Parser>::parse()
}

/// A Verifier that answers at once with a constant: what tonic itself costs.
struct Empty;

#[tonic::async_trait]
impl Verifier for Empty {
    async fn verify(
        &self,
        _: tonic::Request<VerifyRequest>,
    ) -> Result<tonic::Response<VerifyResponse>, tonic::Status> {
        Ok(tonic::Response::new(VerifyResponse {
            allowed: true,
            digest: "sha256:0".into(),
            ..Default::default()
        }))
    }
    async fn verify_batch(
        &self,
        _: tonic::Request<VerifyBatchRequest>,
    ) -> Result<tonic::Response<VerifyBatchResponse>, tonic::Status> {
        Ok(tonic::Response::new(VerifyBatchResponse::default()))
    }
}

async fn channel(addr: std::net::SocketAddr) -> Channel {
    for _ in 0..200 {
        if let Ok(c) = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
        {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no server on {addr}");
}

struct Run {
    name: String,
    requests: usize,
    concurrency: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    denied: usize,
}

impl Run {
    fn print(&self) {
        let mut l = self.latencies.clone();
        l.sort();
        let q = |p: f64| {
            l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        println!(
            "| {:<44} | {:>8} | {:>4} | {:>10.0} | {:>9.3} | {:>9.3} | {:>9.3} | {:>6} |",
            self.name,
            self.requests,
            self.concurrency,
            self.requests as f64 / self.elapsed.as_secs_f64(),
            q(0.50).as_secs_f64() * 1e3,
            q(0.99).as_secs_f64() * 1e3,
            q(0.999).as_secs_f64() * 1e3,
            self.denied,
        );
    }
}

/// `requests` calls over `concurrency` workers sharing a few HTTP/2 connections; `image(i)` names
/// the image of call `i`.
async fn drive(
    name: &str,
    channels: &[Channel],
    requests: usize,
    concurrency: usize,
    image: Arc<dyn Fn(usize) -> String + Send + Sync>,
) -> Run {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let workers = (0..concurrency).map(|w| {
        let mut client = VerifierClient::new(channels[w % channels.len()].clone());
        let next = Arc::clone(&next);
        let image = Arc::clone(&image);
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut denied = 0;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                let t = Instant::now();
                let r = client
                    .verify(VerifyRequest {
                        image: image(i),
                        ..Default::default()
                    })
                    .await;
                latencies.push(t.elapsed());
                if !r.map(|r| r.into_inner().allowed).unwrap_or(false) {
                    denied += 1;
                }
            }
            (latencies, denied)
        })
    });
    let mut latencies = Vec::with_capacity(requests);
    let mut denied = 0;
    for w in futures::future::join_all(workers).await {
        let (l, d) = w.expect("worker");
        latencies.extend(l);
        denied += d;
    }
    Run {
        name: name.to_owned(),
        requests,
        concurrency,
        elapsed: started.elapsed(),
        latencies,
        denied,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args();
    eprintln!(
        "starting a local registry and pushing {} signed images...",
        a.images + 1
    );
    let registry = registry::Registry::start().await;
    let key = cosign::SigningKey::p256();
    let mut digests = Vec::new();
    for i in 0..=a.images {
        let image = cosign::Image::new(&format!("load image {i}"));
        let digest = registry
            .push_image("load/app", &format!("v{i}"), &image)
            .await;
        registry
            .push_signatures(
                "load/app",
                &digest,
                vec![cosign::signature_layer(
                    &key,
                    cosign::payload("load/app", &digest),
                )],
            )
            .await;
        digests.push(digest);
    }
    let host = registry.host();
    let yaml = format!(
        "registries:\n  - host: {host}\n    insecure: true\ntrust:\n  keys:\n    release: |\n{}policies:\n  - name: load\n    images: [\"{host}/**\"]\n    signatures:\n      authorities:\n        - key: release\n",
        key.public_pem()
            .lines()
            .map(|l| format!("      {l}\n"))
            .collect::<String>()
    );
    let config = umpire::config::Config::from_yaml(&yaml, std::path::Path::new("."), "load")?;
    let live = Arc::new(Live::new(config, None, Credentials::default())?);

    let umpire_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let umpire_addr = umpire_listener.local_addr()?;
    tokio::spawn(umpire::api::server::serve_on(
        Arc::clone(&live),
        umpire_listener,
        std::future::pending(),
    ));
    let empty_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let empty_addr = empty_listener.local_addr()?;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(VerifierServer::new(Empty))
            .serve_with_incoming(
                tonic::transport::server::TcpIncoming::from(empty_listener)
                    .with_nodelay(Some(true)),
            ),
    );
    let mut umpire_channels = Vec::new();
    let mut empty_channels = Vec::new();
    for _ in 0..4 {
        umpire_channels.push(channel(umpire_addr).await);
        empty_channels.push(channel(empty_addr).await);
    }

    println!("| scenario | requests | conc | req/s | p50 ms | p99 ms | p99.9 ms | denied |");
    println!("|---|---|---|---|---|---|---|---|");

    // Cached verdicts, and the same load on an empty handler.
    let hot = format!("{host}/load/app@{}", digests[0]);
    let h = hot.clone();
    drive(
        "warm-up",
        &umpire_channels,
        100,
        4,
        Arc::new(move |_| h.clone()),
    )
    .await;
    let h = hot.clone();
    let cached = drive(
        "cached verdict (one digest)",
        &umpire_channels,
        a.requests,
        a.concurrency,
        Arc::new(move |_| h.clone()),
    )
    .await;
    cached.print();
    let h = hot.clone();
    let empty = drive(
        "empty tonic handler (baseline)",
        &empty_channels,
        a.requests,
        a.concurrency,
        Arc::new(move |_| h.clone()),
    )
    .await;
    empty.print();

    // Cold: every request a digest not seen before.
    let cold_images: Vec<String> = digests[1..a.images / 2 + 1]
        .iter()
        .map(|d| format!("{host}/load/app@{d}"))
        .collect();
    let n = cold_images.len();
    let ci = Arc::new(cold_images);
    let cold = drive(
        "cold verification (distinct digests)",
        &umpire_channels,
        n,
        16,
        Arc::new(move |i| ci[i].clone()),
    )
    .await;
    cold.print();

    // 1,000 concurrent cold requests for one digest.
    let burst_digest = &digests[a.images / 2 + 1];
    let burst_image = format!("{host}/load/app@{burst_digest}");
    let before = live.metrics().registry_request_total();
    let b = burst_image.clone();
    let burst = drive(
        "1000 concurrent cold requests, one digest",
        &umpire_channels,
        1000,
        1000,
        Arc::new(move |_| b.clone()),
    )
    .await;
    burst.print();
    let burst_registry = live.metrics().registry_request_total() - before;

    // What one cold verification costs, for comparison.
    let single_digest = &digests[a.images / 2 + 2];
    let before = live.metrics().registry_request_total();
    let s = format!("{host}/load/app@{single_digest}");
    drive(
        "one cold request",
        &umpire_channels,
        1,
        1,
        Arc::new(move |_| s.clone()),
    )
    .await;
    let single_registry = live.metrics().registry_request_total() - before;

    let ratio = (cached.requests as f64 / cached.elapsed.as_secs_f64())
        / (empty.requests as f64 / empty.elapsed.as_secs_f64());
    println!();
    println!("cached / empty-handler throughput: {:.2}", ratio);
    println!(
        "registry requests for the 1000-request burst: {burst_registry} (one cold verification alone: {single_registry})"
    );
    Ok(())
}
