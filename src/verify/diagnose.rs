//! Naming the likely cause of a failed comparison.
//!
//! Each known pattern is recognised from the outputs themselves, so that the
//! diagnosis does not depend on knowing what the native side did: tfbn
//! estimates, separately for TF's and the native outputs, the quantity the
//! pattern is about, and names the pattern where the two estimates disagree.
//!
//! | cause | estimated from | evidence |
//! |---|---|---|
//! | `epsilon` | `y`: `ε = 1/s² − var` with `s = (y − β)/((x − μ)·γ)` | the two ε differ |
//! | `momentum` | `moving_mean`: `w = (new − old)/(batch − old)` | the weights of the new value differ (`w` vs `1 − w`: the convention is flipped) |
//! | `bessel` | `moving_variance`: `k = ((new − old)/w + old)/var_biased` | one is `R/(R − 1)`, the other 1 |
//! | `layout` | `y` per channel: the residual of the best affine fit `y ≈ a·x + b` | TF's output is affine per channel, the native one is not |
//! | `backend` | the backend | oneDNN, and none of the above |
//! | `arithmetic` | the size of the error | a few ULPs, none of the above |
//!
//! Batch statistics (`μ`, `var_biased`) are computed in `f64` from the input;
//! every estimate is a median over channels, taken where it is well
//! conditioned.

use serde::Serialize;

use crate::bn::{BnApi, BnConfig, BnParams};
use crate::parity::ChannelLayout;
use crate::tf::Backend;

/// A likely cause of a mismatch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cause {
    /// `epsilon`, `momentum`, `bessel`, `layout`, `backend` or `arithmetic`.
    pub kind: &'static str,
    /// One sentence for the user.
    pub message: String,
}

/// What one side produced for one input, as the diagnosis needs it.
#[derive(Debug, Clone, Copy)]
pub struct SideOutputs<'a> {
    /// `y`.
    pub y: &'a [f32],
    /// `moving_mean` after a training step.
    pub moving_mean: Option<&'a [f32]>,
    /// `moving_variance` after a training step.
    pub moving_variance: Option<&'a [f32]>,
}

/// Everything about one run.
#[derive(Debug, Clone, Copy)]
pub struct Evidence<'a> {
    /// Layer configuration (both sides).
    pub config: &'a BnConfig,
    /// Layer variables before the step.
    pub params: &'a BnParams,
    /// Input.
    pub x: &'a [f32],
    /// Input shape.
    pub shape: &'a [usize],
    /// Resolved channel axis.
    pub axis: usize,
    /// Training (batch statistics) or inference.
    pub training: bool,
    /// TF's outputs.
    pub tf: SideOutputs<'a>,
    /// The native outputs.
    pub native: SideOutputs<'a>,
}

/// Per-channel index of a row-major tensor (channel `c`, `inner` values
/// after the channel axis per step).
#[derive(Debug, Clone, Copy)]
struct Channels {
    c: usize,
    inner: usize,
}

impl Channels {
    fn new(shape: &[usize], axis: usize) -> Channels {
        let l = ChannelLayout::of(shape, axis);
        Channels {
            c: l.channels.max(1),
            inner: l.inner.max(1),
        }
    }

    fn of(&self, i: usize) -> usize {
        (i / self.inner) % self.c
    }

    /// Per-channel sums of `f(i)` over every element `i` of a tensor of `n`
    /// elements, with the count per channel.
    fn sums(&self, n: usize, f: impl Fn(usize) -> f64) -> (Vec<f64>, Vec<usize>) {
        let mut sum = vec![0.0f64; self.c];
        let mut count = vec![0usize; self.c];
        for i in 0..n {
            sum[self.of(i)] += f(i);
            count[self.of(i)] += 1;
        }
        (sum, count)
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[v.len() / 2])
}

/// Per-channel mean and biased variance of `x` (row-major, `shape`, the
/// channels on `axis`) in `f64`, two passes, and the count of the first
/// channel.
pub(crate) fn channel_moments(
    x: &[f64],
    shape: &[usize],
    axis: usize,
) -> (Vec<f64>, Vec<f64>, usize) {
    let ch = Channels::new(shape, axis);
    let per = |(s, n): (Vec<f64>, Vec<usize>)| -> Vec<f64> {
        s.iter()
            .zip(&n)
            .map(|(s, &k)| s / k.max(1) as f64)
            .collect()
    };
    let (sum, n) = ch.sums(x.len(), |i| x[i]);
    let mean = per((sum, n.clone()));
    let var = per(ch.sums(x.len(), |i| (x[i] - mean[ch.of(i)]).powi(2)));
    (mean, var, n.first().copied().unwrap_or(0))
}

/// Per-channel mean and biased variance of the evidence's input.
fn batch_moments(ev: &Evidence) -> (Vec<f64>, Vec<f64>, usize) {
    let x: Vec<f64> = ev.x.iter().map(|&v| v as f64).collect();
    channel_moments(&x, ev.shape, ev.axis)
}

/// `f` applied to TF's outputs and to the native ones, when both give a
/// value.
fn both<T>(ev: &Evidence, f: impl Fn(&SideOutputs) -> Option<T>) -> Option<(T, T)> {
    Some((f(&ev.tf)?, f(&ev.native)?))
}

/// ε implied by `y`, from the element of each channel farthest from the mean.
fn epsilon_estimate(ev: &Evidence, y: &[f32], mean: &[f64], var: &[f64]) -> Option<f64> {
    let ch = Channels::new(ev.shape, ev.axis);
    let gamma = |c: usize| -> f64 {
        match (&ev.params.gamma, ev.config.scale) {
            (Some(g), true) => g[c] as f64,
            _ => 1.0,
        }
    };
    let beta = |c: usize| -> f64 {
        match (&ev.params.beta, ev.config.center) {
            (Some(b), true) => b[c] as f64,
            _ => 0.0,
        }
    };
    let mut best: Vec<Option<(f64, usize)>> = vec![None; ch.c];
    for (i, &v) in ev.x.iter().enumerate() {
        let c = ch.of(i);
        let d = (v as f64 - mean[c]).abs();
        if best[c].is_none_or(|(bd, _)| d > bd) {
            best[c] = Some((d, i));
        }
    }
    let mut est = Vec::new();
    for (c, b) in best.iter().enumerate() {
        let Some((d, i)) = *b else { continue };
        let g = gamma(c);
        if d == 0.0 || g == 0.0 || !var[c].is_finite() {
            continue;
        }
        // Well conditioned only where the deviation is far above rounding.
        if d < 1e-3 * (mean[c].abs() + var[c].sqrt()) {
            continue;
        }
        let s = (y[i] as f64 - beta(c)) / ((ev.x[i] as f64 - mean[c]) * g);
        if s > 0.0 {
            est.push(1.0 / (s * s) - var[c]);
        }
    }
    median(est)
}

/// Weight of the new value in a moving-average update of the mean.
fn new_value_weight(old: &[f32], new: &[f32], batch: &[f64]) -> Option<f64> {
    let mut est = Vec::new();
    for ((&o, &n), &b) in old.iter().zip(new).zip(batch) {
        let denom = b - o as f64;
        if denom.abs() > 1e-3 * (b.abs() + 1e-30) && denom.abs() > 1e-6 {
            est.push((n as f64 - o as f64) / denom);
        }
    }
    median(est)
}

/// The factor `k` in `new = old + w·(k·var − old)`.
fn variance_factor(old: &[f32], new: &[f32], var: &[f64], w: f64) -> Option<f64> {
    if w.abs() < 1e-6 {
        return None;
    }
    let mut est = Vec::new();
    for ((&o, &n), &v) in old.iter().zip(new).zip(var) {
        // Conditioned only where the batch term is far above the rounding
        // of the old value.
        if v > 1e-6 && v.is_finite() && v * w.abs() > 1e-4 * (o as f64).abs() {
            est.push(((n as f64 - o as f64) / w + o as f64) / v);
        }
    }
    median(est)
}

/// Largest relative residual of the per-channel affine fit `y ≈ a·x + b`.
fn affine_residual(ev: &Evidence, y: &[f32]) -> Option<f64> {
    let ch = Channels::new(ev.shape, ev.axis);
    let n = ev.x.len().min(y.len());
    let (x, y) = (|i: usize| ev.x[i] as f64, |i: usize| y[i] as f64);
    let (sx, count) = ch.sums(n, x);
    let (sy, _) = ch.sums(n, y);
    let (sxx, _) = ch.sums(n, |i| x(i) * x(i));
    let (sxy, _) = ch.sums(n, |i| x(i) * y(i));
    let (syy, _) = ch.sums(n, |i| y(i) * y(i));
    let mut worst: Option<f64> = None;
    for k in 0..ch.c {
        let m = count[k] as f64;
        if m < 3.0 {
            continue;
        }
        let vx = sxx[k] / m - (sx[k] / m).powi(2);
        let vy = syy[k] / m - (sy[k] / m).powi(2);
        let cxy = sxy[k] / m - sx[k] / m * sy[k] / m;
        // Only channels whose input and output really vary.
        if vx <= 1e-12 * (sxx[k] / m).max(1e-300) || vy <= 1e-12 * (syy[k] / m).max(1e-300) {
            continue;
        }
        let r2 = (cxy * cxy) / (vx * vy);
        let resid = (1.0 - r2).max(0.0).sqrt();
        worst = Some(worst.map_or(resid, |w: f64| w.max(resid)));
    }
    worst
}

/// The causes that fit the evidence (possibly none).
pub fn diagnose(ev: &Evidence) -> Vec<Cause> {
    let mut causes = Vec::new();
    let renorm = ev.config.renorm.is_some();
    // rows: the values per channel.
    let (bmean, bvar, rows) = batch_moments(ev);

    // Layout: TF's y is an affine function of x per channel; a native side
    // that normalises along another axis is not.
    if let Some((rt, rn)) = both(ev, |s| affine_residual(ev, s.y)) {
        if rt < 1e-4 && rn > 1e-2 {
            causes.push(Cause {
                kind: "layout",
                message: format!(
                    "the native output is not an affine function of the input per channel along axis {} \
                     (residual {rn:.2} against TF's {rt:.1e}): the native side normalises along another axis \
                     (NHWC vs NCHW, or a wrong axis)",
                    ev.axis
                ),
            });
            return causes;
        }
    }

    // Epsilon, from y (renorm rescales y with r and d: skipped there).
    if !renorm {
        let (mean, var): (Vec<f64>, Vec<f64>) = if ev.training {
            (bmean.clone(), bvar.clone())
        } else {
            (
                ev.params.moving_mean.iter().map(|&v| v as f64).collect(),
                ev.params
                    .moving_variance
                    .iter()
                    .map(|&v| v as f64)
                    .collect(),
            )
        };
        if let Some((et, en)) = both(ev, |s| epsilon_estimate(ev, s.y, &mean, &var)) {
            let scale = median(var.clone()).unwrap_or(1.0).abs();
            if (et - en).abs() > (0.05 * et.abs().max(en.abs())).max(1e-5 * (1.0 + scale)) {
                causes.push(Cause {
                    kind: "epsilon",
                    message: format!(
                        "TF's output implies epsilon ≈ {et:.3e}, the native output ≈ {en:.3e} \
                         (the layer's configuration says {:e}); check the epsilon each side uses",
                        ev.config.epsilon
                    ),
                });
            }
        }
    }

    // Momentum and Bessel, from the moving statistics of a training step.
    if ev.training && (ev.config.api != BnApi::Nn || ev.config.nn_update.is_some()) {
        let old_mean = &ev.params.moving_mean;
        let weights = both(ev, |s| {
            s.moving_mean
                .and_then(|m| new_value_weight(old_mean, m, &bmean))
        });
        if let Some((wt, wn)) = weights {
            if (wt - wn).abs() > 1e-3 {
                let flipped = (wn - (1.0 - wt)).abs() < 1e-3;
                let message = if flipped {
                    format!(
                        "TF's moving averages give the new batch value the weight {wt:.4} \
                         (momentum {:.4} in TF's convention, the weight of the old value), the native \
                         ones {wn:.4}: the momentum convention is flipped (PyTorch's momentum is the \
                         weight of the new value: momentum_tf = 1 − momentum_torch)",
                        1.0 - wt
                    )
                } else {
                    format!(
                        "TF's moving averages use momentum {:.4} (TF convention), the native ones {:.4}",
                        1.0 - wt,
                        1.0 - wn
                    )
                };
                causes.push(Cause {
                    kind: "momentum",
                    message,
                });
            }
        }
        if !renorm {
            let old_var = &ev.params.moving_variance;
            // Each side's factor under its own weight of the new value.
            let factors = weights.and_then(|(wt, wn)| {
                Some((
                    variance_factor(old_var, ev.tf.moving_variance?, &bvar, wt)?,
                    variance_factor(old_var, ev.native.moving_variance?, &bvar, wn)?,
                ))
            });
            if let Some((kt, kn)) = factors {
                let bessel = rows as f64 / (rows.max(2) - 1) as f64;
                let name = |k: f64| {
                    if (k - bessel).abs() < (k - 1.0).abs() {
                        "Bessel-corrected (×R/(R−1))"
                    } else {
                        "biased"
                    }
                };
                if rows > 1 && (kt - kn).abs() > (bessel - 1.0) / 2.0 {
                    causes.push(Cause {
                        kind: "bessel",
                        message: format!(
                            "TF's moving_variance averages the {} batch variance (factor {kt:.4}), the native \
                             one the {} (factor {kn:.4}; R = {rows}): the fused kernel and PyTorch keep the \
                             Bessel-corrected variance, Keras 3 and the non-fused path the biased one",
                            name(kt),
                            name(kn)
                        ),
                    });
                }
            }
        }
    }
    causes
}

/// The causes to report when the diagnosis found nothing specific.
pub fn fallback(backend: Backend, max_ulp: u64, max_rel: f64) -> Option<Cause> {
    if backend == Backend::OneDnn {
        return Some(Cause {
            kind: "backend",
            message: format!(
                "oneDNN (TF_ENABLE_ONEDNN_OPTS=1) computes batch norm with other formulas and, in training, \
                 thread-dependent sums (max relative error {max_rel:.2e}); the Eigen backend \
                 (TF_ENABLE_ONEDNN_OPTS=0) gives bit-exact parity, or widen the tolerance"
            ),
        });
    }
    if max_ulp <= 64 {
        return Some(Cause {
            kind: "arithmetic",
            message: format!(
                "last-bit differences (at most {max_ulp} ULP): summation order, rsqrt, fused multiply-add or \
                 flush-to-zero differ from TF's Eigen kernels"
            ),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev<'a>(
        cfg: &'a BnConfig,
        p: &'a BnParams,
        x: &'a [f32],
        shape: &'a [usize],
        tf: SideOutputs<'a>,
        native: SideOutputs<'a>,
    ) -> Evidence<'a> {
        Evidence {
            config: cfg,
            params: p,
            x,
            shape,
            axis: shape.len() - 1,
            training: true,
            tf,
            native,
        }
    }

    /// A textbook training step in f64.
    fn step(
        x: &[f32],
        c: usize,
        eps: f64,
        w_new: f64,
        bessel: bool,
        p: &BnParams,
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let rows = x.len() / c;
        let mut y = vec![0.0f32; x.len()];
        let mut mm = Vec::new();
        let mut mv = Vec::new();
        for k in 0..c {
            let vals: Vec<f64> = (0..rows).map(|r| x[r * c + k] as f64).collect();
            let m = vals.iter().sum::<f64>() / rows as f64;
            let v = vals.iter().map(|a| (a - m).powi(2)).sum::<f64>() / rows as f64;
            for r in 0..rows {
                y[r * c + k] = ((vals[r] - m) / (v + eps).sqrt()) as f32;
            }
            let vv = if bessel {
                v * rows as f64 / (rows - 1) as f64
            } else {
                v
            };
            mm.push((p.moving_mean[k] as f64 * (1.0 - w_new) + m * w_new) as f32);
            mv.push((p.moving_variance[k] as f64 * (1.0 - w_new) + vv * w_new) as f32);
        }
        (y, mm, mv)
    }

    /// The kinds [`diagnose`] names for TF's outputs `tf` against `native`.
    fn kinds(
        cfg: &BnConfig,
        p: &BnParams,
        x: &[f32],
        shape: &[usize],
        tf: SideOutputs,
        native: SideOutputs,
    ) -> Vec<Cause> {
        diagnose(&ev(cfg, p, x, shape, tf, native))
    }

    fn names(causes: &[Cause]) -> Vec<&'static str> {
        causes.iter().map(|c| c.kind).collect()
    }

    #[test]
    fn recognises_epsilon_momentum_and_bessel() {
        let c = 4;
        let shape = [16, c];
        let x = super::super::inputs::generate(
            super::super::inputs::InputCase::Normal,
            &shape,
            1,
            3,
            0,
        );
        let p = BnParams {
            gamma: None,
            beta: None,
            moving_mean: vec![0.0; c],
            moving_variance: vec![1.0; c],
            renorm: None,
        };
        let cfg = BnConfig {
            scale: false,
            center: false,
            ..Default::default()
        };
        let side = |(y, m, v): &(Vec<f32>, Vec<f32>, Vec<f32>)| -> SideOutputs<'static> {
            let leak = |v: &Vec<f32>| -> &'static [f32] { Box::leak(v.clone().into_boxed_slice()) };
            SideOutputs {
                y: leak(y),
                moving_mean: Some(leak(m)),
                moving_variance: Some(leak(v)),
            }
        };
        let good = step(&x, c, 1e-3, 0.01, false, &p);
        let tf = side(&good);
        let check =
            |native: (Vec<f32>, Vec<f32>, Vec<f32>)| kinds(&cfg, &p, &x, &shape, tf, side(&native));

        // Each fault alone: (ε, weight of the new value, Bessel) → its name.
        let (y_eps, _, _) = step(&x, c, 1e-1, 0.01, false, &p);
        let got = check((y_eps, good.1.clone(), good.2.clone()));
        assert_eq!(names(&got), ["epsilon"], "{got:?}");

        let (_, mm, mv) = step(&x, c, 1e-3, 0.99, false, &p);
        let got = check((good.0.clone(), mm, mv));
        assert_eq!(names(&got), ["momentum"], "{got:?}");
        assert!(got[0].message.contains("flipped"));

        let (_, mm, mv) = step(&x, c, 1e-3, 0.01, true, &p);
        let got = check((good.0.clone(), mm, mv));
        assert_eq!(names(&got), ["bessel"], "{got:?}");

        // Identical outputs: nothing to name.
        assert!(check(good.clone()).is_empty());

        // Normalised along the wrong axis.
        let mut yt = good.0.clone();
        yt.reverse();
        let got = check((yt, good.1.clone(), good.2.clone()));
        assert_eq!(got[0].kind, "layout", "{got:?}");
    }

    #[test]
    fn channel_moments_are_two_pass_biased() {
        // NCHW-like [2, 2, 2]: channel 0 = {1, 3, 5, 7}, channel 1 = {2, 2, 2, 2}.
        let x = [1.0, 3.0, 2.0, 2.0, 5.0, 7.0, 2.0, 2.0];
        let (m, v, n) = channel_moments(&x, &[2, 2, 2], 1);
        assert_eq!((m, v, n), (vec![4.0, 2.0], vec![5.0, 0.0], 4));
    }
}
