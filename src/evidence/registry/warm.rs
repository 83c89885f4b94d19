//! Connections opened ahead of need. While a tag resolves on a registry umpire has not asked
//! lately, two `GET /v2/` pings open the connections that the evidence requests following it in
//! parallel will use: a fresh process or an idle pool then pays its handshakes side by side with
//! the tag's, not after it. A registry that answered over HTTP/2 needs none (one connection
//! carries every request).

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
const PING_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// (none is waited for: without a free place, no ping), and are counted in the metrics.
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
