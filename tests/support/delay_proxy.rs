//! A TCP proxy that stands for a network between umpire and a registry: every chunk is delivered
//! half an RTT after it was read, in each direction, and nothing reaches the registry on a new
//! connection before one and a half RTT after it was opened (a TCP handshake's round trip, then
//! the first bytes' way). TLS passes through it untouched, so its handshakes cost what they do
//! on a real network. It counts the connections it accepted.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct DelayProxy {
    /// `127.0.0.1:PORT`, where it listens.
    pub addr: String,
    connections: Arc<AtomicUsize>,
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

/// When connections were accepted, and when the first bytes of any answer went back.
#[derive(Default)]
struct Seen {
    opened: Vec<Instant>,
    first_answer: Option<Instant>,
}

impl DelayProxy {
    /// A proxy to `upstream` (`host:port`) with round-trip time `rtt` (zero: counting only).
    pub async fn start(upstream: String, rtt: Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (counted, noted) = (Arc::clone(&connections), Arc::clone(&seen));
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let opened = Instant::now();
                counted.fetch_add(1, Ordering::Relaxed);
                noted.lock().unwrap().opened.push(opened);
                let noted = Arc::clone(&noted);
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let handshake = opened + rtt + rtt / 2;
                    tokio::spawn(pipe(cr, sw, rtt / 2, Some(handshake), None));
                    tokio::spawn(pipe(sr, cw, rtt / 2, None, Some(noted)));
                });
            }
        });
        Self {
            addr,
            connections,
            seen,
            task,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Connections accepted before the first bytes of any answer were delivered, and after.
    pub fn opened_before_and_after_the_first_answer(&self) -> (usize, usize) {
        let seen = self.seen.lock().unwrap();
        let before = match seen.first_answer {
            Some(first) => seen.opened.iter().filter(|at| **at < first).count(),
            None => seen.opened.len(),
        };
        (before, seen.opened.len() - before)
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, each chunk delivered `delay` after it was read and not before
/// `not_before`; notes in `answers` when the first chunk went out.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
    not_before: Option<Instant>,
    answers: Option<Arc<Mutex<Seen>>>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let mut at = Instant::now() + delay;
            if let Some(t) = not_before {
                at = at.max(t);
            }
            if tx.send((at, buf[..n].to_vec())).is_err() {
                break;
            }
        }
    });
    while let Some((at, bytes)) = rx.recv().await {
        tokio::time::sleep_until(at.into()).await;
        if let Some(seen) = &answers {
            seen.lock()
                .unwrap()
                .first_answer
                .get_or_insert_with(Instant::now);
        }
        if to.write_all(&bytes).await.is_err() {
            return;
        }
    }
    let _ = to.shutdown().await;
}
