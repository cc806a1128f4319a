//! Streaming a large checkpoint the way `cp` would: what the bytes borrowed
//! from the checkpoint's memory map let the writer do besides `write(2)`.
//!
//! * [`release`]: every page a read touches (the crc check touches all of
//!   them) stays in the process's resident set until the map is dropped, so
//!   exporting a 1 GiB checkpoint would peak at 1 GiB of RSS although no byte
//!   of it is copied to the heap. After a tensor has been written (or
//!   verified), the pages are given back with `MADV_DONTNEED`.
//! * [`file_backing`]: where a borrowed slice lives in its file, so the
//!   writer can copy it file to file inside the kernel (`copy_file_range`,
//!   what `cp` uses) instead of through user memory.
//! * [`start_writeback`]: lets the disk write one tensor while the next is
//!   read, so the closing `fdatasync` does not wait for the whole file.
//!
//! Both act only on slices that lie in a mapping `/proc/self/maps` lists as
//! readable, not writable and file-backed: there `MADV_DONTNEED` drops
//! page-table entries and a later read faults the same bytes back in from
//! the file (page cache), and the file range holds exactly the bytes the
//! slice shows (they were crc-checked through the same page cache). Anything
//! else (heap buffers, writable maps) is left alone, and on other platforms
//! both are no-ops.

use std::path::PathBuf;

/// Slices shorter than this are not worth a look at `/proc/self/maps`.
pub const MIN_MAPPED_BYTES: usize = 1 << 20;

/// Drops the pages fully inside `bytes` from the resident set, when `bytes`
/// lies in a read-only file mapping (see the module docs).
pub fn release(bytes: &[u8]) {
    if bytes.len() >= MIN_MAPPED_BYTES {
        imp::release(bytes);
    }
}

/// The file a borrowed slice is mapped from, and the offset of its first
/// byte in that file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backing {
    /// The mapped file, as `/proc/self/maps` names it.
    pub path: PathBuf,
    /// Its inode, to check that the path still names the mapped file.
    pub inode: u64,
    /// Offset of the slice's first byte in the file.
    pub offset: u64,
}

/// Where `bytes` lives, when it is at least [`MIN_MAPPED_BYTES`] long and
/// lies in a read-only file mapping (see the module docs).
pub fn file_backing(bytes: &[u8]) -> Option<Backing> {
    if bytes.len() < MIN_MAPPED_BYTES {
        return None;
    }
    imp::backing(bytes)
}

/// Asks the kernel to start writing `[offset, offset + len)` of `file` to
/// disk now, without waiting (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), so
/// that the disk works while the next tensor is read and checked and the
/// final `fdatasync` has less left to wait for. A hint: errors are ignored,
/// and it is a no-op off Linux.
pub fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    imp::start_writeback(file, offset, len);
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod imp {
    use std::ffi::{c_int, c_long, c_void};
    use std::path::PathBuf;

    use super::Backing;

    extern "C" {
        fn madvise(addr: *mut c_void, len: usize, advice: c_int) -> c_int;
        fn sysconf(name: c_int) -> c_long;
        fn sync_file_range(fd: c_int, offset: i64, nbytes: i64, flags: std::ffi::c_uint) -> c_int;
    }
    /// `SYNC_FILE_RANGE_WRITE`.
    const SYNC_FILE_RANGE_WRITE: std::ffi::c_uint = 2;

    pub fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: the fd is open for the lifetime of `file`; the call only
        // schedules write-back of dirty pages and touches no memory of ours.
        unsafe {
            sync_file_range(file.as_raw_fd(), offset, len, SYNC_FILE_RANGE_WRITE);
        }
    }
    /// `MADV_DONTNEED` on x86-64 and aarch64 Linux.
    const MADV_DONTNEED: c_int = 4;
    /// `_SC_PAGESIZE` on Linux (glibc and musl).
    const SC_PAGESIZE: c_int = 30;

    /// One line of `/proc/self/maps` that holds `[start, end)`.
    struct Mapping {
        lo: usize,
        file_offset: u64,
        inode: u64,
        path: String,
    }

    /// The read-only, file-backed mapping holding `[start, end)`, if any.
    fn read_only_file_mapping(start: usize, end: usize) -> Option<Mapping> {
        let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
        for line in maps.lines() {
            // 7f2c4e000000-7f2c8e000000 r--s 00000000 fd:01 1234   /path/file
            let mut fields = line.splitn(6, ' ').filter(|f| !f.is_empty());
            let (Some(range), Some(perms), Some(offset), Some(_dev), Some(inode)) = (
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
            ) else {
                continue;
            };
            let Some((lo, hi)) = range.split_once('-') else {
                continue;
            };
            let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            else {
                continue;
            };
            if !(lo <= start && end <= hi) {
                continue;
            }
            let path = line
                .splitn(6, ' ')
                .filter(|f| !f.is_empty())
                .nth(5)
                .map(|p| p.trim_start().to_string())
                .unwrap_or_default();
            let p = perms.as_bytes();
            let read_only = p.len() >= 2 && p[0] == b'r' && p[1] == b'-';
            let inode: u64 = inode.parse().unwrap_or(0);
            if !read_only || inode == 0 || !path.starts_with('/') {
                return None;
            }
            return Some(Mapping {
                lo,
                file_offset: u64::from_str_radix(offset, 16).ok()?,
                inode,
                path,
            });
        }
        None
    }

    pub fn release(bytes: &[u8]) {
        let start = bytes.as_ptr() as usize;
        let Some(end) = start.checked_add(bytes.len()) else {
            return;
        };
        if read_only_file_mapping(start, end).is_none() {
            return;
        }
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { sysconf(SC_PAGESIZE) };
        let Ok(page) = usize::try_from(page) else {
            return;
        };
        if page == 0 || !page.is_power_of_two() {
            return;
        }
        let first = (start + page - 1) & !(page - 1);
        let last = end & !(page - 1);
        if last > first {
            // SAFETY: [first, last) is page-aligned and lies inside a mapping
            // that is file-backed and not writable (checked above), so
            // MADV_DONTNEED only drops page-table entries: later reads of
            // `bytes` (or of any other reference into the map) fault the same
            // file contents back in. The call neither frees nor changes the
            // memory the references point to.
            unsafe {
                madvise(first as *mut c_void, last - first, MADV_DONTNEED);
            }
        }
    }

    pub fn backing(bytes: &[u8]) -> Option<Backing> {
        let start = bytes.as_ptr() as usize;
        let end = start.checked_add(bytes.len())?;
        let m = read_only_file_mapping(start, end)?;
        // A replaced file shows as "/path (deleted)"; it cannot be reopened.
        if m.path.ends_with(" (deleted)") {
            return None;
        }
        Some(Backing {
            path: PathBuf::from(m.path),
            inode: m.inode,
            offset: m.file_offset.checked_add((start - m.lo) as u64)?,
        })
    }
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
mod imp {
    use super::Backing;

    pub fn release(_bytes: &[u8]) {}

    pub fn start_writeback(_file: &std::fs::File, _offset: u64, _len: u64) {}

    pub fn backing(_bytes: &[u8]) -> Option<Backing> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_memory_is_left_alone() {
        let v = vec![7u8; 4 << 20];
        release(&v);
        assert!(v.iter().all(|&b| b == 7));
        assert_eq!(file_backing(&v), None);
    }

    #[test]
    fn mapped_file_reads_the_same_after_release_and_knows_its_offset() {
        use std::io::Write;
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let data: Vec<u8> = (0..(3usize << 20)).map(|i| (i * 31 % 251) as u8).collect();
        f.write_all(&data).unwrap();
        f.flush().unwrap();
        let file = std::fs::File::open(f.path()).unwrap();
        // SAFETY: test-owned temp file, not modified while mapped.
        let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        assert_eq!(&map[..], &data[..]);
        release(&map[..]);
        assert_eq!(&map[..], &data[..]);
        if cfg!(all(
            target_os = "linux",
            any(target_arch = "x86_64", target_arch = "aarch64")
        )) {
            let b = file_backing(&map[12345..12345 + (2 << 20)]).expect("backed by the file");
            assert_eq!(b.offset, 12345);
            assert_eq!(
                std::fs::canonicalize(&b.path).unwrap(),
                std::fs::canonicalize(f.path()).unwrap()
            );
        }
    }
}
