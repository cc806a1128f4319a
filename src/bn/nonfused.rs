//! `tf.nn.moments` and `tf.nn.batch_normalization`
//! (docs/bn-arithmetic.md#non-fused-path): the non-fused path of Keras 3,
//! tf_keras and the v1 layers.
//!
//! Each TF op rounds on its own: `mean = Mean(x)` (a sum in TF's reduction
//! order, then a true division by `f32(R)`), `variance =
//! Mean(SquaredDifference(x, mean))`, `inv = Rsqrt(variance + eps)`,
//! `inv *= gamma`, `y = x·inv + (beta − mean·inv)`.

use super::ftz::TfFloat;
use super::kernels::{self, Affine, Form, SumMap};
use super::par;
use super::reduce::{sums_exact, Plan};
use super::rsqrt::Rsqrt;

/// An element type the non-fused path runs in (`f32` with SIMD kernels,
/// `f64` with the scalar reference).
pub(crate) trait Elem: TfFloat + Rsqrt {
    /// Mean and biased variance for the plans that have a fast kernel, or
    /// `None`. `r` = values per output.
    fn moments_fast(x: &[Self], plan: &Plan, r: usize) -> Option<(Vec<Self>, Vec<Self>)>;
    /// `y = x·q[ch] + s[ch]` over a tensor seen as `(·, c, b)` (element
    /// `i` has channel `(i / b) % c`), on all cores.
    fn apply_f2(x: &[Self], y: &mut [Self], q: &[Self], s: &[Self], cb: (usize, usize));
    /// The same with ghost batches: sample `n` (of `per` elements) uses the
    /// factors of ghost `n % groups`; `q`/`s` hold `groups·c` entries.
    fn apply_f2_ghost(
        x: &[Self],
        y: &mut [Self],
        q: &[Self],
        s: &[Self],
        per: usize,
        groups: usize,
        cb: (usize, usize),
    ) {
        let (c, b) = cb;
        let threads = par::threads_for(x.len());
        par::zip_chunks(x, y, threads, per.max(1), |start, xs, ys| {
            for (i, (xv, yv)) in xs.iter().zip(ys.iter_mut()).enumerate() {
                let e = start + i;
                let o = ((e / per) % groups) * c + (e / b) % c;
                *yv = xv.mul(q[o]).add(s[o]);
            }
        });
    }
    /// The slice as `f32`, if this is `f32` (the fused kernel's only type).
    fn as_f32(x: &[Self]) -> Option<&[f32]>;
    /// The mutable slice as `f32`, if this is `f32`.
    fn as_f32_mut(x: &mut [Self]) -> Option<&mut [f32]>;
    /// `f32` statistics back into this type (identity for `f32`).
    fn from_f32_vec(v: Vec<f32>) -> Vec<Self>;
}

impl Elem for f32 {
    fn moments_fast(x: &[f32], plan: &Plan, r: usize) -> Option<(Vec<f32>, Vec<f32>)> {
        let rf = f32::from_count(r);
        match *plan {
            Plan::Rows { r: rows, k } => {
                let sums = kernels::rows_sums_all(x, rows, k, SumMap::Identity);
                let mean: Vec<f32> = sums.iter().map(|s| s.div(rf)).collect();
                let sums = kernels::rows_sums_all(x, rows, k, SumMap::SqDiff(&mean));
                let var = sums.iter().map(|s| s.div(rf)).collect();
                Some((mean, var))
            }
            Plan::Outer { a, k, b } => {
                // Blocks of 8 channels: both passes while the block is cached.
                let blocks = k.div_ceil(8);
                let threads = par::threads_for(x.len()).min(blocks.max(1));
                let pairs: Vec<(f32, f32)> = par::map_ranges(blocks, threads, 1, |br| {
                    let mut res = Vec::new();
                    for blk in br {
                        let c0 = blk * 8;
                        let n = (k - c0).min(8);
                        let (mut m, mut v) = (vec![0.0f32; n], vec![0.0f32; n]);
                        let fin = |s: f32| s.div(rf);
                        kernels::outer_moments(x, (a, k, b), c0, &fin, &mut m, &mut v);
                        res.extend(m.into_iter().zip(v.into_iter().map(|s| s.div(rf))));
                    }
                    res
                });
                Some(pairs.into_iter().unzip())
            }
            _ => None,
        }
    }

    fn apply_f2(x: &[f32], y: &mut [f32], q: &[f32], s: &[f32], (c, b): (usize, usize)) {
        let prm = Affine {
            p: Vec::new(),
            q: q.to_vec(),
            r: s.to_vec(),
        };
        kernels::affine_par(Form::F2, &prm, x, y, (c, b), true);
    }

    fn apply_f2_ghost(
        x: &[f32],
        y: &mut [f32],
        q: &[f32],
        s: &[f32],
        per: usize,
        groups: usize,
        (c, b): (usize, usize),
    ) {
        let plans: Vec<kernels::AffinePlan> = (0..groups)
            .map(|g| {
                let prm = Affine {
                    p: Vec::new(),
                    q: q[g * c..(g + 1) * c].to_vec(),
                    r: s[g * c..(g + 1) * c].to_vec(),
                };
                kernels::AffinePlan::new(Form::F2, &prm, c, b)
            })
            .collect();
        let threads = par::threads_for(x.len());
        let per = per.max(1);
        par::zip_chunks(x, y, threads, per, |start, xs, ys| {
            for (k, (xc, yc)) in xs.chunks(per).zip(ys.chunks_mut(per)).enumerate() {
                let n = start / per + k;
                kernels::affine(&plans[n % groups], xc, yc, 0, false);
            }
        });
    }

    fn as_f32(x: &[f32]) -> Option<&[f32]> {
        Some(x)
    }

    fn as_f32_mut(x: &mut [f32]) -> Option<&mut [f32]> {
        Some(x)
    }

    fn from_f32_vec(v: Vec<f32>) -> Vec<f32> {
        v
    }
}

impl Elem for f64 {
    fn moments_fast(_x: &[f64], _plan: &Plan, _r: usize) -> Option<(Vec<f64>, Vec<f64>)> {
        None
    }

    fn apply_f2(x: &[f64], y: &mut [f64], q: &[f64], s: &[f64], (c, b): (usize, usize)) {
        let threads = par::threads_for(x.len());
        par::zip_chunks(x, y, threads, 64, |start, xs, ys| {
            for (i, (xv, yv)) in xs.iter().zip(ys.iter_mut()).enumerate() {
                let ch = ((start + i) / b) % c;
                *yv = xv.mul(q[ch]).add(s[ch]);
            }
        });
    }

    fn as_f32(_x: &[f64]) -> Option<&[f32]> {
        None
    }

    fn as_f32_mut(_x: &mut [f64]) -> Option<&mut [f32]> {
        None
    }

    fn from_f32_vec(v: Vec<f32>) -> Vec<f64> {
        v.into_iter().map(f64::from).collect()
    }
}

/// Whether [`moments`] reads `x` on one thread only: `float32` channels-last
/// rows too narrow to split (see [`kernels::rows_threads`]).
pub(crate) fn moments_on_one_thread<T: Elem>(x: &[T], shape: &[usize], reduced: &[bool]) -> bool {
    T::as_f32(x).is_some()
        && matches!(Plan::simplify(shape, reduced),
            Plan::Rows { k, .. } if kernels::rows_threads(x.len(), k) == 1)
}

/// `tf.nn.moments(x, axes)`: the mean and the biased variance over the
/// dimensions flagged in `reduced`, one value per kept position (in the
/// order of the kept dimensions). `threads`: TF's intra-op thread count.
pub(crate) fn moments<T: Elem>(
    x: &[T],
    shape: &[usize],
    reduced: &[bool],
    threads: usize,
) -> (Vec<T>, Vec<T>) {
    let n_out: usize = shape
        .iter()
        .zip(reduced)
        .filter(|(_, r)| !**r)
        .map(|(d, _)| *d)
        .product();
    if n_out == 0 {
        return (Vec::new(), Vec::new());
    }
    let plan = Plan::simplify(shape, reduced);
    if plan == Plan::Copy {
        // TF copies the input for a reduction over size-1 dimensions only:
        // the mean keeps x's bits, and the variance is the element-wise
        // squared difference of x with itself.
        let mean = x.to_vec();
        let var = x
            .iter()
            .map(|&v| {
                let d = v.sub(v);
                d.mul(d)
            })
            .collect();
        return (mean, var);
    }
    if x.is_empty() {
        // Mean's identity is NaN (TF's FIX_MEAN_IDENTITY).
        let nan = T::from_f64(f64::NAN);
        return (vec![nan; n_out], vec![nan; n_out]);
    }
    let r = x.len() / n_out;
    if let Some(res) = T::moments_fast(x, &plan, r) {
        return res;
    }
    let rt = T::from_count(r);
    let sums = sums_exact(x, &plan, &|v, _| v, threads);
    let mean: Vec<T> = sums.iter().map(|s| s.div(rt)).collect();
    let sq = sums_exact(
        x,
        &plan,
        &|v: T, o: usize| {
            let d = v.sub(mean[o]);
            d.mul(d)
        },
        threads,
    );
    let var = sq.iter().map(|s| s.div(rt)).collect();
    (mean, var)
}

/// F2's per-position factors: `inv = rsqrtTF(var + eps)` over the whole
/// flattened vector, times `gamma`; `shift = beta − mean·inv` (or
/// `−(mean·inv)` without beta). `mean`/`var` have `G·C` entries (`G = 1`
/// without ghost batches); `gamma`/`beta` have `C` and broadcast over `G`.
pub(crate) fn f2_factors<T: Elem>(
    mean: &[T],
    var: &[T],
    gamma: Option<&[T]>,
    beta: Option<&[T]>,
    eps: T,
    c: usize,
) -> (Vec<T>, Vec<T>) {
    let v: Vec<T> = var.iter().map(|&v| v.add(eps)).collect();
    let mut inv = T::rsqrt_window(&v, 0, v.len());
    if let Some(g) = gamma {
        for (i, x) in inv.iter_mut().enumerate() {
            *x = x.mul(g[i % c]);
        }
    }
    let shift = (0..mean.len())
        .map(|i| {
            let mi = mean[i].mul(inv[i]);
            match beta {
                Some(b) => b[i % c].sub(mi),
                None => mi.neg(),
            }
        })
        .collect();
    (inv, shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 6.0 - 2.0
            })
            .collect()
    }

    #[test]
    fn fast_and_exact_moments_agree() {
        let shapes: &[(&[usize], &[bool])] = &[
            (&[4, 5, 6, 13], &[true, true, true, false]),
            (&[20, 16], &[true, false]),
            (&[4, 11, 5, 6], &[true, false, true, true]),
            (&[3, 8, 16], &[true, false, true]),
        ];
        for (shape, reduced) in shapes {
            let n: usize = shape.iter().product();
            let x = data(n, n as u64);
            let (m, v) = moments(&x, shape, reduced, 2);
            let plan = Plan::simplify(shape, reduced);
            let n_out = m.len();
            let rt = (n / n_out) as f32;
            let sums = sums_exact(&x, &plan, &|v, _| v, 2);
            let mean: Vec<f32> = sums.iter().map(|s| s.div(rt)).collect();
            let sq = sums_exact(
                &x,
                &plan,
                &|v: f32, o| {
                    let d = v.sub(mean[o]);
                    d.mul(d)
                },
                2,
            );
            let var: Vec<f32> = sq.iter().map(|s| s.div(rt)).collect();
            assert_eq!(m, mean, "{shape:?}");
            assert_eq!(v, var, "{shape:?}");
        }
    }

    #[test]
    fn empty_batch_and_single_value() {
        let (m, v) = moments::<f32>(&[], &[0, 3], &[true, false], 1);
        assert!(m.iter().chain(&v).all(|x| x.is_nan()) && m.len() == 3);
        let (m, v) = moments(&[-0.0f32, 2.0], &[1, 2], &[true, false], 1);
        assert_eq!(m[0].to_bits(), 0x8000_0000); // copied, not 0 + x
        assert_eq!(v, vec![0.0, 0.0]);
    }

    #[test]
    fn f2_shift_without_beta_is_negated_product() {
        let (inv, shift) = f2_factors(&[2.0f32], &[3.0], None, None, 1e-3, 1);
        assert_eq!(shift[0], -(2.0f32 * inv[0]));
    }
}
