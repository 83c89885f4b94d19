//! `authorities:` entries: `key` (with its transparency-log rule) and `keyless` (issuer, subject and
//! GitHub claims; both issuer and subject required).

use super::raw::*;
use super::*;
use crate::policy::SignedIdentity;

impl<F: Fn(&str, String) -> ConfigError> Validator<'_, F> {
    pub(super) fn authorities(
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
                (None, None) if a.notation.is_some() => {
                    if a.transparency_log.is_some() || a.trust.is_some() {
                        return Err(bad(
                            &akey,
                            "transparency_log and trust belong to key authorities".into(),
                        ));
                    }
                    let n = a.notation.ok_or_else(|| bad(&akey, "no notation".into()))?;
                    self.notation(&format!("{akey}.notation"), n)?
                }
                (Some(_), _) | (_, Some(_)) if a.notation.is_some() => {
                    return Err(bad(
                        &akey,
                        "an authority is exactly one of `key`, `keyless` or `notation`".into(),
                    ));
                }
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
                    let signed_identity = match a.signed_identity.as_deref() {
                        None | Some("any") => SignedIdentity::Any,
                        Some("repository") => SignedIdentity::Repository,
                        Some("exact") => SignedIdentity::Exact,
                        Some(other) => {
                            return Err(bad(
                                &format!("{akey}.signed_identity"),
                                format!("expected any, repository or exact, found {other:?}"),
                            ));
                        }
                    };
                    Authority::Key {
                        name,
                        logged_in,
                        signed_identity,
                    }
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
                        "an authority is exactly one of `key`, `keyless` or `notation`".into(),
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

    /// A `notation` authority: its statement (inline, written as a one-statement trust policy
    /// with scope `*` so that Notation's own rules validate it) or its trust policy document, with
    /// trust stores read under `trust.notation.store`.
    pub(super) fn notation(&self, key: &str, n: RawNotation) -> Result<Authority, ConfigError> {
        let bad = self.invalid;
        let Some(store_root) = self.notation_store.borrow().clone() else {
            return Err(bad(
                key,
                "a notation authority needs trust.notation.store (the folder that holds x509/)"
                    .into(),
            ));
        };
        let inline = n.trust_stores.is_some()
            || n.trusted_identities.is_some()
            || n.level.is_some()
            || n.overrides.is_some()
            || n.timestamp_stores.is_some()
            || n.verify_timestamp.is_some();
        let (document, name) = match (n.trust_policy, inline) {
            (Some(_), true) => {
                return Err(bad(
                    key,
                    "give either trust_policy (a Notation trust policy document) or an inline statement, not both".into(),
                ));
            }
            (Some(path), false) => {
                let full = self.named(&path);
                let text = crate::trust::notation::read_policy_document(&full)
                    .map_err(|e| bad(&format!("{key}.trust_policy"), e.to_string()))?;
                (text, format!("notation (trust policy {path})"))
            }
            (None, _) => {
                let stores = n.trust_stores.unwrap_or_default();
                if stores.is_empty() {
                    return Err(bad(
                        &format!("{key}.trust_stores"),
                        "name at least one ca:NAME or signingAuthority:NAME store".into(),
                    ));
                }
                if let Some(s) = stores.iter().find(|s| s.starts_with("tsa:")) {
                    return Err(bad(
                        &format!("{key}.trust_stores"),
                        format!("{s:?} is a tsa store: list it under timestamp_stores"),
                    ));
                }
                let tsa = n.timestamp_stores.unwrap_or_default();
                if let Some(s) = tsa.iter().find(|s| !s.starts_with("tsa:")) {
                    return Err(bad(
                        &format!("{key}.timestamp_stores"),
                        format!("{s:?} is not a tsa:NAME store"),
                    ));
                }
                let identities = n.trusted_identities.unwrap_or_default();
                let mut verification = serde_json::json!({
                    "level": n.level.as_deref().unwrap_or("strict"),
                });
                if let Some(o) = n.overrides {
                    verification["override"] = serde_json::json!(o);
                }
                if let Some(v) = n.verify_timestamp {
                    verification["verifyTimestamp"] = serde_json::json!(v);
                }
                let name = format!(
                    "notation ({}; {})",
                    stores
                        .iter()
                        .chain(tsa.iter())
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                    identities.join(" | ")
                );
                let document = serde_json::json!({
                    "version": "1.0",
                    "trustPolicies": [{
                        "name": key,
                        "registryScopes": ["*"],
                        "signatureVerification": verification,
                        "trustStores": stores.iter().chain(tsa.iter()).collect::<Vec<_>>(),
                        "trustedIdentities": identities,
                    }]
                });
                (document.to_string(), name)
            }
        };
        let (statements, files) = crate::trust::notation::load_statements(&document, &store_root)
            .map_err(|e| bad(key, e.to_string()))?;
        if statements
            .iter()
            .any(|s| s.rules.level == crate::trust::notation::Level::Skip)
        {
            tracing::warn!(key = %key, "a Notation statement with level skip admits images without verifying any signature");
            self.warnings.borrow_mut().push(format!(
                "{key}: a Notation statement with level skip admits images without verifying any signature"
            ));
        }
        self.files.borrow_mut().extend(files);
        let id = {
            use sha2::Digest as _;
            hex::encode(sha2::Sha256::digest(format!("{statements:?}").as_bytes()))
        };
        Ok(Authority::Notation(NotationAuthority {
            name,
            id,
            statements,
        }))
    }

    pub(super) fn keyless(
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
}
