//! How layers are found in files other writers made: regression tests for
//! the failure classes seen on third-party checkpoints, built from small
//! crafted copies (no third-party bytes).

use std::path::Path;

use tfbn::testing::bundle::write_v2;
use tfbn::testing::npy::{read_npy, write_npy, NpyArray};
use tfbn::{DType, Tensor, TensorData};

use crate::common::{fixture, tfbn};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn f32s(v: &[f32]) -> Tensor {
    Tensor {
        dtype: DType::F32,
        shape: vec![v.len() as u64],
        data: TensorData::Bytes(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
    }
}

/// Class 1: a copied folder whose `checkpoint` file names the writer's
/// home folder (ending in `/`) while the files beside it are `.index`,
/// `.data-…`: every command reads the folder's own files and says so.
#[test]
fn foreign_checkpoint_file_reads_the_folders_files_with_a_note() {
    let fx = fixture("tf1_trained");
    let d = tempfile::tempdir().unwrap();
    let src = fx.open_path();
    for (suffix, to) in [
        (".index", ".index"),
        (".data-00000-of-00001", ".data-00000-of-00001"),
        (".meta", ".meta"),
    ] {
        std::fs::copy(format!("{}{suffix}", src.display()), d.path().join(to)).unwrap();
    }
    std::fs::write(
        d.path().join("checkpoint"),
        "model_checkpoint_path: \"/home/writer/work/\"\nall_model_checkpoint_paths: \"/home/writer/work/\"\n",
    )
    .unwrap();
    let o = tfbn(&["inspect", "--json", s(d.path())]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["layers"].as_array().unwrap().len(), fx.layers().len());
    let notes = v["notes"].as_array().expect("notes");
    assert!(
        notes[0].as_str().unwrap().contains("/home/writer/work/"),
        "{notes:?}"
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("note:"));
    // The graph beside the files was found through the same resolution: ε
    // comes from it.
    assert_eq!(
        v["layers"][1]["hyper"]["epsilon"]["source"]["kind"],
        "graph"
    );
}

/// Class 4: a fused op in a graph does not make a layer `fused=True`; TF's
/// default (`fused=None`) runs a rank-2 input non-fused, and so does apply.
#[test]
fn graph_fused_layer_runs_a_rank_2_input_like_tf_default() {
    let fx = fixture("tf1_trained");
    let d = tempfile::tempdir().unwrap();
    let x = ndarray::Array2::from_shape_fn((4, 8), |(i, j)| (i as f32) * 0.5 - (j as f32) * 0.25)
        .into_dyn();
    let input = d.path().join("x.npy");
    write_npy(&input, &NpyArray::F32(x)).unwrap();
    let out = d.path().join("out");
    let o = tfbn(&[
        "apply",
        s(&fx.open_path()),
        "--layer",
        "batch_normalization",
        "--axis",
        "1",
        "--input",
        s(&input),
        "-o",
        s(&out),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("TF's rule decides"), "{err}");
    match read_npy(out.join("y.npy")).unwrap() {
        NpyArray::F32(y) => assert_eq!(y.shape(), &[4, 8]),
        other => panic!("{other:?}"),
    }
}

/// A graph-less checkpoint of a hand-written layer with custom names: no
/// layer by naming; `--bn` declares it, every command sees it, and
/// inspect says how it was found.
#[test]
fn declared_mapping_finds_custom_named_layers_for_every_command() {
    let d = tempfile::tempdir().unwrap();
    let prefix = d.path().join("model.ckpt");
    let (scale, offset) = (f32s(&[1.0, 2.0, 0.5]), f32s(&[0.1, -0.2, 0.3]));
    let (mean, var) = (f32s(&[0.0, 1.0, -1.0]), f32s(&[1.0, 4.0, 0.25]));
    write_v2(
        &prefix,
        &[
            ("net/conv1_bn/scale", &scale),
            ("net/conv1_bn/offset", &offset),
            ("net/conv1_bn/pop_mean", &mean),
            ("net/conv1_bn/pop_var", &var),
            ("net/conv1/kernel", &f32s(&[1.0; 6])),
        ],
    )
    .unwrap();
    let p = s(&prefix);
    let o = tfbn(&["inspect", "--json", p]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["layers"].as_array().unwrap().len(), 0);

    let bn = "*_bn:gamma=scale,beta=offset,moving_mean=pop_mean,moving_variance=pop_var";
    let o = tfbn(&["inspect", "--json", "--bn", bn, p]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let layers = v["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0]["name"], "net/conv1_bn");
    assert_eq!(layers[0]["found_by"], "declared");
    assert_eq!(layers[0]["channels"], 3);
    assert_eq!(layers[0]["variables"]["beta"]["key"], "net/conv1_bn/offset");
    assert_eq!(
        layers[0]["variables"]["moving_variance"]["key"],
        "net/conv1_bn/pop_var"
    );

    let out = d.path().join("bn.safetensors");
    let o = tfbn(&[
        "export",
        p,
        "--bn",
        bn,
        "--preset",
        "pytorch",
        "-o",
        s(&out),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let bytes = std::fs::read(&out).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let bias = st.tensor("net.conv1_bn.bias").expect("bias exported");
    assert_eq!(bias.data(), offset.bytes().unwrap());

    let o = tfbn(&["lint", p, "--bn", bn]);
    assert!(
        matches!(o.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("net/conv1_bn"));

    let x = ndarray::Array2::from_shape_fn((2, 3), |(i, j)| (i + j) as f32).into_dyn();
    let input = d.path().join("x.npy");
    write_npy(&input, &NpyArray::F32(x)).unwrap();
    let y = d.path().join("out");
    let o = tfbn(&[
        "apply",
        p,
        "--bn",
        bn,
        "--layer",
        "net/conv1_bn",
        "--input",
        s(&input),
        "-o",
        s(&y),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // y = (x − mean)·rsqrt(var + ε)·γ + β with TF's default ε 1e-3 (no graph
    // says otherwise): check one element.
    let NpyArray::F32(out) = read_npy(y.join("y.npy")).unwrap() else {
        panic!("f32 output")
    };
    let want = (1.0f32 - 1.0) / (4.0f32 + 1e-3).sqrt() * 2.0 - 0.2;
    assert!(
        (out[[0, 1]] - want).abs() < 1e-6,
        "{} vs {want}",
        out[[0, 1]]
    );

    // A malformed mapping is a usage error naming the flag.
    let o = tfbn(&["inspect", p, "--bn", "gamma=scale"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--bn"));
}

/// A `.meta` beside the checkpoint that cannot be used — corrupt bytes, or
/// a FIFO (never opened, so nothing blocks) — is one consistent case: the
/// variables are read, the graph is left out with a note, and the
/// hyper-parameters fall back, marked as defaults.
#[test]
fn fault_09_unusable_meta_is_a_note_and_the_settings_fall_back() {
    let fx = fixture("tf1_trained");
    for kind in ["corrupt", "fifo"] {
        let d = tempfile::tempdir().unwrap();
        let src = fx.open_path();
        let prefix = d.path().join("model.ckpt");
        for suffix in [".index", ".data-00000-of-00001"] {
            std::fs::copy(
                format!("{}{suffix}", src.display()),
                format!("{}{suffix}", prefix.display()),
            )
            .unwrap();
        }
        let meta = format!("{}.meta", prefix.display());
        match kind {
            "corrupt" => std::fs::write(&meta, b"\x0a\xff\xff\xff\xff\x0fnot a graph").unwrap(),
            _ => {
                let c = std::ffi::CString::new(meta.clone()).unwrap();
                // SAFETY: a valid NUL-terminated path.
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            }
        }
        let o = tfbn(&["inspect", "--json", s(&prefix)]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{kind}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let notes = v["notes"].as_array().expect("notes");
        assert!(
            notes
                .iter()
                .any(|n| n.as_str().unwrap().contains("graph is left out")),
            "{kind}: {notes:?}"
        );
        assert_eq!(
            v["layers"].as_array().unwrap().len(),
            fx.layers().len(),
            "{kind}"
        );
        assert_eq!(
            v["layers"][1]["hyper"]["epsilon"]["source"]["kind"], "default",
            "{kind}"
        );
    }
}

/// Files tfbn does not read are recognised by their first bytes and
/// answered in one line with what they are (exit 2), never with a
/// table-format error about a file that never was a checkpoint.
#[test]
fn foreign_formats_are_named_in_one_line() {
    let d = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[u8], &str)] = &[
        // Keras files are read now: a broken one says what is broken.
        (
            "w.h5",
            b"\x89HDF\r\n\x1a\n\0\0\0\0\0\0\0\0",
            "not a readable HDF5 file",
        ),
        (
            "m.keras",
            b"PK\x03\x04\x14\0\0\0metadata.jsonconfig.jsonmodel.weights.h5",
            "not a readable .keras archive",
        ),
        ("m.pt", b"PK\x03\x04\x14\0\0\0archive/data.pkl", "PyTorch"),
        ("a.npz", b"PK\x03\x04\x14\0\0\0w.npy", "NumPy .npz"),
        ("m.tflite", b"\x1c\0\0\0TFL3\0\0\0\0", "folds batch norm"),
        (
            "model.json",
            b"{\"modelTopology\": {}, \"weightsManifest\": []}",
            "TensorFlow.js",
        ),
        ("m.onnx", b"\x08\x07\x12\x04tf2x", "ONNX"),
    ];
    for (name, bytes, want) in cases {
        let p = d.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        for cmd in ["inspect", "lint"] {
            let o = tfbn(&[cmd, s(&p)]);
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(2), "{cmd} {name}: {err}");
            assert_eq!(err.trim_end().lines().count(), 1, "{cmd} {name}: {err}");
            assert!(err.contains(want), "{cmd} {name}: {err}");
            assert!(!err.contains("magic"), "{cmd} {name}: {err}");
        }
    }
}

/// Outputs never land somewhere unexpected: an export whose folder does
/// not exist is an error naming `-o` and the folder (not a temp file), and
/// `apply -o` keeps existing outputs unless `--force`, writing nothing.
#[test]
fn missing_output_folder_and_apply_no_clobber() {
    let fx = fixture("tf1_trained");
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("no/such/folder/x.safetensors");
    let o = tfbn(&["export", s(&fx.open_path()), "-o", s(&out)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("x.safetensors") && err.contains("does not exist"),
        "{err}"
    );
    assert!(!err.contains("tfbn-tmp"), "{err}");
    assert!(!d.path().join("no").exists());

    let x = ndarray::Array4::from_shape_fn((2, 3, 3, 8), |(a, b, c, e)| (a + b + c + e) as f32)
        .into_dyn();
    let input = d.path().join("x.npy");
    write_npy(&input, &NpyArray::F32(x)).unwrap();
    let folder = d.path().join("out");
    let args = |extra: &[&'static str]| {
        let mut v = vec![
            "apply".to_string(),
            s(&fx.open_path()).to_string(),
            "--layer".into(),
            "batch_normalization".into(),
            "--input".into(),
            s(&input).to_string(),
            "-o".into(),
            s(&folder).to_string(),
        ];
        v.extend(extra.iter().map(|e| e.to_string()));
        v
    };
    let run = |a: Vec<String>| tfbn(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(run(args(&[])).status.code(), Some(0));
    std::fs::write(folder.join("y.npy"), b"keep me").unwrap();
    let o = run(args(&[]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("y.npy") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(folder.join("y.npy")).unwrap(), b"keep me");
    // Training would write the statistics too: any of them taken refuses.
    let o = run(args(&["--mode", "training"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(!folder.join("moving_mean.npy").exists());
    assert_eq!(run(args(&["--force"])).status.code(), Some(0));
    assert!(read_npy(folder.join("y.npy")).is_ok());
}

/// `export --all-variables`: bookkeeping skips are one summary line, while
/// skipped model variables stay visible even under `--quiet`.
#[test]
fn skipped_model_variables_stay_visible_under_quiet() {
    let fx = fixture("dtypes");
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("all.safetensors");
    let o = tfbn(&[
        "export",
        s(&fx.open_path()),
        "--all-variables",
        "--quiet",
        "-o",
        s(&out),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("skipped model variable str_scalar/"), "{err}");
    assert!(!err.contains("_CHECKPOINTABLE_OBJECT_GRAPH"), "{err}");
    let o = tfbn(&[
        "export",
        s(&fx.open_path()),
        "--all-variables",
        "--force",
        "-o",
        s(&out),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("_CHECKPOINTABLE_OBJECT_GRAPH"))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].starts_with("skipped 1 bookkeeping"), "{err}");
}
