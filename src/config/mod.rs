//! The YAML configuration (contract: "Configuration file"): loading, validation and the built-in
//! default. Unknown keys and bad values are load-time errors that name the key. Relative paths are
//! resolved against the config file's folder.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::cache::{CacheSettings, MAX_RETRY_TTL, RedisSettings};
use crate::checks::provenance::{BaseImages, ProvenanceCheck, normalise_repository};
use crate::checks::sbom::SbomCheck;
use crate::checks::vulns::{Severity, VulnCheck};
use crate::checks::{self, Checks, Wildcard};
pub use crate::evidence::registry::RegistrySettings;
use crate::glob::Glob;
pub use crate::limits::Limits;
use crate::policy::{
    ArtifactRequirement, AttestationRequirement, Authority, KeylessAuthority, Mode,
    NotationAuthority, Policy, SignatureRequirement, StaticAction,
};
use crate::rego::RegoPolicy;
use crate::trust::tuf::TufSettings;
use crate::verify::identity::{Claim, Matcher};
use crate::verify::keys::PublicKey;
use crate::verify::sigstore::SigstoreRoot;

/// The built-in default: deny everything, except the bundled demo layouts under `examples/`, which
/// must carry a signature by the demo key. `umpire verify` and `umpire serve` use it without `--config`.
mod attestations;
mod authorities;
mod listeners;
mod policies;
mod queries;
mod raw;
mod sections;

use raw::*;

pub const BUILTIN_DEFAULT: &str = include_str!("../../examples/default-config.yaml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // The cause is part of the message, not a `source`: printed with its chain, it would repeat.
    #[error("cannot read config {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("config {origin}: at `{key}`: {message}")]
    Invalid {
        origin: String,
        key: String,
        message: String,
    },
}

/// TLS settings of one listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, clients must present a certificate issued by this CA.
    pub client_ca: Option<PathBuf>,
    /// When non-empty, a client certificate must name one of these (URI, DNS or email SAN, or CN).
    pub allowed_clients: Vec<String>,
}

/// The HTTPS listener for Kubernetes admission and Gatekeeper (`webhook:`).
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub listen: SocketAddr,
    pub tls: TlsSettings,
    /// Namespaces whose objects are admitted without verification.
    pub exempt_namespaces: Vec<String>,
    /// Images (globs over `host/repository`) admitted without verification.
    pub exempt_images: Vec<Glob>,
    /// Allow, but report denials as warnings (and metrics).
    pub audit: bool,
    /// Verify against this policy only (default: every matching policy).
    pub policy: Option<String>,
    /// The webhooks' `timeoutSeconds` (a hint for `config check`).
    pub timeout: Option<Duration>,
}

/// Envoy external authorization for registry gates (`ext_authz_listen`, `ext_authz:`).
#[derive(Debug, Clone)]
pub struct ExtAuthzSettings {
    pub listen: SocketAddr,
    /// The registry the gate judges (`host[:port]`), required: a request's Host never chooses it.
    pub upstream: String,
    /// Requests that are not manifest pulls pass (true) or are denied (false).
    pub pass_through: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    #[default]
    Deny,
    Allow,
}

/// `kubernetes:` in the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubernetesSettings {
    /// Admission verifies with the workload's pull secrets.
    pub pull_secrets: bool,
    /// The in-cluster service account folder (token, ca.crt, namespace).
    pub service_account_dir: Option<PathBuf>,
}

/// `registries[].credentials`, by canonical registry host.
#[derive(Debug, Clone, Default)]
pub struct RegistryCredentials {
    /// Kubernetes secrets: (namespace, name), read when the registry challenges.
    pub secrets: HashMap<String, (String, String)>,
    /// Read from Docker config files when the configuration loaded.
    pub files: HashMap<String, crate::evidence::auth::Credential>,
}

impl RegistryCredentials {
    /// The Docker config's credentials with those of configured files in their place.
    pub fn over(
        &self,
        docker: crate::evidence::auth::Credentials,
    ) -> crate::evidence::auth::Credentials {
        (self.files.iter()).fold(docker, |all, (host, c)| all.with(host, c.clone()))
    }
}

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub metrics_listen: Option<SocketAddr>,
    /// TLS for the gRPC API (`tls:`); plaintext otherwise (only on loopback unless `insecure_plaintext`).
    pub grpc_tls: Option<TlsSettings>,
    pub webhook: Option<WebhookSettings>,
    pub ext_authz: Option<ExtAuthzSettings>,
    pub registries: HashMap<String, RegistrySettings>,
    /// `registries[].credentials`: umpire's own credentials per registry host.
    pub registry_credentials: RegistryCredentials,
    /// `kubernetes:`: the workload's pull secrets for admission, and where the API is.
    pub kubernetes: KubernetesSettings,
    pub keys: BTreeMap<String, Arc<PublicKey>>,
    /// Sigstore trusted roots by name (`trust.sigstore`).
    pub sigstore: BTreeMap<String, Arc<SigstoreRoot>>,
    /// The roots configured `tuf` (refreshed over TUF by `umpire serve`), and how.
    pub tuf_roots: Vec<String>,
    pub tuf: TufSettings,
    pub policies: Vec<Policy>,
    pub default: DefaultAction,
    pub limits: Limits,
    pub cache: CacheSettings,
    /// Hash of all trust material and limits: part of every verdict cache key, so that nothing
    /// verified under old trust is served under new trust.
    pub trust_fingerprint: [u8; 32],
    /// Where it was loaded from (`None` for the built-in default).
    pub source: Option<PathBuf>,
    /// Every file it names (keys, trusted roots, Rego, certificates), for reloads.
    pub files: Vec<PathBuf>,
    /// Things that load but deserve a look (`umpire config check` prints them).
    pub warnings: Vec<String>,
    /// `log_format: json`: one JSON object per log line (read at start).
    pub log_json: bool,
    /// gRPC callers may name local OCI layouts (`oci:PATH`); off, so that no caller can probe
    /// the server's file system (the CLI always may).
    pub allow_local_layouts: bool,
    /// The root with no authorities keyed bundles without a log entry verify under (from
    /// `trust::load`, as every root).
    pub offline_root: Arc<SigstoreRoot>,
}

// ---- the file's shape -------------------------------------------------------------------------

impl Config {
    /// Loads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut config = Self::from_yaml(&text, &base, &path.display().to_string())?;
        config.source = Some(path.to_owned());
        Ok(config)
    }

    /// The built-in default configuration (paths relative to the current directory).
    pub fn builtin() -> Result<Self, ConfigError> {
        Self::from_yaml(BUILTIN_DEFAULT, Path::new("."), "built-in default")
    }

    /// Parses and validates YAML; `base` resolves relative paths, `origin` names it in errors.
    pub fn from_yaml(text: &str, base: &Path, origin: &str) -> Result<Self, ConfigError> {
        Self::from_yaml_checked(text, base, origin, false)
    }

    /// As [`Config::load`], for `config check --offline`: what exists only at run time (TLS
    /// files, the cache key, Redis's password) is not read.
    pub fn load_offline(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut config = Self::from_yaml_checked(&text, &base, &path.display().to_string(), true)?;
        config.source = Some(path.to_owned());
        Ok(config)
    }

    fn from_yaml_checked(
        text: &str,
        base: &Path,
        origin: &str,
        offline: bool,
    ) -> Result<Self, ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            origin: origin.to_owned(),
            key: key.to_owned(),
            message,
        };
        // A key written with no value (`threshold:` caught half-typed, or a value left out) would
        // read as "absent" and take its default: refuse it, naming the key.
        if let Ok(tree) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text)
            && let Some(key) = first_empty_value(&tree, "")
        {
            return Err(invalid(
                &key,
                "has an empty value; give it a value or remove the key (to take its default)"
                    .into(),
            ));
        }
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let message = e.into_inner().to_string();
            // serde_yaml_ng prefixes its own path; the key is already named.
            let message = message
                .strip_prefix(&format!("{key}: "))
                .unwrap_or(&message)
                .to_owned();
            invalid(if key == "." { "(top level)" } else { &key }, message)
        })?;
        Validator {
            base,
            offline,
            invalid: &invalid,
            files: Default::default(),
            warnings: Default::default(),
            notation_store: Default::default(),
        }
        .config(raw)
    }
}

struct Validator<'a, F: Fn(&str, String) -> ConfigError> {
    base: &'a Path,
    /// Checking where umpire does not run: files and secrets that exist only at run time (TLS
    /// files, the cache key, Redis's password) are not read.
    offline: bool,
    invalid: &'a F,
    /// Every file the configuration names, for reloading when one changes.
    files: std::cell::RefCell<Vec<PathBuf>>,
    /// What loads but deserves a look (globs that can never match...).
    warnings: std::cell::RefCell<Vec<String>>,
    /// `trust.notation.store`, resolved, once read.
    notation_store: std::cell::RefCell<Option<PathBuf>>,
}

impl<F: Fn(&str, String) -> ConfigError> Validator<'_, F> {
    /// `path` under the config's folder, remembered as a file the configuration depends on.
    fn named(&self, path: impl AsRef<Path>) -> PathBuf {
        let full = self.base.join(path);
        self.files.borrow_mut().push(full.clone());
        full
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let bad = self.invalid;
        let listen = self.addr("listen", raw.listen.as_deref().unwrap_or("127.0.0.1:50051"))?;
        let metrics_listen = raw
            .metrics_listen
            .as_deref()
            .map(|a| self.addr("metrics_listen", a))
            .transpose()?;
        // What every verdict depends on, for the cache keys.
        let mut trust_bytes: Vec<(String, Vec<u8>)> = Vec::new();
        let tuf = self.tuf(raw.trust.tuf)?;
        // Keys and Sigstore roots enter through trust::load alone, which also records every byte
        // of them for the cache keys.
        let trust = crate::trust::load(&raw.trust.keys, &raw.trust.sigstore, &tuf, |v| {
            self.named(v)
        })
        .map_err(|e| bad(&e.key, e.message))?;
        trust_bytes.extend(trust.material.iter().cloned());
        if let Some(n) = &raw.trust.notation {
            let root = self.base.join(&n.store);
            if !root.join("x509").is_dir() {
                return Err(bad(
                    "trust.notation.store",
                    format!(
                        "{} holds no x509/ folder (Notation's layout: x509/{{ca,signingAuthority,tsa}}/<name>/)",
                        root.display()
                    ),
                ));
            }
            *self.notation_store.borrow_mut() = Some(root);
        }
        let crate::trust::TrustSet {
            keys,
            sigstore,
            tuf_roots,
            offline: offline_root,
            ..
        } = trust;

        let (registries, registry_credentials) = self.registries(raw.registries)?;
        let kubernetes = KubernetesSettings {
            pull_secrets: raw.kubernetes.pull_secrets,
            service_account_dir: (raw.kubernetes.service_account_dir.as_ref())
                .map(|d| self.named(d)),
        };

        let mut policies: Vec<Policy> = Vec::new();
        for (i, p) in raw.policies.into_iter().enumerate() {
            let policy = self.policy(i, p, &policies, &keys, &sigstore)?;
            policies.push(policy);
        }

        let limits = self.limits(raw.limits)?;

        let log_json = match raw.log_format.as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => {
                return Err(bad(
                    "log_format",
                    format!("expected text or json, found {other:?}"),
                ));
            }
        };
        let cache = self.cache(raw.cache)?;
        let grpc_tls = raw
            .tls
            .map(|t| self.tls("tls", t.cert, t.key, t.client_ca, t.allowed_clients))
            .transpose()?;
        if grpc_tls.is_none() && !listen.ip().is_loopback() && !raw.insecure_plaintext {
            return Err(bad(
                "listen",
                format!(
                    "{listen} is not a loopback address: configure `tls:` (or set insecure_plaintext: true to serve plaintext anyway)"
                ),
            ));
        }
        if raw.insecure_plaintext {
            tracing::warn!("insecure_plaintext: the gRPC API is served without TLS on {listen}");
        }
        let webhook = self.webhook(raw.webhook, &policies)?;
        let ext_authz = self.ext_authz(raw.ext_authz_listen, raw.ext_authz)?;
        let trust_fingerprint = {
            use sha2::Digest as _;
            let mut h = sha2::Sha256::new();
            for (name, bytes) in &trust_bytes {
                h.update(name.as_bytes());
                h.update(b"\0");
                h.update(bytes);
                h.update(b"\0");
            }
            h.update(format!("{limits:?}").as_bytes());
            h.finalize().into()
        };

        let mut config = Config {
            listen,
            metrics_listen,
            grpc_tls,
            webhook,
            ext_authz,
            registries,
            registry_credentials,
            kubernetes,
            keys,
            sigstore,
            tuf_roots,
            tuf,
            policies,
            default: raw.default,
            limits,
            cache,
            trust_fingerprint,
            source: None,
            files: self.files.borrow().clone(),
            warnings: self.warnings.borrow().clone(),
            log_json,
            allow_local_layouts: raw.allow_local_layouts,
            offline_root,
        };
        let namespaced = config.namespace_warnings();
        config.warnings.extend(namespaced);
        // The API server gives up at the webhooks' timeout: umpire must answer before, with margin,
        // or users see "context deadline exceeded" instead of umpire's finding.
        if let Some(timeout) = config.webhook.as_ref().and_then(|w| w.timeout)
            && config.limits.deadline + Duration::from_secs(2) > timeout
        {
            config.warnings.push(format!(
                "limits.deadline ({:?}) is not below webhook.timeout ({timeout:?}) with 2 s of margin: the API server gives up first and users see \"context deadline exceeded\" instead of umpire's finding; lower limits.deadline",
                config.limits.deadline
            ));
        }
        Ok(config)
    }
}

/// The path of the first mapping key whose value is empty (YAML null), if any.
fn first_empty_value(value: &serde_yaml_ng::Value, at: &str) -> Option<String> {
    use serde_yaml_ng::Value;
    match value {
        Value::Mapping(m) => m.iter().find_map(|(k, v)| {
            let name = match k {
                Value::String(s) => s.clone(),
                other => serde_yaml_ng::to_string(other)
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
            };
            let path = if at.is_empty() {
                name
            } else {
                format!("{at}.{name}")
            };
            match v {
                Value::Null => Some(path),
                _ => first_empty_value(v, &path),
            }
        }),
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| first_empty_value(v, &format!("{at}[{i}]"))),
        Value::Tagged(t) => first_empty_value(&t.value, at),
        _ => None,
    }
}

/// `500ms`, `30s`, `5m`, `1h`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    // jiff's friendly format ("500ms", "5m", "1h30m", "90d"); a bare number is no duration, and
    // weeks or longer are calendar units a bound should not be written in.
    if s.trim().chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let span: jiff::Span = s.trim().parse().ok()?;
    if span.is_negative()
        || span.get_weeks() != 0
        || span.get_months() != 0
        || span.get_years() != 0
    {
        return None;
    }
    let d = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .ok()?;
    Duration::try_from(d).ok()
}

#[cfg(test)]
mod tests;
