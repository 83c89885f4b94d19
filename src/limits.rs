//! `limits`: the bounds on everything umpire reads and serves (evidence sizes and counts, deadlines,
//! in-flight work, listener ceilings). Plain values: read by `config`, obeyed by `evidence`,
//! `engine` and `listener`.

use std::time::Duration;

/// Bounds on everything read from a registry (`limits`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_manifest_bytes: u64,
    pub max_signature_layer_bytes: u64,
    /// Attestation envelopes (`.att` layers) and bundles: SBOMs can be large.
    pub max_attestation_bytes: u64,
    pub max_signatures: usize,
    /// Deadline for one verification, registry round trips included.
    pub deadline: Duration,
    /// Deadline for establishing one connection.
    pub connect_timeout: Duration,
    /// Requests answered at once (gRPC, webhooks, gate); more are refused with RESOURCE_EXHAUSTED
    /// rather than queued. Read at start.
    pub max_in_flight: usize,
    /// Every evidence byte read for one verification (manifests, layers, bundles), together.
    pub max_evidence_bytes: u64,
    /// Whether callers may ask to skip cache lookups (`bypass_cache`); they still coalesce.
    pub allow_bypass_cache: bool,
    /// Requests to registries in flight at once, across every verification.
    pub max_registry_requests: usize,
    /// Every listener: request headers within this, from the connection's first byte on.
    pub header_timeout: Duration,
    /// Every listener: a connection with no bytes either way for this long is closed.
    pub idle_timeout: Duration,
    /// Every listener: connections open at once; more are closed on accept.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_manifest_bytes: 4 * 1024 * 1024,
            max_signature_layer_bytes: 256 * 1024,
            max_attestation_bytes: 16 * 1024 * 1024,
            max_signatures: 100,
            deadline: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(5),
            max_in_flight: 1024,
            max_evidence_bytes: 64 * 1024 * 1024,
            allow_bypass_cache: true,
            max_registry_requests: 256,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}
