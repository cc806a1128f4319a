//! `tfbn lint` on the fixture corpus, on hand-made checkpoints with broken
//! statistics, and through the real binary (exit codes 0/1/2).

use std::path::Path;
use std::process::Output;

use tfbn::lint::{lint, Code, LintReport, Severity};
use tfbn::source::Source;
use tfbn::{DType, Tensor, TensorData};

use crate::common::{fixture, fixtures, tfbn};

fn lint_path(path: &Path) -> LintReport {
    lint(&Source::open(path).unwrap()).unwrap()
}

fn layers_with(r: &LintReport, code: Code) -> Vec<String> {
    r.findings
        .iter()
        .filter(|f| f.code == code)
        .map(|f| f.layer.clone().unwrap_or_default())
        .collect()
}

#[test]
fn forgotten_update_ops_are_found_in_every_layer_and_only_there() {
    for fx in fixtures() {
        let r = lint_path(&fx.open_path());
        let flagged = layers_with(&r, Code::StatsNeverUpdated);
        if fx.name == "tf1_no_update_ops" {
            let all: Vec<String> = fx
                .layers()
                .iter()
                .map(|l| l["name"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(flagged, all, "{}", fx.name);
        } else {
            assert!(flagged.is_empty(), "{}: {flagged:?}", fx.name);
        }
    }
}

#[test]
fn training_mode_in_serving_is_found_only_on_serving_paths() {
    for fx in fixtures() {
        let r = lint_path(&fx.open_path());
        let flagged = layers_with(&r, Code::TrainingModeInServing);
        if fx.name == "tfkeras_training_serving" {
            assert_eq!(flagged, ["bn_fused", "bn_dense"], "{}", fx.name);
        } else {
            // tfkeras_savedmodel's function library holds training traces
            // of every layer; no signature reaches them.
            assert!(flagged.is_empty(), "{}: {flagged:?}", fx.name);
        }
    }
}

#[test]
fn fixtures_hold_no_invalid_statistics_and_no_conflicts() {
    for fx in fixtures() {
        let r = lint_path(&fx.open_path());
        for code in [
            Code::VarianceInvalid,
            Code::MeanInvalid,
            Code::ShapeMismatch,
            Code::DeadChannels,
            Code::HyperparameterConflict,
            Code::EpsilonBelowCudnnMin,
        ] {
            assert!(layers_with(&r, code).is_empty(), "{}: {code}", fx.name);
        }
        // One variance-convention note per layer.
        assert_eq!(
            layers_with(&r, Code::VarianceConvention).len(),
            fx.layers().len(),
            "{}",
            fx.name
        );
    }
}

fn snapshot(name: &str) {
    let fx = fixture(name);
    let report = lint_path(&fx.rel_open_path());
    insta::assert_json_snapshot!(format!("lint_{name}"), report);
}

#[test]
fn lint_json_tf1_no_update_ops() {
    snapshot("tf1_no_update_ops");
}

#[test]
fn lint_json_tf1_trained() {
    snapshot("tf1_trained");
}

#[test]
fn lint_json_tfkeras_training_serving() {
    snapshot("tfkeras_training_serving");
}

#[test]
fn lint_json_keras3_saved_model() {
    snapshot("keras3_saved_model");
}

#[test]
fn lint_json_keras3_functional() {
    snapshot("keras3_functional");
}

// ---------------------------------------------------------------- hand-made checkpoints

fn f32_tensor(values: &[f32]) -> Tensor {
    Tensor {
        dtype: DType::F32,
        shape: vec![values.len() as u64],
        data: TensorData::Bytes(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
    }
}

/// A TF1-style checkpoint with one layer `bn` holding these values, plus
/// `global_step` = `step`.
fn tf1_checkpoint(
    dir: &Path,
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    step: i64,
) -> std::path::PathBuf {
    let prefix = dir.join("model.ckpt");
    let t = [
        ("bn/gamma", f32_tensor(gamma)),
        ("bn/beta", f32_tensor(beta)),
        ("bn/moving_mean", f32_tensor(mean)),
        ("bn/moving_variance", f32_tensor(var)),
        (
            "global_step",
            Tensor {
                dtype: DType::I64,
                shape: vec![],
                data: TensorData::Bytes(step.to_le_bytes().to_vec()),
            },
        ),
    ];
    let refs: Vec<(&str, &Tensor)> = t.iter().map(|(k, v)| (*k, v)).collect();
    tfbn::testing::bundle::write::write_v2(&prefix, &refs).unwrap();
    prefix
}

fn codes(r: &LintReport) -> Vec<Code> {
    r.findings.iter().map(|f| f.code).collect()
}

#[test]
fn invalid_statistics_and_dead_channels_are_found() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tf1_checkpoint(
        tmp.path(),
        &[1.0, 0.0, 1e-12, 2.0],
        &[0.0; 4],
        &[0.1, f32::NAN, 0.0, f32::INFINITY],
        &[1.0, -0.5, f32::NAN, 1.0],
        0,
    );
    let r = lint_path(&p);
    let c = codes(&r);
    for want in [Code::MeanInvalid, Code::VarianceInvalid, Code::DeadChannels] {
        assert!(c.contains(&want), "{want}: {c:?}");
    }
    let var = r
        .findings
        .iter()
        .find(|f| f.code == Code::VarianceInvalid)
        .unwrap();
    assert!(
        var.message
            .contains("negative in 1, NaN in 1 and infinite in 0 of 4"),
        "{}",
        var.message
    );
    let dead = r
        .findings
        .iter()
        .find(|f| f.code == Code::DeadChannels)
        .unwrap();
    assert!(
        dead.message.starts_with("2 of 4 channels"),
        "{}",
        dead.message
    );
    assert!(dead.message.ends_with("(1, 2)"), "{}", dead.message);
    assert!(r.fails(Severity::Error));
}

#[test]
fn initial_statistics_of_an_untrained_checkpoint_are_fine() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tf1_checkpoint(tmp.path(), &[1.0; 3], &[0.0; 3], &[0.0; 3], &[1.0; 3], 0);
    assert!(!codes(&lint_path(&p)).contains(&Code::StatsNeverUpdated));
}

#[test]
fn a_positive_global_step_proves_training() {
    // gamma and beta still at 1 / 0 (e.g. frozen), but global_step moved.
    let tmp = tempfile::tempdir().unwrap();
    let p = tf1_checkpoint(tmp.path(), &[1.0; 3], &[0.0; 3], &[0.0; 3], &[1.0; 3], 7);
    let r = lint_path(&p);
    let f = r
        .findings
        .iter()
        .find(|f| f.code == Code::StatsNeverUpdated)
        .unwrap();
    assert!(f.message.ends_with("global_step = 7"), "{}", f.message);
}

#[test]
fn mismatched_shapes_are_found() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tf1_checkpoint(tmp.path(), &[1.0; 3], &[0.0; 2], &[0.5; 3], &[1.5; 3], 1);
    let r = lint_path(&p);
    let f = r
        .findings
        .iter()
        .find(|f| f.code == Code::ShapeMismatch)
        .unwrap();
    assert!(f.message.contains("beta [2]"), "{}", f.message);
}

// ---------------------------------------------------------------- the binary

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

#[test]
fn exit_codes_follow_deny() {
    let clean = fixture("tf1_trained").open_path();
    let clean = clean.to_str().unwrap();
    // Only info findings (variance conventions): 0 unless --deny info.
    let o = tfbn(&["lint", clean]);
    assert_eq!(code(&o), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[..3]
            .iter()
            .all(|l| l.starts_with("info[variance-convention] ")),
        "{text}"
    );
    assert_eq!(lines[3], "3 findings: 0 error, 0 warning, 3 info", "{text}");
    assert_eq!(code(&tfbn(&["lint", "--deny", "warning", clean])), Some(0));
    assert_eq!(code(&tfbn(&["lint", "--deny", "info", clean])), Some(1));

    // Warnings (defaults assumed) fail only with --deny warning.
    let k3 = fixture("keras3_functional").open_path();
    let k3 = k3.to_str().unwrap();
    assert_eq!(code(&tfbn(&["lint", k3])), Some(0));
    assert_eq!(code(&tfbn(&["lint", "--deny", "warning", k3])), Some(1));

    // Errors fail by default.
    let bad = fixture("tf1_no_update_ops").open_path();
    let o = tfbn(&["lint", "--json", bad.to_str().unwrap()]);
    assert_eq!(code(&o), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let f = &v["findings"][0];
    for k in ["code", "severity", "layer", "message"] {
        assert!(f.get(k).is_some(), "{k}: {f}");
    }
    assert_eq!(f["code"], "stats-never-updated");
    assert_eq!(f["severity"], "error");

    let serving = fixture("tfkeras_training_serving").open_path();
    assert_eq!(code(&tfbn(&["lint", serving.to_str().unwrap()])), Some(1));
}

#[test]
fn bad_input_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nothing-here");
    let o = tfbn(&["lint", missing.to_str().unwrap()]);
    assert_eq!(code(&o), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).starts_with("tfbn: error: "));
    assert!(o.stdout.is_empty());

    let clean = fixture("tf1_trained").open_path();
    assert_eq!(
        code(&tfbn(&["lint", "--deny", "fatal", clean.to_str().unwrap()])),
        Some(2)
    );

    // A SavedModel whose function calls itself: a typed error, exit 2.
    let fx = fixture("tfkeras_training_serving");
    let dir = tmp.path().join("recursive");
    std::fs::create_dir_all(dir.join("variables")).unwrap();
    for e in std::fs::read_dir(fx.open_path().join("variables")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join("variables").join(e.file_name())).unwrap();
    }
    let mut sm = <tfbn::testing::proto::saved_model::SavedModel as prost::Message>::decode(
        std::fs::read(fx.open_path().join("saved_model.pb"))
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    let lib = sm.meta_graphs[0]
        .graph_def
        .as_mut()
        .unwrap()
        .library
        .as_mut()
        .unwrap();
    let f = &mut lib.function[0];
    let me = f.signature.as_ref().unwrap().name.clone();
    let mut n = tfbn::testing::proto::graph::NodeDef {
        name: "me".into(),
        op: "PartitionedCall".into(),
        ..Default::default()
    };
    n.attr.insert(
        "f".into(),
        tfbn::testing::proto::graph::AttrValue {
            value: Some(tfbn::testing::proto::graph::attr_value::Value::Func(
                tfbn::testing::proto::graph::NameAttrList {
                    name: me.clone(),
                    attr: Default::default(),
                },
            )),
        },
    );
    f.node_def.push(n);
    std::fs::write(
        dir.join("saved_model.pb"),
        prost::Message::encode_to_vec(&sm),
    )
    .unwrap();
    let o = tfbn(&["lint", dir.to_str().unwrap()]);
    assert_eq!(code(&o), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("calls itself"), "{err}");
    assert!(err.contains(&me), "{err}");
}

/// One `unknown-hyperparameters` finding per assumed setting (not only when
/// all are); a declared setting is no longer one.
#[test]
fn unknown_hyperparameters_fire_per_assumed_setting() {
    let k3 = fixture("keras3_functional").open_path();
    let k3 = k3.to_str().unwrap();
    let settings = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["lint", "--json", k3];
        a.extend_from_slice(args);
        let o = tfbn(&a);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["code"] == "unknown-hyperparameters" && f["layer"] == "bn")
            .map(|f| {
                let m = f["message"].as_str().unwrap();
                m.split(':').next().unwrap().to_string()
            })
            .collect()
    };
    assert_eq!(settings(&[]), ["epsilon", "momentum", "axis"]);
    assert_eq!(settings(&["--epsilon", "bn=0.01"]), ["momentum", "axis"]);
    assert_eq!(
        settings(&["--epsilon", "bn=0.01", "--momentum", "0.9", "--axis", "3"]),
        Vec::<String>::new()
    );
}

/// `--allow CODE[=LAYER_GLOB]` (and a sidecar's `allow`) silences findings
/// like clippy's allow: they no longer fail the run, are listed under
/// `allowed`, and the summary line counts them.
#[test]
fn allow_silences_findings_and_counts_them() {
    let k3 = fixture("keras3_functional").open_path();
    let k3 = k3.to_str().unwrap();
    let deny = ["lint", k3, "--deny", "warning"];
    let run = |extra: &[&str]| {
        let mut a = deny.to_vec();
        a.extend_from_slice(extra);
        tfbn(&a)
    };
    assert_eq!(code(&run(&[])), Some(1));
    // Only one layer allowed: the others still fail.
    assert_eq!(
        code(&run(&["--allow", "unknown-hyperparameters=bn"])),
        Some(1)
    );
    let o = run(&["--allow", "unknown-hyperparameters"]);
    assert_eq!(code(&o), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(!text.contains("unknown-hyperparameters"), "{text}");
    let last = text.lines().last().unwrap();
    assert!(last.ends_with(", 12 allowed"), "{text}");
    let o = run(&["--allow", "unknown-hyperparameters=bn*", "--json"]);
    assert_eq!(code(&o), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["allowed"].as_array().unwrap().len(), 12);
    assert!(v["allowed"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["code"] == "unknown-hyperparameters"));

    // The same from a sidecar.
    let dir = tempfile::tempdir().unwrap();
    let side = dir.path().join("lint.toml");
    std::fs::write(&side, "allow = [\"unknown-hyperparameters=bn*\"]\n").unwrap();
    let o = run(&["--hyper", side.to_str().unwrap()]);
    assert_eq!(code(&o), Some(0), "{}", String::from_utf8_lossy(&o.stderr));

    // An unknown code is bad input.
    assert_eq!(code(&run(&["--allow", "no-such-code"])), Some(2));
}
