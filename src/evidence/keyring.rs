//! A workload's registry credentials matched to an image as the kubelet matches them
//! (`credentialprovider.URLsMatch`): a key's host labels match one by one (`*` within a label),
//! its port must equal the image's, and its path must be a prefix of the image's repository path,
//! compared as text (the kubelet's reading: `registry.io/team` covers `registry.io/teamx/app`
//! too). Among matches, an exact host wins over a wildcard, then the longer path. What a
//! credential is, where it came from, and what a registry request goes with (`Access`).

use std::sync::Arc;

use base64::Engine as _;
use serde::Deserialize;

use super::FetchError;
use super::auth::Credential;

/// What a finding says when a registry refused a workload's credential (admission then reads the
/// namespace's secrets again).
pub const REFUSED_CREDENTIALS: &str = "refused the credentials";

/// A credential lent by a workload, with where it came from (for messages) and an identifier
/// (for cache keys and tokens: never the credential itself).
#[derive(Clone)]
pub struct Borrowed {
    pub credential: Credential,
    /// e.g. `secret team-a/regcred (pod imagePullSecrets)`.
    pub origin: String,
    /// A hash of the origin and the credential: verdicts and tokens obtained with it are kept
    /// under it, so that they serve only who holds the same credential.
    pub id: String,
}

impl std::fmt::Debug for Borrowed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Borrowed({}, {})", self.origin, self.id)
    }
}

/// What the registry requests of one image go with.
#[derive(Clone, Debug, Default)]
pub enum Access {
    /// umpire's own credentials (configured, or anonymous).
    #[default]
    Own,
    /// umpire's own, after the workload's secrets named none for this registry: said when the
    /// registry refuses.
    OwnAfter { looked_in: String },
    /// A workload's credential.
    Borrowed(Arc<Borrowed>),
    /// The workload's secrets could not be read and none matched: nothing is fetched.
    Refused { reason: String, transient: bool },
}

impl Access {
    /// What tokens and cached verdicts obtained with this access are kept under: a workload's
    /// credential; or, for a workload without one, what its answer says of it (its messages
    /// name its secrets, and are no other workload's to read).
    pub fn scope(&self) -> Option<String> {
        let hashed = |text: &str| {
            use sha2::Digest as _;
            hex::encode(&sha2::Sha256::digest(text.as_bytes())[..12])
        };
        match self {
            Access::Own => None,
            Access::Borrowed(b) => Some(b.id.clone()),
            Access::OwnAfter { looked_in } => Some(format!("none-{}", hashed(looked_in))),
            Access::Refused { reason, .. } => Some(format!("refused-{}", hashed(reason))),
        }
    }

    /// The failure to answer instead of fetching `what`, when the access was refused.
    pub fn refusal(&self, what: &str) -> Option<FetchError> {
        let Access::Refused { reason, transient } = self else {
            return None;
        };
        Some(FetchError::credential_problem(
            what,
            reason.clone(),
            *transient,
        ))
    }

    /// A registry's refusal, said with the credentials that were refused.
    pub fn explain(&self, error: FetchError) -> FetchError {
        let FetchError::AccessDenied { what, status } = error else {
            return error;
        };
        let detail = match self {
            Access::Borrowed(b) => format!(
                "the registry {REFUSED_CREDENTIALS} of {} (HTTP {status}); check that secret",
                b.origin
            ),
            Access::OwnAfter { looked_in } => format!(
                "the registry refused access (HTTP {status}) and the workload has no pull secret for it ({looked_in}); add one to the pod's or its service account's imagePullSecrets"
            ),
            _ => return FetchError::AccessDenied { what, status },
        };
        FetchError::Protocol { what, detail }
    }
}

/// A workload's pull secrets as read for one admission: their keyring (the pod's secrets, then
/// its service account's), the secrets that could not be read (why, and whether it may pass),
/// and where umpire looked (for messages).
#[derive(Debug, Default)]
pub struct WorkloadCredentials {
    pub keyring: Keyring,
    pub unreadable: Vec<(String, bool)>,
    pub looked_in: String,
}

impl WorkloadCredentials {
    /// What requests for `registry`/`repository` go with: the workload's matching credential;
    /// none matching while some secret could not be read refuses (never an anonymous try in its
    /// place); else umpire's own.
    pub fn access(&self, registry: &str, repository: &str) -> Access {
        if let Some(borrowed) = self.keyring.lookup(registry, repository) {
            return Access::Borrowed(borrowed);
        }
        if !self.unreadable.is_empty() {
            let reasons: Vec<&str> = self.unreadable.iter().map(|(r, _)| r.as_str()).collect();
            return Access::Refused {
                reason: format!(
                    "no readable pull secret of the workload holds credentials for {registry}: {}",
                    reasons.join("; ")
                ),
                transient: self.unreadable.iter().any(|(_, t)| *t),
            };
        }
        Access::OwnAfter {
            looked_in: self.looked_in.clone(),
        }
    }
}

/// One key of a Docker config, as the kubelet reads it.
#[derive(Clone)]
struct Entry {
    /// Host labels (`*` patterns allowed), lowercased.
    labels: Vec<String>,
    port: Option<String>,
    /// The key's path (`/team`), or empty.
    path: String,
    borrowed: Arc<Borrowed>,
    /// Where it came in the workload's order (pod secrets first, then the service account's).
    rank: usize,
}

/// The credentials of a workload's pull secrets, in the kubelet's order.
#[derive(Clone, Default)]
pub struct Keyring {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring({} entries)", self.entries.len())
    }
}

#[derive(Deserialize)]
struct DockerConfigJson {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, DockerAuth>,
}

#[derive(Deserialize, Default)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// Caps on what one secret may add: keys and their length.
const MAX_KEYS_PER_SECRET: usize = 256;

impl Keyring {
    /// Adds the keys of a secret's Docker config: `.dockerconfigjson` (`{"auths": {...}}`) or,
    /// `legacy`, `.dockercfg` (the map itself). `origin` names the secret in messages.
    pub fn add(&mut self, bytes: &[u8], legacy: bool, origin: &str) -> Result<(), String> {
        let auths = if legacy {
            crate::gojson::from_slice::<std::collections::BTreeMap<String, DockerAuth>>(bytes)
        } else {
            crate::gojson::from_slice::<DockerConfigJson>(bytes).map(|c| c.auths)
        }
        .map_err(|e| format!("{origin} holds no readable Docker config: {e}"))?;
        if auths.len() > MAX_KEYS_PER_SECRET {
            return Err(format!(
                "{origin} holds more than {MAX_KEYS_PER_SECRET} registries"
            ));
        }
        let rank = self.entries.iter().map(|e| e.rank + 1).max().unwrap_or(0);
        for (key, auth) in auths {
            let Some(credential) = credential_of(&auth) else {
                continue;
            };
            let Some((labels, port, path)) = parse_key(&key) else {
                continue;
            };
            let id = {
                use sha2::Digest as _;
                let mut h = sha2::Sha256::new();
                for part in [origin, &key, &credential.username, &credential.password] {
                    h.update(part.as_bytes());
                    h.update(b"\0");
                }
                hex::encode(&h.finalize()[..12])
            };
            let borrowed = Borrowed {
                credential,
                origin: origin.to_owned(),
                id,
            };
            self.entries.push(Entry {
                labels,
                port,
                path,
                borrowed: Arc::new(borrowed),
                rank,
            });
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The credential for `registry` (canonical `host[:port]`) and `repository`: the first
    /// secret (in the workload's order) with a matching key, its most specific key.
    pub fn lookup(&self, registry: &str, repository: &str) -> Option<Arc<Borrowed>> {
        let (host, port) = split_port(registry);
        let target_labels: Vec<&str> = host.split('.').collect();
        let target_path = format!("/{repository}");
        self.entries
            .iter()
            .filter(|e| e.port.as_deref() == port)
            .filter(|e| e.labels.len() == target_labels.len())
            .filter(|e| target_path.starts_with(&e.path))
            .filter(|e| {
                e.labels
                    .iter()
                    .zip(&target_labels)
                    .all(|(pattern, label)| label_matches(pattern, label))
            })
            .min_by_key(|e| {
                let wildcard = e.labels.iter().any(|l| l.contains(['*', '?', '[']));
                (e.rank, wildcard, std::cmp::Reverse(e.path.len()))
            })
            .map(|e| Arc::clone(&e.borrowed))
    }
}

fn credential_of(auth: &DockerAuth) -> Option<Credential> {
    if let Some(encoded) = auth.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (username, password) = text.split_once(':')?;
        return Some(Credential {
            username: username.to_owned(),
            password: password.to_owned(),
        });
    }
    Some(Credential {
        username: auth.username.clone()?,
        password: auth.password.clone()?,
    })
}

/// A key as the kubelet's `ParseSchemelessURL` reads it: scheme dropped, host labels, port, path
/// (trailing `/` dropped). Docker Hub's legacy keys are `docker.io`.
fn parse_key(key: &str) -> Option<(Vec<String>, Option<String>, String)> {
    let key = key.trim();
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if hostport.is_empty() {
        return None;
    }
    let (host, port) = split_port(hostport);
    let mut host = host.to_ascii_lowercase();
    // The kubelet's default registry keys: all of them are Docker Hub.
    let path = if ["index.docker.io", "registry-1.docker.io", "docker.io"].contains(&host.as_str())
    {
        host = crate::reference::DOCKER_HUB.to_owned();
        if path == "/v1" || path == "/v2" {
            ""
        } else {
            path
        }
    } else {
        path
    };
    let labels = host.split('.').map(str::to_owned).collect();
    Some((labels, port.map(str::to_owned), path.to_owned()))
}

fn split_port(hostport: &str) -> (&str, Option<&str>) {
    match hostport.rsplit_once(':') {
        Some((h, _)) if !h.ends_with(']') && h.contains(':') => (hostport, None),
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
        _ => (hostport, None),
    }
}

/// Go's `filepath.Match` on one host label: `*` any run, `?` one character (no `[`-classes:
/// a key with one matches nothing).
fn label_matches(pattern: &str, label: &str) -> bool {
    if pattern.contains('[') {
        return false;
    }
    fn go(p: &[u8], l: &[u8]) -> bool {
        match (p.first(), l.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], l) || (!l.is_empty() && go(p, &l[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &l[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &l[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), label.to_ascii_lowercase().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(keys: &[(&str, &str)]) -> Vec<u8> {
        let auths: serde_json::Map<String, serde_json::Value> = keys
            .iter()
            .map(|(k, user)| {
                let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:pw"));
                ((*k).to_owned(), serde_json::json!({ "auth": auth }))
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({ "auths": auths })).unwrap()
    }

    fn user(k: &Keyring, registry: &str, repository: &str) -> Option<String> {
        k.lookup(registry, repository)
            .map(|b| b.credential.username.clone())
    }

    #[test]
    fn keys_match_as_the_kubelet_matches_them() {
        let mut k = Keyring::default();
        k.add(
            &config(&[
                ("registry.example:5000", "host"),
                ("https://registry.example:5000/team", "team"),
                ("*.example.com", "wild"),
                ("https://index.docker.io/v1/", "hub"),
            ]),
            false,
            "secret ns/a",
        )
        .unwrap();
        assert_eq!(
            user(&k, "registry.example:5000", "other/app").as_deref(),
            Some("host")
        );
        // The most specific key wins; the path is a text prefix, as the kubelet compares it.
        assert_eq!(
            user(&k, "registry.example:5000", "team/app").as_deref(),
            Some("team")
        );
        assert_eq!(
            user(&k, "registry.example:5000", "teamx/app").as_deref(),
            Some("team")
        );
        // Ports must be equal; a wildcard covers one label.
        assert_eq!(user(&k, "registry.example", "team/app"), None);
        assert_eq!(user(&k, "a.example.com", "x").as_deref(), Some("wild"));
        assert_eq!(user(&k, "a.b.example.com", "x"), None);
        assert_eq!(
            user(&k, "docker.io", "library/nginx").as_deref(),
            Some("hub")
        );
    }

    #[test]
    fn the_first_secret_with_a_match_wins_and_legacy_configs_read() {
        let mut k = Keyring::default();
        k.add(
            &config(&[("registry.example", "pod")]),
            false,
            "secret ns/pod",
        )
        .unwrap();
        let legacy = serde_json::to_vec(&serde_json::json!({
            "registry.example/team": {"username": "sa", "password": "pw"}
        }))
        .unwrap();
        k.add(&legacy, true, "secret ns/sa").unwrap();
        assert_eq!(
            user(&k, "registry.example", "team/app").as_deref(),
            Some("pod")
        );
        assert!(k.add(b"{\"auths\": 3}", false, "secret ns/bad").is_err());
    }
}
