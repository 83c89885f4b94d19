//! An RFC 3161 timestamp token (a CMS SignedData over a TSTInfo), verified as the Notary Project's
//! timestamping rules ask: its message imprint is the hash of the signature it countersigns, its
//! one signer's certificate (carried in the token) signed the signed attributes, which bind the
//! TSTInfo (message digest, content type) and that certificate (ESS signing certificate), and the
//! certificate chains, at the token's own time, to a trusted TSA root with the time-stamping usage.

use aws_lc_rs::signature::{self as sig, UnparsedPublicKey};
use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier};
use rustls::pki_types::{CertificateDer, UnixTime};
use sha2::Digest as _;
use webpki::{EndEntityCert, KeyUsage};
use x509_cert::Certificate;
use x509_cert::der::{Decode, Encode};

const ID_SIGNED_DATA: &str = "1.2.840.113549.1.7.2";
const ID_CT_TST_INFO: &str = "1.2.840.113549.1.9.16.1.4";
const ID_CONTENT_TYPE: &str = "1.2.840.113549.1.9.3";
const ID_MESSAGE_DIGEST: &str = "1.2.840.113549.1.9.4";
const ID_SIGNING_CERTIFICATE: &str = "1.2.840.113549.1.9.16.2.12";
const ID_SIGNING_CERTIFICATE_V2: &str = "1.2.840.113549.1.9.16.2.47";
/// id-kp-timeStamping (1.3.6.1.5.5.7.3.8), DER value bytes.
const TIME_STAMPING_EKU: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x08];
/// Certificates a token may carry.
const MAX_TOKEN_CERTIFICATES: usize = 10;

/// A verified timestamp: the TSA's time and the interval its accuracy allows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stamped {
    pub time: jiff::Timestamp,
    pub accuracy_seconds: f64,
    pub earliest: jiff::Timestamp,
    pub latest: jiff::Timestamp,
}

fn hash(oid: &str, bytes: &[u8]) -> Option<Vec<u8>> {
    Some(match oid {
        "2.16.840.1.101.3.4.2.1" => sha2::Sha256::digest(bytes).to_vec(),
        "2.16.840.1.101.3.4.2.2" => sha2::Sha384::digest(bytes).to_vec(),
        "2.16.840.1.101.3.4.2.3" => sha2::Sha512::digest(bytes).to_vec(),
        _ => return None,
    })
}

/// The TSTInfo and SignedData of a token (a bare TimeStampToken ContentInfo).
fn parse(token: &[u8]) -> Result<(x509_tsp::TstInfo, Vec<u8>, SignedData), String> {
    let info = ContentInfo::from_der(token)
        .map_err(|e| format!("the timestamp token is not a CMS ContentInfo: {e}"))?;
    if info.content_type.to_string() != ID_SIGNED_DATA {
        return Err("the timestamp token is not CMS SignedData".into());
    }
    let signed_der = info
        .content
        .to_der()
        .map_err(|e| format!("the timestamp token: {e}"))?;
    let signed = SignedData::from_der(&signed_der)
        .map_err(|e| format!("the timestamp token's SignedData is malformed: {e}"))?;
    if signed.encap_content_info.econtent_type.to_string() != ID_CT_TST_INFO {
        return Err("the timestamp token does not hold a TSTInfo".into());
    }
    let content = signed
        .encap_content_info
        .econtent
        .as_ref()
        .ok_or("the timestamp token holds no TSTInfo")?;
    let tst_der = content.value().to_vec();
    let tst = x509_tsp::TstInfo::from_der(&tst_der)
        .map_err(|e| format!("the timestamp token's TSTInfo is malformed: {e}"))?;
    Ok((tst, tst_der, signed))
}

fn timestamp_of(t: &x509_cert::der::asn1::GeneralizedTime) -> Result<jiff::Timestamp, String> {
    let secs = t.to_unix_duration().as_secs();
    jiff::Timestamp::from_second(secs as i64).map_err(|e| format!("genTime: {e}"))
}

/// The certificate of `certs` that `sid` names.
fn signer<'a>(sid: &SignerIdentifier, certs: &'a [Certificate]) -> Option<&'a Certificate> {
    certs.iter().find(|c| match sid {
        SignerIdentifier::IssuerAndSerialNumber(is) => {
            c.tbs_certificate.issuer == is.issuer
                && c.tbs_certificate.serial_number == is.serial_number
        }
        SignerIdentifier::SubjectKeyIdentifier(ski) => {
            c.tbs_certificate.extensions.iter().flatten().any(|ext| {
                ext.extn_id.to_string() == "2.5.29.14"
                    && x509_cert::ext::pkix::SubjectKeyIdentifier::from_der(
                        ext.extn_value.as_bytes(),
                    )
                    .is_ok_and(|k| &k == ski)
            })
        }
    })
}

fn verification_algorithm(
    signature_oid: &str,
    digest_oid: &str,
    key_oid: &str,
    curve_oid: Option<String>,
) -> Option<&'static dyn sig::VerificationAlgorithm> {
    const SHA256: &str = "2.16.840.1.101.3.4.2.1";
    const SHA384: &str = "2.16.840.1.101.3.4.2.2";
    const SHA512: &str = "2.16.840.1.101.3.4.2.3";
    const RSA: &str = "1.2.840.113549.1.1.1";
    const EC: &str = "1.2.840.10045.2.1";
    let digest = match signature_oid {
        "1.2.840.113549.1.1.11" | "1.2.840.10045.4.3.2" => SHA256,
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => SHA384,
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => SHA512,
        RSA | EC => digest_oid,
        _ => return None,
    };
    let rsa_signature = signature_oid.starts_with("1.2.840.113549.1.1.");
    Some(
        match (key_oid, rsa_signature, digest, curve_oid.as_deref()) {
            (RSA, true, SHA256, _) => &sig::RSA_PKCS1_2048_8192_SHA256,
            (RSA, true, SHA384, _) => &sig::RSA_PKCS1_2048_8192_SHA384,
            (RSA, true, SHA512, _) => &sig::RSA_PKCS1_2048_8192_SHA512,
            (EC, false, SHA256, Some("1.2.840.10045.3.1.7")) => &sig::ECDSA_P256_SHA256_ASN1,
            (EC, false, SHA384, Some("1.2.840.10045.3.1.7")) => &sig::ECDSA_P256_SHA384_ASN1,
            (EC, false, SHA256, Some("1.3.132.0.34")) => &sig::ECDSA_P384_SHA256_ASN1,
            (EC, false, SHA384, Some("1.3.132.0.34")) => &sig::ECDSA_P384_SHA384_ASN1,
            (EC, false, SHA512, Some("1.3.132.0.35")) => &sig::ECDSA_P521_SHA512_ASN1,
            _ => return None,
        },
    )
}

/// Verifies `token` as a countersignature of `signature` under the TSA roots `tsa_roots` (DER).
pub fn verify(token: &[u8], signature: &[u8], tsa_roots: &[Vec<u8>]) -> Result<Stamped, String> {
    let (tst, tst_der, signed) = parse(token)?;
    let stamped = imprint_and_time(&tst, signature)?;
    let certs: Vec<Certificate> = signed
        .certificates
        .iter()
        .flat_map(|set| set.0.iter())
        .filter_map(|c| match c {
            CertificateChoices::Certificate(c) => Some(c.clone()),
            CertificateChoices::Other(_) => None,
        })
        .take(MAX_TOKEN_CERTIFICATES)
        .collect();
    let mut infos = signed.signer_infos.0.iter();
    let (Some(info), None) = (infos.next(), infos.next()) else {
        return Err("the timestamp token has not exactly one signer".into());
    };
    let signer_cert = signer(&info.sid, &certs)
        .ok_or("the timestamp token does not carry its signing certificate")?;
    let signer_der = signer_cert.to_der().map_err(|e| e.to_string())?;
    let attrs = info
        .signed_attrs
        .as_ref()
        .ok_or("the timestamp token has no signed attributes")?;
    attributes_bind(
        attrs,
        &info.digest_alg.oid.to_string(),
        &tst_der,
        &signer_der,
    )?;
    signature_verifies(info, signer_cert, attrs)?;
    tsa_chain_holds(&signer_der, &certs, tsa_roots, stamped.time)?;
    Ok(stamped)
}

/// RFC 3161 §2.4.2: the token's message imprint is the hash of `signature`; its time, widened by
/// the accuracy the TSA claims.
fn imprint_and_time(tst: &x509_tsp::TstInfo, signature: &[u8]) -> Result<Stamped, String> {
    let imprint = &tst.message_imprint;
    let alg = imprint.hash_algorithm.oid.to_string();
    let expected = hash(&alg, signature)
        .ok_or_else(|| format!("the timestamp's message imprint uses hash {alg}, not SHA-2"))?;
    if expected != imprint.hashed_message.as_bytes() {
        return Err("the timestamp countersigns another signature (message imprint)".into());
    }
    let time = timestamp_of(&tst.gen_time)?;
    let accuracy_seconds = tst.accuracy.as_ref().map_or(0.0, |a| {
        a.seconds.unwrap_or(0) as f64
            + f64::from(a.millis.unwrap_or(0)) / 1e3
            + f64::from(a.micros.unwrap_or(0)) / 1e6
    });
    // The accuracy is the TSA's claim, read before its signature is checked: out of range is an
    // error, never a panic.
    let slack = jiff::SignedDuration::try_from_secs_f64(accuracy_seconds.max(0.0))
        .map_err(|_| format!("the timestamp's accuracy ({accuracy_seconds} s) is out of range"))?;
    let (earliest, latest) = (
        time.checked_sub(slack).map_err(|e| e.to_string())?,
        time.checked_add(slack).map_err(|e| e.to_string())?,
    );
    Ok(Stamped {
        time,
        accuracy_seconds,
        earliest,
        latest,
    })
}

/// RFC 5652 §5.3/§11 and RFC 5035: the signed attributes bind the TSTInfo (content type and
/// message digest) and name the signing certificate (ESSCertID, v1 or v2).
fn attributes_bind(
    attrs: &x509_cert::attr::Attributes,
    digest_oid: &str,
    tst_der: &[u8],
    signer_der: &[u8],
) -> Result<(), String> {
    let mut content_type_ok = false;
    let mut digest_ok = false;
    let mut signing_cert_ok = false;
    for attr in attrs.iter() {
        let values: Vec<Vec<u8>> = attr.values.iter().filter_map(|v| v.to_der().ok()).collect();
        let [value] = values.as_slice() else {
            return Err("a signed attribute of the timestamp token has not one value".into());
        };
        match attr.oid.to_string().as_str() {
            ID_CONTENT_TYPE => {
                content_type_ok = x509_cert::der::asn1::ObjectIdentifier::from_der(value)
                    .is_ok_and(|o| o.to_string() == ID_CT_TST_INFO);
            }
            ID_MESSAGE_DIGEST => {
                let want = hash(digest_oid, tst_der).ok_or_else(|| {
                    format!("the timestamp token's digest algorithm {digest_oid} is not SHA-2")
                })?;
                digest_ok = x509_cert::der::asn1::OctetString::from_der(value)
                    .is_ok_and(|o| o.as_bytes() == want.as_slice());
            }
            // ESSCertID(v2): the hash of the signing certificate, under the signature.
            ID_SIGNING_CERTIFICATE | ID_SIGNING_CERTIFICATE_V2 => {
                let hashes = [
                    sha1_smol_free(signer_der),
                    sha2::Sha256::digest(signer_der).to_vec(),
                    sha2::Sha384::digest(signer_der).to_vec(),
                    sha2::Sha512::digest(signer_der).to_vec(),
                ];
                signing_cert_ok = hashes.iter().any(|h| contains_octet_string(value, h));
            }
            _ => {}
        }
    }
    if !content_type_ok || !digest_ok {
        return Err(
            "the timestamp token's signed attributes do not bind its TSTInfo (content type, message digest)"
                .into(),
        );
    }
    if !signing_cert_ok {
        return Err(
            "the timestamp token's signed attributes do not name its signing certificate".into(),
        );
    }
    Ok(())
}

/// RFC 5652 §5.4: the signer's signature over the signed attributes.
fn signature_verifies(
    info: &cms::signed_data::SignerInfo,
    signer_cert: &Certificate,
    attrs: &x509_cert::attr::Attributes,
) -> Result<(), String> {
    let digest_oid = info.digest_alg.oid.to_string();
    // The signature is over the attributes re-encoded as a SET OF (RFC 5652 §5.4).
    let attrs_der = {
        let list: Vec<x509_cert::attr::Attribute> = attrs.iter().cloned().collect();
        x509_cert::der::asn1::SetOfVec::try_from(list)
            .and_then(|s| s.to_der())
            .map_err(|e| e.to_string())?
    };
    let spki = &signer_cert.tbs_certificate.subject_public_key_info;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<x509_cert::der::asn1::ObjectIdentifier>().ok())
        .map(|o| o.to_string());
    let algorithm = verification_algorithm(
        &info.signature_algorithm.oid.to_string(),
        &digest_oid,
        &spki.algorithm.oid.to_string(),
        curve,
    )
    .ok_or("the timestamp token's signature algorithm is not supported")?;
    UnparsedPublicKey::new(algorithm, spki.subject_public_key.raw_bytes())
        .verify(&attrs_der, info.signature.as_bytes())
        .map_err(|_| "the timestamp token's signature does not verify".to_owned())?;

    Ok(())
}

/// RFC 3161 §2.3: the TSA's certificate chains to a configured root at the time it vouches
/// for, and is for time stamping.
fn tsa_chain_holds(
    signer_der: &[u8],
    certs: &[Certificate],
    tsa_roots: &[Vec<u8>],
    time: jiff::Timestamp,
) -> Result<(), String> {
    // The TSA's chain, at the time it vouches for, to a configured root.
    let anchors: Vec<_> = tsa_roots
        .iter()
        .filter_map(|r| {
            webpki::anchor_from_trusted_cert(&CertificateDer::from(r.as_slice()))
                .ok()
                .map(|a| a.to_owned())
        })
        .collect();
    let intermediates: Vec<CertificateDer<'static>> = certs
        .iter()
        .filter_map(|c| c.to_der().ok())
        .filter(|d| d.as_slice() != signer_der)
        .map(CertificateDer::from)
        .collect();
    let leaf_der = CertificateDer::from(signer_der);
    let leaf = EndEntityCert::try_from(&leaf_der)
        .map_err(|e| format!("the TSA certificate is unreadable: {e}"))?;
    let algs = rustls::crypto::aws_lc_rs::default_provider()
        .signature_verification_algorithms
        .all;
    leaf.verify_for_usage(
        algs,
        &anchors,
        &intermediates,
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            time.as_second().max(0) as u64
        )),
        // webpki asks every CA of the path for a required EKU; CAs rarely list one, so the
        // leaf's time-stamping usage is checked below, and CAs that list EKUs must allow it.
        KeyUsage::required_if_present(TIME_STAMPING_EKU),
        None,
        None,
    )
    .map_err(|e| {
        format!("the TSA certificate does not chain to a trusted tsa store at {time}: {e:?}")
    })?;
    let (_, parsed) = x509_parser::parse_x509_certificate(signer_der)
        .map_err(|e| format!("the TSA certificate is unreadable: {e}"))?;
    let time_stamping =
        matches!(parsed.extended_key_usage(), Ok(Some(eku)) if eku.value.time_stamping);
    if !time_stamping {
        return Err("the TSA certificate is not for time stamping (extended key usage)".into());
    }
    Ok(())
}

/// SHA-1 of `bytes` (ESSCertID v1 names certificates by SHA-1), via aws-lc-rs.
fn sha1_smol_free(bytes: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes)
        .as_ref()
        .to_vec()
}

/// Whether `der` holds an OCTET STRING whose content is exactly `wanted`.
fn contains_octet_string(der: &[u8], wanted: &[u8]) -> bool {
    let Ok(len) = u8::try_from(wanted.len()) else {
        return false;
    };
    let needle: Vec<u8> = [0x04, len].iter().chain(wanted).copied().collect();
    der.windows(needle.len()).any(|w| w == needle.as_slice())
}

#[cfg(test)]
mod tests {
    //! Cases D36–D39 of the Notation corpus (tspclient-go's own tokens).
    use super::*;

    fn data(rel: &str) -> Vec<u8> {
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/notation/tst")
                .join(rel),
        )
        .unwrap()
    }

    fn root() -> Vec<Vec<u8>> {
        let pem = data("GlobalSignRootCA.crt");
        match pem::parse_many(&pem) {
            Ok(blocks) if !blocks.is_empty() => {
                blocks.into_iter().map(pem::Pem::into_contents).collect()
            }
            _ => vec![pem],
        }
    }

    #[test]
    fn a_globalsign_token_verifies_with_its_time() {
        let s = verify(&data("TimeStampToken.p7s"), b"notation", &root()).unwrap();
        assert_eq!(s.time.to_string(), "2021-09-17T14:09:10Z");
        // Another message is another imprint.
        let err = verify(&data("TimeStampToken.p7s"), b"notatiom", &root()).unwrap_err();
        assert!(err.contains("message imprint"), "{err}");
        // A TSA root nobody configured.
        let err = verify(&data("TimeStampToken.p7s"), b"notation", &[]).unwrap_err();
        assert!(err.contains("trusted tsa store"), "{err}");
    }

    #[test]
    fn broken_tokens_are_refused_each_for_its_reason() {
        let err = verify(
            &data("TimeStampTokenWithInvalidSignature.p7s"),
            b"notation",
            &root(),
        )
        .unwrap_err();
        assert!(err.contains("signature does not verify"), "{err}");
        let err = verify(
            &data("TimeStampTokenWithoutCertificate.p7s"),
            b"notation",
            &root(),
        )
        .unwrap_err();
        assert!(err.contains("signing certificate"), "{err}");
        let err = verify(
            &data("TimeStampTokenWithInvalidTSTInfo.p7s"),
            b"notation",
            &root(),
        )
        .unwrap_err();
        assert!(err.contains("TSTInfo"), "{err}");
    }

    #[test]
    fn an_absurd_accuracy_is_an_error_not_a_panic() {
        // The token's accuracy is read before its signature is checked.
        use x509_cert::der::Encode as _;
        let token = data("TimeStampToken.p7s");
        let info = ContentInfo::from_der(&token).unwrap();
        let mut signed = SignedData::from_der(&info.content.to_der().unwrap()).unwrap();
        let tst_der = signed
            .encap_content_info
            .econtent
            .as_ref()
            .unwrap()
            .value()
            .to_vec();
        let mut tst = x509_tsp::TstInfo::from_der(&tst_der).unwrap();
        tst.accuracy = Some(x509_tsp::Accuracy {
            seconds: Some(u64::MAX),
            millis: None,
            micros: None,
        });
        signed.encap_content_info.econtent = Some(
            x509_cert::der::Any::new(x509_cert::der::Tag::OctetString, tst.to_der().unwrap())
                .unwrap(),
        );
        let forged = ContentInfo {
            content_type: info.content_type,
            content: x509_cert::der::Any::from_der(&signed.to_der().unwrap()).unwrap(),
        }
        .to_der()
        .unwrap();
        let err = verify(&forged, b"notation", &root()).unwrap_err();
        assert!(err.contains("out of range"), "{err}");
    }
}
