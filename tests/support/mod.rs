//! Test support: a real registry, cosign-format signing, a scripted hostile registry, and an
//! in-process umpire server.

#![allow(dead_code)]

pub mod certs;
pub mod cosign;
pub mod delay_proxy;
pub mod hostile;
pub mod kube;
pub mod redis;
pub mod registry;
pub mod served;
pub mod sigstore;

use std::path::Path;
use std::sync::Arc;

use tokio::sync::oneshot;
use umpire::config::Config;
use umpire::engine::Engine;
use umpire::evidence::auth::Credentials;
use umpire::proto::verifier_client::VerifierClient;
use umpire::service::Live;

/// A YAML config trusting `keys` (name, PEM) for the registry at `host` (plain HTTP), with
/// `policies` given as YAML (the `policies:` list body) and `extra` top-level YAML.
pub fn config_yaml(host: &str, keys: &[(&str, &str)], policies: &str, extra: &str) -> String {
    let keys_line = if keys.is_empty() {
        "  keys: {}\n"
    } else {
        "  keys:\n"
    };
    let mut y = format!("registries:\n  - host: {host}\n    insecure: true\ntrust:\n{keys_line}");
    for (name, pem) in keys {
        y.push_str(&format!("    {name}: |\n"));
        for line in pem.lines() {
            y.push_str(&format!("      {line}\n"));
        }
    }
    y.push_str("policies:\n");
    y.push_str(policies);
    y.push_str(extra);
    y
}

/// One policy over every repository of `host`, requiring `threshold` of the key authorities.
pub fn key_policy(name: &str, host: &str, threshold: usize, keys: &[&str]) -> String {
    let mut p = format!(
        "  - name: {name}\n    images: [\"{host}/**\"]\n    signatures:\n      threshold: {threshold}\n      authorities:\n"
    );
    for k in keys {
        p.push_str(&format!("        - key: {k}\n"));
    }
    p
}

/// A configuration trusting one key (`name`, PEM) for the registry at `host`, with one policy
/// (`policy`) over all of its repositories that requires it, and `extra` top-level YAML.
pub fn one_key_yaml(host: &str, (name, pem): (&str, &str), policy: &str, extra: &str) -> String {
    config_yaml(
        host,
        &[(name, pem)],
        &key_policy(policy, host, 1, &[name]),
        extra,
    )
}

pub fn config(yaml: &str) -> Config {
    Config::from_yaml(yaml, Path::new("."), "test").expect("test config loads")
}

pub fn engine(yaml: &str) -> Arc<Engine> {
    engine_with(yaml, Credentials::default())
}

/// The engine of a test config, with registry credentials.
pub fn engine_with(yaml: &str, credentials: Credentials) -> Arc<Engine> {
    Engine::standalone(config(yaml), credentials).unwrap()
}

/// An umpire gRPC server in this process, on a free loopback port.
pub struct Umpire {
    pub addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Umpire {
    pub async fn start(yaml: &str) -> Self {
        Self::start_live(Arc::new(
            Live::new(config(yaml), None, Credentials::default()).unwrap(),
        ))
        .await
    }

    /// Serves `live` (e.g. one built on a config file, to test reloads).
    pub async fn start_live(live: Arc<Live>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(umpire::api::server::serve_on(live, listener, async {
            let _ = rx.await;
        }));
        Self {
            addr,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub async fn client(&self) -> VerifierClient<tonic::transport::Channel> {
        let url = format!("http://{}", self.addr);
        for _ in 0..100 {
            if let Ok(c) = VerifierClient::connect(url.clone()).await {
                return c;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("umpire did not start on {url}");
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(t) => t.await?,
            None => Ok(()),
        }
    }
}

/// Writes `yaml` to a config file in a fresh temp dir (for the CLI).
pub fn config_file(yaml: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("umpire.yaml");
    std::fs::write(&path, yaml).unwrap();
    (dir, path)
}

/// The umpire binary run with `args` (and `env`) in the repository's folder, with no Docker
/// config of the machine's.
pub fn umpire_cli(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_umpire"));
    c.args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DOCKER_CONFIG", "/nonexistent");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run umpire")
}

/// Process output as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
