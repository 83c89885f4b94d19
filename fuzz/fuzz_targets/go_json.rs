#![no_main]
//! Outside JSON as Go reads it: the key check never panics, and a document it accepts parses.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if umpire::gojson::check(data).is_ok() {
        let v: serde_json::Value = serde_json::from_slice(data).expect("checked JSON parses");
        let _ = umpire::gojson::get(&v, "User");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = umpire::gojson::fold(text);
    }
});
