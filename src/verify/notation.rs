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
/// Certificates an envelope may carry.
const MAX_CHAIN: usize = 10;
/// The JWS protected headers notation-go reads into fields (matched case-insensitively by Go).
const JWS_HEADERS: &[&str] = &[
    "alg",
    "cty",
    "crit",
    "io.cncf.notary.signingScheme",
    "io.cncf.notary.signingTime",
    "io.cncf.notary.expiry",
    "io.cncf.notary.authenticSigningTime",
    "io.cncf.notary.verificationPlugin",
    "io.cncf.notary.verificationPluginMinVersion",
];
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
    /// `signingTime` (a claim) for `notary.x509`, `authenticSigningTime` (vouched for by the
    /// signing authority) for `notary.x509.signingAuthority`.
    pub signing_time: jiff::Timestamp,
    pub expiry: Option<jiff::Timestamp>,
    /// Leaf first, as the envelope carries it.
    pub chain: Vec<Vec<u8>>,
    /// The leaf's subject attributes (C, ST, L, O, OU, CN, ...).
    pub leaf_subject: BTreeMap<String, String>,
    /// The RFC 3161 countersignature (`io.cncf.notary.timestampSignature`), a DER token.
    pub timestamp: Option<Vec<u8>>,
    /// The signature's bytes, which a timestamp countersigns.
    pub signature: Vec<u8>,
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

/// A header value the checks read, whichever the envelope format.
enum HeaderValue {
    Text(String),
    Time(jiff::Timestamp),
    Other,
}

/// An envelope taken apart, before any check: what JWS and COSE have in common.
struct Parts {
    /// JWS `alg` names (`PS256`, `ES384`, ...).
    alg: String,
    content_type: Option<String>,
    crit: Vec<String>,
    /// The protected headers Notation defines, by name.
    notary: BTreeMap<String, HeaderValue>,
    chain: Vec<Vec<u8>>,
    timestamp: Option<Vec<u8>>,
    signature: Vec<u8>,
    /// The bytes the signature is over.
    signed: Vec<u8>,
    payload: Vec<u8>,
}

fn jws_parts(bytes: &[u8]) -> Result<Parts, String> {
    let raw: RawJws =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JWS envelope: {e}"))?;
    let protected_bytes = b64url(&raw.protected).map_err(|e| format!("protected header {e}"))?;
    // notation-go reads the protected header with Go's encoding/json: keys that fold together
    // are refused, and so is any other spelling of a header it knows (`IO.CNCF.NOTARY.EXPIRY` is
    // its expiry, which a case-sensitive reader would miss).
    crate::gojson::check(&protected_bytes).map_err(|e| format!("protected header: {e}"))?;
    let protected: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&protected_bytes)
            .map_err(|e| format!("protected header is not a JSON object: {e}"))?;
    for name in protected.keys() {
        let folded = crate::gojson::fold(name);
        if let Some(known) = JWS_HEADERS
            .iter()
            .find(|k| crate::gojson::fold(k) == folded && **k != name.as_str())
        {
            return Err(format!(
                "protected header {name:?} is another spelling of {known:?}, which notation-go reads as the same header"
            ));
        }
    }
    // RFC 7515 4.1.11: `crit` is a non-empty list of names, each present in the protected header.
    let crit: Vec<String> = match protected.get("crit") {
        None => Vec::new(),
        Some(serde_json::Value::Array(items)) if !items.is_empty() => {
            let mut names = Vec::with_capacity(items.len());
            for item in items {
                let Some(name) = item.as_str() else {
                    return Err(format!("crit holds {item}, which is not a header name"));
                };
                if !protected.contains_key(name) {
                    return Err(format!(
                        "crit names {name:?}, which the protected header does not hold"
                    ));
                }
                names.push(name.to_owned());
            }
            names
        }
        Some(other) => return Err(format!("crit is {other}, not a non-empty list of names")),
    };
    let text = |name: &str| {
        protected
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let mut notary = BTreeMap::new();
    for (name, value) in &protected {
        if !name.starts_with("io.cncf.notary.") {
            continue;
        }
        let v = match value.as_str() {
            Some(s) if name == "io.cncf.notary.signingScheme" => HeaderValue::Text(s.to_owned()),
            Some(s) => match s.parse::<jiff::Timestamp>() {
                Ok(t) => HeaderValue::Time(t),
                Err(_) => HeaderValue::Text(s.to_owned()),
            },
            None => HeaderValue::Other,
        };
        notary.insert(name.clone(), v);
    }
    let chain = raw
        .header
        .x5c
        .iter()
        .take(MAX_CHAIN)
        .map(|c| base64::engine::general_purpose::STANDARD.decode(c))
        .collect::<Result<_, _>>()
        .map_err(|_| "x5c holds a certificate that is not base64".to_owned())?;
    let timestamp = match &raw.header.timestamp {
        None => None,
        Some(t) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(t)
                .map_err(|_| "the timestamp countersignature is not base64".to_owned())?,
        ),
    };
    Ok(Parts {
        alg: text("alg").unwrap_or_default(),
        content_type: text("cty"),
        crit,
        notary,
        chain,
        timestamp,
        signature: b64url(&raw.signature).map_err(|e| format!("signature {e}"))?,
        signed: format!("{}.{}", raw.protected, raw.payload).into_bytes(),
        payload: b64url(&raw.payload).map_err(|e| format!("payload {e}"))?,
    })
}

fn cose_parts(bytes: &[u8]) -> Result<Parts, String> {
    use coset::iana::{self, EnumI64 as _};
    use coset::{Label, RegisteredLabelWithPrivate, TaggedCborSerializable as _};
    // notation-go (go-cose's Sign1Message) reads tagged COSE_Sign1 only.
    let sign1 = coset::CoseSign1::from_tagged_slice(bytes)
        .map_err(|e| format!("not a tagged COSE_Sign1 envelope (tag 18): {e}"))?;
    let header = &sign1.protected.header;
    let alg = match &header.alg {
        Some(coset::Algorithm::Assigned(a)) => match a {
            iana::Algorithm::PS256 => "PS256",
            iana::Algorithm::PS384 => "PS384",
            iana::Algorithm::PS512 => "PS512",
            iana::Algorithm::ES256 => "ES256",
            iana::Algorithm::ES384 => "ES384",
            iana::Algorithm::ES512 => "ES512",
            _ => "",
        },
        _ => "",
    };
    // RFC 9052 3.1: each critical label is present in the protected header.
    let mut crit = Vec::with_capacity(header.crit.len());
    for c in &header.crit {
        let present = match c {
            RegisteredLabelWithPrivate::Text(t) => header
                .rest
                .iter()
                .any(|(l, _)| *l == Label::Text(t.clone())),
            RegisteredLabelWithPrivate::Assigned(iana::HeaderParameter::Alg) => {
                header.alg.is_some()
            }
            RegisteredLabelWithPrivate::Assigned(iana::HeaderParameter::ContentType) => {
                header.content_type.is_some()
            }
            RegisteredLabelWithPrivate::Assigned(a) => header
                .rest
                .iter()
                .any(|(l, _)| *l == Label::Int(a.to_i64())),
            RegisteredLabelWithPrivate::PrivateUse(p) => {
                header.rest.iter().any(|(l, _)| *l == Label::Int(*p))
            }
        };
        let name = match c {
            RegisteredLabelWithPrivate::Text(t) => t.clone(),
            RegisteredLabelWithPrivate::Assigned(a) => a.to_i64().to_string(),
            RegisteredLabelWithPrivate::PrivateUse(p) => p.to_string(),
        };
        if !present {
            return Err(format!(
                "crit names {name:?}, which the protected header does not hold"
            ));
        }
        crit.push(name);
    }
    let content_type = match &header.content_type {
        Some(coset::ContentType::Text(t)) => Some(t.clone()),
        _ => None,
    };
    let mut notary = BTreeMap::new();
    for (label, value) in &header.rest {
        let Label::Text(name) = label else { continue };
        if !name.starts_with("io.cncf.notary.") {
            continue;
        }
        let v = match value {
            coset::cbor::value::Value::Text(t) => HeaderValue::Text(t.clone()),
            coset::cbor::value::Value::Tag(1, inner) => match inner.as_ref() {
                coset::cbor::value::Value::Integer(i) => i64::try_from(*i)
                    .ok()
                    .and_then(|s| jiff::Timestamp::from_second(s).ok())
                    .map_or(HeaderValue::Other, HeaderValue::Time),
                _ => HeaderValue::Other,
            },
            _ => HeaderValue::Other,
        };
        notary.insert(name.clone(), v);
    }
    let mut chain = Vec::new();
    let mut timestamp = None;
    for (label, value) in &sign1.unprotected.rest {
        match (label, value) {
            (Label::Int(33), coset::cbor::value::Value::Bytes(b)) => chain.push(b.clone()),
            (Label::Int(33), coset::cbor::value::Value::Array(items)) => {
                for item in items.iter().take(MAX_CHAIN) {
                    match item {
                        coset::cbor::value::Value::Bytes(b) => chain.push(b.clone()),
                        _ => {
                            return Err("x5chain holds something that is not a certificate".into());
                        }
                    }
                }
            }
            (Label::Text(t), coset::cbor::value::Value::Bytes(b))
                if t == "io.cncf.notary.timestampSignature" =>
            {
                timestamp = Some(b.clone());
            }
            _ => {}
        }
    }
    let payload = sign1
        .payload
        .clone()
        .ok_or("the COSE envelope carries no payload")?;
    Ok(Parts {
        alg: alg.to_owned(),
        content_type,
        crit,
        notary,
        chain,
        timestamp,
        signature: sign1.signature.clone(),
        signed: sign1.tbs_data(b""),
        payload,
    })
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
            "2.5.4.5" => "SERIALNUMBER",
            "2.5.4.9" => "STREET",
            "2.5.4.17" => "POSTALCODE",
            other => other,
        };
        if let Ok(value) = attr.as_str() {
            // notation-go refuses a subject with an attribute twice: such an attribute matches
            // no identity here.
            if attrs.insert(name.to_owned(), value.to_owned()).is_some() {
                attrs.insert(name.to_owned(), "\u{0}(appears twice)".to_owned());
            }
        }
    }
    attrs
}

/// Integrity: parses a JWS or COSE envelope, verifies its signature with the leaf's key, checks
/// its critical headers and that it names `target`. Any failure here is an integrity failure.
pub fn check_integrity(
    bytes: &[u8],
    media_type: &str,
    target: &Target,
) -> Result<Envelope, String> {
    let parts = match media_type {
        JWS_MEDIA_TYPE => jws_parts(bytes)?,
        COSE_MEDIA_TYPE => cose_parts(bytes)?,
        other => {
            return Err(format!(
                "envelope media type {other:?} is not a Notation envelope (application/jose+json or application/cose)"
            ));
        }
    };
    if parts.content_type.as_deref() != Some(PAYLOAD_TYPE) {
        return Err(format!("content type is not {PAYLOAD_TYPE}"));
    }
    if let Some(unknown) = parts
        .crit
        .iter()
        .find(|c| !KNOWN_CRITICAL.contains(&c.as_str()))
    {
        return Err(format!("critical header {unknown:?} is not understood"));
    }
    if let Some(plugin) = parts
        .notary
        .keys()
        .find(|k| k.starts_with("io.cncf.notary.verificationPlugin"))
    {
        return Err(format!(
            "{plugin} asks for a verification plugin, which umpire does not run"
        ));
    }
    for name in KNOWN_CRITICAL {
        if parts.notary.contains_key(*name) && !parts.crit.iter().any(|c| c == name) {
            return Err(format!("{name} is present but not marked critical"));
        }
    }
    let scheme = match parts.notary.get("io.cncf.notary.signingScheme") {
        Some(HeaderValue::Text(s)) if s == "notary.x509" => SigningScheme::X509,
        Some(HeaderValue::Text(s)) if s == "notary.x509.signingAuthority" => {
            SigningScheme::SigningAuthority
        }
        _ => {
            return Err("signing scheme is not notary.x509 or notary.x509.signingAuthority".into());
        }
    };
    let time = |name: &str| match parts.notary.get(name) {
        None => Ok(None),
        Some(HeaderValue::Time(t)) => Ok(Some(*t)),
        Some(_) => Err(format!("{name} is not a time")),
    };
    let signing_time = time("io.cncf.notary.signingTime")?;
    let authentic_signing_time = time("io.cncf.notary.authenticSigningTime")?;
    let signing_time = match scheme {
        SigningScheme::X509 => {
            signing_time.ok_or("notary.x509 signatures carry io.cncf.notary.signingTime")?
        }
        SigningScheme::SigningAuthority => authentic_signing_time.ok_or(
            "notary.x509.signingAuthority signatures carry io.cncf.notary.authenticSigningTime",
        )?,
    };
    let expiry = time("io.cncf.notary.expiry")?;

    let Some(leaf_der) = parts.chain.first() else {
        return Err("the envelope carries no certificate chain".into());
    };
    let (_, leaf) = X509Certificate::from_der(leaf_der)
        .map_err(|e| format!("the signing certificate is unreadable: {e}"))?;
    let key = leaf.public_key();
    let key_bytes = key.subject_public_key.data.to_vec();
    let curve = || {
        key.algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .map(|o| o.to_id_string())
            .unwrap_or_default()
    };
    let is_rsa = key.algorithm.algorithm.to_id_string() == "1.2.840.113549.1.1.1";
    let alg = parts.alg.as_str();
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
    UnparsedPublicKey::new(algorithm, key_bytes)
        .verify(&parts.signed, &parts.signature)
        .map_err(|_| {
            "the signature does not verify with the signing certificate's key".to_owned()
        })?;

    let payload: RawPayload = serde_json::from_slice(&parts.payload)
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
        timestamp: parts.timestamp,
        signature: parts.signature,
        chain: parts.chain,
    })
}

fn unix(t: jiff::Timestamp) -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(t.as_second().max(0) as u64))
}

/// Authenticity: some certificate of the chain is one of `trusted` (byte for byte, as Notation
/// compares them) and the chain verifies up to it at `at`: signatures, CA constraints and path
/// length, the leaf's digital signature use and code-signing EKU (when it lists EKUs).
pub fn check_chain(
    envelope: &Envelope,
    trusted: &[Vec<u8>],
    at: jiff::Timestamp,
) -> Result<(), String> {
    let Some(anchor_at) = envelope
        .chain
        .iter()
        .position(|c| trusted.iter().any(|t| t == c))
    else {
        let last = envelope.chain.last().ok_or("no certificate chain")?;
        let (_, c) =
            X509Certificate::from_der(last).map_err(|e| format!("unreadable certificate: {e}"))?;
        return Err(format!(
            "the certificate chain (ending in {:?}) holds no certificate of a configured trust store",
            c.subject().to_string()
        ));
    };
    let anchor_der = CertificateDer::from(envelope.chain[anchor_at].as_slice());
    let anchor = webpki::anchor_from_trusted_cert(&anchor_der)
        .map_err(|e| format!("unusable trusted certificate: {e}"))?;
    let leaf_der = CertificateDer::from(envelope.chain[0].as_slice());
    let leaf = EndEntityCert::try_from(&leaf_der)
        .map_err(|e| format!("unreadable signing certificate: {e}"))?;
    let intermediates: Vec<CertificateDer<'_>> = envelope
        .chain
        .iter()
        .take(anchor_at)
        .skip(1)
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
    .map_err(|e| format!("the certificate chain does not verify at {at}: {e:?}"))?;
    let (_, leaf) = X509Certificate::from_der(&envelope.chain[0]).map_err(|e| e.to_string())?;
    // Notation's signing-certificate rules: key usage present, with digital signature.
    match leaf.key_usage() {
        Ok(Some(ku)) if ku.value.digital_signature() => {}
        Ok(Some(_)) => {
            return Err("the signing certificate may not make digital signatures".into());
        }
        _ => return Err("the signing certificate has no (readable) key usage extension".into()),
    }
    Ok(())
}

/// A certificate's validity period.
pub fn validity(der: &[u8]) -> Result<(jiff::Timestamp, jiff::Timestamp), String> {
    let (_, c) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    let t = |s: i64| jiff::Timestamp::from_second(s).map_err(|e| e.to_string());
    Ok((
        t(c.validity().not_before.timestamp())?,
        t(c.validity().not_after.timestamp())?,
    ))
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
