//! A throwaway PKI for TLS tests: a CA, a server certificate for 127.0.0.1, and client certificates.

#![allow(dead_code)]

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

pub struct Pki {
    ca_key: KeyPair,
    ca_params: CertificateParams,
    pub ca_pem: String,
}

/// A certificate and its key, PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Issued {
    /// Certificate then key, as reqwest's `Identity::from_pem` wants them.
    pub fn identity_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }

    /// Writes cert.pem and key.pem into `dir`; returns their paths.
    pub fn write(
        &self,
        dir: &std::path::Path,
        name: &str,
    ) -> (std::path::PathBuf, std::path::PathBuf) {
        let (c, k) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, &self.cert_pem).unwrap();
        std::fs::write(&k, &self.key_pem).unwrap();
        (c, k)
    }
}

impl Pki {
    pub fn new(name: &str) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name.push(DnType::CommonName, name);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
        Self {
            ca_key,
            ca_params,
            ca_pem,
        }
    }

    fn issue(&self, sans: Vec<SanType>, cn: &str, eku: ExtendedKeyUsagePurpose) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![eku];
        let issuer = Issuer::new(self.ca_params.clone(), &self.ca_key);
        Issued {
            cert_pem: params.signed_by(&key, &issuer).unwrap().pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A server certificate for 127.0.0.1 that expired in 2021 (signed by this CA, key matching).
    pub fn server_expired(&self) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
        params
            .distinguished_name
            .push(DnType::CommonName, "umpire expired");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let issuer = Issuer::new(self.ca_params.clone(), &self.ca_key);
        Issued {
            cert_pem: params.signed_by(&key, &issuer).unwrap().pem(),
            key_pem: key.serialize_pem(),
        }
    }

    pub fn server(&self) -> Issued {
        self.issue(
            vec![
                SanType::IpAddress("127.0.0.1".parse().unwrap()),
                SanType::DnsName("localhost".try_into().unwrap()),
            ],
            "umpire",
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    pub fn client(&self, identity: &str) -> Issued {
        self.issue(
            vec![SanType::DnsName(identity.try_into().unwrap())],
            identity,
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }

    /// A client certificate whose subjectAltName extension is exactly `san_der` (the DER of its
    /// GeneralNames, readable or not).
    pub fn client_raw_san(&self, cn: &str, san_der: Vec<u8>) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                &[2, 5, 29, 17],
                san_der,
            ));
        let issuer = Issuer::new(self.ca_params.clone(), &self.ca_key);
        Issued {
            cert_pem: params.signed_by(&key, &issuer).unwrap().pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A client certificate with one URI SAN.
    pub fn client_uri(&self, cn: &str, uri: &str) -> Issued {
        self.issue(
            vec![SanType::URI(uri.try_into().unwrap())],
            cn,
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }

    /// A client certificate whose CN is `cn` and whose SANs are the given DNS names and emails.
    pub fn client_named(&self, cn: &str, dns: &[&str], emails: &[&str]) -> Issued {
        let mut sans: Vec<SanType> = dns
            .iter()
            .map(|d| SanType::DnsName((*d).try_into().unwrap()))
            .collect();
        sans.extend(
            emails
                .iter()
                .map(|e| SanType::Rfc822Name((*e).try_into().unwrap())),
        );
        self.issue(sans, cn, ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// A webhook listener for a test: a CA, a server certificate written to a temp folder, a free
/// port, the `webhook:` YAML that uses them, and an HTTPS client that trusts the CA.
pub struct TestWebhook {
    pub pki: Pki,
    pub port: u16,
    /// `webhook:` section (top level), ending in a newline.
    pub yaml: String,
    /// The serving certificate and key files (rotations write over them).
    pub cert_path: std::path::PathBuf,
    pub key_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl TestWebhook {
    pub fn new() -> Self {
        let pki = Pki::new("webhook test CA");
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pki.server().write(dir.path(), "server");
        let port = super::registry::free_port();
        let yaml = format!(
            "webhook:\n  listen: 127.0.0.1:{port}\n  tls_cert: {}\n  tls_key: {}\n",
            cert.display(),
            key.display()
        );
        Self {
            pki,
            port,
            yaml,
            cert_path: cert,
            key_path: key,
            _dir: dir,
        }
    }

    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(self.pki.ca_pem.as_bytes()).unwrap()])
            .build()
            .unwrap()
    }

    /// The JSON answer to `body` POSTed on `path` (an AdmissionReview, a provider request).
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> serde_json::Value {
        let r = self
            .client()
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }
}
