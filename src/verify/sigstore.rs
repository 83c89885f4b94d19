//! Sigstore bundle verification with `sigstore-verify`: certificate chain to a trusted Fulcio CA at a
//! verified signing time, SCT, Rekor v1/v2 entries (SET, inclusion proof, checkpoint), RFC 3161
//! timestamps, and the entry's consistency with this signature, certificate and artifact. umpire
//! keeps identity matching for itself (whole-value regexes, GitHub claims): it asks for any identity
//! here and reads the one that verified.

use sigstore_trust_root::TrustedRoot;
use sigstore_types::bundle::VerificationMaterialContent;
use sigstore_types::{Artifact, Bundle, DerPublicKey};
use sigstore_verify::{Error, PublicKeyVerificationPolicy, VerificationPolicy, Verifier};

use super::Check;
use super::fulcio::FulcioTrust;
use super::identity::{CertIdentity, read_workflow_claims};
use sigstore_verify::crypto::Keyring;

/// A named Sigstore trusted root (`trust.sigstore.<name>`), ready to verify with.
pub struct SigstoreRoot {
    pub name: String,
    verifier: Verifier,
    /// For the evidence umpire verifies itself (legacy `intoto` 0.0.1 entries).
    fulcio: FulcioTrust,
    rekor_keys: Keyring,
    /// GitHub's instance logs nothing: its signing times come from its TSA alone.
    has_tlogs: bool,
    /// Without CT logs, certificates carry no SCT to check.
    has_ctlogs: bool,
    /// The Fulcio CA certificates: (subject, issuer, not before, not after) in Unix seconds.
    ca_certs: Vec<CaCert>,
}

#[derive(Debug, Clone)]
struct CaCert {
    subject: Vec<u8>,
    issuer: Vec<u8>,
    not_before: i64,
    not_after: i64,
    name: String,
    der: Vec<u8>,
}

fn ca_certs(root: &TrustedRoot) -> Vec<CaCert> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    root.certificate_authorities
        .iter()
        .flat_map(|ca| ca.cert_chain.certificates.iter())
        .filter_map(|c| {
            let (_, cert) = X509Certificate::from_der(c.raw_bytes.as_bytes()).ok()?;
            Some(CaCert {
                subject: cert.subject().as_raw().to_vec(),
                issuer: cert.issuer().as_raw().to_vec(),
                not_before: cert.validity().not_before.timestamp(),
                not_after: cert.validity().not_after.timestamp(),
                name: cert.subject().to_string(),
                der: c.raw_bytes.as_bytes().to_vec(),
            })
        })
        .collect()
}

impl std::fmt::Debug for SigstoreRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigstoreRoot({})", self.name)
    }
}

/// Why a bundle did not verify, as a finding code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub check: Check,
    pub reason: String,
}

impl SigstoreRoot {
    pub fn from_json(name: &str, json: &str) -> Result<Self, String> {
        let root = TrustedRoot::from_json(json)
            .map_err(|e| format!("not a Sigstore trusted root: {e}"))?;
        let verifier = Verifier::new(&root).map_err(|e| format!("unusable trusted root: {e}"))?;
        Ok(Self {
            name: name.to_owned(),
            verifier,
            fulcio: FulcioTrust::from_root(&root)?,
            rekor_keys: root
                .rekor_keys()
                .map_err(|e| format!("unusable transparency log key: {e}"))?,
            has_tlogs: !root.tlogs.is_empty(),
            has_ctlogs: !root.ctlogs.is_empty(),
            ca_certs: ca_certs(&root),
        })
    }

    /// A root with no authorities: verifies keyed bundles that need no transparency log.
    pub fn offline() -> Self {
        let empty = r#"{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1","tlogs":[],"certificateAuthorities":[],"ctlogs":[],"timestampAuthorities":[]}"#;
        Self::from_json("offline", empty)
            .unwrap_or_else(|e| unreachable!("the empty trusted root is valid: {e}"))
    }

    /// The Sigstore public-good production root built into umpire.
    pub fn public_good(name: &str) -> Result<Self, String> {
        Self::from_json(name, sigstore_trust_root::SIGSTORE_PRODUCTION_TRUSTED_ROOT)
    }

    pub(super) fn fulcio(&self) -> &FulcioTrust {
        &self.fulcio
    }

    pub(super) fn rekor_keys(&self) -> &Keyring {
        &self.rekor_keys
    }

    /// Verifies a certificate (keyless) bundle for `artifact` and returns the identity that signed.
    pub fn verify_keyless(
        &self,
        bundle: &Bundle,
        artifact: Artifact<'_>,
    ) -> Result<CertIdentity, Failure> {
        let chain = bundle_chain(bundle);
        if chain.len() > 1 {
            super::chain::check_travelling(&chain, |der| {
                self.ca_certs
                    .iter()
                    .any(|c| c.subject == c.issuer && c.der == der)
            })
            .map_err(|reason| Failure {
                check: Check::Certificate,
                reason,
            })?;
        }
        let mut policy = VerificationPolicy::any_identity();
        if self.has_tlogs && bundle.verification_material.tlog_entries.is_empty() {
            // The library accepts a timestamp alone; cosign does not (short of
            // --insecure-ignore-tlog): a certificate signature under a root with transparency
            // logs must be in one of them.
            return Err(Failure {
                check: Check::TransparencyLog,
                reason: format!(
                    "the signature has no transparency-log entry, and trusted root {:?} has transparency logs: keyless signatures must be logged",
                    self.name
                ),
            });
        }
        if !self.has_tlogs {
            // A root with no transparency log (GitHub's) proves signing time with its TSA alone:
            // sigstore-verify still demands a verified timestamp, which then can only be RFC 3161.
            if !has_rfc3161_timestamp(bundle) {
                return Err(Failure {
                    check: Check::TransparencyLog,
                    reason: format!(
                        "trusted root {:?} has no transparency log, so a signature needs an RFC 3161 timestamp, and this one has none",
                        self.name
                    ),
                });
            }
            policy = policy.skip_tlog_unsafe();
        }
        if !self.has_ctlogs {
            // No CT log to check an SCT against: the root's CAs do not issue them.
            policy = policy.skip_sct();
        }
        let result = self
            .verifier
            .verify(artifact, bundle, &policy)
            .map_err(|e| classify(&e))?;
        let (Some(subject), Some(issuer)) = (result.identity(), result.issuer()) else {
            return Err(Failure {
                check: Check::Certificate,
                reason: "the certificate names no subject or no OIDC issuer".into(),
            });
        };
        let mut identity = CertIdentity {
            subject: subject.as_str().to_owned(),
            issuer: issuer.to_owned(),
            ..Default::default()
        };
        let Some(der) = leaf_certificate(bundle) else {
            return Err(Failure {
                check: Check::Certificate,
                reason: "the bundle carries no signing certificate".into(),
            });
        };
        let times: Vec<i64> = result
            .verified_timestamps()
            .iter()
            .map(|t| t.as_second())
            .collect();
        self.check_issuers_valid_at(&der, &times)?;
        read_workflow_claims(&der, &mut identity);
        Ok(identity)
    }

    /// Every CA certificate above the leaf, intermediates included, must be valid at every verified
    /// signing time. (sigstore-verify takes each certificate of a trusted chain as an anchor, and
    /// anchors carry no validity of their own: an expired intermediate would still vouch.)
    pub(super) fn check_issuers_valid_at(
        &self,
        leaf_der: &[u8],
        times: &[i64],
    ) -> Result<(), Failure> {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let invalid = |reason: String| Failure {
            check: Check::Certificate,
            reason,
        };
        let (_, leaf) = X509Certificate::from_der(leaf_der)
            .map_err(|e| invalid(format!("unreadable certificate: {e}")))?;
        if times.is_empty() {
            return Err(invalid("no verified signing time".into()));
        }
        let mut issuer = leaf.issuer().as_raw().to_vec();
        for _ in 0..8 {
            // Several trusted CAs may share a name (rotations): one valid at every time suffices.
            let candidates: Vec<&CaCert> = self
                .ca_certs
                .iter()
                .filter(|c| c.subject == issuer)
                .collect();
            let Some(first) = candidates.first() else {
                return Ok(());
            };
            let valid = |c: &&CaCert| {
                times
                    .iter()
                    .all(|t| *t >= c.not_before && *t <= c.not_after)
            };
            let Some(ca) = candidates.iter().copied().find(valid) else {
                let t = times[0];
                return Err(invalid(format!(
                    "issuing CA {:?} was not valid at the signing time {} (valid {} to {})",
                    first.name,
                    jiff::Timestamp::from_second(t)
                        .map(|t| t.to_string())
                        .unwrap_or_default(),
                    jiff::Timestamp::from_second(first.not_before)
                        .map(|t| t.to_string())
                        .unwrap_or_default(),
                    jiff::Timestamp::from_second(first.not_after)
                        .map(|t| t.to_string())
                        .unwrap_or_default(),
                )));
            };
            if ca.issuer == ca.subject {
                return Ok(());
            }
            issuer = ca.issuer.clone();
        }
        Ok(())
    }

    /// Verifies a public-key bundle for `artifact` under `key` (SPKI DER). With
    /// [`KeyedLog::Verify`] its transparency-log entry must verify under this root's logs; an
    /// entry that is present must match the signature either way.
    pub fn verify_keyed(
        &self,
        bundle: &Bundle,
        artifact: Artifact<'_>,
        key_spki_der: &[u8],
        log: KeyedLog,
    ) -> Result<(), Failure> {
        let mut policy = PublicKeyVerificationPolicy::new(DerPublicKey::new(key_spki_der.to_vec()));
        if log == KeyedLog::NotRequired {
            policy = policy.skip_tlog_unsafe();
        }
        self.verifier
            .verify(artifact, bundle, &policy)
            .map(|_| ())
            .map_err(|e| classify(&e))
    }

    /// Whether this root has a transparency log to verify entries under.
    pub fn has_tlogs(&self) -> bool {
        self.has_tlogs
    }
}

/// Whether a keyed signature's transparency-log entry is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyedLog {
    /// Its entry must verify under the root's logs (a `key` authority with
    /// `transparency_log: required`).
    Verify,
    /// Not verified: a `key` authority trusts its key, not a log, unless the policy asks for one.
    NotRequired,
}

fn has_rfc3161_timestamp(bundle: &Bundle) -> bool {
    !bundle
        .verification_material
        .timestamp_verification_data
        .rfc3161_timestamps
        .is_empty()
}

/// Every certificate of a bundle's `x509CertificateChain` (leaf first), as DER.
fn bundle_chain(bundle: &Bundle) -> Vec<Vec<u8>> {
    match &bundle.verification_material.content {
        VerificationMaterialContent::X509CertificateChain { certificates } => certificates
            .iter()
            .take(16)
            .map(|c| c.raw_bytes.as_bytes().to_vec())
            .collect(),
        _ => Vec::new(),
    }
}

/// The signing certificate's DER.
fn leaf_certificate(bundle: &Bundle) -> Option<Vec<u8>> {
    bundle.signing_certificate().map(|c| c.as_bytes().to_vec())
}

fn classify(e: &Error) -> Failure {
    let check = match e {
        Error::Certificate(_) | Error::TrustedCertificate(_) => Check::Certificate,
        Error::TransparencyLog(_) | Error::Timestamp(_) => Check::TransparencyLog,
        Error::ArtifactMismatch(_) => Check::Digest,
        _ => Check::Signature,
    };
    Failure {
        check,
        reason: e.to_string(),
    }
}
