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
    for f in &v.warnings {
        let _ = write!(
            out,
            "\n        warning ({}) {} {}",
            f.policy,
            f.code.as_str(),
            f.message
        );
    }
    out
}

/// `text` cut to at most `max` characters at a space, never inside a word (a digest stays
/// whole or goes), with an ellipsis when cut.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let head: String = text.chars().take(max).collect();
    let cut = head.rfind(' ').unwrap_or(head.len());
    format!("{}…", head[..cut].trim_end())
}

/// A table, one line per verdict: verdict, image, digest, policy and the leading reason.
pub fn table(verdicts: &[Verdict]) -> String {
    let rows: Vec<[String; 5]> = verdicts
        .iter()
        .map(|v| {
            let reason = v
                .findings
                .iter()
                .find(|f| f.code != crate::verdict::Code::Satisfied)
                .or(v.findings.first())
                .map(|f| format!("{} {}", f.code.as_str(), shorten(&f.message, 100)))
                .unwrap_or_default();
            let digest = if v.digest.len() > 19 {
                format!("{}…", &v.digest[..19])
            } else {
                v.digest.clone()
            };
            [
                if v.allowed {
                    "ALLOWED"
                } else if v.retryable {
                    "RETRY"
                } else {
                    "DENIED"
                }
                .to_owned(),
                v.image.clone(),
                digest,
                v.policy.clone(),
                reason,
            ]
        })
        .collect();
    let header = ["VERDICT", "IMAGE", "DIGEST", "POLICY", "REASON"];
    let widths: Vec<usize> = (0..4)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: [&str; 5]| {
        let mut out = String::new();
        for i in 0..4 {
            let _ = write!(out, "{:<w$}  ", cells[i], w = widths[i]);
        }
        out.push_str(cells[4]);
        out.trim_end().to_owned()
    };
    let mut out = line(header);
    for r in &rows {
        out.push('\n');
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
    }
    out
}

#[cfg(test)]
mod shorten_tests {
    use super::shorten;

    #[test]
    fn a_digest_is_never_cut_in_half() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let message = format!("no cosign signatures found for {digest} (tag x)");
        let short = shorten(&message, 60);
        assert_eq!(short, "no cosign signatures found for…");
        assert_eq!(shorten("short", 60), "short");
        assert!(shorten(&message, 200).contains(&digest));
    }
}
