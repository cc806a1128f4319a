//! Fuzz target `keras_config`: see [`tfbn_fuzz::keras_config`] for what it drives and the
//! input layout.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let _ = tfbn_fuzz::keras_config(tfbn_fuzz::scratch(), input);
});
