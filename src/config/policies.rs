//! `policies[i]`: one policy validated into its plain value — its scope (globs, exclusions,
//! namespaces), mode and static action, image rules, evidence repository, and requirements
//! (signatures, attestations, Ratify-style artifacts), with its content fingerprint.

use super::*;

type Keys = BTreeMap<String, Arc<PublicKey>>;
type Roots = BTreeMap<String, Arc<SigstoreRoot>>;

impl<F: Fn(&str, String) -> ConfigError> Validator<'_, F> {
    /// `policies[i]`, checked against the policies `defined` before it.
    pub(super) fn policy(
        &self,
        i: usize,
        p: RawPolicy,
        defined: &[Policy],
        keys: &Keys,
        sigstore: &Roots,
    ) -> Result<Policy, ConfigError> {
        let bad = self.invalid;
        let at = |k: &str| format!("policies[{i}].{k}");
        if p.name.is_empty() {
            return Err(bad(&at("name"), "must not be empty".into()));
        }
        if defined.iter().any(|q| q.name == p.name) {
            return Err(bad(
                &at("name"),
                format!("policy {:?} is defined twice", p.name),
            ));
        }
        if p.images.is_empty() {
            return Err(bad(&at("images"), "needs at least one glob".into()));
        }
        let (images, exclude, namespaces) = self.policy_scope(&at, &p)?;
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
        let image_rules = self.image_rules(&at, p.image)?;
        let signatures_repository =
            self.signatures_repository(&at, p.signatures_repository.as_deref())?;
        let has_requirements = p.signatures.is_some()
            || p.attestations.as_ref().is_some_and(|a| !a.is_empty())
            || p.artifacts.as_ref().is_some_and(|a| !a.is_empty())
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
        let signatures = self.signature_requirement(&at, p.signatures, keys, sigstore)?;
        let (attestations, artifacts, rego_sources) = self.requirements(
            &at,
            p.attestations,
            p.artifacts,
            signatures.is_some(),
            keys,
            sigstore,
        )?;
        // Its content decides what a cached verdict may be reused for; the name is in too, so
        // that cached verdicts name the policy as it is called now.
        let fingerprint = {
            use sha2::Digest as _;
            let text = format!(
                "{:?}{images:?}{exclude:?}{namespaces:?}{mode:?}{action:?}{image_rules:?}{signatures_repository:?}{signatures:?}{attestations:?}{artifacts:?}{rego_sources:?}",
                p.name
            );
            sha2::Sha256::digest(text.as_bytes()).into()
        };
        Ok(Policy {
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
            artifacts,
            fingerprint,
        })
    }

    /// Its images globs, exclusions and namespaces.
    #[allow(clippy::type_complexity)]
    fn policy_scope(
        &self,
        at: &dyn Fn(&str) -> String,
        p: &RawPolicy,
    ) -> Result<(Vec<Glob>, Vec<Glob>, Vec<Wildcard>), ConfigError> {
        let bad = self.invalid;
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
            } else if g.as_str().ends_with("/*") {
                // Kyverno's `*` crosses `/`; umpire's stays in one segment.
                let key = at(&format!("images[{j}]"));
                self.warnings.borrow_mut().push(format!(
                    "{key}: {:?} matches repositories one segment below {:?} only (a `*` stays within a segment); write \"{}/**\" to include deeper ones",
                    g.as_str(),
                    g.as_str().trim_end_matches("/*"),
                    g.as_str().trim_end_matches("/*")
                ));
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
                Wildcard::new(n).map_err(|e| bad(&at(&format!("namespaces[{j}]")), e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((images, exclude, namespaces))
    }

    fn image_rules(
        &self,
        at: &dyn Fn(&str) -> String,
        raw: Option<RawImageRules>,
    ) -> Result<Option<crate::checks::image::ImageRules>, ConfigError> {
        let bad = self.invalid;
        Ok(match raw {
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
                            .map_err(|e| bad(&at(&format!("image.labels.{name}")), e.to_string()))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Some(crate::checks::image::ImageRules {
                    non_root: r.non_root,
                    max_age,
                    labels,
                })
            }
        })
    }

    fn signatures_repository(
        &self,
        at: &dyn Fn(&str) -> String,
        raw: Option<&str>,
    ) -> Result<Option<crate::reference::RegistryRef>, ConfigError> {
        let bad = self.invalid;
        Ok(match raw {
            None => None,
            Some(r) => match crate::reference::ImageRef::parse(r) {
                Ok(crate::reference::ImageRef::Registry(reg))
                    if !r.contains('@') && !r.rsplit('/').next().unwrap_or("").contains(':') =>
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
                        format!("expected host[:port]/repository (no tag or digest), found {r:?}"),
                    ));
                }
            },
        })
    }

    fn signature_requirement(
        &self,
        at: &dyn Fn(&str) -> String,
        raw: Option<RawSignatures>,
        keys: &Keys,
        sigstore: &Roots,
    ) -> Result<Option<SignatureRequirement>, ConfigError> {
        let bad = self.invalid;
        Ok(match raw {
            None => None,
            Some(sigs) => {
                let authorities = self.authorities(
                    &at("signatures.authorities"),
                    sigs.authorities,
                    keys,
                    sigstore,
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
        })
    }

    /// Its attestation and artifact requirements, and the Rego sources they name.
    #[allow(clippy::type_complexity)]
    fn requirements(
        &self,
        at: &dyn Fn(&str) -> String,
        attestations_raw: Option<Vec<RawAttestation>>,
        artifacts_raw: Option<Vec<RawAttestation>>,
        signed: bool,
        keys: &Keys,
        sigstore: &Roots,
    ) -> Result<
        (
            Vec<AttestationRequirement>,
            Vec<ArtifactRequirement>,
            Vec<String>,
        ),
        ConfigError,
    > {
        let bad = self.invalid;
        let mut attestations = Vec::new();
        let mut rego_sources = Vec::new();
        for (j, a) in attestations_raw.unwrap_or_default().into_iter().enumerate() {
            let akey = at(&format!("attestations[{j}]"));
            let (req, rego_source) = self.attestation(&akey, a, keys, sigstore, false)?;
            if req.buildkit && !signed {
                return Err(bad(
                    &format!("{akey}.source"),
                    "BuildKit statements are trusted through the image index's signature: the policy needs `signatures`".into(),
                ));
            }
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
        let mut artifacts: Vec<ArtifactRequirement> = Vec::new();
        for (j, mut a) in artifacts_raw.unwrap_or_default().into_iter().enumerate() {
            let akey = at(&format!("artifacts[{j}]"));
            let media_type = a.predicate_type.clone();
            let Some(predicate_type) = crate::policy::artifact_predicate_type(&media_type) else {
                return Err(bad(
                    &format!("{akey}.type"),
                    format!(
                        "expected application/spdx+json, application/vnd.cyclonedx+json or application/sarif+json, found {media_type:?}"
                    ),
                ));
            };
            if a.provenance.is_some() {
                return Err(bad(
                    &format!("{akey}.provenance"),
                    "artifacts take sbom or vulnerabilities checks".into(),
                ));
            }
            a.predicate_type = predicate_type.to_owned();
            let (inner, rego_source) = self.attestation(&akey, a, keys, sigstore, true)?;
            if artifacts.iter().any(|r| r.media_type == media_type) {
                return Err(bad(
                    &format!("{akey}.type"),
                    format!("type {media_type:?} is required twice"),
                ));
            }
            artifacts.push(ArtifactRequirement { media_type, inner });
            rego_sources.extend(rego_source);
        }
        Ok((attestations, artifacts, rego_sources))
    }
}
