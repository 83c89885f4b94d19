//! Rules on the image itself, read from its config blob (`image:` on a policy): runs as a user
//! other than root, built recently enough, labelled as required. Pure: config JSON in, one
//! sentence per violation out.

use std::time::Duration;

use serde_json::Value;

use crate::verify::identity::Matcher;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageRules {
    /// The config's `User` is set and is neither `0` nor `root` (nor `0:…` / `root:…`).
    pub non_root: bool,
    /// How old the image may be, from its `created` time (missing: a violation).
    pub max_age: Option<Duration>,
    /// Labels that must be present, each matching its whole-value regex.
    pub labels: Vec<(String, Matcher)>,
}

impl ImageRules {
    /// Violations of these rules by the image config `config` (of the platform `which`).
    pub fn violations(&self, which: &str, config: &Value, now: jiff::Timestamp) -> Vec<String> {
        let mut out = Vec::new();
        if self.non_root {
            let user = config
                .pointer("/config/User")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let name = user.split(':').next().unwrap_or_default();
            if name.is_empty() || name == "0" || name == "root" {
                out.push(format!(
                    "image.non_root: {which} runs as {}; set USER to a non-root user",
                    if user.is_empty() {
                        "root (no User in its config)".to_owned()
                    } else {
                        format!("{user:?}")
                    }
                ));
            }
        }
        if let Some(max_age) = self.max_age {
            let created = config
                .get("created")
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<jiff::Timestamp>().ok());
            match created {
                None => out.push(format!(
                    "image.max_age: {which} does not say when it was created (no readable `created`)"
                )),
                Some(t) => {
                    let age = now.duration_since(t).as_secs();
                    if age > max_age.as_secs() as i64 {
                        out.push(format!(
                            "image.max_age: {which} was created at {t}, {} days ago; at most {} days are allowed",
                            age / 86_400,
                            max_age.as_secs() / 86_400
                        ));
                    }
                }
            }
        }
        for (name, matcher) in &self.labels {
            match config
                .pointer("/config/Labels")
                .and_then(|l| l.get(name))
                .and_then(Value::as_str)
            {
                Some(v) if matcher.matches(v) => {}
                Some(v) => out.push(format!(
                    "image.labels: {which} has label {name}={v:?}, which does not match {matcher}"
                )),
                None => out.push(format!("image.labels: {which} has no label {name}")),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> jiff::Timestamp {
        "2026-12-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn non_root_users() {
        let rules = ImageRules {
            non_root: true,
            ..Default::default()
        };
        for (user, ok) in [
            ("", false),
            ("0", false),
            ("root", false),
            ("0:0", false),
            ("root:wheel", false),
            ("1000", true),
            ("app:app", true),
            ("65532:65532", true),
        ] {
            let config = json!({"config": {"User": user}});
            assert_eq!(
                rules.violations("x", &config, now()).is_empty(),
                ok,
                "{user:?}"
            );
        }
        assert!(!rules.violations("x", &json!({}), now()).is_empty());
    }

    #[test]
    fn age_and_labels() {
        let rules = ImageRules {
            non_root: false,
            max_age: Some(Duration::from_secs(90 * 86_400)),
            labels: vec![(
                "org.opencontainers.image.source".into(),
                Matcher::regex("https://github\\.com/acme/.*").unwrap(),
            )],
        };
        let fresh = json!({"created": "2026-11-01T00:00:00Z", "config": {"Labels": {"org.opencontainers.image.source": "https://github.com/acme/app"}}});
        assert!(rules.violations("x", &fresh, now()).is_empty());
        let stale = json!({"created": "2025-01-01T00:00:00Z", "config": {"Labels": {"org.opencontainers.image.source": "https://github.com/evil/acme/app"}}});
        let v = rules.violations("x", &stale, now());
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v[0].contains("days ago") && v[1].contains("evil"), "{v:?}");
        let v = rules.violations("x", &json!({}), now());
        assert!(
            v[0].contains("created") && v[1].contains("no label"),
            "{v:?}"
        );
    }
}
