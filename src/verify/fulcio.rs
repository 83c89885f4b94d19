//! A Fulcio signing certificate checked at a verified signing time, for the evidence sigstore-verify
//! cannot take whole (cosign's legacy `intoto` 0.0.1 attestations): the chain ends in a CA of the
//! trusted root whose window covers the time, every certificate is valid then, the leaf may sign
//! code, and its embedded SCT verifies under a trusted CT log (RFC 6962 §3.2) when the root has CT
//! logs. A root without CT logs (GitHub's) needs no SCT.

use rustls::pki_types::{CertificateDer, TrustAnchor, UnixTime};
use sigstore_trust_root::TrustedRoot;
use sigstore_types::{SignatureBytes, TimeRange};
use sigstore_verify::crypto::{Keyring, SigningScheme, WEBPKI_VERIFICATION_ALGS};
use webpki::{EndEntityCert, KeyUsage};
use x509_cert::der::{Decode, Encode};

/// Code signing (id-kp-codeSigning, 1.3.6.1.5.5.7.3.3), DER value bytes.
const CODE_SIGNING_EKU: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];
/// The embedded SCT list extension (1.3.6.1.4.1.11129.2.4.2).
const SCT_LIST_OID: x509_cert::der::oid::ObjectIdentifier =
    x509_cert::der::oid::ObjectIdentifier::new_unwrap("1.3.6.1.4.1.11129.2.4.2");

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FulcioError {
    #[error("the certificate chain does not verify: {0}")]
    Chain(String),
    #[error("the certificate's SCT does not verify: {0}")]
    Sct(String),
}

/// The Fulcio CAs and CT logs of one trusted root.
pub struct FulcioTrust {
    anchors: Vec<(TrustAnchor<'static>, Option<TimeRange>)>,
    ct_keys: Vec<(SigningScheme, Keyring)>,
    has_ct_logs: bool,
}

impl FulcioTrust {
    pub fn from_root(root: &TrustedRoot) -> Result<Self, String> {
        let mut anchors = Vec::new();
        for ca in &root.certificate_authorities {
            for cert in &ca.cert_chain.certificates {
                let der = CertificateDer::from(cert.raw_bytes.as_bytes());
                let anchor = webpki::anchor_from_trusted_cert(&der)
                    .map_err(|e| format!("unusable Fulcio CA certificate: {e}"))?;
                anchors.push((anchor.to_owned(), ca.valid_for));
            }
        }
        let ct_keys = [
            SigningScheme::EcdsaP256Sha256,
            SigningScheme::EcdsaP384Sha384,
            SigningScheme::RsaPkcs1Sha256,
            SigningScheme::RsaPkcs1Sha384,
            SigningScheme::RsaPkcs1Sha512,
        ]
        .into_iter()
        .map(|scheme| {
            root.ctfe_keys(scheme)
                .map(|ring| (scheme, ring))
                .map_err(|e| format!("unusable CT log key: {e}"))
        })
        .collect::<Result<_, _>>()?;
        Ok(Self {
            anchors,
            ct_keys,
            has_ct_logs: !root.ctlogs.is_empty(),
        })
    }

    /// Verifies `leaf_der` (with no intermediates from the evidence: they come from the trusted root)
    /// for code signing at `time`, then its SCT.
    pub fn verify_at(&self, leaf_der: &[u8], time: jiff::Timestamp) -> Result<(), FulcioError> {
        let anchors: Vec<TrustAnchor<'_>> = self
            .anchors
            .iter()
            .filter(|(_, window)| window.is_none_or(|w| w.contains(time)))
            .map(|(anchor, _)| anchor.clone())
            .collect();
        if anchors.is_empty() {
            return Err(FulcioError::Chain(format!(
                "no trusted Fulcio CA was valid at {time}"
            )));
        }
        let seconds = u64::try_from(time.as_second())
            .map_err(|_| FulcioError::Chain("signing time before 1970".into()))?;
        let der = CertificateDer::from(leaf_der);
        let leaf = EndEntityCert::try_from(&der)
            .map_err(|e| FulcioError::Chain(format!("unreadable certificate: {e}")))?;
        let path = leaf
            .verify_for_usage(
                WEBPKI_VERIFICATION_ALGS,
                &anchors,
                &[],
                UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds)),
                KeyUsage::required(CODE_SIGNING_EKU),
                None,
                None,
            )
            .map_err(|e| FulcioError::Chain(format!("{e} at {time}")))?;
        if !self.has_ct_logs {
            return Ok(());
        }
        // The anchor that verified the leaf is its direct issuer (no intermediates were offered);
        // webpki keeps the SPKI's contents, so the SEQUENCE is put back around them.
        let spki = x509_cert::der::asn1::Any::new(
            x509_cert::der::Tag::Sequence,
            path.anchor().subject_public_key_info.as_ref(),
        )
        .and_then(|any| any.to_der())
        .map_err(|e| FulcioError::Sct(format!("issuer key: {e}")))?;
        self.verify_sct(leaf_der, &spki)
    }

    /// The single embedded SCT, over the precertificate TBS (the leaf's TBS without the SCT list),
    /// under a CT log key valid at the SCT's own time.
    fn verify_sct(&self, leaf_der: &[u8], issuer_spki: &[u8]) -> Result<(), FulcioError> {
        use sha2::Digest as _;
        use x509_cert::ext::pkix::SignedCertificateTimestampList;
        let sct_err = |s: String| FulcioError::Sct(s);
        let cert = x509_cert::Certificate::from_der(leaf_der)
            .map_err(|e| sct_err(format!("unreadable certificate: {e}")))?;
        let list: SignedCertificateTimestampList = match cert.tbs_certificate.get() {
            Ok(Some((_, list))) => list,
            _ => return Err(sct_err("the certificate carries no SCT list".into())),
        };
        let scts = list
            .parse_timestamps()
            .map_err(|e| sct_err(format!("unreadable SCT list: {e:?}")))?;
        let [one] = scts.as_slice() else {
            return Err(sct_err(format!(
                "expected exactly one SCT, found {}",
                scts.len()
            )));
        };
        let sct = one
            .parse_timestamp()
            .map_err(|e| sct_err(format!("unreadable SCT: {e:?}")))?;

        let mut tbs = cert.tbs_certificate.clone();
        tbs.extensions = tbs.extensions.map(|exts| {
            exts.into_iter()
                .filter(|e| e.extn_id != SCT_LIST_OID)
                .collect()
        });
        let tbs_der = tbs
            .to_der()
            .map_err(|e| sct_err(format!("precertificate encoding: {e}")))?;
        let tbs_len = u32::try_from(tbs_der.len())
            .ok()
            .filter(|n| *n < 1 << 24)
            .ok_or_else(|| sct_err("precertificate too large".into()))?;
        let extensions = sct.extensions.as_slice();
        let ext_len = u16::try_from(extensions.len())
            .map_err(|_| sct_err("SCT extensions too large".into()))?;

        // RFC 6962 §3.2 digitally-signed struct for a precert_entry.
        let mut signed = vec![0u8 /* v1 */, 0u8 /* certificate_timestamp */];
        signed.extend(sct.timestamp.to_be_bytes());
        signed.extend(1u16.to_be_bytes()); // precert_entry
        signed.extend(sha2::Sha256::digest(issuer_spki));
        signed.extend(&tbs_len.to_be_bytes()[1..]);
        signed.extend(&tbs_der);
        signed.extend(ext_len.to_be_bytes());
        signed.extend(extensions);

        let algorithm = u16::from_be_bytes([
            sct.signature.algorithm.hash as u8,
            sct.signature.algorithm.signature as u8,
        ]);
        let scheme = match algorithm {
            0x0403 => SigningScheme::EcdsaP256Sha256,
            0x0503 => SigningScheme::EcdsaP384Sha384,
            0x0401 => SigningScheme::RsaPkcs1Sha256,
            0x0501 => SigningScheme::RsaPkcs1Sha384,
            0x0601 => SigningScheme::RsaPkcs1Sha512,
            other => return Err(sct_err(format!("unsupported algorithm 0x{other:04x}"))),
        };
        let Some((_, ring)) = self.ct_keys.iter().find(|(s, _)| *s == scheme) else {
            return Err(sct_err("no CT log key for its algorithm".into()));
        };
        let issued = i64::try_from(sct.timestamp)
            .ok()
            .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
            .ok_or_else(|| sct_err("SCT time out of range".into()))?;
        ring.verify_with_key_id_at(
            &sigstore_types::Sha256Hash::new(sct.log_id.key_id),
            issued,
            &signed,
            &SignatureBytes::new(sct.signature.signature.as_slice().to_vec()),
        )
        .map_err(|e| sct_err(format!("not signed by a trusted CT log: {e}")))
    }
}
