//! The fused kernel's pattern P over channels-first data: NCHW seen as the
//! NHWC rows the kernel transposes it to, without materializing the
//! transpose (one channel's runs of `b` values, `a` of them).

use crate::bn::ftz::TfFloat;
#[cfg(target_arch = "x86_64")]
use crate::bn::ftz::{tiny_key, SQUARE_SAFE_KEY_LIMIT, SUM_SAFE_KEY_LIMIT};
use crate::bn::reduce::sum_p;

#[cfg(target_arch = "x86_64")]
use super::has_avx2;

// ------------------------------------------------------------------ pattern P, channels-first rows

/// Pattern-P sum of channel `ch` of an `(a, c, b)` tensor whose rows are the
/// `(a, b)` pairs in order (the fused kernel's view of NCHW after its
/// transpose to NHWC). `four`: the channel is in a full packet. `mean`:
/// sum `(x − mean)²` instead of `x`.
pub(crate) fn runs_sum(
    x: &[f32],
    dims: (usize, usize, usize),
    ch: usize,
    four: bool,
    mean: Option<f32>,
) -> f32 {
    let [s] = runs_sums::<1>(dims_check(x, dims), dims, ch, four, mean.map(|m| [m]));
    s
}

fn dims_check(x: &[f32], (a, c, b): (usize, usize, usize)) -> &[f32] {
    debug_assert!(x.len() >= a * c * b);
    x
}

/// [`runs_sum`] of the `N` consecutive channels `ch0..ch0 + N` in one pass
/// over their runs (each channel's additions in its own order, as alone).
pub(crate) fn runs_sums<const N: usize>(
    x: &[f32],
    (a, c, b): (usize, usize, usize),
    ch0: usize,
    four: bool,
    mean: Option<[f32; N]>,
) -> [f32; N] {
    debug_assert!(x.len() >= a * c * b && ch0 + N <= c);
    let rows = a * b;
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() && four && rows >= 16 {
            // SAFETY: AVX2 detected; reads stay inside the channels' runs.
            if let Some(s) = unsafe { avx2::runs_sums::<N>(x, (a, c, b), ch0, mean) } {
                return s;
            }
        }
    }
    std::array::from_fn(|n| {
        let ch = ch0 + n;
        let get = |row: usize| {
            let (ia, ib) = (row / b, row % b);
            let v = x[(ia * c + ch) * b + ib];
            match mean {
                None => v.daz(),
                Some(m) => {
                    let d = v.sub(m[n]);
                    d.mul(d)
                }
            }
        };
        sum_p(rows, four, get)
    })
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! AVX2 body of the runs sum; the caller guarantees AVX2 and the slice
    //! bounds stated on the safe wrapper.

    use super::*;
    use std::arch::x86_64::*;

    /// See [`super::runs_sums`] (four partials, ≥ 16 rows) for the `N`
    /// consecutive channels `ch0..ch0 + N`, side by side: every channel's
    /// four partials form one 4-wide accumulator, and `N` independent
    /// accumulators hide the latency of the adds (one channel alone is bound
    /// by it). `None` when a tiny value was seen in any of them.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn runs_sums<const N: usize>(
        x: &[f32],
        dims: (usize, usize, usize),
        ch0: usize,
        mean: Option<[f32; N]>,
    ) -> Option<[f32; N]> {
        // SAFETY: forwarded; specialized per map so that the hot loop has no
        // branch on it.
        match mean {
            None => unsafe { runs_sums_g::<N, false>(x, dims, ch0, [0.0; N]) },
            Some(m) => unsafe { runs_sums_g::<N, true>(x, dims, ch0, m) },
        }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn runs_sums_g<const N: usize, const SQ: bool>(
        x: &[f32],
        (a, c, b): (usize, usize, usize),
        ch0: usize,
        mean: [f32; N],
    ) -> Option<[f32; N]> {
        let rows = a * b;
        let r4 = rows / 4 * 4;
        let xp = x.as_ptr();
        let limit = if SQ {
            SQUARE_SAFE_KEY_LIMIT
        } else {
            SUM_SAFE_KEY_LIMIT
        };
        let mv: [__m128; N] = std::array::from_fn(|n| _mm_set1_ps(mean[n]));
        let mut keys = _mm_set1_epi32(-1);
        let one = _mm_set1_epi32(1);
        let mut part = [[0.0f32; 4]; N];
        let mut skey = u32::MAX;
        let scalar = |v: f32, n: usize, skey: &mut u32| -> f32 {
            if SQ {
                let d = v - mean[n];
                *skey = (*skey).min(tiny_key(d));
                d * d
            } else {
                *skey = (*skey).min(tiny_key(v));
                v
            }
        };
        // Rows [0, r4) into the four partials, run by run. The row → (ia, ib)
        // mapping is the same for every channel; only the run bases differ.
        let mut row = 0usize;
        while row < r4 {
            let ia = row / b;
            let ib0 = row % b;
            let run_end = ((ia + 1) * b).min(r4);
            // SAFETY: channel ch0 + n's run ia starts at (ia·c + ch0 + n)·b.
            let base: [*const f32; N] =
                std::array::from_fn(|n| unsafe { xp.add((ia * c + ch0 + n) * b) });
            let mut ib = ib0;
            // Head: until the global row is a multiple of 4.
            while ia * b + ib < run_end && (ia * b + ib) % 4 != 0 {
                let j = (ia * b + ib) % 4;
                for n in 0..N {
                    let v = unsafe { *base[n].add(ib) };
                    part[n][j] += scalar(v, n, &mut skey);
                }
                ib += 1;
            }
            let body_end = ia * b + ib + (run_end - (ia * b + ib)) / 4 * 4;
            let mut accv: [__m128; N] =
                std::array::from_fn(|n| unsafe { _mm_loadu_ps(part[n].as_ptr()) });
            while ia * b + ib < body_end {
                for n in 0..N {
                    // SAFETY: ib + 4 ≤ b inside the run.
                    let v = unsafe { _mm_loadu_ps(base[n].add(ib)) };
                    let t = if SQ {
                        let d = _mm_sub_ps(v, mv[n]);
                        let key = _mm_sub_epi32(_mm_slli_epi32(_mm_castps_si128(d), 1), one);
                        keys = _mm_min_epu32(keys, key);
                        _mm_mul_ps(d, d)
                    } else {
                        let key = _mm_sub_epi32(_mm_slli_epi32(_mm_castps_si128(v), 1), one);
                        keys = _mm_min_epu32(keys, key);
                        v
                    };
                    accv[n] = _mm_add_ps(accv[n], t);
                }
                ib += 4;
            }
            for n in 0..N {
                unsafe { _mm_storeu_ps(part[n].as_mut_ptr(), accv[n]) };
            }
            while ia * b + ib < run_end {
                let j = (ia * b + ib) % 4;
                for n in 0..N {
                    let v = unsafe { *base[n].add(ib) };
                    part[n][j] += scalar(v, n, &mut skey);
                }
                ib += 1;
            }
            row = run_end;
        }
        let mut acc: [f32; N] =
            std::array::from_fn(|n| ((part[n][0] + part[n][1]) + part[n][2]) + part[n][3]);
        for row in r4..rows {
            let (ia, ib) = (row / b, row % b);
            for n in 0..N {
                acc[n] += scalar(x[(ia * c + ch0 + n) * b + ib], n, &mut skey);
            }
        }
        let mut lanes = [0u32; 4];
        unsafe { _mm_storeu_si128(lanes.as_mut_ptr() as *mut __m128i, keys) };
        if lanes.iter().any(|&kk| kk < limit) || skey < limit {
            return None;
        }
        Some(acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bn::kernels::testdata::data;

    #[test]
    fn runs_sum_matches_reference() {
        for &(a, c, b) in &[
            (2, 3, 9),
            (4, 2, 16),
            (3, 5, 7),
            (1, 1, 33),
            (5, 2, 6),
            (3, 6, 37),
            (2, 5, 64),
        ] {
            let x = data(a * c * b, (a + 7 * c + 13 * b) as u64);
            for ch in 0..c {
                for mean in [None, Some(0.25f32)] {
                    let got = runs_sum(&x, (a, c, b), ch, true, mean);
                    let want = sum_p(a * b, true, |row| {
                        let v = x[((row / b) * c + ch) * b + row % b];
                        match mean {
                            None => v,
                            Some(m) => (v - m) * (v - m),
                        }
                    });
                    assert_eq!(got.to_bits(), want.to_bits(), "{a} {c} {b} ch {ch}");
                }
            }
            // Four channels side by side give each channel's own sum.
            if c >= 4 {
                for ch0 in 0..=c - 4 {
                    let means = [0.25f32, -1.0, 3.5, 0.0];
                    for mean in [None, Some(means)] {
                        let got = runs_sums::<4>(&x, (a, c, b), ch0, true, mean);
                        for n in 0..4 {
                            let one = runs_sum(&x, (a, c, b), ch0 + n, true, mean.map(|m| m[n]));
                            assert_eq!(
                                got[n].to_bits(),
                                one.to_bits(),
                                "{a} {c} {b} ch {}",
                                ch0 + n
                            );
                        }
                    }
                }
            }
        }
    }
}
