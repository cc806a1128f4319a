//! The report behind `tfbn inspect`: what a checkpoint holds and which
//! batch-norm layers it contains. The JSON form (schema version
//! [`SCHEMA_VERSION`]) is stable; fields are only ever added.
//!
//! ```json
//! {
//!   "schema": 1,
//!   "path": "testdata/tf1_trained/ckpt/model.ckpt",
//!   "format": "checkpoint_v2",
//!   "style": "tf1",
//!   "layers": [{
//!     "name": "batch_normalization", "object_path": null, "channels": 8, "dtype": "float32",
//!     "variables": {"gamma": {"key": "...", "name": "...", "shape": [8], "dtype": "float32"},
//!                   "beta": null, "moving_mean": {...}, "moving_variance": {...}},
//!     "renorm": {"moving_stddev": {...}, "renorm_mean": {...}, "renorm_stddev": {...}},  // only for renorm layers
//!     "moving_mean_range": [-0.1, 0.2], "moving_variance_range": [0.9, 1.3],
//!     "hyper": {"epsilon": {"value": 0.001, "source": {"kind": "graph", "file": "model.ckpt.meta",
//!                           "function": null, "node": "batch_normalization/FusedBatchNormV3",
//!                           "detail": "attr epsilon"}},
//!               "momentum": {...}, "axis": {...}, "center": {...}, "scale": {...},
//!               "fused": {...}, "serving_mode": {...}, "conflicts": []}
//!   }],
//!   "variables": [{"key": "...", "name": "...", "dtype": "float32", "shape": [8], "partitioned": false, "role": "model"}]
//! }
//! ```

use serde::Serialize;

use crate::declared::Declared;
use crate::error::Result;
use crate::find::discover;
use crate::hyper::{
    assumed_with_variance, layer_api, moving_variance_of, recover, Assumed, LayerHyper, Sourced,
    VarianceConvention,
};
use crate::layers::{BnLayer, BnRole, FoundBy, VarRef};
use crate::source::{NamingStyle, Source, SourceFormat, VariableRole};

/// Version of the JSON layout.
pub const SCHEMA_VERSION: u32 = 1;

/// One variable reference in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VarJson {
    /// Checkpoint key.
    pub key: String,
    /// Variable name.
    pub name: String,
    /// Shape.
    pub shape: Vec<u64>,
    /// dtype name.
    pub dtype: String,
}

impl From<&VarRef> for VarJson {
    fn from(v: &VarRef) -> Self {
        VarJson {
            key: v.key.clone(),
            name: v.name.clone(),
            shape: v.shape.clone(),
            dtype: v.dtype.name().to_string(),
        }
    }
}

/// The four core variables of a layer; `null` where the layer has none.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CoreVars {
    /// γ.
    pub gamma: Option<VarJson>,
    /// β.
    pub beta: Option<VarJson>,
    /// Moving mean.
    pub moving_mean: Option<VarJson>,
    /// Moving variance.
    pub moving_variance: Option<VarJson>,
}

/// Renorm variables, present only for renorm layers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RenormVars {
    /// Moving standard deviation.
    pub moving_stddev: Option<VarJson>,
    /// Renorm mean.
    pub renorm_mean: Option<VarJson>,
    /// Renorm standard deviation.
    pub renorm_stddev: Option<VarJson>,
}

/// One layer in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerJson {
    /// Layer name.
    pub name: String,
    /// Owning object path (TF2).
    pub object_path: Option<String>,
    /// How the layer was found: `naming`, `graph` or `declared`.
    pub found_by: FoundBy,
    /// Channel count.
    pub channels: u64,
    /// dtype of the statistics.
    pub dtype: String,
    /// γ, β, moving mean and variance.
    pub variables: CoreVars,
    /// Renorm extras.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renorm: Option<RenormVars>,
    /// `[min, max]` of the moving mean (NaN shown as null).
    pub moving_mean_range: Option<[Option<f64>; 2]>,
    /// `[min, max]` of the moving variance.
    pub moving_variance_range: Option<[Option<f64>; 2]>,
    /// Hyper-parameters, each `{"value", "source"}` (`crate::hyper`).
    pub hyper: LayerHyper,
    /// What the stored moving variance holds (`biased`, `bessel`), with its
    /// source.
    pub moving_variance: Sourced<VarianceConvention>,
    /// Settings that rest on TF's defaults (`epsilon`, `momentum`, `axis`,
    /// `fused`, `moving_variance convention`).
    pub assumed: Vec<Assumed>,
}

/// One variable in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariableJson {
    /// Checkpoint key.
    pub key: String,
    /// Variable name.
    pub name: String,
    /// dtype name.
    pub dtype: String,
    /// Shape.
    pub shape: Vec<u64>,
    /// Stored as slices.
    pub partitioned: bool,
    /// Role.
    pub role: VariableRole,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InspectReport {
    /// [`SCHEMA_VERSION`].
    pub schema: u32,
    /// Path as given.
    pub path: String,
    /// File format.
    pub format: SourceFormat,
    /// Naming style.
    pub style: NamingStyle,
    /// Batch-norm layers.
    pub layers: Vec<LayerJson>,
    /// Every variable.
    pub variables: Vec<VariableJson>,
    /// How the path was read, where that is worth knowing (omitted when
    /// empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

fn range(source: &Source, v: Option<&VarRef>) -> Result<Option<[Option<f64>; 2]>> {
    let Some(v) = v else { return Ok(None) };
    if !v.dtype.is_bn_float() {
        return Ok(None);
    }
    let t = source.read(&v.key)?;
    let Some(values) = t.to_f64_vec() else {
        return Ok(None);
    };
    let mut lo: Option<f64> = None;
    let mut hi: Option<f64> = None;
    for x in values.into_iter().filter(|x| !x.is_nan()) {
        lo = Some(lo.map_or(x, |l| l.min(x)));
        hi = Some(hi.map_or(x, |h| h.max(x)));
    }
    Ok(Some([lo, hi]))
}

fn layer_json(
    source: &Source,
    l: &BnLayer,
    hyper: LayerHyper,
    declared: &Declared,
) -> Result<LayerJson> {
    let j = |r: BnRole| l.var(r).map(VarJson::from);
    let api = layer_api(source, l);
    let moving_variance = declared
        .variance(l)
        .unwrap_or_else(|| moving_variance_of(api, &hyper));
    let assumed = assumed_with_variance(&hyper, api, &moving_variance);
    Ok(LayerJson {
        name: l.name.clone(),
        object_path: l.object_path.clone(),
        found_by: l.found_by,
        channels: l.channels,
        dtype: l.dtype.name().to_string(),
        variables: CoreVars {
            gamma: j(BnRole::Gamma),
            beta: j(BnRole::Beta),
            moving_mean: j(BnRole::MovingMean),
            moving_variance: j(BnRole::MovingVariance),
        },
        renorm: (l.is_renorm() || l.var(BnRole::MovingStddev).is_some()).then(|| RenormVars {
            moving_stddev: j(BnRole::MovingStddev),
            renorm_mean: j(BnRole::RenormMean),
            renorm_stddev: j(BnRole::RenormStddev),
        }),
        moving_mean_range: range(source, l.var(BnRole::MovingMean))?,
        moving_variance_range: range(source, l.var(BnRole::MovingVariance))?,
        hyper,
        moving_variance,
        assumed,
    })
}

/// Builds the report for an opened source. Reads the moving statistics
/// (crc-checked) to compute their ranges, and recovers each layer's
/// hyper-parameters (`recover`).
pub fn inspect(source: &Source) -> Result<InspectReport> {
    inspect_with(source, &Declared::default())
}

/// [`inspect`] with declared settings applied to each layer's
/// hyper-parameters (marked `flag` or `sidecar`).
pub fn inspect_with(source: &Source, declared: &Declared) -> Result<InspectReport> {
    let layers = discover(source);
    declared.check(&layers)?;
    let mut hyper = recover(source, &layers)?;
    for (l, h) in layers.iter().zip(hyper.iter_mut()) {
        declared.apply(l, h);
    }
    Ok(InspectReport {
        schema: SCHEMA_VERSION,
        path: source.path().to_string_lossy().into_owned(),
        format: source.format(),
        style: source.style(),
        layers: layers
            .iter()
            .zip(hyper)
            .map(|(l, h)| layer_json(source, l, h, declared))
            .collect::<Result<_>>()?,
        variables: source
            .variables()
            .iter()
            .map(|v| VariableJson {
                key: v.key.clone(),
                name: v.name.clone(),
                dtype: v.dtype.name().to_string(),
                shape: v.shape.clone(),
                partitioned: v.partitioned,
                role: v.role,
            })
            .collect(),
        notes: source.notes(),
    })
}
