//! Every applicable policy evaluated on what verification found for one digest: each
//! requirement in turn, fetch failures failing the policies that needed what could not be read,
//! warn policies' failures turned into warnings. Also static denials and artifact requirements.

use crate::digest::Digest;
use crate::verdict::{Code, Finding};
use crate::verify::attestation::AttestationOutcome;
use crate::verify::evidence::Outcomes;
use crate::verify::signature::{SignatureOutcome, Signer};

use super::*;

/// An artifact found: (media type, manifest digest, content, the outcomes of its signatures).
pub type FoundArtifact = crate::verify::evidence::VerifiedArtifact;

/// What verification found for one digest, and what could not be read (each failure as the finding
/// it becomes for the policies that needed it).
pub struct Found<'a> {
    /// Per evidence group: its signature and attestation outcomes, or why it could not be read.
    pub groups: &'a [Result<Outcomes, Finding>],
    /// Each policy's evidence group (`None`: it reads none).
    pub group_of: &'a [Option<usize>],
    pub artifacts: Result<&'a [FoundArtifact], &'a Finding>,
    pub buildkit: Result<&'a BuildkitStatements, &'a Finding>,
    pub configs: Result<&'a [(String, serde_json::Value)], &'a Finding>,
}

/// The policies' joint answer.
#[derive(Debug, Default)]
pub struct Evaluation {
    /// Every enforce policy held (and there was one).
    pub allowed: bool,
    pub findings: Vec<Finding>,
    pub warnings: Vec<Finding>,
    /// When an allow resting on the image's age stops holding.
    pub image_rules_until: Option<jiff::Timestamp>,
}

/// One policy's answer.
struct PolicyAnswer {
    held: bool,
    findings: Vec<Finding>,
    /// What only logs, whatever the mode (a Notation statement's level).
    logged: Vec<Finding>,
    until: Option<jiff::Timestamp>,
}

/// Evaluates `policies` for `digest` (named `image` in findings), asked for as `signed_for`.
pub fn evaluate(
    policies: &[&Policy],
    image: &str,
    digest: &Digest,
    signed_for: &SignedFor,
    found: &Found<'_>,
    now: jiff::Timestamp,
) -> Evaluation {
    let mut out = Evaluation {
        allowed: !policies.is_empty(),
        ..Evaluation::default()
    };
    for (i, p) in policies.iter().enumerate() {
        let group = found.group_of.get(i).copied().flatten();
        let answer = evaluate_one(p, group, image, digest, signed_for, found, now);
        out.warnings.extend(answer.logged);
        match p.mode {
            Mode::Enforce => {
                out.allowed &= answer.held;
                out.findings.extend(answer.findings);
                out.image_rules_until = answer.until.into_iter().chain(out.image_rules_until).min();
            }
            // A warn policy never denies: what it found wrong comes back as warnings.
            Mode::Warn => {
                let (satisfied, wrong) = answer
                    .findings
                    .into_iter()
                    .partition::<Vec<_>, _>(|f| f.code == Code::Satisfied);
                out.findings.extend(satisfied);
                out.warnings.extend(wrong);
            }
        }
    }
    if !out.allowed {
        out.findings.retain(|f| f.code != Code::Satisfied);
    }
    out
}

/// What `p` needed and could not be read: its evidence group, the artifacts, BuildKit's
/// statements, the image configs. The requirements on it are not evaluated (nothing to evaluate).
fn unread<'a>(p: &Policy, group: Option<usize>, found: &Found<'a>) -> Vec<&'a Finding> {
    let group_failed = group
        .and_then(|g| found.groups.get(g))
        .and_then(|g| g.as_ref().err())
        .filter(|_| p.signatures.is_some() || !p.attestations.is_empty());
    [
        group_failed,
        found.artifacts.err().filter(|_| !p.artifacts.is_empty()),
        found
            .buildkit
            .err()
            .filter(|_| p.attestations.iter().any(|a| a.buildkit)),
        found.configs.err().filter(|_| p.image_rules.is_some()),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn evaluate_one(
    p: &Policy,
    group: Option<usize>,
    image: &str,
    digest: &Digest,
    signed_for: &SignedFor,
    found: &Found<'_>,
    now: jiff::Timestamp,
) -> PolicyAnswer {
    let mut answer = PolicyAnswer {
        held: true,
        findings: Vec::new(),
        logged: Vec::new(),
        until: None,
    };
    if let Some(action) = p.action {
        let (held, f) = evaluate_static(&p.name, action, digest.as_str());
        answer.held &= held;
        answer.findings.extend(f);
    }
    let unread = unread(p, group, found);
    if !unread.is_empty() {
        answer.held = false;
        let failed = unread.into_iter().map(|f| f.clone().with_policy(&p.name));
        answer.findings.extend(failed);
        return answer;
    }
    let empty = (Vec::new(), Vec::new());
    let (signatures, attestations) = group
        .and_then(|g| found.groups.get(g))
        .and_then(|g| g.as_ref().ok())
        .unwrap_or(&empty);
    let mut signatures_held = false;
    if let Some(req) = &p.signatures {
        let (held, f, w) =
            evaluate_signatures_warning(&p.name, req, digest, signatures, Some(signed_for));
        signatures_held = held;
        answer.held &= held;
        answer.findings.extend(f);
        answer.logged.extend(w);
    }
    let no_buildkit = BuildkitStatements::default();
    let buildkit = found.buildkit.unwrap_or(&no_buildkit);
    for req in p.attestations.iter().filter(|a| a.buildkit) {
        let (held, f) =
            evaluate_buildkit(&p.name, req, image, digest, signatures_held, buildkit, now);
        answer.held &= held;
        answer.findings.extend(f);
    }
    for req in p.attestations.iter().filter(|a| !a.buildkit) {
        let (held, f, w) =
            evaluate_attestation_warning(&p.name, req, image, digest, attestations, now);
        answer.held &= held;
        answer.findings.extend(f);
        answer.logged.extend(w);
    }
    let artifacts = found.artifacts.unwrap_or(&[]);
    for req in &p.artifacts {
        let (held, f) = evaluate_artifact(&p.name, req, image, digest, artifacts, now);
        answer.held &= held;
        answer.findings.extend(f);
    }
    if let Some(rules) = &p.image_rules {
        let configs = found.configs.unwrap_or(&[]);
        let (held, f) = evaluate_image_rules(&p.name, rules, configs, now);
        // An allow that rests on `max_age` holds only until the image is too old.
        if held {
            answer.until = configs
                .iter()
                .filter_map(|(_, c)| rules.holds_until(c))
                .min();
        }
        answer.held &= held;
        answer.findings.extend(f);
    }
    answer
}

/// When the selected policies deny statically and need nothing from the registry: the findings
/// and warnings of that denial (blocking a whole registry must not contact it).
pub fn static_denial(selected: &[&Policy], image: &str) -> Option<(Vec<Finding>, Vec<Finding>)> {
    let denies = selected
        .iter()
        .any(|q| q.action == Some(StaticAction::Deny) && q.mode == Mode::Enforce);
    if !denies || selected.iter().any(|q| q.needs_evidence()) {
        return None;
    }
    let (mut findings, mut warnings) = (Vec::new(), Vec::new());
    for q in selected {
        let Some(action) = q.action else { continue };
        let (_, found) = evaluate_static(&q.name, action, image);
        let wrong = found.into_iter().filter(|f| f.code != Code::Satisfied);
        match q.mode {
            Mode::Enforce => findings.extend(wrong),
            Mode::Warn => warnings.extend(wrong),
        }
    }
    Some((findings, warnings))
}

/// The `notation` authorities of a policy's signature requirement.
pub fn notation_authorities(p: &Policy) -> impl Iterator<Item = &NotationAuthority> {
    p.signatures
        .iter()
        .flat_map(|s| s.authorities.iter())
        .filter_map(|a| match a {
            Authority::Notation(n) => Some(n),
            _ => None,
        })
}

/// Every `notation` authority an artifact requirement of `policies` names, once each.
pub fn artifact_notation_authorities<'a>(policies: &[&'a Policy]) -> Vec<&'a NotationAuthority> {
    let mut all: Vec<&NotationAuthority> = Vec::new();
    for a in policies
        .iter()
        .flat_map(|p| p.artifacts.iter())
        .flat_map(|r| r.inner.authorities.iter())
    {
        if let Authority::Notation(n) = a
            && !all.contains(&n)
        {
            all.push(n);
        }
    }
    all
}

/// An artifact requirement against the artifacts found: each of its type counts when one of the
/// requirement's authorities verified a signature on the artifact's manifest; then its content
/// is checked as an attestation would be.
pub fn evaluate_artifact(
    policy: &str,
    req: &ArtifactRequirement,
    image: &str,
    digest: &Digest,
    artifacts: &[FoundArtifact],
    now: jiff::Timestamp,
) -> (bool, Vec<Finding>) {
    let signed_by = SignatureRequirement {
        threshold: 1,
        authorities: req.inner.authorities.clone(),
    };
    let predicate_type = &req.inner.predicate_type;
    let outcomes: Vec<AttestationOutcome> = artifacts
        .iter()
        .filter(|(media_type, ..)| *media_type == req.media_type)
        .map(|(_, artifact, content, signatures)| {
            let invalid = |reason: String| AttestationOutcome::Invalid {
                claimed_type: Some(predicate_type.clone()),
                reason: format!("artifact {artifact}: {reason}"),
            };
            let (held, findings) = evaluate_signatures(policy, &signed_by, artifact, signatures);
            if !held {
                let reasons: Vec<String> = findings.into_iter().map(|f| f.message).collect();
                return invalid(reasons.join("; "));
            }
            let signers: Vec<Signer> = signatures
                .iter()
                .filter_map(|o| match o {
                    SignatureOutcome::Valid { signers, .. } => Some(signers),
                    _ => None,
                })
                .flatten()
                .filter(|s| signed_by.authorities.iter().any(|a| a.accepts(s)))
                .cloned()
                .collect();
            match artifact_statement(&req.media_type, content, digest) {
                Ok(statement) => AttestationOutcome::Verified { signers, statement },
                Err(reason) => invalid(reason),
            }
        })
        .collect();
    let (held, findings) = evaluate_attestation(policy, &req.inner, image, digest, &outcomes, now);
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
                .replace(predicate_type.as_str(), &req.media_type)
                .replace("attestation(s)", "artifact(s)");
            f.attestation_type = req.media_type.clone();
            f
        })
        .collect();
    (held, findings)
}
