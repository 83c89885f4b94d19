#![no_main]
//! Image references: parse, and whatever parses must print back and parse to the same thing.
use libfuzzer_sys::fuzz_target;
use umpire::reference::ImageRef;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(r) = ImageRef::parse(text) {
        let again = ImageRef::parse(&r.to_string()).expect("a parsed reference prints as a valid one");
        assert_eq!(again, r);
        let _ = r.policy_subject();
    }
});
