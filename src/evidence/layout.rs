//! A local OCI image layout (`oci:PATH`) as an evidence source: `index.json` names tags through
//! `org.opencontainers.image.ref.name`, blobs live under `blobs/sha256/`. The same checks as for a
//! registry: sizes bounded, every blob hashed against its digest.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::Deserialize;

use super::manifest::{Descriptor, Manifest};
use super::{FetchError, ManifestRef, Source};
use crate::digest::Digest;

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const MAX_INDEX_BYTES: u64 = 4 * 1024 * 1024;

pub struct LayoutSource {
    path: PathBuf,
}

#[derive(Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

impl LayoutSource {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
        }
    }

    async fn read_bounded(&self, file: &Path, max: u64, what: &str) -> Result<Vec<u8>, FetchError> {
        let meta = match tokio::fs::metadata(file).await {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(FetchError::NotFound {
                    what: what.to_owned(),
                });
            }
            Err(e) => {
                return Err(FetchError::Protocol {
                    what: what.to_owned(),
                    detail: format!("cannot read {}: {e}", file.display()),
                });
            }
        };
        if !meta.is_file() {
            return Err(FetchError::Protocol {
                what: what.to_owned(),
                detail: format!("{} is not a regular file", file.display()),
            });
        }
        if meta.len() > max {
            return Err(FetchError::LimitExceeded {
                what: what.to_owned(),
                limit: max,
                unit: "bytes",
            });
        }
        let bytes = tokio::fs::read(file)
            .await
            .map_err(|e| FetchError::Protocol {
                what: what.to_owned(),
                detail: format!("cannot read {}: {e}", file.display()),
            })?;
        // The file may have grown between the two calls.
        if bytes.len() as u64 > max {
            return Err(FetchError::LimitExceeded {
                what: what.to_owned(),
                limit: max,
                unit: "bytes",
            });
        }
        Ok(bytes)
    }

    async fn resolve_tag(&self, tag: &str) -> Result<Digest, FetchError> {
        let what = format!("tag {tag} in OCI layout {}", self.path.display());
        let index_path = self.path.join("index.json");
        let bytes = match self.read_bounded(&index_path, MAX_INDEX_BYTES, &what).await {
            Err(FetchError::NotFound { .. }) => {
                return Err(FetchError::NotFound {
                    what: format!("OCI layout {} (no index.json)", self.path.display()),
                });
            }
            other => other?,
        };
        let index: Index = serde_json::from_slice(&bytes).map_err(|e| FetchError::Protocol {
            what: what.clone(),
            detail: format!("index.json is not an OCI index: {e}"),
        })?;
        let mut found = index
            .manifests
            .iter()
            .filter(|d| d.annotations.get(REF_NAME).map(String::as_str) == Some(tag));
        let descriptor = found
            .next()
            .ok_or_else(|| FetchError::NotFound { what: what.clone() })?;
        if found.any(|d| d.digest != descriptor.digest) {
            return Err(FetchError::Protocol {
                what,
                detail: "index.json names two different manifests with this tag".into(),
            });
        }
        Digest::parse(&descriptor.digest).map_err(|e| FetchError::Protocol {
            what,
            detail: e.to_string(),
        })
    }
}

#[async_trait]
impl Source for LayoutSource {
    async fn manifest(
        &self,
        reference: &ManifestRef,
        max_bytes: u64,
    ) -> Result<Manifest, FetchError> {
        let digest = match reference {
            ManifestRef::Digest(d) => d.clone(),
            ManifestRef::Tag(t) => self.resolve_tag(t).await?,
        };
        let what = format!("manifest oci:{}@{digest}", self.path.display());
        let bytes = self.blob(&digest, max_bytes).await.map_err(|e| match e {
            FetchError::NotFound { .. } => FetchError::NotFound { what: what.clone() },
            other => other,
        })?;
        Manifest::parse(&what, digest, &bytes, None)
    }

    async fn blob(&self, digest: &Digest, max_bytes: u64) -> Result<Vec<u8>, FetchError> {
        let what = format!("blob oci:{}@{digest}", self.path.display());
        // `digest` is validated hex, so this path cannot leave blobs/sha256/.
        let file = self.path.join("blobs").join("sha256").join(digest.hex());
        let bytes = self.read_bounded(&file, max_bytes, &what).await?;
        if !digest.matches(&bytes) {
            return Err(FetchError::DigestMismatch {
                what,
                expected: digest.to_string(),
                found: Digest::of(&bytes).to_string(),
            });
        }
        Ok(bytes)
    }

    fn name(&self) -> String {
        format!("oci:{}", self.path.display())
    }
}
