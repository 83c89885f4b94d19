//! The pure verification core: bytes and trust material in, typed results out. No I/O here, so every
//! function can be fed hostile input directly (tests, fuzzers). One file per verification step.

/// Which check a piece of evidence failed. `verify` knows no finding codes: `policy` maps these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The signature itself, or what it is over.
    Signature,
    /// The signing certificate: its chain, validity, use or SCT.
    Certificate,
    /// The transparency-log entry or timestamp that dates and binds the signature.
    TransparencyLog,
    /// A signed digest that is not the artifact's.
    Digest,
    /// A certificate chain that reaches no configured trust store.
    UntrustedSigner,
    /// A signer whose identity the configured identities do not name.
    Identity,
    /// No trust policy statement holds the image's scope.
    Scope,
}

pub mod attestation;
pub mod chain;
pub mod cosign_legacy;
pub mod dsse;
pub mod evidence;
pub mod fulcio;
pub mod identity;
pub mod keys;
pub mod legacy_attestation;
pub mod notation;
pub mod notation_rules;
pub mod rekor_v1;
pub mod signature;
pub mod sigstore;
pub mod simple_signing;
pub mod statement;
pub mod timestamp;
