//! `umpire serve` as its own process, for tests through the real binary. It listens on a port of
//! its own choosing (`listen: 127.0.0.1:0`), read from its own log line "umpire gRPC listening",
//! so no test races another for a port; its log is kept for the test to read.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// `umpire serve`, killed when dropped.
pub struct Served {
    pub child: tokio::process::Child,
    /// Where its configuration is (the test may change it and signal a reload).
    pub config: PathBuf,
    pub grpc: u16,
    /// The metrics listener, when the configuration has `metrics_listen: 127.0.0.1:0`.
    pub metrics: Option<u16>,
    log: Arc<Mutex<String>>,
    _dir: Option<tempfile::TempDir>,
}

/// The port of the first line of `log` saying `what` listens (text or JSON log lines).
fn listening(log: &str, what: &str) -> Option<u16> {
    let line = log.lines().find(|l| l.contains(what))?;
    let addr = match line.split_once("addr=") {
        Some((_, rest)) => rest.split_whitespace().next()?,
        None => line.split_once("\"addr\":\"")?.1.split('"').next()?,
    };
    addr.rsplit(':').next()?.parse().ok()
}

impl Served {
    /// `umpire serve` on `yaml` (which names no `listen`), with `env` on top of the test's own.
    pub async fn start(yaml: &str, env: &[(&str, String)]) -> Self {
        Self::start_with(yaml, env, None).await
    }

    /// As [`Served::start`], its log also written to `log`.
    pub async fn start_logged(yaml: &str, env: &[(&str, String)], log: &Path) -> Self {
        Self::start_with(yaml, env, Some(log)).await
    }

    async fn start_with(yaml: &str, env: &[(&str, String)], log: Option<&Path>) -> Self {
        let (dir, path) = super::config_file(&format!("listen: 127.0.0.1:0\n{yaml}"));
        let mut served = Self::launch(&path, env, log).await;
        served._dir = Some(dir);
        served
    }

    /// On a configuration file the test owns (to change it later); it says
    /// `listen: 127.0.0.1:0`.
    pub async fn start_file(config: &Path, env: &[(&str, String)]) -> Self {
        Self::launch(config, env, None).await
    }

    async fn launch(config: &Path, env: &[(&str, String)], log_file: Option<&Path>) -> Self {
        // The test's level, plus the line that says where it listens.
        let level = env
            .iter()
            .find(|(k, _)| *k == "UMPIRE_LOG")
            .map_or("warn", |(_, v)| v.as_str());
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_umpire"));
        command
            .args(["serve", "--config", config.to_str().unwrap()])
            .env_remove("KUBECONFIG")
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env.iter().filter(|(k, _)| *k != "UMPIRE_LOG") {
            command.env(k, v);
        }
        command.env("UMPIRE_LOG", format!("{level},umpire::api::server=info"));
        let mut child = command.spawn().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let (kept, file) = (Arc::clone(&log), log_file.map(Path::to_path_buf));
        tokio::spawn(async move {
            let mut file = match file {
                Some(f) => Some(tokio::fs::File::create(f).await.unwrap()),
                None => None,
            };
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(f) = file.as_mut() {
                    let _ = f.write_all(format!("{line}\n").as_bytes()).await;
                }
                let mut all = kept.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
        });
        for _ in 0..800 {
            let text = log.lock().unwrap().clone();
            if let Some(grpc) = listening(&text, "umpire gRPC listening") {
                let metrics = listening(&text, "metrics listening");
                return Self {
                    child,
                    config: config.to_owned(),
                    grpc,
                    metrics,
                    log,
                    _dir: None,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("umpire serve exited ({status}) before listening:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "umpire serve did not say where it listens:\n{}",
            log.lock().unwrap()
        );
    }

    /// Everything it has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends it a signal (`HUP`, `TERM`, ...).
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().unwrap().to_string();
        let sent = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// SIGTERM, then its exit code and whole log.
    pub async fn stop(self) -> (Option<i32>, String) {
        self.signal("TERM");
        self.wait().await
    }

    /// Its exit code (once it exits by itself, within 20 s) and whole log.
    pub async fn wait(mut self) -> (Option<i32>, String) {
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("umpire serve stops within 20 s of SIGTERM")
            .unwrap();
        // The reader has the last lines once the pipe closes.
        tokio::time::sleep(Duration::from_millis(100)).await;
        (status.code(), self.log())
    }

    pub async fn wait_for(&self, port: u16) {
        for _ in 0..400 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("umpire serve did not listen on {port}");
    }

    pub async fn client(
        &self,
    ) -> umpire::proto::verifier_client::VerifierClient<tonic::transport::Channel> {
        umpire::proto::verifier_client::VerifierClient::connect(format!(
            "http://127.0.0.1:{}",
            self.grpc
        ))
        .await
        .unwrap()
    }

    /// The answer to a plain `Verify` of `image`.
    pub async fn ask(&self, image: &str) -> umpire::proto::VerifyResponse {
        self.client()
            .await
            .verify(umpire::proto::VerifyRequest {
                image: image.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// Its `/metrics` page.
    pub async fn metrics(&self) -> String {
        let port = self
            .metrics
            .expect("metrics_listen: 127.0.0.1:0 in the configuration");
        reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// A line of `/proc/<pid>/status` in bytes (VmRSS, VmHWM).
    pub fn memory(&self, field: &str) -> u64 {
        let pid = self.child.id().unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let kb: u64 = status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap();
        kb * 1024
    }

    pub fn open_files(&self) -> usize {
        let pid = self.child.id().unwrap();
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    }
}
