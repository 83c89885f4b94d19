//! A Sigstore instance of the tests' own, made in-process: a Fulcio-like CA issuing short-lived
//! certificates with the OIDC issuer and GitHub workflow extensions and an embedded SCT from a CT
//! log key, and a Rekor-like log key signing entry timestamps (SETs). It mints cosign legacy
//! keyless signature layers and DSSE Sigstore bundles, and the `trusted_root.json` that trusts it.

#![allow(dead_code)]

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair as RcKeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use sha2::{Digest as _, Sha256};
use time::{Duration, OffsetDateTime};

use super::cosign::{Blob, SIGNATURE_ANNOTATION, SIMPLE_SIGNING};

pub const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn ecdsa() -> EcdsaKeyPair {
    EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_ASN1_SIGNING).unwrap()
}

fn spki(key: &EcdsaKeyPair) -> Vec<u8> {
    key.public_key().as_der().unwrap().as_ref().to_vec()
}

fn sign(key: &EcdsaKeyPair, msg: &[u8]) -> Vec<u8> {
    key.sign(&SystemRandom::new(), msg)
        .unwrap()
        .as_ref()
        .to_vec()
}

/// Who a certificate is issued to.
#[derive(Clone, Debug)]
pub struct Identity {
    pub subject: String,
    pub issuer: String,
    /// GitHub workflow claims as legacy Fulcio extensions: repository, ref, trigger, sha, name.
    pub repository: Option<String>,
    pub git_ref: Option<String>,
    pub trigger: Option<String>,
    /// A different value for the legacy issuer extension (…57264.1.1), to make the two disagree.
    pub legacy_issuer: Option<String>,
}

impl Identity {
    /// A GitHub Actions workflow identity for `owner/repo`.
    pub fn github(repo: &str) -> Self {
        Self {
            subject: format!(
                "https://github.com/{repo}/.github/workflows/release.yml@refs/heads/main"
            ),
            issuer: GITHUB_ISSUER.to_owned(),
            repository: Some(repo.to_owned()),
            git_ref: Some("refs/heads/main".to_owned()),
            trigger: Some("push".to_owned()),
            legacy_issuer: None,
        }
    }
}

/// A signing certificate and its private key.
pub struct Leaf {
    pub key: EcdsaKeyPair,
    pub der: Vec<u8>,
}

impl Leaf {
    pub fn pem(&self) -> String {
        pem::encode(&pem::Pem::new("CERTIFICATE", self.der.clone()))
    }
}

/// A signed log entry: what cosign's bundle annotation and a bundle's tlog entry carry.
pub struct LogEntry {
    pub body: Vec<u8>,
    pub integrated_time: i64,
    pub log_index: i64,
    pub log_id: [u8; 32],
    pub set: Vec<u8>,
    pub kind: &'static str,
}

impl LogEntry {
    /// The `dev.sigstore.cosign/bundle` annotation cosign writes for this entry.
    pub fn annotation(&self) -> String {
        serde_json::json!({
            "SignedEntryTimestamp": b64(&self.set),
            "Payload": {"body": b64(&self.body), "integratedTime": self.integrated_time, "logIndex": self.log_index, "logID": hex::encode(self.log_id)},
        })
        .to_string()
    }
}

pub struct TestSigstore {
    ca_key: RcKeyPair,
    ca_params: CertificateParams,
    pub ca_der: Vec<u8>,
    /// An intermediate CA that issues the leaves instead of the root, when set.
    intermediate: Option<(RcKeyPair, CertificateParams, Vec<u8>)>,
    ct_key: EcdsaKeyPair,
    pub rekor_key: EcdsaKeyPair,
}

const OID_ISSUER_V1: &[u64] = &[1, 3, 6, 1, 4, 1, 57264, 1, 1];
const OID_ISSUER_V2: &[u64] = &[1, 3, 6, 1, 4, 1, 57264, 1, 8];
const OID_TRIGGER: &[u64] = &[1, 3, 6, 1, 4, 1, 57264, 1, 2];
const OID_REPOSITORY: &[u64] = &[1, 3, 6, 1, 4, 1, 57264, 1, 5];
const OID_REF: &[u64] = &[1, 3, 6, 1, 4, 1, 57264, 1, 6];
const OID_SCT_LIST: &[u64] = &[1, 3, 6, 1, 4, 1, 11129, 2, 4, 2];

fn der_utf8(s: &str) -> Vec<u8> {
    der_tlv(0x0c, s.as_bytes())
}

fn der_tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match body.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n < 0x100 => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(body);
    out
}

impl TestSigstore {
    pub fn new() -> Self {
        let ca_key = RcKeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut ca_params = CertificateParams::default();
        ca_params
            .distinguished_name
            .push(DnType::OrganizationName, "umpire tests");
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "umpire test fulcio");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        ca_params.not_before = now - Duration::days(30);
        ca_params.not_after = now + Duration::days(365);
        let ca_der = ca_params.self_signed(&ca_key).unwrap().der().to_vec();
        Self {
            ca_key,
            ca_params,
            ca_der,
            intermediate: None,
            ct_key: ecdsa(),
            rekor_key: ecdsa(),
        }
    }

    /// An instance whose leaves come from an intermediate CA that expired yesterday.
    pub fn with_expired_intermediate() -> Self {
        let mut s = Self::new();
        let key = RcKeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "umpire tests");
        params
            .distinguished_name
            .push(DnType::CommonName, "umpire test intermediate");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(30);
        params.not_after = now - Duration::days(1);
        let root = Issuer::new(s.ca_params.clone(), &s.ca_key);
        let der = params.signed_by(&key, &root).unwrap().der().to_vec();
        s.intermediate = Some((key, params, der));
        s
    }

    pub fn rekor_log_id(&self) -> [u8; 32] {
        sha256(&spki(&self.rekor_key))
    }

    /// The `trusted_root.json` trusting this instance's CA, CT log and Rekor log.
    pub fn trusted_root_json(&self) -> String {
        let log = |key: &EcdsaKeyPair, url: &str| {
            serde_json::json!({
                "baseUrl": url,
                "hashAlgorithm": "SHA2_256",
                "logId": {"keyId": b64(&sha256(&spki(key)))},
                "publicKey": {"keyDetails": "PKIX_ECDSA_P256_SHA_256", "rawBytes": b64(&spki(key)), "validFor": {"start": "2020-01-01T00:00:00Z"}},
            })
        };
        serde_json::json!({
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [log(&self.rekor_key, "https://rekor.umpire.test")],
            "certificateAuthorities": [{
                "subject": {"organization": "umpire tests", "commonName": "umpire test fulcio"},
                "uri": "https://fulcio.umpire.test",
                "certChain": {"certificates": self
                    .intermediate
                    .iter()
                    .map(|(_, _, der)| der.clone())
                    .chain([self.ca_der.clone()])
                    .map(|der| serde_json::json!({"rawBytes": b64(&der)}))
                    .collect::<Vec<_>>()},
                "validFor": {"start": "2020-01-01T00:00:00Z"},
            }],
            "ctlogs": [log(&self.ct_key, "https://ctfe.umpire.test")],
            "timestampAuthorities": [],
        })
        .to_string()
    }

    /// A certificate for `identity`, valid from one minute ago for ten minutes.
    pub fn issue(&self, identity: &Identity) -> Leaf {
        let now = OffsetDateTime::now_utc();
        self.issue_at(
            identity,
            now - Duration::minutes(1),
            now + Duration::minutes(9),
        )
    }

    /// A certificate valid only between `not_before` and `not_after`.
    pub fn issue_at(
        &self,
        identity: &Identity,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Leaf {
        let key = ecdsa();
        let rc_key = rcgen::SubjectPublicKeyInfo::from_der(&spki(&key)).unwrap();
        let mut params = CertificateParams::default();
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(SerialNumber::from_slice(&sha256(&spki(&key))[..16]));
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.subject_alt_names = vec![if identity.subject.contains("://") {
            SanType::URI(identity.subject.clone().try_into().unwrap())
        } else {
            SanType::Rfc822Name(identity.subject.clone().try_into().unwrap())
        }];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        params.use_authority_key_identifier_extension = true;
        let mut exts = vec![
            CustomExtension::from_oid_content(
                OID_ISSUER_V1,
                identity
                    .legacy_issuer
                    .as_deref()
                    .unwrap_or(&identity.issuer)
                    .as_bytes()
                    .to_vec(),
            ),
            CustomExtension::from_oid_content(OID_ISSUER_V2, der_utf8(&identity.issuer)),
        ];
        for (oid, value) in [
            (OID_TRIGGER, &identity.trigger),
            (OID_REPOSITORY, &identity.repository),
            (OID_REF, &identity.git_ref),
        ] {
            if let Some(v) = value {
                exts.push(CustomExtension::from_oid_content(
                    oid,
                    v.as_bytes().to_vec(),
                ));
            }
        }
        params.custom_extensions = exts;
        let (issuer_params, issuer_key) = match &self.intermediate {
            Some((key, params, _)) => (params.clone(), key),
            None => (self.ca_params.clone(), &self.ca_key),
        };
        let issuer = Issuer::new(issuer_params, issuer_key);

        // The precertificate: everything but the SCT list, whose TBS the CT log signs.
        let precert = params.signed_by(&rc_key, &issuer).unwrap().der().to_vec();
        let (_, parsed) = x509_parser::parse_x509_certificate(&precert).unwrap();
        let tbs = parsed.tbs_certificate.as_ref().to_vec();
        let sct = self.sct(&tbs, not_before, issuer_key);
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(
                OID_SCT_LIST,
                der_tlv(0x04, &sct),
            ));
        let der = params.signed_by(&rc_key, &issuer).unwrap().der().to_vec();
        Leaf { key, der }
    }

    /// A TLS-encoded SignedCertificateTimestampList with one SCT over `tbs` (RFC 6962 §3.2).
    fn sct(&self, tbs: &[u8], at: OffsetDateTime, issuer_key: &RcKeyPair) -> Vec<u8> {
        let timestamp = (at.unix_timestamp() as u64) * 1000;
        let issuer_key_hash = sha256(&rcgen::PublicKeyData::subject_public_key_info(issuer_key));
        let mut signed = vec![0u8, 0u8];
        signed.extend(timestamp.to_be_bytes());
        signed.extend([0u8, 1u8]);
        signed.extend(issuer_key_hash);
        signed.extend(&(tbs.len() as u32).to_be_bytes()[1..]);
        signed.extend(tbs);
        signed.extend([0u8, 0u8]);
        let signature = sign(&self.ct_key, &signed);
        let mut sct = vec![0u8];
        sct.extend(sha256(&spki(&self.ct_key)));
        sct.extend(timestamp.to_be_bytes());
        sct.extend([0u8, 0u8]);
        sct.extend([4u8, 3u8]);
        sct.extend((signature.len() as u16).to_be_bytes());
        sct.extend(signature);
        let mut list = ((sct.len() + 2) as u16).to_be_bytes().to_vec();
        list.extend((sct.len() as u16).to_be_bytes());
        list.extend(sct);
        list
    }

    /// Logs `body` (canonical JSON) now, signing the SET with `log_key`.
    pub fn log_with(&self, log_key: &EcdsaKeyPair, body: Vec<u8>, kind: &'static str) -> LogEntry {
        let integrated_time = OffsetDateTime::now_utc().unix_timestamp();
        let log_index = 1000 + (integrated_time % 997);
        let log_id = sha256(&spki(log_key));
        // Keys in canonical (sorted) order.
        let set_payload = format!(
            r#"{{"body":"{}","integratedTime":{integrated_time},"logID":"{}","logIndex":{log_index}}}"#,
            b64(&body),
            hex::encode(log_id)
        );
        LogEntry {
            set: sign(log_key, set_payload.as_bytes()),
            body,
            integrated_time,
            log_index,
            log_id,
            kind,
        }
    }

    /// Logs `body` as integrated at `integrated_time`, signing the SET with this instance's key.
    pub fn log_at(&self, body: Vec<u8>, kind: &'static str, integrated_time: i64) -> LogEntry {
        let log_index = 1000 + (integrated_time % 997);
        let log_id = sha256(&spki(&self.rekor_key));
        let set_payload = format!(
            r#"{{"body":"{}","integratedTime":{integrated_time},"logID":"{}","logIndex":{log_index}}}"#,
            b64(&body),
            hex::encode(log_id)
        );
        LogEntry {
            set: sign(&self.rekor_key, set_payload.as_bytes()),
            body,
            integrated_time,
            log_index,
            log_id,
            kind,
        }
    }

    /// A legacy keyless `.att` layer (cosign v1/v2, the SLSA generator): a DSSE envelope over
    /// `statement` signed by `leaf`, logged as an `intoto` 0.0.1 entry that names `logged_pem` (the
    /// leaf's certificate, unless a test says otherwise) and integrated at `integrated_time`.
    pub fn keyless_intoto_layer_from(
        &self,
        leaf: &Leaf,
        statement: &[u8],
        logged_pem: &str,
        integrated_time: i64,
    ) -> Blob {
        let signature = sign(&leaf.key, &dsse_pae(statement));
        let envelope = serde_json::json!({"payloadType": IN_TOTO, "payload": b64(statement), "signatures": [{"keyid": "", "sig": b64(&signature)}]}).to_string().into_bytes();
        let body = format!(
            r#"{{"apiVersion":"0.0.1","kind":"intoto","spec":{{"content":{{"hash":{{"algorithm":"sha256","value":"{}"}},"payloadHash":{{"algorithm":"sha256","value":"{}"}}}},"publicKey":"{}"}}}}"#,
            hex::encode(sha256(&envelope)),
            hex::encode(sha256(statement)),
            b64(logged_pem.as_bytes())
        )
        .into_bytes();
        let entry = self.log_at(body, "intoto", integrated_time);
        let mut blob = Blob::new("application/vnd.dsse.envelope.v1+json", envelope);
        blob.annotations
            .push(("dev.sigstore.cosign/certificate".to_owned(), leaf.pem()));
        blob.annotations.push((
            "dev.sigstore.cosign/chain".to_owned(),
            pem::encode(&pem::Pem::new("CERTIFICATE", self.ca_der.clone())),
        ));
        blob.annotations
            .push(("dev.sigstore.cosign/bundle".to_owned(), entry.annotation()));
        blob
    }

    /// The same, everything issued and logged now.
    pub fn keyless_intoto_layer(&self, identity: &Identity, statement: &[u8]) -> Blob {
        let leaf = self.issue(identity);
        let now = OffsetDateTime::now_utc().unix_timestamp();
        self.keyless_intoto_layer_from(&leaf, statement, &leaf.pem(), now)
    }

    pub fn log(&self, body: Vec<u8>, kind: &'static str) -> LogEntry {
        self.log_with(&self.rekor_key, body, kind)
    }

    /// The canonical hashedrekord 0.0.1 body for a signature over `payload`.
    pub fn hashedrekord_body(payload: &[u8], signature: &[u8], cert_pem: &str) -> Vec<u8> {
        format!(
            r#"{{"apiVersion":"0.0.1","kind":"hashedrekord","spec":{{"data":{{"hash":{{"algorithm":"sha256","value":"{}"}}}},"signature":{{"content":"{}","publicKey":{{"content":"{}"}}}}}}}}"#,
            hex::encode(sha256(payload)),
            b64(signature),
            b64(cert_pem.as_bytes())
        )
        .into_bytes()
    }

    /// A legacy cosign keyless signature layer over `payload`: signature, certificate, chain and
    /// Rekor bundle annotations, everything issued and logged now.
    pub fn legacy_layer(&self, identity: &Identity, payload: Vec<u8>) -> Blob {
        let leaf = self.issue(identity);
        let signature = sign(&leaf.key, &payload);
        let entry = self.log(
            Self::hashedrekord_body(&payload, &signature, &leaf.pem()),
            "hashedrekord",
        );
        self.legacy_layer_from(&leaf, payload, &signature, Some(&entry))
    }

    /// A legacy layer from its parts (tests corrupt one at a time).
    pub fn legacy_layer_from(
        &self,
        leaf: &Leaf,
        payload: Vec<u8>,
        signature: &[u8],
        entry: Option<&LogEntry>,
    ) -> Blob {
        let mut blob = Blob::new(SIMPLE_SIGNING, payload);
        blob.annotations
            .push((SIGNATURE_ANNOTATION.to_owned(), b64(signature)));
        blob.annotations
            .push(("dev.sigstore.cosign/certificate".to_owned(), leaf.pem()));
        blob.annotations.push((
            "dev.sigstore.cosign/chain".to_owned(),
            pem::encode(&pem::Pem::new("CERTIFICATE", self.ca_der.clone())),
        ));
        if let Some(e) = entry {
            let bundle = serde_json::json!({
                "SignedEntryTimestamp": b64(&e.set),
                "Payload": {"body": b64(&e.body), "integratedTime": e.integrated_time, "logIndex": e.log_index, "logID": hex::encode(e.log_id)},
            });
            blob.annotations
                .push(("dev.sigstore.cosign/bundle".to_owned(), bundle.to_string()));
        }
        blob
    }

    /// A v0.1 Sigstore bundle holding a DSSE envelope over `statement`, signed by a certificate for
    /// `identity` and logged as a `dsse` 0.0.1 entry with a SET.
    pub fn dsse_bundle(&self, identity: &Identity, statement: &[u8]) -> String {
        let leaf = self.issue(identity);
        let signature = sign(&leaf.key, &dsse_pae(statement));
        let material = serde_json::json!({"x509CertificateChain": {"certificates": [{"rawBytes": b64(&leaf.der)}]}});
        self.logged_dsse_bundle(statement, &signature, &leaf.pem(), material)
    }

    /// A v0.1 bundle with a DSSE envelope over `statement` signed by `key` (identified by a
    /// public-key hint), logged as a `dsse` entry in this instance's log: cosign v3 `--key`.
    pub fn keyed_dsse_bundle(&self, key: &super::cosign::SigningKey, statement: &[u8]) -> String {
        let signature = key.sign(&dsse_pae(statement));
        self.logged_dsse_bundle(
            statement,
            &signature,
            &key.public_pem(),
            serde_json::json!({"publicKey": {"hint": "release"}}),
        )
    }

    /// A v0.3 bundle with a DSSE envelope over `statement` signed by `key`, logged nowhere and
    /// timestamped by nobody: cosign v3 `--key --tlog-upload=false`.
    pub fn unlogged_keyed_dsse_bundle(key: &super::cosign::SigningKey, statement: &[u8]) -> String {
        let signature = key.sign(&dsse_pae(statement));
        serde_json::json!({
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {"publicKey": {"hint": "release"}},
            "dsseEnvelope": {"payload": b64(statement), "payloadType": IN_TOTO, "signatures": [{"sig": b64(&signature)}]},
        })
        .to_string()
    }

    /// A keyed legacy `.sig` layer over `payload` logged as cosign does: a `hashedrekord` entry
    /// naming the key, its SET in the `dev.sigstore.cosign/bundle` annotation.
    pub fn keyed_legacy_layer(&self, key: &super::cosign::SigningKey, payload: Vec<u8>) -> Blob {
        let signature = key.sign(&payload);
        let entry = self.log(
            Self::hashedrekord_body(&payload, &signature, &key.public_pem()),
            "hashedrekord",
        );
        let mut blob = Blob::new(SIMPLE_SIGNING, payload);
        blob.annotations
            .push((SIGNATURE_ANNOTATION.to_owned(), b64(&signature)));
        blob.annotations
            .push(("dev.sigstore.cosign/bundle".to_owned(), entry.annotation()));
        blob
    }

    /// A keyed `.att` layer over `statement` logged as cosign v2 does: an `intoto` 0.0.1 entry with
    /// the envelope's hash, the payload's hash and the key.
    pub fn keyed_intoto_layer(&self, key: &super::cosign::SigningKey, statement: &[u8]) -> Blob {
        let signature = key.sign(&dsse_pae(statement));
        let envelope = serde_json::json!({"payloadType": IN_TOTO, "payload": b64(statement), "signatures": [{"keyid": "", "sig": b64(&signature)}]}).to_string().into_bytes();
        let body = format!(
            r#"{{"apiVersion":"0.0.1","kind":"intoto","spec":{{"content":{{"hash":{{"algorithm":"sha256","value":"{}"}},"payloadHash":{{"algorithm":"sha256","value":"{}"}}}},"publicKey":"{}"}}}}"#,
            hex::encode(sha256(&envelope)),
            hex::encode(sha256(statement)),
            b64(key.public_pem().as_bytes())
        )
        .into_bytes();
        let entry = self.log(body, "intoto");
        let mut blob = Blob::new("application/vnd.dsse.envelope.v1+json", envelope);
        blob.annotations
            .push(("dev.sigstore.cosign/bundle".to_owned(), entry.annotation()));
        blob
    }

    /// Logs a DSSE signature (its verifier a PEM certificate or key) and wraps it in a bundle whose
    /// verification material starts as `material`.
    fn logged_dsse_bundle(
        &self,
        statement: &[u8],
        signature: &[u8],
        verifier_pem: &str,
        mut material: serde_json::Value,
    ) -> String {
        let envelope = serde_json::json!({"payload": b64(statement), "payloadType": IN_TOTO, "signatures": [{"sig": b64(signature)}]});
        let body = format!(
            r#"{{"apiVersion":"0.0.1","kind":"dsse","spec":{{"envelopeHash":{{"algorithm":"sha256","value":"{}"}},"payloadHash":{{"algorithm":"sha256","value":"{}"}},"signatures":[{{"signature":"{}","verifier":"{}"}}]}}}}"#,
            hex::encode(sha256(envelope.to_string().as_bytes())),
            hex::encode(sha256(statement)),
            b64(signature),
            b64(verifier_pem.as_bytes())
        )
        .into_bytes();
        let entry = self.log(body, "dsse");
        material["tlogEntries"] = serde_json::json!([{
            "logIndex": entry.log_index.to_string(),
            "logId": {"keyId": b64(&entry.log_id)},
            "kindVersion": {"kind": "dsse", "version": "0.0.1"},
            "integratedTime": entry.integrated_time.to_string(),
            "inclusionPromise": {"signedEntryTimestamp": b64(&entry.set)},
            "canonicalizedBody": b64(&entry.body),
        }]);
        serde_json::json!({
            "mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.1",
            "verificationMaterial": material,
            "dsseEnvelope": envelope,
        })
        .to_string()
    }
}

const IN_TOTO: &str = "application/vnd.in-toto+json";

fn dsse_pae(statement: &[u8]) -> Vec<u8> {
    [
        format!("DSSEv1 {} {IN_TOTO} {} ", IN_TOTO.len(), statement.len()).into_bytes(),
        statement.to_vec(),
    ]
    .concat()
}

/// The cosign v3 image-signature statement for `digest`.
pub fn cosign_sign_statement(image: &str, digest: &str) -> Vec<u8> {
    serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": image, "digest": {"sha256": digest.trim_start_matches("sha256:")}}],
        "predicateType": "https://sigstore.dev/cosign/sign/v1",
        "predicate": {},
    })
    .to_string()
    .into_bytes()
}
