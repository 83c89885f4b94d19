#![no_main]
//! Sigstore bundles and cosign's legacy annotations restated as bundles.
use libfuzzer_sys::fuzz_target;
use umpire::verify::cosign_legacy::to_bundle;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = sigstore_types::Bundle::from_json(text);
    let mut parts = text.splitn(3, '\u{0}');
    let (sig, cert, rekor) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next());
    let _ = to_bundle(b"payload", sig, Some(cert), rekor, None);
    let _ = to_bundle(b"payload", sig, None, rekor, None);
});
