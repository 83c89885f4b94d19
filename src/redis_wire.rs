//! The connection umpire opens to Redis itself (TCP, or TLS for `rediss://`), with every reply
//! bounded as it arrives: the `redis` crate buffers a bulk string whole before anyone can look at
//! its length, so a hostile Redis (or anyone on the path to a plain `redis://`) announcing a huge
//! value and streaming it would be buffered without limit. This reader follows the RESP framing
//! byte by byte and fails the connection as soon as a declared length, a count, a line, the
//! nesting or a whole reply passes its bound, before the bytes are read.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bounds on what one reply may hold.
#[derive(Debug, Clone, Copy)]
pub struct ReplyBounds {
    /// A bulk string's declared length.
    pub max_bulk: u64,
    /// All bytes of one top-level reply.
    pub max_reply: u64,
    /// Elements of one array, set, map or push.
    pub max_count: u64,
    /// A header or simple-string line.
    pub max_line: usize,
    /// Nesting of aggregates.
    pub max_depth: usize,
}

#[derive(Debug)]
enum State {
    /// Reading a `<type><text>\r\n` line.
    Line(Vec<u8>),
    /// Skipping a bulk payload and its trailing CRLF.
    Body(u64),
}

/// RESP framing tracked on the bytes as they arrive.
#[derive(Debug)]
struct Framing {
    bounds: ReplyBounds,
    state: State,
    /// Elements still expected at each open aggregate.
    open: Vec<u64>,
    /// Bytes of the current top-level reply.
    reply_bytes: u64,
}

fn refuse(why: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("Redis reply refused: {why}"),
    )
}

impl Framing {
    fn new(bounds: ReplyBounds) -> Self {
        Self {
            bounds,
            state: State::Line(Vec::new()),
            open: Vec::new(),
            reply_bytes: 0,
        }
    }

    /// One element is complete: close the aggregates it completes.
    fn element_done(&mut self) {
        while let Some(left) = self.open.last_mut() {
            *left -= 1;
            if *left > 0 {
                return;
            }
            self.open.pop();
        }
        // The top-level reply is complete.
        self.reply_bytes = 0;
    }

    fn header(&mut self, line: &[u8]) -> io::Result<()> {
        let (kind, text) = line
            .split_first()
            .ok_or_else(|| refuse("an empty line".into()))?;
        let number = || -> io::Result<i64> {
            std::str::from_utf8(text)
                .ok()
                .and_then(|t| t.parse::<i64>().ok())
                .ok_or_else(|| {
                    refuse(format!(
                        "{:?} is not a length",
                        String::from_utf8_lossy(text)
                    ))
                })
        };
        match kind {
            b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => self.element_done(),
            b'$' | b'!' | b'=' => match number()? {
                -1 => self.element_done(),
                n if n < 0 => return Err(refuse(format!("a bulk length of {n}"))),
                n if n as u64 > self.bounds.max_bulk => {
                    return Err(refuse(format!(
                        "a value of {n} bytes announced, at most {} are read",
                        self.bounds.max_bulk
                    )));
                }
                n => self.state = State::Body(n as u64 + 2),
            },
            b'*' | b'~' | b'>' | b'%' => {
                let n = number()?;
                let elements = match (kind, n) {
                    (_, -1) => 0,
                    (_, n) if n < 0 => return Err(refuse(format!("a count of {n}"))),
                    (b'%', n) => (n as u64).saturating_mul(2),
                    (_, n) => n as u64,
                };
                if elements > self.bounds.max_count.saturating_mul(2)
                    || n as u64 > self.bounds.max_count
                {
                    return Err(refuse(format!(
                        "an aggregate of {n} elements, at most {}",
                        self.bounds.max_count
                    )));
                }
                if elements == 0 {
                    self.element_done();
                } else {
                    if self.open.len() >= self.bounds.max_depth {
                        return Err(refuse("aggregates nested too deep".into()));
                    }
                    self.open.push(elements);
                }
            }
            other => {
                return Err(refuse(format!("unknown type byte {:?}", *other as char)));
            }
        }
        Ok(())
    }

    /// Follows `bytes` (the next ones read from the connection).
    fn feed(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Body(left) => {
                    let n = (*left).min(bytes.len() as u64) as usize;
                    let rest = *left - n as u64;
                    *left = rest;
                    bytes = &bytes[n..];
                    self.count(n)?;
                    if rest == 0 {
                        self.state = State::Line(Vec::new());
                        self.element_done();
                    }
                }
                State::Line(line) => {
                    let end = bytes.iter().position(|b| *b == b'\n');
                    let take = end.map_or(bytes.len(), |i| i + 1);
                    line.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    let long = line.len() > self.bounds.max_line;
                    self.count(take)?;
                    let State::Line(line) = &mut self.state else {
                        continue;
                    };
                    if long {
                        return Err(refuse(format!(
                            "a line longer than {} bytes",
                            self.bounds.max_line
                        )));
                    }
                    if end.is_some() {
                        let mut done = std::mem::take(line);
                        done.pop();
                        if done.last() == Some(&b'\r') {
                            done.pop();
                        }
                        self.header(&done)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// `n` more bytes of the current reply, which is bounded as a whole too.
    fn count(&mut self, n: usize) -> io::Result<()> {
        self.reply_bytes = self.reply_bytes.saturating_add(n as u64);
        if self.reply_bytes > self.bounds.max_reply {
            return Err(refuse(format!(
                "a reply larger than {} bytes",
                self.bounds.max_reply
            )));
        }
        Ok(())
    }
}

/// Follows `chunks` as consecutive reads of one connection: the first refusal, if any (for the
/// fuzz target and tests; the connection itself uses [`Bounded`]).
pub fn follow<'a>(
    bounds: ReplyBounds,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> io::Result<()> {
    let mut framing = Framing::new(bounds);
    for chunk in chunks {
        framing.feed(chunk)?;
    }
    Ok(())
}

/// A stream whose read side is checked by [`Framing`]; writes pass through.
pub struct Bounded<S> {
    inner: S,
    framing: Framing,
}

impl<S> Bounded<S> {
    pub fn new(inner: S, bounds: ReplyBounds) -> Self {
        Self {
            inner,
            framing: Framing::new(bounds),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Bounded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let fresh = &buf.filled()[before..];
                this.framing.feed(fresh)?;
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Bounded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds() -> ReplyBounds {
        ReplyBounds {
            max_bulk: 100,
            max_reply: 300,
            max_count: 4,
            max_line: 32,
            max_depth: 3,
        }
    }

    fn feed_all(chunks: &[&[u8]]) -> io::Result<()> {
        let mut f = Framing::new(bounds());
        for c in chunks {
            f.feed(c)?;
        }
        Ok(())
    }

    #[test]
    fn ordinary_replies_pass_in_any_chunking() {
        let replies: &[&[u8]] = &[
            b"+OK\r\n",
            b"$5\r\nhello\r\n",
            b"$-1\r\n",
            b"*2\r\n$1\r\na\r\n:7\r\n",
            b"*0\r\n",
            b"-ERR wrong\r\n",
        ];
        let all: Vec<u8> = replies.concat();
        feed_all(&[&all]).unwrap();
        let bytes: Vec<&[u8]> = all.chunks(1).collect();
        feed_all(&bytes).unwrap();
        // Many replies in a row never add up to one.
        let many = b"$90\r\n"
            .iter()
            .chain(&[b'x'; 92])
            .copied()
            .collect::<Vec<_>>()
            .repeat(10);
        feed_all(&[&many]).unwrap();
    }

    #[test]
    fn a_declared_length_past_the_bound_is_refused_before_its_bytes() {
        let e = feed_all(&[b"$400000000\r\n"]).unwrap_err();
        assert!(e.to_string().contains("400000000"), "{e}");
        assert!(feed_all(&[b"*5\r\n"]).is_err());
        assert!(feed_all(&[b"*1\r\n*1\r\n*1\r\n*1\r\n"]).is_err());
        assert!(feed_all(&[&[b'+'; 40]]).is_err());
        assert!(feed_all(&[b"?x\r\n"]).is_err());
        assert!(feed_all(&[b"$-5\r\n"]).is_err());
        // Four bulks of 90 in one array: each within bounds, together past the reply's.
        let mut big = b"*4\r\n".to_vec();
        for _ in 0..4 {
            big.extend_from_slice(b"$90\r\n");
            big.extend_from_slice(&[b'x'; 90]);
            big.extend_from_slice(b"\r\n");
        }
        assert!(feed_all(&[&big]).is_err());
    }
}
