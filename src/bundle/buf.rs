//! Output buffers for tensor bytes.
//!
//! A tensor read into owned memory lands in pages the kernel has never
//! handed to the process; faulting them in one 4 KiB page at a time was
//! most of the cost of an owned read (on the 1 GiB benchmark, 262 144 page
//! faults took longer than copying and checking the data). Large buffers
//! are therefore advised to use transparent huge pages (512 times fewer
//! faults), which Linux honours when THP is set to `madvise` or `always`.

/// Capacity from which [`output`] advises huge pages: two huge pages, so that
/// at least one aligned 2 MiB page fits inside the buffer.
const HUGE_FROM: usize = 4 << 20;

/// An empty vector with capacity `len`, for a tensor's bytes; nothing is
/// zero-filled.
pub(crate) fn output(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    advise_huge_pages(&mut out);
    out
}

/// Advises the kernel to back the page-aligned part of `v`'s allocation with
/// transparent huge pages, when it is at least 4 MiB. Only pages not yet
/// touched are affected; failure (no THP, another OS) changes nothing, so it
/// is ignored.
#[cfg(target_os = "linux")]
pub(crate) fn advise_huge_pages(v: &mut Vec<u8>) {
    if v.capacity() < HUGE_FROM {
        return;
    }
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let Ok(page) = usize::try_from(page) else {
        return;
    };
    if page == 0 {
        return;
    }
    let start = v.as_mut_ptr() as usize;
    // The allocation is `capacity` bytes from `start`, so this cannot overflow.
    let end = start + v.capacity();
    let (Some(first), last) = (start.checked_next_multiple_of(page), end / page * page) else {
        return;
    };
    if last > first {
        // SAFETY: [first, last) lies inside the allocation `v` owns (first ≥
        // start, last ≤ end), and MADV_HUGEPAGE only tells the kernel how to
        // back those pages: it changes neither their contents nor the
        // mapping, so no Rust-visible memory changes.
        unsafe {
            libc::madvise(
                first as *mut libc::c_void,
                last - first,
                libc::MADV_HUGEPAGE,
            )
        };
    }
}

/// Advises nothing off Linux.
#[cfg(not(target_os = "linux"))]
pub(crate) fn advise_huge_pages(_v: &mut Vec<u8>) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_empty_with_the_capacity() {
        for len in [0, 1, 4096, HUGE_FROM, HUGE_FROM + 3] {
            let v = output(len);
            assert!(v.is_empty());
            assert!(v.capacity() >= len);
        }
    }

    #[test]
    fn advised_buffer_keeps_its_contents() {
        let mut v = vec![7u8; HUGE_FROM + 100];
        advise_huge_pages(&mut v);
        assert!(v.iter().all(|&b| b == 7));
        v.extend_from_slice(&[1, 2, 3]);
        assert_eq!(&v[v.len() - 3..], &[1, 2, 3]);
    }
}
