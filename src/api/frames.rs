//! HTTP/2 connections held to the listeners' clock on the decrypted bytes: frames followed so that
//! header blocks complete within `header_timeout` and only requests' progress (not PINGs,
//! SETTINGS or partial frames) keeps a connection from being idle.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::listener::{Ceilings, timed_out};

/// The HTTP/2 client connection preface.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types that make a request progress; every other frame (PING, SETTINGS, WINDOW_UPDATE,
/// PRIORITY, ...) and every partial frame is not activity.
const H2_DATA: u8 = 0x0;
const H2_HEADERS: u8 = 0x1;
const H2_CONTINUATION: u8 = 0x9;
const H2_END_HEADERS: u8 = 0x4;

#[derive(Debug)]
enum Protocol {
    /// The first bytes, until they show the HTTP/2 preface or something else.
    Detect(Vec<u8>),
    /// HTTP/1 (hyper's header-read timeout covers it); bytes pass unread.
    Http1,
    /// HTTP/2: frames followed, after the preface.
    Http2 {
        header: [u8; 9],
        have: usize,
        /// The frame being read: (type, flags, payload bytes still to come).
        frame: Option<(u8, u8, u32)>,
    },
}

/// HTTP/2 connections held to the same clock as HTTP/1 ones, on the decrypted bytes: a request's
/// header block must be complete within `header_timeout` of its first frame (and the first one
/// within `header_timeout` of the connection), and the connection is idle when no request made
/// progress (complete header blocks, DATA with a payload) for `idle_timeout`. PINGs, SETTINGS,
/// window updates and partial frames are not progress: a client that sends one byte of a header
/// block every half second, or only pings, is closed like a silent one.
pub struct FrameGuard<S> {
    inner: S,
    protocol: Protocol,
    timer: Pin<Box<Sleep>>,
    header_timeout: Duration,
    idle_timeout: Duration,
    /// The last progress (the connection's start before any).
    last_progress: tokio::time::Instant,
    /// When the header block in progress began (or the connection, before the first request).
    headers_since: Option<tokio::time::Instant>,
}

impl<S> FrameGuard<S> {
    pub fn new(inner: S, ceilings: Ceilings) -> Self {
        let now = tokio::time::Instant::now();
        Self {
            inner,
            protocol: Protocol::Detect(Vec::new()),
            timer: Box::pin(tokio::time::sleep(ceilings.header_timeout)),
            header_timeout: ceilings.header_timeout,
            idle_timeout: ceilings.idle_timeout,
            last_progress: now,
            headers_since: Some(now),
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// When the connection is closed unless it makes progress first.
    fn deadline(&self) -> Option<tokio::time::Instant> {
        match self.protocol {
            Protocol::Http1 => None,
            _ => Some(match self.headers_since {
                Some(t) => t + self.header_timeout,
                None => self.last_progress + self.idle_timeout,
            }),
        }
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let Some(deadline) = self.deadline() else {
                return false;
            };
            if deadline <= tokio::time::Instant::now() {
                return true;
            }
            self.timer.as_mut().reset(deadline);
        }
    }

    fn progress(&mut self) {
        self.last_progress = tokio::time::Instant::now();
    }

    /// Follows the bytes the peer sent.
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match &mut self.protocol {
                Protocol::Http1 => return,
                Protocol::Detect(seen) => {
                    let want = H2_PREFACE.len() - seen.len();
                    let take = want.min(bytes.len());
                    seen.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if !H2_PREFACE.starts_with(seen) {
                        self.protocol = Protocol::Http1;
                        return;
                    }
                    if seen.len() == H2_PREFACE.len() {
                        self.protocol = Protocol::Http2 {
                            header: [0; 9],
                            have: 0,
                            frame: None,
                        };
                    }
                }
                Protocol::Http2 {
                    header,
                    have,
                    frame,
                } => match frame {
                    None => {
                        let take = (9 - *have).min(bytes.len());
                        header[*have..*have + take].copy_from_slice(&bytes[..take]);
                        *have += take;
                        bytes = &bytes[take..];
                        if *have == 9 {
                            let len = u32::from_be_bytes([0, header[0], header[1], header[2]]);
                            let (kind, flags) = (header[3], header[4]);
                            *have = 0;
                            *frame = Some((kind, flags, len));
                            if kind == H2_HEADERS && self.headers_since.is_none() {
                                // A header block begins: it must end within the header timeout.
                                self.headers_since = Some(tokio::time::Instant::now());
                            }
                            if len == 0 {
                                self.frame_done(kind, flags, 0);
                            }
                        }
                    }
                    Some((kind, flags, left)) => {
                        let take = (*left as usize).min(bytes.len());
                        *left -= take as u32;
                        bytes = &bytes[take..];
                        if *left == 0 {
                            let (kind, flags) = (*kind, *flags);
                            let len = take as u32;
                            self.frame_done(kind, flags, len);
                        }
                    }
                },
            }
        }
    }

    /// A whole frame has arrived.
    fn frame_done(&mut self, kind: u8, flags: u8, last_chunk: u32) {
        if let Protocol::Http2 { frame, .. } = &mut self.protocol {
            *frame = None;
        }
        match kind {
            H2_HEADERS | H2_CONTINUATION if flags & H2_END_HEADERS != 0 => {
                self.headers_since = None;
                self.progress();
            }
            H2_DATA if last_chunk > 0 => self.progress(),
            _ => {}
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FrameGuard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.feed(&buf.filled()[before..]);
                if this.expired(cx) {
                    return Poll::Ready(Err(timed_out()));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FrameGuard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
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
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected for FrameGuard<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}
