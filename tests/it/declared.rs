//! Declared settings, one way for every command: each of `--epsilon`,
//! `--momentum`, `--axis`, `--fused`, `--variance`, `--hyper` and `--bn` is
//! accepted by `inspect`, `export`, `apply`, `verify`, `lint` and `snapshot`
//! and takes effect there (the command's own output shows the value and
//! its source, `flag` or `sidecar`).

use std::path::Path;
use std::process::Output;

use serde_json::Value;
use tfbn::testing::bundle::write_v2;
use tfbn::testing::npy::{write_npy, NpyArray};
use tfbn::{DType, Tensor, TensorData};

use crate::tf_live::live_tf;

use crate::common::tfbn;

fn f32s(v: &[f32]) -> Tensor {
    Tensor {
        dtype: DType::F32,
        shape: vec![v.len() as u64],
        data: TensorData::Bytes(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
    }
}

const LAYER: &str = "net/conv1_bn";
const MAPPING: &str = "*_bn:gamma=scale,beta=offset,moving_mean=pop_mean,moving_variance=pop_var";

/// A graph-less TF1-style checkpoint of one hand-written layer with custom
/// names (found only through `--bn`), and a 2-D input for `apply`.
fn checkpoint(dir: &Path) -> (String, String) {
    let prefix = dir.join("model.ckpt");
    let (scale, offset) = (f32s(&[1.0, 2.0, 0.5]), f32s(&[0.1, -0.2, 0.3]));
    let (mean, var) = (f32s(&[0.0, 1.0, -1.0]), f32s(&[1.0, 4.0, 0.25]));
    write_v2(
        &prefix,
        &[
            ("net/conv1_bn/scale", &scale),
            ("net/conv1_bn/offset", &offset),
            ("net/conv1_bn/pop_mean", &mean),
            ("net/conv1_bn/pop_var", &var),
        ],
    )
    .unwrap();
    let x = ndarray::Array2::from_shape_fn((4, 3), |(i, j)| i as f32 - j as f32 * 0.5).into_dyn();
    let input = dir.join("x.npy");
    write_npy(&input, &NpyArray::F32(x)).unwrap();
    (
        prefix.to_string_lossy().into_owned(),
        input.to_string_lossy().into_owned(),
    )
}

/// A JSON value as the settings line prints it (`0.000002`, `-1`, `false`).
fn show(v: &Value) -> String {
    match v {
        Value::String(t) => t.clone(),
        Value::Number(n) if n.is_f64() => n.as_f64().unwrap().to_string(),
        other => other.to_string(),
    }
}

/// `setting=value@source` for every setting the output shows for the
/// layer (source: its first word, `flag`, `sidecar`, `default`, …).
fn views(cmd: &str, o: &Output, out_file: &Path) -> Vec<String> {
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let kind = |s: &str| {
        s.split([' ', ':', ')'])
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let mut v = Vec::new();
    let mut push = |name: &str, value: String, source: String| {
        v.push(format!("{name}={value}@{}", kind(&source)))
    };
    match cmd {
        "inspect" => {
            let j: Value = serde_json::from_str(&stdout).unwrap();
            for l in j["layers"].as_array().unwrap() {
                let h = &l["hyper"];
                for s in ["epsilon", "momentum", "axis", "fused"] {
                    push(
                        s,
                        show(&h[s]["value"]),
                        h[s]["source"]["kind"].as_str().unwrap().into(),
                    );
                }
                push(
                    "variance",
                    l["moving_variance"]["value"].as_str().unwrap().into(),
                    l["moving_variance"]["source"]["kind"]
                        .as_str()
                        .unwrap()
                        .into(),
                );
            }
        }
        "export" => {
            let bytes = std::fs::read(out_file).unwrap();
            let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
            let m = meta.metadata().clone().unwrap();
            let pre = format!("tfbn.layer.{LAYER}.");
            let f = |k: &str| m[&format!("{pre}{k}")].clone();
            for (s, field) in [
                ("epsilon", "epsilon"),
                ("momentum", "momentum_tf"),
                ("axis", "axis"),
                ("fused", "fused"),
                ("variance", "moving_variance"),
            ] {
                let src = if field == "momentum_tf" {
                    "momentum"
                } else {
                    field
                };
                push(s, f(field), f(&format!("{src}_source")));
            }
        }
        "verify" => {
            let j: Value = serde_json::from_str(&stdout).unwrap();
            for l in j["layers"].as_array().unwrap() {
                let h = &l["hyper"];
                for (s, field) in [
                    ("epsilon", "epsilon"),
                    ("momentum", "momentum"),
                    ("fused", "fused"),
                    ("variance", "moving_variance"),
                ] {
                    push(
                        s,
                        show(&h[field]),
                        h[&format!("{field}_source")].as_str().unwrap().into(),
                    );
                }
                // verify runs the axis as 1 or −1; the source is the layer's.
                push(
                    "axis",
                    show(&h["axis"]),
                    h["axis_source"].as_str().unwrap().into(),
                );
            }
        }
        "apply" | "snapshot" => {
            // `settings: epsilon V (source); …` (apply's stderr) or the
            // snapshot header's `  settings epsilon V (source); …`.
            let text = if cmd == "apply" {
                stderr.to_string()
            } else {
                std::fs::read_to_string(out_file).unwrap_or_default()
            };
            for line in text.lines() {
                let Some(rest) = line
                    .strip_prefix("settings: ")
                    .or_else(|| line.strip_prefix("  settings "))
                else {
                    continue;
                };
                for part in rest.split("; ") {
                    let (name, rest) = part.split_once(' ').unwrap();
                    let (value, source) = rest.split_once(" (").unwrap();
                    let name = if name == "moving_variance" {
                        "variance"
                    } else {
                        name
                    };
                    push(name, value.into(), source.into());
                }
            }
        }
        "lint" => {
            // ε shows in epsilon-below-1.001e-5; a declared setting is no
            // longer reported unknown; the convention says it was declared.
            let j: Value = serde_json::from_str(&stdout).unwrap();
            let findings = j["findings"].as_array().unwrap();
            if findings.iter().all(|f| f["layer"] != LAYER) {
                return v;
            }
            for f in findings {
                let msg = f["message"].as_str().unwrap();
                if f["code"] == "epsilon-below-1.001e-5" {
                    let rest = msg.strip_prefix("epsilon ").unwrap();
                    let (value, rest) = rest.split_once(" (").unwrap();
                    push("epsilon", value.into(), rest.into());
                }
                if f["code"] == "variance-convention" {
                    let biased = msg.contains("the biased batch variance");
                    let value = if biased { "biased" } else { "bessel" };
                    let source = msg
                        .split_once("declared (")
                        .map(|(_, s)| s.to_string())
                        .unwrap_or_else(|| "recovered".into());
                    push("variance", value.into(), source);
                }
            }
            for s in ["momentum", "axis", "fused"] {
                let unknown = findings.iter().any(|f| {
                    f["code"] == "unknown-hyperparameters"
                        && f["message"].as_str().unwrap().starts_with(&format!("{s}:"))
                });
                if !unknown {
                    push(s, "*".into(), "declared".into());
                }
            }
        }
        _ => unreachable!(),
    }
    v
}

#[test]
fn every_declaration_flag_works_on_every_command() {
    let tf = live_tf("every_declaration_flag_works_on_every_command").is_some();
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, input) = checkpoint(dir.path());
    let sidecar = dir.path().join("h.toml");
    std::fs::write(
        &sidecar,
        format!("bn = [\"{MAPPING}\"]\n[layers.\"net/*\"]\nepsilon = 3e-6\nfused = false\n"),
    )
    .unwrap();
    let sidecar = sidecar.to_string_lossy().into_owned();

    // (flag arguments, whether --bn is added, what must show)
    let cases: Vec<(Vec<&str>, bool, Vec<&str>)> = vec![
        (
            vec!["--epsilon", "net/conv1_bn=0.000002"],
            true,
            vec!["epsilon=0.000002@flag"],
        ),
        (vec!["--momentum", "*=0.9"], true, vec!["momentum=0.9@flag"]),
        (vec!["--axis", "-1"], true, vec!["axis=-1@flag"]),
        (
            vec!["--fused", "net/*=false"],
            true,
            vec!["fused=false@flag"],
        ),
        (
            vec!["--variance", "biased"],
            true,
            vec!["variance=biased@flag"],
        ),
        (
            vec!["--hyper", &sidecar],
            false,
            vec!["epsilon=0.000003@sidecar", "fused=false@sidecar"],
        ),
        (vec![], true, vec!["epsilon=0.001@default"]),
    ];
    for cmd in ["inspect", "export", "apply", "verify", "lint", "snapshot"] {
        if cmd == "verify" && !tf {
            continue;
        }
        for (flags, with_bn, wants) in &cases {
            let out = dir.path().join(format!("{cmd}.out"));
            let _ = std::fs::remove_file(&out);
            let _ = std::fs::remove_dir_all(&out);
            let out_s = out.to_string_lossy().into_owned();
            let mut args: Vec<&str> = vec![cmd, &ckpt];
            match cmd {
                "inspect" | "lint" => args.push("--json"),
                "export" => args.extend(["-o", &out_s]),
                "apply" => args.extend(["--layer", LAYER, "--input", &input, "-o", &out_s]),
                "verify" => args.extend([
                    "--json",
                    "--mode",
                    "inference",
                    "--cases",
                    "normal",
                    "--spatial",
                    "none",
                    "--assume-defaults",
                ]),
                "snapshot" => args.extend(["-o", &out_s]),
                _ => unreachable!(),
            }
            if *with_bn {
                args.extend(["--bn", MAPPING]);
            }
            args.extend(flags.iter().copied());
            let o = tfbn(&args);
            let what = format!("{args:?}");
            assert_eq!(
                o.status.code(),
                Some(0),
                "{what}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let got = views(cmd, &o, &out);
            for want in wants {
                // lint cannot print momentum, axis or fused values: a
                // declared one is simply no longer unknown.
                let want = match (cmd, want.split_once('=').unwrap()) {
                    ("lint", (s @ ("momentum" | "axis" | "fused"), v))
                        if !v.contains("default") =>
                    {
                        format!("{s}=*@declared")
                    }
                    ("lint", (s, v)) if s != "epsilon" && v.contains("default") => continue,
                    ("lint", ("epsilon", v)) if v.contains("default") => continue,
                    _ => want.to_string(),
                };
                assert!(got.contains(&want), "{what}: want {want} in {got:?}");
            }
        }
        // Without --bn (or a sidecar's bn) the layer does not exist.
        let o = tfbn(&["inspect", "--json", &ckpt]);
        let j: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(j["layers"].as_array().unwrap().len(), 0);
    }
}

/// The rest of the table: the flags only some commands take, each changing
/// what its command says. `--bn` makes the layer exist for every command;
/// `--assume-defaults` (verify) turns rows resting on TF's defaults from
/// `unproven` (exit 1) into passes that still list what was assumed;
/// `--allow CODE[=GLOB]` (lint) moves findings to `allowed` and the
/// summary line counts them.
#[test]
fn command_specific_flags_change_their_output() {
    let tf = live_tf("command_specific_flags_change_their_output").is_some();
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, input) = checkpoint(dir.path());
    // --bn, on every command: without it nothing is found (inspect lists
    // no layer, the others refuse or say so), with it the layer shows.
    for cmd in ["inspect", "export", "apply", "verify", "lint", "snapshot"] {
        if cmd == "verify" && !tf {
            continue;
        }
        let out = dir.path().join(format!("{cmd}.out"));
        let out_s = out.to_string_lossy().into_owned();
        let run = |bn: bool| {
            let _ = std::fs::remove_file(&out);
            let _ = std::fs::remove_dir_all(&out);
            let mut args: Vec<&str> = vec![cmd, &ckpt];
            match cmd {
                "inspect" | "lint" => args.push("--json"),
                "export" | "snapshot" => args.extend(["-o", &out_s]),
                "apply" => args.extend(["--layer", LAYER, "--input", &input, "-o", &out_s]),
                "verify" => args.extend([
                    "--json",
                    "--mode",
                    "inference",
                    "--cases",
                    "normal",
                    "--spatial",
                    "none",
                    "--assume-defaults",
                ]),
                _ => unreachable!(),
            }
            if bn {
                args.extend(["--bn", MAPPING]);
            }
            let o = tfbn(&args);
            // Whether the command treated LAYER as a batch-norm layer.
            let j: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
            let named = |v: &Value, key: &str| {
                v[key]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|l| l.to_string().contains(LAYER)))
            };
            let shows = match cmd {
                "inspect" | "verify" => named(&j, "layers"),
                "lint" => named(&j, "findings"),
                // apply --layer LAYER fails when LAYER is no layer.
                "apply" => o.status.code() == Some(0),
                _ => {
                    o.status.code() == Some(0)
                        && (std::fs::read(&out)
                            .is_ok_and(|b| String::from_utf8_lossy(&b).contains(LAYER))
                            || String::from_utf8_lossy(&o.stderr).contains(LAYER))
                }
            };
            (o.status.code(), shows)
        };
        let (code, shows) = run(true);
        assert_eq!(code, Some(0), "{cmd} --bn: {out_s}");
        assert!(shows, "{cmd} --bn: the layer shows");
        let (_, shows) = run(false);
        assert!(!shows, "{cmd} without --bn: no layer");
    }

    // --allow (lint): the finding moves to `allowed`, globally or for a
    // layer glob; a glob naming no layer allows nothing.
    let lint = |extra: &[&str]| {
        let mut args = vec!["lint", &ckpt, "--json", "--bn", MAPPING];
        args.extend_from_slice(extra);
        let o = tfbn(&args);
        let j: Value = serde_json::from_slice(&o.stdout).unwrap();
        let codes = |k: &str| -> Vec<String> {
            j[k].as_array()
                .unwrap()
                .iter()
                .map(|f| f["code"].as_str().unwrap().to_string())
                .collect()
        };
        (codes("findings"), codes("allowed"))
    };
    let code = "unknown-hyperparameters";
    let (findings, allowed) = lint(&[]);
    assert!(findings.iter().any(|c| c == code), "{findings:?}");
    assert!(allowed.is_empty());
    for allow in [code.to_string(), format!("{code}=net/*")] {
        let (findings, allowed) = lint(&["--allow", &allow]);
        assert!(!findings.iter().any(|c| c == code), "{allow}: {findings:?}");
        assert!(allowed.iter().any(|c| c == code), "{allow}: {allowed:?}");
    }
    let (findings, _) = lint(&["--allow", &format!("{code}=other/*")]);
    assert!(findings.iter().any(|c| c == code));
    let o = tfbn(&["lint", &ckpt, "--bn", MAPPING, "--allow", code]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("allowed"), "{text}");

    // --assume-defaults (verify): unproven without, a pass with, and the
    // assumptions still listed.
    if tf {
        let verify = |extra: &[&str]| {
            let mut args = vec![
                "verify",
                &ckpt,
                "--json",
                "--bn",
                MAPPING,
                "--mode",
                "inference",
                "--cases",
                "normal",
                "--spatial",
                "none",
            ];
            args.extend_from_slice(extra);
            let o = tfbn(&args);
            let j: Value = serde_json::from_slice(&o.stdout).unwrap();
            (o.status.code(), j)
        };
        let (code, j) = verify(&[]);
        assert_eq!(code, Some(1));
        assert_eq!(j["layers"][0]["modes"][0]["status"], "unproven");
        let (code, j) = verify(&["--assume-defaults"]);
        assert_eq!(code, Some(0));
        assert_eq!(j["assume_defaults"], true);
        assert_eq!(j["layers"][0]["modes"][0]["status"], "pass");
        assert!(j["layers"][0]["assumed"]
            .as_array()
            .unwrap()
            .contains(&"epsilon".into()));
        // Declaring what was assumed makes the flag unnecessary.
        let (code, _) = verify(&["--epsilon", "1e-3", "--axis", "-1", "--fused", "false"]);
        assert_eq!(code, Some(0));
    }
}

/// A glob that names no layer is bad input (exit 2) on every command,
/// as are values out of range and a sidecar that does not parse.
#[test]
fn bad_declarations_exit_2_on_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, input) = checkpoint(dir.path());
    let bad_sidecar = dir.path().join("bad.json");
    std::fs::write(&bad_sidecar, r#"{"layers": {"*": {"epsilon": "x"}}}"#).unwrap();
    let bad_sidecar = bad_sidecar.to_string_lossy().into_owned();
    let out = dir.path().join("o");
    let out_s = out.to_string_lossy().into_owned();
    for cmd in ["inspect", "export", "apply", "verify", "lint", "snapshot"] {
        for flags in [
            vec!["--epsilon", "nope=1e-5"],
            vec!["--epsilon", "-1"],
            vec!["--momentum", "2"],
            vec!["--fused", "sometimes"],
            vec!["--hyper", &bad_sidecar],
        ] {
            let mut args: Vec<&str> = vec![cmd, &ckpt, "--bn", MAPPING];
            match cmd {
                "export" | "snapshot" => args.extend(["-o", &out_s]),
                "apply" => args.extend(["--layer", LAYER, "--input", &input, "-o", &out_s]),
                _ => {}
            }
            args.extend(flags.iter().copied());
            let o = tfbn(&args);
            assert_eq!(
                o.status.code(),
                Some(2),
                "{args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}
