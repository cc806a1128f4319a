//! Batch-norm throughput against a plain memory copy of the same array.
//!
//! `cargo bench --bench bn` (plain `main`, no harness). For `float32` NHWC
//! `[32, 56, 56, 256]` and NCHW `[8, 64, 128, 128]`, it times (median of
//! `RUNS` runs, after one warm-up):
//!
//! * `copy`: `dst.copy_from_slice(src)` into a preallocated buffer;
//! * `inference` / `training`: `tfbn::bn::inference_into` /
//!   `training_into`, writing into a preallocated buffer like the copy;
//! * `inference (alloc)` / `training (alloc)`: the allocating
//!   `inference` / `training`, which also pay for the output's page faults;
//!
//! for Keras 3 (the default API: `tf.nn.moments` + F2) and for the fused
//! kernel (`FusedBatchNormV3`), and prints each time as a ratio to the copy
//! measured in the same run. Goals on a 2-core machine: inference ≤ 1.3×
//! and training ≤ 2.2× the copy.

use std::time::{Duration, Instant};

use ndarray::{ArrayD, IxDyn};
use tfbn::bn::{
    inference, inference_into, training, training_into, BnApi, BnConfig, BnInput, BnParams,
};

const RUNS: usize = 9;

fn median(mut f: impl FnMut()) -> Duration {
    f();
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

fn bench(label: &str, shape: &[usize], axis: isize) {
    let n: usize = shape.iter().product();
    let c = shape[if axis < 0 {
        shape.len() - 1
    } else {
        axis as usize
    }];
    let xv = data(n, 7);
    let x = ArrayD::from_shape_vec(IxDyn(shape), xv.clone()).expect("shape");
    let mut y = ArrayD::<f32>::zeros(IxDyn(shape));
    let mut dst = vec![0.0f32; n];
    let p = params(c);

    let copy = median(|| dst.copy_from_slice(&xv));
    println!(
        "{label} {shape:?} ({:.0} MB): copy {:.2} ms ({:.1} GB/s read+write)",
        n as f64 * 4.0 / 1e6,
        ms(copy),
        2.0 * n as f64 * 4.0 / copy.as_secs_f64() / 1e9
    );
    let input = BnInput::F32(x.clone());
    for api in [BnApi::Keras3, BnApi::Fused] {
        let cfg = BnConfig {
            api,
            axis,
            ..Default::default()
        };
        let inf = median(|| {
            inference_into(&cfg, &p, x.view(), y.view_mut()).expect("inference");
        });
        let tr = median(|| {
            training_into(&cfg, &p, x.view(), y.view_mut()).expect("training");
        });
        let inf_alloc = median(|| {
            std::hint::black_box(inference(&cfg, &p, &input).expect("inference"));
        });
        let tr_alloc = median(|| {
            std::hint::black_box(training(&cfg, &p, &input).expect("training"));
        });
        let r = |d: Duration| d.as_secs_f64() / copy.as_secs_f64();
        println!(
            "  {:<7} inference {:7.2} ms = {:.2}x copy (goal ≤ 1.3) | training {:7.2} ms = {:.2}x copy (goal ≤ 2.2)",
            api.label(),
            ms(inf),
            r(inf),
            ms(tr),
            r(tr)
        );
        println!(
            "  {:<7} inference (alloc) {:7.2} ms = {:.2}x | training (alloc) {:7.2} ms = {:.2}x",
            "",
            ms(inf_alloc),
            r(inf_alloc),
            ms(tr_alloc),
            r(tr_alloc)
        );
    }
}

fn main() {
    println!(
        "tfbn batch-norm bench: {} threads, CPU vendor {}, median of {RUNS}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        tfbn::bn::host_cpu_vendor()
    );
    bench("NHWC", &[32, 56, 56, 256], -1);
    bench("NCHW", &[8, 64, 128, 128], 1);
}
