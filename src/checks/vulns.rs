//! Vulnerability reports (cosign's `vuln/v1` predicate, with a Trivy or Grype result): the highest
//! severity allowed, how old the scan may be, and CVEs denied outright.

use std::time::Duration;

use serde_json::Value;

use super::list;
use crate::verify::statement::Statement;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Unknown,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "unknown" | "negligible" | "none" => Severity::Unknown,
            "low" => Severity::Low,
            "medium" | "moderate" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VulnCheck {
    /// The highest severity allowed; anything above denies.
    pub max_severity: Option<Severity>,
    /// How old the scan may be.
    pub max_age: Option<Duration>,
    pub deny_cves: Vec<String>,
}

/// The scanner-result formats umpire reads, for messages.
pub const READABLE: &str = "Trivy JSON, Grype JSON or SARIF 2.1.0";

/// (id, severity) of each finding in a Trivy, Grype or SARIF 2.1.0 result, or `Err` naming what
/// was found when the result is in none of these formats (a report umpire cannot read has been
/// checked for nothing).
pub fn findings(statement: &Statement) -> Result<Vec<(String, Severity)>, String> {
    let result = statement
        .predicate
        .pointer("/scanner/result")
        .unwrap_or(&Value::Null);
    let trivy = result
        .get("Results")
        .is_some_and(|r| r.is_array() || r.is_null())
        || result.get("SchemaVersion").is_some_and(Value::is_number);
    let grype = result.get("matches").is_some_and(Value::is_array);
    let sarif = result.get("runs").is_some_and(Value::is_array)
        && (result.get("version").and_then(Value::as_str) == Some("2.1.0")
            || result
                .get("$schema")
                .and_then(Value::as_str)
                .is_some_and(|s| s.contains("sarif")));
    if !(trivy || grype || sarif) {
        let shape = match result {
            Value::Null => "no scanner.result".to_owned(),
            Value::Object(o) => format!(
                "a scanner.result with keys {}",
                o.keys().take(5).cloned().collect::<Vec<_>>().join(", ")
            ),
            other => format!("a scanner.result that is a {}", kind(other)),
        };
        return Err(format!(
            "the vulnerability report has {shape}, in none of the formats umpire reads ({READABLE})"
        ));
    }
    let mut out = Vec::new();
    // Trivy: Results[].Vulnerabilities[]
    for r in result
        .get("Results")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for v in r
            .get("Vulnerabilities")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let id = v
                .get("VulnerabilityID")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let sev = v
                .get("Severity")
                .and_then(Value::as_str)
                .and_then(Severity::parse)
                .unwrap_or(Severity::Unknown);
            out.push((id.chars().take(100).collect(), sev));
        }
    }
    // Grype: matches[].vulnerability
    for m in result
        .get("matches")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let id = m
            .pointer("/vulnerability/id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let sev = m
            .pointer("/vulnerability/severity")
            .and_then(Value::as_str)
            .and_then(Severity::parse)
            .unwrap_or(Severity::Unknown);
        out.push((id.chars().take(100).collect(), sev));
    }
    if sarif {
        out.extend(sarif_findings(result));
    }
    Ok(out)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// SARIF 2.1.0 (as Trivy and Grype write it): `runs[].results[]`, each naming its rule; the
/// severity from the rule's `security-severity` (CVSS), else a severity tag (Trivy), else the
/// result's level.
fn sarif_findings(sarif: &Value) -> Vec<(String, Severity)> {
    let mut out = Vec::new();
    for run in sarif
        .get("runs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .take(100)
    {
        let rules: Vec<&Value> = run
            .pointer("/tool/driver/rules")
            .and_then(Value::as_array)
            .map(|r| r.iter().collect())
            .unwrap_or_default();
        for result in run
            .get("results")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .take(100_000)
        {
            let by_index = result
                .get("ruleIndex")
                .and_then(Value::as_u64)
                .and_then(|i| rules.get(i as usize).copied());
            let id = result
                .get("ruleId")
                .and_then(Value::as_str)
                .or_else(|| by_index.and_then(|r| r.get("id")).and_then(Value::as_str))
                .unwrap_or_default();
            let rule = by_index.or_else(|| {
                rules
                    .iter()
                    .copied()
                    .find(|r| r.get("id").and_then(Value::as_str) == Some(id))
            });
            let cvss = rule
                .and_then(|r| r.pointer("/properties/security-severity"))
                .and_then(|v| match v {
                    Value::String(s) => s.trim().parse::<f64>().ok(),
                    other => other.as_f64(),
                });
            let tagged = rule
                .and_then(|r| r.pointer("/properties/tags"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter_map(Severity::parse)
                .max();
            let level = match result.get("level").and_then(Value::as_str) {
                Some("error") => Some(Severity::High),
                Some("warning") => Some(Severity::Medium),
                Some("note") => Some(Severity::Low),
                _ => None,
            };
            let severity = cvss
                .map(|score| match score {
                    s if s >= 9.0 => Severity::Critical,
                    s if s >= 7.0 => Severity::High,
                    s if s >= 4.0 => Severity::Medium,
                    s if s > 0.0 => Severity::Low,
                    _ => Severity::Unknown,
                })
                .or(tagged)
                .or(level)
                .unwrap_or(Severity::Unknown);
            out.push((id.chars().take(100).collect(), severity));
        }
    }
    out
}

/// A finding's id names `cve`: equal, or (Grype's SARIF rule ids) `cve` followed by `-package`.
fn names_cve(id: &str, cve: &str) -> bool {
    id == cve
        || id
            .strip_prefix(cve)
            .is_some_and(|rest| rest.starts_with('-'))
}

impl VulnCheck {
    /// Violations, or `Err` when severities or CVEs are checked and the report is unreadable.
    pub fn violations(
        &self,
        statement: &Statement,
        now: jiff::Timestamp,
    ) -> Result<Vec<String>, String> {
        self.violations_excluding(statement, now, &|_| false)
    }

    /// As [`VulnCheck::violations`], with the CVEs `removed` says (VEX) left out of the severity
    /// and deny-list checks.
    pub fn violations_excluding(
        &self,
        statement: &Statement,
        now: jiff::Timestamp,
        removed: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        if let Some(max_age) = self.max_age {
            let finished = statement
                .predicate
                .pointer("/metadata/scanFinishedOn")
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<jiff::Timestamp>().ok());
            match finished {
                None => out.push("the vulnerability report does not say when the scan finished (metadata.scanFinishedOn)".to_owned()),
                Some(t) => {
                    let age = now.duration_since(t);
                    if age.as_secs() > max_age.as_secs() as i64 {
                        out.push(format!(
                            "the vulnerability scan finished at {t}, {} h ago; at most {} h is allowed",
                            age.as_secs() / 3600,
                            max_age.as_secs() / 3600
                        ));
                    }
                }
            }
        }
        let reads_results = self.max_severity.is_some() || !self.deny_cves.is_empty();
        let found: Vec<(String, Severity)> = match findings(statement) {
            Ok(f) => f.into_iter().filter(|(id, _)| !removed(id)).collect(),
            Err(e) if reads_results => return Err(e),
            Err(_) => Vec::new(),
        };
        if let Some(max) = self.max_severity {
            let mut over: Vec<&(String, Severity)> =
                found.iter().filter(|(_, s)| *s > max).collect();
            over.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            over.dedup();
            if !over.is_empty() {
                let shown: Vec<String> = over
                    .iter()
                    .take(5)
                    .map(|(id, s)| format!("{id} ({})", s.name()))
                    .collect();
                out.push(format!(
                    "{} vulnerabilities above the allowed severity {}: {}{}",
                    over.len(),
                    max.name(),
                    shown.join(", "),
                    if over.len() > 5 { ", ..." } else { "" }
                ));
            }
        }
        let denied: Vec<&String> = self
            .deny_cves
            .iter()
            .filter(|c| found.iter().any(|(id, _)| names_cve(id, c)))
            .collect();
        if !denied.is_empty() {
            out.push(format!("denied CVEs are present: {}", list(&denied)));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(finished: &str, vulns: Value) -> Statement {
        serde_json::from_value(serde_json::json!({
            "_type": "https://in-toto.io/Statement/v1", "subject": [], "predicateType": super::super::COSIGN_VULN,
            "predicate": {"scanner": {"uri": "pkg:github/aquasecurity/trivy", "result": {"Results": [{"Vulnerabilities": vulns}]}},
                          "metadata": {"scanStartedOn": finished, "scanFinishedOn": finished}}
        }))
        .unwrap()
    }

    #[test]
    fn severity_age_and_cves() {
        let now: jiff::Timestamp = "2026-11-29T12:00:00Z".parse().unwrap();
        let check = VulnCheck {
            max_severity: Some(Severity::High),
            max_age: Some(Duration::from_secs(7 * 24 * 3600)),
            deny_cves: vec!["CVE-2024-3094".into()],
        };
        let ok = report(
            "2026-11-28T12:00:00Z",
            serde_json::json!([{"VulnerabilityID": "CVE-1", "Severity": "HIGH"}]),
        );
        assert!(check.violations(&ok, now).unwrap().is_empty());
        let critical = report(
            "2026-11-28T12:00:00Z",
            serde_json::json!([{"VulnerabilityID": "CVE-2", "Severity": "CRITICAL"}]),
        );
        let v = check.violations(&critical, now).unwrap();
        assert_eq!(v.len(), 1);
        assert!(v[0].contains("CVE-2 (critical)"));
        let old = report("2026-10-01T00:00:00Z", serde_json::json!([]));
        assert!(check.violations(&old, now).unwrap()[0].contains("2026-10-01"));
        let xz = report(
            "2026-11-28T12:00:00Z",
            serde_json::json!([{"VulnerabilityID": "CVE-2024-3094", "Severity": "LOW"}]),
        );
        assert!(check.violations(&xz, now).unwrap()[0].contains("CVE-2024-3094"));
    }

    fn with_result(result: Value) -> Statement {
        serde_json::from_value(serde_json::json!({
            "_type": "https://in-toto.io/Statement/v1", "subject": [], "predicateType": super::super::COSIGN_VULN,
            "predicate": {"scanner": {"uri": "x", "result": result},
                          "metadata": {"scanFinishedOn": "2026-11-28T12:00:00Z"}}
        }))
        .unwrap()
    }

    #[test]
    fn a_report_in_a_format_umpire_does_not_read_is_not_a_pass() {
        let now: jiff::Timestamp = "2026-11-29T12:00:00Z".parse().unwrap();
        let check = VulnCheck {
            max_severity: Some(Severity::Low),
            max_age: None,
            deny_cves: vec![],
        };
        for unreadable in [
            serde_json::json!({"vulns": [{"id": "CVE-9", "sev": "CRITICAL"}]}),
            serde_json::json!(null),
            serde_json::json!("CRITICAL everywhere"),
            serde_json::json!({"runs": [], "version": "1.0"}),
        ] {
            let e = check
                .violations(&with_result(unreadable.clone()), now)
                .unwrap_err();
            assert!(e.contains("SARIF 2.1.0"), "{unreadable}: {e}");
        }
        // A clean report in a format umpire reads passes.
        let clean = with_result(serde_json::json!({"SchemaVersion": 2, "ArtifactName": "x"}));
        assert_eq!(check.violations(&clean, now), Ok(vec![]));
        let clean = with_result(serde_json::json!({"matches": []}));
        assert_eq!(check.violations(&clean, now), Ok(vec![]));
    }

    #[test]
    fn sarif_from_trivy_and_grype() {
        let now: jiff::Timestamp = "2026-11-29T12:00:00Z".parse().unwrap();
        let check = VulnCheck {
            max_severity: Some(Severity::Medium),
            max_age: None,
            deny_cves: vec!["CVE-2024-3094".into()],
        };
        // Trivy: severity as a tag on the rule.
        let trivy = with_result(serde_json::json!({
            "version": "2.1.0", "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "runs": [{"tool": {"driver": {"name": "Trivy", "rules": [
                {"id": "CVE-2023-1", "properties": {"tags": ["vulnerability", "security", "CRITICAL"]}}
            ]}}, "results": [{"ruleId": "CVE-2023-1", "ruleIndex": 0, "level": "error"}]}]
        }));
        let v = check.violations(&trivy, now).unwrap();
        assert!(v[0].contains("CVE-2023-1 (critical)"), "{v:?}");
        // Grype: CVSS in security-severity, rule ids with the package appended.
        let grype = with_result(serde_json::json!({
            "version": "2.1.0",
            "runs": [{"tool": {"driver": {"name": "Grype", "rules": [
                {"id": "CVE-2024-3094-xz-utils", "properties": {"security-severity": "3.1"}},
                {"id": "CVE-2023-2-openssl", "properties": {"security-severity": "7.5"}}
            ]}}, "results": [{"ruleId": "CVE-2024-3094-xz-utils"}, {"ruleId": "CVE-2023-2-openssl"}]}]
        }));
        let v = check.violations(&grype, now).unwrap();
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v[0].contains("CVE-2023-2-openssl (high)"), "{v:?}");
        assert!(v[1].contains("CVE-2024-3094"), "{v:?}");
        assert!(!names_cve("CVE-2024-30941-x", "CVE-2024-3094"));
    }
}
