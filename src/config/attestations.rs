//! `attestations:` requirements: the predicate type, its authorities, the built-in checks
//! (provenance, SBOM, vulnerabilities) and Rego.

use super::raw::*;
use super::*;

impl<F: Fn(&str, String) -> ConfigError> Validator<'_, F> {
    /// One attestation requirement, and the Rego source it uses (for the policy's fingerprint).
    pub(super) fn attestation(
        &self,
        key: &str,
        a: RawAttestation,
        keys: &BTreeMap<String, Arc<PublicKey>>,
        sigstore: &BTreeMap<String, Arc<SigstoreRoot>>,
        allow_notation: bool,
    ) -> Result<(AttestationRequirement, Option<String>), ConfigError> {
        let bad = self.invalid;
        let t = a.predicate_type;
        if t.is_empty() || t.chars().any(char::is_whitespace) {
            return Err(bad(
                &format!("{key}.type"),
                format!("expected an in-toto predicateType URI, found {t:?}"),
            ));
        }
        let buildkit = match a.source.as_deref() {
            None | Some("signed") => false,
            Some("buildkit") => true,
            Some(other) => {
                return Err(bad(
                    &format!("{key}.source"),
                    format!("expected signed or buildkit, found {other:?}"),
                ));
            }
        };
        let authorities = if buildkit {
            if !(checks::is_provenance(&t) || checks::is_spdx(&t)) {
                return Err(bad(
                    &format!("{key}.type"),
                    format!(
                        "BuildKit writes SLSA provenance (v0.2, v1) and SPDX statements, not {t:?}"
                    ),
                ));
            }
            if !a.authorities.is_empty() {
                return Err(bad(
                    &format!("{key}.authorities"),
                    "source: buildkit statements carry no signature of their own: the image index's signature (this policy's `signatures`) vouches for them".into(),
                ));
            }
            Vec::new()
        } else {
            if a.authorities.is_empty() {
                return Err(bad(
                    &format!("{key}.authorities"),
                    "names no authority: who must have signed the attestation?".into(),
                ));
            }
            self.authorities(&format!("{key}.authorities"), a.authorities, keys, sigstore)?
        };
        if !allow_notation
            && authorities
                .iter()
                .any(|x| matches!(x, Authority::Notation(_)))
        {
            return Err(bad(
                &format!("{key}.authorities"),
                "Notation signs images and artifacts, not in-toto attestations: use a key or keyless authority here".into(),
            ));
        }
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
        let mut vex = None;
        if let Some(p) = a.provenance {
            checks.push(self.provenance_check(key, &t, p)?);
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
            let (check, authorities) = self.vulnerability_check(key, &t, v, keys, sigstore)?;
            checks.push(check);
            vex = authorities;
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
                vex,
                buildkit,
            },
            rego_source,
        ))
    }

    /// `provenance:` checks, on a SLSA provenance type only.
    fn provenance_check(
        &self,
        key: &str,
        t: &str,
        p: RawProvenance,
    ) -> Result<Checks, ConfigError> {
        let bad = self.invalid;
        let wildcards = |k: &str, items: Vec<String>| {
            items
                .iter()
                .enumerate()
                .map(|(n, w)| {
                    Wildcard::new(w).map_err(|e| bad(&format!("{key}.{k}[{n}]"), e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        if !checks::is_provenance(t) {
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
        Ok(Checks::Provenance(ProvenanceCheck {
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
        }))
    }

    /// `vulnerabilities:` checks, on cosign's vulnerability type only, and the authorities whose
    /// VEX documents count.
    fn vulnerability_check(
        &self,
        key: &str,
        t: &str,
        v: RawVulns,
        keys: &BTreeMap<String, Arc<PublicKey>>,
        sigstore: &BTreeMap<String, Arc<SigstoreRoot>>,
    ) -> Result<(Checks, Option<Vec<Authority>>), ConfigError> {
        let bad = self.invalid;
        let mut vex = None;
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
        let max_age =
            match v.max_age.as_deref() {
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
        if let Some(raw) = v.vex {
            let k = format!("{key}.vulnerabilities.vex.authorities");
            if raw.authorities.is_empty() {
                return Err(bad(
                    &k,
                    "names no authority: who may sign VEX documents?".into(),
                ));
            }
            vex = Some(self.authorities(&k, raw.authorities, keys, sigstore)?);
        }
        let check = Checks::Vulnerabilities(VulnCheck {
            max_severity,
            max_age,
            deny_cves: v.deny_cves,
        });
        Ok((check, vex))
    }
}
