//! Connections opened ahead of need. While a tag resolves on a registry umpire has not asked
//! lately, two `GET /v2/` pings open the connections that the evidence requests following it in
//! parallel will use: a fresh process or an idle pool then pays its handshakes side by side with
//! the tag's, not after it. A registry that answered over HTTP/2 needs none (one connection
//! carries every request). Pings outlive the verification that sent them, so they are bounded on
//! their own: a few in flight across every registry, each for a few seconds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Url;

use super::{Answer, MAX_HOST_ENTRIES, RegistryClient, read_bounded};

/// The evidence requests that follow a tag in parallel (its signature tag and referrers fallback
/// tag, an attestation tag), less the connection the tag itself leaves idle.
const PREWARM_CONNECTIONS: usize = 2;
/// A registry answered within this long still has connections in the pool (reqwest keeps idle
/// ones for 90 s).
const POOL_WARM_FOR: Duration = Duration::from_secs(60);
/// A ping's answer is read (so that its connection goes back to the pool) up to this size.
const MAX_PING_BYTES: u64 = 4096;
/// A ping is of use only while the tag beside it resolves; whoever submits images chooses the
/// hosts, so a stalling one holds a ping's places this long at most.
const PING_TIMEOUT: Duration = Duration::from_secs(3);
/// Pings in flight at once across every registry: however many tags on cold or stalling hosts
/// arrive, pings take at most this many of the outbound places real requests need.
pub(super) const MAX_PINGS_IN_FLIGHT: usize = 8;

/// When umpire last heard from a registry, and over which protocol.
#[derive(Clone, Copy)]
pub(super) struct Contact {
    at: Instant,
    http2: bool,
}

impl RegistryClient {
    /// Notes an answer from `registry`.
    pub(super) fn contacted(&self, registry: &str, version: reqwest::Version) {
        let mut contacts = self.contacts.lock().unwrap_or_else(|p| p.into_inner());
        let http2 = version == reqwest::Version::HTTP_2;
        note(&mut contacts, registry, http2);
    }

    /// Opens connections to `registry` beside a request about to be sent, unless its pool is
    /// warm or it speaks HTTP/2. Pings take places among the outbound requests like any other
    /// and one of `MAX_PINGS_IN_FLIGHT` (none is waited for: without both, no ping), and are
    /// counted in the metrics.
    pub(super) fn prewarm(self: &Arc<Self>, registry: &str) {
        // A registry whose circuit is open gets no requests, pings included.
        if self.breaker_admits(registry, "ping").is_err() {
            return;
        }
        {
            let mut contacts = self.contacts.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            match contacts.get(registry) {
                Some(c) if c.http2 || now.duration_since(c.at) < POOL_WARM_FOR => return,
                _ => {}
            }
            // Counted as a contact now: concurrent tags on the same cold registry ping once.
            note(&mut contacts, registry, false);
        }
        let Ok(url) = Url::parse(&format!("{}/v2/", self.api_base(registry))) else {
            return;
        };
        for _ in 0..PREWARM_CONNECTIONS {
            let Ok(ping_slot) = Arc::clone(&self.pings).try_acquire_owned() else {
                return;
            };
            let Ok(place) = Arc::clone(&self.outbound).try_acquire_owned() else {
                return;
            };
            let (client, url, registry) = (Arc::clone(self), url.clone(), registry.to_owned());
            tokio::spawn(async move {
                let ping = client.http_for(&url).get(url.clone()).timeout(PING_TIMEOUT);
                let label = client.host_label(&registry);
                match ping.send().await {
                    Ok(response) => {
                        client
                            .metrics
                            .registry_request(label, response.status().as_str());
                        let answer = Answer {
                            response,
                            _place: place,
                        };
                        let _ = read_bounded(answer, MAX_PING_BYTES, "ping").await;
                    }
                    Err(_) => client.metrics.registry_request(label, "error"),
                }
                drop(ping_slot);
            });
        }
    }
}

/// Records a contact with `registry` now; the map holds at most `MAX_HOST_ENTRIES` hosts (stale
/// ones go first; when all are fresh, the new host is not recorded and is simply warmed again).
fn note(contacts: &mut HashMap<String, Contact>, registry: &str, http2: bool) {
    let now = Instant::now();
    if let Some(c) = contacts.get_mut(registry) {
        *c = Contact { at: now, http2 };
        return;
    }
    if contacts.len() >= MAX_HOST_ENTRIES {
        contacts.retain(|_, c| now.duration_since(c.at) < POOL_WARM_FOR);
        if contacts.len() >= MAX_HOST_ENTRIES {
            return;
        }
    }
    contacts.insert(registry.to_owned(), Contact { at: now, http2 });
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::evidence::registry::RegistrySettings;

    #[tokio::test]
    async fn tags_on_many_stalling_hosts_hold_at_most_the_pings_ceiling() {
        // Six registries that accept connections and never answer: six cold tags would send
        // twelve pings; the ceiling lets eight through, and nothing more while they stall.
        let accepted = Arc::new(AtomicUsize::new(0));
        let mut settings = HashMap::new();
        let mut held = Vec::new();
        for _ in 0..6 {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let host = listener.local_addr().unwrap().to_string();
            settings.insert(
                host.clone(),
                RegistrySettings {
                    insecure: true,
                    ..Default::default()
                },
            );
            held.push(host);
            let counted = Arc::clone(&accepted);
            tokio::spawn(async move {
                let mut open = Vec::new();
                while let Ok((connection, _)) = listener.accept().await {
                    counted.fetch_add(1, Ordering::SeqCst);
                    open.push(connection);
                }
            });
        }
        let client = Arc::new(
            RegistryClient::new(
                settings,
                crate::evidence::auth::Credentials::default(),
                Duration::from_secs(1),
                64,
                std::collections::HashSet::new(),
                Arc::new(crate::metrics::Metrics::new()),
            )
            .unwrap(),
        );
        for host in &held {
            client.prewarm(host);
        }
        let waited = Instant::now();
        while accepted.load(Ordering::SeqCst) < MAX_PINGS_IN_FLIGHT
            && waited.elapsed() < Duration::from_secs(2)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(accepted.load(Ordering::SeqCst), MAX_PINGS_IN_FLIGHT);
        assert_eq!(client.pings.available_permits(), 0);
    }
}
