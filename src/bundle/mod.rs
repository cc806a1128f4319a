//! Native reader (and a small writer) for TensorFlow checkpoints: V2 tensor
//! bundles (`PREFIX.index` + `PREFIX.data-SSSSS-of-NNNNN`, any endianness,
//! sharded, partitioned) and V1 legacy checkpoints. Byte-level format:
//! `docs/formats.md#v2-tensor-bundle` and `#v1-checkpoints`.
//!
//! Files come from strangers, so every size, offset, varint, key order,
//! crc32c and slice is checked and each failure is a typed [`Error`] naming
//! the file and the key; nothing read from a file is allocated before it has
//! been checked against the file's length.
//!
//! Layers, bottom up: [`varint`] and [`crc`] primitives; [`table`] (the
//! SSTable container); entry validation; [`strings`] framing;
//! [`slices`] (OrderedCode slice keys and reassembly); the V2 and V1 readers;
//! [`write`](mod@write).

mod buf;
pub mod crc;
mod entry;
mod path;
pub mod slices;
pub mod strings;
pub mod table;
mod v1;
mod v2;
pub mod varint;
pub mod write;

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

pub use slices::{decode_slice_key, encode_slice_key, Extent};
pub use write::{write_v2, write_v2_with, BundleWriter, Endianness, WriteOptions};

/// Which checkpoint format a [`Bundle`] was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleFormat {
    /// A V2 tensor bundle with `num_shards` data files.
    V2 {
        /// Header `num_shards` (≥ 1).
        num_shards: u32,
    },
    /// A V1 checkpoint in `num_files` files (1 unless sharded).
    V1 {
        /// Number of files.
        num_files: u32,
    },
}

/// One tensor of a checkpoint, as listed (no data read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    /// The key (UTF-8). The header and raw slice keys are not listed.
    pub key: String,
    /// Element type.
    pub dtype: DType,
    /// Dimensions; empty for a scalar.
    pub shape: Vec<u64>,
    /// Stored in slices (V2: the entry has `slices`; V1: more than one slice).
    pub partitioned: bool,
    /// Elements × width for fixed-width dtypes; `None` for strings and other
    /// variable-width types.
    pub num_bytes: Option<u64>,
}

#[derive(Debug)]
enum Reader {
    V2(v2::V2),
    V1(v1::V1),
}

/// An open checkpoint: its entries are listed and checked, its data files
/// memory-mapped; tensors are read (and crc-checked) on demand.
#[derive(Debug)]
pub struct Bundle {
    prefix: PathBuf,
    format: BundleFormat,
    files: Vec<PathBuf>,
    entries: Vec<EntryInfo>,
    reader: Reader,
    note: Option<String>,
}

impl Bundle {
    /// Opens any checkpoint path form: a prefix (`dir/model.ckpt`); a
    /// `.index` file; a V2 data file path (`…data-00000-of-00001`); a folder
    /// holding a `checkpoint` text file, or that file (`model_checkpoint_path: "…"`,
    /// relative to the folder; when it names something that is not a
    /// checkpoint here, the same basename inside this folder, else the
    /// folder's own files are used, see [`Bundle::resolution_note`]); a folder whose files are
    /// named `.index` / `.data-…` (empty basename) or that holds exactly one
    /// `*.index`; a V1 file (an SSTable whose empty key holds the
    /// SavedTensorSlices meta), including sharded V1 `NAME-00000-of-00002`
    /// (or `NAME` when only the shards exist).
    ///
    /// Reads the whole index (O(entries)) and checks every entry, that every
    /// data shard exists and is long enough, and every partition; tensor
    /// crcs are checked when read.
    pub fn open(path: impl AsRef<Path>) -> Result<Bundle> {
        let (resolved, note) = path::resolve(path.as_ref())?;
        match resolved {
            path::Resolved::V2 { prefix } => {
                let o = v2::open(&prefix)?;
                Ok(Bundle {
                    prefix,
                    format: BundleFormat::V2 {
                        num_shards: o.num_shards,
                    },
                    files: o.files,
                    entries: o.entries,
                    reader: Reader::V2(o.reader),
                    note,
                })
            }
            path::Resolved::V1 { name, files } => {
                let o = v1::open(&files)?;
                Ok(Bundle {
                    prefix: name,
                    format: BundleFormat::V1 {
                        num_files: files.len() as u32,
                    },
                    files,
                    entries: o.entries,
                    reader: Reader::V1(o.reader),
                    note,
                })
            }
        }
    }

    /// The resolved prefix (V1: the file path; sharded V1: `NAME` without
    /// the `-SSSSS-of-NNNNN` suffix).
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// Set when the files read are not the ones the folder's `checkpoint`
    /// file named (it pointed at a path that is not a checkpoint here, such
    /// as the writer's own folder): says what was read instead.
    pub fn resolution_note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    /// The format and its shard or file count.
    pub fn format(&self) -> BundleFormat {
        self.format
    }

    /// The files read: the index, then the data shards (V1: the files).
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Every tensor, sorted by key.
    pub fn entries(&self) -> &[EntryInfo] {
        &self.entries
    }

    /// The entry for `key`, if listed.
    pub fn entry(&self, key: &str) -> Option<&EntryInfo> {
        self.position(key).map(|i| &self.entries[i])
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.entries
            .binary_search_by(|e| e.key.as_str().cmp(key))
            .ok()
    }

    fn find(&self, key: &str) -> Result<(usize, &EntryInfo)> {
        self.position(key)
            .map(|i| (i, &self.entries[i]))
            .ok_or_else(|| Error::KeyNotFound {
                path: self.prefix.clone(),
                key: key.to_string(),
            })
    }

    /// Reads a tensor: crc-checked, partitioned tensors reassembled,
    /// big-endian data byte-swapped to little-endian.
    pub fn read(&self, key: &str) -> Result<Tensor> {
        let (i, info) = self.find(key)?;
        match &self.reader {
            Reader::V2(r) => r.read(i, info),
            Reader::V1(r) => r.read(i, info),
        }
    }

    /// As [`Bundle::read_raw`], for callers that stream the bytes anyway:
    /// a tensor borrowed from the memory map comes back with its crc check
    /// still to run ([`Deferred::check`]), so that the caller can check it
    /// chunk by chunk while the data is in cache (one pass over memory
    /// instead of two). The caller must run the check before trusting or
    /// publishing anything made from the bytes. Owned results (V1,
    /// big-endian, partitioned) are checked before they are returned.
    pub fn read_raw_then_check(&self, key: &str) -> Result<Deferred<'_>> {
        let (i, info) = self.find(key)?;
        match &self.reader {
            Reader::V2(r) => r.read_raw_deferred(i, info),
            Reader::V1(r) => Ok(Deferred {
                bytes: r.read_raw(i, info)?,
                check: None,
            }),
        }
    }

    /// Fixed-width tensors only: the little-endian element bytes, borrowed
    /// from the memory map when the tensor is stored contiguously
    /// little-endian (V2, unpartitioned), crc verified; owned otherwise.
    /// Strings and other variable-width dtypes give
    /// [`Error::DTypeUnreadable`].
    pub fn read_raw(&self, key: &str) -> Result<Cow<'_, [u8]>> {
        let (i, info) = self.find(key)?;
        match &self.reader {
            Reader::V2(r) => r.read_raw(i, info),
            Reader::V1(r) => r.read_raw(i, info),
        }
    }
}

/// Bytes from [`Bundle::read_raw_then_check`] and the crc check they still
/// need, if any.
#[derive(Debug)]
pub struct Deferred<'a> {
    /// The little-endian element bytes.
    pub bytes: Cow<'a, [u8]>,
    /// The check still to run on `bytes` (`None`: already checked).
    pub check: Option<CrcCheck>,
}

/// A tensor's stored masked crc32c, to compare with the crc of its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrcCheck {
    /// The crc32c the index stores for the tensor (unmasked).
    pub expected: u32,
    /// The data file holding the tensor.
    pub path: PathBuf,
    /// The tensor's key.
    pub key: String,
}

impl CrcCheck {
    /// `Ok` when `computed` (the crc32c of all the tensor's bytes, e.g.
    /// accumulated with `crc32c::crc32c_append`) equals the stored one;
    /// otherwise [`Error::EntryCrcMismatch`].
    pub fn verify(&self, computed: u32) -> Result<()> {
        if computed == self.expected {
            Ok(())
        } else {
            Err(Error::EntryCrcMismatch {
                path: self.path.clone(),
                key: self.key.clone(),
                stored: self.expected,
                computed,
            })
        }
    }
}

/// Memory-maps a whole regular file read-only (a FIFO or device is
/// [`Error::FileNotRegular`], refused without blocking).
fn map_file(path: &Path) -> Result<Mmap> {
    let file = crate::fsx::open_regular(path)?;
    // SAFETY: the map is read-only and private to this process. If another
    // process truncates the file while it is mapped, reads past the new end
    // fault (SIGBUS); that is the accepted cost of memory-mapping
    // checkpoints, as in every mmap-based reader (safetensors, candle).
    unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))
}

/// A key as shown in errors: a slice key as `name[start,length:…]`, a UTF-8
/// key as itself, anything else with its bytes escaped.
pub(crate) fn display_key(key: &[u8]) -> String {
    if key.first() == Some(&0) {
        if let Some((name, extents)) = decode_slice_key(key) {
            return format!("{name}[{}]", slices::slice_spec_string(&extents));
        }
    }
    match std::str::from_utf8(key) {
        Ok(s) => s.to_string(),
        Err(_) => key.escape_ascii().to_string(),
    }
}

#[cfg(test)]
mod tests;
