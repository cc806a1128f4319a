//! TF's CPU floating-point environment, one operation at a time
//! (docs/bn-arithmetic.md#floating-point-environment).
//!
//! TensorFlow runs its CPU kernels with MXCSR's FTZ and DAZ bits set: a
//! subnormal operand reads as a zero of the same sign, and a result that is
//! *tiny* becomes a zero of the same sign. Nothing is fused: every multiply and
//! every add rounds on its own (the x86 wheel is built without FMA).
//!
//! This module does not touch MXCSR (changing the floating-point environment
//! under Rust's feet is undefined behaviour, and LLVM may fold `x * 1.0` to `x`
//! assuming the default environment). It reproduces the environment
//! explicitly instead: [`TfFloat`]'s operations flush their operands and their
//! result. One corner needs care: x86 detects tininess *after* rounding
//! (measured on this crate's AMD EPYC host: `(1 − 2⁻²⁴) · 2⁻¹²⁶` flushes to 0,
//! `(1 − 2⁻²³) · (1 + 2⁻²³) · 2⁻¹²⁶` gives `2⁻¹²⁶`), so a product or
//! quotient whose IEEE result is exactly `±MIN_POSITIVE` may still flush;
//! [`TfFloat::mul`] and [`TfFloat::div`] re-evaluate those with a scaled
//! operand to decide.
//!
//! The scalar operations here are the reference semantics of the whole `bn`
//! module; the SIMD kernels in `kernels.rs` compute without flushing, watch
//! for tiny values, and fall back to these when they see one.

use std::fmt::Debug;

/// A binary floating-point type as TensorFlow's CPU kernels see it.
///
/// Implemented for `f32` and `f64`. Every arithmetic method is one
/// correctly rounded IEEE operation evaluated under FTZ+DAZ.
pub trait TfFloat: Copy + PartialOrd + PartialEq + Debug + Default + Send + Sync + 'static {
    /// `+0`.
    const ZERO: Self;
    /// `1`.
    const ONE: Self;
    /// Lanes of Eigen's AVX packet for this type (`Packet8f`, `Packet4d`):
    /// it decides which channels take the four-partial reduction
    /// (docs/bn-arithmetic.md#reduction-order) and
    /// where the rsqrt packet/tail split falls
    /// (docs/bn-arithmetic.md#rsqrt).
    const PACKET: usize;
    /// Type name for messages.
    const NAME: &'static str;

    /// DAZ: a subnormal reads as a zero of the same sign.
    fn daz(self) -> Self;
    /// `a + b` under FTZ+DAZ.
    fn add(self, b: Self) -> Self;
    /// `a − b` under FTZ+DAZ.
    fn sub(self, b: Self) -> Self;
    /// `a · b` under FTZ+DAZ (tininess detected after rounding).
    fn mul(self, b: Self) -> Self;
    /// `a / b` under FTZ+DAZ (tininess detected after rounding).
    fn div(self, b: Self) -> Self;
    /// Correctly rounded square root under DAZ (never tiny).
    fn sqrt(self) -> Self;
    /// Negation (exact, flips the sign bit).
    fn neg(self) -> Self;
    /// A Python float converted to a tensor of this type (round to nearest).
    fn from_f64(v: f64) -> Self;
    /// Exact widening to `f64`.
    fn to_f64(self) -> f64;
    /// `static_cast<T>(n)` of a count (round to nearest).
    fn from_count(n: usize) -> Self;
    /// NaN test.
    fn is_nan(self) -> bool;
    /// `tf.maximum` (Eigen `scalar_max_op<…, PropagateNaN>`).
    fn max_nan(self, b: Self) -> Self {
        if b.is_nan() || (!self.is_nan() && self < b) {
            b
        } else {
            self
        }
    }
    /// `tf.minimum` (Eigen `scalar_min_op<…, PropagateNaN>`).
    fn min_nan(self, b: Self) -> Self {
        if b.is_nan() || (!self.is_nan() && b < self) {
            b
        } else {
            self
        }
    }
    /// `tf.nn.relu`: Eigen's `max(x, 0)`; keeps NaN and `−0`.
    fn relu(self) -> Self {
        if self < Self::ZERO {
            Self::ZERO
        } else {
            self
        }
    }
}

macro_rules! impl_tf_float {
    ($t:ty, $packet:expr, $name:expr, $scale_up:expr, $scale_down:expr) => {
        impl TfFloat for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const PACKET: usize = $packet;
            const NAME: &'static str = $name;

            #[inline(always)]
            fn daz(self) -> Self {
                if self.is_subnormal() {
                    (0.0 as $t).copysign(self)
                } else {
                    self
                }
            }

            #[inline(always)]
            fn add(self, b: Self) -> Self {
                // A sum of normal numbers is exact whenever it is subnormal,
                // so flushing the IEEE result is the whole story.
                flush_exact(self.daz() + b.daz())
            }

            #[inline(always)]
            fn sub(self, b: Self) -> Self {
                flush_exact(self.daz() - b.daz())
            }

            #[inline(always)]
            fn mul(self, b: Self) -> Self {
                let (a, b) = (self.daz(), b.daz());
                let p = a * b;
                if p.abs() > <$t>::MIN_POSITIVE || p.is_nan() {
                    return p;
                }
                if p.abs() < <$t>::MIN_POSITIVE {
                    return (0.0 as $t).copysign(p);
                }
                // |p| == MIN_POSITIVE: tiny after rounding iff the product
                // rounded to full precision (unbounded exponent) is below
                // MIN_POSITIVE. Both operands are ≤ ~1 in magnitude here,
                // so scaling one of them up is exact and cannot overflow.
                let (a, b) = if a.abs() <= b.abs() { (a, b) } else { (b, a) };
                let q = (a * $scale_up) * b;
                if q.abs() < <$t>::MIN_POSITIVE * $scale_up {
                    (0.0 as $t).copysign(p)
                } else {
                    p
                }
            }

            #[inline(always)]
            fn div(self, b: Self) -> Self {
                let (a, b) = (self.daz(), b.daz());
                let q = a / b;
                if q.abs() > <$t>::MIN_POSITIVE || q.is_nan() {
                    return q;
                }
                if q.abs() < <$t>::MIN_POSITIVE {
                    return (0.0 as $t).copysign(q);
                }
                // |a/b| == MIN_POSITIVE: rescale to the normal range.
                let r = if a.abs() <= 1.0 {
                    (a * $scale_up) / b
                } else {
                    a / (b * $scale_down)
                };
                if r.abs() < <$t>::MIN_POSITIVE * $scale_up {
                    (0.0 as $t).copysign(q)
                } else {
                    q
                }
            }

            #[inline(always)]
            fn sqrt(self) -> Self {
                self.daz().sqrt()
            }

            #[inline(always)]
            fn neg(self) -> Self {
                -self
            }

            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }

            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }

            #[inline(always)]
            fn from_count(n: usize) -> Self {
                n as $t
            }

            #[inline(always)]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
        }
    };
}

#[inline(always)]
fn flush_exact<T: Flushable>(v: T) -> T {
    v.flush()
}

trait Flushable {
    fn flush(self) -> Self;
}

impl Flushable for f32 {
    #[inline(always)]
    fn flush(self) -> Self {
        if self.is_subnormal() {
            0.0f32.copysign(self)
        } else {
            self
        }
    }
}

impl Flushable for f64 {
    #[inline(always)]
    fn flush(self) -> Self {
        if self.is_subnormal() {
            0.0f64.copysign(self)
        } else {
            self
        }
    }
}

// 2^64 and 2^-64 for f32; 2^512 and 2^-512 for f64.
impl_tf_float!(
    f32,
    8,
    "float32",
    f32::from_bits(0x5F80_0000),
    f32::from_bits(0x1F80_0000)
);
impl_tf_float!(
    f64,
    4,
    "float64",
    f64::from_bits(0x5FF0_0000_0000_0000),
    f64::from_bits(0x1FF0_0000_0000_0000)
);

/// Bit pattern key for the SIMD "did anything tiny happen?" test: for a
/// float with bits `b`, `(b << 1) − 1` (wrapping) is below
/// [`TINY_KEY_LIMIT`] exactly when `0 < |v| ≤ MIN_POSITIVE`. Zeros map to
/// `u32::MAX`, NaN and infinities to large keys. Keeping the unsigned
/// minimum of the keys of every operand and result of a kernel tells whether
/// FTZ/DAZ could have changed anything.
#[inline(always)]
pub(crate) fn tiny_key(v: f32) -> u32 {
    (v.to_bits() << 1).wrapping_sub(1)
}

/// Keys below this mean `0 < |v| ≤ f32::MIN_POSITIVE` (see [`tiny_key`]).
pub(crate) const TINY_KEY_LIMIT: u32 = 0x0100_0000;

/// Keys below this mean `0 < |v| < 2⁻¹⁰²`: an input that is neither zero nor
/// at least 2⁻¹⁰² may (through cancellation in a running sum) produce a
/// subnormal partial sum. Sums of floats that are all zero or ≥ 2⁻¹⁰² in
/// magnitude are multiples of 2⁻¹²⁵ and can never be subnormal.
pub(crate) const SUM_SAFE_KEY_LIMIT: u32 = (0x0C80_0000u32 << 1) - 1; // bits of 2^-102 = 0x0C800000

/// Keys below this mean `0 < |d| < 2⁻⁵¹`: `d·d` could then be below 2⁻¹⁰²
/// (and be tiny itself, or make a later sum subnormal).
pub(crate) const SQUARE_SAFE_KEY_LIMIT: u32 = (0x2600_0000u32 << 1) - 1; // bits of 2^-51 = 0x26000000

#[cfg(test)]
mod tests {
    use super::*;

    fn f(u: u32) -> f32 {
        f32::from_bits(u)
    }

    #[test]
    fn subnormal_operands_read_as_zero() {
        let sub = f(0x0040_0000);
        assert_eq!(sub.mul(1.0).to_bits(), 0);
        assert_eq!((-sub).mul(1.0).to_bits(), 0x8000_0000);
        assert_eq!(1.0f32.add(sub), 1.0);
        assert_eq!(sub.daz().to_bits(), 0);
        assert_eq!(1e-39f32.mul(1.0), 0.0);
    }

    #[test]
    fn subnormal_results_flush_to_signed_zero() {
        // Exact subtraction landing in the subnormal range.
        assert_eq!(f(0x0080_0001).sub(f(0x0080_0000)).to_bits(), 0);
        assert_eq!(f(0x0080_0000).sub(f(0x0080_0001)).to_bits(), 0x8000_0000);
        // Underflowing product.
        assert_eq!(1e-30f32.mul(1e-30).to_bits(), 0);
        assert_eq!((-1e-30f32).mul(1e-30).to_bits(), 0x8000_0000);
        // Quotient.
        assert_eq!(1e-30f32.div(1e10).to_bits(), 0);
    }

    #[test]
    fn tininess_is_detected_after_rounding() {
        // Measured with MXCSR FTZ|DAZ on the host (see module docs).
        assert_eq!(f(0x3F7F_FFFF).mul(f(0x0080_0000)).to_bits(), 0);
        assert_eq!(f(0x3F7F_FFFE).mul(f(0x0080_0001)).to_bits(), 0x0080_0000);
        assert_eq!(f(0x0080_0001).div(f(0x3F80_0001)).to_bits(), 0x0080_0000);
        // f64 twin of the first case.
        let a = f64::from_bits(0x3FEF_FFFF_FFFF_FFFF);
        assert_eq!(a.mul(f64::MIN_POSITIVE).to_bits(), 0);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn matches_hardware_ftz_daz() {
        // Compare against the real MXCSR mode on a grid of awkward values,
        // computed in inline assembly so that LLVM cannot fold anything.
        use std::arch::asm;
        fn hw(op: u8, a: f32, b: f32) -> f32 {
            let mut saved: u32 = 0;
            let mut x = a;
            let mode: u32 = 0x1F80 | 0x8040;
            unsafe {
                asm!("stmxcsr [{}]", in(reg) &mut saved as *mut u32, options(nostack));
                asm!("ldmxcsr [{}]", in(reg) &mode as *const u32, options(nostack));
                match op {
                    0 => asm!("addss {x}, {y}", x = inout(xmm_reg) x, y = in(xmm_reg) b),
                    1 => asm!("subss {x}, {y}", x = inout(xmm_reg) x, y = in(xmm_reg) b),
                    2 => asm!("mulss {x}, {y}", x = inout(xmm_reg) x, y = in(xmm_reg) b),
                    _ => asm!("divss {x}, {y}", x = inout(xmm_reg) x, y = in(xmm_reg) b),
                }
                asm!("ldmxcsr [{}]", in(reg) &saved as *const u32, options(nostack));
            }
            x
        }
        let mut vals: Vec<f32> = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.5,
            2.0,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
            f(0x0080_0001),
            f(0x0040_0000),
            f(0x8000_0001),
            f(0x3F7F_FFFF),
            f(0x3F7F_FFFE),
            f(0x3F80_0001),
            f(0x3F80_0002),
            f32::INFINITY,
            f32::NAN,
            1e-20,
            3e-19,
            1e19,
            f(0x2000_0001),
            f(0x1FFF_FFFF),
            f(0x5F7F_FFFF),
        ];
        let mut seed = 0x1234_5678u32;
        for _ in 0..200 {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            // Values around 2^-63 so that products land near MIN_POSITIVE.
            vals.push(f(0x2000_0000 ^ (seed >> 9)));
        }
        for &a in &vals {
            for &b in &vals {
                let ops: [(u8, f32); 4] =
                    [(0, a.add(b)), (1, a.sub(b)), (2, a.mul(b)), (3, a.div(b))];
                for (op, mine) in ops {
                    let want = hw(op, a, b);
                    assert!(
                        mine.to_bits() == want.to_bits() || (mine.is_nan() && want.is_nan()),
                        "op {op} on {:#010x} {:#010x}: mine {:#010x}, hardware {:#010x}",
                        a.to_bits(),
                        b.to_bits(),
                        mine.to_bits(),
                        want.to_bits()
                    );
                }
            }
        }
    }

    #[test]
    fn tiny_keys() {
        assert!(tiny_key(0.0) >= TINY_KEY_LIMIT);
        assert!(tiny_key(-0.0) >= TINY_KEY_LIMIT);
        assert!(tiny_key(f32::MIN_POSITIVE) < TINY_KEY_LIMIT);
        assert!(tiny_key(-f32::MIN_POSITIVE) < TINY_KEY_LIMIT);
        assert!(tiny_key(f(1)) < TINY_KEY_LIMIT);
        assert!(tiny_key(f(0x0080_0001)) >= TINY_KEY_LIMIT);
        assert!(tiny_key(f32::NAN) >= TINY_KEY_LIMIT);
        assert!(tiny_key(f32::INFINITY) >= TINY_KEY_LIMIT);
        let two_m102 = 2f32.powi(-102);
        assert!(tiny_key(two_m102) >= SUM_SAFE_KEY_LIMIT);
        assert!(tiny_key(f(two_m102.to_bits() - 1)) < SUM_SAFE_KEY_LIMIT);
        let two_m51 = 2f32.powi(-51);
        assert!(tiny_key(-two_m51) >= SQUARE_SAFE_KEY_LIMIT);
        assert!(tiny_key(f(two_m51.to_bits() - 1)) < SQUARE_SAFE_KEY_LIMIT);
    }

    #[test]
    fn nan_propagating_min_max_and_relu() {
        assert!(f32::NAN.max_nan(1.0).is_nan());
        assert!(1.0f32.max_nan(f32::NAN).is_nan());
        assert!(1.0f32.min_nan(f32::NAN).is_nan());
        assert_eq!(1.0f32.max_nan(2.0), 2.0);
        assert_eq!(1.0f32.min_nan(2.0), 1.0);
        assert_eq!((-1.0f32).relu(), 0.0);
        assert_eq!((-0.0f32).relu().to_bits(), 0x8000_0000);
        assert!(f32::NAN.relu().is_nan());
    }
}
