//! The V2 tensor bundle: `PREFIX.index` (an SSTable of BundleEntryProtos
//! after a BundleHeaderProto at the empty key) and memory-mapped
//! `PREFIX.data-SSSSS-of-NNNNN` shards (`docs/formats.md#v2-tensor-bundle`).
//!
//! Everything structural is checked at open, in one pass over the index:
//! header, every entry, every shard's presence and length, and every
//! partition. Reading is then bounds-checked slicing, the crc, and a copy
//! (none for [`Bundle::read_raw`](crate::bundle::Bundle::read_raw) on
//! little-endian unpartitioned tensors).

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::bundle::buf::advise_huge_pages;
use crate::bundle::crc::copy_with_crc;
use crate::bundle::entry::{self, Entry, Location, ShardInfo};
use crate::bundle::path::with_suffix;
use crate::bundle::slices::{check_partition, encode_slice_key, for_each_run, SliceBox};
use crate::bundle::strings::{self, StringsError};
use crate::bundle::table::Table;
use crate::bundle::{display_key, map_file, EntryInfo};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::{Tensor, TensorData};

/// How one listed tensor is stored.
#[derive(Debug)]
enum Stored {
    /// In one piece.
    Whole(Location),
    /// In slices, each with its box in the full tensor, its bytes and its
    /// slice key (display form, for errors).
    Partitioned(Vec<(SliceBox, Location, String)>),
}

/// An open V2 bundle.
#[derive(Debug)]
pub(crate) struct V2 {
    index_path: PathBuf,
    shard_paths: Vec<PathBuf>,
    shards: Vec<Mmap>,
    big_endian: bool,
    /// Parallel to the bundle's entry list.
    stored: Vec<Stored>,
}

/// What [`open`] found.
pub(crate) struct Opened {
    /// The reader.
    pub reader: V2,
    /// Listed tensors, sorted by key.
    pub entries: Vec<EntryInfo>,
    /// Index file, then the data shards.
    pub files: Vec<PathBuf>,
    /// Header `num_shards`.
    pub num_shards: u32,
}

/// Opens and checks the bundle at `prefix`.
pub(crate) fn open(prefix: &Path) -> Result<Opened> {
    let index_path = with_suffix(prefix, ".index");
    let index_map = map_file(&index_path)?;
    let table = Table::open(&index_path, &index_map)?;
    let mut pairs: Vec<(Vec<u8>, &[u8])> = Vec::new();
    table.for_each(|key, value| {
        pairs.push((key.to_vec(), value));
        Ok(())
    })?;
    let Some(((header_key, header_bytes), rest)) = pairs.split_first() else {
        return Err(Error::HeaderMissing { path: index_path });
    };
    if !header_key.is_empty() {
        return Err(Error::HeaderMissing { path: index_path });
    }
    let header = entry::parse_header(&index_path, header_bytes)?;

    let mut shard_paths = Vec::new();
    let mut shards = Vec::new();
    for s in 0..header.num_shards {
        let path = entry::shard_path(prefix, s, header.num_shards);
        // A FIFO shard would block the open; map_file refuses it.
        let map = match map_file(&path) {
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::ShardMissing {
                    path,
                    num_shards: header.num_shards as i32,
                })
            }
            other => other?,
        };
        shard_paths.push(path);
        shards.push(map);
    }
    let infos: Vec<ShardInfo<'_>> = shard_paths
        .iter()
        .zip(&shards)
        .map(|(path, map)| ShardInfo {
            path,
            len: map.len() as u64,
        })
        .collect();

    // Slice keys start with OrderedCode's unsigned 0 (a 0x00 byte), which no
    // tensor name does; they are checked like any entry but not listed.
    let mut named: Vec<(String, Entry)> = Vec::new();
    let mut slice_entries: HashMap<&[u8], Entry> = HashMap::new();
    for (key, value) in rest {
        if key.first() == Some(&0) {
            let e = entry::parse_entry(&index_path, &display_key(key), value, &infos)?;
            slice_entries.insert(key.as_slice(), e);
            continue;
        }
        let name = String::from_utf8(key.clone()).map_err(|_| Error::EntryInvalid {
            path: index_path.clone(),
            key: display_key(key),
            what: "the key is not UTF-8".into(),
        })?;
        let e = entry::parse_entry(&index_path, &name, value, &infos)?;
        named.push((name, e));
    }

    let total_data: u64 = infos.iter().map(|s| s.len).sum();
    let mut entries = Vec::with_capacity(named.len());
    let mut stored = Vec::with_capacity(named.len());
    let mut slices_used: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
    for (name, e) in named {
        let s = match e.location {
            Some(loc) => Stored::Whole(loc),
            None => {
                let slices = resolve_slices(&index_path, &name, &e, &slice_entries, total_data)?;
                slices_used.extend(e.slices.iter().map(|x| encode_slice_key(&name, x)));
                Stored::Partitioned(slices)
            }
        };
        entries.push(EntryInfo {
            key: name,
            dtype: e.dtype,
            shape: e.shape,
            partitioned: matches!(s, Stored::Partitioned(_)),
            num_bytes: e.num_bytes,
        });
        stored.push(s);
    }
    // Every slice entry belongs to a listed tensor (resolve_slices found
    // each of the listed tensors' slices, and slice keys are unique). A
    // slice left over is a variable whose full entry is gone: TF's reader
    // would skip it in silence, and the variable would vanish (a layer's
    // beta read as absent, i.e. center=False).
    if slices_used.len() != slice_entries.len() {
        check_orphan_slices(&index_path, &slices_used, &slice_entries)?;
    }
    let mut files = vec![index_path.clone()];
    files.extend(shard_paths.iter().cloned());
    Ok(Opened {
        reader: V2 {
            index_path,
            shard_paths,
            shards,
            big_endian: header.big_endian,
            stored,
        },
        entries,
        files,
        num_shards: header.num_shards,
    })
}

/// [`Error::SliceOrphaned`] for the first slice entry no full entry lists.
fn check_orphan_slices(
    index: &Path,
    used: &std::collections::HashSet<Vec<u8>>,
    slice_entries: &HashMap<&[u8], Entry>,
) -> Result<()> {
    let mut orphans: Vec<&[u8]> = slice_entries
        .keys()
        .copied()
        .filter(|key| !used.contains(*key))
        .collect();
    orphans.sort();
    let Some(first) = orphans.first() else {
        return Ok(());
    };
    let variable = crate::bundle::decode_slice_key(first)
        .map(|(n, _)| n)
        .unwrap_or_else(|| display_key(first));
    Err(Error::SliceOrphaned {
        path: index.to_path_buf(),
        variable,
        slice: display_key(first),
        count: orphans.len(),
    })
}

/// Checks a partitioned entry's slices (a partition of the full shape, each
/// stored under its slice key with the same dtype and the slice's shape)
/// and returns where each one's bytes are.
fn resolve_slices(
    index: &Path,
    name: &str,
    full: &Entry,
    slice_entries: &HashMap<&[u8], Entry>,
    total_data: u64,
) -> Result<Vec<(SliceBox, Location, String)>> {
    let invalid = |what: String| Error::SliceInvalid {
        path: index.to_path_buf(),
        key: name.to_string(),
        what,
    };
    let boxes = check_partition(&full.shape, &full.slices).map_err(invalid)?;
    let mut out = Vec::with_capacity(boxes.len());
    let mut bytes = 0u64;
    for (extents, b) in full.slices.iter().zip(boxes) {
        let key = encode_slice_key(name, extents);
        let shown = display_key(&key);
        let e = slice_entries
            .get(key.as_slice())
            .ok_or_else(|| invalid(format!("slice {shown} has no entry")))?;
        if e.dtype != full.dtype {
            return Err(invalid(format!(
                "slice {shown} has dtype {}, the tensor {}",
                e.dtype, full.dtype
            )));
        }
        if e.shape != b.len {
            return Err(invalid(format!(
                "slice {shown} has shape {:?}, its extents say {:?}",
                e.shape, b.len
            )));
        }
        let loc = e
            .location
            .ok_or_else(|| invalid(format!("slice {shown} is itself partitioned")))?;
        bytes = bytes.saturating_add(loc.size);
        out.push((b, loc, shown));
    }
    // Without overlaps each slice's bytes are distinct file bytes; slices
    // pointing at the same bytes over and over could otherwise make one read
    // allocate far more than the checkpoint holds.
    if bytes > total_data {
        return Err(Error::TensorTooLarge {
            path: index.to_path_buf(),
            key: name.to_string(),
            bytes,
            limit: total_data,
        });
    }
    Ok(out)
}

impl V2 {
    /// The bytes of `loc` in its shard (in bounds: checked at open).
    fn bytes(&self, key: &str, loc: &Location) -> Result<&[u8]> {
        let map = &self.shards[loc.shard];
        let start = usize::try_from(loc.offset).ok();
        let end = start.and_then(|s| s.checked_add(usize::try_from(loc.size).ok()?));
        match (start, end) {
            (Some(s), Some(e)) if e <= map.len() => Ok(&map[s..e]),
            _ => Err(Error::OffsetPastShardEnd {
                path: self.shard_paths[loc.shard].clone(),
                key: key.to_string(),
                offset: loc.offset,
                size: loc.size,
                len: map.len() as u64,
            }),
        }
    }

    fn crc_error(&self, key: &str, loc: &Location, computed: u32) -> Error {
        Error::EntryCrcMismatch {
            path: self.shard_paths[loc.shard].clone(),
            key: key.to_string(),
            stored: loc.crc,
            computed,
        }
    }

    /// The bytes of `loc`, copied, crc-checked and converted to little-endian,
    /// in one pass over the source (copy, crc and byte swap chunk by chunk).
    fn fixed(&self, key: &str, dtype: DType, loc: &Location) -> Result<Vec<u8>> {
        let src = self.bytes(key, loc)?;
        let (out, crc) = if self.big_endian {
            copy_with_crc(src, |chunk| swap_element_bytes(chunk, dtype))
        } else {
            copy_with_crc(src, |_| {})
        };
        if crc != loc.crc {
            return Err(self.crc_error(key, loc, crc));
        }
        Ok(out)
    }

    fn strings(&self, key: &str, elements: u64, loc: &Location) -> Result<Vec<Vec<u8>>> {
        strings::decode(self.bytes(key, loc)?, elements, loc.crc, self.big_endian).map_err(|e| {
            match e {
                StringsError::Framing(what) => Error::StringFramingInvalid {
                    path: self.shard_paths[loc.shard].clone(),
                    key: key.to_string(),
                    what,
                },
                StringsError::Crc { computed, .. } => self.crc_error(key, loc, computed),
            }
        })
    }

    /// Reads listed tensor `i`.
    pub(crate) fn read(&self, i: usize, info: &EntryInfo) -> Result<Tensor> {
        let key = info.key.as_str();
        let data = match (&self.stored[i], info.dtype) {
            (Stored::Whole(loc), DType::String) => {
                TensorData::Strings(self.strings(key, elements(&info.shape), loc)?)
            }
            (Stored::Whole(loc), dtype) if dtype.byte_width().is_some() => {
                TensorData::Bytes(self.fixed(key, dtype, loc)?)
            }
            (Stored::Partitioned(slices), DType::String) => {
                let mut out = vec![Vec::new(); elements(&info.shape) as usize];
                for (b, loc, shown) in slices {
                    let mut values = self.strings(shown, b.volume(), loc)?;
                    for_each_run(&info.shape, b, |dst, src, n| {
                        let (dst, src, n) = (dst as usize, src as usize, n as usize);
                        for (o, v) in out[dst..dst + n].iter_mut().zip(&mut values[src..src + n]) {
                            *o = std::mem::take(v);
                        }
                    });
                }
                TensorData::Strings(out)
            }
            (Stored::Partitioned(slices), dtype) if dtype.byte_width().is_some() => {
                TensorData::Bytes(self.assemble(dtype, info, slices)?)
            }
            (_, dtype) => return Err(unreadable(&self.index_path, key, dtype)),
        };
        Ok(Tensor {
            dtype: info.dtype,
            shape: info.shape.clone(),
            data,
        })
    }

    /// Copies fixed-width slices into one row-major buffer.
    fn assemble(
        &self,
        dtype: DType,
        info: &EntryInfo,
        slices: &[(SliceBox, Location, String)],
    ) -> Result<Vec<u8>> {
        let width = dtype.byte_width().unwrap_or(1) as u64;
        // Bounded at open by the shards' total length.
        let total = info.num_bytes.unwrap_or(0) as usize;
        // Zeroed by the kernel when large (calloc), and not yet touched.
        let mut out = vec![0u8; total];
        advise_huge_pages(&mut out);
        for (b, loc, shown) in slices {
            let src = self.bytes(shown, loc)?;
            let crc = crc32c::crc32c(src);
            if crc != loc.crc {
                return Err(self.crc_error(shown, loc, crc));
            }
            for_each_run(&info.shape, b, |dst, from, n| {
                let (dst, from, n) = (
                    (dst * width) as usize,
                    (from * width) as usize,
                    (n * width) as usize,
                );
                out[dst..dst + n].copy_from_slice(&src[from..from + n]);
            });
        }
        if self.big_endian {
            swap_element_bytes(&mut out, dtype);
        }
        Ok(out)
    }

    /// Little-endian element bytes of fixed-width tensor `i`; borrowed from
    /// the map when stored whole and little-endian.
    /// As [`Self::read_raw`], but a tensor borrowed from the map comes back
    /// *unchecked*, with the check to run on its bytes later (see
    /// [`super::Deferred`]); owned results are checked as usual.
    pub(crate) fn read_raw_deferred(
        &self,
        i: usize,
        info: &EntryInfo,
    ) -> Result<super::Deferred<'_>> {
        if info.dtype.byte_width().is_none() {
            return Err(unreadable(&self.index_path, &info.key, info.dtype));
        }
        match &self.stored[i] {
            Stored::Whole(loc) if !self.big_endian => Ok(super::Deferred {
                bytes: Cow::Borrowed(self.bytes(&info.key, loc)?),
                check: Some(super::CrcCheck {
                    expected: loc.crc,
                    path: self.shard_paths[loc.shard].clone(),
                    key: info.key.clone(),
                }),
            }),
            _ => Ok(super::Deferred {
                bytes: self.read_raw(i, info)?,
                check: None,
            }),
        }
    }

    pub(crate) fn read_raw(&self, i: usize, info: &EntryInfo) -> Result<Cow<'_, [u8]>> {
        let key = info.key.as_str();
        if info.dtype.byte_width().is_none() {
            return Err(unreadable(&self.index_path, key, info.dtype));
        }
        match &self.stored[i] {
            Stored::Whole(loc) if !self.big_endian => {
                let bytes = self.bytes(key, loc)?;
                let crc = crc32c::crc32c(bytes);
                if crc != loc.crc {
                    return Err(self.crc_error(key, loc, crc));
                }
                Ok(Cow::Borrowed(bytes))
            }
            Stored::Whole(loc) => Ok(Cow::Owned(self.fixed(key, info.dtype, loc)?)),
            Stored::Partitioned(slices) => Ok(Cow::Owned(self.assemble(info.dtype, info, slices)?)),
        }
    }
}

/// Product of a validated shape (fits in u64, and for listed tensors the
/// element count is bounded by the data it was checked against).
fn elements(shape: &[u64]) -> u64 {
    shape.iter().product()
}

pub(crate) fn unreadable(path: &Path, key: &str, dtype: DType) -> Error {
    Error::DTypeUnreadable {
        path: path.to_path_buf(),
        key: key.to_string(),
        dtype,
    }
}

/// Reverses the bytes of each element (each half of a complex): big-endian
/// to little-endian and back.
pub(crate) fn swap_element_bytes(bytes: &mut [u8], dtype: DType) {
    let unit = match dtype {
        DType::Complex64 => 4,
        DType::Complex128 => 8,
        d => d.byte_width().unwrap_or(1),
    };
    if unit > 1 {
        for c in bytes.chunks_exact_mut(unit) {
            c.reverse();
        }
    }
}
