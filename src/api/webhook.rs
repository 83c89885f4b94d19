//! The HTTPS listener for Kubernetes admission (`/admission/validate`, `/admission/mutate`) and the
//! Gatekeeper external data provider (`/gatekeeper/provider`). Every image of an object is verified
//! in one batch (each digest once); an object is admitted only when all of them were verified and
//! allowed, or in audit mode (allowed, with warnings). Any error admits nothing.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::api::admission::{self, ImageAt, Pin, Review};
use crate::config::WebhookSettings;
use crate::evidence::keyring::{REFUSED_CREDENTIALS, WorkloadCredentials};
use crate::metrics::VerdictLabels;
use crate::reference::ImageRef;
use crate::service::Live;
use crate::verdict::Verdict;

/// Request bodies larger than this are refused.
const MAX_BODY: usize = 4 * 1024 * 1024;
/// A denial message lists this many images at most.
const MAX_LISTED: usize = 10;

pub fn router(live: Arc<Live>) -> Router {
    Router::new()
        .route("/admission/validate", post(validate))
        .route("/admission/mutate", post(mutate))
        .route("/gatekeeper/provider", post(provider))
        .route("/healthz", get(|| async { "ok" }))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(live)
}

fn json_response(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

/// The outcome of checking one object's images.
struct Judgement {
    allowed: bool,
    message: Option<String>,
    warnings: Vec<String>,
    pins: Vec<Pin>,
    /// Some image found no place among those being verified: the denial is retryable.
    shed: bool,
}

impl Judgement {
    fn allow(message: Option<String>) -> Self {
        Self {
            allowed: true,
            message,
            warnings: Vec::new(),
            pins: Vec::new(),
            shed: false,
        }
    }

    fn refuse(message: String) -> Self {
        Self {
            allowed: false,
            ..Self::allow(Some(message))
        }
    }
}

fn settings(live: &Live) -> Option<WebhookSettings> {
    live.listeners().webhook
}

async fn judge(live: &Live, review: &Review) -> Judgement {
    match settings(live) {
        Some(settings) => judge_with(live, &settings, review).await,
        None => Judgement {
            allowed: false,
            message: Some("umpire's webhook is not configured".into()),
            warnings: Vec::new(),
            pins: Vec::new(),
            shed: false,
        },
    }
}

/// What admission answers for one AdmissionReview body, as `umpire verify --admission-review`
/// prints it: (allowed, message, warnings, pins as `pointer=image`). Without a `webhook:`
/// section, no namespace or image is exempt.
pub async fn dry_run(
    live: &Live,
    body: &[u8],
) -> Result<(bool, Option<String>, Vec<String>, Vec<String>), String> {
    let review = admission::parse_review(body)?;
    let settings = settings(live).unwrap_or_else(|| WebhookSettings {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        tls: crate::config::TlsSettings {
            cert: Default::default(),
            key: Default::default(),
            client_ca: None,
            allowed_clients: Vec::new(),
        },
        exempt_namespaces: Vec::new(),
        exempt_images: Vec::new(),
        audit: false,
        policy: None,
        timeout: None,
    });
    let j = judge_with(live, &settings, &review).await;
    let pins = j
        .pins
        .iter()
        .map(|p| format!("{}={}", p.pointer, p.image))
        .collect();
    Ok((j.allowed, j.message, j.warnings, pins))
}

async fn judge_with(live: &Live, settings: &WebhookSettings, review: &Review) -> Judgement {
    let refuse = Judgement::refuse;
    if review.operation == "DELETE" || review.operation == "CONNECT" || review.is_being_deleted() {
        return Judgement::allow(None);
    }
    if settings.exempt_namespaces.contains(&review.namespace) {
        let message = format!(
            "namespace {} is exempt from image verification",
            review.namespace
        );
        return Judgement::allow(Some(message));
    }
    let images = match admission::images(&review.kind, &review.object) {
        Ok(i) => i,
        Err(e) => {
            return refuse(format!(
                "umpire could not read the {}'s images: {e}",
                review.kind
            ));
        }
    };
    let to_verify = match to_verify(settings, review, &images) {
        Ok(v) => v,
        Err(message) => return refuse(message),
    };
    let requests: Vec<(String, Option<String>)> = to_verify
        .iter()
        .map(|at| (at.image.clone(), settings.policy.clone()))
        .collect();
    let engine = live.engine();
    let workload = match workload_credentials(&engine, review).await {
        Ok(w) => w,
        Err(message) => return refuse(message),
    };
    let options = crate::engine::Options {
        namespace: Some(review.namespace.clone()).filter(|n| !n.is_empty()),
        places: Some(live.places()),
        workload: workload.clone(),
        ..Default::default()
    };
    let verdicts = match engine.verify_batch_with(&requests, options).await {
        Ok(v) => v,
        Err(e) => return refuse(format!("umpire could not verify the images: {e}")),
    }; // A registry that refused a workload's credential: the secret may have been rotated since
    // it was read; the next admission reads it again.
    let refused = |v: &Verdict| {
        v.findings
            .iter()
            .any(|f| f.message.contains(REFUSED_CREDENTIALS))
    };
    if workload.is_some()
        && verdicts.iter().any(refused)
        && let Ok(client) = engine.kubernetes.secrets().await
    {
        client.forget(&review.namespace);
    }

    judgement(live, settings, &to_verify, &verdicts)
}

/// With `kubernetes.pull_secrets`, the credentials the kubelet would pull the object's images
/// with: read from the API in the object's namespace (the API server vouches for both). `None`
/// when it is off or the kind runs no pod.
async fn workload_credentials(
    engine: &crate::engine::Engine,
    review: &Review,
) -> Result<Option<Arc<WorkloadCredentials>>, String> {
    let kubernetes = &engine.kubernetes;
    if !kubernetes.settings().pull_secrets || review.namespace.is_empty() {
        return Ok(None);
    }
    let Some((secrets, account)) = admission::pull_identity(&review.kind, &review.object) else {
        return Ok(None);
    };
    let client = kubernetes
        .secrets()
        .await
        .map_err(|e| format!("retryable: umpire cannot read the workload's pull secrets: {e}"))?;
    let workload = client
        .for_workload(&review.namespace, &secrets, &account)
        .await;
    Ok(Some(Arc::new(workload)))
}

/// The images an object brings in that umpire judges: an UPDATE's images the object already held
/// were judged when they came (validation admits them; mutation pins only what is new); exempt
/// images are left out; local layouts and unreadable references refuse the object.
fn to_verify<'a>(
    settings: &WebhookSettings,
    review: &Review,
    images: &'a [ImageAt],
) -> Result<Vec<&'a ImageAt>, String> {
    let before = review.images_before();
    let mut to_verify: Vec<&ImageAt> = Vec::new();
    for at in images.iter().filter(|at| !before.contains(&at.image)) {
        match ImageRef::parse(&at.image) {
            Ok(ImageRef::Layout(_)) => {
                return Err(format!(
                    "image {:?} names a local OCI layout (oci:); admission takes registry references only",
                    at.image
                ));
            }
            Ok(r)
                if settings
                    .exempt_images
                    .iter()
                    .any(|g| g.matches(&r.policy_subject())) => {}
            Ok(_) => to_verify.push(at),
            Err(e) => {
                return Err(format!(
                    "image {:?} is not a valid reference: {e}",
                    at.image
                ));
            }
        }
    }
    Ok(to_verify)
}

/// The answer for the object from the verdicts of `to_verify`: denied images listed, warn
/// policies' findings as warnings, tags pinned to the digests allowed; in audit mode, allowed.
fn judgement(
    live: &Live,
    settings: &WebhookSettings,
    to_verify: &[&ImageAt],
    verdicts: &[Verdict],
) -> Judgement {
    let refuse = Judgement::refuse;
    // Findings of warn-mode policies: shown to whoever applied the object, never a denial.
    let warn_lines: Vec<String> = verdicts
        .iter()
        .flat_map(|v| {
            v.warnings.iter().map(move |f| {
                format!(
                    "umpire warn ({}): {}: {} {}",
                    f.policy, v.image, f.code, f.message
                )
            })
        })
        .collect();
    if verdicts.len() != to_verify.len() {
        return refuse("umpire's answer did not cover every image".into());
    }
    let denied: Vec<&Verdict> = verdicts.iter().filter(|v| !v.allowed).collect();
    let pins = to_verify
        .iter()
        .zip(verdicts)
        .filter(|(at, v)| {
            v.allowed
                && !v.digest.is_empty()
                && ImageRef::parse(&at.image).is_ok_and(|r| r.digest().is_none())
        })
        .map(|(at, v)| Pin {
            pointer: at.pointer.clone(),
            image: format!("{}@{}", at.image, v.digest),
        })
        .collect();
    if denied.is_empty() {
        return Judgement {
            allowed: true,
            message: None,
            warnings: warn_lines,
            pins,
            shed: false,
        };
    }
    let lines: Vec<String> = denied.iter().map(|v| describe(v)).collect();
    let mut message = format!(
        "umpire denied {} of {} images: {}",
        denied.len(),
        verdicts.len(),
        lines
            .iter()
            .take(MAX_LISTED)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ")
    );
    if lines.len() > MAX_LISTED {
        message.push_str(&format!("; and {} more", lines.len() - MAX_LISTED));
    }
    if settings.audit {
        live.metrics()
            .verdicts
            .get_or_create(&VerdictLabels {
                verdict: "audit_allowed",
                code: "AUDIT",
                policy: settings.policy.clone().unwrap_or_default(),
            })
            .inc();
        return Judgement {
            allowed: true,
            message: None,
            warnings: lines
                .into_iter()
                .map(|l| format!("umpire audit: {l}"))
                .chain(warn_lines)
                .collect(),
            pins,
            shed: false,
        };
    }
    let shed = denied.iter().any(|v| v.shed);
    Judgement {
        allowed: false,
        message: Some(if shed {
            format!("retryable: {message}")
        } else {
            message
        }),
        warnings: Vec::new(),
        pins: Vec::new(),
        shed,
    }
}

fn describe(v: &Verdict) -> String {
    let findings: Vec<String> = v
        .findings
        .iter()
        .filter(|f| f.code != crate::verdict::Code::Satisfied)
        .take(3)
        .map(|f| format!("{} {}", f.code, f.message))
        .collect();
    format!("{}: {}", v.image, findings.join(" | "))
}

async fn review_answer(live: Arc<Live>, body: Bytes, mutating: bool) -> Response {
    let review = match admission::parse_review(&body) {
        Ok(r) => r,
        // Without a request uid there is no AdmissionReview to answer: refuse the HTTP request.
        Err(e) => return json_response(StatusCode::BAD_REQUEST, json!({"error": e})),
    };
    // Each image takes its place among those being verified as its verification starts; an
    // object with any image that found none is denied as retryable (admit nothing).
    let j = judge(&live, &review).await;
    let overloaded = j.shed;
    // Request fields are logged escaped (`?`): a newline or an ANSI escape forges nothing.
    tracing::info!(kind = ?review.kind, namespace = ?review.namespace, allowed = j.allowed, mutating, "admission");
    let pins = if mutating && j.allowed {
        j.pins
    } else {
        Vec::new()
    };
    json_response(
        StatusCode::OK,
        admission::response(
            &review.uid,
            j.allowed,
            j.message.as_deref(),
            &j.warnings,
            &pins,
            overloaded,
        ),
    )
}

async fn validate(State(live): State<Arc<Live>>, body: Bytes) -> Response {
    review_answer(live, body, false).await
}

async fn mutate(State(live): State<Arc<Live>>, body: Bytes) -> Response {
    review_answer(live, body, true).await
}

async fn provider(State(live): State<Arc<Live>>, body: Bytes) -> Response {
    let keys = match admission::provider_keys(&body) {
        Ok(k) => k,
        // No keys to answer for: the whole request fails (Gatekeeper treats it as an error).
        Err(e) => {
            return json_response(
                StatusCode::OK,
                admission::provider_response(Vec::new(), Some(e)),
            );
        }
    };
    // One item per key, always: a key that cannot be judged carries its error, so a template
    // that looks only at per-item errors still denies.
    let every_key_fails = |keys: &[String], error: String| {
        let items = keys
            .iter()
            .map(|k| (k.clone(), Value::Null, error.clone()))
            .collect();
        json_response(
            StatusCode::OK,
            admission::provider_response(items, Some(error)),
        )
    };
    if keys.len() > crate::api::grpc::MAX_BATCH {
        // Refused before anything else is done for them: the answer is all the work.
        return every_key_fails(
            &keys,
            format!(
                "refused: a provider request carries at most {} keys (a VerifyBatch's limit), found {}",
                crate::api::grpc::MAX_BATCH,
                keys.len()
            ),
        );
    }
    let policy = settings(&live).and_then(|s| s.policy);
    let mut errors: Vec<Option<String>> = Vec::with_capacity(keys.len());
    let mut valid = Vec::new();
    for key in &keys {
        match ImageRef::parse(key) {
            Ok(ImageRef::Registry(_)) => {
                errors.push(None);
                valid.push((key.clone(), policy.clone()));
            }
            Ok(ImageRef::Layout(_)) => errors.push(Some(
                "not judged: local OCI layouts (oci:) are not accepted; give a registry reference"
                    .into(),
            )),
            Err(e) => errors.push(Some(format!("invalid image reference: {e}"))),
        }
    }
    // Each image takes its place as its verification starts (cached answers take none); a key
    // whose image found none carries its own error, and the rest are judged.
    let options = crate::engine::Options {
        places: Some(live.places()),
        ..Default::default()
    };
    let verdicts = match live.engine().verify_batch_with(&valid, options).await {
        Ok(v) if v.len() == valid.len() => v,
        Ok(_) => return every_key_fails(&keys, "not judged: umpire's answer was short".into()),
        Err(e) => return every_key_fails(&keys, format!("not judged: {e}")),
    };
    let mut verdicts = verdicts.into_iter();
    let mut items = Vec::with_capacity(keys.len());
    for (key, error) in keys.iter().zip(errors) {
        let item = match error {
            Some(e) => (key.clone(), Value::Null, e),
            None => match verdicts.next() {
                Some(v) if v.shed => {
                    let why = v.findings.first().map(|f| f.message.clone());
                    (key.clone(), Value::Null, why.unwrap_or_default())
                }
                Some(v) => {
                    let error = if v.allowed {
                        String::new()
                    } else {
                        format!("denied: {}", describe(&v))
                    };
                    let value = serde_json::to_value(&v).unwrap_or(Value::Null);
                    (key.clone(), value, error)
                }
                None => (key.clone(), Value::Null, "not judged".to_owned()),
            },
        };
        items.push(item);
    }
    json_response(StatusCode::OK, admission::provider_response(items, None))
}

/// Serves the webhook router over TLS on `listener` until `shutdown` completes; in-flight
/// admission requests get their answers before it returns.
pub async fn serve(
    live: Arc<Live>,
    settings: WebhookSettings,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let expiry = live
        .metrics()
        .certificate_expiry
        .get_or_create(&crate::metrics::CertificateLabels {
            listener: "webhook",
        })
        .clone();
    let tls = crate::api::tls::server_config_reporting(
        &settings.tls,
        &[b"h2", b"http/1.1"],
        Some(expiry),
    )?;
    let tls = crate::api::listener::HttpTls {
        acceptor: tokio_rustls::TlsAcceptor::from(tls),
        allowed_clients: Arc::new(settings.tls.allowed_clients.clone()),
    };
    let ceilings = crate::api::listener::Ceilings::from(&live.listeners().limits);
    let metrics = Arc::clone(live.metrics());
    tracing::info!(addr = %listener.local_addr()?, "webhook (HTTPS) listening");
    crate::api::listener::serve_http(
        "webhook",
        listener,
        ceilings,
        metrics,
        Some(tls),
        router(live),
        shutdown,
    )
    .await;
    Ok(())
}
