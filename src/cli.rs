//! What the command line reads besides a configuration: cosign's verification flags (read as
//! cosign 2 reads them, turned into one policy), and Kubernetes manifests (a ConfigMap holding a
//! configuration, AdmissionReviews and workloads for an admission dry run). Pure but for reading
//! the files it is given.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// cosign-like ad-hoc verification: a one-policy configuration built in memory, or a policy
/// added to `--config` for the images named.
#[derive(clap::Args, Default, Debug)]
pub struct CosignFlags {
    /// Require a signature by this public key (PEM file), as `cosign verify --key`. The signature
    /// must be in Sigstore's transparency log, as cosign 2 requires, unless
    /// --insecure-ignore-tlog.
    #[arg(long)]
    pub key: Option<String>,
    /// Require a keyless signature for this certificate identity (exact).
    #[arg(long, conflicts_with_all = ["key"])]
    pub certificate_identity: Option<String>,
    /// ... or for identities matching this regex (whole value).
    #[arg(long, conflicts_with_all = ["key", "certificate_identity"])]
    pub certificate_identity_regexp: Option<String>,
    /// The OIDC issuer of a keyless identity (exact).
    #[arg(long)]
    pub certificate_oidc_issuer: Option<String>,
    /// ... or issuers matching this regex (whole value).
    #[arg(long, conflicts_with_all = ["certificate_oidc_issuer"])]
    pub certificate_oidc_issuer_regexp: Option<String>,
    /// A Sigstore trusted_root.json (default: the embedded public-good root).
    #[arg(long)]
    pub trusted_root: Option<PathBuf>,
    /// Also require an attestation of this predicate type by the same signer: a URI or cosign's
    /// shorthands (slsaprovenance, slsaprovenance02, slsaprovenance1, link, spdx, spdxjson,
    /// cyclonedx, vuln, openvex, custom), as `cosign verify-attestation --type`.
    #[arg(long = "type", visible_alias = "attestation-type")]
    pub predicate_type: Option<String>,
    /// Accept signatures that are not in the transparency log (cosign's flag): weaker, and said so.
    #[arg(long)]
    pub insecure_ignore_tlog: bool,
    /// Talk plain HTTP to the images' registries (cosign's flag; for local registries only).
    #[arg(long)]
    pub allow_insecure_registry: bool,
}

/// cosign's `--type` shorthands and the predicate types they stand for (cosign's
/// `options.PredicateTypeMap`).
const PREDICATE_SHORTHANDS: &[(&str, &str)] = &[
    ("custom", "https://cosign.sigstore.dev/attestation/v1"),
    ("slsaprovenance", "https://slsa.dev/provenance/v0.2"),
    ("slsaprovenance02", "https://slsa.dev/provenance/v0.2"),
    ("slsaprovenance1", "https://slsa.dev/provenance/v1"),
    ("spdx", "https://spdx.dev/Document"),
    ("spdxjson", "https://spdx.dev/Document"),
    ("cyclonedx", "https://cyclonedx.org/bom"),
    ("link", "https://in-toto.io/Link/v1"),
    ("vuln", "https://cosign.sigstore.dev/attestation/vuln/v1"),
    ("openvex", "https://openvex.dev/ns"),
];

/// The predicate type `--type t` means to cosign: a shorthand's URI, or `t` itself when it is
/// an absolute URI; anything else is refused, as cosign refuses it.
pub fn predicate_type(t: &str) -> anyhow::Result<String> {
    if let Some((_, uri)) = PREDICATE_SHORTHANDS.iter().find(|(s, _)| *s == t) {
        return Ok((*uri).to_owned());
    }
    let scheme_ok = t
        .split_once("://")
        .is_some_and(|(scheme, rest)| !scheme.is_empty() && !rest.is_empty());
    let absolute_path = t.starts_with('/');
    if !(scheme_ok || absolute_path) || t.chars().any(char::is_whitespace) {
        anyhow::bail!(
            "invalid predicate type {t:?}: give a URI or one of cosign's shorthands ({})",
            PREDICATE_SHORTHANDS
                .iter()
                .map(|(s, _)| *s)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(t.to_owned())
}

/// A `--key` umpire can read: a PEM file. cosign's other key references (KMS URIs,
/// `k8s://namespace/secret`, PKCS#11, a certificate in a Secret) are refused, saying so.
pub fn key_file(reference: &str, cwd: &Path) -> anyhow::Result<PathBuf> {
    let lower = reference.to_ascii_lowercase();
    let scheme = lower.split_once("://").map(|(s, _)| s);
    if scheme.is_some() || lower.starts_with("pkcs11:") || lower.starts_with("env://") {
        anyhow::bail!(
            "--key {reference:?} is a key reference umpire cannot read (KMS, Kubernetes Secret, PKCS#11 or environment references are cosign's): export the public key to a PEM file (`cosign public-key --key {reference} > cosign.pub`) and pass that file"
        );
    }
    Ok(cwd.join(reference))
}

impl CosignFlags {
    /// Whether any of these flags was given.
    pub fn given(&self) -> bool {
        self.key.is_some()
            || self.certificate_identity.is_some()
            || self.certificate_identity_regexp.is_some()
            || self.certificate_oidc_issuer.is_some()
            || self.certificate_oidc_issuer_regexp.is_some()
            || self.trusted_root.is_some()
            || self.predicate_type.is_some()
            || self.insecure_ignore_tlog
            || self.allow_insecure_registry
    }

    /// The configuration these flags describe, for `images`: added to `base` (a configuration
    /// file's YAML) as a policy for exactly those images' repositories, or on its own (one policy
    /// over every image, `default: deny`). Warnings for what weakens verification go to `warn`.
    pub fn config(
        &self,
        images: &[String],
        base: Option<&Path>,
        cwd: &Path,
        mut warn: impl FnMut(String),
    ) -> anyhow::Result<crate::config::Config> {
        let absolute = |p: &PathBuf| cwd.join(p).display().to_string();
        let root = self
            .trusted_root
            .as_ref()
            .map_or_else(|| "embedded".to_owned(), absolute);
        let mut trust = json!({});
        let authority = match &self.key {
            Some(key) => {
                let file = key_file(key, cwd)?;
                trust["keys"] = json!({ "cli": file.display().to_string() });
                if self.insecure_ignore_tlog {
                    warn("WARNING: --insecure-ignore-tlog: the signature is not checked against the transparency log".into());
                    json!({ "key": "cli" })
                } else {
                    // cosign 2: a keyed signature must be in the transparency log.
                    trust["sigstore"] = json!({ "cli": root });
                    json!({ "key": "cli", "transparency_log": "required", "trust": "cli" })
                }
            }
            None => {
                let mut keyless = json!({ "trust": "cli" });
                match (
                    &self.certificate_identity,
                    &self.certificate_identity_regexp,
                ) {
                    (Some(s), _) => keyless["subject"] = json!(s),
                    (None, Some(r)) => keyless["subject_regex"] = json!(r),
                    (None, None) => anyhow::bail!(
                        "give --key, or --certificate-identity[-regexp] with --certificate-oidc-issuer[-regexp]"
                    ),
                }
                match (
                    &self.certificate_oidc_issuer,
                    &self.certificate_oidc_issuer_regexp,
                ) {
                    (Some(s), _) => keyless["issuer"] = json!(s),
                    (None, Some(r)) => keyless["issuer_regex"] = json!(r),
                    (None, None) => anyhow::bail!(
                        "a keyless identity needs --certificate-oidc-issuer or --certificate-oidc-issuer-regexp"
                    ),
                }
                if self.insecure_ignore_tlog {
                    anyhow::bail!(
                        "--insecure-ignore-tlog applies to --key only: keyless signatures are verified through their log entry"
                    );
                }
                trust["sigstore"] = json!({ "cli": root });
                json!({ "keyless": keyless })
            }
        };
        let hosts: Vec<String> = {
            let mut h: Vec<String> = images
                .iter()
                .filter_map(|i| match crate::reference::ImageRef::parse(i) {
                    Ok(crate::reference::ImageRef::Registry(r)) => Some(r.registry),
                    _ => None,
                })
                .collect();
            h.sort();
            h.dedup();
            h
        };
        let mut policy = json!({
            "name": "command-line",
            "images": ["**"],
            "signatures": { "authorities": [authority.clone()] },
        });
        if let Some(t) = &self.predicate_type {
            policy["attestations"] =
                json!([{ "type": predicate_type(t)?, "authorities": [authority] }]);
        }
        let registries: Vec<Value> = if self.allow_insecure_registry {
            warn(format!(
                "umpire: WARNING --allow-insecure-registry: plain HTTP to {}",
                hosts.join(", ")
            ));
            hosts
                .iter()
                .map(|h| json!({ "host": h, "insecure": true }))
                .collect()
        } else {
            Vec::new()
        };
        let Some(base) = base else {
            let mut config = json!({ "trust": trust, "policies": [policy], "default": "deny" });
            if !registries.is_empty() {
                config["registries"] = json!(registries);
            }
            return Ok(crate::config::Config::from_yaml(
                &config.to_string(),
                cwd,
                "the command line",
            )?);
        };
        // With --config: the flags add a policy for exactly the images named (their repositories),
        // and their trust under names of their own.
        let text = std::fs::read_to_string(base)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", base.display()))?;
        let mut merged: serde_json::Value = serde_yaml_ng::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", base.display()))?;
        if merged.is_null() {
            merged = json!({});
        }
        let subjects: Vec<String> = images
            .iter()
            .filter_map(|i| crate::reference::ImageRef::parse(i).ok())
            .map(|r| r.policy_subject())
            .collect();
        policy["images"] = json!(subjects);
        for (section, value) in trust.as_object().into_iter().flatten() {
            let entry = &mut merged["trust"][section];
            if entry.is_null() {
                *entry = json!({});
            }
            for (name, v) in value.as_object().into_iter().flatten() {
                // Never replace the file's own trust: its policies would verify under the flags'.
                if !entry[name].is_null() {
                    anyhow::bail!(
                        "{} already names trust.{section}.{name}, which the command line's flags use: rename it there",
                        base.display()
                    );
                }
                entry[name] = v.clone();
            }
        }
        match merged["policies"].as_array_mut() {
            Some(list) => list.push(policy),
            None => merged["policies"] = json!([policy]),
        }
        if !registries.is_empty() {
            match merged["registries"].as_array_mut() {
                Some(list) => list.extend(registries),
                None => merged["registries"] = json!(registries),
            }
        }
        let folder = base.parent().unwrap_or(cwd);
        Ok(crate::config::Config::from_yaml(
            &merged.to_string(),
            &cwd.join(folder),
            &format!("{} with the command line's flags", base.display()),
        )?)
    }
}

/// A ConfigMap holding an umpire configuration: its name and its data files (name, content).
pub type ConfigMapFiles = (String, Vec<(String, String)>);

/// The umpire configurations held by ConfigMaps in Kubernetes manifests (a file of YAML
/// documents, e.g. `kubectl kustomize deploy/` output).
pub fn configs_in_manifests(text: &str) -> anyhow::Result<Vec<ConfigMapFiles>> {
    let mut out = Vec::new();
    for doc in documents(text)? {
        if doc["kind"] != "ConfigMap" {
            continue;
        }
        let Some(data) = doc["data"].as_object() else {
            continue;
        };
        if !data.contains_key("umpire.yaml") {
            continue;
        }
        let files = data
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
            .collect();
        let name = doc["metadata"]["name"].as_str().unwrap_or("?").to_owned();
        out.push((name, files));
    }
    Ok(out)
}

/// Every YAML (or JSON) document of `text`, as JSON values; `List`s are opened.
fn documents(text: &str) -> anyhow::Result<Vec<Value>> {
    use serde::Deserialize as _;
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let v = Value::deserialize(doc)?;
        if v.is_null() {
            continue;
        }
        if v["kind"] == "List"
            && let Some(items) = v["items"].as_array()
        {
            out.extend(items.iter().cloned());
        } else {
            out.push(v);
        }
    }
    Ok(out)
}

/// The AdmissionReview bodies the API server would send for `text`: AdmissionReviews as they
/// are, and Pods and workloads (Deployments, Jobs, ...) as CREATE requests in their namespace
/// (`default_namespace` when they name none).
pub fn admission_reviews(text: &str, default_namespace: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    const WORKLOADS: &[&str] = &[
        "Pod",
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "ReplicationController",
        "Job",
        "CronJob",
    ];
    for (n, doc) in documents(text)?.into_iter().enumerate() {
        if doc["kind"] == "AdmissionReview" {
            out.push(serde_json::to_vec(&doc)?);
            continue;
        }
        let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
        if !WORKLOADS.contains(&kind.as_str()) {
            continue;
        }
        let namespace = doc["metadata"]["namespace"]
            .as_str()
            .unwrap_or(default_namespace)
            .to_owned();
        let review = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": format!("dry-run-{n}"),
                "kind": {"group": "", "version": "v1", "kind": kind},
                "namespace": namespace,
                "operation": "CREATE",
                "object": doc,
            },
        });
        out.push(serde_json::to_vec(&review)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosign_shorthands_and_uris() {
        assert_eq!(
            predicate_type("slsaprovenance1").unwrap(),
            "https://slsa.dev/provenance/v1"
        );
        assert_eq!(
            predicate_type("spdxjson").unwrap(),
            "https://spdx.dev/Document"
        );
        assert_eq!(predicate_type("openvex").unwrap(), "https://openvex.dev/ns");
        assert_eq!(
            predicate_type("https://example.com/x").unwrap(),
            "https://example.com/x"
        );
        assert!(predicate_type("slsa").is_err());
        assert!(predicate_type("not a uri").is_err());
    }

    #[test]
    fn key_references_umpire_cannot_read_are_refused() {
        for r in [
            "k8s://ns/secret",
            "awskms://x",
            "gcpkms://projects/p",
            "hashivault://k",
            "azurekms://v",
            "pkcs11:token=x",
        ] {
            let e = key_file(r, Path::new("/")).unwrap_err().to_string();
            assert!(
                e.contains("cannot read") && e.contains("cosign public-key"),
                "{e}"
            );
        }
        assert_eq!(
            key_file("cosign.pub", Path::new("/w")).unwrap(),
            PathBuf::from("/w/cosign.pub")
        );
    }

    #[test]
    fn manifests_yield_configs_and_reviews() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: umpire-config}\ndata:\n  umpire.yaml: |\n    policies: []\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: apps}\nspec:\n  containers: [{name: c, image: nginx}]\n";
        let configs = configs_in_manifests(text).unwrap();
        assert_eq!(configs[0].0, "umpire-config");
        let reviews = admission_reviews(text, "default").unwrap();
        assert_eq!(reviews.len(), 1, "the ConfigMap is no workload");
        let r = crate::api::admission::parse_review(&reviews[0]).unwrap();
        assert_eq!((r.kind.as_str(), r.namespace.as_str()), ("Pod", "apps"));
    }
}
