//! Feeds arbitrary bytes to the reader as a V1 checkpoint file (an SSTable
//! of SavedTensorSlices), then reads every tensor. Bad input must end in a
//! typed error, never a panic, abort or runaway allocation.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tfbn::bundle::Bundle;

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tfbn-fuzz-v1-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    })
}

fuzz_target!(|input: &[u8]| {
    let path = scratch().join("legacy.ckpt");
    std::fs::write(&path, input).expect("write file");
    let Ok(bundle) = Bundle::open(&path) else {
        return;
    };
    for entry in bundle.entries() {
        let _ = bundle.read(&entry.key);
        let _ = bundle.read_raw(&entry.key);
    }
});
