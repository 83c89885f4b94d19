#![no_main]
//! The YAML configuration (no files: relative paths resolve in an empty temporary folder).
use libfuzzer_sys::fuzz_target;
use umpire::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = Config::from_yaml(text, std::path::Path::new("/nonexistent-umpire-fuzz"), "fuzz");
});
