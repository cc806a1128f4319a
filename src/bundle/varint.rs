//! Protobuf/LevelDB base-128 varints, decoded strictly.
//!
//! LevelDB's own decoder silently drops the high bits of a 10th byte and
//! accepts over-long encodings up to its limit; these reject both, so a
//! corrupted length can never alias a small one.

use std::fmt;

/// Why a varint did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarintError {
    /// The input ended inside the varint.
    Truncated,
    /// More bytes than the type allows (6+ for 32 bits, 11+ for 64 bits).
    TooLong,
    /// The last byte carries bits beyond the type's width.
    Overflow,
}

impl fmt::Display for VarintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VarintError::Truncated => "varint runs past the end of its buffer",
            VarintError::TooLong => "varint is longer than its type allows",
            VarintError::Overflow => "varint overflows its type",
        })
    }
}

/// Decodes a varint64 at the start of `buf`; returns the value and the
/// number of bytes read. At most 10 bytes, and the 10th must be 0 or 1.
pub fn decode_u64(buf: &[u8]) -> Result<(u64, usize), VarintError> {
    let mut value = 0u64;
    for i in 0..10 {
        let Some(&b) = buf.get(i) else {
            return Err(VarintError::Truncated);
        };
        if i == 9 {
            if b & 0x80 != 0 {
                return Err(VarintError::TooLong);
            }
            if b > 1 {
                return Err(VarintError::Overflow);
            }
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    // Unreachable: the 10th byte either returned or failed above.
    Err(VarintError::TooLong)
}

/// Decodes a varint32 at the start of `buf`: at most 5 bytes, value ≤ u32::MAX.
pub fn decode_u32(buf: &[u8]) -> Result<(u32, usize), VarintError> {
    let mut value = 0u32;
    for i in 0..5 {
        let Some(&b) = buf.get(i) else {
            return Err(VarintError::Truncated);
        };
        if i == 4 {
            if b & 0x80 != 0 {
                return Err(VarintError::TooLong);
            }
            if b > 0x0f {
                return Err(VarintError::Overflow);
            }
        }
        value |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err(VarintError::TooLong)
}

/// Appends `v` as a varint (1 to 10 bytes).
pub fn encode_u64(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        encode_u64(v, &mut out);
        out
    }

    #[test]
    fn round_trips() {
        for v in [
            0,
            1,
            127,
            128,
            300,
            u32::MAX as u64,
            1 << 40,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let e = enc(v);
            assert_eq!(decode_u64(&e), Ok((v, e.len())));
            if v <= u32::MAX as u64 {
                assert_eq!(decode_u32(&e), Ok((v as u32, e.len())));
            } else {
                assert!(decode_u32(&e).is_err());
            }
        }
        assert_eq!(enc(300), [0xac, 0x02]);
        assert_eq!(enc(u64::MAX).len(), 10);
    }

    #[test]
    fn rejects_eleven_bytes() {
        let mut e = vec![0x80; 10];
        e.push(0x00);
        assert_eq!(decode_u64(&e), Err(VarintError::TooLong));
    }

    #[test]
    fn rejects_tenth_byte_above_one() {
        let mut e = vec![0xff; 9];
        e.push(0x02);
        assert_eq!(decode_u64(&e), Err(VarintError::Overflow));
        e[9] = 0x01;
        assert_eq!(decode_u64(&e), Ok((u64::MAX, 10)));
    }

    #[test]
    fn rejects_six_byte_varint32_and_overflow() {
        assert_eq!(
            decode_u32(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00]),
            Err(VarintError::TooLong)
        );
        assert_eq!(
            decode_u32(&[0xff, 0xff, 0xff, 0xff, 0x1f]),
            Err(VarintError::Overflow)
        );
        assert_eq!(
            decode_u32(&[0xff, 0xff, 0xff, 0xff, 0x0f]),
            Ok((u32::MAX, 5))
        );
    }

    #[test]
    fn every_proper_prefix_is_truncated() {
        let e = enc(u64::MAX);
        for n in 0..e.len() {
            assert_eq!(decode_u64(&e[..n]), Err(VarintError::Truncated));
        }
    }
}
