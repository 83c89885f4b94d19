//! umpire: a supply-chain verdict service. See ARCHITECTURE.md for the map.
//!
//! The library surface is the re-exports below: a configuration ([`Config`]), the engine that
//! answers ([`Engine`], or [`Live`] for a reloading service), its answer ([`Verdict`], [`Finding`],
//! [`Code`]) and the gRPC types ([`proto`]). The modules themselves are public for umpire's own
//! integration tests, benchmarks, fuzz targets and examples (hidden from the docs): they are not a
//! stable interface.

pub use config::Config;
pub use engine::Engine;
pub use service::Live;
pub use verdict::{Code, Finding, Verdict};

#[doc(hidden)]
pub mod api;
#[doc(hidden)]
pub mod cache;
#[doc(hidden)]
pub mod checks;
#[doc(hidden)]
pub mod cli;
#[doc(hidden)]
pub mod coalesce;
#[doc(hidden)]
pub mod config;
#[doc(hidden)]
pub mod config_cmd;
#[doc(hidden)]
pub mod conformance;
#[doc(hidden)]
pub mod digest;
#[doc(hidden)]
pub mod engine;
#[doc(hidden)]
pub mod evidence;
#[doc(hidden)]
pub mod glob;
#[doc(hidden)]
pub mod gojson;
#[doc(hidden)]
pub mod limits;
#[doc(hidden)]
pub mod metrics;
#[doc(hidden)]
pub mod notation_cmd;
#[doc(hidden)]
pub mod policy;
#[doc(hidden)]
pub mod pull_secrets;
#[doc(hidden)]
pub mod redis_wire;
#[doc(hidden)]
pub mod reference;
#[doc(hidden)]
pub mod rego;
#[doc(hidden)]
pub mod request;
#[doc(hidden)]
pub mod service;
#[doc(hidden)]
pub mod trust;
#[doc(hidden)]
pub mod verdict;
#[doc(hidden)]
pub mod verify;

#[doc(hidden)]
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

/// The Verifier's server side answering `Verify` with `api::wire::VerifyResponseWire`.
pub mod proto_wire {
    include!(concat!(env!("OUT_DIR"), "/wire/umpire.v1.rs"));
}

/// Generated gRPC types for `umpire.v1`.
pub mod proto {
    tonic::include_proto!("umpire.v1");

    /// Encoded descriptor set of the Verifier (`proto/umpire`), for the main port's reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("umpire_descriptor");

    /// Encoded descriptor set of the Envoy Authorization service, for the gate's reflection.
    pub const GATE_FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("gate_descriptor");
}
