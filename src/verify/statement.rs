//! in-toto Statements (v0.1 and v1), modelled with serde: what an attestation says, and which
//! artifacts it is about. An image is a subject only by an exact sha256 digest match.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

pub const STATEMENT_V01: &str = "https://in-toto.io/Statement/v0.1";
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub statement_type: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    #[serde(default)]
    pub predicate: serde_json::Value,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Subject {
    #[serde(default)]
    pub name: String,
    pub digest: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StatementError {
    #[error("not an in-toto statement: {0}")]
    Malformed(String),
    #[error("statement type {0:?} is neither in-toto Statement v0.1 nor v1")]
    UnknownType(String),
}

impl Statement {
    pub fn parse(payload: &[u8]) -> Result<Self, StatementError> {
        // cosign, slsa-verifier and in-toto-golang read statements with Go's encoding/json.
        let s: Statement = crate::gojson::from_slice(payload)
            .map_err(|e| StatementError::Malformed(e.to_string()))?;
        if s.statement_type != STATEMENT_V01 && s.statement_type != STATEMENT_V1 {
            return Err(StatementError::UnknownType(
                s.statement_type.chars().take(80).collect(),
            ));
        }
        Ok(s)
    }

    /// True when one subject names exactly `digest` (sha256, lowercase hex, no folding).
    pub fn is_about(&self, digest: &Digest) -> bool {
        self.subject
            .iter()
            .any(|s| s.digest.get("sha256").map(String::as_str) == Some(digest.hex()))
    }

    /// The subjects' sha256 digests, for messages.
    pub fn subject_digests(&self) -> Vec<String> {
        self.subject
            .iter()
            .filter_map(|s| {
                s.digest
                    .get("sha256")
                    .map(|h| format!("sha256:{}", h.chars().take(64).collect::<String>()))
            })
            .take(5)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(t: &str, hex: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "_type": t, "subject": [{"name": "img", "digest": {"sha256": hex}}],
            "predicateType": "https://slsa.dev/provenance/v1", "predicate": {"x": 1}
        }))
        .unwrap()
    }

    #[test]
    fn subjects_match_exactly() {
        let d = Digest::of(b"image");
        for t in [STATEMENT_V01, STATEMENT_V1] {
            assert!(
                Statement::parse(&statement(t, d.hex()))
                    .unwrap()
                    .is_about(&d)
            );
        }
        let s = Statement::parse(&statement(STATEMENT_V1, &d.hex().to_uppercase())).unwrap();
        assert!(!s.is_about(&d));
        let s = Statement::parse(&statement(STATEMENT_V1, Digest::of(b"other").hex())).unwrap();
        assert!(!s.is_about(&d));
    }

    #[test]
    fn rejects_unknown_types_and_garbage() {
        let d = Digest::of(b"image");
        assert!(matches!(
            Statement::parse(&statement("https://in-toto.io/Statement/v2", d.hex())),
            Err(StatementError::UnknownType(_))
        ));
        assert!(Statement::parse(b"{}").is_err());
        assert!(Statement::parse(&"[".repeat(100_000).into_bytes()).is_err());
    }
}
