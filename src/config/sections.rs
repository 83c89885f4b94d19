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
                    Some(path) => Some(self.ca_certificates("cache.redis.tls_ca", path)?),
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

impl<F: Fn(&str, String) -> ConfigError> Validator<'_, F> {
    /// `limits`: every count and size positive, the idle timeout longer than the deadline.
    pub(super) fn limits(&self, l: RawLimits) -> Result<Limits, ConfigError> {
        let bad = self.invalid;
        let defaults = Limits::default();
        let positive = |key: &str, v: Option<u64>, d: u64| match v {
            Some(0) => Err(bad(key, "must be greater than 0".into())),
            Some(v) => Ok(v),
            None => Ok(d),
        };
        let limits = Limits {
            max_manifest_bytes: positive(
                "limits.max_manifest_bytes",
                l.max_manifest_bytes,
                defaults.max_manifest_bytes,
            )?,
            max_signature_layer_bytes: positive(
                "limits.max_signature_layer_bytes",
                l.max_signature_layer_bytes,
                defaults.max_signature_layer_bytes,
            )?,
            max_attestation_bytes: positive(
                "limits.max_attestation_bytes",
                l.max_attestation_bytes,
                defaults.max_attestation_bytes,
            )?,
            max_signatures: positive(
                "limits.max_signatures",
                l.max_signatures.map(|n| n as u64),
                defaults.max_signatures as u64,
            )? as usize,
            deadline: self.duration("limits.deadline", l.deadline.as_deref(), defaults.deadline)?,
            connect_timeout: self.duration(
                "limits.connect_timeout",
                l.connect_timeout.as_deref(),
                defaults.connect_timeout,
            )?,
            max_in_flight: positive(
                "limits.max_in_flight",
                l.max_in_flight.map(|n| n as u64),
                defaults.max_in_flight as u64,
            )? as usize,
            max_evidence_bytes: positive(
                "limits.max_evidence_bytes",
                l.max_evidence_bytes,
                defaults.max_evidence_bytes,
            )?,
            allow_bypass_cache: l.allow_bypass_cache.unwrap_or(defaults.allow_bypass_cache),
            max_registry_requests: positive(
                "limits.max_registry_requests",
                l.max_registry_requests.map(|n| n as u64),
                defaults.max_registry_requests as u64,
            )? as usize,
            header_timeout: self.duration(
                "limits.header_timeout",
                l.header_timeout.as_deref(),
                defaults.header_timeout,
            )?,
            idle_timeout: self.duration(
                "limits.idle_timeout",
                l.idle_timeout.as_deref(),
                defaults.idle_timeout,
            )?,
            max_connections: positive(
                "limits.max_connections",
                l.max_connections.map(|n| n as u64),
                defaults.max_connections as u64,
            )? as usize,
        };
        // A request waiting for its verdict sends nothing: the idle timeout must outlast the
        // deadline, or a slow verification's connection is closed under it.
        if limits.idle_timeout <= limits.deadline {
            return Err(bad(
                "limits.idle_timeout",
                format!(
                    "{:?} is not longer than limits.deadline ({:?}): a connection waiting for a verdict would be closed as idle",
                    limits.idle_timeout, limits.deadline
                ),
            ));
        }
        Ok(limits)
    }

    /// `trust.tuf`: where TUF roots are kept and refreshed from.
    pub(super) fn tuf(&self, raw: Option<RawTuf>) -> Result<TufSettings, ConfigError> {
        let bad = self.invalid;
        Ok(match raw {
            None => TufSettings::default(),
            Some(t) => TufSettings {
                cache_dir: t
                    .cache_dir
                    .map_or_else(|| TufSettings::default().cache_dir, |d| self.base.join(d)),
                refresh: self.duration(
                    "trust.tuf.refresh",
                    t.refresh.as_deref(),
                    TufSettings::default().refresh,
                )?,
                mirror: match (t.mirror, t.mirror_root) {
                    (None, None) => None,
                    (Some(url), Some(root)) => Some((url, self.base.join(root))),
                    _ => {
                        return Err(bad(
                            "trust.tuf.mirror",
                            "mirror and mirror_root go together".into(),
                        ));
                    }
                },
            },
        })
    }

    /// `registries`: each host in its canonical spelling, once, with the credentials it names
    /// (a secret, or a Docker config file read now: the credential for that host).
    pub(super) fn registries(
        &self,
        raw: Vec<RawRegistry>,
    ) -> Result<(HashMap<String, RegistrySettings>, RegistryCredentials), ConfigError> {
        let bad = self.invalid;
        let mut registries = HashMap::new();
        let mut credentials = RegistryCredentials::default();
        for (i, r) in raw.into_iter().enumerate() {
            let key = format!("registries[{i}].host");
            if r.host.is_empty() || r.host.contains('/') || r.host.contains("://") {
                return Err(bad(
                    &key,
                    format!("expected host[:port], found {:?}", r.host),
                ));
            }
            let tls_ca = match r.tls_ca {
                None => None,
                Some(_) if r.insecure => {
                    return Err(bad(
                        &format!("registries[{i}].tls_ca"),
                        "is for HTTPS registries; this one is listed insecure (plain HTTP)".into(),
                    ));
                }
                Some(path) => {
                    Some(self.ca_certificates(&format!("registries[{i}].tls_ca"), &path)?)
                }
            };
            let settings = RegistrySettings {
                insecure: r.insecure,
                auth_hosts: r.auth_hosts,
                tls_ca,
            };
            // The spelling references are canonicalised to, so that LOCALHOST:5000 finds these.
            let host = crate::reference::canonical_host(&r.host).map_err(|e| bad(&key, e))?;
            if let Some(c) = r.credentials {
                let key = format!("registries[{i}].credentials");
                self.registry_credentials(&key, &host, c, &mut credentials)?;
            }
            if registries.insert(host, settings).is_some() {
                return Err(bad(&key, format!("{:?} is listed twice", r.host)));
            }
        }
        Ok((registries, credentials))
    }

    /// A PEM file of CA certificates (`tls_ca`), each read as X.509 now: a bad bundle is a load
    /// error, not a failed handshake at the first verification. Offline (`config check
    /// --offline`) the file exists only where umpire runs, as the listeners' are, and is not
    /// read: no certificate stands in for it, so nothing built from it would trust anything.
    fn ca_certificates(&self, key: &str, path: &str) -> Result<Vec<Vec<u8>>, ConfigError> {
        let bad = self.invalid;
        let path = self.named(path);
        if self.offline {
            return Ok(Vec::new());
        }
        let bytes = std::fs::read(&path)
            .map_err(|e| bad(key, format!("cannot read {}: {e}", path.display())))?;
        let blocks =
            pem::parse_many(&bytes).map_err(|e| bad(key, format!("{}: {e}", path.display())))?;
        let mut certificates = Vec::new();
        for block in blocks {
            if block.tag() != "CERTIFICATE" {
                return Err(bad(
                    key,
                    format!(
                        "{} holds a {} block; expected CERTIFICATE blocks only",
                        path.display(),
                        block.tag()
                    ),
                ));
            }
            if let Err(e) = x509_parser::parse_x509_certificate(block.contents()) {
                return Err(bad(
                    key,
                    format!("{}: a certificate that does not parse: {e}", path.display()),
                ));
            }
            certificates.push(block.into_contents());
        }
        if certificates.is_empty() {
            return Err(bad(
                key,
                format!("no PEM certificate found in {}", path.display()),
            ));
        }
        Ok(certificates)
    }

    fn registry_credentials(
        &self,
        key: &str,
        host: &str,
        raw: RawRegistryCredentials,
        out: &mut RegistryCredentials,
    ) -> Result<(), ConfigError> {
        let bad = self.invalid;
        match (raw.secret, raw.file) {
            (Some(secret), None) => {
                let Some((namespace, name)) = secret
                    .split_once('/')
                    .filter(|(n, s)| !n.is_empty() && !s.is_empty() && !s.contains('/'))
                else {
                    return Err(bad(
                        &format!("{key}.secret"),
                        format!("expected NAMESPACE/NAME, found {secret:?}"),
                    ));
                };
                out.secrets
                    .insert(host.to_owned(), (namespace.to_owned(), name.to_owned()));
            }
            (None, Some(file)) => {
                let path = self.named(&file);
                let bytes = std::fs::read(&path).map_err(|e| {
                    bad(
                        &format!("{key}.file"),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                let docker = crate::evidence::auth::Credentials::parse(&bytes)
                    .map_err(|e| bad(&format!("{key}.file"), format!("{}: {e}", path.display())))?;
                let credential = docker.for_registry(host).cloned().ok_or_else(|| {
                    bad(
                        &format!("{key}.file"),
                        format!("{} holds no auths entry for {host}", path.display()),
                    )
                })?;
                out.files.insert(host.to_owned(), credential);
            }
            _ => {
                return Err(bad(key, "takes exactly one of secret or file".into()));
            }
        }
        Ok(())
    }
}
