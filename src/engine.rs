//! The engine: for each request, choose the policies, answer from the verdict cache when it can,
//! otherwise resolve the image to a digest, gather the evidence once, run the pure verification
//! steps, evaluate the policies and build (and cache) the verdict. Concurrent identical questions
//! share one resolution and one verification. It is the only module that calls both `evidence` and
//! `verify`. Every error path ends in a denial.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;

use crate::cache::{VerdictCache, verdict_key};
use crate::coalesce::Coalescer;
use crate::config::{Config, DefaultAction};
use crate::digest::Digest;
use crate::evidence::auth::Credentials;
use crate::evidence::discovery::{self, EvidenceBudget, Needs};
use crate::evidence::layout::LayoutSource;
use crate::evidence::registry::RegistryClient;
use crate::evidence::{Manifest, ManifestKind, ManifestRef, Source};
use crate::metrics::{Metrics, VerdictLabels};
use crate::policy::{self, Policy};
use crate::reference::{ImageRef, ReferenceError};
use crate::verdict::{Code, Finding, Verdict};
use crate::verify::attestation::{self, AttestationLayer, AttestationOutcome};
use crate::verify::keys::PublicKey;
use crate::verify::signature::{self, SignatureLayer, SignatureOutcome, Trust};
use crate::verify::sigstore::SigstoreRoot;

/// A request that cannot be answered with a verdict: the caller's mistake (gRPC INVALID_ARGUMENT).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    UnknownPolicy(#[from] policy::UnknownPolicy),
    #[error("request {index}: {error}")]
    InBatch {
        index: usize,
        error: Box<RequestError>,
    },
}

/// How one call wants its answer.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Skip cache lookups for this call (it still shares a run in flight); the fresh verdict is
    /// still cached.
    pub bypass_cache: bool,
    /// The caller's own deadline (a gRPC deadline), on top of the configured one.
    pub deadline: Option<Instant>,
    /// The Kubernetes namespace asking, for policies scoped by `namespaces`.
    pub namespace: Option<String>,
    /// Places among the images being verified (`limits.max_in_flight`): a verification takes one
    /// when it starts, and an image that finds none is answered with a retryable denial marked
    /// `shed` (cached answers take none). `None`: unbounded (one-shot commands, tests).
    pub places: Option<Places>,
}

/// Places among the images being verified at once (`limits.max_in_flight`), shared by every
/// surface, taken one per image as its verification starts and never waited for (load shedding).
#[derive(Debug, Clone)]
pub struct Places {
    semaphore: Arc<tokio::sync::Semaphore>,
    max: usize,
}

impl Places {
    pub fn new(max: usize) -> Self {
        Self {
            semaphore: Arc::new(tokio::sync::Semaphore::new(max)),
            max,
        }
    }

    /// A place, or `None` at once.
    pub fn take(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        Arc::clone(&self.semaphore).try_acquire_owned().ok()
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

/// The answer for an image that found no place: retryable, never cached.
fn shed(image: &str, max: usize) -> Verdict {
    let mut v = Verdict::deny(
        image,
        vec![Finding::new(
            Code::LimitExceeded,
            format!(
                "not judged: umpire is verifying its limit of {max} images at once (limits.max_in_flight); retry with back-off"
            ),
        )],
    )
    .retryable();
    v.shed = true;
    v
}

/// What outlives a configuration reload: caches, in-flight work, metrics.
pub struct Shared {
    pub cache: Arc<VerdictCache>,
    pub metrics: Arc<Metrics>,
    resolutions: Coalescer<(String, String), Result<Arc<Resolved>, Box<Verdict>>>,
    judgments: Coalescer<String, Verdict>,
}

impl Shared {
    pub fn new(cache: Arc<VerdictCache>, metrics: Arc<Metrics>) -> Self {
        Self {
            cache,
            metrics,
            resolutions: Coalescer::default(),
            judgments: Coalescer::default(),
        }
    }
}

pub struct Engine {
    config: Arc<Config>,
    registry: Arc<RegistryClient>,
    keys: Vec<(String, Arc<PublicKey>)>,
    roots: Vec<Arc<SigstoreRoot>>,
    offline: Arc<SigstoreRoot>,
    shared: Arc<Shared>,
    /// Where every image is read from instead of its registry (tests: an in-memory source).
    source_override: Option<Arc<dyn Source>>,
    /// Some authority requires keyed signatures to be logged: find out where they are.
    keyed_log_checks: bool,
    /// Requests by digest already seen → their verdict cache key, so that a cached answer skips
    /// parsing, policy selection and key hashing. Exact for one configuration (one engine):
    /// the key depends only on the request and the configuration.
    request_keys: moka::sync::Cache<String, Arc<str>>,
    /// `umpire_verdicts_total{verdict="allowed",code="SATISFIED",policy=P}` for each configured
    /// policy, looked up once: the series every cached allow touches.
    satisfied: HashMap<String, prometheus_client::metrics::counter::Counter>,
}

/// A parsed request with the policies (indices into the config) that apply to it.
struct Prepared {
    input: String,
    image: ImageRef,
    policies: Vec<usize>,
    named: bool,
    /// The request's entry in `request_keys`, for references by digest.
    request_key: Option<String>,
}

/// A request as `request_keys` knows it.
fn request_key(image: &str, policy: Option<&str>, namespace: Option<&str>) -> String {
    let (policy, namespace) = (policy.unwrap_or(""), namespace.unwrap_or(""));
    let mut key = String::with_capacity(image.len() + policy.len() + namespace.len() + 2);
    for part in [image, policy, namespace] {
        key.push_str(part);
        key.push('\0');
    }
    key
}

/// What an index's child records are keyed by besides the child's digest: the same things its
/// verdict is keyed by.
#[derive(Clone)]
struct ChildScope {
    source: String,
    fingerprints: Vec<[u8; 32]>,
}

/// Children of one allowed index recorded for the registry gate; an index listing more has the
/// rest verified on their own (denied unless signed themselves).
const MAX_RECORDED_CHILDREN: usize = 1024;

/// An image resolved to the manifest a verdict will hold for.
pub struct Resolved {
    manifest: Manifest,
}

impl Engine {
    pub fn new(
        config: Config,
        credentials: Credentials,
        shared: Arc<Shared>,
    ) -> anyhow::Result<Self> {
        // Hosts the configuration names: registries, literal hosts of policy globs, the gate's.
        let mut known_hosts: std::collections::HashSet<String> =
            config.registries.keys().cloned().collect();
        for policy in &config.policies {
            for glob in &policy.images {
                let first = glob.as_str().split('/').next().unwrap_or_default();
                if glob.as_str().contains('/')
                    && !first.contains(['*', '?'])
                    && !first.starts_with("oci:")
                {
                    known_hosts.insert(first.to_owned());
                }
            }
        }
        if let Some(gate) = &config.ext_authz {
            known_hosts.insert(gate.upstream.clone());
        }
        let registry = RegistryClient::new(
            config.registries.clone(),
            credentials,
            config.limits.connect_timeout,
            config.limits.max_registry_requests,
            known_hosts,
            Arc::clone(&shared.metrics),
        )?;
        let keys = config
            .keys
            .iter()
            .map(|(n, k)| (n.clone(), Arc::clone(k)))
            .collect();
        let roots = config.sigstore.values().cloned().collect();
        let keyed_log_checks = config.policies.iter().any(|p| {
            p.signatures
                .iter()
                .flat_map(|s| s.authorities.iter())
                .chain(p.attestations.iter().flat_map(|a| a.authorities.iter()))
                .any(|a| {
                    matches!(
                        a,
                        policy::Authority::Key {
                            logged_in: Some(_),
                            ..
                        }
                    )
                })
        });
        let request_keys = moka::sync::Cache::new(config.cache.max_entries);
        let offline = Arc::clone(&config.offline_root);
        let satisfied = config
            .policies
            .iter()
            .map(|p| {
                let counter = shared
                    .metrics
                    .verdicts
                    .get_or_create(&VerdictLabels {
                        verdict: "allowed",
                        code: Code::Satisfied.as_str(),
                        policy: p.name.clone(),
                    })
                    .clone();
                (p.name.clone(), counter)
            })
            .collect();
        Ok(Self {
            satisfied,
            config: Arc::new(config),
            registry: Arc::new(registry),
            keys,
            roots,
            offline,
            shared,
            source_override: None,
            keyed_log_checks,
            request_keys,
        })
    }

    /// A standalone engine that reads every image, whatever its registry, from `source`: the
    /// engine's own tests run on an in-memory source, without a registry.
    pub fn with_source(config: Config, source: Arc<dyn Source>) -> anyhow::Result<Arc<Self>> {
        let metrics = Arc::new(Metrics::new());
        let cache = Arc::new(VerdictCache::new(
            config.cache.clone(),
            Arc::clone(&metrics),
        ));
        let mut engine = Self::new(
            config,
            Credentials::default(),
            Arc::new(Shared::new(cache, metrics)),
        )?;
        engine.source_override = Some(source);
        Ok(Arc::new(engine))
    }

    /// An engine with caches of its own (for `umpire verify` and tests).
    pub fn standalone(config: Config, credentials: Credentials) -> anyhow::Result<Arc<Self>> {
        let metrics = Arc::new(Metrics::new());
        let cache = Arc::new(VerdictCache::new(
            config.cache.clone(),
            Arc::clone(&metrics),
        ));
        Ok(Arc::new(Self::new(
            config,
            credentials,
            Arc::new(Shared::new(cache, metrics)),
        )?))
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Verifies one image. `policy` names a configured policy, or `None` for every matching one.
    pub async fn verify(
        self: &Arc<Self>,
        image: &str,
        policy: Option<&str>,
    ) -> Result<Verdict, RequestError> {
        self.verify_with(image, policy, Options::default()).await
    }

    pub async fn verify_with(
        self: &Arc<Self>,
        image: &str,
        policy: Option<&str>,
        options: Options,
    ) -> Result<Verdict, RequestError> {
        // One image: no batch around it (the cached answer is the hot path).
        if !options.bypass_cache {
            let started = Instant::now();
            let known = self.request_keys.get(&request_key(
                image,
                policy.filter(|p| !p.is_empty()),
                options.namespace.as_deref().filter(|n| !n.is_empty()),
            ));
            if let Some(key) = known
                && let Some(hit) = self.shared.cache.get(&key).await
            {
                let verdict = Verdict {
                    cached: true,
                    ..hit
                }
                .for_image(image);
                self.record(&verdict, started);
                return Ok(verdict);
            }
        }
        let prepared = self.prepare(image, policy, options.namespace.as_deref())?;
        Ok(self.answer(prepared, options).await)
    }

    pub async fn verify_batch(
        self: &Arc<Self>,
        requests: &[(String, Option<String>)],
    ) -> Result<Vec<Verdict>, RequestError> {
        self.verify_batch_with(requests, Options::default()).await
    }

    /// Verifies several images; verdicts in request order. Identical questions in a batch (or from
    /// concurrent callers) share one resolution and one verification. Any malformed request fails
    /// the whole batch.
    pub async fn verify_batch_with(
        self: &Arc<Self>,
        requests: &[(String, Option<String>)],
        options: Options,
    ) -> Result<Vec<Verdict>, RequestError> {
        self.verify_batch_each(requests, &vec![options; requests.len()])
            .await
    }

    /// Like [`Engine::verify_batch_with`], with each request's own options (`bypass_cache`,
    /// namespace); `options[i]` goes with `requests[i]`.
    pub async fn verify_batch_each(
        self: &Arc<Self>,
        requests: &[(String, Option<String>)],
        options: &[Options],
    ) -> Result<Vec<Verdict>, RequestError> {
        let prepared = requests
            .iter()
            .enumerate()
            .map(|(index, (image, policy))| {
                let namespace = options.get(index).and_then(|o| o.namespace.as_deref());
                self.prepare(image, policy.as_deref(), namespace)
                    .map_err(|e| RequestError::InBatch {
                        index,
                        error: Box::new(e),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // The same question twice in a batch is answered once (and takes one place).
        let mut first_of: HashMap<(String, Option<String>, Option<String>, bool), usize> =
            HashMap::new();
        let mut unique = Vec::new();
        let mut slot = Vec::with_capacity(prepared.len());
        for (i, p) in prepared.into_iter().enumerate() {
            let o = options.get(i).cloned().unwrap_or_default();
            let question = (
                requests[i].0.clone(),
                requests[i].1.clone(),
                o.namespace.clone(),
                o.bypass_cache,
            );
            let next = unique.len();
            let at = *first_of.entry(question).or_insert(next);
            if at == next {
                unique.push((p, o));
            }
            slot.push(at);
        }
        let answers = join_all(unique.into_iter().map(|(p, o)| self.answer(p, o))).await;
        Ok(slot.into_iter().map(|at| answers[at].clone()).collect())
    }

    fn prepare(
        &self,
        image: &str,
        policy: Option<&str>,
        namespace: Option<&str>,
    ) -> Result<Prepared, RequestError> {
        let parsed = ImageRef::parse(image)?;
        let policy = policy.filter(|p| !p.is_empty());
        let namespace = namespace.filter(|n| !n.is_empty());
        let selected = policy::select(
            &self.config.policies,
            &parsed.policy_subject(),
            namespace,
            policy,
        )?;
        let policies = selected
            .iter()
            .filter_map(|s| {
                self.config
                    .policies
                    .iter()
                    .position(|p| std::ptr::eq(p, *s))
            })
            .collect();
        let request_key = parsed
            .digest()
            .is_some()
            .then(|| request_key(image, policy, namespace));
        Ok(Prepared {
            input: image.to_owned(),
            image: parsed,
            policies,
            named: policy.is_some(),
            request_key,
        })
    }

    fn policies(&self, indices: &[usize]) -> Vec<&Policy> {
        indices
            .iter()
            .filter_map(|i| self.config.policies.get(*i))
            .collect()
    }

    /// One answer, with the caller's deadline and metrics around it.
    async fn answer(self: &Arc<Self>, p: Prepared, options: Options) -> Verdict {
        let started = Instant::now();
        let input = p.input.clone();
        let work = self.answer_inner(p, options.bypass_cache, options.places.as_ref());
        let verdict = match options.deadline {
            Some(d) => match tokio::time::timeout_at(d.into(), work).await {
                Ok(v) => v,
                Err(_) => deadline_exceeded(&input, d.saturating_duration_since(started)),
            },
            None => work.await,
        }
        .for_image(input);
        self.record(&verdict, started);
        verdict
    }

    /// The metrics of one answer.
    fn record(&self, verdict: &Verdict, started: Instant) {
        let metrics = &self.shared.metrics;
        for w in &verdict.warnings {
            metrics
                .policy_warnings
                .get_or_create(&crate::metrics::PolicyLabels {
                    policy: w.policy.clone(),
                })
                .inc();
        }
        let code = verdict
            .findings
            .iter()
            .find(|f| f.code != Code::Satisfied)
            .map_or(Code::Satisfied.as_str(), |f| f.code.as_str());
        // The hot series (allowed under one configured policy) were looked up once.
        match self.satisfied.get(&verdict.policy) {
            Some(counter) if verdict.allowed && code == Code::Satisfied.as_str() => {
                counter.inc();
            }
            _ => {
                metrics
                    .verdicts
                    .get_or_create(&VerdictLabels {
                        verdict: if verdict.allowed { "allowed" } else { "denied" },
                        code,
                        policy: verdict.policy.clone(),
                    })
                    .inc();
            }
        }
        if verdict.cached {
            &metrics.latency_cached
        } else {
            &metrics.latency_uncached
        }
        .observe(started.elapsed().as_secs_f64());
    }

    async fn answer_inner(
        self: &Arc<Self>,
        p: Prepared,
        bypass: bool,
        places: Option<&Places>,
    ) -> Verdict {
        let must_resolve =
            !p.policies.is_empty() || (!p.named && self.config.default == DefaultAction::Allow);
        if !must_resolve {
            return self.unmatched(&p, None);
        }
        // Static policies that deny need nothing from the registry (blocking a whole registry
        // must not contact it).
        let selected = self.policies(&p.policies);
        if selected.iter().any(|q| {
            q.action == Some(policy::StaticAction::Deny) && q.mode == policy::Mode::Enforce
        }) && selected.iter().all(|q| !q.needs_evidence())
        {
            let mut findings = Vec::new();
            let mut warnings = Vec::new();
            for q in &selected {
                if let Some(action) = q.action {
                    let (_, f) = policy::evaluate_static(&q.name, action, &p.image.to_string());
                    let f: Vec<Finding> = f
                        .into_iter()
                        .filter(|f| f.code != Code::Satisfied)
                        .collect();
                    match q.mode {
                        policy::Mode::Enforce => findings.extend(f),
                        policy::Mode::Warn => warnings.extend(f),
                    }
                }
            }
            return Verdict::deny(&p.input, findings)
                .with_warnings(warnings)
                .under_policies(selected.iter().map(|q| q.name.as_str()));
        }
        let cache = &self.shared.cache;
        let source = self.source_for(&p.image);
        let source_name = source.name();
        let fingerprints: Vec<[u8; 32]> = self
            .policies(&p.policies)
            .iter()
            .map(|p| p.fingerprint)
            .collect();
        // A verdict under `signed_identity: exact` holds for the tag it was asked by, too.
        let scope = if self
            .policies(&p.policies)
            .iter()
            .any(|q| q.has_exact_signed_identity())
        {
            format!("{source_name}#{}", p.image.tag().unwrap_or_default())
        } else {
            source_name.clone()
        };
        let key_for = |digest: &str| {
            verdict_key(
                &scope,
                digest,
                &fingerprints,
                &self.config.trust_fingerprint,
            )
        };

        // From memory, when the digest is already known (asked for, or a cached tag resolution).
        if !bypass && !p.policies.is_empty() {
            let known = match (p.image.digest(), p.image.tag()) {
                (Some(d), _) => {
                    if let Some(request) = &p.request_key {
                        self.request_keys
                            .insert(request.clone(), Arc::from(key_for(d.as_str())));
                    }
                    Some(d.to_string())
                }
                (None, Some(tag)) => cache.tag(&source_name, tag).await,
                (None, None) => None,
            };
            if let Some(digest) = known
                && let Some(hit) = cache.get(&key_for(&digest)).await
            {
                return Verdict {
                    cached: true,
                    ..hit
                };
            }
        }

        // The miss path lives on the heap: its future is large (about 16 KB), and a cached
        // answer would otherwise carry (and move) all of it with every request.
        Box::pin(async {
            // A verification starts here: it takes its place, held until it is answered.
            let _place = match places {
                Some(places) => match places.take() {
                    Some(place) => Some(place),
                    None => {
                        self.shared.metrics.shed.inc();
                        return shed(&p.input, places.max());
                    }
                },
                None => None,
            };
            if p.policies.is_empty() {
                return match self.resolve_shared(&p.image, source).await {
                    Ok(r) => self.unmatched(&p, Some(&r.manifest)),
                    Err(denial) => *denial,
                };
            }

            let engine = Arc::clone(self);
            let policies = p.policies.clone();
            let signed_for = policy::SignedFor {
                repository: p.image.policy_subject(),
                tag: p.image.tag().map(str::to_owned),
                digest: p.image.digest().map(|d| d.to_string()),
            };
            let child_scope = ChildScope {
                source: source_name.clone(),
                fingerprints: fingerprints.clone(),
            };
            match p.image.digest().cloned() {
                // By digest, the evidence is fetched while the manifest is: two round trips, not three.
                Some(digest) => {
                    let key = key_for(digest.as_str());
                    let image = p.image.clone();
                    let cache_key = key.clone();
                    let work = async move {
                        let (resolved, judged) = futures::join!(
                            engine.resolve_within_deadline(&image, Arc::clone(&source)),
                            engine.judge_within_deadline(
                                &policies,
                                source.as_ref(),
                                &digest,
                                &signed_for
                            )
                        );
                        let verdict = match resolved {
                            Ok(r) => {
                                let verdict = Verdict {
                                    media_type: r.manifest.media_type.clone(),
                                    ..judged
                                };
                                engine
                                    .record_children(&child_scope, &r.manifest, &verdict)
                                    .await;
                                verdict
                            }
                            Err(denial) => *denial,
                        };
                        // Stored before the in-flight entry is forgotten, so no caller falls between.
                        engine.shared.cache.put(&cache_key, &verdict).await;
                        verdict
                    };
                    self.run_shared(key, work, &p.input).await
                }
                None => {
                    let resolved = match self.resolve_shared(&p.image, Arc::clone(&source)).await {
                        Ok(r) => r,
                        Err(denial) => return *denial,
                    };
                    let digest = resolved.manifest.digest.clone();
                    if let Some(tag) = p.image.tag() {
                        cache.put_tag(&source_name, tag, digest.as_str()).await;
                    }
                    let key = key_for(digest.as_str());
                    if !bypass && let Some(hit) = cache.get(&key).await {
                        return Verdict {
                            cached: true,
                            ..hit
                        };
                    }
                    let cache_key = key.clone();
                    let work = async move {
                        let judged = engine
                            .judge_within_deadline(&policies, source.as_ref(), &digest, &signed_for)
                            .await;
                        let verdict = Verdict {
                            media_type: resolved.manifest.media_type.clone(),
                            ..judged
                        };
                        engine
                            .record_children(&child_scope, &resolved.manifest, &verdict)
                            .await;
                        engine.shared.cache.put(&cache_key, &verdict).await;
                        verdict
                    };
                    self.run_shared(key, work, &p.input).await
                }
            }
        })
        .await
    }

    /// The cache key of the record "`child` is a platform manifest of an allowed index".
    fn child_key(&self, scope: &ChildScope, child: &str) -> String {
        let key = verdict_key(
            &scope.source,
            child,
            &scope.fingerprints,
            &self.config.trust_fingerprint,
        );
        format!("index-child/{key}")
    }

    /// When `verdict` allows an index, records each platform manifest it lists (for the registry
    /// gate, which must let clients fetch them), for as long as the index verdict is cached.
    async fn record_children(&self, scope: &ChildScope, manifest: &Manifest, verdict: &Verdict) {
        let ManifestKind::Index { manifests } = &manifest.kind else {
            return;
        };
        if !verdict.allowed {
            return;
        }
        for child in manifests.iter().take(MAX_RECORDED_CHILDREN) {
            let Ok(child_digest) = Digest::parse(&child.digest) else {
                continue;
            };
            let record = Verdict::allow(
                child_digest.as_str(),
                vec![Finding::new(
                    Code::Satisfied,
                    format!(
                        "{child_digest} is a platform manifest of the allowed index {}",
                        manifest.digest
                    ),
                )],
            );
            // The record names its index: the gate checks that the index verdict still holds.
            // It ends when the index verdict's own time bound does.
            let record = Verdict {
                digest: manifest.digest.to_string(),
                policy: verdict.policy.clone(),
                valid_until: verdict.valid_until,
                ..record
            };
            self.shared
                .cache
                .put(&self.child_key(scope, child_digest.as_str()), &record)
                .await;
        }
    }

    /// For the registry gate: the digest of an allowed index that lists `image` (a registry
    /// reference by digest) as one of its platform manifests, while that index's verdict holds.
    pub async fn allowed_parent_index(&self, image: &str) -> Option<String> {
        let p = self.prepare(image, None, None).ok()?;
        let digest = p.image.digest()?.to_string();
        if p.policies.is_empty() {
            return None;
        }
        let source = self.source_for(&p.image);
        let scope = ChildScope {
            source: source.name(),
            fingerprints: self
                .policies(&p.policies)
                .iter()
                .map(|p| p.fingerprint)
                .collect(),
        };
        let record = self
            .shared
            .cache
            .get(&self.child_key(&scope, &digest))
            .await?;
        if !record.allowed {
            return None;
        }
        let parent_key = verdict_key(
            &scope.source,
            &record.digest,
            &scope.fingerprints,
            &self.config.trust_fingerprint,
        );
        let parent = self.shared.cache.get(&parent_key).await?;
        (parent.allowed && parent.digest == record.digest).then_some(record.digest)
    }

    /// For the registry gate: the manifest `image` names now (fetched and checked like any
    /// other), or the denial that explains why it could not be read.
    pub async fn fetch_manifest(self: &Arc<Self>, image: &str) -> Result<Manifest, Box<Verdict>> {
        let parsed = ImageRef::parse(image).map_err(|e| {
            Box::new(Verdict::deny(
                image,
                vec![Finding::new(Code::RegistryError, e.to_string())],
            ))
        })?;
        let source = self.source_for(&parsed);
        self.resolve_within_deadline(&parsed, source)
            .await
            .map(|r| r.manifest)
    }

    /// Runs one verification, shared with concurrent callers asking the same question (those that
    /// bypass the cache included: they skip lookups, not coalescing).
    async fn run_shared(
        &self,
        key: String,
        work: impl std::future::Future<Output = Verdict> + Send + 'static,
        what: &str,
    ) -> Verdict {
        let (verdict, joined) = self.shared.judgments.run(key, work).await;
        if joined {
            self.shared.metrics.coalesced_waits.inc();
        }
        verdict.unwrap_or_else(|| internal_error(what))
    }

    /// Resolves `image`, sharing the work with concurrent callers asking for the same reference.
    async fn resolve_shared(
        self: &Arc<Self>,
        image: &ImageRef,
        source: Arc<dyn Source>,
    ) -> Result<Arc<Resolved>, Box<Verdict>> {
        let key = (source.name(), image.to_string());
        let engine = Arc::clone(self);
        let owned = image.clone();
        let work = async move {
            engine
                .resolve_within_deadline(&owned, source)
                .await
                .map(Arc::new)
        };
        let (resolved, joined) = self.shared.resolutions.run(key, work).await;
        if joined {
            self.shared.metrics.coalesced_waits.inc();
        }
        resolved.unwrap_or_else(|| Err(Box::new(internal_error(&image.to_string()))))
    }

    /// The verdict for an image no policy applies to.
    fn unmatched(&self, p: &Prepared, manifest: Option<&Manifest>) -> Verdict {
        let subject = p.image.policy_subject();
        let verdict = match (p.named, self.config.default, manifest) {
            (false, DefaultAction::Allow, Some(_)) => Verdict::allow(
                &p.input,
                vec![Finding::new(
                    Code::NoMatchingPolicy,
                    format!(
                        "no policy matches {subject}; allowed because the configuration's default is allow"
                    ),
                )],
            ),
            (true, _, _) => Verdict::deny(
                &p.input,
                vec![Finding::new(
                    Code::NoMatchingPolicy,
                    format!("the requested policy's images globs do not match {subject}"),
                )],
            ),
            _ => Verdict::deny(
                &p.input,
                vec![Finding::new(
                    Code::NoMatchingPolicy,
                    format!(
                        "no policy matches {subject} and the default is deny; add a policy whose images globs match it"
                    ),
                )],
            ),
        };
        match manifest {
            Some(m) => verdict.for_digest(&m.digest, m.media_type.clone()),
            None => verdict,
        }
    }

    fn source_for(&self, image: &ImageRef) -> Arc<dyn Source> {
        if let Some(source) = &self.source_override {
            return Arc::clone(source);
        }
        match image {
            ImageRef::Registry(r) => Arc::new(self.registry.source(r)),
            ImageRef::Layout(l) => Arc::new(LayoutSource::new(&l.path)),
        }
    }

    async fn resolve_within_deadline(
        &self,
        image: &ImageRef,
        source: Arc<dyn Source>,
    ) -> Result<Resolved, Box<Verdict>> {
        let deadline = self.config.limits.deadline;
        let started = Instant::now();
        let reference = match (image.digest(), image.tag()) {
            (Some(d), _) => ManifestRef::Digest(d.clone()),
            (None, Some(t)) => ManifestRef::Tag(t.to_owned()),
            (None, None) => ManifestRef::Tag("latest".to_owned()),
        };
        let fetch = source.manifest(&reference, self.config.limits.max_manifest_bytes);
        let result = match tokio::time::timeout(deadline, fetch).await {
            Ok(Ok(manifest)) => Ok(Resolved { manifest }),
            Ok(Err(e)) => Err(Box::new(Verdict::deny(
                image.to_string(),
                vec![fetch_finding(&e)],
            ))),
            Err(_) => Err(Box::new(deadline_exceeded(&image.to_string(), deadline))),
        };
        self.shared
            .metrics
            .observe_step("resolve", started.elapsed());
        result
    }

    async fn judge_within_deadline(
        &self,
        policy_indices: &[usize],
        source: &dyn Source,
        digest: &Digest,
        signed_for: &policy::SignedFor,
    ) -> Verdict {
        let deadline = self.config.limits.deadline;
        let policies = self.policies(policy_indices);
        let name = format!("{}@{digest}", source.name());
        let judged = self.judge(&policies, source, digest, signed_for);
        let verdict = match tokio::time::timeout(deadline, judged).await {
            Ok(v) => v,
            Err(_) => deadline_exceeded(&name, deadline),
        };
        let media_type = verdict.media_type.clone();
        verdict
            .for_digest(digest, media_type)
            .under_policies(policies.iter().map(|p| p.name.as_str()))
    }

    /// Gathers the evidence for one digest once, then evaluates every applicable policy on it.
    async fn judge(
        &self,
        policies: &[&Policy],
        source: &dyn Source,
        digest: &Digest,
        signed_for: &policy::SignedFor,
    ) -> Verdict {
        let metrics = &self.shared.metrics;
        let image = format!("{}@{digest}", source.name());
        let needs_image_config = policies.iter().any(|p| p.image_rules.is_some());
        let limits = &self.config.limits;

        // Evidence is read once per repository that holds it: the image's own, or a policy's
        // `signatures_repository` (for the same digest).
        let mut groups: Vec<(Option<&crate::reference::RegistryRef>, Vec<usize>)> = Vec::new();
        for (i, p) in policies.iter().enumerate() {
            if !p.needs_evidence() {
                continue;
            }
            let repo = p.signatures_repository.as_ref();
            match groups.iter_mut().find(|(r, _)| *r == repo) {
                Some((_, members)) => members.push(i),
                None => groups.push((repo, vec![i])),
            }
        }

        let started = Instant::now();
        let budget = EvidenceBudget::new(limits.max_evidence_bytes);
        let elsewhere: Vec<Option<Arc<dyn Source>>> = groups
            .iter()
            .map(|(repo, _)| {
                repo.map(|r| match &self.source_override {
                    Some(source) => Arc::clone(source),
                    None => Arc::new(self.registry.source(r)) as Arc<dyn Source>,
                })
            })
            .collect();
        let gathered =
            join_all(
                groups.iter().zip(&elsewhere).map(|((_, members), other)| {
                    let group: Vec<&Policy> = members.iter().map(|i| policies[*i]).collect();
                    let evidence_source: &dyn Source = match other {
                        Some(o) => o.as_ref(),
                        None => source,
                    };
                    let budget = &budget;
                    let needs = Needs {
                        signatures: group.iter().any(|p| p.signatures.is_some()),
                        attestations: group.iter().any(|p| !p.attestations.is_empty()),
                        notation: group.iter().any(|p| !notation_authorities(p).is_empty()),
                    };
                    let limits = &self.config.limits;
                    async move {
                        discovery::gather(needs, evidence_source, digest, budget, limits).await
                    }
                }),
            );
        let configs = async {
            if needs_image_config {
                discovery::image_configs(source, digest, &budget, limits).await
            } else {
                Ok(Vec::new())
            }
        };
        let artifact_types: Vec<String> = policies
            .iter()
            .flat_map(|p| p.artifacts.iter().map(|a| a.media_type.clone()))
            .collect();
        let artifacts = async {
            if artifact_types.is_empty() {
                Ok(Vec::new())
            } else {
                discovery::artifacts(source, digest, &artifact_types, &budget, limits).await
            }
        };
        // BuildKit statements: read from the image's own index, only for the types asked for.
        let buildkit_types: Vec<String> = policies
            .iter()
            .flat_map(|p| p.attestations.iter().filter(|a| a.buildkit))
            .map(|a| a.predicate_type.clone())
            .collect();
        let buildkit = async {
            if buildkit_types.is_empty() {
                Ok(discovery::BuildkitEvidence::default())
            } else {
                discovery::buildkit_attestations(source, digest, &buildkit_types, &budget, limits)
                    .await
            }
        };
        let (gathered, configs, artifacts, buildkit) =
            futures::join!(gathered, configs, artifacts, buildkit);
        metrics.observe_step("fetch_evidence", started.elapsed());
        let (buildkit, buildkit_failed) = match buildkit {
            Ok(b) => {
                // A platform manifest's statements live in its index: an allowed verdict of the
                // index that still holds vouches for them (as the gate's child records say).
                let parent_allowed = !b.is_index
                    && !buildkit_types.is_empty()
                    && self
                        .allowed_parent_index(&format!("{}@{digest}", signed_for.repository))
                        .await
                        .is_some();
                let statements = b
                    .statements
                    .into_iter()
                    .filter_map(|(platform, _, bytes)| {
                        crate::verify::statement::Statement::parse(&bytes)
                            .ok()
                            .map(|s| (platform, s))
                    })
                    .collect();
                (
                    policy::BuildkitStatements {
                        is_index: b.is_index,
                        platforms: b.platforms,
                        statements,
                        parent_allowed,
                    },
                    None,
                )
            }
            Err(e) => (
                policy::BuildkitStatements {
                    is_index: false,
                    platforms: Vec::new(),
                    statements: Vec::new(),
                    parent_allowed: false,
                },
                Some(fetch_finding(&e)),
            ),
        };
        // A fetch failure fails the policies that needed what could not be read, each as its mode
        // says: an enforce policy denies (retryable when transient), a warn policy only warns.
        let (configs, configs_failed) = match configs {
            Ok(c) => (c, None),
            Err(e) => (Vec::new(), Some(fetch_finding(&e))),
        };
        let (artifacts, artifacts_failed) = match artifacts {
            Ok(a) => (a, None),
            Err(e) => (Vec::new(), Some(fetch_finding(&e))),
        };
        let mut raw = Vec::with_capacity(gathered.len());
        let mut group_failed: Vec<Option<Finding>> = Vec::with_capacity(gathered.len());
        for g in gathered {
            match g {
                Ok(evidence) => {
                    raw.push(evidence);
                    group_failed.push(None);
                }
                Err(e) => {
                    raw.push(discovery::Evidence::default());
                    group_failed.push(Some(fetch_finding(&e)));
                }
            }
        }
        // Notation signatures name the image manifest's media type and size: read once, from the
        // image's own repository (a `signatures_repository` holds signatures, not the image).
        if raw
            .iter()
            .any(|e: &discovery::Evidence| !e.notation.is_empty())
        {
            match discovery::subject_descriptor(source, digest, &budget, limits).await {
                Ok(subject) => {
                    for e in raw.iter_mut().filter(|e| !e.notation.is_empty()) {
                        e.subject = Some(subject.clone());
                    }
                }
                Err(e) => {
                    let failed = fetch_finding(&e);
                    for (g, e) in raw.iter_mut().enumerate() {
                        if !e.notation.is_empty() {
                            *e = discovery::Evidence::default();
                            group_failed[g] = Some(failed.clone());
                        }
                    }
                }
            }
        }

        let started = Instant::now();
        let keys: Vec<(String, &PublicKey)> = self
            .keys
            .iter()
            .map(|(n, k)| (n.clone(), k.as_ref()))
            .collect();
        let roots: Vec<&SigstoreRoot> = self.roots.iter().map(Arc::as_ref).collect();
        let trust = Trust {
            keys: &keys,
            roots: &roots,
            offline: self.offline.as_ref(),
            now: jiff::Timestamp::now(),
            log_checks: self.keyed_log_checks,
        };
        // Outcomes per group, and each policy's group.
        let mut outcomes: Vec<(Vec<SignatureOutcome>, Vec<AttestationOutcome>)> = Vec::new();
        let mut group_of = vec![usize::MAX; policies.len()];
        // Notation statements are chosen by the image's repository, wherever its evidence is.
        let scope = source.name();
        for (g, ((_, members), mut evidence)) in groups.iter().zip(raw).enumerate() {
            for i in members {
                group_of[*i] = g;
            }
            let envelopes = std::mem::take(&mut evidence.notation);
            let subject = evidence.subject.take();
            let mut out = verify_evidence(evidence, &trust, digest);
            let mut done: Vec<&policy::NotationAuthority> = Vec::new();
            for a in members
                .iter()
                .flat_map(|i| notation_authorities(policies[*i]))
            {
                if done.contains(&a) {
                    continue;
                }
                done.push(a);
                out.0.extend(notation_outcomes(
                    a,
                    &envelopes,
                    subject.as_ref(),
                    &scope,
                    digest,
                    trust.now,
                ));
            }
            outcomes.push(out);
        }
        // Each artifact's own signatures, under every authority an artifact requirement names.
        let artifact_authorities: Vec<&policy::NotationAuthority> = {
            let mut all: Vec<&policy::NotationAuthority> = Vec::new();
            for a in policies
                .iter()
                .flat_map(|p| p.artifacts.iter())
                .flat_map(|r| r.inner.authorities.iter())
            {
                if let policy::Authority::Notation(n) = a
                    && !all.contains(&n)
                {
                    all.push(n);
                }
            }
            all
        };
        let artifacts: Vec<(String, Digest, Vec<u8>, Vec<SignatureOutcome>)> = artifacts
            .into_iter()
            .map(|mut a| {
                let envelopes = std::mem::take(&mut a.evidence.notation);
                let subject = a.evidence.subject.take();
                let (mut signatures, _) = verify_evidence(a.evidence, &trust, &a.digest);
                for n in &artifact_authorities {
                    signatures.extend(notation_outcomes(
                        n,
                        &envelopes,
                        subject.as_ref(),
                        &scope,
                        &a.digest,
                        trust.now,
                    ));
                }
                (a.media_type, a.digest, a.content, signatures)
            })
            .collect();
        let none: (Vec<SignatureOutcome>, Vec<AttestationOutcome>) = (Vec::new(), Vec::new());
        metrics.observe_step("verify", started.elapsed());

        let started = Instant::now();
        let now = jiff::Timestamp::now();
        let mut allowed = true;
        let mut findings = Vec::new();
        let mut warnings = Vec::new();
        let mut image_rules_until: Option<jiff::Timestamp> = None;
        for (i, p) in policies.iter().enumerate() {
            let (signatures, attestations) = outcomes.get(group_of[i]).unwrap_or(&none);
            let mut held_all = true;
            let mut found = Vec::new();
            // What a Notation statement's level only logs: warnings, whatever the mode.
            let mut logged = Vec::new();
            if let Some(action) = p.action {
                let (held, f) = policy::evaluate_static(&p.name, action, digest.as_str());
                held_all &= held;
                found.extend(f);
            }
            // What this policy needed and could not be read: its evidence group, the artifacts,
            // the image configs. The requirements on it are not evaluated (nothing to evaluate).
            let unread: Vec<&Finding> = [
                group_failed
                    .get(group_of[i])
                    .and_then(Option::as_ref)
                    .filter(|_| p.signatures.is_some() || !p.attestations.is_empty()),
                artifacts_failed
                    .as_ref()
                    .filter(|_| !p.artifacts.is_empty()),
                buildkit_failed
                    .as_ref()
                    .filter(|_| p.attestations.iter().any(|a| a.buildkit)),
                configs_failed.as_ref().filter(|_| p.image_rules.is_some()),
            ]
            .into_iter()
            .flatten()
            .collect();
            let evaluate = unread.is_empty();
            if !evaluate {
                held_all = false;
                found.extend(unread.into_iter().map(|f| f.clone().with_policy(&p.name)));
            }
            let mut signatures_held = false;
            if let Some(req) = p.signatures.as_ref().filter(|_| evaluate) {
                let (held, f, w) = policy::evaluate_signatures_warning(
                    &p.name,
                    req,
                    digest,
                    signatures,
                    Some(signed_for),
                );
                signatures_held = held;
                held_all &= held;
                found.extend(f);
                logged.extend(w);
            }
            for req in p.attestations.iter().filter(|a| evaluate && a.buildkit) {
                let (held, f) = policy::evaluate_buildkit(
                    &p.name,
                    req,
                    &image,
                    digest,
                    signatures_held,
                    &buildkit,
                    now,
                );
                held_all &= held;
                found.extend(f);
            }
            for req in p.attestations.iter().filter(|a| evaluate && !a.buildkit) {
                let (held, f, w) = policy::evaluate_attestation_warning(
                    &p.name,
                    req,
                    &image,
                    digest,
                    attestations,
                    now,
                );
                held_all &= held;
                found.extend(f);
                logged.extend(w);
            }
            for req in p.artifacts.iter().filter(|_| evaluate) {
                let (held, f) = evaluate_artifact(&p.name, req, &image, digest, &artifacts, now);
                held_all &= held;
                found.extend(f);
            }
            if let Some(rules) = p.image_rules.as_ref().filter(|_| evaluate) {
                let (held, f) = policy::evaluate_image_rules(&p.name, rules, &configs, now);
                // An allow that rests on `max_age` holds only until the image is too old.
                if held && p.mode == policy::Mode::Enforce {
                    image_rules_until = configs
                        .iter()
                        .filter_map(|(_, c)| rules.holds_until(c))
                        .chain(image_rules_until)
                        .min();
                }
                held_all &= held;
                found.extend(f);
            }
            warnings.extend(logged);
            match p.mode {
                policy::Mode::Enforce => {
                    allowed &= held_all;
                    findings.extend(found);
                }
                // A warn policy never denies: what it found wrong comes back as warnings.
                policy::Mode::Warn => {
                    for f in found {
                        if f.code == Code::Satisfied {
                            findings.push(f);
                        } else {
                            warnings.push(f);
                        }
                    }
                }
            }
        }
        metrics.observe_step("policy", started.elapsed());
        // The earliest moment a time-bound signature that was counted stops holding (kept
        // conservative: every such signer found, counted or not).
        let holds_until = outcomes
            .iter()
            .flat_map(|(signatures, _)| signatures.iter())
            .chain(artifacts.iter().flat_map(|(.., s)| s.iter()))
            .filter_map(|o| match o {
                SignatureOutcome::Valid { signers, .. } => Some(signers),
                _ => None,
            })
            .flatten()
            .filter_map(|s| match s {
                crate::verify::signature::Signer::Notation { valid_until, .. } => *valid_until,
                _ => None,
            })
            .min();
        if allowed && !policies.is_empty() {
            Verdict::allow(&image, findings)
        } else {
            findings.retain(|f| f.code != Code::Satisfied);
            Verdict::deny(&image, findings)
        }
        .with_warnings(warnings)
        .holds_until(holds_until)
        .holds_until(image_rules_until)
    }
}

/// An artifact requirement against the artifacts found: each of its type counts when one of the
/// requirement's authorities verified a signature on the artifact's manifest; then its content
/// is checked as an attestation would be.
fn evaluate_artifact(
    policy: &str,
    req: &policy::ArtifactRequirement,
    image: &str,
    digest: &Digest,
    artifacts: &[(String, Digest, Vec<u8>, Vec<SignatureOutcome>)],
    now: jiff::Timestamp,
) -> (bool, Vec<Finding>) {
    let signed_by = policy::SignatureRequirement {
        threshold: 1,
        authorities: req.inner.authorities.clone(),
    };
    let predicate_type = req.inner.predicate_type.clone();
    let outcomes: Vec<AttestationOutcome> = artifacts
        .iter()
        .filter(|(media_type, ..)| *media_type == req.media_type)
        .map(|(_, artifact, content, signatures)| {
            let (held, findings) =
                policy::evaluate_signatures(policy, &signed_by, artifact, signatures);
            if !held {
                let reasons: Vec<String> = findings.into_iter().map(|f| f.message).collect();
                return AttestationOutcome::Invalid {
                    claimed_type: Some(predicate_type.clone()),
                    reason: format!("artifact {artifact}: {}", reasons.join("; ")),
                };
            }
            let signers: Vec<crate::verify::signature::Signer> = signatures
                .iter()
                .filter_map(|o| match o {
                    SignatureOutcome::Valid { signers, .. } => Some(signers),
                    _ => None,
                })
                .flatten()
                .filter(|s| signed_by.authorities.iter().any(|a| a.accepts(s)))
                .cloned()
                .collect();
            match policy::artifact_statement(&req.media_type, content, digest) {
                Ok(statement) => AttestationOutcome::Verified { signers, statement },
                Err(reason) => AttestationOutcome::Invalid {
                    claimed_type: Some(predicate_type.clone()),
                    reason: format!("artifact {artifact}: {reason}"),
                },
            }
        })
        .collect();
    let (held, findings) =
        policy::evaluate_attestation(policy, &req.inner, image, digest, &outcomes, now);
    // Reported under the artifact's media type, not the predicate type its checks read.
    let findings = findings
        .into_iter()
        .map(|mut f| {
            f.message = f
                .message
                .replace(
                    &format!("attestation of type {predicate_type}"),
                    &format!("artifact of type {} (an OCI referrer)", req.media_type),
                )
                .replace(
                    &format!("attestation claiming type {predicate_type}"),
                    &format!("artifact of type {}", req.media_type),
                )
                .replace(&predicate_type, &req.media_type)
                .replace("attestation(s)", "artifact(s)");
            f.attestation_type = req.media_type.clone();
            f
        })
        .collect();
    (held, findings)
}

/// The `notation` authorities of a policy's signature requirement.
fn notation_authorities(p: &Policy) -> Vec<&policy::NotationAuthority> {
    p.signatures
        .iter()
        .flat_map(|s| s.authorities.iter())
        .filter_map(|a| match a {
            policy::Authority::Notation(n) => Some(n),
            _ => None,
        })
        .collect()
}

/// The Notation envelopes of an image verified under one authority: its statement for `scope`
/// (none is a denial naming the scope; `skip` admits without verifying, as Notation does).
fn notation_outcomes(
    authority: &policy::NotationAuthority,
    envelopes: &[(Vec<u8>, String)],
    subject: Option<&(String, u64)>,
    scope: &str,
    digest: &Digest,
    now: jiff::Timestamp,
) -> Vec<SignatureOutcome> {
    use crate::verify::notation_rules::{Level, select};
    let Some(statement) = select(&authority.statements, scope) else {
        return vec![SignatureOutcome::Unverified {
            check: crate::verify::Check::Scope,
            reason: format!(
                "{} has no trust policy statement whose registryScopes hold {scope:?}",
                authority.name
            ),
        }];
    };
    if statement.rules.level == Level::Skip {
        return vec![SignatureOutcome::Valid {
            signers: vec![crate::verify::signature::Signer::Notation {
                authority: authority.id.clone(),
                subject: format!(
                    "nobody (trust policy statement {:?} has level skip: nothing verified)",
                    statement.name
                ),
                warnings: Vec::new(),
                revocation_unchecked: false,
                valid_until: None,
            }],
            signed_name: None,
        }];
    }
    let Some((media_type, size)) = subject else {
        return Vec::new();
    };
    let target = crate::verify::notation::Target {
        media_type: media_type.clone(),
        digest: digest.to_string(),
        size: *size,
    };
    envelopes
        .iter()
        .map(|(bytes, envelope_type)| {
            crate::verify::notation_rules::outcome(
                &authority.id,
                statement,
                bytes,
                envelope_type,
                &target,
                now,
            )
        })
        .collect()
}

/// Every signature and attestation of `evidence`, verified (pure).
fn verify_evidence(
    evidence: discovery::Evidence,
    trust: &Trust<'_>,
    digest: &Digest,
) -> (Vec<SignatureOutcome>, Vec<AttestationOutcome>) {
    let signatures: Vec<SignatureOutcome> = if evidence.needs_signatures {
        evidence
            .sig_layers
            .into_iter()
            .map(|(payload, annotations)| {
                signature::check_layer(
                    &SignatureLayer {
                        payload,
                        annotations,
                    },
                    trust,
                    digest,
                )
            })
            .chain(
                evidence
                    .bundles
                    .iter()
                    .filter_map(|b| signature::check_bundle(b, trust, digest)),
            )
            .collect()
    } else {
        Vec::new()
    };
    let attestations: Vec<AttestationOutcome> = if evidence.needs_attestations {
        evidence
            .att_layers
            .into_iter()
            .map(|(envelope, annotations)| {
                attestation::check_layer(
                    &AttestationLayer {
                        envelope,
                        annotations,
                    },
                    trust,
                    digest,
                )
            })
            .chain(
                evidence
                    .bundles
                    .iter()
                    .filter_map(|b| attestation::check_bundle(b, trust, digest)),
            )
            .collect()
    } else {
        Vec::new()
    };
    (signatures, attestations)
}

fn internal_error(what: &str) -> Verdict {
    Verdict::deny(
        what,
        vec![Finding::new(
            Code::RegistryError,
            format!("verifying {what} failed inside umpire; see its logs"),
        )],
    )
    .retryable()
}

fn deadline_exceeded(what: &str, deadline: Duration) -> Verdict {
    Verdict::deny(
        what,
        vec![Finding::new(
            Code::LimitExceeded,
            format!("verifying {what} did not finish within the deadline of {deadline:?}"),
        )],
    )
    .retryable()
}

/// The finding for evidence that could not be fetched: `evidence` knows registries, not verdicts.
fn fetch_finding(e: &crate::evidence::FetchError) -> Finding {
    use crate::evidence::FetchError;
    let code = match e {
        FetchError::NotFound { .. } => Code::ImageNotFound,
        FetchError::Unavailable { .. } => Code::RegistryUnavailable,
        FetchError::LimitExceeded { .. } => Code::LimitExceeded,
        FetchError::DigestMismatch { .. } => Code::DigestMismatch,
        FetchError::Unsupported { .. } => Code::UnsupportedManifest,
        FetchError::AccessDenied { .. } | FetchError::Protocol { .. } => Code::RegistryError,
    };
    Finding::new(code, e.to_string())
}

#[cfg(test)]
mod tests {
    //! The engine on an in-memory source: orchestration without a registry.
    use base64::Engine as _;

    use super::*;
    use crate::evidence::memory::MemorySource;
    use crate::verify::keys::test_keys::Ecdsa;

    const HOST: &str = "mem.example";

    fn config(key: &Ecdsa) -> Config {
        let mut pem = String::new();
        for line in key.public_pem().lines() {
            pem.push_str(&format!("      {line}\n"));
        }
        let yaml = format!(
            "trust:\n  keys:\n    release: |\n{pem}policies:\n  - name: prod\n    images: [\"{HOST}/**\"]\n    signatures:\n      authorities:\n        - key: release\n"
        );
        Config::from_yaml(&yaml, std::path::Path::new("."), "test").unwrap()
    }

    fn manifest(config: &Digest, config_len: usize, layers: &[serde_json::Value]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": config_len},
            "layers": layers,
        }))
        .unwrap()
    }

    /// An image tagged `v1`, signed by `signer` when given; returns the source and the digest.
    fn source(signer: Option<&Ecdsa>) -> (MemorySource, Digest) {
        let mut m = MemorySource::new();
        let config = b"{\"architecture\":\"amd64\",\"os\":\"linux\"}".to_vec();
        let config_len = config.len();
        let config_digest = m.put(config);
        let image = m.tag("v1", manifest(&config_digest, config_len, &[]));
        if let Some(key) = signer {
            let payload = serde_json::to_vec(&serde_json::json!({
                "critical": {
                    "identity": {"docker-reference": format!("{HOST}/app")},
                    "image": {"docker-manifest-digest": image.to_string()},
                    "type": "cosign container image signature",
                },
                "optional": null,
            }))
            .unwrap();
            let signature = base64::engine::general_purpose::STANDARD.encode(key.sign(&payload));
            let len = payload.len();
            let layer = m.put(payload);
            let empty = m.put(b"{}".to_vec());
            let sig_manifest = manifest(
                &empty,
                2,
                &[serde_json::json!({
                    "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                    "digest": layer.to_string(),
                    "size": len,
                    "annotations": {"dev.cosignproject.cosign/signature": signature},
                })],
            );
            m.tag(&image.cosign_tag("sig"), sig_manifest);
        }
        (m, image)
    }

    #[tokio::test]
    async fn a_signed_image_is_allowed_for_its_digest() {
        let key = Ecdsa::p256();
        let (m, digest) = source(Some(&key));
        let engine = Engine::with_source(config(&key), Arc::new(m)).unwrap();
        let v = engine
            .verify(&format!("{HOST}/app:v1"), None)
            .await
            .unwrap();
        assert!(v.allowed, "{v:?}");
        assert_eq!(v.digest, digest.to_string());
        assert_eq!(v.policy, "prod");
    }

    #[tokio::test]
    async fn unsigned_or_signed_by_another_key_is_denied() {
        let key = Ecdsa::p256();
        let (m, _) = source(None);
        let engine = Engine::with_source(config(&key), Arc::new(m)).unwrap();
        let v = engine
            .verify(&format!("{HOST}/app:v1"), None)
            .await
            .unwrap();
        assert_eq!(v.codes(), [Code::NoSignatures], "{v:?}");

        let (m, _) = source(Some(&Ecdsa::p256()));
        let engine = Engine::with_source(config(&key), Arc::new(m)).unwrap();
        let v = engine
            .verify(&format!("{HOST}/app:v1"), None)
            .await
            .unwrap();
        assert!(!v.allowed);
        assert_eq!(v.codes(), [Code::SignatureInvalid], "{v:?}");
    }

    /// Cached answers found through `request_keys` are those the full path gives: per
    /// namespace and policy name, never across them, and never for a bypass.
    #[tokio::test]
    async fn remembered_requests_answer_as_the_full_path_does() {
        let key = Ecdsa::p256();
        let (m, digest) = source(None);
        let mut pem = String::new();
        for line in key.public_pem().lines() {
            pem.push_str(&format!("      {line}\n"));
        }
        let yaml = format!(
            "trust:\n  keys:\n    release: |\n{pem}policies:\n  - name: prod\n    images: [\"{HOST}/**\"]\n    namespaces: [prod]\n    signatures:\n      authorities:\n        - key: release\n  - name: dev\n    images: [\"{HOST}/**\"]\n    namespaces: [dev]\n    action: allow\n"
        );
        let config = Config::from_yaml(&yaml, std::path::Path::new("."), "test").unwrap();
        let engine = Engine::with_source(config, Arc::new(m)).unwrap();
        let image = format!("{HOST}/app@{digest}");
        let ask = |namespace: &str, policy: Option<&'static str>, bypass: bool| {
            let engine = Arc::clone(&engine);
            let image = image.clone();
            let options = Options {
                namespace: Some(namespace.to_owned()),
                bypass_cache: bypass,
                ..Options::default()
            };
            async move { engine.verify_with(&image, policy, options).await.unwrap() }
        };
        let first = ask("prod", None, false).await;
        assert_eq!(first.codes(), [Code::NoSignatures], "{first:?}");
        assert!(!first.cached);
        let again = ask("prod", None, false).await;
        assert!(again.cached, "{again:?}");
        assert_eq!(
            (
                again.allowed,
                again.codes(),
                &again.digest,
                &again.policy,
                &again.image
            ),
            (
                first.allowed,
                first.codes(),
                &first.digest,
                &first.policy,
                &first.image
            )
        );
        // Another namespace selects another policy: its own answer, not the one remembered.
        let dev = ask("dev", None, false).await;
        assert!(dev.allowed && dev.policy == "dev", "{dev:?}");
        let dev_again = ask("dev", None, false).await;
        assert!(dev_again.allowed && dev_again.cached, "{dev_again:?}");
        assert!(!ask("prod", None, false).await.allowed);
        // A policy named by the caller is part of the question.
        let named = ask("prod", Some("prod"), false).await;
        assert!(!named.allowed && named.policy == "prod", "{named:?}");
        // bypass_cache is never answered from memory.
        assert!(!ask("prod", None, true).await.cached);
    }

    #[tokio::test]
    async fn a_source_that_fails_gives_a_retryable_denial_that_is_not_kept() {
        let key = Ecdsa::p256();
        let engine = Engine::with_source(config(&key), Arc::new(MemorySource::failing())).unwrap();
        let v = engine
            .verify(&format!("{HOST}/app:v1"), None)
            .await
            .unwrap();
        assert!(!v.allowed && v.retryable, "{v:?}");
        assert_eq!(v.codes(), [Code::RegistryUnavailable]);
        let again = engine
            .verify(&format!("{HOST}/app:v1"), None)
            .await
            .unwrap();
        assert!(!again.allowed);
    }
}
#[cfg(test)]
mod future_size {
    /// A cached answer's future does not carry the miss path's state: every request's future is
    /// moved into a box by the gRPC layer, so its size is copied per request (it was 16 KB).
    #[test]
    fn the_future_of_one_answer_stays_small() {
        let engine =
            crate::Engine::standalone(crate::Config::builtin().unwrap(), Default::default())
                .unwrap();
        let answer = engine.verify_with("oci:examples/demo:signed", None, Default::default());
        let size = std::mem::size_of_val(&answer);
        assert!(size <= 4096, "verify_with's future is {size} bytes");
        let lookup = engine.shared.cache.get("key");
        let size = std::mem::size_of_val(&lookup);
        assert!(size <= 2048, "a cache lookup's future is {size} bytes");
    }
}
