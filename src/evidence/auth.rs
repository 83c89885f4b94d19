//! Registry credentials and where they may go. Credentials come from a Docker `config.json`
//! (`DOCKER_CONFIG` or `~/.docker/config.json`) and are only ever sent to the registry's own host or
//! its configured `auth_hosts`, over HTTPS unless that host is configured insecure.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({}, <redacted>)", self.username)
    }
}

/// Credentials by registry host (`host[:port]`).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    by_host: HashMap<String, Credential>,
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// Docker Hub's credentials live under this legacy key.
const DOCKER_HUB_LEGACY_KEY: &str = "https://index.docker.io/v1/";

impl Credentials {
    /// The Docker config file umpire reads: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
            return Some(Path::new(&dir).join("config.json"));
        }
        std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker/config.json"))
    }

    /// Loads credentials; a missing file means anonymous access, an unreadable one is an error.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => {
                Self::parse(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
        }
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let config: DockerConfig = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let mut by_host = HashMap::new();
        for (key, entry) in config.auths {
            let host = normalise_host(&key);
            let cred = match (entry.auth, entry.username, entry.password) {
                (Some(auth), _, _) if !auth.is_empty() => {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(auth.trim())
                        .map_err(|_| format!("auths.{key}.auth is not base64"))?;
                    let text = String::from_utf8(decoded)
                        .map_err(|_| format!("auths.{key}.auth is not UTF-8"))?;
                    let (u, p) = text
                        .split_once(':')
                        .ok_or_else(|| format!("auths.{key}.auth is not user:password"))?;
                    Credential {
                        username: u.to_owned(),
                        password: p.to_owned(),
                    }
                }
                (_, Some(username), Some(password)) => Credential { username, password },
                _ => continue,
            };
            by_host.insert(host, cred);
        }
        Ok(Self { by_host })
    }

    pub fn with(mut self, host: &str, cred: Credential) -> Self {
        self.by_host.insert(host.to_owned(), cred);
        self
    }

    /// The credential for a registry host (`docker.io` finds Docker Hub's legacy entry too).
    pub fn for_registry(&self, registry: &str) -> Option<&Credential> {
        self.by_host.get(registry)
    }
}

/// `https://host:port/v1/` → `host:port`; Docker Hub's aliases → `docker.io`.
fn normalise_host(key: &str) -> String {
    if key == DOCKER_HUB_LEGACY_KEY {
        return crate::reference::DOCKER_HUB.to_owned();
    }
    let no_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = no_scheme.split('/').next().unwrap_or(no_scheme);
    match host {
        "index.docker.io" | "registry-1.docker.io" => crate::reference::DOCKER_HUB.to_owned(),
        h => h.to_owned(),
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `Basic realm="..."` or `Bearer realm="...",service="...",scope="..."`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, params) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(params);
    Some(Challenge::Bearer {
        realm: params.get("realm")?.clone(),
        service: params.get("service").cloned(),
        scope: params.get("scope").cloned(),
    })
}

fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        out.insert(key, value.to_owned());
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// Where a token realm may be, for a registry: its own host, a configured `auth_hosts` entry, or
/// Docker Hub's built-in `auth.docker.io`. Returns the realm's host on success.
pub fn realm_allowed(
    realm: &reqwest::Url,
    registry: &str,
    api_host: &str,
    auth_hosts: &[String],
    insecure_ok: bool,
) -> Result<(), String> {
    let host = match (realm.host_str(), realm.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        (None, _) => return Err(format!("token realm {realm} has no host")),
    };
    let scheme_ok = realm.scheme() == "https" || (realm.scheme() == "http" && insecure_ok);
    if !scheme_ok {
        return Err(format!("token realm {realm} is not HTTPS"));
    }
    let builtin = registry == crate::reference::DOCKER_HUB && host == "auth.docker.io";
    if host == registry || host == api_host || builtin || auth_hosts.contains(&host) {
        Ok(())
    } else {
        Err(format!(
            "token realm host {host} is neither the registry {registry} nor one of its auth_hosts; add it to registries[].auth_hosts if it is trusted"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_auths() {
        let json = br#"{"auths":{
            "https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNz"},
            "127.0.0.1:5000":{"username":"u","password":"p:w"},
            "https://ghcr.io":{"auth":"YTpi"},
            "empty.io":{}
        }}"#;
        let c = Credentials::parse(json).unwrap();
        assert_eq!(c.for_registry("docker.io").unwrap().username, "user");
        assert_eq!(c.for_registry("127.0.0.1:5000").unwrap().password, "p:w");
        assert_eq!(c.for_registry("ghcr.io").unwrap().password, "b");
        assert!(c.for_registry("empty.io").is_none());
        assert!(Credentials::parse(br#"{"auths":{"x":{"auth":"!!"}}}"#).is_err());
        assert!(!format!("{:?}", c.for_registry("127.0.0.1:5000").unwrap()).contains("p:w"));
    }

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("reg".into()),
                scope: Some("repository:a/b:pull".into()),
            })
        );
        assert_eq!(parse_challenge("Bearer service=x"), None);
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn realms_stay_with_their_registry() {
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        assert!(
            realm_allowed(
                &url("https://ghcr.io/token"),
                "ghcr.io",
                "ghcr.io",
                &[],
                false
            )
            .is_ok()
        );
        assert!(
            realm_allowed(
                &url("https://auth.docker.io/token"),
                "docker.io",
                "registry-1.docker.io",
                &[],
                false
            )
            .is_ok()
        );
        assert!(
            realm_allowed(
                &url("https://evil.example/token"),
                "ghcr.io",
                "ghcr.io",
                &[],
                false
            )
            .is_err()
        );
        assert!(
            realm_allowed(
                &url("http://ghcr.io/token"),
                "ghcr.io",
                "ghcr.io",
                &[],
                false
            )
            .is_err()
        );
        assert!(
            realm_allowed(
                &url("http://127.0.0.1:5000/t"),
                "127.0.0.1:5000",
                "127.0.0.1:5000",
                &[],
                true
            )
            .is_ok()
        );
        assert!(
            realm_allowed(
                &url("https://auth.corp/t"),
                "reg.corp",
                "reg.corp",
                &["auth.corp".into()],
                false
            )
            .is_ok()
        );
        assert!(
            realm_allowed(
                &url("https://169.254.169.254/t"),
                "reg.corp",
                "reg.corp",
                &[],
                false
            )
            .is_err()
        );
    }
}
