//! The pure verification core: bytes and trust material in, typed results out. No I/O here, so every
//! function can be fed hostile input directly (tests, fuzzers). One file per verification step.

pub mod attestation;
pub mod chain;
pub mod cosign_legacy;
pub mod dsse;
pub mod fulcio;
pub mod identity;
pub mod keys;
pub mod legacy_attestation;
pub mod rekor_v1;
pub mod signature;
pub mod sigstore;
pub mod simple_signing;
pub mod statement;
