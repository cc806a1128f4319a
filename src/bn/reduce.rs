//! Eigen's column reductions, in TF's summation order (docs/bn-arithmetic.md#reduction-order).
//!
//! A per-channel sum depends on the order of its additions. TF's reduction
//! kernels first simplify the shape (`ReductionHelper::Simplify`: drop
//! leading 1s, merge runs of reduced / kept dimensions, let size-1
//! dimensions join the run before them) and then pick one of Eigen's
//! reducers by the simplified rank. [`Plan`] is that choice; the functions
//! here evaluate each reducer exactly, one FTZ operation at a time, for any
//! element type. They are the reference; `kernels.rs` has SIMD versions of
//! the two patterns that matter for speed (P and Q), checked against these.
//!
//! * **P** ([`Plan::Rows`], [`Plan::Middle`], the fused kernel's rows):
//!   Eigen's `InnerMostDimPreserver`. Output coefficients that fall in a full
//!   packet (8 lanes for `f32`, 4 for `f64`) are reduced with four
//!   interleaved partial sums when there are ≥ 16 rows; every other
//!   coefficient is a plain sequential sum.
//! * **Q** ([`Plan::Outer`]): Eigen's `GenericDimReducer` for a reduction over
//!   dimensions 0 and 2 of `(A, K, B)`: one sequential sum, `B` outer, `A`
//!   inner.
//! * **Inner** ([`Plan::Inner`], [`Plan::Transposed`], [`Plan::Full`]):
//!   `InnerMostDimReducer`: four packet accumulators, one packet, scalars,
//!   and a pairwise tree above `packet·1024` values.

use super::ftz::TfFloat;

/// Eigen's leaf size for its tree reduction of floats and doubles.
const LEAF_SIZE: usize = 1024;

/// How TF reshapes a reduction before handing it to Eigen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Every reduced dimension has size 1: TF copies the input (no `0 +`,
    /// no division).
    Copy,
    /// All of it collapses into one value: Eigen's multithreaded
    /// `FullReducer` over `n` values.
    Full {
        /// Values.
        n: usize,
    },
    /// `(r, k)`, reduce dimension 0: pattern P over `r` rows.
    Rows {
        /// Rows (reduced).
        r: usize,
        /// Outputs.
        k: usize,
    },
    /// `(k, l)`, reduce dimension 1: one `InnerMostDimReducer` per row.
    Inner {
        /// Outputs.
        k: usize,
        /// Values per output.
        l: usize,
    },
    /// `(a, k, b)`, reduce dimensions 0 and 2: pattern Q.
    Outer {
        /// Leading reduced size.
        a: usize,
        /// Outputs.
        k: usize,
        /// Trailing reduced size.
        b: usize,
    },
    /// `(k1, r, k2)`, reduce dimension 1: P for packets of outputs that stay
    /// within one `k1` row, sequential otherwise.
    Middle {
        /// Leading kept size.
        k1: usize,
        /// Reduced size.
        r: usize,
        /// Trailing kept size.
        k2: usize,
    },
    /// Four or more simplified dimensions: TF transposes the kept
    /// dimensions to the front and reduces rows ([`Plan::Inner`]).
    Transposed {
        /// Simplified dimensions.
        dims: Vec<usize>,
        /// Whether `dims[0]` is reduced (they alternate from there).
        reduce_first: bool,
    },
}

impl Plan {
    /// TF's `ReductionHelper::Simplify` for a tensor of `shape` reduced over
    /// the dimensions flagged in `reduced`.
    pub(crate) fn simplify(shape: &[usize], reduced: &[bool]) -> Plan {
        debug_assert_eq!(shape.len(), reduced.len());
        let mut bitmap = reduced.to_vec();
        let Some(start) = shape.iter().position(|&d| d != 1) else {
            return Plan::Copy;
        };
        let reduce_first = bitmap[start];
        let mut dims = vec![shape[start]];
        for i in start + 1..shape.len() {
            if shape[i] == 1 {
                bitmap[i] = bitmap[i - 1];
            }
            if bitmap[i - 1] != bitmap[i] {
                dims.push(shape[i]);
            } else if let Some(last) = dims.last_mut() {
                *last *= shape[i];
            }
        }
        match (dims.len(), reduce_first) {
            (1, false) => Plan::Copy,
            (1, true) => Plan::Full { n: dims[0] },
            (2, true) => Plan::Rows {
                r: dims[0],
                k: dims[1],
            },
            (2, false) => Plan::Inner {
                k: dims[0],
                l: dims[1],
            },
            (3, true) => Plan::Outer {
                a: dims[0],
                k: dims[1],
                b: dims[2],
            },
            (3, false) => Plan::Middle {
                k1: dims[0],
                r: dims[1],
                k2: dims[2],
            },
            _ => Plan::Transposed { dims, reduce_first },
        }
    }
}

/// Pattern P for one output: `n` rows read through `get`, four interleaved
/// partial sums when `four` (the output is in a full packet) and `n ≥ 16`.
#[inline]
pub(crate) fn sum_p<T: TfFloat>(n: usize, four: bool, get: impl Fn(usize) -> T) -> T {
    if four && n >= 16 {
        let n4 = n / 4 * 4;
        let mut s = [T::ZERO; 4];
        let mut r = 0;
        while r < n4 {
            s[0] = s[0].add(get(r));
            s[1] = s[1].add(get(r + 1));
            s[2] = s[2].add(get(r + 2));
            s[3] = s[3].add(get(r + 3));
            r += 4;
        }
        let mut acc = s[0].add(s[1]).add(s[2]).add(s[3]);
        for r in n4..n {
            acc = acc.add(get(r));
        }
        acc
    } else {
        let mut acc = T::ZERO;
        for r in 0..n {
            acc = acc.add(get(r));
        }
        acc
    }
}

/// Eigen's `predux` of one packet: halves added pairwise
/// (`(l0+l4) + (l2+l6)` then `+ ((l1+l5) + (l3+l7))` for 8 lanes).
fn predux<T: TfFloat>(lanes: &[T]) -> T {
    match lanes.len() {
        8 => {
            let b: [T; 4] = std::array::from_fn(|i| lanes[i].add(lanes[i + 4]));
            b[0].add(b[2]).add(b[1].add(b[3]))
        }
        4 => lanes[0].add(lanes[2]).add(lanes[1].add(lanes[3])),
        _ => unreachable!("packet sizes are 4 or 8"),
    }
}

/// Eigen's vectorized `InnerMostDimReducer` (with its tree above
/// `packet·1024` values) over the `n` values at absolute positions
/// `first..first + n` of a flat tensor read through `get`. The tree split is
/// aligned to packets *of the whole tensor*, hence the absolute index.
pub(crate) fn sum_inner<T: TfFloat>(first: usize, n: usize, get: &impl Fn(usize) -> T) -> T {
    let p = T::PACKET;
    if n > p * LEAF_SIZE {
        let split = p * (first + n.div_ceil(2)).div_ceil(p);
        let num_left = (split - first).min(n);
        let mut acc = T::ZERO.add(sum_inner(first, num_left, get));
        if num_left < n {
            acc = acc.add(sum_inner(split, n - num_left, get));
        }
        return acc;
    }
    let mut pacc = vec![T::ZERO; p];
    let mut start = 0;
    if n >= 4 * p {
        let v4 = n / (4 * p) * (4 * p);
        let mut extra = vec![T::ZERO; 3 * p];
        let mut j = 0;
        while j < v4 {
            for (l, acc) in pacc.iter_mut().enumerate() {
                *acc = acc.add(get(first + j + l));
            }
            for (kl, acc) in extra.iter_mut().enumerate() {
                let (k, l) = (kl / p, kl % p);
                *acc = acc.add(get(first + j + (k + 1) * p + l));
            }
            j += 4 * p;
        }
        for part in extra.chunks(p) {
            for (acc, &e) in pacc.iter_mut().zip(part) {
                *acc = acc.add(e);
            }
        }
        start = v4;
    }
    if start + p <= n {
        let vs = n / p * p;
        let mut j = start;
        while j < vs {
            for (l, acc) in pacc.iter_mut().enumerate() {
                *acc = acc.add(get(first + j + l));
            }
            j += p;
        }
        start = vs;
    }
    let mut acc = T::ZERO;
    for j in start..n {
        acc = acc.add(get(first + j));
    }
    acc.add(predux(&pacc))
}

/// Eigen's thread count for a full reduction (`TensorCostModel::numThreads`
/// with the cost of a plain tensor read and `SumReducer`'s default functor
/// cost of 10).
pub(crate) fn full_reduction_threads<T: TfFloat>(n: usize, max_threads: usize) -> usize {
    let bytes = std::mem::size_of::<T>() as f64;
    let per_coeff = bytes * (11.0 / 64.0) + 10.0 / T::PACKET as f64;
    let cost = n as f64 * per_coeff;
    let threads = (cost - 100_000.0) / 100_000.0 + 0.9;
    let threads = threads.min(i32::MAX as f64) as i64;
    (threads.max(1) as usize).min(max_threads.max(1))
}

/// Sums of a reduction, exactly as TF adds them (no division). `x` is the
/// contiguous input in the original shape; `map(value, output)` turns each
/// element into what is summed (the identity, or a squared difference with
/// that output's mean). `threads` is TF's intra-op thread count (only
/// [`Plan::Full`] depends on it). Returns one sum per output, in the order of
/// the kept dimensions. [`Plan::Copy`] returns the mapped values themselves.
pub(crate) fn sums_exact<T: TfFloat>(
    x: &[T],
    plan: &Plan,
    map: &(impl Fn(T, usize) -> T + Sync),
    threads: usize,
) -> Vec<T> {
    let p = T::PACKET;
    match plan {
        Plan::Copy => x.iter().enumerate().map(|(i, &v)| map(v, i)).collect(),
        Plan::Full { n } => {
            let get = |i: usize| map(x[i], 0);
            let n = *n;
            let nt = full_reduction_threads::<T>(n, threads);
            if nt == 1 {
                return vec![sum_inner(0, n, &get)];
            }
            let bs = n / nt;
            let nb = n.checked_div(bs).unwrap_or(0);
            let mut acc = if nb * bs < n {
                sum_inner(nb * bs, n - nb * bs, &get)
            } else {
                T::ZERO
            };
            for i in 0..nb {
                acc = acc.add(sum_inner(i * bs, bs, &get));
            }
            vec![acc]
        }
        Plan::Rows { r, k } => {
            let full = k / p * p;
            (0..*k)
                .map(|o| sum_p(*r, o < full, |row| map(x[row * k + o], o)))
                .collect()
        }
        Plan::Middle { k1, r, k2 } => {
            let total = k1 * k2;
            (0..total)
                .map(|o| {
                    let g = o / p * p;
                    let four = g + p <= total && (g % k2) + p - 1 < *k2;
                    let (i1, i2) = (o / k2, o % k2);
                    sum_p(*r, four, |row| map(x[(i1 * r + row) * k2 + i2], o))
                })
                .collect()
        }
        Plan::Inner { k, l } => (0..*k)
            .map(|o| sum_inner(o * l, *l, &|i: usize| map(x[i], o)))
            .collect(),
        Plan::Outer { a, k, b } => (0..*k)
            .map(|o| {
                let mut acc = T::ZERO;
                for j in 0..*b {
                    for i in 0..*a {
                        acc = acc.add(map(x[(i * k + o) * b + j], o));
                    }
                }
                acc
            })
            .collect(),
        Plan::Transposed { dims, reduce_first } => {
            let t = Transpose::new(dims, *reduce_first);
            (0..t.kept)
                .map(|o| {
                    sum_inner(o * t.len, t.len, &|s: usize| {
                        let (oo, j) = (s / t.len, s % t.len);
                        map(x[t.source(oo, j)], oo)
                    })
                })
                .collect()
        }
    }
}

/// Index arithmetic of TF's transpose-then-reduce path: kept dimensions to
/// the front, reduced ones after, each group in its original order.
struct Transpose {
    /// (size, source stride) of the kept dimensions, outermost first.
    kept_dims: Vec<(usize, usize)>,
    /// (size, source stride) of the reduced dimensions, outermost first.
    red_dims: Vec<(usize, usize)>,
    /// Number of outputs.
    kept: usize,
    /// Values per output.
    len: usize,
}

impl Transpose {
    fn new(dims: &[usize], reduce_first: bool) -> Transpose {
        let n = dims.len();
        let mut strides = vec![1usize; n];
        for i in (0..n.saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * dims[i + 1];
        }
        let reduced = |i: usize| (i % 2 == 0) == reduce_first;
        let kept_dims: Vec<(usize, usize)> = (0..n)
            .filter(|&i| !reduced(i))
            .map(|i| (dims[i], strides[i]))
            .collect();
        let red_dims: Vec<(usize, usize)> = (0..n)
            .filter(|&i| reduced(i))
            .map(|i| (dims[i], strides[i]))
            .collect();
        Transpose {
            kept: kept_dims.iter().map(|d| d.0).product(),
            len: red_dims.iter().map(|d| d.0).product(),
            kept_dims,
            red_dims,
        }
    }

    /// Source index of element `j` of output row `o`.
    fn source(&self, o: usize, j: usize) -> usize {
        let mut idx = 0;
        let mut rem = o;
        for &(d, stride) in self.kept_dims.iter().rev() {
            idx += (rem % d) * stride;
            rem /= d;
        }
        let mut rem = j;
        for &(d, stride) in self.red_dims.iter().rev() {
            idx += (rem % d) * stride;
            rem /= d;
        }
        idx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simplify_matches_tf_reduction_helper() {
        // NHWC over N, H, W.
        assert_eq!(
            Plan::simplify(&[4, 5, 6, 8], &[true, true, true, false]),
            Plan::Rows { r: 120, k: 8 }
        );
        // NCHW over N, H, W: pattern Q.
        assert_eq!(
            Plan::simplify(&[4, 8, 5, 6], &[true, false, true, true]),
            Plan::Outer { a: 4, k: 8, b: 30 }
        );
        // Batch of 1 in NCHW: leading 1 dropped, inner reduction.
        assert_eq!(
            Plan::simplify(&[1, 8, 5, 6], &[true, false, true, true]),
            Plan::Inner { k: 8, l: 30 }
        );
        // Spatial 1×1 in NCHW: rows.
        assert_eq!(
            Plan::simplify(&[4, 8, 1, 1], &[true, false, true, true]),
            Plan::Rows { r: 4, k: 8 }
        );
        // A single channel collapses to a full reduction.
        assert_eq!(
            Plan::simplify(&[4, 5, 6, 1], &[true, true, true, false]),
            Plan::Full { n: 120 }
        );
        // R = 1: nothing to reduce.
        assert_eq!(Plan::simplify(&[1, 8], &[true, false]), Plan::Copy);
        assert_eq!(
            Plan::simplify(&[1, 8, 1, 1], &[true, false, true, true]),
            Plan::Copy
        );
        // Ghost batches, channels last: (v, G, H, W, C) over v, H, W.
        assert_eq!(
            Plan::simplify(&[2, 3, 4, 5, 8], &[true, false, true, true, false]),
            Plan::Transposed {
                dims: vec![2, 3, 20, 8],
                reduce_first: true
            }
        );
        // Ghost batches, 2-D: (v, G, C) over v.
        assert_eq!(
            Plan::simplify(&[2, 3, 8], &[true, false, false]),
            Plan::Rows { r: 2, k: 24 }
        );
        assert_eq!(
            Plan::simplify(&[3, 4, 8], &[false, true, false]),
            Plan::Middle { k1: 3, r: 4, k2: 8 }
        );
    }

    #[test]
    fn pattern_p_differs_from_sequential() {
        // Values chosen so that the order matters.
        let v: Vec<f32> = (0..37)
            .map(|i| {
                if i % 4 == 0 {
                    1e8
                } else {
                    1.0 + i as f32 * 0.37
                }
            })
            .collect();
        let four = sum_p(v.len(), true, |r| v[r]);
        let seq = sum_p(v.len(), false, |r| v[r]);
        assert_ne!(four.to_bits(), seq.to_bits());
        // Fewer than 16 rows: sequential either way.
        let w = &v[..15];
        assert_eq!(
            sum_p(w.len(), true, |r| w[r]).to_bits(),
            sum_p(w.len(), false, |r| w[r]).to_bits()
        );
    }

    #[test]
    fn rows_plan_uses_four_partials_only_on_full_packets() {
        let r = 40;
        let k = 11;
        let x: Vec<f32> = (0..r * k)
            .map(|i| ((i * 7919) % 1000) as f32 * 0.001 + if i % 3 == 0 { 3e6 } else { 0.0 })
            .collect();
        let s = sums_exact(&x, &Plan::Rows { r, k }, &|v, _| v, 1);
        for o in 0..k {
            let four = sum_p(r, true, |row| x[row * k + o]);
            let seq = sum_p(r, false, |row| x[row * k + o]);
            let want = if o < 8 { four } else { seq };
            assert_eq!(s[o].to_bits(), want.to_bits(), "channel {o}");
        }
    }

    #[test]
    fn inner_reduction_small_is_packetwise() {
        // 8 values: one packet, then predux.
        let x: Vec<f32> = (1..=8).map(|i| i as f32).collect();
        let got = sum_inner(0, 8, &|i| x[i]);
        assert_eq!(got, 36.0);
        // n < 8: scalars only.
        let got = sum_inner(0, 5, &|i| x[i]);
        assert_eq!(got, 15.0);
        // Large n goes through the tree without losing values.
        let big: Vec<f32> = vec![1.0; 20_000];
        assert_eq!(sum_inner(0, big.len(), &|i| big[i]), 20_000.0);
    }

    #[test]
    fn full_reduction_thread_model() {
        assert_eq!(full_reduction_threads::<f32>(100, 8), 1);
        // 1e6 coefficients at 1.9375 cycles each: (1.9375e6 − 1e5)/1e5 + 0.9.
        assert_eq!(full_reduction_threads::<f32>(1_000_000, 64), 19);
        assert_eq!(full_reduction_threads::<f32>(1_000_000, 2), 2);
    }

    #[test]
    fn transposed_indexing() {
        // (v=2, G=3, S=4, C=5) reduce v, S: row (g, c) reads (v, s) in order.
        let dims = [2usize, 3, 4, 5];
        let x: Vec<f64> = (0..120).map(|i| i as f64).collect();
        let plan = Plan::Transposed {
            dims: dims.to_vec(),
            reduce_first: true,
        };
        let s = sums_exact(&x, &plan, &|v, _| v, 1);
        assert_eq!(s.len(), 15);
        for g in 0..3 {
            for c in 0..5 {
                let mut want = 0.0;
                for v in 0..2 {
                    for q in 0..4 {
                        want += x[((v * 3 + g) * 4 + q) * 5 + c];
                    }
                }
                assert_eq!(s[g * 5 + c], want);
            }
        }
    }
}
