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

/// Per-channel views of a row-major tensor.
struct Channels {
    c: usize,
    inner: usize,
}

impl Channels {
    fn new(shape: &[usize], axis: usize) -> Channels {
        Channels {
            c: shape[axis].max(1),
            inner: shape[axis + 1..].iter().product::<usize>().max(1),
        }
    }

    fn of(&self, i: usize) -> usize {
        (i / self.inner) % self.c
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

/// Per-channel mean and biased variance in `f64`.
fn batch_moments(ev: &Evidence) -> (Vec<f64>, Vec<f64>, usize) {
    let ch = Channels::new(ev.shape, ev.axis);
    let mut sum = vec![0.0f64; ch.c];
    let mut n = vec![0usize; ch.c];
    for (i, &v) in ev.x.iter().enumerate() {
        sum[ch.of(i)] += v as f64;
        n[ch.of(i)] += 1;
    }
    let mean: Vec<f64> = sum
        .iter()
        .zip(&n)
        .map(|(s, &k)| s / k.max(1) as f64)
        .collect();
    let mut sq = vec![0.0f64; ch.c];
    for (i, &v) in ev.x.iter().enumerate() {
        let d = v as f64 - mean[ch.of(i)];
        sq[ch.of(i)] += d * d;
    }
    let var = sq
        .iter()
        .zip(&n)
        .map(|(s, &k)| s / k.max(1) as f64)
        .collect();
    (mean, var, n.first().copied().unwrap_or(0))
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
    let c = ch.c;
    let (mut sx, mut sy, mut sxx, mut sxy, mut syy) = (
        vec![0.0f64; c],
        vec![0.0f64; c],
        vec![0.0f64; c],
        vec![0.0f64; c],
        vec![0.0f64; c],
    );
    let mut n = vec![0.0f64; c];
    for (i, (&xv, &yv)) in ev.x.iter().zip(y).enumerate() {
        let k = ch.of(i);
        let (x, y) = (xv as f64, yv as f64);
        sx[k] += x;
        sy[k] += y;
        sxx[k] += x * x;
        sxy[k] += x * y;
        syy[k] += y * y;
        n[k] += 1.0;
    }
    let mut worst: Option<f64> = None;
    for k in 0..c {
        if n[k] < 3.0 {
            continue;
        }
        let vx = sxx[k] / n[k] - (sx[k] / n[k]).powi(2);
        let vy = syy[k] / n[k] - (sy[k] / n[k]).powi(2);
        let cxy = sxy[k] / n[k] - sx[k] / n[k] * sy[k] / n[k];
        // Only channels whose input and output really vary.
        if vx <= 1e-12 * (sxx[k] / n[k]).max(1e-300) || vy <= 1e-12 * (syy[k] / n[k]).max(1e-300) {
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
    let (bmean, bvar, _) = batch_moments(ev);
    let rows = {
        let c = ev.shape[ev.axis].max(1);
        ev.x.len() / c
    };

    // Layout: TF's y is an affine function of x per channel; a native side
    // that normalises along another axis is not.
    if let (Some(rt), Some(rn)) = (
        affine_residual(ev, ev.tf.y),
        affine_residual(ev, ev.native.y),
    ) {
        if rt < 1e-4 && rn > 1e-2 {
            causes.push(Cause {
                kind: "layout",
                message: format!(
                    "the native output is not an affine function of the input per channel along axis {} \
                     (residual {rn:.2} against TF's {rt:.1e}): the native side normalises along another axis \
                     (NHWC vs NCHW, or a wrong --axis)",
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
        if let (Some(et), Some(en)) = (
            epsilon_estimate(ev, ev.tf.y, &mean, &var),
            epsilon_estimate(ev, ev.native.y, &mean, &var),
        ) {
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
    if ev.training && ev.config.api != BnApi::Nn {
        let old_mean = &ev.params.moving_mean;
        let wt = ev
            .tf
            .moving_mean
            .and_then(|m| new_value_weight(old_mean, m, &bmean));
        let wn = ev
            .native
            .moving_mean
            .and_then(|m| new_value_weight(old_mean, m, &bmean));
        if let (Some(wt), Some(wn)) = (wt, wn) {
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
            let kt = match (ev.tf.moving_variance, wt) {
                (Some(v), Some(w)) => variance_factor(old_var, v, &bvar, w),
                _ => None,
            };
            let kn = match (ev.native.moving_variance, wn) {
                (Some(v), Some(w)) => variance_factor(old_var, v, &bvar, w),
                _ => None,
            };
            if let (Some(kt), Some(kn)) = (kt, kn) {
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
                 thread-dependent sums (max relative error {max_rel:.2e}); use --tf-backend eigen for \
                 bit-exact parity, or a wider --tolerance"
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
        let (y, mm, mv) = step(&x, c, 1e-3, 0.01, false, &p);
        let side = |y: &'static [f32], m: &'static [f32], v: &'static [f32]| SideOutputs {
            y,
            moving_mean: Some(m),
            moving_variance: Some(v),
        };
        let leak = |v: Vec<f32>| -> &'static [f32] { Box::leak(v.into_boxed_slice()) };
        let tf = side(leak(y.clone()), leak(mm.clone()), leak(mv.clone()));

        let (y2, _, _) = step(&x, c, 1e-1, 0.01, false, &p);
        let got = diagnose(&ev(
            &cfg,
            &p,
            &x,
            &shape,
            tf,
            side(leak(y2), leak(mm.clone()), leak(mv.clone())),
        ));
        assert_eq!(
            got.iter().map(|c| c.kind).collect::<Vec<_>>(),
            ["epsilon"],
            "{got:?}"
        );

        let (_, mm3, mv3) = step(&x, c, 1e-3, 0.99, false, &p);
        let got = diagnose(&ev(
            &cfg,
            &p,
            &x,
            &shape,
            tf,
            side(leak(y.clone()), leak(mm3), leak(mv3)),
        ));
        assert_eq!(
            got.iter().map(|c| c.kind).collect::<Vec<_>>(),
            ["momentum"],
            "{got:?}"
        );
        assert!(got[0].message.contains("flipped"));

        let (_, mm4, mv4) = step(&x, c, 1e-3, 0.01, true, &p);
        let got = diagnose(&ev(
            &cfg,
            &p,
            &x,
            &shape,
            tf,
            side(leak(y.clone()), leak(mm4), leak(mv4)),
        ));
        assert_eq!(
            got.iter().map(|c| c.kind).collect::<Vec<_>>(),
            ["bessel"],
            "{got:?}"
        );

        // Identical outputs: nothing to name.
        assert!(diagnose(&ev(&cfg, &p, &x, &shape, tf, tf)).is_empty());

        // Normalised along the wrong axis.
        let mut yt = y.clone();
        yt.reverse();
        let got = diagnose(&ev(
            &cfg,
            &p,
            &x,
            &shape,
            tf,
            side(leak(yt), leak(mm), leak(mv)),
        ));
        assert_eq!(got[0].kind, "layout", "{got:?}");
    }
}
