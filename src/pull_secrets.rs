//! Registry credentials from the Kubernetes API, as the kubelet would use them: a workload's
//! `imagePullSecrets`, or its service account's when it names none (`default` when none is
//! named), read in the object's namespace; and the secrets `registries[].credentials` names. The
//! client is configured as kubectl's is (`KUBECONFIG` or `~/.kube/config`, else in-cluster).
//! Secrets are kept a short while (bounded in number), read again when a registry refuses them,
//! and never logged.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};

pub use crate::config::KubernetesSettings;
use crate::evidence::auth::Credential;
use crate::evidence::keyring::{Keyring, WorkloadCredentials};

/// How long a secret or service account read is kept, and how many are.
const KEEP_FOR: Duration = Duration::from_secs(60);
const MAX_KEPT: u64 = 4096;
/// Secrets considered per workload (its own and its service account's together).
const MAX_SECRETS_PER_WORKLOAD: usize = 16;
/// The API server must answer within this.
const API_TIMEOUT: Duration = Duration::from_secs(5);
/// Where a pod's service account is mounted.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Why an object could not be read: what to say, and whether it may pass by itself.
type Problem = (String, bool);

/// What was read, kept for a while: `None` for an object that does not exist.
#[derive(Clone)]
enum Kept {
    Secret(Option<Arc<Secret>>),
    Account(Option<Arc<ServiceAccount>>),
}

pub struct PullSecrets {
    client: kube::Client,
    kept: moka::future::Cache<(&'static str, String, String), Kept>,
}

impl PullSecrets {
    /// A client configured as kubectl's is: the kubeconfig (`KUBECONFIG`, else
    /// `~/.kube/config`) when there is one, else the in-cluster service account.
    pub async fn connect(settings: &KubernetesSettings) -> anyhow::Result<Self> {
        let options = kube::config::KubeConfigOptions::default();
        let has_kubeconfig = std::env::var_os("KUBECONFIG").is_some()
            || std::env::var_os("HOME")
                .is_some_and(|h| Path::new(&h).join(".kube/config").exists());
        let mut config = if has_kubeconfig {
            kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|e| anyhow::anyhow!("kubernetes: cannot read the kubeconfig: {e}"))?
        } else {
            let dir = settings
                .service_account_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(SERVICE_ACCOUNT_DIR));
            in_cluster(&dir)?
        };
        config.connect_timeout = Some(API_TIMEOUT);
        config.read_timeout = Some(API_TIMEOUT);
        let client = kube::Client::try_from(config)
            .map_err(|e| anyhow::anyhow!("kubernetes: cannot build a client: {e}"))?;
        let kept = moka::future::Cache::builder()
            .max_capacity(MAX_KEPT)
            .time_to_live(KEEP_FOR)
            .support_invalidation_closures()
            .build();
        Ok(Self { client, kept })
    }

    /// The credentials of a workload in `namespace`: its `pod_secrets`, or, when it names none,
    /// those of `service_account`, each read as the kubelet reads it.
    pub async fn for_workload(
        &self,
        namespace: &str,
        pod_secrets: &[String],
        service_account: &str,
    ) -> WorkloadCredentials {
        let mut out = WorkloadCredentials::default();
        // As the ServiceAccount admission plugin fills a pod in (and so as its kubelet pulls): the
        // account's secrets only for a pod that names none of its own.
        let account = if pod_secrets.is_empty() {
            match self.account(namespace, service_account).await {
                Ok(Some(a)) => (a.image_pull_secrets.iter().flatten())
                    .map(|r| r.name.clone())
                    .collect(),
                Ok(None) => Vec::new(),
                Err(problem) => {
                    out.unreadable.push(problem);
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        out.looked_in = if pod_secrets.is_empty() {
            format!(
                "the pod names no imagePullSecrets; service account {namespace}/{service_account}: [{}]",
                account.join(", ")
            )
        } else {
            format!("pod imagePullSecrets: [{}]", pod_secrets.join(", "))
        };
        let named = pod_secrets
            .iter()
            .map(|n| (n, "pod imagePullSecrets"))
            .chain(account.iter().map(|n| (n, "service account")));
        for (name, from) in named.take(MAX_SECRETS_PER_WORKLOAD) {
            let origin = format!("secret {namespace}/{name} ({from})");
            match self.docker_config(namespace, name).await {
                Ok((bytes, legacy)) => {
                    if let Err(e) = out.keyring.add(&bytes, legacy, &origin) {
                        out.unreadable.push((e, false));
                    }
                }
                Err((reason, transient)) => out.unreadable.push((reason, transient)),
            }
        }
        out
    }

    /// The credential `namespace/name` holds for `registry` (for `registries[].credentials`).
    pub async fn registry_credential(
        &self,
        namespace: &str,
        name: &str,
        registry: &str,
    ) -> Result<Credential, Problem> {
        let origin = format!("secret {namespace}/{name} (registries[].credentials)");
        let (bytes, legacy) = self.docker_config(namespace, name).await?;
        let mut keyring = Keyring::default();
        keyring
            .add(&bytes, legacy, &origin)
            .map_err(|e| (e, false))?;
        // A registry's own credential: its host keys (a key with a path is a repository's).
        keyring
            .lookup(registry, "")
            .map(|b| b.credential.clone())
            .ok_or_else(|| {
                (
                    format!("{origin} holds no credentials for {registry}"),
                    false,
                )
            })
    }

    /// Forgets what was read in `namespace` (a registry refused a credential from it: it may
    /// have been rotated since).
    pub fn forget(&self, namespace: &str) {
        let namespace = namespace.to_owned();
        let _ = self
            .kept
            .invalidate_entries_if(move |(_, ns, _), _| *ns == namespace);
    }

    /// A pull secret's Docker config: (bytes, whether it is the legacy `.dockercfg`).
    async fn docker_config(&self, namespace: &str, name: &str) -> Result<(Vec<u8>, bool), Problem> {
        let what = format!("secret {namespace}/{name}");
        let secret = self
            .secret(namespace, name)
            .await?
            .ok_or_else(|| (format!("{what} was not found (HTTP 404)"), false))?;
        let kind = secret.type_.as_deref().unwrap_or("Opaque");
        let (key, legacy) = match kind {
            "kubernetes.io/dockerconfigjson" => (".dockerconfigjson", false),
            "kubernetes.io/dockercfg" => (".dockercfg", true),
            other => {
                return Err((
                    format!(
                        "{what} is of type {other}, not kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg"
                    ),
                    false,
                ));
            }
        };
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone())
            .ok_or_else(|| (format!("{what} has no {key} entry"), false))?;
        Ok((bytes, legacy))
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Arc<Secret>>, Problem> {
        let key = ("secret", namespace.to_owned(), name.to_owned());
        if let Some(Kept::Secret(s)) = self.kept.get(&key).await {
            return Ok(s);
        }
        let api: kube::Api<Secret> = kube::Api::namespaced(self.client.clone(), namespace);
        let read = api
            .get_opt(name)
            .await
            .map_err(|e| problem(&e, "secret", namespace, name))?;
        let read = read.map(Arc::new);
        self.kept.insert(key, Kept::Secret(read.clone())).await;
        Ok(read)
    }

    async fn account(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Arc<ServiceAccount>>, Problem> {
        let key = ("serviceaccount", namespace.to_owned(), name.to_owned());
        if let Some(Kept::Account(a)) = self.kept.get(&key).await {
            return Ok(a);
        }
        let api: kube::Api<ServiceAccount> = kube::Api::namespaced(self.client.clone(), namespace);
        let read = api
            .get_opt(name)
            .await
            .map_err(|e| problem(&e, "service account", namespace, name))?;
        let read = read.map(Arc::new);
        self.kept.insert(key, Kept::Account(read.clone())).await;
        Ok(read)
    }
}

/// What a failed read says: RBAC's refusal and the API server's are not the same problem.
fn problem(e: &kube::Error, kind: &str, namespace: &str, name: &str) -> Problem {
    let what = format!("{kind} {namespace}/{name}");
    match e {
        kube::Error::Api(status) if status.code == 403 => (
            format!(
                "umpire may not read {what} (HTTP 403: RBAC forbids it; grant get on {}s in {namespace})",
                kind.replace(' ', "")
            ),
            false,
        ),
        kube::Error::Api(status) if status.code == 401 => (
            format!(
                "the Kubernetes API refused umpire's own credentials reading {what} (HTTP 401)"
            ),
            false,
        ),
        kube::Error::Api(status) => (
            format!(
                "the Kubernetes API answered HTTP {} reading {what}",
                status.code
            ),
            status.code >= 500 || status.code == 429,
        ),
        other => (
            format!("the Kubernetes API could not be asked for {what}: {other}"),
            true,
        ),
    }
}

/// The in-cluster configuration: `KUBERNETES_SERVICE_HOST`/`_PORT`, and the service account's
/// token (read again as it rotates) and CA from `dir`.
fn in_cluster(dir: &Path) -> anyhow::Result<kube::Config> {
    let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| {
        anyhow::anyhow!(
            "kubernetes: no kubeconfig, and KUBERNETES_SERVICE_HOST is not set (not in a cluster)"
        )
    })?;
    let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let url = format!("https://{host}:{port}")
        .parse()
        .map_err(|e| anyhow::anyhow!("kubernetes: KUBERNETES_SERVICE_HOST/PORT: {e}"))?;
    let ca_path = dir.join("ca.crt");
    let ca = std::fs::read(&ca_path)
        .map_err(|e| anyhow::anyhow!("kubernetes: cannot read {}: {e}", ca_path.display()))?;
    let roots: Vec<Vec<u8>> = pem::parse_many(&ca)
        .map_err(|e| anyhow::anyhow!("kubernetes: {}: {e}", ca_path.display()))?
        .into_iter()
        .map(pem::Pem::into_contents)
        .collect();
    let mut config = kube::Config::new(url);
    config.root_cert = Some(roots);
    config.auth_info.token_file = Some(dir.join("token").to_string_lossy().into_owned());
    if let Ok(ns) = std::fs::read_to_string(dir.join("namespace")) {
        config.default_namespace = ns.trim().to_owned();
    }
    Ok(config)
}

/// The Kubernetes API of one configuration, connected on first use (a configuration that never
/// reads a secret never needs a cluster).
pub struct Kubernetes {
    settings: KubernetesSettings,
    connected: tokio::sync::OnceCell<Result<Arc<PullSecrets>, String>>,
}

impl Kubernetes {
    pub fn new(settings: KubernetesSettings) -> Self {
        Self {
            settings,
            connected: tokio::sync::OnceCell::new(),
        }
    }

    pub fn settings(&self) -> &KubernetesSettings {
        &self.settings
    }

    /// The client, or why there is none (said in findings; never an anonymous try instead).
    pub async fn secrets(&self) -> Result<Arc<PullSecrets>, String> {
        let connected = self.connected.get_or_init(|| async {
            match PullSecrets::connect(&self.settings).await {
                Ok(p) => Ok(Arc::new(p)),
                Err(e) => {
                    tracing::error!("{e:#}");
                    Err(format!("{e:#}"))
                }
            }
        });
        connected.await.clone()
    }

    /// `registry` with umpire's credentials of `registries[].credentials`: files read at load,
    /// secrets read through this client when the registry challenges.
    pub fn configure(
        self: &Arc<Self>,
        registry: crate::evidence::registry::RegistryClient,
        credentials: &crate::config::RegistryCredentials,
    ) -> crate::evidence::registry::RegistryClient {
        if credentials.secrets.is_empty() {
            return registry;
        }
        registry.with_configured(Arc::new(ConfiguredSecrets {
            kubernetes: Arc::clone(self),
            by_registry: credentials.secrets.clone(),
        }))
    }
}

/// The registry client of a configuration, with every credential it names: the Docker config's
/// (`credentials`), `registries[].credentials` files and secrets (read through the returned
/// Kubernetes API, which admission also reads workloads' pull secrets with).
pub fn registry_client(
    config: &crate::config::Config,
    credentials: crate::evidence::auth::Credentials,
    metrics: &Arc<crate::metrics::Metrics>,
) -> anyhow::Result<(crate::evidence::registry::RegistryClient, Arc<Kubernetes>)> {
    let kubernetes = Arc::new(Kubernetes::new(config.kubernetes.clone()));
    let registry = crate::evidence::registry::RegistryClient::new(
        config.registries.clone(),
        config.registry_credentials.over(credentials),
        config.limits.connect_timeout,
        config.limits.max_registry_requests,
        config.known_hosts(),
        Arc::clone(metrics),
    )?;
    let registry = kubernetes.configure(registry, &config.registry_credentials);
    Ok((registry, kubernetes))
}

/// The secrets `registries[].credentials` names, looked up as registries challenge.
struct ConfiguredSecrets {
    kubernetes: Arc<Kubernetes>,
    /// Registry host → (namespace, name).
    by_registry: std::collections::HashMap<String, (String, String)>,
}

#[async_trait::async_trait]
impl crate::evidence::registry::ConfiguredCredentials for ConfiguredSecrets {
    async fn credential(&self, registry: &str) -> Option<Result<Credential, Problem>> {
        let (namespace, name) = self.by_registry.get(registry)?;
        let secrets = match self.kubernetes.secrets().await {
            Ok(s) => s,
            Err(e) => {
                let why = format!("secret {namespace}/{name} (registries[].credentials): {e}");
                return Some(Err((why, true)));
            }
        };
        Some(secrets.registry_credential(namespace, name, registry).await)
    }
}
