//! `tfbn verify`, the real binary: every fixture passes against TensorFlow
//! (Eigen: bit for bit; oneDNN: within its budget), injected faults fail and
//! are named, the JSON report is snapshot-tested, and bad input or a missing
//! TensorFlow exits 2.
//!
//! Each run is a separate process (TF reads `TF_ENABLE_ONEDNN_OPTS` once per
//! process). Tests that need TensorFlow skip, saying so, when it cannot be
//! loaded, unless `TFBN_REQUIRE_TF=1`.

use std::process::{Command, Output};

use serde_json::Value;

use crate::common::{fixture, fixtures, root};
use crate::tf_live::live_tf;

fn tfbn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tfbn"))
        .current_dir(root())
        .args(args)
        .output()
        .expect("run tfbn")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stderr(o)))
}

/// Fixtures with batch-norm layers, as paths relative to the repository,
/// each with a `--hyper` sidecar in `dir` declaring the settings TF built
/// its layers with (the manifest's): a checkpoint holds none of them, and a
/// pass on assumed defaults would prove nothing.
fn layer_fixtures(dir: &std::path::Path) -> Vec<(String, String, String)> {
    fixtures()
        .into_iter()
        .filter(|f| !f.layers().is_empty())
        .map(|f| {
            (
                f.name.clone(),
                f.rel_open_path().to_string_lossy().into_owned(),
                f.hyper_sidecar(dir).to_string_lossy().into_owned(),
            )
        })
        .collect()
}

/// The fixture's open path and a sidecar of its true settings in `dir`.
fn declared(fx: &str, dir: &std::path::Path) -> (String, String) {
    let f = fixture(fx);
    (
        f.rel_open_path().to_string_lossy().into_owned(),
        f.hyper_sidecar(dir).to_string_lossy().into_owned(),
    )
}

fn modes(v: &Value) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    for l in v["layers"].as_array().unwrap() {
        for m in l["modes"].as_array().unwrap() {
            out.push((
                format!(
                    "{} {}",
                    l["name"].as_str().unwrap(),
                    m["mode"].as_str().unwrap()
                ),
                m,
            ));
        }
    }
    out
}

#[test]
fn every_fixture_passes_bit_for_bit_against_eigen() {
    if live_tf("every_fixture_passes_bit_for_bit_against_eigen").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, path, hyper) in layer_fixtures(dir.path()) {
        let o = tfbn(&["verify", &path, "--hyper", &hyper, "--json"]);
        let v = json(&o);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{name}: {}",
            serde_json::to_string_pretty(&v).unwrap()
        );
        for l in v["layers"].as_array().unwrap() {
            assert_eq!(l["assumed"], serde_json::json!([]), "{name} {}", l["name"]);
        }
        assert_eq!(v["host"]["backend"], "eigen");
        assert_eq!(v["tolerance"], "exact");
        let ms = modes(&v);
        assert_eq!(ms.len(), 2 * fixture(&name).layers().len(), "{name}");
        for (what, m) in ms {
            assert_eq!(m["status"], "pass", "{name} {what}");
            assert_eq!(m["cases"].as_array().unwrap().len(), 4, "{name} {what}");
            for out in m["outputs"].as_array().unwrap() {
                assert_eq!(
                    out["bitwise_fraction"], 1.0,
                    "{name} {what} {}",
                    out["name"]
                );
                assert!(out["n"].as_u64().unwrap() > 0);
            }
            let names: Vec<&str> = m["outputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["name"].as_str().unwrap())
                .collect();
            // A hand-written tf.nn layer whose graph holds no update code
            // (a frozen graph) keeps no moving statistics.
            let stateless = fixture(&name).manifest["format"] == "frozen_graphdef"
                && v["layers"].as_array().unwrap().iter().any(|l| {
                    l["api"] == "nn"
                        && what.starts_with(&format!("{} ", l["name"].as_str().unwrap()))
                });
            if m["mode"] == "training" {
                let mut wanted = vec!["y", "batch_mean", "batch_variance"];
                if !stateless {
                    wanted.extend(["moving_mean", "moving_variance"]);
                }
                for want in wanted {
                    assert!(names.contains(&want), "{name} {what}: {names:?}");
                }
            } else {
                assert_eq!(names, ["y"], "{name} {what}");
            }
        }
    }
}

#[test]
fn every_fixture_passes_against_onednn_within_the_budget() {
    if live_tf("every_fixture_passes_against_onednn_within_the_budget").is_none() {
        return;
    }
    let mut inexact = 0;
    let dir = tempfile::tempdir().unwrap();
    for (name, path, hyper) in layer_fixtures(dir.path()) {
        let o = tfbn(&[
            "verify",
            &path,
            "--hyper",
            &hyper,
            "--tf-backend",
            "onednn",
            "--json",
        ]);
        let v = json(&o);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{name}: {}",
            serde_json::to_string_pretty(&v).unwrap()
        );
        assert_eq!(v["host"]["backend"], "onednn");
        assert_eq!(v["tolerance"], "ulp-of-max:max(64,2*sqrt(R))");
        for l in v["layers"].as_array().unwrap() {
            let shape: Vec<u64> = l["input_shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap())
                .collect();
            let rows = shape.iter().product::<u64>() / l["channels"].as_u64().unwrap();
            assert_eq!(
                l["tolerance"],
                format!("ulp-of-max:{}", tfbn::verify::onednn_budget(rows as usize))
            );
        }
        for (_, m) in modes(&v) {
            inexact += m["outputs"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|o| o["bitwise_fraction"] != 1.0)
                .count();
        }
    }
    // oneDNN really ran: its fused kernels are not Eigen's.
    assert!(
        inexact > 0,
        "every oneDNN output was bitwise equal to Eigen's: was oneDNN on?"
    );
}

/// A fault on the native side only must fail the layer and be named.
#[test]
fn injected_faults_fail_and_name_their_cause() {
    if live_tf("injected_faults_fail_and_name_their_cause").is_none() {
        return;
    }
    // tf1_trained: two fused layers and a non-fused 2-D one; keras3 and
    // tf_keras: the other update forms (renorm layers have no ε diagnosis).
    let dir = tempfile::tempdir().unwrap();
    for fx in ["tf1_trained", "keras3_functional", "tfkeras_ckpt"] {
        let (path, hyper) = declared(fx, dir.path());
        for fault in ["epsilon", "momentum", "bessel"] {
            let o = tfbn(&[
                "verify",
                &path,
                "--hyper",
                &hyper,
                "--json",
                "--inject-fault",
                fault,
            ]);
            assert_eq!(o.status.code(), Some(1), "{fx} {fault}: {}", stderr(&o));
            let v = json(&o);
            assert_eq!(v["injected_fault"], fault);
            assert_eq!(v["passed"], false);
            for l in v["layers"].as_array().unwrap() {
                let renorm = l["hyper"]["renorm"].as_bool().unwrap();
                for m in l["modes"].as_array().unwrap() {
                    let what = format!("{fx} {fault} {} {}", l["name"], m["mode"]);
                    let training = m["mode"] == "training";
                    // Momentum and Bessel only touch the moving statistics.
                    let affected = fault == "epsilon" || training;
                    if !affected {
                        assert_eq!(m["status"], "pass", "{what}");
                        continue;
                    }
                    assert_eq!(m["status"], "fail", "{what}");
                    let kinds: Vec<&str> = m["causes"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|c| c["kind"].as_str().unwrap())
                        .collect();
                    if fault == "epsilon" && renorm {
                        continue;
                    }
                    if fault == "bessel" && renorm {
                        // Renorm derives moving_variance from moving_stddev.
                        continue;
                    }
                    assert_eq!(
                        kinds,
                        [fault],
                        "{what}: {}",
                        serde_json::to_string_pretty(&m["causes"]).unwrap()
                    );
                }
            }
        }
    }
}

#[test]
fn injected_fault_is_caught_against_onednn_too() {
    if live_tf("injected_fault_is_caught_against_onednn_too").is_none() {
        return;
    }
    let path = fixture("tf1_trained")
        .rel_open_path()
        .to_string_lossy()
        .into_owned();
    for fault in ["epsilon", "momentum", "bessel"] {
        let o = tfbn(&[
            "verify",
            &path,
            "--tf-backend",
            "onednn",
            "--mode",
            "training",
            "--json",
            "--inject-fault",
            fault,
        ]);
        assert_eq!(o.status.code(), Some(1), "{fault}: {}", stderr(&o));
        let v = json(&o);
        for (what, m) in modes(&v) {
            assert_eq!(m["status"], "fail", "{fault} {what}");
            let kinds: Vec<&str> = m["causes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["kind"].as_str().unwrap())
                .collect();
            assert!(kinds.contains(&fault), "{fault} {what}: {kinds:?}");
        }
    }
}

/// Rounds every float to 4 significant digits and replaces machine-specific
/// fields, so that the snapshot holds on any machine of the same CPU vendor
/// class and is readable in review.
fn stabilize(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap();
            let r = if f == 0.0 || !f.is_finite() {
                f
            } else {
                let digits = 4 - 1 - f.abs().log10().floor() as i32;
                let p = 10f64.powi(digits);
                (f * p).round() / p
            };
            *v = serde_json::json!(r);
        }
        Value::Array(a) => a.iter_mut().for_each(stabilize),
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                match k.as_str() {
                    "cpu_vendor" | "threads" | "timing" | "timing_ms" => {
                        *x = Value::String(format!("[{k}]"))
                    }
                    _ => stabilize(x),
                }
            }
        }
        _ => {}
    }
}

/// Runs `verify` with `args` (plus `--json`), checks the exit status and
/// snapshots the stabilized report as `name`.
fn assert_json_report(args: &[&str], code: i32, name: &str) {
    let mut all = vec!["verify"];
    all.extend_from_slice(args);
    all.push("--json");
    let o = tfbn(&all);
    assert_eq!(o.status.code(), Some(code), "{}", stderr(&o));
    let mut v = json(&o);
    stabilize(&mut v);
    insta::assert_json_snapshot!(name, v);
}

#[test]
fn verify_json_snapshot() {
    if live_tf("verify_json_snapshot").is_none() {
        return;
    }
    assert_json_report(
        &["testdata/tf1_trained/ckpt/model.ckpt"],
        0,
        "verify_tf1_trained",
    );
}

#[test]
fn verify_json_snapshot_of_a_named_failure() {
    if live_tf("verify_json_snapshot_of_a_named_failure").is_none() {
        return;
    }
    assert_json_report(
        &[
            "testdata/keras3_functional/ckpt/ckpt-1",
            "--layer",
            "bn_dense",
            // The manifest's settings, as flags (a sidecar's temporary
            // path would enter the snapshot).
            "--epsilon",
            "bn_dense=2e-5",
            "--momentum",
            "bn_dense=0.95",
            "--axis",
            "bn_dense=-1",
            "--mode",
            "training",
            "--cases",
            "normal",
            "--inject-fault",
            "bessel",
        ],
        1,
        "verify_keras3_bessel_fault",
    );
}

/// Rows per type: a 16-bit pass and a not-applicable float64 row.
#[test]
fn verify_json_snapshot_of_dtypes() {
    if live_tf("verify_json_snapshot_of_dtypes").is_none() {
        return;
    }
    assert_json_report(
        &[
            "testdata/keras3_functional/ckpt/ckpt-1",
            "--layer",
            "bn",
            // The manifest's settings inference depends on.
            "--epsilon",
            "bn=0.01",
            "--axis",
            "bn=-1",
            "--api",
            "fused",
            "--mode",
            "inference",
            "--cases",
            "normal",
            "--dtype",
            "f16",
            "--dtype",
            "f64",
        ],
        0,
        "verify_keras3_dtypes",
    );
}

#[test]
fn table_output_names_layers_and_the_verdict() {
    if live_tf("table_output_names_layers_and_the_verdict").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_, hyper) = declared("tfkeras_ckpt", dir.path());
    let o = tfbn(&[
        "verify",
        "testdata/tfkeras_ckpt/ckpt/ckpt-1",
        "--hyper",
        &hyper,
        "--layer",
        "bn_nchw",
        "--layer",
        "bn_renorm",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.contains("bn_nchw") && text.contains("bn_renorm"),
        "{text}"
    );
    assert!(!text.contains("bn_fused"), "{text}");
    assert!(
        text.contains("2 layers, 4 layer-modes: 4 passed, 0 failed, 0 unproven — PASS"),
        "{text}"
    );
    assert!(text.contains("TensorFlow 2.21.0 (eigen)"), "{text}");

    let o = tfbn(&[
        "verify",
        "testdata/tfkeras_ckpt/ckpt/ckpt-1",
        "--hyper",
        &hyper,
        "--layer",
        "bn_fused",
        "--inject-fault",
        "epsilon",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.contains("FAIL") && text.contains("cause epsilon"),
        "{text}"
    );
}

#[test]
fn dump_writes_inputs_and_both_sides_outputs() {
    if live_tf("dump_writes_inputs_and_both_sides_outputs").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_, hyper) = declared("tfkeras_ckpt", dir.path());
    let o = tfbn(&[
        "verify",
        "testdata/tfkeras_ckpt/ckpt/ckpt-1",
        "--hyper",
        &hyper,
        "--layer",
        "bn_renorm",
        "--cases",
        "normal,tiny",
        "--dump",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let d = dir.path().join("bn_renorm").join("f32");
    for mode in ["inference", "training"] {
        for case in ["normal", "tiny"] {
            let c = d.join(mode).join(case);
            let read =
                |n: &str| match tfbn::testing::npy::read_npy(c.join(format!("{n}.npy"))).unwrap() {
                    tfbn::testing::npy::NpyArray::F32(a) => a,
                    _ => panic!("{n} not f32"),
                };
            let x = read("x");
            let (t, n) = (read("tf_y"), read("native_y"));
            assert_eq!(x.shape(), t.shape());
            assert!(t
                .iter()
                .zip(n.iter())
                .all(|(a, b)| a.to_bits() == b.to_bits()));
            if mode == "training" {
                for s in [
                    "moving_mean",
                    "moving_variance",
                    "moving_stddev",
                    "renorm_mean",
                    "renorm_stddev",
                ] {
                    assert_eq!(read(&format!("tf_{s}")).len(), 6, "{s}");
                    assert!(c.join(format!("native_{s}.npy")).is_file(), "{s}");
                }
            }
        }
    }
}

/// `--dump` writes each type's arrays in that type (`bfloat16` as `<u2`
/// bits), statistics in `float32` (`float64` for `float64`).
#[test]
fn dump_writes_each_dtype_in_its_own_type() {
    if live_tf("dump_writes_each_dtype_in_its_own_type").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_, hyper) = declared("keras3_functional", dir.path());
    let o = tfbn(&[
        "verify",
        "testdata/keras3_functional/ckpt/ckpt-1",
        "--hyper",
        &hyper,
        "--layer",
        "bn",
        "--mode",
        "training",
        "--cases",
        "normal",
        "--dtype",
        "all",
        "--dump",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for (dtype, x_descr, stat_descr) in [
        ("f32", "<f4", "<f4"),
        ("f16", "<f2", "<f4"),
        ("bf16", "<u2", "<f4"),
        ("f64", "<f8", "<f8"),
    ] {
        let c = dir.path().join("bn").join(dtype).join("training/normal");
        let read = |n: &str| tfbn::testing::npy::read_npy(c.join(format!("{n}.npy"))).unwrap();
        for n in ["x", "tf_y", "native_y"] {
            assert_eq!(read(n).descr(), x_descr, "{dtype} {n}");
        }
        assert_eq!(read("tf_y"), read("native_y"), "{dtype}");
        for n in ["tf_moving_mean", "native_batch_variance"] {
            assert_eq!(read(n).descr(), stat_descr, "{dtype} {n}");
        }
    }
}

/// Every input type, both modes, on a fixture of each naming style: bit
/// for bit against Eigen, where the API takes the type. The JSON, the table
/// and the summary name the type of every row.
#[test]
fn every_dtype_passes_bit_for_bit_on_each_style() {
    if live_tf("every_dtype_passes_bit_for_bit_on_each_style").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for fx in ["tf1_trained", "tfkeras_ckpt", "keras3_functional"] {
        let (path, hyper) = declared(fx, dir.path());
        let o = tfbn(&[
            "verify", &path, "--hyper", &hyper, "--dtype", "all", "--json",
        ]);
        let v = json(&o);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{fx}: {}",
            serde_json::to_string_pretty(&v).unwrap()
        );
        assert_eq!(
            v["dtypes"],
            serde_json::json!(["float32", "float16", "bfloat16", "float64"])
        );
        let mut passed = std::collections::BTreeSet::new();
        for (what, m) in modes(&v) {
            let dtype = m["dtype"].as_str().unwrap().to_string();
            match m["status"].as_str().unwrap() {
                "pass" => {
                    for out in m["outputs"].as_array().unwrap() {
                        assert_eq!(out["bitwise_fraction"], 1.0, "{fx} {what} {dtype}");
                    }
                    passed.insert((dtype, m["mode"].as_str().unwrap().to_string()));
                }
                "not_applicable" => {
                    assert!(m["error"].as_str().unwrap().contains("float64"), "{what}")
                }
                other => panic!("{fx} {what} {dtype}: {other}"),
            }
        }
        // Every (type, mode) passed on at least one layer of the fixture.
        assert_eq!(passed.len(), 8, "{fx}: {passed:?}");
        let text = String::from_utf8(
            tfbn(&["verify", &path, "--hyper", &hyper, "--dtype", "bf16,f64"]).stdout,
        )
        .unwrap();
        assert!(text.contains("dtypes bf16,f64"), "{text}");
        assert!(text.contains(" bf16 ") && text.contains(" f64 "), "{text}");
    }
}

/// `nn` on 16-bit inputs: TF's side runs `tf.nn.moments` (float16 upcast
/// to float32 and back; bfloat16 reduced as it is) and
/// `tf.nn.batch_normalization` in the 16-bit type, with the parameters cast
/// to it. Every row of every layer without renorm (which nn has not), both
/// modes and both types, passes bit for bit; training gives the batch
/// moments (float32) and no moving statistics.
#[test]
fn nn_on_16_bit_inputs_passes_bit_for_bit() {
    if live_tf("nn_on_16_bit_inputs_passes_bit_for_bit").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_, hyper) = declared("keras3_functional", dir.path());
    let o = tfbn(&[
        "verify",
        "testdata/keras3_functional/ckpt/ckpt-1",
        "--hyper",
        &hyper,
        "--api",
        "nn",
        "--dtype",
        "f16,bf16",
        "--layer",
        "bn",
        "--layer",
        "bn_default",
        "--layer",
        "bn_dense",
        "--json",
    ]);
    let v = json(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        serde_json::to_string_pretty(&v).unwrap()
    );
    assert_eq!(v["dtypes"], serde_json::json!(["float16", "bfloat16"]));
    assert_eq!(v["layers"].as_array().unwrap().len(), 3);
    let rows = modes(&v);
    assert_eq!(rows.len(), 12);
    let mut seen = std::collections::BTreeSet::new();
    for (what, m) in rows {
        let dtype = m["dtype"].as_str().unwrap().to_string();
        let mode = m["mode"].as_str().unwrap().to_string();
        assert_eq!(m["status"], "pass", "{what} {dtype}: {m}");
        assert_eq!(m["path"], "non_fused", "{what} {dtype}");
        for case in m["cases"].as_array().unwrap() {
            assert_eq!(case["bitwise_fraction"], 1.0, "{what} {dtype} {case}");
        }
        let mut names = Vec::new();
        for out in m["outputs"].as_array().unwrap() {
            assert_eq!(out["bitwise_fraction"], 1.0, "{what} {dtype} {out}");
            names.push(out["name"].as_str().unwrap().to_string());
        }
        let want: &[&str] = if mode == "training" {
            &["y", "batch_mean", "batch_variance"]
        } else {
            &["y"]
        };
        assert_eq!(names, want, "{what} {dtype}");
        seen.insert((dtype, mode));
    }
    assert_eq!(seen.len(), 4, "{seen:?}");
}

/// The raw op has no float64 kernel in TF: not applicable, not a pass and
/// not a failure; a run of nothing but such rows verified nothing.
#[test]
fn fused_op_on_float64_is_not_applicable() {
    if live_tf("fused_op_on_float64_is_not_applicable").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_, hyper) = declared("keras3_functional", dir.path());
    let args = |dtypes: &'static str| {
        vec![
            "verify",
            "testdata/keras3_functional/ckpt/ckpt-1",
            "--hyper",
            &hyper,
            "--layer",
            "bn",
            "--api",
            "fused",
            "--dtype",
            dtypes,
            "--json",
        ]
    };
    let o = tfbn(&args("f64"));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["summary"]["not_applicable"], 2);
    assert_eq!(v["summary"]["failed"], 0);
    for (what, m) in modes(&v) {
        assert_eq!(m["status"], "not_applicable", "{what}");
        assert_eq!(m["dtype"], "float64", "{what}");
        assert!(
            m["error"].as_str().unwrap().contains("no float64 kernel"),
            "{what}"
        );
    }
    let o = tfbn(&args("f32,f64"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["summary"]["passed"], 2);
    assert_eq!(v["summary"]["not_applicable"], 2);
    assert_eq!(v["layers"][0]["passed"], true);
}

#[test]
fn options_change_the_run() {
    if live_tf("options_change_the_run").is_none() {
        return;
    }
    let o = tfbn(&[
        "verify",
        "testdata/tf1_trained/ckpt/model.ckpt",
        "--layer",
        "batch_normalization",
        "--mode",
        "inference",
        "--batch",
        "3",
        "--spatial",
        "2,3,4",
        "--seed",
        "7",
        "--epsilon",
        "1e-5",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    let l = &v["layers"][0];
    assert_eq!(l["input_shape"], serde_json::json!([3, 2, 3, 4, 8]));
    assert_eq!(l["hyper"]["epsilon"], 1e-5);
    assert_eq!(l["hyper"]["epsilon_source"], "flag");
    assert_eq!(l["modes"].as_array().unwrap().len(), 1);
    assert_eq!(v["seed"], 7);

    // The raw op API on a 2-D input: TF has no such kernel; reported, not passed.
    let o = tfbn(&[
        "verify",
        "testdata/tf1_trained/ckpt/model.ckpt",
        "--api",
        "fused",
        "--spatial",
        "none",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v = json(&o);
    for (what, m) in modes(&v) {
        assert_eq!(m["status"], "unsupported", "{what}");
        assert!(
            m["error"].as_str().unwrap().contains("4-D or 5-D"),
            "{what}"
        );
    }

    // Every API on the same layer.
    let dir = tempfile::tempdir().unwrap();
    let (_, hyper) = declared("keras3_functional", dir.path());
    for api in ["fused", "tf1-layers", "tf-keras", "keras3", "nn"] {
        // fused=auto where the API has the choice: TF's rule, as Keras 3
        // would have run it.
        let o = tfbn(&[
            "verify",
            "testdata/keras3_functional/ckpt/ckpt-1",
            "--hyper",
            &hyper,
            "--fused",
            "auto",
            "--layer",
            "bn",
            "--api",
            api,
            "--json",
        ]);
        assert_eq!(o.status.code(), Some(0), "{api}: {}", stderr(&o));
        assert_eq!(json(&o)["layers"][0]["api"], api);
    }
}

#[test]
fn bad_input_exits_2() {
    // None of these needs TensorFlow.
    for (args, want) in [
        (
            vec![
                "verify",
                "testdata/tf1_trained/ckpt/model.ckpt",
                "--tolerance",
                "close",
            ],
            "tolerance",
        ),
        (
            vec![
                "verify",
                "testdata/tf1_trained/ckpt/model.ckpt",
                "--api",
                "torch",
            ],
            "--api",
        ),
        (
            vec![
                "verify",
                "testdata/tf1_trained/ckpt/model.ckpt",
                "--spatial",
                "1,2,3,4",
            ],
            "--spatial",
        ),
        (
            vec![
                "verify",
                "testdata/tf1_trained/ckpt/model.ckpt",
                "--cases",
                "huge",
            ],
            "--cases",
        ),
        (
            vec![
                "verify",
                "testdata/tf1_trained/ckpt/model.ckpt",
                "--batch",
                "0",
            ],
            "--batch",
        ),
        (vec!["verify", "testdata/nope"], "nope"),
        (
            vec![
                "verify",
                "testdata/tf1_trained/ckpt/model.ckpt",
                "--dtype",
                "f8",
            ],
            "--dtype",
        ),
        (
            vec![
                "verify",
                "testdata/tf1_trained/ckpt/model.ckpt",
                "--tf-backend",
                "mkl",
            ],
            "mkl",
        ),
    ] {
        let o = tfbn(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn nothing_verified_is_not_a_pass() {
    if live_tf("nothing_verified_is_not_a_pass").is_none() {
        return;
    }
    let o = tfbn(&["verify", "testdata/dtypes/ckpt/ckpt-1"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("nothing was verified"));
}

#[test]
fn unknown_layer_exits_2() {
    if live_tf("unknown_layer_exits_2").is_none() {
        return;
    }
    let o = tfbn(&[
        "verify",
        "testdata/tf1_trained/ckpt/model.ckpt",
        "--layer",
        "nope",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("batch_normalization_1"),
        "{}",
        stderr(&o)
    );
}

/// Without a usable TensorFlow, one error lists every place tried and the
/// fix, and the exit status is 2.
#[test]
fn missing_tensorflow_exits_2_and_lists_what_was_tried() {
    let o = Command::new(env!("CARGO_BIN_EXE_tfbn"))
        .current_dir(root())
        .env("TFBN_TF_EXPLICIT_ONLY", "1")
        .env("TFBN_TF_LIB", "/nonexistent/tensorflow")
        .args(["verify", "testdata/tf1_trained/ckpt/model.ckpt"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("TensorFlow could not be loaded"), "{e}");
    assert!(e.contains("a given folder: none given"), "{e}");
    assert!(
        e.contains("TFBN_TF_LIB /nonexistent/tensorflow: not a folder"),
        "{e}"
    );
    // The hint is for a user of the installed binary: how to install TF and
    // how to point tfbn at it, nothing inside tfbn's own checkout.
    assert!(e.contains("pip install tensorflow-cpu==2.21.0"), "{e}");
    assert!(e.contains("with TFBN_TF_LIB=DIR"), "{e}");
    // The flag is the CLI's hint, added to the library's message.
    assert!(e.contains("(--tf-lib DIR points one run at DIR)"), "{e}");
    assert!(!e.contains("scripts/"), "{e}");
    assert!(!e.contains(env!("CARGO_MANIFEST_DIR")), "{e}");

    let empty = tempfile::tempdir().unwrap();
    let o = tfbn(&[
        "inspect",
        "testdata/tf1_trained/ckpt/model.ckpt",
        "--reader",
        "both",
        "--tf-lib",
        empty.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no libtensorflow_cc.so.2"),
        "{}",
        stderr(&o)
    );
}

/// The issue: a Keras 3 checkpoint (no graph) whose layer was built with a
/// non-default ε. Both sides ran TF's default 1e-3 and verify said PASS.
/// Now every row that rests on an assumed setting is `unproven`, the run
/// exits 1 and the report names the layer, the setting and the fix.
#[test]
fn a_pass_resting_on_an_assumed_epsilon_is_unproven() {
    if live_tf("a_pass_resting_on_an_assumed_epsilon_is_unproven").is_none() {
        return;
    }
    let path = "testdata/keras3_functional/ckpt/ckpt-1";
    let base = ["verify", path, "--layer", "bn", "--cases", "normal"];
    let run = |extra: &[&str]| {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        tfbn(&a)
    };

    let o = run(&["--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["passed"], false);
    assert_eq!(v["summary"]["unproven"], 2);
    assert_eq!(v["summary"]["passed"], 0);
    assert_eq!(v["summary"]["failed"], 0);
    let l = &v["layers"][0];
    assert_eq!(l["name"], "bn");
    assert_eq!(
        l["assumed"],
        serde_json::json!(["epsilon", "momentum", "axis"])
    );
    assert_eq!(l["hyper"]["epsilon_source"], "default");
    for (what, m) in modes(&v) {
        assert_eq!(m["status"], "unproven", "{what}");
        assert!(
            m["assumed"].as_array().unwrap().contains(&"epsilon".into()),
            "{what}"
        );
    }
    let note = l["notes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|n| n.starts_with("unproven"))
        .expect("a note on what to declare");
    // The report names the settings; the CLI's text adds the flags.
    for want in ["default epsilon", "for this layer", "accept TF's defaults"] {
        assert!(note.contains(want), "{note}");
    }
    let text = String::from_utf8(run(&[]).stdout).unwrap();
    assert!(
        text.contains("1 layers, 2 layer-modes: 0 passed, 0 failed, 2 unproven — UNPROVEN"),
        "{text}"
    );
    for want in ["--epsilon bn=VALUE", "--hyper", "--assume-defaults"] {
        assert!(text.contains(want), "{text}");
    }

    // Declared (inference rests on ε and the axis only): a pass, and the
    // report says where ε came from.
    let o = run(&[
        "--mode",
        "inference",
        "--epsilon",
        "bn=1e-5",
        "--axis",
        "bn=-1",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["layers"][0]["hyper"]["epsilon"], 1e-5);
    assert_eq!(v["layers"][0]["hyper"]["epsilon_source"], "flag");
    assert_eq!(v["layers"][0]["assumed"], serde_json::json!(["momentum"]));
    assert_eq!(v["layers"][0]["modes"][0]["assumed"], serde_json::json!([]));
    // ... but training also rests on the momentum.
    let o = run(&["--epsilon", "bn=1e-5", "--axis", "bn=-1", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v = json(&o);
    let statuses: Vec<(&str, &str)> = modes(&v)
        .iter()
        .map(|(_, m)| (m["mode"].as_str().unwrap(), m["status"].as_str().unwrap()))
        .collect();
    assert_eq!(statuses, [("inference", "pass"), ("training", "unproven")]);

    // --assume-defaults: today's behaviour, explicitly, and still listed.
    let o = run(&["--assume-defaults", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["assume_defaults"], true);
    assert_eq!(v["summary"]["passed"], 2);
    assert!(v["layers"][0]["assumed"]
        .as_array()
        .unwrap()
        .contains(&"epsilon".into()));
    let text = String::from_utf8(run(&["--assume-defaults"]).stdout).unwrap();
    assert!(text.contains("--assume-defaults: 1 layer(s)"), "{text}");
    assert!(text.contains("— PASS"), "{text}");
}

/// The manifest's settings (what Keras built the layers with), declared in
/// a generated sidecar: every layer passes on proven settings, each marked
/// `sidecar`; without the sidecar the same run is unproven.
#[test]
fn keras3_checkpoint_passes_with_its_true_settings_declared() {
    if live_tf("keras3_checkpoint_passes_with_its_true_settings_declared").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (path, hyper) = declared("keras3_functional", dir.path());
    let o = tfbn(&[
        "verify", &path, "--hyper", &hyper, "--cases", "normal", "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    let fx = fixture("keras3_functional");
    for want in fx.layers() {
        let name = fx.tfbn_name(&want);
        let l = v["layers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name.as_str())
            .unwrap();
        assert_eq!(l["assumed"], serde_json::json!([]));
        assert_eq!(l["hyper"]["epsilon"], want["hyper"]["epsilon"]);
        assert_eq!(l["hyper"]["momentum"], want["hyper"]["momentum"]);
        assert!(l["hyper"]["epsilon_source"]
            .as_str()
            .unwrap()
            .starts_with("sidecar "));
    }
    assert_eq!(v["summary"]["passed"], 8);
    let o = tfbn(&["verify", &path, "--cases", "normal", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(json(&o)["summary"]["unproven"], 8);
}

/// The layers' own-graph verdicts of a JSON report, by layer name.
fn own_graph(v: &Value) -> Vec<(String, String)> {
    v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap().to_string(),
                l["own_graph"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Where the file holds a runnable graph (a TF1 `.meta`, a frozen
/// `GraphDef`), each layer's own batch-norm nodes run in TF and agree with
/// the native layer bit for bit, in every branch the graph has, including
/// the moving-average updates of the training branch.
#[test]
fn own_graph_passes_on_files_with_a_runnable_graph() {
    if live_tf("own_graph_passes_on_files_with_a_runnable_graph").is_none() {
        return;
    }
    for (path, modes_per_layer) in [
        ("testdata/tf1_trained/ckpt", 1),
        ("testdata/tf1_handwritten/ckpt", 2),
        ("testdata/frozen_tf1/frozen.pb", 1),
    ] {
        let o = tfbn(&[
            "verify",
            path,
            "--cases",
            "normal",
            "--assume-defaults",
            "--json",
        ]);
        assert_eq!(o.status.code(), Some(0), "{path}: {}", stderr(&o));
        let v = json(&o);
        for l in v["layers"].as_array().unwrap() {
            assert_eq!(l["own_graph"], "passed", "{path}: {}", l["name"]);
            let runs = l["own_graph_runs"].as_array().unwrap();
            assert!(runs.len() >= modes_per_layer, "{path}: {}", l["name"]);
            for r in runs {
                assert_eq!(r["status"], "pass", "{path}: {r}");
                if r["mode"] == "training" && !path.contains("frozen") {
                    let outs: Vec<&str> = r["outputs"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|o| o["name"].as_str().unwrap())
                        .collect();
                    assert_eq!(outs, ["y", "moving_mean", "moving_variance"], "{path}");
                }
            }
        }
        assert_eq!(
            v["summary"]["own_graph_passed"],
            v["layers"].as_array().unwrap().len(),
            "{path}"
        );
    }
    // The wild musicnn checkpoints (TF 1.13 `.meta` with FusedBatchNormGrad
    // nodes), when the corpus has been fetched.
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let wild = home.map(|h| h.join(".cache/tfbn/wild/musicnn-msd-musicnn/MSD_musicnn"));
    if let Some(w) = wild.filter(|w| w.join(".meta").is_file()) {
        let w = w.to_string_lossy().into_owned();
        let o = tfbn(&["verify", &w, "--cases", "normal", "--json"]);
        let v = json(&o);
        let own = own_graph(&v);
        assert!(!own.is_empty());
        for (name, verdict) in &own {
            assert!(
                verdict == "passed" || verdict == "none",
                "{name}: {verdict}"
            );
        }
        assert!(v["summary"]["own_graph_passed"].as_u64().unwrap() > 0);
    } else {
        eprintln!("musicnn not fetched: skipping its own-graph check");
    }
}

/// The must-show: a TF1 checkpoint with `.meta` whose recovered ε is
/// overridden wrong. The rebuilt layer runs the wrong ε on both sides and
/// agrees; the file's own graph does not, names `epsilon`, and verify
/// exits 1. A wrong momentum fails the training branch's updates the same
/// way.
#[test]
fn a_wrong_setting_fails_against_the_files_own_graph() {
    if live_tf("a_wrong_setting_fails_against_the_files_own_graph").is_none() {
        return;
    }
    let path = "testdata/tf1_trained/ckpt";
    let o = tfbn(&[
        "verify",
        path,
        "--cases",
        "normal",
        "--epsilon",
        "batch_normalization_1=1e-3",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["passed"], false);
    assert_eq!(v["summary"]["failed"], 0, "the rebuilt layer agrees");
    assert_eq!(v["summary"]["own_graph_failed"], 1);
    let own = own_graph(&v);
    assert_eq!(own[0], ("batch_normalization".into(), "passed".into()));
    assert_eq!(own[1].0, "batch_normalization_1");
    assert!(own[1].1.starts_with("failed:"), "{}", own[1].1);
    assert!(own[1].1.contains("epsilon"), "{}", own[1].1);
    assert_eq!(v["layers"][1]["passed"], false);
    assert_eq!(v["layers"][1]["hyper"]["epsilon_source"], "flag");

    let o = tfbn(&[
        "verify",
        path,
        "--cases",
        "normal",
        "--epsilon",
        "batch_normalization_1=1e-3",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("FAILED: epsilon?"), "{text}");
    assert!(
        text.contains("own graph: 2 passed, 1 failed — FAIL"),
        "{text}"
    );

    let o = tfbn(&[
        "verify",
        "testdata/tf1_handwritten/ckpt",
        "--cases",
        "normal",
        "--momentum",
        "conv1_bn=0.99",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let own = own_graph(&json(&o));
    assert!(
        own.iter()
            .any(|(n, g)| n == "conv1_bn" && g.starts_with("failed") && g.contains("momentum")),
        "{own:?}"
    );
}

/// A TF2 SavedModel's batch norm lives in functions, which run only as a
/// whole: the report says so (the rebuilt layer still verifies). A
/// checkpoint without a graph has none.
#[test]
fn own_graph_says_when_there_is_nothing_to_run() {
    if live_tf("own_graph_says_when_there_is_nothing_to_run").is_none() {
        return;
    }
    for (path, want) in [
        (
            "testdata/tfkeras_savedmodel/savedmodel",
            "not runnable: TF2 function",
        ),
        ("testdata/tfkeras_ckpt/ckpt", "none"),
    ] {
        let o = tfbn(&[
            "verify",
            path,
            "--cases",
            "normal",
            "--mode",
            "inference",
            "--assume-defaults",
            "--json",
        ]);
        let v = json(&o);
        for (name, verdict) in own_graph(&v) {
            assert_eq!(verdict, want, "{path}: {name}");
        }
        assert_eq!(v["summary"]["own_graph_failed"], 0);
    }
}
