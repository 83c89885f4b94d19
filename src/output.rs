//! How `umpire verify` prints verdicts: readable text, or one JSON object per line (`--json`) with
//! the same fields as the gRPC response.

use std::fmt::Write as _;

use crate::evidence::manifest::{DOCKER_LIST, OCI_INDEX};
use crate::verdict::Verdict;

pub fn json_line(v: &Verdict) -> String {
    serde_json::to_string(v)
        .unwrap_or_else(|e| format!(r#"{{"error":"cannot encode verdict: {e}"}}"#))
}

pub fn human(v: &Verdict) -> String {
    let mut out = String::new();
    let word = if v.allowed { "ALLOWED" } else { "DENIED " };
    let _ = write!(out, "{word} {}", v.image);
    if !v.digest.is_empty() {
        let _ = write!(out, "\n        digest  {}", v.digest);
        if v.media_type == OCI_INDEX || v.media_type == DOCKER_LIST {
            out.push_str("  (image index: the verdict covers every platform in it)");
        }
    }
    if !v.policy.is_empty() {
        let _ = write!(out, "\n        policy  {}", v.policy);
    }
    if v.retryable {
        out.push_str("\n        retryable: the cause may be transient; try again");
    }
    for f in &v.findings {
        let _ = write!(out, "\n        {:<20} {}", f.code.as_str(), f.message);
    }
    out
}
