//! The native batch-normalization layer: TensorFlow 2.21's CPU arithmetic,
//! reproduced bit for bit (see `docs/bn-arithmetic.md`).
//!
//! * [`BnConfig`] holds a layer's hyper-parameters and the [`BnApi`] it came
//!   from (the raw fused op, the TF1 layer, tf_keras, Keras 3 or `tf.nn`);
//!   each API rounds and updates differently.
//! * [`BnParams`] holds its variables.
//! * [`inference`] and [`training`] run it on a [`FloatArray`] of any rank from
//!   2 to 5, any channel axis, in `float32`, `float16`, `bfloat16` (widened
//!   to `float32` and rounded back to nearest-even, statistics in `float32`,
//!   as TF does) or `float64` ([`inference_f64`], [`training_f64`] for
//!   `float64` variables). [`BnApi::Nn`] on `float16`/`bfloat16` is the
//!   exception: TF's `tf.nn.batch_normalization` then computes in the 16-bit
//!   type itself, and so does this crate (module `nn_half`).
//! * [`inference_into`] and [`training_into`] write into a caller's buffer.
//!
//! The default arithmetic is exact: Eigen's fused kernel (F1 and its
//! training statistics) or `tf.nn.moments` + `tf.nn.batch_normalization`
//! (F2), with Eigen's summation order per channel (pattern P, pattern Q and
//! the reducers TF picks for other layouts), TF's `rsqrt` (hardware
//! `RSQRTPS` + one Newton step on the first `8·⌊n/8⌋` elements), no fused
//! multiply-add, and FTZ/DAZ. It is fast too: element-wise passes and
//! per-channel sums run in AVX2 across channels and on all cores, with the
//! order of every channel's additions kept.
//!
//! Results match TF **run on a CPU of the same vendor** (`RSQRTPS` differs
//! between Intel and AMD; see [`host_cpu_vendor`]) with
//! `TF_ENABLE_ONEDNN_OPTS=0` (oneDNN's kernels use other formulas and
//! thread-dependent sums, docs/bn-arithmetic.md#onednn).

mod apis;
mod config;
mod ftz;
mod fused;
mod kernels;
mod nn_half;
mod nonfused;
pub(crate) mod par;
mod reduce;
mod rsqrt;

use half::{bf16, f16};
use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD, IxDyn};

use crate::dtype::{flat, FloatArray};
use crate::error::{Error, Result};

#[cfg(test)]
pub(crate) use config::KernelPath;
pub use config::{decay_python, decay_v1_fused, BnApi, BnConfig, MovingUpdate, RenormConfig};
pub use ftz::TfFloat;
pub use rsqrt::{hardware_rsqrt_estimate, host_cpu_vendor, rsqrt_tf_f32, rsqrt_tf_f64};

/// The extra variables of a renorm layer (docs/bn-arithmetic.md#renorm).
#[derive(Debug, Clone, PartialEq)]
pub struct RenormState<T = f32> {
    /// `moving_stddev`: the inference-time standard deviation that
    /// `moving_variance` is derived from (initialized to `√1 = 1`).
    pub moving_stddev: Vec<T>,
    /// `renorm_mean`: the training-time moving mean that `d` is measured
    /// against (initialized to 0).
    pub renorm_mean: Vec<T>,
    /// `renorm_stddev`: the training-time moving standard deviation that `r`
    /// is measured against (initialized to 1).
    pub renorm_stddev: Vec<T>,
}

/// A batch-norm layer's variables, one value per channel.
///
/// `T = f32` for every layer whose variables are `float32` (which includes
/// `float16`/`bfloat16` mixed-precision layers: TF keeps their variables in
/// `float32`); `T = f64` for `float64` layers ([`training_f64`]).
#[derive(Debug, Clone, PartialEq)]
pub struct BnParams<T = f32> {
    /// `gamma` (scale); required when [`BnConfig::scale`] is on, ignored
    /// otherwise.
    pub gamma: Option<Vec<T>>,
    /// `beta` (offset); required when [`BnConfig::center`] is on, ignored
    /// otherwise.
    pub beta: Option<Vec<T>>,
    /// `moving_mean` (for [`BnApi::Nn`]: the mean to normalize with).
    pub moving_mean: Vec<T>,
    /// `moving_variance` (for [`BnApi::Nn`]: the variance to normalize with).
    pub moving_variance: Vec<T>,
    /// Renorm variables; required when [`BnConfig::renorm`] is set.
    pub renorm: Option<RenormState<T>>,
}

impl BnParams {
    /// The same values as a `float64` layer holds them (every `float32`
    /// widens exactly).
    pub fn to_f64(&self) -> BnParams<f64> {
        let w = |v: &Vec<f32>| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
        BnParams {
            gamma: self.gamma.as_ref().map(w),
            beta: self.beta.as_ref().map(w),
            moving_mean: w(&self.moving_mean),
            moving_variance: w(&self.moving_variance),
            renorm: self.renorm.as_ref().map(|r| RenormState {
                moving_stddev: w(&r.moving_stddev),
                renorm_mean: w(&r.renorm_mean),
                renorm_stddev: w(&r.renorm_stddev),
            }),
        }
    }
}

impl<T: TfFloat> BnParams<T> {
    /// The values Keras initializes a layer of `channels` channels with:
    /// gamma 1, beta 0, moving mean 0, moving variance 1 (and, with
    /// `renorm`, moving_stddev 1, renorm_mean 0, renorm_stddev 1).
    pub fn initial(channels: usize, renorm: bool) -> BnParams<T> {
        let ones = vec![T::ONE; channels];
        let zeros = vec![T::ZERO; channels];
        BnParams {
            gamma: Some(ones.clone()),
            beta: Some(zeros.clone()),
            moving_mean: zeros.clone(),
            moving_variance: ones.clone(),
            renorm: renorm.then(|| RenormState {
                moving_stddev: ones.clone(),
                renorm_mean: zeros,
                renorm_stddev: ones,
            }),
        }
    }
}

/// Inference (moving statistics) or training (batch statistics and one
/// update of the moving statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `training=False`.
    Inference,
    /// `training=True`, one step.
    Training,
}

impl Mode {
    /// `inference` or `training`.
    pub fn label(self) -> &'static str {
        match self {
            Mode::Inference => "inference",
            Mode::Training => "training",
        }
    }
}

/// The result of [`inference`].
#[derive(Debug, Clone, PartialEq)]
pub struct Inference {
    /// The normalized tensor, in the input's type and shape.
    pub y: FloatArray,
}

/// The statistics of a training step (what [`training_into`] returns).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingStats<T = f32> {
    /// The batch mean as the API exposes it: the fused op's output 1 (for
    /// [`BnApi::Fused`] and tf_keras's fused path that is already the new
    /// running mean); the `tf.nn.moments` mean otherwise (averaged over
    /// ghost batches).
    pub batch_mean: Vec<T>,
    /// The batch variance as the API exposes it: the fused op's output 2
    /// (Bessel-corrected, or the running average for `exponential_avg_factor
    /// ≠ 1`); the biased `tf.nn.moments` variance otherwise.
    pub batch_variance: Vec<T>,
    /// `moving_mean` after the update (unchanged for [`BnApi::Nn`]).
    pub moving_mean: Vec<T>,
    /// `moving_variance` after the update (unchanged for [`BnApi::Nn`]).
    pub moving_variance: Vec<T>,
    /// The renorm variables after the update, when renorm is on.
    pub renorm: Option<RenormState<T>>,
}

/// The result of [`training`].
#[derive(Debug, Clone, PartialEq)]
pub struct Training<T = f32> {
    /// The normalized tensor (batch statistics), in the input's type and shape.
    pub y: FloatArray,
    /// See [`TrainingStats::batch_mean`]; `None` never happens today but
    /// leaves room for APIs that expose no batch statistics.
    pub batch_mean: Option<Vec<T>>,
    /// See [`TrainingStats::batch_variance`].
    pub batch_variance: Option<Vec<T>>,
    /// `moving_mean` after the update.
    pub moving_mean: Vec<T>,
    /// `moving_variance` after the update.
    pub moving_variance: Vec<T>,
    /// The renorm variables after the update, when renorm is on.
    pub renorm: Option<RenormState<T>>,
}

impl<T> Training<T> {
    fn from_stats(y: FloatArray, s: TrainingStats<T>) -> Training<T> {
        Training {
            y,
            batch_mean: Some(s.batch_mean),
            batch_variance: Some(s.batch_variance),
            moving_mean: s.moving_mean,
            moving_variance: s.moving_variance,
            renorm: s.renorm,
        }
    }
}

fn into_array<T>(shape: &[usize], v: Vec<T>) -> Result<ArrayD<T>> {
    ArrayD::from_shape_vec(IxDyn(shape), v)
        .map_err(|e| Error::InvalidArgument(format!("batch norm output shape {shape:?}: {e}")))
}

/// `float32` → `float16`, round to nearest even, NaN → quiet NaN with the
/// sign kept (Eigen's `float_to_half_rtne`, which TF uses on CPUs without F16C
/// in the AVX wheel).
pub(crate) fn f32_to_f16_tf(v: f32) -> f16 {
    if v.is_nan() {
        return f16::from_bits(if v.is_sign_negative() { 0xFE00 } else { 0x7E00 });
    }
    f16::from_f32(v)
}

/// `float32` → `bfloat16`, round to nearest even, NaN → `0x7FC0` with the
/// sign kept (Eigen's `float_to_bfloat16_rtne`).
pub(crate) fn f32_to_bf16_tf(v: f32) -> bf16 {
    if v.is_nan() {
        return bf16::from_bits(if v.is_sign_negative() { 0xFFC0 } else { 0x7FC0 });
    }
    let u = v.to_bits();
    let rounded = u.wrapping_add(0x7FFF + ((u >> 16) & 1));
    bf16::from_bits((rounded >> 16) as u16)
}

fn narrow_stats(s: TrainingStats<f64>) -> TrainingStats<f32> {
    let n = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
    TrainingStats {
        batch_mean: n(s.batch_mean),
        batch_variance: n(s.batch_variance),
        moving_mean: n(s.moving_mean),
        moving_variance: n(s.moving_variance),
        renorm: s.renorm.map(|r| RenormState {
            moving_stddev: n(r.moving_stddev),
            renorm_mean: n(r.renorm_mean),
            renorm_stddev: n(r.renorm_stddev),
        }),
    }
}

/// [`BnApi::Nn`] on a 16-bit input: TF computes it in that type
/// (`nn_half`), not widened like the layers.
fn nn_half_input(cfg: &BnConfig, x: &FloatArray) -> bool {
    cfg.api == BnApi::Nn && matches!(x, FloatArray::F16(_) | FloatArray::BF16(_))
}

fn nn_half_inference<H: nn_half::Half + Default>(
    cfg: &BnConfig,
    params: &BnParams,
    x: &ArrayD<H>,
) -> Result<ArrayD<H>> {
    let shape = x.shape().to_vec();
    let view = x.view();
    let xs = flat(&view);
    let mut y = par::output_buffer::<H>(xs.len());
    nn_half::inference(cfg, params, &xs, &shape, &mut y)?;
    into_array(&shape, y)
}

fn nn_half_training<H: nn_half::Half + Default>(
    cfg: &BnConfig,
    params: &BnParams,
    x: &ArrayD<H>,
) -> Result<(ArrayD<H>, TrainingStats)> {
    let shape = x.shape().to_vec();
    let view = x.view();
    let xs = flat(&view);
    let mut y = par::output_buffer::<H>(xs.len());
    let stats = nn_half::training(cfg, params, &xs, &shape, &mut y)?;
    Ok((into_array(&shape, y)?, stats))
}

/// Runs the layer in inference mode: `y` from the moving statistics (for
/// [`BnApi::Nn`], from `params.moving_mean` / `moving_variance` taken as the
/// mean and variance to normalize with).
///
/// A `float64` input with these `float32` parameters runs as a `float64`
/// layer whose variables hold these values (use [`inference_f64`] for
/// `float64` variables).
pub fn inference(cfg: &BnConfig, params: &BnParams, x: &FloatArray) -> Result<Inference> {
    let y = match x {
        FloatArray::F16(a) if nn_half_input(cfg, x) => {
            FloatArray::F16(nn_half_inference(cfg, params, a)?)
        }
        FloatArray::BF16(a) if nn_half_input(cfg, x) => {
            FloatArray::BF16(nn_half_inference(cfg, params, a)?)
        }
        FloatArray::F32(a) => FloatArray::F32(run_inference_f32(cfg, params, a.view())?),
        FloatArray::F64(a) => FloatArray::F64(inference_f64(cfg, &params.to_f64(), a.view())?),
        FloatArray::F16(a) => {
            let xf = a.mapv(|v| v.to_f32());
            let y = run_inference_f32(cfg, params, xf.view())?;
            FloatArray::F16(y.mapv(f32_to_f16_tf))
        }
        FloatArray::BF16(a) => {
            let xf = a.mapv(|v| v.to_f32());
            let y = run_inference_f32(cfg, params, xf.view())?;
            FloatArray::BF16(y.mapv(f32_to_bf16_tf))
        }
    };
    Ok(Inference { y })
}

fn run_inference_f32(cfg: &BnConfig, params: &BnParams, x: ArrayViewD<f32>) -> Result<ArrayD<f32>> {
    let shape = x.shape().to_vec();
    let xs = flat(&x);
    let mut y = par::output_buffer::<f32>(xs.len());
    apis::inference(cfg, params, &xs, &shape, &mut y)?;
    into_array(&shape, y)
}

fn run_training_f32(
    cfg: &BnConfig,
    params: &BnParams,
    x: ArrayViewD<f32>,
) -> Result<(ArrayD<f32>, TrainingStats)> {
    let shape = x.shape().to_vec();
    let xs = flat(&x);
    let mut y = par::output_buffer::<f32>(xs.len());
    let stats = apis::training(cfg, params, &xs, &shape, &mut y)?;
    Ok((into_array(&shape, y)?, stats))
}

/// Runs the layer in training mode: `y` from the batch statistics, plus the
/// batch statistics and the updated moving statistics as the API computes
/// them.
///
/// A `float64` input with these `float32` parameters runs as a `float64`
/// layer whose variables hold these values; the statistics are then rounded
/// to `float32` on return (use [`training_f64`] to keep them in `float64`).
pub fn training(cfg: &BnConfig, params: &BnParams, x: &FloatArray) -> Result<Training> {
    match x {
        FloatArray::F16(a) if nn_half_input(cfg, x) => {
            let (y, s) = nn_half_training(cfg, params, a)?;
            Ok(Training::from_stats(FloatArray::F16(y), s))
        }
        FloatArray::BF16(a) if nn_half_input(cfg, x) => {
            let (y, s) = nn_half_training(cfg, params, a)?;
            Ok(Training::from_stats(FloatArray::BF16(y), s))
        }
        FloatArray::F32(a) => {
            let (y, s) = run_training_f32(cfg, params, a.view())?;
            Ok(Training::from_stats(FloatArray::F32(y), s))
        }
        FloatArray::F64(a) => {
            let shape = a.shape().to_vec();
            let view = a.view();
            let xs = flat(&view);
            let mut y = par::output_buffer::<f64>(xs.len());
            let s = apis::training(cfg, &params.to_f64(), &xs, &shape, &mut y)?;
            Ok(Training::from_stats(
                FloatArray::F64(into_array(&shape, y)?),
                narrow_stats(s),
            ))
        }
        FloatArray::F16(a) => {
            let xf = a.mapv(|v| v.to_f32());
            let (y, s) = run_training_f32(cfg, params, xf.view())?;
            Ok(Training::from_stats(
                FloatArray::F16(y.mapv(f32_to_f16_tf)),
                s,
            ))
        }
        FloatArray::BF16(a) => {
            let xf = a.mapv(|v| v.to_f32());
            let (y, s) = run_training_f32(cfg, params, xf.view())?;
            Ok(Training::from_stats(
                FloatArray::BF16(y.mapv(f32_to_bf16_tf)),
                s,
            ))
        }
    }
}

/// [`inference`] for a `float64` layer (variables in `float64`).
pub fn inference_f64(
    cfg: &BnConfig,
    params: &BnParams<f64>,
    x: ArrayViewD<f64>,
) -> Result<ArrayD<f64>> {
    let shape = x.shape().to_vec();
    let xs = flat(&x);
    let mut y = par::output_buffer::<f64>(xs.len());
    apis::inference(cfg, params, &xs, &shape, &mut y)?;
    into_array(&shape, y)
}

/// [`training`] for a `float64` layer (variables and statistics in
/// `float64`).
pub fn training_f64(
    cfg: &BnConfig,
    params: &BnParams<f64>,
    x: ArrayViewD<f64>,
) -> Result<Training<f64>> {
    let shape = x.shape().to_vec();
    let xs = flat(&x);
    let mut y = par::output_buffer::<f64>(xs.len());
    let s = apis::training(cfg, params, &xs, &shape, &mut y)?;
    Ok(Training::from_stats(
        FloatArray::F64(into_array(&shape, y)?),
        s,
    ))
}

fn out_slice<'a>(y: &'a mut ArrayViewMutD<'_, f32>, shape: &[usize]) -> Result<&'a mut [f32]> {
    if y.shape() != shape {
        return Err(Error::TensorMismatch {
            key: "y".into(),
            what: format!(
                "output shape {:?} differs from the input shape {shape:?}",
                y.shape()
            ),
        });
    }
    y.as_slice_mut().ok_or_else(|| Error::TensorMismatch {
        key: "y".into(),
        what: "the output buffer must be contiguous and row-major".into(),
    })
}

/// [`inference`] for `float32`, writing into a caller's contiguous,
/// row-major buffer of the input's shape (no allocation for `y`).
pub fn inference_into(
    cfg: &BnConfig,
    params: &BnParams,
    x: ArrayViewD<f32>,
    mut y: ArrayViewMutD<f32>,
) -> Result<()> {
    let shape = x.shape().to_vec();
    let xs = flat(&x);
    let ys = out_slice(&mut y, &shape)?;
    apis::inference(cfg, params, &xs, &shape, ys)
}

/// [`training`] for `float32`, writing `y` into a caller's contiguous,
/// row-major buffer of the input's shape; returns the statistics.
pub fn training_into(
    cfg: &BnConfig,
    params: &BnParams,
    x: ArrayViewD<f32>,
    mut y: ArrayViewMutD<f32>,
) -> Result<TrainingStats> {
    let shape = x.shape().to_vec();
    let xs = flat(&x);
    let ys = out_slice(&mut y, &shape)?;
    apis::training(cfg, params, &xs, &shape, ys)
}

/// The outputs of `tf.raw_ops.FusedBatchNormV3` ([`fused_batch_norm_v3`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FusedBatchNormV3 {
    /// Output 0, in the input's type.
    pub y: FloatArray,
    /// Output 1: with `is_training`, the batch mean (or its running average
    /// for `exponential_avg_factor ≠ 1`); otherwise the `mean` input.
    pub batch_mean: Vec<f32>,
    /// Output 2: with `is_training`, the Bessel-corrected batch variance (or
    /// its running average); otherwise the `variance` input.
    pub batch_variance: Vec<f32>,
    /// Output 3: with `is_training`, the batch mean; otherwise the `mean`
    /// input.
    pub reserve_space_1: Vec<f32>,
    /// Output 4: with `is_training`, the biased batch variance; otherwise the
    /// `variance` input.
    pub reserve_space_2: Vec<f32>,
}

/// `tf.raw_ops.FusedBatchNormV3` on the CPU (Eigen kernel, oneDNN off):
/// `x` is 4-D or 5-D with the channels on `channel_axis` (1 for
/// NCHW/NCDHW, last for NHWC/NDHWC); `float32`, `float16` or `bfloat16`.
#[allow(clippy::too_many_arguments)]
pub fn fused_batch_norm_v3(
    x: &FloatArray,
    scale: &[f32],
    offset: &[f32],
    mean: &[f32],
    variance: &[f32],
    epsilon: f32,
    exponential_avg_factor: f32,
    channel_axis: usize,
    is_training: bool,
) -> Result<FusedBatchNormV3> {
    let shape = x.shape().to_vec();
    let rank = shape.len();
    if !config::fusable_layout(rank, channel_axis) {
        return Err(Error::InvalidArgument(format!(
            "FusedBatchNormV3 takes 4-D or 5-D inputs with the channel axis 1 or last (shape {shape:?}, axis {channel_axis})"
        )));
    }
    let l = fused::Layout::new(&shape, channel_axis);
    for (name, v) in [
        ("scale", scale),
        ("offset", offset),
        ("mean", mean),
        ("variance", variance),
    ] {
        if v.len() != l.c {
            return Err(Error::TensorMismatch {
                key: name.into(),
                what: format!("has {} values; the input has {} channels", v.len(), l.c),
            });
        }
    }
    let xf: Vec<f32> = match x {
        FloatArray::F32(a) => a.iter().copied().collect(),
        FloatArray::F16(a) => a.iter().map(|v| v.to_f32()).collect(),
        FloatArray::BF16(a) => a.iter().map(|v| v.to_f32()).collect(),
        FloatArray::F64(_) => {
            return Err(Error::InvalidArgument(
                "FusedBatchNormV3 has no float64 kernel".into(),
            ))
        }
    };
    let mut y = par::output_buffer::<f32>(xf.len());
    let (bm, bv, r1, r2) = if is_training {
        let o = fused::training(
            &xf,
            l,
            scale,
            offset,
            mean,
            variance,
            epsilon,
            exponential_avg_factor,
            &mut y,
        );
        (
            o.batch_mean,
            o.batch_variance,
            o.saved_mean,
            o.saved_variance,
        )
    } else {
        fused::inference(&xf, l, scale, offset, mean, variance, epsilon, &mut y);
        (
            mean.to_vec(),
            variance.to_vec(),
            mean.to_vec(),
            variance.to_vec(),
        )
    };
    let y = into_array(&shape, y)?;
    let y = match x {
        FloatArray::F16(_) => FloatArray::F16(y.mapv(f32_to_f16_tf)),
        FloatArray::BF16(_) => FloatArray::BF16(y.mapv(f32_to_bf16_tf)),
        _ => FloatArray::F32(y),
    };
    Ok(FusedBatchNormV3 {
        y,
        batch_mean: bm,
        batch_variance: bv,
        reserve_space_1: r1,
        reserve_space_2: r2,
    })
}

crate::label::display_label!(Mode);

#[cfg(test)]
mod tests;
