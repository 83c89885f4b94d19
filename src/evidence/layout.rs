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
        let Some(descriptor) = found.next().or_else(|| cosign_saved(&index, tag)) else {
            return Err(FetchError::NotFound { what: what.clone() });
        };
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

/// `cosign save` tags nothing: it marks the one image it saved and that image's signatures and
/// attestations with a `kind` annotation. The evidence tag `sha256-<hex>.sig` / `.att` names the
/// `sigs` / `atts` entry only when the saved image is exactly `sha256:<hex>` (and there is one of each).
fn cosign_saved<'a>(index: &'a Index, tag: &str) -> Option<&'a Descriptor> {
    let (subject, kind) = tag
        .strip_suffix(".sig")
        .map(|s| (s, "dev.cosignproject.cosign/sigs"))
        .or_else(|| {
            tag.strip_suffix(".att")
                .map(|s| (s, "dev.cosignproject.cosign/atts"))
        })?;
    let subject = subject.strip_prefix("sha256-")?;
    let with_kind = |k: &'static str| {
        index
            .manifests
            .iter()
            .filter(move |d| d.annotations.get("kind").map(String::as_str) == Some(k))
    };
    let mut images = with_kind("dev.cosignproject.cosign/image")
        .chain(with_kind("dev.cosignproject.cosign/imageIndex"));
    let image = images.next()?;
    if images.next().is_some() || image.digest.strip_prefix("sha256:") != Some(subject) {
        return None;
    }
    let mut evidence = with_kind(kind);
    let found = evidence.next()?;
    evidence.next().is_none().then_some(found)
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
