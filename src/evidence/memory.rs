//! An evidence source held in memory: tags and content-addressed blobs, with the same digest checks
//! as the registry and layout sources. The engine's unit tests run on it (no registry needed), and
//! `failing` stands for a registry that is down.

use std::collections::HashMap;

use async_trait::async_trait;

use super::manifest::Manifest;
use super::{FetchError, ManifestRef, Source};
use crate::digest::Digest;

#[derive(Default)]
pub struct MemorySource {
    tags: HashMap<String, Digest>,
    blobs: HashMap<Digest, Vec<u8>>,
    unavailable: bool,
}

impl MemorySource {
    pub fn new() -> Self {
        Self::default()
    }

    /// A source whose every read fails as an unreachable registry's would.
    pub fn failing() -> Self {
        Self {
            unavailable: true,
            ..Self::default()
        }
    }

    /// Stores `bytes` (a blob or a manifest); returns its digest.
    pub fn put(&mut self, bytes: Vec<u8>) -> Digest {
        let digest = Digest::of(&bytes);
        self.blobs.insert(digest.clone(), bytes);
        digest
    }

    /// Stores a manifest under `tag`; returns its digest.
    pub fn tag(&mut self, tag: &str, manifest: Vec<u8>) -> Digest {
        let digest = self.put(manifest);
        self.tags.insert(tag.to_owned(), digest.clone());
        digest
    }

    fn unavailable(&self, what: String) -> Result<(), FetchError> {
        if self.unavailable {
            return Err(FetchError::Unavailable {
                what,
                detail: "the in-memory source is set to fail".into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl Source for MemorySource {
    async fn manifest(
        &self,
        reference: &ManifestRef,
        max_bytes: u64,
    ) -> Result<Manifest, FetchError> {
        let what = format!("manifest {reference:?} in memory");
        self.unavailable(what.clone())?;
        let digest = match reference {
            ManifestRef::Digest(d) => d.clone(),
            ManifestRef::Tag(t) => self
                .tags
                .get(t)
                .cloned()
                .ok_or_else(|| FetchError::NotFound { what: what.clone() })?,
        };
        let bytes = self.blob(&digest, max_bytes).await?;
        Manifest::parse(&what, digest, &bytes, None)
    }

    async fn blob(&self, digest: &Digest, max_bytes: u64) -> Result<Vec<u8>, FetchError> {
        let what = format!("blob {digest} in memory");
        self.unavailable(what.clone())?;
        let bytes = self
            .blobs
            .get(digest)
            .ok_or_else(|| FetchError::NotFound { what: what.clone() })?;
        if bytes.len() as u64 > max_bytes {
            return Err(FetchError::LimitExceeded {
                what,
                limit: max_bytes,
                unit: "bytes",
            });
        }
        Ok(bytes.clone())
    }

    fn name(&self) -> String {
        "memory".into()
    }
}
