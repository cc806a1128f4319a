//! Round trips through the writer and the reader, every path form, V1 and
//! partitioned tensors. Broken-input cases live in `tests/it/bad_input.rs`.

use std::path::Path;

use prost::Message;

use super::*;
use crate::proto::bundle::{SavedSlice, SavedSliceMeta, SavedTensorSliceMeta, SavedTensorSlices};
use crate::proto::tensor::{tensor_shape_proto, TensorProto, TensorShapeProto, VersionDef};
use crate::tensor::TensorData;

fn bytes_tensor(dtype: DType, shape: &[u64]) -> Tensor {
    let n: u64 = shape.iter().product();
    let w = dtype.byte_width().unwrap() as u64;
    let data = (0..n * w).map(|i| (i * 31 + 7) as u8).collect();
    Tensor {
        dtype,
        shape: shape.to_vec(),
        data: TensorData::Bytes(data),
    }
}

fn f32_tensor(shape: &[u64], values: impl IntoIterator<Item = f32>) -> Tensor {
    Tensor {
        dtype: DType::F32,
        shape: shape.to_vec(),
        data: TensorData::Bytes(values.into_iter().flat_map(f32::to_le_bytes).collect()),
    }
}

fn strings_tensor(shape: &[u64], s: &[&str]) -> Tensor {
    Tensor {
        dtype: DType::String,
        shape: shape.to_vec(),
        data: TensorData::Strings(s.iter().map(|s| s.as_bytes().to_vec()).collect()),
    }
}

const FIXED: &[DType] = &[
    DType::F32,
    DType::F64,
    DType::I32,
    DType::U8,
    DType::I16,
    DType::I8,
    DType::Complex64,
    DType::I64,
    DType::Bool,
    DType::QI8,
    DType::QU8,
    DType::QI32,
    DType::BF16,
    DType::QI16,
    DType::QU16,
    DType::U16,
    DType::Complex128,
    DType::F16,
    DType::U32,
    DType::U64,
    DType::F8E5M2,
    DType::F8E4M3FN,
    DType::F8E4M3FNUZ,
    DType::F8E4M3B11FNUZ,
    DType::F8E5M2FNUZ,
];

fn all_tensors() -> Vec<(String, Tensor)> {
    let mut v = Vec::new();
    for d in FIXED {
        v.push((format!("fixed/{}", d.name()), bytes_tensor(*d, &[2, 3])));
        v.push((format!("scalar/{}", d.name()), bytes_tensor(*d, &[])));
        v.push((format!("empty/{}", d.name()), bytes_tensor(*d, &[0, 4])));
    }
    v.push(("str/vec".into(), strings_tensor(&[3], &["ab", "", "héllo"])));
    v.push(("str/scalar".into(), strings_tensor(&[], &["x"])));
    v.push(("str/empty".into(), strings_tensor(&[0], &[])));
    v
}

fn round_trip(opts: &WriteOptions) {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("model.ckpt");
    let tensors = all_tensors();
    let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    write_v2_with(&prefix, &refs, opts).unwrap();
    let b = Bundle::open(&prefix).unwrap();
    assert_eq!(b.format(), BundleFormat::V2 { num_shards: 1 });
    assert_eq!(b.prefix(), prefix.as_path());
    assert_eq!(b.files().len(), 2);
    assert_eq!(b.entries().len(), tensors.len());
    let keys: Vec<&str> = b.entries().iter().map(|e| e.key.as_str()).collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted);
    for (k, t) in &tensors {
        let e = b.entry(k).unwrap();
        assert_eq!(
            (e.dtype, &e.shape, e.partitioned),
            (t.dtype, &t.shape, false),
            "{k}"
        );
        assert_eq!(e.num_bytes, t.bytes().map(|b| b.len() as u64), "{k}");
        assert_eq!(&b.read(k).unwrap(), t, "{k}");
        match t.bytes() {
            Some(bytes) => {
                let raw = b.read_raw(k).unwrap();
                assert_eq!(raw.as_ref(), bytes, "{k}");
                let borrowed = matches!(raw, std::borrow::Cow::Borrowed(_));
                assert_eq!(borrowed, opts.endianness == Endianness::Little, "{k}");
            }
            None => assert!(matches!(b.read_raw(k), Err(Error::DTypeUnreadable { .. }))),
        }
    }
    assert!(matches!(b.read("nope"), Err(Error::KeyNotFound { .. })));
    assert!(b.entry("nope").is_none());
}

#[test]
fn round_trip_every_dtype_little_endian() {
    round_trip(&WriteOptions::default());
}

#[test]
fn round_trip_big_endian_swaps_each_element() {
    round_trip(&WriteOptions {
        endianness: Endianness::Big,
        ..Default::default()
    });
}

#[test]
fn round_trip_many_small_blocks() {
    // Several data blocks and restarts every 3 entries exercise the index
    // walk and prefix compression across restart points.
    round_trip(&WriteOptions {
        block_size: 200,
        restart_interval: 3,
        ..Default::default()
    });
}

#[test]
fn big_endian_bytes_on_disk_are_swapped() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("be");
    let t = f32_tensor(&[2], [1.0, -2.0]);
    let c = Tensor {
        dtype: DType::Complex64,
        shape: vec![1],
        data: TensorData::Bytes([1.0f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect()),
    };
    let opts = WriteOptions {
        endianness: Endianness::Big,
        ..Default::default()
    };
    write_v2_with(&prefix, &[("c", &c), ("f", &t)], &opts).unwrap();
    let data = std::fs::read(dir.path().join("be.data-00000-of-00001")).unwrap();
    let mut want: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|v| v.to_be_bytes()).collect();
    want.extend([1.0f32, -2.0].iter().flat_map(|v| v.to_be_bytes()));
    assert_eq!(data, want);
    let b = Bundle::open(&prefix).unwrap();
    assert_eq!(b.read("f").unwrap(), t);
    assert_eq!(b.read("c").unwrap(), c);
}

#[test]
fn large_tensors_read_back_in_both_endiannesses() {
    // Several copy chunks (512 KiB) and a huge-page-advised output buffer;
    // big-endian elements are swapped chunk by chunk.
    let dir = tempfile::tempdir().unwrap();
    let n = (5 << 20) / 8 + 3;
    let f = Tensor {
        dtype: DType::F64,
        shape: vec![n],
        data: TensorData::Bytes(
            (0..n)
                .flat_map(|i| (i as f64 * 0.5).to_le_bytes())
                .collect(),
        ),
    };
    let c = Tensor {
        dtype: DType::Complex64,
        shape: vec![n],
        data: TensorData::Bytes((0..2 * n).flat_map(|i| (i as f32).to_le_bytes()).collect()),
    };
    for endianness in [Endianness::Little, Endianness::Big] {
        let prefix = dir.path().join(format!("{endianness:?}"));
        let opts = WriteOptions {
            endianness,
            ..Default::default()
        };
        write_v2_with(&prefix, &[("c", &c), ("f", &f)], &opts).unwrap();
        let b = Bundle::open(&prefix).unwrap();
        assert_eq!(b.read("f").unwrap(), f);
        assert_eq!(b.read("c").unwrap(), c);
        assert_eq!(b.read_raw("f").unwrap().as_ref(), f.bytes().unwrap());
    }
}

#[test]
fn spec_entry_example_decodes() {
    // docs/formats.md#bundle-header-and-entries: float, shape [2],
    // offset 8, size 8, crc 0xFF697889.
    let bytes = [
        0x08, 0x01, 0x12, 0x04, 0x12, 0x02, 0x08, 0x02, 0x20, 0x08, 0x28, 0x08, 0x35, 0x89, 0x78,
        0x69, 0xFF,
    ];
    let e = crate::proto::bundle::BundleEntryProto::decode(&bytes[..]).unwrap();
    assert_eq!(
        (e.dtype, e.offset, e.size, e.crc32c),
        (1, 8, 8, 0xFF69_7889)
    );
    assert_eq!(e.shape.unwrap().dim[0].size, 2);
    let h =
        crate::proto::bundle::BundleHeaderProto::decode(&[0x08, 0x01, 0x1A, 0x02, 0x08, 0x01][..])
            .unwrap();
    assert_eq!(
        (h.num_shards, h.endianness, h.version.unwrap().producer),
        (1, 0, 1)
    );
}

#[test]
fn empty_block_matches_the_spec() {
    assert_eq!(
        write::BlockBuilder::new(16).finish(),
        [0, 0, 0, 0, 1, 0, 0, 0]
    );
}

#[test]
fn writer_output_starts_like_tf() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("m");
    write_v2(&prefix, &[("a", &f32_tensor(&[1], [1.0]))]).unwrap();
    let index = std::fs::read(dir.path().join("m.index")).unwrap();
    // First entry: shared 0, key length 0, value length 6, the header TF writes.
    assert_eq!(
        &index[..9],
        &[0x00, 0x00, 0x06, 0x08, 0x01, 0x1A, 0x02, 0x08, 0x01]
    );
    assert_eq!(&index[index.len() - 8..], &table::MAGIC.to_le_bytes());
}

#[test]
fn writer_rejects_bad_keys_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("m");
    let t = f32_tensor(&[1], [1.0]);
    assert!(matches!(
        write_v2(&prefix, &[("", &t)]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        write_v2(&prefix, &[("a", &t), ("a", &t)]),
        Err(Error::InvalidArgument(_))
    ));
    let bad = Tensor {
        dtype: DType::F64,
        shape: vec![2],
        data: TensorData::Bytes(vec![0; 3]),
    };
    assert!(matches!(
        write_v2(&prefix, &[("a", &bad)]),
        Err(Error::TensorMismatch { .. })
    ));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

fn ext(start: i64, length: i64) -> Extent {
    Extent {
        start,
        length: Some(length),
    }
}

#[test]
fn partitioned_tensors_reassemble_row_major() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("p");
    // A [4, 3] f32 tensor with values 0..12, split 2 ways along each axis.
    let full: Vec<f32> = (0..12).map(|v| v as f32).collect();
    let piece = |r0: usize, rn: usize, c0: usize, cn: usize| {
        let vals: Vec<f32> = (r0..r0 + rn)
            .flat_map(|r| (c0..c0 + cn).map(move |c| (r * 3 + c) as f32))
            .collect();
        f32_tensor(&[rn as u64, cn as u64], vals)
    };
    let mut w = BundleWriter::create(&prefix, WriteOptions::default()).unwrap();
    w.add("plain", &f32_tensor(&[1], [9.0])).unwrap();
    w.add_slice("w", &[4, 3], &[ext(2, 2), Extent::FULL], &piece(2, 2, 0, 3))
        .unwrap();
    w.add_slice("w", &[4, 3], &[ext(0, 2), ext(0, 1)], &piece(0, 2, 0, 1))
        .unwrap();
    w.add_slice("w", &[4, 3], &[ext(0, 2), ext(1, 2)], &piece(0, 2, 1, 2))
        .unwrap();
    let s = |v: &[&str]| strings_tensor(&[v.len() as u64], v);
    w.add_slice("s", &[3], &[ext(0, 1)], &s(&["a"])).unwrap();
    w.add_slice("s", &[3], &[ext(1, 2)], &s(&["bb", "ccc"]))
        .unwrap();
    w.finish().unwrap();

    let b = Bundle::open(&prefix).unwrap();
    let keys: Vec<&str> = b.entries().iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["plain", "s", "w"], "slice keys are not listed");
    let e = b.entry("w").unwrap();
    assert!(e.partitioned);
    assert_eq!(
        (e.shape.as_slice(), e.num_bytes),
        (&[4u64, 3][..], Some(48))
    );
    assert_eq!(
        b.read("w").unwrap(),
        f32_tensor(&[4, 3], full.iter().copied())
    );
    let raw = b.read_raw("w").unwrap();
    assert!(matches!(raw, std::borrow::Cow::Owned(_)));
    assert_eq!(
        b.read("s").unwrap(),
        strings_tensor(&[3], &["a", "bb", "ccc"])
    );
}

// ---- Path forms --------------------------------------------------------

fn write_one(prefix: &Path) -> Tensor {
    let t = f32_tensor(&[2], [1.5, 2.5]);
    write_v2(prefix, &[("v", &t)]).unwrap();
    t
}

#[test]
fn every_v2_path_form_opens() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("model.ckpt-7");
    let t = write_one(&prefix);
    let data = dir.path().join("model.ckpt-7.data-00000-of-00001");
    for p in [
        prefix.clone(),
        dir.path().join("model.ckpt-7.index"),
        data.clone(),
        dir.path().to_path_buf(), // the only .index in the folder
    ] {
        let b = Bundle::open(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(b.prefix(), prefix.as_path(), "{}", p.display());
        assert_eq!(b.files()[1], data);
        assert_eq!(b.read("v").unwrap(), t);
    }
    std::fs::write(
        dir.path().join("checkpoint"),
        "model_checkpoint_path: \"model.ckpt-7\"\nall_model_checkpoint_paths: \"model.ckpt-7\"\n",
    )
    .unwrap();
    write_one(&dir.path().join("other"));
    assert_eq!(Bundle::open(dir.path()).unwrap().prefix(), prefix.as_path());
    assert_eq!(
        Bundle::open(dir.path().join("checkpoint"))
            .unwrap()
            .prefix(),
        prefix.as_path()
    );
}

#[test]
fn checkpoint_file_with_absolute_path_inside_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("ckpt-1");
    write_one(&prefix);
    std::fs::write(
        dir.path().join("checkpoint"),
        format!(
            "model_checkpoint_path: {:?}\n",
            prefix.display().to_string()
        ),
    )
    .unwrap();
    assert_eq!(Bundle::open(dir.path()).unwrap().prefix(), prefix.as_path());
}

#[test]
fn folder_with_empty_basename() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("");
    let t = write_one(&prefix);
    assert!(dir.path().join(".index").is_file());
    assert!(dir.path().join(".data-00000-of-00001").is_file());
    let b = Bundle::open(dir.path()).unwrap();
    assert_eq!(b.read("v").unwrap(), t);
    assert_eq!(
        Bundle::open(dir.path().join(".index"))
            .unwrap()
            .read("v")
            .unwrap(),
        t
    );
}

#[test]
fn unknown_paths_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Bundle::open(dir.path()),
        Err(Error::PathNotRecognized { .. })
    ));
    assert!(matches!(
        Bundle::open(dir.path().join("nothing")),
        Err(Error::PathNotRecognized { .. })
    ));
    std::fs::write(
        dir.path().join("checkpoint"),
        "model_checkpoint_path: \"/elsewhere/gone\"\n",
    )
    .unwrap();
    assert!(matches!(
        Bundle::open(dir.path()),
        Err(Error::PathNotRecognized { .. })
    ));
    std::fs::write(dir.path().join("checkpoint"), "garbage").unwrap();
    assert!(matches!(
        Bundle::open(dir.path()),
        Err(Error::PathNotRecognized { .. })
    ));
    let not_table = dir.path().join("notes.txt");
    std::fs::write(&not_table, "hello").unwrap();
    assert!(matches!(
        Bundle::open(&not_table),
        Err(Error::TableTooShort { .. })
    ));
}

// ---- V1 ------------------------------------------------------------------

fn shape_proto(shape: &[u64]) -> TensorShapeProto {
    TensorShapeProto {
        dim: shape
            .iter()
            .map(|&d| tensor_shape_proto::Dim {
                size: d as i64,
                name: String::new(),
            })
            .collect(),
        unknown_rank: false,
    }
}

/// One V1 tensor: name, dtype, shape, and its slices with their values.
struct V1Tensor {
    name: &'static str,
    dtype: DType,
    shape: Vec<u64>,
    slices: Vec<(Vec<Extent>, TensorProto)>,
}

/// Writes a V1 file the way TF's TensorSliceWriter lays it out.
fn write_v1(path: &Path, tensors: &[V1Tensor]) {
    let meta = SavedTensorSlices {
        meta: Some(SavedTensorSliceMeta {
            tensor: tensors
                .iter()
                .map(|t| SavedSliceMeta {
                    name: t.name.to_string(),
                    shape: Some(shape_proto(&t.shape)),
                    r#type: t.dtype.tf_code(),
                    slice: t
                        .slices
                        .iter()
                        .map(|(e, _)| slices::extents_to_proto(e))
                        .collect(),
                })
                .collect(),
            versions: Some(VersionDef {
                producer: 1,
                ..Default::default()
            }),
        }),
        data: None,
    };
    let mut pairs = vec![(Vec::new(), meta.encode_to_vec())];
    for t in tensors {
        for (e, values) in &t.slices {
            let v = SavedTensorSlices {
                meta: None,
                data: Some(SavedSlice {
                    name: t.name.to_string(),
                    slice: Some(slices::extents_to_proto(e)),
                    data: Some(values.clone()),
                }),
            };
            pairs.push((encode_slice_key(t.name, e), v.encode_to_vec()));
        }
    }
    pairs.sort();
    let mut table = write::TableBuilder::new(256 * 1024, 16);
    for (k, v) in &pairs {
        table.add(k, v);
    }
    std::fs::write(path, table.finish()).unwrap();
}

fn v1_tensors() -> Vec<V1Tensor> {
    let full2 = vec![Extent::FULL, Extent::FULL];
    vec![
        V1Tensor {
            name: "w",
            dtype: DType::F32,
            shape: vec![2, 2],
            slices: vec![(
                full2.clone(),
                TensorProto {
                    float_val: vec![1.0, 2.0, 3.0, 4.0],
                    ..Default::default()
                },
            )],
        },
        V1Tensor {
            name: "step",
            dtype: DType::I64,
            shape: vec![],
            slices: vec![(
                vec![],
                TensorProto {
                    int64_val: vec![-42],
                    ..Default::default()
                },
            )],
        },
        V1Tensor {
            name: "h",
            dtype: DType::F16,
            shape: vec![2],
            slices: vec![(
                vec![Extent::FULL],
                TensorProto {
                    half_val: vec![0x3c00, 0xc000],
                    ..Default::default()
                },
            )],
        },
        V1Tensor {
            name: "names",
            dtype: DType::String,
            shape: vec![2],
            slices: vec![(
                vec![Extent::FULL],
                TensorProto {
                    string_val: vec![b"a".to_vec(), b"bc".to_vec()],
                    ..Default::default()
                },
            )],
        },
        V1Tensor {
            name: "i8",
            dtype: DType::I8,
            shape: vec![3],
            slices: vec![(
                vec![Extent::FULL],
                TensorProto {
                    int_val: vec![-1, 0, 127],
                    ..Default::default()
                },
            )],
        },
        V1Tensor {
            name: "part",
            dtype: DType::F64,
            shape: vec![3, 2],
            slices: vec![
                (
                    vec![ext(0, 1), Extent::FULL],
                    TensorProto {
                        double_val: vec![0.0, 1.0],
                        ..Default::default()
                    },
                ),
                (
                    vec![ext(1, 2), ext(0, 2)],
                    TensorProto {
                        double_val: vec![2.0, 3.0, 4.0, 5.0],
                        ..Default::default()
                    },
                ),
            ],
        },
    ]
}

#[test]
fn v1_file_reads_every_value_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("legacy.ckpt");
    write_v1(&path, &v1_tensors());
    let b = Bundle::open(&path).unwrap();
    assert_eq!(b.format(), BundleFormat::V1 { num_files: 1 });
    assert_eq!(b.prefix(), path.as_path());
    let keys: Vec<&str> = b.entries().iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["h", "i8", "names", "part", "step", "w"]);
    assert_eq!(
        b.read("w").unwrap(),
        f32_tensor(&[2, 2], [1.0, 2.0, 3.0, 4.0])
    );
    assert_eq!(
        b.read_raw("step").unwrap().as_ref(),
        &(-42i64).to_le_bytes()
    );
    assert_eq!(b.read_raw("h").unwrap().as_ref(), &[0x00, 0x3c, 0x00, 0xc0]);
    assert_eq!(b.read("names").unwrap(), strings_tensor(&[2], &["a", "bc"]));
    assert_eq!(b.read_raw("i8").unwrap().as_ref(), &[0xff, 0x00, 0x7f]);
    let part = b.read("part").unwrap();
    assert!(b.entry("part").unwrap().partitioned);
    assert_eq!(part.to_f64_vec().unwrap(), [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
}

#[test]
fn v1_value_count_and_range_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.ckpt");
    let mut t = v1_tensors();
    t[0].slices[0].1.float_val.pop();
    t[4].slices[0].1.int_val[2] = 128;
    write_v1(&path, &t);
    let b = Bundle::open(&path).unwrap();
    assert!(matches!(
        b.read("w"),
        Err(Error::SizeMismatch {
            size: 3,
            expected: 4,
            ..
        })
    ));
    assert!(matches!(b.read("i8"), Err(Error::EntryInvalid { .. })));
}

#[test]
fn v1_sharded_files_merge() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = v1_tensors();
    let part = t.pop().unwrap();
    let (first, second) = part.slices.split_at(1);
    let shard = |slices: &[(Vec<Extent>, TensorProto)]| V1Tensor {
        name: "part",
        dtype: DType::F64,
        shape: vec![3, 2],
        slices: slices.to_vec(),
    };
    write_v1(&dir.path().join("legacy-00000-of-00002"), &[shard(first)]);
    t.push(shard(second));
    write_v1(&dir.path().join("legacy-00001-of-00002"), &t);
    for p in [
        dir.path().join("legacy-00001-of-00002"),
        dir.path().join("legacy"),
    ] {
        let b = Bundle::open(&p).unwrap();
        assert_eq!(b.format(), BundleFormat::V1 { num_files: 2 });
        assert_eq!(b.prefix(), dir.path().join("legacy"));
        assert_eq!(
            b.read("part").unwrap().to_f64_vec().unwrap(),
            [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
        );
        assert_eq!(
            b.read("w").unwrap(),
            f32_tensor(&[2, 2], [1.0, 2.0, 3.0, 4.0])
        );
    }
    std::fs::remove_file(dir.path().join("legacy-00000-of-00002")).unwrap();
    assert!(matches!(
        Bundle::open(dir.path().join("legacy-00001-of-00002")),
        Err(Error::ShardMissing { .. })
    ));
}

#[test]
fn v1_missing_slice_and_overlap_are_slice_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1");
    let mut t = v1_tensors();
    t[5].slices.pop();
    write_v1(&path, &t);
    assert!(matches!(
        Bundle::open(&path),
        Err(Error::SliceInvalid { .. })
    ));
}

#[test]
fn bundle_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Bundle>();
}
