//! DSSE envelopes (cosign `.att` layers): the signature is over PAE(payloadType, payload), with byte
//! lengths; a signature over the raw payload does not verify. An envelope counts once per key,
//! however many of its signatures verify under that key.

use base64::Engine as _;
use serde::Deserialize;

use super::keys::PublicKey;

pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

#[derive(Debug, Clone, Deserialize)]
pub struct Envelope {
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub payload: String,
    #[serde(default)]
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EnvelopeSignature {
    #[serde(default)]
    pub keyid: String,
    pub sig: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DsseError {
    #[error("not a DSSE envelope: {0}")]
    Malformed(String),
    #[error("the DSSE payload is not base64")]
    Payload,
    #[error("the envelope has no signatures")]
    Unsigned,
    #[error("the envelope has more than {0} signatures")]
    TooManySignatures(usize),
}

/// Signatures considered per envelope.
pub const MAX_ENVELOPE_SIGNATURES: usize = 16;

/// DSSE v1 pre-authentication encoding.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

impl Envelope {
    pub fn parse(bytes: &[u8]) -> Result<Self, DsseError> {
        let e: Envelope =
            serde_json::from_slice(bytes).map_err(|e| DsseError::Malformed(e.to_string()))?;
        if e.signatures.is_empty() {
            return Err(DsseError::Unsigned);
        }
        if e.signatures.len() > MAX_ENVELOPE_SIGNATURES {
            return Err(DsseError::TooManySignatures(MAX_ENVELOPE_SIGNATURES));
        }
        Ok(e)
    }

    pub fn payload_bytes(&self) -> Result<Vec<u8>, DsseError> {
        base64::engine::general_purpose::STANDARD
            .decode(self.payload.trim())
            .map_err(|_| DsseError::Payload)
    }

    /// The names of the keys (of `keys`) under which at least one signature verifies over the PAE.
    pub fn signers(&self, payload: &[u8], keys: &[(String, &PublicKey)]) -> Vec<String> {
        let message = pae(&self.payload_type, payload);
        let sigs: Vec<Vec<u8>> = self
            .signatures
            .iter()
            .filter_map(|s| {
                base64::engine::general_purpose::STANDARD
                    .decode(s.sig.trim())
                    .ok()
            })
            .collect();
        keys.iter()
            .filter(|(_, key)| sigs.iter().any(|sig| key.verify(&message, sig)))
            .map(|(name, _)| name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::keys::test_keys::Ecdsa;

    fn envelope(sigs: &[Vec<u8>], payload: &[u8]) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD;
        serde_json::to_vec(&serde_json::json!({
            "payloadType": IN_TOTO_PAYLOAD_TYPE,
            "payload": b64.encode(payload),
            "signatures": sigs.iter().map(|s| serde_json::json!({"keyid": "", "sig": b64.encode(s)})).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    #[test]
    fn pae_uses_byte_lengths() {
        assert_eq!(pae("t", "é".as_bytes()), b"DSSEv1 1 t 2 \xc3\xa9".to_vec());
    }

    #[test]
    fn signatures_verify_over_pae_only_and_count_once_per_key() {
        let k = Ecdsa::p256();
        let key = PublicKey::from_pem(k.public_pem().as_bytes()).unwrap();
        let keys = vec![("k".to_string(), &key)];
        let payload = br#"{"_type":"https://in-toto.io/Statement/v1"}"#;
        let good = k.sign(&pae(IN_TOTO_PAYLOAD_TYPE, payload));
        let e = Envelope::parse(&envelope(&[good.clone(), good], payload)).unwrap();
        assert_eq!(e.signers(&e.payload_bytes().unwrap(), &keys), ["k"]);

        // Signed over the raw payload instead of the PAE.
        let raw = k.sign(payload);
        let e = Envelope::parse(&envelope(&[raw], payload)).unwrap();
        assert!(e.signers(&e.payload_bytes().unwrap(), &keys).is_empty());
    }

    #[test]
    fn rejects_unsigned_and_garbage() {
        assert_eq!(
            Envelope::parse(&envelope(&[], b"x")).unwrap_err(),
            DsseError::Unsigned
        );
        assert!(Envelope::parse(b"[]").is_err());
        let many = vec![vec![1u8]; MAX_ENVELOPE_SIGNATURES + 1];
        assert!(matches!(
            Envelope::parse(&envelope(&many, b"x")),
            Err(DsseError::TooManySignatures(_))
        ));
    }
}
