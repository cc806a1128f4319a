//! Fast `float32` kernels that keep TF's bits.
//!
//! Three kinds of work dominate batch norm, and each can be vectorized
//! without changing a single rounding:
//!
//! * **Element-wise** `y = ((x − p)·q) + r` (F1) or `y = (x·q) + r` (F2):
//!   per element and order-free, so any SIMD width and any split over
//!   threads give TF's bits.
//! * **Pattern P** over channels-last rows: every lane of an 8-wide vector is
//!   a different channel, and each lane adds its rows in Eigen's order (four
//!   interleaved partials), so vectorizing *across* channels keeps each
//!   channel's order. Threads split channels, never rows.
//! * **Pattern Q** over channels-first data: a strictly sequential sum per
//!   channel; eight channels run side by side in the lanes of a vector after
//!   an 8×8 transpose.
//!
//! The kernels do not flush subnormals. Instead they keep the unsigned
//! minimum of a key (`ftz::tiny_key`) of every operand and result, which
//! tells whether FTZ/DAZ could have changed anything; when it could, the
//! caller recomputes the affected channels or block with the exact scalar
//! code (`ftz`, `reduce`). On data without tiny values that never happens.
//!
//! Everything here has a portable scalar twin used off x86-64 / without
//! AVX2; the twins *are* the exact reference arithmetic.
//!
//! The kernels live by concern: [`rows`] (pattern P over channels-last
//! rows, used by both kernels), [`runs`] (the fused kernel's pattern P over
//! channels-first runs), [`outer`] (pattern Q, `tf.nn.moments` on
//! channels-first data) and [`affine`](mod@affine) (the element-wise pass).

mod affine;
mod outer;
mod rows;
mod runs;

pub(crate) use affine::{affine, affine_par, Affine, AffinePlan, Form};
pub(crate) use outer::outer_moments;
pub(crate) use rows::{rows_sums_all, rows_threads, SumMap};
pub(crate) use runs::{runs_sum, runs_sums};

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

/// AVX2 helpers shared by the kernels' vector bodies.
#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    /// Folds the tiny-value key (`ftz::tiny_key`) of every lane of `v` into
    /// the running unsigned minimum `acc`.
    #[inline(always)]
    pub(super) unsafe fn key_min(acc: __m256i, v: __m256) -> __m256i {
        let bits = _mm256_castps_si256(v);
        let key = _mm256_sub_epi32(_mm256_slli_epi32(bits, 1), _mm256_set1_epi32(1));
        _mm256_min_epu32(acc, key)
    }

    /// Whether any lane of the running key is below `limit`.
    #[inline(always)]
    pub(super) unsafe fn key_below(acc: __m256i, limit: u32) -> bool {
        let mut lanes = [0u32; 8];
        // SAFETY: 8 lanes.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, acc) };
        lanes.iter().any(|&k| k < limit)
    }
}

#[cfg(test)]
mod testdata {
    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 1.5
    }

    pub(super) fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|i| lcg(&mut s) * if i % 5 == 0 { 1000.0 } else { 1.0 })
            .collect()
    }
}
