//! Verdict caching, coalescing, the shared Redis cache and hot reload, against a real registry and
//! a real Redis. Registry traffic is counted through umpire's own metrics.

mod support;

use std::path::PathBuf;
use std::sync::Arc;

use support::cosign::{Image, SigningKey};
use support::redis::Redis;
use support::registry::Registry;
use support::{Umpire, config_yaml, key_policy};
use umpire::engine::Options;
use umpire::evidence::auth::Credentials;
use umpire::proto::VerifyRequest;
use umpire::service::Live;

const REPO: &str = "team/app";
const HMAC_ENV: &str = "UMPIRE_TEST_CACHE_KEY";

struct Setup {
    registry: Registry,
    key: SigningKey,
    signed: String,
    unsigned: String,
}

impl Setup {
    async fn new() -> Self {
        let registry = Registry::start().await;
        let key = SigningKey::p256();
        let signed = registry
            .push_signed(REPO, "signed", "cache signed", &key)
            .await;
        let unsigned = registry
            .push_image(REPO, "unsigned", &Image::new("cache unsigned"))
            .await;
        Self {
            registry,
            key,
            signed,
            unsigned,
        }
    }

    fn yaml(&self, extra: &str) -> String {
        let host = self.registry.host();
        config_yaml(
            &host,
            &[("release", &self.key.public_pem())],
            &key_policy("prod", &host, 1, &["release"]),
            extra,
        )
    }

    fn by_digest(&self, digest: &str) -> String {
        format!("{}/{REPO}@{digest}", self.registry.host())
    }

    fn live(&self, extra: &str) -> Arc<Live> {
        Arc::new(
            Live::new(
                support::config(&self.yaml(extra)),
                None,
                Credentials::default(),
            )
            .unwrap(),
        )
    }
}

fn registry_requests(live: &Live) -> u64 {
    live.metrics().registry_request_total()
}

async fn verify(live: &Arc<Live>, image: &str) -> umpire::verdict::Verdict {
    live.engine().verify(image, None).await.unwrap()
}

#[tokio::test]
async fn a_repeated_verify_is_answered_from_the_cache_without_registry_requests() {
    let s = Setup::new().await;
    let live = s.live("");
    let umpire = Umpire::start_live(Arc::clone(&live)).await;
    let mut client = umpire.client().await;
    let request = VerifyRequest {
        image: s.by_digest(&s.signed),
        ..Default::default()
    };
    let first = client.verify(request.clone()).await.unwrap().into_inner();
    assert!(first.allowed && !first.cached);
    let cold = registry_requests(&live);
    assert!(cold > 0);
    let second = client.verify(request.clone()).await.unwrap().into_inner();
    assert!(second.allowed && second.cached, "{second:?}");
    assert_eq!(second.digest, s.signed);
    assert_eq!(
        registry_requests(&live),
        cold,
        "a cache hit makes no registry request"
    );

    // By tag too, once the tag's resolution is cached.
    let by_tag = VerifyRequest {
        image: format!("{}/{REPO}:signed", s.registry.host()),
        ..Default::default()
    };
    client.verify(by_tag.clone()).await.unwrap();
    let warm = registry_requests(&live);
    let again = client.verify(by_tag).await.unwrap().into_inner();
    assert!(again.cached);
    assert_eq!(registry_requests(&live), warm);

    // Bypassing the cache verifies afresh.
    let fresh = client
        .verify(VerifyRequest {
            bypass_cache: true,
            ..request
        })
        .await
        .unwrap()
        .into_inner();
    assert!(fresh.allowed && !fresh.cached);
    assert!(registry_requests(&live) > warm);
}

#[tokio::test]
async fn a_tag_repointed_to_an_unsigned_digest_is_denied() {
    let s = Setup::new().await;
    let live = s.live("cache:\n  tag_ttl: 0\n");
    let by_tag = format!("{}/{REPO}:release", s.registry.host());
    s.registry
        .push_image(REPO, "release", &Image::new("cache signed"))
        .await;
    let warm = verify(&live, &by_tag).await;
    assert!(warm.allowed);
    assert_eq!(warm.digest, s.signed);
    // The tag now points at the unsigned image.
    s.registry
        .push_image(REPO, "release", &Image::new("cache unsigned"))
        .await;
    let v = verify(&live, &by_tag).await;
    assert!(!v.allowed, "{v:?}");
    assert_eq!(v.digest, s.unsigned);
    assert_eq!(v.codes(), [umpire::verdict::Code::NoSignatures]);
}

#[tokio::test]
async fn concurrent_identical_requests_share_one_set_of_registry_requests() {
    let s = Setup::new().await;
    // What one cold verification costs.
    let single = s.live("");
    verify(&single, &s.by_digest(&s.signed)).await;
    let one_set = registry_requests(&single);

    let live = s.live("");
    let image = s.by_digest(&s.signed);
    let calls = (0..200).map(|_| {
        let live = Arc::clone(&live);
        let image = image.clone();
        tokio::spawn(async move { verify(&live, &image).await })
    });
    let verdicts = futures::future::join_all(calls).await;
    assert!(verdicts.iter().all(|v| v.as_ref().unwrap().allowed));
    assert_eq!(
        registry_requests(&live),
        one_set,
        "200 callers, one set of registry requests"
    );
}

/// A config file in a temp dir, with the key in a file beside it.
fn config_on_disk(s: &Setup, threshold_two: bool) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("release.pub"), s.key.public_pem()).unwrap();
    std::fs::write(
        dir.path().join("other.pub"),
        SigningKey::p256().public_pem(),
    )
    .unwrap();
    let path = dir.path().join("umpire.yaml");
    write_config(&path, &s.registry.host(), threshold_two);
    (dir, path)
}

fn write_config(path: &std::path::Path, host: &str, threshold_two: bool) {
    let (threshold, authorities) = if threshold_two {
        (2, "        - key: release\n        - key: other\n")
    } else {
        (1, "        - key: release\n")
    };
    std::fs::write(
        path,
        format!(
            "registries:\n  - host: {host}\n    insecure: true\ntrust:\n  keys:\n    release: release.pub\n    other: other.pub\npolicies:\n  - name: prod\n    images: [\"{host}/**\"]\n    signatures:\n      threshold: {threshold}\n      authorities:\n{authorities}"
        ),
    )
    .unwrap();
}

fn live_from(path: &std::path::Path) -> Arc<Live> {
    let config = umpire::config::Config::load(path).unwrap();
    Arc::new(Live::new(config, Some(path.to_owned()), Credentials::default()).unwrap())
}

#[tokio::test]
async fn an_edited_policy_is_reloaded_and_applied_to_cached_images() {
    let s = Setup::new().await;
    let (_dir, path) = config_on_disk(&s, false);
    let live = live_from(&path);
    let image = s.by_digest(&s.signed);
    assert!(verify(&live, &image).await.allowed);
    assert!(verify(&live, &image).await.cached);

    write_config(&path, &s.registry.host(), true);
    live.reload().unwrap();
    let v = verify(&live, &image).await;
    assert!(!v.allowed, "re-verified under the new policy: {v:?}");
    assert!(!v.cached);
    assert_eq!(v.codes(), [umpire::verdict::Code::ThresholdNotMet]);
}

#[tokio::test]
async fn a_changed_trust_root_is_reloaded_and_applied_to_cached_images() {
    let s = Setup::new().await;
    let (dir, path) = config_on_disk(&s, false);
    let live = live_from(&path);
    let image = s.by_digest(&s.signed);
    assert!(verify(&live, &image).await.allowed);

    // The release key is rotated: the old signature no longer verifies.
    std::fs::write(
        dir.path().join("release.pub"),
        SigningKey::p256().public_pem(),
    )
    .unwrap();
    live.reload().unwrap();
    let v = verify(&live, &image).await;
    assert!(!v.allowed && !v.cached, "{v:?}");
}

#[tokio::test]
async fn a_broken_config_on_reload_leaves_the_old_one_serving() {
    let s = Setup::new().await;
    let (_dir, path) = config_on_disk(&s, false);
    let live = live_from(&path);
    let image = s.by_digest(&s.signed);
    std::fs::write(&path, "policies: [this is not: a policy\n").unwrap();
    let err = live.reload().unwrap_err();
    assert!(format!("{err:#}").contains("umpire.yaml"), "{err:#}");
    let v = verify(&live, &image).await;
    assert!(v.allowed, "the old configuration still serves: {v:?}");
    assert_eq!(v.policy, "prod");
}

fn redis_yaml(redis: &Redis) -> String {
    format!(
        "cache:\n  redis:\n    url: {}\n    hmac_key_env: {HMAC_ENV}\n",
        redis.url()
    )
}

fn set_hmac_key() {
    // SAFETY: set before any engine reads it; every test in this binary sets the same value.
    unsafe { std::env::set_var(HMAC_ENV, "0123456789abcdef-test-only-key") };
}

#[tokio::test]
async fn a_second_replica_answers_from_the_shared_cache() {
    set_hmac_key();
    let s = Setup::new().await;
    let redis = Redis::start().await;
    let (a, b) = (s.live(&redis_yaml(&redis)), s.live(&redis_yaml(&redis)));
    let image = s.by_digest(&s.signed);
    assert!(verify(&a, &image).await.allowed);
    let v = verify(&b, &image).await;
    assert!(v.allowed && v.cached, "{v:?}");
    assert_eq!(
        registry_requests(&b),
        0,
        "the second replica asked no registry"
    );
}

#[tokio::test]
async fn tampered_or_forged_redis_entries_are_ignored_and_re_verified() {
    set_hmac_key();
    let s = Setup::new().await;
    let redis = Redis::start().await;
    let (a, b) = (s.live(&redis_yaml(&redis)), s.live(&redis_yaml(&redis)));
    let image = s.by_digest(&s.unsigned);
    assert!(!verify(&a, &image).await.allowed);

    // Whoever can write to Redis rewrites the denial into an allow.
    let mut conn = redis.connection().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("umpire:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1);
    let value: String = redis::cmd("GET")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    let forged = value.replace("\"allowed\":false", "\"allowed\":true");
    assert_ne!(forged, value);
    let _: () = redis::cmd("SET")
        .arg(&keys[0])
        .arg(&forged)
        .query_async(&mut conn)
        .await
        .unwrap();
    let v = verify(&b, &image).await;
    assert!(!v.allowed && !v.cached, "tampered entry ignored: {v:?}");

    // A wholly forged entry with a made-up MAC.
    let (_, body) = value.split_once('.').unwrap();
    let made_up = format!(
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=.{}",
        body.replace("\"allowed\":false", "\"allowed\":true")
    );
    let _: () = redis::cmd("SET")
        .arg(&keys[0])
        .arg(&made_up)
        .query_async(&mut conn)
        .await
        .unwrap();
    let c = s.live(&redis_yaml(&redis));
    let v = verify(&c, &image).await;
    assert!(!v.allowed && !v.cached, "forged entry ignored: {v:?}");
}

#[tokio::test]
async fn with_redis_stopped_umpire_still_serves() {
    set_hmac_key();
    let s = Setup::new().await;
    let mut redis = Redis::start().await;
    let live = s.live(&redis_yaml(&redis));
    redis.stop();
    let v = verify(&live, &s.by_digest(&s.signed)).await;
    assert!(v.allowed, "{v:?}");
    let v = verify(&live, &s.by_digest(&s.unsigned)).await;
    assert!(!v.allowed);
    assert!(
        live.metrics()
            .encode()
            .contains("umpire_redis_errors_total")
    );
}

#[tokio::test]
async fn a_callers_deadline_is_honoured() {
    let slow = support::hostile::Scripted::start(|_: &support::hostile::Request| {
        support::hostile::Reply::new(200, "{}").delayed(std::time::Duration::from_secs(5))
    })
    .await;
    let key = SigningKey::p256();
    let yaml = support::one_key_yaml(&slow.host(), ("k", &key.public_pem()), "p", "");
    let live = Arc::new(Live::new(support::config(&yaml), None, Credentials::default()).unwrap());
    let started = std::time::Instant::now();
    let options = Options {
        deadline: Some(started + std::time::Duration::from_millis(200)),
        ..Default::default()
    };
    let v = live
        .engine()
        .verify_with(&format!("{}/app:v1", slow.host()), None, options)
        .await
        .unwrap();
    assert!(!v.allowed && v.retryable);
    assert_eq!(v.codes(), [umpire::verdict::Code::LimitExceeded]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "answered at the caller's deadline, not the registry's pace"
    );
}

#[tokio::test]
async fn an_oversized_redis_entry_is_never_read_whole_and_counts_as_a_failure() {
    set_hmac_key();
    let s = Setup::new().await;
    let redis = Redis::start().await;
    let (a, b) = (s.live(&redis_yaml(&redis)), s.live(&redis_yaml(&redis)));
    let image = s.by_digest(&s.signed);
    assert!(verify(&a, &image).await.allowed);
    let mut conn = redis.connection().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("umpire:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1);
    // A 64 MiB value made by Redis itself (zero-padded), so this process never holds it.
    let _: () = redis::cmd("DEL")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: u64 = redis::cmd("SETRANGE")
        .arg(&keys[0])
        .arg(64 * 1024 * 1024 - 1)
        .arg("x")
        .query_async(&mut conn)
        .await
        .unwrap();
    let before = peak_rss();
    let v = verify(&b, &image).await;
    assert!(v.allowed && !v.cached, "verified afresh: {v:?}");
    assert!(
        b.metrics().encode().contains("umpire_redis_errors_total 1"),
        "{}",
        b.metrics().encode()
    );
    // The 64 MiB value was not buffered by the replica that met it.
    assert!(peak_rss() < before + 32 * 1024 * 1024);
}

fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap();
    kb * 1024
}
