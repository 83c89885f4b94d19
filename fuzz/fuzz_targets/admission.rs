#![no_main]
//! AdmissionReviews and Gatekeeper ProviderRequests.
use libfuzzer_sys::fuzz_target;
use umpire::api::admission::{images, parse_review, provider_keys};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = parse_review(data) {
        let _ = images(&r.kind, &r.object);
    }
    let _ = provider_keys(data);
});
