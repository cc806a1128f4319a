//! Masked crc32c, as LevelDB and TF store it (`tensorflow/tsl/lib/hash/crc32c.h`).
//!
//! A crc stored next to the data it covers is "masked" so that computing the
//! crc of a string that itself holds crcs stays well distributed.

/// The constant LevelDB adds after rotating (`kMaskDelta`).
pub const MASK_DELTA: u32 = 0xa282_ead8;

/// Masks a crc32c for storage: rotate right by 15 bits, then add [`MASK_DELTA`].
pub fn mask(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(MASK_DELTA)
}

/// Inverts [`mask`]: subtract [`MASK_DELTA`], then rotate left by 15 bits.
pub fn unmask(masked: u32) -> u32 {
    masked.wrapping_sub(MASK_DELTA).rotate_left(15)
}

/// Bytes crc-checked and copied per step of [`copy_with_crc`]: small enough
/// that a step's source bytes are still in the core's cache when they are
/// copied, large enough that glibc's `memcpy` takes its vector loop. Below
/// its `rep_movsb_stop_threshold` (the L2 size on AMD, 512 KiB here) it uses
/// `rep movsb`, which on AMD EPYC measured 3.2× slower when the destination
/// sits 16 bytes past the source modulo 4 KiB: exactly a page-aligned tensor
/// copied into a fresh `malloc` buffer (0.67 against 0.21 s/GiB; other
/// alignments and the vector loop 0.17–0.25 s/GiB).
const COPY_CHUNK: usize = 512 * 1024;

/// crc32c of `data` copied into a new vector, computed chunk by chunk while
/// each chunk is still in cache (one pass over the source instead of two).
/// `each` is called on every copied chunk while it is in cache (for byte
/// swapping); chunks are a multiple of 16 bytes long except the last.
/// Inputs of 8 MiB or more are copied by two threads (halves on step
/// boundaries); the result is the same bytes and crc either way.
pub(crate) fn copy_with_crc(data: &[u8], each: impl Fn(&mut [u8]) + Sync) -> (Vec<u8>, u32) {
    let mut out = crate::bundle::buf::output(data.len());
    // The crate's one thread-count knob (`TFBN_THREADS`), as the layer's.
    let two = data.len() >= SPLIT_BYTES && crate::host::host_threads() >= 2;
    let spare = &mut out.spare_capacity_mut()[..data.len()];
    let crc = if two {
        // Two halves on two threads, so that the kernel's zero-filling of
        // the fresh output pages (the larger part of the cost) runs on both
        // cores. The split is a whole number of steps, so `each` sees the
        // same chunks; the crcs are combined.
        let mid = (data.len() / 2).div_ceil(COPY_CHUNK) * COPY_CHUNK;
        let (a, b) = data.split_at(mid);
        let (sa, sb) = spare.split_at_mut(mid);
        let (crc_a, crc_b) = std::thread::scope(|s| {
            let h = s.spawn(|| copy_part(b, sb, &each));
            let crc_a = copy_part(a, sa, &each);
            (crc_a, h.join())
        });
        let crc_b = match crc_b {
            Ok(c) => c,
            Err(p) => std::panic::resume_unwind(p),
        };
        crc32c::crc32c_combine(crc_a, crc_b, b.len())
    } else {
        copy_part(data, spare, &each)
    };
    // SAFETY: `copy_part` wrote every one of the first `data.len()` bytes of
    // the spare capacity (both parts, when split), and the capacity is at
    // least `data.len()` (`buf::output`).
    unsafe { out.set_len(data.len()) };
    (out, crc)
}

/// Inputs at least this long are copied by two threads.
const SPLIT_BYTES: usize = 8 << 20;

/// Copies `data` into `dst` (of the same length) step by step, each step
/// crc'd and then handed to `each`; returns the crc.
fn copy_part(data: &[u8], dst: &mut [std::mem::MaybeUninit<u8>], each: &impl Fn(&mut [u8])) -> u32 {
    let mut crc = 0;
    for (chunk, d) in data.chunks(COPY_CHUNK).zip(dst.chunks_mut(COPY_CHUNK)) {
        crc = crc32c::crc32c_append(crc, chunk);
        // SAFETY: `d` and `chunk` have the same length (same step over
        // slices of the same length), do not overlap (one is borrowed
        // shared, the other exclusively), and `u8` has no invalid values;
        // after the copy every byte of `d` is initialised, so viewing it as
        // `&mut [u8]` is sound.
        let d = unsafe {
            std::ptr::copy_nonoverlapping(chunk.as_ptr(), d.as_mut_ptr().cast::<u8>(), chunk.len());
            std::slice::from_raw_parts_mut(d.as_mut_ptr().cast::<u8>(), chunk.len())
        };
        each(d);
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value_from_the_spec() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn mask_example_from_the_spec() {
        let crc = crc32c::crc32c(&[0u8; 8]);
        assert_eq!(crc, 0x8C28_B28A);
        assert_eq!(mask(crc), 0x0798_0329);
        assert_eq!(unmask(0x0798_0329), crc);
    }

    #[test]
    fn mask_round_trips() {
        for c in [0u32, 1, 0xffff_ffff, 0x1234_5678, MASK_DELTA] {
            assert_eq!(unmask(mask(c)), c);
        }
    }

    #[test]
    fn copy_with_crc_matches_one_shot() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
        let (copy, crc) = copy_with_crc(&data, |_| {});
        assert_eq!(copy, data);
        assert_eq!(crc, crc32c::crc32c(&data));
    }

    #[test]
    fn copy_with_crc_spans_several_chunks() {
        let data: Vec<u8> = (0..3 * COPY_CHUNK as u32 + 5)
            .map(|i| (i * 13) as u8)
            .collect();
        let sizes = std::sync::Mutex::new(Vec::new());
        let (copy, crc) = copy_with_crc(&data, |c| sizes.lock().unwrap().push(c.len()));
        assert_eq!(copy, data);
        assert_eq!(crc, crc32c::crc32c(&data));
        assert_eq!(
            sizes.into_inner().unwrap(),
            [COPY_CHUNK, COPY_CHUNK, COPY_CHUNK, 5]
        );
        assert_eq!(COPY_CHUNK % 16, 0);
    }

    /// Inputs long enough to be split between two threads: the same bytes,
    /// the same crc, and `each` applied once to every step, the steps the
    /// same as one thread's (so a byte swap never straddles the split).
    #[test]
    fn copy_with_crc_split_between_threads_is_the_same() {
        for len in [
            SPLIT_BYTES,
            SPLIT_BYTES + 5,
            3 * SPLIT_BYTES + COPY_CHUNK / 2 + 3,
        ] {
            let data: Vec<u8> = (0..len as u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect();
            let sizes = std::sync::Mutex::new(Vec::new());
            let (copy, crc) = copy_with_crc(&data, |c| {
                sizes.lock().unwrap().push(c.len());
                c.reverse();
            });
            let mut want = data.clone();
            for c in want.chunks_mut(COPY_CHUNK) {
                c.reverse();
            }
            assert!(copy == want, "{len}: bytes differ");
            assert_eq!(crc, crc32c::crc32c(&data), "{len}");
            let mut sizes = sizes.into_inner().unwrap();
            sizes.sort_unstable();
            let mut expect: Vec<usize> = data.chunks(COPY_CHUNK).map(<[u8]>::len).collect();
            expect.sort_unstable();
            assert_eq!(sizes, expect, "{len}");
        }
    }
}
