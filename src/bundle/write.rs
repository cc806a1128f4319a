//! A small V2 bundle writer: single shard, keys sorted, data blocks cut at
//! about 256 KiB with a restart every 16 entries, as TF's `BundleWriter`
//! does (`tensorflow/core/util/tensor_bundle/tensor_bundle.cc`). Used by
//! tests, benchmarks and fixtures; the lower-level [`TableBuilder`] and
//! [`BlockBuilder`] also let tests craft broken tables byte by byte.
//!
//! Files are written to sibling temp files and renamed into place, data
//! first, so a reader never sees an index without its data.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use prost::Message;

use crate::bundle::crc::mask;
use crate::bundle::entry::shard_path;
use crate::bundle::path::with_suffix;
use crate::bundle::slices::{encode_slice_key, extents_to_proto, Extent};
use crate::bundle::table::{BlockHandle, Footer, BLOCK_TYPE_RAW};
use crate::bundle::{strings, varint};
use crate::error::{Error, Result};
use crate::proto::bundle::{
    BundleEntryProto, BundleHeaderProto, ENDIANNESS_BIG, ENDIANNESS_LITTLE,
};
use crate::proto::tensor::{tensor_shape_proto, TensorShapeProto, VersionDef};
use crate::tensor::{Tensor, TensorData};

/// Byte order of the tensor data a [`BundleWriter`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Endianness {
    /// Little-endian, what TF writes on every common host.
    #[default]
    Little,
    /// Big-endian (header `endianness: BIG`), as an s390x host writes.
    Big,
}

/// How a [`BundleWriter`] lays out its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOptions {
    /// Byte order of tensor data (default little-endian).
    pub endianness: Endianness,
    /// A data block is cut once it reaches this many bytes (default 256 KiB).
    pub block_size: usize,
    /// Entries between restart points in data blocks (default 16).
    pub restart_interval: usize,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            endianness: Endianness::Little,
            block_size: 256 * 1024,
            restart_interval: 16,
        }
    }
}

/// Builds one SSTable block: prefix-compressed entries, then the restart
/// array and its count. Keys are taken in the order given, unchecked.
#[derive(Debug, Clone)]
pub struct BlockBuilder {
    buf: Vec<u8>,
    restarts: Vec<u32>,
    counter: usize,
    restart_interval: usize,
    last_key: Vec<u8>,
}

impl BlockBuilder {
    /// A builder that restarts prefix compression every `restart_interval`
    /// entries (at least 1).
    pub fn new(restart_interval: usize) -> BlockBuilder {
        BlockBuilder {
            buf: Vec::new(),
            restarts: vec![0],
            counter: 0,
            restart_interval: restart_interval.max(1),
            last_key: Vec::new(),
        }
    }

    /// Appends an entry.
    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        let shared = if self.counter < self.restart_interval {
            self.last_key
                .iter()
                .zip(key)
                .take_while(|(a, b)| a == b)
                .count()
        } else {
            self.restarts.push(self.buf.len() as u32);
            self.counter = 0;
            0
        };
        varint::encode_u64(shared as u64, &mut self.buf);
        varint::encode_u64((key.len() - shared) as u64, &mut self.buf);
        varint::encode_u64(value.len() as u64, &mut self.buf);
        self.buf.extend_from_slice(&key[shared..]);
        self.buf.extend_from_slice(value);
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
        self.counter += 1;
    }

    /// True before the first [`add`](Self::add).
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Size of the block if finished now.
    pub fn size_estimate(&self) -> usize {
        self.buf.len() + 4 * self.restarts.len() + 4
    }

    /// The block bytes (an empty block is `00000000 01000000`).
    pub fn finish(mut self) -> Vec<u8> {
        for r in &self.restarts {
            self.buf.extend_from_slice(&r.to_le_bytes());
        }
        self.buf
            .extend_from_slice(&(self.restarts.len() as u32).to_le_bytes());
        self.buf
    }
}

/// Appends `contents` and its trailer (type byte, masked crc32c of contents
/// and type) to `out`; returns the block's handle.
pub fn append_block(out: &mut Vec<u8>, contents: &[u8], block_type: u8) -> BlockHandle {
    let handle = BlockHandle {
        offset: out.len() as u64,
        size: contents.len() as u64,
    };
    out.extend_from_slice(contents);
    out.push(block_type);
    let crc = crc32c::crc32c_append(crc32c::crc32c(contents), &[block_type]);
    out.extend_from_slice(&mask(crc).to_le_bytes());
    handle
}

/// Builds a whole SSTable in memory from entries added in order (unchecked:
/// tests use this to write unsorted or duplicate keys on purpose). Each
/// index entry's key is the last key of its data block.
#[derive(Debug, Clone)]
pub struct TableBuilder {
    out: Vec<u8>,
    block_size: usize,
    restart_interval: usize,
    data: BlockBuilder,
    index: BlockBuilder,
    last_key: Vec<u8>,
}

impl TableBuilder {
    /// A builder cutting data blocks at `block_size` bytes with a restart
    /// every `restart_interval` entries.
    pub fn new(block_size: usize, restart_interval: usize) -> TableBuilder {
        TableBuilder {
            out: Vec::new(),
            block_size,
            restart_interval,
            data: BlockBuilder::new(restart_interval),
            index: BlockBuilder::new(1),
            last_key: Vec::new(),
        }
    }

    /// Appends an entry.
    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        self.data.add(key, value);
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
        if self.data.size_estimate() >= self.block_size {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.data.is_empty() {
            return;
        }
        let block =
            std::mem::replace(&mut self.data, BlockBuilder::new(self.restart_interval)).finish();
        let handle = append_block(&mut self.out, &block, BLOCK_TYPE_RAW);
        let mut value = Vec::new();
        handle.encode_to(&mut value);
        self.index.add(&self.last_key, &value);
    }

    /// Writes the last data block, an empty metaindex block, the index
    /// block and the footer; returns the file bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.flush();
        let metaindex = append_block(
            &mut self.out,
            &BlockBuilder::new(1).finish(),
            BLOCK_TYPE_RAW,
        );
        let index_block = std::mem::replace(&mut self.index, BlockBuilder::new(1)).finish();
        let index = append_block(&mut self.out, &index_block, BLOCK_TYPE_RAW);
        self.out
            .extend_from_slice(&Footer { metaindex, index }.encode());
        self.out
    }
}

/// Writes a single-shard little-endian V2 bundle at `prefix` holding
/// `tensors` (keys sorted in the index; data in the order given).
pub fn write_v2(prefix: &Path, tensors: &[(&str, &Tensor)]) -> Result<()> {
    write_v2_with(prefix, tensors, &WriteOptions::default())
}

/// [`write_v2`] with explicit [`WriteOptions`].
pub fn write_v2_with(
    prefix: &Path,
    tensors: &[(&str, &Tensor)],
    opts: &WriteOptions,
) -> Result<()> {
    let mut w = BundleWriter::create(prefix, opts.clone())?;
    for (key, t) in tensors {
        w.add(key, t)?;
    }
    w.finish()
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A sibling temp path for `target` (`.tfbn-tmp-*`, ignored by git).
fn temp_for(target: &Path) -> PathBuf {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = format!(".tfbn-tmp-{}-{n}-{name}", std::process::id());
    match target.parent() {
        Some(dir) => dir.join(tmp),
        None => PathBuf::from(tmp),
    }
}

/// Writes a single-shard V2 bundle, tensor by tensor (data streams to disk;
/// only the entries stay in memory), like TF's `BundleWriter`.
#[derive(Debug)]
pub struct BundleWriter {
    prefix: PathBuf,
    opts: WriteOptions,
    data_tmp: PathBuf,
    data: Option<BufWriter<File>>,
    offset: u64,
    entries: BTreeMap<Vec<u8>, BundleEntryProto>,
}

impl BundleWriter {
    /// Starts a bundle at `prefix` (files appear only at [`finish`](Self::finish)).
    pub fn create(prefix: &Path, opts: WriteOptions) -> Result<BundleWriter> {
        let data_tmp = temp_for(&shard_path(prefix, 0, 1));
        let file = File::create(&data_tmp).map_err(|e| Error::io(&data_tmp, e))?;
        Ok(BundleWriter {
            prefix: prefix.to_path_buf(),
            opts,
            data_tmp,
            data: Some(BufWriter::with_capacity(1 << 20, file)),
            offset: 0,
            entries: BTreeMap::new(),
        })
    }

    /// Adds an unpartitioned tensor under `key` (non-empty, not starting
    /// with a 0 byte, not added before).
    pub fn add(&mut self, key: &str, tensor: &Tensor) -> Result<()> {
        check_key(key)?;
        if self.entries.contains_key(key.as_bytes()) {
            return Err(Error::InvalidArgument(format!("key {key:?} added twice")));
        }
        let entry = self.write_data(key, tensor)?;
        self.entries.insert(key.as_bytes().to_vec(), entry);
        Ok(())
    }

    /// Adds one slice of the partitioned tensor `full_key` of shape
    /// `full_shape`, as TF's `BundleWriter::AddSlice`: the data goes under
    /// the slice key, and the slice is appended to the full entry. Each
    /// extent must lie inside `full_shape`, and `tensor`'s shape must be the
    /// slice's shape. Whether the slices form a partition is not checked
    /// here (the reader does).
    pub fn add_slice(
        &mut self,
        full_key: &str,
        full_shape: &[u64],
        extents: &[Extent],
        tensor: &Tensor,
    ) -> Result<()> {
        check_key(full_key)?;
        let bad = |what: String| Error::TensorMismatch {
            key: full_key.to_string(),
            what,
        };
        if extents.len() != full_shape.len() {
            return Err(bad(format!(
                "{} extents for rank {}",
                extents.len(),
                full_shape.len()
            )));
        }
        let mut slice_shape = Vec::with_capacity(extents.len());
        for (e, &dim) in extents.iter().zip(full_shape) {
            let len = match e.length {
                None if e.start == 0 => dim,
                Some(l)
                    if e.start >= 0
                        && l >= 0
                        && (e.start as u64)
                            .checked_add(l as u64)
                            .is_some_and(|end| end <= dim) =>
                {
                    l as u64
                }
                _ => return Err(bad(format!("extent {e:?} does not fit dimension {dim}"))),
            };
            slice_shape.push(len);
        }
        if tensor.shape != slice_shape {
            return Err(bad(format!(
                "slice tensor shape {:?}, extents say {slice_shape:?}",
                tensor.shape
            )));
        }
        let slice_key = encode_slice_key(full_key, extents);
        if self.entries.contains_key(&slice_key) {
            return Err(bad("slice added twice".into()));
        }
        let code = tensor.dtype.tf_code();
        let shape = shape_proto(full_shape);
        if let Some(full) = self.entries.get(full_key.as_bytes()) {
            if full.slices.is_empty() || full.dtype != code || full.shape.as_ref() != Some(&shape) {
                return Err(bad(
                    "slice does not match the tensor added before under this key".into(),
                ));
            }
        }
        let entry = self.write_data(full_key, tensor)?;
        self.entries.insert(slice_key, entry);
        let full = self
            .entries
            .entry(full_key.as_bytes().to_vec())
            .or_insert_with(|| BundleEntryProto {
                dtype: code,
                shape: Some(shape),
                ..Default::default()
            });
        full.slices.push(extents_to_proto(extents));
        Ok(())
    }

    /// Appends a tensor's bytes to the data file; returns its entry.
    fn write_data(&mut self, key: &str, t: &Tensor) -> Result<BundleEntryProto> {
        let big = self.opts.endianness == Endianness::Big;
        let bad = |what: String| Error::TensorMismatch {
            key: key.to_string(),
            what,
        };
        let elements = t.num_elements();
        let (bytes, crc) = match (&t.data, t.dtype.byte_width()) {
            (TensorData::Bytes(b), Some(w)) => {
                if (b.len() as u64) != elements.saturating_mul(w as u64) {
                    return Err(bad(format!(
                        "{} bytes for {elements} elements of {}",
                        b.len(),
                        t.dtype
                    )));
                }
                if big {
                    let mut swapped = b.clone();
                    crate::bundle::v2::swap_element_bytes(&mut swapped, t.dtype);
                    let crc = mask(crc32c::crc32c(&swapped));
                    (std::borrow::Cow::Owned(swapped), crc)
                } else {
                    (
                        std::borrow::Cow::Borrowed(b.as_slice()),
                        mask(crc32c::crc32c(b)),
                    )
                }
            }
            (TensorData::Strings(s), None) if t.dtype == crate::DType::String => {
                if s.len() as u64 != elements {
                    return Err(bad(format!("{} strings for {elements} elements", s.len())));
                }
                let (bytes, crc) = strings::encode(s, big);
                (std::borrow::Cow::Owned(bytes), crc)
            }
            _ => return Err(bad(format!("cannot write {} data of this kind", t.dtype))),
        };
        let path = &self.data_tmp;
        let out = self
            .data
            .as_mut()
            .ok_or_else(|| Error::InvalidArgument("writer already finished".into()))?;
        out.write_all(&bytes).map_err(|e| Error::io(path, e))?;
        let entry = BundleEntryProto {
            dtype: t.dtype.tf_code(),
            shape: Some(shape_proto(&t.shape)),
            shard_id: 0,
            offset: self.offset as i64,
            size: bytes.len() as i64,
            crc32c: crc,
            slices: Vec::new(),
        };
        self.offset += bytes.len() as u64;
        Ok(entry)
    }

    /// Writes the index and moves both files into place.
    pub fn finish(self) -> Result<()> {
        self.finish_with(|_| {})
    }

    /// [`finish`](Self::finish), after letting `edit` change the index
    /// entries: `(key, encoded value)` pairs in key order, the header
    /// (`""`, an encoded BundleHeaderProto) first. Tests use it to write
    /// precisely corrupted indexes; the table is built in the edited order.
    #[doc(hidden)]
    pub fn finish_with(mut self, edit: impl FnOnce(&mut Vec<(Vec<u8>, Vec<u8>)>)) -> Result<()> {
        let data_path = shard_path(&self.prefix, 0, 1);
        let index_path = with_suffix(&self.prefix, ".index");
        if let Some(mut out) = self.data.take() {
            out.flush().map_err(|e| Error::io(&self.data_tmp, e))?;
        }
        let header = BundleHeaderProto {
            num_shards: 1,
            endianness: match self.opts.endianness {
                Endianness::Little => ENDIANNESS_LITTLE,
                Endianness::Big => ENDIANNESS_BIG,
            },
            version: Some(VersionDef {
                producer: 1,
                ..Default::default()
            }),
        };
        let mut pairs = vec![(Vec::new(), header.encode_to_vec())];
        pairs.extend(
            std::mem::take(&mut self.entries)
                .into_iter()
                .map(|(k, e)| (k, e.encode_to_vec())),
        );
        edit(&mut pairs);
        let mut table = TableBuilder::new(self.opts.block_size, self.opts.restart_interval);
        for (k, v) in &pairs {
            table.add(k, v);
        }
        let index_tmp = temp_for(&index_path);
        let written = fs::write(&index_tmp, table.finish())
            .map_err(|e| Error::io(&index_tmp, e))
            .and_then(|()| {
                fs::rename(&self.data_tmp, &data_path).map_err(|e| Error::io(&data_path, e))
            })
            .and_then(|()| {
                fs::rename(&index_tmp, &index_path).map_err(|e| Error::io(&index_path, e))
            });
        if written.is_err() {
            let _ = fs::remove_file(&index_tmp);
        }
        written
    }
}

impl Drop for BundleWriter {
    fn drop(&mut self) {
        // Unfinished or failed: leave no partial output behind. After a
        // successful finish the temp file was renamed away and this is a
        // no-op.
        self.data.take();
        let _ = fs::remove_file(&self.data_tmp);
    }
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.as_bytes()[0] == 0 {
        return Err(Error::InvalidArgument(format!(
            "key {key:?}: tensor keys must be non-empty and not start with a 0 byte"
        )));
    }
    Ok(())
}

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
