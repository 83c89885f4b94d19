//! Content digests: the only form umpire accepts is `sha256:` followed by 64 lowercase hex digits.
//! Every byte fetched by digest is hashed and compared here before anything else reads it.

use std::fmt;

use sha2::{Digest as _, Sha256};

/// A validated `sha256:<64 lowercase hex>` digest.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("digest {0:?} uses an unsupported algorithm (only sha256 is accepted)")]
    UnsupportedAlgorithm(String),
    #[error("digest {0:?} is not 64 lowercase hex digits after `sha256:`")]
    Malformed(String),
}

impl Digest {
    /// Parses a digest string strictly: no uppercase, no other algorithms, exact length.
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let Some(hex) = s.strip_prefix("sha256:") else {
            return if s.contains(':') {
                Err(DigestError::UnsupportedAlgorithm(truncate(s)))
            } else {
                Err(DigestError::Malformed(truncate(s)))
            };
        };
        if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(s.to_owned()))
        } else {
            Err(DigestError::Malformed(truncate(s)))
        }
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    /// True when `bytes` hash to this digest.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        Self::of(bytes) == *self
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// The tag cosign uses for evidence about this digest: `sha256-<hex>.<suffix>`
    /// (or `sha256-<hex>` with an empty suffix, the OCI referrers fallback tag).
    pub fn cosign_tag(&self, suffix: &str) -> String {
        if suffix.is_empty() {
            format!("sha256-{}", self.hex())
        } else {
            format!("sha256-{}.{suffix}", self.hex())
        }
    }
}

/// Keeps hostile input out of error messages beyond a readable length.
fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn hashes_and_matches() {
        let d = Digest::of(b"");
        assert_eq!(d.as_str(), EMPTY);
        assert!(d.matches(b""));
        assert!(!d.matches(b"x"));
        assert_eq!(Digest::parse(EMPTY).unwrap(), d);
    }

    #[test]
    fn rejects_uppercase_wrong_length_traversal_and_other_algorithms() {
        assert!(Digest::parse(&EMPTY.to_uppercase().replace("SHA256", "sha256")).is_err());
        assert!(Digest::parse(&EMPTY[..70]).is_err());
        assert!(Digest::parse(&format!("{EMPTY}0")).is_err());
        assert!(Digest::parse("sha256:../../x").is_err());
        assert_eq!(
            Digest::parse("sha512:abcd"),
            Err(DigestError::UnsupportedAlgorithm("sha512:abcd".into()))
        );
        assert!(Digest::parse("").is_err());
    }

    #[test]
    fn cosign_tags() {
        let d = Digest::of(b"");
        assert_eq!(d.cosign_tag("sig"), format!("sha256-{}.sig", &EMPTY[7..]));
        assert_eq!(d.cosign_tag(""), format!("sha256-{}", &EMPTY[7..]));
    }
}
