//! Registries served over HTTPS by a private CA (`registries[].tls_ca`): trusted for the host
//! they are named for and for no other, and a tag's evidence connections opened while it
//! resolves. Against Debian's docker-registry serving TLS.

mod support;

use std::path::Path;
use std::time::Duration;

use support::certs::Pki;
use support::cosign::SigningKey;
use support::delay_proxy::DelayProxy;
use support::registry::{Registry, RegistryTls};
use umpire::verdict::Code;

async fn https_registry(pki: &Pki, http2: bool) -> Registry {
    let server = pki.server();
    Registry::start_tls(RegistryTls {
        cert_pem: server.cert_pem,
        key_pem: server.key_pem,
        ca_pem: pki.ca_pem.clone(),
        http2,
    })
    .await
}

/// One policy over `images_host`'s repositories requiring `key`; the registry listed as
/// `listed_host`, with `tls_ca` when given.
fn yaml(listed_host: &str, images_host: &str, ca: Option<&Path>, key: &SigningKey) -> String {
    let tls_ca = ca
        .map(|p| format!("    tls_ca: {}\n", p.display()))
        .unwrap_or_default();
    let mut y =
        format!("registries:\n  - host: {listed_host}\n{tls_ca}trust:\n  keys:\n    release: |\n");
    for line in key.public_pem().lines() {
        y.push_str(&format!("      {line}\n"));
    }
    y.push_str(&format!(
        "policies:\n  - name: p\n    images: [\"{images_host}/**\"]\n    signatures:\n      authorities: [ {{ key: release }} ]\n"
    ));
    y
}

fn write_ca(pki: &Pki) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry-ca.pem");
    std::fs::write(&path, &pki.ca_pem).unwrap();
    (dir, path)
}

#[tokio::test]
async fn a_private_ca_named_as_tls_ca_lets_umpire_read_its_registry_over_https() {
    let pki = Pki::new("registry CA");
    let registry = https_registry(&pki, true).await;
    let key = SigningKey::p256();
    let digest = registry.push_signed("app", "v1", "private ca", &key).await;
    let (_dir, ca) = write_ca(&pki);
    let host = registry.host();
    let engine = support::engine(&yaml(&host, &host, Some(&ca), &key));
    for image in [format!("{host}/app:v1"), format!("{host}/app@{digest}")] {
        let v = engine.verify(&image, None).await.unwrap();
        assert!(v.allowed, "{image}: {v:?}");
        assert_eq!(v.digest, digest);
    }
}

#[tokio::test]
async fn without_tls_ca_a_private_ca_is_refused_and_the_denial_says_how_to_trust_it() {
    let pki = Pki::new("registry CA");
    let registry = https_registry(&pki, true).await;
    let key = SigningKey::p256();
    let digest = registry.push_signed("app", "v1", "unknown ca", &key).await;
    let host = registry.host();
    let engine = support::engine(&yaml(&host, &host, None, &key));
    let v = engine
        .verify(&format!("{host}/app@{digest}"), None)
        .await
        .unwrap();
    assert!(!v.allowed);
    assert_eq!(v.codes(), [Code::RegistryError], "{v:?}");
    // A certificate nobody vouches for does not become trusted by retrying.
    assert!(!v.retryable, "{v:?}");
    let message = &v.findings[0].message;
    assert!(message.contains("certificate"), "{message}");
    assert!(message.contains("tls_ca"), "{message}");
}

#[tokio::test]
async fn a_ca_named_for_one_host_is_not_trusted_for_another_spelling_of_the_same_server() {
    // The certificate holds both names; the CA is configured for `localhost:PORT` alone, so the
    // same server reached as 127.0.0.1 is read with the system's roots, which do not know it.
    let pki = Pki::new("registry CA");
    let registry = https_registry(&pki, true).await;
    let key = SigningKey::p256();
    let digest = registry.push_signed("app", "v1", "one host", &key).await;
    let (_dir, ca) = write_ca(&pki);
    let port = registry.host().rsplit_once(':').unwrap().1.to_owned();
    let named = format!("localhost:{port}");
    let mut config = yaml(&named, &named, Some(&ca), &key);
    config.push_str(&format!(
        "  - name: by-address\n    images: [\"127.0.0.1:{port}/**\"]\n    signatures:\n      authorities: [ {{ key: release }} ]\n"
    ));
    let engine = support::engine(&config);
    let allowed = engine
        .verify(&format!("{named}/app@{digest}"), None)
        .await
        .unwrap();
    assert!(allowed.allowed, "{allowed:?}");
    let other = engine
        .verify(&format!("127.0.0.1:{port}/app@{digest}"), None)
        .await
        .unwrap();
    assert!(!other.allowed, "{other:?}");
    assert_eq!(other.codes(), [Code::RegistryError], "{other:?}");
}

#[tokio::test]
async fn a_tag_on_a_cold_pool_opens_its_evidence_connections_while_it_resolves() {
    // HTTP/1.1 only: each request in flight needs a connection of its own. Through a proxy with a
    // 200 ms round trip, the connections that the evidence requests after the tag will use are
    // opened beside the tag's own, before its answer comes back; a second tag on the now warm
    // pool opens none before its answer.
    let pki = Pki::new("registry CA");
    let registry = https_registry(&pki, false).await;
    let key = SigningKey::p256();
    registry.push_signed("app", "v1", "cold pool", &key).await;
    registry.push_signed("app", "v2", "warm pool", &key).await;
    let (_dir, ca) = write_ca(&pki);
    let proxy = DelayProxy::start(registry.host(), Duration::from_millis(200)).await;
    let engine = support::engine(&yaml(&proxy.addr, &proxy.addr, Some(&ca), &key));
    let v = engine
        .verify(&format!("{}/app:v1", proxy.addr), None)
        .await
        .unwrap();
    assert!(v.allowed, "{v:?}");
    let (before, _) = proxy.opened_before_and_after_the_first_answer();
    assert_eq!(before, 3, "the tag's connection and two opened beside it");
    let opened = proxy.connections();
    let v = engine
        .verify(&format!("{}/app:v2", proxy.addr), None)
        .await
        .unwrap();
    assert!(v.allowed, "{v:?}");
    assert_eq!(
        proxy.connections(),
        opened,
        "a warm pool is not warmed again"
    );
}

#[tokio::test]
async fn a_host_with_tls_ca_trusts_that_ca_alone_not_the_systems_roots() {
    // The system's roots are made to vouch for the registry (SSL_CERT_FILE, which the platform
    // verifier reads on Linux; nextest runs each test in a process of its own). Without
    // `tls_ca` the registry is then trusted; with a `tls_ca` naming another CA it is not.
    let pki = Pki::new("registry CA, in the system's roots");
    let registry = https_registry(&pki, true).await;
    let key = SigningKey::p256();
    let digest = registry
        .push_signed("app", "v1", "system roots", &key)
        .await;
    let (_dir, system_ca) = write_ca(&pki);
    unsafe { std::env::set_var("SSL_CERT_FILE", &system_ca) };
    let (_other_dir, other_ca) = write_ca(&Pki::new("some other CA"));
    let host = registry.host();
    let image = format!("{host}/app@{digest}");
    let by_system = support::engine(&yaml(&host, &host, None, &key));
    let v = by_system.verify(&image, None).await.unwrap();
    assert!(v.allowed, "the system's roots vouch for it: {v:?}");
    let pinned = support::engine(&yaml(&host, &host, Some(&other_ca), &key));
    let v = pinned.verify(&image, None).await.unwrap();
    assert!(!v.allowed, "{v:?}");
    assert_eq!(v.codes(), [Code::RegistryError], "{v:?}");
}
