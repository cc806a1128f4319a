//! Validation of the bundle header and of each `BundleEntryProto`
//! (`docs/formats.md#bundle-header-and-entries`), done once at open so that reading is
//! only bounds-checked slicing plus the crc.

use std::path::{Path, PathBuf};

use prost::Message;

use crate::bundle::crc::unmask;
use crate::bundle::slices::{extents_from_proto, Extent};
use crate::bundle::strings;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::proto::bundle::{
    BundleEntryProto, BundleHeaderProto, ENDIANNESS_BIG, ENDIANNESS_LITTLE,
};
use crate::proto::tensor::{TensorShapeProto, VersionDef};

/// The reader version tfbn implements (`kTensorBundleVersion` and
/// `TF_CHECKPOINT_VERSION` are both 1).
pub(crate) const CONSUMER_VERSION: i32 = 1;

/// A checked bundle header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    /// Number of data shards, ≥ 1.
    pub num_shards: u32,
    /// Tensor bytes are big-endian.
    pub big_endian: bool,
}

/// Decodes and checks the header at the empty key of `path`.
pub(crate) fn parse_header(path: &Path, bytes: &[u8]) -> Result<Header> {
    let invalid = |what: String| Error::HeaderInvalid {
        path: path.to_path_buf(),
        what,
    };
    let h = BundleHeaderProto::decode(bytes)
        .map_err(|e| invalid(format!("not a BundleHeaderProto: {e}")))?;
    check_version(path, h.version.as_ref())?;
    let num_shards = u32::try_from(h.num_shards)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            invalid(format!(
                "num_shards is {}; it must be at least 1",
                h.num_shards
            ))
        })?;
    let big_endian = match h.endianness {
        ENDIANNESS_LITTLE => false,
        ENDIANNESS_BIG => true,
        other => {
            return Err(invalid(format!(
                "endianness {other} is neither LITTLE (0) nor BIG (1)"
            )))
        }
    };
    Ok(Header {
        num_shards,
        big_endian,
    })
}

/// TF's `CheckVersions` for readers of version 1 with minimum producer 0:
/// `min_consumer ≤ 1`, 1 not in `bad_consumers`, `producer ≥ 0`. A missing
/// VersionDef is all zeros, which passes.
pub(crate) fn check_version(path: &Path, v: Option<&VersionDef>) -> Result<()> {
    let Some(v) = v else { return Ok(()) };
    if v.min_consumer > CONSUMER_VERSION || v.bad_consumers.contains(&CONSUMER_VERSION) {
        return Err(Error::VersionUnsupported {
            path: path.to_path_buf(),
            min_consumer: v.min_consumer,
            bad_consumers: v.bad_consumers.clone(),
        });
    }
    if v.producer < 0 {
        return Err(Error::HeaderInvalid {
            path: path.to_path_buf(),
            what: format!("producer version {} is negative", v.producer),
        });
    }
    Ok(())
}

/// The dtype for `code`, or [`Error::DTypeUnknown`].
pub(crate) fn parse_dtype(path: &Path, key: &str, code: i32) -> Result<DType> {
    DType::from_tf(code).ok_or_else(|| Error::DTypeUnknown {
        path: path.to_path_buf(),
        key: key.to_string(),
        code,
    })
}

/// The dimensions of a stored shape and its element count, checked: known
/// rank, no negative dimension, and a product that fits in u64. A missing
/// shape is a scalar, as in TF.
pub(crate) fn parse_shape(
    path: &Path,
    key: &str,
    shape: Option<&TensorShapeProto>,
) -> Result<(Vec<u64>, u64)> {
    let Some(shape) = shape else {
        return Ok((Vec::new(), 1));
    };
    if shape.unknown_rank {
        return Err(Error::EntryInvalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            what: "the shape has unknown rank".into(),
        });
    }
    let mut dims = Vec::with_capacity(shape.dim.len());
    let mut elements = 1u64;
    let mut overflow = false;
    for (index, d) in shape.dim.iter().enumerate() {
        let size = u64::try_from(d.size).map_err(|_| Error::ShapeNegativeDim {
            path: path.to_path_buf(),
            key: key.to_string(),
            index,
            size: d.size,
        })?;
        dims.push(size);
        match elements.checked_mul(size) {
            Some(e) => elements = e,
            None => overflow = true,
        }
    }
    // A zero dimension after an overflowing prefix makes the product 0, but
    // the shape is still rejected: no TF writer produces it.
    if overflow {
        return Err(shape_overflow(path, key, &dims));
    }
    Ok((dims, elements))
}

fn shape_overflow(path: &Path, key: &str, dims: &[u64]) -> Error {
    Error::ShapeOverflow {
        path: path.to_path_buf(),
        key: key.to_string(),
        shape: dims.iter().map(|&d| d as i64).collect(),
    }
}

/// Bytes of `elements` elements of `dtype`: `None` when the dtype is not
/// fixed-width, `Some(None)` when the product overflows u64.
pub(crate) fn fixed_bytes(dtype: DType, elements: u64) -> Option<Option<u64>> {
    dtype.byte_width().map(|w| elements.checked_mul(w as u64))
}

/// Where an unpartitioned tensor's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    /// Data shard index (< num_shards).
    pub shard: usize,
    /// Byte offset in the shard.
    pub offset: u64,
    /// Byte length; `offset + size` ≤ the shard's length.
    pub size: u64,
    /// Unmasked crc32c of the bytes.
    pub crc: u32,
}

/// A checked entry.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Element type.
    pub dtype: DType,
    /// Dimensions.
    pub shape: Vec<u64>,
    /// Bytes, for fixed-width dtypes (fits in u64).
    pub num_bytes: Option<u64>,
    /// The bytes; `None` for a partitioned entry, whose location TF ignores.
    pub location: Option<Location>,
    /// Slices of a partitioned entry (empty otherwise).
    pub slices: Vec<Vec<Extent>>,
}

/// One data shard as the index checks see it.
pub(crate) struct ShardInfo<'a> {
    /// Its path, for errors.
    pub path: &'a Path,
    /// Its length in bytes.
    pub len: u64,
}

/// Decodes and checks the entry of `key` (display form) in `index`: known
/// dtype, valid shape, and for unpartitioned entries `size` = elements ×
/// width (strings: at least one byte per length plus the checksum), a
/// `shard_id` below `num_shards` and `[offset, offset + size)` inside it.
pub(crate) fn parse_entry(
    index: &Path,
    key: &str,
    bytes: &[u8],
    shards: &[ShardInfo<'_>],
) -> Result<Entry> {
    let e = BundleEntryProto::decode(bytes).map_err(|err| Error::EntryInvalid {
        path: index.to_path_buf(),
        key: key.to_string(),
        what: err.to_string(),
    })?;
    let dtype = parse_dtype(index, key, e.dtype)?;
    let (shape, elements) = parse_shape(index, key, e.shape.as_ref())?;
    let num_bytes = match fixed_bytes(dtype, elements) {
        Some(Some(b)) => Some(b),
        Some(None) => return Err(shape_overflow(index, key, &shape)),
        None => None,
    };
    let slices: Vec<Vec<Extent>> = e.slices.iter().map(extents_from_proto).collect();
    if !slices.is_empty() {
        // A partitioned entry's shard_id, offset, size and crc are ignored
        // by TF (a merged one held shard_id 1); its slices carry the data.
        return Ok(Entry {
            dtype,
            shape,
            num_bytes,
            location: None,
            slices,
        });
    }
    // int64 offset and size are taken as u64, so negatives become huge and
    // fail the bounds check below instead of wrapping.
    let size = e.size as u64;
    let offset = e.offset as u64;
    let mismatch = |expected: u64, what: String| Error::SizeMismatch {
        path: index.to_path_buf(),
        key: key.to_string(),
        size,
        expected,
        what,
    };
    if let Some(expected) = num_bytes {
        if size != expected {
            let width = dtype.byte_width().unwrap_or(0);
            return Err(mismatch(
                expected,
                format!("{elements} elements × {width} bytes of {dtype}"),
            ));
        }
    } else if dtype == DType::String {
        let min = strings::min_size(elements).ok_or_else(|| shape_overflow(index, key, &shape))?;
        if size < min {
            return Err(mismatch(
                min,
                format!("at least one length byte per each of {elements} strings plus a 4-byte checksum"),
            ));
        }
    }
    let shard = usize::try_from(e.shard_id)
        .ok()
        .filter(|&s| s < shards.len())
        .ok_or_else(|| Error::ShardIdOutOfRange {
            path: index.to_path_buf(),
            key: key.to_string(),
            shard_id: e.shard_id,
            num_shards: shards.len() as i32,
        })?;
    let info = &shards[shard];
    if offset.checked_add(size).is_none_or(|end| end > info.len) {
        return Err(Error::OffsetPastShardEnd {
            path: info.path.to_path_buf(),
            key: key.to_string(),
            offset,
            size,
            len: info.len,
        });
    }
    Ok(Entry {
        dtype,
        shape,
        num_bytes,
        location: Some(Location {
            shard,
            offset,
            size,
            crc: unmask(e.crc32c),
        }),
        slices,
    })
}

/// `{prefix}.data-{shard:05}-of-{num_shards:05}`.
pub(crate) fn shard_path(prefix: &Path, shard: u32, num_shards: u32) -> PathBuf {
    crate::bundle::path::with_suffix(prefix, &format!(".data-{shard:05}-of-{num_shards:05}"))
}
