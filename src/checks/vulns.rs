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

/// (id, severity) of each finding in a Trivy or Grype result.
pub fn findings(statement: &Statement) -> Vec<(String, Severity)> {
    let result = statement
        .predicate
        .pointer("/scanner/result")
        .unwrap_or(&Value::Null);
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
    out
}

impl VulnCheck {
    pub fn violations(&self, statement: &Statement, now: jiff::Timestamp) -> Vec<String> {
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
        let found = findings(statement);
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
            .filter(|c| found.iter().any(|(id, _)| id == *c))
            .collect();
        if !denied.is_empty() {
            out.push(format!("denied CVEs are present: {}", list(&denied)));
        }
        out
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
        assert!(check.violations(&ok, now).is_empty());
        let critical = report(
            "2026-11-28T12:00:00Z",
            serde_json::json!([{"VulnerabilityID": "CVE-2", "Severity": "CRITICAL"}]),
        );
        let v = check.violations(&critical, now);
        assert_eq!(v.len(), 1);
        assert!(v[0].contains("CVE-2 (critical)"));
        let old = report("2026-10-01T00:00:00Z", serde_json::json!([]));
        assert!(check.violations(&old, now)[0].contains("2026-10-01"));
        let xz = report(
            "2026-11-28T12:00:00Z",
            serde_json::json!([{"VulnerabilityID": "CVE-2024-3094", "Severity": "LOW"}]),
        );
        assert!(check.violations(&xz, now)[0].contains("CVE-2024-3094"));
    }
}
