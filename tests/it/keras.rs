//! Keras files (`.keras`, `.weights.h5`, Keras 2 `.h5`) read natively:
//! every dataset equals what h5py reads (`expected/h5_variables.json`:
//! dtype, shape, sha256 of the little-endian bytes), the layers and
//! settings are the ones Keras built (`expected/manifest.json`), and every
//! layer's `apply`, run with the settings tfbn recovered (nothing passed
//! by the test), equals the Keras layer's own output.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};
use tfbn::find::discover;
use tfbn::hyper::{recover, HyperSource};
use tfbn::layers::{BnRole, FoundBy};
use tfbn::source::{Source, SourceFormat, VariableRole};

use crate::common::{fixtures, root, tfbn, Fixture};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every Keras-file fixture (`testdata/kfile_*`).
fn kfiles() -> Vec<Fixture> {
    let out: Vec<Fixture> = fixtures()
        .into_iter()
        .filter(|f| f.name.starts_with("kfile_"))
        .collect();
    assert!(out.len() >= 10, "only {} kfile fixtures", out.len());
    out
}

fn format_of(fx: &Fixture) -> SourceFormat {
    match fx.manifest["format"].as_str().unwrap() {
        "keras3_keras" => SourceFormat::KerasArchive,
        "keras3_weights_h5" => SourceFormat::Keras3WeightsH5,
        "keras2_h5" => SourceFormat::Keras2H5,
        "keras2_weights_h5" => SourceFormat::Keras2WeightsH5,
        other => panic!("{}: format {other}", fx.name),
    }
}

/// True when the fixture carries its model config.
fn has_config(fx: &Fixture) -> bool {
    matches!(
        format_of(fx),
        SourceFormat::KerasArchive | SourceFormat::Keras2H5
    )
}

#[test]
fn every_dataset_equals_h5py_bit_for_bit() {
    let mut checked = 0;
    let mut formats = BTreeSet::new();
    for fx in kfiles() {
        let source = Source::open(fx.open_path())
            .unwrap_or_else(|e| panic!("{}: open failed: {e}", fx.name));
        assert_eq!(source.format(), format_of(&fx), "{}", fx.name);
        formats.insert(source.format().label());
        let text = std::fs::read_to_string(fx.dir.join("expected/h5_variables.json")).unwrap();
        let truth: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
        let ours: BTreeSet<&str> = source.variables().iter().map(|v| v.key.as_str()).collect();
        let theirs: BTreeSet<&str> = truth.keys().map(String::as_str).collect();
        assert_eq!(ours, theirs, "{}: key sets differ", fx.name);
        for (key, want) in &truth {
            let t = source.read(key).unwrap();
            let dtype = tfbn::DType::from_name(want["dtype"].as_str().unwrap()).unwrap();
            assert_eq!(t.dtype, dtype, "{}: {key}", fx.name);
            let shape: Vec<u64> = want["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap())
                .collect();
            assert_eq!(t.shape, shape, "{}: {key}", fx.name);
            let bytes = t.bytes().unwrap();
            assert_eq!(
                hex(&Sha256::digest(bytes)),
                want["sha256"].as_str().unwrap(),
                "{}: {key}",
                fx.name
            );
            checked += 1;
        }
    }
    assert!(checked > 300, "only {checked} datasets");
    assert_eq!(formats.len(), 4, "{formats:?}");
}

#[test]
fn layers_names_and_roles_are_kerass() {
    for fx in kfiles() {
        let source = Source::open(fx.open_path()).unwrap();
        let layers = discover(&source);
        let want = fx.layers();
        // Layers whose stored vectors do not say which of center/scale is
        // off are named in a note, not guessed.
        for w in fx.all_layers().iter().filter(|l| fx.needs_declaration(l)) {
            let name = w["name"].as_str().unwrap();
            assert!(
                source
                    .notes()
                    .iter()
                    .any(|n| n.contains(name) && n.contains("--hyper")),
                "{}: {name}: {:?}",
                fx.name,
                source.notes()
            );
        }
        assert_eq!(
            layers.len(),
            want.len(),
            "{}: {:?}",
            fx.name,
            layers.iter().map(|l| &l.name).collect::<Vec<_>>()
        );
        for w in &want {
            let name = w["name"].as_str().unwrap();
            let l = layers
                .iter()
                .find(|l| l.name == name)
                .unwrap_or_else(|| panic!("{}: no layer {name}", fx.name));
            for role in BnRole::ALL {
                let want_var = &w["variables"][role.tf_name()];
                let got = l.var(role);
                if want_var.is_null() {
                    assert!(got.is_none(), "{}/{name}: {role:?}", fx.name);
                    continue;
                }
                let got = got.unwrap_or_else(|| panic!("{}/{name}: no {role:?}", fx.name));
                assert_eq!(got.key, want_var["key"].as_str().unwrap(), "{}", fx.name);
                assert_eq!(got.name, want_var["name"].as_str().unwrap(), "{}", fx.name);
            }
            // A config lists the layer; otherwise its names and variables
            // tell it.
            let by = if has_config(&fx) && !fx.name.contains("subclassed") {
                FoundBy::KerasConfig
            } else {
                FoundBy::Naming
            };
            assert_eq!(l.found_by, by, "{}/{name}", fx.name);
        }
        // Optimizer state is never a layer's.
        let non_layer = &fx.manifest["non_layer"]["optimizer"];
        for key in non_layer.as_array().into_iter().flatten() {
            let v = source.variable(key.as_str().unwrap()).unwrap();
            assert_ne!(v.role, VariableRole::Model, "{}: {key}", fx.name);
        }
    }
}

#[test]
fn settings_come_from_the_keras_config_with_provenance() {
    let mut checked = 0;
    for fx in kfiles().into_iter().filter(has_config) {
        let source = Source::open(fx.open_path()).unwrap();
        let layers = discover(&source);
        let hyper = recover(&source, &layers).unwrap();
        for (l, h) in layers.iter().zip(&hyper) {
            let w = fx
                .all_layers()
                .iter()
                .find(|w| w["name"] == l.name.as_str())
                .unwrap();
            let want = &w["hyper"];
            let ctx = format!("{}/{}", fx.name, l.name);
            assert!(h.conflicts.is_empty(), "{ctx}: {:?}", h.conflicts);
            if fx.name.contains("subclassed") {
                // The config lists no inner layers: defaults, marked so.
                assert!(h.epsilon.is_default(), "{ctx}");
                continue;
            }
            assert!(
                matches!(&h.epsilon.source, HyperSource::KerasConfig { file, path }
                    if file.ends_with("config.json") || file.ends_with("model_config")
                        && path.starts_with("config")),
                "{ctx}: {}",
                h.epsilon.source
            );
            assert_eq!(h.epsilon.value, want["epsilon"].as_f64().unwrap(), "{ctx}");
            assert_eq!(
                h.momentum.value,
                want["momentum"].as_f64().unwrap(),
                "{ctx}"
            );
            assert_eq!(h.axis.value, want["axis"][0].as_i64().unwrap(), "{ctx}");
            assert_eq!(h.center.value, want["center"].as_bool().unwrap(), "{ctx}");
            assert_eq!(h.scale.value, want["scale"].as_bool().unwrap(), "{ctx}");
            if want["renorm"].as_bool() == Some(true) {
                let c = &want["renorm_clipping"];
                assert_eq!(h.renorm_clipping.value.rmax, c["rmax"].as_f64(), "{ctx}");
                assert_eq!(h.renorm_clipping.value.rmin, c["rmin"].as_f64(), "{ctx}");
                assert_eq!(h.renorm_clipping.value.dmax, c["dmax"].as_f64(), "{ctx}");
                assert_eq!(
                    Some(h.renorm_momentum.value),
                    want["renorm_momentum"].as_f64(),
                    "{ctx}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} layers");
}

#[test]
fn weights_only_files_say_their_settings_are_assumed() {
    for fx in kfiles().into_iter().filter(|f| !has_config(f)) {
        let source = Source::open(fx.open_path()).unwrap();
        let layers = discover(&source);
        let hyper = recover(&source, &layers).unwrap();
        for h in &hyper {
            assert!(
                h.epsilon.is_default() && h.momentum.is_default(),
                "{}",
                fx.name
            );
        }
        assert!(
            source.notes().iter().any(|n| n.contains("no model config")),
            "{}: {:?}",
            fx.name,
            source.notes()
        );
    }
}

fn bits(a: &tfbn::npy::NpyArray) -> Vec<u64> {
    use tfbn::npy::NpyArray;
    match a {
        NpyArray::F32(a) => a.iter().map(|v| v.to_bits() as u64).collect(),
        NpyArray::F64(a) => a.iter().map(|v| v.to_bits()).collect(),
        NpyArray::F16(a) => a.iter().map(|v| v.to_bits() as u64).collect(),
        NpyArray::U16(a) => a.iter().map(|&v| v as u64).collect(),
        other => panic!("unexpected dtype {other:?}"),
    }
}

/// Runs `tfbn apply` on a golden's input with nothing but the layer's name
/// (plus `extra`) and compares every output with Keras's, bit for bit
/// (the oneDNN-off goldens), in both modes.
fn apply_matches_golden(fx: &Fixture, layer: &Value, extra: &[&str], dir: &Path) -> usize {
    let name = layer["name"].as_str().unwrap();
    let golden = fx.dir.join(layer["golden"].as_str().unwrap());
    let input = golden.join("input.npy");
    let open = fx.open_path();
    let mut compared = 0;
    for mode in ["inference", "training"] {
        // Layer names can be longer than a file name may be.
        let short: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(40)
            .collect();
        let out = dir.join(&fx.name).join(short).join(mode);
        let mut args = vec![
            "apply",
            open.to_str().unwrap(),
            "--layer",
            name,
            "--input",
            input.to_str().unwrap(),
            "--mode",
            mode,
            "-o",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = tfbn(&args);
        assert!(
            o.status.success(),
            "{}/{name} {mode}: {}",
            fx.name,
            String::from_utf8_lossy(&o.stderr)
        );
        let pairs: &[(&str, &str)] = if mode == "inference" {
            &[("y", "inference_y")]
        } else {
            &[
                ("y", "training_y"),
                ("moving_mean", "training_moving_mean"),
                ("moving_variance", "training_moving_variance"),
                ("moving_stddev", "training_moving_stddev"),
                ("renorm_mean", "training_renorm_mean"),
                ("renorm_stddev", "training_renorm_stddev"),
            ]
        };
        for (ours, theirs) in pairs {
            let g = golden.join(format!("eigen/{theirs}.npy"));
            if !g.exists() {
                continue;
            }
            let a = bits(&tfbn::npy::read_npy(out.join(format!("{ours}.npy"))).unwrap());
            let b = bits(&tfbn::npy::read_npy(&g).unwrap());
            assert_eq!(a.len(), b.len(), "{}/{name} {mode} {ours}", fx.name);
            let diff = a.iter().zip(&b).filter(|(x, y)| x != y).count();
            assert_eq!(
                diff,
                0,
                "{}/{name} {mode} {ours}: {diff} of {} differ",
                fx.name,
                a.len()
            );
            compared += 1;
        }
    }
    compared
}

#[test]
fn apply_with_recovered_settings_equals_kerass_output() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for fx in kfiles().into_iter().filter(has_config) {
        if fx.name.contains("subclassed") {
            continue;
        }
        for layer in fx.layers() {
            checked += apply_matches_golden(&fx, &layer, &[], dir.path());
        }
    }
    assert!(checked >= 30, "only {checked}");
}

#[test]
fn weights_only_files_apply_with_the_config_given_as_hyper() {
    let dir = tempfile::tempdir().unwrap();
    // Each weights-only fixture with the model config its whole-model
    // sibling holds.
    let pairs = [
        ("kfile_k3_cnn_weights", "kfile_k3_cnn_keras/m.keras"),
        ("kfile_h5py_k3_gzip_weights", "kfile_k3_cnn_keras/m.keras"),
        ("kfile_k3_mixed_weights", "kfile_k3_mixed_keras/m.keras"),
        ("kfile_k3_nested_weights", "kfile_k3_nested_keras/m.keras"),
        ("kfile_tfk_cnn_weights", "kfile_tfk_cnn_h5/m.h5"),
        ("kfile_h5py_k2_dense_attrs_weights", "kfile_tfk_cnn_h5/m.h5"),
        ("kfile_tfk_mixed_weights", "kfile_tfk_mixed_h5/m.h5"),
        ("kfile_tfk_nested_weights", "kfile_tfk_nested_h5/m.h5"),
    ];
    for (name, model) in pairs {
        let fx = crate::common::fixture(name);
        let model = root().join("testdata").join(model);
        // `--hyper` takes a `.keras` archive or a Keras 2 `.h5` as they are.
        let config = model;
        for layer in fx.all_layers() {
            apply_matches_golden(
                &fx,
                layer,
                &["--hyper", config.to_str().unwrap()],
                dir.path(),
            );
        }
    }
}
