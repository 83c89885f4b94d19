//! The listeners' settings: addresses and TLS (PEM files checked here; the listener builds TLS).

use super::*;

impl<F: Fn(&str, String) -> ConfigError> Validator<'_, F> {
    /// TLS files resolved against the config folder and loaded once, so mistakes fail at load.
    pub(super) fn tls(
        &self,
        key: &str,
        cert: String,
        private_key: String,
        client_ca: Option<String>,
        allowed_clients: Vec<String>,
    ) -> Result<TlsSettings, ConfigError> {
        let settings = TlsSettings {
            cert: self.named(cert),
            key: self.named(private_key),
            client_ca: client_ca.map(|c| self.named(c)),
            allowed_clients,
        };
        if !settings.allowed_clients.is_empty() && settings.client_ca.is_none() {
            return Err((self.invalid)(
                &format!("{key}.allowed_clients"),
                "needs client_ca: client identities are only known from verified client certificates".into(),
            ));
        }
        // Offline (`config check --offline`), the files exist only where umpire runs.
        if self.offline {
            return Ok(settings);
        }
        // Readable PEM of the right kinds; the listener builds (and rebuilds, on rotation) the TLS
        // configuration itself: config builds no TLS.
        let pem_blocks = |path: &PathBuf, what: &str| {
            let text = std::fs::read(path).map_err(|e| {
                (self.invalid)(key, format!("cannot read {what} {}: {e}", path.display()))
            })?;
            pem::parse_many(&text).map_err(|e| {
                (self.invalid)(key, format!("{what} {} is not PEM: {e}", path.display()))
            })
        };
        if !pem_blocks(&settings.cert, "certificate")?
            .iter()
            .any(|p| p.tag() == "CERTIFICATE")
        {
            return Err((self.invalid)(
                key,
                format!("{} holds no certificate", settings.cert.display()),
            ));
        }
        if !pem_blocks(&settings.key, "private key")?
            .iter()
            .any(|p| p.tag().ends_with("PRIVATE KEY"))
        {
            return Err((self.invalid)(
                key,
                format!("{} holds no private key", settings.key.display()),
            ));
        }
        if let Some(ca) = &settings.client_ca
            && !pem_blocks(ca, "client CA")?
                .iter()
                .any(|p| p.tag() == "CERTIFICATE")
        {
            return Err((self.invalid)(
                key,
                format!("{} holds no certificate", ca.display()),
            ));
        }
        Ok(settings)
    }

    pub(super) fn addr(&self, key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
        value.parse().map_err(|_| {
            (self.invalid)(
                key,
                format!("expected an address like 127.0.0.1:50051, found {value:?}"),
            )
        })
    }
}

impl<F: Fn(&str, String) -> ConfigError> Validator<'_, F> {
    /// `webhook`: its listener, TLS, exemptions and the policy it names.
    pub(super) fn webhook(
        &self,
        raw: Option<RawWebhook>,
        policies: &[Policy],
    ) -> Result<Option<WebhookSettings>, ConfigError> {
        let bad = self.invalid;
        Ok(match raw {
            None => None,
            Some(w) => {
                if let Some(name) = &w.policy
                    && !policies.iter().any(|p| &p.name == name)
                {
                    return Err(bad("webhook.policy", format!("no policy named {name:?}")));
                }
                Some(WebhookSettings {
                    listen: self.addr("webhook.listen", &w.listen)?,
                    tls: self.tls(
                        "webhook",
                        w.tls_cert,
                        w.tls_key,
                        w.client_ca,
                        w.allowed_clients,
                    )?,
                    exempt_namespaces: w.exempt_namespaces,
                    exempt_images: w
                        .exempt_images
                        .iter()
                        .enumerate()
                        .map(|(n, g)| {
                            Glob::new(g).map_err(|e| {
                                bad(&format!("webhook.exempt_images[{n}]"), e.to_string())
                            })
                        })
                        .collect::<Result<_, _>>()?,
                    audit: w.audit,
                    policy: w.policy,
                    timeout: w
                        .timeout
                        .as_deref()
                        .map(|t| self.duration("webhook.timeout", Some(t), Duration::ZERO))
                        .transpose()?,
                })
            }
        })
    }

    /// `ext_authz_listen` and `ext_authz`: the gate's listener and the one registry it judges.
    pub(super) fn ext_authz(
        &self,
        listen: Option<String>,
        raw: Option<RawExtAuthz>,
    ) -> Result<Option<ExtAuthzSettings>, ConfigError> {
        let bad = self.invalid;
        Ok(match (listen, raw) {
            (None, None) => None,
            (None, Some(_)) => return Err(bad("ext_authz", "needs ext_authz_listen".into())),
            (Some(addr), options) => {
                let (upstream, pass_through) =
                    options.map_or((None, true), |o| (o.upstream, o.pass_through));
                let Some(upstream) = upstream else {
                    return Err(bad(
                        "ext_authz.upstream",
                        "is required with ext_authz_listen: the registry the gate judges (host[:port]); \
                         umpire never takes it from a request's Host header"
                            .into(),
                    ));
                };
                let upstream = match crate::reference::ImageRef::parse(&format!("{upstream}/x")) {
                    Ok(crate::reference::ImageRef::Registry(r))
                        if !upstream.is_empty()
                            && !upstream.contains('/')
                            && (r.registry != crate::reference::DOCKER_HUB
                                || upstream.contains('.')) =>
                    {
                        r.registry
                    }
                    _ => {
                        return Err(bad(
                            "ext_authz.upstream",
                            format!("expected host[:port], found {upstream:?}"),
                        ));
                    }
                };
                Some(ExtAuthzSettings {
                    listen: self.addr("ext_authz_listen", &addr)?,
                    upstream,
                    pass_through,
                })
            }
        })
    }
}
