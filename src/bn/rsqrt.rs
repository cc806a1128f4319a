//! TensorFlow's `rsqrt` on the CPU (docs/bn-arithmetic.md#rsqrt).
//!
//! TF evaluates `rsqrt(var + eps)` with Eigen over a contiguous vector of
//! length `n` (the per-channel variances, or the flattened `G·C` vector of
//! ghost batches). For `float32`, the first `8·⌊n/8⌋` elements go through
//! the 8-wide packet routine: the hardware `RSQRTPS` estimate followed by one
//! Newton step; the last `n mod 8` go through a correctly rounded square root
//! followed by a correctly rounded division. For `float64` every element is
//! plain `1/√v`.
//!
//! `RSQRTPS` is vendor-specific: Intel and AMD return different bits, so TF
//! itself gives different results on different hosts. This module uses the
//! host's own instruction, which matches TF run on the same host; compare
//! [`host_cpu_vendor`] with the vendor a golden file records and fall back to
//! a ULP bound when they differ. On targets other than x86-64 the estimate is
//! replaced by a correctly rounded `1/√v`, which is **not** bit-exact with any
//! x86 host (the Newton step then lands within an ulp or two of TF).

use super::ftz::TfFloat;

pub use crate::host::host_cpu_vendor;

/// The hardware reciprocal square-root estimate (`RSQRTPS`) of each element.
///
/// Uses the 256-bit form when AVX is available (what Eigen's `Packet8f`
/// uses), the 128-bit form otherwise; the two agree on every input that was
/// tried (see the tests). Off x86-64: a correctly rounded `1/√v` (documented
/// as not bit-exact).
pub fn hardware_rsqrt_estimate(v: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0f32; v.len()];
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: AVX was detected at run time.
            unsafe { estimate_avx(v, &mut out) };
        } else {
            estimate_sse(v, &mut out);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        for (o, &x) in out.iter_mut().zip(v) {
            *o = 1.0 / x.daz().sqrt();
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn estimate_avx(v: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::*;
    let mut i = 0;
    while i < v.len() {
        let mut lane = [1.0f32; 8];
        let n = (v.len() - i).min(8);
        lane[..n].copy_from_slice(&v[i..i + n]);
        let mut res = [0.0f32; 8];
        // SAFETY: `lane` and `res` are 8 floats each.
        unsafe {
            let y = _mm256_rsqrt_ps(_mm256_loadu_ps(lane.as_ptr()));
            _mm256_storeu_ps(res.as_mut_ptr(), y);
        }
        out[i..i + n].copy_from_slice(&res[..n]);
        i += n;
    }
}

#[cfg(target_arch = "x86_64")]
fn estimate_sse(v: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::*;
    let mut i = 0;
    while i < v.len() {
        let mut lane = [1.0f32; 4];
        let n = (v.len() - i).min(4);
        lane[..n].copy_from_slice(&v[i..i + n]);
        let mut res = [0.0f32; 4];
        // SAFETY: SSE is part of the x86-64 baseline; 4 floats each.
        unsafe {
            let y = _mm_rsqrt_ps(_mm_loadu_ps(lane.as_ptr()));
            _mm_storeu_ps(res.as_mut_ptr(), y);
        }
        out[i..i + n].copy_from_slice(&res[..n]);
        i += n;
    }
}

/// Eigen's `generic_rsqrt_newton_step<Packet8f, 1>` for one lane: `v` is the
/// input, `y0` the hardware estimate. No FMA; FTZ+DAZ on every operation.
#[inline]
pub(crate) fn newton_step(v: f32, y0: f32) -> f32 {
    let r2 = v.mul(y0);
    let half_r = y0.mul(-0.5);
    let h = r2.mul(y0).add(-1.0);
    let y = half_r.mul(h).add(y0);
    if y.is_nan() {
        y0
    } else {
        y
    }
}

/// The scalar path (`n mod 8` tail): correctly rounded `1 / sqrt(v)`.
#[inline]
pub(crate) fn rsqrt_scalar<T: TfFloat>(v: T) -> T {
    T::ONE.div(v.sqrt())
}

/// `rsqrt` of a whole contiguous `float32` vector, as TF computes it.
pub fn rsqrt_tf_f32(v: &[f32]) -> Vec<f32> {
    rsqrt_tf_f32_window(v, 0, v.len())
}

/// TF's `rsqrt` for the elements `[start, start + v.len())` of a contiguous
/// vector of length `total`: the packet/tail split is decided by the
/// position in the whole vector, so a caller may evaluate it piecewise.
pub(crate) fn rsqrt_tf_f32_window(v: &[f32], start: usize, total: usize) -> Vec<f32> {
    debug_assert!(start + v.len() <= total);
    let packet_end = total / 8 * 8;
    let est = hardware_rsqrt_estimate(v);
    v.iter()
        .zip(est)
        .enumerate()
        .map(|(j, (&x, y0))| {
            if start + j < packet_end {
                newton_step(x, y0)
            } else {
                rsqrt_scalar(x)
            }
        })
        .collect()
}

/// TF's `rsqrt` of a `float64` vector: plain `1/√v` everywhere (Eigen's
/// `Packet4d` path divides too).
pub fn rsqrt_tf_f64(v: &[f64]) -> Vec<f64> {
    v.iter().map(|&x| rsqrt_scalar(x)).collect()
}

/// Element type dispatch for the generic code.
pub(crate) trait Rsqrt: TfFloat {
    /// TF's rsqrt over `[start, start + v.len())` of a vector of `total`.
    fn rsqrt_window(v: &[Self], start: usize, total: usize) -> Vec<Self>;
}

impl Rsqrt for f32 {
    fn rsqrt_window(v: &[f32], start: usize, total: usize) -> Vec<f32> {
        rsqrt_tf_f32_window(v, start, total)
    }
}

impl Rsqrt for f64 {
    fn rsqrt_window(v: &[f64], _start: usize, _total: usize) -> Vec<f64> {
        rsqrt_tf_f64(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulp_diff(a: f32, b: f32) -> i64 {
        a.to_bits() as i64 - b.to_bits() as i64
    }

    #[test]
    fn rsqrt_of_one_on_the_packet_path() {
        // TF's rsqrt(1.0) = 0.99999988 (0x3F7FFFFE) was measured on
        // an Intel Xeon. RSQRTPS is vendor-specific: on AMD EPYC (Zen 3) the
        // estimate is 0x3F7FF800 and TF 2.21 itself returns exactly 1.0
        // (measured with tf.math.rsqrt(tf.ones([8])), oneDNN off).
        let y = rsqrt_tf_f32(&[1.0; 8]);
        let want = match host_cpu_vendor().as_str() {
            "GenuineIntel" => Some(0x3F7F_FFFEu32),
            "AuthenticAMD" => Some(0x3F80_0000u32),
            _ => None,
        };
        if let Some(w) = want {
            for v in &y {
                assert_eq!(v.to_bits(), w, "rsqrt(1.0) on the packet path");
            }
        }
        // The scalar tail is exact everywhere.
        assert_eq!(rsqrt_tf_f32(&[1.0; 3]), vec![1.0; 3]);
    }

    #[test]
    fn matches_tf_on_this_vendor() {
        // tf.math.rsqrt of 0.37 + 1.913·i (i < 13) in TF 2.21 on an AMD EPYC
        // host, oneDNN off: 8 packet lanes, then 5 scalar ones.
        if host_cpu_vendor() != "AuthenticAMD" {
            return;
        }
        let v: Vec<f32> = (0..13)
            .map(|i| (0.37f64 + i as f64 * 1.913) as f32)
            .collect();
        let want: [u32; 13] = [
            0x3fd26e42, 0x3f296dc0, 0x3ef9f310, 0x3ecf2665, 0x3eb4c55c, 0x3ea26ff9, 0x3e94bf2a,
            0x3e8a055c, 0x3e815304, 0x3e742d38, 0x3e67e3ee, 0x3e5d4a29, 0x3e54057e,
        ];
        let got: Vec<u32> = rsqrt_tf_f32(&v).iter().map(|x| x.to_bits()).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn special_values() {
        let sub = f32::from_bits(0x0000_1234);
        let inputs = [0.0, sub, f32::INFINITY, -1.0, f32::NAN, -0.0, 4.0, 0.25];
        let y = rsqrt_tf_f32(&inputs);
        assert_eq!(y[0], f32::INFINITY);
        assert_eq!(y[1], f32::INFINITY);
        assert_eq!(y[2], 0.0);
        assert!(y[3].is_nan());
        assert!(y[4].is_nan());
        assert_eq!(y[5], f32::NEG_INFINITY);
        // Same on the scalar path.
        let t = rsqrt_tf_f32(&inputs[..5]);
        assert_eq!(t[0], f32::INFINITY);
        assert_eq!(t[1], f32::INFINITY);
        assert_eq!(t[2], 0.0);
        assert!(t[3].is_nan());
        assert!(t[4].is_nan());
        let d = rsqrt_tf_f64(&[0.0, 5e-324, f64::INFINITY, -1.0, 4.0]);
        assert_eq!(d[0], f64::INFINITY);
        assert_eq!(d[1], f64::INFINITY);
        assert_eq!(d[2], 0.0);
        assert!(d[3].is_nan());
        assert_eq!(d[4], 0.5);
    }

    #[test]
    fn tail_is_correctly_rounded_and_split_follows_length() {
        let v: Vec<f32> = (0..13).map(|i| 0.37 + i as f32 * 1.913).collect();
        let y = rsqrt_tf_f32(&v);
        for i in 8..13 {
            let exact = (1.0 / (v[i] as f64).sqrt()) as f32;
            assert_eq!(y[i], 1.0 / v[i].sqrt());
            assert!(ulp_diff(y[i], exact).abs() <= 1);
        }
        for i in 0..8 {
            assert_eq!(
                y[i],
                newton_step(v[i], hardware_rsqrt_estimate(&v[i..=i])[0])
            );
        }
        // A window evaluates the same split.
        let w = rsqrt_tf_f32_window(&v[6..11], 6, 13);
        assert_eq!(&w[..], &y[6..11]);
    }

    #[test]
    fn packet_accuracy_is_within_a_few_ulps() {
        // docs/bn-arithmetic.md#rsqrt: off by −3…+1 ulp from the correctly rounded value.
        let mut seed = 7u64;
        let mut v = Vec::new();
        for _ in 0..80_000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let e = ((seed >> 33) % 60) as i32 - 30;
            let m = 1.0 + ((seed >> 11) & 0xFFFF) as f32 / 65536.0;
            v.push(m * 2f32.powi(e));
        }
        let y = rsqrt_tf_f32(&v);
        let mut equal = 0usize;
        for (x, r) in v.iter().zip(&y) {
            let exact = (1.0 / (*x as f64).sqrt()) as f32;
            let d = ulp_diff(*r, exact);
            assert!((-4..=2).contains(&d), "{x}: {d} ulp");
            equal += (d == 0) as usize;
        }
        assert!(equal > v.len() / 3, "{equal} of {} exact", v.len());
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn sse_and_avx_estimates_agree() {
        if !std::arch::is_x86_feature_detected!("avx") {
            return;
        }
        let mut v = Vec::new();
        let mut bits = 0x0080_0000u32;
        while bits < 0x7F80_0000 {
            v.push(f32::from_bits(bits));
            bits += 4099;
        }
        let mut a = vec![0.0; v.len()];
        let mut b = vec![0.0; v.len()];
        estimate_sse(&v, &mut a);
        // SAFETY: AVX detected above.
        unsafe { estimate_avx(&v, &mut b) };
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
    }

    #[test]
    fn vendor_is_reported() {
        let v = host_cpu_vendor();
        assert!(!v.is_empty());
    }
}
