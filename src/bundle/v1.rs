//! V1 legacy checkpoints (`tensorflow/core/util/tensor_slice_reader.cc`;
//! `docs/formats.md#v1-checkpoints`): one SSTable per file, whose empty key holds
//! `SavedTensorSlices { meta }` and whose other keys are slice keys holding
//! `SavedTensorSlices { data: SavedSlice }` with the values in the typed
//! field of a `TensorProto`. Sharded files (`NAME-SSSSS-of-NNNNN`) each
//! list the slices they hold; a tensor may be spread over several files.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use memmap2::Mmap;
use prost::Message;

use crate::bundle::entry::{self, fixed_bytes};
use crate::bundle::slices::{
    check_partition, encode_slice_key, extents_from_proto, for_each_run, Extent, SliceBox,
};
use crate::bundle::table::Table;
use crate::bundle::v2::unreadable;
use crate::bundle::{decode_slice_key, display_key, map_file, EntryInfo};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::proto::bundle::SavedTensorSlices;
use crate::proto::tensor::TensorProto;
use crate::tensor::{Tensor, TensorData};

/// One slice of a V1 tensor: where it goes and where its value is.
#[derive(Debug)]
struct Slice {
    extents: Vec<Extent>,
    b: SliceBox,
    file: usize,
    /// Byte range of the SavedTensorSlices value in the file's map.
    start: usize,
    len: usize,
    /// Slice key, display form.
    shown: String,
}

/// An open V1 checkpoint.
#[derive(Debug)]
pub(crate) struct V1 {
    files: Vec<PathBuf>,
    maps: Vec<Mmap>,
    /// Parallel to the bundle's entry list.
    tensors: Vec<Vec<Slice>>,
}

/// What [`open`] found.
pub(crate) struct Opened {
    /// The reader.
    pub reader: V1,
    /// Listed tensors, sorted by name.
    pub entries: Vec<EntryInfo>,
}

/// A tensor as the metas of all files describe it.
struct Meta {
    dtype: DType,
    shape: Vec<u64>,
    num_bytes: Option<u64>,
    /// First file that lists it (for errors).
    file: usize,
    slices: Vec<(Vec<Extent>, usize)>,
}

/// Opens and checks the V1 files (one, or every shard in order).
pub(crate) fn open(files: &[PathBuf]) -> Result<Opened> {
    let mut maps = Vec::with_capacity(files.len());
    for f in files {
        maps.push(map_file(f)?);
    }
    let mut metas: BTreeMap<String, Meta> = BTreeMap::new();
    let mut values: Vec<HashMap<Vec<u8>, (usize, usize)>> = Vec::with_capacity(files.len());
    for (fi, (path, map)) in files.iter().zip(&maps).enumerate() {
        let base = map.as_ptr() as usize;
        let table = Table::open(path, map)?;
        let mut meta_bytes: Option<&[u8]> = None;
        let mut first = true;
        let mut ranges = HashMap::new();
        table.for_each(|key, value| {
            if std::mem::take(&mut first) {
                if !key.is_empty() {
                    return Err(Error::HeaderMissing { path: path.clone() });
                }
                meta_bytes = Some(value);
            } else {
                // `value` borrows from `map`, so this is its offset in it.
                ranges.insert(key.to_vec(), (value.as_ptr() as usize - base, value.len()));
            }
            Ok(())
        })?;
        let meta_bytes = meta_bytes.ok_or_else(|| Error::HeaderMissing { path: path.clone() })?;
        let invalid = |what: String| Error::HeaderInvalid {
            path: path.clone(),
            what,
        };
        let meta = SavedTensorSlices::decode(meta_bytes)
            .map_err(|e| invalid(format!("not a SavedTensorSlices: {e}")))?
            .meta
            .ok_or_else(|| invalid("SavedTensorSlices at the empty key has no meta".into()))?;
        entry::check_version(path, meta.versions.as_ref())?;
        for t in meta.tensor {
            let dtype = entry::parse_dtype(path, &t.name, t.r#type)?;
            let (shape, elements) = entry::parse_shape(path, &t.name, t.shape.as_ref())?;
            let num_bytes = match fixed_bytes(dtype, elements) {
                Some(Some(b)) => Some(b),
                Some(None) => {
                    return Err(Error::ShapeOverflow {
                        path: path.clone(),
                        key: t.name,
                        shape: shape.iter().map(|&d| d as i64).collect(),
                    })
                }
                None => None,
            };
            let m = metas.entry(t.name.clone()).or_insert_with(|| Meta {
                dtype,
                shape: shape.clone(),
                num_bytes,
                file: fi,
                slices: Vec::new(),
            });
            if m.dtype != dtype || m.shape != shape {
                return Err(Error::EntryInvalid {
                    path: path.clone(),
                    key: t.name,
                    what: format!(
                        "{dtype} {shape:?} here, but {} {:?} in {}",
                        m.dtype,
                        m.shape,
                        files[m.file].display()
                    ),
                });
            }
            m.slices
                .extend(t.slice.iter().map(|s| (extents_from_proto(s), fi)));
        }
        values.push(ranges);
    }

    let mut entries = Vec::with_capacity(metas.len());
    let mut tensors = Vec::with_capacity(metas.len());
    for (name, m) in metas {
        let invalid = |what: String| Error::SliceInvalid {
            path: files[m.file].clone(),
            key: name.clone(),
            what,
        };
        let extents: Vec<Vec<Extent>> = m.slices.iter().map(|(e, _)| e.clone()).collect();
        let boxes = check_partition(&m.shape, &extents).map_err(invalid)?;
        let mut slices = Vec::with_capacity(boxes.len());
        for ((extents, file), b) in m.slices.into_iter().zip(boxes) {
            let key = encode_slice_key(&name, &extents);
            let shown = display_key(&key);
            // Taken out, so that what is left at the end is unlisted.
            let (start, len) = values[file]
                .remove(&key)
                .ok_or_else(|| Error::SliceInvalid {
                    path: files[file].clone(),
                    key: name.clone(),
                    what: format!("slice {shown} has no entry"),
                })?;
            slices.push(Slice {
                extents,
                b,
                file,
                start,
                len,
                shown,
            });
        }
        entries.push(EntryInfo {
            key: name,
            dtype: m.dtype,
            shape: m.shape,
            partitioned: slices.len() > 1,
            num_bytes: m.num_bytes,
        });
        tensors.push(slices);
    }
    // A data entry no tensor's meta lists: the tensor's meta entry is gone
    // and the tensor would vanish without a word (see v2's check).
    for (file, left) in values.iter().enumerate() {
        let mut keys: Vec<&Vec<u8>> = left.keys().collect();
        keys.sort();
        if let Some(first) = keys.first() {
            let variable = decode_slice_key(first)
                .map(|(n, _)| n)
                .unwrap_or_else(|| display_key(first));
            return Err(Error::SliceOrphaned {
                path: files[file].clone(),
                variable,
                slice: display_key(first),
                count: keys.len(),
            });
        }
    }
    Ok(Opened {
        reader: V1 {
            files: files.to_vec(),
            maps,
            tensors,
        },
        entries,
    })
}

/// Values of one slice.
enum Values {
    Bytes(Vec<u8>),
    Strings(Vec<Vec<u8>>),
}

/// Why a `TensorProto` does not hold the expected values.
enum ValueError {
    /// Wrong number of values in `field`.
    Count {
        field: &'static str,
        found: u64,
        expected: u64,
    },
    /// A value out of range for the dtype.
    Range(String),
    /// No field carries this dtype in V1.
    Unsupported,
}

impl V1 {
    /// Decodes one slice's values, checking name, extents and count.
    fn slice_values(&self, name: &str, dtype: DType, s: &Slice) -> Result<Values> {
        let path = &self.files[s.file];
        let invalid = |what: String| Error::EntryInvalid {
            path: path.clone(),
            key: s.shown.clone(),
            what,
        };
        let bytes = self.maps[s.file]
            .get(s.start..s.start + s.len)
            .ok_or_else(|| invalid("value lies outside the file".into()))?;
        let saved = SavedTensorSlices::decode(bytes)
            .map_err(|e| invalid(format!("not a SavedTensorSlices: {e}")))?
            .data
            .ok_or_else(|| invalid("SavedTensorSlices has no data".into()))?;
        if saved.name != name {
            return Err(invalid(format!(
                "holds tensor {:?}, not {name:?}",
                saved.name
            )));
        }
        let extents = saved
            .slice
            .as_ref()
            .map(extents_from_proto)
            .unwrap_or_default();
        if extents != s.extents {
            return Err(invalid("holds a different slice than its key".into()));
        }
        let proto = saved.data.unwrap_or_default();
        proto_values(dtype, proto, s.b.volume()).map_err(|e| match e {
            ValueError::Count {
                field,
                found,
                expected,
            } => Error::SizeMismatch {
                path: path.clone(),
                key: s.shown.clone(),
                size: found,
                expected,
                what: format!("{field} values for a slice of {} elements", s.b.volume()),
            },
            ValueError::Range(what) => invalid(what),
            ValueError::Unsupported => unreadable(path, name, dtype),
        })
    }

    /// Reads listed tensor `i`.
    pub(crate) fn read(&self, i: usize, info: &EntryInfo) -> Result<Tensor> {
        let slices = &self.tensors[i];
        let name = info.key.as_str();
        let dtype = info.dtype;
        if dtype != DType::String && dtype.byte_width().is_none() {
            return Err(unreadable(&self.files[0], name, dtype));
        }
        let mut decoded = Vec::with_capacity(slices.len());
        for s in slices {
            decoded.push(self.slice_values(name, dtype, s)?);
        }
        let whole = slices.len() == 1 && slices[0].b.len == info.shape;
        let data = if whole {
            match decoded.pop() {
                Some(Values::Bytes(b)) => TensorData::Bytes(b),
                Some(Values::Strings(s)) => TensorData::Strings(s),
                None => TensorData::Bytes(Vec::new()),
            }
        } else if dtype == DType::String {
            // Every slice decoded with exactly its volume, and the volumes
            // add up to the element count: allocation is bounded by them.
            let total: u64 = slices.iter().map(|s| s.b.volume()).sum();
            let mut out = vec![Vec::new(); total as usize];
            for (s, v) in slices.iter().zip(decoded) {
                if let Values::Strings(mut v) = v {
                    for_each_run(&info.shape, &s.b, |dst, src, n| {
                        let (dst, src, n) = (dst as usize, src as usize, n as usize);
                        for (o, x) in out[dst..dst + n].iter_mut().zip(&mut v[src..src + n]) {
                            *o = std::mem::take(x);
                        }
                    });
                }
            }
            TensorData::Strings(out)
        } else {
            let width = dtype.byte_width().unwrap_or(1) as u64;
            let total: usize = decoded
                .iter()
                .map(|v| match v {
                    Values::Bytes(b) => b.len(),
                    Values::Strings(_) => 0,
                })
                .sum();
            let mut out = vec![0u8; total];
            for (s, v) in slices.iter().zip(decoded) {
                if let Values::Bytes(src) = v {
                    for_each_run(&info.shape, &s.b, |dst, from, n| {
                        let (dst, from, n) = (
                            (dst * width) as usize,
                            (from * width) as usize,
                            (n * width) as usize,
                        );
                        out[dst..dst + n].copy_from_slice(&src[from..from + n]);
                    });
                }
            }
            TensorData::Bytes(out)
        };
        Ok(Tensor {
            dtype,
            shape: info.shape.clone(),
            data,
        })
    }

    /// Little-endian element bytes of fixed-width tensor `i` (always owned:
    /// V1 values are protobuf fields, not raw bytes).
    pub(crate) fn read_raw(&self, i: usize, info: &EntryInfo) -> Result<Cow<'_, [u8]>> {
        if info.dtype.byte_width().is_none() {
            return Err(unreadable(&self.files[0], &info.key, info.dtype));
        }
        match self.read(i, info)?.data {
            TensorData::Bytes(b) => Ok(Cow::Owned(b)),
            TensorData::Strings(_) => Err(unreadable(&self.files[0], &info.key, info.dtype)),
        }
    }
}

/// Packs `vals` (exactly `expected` of them) as little-endian bytes.
fn pack<T: Copy, const W: usize>(
    vals: &[T],
    expected: u64,
    field: &'static str,
    f: impl Fn(T) -> Option<[u8; W]>,
) -> Result<Vec<u8>, ValueError> {
    if vals.len() as u64 != expected {
        return Err(ValueError::Count {
            field,
            found: vals.len() as u64,
            expected,
        });
    }
    let mut out = Vec::with_capacity(vals.len() * W);
    for (i, &v) in vals.iter().enumerate() {
        let b = f(v).ok_or_else(|| ValueError::Range(format!("{field}[{i}] is out of range")))?;
        out.extend_from_slice(&b);
    }
    Ok(out)
}

/// The values of a V1 slice in the field TF's `SaveTypeTraits` uses for
/// `dtype` (`tensor_content` is accepted too), as little-endian bytes.
fn proto_values(dtype: DType, p: TensorProto, n: u64) -> Result<Values, ValueError> {
    use DType::*;
    if dtype == String {
        if p.string_val.len() as u64 != n {
            return Err(ValueError::Count {
                field: "string_val",
                found: p.string_val.len() as u64,
                expected: n,
            });
        }
        return Ok(Values::Strings(p.string_val));
    }
    let width = dtype.byte_width().ok_or(ValueError::Unsupported)? as u64;
    if !p.tensor_content.is_empty() {
        let expected = n.saturating_mul(width);
        if p.tensor_content.len() as u64 != expected {
            return Err(ValueError::Count {
                field: "tensor_content bytes",
                found: p.tensor_content.len() as u64,
                expected,
            });
        }
        return Ok(Values::Bytes(p.tensor_content));
    }
    let two = n.saturating_mul(2);
    let bytes = match dtype {
        F32 => pack(&p.float_val, n, "float_val", |v: f32| Some(v.to_le_bytes()))?,
        F64 => pack(&p.double_val, n, "double_val", |v: f64| {
            Some(v.to_le_bytes())
        })?,
        I32 | QI32 => pack(&p.int_val, n, "int_val", |v: i32| Some(v.to_le_bytes()))?,
        I16 | QI16 => pack(&p.int_val, n, "int_val", |v: i32| {
            i16::try_from(v).ok().map(i16::to_le_bytes)
        })?,
        U16 | QU16 => pack(&p.int_val, n, "int_val", |v: i32| {
            u16::try_from(v).ok().map(u16::to_le_bytes)
        })?,
        I8 | QI8 => pack(&p.int_val, n, "int_val", |v: i32| {
            i8::try_from(v).ok().map(i8::to_le_bytes)
        })?,
        U8 | QU8 => pack(&p.int_val, n, "int_val", |v: i32| {
            u8::try_from(v).ok().map(u8::to_le_bytes)
        })?,
        I64 => pack(&p.int64_val, n, "int64_val", |v: i64| Some(v.to_le_bytes()))?,
        U32 => pack(&p.uint32_val, n, "uint32_val", |v: u32| {
            Some(v.to_le_bytes())
        })?,
        U64 => pack(&p.uint64_val, n, "uint64_val", |v: u64| {
            Some(v.to_le_bytes())
        })?,
        Bool => pack(&p.bool_val, n, "bool_val", |v: bool| Some([u8::from(v)]))?,
        F16 | BF16 => pack(&p.half_val, n, "half_val", |v: i32| {
            u16::try_from(v).ok().map(u16::to_le_bytes)
        })?,
        Complex64 => pack(&p.scomplex_val, two, "scomplex_val", |v: f32| {
            Some(v.to_le_bytes())
        })?,
        Complex128 => pack(&p.dcomplex_val, two, "dcomplex_val", |v: f64| {
            Some(v.to_le_bytes())
        })?,
        _ => return Err(ValueError::Unsupported),
    };
    Ok(Values::Bytes(bytes))
}
