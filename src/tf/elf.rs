//! Checking a shared library before the dynamic loader maps it.
//!
//! `dlopen` trusts the file: a truncated library is mapped past its end and
//! the process dies of SIGBUS on the first touch of a missing page, and a
//! library without TF's C API loads fine and then panics inside the
//! `tensorflow` crate on the first call ("function not loaded"). So every
//! candidate is read here first, with bounds-checked `pread`s (no mapping):
//! the ELF header (64-bit, little-endian, this machine, a shared object),
//! every program header and every loadable segment within the file, and,
//! where asked, the dynamic symbols tfbn calls, found through the GNU or
//! SysV hash table the loader itself would use.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The C-API functions tfbn calls first (version, graph, session); a
/// library without them is not a TensorFlow C API.
pub const REQUIRED_SYMBOLS: &[&str] = &[
    "TF_Version",
    "TF_NewStatus",
    "TF_GetCode",
    "TF_Message",
    "TF_NewGraph",
    "TF_NewOperation",
    "TF_FinishOperation",
    "TF_NewSessionOptions",
    "TF_NewSession",
    "TF_SessionRun",
    "TF_AllocateTensor",
    "TF_TensorData",
    "TF_DeleteTensor",
];

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const DT_NULL: u64 = 0;
const DT_HASH: u64 = 4;
const DT_STRTAB: u64 = 5;
const DT_SYMTAB: u64 = 6;
const DT_STRSZ: u64 = 10;
const DT_GNU_HASH: u64 = 0x6fff_fef5;
const SYM_SIZE: u64 = 24;
/// Hash chains longer than this are corrupt (TF's longest is a few dozen).
const MAX_CHAIN: u64 = 1 << 20;

#[cfg(target_arch = "x86_64")]
const MACHINE: Option<u16> = Some(62);
#[cfg(target_arch = "aarch64")]
const MACHINE: Option<u16> = Some(183);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const MACHINE: Option<u16> = None;

struct Reader {
    path: PathBuf,
    file: File,
    len: u64,
}

impl Reader {
    fn bad(&self, what: impl Into<String>) -> Error {
        Error::LibraryInvalid {
            path: self.path.clone(),
            what: what.into(),
        }
    }

    fn bytes(&self, offset: u64, n: u64, what: &str) -> Result<Vec<u8>> {
        let end = offset.checked_add(n).filter(|&e| e <= self.len);
        if end.is_none() {
            return Err(self.bad(format!(
                "{what} at offset {offset} ({n} bytes) lies past the end of the {}-byte file (truncated?)",
                self.len
            )));
        }
        let mut buf = vec![0u8; n as usize];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(buf)
    }

    fn u32_at(&self, offset: u64, what: &str) -> Result<u32> {
        let b = self.bytes(offset, 4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

fn u16_of(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_of(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_of(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// A loadable segment: file range and virtual address.
struct Load {
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

struct Elf {
    r: Reader,
    loads: Vec<Load>,
    dynamic: Option<(u64, u64)>,
}

impl Elf {
    /// The file offset of virtual address `addr` (inside a loaded segment).
    fn offset_of(&self, addr: u64, what: &str) -> Result<u64> {
        self.loads
            .iter()
            .find(|l| addr >= l.vaddr && addr - l.vaddr < l.filesz)
            .map(|l| l.offset + (addr - l.vaddr))
            .ok_or_else(|| {
                self.r
                    .bad(format!("{what} address {addr:#x} is in no loaded segment"))
            })
    }
}

/// Opens `path` and checks its ELF header, program headers and segments.
fn open(path: &Path) -> Result<Elf> {
    let file = crate::fsx::open_regular(path)?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let r = Reader {
        path: path.to_path_buf(),
        file,
        len,
    };
    if len < 64 {
        return Err(r.bad(format!("{len} bytes is too short for an ELF header")));
    }
    let h = r.bytes(0, 64, "ELF header")?;
    if &h[..4] != b"\x7fELF" {
        return Err(r.bad("not an ELF file (no \\x7fELF magic)"));
    }
    if h[4] != 2 || h[5] != 1 {
        return Err(r.bad("not a 64-bit little-endian ELF file"));
    }
    if u16_of(&h, 16) != 3 {
        return Err(r.bad("not a shared object (ELF type is not DYN)"));
    }
    let machine = u16_of(&h, 18);
    if MACHINE.is_some_and(|m| m != machine) {
        return Err(r.bad(format!(
            "built for ELF machine {machine}, not for this one ({})",
            std::env::consts::ARCH
        )));
    }
    let phoff = u64_of(&h, 32);
    let phentsize = u16_of(&h, 54) as u64;
    let phnum = u16_of(&h, 56) as u64;
    if phentsize < 56 {
        return Err(r.bad(format!("program header size {phentsize} < 56")));
    }
    let table = r.bytes(phoff, phentsize * phnum, "program header table")?;
    let mut loads = Vec::new();
    let mut dynamic = None;
    for i in 0..phnum as usize {
        let ph = &table[i * phentsize as usize..];
        let (p_type, offset, vaddr, filesz, memsz) = (
            u32_of(ph, 0),
            u64_of(ph, 8),
            u64_of(ph, 16),
            u64_of(ph, 32),
            u64_of(ph, 40),
        );
        if p_type != PT_LOAD && p_type != PT_DYNAMIC {
            continue;
        }
        let end = offset.checked_add(filesz);
        if end.is_none_or(|e| e > len) {
            // What a truncated copy looks like; mapping it is SIGBUS.
            return Err(r.bad(format!(
                "segment {i} (file bytes {offset}..{}) runs past the end of the {len}-byte file (truncated?)",
                offset.saturating_add(filesz)
            )));
        }
        if p_type == PT_LOAD {
            if memsz < filesz {
                return Err(r.bad(format!("segment {i}: memory size < file size")));
            }
            loads.push(Load {
                offset,
                vaddr,
                filesz,
            });
        } else {
            dynamic = Some((offset, filesz));
        }
    }
    if loads.is_empty() {
        return Err(r.bad("no loadable segment"));
    }
    Ok(Elf { r, loads, dynamic })
}

/// Checks that the dynamic loader can map `path` without reading past its
/// end (header, program headers, segments). For a library tfbn only needs
/// loaded as a dependency (`libtensorflow_framework.so.2`).
pub fn check_loadable(path: &Path) -> Result<()> {
    open(path).map(|_| ())
}

/// [`check_loadable`], then which of `symbols` the library does not
/// define in its dynamic symbol table (empty: all there).
pub fn missing_symbols<'s>(path: &Path, symbols: &[&'s str]) -> Result<Vec<&'s str>> {
    let elf = open(path)?;
    if symbols.is_empty() {
        return Ok(Vec::new());
    }
    let r = &elf.r;
    let (dyn_off, dyn_size) = elf
        .dynamic
        .ok_or_else(|| r.bad("no dynamic section, so it exports no symbols"))?;
    let d = r.bytes(dyn_off, dyn_size, "dynamic section")?;
    let (mut symtab, mut strtab, mut strsz, mut gnu_hash, mut hash) =
        (None, None, None, None, None);
    for e in d.chunks_exact(16) {
        let (tag, val) = (u64_of(e, 0), u64_of(e, 8));
        match tag {
            DT_NULL => break,
            DT_SYMTAB => symtab = Some(val),
            DT_STRTAB => strtab = Some(val),
            DT_STRSZ => strsz = Some(val),
            DT_GNU_HASH => gnu_hash = Some(val),
            DT_HASH => hash = Some(val),
            _ => {}
        }
    }
    let (Some(symtab), Some(strtab), Some(strsz)) = (symtab, strtab, strsz) else {
        return Err(r.bad("no dynamic symbol or string table"));
    };
    let t = Tables {
        elf: &elf,
        symtab: elf.offset_of(symtab, "symbol table")?,
        strtab: elf.offset_of(strtab, "string table")?,
        strsz,
    };
    let hash_table = match (gnu_hash, hash) {
        (Some(a), _) => Hash::Gnu(elf.offset_of(a, "GNU hash table")?),
        (None, Some(a)) => Hash::SysV(elf.offset_of(a, "hash table")?),
        (None, None) => return Err(r.bad("no symbol hash table")),
    };
    let mut missing = Vec::new();
    for &s in symbols {
        if !t.defined(&hash_table, s)? {
            missing.push(s);
        }
    }
    Ok(missing)
}

enum Hash {
    Gnu(u64),
    SysV(u64),
}

struct Tables<'a> {
    elf: &'a Elf,
    symtab: u64,
    strtab: u64,
    strsz: u64,
}

impl Tables<'_> {
    /// Whether symbol `index` is named `name` and defined.
    fn is(&self, index: u64, name: &str) -> Result<bool> {
        let r = &self.elf.r;
        let sym = r.bytes(
            self.symtab + index.saturating_mul(SYM_SIZE),
            SYM_SIZE,
            "symbol",
        )?;
        let (st_name, st_shndx) = (u32_of(&sym, 0) as u64, u16_of(&sym, 6));
        let want = name.as_bytes();
        // The name plus its NUL must lie inside the string table.
        if st_name.saturating_add(want.len() as u64) >= self.strsz {
            return Ok(false);
        }
        let got = r.bytes(self.strtab + st_name, want.len() as u64 + 1, "symbol name")?;
        Ok(&got[..want.len()] == want && got[want.len()] == 0 && st_shndx != 0)
    }

    fn defined(&self, hash: &Hash, name: &str) -> Result<bool> {
        let r = &self.elf.r;
        match *hash {
            Hash::Gnu(at) => {
                let h = r.bytes(at, 16, "GNU hash header")?;
                let (nbuckets, symoffset, bloom_size) = (
                    u32_of(&h, 0) as u64,
                    u32_of(&h, 4) as u64,
                    u32_of(&h, 8) as u64,
                );
                if nbuckets == 0 {
                    return Ok(false);
                }
                let hv = name
                    .bytes()
                    .fold(5381u32, |h, c| h.wrapping_mul(33).wrapping_add(c as u32));
                let buckets = at + 16 + bloom_size * 8;
                let chains = buckets + nbuckets * 4;
                let first =
                    r.u32_at(buckets + (hv as u64 % nbuckets) * 4, "GNU hash bucket")? as u64;
                if first == 0 {
                    return Ok(false);
                }
                if first < symoffset {
                    return Err(r.bad("GNU hash bucket points below its first symbol"));
                }
                for i in first..first + MAX_CHAIN {
                    let h2 = r.u32_at(chains + (i - symoffset) * 4, "GNU hash chain")?;
                    if (h2 | 1) == (hv | 1) && self.is(i, name)? {
                        return Ok(true);
                    }
                    if h2 & 1 == 1 {
                        return Ok(false);
                    }
                }
                Err(r.bad("GNU hash chain does not end"))
            }
            Hash::SysV(at) => {
                let nbucket = r.u32_at(at, "hash header")? as u64;
                if nbucket == 0 {
                    return Ok(false);
                }
                let hv = name.bytes().fold(0u32, |h, c| {
                    let h = (h << 4).wrapping_add(c as u32);
                    let g = h & 0xf000_0000;
                    (h ^ (g >> 24)) & !g
                });
                let buckets = at + 8;
                let chains = buckets + nbucket * 4;
                let mut i = r.u32_at(buckets + (hv as u64 % nbucket) * 4, "hash bucket")? as u64;
                for _ in 0..MAX_CHAIN {
                    if i == 0 {
                        return Ok(false);
                    }
                    if self.is(i, name)? {
                        return Ok(true);
                    }
                    i = r.u32_at(chains + i * 4, "hash chain")? as u64;
                }
                Err(r.bad("hash chain does not end"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running test binary: a real ELF (a PIE executable, type DYN).
    fn me() -> PathBuf {
        std::env::current_exe().unwrap()
    }

    #[test]
    fn a_truncated_copy_is_refused_before_loading() {
        let dir = tempfile::tempdir().unwrap();
        let cut = dir.path().join("cut.so");
        let bytes = std::fs::read(me()).unwrap();
        std::fs::write(&cut, &bytes[..bytes.len().min(1 << 16)]).unwrap();
        let e = check_loadable(&cut).unwrap_err().to_string();
        assert!(e.contains("past the end") && e.contains("cut.so"), "{e}");
        std::fs::write(&cut, b"\x7fELF").unwrap();
        assert!(check_loadable(&cut).is_err());
        std::fs::write(&cut, vec![0u8; 100]).unwrap();
        let e = check_loadable(&cut).unwrap_err().to_string();
        assert!(e.contains("not an ELF"), "{e}");
    }

    #[test]
    fn symbols_are_found_through_the_hash_table() {
        // libc exports `malloc` but not TF's API.
        let libc = [
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/lib64/libc.so.6",
            "/lib/aarch64-linux-gnu/libc.so.6",
        ]
        .iter()
        .map(Path::new)
        .find(|p| p.is_file());
        let Some(libc) = libc else { return };
        assert!(missing_symbols(libc, &["malloc", "free"])
            .unwrap()
            .is_empty());
        assert_eq!(
            missing_symbols(libc, &["malloc", "TF_Version"]).unwrap(),
            ["TF_Version"]
        );
    }
}
