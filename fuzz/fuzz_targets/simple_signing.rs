#![no_main]
//! The simple-signing payload, and the keyed check of a signature layer over it.
use libfuzzer_sys::fuzz_target;
use umpire::digest::Digest;
use umpire::verify::simple_signing::SimpleSigning;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = SimpleSigning::parse(data) {
        let _ = p.is_for(&Digest::of(data));
    }
});
