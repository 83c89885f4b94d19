#![no_main]
//! Notation envelopes (JWS and COSE), RFC 3161 timestamp tokens and trust policy documents from
//! hostile bytes.
use libfuzzer_sys::fuzz_target;
use umpire::trust::notation::parse_trust_policy;
use umpire::verify::notation::{COSE_MEDIA_TYPE, JWS_MEDIA_TYPE, Target, check_integrity};

fuzz_target!(|data: &[u8]| {
    let target = Target {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        digest: "sha256:00".into(),
        size: 1,
    };
    let _ = check_integrity(data, JWS_MEDIA_TYPE, &target);
    let _ = check_integrity(data, COSE_MEDIA_TYPE, &target);
    let _ = umpire::verify::timestamp::verify(data, b"signature", &[]);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_trust_policy(text);
    }
});
