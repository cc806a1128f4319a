//! `tfbn export` of batch-norm layers: every preset round-trips every
//! fixture bit for bit, the metadata declares each layer's conventions,
//! output is deterministic and atomic, `--fold` stays within its documented
//! bound of the native layer, and an independent Python reader agrees.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use safetensors::SafeTensors;
use serde_json::Value;
use tfbn::bn::{self, BnApi, BnConfig, BnParams};
use tfbn::export::writer::OutputPolicy;
use tfbn::export::{self, plan_layers, verify_file, write_plan, ExportOptions, Preset};
use tfbn::source::Source;
use tfbn::FloatArray;

use crate::common::{fixture, fixtures, root, tfbn, Fixture};

const PRESETS: [&str; 4] = ["tf", "pytorch", "candle", "burn"];

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Fixtures that hold batch-norm layers.
fn layer_fixtures() -> Vec<Fixture> {
    fixtures()
        .into_iter()
        .filter(|f| !f.layers().is_empty())
        .collect()
}

/// Exports `fx` with `preset` (plus `extra` flags) to `out`, with --verify.
fn export(fx: &Fixture, preset: &str, out: &Path, extra: &[&str]) {
    let open = fx.open_path();
    let mut args = vec![
        "export",
        s(&open),
        "-o",
        s(out),
        "--preset",
        preset,
        "--verify",
        "-q",
    ];
    args.extend_from_slice(extra);
    let o = tfbn(&args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{} {preset}: {}",
        fx.name,
        stderr(&o)
    );
}

fn metadata(bytes: &[u8]) -> BTreeMap<String, String> {
    let (_, m) = SafeTensors::read_metadata(bytes).expect("valid safetensors");
    m.metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// The manifest's variable entry for `key`.
fn manifest_var<'a>(fx: &'a Fixture, key: &str) -> &'a Value {
    fx.variables()
        .iter()
        .find(|v| v["key"] == key)
        .unwrap_or_else(|| panic!("{}: {key} not in the manifest", fx.name))
}

/// The module a manifest layer was exported as: the one whose moving-mean
/// tensor declares the layer's moving_mean key.
fn module_of(meta: &BTreeMap<String, String>, preset: Preset, layer: &Value) -> String {
    let key = layer["variables"]["moving_mean"]["key"].as_str().unwrap();
    let leaf = preset
        .leaf(export::preset::Slot::Var(
            tfbn::testing::layers::BnRole::MovingMean,
        ))
        .unwrap();
    let modules: Vec<String> = serde_json::from_str(&meta["tfbn.layers"]).unwrap();
    modules
        .into_iter()
        .find(|m| {
            meta.get(&format!("tfbn.key.{m}{}{leaf}", preset.separator()))
                .map(String::as_str)
                == Some(key)
        })
        .unwrap_or_else(|| panic!("no module declares {key}"))
}

/// The module whose metadata declares the manifest layer's moving_mean key
/// (works with `--fold`, which writes no variable tensors).
fn module_by_key(meta: &BTreeMap<String, String>, layer: &Value) -> String {
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

/// `--epsilon LAYER=VALUE` flags that give every manifest layer its real ε
/// (where recovery from the files cannot, e.g. plain checkpoints). Layers
/// are named as tfbn names them, found by their moving_mean key.
fn epsilon_flags(fx: &Fixture) -> Vec<String> {
    let source = Source::open(fx.open_path()).unwrap();
    let plan = plan_layers(&source, &ExportOptions::default()).unwrap();
    fx.layers()
        .iter()
        .flat_map(|l| {
            let key = l["variables"]["moving_mean"]["key"].as_str().unwrap();
            let name = plan
                .layers
                .iter()
                .find(|p| {
                    p.keys
                        .get(&tfbn::testing::layers::BnRole::MovingMean)
                        .map(String::as_str)
                        == Some(key)
                })
                .map(|p| p.tf_name.clone())
                .unwrap_or_else(|| panic!("{}: no layer with {key}", fx.name));
            [
                "--epsilon".to_string(),
                format!("{name}={}", l["hyper"]["epsilon"].as_f64().unwrap()),
            ]
        })
        .collect()
}

#[test]
fn every_fixture_and_preset_round_trips_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for fx in layer_fixtures() {
        for name in PRESETS {
            let preset = name.parse::<Preset>().ok().unwrap();
            let out = dir.path().join(format!("{}-{name}.safetensors", fx.name));
            export(&fx, name, &out, &[]);
            let bytes = std::fs::read(&out).unwrap();
            let st = SafeTensors::deserialize(&bytes).unwrap();
            let meta = metadata(&bytes);
            assert_eq!(meta["format"], preset.format(), "{}", fx.name);
            assert_eq!(meta["tfbn.preset"], name);
            let modules: Vec<String> = serde_json::from_str(&meta["tfbn.layers"]).unwrap();
            assert_eq!(
                modules.len(),
                fx.layers().len(),
                "{} {name}: layer count",
                fx.name
            );
            let mut expected_names = std::collections::BTreeSet::new();
            for layer in fx.layers() {
                let module = module_of(&meta, preset, &layer);
                let channels = layer["channels"].as_u64().unwrap() as usize;
                let pre = format!("tfbn.layer.{module}.");
                // Conventions are declared, each with a source.
                for f in [
                    "epsilon",
                    "momentum_tf",
                    "momentum_torch",
                    "axis",
                    "api",
                    "fused",
                    "moving_variance",
                ] {
                    assert!(
                        meta.contains_key(&format!("{pre}{f}")),
                        "{} {name}: {pre}{f}",
                        fx.name
                    );
                }
                for f in [
                    "epsilon",
                    "momentum",
                    "axis",
                    "api",
                    "fused",
                    "moving_variance",
                ] {
                    assert!(
                        meta.contains_key(&format!("{pre}{f}_source")),
                        "{} {name}: {pre}{f}_source",
                        fx.name
                    );
                }
                let m_tf: f64 = meta[&format!("{pre}momentum_tf")].parse().unwrap();
                let m_torch: f64 = meta[&format!("{pre}momentum_torch")].parse().unwrap();
                assert!(
                    ((1.0 - m_tf) - m_torch).abs() < 1e-12,
                    "{pre}: {m_tf} vs {m_torch}"
                );
                assert_eq!(
                    meta.get(&format!("{pre}target_running_var"))
                        .map(String::as_str),
                    match preset {
                        Preset::Tf => None,
                        Preset::Burn => Some("biased"),
                        _ => Some("bessel"),
                    }
                );
                for role in tfbn::testing::layers::BnRole::ALL {
                    let Some(tname) = preset.tensor_name(&module, export::preset::Slot::Var(role))
                    else {
                        continue;
                    };
                    let var = &layer["variables"][role.tf_name()];
                    if var.is_null() {
                        let filled = st.tensor(&tname);
                        if preset.needs_affine()
                            && matches!(
                                role,
                                tfbn::testing::layers::BnRole::Gamma
                                    | tfbn::testing::layers::BnRole::Beta
                            )
                        {
                            let t = filled.unwrap_or_else(|_| {
                                panic!("{}: {tname} should be synthesized", fx.name)
                            });
                            let v = if role == tfbn::testing::layers::BnRole::Gamma {
                                1.0f32
                            } else {
                                0.0
                            };
                            let want: Vec<u8> =
                                (0..channels).flat_map(|_| v.to_le_bytes()).collect();
                            assert_eq!(t.data(), want.as_slice(), "{tname}");
                            assert!(meta[&format!("{pre}{}", role.tf_name())]
                                .starts_with(if v == 1.0 { "ones" } else { "zeros" }));
                            expected_names.insert(tname);
                        } else {
                            assert!(filled.is_err(), "{}: {tname} should be absent", fx.name);
                        }
                        continue;
                    }
                    let key = var["key"].as_str().unwrap();
                    let t = st
                        .tensor(&tname)
                        .unwrap_or_else(|e| panic!("{} {name}: {tname}: {e}", fx.name));
                    let mv = manifest_var(&fx, key);
                    assert_eq!(
                        t.data(),
                        fx.expected_bytes(mv).as_slice(),
                        "{} {name}: {tname}",
                        fx.name
                    );
                    let shape: Vec<usize> = if preset == Preset::Tf {
                        mv["shape"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|d| d.as_u64().unwrap() as usize)
                            .collect()
                    } else {
                        vec![channels]
                    };
                    assert_eq!(t.shape(), shape.as_slice(), "{tname}");
                    assert_eq!(meta[&format!("tfbn.key.{tname}")], key);
                    expected_names.insert(tname);
                    checked += 1;
                }
                if preset == Preset::Pytorch {
                    let tname = format!("{module}.num_batches_tracked");
                    let t = st.tensor(&tname).unwrap();
                    assert_eq!(t.dtype(), safetensors::Dtype::I64);
                    assert!(t.shape().is_empty());
                    assert_eq!(t.data(), &[0u8; 8]);
                    expected_names.insert(tname);
                }
            }
            let names: std::collections::BTreeSet<String> =
                st.names().into_iter().map(String::from).collect();
            assert_eq!(names, expected_names, "{} {name}: tensor set", fx.name);
        }
    }
    assert!(
        checked > 150 || crate::common::narrowed(),
        "only {checked} tensors checked"
    );
}

#[test]
fn fixtures_without_layers_are_an_error_pointing_to_all_variables() {
    let fx = fixture("dtypes");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    let o = tfbn(&["export", s(&fx.open_path()), "-o", s(&out)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--all-variables"), "{}", stderr(&o));
    assert!(!out.exists());
}

#[test]
fn two_exports_of_the_same_input_are_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    for fx in layer_fixtures() {
        for preset in PRESETS {
            let a = dir
                .path()
                .join(format!("{}-{preset}-a.safetensors", fx.name));
            let b = dir
                .path()
                .join(format!("{}-{preset}-b.safetensors", fx.name));
            export(&fx, preset, &a, &[]);
            // `--no-sync` changes durability, never the bytes.
            export(&fx, preset, &b, &["--no-sync"]);
            assert_eq!(
                std::fs::read(&a).unwrap(),
                std::fs::read(&b).unwrap(),
                "{} {preset}: two exports differ",
                fx.name
            );
        }
    }
    // The same through the library, with the options in another order.
    let fx = fixture("tfkeras_ckpt");
    let source = Source::open(fx.open_path()).unwrap();
    let plan1 = plan_layers(&source, &ExportOptions::default()).unwrap();
    let plan2 = plan_layers(&source, &ExportOptions::default()).unwrap();
    assert_eq!(plan1, plan2);
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A copy of tf1_trained's checkpoint with one data byte flipped, so the
/// export fails on a crc check after the output was opened.
fn corrupted_checkpoint(dir: &Path) -> PathBuf {
    let fx = fixture("tf1_trained");
    let prefix = fx.open_path();
    let name = prefix.file_name().unwrap().to_string_lossy().into_owned();
    for e in std::fs::read_dir(prefix.parent().unwrap()).unwrap() {
        let p = e.unwrap().path();
        let fname = p.file_name().unwrap().to_string_lossy().into_owned();
        if fname.starts_with(&format!("{name}.")) {
            std::fs::copy(&p, dir.join(&fname)).unwrap();
        }
    }
    let data = dir.join(format!("{name}.data-00000-of-00001"));
    let mut bytes = std::fs::read(&data).unwrap();
    // Flip a byte of every tensor: any read fails its crc.
    for i in (0..bytes.len()).step_by(16) {
        bytes[i] ^= 0x40;
    }
    std::fs::write(&data, bytes).unwrap();
    dir.join(name)
}

#[test]
fn a_failing_export_leaves_no_file_and_keeps_an_existing_one() {
    let fx = fixture("tf1_trained");
    let ckpt_dir = tempfile::tempdir().unwrap();
    let bad = corrupted_checkpoint(ckpt_dir.path());
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("out.safetensors");

    // Bad input, no existing file: nothing is left behind.
    for preset in PRESETS {
        let o = tfbn(&["export", s(&bad), "-o", s(&out), "--preset", preset]);
        assert_eq!(o.status.code(), Some(2), "{preset}: {}", stderr(&o));
        assert!(stderr(&o).contains("crc32c mismatch"), "{}", stderr(&o));
        assert!(
            files_in(out_dir.path()).is_empty(),
            "{:?}",
            files_in(out_dir.path())
        );
    }
    // The same for every-variable exports, synced or not, and for a
    // checkpoint whose only damage is its last byte: the crc of a tensor
    // streamed after others fails, with part of the file already written.
    let last_byte_dir = tempfile::tempdir().unwrap();
    let last_byte = corrupted_checkpoint(last_byte_dir.path());
    {
        let good = fx.open_path();
        let name = good.file_name().unwrap().to_string_lossy().into_owned();
        let data = format!("{name}.data-00000-of-00001");
        let mut bytes = std::fs::read(good.parent().unwrap().join(&data)).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 0x01;
        std::fs::write(last_byte_dir.path().join(&data), bytes).unwrap();
    }
    for (ckpt, extra) in [
        (&bad, &["--all-variables"][..]),
        (&bad, &["--all-variables", "--no-sync"][..]),
        (&last_byte, &["--all-variables"][..]),
        (&last_byte, &["--all-variables", "--no-sync"][..]),
    ] {
        let mut args = vec!["export", s(ckpt), "-o", s(&out)];
        args.extend_from_slice(extra);
        let o = tfbn(&args);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("crc32c mismatch"), "{}", stderr(&o));
        assert!(
            files_in(out_dir.path()).is_empty(),
            "{extra:?}: {:?}",
            files_in(out_dir.path())
        );
    }
    // Bad input over an existing file, even with --force: the file stays.
    std::fs::write(&out, b"precious").unwrap();
    let o = tfbn(&[
        "export",
        s(&bad),
        "-o",
        s(&out),
        "--preset",
        "candle",
        "--force",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    assert_eq!(files_in(out_dir.path()), vec!["out.safetensors"]);
    // A good input without --force: refused, kept.
    let o = tfbn(&[
        "export",
        s(&fx.open_path()),
        "-o",
        s(&out),
        "--preset",
        "candle",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    // With --force: replaced.
    let o = tfbn(&[
        "export",
        s(&fx.open_path()),
        "-o",
        s(&out),
        "--preset",
        "candle",
        "--force",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_ne!(std::fs::read(&out).unwrap(), b"precious");
    assert_eq!(files_in(out_dir.path()), vec!["out.safetensors"]);

    // Unwritable folders: a missing one, and a "folder" that is a file.
    let o = tfbn(&[
        "export",
        s(&fx.open_path()),
        "-o",
        s(&out_dir.path().join("missing/out.safetensors")),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = tfbn(&[
        "export",
        s(&fx.open_path()),
        "-o",
        s(&out.join("out.safetensors")),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(files_in(out_dir.path()), vec!["out.safetensors"]);

    // A read-only folder (permissions do not stop root, so only checked
    // when they apply).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let ro = out_dir.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        let probe = ro.join(".probe");
        if std::fs::write(&probe, b"x").is_err() {
            let o = tfbn(&[
                "export",
                s(&fx.open_path()),
                "-o",
                s(&ro.join("out.safetensors")),
            ]);
            assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
            assert!(files_in(&ro).is_empty());
        } else {
            let _ = std::fs::remove_file(&probe);
            eprintln!(
                "read-only folder case skipped: running with permissions that ignore mode bits"
            );
        }
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn usage_errors_exit_2() {
    let fx = fixture("tf1_trained");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.safetensors");
    let open = fx.open_path();
    for args in [
        vec!["--all-variables", "--preset", "candle"],
        vec!["--all-variables", "--fold"],
        vec!["--preset", "onnx"],
        vec!["--dtype", "f8"],
        vec!["--layers", "no_such_layer*"],
        vec!["--rename", "no_such_layer=x"],
        vec!["--epsilon", "no_such_layer=1e-5"],
        vec!["--epsilon", "-1"],
        vec!["--momentum", "1.5"],
        vec!["--variance", "sideways"],
        vec![
            "--rename",
            "batch_normalization=a",
            "--rename",
            "batch_normalization_1=a",
        ],
    ] {
        let mut a = vec!["export", s(&open), "-o", s(&out)];
        a.extend_from_slice(&args);
        let o = tfbn(&a);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(!out.exists(), "{args:?} left a file");
    }
    // The library names the setting; the CLI adds the flag it came by, and
    // none for a sidecar's declaration (which names its file instead).
    let side = dir.path().join("side.json");
    std::fs::write(&side, r#"{"layers": {"no_such_layer": {"epsilon": 1e-5}}}"#).unwrap();
    for (args, want, not) in [
        (
            vec!["--layers", "nope*"],
            vec![
                "layers pattern \"nope*\" matches no batch-norm layer",
                "(given with --layers)",
            ],
            "sidecar",
        ),
        (
            vec!["--epsilon", "nope=1e-5"],
            vec!["epsilon pattern \"nope\"", "(given with --epsilon)"],
            "sidecar",
        ),
        (
            vec!["--hyper", s(&side)],
            vec!["epsilon (sidecar ", "pattern \"no_such_layer\""],
            "given with",
        ),
        (
            vec![
                "--rename",
                "batch_normalization=a",
                "--rename",
                "batch_normalization_1=a",
            ],
            vec![
                "both map to module \"a\"",
                "(--rename FROM=TO renames a layer)",
            ],
            "given with",
        ),
    ] {
        let mut a = vec!["export", s(&open), "-o", s(&out)];
        a.extend_from_slice(&args);
        let o = tfbn(&a);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert_eq!(e.trim_end().lines().count(), 1, "{args:?}: {e}");
        for w in want {
            assert!(e.contains(w), "{args:?}: want {w:?} in {e}");
        }
        assert!(!e.contains(not), "{args:?}: {e}");
    }
}

#[test]
fn layers_rename_and_flags_shape_the_file() {
    let fx = fixture("tf1_trained");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.safetensors");
    export(
        &fx,
        "candle",
        &out,
        &[
            "--layers",
            "batch_normalization_?",
            "--rename",
            "batch_normalization_1=stem.bn",
            "--epsilon",
            "1e-5",
            "--epsilon",
            "batch_normalization_2=2e-5",
            "--momentum",
            "batch_normalization_2=0.9",
            "--variance",
            "*_2=biased",
        ],
    );
    let bytes = std::fs::read(&out).unwrap();
    let meta = metadata(&bytes);
    let st = SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(
        meta["tfbn.layers"],
        r#"["stem.bn","batch_normalization_2"]"#
    );
    assert!(st.tensor("stem.bn.weight").is_ok());
    assert!(st.tensor("batch_normalization.weight").is_err());
    assert_eq!(meta["tfbn.layer.stem.bn.tf_name"], "batch_normalization_1");
    assert_eq!(meta["tfbn.layer.stem.bn.epsilon"], "0.00001");
    assert_eq!(meta["tfbn.layer.stem.bn.epsilon_source"], "flag");
    assert_eq!(meta["tfbn.layer.batch_normalization_2.epsilon"], "0.00002");
    assert_eq!(meta["tfbn.layer.batch_normalization_2.momentum_tf"], "0.9");
    assert_eq!(
        meta["tfbn.layer.batch_normalization_2.momentum_torch"],
        "0.1"
    );
    assert_eq!(
        meta["tfbn.layer.batch_normalization_2.momentum_source"],
        "flag"
    );
    assert_eq!(
        meta["tfbn.layer.batch_normalization_2.moving_variance"],
        "biased"
    );
    assert_eq!(
        meta["tfbn.layer.batch_normalization_2.moving_variance_source"],
        "flag"
    );
    // Stripping a prefix with an empty TO.
    let out2 = dir.path().join("o2.safetensors");
    export(
        &fixture("tfkeras_ckpt"),
        "pytorch",
        &out2,
        &["--layers", "bn_dense", "--rename", "bn_dense=head.norm"],
    );
    let meta2 = metadata(&std::fs::read(&out2).unwrap());
    assert_eq!(meta2["tfbn.layers"], r#"["head.norm"]"#);
}

#[test]
fn dtype_casts_round_once_to_nearest_even() {
    use half::{bf16, f16};
    let fx = fixture("tfkeras_ckpt");
    let dir = tempfile::tempdir().unwrap();
    for (dtype, width) in [("f16", 2usize), ("bf16", 2), ("f32", 4)] {
        let out = dir.path().join(format!("{dtype}.safetensors"));
        export(&fx, "candle", &out, &["--dtype", dtype]);
        let bytes = std::fs::read(&out).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let meta = metadata(&bytes);
        for layer in fx.layers() {
            let module = module_of(&meta, Preset::Candle, &layer);
            let key = layer["variables"]["moving_variance"]["key"]
                .as_str()
                .unwrap();
            let src = fx.expected_bytes(manifest_var(&fx, key));
            let want: Vec<u8> = src
                .chunks_exact(4)
                .flat_map(|c| {
                    let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    match dtype {
                        "f16" => f16::from_f32(v).to_le_bytes().to_vec(),
                        "bf16" => bf16::from_f32(v).to_le_bytes().to_vec(),
                        _ => v.to_le_bytes().to_vec(),
                    }
                })
                .collect();
            let t = st.tensor(&format!("{module}.running_var")).unwrap();
            assert_eq!(t.data().len(), src.len() / 4 * width);
            assert_eq!(t.data(), want.as_slice(), "{module} {dtype}");
        }
    }
    // --all-variables casts float tensors of every stored width and keeps
    // the rest.
    let fx = fixture("dtypes");
    let out = dir.path().join("all-f16.safetensors");
    let o = tfbn(&[
        "export",
        s(&fx.open_path()),
        "--all-variables",
        "--dtype",
        "f16",
        "--verify",
        "-q",
        "-o",
        s(&out),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let bytes = std::fs::read(&out).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut casts = 0;
    for var in fx.variables() {
        let key = var["key"].as_str().unwrap();
        let Ok(t) = st.tensor(key) else { continue };
        let src = fx.expected_bytes(var);
        let want: Vec<u8> = match var["dtype"].as_str().unwrap() {
            "float32" => src
                .chunks_exact(4)
                .flat_map(|c| {
                    f16::from_f32(f32::from_le_bytes([c[0], c[1], c[2], c[3]])).to_le_bytes()
                })
                .collect(),
            "float64" => src
                .chunks_exact(8)
                .flat_map(|c| nearest_f16(f64::from_le_bytes(c.try_into().unwrap())).to_le_bytes())
                .collect(),
            "bfloat16" => src
                .chunks_exact(2)
                .flat_map(|c| {
                    f16::from_f32(bf16::from_le_bytes([c[0], c[1]]).to_f32()).to_le_bytes()
                })
                .collect(),
            _ => src.clone(),
        };
        if want != src {
            casts += 1;
        }
        // NaN payloads aside, the bits must be the single rounding's.
        assert_eq!(t.data(), want.as_slice(), "{key}");
    }
    assert!(
        casts >= 3 || crate::common::narrowed(),
        "only {casts} tensors were cast"
    );
}

/// The f16 nearest to `v` (ties to even), found by comparing neighbours in
/// f64, independently of any conversion routine (`half`'s `from_f64`
/// rounds through f32, i.e. twice).
fn nearest_f16(v: f64) -> half::f16 {
    use half::f16;
    let guess = f16::from_f64(v);
    if !v.is_finite() || !guess.is_finite() {
        return guess;
    }
    let mut best = guess;
    for bits in [
        guess.to_bits().wrapping_sub(1),
        guess.to_bits().wrapping_add(1),
    ] {
        let c = f16::from_bits(bits);
        // Stay on the same side of zero (bits ± 1 across 0 wraps to NaN or −0).
        if !c.is_finite() || c.is_sign_negative() != guess.is_sign_negative() {
            continue;
        }
        let (dc, db) = ((c.to_f64() - v).abs(), (best.to_f64() - v).abs());
        if dc < db || (dc == db && c.to_bits() % 2 == 0) {
            best = c;
        }
    }
    best
}

fn read_f32(source: &Source, key: &str) -> Vec<f32> {
    source.read(key).unwrap().to_f32_vec().unwrap()
}

fn api_of(label: &str) -> BnApi {
    label
        .parse::<BnApi>()
        .ok()
        .unwrap_or_else(|| panic!("api {label}"))
}

/// Runs the native layer on a fixture layer's golden input.
/// The native layer's inference output on the golden input, `None` for a
/// float16 input (mixed precision), which the fold check leaves out.
fn native_inference(
    fx: &Fixture,
    source: &Source,
    layer: &Value,
) -> Option<(Vec<f32>, Vec<usize>, usize)> {
    let h = &layer["hyper"];
    let axis = h["axis"][0].as_i64().unwrap() as isize;
    let cfg = BnConfig {
        epsilon: h["epsilon"].as_f64().unwrap(),
        // Inference does not read the momentum (a hand-written layer in a
        // frozen graph has none).
        momentum: h["momentum"].as_f64().unwrap_or(0.99),
        axis,
        center: h["center"].as_bool().unwrap(),
        scale: h["scale"].as_bool().unwrap(),
        fused: h["fused"].as_bool(),
        api: api_of(layer["api"].as_str().unwrap()),
        ..BnConfig::default()
    };
    let var = |role: &str| {
        let v = &layer["variables"][role];
        (!v.is_null()).then(|| read_f32(source, v["key"].as_str().unwrap()))
    };
    let params = BnParams {
        gamma: var("gamma"),
        beta: var("beta"),
        moving_mean: var("moving_mean").unwrap(),
        moving_variance: var("moving_variance").unwrap(),
        renorm: None,
    };
    let x = tfbn::testing::npy::read_npy(
        fx.dir
            .join(layer["golden"].as_str().unwrap())
            .join("input.npy"),
    )
    .unwrap();
    let tfbn::testing::npy::NpyArray::F32(x) = x else {
        return None;
    };
    let shape = x.shape().to_vec();
    let y = bn::inference(&cfg, &params, &FloatArray::F32(x)).unwrap();
    let FloatArray::F32(y) = y.y else {
        panic!("f32 output")
    };
    Some((y.iter().copied().collect(), shape, axis as usize))
}

#[test]
fn fold_stays_within_its_documented_bound_of_the_native_layer() {
    let dir = tempfile::tempdir().unwrap();
    let mut worst = 0.0f64;
    let (mut exact_f2_small, mut elements) = (0usize, 0usize);
    for fx in layer_fixtures() {
        let out = dir.path().join(format!("{}-fold.safetensors", fx.name));
        let flags = epsilon_flags(&fx);
        let mut extra: Vec<&str> = vec!["--fold"];
        extra.extend(flags.iter().map(String::as_str));
        export(&fx, "candle", &out, &extra);
        let bytes = std::fs::read(&out).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let meta = metadata(&bytes);
        assert!(meta["tfbn.fold"].contains("2^-19"), "{}", meta["tfbn.fold"]);
        let source = Source::open(fx.open_path()).unwrap();
        for layer in fx.layers() {
            let module = module_by_key(&meta, &layer);
            let f32s = |name: &str| -> Vec<f32> {
                st.tensor(name)
                    .unwrap()
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            };
            let scale = f32s(&format!("{module}.scale"));
            let shift = f32s(&format!("{module}.shift"));
            assert_eq!(
                st.names()
                    .iter()
                    .filter(|n| n.starts_with(&format!("{module}.")))
                    .count(),
                2
            );
            let Some((y, shape, axis)) = native_inference(&fx, &source, &layer) else {
                continue;
            };
            let x = tfbn::testing::npy::read_npy(
                fx.dir
                    .join(layer["golden"].as_str().unwrap())
                    .join("input.npy"),
            )
            .unwrap();
            let tfbn::testing::npy::NpyArray::F32(x) = x else {
                unreachable!()
            };
            let c = shape[axis];
            let stride: usize = shape[axis + 1..].iter().product();
            let mean = read_f32(
                &source,
                layer["variables"]["moving_mean"]["key"].as_str().unwrap(),
            );
            let beta = match &layer["variables"]["beta"] {
                Value::Null => vec![0.0; c],
                v => read_f32(&source, v["key"].as_str().unwrap()),
            };
            let f2 = layer["api"] == "keras3" || layer["hyper"]["fused"] == false;
            let mut exact = 0;
            for (i, (&xi, &yi)) in x.iter().zip(&y).enumerate() {
                let ch = (i / stride) % c;
                let folded = xi * scale[ch] + shift[ch];
                let bound = export::fold::fold_bound(xi, scale[ch], mean[ch], beta[ch]);
                let diff = (folded as f64 - yi as f64).abs();
                assert!(
                    diff <= bound,
                    "{} {module}[{i}]: folded {folded} vs native {yi}: |Δ| {diff:e} > bound {bound:e}",
                    fx.name
                );
                if bound > 0.0 {
                    worst = worst.max(diff / bound);
                }
                exact += (folded.to_bits() == yi.to_bits()) as usize;
            }
            // F2 with every channel on TF's scalar rsqrt path: bit-exact.
            if f2 && c < 8 {
                assert_eq!(
                    exact,
                    y.len(),
                    "{} {module}: F2 fold should be bit-exact",
                    fx.name
                );
                exact_f2_small += 1;
            }
            elements += y.len();
        }
    }
    eprintln!(
        "fold vs native layer: {elements} elements, worst |Δ| = {worst:.3} of the 2^-19 bound; \
         {exact_f2_small} F2 layers with C < 8 bit-exact"
    );
    assert!(
        exact_f2_small >= 5 || crate::common::narrowed(),
        "only {exact_f2_small} F2 layers with C < 8"
    );
}

#[test]
fn verify_catches_a_tampered_file() {
    let fx = fixture("tfkeras_ckpt");
    let source = Source::open(fx.open_path()).unwrap();
    let opts = ExportOptions {
        preset: Preset::Pytorch,
        ..ExportOptions::default()
    };
    let plan = plan_layers(&source, &opts).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.safetensors");
    write_plan(
        &source,
        &plan,
        &out,
        OutputPolicy::default(),
        &mut |_, _| {},
    )
    .unwrap();
    let report = verify_file(&source, &plan, &out).unwrap();
    assert!(report.ok(), "{:?}", report.mismatches);
    assert_eq!(report.tensors, plan.tensors.len());
    // Flip one bit in the last tensor's data.
    let mut bytes = std::fs::read(&out).unwrap();
    let n = bytes.len();
    bytes[n - 9] ^= 1;
    std::fs::write(&out, &bytes).unwrap();
    let report = verify_file(&source, &plan, &out).unwrap();
    assert_eq!(report.mismatches.len(), 1, "{:?}", report.mismatches);
    assert!(
        report.mismatches[0].contains("bytes differ"),
        "{:?}",
        report.mismatches
    );
    // A truncated file is not safetensors at all.
    std::fs::write(&out, &bytes[..n - 1]).unwrap();
    assert!(matches!(
        verify_file(&source, &plan, &out),
        Err(tfbn::Error::SafetensorsRead { .. })
    ));
}

#[test]
fn inspect_shows_an_exports_layers_and_conventions() {
    let fx = fixture("tf1_trained");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.safetensors");
    export(
        &fx,
        "pytorch",
        &out,
        &["--epsilon", "batch_normalization_2=2e-5"],
    );
    let o = tfbn(&["inspect", s(&out)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("written by tfbn"), "{text}");
    assert!(text.contains("preset pytorch"), "{text}");
    for l in fx.layers() {
        assert!(text.contains(l["name"].as_str().unwrap()), "{text}");
    }
    assert!(text.contains("0.00002"), "{text}");
    assert!(text.contains("momentum"), "{text}");
    let o = tfbn(&["inspect", "--json", s(&out)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["written_by_tfbn"], true);
    assert_eq!(v["layers"].as_array().unwrap().len(), fx.layers().len());
    let l2 = v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["module"] == "batch_normalization_2")
        .unwrap();
    assert_eq!(l2["fields"]["epsilon_source"], "flag");
    assert_eq!(l2["tensors"].as_array().unwrap().len(), 5);
    // A safetensors file tfbn did not write: tensors only.
    let foreign = dir.path().join("foreign.safetensors");
    let data = vec![0u8; 8];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2], &data).unwrap();
    safetensors::serialize_to_file([("w", view)], None, &foreign).unwrap();
    let o = tfbn(&["inspect", s(&foreign)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("not written by tfbn"), "{text}");
    // A broken one: exit 2, one line.
    std::fs::write(&foreign, b"\x10\0\0\0\0\0\0\0{\"a\":").unwrap();
    let o = tfbn(&["inspect", s(&foreign)]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
}

/// The venv's Python, or why there is none. `TFBN_REQUIRE_TF=1` turns a
/// missing interpreter into a failure.
fn python() -> Option<PathBuf> {
    let py = root().join(".venv/bin/python");
    let ok = py.exists()
        && Command::new(&py)
            .args(["-c", "import numpy, safetensors"])
            .output()
            .is_ok_and(|o| o.status.success());
    if ok {
        return Some(py);
    }
    let why = if py.exists() {
        format!("{} cannot import numpy and safetensors", py.display())
    } else {
        format!(
            "{} does not exist (run scripts/setup-tensorflow.sh)",
            py.display()
        )
    };
    if std::env::var("TFBN_REQUIRE_TF").as_deref() == Ok("1") {
        panic!("TFBN_REQUIRE_TF=1 but {why}");
    }
    eprintln!("skipped the Python consumer check: {why}");
    None
}

/// The manifest the Python check reads: the fixture's own, or (where tfbn
/// leaves some layers to a declaration, see `Fixture::layers`) a copy
/// listing only the layers tfbn finds, beside a copy of `variables.bin`.
fn manifest_for(fx: &Fixture, dir: &Path) -> String {
    let own = fx.dir.join("expected/manifest.json");
    if fx.layers().len() == fx.all_layers().len() {
        return own.to_string_lossy().into_owned();
    }
    let d = dir.join(format!("{}-manifest", fx.name));
    std::fs::create_dir_all(&d).unwrap();
    let mut m = fx.manifest.clone();
    m["layers"] = serde_json::Value::Array(fx.layers());
    std::fs::write(d.join("manifest.json"), m.to_string()).unwrap();
    std::fs::copy(
        fx.dir.join("expected/variables.bin"),
        d.join("variables.bin"),
    )
    .unwrap();
    d.join("manifest.json").to_string_lossy().into_owned()
}

#[test]
fn python_reads_every_preset_with_tensorflows_values() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = vec![root()
        .join("scripts/check_safetensors.py")
        .to_string_lossy()
        .into_owned()];
    for fx in layer_fixtures() {
        for preset in PRESETS {
            let out = dir.path().join(format!("{}-{preset}.safetensors", fx.name));
            export(&fx, preset, &out, &[]);
            args.extend([
                "--check".into(),
                manifest_for(&fx, dir.path()),
                out.to_string_lossy().into_owned(),
                preset.into(),
                "keep".into(),
            ]);
        }
        let out = dir.path().join(format!("{}-f16.safetensors", fx.name));
        export(&fx, "burn", &out, &["--dtype", "f16"]);
        args.extend([
            "--check".into(),
            manifest_for(&fx, dir.path()),
            out.to_string_lossy().into_owned(),
            "burn".into(),
            "f16".into(),
        ]);
    }
    let o = Command::new(py).args(&args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(text.contains("0 problems"), "{text}");
    eprintln!("{}", text.trim());
}

/// Each exported layer records what rests on TF's defaults
/// (`tfbn.layer.<module>.assumed`): for tf-keras with no graph, the
/// moving-variance convention too (it follows the assumed `fused`);
/// nothing once the manifest's settings are declared in a sidecar, whose
/// file then names the source.
#[test]
fn metadata_records_assumed_settings_and_sidecar_sources() {
    let dir = tempfile::tempdir().unwrap();
    let fx = fixture("tfkeras_ckpt");
    let out = dir.path().join("a.safetensors");
    export(&fx, "pytorch", &out, &[]);
    let meta = metadata(&std::fs::read(&out).unwrap());
    assert_eq!(
        meta["tfbn.layer.bn_fused.assumed"],
        r#"["epsilon","momentum","axis","fused","moving_variance convention"]"#
    );
    let hyper = fx.hyper_sidecar(dir.path());
    let out = dir.path().join("b.safetensors");
    export(&fx, "pytorch", &out, &["--hyper", s(&hyper)]);
    let meta = metadata(&std::fs::read(&out).unwrap());
    assert_eq!(meta["tfbn.layer.bn_fused.assumed"], "[]");
    assert_eq!(meta["tfbn.layer.bn_fused.epsilon"], "0.01");
    assert_eq!(
        meta["tfbn.layer.bn_fused.epsilon_source"],
        format!("sidecar: {}", hyper.display())
    );
    assert_eq!(meta["tfbn.layer.bn_dense.fused"], "false");
    assert_eq!(meta["tfbn.layer.bn_dense.moving_variance"], "biased");
}
