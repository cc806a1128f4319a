//! `--fold`: a layer's inference as one per-channel affine map,
//! `y = x·scale + shift`, for consumers that only run inference.
//!
//! Per channel, in the layer's precision (`float32` for `float32`,
//! `float16` and `bfloat16` variables; `float64` for `float64` ones), each
//! operation rounded on its own and no fused multiply-add:
//!
//! ```text
//! r     = 1 / sqrt(moving_variance + epsilon)   (sqrt rounded, then the division)
//! scale = r · gamma                             (r when the layer has no gamma)
//! shift = beta − moving_mean · scale            (−(moving_mean · scale) without beta)
//! ```
//!
//! `r` is the scalar path of TF's `rsqrt` (docs/bn-arithmetic.md#rsqrt), which TF itself
//! uses for the last `C mod 8` channels. It is portable: the packet path (the
//! first `8·⌊C/8⌋` channels) starts from the CPU's `RSQRTPS`, whose bits
//! differ between Intel and AMD, and an exported file must not depend on the
//! machine that wrote it.
//!
//! # Bound against the unfolded layer
//!
//! For every element, with `u = 2⁻²⁴` (half an ulp of 1.0 in `float32`):
//!
//! ```text
//! |x·scale + shift − y_tf| ≤ 2⁻¹⁹ · (|x·scale| + |moving_mean·scale| + |beta|)
//! ```
//!
//! where `y_tf` is TF's inference output (formula F1 or F2, either `rsqrt`
//! path, any CPU vendor), both in `float32` with no subnormal involved.
//! Why, to first order in `u`: TF's `rsqrt` is within 6u of `1/√v` after its
//! Newton step (measured −3…+1 ulp; `RSQRTPS`'s ISA bound 1.5·2⁻¹² gives
//! ≈ 5.5u on any vendor) and ours within 2u, so the two `scale`s differ by
//! at most 10u·|scale|; F1, `(x − mean)·sf + beta`, is within
//! `3u·|x−mean|·|sf| + u·|beta|` of its exact value and the folded form
//! within `2u·|x·scale| + 3u·|mean·scale| + 2u·|beta|` of its own. The sum is
//! below `15u·|x·s| + 16u·|m·s| + 3u·|beta|`; `2⁻¹⁹ = 32u` leaves a factor 2
//! for the second-order terms.
//!
//! For formula F2 (Keras 3, tf_keras and TF1 non-fused layers) the folded
//! form *is* TF's arithmetic, `x·inv + (beta − mean·inv)`: it is bit-exact
//! wherever both use the same `rsqrt`, i.e. for every channel of a layer
//! with fewer than 8 channels and the last `C mod 8` of any layer.
//! `tests/it/export.rs` checks both claims on every fixture layer.

use crate::error::{Error, Result};

/// The bound factor of the module docs: `|Δy| ≤ FOLD_BOUND · (|x·scale| +
/// |moving_mean·scale| + |beta|)`.
pub const FOLD_BOUND: f64 = 1.0 / (1u64 << 19) as f64;

/// The folded parameters of one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Folded<T> {
    /// Per-channel multiplier.
    pub scale: Vec<T>,
    /// Per-channel offset.
    pub shift: Vec<T>,
}

/// The two precisions a layer is folded in.
trait FoldFloat:
    Copy
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
{
    const ONE: Self;
    fn sqrt(self) -> Self;
}

impl FoldFloat for f32 {
    const ONE: f32 = 1.0;
    fn sqrt(self) -> f32 {
        f32::sqrt(self)
    }
}

impl FoldFloat for f64 {
    const ONE: f64 = 1.0;
    fn sqrt(self) -> f64 {
        f64::sqrt(self)
    }
}

/// The arithmetic of the module docs, in `T`, each operation rounded on its
/// own.
fn fold<T: FoldFloat>(
    layer: &str,
    gamma: Option<&[T]>,
    beta: Option<&[T]>,
    moving_mean: &[T],
    moving_variance: &[T],
    epsilon: T,
) -> Result<Folded<T>> {
    check_lengths(
        layer,
        gamma.map(<[T]>::len),
        beta.map(<[T]>::len),
        moving_mean.len(),
        moving_variance.len(),
    )?;
    let mut scale = Vec::with_capacity(moving_mean.len());
    let mut shift = Vec::with_capacity(moving_mean.len());
    for c in 0..moving_mean.len() {
        let r = T::ONE / (moving_variance[c] + epsilon).sqrt();
        let s = match gamma {
            Some(g) => r * g[c],
            None => r,
        };
        let ms = moving_mean[c] * s;
        scale.push(s);
        shift.push(match beta {
            Some(b) => b[c] - ms,
            None => -ms,
        });
    }
    Ok(Folded { scale, shift })
}

/// Folds a `float32` layer (see the module docs for the exact arithmetic).
pub fn fold_f32(
    layer: &str,
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    moving_mean: &[f32],
    moving_variance: &[f32],
    epsilon: f32,
) -> Result<Folded<f32>> {
    fold(layer, gamma, beta, moving_mean, moving_variance, epsilon)
}

/// Folds a `float64` layer (same arithmetic in `float64`).
pub fn fold_f64(
    layer: &str,
    gamma: Option<&[f64]>,
    beta: Option<&[f64]>,
    moving_mean: &[f64],
    moving_variance: &[f64],
    epsilon: f64,
) -> Result<Folded<f64>> {
    fold(layer, gamma, beta, moving_mean, moving_variance, epsilon)
}

fn check_lengths(
    layer: &str,
    g: Option<usize>,
    b: Option<usize>,
    m: usize,
    v: usize,
) -> Result<()> {
    let ok = v == m && g.is_none_or(|g| g == m) && b.is_none_or(|b| b == m);
    if ok {
        Ok(())
    } else {
        Err(Error::LayerShapesDisagree {
            layer: layer.to_string(),
            what: format!(
                "cannot fold: gamma {g:?}, beta {b:?}, moving_mean {m}, moving_variance {v} elements"
            ),
        })
    }
}

/// The bound of the module docs for one element.
pub fn fold_bound(x: f32, scale: f32, moving_mean: f32, beta: f32) -> f64 {
    let (x, s, m, b) = (x as f64, scale as f64, moving_mean as f64, beta as f64);
    FOLD_BOUND * ((x * s).abs() + (m * s).abs() + b.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_the_f2_formula() {
        let f = fold_f32("bn", Some(&[2.0]), Some(&[0.5]), &[1.0], &[3.0], 1.0).unwrap();
        assert_eq!(f.scale, vec![1.0]);
        assert_eq!(f.shift, vec![-0.5]);
        let f = fold_f32("bn", None, None, &[1.0], &[3.0], 1.0).unwrap();
        assert_eq!(f.scale, vec![0.5]);
        assert_eq!(f.shift, vec![-0.5]);
        assert!(fold_f32("bn", Some(&[1.0, 2.0]), None, &[1.0], &[1.0], 1e-3).is_err());
    }
}
