//! Built-in attestation checks, for the common rules that should not need Rego: SLSA provenance
//! (builders, build types, source, base images), SBOMs (denied packages and licenses, at least one
//! package) and vulnerability reports (severity, scan age, CVE deny list). Pure functions over a
//! verified statement; each violation is one sentence naming the rule and the offending value.

pub mod image;
pub mod provenance;
pub mod sbom;
pub mod vex;
pub mod vulns;

use regex::Regex;

use crate::verify::statement::Statement;

pub const SLSA_V02: &str = "https://slsa.dev/provenance/v0.2";
pub const SLSA_V1: &str = "https://slsa.dev/provenance/v1";
pub const COSIGN_VULN: &str = "https://cosign.sigstore.dev/attestation/vuln/v1";
pub const OPENVEX: &str = "https://openvex.dev/ns";

pub fn is_provenance(t: &str) -> bool {
    t == SLSA_V02 || t == SLSA_V1
}

pub fn is_spdx(t: &str) -> bool {
    t == "https://spdx.dev/Document" || t.starts_with("https://spdx.dev/Document/v2")
}

pub fn is_cyclonedx(t: &str) -> bool {
    t == "https://cyclonedx.org/bom" || t.starts_with("https://cyclonedx.org/bom/v1")
}

/// A `*` wildcard pattern matched against a whole value (`*` matches anything, `/` included).
#[derive(Debug, Clone)]
pub struct Wildcard {
    text: String,
    regex: Regex,
}

impl Wildcard {
    pub fn new(text: &str) -> Result<Self, regex::Error> {
        let body = text
            .split('*')
            .map(regex::escape)
            .collect::<Vec<_>>()
            .join(".*");
        Ok(Self {
            text: text.to_owned(),
            regex: Regex::new(&format!("^(?:{body})$"))?,
        })
    }

    pub fn matches(&self, value: &str) -> bool {
        self.regex.is_match(value)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialEq for Wildcard {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Wildcard {}

/// The built-in checks of one attestation requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checks {
    Provenance(provenance::ProvenanceCheck),
    Sbom(sbom::SbomCheck),
    Vulnerabilities(vulns::VulnCheck),
}

impl Checks {
    /// Violations of these checks by `statement` (already verified and of the required type), or
    /// `Err` naming the format when the checks found nothing they can read.
    pub fn violations(
        &self,
        statement: &Statement,
        now: jiff::Timestamp,
    ) -> Result<Vec<String>, String> {
        match self {
            Checks::Provenance(c) => Ok(c.violations(statement)),
            Checks::Sbom(c) => c.violations(statement),
            Checks::Vulnerabilities(c) => c.violations(statement, now),
        }
    }

    /// As [`Checks::violations`], with the CVEs `removed` says (VEX) left out of vulnerability
    /// checks.
    pub fn violations_excluding(
        &self,
        statement: &Statement,
        now: jiff::Timestamp,
        removed: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<String>, String> {
        match self {
            Checks::Vulnerabilities(c) => c.violations_excluding(statement, now, removed),
            other => other.violations(statement, now),
        }
    }
}

fn list(items: &[impl AsRef<str>]) -> String {
    items
        .iter()
        .map(|i| format!("{:?}", i.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_whole_values() {
        let w = Wildcard::new("pkg:npm/left-pad@*").unwrap();
        assert!(w.matches("pkg:npm/left-pad@1.3.0"));
        assert!(!w.matches("pkg:npm/left-pad-ng@1.3.0"));
        assert!(!w.matches("xpkg:npm/left-pad@1"));
        assert!(Wildcard::new("GPL-*").unwrap().matches("GPL-3.0-only"));
        assert!(!Wildcard::new("GPL-*").unwrap().matches("LGPL-3.0-only"));
        assert!(
            Wildcard::new("a.b").unwrap().matches("a.b")
                && !Wildcard::new("a.b").unwrap().matches("axb")
        );
    }
}
