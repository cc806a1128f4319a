//! Every bad input in `docs/reliability.md#crafted-inputs` that the bundle reader must
//! survive: one named test per case, each expecting a specific typed error
//! (and, by running at all, no panic).
//!
//! Each case starts from a valid bundle written by `tfbn::testing::bundle` and
//! changes exactly one thing: an entry proto (re-encoded, with the index
//! rebuilt so every block crc is right), a block (re-wrapped with a correct
//! trailer), or bytes of a file.

use std::path::{Path, PathBuf};

use prost::Message;
use tfbn::testing::bundle::crc::mask;
use tfbn::testing::bundle::table::{BlockHandle, Footer, Table};
use tfbn::testing::bundle::write::{append_block, BlockBuilder, TableBuilder};
use tfbn::testing::bundle::{
    encode_slice_key, write_v2, Bundle, BundleWriter, Extent, WriteOptions,
};
use tfbn::testing::proto::bundle::BundleEntryProto;
use tfbn::testing::proto::bundle::BundleHeaderProto;
use tfbn::testing::proto::tensor::{tensor_shape_proto::Dim, TensorShapeProto, VersionDef};
use tfbn::{DType, Error, Tensor, TensorData};

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

fn f32s(shape: &[u64], v: &[f32]) -> Tensor {
    Tensor {
        dtype: DType::F32,
        shape: shape.to_vec(),
        data: TensorData::Bytes(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
    }
}

fn strings(v: &[&str]) -> Tensor {
    Tensor {
        dtype: DType::String,
        shape: vec![v.len() as u64],
        data: TensorData::Strings(v.iter().map(|s| s.as_bytes().to_vec()).collect()),
    }
}

fn index_of(prefix: &Path) -> PathBuf {
    PathBuf::from(format!("{}.index", prefix.display()))
}

fn data_of(prefix: &Path) -> PathBuf {
    PathBuf::from(format!("{}.data-00000-of-00001", prefix.display()))
}

/// A valid bundle in a temp dir: `a` f32 [2,3], `b` i64 [4], `s` strings.
/// `edit` may change the index pairs (header first) before they are written.
fn bundle_with(edit: impl FnOnce(&mut Pairs)) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("model.ckpt");
    let mut w = BundleWriter::create(&prefix, WriteOptions::default()).unwrap();
    w.add("a", &f32s(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))
        .unwrap();
    let b = Tensor {
        dtype: DType::I64,
        shape: vec![4],
        data: TensorData::Bytes((0..4i64).flat_map(i64::to_le_bytes).collect()),
    };
    w.add("b", &b).unwrap();
    w.add("s", &strings(&["ab", "", "héllo"])).unwrap();
    w.finish_with(edit).unwrap();
    (dir, prefix)
}

fn valid() -> (tempfile::TempDir, PathBuf) {
    bundle_with(|_| {})
}

fn decode_entry(pairs: &Pairs, key: &[u8]) -> BundleEntryProto {
    let (_, v) = pairs.iter().find(|(k, _)| k == key).unwrap();
    BundleEntryProto::decode(&v[..]).unwrap()
}

/// A valid bundle whose entry `key` is changed by `f`.
fn with_entry(key: &str, f: impl FnOnce(&mut BundleEntryProto)) -> (tempfile::TempDir, PathBuf) {
    bundle_with(|pairs| {
        let mut e = decode_entry(pairs, key.as_bytes());
        f(&mut e);
        pairs
            .iter_mut()
            .find(|(k, _)| k == key.as_bytes())
            .unwrap()
            .1 = e.encode_to_vec();
    })
}

/// A valid bundle whose header is changed by `f`.
fn with_header(f: impl FnOnce(&mut BundleHeaderProto)) -> (tempfile::TempDir, PathBuf) {
    bundle_with(|pairs| {
        let mut h = BundleHeaderProto::decode(&pairs[0].1[..]).unwrap();
        f(&mut h);
        pairs[0].1 = h.encode_to_vec();
    })
}

fn open_err(p: &Path) -> Error {
    match Bundle::open(p) {
        Ok(_) => panic!("{} opened", p.display()),
        Err(e) => e,
    }
}

fn read_err(p: &Path, key: &str) -> Error {
    let b = Bundle::open(p).unwrap_or_else(|e| panic!("open: {e}"));
    match b.read(key) {
        Ok(t) => panic!("{key} read as {t:?}"),
        Err(e) => e,
    }
}

fn rewrite(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    f(&mut bytes);
    std::fs::write(path, bytes).unwrap();
}

/// The valid index pairs of [`valid`].
fn valid_pairs() -> Pairs {
    let mut out = Vec::new();
    let _keep = bundle_with(|p| out = p.clone());
    out
}

/// Replaces the index of `prefix` with a table of one hand-made data block
/// (`block`, wrapped with type `block_type` and a correct crc) whose index
/// key is `last_key`.
fn index_with_block(prefix: &Path, block: &[u8], block_type: u8) {
    let mut out = Vec::new();
    let handle = append_block(&mut out, block, block_type);
    let mut index = BlockBuilder::new(1);
    let mut h = Vec::new();
    handle.encode_to(&mut h);
    index.add(b"\xff", &h);
    let metaindex = append_block(&mut out, &BlockBuilder::new(1).finish(), 0);
    let index = append_block(&mut out, &index.finish(), 0);
    out.extend_from_slice(&Footer { metaindex, index }.encode());
    std::fs::write(index_of(prefix), out).unwrap();
}

/// A valid data block holding the valid pairs (restart every 16).
fn valid_block() -> Vec<u8> {
    let mut b = BlockBuilder::new(16);
    for (k, v) in valid_pairs() {
        b.add(&k, &v);
    }
    b.finish()
}

macro_rules! assert_err {
    ($e:expr, $p:pat) => {{
        let e = $e;
        assert!(matches!(e, $p), "unexpected error: {e:?}");
    }};
    ($e:expr, $p:pat if $cond:expr) => {{
        let e = $e;
        assert!(matches!(&e, $p if $cond), "unexpected error: {e:?}");
    }};
}

#[test]
fn valid_bundle_reads() {
    let (_d, p) = valid();
    let b = Bundle::open(&p).unwrap();
    assert_eq!(
        b.read("a").unwrap(),
        f32s(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    );
    assert_eq!(b.read("s").unwrap(), strings(&["ab", "", "héllo"]));
    // The hand-made single-block index is equivalent.
    index_with_block(&p, &valid_block(), 0);
    assert_eq!(Bundle::open(&p).unwrap().entries().len(), 3);
}

// ---- Table layer -----------------------------------------------------------

#[test]
fn zero_byte_index() {
    let (_d, p) = valid();
    std::fs::write(index_of(&p), b"").unwrap();
    assert_err!(open_err(&p), Error::TableTooShort { len: 0, .. });
}

#[test]
fn index_truncated_by_one_byte() {
    let (_d, p) = valid();
    rewrite(&index_of(&p), |b| {
        b.pop();
    });
    assert_err!(open_err(&p), Error::FooterMagicMismatch { .. });
}

#[test]
fn footer_magic_wrong() {
    let (_d, p) = valid();
    rewrite(&index_of(&p), |b| {
        let n = b.len();
        b[n - 1] ^= 0x01;
    });
    assert_err!(open_err(&p), Error::FooterMagicMismatch { found, .. } if *found == 0xda47_7524_8b80_fb57);
}

#[test]
fn index_block_crc_mismatch() {
    let (_d, p) = valid();
    let bytes = std::fs::read(index_of(&p)).unwrap();
    let footer = Table::open(Path::new("x"), &bytes).unwrap().footer();
    rewrite(&index_of(&p), |b| b[footer.index.offset as usize] ^= 0x80);
    assert_err!(open_err(&p), Error::BlockCrcMismatch { offset, .. } if *offset == footer.index.offset);
}

#[test]
fn block_handle_past_end_of_file() {
    let (_d, p) = valid();
    let mut out = Vec::new();
    let mut index = BlockBuilder::new(1);
    let mut h = Vec::new();
    BlockHandle {
        offset: 1 << 40,
        size: 10,
    }
    .encode_to(&mut h);
    index.add(b"z", &h);
    let metaindex = append_block(&mut out, &BlockBuilder::new(1).finish(), 0);
    let index = append_block(&mut out, &index.finish(), 0);
    out.extend_from_slice(&Footer { metaindex, index }.encode());
    std::fs::write(index_of(&p), out).unwrap();
    assert_err!(open_err(&p), Error::BlockOutOfBounds { offset, .. } if *offset == 1 << 40);
}

#[test]
fn block_handle_offset_plus_size_wraps() {
    let (_d, p) = valid();
    rewrite(&index_of(&p), |b| {
        let n = b.len();
        let footer = Footer {
            metaindex: BlockHandle { offset: 0, size: 0 },
            index: BlockHandle {
                offset: u64::MAX - 2,
                size: 10,
            },
        };
        b[n - 48..].copy_from_slice(&footer.encode());
    });
    assert_err!(open_err(&p), Error::BlockOutOfBounds { .. });
}

#[test]
fn block_type_7() {
    let (_d, p) = valid();
    index_with_block(&p, &valid_block(), 7);
    assert_err!(
        open_err(&p),
        Error::BlockTypeUnsupported { block_type: 7, .. }
    );
}

#[test]
fn snappy_type_on_raw_bytes() {
    let (_d, p) = valid();
    index_with_block(&p, &valid_block(), 1);
    assert_err!(
        open_err(&p),
        Error::BlockTypeUnsupported { block_type: 1, .. }
    );
}

#[test]
fn restart_count_larger_than_block() {
    let (_d, p) = valid();
    let mut block = valid_block();
    let n = block.len();
    block[n - 4..].copy_from_slice(&1000u32.to_le_bytes());
    index_with_block(&p, &block, 0);
    assert_err!(open_err(&p), Error::BlockCorrupt { what, .. } if what.contains("restart points do not fit"));
}

#[test]
fn restart_offset_past_the_entries() {
    let (_d, p) = valid();
    let mut block = valid_block();
    // One restart (offset 0) → two, the second pointing past the entries.
    let n = block.len();
    block.truncate(n - 4);
    block.extend_from_slice(&5000u32.to_le_bytes());
    block.extend_from_slice(&2u32.to_le_bytes());
    index_with_block(&p, &block, 0);
    assert_err!(open_err(&p), Error::BlockCorrupt { what, .. } if what.contains("restart offset 5000"));
}

#[test]
fn entries_but_no_restart_point() {
    let (_d, p) = valid();
    let mut block = valid_block();
    let n = block.len();
    block.truncate(n - 8);
    block.extend_from_slice(&0u32.to_le_bytes());
    index_with_block(&p, &block, 0);
    assert_err!(open_err(&p), Error::BlockCorrupt { .. });
}

#[test]
fn eleven_byte_varint_in_block_entry() {
    let (_d, p) = valid();
    let mut block = vec![0x80; 10];
    block.extend_from_slice(&[0x00, 0x00, 0x00]);
    block.extend_from_slice(&0u32.to_le_bytes());
    block.extend_from_slice(&1u32.to_le_bytes());
    index_with_block(&p, &block, 0);
    assert_err!(open_err(&p), Error::BlockCorrupt { what, .. } if what.contains("longer than its type"));
}

#[test]
fn varint64_tenth_byte_above_one_in_block_handle() {
    let (_d, p) = valid();
    let mut out = Vec::new();
    let mut index = BlockBuilder::new(1);
    let mut h = vec![0xff; 9];
    h.extend_from_slice(&[0x02, 0x05]);
    index.add(b"z", &h);
    let metaindex = append_block(&mut out, &BlockBuilder::new(1).finish(), 0);
    let index = append_block(&mut out, &index.finish(), 0);
    out.extend_from_slice(&Footer { metaindex, index }.encode());
    std::fs::write(index_of(&p), out).unwrap();
    assert_err!(open_err(&p), Error::BlockCorrupt { what, .. } if what.contains("overflows"));
}

#[test]
fn entry_runs_past_the_block() {
    let (_d, p) = valid();
    // shared 0, non_shared 1, value_len 200 in a tiny block.
    let mut block = vec![0x00, 0x01, 0xc8, 0x01, b'k'];
    block.extend_from_slice(&0u32.to_le_bytes());
    block.extend_from_slice(&1u32.to_le_bytes());
    index_with_block(&p, &block, 0);
    assert_err!(open_err(&p), Error::BlockCorrupt { what, .. } if what.contains("runs past"));
}

#[test]
fn shared_prefix_longer_than_previous_key() {
    let (_d, p) = valid();
    let pairs = valid_pairs();
    // Entry 1: the header (key ""); entry 2 claims 5 shared bytes of "".
    let mut block = Vec::new();
    block.extend_from_slice(&[0x00, 0x00, pairs[0].1.len() as u8]);
    block.extend_from_slice(&pairs[0].1);
    block.extend_from_slice(&[0x05, 0x01, 0x00, b'a']);
    block.extend_from_slice(&0u32.to_le_bytes());
    block.extend_from_slice(&1u32.to_le_bytes());
    index_with_block(&p, &block, 0);
    assert_err!(open_err(&p), Error::BlockCorrupt { what, .. } if what.contains("shared prefix 5"));
}

#[test]
fn keys_out_of_order() {
    let (_d, p) = bundle_with(|pairs| pairs.swap(1, 2));
    assert_err!(open_err(&p), Error::KeysNotSorted { key, .. } if key == "a");
}

#[test]
fn duplicate_keys() {
    let (_d, p) = bundle_with(|pairs| {
        let dup = pairs[1].clone();
        pairs.insert(2, dup);
    });
    assert_err!(open_err(&p), Error::KeysNotSorted { key, .. } if key == "a");
}

#[test]
fn keys_out_of_order_across_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m");
    let valid = valid_pairs();
    let mut pairs = valid.clone();
    pairs.swap(1, 3);
    // One entry per block: the disorder is only visible between blocks.
    let mut t = TableBuilder::new(1, 16);
    for (k, v) in &pairs {
        t.add(k, v);
    }
    std::fs::write(index_of(&p), t.finish()).unwrap();
    let (_d, good) = bundle_with(|_| {});
    std::fs::copy(data_of(&good), data_of(&p)).unwrap();
    assert_err!(open_err(&p), Error::KeysNotSorted { key, .. } if key == "b");
}

// ---- Header ------------------------------------------------------------------

#[test]
fn header_missing() {
    let (_d, p) = bundle_with(|pairs| {
        pairs.remove(0);
    });
    assert_err!(open_err(&p), Error::HeaderMissing { .. });
}

#[test]
fn empty_index_table_has_no_header() {
    let (_d, p) = bundle_with(|pairs| pairs.clear());
    assert_err!(open_err(&p), Error::HeaderMissing { .. });
}

#[test]
fn header_bytes_not_a_proto() {
    let (_d, p) = bundle_with(|pairs| pairs[0].1 = vec![0xff, 0xff, 0xff]);
    assert_err!(open_err(&p), Error::HeaderInvalid { what, .. } if what.contains("not a BundleHeaderProto"));
}

#[test]
fn num_shards_zero() {
    let (_d, p) = with_header(|h| h.num_shards = 0);
    assert_err!(open_err(&p), Error::HeaderInvalid { what, .. } if what.contains("num_shards is 0"));
}

#[test]
fn num_shards_negative() {
    let (_d, p) = with_header(|h| h.num_shards = -3);
    assert_err!(open_err(&p), Error::HeaderInvalid { what, .. } if what.contains("num_shards is -3"));
}

#[test]
fn num_shards_two_with_second_shard_absent() {
    let (_d, p) = with_header(|h| h.num_shards = 2);
    std::fs::rename(data_of(&p), format!("{}.data-00000-of-00002", p.display())).unwrap();
    assert_err!(
        open_err(&p),
        Error::ShardMissing { path, num_shards: 2 } if path.to_string_lossy().ends_with("model.ckpt.data-00001-of-00002")
    );
}

#[test]
fn endianness_unknown_value() {
    let (_d, p) = with_header(|h| h.endianness = 2);
    assert_err!(open_err(&p), Error::HeaderInvalid { .. });
}

#[test]
fn min_consumer_too_new() {
    let (_d, p) = with_header(|h| {
        h.version = Some(VersionDef {
            producer: 3,
            min_consumer: 2,
            bad_consumers: vec![],
        })
    });
    assert_err!(
        open_err(&p),
        Error::VersionUnsupported {
            min_consumer: 2,
            ..
        }
    );
}

#[test]
fn bad_consumers_lists_1() {
    let (_d, p) = with_header(|h| {
        h.version = Some(VersionDef {
            producer: 1,
            min_consumer: 0,
            bad_consumers: vec![1],
        })
    });
    assert_err!(open_err(&p), Error::VersionUnsupported { bad_consumers, .. } if *bad_consumers == [1]);
}

#[test]
fn big_endianness_is_byte_swapped() {
    // Hand-made big-endian data (not through the writer's own swap).
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("be");
    let f: Vec<u8> = [1.5f32, -2.0]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    let i: Vec<u8> = [0x0102i16, -3]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    let c: Vec<u8> = [1.0f64, -1.0]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    let mut data = Vec::new();
    let mut pairs: Pairs = vec![(
        Vec::new(),
        BundleHeaderProto {
            num_shards: 1,
            endianness: 1,
            version: Some(VersionDef {
                producer: 1,
                ..Default::default()
            }),
        }
        .encode_to_vec(),
    )];
    for (key, dtype, dims, bytes) in [
        ("c", DType::Complex128, 1, &c),
        ("f", DType::F32, 2, &f),
        ("i", DType::I16, 2, &i),
    ] {
        let e = BundleEntryProto {
            dtype: dtype.tf_code(),
            shape: Some(TensorShapeProto {
                dim: vec![Dim {
                    size: dims,
                    name: String::new(),
                }],
                unknown_rank: false,
            }),
            shard_id: 0,
            offset: data.len() as i64,
            size: bytes.len() as i64,
            crc32c: mask(crc32c::crc32c(bytes)),
            slices: vec![],
        };
        data.extend_from_slice(bytes);
        pairs.push((key.as_bytes().to_vec(), e.encode_to_vec()));
    }
    let mut t = TableBuilder::new(1 << 18, 16);
    for (k, v) in &pairs {
        t.add(k, v);
    }
    std::fs::write(index_of(&p), t.finish()).unwrap();
    std::fs::write(data_of(&p), data).unwrap();
    let b = Bundle::open(&p).unwrap();
    assert_eq!(b.read("f").unwrap(), f32s(&[2], &[1.5, -2.0]));
    let le = |v: &[u8], w: usize| -> Vec<u8> {
        v.chunks(w).flat_map(|c| c.iter().rev().copied()).collect()
    };
    assert_eq!(b.read_raw("i").unwrap().as_ref(), le(&i, 2).as_slice());
    assert_eq!(b.read_raw("c").unwrap().as_ref(), le(&c, 8).as_slice());
}

// ---- Entries -----------------------------------------------------------------

#[test]
fn size_not_elements_times_width() {
    let (_d, p) = with_entry("a", |e| e.size = 20);
    assert_err!(
        open_err(&p),
        Error::SizeMismatch { key, size: 20, expected: 24, path, .. } if key == "a" && path.ends_with("model.ckpt.index")
    );
}

#[test]
fn huge_but_valid_shape() {
    let (_d, p) = with_entry("a", |e| {
        e.shape.as_mut().unwrap().dim = vec![
            Dim {
                size: 1 << 31,
                name: String::new(),
            },
            Dim {
                size: 1 << 20,
                name: String::new(),
            },
        ]
    });
    assert_err!(open_err(&p), Error::SizeMismatch { expected, .. } if *expected == 1 << 53);
}

#[test]
fn shard_id_not_below_num_shards() {
    let (_d, p) = with_entry("b", |e| e.shard_id = 1);
    assert_err!(open_err(&p), Error::ShardIdOutOfRange { shard_id: 1, num_shards: 1, key, .. } if key == "b");
}

#[test]
fn shard_id_negative() {
    let (_d, p) = with_entry("b", |e| e.shard_id = -1);
    assert_err!(open_err(&p), Error::ShardIdOutOfRange { shard_id: -1, .. });
}

#[test]
fn offset_beyond_shard_end() {
    let (_d, p) = with_entry("b", |e| e.offset = 1000);
    assert_err!(
        open_err(&p),
        Error::OffsetPastShardEnd { offset: 1000, size: 32, path, .. } if path.ends_with("model.ckpt.data-00000-of-00001")
    );
}

#[test]
fn offset_plus_size_wraps_u64() {
    let (_d, p) = with_entry("b", |e| e.offset = -8);
    assert_err!(open_err(&p), Error::OffsetPastShardEnd { offset, size: 32, .. } if *offset == u64::MAX - 7);
}

#[test]
fn negative_dim() {
    let (_d, p) = with_entry("a", |e| e.shape.as_mut().unwrap().dim[1].size = -1);
    assert_err!(open_err(&p), Error::ShapeNegativeDim { index: 1, size: -1, key, .. } if key == "a");
}

#[test]
fn dims_product_overflows() {
    let (_d, p) = with_entry("a", |e| {
        let d = |size| Dim {
            size,
            name: String::new(),
        };
        e.shape.as_mut().unwrap().dim = vec![d(1 << 62), d(1 << 62), d(0)];
    });
    assert_err!(open_err(&p), Error::ShapeOverflow { .. });
}

#[test]
fn element_bytes_overflow() {
    // 2^62 elements fit in u64, × 4 bytes do not.
    let (_d, p) = with_entry("a", |e| {
        e.shape.as_mut().unwrap().dim = vec![Dim {
            size: 1 << 62,
            name: String::new(),
        }]
    });
    assert_err!(open_err(&p), Error::ShapeOverflow { .. });
}

#[test]
fn unknown_rank() {
    let (_d, p) = with_entry("a", |e| e.shape.as_mut().unwrap().unknown_rank = true);
    assert_err!(open_err(&p), Error::EntryInvalid { .. });
}

#[test]
fn unknown_dtype() {
    let (_d, p) = with_entry("a", |e| e.dtype = 77);
    assert_err!(open_err(&p), Error::DTypeUnknown { code: 77, key, .. } if key == "a");
}

#[test]
fn dtype_invalid_zero() {
    let (_d, p) = with_entry("a", |e| e.dtype = 0);
    assert_err!(open_err(&p), Error::DTypeUnknown { code: 0, .. });
}

#[test]
fn resource_dtype_is_listed_but_unreadable() {
    let (_d, p) = with_entry("b", |e| e.dtype = 20);
    assert_err!(read_err(&p, "b"), Error::DTypeUnreadable { .. });
}

#[test]
fn entry_crc_mismatch() {
    let (_d, p) = with_entry("a", |e| e.crc32c ^= 1);
    assert_err!(read_err(&p, "a"), Error::EntryCrcMismatch { key, .. } if key == "a");
    let b = Bundle::open(&p).unwrap();
    assert_err!(b.read_raw("a").unwrap_err(), Error::EntryCrcMismatch { .. });
    assert!(b.read("b").is_ok(), "other tensors still read");
}

#[test]
fn data_byte_flipped() {
    // Every byte of `a` (offset 0, 24 bytes), with a fixed pattern of bits.
    for i in 0..24 {
        let (_d, p) = valid();
        rewrite(&data_of(&p), |b| b[i] ^= 1 << (i % 8));
        assert_err!(
            read_err(&p, "a"),
            Error::EntryCrcMismatch { path, .. } if path.ends_with("model.ckpt.data-00000-of-00001")
        );
    }
}

#[test]
fn entry_proto_truncated() {
    let (_d, p) = bundle_with(|pairs| {
        let v = &mut pairs[1].1;
        v.truncate(v.len() - 2);
    });
    assert_err!(open_err(&p), Error::EntryInvalid { key, .. } if key == "a");
}

#[test]
fn entry_key_not_utf8() {
    let (_d, p) = bundle_with(|pairs| pairs[3].0 = b"z\xff".to_vec());
    assert_err!(open_err(&p), Error::EntryInvalid { .. });
}

#[test]
fn shard_short_by_one_byte() {
    let (_d, p) = valid();
    rewrite(&data_of(&p), |b| {
        b.pop();
    });
    assert_err!(open_err(&p), Error::OffsetPastShardEnd { key, .. } if key == "s");
}

#[test]
fn missing_shard() {
    let (_d, p) = valid();
    std::fs::remove_file(data_of(&p)).unwrap();
    assert_err!(open_err(&p), Error::ShardMissing { num_shards: 1, .. });
}

// ---- Strings -----------------------------------------------------------------

#[test]
fn string_length_varint_flipped() {
    let (_d, p) = valid();
    let off = {
        let pairs = valid_pairs();
        decode_entry(&pairs, b"s").offset as usize
    };
    rewrite(&data_of(&p), |b| b[off] ^= 0x01);
    assert_err!(
        read_err(&p, "s"),
        Error::StringFramingInvalid { what, key, .. } if key == "s" && what.contains("length checksum")
    );
}

#[test]
fn string_size_smaller_than_its_lengths() {
    let (_d, p) = with_entry("s", |e| e.size = 6);
    assert_err!(open_err(&p), Error::SizeMismatch { expected: 7, .. });
}

#[test]
fn string_size_larger_than_its_framing() {
    let (_d, p) = with_entry("s", |e| e.size -= 1);
    assert_err!(read_err(&p, "s"), Error::StringFramingInvalid { what, .. } if what.contains("add up to"));
}

#[test]
fn string_byte_flipped() {
    let (_d, p) = valid();
    let e = decode_entry(&valid_pairs(), b"s");
    rewrite(&data_of(&p), |b| {
        b[(e.offset + e.size - 1) as usize] ^= 0x20
    });
    assert_err!(read_err(&p, "s"), Error::EntryCrcMismatch { .. });
}

#[test]
fn string_length_2_pow_40_with_valid_length_crc() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m");
    // One string claiming 2^40 bytes; its length checksum is correct (the
    // length exceeds u32, so it is hashed as 8 bytes).
    let len = 1u64 << 40;
    let mut data = Vec::new();
    let mut v = len;
    while v >= 0x80 {
        data.push(v as u8 | 0x80);
        v >>= 7;
    }
    data.push(v as u8);
    data.extend_from_slice(&mask(crc32c::crc32c(&len.to_le_bytes())).to_le_bytes());
    data.extend_from_slice(b"xyz");
    let e = BundleEntryProto {
        dtype: 7,
        shape: Some(TensorShapeProto {
            dim: vec![Dim {
                size: 1,
                name: String::new(),
            }],
            unknown_rank: false,
        }),
        shard_id: 0,
        offset: 0,
        size: data.len() as i64,
        crc32c: mask(crc32c::crc32c(&data)),
        slices: vec![],
    };
    let header = BundleHeaderProto {
        num_shards: 1,
        ..Default::default()
    };
    let mut t = TableBuilder::new(1 << 18, 16);
    t.add(b"", &header.encode_to_vec());
    t.add(b"s", &e.encode_to_vec());
    std::fs::write(index_of(&p), t.finish()).unwrap();
    std::fs::write(data_of(&p), &data).unwrap();
    assert_err!(read_err(&p, "s"), Error::StringFramingInvalid { what, .. } if what.contains("add up to 1099511627776"));
}

#[test]
fn string_count_larger_than_size() {
    // 2^40 strings in a 15-byte entry: rejected from the sizes alone.
    let (_d, p) = with_entry("s", |e| e.shape.as_mut().unwrap().dim[0].size = 1 << 40);
    assert_err!(open_err(&p), Error::SizeMismatch { .. });
}

// ---- Partitioned tensors -----------------------------------------------------

fn ext(start: i64, length: i64) -> Extent {
    Extent {
        start,
        length: Some(length),
    }
}

fn rows(r0: usize, n: usize) -> Tensor {
    let v: Vec<f32> = (r0 * 2..(r0 + n) * 2).map(|x| x as f32).collect();
    f32s(&[n as u64, 2], &v)
}

/// `w` [4, 2] f32 in `slices` (row ranges), then `edit` on the pairs.
fn partitioned(
    slices: &[(usize, usize)],
    edit: impl FnOnce(&mut Pairs),
) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("p");
    let mut w = BundleWriter::create(&prefix, WriteOptions::default()).unwrap();
    for &(r0, n) in slices {
        w.add_slice(
            "w",
            &[4, 2],
            &[ext(r0 as i64, n as i64), Extent::FULL],
            &rows(r0, n),
        )
        .unwrap();
    }
    w.finish_with(edit).unwrap();
    (dir, prefix)
}

/// Changes the slices of the full entry `w`.
fn edit_slices(pairs: &mut Pairs, f: impl FnOnce(&mut BundleEntryProto)) {
    let (_, v) = pairs.iter_mut().find(|(k, _)| k == b"w").unwrap();
    let mut e = BundleEntryProto::decode(&v[..]).unwrap();
    f(&mut e);
    *v = e.encode_to_vec();
}

fn slice_what(e: Error) -> String {
    match e {
        Error::SliceInvalid { what, key, .. } if key == "w" => what,
        other => panic!("unexpected error: {other:?}"),
    }
}

#[test]
fn partition_valid() {
    let (_d, p) = partitioned(&[(0, 1), (1, 3)], |_| {});
    let b = Bundle::open(&p).unwrap();
    assert_eq!(b.read("w").unwrap(), rows(0, 4));
}

#[test]
fn overlapping_slices() {
    let (_d, p) = partitioned(&[(0, 3), (2, 2)], |_| {});
    assert!(slice_what(open_err(&p)).contains("overlap"));
}

#[test]
fn slice_beyond_shape() {
    let (_d, p) = partitioned(&[(0, 2), (2, 2)], |pairs| {
        edit_slices(pairs, |e| e.shape.as_mut().unwrap().dim[0].size = 3)
    });
    assert!(slice_what(open_err(&p)).contains("past its size 3"));
}

#[test]
fn negative_slice_start() {
    let (_d, p) = partitioned(&[(0, 2), (2, 2)], |pairs| {
        edit_slices(pairs, |e| e.slices[0].extent[0].start = -1)
    });
    assert!(slice_what(open_err(&p)).contains("starts at -1"));
}

#[test]
fn slice_rank_differs_from_tensor_rank() {
    let (_d, p) = partitioned(&[(0, 2), (2, 2)], |pairs| {
        edit_slices(pairs, |e| {
            e.slices[1].extent.pop();
        })
    });
    assert!(slice_what(open_err(&p)).contains("has rank 1, the tensor has rank 2"));
}

#[test]
fn partition_missing_a_slice() {
    let (_d, p) = partitioned(&[(0, 2), (3, 1)], |_| {});
    assert!(slice_what(open_err(&p)).contains("cover 6 of the 8"));
}

#[test]
fn slice_entry_missing() {
    let key = encode_slice_key("w", &[ext(2, 2), Extent::FULL]);
    let (_d, p) = partitioned(&[(0, 2), (2, 2)], |pairs| pairs.retain(|(k, _)| *k != key));
    assert!(slice_what(open_err(&p)).contains("has no entry"));
}

#[test]
fn slice_entry_with_other_dtype() {
    let key = encode_slice_key("w", &[ext(2, 2), Extent::FULL]);
    let (_d, p) = partitioned(&[(0, 2), (2, 2)], |pairs| {
        let (_, v) = pairs.iter_mut().find(|(k, _)| *k == key).unwrap();
        let mut e = BundleEntryProto::decode(&v[..]).unwrap();
        e.dtype = DType::I32.tf_code();
        *v = e.encode_to_vec();
    });
    assert!(slice_what(open_err(&p)).contains("dtype int32"));
}

#[test]
fn slice_data_flipped() {
    let (_d, p) = partitioned(&[(0, 2), (2, 2)], |_| {});
    rewrite(
        &PathBuf::from(format!("{}.data-00000-of-00001", p.display())),
        |b| b[20] ^= 4,
    );
    assert_err!(read_err(&p, "w"), Error::EntryCrcMismatch { key, .. } if key.starts_with("w["));
}

#[test]
fn slices_reusing_the_same_bytes() {
    // 1000 slices of one row each, all pointing at the same 8 data bytes:
    // reading would allocate far more than the file holds.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("amp");
    let row = f32s(&[1, 2], &[1.0, 2.0]);
    let bytes = row.bytes().unwrap().to_vec();
    let mut pairs: Pairs = vec![(
        Vec::new(),
        BundleHeaderProto {
            num_shards: 1,
            ..Default::default()
        }
        .encode_to_vec(),
    )];
    let dims = |r: i64| {
        Some(TensorShapeProto {
            dim: vec![
                Dim {
                    size: r,
                    name: String::new(),
                },
                Dim {
                    size: 2,
                    name: String::new(),
                },
            ],
            unknown_rank: false,
        })
    };
    let n = 1000;
    let mut slices = Vec::new();
    for r in 0..n {
        let extents = [ext(r, 1), Extent::FULL];
        slices.push(tfbn::testing::bundle::slices::extents_to_proto(&extents));
        let e = BundleEntryProto {
            dtype: 1,
            shape: dims(1),
            offset: 0,
            size: 8,
            crc32c: mask(crc32c::crc32c(&bytes)),
            ..Default::default()
        };
        pairs.push((encode_slice_key("w", &extents), e.encode_to_vec()));
    }
    let full = BundleEntryProto {
        dtype: 1,
        shape: dims(n),
        slices,
        ..Default::default()
    };
    pairs.push((b"w".to_vec(), full.encode_to_vec()));
    pairs.sort();
    let mut t = TableBuilder::new(1 << 18, 16);
    for (k, v) in &pairs {
        t.add(k, v);
    }
    std::fs::write(index_of(&p), t.finish()).unwrap();
    std::fs::write(data_of(&p), &bytes).unwrap();
    assert_err!(
        open_err(&p),
        Error::TensorTooLarge {
            bytes: 8000,
            limit: 8,
            ..
        }
    );
}

// ---- Paths -------------------------------------------------------------------

#[test]
fn checkpoint_file_pointing_at_foreign_absolute_path() {
    let (d, p) = valid();
    std::fs::write(
        d.path().join("checkpoint"),
        "model_checkpoint_path: \"/home/someone/musicnn/model.ckpt\"\nall_model_checkpoint_paths: \"/home/someone/musicnn/model.ckpt\"\n",
    )
    .unwrap();
    let b = Bundle::open(d.path()).unwrap();
    assert_eq!(b.prefix(), p.as_path());
    assert!(b.read("a").is_ok());
}

#[test]
fn checkpoint_file_pointing_at_windows_path() {
    let (d, p) = valid();
    std::fs::write(
        d.path().join("checkpoint"),
        "model_checkpoint_path: \"C:\\\\models\\\\model.ckpt\"\n",
    )
    .unwrap();
    assert_eq!(Bundle::open(d.path()).unwrap().prefix(), p.as_path());
}

/// Failure class 1 of the wild corpus (musicnn): the `checkpoint` file names
/// the writer's folder, ending in `/`, and the bundle files beside it have an
/// empty basename (`.index`, `.data-00000-of-00001`).
#[test]
fn checkpoint_file_naming_a_foreign_folder_with_empty_basename() {
    let d = tempfile::tempdir().unwrap();
    let prefix = d.path().join("");
    write_v2(&prefix, &[("a", &f32s(&[2], &[1.0, 2.0]))]).unwrap();
    assert!(d.path().join(".index").is_file());
    std::fs::write(
        d.path().join("checkpoint"),
        "model_checkpoint_path: \"/home/writer/models/MSD_musicnn/\"\n",
    )
    .unwrap();
    let b = Bundle::open(d.path()).unwrap();
    assert_eq!(b.prefix(), prefix.as_path());
    assert!(b.read("a").is_ok());
    let note = b.resolution_note().expect("a note says what was read");
    assert!(note.contains("/home/writer/models/MSD_musicnn/"), "{note}");
    assert!(note.contains(".index"), "{note}");
    // The `checkpoint` file itself as the path behaves the same.
    assert_eq!(
        Bundle::open(d.path().join("checkpoint")).unwrap().prefix(),
        prefix.as_path()
    );
}

/// A `checkpoint` file that names an existing file which is not a
/// checkpoint (here: a file of secrets elsewhere) is never read: the
/// folder's own bundle is, and no byte of the other file reaches an error.
#[test]
fn fault_10_checkpoint_file_naming_an_unrelated_file_falls_back_without_reading_it() {
    let (d, p) = valid();
    let other = tempfile::tempdir().unwrap();
    let secret = other.path().join("secret");
    std::fs::write(
        &secret,
        b"TOPSECRET-TOPSECRET-TOPSECRET-TOPSECRET-TOPSECRET!",
    )
    .unwrap();
    std::fs::write(
        d.path().join("checkpoint"),
        format!("model_checkpoint_path: \"{}\"\n", secret.display()),
    )
    .unwrap();
    let b = Bundle::open(d.path()).unwrap();
    assert_eq!(b.prefix(), p.as_path());
    assert!(b.resolution_note().is_some());
    // With no bundle of its own, the folder is an error that quotes no byte
    // of the named file.
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(
        empty.path().join("checkpoint"),
        format!("model_checkpoint_path: \"{}\"\n", secret.display()),
    )
    .unwrap();
    let err = Bundle::open(empty.path()).unwrap_err().to_string();
    assert!(!err.contains("TOPSECRET") && !err.contains("5453"), "{err}");
    assert!(err.contains("not a checkpoint"), "{err}");
}

/// A `checkpoint` file without a `model_checkpoint_path` line still opens
/// the folder's one bundle, with a note.
#[test]
fn checkpoint_file_without_a_path_line_uses_the_folders_bundle() {
    let (d, p) = valid();
    std::fs::write(d.path().join("checkpoint"), "garbage\n").unwrap();
    let b = Bundle::open(d.path()).unwrap();
    assert_eq!(b.prefix(), p.as_path());
    assert!(b.resolution_note().is_some());
}
