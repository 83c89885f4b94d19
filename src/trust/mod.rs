//! Trust material: where it comes from and how it stays fresh. Keys and Sigstore roots are read by
//! `config` (their files are part of the configuration and reload with it); `tuf` refreshes
//! `trust.sigstore.<name>: tuf` roots, scheduled by `service`.

pub mod tuf;
