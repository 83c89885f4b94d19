//! Signature requirements: distinct accepted signers up to the threshold, signed identity,
//! Notation's logged-only warnings, and findings that name what was expected and found.

use crate::digest::Digest;
use crate::verdict::{Code, Finding};
use crate::verify::Check;
use crate::verify::signature::{SignatureOutcome, Signer};

use super::*;

/// At most this many problem findings per requirement; the rest are summarised in one line.
pub(super) const MAX_PROBLEM_FINDINGS: usize = 10;

/// Whether the signature outcomes found for `digest` meet `req`. Returns (held, findings).
pub fn evaluate_signatures(
    policy: &str,
    req: &SignatureRequirement,
    digest: &Digest,
    outcomes: &[SignatureOutcome],
) -> (bool, Vec<Finding>) {
    let (held, findings, _) = evaluate_signatures_warning(policy, req, digest, outcomes, None);
    (held, findings)
}

/// As `evaluate_signatures`, with the warnings of the signatures that met the requirement: what
/// a Notation statement's level only logged.
pub fn evaluate_signatures_warning(
    policy: &str,
    req: &SignatureRequirement,
    digest: &Digest,
    outcomes: &[SignatureOutcome],
    image: Option<&SignedFor>,
) -> (bool, Vec<Finding>, Vec<Finding>) {
    let accepted_by = |signers: &[Signer], signed_name: Option<&str>| -> Vec<&Authority> {
        req.authorities
            .iter()
            .filter(|a| {
                signers
                    .iter()
                    .any(|s| a.accepts_signed(s, signed_name, image))
            })
            .collect()
    };
    let satisfied = distinct_signer_matching(req, outcomes, image);
    let expected = listed(&req.authorities);

    if satisfied.len() >= req.threshold {
        let (findings, warnings) = met(policy, digest, outcomes, &satisfied);
        return (true, findings, warnings);
    }

    if outcomes.is_empty() {
        let wants_notation = req
            .authorities
            .iter()
            .any(|a| matches!(a, Authority::Notation(_)));
        let looked_at = if wants_notation {
            format!(
                "no signatures found for {digest} (cosign tag {}, OCI referrers including Notation's application/vnd.cncf.notary.signature)",
                digest.cosign_tag("sig")
            )
        } else {
            format!(
                "no cosign signatures found for {digest} (tag {})",
                digest.cosign_tag("sig")
            )
        };
        let f = Finding::new(
            Code::NoSignatures,
            format!("{looked_at}; expected one by {expected}"),
        )
        .with_policy(policy)
        .with_authority(expected.clone());
        return (false, vec![f], Vec::new());
    }

    let mut problems = Vec::new();
    for (i, o) in outcomes.iter().enumerate() {
        let n = i + 1;
        let finding = match o {
            SignatureOutcome::Valid {
                signers,
                signed_name,
            } if accepted_by(signers, signed_name.as_deref()).is_empty() => {
                match signed_identity_mismatch(n, req, signers, signed_name.as_deref(), image) {
                    Some(f) => f,
                    None => unaccepted(n, policy, req, signers),
                }
            }
            SignatureOutcome::Valid { .. } => continue,
            SignatureOutcome::WrongDigest { signers, found } => Finding::new(
                Code::DigestMismatch,
                format!(
                    "signature {n} (by {}) is for {found}, not for this image's digest {digest}; it was made for another image",
                    names(signers)
                ),
            ),
            SignatureOutcome::BadPayload { signers, reason } => Finding::new(
                Code::SignatureInvalid,
                format!(
                    "signature {n} (by {}) is over an unusable payload: {reason}",
                    names(signers)
                ),
            ),
            SignatureOutcome::Unverified { check, reason } => Finding::new(
                finding_code(*check),
                format!(
                    "signature {n} does not verify: {reason}; expected a signature by {expected}"
                ),
            ),
        };
        problems.push(finding.with_policy(policy));
    }
    // Every denial names the authority it is about: the one that decided, or those expected.
    for f in problems.iter_mut().filter(|f| f.authority.is_empty()) {
        f.authority = expected.clone();
    }
    if problems.len() > MAX_PROBLEM_FINDINGS {
        let more = problems.len() - MAX_PROBLEM_FINDINGS;
        problems.truncate(MAX_PROBLEM_FINDINGS);
        problems.push(
            Finding::new(
                Code::SignatureInvalid,
                format!("{more} more signatures failed in the same ways"),
            )
            .with_policy(policy)
            .with_authority(expected.clone()),
        );
    }
    if !satisfied.is_empty() {
        let got = listed(satisfied.iter().copied());
        problems.insert(
            0,
            Finding::new(
                Code::ThresholdNotMet,
                format!(
                    "{} of the {} required authorities verified ({got}); policy {policy} needs {} of: {expected}",
                    satisfied.len(),
                    req.threshold,
                    req.threshold
                ),
            )
            .with_policy(policy)
            .with_authority(expected.clone()),
        );
    }
    (false, problems, Vec::new())
}

/// The Notation signer that met `authority` with the fewest logged failures: (subject, what was
/// logged, whether revocation went unchecked).
pub(super) fn notation_signer<'a>(
    authority: &Authority,
    outcomes: &'a [SignatureOutcome],
) -> Option<(&'a str, &'a [String], bool)> {
    if !matches!(authority, Authority::Notation(_)) {
        return None;
    }
    outcomes
        .iter()
        .filter_map(|o| match o {
            SignatureOutcome::Valid { signers, .. } => Some(signers),
            _ => None,
        })
        .flatten()
        .filter(|s| authority.accepts(s))
        .filter_map(|s| match s {
            Signer::Notation {
                subject,
                warnings,
                revocation_unchecked,
                ..
            } => Some((subject.as_str(), warnings.as_slice(), *revocation_unchecked)),
            _ => None,
        })
        .min_by_key(|(_, w, _)| w.len())
}

/// The finding code for evidence that failed `check`.
pub fn finding_code(check: Check) -> Code {
    match check {
        Check::Signature => Code::SignatureInvalid,
        Check::Certificate => Code::CertificateInvalid,
        Check::TransparencyLog => Code::TlogInvalid,
        Check::Digest => Code::DigestMismatch,
        Check::UntrustedSigner => Code::UntrustedSigner,
        Check::Identity => Code::IdentityMismatch,
        Check::Scope => Code::PolicyViolation,
    }
}

/// Who a verified signature is, for counting: one key, or one certificate identity (issuer and
/// subject). Two signatures by the same signer are one signer, whatever names accept them.
pub(super) fn signer_identity(signers: &[Signer]) -> Option<String> {
    signers.first().map(|s| match s {
        Signer::Key(name) | Signer::LoggedKey { name, .. } => format!("key\0{name}"),
        Signer::Keyless { identity, .. } => {
            format!("cert\0{}\0{}", identity.issuer, identity.subject)
        }
        Signer::Notation { subject, .. } => format!("notation\0{subject}"),
    })
}

/// The authorities of `req` met by distinct signers, each signer counting toward at most one
/// authority: a maximum matching between signers and the authorities that accept them, so
/// that one key under two names, or one certificate matched by two keyless authorities, meets
/// `threshold: 2` only with a second signer.
pub(super) fn distinct_signer_matching<'a>(
    req: &'a SignatureRequirement,
    outcomes: &[SignatureOutcome],
    image: Option<&SignedFor>,
) -> Vec<&'a Authority> {
    let mut signers: Vec<(String, Vec<usize>)> = Vec::new();
    for o in outcomes {
        let SignatureOutcome::Valid {
            signers: s,
            signed_name,
        } = o
        else {
            continue;
        };
        let Some(id) = signer_identity(s) else {
            continue;
        };
        let accepting: Vec<usize> = req
            .authorities
            .iter()
            .enumerate()
            .filter(|(_, a)| {
                s.iter()
                    .any(|x| a.accepts_signed(x, signed_name.as_deref(), image))
            })
            .map(|(i, _)| i)
            .collect();
        match signers.iter_mut().find(|(known, _)| *known == id) {
            Some((_, edges)) => {
                for a in accepting {
                    if !edges.contains(&a) {
                        edges.push(a);
                    }
                }
            }
            None => signers.push((id, accepting)),
        }
    }
    // Kuhn's augmenting paths: small graphs (authorities per policy, signers per image).
    fn augment(
        signer: usize,
        edges: &[(String, Vec<usize>)],
        owner: &mut [Option<usize>],
        seen: &mut [bool],
    ) -> bool {
        for &a in &edges[signer].1 {
            if seen[a] {
                continue;
            }
            seen[a] = true;
            if owner[a].is_none_or(|other| augment(other, edges, owner, seen)) {
                owner[a] = Some(signer);
                return true;
            }
        }
        false
    }
    let mut owner: Vec<Option<usize>> = vec![None; req.authorities.len()];
    for signer in 0..signers.len() {
        let mut seen = vec![false; req.authorities.len()];
        augment(signer, &signers, &mut owner, &mut seen);
    }
    req.authorities
        .iter()
        .zip(&owner)
        .filter(|(_, o)| o.is_some())
        .map(|(a, _)| a)
        .collect()
}

/// Authorities as messages and findings name them: comma-separated.
pub(super) fn listed<'a>(authorities: impl IntoIterator<Item = &'a Authority>) -> String {
    authorities
        .into_iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn names(signers: &[Signer]) -> String {
    signers
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A signature by a key an authority names, made for another image than `signed_identity` asks:
/// IDENTITY_MISMATCH naming both names.
pub(super) fn signed_identity_mismatch(
    n: usize,
    req: &SignatureRequirement,
    signers: &[Signer],
    signed_name: Option<&str>,
    image: Option<&SignedFor>,
) -> Option<Finding> {
    req.authorities.iter().find_map(|a| {
        let Authority::Key {
            signed_identity, ..
        } = a
        else {
            return None;
        };
        if !signers.iter().any(|s| a.accepts(s)) {
            return None;
        }
        let why = signed_identity.mismatch(signed_name, image)?;
        Some(
            Finding::new(
                Code::IdentityMismatch,
                format!(
                    "signature {n} verifies under {a}, but {why}; {a} requires signed_identity: {}",
                    match signed_identity {
                        SignedIdentity::Exact => "exact",
                        _ => "repository",
                    }
                ),
            )
            .with_authority(a.to_string()),
        )
    })
}

/// A signature that verified, by signers no authority of the policy accepts: IDENTITY_MISMATCH when
/// a keyless authority of the same trust root was looking for another identity, UNTRUSTED_SIGNER
/// otherwise.
pub(super) fn unaccepted(
    n: usize,
    policy: &str,
    req: &SignatureRequirement,
    signers: &[Signer],
) -> Finding {
    for signer in signers {
        let (Signer::Key(name) | Signer::LoggedKey { name, .. }) = signer else {
            continue;
        };
        let wants_log = req
            .authorities
            .iter()
            .find(|a| matches!(a, Authority::Key { name: n, logged_in: Some(_), .. } if n == name));
        if let Some(
            authority @ Authority::Key {
                logged_in: Some(root),
                ..
            },
        ) = wants_log
        {
            return Finding::new(
                Code::TlogInvalid,
                format!(
                    "signature {n} verifies under key:{name}, but {authority} also requires a transparency-log entry that verifies under a log of {root} and binds this signature; it has none"
                ),
            )
            .with_authority(authority.to_string());
        }
    }
    for signer in signers {
        let Signer::Keyless { trust, identity } = signer else {
            continue;
        };
        let near = req.authorities.iter().find_map(|a| match a {
            Authority::Keyless(k) if k.trust == *trust => k.mismatch(identity).map(|why| (a, why)),
            _ => None,
        });
        if let Some((authority, why)) = near {
            return Finding::new(
                Code::IdentityMismatch,
                format!("signature {n} was made by {identity}; {why}, as {authority} requires"),
            )
            .with_authority(authority.to_string());
        }
    }
    let expected = listed(&req.authorities);
    Finding::new(
        Code::UntrustedSigner,
        format!(
            "signature {n} verifies as {}, which policy {policy} does not accept; expected {expected}",
            names(signers)
        ),
    )
}

/// The findings of a met requirement, one per authority counted, and what Notation statements
/// only logged about those signatures (warnings).
fn met(
    policy: &str,
    digest: &Digest,
    outcomes: &[SignatureOutcome],
    satisfied: &[&Authority],
) -> (Vec<Finding>, Vec<Finding>) {
    let mut warnings = Vec::new();
    let findings = satisfied
        .iter()
        .map(|a| {
            let mut message = format!("signature verified by {a} for {digest}");
            if let Some((subject, logged, revocation_unchecked)) = notation_signer(a, outcomes) {
                message = format!("Notation signature by {subject} verified by {a} for {digest}");
                if revocation_unchecked {
                    message.push_str(
                        "; revocation (OCSP, CRL) was not checked: umpire verifies offline",
                    );
                }
                for w in logged {
                    warnings.push(
                        Finding::new(
                            Code::SignatureInvalid,
                            format!(
                                "{a} only logs this failure of the signature by {subject}: {w}"
                            ),
                        )
                        .with_authority(a.to_string())
                        .with_policy(policy),
                    );
                }
            }
            Finding::new(Code::Satisfied, message)
                .with_authority(a.to_string())
                .with_policy(policy)
        })
        .collect();
    (findings, warnings)
}
