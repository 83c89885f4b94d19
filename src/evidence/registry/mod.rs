//! An OCI distribution registry as an evidence source, over HTTPS (plain HTTP only for hosts
//! configured `insecure`). A thin client of umpire's own on reqwest, rather than oci-client's pull
//! paths, because three guarantees live here: every body is read with a size cap (oci-client reads
//! manifests unbounded), bytes are hashed and compared whatever `Docker-Content-Digest` claims, and
//! credentials go only to the registry's own host or its `auth_hosts` (oci-client sends them to any
//! token realm a registry names).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};

use super::auth::Credentials;
use super::manifest::{self, Manifest};
use super::{FetchError, ManifestRef, Source};
use crate::digest::Digest;
use crate::metrics::Metrics;
use crate::reference::{DOCKER_HUB, RegistryRef};

mod challenge;
mod http;
mod source;
mod warm;

pub use http::INSECURE_HINT;
use http::{check_status, read_bounded, same_origin, unavailable};
pub use source::RegistrySource;

use super::keyring::Access;

/// Where umpire's own credential for a registry comes from when the configuration names one
/// outside the Docker config (`registries[].credentials: {secret: ...}`).
#[async_trait::async_trait]
pub trait ConfiguredCredentials: Send + Sync {
    /// `None`: the configuration names none for `registry`; `Err((why, transient))`: it names
    /// one that cannot be read.
    async fn credential(
        &self,
        registry: &str,
    ) -> Option<Result<super::auth::Credential, (String, bool)>>;
}

/// Per-registry settings (`registries[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistrySettings {
    /// Plain HTTP. Only for hosts listed with `insecure: true`.
    pub insecure: bool,
    /// Other hosts that may receive this registry's credentials in a token exchange.
    pub auth_hosts: Vec<String>,
    /// `tls_ca`: DER certificates that are this host's only trust anchors for HTTPS (the
    /// system's roots are not used for it); `None`: the system's.
    pub tls_ca: Option<Vec<Vec<u8>>>,
}

/// A registry's answer, holding its place among the outbound requests until its body has been
/// read (or it is dropped): the ceiling bounds open connections, not only requests being sent.
pub(crate) struct Answer {
    response: reqwest::Response,
    _place: tokio::sync::OwnedSemaphorePermit,
}

impl std::ops::Deref for Answer {
    type Target = reqwest::Response;

    fn deref(&self) -> &reqwest::Response {
        &self.response
    }
}

impl std::ops::DerefMut for Answer {
    fn deref_mut(&mut self) -> &mut reqwest::Response {
        &mut self.response
    }
}

/// Retries of a transient failure, and the first back-off (then ×4).
const RETRIES: usize = 2;
const RETRY_BACKOFF: Duration = Duration::from_millis(50);
/// Consecutive transient failures that open a registry's circuit, and for how long.
const BREAKER_THRESHOLD: u32 = 5;
const BREAKER_COOLDOWN: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
}

/// Held while one fetch authenticates for a (registry, repository); the others wait for its token.
type AuthLock = Arc<tokio::sync::Mutex<()>>;

/// Entries kept per map of per-host (or per-repository) state, and how long an idle one lives:
/// hosts are chosen by whoever submits images, so these maps are bounded and expire.
const MAX_HOST_ENTRIES: usize = 4096;
const TOKEN_TTL: Duration = Duration::from_secs(240);
/// How long a registry without a referrers API is not asked for it again.
const NO_REFERRERS_API_TTL: Duration = Duration::from_secs(600);

/// Token responses larger than this are refused.
const MAX_TOKEN_RESPONSE_BYTES: u64 = 64 * 1024;
const MAX_REDIRECTS: usize = 5;

/// Shared HTTP state for all registries: connection pool, settings, credentials and tokens.
pub struct RegistryClient {
    http: reqwest::Client,
    /// Clients of the hosts configured with `tls_ca`, trusting those CAs alone.
    pinned: HashMap<String, reqwest::Client>,
    settings: HashMap<String, RegistrySettings>,
    credentials: Credentials,
    /// Credentials the configuration names per registry and that live elsewhere (Kubernetes
    /// secrets), looked up when a registry challenges.
    configured: Option<Arc<dyn ConfiguredCredentials>>,
    /// `Authorization` header values by (registry, repository), with when they were stored.
    tokens: Mutex<HashMap<(String, String), (String, Instant)>>,
    /// Authentications in progress, one per (registry, repository).
    auth_locks: Mutex<HashMap<(String, String), AuthLock>>,
    breakers: Mutex<HashMap<String, Breaker>>,
    /// Requests to registries in flight at once, across every verification.
    outbound: Arc<tokio::sync::Semaphore>,
    /// Pings opening connections ahead of need in flight at once (`warm.rs`).
    pings: Arc<tokio::sync::Semaphore>,
    /// Registries whose referrers API answered 404 (unsupported, per the distribution spec), until
    /// when: the fallback tag alone is read meanwhile.
    no_referrers_api: Mutex<HashMap<String, Instant>>,
    /// Hosts the configuration names: metrics label these by name, every other host as `other`
    /// (whoever submits images chooses hosts; series must stay bounded).
    known_hosts: std::collections::HashSet<String>,
    /// When each registry last answered, and whether over HTTP/2 (`warm.rs`).
    contacts: Mutex<HashMap<String, warm::Contact>>,
    metrics: Arc<Metrics>,
}

impl RegistryClient {
    pub fn new(
        settings: HashMap<String, RegistrySettings>,
        credentials: Credentials,
        connect_timeout: Duration,
        max_outbound: usize,
        known_hosts: std::collections::HashSet<String>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        // Redirects are followed here, not by reqwest: its follower compares each hop with the
        // previous one only, so registry -> E -> E would hand E the registry's credentials.
        // HTTP/2 is offered over TLS (ALPN), so one verification's parallel requests share a
        // connection where the registry speaks it.
        let client = |roots: Option<&[Vec<u8>]>| -> anyhow::Result<reqwest::Client> {
            let mut builder = reqwest::Client::builder()
                .user_agent(concat!("umpire/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(connect_timeout)
                .redirect(reqwest::redirect::Policy::none());
            if let Some(roots) = roots {
                let roots = roots
                    .iter()
                    .map(|der| reqwest::Certificate::from_der(der))
                    .collect::<Result<Vec<_>, _>>()?;
                builder = builder.tls_certs_only(roots);
            }
            Ok(builder.build()?)
        };
        let mut pinned = HashMap::new();
        for (host, s) in &settings {
            if let Some(roots) = &s.tls_ca {
                pinned.insert(host.clone(), client(Some(roots))?);
            }
        }
        Ok(Self {
            http: client(None)?,
            pinned,
            settings,
            credentials,
            configured: None,
            tokens: Mutex::new(HashMap::new()),
            auth_locks: Mutex::new(HashMap::new()),
            breakers: Mutex::new(HashMap::new()),
            outbound: Arc::new(tokio::sync::Semaphore::new(max_outbound.max(1))),
            pings: Arc::new(tokio::sync::Semaphore::new(warm::MAX_PINGS_IN_FLIGHT)),
            no_referrers_api: Mutex::new(HashMap::new()),
            known_hosts,
            contacts: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// With credentials the configuration names per registry outside the Docker config.
    pub fn with_configured(mut self, configured: Arc<dyn ConfiguredCredentials>) -> Self {
        self.configured = Some(configured);
        self
    }

    pub fn source(self: &Arc<Self>, r: &RegistryRef) -> RegistrySource {
        self.source_with(r, Access::Own)
    }

    /// A repository whose requests go with `access` (a workload's credential, or umpire's own).
    pub fn source_with(self: &Arc<Self>, r: &RegistryRef, access: Access) -> RegistrySource {
        RegistrySource {
            client: Arc::clone(self),
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            access,
        }
    }

    fn referrers_api_missing(&self, registry: &str) -> bool {
        let known = self
            .no_referrers_api
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        known
            .get(registry)
            .is_some_and(|until| Instant::now() < *until)
    }

    fn remember_no_referrers_api(&self, registry: &str) {
        let mut known = self
            .no_referrers_api
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if known.len() >= MAX_HOST_ENTRIES {
            known.retain(|_, until| now < *until);
            if known.len() >= MAX_HOST_ENTRIES {
                return;
            }
        }
        known.insert(registry.to_owned(), now + NO_REFERRERS_API_TTL);
    }

    fn host_label<'a>(&self, registry: &'a str) -> &'a str {
        if self.known_hosts.contains(registry) {
            registry
        } else {
            "other"
        }
    }

    /// The client for a request to `url`: its host's own when that host is configured with
    /// `tls_ca` (whichever registry's request led there), else the one on the system's roots.
    fn http_for(&self, url: &Url) -> &reqwest::Client {
        if self.pinned.is_empty() {
            return &self.http;
        }
        let authority = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => return &self.http,
        };
        crate::reference::canonical_host(&authority)
            .ok()
            .and_then(|host| self.pinned.get(&host))
            .unwrap_or(&self.http)
    }

    fn insecure(&self, host: &str) -> bool {
        self.settings.get(host).is_some_and(|s| s.insecure)
    }

    fn api_base(&self, registry: &str) -> String {
        let host = if registry == DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            registry
        };
        let scheme = if self.insecure(registry) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{host}")
    }

    fn cached_auth(&self, registry: &str, repository: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens
            .get(&(registry.to_owned(), repository.to_owned()))
            .filter(|(_, at)| at.elapsed() < TOKEN_TTL)
            .map(|(value, _)| value.clone())
    }

    fn store_auth(&self, registry: &str, repository: &str, value: String) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if tokens.len() >= MAX_HOST_ENTRIES {
            tokens.retain(|_, (_, at)| at.elapsed() < TOKEN_TTL);
            if tokens.len() >= MAX_HOST_ENTRIES {
                tokens.clear();
            }
        }
        tokens.insert(
            (registry.to_owned(), repository.to_owned()),
            (value, Instant::now()),
        );
    }

    fn auth_lock(&self, registry: &str, repository: &str) -> AuthLock {
        let mut locks = self.auth_locks.lock().unwrap_or_else(|p| p.into_inner());
        if locks.len() >= MAX_HOST_ENTRIES {
            // Only locks nobody holds or waits for go.
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        Arc::clone(
            locks
                .entry((registry.to_owned(), repository.to_owned()))
                .or_default(),
        )
    }

    /// Sends one request, counting it by host and status.
    async fn send(
        &self,
        registry: &str,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<Answer, FetchError> {
        // A global ceiling on outbound requests; waiting for a place counts against the
        // verification's deadline like the request itself.
        let place = Arc::clone(&self.outbound)
            .acquire_owned()
            .await
            .map_err(|_| FetchError::Unavailable {
                what: what.to_owned(),
                detail: "umpire is shutting down".into(),
            })?;
        match request.send().await {
            Ok(r) => {
                self.metrics
                    .registry_request(self.host_label(registry), r.status().as_str());
                self.contacted(registry, r.version());
                Ok(Answer {
                    response: r,
                    _place: place,
                })
            }
            Err(e) => {
                self.metrics
                    .registry_request(self.host_label(registry), "error");
                Err(unavailable(what, &e))
            }
        }
    }

    /// GET `/v2/<repository>/<path>`, authenticating once on a 401 challenge.
    /// GET with retries on transient failures (reads are idempotent), behind the registry's
    /// circuit breaker.
    async fn get(
        &self,
        registry: &str,
        repository: &str,
        access: &Access,
        path: &str,
        accept: Option<&str>,
        what: &str,
    ) -> Result<Answer, FetchError> {
        if let Some(refused) = access.refusal(what) {
            return Err(refused);
        }
        for attempt in 0..=RETRIES {
            self.breaker_admits(registry, what)?;
            let result = self
                .get_once(registry, repository, access, path, accept, what)
                .await
                .map_err(|e| access.explain(e));
            self.breaker_records(registry, &result);
            match result {
                Err(FetchError::Unavailable { .. }) if attempt < RETRIES => {
                    tokio::time::sleep(RETRY_BACKOFF * 4u32.pow(attempt as u32)).await;
                }
                other => return other,
            }
        }
        unreachable!("the last attempt returns")
    }

    fn breaker_admits(&self, registry: &str, what: &str) -> Result<(), FetchError> {
        let breakers = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        match breakers.get(registry).and_then(|b| b.open_until) {
            Some(until) if Instant::now() < until => Err(FetchError::Unavailable {
                what: what.to_owned(),
                detail: format!(
                    "{registry} failed {BREAKER_THRESHOLD} times in a row; not asking it again for {:?}",
                    until.saturating_duration_since(Instant::now())
                ),
            }),
            _ => Ok(()),
        }
    }

    fn breaker_records(&self, registry: &str, result: &Result<Answer, FetchError>) {
        let mut breakers = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        if breakers.len() >= MAX_HOST_ENTRIES && !breakers.contains_key(registry) {
            // Closed circuits carry nothing worth keeping; open ones stay until they close.
            let now = Instant::now();
            breakers.retain(|_, b| b.open_until.is_some_and(|until| now < until));
            if breakers.len() >= MAX_HOST_ENTRIES {
                return;
            }
        }
        let b = breakers.entry(registry.to_owned()).or_default();
        match result {
            Err(FetchError::Unavailable { .. }) => {
                b.failures += 1;
                if b.failures >= BREAKER_THRESHOLD {
                    b.open_until = Some(Instant::now() + BREAKER_COOLDOWN);
                    b.failures = 0;
                    tracing::warn!(
                        registry,
                        "circuit open for {BREAKER_COOLDOWN:?} after repeated failures"
                    );
                }
            }
            _ => {
                b.failures = 0;
                b.open_until = None;
            }
        }
    }

    async fn get_once(
        &self,
        registry: &str,
        repository: &str,
        access: &Access,
        path: &str,
        accept: Option<&str>,
        what: &str,
    ) -> Result<Answer, FetchError> {
        let base = self.api_base(registry);
        let url = Url::parse(&format!("{base}/v2/{repository}/{path}")).map_err(|e| {
            FetchError::Protocol {
                what: what.to_owned(),
                detail: format!("cannot build a URL for {registry}/{repository}: {e}"),
            }
        })?;
        // Tokens are kept per credential: one workload's never serves another's requests.
        let token_key = match access.scope() {
            Some(id) => format!("{repository}#credential={id}"),
            None => repository.to_owned(),
        };
        for attempt in 0..2 {
            let sent = self.cached_auth(registry, &token_key);
            let auth = sent.clone().map(|value| (url.clone(), value));
            let response = self
                .follow(registry, url.clone(), accept, auth, what)
                .await?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && attempt == 0 {
                let challenge = response
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned);
                let Some(challenge) = challenge else {
                    return Err(FetchError::AccessDenied {
                        what: what.to_owned(),
                        status: 401,
                    });
                };
                // Its outbound place goes back before the token request needs one: fetches
                // waiting on authentication must not hold every place.
                drop(response);
                // One authentication per (registry, repository) at a time: concurrent fetches
                // that met the same challenge wait for it and use its token.
                let lock = self.auth_lock(registry, &token_key);
                let _turn = lock.lock().await;
                if self.cached_auth(registry, &token_key) == sent {
                    let key = (repository, token_key.as_str());
                    self.authenticate(registry, key, access, &challenge, what)
                        .await?;
                }
                continue;
            }
            return check_status(response, what);
        }
        Err(FetchError::AccessDenied {
            what: what.to_owned(),
            status: 401,
        })
    }

    /// GETs `url`, following redirects itself: at most `MAX_REDIRECTS` hops, never from HTTPS to
    /// plain HTTP, and `Authorization` only on a hop whose scheme, host and port equal those of
    /// the URL the credential was issued for (`auth`'s first element).
    async fn follow(
        &self,
        registry: &str,
        url: Url,
        accept: Option<&str>,
        auth: Option<(Url, String)>,
        what: &str,
    ) -> Result<Answer, FetchError> {
        let mut url = url;
        for _hop in 0..=MAX_REDIRECTS {
            let mut request = self.http_for(&url).get(url.clone());
            if let Some(a) = accept {
                request = request.header(ACCEPT, a);
            }
            if let Some((home, value)) = &auth
                && same_origin(home, &url)
            {
                request = request.header(AUTHORIZATION, value);
            }
            let response = self.send(registry, request, what).await?;
            if !response.status().is_redirection() {
                return Ok(response);
            }
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|h| h.to_str().ok())
                .ok_or_else(|| FetchError::Protocol {
                    what: what.to_owned(),
                    detail: format!(
                        "the registry answered HTTP {} without a Location",
                        response.status()
                    ),
                })?;
            let next = url.join(location).map_err(|e| FetchError::Protocol {
                what: what.to_owned(),
                detail: format!("redirect to an unreadable Location {location:?}: {e}"),
            })?;
            if next.scheme() != "https" && next.scheme() != "http" {
                return Err(FetchError::Protocol {
                    what: what.to_owned(),
                    detail: format!("redirect to a {} URL refused", next.scheme()),
                });
            }
            if url.scheme() == "https" && next.scheme() != "https" {
                return Err(FetchError::Protocol {
                    what: what.to_owned(),
                    detail: "redirect from HTTPS to plain HTTP refused".into(),
                });
            }
            url = next;
        }
        Err(FetchError::Protocol {
            what: what.to_owned(),
            detail: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }
}
