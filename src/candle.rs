//! candle, straight from TF files (feature `candle`): a
//! [`candle_nn::var_builder::SimpleBackend`] over a [`Model`] that serves
//! each batch-norm layer under the names of tfbn's `candle` export preset
//! (`<module>.weight`, `.bias`, `.running_mean`, `.running_var`, with the
//! layer name's `/` as `.`), so that `candle_nn::batch_norm` builds from a
//! checkpoint, SavedModel, Keras file or frozen graph without an export
//! step. ε and momentum come from the model's layers
//! ([`crate::Layer::settings`]).
//!
//! The tensors are the ones the export route writes: stored values in
//! their stored dtype (converted by candle to the dtype asked for), and
//! ones / zeros for a layer without γ / β, as `candle_nn::BatchNorm`
//! needs them.
//!
//! ```no_run
//! use candle_core::{DType, Device};
//! use candle_nn::{BatchNormConfig, VarBuilder};
//!
//! let model = tfbn::open("model.ckpt")?;
//! let layer = model.layer("batch_normalization").expect("layer");
//! let eps = layer.settings().epsilon.value;
//! let vb = VarBuilder::from_backend(Box::new(tfbn::candle::Backend::new(&model)), DType::F32, Device::Cpu);
//! let config = BatchNormConfig { eps, remove_mean: true, affine: true, momentum: 1.0 - layer.settings().momentum.value };
//! let bn = candle_nn::batch_norm(layer.channels(), config, vb.pp(tfbn::candle::module(layer)))?;
//! # let _ = bn;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;

use candle_core::{DType, Device, Shape, Tensor};

use crate::dtype::FloatArray;
use crate::layers::BnRole;
use crate::model::{Layer, Model};

/// The candle module path of `layer` (its name with `/` as `.`), as the
/// `candle` export preset names it.
pub fn module(layer: &Layer) -> String {
    crate::export::preset::Preset::Candle.module_path(layer.name())
}

/// Serves a model's batch-norm parameters to a candle `VarBuilder`.
pub struct Backend {
    tensors: HashMap<String, Tensor>,
}

impl Backend {
    /// Every layer of `model` under the candle preset's names.
    pub fn new(model: &Model) -> Backend {
        let mut tensors = HashMap::new();
        for layer in model.bn_layers() {
            let module = module(layer);
            let c = layer.channels();
            for (role, leaf, fill) in [
                (BnRole::Gamma, "weight", Some(1.0)),
                (BnRole::Beta, "bias", Some(0.0)),
                (BnRole::MovingMean, "running_mean", None),
                (BnRole::MovingVariance, "running_var", None),
            ] {
                let t = match layer.parameter(role) {
                    Some(p) => to_tensor(p),
                    None => fill.and_then(|v| constant(v, c, stored_dtype(layer))),
                };
                if let Some(t) = t {
                    tensors.insert(format!("{module}.{leaf}"), t);
                }
            }
        }
        Backend { tensors }
    }

    /// The names served.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.tensors.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }
}

fn stored_dtype(layer: &Layer) -> DType {
    match layer.parameter(BnRole::MovingMean) {
        Some(FloatArray::F16(_)) => DType::F16,
        Some(FloatArray::BF16(_)) => DType::BF16,
        Some(FloatArray::F64(_)) => DType::F64,
        _ => DType::F32,
    }
}

fn constant(value: f64, c: usize, dtype: DType) -> Option<Tensor> {
    Tensor::full(value as f32, c, &Device::Cpu)
        .and_then(|t| t.to_dtype(dtype))
        .ok()
}

/// A parameter as a 1-D tensor of its stored dtype (the module presets
/// write `[C]` whatever shape the file stores, e.g. ghost batches'
/// `[1, 1, 1, 1, C]`).
fn to_tensor(a: &FloatArray) -> Option<Tensor> {
    let dev = Device::Cpu;
    let r = match a {
        FloatArray::F32(x) => {
            Tensor::from_vec(x.iter().copied().collect::<Vec<_>>(), x.len(), &dev)
        }
        FloatArray::F64(x) => {
            Tensor::from_vec(x.iter().copied().collect::<Vec<_>>(), x.len(), &dev)
        }
        FloatArray::F16(x) => {
            Tensor::from_vec(x.iter().copied().collect::<Vec<_>>(), x.len(), &dev)
        }
        FloatArray::BF16(x) => {
            Tensor::from_vec(x.iter().copied().collect::<Vec<_>>(), x.len(), &dev)
        }
    };
    r.ok()
}

impl candle_nn::var_builder::SimpleBackend for Backend {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.get_unchecked(name, dtype, dev)?;
        if t.shape() != &s {
            return Err(candle_core::Error::UnexpectedShape {
                msg: format!("shape mismatch for {name}"),
                expected: s,
                got: t.shape().clone(),
            }
            .bt());
        }
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let t = self.tensors.get(name).ok_or_else(|| {
            candle_core::Error::CannotFindTensor {
                path: name.to_string(),
            }
            .bt()
        })?;
        t.to_dtype(dtype)?.to_device(dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}
