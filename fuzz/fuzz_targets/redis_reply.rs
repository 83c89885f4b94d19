#![no_main]
//! Redis replies as they arrive, cut into reads anywhere: following them never panics.
use libfuzzer_sys::fuzz_target;
use umpire::redis_wire::{ReplyBounds, follow};

fuzz_target!(|data: &[u8]| {
    let Some((cut, body)) = data.split_first() else { return };
    let size = usize::from(*cut).max(1);
    let bounds = ReplyBounds {
        max_bulk: 4096,
        max_reply: 16 * 1024,
        max_count: 64,
        max_line: 512,
        max_depth: 4,
    };
    let _ = follow(bounds, body.chunks(size));
});
