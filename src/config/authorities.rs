//! `authorities:` entries: `key` (with its transparency-log rule) and `keyless` (issuer, subject and
//! GitHub claims; both issuer and subject required).

use super::raw::*;
use super::*;

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
