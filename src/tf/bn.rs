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
//! otherwise rewrite an inference `FusedBatchNorm` (bn-semantics §0).
//! Virtual batches (`virtual_batch_size`) are not built; [`TfBatchNorm::new`]
//! says so.

use half::{bf16, f16};
use serde::Serialize;
use tensorflow::{
    ops, BFloat16, DataType, FetchToken, Operation, Output, Session, SessionRunArgs, Tensor,
};

use super::graph::{self, G};
use super::{tf_error, TfRuntime};
use crate::bn::{decay_python, decay_v1_fused, BnApi, BnConfig, BnInput, BnParams, RenormState};
use crate::error::{Error, Result};

/// The element type of a batch-norm input and output (`x`, `y`).
///
/// TF keeps the layer's variables and statistics in `float32` for `float32`,
/// `float16` and `bfloat16` inputs (the fused op's `U`, the Keras layers'
/// upcast), and in `float64` for a `float64` layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum BnDtype {
    /// `float32`.
    #[serde(rename = "float32")]
    F32,
    /// `float16` (IEEE half).
    #[serde(rename = "float16")]
    F16,
    /// `bfloat16`.
    #[serde(rename = "bfloat16")]
    BF16,
    /// `float64`.
    #[serde(rename = "float64")]
    F64,
}

impl BnDtype {
    /// Every type, in report order.
    pub const ALL: [BnDtype; 4] = [BnDtype::F32, BnDtype::F16, BnDtype::BF16, BnDtype::F64];

    /// TF's name: `float32`, `float16`, `bfloat16`, `float64`.
    pub fn name(self) -> &'static str {
        self.dtype().name()
    }

    /// The short name: `f32`, `f16`, `bf16`, `f64`.
    pub fn short(self) -> &'static str {
        match self {
            BnDtype::F32 => "f32",
            BnDtype::F16 => "f16",
            BnDtype::BF16 => "bf16",
            BnDtype::F64 => "f64",
        }
    }

    /// Parses a short name or TF's name (case-insensitive).
    pub fn parse(s: &str) -> Option<BnDtype> {
        let s = s.trim().to_ascii_lowercase();
        BnDtype::ALL
            .into_iter()
            .find(|d| d.short() == s || d.name() == s)
    }

    /// The same type as a [`crate::DType`].
    pub fn dtype(self) -> crate::DType {
        match self {
            BnDtype::F32 => crate::DType::F32,
            BnDtype::F16 => crate::DType::F16,
            BnDtype::BF16 => crate::DType::BF16,
            BnDtype::F64 => crate::DType::F64,
        }
    }

    /// The type of the layer's variables and statistics: `float64` for a
    /// `float64` input, `float32` otherwise.
    pub fn stats_dtype(self) -> BnDtype {
        match self {
            BnDtype::F64 => BnDtype::F64,
            _ => BnDtype::F32,
        }
    }

    fn tf_type(self) -> DataType {
        match self {
            BnDtype::F32 => DataType::Float,
            BnDtype::F16 => DataType::Half,
            BnDtype::BF16 => DataType::BFloat16,
            BnDtype::F64 => DataType::Double,
        }
    }
}

impl std::fmt::Display for BnDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.short())
    }
}

/// A flat, row-major array of one of batch norm's element types.
#[derive(Debug, Clone, PartialEq)]
pub enum FloatVec {
    /// `float32`.
    F32(Vec<f32>),
    /// `float16`.
    F16(Vec<f16>),
    /// `bfloat16`.
    BF16(Vec<bf16>),
    /// `float64`.
    F64(Vec<f64>),
}

impl FloatVec {
    /// The element type.
    pub fn dtype(&self) -> BnDtype {
        match self {
            FloatVec::F32(_) => BnDtype::F32,
            FloatVec::F16(_) => BnDtype::F16,
            FloatVec::BF16(_) => BnDtype::BF16,
            FloatVec::F64(_) => BnDtype::F64,
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        match self {
            FloatVec::F32(v) => v.len(),
            FloatVec::F16(v) => v.len(),
            FloatVec::BF16(v) => v.len(),
            FloatVec::F64(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `values` rounded to `dtype` (to nearest, ties to even).
    pub fn from_f64(dtype: BnDtype, values: &[f64]) -> FloatVec {
        match dtype {
            BnDtype::F32 => FloatVec::F32(values.iter().map(|&v| v as f32).collect()),
            BnDtype::F16 => FloatVec::F16(values.iter().map(|&v| f16::from_f64(v)).collect()),
            BnDtype::BF16 => FloatVec::BF16(values.iter().map(|&v| bf16::from_f64(v)).collect()),
            BnDtype::F64 => FloatVec::F64(values.to_vec()),
        }
    }

    /// `float32` values widened to `dtype`'s statistics type ([`BnDtype::stats_dtype`]):
    /// the layer's variables as a layer of that type holds them.
    pub fn params(dtype: BnDtype, values: &[f32]) -> FloatVec {
        match dtype.stats_dtype() {
            BnDtype::F64 => FloatVec::F64(values.iter().map(|&v| v as f64).collect()),
            _ => FloatVec::F32(values.to_vec()),
        }
    }

    /// Every element as `f32`: exact for `float32`, `float16` and
    /// `bfloat16`, rounded to nearest for `float64` (for the diagnosis, which
    /// works on `f32`).
    pub fn to_f32_lossy(&self) -> Vec<f32> {
        match self {
            FloatVec::F32(v) => v.clone(),
            FloatVec::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
            FloatVec::BF16(v) => v.iter().map(|x| x.to_f32()).collect(),
            FloatVec::F64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// Every element widened to `f64` (exact).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match self {
            FloatVec::F32(v) => v.iter().map(|&x| x as f64).collect(),
            FloatVec::F16(v) => v.iter().map(|x| x.to_f64()).collect(),
            FloatVec::BF16(v) => v.iter().map(|x| x.to_f64()).collect(),
            FloatVec::F64(v) => v.clone(),
        }
    }

    /// The `float32` values, if that is the type.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match self {
            FloatVec::F32(v) => Some(v),
            _ => None,
        }
    }

    /// The elements of a [`BnInput`] in row-major order.
    pub fn from_bn(x: &BnInput) -> FloatVec {
        match x {
            BnInput::F32(a) => FloatVec::F32(a.iter().copied().collect()),
            BnInput::F16(a) => FloatVec::F16(a.iter().copied().collect()),
            BnInput::BF16(a) => FloatVec::BF16(a.iter().copied().collect()),
            BnInput::F64(a) => FloatVec::F64(a.iter().copied().collect()),
        }
    }

    /// A [`BnInput`] of `shape` holding these elements.
    pub fn to_bn(&self, shape: &[usize]) -> Result<BnInput> {
        use ndarray::{ArrayD, IxDyn};
        let bad =
            |e: ndarray::ShapeError| Error::InvalidArgument(format!("input shape {shape:?}: {e}"));
        let sh = IxDyn(shape);
        Ok(match self {
            FloatVec::F32(v) => BnInput::F32(ArrayD::from_shape_vec(sh, v.clone()).map_err(bad)?),
            FloatVec::F16(v) => BnInput::F16(ArrayD::from_shape_vec(sh, v.clone()).map_err(bad)?),
            FloatVec::BF16(v) => BnInput::BF16(ArrayD::from_shape_vec(sh, v.clone()).map_err(bad)?),
            FloatVec::F64(v) => BnInput::F64(ArrayD::from_shape_vec(sh, v.clone()).map_err(bad)?),
        })
    }
}

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
/// channel axis `axis` and element type `dtype` (bn-semantics §0): `fused`
/// always; `keras3` and `nn` never; tf_keras and the v1 layers when the
/// input is 4-D or 5-D with the channel axis 1 or last, without renorm or
/// virtual batches, and not `float64` (tf_keras's
/// `_raise_if_fused_cannot_be_used`), unless `fused = Some(false)`.
///
/// This repeats `tfbn::bn`'s own (crate-private) rule, so that the TF side
/// does not depend on the native side's choice; `tests` pin both.
pub fn tf_path(cfg: &BnConfig, rank: usize, axis: usize, dtype: BnDtype) -> Result<TfPath> {
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
                && dtype != BnDtype::F64;
            match cfg.fused {
                Some(false) => Ok(TfPath::NonFused),
                Some(true) if !can => Err(Error::InvalidArgument(format!(
                    "{}: fused=True is not possible here (rank {rank}, axis {axis}, {})",
                    cfg.api,
                    dtype.name()
                ))),
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
pub fn dtype_not_applicable(cfg: &BnConfig, dtype: BnDtype) -> Option<String> {
    if dtype != BnDtype::F64 {
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
/// statistics in [`BnDtype::stats_dtype`].
#[derive(Debug, Clone, PartialEq)]
pub struct TypedOutputs {
    /// The normalized tensor (row-major, the input's shape).
    pub y: FloatVec,
    /// The statistics the run gives, named as in [`STAT_NAMES`] and in that
    /// order (none in inference; no moving statistics for `nn`).
    pub stats: Vec<(&'static str, FloatVec)>,
}

impl TypedOutputs {
    /// The statistic called `name`, if the run gives it.
    pub fn stat(&self, name: &str) -> Option<&FloatVec> {
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

impl AnyTensor {
    fn of(dims: &[usize], v: &FloatVec) -> Result<AnyTensor> {
        Ok(match v {
            FloatVec::F32(v) => AnyTensor::F32(graph::tensor(dims, v)?),
            FloatVec::F16(v) => AnyTensor::F16(graph::tensor(dims, v)?),
            FloatVec::BF16(v) => {
                let t: Vec<BFloat16> = v.iter().map(|&b| to_tf_bf16(b)).collect();
                AnyTensor::BF16(graph::tensor(dims, &t)?)
            }
            FloatVec::F64(v) => AnyTensor::F64(graph::tensor(dims, v)?),
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

fn fetch_vec(args: &mut SessionRunArgs, tok: FetchToken, dtype: BnDtype) -> Result<FloatVec> {
    let e = |s| tf_error("fetching an output", s);
    Ok(match dtype {
        BnDtype::F32 => FloatVec::F32(args.fetch::<f32>(tok).map_err(e)?.to_vec()),
        BnDtype::F16 => FloatVec::F16(args.fetch::<f16>(tok).map_err(e)?.to_vec()),
        BnDtype::BF16 => FloatVec::BF16(
            args.fetch::<BFloat16>(tok)
                .map_err(e)?
                .iter()
                .map(|&b| from_tf_bf16(b))
                .collect(),
        ),
        BnDtype::F64 => FloatVec::F64(args.fetch::<f64>(tok).map_err(e)?.to_vec()),
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
    dtype: BnDtype,
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
        Self::new_typed(rt, cfg, shape, BnDtype::F32, training, params)
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
        dtype: BnDtype,
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
        let path = tf_path(cfg, rank, axis, dtype)?;
        let mut g = G::new();
        let pt = dtype.stats_dtype().tf_type();
        let x = g.placeholder(dtype.tf_type(), shape)?;
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
            TfPath::Fused => build_fused(&mut g, cfg, &x, &p, l)?,
            TfPath::NonFused if cfg.api == BnApi::Nn && l.is_half() => {
                build_nn_half(&mut g, cfg, &x, &p, l)?
            }
            TfPath::NonFused => build_nonfused(&mut g, cfg, &x, &p, l)?,
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
    pub fn dtype(&self) -> BnDtype {
        self.dtype
    }

    /// Makes the TF tensors for a run on `x` (row-major, the shape and type
    /// given to [`new_typed`](Self::new_typed)) with the layer's variables
    /// `params` (widened to `float64` for a `float64` graph).
    pub fn feeds(&self, x: &FloatVec, params: &BnParams) -> Result<TfFeeds> {
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
            AnyTensor::of(&[c], &FloatVec::params(self.dtype, v))
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
                BnDtype::F32 => drop(args.fetch::<f32>(tok).map_err(e)?),
                BnDtype::F16 => drop(args.fetch::<f16>(tok).map_err(e)?),
                BnDtype::BF16 => drop(args.fetch::<BFloat16>(tok).map_err(e)?),
                BnDtype::F64 => drop(args.fetch::<f64>(tok).map_err(e)?),
            }
        }
        Ok(())
    }

    /// Runs the graph once and copies its outputs out, in their own types.
    pub fn run_typed(&self, feeds: &TfFeeds) -> Result<TypedOutputs> {
        let (mut args, tokens) = self.session_run(feeds)?;
        let sdt = self.dtype.stats_dtype();
        let mut got: Vec<FloatVec> = Vec::with_capacity(tokens.len());
        for (i, tok) in tokens.into_iter().enumerate() {
            got.push(fetch_vec(
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
        let feeds = self.feeds(&FloatVec::F32(x.to_vec()), params)?;
        let t = self.run_typed(&feeds)?;
        TfBnOutputs::from_typed(&t).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "TfBatchNorm::run is for float32 graphs; this one takes {}",
                self.dtype.name()
            ))
        })
    }
}

/// The shape facts the graph builders need.
#[derive(Debug, Clone, Copy)]
struct Layout {
    rank: usize,
    axis: usize,
    c: usize,
    training: bool,
    dtype: BnDtype,
}

impl Layout {
    /// A `float16` or `bfloat16` input.
    fn is_half(&self) -> bool {
        matches!(self.dtype, BnDtype::F16 | BnDtype::BF16)
    }
}

fn op_err(what: &'static str) -> impl Fn(tensorflow::Status) -> Error {
    move |s| tf_error(what, s)
}

fn build_fused(
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
fn build_nn_half(
    g: &mut G,
    cfg: &BnConfig,
    x: &Operation,
    p: &ParamOps,
    l: Layout,
) -> Result<(Vec<Output>, OutputIndex)> {
    let (rank, axis, c) = (l.rank, l.axis, l.c);
    let ht = l.dtype.tf_type();
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
    let (mean_k, var_k) = if l.dtype == BnDtype::F16 {
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

fn build_nonfused(
    g: &mut G,
    cfg: &BnConfig,
    x: &Operation,
    p: &ParamOps,
    l: Layout,
) -> Result<(Vec<Output>, OutputIndex)> {
    let (rank, axis, c) = (l.rank, l.axis, l.c);
    // The compute type: float64 for a float64 layer, else float32 (both
    // Keras layers cast 16-bit inputs to float32 and the output back).
    let dt = l.dtype.stats_dtype().tf_type();
    let half = matches!(l.dtype, BnDtype::F16 | BnDtype::BF16);
    let x: Output = if half {
        g.cast(x.clone(), dt)?
    } else {
        x.clone().into()
    };
    let out_y = |g: &mut G, y: Output| -> Result<Output> {
        if half {
            g.cast(y, l.dtype.tf_type())
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
        (BnApi::Nn, _) => {}
        (_, None) => {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tf_path_f32(cfg: &BnConfig, rank: usize, axis: usize) -> Result<TfPath> {
        tf_path(cfg, rank, axis, BnDtype::F32)
    }

    #[test]
    fn float64_is_never_fused_by_the_keras_layers() {
        let c = |api, fused| BnConfig {
            api,
            fused,
            ..Default::default()
        };
        let f64p = |cfg: &BnConfig| tf_path(cfg, 4, 3, BnDtype::F64);
        assert_eq!(f64p(&c(BnApi::TfKeras, None)).unwrap(), TfPath::NonFused);
        assert!(f64p(&c(BnApi::TfKeras, Some(true))).is_err());
        assert_eq!(f64p(&c(BnApi::Fused, None)).unwrap(), TfPath::Fused);
        assert!(dtype_not_applicable(&c(BnApi::Fused, None), BnDtype::F64).is_some());
        assert!(dtype_not_applicable(&c(BnApi::Tf1Layers, Some(true)), BnDtype::F64).is_some());
        assert!(dtype_not_applicable(&c(BnApi::Tf1Layers, None), BnDtype::F64).is_none());
        assert!(dtype_not_applicable(&c(BnApi::Fused, None), BnDtype::BF16).is_none());
        for d in BnDtype::ALL {
            assert_eq!(BnDtype::parse(d.short()), Some(d));
            assert_eq!(BnDtype::parse(d.name()), Some(d));
        }
    }

    #[test]
    fn path_rule_follows_tf() {
        let c = |api, fused| BnConfig {
            api,
            fused,
            ..Default::default()
        };
        assert_eq!(
            tf_path_f32(&c(BnApi::TfKeras, None), 4, 3).unwrap(),
            TfPath::Fused
        );
        assert_eq!(
            tf_path_f32(&c(BnApi::TfKeras, None), 4, 1).unwrap(),
            TfPath::Fused
        );
        assert_eq!(
            tf_path_f32(&c(BnApi::TfKeras, None), 4, 2).unwrap(),
            TfPath::NonFused
        );
        assert_eq!(
            tf_path_f32(&c(BnApi::TfKeras, None), 2, 1).unwrap(),
            TfPath::NonFused
        );
        assert_eq!(
            tf_path_f32(&c(BnApi::Tf1Layers, Some(false)), 4, 3).unwrap(),
            TfPath::NonFused
        );
        assert!(tf_path_f32(&c(BnApi::Tf1Layers, Some(true)), 2, 1).is_err());
        assert_eq!(
            tf_path_f32(&c(BnApi::Keras3, None), 4, 3).unwrap(),
            TfPath::NonFused
        );
        assert!(tf_path_f32(&c(BnApi::Fused, None), 2, 1).is_err());
        assert_eq!(
            tf_path_f32(&c(BnApi::Fused, None), 5, 1).unwrap(),
            TfPath::Fused
        );
        assert_eq!(data_format(5, 4), "NDHWC");
        assert_eq!(data_format(4, 1), "NCHW");
    }
}
