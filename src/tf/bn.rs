//! TensorFlow's own batch norm, op for op as each API's Python code calls
//! it, so that the native layer can be compared with it (`tfbn verify`).
//!
//! | API | path | TF ops |
//! |---|---|---|
//! | `fused`, `tf-keras` fused | fused | `FusedBatchNormV3(exponential_avg_factor = f32(1 − m))`; its outputs 1, 2 are the new moving statistics |
//! | `tf1-layers` fused | fused | `FusedBatchNormV3(factor 1)`, then `old − (old − batch)·(1 − f32(m))` with the decay computed by a TF `Sub` in `float32` |
//! | `keras3` | non-fused | `tf.nn.moments` (`Mean`, `SquaredDifference`, `Mean`) + `tf.nn.batch_normalization` (`AddV2`, `Rsqrt`, `Mul`, `Sub`/`Neg`, `AddV2`); `old·f32(m) + batch·f32(1 − m)` |
//! | `tf-keras`, `tf1-layers` non-fused | non-fused | the same moments and normalization; `old − (old − batch)·f32(1 − m)` |
//! | `nn` | non-fused | moments + normalization, no moving statistics |
//!
//! Renorm (Keras 3 and tf_keras) follows each layer's
//! `_renorm_correction_and_moments` (`Sqrt`, `Maximum`, `RealDiv`, the
//! clipping order, `_compose_transforms`) and its updates, with
//! `moving_variance = relu(moving_stddev² − ε)`.
//!
//! Every parameter is a placeholder (fed per run), and the session runs with
//! Grappler and constant folding off (`graph::config_proto`), so
//! each op runs its own kernel as in eager mode; Grappler's remapper would
//! otherwise rewrite an inference `FusedBatchNorm` (bn-semantics §0).
//! Virtual batches (`virtual_batch_size`) are not built; [`TfBatchNorm::new`]
//! says so.

use tensorflow::{ops, DataType, Operation, Output, Session, Tensor};

use super::graph::{self, run_f32, G};
use super::{tf_error, TfRuntime};
use crate::bn::{decay_python, decay_v1_fused, BnApi, BnConfig, BnParams, RenormState};
use crate::error::{Error, Result};

/// The kernel TF runs for a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TfPath {
    /// `FusedBatchNormV3`.
    Fused,
    /// `tf.nn.moments` + `tf.nn.batch_normalization`.
    NonFused,
}

/// Which kernel TF runs for `cfg` on an input of `rank` dimensions with the
/// channel axis `axis` (bn-semantics §0): `fused` always; `keras3` and `nn`
/// never; tf_keras and the v1 layers when the input is 4-D or 5-D with the
/// channel axis 1 or last, without renorm or virtual batches, unless
/// `fused = Some(false)`.
pub fn tf_path(cfg: &BnConfig, rank: usize, axis: usize) -> Result<TfPath> {
    let fusable = matches!(rank, 4 | 5) && (axis == 1 || axis + 1 == rank);
    match cfg.api {
        BnApi::Fused => {
            if fusable {
                Ok(TfPath::Fused)
            } else {
                Err(Error::InvalidArgument(format!(
                    "FusedBatchNormV3 takes 4-D or 5-D inputs with the channel axis 1 or last (rank {rank}, axis {axis})"
                )))
            }
        }
        BnApi::Keras3 | BnApi::Nn => Ok(TfPath::NonFused),
        BnApi::TfKeras | BnApi::Tf1Layers => {
            let can = fusable && cfg.renorm.is_none() && cfg.virtual_batch_size.is_none();
            match cfg.fused {
                Some(false) => Ok(TfPath::NonFused),
                Some(true) if !can => Err(Error::InvalidArgument(format!(
                    "{}: fused=True is not possible here (rank {rank}, axis {axis})",
                    cfg.api
                ))),
                _ => Ok(if can { TfPath::Fused } else { TfPath::NonFused }),
            }
        }
    }
}

/// What TF returned for one run.
#[derive(Debug, Clone, PartialEq)]
pub struct TfBnOutputs {
    /// The normalized tensor (row-major, the input's shape).
    pub y: Vec<f32>,
    /// Training: the batch mean as the API exposes it (fused: output 1 of
    /// the op; non-fused: the `tf.nn.moments` mean).
    pub batch_mean: Option<Vec<f32>>,
    /// Training: the batch variance as the API exposes it (fused: output 2;
    /// non-fused: the biased `tf.nn.moments` variance).
    pub batch_variance: Option<Vec<f32>>,
    /// Training: `moving_mean` after the update (`None` for `nn`).
    pub moving_mean: Option<Vec<f32>>,
    /// Training: `moving_variance` after the update (`None` for `nn`).
    pub moving_variance: Option<Vec<f32>>,
    /// Training with renorm: the renorm variables after the update.
    pub renorm: Option<RenormState<f32>>,
}

/// Placeholders for the layer's variables.
struct ParamOps {
    gamma: Option<Operation>,
    beta: Option<Operation>,
    moving_mean: Operation,
    moving_variance: Operation,
    moving_stddev: Option<Operation>,
    renorm_mean: Option<Operation>,
    renorm_stddev: Option<Operation>,
}

/// Which outputs were requested, in fetch order.
#[derive(Default)]
struct OutputIndex {
    batch: Option<(usize, usize)>,
    moving: Option<(usize, usize)>,
    renorm: Option<(usize, usize, usize)>,
}

/// A TF graph of one layer's batch norm in one mode, built once and run on
/// any number of inputs of its shape.
pub struct TfBatchNorm {
    session: Session,
    x: Operation,
    params: ParamOps,
    outputs: Vec<Output>,
    index: OutputIndex,
    shape: Vec<usize>,
    channels: usize,
    path: TfPath,
    training: bool,
    // Keeps the graph alive as long as the session.
    _graph: G,
}

impl std::fmt::Debug for TfBatchNorm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TfBatchNorm")
            .field("shape", &self.shape)
            .field("path", &self.path)
            .field("training", &self.training)
            .finish()
    }
}

/// `FusedBatchNormV3`'s `data_format` for a fusable layout.
fn data_format(rank: usize, axis: usize) -> &'static str {
    match (rank, axis == 1) {
        (4, false) => "NHWC",
        (4, true) => "NCHW",
        (_, false) => "NDHWC",
        (_, true) => "NCDHW",
    }
}

impl TfBatchNorm {
    /// Builds the graph for `cfg` on `float32` inputs of `shape`, in
    /// training mode (`training`) or inference mode. `params` says which
    /// optional variables exist (their values are fed by [`run`](Self::run)).
    pub fn new(
        rt: &TfRuntime,
        cfg: &BnConfig,
        shape: &[usize],
        training: bool,
        params: &BnParams,
    ) -> Result<TfBatchNorm> {
        graph::check_dims(shape)?;
        let rank = shape.len();
        let axis = cfg.resolved_axis(rank)?;
        cfg.check_validity(rank, shape[axis])?;
        if cfg.virtual_batch_size.is_some() {
            return Err(Error::InvalidArgument(
                "the TensorFlow side of verify does not build virtual batches (virtual_batch_size)"
                    .into(),
            ));
        }
        let c = shape[axis];
        let path = tf_path(cfg, rank, axis)?;
        let mut g = G::new();
        let f32t = DataType::Float;
        let x = g.placeholder(f32t, shape)?;
        let ph = |g: &mut G, present: bool| -> Result<Option<Operation>> {
            if present {
                g.placeholder(f32t, &[c]).map(Some)
            } else {
                Ok(None)
            }
        };
        let renorm_on = cfg.renorm.is_some();
        let p = ParamOps {
            gamma: ph(&mut g, cfg.scale)?,
            beta: ph(&mut g, cfg.center)?,
            moving_mean: g.placeholder(f32t, &[c])?,
            moving_variance: g.placeholder(f32t, &[c])?,
            moving_stddev: ph(&mut g, renorm_on)?,
            renorm_mean: ph(&mut g, renorm_on)?,
            renorm_stddev: ph(&mut g, renorm_on)?,
        };
        if renorm_on && params.renorm.is_none() {
            return Err(Error::TensorMismatch {
                key: "renorm".into(),
                what:
                    "renorm is on but the layer has no moving_stddev / renorm_mean / renorm_stddev"
                        .into(),
            });
        }
        let (outputs, index) = match path {
            TfPath::Fused => build_fused(&mut g, cfg, &x, &p, rank, axis, c, training)?,
            TfPath::NonFused => build_nonfused(&mut g, cfg, &x, &p, rank, axis, c, training)?,
        };
        let session = graph::session(&g.graph(), rt.host.threads)?;
        Ok(TfBatchNorm {
            session,
            x,
            params: p,
            outputs,
            index,
            shape: shape.to_vec(),
            channels: c,
            path,
            training,
            _graph: g,
        })
    }

    /// The kernel this graph runs.
    pub fn path(&self) -> TfPath {
        self.path
    }

    /// Runs the graph on `x` (row-major, the shape given to
    /// [`new`](Self::new)) with the layer's variables `params`.
    pub fn run(&self, x: &[f32], params: &BnParams) -> Result<TfBnOutputs> {
        let c = self.channels;
        let vec_t = |name: &str, v: &[f32]| -> Result<Tensor<f32>> {
            if v.len() != c {
                return Err(Error::TensorMismatch {
                    key: name.into(),
                    what: format!("has {} values; the layer has {c} channels", v.len()),
                });
            }
            graph::tensor(&[c], v)
        };
        let need = |name: &str, v: Option<&Vec<f32>>| -> Result<Tensor<f32>> {
            match v {
                Some(v) => vec_t(name, v),
                None => Err(Error::TensorMismatch {
                    key: name.into(),
                    what: "the graph needs it but the layer has none".into(),
                }),
            }
        };
        let xt = graph::tensor(&self.shape, x)?;
        let mut owned: Vec<(&Operation, Tensor<f32>)> = vec![
            (
                &self.params.moving_mean,
                vec_t("moving_mean", &params.moving_mean)?,
            ),
            (
                &self.params.moving_variance,
                vec_t("moving_variance", &params.moving_variance)?,
            ),
        ];
        if let Some(op) = &self.params.gamma {
            owned.push((op, need("gamma", params.gamma.as_ref())?));
        }
        if let Some(op) = &self.params.beta {
            owned.push((op, need("beta", params.beta.as_ref())?));
        }
        let rn = params.renorm.as_ref();
        if let Some(op) = &self.params.moving_stddev {
            owned.push((op, need("moving_stddev", rn.map(|r| &r.moving_stddev))?));
        }
        if let Some(op) = &self.params.renorm_mean {
            owned.push((op, need("renorm_mean", rn.map(|r| &r.renorm_mean))?));
        }
        if let Some(op) = &self.params.renorm_stddev {
            owned.push((op, need("renorm_stddev", rn.map(|r| &r.renorm_stddev))?));
        }
        let mut feeds: Vec<(&Operation, &Tensor<f32>)> = vec![(&self.x, &xt)];
        feeds.extend(owned.iter().map(|(o, t)| (*o, t)));
        let outs: Vec<&Output> = self.outputs.iter().collect();
        let got = run_f32(&self.session, &feeds, &outs)?;
        // Fused outputs 1 and 2 serve as batch and moving statistics both.
        let take = |i: usize| got[i].1.clone();
        let y = take(0);
        let (batch_mean, batch_variance) = match self.index.batch {
            Some((m, v)) => (Some(take(m)), Some(take(v))),
            None => (None, None),
        };
        let (moving_mean, moving_variance) = match self.index.moving {
            Some((m, v)) => (Some(take(m)), Some(take(v))),
            None => (None, None),
        };
        let renorm = self.index.renorm.map(|(s, m, d)| RenormState {
            moving_stddev: take(s),
            renorm_mean: take(m),
            renorm_stddev: take(d),
        });
        Ok(TfBnOutputs {
            y,
            batch_mean,
            batch_variance,
            moving_mean,
            moving_variance,
            renorm,
        })
    }
}

fn op_err(what: &'static str) -> impl Fn(tensorflow::Status) -> Error {
    move |s| tf_error(what, s)
}

#[allow(clippy::too_many_arguments)]
fn build_fused(
    g: &mut G,
    cfg: &BnConfig,
    x: &Operation,
    p: &ParamOps,
    rank: usize,
    axis: usize,
    c: usize,
    training: bool,
) -> Result<(Vec<Output>, OutputIndex)> {
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
    let fbn = ops::FusedBatchNormV3::new()
        .epsilon(cfg.epsilon as f32)
        .exponential_avg_factor(factor)
        .data_format(data_format(rank, axis))
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
    index.batch = Some((1, 2));
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
            index.moving = Some((3, 4));
        }
        _ => {
            // The kernel's outputs 1 and 2 are the new moving statistics.
            index.moving = Some((1, 2));
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
fn keras3_update(g: &mut G, old: Output, value: Output, momentum: f64) -> Result<Output> {
    let m = g.scalar_f32(momentum as f32)?;
    let one_minus = g.scalar_f32((1.0 - momentum) as f32)?;
    let a = g.mul(old, m)?;
    let b = g.mul(value, one_minus)?;
    g.add(a, b)
}

/// The moving-average update of a non-fused API.
fn update(g: &mut G, api: BnApi, old: Output, value: Output, momentum: f64) -> Result<Output> {
    match api {
        BnApi::Keras3 => keras3_update(g, old, value, momentum),
        _ => {
            // tf.convert_to_tensor(1.0 - momentum): a float32 of the double.
            let decay = g.scalar_f32(decay_python(momentum))?;
            assign_sub_update(g, old, value, decay)
        }
    }
}

/// `tf.nn.batch_normalization(x, mean, variance, offset, scale, ε)`:
/// `inv = rsqrt(variance + ε)`, `inv *= scale`,
/// `y = x·inv + (offset − mean·inv)` (or `− mean·inv` without offset).
fn batch_normalization(
    g: &mut G,
    x: Output,
    mean: Output,
    variance: Output,
    offset: Option<Output>,
    scale: Option<Output>,
    eps: f32,
) -> Result<Output> {
    let e = g.scalar_f32(eps)?;
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

#[allow(clippy::too_many_arguments)]
fn build_nonfused(
    g: &mut G,
    cfg: &BnConfig,
    x: &Operation,
    p: &ParamOps,
    rank: usize,
    axis: usize,
    c: usize,
    training: bool,
) -> Result<(Vec<Output>, OutputIndex)> {
    // Per-channel vectors broadcast against x as [1, …, C, …, 1].
    let mut bshape = vec![1i32; rank];
    bshape[axis] = c as i32;
    let bshape_t = g.i32s(&bshape)?;
    let flat_t = g.i32s(&[c as i32])?;
    let eps = cfg.epsilon as f32;
    let gamma: Option<Output> = p.gamma.clone().map(Output::from);
    let beta: Option<Output> = p.beta.clone().map(Output::from);
    let mut index = OutputIndex::default();
    if !training {
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
        let y = batch_normalization(g, x.clone().into(), mean, var, of, sc, eps)?;
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
            let e = g.scalar_f32(eps)?;
            let ve = g.add(var.clone(), e.clone())?;
            let stddev = g.sqrt(ve)?;
            let sqrt_eps = g.sqrt(e.clone())?;
            let rs = g.maximum(rsd.clone(), sqrt_eps)?;
            let mut r = g.div(stddev.clone(), rs.clone())?;
            let dm = g.sub(mean.clone(), rm.clone())?;
            let mut d = g.div(dm, rs)?;
            if let Some(rmin) = rn.rmin {
                let v = g.scalar_f32(rmin as f32)?;
                r = g.maximum(r, v)?;
            }
            if let Some(rmax) = rn.rmax {
                let v = g.scalar_f32(rmax as f32)?;
                r = g.minimum(r, v)?;
            }
            if let Some(dmax) = rn.dmax {
                let lo = g.scalar_f32(-dmax as f32)?;
                let hi = g.scalar_f32(dmax as f32)?;
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
            let new_rm = update(g, cfg.api, rm, mean.clone(), rmom)?;
            let new_rsd = update(g, cfg.api, rsd, stddev.clone(), rmom)?;
            let new_mm = update(g, cfg.api, p.moving_mean.clone().into(), mean.clone(), m)?;
            // tf_keras recomputes sqrt(new_variance + ε); the same bits.
            let e2 = g.scalar_f32(eps)?;
            let ve2 = g.add(var.clone(), e2)?;
            let stddev2 = g.sqrt(ve2)?;
            let new_ms = update(g, cfg.api, ms, stddev2, m)?;
            let sq_ms = g.mul(new_ms.clone(), new_ms.clone())?;
            let e3 = g.scalar_f32(eps)?;
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
    let y = batch_normalization(g, x.clone().into(), mean_k, var_k, of, sc, eps)?;
    outputs.push(y);
    outputs.push(mean.clone());
    outputs.push(var.clone());
    index.batch = Some((1, 2));
    match (cfg.api, renorm_out) {
        (BnApi::Nn, _) => {}
        (_, None) => {
            let mm = update(g, cfg.api, p.moving_mean.clone().into(), mean, cfg.momentum)?;
            let mv = update(
                g,
                cfg.api,
                p.moving_variance.clone().into(),
                var,
                cfg.momentum,
            )?;
            outputs.push(mm);
            outputs.push(mv);
            index.moving = Some((3, 4));
        }
        (_, Some((mm, mv, ms, rm, rsd))) => {
            outputs.extend([mm, mv, ms, rm, rsd]);
            index.moving = Some((3, 4));
            index.renorm = Some((5, 6, 7));
        }
    }
    Ok((outputs, index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_rule_follows_tf() {
        let c = |api, fused| BnConfig {
            api,
            fused,
            ..Default::default()
        };
        assert_eq!(
            tf_path(&c(BnApi::TfKeras, None), 4, 3).unwrap(),
            TfPath::Fused
        );
        assert_eq!(
            tf_path(&c(BnApi::TfKeras, None), 4, 1).unwrap(),
            TfPath::Fused
        );
        assert_eq!(
            tf_path(&c(BnApi::TfKeras, None), 4, 2).unwrap(),
            TfPath::NonFused
        );
        assert_eq!(
            tf_path(&c(BnApi::TfKeras, None), 2, 1).unwrap(),
            TfPath::NonFused
        );
        assert_eq!(
            tf_path(&c(BnApi::Tf1Layers, Some(false)), 4, 3).unwrap(),
            TfPath::NonFused
        );
        assert!(tf_path(&c(BnApi::Tf1Layers, Some(true)), 2, 1).is_err());
        assert_eq!(
            tf_path(&c(BnApi::Keras3, None), 4, 3).unwrap(),
            TfPath::NonFused
        );
        assert!(tf_path(&c(BnApi::Fused, None), 2, 1).is_err());
        assert_eq!(
            tf_path(&c(BnApi::Fused, None), 5, 1).unwrap(),
            TfPath::Fused
        );
        assert_eq!(data_format(5, 4), "NDHWC");
        assert_eq!(data_format(4, 1), "NCHW");
    }
}
