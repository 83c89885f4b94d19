//! The registry gate's records of index children: when an index is allowed, each platform manifest
//! it lists is recorded (so that clients may fetch it through the gate) for as long as the index
//! verdict is cached, and a record counts only while that index verdict still allows.

use super::{KeyScope, VerdictCache};
use crate::digest::Digest;
use crate::evidence::{Manifest, ManifestKind};
use crate::verdict::{Code, Finding, Verdict};

/// Children of one allowed index recorded for the registry gate; an index listing more has the
/// rest verified on their own (denied unless signed themselves).
const MAX_RECORDED_CHILDREN: usize = 1024;

fn child_key(scope: &KeyScope, child: &str) -> String {
    format!("index-child/{}", scope.key(child))
}

impl VerdictCache {
    /// When `verdict` allows `manifest` and it is an index, records each platform manifest it
    /// lists as a child of an allowed index.
    pub async fn record_children(&self, scope: &KeyScope, manifest: &Manifest, verdict: &Verdict) {
        let ManifestKind::Index { manifests } = &manifest.kind else {
            return;
        };
        if !verdict.allowed {
            return;
        }
        let index = manifest.digest.as_str();
        let children = manifests
            .iter()
            .filter_map(|c| Digest::parse(&c.digest).ok());
        for child in children.take(MAX_RECORDED_CHILDREN) {
            let child = child.as_str();
            let finding = Finding::new(
                Code::Satisfied,
                format!("{child} is a platform manifest of the allowed index {index}"),
            );
            // The record names its index: the gate checks that the index verdict still holds.
            // It ends when the index verdict's own time bound does.
            let record = Verdict {
                digest: index.to_owned(),
                policy: verdict.policy.clone(),
                valid_until: verdict.valid_until,
                ..Verdict::allow(child, vec![finding])
            };
            self.put(&child_key(scope, child), &record).await;
        }
    }

    /// The digest of an allowed index that lists `child` as one of its platform manifests, while
    /// that index's verdict (in the same scope) still allows.
    pub async fn allowed_parent(&self, scope: &KeyScope, child: &str) -> Option<String> {
        let record = self.get(&child_key(scope, child)).await?;
        if !record.allowed {
            return None;
        }
        let parent = self.get(&scope.key(&record.digest)).await?;
        (parent.allowed && parent.digest == record.digest).then_some(record.digest)
    }
}
