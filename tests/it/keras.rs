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
use tfbn::source::{Source, SourceFormat, VariableRole};
use tfbn::testing::find::discover;
use tfbn::testing::hyper::{recover, HyperSource};
use tfbn::testing::layers::{BnRole, FoundBy};

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
                    .any(|n| n.contains(name) && n.contains("config")),
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
            assert_eq!(
                h.dtype_policy.value.as_deref(),
                want["dtype_policy"].as_str(),
                "{ctx}: dtype policy"
            );
            assert_eq!(
                h.synchronized.value,
                want["synchronized"].as_bool(),
                "{ctx}: synchronized"
            );
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
            let a = tfbn::testing::npy::read_npy(out.join(format!("{ours}.npy"))).unwrap();
            let b = tfbn::testing::npy::read_npy(&g).unwrap();
            crate::common::assert_matches_golden(
                &a,
                &b,
                crate::common::golden_vendor(&golden).as_deref(),
                &format!("{}/{name} {mode} {ours}", fx.name),
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
        ("kfile_k215_cnn_weights", "kfile_k215_cnn_h5/m.h5"),
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

// ------------------------------------------------------------ untrusted bytes

/// An HDF5 file Keras did not write gets a one-line answer naming what its
/// top level holds.
#[test]
fn an_hdf5_file_that_is_not_keras_is_named_precisely() {
    let p = root().join("testdata/hdf5_not_keras/data.h5");
    let e = Source::open(&p).unwrap_err();
    assert!(matches!(e, tfbn::Error::Hdf5NotKeras { .. }), "{e}");
    let o = tfbn(&["inspect", p.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("not one Keras wrote") && err.contains("measurements"),
        "{err}"
    );
}

/// Truncated and bit-flipped Keras files are errors, never panics.
#[test]
fn damaged_keras_files_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    for (fixture, file) in [
        ("kfile_tfk_cnn_h5", "m.h5"),
        ("kfile_k3_cnn_weights", "m.weights.h5"),
        ("kfile_h5py_k3_gzip_weights", "m.weights.h5"),
        ("kfile_k3_nested_keras", "m.keras"),
    ] {
        let bytes = std::fs::read(root().join("testdata").join(fixture).join(file)).unwrap();
        let n = bytes.len();
        for i in 0..48usize {
            let mut b = bytes.clone();
            let at = (i * 7919 * 31) % n;
            if i % 2 == 0 {
                b.truncate(at.max(9));
            } else {
                for x in &mut b[at..(at + 16).min(n)] {
                    *x ^= 0x5a;
                }
            }
            let p = dir.path().join(file);
            std::fs::write(&p, &b).unwrap();
            // Ok (the damage missed what tfbn reads) or a clear error.
            if let Ok(s) = Source::open(&p) {
                let layers = discover(&s);
                let _ = recover(&s, &layers);
            }
        }
    }
}

/// Writes a `.keras`-like zip whose `model.weights.h5` member declares
/// `declared` bytes while holding 64.
fn lying_archive(path: &Path, declared: u32) {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    w.start_file("config.json", opts).unwrap();
    w.write_all(b"{\"class_name\": \"Functional\", \"config\": {\"layers\": []}}")
        .unwrap();
    w.start_file("model.weights.h5", opts).unwrap();
    w.write_all(&[0u8; 64]).unwrap();
    w.finish().unwrap();
    // Patch the central directory's uncompressed size of the member.
    let mut b = std::fs::read(path).unwrap();
    let name = b"model.weights.h5";
    let mut i = 0;
    while i + 46 + name.len() <= b.len() {
        if b[i..i + 4] == [0x50, 0x4b, 0x01, 0x02] && &b[i + 46..i + 46 + name.len()] == name {
            b[i + 24..i + 28].copy_from_slice(&declared.to_le_bytes());
        }
        i += 1;
    }
    std::fs::write(path, b).unwrap();
}

/// A member that declares more than its compressed bytes can expand to (a
/// zip bomb's signature) is refused before anything is allocated.
#[test]
fn zip_bombs_and_huge_declared_sizes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bomb.keras");
    lying_archive(&p, 0xFFFF_FFF0);
    let e = Source::open(&p).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(
            e,
            tfbn::Error::SizeOverLimit { .. } | tfbn::Error::KerasArchiveInvalid { .. }
        ),
        "{msg}"
    );
    let o = tfbn(&["inspect", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    // A `.keras` with a weights member that is not HDF5 is an HDF5 error.
    let p = dir.path().join("junk.keras");
    lying_archive(&p, 64);
    let e = Source::open(&p).unwrap_err();
    assert!(matches!(e, tfbn::Error::Hdf5Unreadable { .. }), "{e}");
}

/// A Keras config given with `--hyper` for a file that is not a Keras
/// weights file is refused, naming both.
#[test]
fn a_keras_config_for_a_checkpoint_is_refused() {
    let ckpt = root().join("testdata/tf1_trained/ckpt/model.ckpt");
    let cfg = root().join("testdata/kfile_k3_cnn_keras/m.keras");
    let o = tfbn(&[
        "inspect",
        ckpt.to_str().unwrap(),
        "--hyper",
        cfg.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("describes Keras weights files"), "{err}");
}

/// A Keras 3 weights-only layer with center or scale off is used once the
/// roles are declared with `--bn`.
#[test]
fn ambiguous_keras3_weights_are_used_once_declared() {
    let fx = crate::common::fixture("kfile_k3_cnn_weights");
    let source = {
        let mut s = Source::open(fx.open_path()).unwrap();
        s.declare_layers(vec![
            "bn_nocenter:gamma=0,moving_mean=1,moving_variance=2"
                .parse()
                .unwrap(),
            "bn_noscale:beta=0,moving_mean=1,moving_variance=2"
                .parse()
                .unwrap(),
        ]);
        s
    };
    let layers = discover(&source);
    assert_eq!(layers.len(), 5);
    for w in fx.all_layers() {
        let mean = w["variables"]["moving_mean"]["key"].as_str().unwrap();
        let l = layers
            .iter()
            .find(|l| l.var(BnRole::MovingMean).is_some_and(|v| v.key == mean))
            .unwrap();
        for role in BnRole::ALL {
            assert_eq!(
                l.var(role).map(|v| v.key.as_str()),
                w["variables"][role.tf_name()]["key"].as_str(),
                "{}: {role:?}",
                l.name
            );
        }
    }
}

/// `tfbn verify m.keras` and `tfbn export m.keras --preset candle` need no
/// flag beyond the path.
#[test]
fn verify_and_export_candle_need_only_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let keras = root().join("testdata/kfile_k3_cnn_keras/m.keras");
    let out = dir.path().join("m.safetensors");
    let o = tfbn(&[
        "export",
        keras.to_str().unwrap(),
        "--preset",
        "candle",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let bytes = std::fs::read(&out).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.names().len(), 5 * 4);
    if crate::tf_live::live_tf("verify_and_export_candle_need_only_the_path").is_none() {
        return;
    }
    let o = tfbn(&["verify", keras.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(text.contains("PASS"), "{text}");
}

/// Keras 3 files written before the `vars` groups carried the layer's
/// `name` are paired with the config through the group Keras 3 derives
/// from the class name (`layers/batch_normalization_1`,
/// `layers/sequential/layers/…`): that derivation matches every `.keras`
/// fixture's groups.
#[test]
fn keras3_groups_derived_from_class_names_match_the_files() {
    let mut checked = 0;
    for fx in kfiles()
        .into_iter()
        .filter(|f| format_of(f) == SourceFormat::KerasArchive)
    {
        let f = std::fs::File::open(fx.open_path()).unwrap();
        let mut z = zip::ZipArchive::new(f).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut z.by_name("config.json").unwrap(), &mut text).unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        let parsed = tfbn::testing::keras::config::parse(&doc);
        let source = Source::open(fx.open_path()).unwrap();
        for e in parsed
            .layers
            .iter()
            .filter(|e| tfbn::testing::keras::config::is_batch_norm(&e.class_name))
        {
            let prefix = format!("{}/vars/", e.keras3_group);
            assert!(
                source
                    .variables()
                    .iter()
                    .any(|v| v.key.starts_with(&prefix)
                        && v.name.starts_with(&format!("{}/", e.path))),
                "{}: {} → {prefix}",
                fx.name,
                e.path
            );
            checked += 1;
        }
    }
    assert!(checked >= 8, "{checked}");
}

/// A weights-only file's verdict is unproven (its settings are TF's
/// defaults) until the model's config is given with `--hyper`; then it
/// passes.
#[test]
fn weights_only_verify_is_unproven_until_the_config_is_given() {
    if crate::tf_live::live_tf("weights_only_verify_is_unproven_until_the_config_is_given")
        .is_none()
    {
        return;
    }
    let w = root().join("testdata/kfile_tfk_cnn_weights/w.h5");
    let m = root().join("testdata/kfile_tfk_cnn_h5/m.h5");
    let o = tfbn(&["verify", w.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("UNPROVEN"), "{text}");
    // The library's note says a declaration is missing; the CLI says how
    // to make one, in its flags.
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("note: no model config"), "{err}");
    assert!(
        err.contains("hint: declare settings with --epsilon") && err.contains("--hyper FILE"),
        "{err}"
    );
    let o = tfbn(&[
        "verify",
        w.to_str().unwrap(),
        "--hyper",
        m.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(text.contains("PASS"), "{text}");
}
