#![no_main]
//! DSSE envelopes and the in-toto statements inside them.
use libfuzzer_sys::fuzz_target;
use umpire::digest::Digest;
use umpire::verify::dsse::{Envelope, pae};
use umpire::verify::statement::Statement;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = Envelope::parse(data)
        && let Ok(payload) = e.payload_bytes()
    {
        let _ = pae(&e.payload_type, &payload);
        let _ = e.signers(&payload, &[]);
        if let Ok(s) = Statement::parse(&payload) {
            let _ = s.is_about(&Digest::of(data));
        }
    }
    if let Ok(s) = Statement::parse(data) {
        let _ = s.subject_digests();
    }
});
