//! The crate-root facade (`tfbn::open`) gives what the CLI's pipeline
//! gives: every fixture's layers, their stored parameters, and outputs equal
//! to the goldens TF wrote, using only what the files say.

use tfbn::{FloatArray, Mode, Role};

use crate::common::fixtures;

fn f32_bits(a: &FloatArray) -> Vec<u32> {
    match a {
        FloatArray::F32(a) => a.iter().map(|v| v.to_bits()).collect(),
        other => panic!("expected float32, got {other:?}"),
    }
}

/// Layers, parameters as stored and inference outputs from `tfbn::open`
/// equal discovery, the manifest's bytes and the Eigen goldens, for every
/// fixture whose files record each layer's ε and axis (so nothing the
/// inference output depends on is assumed).
#[test]
fn open_gives_layers_parameters_and_golden_outputs() {
    let mut compared = 0;
    for fx in fixtures() {
        let model = tfbn::open(fx.open_path()).unwrap_or_else(|e| panic!("{}: {e}", fx.name));
        let source = tfbn::source::Source::open(fx.open_path()).unwrap();
        assert_eq!(
            model.bn_layers().len(),
            tfbn::testing::find::discover(&source).len(),
            "{}",
            fx.name
        );
        for want in fx.layers() {
            let mean_key = want["variables"]["moving_mean"]["key"].as_str().unwrap();
            let layer = model
                .bn_layers()
                .iter()
                .find(|l| l.key(Role::MovingMean) == Some(mean_key))
                .unwrap_or_else(|| panic!("{}: no layer owns {mean_key}", fx.name));
            // Parameters as stored: the manifest's bytes.
            for role in [
                Role::Gamma,
                Role::Beta,
                Role::MovingMean,
                Role::MovingVariance,
            ] {
                let Some(key) = layer.key(role) else { continue };
                let var = fx
                    .variables()
                    .iter()
                    .find(|v| v["key"] == key)
                    .unwrap_or_else(|| panic!("{}: {key}", fx.name));
                if var["dtype"] != "float32" {
                    continue;
                }
                let got: Vec<u8> = f32_bits(layer.parameter(role).unwrap())
                    .into_iter()
                    .flat_map(u32::to_le_bytes)
                    .collect();
                assert_eq!(got, fx.expected_bytes(var), "{}: {key}", fx.name);
            }
            let assumed = layer.assumed();
            if assumed.iter().any(|a| {
                matches!(
                    a,
                    tfbn::testing::hyper::Assumed::Epsilon | tfbn::testing::hyper::Assumed::Axis
                )
            }) || want["input_dtype"] != "float32"
            {
                continue;
            }
            let golden = fx.dir.join(want["golden"].as_str().unwrap());
            let Ok(tfbn::testing::npy::NpyArray::F32(x)) =
                tfbn::testing::npy::read_npy(golden.join("input.npy"))
            else {
                continue;
            };
            let Ok(tfbn::testing::npy::NpyArray::F32(y)) =
                tfbn::testing::npy::read_npy(golden.join("eigen/inference_y.npy"))
            else {
                panic!("{}: no eigen inference golden", fx.name)
            };
            let ours = layer
                .apply(&FloatArray::F32(x.clone()), Mode::Inference)
                .unwrap_or_else(|e| panic!("{}/{}: {e}", fx.name, layer.name()));
            // The fused kernel's choice may rest on an assumption; skip
            // layers whose output depends on it.
            if assumed.contains(&tfbn::testing::hyper::Assumed::Fused) {
                continue;
            }
            let FloatArray::F32(ours_f32) = &ours else {
                panic!("{}/{}: float32 in, float32 out", fx.name, layer.name())
            };
            crate::common::assert_matches_golden(
                &tfbn::testing::npy::NpyArray::F32(ours_f32.clone()),
                &tfbn::testing::npy::NpyArray::F32(y.clone()),
                crate::common::golden_vendor(&golden).as_deref(),
                &format!("{}/{}", fx.name, layer.name()),
            );
            // apply_into writes the same bits.
            let mut out = ndarray::ArrayD::<f32>::zeros(x.shape());
            layer
                .apply_into(x.view(), out.view_mut(), Mode::Inference)
                .unwrap();
            assert_eq!(f32_bits(&FloatArray::F32(out)), f32_bits(&ours));
            compared += 1;
        }
    }
    eprintln!("{compared} layers compared");
    assert!(
        compared >= 10 || crate::common::narrowed(),
        "only {compared} layers compared"
    );
}
