//! The real binary, run in temp folders: exit codes, outputs, and that a
//! failure never leaves an output file behind.

use std::path::Path;
use std::process::Output;

use crate::common::{fixture, fixtures, tfbn};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn inspect_prints_a_table_and_json() {
    let fx = fixture("tf1_trained");
    let path = fx.open_path();
    let o = tfbn(&["inspect", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("batch-norm layers"), "{text}");
    for l in fx.layers() {
        assert!(text.contains(l["name"].as_str().unwrap()), "{text}");
    }

    let o = tfbn(&["inspect", "--json", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["layers"].as_array().unwrap().len(), fx.layers().len());
    assert_eq!(
        v["variables"].as_array().unwrap().len(),
        fx.listed_variables().len()
    );
}

#[test]
fn export_all_variables_round_trips_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    for fx in fixtures() {
        let out = dir.path().join(format!("{}.safetensors", fx.name));
        let o = tfbn(&[
            "export",
            fx.open_path().to_str().unwrap(),
            "--all-variables",
            "-o",
            out.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}: {}", fx.name, stderr(&o));
        let bytes = std::fs::read(&out).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut numeric = 0;
        for var in fx.listed_variables() {
            let key = var["key"].as_str().unwrap();
            let dtype = tfbn::DType::from_name(var["dtype"].as_str().unwrap()).unwrap();
            if dtype.to_safetensors().is_none() {
                assert!(
                    st.tensor(key).is_err(),
                    "{}: {key} should be skipped",
                    fx.name
                );
                assert!(
                    stderr(&o).contains(key),
                    "{}: skipped {key} not listed",
                    fx.name
                );
                continue;
            }
            let t = st
                .tensor(key)
                .unwrap_or_else(|e| panic!("{}: {key}: {e}", fx.name));
            assert_eq!(
                t.data(),
                fx.expected_bytes(var).as_slice(),
                "{}: {key}",
                fx.name
            );
            let shape: Vec<usize> = var["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(t.shape(), shape.as_slice(), "{}: {key}", fx.name);
            numeric += 1;
        }
        assert_eq!(st.len(), numeric, "{}: extra tensors", fx.name);
        // Same input, same bytes.
        let again = dir.path().join(format!("{}-again.safetensors", fx.name));
        let o = tfbn(&[
            "export",
            fx.open_path().to_str().unwrap(),
            "--all-variables",
            "-o",
            again.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(0));
        assert_eq!(
            std::fs::read(&again).unwrap(),
            bytes,
            "{}: not deterministic",
            fx.name
        );
    }
}

#[test]
fn export_keeps_an_existing_file_unless_forced() {
    let fx = fixture("tf1_trained");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    std::fs::write(&out, b"precious").unwrap();
    let args = |force: bool| {
        let mut a = vec![
            "export".to_string(),
            fx.open_path().to_string_lossy().into_owned(),
            "--all-variables".into(),
            "-o".into(),
            out.to_string_lossy().into_owned(),
        ];
        if force {
            a.push("--force".into());
        }
        a
    };
    let a = args(false);
    let o = tfbn(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    let a = args(true);
    let o = tfbn(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_ne!(std::fs::read(&out).unwrap(), b"precious");
}

fn assert_no_files_but(dir: &Path, allowed: &[&str]) {
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            allowed.contains(&name.as_str()),
            "unexpected file {name} left behind"
        );
    }
}

#[test]
fn bad_input_exits_2_with_one_line_and_no_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let fx = fixture("tf1_trained");
    // Copy the checkpoint, then corrupt one data byte.
    let prefix = fx.open_path();
    let name = prefix.file_name().unwrap().to_string_lossy().into_owned();
    let src_dir = prefix.parent().unwrap();
    for e in std::fs::read_dir(src_dir).unwrap() {
        let p = e.unwrap().path();
        let fname = p.file_name().unwrap().to_string_lossy().into_owned();
        if fname.starts_with(&format!("{name}.")) && !fname.ends_with(".meta") {
            std::fs::copy(&p, dir.path().join(&fname)).unwrap();
        }
    }
    let data = dir.path().join(format!("{name}.data-00000-of-00001"));
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&data, bytes).unwrap();

    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("out.safetensors");
    let o = tfbn(&[
        "export",
        dir.path().join(&name).to_str().unwrap(),
        "--all-variables",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("crc32c mismatch"), "{err}");
    assert!(err.contains(&name), "error should name the file: {err}");
    assert_no_files_but(out_dir.path(), &[]);

    // Missing file, and an unwritable output folder.
    let o = tfbn(&["inspect", "/nonexistent/model.ckpt"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    let o = tfbn(&[
        "export",
        fx.open_path().to_str().unwrap(),
        "--all-variables",
        "-o",
        "/nonexistent-dir/out.safetensors",
    ]);
    assert_eq!(o.status.code(), Some(2));

    // Zero-byte index.
    let empty = dir.path().join("empty.index");
    std::fs::write(&empty, b"").unwrap();
    let o = tfbn(&["inspect", empty.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("too short"), "{}", stderr(&o));

    // Usage errors are 2 as well.
    let o = tfbn(&["export"]);
    assert_eq!(o.status.code(), Some(2));
}
