//! A Rust consumer: the `candle` preset loads through candle's own
//! `VarBuilder` into `candle_nn::BatchNorm`, with ε (and momentum) taken
//! from the file's metadata, and reproduces TensorFlow's inference output
//! (`goldens/<layer>/eigen/inference_y.npy`, written by TF itself) for every
//! batch-norm layer of the corpus.
//!
//! candle computes `(x − running_mean) / sqrt(running_var + eps) · weight +
//! bias`, each op rounded in `float32`; TF uses its `rsqrt` (hardware
//! estimate + Newton step) and formula F1 or F2 (docs/bn-arithmetic.md#fused-kernel,
//! #non-fused-path). Not
//! bitwise, then, but within the same bound `--fold` documents
//! (`src/export/fold.rs`): per element
//!
//! ```text
//! |y_candle − y_tf| ≤ 2⁻¹⁹ · (|x·s| + |running_mean·s| + |bias|),  s = weight / sqrt(running_var + eps)
//! ```
//!
//! To first order candle is within `4.5u·|x − mean|·|s| + u·|y|` of the
//! exact value and TF within about `10u·(|x·s| + |mean·s|) + 2u·|bias|`
//! (`u = 2⁻²⁴`); `2⁻¹⁹ = 32u` covers the sum with a factor 2 to spare. The
//! measured worst case is printed (`cargo test --test it candle_consumer
//! -- --nocapture`) and reported in the README.
//!
//! Where tfbn cannot recover a layer's ε from the files (plain checkpoints
//! hold none), the test exports again with `--epsilon LAYER=VALUE` from the
//! fixture's manifest, the way a user would; the metadata then says `flag`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use candle_core::{DType, Device, Tensor};
use candle_nn::{BatchNormConfig, ModuleT, VarBuilder};
use serde_json::Value;

use crate::common::{fixtures, Fixture};

/// The documented tolerance factor (see the module docs).
const TOLERANCE: f64 = 1.0 / (1u64 << 19) as f64;

fn export(fx: &Fixture, out: &Path, extra: &[String]) -> Vec<u8> {
    let open = fx.open_path();
    let mut args: Vec<String> = vec![
        "export".into(),
        open.to_string_lossy().into_owned(),
        "-o".into(),
        out.to_string_lossy().into_owned(),
        "--preset".into(),
        "candle".into(),
        "--force".into(),
        "-q".into(),
    ];
    args.extend_from_slice(extra);
    let o = Command::new(env!("CARGO_BIN_EXE_tfbn"))
        .args(&args)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}: {}",
        fx.name,
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::read(out).unwrap()
}

fn metadata(bytes: &[u8]) -> BTreeMap<String, String> {
    let (_, m) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
    m.metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// The module whose metadata declares the manifest layer's moving_mean key.
fn module_of(meta: &BTreeMap<String, String>, layer: &Value) -> String {
    let key = layer["variables"]["moving_mean"]["key"].as_str().unwrap();
    let modules: Vec<String> = serde_json::from_str(&meta["tfbn.layers"]).unwrap();
    modules
        .into_iter()
        .find(|m| {
            meta.get(&format!("tfbn.layer.{m}.moving_mean_key"))
                .map(String::as_str)
                == Some(key)
        })
        .unwrap_or_else(|| panic!("no layer declares {key}"))
}

fn read_f32_npy(path: &Path) -> (Vec<f32>, Vec<usize>) {
    match tfbn::testing::npy::read_npy(path).unwrap() {
        tfbn::testing::npy::NpyArray::F32(a) => (a.iter().copied().collect(), a.shape().to_vec()),
        other => panic!("{}: {} is not float32", path.display(), other.descr()),
    }
}

fn tensor_f32(vb: &VarBuilder, name: &str, c: usize) -> Vec<f32> {
    vb.get(c, name).unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn candle_batch_norm_matches_tensorflow_within_tolerance() {
    let dir = tempfile::tempdir().unwrap();
    let (mut layers, mut elements, mut flagged) = (0usize, 0usize, 0usize);
    #[allow(unused_mut)]
    let mut direct_routes = 0usize;
    let (mut worst_ratio, mut worst_abs) = (0.0f64, 0.0f64);
    let mut bitwise = 0usize;
    for fx in fixtures().into_iter().filter(|f| !f.layers().is_empty()) {
        let out = dir.path().join(format!("{}.safetensors", fx.name));
        let mut bytes = export(&fx, &out, &[]);
        let mut meta = metadata(&bytes);
        // Give ε where the files did not tell it.
        let mut flags = Vec::new();
        for layer in fx.layers() {
            let module = module_of(&meta, &layer);
            let want = layer["hyper"]["epsilon"].as_f64().unwrap();
            let got: f64 = meta[&format!("tfbn.layer.{module}.epsilon")]
                .parse()
                .unwrap();
            if got as f32 != want as f32 {
                flags.push("--epsilon".to_string());
                flags.push(format!(
                    "{}={want}",
                    meta[&format!("tfbn.layer.{module}.tf_name")]
                ));
            }
        }
        if !flags.is_empty() {
            flagged += flags.len() / 2;
            bytes = export(&fx, &out, &flags);
            meta = metadata(&bytes);
        }
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &Device::Cpu).unwrap();
        #[cfg(feature = "candle")]
        let direct = direct_route(&fx, &flags);
        for layer in fx.layers() {
            // Mixed-precision layers (float16 goldens) are checked by
            // `tfbn apply` (tests/it/keras.rs); candle runs them in float32.
            if layer["input_dtype"]
                .as_str()
                .is_some_and(|d| d != "float32")
            {
                continue;
            }
            let module = module_of(&meta, &layer);
            let pre = format!("tfbn.layer.{module}.");
            let eps: f64 = meta[&format!("{pre}epsilon")].parse().unwrap();
            assert_eq!(
                eps as f32,
                layer["hyper"]["epsilon"].as_f64().unwrap() as f32,
                "{} {module}: metadata epsilon",
                fx.name
            );
            let momentum: f64 = meta[&format!("{pre}momentum_torch")].parse().unwrap();
            let c = layer["channels"].as_u64().unwrap() as usize;
            let config = BatchNormConfig {
                eps,
                remove_mean: true,
                affine: true,
                momentum,
            };
            let bn = candle_nn::batch_norm(c, config, vb.pp(&module)).unwrap();

            let golden = fx.dir.join(layer["golden"].as_str().unwrap());
            let (x, shape) = read_f32_npy(&golden.join("input.npy"));
            let (y_tf, y_shape) = read_f32_npy(&golden.join("eigen/inference_y.npy"));
            assert_eq!(shape, y_shape);
            let axis = layer["hyper"]["axis"][0].as_u64().unwrap() as usize;
            // candle normalizes dimension 1 (NCHW): move the channel axis there.
            let mut perm: Vec<usize> = vec![0, axis];
            perm.extend((1..shape.len()).filter(|&d| d != axis));
            let mut inverse = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inverse[p] = i;
            }
            let xt = Tensor::from_vec(x.clone(), shape.as_slice(), &Device::Cpu)
                .unwrap()
                .permute(perm.clone())
                .unwrap()
                .contiguous()
                .unwrap();
            let y = bn
                .forward_t(&xt, false)
                .unwrap()
                .permute(inverse)
                .unwrap()
                .contiguous()
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();

            #[cfg(feature = "candle")]
            {
                direct_routes += 1;
                check_direct_route(&fx, &direct, &vb, &module, c, config, &xt);
            }

            let mvb = vb.pp(&module);
            let (w, b) = (tensor_f32(&mvb, "weight", c), tensor_f32(&mvb, "bias", c));
            let (m, v) = (
                tensor_f32(&mvb, "running_mean", c),
                tensor_f32(&mvb, "running_var", c),
            );
            let stride: usize = shape[axis + 1..].iter().product();
            for (i, ((&xi, &yc), &yt)) in x.iter().zip(&y).zip(&y_tf).enumerate() {
                let ch = (i / stride) % c;
                let s = w[ch] as f64 / (v[ch] as f64 + eps as f32 as f64).sqrt();
                let bound = TOLERANCE
                    * ((xi as f64 * s).abs() + (m[ch] as f64 * s).abs() + (b[ch] as f64).abs());
                let diff = (yc as f64 - yt as f64).abs();
                assert!(
                    diff <= bound,
                    "{} {module}[{i}]: candle {yc} vs TF {yt}: |Δ| {diff:e} > {bound:e}",
                    fx.name
                );
                if bound > 0.0 {
                    worst_ratio = worst_ratio.max(diff / bound);
                }
                worst_abs = worst_abs.max(diff);
                bitwise += (yc.to_bits() == yt.to_bits()) as usize;
            }
            elements += y.len();
            layers += 1;
        }
    }
    eprintln!(
        "candle vs TensorFlow: {layers} layers, {elements} elements, {:.1}% bitwise equal, \
         max |Δ| = {worst_abs:.3e}, worst = {worst_ratio:.3} of the 2^-19 bound; \
         {flagged} layers needed --epsilon",
        100.0 * bitwise as f64 / elements.max(1) as f64
    );
    assert!(layers >= 40, "only {layers} layers checked");
    #[cfg(feature = "candle")]
    {
        eprintln!("direct route (tfbn::candle::Backend): {direct_routes} layers, bit for bit with the export route");
        assert_eq!(direct_routes, layers);
    }
}

/// The model `tfbn::open` gives for the fixture, with the same `--epsilon`
/// declarations the export route needed, and its candle backend.
#[cfg(feature = "candle")]
fn direct_route(fx: &Fixture, flags: &[String]) -> (tfbn::Model, VarBuilder<'static>) {
    let mut options = tfbn::OpenOptions::default();
    for pair in flags.chunks(2) {
        let what = pair[0].trim_start_matches("--");
        options
            .declared
            .push(tfbn::declared::Declaration::parse_flag(what, &pair[1]).unwrap());
    }
    let model = tfbn::open_with(fx.open_path(), &options).unwrap();
    let vb = VarBuilder::from_backend(
        Box::new(tfbn::candle::Backend::new(&model)),
        DType::F32,
        Device::Cpu,
    );
    (model, vb)
}

/// The direct route serves the export route's tensors bit for bit, its
/// layer carries the same ε, and candle's batch norm built from it gives
/// the same output bits.
#[cfg(feature = "candle")]
fn check_direct_route(
    fx: &Fixture,
    direct: &(tfbn::Model, VarBuilder<'static>),
    exported: &VarBuilder,
    module: &str,
    c: usize,
    config: BatchNormConfig,
    xt: &Tensor,
) {
    let (model, vb) = direct;
    let layer = model
        .bn_layers()
        .iter()
        .find(|l| tfbn::candle::module(l) == module)
        .unwrap_or_else(|| panic!("{}: no layer for module {module}", fx.name));
    assert_eq!(
        layer.settings().epsilon.value as f32,
        config.eps as f32,
        "{} {module}: epsilon",
        fx.name
    );
    for leaf in ["weight", "bias", "running_mean", "running_var"] {
        let a = tensor_f32(&vb.pp(module), leaf, c);
        let b = tensor_f32(&exported.pp(module), leaf, c);
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{} {module}.{leaf}",
            fx.name
        );
    }
    let run = |vb: &VarBuilder| -> Vec<u32> {
        let bn = candle_nn::batch_norm(c, config, vb.pp(module)).unwrap();
        let y = bn.forward_t(xt, false).unwrap();
        let y = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        y.iter().map(|v| v.to_bits()).collect()
    };
    assert_eq!(
        run(vb),
        run(exported),
        "{} {module}: candle output from the two routes",
        fx.name
    );
}

/// `examples/candle_port.rs` runs on its bundled default.
#[cfg(feature = "candle")]
#[path = "../../examples/candle_port.rs"]
#[allow(dead_code)]
mod candle_port;

#[cfg(feature = "candle")]
#[test]
fn candle_port_example_runs() {
    candle_port::run(candle_port::DEFAULT).unwrap();
}
