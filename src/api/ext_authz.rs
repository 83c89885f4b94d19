//! A registry gate: Envoy's external authorization API (`envoy.service.auth.v3.Authorization`), so
//! an Envoy in front of a registry or pull-through cache lets through only manifests that verified.
//! A tag is never passed upstream: an allowed tag read is redirected (307) to the verified digest.
//! A digest read passes when it verifies, when it is a platform manifest of an allowed index, or
//! when it is evidence (nothing runnable). Paths a server could decode into another are refused
//! first; the registry judged is the configured upstream, never the request's Host. Errors deny.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::config::ExtAuthzSettings;
use crate::digest::Digest;
use crate::engine::Engine;
use crate::envoy_proto::envoy::config::core::v3::{HeaderValue, HeaderValueOption};
use crate::envoy_proto::envoy::service::auth::v3 as authz;
use crate::envoy_proto::envoy::r#type::v3::{HttpStatus, StatusCode};
use crate::envoy_proto::google::rpc;
use crate::reference::{valid_repository, valid_tag_name};
use crate::service::Live;
use crate::verdict::Verdict;

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

/// What a registry request asks for, read exactly as the distribution server routes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryPath {
    /// `/v2/` (the API check).
    Base,
    /// `/v2/_catalog`: every repository's name (passes only with `pass_through`).
    Catalog,
    /// `/v2/<name>/manifests/<tag>`.
    ManifestByTag { name: String, tag: String },
    /// `/v2/<name>/manifests/sha256:<hex>`.
    ManifestByDigest { name: String, digest: Digest },
    /// `/v2/<name>/blobs/<digest>`.
    Blob,
    /// `/v2/<name>/referrers/<digest>`.
    Referrers,
    /// `/v2/<name>/tags/list`, `/v2/<name>/blobs/uploads/...`.
    Other,
    /// Anything outside `/v2/`.
    NotRegistry,
}

/// Why a path is refused before any other rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnsafePath(String);

/// Reads a request path (query dropped) the way the registry will. Any spelling that a server
/// could decode or normalise into something else (percent-escapes, `..`, `//`, backslashes,
/// control or non-ASCII characters), a `/v2/` path that names an invalid repository, or one that
/// two registry routes could both claim, is refused.
pub fn classify(path: &str) -> Result<RegistryPath, UnsafePath> {
    if !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(UnsafePath(format!(
            "path {:?} refused: only printable ASCII is accepted",
            truncate(path)
        )));
    }
    let path = path.split('?').next().unwrap_or(path);
    let refuse = |why: &str| {
        Err(UnsafePath(format!(
            "path {:?} refused: {why}",
            truncate(path)
        )))
    };
    if path.contains('%') {
        return refuse("percent-escapes are not accepted");
    }
    if path.contains("..") || path.contains("//") || path.contains('\\') {
        return refuse("`..`, `//` and `\\` are not accepted");
    }
    if !path.bytes().all(|b| b.is_ascii_graphic()) {
        return refuse("only printable ASCII is accepted");
    }
    if !path.starts_with('/') {
        return refuse("not an absolute path");
    }
    if path == "/v2" || path == "/v2/" {
        return Ok(RegistryPath::Base);
    }
    if path == "/v2/_catalog" {
        return Ok(RegistryPath::Catalog);
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Ok(RegistryPath::NotRegistry);
    };
    let named = |name: &str| valid_repository(name);
    let mut routes = Vec::new();
    if let Some(name) = rest.strip_suffix("/tags/list")
        && named(name)
    {
        routes.push(RegistryPath::Other);
    }
    if let Some((name, reference)) = rest.rsplit_once("/manifests/")
        && named(name)
    {
        if let Ok(digest) = Digest::parse(reference) {
            routes.push(RegistryPath::ManifestByDigest {
                name: name.to_owned(),
                digest,
            });
        } else if valid_tag_name(reference) {
            routes.push(RegistryPath::ManifestByTag {
                name: name.to_owned(),
                tag: reference.to_owned(),
            });
        }
    }
    if let Some((name, tail)) = rest.rsplit_once("/blobs/")
        && named(name)
    {
        if Digest::parse(tail).is_ok() {
            routes.push(RegistryPath::Blob);
        } else if tail == "uploads/" || tail.starts_with("uploads/") {
            routes.push(RegistryPath::Other);
        }
    }
    if let Some((name, digest)) = rest.rsplit_once("/referrers/")
        && named(name)
        && Digest::parse(digest).is_ok()
    {
        routes.push(RegistryPath::Referrers);
    }
    match routes.len() {
        1 => Ok(routes.remove(0)),
        0 => refuse("not a registry API path with a valid repository name"),
        _ => refuse("ambiguous: more than one registry route matches it"),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

/// cosign's evidence tags: `sha256-<hex>` (the referrers fallback), `.sig`, `.att`, `.sbom`.
fn is_evidence_tag(tag: &str) -> bool {
    let Some(rest) = tag.strip_prefix("sha256-") else {
        return false;
    };
    let (hex, suffix) = rest.split_at(rest.len().min(64));
    hex.len() == 64
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && matches!(suffix, "" | ".sig" | ".att" | ".sbom")
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
                headers: Vec::new(),
                body,
            },
        )),
    }
}

/// An allowed tag request: the client is sent to the digest that was verified, so that what it
/// fetches is that digest and never whatever the tag names by then.
fn redirect_to(name: &str, digest: &str, query: Option<&str>) -> authz::CheckResponse {
    // The query goes along (mirrors such as containerd's send `?ns=`): a digest names the same
    // bytes wherever they are fetched from.
    let location = match query {
        Some(q) => format!("/v2/{name}/manifests/{digest}?{q}"),
        None => format!("/v2/{name}/manifests/{digest}"),
    };
    authz::CheckResponse {
        status: Some(rpc::Status {
            code: PERMISSION_DENIED,
            message: format!("verified; fetch it by digest at {location}"),
        }),
        http_response: Some(authz::check_response::HttpResponse::DeniedResponse(
            authz::DeniedHttpResponse {
                status: Some(HttpStatus {
                    code: StatusCode::TemporaryRedirect as i32,
                }),
                headers: vec![HeaderValueOption {
                    header: Some(HeaderValue {
                        key: "location".into(),
                        value: location,
                    }),
                    append_action: 2,
                }],
                body: String::new(),
            },
        )),
    }
}

fn denial_of(image: &str, verdict: &Verdict) -> authz::CheckResponse {
    let reasons: Vec<String> = verdict
        .findings
        .iter()
        .filter(|f| f.code != crate::verdict::Code::Satisfied)
        .take(3)
        .map(|f| format!("{} {}", f.code, f.message))
        .collect();
    let http_status = if verdict.retryable {
        StatusCode::ServiceUnavailable
    } else {
        StatusCode::Forbidden
    };
    deny(
        http_status,
        format!("umpire denied {image}: {}", reasons.join(" | ")),
    )
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
        let Some(settings) = self.live.listeners().ext_authz else {
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
        Ok(Response::new(
            judge(&engine, &settings, &http.method, &http.path).await,
        ))
    }
}

/// The gate's answer for one request. The registry judged is always `settings.upstream`; the
/// request's own Host never chooses it.
async fn judge(
    engine: &Arc<Engine>,
    settings: &ExtAuthzSettings,
    method: &str,
    path: &str,
) -> authz::CheckResponse {
    let route = match classify(path) {
        Ok(r) => r,
        Err(e) => return deny(StatusCode::BadRequest, e.to_string()),
    };
    let reads = method == "GET" || method == "HEAD";
    let query = path
        .split_once('?')
        .map(|(_, q)| q)
        .filter(|q| !q.is_empty());
    let host = &settings.upstream;
    let other = |what: &str| {
        if settings.pass_through {
            allow()
        } else {
            deny(
                StatusCode::Forbidden,
                format!(
                    "{method} {}: {what} and pass_through is off",
                    truncate(path)
                ),
            )
        }
    };
    match route {
        RegistryPath::Blob | RegistryPath::Referrers if reads => allow(),
        RegistryPath::ManifestByTag { name, tag } if reads && is_evidence_tag(&tag) => {
            // Evidence passes, pinned: umpire reads what the tag names and sends the client to
            // that digest, whose request passes only for a manifest that runs nothing.
            let image = format!("{host}/{name}:{tag}");
            match engine.fetch_manifest(&image).await {
                Ok(m) if m.is_evidence() || m.is_referrers_list() => {
                    redirect_to(&name, m.digest.as_str(), query)
                }
                Ok(m) => deny(
                    StatusCode::Forbidden,
                    format!(
                        "umpire denied {image}: the tag is spelled like cosign evidence but names {}, a manifest with runnable layers",
                        m.digest
                    ),
                ),
                Err(verdict) => denial_of(&image, &verdict),
            }
        }
        RegistryPath::ManifestByTag { name, tag } if reads => {
            let image = format!("{host}/{name}:{tag}");
            let verdict = match engine.verify(&image, None).await {
                Ok(v) => v,
                Err(e) => return deny(StatusCode::BadRequest, e.to_string()),
            };
            tracing::info!(image = ?image, allowed = verdict.allowed, digest = %verdict.digest, "registry gate");
            if verdict.allowed && verdict.digest.starts_with("sha256:") {
                redirect_to(&name, &verdict.digest, query)
            } else if verdict.allowed {
                deny(
                    StatusCode::ServiceUnavailable,
                    format!("umpire allowed {image} but named no digest to pin it to"),
                )
            } else {
                denial_of(&image, &verdict)
            }
        }
        RegistryPath::ManifestByDigest { name, digest } if reads => {
            let image = format!("{host}/{name}@{digest}");
            if let Some(index) = engine.allowed_parent_index(&image).await {
                tracing::info!(image = ?image, %index, "registry gate: platform manifest of an allowed index");
                return allow();
            }
            let verdict = match engine.verify(&image, None).await {
                Ok(v) => v,
                Err(e) => return deny(StatusCode::BadRequest, e.to_string()),
            };
            tracing::info!(image = ?image, allowed = verdict.allowed, "registry gate");
            if verdict.allowed {
                return allow();
            }
            if !verdict.retryable
                && let Ok(m) = engine.fetch_manifest(&image).await
                && (m.is_evidence() || m.is_referrers_list())
            {
                return allow();
            }
            denial_of(&image, &verdict)
        }
        RegistryPath::Base if reads => allow(),
        RegistryPath::ManifestByTag { .. } | RegistryPath::ManifestByDigest { .. } => {
            other("not a manifest read")
        }
        RegistryPath::Catalog => other("the catalog lists every repository"),
        _ => other("not a manifest, blob or referrers read"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn registry_paths_are_read_as_the_registry_routes_them() {
        assert_eq!(
            classify("/v2/acme/app/manifests/v1"),
            Ok(RegistryPath::ManifestByTag {
                name: "acme/app".into(),
                tag: "v1".into()
            })
        );
        assert!(matches!(
            classify(&format!("/v2/a/manifests/{D}?x=1")),
            Ok(RegistryPath::ManifestByDigest { .. })
        ));
        assert_eq!(
            classify(&format!("/v2/a/blobs/{D}")),
            Ok(RegistryPath::Blob)
        );
        assert_eq!(classify("/v2/"), Ok(RegistryPath::Base));
        assert_eq!(classify("/healthz"), Ok(RegistryPath::NotRegistry));
        assert_eq!(classify("/v2/a/tags/list"), Ok(RegistryPath::Other));
    }

    #[test]
    fn spellings_a_server_decodes_are_refused() {
        for bad in [
            "/v2/acme/app/%6Danifests/unsigned",
            "/v2/acme/app/manifests%2Funsigned",
            "/v%32/acme/app/manifests/unsigned",
            "/v2/acme/app/manifests/../manifests/unsigned",
            "/v2/acme//app/manifests/unsigned",
            "/v2/acme/app\\manifests/unsigned",
            "/v2/Acme/app/manifests/unsigned",
            "/v2//manifests/x",
            "/v2/acme/app/manifests/unsigned/",
            "/v2/acme/app/manifests/",
        ] {
            assert!(classify(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn evidence_tags() {
        let hex = &D[7..];
        assert!(is_evidence_tag(&format!("sha256-{hex}.sig")));
        assert!(is_evidence_tag(&format!("sha256-{hex}.att")));
        assert!(is_evidence_tag(&format!("sha256-{hex}")));
        assert!(!is_evidence_tag(&format!("sha256-{hex}.exe")));
        assert!(!is_evidence_tag("sha256-abc.sig"));
        assert!(!is_evidence_tag("latest"));
    }
}
