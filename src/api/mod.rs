//! Every way in: the gRPC service (`grpc`, served by `server`), Kubernetes admission and Gatekeeper
//! (`webhook`, `admission`), the Envoy registry gate (`ext_authz`) and the CLI's output (`output`),
//! all over one listener module (`listener`: connection cap, timeouts, accept back-off, drained on
//! shutdown) with TLS from `tls`. Surfaces map requests to the engine and verdicts back; they decide
//! nothing themselves.

pub mod admission;
pub mod ext_authz;
pub mod frames;
pub mod grpc;
pub mod listener;
pub mod output;
pub mod server;
pub mod tls;
pub mod webhook;
pub mod wire;
