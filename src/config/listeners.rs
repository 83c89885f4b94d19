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
