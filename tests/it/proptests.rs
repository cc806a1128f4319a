//! Property tests: what tfbn writes, tfbn reads back bit for bit, over
//! random dtypes, shapes, key sets, byte orders, block layouts and
//! row partitions (bundles), and random arrays (`.npy`); safetensors
//! exports read back with the `safetensors` crate under every preset's
//! names and every `--dtype`, with casts checked against `half`; and
//! OrderedCode slice keys decode to what was encoded, keep their order,
//! and never decode two ways.

use std::collections::BTreeMap;

use half::{bf16, f16};
use proptest::prelude::*;
use tfbn::export::{DtypeCast, ExportOptions, Preset};
use tfbn::source::Source;
use tfbn::testing::bundle::slices::{
    decode_signed, decode_unsigned, encode_signed, encode_unsigned,
};
use tfbn::testing::bundle::{
    decode_slice_key, encode_slice_key, Bundle, BundleWriter, Endianness, Extent, WriteOptions,
};
use tfbn::testing::npy::{read_npy, write_npy, NpyArray};
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

// ---- safetensors export -------------------------------------------------

const FLOATS: [DType; 4] = [DType::F32, DType::F64, DType::F16, DType::BF16];
const CASTS: [DtypeCast; 5] = DtypeCast::ALL;

/// One little-endian float element of `from` as an exact f64.
fn element(from: DType, b: &[u8]) -> f64 {
    match from {
        DType::F64 => f64::from_le_bytes(b.try_into().unwrap()),
        DType::F32 => f32::from_le_bytes(b.try_into().unwrap()) as f64,
        DType::F16 => f16::from_le_bytes(b.try_into().unwrap()).to_f64(),
        DType::BF16 => bf16::from_le_bytes(b.try_into().unwrap()).to_f64(),
        _ => unreachable!("not a float"),
    }
}

/// Checks that `got` is `stored` (type `from`) converted to `to` the way
/// `half` and Rust's `as` convert, rounding once from the exact value (to
/// nearest, ties to even). NaN must stay NaN (its payload is not promised).
fn assert_cast(name: &str, from: DType, to: DType, stored: &[u8], got: &[u8]) {
    if from == to {
        assert_eq!(stored, got, "{name}: {from} written as stored");
        return;
    }
    let (wf, wt) = (from.byte_width().unwrap(), to.byte_width().unwrap());
    assert_eq!(got.len() / wt, stored.len() / wf, "{name}: element count");
    for (i, (s, g)) in stored
        .chunks_exact(wf)
        .zip(got.chunks_exact(wt))
        .enumerate()
    {
        let v = element(from, s);
        let want: Vec<u8> = match to {
            DType::F64 => v.to_le_bytes().to_vec(),
            DType::F32 => (v as f32).to_le_bytes().to_vec(),
            DType::F16 => f16::from_f64(v).to_le_bytes().to_vec(),
            DType::BF16 => bf16::from_f64(v).to_le_bytes().to_vec(),
            _ => unreachable!(),
        };
        if v.is_nan() {
            assert!(element(to, g).is_nan(), "{name}[{i}]: NaN became {g:?}");
        } else {
            assert_eq!(g, want.as_slice(), "{name}[{i}]: {v:e} as {to}");
        }
    }
}

/// A float tensor of `dtype` with `n` elements of any bit pattern.
fn float_bytes(dtype: DType, n: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), n * dtype.byte_width().unwrap())
}

/// A batch-norm layer as TF1 stores it: a scope and four `[C]` variables
/// of one float dtype, any bits (NaNs, infinities, subnormals included).
#[derive(Debug, Clone)]
struct Layer {
    dtype: DType,
    channels: u64,
    /// gamma, beta, moving_mean, moving_variance.
    vars: [Vec<u8>; 4],
}

fn layer() -> impl Strategy<Value = Layer> {
    (prop::sample::select(FLOATS.to_vec()), 1u64..6).prop_flat_map(|(dtype, channels)| {
        let n = channels as usize;
        [
            float_bytes(dtype, n),
            float_bytes(dtype, n),
            float_bytes(dtype, n),
            float_bytes(dtype, n),
        ]
        .prop_map(move |vars| Layer {
            dtype,
            channels,
            vars,
        })
    })
}

const TF_LEAVES: [&str; 4] = ["gamma", "beta", "moving_mean", "moving_variance"];

/// The names each preset gives the four variables of module `m` (written
/// out here, not taken from `Preset`, so a renaming shows up as a failure),
/// plus the extra tensor it writes, if any.
fn preset_names(preset: Preset, scope: &str) -> ([String; 4], Option<String>) {
    let dotted = scope.replace('/', ".");
    let four = |m: &str, sep: char, leaves: [&str; 4]| leaves.map(|l| format!("{m}{sep}{l}"));
    match preset {
        Preset::Tf => (four(scope, '/', TF_LEAVES), None),
        Preset::Pytorch => (
            four(
                &dotted,
                '.',
                ["weight", "bias", "running_mean", "running_var"],
            ),
            Some(format!("{dotted}.num_batches_tracked")),
        ),
        Preset::Candle => (
            four(
                &dotted,
                '.',
                ["weight", "bias", "running_mean", "running_var"],
            ),
            None,
        ),
        Preset::Burn => (
            four(
                &dotted,
                '.',
                ["gamma", "beta", "running_mean", "running_var"],
            ),
            None,
        ),
    }
}

fn st_dtype(d: safetensors::Dtype) -> DType {
    match d {
        safetensors::Dtype::F64 => DType::F64,
        safetensors::Dtype::F32 => DType::F32,
        safetensors::Dtype::F16 => DType::F16,
        safetensors::Dtype::BF16 => DType::BF16,
        safetensors::Dtype::I64 => DType::I64,
        safetensors::Dtype::I32 => DType::I32,
        safetensors::Dtype::I16 => DType::I16,
        safetensors::Dtype::I8 => DType::I8,
        safetensors::Dtype::U8 => DType::U8,
        safetensors::Dtype::BOOL => DType::Bool,
        other => panic!("unexpected safetensors dtype {other:?}"),
    }
}

fn quiet() -> impl FnMut(u64, u64) {
    |_, _| {}
}

proptest! {
    // Every case exports 16 files (4 presets × 4 casts); 32 cases keep
    // this under a few seconds in debug builds.
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// TF1 batch-norm layers of any float dtype and any bits, exported
    /// under every preset and every `--dtype`: the file holds exactly the
    /// preset's names, each `[C]` (or 0-d `num_batches_tracked`, int64),
    /// with the stored values cast as `half` casts them.
    #[test]
    fn layer_export_round_trips_under_every_preset_and_dtype(
        layers in prop::collection::btree_map("[a-z]{1,4}(/[a-z]{1,4}){0,2}", layer(), 1..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("model.ckpt");
        let mut w = BundleWriter::create(&prefix, WriteOptions::default()).unwrap();
        let mut keyed = BTreeMap::new();
        for (scope, l) in &layers {
            for (leaf, bytes) in TF_LEAVES.iter().zip(&l.vars) {
                keyed.insert(format!("{scope}/{leaf}"), Tensor {
                    dtype: l.dtype,
                    shape: vec![l.channels],
                    data: TensorData::Bytes(bytes.clone()),
                });
            }
        }
        for (k, t) in &keyed {
            w.add(k, t).unwrap();
        }
        w.finish().unwrap();
        let source = Source::open(&prefix).unwrap();
        for preset in Preset::ALL {
            for cast in CASTS {
                let out = dir.path().join(format!("{}-{}.safetensors", preset.label(), cast));
                let opts = ExportOptions { preset, dtype: cast, no_sync: true, ..ExportOptions::default() };
                let summary = tfbn::export::export_layers(&source, &out, &opts, &mut quiet()).unwrap();
                prop_assert_eq!(summary.layers, layers.len());
                let bytes = std::fs::read(&out).unwrap();
                let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
                let mut want: Vec<String> = Vec::new();
                for (scope, l) in &layers {
                    let (names, extra) = preset_names(preset, scope);
                    for (name, stored) in names.iter().zip(&l.vars) {
                        let t = st.tensor(name).unwrap_or_else(|e| panic!("{preset:?}/{cast:?}: {name}: {e}"));
                        let to = st_dtype(t.dtype());
                        prop_assert_eq!(to, cast.target(l.dtype), "{}: dtype", name);
                        prop_assert_eq!(t.shape(), &[l.channels as usize][..]);
                        assert_cast(name, l.dtype, to, stored, t.data());
                        want.push(name.clone());
                    }
                    if let Some(extra) = extra {
                        let t = st.tensor(&extra).unwrap();
                        prop_assert_eq!(t.dtype(), safetensors::Dtype::I64);
                        prop_assert!(t.shape().is_empty());
                        want.push(extra);
                    }
                }
                let mut got: Vec<String> = st.names().into_iter().map(str::to_string).collect();
                got.sort();
                want.sort();
                prop_assert_eq!(got, want, "{:?}/{:?}: names", preset, cast);
            }
        }
    }

    /// Every numeric variable, exported verbatim (`--all-variables`) under
    /// every `--dtype`: names are the keys, floats are cast as `half`
    /// casts them, everything else keeps its bits; strings are skipped.
    #[test]
    fn all_variables_export_round_trips_under_every_dtype(
        tensors in prop::collection::btree_map("[a-z][a-z0-9/_.]{0,10}", tensor(), 1..8),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("ckpt");
        let mut w = BundleWriter::create(&prefix, WriteOptions::default()).unwrap();
        for (k, t) in &tensors {
            w.add(k, t).unwrap();
        }
        w.finish().unwrap();
        let source = Source::open(&prefix).unwrap();
        for cast in CASTS {
            let out = dir.path().join(format!("{}.safetensors", cast));
            let opts = ExportOptions { dtype: cast, no_sync: true, ..ExportOptions::default() };
            tfbn::export::export_all_variables(&source, &out, &opts, &mut quiet()).unwrap();
            let bytes = std::fs::read(&out).unwrap();
            let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            let mut got: Vec<&str> = st.names();
            got.sort_unstable();
            let want: Vec<&str> = tensors
                .iter()
                .filter(|(_, t)| t.dtype != DType::String)
                .map(|(k, _)| k.as_str())
                .collect();
            prop_assert_eq!(&got, &want, "{:?}: names", cast);
            for k in want {
                let stored = &tensors[k];
                let t = st.tensor(k).unwrap();
                let to = st_dtype(t.dtype());
                prop_assert_eq!(to, cast.target(stored.dtype), "{}: dtype", k);
                let shape: Vec<usize> = stored.shape.iter().map(|&d| d as usize).collect();
                prop_assert_eq!(t.shape(), shape.as_slice());
                let bits = stored.bytes().unwrap();
                if FLOATS.contains(&stored.dtype) {
                    assert_cast(k, stored.dtype, to, bits, t.data());
                } else {
                    prop_assert_eq!(t.data(), bits, "{}: bits", k);
                }
            }
        }
    }
}

// ---- OrderedCode slice keys ---------------------------------------------

/// Any extent: starts anywhere in i64 (negative and huge included),
/// lengths from 0 to i64::MAX, or a whole dimension.
fn extent() -> impl Strategy<Value = Extent> {
    let start = prop_oneof![any::<i64>(), -300i64..300, Just(i64::MIN), Just(i64::MAX)];
    let length = prop_oneof![
        Just(None),
        (0i64..300).prop_map(Some),
        (0i64..=i64::MAX).prop_map(Some),
        Just(Some(i64::MAX)),
    ];
    (start, length).prop_map(|(start, length)| Extent { start, length })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    /// A slice key decodes to the name and extents it was encoded from,
    /// for any name (NUL bytes and multi-byte characters included) and any
    /// rank, start and length.
    #[test]
    fn slice_key_encode_then_decode_round_trips(
        name in "\\PC{0,12}|[\\x00\\x01a\\u{ff}/]{0,6}",
        extents in prop::collection::vec(extent(), 0..6),
    ) {
        let key = encode_slice_key(&name, &extents);
        prop_assert_eq!(decode_slice_key(&key), Some((name, extents)));
    }

    /// Every key that decodes is canonical: encoding what it decoded to
    /// gives the same bytes (so one slice has exactly one key), and
    /// arbitrary bytes never panic the decoder.
    #[test]
    fn slice_key_decoding_is_canonical(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
        if let Some((name, extents)) = decode_slice_key(&bytes) {
            prop_assert_eq!(encode_slice_key(&name, &extents), bytes);
        }
    }

    /// Mutating one byte of a real key either fails to decode or decodes
    /// to a key that re-encodes to exactly the mutated bytes.
    #[test]
    fn mutated_slice_keys_decode_canonically_or_not_at_all(
        name in "[a-z/_]{0,8}",
        extents in prop::collection::vec(extent(), 0..4),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut key = encode_slice_key(&name, &extents);
        let i = at.index(key.len());
        key[i] = byte;
        if let Some((n, e)) = decode_slice_key(&key) {
            prop_assert_eq!(encode_slice_key(&n, &e), key);
        }
    }

    /// OrderedCode numbers round trip, use the bytes they say they use, and
    /// sort as their values do (the property the encoding exists for).
    #[test]
    fn ordered_code_numbers_round_trip_and_keep_order(
        a in prop_oneof![any::<i64>(), -200i64..200, Just(i64::MIN), Just(i64::MAX)],
        b in prop_oneof![any::<i64>(), -200i64..200, Just(i64::MIN), Just(i64::MAX)],
        tail in prop::collection::vec(any::<u8>(), 0..3),
    ) {
        let (mut ea, mut eb) = (Vec::new(), Vec::new());
        encode_signed(a, &mut ea);
        encode_signed(b, &mut eb);
        prop_assert!((1..=10).contains(&ea.len()));
        prop_assert_eq!(a.cmp(&b), ea.cmp(&eb), "signed order of {} and {}", a, b);
        let n = ea.len();
        ea.extend_from_slice(&tail);
        prop_assert_eq!(decode_signed(&ea), Some((a, n)));

        let (ua, ub) = (a as u64, b as u64);
        let (mut fa, mut fb) = (Vec::new(), Vec::new());
        encode_unsigned(ua, &mut fa);
        encode_unsigned(ub, &mut fb);
        prop_assert_eq!(ua.cmp(&ub), fa.cmp(&fb), "unsigned order of {} and {}", ua, ub);
        let n = fa.len();
        fa.extend_from_slice(&tail);
        prop_assert_eq!(decode_unsigned(&fa), Some((ua, n)));
    }
}
