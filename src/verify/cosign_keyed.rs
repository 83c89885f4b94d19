//! One cosign keyed signature: the base64 `dev.cosignproject.cosign/signature` annotation over the
//! simple-signing payload bytes, checked against every key umpire knows, then bound to the image digest.
//! Which of those keys a policy accepts is decided later (policy), so that "signed by a key this
//! policy does not accept" can be told apart from "signed by nobody we know".

use base64::Engine as _;

use super::keys::PublicKey;
use super::simple_signing::SimpleSigning;
use crate::digest::Digest;

/// A signature as found in the registry: the payload blob and the annotation beside it.
#[derive(Debug, Clone)]
pub struct SignatureLayer {
    pub payload: Vec<u8>,
    pub signature_b64: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyedOutcome {
    /// Verifies under `keys` and names the image digest.
    Valid { keys: Vec<String> },
    /// Verifies under `keys`, but the payload is about another digest (a copied signature).
    WrongDigest { keys: Vec<String>, found: String },
    /// Verifies under `keys`, but the payload is not a simple-signing document.
    BadPayload { keys: Vec<String>, reason: String },
    /// Verifies under no known key: tampered, corrupt, or by a key umpire was never given.
    Unverified { reason: String },
}

/// Checks one signature layer against `known_keys` (name, key) for the image at `image_digest`.
pub fn check(
    layer: &SignatureLayer,
    known_keys: &[(String, &PublicKey)],
    image_digest: &Digest,
) -> KeyedOutcome {
    let Some(sig_b64) = layer.signature_b64.as_deref() else {
        return KeyedOutcome::Unverified {
            reason: "the layer has no dev.cosignproject.cosign/signature annotation".into(),
        };
    };
    let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(sig_b64.trim()) else {
        return KeyedOutcome::Unverified {
            reason: "the signature annotation is not valid base64".into(),
        };
    };
    let keys: Vec<String> = known_keys
        .iter()
        .filter(|(_, key)| key.verify(&layer.payload, &signature))
        .map(|(name, _)| name.clone())
        .collect();
    if keys.is_empty() {
        return KeyedOutcome::Unverified {
            reason: "the signature verifies under none of the configured keys".into(),
        };
    }
    match SimpleSigning::parse(&layer.payload) {
        Err(e) => KeyedOutcome::BadPayload {
            keys,
            reason: e.to_string(),
        },
        Ok(p) if p.is_for(image_digest) => KeyedOutcome::Valid { keys },
        Ok(p) => KeyedOutcome::WrongDigest {
            keys,
            found: p.manifest_digest.chars().take(80).collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::keys::test_keys::Ecdsa;

    fn payload_for(d: &Digest) -> Vec<u8> {
        format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"r/a"}},"image":{{"docker-manifest-digest":"{d}"}},"type":"cosign container image signature"}},"optional":null}}"#
        )
        .into_bytes()
    }

    fn layer(k: &Ecdsa, payload: Vec<u8>) -> SignatureLayer {
        let sig = k.sign(&payload);
        SignatureLayer {
            payload,
            signature_b64: Some(base64::engine::general_purpose::STANDARD.encode(sig)),
        }
    }

    #[test]
    fn outcomes() {
        let (a, b) = (Ecdsa::p256(), Ecdsa::p256());
        let ka = PublicKey::from_pem(a.public_pem().as_bytes()).unwrap();
        let kb = PublicKey::from_pem(b.public_pem().as_bytes()).unwrap();
        let known = vec![("a".to_string(), &ka), ("b".to_string(), &kb)];
        let img = Digest::of(b"img");

        assert_eq!(
            check(&layer(&a, payload_for(&img)), &known, &img),
            KeyedOutcome::Valid {
                keys: vec!["a".into()]
            }
        );

        let other = Digest::of(b"other");
        assert_eq!(
            check(&layer(&b, payload_for(&other)), &known, &img),
            KeyedOutcome::WrongDigest {
                keys: vec!["b".into()],
                found: other.to_string()
            }
        );

        let mut tampered = layer(&a, payload_for(&img));
        tampered.payload[10] ^= 1;
        assert!(matches!(
            check(&tampered, &known, &img),
            KeyedOutcome::Unverified { .. }
        ));

        let stranger = Ecdsa::p256();
        assert!(matches!(
            check(&layer(&stranger, payload_for(&img)), &known, &img),
            KeyedOutcome::Unverified { .. }
        ));

        assert!(matches!(
            check(&layer(&a, b"not json".to_vec()), &known, &img),
            KeyedOutcome::BadPayload { .. }
        ));

        let mut no_sig = layer(&a, payload_for(&img));
        no_sig.signature_b64 = None;
        assert!(matches!(
            check(&no_sig, &known, &img),
            KeyedOutcome::Unverified { .. }
        ));
        no_sig.signature_b64 = Some("%%%".into());
        assert!(matches!(
            check(&no_sig, &known, &img),
            KeyedOutcome::Unverified { .. }
        ));
    }
}
