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
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::Engine as _;
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
    /// PEM CA certificates trusted for `rediss://` (else the system's).
    pub tls_ca: Option<Vec<u8>>,
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

/// A byte stream to Redis: TCP, TLS over TCP, or a Unix socket.
trait RedisStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> RedisStream for T {}

/// TLS for `rediss://`: the given PEM CA certificates, or the system's.
fn tls_connector(ca: Option<&[u8]>) -> Result<tokio_rustls::TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(pem_bytes) => {
            for block in
                pem::parse_many(pem_bytes).map_err(|e| format!("cache.redis.tls_ca: {e}"))?
            {
                roots
                    .add(rustls::pki_types::CertificateDer::from(
                        block.into_contents(),
                    ))
                    .map_err(|e| format!("cache.redis.tls_ca: {e}"))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

pub const MAX_RETRY_TTL: Duration = Duration::from_secs(30);
/// Redis values larger than this are ignored.
const MAX_REDIS_VALUE: usize = 1024 * 1024;
/// After a Redis failure, how long to serve from the local cache alone before trying again.
const REDIS_BACKOFF: Duration = Duration::from_secs(5);

mod index_children;

/// What a verdict is keyed by besides its digest: where the image was read (and, under an exact
/// signed identity, the tag asked by), the applicable policies' contents and the trust material.
#[derive(Debug, Clone)]
pub struct KeyScope {
    pub source: String,
    pub fingerprints: Vec<[u8; 32]>,
    pub trust: [u8; 32],
}

impl KeyScope {
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
    ttl: Duration,
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
        let entry = Entry {
            verdict: Arc::new(verdict.clone()),
            ttl: remaining,
        };
        self.local.insert(key.to_owned(), entry).await;
        Some(verdict)
    }

    pub fn settings(&self) -> &CacheSettings {
        &self.settings
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
        let entry = Entry {
            verdict: Arc::new(stored),
            ttl,
        };
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

/// The Redis side: HMAC-authenticated entries, short timeouts, back-off after failures.
struct SharedCache {
    /// Parsed from the URL (address, credentials, database); umpire opens the connection itself.
    client: redis::Client,
    /// `rediss://`: TLS to the server, verified against these roots.
    tls: Option<tokio_rustls::TlsConnector>,
    password: Option<String>,
    connection: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
    down_until: std::sync::Mutex<Option<Instant>>,
    key: hmac::Key,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

/// What a replica writes to Redis, under its MAC: the verdict, when it was verified and when
/// what allowed it stops holding, so that each reader measures its own TTL from the verification
/// (not from when it read the entry) and never past `valid_until`.
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    key: String,
    /// The writer's own expiry (its TTL from `verified_at`).
    expires_at: u64,
    /// When the verdict was verified (Unix seconds).
    verified_at: u64,
    /// `Verdict::valid_until` (Unix seconds), which the verdict's JSON does not carry.
    valid_until: Option<i64>,
    verdict: Verdict,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl SharedCache {
    fn new(settings: &RedisSettings, metrics: Arc<Metrics>) -> Result<Self, String> {
        // The crate parses the URL; TLS is umpire's own (the crate's would read replies unbounded).
        let (url, tls) = match settings.url.strip_prefix("rediss://") {
            Some(rest) => (
                format!("redis://{rest}"),
                Some(tls_connector(settings.tls_ca.as_deref())?),
            ),
            None => (settings.url.clone(), None),
        };
        let client = redis::Client::open(url.as_str()).map_err(|e| format!("redis URL: {e}"))?;
        Ok(Self {
            client,
            tls,
            password: settings.password.clone(),
            connection: tokio::sync::Mutex::new(None),
            down_until: std::sync::Mutex::new(None),
            key: hmac::Key::new(hmac::HMAC_SHA256, &settings.hmac_key),
            timeout: settings.timeout,
            metrics,
        })
    }

    fn redis_key(key: &str) -> String {
        format!("umpire:v1:verdict:{key}")
    }

    fn failed(&self, what: &str, e: impl std::fmt::Display) {
        self.metrics.redis_errors.inc();
        tracing::warn!("shared cache {what} failed, serving from the local cache: {e}");
        *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Instant::now() + REDIS_BACKOFF);
    }

    async fn connection(&self) -> Option<redis::aio::MultiplexedConnection> {
        if self
            .down_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| Instant::now() < t)
        {
            return None;
        }
        let mut slot = self.connection.lock().await;
        if let Some(c) = slot.as_ref() {
            return Some(c.clone());
        }
        match tokio::time::timeout(self.timeout, self.open_connection()).await {
            Ok(Ok(c)) => {
                *slot = Some(c.clone());
                Some(c)
            }
            Ok(Err(e)) => {
                self.failed("connect", e);
                None
            }
            Err(_) => {
                self.failed("connect", "timed out");
                None
            }
        }
    }

    /// A connection whose replies are bounded as they arrive (`redis_wire`), over TCP, TLS or a
    /// Unix socket as the URL says.
    async fn open_connection(&self) -> std::io::Result<redis::aio::MultiplexedConnection> {
        use crate::redis_wire::{Bounded, ReplyBounds};
        use redis::ConnectionAddr;
        let bounds = ReplyBounds {
            // GETRANGE 0..MAX answers at most MAX + 1 bytes.
            max_bulk: MAX_REDIS_VALUE as u64 + 1,
            max_reply: 2 * MAX_REDIS_VALUE as u64,
            max_count: 1024,
            max_line: 64 * 1024,
            max_depth: 8,
        };
        let info = self.client.get_connection_info();
        let with_password;
        let settings = match &self.password {
            Some(p) => {
                with_password = info.redis_settings().clone().set_password(p);
                &with_password
            }
            None => info.redis_settings(),
        };
        // One stream type for the three transports; the framing bound sits on the plaintext.
        let stream: Box<dyn RedisStream> = match info.addr() {
            ConnectionAddr::Tcp(host, port) => {
                let tcp = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                tcp.set_nodelay(true)?;
                match &self.tls {
                    Some(tls) => {
                        let name = rustls::pki_types::ServerName::try_from(host.clone())
                            .map_err(|e| std::io::Error::other(e.to_string()))?;
                        Box::new(tls.connect(name, tcp).await?)
                    }
                    None => Box::new(tcp),
                }
            }
            #[cfg(unix)]
            ConnectionAddr::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
            other => {
                return Err(std::io::Error::other(format!(
                    "unsupported Redis address {other:?}"
                )));
            }
        };
        let (conn, driver) = redis::aio::MultiplexedConnection::new_with_config(
            settings,
            Bounded::new(stream, bounds),
            redis::AsyncConnectionConfig::default(),
        )
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
        tokio::spawn(driver);
        Ok(conn)
    }

    async fn forget_connection(&self) {
        *self.connection.lock().await = None;
    }

    /// A valid entry, when it was verified and when its writer lets it expire; anything forged,
    /// moved, expired or unreadable is a miss.
    async fn get(&self, key: &str) -> Option<(Verdict, u64, u64)> {
        let mut conn = self.connection().await?;
        // At most one byte past the limit is read: an oversized value is never buffered whole.
        let cmd = redis::cmd("GETRANGE")
            .arg(Self::redis_key(key))
            .arg(0)
            .arg(MAX_REDIS_VALUE)
            .to_owned();
        let value: Option<Vec<u8>> =
            match tokio::time::timeout(self.timeout, cmd.query_async(&mut conn)).await {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => {
                    self.forget_connection().await;
                    self.failed("read", e);
                    return None;
                }
                Err(_) => {
                    self.forget_connection().await;
                    self.failed("read", "timed out");
                    return None;
                }
            };
        let value = value.filter(|v| !v.is_empty())?;
        if value.len() > MAX_REDIS_VALUE {
            // Not something umpire wrote: the shared cache is treated as failing (back-off).
            self.failed("read", "an entry larger than 1 MiB");
            return None;
        }
        match self.open(key, &value) {
            Ok(found) => Some(found),
            Err(why) => {
                tracing::warn!(key, "ignoring shared cache entry: {why}");
                None
            }
        }
    }

    fn open(&self, key: &str, value: &[u8]) -> Result<(Verdict, u64, u64), &'static str> {
        if value.len() > MAX_REDIS_VALUE {
            return Err("too large");
        }
        let dot = value.iter().position(|b| *b == b'.').ok_or("no MAC")?;
        let (mac_b64, body) = (&value[..dot], &value[dot + 1..]);
        let mac = base64::engine::general_purpose::STANDARD
            .decode(mac_b64)
            .map_err(|_| "MAC is not base64")?;
        hmac::verify(&self.key, body, &mac).map_err(|_| "MAC does not verify")?;
        let stored: Stored = serde_json::from_slice(body).map_err(|_| "unreadable")?;
        if stored.key != key {
            return Err("it is for another key");
        }
        let now = now_secs();
        if stored.expires_at <= now {
            return Err("expired");
        }
        if stored.verified_at > now.saturating_add(300) {
            return Err("verified in the future");
        }
        let mut verdict = stored.verdict;
        verdict.valid_until = match stored.valid_until {
            Some(t) => Some(jiff::Timestamp::from_second(t).map_err(|_| "unreadable time")?),
            None => None,
        };
        Ok((verdict, stored.verified_at, stored.expires_at))
    }

    fn seal(&self, key: &str, verdict: &Verdict, ttl: Duration) -> Option<Vec<u8>> {
        let now = now_secs();
        let stored = Stored {
            key: key.to_owned(),
            expires_at: now + ttl.as_secs().max(1),
            verified_at: now,
            valid_until: verdict.valid_until.map(|t| t.as_second()),
            verdict: verdict.clone(),
        };
        let body = serde_json::to_vec(&stored).ok()?;
        let mac = hmac::sign(&self.key, &body);
        let mut value = base64::engine::general_purpose::STANDARD
            .encode(mac.as_ref())
            .into_bytes();
        value.push(b'.');
        value.extend(body);
        Some(value)
    }

    async fn put(&self, key: &str, verdict: &Verdict, ttl: Duration) {
        let Some(value) = self.seal(key, verdict, ttl) else {
            return;
        };
        let Some(mut conn) = self.connection().await else {
            return;
        };
        let cmd = redis::cmd("SET")
            .arg(Self::redis_key(key))
            .arg(value)
            .arg("EX")
            .arg(ttl.as_secs().max(1))
            .to_owned();
        match tokio::time::timeout(self.timeout, cmd.query_async::<()>(&mut conn)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.forget_connection().await;
                self.failed("write", e);
            }
            Err(_) => {
                self.forget_connection().await;
                self.failed("write", "timed out");
            }
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
