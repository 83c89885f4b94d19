//! A real OCI registry for tests: Debian's `docker-registry` (the reference distribution server),
//! started on a free loopback port with its own storage, stopped when dropped. Pushes go through
//! oci-client.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use super::cosign::{Blob, Image, sig_tag, signature_manifest};

pub struct Registry {
    child: Option<Child>,
    port: u16,
    _dir: tempfile::TempDir,
    client: Client,
}

/// A loopback port free now, for a server a test starts. Chosen outside the kernel's ephemeral
/// range (32768–60999 here) and at a random place in 20000–32767, so that neither another test's
/// `bind(0)` nor the source port of an outgoing connection takes it before the server binds it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.write_u64(NEXT.fetch_add(1, Ordering::Relaxed));
        h.finish()
    };
    const LOW: u64 = 20_000;
    const SPAN: u64 = 12_768;
    for i in 0..SPAN {
        let port = (LOW + (seed + i * 7_919) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn binary() -> PathBuf {
    for candidate in ["/usr/bin/docker-registry", "/usr/sbin/docker-registry"] {
        if std::path::Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    panic!(
        "Debian's docker-registry is not installed: run scripts/test (it installs it) or `apt-get install docker-registry`"
    );
}

/// HTTPS for a registry a test starts: its certificate and key (PEM), the CA that issued them,
/// and whether it offers HTTP/2 (ALPN `h2`) beside HTTP/1.1.
pub struct RegistryTls {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
    pub http2: bool,
}

impl Registry {
    /// Starts a fresh registry (plain HTTP) and waits until it answers.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Starts a fresh registry serving HTTPS only.
    pub async fn start_tls(tls: RegistryTls) -> Self {
        Self::start_with(Some(tls)).await
    }

    async fn start_with(tls: Option<RegistryTls>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut last_error = String::new();
        let tls_section = match &tls {
            None => String::new(),
            Some(t) => {
                let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
                std::fs::write(&cert, &t.cert_pem).unwrap();
                std::fs::write(&key, &t.key_pem).unwrap();
                format!(
                    "  tls:\n    certificate: {}\n    key: {}\n  http2:\n    disabled: {}\n",
                    cert.display(),
                    key.display(),
                    !t.http2
                )
            }
        };
        let ca_pem = tls.as_ref().map(|t| t.ca_pem.clone());
        for _ in 0..5 {
            let port = free_port();
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{tls_section}",
                    dir.path().join("data").display()
                ),
            )
            .unwrap();
            let mut child = Command::new(binary())
                .arg("serve")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start docker-registry");
            match wait_ready(&mut child, port, ca_pem.as_deref()).await {
                Ok(()) => {
                    let client = match &ca_pem {
                        None => ClientConfig {
                            protocol: ClientProtocol::Http,
                            ..Default::default()
                        },
                        Some(ca) => ClientConfig {
                            protocol: ClientProtocol::Https,
                            extra_root_certificates: vec![Certificate {
                                encoding: CertificateEncoding::Pem,
                                data: ca.as_bytes().to_vec(),
                            }],
                            ..Default::default()
                        },
                    };
                    return Registry {
                        child: Some(child),
                        port,
                        _dir: dir,
                        client: Client::new(client),
                    };
                }
                Err(e) => {
                    last_error = e;
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        panic!("docker-registry did not start: {last_error}");
    }

    /// The registry process, for measuring its CPU beside umpire's.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the registry (for "registry down" tests); the port stays closed.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn reference(&self, repo: &str, reference: &str) -> Reference {
        if reference.starts_with("sha256:") {
            Reference::with_digest(self.host(), repo.to_owned(), reference.to_owned())
        } else {
            Reference::with_tag(self.host(), repo.to_owned(), reference.to_owned())
        }
    }

    pub async fn push_blob(&self, repo: &str, blob: &Blob) {
        let r = self.reference(repo, "latest");
        self.client
            .auth(&r, &RegistryAuth::Anonymous, RegistryOperation::Push)
            .await
            .unwrap();
        self.client
            .push_blob(&r, blob.bytes.clone(), &blob.digest())
            .await
            .unwrap();
    }

    /// Pushes raw manifest bytes under a tag or digest; returns the registry's digest.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> String {
        let r = self.reference(repo, reference);
        self.client
            .auth(&r, &RegistryAuth::Anonymous, RegistryOperation::Push)
            .await
            .unwrap();
        self.client
            .push_manifest_raw(&r, bytes.to_vec(), media_type.parse().unwrap())
            .await
            .unwrap_or_else(|e| panic!("push manifest {repo}:{reference}: {e}"))
    }

    /// Pushes an image's blobs and manifest under `tag`; returns its digest.
    pub async fn push_image(&self, repo: &str, tag: &str, image: &Image) -> String {
        for blob in image.blobs() {
            self.push_blob(repo, blob).await;
        }
        self.push_manifest(repo, tag, &image.manifest, &image.media_type)
            .await;
        image.digest()
    }

    /// Pushes an image (`label` makes it unique) as `repo:tag`, signed by `key` (a cosign
    /// signature over the simple-signing payload); returns its digest.
    pub async fn push_signed(
        &self,
        repo: &str,
        tag: &str,
        label: &str,
        key: &super::cosign::SigningKey,
    ) -> String {
        let digest = self
            .push_image(repo, tag, &super::cosign::Image::new(label))
            .await;
        let layer = super::cosign::signature_layer(key, super::cosign::payload("x", &digest));
        self.push_signatures(repo, &digest, vec![layer]).await;
        digest
    }

    /// Pushes a cosign signature manifest with `layers` under `sha256-<hex>.sig` for `digest`.
    pub async fn push_signatures(&self, repo: &str, digest: &str, layers: Vec<Blob>) {
        let sig = signature_manifest(layers);
        self.push_image(repo, &sig_tag(digest), &sig).await;
    }

    /// Attaches Sigstore bundles to `digest` as OCI 1.1 referrers, through the `sha256-<hex>`
    /// fallback index (written as cosign writes it: without descriptor annotations).
    pub async fn push_referrer_bundles(&self, repo: &str, digest: &str, bundles: &[String]) {
        let bundle_type = "application/vnd.dev.sigstore.bundle.v0.3+json";
        let mut entries = Vec::new();
        for bundle in bundles {
            let layer = Blob::new(bundle_type, bundle.as_bytes().to_vec());
            let empty = Blob::new("application/vnd.oci.empty.v1+json", b"{}".to_vec());
            let subject = serde_json::json!({"mediaType": super::cosign::OCI_MANIFEST, "digest": digest, "size": 1});
            let artifact = Image::from_parts(
                empty,
                vec![layer],
                &[("artifactType", bundle_type.into()), ("subject", subject)],
            );
            let artifact_digest = self
                .push_image(repo, &artifact.digest().replace(':', "-"), &artifact)
                .await;
            entries.push(serde_json::json!({"mediaType": super::cosign::OCI_MANIFEST, "digest": artifact_digest, "size": artifact.manifest.len()}));
        }
        let index = serde_json::json!({"schemaVersion": 2, "mediaType": super::cosign::OCI_INDEX, "manifests": entries});
        self.push_manifest(
            repo,
            &digest.replace(':', "-"),
            index.to_string().as_bytes(),
            super::cosign::OCI_INDEX,
        )
        .await;
    }

    /// Pushes a cosign attestation manifest with `layers` under `sha256-<hex>.att` for `digest`.
    pub async fn push_attestations(&self, repo: &str, digest: &str, layers: Vec<Blob>) {
        let att = signature_manifest(layers);
        self.push_image(repo, &format!("{}.att", digest.replace(':', "-")), &att)
            .await;
    }
}

async fn wait_ready(child: &mut Child, port: u16, ca_pem: Option<&str>) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let (url, http) = match ca_pem {
        None => (
            format!("http://127.0.0.1:{port}/v2/"),
            reqwest::Client::new(),
        ),
        Some(ca) => (
            format!("https://127.0.0.1:{port}/v2/"),
            reqwest::Client::builder()
                .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()])
                .build()
                .unwrap(),
        ),
    };
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited with {status}"));
        }
        if let Ok(r) = http.get(&url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("no answer within 15s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}
