//! One attestation: a DSSE envelope carrying an in-toto statement, from a cosign `.att` layer or a
//! Sigstore bundle attached as a referrer. It counts only when its signature verifies under trust
//! material umpire knows and its statement names the image digest among its subjects. Its type is the
//! signed statement's `predicateType`, never an annotation.

use std::collections::BTreeMap;

use sigstore_types::{Bundle, SignatureContent};

use super::cosign_legacy::{BUNDLE_ANNOTATION, CERTIFICATE_ANNOTATION};
use super::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use super::legacy_attestation;
use super::signature::{COSIGN_SIGN_PREDICATE, Signer, Trust, bundle_signers, with_log_entries};
use super::statement::Statement;
use crate::digest::Digest;

/// A `.att` layer: the envelope blob and the annotations beside it.
#[derive(Debug, Clone)]
pub struct AttestationLayer {
    pub envelope: Vec<u8>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub enum AttestationOutcome {
    /// Signed by `signers` and about this image.
    Verified {
        signers: Vec<Signer>,
        statement: Statement,
    },
    /// Not usable. `claimed_type` is the predicate type the (unverified) payload claims, if it can be
    /// read, so that a broken attestation of a required type is reported as invalid, not missing.
    Invalid {
        claimed_type: Option<String>,
        reason: String,
    },
}

fn claimed_type(payload: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    v.get("predicateType")?
        .as_str()
        .map(|s| s.chars().take(200).collect())
}

fn invalid(claimed_type: Option<String>, reason: impl Into<String>) -> AttestationOutcome {
    AttestationOutcome::Invalid {
        claimed_type,
        reason: reason.into(),
    }
}

/// Checks a cosign `.att` layer: the DSSE signatures under the configured keys and, when the layer
/// carries a certificate (legacy keyless), under every configured Sigstore root.
pub fn check_layer(
    layer: &AttestationLayer,
    trust: &Trust<'_>,
    image_digest: &Digest,
) -> AttestationOutcome {
    let envelope = match Envelope::parse(&layer.envelope) {
        Ok(e) => e,
        Err(e) => return invalid(None, e.to_string()),
    };
    let Ok(payload) = envelope.payload_bytes() else {
        return invalid(None, "the DSSE payload is not base64");
    };
    // Only for reporting "invalid" rather than "missing": an unreadable payload falls back to the
    // layer's (unsigned) predicateType annotation. Neither ever satisfies a requirement.
    let claimed = claimed_type(&payload).or_else(|| {
        layer
            .annotations
            .get("predicateType")
            .map(|t| t.chars().take(200).collect())
    });
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return invalid(
            claimed,
            format!(
                "payload type {:?} is not in-toto",
                envelope.payload_type.chars().take(80).collect::<String>()
            ),
        );
    }
    let rekor_bundle = layer
        .annotations
        .get(BUNDLE_ANNOTATION)
        .filter(|_| trust.log_checks && !layer.annotations.contains_key(CERTIFICATE_ANNOTATION));
    let mut signers: Vec<Signer> = envelope
        .signers(&payload, trust.keys)
        .into_iter()
        .map(Signer::Key)
        .collect();
    if let Some(json) = rekor_bundle {
        // A keyed layer logged by cosign: which trusted logs hold it, for `transparency_log:
        // required` authorities (one that is not logged still counts for the others).
        signers = with_log_entries(signers, trust, |root, spki| {
            legacy_attestation::logged_for_key(
                root,
                &layer.envelope,
                &envelope,
                &payload,
                json,
                spki,
                trust.now,
            )
        });
    }
    let mut failure = None;
    if layer.annotations.contains_key(CERTIFICATE_ANNOTATION) {
        if trust.roots.is_empty() {
            failure = Some(
                "it carries a certificate, but no trust.sigstore root is configured".to_owned(),
            );
        }
        for root in trust.roots {
            match legacy_attestation::verify(
                root,
                &layer.envelope,
                &envelope,
                &payload,
                &layer.annotations,
                image_digest,
                trust.now,
            ) {
                Ok(identity) => signers.push(Signer::Keyless {
                    trust: root.name.clone(),
                    identity,
                }),
                Err(f) => {
                    failure
                        .get_or_insert(format!("under trust root {:?}: {}", root.name, f.reason));
                }
            }
        }
    }
    if signers.is_empty() {
        let why = failure.unwrap_or_else(|| {
            "its DSSE signature verifies under none of the configured keys".to_owned()
        });
        return invalid(claimed, why);
    }
    statement_outcome(signers, &payload, claimed, image_digest)
}

fn statement_outcome(
    signers: Vec<Signer>,
    payload: &[u8],
    claimed: Option<String>,
    image_digest: &Digest,
) -> AttestationOutcome {
    let statement = match Statement::parse(payload) {
        Ok(s) => s,
        Err(e) => return invalid(claimed, e.to_string()),
    };
    if !statement.is_about(image_digest) {
        return invalid(
            claimed,
            format!(
                "its statement is about {}, not about {image_digest}",
                statement.subject_digests().join(", ")
            ),
        );
    }
    AttestationOutcome::Verified { signers, statement }
}

/// Checks a Sigstore bundle attached as a referrer. `None` for bundles that are not attestations
/// (message signatures, or cosign's own image-signature statements).
pub fn check_bundle(
    bundle: &Bundle,
    trust: &Trust<'_>,
    image_digest: &Digest,
) -> Option<AttestationOutcome> {
    let SignatureContent::DsseEnvelope(envelope) = &bundle.content else {
        return None;
    };
    let payload = envelope.payload.as_bytes();
    let claimed = claimed_type(payload);
    if claimed.as_deref() == Some(COSIGN_SIGN_PREDICATE) {
        return None;
    }
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Some(invalid(claimed, "payload type is not in-toto"));
    }
    let (signers, failure) = bundle_signers(bundle, trust, image_digest);
    if signers.is_empty() {
        let reason = failure.map_or_else(
            || "it verifies under none of the configured keys or roots".to_owned(),
            |f| f.reason,
        );
        return Some(invalid(claimed, reason));
    }
    Some(statement_outcome(signers, payload, claimed, image_digest))
}
