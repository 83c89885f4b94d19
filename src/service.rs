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
    in_flight: Arc<tokio::sync::Semaphore>,
    max_in_flight: usize,
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
            in_flight: Arc::new(tokio::sync::Semaphore::new(max_in_flight)),
            max_in_flight,
        })
    }

    /// The engine to answer one call with.
    pub fn engine(&self) -> Arc<Engine> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// A place among the images being verified, or `Overloaded` at once (load shedding, no queue).
    pub fn admit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Overloaded> {
        self.admit_images(1)
    }

    /// Places for `images` images at once (a batch, an admission object, a Gatekeeper request
    /// counts each distinct image), all or none. Held by the caller for as long as it waits for
    /// the work, which is cancelled when no caller waits any more.
    pub fn admit_images(
        &self,
        images: usize,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, Overloaded> {
        let n = u32::try_from(images.max(1)).unwrap_or(u32::MAX);
        Arc::clone(&self.in_flight)
            .try_acquire_many_owned(n)
            .map_err(|_| {
                self.metrics.shed.inc();
                Overloaded(self.max_in_flight)
            })
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
        Ok(())
    }
}

/// Reloads on every SIGHUP, for as long as the process runs.
#[cfg(unix)]
pub async fn reload_on_sighup(live: Arc<Live>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
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
