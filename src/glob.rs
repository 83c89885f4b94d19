//! Image globs from policies: `*` matches within one path segment, `**` across segments, `?` one
//! character of a segment. Globs match the whole of `host[:port]/repository`.

use regex::Regex;

#[derive(Debug, Clone)]
pub struct Glob {
    text: String,
    regex: Regex,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid image glob {glob:?}: {reason}")]
pub struct GlobError {
    glob: String,
    reason: String,
}

impl Glob {
    pub fn new(text: &str) -> Result<Self, GlobError> {
        let err = |reason: &str| GlobError {
            glob: text.to_owned(),
            reason: reason.to_owned(),
        };
        if text.is_empty() {
            return Err(err("empty"));
        }
        if text.contains('@') || looks_tagged(text.strip_prefix("oci:").unwrap_or(text)) {
            return Err(err(
                "globs match host/repository only; drop the tag or digest",
            ));
        }
        let mut re = String::from("^");
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    re.push_str(".*");
                }
                '*' => re.push_str("[^/]*"),
                '?' => re.push_str("[^/]"),
                c => re.push_str(&regex::escape(&c.to_string())),
            }
        }
        re.push('$');
        let regex = Regex::new(&re).map_err(|e| err(&e.to_string()))?;
        Ok(Self {
            text: text.to_owned(),
            regex,
        })
    }

    pub fn matches(&self, subject: &str) -> bool {
        self.regex.is_match(subject)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// A `:` in the last path segment is a tag; the first segment may be `host:port`.
fn looks_tagged(text: &str) -> bool {
    text.split_once('/').is_some_and(|(_, rest)| {
        rest.rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_stays_in_a_segment_double_star_crosses() {
        let g = Glob::new("registry.example.com/prod/*").unwrap();
        assert!(g.matches("registry.example.com/prod/app"));
        assert!(!g.matches("registry.example.com/prod/team/app"));
        let g = Glob::new("registry.example.com/prod/**").unwrap();
        assert!(g.matches("registry.example.com/prod/team/app"));
        assert!(!g.matches("registry.example.com/production/app"));
        assert!(!g.matches("evil.com/registry.example.com/prod/app"));
    }

    #[test]
    fn matches_whole_value_and_escapes_regex_metacharacters() {
        let g = Glob::new("127.0.0.1:5000/app").unwrap();
        assert!(g.matches("127.0.0.1:5000/app"));
        assert!(!g.matches("127a0a0a1:5000/app"));
        assert!(!g.matches("127.0.0.1:5000/app2"));
        assert!(Glob::new("**").unwrap().matches("any/thing"));
        assert!(
            Glob::new("oci:**/examples/demo")
                .unwrap()
                .matches("oci:/abs/examples/demo")
        );
    }

    #[test]
    fn rejects_tags_and_digests() {
        assert!(Glob::new("reg.io/app:latest").is_err());
        assert!(Glob::new("reg.io/app@sha256:00").is_err());
        assert!(Glob::new("").is_err());
        assert!(Glob::new("reg.io:5000/app").is_ok());
    }
}
