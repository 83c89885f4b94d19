//! The `umpire.v1.Verifier` gRPC service: maps requests to the engine and verdicts to responses.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};

use crate::api::wire::VerifyResponseWire;
use crate::engine::{Options, RequestError};
use crate::proto;
use crate::service::Live;

/// Requests per batch; more is refused rather than queued.
pub const MAX_BATCH: usize = 1000;

pub struct VerifierService {
    live: Arc<Live>,
}

impl VerifierService {
    pub fn new(live: Arc<Live>) -> Self {
        Self { live }
    }
}

/// The caller's gRPC deadline (`grpc-timeout`: digits and a unit H, M, S, m, u or n).
pub fn deadline_of<T>(request: &Request<T>) -> Option<Instant> {
    let value = request.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    let d = match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    };
    Instant::now().checked_add(d)
}

fn bypass_refused() -> Status {
    Status::permission_denied(
        "bypass_cache is turned off on this server (limits.allow_bypass_cache: false)",
    )
}

fn invalid(e: RequestError) -> Status {
    Status::invalid_argument(e.to_string())
}

/// A local OCI layout (`oci:PATH`) is a path on umpire's host: gRPC callers may name one only
/// when `allow_local_layouts` says so (else any client could probe which paths exist).
fn refuse_local_layout(image: &str, allowed: impl FnOnce() -> bool) -> Result<(), Status> {
    // Only an `oci:` reference parses as a layout; the setting is read only then (hot path).
    if image.starts_with("oci:")
        && !allowed()
        && matches!(
            crate::reference::ImageRef::parse(image),
            Ok(crate::reference::ImageRef::Layout(_))
        )
    {
        return Err(Status::invalid_argument(format!(
            "{image:?} names a local OCI layout: over gRPC only registry references are accepted (set allow_local_layouts: true to allow layouts on umpire's host)"
        )));
    }
    Ok(())
}

fn unpack(r: proto::VerifyRequest) -> (String, Option<String>) {
    (r.image, Some(r.policy).filter(|p| !p.is_empty()))
}

#[tonic::async_trait]
impl crate::proto_wire::verifier_server::Verifier for VerifierService {
    async fn verify(
        &self,
        request: Request<proto::VerifyRequest>,
    ) -> Result<Response<VerifyResponseWire>, Status> {
        let deadline = deadline_of(&request);
        let request = request.into_inner();
        if request.bypass_cache && !self.live.listeners().allow_bypass_cache {
            return Err(bypass_refused());
        }
        refuse_local_layout(&request.image, || self.live.listeners().allow_local_layouts)?;
        // Asked and answered before: the cached answer, already encoded, under the caller's image.
        if !request.bypass_cache {
            let namespace = Some(request.namespace.as_str()).filter(|n| !n.is_empty());
            let policy = Some(request.policy.as_str());
            if let Some((verdict, rest)) = (self.live.engine())
                .answered(&request.image, policy, namespace)
                .await
            {
                tracing::info!(image = ?request.image, allowed = verdict.allowed, digest = %verdict.digest, codes = %verdict.code_list(), "verify");
                let image = request.image;
                return Ok(Response::new(VerifyResponseWire { image, rest }));
            }
        }
        let options = Options {
            bypass_cache: request.bypass_cache,
            deadline,
            namespace: Some(request.namespace.clone()).filter(|n| !n.is_empty()),
            places: Some(self.live.places()),
            // A request's namespace selects policies, never credentials.
            workload: None,
        };
        let (image, policy) = unpack(request);
        let verdict = self
            .live
            .engine()
            .verify_with(&image, policy.as_deref(), options)
            .await
            .map_err(invalid)?;
        if verdict.shed {
            return Err(Status::resource_exhausted(
                verdict
                    .findings
                    .first()
                    .map(|f| f.message.clone())
                    .unwrap_or_default(),
            ));
        }
        tracing::info!(image = ?image, allowed = verdict.allowed, digest = %verdict.digest, codes = %verdict.code_list(), "verify");
        let rest = verdict.wire();
        Ok(Response::new(VerifyResponseWire { image, rest }))
    }

    async fn verify_batch(
        &self,
        request: Request<proto::VerifyBatchRequest>,
    ) -> Result<Response<proto::VerifyBatchResponse>, Status> {
        let deadline = deadline_of(&request);
        let requests = request.into_inner().requests;
        if requests.len() > MAX_BATCH {
            return Err(Status::invalid_argument(format!(
                "a batch holds at most {MAX_BATCH} requests, found {}",
                requests.len()
            )));
        }
        let engine = self.live.engine();
        let listeners = self.live.listeners();
        if requests.iter().any(|r| r.bypass_cache) && !listeners.allow_bypass_cache {
            return Err(bypass_refused());
        }
        for r in &requests {
            refuse_local_layout(&r.image, || listeners.allow_local_layouts)?;
        }
        // Each image takes its place as its verification starts; one that finds none gets a
        // retryable denial of its own while the rest are judged.
        let places = self.live.places();
        // Each entry's options are its own: one flagged entry does not make the batch bypass.
        let options: Vec<Options> = requests
            .iter()
            .map(|r| Options {
                bypass_cache: r.bypass_cache,
                deadline,
                namespace: Some(r.namespace.clone()).filter(|n| !n.is_empty()),
                places: Some(places.clone()),
                workload: None,
            })
            .collect();
        let requests: Vec<_> = requests.into_iter().map(unpack).collect();
        let verdicts = engine
            .verify_batch_each(&requests, &options)
            .await
            .map_err(invalid)?;
        tracing::info!(
            images = verdicts.len(),
            denied = verdicts.iter().filter(|v| !v.allowed).count(),
            "verify batch"
        );
        Ok(Response::new(proto::VerifyBatchResponse {
            responses: verdicts.into_iter().map(Into::into).collect(),
        }))
    }
}
