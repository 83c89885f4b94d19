//! What a cached verdict costs in memory: the process's resident memory before and after the
//! local verdict cache holds `--entries` verdicts of the demo image's shape (a signature and two
//! attestation findings, with their encoded answer), then after as many again: the cache's
//! `max_entries` bounds it.
//!
//!     cargo run --release --example cache_memory [-- --entries 100000]

use std::sync::Arc;

use umpire::cache::{CacheSettings, VerdictCache};
use umpire::metrics::Metrics;
use umpire::verdict::{Code, Finding, Verdict};

/// The allocator umpire's binary uses: resident memory per entry depends on it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(clap::Parser)]
struct Args {
    /// Verdicts to hold (the cache's `max_entries`).
    #[arg(long, default_value_t = 100_000)]
    entries: usize,
}

fn resident() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// A verdict shaped as the demo image's: three SATISFIED findings naming policy and authority.
fn demo_verdict(i: usize) -> Verdict {
    let finding = |message: String, kind: &str| {
        let mut f = Finding::new(Code::Satisfied, message)
            .with_policy("demo")
            .with_authority("key demo");
        f.attestation_type = kind.to_owned();
        f
    };
    let digest = format!("sha256:{:064x}", i);
    Verdict::allow(
        "",
        vec![
            finding(format!("signature verified by key demo for {digest}"), ""),
            finding(
                "1 verified attestation(s) of type https://slsa.dev/provenance/v1 signed by key demo passed every check".into(),
                "https://slsa.dev/provenance/v1",
            ),
            finding(
                "1 verified attestation(s) of type https://spdx.dev/Document signed by key demo passed every check".into(),
                "https://spdx.dev/Document",
            ),
        ],
    )
    .for_digest(&digest, "application/vnd.oci.image.manifest.v1+json")
    .under_policies(["demo"])
}

#[tokio::main]
async fn main() {
    let a = <Args as clap::Parser>::parse();
    let settings = CacheSettings {
        max_entries: a.entries as u64,
        ..CacheSettings::default()
    };
    let cache = VerdictCache::new(settings, Arc::new(Metrics::new()));
    let key = |i: usize| format!("{:064x}", i * 7919 + 1);
    let before = resident();
    for i in 0..a.entries {
        cache.put(&key(i), &demo_verdict(i)).await;
    }
    cache.settle().await;
    let full = resident();
    for i in a.entries..2 * a.entries {
        cache.put(&key(i), &demo_verdict(i)).await;
    }
    cache.settle().await;
    let after = resident();
    let per_entry = (full.saturating_sub(before)) as f64 / a.entries as f64;
    println!(
        "{} verdicts of the demo image's shape: {:.0} bytes per entry ({:.1} MiB in all); after {} more, resident {:.1} MiB more than full (max_entries bounds it; the encoded answer is {} bytes of each)",
        a.entries,
        per_entry,
        (full - before) as f64 / 1048576.0,
        a.entries,
        after.saturating_sub(full) as f64 / 1048576.0,
        demo_verdict(0).wire().len() + 1,
    );
}
