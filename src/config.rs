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
    AttestationRequirement, Authority, KeylessAuthority, Mode, Policy, SignatureRequirement,
    StaticAction,
};
use crate::rego::RegoPolicy;
use crate::trust::tuf::TufSettings;
use crate::verify::identity::{Claim, Matcher};
use crate::verify::keys::PublicKey;
use crate::verify::sigstore::SigstoreRoot;

/// The built-in default: deny everything, except the bundled demo layouts under `examples/`, which
/// must carry a signature by the demo key. `umpire verify` and `umpire serve` use it without `--config`.
pub const BUILTIN_DEFAULT: &str = include_str!("../examples/default-config.yaml");

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
}

// ---- the file's shape -------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    listen: Option<String>,
    #[serde(default)]
    log_format: Option<String>,
    #[serde(default)]
    registries: Vec<RawRegistry>,
    #[serde(default)]
    trust: RawTrust,
    #[serde(default)]
    policies: Vec<RawPolicy>,
    #[serde(default)]
    default: DefaultAction,
    #[serde(default)]
    metrics_listen: Option<String>,
    #[serde(default)]
    limits: RawLimits,
    // Contract sections served by later parts of umpire; accepted in shape so that a config written
    // for them is not an error, and refused at validation while this build cannot honour them.
    #[serde(default)]
    webhook: Option<RawWebhook>,
    #[serde(default)]
    ext_authz_listen: Option<String>,
    #[serde(default)]
    ext_authz: Option<RawExtAuthz>,
    #[serde(default)]
    tls: Option<RawTls>,
    #[serde(default)]
    insecure_plaintext: bool,
    #[serde(default)]
    cache: Option<RawCache>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    listen: String,
    tls_cert: String,
    tls_key: String,
    #[serde(default)]
    client_ca: Option<String>,
    #[serde(default)]
    allowed_clients: Vec<String>,
    #[serde(default)]
    exempt_namespaces: Vec<String>,
    #[serde(default)]
    exempt_images: Vec<String>,
    #[serde(default)]
    audit: bool,
    #[serde(default)]
    policy: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExtAuthz {
    #[serde(default)]
    upstream: Option<String>,
    #[serde(default = "yes")]
    pass_through: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: String,
    key: String,
    #[serde(default)]
    client_ca: Option<String>,
    #[serde(default)]
    allowed_clients: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    allowed_ttl: Option<String>,
    denied_ttl: Option<String>,
    retry_ttl: Option<String>,
    tag_ttl: Option<String>,
    max_entries: Option<u64>,
    redis: Option<RawRedis>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedis {
    url: String,
    hmac_key_env: String,
    timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    host: String,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    auth_hosts: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTrust {
    #[serde(default)]
    keys: BTreeMap<String, String>,
    #[serde(default)]
    sigstore: BTreeMap<String, String>,
    #[serde(default)]
    tuf: Option<RawTuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTuf {
    #[serde(default)]
    cache_dir: Option<String>,
    #[serde(default)]
    refresh: Option<String>,
    #[serde(default)]
    mirror: Option<String>,
    #[serde(default)]
    mirror_root: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    name: String,
    images: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    image: Option<RawImageRules>,
    #[serde(default)]
    signatures_repository: Option<String>,
    #[serde(default)]
    signatures: Option<RawSignatures>,
    #[serde(default)]
    attestations: Option<Vec<RawAttestation>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImageRules {
    #[serde(default)]
    non_root: bool,
    #[serde(default)]
    max_age: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAttestation {
    #[serde(rename = "type")]
    predicate_type: String,
    authorities: Vec<RawAuthority>,
    #[serde(default)]
    rego: Option<String>,
    #[serde(default)]
    provenance: Option<RawProvenance>,
    #[serde(default)]
    sbom: Option<RawSbom>,
    #[serde(default)]
    vulnerabilities: Option<RawVulns>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvenance {
    #[serde(default)]
    builder_ids: Vec<String>,
    #[serde(default)]
    build_types: Vec<String>,
    #[serde(default)]
    source_repositories: Vec<String>,
    #[serde(default)]
    source_refs: Vec<String>,
    #[serde(default)]
    base_images: Option<RawBaseImages>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBaseImages {
    #[serde(default)]
    repositories: Vec<String>,
    #[serde(default)]
    digests: Vec<String>,
    /// A provenance that names no image dependency passes only with this.
    #[serde(default)]
    allow_none: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSbom {
    #[serde(default)]
    deny_packages: Vec<String>,
    #[serde(default)]
    deny_licenses: Vec<String>,
    #[serde(default)]
    require_packages: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVulns {
    #[serde(default)]
    max_severity: Option<String>,
    #[serde(default)]
    max_age: Option<String>,
    #[serde(default)]
    deny_cves: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignatures {
    #[serde(default)]
    threshold: Option<u32>,
    authorities: Vec<RawAuthority>,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum RawTransparencyLog {
    Required,
    Optional,
}

/// Exactly one of `key` and `keyless` is set (checked at validation).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthority {
    #[serde(default)]
    key: Option<String>,
    /// With `key`: `required` asks for a log entry under the `trust` root's logs.
    #[serde(default)]
    transparency_log: Option<RawTransparencyLog>,
    /// With `key` and `transparency_log: required`: the `trust.sigstore` root whose log.
    #[serde(default)]
    trust: Option<String>,
    #[serde(default)]
    keyless: Option<RawKeyless>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeyless {
    trust: String,
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    issuer_regex: Option<String>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    subject_regex: Option<String>,
    #[serde(default)]
    repository: Option<String>,
    #[serde(default, rename = "ref")]
    git_ref: Option<String>,
    #[serde(default)]
    trigger: Option<String>,
    #[serde(default)]
    sha: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_manifest_bytes: Option<u64>,
    max_signature_layer_bytes: Option<u64>,
    max_attestation_bytes: Option<u64>,
    max_signatures: Option<usize>,
    deadline: Option<String>,
    connect_timeout: Option<String>,
    max_in_flight: Option<usize>,
    max_evidence_bytes: Option<u64>,
    allow_bypass_cache: Option<bool>,
    max_registry_requests: Option<usize>,
    header_timeout: Option<String>,
    idle_timeout: Option<String>,
    max_connections: Option<usize>,
}

// ---- loading ----------------------------------------------------------------------------------

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
    /// Each policy's scope in canonical form, one line each (for `umpire config check`).
    pub fn scopes(&self) -> Vec<String> {
        self.policies
            .iter()
            .map(|p| {
                let list = |v: Vec<&str>| v.join(", ");
                let mut line = format!(
                    "policy {}: images [{}]",
                    p.name,
                    list(p.images.iter().map(Glob::as_str).collect())
                );
                if !p.exclude.is_empty() {
                    line.push_str(&format!(
                        " exclude [{}]",
                        list(p.exclude.iter().map(Glob::as_str).collect())
                    ));
                }
                if !p.namespaces.is_empty() {
                    line.push_str(&format!(
                        " namespaces [{}]",
                        list(p.namespaces.iter().map(Wildcard::as_str).collect())
                    ));
                }
                line.push_str(match p.mode {
                    crate::policy::Mode::Enforce => " mode enforce",
                    crate::policy::Mode::Warn => " mode warn",
                });
                match p.action {
                    Some(StaticAction::Allow) => line.push_str(" action allow"),
                    Some(StaticAction::Deny) => line.push_str(" action deny"),
                    None => {}
                }
                if let Some(r) = &p.signatures_repository {
                    line.push_str(&format!(" signatures from {}/{}", r.registry, r.repository));
                }
                line
            })
            .collect()
    }

    /// Trust entries no authority uses (a typo in an authority's name shows up here).
    pub fn unused_trust(&self) -> Vec<String> {
        let mut keys_used = std::collections::BTreeSet::new();
        let mut roots_used = std::collections::BTreeSet::new();
        for p in &self.policies {
            let authorities = p
                .signatures
                .iter()
                .flat_map(|s| s.authorities.iter())
                .chain(p.attestations.iter().flat_map(|a| a.authorities.iter()));
            for a in authorities {
                match a {
                    Authority::Key { name, logged_in } => {
                        keys_used.insert(name.as_str());
                        if let Some(root) = logged_in {
                            roots_used.insert(root.as_str());
                        }
                    }
                    Authority::Keyless(k) => {
                        roots_used.insert(k.trust.as_str());
                    }
                }
            }
        }
        let mut out: Vec<String> = self
            .keys
            .keys()
            .filter(|k| !keys_used.contains(k.as_str()))
            .map(|k| format!("trust.keys.{k} is used by no authority"))
            .collect();
        out.extend(
            self.sigstore
                .keys()
                .filter(|k| !roots_used.contains(k.as_str()))
                .map(|k| format!("trust.sigstore.{k} is used by no authority")),
        );
        out
    }

    pub fn builtin() -> Result<Self, ConfigError> {
        Self::from_yaml(BUILTIN_DEFAULT, Path::new("."), "built-in default")
    }

    /// Parses and validates YAML; `base` resolves relative paths, `origin` names it in errors.
    pub fn from_yaml(text: &str, base: &Path, origin: &str) -> Result<Self, ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            origin: origin.to_owned(),
            key: key.to_owned(),
            message,
        };
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
            invalid: &invalid,
            files: Default::default(),
            warnings: Default::default(),
        }
        .config(raw)
    }
}

struct Validator<'a, F: Fn(&str, String) -> ConfigError> {
    base: &'a Path,
    invalid: &'a F,
    /// Every file the configuration names, for reloading when one changes.
    files: std::cell::RefCell<Vec<PathBuf>>,
    /// What loads but deserves a look (globs that can never match...).
    warnings: std::cell::RefCell<Vec<String>>,
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
        let tuf = match raw.trust.tuf {
            None => TufSettings::default(),
            Some(t) => TufSettings {
                cache_dir: t
                    .cache_dir
                    .map_or_else(|| TufSettings::default().cache_dir, |d| self.base.join(d)),
                refresh: self.duration(
                    "trust.tuf.refresh",
                    t.refresh.as_deref(),
                    TufSettings::default().refresh,
                )?,
                mirror: match (t.mirror, t.mirror_root) {
                    (None, None) => None,
                    (Some(url), Some(root)) => Some((url, self.base.join(root))),
                    _ => {
                        return Err(bad(
                            "trust.tuf.mirror",
                            "mirror and mirror_root go together".into(),
                        ));
                    }
                },
            },
        };
        // Keys and Sigstore roots enter through trust::load alone, which also records every byte
        // of them for the cache keys.
        let trust = crate::trust::load(&raw.trust.keys, &raw.trust.sigstore, &tuf, |v| {
            self.named(v)
        })
        .map_err(|e| bad(&e.key, e.message))?;
        trust_bytes.extend(trust.material.iter().cloned());
        let crate::trust::TrustSet {
            keys,
            sigstore,
            tuf_roots,
            ..
        } = trust;

        let mut registries = HashMap::new();
        for (i, r) in raw.registries.into_iter().enumerate() {
            let key = format!("registries[{i}].host");
            if r.host.is_empty() || r.host.contains('/') || r.host.contains("://") {
                return Err(bad(
                    &key,
                    format!("expected host[:port], found {:?}", r.host),
                ));
            }
            let settings = RegistrySettings {
                insecure: r.insecure,
                auth_hosts: r.auth_hosts,
            };
            // The spelling references are canonicalised to, so that LOCALHOST:5000 finds these.
            let host = crate::reference::canonical_host(&r.host);
            if registries.insert(host, settings).is_some() {
                return Err(bad(&key, format!("{:?} is listed twice", r.host)));
            }
        }

        let mut policies: Vec<Policy> = Vec::new();
        for (i, p) in raw.policies.into_iter().enumerate() {
            let at = |k: &str| format!("policies[{i}].{k}");
            if p.name.is_empty() {
                return Err(bad(&at("name"), "must not be empty".into()));
            }
            if policies.iter().any(|q| q.name == p.name) {
                return Err(bad(
                    &at("name"),
                    format!("policy {:?} is defined twice", p.name),
                ));
            }
            if p.images.is_empty() {
                return Err(bad(&at("images"), "needs at least one glob".into()));
            }
            let images = p
                .images
                .iter()
                .enumerate()
                .map(|(j, g)| {
                    Glob::new(g).map_err(|e| bad(&at(&format!("images[{j}]")), e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            for (j, g) in images.iter().enumerate() {
                if let Some(why) = g.never_matches() {
                    let key = at(&format!("images[{j}]"));
                    tracing::warn!(key = %key, "this glob can never match an image: {why}");
                    self.warnings
                        .borrow_mut()
                        .push(format!("{key}: can never match an image: {why}"));
                }
            }
            let exclude = p
                .exclude
                .iter()
                .enumerate()
                .map(|(j, g)| {
                    Glob::new(g).map_err(|e| bad(&at(&format!("exclude[{j}]")), e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let namespaces = p
                .namespaces
                .iter()
                .enumerate()
                .map(|(j, n)| {
                    if n.is_empty() {
                        return Err(bad(
                            &at(&format!("namespaces[{j}]")),
                            "must not be empty".into(),
                        ));
                    }
                    Wildcard::new(n)
                        .map_err(|e| bad(&at(&format!("namespaces[{j}]")), e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mode = match p.mode.as_deref() {
                None | Some("enforce") => Mode::Enforce,
                Some("warn") => Mode::Warn,
                Some(other) => {
                    return Err(bad(
                        &at("mode"),
                        format!("expected enforce or warn, found {other:?}"),
                    ));
                }
            };
            let action = match p.action.as_deref() {
                None => None,
                Some("allow") => Some(StaticAction::Allow),
                Some("deny") => Some(StaticAction::Deny),
                Some(other) => {
                    return Err(bad(
                        &at("action"),
                        format!("expected allow or deny, found {other:?}"),
                    ));
                }
            };
            let image_rules = match p.image {
                None => None,
                Some(r) => {
                    let max_age = match r.max_age.as_deref() {
                        None => None,
                        Some(a) => {
                            Some(self.duration(&at("image.max_age"), Some(a), Duration::ZERO)?)
                        }
                    };
                    let labels = r
                        .labels
                        .into_iter()
                        .map(|(name, pattern)| {
                            crate::verify::identity::Matcher::regex(&pattern)
                                .map(|m| (name.clone(), m))
                                .map_err(|e| {
                                    bad(&at(&format!("image.labels.{name}")), e.to_string())
                                })
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    Some(crate::checks::image::ImageRules {
                        non_root: r.non_root,
                        max_age,
                        labels,
                    })
                }
            };
            let signatures_repository = match p.signatures_repository.as_deref() {
                None => None,
                Some(r) => match crate::reference::ImageRef::parse(r) {
                    Ok(crate::reference::ImageRef::Registry(reg))
                        if !r.contains('@')
                            && !r.rsplit('/').next().unwrap_or("").contains(':') =>
                    {
                        Some(crate::reference::RegistryRef {
                            tag: None,
                            digest: None,
                            ..reg
                        })
                    }
                    _ => {
                        return Err(bad(
                            &at("signatures_repository"),
                            format!(
                                "expected host[:port]/repository (no tag or digest), found {r:?}"
                            ),
                        ));
                    }
                },
            };
            let has_requirements = p.signatures.is_some()
                || p.attestations.as_ref().is_some_and(|a| !a.is_empty())
                || image_rules.is_some();
            match (action.is_some(), has_requirements) {
                (true, true) => {
                    return Err(bad(
                        &at("action"),
                        "a static policy (action) takes neither `signatures`, `attestations` nor `image`"
                            .into(),
                    ));
                }
                (false, false) => {
                    return Err(bad(
                        &format!("policies[{i}]"),
                        "a policy needs `signatures`, `attestations`, `image` rules or a static `action`".into(),
                    ));
                }
                _ => {}
            }
            let signatures = match p.signatures {
                None => None,
                Some(sigs) => {
                    let authorities = self.authorities(
                        &at("signatures.authorities"),
                        sigs.authorities,
                        &keys,
                        &sigstore,
                    )?;
                    let threshold = sigs.threshold.unwrap_or(1) as usize;
                    if threshold == 0 || threshold > authorities.len() {
                        return Err(bad(
                            &at("signatures.threshold"),
                            format!(
                                "must be between 1 and the number of authorities ({}), found {threshold}",
                                authorities.len()
                            ),
                        ));
                    }
                    Some(SignatureRequirement {
                        threshold,
                        authorities,
                    })
                }
            };
            let mut attestations = Vec::new();
            let mut rego_sources = Vec::new();
            for (j, a) in p.attestations.unwrap_or_default().into_iter().enumerate() {
                let akey = at(&format!("attestations[{j}]"));
                let (req, rego_source) = self.attestation(&akey, a, &keys, &sigstore)?;
                if attestations
                    .iter()
                    .any(|r: &AttestationRequirement| r.predicate_type == req.predicate_type)
                {
                    return Err(bad(
                        &format!("{akey}.type"),
                        format!("type {:?} is required twice", req.predicate_type),
                    ));
                }
                attestations.push(req);
                rego_sources.extend(rego_source);
            }
            // Its content decides what a cached verdict may be reused for; the name is in too, so
            // that cached verdicts name the policy as it is called now.
            let fingerprint = {
                use sha2::Digest as _;
                let text = format!(
                    "{:?}{images:?}{exclude:?}{namespaces:?}{mode:?}{action:?}{image_rules:?}{signatures_repository:?}{signatures:?}{attestations:?}{rego_sources:?}",
                    p.name
                );
                sha2::Sha256::digest(text.as_bytes()).into()
            };
            policies.push(Policy {
                name: p.name,
                images,
                exclude,
                namespaces,
                mode,
                action,
                image_rules,
                signatures_repository,
                signatures,
                attestations,
                fingerprint,
            });
        }

        let defaults = Limits::default();
        let l = raw.limits;
        let positive = |key: &str, v: Option<u64>, d: u64| match v {
            Some(0) => Err(bad(key, "must be greater than 0".into())),
            Some(v) => Ok(v),
            None => Ok(d),
        };
        let limits = Limits {
            max_manifest_bytes: positive(
                "limits.max_manifest_bytes",
                l.max_manifest_bytes,
                defaults.max_manifest_bytes,
            )?,
            max_signature_layer_bytes: positive(
                "limits.max_signature_layer_bytes",
                l.max_signature_layer_bytes,
                defaults.max_signature_layer_bytes,
            )?,
            max_attestation_bytes: positive(
                "limits.max_attestation_bytes",
                l.max_attestation_bytes,
                defaults.max_attestation_bytes,
            )?,
            max_signatures: positive(
                "limits.max_signatures",
                l.max_signatures.map(|n| n as u64),
                defaults.max_signatures as u64,
            )? as usize,
            deadline: self.duration("limits.deadline", l.deadline.as_deref(), defaults.deadline)?,
            connect_timeout: self.duration(
                "limits.connect_timeout",
                l.connect_timeout.as_deref(),
                defaults.connect_timeout,
            )?,
            max_in_flight: positive(
                "limits.max_in_flight",
                l.max_in_flight.map(|n| n as u64),
                defaults.max_in_flight as u64,
            )? as usize,
            max_evidence_bytes: positive(
                "limits.max_evidence_bytes",
                l.max_evidence_bytes,
                defaults.max_evidence_bytes,
            )?,
            allow_bypass_cache: l.allow_bypass_cache.unwrap_or(defaults.allow_bypass_cache),
            max_registry_requests: positive(
                "limits.max_registry_requests",
                l.max_registry_requests.map(|n| n as u64),
                defaults.max_registry_requests as u64,
            )? as usize,
            header_timeout: self.duration(
                "limits.header_timeout",
                l.header_timeout.as_deref(),
                defaults.header_timeout,
            )?,
            idle_timeout: self.duration(
                "limits.idle_timeout",
                l.idle_timeout.as_deref(),
                defaults.idle_timeout,
            )?,
            max_connections: positive(
                "limits.max_connections",
                l.max_connections.map(|n| n as u64),
                defaults.max_connections as u64,
            )? as usize,
        };

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
        let webhook = match raw.webhook {
            None => None,
            Some(w) => {
                if let Some(name) = &w.policy
                    && !policies.iter().any(|p| &p.name == name)
                {
                    return Err(bad("webhook.policy", format!("no policy named {name:?}")));
                }
                Some(WebhookSettings {
                    listen: self.addr("webhook.listen", &w.listen)?,
                    tls: self.tls(
                        "webhook",
                        w.tls_cert,
                        w.tls_key,
                        w.client_ca,
                        w.allowed_clients,
                    )?,
                    exempt_namespaces: w.exempt_namespaces,
                    exempt_images: w
                        .exempt_images
                        .iter()
                        .enumerate()
                        .map(|(n, g)| {
                            Glob::new(g).map_err(|e| {
                                bad(&format!("webhook.exempt_images[{n}]"), e.to_string())
                            })
                        })
                        .collect::<Result<_, _>>()?,
                    audit: w.audit,
                    policy: w.policy,
                })
            }
        };
        let ext_authz = match (raw.ext_authz_listen, raw.ext_authz) {
            (None, None) => None,
            (None, Some(_)) => return Err(bad("ext_authz", "needs ext_authz_listen".into())),
            (Some(addr), options) => {
                let (upstream, pass_through) =
                    options.map_or((None, true), |o| (o.upstream, o.pass_through));
                let Some(upstream) = upstream else {
                    return Err(bad(
                        "ext_authz.upstream",
                        "is required with ext_authz_listen: the registry the gate judges (host[:port]); \
                         umpire never takes it from a request's Host header"
                            .into(),
                    ));
                };
                let upstream = match crate::reference::ImageRef::parse(&format!("{upstream}/x")) {
                    Ok(crate::reference::ImageRef::Registry(r))
                        if !upstream.is_empty()
                            && !upstream.contains('/')
                            && (r.registry != crate::reference::DOCKER_HUB
                                || upstream.contains('.')) =>
                    {
                        r.registry
                    }
                    _ => {
                        return Err(bad(
                            "ext_authz.upstream",
                            format!("expected host[:port], found {upstream:?}"),
                        ));
                    }
                };
                Some(ExtAuthzSettings {
                    listen: self.addr("ext_authz_listen", &addr)?,
                    upstream,
                    pass_through,
                })
            }
        };
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

        Ok(Config {
            listen,
            metrics_listen,
            grpc_tls,
            webhook,
            ext_authz,
            registries,
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
        })
    }

    fn authorities(
        &self,
        key: &str,
        raw: Vec<RawAuthority>,
        keys: &BTreeMap<String, Arc<PublicKey>>,
        sigstore: &BTreeMap<String, Arc<SigstoreRoot>>,
    ) -> Result<Vec<Authority>, ConfigError> {
        let bad = self.invalid;
        let mut authorities = Vec::new();
        for (j, a) in raw.into_iter().enumerate() {
            let akey = format!("{key}[{j}]");
            let authority = match (a.key, a.keyless) {
                (Some(name), None) => {
                    if !keys.contains_key(&name) {
                        return Err(bad(
                            &format!("{akey}.key"),
                            format!("no key named {name:?} under trust.keys"),
                        ));
                    }
                    let logged_in = match (a.transparency_log, a.trust) {
                        (Some(RawTransparencyLog::Required), Some(root)) => {
                            if !sigstore.contains_key(&root) {
                                return Err(bad(
                                    &format!("{akey}.trust"),
                                    format!("no Sigstore root named {root:?} under trust.sigstore"),
                                ));
                            }
                            Some(root)
                        }
                        (Some(RawTransparencyLog::Required), None) => {
                            return Err(bad(
                                &format!("{akey}.trust"),
                                "transparency_log: required names the trust.sigstore root whose log must hold the signature (trust: NAME)".into(),
                            ));
                        }
                        (_, Some(_)) => {
                            return Err(bad(
                                &format!("{akey}.trust"),
                                "a key authority takes `trust` only with transparency_log: required".into(),
                            ));
                        }
                        (Some(RawTransparencyLog::Optional) | None, None) => None,
                    };
                    Authority::Key { name, logged_in }
                }
                (None, Some(k)) => {
                    if a.transparency_log.is_some() || a.trust.is_some() {
                        return Err(bad(
                            &akey,
                            "transparency_log and trust belong to key authorities (keyless ones name their root under keyless.trust)".into(),
                        ));
                    }
                    self.keyless(&format!("{akey}.keyless"), k, sigstore)?
                }
                _ => {
                    return Err(bad(
                        &akey,
                        "an authority is exactly one of `key` or `keyless`".into(),
                    ));
                }
            };
            if authorities.contains(&authority) {
                return Err(bad(&akey, format!("{authority} is listed twice")));
            }
            authorities.push(authority);
        }
        if authorities.is_empty() {
            return Err(bad(key, "needs at least one authority".into()));
        }
        Ok(authorities)
    }

    /// One attestation requirement, and the Rego source it uses (for the policy's fingerprint).
    fn attestation(
        &self,
        key: &str,
        a: RawAttestation,
        keys: &BTreeMap<String, Arc<PublicKey>>,
        sigstore: &BTreeMap<String, Arc<SigstoreRoot>>,
    ) -> Result<(AttestationRequirement, Option<String>), ConfigError> {
        let bad = self.invalid;
        let t = a.predicate_type;
        if t.is_empty() || t.chars().any(char::is_whitespace) {
            return Err(bad(
                &format!("{key}.type"),
                format!("expected an in-toto predicateType URI, found {t:?}"),
            ));
        }
        let authorities =
            self.authorities(&format!("{key}.authorities"), a.authorities, keys, sigstore)?;
        let wildcards = |k: &str, items: Vec<String>| {
            items
                .iter()
                .enumerate()
                .map(|(n, w)| {
                    Wildcard::new(w).map_err(|e| bad(&format!("{key}.{k}[{n}]"), e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let mut checks = Vec::new();
        if let Some(p) = a.provenance {
            if !checks::is_provenance(&t) {
                return Err(bad(
                    &format!("{key}.provenance"),
                    format!("provenance checks need a SLSA provenance type, not {t:?}"),
                ));
            }
            let base_images = match p.base_images {
                None => None,
                Some(b) => Some(BaseImages {
                    allow_none: b.allow_none,
                    repositories: b
                        .repositories
                        .iter()
                        .enumerate()
                        .map(|(n, g)| {
                            Glob::new(g).map_err(|e| {
                                bad(
                                    &format!("{key}.provenance.base_images.repositories[{n}]"),
                                    e.to_string(),
                                )
                            })
                        })
                        .collect::<Result<_, _>>()?,
                    digests: b
                        .digests
                        .into_iter()
                        .enumerate()
                        .map(|(n, d)| {
                            crate::digest::Digest::parse(&d)
                                .map(|d| d.to_string())
                                .map_err(|e| {
                                    bad(
                                        &format!("{key}.provenance.base_images.digests[{n}]"),
                                        e.to_string(),
                                    )
                                })
                        })
                        .collect::<Result<_, _>>()?,
                }),
            };
            checks.push(Checks::Provenance(ProvenanceCheck {
                builder_ids: p.builder_ids,
                build_types: p.build_types,
                source_repositories: wildcards(
                    "provenance.source_repositories",
                    p.source_repositories
                        .iter()
                        .map(|r| normalise_repository(r))
                        .collect(),
                )?,
                source_refs: wildcards("provenance.source_refs", p.source_refs)?,
                base_images,
            }));
        }
        if let Some(sb) = a.sbom {
            if !checks::is_spdx(&t) && !checks::is_cyclonedx(&t) {
                return Err(bad(
                    &format!("{key}.sbom"),
                    format!("SBOM checks need an SPDX or CycloneDX type, not {t:?}"),
                ));
            }
            checks.push(Checks::Sbom(SbomCheck {
                deny_packages: wildcards("sbom.deny_packages", sb.deny_packages)?,
                deny_licenses: wildcards("sbom.deny_licenses", sb.deny_licenses)?,
                require_packages: sb.require_packages,
            }));
        }
        if let Some(v) = a.vulnerabilities {
            if t != checks::COSIGN_VULN {
                return Err(bad(
                    &format!("{key}.vulnerabilities"),
                    format!(
                        "vulnerability checks need type {}, not {t:?}",
                        checks::COSIGN_VULN
                    ),
                ));
            }
            let max_severity = match v.max_severity.as_deref() {
                None => None,
                Some(sev) => Some(Severity::parse(sev).ok_or_else(|| {
                    bad(
                        &format!("{key}.vulnerabilities.max_severity"),
                        format!("expected low, medium, high or critical, found {sev:?}"),
                    )
                })?),
            };
            let max_age = match v.max_age.as_deref() {
                None => None,
                Some(age) => Some(parse_duration(age).filter(|d| !d.is_zero()).ok_or_else(
                    || {
                        bad(
                            &format!("{key}.vulnerabilities.max_age"),
                            format!("expected a duration like 24h or 168h, found {age:?}"),
                        )
                    },
                )?),
            };
            checks.push(Checks::Vulnerabilities(VulnCheck {
                max_severity,
                max_age,
                deny_cves: v.deny_cves,
            }));
        }
        let rego = match a.rego {
            None => None,
            Some(path) => {
                let file = self.named(&path);
                let source = std::fs::read_to_string(&file).map_err(|e| {
                    bad(
                        &format!("{key}.rego"),
                        format!("cannot read {}: {e}", file.display()),
                    )
                })?;
                let policy = RegoPolicy::compile(&path, &source)
                    .map_err(|e| bad(&format!("{key}.rego"), e))?;
                Some((Arc::new(policy), source))
            }
        };
        let (rego, rego_source) = match rego {
            Some((p, src)) => (Some(p), Some(src)),
            None => (None, None),
        };
        Ok((
            AttestationRequirement {
                predicate_type: t,
                authorities,
                checks: checks.pop(),
                rego,
            },
            rego_source,
        ))
    }

    fn keyless(
        &self,
        key: &str,
        k: RawKeyless,
        roots: &BTreeMap<String, Arc<SigstoreRoot>>,
    ) -> Result<Authority, ConfigError> {
        let bad = self.invalid;
        if !roots.contains_key(&k.trust) {
            return Err(bad(
                &format!("{key}.trust"),
                format!("no Sigstore root named {:?} under trust.sigstore", k.trust),
            ));
        }
        let matcher = |what: &str, exact: Option<String>, regex: Option<String>| match (
            exact, regex,
        ) {
            (Some(e), None) => Ok(Matcher::Exact(e)),
            (None, Some(r)) => Matcher::regex(&r).map_err(|e| {
                bad(
                    &format!("{key}.{what}_regex"),
                    format!("not a valid regex: {e}"),
                )
            }),
            (Some(_), Some(_)) => Err(bad(
                &format!("{key}.{what}"),
                format!("give `{what}` or `{what}_regex`, not both"),
            )),
            (None, None) => Err(bad(
                &format!("{key}.{what}"),
                format!(
                    "a keyless authority must constrain the {what} (`{what}` or `{what}_regex`); an unconstrained one would accept anyone"
                ),
            )),
        };
        let issuer = matcher("issuer", k.issuer, k.issuer_regex)?;
        let subject = matcher("subject", k.subject, k.subject_regex)?;
        let claims = [
            (Claim::Repository, k.repository),
            (Claim::Ref, k.git_ref),
            (Claim::Trigger, k.trigger),
            (Claim::Sha, k.sha),
            (Claim::Name, k.name),
        ]
        .into_iter()
        .filter_map(|(c, v)| v.map(|v| (c, v)))
        .collect();
        Ok(Authority::Keyless(KeylessAuthority {
            trust: k.trust,
            issuer,
            subject,
            claims,
        }))
    }

    /// TLS files resolved against the config folder and loaded once, so mistakes fail at load.
    fn tls(
        &self,
        key: &str,
        cert: String,
        private_key: String,
        client_ca: Option<String>,
        allowed_clients: Vec<String>,
    ) -> Result<TlsSettings, ConfigError> {
        let settings = TlsSettings {
            cert: self.named(cert),
            key: self.named(private_key),
            client_ca: client_ca.map(|c| self.named(c)),
            allowed_clients,
        };
        if !settings.allowed_clients.is_empty() && settings.client_ca.is_none() {
            return Err((self.invalid)(
                &format!("{key}.allowed_clients"),
                "needs client_ca: client identities are only known from verified client certificates".into(),
            ));
        }
        // Readable PEM of the right kinds; the listener builds (and rebuilds, on rotation) the TLS
        // configuration itself: config builds no TLS.
        let pem_blocks = |path: &PathBuf, what: &str| {
            let text = std::fs::read(path).map_err(|e| {
                (self.invalid)(key, format!("cannot read {what} {}: {e}", path.display()))
            })?;
            pem::parse_many(&text).map_err(|e| {
                (self.invalid)(key, format!("{what} {} is not PEM: {e}", path.display()))
            })
        };
        if !pem_blocks(&settings.cert, "certificate")?
            .iter()
            .any(|p| p.tag() == "CERTIFICATE")
        {
            return Err((self.invalid)(
                key,
                format!("{} holds no certificate", settings.cert.display()),
            ));
        }
        if !pem_blocks(&settings.key, "private key")?
            .iter()
            .any(|p| p.tag().ends_with("PRIVATE KEY"))
        {
            return Err((self.invalid)(
                key,
                format!("{} holds no private key", settings.key.display()),
            ));
        }
        if let Some(ca) = &settings.client_ca
            && !pem_blocks(ca, "client CA")?
                .iter()
                .any(|p| p.tag() == "CERTIFICATE")
        {
            return Err((self.invalid)(
                key,
                format!("{} holds no certificate", ca.display()),
            ));
        }
        Ok(settings)
    }

    fn cache(&self, raw: Option<RawCache>) -> Result<CacheSettings, ConfigError> {
        let bad = self.invalid;
        let d = CacheSettings::default();
        let Some(c) = raw else { return Ok(d) };
        let ttl = |key: &str, v: Option<&str>, default: Duration| match v {
            None => Ok(default),
            Some("0") => Ok(Duration::ZERO),
            Some(v) => parse_duration(v).ok_or_else(|| {
                bad(
                    key,
                    format!("expected a duration like 30s, 5m or 1h (or 0), found {v:?}"),
                )
            }),
        };
        let retry_ttl = ttl("cache.retry_ttl", c.retry_ttl.as_deref(), d.retry_ttl)?;
        if retry_ttl > MAX_RETRY_TTL {
            return Err(bad(
                "cache.retry_ttl",
                format!("at most {MAX_RETRY_TTL:?}: transient denials must be re-checked soon"),
            ));
        }
        let redis = match c.redis {
            None => None,
            Some(r) => {
                let key = std::env::var(&r.hmac_key_env).unwrap_or_default();
                if key.len() < 16 {
                    return Err(bad(
                        "cache.redis.hmac_key_env",
                        format!(
                            "environment variable {} must hold the shared-cache HMAC key (at least 16 bytes)",
                            r.hmac_key_env
                        ),
                    ));
                }
                if !(r.url.starts_with("redis://")
                    || r.url.starts_with("rediss://")
                    || r.url.starts_with("unix://"))
                {
                    return Err(bad(
                        "cache.redis.url",
                        format!("expected redis://host:port, found {:?}", r.url),
                    ));
                }
                Some(RedisSettings {
                    url: r.url,
                    hmac_key: key.into_bytes(),
                    timeout: self.duration(
                        "cache.redis.timeout",
                        r.timeout.as_deref(),
                        Duration::from_millis(250),
                    )?,
                })
            }
        };
        Ok(CacheSettings {
            allowed_ttl: ttl("cache.allowed_ttl", c.allowed_ttl.as_deref(), d.allowed_ttl)?,
            denied_ttl: ttl("cache.denied_ttl", c.denied_ttl.as_deref(), d.denied_ttl)?,
            retry_ttl,
            tag_ttl: ttl("cache.tag_ttl", c.tag_ttl.as_deref(), d.tag_ttl)?,
            max_entries: match c.max_entries {
                Some(0) => return Err(bad("cache.max_entries", "must be greater than 0".into())),
                Some(n) => n,
                None => d.max_entries,
            },
            redis,
        })
    }

    fn addr(&self, key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
        value.parse().map_err(|_| {
            (self.invalid)(
                key,
                format!("expected an address like 127.0.0.1:50051, found {value:?}"),
            )
        })
    }

    fn duration(
        &self,
        key: &str,
        value: Option<&str>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match value {
            None => Ok(default),
            Some(v) => match parse_duration(v) {
                Some(d) if !d.is_zero() => Ok(d),
                _ => Err((self.invalid)(
                    key,
                    format!("expected a duration like 500ms, 30s, 5m or 1h, found {v:?}"),
                )),
            },
        }
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
