//! SBOMs (SPDX 2.x JSON, CycloneDX JSON): denied packages (purl or name wildcards), denied licenses,
//! and at least one package listed.

use serde_json::Value;

use super::{Wildcard, is_cyclonedx};
use crate::verify::statement::Statement;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SbomCheck {
    pub deny_packages: Vec<Wildcard>,
    pub deny_licenses: Vec<Wildcard>,
    pub require_packages: bool,
}

/// One package as an SBOM lists it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub purl: Option<String>,
    pub licenses: Vec<String>,
}

/// Packages considered per SBOM; more are refused rather than half-checked.
pub const MAX_PACKAGES: usize = 100_000;

fn s(v: &Value, p: &str) -> String {
    v.pointer(p)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .chars()
        .take(500)
        .collect()
}

/// License ids of an SPDX expression: `(MIT OR Apache-2.0) AND GPL-2.0-only WITH Classpath-exception-2.0`.
fn license_ids(expression: &str) -> Vec<String> {
    expression
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter(|t| {
            !t.is_empty()
                && !matches!(
                    *t,
                    "AND" | "OR" | "WITH" | "and" | "or" | "with" | "NOASSERTION" | "NONE"
                )
        })
        .map(str::to_owned)
        .collect()
}

pub fn packages(statement: &Statement) -> Result<Vec<Package>, String> {
    let p = &statement.predicate;
    let cyclonedx = is_cyclonedx(&statement.predicate_type);
    let list = if cyclonedx {
        p.get("components")
    } else {
        p.get("packages")
    };
    let Some(items) = list.and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    if items.len() > MAX_PACKAGES {
        return Err(format!(
            "the SBOM lists {} packages, more than the {MAX_PACKAGES} umpire checks",
            items.len()
        ));
    }
    Ok(items
        .iter()
        .map(|item| {
            if cyclonedx {
                let mut licenses = Vec::new();
                for l in item
                    .get("licenses")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let id = s(l, "/license/id");
                    let expr = s(l, "/expression");
                    let name = s(l, "/license/name");
                    for candidate in [id, name] {
                        if !candidate.is_empty() {
                            licenses.push(candidate);
                        }
                    }
                    licenses.extend(license_ids(&expr));
                }
                Package {
                    name: s(item, "/name"),
                    version: s(item, "/version"),
                    purl: Some(s(item, "/purl")).filter(|p| !p.is_empty()),
                    licenses,
                }
            } else {
                let purl = item
                    .get("externalRefs")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .find(|r| r.get("referenceType").and_then(Value::as_str) == Some("purl"))
                    .map(|r| s(r, "/referenceLocator"));
                let mut licenses = license_ids(&s(item, "/licenseConcluded"));
                licenses.extend(license_ids(&s(item, "/licenseDeclared")));
                licenses.sort();
                licenses.dedup();
                Package {
                    name: s(item, "/name"),
                    version: s(item, "/versionInfo"),
                    purl,
                    licenses,
                }
            }
        })
        .collect())
}

/// Violations reported per SBOM, at most; the rest are counted.
const MAX_REPORTED: usize = 10;

/// Whether the SBOM has the package list its format names (`packages` for SPDX, `components` for
/// CycloneDX): without it, a check has nothing it can read.
fn has_package_list(statement: &Statement) -> bool {
    let key = if is_cyclonedx(&statement.predicate_type) {
        "components"
    } else {
        "packages"
    };
    statement.predicate.get(key).is_some_and(Value::is_array)
}

impl SbomCheck {
    /// Violations, or `Err` when the SBOM has no package list umpire can read (every configured
    /// rule would otherwise pass on nothing).
    pub fn violations(&self, statement: &Statement) -> Result<Vec<String>, String> {
        if !has_package_list(statement) {
            return Err(format!(
                "the SBOM ({}) has no package list umpire reads (SPDX 2.x `packages`, CycloneDX `components`)",
                statement.predicate_type
            ));
        }
        let packages = match packages(statement) {
            Ok(p) => p,
            Err(e) => return Ok(vec![e]),
        };
        let mut out = Vec::new();
        if self.require_packages && packages.is_empty() {
            out.push("the SBOM lists no packages; at least one is required".to_owned());
        }
        for p in &packages {
            let label = p
                .purl
                .clone()
                .unwrap_or_else(|| format!("{}@{}", p.name, p.version));
            if let Some(w) = self
                .deny_packages
                .iter()
                .find(|w| w.matches(&p.name) || p.purl.as_deref().is_some_and(|u| w.matches(u)))
            {
                out.push(format!("package {label} is denied (rule {:?})", w.as_str()));
            }
            for l in &p.licenses {
                if let Some(w) = self.deny_licenses.iter().find(|w| w.matches(l)) {
                    out.push(format!(
                        "package {label} has denied license {l} (rule {:?})",
                        w.as_str()
                    ));
                }
            }
        }
        if out.len() > MAX_REPORTED {
            let more = out.len() - MAX_REPORTED;
            out.truncate(MAX_REPORTED);
            out.push(format!("and {more} more SBOM violations"));
        }
        Ok(out)
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

    fn check() -> SbomCheck {
        SbomCheck {
            deny_packages: vec![Wildcard::new("pkg:npm/event-stream@*").unwrap()],
            deny_licenses: vec![Wildcard::new("AGPL-*").unwrap()],
            require_packages: true,
        }
    }

    #[test]
    fn spdx_packages_and_licenses() {
        let s = statement(
            "https://spdx.dev/Document",
            serde_json::json!({"spdxVersion": "SPDX-2.3", "packages": [
                {"name": "openssl", "versionInfo": "3.0", "licenseConcluded": "Apache-2.0"},
                {"name": "event-stream", "versionInfo": "3.3.6", "licenseConcluded": "MIT",
                 "externalRefs": [{"referenceType": "purl", "referenceLocator": "pkg:npm/event-stream@3.3.6"}]},
                {"name": "db", "versionInfo": "1", "licenseDeclared": "(MIT OR AGPL-3.0-only)"},
            ]}),
        );
        let v = check().violations(&s).unwrap();
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v[0].contains("pkg:npm/event-stream@3.3.6"));
        assert!(v[1].contains("AGPL-3.0-only") && v[1].contains("db@1"));
    }

    #[test]
    fn cyclonedx_and_empty_sboms() {
        let s = statement(
            "https://cyclonedx.org/bom",
            serde_json::json!({"bomFormat": "CycloneDX", "components": [
                {"name": "x", "version": "1", "purl": "pkg:npm/x@1", "licenses": [{"license": {"id": "AGPL-3.0-or-later"}}]},
            ]}),
        );
        assert_eq!(check().violations(&s).unwrap().len(), 1);
        let empty = statement(
            "https://spdx.dev/Document",
            serde_json::json!({"packages": []}),
        );
        assert_eq!(
            check().violations(&empty).unwrap(),
            ["the SBOM lists no packages; at least one is required"]
        );
    }

    #[test]
    fn an_sbom_without_a_package_list_is_unreadable_not_clean() {
        // A denied package in a shape umpire does not read must not pass deny_packages.
        let odd = statement(
            "https://spdx.dev/Document",
            serde_json::json!({"spdxVersion": "SPDX-2.3", "pkgs": [{"name": "event-stream"}]}),
        );
        let lenient = SbomCheck {
            require_packages: false,
            ..check()
        };
        let e = lenient.violations(&odd).unwrap_err();
        assert!(e.contains("no package list"), "{e}");
        let cdx = statement(
            "https://cyclonedx.org/bom",
            serde_json::json!({"packages": [{"name": "x"}]}),
        );
        assert!(lenient.violations(&cdx).is_err());
    }
}
