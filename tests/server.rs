//! The gRPC server around the verifier: health, reflection, clean shutdown.

mod support;

use std::time::Duration;

use support::Umpire;
use support::hostile::{Reply, Scripted};
use support::served::Served;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use umpire::proto::VerifyRequest;

const DEMO_ONLY: &str = "policies:\n  - name: p\n    images: [\"127.0.0.1:1/**\"]\n    signatures:\n      authorities:\n        - key: k\n";

fn yaml_with_key() -> String {
    let key = support::cosign::SigningKey::p256();
    support::config_yaml(
        "127.0.0.1:1",
        &[("k", &key.public_pem())],
        &DEMO_ONLY["policies:\n".len()..],
        "",
    )
}

async fn channel(umpire: &Umpire) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{}", umpire.addr))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn health_reports_serving_for_the_verifier() {
    let umpire = Umpire::start(&yaml_with_key()).await;
    let _ = umpire.client().await;
    let mut health = HealthClient::new(channel(&umpire).await);
    for service in ["", "umpire.v1.Verifier"] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status(), ServingStatus::Serving, "{service:?}");
    }
}

#[tokio::test]
async fn reflection_lists_the_verifier() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let umpire = Umpire::start(&yaml_with_key()).await;
    let _ = umpire.client().await;
    let mut client = ServerReflectionClient::new(channel(&umpire).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"umpire.v1.Verifier".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );
    // Only what this listener serves: the gate's Envoy service lives on its own port.
    assert!(!names.iter().any(|n| n.starts_with("envoy.")), "{names:?}");
}

#[tokio::test]
async fn grpc_callers_may_not_name_local_layouts_unless_allowed() {
    let umpire = Umpire::start(&yaml_with_key()).await;
    let mut client = umpire.client().await;
    for image in ["oci:/etc", "oci:/nonexistent/path:v1"] {
        let e = client
            .verify(umpire::proto::VerifyRequest {
                image: image.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{image}: {e}");
        assert!(e.message().contains("allow_local_layouts"), "{e}");
    }
    let allowed = Umpire::start(&format!("{}allow_local_layouts: true\n", yaml_with_key())).await;
    let r = allowed
        .client()
        .await
        .verify(umpire::proto::VerifyRequest {
            image: "oci:/nonexistent/path:v1".into(),
            ..Default::default()
        })
        .await;
    assert!(r.is_ok(), "{r:?}");
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_call_finish() {
    // A registry that takes a second to answer keeps a Verify call in flight.
    let slow = Scripted::start(|_: &support::hostile::Request| {
        Reply::new(503, "later").delayed(Duration::from_secs(1))
    })
    .await;
    let key = support::cosign::SigningKey::p256();
    let yaml = support::one_key_yaml(&slow.host(), ("k", &key.public_pem()), "p", "");
    let umpire = Umpire::start(&yaml).await;
    let mut client = umpire.client().await;
    let image = format!("{}/app:v1", slow.host());
    let call = tokio::spawn(async move {
        client
            .verify(VerifyRequest {
                image,
                policy: String::new(),
                ..Default::default()
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    umpire.stop().await.unwrap();
    let r = call
        .await
        .unwrap()
        .expect("the in-flight call completes")
        .into_inner();
    assert!(!r.allowed);
    assert!(r.retryable);
}

#[cfg(unix)]
#[tokio::test]
async fn the_binary_stops_cleanly_on_sigterm() {
    let served = Served::start(&yaml_with_key(), &[]).await;
    let (code, log) = served.stop().await;
    assert_eq!(code, Some(0), "{log}");
}

#[cfg(unix)]
#[tokio::test]
async fn the_binary_serves_metrics_and_reloads_on_sighup() {
    let key = support::cosign::SigningKey::p256();
    let base = support::config_yaml(
        "127.0.0.1:1",
        &[("k", &key.public_pem())],
        &DEMO_ONLY["policies:\n".len()..],
        "",
    );
    let yaml = format!("listen: 127.0.0.1:0\nmetrics_listen: 127.0.0.1:0\n{base}");
    let (_dir, path) = support::config_file(&yaml);
    let served = Served::start_file(&path, &[]).await;
    let r = served.ask("127.0.0.1:2/app:1").await;
    assert_eq!(r.findings[0].code, "NO_MATCHING_POLICY");

    let metrics = served.metrics().await;
    assert!(
        metrics.contains(
            "umpire_verdicts_total{verdict=\"denied\",code=\"NO_MATCHING_POLICY\",policy=\"\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "umpire_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{metrics}"
    );

    // A policy for 127.0.0.1:2 instead, then SIGHUP.
    let edited = yaml.replace("127.0.0.1:1/**", "127.0.0.1:2/**");
    std::fs::write(&path, edited).unwrap();
    served.signal("HUP");
    let mut reloaded = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = served.ask("127.0.0.1:2/app:1").await;
        if r.findings[0].code != "NO_MATCHING_POLICY" {
            assert!(
                !r.allowed,
                "127.0.0.1:2 refuses connections: denied, never allowed"
            );
            reloaded = true;
            break;
        }
    }
    assert!(reloaded, "SIGHUP reloaded the configuration");
}

#[cfg(unix)]
#[tokio::test]
async fn the_binary_reloads_when_its_config_changes_on_disk_without_a_signal() {
    // As a Kubernetes ConfigMap volume does: the file is a symlink through `..data`, and an
    // update swaps `..data` to a new folder.
    let key = support::cosign::SigningKey::p256();
    let base = support::config_yaml(
        "127.0.0.1:1",
        &[("k", &key.public_pem())],
        &DEMO_ONLY["policies:\n".len()..],
        "",
    );
    let yaml = format!("listen: 127.0.0.1:0\nmetrics_listen: 127.0.0.1:0\n{base}");
    let volume = tempfile::tempdir().unwrap();
    let v1 = volume.path().join("..2026_12_01_v1");
    std::fs::create_dir(&v1).unwrap();
    std::fs::write(v1.join("umpire.yaml"), &yaml).unwrap();
    std::os::unix::fs::symlink("..2026_12_01_v1", volume.path().join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/umpire.yaml", volume.path().join("umpire.yaml")).unwrap();
    let config = volume.path().join("umpire.yaml");
    let served = Served::start_file(&config, &[]).await;
    let r = served.ask("127.0.0.1:2/app:1").await;
    assert_eq!(r.findings[0].code, "NO_MATCHING_POLICY");

    // A bad update first: the running configuration stays.
    let bad = volume.path().join("..2026_12_01_bad");
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(bad.join("umpire.yaml"), "policies: [not: valid\n").unwrap();
    let swap = |target: &str| {
        let tmp = volume.path().join("..data_tmp");
        std::os::unix::fs::symlink(target, &tmp).unwrap();
        std::fs::rename(&tmp, volume.path().join("..data")).unwrap();
    };
    swap("..2026_12_01_bad");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = served.ask("127.0.0.1:2/app:1").await;
    assert_eq!(r.findings[0].code, "NO_MATCHING_POLICY", "still serving");

    // A good update: applied without SIGHUP.
    let v2 = volume.path().join("..2026_12_01_v2");
    std::fs::create_dir(&v2).unwrap();
    std::fs::write(
        v2.join("umpire.yaml"),
        yaml.replace("127.0.0.1:1/**", "127.0.0.1:2/**"),
    )
    .unwrap();
    swap("..2026_12_01_v2");
    let mut reloaded = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = served.ask("127.0.0.1:2/app:1").await;
        if r.findings[0].code != "NO_MATCHING_POLICY" {
            assert!(!r.allowed);
            reloaded = true;
            break;
        }
    }
    assert!(reloaded, "the change on disk was applied");
    let metrics = served.metrics().await;
    assert!(
        metrics.contains("umpire_config_generation_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("umpire_reloads_total{result=\"rejected\"} 1"),
        "{metrics}"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn log_format_json_writes_one_json_object_per_line() {
    let yaml = format!("log_format: json\n{}", yaml_with_key());
    let served = Served::start(&yaml, &[("UMPIRE_LOG", "info".into())]).await;
    let (_, stderr) = served.stop().await;
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.is_empty()).collect();
    assert!(lines.len() >= 2, "{stderr}");
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["fields"]["message"].is_string(), "{line}");
    }
}

#[tokio::test]
async fn a_cached_answer_is_sent_encoded_and_reads_as_the_fresh_one_marked_cached() {
    // The built-in demo: a signed image with a signature requirement and its findings.
    let yaml = format!(
        "allow_local_layouts: true\n{}",
        umpire::config::BUILTIN_DEFAULT
    );
    let umpire = Umpire::start(&yaml).await;
    let mut client = umpire.client().await;
    let by_tag = client
        .verify(VerifyRequest {
            image: "oci:examples/demo:signed".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(by_tag.allowed, "{by_tag:?}");
    let image = format!("oci:examples/demo@{}", by_tag.digest);
    let ask = || VerifyRequest {
        image: image.clone(),
        ..Default::default()
    };
    // Fresh by digest (or from the cache the tag filled), then from the remembered request:
    // the second answer is the pre-encoded one.
    let first = client.verify(ask()).await.unwrap().into_inner();
    let second = client.verify(ask()).await.unwrap().into_inner();
    assert!(second.cached);
    assert_eq!(second.image, image);
    assert_eq!(
        umpire::proto::VerifyResponse {
            cached: true,
            ..first
        },
        second
    );
    assert!(!second.findings.is_empty());
}
