//! Reading checkpoint variables through TensorFlow's own `RestoreV2` kernel,
//! to check the native reader against TF (`tfbn inspect --reader tf|both`).
//!
//! `RestoreV2` takes the checkpoint prefix literally and needs every key's
//! dtype up front, so the path is resolved (folders, `checkpoint` files,
//! SavedModel `variables/variables`) and the keys and dtypes are listed by
//! the native index reader; the values come from TF. For a prefix without
//! an `.index` file `RestoreV2` falls back to TF's V1 reader, which takes a
//! file pattern (`NAME-?????-of-NNNNN` for sharded V1 files).
//!
//! Every fixed-width value is returned as TF holds it in memory, bit for
//! bit: the graph `Bitcast`s each restored tensor to `uint8` (bool: `Cast`,
//! which maps TF's 0/1 bytes to 0/1), and string tensors go through
//! `EncodeBase64` (the crate only fetches UTF-8 strings).

use std::path::Path;

use tensorflow::{ops, DataType, Output, SessionRunArgs, Tensor};

use super::graph::{self, G};
use super::{tf_error, TfRuntime};
use crate::bundle::{Bundle, BundleFormat};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::parity::first_difference;
use crate::source::Source;
use crate::tensor::{Tensor as TfbnTensor, TensorData};

/// The `tensorflow` crate's data type for a [`DType`], where TF can restore
/// and return it.
fn data_type(d: DType) -> Option<DataType> {
    Some(match d {
        DType::F32 => DataType::Float,
        DType::F64 => DataType::Double,
        DType::I32 => DataType::Int32,
        DType::U8 => DataType::UInt8,
        DType::I16 => DataType::Int16,
        DType::I8 => DataType::Int8,
        DType::String => DataType::String,
        DType::Complex64 => DataType::Complex64,
        DType::I64 => DataType::Int64,
        DType::Bool => DataType::Bool,
        DType::QI8 => DataType::QInt8,
        DType::QU8 => DataType::QUInt8,
        DType::QI32 => DataType::QInt32,
        DType::BF16 => DataType::BFloat16,
        DType::QI16 => DataType::QInt16,
        DType::QU16 => DataType::QUInt16,
        DType::U16 => DataType::UInt16,
        DType::Complex128 => DataType::Complex128,
        DType::F16 => DataType::Half,
        DType::U32 => DataType::UInt32,
        DType::U64 => DataType::UInt64,
        _ => return None,
    })
}

/// The prefix `RestoreV2` needs for `bundle`: the V2 prefix; for V1 the
/// file, or the shard pattern of a sharded V1 checkpoint.
pub fn restore_prefix(bundle: &Bundle) -> Result<String> {
    let prefix = bundle.prefix();
    let s = |p: &Path| {
        p.to_str().map(str::to_string).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{}: TensorFlow takes checkpoint paths as UTF-8 strings",
                p.display()
            ))
        })
    };
    match bundle.format() {
        BundleFormat::V2 { .. } => s(prefix),
        BundleFormat::V1 { num_files } if num_files <= 1 => match bundle.files().first() {
            Some(f) => s(f),
            None => s(prefix),
        },
        BundleFormat::V1 { num_files } => Ok(format!("{}-?????-of-{num_files:05}", s(prefix)?)),
    }
}

/// One variable to read: its key and dtype (as the index lists them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    /// Checkpoint key.
    pub key: String,
    /// Element type.
    pub dtype: DType,
}

/// Reads `keys` from the checkpoint at `prefix` (taken literally, see
/// [`restore_prefix`]) with one `RestoreV2` run. Tensors come back in the
/// order of `keys`, with TF's shapes and bytes.
pub fn read_keys(rt: &TfRuntime, prefix: &str, keys: &[KeySpec]) -> Result<Vec<TfbnTensor>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut dtypes = Vec::with_capacity(keys.len());
    for k in keys {
        let dt = data_type(k.dtype).ok_or_else(|| Error::DTypeUnreadable {
            path: prefix.into(),
            key: k.key.clone(),
            dtype: k.dtype,
        })?;
        dtypes.push(dt);
    }
    let mut g = G::new();
    let prefix_t = g.constant(&[], &[prefix.to_string()])?;
    let names: Vec<String> = keys.iter().map(|k| k.key.clone()).collect();
    let names_t = g.constant(&[names.len()], &names)?;
    let slices_t = g.constant(&[names.len()], &vec![String::new(); names.len()])?;
    let restore = ops::RestoreV2::new()
        .dtypes(dtypes.clone())
        .build(prefix_t, names_t, slices_t, &mut g.scope)
        .map_err(|s| tf_error("building RestoreV2", s))?;
    // One fetchable output per key: bytes, 0/1 bytes, or base64 strings.
    let mut fetch: Vec<Output> = Vec::with_capacity(keys.len());
    for (i, k) in keys.iter().enumerate() {
        let out = Output {
            operation: restore.clone(),
            index: i as i32,
        };
        let o = match k.dtype {
            DType::String => ops::EncodeBase64::new()
                .pad(true)
                .build(out, &mut g.scope)
                .map_err(|s| tf_error("building EncodeBase64", s))?,
            DType::Bool => ops::Cast::new()
                .DstT(DataType::UInt8)
                .build(out, &mut g.scope)
                .map_err(|s| tf_error("building Cast", s))?,
            _ => ops::Bitcast::new()
                .type_(DataType::UInt8)
                .build(out, &mut g.scope)
                .map_err(|s| tf_error("building Bitcast", s))?,
        };
        fetch.push(Output::from(o));
    }
    let session = graph::session(&g.graph(), rt.host.threads)?;
    let mut args = SessionRunArgs::new();
    let tokens: Vec<_> = fetch
        .iter()
        .map(|o| args.request_fetch(&o.operation, o.index))
        .collect();
    session
        .run(&mut args)
        .map_err(|s| tf_error(format!("RestoreV2 of {prefix}"), s))?;
    let mut out = Vec::with_capacity(keys.len());
    for (k, token) in keys.iter().zip(tokens) {
        let what = || format!("fetching {:?} from {prefix}", k.key);
        if k.dtype == DType::String {
            let t: Tensor<String> = args.fetch(token).map_err(|s| tf_error(what(), s))?;
            let shape: Vec<u64> = t.dims().to_vec();
            let strings = t
                .iter()
                .map(|s| decode_base64url(s))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| tf_error(what(), "EncodeBase64 returned invalid base64"))?;
            out.push(TfbnTensor {
                dtype: k.dtype,
                shape,
                data: TensorData::Strings(strings),
            });
            continue;
        }
        let t: Tensor<u8> = args.fetch(token).map_err(|s| tf_error(what(), s))?;
        let width = k.dtype.byte_width().unwrap_or(1);
        let mut shape: Vec<u64> = t.dims().to_vec();
        // Bitcast to a narrower type appends a dimension of the width.
        if width > 1 && k.dtype != DType::Bool {
            match shape.pop() {
                Some(w) if w == width as u64 => {}
                _ => {
                    return Err(tf_error(
                        what(),
                        format!("Bitcast returned shape {:?}", t.dims()),
                    ))
                }
            }
        }
        out.push(TfbnTensor {
            dtype: k.dtype,
            shape,
            data: TensorData::Bytes(t.to_vec()),
        });
    }
    Ok(out)
}

/// Decodes TF's web-safe base64 (`-` and `_`, padded).
fn decode_base64url(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a') as u32 + 26,
            b'0'..=b'9' => (c - b'0') as u32 + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        })
    }
    let bytes = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * i);
        }
        let n = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        for i in 0..n {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

/// Reads every readable variable of `source` through TF, in the source's
/// key order; variables of types TF cannot return (resource, variant,
/// sub-byte) are skipped.
pub fn read_source(rt: &TfRuntime, source: &Source) -> Result<Vec<(String, TfbnTensor)>> {
    let bundle = source.bundle().ok_or_else(|| crate::Error::TfHasNoReader {
        path: source.path().to_path_buf(),
        format: source.format().label(),
    })?;
    let prefix = restore_prefix(bundle)?;
    let keys: Vec<KeySpec> = source
        .variables()
        .iter()
        .filter(|v| data_type(v.dtype).is_some())
        .map(|v| KeySpec {
            key: v.key.clone(),
            dtype: v.dtype,
        })
        .collect();
    let tensors = read_keys(rt, &prefix, &keys)?;
    Ok(keys.into_iter().map(|k| k.key).zip(tensors).collect())
}

/// One variable whose native and TF values differ.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReaderMismatch {
    /// Checkpoint key.
    pub key: String,
    /// What differs (dtype, shape, or the first differing byte / string).
    pub what: String,
}

/// The result of reading every variable both ways.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReaderComparison {
    /// Variables read both ways.
    pub compared: usize,
    /// Variables TF could not be asked for (their dtype), not compared.
    pub skipped: Vec<String>,
    /// Variables whose values differ (bitwise).
    pub mismatches: Vec<ReaderMismatch>,
}

/// Reads every variable natively and through TF and compares dtype, shape
/// and bytes (bitwise; strings element by element).
pub fn compare_readers(rt: &TfRuntime, source: &Source) -> Result<ReaderComparison> {
    let theirs = read_source(rt, source)?;
    let skipped = source
        .variables()
        .iter()
        .filter(|v| data_type(v.dtype).is_none())
        .map(|v| v.key.clone())
        .collect();
    let mut mismatches = Vec::new();
    for (key, t) in &theirs {
        let ours = source.read(key)?;
        if let Some(what) = difference(&ours, t) {
            mismatches.push(ReaderMismatch {
                key: key.clone(),
                what,
            });
        }
    }
    Ok(ReaderComparison {
        compared: theirs.len(),
        skipped,
        mismatches,
    })
}

/// How `native` differs from `tf`, or `None` when bitwise equal.
pub fn difference(native: &TfbnTensor, tf: &TfbnTensor) -> Option<String> {
    if native.dtype != tf.dtype {
        return Some(format!(
            "dtype: native {}, TF {}",
            native.dtype.name(),
            tf.dtype.name()
        ));
    }
    if native.shape != tf.shape {
        return Some(format!(
            "shape: native {:?}, TF {:?}",
            native.shape, tf.shape
        ));
    }
    match (&native.data, &tf.data) {
        (TensorData::Bytes(a), TensorData::Bytes(b)) => first_difference(a, b).map(|i| {
            format!(
                "bytes differ from offset {i} (native {:02x?}, TF {:02x?}; {} vs {} bytes)",
                a.get(i),
                b.get(i),
                a.len(),
                b.len()
            )
        }),
        (TensorData::Strings(a), TensorData::Strings(b)) => {
            if a.len() != b.len() {
                return Some(format!("{} vs {} strings", a.len(), b.len()));
            }
            a.iter()
                .zip(b)
                .position(|(x, y)| x != y)
                .map(|i| format!("string element {i} differs"))
        }
        _ => Some("one is a string tensor, the other is not".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trips() {
        assert_eq!(decode_base64url("").unwrap(), b"");
        assert_eq!(decode_base64url("YQ==").unwrap(), b"a");
        assert_eq!(decode_base64url("YWI=").unwrap(), b"ab");
        assert_eq!(decode_base64url("YWJj").unwrap(), b"abc");
        assert_eq!(decode_base64url("-_8=").unwrap(), vec![0xFB, 0xFF]);
        assert!(decode_base64url("Y").is_none());
        assert!(decode_base64url("Y+==").is_none());
    }
}
