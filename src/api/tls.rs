//! TLS for umpire's listeners (gRPC API, webhooks): certificate and key read from files and read
//! again when they change (cert-manager rotates them in place), optional client certificates
//! checked against a CA (mTLS), and an optional allow-list of client identities.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;

pub use crate::config::TlsSettings;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// How often a handshake may look at the files' modification times.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// Serves the certificate from disk, reloading it when either file changes.
#[derive(Debug)]
struct Reloading {
    cert: PathBuf,
    key: PathBuf,
    state: Mutex<(Arc<CertifiedKey>, Option<SystemTime>, Instant)>,
    /// `umpire_certificate_expiry_timestamp_seconds` of this listener, kept current.
    expiry: Option<prometheus_client::metrics::gauge::Gauge>,
}

/// When the leaf of `key` expires, in Unix seconds.
fn not_after(key: &CertifiedKey) -> Option<i64> {
    let leaf = key.end_entity_cert().ok()?;
    let (_, cert) = X509Certificate::from_der(leaf.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp())
}

fn modified(paths: [&PathBuf; 2]) -> Option<SystemTime> {
    paths
        .iter()
        .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .max()
}

fn load_certified_key(cert: &PathBuf, key: &PathBuf) -> anyhow::Result<Arc<CertifiedKey>> {
    let certs = read_certs(cert)?;
    let key_pem =
        std::fs::read(key).with_context(|| format!("reading TLS key {}", key.display()))?;
    let block =
        pem::parse(&key_pem).with_context(|| format!("TLS key {} is not PEM", key.display()))?;
    let key_der = match block.tag() {
        "PRIVATE KEY" => PrivateKeyDer::Pkcs8(block.contents().to_vec().into()),
        "EC PRIVATE KEY" => PrivateKeyDer::Sec1(block.contents().to_vec().into()),
        "RSA PRIVATE KEY" => PrivateKeyDer::Pkcs1(block.contents().to_vec().into()),
        other => anyhow::bail!(
            "TLS key {} is a {other:?} PEM block, not a private key",
            key.display()
        ),
    };
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .with_context(|| format!("TLS key {}", key.display()))?;
    let certified = CertifiedKey::new(certs, signing);
    // A key for another certificate would fail every handshake; refuse it when it is loaded
    // (and keep the previous pair on a rotation that mixes them up).
    certified.keys_match().with_context(|| {
        format!(
            "TLS key {} is not the key of certificate {}",
            key.display(),
            cert.display()
        )
    })?;
    Ok(Arc::new(certified))
}

/// The leaf of `key` is valid at this moment (a rotation to an expired or not-yet-valid
/// certificate would fail every handshake).
fn valid_now(key: &CertifiedKey) -> anyhow::Result<()> {
    let leaf = key
        .end_entity_cert()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let (_, cert) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|e| anyhow::anyhow!("unreadable certificate: {e}"))?;
    let now = x509_parser::time::ASN1Time::now();
    let validity = cert.validity();
    anyhow::ensure!(
        validity.not_before <= now && now <= validity.not_after,
        "the new certificate ({}) is valid from {} to {}, not now",
        cert.subject(),
        validity.not_before,
        validity.not_after
    );
    Ok(())
}

fn read_certs(path: &PathBuf) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let text =
        std::fs::read(path).with_context(|| format!("reading certificates {}", path.display()))?;
    let certs: Vec<CertificateDer<'static>> = pem::parse_many(&text)
        .with_context(|| format!("{} is not PEM", path.display()))?
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| CertificateDer::from(b.contents().to_vec()))
        .collect();
    anyhow::ensure!(!certs.is_empty(), "{} holds no certificate", path.display());
    Ok(certs)
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.2.elapsed() >= RELOAD_CHECK {
            state.2 = Instant::now();
            let now = modified([&self.cert, &self.key]);
            if now != state.1 {
                match load_certified_key(&self.cert, &self.key).and_then(|k| {
                    valid_now(&k)?;
                    Ok(k)
                }) {
                    Ok(k) => {
                        tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                        if let (Some(g), Some(t)) = (&self.expiry, not_after(&k)) {
                            g.set(t);
                        }
                        state.0 = k;
                        state.1 = now;
                    }
                    // Half-written files during a rotation, or a pair that is expired or not
                    // yet valid: keep serving the old pair.
                    Err(e) => tracing::warn!(
                        "TLS certificate not reloaded, keeping the current one: {e:#}"
                    ),
                }
            }
        }
        Some(Arc::clone(&state.0))
    }
}

/// A rustls server configuration for `settings`, offering `alpn` protocols.
pub fn server_config(
    settings: &TlsSettings,
    alpn: &[&[u8]],
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    server_config_reporting(settings, alpn, None)
}

/// As [`server_config`], keeping `expiry` at the serving certificate's expiry (Unix seconds).
pub fn server_config_reporting(
    settings: &TlsSettings,
    alpn: &[&[u8]],
    expiry: Option<prometheus_client::metrics::gauge::Gauge>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let key = load_certified_key(&settings.cert, &settings.key)?;
    if let (Some(g), Some(t)) = (&expiry, not_after(&key)) {
        g.set(t);
    }
    let resolver = Arc::new(Reloading {
        expiry,
        cert: settings.cert.clone(),
        key: settings.key.clone(),
        state: Mutex::new((
            key,
            modified([&settings.cert, &settings.key]),
            Instant::now(),
        )),
    });
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &settings.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs(ca)? {
                roots
                    .add(c)
                    .with_context(|| format!("client CA {}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .context("client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// One name a client certificate gives itself, with its kind: an allow-list entry with `://`
/// matches URI SANs only, any other entry DNS SANs (or the CN of a certificate with no SAN
/// extension at all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Dns(String),
    Uri(String),
    /// The subject CN, only in a certificate with no SAN extension.
    CommonName(String),
}

impl Identity {
    fn matches(&self, allowed: &str) -> bool {
        match self {
            Identity::Uri(u) => allowed.contains("://") && u == allowed,
            Identity::Dns(n) | Identity::CommonName(n) => !allowed.contains("://") && n == allowed,
        }
    }
}

/// The identities a client certificate names: its readable DNS and URI SANs; its subject CN only
/// when it has no SAN extension. A SAN extension that is present names nobody but what it
/// readably lists (empty, or unreadable, it names nobody: the CN does not stand in).
pub fn identities(cert: &[u8]) -> Vec<Identity> {
    let Ok((_, cert)) = X509Certificate::from_der(cert) else {
        return Vec::new();
    };
    let san_present = cert
        .extensions()
        .iter()
        .any(|e| e.oid == x509_parser::oid_registry::OID_X509_EXT_SUBJECT_ALT_NAME);
    let mut out = Vec::new();
    if san_present {
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(u) => out.push(Identity::Uri((*u).to_owned())),
                    GeneralName::DNSName(d) => out.push(Identity::Dns((*d).to_owned())),
                    _ => {}
                }
            }
        }
        return out;
    }
    for cn in cert.subject().iter_common_name() {
        if let Ok(s) = cn.as_str() {
            out.push(Identity::CommonName(s.to_owned()));
        }
    }
    out
}

/// True when the allow-list is empty or the client's leaf certificate names an allowed identity.
pub fn client_allowed(allowed: &[String], peer_certs: Option<&[CertificateDer<'_>]>) -> bool {
    if allowed.is_empty() {
        return true;
    }
    peer_certs.and_then(|c| c.first()).is_some_and(|leaf| {
        identities(leaf)
            .iter()
            .any(|id| allowed.iter().any(|a| id.matches(a)))
    })
}
