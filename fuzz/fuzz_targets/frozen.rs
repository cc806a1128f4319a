//! Fuzz target `frozen`: see [`tfbn_fuzz::frozen`] for what it drives and the
//! input layout.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let _ = tfbn_fuzz::frozen(tfbn_fuzz::scratch(), input);
});
