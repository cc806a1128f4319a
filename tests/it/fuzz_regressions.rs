//! Every input a fuzz run has found to crash, hang or exhaust memory,
//! replayed through the same entry point as its fuzz target.
//!
//! Inputs live in `tests/fuzz-regressions/TARGET/` (one file each, named
//! after what it broke); the entry points are `fuzz/src/lib.rs`, included
//! here so that the fuzz targets and this test cannot drift apart. Each
//! input must end in `Ok` or a typed `Err`: a panic fails the test, and an
//! abort or stack overflow fails the whole test binary.

use std::path::{Path, PathBuf};

#[allow(dead_code)]
#[path = "../../fuzz/src/lib.rs"]
mod harness;

fn regressions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions")
}

/// The saved inputs of `target`, sorted (none is fine).
fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = regressions_dir().join(target);
    let mut out: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .map(|e| e.expect("list regressions").path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

fn run(target: &str, input: &[u8]) -> tfbn::Result<()> {
    let (_, entry) = harness::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("known target");
    let scratch = tempfile::tempdir().expect("scratch dir");
    entry(scratch.path(), input)
}

#[test]
fn every_saved_fuzz_input_ends_in_ok_or_a_typed_error() {
    let mut ran = 0;
    for (target, _) in harness::TARGETS {
        for path in inputs(target) {
            let bytes = std::fs::read(&path).expect("read regression input");
            // Returning at all is the property; the outcome is informative.
            match run(target, &bytes) {
                Ok(()) => eprintln!("{target}: {}: ok", path.display()),
                Err(e) => eprintln!("{target}: {}: {e}", path.display()),
            }
            ran += 1;
        }
    }
    eprintln!("{ran} saved fuzz inputs replayed");
}

/// A folder under `tests/fuzz-regressions/` that names no target would
/// silently never run.
#[test]
fn every_regression_folder_names_a_fuzz_target() {
    let Ok(rd) = std::fs::read_dir(regressions_dir()) else {
        return;
    };
    for entry in rd {
        let entry = entry.expect("list regression folders");
        if !entry.path().is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            harness::TARGETS.iter().any(|(t, _)| *t == name),
            "tests/fuzz-regressions/{name}/ names no fuzz target (fuzz/src/lib.rs TARGETS)"
        );
    }
}

/// The harness itself: every target takes empty, tiny and all-ones input
/// without panicking, and a real fixture packed in each target's layout
/// reads cleanly (so the layouts in fuzz/src/lib.rs and scripts/fuzz.sh
/// stay in step with the readers).
#[test]
fn every_fuzz_target_survives_trivial_inputs() {
    for (target, _) in harness::TARGETS {
        for input in [&[][..], &[0u8][..], &[0xFF; 64][..], &[1, 0, 0, 0, 0][..]] {
            let _ = run(target, input);
        }
    }
}

#[test]
fn fixtures_packed_in_the_fuzz_layouts_read_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let read = |p: &str| std::fs::read(root.join(p)).expect("fixture");
    let index = read("dtypes/ckpt/ckpt-1.index");
    run("table", &index).expect("table");
    let mut ckpt = (index.len() as u32).to_le_bytes().to_vec();
    ckpt.extend_from_slice(&index);
    ckpt.push(0);
    ckpt.extend_from_slice(&read("dtypes/ckpt/ckpt-1.data-00000-of-00001"));
    run("checkpoint", &ckpt).expect("checkpoint");
    run("v1", &read("tf1_v1_format/ckpt/model.ckpt")).expect("v1");
    let mut meta = vec![0u8];
    meta.extend_from_slice(&read("tf1_trained/ckpt/model.ckpt.meta"));
    run("graphdef", &meta).expect("graphdef");
    let pb = read("tf2_16_savedmodel/savedmodel/saved_model.pb");
    let mut sm = vec![0u8];
    sm.extend_from_slice(&(pb.len() as u32).to_le_bytes());
    sm.extend_from_slice(&pb);
    run("savedmodel", &sm).expect("savedmodel");
    run("frozen", &read("frozen_tf1/frozen.pb")).expect("frozen");
    run("hdf5", &read("kfile_tfk_cnn_h5/m.h5")).expect("hdf5");
    run("hdf5", &read("kfile_k3_subclassed_keras/m.keras")).expect("hdf5 (.keras)");
    run(
        "npy",
        &read("tf1_trained/goldens/batch_normalization/input.npy"),
    )
    .expect("npy");
}
