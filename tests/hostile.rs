//! A registry that lies, stalls or leaks must get nothing from umpire but a denial. These run
//! against the scripted registry in `support/hostile.rs`.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use support::cosign::{
    self, Image, SigningKey, payload, sig_tag, signature_layer, signature_manifest,
};
use support::hostile::{Reply, Request, Scripted};
use support::{config_yaml, key_policy};
use umpire::config::Config;
use umpire::engine::Engine;
use umpire::evidence::auth::{Credential, Credentials};
use umpire::verdict::{Code, Verdict};

const REPO: &str = "app";

/// A well-formed signed image, as a map of registry paths to replies (before a test corrupts one).
struct Content {
    key: SigningKey,
    image: Image,
    routes: HashMap<String, Reply>,
}

impl Content {
    fn new() -> Self {
        let key = SigningKey::p256();
        let image = Image::new("hostile");
        let digest = image.digest();
        let sig = signature_manifest(vec![signature_layer(&key, payload("x", &digest))]);
        let mut routes = HashMap::new();
        let manifest_reply = |m: &Image| {
            Reply::new(200, m.manifest.clone())
                .header("Content-Type", &m.media_type)
                .header("Docker-Content-Digest", &m.digest())
        };
        routes.insert(
            format!("/v2/{REPO}/manifests/{digest}"),
            manifest_reply(&image),
        );
        routes.insert(format!("/v2/{REPO}/manifests/v1"), manifest_reply(&image));
        routes.insert(
            format!("/v2/{REPO}/manifests/{}", sig_tag(&digest)),
            manifest_reply(&sig),
        );
        for blob in sig.blobs().into_iter().chain(image.blobs()) {
            routes.insert(
                format!("/v2/{REPO}/blobs/{}", blob.digest()),
                Reply::new(200, blob.bytes.clone()),
            );
        }
        Self { key, image, routes }
    }

    fn digest(&self) -> String {
        self.image.digest()
    }

    fn signature_blob_path(&self) -> String {
        let sig = signature_manifest(vec![signature_layer(
            &self.key,
            payload("x", &self.digest()),
        )]);
        format!("/v2/{REPO}/blobs/{}", sig.layers[0].digest())
    }

    async fn serve(self) -> (Scripted, SigningKey, String) {
        let routes = self.routes;
        let digest = self.image.digest();
        let server = Scripted::start(move |r: &Request| {
            routes
                .get(&r.path)
                .cloned()
                .unwrap_or_else(|| Reply::new(404, "{}"))
        })
        .await;
        (server, self.key, digest)
    }
}

fn engine_for(host: &str, key: &SigningKey, extra: &str, credentials: Credentials) -> Arc<Engine> {
    let yaml = config_yaml(
        host,
        &[("release", &key.public_pem())],
        &key_policy("prod", host, 1, &["release"]),
        extra,
    );
    let config = Config::from_yaml(&yaml, std::path::Path::new("."), "test").unwrap();
    Engine::standalone(config, credentials).unwrap()
}

async fn verify(engine: &Arc<Engine>, image: &str) -> Verdict {
    engine.verify(image, None).await.unwrap()
}

#[tokio::test]
async fn the_untampered_script_is_allowed() {
    // Guards the tests below: each corrupts exactly one thing of this allowed baseline.
    let (server, key, digest) = Content::new().serve().await;
    let engine = engine_for(&server.host(), &key, "", Credentials::default());
    let v = verify(&engine, &format!("{}/{REPO}@{digest}", server.host())).await;
    assert!(v.allowed, "{v:?}");
}

#[tokio::test]
async fn manifest_bytes_that_do_not_hash_to_the_digest_are_denied() {
    let mut c = Content::new();
    let digest = c.digest();
    let other = Image::new("substitute");
    // Served for the digest asked for, with a header that repeats the lie.
    c.routes.insert(
        format!("/v2/{REPO}/manifests/{digest}"),
        Reply::new(200, other.manifest.clone())
            .header("Content-Type", cosign::OCI_MANIFEST)
            .header("Docker-Content-Digest", &digest),
    );
    let (server, key, _) = c.serve().await;
    let engine = engine_for(&server.host(), &key, "", Credentials::default());
    let v = verify(&engine, &format!("{}/{REPO}@{digest}", server.host())).await;
    assert!(!v.allowed);
    assert_eq!(v.codes(), [Code::DigestMismatch]);
    assert!(!v.retryable);
}

#[tokio::test]
async fn a_tag_whose_docker_content_digest_disagrees_with_the_bytes_is_denied() {
    let mut c = Content::new();
    let lie = Image::new("lie").digest();
    c.routes.insert(
        format!("/v2/{REPO}/manifests/v1"),
        Reply::new(200, c.image.manifest.clone())
            .header("Content-Type", cosign::OCI_MANIFEST)
            .header("Docker-Content-Digest", &lie),
    );
    let (server, key, _) = c.serve().await;
    let engine = engine_for(&server.host(), &key, "", Credentials::default());
    let v = verify(&engine, &format!("{}/{REPO}:v1", server.host())).await;
    assert!(!v.allowed);
    assert_eq!(v.codes(), [Code::DigestMismatch]);
}

#[tokio::test]
async fn a_signature_blob_that_does_not_hash_to_its_descriptor_is_denied() {
    let mut c = Content::new();
    let path = c.signature_blob_path();
    c.routes
        .insert(path, Reply::new(200, payload("substituted", &c.digest())));
    let (server, key, digest) = c.serve().await;
    let engine = engine_for(&server.host(), &key, "", Credentials::default());
    let v = verify(&engine, &format!("{}/{REPO}@{digest}", server.host())).await;
    assert!(!v.allowed);
    assert_eq!(v.codes(), [Code::DigestMismatch]);
}

#[tokio::test]
async fn a_body_without_length_past_the_limit_is_cut_off() {
    let mut c = Content::new();
    let digest = c.digest();
    c.routes.insert(
        format!("/v2/{REPO}/manifests/{digest}"),
        Reply::new(200, vec![b' '; 8 * 1024 * 1024]).without_length(),
    );
    let (server, key, _) = c.serve().await;
    let engine = engine_for(
        &server.host(),
        &key,
        "limits:\n  max_manifest_bytes: 65536\n",
        Credentials::default(),
    );
    let v = verify(&engine, &format!("{}/{REPO}@{digest}", server.host())).await;
    assert!(!v.allowed);
    assert_eq!(v.codes(), [Code::LimitExceeded]);
}

#[tokio::test]
async fn a_stalled_registry_hits_the_deadline_and_is_retryable() {
    let mut c = Content::new();
    let digest = c.digest();
    let slow = c.routes[&format!("/v2/{REPO}/manifests/{digest}")]
        .clone()
        .delayed(Duration::from_secs(30));
    c.routes
        .insert(format!("/v2/{REPO}/manifests/{digest}"), slow);
    let (server, key, _) = c.serve().await;
    let engine = engine_for(
        &server.host(),
        &key,
        "limits:\n  deadline: 300ms\n",
        Credentials::default(),
    );
    let v = verify(&engine, &format!("{}/{REPO}@{digest}", server.host())).await;
    assert!(!v.allowed);
    assert!(v.retryable);
    assert_eq!(v.codes(), [Code::LimitExceeded]);
}

#[tokio::test]
async fn server_errors_and_rate_limits_are_retryable_denials() {
    for status in [500, 502, 503, 429] {
        let mut c = Content::new();
        let tag = sig_tag(&c.digest());
        c.routes.insert(
            format!("/v2/{REPO}/manifests/{tag}"),
            Reply::new(status, "busy"),
        );
        let (server, key, digest) = c.serve().await;
        let engine = engine_for(&server.host(), &key, "", Credentials::default());
        let v = verify(&engine, &format!("{}/{REPO}@{digest}", server.host())).await;
        assert!(!v.allowed);
        assert!(v.retryable, "HTTP {status}");
        assert_eq!(v.codes(), [Code::RegistryUnavailable], "HTTP {status}");
    }
}

/// Routes behind a Bearer challenge: everything needs `Authorization: Bearer good-token`.
fn behind_bearer(
    routes: HashMap<String, Reply>,
    realm: String,
) -> impl Fn(&Request) -> Reply + Send + Sync {
    move |r: &Request| {
        if r.path.starts_with("/token") {
            return match r.header("authorization") {
                // base64("user:secret")
                Some("Basic dXNlcjpzZWNyZXQ=") => Reply::new(200, r#"{"token":"good-token"}"#),
                _ => Reply::new(401, "bad credentials"),
            };
        }
        if r.header("authorization") != Some("Bearer good-token") {
            return Reply::new(401, "{}").header(
                "WWW-Authenticate",
                &format!(r#"Bearer realm="{realm}",service="test""#),
            );
        }
        routes
            .get(&r.path)
            .cloned()
            .unwrap_or_else(|| Reply::new(404, "{}"))
    }
}

fn user_secret(host: &str) -> Credentials {
    Credentials::default().with(
        host,
        Credential {
            username: "user".into(),
            password: "secret".into(),
        },
    )
}

#[tokio::test]
async fn credentials_go_to_a_token_realm_on_the_registrys_own_host() {
    let c = Content::new();
    let digest = c.digest();
    let key_pem = c.key.public_pem();
    let routes = c.routes;
    // The realm is this same server; its port is only known once it listens.
    let port = Arc::new(std::sync::OnceLock::<u16>::new());
    let p = Arc::clone(&port);
    let server = Scripted::start(move |r: &Request| {
        let realm = format!("http://127.0.0.1:{}/token", p.get().copied().unwrap_or(0));
        behind_bearer(routes.clone(), realm)(r)
    })
    .await;
    port.set(server.port).unwrap();
    let yaml = config_yaml(
        &server.host(),
        &[("release", &key_pem)],
        &key_policy("prod", &server.host(), 1, &["release"]),
        "",
    );
    let engine = Engine::standalone(
        Config::from_yaml(&yaml, std::path::Path::new("."), "t").unwrap(),
        user_secret(&server.host()),
    )
    .unwrap();
    let v = verify(&engine, &format!("{}/{REPO}@{digest}", server.host())).await;
    assert!(v.allowed, "{v:?}");
    let token_requests: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/token"))
        .collect();
    assert!(!token_requests.is_empty());
    assert!(
        token_requests[0]
            .path
            .contains("scope=repository%3Aapp%3Apull"),
        "{}",
        token_requests[0].path
    );
}

#[tokio::test]
async fn credentials_never_go_to_a_token_realm_on_another_host() {
    let elsewhere =
        Scripted::start(|_: &Request| Reply::new(200, r#"{"token":"good-token"}"#)).await;
    let c = Content::new();
    let digest = c.digest();
    let key_pem = c.key.public_pem();
    let server = Scripted::start(behind_bearer(
        c.routes,
        format!("https://{}/token", elsewhere.host()),
    ))
    .await;
    let yaml = config_yaml(
        &server.host(),
        &[("release", &key_pem)],
        &key_policy("prod", &server.host(), 1, &["release"]),
        "",
    );
    let engine = Engine::standalone(
        Config::from_yaml(&yaml, std::path::Path::new("."), "t").unwrap(),
        user_secret(&server.host()),
    )
    .unwrap();
    let v = verify(&engine, &format!("{}/{REPO}@{digest}", server.host())).await;
    assert!(!v.allowed);
    assert_eq!(v.codes(), [Code::RegistryError]);
    assert!(
        v.findings[0].message.contains("auth_hosts"),
        "{}",
        v.findings[0].message
    );
    assert!(
        elsewhere.requests().is_empty(),
        "the foreign realm was contacted"
    );
}

#[tokio::test]
async fn credentials_do_not_follow_a_redirect_to_another_host() {
    let mut c = Content::new();
    let blob_path = c.signature_blob_path();
    let blob = c.routes[&blob_path].clone();
    let storage = Scripted::start(move |_: &Request| blob.clone()).await;
    c.routes.insert(
        blob_path,
        Reply::new(307, "").header(
            "Location",
            &format!("http://{}/storage/blob", storage.host()),
        ),
    );
    let digest = c.digest();
    let key_pem = c.key.public_pem();
    let routes = c.routes;
    let port = Arc::new(std::sync::OnceLock::<u16>::new());
    let p = Arc::clone(&port);
    let server = Scripted::start(move |r: &Request| {
        let realm = format!("http://127.0.0.1:{}/token", p.get().copied().unwrap_or(0));
        behind_bearer(routes.clone(), realm)(r)
    })
    .await;
    port.set(server.port).unwrap();
    let yaml = config_yaml(
        &server.host(),
        &[("release", &key_pem)],
        &key_policy("prod", &server.host(), 1, &["release"]),
        "",
    );
    let engine = Engine::standalone(
        Config::from_yaml(&yaml, std::path::Path::new("."), "t").unwrap(),
        user_secret(&server.host()),
    )
    .unwrap();
    let v = verify(&engine, &format!("{}/{REPO}@{digest}", server.host())).await;
    assert!(v.allowed, "{v:?}");
    let at_storage = storage.requests();
    assert_eq!(at_storage.len(), 1);
    assert_eq!(
        at_storage[0].header("authorization"),
        None,
        "a token followed the redirect"
    );
}

#[tokio::test]
async fn batch_fetches_each_digest_once() {
    let (server, key, digest) = Content::new().serve().await;
    let engine = engine_for(&server.host(), &key, "", Credentials::default());
    let by_digest = format!("{}/{REPO}@{digest}", server.host());
    let requests: Vec<(String, Option<String>)> = vec![(by_digest.clone(), None); 5];
    let verdicts = engine.verify_batch(&requests).await.unwrap();
    assert!(verdicts.iter().all(|v| v.allowed));
    let requests = server.requests();
    let count = |part: &str| requests.iter().filter(|r| r.path.contains(part)).count();
    // The image manifest, its .sig tag and its referrers fallback tag; the referrers API once.
    assert_eq!(count("/manifests/"), 3, "{requests:?}");
    assert_eq!(count("/referrers/"), 1, "{requests:?}");
}

#[tokio::test]
async fn a_digest_request_costs_two_sequential_round_trips() {
    // Every answer takes a while, so requests sent together arrive together and requests that
    // depend on an answer arrive a full delay later: the number of waves is the critical path.
    let delay = Duration::from_millis(300);
    let c = Content::new();
    let digest = c.digest();
    let key_pem = c.key.public_pem();
    let routes = c.routes;
    let server = Scripted::start(move |r: &Request| {
        routes
            .get(&r.path)
            .cloned()
            .unwrap_or_else(|| Reply::new(404, "{}"))
            .delayed(delay)
    })
    .await;
    let yaml = config_yaml(
        &server.host(),
        &[("release", &key_pem)],
        &key_policy("prod", &server.host(), 1, &["release"]),
        "",
    );
    let engine = Engine::standalone(
        Config::from_yaml(&yaml, std::path::Path::new("."), "t").unwrap(),
        Credentials::default(),
    )
    .unwrap();
    let v = verify(&engine, &format!("{}/{REPO}@{digest}", server.host())).await;
    assert!(v.allowed, "{v:?}");
    let requests = server.requests();
    let first = requests.iter().map(|r| r.at).min().unwrap();
    let waves: std::collections::BTreeSet<u128> = requests
        .iter()
        .map(|r| (r.at - first).as_millis() / (delay.as_millis() / 2 + delay.as_millis() / 4))
        .collect();
    assert_eq!(
        waves.len(),
        2,
        "arrivals: {:?}",
        requests
            .iter()
            .map(|r| (r.path.clone(), (r.at - first).as_millis()))
            .collect::<Vec<_>>()
    );
}
