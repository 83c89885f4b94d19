//! `umpire serve`: the gRPC listener with health and reflection, stopped cleanly on SIGTERM/SIGINT
//! (in-flight calls finish).

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::api::grpc::VerifierService;
use crate::api::tls::TlsSettings;
use crate::proto;
use crate::service::Live;

/// Serves on an already-bound listener (plaintext) until `shutdown` completes.
pub async fn serve_on(
    live: Arc<Live>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "umpire gRPC listening (plaintext)");
    // Without TCP_NODELAY, small responses meet delayed ACKs: 40 ms stalls at the tail (the
    // listener module sets it on every accepted connection).
    let incoming = crate::api::listener::incoming_h2(
        "grpc",
        listener,
        ceilings(&live),
        Arc::clone(live.metrics()),
    );
    router(live)
        .await?
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .context("gRPC server")?;
    tracing::info!("umpire stopped");
    Ok(())
}

/// Serves over TLS (mTLS when a client CA is set) on `listener` until `shutdown` completes.
pub async fn serve_tls_on(
    live: Arc<Live>,
    listener: TcpListener,
    tls: TlsSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, mtls = tls.client_ca.is_some(), "umpire gRPC listening (TLS)");
    let ceilings = ceilings(&live);
    let expiry = live
        .metrics()
        .certificate_expiry
        .get_or_create(&crate::metrics::CertificateLabels { listener: "grpc" })
        .clone();
    let incoming = tokio_stream::StreamExt::map(
        tls_incoming_reporting(
            crate::api::listener::incoming("grpc", listener, ceilings, Arc::clone(live.metrics())),
            &tls,
            Some(expiry),
        )?,
        move |c| c.map(|c| crate::api::listener::FrameGuard::new(c, ceilings)),
    );
    router(live)
        .await?
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .context("gRPC server")?;
    tracing::info!("umpire stopped");
    Ok(())
}

/// The listener ceilings of the running configuration (read at start, like the addresses).
fn ceilings(live: &Live) -> crate::api::listener::Ceilings {
    crate::api::listener::Ceilings::from(&live.listeners().limits)
}

/// Accepted TLS connections whose handshake (and client identity, when an allow-list is set)
/// succeeded; failed handshakes are logged and dropped without stopping the listener. The
/// handshake spends the connection's first-bytes allowance (`limits.header_timeout`). `expiry`
/// is kept at the serving certificate's expiry.
pub fn tls_incoming_reporting(
    connections: impl tokio_stream::Stream<
        Item = std::io::Result<crate::api::listener::Guarded<tokio::net::TcpStream>>,
    > + Send
    + 'static,
    tls: &TlsSettings,
    expiry: Option<prometheus_client::metrics::gauge::Gauge>,
) -> anyhow::Result<
    impl tokio_stream::Stream<
        Item = std::io::Result<
            tokio_rustls::server::TlsStream<crate::api::listener::Guarded<tokio::net::TcpStream>>,
        >,
    >,
> {
    use tokio_stream::StreamExt;
    let acceptor = tokio_rustls::TlsAcceptor::from(crate::api::tls::server_config_reporting(
        tls,
        &[b"h2"],
        expiry,
    )?);
    let allowed = Arc::new(tls.allowed_clients.clone());
    let (tx, rx) = tokio::sync::mpsc::channel(128);
    tokio::spawn(async move {
        tokio::pin!(connections);
        while let Some(conn) = connections.next().await {
            let Ok(conn) = conn else { continue };
            let peer = conn.get_ref().peer_addr().ok();
            let (acceptor, allowed, sender) = (acceptor.clone(), Arc::clone(&allowed), tx.clone());
            tokio::spawn(async move {
                match acceptor.accept(conn).await {
                    Ok(stream) => {
                        if crate::api::tls::client_allowed(
                            &allowed,
                            stream.get_ref().1.peer_certificates(),
                        ) {
                            let _ = sender.send(Ok(stream)).await;
                        } else {
                            tracing::warn!(?peer, "client certificate names no allowed identity");
                        }
                    }
                    Err(e) => tracing::info!(?peer, "TLS handshake refused: {e}"),
                }
            });
            if tx.is_closed() {
                break;
            }
        }
    });
    Ok(tokio_stream::wrappers::ReceiverStream::new(rx))
}

async fn router(live: Arc<Live>) -> anyhow::Result<tonic::transport::server::Router> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<crate::proto_wire::verifier_server::VerifierServer<VerifierService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building gRPC reflection")?;
    let ceilings = ceilings(&live);
    Ok(tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(crate::api::listener::keepalive_interval(ceilings)))
        .http2_keepalive_timeout(Some(crate::api::listener::KEEPALIVE_TIMEOUT))
        .max_concurrent_streams(Some(crate::api::listener::H2_MAX_STREAMS))
        .http2_max_header_list_size(Some(crate::api::listener::H2_MAX_HEADER_LIST))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(crate::proto_wire::verifier_server::VerifierServer::new(
            VerifierService::new(live),
        )))
}

/// Serves the Envoy ext_authz registry gate (plaintext gRPC, with reflection) until `shutdown`.
pub async fn serve_ext_authz_on(
    live: Arc<Live>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "Envoy ext_authz gate listening");
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::GATE_FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building gRPC reflection")?;
    let incoming = crate::api::listener::incoming_h2(
        "ext_authz",
        listener,
        ceilings(&live),
        Arc::clone(live.metrics()),
    );
    let ceilings = ceilings(&live);
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(crate::api::listener::keepalive_interval(ceilings)))
        .http2_keepalive_timeout(Some(crate::api::listener::KEEPALIVE_TIMEOUT))
        .max_concurrent_streams(Some(crate::api::listener::H2_MAX_STREAMS))
        .http2_max_header_list_size(Some(crate::api::listener::H2_MAX_HEADER_LIST))
        .add_service(reflection)
        .add_service(crate::envoy_proto::envoy::service::auth::v3::authorization_server::AuthorizationServer::new(
            crate::api::ext_authz::Gate::new(live),
        ))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .context("ext_authz server")?;
    Ok(())
}

/// Completes on SIGTERM or SIGINT. The handlers are installed when this is called (not when the
/// future is first polled), so a signal that arrives while the listeners start is not lost to the
/// default action.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = wait(int) => tracing::info!("SIGINT: finishing in-flight calls"),
                _ = wait(term) => tracing::info!("SIGTERM: finishing in-flight calls"),
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("Ctrl-C: finishing in-flight calls");
        }
    }
}

/// Serves `/metrics` and `/healthz` until `shutdown` completes, under the listener ceilings.
pub async fn serve_metrics(
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    listener: tokio::net::TcpListener,
    ceilings: crate::api::listener::Ceilings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use axum::routing::get;
    let shed = std::sync::Arc::clone(&metrics);
    let router = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = std::sync::Arc::clone(&metrics);
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.encode(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    tracing::info!(addr = %listener.local_addr()?, "metrics listening");
    crate::api::listener::serve_http("metrics", listener, ceilings, shed, None, router, shutdown)
        .await;
    Ok(())
}
