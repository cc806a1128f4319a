//! `tfbn export --all-variables` of a 1 GiB checkpoint next to `cp` of its
//! data file, measured in the same run, alternating, medians of several
//! runs; plus the export's peak memory.
//!
//! ```text
//! cargo bench --bench export [-- PREFIX] [--runs N] [--out-dir DIR]
//! ```
//!
//! Without a prefix it uses (and, if missing, generates with TensorFlow)
//! `bench-data/big/ckpt` (`scripts/gen_big_checkpoint.py`). Outputs go to
//! `--out-dir` (default `bench-data/export-bench/`, the checkpoint's
//! filesystem; `/dev/shm/…` measures without a disk).
//!
//! Contenders, each run as a child process from a warm page cache, after
//! `sync` and a one-second pause so that one run's write-back does not land
//! on the next:
//!
//! * `tfbn export PREFIX --all-variables -o OUT -q`: reads and crc-checks
//!   every tensor, streams it to a temp file, `fdatasync`s it, renames it;
//! * the same with `--no-sync`: no `fdatasync` before the rename (the
//!   durability of `cp`);
//! * `cp DATA OUT`: the kernel copy (`copy_file_range`), nothing synced;
//! * `cp DATA OUT && sync --data OUT`: the same copy made durable, which is
//!   what tfbn's atomic write guarantees.
//!
//! Peak memory of the export is read from `/proc/<pid>/status` while it
//! runs (sampled every 2 ms): `VmHWM` (peak resident set, including pages
//! of the memory-mapped checkpoint) and the largest `RssAnon` seen (heap).

mod common;

use common::median;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Flushes everything dirty and lets the disk settle, untimed.
fn settle() {
    let _ = Command::new("sync").status();
    std::thread::sleep(Duration::from_secs(1));
}

#[derive(Debug, Default, Clone, Copy)]
struct Peak {
    hwm_kib: u64,
    anon_kib: u64,
}

fn status_field(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Runs `cmd`, returning its wall time and its peak memory.
fn run_measured(cmd: &mut Command) -> (f64, Peak) {
    let start = Instant::now();
    let mut child = cmd.stdin(Stdio::null()).spawn().expect("spawn");
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = Peak::default();
    loop {
        if let Ok(s) = std::fs::read_to_string(&status_path) {
            if let Some(h) = status_field(&s, "VmHWM:") {
                peak.hwm_kib = peak.hwm_kib.max(h);
            }
            if let Some(a) = status_field(&s, "RssAnon:") {
                peak.anon_kib = peak.anon_kib.max(a);
            }
        }
        match child.try_wait().expect("wait") {
            Some(st) => {
                assert!(st.success(), "{cmd:?} failed: {st}");
                break;
            }
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    }
    (start.elapsed().as_secs_f64(), peak)
}

fn time_shell(script: &str) -> f64 {
    let (t, _) = run_measured(Command::new("sh").args(["-c", script]));
    t
}

fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    let mut prefix = PathBuf::from("bench-data/big/ckpt");
    let mut runs = 7usize;
    let mut out_dir = PathBuf::from("bench-data/export-bench");
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            "--out-dir" => out_dir = PathBuf::from(args.next().expect("--out-dir DIR")),
            "--bench" => {}
            s if s.starts_with("--") => {}
            s => prefix = PathBuf::from(s),
        }
    }
    let runs = runs.max(5);
    let common::BigCheckpoint {
        bundle,
        data_files,
        total,
    } = common::BigCheckpoint::open(&prefix);
    println!(
        "checkpoint: {} ({} tensors, {:.2} GiB of data in {} file(s)); outputs in {}; {runs} runs each",
        prefix.display(),
        bundle.entries().len(),
        total as f64 / (1u64 << 30) as f64,
        data_files.len(),
        out_dir.display()
    );
    drop(bundle);
    std::fs::create_dir_all(&out_dir).expect("create --out-dir");
    let out = out_dir.join("export.safetensors");
    let copy = out_dir.join("copy.bin");
    let bin = env!("CARGO_BIN_EXE_tfbn");

    // Warm the page cache so every contender reads from memory.
    for p in &data_files {
        let _ = std::fs::read(p).map(|b| std::hint::black_box(b.len()));
    }
    let cp_script = data_files
        .iter()
        .enumerate()
        .map(|(i, p)| format!("cp {} {}.{i}", quote(p), quote(&copy)))
        .collect::<Vec<_>>()
        .join(" && ");
    let sync_script = format!(
        "{cp_script} && sync --data {}",
        (0..data_files.len())
            .map(|i| format!("{}.{i}", quote(&copy)))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let remove = || {
        let _ = std::fs::remove_file(&out);
        for i in 0..data_files.len() {
            let _ = std::fs::remove_file(format!("{}.{i}", copy.display()));
        }
    };

    let (mut t_export, mut t_nosync, mut t_cp, mut t_sync) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut peak = Peak::default();
    let export_args = |extra: &'static [&'static str]| {
        let mut c = Command::new(bin);
        c.args([
            "export",
            prefix.to_str().expect("utf-8 prefix"),
            "--all-variables",
            "-q",
            "-o",
            out.to_str().expect("utf-8 out"),
        ])
        .args(extra);
        c
    };
    for run in 0..runs {
        remove();
        settle();
        let (t, p) = run_measured(&mut export_args(&[]));
        if run == 0 {
            let len = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
            assert!(
                len > total,
                "export wrote {len} bytes for {total} bytes of data"
            );
        }
        peak.hwm_kib = peak.hwm_kib.max(p.hwm_kib);
        peak.anon_kib = peak.anon_kib.max(p.anon_kib);
        t_export.push(t);
        remove();
        settle();
        let (t, p) = run_measured(&mut export_args(&["--no-sync"]));
        peak.hwm_kib = peak.hwm_kib.max(p.hwm_kib);
        peak.anon_kib = peak.anon_kib.max(p.anon_kib);
        t_nosync.push(t);
        remove();
        settle();
        t_cp.push(time_shell(&cp_script));
        remove();
        settle();
        t_sync.push(time_shell(&sync_script));
        println!(
            "  run {}: export {:.2}s, export --no-sync {:.2}s, cp {:.2}s, cp+sync {:.2}s",
            run + 1,
            t_export[run],
            t_nosync[run],
            t_cp[run],
            t_sync[run]
        );
    }
    remove();
    let (e, n, c, s) = (
        median(t_export),
        median(t_nosync),
        median(t_cp),
        median(t_sync),
    );
    let gib = total as f64 / (1u64 << 30) as f64;
    println!();
    println!("| contender | median | GiB/s | vs cp | vs cp + fdatasync |");
    println!("|---|---|---|---|---|");
    println!(
        "| `tfbn export --all-variables` | {e:.2} s | {:.2} | {:.2}× | {:.2}× |",
        gib / e,
        e / c,
        e / s
    );
    println!(
        "| `tfbn export --all-variables --no-sync` | {n:.2} s | {:.2} | {:.2}× | {:.2}× |",
        gib / n,
        n / c,
        n / s
    );
    println!("| `cp` | {c:.2} s | {:.2} | 1.00× | |", gib / c);
    println!(
        "| `cp` + `sync --data` | {s:.2} s | {:.2} | | 1.00× |",
        gib / s
    );
    println!();
    println!(
        "export peak memory: VmHWM {:.1} MiB ({:.1}% of the {:.0} MiB checkpoint), peak RssAnon {:.1} MiB",
        peak.hwm_kib as f64 / 1024.0,
        100.0 * peak.hwm_kib as f64 * 1024.0 / total as f64,
        total as f64 / (1u64 << 20) as f64,
        peak.anon_kib as f64 / 1024.0
    );
}
