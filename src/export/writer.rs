//! A streaming, deterministic safetensors writer.
//!
//! The `safetensors` crate serializes its metadata from a `HashMap`, so two
//! runs over the same input can order the header differently; tfbn promises
//! byte-identical output, so the header is built here from sorted maps. The
//! tensor bytes are streamed one tensor at a time, so peak memory stays near
//! one tensor, not the file: borrowed from the checkpoint's memory map where
//! possible, written 1 MiB at a time while a second thread computes the crc
//! still owed on them a step or two ahead (`crate::bundle::Deferred`),
//! checked before the next tensor, then their pages released (see
//! [`super::mapped`]). Borrowed bytes already checked are copied file to
//! file by the kernel.
//!
//! Every file is written to a sibling temp file and renamed into place: a
//! failed write never leaves a partial output, and an existing output is
//! replaced only when the caller allows it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use super::mapped;
use crate::bundle::Deferred;
use crate::error::{Error, Result};
use crate::DType;

/// Bytes crc'd and then written per step when a tensor's check is deferred:
/// small enough to stay in cache between the two, large enough to keep
/// `write` calls few (measured on the 1 GiB benchmark: 1 MiB steps copy at
/// about `cp` speed, 4 MiB ones fall out of cache).
const STREAM_CHUNK: usize = 1 << 20;

/// One tensor to write: its name, dtype, shape and a way to get its bytes.
pub struct PlannedTensor<'a> {
    /// Name in the safetensors file.
    pub name: String,
    /// Element type (must have a safetensors equivalent).
    pub dtype: DType,
    /// Shape.
    pub shape: Vec<u64>,
    /// Byte length of the data.
    pub nbytes: u64,
    /// Produces the little-endian bytes when the tensor is written, with
    /// the crc check still to run on them, if any (run by the writer as it
    /// streams the bytes; a mismatch fails the write, so nothing unchecked
    /// is ever renamed into place).
    pub bytes: Box<dyn Fn() -> Result<Deferred<'a>> + 'a>,
}

/// Builds the header JSON: `__metadata__` (string → string) and one entry per
/// tensor, in the order given, with offsets tiling the data area.
pub fn header_json(
    tensors: &[PlannedTensor<'_>],
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    // Built through BTreeMaps and inserted in sorted order, so the bytes do
    // not depend on whether serde_json's `preserve_order` feature happens to
    // be on in this build (a dependency can switch it on).
    let mut entries: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    if !metadata.is_empty() {
        let meta: serde_json::Map<String, serde_json::Value> = metadata
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        entries.insert("__metadata__".into(), serde_json::Value::Object(meta));
    }
    let mut offset: u64 = 0;
    for t in tensors {
        let st = t.dtype.to_safetensors().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{}: dtype {} has no safetensors equivalent",
                t.name, t.dtype
            ))
        })?;
        let end = offset.checked_add(t.nbytes).ok_or_else(|| {
            Error::InvalidArgument(format!("{}: total size overflows 64 bits", t.name))
        })?;
        if t.name == "__metadata__" || entries.contains_key(&t.name) {
            return Err(Error::ExportNamesNotUnique {
                name: t.name.clone(),
                what: if t.name == "__metadata__" {
                    "the name is reserved for the header's metadata".into()
                } else {
                    "two tensors would be written under it".into()
                },
            });
        }
        let mut info = serde_json::Map::new();
        // Keys in sorted order: data_offsets, dtype, shape.
        info.insert("data_offsets".into(), serde_json::json!([offset, end]));
        info.insert("dtype".into(), serde_json::Value::String(format!("{st:?}")));
        info.insert("shape".into(), serde_json::json!(t.shape));
        entries.insert(t.name.clone(), serde_json::Value::Object(info));
        offset = end;
    }
    let map: serde_json::Map<String, serde_json::Value> = entries.into_iter().collect();
    let mut bytes = serde_json::to_vec(&serde_json::Value::Object(map))
        .map_err(|e| Error::InvalidArgument(format!("cannot encode safetensors header: {e}")))?;
    // Pad with spaces to a multiple of 8 so the data area is aligned.
    while bytes.len() % 8 != 0 {
        bytes.push(b' ');
    }
    Ok(bytes)
}

/// Writes `tensors` (in the given order) and `metadata` to `out`, through a
/// temp file renamed into place. Returns the number of bytes written.
///
/// `progress` is called after each tensor with the data bytes written so far.
pub fn write_safetensors(
    out: &Path,
    tensors: &[PlannedTensor<'_>],
    metadata: &BTreeMap<String, String>,
    policy: OutputPolicy,
    progress: &mut dyn FnMut(u64),
) -> Result<u64> {
    let header = header_json(tensors, metadata)?;
    write_atomic(out, policy, |w| {
        w.write_all(&(header.len() as u64).to_le_bytes())?;
        w.write_all(&header)?;
        let data_start = 8 + header.len() as u64;
        let mut written = 0u64;
        for t in tensors {
            let Deferred { bytes: data, check } = (t.bytes)()?;
            if data.len() as u64 != t.nbytes {
                return Err(Error::SizeMismatch {
                    path: out.to_path_buf(),
                    key: t.name.clone(),
                    size: data.len() as u64,
                    expected: t.nbytes,
                    what: "bytes produced for export".into(),
                }
                .into());
            }
            match (&data, check) {
                (_, Some(check)) => {
                    w.flush()?;
                    let crc = write_with_crc(w.get_ref(), &data)?;
                    check.verify(crc)?;
                    mapped::release(&data);
                }
                (Cow::Borrowed(b), None) => {
                    if !copy_from_backing_file(w, b)? {
                        w.write_all(b)?;
                    }
                    mapped::release(b);
                }
                (Cow::Owned(b), None) => w.write_all(b)?,
            }
            // Hand each large tensor to the disk as soon as it is written,
            // so the final fdatasync waits for little; without the sync there
            // is nothing to wait for, and starting write-back early would
            // only compete with the copy.
            if policy.sync && t.nbytes >= mapped::MIN_MAPPED_BYTES as u64 {
                w.flush()?;
                mapped::start_writeback(w.get_ref(), data_start + written, t.nbytes);
            }
            written += t.nbytes;
            progress(written);
        }
        Ok(data_start + written)
    })
}

/// Writes `data` to `file` and returns its crc32c, reading it from memory
/// once: a second thread computes the crc chunk by chunk and hands each
/// chunk to this one, at most two chunks behind, which writes it while it
/// is still in cache. Nothing about the result depends on the timing.
fn write_with_crc(mut file: &File, data: &[u8]) -> std::io::Result<u32> {
    if data.len() <= STREAM_CHUNK {
        let crc = crc32c::crc32c(data);
        file.write_all(data)?;
        return Ok(crc);
    }
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<&[u8]>(2);
        let crc = scope.spawn(move || {
            let mut crc = 0u32;
            for chunk in data.chunks(STREAM_CHUNK) {
                crc = crc32c::crc32c_append(crc, chunk);
                if tx.send(chunk).is_err() {
                    break; // the writer failed and stopped listening
                }
            }
            crc
        });
        let written = rx.iter().try_for_each(|chunk| file.write_all(chunk));
        drop(rx);
        let crc = crc
            .join()
            .map_err(|_| std::io::Error::other("the crc thread panicked"))?;
        written.map(|()| crc)
    })
}

/// Copies `bytes` into `w` file to file inside the kernel when they are
/// borrowed from a read-only file mapping (see [`mapped::file_backing`]):
/// `std::io::copy` from a `Take<&File>` to a `&File` is `copy_file_range`,
/// what `cp` uses, and it skips a pass through user memory. Returns false,
/// having written nothing, when the bytes have no usable backing file (the
/// caller then writes them from memory).
#[cfg(unix)]
fn copy_from_backing_file(w: &mut BufWriter<&File>, bytes: &[u8]) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::fs::MetadataExt;

    let Some(backing) = mapped::file_backing(bytes) else {
        return Ok(false);
    };
    // Regular files only: the path may have been replaced by a FIFO.
    let Ok(src) = crate::fsx::open_regular(&backing.path) else {
        return Ok(false);
    };
    // The path must still name the mapped file, holding the whole range.
    let Ok(meta) = src.metadata() else {
        return Ok(false);
    };
    let len = bytes.len() as u64;
    if meta.ino() != backing.inode
        || backing
            .offset
            .checked_add(len)
            .is_none_or(|end| end > meta.len())
    {
        return Ok(false);
    }
    w.flush()?;
    let mut from = &src;
    from.seek(SeekFrom::Start(backing.offset))?;
    let mut to: &File = w.get_ref();
    let copied = std::io::copy(&mut from.take(len), &mut to)?;
    if copied != len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("{}: copied {copied} of {len} bytes", backing.path.display()),
        ));
    }
    Ok(true)
}

#[cfg(not(unix))]
fn copy_from_backing_file(_w: &mut BufWriter<&File>, _bytes: &[u8]) -> std::io::Result<bool> {
    Ok(false)
}

pub use crate::fsio::{
    check_output, check_output_not_input, write_atomic, OutputPolicy, WriteError,
};

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: a fixed-seed generator for the round-trip property test.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn unchecked(bytes: Cow<'_, [u8]>) -> Deferred<'_> {
        Deferred { bytes, check: None }
    }

    fn owned(name: &str, dtype: DType, shape: Vec<u64>, data: Vec<u8>) -> PlannedTensor<'static> {
        PlannedTensor {
            name: name.to_string(),
            dtype,
            shape,
            nbytes: data.len() as u64,
            bytes: Box::new(move || {
                Ok(Deferred {
                    bytes: Cow::Owned(data.clone()),
                    check: None,
                })
            }),
        }
    }

    /// docs/reliability.md#crafted-inputs, case 47: whatever tfbn writes, the safetensors crate
    /// reads back exactly (no gap, overlap, trailing byte or duplicate), and
    /// the same input gives the same bytes.
    #[test]
    fn random_files_round_trip_through_the_safetensors_crate() {
        let dtypes = [
            DType::F32,
            DType::F64,
            DType::F16,
            DType::BF16,
            DType::I8,
            DType::I64,
            DType::Bool,
            DType::U16,
        ];
        let dir = tempfile::tempdir().unwrap();
        let mut rng = Rng(0x7f4a_7c15_9e37_79b9);
        for case in 0..64 {
            let n = rng.below(6) as usize;
            let mut expected = Vec::new();
            let mut tensors = Vec::new();
            for i in 0..n {
                let dtype = dtypes[rng.below(dtypes.len() as u64) as usize];
                let rank = rng.below(4) as usize;
                let shape: Vec<u64> = (0..rank).map(|_| rng.below(5)).collect();
                let count: u64 = shape.iter().product();
                let len = (count as usize) * dtype.byte_width().unwrap();
                let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                let name = format!(
                    "t{}/{}.{}",
                    rng.below(1000),
                    i,
                    ["a", "é", "_", ""][rng.below(4) as usize]
                );
                expected.push((name.clone(), dtype, shape.clone(), data.clone()));
                tensors.push(owned(&name, dtype, shape, data));
            }
            let mut meta = BTreeMap::new();
            for k in 0..rng.below(4) {
                meta.insert(format!("k{k}"), format!("v{}", rng.next()));
            }
            let out = dir.path().join(format!("{case}.safetensors"));
            let again = dir.path().join(format!("{case}-again.safetensors"));
            write_safetensors(&out, &tensors, &meta, OutputPolicy::default(), &mut |_| {}).unwrap();
            write_safetensors(
                &again,
                &tensors,
                &meta,
                OutputPolicy::default(),
                &mut |_| {},
            )
            .unwrap();
            let bytes = std::fs::read(&out).unwrap();
            assert_eq!(
                bytes,
                std::fs::read(&again).unwrap(),
                "case {case}: not deterministic"
            );
            let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            assert_eq!(st.len(), expected.len());
            for (name, dtype, shape, data) in &expected {
                let t = st.tensor(name).unwrap();
                assert_eq!(Some(t.dtype()), dtype.to_safetensors());
                let s: Vec<u64> = t.shape().iter().map(|&d| d as u64).collect();
                assert_eq!(&s, shape);
                assert_eq!(t.data(), data.as_slice());
            }
            let (header_len, m) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
            assert_eq!((8 + header_len) % 8, 0, "data area is 8-aligned");
            let got: BTreeMap<String, String> = m
                .metadata()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect();
            assert_eq!(got, meta);
        }
    }

    #[test]
    fn duplicate_and_reserved_names_are_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("o.safetensors");
        let meta = BTreeMap::new();
        let dup = vec![
            owned("a", DType::F32, vec![1], vec![0; 4]),
            owned("a", DType::F32, vec![1], vec![0; 4]),
        ];
        assert!(matches!(
            write_safetensors(&out, &dup, &meta, OutputPolicy::default(), &mut |_| {}),
            Err(Error::ExportNamesNotUnique { .. })
        ));
        let reserved = vec![owned("__metadata__", DType::F32, vec![1], vec![0; 4])];
        assert!(matches!(
            write_safetensors(&out, &reserved, &meta, OutputPolicy::default(), &mut |_| {}),
            Err(Error::ExportNamesNotUnique { .. })
        ));
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    }

    #[test]
    fn bytes_borrowed_from_a_mapped_file_are_copied_exactly() {
        use std::io::Write as _;
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let data: Vec<u8> = (0..(5usize << 20) + 3)
            .map(|i| (i * 7 % 253) as u8)
            .collect();
        f.write_all(&data).unwrap();
        f.flush().unwrap();
        let file = File::open(f.path()).unwrap();
        // SAFETY: test-owned temp file, not modified while mapped.
        let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        let (a, b) = (&map[1..(2 << 20) + 1], &map[(2 << 20) + 1..]);
        let tensors = vec![
            PlannedTensor {
                name: "small".into(),
                dtype: DType::U8,
                shape: vec![3],
                nbytes: 3,
                bytes: Box::new(|| Ok(unchecked(Cow::Owned(vec![1, 2, 3])))),
            },
            PlannedTensor {
                name: "a".into(),
                dtype: DType::U8,
                shape: vec![a.len() as u64],
                nbytes: a.len() as u64,
                bytes: Box::new(move || Ok(unchecked(Cow::Borrowed(a)))),
            },
            PlannedTensor {
                name: "b".into(),
                dtype: DType::U8,
                shape: vec![b.len() as u64],
                nbytes: b.len() as u64,
                bytes: Box::new(move || Ok(unchecked(Cow::Borrowed(b)))),
            },
        ];
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("o.safetensors");
        write_safetensors(
            &out,
            &tensors,
            &BTreeMap::new(),
            OutputPolicy::default(),
            &mut |_| {},
        )
        .unwrap();
        let bytes = std::fs::read(&out).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.tensor("small").unwrap().data(), &[1, 2, 3]);
        assert_eq!(st.tensor("a").unwrap().data(), &data[1..(2 << 20) + 1]);
        assert_eq!(st.tensor("b").unwrap().data(), &data[(2 << 20) + 1..]);
    }

    /// The two-thread streaming write gives the crc of all the bytes and
    /// writes them in order, for sizes below, at and across chunk bounds.
    #[test]
    fn write_with_crc_writes_everything_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        for len in [
            0,
            7,
            STREAM_CHUNK,
            STREAM_CHUNK + 1,
            5 * STREAM_CHUNK + 12345,
        ] {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    s as u8
                })
                .collect();
            let path = dir.path().join(format!("{len}.bin"));
            let file = File::create(&path).unwrap();
            let crc = write_with_crc(&file, &data).unwrap();
            drop(file);
            assert_eq!(crc, crc32c::crc32c(&data), "{len}");
            assert_eq!(std::fs::read(&path).unwrap(), data, "{len}");
        }
    }
}
