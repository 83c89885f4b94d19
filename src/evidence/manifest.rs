//! Manifest parsing: OCI and Docker v2 image manifests and indexes. Docker schema 1 and anything
//! ambiguous (both `manifests` and `layers`, a body media type contradicting the header) is refused.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::FetchError;
use crate::digest::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// The `Accept` header for manifest requests: the four media types umpire reads.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Counts beyond this in one manifest are refused before anything else looks at them.
pub const MAX_DESCRIPTORS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, rename = "artifactType")]
    pub artifact_type: Option<String>,
    /// An index entry's platform.
    #[serde(default)]
    pub platform: Option<Platform>,
}

/// An index entry's `platform` (the fields a runtime selects by).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
}

impl Descriptor {
    /// An entry that is evidence, not a platform: `platform: unknown/unknown`, where BuildKit
    /// stores its attestation manifests (`vnd.docker.reference.type: attestation-manifest`), or
    /// an entry so annotated that names no platform. containerd matches index entries by platform
    /// and no node is `unknown/unknown`.
    pub fn is_unrunnable(&self) -> bool {
        let attestation = self
            .annotations
            .get("vnd.docker.reference.type")
            .is_some_and(|t| t == "attestation-manifest");
        match &self.platform {
            Some(p) => p.os == "unknown" && p.architecture == "unknown",
            // Marked as BuildKit's attestation manifest and naming no platform: evidence. (One
            // that names a real platform is what a node of that platform would pull: runnable.)
            None => attestation,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestKind {
    /// An image manifest: its layers (for signature manifests, one layer per signature).
    Image { layers: Vec<Descriptor> },
    /// An image index (multi-platform): the manifests it lists.
    Index { manifests: Vec<Descriptor> },
}

/// A manifest whose bytes hash to `digest`.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub digest: Digest,
    pub media_type: String,
    pub kind: ManifestKind,
    /// OCI 1.1 `artifactType` (or, failing that, the config's media type).
    pub artifact_type: Option<String>,
    /// OCI 1.1 `subject`: the manifest this one refers to.
    pub subject: Option<Descriptor>,
    /// Bytes read for it (counted against the evidence budget of a verification).
    pub size: u64,
    /// An image manifest's config descriptor.
    pub config: Option<Descriptor>,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "schemaVersion")]
    schema_version: Option<u32>,
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    #[serde(rename = "artifactType")]
    artifact_type: Option<String>,
    subject: Option<Descriptor>,
    config: Option<Descriptor>,
    /// Read only to hold it to the OCI rule (string to string): a document that breaks it is refused.
    #[serde(default)]
    #[allow(dead_code)]
    annotations: Option<BTreeMap<String, String>>,
}

impl Manifest {
    /// Parses `bytes` (already checked to hash to `digest`); `content_type` is the HTTP header, if any.
    pub fn parse(
        what: &str,
        digest: Digest,
        bytes: &[u8],
        content_type: Option<&str>,
    ) -> Result<Self, FetchError> {
        let protocol = |detail: String| FetchError::Protocol {
            what: what.to_owned(),
            detail,
        };
        let unsupported = |media_type: &str, hint| FetchError::Unsupported {
            what: what.to_owned(),
            media_type: media_type.chars().take(100).collect(),
            hint,
        };
        let header = content_type
            .map(|c| c.split(';').next().unwrap_or("").trim())
            .filter(|c| !c.is_empty());
        if let Some(h) = header
            && DOCKER_SCHEMA1.contains(&h)
        {
            return Err(unsupported(
                h,
                " (Docker schema 1 is deprecated and unsigned-by-design; push the image again)",
            ));
        }
        // containerd reads manifests with Go's encoding/json: keys it folds together are refused.
        crate::gojson::check(bytes).map_err(|e| protocol(format!("manifest: {e}")))?;
        let raw: Raw = serde_json::from_slice(bytes).map_err(|e| {
            protocol(format!(
                "manifest is not a valid OCI document (annotations are string to string): {e}"
            ))
        })?;
        if raw.schema_version == Some(1) {
            return Err(unsupported(
                raw.media_type.as_deref().unwrap_or(DOCKER_SCHEMA1[0]),
                " (Docker schema 1 is deprecated; push the image again)",
            ));
        }
        if raw.schema_version != Some(2) {
            return Err(protocol(format!(
                "schemaVersion is {:?}, expected 2",
                raw.schema_version
            )));
        }
        if let (Some(body), Some(h)) = (raw.media_type.as_deref(), header)
            && body != h
            && h != "application/json"
        {
            return Err(protocol(format!(
                "body says media type {body:?} but the registry served {h:?}"
            )));
        }
        if raw.layers.is_some() && raw.manifests.is_some() {
            return Err(protocol(
                "manifest has both `layers` and `manifests`; refusing an ambiguous document".into(),
            ));
        }
        let media_type = match (raw.media_type.as_deref(), header) {
            (Some(m), _) => m.to_owned(),
            (None, Some(h)) if h != "application/json" => h.to_owned(),
            (None, _) if raw.manifests.is_some() => OCI_INDEX.to_owned(),
            (None, _) => OCI_MANIFEST.to_owned(),
        };
        let kind = match media_type.as_str() {
            OCI_INDEX | DOCKER_LIST => ManifestKind::Index {
                manifests: raw
                    .manifests
                    .ok_or_else(|| protocol("index has no `manifests`".into()))?,
            },
            OCI_MANIFEST | DOCKER_MANIFEST => ManifestKind::Image {
                layers: raw
                    .layers
                    .ok_or_else(|| protocol("image manifest has no `layers`".into()))?,
            },
            m if DOCKER_SCHEMA1.contains(&m) => {
                return Err(unsupported(
                    m,
                    " (Docker schema 1 is deprecated; push the image again)",
                ));
            }
            m => return Err(unsupported(m, "")),
        };
        let count = match &kind {
            ManifestKind::Image { layers } => layers.len(),
            ManifestKind::Index { manifests } => manifests.len(),
        };
        if count > MAX_DESCRIPTORS {
            return Err(FetchError::LimitExceeded {
                what: format!("{what} descriptor count"),
                limit: MAX_DESCRIPTORS as u64,
                unit: "descriptors",
            });
        }
        let artifact_type = raw
            .artifact_type
            .or_else(|| raw.config.as_ref().map(|c| c.media_type.clone()));
        Ok(Self {
            digest,
            media_type,
            kind,
            artifact_type,
            subject: raw.subject,
            size: bytes.len() as u64,
            config: raw.config,
        })
    }

    pub fn is_index(&self) -> bool {
        matches!(self.kind, ManifestKind::Index { .. })
    }

    /// An image manifest all of whose layers are supply-chain evidence (signatures, attestations,
    /// Sigstore bundles, Notation envelopes, SBOMs, scan reports), by an allow-list of media types:
    /// nothing in it is a filesystem or any other layer a runtime could execute.
    pub fn is_evidence(&self) -> bool {
        const EVIDENCE: &[&str] = &[
            "application/vnd.dev.cosign.",
            "application/vnd.dsse.envelope.",
            "application/vnd.in-toto",
            "application/vnd.dev.sigstore.bundle",
            "application/vnd.cncf.notary.",
            "application/jose+json",
            "application/cose",
            "application/spdx",
            "text/spdx",
            "application/vnd.cyclonedx",
            "application/sarif+json",
            "application/vnd.oci.empty.v1+json",
        ];
        match &self.kind {
            ManifestKind::Image { layers } => {
                !layers.is_empty()
                    && layers
                        .iter()
                        .all(|l| EVIDENCE.iter().any(|e| l.media_type.starts_with(e)))
            }
            ManifestKind::Index { .. } => false,
        }
    }

    /// An index every entry of which is an artifact (`artifactType` set): a referrers list.
    pub fn is_referrers_list(&self) -> bool {
        match &self.kind {
            ManifestKind::Index { manifests } => {
                manifests.iter().all(|d| d.artifact_type.is_some())
            }
            ManifestKind::Image { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str, ct: Option<&str>) -> Result<Manifest, FetchError> {
        Manifest::parse("m", Digest::of(body.as_bytes()), body.as_bytes(), ct)
    }

    #[test]
    fn attestation_manifests_are_evidence_and_real_platforms_are_not() {
        let entry = |extra: &str| -> Descriptor {
            serde_json::from_str(&format!(
                r#"{{"mediaType":"{OCI_MANIFEST}","digest":"sha256:{}","size":1{extra}}}"#,
                "a".repeat(64)
            ))
            .unwrap()
        };
        let marked = r#","annotations":{"vnd.docker.reference.type":"attestation-manifest"}"#;
        assert!(entry(r#","platform":{"os":"unknown","architecture":"unknown"}"#).is_unrunnable());
        assert!(entry(marked).is_unrunnable());
        assert!(!entry("").is_unrunnable(), "no platform matches every node");
        assert!(
            !entry(&format!(
                r#"{marked},"platform":{{"os":"linux","architecture":"amd64"}}"#
            ))
            .is_unrunnable(),
            "a node of that platform pulls it, whatever its annotation"
        );
    }

    #[test]
    fn keys_go_reads_as_one_are_refused_in_manifests() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"a","digest":"sha256:{h}","size":1}},"layers":[],"Layers":[{{"mediaType":"a","digest":"sha256:{h}","size":1}}]}}"#,
            h = "b".repeat(64)
        );
        assert!(parse(&body, None).is_err());
    }

    const LAYER: &str = r#"{"mediaType":"application/octet-stream","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0}"#;

    #[test]
    fn annotations_that_are_not_strings_are_refused() {
        let bad = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{LAYER},"layers":[{LAYER}],"annotations":{{"a":1}}}}"#
        );
        assert!(matches!(
            parse(&bad, None),
            Err(FetchError::Protocol { .. })
        ));
        let good = bad.replace(r#""a":1"#, r#""a":"1""#);
        assert!(parse(&good, None).is_ok());
        let nested = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{LAYER},"layers":[{{"mediaType":"x","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0,"annotations":{{"k":{{"o":1}}}}}}]}}"#
        );
        assert!(parse(&nested, None).is_err());
    }

    #[test]
    fn image_and_index_both_flavours() {
        let m = parse(&format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{LAYER},"layers":[{LAYER}]}}"#), None).unwrap();
        assert!(!m.is_index());
        let m = parse(
            &format!(r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[{LAYER}]}}"#),
            Some(DOCKER_LIST),
        )
        .unwrap();
        assert!(m.is_index());
        let m = parse(
            &format!(r#"{{"schemaVersion":2,"layers":[{LAYER}]}}"#),
            Some(DOCKER_MANIFEST),
        )
        .unwrap();
        assert_eq!(m.media_type, DOCKER_MANIFEST);
    }

    #[test]
    fn refuses_schema1_ambiguity_and_contradictions() {
        let e = parse(r#"{"schemaVersion":1,"name":"x"}"#, None).unwrap_err();
        assert!(matches!(e, FetchError::Unsupported { .. }));
        let e = parse(
            "{}",
            Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
        )
        .unwrap_err();
        assert!(matches!(e, FetchError::Unsupported { .. }));
        let both = format!(r#"{{"schemaVersion":2,"layers":[{LAYER}],"manifests":[{LAYER}]}}"#);
        assert!(matches!(
            parse(&both, None).unwrap_err(),
            FetchError::Protocol { .. }
        ));
        let contra = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[]}}"#);
        assert!(matches!(
            parse(&contra, Some(OCI_MANIFEST)).unwrap_err(),
            FetchError::Protocol { .. }
        ));
        let idx_with_layers =
            format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","layers":[]}}"#);
        assert!(parse(&idx_with_layers, None).is_err());
        assert!(
            parse(
                r#"{"schemaVersion":2,"mediaType":"text/plain","layers":[]}"#,
                None
            )
            .is_err()
        );
        assert!(parse("not json", None).is_err());
        assert!(parse(&"[".repeat(100_000), None).is_err());
    }
}
