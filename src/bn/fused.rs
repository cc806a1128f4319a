//! Eigen's `FusedBatchNormV3` CPU kernel (docs/bn-arithmetic.md#fused-kernel).
//!
//! The kernel sees its input as `R × C` rows (NCHW and NCDHW are transposed
//! to channels-last first, which moves values but not bits; 5-D is reshaped
//! to 4-D). Here the input is an `(a, c, b)` view — `a·b = R` rows in
//! `(a, b)` order — so NHWC is `b = 1` and NCHW is `a = N, b = H·W`; no
//! transpose is materialized. Statistics are `float32` whatever the input
//! type.

use super::ftz::TfFloat;
use super::kernels::{self, Affine, Form, SumMap};
use super::par;
use super::rsqrt::rsqrt_tf_f32;

/// The `(a, c, b)` view of a tensor around its channel axis: `a` = product
/// of the dimensions before it, `c` = channels, `b` = product after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Product of the dimensions before the channel axis.
    pub a: usize,
    /// Channels.
    pub c: usize,
    /// Product of the dimensions after the channel axis.
    pub b: usize,
}

impl Layout {
    /// The view of `shape` around `axis`.
    pub(crate) fn new(shape: &[usize], axis: usize) -> Layout {
        Layout {
            a: shape[..axis].iter().product(),
            c: shape[axis],
            b: shape[axis + 1..].iter().product(),
        }
    }

    /// Number of elements.
    pub(crate) fn len(&self) -> usize {
        self.a * self.c * self.b
    }

    /// Values per channel (`R`).
    pub(crate) fn rows(&self) -> usize {
        self.a * self.b
    }
}

/// F1's per-channel scale: `rsqrtTF(var + eps) · gamma` over the whole
/// channel vector (the packet/tail split follows the channel index).
pub(crate) fn scaling_factor(var: &[f32], gamma: &[f32], eps: f32) -> Vec<f32> {
    let v: Vec<f32> = var.iter().map(|&v| v.add(eps)).collect();
    rsqrt_tf_f32(&v)
        .into_iter()
        .zip(gamma)
        .map(|(r, &g)| r.mul(g))
        .collect()
}

/// FusedBatchNormV3 with `is_training = false`: `y = (x − mean)·sf + offset`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn inference(
    x: &[f32],
    l: Layout,
    scale: &[f32],
    offset: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
    y: &mut [f32],
) {
    let prm = Affine {
        p: mean.to_vec(),
        q: scaling_factor(var, scale, eps),
        r: offset.to_vec(),
    };
    kernels::affine_par(Form::F1, &prm, x, y, (l.c, l.b), false);
}

/// The outputs of FusedBatchNormV3 with `is_training = true`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TrainOut {
    /// Output 1: the new running mean (`batch_mean`).
    pub batch_mean: Vec<f32>,
    /// Output 2: the new running variance (`batch_variance`, Bessel-corrected).
    pub batch_variance: Vec<f32>,
    /// `reserve_space_1`: the batch mean.
    pub saved_mean: Vec<f32>,
    /// `reserve_space_2`: the biased batch variance.
    pub saved_variance: Vec<f32>,
}

/// Channels-first channels summed side by side (see [`batch_stats`]).
const GROUP: usize = 4;

/// The kernel's per-channel mean and biased variance:
/// `invR = f32(1/f32(R))`, `mean = sumP(x)·invR`, `var = sumP((x − mean)²)·invR`.
pub(crate) fn batch_stats(x: &[f32], l: Layout) -> (Vec<f32>, Vec<f32>) {
    let rows = l.rows();
    let inv_r = 1.0f32.div(f32::from_count(rows));
    let full = l.c / 8 * 8;
    if l.b == 1 {
        // Channels-last: stream whole rows twice.
        let sums = kernels::rows_sums_all(x, rows, l.c, SumMap::Identity);
        let mean: Vec<f32> = sums.iter().map(|s| s.mul(inv_r)).collect();
        let sums = kernels::rows_sums_all(x, rows, l.c, SumMap::SqDiff(&mean));
        let var = sums.iter().map(|s| s.mul(inv_r)).collect();
        (mean, var)
    } else {
        // Channels-first: four channels' runs at a time (four independent
        // addition chains; one alone is bound by the adds' latency), both
        // passes while their data is still in cache; threads split channels.
        let dims = (l.a, l.c, l.b);
        let threads = par::threads_for(l.len()).min(l.c.max(1));
        let pairs = par::map_ranges(l.c, threads, GROUP, |cr| {
            let mut out = Vec::with_capacity(cr.len());
            let mut ch = cr.start;
            while ch < cr.end {
                if ch + GROUP <= cr.end.min(full) {
                    let s = kernels::runs_sums::<GROUP>(x, dims, ch, true, None);
                    let m = s.map(|s| s.mul(inv_r));
                    let s2 = kernels::runs_sums::<GROUP>(x, dims, ch, true, Some(m));
                    out.extend(m.into_iter().zip(s2.map(|s| s.mul(inv_r))));
                    ch += GROUP;
                } else {
                    let s = kernels::runs_sum(x, dims, ch, ch < full, None);
                    let m = s.mul(inv_r);
                    let s2 = kernels::runs_sum(x, dims, ch, ch < full, Some(m));
                    out.push((m, s2.mul(inv_r)));
                    ch += 1;
                }
            }
            out
        });
        pairs.into_iter().unzip()
    }
}

/// FusedBatchNormV3 with `is_training = true` and the given
/// `exponential_avg_factor`. Writes `y` and returns the statistics.
#[allow(clippy::too_many_arguments)]
pub(crate) fn training(
    x: &[f32],
    l: Layout,
    scale: &[f32],
    offset: &[f32],
    old_mean: &[f32],
    old_var: &[f32],
    eps: f32,
    factor: f32,
    y: &mut [f32],
) -> TrainOut {
    let c = l.c;
    if l.len() == 0 {
        // The kernel returns early and fills the statistics with NaN.
        let nan = vec![f32::NAN; c];
        return TrainOut {
            batch_mean: nan.clone(),
            batch_variance: nan.clone(),
            saved_mean: nan.clone(),
            saved_variance: nan,
        };
    }
    let rows = l.rows();
    let (mean, var) = if l.b == 1 && kernels::rows_threads(x.len(), c) == 1 {
        // One thread streams the rows; another faults in y meanwhile.
        par::prefault_while(y, || batch_stats(x, l))
    } else {
        batch_stats(x, l)
    };
    let prm = Affine {
        p: mean.clone(),
        q: scaling_factor(&var, scale, eps),
        r: offset.to_vec(),
    };
    // The statistics passes ran forward; walking y backwards reuses the
    // tail of x that is still in the last-level cache.
    kernels::affine_par(Form::F1, &prm, x, y, (l.c, l.b), true);
    let adj = f32::from_count(rows).div(f32::from_count(rows.saturating_sub(1).max(1)));
    let (batch_mean, batch_variance) = if factor == 1.0 {
        (mean.clone(), var.iter().map(|v| v.mul(adj)).collect())
    } else {
        let g = 1.0f32.sub(factor);
        let k = factor.mul(adj);
        (
            (0..c)
                .map(|i| g.mul(old_mean[i]).add(factor.mul(mean[i])))
                .collect(),
            (0..c)
                .map(|i| g.mul(old_var[i]).add(k.mul(var[i])))
                .collect(),
        )
    };
    TrainOut {
        batch_mean,
        batch_variance,
        saved_mean: mean,
        saved_variance: var,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bn::reduce::sum_p;

    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 6.0 - 2.0
            })
            .collect()
    }

    /// Straight-line reference of docs/bn-arithmetic.md#fused-kernel with
    /// the scalar FTZ operations.
    fn reference(
        x: &[f32],
        l: Layout,
        gamma: &[f32],
        beta: &[f32],
        eps: f32,
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let rows = l.rows();
        let get = |r: usize, ch: usize| x[((r / l.b) * l.c + ch) * l.b + r % l.b];
        let inv_r = 1.0f32.div(rows as f32);
        let full = l.c / 8 * 8;
        let mean: Vec<f32> = (0..l.c)
            .map(|ch| sum_p(rows, ch < full, |r| get(r, ch).daz()).mul(inv_r))
            .collect();
        let var: Vec<f32> = (0..l.c)
            .map(|ch| {
                sum_p(rows, ch < full, |r| {
                    let d = get(r, ch).sub(mean[ch]);
                    d.mul(d)
                })
                .mul(inv_r)
            })
            .collect();
        let sf = scaling_factor(&var, gamma, eps);
        let mut y = vec![0.0; x.len()];
        for (i, v) in y.iter_mut().enumerate() {
            let ch = (i / l.b) % l.c;
            *v = x[i].sub(mean[ch]).mul(sf[ch]).add(beta[ch]);
        }
        (y, mean, var)
    }

    #[test]
    fn training_matches_reference_nhwc_and_nchw() {
        for &(a, c, b) in &[
            (3, 5, 1),
            (20, 13, 1),
            (4, 16, 1),
            (2, 3, 9),
            (4, 9, 12),
            (1, 8, 1),
            (1, 3, 1),
        ] {
            let l = Layout { a, c, b };
            let x = data(l.len(), (a * 131 + c * 7 + b) as u64);
            let gamma: Vec<f32> = (0..c).map(|i| 0.5 + i as f32 * 0.1).collect();
            let beta: Vec<f32> = (0..c).map(|i| i as f32 * -0.05).collect();
            let mut y = vec![0.0; l.len()];
            let out = training(
                &x,
                l,
                &gamma,
                &beta,
                &vec![0.0; c],
                &vec![1.0; c],
                1e-3,
                1.0,
                &mut y,
            );
            let (ry, rm, rv) = reference(&x, l, &gamma, &beta, 1e-3);
            assert_eq!(y, ry, "{a} {c} {b}");
            assert_eq!(out.saved_mean, rm);
            assert_eq!(out.saved_variance, rv);
            let rows = a * b;
            let adj = (rows as f32) / (rows.saturating_sub(1).max(1) as f32);
            let want: Vec<f32> = rv.iter().map(|v| v * adj).collect();
            assert_eq!(out.batch_variance, want);
        }
    }

    #[test]
    fn single_row_gives_zero_variance_and_empty_gives_nan() {
        let l = Layout { a: 1, c: 4, b: 1 };
        let x = vec![1.0, -2.0, 3.0, 4.0];
        let mut y = vec![0.0; 4];
        let out = training(
            &x, l, &[1.0; 4], &[0.0; 4], &[0.0; 4], &[1.0; 4], 1e-3, 1.0, &mut y,
        );
        assert_eq!(out.batch_variance, vec![0.0; 4]);
        assert_eq!(out.batch_mean, x);
        let l = Layout { a: 0, c: 4, b: 1 };
        let out = training(
            &[],
            l,
            &[1.0; 4],
            &[0.0; 4],
            &[0.0; 4],
            &[1.0; 4],
            1e-3,
            1.0,
            &mut [],
        );
        assert!(out.batch_mean.iter().all(|v| v.is_nan()));
        assert!(out.batch_variance.iter().all(|v| v.is_nan()));
    }

    #[test]
    fn exponential_average_factor() {
        let l = Layout { a: 10, c: 3, b: 1 };
        let x = data(30, 9);
        let mut y = vec![0.0; 30];
        let f = 0.01f32;
        let old_m = [0.5f32, -1.0, 2.0];
        let old_v = [1.5f32, 0.25, 3.0];
        let out = training(&x, l, &[1.0; 3], &[0.0; 3], &old_m, &old_v, 1e-3, f, &mut y);
        let adj = 10.0f32 / 9.0;
        for ch in 0..3 {
            let g = 1.0f32 - f;
            assert_eq!(out.batch_mean[ch], g * old_m[ch] + f * out.saved_mean[ch]);
            assert_eq!(
                out.batch_variance[ch],
                g * old_v[ch] + (f * adj) * out.saved_variance[ch]
            );
        }
    }
}
