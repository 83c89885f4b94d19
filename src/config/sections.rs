//! Smaller sections: the verdict cache and Redis, durations.

use super::raw::*;
use super::*;

impl<F: Fn(&str, String) -> ConfigError> Validator<'_, F> {
    pub(super) fn cache(&self, raw: Option<RawCache>) -> Result<CacheSettings, ConfigError> {
        let bad = self.invalid;
        let d = CacheSettings::default();
        let Some(c) = raw else { return Ok(d) };
        let ttl = |key: &str, v: Option<&str>, default: Duration| match v {
            None => Ok(default),
            Some("0") => Ok(Duration::ZERO),
            Some(v) => parse_duration(v).ok_or_else(|| {
                bad(
                    key,
                    format!("expected a duration like 30s, 5m or 1h (or 0), found {v:?}"),
                )
            }),
        };
        let retry_ttl = ttl("cache.retry_ttl", c.retry_ttl.as_deref(), d.retry_ttl)?;
        if retry_ttl > MAX_RETRY_TTL {
            return Err(bad(
                "cache.retry_ttl",
                format!("at most {MAX_RETRY_TTL:?}: transient denials must be re-checked soon"),
            ));
        }
        let redis = match c.redis {
            None => None,
            Some(r) => {
                // Offline (`config check --offline` in a policy repository's CI) the secrets
                // exist only at run time: a placeholder stands in for them.
                let key = if self.offline {
                    "offline-placeholder-key".to_owned()
                } else {
                    std::env::var(&r.hmac_key_env).unwrap_or_default()
                };
                if key.len() < 16 {
                    return Err(bad(
                        "cache.redis.hmac_key_env",
                        format!(
                            "environment variable {} must hold the shared-cache HMAC key (at least 16 bytes)",
                            r.hmac_key_env
                        ),
                    ));
                }
                if !(r.url.starts_with("redis://")
                    || r.url.starts_with("rediss://")
                    || r.url.starts_with("unix://"))
                {
                    return Err(bad(
                        "cache.redis.url",
                        format!("expected redis://host:port, found {:?}", r.url),
                    ));
                }
                let tls_ca = match &r.tls_ca {
                    None => None,
                    Some(_) if !r.url.starts_with("rediss://") => {
                        return Err(bad(
                            "cache.redis.tls_ca",
                            "is for rediss:// URLs only".into(),
                        ));
                    }
                    Some(path) => {
                        let path = self.named(path);
                        let pem = std::fs::read(&path).map_err(|e| {
                            bad(
                                "cache.redis.tls_ca",
                                format!("cannot read {}: {e}", path.display()),
                            )
                        })?;
                        if pem::parse_many(&pem).map_or(true, |b| b.is_empty()) {
                            return Err(bad(
                                "cache.redis.tls_ca",
                                format!("no PEM block found in {}", path.display()),
                            ));
                        }
                        Some(pem)
                    }
                };
                let password = match &r.password_env {
                    None => None,
                    Some(_) if self.offline => Some(String::new()),
                    Some(var) => match std::env::var(var) {
                        Ok(p) if !p.is_empty() => Some(p),
                        _ => {
                            return Err(bad(
                                "cache.redis.password_env",
                                format!("environment variable {var} must hold Redis's password"),
                            ));
                        }
                    },
                };
                Some(RedisSettings {
                    tls_ca,
                    password,
                    url: r.url,
                    hmac_key: key.into_bytes(),
                    timeout: self.duration(
                        "cache.redis.timeout",
                        r.timeout.as_deref(),
                        Duration::from_millis(250),
                    )?,
                })
            }
        };
        Ok(CacheSettings {
            allowed_ttl: ttl("cache.allowed_ttl", c.allowed_ttl.as_deref(), d.allowed_ttl)?,
            denied_ttl: ttl("cache.denied_ttl", c.denied_ttl.as_deref(), d.denied_ttl)?,
            retry_ttl,
            tag_ttl: ttl("cache.tag_ttl", c.tag_ttl.as_deref(), d.tag_ttl)?,
            max_entries: match c.max_entries {
                Some(0) => return Err(bad("cache.max_entries", "must be greater than 0".into())),
                Some(n) => n,
                None => d.max_entries,
            },
            redis,
        })
    }

    pub(super) fn duration(
        &self,
        key: &str,
        value: Option<&str>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match value {
            None => Ok(default),
            Some(v) => match parse_duration(v) {
                Some(d) if !d.is_zero() => Ok(d),
                _ => Err((self.invalid)(
                    key,
                    format!("expected a duration like 500ms, 30s, 5m or 1h, found {v:?}"),
                )),
            },
        }
    }
}
