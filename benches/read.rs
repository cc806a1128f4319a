//! Reading a 1 GiB checkpoint: tfbn's native reader (every tensor, every
//! crc checked) next to a plain read of the data file and TensorFlow's own
//! Python reader, all measured in this run. Medians of several runs; the
//! machine is small and noisy.
//!
//! Each tfbn run opens the checkpoint and reads every fixed-width tensor,
//! either borrowed (`read_raw`) or as owned tensors (`read`); the clock stops
//! once the caller holds all of them (each run keeps every tensor, as a user
//! loading a checkpoint does), and they are dropped after it.
//!
//! `cargo bench --bench read [-- PREFIX] [--no-tf]`. Without a prefix it uses
//! (and, if missing, generates with TensorFlow) `bench-data/big/ckpt`.
//! `--no-tf` skips TensorFlow's reader (for quick comparisons of tfbn
//! variants against the plain read).

mod common;

use common::{median, python};
use tfbn::testing::bundle::Bundle;

use std::io::Read;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// Runs `f` `n` times; the median time until it returned. What it returns is
/// dropped after the clock stops.
fn time_runs<T>(n: usize, mut f: impl FnMut() -> T) -> f64 {
    let mut times = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let held = std::hint::black_box(f());
        times.push(t.elapsed().as_secs_f64());
        drop(held);
    }
    median(times)
}

fn main() {
    let no_tf = std::env::args().any(|a| a == "--no-tf");
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let prefix = PathBuf::from(
        args.first()
            .map(String::as_str)
            .unwrap_or("bench-data/big/ckpt"),
    );
    let common::BigCheckpoint {
        bundle,
        data_files,
        total,
    } = common::BigCheckpoint::open(&prefix);
    let n_float = bundle
        .entries()
        .iter()
        .filter(|e| e.dtype == tfbn::DType::F32)
        .count();
    println!(
        "checkpoint: {} ({} tensors, {} float32, {:.2} GiB of data)",
        prefix.display(),
        bundle.entries().len(),
        n_float,
        total as f64 / (1u64 << 30) as f64
    );
    let runs = 7;

    // Warm the page cache so every contender reads from memory.
    let mut buf = vec![0u8; 0];
    for p in &data_files {
        let mut f = std::fs::File::open(p).unwrap();
        buf.clear();
        f.read_to_end(&mut buf).unwrap();
    }
    let plain = time_runs(runs, || {
        let mut sum = 0u64;
        let mut chunk = vec![0u8; 1 << 20];
        for p in &data_files {
            let mut f = std::fs::File::open(p).unwrap();
            loop {
                let n = f.read(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                sum += chunk[n - 1] as u64 + n as u64;
            }
        }
        sum
    });

    let keys: Vec<String> = bundle
        .entries()
        .iter()
        .filter(|e| e.num_bytes.is_some())
        .map(|e| e.key.clone())
        .collect();
    let native_raw = time_runs(runs, || {
        let b = Bundle::open(&prefix).unwrap();
        let mut sum = 0u64;
        for k in &keys {
            let d = b.read_raw(k).unwrap();
            sum += d.len() as u64;
            std::hint::black_box(&d);
        }
        (b, sum)
    });
    let native_owned = time_runs(runs, || {
        let b = Bundle::open(&prefix).unwrap();
        let tensors: Vec<_> = keys.iter().map(|k| b.read(k).unwrap()).collect();
        tensors
    });

    println!("plain read of the data file          median {plain:.3} s");
    println!(
        "tfbn read_raw (borrowed, crc checked) median {native_raw:.3} s  = {:.2}x plain",
        native_raw / plain
    );
    println!(
        "tfbn read (owned tensors, crc checked) median {native_owned:.3} s  = {:.2}x plain",
        native_owned / plain
    );

    if no_tf {
        return;
    }
    let tf = Command::new(python())
        .args([
            "scripts/bench_tf_read.py",
            prefix.to_str().unwrap(),
            "--repeat",
            "5",
        ])
        .env("TF_CPP_MIN_LOG_LEVEL", "2")
        .output();
    match tf {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            let tf_s = text
                .lines()
                .find_map(|l| l.strip_prefix("median_s="))
                .and_then(|v| v.trim().parse::<f64>().ok());
            match tf_s {
                Some(tf_s) => {
                    println!("TensorFlow Python reader              median {tf_s:.3} s");
                    println!(
                        "speed-up over TensorFlow: read_raw {:.2}x, read {:.2}x",
                        tf_s / native_raw,
                        tf_s / native_owned
                    );
                }
                None => println!("TensorFlow reader printed no median: {text}"),
            }
        }
        Ok(o) => println!(
            "TensorFlow reader failed: {}",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ),
        Err(e) => println!("TensorFlow reader not run: {e}"),
    }
}
