//! Evidence discovery: which tags, referrers and blobs one verification reads for a digest
//! (cosign's `sha256-<hex>.sig`/`.att` tags, OCI 1.1 referrers and their `sha256-<hex>` fallback
//! tag, image configs), within one byte budget, each distinct blob once and up to its declared
//! size. It knows OCI and cosign conventions, never policies or verdicts.

use futures::StreamExt;

use super::{FetchError, ManifestKind, ManifestRef, Source};

use crate::digest::Digest;
use crate::limits::Limits;

/// What the policies of one verification need read.
#[derive(Debug, Clone, Copy, Default)]
pub struct Needs {
    pub signatures: bool,
    pub attestations: bool,
    /// Notation signatures (OCI referrers of type `application/vnd.cncf.notary.signature`).
    pub notation: bool,
}

/// Media types (prefix) of Sigstore bundles attached as referrers.
const SIGSTORE_BUNDLE_TYPE: &str = "application/vnd.dev.sigstore.bundle";
/// The artifact type of Notation signatures (often only the config's media type).
const NOTATION_SIGNATURE_TYPE: &str = "application/vnd.cncf.notary.signature";
/// Media types of Notation envelopes.
const NOTATION_ENVELOPE_TYPES: &[&str] = &["application/jose+json", "application/cose"];
/// Bundles may be larger than simple-signing payloads (certificates, proofs).
const MIN_BUNDLE_BYTES: u64 = 1024 * 1024;
/// Signature layer blobs fetched at once for one image.
const BLOB_CONCURRENCY: usize = 8;

/// The evidence bytes one verification may still read (`limits.max_evidence_bytes`), shared by
/// its concurrent fetches, and the blob digests it has already read (each is read once).
pub(crate) struct EvidenceBudget {
    limit: u64,
    remaining: std::sync::atomic::AtomicU64,
    seen: std::sync::Mutex<std::collections::HashSet<Digest>>,
}

impl EvidenceBudget {
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            limit,
            remaining: std::sync::atomic::AtomicU64::new(limit),
            seen: std::sync::Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// Takes `bytes` from the budget, or fails naming `what` when they do not fit.
    pub(super) fn charge(&self, bytes: u64, what: &str) -> Result<(), FetchError> {
        use std::sync::atomic::Ordering;
        self.remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(bytes)
            })
            .map(|_| ())
            .map_err(|_| FetchError::LimitExceeded {
                what: format!(
                    "{what}: the evidence of one verification (limits.max_evidence_bytes)"
                ),
                limit: self.limit,
                unit: "bytes",
            })
    }

    /// True the first time `digest` is offered: identical blobs are read and verified once.
    fn first_time(&self, digest: &Digest) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(digest.clone())
    }
}

pub(crate) use crate::verify::evidence::{Artifact, Evidence};

/// The layers under cosign's `sha256-<hex>.<suffix>` tag (`sig`, `att`): each blob with the
/// annotations beside it. A missing tag means none; every other failure is an error.
async fn tagged_layers(
    source: &dyn Source,
    digest: &Digest,
    suffix: &str,
    max_layer_bytes: u64,
    budget: &EvidenceBudget,
    limits: &Limits,
) -> Result<Vec<(Vec<u8>, std::collections::BTreeMap<String, String>)>, FetchError> {
    let tag = ManifestRef::Tag(digest.cosign_tag(suffix));
    let manifest = match source.manifest(&tag, limits.max_manifest_bytes).await {
        Ok(m) => m,
        Err(FetchError::NotFound { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let what = format!(".{suffix} evidence of {}@{digest}", source.name());
    budget.charge(manifest.size, &what)?;
    let ManifestKind::Image { layers } = manifest.kind else {
        return Err(FetchError::Protocol {
            what,
            detail: format!("the .{suffix} tag points to an index, not an image manifest"),
        });
    };
    if layers.len() > limits.max_signatures {
        return Err(FetchError::LimitExceeded {
            what: format!("{what}: {} layers", layers.len()),
            limit: limits.max_signatures as u64,
            unit: "layers",
        });
    }
    let mut wanted = Vec::with_capacity(layers.len());
    let mut distinct = std::collections::HashSet::new();
    for layer in layers {
        if layer.size > max_layer_bytes {
            return Err(FetchError::LimitExceeded {
                what: format!("{what}: layer {} ({} bytes)", layer.digest, layer.size),
                limit: max_layer_bytes,
                unit: "bytes",
            });
        }
        let layer_digest = Digest::parse(&layer.digest).map_err(|e| FetchError::Protocol {
            what: what.clone(),
            detail: e.to_string(),
        })?;
        // The same layer twice is one signature. (The same blob under other annotations is
        // another: cosign's payload is identical for every signer of an image.)
        if !distinct.insert((layer_digest.clone(), layer.annotations.clone())) {
            continue;
        }
        // Each copy held counts, so the budget bounds memory, not only traffic.
        budget.charge(layer.size, &what)?;
        wanted.push((layer_digest, layer.size, layer.annotations));
    }
    // Each distinct blob is read once, whatever number of layers name it.
    let mut blobs: Vec<(Digest, u64)> = Vec::new();
    for (d, size, _) in &wanted {
        if !blobs.iter().any(|(b, _)| b == d) {
            blobs.push((d.clone(), *size));
        }
    }
    let fetched: Vec<Result<(Digest, Vec<u8>), FetchError>> = futures::stream::iter(blobs)
        .map(|(d, size)| async move {
            let bytes = read_declared(source, &d, size).await?;
            Ok((d, bytes))
        })
        .buffered(BLOB_CONCURRENCY)
        .collect()
        .await;
    let fetched: std::collections::HashMap<Digest, Vec<u8>> =
        fetched.into_iter().collect::<Result<_, _>>()?;
    Ok(wanted
        .into_iter()
        .filter_map(|(d, _, annotations)| fetched.get(&d).map(|bytes| (bytes.clone(), annotations)))
        .collect())
}

/// The evidence `needs` asks for `digest` from `source`: `.sig` and `.att` layers and referrer
/// bundles, read under the verification's byte budget.
pub(crate) async fn gather(
    needs: Needs,
    source: &dyn Source,
    digest: &Digest,
    budget: &EvidenceBudget,
    limits: &Limits,
) -> Result<Evidence, FetchError> {
    let (needs_signatures, needs_attestations) = (needs.signatures, needs.attestations);
    let needs_notation = needs.notation;
    let skip = || async { Ok(Vec::new()) };
    let (sig_layers, att_layers, bundles) = futures::join!(
        async {
            if needs_signatures {
                tagged_layers(
                    source,
                    digest,
                    "sig",
                    limits.max_signature_layer_bytes,
                    budget,
                    limits,
                )
                .await
            } else {
                skip().await
            }
        },
        async {
            if needs_attestations {
                tagged_layers(
                    source,
                    digest,
                    "att",
                    limits.max_attestation_bytes,
                    budget,
                    limits,
                )
                .await
            } else {
                skip().await
            }
        },
        referrers(source, digest, needs_notation, budget, limits)
    );
    let (bundles, notation) = bundles?;
    Ok(Evidence {
        needs_signatures,
        needs_attestations,
        sig_layers: sig_layers?,
        att_layers: att_layers?,
        bundles,
        notation,
        subject: None,
    })
}

/// The media type and size of the manifest `digest` in `source` (read and hashed), which Notation
/// signatures name beside its digest.
pub(crate) async fn subject_descriptor(
    source: &dyn Source,
    digest: &Digest,
    budget: &EvidenceBudget,
    limits: &Limits,
) -> Result<(String, u64), FetchError> {
    let m = source
        .manifest(
            &ManifestRef::Digest(digest.clone()),
            limits.max_manifest_bytes,
        )
        .await?;
    budget.charge(m.size, &format!("manifest of {}@{digest}", source.name()))?;
    Ok((m.media_type, m.size))
}

/// The image config of `digest`, or of every platform when it is an index: (which, config).
/// Each is fetched by the digest its verified manifest names, and hashed.
pub(crate) async fn image_configs(
    source: &dyn Source,
    digest: &Digest,
    budget: &EvidenceBudget,
    limits: &Limits,
) -> Result<Vec<(String, serde_json::Value)>, FetchError> {
    let what = format!("image config of {}@{digest}", source.name());
    let top = source
        .manifest(
            &ManifestRef::Digest(digest.clone()),
            limits.max_manifest_bytes,
        )
        .await?;
    budget.charge(top.size, &what)?;
    let mut images = Vec::new();
    match &top.kind {
        ManifestKind::Image { .. } => images.push(top.clone()),
        ManifestKind::Index { manifests } => {
            if manifests.len() > limits.max_signatures {
                return Err(FetchError::LimitExceeded {
                    what: format!("{what}: {} platforms", manifests.len()),
                    limit: limits.max_signatures as u64,
                    unit: "platforms",
                });
            }
            // Image rules are about what runs: attestation manifests are evidence, not platforms.
            for d in manifests.iter().filter(|d| !d.is_unrunnable()) {
                let d = Digest::parse(&d.digest).map_err(|e| FetchError::Protocol {
                    what: what.clone(),
                    detail: e.to_string(),
                })?;
                let m = source
                    .manifest(&ManifestRef::Digest(d), limits.max_manifest_bytes)
                    .await?;
                budget.charge(m.size, &what)?;
                images.push(m);
            }
        }
    }
    let mut out = Vec::new();
    for m in images {
        let Some(config) = &m.config else {
            return Err(FetchError::Protocol {
                what: what.clone(),
                detail: format!("manifest {} has no config", m.digest),
            });
        };
        let d = Digest::parse(&config.digest).map_err(|e| FetchError::Protocol {
            what: what.clone(),
            detail: e.to_string(),
        })?;
        if config.size > limits.max_manifest_bytes {
            return Err(FetchError::LimitExceeded {
                what: format!("{what}: config {d}"),
                limit: limits.max_manifest_bytes,
                unit: "bytes",
            });
        }
        budget.charge(config.size, &what)?;
        let bytes = read_declared(source, &d, config.size).await?;
        // The runtime reads the config with Go's encoding/json: a document it would read
        // differently (keys that fold together) is refused, not interpreted.
        let json = crate::gojson::from_slice(&bytes).map_err(|e| FetchError::Protocol {
            what: what.clone(),
            detail: format!("the config {d} is refused: {e}"),
        })?;
        let which = if top.is_index() {
            format!("platform {}", m.digest)
        } else {
            "the image".to_owned()
        };
        out.push((which, json));
    }
    Ok(out)
}

/// The descriptors of `digest`'s referrers (the referrers API or the fallback tag, under the
/// budget) whose artifact type `wanted` accepts, or that name none (fallback indexes may omit it:
/// each manifest is read before it counts); at most `max_signatures` of them.
async fn referrer_candidates(
    source: &dyn Source,
    digest: &Digest,
    what: &str,
    budget: &EvidenceBudget,
    limits: &Limits,
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<super::manifest::Descriptor>, FetchError> {
    let Some(index) = source.referrers(digest, limits.max_manifest_bytes).await? else {
        return Ok(Vec::new());
    };
    budget.charge(index.size, what)?;
    let ManifestKind::Index { manifests } = index.kind else {
        return Err(FetchError::Protocol {
            what: what.to_owned(),
            detail: "the referrers answer is not an index".into(),
        });
    };
    let candidates: Vec<_> = manifests
        .into_iter()
        .filter(|d| d.artifact_type.as_deref().is_none_or(&wanted))
        .collect();
    if candidates.len() > limits.max_signatures {
        return Err(FetchError::LimitExceeded {
            what: format!("{what}: {} referrers", candidates.len()),
            limit: limits.max_signatures as u64,
            unit: "referrers",
        });
    }
    Ok(candidates)
}

/// A referrer read: a Sigstore bundle or a Notation envelope (bytes, media type).
enum Referrer {
    Bundle(sigstore_types::Bundle),
    Notation(Vec<u8>, String),
}

type Referrers = (Vec<sigstore_types::Bundle>, Vec<(Vec<u8>, String)>);

/// Sigstore bundles and (when `notation`) Notation envelopes attached to `digest` as OCI
/// referrers (the referrers API, or the `sha256-<hex>` fallback tag). Each referring manifest is
/// read itself, since fallback indexes may lack the descriptors' artifact types, and must name
/// `digest` as its subject.
async fn referrers(
    source: &dyn Source,
    digest: &Digest,
    notation: bool,
    budget: &EvidenceBudget,
    limits: &Limits,
) -> Result<Referrers, FetchError> {
    let what = format!("referrers of {}@{digest}", source.name());
    let candidates = referrer_candidates(source, digest, &what, budget, limits, |t| {
        t.starts_with(SIGSTORE_BUNDLE_TYPE) || (notation && t == NOTATION_SIGNATURE_TYPE)
    })
    .await?;
    let max_manifest = limits.max_manifest_bytes;
    let max_bundle = limits
        .max_signature_layer_bytes
        .max(limits.max_attestation_bytes)
        .max(MIN_BUNDLE_BYTES);
    let fetched: Vec<Result<Option<Referrer>, FetchError>> = futures::stream::iter(candidates)
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
                budget.charge(m.size, &what)?;
                let is_bundle = m
                    .artifact_type
                    .as_deref()
                    .is_some_and(|t| t.starts_with(SIGSTORE_BUNDLE_TYPE));
                let is_notation =
                    notation && m.artifact_type.as_deref() == Some(NOTATION_SIGNATURE_TYPE);
                let about_this_image = m
                    .subject
                    .as_ref()
                    .is_some_and(|s| s.digest == digest.as_str());
                let ManifestKind::Image { layers } = m.kind else {
                    return Ok(None);
                };
                if !about_this_image || !(is_bundle || is_notation) {
                    return Ok(None);
                }
                let wanted = |media_type: &str| {
                    if is_notation {
                        NOTATION_ENVELOPE_TYPES.contains(&media_type)
                    } else {
                        media_type.starts_with(SIGSTORE_BUNDLE_TYPE)
                    }
                };
                let first_type = layers.first().map(|l| l.media_type.clone());
                let Some(layer) = layers.into_iter().find(|l| wanted(&l.media_type)) else {
                    // A Notation signature manifest whose layer is no envelope: a signature
                    // that cannot verify (its bytes unread), not nothing.
                    if is_notation {
                        let found = first_type.unwrap_or_else(|| "(no layer)".into());
                        return Ok(Some(Referrer::Notation(Vec::new(), found)));
                    }
                    return Ok(None);
                };
                if layer.size > max_bundle {
                    return Err(FetchError::LimitExceeded {
                        what: format!("{what}: bundle {}", layer.digest),
                        limit: max_bundle,
                        unit: "bytes",
                    });
                }
                let ld = Digest::parse(&layer.digest).map_err(|e| FetchError::Protocol {
                    what: what.clone(),
                    detail: e.to_string(),
                })?;
                // Many referrers may name one blob: it is one bundle, read once.
                if !budget.first_time(&ld) {
                    return Ok(None);
                }
                budget.charge(layer.size, &what)?;
                let bytes = read_declared(source, &ld, layer.size).await?;
                if is_notation {
                    return Ok(Some(Referrer::Notation(bytes, layer.media_type)));
                }
                // An unparsable bundle is a signature that does not verify, not an error.
                Ok(std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|json| sigstore_types::Bundle::from_json(json).ok())
                    .map(Referrer::Bundle))
            }
        })
        .buffered(BLOB_CONCURRENCY)
        .collect()
        .await;
    let mut bundles = Vec::new();
    let mut envelopes = Vec::new();
    for f in fetched {
        match f? {
            Some(Referrer::Bundle(b)) => bundles.push(b),
            Some(Referrer::Notation(bytes, media_type)) => envelopes.push((bytes, media_type)),
            None => {}
        }
    }
    Ok((bundles, envelopes))
}

/// A blob read up to the size its descriptor declares: more bytes cannot be the blob named, so
/// they are a mismatch (not a limit), and are never buffered past that size.
pub(super) async fn read_declared(
    source: &dyn Source,
    digest: &Digest,
    declared: u64,
) -> Result<Vec<u8>, FetchError> {
    match source.blob(digest, declared).await {
        Err(FetchError::LimitExceeded { what, .. }) => Err(FetchError::DigestMismatch {
            what,
            expected: digest.to_string(),
            found: format!("longer than the {declared} bytes its descriptor declares"),
        }),
        other => other,
    }
}

/// The artifacts of `types` attached to `digest` as OCI referrers (`oras attach`: the artifact
/// type, or the config media type, names the type; the first layer holds the content), each with
/// the cosign and Notation signatures attached to its own manifest. Bounded as all evidence: at
/// most `max_signatures` of them, each layer up to `max_attestation_bytes`, one byte budget.
pub(crate) async fn artifacts(
    source: &dyn Source,
    digest: &Digest,
    types: &[String],
    budget: &EvidenceBudget,
    limits: &Limits,
) -> Result<Vec<Artifact>, FetchError> {
    let what = format!("artifacts attached to {}@{digest}", source.name());
    let candidates = referrer_candidates(source, digest, &what, budget, limits, |t| {
        types.iter().any(|w| w == t)
    })
    .await?;
    let mut out = Vec::new();
    for d in candidates {
        let d = Digest::parse(&d.digest).map_err(|e| FetchError::Protocol {
            what: what.clone(),
            detail: e.to_string(),
        })?;
        let m = source
            .manifest(&ManifestRef::Digest(d.clone()), limits.max_manifest_bytes)
            .await?;
        budget.charge(m.size, &what)?;
        let Some(media_type) = m.artifact_type.clone().filter(|t| types.contains(t)) else {
            continue;
        };
        if m.subject
            .as_ref()
            .is_none_or(|s| s.digest != digest.as_str())
        {
            continue;
        }
        let ManifestKind::Image { layers } = m.kind else {
            continue;
        };
        let Some(layer) = layers.into_iter().next() else {
            continue;
        };
        if layer.size > limits.max_attestation_bytes {
            return Err(FetchError::LimitExceeded {
                what: format!("{what}: artifact {d} ({} bytes)", layer.size),
                limit: limits.max_attestation_bytes,
                unit: "bytes",
            });
        }
        let ld = Digest::parse(&layer.digest).map_err(|e| FetchError::Protocol {
            what: what.clone(),
            detail: e.to_string(),
        })?;
        budget.charge(layer.size, &what)?;
        let content = read_declared(source, &ld, layer.size).await?;
        let needs = Needs {
            signatures: true,
            attestations: false,
            notation: true,
        };
        let mut evidence = Box::pin(gather(needs, source, &d, budget, limits)).await?;
        // Its signatures name the manifest just read: no second fetch.
        if !evidence.notation.is_empty() {
            evidence.subject = Some((m.media_type.clone(), m.size));
        }
        out.push(Artifact {
            media_type,
            digest: d,
            content,
            evidence,
        });
    }
    Ok(out)
}
