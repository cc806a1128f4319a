//! Partitioned tensors: the OrderedCode slice keys under which TF stores
//! each slice (`tensorflow/core/util/saved_tensor_slice_util.cc`,
//! `tensorflow/core/lib/strings/ordered_code.cc`;
//! `docs/formats.md#partitioned-tensors-and-slice-keys`), and the checks
//! and copy plan that put the slices back together.
//!
//! A slice key is: unsigned 0, the tensor name as an OrderedCode string,
//! the rank (unsigned), then per dimension a signed start and a signed
//! length, where a whole dimension is start 0, length −1.

use crate::proto::tensor::{tensor_slice_proto, TensorSliceProto};

/// One dimension of a slice: `[start, start + length)`, or the whole
/// dimension when `length` is `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Extent {
    /// First index (0 for a whole dimension).
    pub start: i64,
    /// Number of indices; `None` = the whole dimension.
    pub length: Option<i64>,
}

impl Extent {
    /// The whole dimension.
    pub const FULL: Extent = Extent {
        start: 0,
        length: None,
    };
}

/// The extents of a `TensorSliceProto`, one per dimension.
pub fn extents_from_proto(p: &TensorSliceProto) -> Vec<Extent> {
    p.extent
        .iter()
        .map(|e| Extent {
            start: e.start,
            length: e.length,
        })
        .collect()
}

/// The `TensorSliceProto` TF writes for these extents (a whole dimension is
/// an empty extent message).
pub fn extents_to_proto(extents: &[Extent]) -> TensorSliceProto {
    TensorSliceProto {
        extent: extents
            .iter()
            .map(|e| tensor_slice_proto::Extent {
                start: e.start,
                length: e.length,
            })
            .collect(),
    }
}

/// TF's textual form of a slice (`TensorSlice::DebugString`): per dimension
/// `start,length` or `-` for a whole dimension, joined by `:`.
pub fn slice_spec_string(extents: &[Extent]) -> String {
    let parts: Vec<String> = extents
        .iter()
        .map(|e| match e.length {
            None => "-".to_string(),
            Some(l) => format!("{},{}", e.start, l),
        })
        .collect();
    parts.join(":")
}

// ---- OrderedCode ---------------------------------------------------------

/// Appends `v` in OrderedCode's increasing unsigned encoding: one length
/// byte (0–8), then that many big-endian bytes without leading zeros.
pub fn encode_unsigned(v: u64, out: &mut Vec<u8>) {
    let len = 8 - (v.leading_zeros() / 8) as usize;
    out.push(len as u8);
    out.extend_from_slice(&v.to_be_bytes()[8 - len..]);
}

/// Decodes an OrderedCode unsigned number at the start of `buf`; returns it
/// and the bytes read. `None` if malformed or not in canonical form.
pub fn decode_unsigned(buf: &[u8]) -> Option<(u64, usize)> {
    let len = *buf.first()? as usize;
    if len > 8 {
        return None;
    }
    let bytes = buf.get(1..1 + len)?;
    if bytes.first() == Some(&0) {
        return None;
    }
    let v = bytes.iter().fold(0u64, |a, &b| (a << 8) | u64::from(b));
    Some((v, 1 + len))
}

/// Header bits XORed into the first one or two bytes of an `n`-byte signed
/// encoding (`kLengthToHeaderBits`).
const SIGNED_HEADER: [[u8; 2]; 11] = [
    [0, 0],
    [0x80, 0],
    [0xc0, 0],
    [0xe0, 0],
    [0xf0, 0],
    [0xf8, 0],
    [0xfc, 0],
    [0xfe, 0],
    [0xff, 0],
    [0xff, 0x80],
    [0xff, 0xc0],
];

/// Appends `v` in OrderedCode's increasing signed encoding (1 to 10 bytes).
pub fn encode_signed(v: i64, out: &mut Vec<u8>) {
    let u = if v < 0 { !(v as u64) } else { v as u64 };
    // The smallest n with u < 2^(7n − 1).
    let bits = 64 - u.leading_zeros() as usize;
    let n = (bits + 1).div_ceil(7).max(1);
    if n == 1 {
        out.push(0x80 ^ (v as u8));
        return;
    }
    let sign = if v < 0 { 0xff } else { 0 };
    let mut buf = [sign; 10];
    buf[2..].copy_from_slice(&v.to_be_bytes());
    let kept = &mut buf[10 - n..];
    kept[0] ^= SIGNED_HEADER[n][0];
    kept[1] ^= SIGNED_HEADER[n][1];
    out.extend_from_slice(kept);
}

/// Decodes an OrderedCode signed number at the start of `buf`; returns it
/// and the bytes read. `None` if malformed, out of range or not canonical.
pub fn decode_signed(buf: &[u8]) -> Option<(i64, usize)> {
    let first = *buf.first()?;
    // A clear top bit means negative: invert the bytes for the length test.
    let inv = if first & 0x80 == 0 { 0xff } else { 0 };
    let b0 = first ^ inv;
    let n = if b0 != 0xff {
        b0.leading_ones() as usize
    } else {
        let b1 = buf.get(1)? ^ inv;
        if b1 < 0x80 {
            8
        } else if b1 < 0xc0 {
            9
        } else {
            10
        }
    };
    let bytes = buf.get(..n)?;
    let mut full = [inv; 10];
    full[10 - n..].copy_from_slice(bytes);
    full[10 - n] ^= SIGNED_HEADER[n][0];
    if n >= 2 {
        full[10 - n + 1] ^= SIGNED_HEADER[n][1];
    }
    // Now a 10-byte big-endian two's complement number; it must fit in i64.
    let sign = if inv == 0xff { 0xff } else { 0 };
    if full[0] != sign || full[1] != sign {
        return None;
    }
    let mut be = [0u8; 8];
    be.copy_from_slice(&full[2..]);
    let v = i64::from_be_bytes(be);
    if (v < 0) != (inv == 0xff) {
        return None;
    }
    let mut check = Vec::with_capacity(10);
    encode_signed(v, &mut check);
    (check == bytes).then_some((v, n))
}

/// Appends `s` as an OrderedCode string: `00` → `00 FF`, `FF` → `FF 00`,
/// other bytes copied, then the terminator `00 01`.
pub fn encode_string(s: &[u8], out: &mut Vec<u8>) {
    for &b in s {
        match b {
            0x00 => out.extend_from_slice(&[0x00, 0xff]),
            0xff => out.extend_from_slice(&[0xff, 0x00]),
            _ => out.push(b),
        }
    }
    out.extend_from_slice(&[0x00, 0x01]);
}

/// Decodes an OrderedCode string at the start of `buf`; returns it and the
/// bytes read. `None` if an escape is invalid or the terminator is missing.
pub fn decode_string(buf: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        let b = *buf.get(i)?;
        match b {
            0x00 => match *buf.get(i + 1)? {
                0x01 => return Some((out, i + 2)),
                0xff => out.push(0x00),
                _ => return None,
            },
            0xff => match *buf.get(i + 1)? {
                0x00 => out.push(0xff),
                _ => return None,
            },
            _ => {
                out.push(b);
                i += 1;
                continue;
            }
        }
        i += 2;
    }
}

/// The key TF stores one slice of tensor `name` under
/// (`EncodeTensorNameSlice`). A whole dimension encodes as start 0,
/// length −1.
pub fn encode_slice_key(name: &str, extents: &[Extent]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 4 + 4 * extents.len());
    encode_unsigned(0, &mut out);
    encode_string(name.as_bytes(), &mut out);
    encode_unsigned(extents.len() as u64, &mut out);
    for e in extents {
        encode_signed(e.start, &mut out);
        encode_signed(e.length.unwrap_or(-1), &mut out);
    }
    out
}

/// Decodes a slice key into the tensor name and its extents (length −1
/// becomes `None`). `None` if `key` is not a well-formed slice key: wrong
/// leading 0, bad string escape, non-UTF-8 name, a length below −1, a rank
/// that does not match the extents, or trailing bytes.
pub fn decode_slice_key(key: &[u8]) -> Option<(String, Vec<Extent>)> {
    let (zero, mut pos) = decode_unsigned(key)?;
    if zero != 0 {
        return None;
    }
    let (name, n) = decode_string(&key[pos..])?;
    pos += n;
    let name = String::from_utf8(name).ok()?;
    let (rank, n) = decode_unsigned(&key[pos..])?;
    pos += n;
    // Each dimension takes at least 2 bytes: bound the rank before allocating.
    if rank > (key.len() - pos) as u64 / 2 {
        return None;
    }
    let mut extents = Vec::with_capacity(rank as usize);
    for _ in 0..rank {
        let (start, n) = decode_signed(&key[pos..])?;
        pos += n;
        let (length, n) = decode_signed(&key[pos..])?;
        pos += n;
        let length = match length {
            -1 => None,
            l if l >= 0 => Some(l),
            _ => return None,
        };
        extents.push(Extent { start, length });
    }
    (pos == key.len()).then_some((name, extents))
}

// ---- Validation and reassembly -------------------------------------------

/// A slice resolved against the full shape: start and length per dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SliceBox {
    /// First index per dimension.
    pub start: Vec<u64>,
    /// Length per dimension (whole dimensions filled in).
    pub len: Vec<u64>,
}

impl SliceBox {
    /// Elements in the slice. Fits in u64: the box lies inside a shape whose
    /// element count was checked.
    pub fn volume(&self) -> u64 {
        self.len.iter().product()
    }

    fn overlaps(&self, other: &SliceBox) -> bool {
        (0..self.start.len()).all(|d| {
            let lo = self.start[d].max(other.start[d]);
            let hi = (self.start[d] + self.len[d]).min(other.start[d] + other.len[d]);
            lo < hi
        })
    }
}

/// Resolves `slices` against `shape` (whose element count is known to fit
/// in u64) and checks that they form a partition of the tensor: every slice
/// has the tensor's rank, non-negative starts and lengths, lies inside the
/// shape, no two overlap, and together they cover every element. The error
/// says what is wrong (the caller adds file and key).
pub(crate) fn check_partition(
    shape: &[u64],
    slices: &[Vec<Extent>],
) -> Result<Vec<SliceBox>, String> {
    let rank = shape.len();
    let mut boxes = Vec::with_capacity(slices.len());
    for (i, extents) in slices.iter().enumerate() {
        if extents.len() != rank {
            return Err(format!(
                "slice {i} [{}] has rank {}, the tensor has rank {rank}",
                slice_spec_string(extents),
                extents.len()
            ));
        }
        let mut b = SliceBox {
            start: Vec::with_capacity(rank),
            len: Vec::with_capacity(rank),
        };
        for (d, (e, &dim)) in extents.iter().zip(shape).enumerate() {
            let spec = slice_spec_string(extents);
            let (start, len) = match e.length {
                None if e.start == 0 => (0, dim),
                None => {
                    return Err(format!(
                        "slice {i} [{spec}]: dimension {d} is whole but starts at {}",
                        e.start
                    ))
                }
                Some(_) if e.start < 0 => {
                    return Err(format!(
                        "slice {i} [{spec}]: dimension {d} starts at {}",
                        e.start
                    ))
                }
                Some(l) if l < 0 => {
                    return Err(format!("slice {i} [{spec}]: dimension {d} has length {l}"))
                }
                Some(l) => (e.start as u64, l as u64),
            };
            if start.checked_add(len).is_none_or(|end| end > dim) {
                return Err(format!(
                    "slice {i} [{spec}]: dimension {d} runs to {}, past its size {dim}",
                    i128::from(start) + i128::from(len)
                ));
            }
            b.start.push(start);
            b.len.push(len);
        }
        boxes.push(b);
    }
    check_no_overlap(&boxes)?;
    let total: u64 = shape.iter().product();
    // No overlaps and all inside the shape, so the sum is at most `total`.
    let covered: u64 = boxes.iter().map(SliceBox::volume).sum();
    if covered != total {
        return Err(format!(
            "the {} slices cover {covered} of the {total} elements",
            boxes.len()
        ));
    }
    Ok(boxes)
}

/// Pairwise overlap test, swept along the dimension where the slices have
/// the most distinct starts, so that ordinary partitions (along one or two
/// axes) cost about n log n rather than n².
fn check_no_overlap(boxes: &[SliceBox]) -> Result<(), String> {
    let mut live: Vec<usize> = (0..boxes.len())
        .filter(|&i| boxes[i].volume() > 0)
        .collect();
    let rank = boxes.first().map_or(0, |b| b.start.len());
    let axis = (0..rank).max_by_key(|&d| {
        let mut starts: Vec<u64> = live.iter().map(|&i| boxes[i].start[d]).collect();
        starts.sort_unstable();
        starts.dedup();
        starts.len()
    });
    if let Some(axis) = axis {
        live.sort_by_key(|&i| boxes[i].start[axis]);
    }
    for (n, &i) in live.iter().enumerate() {
        for &j in &live[n + 1..] {
            if let Some(axis) = axis {
                if boxes[j].start[axis] >= boxes[i].start[axis] + boxes[i].len[axis] {
                    break;
                }
            }
            if boxes[i].overlaps(&boxes[j]) {
                return Err(format!("slices {i} and {j} overlap"));
            }
        }
    }
    Ok(())
}

/// Calls `f(dst, src, count)` for each contiguous run of elements that
/// copies slice `b` (stored row-major over its own shape) into a row-major
/// tensor of `shape`: `count` elements from element `src` of the slice to
/// element `dst` of the tensor. Trailing whole dimensions merge into one run.
pub(crate) fn for_each_run(shape: &[u64], b: &SliceBox, mut f: impl FnMut(u64, u64, u64)) {
    let rank = shape.len();
    if rank == 0 {
        f(0, 0, 1);
        return;
    }
    if b.volume() == 0 {
        return;
    }
    let mut strides = vec![1u64; rank];
    for d in (0..rank - 1).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    // Merge trailing dimensions that the slice covers whole.
    let mut j = rank - 1;
    while j > 0 && b.start[j] == 0 && b.len[j] == shape[j] {
        j -= 1;
    }
    let run = b.len[j] * strides[j];
    let mut idx = vec![0u64; j];
    let mut src = 0u64;
    loop {
        let dst: u64 = (0..j)
            .map(|d| (b.start[d] + idx[d]) * strides[d])
            .sum::<u64>()
            + b.start[j] * strides[j];
        f(dst, src, run);
        src += run;
        // Odometer over the outer dimensions 0..j.
        let mut d = j;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            idx[d] += 1;
            if idx[d] < b.len[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(v: i64) -> Vec<u8> {
        let mut out = Vec::new();
        encode_signed(v, &mut out);
        out
    }

    fn unsigned(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        encode_unsigned(v, &mut out);
        out
    }

    fn ext(start: i64, length: i64) -> Extent {
        Extent {
            start,
            length: Some(length),
        }
    }

    #[test]
    fn unsigned_examples_from_the_spec() {
        assert_eq!(unsigned(0), [0x00]);
        assert_eq!(unsigned(2), [0x01, 0x02]);
        assert_eq!(unsigned(0x1_0000), [0x03, 0x01, 0x00, 0x00]);
        assert_eq!(unsigned(u64::MAX).len(), 9);
        for v in [0, 1, 255, 256, 1 << 40, u64::MAX] {
            let e = unsigned(v);
            assert_eq!(decode_unsigned(&e), Some((v, e.len())));
        }
        assert_eq!(decode_unsigned(&[0x09]), None);
        assert_eq!(decode_unsigned(&[0x01, 0x00]), None, "leading zero");
    }

    #[test]
    fn signed_examples_from_the_spec() {
        assert_eq!(signed(0), [0x80]);
        assert_eq!(signed(5), [0x85]);
        assert_eq!(signed(-1), [0x7f]);
        assert_eq!(signed(100), [0xc0, 0x64]);
        assert_eq!(signed(9900), [0xe0, 0x26, 0xac]);
        assert_eq!(signed(10000), [0xe0, 0x27, 0x10]);
        assert_eq!(signed(-10000), [0x1f, 0xd8, 0xf0]);
        assert_eq!(signed(63), [0xbf]);
        assert_eq!(signed(-64), [0x40]);
        assert_eq!(signed(64), [0xc0, 0x40]);
    }

    #[test]
    fn signed_round_trips_and_keeps_order() {
        let mut values = vec![i64::MIN, i64::MIN + 1, i64::MAX, i64::MAX - 1, 0, -1, 1];
        for shift in 0..63 {
            let p = 1i64 << shift;
            values.extend([p, p - 1, p + 1, -p, -p - 1, -p + 1]);
        }
        values.sort_unstable();
        values.dedup();
        let mut prev: Option<Vec<u8>> = None;
        for &v in &values {
            let e = signed(v);
            assert!(e.len() <= 10, "{v}");
            assert_eq!(decode_signed(&e), Some((v, e.len())), "{v}: {e:02x?}");
            if let Some(p) = &prev {
                assert!(p < &e, "order broken at {v}");
            }
            prev = Some(e);
        }
        assert_eq!(decode_signed(&[]), None);
        assert_eq!(decode_signed(&[0xc0]), None, "truncated");
        assert_eq!(decode_signed(&[0xc0, 0x05]), None, "not canonical");
    }

    #[test]
    fn string_escapes() {
        let mut out = Vec::new();
        encode_string(&[b'a', 0x00, 0xff, b'b'], &mut out);
        assert_eq!(out, [b'a', 0x00, 0xff, 0xff, 0x00, b'b', 0x00, 0x01]);
        assert_eq!(
            decode_string(&out),
            Some((vec![b'a', 0x00, 0xff, b'b'], out.len()))
        );
        assert_eq!(decode_string(&[b'a', 0x00, 0x02]), None);
        assert_eq!(decode_string(b"abc"), None);
    }

    #[test]
    fn slice_key_examples_from_the_spec() {
        let part = encode_slice_key("part", &[ext(5, 5), ext(0, 3)]);
        let mut want = vec![0x00];
        want.extend_from_slice(b"part");
        want.extend_from_slice(&[0x00, 0x01, 0x01, 0x02, 0x85, 0x85, 0x80, 0x83]);
        assert_eq!(part, want);
        assert_eq!(
            decode_slice_key(&part),
            Some(("part".to_string(), vec![ext(5, 5), ext(0, 3)]))
        );

        let w = encode_slice_key("w", &[ext(0, 5), Extent::FULL]);
        assert_eq!(
            w,
            [0x00, b'w', 0x00, 0x01, 0x01, 0x02, 0x80, 0x85, 0x80, 0x7f]
        );
        assert_eq!(
            decode_slice_key(&w),
            Some(("w".to_string(), vec![ext(0, 5), Extent::FULL]))
        );

        let scalar = encode_slice_key("s", &[]);
        assert_eq!(scalar, [0x00, b's', 0x00, 0x01, 0x00]);
        assert_eq!(decode_slice_key(&scalar), Some(("s".to_string(), vec![])));

        assert_eq!(decode_slice_key(b"plain/name"), None);
        let mut trailing = w.clone();
        trailing.push(0x80);
        assert_eq!(decode_slice_key(&trailing), None);
    }

    #[test]
    fn partition_checks() {
        let shape = [10, 3];
        let ok = check_partition(
            &shape,
            &[vec![ext(0, 5), ext(0, 3)], vec![ext(5, 5), Extent::FULL]],
        );
        assert!(ok.is_ok(), "{ok:?}");
        let err = |s: &[Vec<Extent>]| check_partition(&shape, s).err().unwrap_or_default();
        assert!(
            err(&[vec![ext(0, 6), Extent::FULL], vec![ext(5, 5), Extent::FULL]])
                .contains("overlap")
        );
        assert!(err(&[vec![ext(0, 5), Extent::FULL]]).contains("cover 15 of the 30"));
        assert!(err(&[vec![ext(0, 11), Extent::FULL]]).contains("past its size"));
        assert!(err(&[vec![ext(-1, 5), Extent::FULL]]).contains("starts at -1"));
        assert!(err(&[vec![Extent::FULL]]).contains("rank 1"));
        assert!(err(&[vec![ext(i64::MAX, i64::MAX), Extent::FULL]]).contains("past its size"));
    }

    #[test]
    fn runs_merge_trailing_whole_dimensions() {
        let shape = [4, 3, 2];
        let collect = |b: &SliceBox| {
            let mut v = Vec::new();
            for_each_run(&shape, b, |d, s, c| v.push((d, s, c)));
            v
        };
        let rows = SliceBox {
            start: vec![2, 0, 0],
            len: vec![2, 3, 2],
        };
        assert_eq!(collect(&rows), [(12, 0, 12)]);
        let cols = SliceBox {
            start: vec![0, 1, 0],
            len: vec![2, 2, 2],
        };
        assert_eq!(collect(&cols), [(2, 0, 4), (8, 4, 4)]);
        let inner = SliceBox {
            start: vec![1, 2, 1],
            len: vec![1, 1, 1],
        };
        assert_eq!(collect(&inner), [(11, 0, 1)]);
    }
}
