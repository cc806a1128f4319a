//! Splitting work over the host's cores with scoped threads.
//!
//! Only splits that cannot change a result are offered: channel ranges for
//! reductions (each channel is summed by one thread in TF's order) and
//! element ranges for the element-wise pass.

use std::ops::Range;

/// Below this many elements of work, one thread does it all.
pub(crate) const MIN_PARALLEL_WORK: usize = 1 << 16;

pub(crate) use crate::host::host_threads;
#[cfg(test)]
pub(crate) use crate::host::with_threads;

/// How many threads to use for `work` elements of work.
pub(crate) fn threads_for(work: usize) -> usize {
    if work < MIN_PARALLEL_WORK {
        1
    } else {
        host_threads().min(work / (MIN_PARALLEL_WORK / 2)).max(1)
    }
}

/// Splits `0..n` into at most `parts` contiguous ranges whose boundaries are
/// multiples of `align` (except the end).
pub(crate) fn ranges(n: usize, parts: usize, align: usize) -> Vec<Range<usize>> {
    let align = align.max(1);
    let units = n.div_ceil(align);
    let parts = parts.clamp(1, units.max(1));
    let mut out = Vec::with_capacity(parts);
    let mut start = 0;
    for p in 0..parts {
        let end_units = units * (p + 1) / parts;
        let end = (end_units * align).min(n);
        if end > start {
            out.push(start..end);
        }
        start = end;
    }
    if out.is_empty() {
        out.push(0..n);
    }
    out
}

/// Runs `f` on each range of `0..n` (split as [`ranges`]) on its own thread
/// and concatenates the returned vectors in range order.
pub(crate) fn map_ranges<T: Send>(
    n: usize,
    parts: usize,
    align: usize,
    f: impl Fn(Range<usize>) -> Vec<T> + Sync,
) -> Vec<T> {
    let rs = ranges(n, parts, align);
    if rs.len() <= 1 {
        return rs.into_iter().flat_map(&f).collect();
    }
    let f = &f;
    let parts: Vec<Vec<T>> = std::thread::scope(|s| {
        let handles: Vec<_> = rs.into_iter().map(|r| s.spawn(move || f(r))).collect();
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(v) => v,
                Err(e) => std::panic::resume_unwind(e),
            })
            .collect()
    });
    parts.into_iter().flatten().collect()
}

/// Runs `f(start, x_chunk, y_chunk)` over matching chunks of `x` and `y`
/// (split as [`ranges`] with `align`), one thread per chunk.
pub(crate) fn zip_chunks<A: Sync, B: Send>(
    x: &[A],
    y: &mut [B],
    parts: usize,
    align: usize,
    f: impl Fn(usize, &[A], &mut [B]) + Sync,
) {
    debug_assert_eq!(x.len(), y.len());
    let rs = ranges(x.len(), parts, align);
    if rs.len() <= 1 {
        f(0, x, y);
        return;
    }
    let f = &f;
    std::thread::scope(|s| {
        let mut rest: &mut [B] = y;
        let mut handles = Vec::with_capacity(rs.len());
        for r in rs {
            let (head, tail) = rest.split_at_mut(r.len());
            rest = tail;
            let xs = &x[r.clone()];
            handles.push(s.spawn(move || f(r.start, xs, head)));
        }
        for h in handles {
            if let Err(e) = h.join() {
                std::panic::resume_unwind(e);
            }
        }
    });
}

/// One block of [`zip_blocks_rev`]: its start and the matching slices.
type Block<'a, A, B> = (usize, &'a [A], &'a mut [B]);

/// Runs `f(start, x_block, y_block)` over blocks of `block` elements taken
/// from the **end** of `x` and `y` backwards, dealt round-robin to `parts`
/// threads. After a forward pass over `x`, its tail is what the last-level
/// cache still holds; walking backwards with every thread starting near the
/// end lets all of them use it, instead of one thread getting every hit.
pub(crate) fn zip_blocks_rev<A: Sync, B: Send>(
    x: &[A],
    y: &mut [B],
    parts: usize,
    block: usize,
    f: impl Fn(usize, &[A], &mut [B]) + Sync,
) {
    debug_assert_eq!(x.len(), y.len());
    let n = x.len();
    let block = block.max(1);
    let parts = parts.max(1);
    let mut lists: Vec<Vec<Block<'_, A, B>>> = (0..parts).map(|_| Vec::new()).collect();
    for (j, (xc, yc)) in x.rchunks(block).zip(y.rchunks_mut(block)).enumerate() {
        let start = n.saturating_sub((j + 1) * block);
        lists[j % parts].push((start, xc, yc));
    }
    let f = &f;
    if parts == 1 {
        for (start, xc, yc) in lists.pop().into_iter().flatten() {
            f(start, xc, yc);
        }
        return;
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = lists
            .into_iter()
            .map(|list| {
                s.spawn(move || {
                    for (start, xc, yc) in list {
                        f(start, xc, yc);
                    }
                })
            })
            .collect();
        for h in handles {
            if let Err(e) = h.join() {
                std::panic::resume_unwind(e);
            }
        }
    });
}

/// Output buffers at least this large are faulted in ahead of the
/// element-wise pass by [`prefault_while`].
pub(crate) const PREFAULT_BYTES: usize = 4 << 20;

/// Runs `f` on this thread while a second thread touches one element of
/// every 4 KiB page of `y` (reading it and writing the same value back, so
/// the contents never change).
///
/// For the passes that read the input on one thread only (the statistics of
/// narrow channels-last rows, [`crate::bn::kernels::rows_sums_all`]): a
/// freshly allocated output costs page faults, and the kernel zero-fills
/// every page, when it is first written. Taken inside the element-wise pass
/// that is ~10 ms of 100 MB on two threads; taken here it overlaps the
/// statistics and costs nothing on the critical path. With one thread
/// (`TFBN_THREADS=1`) or a small output, `f` just runs.
pub(crate) fn prefault_while<T: Copy + Send, R>(y: &mut [T], f: impl FnOnce() -> R) -> R {
    let size = std::mem::size_of::<T>().max(1);
    if host_threads() < 2 || y.len().saturating_mul(size) < PREFAULT_BYTES {
        return f();
    }
    let step = (4096 / size).max(1);
    std::thread::scope(|s| {
        let h = s.spawn(move || {
            for i in (0..y.len()).step_by(step) {
                y[i] = std::hint::black_box(y[i]);
            }
        });
        let r = f();
        if let Err(e) = h.join() {
            std::panic::resume_unwind(e);
        }
        r
    })
}

/// A zeroed buffer for an output of `n` elements.
///
/// Large buffers come straight from the kernel (zero pages, not yet
/// touched); on Linux they are advised to use transparent huge pages before
/// the first write, because on virtual machines the faults of 4 KiB pages can
/// cost more than the whole batch norm (measured: ~130 ms for 100 MB with
/// 4 KiB pages, ~20 ms with huge pages).
pub(crate) fn output_buffer<T: Clone + Default>(n: usize) -> Vec<T> {
    let v = vec![T::default(); n];
    #[cfg(target_os = "linux")]
    {
        let bytes = n.saturating_mul(std::mem::size_of::<T>());
        if bytes >= (4 << 20) {
            const PAGE: usize = 4096;
            let start = (v.as_ptr() as usize).div_ceil(PAGE) * PAGE;
            let end = (v.as_ptr() as usize + bytes) / PAGE * PAGE;
            if end > start {
                // SAFETY: [start, end) lies inside v's allocation; MADV_HUGEPAGE
                // only changes how future faults are served, never contents.
                unsafe {
                    libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
                }
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_everything_once() {
        for n in [0usize, 1, 7, 8, 9, 100, 1001] {
            for parts in 1..5 {
                for align in [1usize, 8, 64] {
                    let rs = ranges(n, parts, align);
                    let mut next = 0;
                    for r in &rs {
                        assert_eq!(r.start, next);
                        assert!(r.start % align == 0);
                        next = r.end;
                    }
                    assert_eq!(next, n);
                }
            }
        }
    }

    #[test]
    fn map_and_zip() {
        let v = map_ranges(100, 3, 8, |r| r.collect::<Vec<_>>());
        assert_eq!(v, (0..100).collect::<Vec<_>>());
        let x: Vec<u32> = (0..1000).collect();
        let mut y = vec![0u32; 1000];
        zip_chunks(&x, &mut y, 4, 16, |start, xs, ys| {
            for (i, (a, b)) in xs.iter().zip(ys.iter_mut()).enumerate() {
                assert_eq!(*a as usize, start + i);
                *b = a * 2;
            }
        });
        assert!(y.iter().enumerate().all(|(i, &v)| v == 2 * i as u32));
        for parts in 1..4 {
            let mut y = vec![0u32; 1000];
            zip_blocks_rev(&x, &mut y, parts, 64, |start, xs, ys| {
                for (i, (a, b)) in xs.iter().zip(ys.iter_mut()).enumerate() {
                    assert_eq!(*a as usize, start + i);
                    *b = a * 3;
                }
            });
            assert!(y.iter().enumerate().all(|(i, &v)| v == 3 * i as u32));
        }
    }

    /// How many of the 4 KiB pages wholly inside `v` are resident.
    #[cfg(target_os = "linux")]
    fn resident_pages(v: &[f32]) -> (usize, usize) {
        const PAGE: usize = 4096;
        let start = (v.as_ptr() as usize).div_ceil(PAGE) * PAGE;
        let end = (v.as_ptr() as usize + std::mem::size_of_val(v)) / PAGE * PAGE;
        let pages = (end - start) / PAGE;
        let mut map = vec![0u8; pages];
        // SAFETY: [start, end) is page-aligned and inside v's allocation;
        // mincore writes one byte per page into `map`.
        let rc =
            unsafe { libc::mincore(start as *mut libc::c_void, end - start, map.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore failed");
        (map.iter().filter(|&&b| b & 1 == 1).count(), pages)
    }

    #[test]
    fn prefault_while_faults_in_a_fresh_output_and_keeps_contents() {
        let n = PREFAULT_BYTES / 4 * 3;
        for threads in [1, 2] {
            with_threads(threads, || {
                let mut y = output_buffer::<f32>(n);
                #[cfg(target_os = "linux")]
                let (before, pages) = resident_pages(&y);
                let r = prefault_while(&mut y, || 7);
                assert_eq!(r, 7);
                #[cfg(target_os = "linux")]
                {
                    let (after, _) = resident_pages(&y);
                    if threads == 1 {
                        assert_eq!(after, before, "one thread: nothing is touched");
                    } else {
                        assert_eq!(after, pages, "every page resident ({before} before)");
                    }
                }
                assert!(y.iter().all(|&v| v == 0.0));
                // A written buffer keeps its values.
                for (i, v) in y.iter_mut().enumerate() {
                    *v = i as f32;
                }
                prefault_while(&mut y, || ());
                assert!(y.iter().enumerate().all(|(i, &v)| v == i as f32));
            });
        }
    }
}
