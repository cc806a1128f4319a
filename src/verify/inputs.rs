//! Seeded inputs for `tfbn verify`: ordinary data and the cases where
//! batch-norm implementations part ways.
//!
//! Every case is a function of the seed, the case, the shape and the channel
//! axis only, through a fixed generator (SplitMix64 and Box–Muller written
//! out here), so a report can be reproduced on any machine.

use serde::Serialize;

/// One kind of input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputCase {
    /// Normal data with a different mean and scale per channel:
    /// `N(0.5, 2)·s_c + o_c`, `s_c` from 0.5 to 3, `o_c` from −1.5 to 2.5
    /// (the fixture generator's recipe).
    Normal,
    /// A large offset per channel (`10⁴·(1 + c/C)`) on unit noise: the mean
    /// and variance cancel catastrophically, so summation order shows.
    LargeOffset,
    /// Channels that barely vary: even channels are constant (`0.5 + c`,
    /// batch variance 0, so the output is `β` and `rsqrt(ε)` is exercised),
    /// odd channels vary by `10⁻⁶` relative.
    NearConstant,
    /// Tiny magnitudes: channels with `c mod 3 = 0` are `N(0,1)·10⁻²⁰` (normal
    /// values whose squares are subnormal), `1` are `N(0,1)·10⁻³⁹`
    /// (subnormal inputs), `2` are `N(0,1)·10⁻³`. TF runs with
    /// flush-to-zero and denormals-are-zero
    /// (docs/bn-arithmetic.md#floating-point-environment).
    Tiny,
}

impl InputCase {
    /// Every case, in report order.
    pub const ALL: [InputCase; 4] = [
        InputCase::Normal,
        InputCase::LargeOffset,
        InputCase::NearConstant,
        InputCase::Tiny,
    ];

    /// `normal`, `large_offset`, `near_constant`, `tiny`.
    pub fn label(self) -> &'static str {
        match self {
            InputCase::Normal => "normal",
            InputCase::LargeOffset => "large_offset",
            InputCase::NearConstant => "near_constant",
            InputCase::Tiny => "tiny",
        }
    }

    /// Parses a label (`-` accepted for `_`).
    fn from_label(s: &str) -> Option<InputCase> {
        let s = s.trim().to_ascii_lowercase().replace('-', "_");
        InputCase::ALL.into_iter().find(|c| c.label() == s)
    }
}

crate::label::display_label!(InputCase);

/// SplitMix64 (Steele, Lea & Flood 2014): small, fast, and fixed forever.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `(0, 1]`.
    fn uniform_open0(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) * (1.0 / (1u64 << 53) as f64)
    }

    /// A standard normal value (Box–Muller, one of the pair).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform_open0();
        let u2 = self.uniform_open0();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// Mixes the seed with the case, so that cases are independent streams.
fn case_seed(seed: u64, case: InputCase, salt: u64) -> u64 {
    let mut s = SplitMix64::new(seed ^ (case as u64).wrapping_mul(0xA076_1D64_78BD_642F) ^ salt);
    s.next_u64()
}

fn lerp(lo: f64, hi: f64, c: usize, channels: usize) -> f64 {
    if channels <= 1 {
        lo
    } else {
        lo + (hi - lo) * c as f64 / (channels - 1) as f64
    }
}

/// The input of `case` for a tensor of `shape` with channels on `axis`
/// (row-major), as `float32`. `salt` separates layers that share a seed
/// (tfbn passes a hash of the layer name).
pub fn generate(case: InputCase, shape: &[usize], axis: usize, seed: u64, salt: u64) -> Vec<f32> {
    generate_f64(case, shape, axis, seed, salt)
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

/// [`generate`] before the rounding to `float32`: the recipe's `f64`
/// values, to be rounded once to the input type (`float32` gives exactly
/// [`generate`]'s values; `float64` keeps them).
pub fn generate_f64(
    case: InputCase,
    shape: &[usize],
    axis: usize,
    seed: u64,
    salt: u64,
) -> Vec<f64> {
    let n: usize = shape.iter().product();
    let channels = shape.get(axis).copied().unwrap_or(1).max(1);
    let inner: usize = shape.get(axis + 1..).map_or(1, |s| s.iter().product());
    let mut rng = SplitMix64::new(case_seed(seed, case, salt));
    (0..n)
        .map(|i| {
            let c = (i / inner.max(1)) % channels;
            let z = rng.normal();
            match case {
                InputCase::Normal => {
                    (0.5 + 2.0 * z) * lerp(0.5, 3.0, c, channels) + lerp(-1.5, 2.5, c, channels)
                }
                InputCase::LargeOffset => 1.0e4 * (1.0 + c as f64 / channels as f64) + z,
                InputCase::NearConstant => {
                    let k = 0.5 + c as f64;
                    if c % 2 == 0 {
                        k
                    } else {
                        k * (1.0 + 1.0e-6 * z)
                    }
                }
                InputCase::Tiny => match c % 3 {
                    0 => z * 1.0e-20,
                    1 => z * 1.0e-39,
                    _ => z * 1.0e-3,
                },
            }
        })
        .collect()
}

/// A stable 64-bit hash of a layer name (FNV-1a), the `salt` of
/// [`generate`].
pub fn name_salt(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name.as_bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

crate::label::from_label!(InputCase, "input case");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_fixed() {
        // SplitMix64's published first output for seed 0.
        assert_eq!(SplitMix64::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
        let a = generate(InputCase::Normal, &[2, 3, 4], 2, 7, 1);
        let b = generate(InputCase::Normal, &[2, 3, 4], 2, 7, 1);
        assert_eq!(a, b);
        assert_ne!(a, generate(InputCase::Normal, &[2, 3, 4], 2, 8, 1));
        assert_ne!(a, generate(InputCase::Normal, &[2, 3, 4], 2, 7, 2));
    }

    #[test]
    fn cases_have_their_shape() {
        let shape = [4, 6, 2, 2];
        let x = generate(InputCase::NearConstant, &shape, 1, 0, 0);
        // Channel 0 (even) is constant along NCHW's channel axis 1.
        let ch0: Vec<f32> = (0..x.len())
            .filter(|i| (i / 4) % 6 == 0)
            .map(|i| x[i])
            .collect();
        assert!(ch0.iter().all(|&v| v == 0.5));
        let tiny = generate(InputCase::Tiny, &[8, 3], 1, 0, 0);
        assert!(tiny.iter().skip(1).step_by(3).any(|v| v.is_subnormal()));
        let big = generate(InputCase::LargeOffset, &[8, 3], 1, 0, 0);
        assert!(big.iter().all(|&v| v > 9.0e3));
        for c in InputCase::ALL {
            assert_eq!(InputCase::from_label(c.label()), Some(c));
        }
        assert_eq!(
            InputCase::from_label("large-offset"),
            Some(InputCase::LargeOffset)
        );
    }
}
