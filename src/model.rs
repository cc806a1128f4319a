//! The front door: [`open`] any file tfbn reads and get its batch-norm
//! layers, each with how it was found, its settings and where each came
//! from, its parameters as stored, and the layer itself to run.
//!
//! ```
//! use tfbn::{Mode, Role};
//!
//! // A TF1 checkpoint with its graph beside it (any supported path works:
//! // SavedModel folders, Keras files, frozen graphs).
//! let model = tfbn::open("testdata/tf1_trained/ckpt/model.ckpt")?;
//! for layer in model.bn_layers() {
//!     let s = layer.settings();
//!     println!(
//!         "{}: ε = {} ({}), momentum = {} ({}), assumed: {:?}",
//!         layer.name(),
//!         s.epsilon.value,
//!         s.epsilon.source,
//!         s.momentum.value,
//!         s.momentum.source,
//!         layer.assumed(),
//!     );
//! }
//! let layer = model.layer("batch_normalization_2").expect("the 2-D layer");
//! // Parameters as stored (here float32, shape [C]).
//! let gamma = layer.parameter(Role::Gamma).expect("gamma");
//! assert_eq!(gamma.shape(), &[layer.channels()]);
//! // The layer itself, with TF's CPU arithmetic for its API.
//! let x = tfbn::FloatArray::F32(ndarray::ArrayD::zeros(vec![4, layer.channels()]));
//! let y = layer.apply(&x, Mode::Inference)?;
//! assert_eq!(y.shape(), x.shape());
//! # Ok::<(), tfbn::Error>(())
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD, IxDyn};

use crate::bn::Mode;
use crate::bn::{self, BnApi, BnConfig};
use crate::declared::Declared;
use crate::dtype::FloatArray;
use crate::error::{Error, Result};
use crate::layers::BnRole;
use crate::prepare::prepare_layer;
use crate::source::{Source, SourceFormat};
use crate::tensor::Tensor;
use crate::DType;

// The types a layer's settings, discovery and preparation are made of,
// named here so users can name them.
pub use crate::hyper::{
    Assumed, HyperSource, LayerHyper, RenormClipping, ServingMode, Sourced, VarianceConvention,
};
pub use crate::layers::{BnLayer, FoundBy, VarRef};
pub use crate::mapping::LayerMapping;
pub use crate::prepare::{Overrides, PreparedLayer};

/// What the caller knows that the file does not say: settings per layer
/// glob, name mappings for graph-less files with custom names, the API.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Declared settings (epsilon, momentum, axis, fused, variance), per
    /// layer glob; they win over what the files say and are marked so.
    pub declared: Declared,
    /// Which variables form layers where names follow no convention.
    pub mappings: Vec<LayerMapping>,
    /// The TF API whose arithmetic the layers follow, when the file does
    /// not show it.
    pub api: Option<BnApi>,
}

/// Opens `path` (a checkpoint in any path form, a SavedModel folder, a
/// Keras file, a frozen graph) and prepares every batch-norm layer in it.
pub fn open(path: impl AsRef<Path>) -> Result<Model> {
    open_with(path, &OpenOptions::default())
}

/// [`open`] with the caller's declarations.
pub fn open_with(path: impl AsRef<Path>, options: &OpenOptions) -> Result<Model> {
    let mut source = Source::open(path)?;
    if !options.mappings.is_empty() {
        source.declare_layers(options.mappings.clone());
    }
    let found = crate::find::discover(&source);
    let hyper = crate::hyper::recover(&source, &found)?;
    let overrides = Overrides {
        declared: options.declared.clone(),
        api: options.api,
    };
    let mut layers = Vec::with_capacity(found.len());
    for (l, h) in found.iter().zip(&hyper) {
        let prepared = prepare_layer(&source, l, h, &overrides)?;
        let parameters = stored_parameters(&source, l)?;
        layers.push(Layer {
            prepared,
            parameters,
        });
    }
    Ok(Model { source, layers })
}

/// An opened file and its batch-norm layers.
#[derive(Debug)]
pub struct Model {
    source: Source,
    layers: Vec<Layer>,
}

impl Model {
    /// The path as given.
    pub fn path(&self) -> &Path {
        self.source.path()
    }

    /// What kind of file it is.
    pub fn format(&self) -> SourceFormat {
        self.source.format()
    }

    /// Every batch-norm layer, in a stable order (by the moving mean's
    /// key).
    pub fn bn_layers(&self) -> &[Layer] {
        &self.layers
    }

    /// The layer called `name` (its name or its object path).
    pub fn layer(&self, name: &str) -> Option<&Layer> {
        self.layers.iter().find(|l| {
            l.prepared.layer.name == name || l.prepared.layer.object_path.as_deref() == Some(name)
        })
    }

    /// What the caller should know about how the file was read.
    pub fn notes(&self) -> Vec<String> {
        self.source.notes()
    }

    /// The opened file itself: every variable, the graph, the raw reader.
    pub fn source(&self) -> &Source {
        &self.source
    }
}

/// One batch-norm layer, ready to run.
#[derive(Debug, Clone)]
pub struct Layer {
    prepared: PreparedLayer,
    parameters: BTreeMap<BnRole, FloatArray>,
}

/// A variable's role in a batch-norm layer.
pub type Role = BnRole;

impl Layer {
    /// The layer's name (TF1 scope, Keras layer path, or graph scope).
    pub fn name(&self) -> &str {
        &self.prepared.layer.name
    }

    /// How it was found: naming convention, graph op, Keras config or
    /// declaration.
    pub fn found_by(&self) -> FoundBy {
        self.prepared.layer.found_by
    }

    /// The TF API whose arithmetic it follows, and where that came from.
    pub fn api(&self) -> (BnApi, &'static str) {
        (self.prepared.api, self.prepared.api_source)
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        usize::try_from(self.prepared.layer.channels).unwrap_or(usize::MAX)
    }

    /// The stored dtype of its moving statistics.
    pub fn dtype(&self) -> DType {
        self.prepared.layer.dtype
    }

    /// Every setting with where it came from (file, graph node, Keras
    /// config, declaration, or TF's default).
    pub fn settings(&self) -> &LayerHyper {
        &self.prepared.hyper
    }

    /// The settings that rest on TF's defaults: what nothing in the files
    /// recorded and nobody declared.
    pub fn assumed(&self) -> &[Assumed] {
        &self.prepared.assumed
    }

    /// What the stored moving variance holds (biased or Bessel-corrected),
    /// and why.
    pub fn moving_variance(&self) -> &Sourced<VarianceConvention> {
        &self.prepared.moving_variance
    }

    /// The configuration the native layer runs with.
    pub fn config(&self) -> &BnConfig {
        &self.prepared.config
    }

    /// A parameter as stored (dtype and shape), when the layer has it.
    pub fn parameter(&self, role: Role) -> Option<&FloatArray> {
        self.parameters.get(&role)
    }

    /// The checkpoint key a parameter is stored under.
    pub fn key(&self, role: Role) -> Option<&str> {
        self.prepared.layer.var(role).map(|v| v.key.as_str())
    }

    /// The underlying discovered layer and its preparation.
    pub fn prepared(&self) -> &PreparedLayer {
        &self.prepared
    }

    /// Runs the layer on `x` (float32, float16, bfloat16 or float64) with
    /// TF's CPU arithmetic for its API: `y` in `x`'s type and shape.
    /// Training mode normalizes with the batch statistics; see
    /// [`Layer::train`] for the statistics themselves.
    pub fn apply(&self, x: &FloatArray, mode: Mode) -> Result<FloatArray> {
        let cfg = &self.prepared.config;
        let params = &self.prepared.params;
        if let FloatArray::F64(a) = x {
            let p64 = params.to_f64();
            return Ok(match mode {
                Mode::Inference => FloatArray::F64(bn::inference_f64(cfg, &p64, a.view())?),
                Mode::Training => bn::training_f64(cfg, &p64, a.view())?.y,
            });
        }
        Ok(match mode {
            Mode::Inference => bn::inference(cfg, params, x)?.y,
            Mode::Training => bn::training(cfg, params, x)?.y,
        })
    }

    /// [`Layer::apply`] for `float32`, writing into the caller's buffer of
    /// `x`'s shape (no allocation for `y`).
    pub fn apply_into(&self, x: ArrayViewD<f32>, y: ArrayViewMutD<f32>, mode: Mode) -> Result<()> {
        let cfg = &self.prepared.config;
        let params = &self.prepared.params;
        match mode {
            Mode::Inference => bn::inference_into(cfg, params, x, y),
            Mode::Training => bn::training_into(cfg, params, x, y).map(|_| ()),
        }
    }

    /// One training step: `y` and the batch statistics and updated moving
    /// statistics the API produces (float32 statistics; float64 inputs
    /// widen them back).
    pub fn train(&self, x: &FloatArray) -> Result<bn::Training> {
        bn::training(&self.prepared.config, &self.prepared.params, x)
    }
}

/// Every parameter of `layer` as stored.
fn stored_parameters(source: &Source, layer: &BnLayer) -> Result<BTreeMap<BnRole, FloatArray>> {
    let mut out = BTreeMap::new();
    for (role, v) in &layer.variables {
        let t = source.read(&v.key)?;
        out.insert(*role, float_array(&t, &v.key)?);
    }
    Ok(out)
}

/// A float tensor as a tagged array of its stored type and shape.
fn float_array(t: &Tensor, key: &str) -> Result<FloatArray> {
    let shape: Vec<usize> = t
        .shape
        .iter()
        .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
        .collect();
    let bytes = t.bytes().ok_or_else(|| not_float(key, t.dtype))?;
    fn arr<T>(shape: &[usize], key: &str, v: Vec<T>) -> Result<ArrayD<T>> {
        ArrayD::from_shape_vec(IxDyn(shape), v).map_err(|e| Error::TensorMismatch {
            key: key.to_string(),
            what: format!("{e}"),
        })
    }
    Ok(match t.dtype {
        DType::F32 => FloatArray::F32(arr(
            &shape,
            key,
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        )?),
        DType::F64 => FloatArray::F64(arr(
            &shape,
            key,
            bytes
                .chunks_exact(8)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(c);
                    f64::from_le_bytes(b)
                })
                .collect(),
        )?),
        DType::F16 => FloatArray::F16(arr(
            &shape,
            key,
            bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
        )?),
        DType::BF16 => FloatArray::BF16(arr(
            &shape,
            key,
            bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_bits(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
        )?),
        other => return Err(not_float(key, other)),
    })
}

fn not_float(key: &str, dtype: DType) -> Error {
    Error::TensorMismatch {
        key: key.to_string(),
        what: format!("a batch-norm parameter must be a float, not {dtype}"),
    }
}
