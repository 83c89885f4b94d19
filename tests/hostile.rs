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
    let yaml = support::one_key_yaml(host, ("release", &key.public_pem()), "prod", extra);
    support::engine_with(&yaml, credentials)
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

/// A registry behind a Bearer challenge whose token realm is on its own host (its port is only
/// known once it listens).
async fn bearer_on_own_host(routes: HashMap<String, Reply>) -> Scripted {
    let port = Arc::new(std::sync::OnceLock::<u16>::new());
    let p = Arc::clone(&port);
    let server = Scripted::start(move |r: &Request| {
        let realm = format!("http://127.0.0.1:{}/token", p.get().copied().unwrap_or(0));
        behind_bearer(routes.clone(), realm)(r)
    })
    .await;
    port.set(server.port).unwrap();
    server
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
    let server = bearer_on_own_host(c.routes).await;
    let yaml = support::one_key_yaml(&server.host(), ("release", &key_pem), "prod", "");
    let engine = support::engine_with(&yaml, user_secret(&server.host()));
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
    let yaml = support::one_key_yaml(&server.host(), ("release", &key_pem), "prod", "");
    let engine = support::engine_with(&yaml, user_secret(&server.host()));
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
    let server = bearer_on_own_host(c.routes).await;
    let yaml = support::one_key_yaml(&server.host(), ("release", &key_pem), "prod", "");
    let engine = support::engine_with(&yaml, user_secret(&server.host()));
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
    // Five entries for one digest read each thing once, whichever tags and referrers the
    // discovery strategy asks for.
    let requests = server.requests();
    let mut seen = std::collections::HashSet::new();
    let repeated: Vec<&str> = requests
        .iter()
        .filter(|r| !seen.insert(r.path.clone()))
        .map(|r| r.path.as_str())
        .collect();
    assert!(!requests.is_empty());
    assert!(repeated.is_empty(), "fetched twice: {repeated:?}");
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
    let yaml = support::one_key_yaml(&server.host(), ("release", &key_pem), "prod", "");
    let engine = support::engine_with(&yaml, Credentials::default());
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

fn manifest_reply(m: &Image) -> Reply {
    Reply::new(200, m.manifest.clone()).header("Content-Type", &m.media_type)
}

#[tokio::test]
async fn a_tag_flipping_between_digests_never_allows_the_unsigned_one() {
    let c = Content::new();
    let signed = c.image.clone();
    let unsigned = Image::new("flip unsigned");
    let unsigned_digest = unsigned.digest();
    let key_pem = c.key.public_pem();
    let mut routes = c.routes;
    routes.insert(
        format!("/v2/{REPO}/manifests/{}", unsigned.digest()),
        manifest_reply(&unsigned),
    );
    let flips = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let f = Arc::clone(&flips);
    let tag_path = format!("/v2/{REPO}/manifests/v1");
    let server = Scripted::start(move |r: &Request| {
        if r.path == tag_path {
            let n = f.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return manifest_reply(if n.is_multiple_of(2) {
                &signed
            } else {
                &unsigned
            });
        }
        routes
            .get(&r.path)
            .cloned()
            .unwrap_or_else(|| Reply::new(404, "{}"))
    })
    .await;
    let yaml = support::one_key_yaml(
        &server.host(),
        ("release", &key_pem),
        "prod",
        "cache:\n  tag_ttl: 0\n",
    );
    let engine = support::engine_with(&yaml, Credentials::default());
    for _ in 0..6 {
        let v = engine
            .verify_with(&format!("{}/{REPO}:v1", server.host()), None, bypass())
            .await
            .unwrap();
        if v.allowed {
            assert_eq!(
                v.digest,
                c.image.digest(),
                "an allow holds for the signed digest only"
            );
        } else {
            assert_eq!(v.digest, unsigned_digest);
        }
    }
}

fn bypass() -> umpire::engine::Options {
    umpire::engine::Options {
        bypass_cache: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_lying_content_length_is_caught() {
    // Shorter than the body: the bytes read do not hash to the digest.
    let mut c = Content::new();
    let digest = c.digest();
    let short = c.image.manifest.len() - 10;
    c.routes.insert(
        format!("/v2/{REPO}/manifests/{digest}"),
        Reply::new(200, c.image.manifest.clone()).header("Content-Length", &short.to_string()),
    );
    let (server, key, _) = c.serve().await;
    let engine = engine_for(&server.host(), &key, "", Credentials::default());
    let v = verify(&engine, &format!("{}/{REPO}@{digest}", server.host())).await;
    assert!(!v.allowed);

    // Announcing more than the limit: refused before reading.
    let mut c = Content::new();
    let digest = c.digest();
    c.routes.insert(
        format!("/v2/{REPO}/manifests/{digest}"),
        Reply::new(200, c.image.manifest.clone()).header("Content-Length", "999999999"),
    );
    let (server, key, _) = c.serve().await;
    let engine = engine_for(&server.host(), &key, "", Credentials::default());
    let v = verify(&engine, &format!("{}/{REPO}@{digest}", server.host())).await;
    assert!(!v.allowed);
    assert_eq!(v.codes(), [Code::LimitExceeded]);
}

fn huge_manifest(count: usize, index: bool) -> Vec<u8> {
    let d = Image::new("x").digest();
    let entry = format!(
        r#"{{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","digest":"{d}","size":10}}"#
    );
    let list = vec![entry; count].join(",");
    if index {
        format!(r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{list}]}}"#).into_bytes()
    } else {
        format!(r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{d}","size":2}},"layers":[{list}]}}"#).into_bytes()
    }
}

#[tokio::test]
async fn a_hundred_thousand_signature_layers_or_referrers_are_refused() {
    for (index, path_of) in [
        (false, sig_tag as fn(&str) -> String),
        (true, |d: &str| d.replace(':', "-")),
    ] {
        let mut c = Content::new();
        let digest = c.digest();
        let body = huge_manifest(100_000, index);
        c.routes.insert(
            format!("/v2/{REPO}/manifests/{}", path_of(&digest)),
            Reply::new(200, body).header(
                "Content-Type",
                if index {
                    cosign::OCI_INDEX
                } else {
                    cosign::OCI_MANIFEST
                },
            ),
        );
        let (server, key, _) = c.serve().await;
        // Even with the manifest size limit raised out of the way, the count limit holds.
        let engine = engine_for(
            &server.host(),
            &key,
            "limits:\n  max_manifest_bytes: 67108864\n",
            Credentials::default(),
        );
        let v = verify(&engine, &format!("{}/{REPO}@{digest}", server.host())).await;
        assert!(!v.allowed, "index={index}");
        assert_eq!(v.codes(), [Code::LimitExceeded], "index={index}: {v:?}");
    }
}

#[tokio::test]
async fn a_looping_pagination_link_is_not_followed() {
    let mut c = Content::new();
    let digest = c.digest();
    let empty = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    c.routes.insert(
        format!("/v2/{REPO}/referrers/{digest}"),
        Reply::new(200, empty)
            .header("Content-Type", cosign::OCI_INDEX)
            .header(
                "Link",
                &format!("</v2/{REPO}/referrers/{digest}>; rel=\"next\""),
            ),
    );
    let (server, key, _) = c.serve().await;
    let engine = engine_for(&server.host(), &key, "", Credentials::default());
    let v = verify(&engine, &format!("{}/{REPO}@{digest}", server.host())).await;
    assert!(v.allowed, "{v:?}");
    let referrer_calls = server
        .requests()
        .iter()
        .filter(|r| r.path.contains("/referrers/"))
        .count();
    assert_eq!(referrer_calls, 1);
}

#[tokio::test]
async fn gzip_encoded_bodies_are_not_inflated() {
    let mut c = Content::new();
    let digest = c.digest();
    // A small gzip bomb: 10 MB of zeros compressed, claimed as the manifest.
    let bomb = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![0u8; 10 * 1024 * 1024]).unwrap();
        e.finish().unwrap()
    };
    c.routes.insert(
        format!("/v2/{REPO}/manifests/{digest}"),
        Reply::new(200, bomb)
            .header("Content-Encoding", "gzip")
            .header("Content-Type", cosign::OCI_MANIFEST),
    );
    let (server, key, _) = c.serve().await;
    let engine = engine_for(&server.host(), &key, "", Credentials::default());
    let v = verify(&engine, &format!("{}/{REPO}@{digest}", server.host())).await;
    assert!(!v.allowed);
    assert_eq!(
        v.codes(),
        [Code::DigestMismatch],
        "the compressed bytes were hashed as they came"
    );
}

#[tokio::test]
async fn json_nested_a_hundred_thousand_deep_is_refused() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes();
    let digest = cosign::sha256(&deep);
    let path = format!("/v2/{REPO}/manifests/{digest}");
    let server = Scripted::start(move |r: &Request| {
        if r.path == path {
            Reply::new(200, deep.clone())
        } else {
            Reply::new(404, "{}")
        }
    })
    .await;
    let key = SigningKey::p256();
    let engine = engine_for(&server.host(), &key, "", Credentials::default());
    let v = verify(&engine, &format!("{}/{REPO}@{digest}", server.host())).await;
    assert!(!v.allowed);
    assert_eq!(v.codes(), [Code::RegistryError]);
}

#[tokio::test]
async fn token_realms_on_plain_http_or_link_local_addresses_get_nothing() {
    for realm in [
        "http://127.0.0.2:1/token",
        "https://169.254.169.254/token",
        "https://[fe80::1]/token",
    ] {
        let c = Content::new();
        let digest = c.digest();
        let key_pem = c.key.public_pem();
        let server = Scripted::start(behind_bearer(c.routes, realm.to_owned())).await;
        let yaml = support::one_key_yaml(&server.host(), ("release", &key_pem), "prod", "");
        let engine = support::engine_with(&yaml, user_secret(&server.host()));
        let v = verify(&engine, &format!("{}/{REPO}@{digest}", server.host())).await;
        assert!(!v.allowed, "{realm}");
        assert_eq!(v.codes(), [Code::RegistryError], "{realm}");
    }
}

#[tokio::test]
async fn malformed_digests_in_descriptors_are_refused() {
    for bad in [
        "sha256:../../x",
        &format!("sha256:{}", "A".repeat(64)),
        "sha256:abc",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
    ] {
        let mut c = Content::new();
        let digest = c.digest();
        let sig = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{digest}","size":2}},"layers":[{{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","digest":"{bad}","size":10}}]}}"#
        );
        c.routes.insert(
            format!("/v2/{REPO}/manifests/{}", sig_tag(&digest)),
            Reply::new(200, sig).header("Content-Type", cosign::OCI_MANIFEST),
        );
        let (server, key, _) = c.serve().await;
        let engine = engine_for(&server.host(), &key, "", Credentials::default());
        let v = verify(&engine, &format!("{}/{REPO}@{digest}", server.host())).await;
        assert!(!v.allowed, "{bad}");
        assert_eq!(v.codes(), [Code::RegistryError], "{bad}");
        assert!(
            !server.requests().iter().any(|r| r.path.contains("..")),
            "{bad} reached the registry as a path"
        );
    }
}

#[tokio::test]
async fn a_5xx_storm_opens_the_circuit_and_stops_the_traffic() {
    let server = Scripted::start(|_: &Request| Reply::new(503, "down")).await;
    let key = SigningKey::p256();
    let engine = engine_for(&server.host(), &key, "", Credentials::default());
    let image = format!("{}/{REPO}@{}", server.host(), Image::new("storm").digest());
    for _ in 0..3 {
        let v = engine.verify_with(&image, None, bypass()).await.unwrap();
        assert!(!v.allowed && v.retryable);
    }
    let after_storm = server.requests().len();
    let v = engine.verify_with(&image, None, bypass()).await.unwrap();
    assert!(!v.allowed && v.retryable);
    assert!(
        v.findings[0].message.contains("not asking it again"),
        "{}",
        v.findings[0].message
    );
    assert_eq!(
        server.requests().len(),
        after_storm,
        "an open circuit sends nothing"
    );
}

#[tokio::test]
async fn a_registry_that_drops_every_connection_opens_the_circuit_and_gets_no_pings_either() {
    // It never answers, so umpire never heard from it: a tag on it would warm its pool. Once the
    // circuit is open, nothing reaches it, the connections opened ahead of a tag included.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((connection, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(connection);
        }
    });
    let key = SigningKey::p256();
    let engine = engine_for(&host, &key, "", Credentials::default());
    let by_digest = format!("{host}/{REPO}@{}", Image::new("dropped").digest());
    for _ in 0..3 {
        let v = engine
            .verify_with(&by_digest, None, bypass())
            .await
            .unwrap();
        assert!(!v.allowed && v.retryable, "{v:?}");
    }
    let v = engine
        .verify_with(&by_digest, None, bypass())
        .await
        .unwrap();
    assert!(
        v.findings[0].message.contains("not asking it again"),
        "{}",
        v.findings[0].message
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = accepted.load(std::sync::atomic::Ordering::SeqCst);
    let v = engine
        .verify_with(&format!("{host}/{REPO}:v1"), None, bypass())
        .await
        .unwrap();
    assert!(!v.allowed && v.retryable, "{v:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        before,
        "an open circuit sends nothing, pings included"
    );
}

#[tokio::test]
async fn overload_is_refused_with_resource_exhausted_not_queued() {
    let slow =
        Scripted::start(|_: &Request| Reply::new(503, "slow").delayed(Duration::from_millis(1500)))
            .await;
    let key = SigningKey::p256();
    let yaml = support::one_key_yaml(
        &slow.host(),
        ("k", &key.public_pem()),
        "p",
        "limits:\n  max_in_flight: 1\n  deadline: 1s\n",
    );
    let umpire = support::Umpire::start(&yaml).await;
    let (mut a, mut b) = (umpire.client().await, umpire.client().await);
    let ask = |tag: &str| umpire::proto::VerifyRequest {
        image: format!("{}/{REPO}:{tag}", slow.host()),
        ..Default::default()
    };
    let first = tokio::spawn({
        let r = ask("one");
        async move { a.verify(r).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = b.verify(ask("two")).await;
    assert_eq!(second.unwrap_err().code(), tonic::Code::ResourceExhausted);
    let first = first.await.unwrap().unwrap().into_inner();
    assert!(!first.allowed && first.retryable);
}

#[test]
fn no_request_field_can_widen_trust() {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(umpire::proto::FILE_DESCRIPTOR_SET).unwrap();
    let file = set
        .file
        .iter()
        .find(|f| f.package() == "umpire.v1")
        .unwrap();
    let fields = |name: &str| -> Vec<String> {
        file.message_type
            .iter()
            .find(|m| m.name() == name)
            .unwrap()
            .field
            .iter()
            .map(|f| f.name().to_owned())
            .collect()
    };
    // A request names an image, picks one of the configured policies, may skip cache lookups
    // and names the namespace asking (which only chooses among configured policies); nothing in
    // it can add keys, roots, registries or insecure settings.
    assert_eq!(
        fields("VerifyRequest"),
        ["image", "policy", "bypass_cache", "namespace"]
    );
    assert_eq!(fields("VerifyBatchRequest"), ["requests"]);
}

#[tokio::test]
async fn a_manifest_that_is_also_an_index_is_refused() {
    let c = Content::new();
    let layer = &c.image.layers[0];
    let ambiguous = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[{}],"manifests":[{}]}}"#,
        c.image.config.descriptor(),
        layer.descriptor(),
        layer.descriptor()
    )
    .into_bytes();
    let digest = cosign::sha256(&ambiguous);
    let path = format!("/v2/{REPO}/manifests/{digest}");
    let server = Scripted::start(move |r: &Request| {
        if r.path == path {
            Reply::new(200, ambiguous.clone()).header("Content-Type", cosign::OCI_MANIFEST)
        } else {
            Reply::new(404, "{}")
        }
    })
    .await;
    let engine = engine_for(&server.host(), &c.key, "", Credentials::default());
    let v = verify(&engine, &format!("{}/{REPO}@{digest}", server.host())).await;
    assert!(!v.allowed);
    assert_eq!(v.codes(), [Code::RegistryError]);
    assert!(
        v.findings[0].message.contains("ambiguous"),
        "{}",
        v.findings[0].message
    );
}

#[cfg(unix)]
#[tokio::test]
async fn credentials_from_a_docker_credential_helper() {
    use std::os::unix::fs::PermissionsExt;
    // A credential helper on PATH, as Docker's config.json names it.
    let bin = tempfile::tempdir().unwrap();
    let helper = bin.path().join("docker-credential-umpiretest");
    std::fs::write(&helper, "#!/bin/sh\nread server\nprintf '{\"ServerURL\":\"%s\",\"Username\":\"user\",\"Secret\":\"secret\"}' \"$server\"\n").unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // SAFETY: this test binary runs one test per process under nextest; nothing else reads PATH now.
    unsafe { std::env::set_var("PATH", path) };

    let c = Content::new();
    let digest = c.digest();
    let key_pem = c.key.public_pem();
    let server = bearer_on_own_host(c.routes).await;
    let docker_config = format!(
        r#"{{"credHelpers": {{"{}": "umpiretest"}}}}"#,
        server.host()
    );
    let credentials = Credentials::parse(docker_config.as_bytes()).unwrap();
    let yaml = support::one_key_yaml(&server.host(), ("release", &key_pem), "prod", "");
    let engine = support::engine_with(&yaml, credentials);
    let v = verify(&engine, &format!("{}/{REPO}@{digest}", server.host())).await;
    assert!(
        v.allowed,
        "the helper's credentials opened the token endpoint: {v:?}"
    );

    // Helper names become program names: no paths.
    assert!(Credentials::parse(br#"{"credsStore": "../../bin/sh"}"#).is_err());
}

/// Routes behind a Basic challenge: everything needs `user:secret`.
fn behind_basic(routes: HashMap<String, Reply>) -> impl Fn(&Request) -> Reply + Send + Sync {
    move |r: &Request| {
        if r.header("authorization") != Some("Basic dXNlcjpzZWNyZXQ=") {
            return Reply::new(401, "{}").header("WWW-Authenticate", r#"Basic realm="test""#);
        }
        routes
            .get(&r.path)
            .cloned()
            .unwrap_or_else(|| Reply::new(404, "{}"))
    }
}

/// Host E of the attack: `/hop<P>` redirects to `/final<P>` on E itself, which serves what the
/// registry would have served at `P` (and a token at `/token`).
async fn redirects_to_itself(routes: HashMap<String, Reply>) -> Scripted {
    Scripted::start(move |r: &Request| {
        if let Some(rest) = r.path.strip_prefix("/hop") {
            return Reply::new(302, "").header("Location", &format!("/final{rest}"));
        }
        let rest = r.path.strip_prefix("/final").unwrap_or("");
        if rest.starts_with("/token") {
            return Reply::new(200, r#"{"token":"good-token"}"#);
        }
        routes
            .get(rest)
            .cloned()
            .unwrap_or_else(|| Reply::new(404, "{}"))
    })
    .await
}

#[tokio::test]
async fn credentials_never_travel_a_redirect_chain_registry_to_e_to_e() {
    // registry -> E -> E: a follower that compares each hop with the previous one only (reqwest)
    // and restores the original headers (tower-http) hands E the registry's credentials.
    for (scheme, redirected) in [
        ("basic", "manifest"),
        ("basic", "blob"),
        ("bearer", "manifest"),
        ("bearer", "blob"),
        ("bearer", "token"),
    ] {
        let c = Content::new();
        let digest = c.digest();
        let key_pem = c.key.public_pem();
        let path = match redirected {
            "manifest" => format!("/v2/{REPO}/manifests/{digest}"),
            "blob" => c.signature_blob_path(),
            _ => "/token".to_owned(),
        };
        let e = redirects_to_itself(c.routes.clone()).await;
        let mut routes = c.routes;
        let to_e =
            Reply::new(302, "").header("Location", &format!("http://{}/hop{path}", e.host()));
        routes.insert(path.clone(), to_e.clone());
        let server = match scheme {
            "basic" => Scripted::start(behind_basic(routes)).await,
            _ => {
                let port = Arc::new(std::sync::OnceLock::<u16>::new());
                let p = Arc::clone(&port);
                let token_redirect = redirected == "token";
                let server = Scripted::start(move |r: &Request| {
                    if token_redirect && r.path.starts_with("/token") {
                        let rest = &r.path["/token".len()..];
                        return Reply::new(302, "")
                            .header("Location", &format!("{}{rest}", to_e.headers[0].1));
                    }
                    let realm = format!("http://127.0.0.1:{}/token", p.get().copied().unwrap_or(0));
                    behind_bearer(routes.clone(), realm)(r)
                })
                .await;
                port.set(server.port).unwrap();
                server
            }
        };
        let yaml = support::one_key_yaml(&server.host(), ("release", &key_pem), "prod", "");
        let engine = support::engine_with(&yaml, user_secret(&server.host()));
        let v = verify(&engine, &format!("{}/{REPO}@{digest}", server.host())).await;
        assert!(v.allowed, "{scheme} {redirected}: {v:?}");
        let at_e = e.requests();
        assert!(
            at_e.iter().any(|r| r.path.starts_with("/final")),
            "{scheme} {redirected}: the chain was not followed to its end: {at_e:?}"
        );
        for r in &at_e {
            assert_eq!(
                r.header("authorization"),
                None,
                "{scheme} {redirected}: E received the registry's credentials at {}",
                r.path
            );
        }
    }
}

/// `count` referrers of the image, each a distinct manifest whose one bundle layer is `blob`.
fn referrers_to(c: &mut Content, blobs: &[Vec<u8>], count: usize) {
    const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
    let digest = c.digest();
    let empty = cosign::sha256(b"{}");
    c.routes
        .insert(format!("/v2/{REPO}/blobs/{empty}"), Reply::new(200, "{}"));
    let mut digests = Vec::new();
    for blob in blobs {
        let blob_digest = cosign::sha256(blob);
        c.routes.insert(
            format!("/v2/{REPO}/blobs/{blob_digest}"),
            Reply::new(200, blob.clone()),
        );
        digests.push((blob_digest, blob.len()));
    }
    let mut entries = Vec::new();
    for i in 0..count {
        let (blob_digest, blob_len) = &digests[i % digests.len()];
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": cosign::OCI_MANIFEST, "artifactType": BUNDLE,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [{"mediaType": BUNDLE, "digest": blob_digest, "size": blob_len}],
            "subject": {"mediaType": cosign::OCI_MANIFEST, "digest": digest, "size": c.image.manifest.len()},
            "annotations": {"n": i.to_string()},
        })
        .to_string();
        let manifest_digest = cosign::sha256(manifest.as_bytes());
        c.routes.insert(
            format!("/v2/{REPO}/manifests/{manifest_digest}"),
            Reply::new(200, manifest.clone()).header("Content-Type", cosign::OCI_MANIFEST),
        );
        entries.push(serde_json::json!({
            "mediaType": cosign::OCI_MANIFEST, "artifactType": BUNDLE,
            "digest": manifest_digest, "size": manifest.len(),
        }));
    }
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": cosign::OCI_INDEX, "manifests": entries}).to_string();
    c.routes.insert(
        format!("/v2/{REPO}/manifests/{}", digest.replace(':', "-")),
        Reply::new(200, index).header("Content-Type", cosign::OCI_INDEX),
    );
}

fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[tokio::test]
async fn a_hundred_referrers_to_one_large_blob_read_it_once_in_bounded_memory() {
    let mut c = Content::new();
    let blob = vec![b'x'; 15 * 1000 * 1000];
    let blob_path = format!("/v2/{REPO}/blobs/{}", cosign::sha256(&blob));
    referrers_to(&mut c, &[blob], 100);
    let (server, key, digest) = c.serve().await;
    let engine = engine_for(&server.host(), &key, "", Credentials::default());
    let v = verify(&engine, &format!("{}/{REPO}@{digest}", server.host())).await;
    // The signature under .sig still verifies; the junk bundles are signatures that do not.
    assert!(v.allowed, "{v:?}");
    let reads = server
        .requests()
        .iter()
        .filter(|r| r.path == blob_path)
        .count();
    assert_eq!(reads, 1, "each distinct blob is read once per verification");
    let peak = peak_rss_bytes();
    assert!(
        peak < 256 * 1024 * 1024,
        "peak RSS {} MiB",
        peak / 1024 / 1024
    );
}

#[tokio::test]
async fn evidence_past_the_byte_budget_of_one_verification_is_a_limit_denial() {
    let mut c = Content::new();
    let blobs: Vec<Vec<u8>> = (0..5u8).map(|i| vec![b'a' + i; 15 * 1000 * 1000]).collect();
    referrers_to(&mut c, &blobs, 5);
    let (server, key, digest) = c.serve().await;
    let engine = engine_for(&server.host(), &key, "", Credentials::default());
    let v = verify(&engine, &format!("{}/{REPO}@{digest}", server.host())).await;
    assert!(!v.allowed, "{v:?}");
    assert_eq!(v.codes(), [Code::LimitExceeded], "{v:?}");
    assert!(
        v.findings[0].message.contains("max_evidence_bytes"),
        "{}",
        v.findings[0].message
    );
    // A budget that fits them: they are read, and fail as the junk they are.
    let engine = engine_for(
        &server.host(),
        &key,
        "limits:\n  max_evidence_bytes: 100000000\n",
        Credentials::default(),
    );
    let v = verify(&engine, &format!("{}/{REPO}@{digest}", server.host())).await;
    assert!(v.allowed, "{v:?}");
}

#[tokio::test]
async fn registry_metrics_label_only_the_hosts_the_configuration_names() {
    // Under `default: allow` whoever submits images chooses the hosts umpire contacts: each
    // must not become a series of its own.
    let (server, key, _) = Content::new().serve().await;
    let engine = engine_for(
        &server.host(),
        &key,
        "default: allow\n",
        Credentials::default(),
    );
    for port in [1u16, 2, 3, 4, 5] {
        let _ = verify(&engine, &format!("127.0.0.{port}:9/app:v1")).await;
    }
    let _ = verify(&engine, &format!("{}/{REPO}:v1", server.host())).await;
    let metrics = engine.shared().metrics.encode();
    let hosts: std::collections::BTreeSet<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("umpire_registry_requests_total{"))
        .filter_map(|l| l.split("host=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(
        hosts,
        [server.host().as_str(), "other"].into_iter().collect(),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_registry_without_a_referrers_api_is_not_asked_for_it_again() {
    let (server, key, digest) = Content::new().serve().await;
    let engine = engine_for(&server.host(), &key, "", Credentials::default());
    let image = format!("{}/{REPO}@{digest}", server.host());
    for _ in 0..3 {
        let v = engine.verify_with(&image, None, bypass()).await.unwrap();
        assert!(v.allowed, "{v:?}");
    }
    let requests = server.requests();
    let count = |part: &str| requests.iter().filter(|r| r.path.contains(part)).count();
    // The API answered 404 once; afterwards the fallback tag alone is read.
    assert_eq!(count("/referrers/"), 1, "{requests:?}");
    let fallback = format!("/v2/{REPO}/manifests/{}", digest.replace(':', "-"));
    assert_eq!(requests.iter().filter(|r| r.path == fallback).count(), 3);
}

#[tokio::test]
async fn one_outbound_place_is_enough_behind_a_token_challenge() {
    // With a single place for outbound requests, a fetch that met a 401 must give its place back
    // before asking for the token (and the body of each answer is read before the next request).
    let c = Content::new();
    let digest = c.digest();
    let key_pem = c.key.public_pem();
    let server = bearer_on_own_host(c.routes).await;
    let yaml = support::one_key_yaml(
        &server.host(),
        ("release", &key_pem),
        "prod",
        "limits:\n  max_registry_requests: 1\n  deadline: 5s\n",
    );
    let engine = support::engine_with(&yaml, user_secret(&server.host()));
    let v = verify(&engine, &format!("{}/{REPO}@{digest}", server.host())).await;
    assert!(v.allowed, "{v:?}");
}
