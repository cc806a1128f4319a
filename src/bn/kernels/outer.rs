//! Pattern Q (docs/bn-arithmetic.md#reduction-order): `tf.nn.moments` over channels-first data
//! adds each channel's values strictly in sequence, position outer and batch
//! inner. Eight channels run side by side in the lanes of a vector after an
//! 8×8 transpose of a staged block.

use crate::bn::ftz::TfFloat;
#[cfg(target_arch = "x86_64")]
use crate::bn::ftz::{tiny_key, SQUARE_SAFE_KEY_LIMIT, SUM_SAFE_KEY_LIMIT};

#[cfg(target_arch = "x86_64")]
use super::has_avx2;

// ------------------------------------------------------------------ pattern Q

/// Pattern-Q moments (`B` outer, `A` inner, strictly sequential) of the
/// channels `[c0, c0 + mean.len())` of an `(a, k, b)` tensor
/// (`mean.len() ≤ 8`): `mean[j] = finalize(Σ x)` and `var_sum[j] =
/// Σ (x − mean[j])²`, each sum in TF's order.
pub(crate) fn outer_moments(
    x: &[f32],
    (a, k, b): (usize, usize, usize),
    c0: usize,
    finalize: &dyn Fn(f32) -> f32,
    mean: &mut [f32],
    var_sum: &mut [f32],
) {
    let n = mean.len();
    debug_assert!(n <= 8 && c0 + n <= k && var_sum.len() == n);
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            // SAFETY: AVX2 detected; reads stay inside the given channels.
            if unsafe { avx2::outer_moments(x, (a, k, b), c0, finalize, mean, var_sum) } {
                return;
            }
        }
    }
    let q_sum = |ch: usize, f: &dyn Fn(f32) -> f32| {
        let mut acc = 0.0f32;
        for jb in 0..b {
            for ia in 0..a {
                acc = acc.add(f(x[(ia * k + ch) * b + jb]));
            }
        }
        acc
    };
    for j in 0..n {
        let ch = c0 + j;
        mean[j] = finalize(q_sum(ch, &|v| v.daz()));
        let m = mean[j];
        var_sum[j] = q_sum(ch, &|v| {
            let d = v.sub(m);
            d.mul(d)
        });
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! AVX2 bodies of the pattern-Q moments; the caller guarantees AVX2 and
    //! the slice bounds stated on the safe wrapper.

    use super::*;
    use crate::bn::kernels::simd::{key_below, key_min};
    use std::arch::x86_64::*;

    /// The ordered sum of one staged chunk of [`outer_moments`]: position
    /// outer, `ia` inner. Out of line so that `acc` and the key stay in
    /// registers.
    #[target_feature(enable = "avx2")]
    #[inline(never)]
    unsafe fn q_accumulate<const SQ: bool>(
        buf: &[__m256],
        chunk: usize,
        len: usize,
        a: usize,
        mv: __m256,
        acc_io: &mut __m256,
        keys_io: &mut __m256i,
    ) {
        let (mut acc, mut keys) = (*acc_io, *keys_io);
        for jj in 0..len {
            for ia in 0..a {
                let v = buf[ia * chunk + jj];
                let t = if SQ {
                    let d = _mm256_sub_ps(v, mv);
                    keys = unsafe { key_min(keys, d) };
                    _mm256_mul_ps(d, d)
                } else {
                    keys = unsafe { key_min(keys, v) };
                    v
                };
                acc = _mm256_add_ps(acc, t);
            }
        }
        *acc_io = acc;
        *keys_io = keys;
    }

    /// 8×8 transpose of rows `r[0..8]` (each 8 floats) in registers.
    #[inline(always)]
    unsafe fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ]
    }

    /// Fills `buf[ia·chunk + jj]` (jj < len) with the 8 channels at
    /// `(ia, jb + jj)`: for each `ia`, 8 rows read in lockstep, 8×8
    /// transposes, sequential stores. `len` is a multiple of 8.
    #[target_feature(enable = "avx2")]
    #[inline(never)]
    unsafe fn q_fill(
        x: &[f32],
        (a, k, b): (usize, usize, usize),
        c0: usize,
        n: usize,
        (jb, len, chunk): (usize, usize, usize),
        buf: &mut [__m256],
    ) {
        let xp = x.as_ptr();
        let zeros = [0.0f32; 8];
        for ia in 0..a {
            let rows: [*const f32; 8] = std::array::from_fn(|j| {
                if j < n {
                    // SAFETY: channel c0 + j < k, so the row lies inside x.
                    unsafe { xp.add((ia * k + c0 + j) * b + jb) }
                } else {
                    zeros.as_ptr()
                }
            });
            let mut sub = 0;
            while sub < len {
                // SAFETY: sub + 8 ≤ len ≤ b − jb for real rows; padding rows
                // point at 8 zeros and do not advance.
                let r: [__m256; 8] = std::array::from_fn(|j| unsafe {
                    _mm256_loadu_ps(rows[j].add(if j < n { sub } else { 0 }))
                });
                let t = unsafe { transpose8(r) };
                buf[ia * chunk + sub..ia * chunk + sub + 8].copy_from_slice(&t);
                sub += 8;
            }
        }
    }

    /// See [`super::outer_moments`]. Returns false when a tiny value was
    /// seen. When the whole transposed block fits in 8 MiB it is staged
    /// once and both passes read it; otherwise it is staged in chunks that
    /// keep the buffer near 4 MiB, once per pass.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn outer_moments(
        x: &[f32],
        dims: (usize, usize, usize),
        c0: usize,
        finalize: &dyn Fn(f32) -> f32,
        mean: &mut [f32],
        var_sum: &mut [f32],
    ) -> bool {
        let (a, _, b) = dims;
        let b8 = b / 8 * 8;
        let whole = a.saturating_mul(b8).saturating_mul(32) <= (8 << 20);
        let chunk = if whole {
            b8.max(8)
        } else {
            ((4 << 20) / (a.max(1) * 32) / 8 * 8).clamp(64.min(b8.max(8)), b8.max(8))
        };
        let mut buf = take_staging(a * chunk);
        let ok = unsafe {
            outer_moments_in(x, dims, c0, finalize, mean, var_sum, &mut buf, chunk, whole)
        };
        give_back_staging(buf);
        ok
    }

    /// Staging buffers kept across calls: a fresh multi-MiB allocation costs
    /// page faults, which on virtual machines can take longer than the whole
    /// kernel (≈ 5 µs per 4 KiB page measured on the benchmark host).
    static STAGING: std::sync::Mutex<Vec<Vec<__m256>>> = std::sync::Mutex::new(Vec::new());

    fn take_staging(len: usize) -> Vec<__m256> {
        let mut v = STAGING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default();
        if v.len() < len {
            // SAFETY: SSE is baseline on x86-64.
            v.resize(len, unsafe { _mm256_setzero_ps() });
        }
        v
    }

    fn give_back_staging(v: Vec<__m256>) {
        let mut pool = STAGING.lock().unwrap_or_else(|e| e.into_inner());
        // Keep one buffer per core at most.
        if pool.len() < crate::bn::par::host_threads() {
            pool.push(v);
        }
    }

    #[target_feature(enable = "avx2")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn outer_moments_in(
        x: &[f32],
        dims: (usize, usize, usize),
        c0: usize,
        finalize: &dyn Fn(f32) -> f32,
        mean: &mut [f32],
        var_sum: &mut [f32],
        buf: &mut [__m256],
        chunk: usize,
        whole: bool,
    ) -> bool {
        let (a, k, b) = dims;
        let n = mean.len();
        let b8 = b / 8 * 8;
        let mut keys = _mm256_set1_epi32(-1);
        let mut skey = u32::MAX;

        // The scalar tail positions b8..b come last in TF's order.
        let tail = |lanes: &mut [f32; 8], m: Option<&[f32; 8]>, skey: &mut u32| {
            for jb in b8..b {
                for ia in 0..a {
                    for (j, lane) in lanes.iter_mut().enumerate().take(n) {
                        let v = x[(ia * k + c0 + j) * b + jb];
                        let t = match m {
                            None => {
                                *skey = (*skey).min(tiny_key(v));
                                v
                            }
                            Some(m) => {
                                let d = v - m[j];
                                *skey = (*skey).min(tiny_key(d));
                                d * d
                            }
                        };
                        *lane += t;
                    }
                }
            }
        };

        // Pass 1: sums.
        let mut acc = _mm256_setzero_ps();
        let mut jb = 0;
        while jb < b8 {
            let len = chunk.min(b8 - jb);
            // SAFETY: forwarded bounds; buf holds a·chunk vectors.
            unsafe {
                q_fill(x, dims, c0, n, (jb, len, chunk), buf);
                q_accumulate::<false>(buf, chunk, len, a, _mm256_setzero_ps(), &mut acc, &mut keys);
            }
            jb += len;
        }
        let mut sums = [0.0f32; 8];
        unsafe { _mm256_storeu_ps(sums.as_mut_ptr(), acc) };
        tail(&mut sums, None, &mut skey);
        if unsafe { key_below(keys, SUM_SAFE_KEY_LIMIT) } || skey < SUM_SAFE_KEY_LIMIT {
            return false;
        }
        let mut m = [0.0f32; 8];
        for j in 0..n {
            m[j] = finalize(sums[j]);
            mean[j] = m[j];
        }
        let mv = unsafe { _mm256_loadu_ps(m.as_ptr()) };

        // Pass 2: squared differences.
        let mut acc = _mm256_setzero_ps();
        let mut keys = _mm256_set1_epi32(-1);
        let mut skey = u32::MAX;
        if whole {
            // SAFETY: buf still holds the whole staged block.
            unsafe { q_accumulate::<true>(buf, chunk, b8, a, mv, &mut acc, &mut keys) };
        } else {
            let mut jb = 0;
            while jb < b8 {
                let len = chunk.min(b8 - jb);
                // SAFETY: as in pass 1.
                unsafe {
                    q_fill(x, dims, c0, n, (jb, len, chunk), buf);
                    q_accumulate::<true>(buf, chunk, len, a, mv, &mut acc, &mut keys);
                }
                jb += len;
            }
        }
        let mut sq = [0.0f32; 8];
        unsafe { _mm256_storeu_ps(sq.as_mut_ptr(), acc) };
        tail(&mut sq, Some(&m), &mut skey);
        // Padding lanes hold zeros (key u32::MAX) and mean 0.
        if unsafe { key_below(keys, SQUARE_SAFE_KEY_LIMIT) } || skey < SQUARE_SAFE_KEY_LIMIT {
            return false;
        }
        var_sum.copy_from_slice(&sq[..n]);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bn::kernels::testdata::data;

    #[test]
    fn outer_moments_match_reference() {
        for &(a, k, b) in &[
            (2, 3, 9),
            (4, 8, 16),
            (3, 11, 7),
            (1, 9, 33),
            (5, 2, 24),
            (2, 9, 5003),
            (300, 8, 4100),
        ] {
            let x = data(a * k * b, (a + 3 * k + 5 * b) as u64);
            let rt = (a * b) as f32;
            let fin = |s: f32| s.div(rt);
            let mut c0 = 0;
            while c0 < k {
                let n = (k - c0).min(8);
                let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
                outer_moments(&x, (a, k, b), c0, &fin, &mut m, &mut v);
                for j in 0..n {
                    let ch = c0 + j;
                    let q = |f: &dyn Fn(f32) -> f32| {
                        let mut acc = 0.0f32;
                        for jb in 0..b {
                            for ia in 0..a {
                                acc = acc.add(f(x[(ia * k + ch) * b + jb]));
                            }
                        }
                        acc
                    };
                    let want_m = fin(q(&|v| v));
                    let want_v = q(&|v| {
                        let d = v.sub(want_m);
                        d.mul(d)
                    });
                    assert_eq!(m[j].to_bits(), want_m.to_bits(), "{a} {k} {b} ch {ch}");
                    assert_eq!(v[j].to_bits(), want_v.to_bits(), "{a} {k} {b} ch {ch}");
                }
                c0 += n;
            }
        }
    }
}
