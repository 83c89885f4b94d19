//! The Redis layer of the verdict cache: entries under an HMAC only umpire can make, each naming
//! the key it is for and when it was verified; short timeouts, back-off after a failure (every
//! failure is a miss), replies bounded as they arrive (`redis_wire`).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::Engine as _;

use super::RedisSettings;
use crate::metrics::Metrics;
use crate::verdict::Verdict;

/// Redis values larger than this are ignored.
const MAX_REDIS_VALUE: usize = 1024 * 1024;
/// After a Redis failure, how long to serve from the local cache alone before trying again.
const REDIS_BACKOFF: Duration = Duration::from_secs(5);

/// A byte stream to Redis: TCP, TLS over TCP, or a Unix socket.
trait RedisStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> RedisStream for T {}

/// TLS for `rediss://`: the given DER CA certificates (read and parsed at load), or the system's.
fn tls_connector(ca: Option<&[Vec<u8>]>) -> Result<tokio_rustls::TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(certificates) => {
            for der in certificates {
                roots
                    .add(rustls::pki_types::CertificateDer::from(der.clone()))
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

/// The Redis side: HMAC-authenticated entries, short timeouts, back-off after failures.
pub(super) struct SharedCache {
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

pub(super) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl SharedCache {
    pub(super) fn new(settings: &RedisSettings, metrics: Arc<Metrics>) -> Result<Self, String> {
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
    pub(super) async fn get(&self, key: &str) -> Option<(Verdict, u64, u64)> {
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

    pub(super) fn open(
        &self,
        key: &str,
        value: &[u8],
    ) -> Result<(Verdict, u64, u64), &'static str> {
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

    pub(super) fn seal(&self, key: &str, verdict: &Verdict, ttl: Duration) -> Option<Vec<u8>> {
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

    pub(super) async fn put(&self, key: &str, verdict: &Verdict, ttl: Duration) {
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
