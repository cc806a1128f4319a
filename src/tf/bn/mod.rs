//! TensorFlow's own batch norm, op for op as each API's Python code calls
//! it, so that the native layer can be compared with it (`tfbn verify`).
//!
//! | API | path | TF ops |
//! |---|---|---|
//! | `fused`, `tf-keras` fused | fused | `FusedBatchNormV3(exponential_avg_factor = f32(1 − m))`; its outputs 1, 2 are the new moving statistics |
//! | `tf1-layers` fused | fused | `FusedBatchNormV3(factor 1)`, then `old − (old − batch)·(1 − f32(m))` with the decay computed by a TF `Sub` in `float32` |
//! | `keras3` | non-fused | `tf.nn.moments` (`Mean`, `SquaredDifference`, `Mean`) + `tf.nn.batch_normalization` (`AddV2`, `Rsqrt`, `Mul`, `Sub`/`Neg`, `AddV2`); `old·f32(m) + batch·f32(1 − m)` |
//! | `tf-keras`, `tf1-layers` non-fused | non-fused | the same moments and normalization; `old − (old − batch)·f32(1 − m)` |
//! | `nn` | non-fused | moments + normalization, no moving statistics; on `float16` / `bfloat16` in the input's type (`build_nn_half`) |
//!
//! Renorm (Keras 3 and tf_keras) follows each layer's
//! `_renorm_correction_and_moments` (`Sqrt`, `Maximum`, `RealDiv`, the
//! clipping order, `_compose_transforms`) and its updates, with
//! `moving_variance = relu(moving_stddev² − ε)`.
//!
//! Every parameter is a placeholder (fed per run), and the session runs with
//! Grappler and constant folding off (`graph::config_proto`), so
//! each op runs its own kernel as in eager mode; Grappler's remapper would
//! otherwise rewrite an inference `FusedBatchNorm` (docs/bn-arithmetic.md#which-kernel-runs).
//! Virtual batches (`virtual_batch_size`) build tf_keras's ghost batch norm
//! in training (reshape to `(vbs, B / vbs, …)`, moments per ghost, updates
//! from their mean); renorm with virtual batches is refused.

use half::{bf16, f16};
use tensorflow::{
    ops, BFloat16, DataType, FetchToken, Operation, Output, Session, SessionRunArgs, Tensor,
};

use super::graph::{self, G};
use super::{tf_error, TfRuntime};
use crate::bn::{decay_python, decay_v1_fused, BnApi, BnConfig, BnParams, RenormState};
use crate::dtype::{flat, FloatArray, FloatDType};
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
/// channel axis `axis` and element type `dtype` (docs/bn-arithmetic.md#which-kernel-runs): `fused`
/// always; `keras3` and `nn` never; tf_keras and the v1 layers when the
/// input is 4-D or 5-D with the channel axis 1 or last, without renorm or
/// virtual batches, and not `float64` (tf_keras's
/// `_raise_if_fused_cannot_be_used`), unless `fused = Some(false)`.
///
/// This repeats `tfbn::bn`'s own (crate-private) rule, so that the TF side
/// does not depend on the native side's choice; `tests` pin both.
pub fn tf_path(cfg: &BnConfig, rank: usize, axis: usize, dtype: FloatDType) -> Result<TfPath> {
    let fusable = matches!(rank, 4 | 5) && (axis == 1 || axis + 1 == rank);
    match cfg.api {
        BnApi::Fused => {
            if fusable {
                // float64: TF itself refuses the op (its `T` has no double).
                Ok(TfPath::Fused)
            } else {
                Err(Error::InvalidArgument(format!(
                    "FusedBatchNormV3 takes 4-D or 5-D inputs with the channel axis 1 or last (rank {rank}, axis {axis})"
                )))
            }
        }
        BnApi::Keras3 | BnApi::Nn => Ok(TfPath::NonFused),
        BnApi::TfKeras | BnApi::Tf1Layers => {
            let can = fusable
                && cfg.renorm.is_none()
                && cfg.virtual_batch_size.is_none()
                && dtype != FloatDType::F64;
            match cfg.fused {
                Some(false) => Ok(TfPath::NonFused),
                Some(true) if !can => {
                    let mut why = Vec::new();
                    if !fusable {
                        why.push(format!(
                            "the input is rank {rank} with the channel axis {axis} (fused needs rank 4 or 5, channel axis 1 or last)"
                        ));
                    }
                    if cfg.renorm.is_some() {
                        why.push("renorm is on".to_string());
                    }
                    if cfg.virtual_batch_size.is_some() {
                        why.push("virtual_batch_size is set".to_string());
                    }
                    if dtype == FloatDType::F64 {
                        why.push("the input is float64 (the fused kernel takes float16, bfloat16 and float32)".to_string());
                    }
                    Err(Error::InvalidArgument(format!(
                        "{}: the layer has fused=True, which TF refuses here: {}",
                        cfg.api,
                        why.join("; ")
                    )))
                }
                _ => Ok(if can { TfPath::Fused } else { TfPath::NonFused }),
            }
        }
    }
}

/// Why the API itself refuses inputs of `dtype` in TF 2.21, or `None` when
/// it takes them. Such a combination is *not applicable*: there is nothing
/// to compare, which is neither a pass nor a failure.
///
/// * The raw op (`fused`) has no `float64` kernel: `FusedBatchNormV3`'s `T`
///   is one of `half`, `bfloat16`, `float` (TF rejects the graph).
/// * tf_keras / the v1 layers with `fused=True` raise `ValueError` for a
///   `float64` compute type (`_raise_if_fused_cannot_be_used`).
pub fn dtype_not_applicable(cfg: &BnConfig, dtype: FloatDType) -> Option<String> {
    if dtype != FloatDType::F64 {
        return None;
    }
    match (cfg.api, cfg.fused) {
        (BnApi::Fused, _) => Some(
            "FusedBatchNormV3 has no float64 kernel (its T is half, bfloat16 or float): \
             the raw op cannot take float64 inputs"
                .into(),
        ),
        (BnApi::TfKeras | BnApi::Tf1Layers, Some(true)) => Some(format!(
            "{} with fused=True raises ValueError for a float64 compute type \
             (_raise_if_fused_cannot_be_used)",
            cfg.api
        )),
        _ => None,
    }
}

/// What TF returned for one run, in `float32` ([`TfBatchNorm::run`]).
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

/// The names of the statistics a training step can give, in report order.
pub const STAT_NAMES: [&str; 7] = [
    "batch_mean",
    "batch_variance",
    "moving_mean",
    "moving_variance",
    "moving_stddev",
    "renorm_mean",
    "renorm_stddev",
];

/// One run's outputs in their own types: `y` in the input's type, the
/// statistics in [`FloatDType::stats_dtype`].
#[derive(Debug, Clone, PartialEq)]
pub struct TypedOutputs {
    /// The normalized tensor (row-major, the input's shape).
    pub y: FloatArray,
    /// The statistics the run gives, named as in [`STAT_NAMES`] and in that
    /// order (none in inference; no moving statistics for `nn`).
    pub stats: Vec<(&'static str, FloatArray)>,
}

impl TypedOutputs {
    /// The statistic called `name`, if the run gives it.
    pub fn stat(&self, name: &str) -> Option<&FloatArray> {
        self.stats.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

impl TfBnOutputs {
    /// The `float32` view of typed outputs; `None` unless every output is
    /// `float32`.
    pub fn from_typed(t: &TypedOutputs) -> Option<TfBnOutputs> {
        let f = |name: &str| -> Option<Option<Vec<f32>>> {
            match t.stat(name) {
                None => Some(None),
                Some(v) => v.as_f32().map(|s| Some(s.to_vec())),
            }
        };
        let renorm = match (f("moving_stddev")?, f("renorm_mean")?, f("renorm_stddev")?) {
            (Some(moving_stddev), Some(renorm_mean), Some(renorm_stddev)) => Some(RenormState {
                moving_stddev,
                renorm_mean,
                renorm_stddev,
            }),
            _ => None,
        };
        Some(TfBnOutputs {
            y: t.y.as_f32()?.to_vec(),
            batch_mean: f("batch_mean")?,
            batch_variance: f("batch_variance")?,
            moving_mean: f("moving_mean")?,
            moving_variance: f("moving_variance")?,
            renorm,
        })
    }
}

/// A TF tensor of one of batch norm's types.
enum AnyTensor {
    F32(Tensor<f32>),
    F16(Tensor<f16>),
    BF16(Tensor<BFloat16>),
    F64(Tensor<f64>),
}

/// `bfloat16` bits → the `tensorflow` crate's type (its `From<f32>`
/// truncates, which is exact for a widened `bfloat16`).
fn to_tf_bf16(v: bf16) -> BFloat16 {
    BFloat16::from(v.to_f32())
}

fn from_tf_bf16(v: BFloat16) -> bf16 {
    bf16::from_bits((f32::from(v).to_bits() >> 16) as u16)
}

/// TF's `DataType` for a batch-norm element type.
pub(crate) fn tf_type(d: FloatDType) -> DataType {
    match d {
        FloatDType::F32 => DataType::Float,
        FloatDType::F16 => DataType::Half,
        FloatDType::BF16 => DataType::BFloat16,
        FloatDType::F64 => DataType::Double,
    }
}

impl AnyTensor {
    fn of(dims: &[usize], v: &FloatArray) -> Result<AnyTensor> {
        Ok(match v {
            FloatArray::F32(v) => AnyTensor::F32(graph::tensor(dims, &flat(v))?),
            FloatArray::F16(v) => AnyTensor::F16(graph::tensor(dims, &flat(v))?),
            FloatArray::BF16(v) => {
                let t: Vec<BFloat16> = v.iter().map(|&b| to_tf_bf16(b)).collect();
                AnyTensor::BF16(graph::tensor(dims, &t)?)
            }
            FloatArray::F64(v) => AnyTensor::F64(graph::tensor(dims, &flat(v))?),
        })
    }

    fn feed<'l>(&'l self, args: &mut SessionRunArgs<'l>, op: &Operation) {
        match self {
            AnyTensor::F32(t) => args.add_feed(op, 0, t),
            AnyTensor::F16(t) => args.add_feed(op, 0, t),
            AnyTensor::BF16(t) => args.add_feed(op, 0, t),
            AnyTensor::F64(t) => args.add_feed(op, 0, t),
        }
    }
}

/// A fetched tensor as an array of its own shape.
fn fetch_array(
    args: &mut SessionRunArgs,
    tok: FetchToken,
    dtype: FloatDType,
) -> Result<FloatArray> {
    fn shaped<T: tensorflow::TensorType, U>(
        t: tensorflow::Tensor<T>,
        f: impl Fn(&T) -> U,
    ) -> Result<ndarray::ArrayD<U>> {
        let dims: Vec<usize> = t.dims().iter().map(|&d| d as usize).collect();
        ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&dims), t.iter().map(f).collect()).map_err(
            |e| {
                Error::InvalidArgument(format!(
                    "TensorFlow returned a tensor of shape {dims:?}: {e}"
                ))
            },
        )
    }
    let e = |s| tf_error("fetching an output", s);
    Ok(match dtype {
        FloatDType::F32 => FloatArray::F32(shaped(args.fetch::<f32>(tok).map_err(e)?, |&v| v)?),
        FloatDType::F16 => FloatArray::F16(shaped(args.fetch::<f16>(tok).map_err(e)?, |&v| v)?),
        FloatDType::BF16 => {
            FloatArray::BF16(shaped(args.fetch::<BFloat16>(tok).map_err(e)?, |&b| {
                from_tf_bf16(b)
            })?)
        }
        FloatDType::F64 => FloatArray::F64(shaped(args.fetch::<f64>(tok).map_err(e)?, |&v| v)?),
    })
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

/// The graph's fetched outputs: `y` first, then the named statistics, each
/// pointing into the list of outputs (the fused op's outputs 1 and 2 serve
/// as batch and moving statistics both).
#[derive(Default)]
struct OutputIndex {
    stats: Vec<(&'static str, usize)>,
}

impl OutputIndex {
    fn add(&mut self, names: &[&'static str], first: usize) {
        for (i, n) in names.iter().enumerate() {
            self.stats.push((n, first + i));
        }
    }
}

/// Inputs for [`TfBatchNorm::run_feeds`], built once: the input tensor and
/// the layer's variables as TF tensors.
pub struct TfFeeds {
    x: AnyTensor,
    params: Vec<(Operation, AnyTensor)>,
}

impl std::fmt::Debug for TfFeeds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TfFeeds")
            .field("params", &self.params.len())
            .finish()
    }
}

/// A TF graph of one layer's batch norm in one mode, built once and run on
/// any number of inputs of its shape and type.
pub struct TfBatchNorm {
    session: Session,
    x: Operation,
    params: ParamOps,
    outputs: Vec<Output>,
    index: OutputIndex,
    shape: Vec<usize>,
    channels: usize,
    path: TfPath,
    dtype: FloatDType,
    training: bool,
    // Keeps the graph alive as long as the session.
    _graph: G,
}

impl std::fmt::Debug for TfBatchNorm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TfBatchNorm")
            .field("shape", &self.shape)
            .field("dtype", &self.dtype)
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
        Self::new_typed(rt, cfg, shape, FloatDType::F32, training, params)
    }

    /// [`new`](Self::new) for inputs of `dtype`, as the API runs them in TF:
    ///
    /// * fused path: `FusedBatchNormV3` with `T = dtype` and `U = float32`
    ///   (TF itself rejects `float64`);
    /// * non-fused path (Keras 3, tf_keras, the v1 layers): `float16` and
    ///   `bfloat16` inputs are cast to `float32`, normalized in `float32`
    ///   and cast back, as both Keras layers do; `float64` runs in
    ///   `float64` with `float64` variables (a layer of dtype `float64`),
    ///   Python floats becoming `float64` constants;
    /// * `nn` with `float16` / `bfloat16`: as `tf.nn.moments` and
    ///   `tf.nn.batch_normalization` run them, the normalization in the
    ///   16-bit type with every parameter cast to it (see `build_nn_half`).
    pub fn new_typed(
        rt: &TfRuntime,
        cfg: &BnConfig,
        shape: &[usize],
        dtype: FloatDType,
        training: bool,
        params: &BnParams,
    ) -> Result<TfBatchNorm> {
        graph::check_dims(shape)?;
        let rank = shape.len();
        let axis = cfg.resolved_axis(rank)?;
        cfg.check_validity(rank, shape[axis])?;
        if let Some(v) = cfg.virtual_batch_size {
            if v == 0 || shape[0] % v != 0 {
                return Err(Error::InvalidArgument(format!(
                    "batch norm: virtual_batch_size {v} does not divide the batch size {}",
                    shape[0]
                )));
            }
        }
        let c = shape[axis];
        let path = tf_path(cfg, rank, axis, dtype)?;
        let mut g = G::new();
        let pt = tf_type(dtype.stats_dtype());
        let x = g.placeholder(tf_type(dtype), shape)?;
        let ph = |g: &mut G, present: bool| -> Result<Option<Operation>> {
            if present {
                g.placeholder(pt, &[c]).map(Some)
            } else {
                Ok(None)
            }
        };
        let renorm_on = cfg.renorm.is_some();
        let p = ParamOps {
            gamma: ph(&mut g, cfg.scale)?,
            beta: ph(&mut g, cfg.center)?,
            moving_mean: g.placeholder(pt, &[c])?,
            moving_variance: g.placeholder(pt, &[c])?,
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
        let l = Layout {
            rank,
            axis,
            c,
            training,
            dtype,
        };
        let (outputs, index) = match path {
            // What Grappler's remapper turns an inference float32 fused op
            // with constant parameters into (a frozen graph's layers): the
            // element-wise formula, built here as `tf.nn.batch_normalization`
            // builds it (sessions here run without Grappler).
            TfPath::Fused if cfg.inference_rewritten && !training && dtype == FloatDType::F32 => {
                let nn = BnConfig {
                    api: BnApi::Nn,
                    ..cfg.clone()
                };
                build_nonfused(&mut g, &nn, &x, &p, l)?
            }
            TfPath::Fused => build_fused(&mut g, cfg, &x, &p, l)?,
            TfPath::NonFused if cfg.api == BnApi::Nn && l.is_half() => {
                build_nn_half(&mut g, cfg, &x, &p, l)?
            }
            TfPath::NonFused => match cfg.virtual_batch_size {
                // Inference with ghost batches is the same element-wise
                // arithmetic on the reshaped input.
                Some(v) if training => build_ghost(&mut g, cfg, &x, &p, l, shape, v)?,
                _ => build_nonfused(&mut g, cfg, &x, &p, l)?,
            },
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
            dtype,
            training,
            _graph: g,
        })
    }

    /// The kernel this graph runs.
    pub fn path(&self) -> TfPath {
        self.path
    }

    /// The input type this graph takes.
    pub fn dtype(&self) -> FloatDType {
        self.dtype
    }

    /// Makes the TF tensors for a run on `x` (row-major, the shape and type
    /// given to [`new_typed`](Self::new_typed)) with the layer's variables
    /// `params` (widened to `float64` for a `float64` graph).
    pub fn feeds(&self, x: &FloatArray, params: &BnParams) -> Result<TfFeeds> {
        if x.dtype() != self.dtype {
            return Err(Error::InvalidArgument(format!(
                "the graph takes {} inputs, not {}",
                self.dtype.name(),
                x.dtype().name()
            )));
        }
        let c = self.channels;
        let vec_t = |name: &str, v: &[f32]| -> Result<AnyTensor> {
            if v.len() != c {
                return Err(Error::TensorMismatch {
                    key: name.into(),
                    what: format!("has {} values; the layer has {c} channels", v.len()),
                });
            }
            AnyTensor::of(&[c], &FloatArray::params(self.dtype, v))
        };
        let need = |name: &str, v: Option<&Vec<f32>>| -> Result<AnyTensor> {
            match v {
                Some(v) => vec_t(name, v),
                None => Err(Error::TensorMismatch {
                    key: name.into(),
                    what: "the graph needs it but the layer has none".into(),
                }),
            }
        };
        let xt = AnyTensor::of(&self.shape, x)?;
        let ops = &self.params;
        let mut feeds: Vec<(Operation, AnyTensor)> = vec![
            (
                ops.moving_mean.clone(),
                vec_t("moving_mean", &params.moving_mean)?,
            ),
            (
                ops.moving_variance.clone(),
                vec_t("moving_variance", &params.moving_variance)?,
            ),
        ];
        if let Some(op) = &ops.gamma {
            feeds.push((op.clone(), need("gamma", params.gamma.as_ref())?));
        }
        if let Some(op) = &ops.beta {
            feeds.push((op.clone(), need("beta", params.beta.as_ref())?));
        }
        let rn = params.renorm.as_ref();
        let renorm_ops = [
            (
                &ops.moving_stddev,
                "moving_stddev",
                rn.map(|r| &r.moving_stddev),
            ),
            (&ops.renorm_mean, "renorm_mean", rn.map(|r| &r.renorm_mean)),
            (
                &ops.renorm_stddev,
                "renorm_stddev",
                rn.map(|r| &r.renorm_stddev),
            ),
        ];
        for (op, name, v) in renorm_ops {
            if let Some(op) = op {
                feeds.push((op.clone(), need(name, v)?));
            }
        }
        Ok(TfFeeds {
            x: xt,
            params: feeds,
        })
    }

    /// One `Session::run` with `feeds`; returns the run's arguments holding
    /// the outputs and the fetch tokens (output order).
    fn session_run<'a>(&self, feeds: &'a TfFeeds) -> Result<(SessionRunArgs<'a>, Vec<FetchToken>)> {
        let mut args = SessionRunArgs::new();
        feeds.x.feed(&mut args, &self.x);
        for (op, t) in &feeds.params {
            t.feed(&mut args, op);
        }
        let tokens: Vec<FetchToken> = self
            .outputs
            .iter()
            .map(|o| args.request_fetch(&o.operation, o.index))
            .collect();
        self.session
            .run(&mut args)
            .map_err(|s| tf_error("running the graph", s))?;
        Ok((args, tokens))
    }

    /// Runs the graph once and takes every output as a TF tensor, without
    /// copying it into Rust vectors (what a benchmark should time: TF's
    /// kernels, its allocation of the outputs and the fetch).
    pub fn run_feeds(&self, feeds: &TfFeeds) -> Result<()> {
        let (mut args, tokens) = self.session_run(feeds)?;
        let sdt = self.dtype.stats_dtype();
        for (i, tok) in tokens.into_iter().enumerate() {
            let dt = if i == 0 { self.dtype } else { sdt };
            let e = |s| tf_error("fetching an output", s);
            match dt {
                FloatDType::F32 => drop(args.fetch::<f32>(tok).map_err(e)?),
                FloatDType::F16 => drop(args.fetch::<f16>(tok).map_err(e)?),
                FloatDType::BF16 => drop(args.fetch::<BFloat16>(tok).map_err(e)?),
                FloatDType::F64 => drop(args.fetch::<f64>(tok).map_err(e)?),
            }
        }
        Ok(())
    }

    /// Runs the graph once and copies its outputs out, in their own types.
    pub fn run_typed(&self, feeds: &TfFeeds) -> Result<TypedOutputs> {
        let (mut args, tokens) = self.session_run(feeds)?;
        let sdt = self.dtype.stats_dtype();
        let mut got: Vec<FloatArray> = Vec::with_capacity(tokens.len());
        for (i, tok) in tokens.into_iter().enumerate() {
            got.push(fetch_array(
                &mut args,
                tok,
                if i == 0 { self.dtype } else { sdt },
            )?);
        }
        let stats = self
            .index
            .stats
            .iter()
            .map(|&(n, i)| (n, got[i].clone()))
            .collect();
        let y = got.swap_remove(0);
        Ok(TypedOutputs { y, stats })
    }

    /// Runs a `float32` graph on `x` (row-major, the shape given to
    /// [`new`](Self::new)) with the layer's variables `params`.
    pub fn run(&self, x: &[f32], params: &BnParams) -> Result<TfBnOutputs> {
        let feeds = self.feeds(
            &FloatArray::F32(ndarray::Array1::from(x.to_vec()).into_dyn()),
            params,
        )?;
        let t = self.run_typed(&feeds)?;
        TfBnOutputs::from_typed(&t).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "TfBatchNorm::run is for float32 graphs; this one takes {}",
                self.dtype.name()
            ))
        })
    }
}

mod graphs;
#[cfg(test)]
mod tests;

use graphs::{build_fused, build_ghost, build_nn_half, build_nonfused, Layout};
