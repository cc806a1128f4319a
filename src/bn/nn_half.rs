//! `tf.nn.moments` + `tf.nn.batch_normalization`
//! ([`BnApi::Nn`](super::BnApi::Nn)) on `float16` and `bfloat16` inputs, as
//! TF 2.21 computes them on a CPU.
//!
//! * `tf.nn.moments` (python/ops/nn_impl.py) casts a `float16` input to
//!   `float32`, takes both moments in `float32` and rounds them back to
//!   `float16`. It does not cast `bfloat16`; but TF's `bfloat16` `Mean`
//!   kernel (core/kernels/reduction_ops.h, `CASTING_SPECIALIZATION(bfloat16,
//!   float)`) sums and divides in `float32` and rounds once at the end, while
//!   `SquaredDifference` runs in `bfloat16`, rounding `x − mean` and its
//!   square.
//! * `tf.nn.batch_normalization` then runs in the input's type. Eigen does
//!   16-bit arithmetic by widening to `float32`, computing one operation (with
//!   FTZ/DAZ) and rounding back to nearest-even, so every operation rounds.
//!   `Rsqrt` widens the first `8·⌊C/8⌋` channels to the `float32` packet
//!   routine (`RSQRTPS` + one Newton step) and rounds once; the remaining
//!   channels take Eigen's generic scalar `T(1) / sqrt(x)`, which rounds the
//!   square root to 16 bits before dividing.
//!
//! TF requires every operand of these ops to have the input's type, so the
//! `float32` parameters (`gamma`, `beta` and, for inference, the mean and
//! variance) are rounded to it first (exact for values that came from such a
//! tensor); `epsilon` is converted as TF converts a Python float.

use half::{bf16, f16};

use super::apis::{beta_of, gamma_of, prepare};
use super::config::BnConfig;
use super::ftz::TfFloat;
use super::fused::Layout;
use super::nonfused::moments;
use super::rsqrt::rsqrt_tf_f32;
use super::{f32_to_bf16_tf, f32_to_f16_tf, par, BnParams, TrainingStats};
use crate::error::{Error, Result};

/// A 16-bit float type that TF computes in by widening to `float32`.
pub(crate) trait Half: Copy + Send + Sync {
    /// Exact widening.
    fn widen(self) -> f32;
    /// Rounding to nearest-even, as Eigen's `float → half/bfloat16`.
    fn round(v: f32) -> Self;
    /// A Python float converted to a tensor of this type
    /// (`tf.convert_to_tensor(eps, dtype)`).
    fn from_python(v: f64) -> Self;
    /// `tf.nn.moments` in this type: the mean and the biased variance over
    /// the `reduced` dimensions, `xw` being `x` widened; `threads` is TF's
    /// intra-op thread count (it shapes full reductions).
    fn moments(
        x: &[Self],
        xw: &[f32],
        shape: &[usize],
        reduced: &[bool],
        l: Layout,
        threads: usize,
    ) -> (Vec<Self>, Vec<Self>);
}

/// One 16-bit operation: widen, compute in `float32` (FTZ/DAZ), round.
fn op<H: Half>(a: H, b: H, f: impl Fn(f32, f32) -> f32) -> H {
    H::round(f(a.widen(), b.widen()))
}

impl Half for f16 {
    fn widen(self) -> f32 {
        self.to_f32()
    }

    fn round(v: f32) -> f16 {
        f32_to_f16_tf(v)
    }

    fn from_python(v: f64) -> f16 {
        // numpy rounds the double to half directly.
        f16::from_f64(v)
    }

    fn moments(
        _x: &[f16],
        xw: &[f32],
        shape: &[usize],
        reduced: &[bool],
        _l: Layout,
        threads: usize,
    ) -> (Vec<f16>, Vec<f16>) {
        let (m, v) = moments(xw, shape, reduced, threads);
        (
            m.into_iter().map(f16::round).collect(),
            v.into_iter().map(f16::round).collect(),
        )
    }
}

impl Half for bf16 {
    fn widen(self) -> f32 {
        self.to_f32()
    }

    fn round(v: f32) -> bf16 {
        f32_to_bf16_tf(v)
    }

    fn from_python(v: f64) -> bf16 {
        // ml_dtypes converts through float32.
        f32_to_bf16_tf(v as f32)
    }

    fn moments(
        x: &[bf16],
        xw: &[f32],
        shape: &[usize],
        reduced: &[bool],
        l: Layout,
        threads: usize,
    ) -> (Vec<bf16>, Vec<bf16>) {
        // Mean: float32 sum and division, one rounding.
        let mean: Vec<bf16> = moments(xw, shape, reduced, threads)
            .0
            .into_iter()
            .map(bf16::round)
            .collect();
        // SquaredDifference in bfloat16, then the same float32 Mean.
        let sq: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let d = op(v, mean[(i / l.b) % l.c], |a, b| a.sub(b));
                op(d, d, |a, b| a.mul(b)).widen()
            })
            .collect();
        let var = moments(&sq, shape, reduced, threads)
            .0
            .into_iter()
            .map(bf16::round)
            .collect();
        (mean, var)
    }
}

/// `Rsqrt` of a contiguous 16-bit vector (see the module docs).
fn rsqrt_half<H: Half>(v: &[H]) -> Vec<H> {
    let packet_end = v.len() / 8 * 8;
    let wide: Vec<f32> = v.iter().map(|h| h.widen()).collect();
    let packet = rsqrt_tf_f32(&wide[..packet_end]);
    let mut out: Vec<H> = packet.into_iter().map(H::round).collect();
    out.extend(wide[packet_end..].iter().map(|&w| {
        let s = H::round(TfFloat::sqrt(w));
        H::round(1.0f32.div(s.widen()))
    }));
    out
}

/// `tf.nn.batch_normalization(x, mean, variance, beta, gamma, eps)` in the
/// input's type, into `y`.
fn batch_normalization<H: Half>(x: &[H], pr: &Prepared<H>, mean: &[H], var: &[H], y: &mut [H]) {
    let (l, gamma, beta) = (pr.l, pr.gamma.as_deref(), pr.beta.as_deref());
    let t: Vec<H> = var
        .iter()
        .map(|&v| op(v, pr.eps, |a, b| a.add(b)))
        .collect();
    let mut inv = rsqrt_half(&t);
    if let Some(g) = gamma {
        for (i, g) in inv.iter_mut().zip(g) {
            *i = op(*i, *g, |a, b| a.mul(b));
        }
    }
    let shift: Vec<H> = (0..l.c)
        .map(|c| {
            let mi = op(mean[c], inv[c], |a, b| a.mul(b));
            match beta {
                Some(b) => op(b[c], mi, |a, b| a.sub(b)),
                None => H::round(mi.widen().neg()),
            }
        })
        .collect();
    let threads = par::threads_for(x.len());
    par::zip_chunks(x, y, threads, 64, |start, xs, ys| {
        for (i, (xv, yv)) in xs.iter().zip(ys.iter_mut()).enumerate() {
            let c = ((start + i) / l.b) % l.c;
            let p = op(*xv, inv[c], |a, b| a.mul(b));
            *yv = op(p, shift[c], |a, b| a.add(b));
        }
    });
}

fn rounded<H: Half>(v: &[f32]) -> Vec<H> {
    v.iter().map(|&w| H::round(w)).collect()
}

fn widened<H: Half>(v: &[H]) -> Vec<f32> {
    v.iter().map(|h| h.widen()).collect()
}

/// A call's layout and its parameters in the input's type.
struct Prepared<H> {
    l: Layout,
    gamma: Option<Vec<H>>,
    beta: Option<Vec<H>>,
    eps: H,
}

fn prepared<H: Half>(
    cfg: &BnConfig,
    p: &BnParams,
    x_len: usize,
    shape: &[usize],
    y_len: usize,
) -> Result<(usize, Prepared<H>)> {
    let (axis, l) = prepare(cfg, p, x_len, shape)?;
    if cfg.virtual_batch_size.is_some() {
        return Err(Error::InvalidArgument(
            "batch norm (nn): tf.nn has no virtual batches".into(),
        ));
    }
    if y_len != x_len {
        return Err(Error::TensorMismatch {
            key: "y".into(),
            what: format!("has {y_len} values, the input {x_len}"),
        });
    }
    Ok((
        axis,
        Prepared {
            l,
            gamma: gamma_of(cfg, p)?.map(rounded),
            beta: beta_of(cfg, p)?.map(rounded),
            eps: H::from_python(cfg.epsilon),
        },
    ))
}

/// Inference: `tf.nn.batch_normalization` with `params.moving_mean` and
/// `moving_variance` as the mean and variance, everything in `H`.
pub(crate) fn inference<H: Half>(
    cfg: &BnConfig,
    p: &BnParams,
    x: &[H],
    shape: &[usize],
    y: &mut [H],
) -> Result<()> {
    let (_, pr) = prepared::<H>(cfg, p, x.len(), shape, y.len())?;
    let mean: Vec<H> = rounded(&p.moving_mean);
    let var: Vec<H> = rounded(&p.moving_variance);
    batch_normalization(x, &pr, &mean, &var, y);
    Ok(())
}

/// Training: `tf.nn.moments` then `tf.nn.batch_normalization`, in `H`. The
/// statistics are returned widened (exactly) to `float32`; the moving
/// statistics are returned unchanged, as for every [`BnApi::Nn`] call.
///
/// [`BnApi::Nn`]: super::BnApi::Nn
pub(crate) fn training<H: Half>(
    cfg: &BnConfig,
    p: &BnParams,
    x: &[H],
    shape: &[usize],
    y: &mut [H],
) -> Result<TrainingStats> {
    let (axis, pr) = prepared::<H>(cfg, p, x.len(), shape, y.len())?;
    let reduced: Vec<bool> = (0..shape.len()).map(|i| i != axis).collect();
    let xw = widened(x);
    let threads = cfg
        .intra_op_threads
        .unwrap_or_else(par::host_threads)
        .max(1);
    let (mean, var) = H::moments(x, &xw, shape, &reduced, pr.l, threads);
    batch_normalization(x, &pr, &mean, &var, y);
    Ok(TrainingStats {
        batch_mean: widened(&mean),
        batch_variance: widened(&var),
        moving_mean: p.moving_mean.clone(),
        moving_variance: p.moving_variance.clone(),
        renorm: None,
    })
}
