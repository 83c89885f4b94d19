//! The YAML shapes, as serde reads them: every key checked (`deny_unknown_fields`), nothing validated.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::DefaultAction;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) listen: Option<String>,
    #[serde(default)]
    pub(super) log_format: Option<String>,
    #[serde(default)]
    pub(super) registries: Vec<RawRegistry>,
    #[serde(default)]
    pub(super) trust: RawTrust,
    #[serde(default)]
    pub(super) policies: Vec<RawPolicy>,
    #[serde(default)]
    pub(super) default: DefaultAction,
    #[serde(default)]
    pub(super) metrics_listen: Option<String>,
    #[serde(default)]
    pub(super) limits: RawLimits,
    // Contract sections served by later parts of umpire; accepted in shape so that a config written
    // for them is not an error, and refused at validation while this build cannot honour them.
    #[serde(default)]
    pub(super) webhook: Option<RawWebhook>,
    #[serde(default)]
    pub(super) ext_authz_listen: Option<String>,
    #[serde(default)]
    pub(super) ext_authz: Option<RawExtAuthz>,
    #[serde(default)]
    pub(super) kubernetes: RawKubernetes,
    #[serde(default)]
    pub(super) tls: Option<RawTls>,
    #[serde(default)]
    pub(super) insecure_plaintext: bool,
    /// gRPC callers may name local OCI layouts (`oci:PATH`) on this host.
    #[serde(default)]
    pub(super) allow_local_layouts: bool,
    #[serde(default)]
    pub(super) cache: Option<RawCache>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhook {
    pub(super) listen: String,
    pub(super) tls_cert: String,
    pub(super) tls_key: String,
    #[serde(default)]
    pub(super) client_ca: Option<String>,
    #[serde(default)]
    pub(super) allowed_clients: Vec<String>,
    #[serde(default)]
    pub(super) exempt_namespaces: Vec<String>,
    #[serde(default)]
    pub(super) exempt_images: Vec<String>,
    #[serde(default)]
    pub(super) audit: bool,
    #[serde(default)]
    pub(super) policy: Option<String>,
    /// The webhooks' `timeoutSeconds`, as a hint: `config check` warns when `limits.deadline`
    /// leaves no margin below it.
    #[serde(default)]
    pub(super) timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExtAuthz {
    #[serde(default)]
    pub(super) upstream: Option<String>,
    #[serde(default = "yes")]
    pub(super) pass_through: bool,
}

pub(super) fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) cert: String,
    pub(super) key: String,
    #[serde(default)]
    pub(super) client_ca: Option<String>,
    #[serde(default)]
    pub(super) allowed_clients: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCache {
    pub(super) allowed_ttl: Option<String>,
    pub(super) denied_ttl: Option<String>,
    pub(super) retry_ttl: Option<String>,
    pub(super) tag_ttl: Option<String>,
    pub(super) max_entries: Option<u64>,
    pub(super) redis: Option<RawRedis>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRedis {
    pub(super) url: String,
    pub(super) hmac_key_env: String,
    pub(super) timeout: Option<String>,
    /// PEM CA certificates for `rediss://` (default: the system's).
    #[serde(default)]
    pub(super) tls_ca: Option<String>,
    /// An environment variable holding Redis's password (`requirepass`).
    #[serde(default)]
    pub(super) password_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRegistry {
    pub(super) host: String,
    #[serde(default)]
    pub(super) insecure: bool,
    #[serde(default)]
    pub(super) auth_hosts: Vec<String>,
    #[serde(default)]
    pub(super) credentials: Option<RawRegistryCredentials>,
    /// PEM CA certificates: the only roots this host's HTTPS certificate may chain to.
    #[serde(default)]
    pub(super) tls_ca: Option<String>,
}

/// `registries[].credentials`: a Kubernetes secret or a Docker config file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRegistryCredentials {
    #[serde(default)]
    pub(super) secret: Option<String>,
    #[serde(default)]
    pub(super) file: Option<String>,
}

/// `kubernetes:`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKubernetes {
    #[serde(default)]
    pub(super) pull_secrets: bool,
    #[serde(default)]
    pub(super) service_account_dir: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrust {
    #[serde(default)]
    pub(super) keys: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) sigstore: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) tuf: Option<RawTuf>,
    #[serde(default)]
    pub(super) notation: Option<RawNotationTrust>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotationTrust {
    /// A folder laid out as Notation's: `x509/{ca,signingAuthority,tsa}/<name>/`.
    pub(super) store: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTuf {
    #[serde(default)]
    pub(super) cache_dir: Option<String>,
    #[serde(default)]
    pub(super) refresh: Option<String>,
    #[serde(default)]
    pub(super) mirror: Option<String>,
    #[serde(default)]
    pub(super) mirror_root: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub(super) name: String,
    pub(super) images: Vec<String>,
    #[serde(default)]
    pub(super) exclude: Vec<String>,
    #[serde(default)]
    pub(super) namespaces: Vec<String>,
    #[serde(default)]
    pub(super) mode: Option<String>,
    #[serde(default)]
    pub(super) action: Option<String>,
    #[serde(default)]
    pub(super) image: Option<RawImageRules>,
    #[serde(default)]
    pub(super) signatures_repository: Option<String>,
    #[serde(default)]
    pub(super) signatures: Option<RawSignatures>,
    #[serde(default)]
    pub(super) attestations: Option<Vec<RawAttestation>>,
    /// Ratify-style signed artifacts (`type` is the artifact's media type).
    #[serde(default)]
    pub(super) artifacts: Option<Vec<RawAttestation>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawImageRules {
    #[serde(default)]
    pub(super) non_root: bool,
    #[serde(default)]
    pub(super) max_age: Option<String>,
    #[serde(default)]
    pub(super) labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAttestation {
    #[serde(rename = "type")]
    pub(super) predicate_type: String,
    /// Who signed it (none with `source: buildkit`: the index signature vouches for it).
    #[serde(default)]
    pub(super) authorities: Vec<RawAuthority>,
    /// `signed` (default: an attestation signed on its own) or `buildkit` (an in-toto statement in
    /// the image's own index, trusted through the index's signature).
    #[serde(default)]
    pub(super) source: Option<String>,
    #[serde(default)]
    pub(super) rego: Option<String>,
    #[serde(default)]
    pub(super) provenance: Option<RawProvenance>,
    #[serde(default)]
    pub(super) sbom: Option<RawSbom>,
    #[serde(default)]
    pub(super) vulnerabilities: Option<RawVulns>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvenance {
    #[serde(default)]
    pub(super) builder_ids: Vec<String>,
    #[serde(default)]
    pub(super) build_types: Vec<String>,
    #[serde(default)]
    pub(super) source_repositories: Vec<String>,
    #[serde(default)]
    pub(super) source_refs: Vec<String>,
    #[serde(default)]
    pub(super) base_images: Option<RawBaseImages>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBaseImages {
    #[serde(default)]
    pub(super) repositories: Vec<String>,
    #[serde(default)]
    pub(super) digests: Vec<String>,
    /// A provenance that names no image dependency passes only with this.
    #[serde(default)]
    pub(super) allow_none: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSbom {
    #[serde(default)]
    pub(super) deny_packages: Vec<String>,
    #[serde(default)]
    pub(super) deny_licenses: Vec<String>,
    #[serde(default)]
    pub(super) require_packages: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVulns {
    #[serde(default)]
    pub(super) max_severity: Option<String>,
    #[serde(default)]
    pub(super) max_age: Option<String>,
    #[serde(default)]
    pub(super) deny_cves: Vec<String>,
    #[serde(default)]
    pub(super) vex: Option<RawVex>,
}

/// `vulnerabilities.vex`: who may say a CVE does not affect the image.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVex {
    pub(super) authorities: Vec<RawAuthority>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSignatures {
    #[serde(default)]
    pub(super) threshold: Option<u32>,
    pub(super) authorities: Vec<RawAuthority>,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawTransparencyLog {
    Required,
    Optional,
}

/// Exactly one of `key` and `keyless` is set (checked at validation).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuthority {
    #[serde(default)]
    pub(super) key: Option<String>,
    /// With `key`: `required` asks for a log entry under the `trust` root's logs.
    #[serde(default)]
    pub(super) transparency_log: Option<RawTransparencyLog>,
    /// With `key` and `transparency_log: required`: the `trust.sigstore` root whose log.
    #[serde(default)]
    pub(super) trust: Option<String>,
    /// With `key`: which image name the signed payload must give (any | repository | exact).
    #[serde(default)]
    pub(super) signed_identity: Option<String>,
    #[serde(default)]
    pub(super) keyless: Option<RawKeyless>,
    #[serde(default)]
    pub(super) notation: Option<RawNotation>,
}

/// A `notation` authority: an inline statement, or a Notation trust policy document.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotation {
    #[serde(default)]
    pub(super) trust_stores: Option<Vec<String>>,
    #[serde(default)]
    pub(super) trusted_identities: Option<Vec<String>>,
    #[serde(default)]
    pub(super) level: Option<String>,
    #[serde(default, rename = "override")]
    pub(super) overrides: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub(super) timestamp_stores: Option<Vec<String>>,
    #[serde(default)]
    pub(super) verify_timestamp: Option<String>,
    #[serde(default)]
    pub(super) trust_policy: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKeyless {
    pub(super) trust: String,
    #[serde(default)]
    pub(super) issuer: Option<String>,
    #[serde(default)]
    pub(super) issuer_regex: Option<String>,
    #[serde(default)]
    pub(super) subject: Option<String>,
    #[serde(default)]
    pub(super) subject_regex: Option<String>,
    #[serde(default)]
    pub(super) repository: Option<String>,
    #[serde(default, rename = "ref")]
    pub(super) git_ref: Option<String>,
    #[serde(default)]
    pub(super) trigger: Option<String>,
    #[serde(default)]
    pub(super) sha: Option<String>,
    #[serde(default)]
    pub(super) name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) max_manifest_bytes: Option<u64>,
    pub(super) max_signature_layer_bytes: Option<u64>,
    pub(super) max_attestation_bytes: Option<u64>,
    pub(super) max_signatures: Option<usize>,
    pub(super) deadline: Option<String>,
    pub(super) connect_timeout: Option<String>,
    pub(super) max_in_flight: Option<usize>,
    pub(super) max_evidence_bytes: Option<u64>,
    pub(super) allow_bypass_cache: Option<bool>,
    pub(super) max_registry_requests: Option<usize>,
    pub(super) header_timeout: Option<String>,
    pub(super) idle_timeout: Option<String>,
    pub(super) max_connections: Option<usize>,
}

// ---- loading ----------------------------------------------------------------------------------
