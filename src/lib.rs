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
pub mod limits;
pub mod metrics;
pub mod policy;
pub mod reference;
pub mod rego;
pub mod service;
pub mod trust;
pub mod verdict;
pub mod verify;

/// Generated types of the Envoy ext_authz subset (`proto/envoy`, `proto/google`), rooted so that
/// the generated cross-package paths resolve.
pub mod envoy_proto {
    pub mod envoy {
        pub mod service {
            pub mod auth {
                pub mod v3 {
                    tonic::include_proto!("envoy.service.auth.v3");
                }
            }
        }
        pub mod r#type {
            pub mod v3 {
                tonic::include_proto!("envoy.r#type.v3");
            }
        }
        pub mod config {
            pub mod core {
                pub mod v3 {
                    tonic::include_proto!("envoy.config.core.v3");
                }
            }
        }
    }
    pub mod google {
        pub mod rpc {
            tonic::include_proto!("google.rpc");
        }
    }
}

/// Generated gRPC types for `umpire.v1`.
pub mod proto {
    tonic::include_proto!("umpire.v1");

    /// Encoded descriptor set of `proto/`, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("umpire_descriptor");
}
