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
        let canonical = canonical_glob(text).map_err(|e| err(&e))?;
        let mut re = String::from("^");
        let mut chars = canonical.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    if chars.peek() == Some(&'/') {
                        // `**/` also matches no segment at all: `ghcr.io/**/app` covers `ghcr.io/app`.
                        chars.next();
                        re.push_str("(?:.*/)?");
                    } else {
                        re.push_str(".*");
                    }
                }
                '*' => re.push_str("[^/]*"),
                '?' => re.push_str("[^/]"),
                c => re.push_str(&regex::escape(&c.to_string())),
            }
        }
        re.push('$');
        let regex = Regex::new(&re).map_err(|e| err(&e.to_string()))?;
        Ok(Self {
            text: canonical,
            regex,
        })
    }

    /// Why this glob can never match a canonical `host[:port]/repository`, if it cannot.
    pub fn never_matches(&self) -> Option<String> {
        let text = self.text.as_str();
        if text.starts_with("oci:") {
            return None;
        }
        if text.chars().any(|c| c.is_ascii_uppercase()) {
            return Some(format!(
                "{text:?} has upper-case letters after the host; repositories are lower-case"
            ));
        }
        if !text.contains('/') && !text.starts_with("**") {
            return Some(format!(
                "{text:?} names no repository; globs match host[:port]/repository (docker.io/library/nginx)"
            ));
        }
        // Repositories hold only [a-z0-9._-] between slashes, and `[`, `]` and `:` belong to the
        // host alone (`[` is literal in umpire's globs, not a character class).
        let (first, rest) = text.split_once('/').unwrap_or(("", text));
        let in_repository = |c: char| {
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || matches!(c, '.' | '_' | '-' | '/' | '*' | '?')
        };
        let in_host = |c: char| in_repository(c) || matches!(c, ':' | '[' | ']');
        if let Some(c) = rest.chars().find(|c| !in_repository(*c)) {
            return Some(format!(
                "{text:?} has {c:?} in its repository part, which no repository name holds (globs know only * ** ?; [ is literal)"
            ));
        }
        if let Some(c) = first.chars().find(|c| !in_host(*c)) {
            return Some(format!(
                "{text:?} has {c:?} in its host part, which no canonical host holds"
            ));
        }
        None
    }

    pub fn matches(&self, subject: &str) -> bool {
        self.regex.is_match(subject)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// The glob with its host in canonical form (as references are, by
/// [`crate::reference::canonical_host`]): lowercased, port in canonical decimal, `:443` dropped,
/// IPv6 literals in RFC 5952 form, Docker Hub's aliases folded; a first segment that Docker's
/// reference rules read as a Docker Hub path (no `.`, `:`, not `localhost`) gets `docker.io/`,
/// and a one-segment Docker Hub name `library/`: `nginx` is `docker.io/library/nginx`, as
/// `nginx` the reference is.
fn canonical_glob(text: &str) -> Result<String, String> {
    if text.starts_with("oci:") || text.starts_with('*') {
        return Ok(text.to_owned());
    }
    let (first, rest) = text.split_once('/').unwrap_or((text, ""));
    if first.contains(['*', '?']) {
        return Ok(text.to_owned());
    }
    let hostlike = first.contains(['.', ':'])
        || first.starts_with('[')
        || first.eq_ignore_ascii_case("localhost");
    if !hostlike {
        let hub = crate::reference::DOCKER_HUB;
        return Ok(if !text.contains('/') {
            format!("{hub}/library/{text}")
        } else {
            format!("{hub}/{text}")
        });
    }
    if rest.is_empty() {
        return Ok(text.to_owned());
    }
    let host = crate::reference::canonical_host(first)?;
    if host == crate::reference::DOCKER_HUB && !rest.contains('/') && !rest.contains('*') {
        return Ok(format!("{host}/library/{rest}"));
    }
    Ok(format!("{host}/{rest}"))
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
    fn globs_take_the_canonical_form_of_references() {
        let g = Glob::new("LOCALHOST:5000/prod/**").unwrap();
        assert!(g.matches("localhost:5000/prod/app"));
        assert_eq!(g.as_str(), "localhost:5000/prod/**");
        assert!(
            Glob::new("ghcr.io:443/acme/*")
                .unwrap()
                .matches("ghcr.io/acme/app")
        );
        assert!(
            Glob::new("index.docker.io/nginx")
                .unwrap()
                .matches("docker.io/library/nginx")
        );
        assert!(
            Glob::new("docker.io/nginx")
                .unwrap()
                .matches("docker.io/library/nginx")
        );
        // Docker's reference rules: no host means Docker Hub, as for references.
        assert_eq!(
            Glob::new("nginx").unwrap().as_str(),
            "docker.io/library/nginx"
        );
        assert_eq!(Glob::new("acme/*").unwrap().as_str(), "docker.io/acme/*");
        for (glob, subject) in [
            ("localhost:05000/app", "localhost:5000/app"),
            ("registry.example.com:0443/**", "registry.example.com/app"),
            ("[0::1]:5000/app", "[::1]:5000/app"),
        ] {
            assert!(Glob::new(glob).unwrap().matches(subject), "{glob}");
        }
        assert!(Glob::new("localhost:0/app").is_err());
    }

    #[test]
    fn double_star_slash_matches_zero_segments() {
        let g = Glob::new("ghcr.io/**/app").unwrap();
        assert!(g.matches("ghcr.io/app"));
        assert!(g.matches("ghcr.io/a/b/app"));
        assert!(!g.matches("ghcr.io/xapp"));
        assert!(!g.matches("ghcr.io/app2"));
    }

    #[test]
    fn globs_that_can_never_match_are_named() {
        assert!(
            Glob::new("ghcr.io/Acme/app")
                .unwrap()
                .never_matches()
                .is_some()
        );
        assert!(Glob::new("ghcr.io").unwrap().never_matches().is_some());
        for never in ["**/nomatch*x[", "ghcr.io/a]pp", "ghcr.io/a:b/c", "**/a%2fb"] {
            assert!(
                Glob::new(never).unwrap().never_matches().is_some(),
                "{never}"
            );
        }
        assert!(
            Glob::new("[::1]:5000/**")
                .unwrap()
                .never_matches()
                .is_none()
        );
        assert!(
            Glob::new("ghcr.io/acme/**")
                .unwrap()
                .never_matches()
                .is_none()
        );
        assert!(Glob::new("**").unwrap().never_matches().is_none());
        assert!(
            Glob::new("*.example.com/**")
                .unwrap()
                .never_matches()
                .is_none()
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
