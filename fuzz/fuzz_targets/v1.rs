//! Fuzz target `v1`: see [`tfbn_fuzz::v1`] for what it drives and the
//! input layout.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let _ = tfbn_fuzz::v1(tfbn_fuzz::scratch(), input);
});
