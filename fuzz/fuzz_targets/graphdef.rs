//! Fuzz target `graphdef`: see [`tfbn_fuzz::graphdef`] for what it drives and the
//! input layout.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let _ = tfbn_fuzz::graphdef(tfbn_fuzz::scratch(), input);
});
