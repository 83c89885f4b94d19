#![no_main]
//! cosign's Rekor bundle annotation and the `intoto`/`dsse` 0.0.1 bodies umpire binds itself.
use libfuzzer_sys::fuzz_target;
use umpire::verify::rekor_v1::{Logged, LoggedEntry, LoggedSigner};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(entry) = LoggedEntry::from_annotation(text) {
        let _ = entry.kind();
    }
    let entry = LoggedEntry {
        body: data.to_vec(),
        integrated_time: 1,
        log_index: 1,
        log_id: vec![0; 32],
        set: Vec::new(),
    };
    let signatures = vec!["c2ln".to_owned()];
    for signer in [LoggedSigner::Certificate(b"cert"), LoggedSigner::Key(b"key")] {
        let logged = Logged { envelope: b"{}", payload: b"{}", signatures: &signatures, signer };
        let _ = entry.binds_intoto(&logged);
        let _ = entry.binds_dsse(&logged);
    }
});
