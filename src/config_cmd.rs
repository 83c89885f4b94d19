//! `umpire config check`: a configuration loaded as `serve` would load it (TLS files included
//! unless `--offline`), its policies' scopes printed in canonical form, its warnings; or every
//! ConfigMap with an `umpire.yaml` in a manifest file, checked one by one.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::service::load_config;

/// `config check -f MANIFESTS`: every ConfigMap holding an `umpire.yaml`, with its other data
/// files beside it, checked as `config check` checks a file.
pub fn check_manifests(file: &std::path::Path, offline: bool) -> ExitCode {
    let configs = match std::fs::read_to_string(file)
        .map_err(anyhow::Error::from)
        .and_then(|t| crate::cli::configs_in_manifests(&t))
    {
        Ok(c) if !c.is_empty() => c,
        Ok(_) => {
            eprintln!(
                "umpire: {} holds no ConfigMap with an umpire.yaml",
                file.display()
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("umpire: cannot read {}: {e:#}", file.display());
            return ExitCode::from(2);
        }
    };
    let mut worst = ExitCode::SUCCESS;
    for (name, files) in configs {
        let dir = match tempfile_dir() {
            Ok(d) => d,
            Err(e) => {
                eprintln!("umpire: {e}");
                return ExitCode::from(2);
            }
        };
        for (file_name, content) in &files {
            if file_name.contains('/') || file_name.starts_with('.') {
                continue;
            }
            if let Err(e) = std::fs::write(dir.join(file_name), content) {
                eprintln!("umpire: {e}");
                return ExitCode::from(2);
            }
        }
        println!("ConfigMap {name}:");
        let code = check(Some(dir.join("umpire.yaml")), offline);
        let _ = std::fs::remove_dir_all(&dir);
        if code != ExitCode::SUCCESS {
            worst = code;
        }
    }
    worst
}

/// A fresh private folder under the system's temporary folder.
fn tempfile_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::env::temp_dir().join(format!(
        "umpire-check-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    ));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

pub fn check(path: Option<PathBuf>, offline: bool) -> ExitCode {
    let loaded = match (&path, offline) {
        (Some(p), true) => crate::config::Config::load_offline(p).map_err(anyhow::Error::from),
        _ => load_config(path.as_ref()),
    };
    let config = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("umpire: invalid configuration: {e:#}");
            return ExitCode::from(2);
        }
    };
    // The listeners build their TLS when they start; check now that they will, as serve would.
    let tls = [
        ("tls", config.grpc_tls.as_ref()),
        ("webhook", config.webhook.as_ref().map(|w| &w.tls)),
    ];
    for (key, settings) in tls {
        if let Some(settings) = settings
            && !offline
            && let Err(e) = crate::api::tls::server_config(settings, &[])
        {
            eprintln!("umpire: invalid configuration: {key}: {e:#}");
            return ExitCode::from(2);
        }
    }
    let origin = path.as_ref().map_or_else(
        || "the built-in default".to_owned(),
        |p| p.display().to_string(),
    );
    println!("{origin}: valid");
    for line in config.scopes() {
        println!("  {line}");
    }
    for w in config.warnings.iter().chain(&config.unused_trust()) {
        println!("warning: {w}");
    }
    ExitCode::SUCCESS
}
