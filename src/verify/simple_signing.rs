//! The simple-signing payload cosign signs (cosign SIGNATURE_SPEC): what image a signature is about.
//! Only `critical.image.docker-manifest-digest` binds a signature to an image; it must equal the
//! image digest exactly.

use serde::Deserialize;

use crate::digest::Digest;

/// The one `critical.type` cosign (sigstore's payload package) and containers/image accept for
/// these signatures; `atomic container signature` is GPG simple signing's, not cosign's.
const ACCEPTED_TYPES: &[&str] = &["cosign container image signature"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleSigning {
    pub manifest_digest: String,
    pub docker_reference: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    #[error("signed payload is not a simple-signing document: {0}")]
    Malformed(String),
    #[error("signed payload has type {0:?}, not a container image signature")]
    WrongType(String),
}

#[derive(Deserialize)]
struct Raw {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    identity: Identity,
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct Identity {
    #[serde(rename = "docker-reference", default)]
    docker_reference: String,
}

#[derive(Deserialize)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

impl SimpleSigning {
    pub fn parse(payload: &[u8]) -> Result<Self, PayloadError> {
        // cosign and containers/image read the payload with Go's encoding/json.
        let raw: Raw = crate::gojson::from_slice(payload)
            .map_err(|e| PayloadError::Malformed(e.to_string()))?;
        if !ACCEPTED_TYPES.contains(&raw.critical.kind.as_str()) {
            return Err(PayloadError::WrongType(
                raw.critical.kind.chars().take(80).collect(),
            ));
        }
        Ok(Self {
            manifest_digest: raw.critical.image.docker_manifest_digest,
            docker_reference: raw.critical.identity.docker_reference,
        })
    }

    /// True when the payload names exactly `digest` (no case folding, no other algorithms).
    pub fn is_for(&self, digest: &Digest) -> bool {
        self.manifest_digest == digest.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(kind: &str, digest: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "critical": {
                "identity": {"docker-reference": "reg.example/app"},
                "image": {"docker-manifest-digest": digest},
                "type": kind,
            },
            "optional": {"creator": "test"},
        }))
        .unwrap()
    }

    #[test]
    fn binds_to_the_exact_digest() {
        let d = Digest::of(b"image");
        let p =
            SimpleSigning::parse(&payload("cosign container image signature", d.as_str())).unwrap();
        assert!(p.is_for(&d));
        assert!(!p.is_for(&Digest::of(b"other")));
        let upper = d.as_str().to_uppercase().replace("SHA256", "sha256");
        let p = SimpleSigning::parse(&payload("cosign container image signature", &upper)).unwrap();
        assert!(!p.is_for(&d), "case-folded digests must not match");
    }

    #[test]
    fn rejects_wrong_type_and_garbage() {
        let d = Digest::of(b"image");
        assert!(matches!(
            SimpleSigning::parse(&payload("something else", d.as_str())),
            Err(PayloadError::WrongType(_))
        ));
        assert!(matches!(
            SimpleSigning::parse(&payload("atomic container signature", d.as_str())),
            Err(PayloadError::WrongType(_))
        ));
        let twice = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"r"}},"image":{{"docker-manifest-digest":"{d}"}},"type":"cosign container image signature","Type":"x"}}}}"#
        );
        assert!(matches!(
            SimpleSigning::parse(twice.as_bytes()),
            Err(PayloadError::Malformed(_))
        ));
        assert!(matches!(
            SimpleSigning::parse(b"{}"),
            Err(PayloadError::Malformed(_))
        ));
        assert!(matches!(
            SimpleSigning::parse(b"\xff"),
            Err(PayloadError::Malformed(_))
        ));
        let deep = "[".repeat(100_000);
        assert!(SimpleSigning::parse(deep.as_bytes()).is_err());
    }
}
