//! Round trips of one cold verification, measured through a latency-injecting proxy in front of a
//! local registry (Debian's docker-registry over plain HTTP, over HTTPS with HTTP/2, and over
//! HTTPS with HTTP/1.1 only): every byte is delayed by half the RTT in each direction, and a new
//! connection's first bytes by one RTT more (its TCP handshake; `tests/support/delay_proxy.rs`).
//! For each transport and RTT it reports, as multiples of the RTT:
//! - the CLI (`umpire verify`, a fresh process: every connection is new), by tag and by digest;
//! - `umpire serve` on a warm pool (another image of the same repository verified just before),
//!   by tag and by digest;
//! - how many connections the proxy saw.
//!
//!     cargo build --release && cargo run --release --example latency_bench [-- --rtt 20,50]

#[path = "../tests/support/certs.rs"]
mod certs;
#[path = "../tests/support/cosign.rs"]
mod cosign;
#[path = "../tests/support/delay_proxy.rs"]
mod delay_proxy;
#[path = "../tests/support/registry.rs"]
mod registry;

use std::path::Path;
use std::time::{Duration, Instant};

use umpire::proto::VerifyRequest;
use umpire::proto::verifier_client::VerifierClient;

#[derive(clap::Parser)]
struct Args {
    /// Round-trip times to inject, in milliseconds.
    #[arg(long, value_delimiter = ',', default_value = "0,20,50")]
    rtt: Vec<u64>,
    /// Runs per figure (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Transports to measure: http, https-h2, https-h1.
    #[arg(long, value_delimiter = ',', default_value = "http,https-h2,https-h1")]
    transport: Vec<String>,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = <Args as clap::Parser>::parse();
    let umpire_bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/umpire");
    anyhow::ensure!(
        umpire_bin.exists(),
        "build umpire first: cargo build --release"
    );
    let pki = certs::Pki::new("latency bench registry CA");
    let dir = tempfile::tempdir()?;
    let ca = dir.path().join("registry-ca.pem");
    std::fs::write(&ca, &pki.ca_pem)?;
    let key = cosign::SigningKey::p256();
    let pem = dir.path().join("release.pub");
    std::fs::write(&pem, key.public_pem())?;
    println!(
        "Each figure: the median wall time, and above the 0 ms row (what is not the network: process"
    );
    println!("start, CPU, loopback) as a multiple of the RTT.");
    println!(
        "| transport | RTT | CLI by tag | CLI by digest | serve, warm pool, by tag | serve, warm pool, by digest | connections (CLI by tag, by digest) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for transport in &a.transport {
        let (registry, registry_yaml) = match transport.as_str() {
            "http" => (
                registry::Registry::start().await,
                "    insecure: true\n".to_owned(),
            ),
            "https-h2" | "https-h1" => {
                let server = pki.server();
                let tls = registry::RegistryTls {
                    cert_pem: server.cert_pem,
                    key_pem: server.key_pem,
                    ca_pem: pki.ca_pem.clone(),
                    http2: transport == "https-h2",
                };
                (
                    registry::Registry::start_tls(tls).await,
                    format!("    tls_ca: {}\n", ca.display()),
                )
            }
            other => anyhow::bail!("unknown transport {other:?}: http, https-h2 or https-h1"),
        };
        measure(
            &a,
            &umpire_bin,
            transport,
            &registry,
            &registry_yaml,
            &key,
            &pem,
            dir.path(),
        )
        .await?;
    }
    Ok(())
}

/// The table's rows for one transport: a figure per RTT.
#[allow(clippy::too_many_arguments)]
async fn measure(
    a: &Args,
    umpire_bin: &Path,
    transport: &str,
    registry: &registry::Registry,
    registry_yaml: &str,
    key: &cosign::SigningKey,
    pem: &Path,
    dir: &Path,
) -> anyhow::Result<()> {
    let images = 2 + 6 * a.runs * a.rtt.len();
    let mut digests = Vec::new();
    for i in 0..images {
        let tag = format!("v{i}");
        digests.push((
            tag.clone(),
            registry
                .push_signed("lat/app", &tag, &format!("latency {transport} {i}"), key)
                .await,
        ));
    }
    let mut next = 0;
    let mut take = || {
        next += 1;
        digests[next - 1].clone()
    };
    let mut floor: Vec<Duration> = Vec::new();
    for &ms in &a.rtt {
        let rtt = Duration::from_millis(ms);
        let proxy = delay_proxy::DelayProxy::start(registry.host(), rtt).await;
        let host = proxy.addr.clone();
        let config = dir.join(format!("umpire-{transport}-{ms}.yaml"));
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:0\nregistries:\n  - host: {host}\n{registry_yaml}trust:\n  keys:\n    release: {}\npolicies:\n  - name: p\n    images: [\"{host}/**\"]\n    signatures:\n      authorities: [ {{ key: release }} ]\n",
                pem.display()
            ),
        )?;
        // The CLI: a fresh process per image.
        let mut cli = |by_tag: bool, proxy: &delay_proxy::DelayProxy| {
            let (tag, digest) = take();
            let image = if by_tag {
                format!("{host}/lat/app:{tag}")
            } else {
                format!("{host}/lat/app@{digest}")
            };
            let before = proxy.connections();
            let started = Instant::now();
            let out = std::process::Command::new(umpire_bin)
                .args(["verify", "--config", config.to_str().unwrap(), &image])
                .env("UMPIRE_LOG", "error")
                .output()
                .unwrap();
            let took = started.elapsed();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
            (took, proxy.connections() - before)
        };
        let (mut tag_cli, mut digest_cli) = (Vec::new(), Vec::new());
        let (mut tag_conns, mut digest_conns) = (0, 0);
        for _ in 0..a.runs {
            let (t, c) = cli(true, &proxy);
            tag_cli.push(t);
            tag_conns = c;
            let (t, c) = cli(false, &proxy);
            digest_cli.push(t);
            digest_conns = c;
        }
        // The server on a warm pool: one image first, then the measured one.
        let mut serve = tokio::process::Command::new(umpire_bin)
            .args(["serve", "--config", config.to_str().unwrap()])
            .env("UMPIRE_LOG", "warn,umpire::api::server=info")
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stderr = serve.stderr.take().unwrap();
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stderr));
        let mut port = None;
        while let Some(line) = lines.next_line().await? {
            if let Some((_, addr)) = line.split_once("addr=") {
                port = addr.split_whitespace().next().map(str::to_owned);
                break;
            }
        }
        let addr =
            port.ok_or_else(|| anyhow::anyhow!("umpire serve did not say where it listens"))?;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let mut client = VerifierClient::connect(format!("http://{addr}")).await?;
        let mut ask = async |image: String| {
            let started = Instant::now();
            let r = client
                .verify(VerifyRequest {
                    image,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            assert!(r.allowed, "{r:?}");
            started.elapsed()
        };
        let (mut tag_warm, mut digest_warm) = (Vec::new(), Vec::new());
        for _ in 0..a.runs {
            let (tag, _) = take();
            ask(format!("{host}/lat/app:{tag}")).await;
            let (tag, _) = take();
            tag_warm.push(ask(format!("{host}/lat/app:{tag}")).await);
            let (_, digest) = take();
            ask(format!("{host}/lat/app@{digest}")).await;
            let (_, digest) = take();
            digest_warm.push(ask(format!("{host}/lat/app@{digest}")).await);
        }
        drop(serve);
        let medians = [tag_cli, digest_cli, tag_warm, digest_warm].map(median);
        if ms == 0 {
            floor = medians.to_vec();
        }
        let figure = |i: usize| {
            let m = medians[i];
            match floor.get(i).filter(|_| ms > 0) {
                Some(f) => format!(
                    "{:.0} ms: **{:.2} RTT**",
                    m.as_secs_f64() * 1e3,
                    m.saturating_sub(*f).as_secs_f64() / rtt.as_secs_f64()
                ),
                None => format!("{:.1} ms", m.as_secs_f64() * 1e3),
            }
        };
        println!(
            "| {transport} | {ms} ms | {} | {} | {} | {} | {tag_conns}, {digest_conns} |",
            figure(0),
            figure(1),
            figure(2),
            figure(3)
        );
    }
    Ok(())
}
