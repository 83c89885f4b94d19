//! A request as the engine reads it: the reference parsed, the policies it selects (by name,
//! namespace and globs), and how the caller wants its answer. Pure: no I/O, no cache.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

pub use crate::coalesce::Places;
use crate::evidence::keyring::WorkloadCredentials;
use crate::policy::{self, Policy};
use crate::reference::{ImageRef, ReferenceError};

/// A request that cannot be answered with a verdict: the caller's mistake (gRPC INVALID_ARGUMENT).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    UnknownPolicy(#[from] policy::UnknownPolicy),
    #[error("request {index}: {error}")]
    InBatch {
        index: usize,
        error: Box<RequestError>,
    },
}

/// How one call wants its answer.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Skip cache lookups for this call (it still shares a run in flight); the fresh verdict is
    /// still cached.
    pub bypass_cache: bool,
    /// The caller's own deadline (a gRPC deadline), on top of the configured one.
    pub deadline: Option<Instant>,
    /// The Kubernetes namespace asking, for policies scoped by `namespaces`.
    pub namespace: Option<String>,
    /// Places among the images being verified (`limits.max_in_flight`): a verification takes one
    /// when it starts, and an image that finds none is answered with a retryable denial marked
    /// `shed` (cached answers take none). `None`: unbounded (one-shot commands, tests).
    pub places: Option<Places>,
    /// The workload's pull secrets, read for an admission (where the API server vouches for the
    /// namespace and the pod); never taken from a caller's request fields.
    pub workload: Option<Arc<WorkloadCredentials>>,
}

/// A parsed request with the policies (indices into the configuration's) that apply to it.
pub(crate) struct Prepared {
    pub input: String,
    pub image: ImageRef,
    pub policies: Vec<usize>,
    pub named: bool,
    /// The request's entry in the engine's memo of requests by digest.
    pub request_key: Option<String>,
    /// The workload's pull secrets (see [`Options::workload`]).
    pub workload: Option<Arc<WorkloadCredentials>>,
}

impl Prepared {
    /// Reads `image` and selects among `all` the policies that apply (`policy` names one;
    /// `namespace` scopes them).
    pub fn read(
        all: &[Policy],
        image: &str,
        policy: Option<&str>,
        namespace: Option<&str>,
    ) -> Result<Self, RequestError> {
        let parsed = ImageRef::parse(image)?;
        let policy = policy.filter(|p| !p.is_empty());
        let namespace = namespace.filter(|n| !n.is_empty());
        let selected = policy::select(all, &parsed.policy_subject(), namespace, policy)?;
        let policies = selected
            .iter()
            .filter_map(|s| all.iter().position(|p| std::ptr::eq(p, *s)))
            .collect();
        let request_key = parsed
            .digest()
            .is_some()
            .then(|| request_key(image, policy, namespace));
        Ok(Self {
            input: image.to_owned(),
            image: parsed,
            policies,
            named: policy.is_some(),
            request_key,
            workload: None,
        })
    }

    /// What the signatures of this image are checked against under `signed_identity`.
    pub fn signed_for(&self) -> policy::SignedFor {
        policy::SignedFor {
            repository: self.image.policy_subject(),
            tag: self.image.tag().map(str::to_owned),
            digest: self.image.digest().map(|d| d.to_string()),
        }
    }
}

/// A request as the engine's memo knows it (empty policy and namespace count as none).
pub(crate) fn request_key(image: &str, policy: Option<&str>, namespace: Option<&str>) -> String {
    let (policy, namespace) = (policy.unwrap_or(""), namespace.unwrap_or(""));
    let mut key = String::with_capacity(image.len() + policy.len() + namespace.len() + 2);
    for part in [image, policy, namespace] {
        key.push_str(part);
        key.push('\0');
    }
    key
}

/// The questions of a batch, each asked once: the distinct prepared requests with their options,
/// and for each request the index of its question among them (the same question twice in a batch
/// is answered once, and takes one place). A malformed request fails the batch, naming its index.
#[allow(clippy::type_complexity)]
pub(crate) fn prepare_batch(
    all: &[Policy],
    requests: &[(String, Option<String>)],
    options: &[Options],
) -> Result<(Vec<(Prepared, Options)>, Vec<usize>), RequestError> {
    let mut first_of: HashMap<(&str, Option<&str>, Option<String>, bool), usize> = HashMap::new();
    let mut unique = Vec::new();
    let mut slot = Vec::with_capacity(requests.len());
    for (index, (image, policy)) in requests.iter().enumerate() {
        let o = options.get(index).cloned().unwrap_or_default();
        let mut p =
            Prepared::read(all, image, policy.as_deref(), o.namespace.as_deref()).map_err(|e| {
                RequestError::InBatch {
                    index,
                    error: Box::new(e),
                }
            })?;
        p.workload = o.workload.clone();
        let question = (
            image.as_str(),
            policy.as_deref(),
            o.namespace.clone(),
            o.bypass_cache,
        );
        let next = unique.len();
        let at = *first_of.entry(question).or_insert(next);
        if at == next {
            unique.push((p, o));
        }
        slot.push(at);
    }
    Ok((unique, slot))
}
