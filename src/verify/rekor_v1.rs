//! A Rekor v1 log entry as cosign's legacy annotations carry it (`dev.sigstore.cosign/bundle`): the
//! signed entry timestamp (SET) over the RFC 8785 canonical JSON of body, integrated time, log
//! index and log ID, under a log key of the trusted root valid at the integrated time; and the
//! entry bodies umpire binds itself (`intoto` 0.0.1 and `dsse` 0.0.1 name the envelope, the payload
//! and the signer, so a SET for another envelope or certificate vouches for nothing here).

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sigstore_types::{Sha256Hash, SignatureBytes};
use sigstore_verify::crypto::Keyring;

/// A logged entry, read from the annotation (nothing here is trusted before [`LoggedEntry::verify_set`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEntry {
    pub body: Vec<u8>,
    pub integrated_time: i64,
    pub log_index: i64,
    pub log_id: Vec<u8>,
    pub set: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RekorError {
    #[error("the Rekor bundle annotation is malformed: {0}")]
    Malformed(String),
    #[error("the log entry's SET does not verify: {0}")]
    Set(String),
    #[error("the log entry records another {0}")]
    Mismatch(&'static str),
    #[error("the log entry is a {kind} {version} entry; expected {expected}")]
    Kind {
        kind: String,
        version: String,
        expected: &'static str,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Annotation {
    signed_entry_timestamp: String,
    payload: AnnotationPayload,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnnotationPayload {
    body: String,
    integrated_time: i64,
    log_index: i64,
    #[serde(rename = "logID")]
    log_id: String,
}

/// What the SET signs; serialised as RFC 8785 canonical JSON.
#[derive(Serialize)]
struct SetPayload<'a> {
    body: &'a str,
    #[serde(rename = "integratedTime")]
    integrated_time: i64,
    #[serde(rename = "logID")]
    log_id: &'a str,
    #[serde(rename = "logIndex")]
    log_index: i64,
}

impl LoggedEntry {
    /// Reads the `dev.sigstore.cosign/bundle` annotation.
    pub fn from_annotation(json: &str) -> Result<Self, RekorError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let a: Annotation =
            serde_json::from_str(json).map_err(|e| RekorError::Malformed(e.to_string()))?;
        Ok(Self {
            body: b64
                .decode(&a.payload.body)
                .map_err(|_| RekorError::Malformed("body is not base64".into()))?,
            integrated_time: a.payload.integrated_time,
            log_index: a.payload.log_index,
            log_id: hex::decode(&a.payload.log_id)
                .map_err(|_| RekorError::Malformed("logID is not hex".into()))?,
            set: b64
                .decode(a.signed_entry_timestamp.trim())
                .map_err(|_| RekorError::Malformed("SignedEntryTimestamp is not base64".into()))?,
        })
    }

    /// `(kind, apiVersion)` of the body.
    pub fn kind(&self) -> Option<(String, String)> {
        #[derive(Deserialize)]
        struct Head {
            kind: String,
            #[serde(rename = "apiVersion")]
            api_version: String,
        }
        let head: Head = serde_json::from_slice(&self.body).ok()?;
        Some((head.kind, head.api_version))
    }

    /// The integrated time, once the SET that covers it verifies under a log key of `keys` valid
    /// at that time, and it is not in the future (`now`).
    pub fn verify_set(
        &self,
        keys: &Keyring,
        now: jiff::Timestamp,
    ) -> Result<jiff::Timestamp, RekorError> {
        let time = jiff::Timestamp::from_second(self.integrated_time)
            .map_err(|_| RekorError::Set("integrated time out of range".into()))?;
        if time > now {
            return Err(RekorError::Set(format!(
                "integrated time {time} is in the future"
            )));
        }
        let id = Sha256Hash::try_from(self.log_id.as_slice())
            .map_err(|_| RekorError::Set("the log ID is not 32 bytes".into()))?;
        let body = base64::engine::general_purpose::STANDARD.encode(&self.body);
        let log_id = hex::encode(&self.log_id);
        let payload = SetPayload {
            body: &body,
            integrated_time: self.integrated_time,
            log_id: &log_id,
            log_index: self.log_index,
        };
        let canonical = serde_json_canonicalizer::to_vec(&payload)
            .map_err(|e| RekorError::Set(e.to_string()))?;
        keys.verify_with_key_id_at(&id, time, canonical, &SignatureBytes::new(self.set.clone()))
            .map_err(|e| {
                RekorError::Set(format!(
                    "not signed by a trusted log key valid at {time} ({e})"
                ))
            })?;
        Ok(time)
    }
}

#[derive(Deserialize)]
struct Hash {
    algorithm: String,
    value: String,
}

impl Hash {
    fn is_sha256_of(&self, bytes: &[u8]) -> bool {
        use sha2::Digest as _;
        self.algorithm == "sha256"
            && self
                .value
                .eq_ignore_ascii_case(&hex::encode(sha2::Sha256::digest(bytes)))
    }
}

#[derive(Deserialize)]
struct IntotoBody {
    spec: IntotoSpec,
}

#[derive(Deserialize)]
struct IntotoSpec {
    content: IntotoContent,
    #[serde(rename = "publicKey")]
    public_key: String,
}

#[derive(Deserialize)]
struct IntotoContent {
    hash: Hash,
    #[serde(rename = "payloadHash")]
    payload_hash: Hash,
}

#[derive(Deserialize)]
struct DsseBody {
    spec: DsseSpec,
}

#[derive(Deserialize)]
struct DsseSpec {
    #[serde(rename = "envelopeHash")]
    envelope_hash: Hash,
    #[serde(rename = "payloadHash")]
    payload_hash: Hash,
    signatures: Vec<DsseBodySignature>,
}

#[derive(Deserialize)]
struct DsseBodySignature {
    signature: String,
    verifier: String,
}

/// Who signed, as an entry records it (a base64-encoded PEM certificate or public key).
#[derive(Clone, Copy)]
pub enum LoggedSigner<'a> {
    /// A Fulcio certificate (DER).
    Certificate(&'a [u8]),
    /// A configured public key (SubjectPublicKeyInfo DER).
    Key(&'a [u8]),
}

impl LoggedSigner<'_> {
    fn is(&self, b64_pem: &str) -> bool {
        let Ok(pem_bytes) = base64::engine::general_purpose::STANDARD.decode(b64_pem) else {
            return false;
        };
        let Ok(parsed) = pem::parse(pem_bytes) else {
            return false;
        };
        match self {
            LoggedSigner::Certificate(der) => {
                parsed.tag() == "CERTIFICATE" && parsed.contents() == *der
            }
            LoggedSigner::Key(spki) => parsed.tag() == "PUBLIC KEY" && parsed.contents() == *spki,
        }
    }
}

/// The envelope, its payload and its signer as an entry of either kind must record them.
pub struct Logged<'a> {
    /// The envelope exactly as stored (the layer blob).
    pub envelope: &'a [u8],
    pub payload: &'a [u8],
    /// The signatures of the envelope (base64, as in the envelope).
    pub signatures: &'a [String],
    pub signer: LoggedSigner<'a>,
}

impl LoggedEntry {
    /// Checks that an `intoto` 0.0.1 body records this envelope (`content.hash`), payload
    /// (`payloadHash`) and signer (`publicKey`).
    pub fn binds_intoto(&self, what: &Logged<'_>) -> Result<(), RekorError> {
        self.expect_kind("intoto", "0.0.1")?;
        let body: IntotoBody = serde_json::from_slice(&self.body)
            .map_err(|e| RekorError::Malformed(format!("intoto body: {e}")))?;
        if !body.spec.content.hash.is_sha256_of(what.envelope) {
            return Err(RekorError::Mismatch("envelope"));
        }
        if !body.spec.content.payload_hash.is_sha256_of(what.payload) {
            return Err(RekorError::Mismatch("payload"));
        }
        if !what.signer.is(&body.spec.public_key) {
            return Err(RekorError::Mismatch("signer"));
        }
        Ok(())
    }

    /// Checks that a `dsse` 0.0.1 body records this envelope (`envelopeHash`), payload
    /// (`payloadHash`) and exactly the envelope's signatures, each with this signer.
    pub fn binds_dsse(&self, what: &Logged<'_>) -> Result<(), RekorError> {
        self.expect_kind("dsse", "0.0.1")?;
        let body: DsseBody = serde_json::from_slice(&self.body)
            .map_err(|e| RekorError::Malformed(format!("dsse body: {e}")))?;
        if !body.spec.envelope_hash.is_sha256_of(what.envelope) {
            return Err(RekorError::Mismatch("envelope"));
        }
        if !body.spec.payload_hash.is_sha256_of(what.payload) {
            return Err(RekorError::Mismatch("payload"));
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let decode = |s: &str| b64.decode(s.trim()).ok();
        let mut logged: Vec<Option<Vec<u8>>> = body
            .spec
            .signatures
            .iter()
            .map(|s| decode(&s.signature))
            .collect();
        let mut ours: Vec<Option<Vec<u8>>> = what.signatures.iter().map(|s| decode(s)).collect();
        logged.sort();
        ours.sort();
        if logged != ours || logged.iter().any(Option::is_none) {
            return Err(RekorError::Mismatch("signature"));
        }
        if body
            .spec
            .signatures
            .iter()
            .any(|s| !what.signer.is(&s.verifier))
        {
            return Err(RekorError::Mismatch("signer"));
        }
        Ok(())
    }

    fn expect_kind(&self, kind: &'static str, version: &'static str) -> Result<(), RekorError> {
        match self.kind() {
            Some((k, v)) if k == kind && v == version => Ok(()),
            Some((k, v)) => Err(RekorError::Kind {
                kind: k.chars().take(40).collect(),
                version: v.chars().take(20).collect(),
                expected: if kind == "intoto" {
                    "intoto 0.0.1"
                } else {
                    "dsse 0.0.1"
                },
            }),
            None => Err(RekorError::Malformed(
                "body names no kind and apiVersion".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest as _;

    fn hex256(b: &[u8]) -> String {
        hex::encode(sha2::Sha256::digest(b))
    }

    fn entry(body: String) -> LoggedEntry {
        LoggedEntry {
            body: body.into_bytes(),
            integrated_time: 1,
            log_index: 1,
            log_id: vec![0; 32],
            set: Vec::new(),
        }
    }

    const CERT: &[u8] = b"certificate";
    const KEY: &[u8] = b"key";

    fn pem_b64(tag: &str, der: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD
            .encode(pem::encode(&pem::Pem::new(tag, der.to_vec())))
    }

    fn intoto(envelope: &[u8], payload: &[u8], signer: &str) -> LoggedEntry {
        entry(format!(
            r#"{{"apiVersion":"0.0.1","kind":"intoto","spec":{{"content":{{"hash":{{"algorithm":"sha256","value":"{}"}},"payloadHash":{{"algorithm":"sha256","value":"{}"}}}},"publicKey":"{signer}"}}}}"#,
            hex256(envelope),
            hex256(payload)
        ))
    }

    #[test]
    fn an_intoto_entry_binds_envelope_payload_and_signer() {
        let sigs = vec!["c2ln".to_owned()];
        let logged = |envelope: &'static [u8], payload: &'static [u8], signer| Logged {
            envelope,
            payload,
            signatures: &sigs,
            signer,
        };
        let e = intoto(b"env", b"pay", &pem_b64("CERTIFICATE", CERT));
        assert_eq!(
            e.binds_intoto(&logged(b"env", b"pay", LoggedSigner::Certificate(CERT))),
            Ok(())
        );
        assert_eq!(
            e.binds_intoto(&logged(b"env2", b"pay", LoggedSigner::Certificate(CERT))),
            Err(RekorError::Mismatch("envelope"))
        );
        assert_eq!(
            e.binds_intoto(&logged(b"env", b"pay2", LoggedSigner::Certificate(CERT))),
            Err(RekorError::Mismatch("payload"))
        );
        assert_eq!(
            e.binds_intoto(&logged(b"env", b"pay", LoggedSigner::Certificate(b"other"))),
            Err(RekorError::Mismatch("signer"))
        );
        // A public key where a certificate was logged (and the reverse) is another signer.
        assert_eq!(
            e.binds_intoto(&logged(b"env", b"pay", LoggedSigner::Key(CERT))),
            Err(RekorError::Mismatch("signer"))
        );
        let k = intoto(b"env", b"pay", &pem_b64("PUBLIC KEY", KEY));
        assert_eq!(
            k.binds_intoto(&logged(b"env", b"pay", LoggedSigner::Key(KEY))),
            Ok(())
        );
        // An intoto entry is not read as a dsse one.
        assert!(matches!(
            e.binds_dsse(&logged(b"env", b"pay", LoggedSigner::Certificate(CERT))),
            Err(RekorError::Kind { .. })
        ));
    }

    #[test]
    fn a_dsse_entry_binds_exactly_the_envelopes_signatures() {
        let body = |sigs: &[&str]| {
            entry(format!(
                r#"{{"apiVersion":"0.0.1","kind":"dsse","spec":{{"envelopeHash":{{"algorithm":"sha256","value":"{}"}},"payloadHash":{{"algorithm":"sha256","value":"{}"}},"signatures":[{}]}}}}"#,
                hex256(b"env"),
                hex256(b"pay"),
                sigs.iter()
                    .map(|s| format!(
                        r#"{{"signature":"{s}","verifier":"{}"}}"#,
                        pem_b64("CERTIFICATE", CERT)
                    ))
                    .collect::<Vec<_>>()
                    .join(",")
            ))
        };
        let ours = vec!["c2ln".to_owned()];
        let logged = Logged {
            envelope: b"env",
            payload: b"pay",
            signatures: &ours,
            signer: LoggedSigner::Certificate(CERT),
        };
        assert_eq!(body(&["c2ln"]).binds_dsse(&logged), Ok(()));
        assert_eq!(
            body(&["b3RoZXI="]).binds_dsse(&logged),
            Err(RekorError::Mismatch("signature"))
        );
        assert_eq!(
            body(&["c2ln", "b3RoZXI="]).binds_dsse(&logged),
            Err(RekorError::Mismatch("signature"))
        );
    }

    #[test]
    fn malformed_annotations_and_sets_are_refused() {
        assert!(LoggedEntry::from_annotation("{}").is_err());
        let bad_id = r#"{"SignedEntryTimestamp":"AA==","Payload":{"body":"e30=","integratedTime":1,"logIndex":1,"logID":"zz"}}"#;
        assert!(LoggedEntry::from_annotation(bad_id).is_err());
        let e = LoggedEntry {
            integrated_time: i64::MAX,
            ..entry("{}".into())
        };
        assert!(matches!(
            e.verify_set(&Keyring::new(), jiff::Timestamp::now()),
            Err(RekorError::Set(_))
        ));
        // Not in the future, but under no trusted key.
        let e = entry("{}".into());
        assert!(matches!(
            e.verify_set(&Keyring::new(), jiff::Timestamp::now()),
            Err(RekorError::Set(_))
        ));
    }
}
