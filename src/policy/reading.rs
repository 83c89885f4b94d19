//! What the policies of one verification need read and under which authorities it is verified:
//! the evidence plan (one group per repository holding evidence), each group's `notation`
//! authorities, and what a failed read becomes for the policies that needed it.

use crate::digest::Digest;
use crate::evidence::FetchError;
use crate::evidence::discovery::Needs;
use crate::evidence::gather::Plan;
use crate::reference::RegistryRef;
use crate::verdict::{Code, Finding};
use crate::verify::evidence::NotationTrust;

use super::*;

/// What `policies` need read: one evidence group per repository holding evidence (the image's
/// own, or a policy's `signatures_repository`, for the same digest), and each policy's group.
pub fn plan(policies: &[&Policy]) -> (Plan, Vec<Option<usize>>) {
    let mut plan = Plan::default();
    let mut group_of = vec![None; policies.len()];
    for (i, p) in policies.iter().enumerate() {
        plan.image_configs |= p.image_rules.is_some();
        plan.artifact_types
            .extend(p.artifacts.iter().map(|a| a.media_type.clone()));
        let buildkit = p.attestations.iter().filter(|a| a.buildkit);
        plan.buildkit_types
            .extend(buildkit.map(|a| a.predicate_type.clone()));
        if !p.needs_evidence() {
            continue;
        }
        let repository: Option<&RegistryRef> = p.signatures_repository.as_ref();
        let g = match plan
            .groups
            .iter()
            .position(|(r, _)| r.as_ref() == repository)
        {
            Some(g) => g,
            None => {
                plan.groups.push((repository.cloned(), Needs::default()));
                plan.groups.len() - 1
            }
        };
        group_of[i] = Some(g);
        let needs = &mut plan.groups[g].1;
        needs.signatures |= p.signatures.is_some();
        needs.attestations |= !p.attestations.is_empty();
        needs.notation |= notation_authorities(p).next().is_some();
    }
    (plan, group_of)
}

/// Per evidence group, the `notation` authorities of the policies reading it.
pub fn notation_by_group<'a>(
    policies: &[&'a Policy],
    group_of: &[Option<usize>],
    groups: usize,
) -> Vec<Vec<NotationTrust<'a>>> {
    (0..groups)
        .map(|g| {
            let readers = policies
                .iter()
                .zip(group_of)
                .filter(|(_, of)| **of == Some(g));
            let authorities = readers.flat_map(|(p, _)| notation_authorities(p));
            authorities.map(NotationAuthority::trust).collect()
        })
        .collect()
}

/// The finding for evidence that could not be fetched: `evidence` knows registries, not verdicts.
pub fn fetch_finding(e: &FetchError) -> Finding {
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

impl BuildkitStatements {
    /// BuildKit's statements as read (unparseable ones dropped: they vouch for nothing), and
    /// whether an allowed index vouches for this platform manifest.
    pub fn read(
        is_index: bool,
        platforms: Vec<Digest>,
        statements: Vec<(Digest, String, Vec<u8>)>,
        parent_allowed: bool,
    ) -> Self {
        let statements = statements
            .into_iter()
            .filter_map(|(platform, _, bytes)| {
                let statement = crate::verify::statement::Statement::parse(&bytes).ok()?;
                Some((platform, statement))
            })
            .collect();
        Self {
            is_index,
            platforms,
            statements,
            parent_allowed,
        }
    }
}
