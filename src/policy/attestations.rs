//! Attestation requirements: verified statements of the type, signed by an accepted authority,
//! through the built-in checks and Rego; OpenVEX removals; BuildKit statements in an index.

use std::collections::BTreeMap;

use crate::digest::Digest;
use crate::verdict::{Code, Finding};
use crate::verify::attestation::AttestationOutcome;
use crate::verify::signature::Signer;

use super::signatures::*;
use super::*;

/// Whether the attestations found for `digest` meet `req`: at least one verified statement of the
/// type, signed by one of its authorities, and every such statement passing the built-in checks and
/// the Rego policy. Returns (held, findings).
pub fn evaluate_attestation(
    policy: &str,
    req: &AttestationRequirement,
    image: &str,
    digest: &Digest,
    outcomes: &[AttestationOutcome],
    now: jiff::Timestamp,
) -> (bool, Vec<Finding>) {
    let (held, findings, _) =
        evaluate_attestation_warning(policy, req, image, digest, outcomes, now);
    (held, findings)
}

/// The CVEs that VEX documents signed by `authorities` remove for `digest` (the latest applicable
/// statement per CVE), and warnings about VEX documents that remove nothing (signed by no listed
/// authority, or unreadable).
pub(super) fn vex_removals(
    authorities: &[Authority],
    digest: &Digest,
    outcomes: &[AttestationOutcome],
) -> (BTreeMap<String, crate::checks::vex::Decision>, Vec<String>) {
    use crate::checks::vex;
    let mut documents = Vec::new();
    let mut notes = Vec::new();
    for o in outcomes {
        match o {
            AttestationOutcome::Verified { signers, statement }
                if vex::is_openvex(&statement.predicate_type) =>
            {
                if authorities
                    .iter()
                    .any(|a| signers.iter().any(|s| a.accepts(s)))
                {
                    documents.push(&statement.predicate);
                } else {
                    notes.push(format!(
                        "a VEX document signed by {} removes nothing: no vex authority of this requirement signed it",
                        names(signers)
                    ));
                }
            }
            AttestationOutcome::Invalid {
                claimed_type: Some(t),
                reason,
            } if vex::is_openvex(t) => {
                notes.push(format!("a VEX document removes nothing: {reason}"));
            }
            _ => {}
        }
    }
    let (decided, more) = vex::decisions(&documents, digest);
    notes.extend(more);
    (
        decided.into_iter().filter(|(_, d)| d.removes()).collect(),
        notes,
    )
}

/// The built-in checks and Rego of `req` on `statements`: (violations, unreadable reports).
pub(super) fn check_statements(
    req: &AttestationRequirement,
    image: &str,
    digest: &Digest,
    statements: &[&crate::verify::statement::Statement],
    now: jiff::Timestamp,
    removed: &dyn Fn(&str) -> bool,
) -> (Vec<String>, Vec<String>) {
    let mut violations = Vec::new();
    let mut unreadable = Vec::new();
    for statement in statements {
        if let Some(checks) = &req.checks {
            match checks.violations_excluding(statement, now, removed) {
                Ok(v) => violations.extend(v),
                Err(format) => unreadable.push(format),
            }
        }
        if let Some(rego) = &req.rego {
            let input = serde_json::json!({
                "image": {"reference": image, "digest": digest.as_str()},
                "statement": statement,
                "predicate": statement.predicate,
            });
            match rego.deny(&input) {
                Ok(messages) => {
                    violations.extend(messages.into_iter().map(|m| format!("{}: {m}", rego.path)))
                }
                Err(e) => violations.push(format!(
                    "Rego policy {} could not be evaluated: {e}",
                    rego.path
                )),
            }
        }
    }
    (violations, unreadable)
}

/// What BuildKit stored for an image, parsed: whether it is an index, its runnable platforms, the
/// statements its attestation manifests hold (with the platform manifest each names), and, for a
/// platform manifest, whether an allowed verdict of its index holds.
#[derive(Default)]
pub struct BuildkitStatements {
    pub is_index: bool,
    pub platforms: Vec<Digest>,
    pub statements: Vec<(Digest, crate::verify::statement::Statement)>,
    pub parent_allowed: bool,
}

/// A `source: buildkit` requirement: every runnable platform of the index has a statement of the
/// type whose subject names that platform manifest, passing the checks and Rego; trusted only
/// through the index's signature (`signatures_held`: this policy's signatures verified on it).
pub fn evaluate_buildkit(
    policy: &str,
    req: &AttestationRequirement,
    image: &str,
    digest: &Digest,
    signatures_held: bool,
    found: &BuildkitStatements,
    now: jiff::Timestamp,
) -> (bool, Vec<Finding>) {
    let t = &req.predicate_type;
    let tag = |f: Finding| {
        let mut f = f
            .with_policy(policy)
            .with_authority("the signed image index (BuildKit)");
        f.attestation_type = t.clone();
        f
    };
    if !found.is_index {
        return if found.parent_allowed {
            (
                true,
                vec![tag(Finding::new(
                    Code::Satisfied,
                    format!(
                        "{digest} is a platform manifest of an index whose allowed verdict holds; its BuildKit {t} statement was checked there"
                    ),
                ))],
            )
        } else {
            (
                false,
                vec![tag(Finding::new(
                    Code::AttestationMissing,
                    format!(
                        "BuildKit stores {t} statements in the image index: {digest} is a platform manifest with no allowed verdict of its index; verify the index first"
                    ),
                ))],
            )
        };
    }
    if !signatures_held {
        return (
            false,
            vec![tag(Finding::new(
                Code::AttestationInvalid,
                format!(
                    "BuildKit {t} statements are trusted through the index's signature, which did not verify under policy {policy}"
                ),
            ))],
        );
    }
    if found.platforms.is_empty() {
        return (
            false,
            vec![tag(Finding::new(
                Code::AttestationMissing,
                format!(
                    "index {digest} lists no runnable platform for a BuildKit {t} statement to be about"
                ),
            ))],
        );
    }
    let mut problems = Vec::new();
    let mut checked = Vec::new();
    for platform in &found.platforms {
        let mine: Vec<&crate::verify::statement::Statement> = found
            .statements
            .iter()
            .filter(|(p, s)| p == platform && s.predicate_type == *t && s.is_about(platform))
            .map(|(_, s)| s)
            .collect();
        if mine.is_empty() {
            problems.push(tag(Finding::new(
                Code::AttestationMissing,
                format!(
                    "no BuildKit {t} statement about platform manifest {platform} in index {digest}"
                ),
            )));
            continue;
        }
        checked.extend(mine);
    }
    if !problems.is_empty() {
        problems.truncate(MAX_PROBLEM_FINDINGS);
        return (false, problems);
    }
    let (mut violations, mut unreadable) =
        check_statements(req, image, digest, &checked, now, &|_| false);
    violations.append(&mut unreadable);
    if !violations.is_empty() {
        violations.sort();
        violations.dedup();
        return (
            false,
            violations
                .into_iter()
                .take(MAX_PROBLEM_FINDINGS)
                .map(|v| tag(Finding::new(Code::PolicyViolation, format!("{t}: {v}"))))
                .collect(),
        );
    }
    (
        true,
        vec![tag(Finding::new(
            Code::Satisfied,
            format!(
                "{} BuildKit {t} statement(s), one for each of the {} runnable platform(s), trusted through the signed index, passed every check",
                checked.len(),
                found.platforms.len()
            ),
        ))],
    )
}

/// As [`evaluate_attestation`], with warnings: VEX documents that removed nothing.
pub fn evaluate_attestation_warning(
    policy: &str,
    req: &AttestationRequirement,
    image: &str,
    digest: &Digest,
    outcomes: &[AttestationOutcome],
    now: jiff::Timestamp,
) -> (bool, Vec<Finding>, Vec<Finding>) {
    let t = &req.predicate_type;
    let (removed, vex_notes) = match &req.vex {
        Some(authorities) => vex_removals(authorities, digest, outcomes),
        None => Default::default(),
    };
    let vex_warnings: Vec<Finding> = vex_notes
        .into_iter()
        .map(|n| {
            let mut f = Finding::new(Code::AttestationInvalid, n).with_policy(policy);
            f.attestation_type = t.clone();
            f
        })
        .collect();
    let expected = listed(&req.authorities);
    // Every finding names the authority it is about: the one that decided, or those expected.
    let tag = |f: Finding| {
        let mut f = f.with_policy(policy);
        f.attestation_type = t.clone();
        if f.authority.is_empty() {
            f.authority = expected.clone();
        }
        f
    };
    let of_type: Vec<(&Vec<Signer>, &crate::verify::statement::Statement)> = outcomes
        .iter()
        .filter_map(|o| match o {
            AttestationOutcome::Verified { signers, statement }
                if statement.predicate_type == *t =>
            {
                Some((signers, statement))
            }
            _ => None,
        })
        .collect();
    let accepted: Vec<(&Vec<Signer>, &crate::verify::statement::Statement)> = of_type
        .iter()
        .filter(|(signers, _)| {
            req.authorities
                .iter()
                .any(|a| signers.iter().any(|s| a.accepts(s)))
        })
        .copied()
        .collect();

    if accepted.is_empty() {
        let findings = none_accepted(policy, req, digest, outcomes, &of_type, &tag);
        return (false, findings, vex_warnings);
    }

    // The authorities whose signed statements were checked: content findings are about them.
    let signers: Vec<String> = req
        .authorities
        .iter()
        .filter(|a| {
            accepted
                .iter()
                .any(|(signers, _)| signers.iter().any(|s| a.accepts(s)))
        })
        .map(|a| a.to_string())
        .collect();
    let about = |f: Finding| tag(f.with_authority(signers.join(", ")));
    let statements: Vec<&crate::verify::statement::Statement> =
        accepted.iter().map(|(_, s)| *s).collect();
    let (violations, unreadable) = check_statements(req, image, digest, &statements, now, &|id| {
        removed.contains_key(id)
    });
    let (mut violations, mut unreadable) = (violations, unreadable);
    if !unreadable.is_empty() {
        unreadable.sort();
        unreadable.dedup();
        let findings = unreadable
            .into_iter()
            .take(MAX_PROBLEM_FINDINGS)
            .map(|u| about(Finding::new(Code::AttestationInvalid, format!("{t}: {u}"))))
            .collect();
        return (false, findings, vex_warnings);
    }
    if !violations.is_empty() {
        violations.sort();
        violations.dedup();
        let findings = violations
            .into_iter()
            .take(MAX_PROBLEM_FINDINGS)
            .map(|v| about(Finding::new(Code::PolicyViolation, format!("{t}: {v}"))))
            .collect();
        return (false, findings, vex_warnings);
    }
    let finding = tag(Finding::new(
        Code::Satisfied,
        format!(
            "{} verified attestation(s) of type {t} signed by {} passed every check",
            accepted.len(),
            signers.join(", ")
        ),
    ))
    .with_authority(signers.join(", "));
    // What VEX removed, and on whose word: an auditor sees why no denial happened.
    let mut findings = vec![finding];
    findings.extend(vex_notes_for(&removed, &accepted, &tag));
    (true, findings, vex_warnings)
}

/// The findings when no attestation of the type was signed by an accepted authority: who signed
/// the ones found, why others were unusable, or that none was found.
fn none_accepted(
    policy: &str,
    req: &AttestationRequirement,
    digest: &Digest,
    outcomes: &[AttestationOutcome],
    of_type: &[(&Vec<Signer>, &crate::verify::statement::Statement)],
    tag: &dyn Fn(Finding) -> Finding,
) -> Vec<Finding> {
    let t = &req.predicate_type;
    let expected = listed(&req.authorities);
    let pseudo = SignatureRequirement {
        threshold: 1,
        authorities: req.authorities.clone(),
    };
    let mut findings: Vec<Finding> = of_type
        .iter()
        .enumerate()
        .map(|(i, (signers, _))| {
            let mut f = unaccepted(i + 1, policy, &pseudo, signers);
            f.message = format!("attestation {t}: {}", f.message);
            tag(f)
        })
        .collect();
    for o in outcomes {
        if let AttestationOutcome::Invalid {
            claimed_type: Some(c),
            reason,
        } = o
            && c == t
        {
            findings.push(tag(Finding::new(
                Code::AttestationInvalid,
                format!("an attestation claiming type {t} is not usable: {reason}"),
            )));
        }
    }
    if findings.is_empty() {
        findings.push(tag(Finding::new(
            Code::AttestationMissing,
            format!("no verified attestation of type {t} for {digest}; expected one signed by {expected}"),
        )));
    }
    findings.truncate(MAX_PROBLEM_FINDINGS);
    findings
}

/// A SATISFIED finding for each CVE that VEX removed and an accepted report listed.
fn vex_notes_for(
    removed: &BTreeMap<String, crate::checks::vex::Decision>,
    accepted: &[(&Vec<Signer>, &crate::verify::statement::Statement)],
    tag: &dyn Fn(Finding) -> Finding,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (cve, d) in removed {
        let reported = accepted.iter().any(|(_, statement)| {
            crate::checks::vulns::findings(statement)
                .is_ok_and(|f| f.iter().any(|(id, _)| id == cve))
        });
        if reported {
            findings.push(tag(Finding::new(
                Code::Satisfied,
                format!(
                    "{cve} is not counted: VEX by {} says {}{}{}",
                    d.author,
                    d.status,
                    if d.justification.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", d.justification)
                    },
                    d.timestamp
                        .map(|t| format!(", statement of {t}"))
                        .unwrap_or_default()
                ),
            )));
        }
    }
    findings
}
