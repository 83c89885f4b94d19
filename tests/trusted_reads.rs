//! Trust only what came through its own check, bound every read as it arrives, and hold every
//! connection to its deadline: each test plays the attacker against the real binary (a local user
//! who prepares the TUF cache folder, a hostile Redis, a slow HTTP/2 client, a neighbour replica
//! with longer TTLs, a certificate rotation to an expired pair, a reload that adds a TUF root).

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::cosign::{Image, SigningKey, payload, signature_layer};
use support::registry::Registry;
use support::served::Served;
use support::{text, umpire_cli};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REPO: &str = "team/app";

fn tuf_config(dir: &std::path::Path, cache_dir: Option<&std::path::Path>) -> std::path::PathBuf {
    let mirror_root = dir.join("mirror-root.json");
    std::fs::write(&mirror_root, "{}").unwrap();
    let cache = cache_dir
        .map(|c| format!("  tuf:\n    cache_dir: {}\n", c.display()))
        .unwrap_or_default();
    let config = dir.join("umpire.yaml");
    std::fs::write(
        &config,
        format!(
            "trust:\n  sigstore:\n    fresh: tuf\n{cache}policies:\n  - name: p\n    images: [\"ghcr.io/**\"]\n    signatures:\n      authorities:\n        - keyless:\n            trust: fresh\n            issuer: https://token.actions.githubusercontent.com\n            subject_regex: https://github\\\\.com/acme/.*\n"
        ),
    )
    .unwrap();
    config
}

#[cfg(unix)]
#[test]
fn a_tuf_cache_folder_someone_else_prepared_is_refused_naming_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // Created first by "another user": writable by everyone.
    let shared = dir.path().join("shared-tuf");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let config = tuf_config(dir.path(), Some(&shared));
    let out = umpire_cli(
        &["config", "check", "--config", config.to_str().unwrap()],
        &[],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("trust.tuf.cache_dir") && stderr.contains(shared.to_str().unwrap()),
        "{stderr}"
    );
    // A symlink planted where the folder should be.
    let link = dir.path().join("linked-tuf");
    let target = dir.path().join("elsewhere");
    std::fs::create_dir(&target).unwrap();
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let config = tuf_config(dir.path(), Some(&link));
    let out = umpire_cli(
        &["config", "check", "--config", config.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // Owned by another user (possible to arrange only as root, which CI is).
    let theirs = dir.path().join("their-tuf");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).unwrap();
    let chowned = Command::new("chown")
        .args(["65534:65534", theirs.to_str().unwrap()])
        .status()
        .is_ok_and(|s| s.success());
    let config = tuf_config(dir.path(), Some(&theirs));
    let out = umpire_cli(
        &["config", "check", "--config", config.to_str().unwrap()],
        &[],
    );
    if chowned {
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("owned by uid 65534"), "{stderr}");
    } else {
        // Not root: this process cannot give a folder away, and its own folder is accepted.
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
}

#[cfg(unix)]
#[test]
fn the_default_tuf_cache_is_a_private_folder_of_umpires_user_never_a_shared_temp_path() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    // The folder earlier versions read from, prepared by someone else with a root of their own.
    let planted = std::env::temp_dir().join("umpire-tuf");
    let _ = std::fs::create_dir_all(&planted);
    let _ = std::fs::write(
        planted.join("fresh.trusted_root.json"),
        "{\"planted\": true}",
    );
    let config = tuf_config(dir.path(), None);
    let out = umpire_cli(
        &["config", "check", "--config", config.to_str().unwrap()],
        &[("HOME", home.to_str().unwrap()), ("XDG_CACHE_HOME", "")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let cache = home.join(".cache/umpire/tuf");
    let mode = std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", cache.display());
    // Without HOME or XDG_CACHE_HOME there is no default: the operator must name one.
    let out = Command::new(env!("CARGO_BIN_EXE_umpire"))
        .args(["config", "check", "--config", config.to_str().unwrap()])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("cache_dir"),
        "{}",
        text(&out.stderr)
    );
}

/// A "Redis" that answers every command by announcing a 400 MB value and streaming it; returns
/// its address and the bytes it managed to send.
async fn hostile_redis() -> (u16, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = std::sync::Arc::clone(&sent);
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let counter = std::sync::Arc::clone(&counter);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                if tcp.read(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
                if tcp.write_all(b"$400000000\r\n").await.is_err() {
                    return;
                }
                let chunk = vec![b'x'; 64 * 1024];
                for _ in 0..(400_000_000 / chunk.len()) {
                    if tcp.write_all(&chunk).await.is_err() {
                        return;
                    }
                    counter.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    (port, sent)
}

#[tokio::test]
async fn a_hostile_redis_announcing_a_huge_value_is_refused_before_it_is_read() {
    let (redis_port, sent) = hostile_redis().await;
    let registry = Registry::start().await;
    let host = registry.host();
    let digest = registry.push_image(REPO, "v1", &Image::new("redis")).await;
    let key = SigningKey::p256();
    let yaml = support::config_yaml(
        &host,
        &[("k", &key.public_pem())],
        &support::key_policy("p", &host, 1, &["k"]),
        &format!(
            "cache:\n  redis:\n    url: redis://127.0.0.1:{redis_port}\n    hmac_key_env: UMPIRE_TEST_HMAC\n    timeout: 2s\n"
        ),
    );
    let served = Served::start(
        &yaml,
        &[("UMPIRE_TEST_HMAC", "0123456789abcdef-test-only".into())],
    )
    .await;
    let before = served.memory("VmRSS");
    let r = served.ask(&format!("{host}/{REPO}@{digest}")).await;
    assert_eq!(
        r.findings[0].code, "NO_SIGNATURES",
        "verified afresh: {r:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let grew = served.memory("VmHWM").saturating_sub(before);
    assert!(
        grew < 64 * 1024 * 1024,
        "umpire buffered {grew} bytes of a value it should refuse"
    );
    let streamed = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        streamed < 64 * 1024 * 1024,
        "the connection stayed open for {streamed} bytes"
    );
}

/// Sends the HTTP/2 preface, an empty SETTINGS frame, then whatever `drip` writes; true when the
/// server closed the connection within `within`.
async fn h2_closed_within(
    port: u16,
    within: Duration,
    drip: impl Fn(usize) -> Vec<u8> + Send + 'static,
) -> bool {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut rd, mut wr) = tcp.into_split();
    wr.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    wr.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    tokio::spawn(async move {
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if wr.write_all(&drip(i)).await.is_err() {
                return;
            }
        }
    });
    let closed = async {
        let mut buf = [0u8; 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(within, closed).await.is_ok()
}

#[tokio::test]
async fn slow_http2_clients_are_held_to_the_header_and_idle_timeouts() {
    let gate = support::registry::free_port();
    let key = SigningKey::p256();
    let yaml = format!(
        "{}ext_authz_listen: 127.0.0.1:{gate}\next_authz:\n  upstream: 127.0.0.1:1\nlimits:\n  header_timeout: 1s\n  deadline: 2s\n  idle_timeout: 3s\n  max_connections: 5\n",
        support::config_yaml(
            "127.0.0.1:1",
            &[("k", &key.public_pem())],
            &support::key_policy("p", "127.0.0.1:1", 1, &["k"]),
            ""
        )
    );
    let served = Served::start(&yaml, &[]).await;
    served.wait_for(gate).await;
    for port in [served.grpc, gate] {
        // One byte of a HEADERS frame (declared 100 bytes long) every 300 ms.
        let started = Instant::now();
        let drip = |i: usize| {
            if i == 0 {
                vec![0, 0, 100, 1, 0, 0, 0, 0]
            } else {
                vec![0]
            }
        };
        assert!(
            h2_closed_within(port, Duration::from_secs(6), drip).await,
            "a header block dripped a byte at a time kept port {port} open"
        );
        assert!(started.elapsed() < Duration::from_secs(6));
        // Only PINGs: not a request, not progress.
        let ping = |_| vec![0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        assert!(
            h2_closed_within(port, Duration::from_secs(6), ping).await,
            "pings kept port {port} open"
        );
    }
    // Five such connections no longer lock the listener: after they are closed, a real client is
    // served.
    let mut slow = Vec::new();
    for _ in 0..5 {
        slow.push(tokio::spawn(h2_closed_within(
            served.grpc,
            Duration::from_secs(6),
            |_| vec![0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8],
        )));
    }
    for s in slow {
        assert!(s.await.unwrap());
    }
    let r = served
        .ask(&format!("other.example/app@sha256:{}", "a".repeat(64)))
        .await;
    assert_eq!(r.findings[0].code, "NO_MATCHING_POLICY", "{r:?}");
}

#[tokio::test]
async fn a_replica_never_keeps_a_neighbours_verdict_past_its_own_ttl() {
    let redis = support::redis::Redis::start().await;
    let registry = Registry::start().await;
    let host = registry.host();
    let digest = registry.push_image(REPO, "v1", &Image::new("ttl")).await;
    let key = SigningKey::p256();
    registry
        .push_signatures(
            REPO,
            &digest,
            vec![signature_layer(
                &key,
                payload(&format!("{host}/{REPO}"), &digest),
            )],
        )
        .await;
    let yaml = |allowed_ttl: &str| {
        support::config_yaml(
            &host,
            &[("k", &key.public_pem())],
            &support::key_policy("p", &host, 1, &["k"]),
            &format!(
                "cache:\n  allowed_ttl: {allowed_ttl}\n  redis:\n    url: {}\n    hmac_key_env: UMPIRE_TEST_HMAC\n",
                redis.url()
            ),
        )
    };
    let env = [("UMPIRE_TEST_HMAC", "0123456789abcdef-test-only".to_owned())];
    let long = Served::start(&yaml("1h"), &env).await;
    let short = Served::start(&yaml("2s"), &env).await;
    let image = format!("{host}/{REPO}@{digest}");
    let r = long.ask(&image).await;
    assert!(r.allowed && !r.cached, "{r:?}");
    let r = short.ask(&image).await;
    assert!(
        r.allowed && r.cached,
        "read from the neighbour's entry: {r:?}"
    );
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let r = short.ask(&image).await;
    assert!(
        !r.cached,
        "a 2 s replica answered from a verification older than 2 s: {r:?}"
    );
}

#[tokio::test]
async fn a_rotation_to_an_expired_certificate_keeps_the_current_one() {
    let hook = support::certs::TestWebhook::new();
    let key = SigningKey::p256();
    let yaml = format!(
        "{}{}",
        support::config_yaml(
            "127.0.0.1:1",
            &[("k", &key.public_pem())],
            &support::key_policy("p", "127.0.0.1:1", 1, &["k"]),
            ""
        ),
        hook.yaml
    );
    let served = Served::start(&yaml, &[]).await;
    served.wait_for(hook.port).await;
    // A new client each time: each request makes a handshake after the files changed.
    let new_client = || {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(hook.pki.ca_pem.as_bytes()).unwrap()])
            .tls_info(true)
            .build()
            .unwrap()
    };
    let client = new_client();
    let url = format!("https://127.0.0.1:{}/healthz", hook.port);
    let served_cert = |r: &reqwest::Response| {
        r.extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|t| t.peer_certificate().map(<[u8]>::to_vec))
            .unwrap()
    };
    let before = served_cert(&client.get(&url).send().await.unwrap());
    let expired = hook.pki.server_expired();
    std::fs::write(&hook.cert_path, &expired.cert_pem).unwrap();
    std::fs::write(&hook.key_path, &expired.key_pem).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let client = new_client();
    let r = client
        .get(&url)
        .send()
        .await
        .expect("still served with the valid certificate");
    assert_eq!(served_cert(&r), before);
    // A valid rotation is still taken.
    let fresh = hook.pki.server();
    std::fs::write(&hook.cert_path, &fresh.cert_pem).unwrap();
    std::fs::write(&hook.key_path, &fresh.key_pem).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let client = new_client();
    let r = client.get(&url).send().await.unwrap();
    assert_ne!(
        served_cert(&r),
        before,
        "a valid new pair replaces the old one"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_tuf_root_added_by_a_reload_is_refreshed() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("umpire.yaml");
    std::fs::write(&config, "listen: 127.0.0.1:0\npolicies: []\n").unwrap();
    let served = support::served::Served::start_file(&config, &[]).await;
    // A reload that adds a `tuf` root (its mirror unreachable: the refresh fails, and says so).
    let mirror_root = dir.path().join("mirror-root.json");
    std::fs::write(&mirror_root, "{}").unwrap();
    let cache = dir.path().join("tuf-cache");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:0\ntrust:\n  sigstore:\n    fresh: tuf\n  tuf:\n    cache_dir: {}\n    mirror: http://127.0.0.1:1/tuf\n    mirror_root: {}\npolicies: []\n",
            cache.display(),
            mirror_root.display()
        ),
    )
    .unwrap();
    // SIGHUP, not the file watcher: its handler is installed before umpire listens.
    served.signal("HUP");
    let mut seen = String::new();
    for _ in 0..600 {
        seen = served.log();
        if seen.contains("TUF refresh failed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        seen.contains("TUF refresh failed"),
        "the refresher never looked at the root a reload added: {seen}"
    );
}
