//! Keyless signer identities: what a verified Fulcio certificate says about who signed (subject,
//! OIDC issuer, GitHub workflow claims), and the matchers policies compare it with. Regexes always
//! match the whole value.

use std::fmt;

use regex::Regex;
use x509_parser::prelude::{FromDer, X509Certificate};

/// An exact string or a whole-value regex.
#[derive(Debug, Clone)]
pub enum Matcher {
    Exact(String),
    Regex { source: String, regex: Regex },
}

impl Matcher {
    /// Compiles `pattern` anchored at both ends, whatever anchors it already has.
    pub fn regex(pattern: &str) -> Result<Self, regex::Error> {
        let regex = regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
            .size_limit(1 << 20)
            .build()?;
        Ok(Self::Regex {
            source: pattern.to_owned(),
            regex,
        })
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Exact(s) => s == value,
            Matcher::Regex { regex, .. } => regex.is_match(value),
        }
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for Matcher {}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Matcher::Exact(s) => write!(f, "{s:?}"),
            Matcher::Regex { source, .. } => write!(f, "/{source}/"),
        }
    }
}

/// GitHub workflow claims a policy may require (exact values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Claim {
    /// `owner/repo`
    Repository,
    /// e.g. `refs/heads/main`
    Ref,
    /// e.g. `push`
    Trigger,
    /// the commit SHA
    Sha,
    /// the workflow name
    Name,
}

impl Claim {
    pub fn key(self) -> &'static str {
        match self {
            Claim::Repository => "repository",
            Claim::Ref => "ref",
            Claim::Trigger => "trigger",
            Claim::Sha => "sha",
            Claim::Name => "name",
        }
    }

    pub const ALL: [Claim; 5] = [
        Claim::Repository,
        Claim::Ref,
        Claim::Trigger,
        Claim::Sha,
        Claim::Name,
    ];
}

/// Who a verified certificate was issued to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertIdentity {
    pub subject: String,
    pub issuer: String,
    pub repository: Option<String>,
    pub git_ref: Option<String>,
    pub trigger: Option<String>,
    pub sha: Option<String>,
    pub workflow_name: Option<String>,
}

impl CertIdentity {
    pub fn claim(&self, c: Claim) -> Option<&str> {
        match c {
            Claim::Repository => self.repository.as_deref(),
            Claim::Ref => self.git_ref.as_deref(),
            Claim::Trigger => self.trigger.as_deref(),
            Claim::Sha => self.sha.as_deref(),
            Claim::Name => self.workflow_name.as_deref(),
        }
    }
}

impl fmt::Display for CertIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "subject {:?} from issuer {:?}",
            self.subject, self.issuer
        )?;
        for c in Claim::ALL {
            if let Some(v) = self.claim(c) {
                write!(f, ", {} {v:?}", c.key())?;
            }
        }
        Ok(())
    }
}

// Fulcio's GitHub workflow extensions (1.3.6.1.4.1.57264.1.x). The legacy ones (2–6) hold raw
// bytes; the newer ones (12–20) hold DER UTF8Strings.
const LEGACY_TRIGGER: &str = "1.3.6.1.4.1.57264.1.2";
const LEGACY_SHA: &str = "1.3.6.1.4.1.57264.1.3";
const LEGACY_NAME: &str = "1.3.6.1.4.1.57264.1.4";
const LEGACY_REPOSITORY: &str = "1.3.6.1.4.1.57264.1.5";
const LEGACY_REF: &str = "1.3.6.1.4.1.57264.1.6";
const SOURCE_REPOSITORY_URI: &str = "1.3.6.1.4.1.57264.1.12";
const SOURCE_REPOSITORY_DIGEST: &str = "1.3.6.1.4.1.57264.1.13";
const SOURCE_REPOSITORY_REF: &str = "1.3.6.1.4.1.57264.1.14";
const BUILD_TRIGGER: &str = "1.3.6.1.4.1.57264.1.20";

/// Reads the GitHub workflow claims of a (verified) certificate into `identity`. Legacy extensions
/// win; the newer ones fill what the legacy ones leave out.
pub fn read_workflow_claims(cert_der: &[u8], identity: &mut CertIdentity) {
    let Ok((_, cert)) = X509Certificate::from_der(cert_der) else {
        return;
    };
    let raw = |oid: &str| -> Option<String> {
        cert.extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == oid)
            .and_then(|e| String::from_utf8(e.value.to_vec()).ok())
    };
    identity.trigger = raw(LEGACY_TRIGGER);
    identity.sha = raw(LEGACY_SHA);
    identity.workflow_name = raw(LEGACY_NAME);
    identity.repository = raw(LEGACY_REPOSITORY);
    identity.git_ref = raw(LEGACY_REF);
    let utf8 = |oid: &str| -> Option<String> {
        cert.extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == oid)
            .and_then(|e| der_utf8_string(e.value))
    };
    if identity.repository.is_none() {
        identity.repository = utf8(SOURCE_REPOSITORY_URI)
            .and_then(|u| u.strip_prefix("https://github.com/").map(str::to_owned));
    }
    if identity.sha.is_none() {
        identity.sha = utf8(SOURCE_REPOSITORY_DIGEST);
    }
    if identity.git_ref.is_none() {
        identity.git_ref = utf8(SOURCE_REPOSITORY_REF);
    }
    if identity.trigger.is_none() {
        identity.trigger = utf8(BUILD_TRIGGER);
    }
}

/// A DER UTF8String (tag 12) with a short-form or one/two-byte long-form length.
fn der_utf8_string(bytes: &[u8]) -> Option<String> {
    let (&tag, rest) = bytes.split_first()?;
    if tag != 0x0c {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, body) = match first {
        n if n < 0x80 => (n as usize, rest),
        0x81 => (*rest.first()? as usize, rest.get(1..)?),
        0x82 => (
            (*rest.first()? as usize) << 8 | *rest.get(1)? as usize,
            rest.get(2..)?,
        ),
        _ => return None,
    };
    if body.len() != len {
        return None;
    }
    String::from_utf8(body.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regexes_match_the_whole_value() {
        let m = Matcher::regex(r"https://github\.com/acme/.+").unwrap();
        assert!(
            m.matches("https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main")
        );
        assert!(!m.matches("https://evil.example/?https://github.com/acme/x"));
        // An author's own anchors, or alternation, cannot widen the match.
        let m = Matcher::regex(r"^a$|^b").unwrap();
        assert!(m.matches("a") && m.matches("b"));
        assert!(!m.matches("bx"));
        let m = Matcher::regex("acme").unwrap();
        assert!(!m.matches("evil-acme-org"));
        assert!(Matcher::regex("(").is_err());
    }

    #[test]
    fn exact_is_exact() {
        let m = Matcher::Exact("https://token.actions.githubusercontent.com".into());
        assert!(m.matches("https://token.actions.githubusercontent.com"));
        assert!(!m.matches("https://token.actions.githubusercontent.com/"));
    }

    #[test]
    fn der_strings() {
        assert_eq!(
            der_utf8_string(&[0x0c, 2, b'h', b'i']).as_deref(),
            Some("hi")
        );
        assert_eq!(der_utf8_string(&[0x0c, 3, b'h', b'i']), None);
        assert_eq!(der_utf8_string(&[0x13, 2, b'h', b'i']), None);
        let long: Vec<u8> = [vec![0x0c, 0x81, 200], vec![b'a'; 200]].concat();
        assert_eq!(der_utf8_string(&long).map(|s| s.len()), Some(200));
    }
}
