//! Registry credentials and where they may go. Credentials come from a Docker `config.json`
//! (`DOCKER_CONFIG` or `~/.docker/config.json`) and are only ever sent to the registry's own host or
//! its configured `auth_hosts`, over HTTPS unless that host is configured insecure.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// Credentials by registry host (`host[:port]`): inline `auths`, and credential helpers
/// (`credHelpers` per host, `credsStore` for the rest) asked when a registry challenges.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    by_host: HashMap<String, Credential>,
    helpers: HashMap<String, String>,
    default_helper: Option<String>,
    runs: Arc<HelperRuns>,
}

/// What credential helpers answered, and the runs in flight: one run per registry at a time
/// (concurrent lookups share it), answers kept a while, and few helper processes at once (real
/// helpers take seconds and hundreds of MB).
struct HelperRuns {
    answers: std::sync::Mutex<HashMap<String, (Option<Credential>, std::time::Instant)>>,
    flights: crate::coalesce::Coalescer<String, Option<Credential>>,
    processes: Arc<tokio::sync::Semaphore>,
}

impl Default for HelperRuns {
    fn default() -> Self {
        Self {
            answers: std::sync::Mutex::new(HashMap::new()),
            flights: crate::coalesce::Coalescer::default(),
            processes: Arc::new(tokio::sync::Semaphore::new(MAX_HELPER_PROCESSES)),
        }
    }
}

impl std::fmt::Debug for HelperRuns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HelperRuns")
    }
}

/// How long a helper's answer is kept (a credential, or "none"), how many answers, and how many
/// helper processes run at once.
const HELPER_ANSWER_TTL: std::time::Duration = std::time::Duration::from_secs(300);
const HELPER_NONE_TTL: std::time::Duration = std::time::Duration::from_secs(30);
const MAX_HELPER_ANSWERS: usize = 1024;
const MAX_HELPER_PROCESSES: usize = 4;

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, DockerAuth>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

/// How long a credential helper may take, and how much it may print.
const HELPER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
const MAX_HELPER_OUTPUT: usize = 64 * 1024;

/// A helper name becomes part of a program name (`docker-credential-<name>`): no paths.
fn valid_helper(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
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
        let mut helpers = HashMap::new();
        for (host, helper) in config.cred_helpers {
            if !valid_helper(&helper) {
                return Err(format!(
                    "credHelpers.{host}: {helper:?} is not a credential helper name"
                ));
            }
            helpers.insert(normalise_host(&host), helper);
        }
        let default_helper = match config.creds_store {
            Some(h) if !valid_helper(&h) => {
                return Err(format!("credsStore: {h:?} is not a credential helper name"));
            }
            other => other.filter(|h| !h.is_empty()),
        };
        Ok(Self {
            by_host,
            helpers,
            default_helper,
            runs: Arc::default(),
        })
    }

    pub fn with(mut self, host: &str, cred: Credential) -> Self {
        self.by_host.insert(host.to_owned(), cred);
        self
    }

    /// The inline credential for a registry host (`docker.io` finds Docker Hub's legacy entry too).
    pub fn for_registry(&self, registry: &str) -> Option<&Credential> {
        self.by_host.get(registry)
    }

    /// The credential for a registry: inline, else from its credential helper
    /// (`docker-credential-<helper> get`, bounded in time and output). A helper that fails, or has
    /// nothing for this registry, means no credential.
    pub async fn lookup(&self, registry: &str) -> Option<Credential> {
        if let Some(c) = self.by_host.get(registry) {
            return Some(c.clone());
        }
        let helper = self
            .helpers
            .get(registry)
            .or(self.default_helper.as_ref())?;
        if let Some(known) = self.runs.remembered(registry) {
            return known;
        }
        let server = if registry == crate::reference::DOCKER_HUB {
            DOCKER_HUB_LEGACY_KEY
        } else {
            registry
        }
        .to_owned();
        let (helper, key) = (helper.clone(), registry.to_owned());
        let runs = Arc::clone(&self.runs);
        let processes = Arc::clone(&self.runs.processes);
        let work = async move {
            let answer = match processes.acquire_owned().await {
                Ok(_process) => run_helper(&helper, &server).await,
                Err(_) => Err("no helper process could be started".to_owned()),
            };
            let answer = match answer {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(
                        registry = %server,
                        helper,
                        "credential helper failed, continuing without credentials: {e}"
                    );
                    None
                }
            };
            runs.remember(&server_key(&server), answer.clone());
            answer
        };
        self.runs.flights.run(key, work).await.0.flatten()
    }
}

/// The registry a helper was asked about, as `lookup` names it.
fn server_key(server: &str) -> String {
    if server == DOCKER_HUB_LEGACY_KEY {
        crate::reference::DOCKER_HUB.to_owned()
    } else {
        server.to_owned()
    }
}

impl HelperRuns {
    /// A helper answer still fresh for `registry`.
    fn remembered(&self, registry: &str) -> Option<Option<Credential>> {
        let answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        answers
            .get(registry)
            .filter(|(_, until)| std::time::Instant::now() < *until)
            .map(|(c, _)| c.clone())
    }

    fn remember(&self, registry: &str, answer: Option<Credential>) {
        let now = std::time::Instant::now();
        let ttl = if answer.is_some() {
            HELPER_ANSWER_TTL
        } else {
            HELPER_NONE_TTL
        };
        let mut answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        if answers.len() >= MAX_HELPER_ANSWERS {
            answers.retain(|_, (_, until)| now < *until);
        }
        if answers.len() < MAX_HELPER_ANSWERS {
            answers.insert(registry.to_owned(), (answer, now + ttl));
        }
    }
}

async fn run_helper(helper: &str, server: &str) -> Result<Option<Credential>, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut child = tokio::process::Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let work = async {
        stdin
            .write_all(server.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        drop(stdin);
        let mut out = Vec::new();
        (&mut stdout)
            .take(MAX_HELPER_OUTPUT as u64 + 1)
            .read_to_end(&mut out)
            .await
            .map_err(|e| e.to_string())?;
        let status = child.wait().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((status, out))
    };
    let (status, out) = tokio::time::timeout(HELPER_TIMEOUT, work)
        .await
        .map_err(|_| "timed out".to_owned())??;
    if out.len() > MAX_HELPER_OUTPUT {
        return Err("printed too much".into());
    }
    if !status.success() {
        // Helpers exit non-zero with "credentials not found" when they have nothing.
        return Ok(None);
    }
    #[derive(Deserialize)]
    struct Answer {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let a: Answer = serde_json::from_slice(&out).map_err(|e| format!("unreadable answer: {e}"))?;
    Ok(Some(Credential {
        username: a.username,
        password: a.secret,
    }))
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
    // A key that is no host (a typo) keeps its text: it can then match no registry.
    crate::reference::canonical_host(host).unwrap_or_else(|_| host.to_owned())
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
