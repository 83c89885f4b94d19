//! Answering a registry's challenge: Basic with the credential the request goes with, or a
//! Bearer token from a realm the registry may name (its own host or its `auth_hosts`), fetched with
//! that credential and kept per credential.

use base64::Engine as _;
use reqwest::Url;

use super::http::{check_status, read_bounded};
use super::{MAX_TOKEN_RESPONSE_BYTES, RegistryClient};
use crate::evidence::FetchError;
use crate::evidence::auth::{Challenge, parse_challenge, realm_allowed};
use crate::evidence::keyring::Access;

impl RegistryClient {
    /// umpire's own credential for `registry`: a configured secret (`registries[].credentials`),
    /// else the Docker config (inline or a helper's). A configured secret that cannot be read
    /// fails the request naming it: no anonymous try in its place.
    async fn configured_credential(
        &self,
        registry: &str,
        what: &str,
    ) -> Result<Option<crate::evidence::auth::Credential>, FetchError> {
        if let Some(configured) = &self.configured
            && let Some(answer) = configured.credential(registry).await
        {
            return answer.map(Some).map_err(|(detail, transient)| {
                FetchError::credential_problem(what, detail, transient)
            });
        }
        Ok(self.credentials.lookup(registry).await)
    }

    /// Answers a challenge for `repository` (its token kept under `token_key`) with the access's
    /// credential, else the registry's configured one (`registries[].credentials`), else the
    /// Docker config's.
    pub(super) async fn authenticate(
        &self,
        registry: &str,
        (repository, token_key): (&str, &str),
        access: &Access,
        header: &str,
        what: &str,
    ) -> Result<(), FetchError> {
        let credential = match access {
            Access::Borrowed(b) => Some(b.credential.clone()),
            _ => self.configured_credential(registry, what).await?,
        };
        let credential = credential.as_ref();
        let basic = |c: &crate::evidence::auth::Credential| {
            let raw = format!("{}:{}", c.username, c.password);
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        };
        match parse_challenge(header) {
            Some(Challenge::Basic) => {
                let c = credential.ok_or_else(|| FetchError::AccessDenied {
                    what: what.to_owned(),
                    status: 401,
                })?;
                self.store_auth(registry, token_key, basic(c));
                Ok(())
            }
            Some(Challenge::Bearer { realm, service, .. }) => {
                let protocol = |detail: String| FetchError::Protocol {
                    what: what.to_owned(),
                    detail,
                };
                let realm_url = Url::parse(&realm)
                    .map_err(|_| protocol(format!("token realm {realm:?} is not a URL")))?;
                let api_host = self.api_base(registry);
                let api_host = api_host.split("://").nth(1).unwrap_or(registry);
                let realm_host = realm_url.host_str().unwrap_or_default();
                let realm_host_port = match realm_url.port() {
                    Some(p) => format!("{realm_host}:{p}"),
                    None => realm_host.to_owned(),
                };
                let auth_hosts = self
                    .settings
                    .get(registry)
                    .map(|s| s.auth_hosts.as_slice())
                    .unwrap_or(&[]);
                realm_allowed(
                    &realm_url,
                    registry,
                    api_host,
                    auth_hosts,
                    self.insecure(&realm_host_port),
                )
                .map_err(protocol)?;
                let scope = format!("repository:{repository}:pull");
                let mut query: Vec<(&str, &str)> = vec![("scope", &scope)];
                if let Some(s) = service.as_deref() {
                    query.push(("service", s));
                }
                let mut token_url = realm_url;
                token_url.query_pairs_mut().extend_pairs(query);
                // The credential belongs to the validated realm's origin, and to no hop after it.
                let auth = credential.map(|c| (token_url.clone(), basic(c)));
                let response = self.follow(registry, token_url, None, auth, what).await?;
                let response = check_status(response, &format!("{what} (token request)"))?;
                let body = read_bounded(response, MAX_TOKEN_RESPONSE_BYTES, what).await?;
                #[derive(serde::Deserialize)]
                struct Token {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let t: Token = serde_json::from_slice(&body)
                    .map_err(|e| protocol(format!("token response is not JSON: {e}")))?;
                let token = t
                    .token
                    .or(t.access_token)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| protocol("token response has no token".into()))?;
                self.store_auth(registry, token_key, format!("Bearer {token}"));
                Ok(())
            }
            None => Err(FetchError::Protocol {
                what: what.to_owned(),
                detail: format!(
                    "unsupported authentication challenge {:?}",
                    header.chars().take(100).collect::<String>()
                ),
            }),
        }
    }
}
