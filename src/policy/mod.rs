//! Policies: which apply to an image, and whether the verified evidence meets their requirements.
//! Pure: it reads verification outcomes, never the registry.

use std::fmt;

use std::sync::Arc;

use crate::checks::Checks;
use crate::digest::Digest;
use crate::glob::Glob;
use crate::rego::RegoPolicy;
use crate::verdict::{Code, Finding};
use crate::verify::identity::{CertIdentity, Claim, Matcher};
use crate::verify::signature::Signer;

#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub images: Vec<Glob>,
    /// Images removed from the scope `images` gives.
    pub exclude: Vec<Glob>,
    /// When set, the policy applies only to requests from a matching namespace (and to none
    /// that carry no namespace).
    pub namespaces: Vec<crate::checks::Wildcard>,
    pub mode: Mode,
    /// A static policy: allows or denies without evidence.
    pub action: Option<StaticAction>,
    /// Rules on the image config (`image:`), checked on every platform.
    pub image_rules: Option<crate::checks::image::ImageRules>,
    /// Where this policy's signatures, attestations and referrers are read (cosign's
    /// `COSIGN_REPOSITORY`), for the image's digest; the image's own repository when unset.
    pub signatures_repository: Option<crate::reference::RegistryRef>,
    pub signatures: Option<SignatureRequirement>,
    pub attestations: Vec<AttestationRequirement>,
    /// Signed artifacts attached as referrers (Ratify style).
    pub artifacts: Vec<ArtifactRequirement>,
    /// Hash of the policy's content (not its name), for verdict cache keys.
    pub fingerprint: [u8; 32],
}

/// Whether a policy's failures deny (`enforce`) or come back as warnings (`warn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Enforce,
    Warn,
}

/// A static policy's answer (policy-controller's `static`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaticAction {
    Allow,
    Deny,
}

/// One required artifact type (an SBOM or vulnerability report attached to the image as an OCI
/// referrer), signed in turn by a signature attached to the artifact's manifest. Its content is
/// checked as the attestation `inner` (whose predicate type stands for the media type).
#[derive(Debug, Clone)]
pub struct ArtifactRequirement {
    /// The artifact's media type (`application/spdx+json`, ...), compared exactly.
    pub media_type: String,
    pub inner: AttestationRequirement,
}

/// The in-toto predicate type whose checks read an artifact of `media_type`, and how its content
/// becomes that predicate.
pub fn artifact_predicate_type(media_type: &str) -> Option<&'static str> {
    match media_type {
        "application/spdx+json" => Some("https://spdx.dev/Document"),
        "application/vnd.cyclonedx+json" => Some("https://cyclonedx.org/bom"),
        "application/sarif+json" => Some(crate::checks::COSIGN_VULN),
        _ => None,
    }
}

/// An artifact's content as the statement its checks read: SBOM documents as the predicate, a
/// SARIF report as a vulnerability predicate's scanner result (the first run's end time as the
/// scan's finish), about the image `digest`.
pub fn artifact_statement(
    media_type: &str,
    content: &[u8],
    digest: &Digest,
) -> Result<crate::verify::statement::Statement, String> {
    let predicate_type = artifact_predicate_type(media_type)
        .ok_or_else(|| format!("artifact type {media_type} is not read"))?;
    let document: serde_json::Value = serde_json::from_slice(content)
        .map_err(|e| format!("the {media_type} artifact is not JSON: {e}"))?;
    let predicate = if media_type == "application/sarif+json" {
        let finished = document
            .pointer("/runs/0/invocations/0/endTimeUtc")
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        serde_json::json!({
            "scanner": {"result": document},
            "metadata": {"scanFinishedOn": finished},
        })
    } else {
        document
    };
    let (alg, hex) = digest
        .as_str()
        .split_once(':')
        .ok_or("digest without algorithm")?;
    serde_json::from_value(serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "", "digest": {alg: hex}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    }))
    .map_err(|e| e.to_string())
}

/// One required attestation type, its signers and its checks.
#[derive(Debug, Clone)]
pub struct AttestationRequirement {
    /// The in-toto predicateType, compared exactly.
    pub predicate_type: String,
    /// Any one of these must have signed it.
    pub authorities: Vec<Authority>,
    pub checks: Option<Checks>,
    pub rego: Option<Arc<RegoPolicy>>,
    /// `vulnerabilities.vex.authorities`: OpenVEX documents they signed about the image remove
    /// CVEs from the vulnerability checks.
    pub vex: Option<Vec<Authority>>,
    /// `source: buildkit`: the statement is read from BuildKit's attestation manifests in the
    /// image's own index, trusted through the index's signature (no authorities of its own).
    pub buildkit: bool,
}

#[derive(Debug, Clone)]
pub struct SignatureRequirement {
    /// Distinct authorities that must verify.
    pub threshold: usize,
    pub authorities: Vec<Authority>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authority {
    /// A public key from `trust.keys`, by name; with `logged_in`, only signatures whose
    /// transparency-log entry verifies under a log of that `trust.sigstore` root count.
    Key {
        name: String,
        logged_in: Option<String>,
        /// Which image name the signed payload must give (`signed_identity`).
        signed_identity: SignedIdentity,
    },
    /// A Fulcio certificate identity under a `trust.sigstore` root.
    Keyless(KeylessAuthority),
    /// Notation signatures, under an inline statement or a trust policy document's statements.
    Notation(NotationAuthority),
}

/// A `notation` authority, its trust stores read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotationAuthority {
    /// How messages name it.
    pub name: String,
    /// What its signers are matched by: a hash of everything it decides with (statements, levels,
    /// overrides, identities, certificates), so that two authorities that look alike in messages
    /// (one `audit`, one `strict`) never accept each other's signers.
    pub id: String,
    pub statements: Vec<crate::verify::notation_rules::ScopedRules>,
}

impl NotationAuthority {
    /// What verification needs of it.
    pub fn trust(&self) -> crate::verify::evidence::NotationTrust<'_> {
        crate::verify::evidence::NotationTrust {
            id: &self.id,
            name: &self.name,
            statements: &self.statements,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeylessAuthority {
    pub trust: String,
    pub issuer: Matcher,
    pub subject: Matcher,
    /// GitHub workflow claims that must equal these values.
    pub claims: Vec<(Claim, String)>,
}

impl KeylessAuthority {
    /// Why `identity` does not satisfy this authority, or `None` when it does.
    pub fn mismatch(&self, identity: &CertIdentity) -> Option<String> {
        if !self.issuer.matches(&identity.issuer) {
            return Some(format!(
                "issuer {:?} does not match {}",
                identity.issuer, self.issuer
            ));
        }
        if !self.subject.matches(&identity.subject) {
            return Some(format!(
                "subject {:?} does not match {}",
                identity.subject, self.subject
            ));
        }
        for (claim, expected) in &self.claims {
            match identity.claim(*claim) {
                Some(found) if found == expected => {}
                found => {
                    return Some(format!(
                        "GitHub claim {} is {:?}, expected {expected:?}",
                        claim.key(),
                        found.unwrap_or("(absent)")
                    ));
                }
            }
        }
        None
    }
}

/// Which image name a key signature's payload (`critical.identity.docker-reference`) must give:
/// none (`any`, cosign's behaviour), this image's repository (`repository`, containers/image's
/// `matchRepository`), or this very reference (`exact`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignedIdentity {
    #[default]
    Any,
    Repository,
    Exact,
}

/// The image a signature is checked for: its canonical repository (`host/repository`) and the
/// tag or digest it was asked by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedFor {
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl SignedIdentity {
    /// Why `signed_name` (the payload's name) does not name `image` as this rule asks, if it
    /// does not. Names are read as containers/image reads them (Docker's normalisation: `nginx`
    /// is `docker.io/library/nginx`; a tag is ignored by `repository`).
    pub fn mismatch(self, signed_name: Option<&str>, image: Option<&SignedFor>) -> Option<String> {
        if self == SignedIdentity::Any {
            return None;
        }
        let Some(image) = image else {
            return Some("no image name to compare the signed name with".into());
        };
        let Some(name) = signed_name.filter(|n| !n.is_empty()) else {
            return Some(
                "the signed payload names no image (critical.identity.docker-reference)".into(),
            );
        };
        let parsed = match crate::reference::ImageRef::parse(name) {
            Ok(crate::reference::ImageRef::Registry(r)) => r,
            _ => {
                return Some(format!(
                    "the signed name {name:?} is not an image reference"
                ));
            }
        };
        let repository = format!("{}/{}", parsed.registry, parsed.repository);
        if repository != image.repository {
            return Some(format!(
                "it was signed for {repository}, not for {}",
                image.repository
            ));
        }
        if self == SignedIdentity::Exact {
            let same = match (&image.tag, &image.digest) {
                (Some(tag), _) => {
                    parsed.digest.is_none() && parsed.tag.as_deref() == Some(tag.as_str())
                }
                (None, Some(d)) => parsed.digest.as_ref().map(|x| x.as_str()) == Some(d.as_str()),
                (None, None) => false,
            };
            if !same {
                return Some(format!(
                    "it was signed for {name}, not for {}{}",
                    image.repository,
                    image
                        .tag
                        .as_ref()
                        .map(|t| format!(":{t}"))
                        .or(image.digest.as_ref().map(|d| format!("@{d}")))
                        .unwrap_or_default()
                ));
            }
        }
        None
    }
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Authority::Key {
                name,
                logged_in: None,
                ..
            } => write!(f, "key:{name}"),
            Authority::Key {
                name,
                logged_in: Some(root),
                ..
            } => write!(f, "key:{name} (logged in {root})"),
            Authority::Keyless(k) => {
                write!(
                    f,
                    "keyless:{} (issuer {}, subject {}",
                    k.trust, k.issuer, k.subject
                )?;
                for (c, v) in &k.claims {
                    write!(f, ", {} {v:?}", c.key())?;
                }
                f.write_str(")")
            }
            Authority::Notation(n) => f.write_str(&n.name),
        }
    }
}

impl Authority {
    pub fn accepts(&self, signer: &Signer) -> bool {
        match (self, signer) {
            (
                Authority::Key {
                    name,
                    logged_in: None,
                    ..
                },
                Signer::Key(k) | Signer::LoggedKey { name: k, .. },
            ) => name == k,
            (
                Authority::Key {
                    name,
                    logged_in: Some(root),
                    ..
                },
                Signer::LoggedKey { name: k, trust },
            ) => name == k && root == trust,
            (Authority::Keyless(a), Signer::Keyless { trust, identity }) => {
                a.trust == *trust && a.mismatch(identity).is_none()
            }
            (Authority::Notation(n), Signer::Notation { authority, .. }) => n.id == *authority,
            _ => false,
        }
    }

    /// Whether this authority accepts `signer` of a signature whose payload named `signed_name`,
    /// checked for `image` (a key authority's `signed_identity`).
    pub fn accepts_signed(
        &self,
        signer: &Signer,
        signed_name: Option<&str>,
        image: Option<&SignedFor>,
    ) -> bool {
        self.accepts(signer)
            && match self {
                Authority::Key {
                    signed_identity, ..
                } => signed_identity.mismatch(signed_name, image).is_none(),
                _ => true,
            }
    }
}

impl Policy {
    /// Whether the policy's scope holds `subject` (`host/repository`) asked from `namespace`.
    pub fn applies_to(&self, subject: &str, namespace: Option<&str>) -> bool {
        self.images.iter().any(|g| g.matches(subject))
            && !self.exclude.iter().any(|g| g.matches(subject))
            && (self.namespaces.is_empty()
                || namespace.is_some_and(|n| self.namespaces.iter().any(|w| w.matches(n))))
    }

    /// Whether a signature authority requires `signed_identity: exact` (the verdict then depends
    /// on the tag asked by).
    pub fn has_exact_signed_identity(&self) -> bool {
        self.signatures
            .iter()
            .flat_map(|s| s.authorities.iter())
            .any(|a| {
                matches!(
                    a,
                    Authority::Key {
                        signed_identity: SignedIdentity::Exact,
                        ..
                    }
                )
            })
    }

    /// Whether this policy reads signatures or attestations (static policies and image rules
    /// alone do not).
    pub fn needs_evidence(&self) -> bool {
        self.signatures.is_some() || !self.attestations.is_empty() || !self.artifacts.is_empty()
    }
}

/// Whether every image config (every platform of an index) meets `rules`: (held, findings).
pub fn evaluate_image_rules(
    policy: &str,
    rules: &crate::checks::image::ImageRules,
    configs: &[(String, serde_json::Value)],
    now: jiff::Timestamp,
) -> (bool, Vec<Finding>) {
    let violations: Vec<String> = configs
        .iter()
        .flat_map(|(which, config)| rules.violations(which, config, now))
        .collect();
    if configs.is_empty() {
        return (
            false,
            vec![
                Finding::new(
                    Code::PolicyViolation,
                    "image rules: no image config could be read".to_owned(),
                )
                .with_policy(policy),
            ],
        );
    }
    if violations.is_empty() {
        return (
            true,
            vec![
                Finding::new(
                    Code::Satisfied,
                    format!("image rules held on {} image config(s)", configs.len()),
                )
                .with_policy(policy),
            ],
        );
    }
    (
        false,
        violations
            .into_iter()
            .take(MAX_PROBLEM_FINDINGS)
            .map(|v| Finding::new(Code::PolicyViolation, v).with_policy(policy))
            .collect(),
    )
}

/// A static policy's answer as (held, findings).
pub fn evaluate_static(policy: &str, action: StaticAction, digest: &str) -> (bool, Vec<Finding>) {
    match action {
        StaticAction::Allow => (
            true,
            vec![
                Finding::new(
                    Code::Satisfied,
                    format!(
                        "static policy {policy} allows {digest} without evidence (action: allow)"
                    ),
                )
                .with_policy(policy),
            ],
        ),
        StaticAction::Deny => (
            false,
            vec![
                Finding::new(
                    Code::PolicyViolation,
                    format!("policy {policy} denies every image in its scope (action: deny)"),
                )
                .with_policy(policy),
            ],
        ),
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("no policy named {0:?} is configured")]
pub struct UnknownPolicy(pub String);

/// The policies that apply to `subject` (`host/repository` or `oci:PATH`). With `named`, only that
/// policy, and only if its globs match; an empty result means no policy matched.
pub fn select<'a>(
    policies: &'a [Policy],
    subject: &str,
    namespace: Option<&str>,
    named: Option<&str>,
) -> Result<Vec<&'a Policy>, UnknownPolicy> {
    match named {
        Some(name) => {
            let p = policies
                .iter()
                .find(|p| p.name == name)
                .ok_or_else(|| UnknownPolicy(name.to_owned()))?;
            Ok(if p.applies_to(subject, namespace) {
                vec![p]
            } else {
                vec![]
            })
        }
        None => Ok(policies
            .iter()
            .filter(|p| p.applies_to(subject, namespace))
            .collect()),
    }
}

mod attestations;
mod evaluate;
mod reading;
mod signatures;

pub use attestations::*;
pub use evaluate::*;
pub use reading::*;
pub use signatures::*;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::Check;
    use crate::verify::signature::SignatureOutcome;

    fn req(threshold: usize, keys: &[&str]) -> SignatureRequirement {
        SignatureRequirement {
            threshold,
            authorities: keys
                .iter()
                .map(|k| Authority::Key {
                    logged_in: None,
                    name: k.to_string(),
                    signed_identity: SignedIdentity::Any,
                })
                .collect(),
        }
    }

    fn valid(k: &str) -> SignatureOutcome {
        SignatureOutcome::Valid {
            signers: vec![Signer::Key(k.into())],
            signed_name: None,
        }
    }

    fn codes(f: &[Finding]) -> Vec<Code> {
        f.iter().map(|f| f.code).collect()
    }

    #[test]
    fn buildkit_statements_never_hold_on_nothing() {
        let req = AttestationRequirement {
            predicate_type: "https://slsa.dev/provenance/v0.2".into(),
            authorities: Vec::new(),
            checks: None,
            rego: None,
            vex: None,
            buildkit: true,
        };
        let d = Digest::of(b"index");
        let none = BuildkitStatements {
            is_index: true,
            platforms: Vec::new(),
            statements: Vec::new(),
            parent_allowed: false,
        };
        let now = jiff::Timestamp::now();
        let (held, f) = evaluate_buildkit("p", &req, "img", &d, true, &none, now);
        assert!(!held && f[0].code == Code::AttestationMissing, "{f:?}");
        let platform = Digest::of(b"platform");
        let unsigned = BuildkitStatements {
            platforms: vec![platform],
            ..none
        };
        let (held, f) = evaluate_buildkit("p", &req, "img", &d, false, &unsigned, now);
        assert!(!held && f[0].code == Code::AttestationInvalid, "{f:?}");
    }

    #[test]
    fn signed_identity_reads_names_as_containers_image_does() {
        let image = SignedFor {
            repository: "docker.io/library/nginx".into(),
            tag: Some("1.27".into()),
            digest: None,
        };
        use SignedIdentity::*;
        assert!(Any.mismatch(Some("evil.example/x"), Some(&image)).is_none());
        for ok in [
            "nginx",
            "docker.io/nginx:latest",
            "index.docker.io/library/nginx:1.27",
        ] {
            assert!(
                Repository.mismatch(Some(ok), Some(&image)).is_none(),
                "{ok}"
            );
        }
        for bad in ["nginx-other", "docker.io/acme/nginx", "", "not a ref"] {
            assert!(
                Repository.mismatch(Some(bad), Some(&image)).is_some(),
                "{bad}"
            );
        }
        assert!(Repository.mismatch(None, Some(&image)).is_some());
        assert!(Exact.mismatch(Some("nginx:1.27"), Some(&image)).is_none());
        assert!(
            Exact.mismatch(Some("nginx"), Some(&image)).is_some(),
            "latest is not 1.27"
        );
        assert!(Exact.mismatch(Some("nginx:1.28"), Some(&image)).is_some());
    }

    #[test]
    fn selection_by_glob_and_by_name() {
        let p = |name: &str, glob: &str| Policy {
            name: name.into(),
            images: vec![Glob::new(glob).unwrap()],
            exclude: Vec::new(),
            namespaces: Vec::new(),
            mode: Mode::Enforce,
            action: None,
            image_rules: None,
            signatures_repository: None,
            signatures: None,
            attestations: Vec::new(),
            artifacts: Vec::new(),
            fingerprint: [0; 32],
        };
        let ps = vec![
            p("a", "reg.io/**"),
            p("b", "reg.io/team/*"),
            p("c", "other.io/**"),
        ];
        let names = |v: Vec<&Policy>| v.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(select(&ps, "reg.io/team/app", None, None).unwrap()),
            ["a", "b"]
        );
        assert_eq!(
            names(select(&ps, "reg.io/team/app", None, Some("b")).unwrap()),
            ["b"]
        );
        assert!(
            select(&ps, "reg.io/team/app", None, Some("c"))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            select(&ps, "x", None, Some("zz")).unwrap_err(),
            UnknownPolicy("zz".into())
        );
        assert!(
            select(&ps, "nowhere.io/app", None, None)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn threshold_counts_distinct_authorities() {
        let d = Digest::of(b"i");
        let (ok, f) = evaluate_signatures("p", &req(1, &["a"]), &d, &[valid("a")]);
        assert!(ok);
        assert_eq!(codes(&f), [Code::Satisfied]);
        assert_eq!(f[0].authority, "key:a");

        // The same authority twice does not meet a threshold of two.
        let (ok, f) = evaluate_signatures("p", &req(2, &["a", "b"]), &d, &[valid("a"), valid("a")]);
        assert!(!ok);
        assert_eq!(codes(&f), [Code::ThresholdNotMet]);

        let (ok, _) = evaluate_signatures("p", &req(2, &["a", "b"]), &d, &[valid("a"), valid("b")]);
        assert!(ok);
    }

    #[test]
    fn denials_say_why() {
        let d = Digest::of(b"i");
        let (ok, f) = evaluate_signatures("p", &req(1, &["a"]), &d, &[]);
        assert!(!ok);
        assert_eq!(codes(&f), [Code::NoSignatures]);
        assert!(f[0].message.contains(&d.cosign_tag("sig")));

        let (ok, f) = evaluate_signatures("p", &req(1, &["a"]), &d, &[valid("other")]);
        assert!(!ok);
        assert_eq!(codes(&f), [Code::UntrustedSigner]);
        let (ok, f) = evaluate_signatures("p", &req(1, &["a"]), &d, &[valid("other")]);
        assert!(!ok);
        assert_eq!(codes(&f), [Code::UntrustedSigner]);
        assert!(f[0].message.contains("key:other") && f[0].message.contains("key:a"));

        let wrong = SignatureOutcome::WrongDigest {
            signers: vec![Signer::Key("a".into())],
            found: "sha256:00".into(),
        };
        let (ok, f) = evaluate_signatures("p", &req(1, &["a"]), &d, &[wrong]);
        assert!(!ok);
        assert_eq!(codes(&f), [Code::DigestMismatch]);

        let bad = SignatureOutcome::Unverified {
            check: Check::Signature,
            reason: "r".into(),
        };
        let (ok, f) = evaluate_signatures("p", &req(1, &["a"]), &d, &vec![bad; 30]);
        assert!(!ok);
        assert_eq!(f.len(), MAX_PROBLEM_FINDINGS + 1);
        assert!(f.iter().all(|f| f.code == Code::SignatureInvalid));
    }

    fn keyless(trust: &str, issuer: &str, subject: &str) -> KeylessAuthority {
        KeylessAuthority {
            trust: trust.into(),
            issuer: Matcher::Exact(issuer.into()),
            subject: Matcher::regex(subject).unwrap(),
            claims: vec![(Claim::Repository, "acme/app".into())],
        }
    }

    fn signed_by(trust: &str, issuer: &str, subject: &str, repo: &str) -> SignatureOutcome {
        SignatureOutcome::Valid {
            signers: vec![Signer::Keyless {
                trust: trust.into(),
                identity: CertIdentity {
                    subject: subject.into(),
                    issuer: issuer.into(),
                    repository: Some(repo.into()),
                    ..Default::default()
                },
            }],
            signed_name: None,
        }
    }

    #[test]
    fn one_certificate_counts_toward_one_authority() {
        let d = Digest::of(b"i");
        let gh = "https://token.actions.githubusercontent.com";
        let subject = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main";
        // Two authorities whose regexes both match one certificate.
        let req = SignatureRequirement {
            threshold: 2,
            authorities: vec![
                Authority::Keyless(keyless("pg", gh, "https://github\\.com/acme/.+")),
                Authority::Keyless(keyless("pg", gh, ".+release\\.yml.+")),
            ],
        };
        let one = signed_by("pg", gh, subject, "acme/app");
        let (ok, f) = evaluate_signatures("p", &req, &d, std::slice::from_ref(&one));
        assert!(!ok, "{f:?}");
        assert_eq!(codes(&f), [Code::ThresholdNotMet]);
        // The same certificate identity signing twice is still one signer.
        let (ok, _) = evaluate_signatures("p", &req, &d, &[one.clone(), one.clone()]);
        assert!(!ok);
        // A second signer meets it, whichever authority each is matched to.
        let other = signed_by(
            "pg",
            gh,
            "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1",
            "acme/app",
        );
        let (ok, f) = evaluate_signatures("p", &req, &d, &[one, other]);
        assert!(ok, "{f:?}");
        assert_eq!(codes(&f), [Code::Satisfied, Code::Satisfied]);
    }

    #[test]
    fn matching_finds_the_assignment_that_meets_the_threshold() {
        // Signer x is accepted by a and b, signer y only by a: a greedy count that gives a to x
        // first would see one authority; the matching gives b to x and a to y.
        let d = Digest::of(b"i");
        let req = SignatureRequirement {
            threshold: 2,
            authorities: vec![
                Authority::Key {
                    name: "a".into(),
                    logged_in: None,
                    signed_identity: SignedIdentity::Any,
                },
                Authority::Key {
                    name: "b".into(),
                    logged_in: None,
                    signed_identity: SignedIdentity::Any,
                },
            ],
        };
        let x = SignatureOutcome::Valid {
            signers: vec![Signer::Key("a".into()), Signer::Key("b".into())],
            signed_name: None,
        };
        let (ok, _) = evaluate_signatures("p", &req, &d, &[x.clone(), valid("a")]);
        assert!(!ok, "signer key:a twice is one signer");
        let y = SignatureOutcome::Valid {
            signers: vec![Signer::Key("c".into())],
            signed_name: None,
        };
        let (ok, _) = evaluate_signatures("p", &req, &d, &[x, y]);
        assert!(!ok, "c is accepted by no authority");
    }

    #[test]
    fn keyless_identities() {
        let d = Digest::of(b"i");
        let gh = "https://token.actions.githubusercontent.com";
        let req = SignatureRequirement {
            threshold: 1,
            authorities: vec![Authority::Keyless(keyless(
                "pg",
                gh,
                r"https://github\.com/acme/.+",
            ))],
        };
        let good = signed_by(
            "pg",
            gh,
            "https://github.com/acme/app/.github/workflows/r.yml@refs/heads/main",
            "acme/app",
        );
        assert!(evaluate_signatures("p", &req, &d, &[good]).0);

        for (outcome, code) in [
            (
                signed_by(
                    "pg",
                    "https://accounts.google.com",
                    "https://github.com/acme/x",
                    "acme/app",
                ),
                Code::IdentityMismatch,
            ),
            (
                signed_by("pg", gh, "https://github.com/evil/x", "acme/app"),
                Code::IdentityMismatch,
            ),
            (
                signed_by("pg", gh, "https://github.com/acme/x", "evil/app"),
                Code::IdentityMismatch,
            ),
            // Only an unanchored regex would match this subject.
            (
                signed_by(
                    "pg",
                    gh,
                    "https://evil.example/https://github.com/acme/x",
                    "acme/app",
                ),
                Code::IdentityMismatch,
            ),
            (
                signed_by("other-root", gh, "https://github.com/acme/x", "acme/app"),
                Code::UntrustedSigner,
            ),
        ] {
            let (ok, f) = evaluate_signatures("p", &req, &d, &[outcome]);
            assert!(!ok);
            assert_eq!(codes(&f), [code]);
        }
        let (_, f) = evaluate_signatures(
            "p",
            &req,
            &d,
            &[signed_by("pg", gh, "https://github.com/evil/x", "acme/app")],
        );
        assert!(
            f[0].message.contains("https://github.com/evil/x"),
            "shows what was found: {}",
            f[0].message
        );
        assert!(
            f[0].message.contains("acme"),
            "and what was expected: {}",
            f[0].message
        );
    }

    #[test]
    fn artifacts_become_the_statements_their_checks_read() {
        let d = Digest::parse(&format!("sha256:{}", "ab".repeat(32))).unwrap();
        let sarif = serde_json::json!({
            "version": "2.1.0",
            "runs": [{"invocations": [{"endTimeUtc": "2026-12-01T00:00:00Z"}], "results": []}],
        });
        let s =
            artifact_statement("application/sarif+json", sarif.to_string().as_bytes(), &d).unwrap();
        assert_eq!(s.predicate_type, crate::checks::COSIGN_VULN);
        assert_eq!(s.predicate["scanner"]["result"], sarif);
        assert_eq!(
            s.predicate["metadata"]["scanFinishedOn"],
            "2026-12-01T00:00:00Z"
        );
        assert_eq!(s.subject[0].digest["sha256"], "ab".repeat(32));
        let spdx = serde_json::json!({"spdxVersion": "SPDX-2.3", "packages": []});
        let s =
            artifact_statement("application/spdx+json", spdx.to_string().as_bytes(), &d).unwrap();
        assert!(crate::checks::is_spdx(&s.predicate_type));
        assert_eq!(s.predicate, spdx);
        assert!(artifact_statement("application/spdx+json", b"not json", &d).is_err());
        assert!(artifact_statement("text/plain", b"{}", &d).is_err());
    }
}
