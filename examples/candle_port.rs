//! Porting a TensorFlow model's batch norm to candle, straight from the TF
//! file: `tfbn::open` finds the layers and their settings,
//! `tfbn::candle::Backend` serves their parameters to candle's
//! `VarBuilder`, and candle's own `BatchNorm` runs them.
//!
//! ```text
//! cargo run --example candle_port --features candle -- [PATH]
//! ```
//!
//! PATH defaults to a bundled tf_keras SavedModel. Any file tfbn reads
//! works: checkpoints, SavedModels, Keras files, frozen graphs.

use candle_core::{DType, Device, Tensor};
use candle_nn::{BatchNormConfig, ModuleT, VarBuilder};

/// The bundled default: a tf_keras SavedModel.
pub const DEFAULT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/tfkeras_savedmodel/savedmodel"
);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).unwrap_or_else(|| DEFAULT.into());
    run(&path)
}

/// Builds candle's batch norm for every layer of `path` and runs it.
pub fn run(path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let model = tfbn::open(path)?;
    let vb = VarBuilder::from_backend(
        Box::new(tfbn::candle::Backend::new(&model)),
        DType::F32,
        Device::Cpu,
    );
    for layer in model.bn_layers() {
        let settings = layer.settings();
        if !layer.assumed().is_empty() {
            println!(
                "{}: rests on TF's defaults for {:?}; declare them with tfbn::open_with",
                layer.name(),
                layer.assumed()
            );
        }
        let config = BatchNormConfig {
            eps: settings.epsilon.value,
            remove_mean: true,
            affine: true,
            // candle's momentum is the weight of the new value.
            momentum: 1.0 - settings.momentum.value,
        };
        let c = layer.channels();
        let bn = candle_nn::batch_norm(c, config, vb.pp(tfbn::candle::module(layer)))?;
        // candle normalizes dimension 1: a [2, C] batch.
        let x = Tensor::arange(0f32, (2 * c) as f32, &Device::Cpu)?.reshape((2, c))?;
        let y = bn.forward_t(&x, false)?;
        println!(
            "{}: C = {c}, ε = {} ({}), first outputs {:?}",
            layer.name(),
            settings.epsilon.value,
            settings.epsilon.source,
            &y.flatten_all()?.to_vec1::<f32>()?[..c.min(3)]
        );
    }
    Ok(())
}
