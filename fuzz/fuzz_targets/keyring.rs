#![no_main]
//! A pull secret's Docker config (both formats) read into a keyring, then matched to registries:
//! never a panic, and a match is always a key of the secret read.
use libfuzzer_sys::fuzz_target;
use umpire::evidence::keyring::Keyring;

fuzz_target!(|data: &[u8]| {
    let (legacy, bytes) = match data.split_first() {
        Some((flag, rest)) => (flag & 1 == 1, rest),
        None => return,
    };
    let mut keyring = Keyring::default();
    if keyring.add(bytes, legacy, "secret fuzz/fuzz").is_err() {
        assert!(keyring.is_empty());
        return;
    }
    for (registry, repository) in [
        ("docker.io", "library/nginx"),
        ("registry.example:5000", "team/app"),
        ("a.example.com", ""),
        ("127.0.0.1:5000", "x"),
    ] {
        if let Some(b) = keyring.lookup(registry, repository) {
            assert_eq!(b.origin, "secret fuzz/fuzz");
        }
    }
});
