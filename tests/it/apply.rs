//! `tfbn apply` on every layer of every fixture gives TensorFlow's own bits
//! (the `TF_ENABLE_ONEDNN_OPTS=0` goldens), through the real binary.

use std::path::Path;
use std::process::Command;

use tfbn::testing::npy::read_npy;

use crate::common::{assert_matches_golden, fixtures, golden_vendor};

fn assert_same_bits(ours: &Path, golden: &Path, what: &str) {
    let a = read_npy(ours).unwrap_or_else(|e| panic!("{what}: {e}"));
    let b = read_npy(golden).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_matches_golden(&a, &b, golden_vendor(golden).as_deref(), what);
}

#[test]
fn apply_reproduces_every_eigen_golden_bit_for_bit() {
    let out = tempfile::tempdir().unwrap();
    let mut compared = 0;
    for fx in fixtures() {
        for layer in fx.layers() {
            let name = layer["name"].as_str().unwrap();
            let golden = fx.dir.join(layer["golden"].as_str().unwrap());
            let hyper = &layer["hyper"];
            let axis = hyper["axis"][0].as_i64().unwrap();
            let mean_key = layer["variables"]["moving_mean"]["key"].as_str().unwrap();
            // Address the layer the way inspect lists it.
            let source = tfbn::source::Source::open(fx.open_path()).unwrap();
            let found = tfbn::testing::find::discover(&source);
            let ours = found
                .iter()
                .find(|l| {
                    l.var(tfbn::testing::layers::BnRole::MovingMean)
                        .map(|v| v.key.as_str())
                        == Some(mean_key)
                })
                .unwrap();
            for mode in ["inference", "training"] {
                // Renorm's clipping and momentum live only in a Keras
                // config, and no flag declares them: a weights-only file's
                // renorm layer trains with them through `--hyper` (tests/it/keras.rs).
                if mode == "training" && fx.weights_only() && hyper["renorm"] == true {
                    continue;
                }
                let short: String = name
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric())
                    .take(40)
                    .collect();
                let dir = out.path().join(&fx.name).join(short).join(mode);
                let o = Command::new(env!("CARGO_BIN_EXE_tfbn"))
                    .args([
                        "apply",
                        fx.open_path().to_str().unwrap(),
                        "--layer",
                        &ours.name,
                    ])
                    .args(["--input", golden.join("input.npy").to_str().unwrap()])
                    .args(["--mode", mode, "--api", layer["api"].as_str().unwrap()])
                    .args(["--epsilon", &hyper["epsilon"].to_string()])
                    // (a hand-written layer in a frozen graph has none)
                    .args(match hyper["momentum"].as_f64() {
                        Some(m) => vec!["--momentum".to_string(), m.to_string()],
                        None => vec![],
                    })
                    .args(["--axis", &axis.to_string()])
                    .args(["-o", dir.to_str().unwrap()])
                    .output()
                    .unwrap();
                assert_eq!(
                    o.status.code(),
                    Some(0),
                    "{}/{name} {mode}: {}",
                    fx.name,
                    String::from_utf8_lossy(&o.stderr)
                );
                let eigen = golden.join("eigen");
                let what = |f: &str| format!("{}/{name} {mode} {f}", fx.name);
                if mode == "inference" {
                    assert_same_bits(
                        &dir.join("y.npy"),
                        &eigen.join("inference_y.npy"),
                        &what("y"),
                    );
                    compared += 1;
                } else {
                    for (ours, theirs) in [
                        ("y", "training_y"),
                        ("moving_mean", "training_moving_mean"),
                        ("moving_variance", "training_moving_variance"),
                        ("batch_mean", "training_batch_mean"),
                        ("batch_variance", "training_batch_variance"),
                        ("moving_stddev", "training_moving_stddev"),
                        ("renorm_mean", "training_renorm_mean"),
                        ("renorm_stddev", "training_renorm_stddev"),
                    ] {
                        let g = eigen.join(format!("{theirs}.npy"));
                        if g.exists() {
                            assert_same_bits(&dir.join(format!("{ours}.npy")), &g, &what(ours));
                            compared += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(
        compared >= 100 || crate::common::narrowed(),
        "only {compared} outputs compared"
    );
    eprintln!(
        "apply: {compared} outputs equal to TF's eigen goldens (bit for bit where they were written on this CPU vendor)"
    );
}
