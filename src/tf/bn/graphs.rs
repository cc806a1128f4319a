//! The graph builders: each API's ops, as its Python code calls them.

use super::*;

/// The shape facts the graph builders need.
#[derive(Debug, Clone, Copy)]
pub(super) struct Layout {
    pub(super) rank: usize,
    pub(super) axis: usize,
    pub(super) c: usize,
    pub(super) training: bool,
    pub(super) dtype: FloatDType,
}

impl Layout {
    /// A `float16` or `bfloat16` input.
    pub(super) fn is_half(&self) -> bool {
        matches!(self.dtype, FloatDType::F16 | FloatDType::BF16)
    }
}

fn op_err(what: &'static str) -> impl Fn(tensorflow::Status) -> Error {
    move |s| tf_error(what, s)
}

pub(super) fn build_fused(
    g: &mut G,
    cfg: &BnConfig,
    x: &Operation,
    p: &ParamOps,
    l: Layout,
) -> Result<(Vec<Output>, OutputIndex)> {
    let (c, training) = (l.c, l.training);
    // tf_keras and the v1 layers feed constant ones / zeros when scale /
    // center are off (`K.constant(1.0, shape=param_shape)`).
    let scale: Output = match &p.gamma {
        Some(o) => o.clone().into(),
        None => g.constant(&[c], &vec![1.0f32; c])?,
    };
    let offset: Output = match &p.beta {
        Some(o) => o.clone().into(),
        None => g.constant(&[c], &vec![0.0f32; c])?,
    };
    // tf.compat.v1 graph mode calls the kernel with factor 1 and updates the
    // variables itself; TF2 Keras and the raw op use the kernel's average.
    let factor = match (training, cfg.api) {
        (false, _) | (true, BnApi::Tf1Layers) => 1.0f32,
        (true, _) => decay_python(cfg.momentum),
    };
    // T is inferred from x (half, bfloat16 or float; TF refuses double),
    // U from the float32 variables.
    let fbn = ops::FusedBatchNormV3::new()
        .epsilon(cfg.epsilon as f32)
        .exponential_avg_factor(factor)
        .data_format(data_format(l.rank, l.axis))
        .is_training(training)
        .build(
            x.clone(),
            scale,
            offset,
            p.moving_mean.clone(),
            p.moving_variance.clone(),
            &mut g.scope,
        )
        .map_err(op_err("building FusedBatchNormV3"))?;
    let out = |i: i32| Output {
        operation: fbn.clone(),
        index: i,
    };
    let mut outputs = vec![out(0)];
    let mut index = OutputIndex::default();
    if !training {
        return Ok((outputs, index));
    }
    outputs.push(out(1));
    outputs.push(out(2));
    index.add(&["batch_mean", "batch_variance"], 1);
    match cfg.api {
        BnApi::Tf1Layers => {
            // `momentum` is a float32 tensor by then: decay = 1.0 − f32(m) in
            // float32 (0x3C23D700 for 0.99), then the assign_sub form.
            let one = g.scalar_f32(1.0)?;
            let m = g.scalar_f32(cfg.momentum as f32)?;
            let decay = g.sub(one, m)?;
            debug_assert_eq!(decay_v1_fused(cfg.momentum), 1.0f32 - cfg.momentum as f32);
            let mm = assign_sub_update(g, p.moving_mean.clone().into(), out(1), decay.clone())?;
            let mv = assign_sub_update(g, p.moving_variance.clone().into(), out(2), decay)?;
            outputs.push(mm);
            outputs.push(mv);
            index.add(&["moving_mean", "moving_variance"], 3);
        }
        _ => {
            // The kernel's outputs 1 and 2 are the new moving statistics.
            index.add(&["moving_mean", "moving_variance"], 1);
        }
    }
    Ok((outputs, index))
}

/// `variable.assign_sub((variable − value)·decay)`: tf_keras's and the v1
/// layers' `_assign_moving_average`.
fn assign_sub_update(g: &mut G, old: Output, value: Output, decay: Output) -> Result<Output> {
    let diff = g.sub(old.clone(), value)?;
    let delta = g.mul(diff, decay)?;
    g.sub(old, delta)
}

/// `old·m + new·(1 − m)`: Keras 3's update (`m` and `1 − m` are Python
/// floats, `1 − m` computed in double, both rounded to `float32`).
fn keras3_update(
    g: &mut G,
    dt: DataType,
    old: Output,
    value: Output,
    momentum: f64,
) -> Result<Output> {
    let m = g.scalar(dt, momentum)?;
    let one_minus = g.scalar(dt, 1.0 - momentum)?;
    let a = g.mul(old, m)?;
    let b = g.mul(value, one_minus)?;
    g.add(a, b)
}

/// The moving-average update of a non-fused API, in the variables' type
/// `dt`.
fn update(
    g: &mut G,
    dt: DataType,
    api: BnApi,
    old: Output,
    value: Output,
    momentum: f64,
) -> Result<Output> {
    match api {
        BnApi::Keras3 => keras3_update(g, dt, old, value, momentum),
        _ => {
            // tf.convert_to_tensor(1.0 - momentum): a float32 of the double,
            // cast to the variable's type.
            let decay = g.scalar(dt, decay_python(momentum) as f64)?;
            assign_sub_update(g, old, value, decay)
        }
    }
}

/// `tf.nn.batch_normalization(x, mean, variance, offset, scale, ε)`:
/// `inv = rsqrt(variance + ε)`, `inv *= scale`,
/// `y = x·inv + (offset − mean·inv)` (or `− mean·inv` without offset).
#[allow(clippy::too_many_arguments)]
fn batch_normalization(
    g: &mut G,
    dt: DataType,
    x: Output,
    mean: Output,
    variance: Output,
    offset: Option<Output>,
    scale: Option<Output>,
    eps: f64,
) -> Result<Output> {
    let e = g.scalar(dt, eps)?;
    let ve = g.add(variance, e)?;
    let mut inv = g.rsqrt(ve)?;
    if let Some(s) = scale {
        inv = g.mul(inv, s)?;
    }
    let xi = g.mul(x, inv.clone())?;
    let mi = g.mul(mean, inv)?;
    let shift = match offset {
        Some(o) => g.sub(o, mi)?,
        None => g.neg(mi)?,
    };
    g.add(xi, shift)
}

/// `nn` on a `float16` / `bfloat16` input, as TF 2.21's Python runs
/// `tf.nn.moments(x, axes, keepdims=True)` and
/// `tf.nn.batch_normalization(x, mean, variance, offset, scale, ε)` on it:
///
/// * the `float32` parameters (`gamma`, `beta` and, in inference, the mean
///   and variance) are fed as `float32` and `Cast` to the input's type, as
///   an element-wise op with a 16-bit `x` needs (round to nearest even);
/// * `tf.nn.moments` casts a `float16` input to `float32`, reduces
///   (`Mean`, `SquaredDifference`, `Mean`) in `float32` and casts both
///   moments back to `float16`; a `bfloat16` input is reduced as it is (the
///   `bfloat16` kernels);
/// * `tf.nn.batch_normalization` runs in the input's type, `ε` being a
///   16-bit constant ([`G::scalar`]);
/// * the batch moments are fetched widened to `float32` (`Cast`, exact),
///   the type of the statistics in [`TypedOutputs`]. No moving statistics.
pub(super) fn build_nn_half(
    g: &mut G,
    cfg: &BnConfig,
    x: &Operation,
    p: &ParamOps,
    l: Layout,
) -> Result<(Vec<Output>, OutputIndex)> {
    let (rank, axis, c) = (l.rank, l.axis, l.c);
    let ht = tf_type(l.dtype);
    let f32t = DataType::Float;
    let mut bshape = vec![1i32; rank];
    bshape[axis] = c as i32;
    let bshape_t = g.i32s(&bshape)?;
    let flat_t = g.i32s(&[c as i32])?;
    // A per-channel float32 parameter, cast to the input's type and shaped
    // to broadcast against x.
    let param = |g: &mut G, op: &Operation| -> Result<Output> {
        let h = g.cast(op.clone(), ht)?;
        g.reshape(h, bshape_t.clone())
    };
    let sc = match &p.gamma {
        Some(op) => Some(param(g, op)?),
        None => None,
    };
    let of = match &p.beta {
        Some(op) => Some(param(g, op)?),
        None => None,
    };
    let x: Output = x.clone().into();
    let mut index = OutputIndex::default();
    if !l.training {
        let mean = param(g, &p.moving_mean)?;
        let var = param(g, &p.moving_variance)?;
        let y = batch_normalization(g, ht, x, mean, var, of, sc, cfg.epsilon)?;
        return Ok((vec![y], index));
    }
    let axes: Vec<usize> = (0..rank).filter(|&a| a != axis).collect();
    let (mean_k, var_k) = if l.dtype == FloatDType::F16 {
        let y = g.cast(x.clone(), f32t)?;
        let m = g.mean(y.clone(), &axes, true)?;
        let sq = g.squared_difference(y, m.clone())?;
        let v = g.mean(sq, &axes, true)?;
        (g.cast(m, ht)?, g.cast(v, ht)?)
    } else {
        let m = g.mean(x.clone(), &axes, true)?;
        let sq = g.squared_difference(x.clone(), m.clone())?;
        let v = g.mean(sq, &axes, true)?;
        (m, v)
    };
    let y = batch_normalization(g, ht, x, mean_k.clone(), var_k.clone(), of, sc, cfg.epsilon)?;
    let mean = g.reshape(mean_k, flat_t.clone())?;
    let var = g.reshape(var_k, flat_t)?;
    let mean = g.cast(mean, f32t)?;
    let var = g.cast(var, f32t)?;
    index.add(&["batch_mean", "batch_variance"], 1);
    Ok((vec![y, mean, var], index))
}

/// The configuration whose API gives the moving-average update to build:
/// the layer's own, or for [`BnApi::Nn`] the API with the hand-written
/// update's form; `None` for `tf.nn` without one.
fn updating(cfg: &BnConfig) -> Option<BnConfig> {
    match (cfg.api, cfg.nn_update) {
        (BnApi::Nn, None) => None,
        (BnApi::Nn, Some(form)) => Some(BnConfig {
            api: form.api_with_this_form(),
            ..cfg.clone()
        }),
        _ => Some(cfg.clone()),
    }
}

/// The API's moving-average updates of the moving mean and variance with
/// the batch statistics, appended as outputs 3 and 4 (after y and the batch
/// statistics).
#[allow(clippy::too_many_arguments)]
fn moving_updates(
    g: &mut G,
    dt: DataType,
    cfg: &BnConfig,
    p: &ParamOps,
    mean: Output,
    var: Output,
    outputs: &mut Vec<Output>,
    index: &mut OutputIndex,
) -> Result<()> {
    let mm = update(
        g,
        dt,
        cfg.api,
        p.moving_mean.clone().into(),
        mean,
        cfg.momentum,
    )?;
    let mv = update(
        g,
        dt,
        cfg.api,
        p.moving_variance.clone().into(),
        var,
        cfg.momentum,
    )?;
    outputs.push(mm);
    outputs.push(mv);
    index.add(&["moving_mean", "moving_variance"], 3);
    Ok(())
}

/// tf_keras's ghost batch norm in training mode (`virtual_batch_size`):
/// x reshaped to `(vbs, B / vbs, …)`, `tf.nn.moments` over every dimension
/// but the ghost one (1) and the channels with keepdims, the layer's
/// `batch_normalization` on the reshaped x with `[1, 1, …, C]` parameters,
/// y reshaped back; the moving averages take the mean over ghosts of the
/// ghost statistics (`tf.reduce_mean(…, axis=1)`). Renorm with ghost
/// batches is not built.
pub(super) fn build_ghost(
    g: &mut G,
    cfg: &BnConfig,
    x: &Operation,
    p: &ParamOps,
    l: Layout,
    shape: &[usize],
    vbs: usize,
) -> Result<(Vec<Output>, OutputIndex)> {
    if cfg.renorm.is_some() {
        return Err(Error::InvalidArgument(
            "the TensorFlow side of verify does not build renorm with virtual batches".into(),
        ));
    }
    let (rank, axis, c) = (l.rank, l.axis, l.c);
    let dt = tf_type(l.dtype.stats_dtype());
    let half = l.is_half();
    let x: Output = if half {
        g.cast(x.clone(), dt)?
    } else {
        x.clone().into()
    };
    let dim = |v: usize| {
        i32::try_from(v).map_err(|_| Error::InvalidArgument(format!("dimension {v} too large")))
    };
    let mut ghost_shape = vec![dim(vbs)?, -1];
    for &d in &shape[1..] {
        ghost_shape.push(dim(d)?);
    }
    let orig: Vec<i32> = shape.iter().map(|&d| dim(d)).collect::<Result<_>>()?;
    let ghost_t = g.i32s(&ghost_shape)?;
    let xg = g.reshape(x, ghost_t)?;
    let axes: Vec<usize> = (0..=rank).filter(|&a| a != 1 && a != axis + 1).collect();
    let mean_k = g.mean(xg.clone(), &axes, true)?;
    let sq = g.squared_difference(xg.clone(), mean_k.clone())?;
    let var_k = g.mean(sq, &axes, true)?;
    let mut pshape = vec![1i32; rank + 1];
    pshape[axis + 1] = dim(c)?;
    let pshape_t = g.i32s(&pshape)?;
    let sc = match p.gamma.clone() {
        Some(s) => Some(g.reshape(s, pshape_t.clone())?),
        None => None,
    };
    let of = match p.beta.clone() {
        Some(b) => Some(g.reshape(b, pshape_t.clone())?),
        None => None,
    };
    let y = batch_normalization(
        g,
        dt,
        xg,
        mean_k.clone(),
        var_k.clone(),
        of,
        sc,
        cfg.epsilon,
    )?;
    let orig_t = g.i32s(&orig)?;
    let y = g.reshape(y, orig_t)?;
    let y = if half {
        g.cast(y, tf_type(l.dtype))?
    } else {
        y
    };
    let flat_t = g.i32s(&[dim(c)?])?;
    let new_mean = g.mean(mean_k, &[1], true)?;
    let new_mean = g.reshape(new_mean, flat_t.clone())?;
    let new_var = g.mean(var_k, &[1], true)?;
    let new_var = g.reshape(new_var, flat_t)?;
    let mut index = OutputIndex::default();
    let mut outputs = vec![y, new_mean.clone(), new_var.clone()];
    index.add(&["batch_mean", "batch_variance"], 1);
    if let Some(cfg) = updating(cfg) {
        moving_updates(g, dt, &cfg, p, new_mean, new_var, &mut outputs, &mut index)?;
    }
    Ok((outputs, index))
}

pub(super) fn build_nonfused(
    g: &mut G,
    cfg: &BnConfig,
    x: &Operation,
    p: &ParamOps,
    l: Layout,
) -> Result<(Vec<Output>, OutputIndex)> {
    let (rank, axis, c) = (l.rank, l.axis, l.c);
    // The compute type: float64 for a float64 layer, else float32 (both
    // Keras layers cast 16-bit inputs to float32 and the output back).
    let dt = tf_type(l.dtype.stats_dtype());
    let half = matches!(l.dtype, FloatDType::F16 | FloatDType::BF16);
    let x: Output = if half {
        g.cast(x.clone(), dt)?
    } else {
        x.clone().into()
    };
    let out_y = |g: &mut G, y: Output| -> Result<Output> {
        if half {
            g.cast(y, tf_type(l.dtype))
        } else {
            Ok(y)
        }
    };
    // Per-channel vectors broadcast against x as [1, …, C, …, 1].
    let mut bshape = vec![1i32; rank];
    bshape[axis] = c as i32;
    let bshape_t = g.i32s(&bshape)?;
    let flat_t = g.i32s(&[c as i32])?;
    let eps = cfg.epsilon;
    let gamma: Option<Output> = p.gamma.clone().map(Output::from);
    let beta: Option<Output> = p.beta.clone().map(Output::from);
    let mut index = OutputIndex::default();
    if !l.training {
        // Inference: the moving statistics (nn: the given mean and variance).
        let mean = g.reshape(p.moving_mean.clone(), bshape_t.clone())?;
        let var = g.reshape(p.moving_variance.clone(), bshape_t.clone())?;
        let sc = match gamma {
            Some(s) => Some(g.reshape(s, bshape_t.clone())?),
            None => None,
        };
        let of = match beta {
            Some(b) => Some(g.reshape(b, bshape_t.clone())?),
            None => None,
        };
        let y = batch_normalization(g, dt, x, mean, var, of, sc, eps)?;
        let y = out_y(g, y)?;
        return Ok((vec![y], index));
    }
    // tf.nn.moments: Mean with keepdims, then Mean(SquaredDifference).
    let axes: Vec<usize> = (0..rank).filter(|&a| a != axis).collect();
    let mean_k = g.mean(x.clone(), &axes, true)?;
    let sq = g.squared_difference(x.clone(), mean_k.clone())?;
    let var_k = g.mean(sq, &axes, true)?;
    let mean = g.reshape(mean_k.clone(), flat_t.clone())?;
    let var = g.reshape(var_k.clone(), flat_t.clone())?;

    let mut outputs: Vec<Output> = Vec::new();
    let (scale_v, offset_v, renorm_out) = match &cfg.renorm {
        None => (gamma, beta, None),
        Some(rn) => {
            let keras3 = cfg.api == BnApi::Keras3;
            let ms = p.moving_stddev.clone().map(Output::from);
            let rm = p.renorm_mean.clone().map(Output::from);
            let rsd = p.renorm_stddev.clone().map(Output::from);
            let (Some(ms), Some(rm), Some(rsd)) = (ms, rm, rsd) else {
                return Err(Error::InvalidArgument("renorm variables missing".into()));
            };
            // _renorm_correction_and_moments
            let e = g.scalar(dt, eps)?;
            let ve = g.add(var.clone(), e.clone())?;
            let stddev = g.sqrt(ve)?;
            let sqrt_eps = g.sqrt(e.clone())?;
            let rs = g.maximum(rsd.clone(), sqrt_eps)?;
            let mut r = g.div(stddev.clone(), rs.clone())?;
            let dm = g.sub(mean.clone(), rm.clone())?;
            let mut d = g.div(dm, rs)?;
            if let Some(rmin) = rn.rmin {
                let v = g.scalar(dt, rmin)?;
                r = g.maximum(r, v)?;
            }
            if let Some(rmax) = rn.rmax {
                let v = g.scalar(dt, rmax)?;
                r = g.minimum(r, v)?;
            }
            if let Some(dmax) = rn.dmax {
                let lo = g.scalar(dt, -dmax)?;
                let hi = g.scalar(dt, dmax)?;
                if keras3 {
                    // ops.clip → tf.clip_by_value: minimum, then maximum.
                    d = g.minimum(d, hi)?;
                    d = g.maximum(d, lo)?;
                } else {
                    d = g.maximum(d, lo)?;
                    d = g.minimum(d, hi)?;
                }
            }
            // _compose_transforms: scale' = r·γ, offset' = d·γ (+ β).
            let (sc, mut of) = match &gamma {
                Some(gm) => (g.mul(r, gm.clone())?, g.mul(d, gm.clone())?),
                None => (r, d),
            };
            if let Some(b) = &beta {
                of = g.add(of, b.clone())?;
            }
            // Updates.
            let rmom = rn.renorm_momentum;
            let m = cfg.momentum;
            let new_rm = update(g, dt, cfg.api, rm, mean.clone(), rmom)?;
            let new_rsd = update(g, dt, cfg.api, rsd, stddev.clone(), rmom)?;
            let new_mm = update(
                g,
                dt,
                cfg.api,
                p.moving_mean.clone().into(),
                mean.clone(),
                m,
            )?;
            // tf_keras recomputes sqrt(new_variance + ε); the same bits.
            let e2 = g.scalar(dt, eps)?;
            let ve2 = g.add(var.clone(), e2)?;
            let stddev2 = g.sqrt(ve2)?;
            let new_ms = update(g, dt, cfg.api, ms, stddev2, m)?;
            let sq_ms = g.mul(new_ms.clone(), new_ms.clone())?;
            let e3 = g.scalar(dt, eps)?;
            let diff = g.sub(sq_ms, e3)?;
            let new_mv = g.relu(diff)?;
            (
                Some(sc),
                Some(of),
                Some((new_mm, new_mv, new_ms, new_rm, new_rsd)),
            )
        }
    };
    let sc = match scale_v {
        Some(s) => Some(g.reshape(s, bshape_t.clone())?),
        None => None,
    };
    let of = match offset_v {
        Some(o) => Some(g.reshape(o, bshape_t.clone())?),
        None => None,
    };
    let y = batch_normalization(g, dt, x, mean_k, var_k, of, sc, eps)?;
    let y = out_y(g, y)?;
    outputs.push(y);
    outputs.push(mean.clone());
    outputs.push(var.clone());
    index.add(&["batch_mean", "batch_variance"], 1);
    match (cfg.api, renorm_out) {
        (_, None) => {
            if let Some(cfg) = updating(cfg) {
                moving_updates(g, dt, &cfg, p, mean, var, &mut outputs, &mut index)?
            }
        }
        (_, Some((mm, mv, ms, rm, rsd))) => {
            outputs.extend([mm, mv, ms, rm, rsd]);
            index.add(
                &[
                    "moving_mean",
                    "moving_variance",
                    "moving_stddev",
                    "renorm_mean",
                    "renorm_stddev",
                ],
                3,
            );
        }
    }
    Ok((outputs, index))
}
