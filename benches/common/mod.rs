//! Plumbing shared by the benchmarks that use the 1 GiB checkpoint
//! (`read`, `export`): medians, the Python to run, and the checkpoint
//! itself (generated with TensorFlow when missing).

#![allow(dead_code)] // each bench uses its own subset

use std::path::{Path, PathBuf};
use std::process::Command;

use tfbn::testing::bundle::Bundle;

/// The median of `v` (the upper one for an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The project's venv Python when `scripts/setup-tensorflow.sh` made one,
/// else `python3`.
pub fn python() -> PathBuf {
    let venv = Path::new(".venv/bin/python");
    if venv.exists() {
        venv.to_path_buf()
    } else {
        PathBuf::from("python3")
    }
}

/// The benchmark checkpoint at `prefix`, opened, with its data files and
/// their total size; generated first with `scripts/gen_big_checkpoint.py`
/// (TensorFlow, 16 × 64 MiB float32 tensors) when it is missing.
pub struct BigCheckpoint {
    /// The open bundle.
    pub bundle: Bundle,
    /// Its `.data-…` files.
    pub data_files: Vec<PathBuf>,
    /// Their total size in bytes.
    pub total: u64,
}

impl BigCheckpoint {
    /// Opens (generating if needed) the checkpoint at `prefix`.
    pub fn open(prefix: &Path) -> BigCheckpoint {
        let index = PathBuf::from(format!("{}.index", prefix.display()));
        if !index.exists() {
            eprintln!("generating {} with TensorFlow …", prefix.display());
            let ok = Command::new(python())
                .args([
                    "scripts/gen_big_checkpoint.py",
                    prefix.to_str().expect("utf-8 prefix"),
                ])
                .env("TF_CPP_MIN_LOG_LEVEL", "2")
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(
                ok,
                "could not generate the benchmark checkpoint (run scripts/setup-tensorflow.sh)"
            );
        }
        let bundle = Bundle::open(prefix).expect("open checkpoint");
        let data_files: Vec<PathBuf> = bundle
            .files()
            .iter()
            .filter(|p| !p.to_string_lossy().ends_with(".index"))
            .cloned()
            .collect();
        let total = data_files
            .iter()
            .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum();
        BigCheckpoint {
            bundle,
            data_files,
            total,
        }
    }
}
