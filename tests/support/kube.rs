//! A stub of the Kubernetes API server for the pull-secret tests (no API server runs here): HTTPS
//! with its own CA, a bearer token, and the real JSON shapes of `GET
//! /api/v1/namespaces/{ns}/secrets/{name}` and `.../serviceaccounts/{name}` (404 and 403 as the
//! API server answers them). It records the paths it was asked for.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const TOKEN: &str = "stub-token-7f3a";

pub struct StubApi {
    pub pki: super::certs::Pki,
    pub port: u16,
    objects: Arc<Mutex<HashMap<String, Value>>>,
    forbidden: Arc<Mutex<Vec<String>>>,
    pub asked: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
    pub kubeconfig: std::path::PathBuf,
}

/// A `.dockerconfigjson` for `registry` with one user.
pub fn docker_config(registry: &str, user: &str, password: &str) -> Vec<u8> {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    serde_json::to_vec(&json!({"auths": {registry: {"auth": auth}}})).unwrap()
}

impl StubApi {
    pub async fn start() -> Self {
        let pki = super::certs::Pki::new("stub kubernetes CA");
        let server = pki.server();
        let certs: Vec<_> = rustls_pemfile_certs(&server.cert_pem);
        let key =
            rustls::pki_types::PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let objects: Arc<Mutex<HashMap<String, Value>>> = Arc::default();
        let forbidden: Arc<Mutex<Vec<String>>> = Arc::default();
        let asked: Arc<Mutex<Vec<String>>> = Arc::default();
        let (o, f, a) = (
            Arc::clone(&objects),
            Arc::clone(&forbidden),
            Arc::clone(&asked),
        );
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, o, f, a) = (
                    acceptor.clone(),
                    Arc::clone(&o),
                    Arc::clone(&f),
                    Arc::clone(&a),
                );
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    loop {
                        let mut buf = Vec::new();
                        let mut chunk = [0u8; 4096];
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            match tls.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let text = String::from_utf8_lossy(&buf).to_string();
                        let path = text.split(' ').nth(1).unwrap_or("").to_owned();
                        let bearer = text.lines().any(|l| {
                            l.to_ascii_lowercase().starts_with("authorization:")
                                && l.ends_with(&format!("Bearer {TOKEN}"))
                        });
                        let path = path.split('?').next().unwrap_or("").to_owned();
                        a.lock().unwrap().push(path.clone());
                        let (status, body) = answer(&path, bearer, &o, &f);
                        let body = body.to_string();
                        let head = format!(
                            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                            body.len()
                        );
                        if tls.write_all(head.as_bytes()).await.is_err()
                            || tls.write_all(body.as_bytes()).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        let ca = base64::engine::general_purpose::STANDARD.encode(&pki.ca_pem);
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: stub\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority-data: {ca}\nusers:\n- name: umpire\n  user:\n    token: {TOKEN}\ncontexts:\n- name: stub\n  context:\n    cluster: stub\n    user: umpire\ncurrent-context: stub\n"
            ),
        )
        .unwrap();
        Self {
            pki,
            port,
            objects,
            forbidden,
            asked,
            _dir: dir,
            kubeconfig,
        }
    }

    /// A secret of `kind` (`kubernetes.io/dockerconfigjson`, `Opaque`, ...) holding `key: bytes`.
    pub fn secret(&self, namespace: &str, name: &str, kind: &str, key: &str, bytes: &[u8]) {
        let data = base64::engine::general_purpose::STANDARD.encode(bytes);
        let object = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "type": kind, "data": {key: data}
        });
        let path = format!("/api/v1/namespaces/{namespace}/secrets/{name}");
        self.objects.lock().unwrap().insert(path, object);
    }

    pub fn service_account(&self, namespace: &str, name: &str, pull_secrets: &[&str]) {
        let refs: Vec<Value> = pull_secrets.iter().map(|n| json!({"name": n})).collect();
        let object = json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace},
            "imagePullSecrets": refs
        });
        let path = format!("/api/v1/namespaces/{namespace}/serviceaccounts/{name}");
        self.objects.lock().unwrap().insert(path, object);
    }

    /// Every read in `namespace` is refused as RBAC refuses it.
    pub fn forbid(&self, namespace: &str) {
        self.forbidden
            .lock()
            .unwrap()
            .push(format!("/api/v1/namespaces/{namespace}/"));
    }

    /// The in-cluster environment pointing at this stub: a service-account folder (token, CA,
    /// namespace) and the variables the kubelet sets.
    pub fn in_cluster(&self, dir: &std::path::Path) -> Vec<(&'static str, String)> {
        std::fs::write(dir.join("token"), TOKEN).unwrap();
        std::fs::write(dir.join("ca.crt"), &self.pki.ca_pem).unwrap();
        std::fs::write(dir.join("namespace"), "umpire-system").unwrap();
        vec![
            ("KUBERNETES_SERVICE_HOST", "127.0.0.1".to_owned()),
            ("KUBERNETES_SERVICE_PORT", self.port.to_string()),
        ]
    }
}

fn answer(
    path: &str,
    bearer: bool,
    objects: &Mutex<HashMap<String, Value>>,
    forbidden: &Mutex<Vec<String>>,
) -> (u16, Value) {
    let status = |code: u16, reason: &str, message: String| {
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code})
    };
    if !bearer {
        return (401, status(401, "Unauthorized", "Unauthorized".into()));
    }
    if forbidden
        .lock()
        .unwrap()
        .iter()
        .any(|p| path.starts_with(p))
    {
        let message = format!(
            "forbidden: User \"system:serviceaccount:umpire-system:umpire\" cannot get resource at {path}"
        );
        return (403, status(403, "Forbidden", message));
    }
    match objects.lock().unwrap().get(path) {
        Some(o) => (200, o.clone()),
        None => (404, status(404, "NotFound", format!("{path} not found"))),
    }
}

fn rustls_pemfile_certs(pem_text: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem_text.as_bytes())
        .map(Result::unwrap)
        .collect()
}

use rustls::pki_types::pem::PemObject as _;
