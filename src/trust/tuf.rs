//! Optional TUF refresh of Sigstore trusted roots (`trust.sigstore.<name>: tuf`), off unless asked
//! for. A root counts only if it came through TUF: fetched and verified by this process, or read
//! from the TUF cache after TUF re-verified all of it (offline mode); else umpire starts from the
//! public-good root built in. The cache lives in a folder only umpire writes (mode 0700, its own
//! user), never a shared temporary one. `umpire serve` refreshes in the background and reloads the
//! configuration when the root changed; any failure keeps the root in use. `umpire verify` never
//! fetches. This file fetches and checks; `service` schedules the refreshes and reloads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use sigstore_trust_root::{TrustedRoot, TufBootstrap, TufConfig};

/// `trust.tuf`: where and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TufSettings {
    /// A folder only umpire writes (created with mode 0700, checked to be umpire's own); empty
    /// when no default could be chosen (no `XDG_CACHE_HOME` or `HOME`).
    pub cache_dir: PathBuf,
    pub refresh: Duration,
    /// A TUF repository other than Sigstore's public-good one (a mirror, a private instance),
    /// with the `root.json` that bootstraps trust in it.
    pub mirror: Option<(String, PathBuf)>,
}

impl Default for TufSettings {
    fn default() -> Self {
        Self {
            cache_dir: default_cache_dir(),
            refresh: Duration::from_secs(24 * 3600),
            mirror: None,
        }
    }
}

/// `$XDG_CACHE_HOME/umpire/tuf`, else `$HOME/.cache/umpire/tuf`: the user's own folder, never a
/// shared temporary one (a local user could create that first and choose the root).
fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        });
    base.map(|b| b.join("umpire").join("tuf"))
        .unwrap_or_default()
}

/// Makes sure `dir` is a folder only umpire can write: created with mode 0700 when missing; an
/// existing one must be a real folder (not a symlink) owned by umpire's user that neither group
/// nor others can write. Anything else is refused, naming the folder.
pub fn ensure_private_dir(dir: &Path) -> Result<(), String> {
    if dir.as_os_str().is_empty() {
        return Err(
            "no folder for the TUF cache: neither XDG_CACHE_HOME nor HOME is set; set trust.tuf.cache_dir".into(),
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        if std::fs::symlink_metadata(dir).is_err() {
            if let Some(parent) = dir.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
            }
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .map_err(|e| {
                    format!("cannot create the TUF cache folder {}: {e}", dir.display())
                })?;
        }
        let meta = std::fs::symlink_metadata(dir)
            .map_err(|e| format!("cannot read the TUF cache folder {}: {e}", dir.display()))?;
        let refuse = |why: String| {
            Err(format!(
                "refusing the TUF cache folder {}: {why}; it must be a folder umpire's user owns that no one else can write (remove it and umpire creates it with mode 0700, or set trust.tuf.cache_dir)",
                dir.display()
            ))
        };
        if !meta.file_type().is_dir() {
            return refuse("it is not a folder (a symlink or a file)".into());
        }
        let me = effective_uid();
        if meta.uid() != me {
            return refuse(format!(
                "it is owned by uid {}, not by umpire's uid {me}",
                meta.uid()
            ));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o022 != 0 {
            return refuse(format!("its mode is {mode:04o}: others can write in it"));
        }
    }
    Ok(())
}

/// The effective uid of this process, from `/proc/self/status` (Linux), else the owner of a file
/// this process just created.
#[cfg(unix)]
fn effective_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(uid) = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|u| u.parse().ok())
    {
        return uid;
    }
    std::env::current_exe()
        .and_then(std::fs::metadata)
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

/// Roots this process fetched and verified over TUF, by repository: what a reload after a
/// refresh starts from.
static VERIFIED: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());

fn repository_key(settings: &TufSettings) -> String {
    format!(
        "{}\0{}",
        settings.cache_dir.display(),
        settings
            .mirror
            .as_ref()
            .map_or("production", |(url, _)| url)
    )
}

/// The JSON a `tuf` root starts from, only ever from TUF: the root this process verified over
/// TUF, else the cached repository re-verified by TUF itself (signatures, thresholds, version
/// floors, expiry, target hashes: sigstore-tuf's offline mode), else the root built into umpire.
/// Nothing in the cache folder counts without passing TUF's checks.
pub fn current_json(settings: &TufSettings, name: &str) -> String {
    let key = repository_key(settings);
    if let Some(json) = VERIFIED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
        .cloned()
    {
        return json;
    }
    match verify_cache_offline(settings) {
        Ok(json) => json,
        Err(e) => {
            tracing::info!(root = %name, "no TUF-verified copy of the trusted root ({e:#}); starting from the embedded one");
            sigstore_trust_root::SIGSTORE_PRODUCTION_TRUSTED_ROOT.to_owned()
        }
    }
}

/// The trusted root from the TUF cache, verified offline by TUF (on a thread of its own: config
/// loading is synchronous and may run inside the async runtime).
fn verify_cache_offline(settings: &TufSettings) -> anyhow::Result<String> {
    if !settings.cache_dir.join("metadata").is_dir() {
        anyhow::bail!("no TUF cache in {}", settings.cache_dir.display());
    }
    let config = tuf_config(settings)?.offline();
    let root = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(anyhow::Error::from)
                    .and_then(|rt| {
                        rt.block_on(TrustedRoot::from_tuf(config))
                            .map_err(anyhow::Error::from)
                    })
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the offline TUF check panicked"))?
    })?;
    Ok(serde_json::to_string_pretty(&root)?)
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

/// Fetches the trusted root over TUF (its metadata cached in umpire's private folder) and keeps
/// it for this process; returns true when it changed.
pub async fn refresh_once(settings: &TufSettings, name: &str) -> anyhow::Result<bool> {
    ensure_private_dir(&settings.cache_dir).map_err(anyhow::Error::msg)?;
    let root = TrustedRoot::from_tuf(tuf_config(settings)?).await?;
    let json = serde_json::to_string_pretty(&root)?;
    crate::verify::sigstore::SigstoreRoot::from_json(name, &json).map_err(anyhow::Error::msg)?;
    let mut verified = VERIFIED.lock().unwrap_or_else(|p| p.into_inner());
    let key = repository_key(settings);
    if verified.get(&key) == Some(&json) {
        return Ok(false);
    }
    verified.insert(key, json);
    Ok(true)
}
