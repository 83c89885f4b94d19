//! Everything one verification reads for a digest, fetched at once under one byte budget: the
//! evidence of each evidence repository (the image's own, or a `signatures_repository`), image
//! configs, Ratify-style artifacts, BuildKit statements, and the subject descriptor Notation
//! signatures name. Each part fails on its own, so that only the policies needing it fail.

use std::sync::Arc;

use super::discovery::{self, Artifact, Evidence, EvidenceBudget, Needs};
use super::{FetchError, Source, buildkit};
use crate::digest::Digest;
use crate::limits::Limits;
use crate::reference::RegistryRef;

/// What to read, decided by the policies (this module never sees them).
#[derive(Default)]
pub struct Plan {
    /// One entry per evidence repository (`None`: the image's own) and what is read there.
    pub groups: Vec<(Option<RegistryRef>, Needs)>,
    pub image_configs: bool,
    /// Artifact types attached as referrers.
    pub artifact_types: Vec<String>,
    /// BuildKit statement types in the image's index.
    pub buildkit_types: Vec<String>,
}

/// What was read, part by part.
pub(crate) struct Gathered {
    /// In the order of `Plan::groups`.
    pub groups: Vec<Result<Evidence, FetchError>>,
    pub configs: Result<Vec<(String, serde_json::Value)>, FetchError>,
    pub artifacts: Result<Vec<Artifact>, FetchError>,
    pub buildkit: Result<buildkit::BuildkitEvidence, FetchError>,
}

/// Reads what `plan` asks for `digest` (the image in `source`; another evidence repository
/// through `source_at`), concurrently.
pub(crate) async fn gather(
    plan: &Plan,
    source: &dyn Source,
    source_at: &(dyn Fn(&RegistryRef) -> Arc<dyn Source> + Sync),
    digest: &Digest,
    limits: &Limits,
) -> Gathered {
    let budget = EvidenceBudget::new(limits.max_evidence_bytes);
    let budget = &budget;
    let elsewhere: Vec<Option<Arc<dyn Source>>> = (plan.groups.iter())
        .map(|(repository, _)| repository.as_ref().map(source_at))
        .collect();
    let groups = futures::future::join_all(plan.groups.iter().zip(&elsewhere).map(
        |((_, needs), other)| {
            let from: &dyn Source = other.as_deref().unwrap_or(source);
            discovery::gather(*needs, from, digest, budget, limits)
        },
    ));
    let configs = async {
        if plan.image_configs {
            discovery::image_configs(source, digest, budget, limits).await
        } else {
            Ok(Vec::new())
        }
    };
    let artifacts = async {
        if plan.artifact_types.is_empty() {
            Ok(Vec::new())
        } else {
            discovery::artifacts(source, digest, &plan.artifact_types, budget, limits).await
        }
    };
    let buildkit = async {
        if plan.buildkit_types.is_empty() {
            Ok(buildkit::BuildkitEvidence::default())
        } else {
            buildkit::attestations(source, digest, &plan.buildkit_types, budget, limits).await
        }
    };
    let (mut groups, configs, artifacts, buildkit) =
        futures::join!(groups, configs, artifacts, buildkit);
    // Notation signatures name the image manifest's media type and size: read once, from the
    // image's own repository (a `signatures_repository` holds signatures, not the image).
    let has_notation =
        |g: &Result<Evidence, FetchError>| g.as_ref().is_ok_and(|e| !e.notation.is_empty());
    if groups.iter().any(has_notation) {
        let subject = discovery::subject_descriptor(source, digest, budget, limits).await;
        for g in groups.iter_mut().filter(|g| has_notation(g)) {
            match (&subject, g.as_mut()) {
                (Ok(s), Ok(e)) => e.subject = Some(s.clone()),
                (Err(failed), _) => *g = Err(failed.clone()),
                _ => {}
            }
        }
    }
    Gathered {
        groups,
        configs,
        artifacts,
        buildkit,
    }
}
