//! Batch-norm throughput: the native layer against a plain memory copy of
//! the same array, and against TensorFlow running the same ops on the same
//! arrays, on both of TF's CPU backends.
//!
//! `cargo bench --bench bn` (plain `main`, no harness). For `float32` NHWC
//! `[32, 56, 56, 256]` and NCHW `[8, 64, 128, 128]`, for Keras 3 (the
//! default API: `tf.nn.moments` + F2) and for the fused kernel
//! (`FusedBatchNormV3`), in inference and training mode, it times (median of
//! `RUNS` runs after warm-up, per round; `ROUNDS` rounds, each running the
//! native side and then both TF children, reported as the median over
//! rounds):
//!
//! * `copy`: `dst.copy_from_slice(src)` into a preallocated buffer;
//! * `native`: `tfbn::bn::inference_into` / `training_into`, writing into a
//!   preallocated buffer like the copy;
//! * `native alloc`: the allocating `inference` / `training`, which also pay
//!   for the output's page faults, as TF does;
//! * `TF eigen` / `TF onednn`: TensorFlow (loaded at run time through the
//!   `tensorflow` crate, `tfbn::tf::bn::TfBatchNorm`, the graphs `tfbn
//!   verify` uses: `FusedBatchNormV3` with `is_training` false/true and
//!   `exponential_avg_factor = 1 − momentum`, or `Mean`,
//!   `SquaredDifference`, `Mean` + the `tf.nn.batch_normalization` ops and
//!   the Keras 3 moving-average update), with `TF_ENABLE_ONEDNN_OPTS=0` and
//!   `=1`. The graph, the session (intra-op threads = this host's cores,
//!   Grappler off as in verify) and the input and parameter tensors are
//!   built once, outside the timing; a timed run is one `Session::run` plus
//!   the fetch of every output as a TF tensor (y and, in training, the batch
//!   and moving statistics): TF's kernels and its allocation of the outputs,
//!   no copy into Rust vectors. TF reads `TF_ENABLE_ONEDNN_OPTS` once, so
//!   each backend runs in a child process (this bench re-executed with
//!   `TFBN_BENCH_TF_CHILD=eigen|onednn`), which prints its timings as
//!   `TFBENCH` lines.
//!
//! Each TF column says which backend really ran: the child compares TF's `y`
//! with the native layer's bit for bit (Eigen's fused kernel is reproduced
//! exactly; oneDNN's formulas differ in the last bits, docs/bn-arithmetic.md#onednn), so
//! `fused` inference at 100 % means Eigen ran and well below means oneDNN.
//!
//! TF's speed-ups compare like with like: TF's default CPU allocator hands
//! out fresh pages for every output (they fault in during the run, counted
//! per run with `getrusage`), so such a run is set against the allocating
//! native call; with oneDNN on, TF allocates from a pool that reuses its
//! pages, so that run is set against native writing into a preallocated
//! buffer. The table marks which (`a` / `i`) and shows the page faults.
//!
//! Goals on a 2-core machine: native inference ≤ 1.3× and training ≤ 2.2×
//! the copy; native faster than TF oneDNN and ≥ 3× faster than TF Eigen.
//! Without TensorFlow the TF columns are skipped, saying why.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ndarray::{ArrayD, IxDyn};
use tfbn::bn::{inference, inference_into, training, training_into, BnApi, BnConfig, BnParams};
use tfbn::parity::{compare, ChannelLayout};
use tfbn::tf::bn::TfBatchNorm;
use tfbn::tf::{Backend, LoadOptions};
use tfbn::{FloatArray, FloatDType};

const RUNS: usize = 9;
/// Rounds by default (`TFBN_BENCH_ROUNDS` overrides).
const ROUNDS: usize = 3;
/// The variable that makes this bench a TF child: `eigen` or `onednn`.
const CHILD_VAR: &str = "TFBN_BENCH_TF_CHILD";
const SHAPES: [(&str, [usize; 4], isize); 2] = [
    ("NHWC", [32, 56, 56, 256], -1),
    ("NCHW", [8, 64, 128, 128], 1),
];
const APIS: [BnApi; 2] = [BnApi::Keras3, BnApi::Fused];

/// Median of `RUNS` timed calls after `warm` untimed ones.
fn median_warm(warm: usize, mut f: impl FnMut()) -> Duration {
    for _ in 0..warm {
        f();
    }
    let mut t: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    t[RUNS / 2]
}

fn median(f: impl FnMut()) -> Duration {
    median_warm(1, f)
}

fn median_of(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// One backend's rounds as one run: the median time of every row over the
/// rounds that measured it; skipped when every round was.
fn merge_rounds(runs: Vec<TfRun>) -> TfRun {
    let mut out = TfRun::default();
    let mut rows: BTreeMap<String, Vec<TfRow>> = BTreeMap::new();
    for r in &runs {
        if out.host.is_empty() {
            out.host = r.host.clone();
        }
        for (k, v) in &r.rows {
            rows.entry(k.clone()).or_default().push(*v);
        }
    }
    out.skipped = runs
        .iter()
        .all(|r| r.skipped.is_some())
        .then(|| runs.iter().find_map(|r| r.skipped.clone()))
        .flatten();
    for (k, v) in rows {
        let row = TfRow {
            ms: median_of(v.iter().map(|r| r.ms).collect()),
            y_equal: median_of(v.iter().map(|r| r.y_equal).collect()),
            faults: median_of(v.iter().map(|r| r.faults).collect()),
        };
        out.rows.insert(k, row);
    }
    out
}

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 1.0
        })
        .collect()
}

fn params(c: usize) -> BnParams {
    BnParams {
        gamma: Some(data(c, 1).iter().map(|v| 1.0 + 0.1 * v).collect()),
        beta: Some(data(c, 2)),
        moving_mean: data(c, 3),
        moving_variance: data(c, 4).iter().map(|v| 1.5 + v).collect(),
        renorm: None,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn channels(shape: &[usize], axis: isize) -> (usize, usize) {
    let a = if axis < 0 {
        shape.len() - 1
    } else {
        axis as usize
    };
    (a, shape[a])
}

fn config(api: BnApi, axis: isize) -> BnConfig {
    BnConfig {
        api,
        axis,
        ..Default::default()
    }
}

/// One (shape, API, mode) measurement key: `NHWC keras3 inference`.
fn key(label: &str, api: BnApi, training: bool) -> String {
    format!(
        "{label} {} {}",
        api.label(),
        if training { "training" } else { "inference" }
    )
}

/// Native timings of one row, in ms.
#[derive(Debug, Clone, Copy)]
struct Native {
    into: f64,
    alloc: f64,
}

/// What a TF child measured for one row.
#[derive(Debug, Clone, Copy)]
struct TfRow {
    ms: f64,
    /// Fraction of TF's `y` bitwise equal to the native layer's.
    y_equal: f64,
    /// Minor page faults per timed run: about one per 4 KiB page of output
    /// when TF's allocator hands out fresh memory (plain `malloc`, Eigen),
    /// near 0 when it reuses a pool (oneDNN's allocator).
    faults: f64,
}

/// Minor page faults of this process so far.
fn minor_faults() -> i64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } == 0 {
        u.ru_minflt
    } else {
        0
    }
}

/// What one TF child reported.
#[derive(Debug, Default)]
struct TfRun {
    host: String,
    rows: BTreeMap<String, TfRow>,
    skipped: Option<String>,
}

/// Times the copy and the native layer for every shape, API and mode.
fn bench_native() -> (BTreeMap<&'static str, f64>, BTreeMap<String, Native>) {
    let mut copies = BTreeMap::new();
    let mut rows = BTreeMap::new();
    for (label, shape, axis) in SHAPES {
        let n: usize = shape.iter().product();
        let (_, c) = channels(&shape, axis);
        let xv = data(n, 7);
        let x = ArrayD::from_shape_vec(IxDyn(&shape), xv.clone()).expect("shape");
        let mut y = ArrayD::<f32>::zeros(IxDyn(&shape));
        let mut dst = vec![0.0f32; n];
        let p = params(c);
        let copy = median(|| dst.copy_from_slice(&xv));
        copies.insert(label, ms(copy));
        let input = FloatArray::F32(x.clone());
        for api in APIS {
            let cfg = config(api, axis);
            let inf = median(|| {
                inference_into(&cfg, &p, x.view(), y.view_mut()).expect("inference");
            });
            let inf_alloc = median(|| {
                std::hint::black_box(inference(&cfg, &p, &input).expect("inference"));
            });
            let tr = median(|| {
                training_into(&cfg, &p, x.view(), y.view_mut()).expect("training");
            });
            let tr_alloc = median(|| {
                std::hint::black_box(training(&cfg, &p, &input).expect("training"));
            });
            rows.insert(
                key(label, api, false),
                Native {
                    into: ms(inf),
                    alloc: ms(inf_alloc),
                },
            );
            rows.insert(
                key(label, api, true),
                Native {
                    into: ms(tr),
                    alloc: ms(tr_alloc),
                },
            );
        }
    }
    (copies, rows)
}

/// The TF child: loads TF on `backend`, times every row, prints `TFBENCH`
/// lines (`host …`, `row KEY MS Y_EQUAL`, or `skip WHY`).
fn tf_child(backend: Backend) {
    let rt = match tfbn::tf::load(&LoadOptions {
        tf_lib: None,
        backend: Some(backend),
    }) {
        Ok(rt) => rt,
        Err(e) => {
            // One line: the reason, without the list's line breaks.
            println!("TFBENCH skip {}", e.to_string().replace('\n', " "));
            return;
        }
    };
    println!(
        "TFBENCH host TensorFlow {} on {} (TF_ENABLE_ONEDNN_OPTS={}; this CPU's default: {}), {}, {} intra-op threads",
        rt.host.tf_version,
        rt.host.backend,
        std::env::var("TF_ENABLE_ONEDNN_OPTS").unwrap_or_default(),
        tfbn::tf::cpu_default_backend(),
        rt.host.cpu_vendor,
        rt.host.threads
    );
    for (label, shape, axis) in SHAPES {
        let n: usize = shape.iter().product();
        let (ax, c) = channels(&shape, axis);
        let xv = data(n, 7);
        let p = params(c);
        let input =
            FloatArray::F32(ArrayD::from_shape_vec(IxDyn(&shape), xv.clone()).expect("shape"));
        let xf = input.clone();
        for api in APIS {
            let cfg = config(api, axis);
            for training_mode in [false, true] {
                let k = key(label, api, training_mode);
                let row = (|| -> tfbn::Result<TfRow> {
                    let g = TfBatchNorm::new_typed(
                        rt,
                        &cfg,
                        &shape,
                        FloatDType::F32,
                        training_mode,
                        &p,
                    )?;
                    let feeds = g.feeds(&xf, &p)?;
                    // Which backend ran: TF's y against the native layer's.
                    let tf_y = g.run_typed(&feeds)?.y;
                    let nat_y = if training_mode {
                        training(&cfg, &p, &input)?.y
                    } else {
                        inference(&cfg, &p, &input)?.y
                    };
                    let y_equal = match (tf_y.as_f32(), &nat_y) {
                        (Some(a), FloatArray::F32(b)) => {
                            let b = b.as_slice().expect("contiguous");
                            compare(a, b, ChannelLayout::of(&shape, ax))?.bitwise_fraction()
                        }
                        _ => 0.0,
                    };
                    let mut err = None;
                    let f0 = minor_faults();
                    let t = median_warm(2, || {
                        if let Err(e) = g.run_feeds(&feeds) {
                            err = Some(e);
                        }
                    });
                    let faults = (minor_faults() - f0) as f64 / (RUNS + 2) as f64;
                    if let Some(e) = err {
                        return Err(e);
                    }
                    Ok(TfRow {
                        ms: ms(t),
                        y_equal,
                        faults,
                    })
                })();
                match row {
                    Ok(r) => println!(
                        "TFBENCH row {k} {:.4} {:.6} {:.1}",
                        r.ms, r.y_equal, r.faults
                    ),
                    Err(e) => println!("TFBENCH rowerr {k}: {}", e.to_string().replace('\n', " ")),
                }
            }
        }
    }
}

/// Runs this bench as a TF child for `backend` and collects its lines.
fn run_child(backend: Backend) -> TfRun {
    let mut out = TfRun::default();
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            out.skipped = Some(format!("cannot re-run the bench: {e}"));
            return out;
        }
    };
    let o = Command::new(exe)
        .env(CHILD_VAR, backend.label())
        .env("TF_CPP_MIN_LOG_LEVEL", "2")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    let o = match o {
        Ok(o) => o,
        Err(e) => {
            out.skipped = Some(format!("cannot start the TF child: {e}"));
            return out;
        }
    };
    let text = String::from_utf8_lossy(&o.stdout);
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("TFBENCH ") else {
            continue;
        };
        if let Some(h) = rest.strip_prefix("host ") {
            out.host = h.to_string();
        } else if let Some(why) = rest.strip_prefix("skip ") {
            out.skipped = Some(why.to_string());
        } else if let Some(r) = rest.strip_prefix("row ") {
            // KEY is three words: shape, api, mode.
            let w: Vec<&str> = r.split_whitespace().collect();
            if let [a, b, c, t, eq, pf] = w[..] {
                if let (Ok(ms), Ok(y_equal), Ok(faults)) = (t.parse(), eq.parse(), pf.parse()) {
                    out.rows.insert(
                        format!("{a} {b} {c}"),
                        TfRow {
                            ms,
                            y_equal,
                            faults,
                        },
                    );
                }
            }
        } else if let Some(e) = rest.strip_prefix("rowerr ") {
            eprintln!("TF {backend}: {e}");
        }
    }
    if out.rows.is_empty() && out.skipped.is_none() {
        out.skipped = Some(format!(
            "the TF child printed no timings (exit {})",
            o.status
        ));
    }
    out
}

fn main() {
    if let Ok(b) = std::env::var(CHILD_VAR) {
        match b.parse::<Backend>().ok() {
            Some(backend) => tf_child(backend),
            None => println!("TFBENCH skip {CHILD_VAR}={b:?} is not eigen or onednn"),
        }
        return;
    }
    println!(
        "tfbn batch-norm bench: {} threads, CPU vendor {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        tfbn::bn::host_cpu_vendor()
    );
    // Rounds interleave native and both TF children, so that a busy spell
    // of this shared machine hits every column alike; each cell is the
    // median over rounds of a median of RUNS runs.
    let rounds = std::env::var("TFBN_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(ROUNDS)
        .max(1);
    let mut copy_rounds: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut native_rounds: BTreeMap<String, Vec<Native>> = BTreeMap::new();
    let mut tf_rounds: Vec<(Backend, Vec<TfRun>)> =
        vec![(Backend::Eigen, Vec::new()), (Backend::OneDnn, Vec::new())];
    for round in 1..=rounds {
        let (c, n) = bench_native();
        for (k, v) in c {
            copy_rounds.entry(k).or_default().push(v);
        }
        for (k, v) in n {
            native_rounds.entry(k).or_default().push(v);
        }
        for (b, runs) in tf_rounds.iter_mut() {
            runs.push(run_child(*b));
        }
        eprintln!("round {round}/{rounds} done");
    }
    let copies: BTreeMap<&str, f64> = copy_rounds
        .iter()
        .map(|(k, v)| (*k, median_of(v.clone())))
        .collect();
    let native: BTreeMap<String, Native> = native_rounds
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                Native {
                    into: median_of(v.iter().map(|n| n.into).collect()),
                    alloc: median_of(v.iter().map(|n| n.alloc).collect()),
                },
            )
        })
        .collect();
    let tf: Vec<(Backend, TfRun)> = tf_rounds
        .into_iter()
        .map(|(b, runs)| (b, merge_rounds(runs)))
        .collect();
    println!("median over {rounds} rounds (TFBN_BENCH_ROUNDS) of the median of {RUNS} runs each");
    for (label, shape, _) in SHAPES {
        let n: usize = shape.iter().product();
        println!(
            "{label} {shape:?} ({:.0} MB): copy {:.2} ms ({:.1} GB/s read+write)",
            n as f64 * 4.0 / 1e6,
            copies[label],
            2.0 * n as f64 * 4.0 / (copies[label] / 1e3) / 1e9
        );
    }
    println!();
    for (b, run) in &tf {
        match &run.skipped {
            Some(why) => println!("TF {b}: columns skipped: {why}"),
            None => println!("TF {b}: {}", run.host),
        }
    }
    println!();
    println!(
        "{:<26} {:>7} {:>7} {:>8} {:>8} | {:>9} {:>9} | {:>6} {:>6} {:>6} | {:>6} {:>6} | {:>6} {:>6}",
        "ms (median)",
        "native",
        "n.alloc",
        "TF eigen",
        "TF 1dnn",
        "eig/nat",
        "1dnn/nat",
        "nat/cp",
        "eig/cp",
        "1dn/cp",
        "y=eig",
        "y=1dnn",
        "pf eig",
        "pf 1dn"
    );
    let mut goals = Vec::new();
    for (label, shape, _) in SHAPES {
        let copy = copies[label];
        // Pages of one output y.
        let pages = shape.iter().product::<usize>() as f64 * 4.0 / 4096.0;
        for api in APIS {
            for training_mode in [false, true] {
                let k = key(label, api, training_mode);
                let nat = native[&k];
                let get = |i: usize| tf[i].1.rows.get(&k).copied();
                let (e, o) = (get(0), get(1));
                let t = |r: Option<TfRow>| r.map_or("-".to_string(), |r| format!("{:.2}", r.ms));
                // Like for like: a TF run that takes fresh pages for its
                // output (page faults ≳ a tenth of y's pages) against the
                // allocating native call, one that reuses a pool against
                // native into a preallocated buffer.
                let base = |r: TfRow| {
                    if r.faults > 0.1 * pages {
                        (nat.alloc, "a")
                    } else {
                        (nat.into, "i")
                    }
                };
                let up = |r: Option<TfRow>| {
                    r.map_or("-".to_string(), |r| {
                        let (b, which) = base(r);
                        format!("{:.2}x({which})", r.ms / b)
                    })
                };
                let cp = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2}", v / copy));
                let eq = |r: Option<TfRow>| {
                    r.map_or("-".to_string(), |r| format!("{:.1}%", 100.0 * r.y_equal))
                };
                let pf = |r: Option<TfRow>| {
                    r.map_or("-".to_string(), |r| {
                        format!("{:.0}%", 100.0 * r.faults / pages)
                    })
                };
                println!(
                    "{:<26} {:>7.2} {:>7.2} {:>8} {:>8} | {:>9} {:>9} | {:>6} {:>6} {:>6} | {:>6} {:>6} | {:>6} {:>6}",
                    k,
                    nat.into,
                    nat.alloc,
                    t(e),
                    t(o),
                    up(e),
                    up(o),
                    cp(Some(nat.into)),
                    cp(e.map(|r| r.ms)),
                    cp(o.map(|r| r.ms)),
                    eq(e),
                    eq(o),
                    pf(e),
                    pf(o)
                );
                if let (Some(e), Some(o)) = (e, o) {
                    let (be, _) = base(e);
                    let (bo, _) = base(o);
                    let faster = o.ms > bo;
                    let three = e.ms >= 3.0 * be;
                    if !(faster && three) {
                        goals.push(format!(
                            "{k}: TF onednn {:.2} ms vs native {bo:.2} ms ({}); TF eigen {:.2} ms vs native {be:.2} ms ({:.2}x, goal ≥ 3x)",
                            o.ms,
                            if faster { "native faster" } else { "native NOT faster" },
                            e.ms,
                            e.ms / be
                        ));
                    }
                }
            }
        }
    }
    println!();
    println!(
        "eig/nat, 1dnn/nat = TF time / native time (how many times faster native is), against native \
         alloc (a) where TF takes fresh pages for its outputs, native into a buffer (i) where it reuses them; \
         x/cp = time / copy; y=eig, y=1dnn = TF's y bitwise equal to native's (fused at 100%: Eigen ran; \
         lower: oneDNN ran); pf = TF's minor page faults per run, in % of y's 4 KiB pages"
    );
    if tf.iter().all(|(_, r)| r.skipped.is_none()) {
        if goals.is_empty() {
            println!("goals vs TF: met on every row (faster than oneDNN, ≥ 3x faster than Eigen)");
        } else {
            println!("goals vs TF missed:");
            for g in goals {
                println!("  {g}");
            }
        }
    }
}
