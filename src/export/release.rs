//! Keeping peak memory near one tensor while streaming a large checkpoint.
//!
//! Checkpoint data is memory-mapped, and every page a read touches (the crc
//! check touches all of them) stays in the process's resident set until
//! the map is dropped: exporting a 1 GiB checkpoint would peak at 1 GiB of
//! RSS although no byte of it is copied to the heap. After a tensor has
//! been written (or verified), [`release`] tells the kernel the process no
//! longer needs those pages. It does so only where that cannot change what
//! the memory holds: for pages of a read-only, file-backed mapping,
//! `MADV_DONTNEED` drops the page-table entries and a later read faults the
//! same bytes back in from the file (page cache). Anything else (heap
//! buffers, writable maps) is left alone, and on other platforms this is a
//! no-op.

/// Slices shorter than this are not worth a look at `/proc/self/maps`.
const MIN_RELEASE_BYTES: usize = 1 << 20;

/// Drops the pages fully inside `bytes` from the resident set, when `bytes`
/// lies in a read-only file mapping (see the module docs).
pub fn release(bytes: &[u8]) {
    if bytes.len() >= MIN_RELEASE_BYTES {
        imp::release(bytes);
    }
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod imp {
    use std::ffi::{c_int, c_long, c_void};

    extern "C" {
        fn madvise(addr: *mut c_void, len: usize, advice: c_int) -> c_int;
        fn sysconf(name: c_int) -> c_long;
    }
    /// `MADV_DONTNEED` on x86-64 and aarch64 Linux.
    const MADV_DONTNEED: c_int = 4;
    /// `_SC_PAGESIZE` on Linux (glibc and musl).
    const SC_PAGESIZE: c_int = 30;

    pub fn release(bytes: &[u8]) {
        let start = bytes.as_ptr() as usize;
        let Some(end) = start.checked_add(bytes.len()) else {
            return;
        };
        if !in_read_only_file_mapping(start, end) {
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

    /// True when `[start, end)` lies inside one mapping of `/proc/self/maps`
    /// that is readable, not writable, and backed by a file (inode ≠ 0).
    fn in_read_only_file_mapping(start: usize, end: usize) -> bool {
        let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
            return false;
        };
        for line in maps.lines() {
            // 7f2c4e000000-7f2c8e000000 r--s 00000000 fd:01 1234   /path/file
            let mut fields = line.split_whitespace();
            let (Some(range), Some(perms), Some(_offset), Some(_dev), Some(inode), Some(path)) = (
                fields.next(),
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
            if lo <= start && end <= hi {
                let p = perms.as_bytes();
                return p.len() >= 2
                    && p[0] == b'r'
                    && p[1] == b'-'
                    && inode != "0"
                    && path.starts_with('/');
            }
        }
        false
    }
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
mod imp {
    pub fn release(_bytes: &[u8]) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_memory_is_left_alone() {
        let v = vec![7u8; 4 << 20];
        release(&v);
        assert!(v.iter().all(|&b| b == 7));
    }

    #[test]
    fn mapped_file_reads_the_same_after_release() {
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
    }
}
