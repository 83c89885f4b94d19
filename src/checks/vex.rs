//! OpenVEX documents (v0.2.0, https://openvex.dev/ns): which vulnerabilities a supplier says do not
//! affect an image. Pure: verified documents in, the CVEs they remove from vulnerability checks
//! out. Only `not_affected` (with a justification or an impact statement) and `fixed` remove a
//! CVE; `affected` and `under_investigation` change nothing; for one CVE the latest statement (by
//! its `timestamp`, else the document's) decides. A statement whose `products` name other
//! artifacts than this image does not apply to it.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::digest::Digest;

/// Whether `predicate_type` is an OpenVEX document (`https://openvex.dev/ns` and its versions, or
/// cosign's `openvex` shorthand as some tools write it).
pub fn is_openvex(predicate_type: &str) -> bool {
    predicate_type == "openvex"
        || predicate_type == super::OPENVEX
        || predicate_type.starts_with("https://openvex.dev/ns/")
}

/// What a VEX statement said about one CVE, as the latest applicable statement said it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub status: String,
    pub justification: String,
    pub author: String,
    pub timestamp: Option<jiff::Timestamp>,
}

impl Decision {
    /// Whether this decision removes the CVE from the checks.
    pub fn removes(&self) -> bool {
        self.status == "fixed" || (self.status == "not_affected" && !self.justification.is_empty())
    }
}

/// The latest applicable decision per CVE in `documents` (each an OpenVEX document already
/// verified and bound to `digest` by its attestation), and notes about statements that did not
/// count (for warnings).
pub fn decisions(
    documents: &[&Value],
    digest: &Digest,
) -> (BTreeMap<String, Decision>, Vec<String>) {
    let mut out: BTreeMap<String, Decision> = BTreeMap::new();
    let mut notes = Vec::new();
    for doc in documents {
        let author = doc
            .get("author")
            .and_then(Value::as_str)
            .unwrap_or("an unnamed author")
            .to_owned();
        let doc_time = time(doc.get("timestamp"));
        let Some(statements) = doc.get("statements").and_then(Value::as_array) else {
            notes.push(format!(
                "a VEX document by {author} has no statements list: it removes nothing"
            ));
            continue;
        };
        for s in statements.iter().take(10_000) {
            let cve = match s.get("vulnerability") {
                Some(Value::String(name)) => name.clone(),
                Some(v) => v
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                None => String::new(),
            };
            let status = s
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if cve.is_empty() || status.is_empty() {
                notes.push(format!(
                    "a VEX statement by {author} names no vulnerability or status: it removes nothing"
                ));
                continue;
            }
            if !names_this_image(s.get("products"), digest) {
                notes.push(format!(
                    "a VEX statement by {author} about {cve} is for other products than {digest}: it does not apply"
                ));
                continue;
            }
            let justification = s
                .get("justification")
                .and_then(Value::as_str)
                .or_else(|| s.get("impact_statement").and_then(Value::as_str))
                .unwrap_or_default()
                .to_owned();
            let decision = Decision {
                status,
                justification,
                author: author.clone(),
                timestamp: time(s.get("timestamp")).or(doc_time),
            };
            let later = match out.get(&cve) {
                None => true,
                Some(known) => decision.timestamp >= known.timestamp,
            };
            if later {
                out.insert(cve, decision);
            }
        }
    }
    (out, notes)
}

fn time(v: Option<&Value>) -> Option<jiff::Timestamp> {
    v.and_then(Value::as_str).and_then(|t| t.parse().ok())
}

/// Whether a statement's `products` include this image: no products (the statement is about the
/// attestation's subject), or a product whose identifier names the digest (a `pkg:oci` purl
/// carries it as `@sha256%3A<hex>`).
fn names_this_image(products: Option<&Value>, digest: &Digest) -> bool {
    let Some(list) = products.and_then(Value::as_array).filter(|l| !l.is_empty()) else {
        return true;
    };
    let plain = digest.as_str().to_owned();
    let escaped = plain.replace(':', "%3A");
    list.iter().any(|p| {
        let ids = [
            p.as_str(),
            p.get("@id").and_then(Value::as_str),
            p.pointer("/identifiers/purl").and_then(Value::as_str),
        ];
        ids.into_iter().flatten().any(|id| {
            id.ends_with(&format!("@{plain}"))
                || id.contains(&format!("@{escaped}"))
                || id.contains(&format!("@{plain}?"))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_latest_applicable_statement_decides() {
        let d = Digest::of(b"image");
        let purl = format!("pkg:oci/app@{}", d.as_str().replace(':', "%3A"));
        let doc = json!({"author": "Acme", "timestamp": "2026-01-01T00:00:00Z", "statements": [
            {"vulnerability": {"name": "CVE-1"}, "products": [{"@id": purl}], "status": "not_affected", "justification": "vulnerable_code_not_in_execute_path"},
            {"vulnerability": {"name": "CVE-2"}, "status": "fixed"},
            {"vulnerability": {"name": "CVE-3"}, "status": "not_affected"},
            {"vulnerability": {"name": "CVE-4"}, "products": [{"@id": "pkg:oci/other@sha256%3Aabc"}], "status": "not_affected", "justification": "component_not_present"},
            {"vulnerability": {"name": "CVE-5"}, "status": "not_affected", "justification": "inline_mitigations_already_exist", "timestamp": "2026-01-01T00:00:00Z"},
            {"vulnerability": {"name": "CVE-5"}, "status": "affected", "timestamp": "2026-02-01T00:00:00Z"},
            {"vulnerability": "CVE-6", "status": "under_investigation"},
        ]});
        let (decided, notes) = decisions(&[&doc], &d);
        assert!(decided["CVE-1"].removes());
        assert!(decided["CVE-2"].removes());
        assert!(
            !decided["CVE-3"].removes(),
            "not_affected needs a justification"
        );
        assert!(!decided.contains_key("CVE-4"), "another product");
        assert!(!decided["CVE-5"].removes(), "a later `affected` wins");
        assert!(!decided["CVE-6"].removes());
        assert_eq!(decided["CVE-1"].author, "Acme");
        assert!(notes.iter().any(|n| n.contains("CVE-4")), "{notes:?}");
        assert!(is_openvex("https://openvex.dev/ns/v0.2.0"));
        assert!(!is_openvex("https://openvex.dev/nsx"));
    }
}
