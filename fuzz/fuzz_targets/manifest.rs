#![no_main]
//! Manifests and indexes as a registry serves them, with any Content-Type.
use libfuzzer_sys::fuzz_target;
use umpire::digest::Digest;
use umpire::evidence::Manifest;

fuzz_target!(|data: &[u8]| {
    let (ct, body) = match data.split_first() {
        Some((0, rest)) => (None, rest),
        Some((1, rest)) => (Some("application/vnd.oci.image.manifest.v1+json"), rest),
        Some((2, rest)) => (Some("application/vnd.docker.distribution.manifest.list.v2+json"), rest),
        Some((_, rest)) => (Some("application/vnd.docker.distribution.manifest.v1+prettyjws"), rest),
        None => return,
    };
    let _ = Manifest::parse("fuzz", Digest::of(body), body, ct);
});
