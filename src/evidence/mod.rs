//! Evidence sources: where manifests and blobs come from (an OCI registry, or a local OCI image
//! layout). Every source bounds what it reads and hands back only bytes that hash to the digest
//! asked for; failures are typed so that the engine can tell "unsigned" from "registry down".

pub mod auth;
pub mod buildkit;
pub mod discovery;
pub mod gather;
pub mod keyring;
pub mod layout;
pub mod manifest;
pub mod memory;
pub mod registry;

use async_trait::async_trait;

use crate::digest::Digest;
pub use manifest::{Descriptor, Manifest, ManifestKind};

/// What to fetch a manifest by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestRef {
    Tag(String),
    Digest(Digest),
}

impl ManifestRef {
    /// What a reference names: its digest, else its tag, else `latest` (Docker's default).
    pub fn of(image: &crate::reference::ImageRef) -> Self {
        match (image.digest(), image.tag()) {
            (Some(d), _) => Self::Digest(d.clone()),
            (None, Some(t)) => Self::Tag(t.to_owned()),
            (None, None) => Self::Tag("latest".to_owned()),
        }
    }
}

impl std::fmt::Display for ManifestRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ManifestRef::Tag(t) => write!(f, "tag {t}"),
            ManifestRef::Digest(d) => write!(f, "{d}"),
        }
    }
}

/// A failed fetch, by cause. `what` names the thing asked for (image, tag, blob).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    #[error("{what} was not found")]
    NotFound { what: String },
    #[error("{what} could not be fetched: {detail}")]
    Unavailable { what: String, detail: String },
    #[error("{what} is larger than the limit of {limit} {unit}")]
    LimitExceeded {
        what: String,
        limit: u64,
        unit: &'static str,
    },
    #[error("{what}: the bytes served ({found}) are not the digest asked for ({expected})")]
    DigestMismatch {
        what: String,
        expected: String,
        found: String,
    },
    #[error("{what} has media type {media_type:?}, which umpire does not accept{hint}")]
    Unsupported {
        what: String,
        media_type: String,
        hint: &'static str,
    },
    #[error("{what}: access denied by the registry (HTTP {status}); check the credentials for it")]
    AccessDenied { what: String, status: u16 },
    #[error("{what}: {detail}")]
    Protocol { what: String, detail: String },
}

impl FetchError {
    /// A credential that could not be had (a secret unreadable, none matching): transient causes
    /// may pass by themselves, the others are the configuration's or the cluster's to fix.
    pub fn credential_problem(what: &str, detail: String, transient: bool) -> Self {
        let what = what.to_owned();
        if transient {
            FetchError::Unavailable { what, detail }
        } else {
            FetchError::Protocol { what, detail }
        }
    }

    /// True for causes that may go away by themselves (network, 5xx, 429, timeouts).
    pub fn is_transient(&self) -> bool {
        matches!(self, FetchError::Unavailable { .. })
    }
}

/// A place manifests and blobs of one repository (or one layout) come from.
#[async_trait]
pub trait Source: Send + Sync {
    /// Fetches a manifest by tag or digest. By digest, the bytes are checked against it; by tag, the
    /// returned digest is the hash of the bytes served. Sizes are bounded by `max_bytes`.
    async fn manifest(
        &self,
        reference: &ManifestRef,
        max_bytes: u64,
    ) -> Result<Manifest, FetchError>;

    /// Fetches a blob by digest, checked against it, at most `max_bytes` long.
    async fn blob(&self, digest: &Digest, max_bytes: u64) -> Result<Vec<u8>, FetchError>;

    /// The referrers index of `digest`: the OCI referrers API where there is one, else the
    /// `sha256-<hex>` fallback tag. `None` when nothing refers to it.
    async fn referrers(
        &self,
        digest: &Digest,
        max_bytes: u64,
    ) -> Result<Option<Manifest>, FetchError> {
        match self
            .manifest(&ManifestRef::Tag(digest.cosign_tag("")), max_bytes)
            .await
        {
            Ok(m) => Ok(Some(m)),
            Err(FetchError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Called as the image's own manifest is about to be fetched by `image`. The requests that
    /// follow a tag go out in parallel once it resolves, so a source may open their connections
    /// now. Nothing by default.
    fn warm_up(&self, _image: &ManifestRef) {}

    /// Human name of the repository or layout, for messages.
    fn name(&self) -> String;

    /// What cached answers read from it are kept under: its name, and the credential its
    /// requests go with when that is a workload's (answers obtained with it serve only whoever
    /// holds the same credential).
    fn scope(&self) -> String {
        self.name()
    }
}
