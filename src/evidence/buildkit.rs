//! BuildKit's attestations inside an image index: the attestation manifests
//! (`vnd.docker.reference.type: attestation-manifest`) and the in-toto statements they hold, read
//! only for the predicate types a policy asks for, under the verification's byte budget.

use super::discovery::{EvidenceBudget, read_declared};
use super::{FetchError, ManifestKind, ManifestRef, Source};
use crate::digest::Digest;
use crate::limits::Limits;

/// What BuildKit stored in an image index: the runnable platforms, and the in-toto statements of
/// its attestation manifests (each with the platform manifest it names and its predicate type).
#[derive(Default)]
pub(crate) struct BuildkitEvidence {
    /// Whether `digest` is an index (a platform manifest's attestations live in its index).
    pub is_index: bool,
    pub platforms: Vec<Digest>,
    /// (platform manifest the attestation manifest names, predicate type, statement bytes).
    pub statements: Vec<(Digest, String, Vec<u8>)>,
}

/// The BuildKit attestations of `digest` (an index): each attestation manifest
/// (`vnd.docker.reference.type: attestation-manifest`) read by digest, and its in-toto layers of
/// a `wanted` predicate type (by their `in-toto.io/predicate-type` annotation), under the budget.
pub(crate) async fn attestations(
    source: &dyn Source,
    digest: &Digest,
    wanted: &[String],
    budget: &EvidenceBudget,
    limits: &Limits,
) -> Result<BuildkitEvidence, FetchError> {
    let what = format!("BuildKit attestations of {}@{digest}", source.name());
    let top = source
        .manifest(
            &ManifestRef::Digest(digest.clone()),
            limits.max_manifest_bytes,
        )
        .await?;
    budget.charge(top.size, &what)?;
    let ManifestKind::Index { manifests } = &top.kind else {
        return Ok(BuildkitEvidence::default());
    };
    let protocol = |detail: String| FetchError::Protocol {
        what: what.clone(),
        detail,
    };
    let mut out = BuildkitEvidence {
        is_index: true,
        ..Default::default()
    };
    // Every entry is looked at: a platform left out would be a platform left unchecked.
    if manifests.len() > limits.max_signatures {
        return Err(FetchError::LimitExceeded {
            what: format!("{what}: {} index entries", manifests.len()),
            limit: limits.max_signatures as u64,
            unit: "entries",
        });
    }
    let mut attestation_manifests = Vec::new();
    for d in manifests {
        let entry = Digest::parse(&d.digest).map_err(|e| protocol(e.to_string()))?;
        if !d.is_unrunnable() {
            out.platforms.push(entry);
            continue;
        }
        let names = d
            .annotations
            .get("vnd.docker.reference.digest")
            .and_then(|p| Digest::parse(p).ok());
        if d.annotations
            .get("vnd.docker.reference.type")
            .map(String::as_str)
            == Some("attestation-manifest")
            && let Some(platform) = names
        {
            attestation_manifests.push((entry, platform));
        }
    }
    for (entry, platform) in attestation_manifests {
        let m = source
            .manifest(&ManifestRef::Digest(entry), limits.max_manifest_bytes)
            .await?;
        budget.charge(m.size, &what)?;
        let ManifestKind::Image { layers } = &m.kind else {
            continue;
        };
        for layer in layers.iter().take(limits.max_signatures) {
            let Some(t) = layer.annotations.get("in-toto.io/predicate-type") else {
                continue;
            };
            if !layer.media_type.starts_with("application/vnd.in-toto") || !wanted.contains(t) {
                continue;
            }
            let blob = Digest::parse(&layer.digest).map_err(|e| protocol(e.to_string()))?;
            if layer.size > limits.max_attestation_bytes {
                return Err(FetchError::LimitExceeded {
                    what: format!("{what}: statement {blob}"),
                    limit: limits.max_attestation_bytes,
                    unit: "bytes",
                });
            }
            budget.charge(layer.size, &what)?;
            let bytes = read_declared(source, &blob, layer.size).await?;
            out.statements.push((platform.clone(), t.clone(), bytes));
        }
    }
    Ok(out)
}
