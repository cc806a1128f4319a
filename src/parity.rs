//! Comparing arrays of floating-point results: bitwise equality, distance in
//! units in the last place (ULP), absolute and relative error, and the worst
//! element and channel; plus named tolerance presets ([`Tolerance`]).
//!
//! Conventions, the same for every element type (`f32`, `f64`, `f16`,
//! `bf16`):
//!
//! * **Bitwise equal** means the same bit pattern, so `+0` and `−0` differ.
//! * **NaN.** Two NaNs of the same class (both quiet or both signalling)
//!   count as equal whatever their sign and payload: TF and a native layer
//!   may produce the default NaN with different signs (x86's default NaN is
//!   negative). A NaN against a number, or a quiet against a signalling NaN,
//!   is an infinite error.
//! * **ULP distance** counts the representable values between the two: `+0`
//!   and `−0` are 0 apart, the smallest subnormals on either side of zero are
//!   2 apart, the largest finite value and infinity are 1 apart.
//! * **Relative error** is `|a − e| / |e|`; where the expected value is 0 it
//!   is 0 when the actual value is 0 too, else infinite.
//!
//! ```
//! use tfbn::parity::{compare, ChannelLayout, Tolerance};
//! let tf = [1.0f32, 2.0, -0.0];
//! let native = [1.0f32, f32::from_bits(2.0f32.to_bits() + 1), 0.0];
//! let c = compare(&tf, &native, ChannelLayout::last(3)).unwrap();
//! assert_eq!(c.bitwise_equal, 1);
//! assert_eq!(c.max_ulp, 1);
//! assert!(!Tolerance::Exact.accepts(&c));
//! assert!("ulp:1".parse::<Tolerance>().unwrap().accepts(&c));
//! ```

use std::fmt;
use std::str::FromStr;

use half::{bf16, f16};
use serde::Serialize;

use crate::error::{Error, Result};

/// A floating-point element type that can be compared.
pub trait ParityFloat: Copy {
    /// TF's name of the type (`"float32"`, …).
    const NAME: &'static str;
    /// The raw bits, widened.
    fn bits(self) -> u64;
    /// The value widened to `f64` (exact for every implementing type).
    fn to_f64(self) -> f64;
    /// An integer that orders like the value and steps by one per
    /// representable value (both zeros map to 0). Undefined for NaN.
    fn ordinal(self) -> i64;
    /// `Some(true)` for a quiet NaN, `Some(false)` for a signalling NaN,
    /// `None` for a number.
    fn nan_class(self) -> Option<bool>;
    /// Mantissa bits (without the implicit bit) and the smallest normal
    /// exponent of the type.
    const FORMAT: (i32, i32);
}

/// The spacing of `T`'s values at magnitude `m` (finite, ≥ 0): the ULP of
/// `m`, or of the subnormals below the smallest normal.
fn ulp_at<T: ParityFloat>(m: f64) -> f64 {
    let (mbits, emin) = T::FORMAT;
    let e = if m > 0.0 && m.is_finite() {
        (m.log2().floor() as i32).max(emin)
    } else {
        emin
    };
    // log2 can be off by one near powers of two; correct it.
    let e = if m >= 2f64.powi(e + 1) {
        e + 1
    } else if m > 0.0 && m < 2f64.powi(e) && e > emin {
        e - 1
    } else {
        e
    };
    2f64.powi(e - mbits)
}

macro_rules! parity_float {
    ($t:ty, $name:expr, $bits:ty, $width:expr, $format:expr, $to_bits:expr, $to_f64:expr) => {
        impl ParityFloat for $t {
            const NAME: &'static str = $name;
            const FORMAT: (i32, i32) = $format;
            fn bits(self) -> u64 {
                #[allow(clippy::redundant_closure_call)]
                let b: $bits = ($to_bits)(self);
                b as u64
            }
            fn to_f64(self) -> f64 {
                #[allow(clippy::redundant_closure_call)]
                ($to_f64)(self)
            }
            fn ordinal(self) -> i64 {
                let b = self.bits();
                let sign = 1u64 << ($width - 1);
                let mag = (b & (sign - 1)) as i64;
                if b & sign != 0 {
                    -mag
                } else {
                    mag
                }
            }
            fn nan_class(self) -> Option<bool> {
                if !self.to_f64().is_nan() {
                    return None;
                }
                // The quiet bit is the top mantissa bit.
                let quiet_bit: u64 = match $width {
                    64 => 1 << 51,
                    32 => 1 << 22,
                    _ => {
                        if $name == "bfloat16" {
                            1 << 6
                        } else {
                            1 << 9
                        }
                    }
                };
                Some(self.bits() & quiet_bit != 0)
            }
        }
    };
}

parity_float!(
    f32,
    "float32",
    u32,
    32,
    (23, -126),
    |v: f32| v.to_bits(),
    |v: f32| v as f64
);
parity_float!(
    f64,
    "float64",
    u64,
    64,
    (52, -1022),
    |v: f64| v.to_bits(),
    |v: f64| v
);
parity_float!(
    f16,
    "float16",
    u16,
    16,
    (10, -14),
    |v: f16| v.to_bits(),
    |v: f16| v.to_f64()
);
parity_float!(
    bf16,
    "bfloat16",
    u16,
    16,
    (7, -126),
    |v: bf16| v.to_bits(),
    |v: bf16| v.to_f64()
);

/// Distance in ULPs between two values (see the module docs); `u64::MAX`
/// when exactly one is NaN or the NaN classes differ, 0 for NaNs of the same
/// class.
pub fn ulp_distance<T: ParityFloat>(a: T, b: T) -> u64 {
    match (a.nan_class(), b.nan_class()) {
        (None, None) => a.ordinal().abs_diff(b.ordinal()),
        (Some(x), Some(y)) if x == y => 0,
        _ => u64::MAX,
    }
}

/// True when `a` and `b` count as equal under [`Tolerance::Exact`]: the same
/// bits, or NaNs of the same class.
pub fn exact_equal<T: ParityFloat>(a: T, b: T) -> bool {
    a.bits() == b.bits() || matches!((a.nan_class(), b.nan_class()), (Some(x), Some(y)) if x == y)
}

/// Absolute and relative error of `actual` against `expected`, in `f64`.
fn abs_rel<T: ParityFloat>(expected: T, actual: T) -> (f64, f64) {
    match (expected.nan_class(), actual.nan_class()) {
        (Some(x), Some(y)) if x == y => return (0.0, 0.0),
        (None, None) => {}
        _ => return (f64::INFINITY, f64::INFINITY),
    }
    let (e, a) = (expected.to_f64(), actual.to_f64());
    if e == a {
        return (0.0, 0.0);
    }
    let abs = (a - e).abs();
    let abs = if abs.is_nan() { f64::INFINITY } else { abs };
    // An infinite error is infinitely relative too (∞/∞ would be NaN, which
    // a running maximum silently drops).
    let rel = if e == 0.0 || abs.is_infinite() {
        f64::INFINITY
    } else {
        abs / e.abs()
    };
    (abs, rel)
}

/// Where the channel index of a flat row-major array sits: element `i` has
/// channel `(i / inner) % channels`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelLayout {
    /// Number of channels.
    pub channels: usize,
    /// Product of the dimensions after the channel axis (1 for
    /// channels-last).
    pub inner: usize,
}

impl ChannelLayout {
    /// Channels-last data (`NHWC`, `NC`, or a per-channel vector).
    pub fn last(channels: usize) -> ChannelLayout {
        ChannelLayout { channels, inner: 1 }
    }

    /// The layout of a tensor of `shape` with the channel axis `axis`.
    pub fn of(shape: &[usize], axis: usize) -> ChannelLayout {
        ChannelLayout {
            channels: shape.get(axis).copied().unwrap_or(1),
            inner: shape.get(axis + 1..).map_or(1, |s| s.iter().product()),
        }
    }

    fn channel_of(&self, i: usize) -> usize {
        (i / self.inner.max(1)) % self.channels.max(1)
    }
}

/// The worst element of one channel.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ChannelError {
    /// Elements in the channel.
    pub n: usize,
    /// Elements that are equal under [`Tolerance::Exact`].
    pub equal: usize,
    /// Largest ULP distance.
    pub max_ulp: u64,
    /// Largest absolute error.
    pub max_abs: f64,
}

/// The result of comparing two arrays of the same length.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Element type.
    pub dtype: &'static str,
    /// Number of elements.
    pub n: usize,
    /// Elements with identical bits.
    pub bitwise_equal: usize,
    /// Elements equal under [`Tolerance::Exact`] (identical bits or NaNs of
    /// the same class).
    pub equal: usize,
    /// Largest ULP distance (`u64::MAX` for a NaN mismatch).
    pub max_ulp: u64,
    /// Largest error in ULPs of the largest finite magnitude of the
    /// expected array (`|a − e| / ulp(max |e|)`, rounded up; `u64::MAX` for a
    /// NaN or infinity mismatch): the error measured against the array's
    /// scale, which stays meaningful where values cross zero.
    pub max_ulp_of_max: u64,
    /// Largest absolute error (infinite for a NaN or infinity mismatch).
    pub max_abs: f64,
    /// Largest relative error.
    pub max_rel: f64,
    /// Flat index of the element with the largest ULP distance (ties: the
    /// first), `None` when every element is equal.
    pub worst_index: Option<usize>,
    /// Expected (reference) value at `worst_index`.
    pub worst_expected: Option<f64>,
    /// Actual value at `worst_index`.
    pub worst_actual: Option<f64>,
    /// Channel of `worst_index`.
    pub worst_channel: Option<usize>,
    /// Per-channel statistics.
    #[serde(skip)]
    pub channels: Vec<ChannelError>,
}

impl Comparison {
    /// The fraction of elements with identical bits (1 for an empty array).
    pub fn bitwise_fraction(&self) -> f64 {
        if self.n == 0 {
            1.0
        } else {
            self.bitwise_equal as f64 / self.n as f64
        }
    }

    /// Folds `other` (another array of the same quantity, e.g. another input
    /// case) into this one; the worst element is the worse of the two, and
    /// per-channel statistics are merged when both have the same channels.
    pub fn merge(&mut self, other: &Comparison) {
        let other_worse = other.max_ulp > self.max_ulp
            || (other.max_ulp == self.max_ulp && other.max_abs > self.max_abs);
        if other_worse && other.worst_index.is_some() {
            self.worst_index = other.worst_index;
            self.worst_expected = other.worst_expected;
            self.worst_actual = other.worst_actual;
            self.worst_channel = other.worst_channel;
        }
        self.n += other.n;
        self.bitwise_equal += other.bitwise_equal;
        self.equal += other.equal;
        self.max_ulp = self.max_ulp.max(other.max_ulp);
        self.max_ulp_of_max = self.max_ulp_of_max.max(other.max_ulp_of_max);
        self.max_abs = self.max_abs.max(other.max_abs);
        self.max_rel = self.max_rel.max(other.max_rel);
        if self.channels.len() == other.channels.len() {
            for (a, b) in self.channels.iter_mut().zip(&other.channels) {
                a.n += b.n;
                a.equal += b.equal;
                a.max_ulp = a.max_ulp.max(b.max_ulp);
                a.max_abs = a.max_abs.max(b.max_abs);
            }
        }
    }
}

/// Every measure of one element's error, as [`compare`] and
/// [`Tolerance::accepts_element`] use it.
struct ElementError {
    equal: bool,
    ulp: u64,
    abs: f64,
    rel: f64,
    ulp_of_max: u64,
}

/// Measures `actual` against `expected`; `unit` is the ULP of the expected
/// array's largest finite magnitude ([`ulp_at`]).
fn element_error<T: ParityFloat>(expected: T, actual: T, unit: f64) -> ElementError {
    let (abs, rel) = abs_rel(expected, actual);
    let ulp_of_max = if !abs.is_finite() {
        u64::MAX
    } else {
        let q = (abs / unit).ceil();
        if q >= u64::MAX as f64 {
            u64::MAX
        } else {
            q as u64
        }
    };
    ElementError {
        equal: exact_equal(expected, actual),
        ulp: ulp_distance(expected, actual),
        abs,
        rel,
        ulp_of_max,
    }
}

/// The largest finite magnitude of `values` (0 when there is none): the
/// scale that [`Tolerance::UlpOfMax`] measures against.
pub fn finite_scale<T: ParityFloat>(values: impl IntoIterator<Item = T>) -> f64 {
    values
        .into_iter()
        .map(|e| e.to_f64().abs())
        .filter(|m| m.is_finite())
        .fold(0.0f64, f64::max)
}

/// Compares `actual` against `expected` (the reference, e.g. TensorFlow's
/// output) element by element.
pub fn compare<T: ParityFloat>(
    expected: &[T],
    actual: &[T],
    layout: ChannelLayout,
) -> Result<Comparison> {
    if expected.len() != actual.len() {
        return Err(Error::InvalidArgument(format!(
            "cannot compare arrays of {} and {} elements",
            expected.len(),
            actual.len()
        )));
    }
    let mut channels = vec![
        ChannelError {
            n: 0,
            equal: 0,
            max_ulp: 0,
            max_abs: 0.0,
        };
        layout.channels.max(1)
    ];
    let mut c = Comparison {
        dtype: T::NAME,
        n: expected.len(),
        bitwise_equal: 0,
        equal: 0,
        max_ulp: 0,
        max_ulp_of_max: 0,
        max_abs: 0.0,
        max_rel: 0.0,
        worst_index: None,
        worst_expected: None,
        worst_actual: None,
        worst_channel: None,
        channels: Vec::new(),
    };
    let scale = finite_scale(expected.iter().copied());
    let unit = ulp_at::<T>(scale);
    let mut worst_abs = 0.0f64;
    for (i, (&e, &a)) in expected.iter().zip(actual).enumerate() {
        let ch = &mut channels[layout.channel_of(i)];
        ch.n += 1;
        if e.bits() == a.bits() {
            c.bitwise_equal += 1;
            c.equal += 1;
            ch.equal += 1;
            continue;
        }
        let ElementError {
            equal,
            ulp,
            abs,
            rel,
            ulp_of_max: scaled,
        } = element_error(e, a, unit);
        if equal {
            c.equal += 1;
            ch.equal += 1;
        }
        c.max_ulp_of_max = c.max_ulp_of_max.max(scaled);
        c.max_abs = c.max_abs.max(abs);
        c.max_rel = c.max_rel.max(rel);
        ch.max_ulp = ch.max_ulp.max(ulp);
        ch.max_abs = ch.max_abs.max(abs);
        // The worst element: the largest ULP distance, ties broken by the
        // absolute error, among the elements that are not equal.
        let worse =
            c.worst_index.is_none() || ulp > c.max_ulp || (ulp == c.max_ulp && abs > worst_abs);
        if worse && !equal {
            c.max_ulp = ulp;
            worst_abs = abs;
            c.worst_index = Some(i);
            c.worst_expected = Some(e.to_f64());
            c.worst_actual = Some(a.to_f64());
            c.worst_channel = Some(layout.channel_of(i));
        }
    }
    c.channels = channels;
    Ok(c)
}

/// Bitwise comparison of two byte strings (e.g. the raw bytes of one tensor
/// read two ways): `None` when equal, else the first differing byte offset.
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    if a == b {
        return None;
    }
    Some(
        a.iter()
            .zip(b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len())),
    )
}

/// How close is close enough: a named preset, parsed from and printed as
/// `exact`, `ulp:N`, `ulp-of-max:N`, `abs:X` or `rel:X`. Used by `tfbn
/// verify` (whole arrays, [`Tolerance::accepts`]) and by numeric snapshots
/// (element by element, [`Tolerance::accepts_element`]); both apply the same
/// rule to each element.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tolerance {
    /// Every element bitwise equal (NaNs: same class; see the module docs).
    Exact,
    /// Every element within `n` ULPs (of itself: strict near zero).
    Ulp(u64),
    /// Every element within `n` ULPs of the largest magnitude of the
    /// expected array ([`Comparison::max_ulp_of_max`]): an error budget
    /// relative to the array's scale.
    UlpOfMax(u64),
    /// Every element within an absolute error of `x`.
    Abs(f64),
    /// Every element within a relative error of `x`: `|a − e| ≤ x·|e|`
    /// (an expected 0 must be matched exactly).
    Rel(f64),
}

impl Tolerance {
    /// True when `c` is within this tolerance.
    pub fn accepts(&self, c: &Comparison) -> bool {
        match *self {
            Tolerance::Exact => c.equal == c.n,
            Tolerance::Ulp(n) => c.max_ulp <= n,
            Tolerance::UlpOfMax(n) => c.max_ulp_of_max <= n,
            Tolerance::Abs(x) => c.max_abs <= x,
            Tolerance::Rel(x) => c.max_rel <= x,
        }
    }

    /// True when one element, `actual` against `expected`, is within this
    /// tolerance; `scale` is the expected array's largest finite magnitude
    /// ([`finite_scale`]), used only by [`Tolerance::UlpOfMax`]. Agrees with
    /// [`Tolerance::accepts`]: an array passes exactly when every element
    /// does.
    pub fn accepts_element<T: ParityFloat>(&self, expected: T, actual: T, scale: f64) -> bool {
        if expected.bits() == actual.bits() {
            return true;
        }
        let e = element_error(expected, actual, ulp_at::<T>(scale));
        match *self {
            Tolerance::Exact => e.equal,
            Tolerance::Ulp(n) => e.ulp <= n,
            Tolerance::UlpOfMax(n) => e.ulp_of_max <= n,
            Tolerance::Abs(x) => e.abs <= x,
            Tolerance::Rel(x) => e.rel <= x,
        }
    }

    /// Parses the textual form (the same as [`FromStr`]).
    pub fn parse(s: &str) -> Result<Tolerance> {
        s.parse()
    }
}

impl fmt::Display for Tolerance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tolerance::Exact => f.write_str("exact"),
            Tolerance::Ulp(n) => write!(f, "ulp:{n}"),
            Tolerance::UlpOfMax(n) => write!(f, "ulp-of-max:{n}"),
            Tolerance::Abs(x) => write!(f, "abs:{x:e}"),
            Tolerance::Rel(x) => write!(f, "rel:{x:e}"),
        }
    }
}

impl FromStr for Tolerance {
    type Err = Error;

    fn from_str(s: &str) -> Result<Tolerance> {
        let bad = || {
            Error::InvalidArgument(format!(
                "tolerance {s:?}: expected `exact`, `ulp:N`, `ulp-of-max:N` (N a whole number of ULPs), `abs:X` or `rel:X` (X ≥ 0)"
            ))
        };
        let t = s.trim().to_ascii_lowercase();
        if t == "exact" {
            return Ok(Tolerance::Exact);
        }
        let (kind, value) = t.split_once(':').ok_or_else(bad)?;
        match kind {
            "ulp" => value
                .trim()
                .parse::<u64>()
                .map(Tolerance::Ulp)
                .map_err(|_| bad()),
            "ulp-of-max" | "ulp_of_max" => value
                .trim()
                .parse::<u64>()
                .map(Tolerance::UlpOfMax)
                .map_err(|_| bad()),
            "abs" | "rel" => {
                let x: f64 = value.trim().parse().map_err(|_| bad())?;
                if x.is_nan() || x < 0.0 {
                    return Err(bad());
                }
                Ok(if kind == "abs" {
                    Tolerance::Abs(x)
                } else {
                    Tolerance::Rel(x)
                })
            }
            _ => Err(bad()),
        }
    }
}

impl Serialize for Tolerance {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulp_distance_crosses_zero_and_handles_specials() {
        assert_eq!(ulp_distance(0.0f32, -0.0f32), 0);
        let tiny = f32::from_bits(1);
        assert_eq!(ulp_distance(tiny, -tiny), 2);
        assert_eq!(ulp_distance(f32::MAX, f32::INFINITY), 1);
        assert_eq!(
            ulp_distance(1.0f32, f32::from_bits(1.0f32.to_bits() + 3)),
            3
        );
        assert_eq!(ulp_distance(f32::NAN, -f32::NAN), 0);
        assert_eq!(ulp_distance(f32::NAN, 1.0), u64::MAX);
        let snan = f32::from_bits(0x7F80_0001);
        assert_eq!(ulp_distance(f32::NAN, snan), u64::MAX);
        assert_eq!(ulp_distance(1.0f64, -1.0f64), 2 * 1.0f64.to_bits());
        assert_eq!(ulp_distance(f16::from_f32(1.0), f16::from_bits(0x3C01)), 1);
        assert_eq!(
            ulp_distance(bf16::from_f32(-1.0), bf16::from_bits(0xBF81)),
            1
        );
        assert_eq!(bf16::NAN.nan_class(), Some(true));
        assert_eq!(f16::NAN.nan_class(), Some(true));
        assert_eq!(f16::from_bits(0x7C01).nan_class(), Some(false));
    }

    #[test]
    fn exact_distinguishes_signed_zeros_but_not_nan_signs() {
        assert!(!exact_equal(0.0f32, -0.0));
        assert!(exact_equal(f32::NAN, -f32::NAN));
        assert!(!exact_equal(f32::NAN, f32::from_bits(0x7F80_0001)));
    }

    #[test]
    fn compare_reports_worst_element_and_channel() {
        let e = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut a = e;
        a[4] = f32::from_bits(a[4].to_bits() + 7);
        a[1] = f32::from_bits(a[1].to_bits() + 2);
        let c = compare(&e, &a, ChannelLayout::last(3)).unwrap();
        assert_eq!(c.bitwise_equal, 4);
        assert_eq!(c.max_ulp, 7);
        assert_eq!(c.worst_index, Some(4));
        assert_eq!(c.worst_channel, Some(1));
        assert_eq!(c.channels[1].max_ulp, 7);
        assert_eq!(c.channels[0].max_ulp, 0);
        assert!((c.max_abs - (a[4] - 5.0) as f64).abs() < 1e-12);
        assert!(compare(&e, &a[..3], ChannelLayout::last(3)).is_err());
        let nchw = ChannelLayout::of(&[1, 3, 2], 1);
        assert_eq!(
            (nchw.channel_of(0), nchw.channel_of(2), nchw.channel_of(5)),
            (0, 1, 2)
        );
    }

    #[test]
    fn ulp_of_max_measures_against_the_arrays_scale() {
        // Near zero a tiny absolute error is many ULPs of the element but
        // a fraction of an ULP of the array's largest value.
        let e = [4.0f32, 1e-6];
        let a = [4.0f32, 1.2e-6];
        let c = compare(&e, &a, ChannelLayout::last(2)).unwrap();
        assert!(c.max_ulp > 1000);
        assert_eq!(c.max_ulp_of_max, 1);
        assert!(Tolerance::UlpOfMax(1).accepts(&c));
        let a = [f32::from_bits(4.0f32.to_bits() + 3), 1e-6];
        let c = compare(&e, &a, ChannelLayout::last(2)).unwrap();
        assert_eq!((c.max_ulp, c.max_ulp_of_max), (3, 3));
        assert_eq!(ulp_at::<f32>(1.0), f32::EPSILON as f64);
        assert_eq!(ulp_at::<f32>(0.0), 2f64.powi(-149));
        assert_eq!(ulp_at::<f64>(2.0), 2.0 * f64::EPSILON);
        assert_eq!(ulp_at::<f16>(1.0), 2f64.powi(-10));
        assert_eq!(ulp_at::<bf16>(1.0), 2f64.powi(-7));
        let nan = compare(&[1.0f32], &[f32::NAN], ChannelLayout::last(1)).unwrap();
        assert_eq!(nan.max_ulp_of_max, u64::MAX);
    }

    #[test]
    fn merge_keeps_the_worse_case() {
        let e = [1.0f32, 2.0];
        let a1 = [1.0f32, f32::from_bits(2.0f32.to_bits() + 1)];
        let a2 = [f32::from_bits(1.0f32.to_bits() + 5), 2.0];
        let mut c = compare(&e, &a1, ChannelLayout::last(2)).unwrap();
        c.merge(&compare(&e, &a2, ChannelLayout::last(2)).unwrap());
        assert_eq!(c.n, 4);
        assert_eq!(c.bitwise_equal, 2);
        assert_eq!(c.max_ulp, 5);
        assert_eq!(c.worst_channel, Some(0));
        assert_eq!(c.channels[1].max_ulp, 1);
    }

    #[test]
    fn tolerances_parse_and_print() {
        for s in [
            "exact",
            "ulp:0",
            "ulp:12",
            "ulp-of-max:64",
            "abs:1e-6",
            "rel:1e-4",
        ] {
            let t: Tolerance = s.parse().unwrap();
            assert_eq!(t.to_string().parse::<Tolerance>().unwrap(), t);
        }
        assert_eq!("ULP:3".parse::<Tolerance>().unwrap(), Tolerance::Ulp(3));
        assert_eq!("abs:0.5".parse::<Tolerance>().unwrap(), Tolerance::Abs(0.5));
        for bad in [
            "", "ulp", "ulp:-1", "ulp:1.5", "abs:-1", "abs:nan", "rel:-1", "rel:x",
        ] {
            assert!(bad.parse::<Tolerance>().is_err(), "{bad}");
        }
        let e = [1.0f32];
        let a = [f32::from_bits(1.0f32.to_bits() + 2)];
        let c = compare(&e, &a, ChannelLayout::last(1)).unwrap();
        assert!(!Tolerance::Ulp(1).accepts(&c));
        assert!(Tolerance::Ulp(2).accepts(&c));
        assert!(Tolerance::Abs(1e-6).accepts(&c));
        assert!(!Tolerance::Abs(1e-8).accepts(&c));
    }

    /// `accepts` on a whole comparison and `accepts_element` on each element
    /// must give the same verdict: verify and snapshots share one rule.
    #[test]
    fn element_and_array_verdicts_agree() {
        fn check<T: ParityFloat + std::fmt::Debug>(e: &[T], a: &[T]) {
            let c = compare(e, a, ChannelLayout::last(1)).unwrap();
            let scale = finite_scale(e.iter().copied());
            for t in [
                Tolerance::Exact,
                Tolerance::Ulp(0),
                Tolerance::Ulp(1),
                Tolerance::Ulp(3),
                Tolerance::UlpOfMax(1),
                Tolerance::UlpOfMax(2),
                Tolerance::Abs(0.0),
                Tolerance::Abs(1e-7),
                Tolerance::Abs(1e-3),
                Tolerance::Rel(0.0),
                Tolerance::Rel(1e-7),
                Tolerance::Rel(1e-2),
            ] {
                let elementwise = e
                    .iter()
                    .zip(a)
                    .all(|(&x, &y)| t.accepts_element(x, y, scale));
                assert_eq!(t.accepts(&c), elementwise, "{t} on {e:?} vs {a:?}");
            }
        }
        let up = |v: f32, n: u32| f32::from_bits(v.to_bits() + n);
        check(&[1.0f32, 2.0, -0.0], &[1.0, up(2.0, 1), 0.0]);
        check(&[4.0f32, 1e-6], &[4.0, 1.2e-6]);
        check(&[1.0f32, f32::NAN], &[1.0, f32::NAN]);
        check(&[1.0f32, f32::NAN], &[1.0, 1.0]);
        check(&[0.0f32, 3.0], &[1e-45, up(3.0, 3)]);
        check(&[f32::INFINITY], &[f32::MAX]);
        check(&[1.0f64, 1e300], &[1.0 + f64::EPSILON, 1e300]);
        check(
            &[f16::from_f32(1.0), f16::from_f32(-2.0)],
            &[
                f16::from_bits(f16::from_f32(1.0).to_bits() + 1),
                f16::from_f32(-2.0),
            ],
        );
        check(
            &[bf16::from_f32(0.5), bf16::from_f32(8.0)],
            &[
                bf16::from_f32(0.5),
                bf16::from_bits(bf16::from_f32(8.0).to_bits() + 2),
            ],
        );
    }
}
