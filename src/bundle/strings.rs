//! DT_STRING tensors in a V2 data file (`WriteStringTensor` /
//! `ReadStringTensor` in `tensorflow/core/util/tensor_bundle/tensor_bundle.cc`;
//! `docs/formats.md#string-tensors`):
//!
//! 1. N varint64 lengths;
//! 2. a fixed32 masked crc32c of the lengths, each taken as a 4-byte
//!    integer (8 bytes if it exceeds `u32::MAX`), not as its varint bytes;
//! 3. the concatenated string bytes.
//!
//! The entry crc is the running crc over the lengths (as in 2), the 4 stored
//! checksum bytes, then the string bytes.
//!
//! TF hashes the lengths and stores the checksum in the writer's native byte
//! order, so a BIG-endian bundle uses big-endian words here; everything in
//! this module takes that order as a parameter.

use crate::bundle::crc::{mask, unmask};
use crate::bundle::varint;

/// Why a string tensor did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StringsError {
    /// The framing is broken; says how.
    Framing(String),
    /// The entry crc does not match (unmasked stored, computed).
    Crc {
        /// Unmasked crc from the entry.
        stored: u32,
        /// crc computed over the bytes.
        computed: u32,
    },
}

/// Extends `crc` with one length, as TF hashes it: 4 bytes when it fits in
/// 32 bits (for backward compatibility), else 8 bytes.
fn extend_len(crc: u32, len: u64, big_endian: bool) -> u32 {
    match u32::try_from(len) {
        Ok(l) if big_endian => crc32c::crc32c_append(crc, &l.to_be_bytes()),
        Ok(l) => crc32c::crc32c_append(crc, &l.to_le_bytes()),
        Err(_) if big_endian => crc32c::crc32c_append(crc, &len.to_be_bytes()),
        Err(_) => crc32c::crc32c_append(crc, &len.to_le_bytes()),
    }
}

/// Smallest byte size an `n`-string tensor can have: one byte per length
/// plus the 4-byte checksum. `None` on overflow.
pub(crate) fn min_size(n: u64) -> Option<u64> {
    n.checked_add(4)
}

/// Decodes `n` strings from `bytes` (exactly the entry's `[offset,
/// offset + size)`), checking the length checksum, that the lengths add up
/// to exactly the bytes that follow, and the entry crc `stored_crc`
/// (unmasked). Nothing is allocated until all of that holds.
pub(crate) fn decode(
    bytes: &[u8],
    n: u64,
    stored_crc: u32,
    big_endian: bool,
) -> Result<Vec<Vec<u8>>, StringsError> {
    let framing = |what: String| StringsError::Framing(what);
    if min_size(n).is_none_or(|m| m > bytes.len() as u64) {
        return Err(framing(format!(
            "{n} strings need at least {n}+4 bytes, the entry has {}",
            bytes.len()
        )));
    }
    // Pass 1: lengths, their crc and their sum; no allocation.
    let mut pos = 0usize;
    let mut crc = 0u32;
    let mut total = 0u64;
    for i in 0..n {
        let (len, used) =
            varint::decode_u64(&bytes[pos..]).map_err(|e| framing(format!("length {i}: {e}")))?;
        pos += used;
        crc = extend_len(crc, len, big_endian);
        total = total
            .checked_add(len)
            .ok_or_else(|| framing(format!("length {i} ({len}) overflows the total")))?;
    }
    let Some(sum_bytes) = bytes.get(pos..pos + 4) else {
        return Err(framing("the lengths run into the length checksum".into()));
    };
    let word = [sum_bytes[0], sum_bytes[1], sum_bytes[2], sum_bytes[3]];
    let stored_len_crc = unmask(if big_endian {
        u32::from_be_bytes(word)
    } else {
        u32::from_le_bytes(word)
    });
    if stored_len_crc != crc {
        return Err(framing(format!(
            "length checksum mismatch (stored {stored_len_crc:#010x}, computed {crc:#010x})"
        )));
    }
    let body = &bytes[pos + 4..];
    if total != body.len() as u64 {
        return Err(framing(format!(
            "the lengths add up to {total} bytes, but {} bytes follow them",
            body.len()
        )));
    }
    crc = crc32c::crc32c_append(crc, sum_bytes);
    crc = crc32c::crc32c_append(crc, body);
    if crc != stored_crc {
        return Err(StringsError::Crc {
            stored: stored_crc,
            computed: crc,
        });
    }
    // Pass 2: every length is now known to fit.
    let mut out = Vec::with_capacity(n as usize);
    let mut lens = 0usize;
    let mut at = 0usize;
    for _ in 0..n {
        let (len, used) = varint::decode_u64(&bytes[lens..]).map_err(|e| framing(e.to_string()))?;
        lens += used;
        let len = len as usize;
        out.push(body[at..at + len].to_vec());
        at += len;
    }
    Ok(out)
}

/// Encodes strings in TF's layout; returns the bytes and the masked entry crc.
pub fn encode(strings: &[Vec<u8>], big_endian: bool) -> (Vec<u8>, u32) {
    let body: usize = strings.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(strings.len() + 4 + body);
    let mut crc = 0u32;
    for s in strings {
        varint::encode_u64(s.len() as u64, &mut out);
        crc = extend_len(crc, s.len() as u64, big_endian);
    }
    let sum = if big_endian {
        mask(crc).to_be_bytes()
    } else {
        mask(crc).to_le_bytes()
    };
    out.extend_from_slice(&sum);
    crc = crc32c::crc32c_append(crc, &sum);
    for s in strings {
        out.extend_from_slice(s);
        crc = crc32c::crc32c_append(crc, s);
    }
    (out, mask(crc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Vec<Vec<u8>> {
        vec![b"ab".to_vec(), Vec::new(), "héllo".as_bytes().to_vec()]
    }

    #[test]
    fn example_from_the_spec() {
        let (bytes, crc) = encode(&example(), false);
        let want = [
            0x02, 0x00, 0x06, 0x64, 0x06, 0x22, 0xC1, 0x61, 0x62, 0x68, 0xC3, 0xA9, 0x6C, 0x6C,
            0x6F,
        ];
        assert_eq!(bytes, want);
        assert_eq!(decode(&bytes, 3, unmask(crc), false), Ok(example()));
    }

    #[test]
    fn big_endian_round_trip() {
        let (bytes, crc) = encode(&example(), true);
        assert_eq!(decode(&bytes, 3, unmask(crc), true), Ok(example()));
        assert!(matches!(
            decode(&bytes, 3, unmask(crc), false),
            Err(StringsError::Framing(_))
        ));
    }

    #[test]
    fn empty_tensor_is_just_the_checksum() {
        let (bytes, crc) = encode(&[], false);
        assert_eq!(bytes.len(), 4);
        assert_eq!(decode(&bytes, 0, unmask(crc), false), Ok(vec![]));
    }

    #[test]
    fn huge_length_with_valid_checksum_is_rejected_before_allocating() {
        // One string claiming 2^40 bytes, with a correct length checksum.
        let mut bytes = Vec::new();
        varint::encode_u64(1 << 40, &mut bytes);
        let crc = extend_len(0, 1 << 40, false);
        bytes.extend_from_slice(&mask(crc).to_le_bytes());
        bytes.extend_from_slice(b"xyz");
        match decode(&bytes, 1, 0, false) {
            Err(StringsError::Framing(w)) => assert!(w.contains("add up to"), "{w}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lengths_over_u32_hash_as_eight_bytes() {
        let big = u32::MAX as u64 + 1;
        assert_eq!(
            extend_len(0, big, false),
            crc32c::crc32c(&big.to_le_bytes())
        );
        assert_eq!(extend_len(0, 7, false), crc32c::crc32c(&7u32.to_le_bytes()));
    }

    #[test]
    fn flipped_data_is_a_crc_error() {
        let (mut bytes, crc) = encode(&example(), false);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(matches!(
            decode(&bytes, 3, unmask(crc), false),
            Err(StringsError::Crc { .. })
        ));
    }
}
