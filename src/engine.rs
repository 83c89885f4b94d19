//! The engine orchestrates one answer: the request and its memo (policies selected, the cache
//! key of a request by digest remembered), answering (cache, coalescing, places, deadlines) and
//! judging (gather → verify → evaluate → verdict). What each step does lives in its module:
//! `evidence::gather`, `verify::evidence`, `policy::evaluate`, `verdict`. It is the only module
//! that calls both `evidence` and `verify`. Every error path ends in a denial.

use std::sync::Arc;
use std::time::Instant;

use futures::future::join_all;

pub use crate::cache::Shared;
use crate::cache::{KeyScope, VerdictCache};
use crate::config::{Config, DefaultAction};
use crate::digest::Digest;
use crate::evidence::auth::Credentials;
use crate::evidence::buildkit::BuildkitEvidence;
use crate::evidence::gather;
use crate::evidence::keyring::WorkloadCredentials as Workload;
use crate::evidence::layout::LayoutSource;
use crate::evidence::registry::RegistryClient;
use crate::evidence::{FetchError, Manifest, ManifestRef, Source};
use crate::metrics::{Metrics, SatisfiedSeries};
use crate::policy::{self, Policy, fetch_finding};
use crate::pull_secrets::Kubernetes;
use crate::reference::{ImageRef, RegistryRef};
use crate::request::{self, Prepared, request_key};
pub use crate::request::{Options, Places, RequestError};
use crate::verdict::{Code, Finding, Verdict};
use crate::verify::evidence::{NotationTrust, TrustMaterial};

pub struct Engine {
    config: Arc<Config>,
    registry: Arc<RegistryClient>,
    trust: TrustMaterial,
    shared: Arc<Shared>,
    /// Where every image is read from instead of its registry (tests: an in-memory source).
    source_override: Option<Arc<dyn Source>>,
    /// Requests by digest already seen → their verdict cache key, so that a cached answer skips
    /// parsing, policy selection and key hashing. Exact for one configuration (one engine):
    /// the key depends only on the request and the configuration.
    request_keys: moka::sync::Cache<String, Arc<str>>,
    satisfied: SatisfiedSeries,
    /// The Kubernetes API, for pull secrets (connected on first use).
    pub(crate) kubernetes: Arc<Kubernetes>,
}

/// What judging needs of the request: the name it was asked by, and the workload's credentials.
type Asked = (policy::SignedFor, Option<Arc<Workload>>);

/// What a request's verdict is keyed by, and what its index-child records are keyed by.
struct Scopes {
    verdicts: KeyScope,
    children: KeyScope,
}

impl Engine {
    pub fn new(
        config: Config,
        credentials: Credentials,
        shared: Arc<Shared>,
    ) -> anyhow::Result<Self> {
        let (registry, kubernetes) =
            crate::pull_secrets::registry_client(&config, credentials, &shared.metrics)?;
        let trust = config.trust_material();
        let names = config.policies.iter().map(|p| p.name.as_str());
        let satisfied = shared.metrics.satisfied_series(names);
        Ok(Self {
            satisfied,
            registry: Arc::new(registry),
            kubernetes,
            trust,
            shared,
            source_override: None,
            request_keys: moka::sync::Cache::new(config.cache.max_entries),
            config: Arc::new(config),
        })
    }

    /// A standalone engine that reads every image, whatever its registry, from `source`: the
    /// engine's own tests run on an in-memory source, without a registry.
    pub fn with_source(config: Config, source: Arc<dyn Source>) -> anyhow::Result<Arc<Self>> {
        let mut engine = Arc::into_inner(Self::standalone(config, Credentials::default())?)
            .ok_or_else(|| anyhow::anyhow!("a new engine is not shared"))?;
        engine.source_override = Some(source);
        Ok(Arc::new(engine))
    }

    /// An engine with caches of its own (for `umpire verify` and tests).
    pub fn standalone(config: Config, credentials: Credentials) -> anyhow::Result<Arc<Self>> {
        let metrics = Arc::new(Metrics::new());
        let cache = VerdictCache::new(config.cache.clone(), Arc::clone(&metrics));
        let shared = Arc::new(Shared::new(Arc::new(cache), metrics));
        Ok(Arc::new(Self::new(config, credentials, shared)?))
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

    /// A request by digest answered before, from this replica's cache, with its answer encoded:
    /// the verdict and the bytes of every response field but the image. `None`: ask
    /// [`Engine::verify_with`].
    pub async fn answered(
        &self,
        image: &str,
        policy: Option<&str>,
        namespace: Option<&str>,
    ) -> Option<(Arc<Verdict>, bytes::Bytes)> {
        let started = Instant::now();
        let asked = request_key(image, policy.filter(|p| !p.is_empty()), namespace);
        let key = self.request_keys.get(&asked)?;
        let (verdict, wire) = self.shared.cache.get_local(&key).await?;
        (self.shared.metrics).record_answer(&verdict, true, &self.satisfied, started.elapsed());
        Some((verdict, wire))
    }

    pub async fn verify_with(
        self: &Arc<Self>,
        image: &str,
        policy: Option<&str>,
        options: Options,
    ) -> Result<Verdict, RequestError> {
        // One image: no batch around it (the cached answer is the hot path). A workload's
        // credentials key its verdicts: the memo, which knows none, answers only without them.
        let namespace = options.namespace.as_deref().filter(|n| !n.is_empty());
        if !options.bypass_cache
            && options.workload.is_none()
            && let Some((hit, _)) = self.answered(image, policy, namespace).await
        {
            let hit = Verdict::clone(&hit);
            return Ok(Verdict {
                cached: true,
                ..hit
            }
            .for_image(image));
        }
        let mut prepared = Prepared::read(
            &self.config.policies,
            image,
            policy,
            options.namespace.as_deref(),
        )?;
        prepared.workload = options.workload.clone();
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
        let (unique, slot) = request::prepare_batch(&self.config.policies, requests, options)?;
        let answers = join_all(unique.into_iter().map(|(p, o)| self.answer(p, o))).await;
        Ok(slot.into_iter().map(|at| answers[at].clone()).collect())
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
                Err(_) => Verdict::deadline_exceeded(&input, d.saturating_duration_since(started)),
            },
            None => work.await,
        }
        .for_image(input);
        let metrics = &self.shared.metrics;
        metrics.record_verdict(&verdict, &self.satisfied, started.elapsed());
        verdict
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
        let selected = self.policies(&p.policies);
        if let Some((findings, warnings)) = policy::static_denial(&selected, &p.image.to_string()) {
            return Verdict::deny(&p.input, findings)
                .with_warnings(warnings)
                .under_policies(selected.iter().map(|q| q.name.as_str()));
        }
        let source = self.source_for(&p.image, p.workload.as_deref());
        let scopes = self.scopes(&selected, &p.image, source.scope());
        if !bypass
            && !p.policies.is_empty()
            && let Some(hit) = self.remembered(&p, &scopes).await
        {
            return hit;
        }
        // The miss path lives on the heap: its future is large (about 16 KB), and a cached
        // answer would otherwise carry (and move) all of it with every request.
        Box::pin(self.verify_fresh(p, bypass, places, source, scopes)).await
    }

    /// The cached verdict, when the digest is already known (asked for, or a cached tag resolution).
    async fn remembered(&self, p: &Prepared, scopes: &Scopes) -> Option<Verdict> {
        let digest = match (p.image.digest(), p.image.tag()) {
            (Some(d), _) => {
                let key = scopes.verdicts.key(d.as_str());
                // A workload's credentials key the verdict: no memo any caller could reach.
                if let Some(request) = p.request_key.as_ref().filter(|_| p.workload.is_none()) {
                    self.request_keys.insert(request.clone(), Arc::from(key));
                }
                d.to_string()
            }
            (None, Some(tag)) => self.shared.cache.tag(&scopes.children.source, tag).await?,
            (None, None) => return None,
        };
        let hit = self.shared.cache.get(&scopes.verdicts.key(&digest)).await?;
        Some(Verdict {
            cached: true,
            ..hit
        })
    }

    /// Resolves and judges an image the cache did not answer, in its place, shared with
    /// concurrent callers asking the same question.
    async fn verify_fresh(
        self: &Arc<Self>,
        p: Prepared,
        bypass: bool,
        places: Option<&Places>,
        source: Arc<dyn Source>,
        scopes: Scopes,
    ) -> Verdict {
        // A verification starts here: it takes its place, held until it is answered.
        let place = places.map(|places| (places.take(), places.max()));
        if let Some((None, max)) = place {
            self.shared.metrics.shed.inc();
            return Verdict::shed(&p.input, max);
        }
        let _place = place.and_then(|(place, _)| place);
        if p.policies.is_empty() {
            return match self.resolve_shared(&p.image, source).await {
                Ok(m) => self.unmatched(&p, Some(&m)),
                Err(denial) => *denial,
            };
        }
        let engine = Arc::clone(self);
        let policies = p.policies.clone();
        let asked = (p.signed_for(), p.workload.clone());
        let children = scopes.children.clone();
        if let Some(digest) = p.image.digest().cloned() {
            // By digest, the evidence is fetched while the manifest is: two round trips, not three.
            let key = scopes.verdicts.key(digest.as_str());
            let (image, cache_key) = (p.image.clone(), key.clone());
            let work = async move {
                let (resolved, judged) = futures::join!(
                    engine.resolve_within_deadline(&image, Arc::clone(&source)),
                    engine.judge_within_deadline(&policies, source.as_ref(), &digest, &asked)
                );
                match resolved {
                    Ok(m) => engine.conclude(&m, judged, &children, &cache_key).await,
                    Err(denial) => {
                        // Stored before the in-flight entry is forgotten, so no caller falls between.
                        engine.shared.cache.put(&cache_key, &denial).await;
                        *denial
                    }
                }
            };
            return self.run_shared(key, work, &p.input).await;
        }
        let resolved = match self.resolve_shared(&p.image, Arc::clone(&source)).await {
            Ok(r) => r,
            Err(denial) => return *denial,
        };
        let digest = resolved.digest.clone();
        if let Some(tag) = p.image.tag() {
            let cache = &self.shared.cache;
            cache
                .put_tag(&scopes.children.source, tag, digest.as_str())
                .await;
        }
        let key = scopes.verdicts.key(digest.as_str());
        if !bypass && let Some(hit) = self.shared.cache.get(&key).await {
            return Verdict {
                cached: true,
                ..hit
            };
        }
        let cache_key = key.clone();
        let work = async move {
            let judged = engine
                .judge_within_deadline(&policies, source.as_ref(), &digest, &asked)
                .await;
            engine
                .conclude(&resolved, judged, &children, &cache_key)
                .await
        };
        self.run_shared(key, work, &p.input).await
    }

    /// The verdict judged for `manifest`, with its media type, cached under `key` (and, for an
    /// allowed index, its children recorded for the registry gate).
    async fn conclude(
        &self,
        manifest: &Manifest,
        judged: Verdict,
        children: &KeyScope,
        key: &str,
    ) -> Verdict {
        let verdict = Verdict {
            media_type: manifest.media_type.clone(),
            ..judged
        };
        let cache = &self.shared.cache;
        cache.record_children(children, manifest, &verdict).await;
        // Stored before the in-flight entry is forgotten, so no caller falls between.
        self.shared.cache.put(key, &verdict).await;
        verdict
    }

    /// What `selected` policies' verdicts for `image` are keyed by.
    fn scopes(&self, selected: &[&Policy], image: &ImageRef, source: String) -> Scopes {
        let fingerprints = selected.iter().map(|p| p.fingerprint).collect();
        let children = KeyScope::new(source, fingerprints, self.config.trust_fingerprint);
        // A verdict under `signed_identity: exact` holds for the tag it was asked by, too.
        let exact = selected.iter().any(|q| q.has_exact_signed_identity());
        let verdicts = children.for_tag(exact.then(|| image.tag().unwrap_or_default()));
        Scopes { verdicts, children }
    }

    /// For the registry gate: the digest of an allowed index that lists `image` (a registry
    /// reference by digest) as one of its platform manifests, while that index's verdict holds.
    pub async fn allowed_parent_index(&self, image: &str) -> Option<String> {
        let p = Prepared::read(&self.config.policies, image, None, None).ok()?;
        let digest = p.image.digest()?.to_string();
        if p.policies.is_empty() {
            return None;
        }
        let source = self.source_for(&p.image, None);
        let scopes = self.scopes(&self.policies(&p.policies), &p.image, source.scope());
        self.shared
            .cache
            .allowed_parent(&scopes.children, &digest)
            .await
    }

    /// For the registry gate: the manifest `image` names now (fetched and checked like any
    /// other), or the denial that explains why it could not be read.
    pub async fn fetch_manifest(self: &Arc<Self>, image: &str) -> Result<Manifest, Box<Verdict>> {
        let parsed = ImageRef::parse(image).map_err(|e| {
            let finding = Finding::new(Code::RegistryError, e.to_string());
            Box::new(Verdict::deny(image, vec![finding]))
        })?;
        let source = self.source_for(&parsed, None);
        self.resolve_within_deadline(&parsed, source).await
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
        verdict.unwrap_or_else(|| Verdict::internal_error(what))
    }

    /// Resolves `image`, sharing the work with concurrent callers asking for the same reference.
    async fn resolve_shared(
        self: &Arc<Self>,
        image: &ImageRef,
        source: Arc<dyn Source>,
    ) -> Result<Arc<Manifest>, Box<Verdict>> {
        let key = (source.scope(), image.to_string());
        let (engine, owned) = (Arc::clone(self), image.clone());
        let work = async move {
            let resolved = engine.resolve_within_deadline(&owned, source).await;
            resolved.map(Arc::new)
        };
        let (resolved, joined) = self.shared.resolutions.run(key, work).await;
        if joined {
            self.shared.metrics.coalesced_waits.inc();
        }
        resolved.unwrap_or_else(|| Err(Box::new(Verdict::internal_error(&image.to_string()))))
    }

    /// The verdict for an image no policy applies to.
    fn unmatched(&self, p: &Prepared, manifest: Option<&Manifest>) -> Verdict {
        let default_allows = self.config.default == DefaultAction::Allow && manifest.is_some();
        let subject = p.image.policy_subject();
        let verdict = Verdict::unmatched(&p.input, &subject, p.named, default_allows);
        match manifest {
            Some(m) => verdict.for_digest(&m.digest, m.media_type.clone()),
            None => verdict,
        }
    }

    /// Where `image` is read from, with the credentials of `workload` when it has some.
    fn source_for(&self, image: &ImageRef, workload: Option<&Workload>) -> Arc<dyn Source> {
        match (image, &self.source_override) {
            (_, Some(source)) => Arc::clone(source),
            (ImageRef::Registry(r), None) => self.registry_source(r, workload),
            (ImageRef::Layout(l), None) => Arc::new(LayoutSource::new(&l.path)),
        }
    }

    fn registry_source(&self, r: &RegistryRef, workload: Option<&Workload>) -> Arc<dyn Source> {
        let access = workload.map(|w| w.access(&r.registry, &r.repository));
        match &self.source_override {
            Some(source) => Arc::clone(source),
            None => Arc::new(self.registry.source_with(r, access.unwrap_or_default())),
        }
    }

    async fn resolve_within_deadline(
        &self,
        image: &ImageRef,
        source: Arc<dyn Source>,
    ) -> Result<Manifest, Box<Verdict>> {
        let deadline = self.config.limits.deadline;
        let started = Instant::now();
        let reference = ManifestRef::of(image);
        source.warm_up(&reference);
        let fetch = source.manifest(&reference, self.config.limits.max_manifest_bytes);
        let result = match tokio::time::timeout(deadline, fetch).await {
            Ok(Ok(manifest)) => Ok(manifest),
            Ok(Err(e)) => Err(Verdict::deny(image.to_string(), vec![fetch_finding(&e)])),
            Err(_) => Err(Verdict::deadline_exceeded(&image.to_string(), deadline)),
        };
        let metrics = &self.shared.metrics;
        metrics.observe_step("resolve", started.elapsed());
        result.map_err(Box::new)
    }

    async fn judge_within_deadline(
        &self,
        policy_indices: &[usize],
        source: &dyn Source,
        digest: &Digest,
        asked: &Asked,
    ) -> Verdict {
        let deadline = self.config.limits.deadline;
        let policies = self.policies(policy_indices);
        let name = format!("{}@{digest}", source.name());
        let judged = self.judge(&policies, source, digest, asked);
        let verdict = match tokio::time::timeout(deadline, judged).await {
            Ok(v) => v,
            Err(_) => Verdict::deadline_exceeded(&name, deadline),
        };
        let media_type = verdict.media_type.clone();
        verdict
            .for_digest(digest, media_type)
            .under_policies(policies.iter().map(|p| p.name.as_str()))
    }

    /// Gathers the evidence for one digest once, verifies it, then evaluates every applicable
    /// policy on what was verified.
    async fn judge(
        &self,
        policies: &[&Policy],
        source: &dyn Source,
        digest: &Digest,
        (signed_for, workload): &Asked,
    ) -> Verdict {
        let metrics = &self.shared.metrics;
        let image = format!("{}@{digest}", source.name());
        let (plan, group_of) = policy::plan(policies);
        let started = Instant::now();
        let source_at = |r: &RegistryRef| self.registry_source(r, workload.as_deref());
        let gathered = gather::gather(&plan, source, &source_at, digest, &self.config.limits).await;
        metrics.observe_step("fetch_evidence", started.elapsed());
        let wanted = !plan.buildkit_types.is_empty();
        let buildkit = self
            .buildkit(gathered.buildkit, wanted, digest, signed_for)
            .await;

        let started = Instant::now();
        let notation = policy::notation_by_group(policies, &group_of, plan.groups.len());
        let authorities = policy::artifact_notation_authorities(policies);
        let artifact_notation: Vec<NotationTrust<'_>> = authorities
            .into_iter()
            .map(policy::NotationAuthority::trust)
            .collect();
        let (groups, artifacts) = self.trust.verify_all(
            gathered.groups,
            &notation,
            gathered.artifacts,
            &artifact_notation,
            digest,
            &source.name(),
            jiff::Timestamp::now(),
        );
        let groups: Vec<_> = groups
            .into_iter()
            .map(|g| g.map_err(|e| fetch_finding(&e)))
            .collect();
        let artifacts = artifacts.map_err(|e| fetch_finding(&e));
        metrics.observe_step("verify", started.elapsed());

        let started = Instant::now();
        let configs = gathered.configs.map_err(|e| fetch_finding(&e));
        let found = policy::Found {
            groups: &groups,
            group_of: &group_of,
            artifacts: artifacts.as_deref(),
            buildkit: buildkit.as_ref(),
            configs: configs.as_deref(),
        };
        let now = jiff::Timestamp::now();
        let evaluation = policy::evaluate(policies, &image, digest, signed_for, &found, now);
        metrics.observe_step("policy", started.elapsed());
        let signatures = groups.iter().flatten().flat_map(|(s, _)| s);
        let artifact_signatures = artifacts.iter().flatten().flat_map(|(.., s)| s);
        let signed_until =
            crate::verify::evidence::holds_until(signatures.chain(artifact_signatures));
        let bounds = [signed_until, evaluation.image_rules_until];
        Verdict::judged(
            &image,
            evaluation.allowed,
            evaluation.findings,
            evaluation.warnings,
            bounds,
        )
    }

    /// BuildKit's statements, parsed, and whether an index vouches for a platform manifest.
    async fn buildkit(
        &self,
        read: Result<BuildkitEvidence, FetchError>,
        wanted: bool,
        digest: &Digest,
        signed_for: &policy::SignedFor,
    ) -> Result<policy::BuildkitStatements, Finding> {
        let b = read.map_err(|e| fetch_finding(&e))?;
        // A platform manifest's statements live in its index: an allowed verdict of the index
        // that still holds vouches for them (as the gate's child records say).
        let platform = format!("{}@{digest}", signed_for.repository);
        let parent_allowed =
            !b.is_index && wanted && self.allowed_parent_index(&platform).await.is_some();
        Ok(policy::BuildkitStatements::read(
            b.is_index,
            b.platforms,
            b.statements,
            parent_allowed,
        ))
    }
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
