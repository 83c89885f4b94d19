//! umpire: a supply-chain verdict service. See ARCHITECTURE.md for the map.

pub mod api;
pub mod cache;
pub mod checks;
pub mod coalesce;
pub mod config;
pub mod conformance;
pub mod digest;
pub mod engine;
pub mod evidence;
pub mod glob;
pub mod metrics;
pub mod output;
pub mod policy;
pub mod reference;
pub mod rego;
pub mod server;
pub mod service;
pub mod verdict;
pub mod verify;

/// Generated gRPC types for `umpire.v1`.
pub mod proto {
    tonic::include_proto!("umpire.v1");

    /// Encoded descriptor set of `proto/`, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("umpire_descriptor");
}
