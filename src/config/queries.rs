//! What the engine, the surfaces and `umpire config check` ask of a loaded configuration: the
//! hosts it names, whether keyed signatures must be found in a log, policies' scopes in canonical
//! form, and what deserves a warning.

use std::collections::HashSet;

use super::*;

impl Config {
    /// Hosts the configuration names: registries, literal hosts of policy globs, the gate's
    /// upstream (the registry client tells them from hosts only a caller named).
    pub fn known_hosts(&self) -> HashSet<String> {
        let mut hosts: HashSet<String> = self.registries.keys().cloned().collect();
        for glob in self.policies.iter().flat_map(|p| &p.images) {
            let first = glob.as_str().split('/').next().unwrap_or_default();
            if glob.as_str().contains('/')
                && !first.contains(['*', '?'])
                && !first.starts_with("oci:")
            {
                hosts.insert(first.to_owned());
            }
        }
        if let Some(gate) = &self.ext_authz {
            hosts.insert(gate.upstream.clone());
        }
        hosts
    }

    /// The trust material verification lends out (keys, Sigstore roots, the offline root).
    pub fn trust_material(&self) -> crate::verify::evidence::TrustMaterial {
        crate::verify::evidence::TrustMaterial {
            keys: (self.keys.iter())
                .map(|(n, k)| (n.clone(), Arc::clone(k)))
                .collect(),
            roots: self.sigstore.values().cloned().collect(),
            offline: Arc::clone(&self.offline_root),
            log_checks: self.keyed_log_checks(),
        }
    }

    /// Some authority requires keyed signatures to be logged: verification must find out where.
    pub fn keyed_log_checks(&self) -> bool {
        self.policies.iter().any(|p| {
            p.signatures
                .iter()
                .flat_map(|s| s.authorities.iter())
                .chain(p.attestations.iter().flat_map(|a| a.authorities.iter()))
                .any(|a| {
                    matches!(
                        a,
                        Authority::Key {
                            logged_in: Some(_),
                            ..
                        }
                    )
                })
        })
    }

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
                // Notation statements, with their scopes as umpire matches them (canonical).
                let mut seen = std::collections::BTreeSet::new();
                let notation = p
                    .signatures
                    .iter()
                    .flat_map(|s| s.authorities.iter())
                    .chain(p.artifacts.iter().flat_map(|a| a.inner.authorities.iter()));
                for a in notation {
                    let Authority::Notation(n) = a else { continue };
                    if !seen.insert(n.id.clone()) {
                        continue;
                    }
                    for st in &n.statements {
                        let scopes = st
                            .scopes
                            .as_ref()
                            .map_or_else(|| "*".to_owned(), |s| s.join(", "));
                        line.push_str(&format!(
                            "\n    {}: statement {:?} scopes [{scopes}]",
                            n.name, st.name
                        ));
                    }
                }
                line
            })
            .collect()
    }

    /// Policies scoped by `namespaces` never apply where no namespace is carried: say where.
    pub(crate) fn namespace_warnings(&self) -> Vec<String> {
        let mut surfaces = vec!["umpire verify (no --namespace)"];
        if self.webhook.is_some() {
            surfaces.push("the Gatekeeper provider");
        }
        if self.ext_authz.is_some() {
            surfaces.push("the registry gate (ext_authz)");
        }
        surfaces.push("gRPC calls without VerifyRequest.namespace");
        self.policies
            .iter()
            .filter(|p| !p.namespaces.is_empty())
            .map(|p| {
                format!(
                    "policy {} has namespaces, so it applies only to admission requests (and gRPC calls naming a namespace): it never applies to {}; images there follow the other policies or `default`",
                    p.name,
                    surfaces.join(", ")
                )
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
                .chain(p.attestations.iter().flat_map(|a| a.authorities.iter()))
                .chain(p.artifacts.iter().flat_map(|a| a.inner.authorities.iter()));
            for a in authorities {
                match a {
                    Authority::Key {
                        name, logged_in, ..
                    } => {
                        keys_used.insert(name.as_str());
                        if let Some(root) = logged_in {
                            roots_used.insert(root.as_str());
                        }
                    }
                    Authority::Keyless(k) => {
                        roots_used.insert(k.trust.as_str());
                    }
                    Authority::Notation(_) => {}
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
}
