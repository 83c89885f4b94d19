//! cosign's legacy keyless attestations (`sha256-<hex>.att` layers written by `cosign attest` v1/v2
//! and the SLSA generator): a DSSE envelope, with the Fulcio certificate and the Rekor entry (SET)
//! in annotations. Verified as cosign does, under one trusted root:
//! - the SET verifies under a log key of the root valid at the integrated time, which becomes the
//!   signing time;
//! - the entry records this envelope, payload and certificate (`intoto` 0.0.1: content hash,
//!   payload hash, public key; `dsse` 0.0.1: envelope hash, payload hash, signatures and verifier);
//! - the certificate chains to a Fulcio CA of the root (intermediates and roots only from the root,
//!   never from the `chain` annotation), for code signing, valid at the signing time, with an SCT;
//! - the DSSE signature verifies over PAE with the certificate's key.
//!
//! `dsse` entries and entries with only an RFC 3161 timestamp go through sigstore-verify as a v0.1
//! bundle (plus the envelope hash it leaves unchecked); `intoto` 0.0.1 entries, which it does not
//! read, are checked here with the same steps.

use base64::Engine as _;
use sigstore_types::{Bundle, DerCertificate, Sha256Hash, SignatureBytes};
use sigstore_verify::crypto::{parse_certificate_info, verify_signature};

use super::Check;
use super::cosign_legacy::{BUNDLE_ANNOTATION, CERTIFICATE_ANNOTATION, RFC3161_ANNOTATION};
use super::dsse::{Envelope, pae};
use super::identity::{CertIdentity, read_workflow_claims};
use super::rekor_v1::{Logged, LoggedEntry, LoggedSigner, RekorError};
use super::sigstore::{Failure, SigstoreRoot};
use crate::digest::Digest;
use std::collections::BTreeMap;

fn fail(check: Check, reason: impl Into<String>) -> Failure {
    Failure {
        check,
        reason: reason.into(),
    }
}

fn tlog(e: RekorError) -> Failure {
    fail(Check::TransparencyLog, e.to_string())
}

/// Verifies a legacy keyless `.att` layer under `root`; the identity that signed.
pub fn verify(
    root: &SigstoreRoot,
    envelope_bytes: &[u8],
    envelope: &Envelope,
    payload: &[u8],
    annotations: &BTreeMap<String, String>,
    image_digest: &Digest,
    now: jiff::Timestamp,
) -> Result<CertIdentity, Failure> {
    let Some(cert_pem) = annotations.get(CERTIFICATE_ANNOTATION) else {
        return Err(fail(Check::Certificate, "the layer carries no certificate"));
    };
    let leaf = pem::parse(cert_pem.trim())
        .ok()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .ok_or_else(|| {
            fail(
                Check::Certificate,
                "the certificate annotation is not a PEM certificate",
            )
        })?;
    if envelope.signatures.len() != 1 {
        return Err(fail(
            Check::Signature,
            format!(
                "a keyless envelope carries one signature; this one has {}",
                envelope.signatures.len()
            ),
        ));
    }
    let entry = annotations
        .get(BUNDLE_ANNOTATION)
        .map(|json| LoggedEntry::from_annotation(json))
        .transpose()
        .map_err(tlog)?;
    let signatures: Vec<String> = envelope.signatures.iter().map(|s| s.sig.clone()).collect();
    let logged = Logged {
        envelope: envelope_bytes,
        payload,
        signatures: &signatures,
        signer: LoggedSigner::Certificate(&leaf),
    };
    match entry.as_ref().and_then(LoggedEntry::kind) {
        Some((kind, version)) if kind == "intoto" && version == "0.0.1" => {
            let Some(entry) = entry.as_ref() else {
                unreachable!("a kind was read from the entry")
            };
            verify_intoto(root, entry, &logged, envelope, &leaf, now)
        }
        _ => {
            // The binding first: an entry for another envelope is reported as that, whatever
            // else about it (its time, its certificate) would also fail.
            if let Some(entry) = &entry {
                entry.binds_dsse(&logged).map_err(tlog)?;
            }
            let bundle = as_bundle(envelope, &leaf, entry.as_ref(), annotations)?;
            let artifact = Sha256Hash::from_hex(image_digest.hex())
                .map_err(|_| fail(Check::Signature, "unusable image digest"))?;
            root.verify_keyless(&bundle, artifact.into())
        }
    }
}

/// The layer restated as a Sigstore v0.1 bundle with the DSSE envelope as its content and the leaf
/// alone as its chain.
fn as_bundle(
    envelope: &Envelope,
    leaf: &[u8],
    entry: Option<&LoggedEntry>,
    annotations: &BTreeMap<String, String>,
) -> Result<Bundle, Failure> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let tlog_entries: Vec<serde_json::Value> = entry
        .map(|e| {
            let (kind, version) = e.kind().unwrap_or_default();
            serde_json::json!({
                "logIndex": e.log_index.to_string(),
                "logId": {"keyId": b64.encode(&e.log_id)},
                "kindVersion": {"kind": kind, "version": version},
                "integratedTime": e.integrated_time.to_string(),
                "inclusionPromise": {"signedEntryTimestamp": b64.encode(&e.set)},
                "canonicalizedBody": b64.encode(&e.body),
            })
        })
        .into_iter()
        .collect();
    let mut material = serde_json::json!({
        "x509CertificateChain": {"certificates": [{"rawBytes": b64.encode(leaf)}]},
        "tlogEntries": tlog_entries,
    });
    if let Some(json) = annotations.get(RFC3161_ANNOTATION) {
        let ts: serde_json::Value = serde_json::from_str(json).map_err(|e| {
            fail(
                Check::TransparencyLog,
                format!("the RFC 3161 timestamp annotation: {e}"),
            )
        })?;
        let Some(signed) = ts.get("SignedRFC3161Timestamp").and_then(|v| v.as_str()) else {
            return Err(fail(
                Check::TransparencyLog,
                "the RFC 3161 timestamp annotation has no SignedRFC3161Timestamp",
            ));
        };
        material["timestampVerificationData"] =
            serde_json::json!({"rfc3161Timestamps": [{"signedTimestamp": signed}]});
    }
    let bundle = serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.1",
        "verificationMaterial": material,
        "dsseEnvelope": {
            "payload": envelope.payload.trim(),
            "payloadType": envelope.payload_type,
            "signatures": envelope.signatures.iter().map(|s| serde_json::json!({"sig": s.sig.trim(), "keyid": s.keyid})).collect::<Vec<_>>(),
        },
    });
    Bundle::from_json(&bundle.to_string())
        .map_err(|e| fail(Check::TransparencyLog, format!("unusable log entry: {e}")))
}

/// An `intoto` 0.0.1 entry: every step sigstore-verify takes for a bundle, here.
fn verify_intoto(
    root: &SigstoreRoot,
    entry: &LoggedEntry,
    logged: &Logged<'_>,
    envelope: &Envelope,
    leaf: &[u8],
    now: jiff::Timestamp,
) -> Result<CertIdentity, Failure> {
    let signed_at = entry.verify_set(root.rekor_keys(), now).map_err(tlog)?;
    entry.binds_intoto(logged).map_err(tlog)?;

    let info = parse_certificate_info(&DerCertificate::new(leaf.to_vec()))
        .map_err(|e| fail(Check::Certificate, format!("unreadable certificate: {e}")))?;
    if signed_at < info.not_before || signed_at > info.not_after {
        return Err(fail(
            Check::Certificate,
            format!(
                "the certificate (valid {} to {}) was not valid at the signing time {signed_at}",
                info.not_before, info.not_after
            ),
        ));
    }
    root.fulcio()
        .verify_at(leaf, signed_at)
        .map_err(|e| fail(Check::Certificate, e.to_string()))?;
    root.check_issuers_valid_at(leaf, &[signed_at.as_second()])?;

    let only = logged
        .signatures
        .first()
        .ok_or_else(|| fail(Check::Signature, "the envelope carries no signature"))?;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(only.trim())
        .map_err(|_| fail(Check::Signature, "the DSSE signature is not base64"))?;
    verify_signature(
        &info.public_key,
        &pae(&envelope.payload_type, logged.payload),
        &SignatureBytes::new(signature),
        info.key_algorithm.default_signing_scheme(),
    )
    .map_err(|e| {
        fail(
            Check::Signature,
            format!("the DSSE signature does not verify with the certificate's key: {e}"),
        )
    })?;

    let (Some(subject), Some(issuer)) = (info.identity, info.issuer) else {
        return Err(fail(
            Check::Certificate,
            "the certificate names no subject or no OIDC issuer",
        ));
    };
    let mut identity = CertIdentity {
        subject: subject.as_str().to_owned(),
        issuer,
        ..Default::default()
    };
    read_workflow_claims(leaf, &mut identity);
    Ok(identity)
}

/// Whether a keyed `.att` layer (its DSSE signature already verified under `key_spki`) is logged
/// in `root`'s transparency log: the SET verifies under a log key of the root and the entry
/// (`intoto` or `dsse` 0.0.1) records this envelope, payload and key.
pub fn logged_for_key(
    root: &SigstoreRoot,
    envelope_bytes: &[u8],
    envelope: &Envelope,
    payload: &[u8],
    rekor_bundle_json: &str,
    key_spki: &[u8],
    now: jiff::Timestamp,
) -> Result<(), Failure> {
    let entry = LoggedEntry::from_annotation(rekor_bundle_json).map_err(tlog)?;
    entry.verify_set(root.rekor_keys(), now).map_err(tlog)?;
    let signatures: Vec<String> = envelope.signatures.iter().map(|s| s.sig.clone()).collect();
    let logged = Logged {
        envelope: envelope_bytes,
        payload,
        signatures: &signatures,
        signer: LoggedSigner::Key(key_spki),
    };
    match entry.kind() {
        Some((kind, _)) if kind == "dsse" => entry.binds_dsse(&logged),
        _ => entry.binds_intoto(&logged),
    }
    .map_err(tlog)
}
