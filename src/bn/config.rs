//! Which TensorFlow API a layer came from, and its hyper-parameters.

use crate::error::{Error, Result};

/// The TensorFlow / Keras entry point whose arithmetic to reproduce
/// (docs/bn-arithmetic.md#which-kernel-runs, #moving-averages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BnApi {
    /// `tf.raw_ops.FusedBatchNormV3` (also `tf.nn.fused_batch_norm`) with
    /// `exponential_avg_factor = 1 − momentum`: Eigen's fused kernel, formula
    /// F1; its outputs 1 and 2 are the new running statistics (Bessel-corrected
    /// variance).
    Fused,
    /// `tf.compat.v1.layers.batch_normalization` run in a graph: the fused
    /// kernel for 4-D/5-D inputs (factor 1, then `new = old − (old − batch)·decay`
    /// with `decay = 1 − f32(momentum)` computed in `float32`, Bessel-corrected
    /// variance); otherwise the non-fused path with `decay = f32(1 − momentum)`.
    Tf1Layers,
    /// `tf_keras.layers.BatchNormalization` (TF2, eager or `tf.function`):
    /// the fused kernel when TF would choose it (docs/bn-arithmetic.md#which-kernel-runs:
    /// 4-D/5-D, channel axis 1
    /// or last, no renorm, no virtual batch, not `float64`), else
    /// `tf.nn.moments` + formula F2 with the `assign_sub` update.
    TfKeras,
    /// `keras.layers.BatchNormalization` (Keras 3, TF backend): always
    /// `tf.nn.moments` + F2; `new = old·m + batch·(1 − m)` with the biased
    /// variance.
    #[default]
    Keras3,
    /// `tf.nn.moments` + `tf.nn.batch_normalization`: no moving statistics
    /// (inference normalizes with the given mean and variance).
    Nn,
}

impl BnApi {
    /// All APIs, in [`BnApi::label`] order.
    pub const ALL: [BnApi; 5] = [
        BnApi::Fused,
        BnApi::Tf1Layers,
        BnApi::TfKeras,
        BnApi::Keras3,
        BnApi::Nn,
    ];

    /// Parses a label as printed by [`BnApi::label`] (`_` accepted for `-`).
    fn from_label(s: &str) -> Option<BnApi> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "fused" => Some(BnApi::Fused),
            "tf1-layers" => Some(BnApi::Tf1Layers),
            "tf-keras" => Some(BnApi::TfKeras),
            "keras3" => Some(BnApi::Keras3),
            "nn" => Some(BnApi::Nn),
            _ => None,
        }
    }

    /// `"fused"`, `"tf1-layers"`, `"tf-keras"`, `"keras3"` or `"nn"`.
    pub fn label(self) -> &'static str {
        match self {
            BnApi::Fused => "fused",
            BnApi::Tf1Layers => "tf1-layers",
            BnApi::TfKeras => "tf-keras",
            BnApi::Keras3 => "keras3",
            BnApi::Nn => "nn",
        }
    }
}

impl serde::Serialize for BnApi {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.label())
    }
}

crate::label::display_label!(BnApi);

/// Batch renormalization settings (Ioffe 2017; docs/bn-arithmetic.md#renorm).
///
/// Only the Keras-style APIs have renorm; tf_keras then always takes the
/// non-fused path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RenormConfig {
    /// `renorm_clipping["rmax"]`: upper clip of `r`. Default `None` (no clip).
    pub rmax: Option<f64>,
    /// `renorm_clipping["rmin"]`: lower clip of `r`. Default `None`.
    pub rmin: Option<f64>,
    /// `renorm_clipping["dmax"]`: `d` is clipped to `[−dmax, dmax]`.
    /// Default `None`.
    pub dmax: Option<f64>,
    /// `renorm_momentum`: weight of the old value in the `renorm_mean` /
    /// `renorm_stddev` moving averages (TF convention, like `momentum`).
    /// Default `0.99`.
    pub renorm_momentum: f64,
}

impl Default for RenormConfig {
    fn default() -> Self {
        RenormConfig {
            rmax: None,
            rmin: None,
            dmax: None,
            renorm_momentum: 0.99,
        }
    }
}

/// A batch-normalization layer's hyper-parameters, with TF/Keras defaults.
///
/// Hyper-parameters that are Python floats in TF (`epsilon`, `momentum`,
/// the renorm settings) are kept as `f64`, exactly as Python holds them:
/// TF rounds them to the tensor type at different points (`f32(1 − m)`
/// computed in double for Keras, `1 − f32(m)` computed in float for the v1
/// layers, the double itself for `float64` layers), and those roundings are
/// part of the bit-exact result.
#[derive(Debug, Clone, PartialEq)]
pub struct BnConfig {
    /// Small value added to the variance before the reciprocal square root.
    /// Default `1e-3` (all Keras-style APIs; PyTorch uses `1e-5`). TF does
    /// not clamp it: `FusedBatchNormV3` rounds it to `float32` and uses it as
    /// is (docs/bn-arithmetic.md#fused-kernel).
    pub epsilon: f64,
    /// Moving-average momentum in TF's convention: the weight of the **old**
    /// value (`new = m·old + (1 − m)·batch`). Default `0.99`. PyTorch's
    /// `momentum` is the weight of the new value: `momentum_tf = 1 −
    /// momentum_torch`. For [`BnApi::Fused`] the op's
    /// `exponential_avg_factor` is `1 − momentum`.
    pub momentum: f64,
    /// The channel (feature) axis; negative counts from the end. Default
    /// `-1` (NHWC / channels-last); use `1` for NCHW. PyTorch's
    /// `BatchNorm*d` normalize axis 1.
    pub axis: isize,
    /// Add the learned offset `beta`. Default `true`. Keras 3 creates no
    /// `beta` and drops the addition when off; tf_keras's fused path adds a
    /// constant 0 instead (which turns `−0` into `+0`). PyTorch: `affine`.
    pub center: bool,
    /// Multiply by the learned scale `gamma`. Default `true` (see `center`).
    pub scale: bool,
    /// tf_keras / tf1-layers `fused` argument: `None` lets TF's rule decide
    /// (docs/bn-arithmetic.md#which-kernel-runs); `Some(true)` is an error where TF would raise;
    /// `Some(false)` forces the non-fused path. Ignored by the other APIs.
    /// Default `None`.
    pub fused: Option<bool>,
    /// Batch renormalization; `None` (the default) turns it off.
    pub renorm: Option<RenormConfig>,
    /// tf_keras / tf1-layers `virtual_batch_size` (ghost batches): the batch
    /// must be a multiple of it. Default `None`.
    pub virtual_batch_size: Option<usize>,
    /// TF's intra-op thread count. It only matters for a reduction that TF
    /// collapses to a full reduction (a single channel on the non-fused
    /// path), which Eigen shards over threads. Default `None`: this host's
    /// available parallelism (what TF would use here).
    pub intra_op_threads: Option<usize>,
    /// Which API's arithmetic to reproduce. Default [`BnApi::Keras3`].
    pub api: BnApi,
    /// Inference on the fused path computes the non-fused formula instead:
    /// TF's Grappler rewrites an inference `float32` fused op with constant
    /// parameters (a frozen graph) into element-wise ops before it runs
    /// (docs/bn-arithmetic.md#grappler-rewrite). Default `false`.
    pub inference_rewritten: bool,
    /// [`BnApi::Nn`] only: how hand-written code around
    /// `tf.nn.batch_normalization` updates the moving statistics in training
    /// (the assigns its graph holds); `None`, the default: no update
    /// (`tf.nn` alone has no moving statistics).
    pub nn_update: Option<MovingUpdate>,
}

/// A moving-average update written by hand next to `tf.nn` batch norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MovingUpdate {
    /// `moving = moving·m + batch·(1 − m)` (Keras 3's form).
    Interpolate,
    /// `moving −= (moving − batch)·f32(1 − m)` (`assign_sub`, tf_keras's
    /// and TF1's form).
    AssignSub,
}

impl MovingUpdate {
    /// The API whose update has this form (for code that builds updates by
    /// API).
    pub fn api_with_this_form(self) -> BnApi {
        match self {
            MovingUpdate::Interpolate => BnApi::Keras3,
            MovingUpdate::AssignSub => BnApi::TfKeras,
        }
    }
}

impl Default for BnConfig {
    fn default() -> Self {
        BnConfig {
            epsilon: 1e-3,
            momentum: 0.99,
            axis: -1,
            center: true,
            scale: true,
            fused: None,
            renorm: None,
            virtual_batch_size: None,
            intra_op_threads: None,
            api: BnApi::Keras3,
            nn_update: None,
            inference_rewritten: false,
        }
    }
}

/// How the layer is going to run, once the input's rank is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KernelPath {
    /// Eigen's `FusedBatchNormV3` kernel.
    Fused,
    /// `tf.nn.moments` + `tf.nn.batch_normalization` (Eigen element-wise ops).
    NonFused,
}

impl BnConfig {
    /// The channel axis resolved against `rank`, or an error.
    pub fn resolved_axis(&self, rank: usize) -> Result<usize> {
        let r = rank as isize;
        if self.axis < -r || self.axis >= r {
            return Err(Error::InvalidArgument(format!(
                "batch norm: axis {} is out of range for a rank-{rank} input",
                self.axis
            )));
        }
        Ok(if self.axis < 0 {
            (self.axis + r) as usize
        } else {
            self.axis as usize
        })
    }

    /// Checks the configuration against an input of `rank` dimensions with
    /// `channels` entries on the channel axis, the way TF/Keras would when
    /// building the layer: rank 2–5, axis in range, finite epsilon and
    /// momentum, renorm and virtual batches only where the API has them,
    /// `fused = Some(true)` only where TF can fuse.
    pub fn check_validity(&self, rank: usize, channels: usize) -> Result<()> {
        let bad = |m: String| {
            Err(Error::InvalidArgument(format!(
                "batch norm ({}): {m}",
                self.api
            )))
        };
        if !(2..=5).contains(&rank) {
            return bad(format!(
                "inputs of rank {rank} are not supported (rank 2 to 5)"
            ));
        }
        let axis = self.resolved_axis(rank)?;
        let _ = channels;
        if !self.epsilon.is_finite() {
            return bad(format!("epsilon {} is not finite", self.epsilon));
        }
        if !self.momentum.is_finite() {
            return bad(format!("momentum {} is not finite", self.momentum));
        }
        if let Some(rn) = &self.renorm {
            if matches!(self.api, BnApi::Fused | BnApi::Nn) {
                return bad("renorm exists only in the Keras layers".into());
            }
            if let (Some(rmax), Some(rmin)) = (rn.rmax, rn.rmin) {
                if rmax < rmin {
                    return bad(format!("renorm clipping rmax {rmax} < rmin {rmin}"));
                }
            }
            if let Some(dmax) = rn.dmax {
                if dmax < 0.0 {
                    return bad(format!("renorm clipping dmax {dmax} is negative"));
                }
            }
            if !rn.renorm_momentum.is_finite() {
                return bad("renorm_momentum is not finite".into());
            }
        }
        if let Some(v) = self.virtual_batch_size {
            if !matches!(self.api, BnApi::TfKeras | BnApi::Tf1Layers) {
                return bad(
                    "virtual_batch_size exists only in tf_keras and tf.compat.v1.layers".into(),
                );
            }
            if v == 0 {
                return bad("virtual_batch_size must be positive".into());
            }
            if axis == 0 {
                return bad(
                    "with virtual_batch_size the batch axis 0 cannot be the channel axis".into(),
                );
            }
        }
        if self.api == BnApi::Fused && !fusable_layout(rank, axis) {
            return bad(format!(
                "FusedBatchNormV3 takes 4-D or 5-D inputs with the channel axis 1 or last (rank {rank}, axis {axis})"
            ));
        }
        if self.fused == Some(true) && matches!(self.api, BnApi::TfKeras | BnApi::Tf1Layers) {
            if self.renorm.is_some() || self.virtual_batch_size.is_some() {
                return bad("fused=True is not supported with renorm or virtual_batch_size".into());
            }
            if !fusable_layout(rank, axis) {
                return bad(format!(
                    "fused=True needs a 4-D or 5-D input with the channel axis 1 or last (rank {rank}, axis {axis})"
                ));
            }
        }
        Ok(())
    }

    /// The kernel TF runs for this configuration
    /// (docs/bn-arithmetic.md#which-kernel-runs). `is_f64`:
    /// the compute type is `float64` (FusedBatchNorm has no `float64` kernel).
    pub(crate) fn path(&self, rank: usize, axis: usize, is_f64: bool) -> Result<KernelPath> {
        match self.api {
            BnApi::Fused => {
                if is_f64 {
                    return Err(Error::InvalidArgument(
                        "FusedBatchNormV3 has no float64 kernel".into(),
                    ));
                }
                Ok(KernelPath::Fused)
            }
            BnApi::Keras3 | BnApi::Nn => Ok(KernelPath::NonFused),
            BnApi::TfKeras | BnApi::Tf1Layers => {
                let can = fusable_layout(rank, axis)
                    && self.renorm.is_none()
                    && self.virtual_batch_size.is_none()
                    && !is_f64;
                match self.fused {
                    Some(false) => Ok(KernelPath::NonFused),
                    Some(true) if !can => {
                        // Only the reasons that hold, in TF's words
                        // (`_raise_if_fused_cannot_be_used`).
                        let mut why = Vec::new();
                        if !fusable_layout(rank, axis) {
                            why.push(format!(
                                "the input is rank {rank} with the channel axis {axis} (fused needs rank 4 or 5, channel axis 1 or last)"
                            ));
                        }
                        if self.renorm.is_some() {
                            why.push("renorm is on".to_string());
                        }
                        if self.virtual_batch_size.is_some() {
                            why.push("virtual_batch_size is set".to_string());
                        }
                        if is_f64 {
                            why.push(
                                "the input is float64 (the fused kernel takes float16, bfloat16 and float32)"
                                    .to_string(),
                            );
                        }
                        Err(Error::InvalidArgument(format!(
                            "batch norm ({}): the layer has fused=True, which TF refuses here: {}",
                            self.api,
                            why.join("; ")
                        )))
                    }
                    _ => Ok(if can {
                        KernelPath::Fused
                    } else {
                        KernelPath::NonFused
                    }),
                }
            }
        }
    }
}

/// FusedBatchNorm's layouts: NHWC, NCHW, NDHWC, NCDHW.
pub(crate) fn fusable_layout(rank: usize, axis: usize) -> bool {
    matches!(rank, 4 | 5) && (axis == 1 || axis == rank - 1)
}

/// `f32(1 − m)` with `1 − m` computed in double: Keras's `1.0 - momentum`
/// on a Python float, and tf_keras's fused `exponential_avg_factor`.
/// For `m = 0.99` this is `0x3C23D70A`.
pub fn decay_python(momentum: f64) -> f32 {
    (1.0 - momentum) as f32
}

/// `1 − f32(m)` computed in `float32`: the decay of
/// `tf.compat.v1.layers.batch_normalization`'s fused path, where the momentum
/// is a `float32` tensor by then. For `m = 0.99` this is `0x3C23D700`.
pub fn decay_v1_fused(momentum: f64) -> f32 {
    1.0f32 - momentum as f32
}

crate::label::from_label!(BnApi, "API");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decay_constants() {
        assert_eq!(decay_python(0.99).to_bits(), 0x3C23_D70A);
        assert_eq!(decay_v1_fused(0.99).to_bits(), 0x3C23_D700);
        assert_eq!((0.99f64 as f32).to_bits(), 0x3F7D_70A4);
        assert_eq!((1.0f32 - decay_python(0.99)).to_bits(), 0x3F7D_70A4);
        assert_eq!(0.01f32.to_bits(), 0x3C23_D70A);
    }

    #[test]
    fn api_labels_round_trip() {
        for api in BnApi::ALL {
            assert_eq!(BnApi::from_label(api.label()), Some(api));
        }
        assert_eq!(BnApi::from_label("tf1_layers"), Some(BnApi::Tf1Layers));
        assert_eq!(BnApi::from_label("torch"), None);
    }

    #[test]
    fn validity() {
        let c = BnConfig::default();
        assert!(c.check_validity(4, 8).is_ok());
        assert!(c.check_validity(1, 8).is_err());
        assert!(c.check_validity(6, 8).is_err());
        let c = BnConfig {
            axis: 4,
            ..Default::default()
        };
        assert!(c.check_validity(4, 8).is_err());
        let c = BnConfig {
            api: BnApi::Fused,
            ..Default::default()
        };
        assert!(c.check_validity(2, 8).is_err());
        assert!(c.check_validity(5, 8).is_ok());
        let c = BnConfig {
            api: BnApi::Fused,
            axis: 2,
            ..Default::default()
        };
        assert!(c.check_validity(4, 8).is_err());
        let c = BnConfig {
            virtual_batch_size: Some(2),
            ..Default::default()
        };
        assert!(c.check_validity(4, 8).is_err());
        let c = BnConfig {
            api: BnApi::TfKeras,
            virtual_batch_size: Some(2),
            ..Default::default()
        };
        assert!(c.check_validity(4, 8).is_ok());
        let c = BnConfig {
            api: BnApi::TfKeras,
            virtual_batch_size: Some(2),
            axis: 0,
            ..Default::default()
        };
        assert!(c.check_validity(4, 8).is_err());
        let c = BnConfig {
            api: BnApi::TfKeras,
            fused: Some(true),
            renorm: Some(RenormConfig::default()),
            ..Default::default()
        };
        assert!(c.check_validity(4, 8).is_err());
        let c = BnConfig {
            api: BnApi::Nn,
            renorm: Some(RenormConfig::default()),
            ..Default::default()
        };
        assert!(c.check_validity(4, 8).is_err());
        let c = BnConfig {
            renorm: Some(RenormConfig {
                rmax: Some(1.0),
                rmin: Some(2.0),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(c.check_validity(4, 8).is_err());
        let c = BnConfig {
            epsilon: f64::NAN,
            ..Default::default()
        };
        assert!(c.check_validity(4, 8).is_err());
    }

    #[test]
    fn tf_keras_fusing_rule() {
        let c = BnConfig {
            api: BnApi::TfKeras,
            ..Default::default()
        };
        assert_eq!(c.path(4, 3, false).unwrap(), KernelPath::Fused);
        assert_eq!(c.path(4, 1, false).unwrap(), KernelPath::Fused);
        assert_eq!(c.path(5, 4, false).unwrap(), KernelPath::Fused);
        assert_eq!(c.path(4, 2, false).unwrap(), KernelPath::NonFused);
        assert_eq!(c.path(2, 1, false).unwrap(), KernelPath::NonFused);
        assert_eq!(c.path(4, 3, true).unwrap(), KernelPath::NonFused);
        let c = BnConfig {
            api: BnApi::TfKeras,
            fused: Some(true),
            ..Default::default()
        };
        assert!(c.path(2, 1, false).is_err());
        let c = BnConfig {
            api: BnApi::TfKeras,
            fused: Some(false),
            ..Default::default()
        };
        assert_eq!(c.path(4, 3, false).unwrap(), KernelPath::NonFused);
        let c = BnConfig {
            api: BnApi::Keras3,
            ..Default::default()
        };
        assert_eq!(c.path(4, 3, false).unwrap(), KernelPath::NonFused);
    }
}
