//! Reading and writing NumPy `.npy` files (format versions 1.0, 2.0, 3.0).
//!
//! Supported element types, little-endian and C order only: `<f4 <f8 <f2
//! <u2 <i8 <i4 |u1 |b1`. `bfloat16` has no NumPy dtype; tfbn's corpus stores
//! `bfloat16` arrays as `<u2` bit patterns ([`NpyArray::into_bf16`]).
//!
//! Every size read from a file goes through checked arithmetic and is
//! compared with the file before anything is allocated for it; a malformed
//! file gives [`Error::NpyInvalid`] naming the file and the broken rule,
//! never a panic. Writing goes to a temporary file next to the target,
//! which is then renamed into place.

use std::io::Write;
use std::path::Path;

use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};

use crate::error::{Error, Result};

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// The largest header tfbn accepts (NumPy itself writes a few hundred
/// bytes; version 2.0 allows 4 GiB).
const MAX_HEADER_LEN: usize = 1 << 20;

/// A `.npy` array of one of the supported element types.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyArray {
    /// `<f4`.
    F32(ArrayD<f32>),
    /// `<f8`.
    F64(ArrayD<f64>),
    /// `<f2`.
    F16(ArrayD<f16>),
    /// `<u2` (also `bfloat16` bit patterns).
    U16(ArrayD<u16>),
    /// `<i8`.
    I64(ArrayD<i64>),
    /// `<i4`.
    I32(ArrayD<i32>),
    /// `|u1`.
    U8(ArrayD<u8>),
    /// `|b1`.
    Bool(ArrayD<bool>),
}

impl NpyArray {
    /// The array's shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            NpyArray::F32(a) => a.shape(),
            NpyArray::F64(a) => a.shape(),
            NpyArray::F16(a) => a.shape(),
            NpyArray::U16(a) => a.shape(),
            NpyArray::I64(a) => a.shape(),
            NpyArray::I32(a) => a.shape(),
            NpyArray::U8(a) => a.shape(),
            NpyArray::Bool(a) => a.shape(),
        }
    }

    /// The NumPy type string (`"<f4"`, …).
    pub fn descr(&self) -> &'static str {
        match self {
            NpyArray::F32(_) => "<f4",
            NpyArray::F64(_) => "<f8",
            NpyArray::F16(_) => "<f2",
            NpyArray::U16(_) => "<u2",
            NpyArray::I64(_) => "<i8",
            NpyArray::I32(_) => "<i4",
            NpyArray::U8(_) => "|u1",
            NpyArray::Bool(_) => "|b1",
        }
    }

    /// Reinterprets a `<u2` array as `bfloat16` bit patterns (the corpus
    /// convention); any other type is an error.
    pub fn into_bf16(self) -> Result<ArrayD<bf16>> {
        match self {
            NpyArray::U16(a) => Ok(a.mapv(bf16::from_bits)),
            other => Err(Error::InvalidArgument(format!(
                "a bfloat16 array is stored as <u2 bit patterns, not {}",
                other.descr()
            ))),
        }
    }

    /// Stores `bfloat16` values as `<u2` bit patterns.
    pub fn from_bf16(a: &ArrayD<bf16>) -> NpyArray {
        NpyArray::U16(a.mapv(|v| v.to_bits()))
    }
}

fn invalid(path: &Path, what: impl Into<String>) -> Error {
    Error::NpyInvalid {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

/// Reads a `.npy` file, streaming: the magic, version and header are read
/// and checked first, and the data size the header implies is compared
/// with the file's length before the data is read, so a file that is not a
/// `.npy` costs a few bytes of reading, whatever its size. Only regular
/// files are read (`/dev/zero`, a FIFO: [`Error::FileNotRegular`]).
pub fn read_npy(path: impl AsRef<Path>) -> Result<NpyArray> {
    use std::io::{Read, Seek, SeekFrom};
    let path = path.as_ref();
    let io = |e| Error::io(path, e);
    let mut file = crate::fsx::open_regular(path)?;
    let len = file.metadata().map_err(io)?.len();
    let mut head = [0u8; 12];
    let n = len.min(head.len() as u64) as usize;
    file.read_exact(&mut head[..n]).map_err(io)?;
    let pre = prelude(&head[..n], path)?;
    let data_start = pre.data_start(len, path)?;
    let mut raw = vec![0u8; pre.header_len];
    file.seek(SeekFrom::Start(pre.prelude as u64))
        .and_then(|_| file.read_exact(&mut raw))
        .map_err(io)?;
    let header = header_of(&raw, pre.major, path)?;
    let nbytes = data_size(&header, path)?;
    check_data_size(&header, nbytes, len - data_start as u64, path)?;
    // Checked against the file above: this allocates what the file holds.
    let mut data = vec![0u8; nbytes];
    file.read_exact(&mut data).map_err(io)?;
    array_of(&header, &data, path)
}

/// The header fields tfbn needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// The fixed part before the header: magic, version, header length.
struct Prelude {
    major: u8,
    header_len: usize,
    /// Bytes before the header (10 or 12).
    prelude: usize,
}

impl Prelude {
    /// Where the data starts, checked against the file length `len`.
    fn data_start(&self, len: u64, path: &Path) -> Result<usize> {
        let data_start = self
            .prelude
            .checked_add(self.header_len)
            .ok_or_else(|| invalid(path, "header length overflows"))?;
        if data_start as u64 > len {
            return Err(invalid(
                path,
                format!(
                    "header of {} bytes runs past the end of the {len}-byte file",
                    self.header_len
                ),
            ));
        }
        Ok(data_start)
    }
}

/// Parses the prelude from the first (up to 12) bytes of a file.
fn prelude(bytes: &[u8], path: &Path) -> Result<Prelude> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(invalid(path, "not a .npy file (magic \\x93NUMPY missing)"));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (header_len, prelude) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(invalid(path, "file ends inside the header length"));
            }
            let n = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (n as usize, 12usize)
        }
        _ => {
            return Err(invalid(
                path,
                format!("format version {major}.{minor} is not supported (1.0, 2.0, 3.0)"),
            ))
        }
    };
    if header_len > MAX_HEADER_LEN {
        return Err(invalid(
            path,
            format!("header length {header_len} exceeds {MAX_HEADER_LEN} bytes"),
        ));
    }
    Ok(Prelude {
        major,
        header_len,
        prelude,
    })
}

/// Decodes and parses the header's dict.
fn header_of(raw: &[u8], major: u8, path: &Path) -> Result<Header> {
    let text = if major == 3 {
        std::str::from_utf8(raw).map_err(|_| invalid(path, "header is not UTF-8"))?
    } else {
        if !raw.is_ascii() {
            return Err(invalid(path, "header is not ASCII (version 1.0/2.0)"));
        }
        std::str::from_utf8(raw).map_err(|_| invalid(path, "header is not ASCII"))?
    };
    let header = parse_header(text).map_err(|e| invalid(path, format!("header: {e}")))?;
    if header.fortran_order {
        return Err(invalid(
            path,
            "fortran_order is True; only C-order arrays are supported (save with np.ascontiguousarray)",
        ));
    }
    Ok(header)
}

/// The data bytes the header implies (checked arithmetic).
fn data_size(header: &Header, path: &Path) -> Result<usize> {
    let count = header
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| invalid(path, format!("shape {:?} overflows", header.shape)))?;
    let width = match header.descr.as_str() {
        "<f4" | "<i4" => 4,
        "<f8" | "<i8" => 8,
        "<f2" | "<u2" => 2,
        "|u1" | "<u1" | "|b1" | "<b1" => 1,
        d if d.starts_with('>') => {
            return Err(invalid(
                path,
                format!("big-endian type {d:?} is not supported"),
            ))
        }
        d => {
            return Err(invalid(
                path,
                format!("element type {d:?} is not supported"),
            ))
        }
    };
    count
        .checked_mul(width)
        .ok_or_else(|| invalid(path, "data size overflows"))
}

fn check_data_size(header: &Header, nbytes: usize, have: u64, path: &Path) -> Result<()> {
    if have != nbytes as u64 {
        return Err(invalid(
            path,
            format!(
                "shape {:?} of {} needs {nbytes} data bytes, the file has {have}",
                header.shape, header.descr,
            ),
        ));
    }
    Ok(())
}

/// Parses the bytes of a `.npy` file; `path` only names the file in errors.
pub fn parse_npy(bytes: &[u8], path: &Path) -> Result<NpyArray> {
    let pre = prelude(&bytes[..bytes.len().min(12)], path)?;
    let data_start = pre.data_start(bytes.len() as u64, path)?;
    let header = header_of(&bytes[pre.prelude..data_start], pre.major, path)?;
    let nbytes = data_size(&header, path)?;
    let data = &bytes[data_start..];
    check_data_size(&header, nbytes, data.len() as u64, path)?;
    array_of(&header, data, path)
}

/// The array of `data` (exactly the size [`data_size`] gave).
fn array_of(header: &Header, data: &[u8], path: &Path) -> Result<NpyArray> {
    let shape = IxDyn(&header.shape);
    let arr = |e: ndarray::ShapeError| invalid(path, format!("shape: {e}"));
    Ok(match header.descr.as_str() {
        "<f4" => NpyArray::F32(
            ArrayD::from_shape_vec(shape, decode(data, f32::from_le_bytes)).map_err(arr)?,
        ),
        "<f8" => NpyArray::F64(
            ArrayD::from_shape_vec(shape, decode(data, f64::from_le_bytes)).map_err(arr)?,
        ),
        "<f2" => NpyArray::F16(
            ArrayD::from_shape_vec(shape, decode(data, |b: [u8; 2]| f16::from_le_bytes(b)))
                .map_err(arr)?,
        ),
        "<u2" => NpyArray::U16(
            ArrayD::from_shape_vec(shape, decode(data, u16::from_le_bytes)).map_err(arr)?,
        ),
        "<i8" => NpyArray::I64(
            ArrayD::from_shape_vec(shape, decode(data, i64::from_le_bytes)).map_err(arr)?,
        ),
        "<i4" => NpyArray::I32(
            ArrayD::from_shape_vec(shape, decode(data, i32::from_le_bytes)).map_err(arr)?,
        ),
        "|u1" | "<u1" => NpyArray::U8(ArrayD::from_shape_vec(shape, data.to_vec()).map_err(arr)?),
        _ => {
            if let Some(pos) = data.iter().position(|&b| b > 1) {
                return Err(invalid(
                    path,
                    format!("bool element {pos} is {} (must be 0 or 1)", data[pos]),
                ));
            }
            NpyArray::Bool(
                ArrayD::from_shape_vec(shape, data.iter().map(|&b| b == 1).collect())
                    .map_err(arr)?,
            )
        }
    })
}

fn decode<T, const N: usize>(data: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
    data.chunks_exact(N)
        .map(|c| {
            let mut b = [0u8; N];
            b.copy_from_slice(c);
            f(b)
        })
        .collect()
}

/// A tiny parser for the header's Python dict literal.
fn parse_header(text: &str) -> std::result::Result<Header, String> {
    let mut p = Lexer {
        s: text.as_bytes(),
        i: 0,
    };
    p.ws();
    p.expect(b'{')?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    loop {
        p.ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.ws();
        p.expect(b':')?;
        p.ws();
        match key.as_str() {
            "descr" => descr = Some(p.string()?),
            "fortran_order" => fortran = Some(p.boolean()?),
            "shape" => shape = Some(p.tuple()?),
            other => return Err(format!("unknown key {other:?}")),
        }
        p.ws();
        if !p.eat(b',') {
            p.ws();
            p.expect(b'}')?;
            break;
        }
    }
    p.ws();
    if p.i != p.s.len() {
        return Err("text after the dict".into());
    }
    Ok(Header {
        descr: descr.ok_or("no 'descr'")?,
        fortran_order: fortran.ok_or("no 'fortran_order'")?,
        shape: shape.ok_or("no 'shape'")?,
    })
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

impl Lexer<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && (self.s[self.i] as char).is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> std::result::Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected {:?} at byte {}", c as char, self.i))
        }
    }

    fn string(&mut self) -> std::result::Result<String, String> {
        let q = match self.s.get(self.i) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("expected a string at byte {}", self.i)),
        };
        self.i += 1;
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i] != q {
            if self.s[self.i] == b'\\' {
                return Err("escapes in header strings are not supported".into());
            }
            self.i += 1;
        }
        if self.i >= self.s.len() {
            return Err("unterminated string".into());
        }
        let out = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
        self.i += 1;
        Ok(out)
    }

    fn boolean(&mut self) -> std::result::Result<bool, String> {
        if self.s[self.i..].starts_with(b"True") {
            self.i += 4;
            Ok(true)
        } else if self.s[self.i..].starts_with(b"False") {
            self.i += 5;
            Ok(false)
        } else {
            Err(format!("expected True or False at byte {}", self.i))
        }
    }

    fn tuple(&mut self) -> std::result::Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut out = Vec::new();
        loop {
            self.ws();
            if self.eat(b')') {
                break;
            }
            let start = self.i;
            while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                self.i += 1;
            }
            if start == self.i {
                return Err(format!("expected a dimension at byte {start}"));
            }
            // Python 2 files may write long integers as `3L`.
            let digits = std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?;
            let d: usize = digits
                .parse()
                .map_err(|_| format!("dimension {digits} is too large"))?;
            self.eat(b'L');
            out.push(d);
            self.ws();
            if !self.eat(b',') {
                self.ws();
                self.expect(b')')?;
                break;
            }
        }
        Ok(out)
    }
}

/// The bytes of a `.npy` file (version 1.0, or 2.0 when the header needs it).
pub fn to_npy_bytes(a: &NpyArray) -> Vec<u8> {
    let shape = a.shape();
    let dims = match shape.len() {
        0 => String::new(),
        1 => format!("{},", shape[0]),
        _ => shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    };
    let dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': ({dims}), }}",
        a.descr()
    );
    // Pad with spaces and a newline so the data starts on a 64-byte boundary.
    let build = |prelude: usize| {
        let unpadded = prelude + dict.len() + 1;
        let pad = (64 - unpadded % 64) % 64;
        let mut h = dict.clone();
        h.push_str(&" ".repeat(pad));
        h.push('\n');
        h
    };
    let mut header = build(10);
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    if header.len() <= u16::MAX as usize {
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        header = build(12);
        out.extend_from_slice(&[2, 0]);
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    match a {
        NpyArray::F32(x) => x
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        NpyArray::F64(x) => x
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        NpyArray::F16(x) => x
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        NpyArray::U16(x) => x
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        NpyArray::I64(x) => x
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        NpyArray::I32(x) => x
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        NpyArray::U8(x) => out.extend(x.iter().copied()),
        NpyArray::Bool(x) => out.extend(x.iter().map(|&b| b as u8)),
    }
    out
}

/// Writes a `.npy` file atomically: the bytes go to a temporary file in the
/// same folder, which is flushed and then renamed over `path`.
pub fn write_npy(path: impl AsRef<Path>, a: &NpyArray) -> Result<()> {
    let path = path.as_ref();
    write_atomic(path, &to_npy_bytes(a))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let policy = crate::fsio::OutputPolicy {
        force: true,
        sync: true,
    };
    crate::fsio::write_atomic(path, policy, |w| {
        w.write_all(bytes)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("t.npy")
    }

    fn header_bytes(major: u8, dict: &str) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[major, 0]);
        if major == 1 {
            b.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        } else {
            b.extend_from_slice(&(dict.len() as u32).to_le_bytes());
        }
        b.extend_from_slice(dict.as_bytes());
        b
    }

    #[test]
    fn round_trips_every_type() {
        let arrays = vec![
            NpyArray::F32(
                ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![1.0, -2.5, 3.0, f32::NAN, 0.0, -0.0])
                    .unwrap(),
            ),
            NpyArray::F64(ArrayD::from_shape_vec(IxDyn(&[3]), vec![1.0, 2.0, 1e300]).unwrap()),
            NpyArray::F16(
                ArrayD::from_shape_vec(IxDyn(&[1, 2]), vec![f16::from_f32(1.5), f16::MAX]).unwrap(),
            ),
            NpyArray::U16(ArrayD::from_shape_vec(IxDyn(&[2]), vec![0x3F80, 0xFFFF]).unwrap()),
            NpyArray::I64(ArrayD::from_shape_vec(IxDyn(&[2]), vec![-1, i64::MAX]).unwrap()),
            NpyArray::I32(ArrayD::from_shape_vec(IxDyn(&[0, 4]), vec![]).unwrap()),
            NpyArray::U8(ArrayD::from_shape_vec(IxDyn(&[]), vec![7]).unwrap()),
            NpyArray::Bool(ArrayD::from_shape_vec(IxDyn(&[3]), vec![true, false, true]).unwrap()),
        ];
        for a in arrays {
            let bytes = to_npy_bytes(&a);
            let header_end = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            assert_eq!(header_end % 64, 0);
            let b = parse_npy(&bytes, p()).unwrap();
            assert_eq!(b.shape(), a.shape());
            assert_eq!(to_npy_bytes(&b), bytes);
        }
    }

    #[test]
    fn reads_numpy_written_headers_and_versions() {
        for major in [1u8, 2, 3] {
            let mut b = header_bytes(
                major,
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }     \n",
            );
            b.extend_from_slice(&1.0f32.to_le_bytes());
            b.extend_from_slice(&2.0f32.to_le_bytes());
            match parse_npy(&b, p()).unwrap() {
                NpyArray::F32(a) => assert_eq!(a.as_slice().unwrap(), &[1.0, 2.0]),
                other => panic!("{other:?}"),
            }
        }
        // Scalar and double quotes, no trailing comma.
        let mut b = header_bytes(
            1,
            "{\"descr\": \"<i4\", \"fortran_order\": False, \"shape\": ()}",
        );
        b.extend_from_slice(&5i32.to_le_bytes());
        assert_eq!(parse_npy(&b, p()).unwrap().shape(), &[] as &[usize]);
    }

    #[test]
    fn bf16_bit_patterns() {
        let a =
            ArrayD::from_shape_vec(IxDyn(&[2]), vec![bf16::from_f32(1.0), bf16::from_f32(-3.5)])
                .unwrap();
        let n = NpyArray::from_bf16(&a);
        assert_eq!(n.descr(), "<u2");
        assert_eq!(n.into_bf16().unwrap(), a);
    }

    #[test]
    fn rejects_bad_files_without_panicking() {
        let good = to_npy_bytes(&NpyArray::F32(
            ArrayD::from_shape_vec(IxDyn(&[2]), vec![1.0, 2.0]).unwrap(),
        ));
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"NUMPY".to_vec(), "magic"),
            (good[..9].to_vec(), "magic"),
            ({ let mut b = good.clone(); b[6] = 4; b }, "version"),
            (good[..good.len() - 1].to_vec(), "needs 8 data bytes"),
            ({ let mut b = good.clone(); b.push(0); b }, "needs 8 data bytes"),
            ({ let mut b = good.clone(); b[8] = 0xFF; b[9] = 0xFF; b }, "runs past the end"),
            (header_bytes(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }"), "fortran_order"),
            (header_bytes(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }"), "big-endian"),
            (header_bytes(1, "{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }"), "not supported"),
            (header_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999, 99999999999), }"), "overflows"),
            (header_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (184467440737095516150,), }"), "too large"),
            (header_bytes(1, "{'descr': '<f4', 'shape': (1,), }"), "fortran_order"),
            (header_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}"), "unknown key"),
            (header_bytes(1, "{'descr': '<f4'"), "header"),
            (header_bytes(2, "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,), }"), "True or False"),
            ({ let mut b = header_bytes(1, "{'descr': '|b1', 'fortran_order': False, 'shape': (1,), }"); b.push(2); b }, "must be 0 or 1"),
            ({ let mut b = header_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }"); b[12] = 0xC3; b }, "ASCII"),
        ];
        for (bytes, want) in cases {
            match parse_npy(&bytes, p()) {
                Err(Error::NpyInvalid { what, .. }) => {
                    assert!(what.contains(want), "{what:?} lacks {want:?}")
                }
                other => panic!("expected NpyInvalid({want}), got {other:?}"),
            }
        }
    }

    #[test]
    fn truncations_and_bit_flips_never_panic() {
        let good = to_npy_bytes(&NpyArray::F64(
            ArrayD::from_shape_vec(IxDyn(&[3, 2]), vec![0.5; 6]).unwrap(),
        ));
        for n in 0..good.len() {
            let _ = parse_npy(&good[..n], p());
        }
        let mut seed = 1u64;
        for _ in 0..2000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let mut b = good.clone();
            let i = (seed >> 33) as usize % b.len();
            b[i] ^= 1 << ((seed >> 20) % 8);
            let _ = parse_npy(&b, p());
        }
    }

    #[test]
    fn writes_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.npy");
        let a = NpyArray::I64(ArrayD::from_shape_vec(IxDyn(&[2]), vec![3, 4]).unwrap());
        write_npy(&path, &a).unwrap();
        write_npy(&path, &a).unwrap();
        assert_eq!(read_npy(&path).unwrap(), a);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
        assert!(matches!(
            read_npy(dir.path().join("missing.npy")),
            Err(Error::Io { .. })
        ));
    }
}
