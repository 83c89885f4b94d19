//! The integrations over real sockets: the admission webhook and Gatekeeper provider over HTTPS
//! (and mTLS), the Envoy ext_authz registry gate over gRPC, and the gRPC API over TLS.

mod support;

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Value, json};
use support::certs::Pki;
use support::cosign::{Image, SigningKey, payload, signature_layer};
use support::registry::Registry;
use umpire::envoy_proto::envoy::service::auth::v3 as authz;
use umpire::evidence::auth::Credentials;
use umpire::service::Live;

const REPO: &str = "team/app";

struct Setup {
    registry: Registry,
    key: SigningKey,
    signed: String,
    unsigned: String,
    pki: Pki,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Self {
        let registry = Registry::start().await;
        let key = SigningKey::p256();
        let signed = registry
            .push_signed(REPO, "signed", "int signed", &key)
            .await;
        let unsigned = registry
            .push_image(REPO, "unsigned", &Image::new("int unsigned"))
            .await;
        Self {
            registry,
            key,
            signed,
            unsigned,
            pki: Pki::new("umpire test CA"),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn img(&self, tag: &str) -> String {
        format!("{}/{REPO}:{tag}", self.registry.host())
    }

    /// A Live with the webhook configured (`extra` YAML lines under `webhook:`) and mTLS when
    /// `client_ca`; the server certificate and CA are written beside the config.
    fn live(&self, webhook_extra: &str, client_ca: bool, top_extra: &str) -> Arc<Live> {
        let (cert, key) = self.pki.server().write(self.dir.path(), "server");
        let ca = self.dir.path().join("ca.crt");
        std::fs::write(&ca, &self.pki.ca_pem).unwrap();
        let mut webhook = format!(
            "webhook:\n  listen: 127.0.0.1:0\n  tls_cert: {}\n  tls_key: {}\n",
            cert.display(),
            key.display()
        );
        if client_ca {
            webhook.push_str(&format!("  client_ca: {}\n", ca.display()));
        }
        webhook.push_str(webhook_extra);
        let host = self.registry.host();
        let yaml = support::one_key_yaml(
            &host,
            ("release", &self.key.public_pem()),
            "prod",
            &format!("{webhook}{top_extra}"),
        );
        let path = self.dir.path().join("umpire.yaml");
        std::fs::write(&path, yaml).unwrap();
        let config = umpire::config::Config::load(&path).unwrap();
        Arc::new(Live::new(config, Some(path), Credentials::default()).unwrap())
    }

    fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }
}

/// Starts the webhook listener; returns its base URL.
async fn start_webhook(live: &Arc<Live>) -> String {
    let settings = live.engine().config().webhook.clone().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(umpire::api::webhook::serve(
        Arc::clone(live),
        settings,
        listener,
        std::future::pending(),
    ));
    format!("https://127.0.0.1:{}", addr.port())
}

fn https_client(s: &Setup, identity: Option<&support::certs::Issued>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(s.pki.ca_pem.as_bytes()).unwrap()]);
    if let Some(i) = identity {
        b = b.identity(reqwest::Identity::from_pem(i.identity_pem().as_bytes()).unwrap());
    }
    b.build().unwrap()
}

fn review(kind: &str, namespace: &str, object: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "7f0b-uid", "kind": {"group": "", "version": "v1", "kind": kind}, "namespace": namespace, "operation": "CREATE", "object": object}
    })
}

fn pod(images: &[&str]) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": images.iter().enumerate().map(|(i, im)| json!({"name": format!("c{i}"), "image": im})).collect::<Vec<_>>()}})
}

fn deployment(images: &[&str]) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": {"spec": {
        "initContainers": [{"name": "init", "image": images[0]}],
        "containers": images[1..].iter().enumerate().map(|(i, im)| json!({"name": format!("c{i}"), "image": im})).collect::<Vec<_>>()}}}})
}

/// The webhook's answer at `url` to an AdmissionReview on `/admission/<path>`.
async fn admit(client: &reqwest::Client, url: &str, path: &str, body: &Value) -> Value {
    post(client, &format!("{url}/admission/{path}"), body).await
}

async fn post(client: &reqwest::Client, url: &str, body: &Value) -> Value {
    let r = client.post(url).json(body).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    r.json().await.unwrap()
}

#[tokio::test]
async fn deletions_and_updates_that_bring_no_new_image_are_never_refused() {
    let s = Setup::new().await;
    let live = s.live("", false, "");
    let url = start_webhook(&live).await;
    let client = https_client(&s, None);
    let update = |object: Value, old: Value| {
        let mut r = review("Pod", "apps", object);
        r["request"]["operation"] = "UPDATE".into();
        r["request"]["oldObject"] = old;
        r
    };
    // A Job's pod being deleted: the UPDATE that removes its finalizer is admitted, whatever its
    // image (it was admitted before this policy existed, say).
    let mut terminating = pod(&[&s.img("unsigned")]);
    terminating["metadata"]["deletionTimestamp"] = "2026-12-07T10:00:00Z".into();
    terminating["metadata"]["finalizers"] = json!([]);
    let mut before = pod(&[&s.img("unsigned")]);
    before["metadata"]["finalizers"] = json!(["batch.kubernetes.io/job-tracking"]);
    before["metadata"]["deletionTimestamp"] = "2026-12-07T10:00:00Z".into();
    for path in ["validate", "mutate"] {
        let r = post(
            &client,
            &format!("{url}/admission/{path}"),
            &update(terminating.clone(), before.clone()),
        )
        .await;
        assert_eq!(r["response"]["allowed"], true, "{path}: {r}");
    }
    // A deletionTimestamp only the object claims (a CREATE, or an UPDATE of a live pod bringing
    // a new image) is no deletion: the API server sets it, no client can.
    let mut claims = pod(&[&s.img("unsigned")]);
    claims["metadata"]["deletionTimestamp"] = "2026-12-07T10:00:00Z".into();
    let r = admit(
        &client,
        &url,
        "validate",
        &review("Pod", "apps", claims.clone()),
    )
    .await;
    assert_eq!(r["response"]["allowed"], false, "{r}");
    let r = admit(
        &client,
        &url,
        "validate",
        &update(claims, pod(&[&s.img("signed")])),
    )
    .await;
    assert_eq!(r["response"]["allowed"], false, "{r}");
    // An UPDATE that keeps the images it had (a label change) is admitted; pins nothing.
    let mut relabelled = pod(&[&s.img("unsigned")]);
    relabelled["metadata"]["labels"] = json!({"tier": "web"});
    for path in ["validate", "mutate"] {
        let r = post(
            &client,
            &format!("{url}/admission/{path}"),
            &update(relabelled.clone(), pod(&[&s.img("unsigned")])),
        )
        .await;
        assert_eq!(r["response"]["allowed"], true, "{path}: {r}");
        assert!(r["response"]["patch"].is_null(), "{path}: {r}");
    }
    // Operations: the serving certificate's expiry, and verdicts by policy.
    let metrics = live.metrics().encode();
    assert!(
        metrics.contains("umpire_certificate_expiry_timestamp_seconds{listener=\"webhook\"}"),
        "{metrics}"
    );
    // An UPDATE that brings a new image is judged on it.
    let r = post(
        &client,
        &format!("{url}/admission/validate"),
        &update(
            pod(&[&s.img("signed"), &s.img("unsigned")]),
            pod(&[&s.img("signed")]),
        ),
    )
    .await;
    assert_eq!(r["response"]["allowed"], false, "{r}");
    let metrics = live.metrics().encode();
    assert!(
        metrics.lines().any(|l| l.starts_with(
            "umpire_verdicts_total{verdict=\"denied\",code=\"NO_SIGNATURES\",policy=\""
        ) && !l.contains("policy=\"\"")),
        "{metrics}"
    );
}

#[tokio::test]
async fn admission_over_https_allows_signed_and_denies_unsigned_pods_and_deployments() {
    let s = Setup::new().await;
    let live = s.live("", false, "");
    let url = start_webhook(&live).await;
    let client = https_client(&s, None);

    let r = admit(
        &client,
        &url,
        "validate",
        &review("Pod", "apps", pod(&[&s.img("signed")])),
    )
    .await;
    assert_eq!(r["response"]["uid"], "7f0b-uid");
    assert_eq!(r["response"]["allowed"], true, "{r}");

    let r = admit(
        &client,
        &url,
        "validate",
        &review("Pod", "apps", pod(&[&s.img("unsigned")])),
    )
    .await;
    assert_eq!(r["response"]["allowed"], false);
    let message = r["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.contains(&s.img("unsigned")) && message.contains("NO_SIGNATURES"),
        "{message}"
    );

    // A Deployment: one unsigned image among signed ones is enough to deny, and only it is named.
    let d = deployment(&[&s.img("signed"), &s.img("signed"), &s.img("unsigned")]);
    let r = admit(&client, &url, "validate", &review("Deployment", "apps", d)).await;
    assert_eq!(r["response"]["allowed"], false);
    let message = r["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("1 of 3 images"), "{message}");
    let d = deployment(&[&s.img("signed"), &s.img("signed")]);
    let r = admit(&client, &url, "validate", &review("Deployment", "apps", d)).await;
    assert_eq!(r["response"]["allowed"], true, "{r}");

    // Malformed reviews are refused, never allowed.
    let bad = client
        .post(format!("{url}/admission/validate"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn mutating_pins_tags_to_the_verified_digests() {
    let s = Setup::new().await;
    let live = s.live("", false, "");
    let url = start_webhook(&live).await;
    let by_digest = format!("{}/{REPO}@{}", s.registry.host(), s.signed);
    let r = admit(
        &https_client(&s, None),
        &url,
        "mutate",
        &review("Pod", "apps", pod(&[&s.img("signed"), &by_digest])),
    )
    .await;
    assert_eq!(r["response"]["allowed"], true);
    assert_eq!(r["response"]["patchType"], "JSONPatch");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(r["response"]["patch"].as_str().unwrap())
        .unwrap();
    let patch: Value = serde_json::from_slice(&patch).unwrap();
    // Only the tag reference is rewritten; the digest reference is already pinned.
    assert_eq!(
        patch,
        json!([{"op": "replace", "path": "/spec/containers/0/image", "value": format!("{}@{}", s.img("signed"), s.signed)}])
    );
}

#[tokio::test]
async fn exempt_namespaces_and_audit_mode() {
    let s = Setup::new().await;
    let live = s.live("  exempt_namespaces: [kube-system]\n", false, "");
    let url = start_webhook(&live).await;
    let client = https_client(&s, None);
    let r = admit(
        &client,
        &url,
        "validate",
        &review("Pod", "kube-system", pod(&[&s.img("unsigned")])),
    )
    .await;
    assert_eq!(r["response"]["allowed"], true);

    let s2 = Setup::new().await;
    let live = s2.live("  audit: true\n", false, "");
    let url = start_webhook(&live).await;
    let r = admit(
        &https_client(&s2, None),
        &url,
        "validate",
        &review("Pod", "apps", pod(&[&s2.img("unsigned")])),
    )
    .await;
    assert_eq!(r["response"]["allowed"], true);
    let warnings = r["response"]["warnings"].as_array().unwrap();
    assert!(
        warnings[0].as_str().unwrap().contains("NO_SIGNATURES"),
        "{warnings:?}"
    );
    assert!(live.metrics().encode().contains("audit_allowed"));
}

#[tokio::test]
async fn gatekeeper_provider_answers_per_key() {
    let s = Setup::new().await;
    let live = s.live("", false, "");
    let url = start_webhook(&live).await;
    let request = json!({"apiVersion": "externaldata.gatekeeper.sh/v1beta1", "kind": "ProviderRequest", "request": {"keys": [s.img("signed"), s.img("unsigned"), "NOT A REF"]}});
    let r = post(
        &https_client(&s, None),
        &format!("{url}/gatekeeper/provider"),
        &request,
    )
    .await;
    assert_eq!(r["kind"], "ProviderResponse");
    let items = r["response"]["items"].as_array().unwrap();
    let find = |k: &str| items.iter().find(|i| i["key"] == k).unwrap().clone();
    assert_eq!(find(&s.img("signed"))["value"]["allowed"], true);
    assert_eq!(find(&s.img("signed"))["error"], "");
    assert_eq!(find(&s.img("signed"))["value"]["digest"], s.signed.as_str());
    assert_eq!(find(&s.img("unsigned"))["value"]["allowed"], false);
    assert!(
        find(&s.img("unsigned"))["error"]
            .as_str()
            .unwrap()
            .contains("NO_SIGNATURES")
    );
    assert!(
        find("NOT A REF")["error"]
            .as_str()
            .unwrap()
            .contains("invalid")
    );
}

#[tokio::test]
async fn mtls_refuses_clients_without_a_trusted_certificate() {
    let s = Setup::new().await;
    let live = s.live("  allowed_clients: [kube-apiserver]\n", true, "");
    let url = start_webhook(&live).await;
    let body = review("Pod", "apps", pod(&[&s.img("signed")]));

    // No client certificate.
    assert!(
        https_client(&s, None)
            .post(format!("{url}/admission/validate"))
            .json(&body)
            .send()
            .await
            .is_err()
    );
    // A certificate from another CA.
    let stranger = Pki::new("stranger").client("kube-apiserver");
    assert!(
        https_client(&s, Some(&stranger))
            .post(format!("{url}/admission/validate"))
            .json(&body)
            .send()
            .await
            .is_err()
    );
    // Trusted CA, but an identity not on the allow-list.
    let other = s.pki.client("someone-else");
    assert!(
        https_client(&s, Some(&other))
            .post(format!("{url}/admission/validate"))
            .json(&body)
            .send()
            .await
            .is_err()
    );
    // Trusted and allowed.
    let apiserver = s.pki.client("kube-apiserver");
    let r = admit(&https_client(&s, Some(&apiserver)), &url, "validate", &body).await;
    assert_eq!(r["response"]["allowed"], true);
}

async fn check(
    client: &mut authz::authorization_client::AuthorizationClient<tonic::transport::Channel>,
    method: &str,
    host: &str,
    path: &str,
) -> authz::CheckResponse {
    let http = authz::attribute_context::HttpRequest {
        method: method.into(),
        host: host.into(),
        path: path.into(),
        ..Default::default()
    };
    let request = authz::CheckRequest {
        attributes: Some(authz::AttributeContext {
            request: Some(authz::attribute_context::Request { http: Some(http) }),
            ..Default::default()
        }),
    };
    client.check(request).await.unwrap().into_inner()
}

type GateClient = authz::authorization_client::AuthorizationClient<tonic::transport::Channel>;

async fn start_gate(live: &Arc<Live>) -> GateClient {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(umpire::api::server::serve_ext_authz_on(
        Arc::clone(live),
        listener,
        std::future::pending(),
    ));
    loop {
        if let Ok(c) =
            authz::authorization_client::AuthorizationClient::connect(format!("http://{addr}"))
                .await
        {
            break c;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// (HTTP status the client gets, Location header); 200 for a request passed upstream.
fn outcome(r: &authz::CheckResponse) -> (u32, Option<String>) {
    match &r.http_response {
        Some(authz::check_response::HttpResponse::OkResponse(_)) => {
            assert_eq!(r.status.as_ref().unwrap().code, 0);
            (200, None)
        }
        Some(authz::check_response::HttpResponse::DeniedResponse(d)) => {
            assert_ne!(r.status.as_ref().unwrap().code, 0);
            let location = d
                .headers
                .iter()
                .filter_map(|h| h.header.as_ref())
                .find(|h| h.key.eq_ignore_ascii_case("location"))
                .map(|h| h.value.clone());
            (d.status.as_ref().unwrap().code as u32, location)
        }
        None => panic!("no http_response: {r:?}"),
    }
}

fn gate_config(host: &str, pass_through: bool) -> String {
    format!(
        "ext_authz_listen: 127.0.0.1:0\next_authz:\n  upstream: {host}\n  pass_through: {pass_through}\n"
    )
}

#[tokio::test]
async fn ext_authz_gates_manifest_pulls() {
    let s = Setup::new().await;
    let host = s.registry.host();
    for pass_through in [true, false] {
        let live = s.live("", false, &gate_config(&host, pass_through));
        let mut client = start_gate(&live).await;
        // Envoy fronts the registry as "registry.example"; umpire judges the upstream.
        let r = check(
            &mut client,
            "GET",
            "registry.example",
            &format!("/v2/{REPO}/manifests/unsigned"),
        )
        .await;
        let Some(authz::check_response::HttpResponse::DeniedResponse(denied)) = &r.http_response
        else {
            panic!("{r:?}")
        };
        assert_eq!(outcome(&r).0, 403);
        assert!(denied.body.contains("NO_SIGNATURES"), "{}", denied.body);

        let r = check(
            &mut client,
            "GET",
            "registry.example",
            &format!("/v2/{REPO}/manifests/{}", s.signed),
        )
        .await;
        assert_eq!(outcome(&r), (200, None), "a signed digest pulls");
        let r = check(
            &mut client,
            "GET",
            "registry.example",
            &format!("/v2/{REPO}/manifests/{}", s.unsigned),
        )
        .await;
        assert_eq!(outcome(&r).0, 403, "an unsigned digest does not");

        // Blobs pass whatever pass_through says: content-addressed, reached only through manifests.
        let r = check(
            &mut client,
            "GET",
            "registry.example",
            &format!("/v2/{REPO}/blobs/{}", s.unsigned),
        )
        .await;
        assert_eq!(outcome(&r).0, 200);
        let r = check(
            &mut client,
            "GET",
            "registry.example",
            &format!("/v2/{REPO}/tags/list"),
        )
        .await;
        assert_eq!(
            outcome(&r).0 == 200,
            pass_through,
            "other reads follow pass_through"
        );
    }
}

#[tokio::test]
async fn gate_never_passes_a_tag_upstream_and_redirects_to_the_verified_digest() {
    let s = Setup::new().await;
    let host = s.registry.host();
    let live = s.live("", false, &gate_config(&host, true));
    let mut client = start_gate(&live).await;
    let path = format!("/v2/{REPO}/manifests/signed");
    for method in ["GET", "HEAD"] {
        let r = check(&mut client, method, "registry.example", &path).await;
        assert_eq!(
            outcome(&r),
            (307, Some(format!("/v2/{REPO}/manifests/{}", s.signed))),
            "{method}"
        );
    }
    // A mirror's query (containerd's `?ns=`) goes along with the redirect.
    let r = check(
        &mut client,
        "GET",
        "registry.example",
        &format!("{path}?ns=docker.io"),
    )
    .await;
    assert_eq!(
        outcome(&r),
        (
            307,
            Some(format!("/v2/{REPO}/manifests/{}?ns=docker.io", s.signed))
        )
    );
    // The attacker re-points the tag at an unsigned image while umpire's tag cache still holds
    // the old resolution: the client is still sent to the digest that was verified, never to
    // whatever the tag names now.
    let evil = s
        .registry
        .push_image(REPO, "signed", &Image::new("re-pointed"))
        .await;
    let r = check(&mut client, "GET", "registry.example", &path).await;
    let (status, location) = outcome(&r);
    assert_ne!(status, 200, "a tag request was passed upstream");
    if status == 307 {
        let location = location.unwrap();
        assert!(!location.ends_with(&evil), "sent to the unsigned image");
        let r = check(&mut client, "GET", "registry.example", &location).await;
        assert_eq!(outcome(&r).0, 200, "the redirect target must pass");
    }
    let r = check(
        &mut client,
        "GET",
        "registry.example",
        &format!("/v2/{REPO}/manifests/{evil}"),
    )
    .await;
    assert_eq!(outcome(&r).0, 403);
}

#[tokio::test]
async fn gate_refuses_paths_a_registry_decodes_into_another() {
    let s = Setup::new().await;
    let live = s.live("", false, &gate_config(&s.registry.host(), true));
    let mut client = start_gate(&live).await;
    for path in [
        format!("/v2/{REPO}/%6Danifests/unsigned"),
        format!("/v2/{REPO}/manifests%2Funsigned"),
        format!("/v%32/{REPO}/manifests/unsigned"),
        format!("/v2/{REPO}/blobs/../manifests/unsigned"),
        format!("/v2//{REPO}/manifests/unsigned"),
        "/v2/TEAM/app/manifests/unsigned".to_owned(),
    ] {
        for method in ["GET", "HEAD", "PUT"] {
            let r = check(&mut client, method, "registry.example", &path).await;
            assert_eq!(outcome(&r).0, 400, "{method} {path}");
        }
    }
}

#[tokio::test]
async fn gate_refuses_the_catalog_unless_it_passes_everything_through() {
    let s = Setup::new().await;
    let host = s.registry.host();
    for (pass_through, want) in [(false, 403), (true, 200)] {
        let live = s.live("", false, &gate_config(&host, pass_through));
        let mut client = start_gate(&live).await;
        for path in ["/v2/_catalog", "/v2/_catalog?n=1000"] {
            let r = check(&mut client, "GET", "registry.example", path).await;
            assert_eq!(outcome(&r).0, want, "pass_through {pass_through}: {path}");
        }
        // The API check itself passes either way.
        let r = check(&mut client, "GET", "registry.example", "/v2/").await;
        assert_eq!(outcome(&r).0, 200);
    }
}

#[tokio::test]
async fn gate_judges_the_configured_upstream_whatever_the_host_header_says() {
    let s = Setup::new().await;
    // A second registry where the attacker's "signed" tag is signed by the same key.
    let other = support::registry::Registry::start().await;
    let _signed_elsewhere = other
        .push_signed(REPO, "unsigned", "other registry", &s.key)
        .await;
    let yaml = support::config_yaml(
        &s.registry.host(),
        &[("release", &s.key.public_pem())],
        &format!(
            "{}{}",
            support::key_policy("prod", &s.registry.host(), 1, &["release"]),
            support::key_policy("other", &other.host(), 1, &["release"])
        ),
        &gate_config(&s.registry.host(), true),
    )
    .replace(
        "registries:\n",
        &format!(
            "registries:\n  - host: {}\n    insecure: true\n",
            other.host()
        ),
    );
    let config = umpire::config::Config::from_yaml(&yaml, std::path::Path::new("."), "t").unwrap();
    let live = Arc::new(Live::new(config, None, Credentials::default()).unwrap());
    let mut client = start_gate(&live).await;
    let r = check(
        &mut client,
        "GET",
        &other.host(),
        &format!("/v2/{REPO}/manifests/unsigned"),
    )
    .await;
    assert_eq!(outcome(&r).0, 403, "the Host header chose the registry");

    let no_upstream = yaml.replace(&format!("  upstream: {}\n", s.registry.host()), "");
    let err = umpire::config::Config::from_yaml(&no_upstream, std::path::Path::new("."), "t")
        .unwrap_err()
        .to_string();
    assert!(err.contains("ext_authz.upstream"), "{err}");
}

#[tokio::test]
async fn gate_passes_platform_manifests_of_an_allowed_index_and_evidence() {
    use support::cosign;
    let s = Setup::new().await;
    let host = s.registry.host();
    let (amd64, arm64) = (Image::new("gate amd64"), Image::new("gate arm64"));
    let amd64_digest = s.registry.push_image(REPO, "amd64", &amd64).await;
    let arm64_digest = s.registry.push_image(REPO, "arm64", &arm64).await;
    let stray = s
        .registry
        .push_image(REPO, "stray", &Image::new("not listed"))
        .await;
    let index = cosign::index(&[&amd64, &arm64]);
    s.registry
        .push_manifest(REPO, "multi", &index, cosign::OCI_INDEX)
        .await;
    let index_digest = cosign::sha256(&index);
    s.registry
        .push_signatures(
            REPO,
            &index_digest,
            vec![signature_layer(&s.key, payload("x", &index_digest))],
        )
        .await;
    let live = s.live("", false, &gate_config(&host, false));
    let mut client = start_gate(&live).await;

    // Before the index verdict exists, a platform manifest is judged on its own: unsigned.
    let r = check(
        &mut client,
        "GET",
        "r",
        &format!("/v2/{REPO}/manifests/{amd64_digest}"),
    )
    .await;
    assert_eq!(outcome(&r).0, 403);

    let r = check(
        &mut client,
        "GET",
        "r",
        &format!("/v2/{REPO}/manifests/multi"),
    )
    .await;
    assert_eq!(
        outcome(&r),
        (307, Some(format!("/v2/{REPO}/manifests/{index_digest}")))
    );
    let r = check(
        &mut client,
        "GET",
        "r",
        &format!("/v2/{REPO}/manifests/{index_digest}"),
    )
    .await;
    assert_eq!(outcome(&r).0, 200);
    for child in [&amd64_digest, &arm64_digest] {
        let r = check(
            &mut client,
            "GET",
            "r",
            &format!("/v2/{REPO}/manifests/{child}"),
        )
        .await;
        assert_eq!(
            outcome(&r).0,
            200,
            "platform manifest {child} of the allowed index"
        );
    }
    let r = check(
        &mut client,
        "GET",
        "r",
        &format!("/v2/{REPO}/manifests/{stray}"),
    )
    .await;
    assert_eq!(
        outcome(&r).0,
        403,
        "a manifest that is no child of an allowed index"
    );

    // cosign reads the signature through the gate: the evidence tag is pinned to its digest,
    // which passes as evidence.
    let sig_tag = cosign::sig_tag(&index_digest);
    let r = check(
        &mut client,
        "GET",
        "r",
        &format!("/v2/{REPO}/manifests/{sig_tag}"),
    )
    .await;
    let (status, location) = outcome(&r);
    assert_eq!(status, 307);
    let r = check(&mut client, "GET", "r", &location.unwrap()).await;
    assert_eq!(outcome(&r).0, 200);

    // An image pushed under an evidence-looking tag is not evidence.
    let fake_tag = format!("sha256-{}.sig", &stray[7..]);
    s.registry
        .push_image(REPO, &fake_tag, &Image::new("not listed"))
        .await;
    let r = check(
        &mut client,
        "GET",
        "r",
        &format!("/v2/{REPO}/manifests/{fake_tag}"),
    )
    .await;
    assert_eq!(outcome(&r).0, 403);
}

#[tokio::test]
async fn grpc_api_over_mtls() {
    let s = Setup::new().await;
    let (cert, key) = s.pki.server().write(s.dir.path(), "grpc");
    std::fs::write(s.ca_path(), &s.pki.ca_pem).unwrap();
    let tls = format!(
        "tls:\n  cert: {}\n  key: {}\n  client_ca: {}\n",
        cert.display(),
        key.display(),
        s.ca_path().display()
    );
    let live = s.live("", false, &tls);
    let settings = live.engine().config().grpc_tls.clone().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(umpire::api::server::serve_tls_on(
        Arc::clone(&live),
        listener,
        settings,
        std::future::pending(),
    ));

    let ca = tonic::transport::Certificate::from_pem(&s.pki.ca_pem);
    let client_cert = s.pki.client("ci-runner");
    let with_identity = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(ca.clone())
        .domain_name("localhost")
        .identity(tonic::transport::Identity::from_pem(
            &client_cert.cert_pem,
            &client_cert.key_pem,
        ));
    let channel =
        tonic::transport::Channel::from_shared(format!("https://127.0.0.1:{}", addr.port()))
            .unwrap()
            .tls_config(with_identity)
            .unwrap()
            .connect()
            .await
            .unwrap();
    let mut client = umpire::proto::verifier_client::VerifierClient::new(channel);
    let r = client
        .verify(umpire::proto::VerifyRequest {
            image: s.img("signed"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.allowed);

    // Without a client certificate the connection is refused.
    let without = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(ca)
        .domain_name("localhost");
    let refused =
        match tonic::transport::Channel::from_shared(format!("https://127.0.0.1:{}", addr.port()))
            .unwrap()
            .tls_config(without)
            .unwrap()
            .connect()
            .await
        {
            Err(_) => true,
            Ok(channel) => umpire::proto::verifier_client::VerifierClient::new(channel)
                .verify(umpire::proto::VerifyRequest {
                    image: s.img("signed"),
                    ..Default::default()
                })
                .await
                .is_err(),
        };
    assert!(refused);
}

#[test]
fn plaintext_on_a_non_loopback_address_needs_to_be_asked_for() {
    let e = umpire::config::Config::from_yaml(
        "listen: 0.0.0.0:50051\n",
        std::path::Path::new("."),
        "t",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("listen") && e.contains("tls"), "{e}");
    assert!(
        umpire::config::Config::from_yaml(
            "listen: 0.0.0.0:50051\ninsecure_plaintext: true\n",
            std::path::Path::new("."),
            "t"
        )
        .is_ok()
    );
}

#[tokio::test]
async fn a_rotated_webhook_certificate_is_served_without_a_restart() {
    let s = Setup::new().await;
    let live = s.live("", false, "");
    let url = start_webhook(&live).await;
    let body = review("Pod", "apps", pod(&[&s.img("signed")]));
    assert_eq!(
        post(
            &https_client(&s, None),
            &format!("{url}/admission/validate"),
            &body
        )
        .await["response"]["allowed"],
        true
    );

    // cert-manager rotates the pair in place, under a new CA the clients now trust.
    let rotated_ca = Pki::new("rotated CA");
    let issued = rotated_ca.server();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    issued.write(s.dir.path(), "server");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let rotated = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(rotated_ca.ca_pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let mut served = false;
    for _ in 0..20 {
        if let Ok(r) = rotated
            .post(format!("{url}/admission/validate"))
            .json(&body)
            .send()
            .await
        {
            served = r.status().is_success();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(served, "the rotated certificate is presented");
    // The old CA no longer matches the certificate presented.
    assert!(
        https_client(&s, None)
            .post(format!("{url}/admission/validate"))
            .json(&body)
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn gatekeeper_answers_one_item_per_key_even_when_shedding_load() {
    let s = Setup::new().await;
    let live = s.live("", false, "limits:\n  max_in_flight: 1\n");
    let url = start_webhook(&live).await;
    let keys = [s.img("signed"), s.img("unsigned")];
    let request = json!({"apiVersion": "externaldata.gatekeeper.sh/v1beta1", "kind": "ProviderRequest", "request": {"keys": keys}});
    let held = live.admit().unwrap();
    let r = post(
        &https_client(&s, None),
        &format!("{url}/gatekeeper/provider"),
        &request,
    )
    .await;
    drop(held);
    let items = r["response"]["items"].as_array().unwrap();
    assert_eq!(items.len(), keys.len(), "{r}");
    for (item, key) in items.iter().zip(&keys) {
        assert_eq!(item["key"], key.as_str());
        assert!(!item["error"].as_str().unwrap().is_empty(), "{item}");
        assert_ne!(item["value"]["allowed"], true);
    }
}

#[tokio::test]
async fn admission_and_gatekeeper_refuse_local_layouts() {
    let s = Setup::new().await;
    let live = s.live("", false, "");
    let url = start_webhook(&live).await;
    let client = https_client(&s, None);
    let layout = "oci:examples/demo:signed";
    let r = admit(
        &client,
        &url,
        "validate",
        &review("Pod", "apps", pod(&[layout])),
    )
    .await;
    assert_eq!(r["response"]["allowed"], false);
    assert!(
        r["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("oci:"),
        "{r}"
    );
    let request = json!({"apiVersion": "externaldata.gatekeeper.sh/v1beta1", "kind": "ProviderRequest", "request": {"keys": [layout, s.img("signed")]}});
    let r = post(&client, &format!("{url}/gatekeeper/provider"), &request).await;
    let items = r["response"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items[0]["error"].as_str().unwrap().contains("oci:"), "{r}");
    assert_eq!(items[1]["value"]["allowed"], true);
}

#[tokio::test]
async fn mutate_pins_an_ephemeral_container_added_by_update() {
    let s = Setup::new().await;
    let live = s.live("", false, "");
    let url = start_webhook(&live).await;
    let mut object = pod(&[&format!("{}/{REPO}@{}", s.registry.host(), s.signed)]);
    object["spec"]["ephemeralContainers"] = json!([{"name": "debug", "image": s.img("signed")}]);
    let mut body = review("Pod", "apps", object);
    body["request"]["operation"] = json!("UPDATE");
    body["request"]["subResource"] = json!("ephemeralcontainers");
    let r = admit(&https_client(&s, None), &url, "mutate", &body).await;
    assert_eq!(r["response"]["allowed"], true, "{r}");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(r["response"]["patch"].as_str().expect("a patch"))
        .unwrap();
    let patch: Value = serde_json::from_slice(&patch).unwrap();
    assert_eq!(patch[0]["path"], "/spec/ephemeralContainers/0/image");
    assert_eq!(
        patch[0]["value"],
        format!("{}@{}", s.img("signed"), s.signed)
    );
}

#[tokio::test]
async fn an_unsigned_image_volume_is_not_admitted() {
    let s = Setup::new().await;
    let live = s.live("", false, "");
    let url = start_webhook(&live).await;
    let mut object = pod(&[&s.img("signed")]);
    object["spec"]["volumes"] =
        json!([{"name": "data", "image": {"reference": s.img("unsigned")}}]);
    let r = admit(
        &https_client(&s, None),
        &url,
        "validate",
        &review("Pod", "apps", object.clone()),
    )
    .await;
    assert_eq!(r["response"]["allowed"], false, "{r}");
    assert!(
        r["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("NO_SIGNATURES"),
        "{r}"
    );
    // A signed one is admitted and pinned.
    object["spec"]["volumes"][0]["image"]["reference"] = json!(s.img("signed"));
    let r = admit(
        &https_client(&s, None),
        &url,
        "mutate",
        &review("Pod", "apps", object),
    )
    .await;
    assert_eq!(r["response"]["allowed"], true, "{r}");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(r["response"]["patch"].as_str().unwrap())
        .unwrap();
    let patch: Value = serde_json::from_slice(&patch).unwrap();
    assert!(
        patch
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["path"] == "/spec/volumes/0/image/reference"),
        "{patch}"
    );
}

#[tokio::test]
async fn gate_replicas_share_the_children_of_an_allowed_index() {
    use support::cosign;
    // SAFETY: set before any engine reads it, in this test's own process.
    unsafe { std::env::set_var("UMPIRE_TEST_GATE_KEY", "0123456789abcdef-test-only-key") };
    let s = Setup::new().await;
    let redis = support::redis::Redis::start().await;
    let amd64 = Image::new("shared amd64");
    let amd64_digest = s.registry.push_image(REPO, "amd64", &amd64).await;
    let index = cosign::index(&[&amd64]);
    s.registry
        .push_manifest(REPO, "multi", &index, cosign::OCI_INDEX)
        .await;
    let index_digest = cosign::sha256(&index);
    s.registry
        .push_signatures(
            REPO,
            &index_digest,
            vec![signature_layer(&s.key, payload("x", &index_digest))],
        )
        .await;
    let extra = format!(
        "{}cache:\n  redis:\n    url: {}\n    hmac_key_env: UMPIRE_TEST_GATE_KEY\n",
        gate_config(&s.registry.host(), true),
        redis.url()
    );
    let (a, b) = (s.live("", false, &extra), s.live("", false, &extra));
    let (mut gate_a, mut gate_b) = (start_gate(&a).await, start_gate(&b).await);
    let r = check(
        &mut gate_a,
        "GET",
        "r",
        &format!("/v2/{REPO}/manifests/{index_digest}"),
    )
    .await;
    assert_eq!(outcome(&r).0, 200);
    // Replica B never saw the index: the record in the shared cache lets the platform through.
    let r = check(
        &mut gate_b,
        "GET",
        "r",
        &format!("/v2/{REPO}/manifests/{amd64_digest}"),
    )
    .await;
    assert_eq!(outcome(&r).0, 200);
}

#[tokio::test]
async fn mtls_allow_lists_read_dns_and_uri_sans_and_the_cn_only_without_sans() {
    let s = Setup::new().await;
    let live = s.live("  allowed_clients: [kube-apiserver]\n", true, "");
    let url = start_webhook(&live).await;
    let body = review("Pod", "apps", pod(&[&s.img("signed")]));
    let refused = |issued: support::certs::Issued| {
        let client = https_client(&s, Some(&issued));
        let url = format!("{url}/admission/validate");
        let body = body.clone();
        async move { client.post(url).json(&body).send().await.is_err() }
    };
    // The CN is listed, but the SANs name someone else.
    assert!(refused(s.pki.client_named("kube-apiserver", &["someone-else"], &[])).await);
    // The listed name as an email SAN is not a DNS or URI SAN.
    assert!(refused(s.pki.client_named("x", &[], &["kube-apiserver"])).await);
    // The listed name as a DNS SAN; and as the CN of a certificate with no SAN.
    assert!(!refused(s.pki.client_named("x", &["kube-apiserver"], &[])).await);
    assert!(!refused(s.pki.client_named("kube-apiserver", &[], &[])).await);
    // A SAN extension that is present names only what it readably lists: empty, or holding an
    // unreadable DNS name, the CN does not stand in for it.
    assert!(refused(s.pki.client_raw_san("kube-apiserver", vec![0x30, 0x00])).await);
    assert!(
        refused(
            s.pki
                .client_raw_san("kube-apiserver", vec![0x30, 0x04, 0x82, 0x02, 0xff, 0xfe])
        )
        .await
    );
    // The kind of SAN counts: a URI SAN spelled like an allowed DNS name is not that name.
    assert!(refused(s.pki.client_uri("x", "kube-apiserver")).await);
}
