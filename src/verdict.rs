//! What umpire answers: a verdict for one digest, with findings a person can act on.

use serde::{Deserialize, Serialize};

/// Finding codes from the contract (names are part of the outside interface).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Code {
    NoMatchingPolicy,
    ImageNotFound,
    NoSignatures,
    SignatureInvalid,
    DigestMismatch,
    UntrustedSigner,
    IdentityMismatch,
    CertificateInvalid,
    TlogInvalid,
    ThresholdNotMet,
    AttestationMissing,
    AttestationInvalid,
    PolicyViolation,
    RegistryUnavailable,
    RegistryError,
    LimitExceeded,
    /// The manifest's media type is one umpire refuses (e.g. Docker schema 1).
    UnsupportedManifest,
    Satisfied,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::NoMatchingPolicy => "NO_MATCHING_POLICY",
            Code::ImageNotFound => "IMAGE_NOT_FOUND",
            Code::NoSignatures => "NO_SIGNATURES",
            Code::SignatureInvalid => "SIGNATURE_INVALID",
            Code::DigestMismatch => "DIGEST_MISMATCH",
            Code::UntrustedSigner => "UNTRUSTED_SIGNER",
            Code::IdentityMismatch => "IDENTITY_MISMATCH",
            Code::CertificateInvalid => "CERTIFICATE_INVALID",
            Code::TlogInvalid => "TLOG_INVALID",
            Code::ThresholdNotMet => "THRESHOLD_NOT_MET",
            Code::AttestationMissing => "ATTESTATION_MISSING",
            Code::AttestationInvalid => "ATTESTATION_INVALID",
            Code::PolicyViolation => "POLICY_VIOLATION",
            Code::RegistryUnavailable => "REGISTRY_UNAVAILABLE",
            Code::RegistryError => "REGISTRY_ERROR",
            Code::LimitExceeded => "LIMIT_EXCEEDED",
            Code::UnsupportedManifest => "UNSUPPORTED_MANIFEST",
            Code::Satisfied => "SATISFIED",
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub code: Code,
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub authority: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub attestation_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub policy: String,
}

impl Finding {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            authority: String::new(),
            attestation_type: String::new(),
            policy: String::new(),
        }
    }

    pub fn with_authority(mut self, authority: impl Into<String>) -> Self {
        self.authority = authority.into();
        self
    }

    pub fn with_policy(mut self, policy: impl Into<String>) -> Self {
        self.policy = policy.into();
        self
    }
}

/// The answer for one image. `allowed` is only ever set by [`Verdict::allow`]; every other
/// constructor denies, so a path that forgets to decide ends in a denial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub image: String,
    pub allowed: bool,
    pub digest: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    pub policy: String,
    pub retryable: bool,
    pub cached: bool,
    pub findings: Vec<Finding>,
    /// Failures of `mode: warn` policies; they never make `allowed` false.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Finding>,
    /// When what allowed it stops holding (a Notation signature's expiry, a certificate checked
    /// against the current time): an allowed verdict is not kept past it.
    #[serde(skip)]
    pub valid_until: Option<jiff::Timestamp>,
    /// Not judged: no place among the images being verified (`limits.max_in_flight`). Never
    /// cached; surfaces answer it as load shedding (gRPC `RESOURCE_EXHAUSTED`, 503, ...).
    #[serde(skip)]
    pub shed: bool,
}

impl Verdict {
    pub fn deny(image: impl Into<String>, findings: Vec<Finding>) -> Self {
        let retryable = findings.iter().any(|f| is_transient(f.code)) && !findings.is_empty();
        Self {
            image: image.into(),
            allowed: false,
            digest: String::new(),
            media_type: String::new(),
            policy: String::new(),
            retryable,
            cached: false,
            findings,
            warnings: Vec::new(),
            valid_until: None,
            shed: false,
        }
    }

    pub fn allow(image: impl Into<String>, findings: Vec<Finding>) -> Self {
        Self {
            allowed: true,
            retryable: false,
            ..Self::deny(image, findings)
        }
    }

    /// A denial whose cause is transient; callers may retry.
    pub fn retryable(mut self) -> Self {
        if !self.allowed {
            self.retryable = true;
        }
        self
    }

    /// The digest (and its media type) the verdict holds for.
    pub fn for_digest(mut self, digest: impl ToString, media_type: impl Into<String>) -> Self {
        self.digest = digest.to_string();
        self.media_type = media_type.into();
        self
    }

    /// The policies that judged it, comma-separated.
    pub fn under_policies<'a>(mut self, names: impl IntoIterator<Item = &'a str>) -> Self {
        self.policy = names.into_iter().collect::<Vec<_>>().join(",");
        self
    }

    /// What `mode: warn` policies found wrong.
    pub fn with_warnings(mut self, warnings: Vec<Finding>) -> Self {
        self.warnings = warnings;
        self
    }

    /// The verdict holds until `t` at the latest (the earliest of those given).
    pub fn holds_until(mut self, t: Option<jiff::Timestamp>) -> Self {
        self.valid_until = match (self.valid_until, t) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self
    }

    /// The image as the caller asked for it.
    pub fn for_image(mut self, image: impl Into<String>) -> Self {
        self.image = image.into();
        self
    }

    /// The verdict of evaluated policies: allowed only when they all held, with what they found,
    /// their warnings, and every time bound of what allowed it.
    pub fn judged(
        image: &str,
        allowed: bool,
        findings: Vec<Finding>,
        warnings: Vec<Finding>,
        bounds: impl IntoIterator<Item = Option<jiff::Timestamp>>,
    ) -> Self {
        let verdict = if allowed {
            Self::allow(image, findings)
        } else {
            Self::deny(image, findings)
        };
        bounds
            .into_iter()
            .fold(verdict.with_warnings(warnings), Self::holds_until)
    }

    /// The verdict for an image no policy applies to (`named`: the caller named a policy whose
    /// globs do not match; `default_allows`: the configuration's default is allow and the image
    /// was resolved).
    pub fn unmatched(input: &str, subject: &str, named: bool, default_allows: bool) -> Self {
        let message = if named {
            format!("the requested policy's images globs do not match {subject}")
        } else if default_allows {
            format!(
                "no policy matches {subject}; allowed because the configuration's default is allow"
            )
        } else {
            format!(
                "no policy matches {subject} and the default is deny; add a policy whose images globs match it"
            )
        };
        let findings = vec![Finding::new(Code::NoMatchingPolicy, message)];
        if default_allows && !named {
            Self::allow(input, findings)
        } else {
            Self::deny(input, findings)
        }
    }

    /// The answer for an image that found no place among the `max` being verified: retryable,
    /// never cached.
    pub fn shed(image: &str, max: usize) -> Self {
        let message = format!(
            "not judged: umpire is verifying its limit of {max} images at once (limits.max_in_flight); retry with back-off"
        );
        Self {
            shed: true,
            ..Self::deny(image, vec![Finding::new(Code::LimitExceeded, message)]).retryable()
        }
    }

    /// A verification that failed inside umpire (a task that ended without an answer).
    pub fn internal_error(what: &str) -> Self {
        let message = format!("verifying {what} failed inside umpire; see its logs");
        Self::deny(what, vec![Finding::new(Code::RegistryError, message)]).retryable()
    }

    /// A verification that ran out of time.
    pub fn deadline_exceeded(what: &str, deadline: std::time::Duration) -> Self {
        let message =
            format!("verifying {what} did not finish within the deadline of {deadline:?}");
        Self::deny(what, vec![Finding::new(Code::LimitExceeded, message)]).retryable()
    }

    /// Its `umpire.v1.VerifyResponse` encoding, every field but `image` (the one part of a
    /// cached answer that depends on the request: `api::wire` puts it in front).
    pub fn wire(&self) -> bytes::Bytes {
        self.wire_as(self.cached)
    }

    /// As [`Verdict::wire`], with `cached` said as given (the cache encodes its entries as the
    /// cached answers they will be).
    pub fn wire_as(&self, cached: bool) -> bytes::Bytes {
        use prost::Message as _;
        let response = crate::proto::VerifyResponse::from(Verdict {
            cached,
            image: String::new(),
            ..self.clone()
        });
        response.encode_to_vec().into()
    }

    pub fn codes(&self) -> Vec<Code> {
        self.findings.iter().map(|f| f.code).collect()
    }

    /// The findings' codes, comma-separated, for log lines (written without allocating).
    pub fn code_list(&self) -> CodeList<'_> {
        CodeList(&self.findings)
    }
}

pub struct CodeList<'a>(&'a [Finding]);

impl std::fmt::Display for CodeList<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, finding) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(finding.code.as_str())?;
        }
        Ok(())
    }
}

/// Codes whose cause may go away by itself.
fn is_transient(code: Code) -> bool {
    matches!(code, Code::RegistryUnavailable)
}

/// A verdict as gRPC answers it (`umpire.v1.VerifyResponse`).
impl From<Verdict> for crate::proto::VerifyResponse {
    fn from(v: Verdict) -> Self {
        Self {
            allowed: v.allowed,
            digest: v.digest,
            findings: v.findings.into_iter().map(Into::into).collect(),
            retryable: v.retryable,
            cached: v.cached,
            policy: v.policy,
            image: v.image,
            media_type: v.media_type,
            warnings: v.warnings.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<Finding> for crate::proto::Finding {
    fn from(f: Finding) -> Self {
        Self {
            code: f.code.as_str().to_owned(),
            message: f.message,
            authority: f.authority,
            attestation_type: f.attestation_type,
            policy: f.policy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denial_is_the_default_and_unavailable_is_retryable() {
        let v = Verdict::deny("x", vec![Finding::new(Code::RegistryUnavailable, "down")]);
        assert!(!v.allowed && v.retryable);
        let v = Verdict::deny("x", vec![Finding::new(Code::NoSignatures, "none")]);
        assert!(!v.allowed && !v.retryable);
        assert!(!Verdict::deny("x", vec![]).retryable().allowed);
        assert!(!Verdict::allow("x", vec![]).retryable().retryable);
    }

    #[test]
    fn codes_serialise_as_contract_names() {
        let f = Finding::new(Code::UntrustedSigner, "m");
        let j = serde_json::to_value(&f).unwrap();
        assert_eq!(j["code"], "UNTRUSTED_SIGNER");
        assert_eq!(Code::LimitExceeded.as_str(), "LIMIT_EXCEEDED");
    }
}
