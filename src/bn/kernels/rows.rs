//! Pattern P over channels-last rows (docs/bn-arithmetic.md#reduction-order): every lane of an
//! 8-wide vector is a different channel, and each lane adds its rows in
//! Eigen's order (four interleaved partials), so vectorizing *across*
//! channels keeps each channel's order. Threads split channels, never rows.

#[cfg(target_arch = "x86_64")]
use crate::bn::ftz::tiny_key;
use crate::bn::ftz::{TfFloat, SQUARE_SAFE_KEY_LIMIT, SUM_SAFE_KEY_LIMIT};
use crate::bn::reduce::sum_p;

#[cfg(target_arch = "x86_64")]
use super::has_avx2;

/// What a reduction sums: the values, or their squared difference with a
/// per-channel mean (`d = x − mean`, rounded, then `d·d`).
#[derive(Clone, Copy)]
pub(crate) enum SumMap<'a> {
    /// `x`.
    Identity,
    /// `(x − mean[c])²`, indexed by channel.
    SqDiff(&'a [f32]),
}

impl SumMap<'_> {
    #[inline(always)]
    fn apply_exact(&self, v: f32, c: usize) -> f32 {
        match self {
            SumMap::Identity => v.daz(),
            SumMap::SqDiff(m) => {
                let d = v.sub(m[c]);
                d.mul(d)
            }
        }
    }
}

// ------------------------------------------------------------------ pattern P, channels-last

/// Pattern-P sums of channels `[c_lo, c_hi)` of an `r × k` row-major matrix
/// (channels last). Channels below `8·⌊k/8⌋` use four partials when
/// `r ≥ 16`; the others are sequential. `c_lo` must be a multiple of 8 (or
/// at least `8·⌊k/8⌋`). Exact in every case: channels whose data holds
/// values that FTZ/DAZ could affect are recomputed with the scalar reference.
pub(crate) fn rows_sums(
    x: &[f32],
    r: usize,
    k: usize,
    c_lo: usize,
    c_hi: usize,
    map: SumMap<'_>,
    out: &mut [f32],
) {
    debug_assert_eq!(out.len(), c_hi - c_lo);
    debug_assert!(x.len() >= r * k);
    let full = k / 8 * 8;
    debug_assert!(c_lo % 8 == 0 || c_lo >= full);
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            // SAFETY: AVX2 detected; indices are bounded by r·k ≤ x.len().
            let clean = unsafe { avx2::rows_sums(x, r, k, c_lo, c_hi, map, out) };
            if clean {
                return;
            }
        }
    }
    for (o, c) in out.iter_mut().zip(c_lo..c_hi) {
        *o = sum_p(r, c < full, |row| map.apply_exact(x[row * k + c], c));
    }
}

/// [`rows_sums`] of all `k` channels, on as many cores as help.
///
/// Only two splits keep every bit: channel ranges, or the four partials of
/// pattern P (rows `4q + j`: partial pairs {0, 1} and {2, 3} on two threads,
/// combined `((s0 + s1) + s2) + s3` afterwards). Both make each thread read
/// a slice of every row or every other pair of rows. Measured on the 2-core
/// benchmark host (AMD EPYC VM, float32 `[100352, 256]`, 1 KiB rows, medians
/// of 9, 3 runs): one thread streaming whole rows 0.55–0.64× a copy; two
/// threads on partial pairs 0.76–1.27×; two threads on channel halves
/// 1.15–1.73× (1.18–1.45× with whole-row prefetch); even two threads on
/// contiguous halves (not exact) read no faster than one. So rows narrower
/// than [`SPLIT_ROW_BYTES`] are summed by a single thread.
pub(crate) fn rows_sums_all(x: &[f32], r: usize, k: usize, map: SumMap<'_>) -> Vec<f32> {
    let threads = rows_threads(x.len(), k);
    crate::bn::par::map_ranges(k, threads, 1024, |cr| {
        let mut out = vec![0.0f32; cr.len()];
        rows_sums(x, r, k, cr.start, cr.end, map, &mut out);
        out
    })
}

/// Rows at least this wide are split over threads by channel ranges.
pub(crate) const SPLIT_ROW_BYTES: usize = 32 << 10;

/// How many threads [`rows_sums_all`] uses on `n` values in rows of `k`
/// channels. One means the other cores are idle while it reads, which
/// [`crate::bn::par::prefault_while`] puts to use.
pub(crate) fn rows_threads(n: usize, k: usize) -> usize {
    if k.saturating_mul(4) >= SPLIT_ROW_BYTES {
        crate::bn::par::threads_for(n)
    } else {
        1
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! AVX2 bodies of the pattern-P sums; the caller guarantees AVX2 and the
    //! slice bounds stated on the safe wrappers.

    use super::*;
    use crate::bn::kernels::simd::{key_below, key_min};
    use std::arch::x86_64::*;

    /// See [`super::rows_sums`]. Returns false when a tiny value was seen.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn rows_sums(
        x: &[f32],
        r: usize,
        k: usize,
        c_lo: usize,
        c_hi: usize,
        map: SumMap<'_>,
        out: &mut [f32],
    ) -> bool {
        // SAFETY: forwarded; the body is specialized per map so that the hot
        // loop has no branch on it.
        match map {
            SumMap::Identity => unsafe { rows_sums_g::<false>(x, r, k, c_lo, c_hi, map, out) },
            SumMap::SqDiff(_) => unsafe { rows_sums_g::<true>(x, r, k, c_lo, c_hi, map, out) },
        }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn rows_sums_g<const SQ: bool>(
        x: &[f32],
        r: usize,
        k: usize,
        c_lo: usize,
        c_hi: usize,
        map: SumMap<'_>,
        out: &mut [f32],
    ) -> bool {
        let full = k / 8 * 8;
        let g_lo = c_lo.min(full) / 8;
        let g_hi = c_hi.min(full) / 8;
        let ng = g_hi.saturating_sub(g_lo);
        let t_lo = c_lo.max(full);
        let t_hi = c_hi.max(full);
        let nt = t_hi - t_lo;
        let four = r >= 16;
        let (limit, mean) = match map {
            SumMap::Identity => (SUM_SAFE_KEY_LIMIT, None),
            SumMap::SqDiff(m) => (SQUARE_SAFE_KEY_LIMIT, Some(m)),
        };
        let xp = x.as_ptr();
        let mut acc = vec![_mm256_setzero_ps(); 4 * ng];
        let means: Vec<__m256> = match mean {
            Some(m) => (g_lo..g_hi)
                .map(|g| unsafe { _mm256_loadu_ps(m.as_ptr().add(8 * g)) })
                .collect(),
            None => Vec::new(),
        };
        let mut tail = [0.0f32; 8];
        let mut tail_key = u32::MAX;
        let mut keys = _mm256_set1_epi32(-1);

        // One row of the tail channels (sequential sums).
        let tail_row = |row: usize, tail: &mut [f32; 8], tail_key: &mut u32| {
            for (t, ch) in (t_lo..t_hi).enumerate() {
                let v = x[row * k + ch];
                let s = match mean {
                    None => {
                        *tail_key = (*tail_key).min(tiny_key(v));
                        v
                    }
                    Some(m) => {
                        let d = v - m[ch];
                        *tail_key = (*tail_key).min(tiny_key(d));
                        d * d
                    }
                };
                tail[t] += s;
            }
        };

        // Software prefetch of the rows PF ahead: one thread streams whole
        // rows, and the hardware prefetchers alone leave it latency-bound.
        const PF: usize = 24;
        let pf_lo = c_lo * 4;
        let pf_hi = c_hi * 4;
        let prefetch_row = |row: usize| {
            if row < r {
                let base = unsafe { (xp as *const u8).add(row * k * 4) };
                let mut off = pf_lo & !63;
                while off < pf_hi {
                    // SAFETY: a prefetch never faults; the address is inside x.
                    unsafe { _mm_prefetch::<_MM_HINT_T0>(base.add(off) as *const i8) };
                    off += 64;
                }
            }
        };

        let mut row = 0;
        if four {
            let r4 = r / 4 * 4;
            while row < r4 {
                for j in 0..4 {
                    prefetch_row(row + PF + j);
                }
                // SAFETY: rows row..row + 4 ≤ r4 ≤ r; groups g_lo..g_lo + ng
                // lie in each row.
                unsafe {
                    rows_add::<SQ>(
                        xp.add(row * k + 8 * g_lo),
                        k,
                        4,
                        &mut acc,
                        &means,
                        &mut keys,
                    )
                };
                if nt > 0 {
                    for j in 0..4 {
                        tail_row(row + j, &mut tail, &mut tail_key);
                    }
                }
                row += 4;
            }
            for gi in 0..ng {
                let a = &mut acc[4 * gi..4 * gi + 4];
                a[0] = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a[0], a[1]), a[2]), a[3]);
            }
        }
        while row < r {
            prefetch_row(row + PF);
            // SAFETY: row < r; groups g_lo..g_lo + ng lie in the row. One
            // row goes into the first partial of each group.
            unsafe {
                rows_add::<SQ>(
                    xp.add(row * k + 8 * g_lo),
                    k,
                    1,
                    &mut acc,
                    &means,
                    &mut keys,
                )
            };
            if nt > 0 {
                tail_row(row, &mut tail, &mut tail_key);
            }
            row += 1;
        }
        if unsafe { key_below(keys, limit) } || tail_key < limit {
            return false;
        }
        for gi in 0..ng {
            let mut lanes = [0.0f32; 8];
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc[4 * gi]) };
            let o = 8 * (g_lo + gi) - c_lo;
            out[o..o + 8].copy_from_slice(&lanes);
        }
        for t in 0..nt {
            out[t_lo - c_lo + t] = tail[t];
        }
        true
    }

    /// `rows` (at most 4) consecutive rows of [`rows_sums`], row `j` into
    /// partial `j` of each group: `base` points at the first group of the
    /// first row; `acc` holds the 4 partials of each group (partial `j` takes
    /// rows `4q + j`; rows past the last whole quad go into partial 0). Each
    /// row is read front to back (every group's partial `j`, then the next
    /// row): the same additions into each partial as group by group, but one
    /// sequential stream, measured ~20 % faster than visiting the four rows
    /// per group (float32 `[100352, 256]`, medians of 9: 11.4 against
    /// 14.2 ms, as fast as a plain vector sum of the array). Kept out of line
    /// so that the running key stays in a register.
    #[target_feature(enable = "avx2")]
    #[inline(never)]
    unsafe fn rows_add<const SQ: bool>(
        base: *const f32,
        k: usize,
        rows: usize,
        acc: &mut [__m256],
        means: &[__m256],
        keys_io: &mut __m256i,
    ) {
        debug_assert!(rows <= 4);
        let mut keys = *keys_io;
        let ng = acc.len() / 4;
        debug_assert!(!SQ || means.len() >= ng);
        let ap = acc.as_mut_ptr();
        let mp = means.as_ptr();
        for j in 0..rows {
            // SAFETY: the caller guarantees `rows` rows of the groups.
            let row = unsafe { base.add(j * k) };
            for gi in 0..ng {
                // SAFETY: group gi lies in the row; acc holds 4·ng partials
                // and means (for SQ) ng vectors.
                unsafe {
                    let v = _mm256_loadu_ps(row.add(8 * gi));
                    let t = if SQ {
                        let d = _mm256_sub_ps(v, *mp.add(gi));
                        keys = key_min(keys, d);
                        _mm256_mul_ps(d, d)
                    } else {
                        keys = key_min(keys, v);
                        v
                    };
                    let a = ap.add(4 * gi + j);
                    *a = _mm256_add_ps(*a, t);
                }
            }
        }
        *keys_io = keys;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bn::kernels::testdata::data;

    #[test]
    fn rows_sums_match_reference() {
        for &(r, k) in &[
            (3, 5),
            (16, 8),
            (17, 13),
            (40, 24),
            (64, 3),
            (100, 17),
            (15, 16),
        ] {
            let x = data(r * k, (r * 31 + k) as u64);
            let mean: Vec<f32> = (0..k).map(|c| c as f32 * 0.1 - 0.3).collect();
            for map in [SumMap::Identity, SumMap::SqDiff(&mean)] {
                let mut got = vec![0.0; k];
                rows_sums(&x, r, k, 0, k, map, &mut got);
                let full = k / 8 * 8;
                for c in 0..k {
                    let want = sum_p(r, c < full, |row| map.apply_exact(x[row * k + c], c));
                    assert_eq!(got[c].to_bits(), want.to_bits(), "r {r} k {k} c {c}");
                }
                // A channel sub-range gives the same sums.
                if k > 8 {
                    let mut part = vec![0.0; k - 8];
                    rows_sums(&x, r, k, 8, k, map, &mut part);
                    assert_eq!(&part[..], &got[8..]);
                }
            }
        }
    }

    #[test]
    fn rows_sums_fall_back_on_tiny_values() {
        let (r, k) = (32, 8);
        let mut x = data(r * k, 3);
        x[5] = 1e-39; // subnormal input: DAZ
        x[13] = 1e-36; // small enough that a partial sum could go subnormal
        let mut got = vec![0.0; k];
        rows_sums(&x, r, k, 0, k, SumMap::Identity, &mut got);
        for c in 0..k {
            let want = sum_p(r, true, |row| x[row * k + c].daz());
            assert_eq!(got[c].to_bits(), want.to_bits());
        }
    }
}
