//! SLSA provenance (v0.2 and v1): who built it, how, from which source, on which base images.

use serde_json::Value;

use super::{SLSA_V02, Wildcard, list};
use crate::glob::Glob;
use crate::reference::ImageRef;
use crate::verify::statement::Statement;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProvenanceCheck {
    /// Allowed `builder.id`s (exact); empty = any.
    pub builder_ids: Vec<String>,
    /// Allowed build types (exact); empty = any.
    pub build_types: Vec<String>,
    /// Allowed source repositories (wildcards over `host/owner/repo`); empty = any.
    pub source_repositories: Vec<Wildcard>,
    /// Allowed source refs (wildcards, e.g. `refs/tags/v*`); empty = any.
    pub source_refs: Vec<Wildcard>,
    /// When set, every image among the build's dependencies must come from one of these.
    pub base_images: Option<BaseImages>,
}

#[derive(Debug, Clone, Default)]
pub struct BaseImages {
    pub repositories: Vec<Glob>,
    pub digests: Vec<String>,
    /// A provenance that names no image dependency passes (otherwise it fails: a check that
    /// read nothing has checked nothing).
    pub allow_none: bool,
}

impl PartialEq for BaseImages {
    fn eq(&self, other: &Self) -> bool {
        self.digests == other.digests
            && self.allow_none == other.allow_none
            && self
                .repositories
                .iter()
                .map(Glob::as_str)
                .eq(other.repositories.iter().map(Glob::as_str))
    }
}

impl Eq for BaseImages {}

/// What a provenance predicate says, whichever SLSA version it is.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Provenance {
    pub builder_id: Option<String>,
    pub build_type: Option<String>,
    pub source_repository: Option<String>,
    pub source_ref: Option<String>,
    /// Dependencies: (uri, sha256 digest if given).
    pub dependencies: Vec<(String, Option<String>)>,
}

fn text(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(|s| s.chars().take(1000).collect())
}

fn deps(v: &Value, pointer: &str) -> Vec<(String, Option<String>)> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .take(10_000)
                .filter_map(|d| Some((text(d, "/uri")?, text(d, "/digest/sha256"))))
                .collect()
        })
        .unwrap_or_default()
}

/// `git+https://github.com/acme/app@refs/heads/main` → (`github.com/acme/app`, `refs/heads/main`).
fn split_source(uri: &str) -> (String, Option<String>) {
    let uri = uri.strip_prefix("git+").unwrap_or(uri);
    let (repo, git_ref) = match uri.rsplit_once('@') {
        Some((r, f)) if f.starts_with("refs/") => (r, Some(f.to_owned())),
        _ => (uri, None),
    };
    (normalise_repository(repo), git_ref)
}

/// `https://github.com/acme/app.git` and `github.com/acme/app` compare equal.
pub fn normalise_repository(r: &str) -> String {
    let r = r
        .strip_prefix("https://")
        .or_else(|| r.strip_prefix("http://"))
        .unwrap_or(r);
    r.trim_end_matches('/').trim_end_matches(".git").to_owned()
}

impl Provenance {
    pub fn read(statement: &Statement) -> Self {
        let p = &statement.predicate;
        if statement.predicate_type == SLSA_V02 {
            let (source_repository, source_ref) = match text(p, "/invocation/configSource/uri") {
                Some(uri) => {
                    let (r, f) = split_source(&uri);
                    (Some(r), f)
                }
                None => (None, None),
            };
            return Self {
                builder_id: text(p, "/builder/id"),
                build_type: text(p, "/buildType"),
                source_repository,
                source_ref,
                dependencies: deps(p, "/materials"),
            };
        }
        // v1: GitHub's generators put the workflow's repository and ref in externalParameters.
        let workflow_repo = text(p, "/buildDefinition/externalParameters/workflow/repository");
        let workflow_ref = text(p, "/buildDefinition/externalParameters/workflow/ref");
        let (source_repository, source_ref) = match (workflow_repo, workflow_ref) {
            (Some(r), f) => (Some(normalise_repository(&r)), f),
            (None, _) => match text(p, "/buildDefinition/externalParameters/source/uri") {
                Some(uri) => {
                    let (r, f) = split_source(&uri);
                    (Some(r), f)
                }
                None => (None, None),
            },
        };
        Self {
            builder_id: text(p, "/runDetails/builder/id"),
            build_type: text(p, "/buildDefinition/buildType"),
            source_repository,
            source_ref,
            dependencies: deps(p, "/buildDefinition/resolvedDependencies"),
        }
    }
}

/// An image dependency as `host/repository` (for globs): `None` if `uri` names no image,
/// `Some(None)` if it names one umpire cannot read (which then fails the check).
fn image_of(uri: &str) -> Option<Option<String>> {
    if let Some(rest) = uri
        .strip_prefix("pkg:docker/")
        .or_else(|| uri.strip_prefix("pkg:oci/"))
    {
        // pkg:docker/namespace/name@version?repository_url=host
        let (path, qualifiers) = rest.split_once('?').unwrap_or((rest, ""));
        let path = path.split('@').next().unwrap_or(path);
        let host = qualifiers
            .split('&')
            .find_map(|q| q.strip_prefix("repository_url="))
            .map(|h| h.trim_end_matches('/').to_owned());
        let reference = match host {
            Some(h) if !h.contains('/') => format!("{h}/{path}"),
            Some(h) => format!("{h}/{}", path.rsplit('/').next().unwrap_or(path)),
            None => path.to_owned(),
        };
        return Some(name_only(&reference));
    }
    let rest = uri
        .strip_prefix("docker://")
        .or_else(|| uri.strip_prefix("oci://"))?;
    Some(name_only(rest))
}

/// `host/repo` of a reference, ignoring its tag or digest (the dependency's digest field counts).
fn name_only(reference: &str) -> Option<String> {
    let name = reference.split('@').next().unwrap_or(reference);
    ImageRef::parse(name).ok().map(|r| r.policy_subject())
}

impl ProvenanceCheck {
    pub fn violations(&self, statement: &Statement) -> Vec<String> {
        let p = Provenance::read(statement);
        let mut out = Vec::new();
        if !self.builder_ids.is_empty() {
            match &p.builder_id {
                Some(b) if self.builder_ids.contains(b) => {}
                found => out.push(format!(
                    "provenance builder {:?} is not an allowed builder (allowed: {})",
                    found.as_deref().unwrap_or("(none)"),
                    list(&self.builder_ids)
                )),
            }
        }
        if !self.build_types.is_empty() {
            match &p.build_type {
                Some(b) if self.build_types.contains(b) => {}
                found => out.push(format!(
                    "provenance build type {:?} is not allowed (allowed: {})",
                    found.as_deref().unwrap_or("(none)"),
                    list(&self.build_types)
                )),
            }
        }
        if !self.source_repositories.is_empty() {
            let allowed = p
                .source_repository
                .as_deref()
                .is_some_and(|r| self.source_repositories.iter().any(|w| w.matches(r)));
            if !allowed {
                let patterns: Vec<&str> = self
                    .source_repositories
                    .iter()
                    .map(Wildcard::as_str)
                    .collect();
                out.push(format!(
                    "provenance source repository {:?} is not allowed (allowed: {})",
                    p.source_repository.as_deref().unwrap_or("(none)"),
                    list(&patterns)
                ));
            }
        }
        if !self.source_refs.is_empty() {
            let allowed = p
                .source_ref
                .as_deref()
                .is_some_and(|r| self.source_refs.iter().any(|w| w.matches(r)));
            if !allowed {
                let patterns: Vec<&str> = self.source_refs.iter().map(Wildcard::as_str).collect();
                out.push(format!(
                    "provenance source ref {:?} is not allowed (allowed: {})",
                    p.source_ref.as_deref().unwrap_or("(none)"),
                    list(&patterns)
                ));
            }
        }
        if let Some(base) = &self.base_images {
            let images = p
                .dependencies
                .iter()
                .filter(|(uri, _)| image_of(uri).is_some())
                .count();
            if images == 0 && !base.allow_none {
                out.push(
                    "the provenance names no image dependency, so base_images checked nothing; set base_images.allow_none: true if images built from scratch are acceptable"
                        .to_owned(),
                );
            }
            for (uri, digest) in &p.dependencies {
                let Some(image) = image_of(uri) else { continue };
                let Some(image) = image else {
                    out.push(format!(
                        "base image {uri:?} is not an image reference umpire can read"
                    ));
                    continue;
                };
                let by_digest = digest.as_ref().is_some_and(|d| {
                    let d = format!("sha256:{d}");
                    base.digests.contains(&d)
                });
                let by_repository = base.repositories.iter().any(|g| g.matches(&image));
                if !by_digest && !by_repository {
                    out.push(format!(
                        "base image {uri:?} ({image}) comes from neither an allowed repository nor an allowed digest"
                    ));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(t: &str, predicate: Value) -> Statement {
        serde_json::from_value(serde_json::json!({
            "_type": "https://in-toto.io/Statement/v1", "subject": [], "predicateType": t, "predicate": predicate
        }))
        .unwrap()
    }

    fn v1(builder: &str, repo: &str, git_ref: &str, deps: Value) -> Statement {
        statement(
            super::super::SLSA_V1,
            serde_json::json!({
                "buildDefinition": {
                    "buildType": "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1",
                    "externalParameters": {"workflow": {"repository": repo, "ref": git_ref, "path": ".github/workflows/release.yml"}},
                    "resolvedDependencies": deps,
                },
                "runDetails": {"builder": {"id": builder}},
            }),
        )
    }

    fn check() -> ProvenanceCheck {
        ProvenanceCheck {
            builder_ids: vec!["https://github.com/actions/runner/github-hosted".into()],
            source_repositories: vec![Wildcard::new("github.com/acme/*").unwrap()],
            source_refs: vec![
                Wildcard::new("refs/heads/main").unwrap(),
                Wildcard::new("refs/tags/v*").unwrap(),
            ],
            base_images: Some(BaseImages {
                repositories: vec![Glob::new("cgr.dev/chainguard/**").unwrap()],
                digests: vec![],
                allow_none: false,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn v1_from_the_allowed_builder_and_source_passes() {
        let deps = serde_json::json!([
            {"uri": "git+https://github.com/acme/app@refs/heads/main", "digest": {"gitCommit": "abc"}},
            {"uri": "pkg:docker/chainguard/static@latest?repository_url=cgr.dev", "digest": {"sha256": "00"}},
        ]);
        let s = v1(
            "https://github.com/actions/runner/github-hosted",
            "https://github.com/acme/app",
            "refs/tags/v1.2.0",
            deps,
        );
        assert_eq!(check().violations(&s), Vec::<String>::new());
    }

    #[test]
    fn each_rule_names_the_offending_value() {
        let deps = serde_json::json!([{"uri": "docker://docker.io/library/ubuntu@sha256:aa", "digest": {"sha256": "aa"}}]);
        let s = v1(
            "https://evil.example/builder",
            "https://github.com/evil/app",
            "refs/heads/dev",
            deps,
        );
        let v = check().violations(&s);
        assert_eq!(v.len(), 4, "{v:?}");
        assert!(v[0].contains("https://evil.example/builder"));
        assert!(v[1].contains("github.com/evil/app"));
        assert!(v[2].contains("refs/heads/dev"));
        assert!(v[3].contains("docker.io/library/ubuntu"));
    }

    #[test]
    fn v02_is_read_too() {
        let s = statement(
            SLSA_V02,
            serde_json::json!({
                "builder": {"id": "https://github.com/actions/runner/github-hosted"},
                "buildType": "x",
                "invocation": {"configSource": {"uri": "git+https://github.com/acme/app@refs/heads/main"}},
                "materials": [{"uri": "pkg:docker/alpine@3.19", "digest": {"sha256": "bb"}}],
            }),
        );
        let p = Provenance::read(&s);
        assert_eq!(p.source_repository.as_deref(), Some("github.com/acme/app"));
        assert_eq!(p.source_ref.as_deref(), Some("refs/heads/main"));
        let v = check().violations(&s);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("docker.io/library/alpine"), "{v:?}");
        let mut by_digest = check();
        by_digest
            .base_images
            .as_mut()
            .unwrap()
            .digests
            .push("sha256:bb".into());
        assert!(by_digest.violations(&s).is_empty());
    }

    #[test]
    fn base_images_with_no_image_dependency_deny_unless_allowed() {
        let deps = serde_json::json!([
            {"uri": "git+https://github.com/acme/app@refs/heads/main", "digest": {"gitCommit": "abc"}},
        ]);
        let s = v1(
            "https://github.com/actions/runner/github-hosted",
            "https://github.com/acme/app",
            "refs/heads/main",
            deps,
        );
        let v = check().violations(&s);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("no image dependency"), "{v:?}");
        let mut lenient = check();
        lenient.base_images.as_mut().unwrap().allow_none = true;
        assert!(lenient.violations(&s).is_empty());
    }
}
