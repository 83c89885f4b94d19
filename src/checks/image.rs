//! Rules on the image itself, read from its config blob (`image:` on a policy): runs as a user
//! other than root, built recently enough, labelled as required. Pure: config JSON in, one
//! sentence per violation out.

use std::time::Duration;

use serde_json::Value;

use crate::verify::identity::Matcher;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageRules {
    /// The config's `User` is a numeric uid that the runtime reads as non-zero (kubelet's
    /// `runAsNonRoot`): names and uid 0 in any spelling are violations.
    pub non_root: bool,
    /// How old the image may be, from its `created` time (missing: a violation).
    pub max_age: Option<Duration>,
    /// Labels that must be present, each matching its whole-value regex.
    pub labels: Vec<(String, Matcher)>,
}

/// How far ahead of umpire's clock a `created` time may be (clock skew between builder and here).
const MAX_CLOCK_SKEW: jiff::SignedDuration = jiff::SignedDuration::from_secs(300);

/// The uid a runtime runs `user` (the config's `User`, `uid[:gid]` or a name) as, read as runc and
/// containerd read it: the part before `:` through Go's `strconv.Atoi` (sign, decimal digits, a
/// 64-bit value), then converted to `uint32` (wrapping: `4294967296` is uid 0). `Ok(None)` when no
/// user is set (root); `Err` with the text when it is not a number (a name, or malformed).
pub fn runtime_uid(user: &str) -> Result<Option<u32>, String> {
    if user.is_empty() {
        return Ok(None);
    }
    let parts: Vec<&str> = user.split(':').collect();
    if parts.len() > 2 {
        return Err(format!(
            "{user:?} is not uid[:gid] (the runtime refuses it)"
        ));
    }
    let uid = parts[0];
    let digits = uid.strip_prefix(['+', '-']).unwrap_or(uid);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{uid:?} is a user name, not a uid"));
    }
    let value: i64 = uid
        .parse::<i64>()
        .map_err(|_| format!("{uid:?} is out of range for a uid"))?;
    // Go's uint32(int) keeps the low 32 bits (two's complement), as `as` does.
    Ok(Some(value as u32))
}

impl ImageRules {
    /// Violations of these rules by the image config `config` (of the platform `which`). The
    /// config has passed [`crate::gojson::check`]: fields are looked up as Go's `encoding/json`
    /// matches them.
    pub fn violations(&self, which: &str, config: &Value, now: jiff::Timestamp) -> Vec<String> {
        use crate::gojson::get;
        let mut out = Vec::new();
        let inner = get(config, "config");
        if self.non_root {
            let user = inner
                .and_then(|c| get(c, "User"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            match runtime_uid(user) {
                Ok(Some(uid)) if uid != 0 => {}
                Ok(Some(_)) => out.push(format!(
                    "image.non_root: {which} runs as {user:?}, which the runtime reads as uid 0 (root); set USER to a non-zero numeric uid"
                )),
                Ok(None) => out.push(format!(
                    "image.non_root: {which} runs as root (no User in its config); set USER to a non-zero numeric uid"
                )),
                Err(why) => out.push(format!(
                    "image.non_root: {which} has User {user:?}: {why}; a user name cannot be verified from the image config (kubelet's runAsNonRoot refuses it too): set a numeric USER, e.g. USER 65532"
                )),
            }
        }
        if let Some(max_age) = self.max_age {
            match created(config) {
                None => out.push(format!(
                    "image.max_age: {which} does not say when it was created (no readable `created`)"
                )),
                Some(t) if t.duration_since(now) > MAX_CLOCK_SKEW => out.push(format!(
                    "image.max_age: {which} claims to be created at {t}, in the future (umpire's clock says {now}); a build date cannot be ahead of the clock by more than 5 minutes"
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
            // Labels are a Go map: their keys are matched exactly.
            match inner
                .and_then(|c| get(c, "Labels"))
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

    /// When an image config that meets these rules stops meeting them (`created` + `max_age`).
    pub fn holds_until(&self, config: &Value) -> Option<jiff::Timestamp> {
        let max_age = self.max_age?;
        let age = jiff::SignedDuration::try_from(max_age).ok()?;
        created(config)?.checked_add(age).ok()
    }
}

fn created(config: &Value) -> Option<jiff::Timestamp> {
    crate::gojson::get(config, "created")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
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
            ("app:app", false),
            ("nobody", false),
            ("65532:65532", true),
            ("00", false),
            ("+0:0", false),
            ("-0", false),
            ("4294967296", false),
            ("8589934592:1", false),
            ("4294967297", true),
            ("-1", true),
            ("1000:0", true),
            ("1:2:3", false),
            (":1000", false),
            ("99999999999999999999", false),
            (" 1000", false),
        ] {
            let config = json!({"config": {"User": user}});
            assert_eq!(
                rules.violations("x", &config, now()).is_empty(),
                ok,
                "{user:?}"
            );
        }
        assert!(!rules.violations("x", &json!({}), now()).is_empty());
        // Go matches `user` to the `User` field.
        assert!(
            rules
                .violations("x", &json!({"Config": {"user": "0"}}), now())
                .len()
                == 1
        );
        assert!(
            rules
                .violations("x", &json!({"Config": {"user": "10"}}), now())
                .is_empty()
        );
    }

    #[test]
    fn a_future_build_date_is_a_violation_and_age_bounds_the_verdict() {
        let rules = ImageRules {
            max_age: Some(Duration::from_secs(10 * 86_400)),
            ..Default::default()
        };
        let soon = json!({"created": "2026-12-01T00:04:00Z"});
        assert!(rules.violations("x", &soon, now()).is_empty());
        let later = json!({"created": "2026-12-01T00:06:00Z"});
        let v = rules.violations("x", &later, now());
        assert!(v[0].contains("in the future"), "{v:?}");
        let far = json!({"created": "2126-01-01T00:00:00Z"});
        assert_eq!(rules.violations("x", &far, now()).len(), 1);
        let fresh = json!({"created": "2026-11-30T00:00:00Z"});
        assert_eq!(
            rules.holds_until(&fresh),
            Some("2026-12-10T00:00:00Z".parse().unwrap())
        );
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
