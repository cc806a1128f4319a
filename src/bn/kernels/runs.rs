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
/// transpose to NHWC). `four`: the channel is in a full packet.
pub(crate) fn runs_sum(
    x: &[f32],
    (a, c, b): (usize, usize, usize),
    ch: usize,
    four: bool,
    mean: Option<f32>,
) -> f32 {
    debug_assert!(x.len() >= a * c * b);
    let rows = a * b;
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() && four && rows >= 16 {
            // SAFETY: AVX2 detected; reads stay inside channel ch's runs.
            if let Some(s) = unsafe { avx2::runs_sum(x, (a, c, b), ch, mean) } {
                return s;
            }
        }
    }
    let get = |row: usize| {
        let (ia, ib) = (row / b, row % b);
        let v = x[(ia * c + ch) * b + ib];
        match mean {
            None => v.daz(),
            Some(m) => {
                let d = v.sub(m);
                d.mul(d)
            }
        }
    };
    sum_p(rows, four, get)
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! AVX2 body of the runs sum; the caller guarantees AVX2 and the slice
    //! bounds stated on the safe wrapper.

    use super::*;
    use std::arch::x86_64::*;

    /// See [`super::runs_sum`] (four partials, ≥ 16 rows). `None` when a
    /// tiny value was seen.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn runs_sum(
        x: &[f32],
        dims: (usize, usize, usize),
        ch: usize,
        mean: Option<f32>,
    ) -> Option<f32> {
        // SAFETY: forwarded (specialized per map, see rows_sums).
        match mean {
            None => unsafe { runs_sum_g::<false>(x, dims, ch, mean) },
            Some(_) => unsafe { runs_sum_g::<true>(x, dims, ch, mean) },
        }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn runs_sum_g<const SQ: bool>(
        x: &[f32],
        (a, c, b): (usize, usize, usize),
        ch: usize,
        mean: Option<f32>,
    ) -> Option<f32> {
        let rows = a * b;
        let r4 = rows / 4 * 4;
        let xp = x.as_ptr();
        let (limit, mv) = match mean {
            None => (SUM_SAFE_KEY_LIMIT, _mm_setzero_ps()),
            Some(m) => (SQUARE_SAFE_KEY_LIMIT, _mm_set1_ps(m)),
        };
        let mut keys = _mm_set1_epi32(-1);
        let one = _mm_set1_epi32(1);
        let mut part = [0.0f32; 4];
        let mut skey = u32::MAX;
        let scalar = |v: f32, skey: &mut u32| -> f32 {
            if SQ {
                let d = v - mean.unwrap_or(0.0);
                *skey = (*skey).min(tiny_key(d));
                d * d
            } else {
                *skey = (*skey).min(tiny_key(v));
                v
            }
        };
        // Rows [0, r4) into the four partials, run by run.
        let mut row = 0usize;
        while row < r4 {
            let ia = row / b;
            let ib0 = row % b;
            let run_end = ((ia + 1) * b).min(r4);
            // SAFETY: channel ch's run ia starts at (ia·c + ch)·b.
            let base = unsafe { xp.add((ia * c + ch) * b) };
            let mut ib = ib0;
            // Head: until the global row is a multiple of 4.
            while ia * b + ib < run_end && (ia * b + ib) % 4 != 0 {
                let v = unsafe { *base.add(ib) };
                let j = (ia * b + ib) % 4;
                part[j] += scalar(v, &mut skey);
                ib += 1;
            }
            let body_end = ia * b + ib + (run_end - (ia * b + ib)) / 4 * 4;
            let mut accv = unsafe { _mm_loadu_ps(part.as_ptr()) };
            while ia * b + ib < body_end {
                let v = unsafe { _mm_loadu_ps(base.add(ib)) };
                let t = if SQ {
                    let d = _mm_sub_ps(v, mv);
                    let key = _mm_sub_epi32(_mm_slli_epi32(_mm_castps_si128(d), 1), one);
                    keys = _mm_min_epu32(keys, key);
                    _mm_mul_ps(d, d)
                } else {
                    let key = _mm_sub_epi32(_mm_slli_epi32(_mm_castps_si128(v), 1), one);
                    keys = _mm_min_epu32(keys, key);
                    v
                };
                accv = _mm_add_ps(accv, t);
                ib += 4;
            }
            unsafe { _mm_storeu_ps(part.as_mut_ptr(), accv) };
            while ia * b + ib < run_end {
                let v = unsafe { *base.add(ib) };
                let j = (ia * b + ib) % 4;
                part[j] += scalar(v, &mut skey);
                ib += 1;
            }
            row = run_end;
        }
        let mut acc = ((part[0] + part[1]) + part[2]) + part[3];
        for row in r4..rows {
            let (ia, ib) = (row / b, row % b);
            acc += scalar(x[(ia * c + ch) * b + ib], &mut skey);
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
        for &(a, c, b) in &[(2, 3, 9), (4, 2, 16), (3, 5, 7), (1, 1, 33), (5, 2, 6)] {
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
        }
    }
}
