//! One repository of one registry as an evidence source: manifests by tag or digest, blobs and
//! referrers (the API, or the `sha256-<hex>` fallback tag), each read bounded and hashed.

use std::sync::Arc;

use async_trait::async_trait;

use super::*;
use crate::evidence::keyring::Access;

/// One repository of one registry.
pub struct RegistrySource {
    pub(super) client: Arc<RegistryClient>,
    pub(super) registry: String,
    pub(super) repository: String,
    /// The credentials its requests go with.
    pub(super) access: Access,
}

#[async_trait]
impl Source for RegistrySource {
    async fn manifest(
        &self,
        reference: &ManifestRef,
        max_bytes: u64,
    ) -> Result<Manifest, FetchError> {
        let (path, what) = match reference {
            ManifestRef::Tag(t) => (
                format!("manifests/{t}"),
                format!("manifest {}:{t}", self.name()),
            ),
            ManifestRef::Digest(d) => (
                format!("manifests/{d}"),
                format!("manifest {}@{d}", self.name()),
            ),
        };
        let response = self
            .client
            .get(
                &self.registry,
                &self.repository,
                &self.access,
                &path,
                Some(manifest::ACCEPT),
                &what,
            )
            .await?;
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned);
        let claimed = response
            .headers()
            .get("docker-content-digest")
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned);
        let bytes = read_bounded(response, max_bytes, &what).await?;
        let digest = Digest::of(&bytes);
        let expected = match reference {
            ManifestRef::Digest(d) => Some(d.to_string()),
            // By tag, a claimed digest that disagrees with the bytes means someone is lying.
            ManifestRef::Tag(_) => claimed.filter(|c| c.starts_with("sha256:")),
        };
        if let Some(expected) = expected
            && expected != digest.as_str()
        {
            return Err(FetchError::DigestMismatch {
                what,
                expected: expected.chars().take(80).collect(),
                found: digest.to_string(),
            });
        }
        Manifest::parse(&what, digest, &bytes, content_type.as_deref())
    }

    async fn blob(&self, digest: &Digest, max_bytes: u64) -> Result<Vec<u8>, FetchError> {
        let what = format!("blob {}@{digest}", self.name());
        let response = self
            .client
            .get(
                &self.registry,
                &self.repository,
                &self.access,
                &format!("blobs/{digest}"),
                None,
                &what,
            )
            .await?;
        let bytes = read_bounded(response, max_bytes, &what).await?;
        if !digest.matches(&bytes) {
            return Err(FetchError::DigestMismatch {
                what,
                expected: digest.to_string(),
                found: Digest::of(&bytes).to_string(),
            });
        }
        Ok(bytes)
    }

    async fn referrers(
        &self,
        digest: &Digest,
        max_bytes: u64,
    ) -> Result<Option<Manifest>, FetchError> {
        let what = format!("referrers of {}@{digest}", self.name());
        // The API and the fallback tag at once: the fallback costs a request where the API exists,
        // and saves a round trip where it does not (Debian's distribution 2.8 answers 404).
        let api = async {
            let response = self
                .client
                .get(
                    &self.registry,
                    &self.repository,
                    &self.access,
                    &format!("referrers/{digest}"),
                    Some(manifest::OCI_INDEX),
                    &what,
                )
                .await?;
            let bytes = read_bounded(response, max_bytes, &what).await?;
            // The registry generates this answer: there is no digest to check it against, and each
            // manifest it lists is fetched by digest and checked on its own.
            Manifest::parse(&what, Digest::of(&bytes), &bytes, Some(manifest::OCI_INDEX))
        };
        let fallback_tag = ManifestRef::Tag(digest.cosign_tag(""));
        let fallback = self.manifest(&fallback_tag, max_bytes);
        let only_fallback = |fallback: Result<Manifest, FetchError>| match fallback {
            Ok(m) => Ok(Some(m)),
            Err(FetchError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        };
        // A registry known to lack the API is not asked again for a while: one request, not two.
        if self.client.referrers_api_missing(&self.registry) {
            return only_fallback(fallback.await);
        }
        let (api, fallback) = futures::join!(api, fallback);
        match api {
            Ok(m) => Ok(Some(m)),
            Err(FetchError::NotFound { .. }) => {
                // The spec forbids a 404 from a registry that has the API: it has none.
                self.client.remember_no_referrers_api(&self.registry);
                only_fallback(fallback)
            }
            Err(FetchError::Protocol { .. }) => only_fallback(fallback),
            Err(e) => Err(e),
        }
    }

    fn warm_up(&self, image: &ManifestRef) {
        if let ManifestRef::Tag(_) = image {
            self.client.prewarm(&self.registry);
        }
    }

    fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    fn scope(&self) -> String {
        match self.access.scope() {
            Some(id) => format!("{}/{}#credential={id}", self.registry, self.repository),
            None => self.name(),
        }
    }
}
