//! One image signature, whatever form it came in, checked against all the trust material umpire
//! knows and bound to the image digest:
//! - a legacy cosign layer (`sha256-<hex>.sig`): the base64 annotation over the simple-signing
//!   payload, checked under every configured key, and, when it carries a certificate, as a keyless
//!   signature under every configured Sigstore root;
//! - a Sigstore bundle attached as a referrer: a DSSE envelope whose in-toto statement (predicate
//!   `https://sigstore.dev/cosign/sign/v1`) names the image digest as its subject.
//!
//! Which signers a policy accepts is decided later (policy), so that "signed by someone this policy
//! does not accept" can be told apart from "signed by nobody we can verify".

use std::collections::BTreeMap;

use base64::Engine as _;
use sigstore_types::{Bundle, Sha256Hash, SignatureContent};

use super::Check;
use super::cosign_legacy::{self, BUNDLE_ANNOTATION, CERTIFICATE_ANNOTATION, RFC3161_ANNOTATION};
use super::identity::CertIdentity;
use super::keys::PublicKey;
use super::sigstore::{Failure, KeyedLog, SigstoreRoot};
use super::simple_signing::SimpleSigning;
use crate::digest::Digest;

/// The annotation holding a cosign signature, beside its payload layer.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The in-toto predicate type of a cosign v3 image signature.
pub const COSIGN_SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// A signature as found under the `.sig` tag: the payload blob and the annotations beside it.
#[derive(Debug, Clone)]
pub struct SignatureLayer {
    pub payload: Vec<u8>,
    pub annotations: BTreeMap<String, String>,
}

/// Who made a signature that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    /// A key from `trust.keys`, by name (no log entry verified).
    Key(String),
    /// A key from `trust.keys` whose signature's log entry verified under a log of the named
    /// `trust.sigstore` root and binds this signature.
    LoggedKey { name: String, trust: String },
    /// A Fulcio certificate that verified under the named `trust.sigstore` root.
    Keyless {
        trust: String,
        identity: CertIdentity,
    },
    /// A Notation signature that a `notation` authority's statement accepts (with what its level
    /// only logged).
    Notation {
        /// The accepting authority's `id` (see `policy::NotationAuthority`).
        authority: String,
        subject: String,
        warnings: Vec<String>,
        revocation_unchecked: bool,
        /// When an enforced time-bound check stops holding (see `notation_rules::Report`).
        valid_until: Option<jiff::Timestamp>,
    },
}

impl std::fmt::Display for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Signer::Key(k) => write!(f, "key:{k}"),
            Signer::LoggedKey { name, trust } => write!(f, "key:{name} (logged in {trust})"),
            Signer::Keyless { trust, identity } => {
                write!(f, "a certificate from {trust} for {identity}")
            }
            Signer::Notation { subject, .. } => write!(f, "a Notation signer {subject}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureOutcome {
    /// Verifies, by `signers`, and is about the image digest. `signed_name` is the image name a
    /// simple-signing payload names (`critical.identity.docker-reference`), when it has one.
    Valid {
        signers: Vec<Signer>,
        signed_name: Option<String>,
    },
    /// Verifies, but is about another digest (a copied signature).
    WrongDigest { signers: Vec<Signer>, found: String },
    /// Verifies, but the signed payload is unusable.
    BadPayload {
        signers: Vec<Signer>,
        reason: String,
    },
    /// Verifies under nothing umpire trusts; `code` says which check failed.
    Unverified { check: Check, reason: String },
}

/// All the trust material a signature may verify under.
pub struct Trust<'a> {
    pub keys: &'a [(String, &'a PublicKey)],
    pub roots: &'a [&'a SigstoreRoot],
    /// A root with no authorities, for keyed bundles when no Sigstore root is configured.
    pub offline: &'a SigstoreRoot,
    /// The verification time: no log entry may be integrated after it.
    pub now: jiff::Timestamp,
    /// Whether to find out which trusted logs hold keyed signatures (`LoggedKey`): only a `key`
    /// authority with `transparency_log: required` asks, and it costs a log verification per root.
    pub log_checks: bool,
}

/// Checks one legacy `.sig` layer for the image at `image_digest`.
pub fn check_layer(
    layer: &SignatureLayer,
    trust: &Trust<'_>,
    image_digest: &Digest,
) -> SignatureOutcome {
    let Some(sig_b64) = layer.annotations.get(SIGNATURE_ANNOTATION) else {
        return unverified(
            Check::Signature,
            "the layer has no dev.cosignproject.cosign/signature annotation",
        );
    };
    let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(sig_b64.trim()) else {
        return unverified(
            Check::Signature,
            "the signature annotation is not valid base64",
        );
    };
    let mut signers: Vec<Signer> = trust
        .keys
        .iter()
        .filter(|(_, key)| key.verify(&layer.payload, &signature))
        .map(|(name, _)| Signer::Key(name.clone()))
        .collect();
    if let (true, Some(rekor), None) = (
        trust.log_checks,
        layer.annotations.get(BUNDLE_ANNOTATION),
        layer.annotations.get(CERTIFICATE_ANNOTATION),
    ) {
        signers = with_log_entries(signers, trust, |root, spki| {
            let bundle = cosign_legacy::to_bundle(&layer.payload, sig_b64, None, Some(rekor), None)
                .map_err(|e| Failure {
                    check: Check::TransparencyLog,
                    reason: e.to_string(),
                })?;
            root.verify_keyed(
                &bundle,
                layer.payload.as_slice().into(),
                spki,
                KeyedLog::Verify,
            )
        });
    }
    let mut failure = None;
    // The chain annotation (cosign writes intermediate and root) is never read: the legacy layer
    // becomes a bundle with the leaf alone, so intermediates and roots come only from the trusted
    // root and a root in the annotation vouches for nothing.
    if let Some(cert) = layer.annotations.get(CERTIFICATE_ANNOTATION) {
        let bundle = cosign_legacy::to_bundle(
            &layer.payload,
            sig_b64,
            Some(cert),
            layer.annotations.get(BUNDLE_ANNOTATION).map(String::as_str),
            layer
                .annotations
                .get(RFC3161_ANNOTATION)
                .map(String::as_str),
        );
        match bundle {
            Ok(bundle) => {
                let (found, first_failure) = keyless_signers(&bundle, trust, |root, b| {
                    // The artifact is the payload itself, so a mismatch can only be the log
                    // entry's: it records another artifact.
                    root.verify_keyless(b, layer.payload.as_slice().into())
                        .map_err(|f| match f.check {
                            Check::Digest => Failure {
                                check: Check::TransparencyLog,
                                reason: f.reason,
                            },
                            _ => f,
                        })
                });
                signers.extend(found);
                failure = first_failure;
            }
            Err(e) => {
                failure = Some(Failure {
                    check: Check::Signature,
                    reason: e.to_string(),
                })
            }
        }
    }
    if signers.is_empty() {
        return match failure {
            Some(f) => SignatureOutcome::Unverified {
                check: f.check,
                reason: f.reason,
            },
            None => unverified(
                Check::Signature,
                "the signature verifies under none of the configured keys",
            ),
        };
    }
    match SimpleSigning::parse(&layer.payload) {
        Err(e) => SignatureOutcome::BadPayload {
            signers,
            reason: e.to_string(),
        },
        Ok(p) if p.is_for(image_digest) => SignatureOutcome::Valid {
            signers,
            signed_name: Some(p.docker_reference),
        },
        Ok(p) => SignatureOutcome::WrongDigest {
            signers,
            found: p.manifest_digest.chars().take(80).collect(),
        },
    }
}

/// Checks a Sigstore bundle attached to the image as a referrer. `None` when the bundle is not an
/// image signature (an attestation, or a message signature with nothing binding it to the image).
pub fn check_bundle(
    bundle: &Bundle,
    trust: &Trust<'_>,
    image_digest: &Digest,
) -> Option<SignatureOutcome> {
    let SignatureContent::DsseEnvelope(envelope) = &bundle.content else {
        return None;
    };
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return None;
    }
    let statement: serde_json::Value = serde_json::from_slice(envelope.payload.as_bytes()).ok()?;
    if statement.get("predicateType").and_then(|p| p.as_str()) != Some(COSIGN_SIGN_PREDICATE) {
        return None;
    }
    let (signers, failure) = bundle_signers(bundle, trust, image_digest);
    Some(if signers.is_empty() {
        let f = failure.unwrap_or(Failure {
            check: Check::Signature,
            reason: "the bundle verifies under none of the configured keys or roots".into(),
        });
        SignatureOutcome::Unverified {
            check: f.check,
            reason: f.reason,
        }
    } else {
        SignatureOutcome::Valid {
            signers,
            signed_name: None,
        }
    })
}

/// Who a DSSE bundle about `image_digest` verifies as (the statement's subjects must include it):
/// under every Sigstore root for a certificate, under every key for a public-key bundle.
pub(crate) fn bundle_signers(
    bundle: &Bundle,
    trust: &Trust<'_>,
    image_digest: &Digest,
) -> (Vec<Signer>, Option<Failure>) {
    let Ok(artifact) = Sha256Hash::from_hex(image_digest.hex()) else {
        let f = Failure {
            check: Check::Signature,
            reason: "unusable image digest".into(),
        };
        return (Vec::new(), Some(f));
    };
    let is_keyless = !matches!(
        bundle.verification_material.content,
        sigstore_types::bundle::VerificationMaterialContent::PublicKey(_)
    );
    if is_keyless {
        return keyless_signers(bundle, trust, |root, b| {
            root.verify_keyless(b, artifact.into())
        });
    }
    let mut signers = Vec::new();
    let mut failure = None;
    let material = &bundle.verification_material;
    let unlogged = material.tlog_entries.is_empty()
        && material
            .timestamp_verification_data
            .rfc3161_timestamps
            .is_empty();
    for (name, key) in trust.keys {
        let Some(spki) = key.spki_der() else { continue };
        if unlogged {
            // sigstore-verify refuses a bundle with neither a log entry nor a timestamp, which a
            // key authority does not need: the DSSE signature under the key, and the statement
            // naming the image, are the whole check.
            match keyed_unlogged(bundle, key, image_digest) {
                Ok(()) => signers.push(Signer::Key(name.clone())),
                Err(f) => {
                    failure.get_or_insert(f);
                }
            }
            continue;
        }
        let logged_in: Vec<Signer> = trust
            .roots
            .iter()
            .filter(|_| trust.log_checks)
            .filter(|root| root.has_tlogs())
            .filter(|root| {
                root.verify_keyed(bundle, artifact.into(), spki, KeyedLog::Verify)
                    .is_ok()
            })
            .map(|root| Signer::LoggedKey {
                name: name.clone(),
                trust: root.name.clone(),
            })
            .collect();
        if !logged_in.is_empty() {
            signers.extend(logged_in);
            continue;
        }
        // Logged nowhere umpire trusts: the key alone, as a `key` authority asks by default. Any
        // timestamp must still verify (under some root's TSA), any entry must still match.
        for root in trust.roots.iter().copied().chain([trust.offline]) {
            match root.verify_keyed(bundle, artifact.into(), spki, KeyedLog::NotRequired) {
                Ok(()) => {
                    signers.push(Signer::Key(name.clone()));
                    break;
                }
                Err(f) => {
                    failure.get_or_insert(f);
                }
            }
        }
    }
    (signers, failure)
}

/// A keyed DSSE bundle with no log entry and no timestamp: its signature over PAE under `key`, and
/// its in-toto statement about `image_digest`.
fn keyed_unlogged(bundle: &Bundle, key: &PublicKey, image_digest: &Digest) -> Result<(), Failure> {
    let SignatureContent::DsseEnvelope(envelope) = &bundle.content else {
        return Err(Failure {
            check: Check::Signature,
            reason: "a bundle with no log entry binds an image only as a DSSE statement".into(),
        });
    };
    if !key.verify(&envelope.pae(), envelope.signature.sig.as_bytes()) {
        return Err(Failure {
            check: Check::Signature,
            reason: "the bundle's DSSE signature verifies under none of the configured keys".into(),
        });
    }
    match super::statement::Statement::parse(envelope.payload.as_bytes()) {
        Ok(statement) if statement.is_about(image_digest) => Ok(()),
        Ok(statement) => Err(Failure {
            check: Check::Digest,
            reason: format!(
                "the bundle's statement is about {}, not about {image_digest}",
                statement.subject_digests().join(", ")
            ),
        }),
        Err(e) => Err(Failure {
            check: Check::Signature,
            reason: e.to_string(),
        }),
    }
}

/// Each `Key` signer becomes one `LoggedKey` per trusted root whose log holds its signature
/// (`logged` says whether it does), or stays `Key` when none does.
pub(crate) fn with_log_entries(
    signers: Vec<Signer>,
    trust: &Trust<'_>,
    logged: impl Fn(&SigstoreRoot, &[u8]) -> Result<(), Failure>,
) -> Vec<Signer> {
    let mut out = Vec::new();
    for signer in signers {
        let Signer::Key(name) = &signer else {
            out.push(signer);
            continue;
        };
        let Some(spki) = trust
            .keys
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, k)| k.spki_der())
        else {
            out.push(signer);
            continue;
        };
        let found: Vec<Signer> = trust
            .roots
            .iter()
            .filter(|root| root.has_tlogs() && logged(root, spki).is_ok())
            .map(|root| Signer::LoggedKey {
                name: name.clone(),
                trust: root.name.clone(),
            })
            .collect();
        if found.is_empty() {
            out.push(signer);
        } else {
            out.extend(found);
        }
    }
    out
}

/// Signers a keyless bundle verifies as, one per root; the first failure if none.
fn keyless_signers(
    bundle: &Bundle,
    trust: &Trust<'_>,
    verify: impl Fn(&SigstoreRoot, &Bundle) -> Result<CertIdentity, Failure>,
) -> (Vec<Signer>, Option<Failure>) {
    let mut signers = Vec::new();
    let mut failure = None;
    if trust.roots.is_empty() {
        failure = Some(Failure {
            check: Check::Certificate,
            reason: "the signature carries a certificate, but no trust.sigstore root is configured"
                .into(),
        });
    }
    for root in trust.roots {
        match verify(root, bundle) {
            Ok(identity) => signers.push(Signer::Keyless {
                trust: root.name.clone(),
                identity,
            }),
            Err(f) => {
                failure.get_or_insert(f);
            }
        }
    }
    (signers, failure)
}

fn unverified(check: Check, reason: &str) -> SignatureOutcome {
    SignatureOutcome::Unverified {
        check,
        reason: reason.to_owned(),
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
        let sig = base64::engine::general_purpose::STANDARD.encode(k.sign(&payload));
        SignatureLayer {
            payload,
            annotations: [(SIGNATURE_ANNOTATION.to_owned(), sig)].into(),
        }
    }

    #[test]
    fn keyed_outcomes() {
        let (a, b) = (Ecdsa::p256(), Ecdsa::p256());
        let ka = PublicKey::from_pem(a.public_pem().as_bytes()).unwrap();
        let kb = PublicKey::from_pem(b.public_pem().as_bytes()).unwrap();
        let keys = vec![("a".to_string(), &ka), ("b".to_string(), &kb)];
        let offline = SigstoreRoot::offline();
        let trust = Trust {
            keys: &keys,
            roots: &[],
            offline: &offline,
            now: jiff::Timestamp::now(),
            log_checks: true,
        };
        let img = Digest::of(b"img");
        let key = |k: &str| Signer::Key(k.into());

        assert_eq!(
            check_layer(&layer(&a, payload_for(&img)), &trust, &img),
            SignatureOutcome::Valid {
                signers: vec![key("a")],
                signed_name: Some("r/a".into()),
            }
        );

        let other = Digest::of(b"other");
        assert_eq!(
            check_layer(&layer(&b, payload_for(&other)), &trust, &img),
            SignatureOutcome::WrongDigest {
                signers: vec![key("b")],
                found: other.to_string()
            }
        );

        let mut tampered = layer(&a, payload_for(&img));
        tampered.payload[10] ^= 1;
        assert!(matches!(
            check_layer(&tampered, &trust, &img),
            SignatureOutcome::Unverified {
                check: Check::Signature,
                ..
            }
        ));

        let stranger = Ecdsa::p256();
        assert!(matches!(
            check_layer(&layer(&stranger, payload_for(&img)), &trust, &img),
            SignatureOutcome::Unverified { .. }
        ));
        assert!(matches!(
            check_layer(&layer(&a, b"not json".to_vec()), &trust, &img),
            SignatureOutcome::BadPayload { .. }
        ));

        let mut no_sig = layer(&a, payload_for(&img));
        no_sig.annotations.clear();
        assert!(matches!(
            check_layer(&no_sig, &trust, &img),
            SignatureOutcome::Unverified { .. }
        ));
        no_sig
            .annotations
            .insert(SIGNATURE_ANNOTATION.into(), "%%%".into());
        assert!(matches!(
            check_layer(&no_sig, &trust, &img),
            SignatureOutcome::Unverified { .. }
        ));
    }

    #[test]
    fn a_certificate_without_configured_roots_is_certificate_invalid() {
        let a = Ecdsa::p256();
        let img = Digest::of(b"img");
        let mut l = layer(&a, payload_for(&img));
        l.annotations.insert(
            CERTIFICATE_ANNOTATION.into(),
            "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n".into(),
        );
        let offline = SigstoreRoot::offline();
        let trust = Trust {
            keys: &[],
            roots: &[],
            offline: &offline,
            now: jiff::Timestamp::now(),
            log_checks: true,
        };
        assert!(matches!(
            check_layer(&l, &trust, &img),
            SignatureOutcome::Unverified {
                check: Check::Certificate,
                ..
            }
        ));
    }
}
