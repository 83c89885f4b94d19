//! `umpire serve` as its own process, for tests through the real binary.

use std::time::Duration;

/// `umpire serve` on a config file, killed when dropped.
pub struct Served {
    pub child: tokio::process::Child,
    _dir: tempfile::TempDir,
    pub grpc: u16,
}

impl Served {
    pub async fn start(yaml: &str, env: &[(&str, String)]) -> Self {
        let grpc = super::registry::free_port();
        let (dir, path) = super::config_file(&format!("listen: 127.0.0.1:{grpc}\n{yaml}"));
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_umpire"));
        command
            .args(["serve", "--config", path.to_str().unwrap()])
            .env("UMPIRE_LOG", "warn")
            .kill_on_drop(true);
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().unwrap();
        let served = Self {
            child,
            _dir: dir,
            grpc,
        };
        served.wait_for(grpc).await;
        served
    }

    /// As [`Served::start`], its log (stderr) written to `log`, and no `KUBECONFIG` from the
    /// test's own environment unless `env` gives one.
    pub async fn start_logged(yaml: &str, env: &[(&str, String)], log: &std::path::Path) -> Self {
        let grpc = super::registry::free_port();
        let (dir, path) = super::config_file(&format!("listen: 127.0.0.1:{grpc}\n{yaml}"));
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_umpire"));
        command
            .args(["serve", "--config", path.to_str().unwrap()])
            .env("UMPIRE_LOG", "warn")
            .env_remove("KUBECONFIG")
            .stderr(std::fs::File::create(log).unwrap())
            .kill_on_drop(true);
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().unwrap();
        let served = Self {
            child,
            _dir: dir,
            grpc,
        };
        served.wait_for(grpc).await;
        served
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
