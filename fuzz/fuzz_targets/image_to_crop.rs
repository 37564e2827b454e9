#![no_main]
//! See `fuzz/harness.rs` for what this target feeds and asserts.

#[allow(dead_code)]
#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::image_to_crop(data));
