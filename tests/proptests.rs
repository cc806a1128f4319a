//! Property tests: what tfbn writes, tfbn reads back bit for bit, over
//! random dtypes, shapes, key sets, byte orders, block layouts and
//! row partitions (bundles), and random arrays (`.npy`).

use proptest::prelude::*;
use tfbn::bundle::{Bundle, BundleWriter, Endianness, Extent, WriteOptions};
use tfbn::npy::{read_npy, write_npy, NpyArray};
use tfbn::{DType, Tensor, TensorData};

const FIXED: [DType; 10] = [
    DType::F32,
    DType::F64,
    DType::F16,
    DType::BF16,
    DType::I8,
    DType::I16,
    DType::I32,
    DType::I64,
    DType::U8,
    DType::Bool,
];

/// A tensor of any fixed-width dtype (any bit patterns, NaNs included;
/// bools 0/1) or of strings, with up to 3 dimensions of up to 4.
fn tensor() -> impl Strategy<Value = Tensor> {
    let shape = prop::collection::vec(0u64..4, 0..3);
    (prop::sample::select(FIXED.to_vec()), shape, any::<bool>()).prop_flat_map(
        |(dtype, shape, strings)| {
            let n = shape.iter().product::<u64>() as usize;
            let width = dtype.byte_width().unwrap_or(1);
            if strings {
                prop::collection::vec(prop::collection::vec(any::<u8>(), 0..6), n)
                    .prop_map(move |v| Tensor {
                        dtype: DType::String,
                        shape: shape.clone(),
                        data: TensorData::Strings(v),
                    })
                    .boxed()
            } else {
                prop::collection::vec(any::<u8>(), n * width)
                    .prop_map(move |mut bytes| {
                        if dtype == DType::Bool {
                            bytes.iter_mut().for_each(|b| *b &= 1);
                        }
                        Tensor {
                            dtype,
                            shape: shape.clone(),
                            data: TensorData::Bytes(bytes),
                        }
                    })
                    .boxed()
            }
        },
    )
}

fn options() -> impl Strategy<Value = WriteOptions> {
    (any::<bool>(), 16usize..2048, 1usize..17).prop_map(|(big, block_size, restart_interval)| {
        WriteOptions {
            endianness: if big {
                Endianness::Big
            } else {
                Endianness::Little
            },
            block_size,
            restart_interval,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Any key set of any tensors, in either byte order and any block
    /// layout: the reader lists exactly the keys and returns every tensor
    /// as written (little-endian).
    #[test]
    fn bundle_write_then_read_round_trips(
        tensors in prop::collection::btree_map("[a-z][a-z0-9/_.]{0,12}", tensor(), 1..12),
        opts in options(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("ckpt");
        let mut w = BundleWriter::create(&prefix, opts).unwrap();
        for (k, t) in &tensors {
            w.add(k, t).unwrap();
        }
        w.finish().unwrap();
        let b = Bundle::open(&prefix).unwrap();
        let keys: Vec<&str> = b.entries().iter().map(|e| e.key.as_str()).collect();
        prop_assert_eq!(keys, tensors.keys().map(String::as_str).collect::<Vec<_>>());
        for (k, t) in &tensors {
            prop_assert_eq!(&b.read(k).unwrap(), t);
        }
    }

    /// A 2-D float32 variable saved as row slices of random heights (a TF1
    /// partitioned variable) reads back reassembled.
    #[test]
    fn partitioned_rows_reassemble(
        rows in prop::collection::vec(1u64..4, 1..5),
        cols in 1u64..5,
        seed in any::<u32>(),
    ) {
        let total: u64 = rows.iter().sum();
        let values: Vec<f32> = (0..total * cols)
            .map(|i| (i as u32 ^ seed) as f32 * 0.5)
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("ckpt");
        let mut w = BundleWriter::create(&prefix, WriteOptions::default()).unwrap();
        let mut start = 0u64;
        for &h in &rows {
            let part: Vec<u8> = values[(start * cols) as usize..((start + h) * cols) as usize]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            let slice = Tensor { dtype: DType::F32, shape: vec![h, cols], data: TensorData::Bytes(part) };
            let extents = [Extent { start: start as i64, length: Some(h as i64) }, Extent::FULL];
            w.add_slice("w", &[total, cols], &extents, &slice).unwrap();
            start += h;
        }
        w.finish().unwrap();
        let t = Bundle::open(&prefix).unwrap().read("w").unwrap();
        prop_assert_eq!(&t.shape, &vec![total, cols]);
        let want: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        prop_assert_eq!(t.bytes().unwrap(), want.as_slice());
    }

    /// `.npy` files tfbn writes read back with the same shape and bits.
    #[test]
    fn npy_write_then_read_round_trips(
        shape in prop::collection::vec(0usize..5, 0..4),
        bits in any::<u64>(),
        f64s in any::<bool>(),
    ) {
        let n: usize = shape.iter().product();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.npy");
        let a = if f64s {
            let v: Vec<f64> = (0..n as u64).map(|i| f64::from_bits(bits.rotate_left(i as u32))).collect();
            NpyArray::F64(ndarray::ArrayD::from_shape_vec(shape.clone(), v).unwrap())
        } else {
            let v: Vec<f32> = (0..n as u32).map(|i| f32::from_bits((bits as u32).rotate_left(i))).collect();
            NpyArray::F32(ndarray::ArrayD::from_shape_vec(shape.clone(), v).unwrap())
        };
        write_npy(&path, &a).unwrap();
        let back = read_npy(&path).unwrap();
        match (&a, &back) {
            (NpyArray::F32(x), NpyArray::F32(y)) => {
                prop_assert_eq!(x.shape(), y.shape());
                prop_assert!(x.iter().zip(y.iter()).all(|(p, q)| p.to_bits() == q.to_bits()));
            }
            (NpyArray::F64(x), NpyArray::F64(y)) => {
                prop_assert_eq!(x.shape(), y.shape());
                prop_assert!(x.iter().zip(y.iter()).all(|(p, q)| p.to_bits() == q.to_bits()));
            }
            _ => prop_assert!(false, "dtype changed"),
        }
    }
}
