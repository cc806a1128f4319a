//! Structured variant of `bundle_index`: the input is a list of index
//! entries, which are written through `TableBuilder` with correct block
//! crcs, so mutations reach the header, entry, shard and slice checks
//! instead of stopping at a block checksum.
//!
//! Input layout: a byte `n`, then `n` records of {u8 key length, key, u16 LE
//! value length, value}, then the data shard (everything left). Records may
//! be unsorted or duplicated on purpose.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tfbn::bundle::write::TableBuilder;
use tfbn::bundle::Bundle;

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tfbn-fuzz-entries-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    })
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if input.len() < n {
        return None;
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Some(head)
}

fuzz_target!(|input: &[u8]| {
    let mut rest = input;
    let Some(&[count]) = take(&mut rest, 1) else {
        return;
    };
    let mut table = TableBuilder::new(4096, 16);
    for _ in 0..count {
        let Some(&[klen]) = take(&mut rest, 1) else {
            return;
        };
        let Some(key) = take(&mut rest, klen as usize) else {
            return;
        };
        let Some(vlen) = take(&mut rest, 2) else {
            return;
        };
        let Some(value) = take(&mut rest, u16::from_le_bytes([vlen[0], vlen[1]]) as usize) else {
            return;
        };
        table.add(key, value);
    }
    let dir = scratch();
    std::fs::write(dir.join("f.index"), table.finish()).expect("write index");
    std::fs::write(dir.join("f.data-00000-of-00001"), rest).expect("write data");
    let Ok(bundle) = Bundle::open(dir.join("f")) else {
        return;
    };
    for entry in bundle.entries() {
        let _ = bundle.read(&entry.key);
        let _ = bundle.read_raw(&entry.key);
    }
});
