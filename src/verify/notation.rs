//! A Notation (Notary Project) signature envelope, checked step by step without deciding what a
//! failure means (the trust policy's level does that): integrity (the JWS signature over the
//! protected header and payload with the leaf's key, critical headers understood, the payload naming
//! exactly the target descriptor), authenticity (the `x5c` chain ends in a trusted certificate, with
//! Notation's certificate rules), certificate validity at a time, and the signature's own expiry.
//! JWS (`application/jose+json`, flattened serialization) is read; COSE is reported as not supported.

use std::collections::BTreeMap;

use aws_lc_rs::signature::{self as sig, UnparsedPublicKey};
use base64::Engine as _;
use rustls::pki_types::{CertificateDer, UnixTime};
use serde::Deserialize;
use sha2::Digest as _;
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::prelude::{FromDer, X509Certificate};

pub const JWS_MEDIA_TYPE: &str = "application/jose+json";
pub const COSE_MEDIA_TYPE: &str = "application/cose";
const PAYLOAD_TYPE: &str = "application/vnd.cncf.notary.payload.v1+json";
const CODE_SIGNING_EKU: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];
/// Protected headers Notation defines; a `crit` entry outside these is not understood.
const KNOWN_CRITICAL: &[&str] = &[
    "io.cncf.notary.signingScheme",
    "io.cncf.notary.expiry",
    "io.cncf.notary.authenticSigningTime",
];

/// The artifact a signature must name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningScheme {
    /// `notary.x509`: the chain ends in a `ca` store; time from a TSA countersignature.
    X509,
    /// `notary.x509.signingAuthority`: the chain ends in a `signingAuthority` store.
    SigningAuthority,
}

/// An envelope whose integrity held.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub scheme: SigningScheme,
    pub signing_time: Option<jiff::Timestamp>,
    pub expiry: Option<jiff::Timestamp>,
    /// Leaf first, as the envelope carries it.
    pub chain: Vec<Vec<u8>>,
    /// The leaf's subject attributes (C, ST, L, O, OU, CN, ...).
    pub leaf_subject: BTreeMap<String, String>,
    /// A TSA countersignature is present (`io.cncf.notary.timestampSignature`).
    pub has_timestamp: bool,
}

#[derive(Deserialize)]
struct RawJws {
    payload: String,
    protected: String,
    header: RawUnprotected,
    signature: String,
}

#[derive(Deserialize)]
struct RawUnprotected {
    #[serde(default)]
    x5c: Vec<String>,
    #[serde(default, rename = "io.cncf.notary.timestampSignature")]
    timestamp: Option<String>,
}

#[derive(Deserialize)]
struct RawPayload {
    #[serde(rename = "targetArtifact")]
    target_artifact: Target,
}

fn b64url(s: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| "not base64url".to_owned())
}

fn time(v: &serde_json::Value, name: &str) -> Result<Option<jiff::Timestamp>, String> {
    match v.get(name) {
        None => Ok(None),
        Some(t) => t
            .as_str()
            .and_then(|s| s.parse::<jiff::Timestamp>().ok())
            .map(Some)
            .ok_or_else(|| format!("{name} is not an RFC 3339 time")),
    }
}

/// The subject attributes of a certificate, by their short names.
pub fn subject_attributes(cert: &X509Certificate<'_>) -> BTreeMap<String, String> {
    let mut attrs = BTreeMap::new();
    for attr in cert.subject().iter_attributes() {
        let oid = attr.attr_type().to_id_string();
        let name = match oid.as_str() {
            "2.5.4.6" => "C",
            "2.5.4.8" => "ST",
            "2.5.4.7" => "L",
            "2.5.4.10" => "O",
            "2.5.4.11" => "OU",
            "2.5.4.3" => "CN",
            other => other,
        };
        if let Ok(value) = attr.as_str() {
            attrs.insert(name.to_owned(), value.to_owned());
        }
    }
    attrs
}

/// Integrity: parses a JWS envelope, verifies its signature with the leaf's key and checks that it
/// names `target`. Any failure here is an integrity failure.
pub fn check_integrity(
    bytes: &[u8],
    media_type: &str,
    target: &Target,
) -> Result<Envelope, String> {
    if media_type == COSE_MEDIA_TYPE {
        return Err(
            "COSE envelopes are not supported yet; sign with --signature-format jws".into(),
        );
    }
    if media_type != JWS_MEDIA_TYPE {
        return Err(format!(
            "envelope media type {media_type:?} is not a Notation envelope"
        ));
    }
    let raw: RawJws =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JWS envelope: {e}"))?;
    let protected_bytes = b64url(&raw.protected).map_err(|e| format!("protected header {e}"))?;
    let protected: serde_json::Value = serde_json::from_slice(&protected_bytes)
        .map_err(|e| format!("protected header is not JSON: {e}"))?;
    if protected.get("cty").and_then(|v| v.as_str()) != Some(PAYLOAD_TYPE) {
        return Err(format!("content type is not {PAYLOAD_TYPE}"));
    }
    let crit: Vec<&str> = protected
        .get("crit")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    if let Some(unknown) = crit.iter().find(|c| !KNOWN_CRITICAL.contains(c)) {
        return Err(format!("critical header {unknown:?} is not understood"));
    }
    for name in KNOWN_CRITICAL {
        if protected.get(*name).is_some() && !crit.contains(name) {
            return Err(format!("{name} is present but not marked critical"));
        }
    }
    let scheme = match protected
        .get("io.cncf.notary.signingScheme")
        .and_then(|v| v.as_str())
    {
        Some("notary.x509") => SigningScheme::X509,
        Some("notary.x509.signingAuthority") => SigningScheme::SigningAuthority,
        other => {
            return Err(format!(
                "signing scheme {other:?} is not notary.x509 or notary.x509.signingAuthority"
            ));
        }
    };
    let signing_time = time(&protected, "io.cncf.notary.signingTime")?;
    if scheme == SigningScheme::X509 && signing_time.is_none() {
        return Err("notary.x509 signatures carry io.cncf.notary.signingTime".into());
    }
    let expiry = time(&protected, "io.cncf.notary.expiry")?;

    let chain: Vec<Vec<u8>> = raw
        .header
        .x5c
        .iter()
        .take(10)
        .map(|c| base64::engine::general_purpose::STANDARD.decode(c))
        .collect::<Result<_, _>>()
        .map_err(|_| "x5c holds a certificate that is not base64".to_owned())?;
    let Some(leaf_der) = chain.first() else {
        return Err("the envelope carries no certificate chain (x5c)".into());
    };
    let (_, leaf) = X509Certificate::from_der(leaf_der)
        .map_err(|e| format!("the signing certificate is unreadable: {e}"))?;
    let key = leaf.public_key();
    let key_bytes = key.subject_public_key.data.to_vec();
    let alg = protected
        .get("alg")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let curve = || {
        key.algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .map(|o| o.to_id_string())
            .unwrap_or_default()
    };
    let is_rsa = key.algorithm.algorithm.to_id_string() == "1.2.840.113549.1.1.1";
    let algorithm: &dyn sig::VerificationAlgorithm = match (alg, is_rsa, curve().as_str()) {
        ("PS256", true, _) => &sig::RSA_PSS_2048_8192_SHA256,
        ("PS384", true, _) => &sig::RSA_PSS_2048_8192_SHA384,
        ("PS512", true, _) => &sig::RSA_PSS_2048_8192_SHA512,
        ("ES256", false, "1.2.840.10045.3.1.7") => &sig::ECDSA_P256_SHA256_FIXED,
        ("ES384", false, "1.3.132.0.34") => &sig::ECDSA_P384_SHA384_FIXED,
        ("ES512", false, "1.3.132.0.35") => &sig::ECDSA_P521_SHA512_FIXED,
        _ => {
            return Err(format!(
                "signature algorithm {alg:?} does not fit the signing key (or is not one Notation allows)"
            ));
        }
    };
    let signature = b64url(&raw.signature).map_err(|e| format!("signature {e}"))?;
    let signing_input = format!("{}.{}", raw.protected, raw.payload);
    UnparsedPublicKey::new(algorithm, key_bytes)
        .verify(signing_input.as_bytes(), &signature)
        .map_err(|_| {
            "the signature does not verify with the signing certificate's key".to_owned()
        })?;

    let payload_bytes = b64url(&raw.payload).map_err(|e| format!("payload {e}"))?;
    let payload: RawPayload = serde_json::from_slice(&payload_bytes)
        .map_err(|e| format!("the payload names no target artifact: {e}"))?;
    let named = payload.target_artifact;
    if named.digest != target.digest
        || named.size != target.size
        || named.media_type != target.media_type
    {
        return Err(format!(
            "the signature is for {} ({} bytes, {}), not {} ({} bytes, {})",
            named.digest,
            named.size,
            named.media_type,
            target.digest,
            target.size,
            target.media_type
        ));
    }
    Ok(Envelope {
        scheme,
        signing_time,
        expiry,
        leaf_subject: subject_attributes(&leaf),
        has_timestamp: raw.header.timestamp.is_some(),
        chain,
    })
}

fn unix(t: jiff::Timestamp) -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(t.as_second().max(0) as u64))
}

/// Authenticity: the chain's last certificate is one of `trusted` (byte for byte) and the chain
/// verifies up to it at `at`: signatures, CA constraints and path length, the leaf's digital
/// signature use and code-signing EKU (when it lists EKUs).
pub fn check_chain(
    envelope: &Envelope,
    trusted: &[Vec<u8>],
    at: jiff::Timestamp,
) -> Result<(), String> {
    let Some(last) = envelope.chain.last() else {
        return Err("no certificate chain".into());
    };
    if !trusted.iter().any(|t| t == last) {
        let (_, c) =
            X509Certificate::from_der(last).map_err(|e| format!("unreadable certificate: {e}"))?;
        return Err(format!(
            "the certificate chain ends in {:?}, which no configured trust store holds",
            c.subject().to_string()
        ));
    }
    let last_der = CertificateDer::from(last.as_slice());
    let anchor = webpki::anchor_from_trusted_cert(&last_der)
        .map_err(|e| format!("unusable trusted certificate: {e}"))?;
    let leaf_der = CertificateDer::from(envelope.chain[0].as_slice());
    let leaf = EndEntityCert::try_from(&leaf_der)
        .map_err(|e| format!("unreadable signing certificate: {e}"))?;
    let intermediates: Vec<CertificateDer<'_>> = envelope
        .chain
        .iter()
        .skip(1)
        .take(envelope.chain.len().saturating_sub(2))
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let algs = rustls::crypto::aws_lc_rs::default_provider()
        .signature_verification_algorithms
        .all;
    leaf.verify_for_usage(
        algs,
        &[anchor],
        &intermediates,
        unix(at),
        KeyUsage::required_if_present(CODE_SIGNING_EKU),
        None,
        None,
    )
    .map_err(|e| format!("the certificate chain does not verify: {e:?}"))?;
    let (_, leaf) = X509Certificate::from_der(&envelope.chain[0]).map_err(|e| e.to_string())?;
    if let Ok(Some(ku)) = leaf.key_usage()
        && !ku.value.digital_signature()
    {
        return Err("the signing certificate may not make digital signatures".into());
    }
    Ok(())
}

/// Every certificate of the chain is valid at `at`.
pub fn chain_valid_at(envelope: &Envelope, at: jiff::Timestamp) -> Result<(), String> {
    let t = at.as_second();
    for der in &envelope.chain {
        let (_, c) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
        let (from, to) = (
            c.validity().not_before.timestamp(),
            c.validity().not_after.timestamp(),
        );
        if t < from || t > to {
            return Err(format!(
                "certificate {:?} is valid from {} to {}, not at {at}",
                c.subject().to_string(),
                c.validity().not_before,
                c.validity().not_after
            ));
        }
    }
    Ok(())
}

/// The digest of an envelope's bytes, for naming it in messages.
pub fn envelope_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}
