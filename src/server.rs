//! `umpire serve`: the gRPC listener with health and reflection, stopped cleanly on SIGTERM/SIGINT
//! (in-flight calls finish).

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::api::VerifierService;
use crate::proto;
use crate::service::Live;

/// Serves on an already-bound listener until `shutdown` completes.
pub async fn serve_on(
    live: Arc<Live>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<proto::verifier_server::VerifierServer<VerifierService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building gRPC reflection")?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "umpire gRPC listening");
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(proto::verifier_server::VerifierServer::new(
            VerifierService::new(live),
        ))
        // Without TCP_NODELAY, small responses meet delayed ACKs: 40 ms stalls at the tail.
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
        .context("gRPC server")?;
    tracing::info!("umpire stopped");
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT: finishing in-flight calls"),
        _ = term => tracing::info!("SIGTERM: finishing in-flight calls"),
    }
}
