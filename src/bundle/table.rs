//! Reading LevelDB-format SSTables, the container of V2 `.index` files and
//! V1 checkpoints (`docs/formats.md#table-container`).
//!
//! The file is: data blocks, a metaindex block, the index block and a 48-byte
//! footer. Every block is followed by a 1-byte type and the masked crc32c of
//! the block plus that type byte. Unlike LevelDB (whose `verify_checksums`
//! is off by default), every block crc is checked, and every offset, length,
//! restart point and key is validated before it is used.

use std::path::Path;

use crate::bundle::crc::unmask;
use crate::bundle::display_key;
use crate::bundle::varint::{self, VarintError};
use crate::error::{Error, Result};

/// Footer magic, little-endian in the last 8 bytes of the file.
pub const MAGIC: u64 = 0xdb47_7524_8b80_fb57;
/// Length of the footer.
pub const FOOTER_LEN: usize = 48;
/// Length of the trailer after every block: 1 type byte, 4 crc bytes.
pub const BLOCK_TRAILER_LEN: usize = 5;
/// Block type byte for an uncompressed block, the only type TF writes.
pub const BLOCK_TYPE_RAW: u8 = 0;

/// Where a block lies: its offset and its length without the trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHandle {
    /// Offset of the first byte of the block.
    pub offset: u64,
    /// Length of the block contents (the trailer is not counted).
    pub size: u64,
}

impl BlockHandle {
    /// Decodes a handle (varint64 offset, varint64 size) from the start of
    /// `buf`; returns it and the bytes read.
    pub fn decode(buf: &[u8]) -> Result<(BlockHandle, usize), VarintError> {
        let (offset, a) = varint::decode_u64(buf)?;
        let (size, b) = varint::decode_u64(&buf[a..])?;
        Ok((BlockHandle { offset, size }, a + b))
    }

    /// Appends the encoded handle to `out`.
    pub fn encode_to(&self, out: &mut Vec<u8>) {
        varint::encode_u64(self.offset, out);
        varint::encode_u64(self.size, out);
    }
}

/// The footer: the handles of the metaindex and index blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    /// The metaindex block (empty in TF files).
    pub metaindex: BlockHandle,
    /// The index block: one entry per data block.
    pub index: BlockHandle,
}

impl Footer {
    /// The 48 footer bytes: both handles, zero padding, then [`MAGIC`].
    pub fn encode(&self) -> [u8; FOOTER_LEN] {
        let mut v = Vec::with_capacity(FOOTER_LEN);
        self.metaindex.encode_to(&mut v);
        self.index.encode_to(&mut v);
        let mut out = [0u8; FOOTER_LEN];
        // Two handles take at most 40 bytes, so they always fit.
        out[..v.len()].copy_from_slice(&v);
        out[FOOTER_LEN - 8..].copy_from_slice(&MAGIC.to_le_bytes());
        out
    }
}

/// An SSTable held in memory (usually a memory map), with a checked footer.
#[derive(Debug, Clone, Copy)]
pub struct Table<'a> {
    path: &'a Path,
    data: &'a [u8],
    footer: Footer,
}

impl<'a> Table<'a> {
    /// Checks the file length and footer magic and decodes the two handles.
    /// `path` is only used in errors.
    pub fn open(path: &'a Path, data: &'a [u8]) -> Result<Table<'a>> {
        let len = data.len();
        if len < FOOTER_LEN {
            return Err(Error::TableTooShort {
                path: path.to_path_buf(),
                len: len as u64,
            });
        }
        let footer = &data[len - FOOTER_LEN..];
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&footer[FOOTER_LEN - 8..]);
        let found = u64::from_le_bytes(magic);
        if found != MAGIC {
            return Err(Error::FooterMagicMismatch {
                path: path.to_path_buf(),
                found,
            });
        }
        let corrupt = |e: VarintError| Error::BlockCorrupt {
            path: path.to_path_buf(),
            offset: (len - FOOTER_LEN) as u64,
            what: format!("footer: block handle: {e}"),
        };
        let handles = &footer[..FOOTER_LEN - 8];
        let (metaindex, n) = BlockHandle::decode(handles).map_err(corrupt)?;
        let (index, _) = BlockHandle::decode(&handles[n..]).map_err(corrupt)?;
        Ok(Table {
            path,
            data,
            footer: Footer { metaindex, index },
        })
    }

    /// True when `data` ends with the table magic (a cheap format sniff).
    pub fn has_magic(data: &[u8]) -> bool {
        data.len() >= FOOTER_LEN && data[data.len() - 8..] == MAGIC.to_le_bytes()
    }

    /// The decoded footer.
    pub fn footer(&self) -> Footer {
        self.footer
    }

    /// The contents of the block at `handle`, after checking that it and
    /// its trailer lie inside the file, that its masked crc32c (over the
    /// contents and the type byte) matches, and that its type is raw.
    pub fn block(&self, handle: BlockHandle) -> Result<&'a [u8]> {
        let len = self.data.len() as u64;
        let out_of_bounds = || Error::BlockOutOfBounds {
            path: self.path.to_path_buf(),
            offset: handle.offset,
            size: handle.size,
            len,
        };
        handle
            .offset
            .checked_add(handle.size)
            .and_then(|e| e.checked_add(BLOCK_TRAILER_LEN as u64))
            .filter(|&e| e <= len)
            .ok_or_else(out_of_bounds)?;
        // offset + size + trailer ≤ len, and len is a usize, so these
        // conversions are exact.
        let start = handle.offset as usize;
        let contents_end = start + handle.size as usize;
        let contents = &self.data[start..contents_end];
        let block_type = self.data[contents_end];
        let mut stored = [0u8; 4];
        stored.copy_from_slice(&self.data[contents_end + 1..contents_end + BLOCK_TRAILER_LEN]);
        let stored = unmask(u32::from_le_bytes(stored));
        let computed = crc32c::crc32c_append(crc32c::crc32c(contents), &[block_type]);
        if stored != computed {
            return Err(Error::BlockCrcMismatch {
                path: self.path.to_path_buf(),
                offset: handle.offset,
                stored,
                computed,
            });
        }
        if block_type != BLOCK_TYPE_RAW {
            return Err(Error::BlockTypeUnsupported {
                path: self.path.to_path_buf(),
                offset: handle.offset,
                block_type,
            });
        }
        Ok(contents)
    }

    /// Calls `f(key, value)` for every entry of the table in order: walks
    /// the index block, then each data block it names. Keys must be strictly
    /// increasing across the whole table ([`Error::KeysNotSorted`]).
    pub fn for_each(&self, mut f: impl FnMut(&[u8], &'a [u8]) -> Result<()>) -> Result<()> {
        let index_offset = self.footer.index.offset;
        let index = self.block(self.footer.index)?;
        let mut last: Option<Vec<u8>> = None;
        for_each_in_block(self.path, index_offset, index, |_, handle_bytes| {
            let (handle, _) =
                BlockHandle::decode(handle_bytes).map_err(|e| Error::BlockCorrupt {
                    path: self.path.to_path_buf(),
                    offset: index_offset,
                    what: format!("index entry: block handle: {e}"),
                })?;
            let block = self.block(handle)?;
            let mut first = true;
            let block_last = for_each_in_block(self.path, handle.offset, block, |key, value| {
                if first {
                    first = false;
                    if last.as_deref().is_some_and(|prev| key <= prev) {
                        return Err(Error::KeysNotSorted {
                            path: self.path.to_path_buf(),
                            key: display_key(key),
                        });
                    }
                }
                f(key, value)
            })?;
            if block_last.is_some() {
                last = block_last;
            }
            Ok(())
        })?;
        Ok(())
    }
}

/// Decodes one block and calls `f(key, value)` for each entry in order;
/// returns the last key (`None` when the block has no entries).
///
/// Checks: the restart array fits, every restart offset is the start of an
/// entry whose `shared` is 0 (the first at offset 0), every entry lies
/// inside the entry area, `shared` never exceeds the previous key, and keys
/// strictly increase. `offset` is the block's file offset, for errors.
pub fn for_each_in_block<'b>(
    path: &Path,
    offset: u64,
    block: &'b [u8],
    mut f: impl FnMut(&[u8], &'b [u8]) -> Result<()>,
) -> Result<Option<Vec<u8>>> {
    let corrupt = |what: String| Error::BlockCorrupt {
        path: path.to_path_buf(),
        offset,
        what,
    };
    let n = block.len();
    if n < 4 {
        return Err(corrupt(format!(
            "{n}-byte block is too short for its restart count"
        )));
    }
    let num_restarts = u32::from_le_bytes([block[n - 4], block[n - 3], block[n - 2], block[n - 1]]);
    let restart_bytes = (num_restarts as usize)
        .checked_mul(4)
        .filter(|&b| b <= n - 4)
        .ok_or_else(|| {
            corrupt(format!(
                "{num_restarts} restart points do not fit in a {n}-byte block"
            ))
        })?;
    let data_end = n - 4 - restart_bytes;
    let restarts = &block[data_end..n - 4];
    let restart_at = |i: usize| -> u32 {
        let r = &restarts[4 * i..4 * i + 4];
        u32::from_le_bytes([r[0], r[1], r[2], r[3]])
    };
    let num_restarts = num_restarts as usize;
    if data_end > 0 && (num_restarts == 0 || restart_at(0) != 0) {
        return Err(corrupt("the first entry is not a restart point".into()));
    }

    let mut key: Vec<u8> = Vec::new();
    let mut pos = 0usize;
    let mut next_restart = 0usize;
    let mut first = true;
    while pos < data_end {
        let at_restart = next_restart < num_restarts && restart_at(next_restart) as usize == pos;
        if at_restart {
            next_restart += 1;
        } else if next_restart < num_restarts && (restart_at(next_restart) as usize) < pos {
            return Err(corrupt(format!(
                "restart offset {} is not the start of an entry",
                restart_at(next_restart)
            )));
        }
        let area = &block[pos..data_end];
        let bad = |field: &str, e: VarintError| corrupt(format!("entry at {pos}: {field}: {e}"));
        let (shared, a) = varint::decode_u32(area).map_err(|e| bad("shared", e))?;
        let (non_shared, b) = varint::decode_u32(&area[a..]).map_err(|e| bad("non_shared", e))?;
        let (value_len, c) = varint::decode_u32(&area[a + b..]).map_err(|e| bad("value_len", e))?;
        let (shared, non_shared, value_len) =
            (shared as usize, non_shared as usize, value_len as usize);
        if shared > key.len() {
            return Err(corrupt(format!(
                "entry at {pos}: shared prefix {shared} is longer than the previous key ({} bytes)",
                key.len()
            )));
        }
        if at_restart && shared != 0 {
            return Err(corrupt(format!(
                "entry at {pos}: restart point with shared prefix {shared}"
            )));
        }
        let header = a + b + c;
        let entry_len = header
            .checked_add(non_shared)
            .and_then(|l| l.checked_add(value_len))
            .filter(|&l| l <= area.len())
            .ok_or_else(|| {
                corrupt(format!(
                    "entry at {pos} runs past the end of the block's entries"
                ))
            })?;
        let suffix = &area[header..header + non_shared];
        let value = &area[header + non_shared..entry_len];
        // key = previous[..shared] + suffix > previous ⇔ suffix > previous[shared..].
        if !first && suffix <= &key[shared..] {
            let mut k = key[..shared].to_vec();
            k.extend_from_slice(suffix);
            return Err(Error::KeysNotSorted {
                path: path.to_path_buf(),
                key: display_key(&k),
            });
        }
        key.truncate(shared);
        key.extend_from_slice(suffix);
        first = false;
        f(&key, value)?;
        pos += entry_len;
    }
    // Restart points left over must not point into or past the entries; an
    // empty block legitimately holds a single restart at 0.
    if (next_restart..num_restarts).any(|i| data_end > 0 || restart_at(i) != 0) {
        return Err(corrupt(format!(
            "restart offset {} is not the start of an entry",
            restart_at(next_restart)
        )));
    }
    Ok((!first).then_some(key))
}
