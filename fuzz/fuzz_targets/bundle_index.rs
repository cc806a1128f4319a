//! Feeds arbitrary bytes to the V2 reader as an index file plus one data
//! shard, then opens the bundle and reads every tensor both ways. Any panic,
//! abort or runaway allocation is a bug: bad input must end in a typed error.
//!
//! Input layout: a little-endian u32 `n`, then `n` bytes of index, then the
//! data shard (everything left). Seed the corpus with real `.index` files
//! (prefixed by their length) to get past the footer quickly.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tfbn::bundle::Bundle;

/// One scratch folder per fuzzing process, reused by every run.
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tfbn-fuzz-bundle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    })
}

fuzz_target!(|input: &[u8]| {
    let Some((len, rest)) = input.split_first_chunk::<4>() else {
        return;
    };
    let n = (u32::from_le_bytes(*len) as usize).min(rest.len());
    let (index, data) = rest.split_at(n);
    let dir = scratch();
    let prefix = dir.join("f");
    std::fs::write(dir.join("f.index"), index).expect("write index");
    std::fs::write(dir.join("f.data-00000-of-00001"), data).expect("write data");
    let Ok(bundle) = Bundle::open(&prefix) else {
        return;
    };
    for entry in bundle.entries() {
        let _ = bundle.read(&entry.key);
        let _ = bundle.read_raw(&entry.key);
    }
});
