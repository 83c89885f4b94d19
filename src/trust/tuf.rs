//! Optional TUF refresh of Sigstore trusted roots (`trust.sigstore.<name>: tuf`), off unless asked
//! for. Such a root starts from the last refreshed copy on disk, or from the public-good root built
//! into umpire; `umpire serve` refreshes it over TUF in the background, writes the verified
//! `trusted_root.json` beside its TUF metadata and reloads the configuration when it changed. Any
//! failure keeps the root in use. `umpire verify` never fetches: it uses the last refreshed copy.
//! This file fetches and stores; `service` schedules the refreshes and reloads.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sigstore_trust_root::{TrustedRoot, TufBootstrap, TufConfig};

/// `trust.tuf`: where and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TufSettings {
    pub cache_dir: PathBuf,
    pub refresh: Duration,
    /// A TUF repository other than Sigstore's public-good one (a mirror, a private instance),
    /// with the `root.json` that bootstraps trust in it.
    pub mirror: Option<(String, PathBuf)>,
}

impl Default for TufSettings {
    fn default() -> Self {
        Self {
            cache_dir: std::env::temp_dir().join("umpire-tuf"),
            refresh: Duration::from_secs(24 * 3600),
            mirror: None,
        }
    }
}

/// The refreshed copy of root `name`.
pub fn refreshed_path(settings: &TufSettings, name: &str) -> PathBuf {
    settings.cache_dir.join(format!("{name}.trusted_root.json"))
}

/// The JSON a `tuf` root starts from: the refreshed copy if it is a usable root, else the embedded one.
pub fn current_json(settings: &TufSettings, name: &str) -> String {
    let path = refreshed_path(settings, name);
    match std::fs::read_to_string(&path) {
        Ok(json) if crate::verify::sigstore::SigstoreRoot::from_json(name, &json).is_ok() => json,
        Ok(_) => {
            tracing::warn!(path = %path.display(), "ignoring an unusable refreshed trusted root; using the embedded one");
            sigstore_trust_root::SIGSTORE_PRODUCTION_TRUSTED_ROOT.to_owned()
        }
        Err(_) => sigstore_trust_root::SIGSTORE_PRODUCTION_TRUSTED_ROOT.to_owned(),
    }
}

fn tuf_config(settings: &TufSettings) -> anyhow::Result<TufConfig> {
    let config = match &settings.mirror {
        Some((url, root)) => {
            TufConfig::custom(url.clone(), TufBootstrap::trusted(std::fs::read(root)?))
        }
        None => TufConfig::production(),
    };
    Ok(config.with_cache_dir(settings.cache_dir.join("metadata")))
}

/// Fetches the trusted root over TUF; writes it for `name` and returns true when it changed.
pub async fn refresh_once(settings: &TufSettings, name: &str) -> anyhow::Result<bool> {
    let root = TrustedRoot::from_tuf(tuf_config(settings)?).await?;
    let json = serde_json::to_string_pretty(&root)?;
    crate::verify::sigstore::SigstoreRoot::from_json(name, &json).map_err(anyhow::Error::msg)?;
    let path = refreshed_path(settings, name);
    if std::fs::read_to_string(&path).is_ok_and(|old| old == json) {
        return Ok(false);
    }
    write_atomically(&path, json.as_bytes())?;
    Ok(true)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}
