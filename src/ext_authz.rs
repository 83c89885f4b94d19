//! A registry gate: Envoy's external authorization API (`envoy.service.auth.v3.Authorization`), so
//! an Envoy in front of a registry or pull-through cache lets a manifest pull through only when the
//! image verifies. Manifest pulls are `GET`/`HEAD /v2/<name>/manifests/<reference>`; other requests
//! pass or are denied by configuration. Every error denies.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::envoy_proto::envoy::service::auth::v3 as authz;
use crate::envoy_proto::envoy::r#type::v3::{HttpStatus, StatusCode};
use crate::envoy_proto::google::rpc;
use crate::reference::ImageRef;
use crate::service::Live;

/// gRPC status codes used in `CheckResponse.status`.
const OK: i32 = 0;
const PERMISSION_DENIED: i32 = 7;

pub struct Gate {
    live: Arc<Live>,
}

impl Gate {
    pub fn new(live: Arc<Live>) -> Self {
        Self { live }
    }
}

/// The image a registry request pulls: `(name, reference)` of a manifest GET/HEAD.
pub fn manifest_pull(method: &str, path: &str) -> Option<(String, String)> {
    if method != "GET" && method != "HEAD" {
        return None;
    }
    let path = path.split('?').next().unwrap_or(path);
    let rest = path.strip_prefix("/v2/")?;
    let (name, reference) = rest.rsplit_once("/manifests/")?;
    if name.is_empty() || reference.is_empty() || reference.contains('/') {
        return None;
    }
    Some((name.to_owned(), reference.to_owned()))
}

fn allow() -> authz::CheckResponse {
    authz::CheckResponse {
        status: Some(rpc::Status {
            code: OK,
            message: String::new(),
        }),
        http_response: Some(authz::check_response::HttpResponse::OkResponse(
            authz::OkHttpResponse {},
        )),
    }
}

fn deny(http: StatusCode, message: String) -> authz::CheckResponse {
    // The distribution API's error format, so `docker pull` shows the reason.
    let body = serde_json::json!({"errors": [{"code": "DENIED", "message": message}]}).to_string();
    authz::CheckResponse {
        status: Some(rpc::Status {
            code: PERMISSION_DENIED,
            message,
        }),
        http_response: Some(authz::check_response::HttpResponse::DeniedResponse(
            authz::DeniedHttpResponse {
                status: Some(HttpStatus { code: http as i32 }),
                body,
            },
        )),
    }
}

#[tonic::async_trait]
impl authz::authorization_server::Authorization for Gate {
    async fn check(
        &self,
        request: Request<authz::CheckRequest>,
    ) -> Result<Response<authz::CheckResponse>, Status> {
        let _permit = match self.live.admit() {
            Ok(p) => p,
            Err(e) => {
                return Ok(Response::new(deny(
                    StatusCode::ServiceUnavailable,
                    e.to_string(),
                )));
            }
        };
        let engine = self.live.engine();
        let Some(settings) = engine.config().ext_authz.clone() else {
            return Ok(Response::new(deny(
                StatusCode::ServiceUnavailable,
                "umpire's registry gate is not configured".into(),
            )));
        };
        let http = request
            .into_inner()
            .attributes
            .and_then(|a| a.request)
            .and_then(|r| r.http)
            .unwrap_or_default();
        let Some((name, reference)) = manifest_pull(&http.method, &http.path) else {
            return Ok(Response::new(if settings.pass_through {
                allow()
            } else {
                deny(
                    StatusCode::Forbidden,
                    format!(
                        "{} {} is not a manifest pull and pass_through is off",
                        http.method, http.path
                    ),
                )
            }));
        };
        let host = settings.upstream.clone().unwrap_or(http.host);
        let separator = if reference.starts_with("sha256:") {
            '@'
        } else {
            ':'
        };
        let image = format!("{host}/{name}{separator}{reference}");
        if let Err(e) = ImageRef::parse(&image) {
            return Ok(Response::new(deny(
                StatusCode::BadRequest,
                format!("{image}: {e}"),
            )));
        }
        let verdict = match engine.verify(&image, None).await {
            Ok(v) => v,
            Err(e) => return Ok(Response::new(deny(StatusCode::BadRequest, e.to_string()))),
        };
        tracing::info!(%image, allowed = verdict.allowed, digest = %verdict.digest, "registry gate");
        if verdict.allowed {
            return Ok(Response::new(allow()));
        }
        let reasons: Vec<String> = verdict
            .findings
            .iter()
            .take(3)
            .map(|f| format!("{} {}", f.code, f.message))
            .collect();
        let http_status = if verdict.retryable {
            StatusCode::ServiceUnavailable
        } else {
            StatusCode::Forbidden
        };
        Ok(Response::new(deny(
            http_status,
            format!("umpire denied {image}: {}", reasons.join(" | ")),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_pulls_are_recognised() {
        assert_eq!(
            manifest_pull("GET", "/v2/acme/app/manifests/v1"),
            Some(("acme/app".into(), "v1".into()))
        );
        assert_eq!(
            manifest_pull("HEAD", "/v2/a/manifests/sha256:00?x=1"),
            Some(("a".into(), "sha256:00".into()))
        );
        assert_eq!(manifest_pull("PUT", "/v2/a/manifests/v1"), None);
        assert_eq!(manifest_pull("GET", "/v2/a/blobs/sha256:00"), None);
        assert_eq!(manifest_pull("GET", "/v2/"), None);
        assert_eq!(manifest_pull("GET", "/v2//manifests/x"), None);
    }
}
