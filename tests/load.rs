//! Ceilings under load, through the real binary (`umpire serve`): silent and surplus connections,
//! oversized Gatekeeper requests, callers that give up before a slow registry answers, and
//! credential helpers behind a registry that keeps answering 401.

mod support;

use std::time::{Duration, Instant};

use support::certs::TestWebhook;
use support::cosign::{
    self, Image, SigningKey, payload, sig_tag, signature_layer, signature_manifest,
};
use support::hostile::{Reply, Request, Scripted};
use support::served::Served;
use tokio::io::AsyncReadExt;
use umpire::proto::{VerifyBatchRequest, VerifyRequest};

const POLICY: &str = "policies:\n  - name: p\n    images: [\"127.0.0.1:1/**\"]\n    signatures:\n      authorities:\n        - key: k\n";

fn keyed(key: &SigningKey, host: &str, extra: &str) -> String {
    support::config_yaml(
        host,
        &[("k", &key.public_pem())],
        &support::key_policy("p", host, 1, &["k"]),
        extra,
    )
}

/// True when the server closed the connection (EOF or reset) within `within`.
async fn closed_within(port: u16, within: Duration) -> bool {
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    // Whatever the server greets with (HTTP/2 SETTINGS) is read and ignored; only the close counts.
    let mut buf = [0u8; 1024];
    let closed = async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(within, closed).await.is_ok()
}

#[tokio::test]
async fn silent_connections_are_closed_within_the_header_timeout_on_every_listener() {
    let hook = TestWebhook::new();
    let webhook = hook.port;
    let (metrics, gate) = (
        support::registry::free_port(),
        support::registry::free_port(),
    );
    let key = SigningKey::p256();
    let yaml = format!(
        "{}{}metrics_listen: 127.0.0.1:{metrics}\next_authz_listen: 127.0.0.1:{gate}\next_authz:\n  upstream: 127.0.0.1:1\nlimits:\n  header_timeout: 1s\n",
        keyed(&key, "127.0.0.1:1", ""),
        hook.yaml
    );
    let served = Served::start(&yaml, &[]).await;
    for port in [served.grpc, webhook, metrics, gate] {
        served.wait_for(port).await;
        let started = Instant::now();
        assert!(
            closed_within(port, Duration::from_secs(8)).await,
            "a connection that sent nothing to port {port} is still open"
        );
        eprintln!("port {port}: closed after {:?}", started.elapsed());
    }
    let _ = POLICY;
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_at_once() {
    let key = SigningKey::p256();
    let yaml = keyed(
        &key,
        "127.0.0.1:1",
        "limits:\n  max_connections: 2\n  header_timeout: 60s\n",
    );
    let served = Served::start(&yaml, &[]).await;
    // Served::start's own probe connection may still hold a slot for a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _held: Vec<tokio::net::TcpStream> = futures::future::join_all(
        (0..2).map(|_| tokio::net::TcpStream::connect(("127.0.0.1", served.grpc))),
    )
    .await
    .into_iter()
    .map(Result::unwrap)
    .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        closed_within(served.grpc, Duration::from_secs(5)).await,
        "a third connection was kept past max_connections: 2"
    );
}

#[tokio::test]
async fn a_fifteen_thousand_key_gatekeeper_request_is_refused_with_memory_flat() {
    let hook = TestWebhook::new();
    let key = SigningKey::p256();
    let yaml = format!("{}{}", keyed(&key, "127.0.0.1:1", ""), hook.yaml);
    let served = Served::start(&yaml, &[]).await;
    served.wait_for(hook.port).await;
    let keys: Vec<String> = (0..15_000)
        .map(|i| format!("127.0.0.1:1/team/app{i}:v1"))
        .collect();
    let body = serde_json::json!({"apiVersion": "externaldata.gatekeeper.sh/v1beta1", "kind": "ProviderRequest", "request": {"keys": keys}});
    let before = served.memory("VmRSS:");
    let started = Instant::now();
    let r: serde_json::Value = hook.post("/gatekeeper/provider", &body).await;
    let took = started.elapsed();
    let items = r["response"]["items"].as_array().unwrap();
    assert_eq!(items.len(), keys.len(), "one item per key");
    assert!(
        items
            .iter()
            .all(|i| i["error"].as_str().unwrap().contains("at most 1000 keys")),
        "{}",
        items[0]
    );
    let peak = served.memory("VmHWM:");
    eprintln!(
        "15,000 keys refused in {took:?}; RSS before {} MiB, peak {} MiB, {} open files",
        before / 1024 / 1024,
        peak / 1024 / 1024,
        served.open_files()
    );
    assert!(
        peak < before + 64 * 1024 * 1024,
        "memory grew by {} MiB",
        (peak - before) / 1024 / 1024
    );
}

#[tokio::test]
async fn callers_whose_deadline_passes_leave_no_work_behind() {
    // Every answer takes 1.5 s: the manifest, .sig and referrers requests are in flight when the
    // callers give up after 100 ms; on a registry this slow, left-over work would go on to read
    // the signature blob after they answer.
    let key = SigningKey::p256();
    let image = Image::new("slow");
    let digest = image.digest();
    let sig = signature_manifest(vec![signature_layer(&key, payload("x", &digest))]);
    let mut routes = std::collections::HashMap::new();
    routes.insert(
        format!("/v2/app/manifests/{digest}"),
        Reply::new(200, image.manifest.clone()).header("Content-Type", cosign::OCI_MANIFEST),
    );
    routes.insert(
        format!("/v2/app/manifests/{}", sig_tag(&digest)),
        Reply::new(200, sig.manifest.clone()).header("Content-Type", cosign::OCI_MANIFEST),
    );
    for blob in sig.blobs() {
        routes.insert(
            format!("/v2/app/blobs/{}", blob.digest()),
            Reply::new(200, blob.bytes.clone()),
        );
    }
    let registry = Scripted::start(move |r: &Request| {
        routes
            .get(&r.path)
            .cloned()
            .unwrap_or_else(|| Reply::new(404, "{}"))
            .delayed(Duration::from_millis(1500))
    })
    .await;
    let served = Served::start(&keyed(&key, &registry.host(), ""), &[]).await;
    let image = format!("{}/app@{digest}", registry.host());
    // Every client is connected first, so that the 50 questions arrive together.
    let clients = futures::future::join_all((0..50).map(|_| served.client())).await;
    let calls = clients.into_iter().enumerate().map(|(i, mut client)| {
        let image = image.clone();
        async move {
            let mut request = tonic::Request::new(VerifyRequest {
                image,
                // Half of them bypass the cache: they coalesce all the same.
                bypass_cache: i % 2 == 0,
                ..Default::default()
            });
            request.set_timeout(Duration::from_millis(100));
            client.verify(request).await
        }
    });
    let answers = futures::future::join_all(calls).await;
    assert!(
        answers
            .iter()
            .all(|a| a.as_ref().map_or(true, |r| !r.get_ref().allowed))
    );
    // Requests sent just before the callers left are logged as they arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = registry.requests().len();
    // One run is 4 requests; a loaded machine may start a second after the first was
    // abandoned, never one per caller (200).
    assert!(
        asked <= 12,
        "50 identical questions cost {asked} registry requests"
    );
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let later = registry.requests();
    assert_eq!(
        later.len(),
        asked,
        "work went on after every caller left: {:?}",
        later.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
}

#[cfg(unix)]
#[tokio::test]
async fn two_hundred_images_behind_a_401_registry_run_the_credential_helper_once() {
    use std::os::unix::fs::PermissionsExt;
    let bin = tempfile::tempdir().unwrap();
    let runs = bin.path().join("runs");
    let helper = bin.path().join("docker-credential-counting");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread server\necho run >> {}\nsleep 0.2\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"user\",\"Secret\":\"secret\"}}' \"$server\"\n",
            runs.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let docker = tempfile::tempdir().unwrap();
    std::fs::write(
        docker.path().join("config.json"),
        r#"{"credsStore": "counting"}"#,
    )
    .unwrap();
    // A registry that answers 401 to everything, credentials or not.
    let registry = Scripted::start(|_: &Request| {
        Reply::new(401, "{}").header("WWW-Authenticate", r#"Basic realm="test""#)
    })
    .await;
    let key = SigningKey::p256();
    let served = Served::start(
        &keyed(&key, &registry.host(), ""),
        &[
            (
                "PATH",
                format!(
                    "{}:{}",
                    bin.path().display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            ),
            ("DOCKER_CONFIG", docker.path().display().to_string()),
        ],
    )
    .await;
    let requests = (0..200)
        .map(|i| VerifyRequest {
            image: format!("{}/team/app{i}:v1", registry.host()),
            ..Default::default()
        })
        .collect();
    let r = served
        .client()
        .await
        .verify_batch(VerifyBatchRequest { requests })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.responses.len(), 200);
    assert!(r.responses.iter().all(|v| !v.allowed));
    let ran = std::fs::read_to_string(&runs)
        .unwrap_or_default()
        .lines()
        .count();
    assert_eq!(ran, 1, "the credential helper ran {ran} times");
}

#[tokio::test]
async fn a_batch_judges_what_finds_a_place_and_converges_and_bypass_can_be_refused() {
    let registry = support::registry::Registry::start().await;
    let host = registry.host();
    for (repo, tag) in [("a", "1"), ("b", "1"), ("c", "1")] {
        registry
            .push_image(repo, tag, &Image::new(&format!("{repo}{tag}")))
            .await;
    }
    let key = SigningKey::p256();
    let yaml = keyed(
        &key,
        &host,
        "limits:\n  max_in_flight: 2\n  allow_bypass_cache: false\n",
    );
    let served = Served::start(&yaml, &[]).await;
    let mut client = served.client().await;
    let ask = |image: &str| VerifyRequest {
        image: image.into(),
        ..Default::default()
    };
    let three = VerifyBatchRequest {
        requests: ["a:1", "b:1", "c:1"]
            .map(|i| ask(&format!("{host}/{i}")))
            .to_vec(),
    };
    // Each image takes its place as its verification starts: two are judged, the third gets a
    // retryable denial of its own (the batch is not refused as a whole).
    let r = client
        .verify_batch(three.clone())
        .await
        .unwrap()
        .into_inner();
    let shed: Vec<&str> = r
        .responses
        .iter()
        .filter(|v| v.findings[0].message.starts_with("not judged"))
        .map(|v| v.image.as_str())
        .collect();
    assert_eq!(shed, [format!("{host}/c:1")], "{r:?}");
    assert!(r.responses[2].retryable, "{r:?}");
    assert_eq!(r.responses[0].findings[0].code, "NO_SIGNATURES", "{r:?}");
    // A client retrying the same request converges: answers kept from the first try take no
    // place, so the third is judged now.
    let r = client.verify_batch(three).await.unwrap().into_inner();
    assert!(
        r.responses
            .iter()
            .all(|v| v.findings[0].code == "NO_SIGNATURES"),
        "{r:?}"
    );
    assert!(r.responses[0].cached && !r.responses[2].cached, "{r:?}");
    let ask = |image: &str| VerifyRequest {
        image: image.replace("127.0.0.1:1", &host),
        ..Default::default()
    };
    let same = VerifyBatchRequest {
        requests: vec![ask("127.0.0.1:1/a:1"); 3],
    };
    let r = client.verify_batch(same).await.unwrap().into_inner();
    assert_eq!(r.responses.len(), 3);
    let e = client
        .verify(VerifyRequest {
            bypass_cache: true,
            ..ask("127.0.0.1:1/a:1")
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
    assert!(e.message().contains("allow_bypass_cache"), "{e}");
}

#[cfg(unix)]
#[tokio::test]
async fn an_admission_request_in_flight_at_sigterm_gets_its_answer() {
    let registry =
        Scripted::start(|_: &Request| Reply::new(404, "{}").delayed(Duration::from_millis(1500)))
            .await;
    let hook = TestWebhook::new();
    let key = SigningKey::p256();
    let yaml = format!("{}{}", keyed(&key, &registry.host(), ""), hook.yaml);
    let served = Served::start(&yaml, &[]).await;
    served.wait_for(hook.port).await;
    let client = hook.client();
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "in-flight", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "namespace": "apps", "operation": "CREATE",
                    "object": {"spec": {"containers": [{"name": "c", "image": format!("{}/team/app:v1", registry.host())}]}}}
    });
    let call = tokio::spawn(
        client
            .post(hook.url("/admission/validate"))
            .json(&review)
            .send(),
    );
    // SIGTERM once umpire is verifying (its registry request has arrived), not before.
    for _ in 0..400 {
        if !registry.requests().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        !registry.requests().is_empty(),
        "the admission request never reached umpire"
    );
    served.signal("TERM");
    let answer: serde_json::Value = call
        .await
        .unwrap()
        .expect("the in-flight admission request is answered")
        .json()
        .await
        .unwrap();
    assert_eq!(answer["response"]["uid"], "in-flight");
    assert_eq!(answer["response"]["allowed"], false);
    let (code, log) = served.wait().await;
    assert_eq!(code, Some(0), "{log}");
}

#[tokio::test]
async fn batches_abandoned_at_their_deadline_leave_no_connections_or_requests_behind() {
    // Three batches of 1,000 distinct images against a registry that takes 2 s to answer, each
    // abandoned after 300 ms: nothing they started may go on, and the next caller is served.
    let registry =
        Scripted::start(|_: &Request| Reply::new(404, "{}").delayed(Duration::from_millis(2000)))
            .await;
    let key = SigningKey::p256();
    let served = Served::start(&keyed(&key, &registry.host(), ""), &[]).await;
    let files_before = served.open_files();
    let batch = |n: usize| VerifyBatchRequest {
        requests: (0..1000)
            .map(|i| VerifyRequest {
                image: format!("{}/team/app{n}-{i}:v1", registry.host()),
                ..Default::default()
            })
            .collect(),
    };
    let calls = (0..3).map(|n| {
        let served = &served;
        async move {
            let mut client = served.client().await;
            let mut request = tonic::Request::new(batch(n));
            request.set_timeout(Duration::from_millis(300));
            client.verify_batch(request).await
        }
    });
    let _ = futures::future::join_all(calls).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let asked = registry.requests().len();
    let files_after = served.open_files();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let asked_later = registry.requests().len();
    let files_later = served.open_files();
    eprintln!(
        "3 x 1,000 images abandoned at 300 ms: {asked} registry requests made (global cap 256 at once), \
         {asked_later} after 3 s; open files {files_before} before, {files_after} at 0.8 s, {files_later} at 3.3 s; peak RSS {} MiB",
        served.memory("VmHWM:") / 1024 / 1024
    );
    assert_eq!(
        asked_later, asked,
        "requests were made after every caller left"
    );
    assert!(
        files_later <= files_before + 8,
        "{files_later} files open, {files_before} before"
    );
    // The next legitimate call is answered at once (from an empty pipeline, not behind a queue).
    let started = Instant::now();
    let r = served
        .client()
        .await
        .verify(VerifyRequest {
            image: "127.0.0.1:1/elsewhere:v1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!r.allowed);
    eprintln!("next call answered in {:?}", started.elapsed());
}

#[cfg(unix)]
#[tokio::test]
async fn request_fields_cannot_forge_log_lines() {
    let hook = TestWebhook::new();
    let webhook = hook.port;
    let key = SigningKey::p256();
    let yaml = format!("{}{}", keyed(&key, "127.0.0.1:1", ""), hook.yaml);
    let served = Served::start(&yaml, &[("UMPIRE_LOG", "info".into())]).await;
    served.wait_for(webhook).await;
    let forged = "apps\nFORGED admission allowed=true\u{1b}[31m";
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod\nFORGED kind"}, "namespace": forged, "operation": "CREATE",
                    "object": {"spec": {"containers": [{"name": "c", "image": "127.0.0.1:1/team/app:v1"}]}}}
    });
    hook.client()
        .post(hook.url("/admission/validate"))
        .json(&review)
        .send()
        .await
        .unwrap();
    let mut grpc_client = served.client().await;
    let _ = grpc_client
        .verify(VerifyRequest {
            image: "127.0.0.1:1/a:1\nFORGED verify".into(),
            ..Default::default()
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, logs) = served.stop().await;
    assert!(logs.contains("admission"), "{logs}");
    assert!(
        !logs.lines().any(|l| l.trim_start().starts_with("FORGED")),
        "a request field started a log line: {logs}"
    );
    assert!(
        !logs.contains('\u{1b}'),
        "a raw escape reached the log: {logs:?}"
    );
    assert!(
        logs.contains("FORGED admission"),
        "the field is logged, escaped: {logs}"
    );
}
