//! Fuzz target `hdf5`: see [`tfbn_fuzz::hdf5`] for what it drives and the
//! input layout.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let _ = tfbn_fuzz::hdf5(tfbn_fuzz::scratch(), input);
});
