//! Every listener's ceilings, in one place: at most `max_connections` open per listener (more are
//! closed on accept and counted as shed), the first bytes (TLS handshake and request headers)
//! within `header_timeout`, no connection silent for longer than `idle_timeout`, and accept errors
//! (file descriptors exhausted) answered with back-off and a log line at most once a second
//! instead of a spin. gRPC listeners take the connections as a stream; HTTP listeners (webhook,
//! metrics) are served here, with hyper's header-read timeout, and drained on shutdown.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

pub use super::frames::FrameGuard;
use crate::limits::Limits;
use crate::metrics::Metrics;

/// The ceilings of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Ceilings {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl From<&Limits> for Ceilings {
    fn from(l: &Limits) -> Self {
        Self {
            header_timeout: l.header_timeout,
            idle_timeout: l.idle_timeout,
            max_connections: l.max_connections,
        }
    }
}

/// HTTP/2 keep-alive: idle clients are pinged a few times per idle timeout (their acks are
/// bytes from the peer), and a peer that does not ack within this is gone.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// How often an idle HTTP/2 client is pinged: three times per idle timeout.
pub fn keepalive_interval(ceilings: Ceilings) -> Duration {
    (ceilings.idle_timeout / 3).max(Duration::from_secs(1))
}

/// Streams one HTTP/2 connection may have open at once, on every listener.
pub const H2_MAX_STREAMS: u32 = 128;
/// The largest header list (decoded) one HTTP/2 request may send.
pub const H2_MAX_HEADER_LIST: u32 = 64 * 1024;

/// How long in-flight HTTP requests may take to finish once shutdown begins.
const DRAIN_GRACE: Duration = Duration::from_secs(30);
/// Accept-error back-off: first wait and ceiling.
const BACKOFF_FIRST: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A connection that fails with `TimedOut` when the peer has sent nothing for its current
/// allowance: `header_timeout` until its first byte, then `idle_timeout` between bytes. Only the
/// peer's bytes count (a half-open peer cannot be kept alive by what the server writes); HTTP/2
/// listeners ping idle clients, whose acknowledgements keep live connections open. It holds its
/// listener's connection slot until dropped.
pub struct Guarded<S> {
    inner: S,
    deadline: Pin<Box<Sleep>>,
    idle: Duration,
    /// When bytes last arrived (`None` before the first): the timer is moved to `last + idle`
    /// only when it fires, not on every read (a timer-wheel update per read costs a lock).
    last: Option<tokio::time::Instant>,
    _slot: OwnedSemaphorePermit,
}

impl<S> Guarded<S> {
    fn new(inner: S, slot: OwnedSemaphorePermit, ceilings: Ceilings) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep(ceilings.header_timeout)),
            idle: ceilings.idle_timeout,
            last: None,
            _slot: slot,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    fn moved(&mut self) {
        self.last = Some(tokio::time::Instant::now());
    }

    /// The connection has been silent past its allowance: before its first bytes, the header
    /// timeout; after them, the idle timeout since the last bytes.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.deadline.as_mut().poll(cx).is_pending() {
                return false;
            }
            let Some(last) = self.last else {
                return true;
            };
            let next = last + self.idle;
            if next <= tokio::time::Instant::now() {
                return true;
            }
            // Bytes came since the timer was set: wait out the rest of the allowance.
            self.deadline.as_mut().reset(next);
        }
    }
}

pub(super) fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "connection idle past its limit")
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.moved();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // A peer that stops reading is as silent as one that stops writing.
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // A peer that stops reading is as silent as one that stops writing.
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            other => other,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected for Guarded<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// A log line at most once a second, with the count of the ones held back.
struct Throttled {
    last: Option<Instant>,
    held: u64,
}

impl Throttled {
    fn new() -> Self {
        Self {
            last: None,
            held: 0,
        }
    }

    fn warn(&mut self, name: &str, what: &str) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            self.held += 1;
            return;
        }
        tracing::warn!(
            listener = name,
            suppressed = self.held,
            "{what} (logged at most once a second)"
        );
        self.last = Some(now);
        self.held = 0;
    }
}

/// Accepts connections on `listener` until `shutdown`, each guarded and holding a slot; beyond
/// `max_connections` a connection is closed at once. Accept errors back off.
pub async fn accept<F>(
    name: &'static str,
    listener: TcpListener,
    ceilings: Ceilings,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send,
    mut each: F,
) where
    F: FnMut(Guarded<TcpStream>, SocketAddr),
{
    let slots = Arc::new(Semaphore::new(ceilings.max_connections.max(1)));
    let mut backoff = BACKOFF_FIRST;
    let mut log = Throttled::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((tcp, peer)) => {
                backoff = BACKOFF_FIRST;
                match Arc::clone(&slots).try_acquire_owned() {
                    Ok(slot) => {
                        let _ = tcp.set_nodelay(true);
                        each(Guarded::new(tcp, slot, ceilings), peer);
                    }
                    Err(_) => {
                        metrics.shed.inc();
                        drop(tcp);
                        log.warn(
                            name,
                            &format!(
                                "connection refused: {} connections open, the limit (limits.max_connections)",
                                ceilings.max_connections
                            ),
                        );
                    }
                }
            }
            Err(e) => {
                log.warn(
                    name,
                    &format!("accept failed, backing off {backoff:?}: {e}"),
                );
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// The guarded connections of `listener`, as a stream (for tonic), until the stream is dropped.
pub fn incoming(
    name: &'static str,
    listener: TcpListener,
    ceilings: Ceilings,
    metrics: Arc<Metrics>,
) -> impl tokio_stream::Stream<Item = io::Result<Guarded<TcpStream>>> {
    incoming_guarded(name, listener, ceilings, metrics)
}

/// As [`incoming`], with HTTP/2 frames followed ([`FrameGuard`]): for plaintext gRPC listeners.
pub fn incoming_h2(
    name: &'static str,
    listener: TcpListener,
    ceilings: Ceilings,
    metrics: Arc<Metrics>,
) -> impl tokio_stream::Stream<Item = io::Result<FrameGuard<Guarded<TcpStream>>>> {
    use tokio_stream::StreamExt;
    incoming_guarded(name, listener, ceilings, metrics)
        .map(move |c| c.map(|c| FrameGuard::new(c, ceilings)))
}

fn incoming_guarded(
    name: &'static str,
    listener: TcpListener,
    ceilings: Ceilings,
    metrics: Arc<Metrics>,
) -> impl tokio_stream::Stream<Item = io::Result<Guarded<TcpStream>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(128);
    let closed = tx.clone();
    tokio::spawn(accept(
        name,
        listener,
        ceilings,
        metrics,
        async move { closed.closed().await },
        move |conn, _peer| {
            // A full channel means the server is not taking connections: drop this one.
            let _ = tx.try_send(Ok(conn));
        },
    ));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// TLS for an HTTP listener: the acceptor and the client allow-list.
pub struct HttpTls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub allowed_clients: Arc<Vec<String>>,
}

/// Serves `router` over HTTP/1.1 and HTTP/2 (over TLS when `tls`) until `shutdown`; then stops
/// accepting, lets in-flight requests finish (up to a grace period) and returns.
pub async fn serve_http(
    name: &'static str,
    listener: TcpListener,
    ceilings: Ceilings,
    metrics: Arc<Metrics>,
    tls: Option<HttpTls>,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let tls = tls.map(Arc::new);
    accept(
        name,
        listener,
        ceilings,
        metrics,
        shutdown,
        |conn, peer| {
            let router = router.clone();
            let tls = tls.clone();
            let mut stop = stop_rx.clone();
            // Finished connections are reaped as new ones arrive.
            while connections.try_join_next().is_some() {}
            connections.spawn(async move {
                let service = hyper_util::service::TowerToHyperService::new(router);
                let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                builder
                    .http1()
                    .timer(TokioTimer::new())
                    .header_read_timeout(ceilings.header_timeout);
                builder
                    .http2()
                    .timer(TokioTimer::new())
                    .keep_alive_interval(keepalive_interval(ceilings))
                    .keep_alive_timeout(KEEPALIVE_TIMEOUT)
                    .max_concurrent_streams(H2_MAX_STREAMS)
                    .max_header_list_size(H2_MAX_HEADER_LIST);
                macro_rules! drive {
                    ($io:expr) => {{
                        let connection = builder.serve_connection($io, service);
                        tokio::pin!(connection);
                        tokio::select! {
                            r = connection.as_mut() => r,
                            _ = stop.changed() => {
                                connection.as_mut().graceful_shutdown();
                                connection.await
                            }
                        }
                    }};
                }
                let result = match tls.as_deref() {
                    None => drive!(TokioIo::new(FrameGuard::new(conn, ceilings))),
                    Some(t) => {
                        // The handshake shares the first-bytes allowance of the connection.
                        let stream = match t.acceptor.accept(conn).await {
                            Ok(s) => s,
                            Err(e) => {
                                tracing::info!(%peer, listener = name, "TLS handshake refused: {e}");
                                return;
                            }
                        };
                        if !crate::api::tls::client_allowed(
                            &t.allowed_clients,
                            stream.get_ref().1.peer_certificates(),
                        ) {
                            tracing::warn!(%peer, listener = name, "client certificate names no allowed identity");
                            return;
                        }
                        drive!(TokioIo::new(FrameGuard::new(stream, ceilings)))
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(%peer, listener = name, "connection: {e}");
                }
            });
        },
    )
    .await;
    // Shutdown: in-flight requests get their answers; idle connections close.
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(DRAIN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            listener = name,
            "connections still open after {DRAIN_GRACE:?}; closing them"
        );
        connections.abort_all();
    }
}
