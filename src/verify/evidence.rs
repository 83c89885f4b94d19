//! One image's evidence as read (cosign layers, Sigstore bundles, Notation envelopes), verified as a
//! whole: every signature and attestation against the keys and roots of `Trust`, every Notation
//! envelope under the statement each `notation` authority has for the image's scope. Pure.

use crate::digest::Digest;

use super::attestation::{self, AttestationLayer, AttestationOutcome};
use super::keys::PublicKey;
use super::notation_rules::{self, Level, ScopedRules};
use super::signature::{self, SignatureLayer, SignatureOutcome, Signer, Trust};
use super::sigstore::SigstoreRoot;

pub type Layers = Vec<(Vec<u8>, std::collections::BTreeMap<String, String>)>;

/// Evidence as read, before any of it is verified.
#[derive(Default)]
pub struct Evidence {
    pub needs_signatures: bool,
    pub needs_attestations: bool,
    pub sig_layers: Layers,
    pub att_layers: Layers,
    pub bundles: Vec<sigstore_types::Bundle>,
    /// Notation envelopes attached to the image: (bytes, media type).
    pub notation: Vec<(Vec<u8>, String)>,
    /// The media type and size of the manifest the evidence is about, which Notation signatures
    /// name: set by whoever holds that manifest, only when Notation envelopes were found.
    pub subject: Option<(String, u64)>,
}

/// A signed artifact's candidate: an artifact of a wanted type attached to the image, its content,
/// and the signatures attached in turn to its manifest.
pub struct Artifact {
    pub media_type: String,
    /// The artifact manifest's digest (what its signatures sign).
    pub digest: Digest,
    pub content: Vec<u8>,
    pub evidence: Evidence,
}

/// An artifact verified: (media type, manifest digest, content, the outcomes of its signatures).
pub type VerifiedArtifact = (String, Digest, Vec<u8>, Vec<SignatureOutcome>);

/// One evidence group's outcomes: signatures, attestations.
pub type Outcomes = (Vec<SignatureOutcome>, Vec<AttestationOutcome>);

/// What `TrustMaterial::verify_all` gives back: each group's outcomes and the artifacts verified,
/// or what could not be read, as it was.
pub type Verified<E> = (Vec<Result<Outcomes, E>>, Result<Vec<VerifiedArtifact>, E>);

/// The trust material of one configuration, owned; lent to each verification as a [`Trust`].
pub struct TrustMaterial {
    pub keys: Vec<(String, std::sync::Arc<PublicKey>)>,
    pub roots: Vec<std::sync::Arc<SigstoreRoot>>,
    /// The root with no authorities keyed bundles without a log entry verify under.
    pub offline: std::sync::Arc<SigstoreRoot>,
    /// Whether to find out which trusted logs hold keyed signatures.
    pub log_checks: bool,
}

impl TrustMaterial {
    /// Every evidence group (each under the `notation` authorities of its readers, in order)
    /// and every artifact (under `artifact_notation`) verified at `now`; what could not be read
    /// stays as it was.
    #[allow(clippy::too_many_arguments)]
    pub fn verify_all<E>(
        &self,
        groups: Vec<Result<Evidence, E>>,
        notation: &[Vec<NotationTrust<'_>>],
        artifacts: Result<Vec<Artifact>, E>,
        artifact_notation: &[NotationTrust<'_>],
        digest: &Digest,
        scope: &str,
        now: jiff::Timestamp,
    ) -> Verified<E> {
        let keys: Vec<(String, &PublicKey)> = self
            .keys
            .iter()
            .map(|(n, k)| (n.clone(), k.as_ref()))
            .collect();
        let roots: Vec<&SigstoreRoot> = self.roots.iter().map(AsRef::as_ref).collect();
        let trust = Trust {
            keys: &keys,
            roots: &roots,
            offline: &self.offline,
            now,
            log_checks: self.log_checks,
        };
        let groups = groups
            .into_iter()
            .enumerate()
            .map(|(g, evidence)| {
                let notation = notation.get(g).map(Vec::as_slice).unwrap_or_default();
                evidence.map(|e| verify(e, &trust, digest, notation, scope))
            })
            .collect();
        let artifacts = artifacts.map(|found| {
            let verified = found.into_iter().map(|a| {
                let (signatures, _) =
                    verify(a.evidence, &trust, &a.digest, artifact_notation, scope);
                (a.media_type, a.digest, a.content, signatures)
            });
            verified.collect()
        });
        (groups, artifacts)
    }
}

/// A `notation` authority as verification needs it: what its signers are matched by, how messages
/// name it, and its trust policy statements.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct NotationTrust<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub statements: &'a [ScopedRules],
}

/// Every outcome of one evidence set: signatures (cosign, bundles, then Notation under each
/// authority once, in order) and attestations.
pub fn verify(
    mut evidence: Evidence,
    trust: &Trust<'_>,
    digest: &Digest,
    notation: &[NotationTrust<'_>],
    scope: &str,
) -> (Vec<SignatureOutcome>, Vec<AttestationOutcome>) {
    let envelopes = std::mem::take(&mut evidence.notation);
    let subject = evidence.subject.take();
    let (mut signatures, attestations) = verify_cosign(evidence, trust, digest);
    let mut done: Vec<&NotationTrust<'_>> = Vec::new();
    for authority in notation {
        if done.contains(&authority) {
            continue;
        }
        done.push(authority);
        signatures.extend(notation_outcomes(
            authority,
            &envelopes,
            subject.as_ref(),
            scope,
            digest,
            trust.now,
        ));
    }
    (signatures, attestations)
}

/// Every cosign signature and attestation of `evidence` (layers and bundles).
fn verify_cosign(
    evidence: Evidence,
    trust: &Trust<'_>,
    digest: &Digest,
) -> (Vec<SignatureOutcome>, Vec<AttestationOutcome>) {
    let signatures: Vec<SignatureOutcome> = if evidence.needs_signatures {
        evidence
            .sig_layers
            .into_iter()
            .map(|(payload, annotations)| {
                let layer = SignatureLayer {
                    payload,
                    annotations,
                };
                signature::check_layer(&layer, trust, digest)
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
                let layer = AttestationLayer {
                    envelope,
                    annotations,
                };
                attestation::check_layer(&layer, trust, digest)
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

/// The Notation envelopes of an image verified under one authority: its statement for `scope`
/// (none is a denial naming the scope; `skip` admits without verifying, as Notation does).
fn notation_outcomes(
    authority: &NotationTrust<'_>,
    envelopes: &[(Vec<u8>, String)],
    subject: Option<&(String, u64)>,
    scope: &str,
    digest: &Digest,
    now: jiff::Timestamp,
) -> Vec<SignatureOutcome> {
    let Some(statement) = notation_rules::select(authority.statements, scope) else {
        return vec![SignatureOutcome::Unverified {
            check: super::Check::Scope,
            reason: format!(
                "{} has no trust policy statement whose registryScopes hold {scope:?}",
                authority.name
            ),
        }];
    };
    if statement.rules.level == Level::Skip {
        return vec![SignatureOutcome::Valid {
            signers: vec![Signer::Notation {
                authority: authority.id.to_owned(),
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
    let target = super::notation::Target {
        media_type: media_type.clone(),
        digest: digest.to_string(),
        size: *size,
    };
    envelopes
        .iter()
        .map(|(bytes, envelope_type)| {
            notation_rules::outcome(authority.id, statement, bytes, envelope_type, &target, now)
        })
        .collect()
}

/// The earliest moment a time-bound signature among `outcomes` stops holding (kept conservative:
/// every such signer found, counted or not).
pub fn holds_until<'a>(
    outcomes: impl IntoIterator<Item = &'a SignatureOutcome>,
) -> Option<jiff::Timestamp> {
    outcomes
        .into_iter()
        .filter_map(|o| match o {
            SignatureOutcome::Valid { signers, .. } => Some(signers),
            _ => None,
        })
        .flatten()
        .filter_map(|s| match s {
            Signer::Notation { valid_until, .. } => *valid_until,
            _ => None,
        })
        .min()
}
