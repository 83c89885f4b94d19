//! Verdict caches: an in-process cache (moka) and an optional shared one in Redis.
//!
//! Keys are derived from what a verdict depends on: the repository, the manifest digest, the
//! content of the policies that applied, all trust material and limits, and umpire's version; never a
//! tag. Tag → digest resolutions are cached apart with their own (short) TTL. Retryable denials stay
//! only briefly in the local cache and never go to Redis.
//!
//! Redis entries carry an HMAC-SHA256 under a key only umpire knows, and name the cache key they are
//! for, so whoever can write to Redis can neither forge a verdict nor move one to another image. Any
//! Redis failure is a miss: umpire degrades to its local cache, never to an error or an allow.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use sha2::{Digest as _, Sha256};

use crate::metrics::{LayerLabels, Metrics};
use crate::verdict::Verdict;

/// Cache settings (`cache:` in the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    pub allowed_ttl: Duration,
    pub denied_ttl: Duration,
    /// Transient (retryable) denials: a short back-off, at most 30 s.
    pub retry_ttl: Duration,
    /// Tag → digest resolutions; zero disables.
    pub tag_ttl: Duration,
    pub max_entries: u64,
    pub redis: Option<RedisSettings>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    pub url: String,
    pub hmac_key: Vec<u8>,
    /// DER CA certificates, the only roots trusted for `rediss://` (else the system's).
    pub tls_ca: Option<Vec<Vec<u8>>>,
    /// Redis's password (`cache.redis.password_env`); never logged.
    pub password: Option<String>,
    /// Per-operation timeout; a slower Redis counts as down.
    pub timeout: Duration,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RedisSettings({}, <hmac key>, {:?})",
            self.url, self.timeout
        )
    }
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            allowed_ttl: Duration::from_secs(3600),
            denied_ttl: Duration::from_secs(60),
            retry_ttl: Duration::from_secs(5),
            tag_ttl: Duration::from_secs(30),
            max_entries: 100_000,
            redis: None,
        }
    }
}

pub const MAX_RETRY_TTL: Duration = Duration::from_secs(30);
/// What outlives a configuration reload: caches, in-flight work, metrics.
pub struct Shared {
    pub cache: Arc<VerdictCache>,
    pub metrics: Arc<Metrics>,
    pub(crate) resolutions: crate::coalesce::Coalescer<
        (String, String),
        Result<Arc<crate::evidence::Manifest>, Box<Verdict>>,
    >,
    pub(crate) judgments: crate::coalesce::Coalescer<String, Verdict>,
}

impl Shared {
    pub fn new(cache: Arc<VerdictCache>, metrics: Arc<Metrics>) -> Self {
        Self {
            cache,
            metrics,
            resolutions: crate::coalesce::Coalescer::default(),
            judgments: crate::coalesce::Coalescer::default(),
        }
    }
}

mod index_children;
mod shared;

use shared::{SharedCache, now_secs};

/// What a verdict is keyed by besides its digest: where the image was read (and, under an exact
/// signed identity, the tag asked by), the applicable policies' contents and the trust material.
#[derive(Debug, Clone)]
pub struct KeyScope {
    pub source: String,
    pub fingerprints: Vec<[u8; 32]>,
    pub trust: [u8; 32],
}

impl KeyScope {
    pub fn new(source: String, fingerprints: Vec<[u8; 32]>, trust: [u8; 32]) -> Self {
        Self {
            source,
            fingerprints,
            trust,
        }
    }

    /// This scope narrowed to the tag asked by, when a verdict holds only for it.
    pub fn for_tag(&self, tag: Option<&str>) -> Self {
        let source = match tag {
            Some(tag) => format!("{}#{tag}", self.source),
            None => self.source.clone(),
        };
        Self {
            source,
            ..self.clone()
        }
    }

    /// The verdict cache key of `digest` in this scope.
    pub fn key(&self, digest: &str) -> String {
        verdict_key(&self.source, digest, &self.fingerprints, &self.trust)
    }
}

/// The cache key of a verdict, from everything it depends on.
pub fn verdict_key(
    source: &str,
    digest: &str,
    policy_fingerprints: &[[u8; 32]],
    trust_fingerprint: &[u8; 32],
) -> String {
    let mut h = Sha256::new();
    h.update(concat!("umpire/", env!("CARGO_PKG_VERSION"), "\0").as_bytes());
    h.update(source.as_bytes());
    h.update(b"\0");
    h.update(digest.as_bytes());
    h.update(b"\0");
    if let [one] = policy_fingerprints {
        h.update(one);
    } else {
        let mut fps = policy_fingerprints.to_vec();
        fps.sort();
        for fp in fps {
            h.update(fp);
        }
    }
    h.update(trust_fingerprint);
    // One allocation for the key (hex::encode collects char by char); 32 bytes always fit 64
    // hex digits, and the fallback is the same text, never a key shared by other verdicts.
    let digest = h.finalize();
    let mut text = [0u8; 64];
    match hex::encode_to_slice(digest, &mut text) {
        Ok(()) => String::from_utf8_lossy(&text).into_owned(),
        Err(_) => hex::encode(digest),
    }
}

#[derive(Clone)]
struct Entry {
    verdict: Arc<Verdict>,
    /// Its answer as a cached one, encoded (`Verdict::wire`), made once when it is stored.
    wire: bytes::Bytes,
    ttl: Duration,
}

impl Entry {
    fn new(verdict: Verdict, ttl: Duration) -> Self {
        let wire = verdict.wire_as(true);
        Self {
            verdict: Arc::new(verdict),
            wire,
            ttl,
        }
    }
}

struct PerEntry;

impl Expiry<String, Entry> for PerEntry {
    fn expire_after_create(&self, _key: &String, value: &Entry, _now: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

pub struct VerdictCache {
    settings: CacheSettings,
    local: moka::future::Cache<String, Entry>,
    tags: Option<moka::future::Cache<(String, String), String>>,
    redis: Option<SharedCache>,
    metrics: Arc<Metrics>,
    /// `umpire_cache_hits_total{layer="local"}`, looked up once: the hot path's counter.
    local_hits: prometheus_client::metrics::counter::Counter,
}

impl VerdictCache {
    pub fn new(settings: CacheSettings, metrics: Arc<Metrics>) -> Self {
        let local = moka::future::Cache::builder()
            .max_capacity(settings.max_entries)
            .expire_after(PerEntry)
            .build();
        let tags = (!settings.tag_ttl.is_zero()).then(|| {
            moka::future::Cache::builder()
                .max_capacity(settings.max_entries)
                .time_to_live(settings.tag_ttl)
                .build()
        });
        let redis =
            settings
                .redis
                .clone()
                .and_then(|r| match SharedCache::new(&r, Arc::clone(&metrics)) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tracing::error!("shared cache disabled: {e}");
                        None
                    }
                });
        let local_hits = metrics
            .cache_hits
            .get_or_create(&LayerLabels { layer: "local" })
            .clone();
        Self {
            settings,
            local,
            tags,
            redis,
            metrics,
            local_hits,
        }
    }

    /// This replica's own TTL for a verdict of this kind.
    fn own_ttl(&self, verdict: &Verdict) -> Duration {
        if verdict.allowed {
            self.settings.allowed_ttl
        } else if verdict.retryable {
            self.settings.retry_ttl.min(MAX_RETRY_TTL)
        } else {
            self.settings.denied_ttl
        }
    }

    /// A verdict from Redis, kept locally while its verification is younger than this replica's
    /// own TTL for its kind (and the writer's, and before its `valid_until`): another replica's
    /// longer TTL never decides how long this one answers with it.
    async fn read_redis(&self, redis: &SharedCache, key: &str) -> Option<Verdict> {
        let (verdict, verified_at, writer_expires) = redis.get(key).await?;
        let own_end = verified_at.saturating_add(self.own_ttl(&verdict).as_secs());
        let mut end = own_end.min(writer_expires);
        if let Some(until) = verdict.valid_until {
            end = end.min(u64::try_from(until.as_second()).unwrap_or(0));
        }
        let remaining = Duration::from_secs(end.saturating_sub(now_secs()));
        if remaining.is_zero() {
            return None;
        }
        self.metrics
            .cache_hits
            .get_or_create(&LayerLabels { layer: "redis" })
            .inc();
        let entry = Entry::new(verdict.clone(), remaining);
        self.local.insert(key.to_owned(), entry).await;
        Some(verdict)
    }

    /// Lets the local cache finish its pending work (evictions to `max_entries`): for
    /// measurements.
    pub async fn settle(&self) {
        self.local.run_pending_tasks().await;
    }

    pub fn settings(&self) -> &CacheSettings {
        &self.settings
    }

    /// A verdict held in this replica's own cache, shared, with its answer already encoded (the
    /// cached answer's fast path; `None` sends the caller to [`VerdictCache::get`]).
    pub async fn get_local(&self, key: &str) -> Option<(Arc<Verdict>, bytes::Bytes)> {
        let e = self.local.get(key).await?;
        self.local_hits.inc();
        Some((e.verdict, e.wire))
    }

    /// A cached verdict for `key`, from the local cache or else Redis.
    pub async fn get(&self, key: &str) -> Option<Verdict> {
        if let Some(e) = self.local.get(key).await {
            self.local_hits.inc();
            return Some((*e.verdict).clone());
        }
        // Boxed: the Redis round trip's future is large, and the local hit above is the hot path.
        if let Some(redis) = &self.redis
            && let Some(verdict) = Box::pin(self.read_redis(redis, key)).await
        {
            return Some(verdict);
        }
        self.metrics.cache_misses.inc();
        None
    }

    /// Stores a fresh verdict: allowed and lasting denials everywhere, retryable ones locally and briefly.
    pub async fn put(&self, key: &str, verdict: &Verdict) {
        let ttl = if verdict.allowed {
            // Never kept past the moment what allowed it stops holding.
            match verdict.valid_until {
                Some(until) => {
                    let left = jiff::Timestamp::now().duration_until(until);
                    let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
                    self.settings.allowed_ttl.min(left)
                }
                None => self.settings.allowed_ttl,
            }
        } else if verdict.retryable {
            self.settings.retry_ttl.min(MAX_RETRY_TTL)
        } else {
            self.settings.denied_ttl
        };
        if ttl.is_zero() {
            return;
        }
        let mut stored = verdict.clone();
        stored.image.clear();
        stored.cached = false;
        if !verdict.retryable
            && let Some(redis) = &self.redis
        {
            redis.put(key, &stored, ttl).await;
        }
        let entry = Entry::new(stored, ttl);
        self.local.insert(key.to_owned(), entry).await;
    }

    pub async fn tag(&self, source: &str, tag: &str) -> Option<String> {
        self.tags
            .as_ref()?
            .get(&(source.to_owned(), tag.to_owned()))
            .await
    }

    pub async fn put_tag(&self, source: &str, tag: &str, digest: &str) {
        if let Some(tags) = &self.tags {
            tags.insert((source.to_owned(), tag.to_owned()), digest.to_owned())
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{Code, Finding};

    fn shared() -> SharedCache {
        let settings = RedisSettings {
            url: "redis://127.0.0.1:1".into(),
            hmac_key: b"0123456789abcdef0123456789abcdef".to_vec(),
            timeout: Duration::from_millis(100),
            tls_ca: None,
            password: None,
        };
        SharedCache::new(&settings, Arc::new(Metrics::new())).unwrap()
    }

    #[test]
    fn sealed_entries_open_only_for_their_key_and_unaltered() {
        let c = shared();
        let v = Verdict::allow("", vec![Finding::new(Code::Satisfied, "ok")]);
        let sealed = c.seal("k1", &v, Duration::from_secs(60)).unwrap();
        assert_eq!(c.open("k1", &sealed).unwrap().0, v);
        assert_eq!(c.open("k2", &sealed).unwrap_err(), "it is for another key");
        let mut forged = sealed.clone();
        let i = forged.len() - 20;
        forged[i] ^= 1;
        assert!(c.open("k1", &forged).is_err());
        // A denial rewritten to an allow without the key fails the MAC.
        let denied = c
            .seal("k1", &Verdict::deny("", vec![]), Duration::from_secs(60))
            .unwrap();
        let text = String::from_utf8(denied)
            .unwrap()
            .replace("\"allowed\":false", "\"allowed\":true");
        assert_eq!(
            c.open("k1", text.as_bytes()).unwrap_err(),
            "MAC does not verify"
        );
        assert!(c.open("k1", b"no mac here").is_err());
    }

    #[test]
    fn keys_depend_on_everything_a_verdict_depends_on() {
        let base = verdict_key("r/a", "sha256:1", &[[1; 32]], &[2; 32]);
        assert_ne!(base, verdict_key("r/b", "sha256:1", &[[1; 32]], &[2; 32]));
        assert_ne!(base, verdict_key("r/a", "sha256:2", &[[1; 32]], &[2; 32]));
        assert_ne!(base, verdict_key("r/a", "sha256:1", &[[3; 32]], &[2; 32]));
        assert_ne!(base, verdict_key("r/a", "sha256:1", &[[1; 32]], &[4; 32]));
        assert_eq!(
            verdict_key("r/a", "d", &[[1; 32], [5; 32]], &[2; 32]),
            verdict_key("r/a", "d", &[[5; 32], [1; 32]], &[2; 32])
        );
    }

    #[tokio::test]
    async fn retryable_denials_are_kept_briefly_and_locally() {
        let settings = CacheSettings {
            retry_ttl: Duration::from_millis(50),
            ..CacheSettings::default()
        };
        let c = VerdictCache::new(settings, Arc::new(Metrics::new()));
        let v = Verdict::deny("", vec![Finding::new(Code::RegistryUnavailable, "down")]);
        c.put("k", &v).await;
        assert!(c.get("k").await.is_some());
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(c.get("k").await.is_none());
    }

    #[tokio::test]
    async fn an_allowed_verdict_is_not_kept_past_what_allowed_it() {
        let cache = VerdictCache::new(CacheSettings::default(), Arc::new(Metrics::new()));
        let allowed = Verdict::allow("", vec![Finding::new(Code::Satisfied, "ok")]);
        let expired = allowed.clone().holds_until(Some(
            jiff::Timestamp::now() - jiff::SignedDuration::from_secs(1),
        ));
        cache.put("expired", &expired).await;
        assert!(cache.get("expired").await.is_none());
        let soon = allowed.clone().holds_until(Some(
            jiff::Timestamp::now() + jiff::SignedDuration::from_millis(300),
        ));
        cache.put("soon", &soon).await;
        assert!(cache.get("soon").await.is_some());
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(cache.get("soon").await.is_none(), "kept past its validity");
        cache.put("open", &allowed).await;
        assert!(cache.get("open").await.is_some());
    }
}
