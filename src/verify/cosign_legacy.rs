//! cosign's legacy signatures (`sha256-<hex>.sig` layers carrying a certificate, chain and Rekor
//! bundle in annotations, or a keyed signature with its Rekor bundle) restated as a Sigstore v0.1
//! bundle, so that one verifier checks every logged signature the same way. Only the leaf certificate is taken from the annotations:
//! intermediates and roots come from the trusted root, never from the registry.

use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use sigstore_types::Bundle;

pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
pub const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";
pub const RFC3161_ANNOTATION: &str = "dev.sigstore.cosign/rfc3161timestamp";

/// The `dev.sigstore.cosign/bundle` annotation: a Rekor v1 entry with its SET.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RekorBundle {
    signed_entry_timestamp: String,
    payload: RekorPayload,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RekorPayload {
    body: String,
    integrated_time: i64,
    log_index: i64,
    #[serde(rename = "logID")]
    log_id: String,
}

#[derive(Deserialize)]
struct Rfc3161 {
    #[serde(rename = "SignedRFC3161Timestamp")]
    signed_rfc3161_timestamp: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LegacyError {
    #[error("the certificate annotation is not a PEM certificate")]
    Certificate,
    #[error("the Rekor bundle annotation is malformed: {0}")]
    RekorBundle(String),
    #[error("the RFC 3161 timestamp annotation is malformed: {0}")]
    Timestamp(String),
    #[error("the signature annotation is not base64")]
    Signature,
}

/// Builds the v0.1 bundle for a legacy signature over `payload`: keyless with `certificate_pem`,
/// keyed (the key named by a hint; the caller supplies it) without.
pub fn to_bundle(
    payload: &[u8],
    signature_b64: &str,
    certificate_pem: Option<&str>,
    rekor_bundle_json: Option<&str>,
    rfc3161_json: Option<&str>,
) -> Result<Bundle, LegacyError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let leaf = certificate_pem
        .map(|pem_text| {
            pem::parse(pem_text.trim())
                .ok()
                .filter(|p| p.tag() == "CERTIFICATE")
                .ok_or(LegacyError::Certificate)
        })
        .transpose()?;
    b64.decode(signature_b64.trim())
        .map_err(|_| LegacyError::Signature)?;

    let mut tlog_entries = Vec::new();
    if let Some(json) = rekor_bundle_json {
        let rb: RekorBundle =
            serde_json::from_str(json).map_err(|e| LegacyError::RekorBundle(e.to_string()))?;
        let log_id = hex::decode(&rb.payload.log_id)
            .map_err(|_| LegacyError::RekorBundle("logID is not hex".into()))?;
        let body = b64
            .decode(&rb.payload.body)
            .map_err(|_| LegacyError::RekorBundle("body is not base64".into()))?;
        let kind = entry_kind(&body)
            .ok_or_else(|| LegacyError::RekorBundle("body names no kind and apiVersion".into()))?;
        tlog_entries.push(serde_json::json!({
            "logIndex": rb.payload.log_index.to_string(),
            "logId": {"keyId": b64.encode(log_id)},
            "kindVersion": {"kind": kind.0, "version": kind.1},
            "integratedTime": rb.payload.integrated_time.to_string(),
            "inclusionPromise": {"signedEntryTimestamp": rb.signed_entry_timestamp},
            "canonicalizedBody": rb.payload.body,
        }));
    }
    let mut material = match &leaf {
        Some(leaf) => serde_json::json!({
            "x509CertificateChain": {"certificates": [{"rawBytes": b64.encode(leaf.contents())}]},
        }),
        None => serde_json::json!({"publicKey": {"hint": "umpire"}}),
    };
    material["tlogEntries"] = tlog_entries.into();
    if let Some(json) = rfc3161_json {
        let ts: Rfc3161 =
            serde_json::from_str(json).map_err(|e| LegacyError::Timestamp(e.to_string()))?;
        material["timestampVerificationData"] = serde_json::json!({"rfc3161Timestamps": [{"signedTimestamp": ts.signed_rfc3161_timestamp}]});
    }
    let bundle = serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.1",
        "verificationMaterial": material,
        "messageSignature": {
            "messageDigest": {"algorithm": "SHA2_256", "digest": b64.encode(Sha256::digest(payload))},
            "signature": signature_b64.trim(),
        },
    });
    Bundle::from_json(&bundle.to_string()).map_err(|e| LegacyError::RekorBundle(e.to_string()))
}

/// `(kind, apiVersion)` of a Rekor entry body.
fn entry_kind(body: &[u8]) -> Option<(String, String)> {
    #[derive(Deserialize)]
    struct Head {
        kind: String,
        #[serde(rename = "apiVersion")]
        api_version: String,
    }
    let head: Head = serde_json::from_slice(body).ok()?;
    Some((head.kind, head.api_version))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";

    #[test]
    fn rejects_malformed_annotations() {
        assert_eq!(
            to_bundle(b"p", "AAAA", Some("junk"), None, None).unwrap_err(),
            LegacyError::Certificate
        );
        assert_eq!(
            to_bundle(b"p", "%%", Some(CERT), None, None).unwrap_err(),
            LegacyError::Signature
        );
        assert!(matches!(
            to_bundle(b"p", "AAAA", Some(CERT), Some("{}"), None),
            Err(LegacyError::RekorBundle(_))
        ));
        let bad_id = r#"{"SignedEntryTimestamp":"AA==","Payload":{"body":"e30=","integratedTime":1,"logIndex":1,"logID":"zz"}}"#;
        assert!(matches!(
            to_bundle(b"p", "AAAA", Some(CERT), Some(bad_id), None),
            Err(LegacyError::RekorBundle(_))
        ));
        assert!(matches!(
            to_bundle(b"p", "AAAA", Some(CERT), None, Some("[]")),
            Err(LegacyError::Timestamp(_))
        ));
    }
}
