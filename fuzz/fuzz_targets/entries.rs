//! Fuzz target `entries`: see [`tfbn_fuzz::entries`] for what it drives and the
//! input layout.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let _ = tfbn_fuzz::entries(tfbn_fuzz::scratch(), input);
});
