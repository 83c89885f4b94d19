//! The engine: for each request, choose the policies, resolve the image to a digest, gather the
//! evidence once, run the pure verification steps, evaluate the policies and build the verdict.
//! It is the only module that calls both `evidence` and `verify`. Every error path ends in a denial.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use futures::future::join_all;

use crate::config::{Config, DefaultAction};
use crate::digest::Digest;
use crate::evidence::auth::Credentials;
use crate::evidence::layout::LayoutSource;
use crate::evidence::registry::RegistryClient;
use crate::evidence::{FetchError, Manifest, ManifestKind, ManifestRef, Source};
use crate::policy::{self, Policy};
use crate::reference::{ImageRef, ReferenceError};
use crate::verdict::{Code, Finding, Verdict};
use crate::verify::keys::PublicKey;
use crate::verify::signature::{self, SignatureLayer, SignatureOutcome, Trust};
use crate::verify::sigstore::SigstoreRoot;

/// Media types (prefix) of Sigstore bundles attached as referrers.
const SIGSTORE_BUNDLE_TYPE: &str = "application/vnd.dev.sigstore.bundle";
/// Bundles may be larger than simple-signing payloads (certificates, proofs).
const MIN_BUNDLE_BYTES: u64 = 1024 * 1024;
/// Signature layer blobs fetched at once for one image.
const BLOB_CONCURRENCY: usize = 8;

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

pub struct Engine {
    config: Arc<Config>,
    registry: Arc<RegistryClient>,
    keys: Vec<(String, Arc<PublicKey>)>,
    roots: Vec<Arc<SigstoreRoot>>,
    offline: SigstoreRoot,
}

/// A parsed request with the policies that apply to it.
struct Prepared<'a> {
    input: String,
    image: ImageRef,
    policies: Vec<&'a Policy>,
    named: bool,
}

/// An image resolved to the manifest a verdict will hold for.
struct Resolved {
    source: Arc<dyn Source>,
    manifest: Manifest,
}

impl Engine {
    pub fn new(config: Config, credentials: Credentials) -> anyhow::Result<Self> {
        let registry = RegistryClient::new(
            config.registries.clone(),
            credentials,
            config.limits.connect_timeout,
        )?;
        let keys = config
            .keys
            .iter()
            .map(|(n, k)| (n.clone(), Arc::clone(k)))
            .collect();
        let roots = config.sigstore.values().cloned().collect();
        Ok(Self {
            config: Arc::new(config),
            registry: Arc::new(registry),
            keys,
            roots,
            offline: SigstoreRoot::offline(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Verifies one image. `policy` names a configured policy, or `None` for every matching one.
    pub async fn verify(&self, image: &str, policy: Option<&str>) -> Result<Verdict, RequestError> {
        let mut verdicts = self
            .verify_batch(&[(image.to_owned(), policy.map(str::to_owned))])
            .await
            .map_err(|e| match e {
                RequestError::InBatch { error, .. } => *error,
                e => e,
            })?;
        Ok(verdicts.remove(0))
    }

    /// Verifies several images; verdicts in request order. Each (image, digest, policy selection) is
    /// verified once however often it appears. Any malformed request fails the whole batch.
    pub async fn verify_batch(
        &self,
        requests: &[(String, Option<String>)],
    ) -> Result<Vec<Verdict>, RequestError> {
        let prepared = requests
            .iter()
            .enumerate()
            .map(|(index, (image, policy))| {
                self.prepare(image, policy.as_deref())
                    .map_err(|e| RequestError::InBatch {
                        index,
                        error: Box::new(e),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;

        // Resolve each distinct reference once, then judge each distinct (digest, policies) once.
        let mut resolutions: HashMap<String, usize> = HashMap::new();
        let mut unique_refs: Vec<&ImageRef> = Vec::new();
        for p in &prepared {
            resolutions.entry(p.image.to_string()).or_insert_with(|| {
                unique_refs.push(&p.image);
                unique_refs.len() - 1
            });
        }
        let needs_resolution: Vec<bool> = unique_refs
            .iter()
            .map(|r| {
                prepared
                    .iter()
                    .any(|p| p.image == **r && self.must_resolve(p))
            })
            .collect();
        let resolved: Vec<Option<Result<Arc<Resolved>, Verdict>>> = join_all(
            unique_refs
                .iter()
                .zip(&needs_resolution)
                .map(|(r, needed)| async move {
                    if *needed {
                        Some(self.resolve_within_deadline(r).await.map(Arc::new))
                    } else {
                        None
                    }
                }),
        )
        .await;

        let mut judged: HashMap<(String, String, Vec<String>), Verdict> = HashMap::new();
        let mut jobs = Vec::new();
        let mut keys_in_order = Vec::new();
        for p in &prepared {
            let slot = &resolved[resolutions[&p.image.to_string()]];
            let key = match slot {
                Some(Ok(r)) => Some((
                    r.source.name(),
                    r.manifest.digest.to_string(),
                    p.policies
                        .iter()
                        .map(|p| p.name.clone())
                        .collect::<Vec<_>>(),
                )),
                _ => None,
            };
            if let (Some(key), Some(Ok(r))) = (&key, slot)
                && !judged.contains_key(key)
                && !keys_in_order.contains(key)
            {
                keys_in_order.push(key.clone());
                jobs.push(self.judge_within_deadline(&p.policies, Arc::clone(r)));
            }
        }
        for (key, verdict) in keys_in_order.into_iter().zip(join_all(jobs).await) {
            judged.insert(key, verdict);
        }

        Ok(prepared
            .iter()
            .map(|p| {
                let slot = &resolved[resolutions[&p.image.to_string()]];
                let mut verdict = match slot {
                    None => self.unmatched(p, None),
                    Some(Err(denial)) => denial.clone(),
                    Some(Ok(r)) if p.policies.is_empty() => self.unmatched(p, Some(&r.manifest)),
                    Some(Ok(r)) => {
                        let key = (
                            r.source.name(),
                            r.manifest.digest.to_string(),
                            p.policies
                                .iter()
                                .map(|p| p.name.clone())
                                .collect::<Vec<_>>(),
                        );
                        judged[&key].clone()
                    }
                };
                verdict.image = p.input.clone();
                verdict
            })
            .collect())
    }

    fn prepare(&self, image: &str, policy: Option<&str>) -> Result<Prepared<'_>, RequestError> {
        let parsed = ImageRef::parse(image)?;
        let policy = policy.filter(|p| !p.is_empty());
        let policies = policy::select(&self.config.policies, &parsed.policy_subject(), policy)?;
        Ok(Prepared {
            input: image.to_owned(),
            image: parsed,
            policies,
            named: policy.is_some(),
        })
    }

    /// Unmatched images under `default: deny` are denied without touching the registry; everything
    /// else needs the digest the verdict will hold for.
    fn must_resolve(&self, p: &Prepared<'_>) -> bool {
        !p.policies.is_empty() || (!p.named && self.config.default == DefaultAction::Allow)
    }

    /// The verdict for an image no policy applies to.
    fn unmatched(&self, p: &Prepared<'_>, manifest: Option<&Manifest>) -> Verdict {
        let subject = p.image.policy_subject();
        let mut verdict = match (p.named, self.config.default, manifest) {
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
        if let Some(m) = manifest {
            verdict.digest = m.digest.to_string();
            verdict.media_type = m.media_type.clone();
        }
        verdict
    }

    fn source_for(&self, image: &ImageRef) -> Arc<dyn Source> {
        match image {
            ImageRef::Registry(r) => Arc::new(self.registry.source(r)),
            ImageRef::Layout(l) => Arc::new(LayoutSource::new(&l.path)),
        }
    }

    async fn resolve_within_deadline(&self, image: &ImageRef) -> Result<Resolved, Verdict> {
        let deadline = self.config.limits.deadline;
        match tokio::time::timeout(deadline, self.resolve(image)).await {
            Ok(r) => r,
            Err(_) => Err(deadline_exceeded(&image.to_string(), deadline)),
        }
    }

    async fn resolve(&self, image: &ImageRef) -> Result<Resolved, Verdict> {
        let source = self.source_for(image);
        let reference = match (image.digest(), image.tag()) {
            (Some(d), _) => ManifestRef::Digest(d.clone()),
            (None, Some(t)) => ManifestRef::Tag(t.to_owned()),
            (None, None) => ManifestRef::Tag("latest".to_owned()),
        };
        match source
            .manifest(&reference, self.config.limits.max_manifest_bytes)
            .await
        {
            Ok(manifest) => Ok(Resolved { source, manifest }),
            Err(e) => Err(Verdict::deny(image.to_string(), vec![e.finding()])),
        }
    }

    async fn judge_within_deadline(
        &self,
        policies: &[&Policy],
        resolved: Arc<Resolved>,
    ) -> Verdict {
        let deadline = self.config.limits.deadline;
        let name = format!("{}@{}", resolved.source.name(), resolved.manifest.digest);
        let mut verdict =
            match tokio::time::timeout(deadline, self.judge(policies, &resolved)).await {
                Ok(v) => v,
                Err(_) => deadline_exceeded(&name, deadline),
            };
        verdict.digest = resolved.manifest.digest.to_string();
        verdict.media_type = resolved.manifest.media_type.clone();
        verdict.policy = policies
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(",");
        verdict
    }

    /// Gathers the evidence for one digest once, then evaluates every applicable policy on it.
    async fn judge(&self, policies: &[&Policy], resolved: &Resolved) -> Verdict {
        let digest = &resolved.manifest.digest;
        let image = format!("{}@{digest}", resolved.source.name());
        let needs_signatures = policies.iter().any(|p| p.signatures.is_some());
        let outcomes = if needs_signatures {
            let source = resolved.source.as_ref();
            let (layers, bundles) = futures::join!(
                self.signature_layers(source, digest),
                self.referrer_bundles(source, digest)
            );
            match (layers, bundles) {
                (Ok(layers), Ok(bundles)) => self.check_signatures(&layers, &bundles, digest),
                (Err(e), _) | (_, Err(e)) => return Verdict::deny(&image, vec![e.finding()]),
            }
        } else {
            Vec::new()
        };

        let mut allowed = true;
        let mut findings = Vec::new();
        for p in policies {
            if let Some(req) = &p.signatures {
                let (held, f) = policy::evaluate_signatures(&p.name, req, digest, &outcomes);
                allowed &= held;
                findings.extend(f);
            }
        }
        if allowed {
            Verdict::allow(&image, findings)
        } else {
            findings.retain(|f| f.code != Code::Satisfied);
            Verdict::deny(&image, findings)
        }
    }

    /// The cosign signature layers under `sha256-<hex>.sig`: payload blobs with their annotations.
    /// A missing tag means no signatures; every other failure is an error.
    async fn signature_layers(
        &self,
        source: &dyn Source,
        digest: &Digest,
    ) -> Result<Vec<SignatureLayer>, FetchError> {
        let limits = &self.config.limits;
        let tag = ManifestRef::Tag(digest.cosign_tag("sig"));
        let manifest = match source.manifest(&tag, limits.max_manifest_bytes).await {
            Ok(m) => m,
            Err(FetchError::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let what = format!("signatures of {}@{digest}", source.name());
        let ManifestKind::Image { layers } = manifest.kind else {
            return Err(FetchError::Protocol {
                what,
                detail: "the .sig tag points to an index, not a signature manifest".into(),
            });
        };
        if layers.len() > limits.max_signatures {
            return Err(FetchError::LimitExceeded {
                what: format!("{what}: {} signature layers", layers.len()),
                limit: limits.max_signatures as u64,
                unit: "signatures",
            });
        }
        let mut wanted = Vec::with_capacity(layers.len());
        for layer in layers {
            if layer.size > limits.max_signature_layer_bytes {
                return Err(FetchError::LimitExceeded {
                    what: format!(
                        "{what}: signature layer {} ({} bytes)",
                        layer.digest, layer.size
                    ),
                    limit: limits.max_signature_layer_bytes,
                    unit: "bytes",
                });
            }
            let layer_digest = Digest::parse(&layer.digest).map_err(|e| FetchError::Protocol {
                what: what.clone(),
                detail: e.to_string(),
            })?;
            wanted.push((layer_digest, layer.annotations));
        }
        let max = limits.max_signature_layer_bytes;
        let fetched: Vec<Result<SignatureLayer, FetchError>> = futures::stream::iter(wanted)
            .map(|(d, annotations)| async move {
                let payload = source.blob(&d, max).await?;
                Ok(SignatureLayer {
                    payload,
                    annotations,
                })
            })
            .buffered(BLOB_CONCURRENCY)
            .collect()
            .await;
        fetched.into_iter().collect()
    }

    /// Sigstore bundles attached to `digest` as OCI referrers (the referrers API, or the
    /// `sha256-<hex>` fallback tag). Each referring manifest is read itself, since fallback indexes
    /// may lack the descriptors' artifact types, and must name `digest` as its subject.
    async fn referrer_bundles(
        &self,
        source: &dyn Source,
        digest: &Digest,
    ) -> Result<Vec<sigstore_types::Bundle>, FetchError> {
        let limits = &self.config.limits;
        let Some(index) = source.referrers(digest, limits.max_manifest_bytes).await? else {
            return Ok(Vec::new());
        };
        let what = format!("referrers of {}@{digest}", source.name());
        let ManifestKind::Index { manifests } = index.kind else {
            return Err(FetchError::Protocol {
                what,
                detail: "the referrers answer is not an index".into(),
            });
        };
        let candidates: Vec<_> = manifests
            .into_iter()
            .filter(|d| {
                d.artifact_type
                    .as_deref()
                    .is_none_or(|t| t.starts_with(SIGSTORE_BUNDLE_TYPE))
            })
            .collect();
        if candidates.len() > limits.max_signatures {
            return Err(FetchError::LimitExceeded {
                what: format!("{what}: {} referrers", candidates.len()),
                limit: limits.max_signatures as u64,
                unit: "referrers",
            });
        }
        let max_manifest = limits.max_manifest_bytes;
        let max_bundle = limits.max_signature_layer_bytes.max(MIN_BUNDLE_BYTES);
        let fetched: Vec<Result<Option<sigstore_types::Bundle>, FetchError>> =
            futures::stream::iter(candidates)
                .map(|d| {
                    let what = what.clone();
                    async move {
                        let d = Digest::parse(&d.digest).map_err(|e| FetchError::Protocol {
                            what: what.clone(),
                            detail: e.to_string(),
                        })?;
                        let m = source
                            .manifest(&ManifestRef::Digest(d), max_manifest)
                            .await?;
                        let is_bundle = m
                            .artifact_type
                            .as_deref()
                            .is_some_and(|t| t.starts_with(SIGSTORE_BUNDLE_TYPE));
                        let about_this_image = m
                            .subject
                            .as_ref()
                            .is_some_and(|s| s.digest == digest.as_str());
                        let ManifestKind::Image { layers } = m.kind else {
                            return Ok(None);
                        };
                        let Some(layer) = layers
                            .into_iter()
                            .find(|l| l.media_type.starts_with(SIGSTORE_BUNDLE_TYPE))
                        else {
                            return Ok(None);
                        };
                        if !is_bundle || !about_this_image {
                            return Ok(None);
                        }
                        if layer.size > max_bundle {
                            return Err(FetchError::LimitExceeded {
                                what: format!("{what}: bundle {}", layer.digest),
                                limit: max_bundle,
                                unit: "bytes",
                            });
                        }
                        let ld =
                            Digest::parse(&layer.digest).map_err(|e| FetchError::Protocol {
                                what: what.clone(),
                                detail: e.to_string(),
                            })?;
                        let bytes = source.blob(&ld, max_bundle).await?;
                        // An unparsable bundle is a signature that does not verify, not an error.
                        Ok(std::str::from_utf8(&bytes)
                            .ok()
                            .and_then(|json| sigstore_types::Bundle::from_json(json).ok()))
                    }
                })
                .buffered(BLOB_CONCURRENCY)
                .collect()
                .await;
        let mut bundles = Vec::new();
        for f in fetched {
            if let Some(b) = f? {
                bundles.push(b);
            }
        }
        Ok(bundles)
    }

    fn check_signatures(
        &self,
        layers: &[SignatureLayer],
        bundles: &[sigstore_types::Bundle],
        digest: &Digest,
    ) -> Vec<SignatureOutcome> {
        let keys: Vec<(String, &PublicKey)> = self
            .keys
            .iter()
            .map(|(n, k)| (n.clone(), k.as_ref()))
            .collect();
        let roots: Vec<&SigstoreRoot> = self.roots.iter().map(Arc::as_ref).collect();
        let trust = Trust {
            keys: &keys,
            roots: &roots,
            offline: &self.offline,
        };
        layers
            .iter()
            .map(|l| signature::check_layer(l, &trust, digest))
            .chain(
                bundles
                    .iter()
                    .filter_map(|b| signature::check_bundle(b, &trust, digest)),
            )
            .collect()
    }
}

fn deadline_exceeded(what: &str, deadline: std::time::Duration) -> Verdict {
    Verdict::deny(
        what,
        vec![Finding::new(
            Code::LimitExceeded,
            format!("verifying {what} did not finish within the deadline of {deadline:?}"),
        )],
    )
    .retryable()
}
