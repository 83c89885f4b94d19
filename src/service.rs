//! The running service's configuration, swappable at run time: `SIGHUP` (or `reload()`) loads the
//! config file and everything it names again and swaps in a new engine. A config that fails to load
//! is reported and the running one stays; calls in flight finish on the engine they started with.
//! Caches and in-flight work carry over (their keys include policy and trust fingerprints, so
//! nothing verified under old rules is served under new ones) unless the cache settings changed.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use anyhow::Context;

use crate::cache::VerdictCache;
use crate::config::Config;
use crate::engine::{Engine, Shared};
use crate::evidence::auth::Credentials;
use crate::metrics::{Metrics, ResultLabels};

pub struct Live {
    current: RwLock<Arc<Engine>>,
    config_path: Option<PathBuf>,
    metrics: Arc<Metrics>,
    places: crate::engine::Places,
    /// Signalled after every reload applied: background work that follows the configuration
    /// (the TUF refresher) looks at it again.
    reloaded: tokio::sync::Notify,
}

/// What the listeners serve with, from the current configuration (see [`Live::listeners`]).
#[derive(Debug, Clone)]
pub struct ListenerSettings {
    pub grpc_tls: Option<crate::config::TlsSettings>,
    pub webhook: Option<crate::config::WebhookSettings>,
    pub ext_authz: Option<crate::config::ExtAuthzSettings>,
    /// Connection ceilings and the like (`limits`).
    pub limits: crate::limits::Limits,
    /// Whether callers may skip cache lookups.
    pub allow_bypass_cache: bool,
    /// Whether gRPC callers may name local OCI layouts.
    pub allow_local_layouts: bool,
}

/// Why a request was not taken on.
#[derive(Debug, thiserror::Error)]
#[error("umpire is verifying its limit of {0} images at once; retry with back-off")]
pub struct Overloaded(pub usize);

/// Docker credentials from `$DOCKER_CONFIG` or `~/.docker/config.json` (none if absent).
pub fn credentials() -> anyhow::Result<Credentials> {
    match Credentials::default_path() {
        Some(p) => Credentials::load(&p),
        None => Ok(Credentials::default()),
    }
}

/// The config at `path`, or the built-in default.
pub fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    Ok(match path {
        Some(p) => Config::load(p)?,
        None => Config::builtin()?,
    })
}

impl Live {
    pub fn new(
        config: Config,
        config_path: Option<PathBuf>,
        credentials: Credentials,
    ) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::new());
        let cache = Arc::new(VerdictCache::new(
            config.cache.clone(),
            Arc::clone(&metrics),
        ));
        let shared = Arc::new(Shared::new(cache, Arc::clone(&metrics)));
        let max_in_flight = config.limits.max_in_flight;
        let engine = Arc::new(Engine::new(config, credentials, shared)?);
        Ok(Self {
            current: RwLock::new(engine),
            config_path,
            metrics,
            places: crate::engine::Places::new(max_in_flight),
            reloaded: tokio::sync::Notify::new(),
        })
    }

    /// The engine to answer one call with.
    pub fn engine(&self) -> Arc<Engine> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The listeners' settings of the current configuration: what the API serves on and how
    /// (the engine verifies; it does not hand out listener settings).
    pub fn listeners(&self) -> ListenerSettings {
        let engine = self.engine();
        let c = engine.config();
        ListenerSettings {
            grpc_tls: c.grpc_tls.clone(),
            webhook: c.webhook.clone(),
            ext_authz: c.ext_authz.clone(),
            limits: c.limits.clone(),
            allow_bypass_cache: c.limits.allow_bypass_cache,
            allow_local_layouts: c.allow_local_layouts,
        }
    }

    /// A place among the images being verified, or `Overloaded` at once (load shedding, no queue),
    /// for a surface that verifies one image per request outside the engine's own accounting.
    pub fn admit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Overloaded> {
        self.places.take().ok_or_else(|| {
            self.metrics.shed.inc();
            Overloaded(self.places.max())
        })
    }

    /// The places every surface's verifications take, one per image as it starts (cached answers
    /// take none): pass them in `Options::places`.
    pub fn places(&self) -> crate::engine::Places {
        self.places.clone()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Loads the configuration again and swaps it in; on error the running one stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let result = self.try_reload();
        let label = if result.is_ok() { "ok" } else { "rejected" };
        self.metrics
            .reloads
            .get_or_create(&ResultLabels { result: label })
            .inc();
        match &result {
            Ok(()) => tracing::info!("configuration reloaded"),
            Err(e) => tracing::error!(
                "configuration reload rejected, the running configuration stays: {e:#}"
            ),
        }
        result
    }

    /// The config file and every file it names (what a change on disk reloads).
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let engine = self.engine();
        let mut files: Vec<PathBuf> = self.config_path.iter().cloned().collect();
        files.extend(engine.config().files.iter().cloned());
        files
    }

    fn try_reload(&self) -> anyhow::Result<()> {
        let config = load_config(self.config_path.as_ref()).context("loading the configuration")?;
        let old = self.engine();
        let shared = if old.shared().cache.settings() == &config.cache {
            Arc::clone(old.shared())
        } else {
            let cache = Arc::new(VerdictCache::new(
                config.cache.clone(),
                Arc::clone(&self.metrics),
            ));
            Arc::new(Shared::new(cache, Arc::clone(&self.metrics)))
        };
        let engine = Arc::new(Engine::new(config, credentials()?, shared)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = engine;
        self.metrics.config_generation.inc();
        self.reloaded.notify_one();
        Ok(())
    }
}

/// Reloads on every SIGHUP, for as long as the process runs. The handler is installed when this
/// is called, so a SIGHUP during start-up reloads instead of ending the process.
#[cfg(unix)]
pub fn reload_on_sighup(live: Arc<Live>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    async move {
        let Ok(mut hup) = hup else {
            tracing::warn!("cannot listen for SIGHUP; reload by restarting");
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            let live = Arc::clone(&live);
            // Loading reads files and parses keys: keep it off the async workers.
            let _ = tokio::task::spawn_blocking(move || live.reload()).await;
        }
    }
}

/// What the watched files hold now: reloads happen when this changes, not on every event in
/// their folders.
fn contents_of(files: &[PathBuf]) -> Vec<u8> {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for f in files {
        h.update(f.as_os_str().as_encoded_bytes());
        h.update(b"\0");
        // Read through symlinks: a ConfigMap update swaps `..data`, not the file's own link.
        match std::fs::read(f) {
            Ok(bytes) => h.update(&bytes),
            Err(e) => h.update(e.to_string().as_bytes()),
        }
        h.update(b"\0");
    }
    h.finalize().to_vec()
}

/// How long the watched files must stay quiet before a reload (editors and kubelet write in steps).
const QUIET: std::time::Duration = std::time::Duration::from_millis(500);
/// A reload comes at most this long after the first change, however often the files change.
const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Files are loaded only when two reads this far apart agree (not caught half-written).
const SETTLE: std::time::Duration = std::time::Duration::from_millis(200);

/// Whether an event on `path` is about the watched `files`: one of them (or the file a symlink
/// names), or the `..data` link of a Kubernetes ConfigMap or Secret volume beside one of them
/// (kubelet swaps `..data` to a new folder; the files' own links stay as they are). Other writes
/// in the same folders (a log file, an editor's swap file) are not.
fn touches(path: &std::path::Path, files: &[PathBuf]) -> bool {
    files.iter().any(|f| {
        if path == f || std::fs::canonicalize(f).is_ok_and(|real| real == path) {
            return true;
        }
        let volume_link = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("..data"));
        volume_link && path.parent() == f.parent()
    })
}

/// The folders to watch for `files`: each one's own, and the folder its symlink resolves into.
fn folders_of(files: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for f in files {
        let real = std::fs::canonicalize(f).ok();
        for dir in [
            f.parent().map(PathBuf::from),
            real.and_then(|r| r.parent().map(PathBuf::from)),
        ]
        .into_iter()
        .flatten()
        {
            let dir = if dir.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                dir
            };
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
    }
    dirs
}

/// Waits for the next event that touches `files`; `None` when the watcher is gone.
async fn next_change(
    rx: &mut tokio::sync::mpsc::Receiver<Vec<PathBuf>>,
    files: &[PathBuf],
) -> Option<()> {
    loop {
        let paths = rx.recv().await?;
        if paths.iter().any(|p| touches(p, files)) {
            return Some(());
        }
    }
}

/// The watched files' contents once two reads `SETTLE` apart agree (a few tries at most).
async fn settled_contents(files: &[PathBuf]) -> Vec<u8> {
    let read = |files: Vec<PathBuf>| async move {
        tokio::task::spawn_blocking(move || contents_of(&files))
            .await
            .unwrap_or_default()
    };
    let mut last = read(files.to_vec()).await;
    for _ in 0..10 {
        tokio::time::sleep(SETTLE).await;
        let now = read(files.to_vec()).await;
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

/// Reloads when the config file or a file it names changes on disk (inotify on their folders,
/// so ConfigMap and Secret volume updates count): after `QUIET` without further changes to those
/// files, and never later than `MAX_WAIT` after the first; a bad config keeps the running one.
pub async fn reload_on_change(live: Arc<Live>) {
    use notify::Watcher as _;
    if live.config_path.is_none() {
        return;
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<PathBuf>>(256);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            let _ = tx.try_send(event.paths);
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!("cannot watch the configuration files ({e}); reload with SIGHUP");
            return;
        }
    };
    let mut watched: std::collections::BTreeSet<PathBuf> = Default::default();
    let mut files = live.watched_files();
    let mut seen = contents_of(&files);
    loop {
        for dir in folders_of(&files) {
            if watched.insert(dir.clone())
                && let Err(e) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive)
            {
                tracing::warn!(dir = %dir.display(), "cannot watch: {e}");
            }
        }
        if next_change(&mut rx, &files).await.is_none() {
            return;
        }
        let first = tokio::time::Instant::now();
        loop {
            let left = MAX_WAIT.saturating_sub(first.elapsed());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(QUIET.min(left), next_change(&mut rx, &files)).await {
                Ok(Some(())) => continue,
                Ok(None) => return,
                Err(_) => break,
            }
        }
        if settled_contents(&files).await == seen {
            continue;
        }
        tracing::info!("a configuration file changed on disk: reloading");
        let l = Arc::clone(&live);
        let _ = tokio::task::spawn_blocking(move || l.reload()).await;
        files = live.watched_files();
        seen = contents_of(&files);
    }
}

/// Refreshes every `tuf` root now and then every `refresh`, reloading the configuration on
/// change. It follows the configuration: roots added (or settings changed) by a reload are
/// refreshed at once, and with no `tuf` root it waits for the next reload.
pub async fn refresh_tuf_roots_forever(live: Arc<Live>) {
    let mut refreshed_for: Option<(crate::trust::tuf::TufSettings, Vec<String>)> = None;
    let mut due = tokio::time::Instant::now();
    loop {
        let current = {
            let engine = live.engine();
            (
                engine.config().tuf.clone(),
                engine.config().tuf_roots.clone(),
            )
        };
        let (settings, names) = &current;
        if names.is_empty() {
            refreshed_for = None;
            live.reloaded.notified().await;
            continue;
        }
        if refreshed_for.as_ref() != Some(&current) || tokio::time::Instant::now() >= due {
            let mut changed = false;
            for name in names {
                match crate::trust::tuf::refresh_once(settings, name).await {
                    Ok(c) => {
                        changed |= c;
                        tracing::info!(root = %name, changed = c, "TUF refresh");
                    }
                    Err(e) => {
                        tracing::warn!(root = %name, "TUF refresh failed, keeping the current trusted root: {e:#}")
                    }
                }
            }
            due = tokio::time::Instant::now() + settings.refresh;
            refreshed_for = Some(current.clone());
            if changed {
                let live = Arc::clone(&live);
                let _ = tokio::task::spawn_blocking(move || live.reload()).await;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = live.reloaded.notified() => {}
        }
    }
}
