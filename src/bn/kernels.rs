//! Fast `float32` kernels that keep TF's bits.
//!
//! Three kinds of work dominate batch norm, and each can be vectorized
//! without changing a single rounding:
//!
//! * **Element-wise** `y = ((x − p)·q) + r` (F1) or `y = (x·q) + r` (F2):
//!   per element and order-free, so any SIMD width and any split over
//!   threads give TF's bits.
//! * **Pattern P** over channels-last rows: every lane of an 8-wide vector is
//!   a different channel, and each lane adds its rows in Eigen's order (four
//!   interleaved partials), so vectorizing *across* channels keeps each
//!   channel's order. Threads split channels, never rows.
//! * **Pattern Q** over channels-first data: a strictly sequential sum per
//!   channel; eight channels run side by side in the lanes of a vector after
//!   an 8×8 transpose.
//!
//! The kernels do not flush subnormals. Instead they keep the unsigned
//! minimum of a key (`ftz::tiny_key`) of every operand and result, which
//! tells whether FTZ/DAZ could have changed anything; when it could, the
//! caller recomputes the affected channels or block with the exact scalar
//! code (`ftz`, `reduce`). On data without tiny values that never happens.
//!
//! Everything here has a portable scalar twin used off x86-64 / without
//! AVX2; the twins *are* the exact reference arithmetic.

use super::ftz::{tiny_key, TfFloat, SQUARE_SAFE_KEY_LIMIT, SUM_SAFE_KEY_LIMIT, TINY_KEY_LIMIT};
use super::reduce::sum_p;

/// What a reduction sums: the values, or their squared difference with a
/// per-channel mean (`d = x − mean`, rounded, then `d·d`).
#[derive(Clone, Copy)]
pub(crate) enum SumMap<'a> {
    /// `x`.
    Identity,
    /// `(x − mean[c])²`, indexed by channel.
    SqDiff(&'a [f32]),
}

impl SumMap<'_> {
    #[inline(always)]
    fn apply_exact(&self, v: f32, c: usize) -> f32 {
        match self {
            SumMap::Identity => v.daz(),
            SumMap::SqDiff(m) => {
                let d = v.sub(m[c]);
                d.mul(d)
            }
        }
    }
}

/// The element-wise normalization of one channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Form {
    /// F1 (fused kernel): `y = ((x − p)·q) + r`.
    F1,
    /// F2 (`tf.nn.batch_normalization`): `y = (x·q) + r`.
    F2,
}

/// Per-channel parameters of the element-wise pass.
#[derive(Clone, Debug, Default)]
pub(crate) struct Affine {
    /// Subtracted first (F1 only): the mean.
    pub p: Vec<f32>,
    /// Multiplier: `rsqrt(var + eps)·gamma`.
    pub q: Vec<f32>,
    /// Added last: `beta` (F1) or `beta − mean·inv` (F2).
    pub r: Vec<f32>,
}

/// Exact scalar element-wise pass (the reference).
#[inline(always)]
pub(crate) fn affine_exact(form: Form, x: f32, p: f32, q: f32, r: f32) -> f32 {
    match form {
        Form::F1 => x.sub(p).mul(q).add(r),
        Form::F2 => x.mul(q).add(r),
    }
}

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

// ------------------------------------------------------------------ pattern P, channels-last

/// Pattern-P sums of channels `[c_lo, c_hi)` of an `r × k` row-major matrix
/// (channels last). Channels below `8·⌊k/8⌋` use four partials when
/// `r ≥ 16`; the others are sequential. `c_lo` must be a multiple of 8 (or
/// at least `8·⌊k/8⌋`). Exact in every case: channels whose data holds
/// values that FTZ/DAZ could affect are recomputed with the scalar reference.
pub(crate) fn rows_sums(
    x: &[f32],
    r: usize,
    k: usize,
    c_lo: usize,
    c_hi: usize,
    map: SumMap<'_>,
    out: &mut [f32],
) {
    debug_assert_eq!(out.len(), c_hi - c_lo);
    debug_assert!(x.len() >= r * k);
    let full = k / 8 * 8;
    debug_assert!(c_lo % 8 == 0 || c_lo >= full);
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            // SAFETY: AVX2 detected; indices are bounded by r·k ≤ x.len().
            let clean = unsafe { avx2::rows_sums(x, r, k, c_lo, c_hi, map, out) };
            if clean {
                return;
            }
        }
    }
    for (o, c) in out.iter_mut().zip(c_lo..c_hi) {
        *o = sum_p(r, c < full, |row| map.apply_exact(x[row * k + c], c));
    }
}

/// [`rows_sums`] of all `k` channels, on as many cores as help.
///
/// Threads may only split channels (each channel's rows must be added by one
/// thread in order), so each thread would read a slice of every row. On the
/// machines measured that interleaved access reads memory 2–3× slower than
/// one thread streaming whole rows, so rows narrower than
/// [`SPLIT_ROW_BYTES`] are summed by a single thread.
pub(crate) fn rows_sums_all(x: &[f32], r: usize, k: usize, map: SumMap<'_>) -> Vec<f32> {
    let threads = if k * 4 >= SPLIT_ROW_BYTES {
        super::par::threads_for(x.len())
    } else {
        1
    };
    super::par::map_ranges(k, threads, 1024, |cr| {
        let mut out = vec![0.0f32; cr.len()];
        rows_sums(x, r, k, cr.start, cr.end, map, &mut out);
        out
    })
}

/// Rows at least this wide are split over threads by channel ranges.
pub(crate) const SPLIT_ROW_BYTES: usize = 32 << 10;

// ------------------------------------------------------------------ pattern P, channels-first rows

/// Pattern-P sum of channel `ch` of an `(a, c, b)` tensor whose rows are the
/// `(a, b)` pairs in order (the fused kernel's view of NCHW after its
/// transpose to NHWC). `four`: the channel is in a full packet.
pub(crate) fn runs_sum(
    x: &[f32],
    (a, c, b): (usize, usize, usize),
    ch: usize,
    four: bool,
    mean: Option<f32>,
) -> f32 {
    debug_assert!(x.len() >= a * c * b);
    let rows = a * b;
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() && four && rows >= 16 {
            // SAFETY: AVX2 detected; reads stay inside channel ch's runs.
            if let Some(s) = unsafe { avx2::runs_sum(x, (a, c, b), ch, mean) } {
                return s;
            }
        }
    }
    let get = |row: usize| {
        let (ia, ib) = (row / b, row % b);
        let v = x[(ia * c + ch) * b + ib];
        match mean {
            None => v.daz(),
            Some(m) => {
                let d = v.sub(m);
                d.mul(d)
            }
        }
    };
    sum_p(rows, four, get)
}

// ------------------------------------------------------------------ pattern Q

/// Pattern-Q moments (`B` outer, `A` inner, strictly sequential) of the
/// channels `[c0, c0 + mean.len())` of an `(a, k, b)` tensor
/// (`mean.len() ≤ 8`): `mean[j] = finalize(Σ x)` and `var_sum[j] =
/// Σ (x − mean[j])²`, each sum in TF's order.
pub(crate) fn outer_moments(
    x: &[f32],
    (a, k, b): (usize, usize, usize),
    c0: usize,
    finalize: &dyn Fn(f32) -> f32,
    mean: &mut [f32],
    var_sum: &mut [f32],
) {
    let n = mean.len();
    debug_assert!(n <= 8 && c0 + n <= k && var_sum.len() == n);
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            // SAFETY: AVX2 detected; reads stay inside the given channels.
            if unsafe { avx2::outer_moments(x, (a, k, b), c0, finalize, mean, var_sum) } {
                return;
            }
        }
    }
    let q_sum = |ch: usize, f: &dyn Fn(f32) -> f32| {
        let mut acc = 0.0f32;
        for jb in 0..b {
            for ia in 0..a {
                acc = acc.add(f(x[(ia * k + ch) * b + jb]));
            }
        }
        acc
    };
    for j in 0..n {
        let ch = c0 + j;
        mean[j] = finalize(q_sum(ch, &|v| v.daz()));
        let m = mean[j];
        var_sum[j] = q_sum(ch, &|v| {
            let d = v.sub(m);
            d.mul(d)
        });
    }
}

// ------------------------------------------------------------------ element-wise

/// The element-wise pass over a flat chunk: element `i` of `x`/`y` is
/// element `start + i` of an `(·, c, b)` tensor, so its channel is
/// `((start + i) / b) % c`. `stream`: use non-temporal stores (for outputs
/// much larger than the caches). Exact: a sub-block that meets a value FTZ
/// or DAZ could affect is recomputed with the scalar reference.
pub(crate) fn affine(plan: &AffinePlan, x: &[f32], y: &mut [f32], start: usize, stream: bool) {
    debug_assert_eq!(x.len(), y.len());
    if x.is_empty() {
        return;
    }
    let (form, prm, cb) = (plan.form, &plan.prm, (plan.c, plan.b));
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            // Sub-blocks of 16 Ki elements bound the work redone on a fallback.
            const BLOCK: usize = 1 << 14;
            let mut off = 0;
            while off < x.len() {
                let end = (off + BLOCK).min(x.len());
                // SAFETY: AVX2 detected; x and y hold end − off elements past off.
                let clean = unsafe {
                    avx2::affine(plan, &x[off..end], &mut y[off..end], start + off, stream)
                };
                if !clean {
                    affine_scalar(form, prm, &x[off..end], &mut y[off..end], start + off, cb);
                }
                off = end;
            }
            if stream {
                avx2::sfence();
            }
            return;
        }
    }
    let _ = stream;
    affine_scalar(form, prm, x, y, start, cb);
}

/// Outputs at least this large are written with non-temporal stores.
pub(crate) const STREAM_BYTES: usize = 16 << 20;

/// The element-wise pass over a whole `(·, c, b)` tensor on all cores.
/// `reverse`: walk each thread's share from its end, to reuse what a
/// preceding forward pass left in the last-level cache.
pub(crate) fn affine_par(
    form: Form,
    prm: &Affine,
    x: &[f32],
    y: &mut [f32],
    (c, b): (usize, usize),
    reverse: bool,
) {
    let n = x.len();
    if n == 0 {
        return;
    }
    let plan = AffinePlan::new(form, prm, c, b);
    let stream = n * 4 >= STREAM_BYTES;
    let threads = super::par::threads_for(n);
    if reverse {
        super::par::zip_blocks_rev(x, y, threads, 1 << 16, |start, xs, ys| {
            affine(&plan, xs, ys, start, stream);
        });
    } else {
        super::par::zip_chunks(x, y, threads, 64, |start, xs, ys| {
            affine(&plan, xs, ys, start, stream);
        });
    }
}

/// Exact scalar element-wise pass.
pub(crate) fn affine_scalar(
    form: Form,
    prm: &Affine,
    x: &[f32],
    y: &mut [f32],
    start: usize,
    (c, b): (usize, usize),
) {
    for (i, (xv, yv)) in x.iter().zip(y.iter_mut()).enumerate() {
        let ch = ((start + i) / b) % c;
        let p = if form == Form::F1 { prm.p[ch] } else { 0.0 };
        *yv = affine_exact(form, *xv, p, prm.q[ch], prm.r[ch]);
    }
}

/// Parameters laid out for the vector loop: for a channel period `period =
/// c·b` that is short (`b < 16`) they are expanded per element and extended
/// cyclically by 8, so that a vector load at any phase reads the right
/// parameters; for long runs (`b ≥ 16`) they stay per channel and are
/// broadcast.
pub(crate) struct AffinePlan {
    form: Form,
    /// The per-channel parameters (for the scalar path).
    prm: Affine,
    /// True: per-element cyclic parameters of `period`; false: runs of `b`.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    cyclic: bool,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    period: usize,
    c: usize,
    b: usize,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    p: Vec<f32>,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    q: Vec<f32>,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    r: Vec<f32>,
}

impl AffinePlan {
    /// Lays out `prm` for a tensor of `c` channels with `b` elements per run.
    pub(crate) fn new(form: Form, prm: &Affine, c: usize, b: usize) -> AffinePlan {
        let mut prm = prm.clone();
        if form == Form::F2 || prm.p.len() < c {
            prm.p = vec![0.0; c];
        }
        let (p, q, r, cyclic) = if b < 16 {
            let period = c * b;
            let n = period + 8;
            let idx = |i: usize| (i % period) / b;
            (
                (0..n).map(|i| prm.p[idx(i)]).collect(),
                (0..n).map(|i| prm.q[idx(i)]).collect(),
                (0..n).map(|i| prm.r[idx(i)]).collect(),
                true,
            )
        } else {
            (prm.p.clone(), prm.q.clone(), prm.r.clone(), false)
        };
        AffinePlan {
            form,
            prm,
            cyclic,
            period: c * b,
            c,
            b,
            p,
            q,
            r,
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! AVX2 bodies. Every function is `unsafe`: the caller guarantees AVX2
    //! and the slice bounds stated on the safe wrappers above.

    use super::*;
    use std::arch::x86_64::*;

    #[inline(always)]
    unsafe fn key_min(acc: __m256i, v: __m256) -> __m256i {
        let bits = _mm256_castps_si256(v);
        let key = _mm256_sub_epi32(_mm256_slli_epi32(bits, 1), _mm256_set1_epi32(1));
        _mm256_min_epu32(acc, key)
    }

    #[inline(always)]
    unsafe fn key_below(acc: __m256i, limit: u32) -> bool {
        let mut lanes = [0u32; 8];
        // SAFETY: 8 lanes.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, acc) };
        lanes.iter().any(|&k| k < limit)
    }

    pub(super) fn sfence() {
        // SAFETY: SSE is baseline on x86-64.
        unsafe { _mm_sfence() };
    }

    /// See [`super::rows_sums`]. Returns false when a tiny value was seen.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn rows_sums(
        x: &[f32],
        r: usize,
        k: usize,
        c_lo: usize,
        c_hi: usize,
        map: SumMap<'_>,
        out: &mut [f32],
    ) -> bool {
        // SAFETY: forwarded; the body is specialized per map so that the hot
        // loop has no branch on it.
        match map {
            SumMap::Identity => unsafe { rows_sums_g::<false>(x, r, k, c_lo, c_hi, map, out) },
            SumMap::SqDiff(_) => unsafe { rows_sums_g::<true>(x, r, k, c_lo, c_hi, map, out) },
        }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn rows_sums_g<const SQ: bool>(
        x: &[f32],
        r: usize,
        k: usize,
        c_lo: usize,
        c_hi: usize,
        map: SumMap<'_>,
        out: &mut [f32],
    ) -> bool {
        let full = k / 8 * 8;
        let g_lo = c_lo.min(full) / 8;
        let g_hi = c_hi.min(full) / 8;
        let ng = g_hi.saturating_sub(g_lo);
        let t_lo = c_lo.max(full);
        let t_hi = c_hi.max(full);
        let nt = t_hi - t_lo;
        let four = r >= 16;
        let (limit, mean) = match map {
            SumMap::Identity => (SUM_SAFE_KEY_LIMIT, None),
            SumMap::SqDiff(m) => (SQUARE_SAFE_KEY_LIMIT, Some(m)),
        };
        let xp = x.as_ptr();
        let mut acc = vec![_mm256_setzero_ps(); 4 * ng];
        let means: Vec<__m256> = match mean {
            Some(m) => (g_lo..g_hi)
                .map(|g| unsafe { _mm256_loadu_ps(m.as_ptr().add(8 * g)) })
                .collect(),
            None => Vec::new(),
        };
        let mut tail = [0.0f32; 8];
        let mut tail_key = u32::MAX;
        let mut keys = _mm256_set1_epi32(-1);

        // One row of the tail channels (sequential sums).
        let tail_row = |row: usize, tail: &mut [f32; 8], tail_key: &mut u32| {
            for (t, ch) in (t_lo..t_hi).enumerate() {
                let v = x[row * k + ch];
                let s = match mean {
                    None => {
                        *tail_key = (*tail_key).min(tiny_key(v));
                        v
                    }
                    Some(m) => {
                        let d = v - m[ch];
                        *tail_key = (*tail_key).min(tiny_key(d));
                        d * d
                    }
                };
                tail[t] += s;
            }
        };

        // Software prefetch of the rows PF ahead: one thread streams whole
        // rows, and the hardware prefetchers alone leave it latency-bound.
        const PF: usize = 24;
        let pf_lo = c_lo * 4;
        let pf_hi = c_hi * 4;
        let prefetch_row = |row: usize| {
            if row < r {
                let base = unsafe { (xp as *const u8).add(row * k * 4) };
                let mut off = pf_lo & !63;
                while off < pf_hi {
                    // SAFETY: a prefetch never faults; the address is inside x.
                    unsafe { _mm_prefetch::<_MM_HINT_T0>(base.add(off) as *const i8) };
                    off += 64;
                }
            }
        };

        let mut row = 0;
        if four {
            let r4 = r / 4 * 4;
            while row < r4 {
                // One quad per call: four quads per call (fewer accumulator
                // loads and stores) measured no faster, the pass is memory-bound.
                let quads = 1;
                for j in 0..4 * quads {
                    prefetch_row(row + PF + j);
                }
                // SAFETY: rows row..row + 4·quads ≤ r4 ≤ r; groups g_lo..g_lo + ng
                // lie in each row.
                unsafe {
                    rows_quads::<SQ>(
                        xp.add(row * k + 8 * g_lo),
                        k,
                        quads,
                        &mut acc,
                        &means,
                        &mut keys,
                    )
                };
                if nt > 0 {
                    for j in 0..4 * quads {
                        tail_row(row + j, &mut tail, &mut tail_key);
                    }
                }
                row += 4 * quads;
            }
            for gi in 0..ng {
                let a = &mut acc[4 * gi..4 * gi + 4];
                a[0] = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a[0], a[1]), a[2]), a[3]);
            }
        }
        while row < r {
            prefetch_row(row + PF);
            // SAFETY: row < r; groups g_lo..g_lo + ng lie in the row.
            unsafe { rows_single::<SQ>(xp.add(row * k + 8 * g_lo), &mut acc, &means, &mut keys) };
            if nt > 0 {
                tail_row(row, &mut tail, &mut tail_key);
            }
            row += 1;
        }
        if unsafe { key_below(keys, limit) } || tail_key < limit {
            return false;
        }
        for gi in 0..ng {
            let mut lanes = [0.0f32; 8];
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc[4 * gi]) };
            let o = 8 * (g_lo + gi) - c_lo;
            out[o..o + 8].copy_from_slice(&lanes);
        }
        for t in 0..nt {
            out[t_lo - c_lo + t] = tail[t];
        }
        true
    }

    /// `quads` quads of rows of [`rows_sums`]: `base` points at the first
    /// group of the first row; `acc` holds the 4 partials of each group,
    /// partial `j` taking rows `4q + j`. Kept out of line so that the
    /// running key stays in a register.
    #[target_feature(enable = "avx2")]
    #[inline(never)]
    unsafe fn rows_quads<const SQ: bool>(
        base: *const f32,
        k: usize,
        quads: usize,
        acc: &mut [__m256],
        means: &[__m256],
        keys_io: &mut __m256i,
    ) {
        let mut keys = *keys_io;
        for (gi, a) in acc.chunks_exact_mut(4).enumerate() {
            let mut p = [a[0], a[1], a[2], a[3]];
            for q in 0..quads {
                for (j, pj) in p.iter_mut().enumerate() {
                    // SAFETY: the caller guarantees 4·quads rows of the groups.
                    let v = unsafe { _mm256_loadu_ps(base.add((4 * q + j) * k + 8 * gi)) };
                    let t = if SQ {
                        let d = _mm256_sub_ps(v, means[gi]);
                        keys = unsafe { key_min(keys, d) };
                        _mm256_mul_ps(d, d)
                    } else {
                        keys = unsafe { key_min(keys, v) };
                        v
                    };
                    *pj = _mm256_add_ps(*pj, t);
                }
            }
            a.copy_from_slice(&p);
        }
        *keys_io = keys;
    }

    /// One row of [`rows_sums`] into the first partial of each group.
    #[target_feature(enable = "avx2")]
    #[inline(never)]
    unsafe fn rows_single<const SQ: bool>(
        base: *const f32,
        acc: &mut [__m256],
        means: &[__m256],
        keys_io: &mut __m256i,
    ) {
        let mut keys = *keys_io;
        for (gi, a) in acc.chunks_exact_mut(4).enumerate() {
            // SAFETY: the caller guarantees the row's groups.
            let v = unsafe { _mm256_loadu_ps(base.add(8 * gi)) };
            let t = if SQ {
                let d = _mm256_sub_ps(v, means[gi]);
                keys = unsafe { key_min(keys, d) };
                _mm256_mul_ps(d, d)
            } else {
                keys = unsafe { key_min(keys, v) };
                v
            };
            a[0] = _mm256_add_ps(a[0], t);
        }
        *keys_io = keys;
    }

    /// The ordered sum of one staged chunk of [`outer_moments`]: position
    /// outer, `ia` inner. Out of line so that `acc` and the key stay in
    /// registers.
    #[target_feature(enable = "avx2")]
    #[inline(never)]
    unsafe fn q_accumulate<const SQ: bool>(
        buf: &[__m256],
        chunk: usize,
        len: usize,
        a: usize,
        mv: __m256,
        acc_io: &mut __m256,
        keys_io: &mut __m256i,
    ) {
        let (mut acc, mut keys) = (*acc_io, *keys_io);
        for jj in 0..len {
            for ia in 0..a {
                let v = buf[ia * chunk + jj];
                let t = if SQ {
                    let d = _mm256_sub_ps(v, mv);
                    keys = unsafe { key_min(keys, d) };
                    _mm256_mul_ps(d, d)
                } else {
                    keys = unsafe { key_min(keys, v) };
                    v
                };
                acc = _mm256_add_ps(acc, t);
            }
        }
        *acc_io = acc;
        *keys_io = keys;
    }

    /// See [`super::runs_sum`] (four partials, ≥ 16 rows). `None` when a
    /// tiny value was seen.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn runs_sum(
        x: &[f32],
        dims: (usize, usize, usize),
        ch: usize,
        mean: Option<f32>,
    ) -> Option<f32> {
        // SAFETY: forwarded (specialized per map, see rows_sums).
        match mean {
            None => unsafe { runs_sum_g::<false>(x, dims, ch, mean) },
            Some(_) => unsafe { runs_sum_g::<true>(x, dims, ch, mean) },
        }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn runs_sum_g<const SQ: bool>(
        x: &[f32],
        (a, c, b): (usize, usize, usize),
        ch: usize,
        mean: Option<f32>,
    ) -> Option<f32> {
        let rows = a * b;
        let r4 = rows / 4 * 4;
        let xp = x.as_ptr();
        let (limit, mv) = match mean {
            None => (SUM_SAFE_KEY_LIMIT, _mm_setzero_ps()),
            Some(m) => (SQUARE_SAFE_KEY_LIMIT, _mm_set1_ps(m)),
        };
        let mut keys = _mm_set1_epi32(-1);
        let one = _mm_set1_epi32(1);
        let mut part = [0.0f32; 4];
        let mut skey = u32::MAX;
        let scalar = |v: f32, skey: &mut u32| -> f32 {
            if SQ {
                let d = v - mean.unwrap_or(0.0);
                *skey = (*skey).min(tiny_key(d));
                d * d
            } else {
                *skey = (*skey).min(tiny_key(v));
                v
            }
        };
        // Rows [0, r4) into the four partials, run by run.
        let mut row = 0usize;
        while row < r4 {
            let ia = row / b;
            let ib0 = row % b;
            let run_end = ((ia + 1) * b).min(r4);
            // SAFETY: channel ch's run ia starts at (ia·c + ch)·b.
            let base = unsafe { xp.add((ia * c + ch) * b) };
            let mut ib = ib0;
            // Head: until the global row is a multiple of 4.
            while ia * b + ib < run_end && (ia * b + ib) % 4 != 0 {
                let v = unsafe { *base.add(ib) };
                let j = (ia * b + ib) % 4;
                part[j] += scalar(v, &mut skey);
                ib += 1;
            }
            let body_end = ia * b + ib + (run_end - (ia * b + ib)) / 4 * 4;
            let mut accv = unsafe { _mm_loadu_ps(part.as_ptr()) };
            while ia * b + ib < body_end {
                let v = unsafe { _mm_loadu_ps(base.add(ib)) };
                let t = if SQ {
                    let d = _mm_sub_ps(v, mv);
                    let key = _mm_sub_epi32(_mm_slli_epi32(_mm_castps_si128(d), 1), one);
                    keys = _mm_min_epu32(keys, key);
                    _mm_mul_ps(d, d)
                } else {
                    let key = _mm_sub_epi32(_mm_slli_epi32(_mm_castps_si128(v), 1), one);
                    keys = _mm_min_epu32(keys, key);
                    v
                };
                accv = _mm_add_ps(accv, t);
                ib += 4;
            }
            unsafe { _mm_storeu_ps(part.as_mut_ptr(), accv) };
            while ia * b + ib < run_end {
                let v = unsafe { *base.add(ib) };
                let j = (ia * b + ib) % 4;
                part[j] += scalar(v, &mut skey);
                ib += 1;
            }
            row = run_end;
        }
        let mut acc = ((part[0] + part[1]) + part[2]) + part[3];
        for row in r4..rows {
            let (ia, ib) = (row / b, row % b);
            acc += scalar(x[(ia * c + ch) * b + ib], &mut skey);
        }
        let mut lanes = [0u32; 4];
        unsafe { _mm_storeu_si128(lanes.as_mut_ptr() as *mut __m128i, keys) };
        if lanes.iter().any(|&kk| kk < limit) || skey < limit {
            return None;
        }
        Some(acc)
    }

    /// 8×8 transpose of rows `r[0..8]` (each 8 floats) in registers.
    #[inline(always)]
    unsafe fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ]
    }

    /// Fills `buf[ia·chunk + jj]` (jj < len) with the 8 channels at
    /// `(ia, jb + jj)`: for each `ia`, 8 rows read in lockstep, 8×8
    /// transposes, sequential stores. `len` is a multiple of 8.
    #[target_feature(enable = "avx2")]
    #[inline(never)]
    unsafe fn q_fill(
        x: &[f32],
        (a, k, b): (usize, usize, usize),
        c0: usize,
        n: usize,
        (jb, len, chunk): (usize, usize, usize),
        buf: &mut [__m256],
    ) {
        let xp = x.as_ptr();
        let zeros = [0.0f32; 8];
        for ia in 0..a {
            let rows: [*const f32; 8] = std::array::from_fn(|j| {
                if j < n {
                    // SAFETY: channel c0 + j < k, so the row lies inside x.
                    unsafe { xp.add((ia * k + c0 + j) * b + jb) }
                } else {
                    zeros.as_ptr()
                }
            });
            let mut sub = 0;
            while sub < len {
                // SAFETY: sub + 8 ≤ len ≤ b − jb for real rows; padding rows
                // point at 8 zeros and do not advance.
                let r: [__m256; 8] = std::array::from_fn(|j| unsafe {
                    _mm256_loadu_ps(rows[j].add(if j < n { sub } else { 0 }))
                });
                let t = unsafe { transpose8(r) };
                buf[ia * chunk + sub..ia * chunk + sub + 8].copy_from_slice(&t);
                sub += 8;
            }
        }
    }

    /// See [`super::outer_moments`]. Returns false when a tiny value was
    /// seen. When the whole transposed block fits in 8 MiB it is staged
    /// once and both passes read it; otherwise it is staged in chunks that
    /// keep the buffer near 4 MiB, once per pass.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn outer_moments(
        x: &[f32],
        dims: (usize, usize, usize),
        c0: usize,
        finalize: &dyn Fn(f32) -> f32,
        mean: &mut [f32],
        var_sum: &mut [f32],
    ) -> bool {
        let (a, _, b) = dims;
        let b8 = b / 8 * 8;
        let whole = a.saturating_mul(b8).saturating_mul(32) <= (8 << 20);
        let chunk = if whole {
            b8.max(8)
        } else {
            ((4 << 20) / (a.max(1) * 32) / 8 * 8).clamp(64.min(b8.max(8)), b8.max(8))
        };
        let mut buf = take_staging(a * chunk);
        let ok = unsafe {
            outer_moments_in(x, dims, c0, finalize, mean, var_sum, &mut buf, chunk, whole)
        };
        give_back_staging(buf);
        ok
    }

    /// Staging buffers kept across calls: a fresh multi-MiB allocation costs
    /// page faults, which on virtual machines can take longer than the whole
    /// kernel (≈ 5 µs per 4 KiB page measured on the benchmark host).
    static STAGING: std::sync::Mutex<Vec<Vec<__m256>>> = std::sync::Mutex::new(Vec::new());

    fn take_staging(len: usize) -> Vec<__m256> {
        let mut v = STAGING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default();
        if v.len() < len {
            // SAFETY: SSE is baseline on x86-64.
            v.resize(len, unsafe { _mm256_setzero_ps() });
        }
        v
    }

    fn give_back_staging(v: Vec<__m256>) {
        let mut pool = STAGING.lock().unwrap_or_else(|e| e.into_inner());
        // Keep one buffer per core at most.
        if pool.len() < super::super::par::host_threads() {
            pool.push(v);
        }
    }

    #[target_feature(enable = "avx2")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn outer_moments_in(
        x: &[f32],
        dims: (usize, usize, usize),
        c0: usize,
        finalize: &dyn Fn(f32) -> f32,
        mean: &mut [f32],
        var_sum: &mut [f32],
        buf: &mut [__m256],
        chunk: usize,
        whole: bool,
    ) -> bool {
        let (a, k, b) = dims;
        let n = mean.len();
        let b8 = b / 8 * 8;
        let mut keys = _mm256_set1_epi32(-1);
        let mut skey = u32::MAX;

        // The scalar tail positions b8..b come last in TF's order.
        let tail = |lanes: &mut [f32; 8], m: Option<&[f32; 8]>, skey: &mut u32| {
            for jb in b8..b {
                for ia in 0..a {
                    for (j, lane) in lanes.iter_mut().enumerate().take(n) {
                        let v = x[(ia * k + c0 + j) * b + jb];
                        let t = match m {
                            None => {
                                *skey = (*skey).min(tiny_key(v));
                                v
                            }
                            Some(m) => {
                                let d = v - m[j];
                                *skey = (*skey).min(tiny_key(d));
                                d * d
                            }
                        };
                        *lane += t;
                    }
                }
            }
        };

        // Pass 1: sums.
        let mut acc = _mm256_setzero_ps();
        let mut jb = 0;
        while jb < b8 {
            let len = chunk.min(b8 - jb);
            // SAFETY: forwarded bounds; buf holds a·chunk vectors.
            unsafe {
                q_fill(x, dims, c0, n, (jb, len, chunk), buf);
                q_accumulate::<false>(buf, chunk, len, a, _mm256_setzero_ps(), &mut acc, &mut keys);
            }
            jb += len;
        }
        let mut sums = [0.0f32; 8];
        unsafe { _mm256_storeu_ps(sums.as_mut_ptr(), acc) };
        tail(&mut sums, None, &mut skey);
        if unsafe { key_below(keys, SUM_SAFE_KEY_LIMIT) } || skey < SUM_SAFE_KEY_LIMIT {
            return false;
        }
        let mut m = [0.0f32; 8];
        for j in 0..n {
            m[j] = finalize(sums[j]);
            mean[j] = m[j];
        }
        let mv = unsafe { _mm256_loadu_ps(m.as_ptr()) };

        // Pass 2: squared differences.
        let mut acc = _mm256_setzero_ps();
        let mut keys = _mm256_set1_epi32(-1);
        let mut skey = u32::MAX;
        if whole {
            // SAFETY: buf still holds the whole staged block.
            unsafe { q_accumulate::<true>(buf, chunk, b8, a, mv, &mut acc, &mut keys) };
        } else {
            let mut jb = 0;
            while jb < b8 {
                let len = chunk.min(b8 - jb);
                // SAFETY: as in pass 1.
                unsafe {
                    q_fill(x, dims, c0, n, (jb, len, chunk), buf);
                    q_accumulate::<true>(buf, chunk, len, a, mv, &mut acc, &mut keys);
                }
                jb += len;
            }
        }
        let mut sq = [0.0f32; 8];
        unsafe { _mm256_storeu_ps(sq.as_mut_ptr(), acc) };
        tail(&mut sq, Some(&m), &mut skey);
        // Padding lanes hold zeros (key u32::MAX) and mean 0.
        if unsafe { key_below(keys, SQUARE_SAFE_KEY_LIMIT) } || skey < SQUARE_SAFE_KEY_LIMIT {
            return false;
        }
        var_sum.copy_from_slice(&sq[..n]);
        true
    }

    /// See [`super::affine`]: one sub-block. Returns false when a tiny value
    /// was seen (the block must then be recomputed exactly).
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn affine(
        plan: &AffinePlan,
        x: &[f32],
        y: &mut [f32],
        start: usize,
        stream: bool,
    ) -> bool {
        // SAFETY: forwarded; specialized so that the vector loop has no
        // branch on the formula or the store kind.
        unsafe {
            match (plan.form == Form::F1, stream) {
                (true, true) => affine_g::<true, true>(plan, x, y, start),
                (true, false) => affine_g::<true, false>(plan, x, y, start),
                (false, true) => affine_g::<false, true>(plan, x, y, start),
                (false, false) => affine_g::<false, false>(plan, x, y, start),
            }
        }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn affine_g<const F1: bool, const STREAM: bool>(
        plan: &AffinePlan,
        x: &[f32],
        y: &mut [f32],
        start: usize,
    ) -> bool {
        let n = x.len();
        let xp = x.as_ptr();
        let yp = y.as_mut_ptr();
        let mut keys = _mm256_set1_epi32(-1);
        let mut skey = u32::MAX;

        // Scalar step with the same (unflushed) arithmetic as the lanes.
        let scalar = |xv: f32, p: f32, q: f32, r: f32, skey: &mut u32| -> f32 {
            if F1 {
                let t = xv - p;
                let u = t * q;
                let yv = u + r;
                *skey = (*skey)
                    .min(tiny_key(xv))
                    .min(tiny_key(t))
                    .min(tiny_key(u))
                    .min(tiny_key(yv));
                yv
            } else {
                let u = xv * q;
                let yv = u + r;
                *skey = (*skey).min(tiny_key(xv)).min(tiny_key(u)).min(tiny_key(yv));
                yv
            }
        };

        macro_rules! vec_step {
            ($i:expr, $pv:expr, $qv:expr, $rv:expr) => {{
                // SAFETY: $i + 8 ≤ n.
                let xv = unsafe { _mm256_loadu_ps(xp.add($i)) };
                keys = unsafe { key_min(keys, xv) };
                let u = if F1 {
                    let t = _mm256_sub_ps(xv, $pv);
                    keys = unsafe { key_min(keys, t) };
                    _mm256_mul_ps(t, $qv)
                } else {
                    _mm256_mul_ps(xv, $qv)
                };
                keys = unsafe { key_min(keys, u) };
                let yv = _mm256_add_ps(u, $rv);
                keys = unsafe { key_min(keys, yv) };
                let dst = unsafe { yp.add($i) };
                if STREAM && (dst as usize) % 32 == 0 {
                    unsafe { _mm256_stream_ps(dst, yv) };
                } else {
                    unsafe { _mm256_storeu_ps(dst, yv) };
                }
            }};
        }

        if plan.cyclic {
            let period = plan.period;
            let mut phase = start % period;
            let mut i = 0;
            // Peel to a 32-byte boundary of y when streaming.
            if STREAM {
                while i < n && (unsafe { yp.add(i) } as usize) % 32 != 0 {
                    let v = scalar(x[i], plan.p[phase], plan.q[phase], plan.r[phase], &mut skey);
                    unsafe { *yp.add(i) = v };
                    i += 1;
                    phase += 1;
                    if phase == period {
                        phase = 0;
                    }
                }
            }
            let (pp, qp, rp) = (plan.p.as_ptr(), plan.q.as_ptr(), plan.r.as_ptr());
            while i + 8 <= n {
                // SAFETY: phase < period and the parameter arrays hold period + 8.
                let (pv, qv, rv) = unsafe {
                    (
                        _mm256_loadu_ps(pp.add(phase)),
                        _mm256_loadu_ps(qp.add(phase)),
                        _mm256_loadu_ps(rp.add(phase)),
                    )
                };
                vec_step!(i, pv, qv, rv);
                i += 8;
                phase += 8;
                if phase >= period {
                    phase -= period;
                    if phase >= period {
                        phase %= period;
                    }
                }
            }
            while i < n {
                let v = scalar(x[i], plan.p[phase], plan.q[phase], plan.r[phase], &mut skey);
                unsafe { *yp.add(i) = v };
                i += 1;
                phase += 1;
                if phase == period {
                    phase = 0;
                }
            }
        } else {
            let b = plan.b;
            let mut i = 0;
            while i < n {
                let g = start + i;
                let ch = (g / b) % plan.c;
                let run_end = (i + (b - g % b)).min(n);
                let (p, q, r) = (plan.p[ch], plan.q[ch], plan.r[ch]);
                let (pv, qv, rv) = (_mm256_set1_ps(p), _mm256_set1_ps(q), _mm256_set1_ps(r));
                if STREAM {
                    while i < run_end && (unsafe { yp.add(i) } as usize) % 32 != 0 {
                        let v = scalar(x[i], p, q, r, &mut skey);
                        unsafe { *yp.add(i) = v };
                        i += 1;
                    }
                }
                while i + 8 <= run_end {
                    vec_step!(i, pv, qv, rv);
                    i += 8;
                }
                while i < run_end {
                    let v = scalar(x[i], p, q, r, &mut skey);
                    unsafe { *yp.add(i) = v };
                    i += 1;
                }
            }
        }
        !(unsafe { key_below(keys, TINY_KEY_LIMIT) } || skey < TINY_KEY_LIMIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 1.5
    }

    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|i| lcg(&mut s) * if i % 5 == 0 { 1000.0 } else { 1.0 })
            .collect()
    }

    #[test]
    fn rows_sums_match_reference() {
        for &(r, k) in &[
            (3, 5),
            (16, 8),
            (17, 13),
            (40, 24),
            (64, 3),
            (100, 17),
            (15, 16),
        ] {
            let x = data(r * k, (r * 31 + k) as u64);
            let mean: Vec<f32> = (0..k).map(|c| c as f32 * 0.1 - 0.3).collect();
            for map in [SumMap::Identity, SumMap::SqDiff(&mean)] {
                let mut got = vec![0.0; k];
                rows_sums(&x, r, k, 0, k, map, &mut got);
                let full = k / 8 * 8;
                for c in 0..k {
                    let want = sum_p(r, c < full, |row| map.apply_exact(x[row * k + c], c));
                    assert_eq!(got[c].to_bits(), want.to_bits(), "r {r} k {k} c {c}");
                }
                // A channel sub-range gives the same sums.
                if k > 8 {
                    let mut part = vec![0.0; k - 8];
                    rows_sums(&x, r, k, 8, k, map, &mut part);
                    assert_eq!(&part[..], &got[8..]);
                }
            }
        }
    }

    #[test]
    fn rows_sums_fall_back_on_tiny_values() {
        let (r, k) = (32, 8);
        let mut x = data(r * k, 3);
        x[5] = 1e-39; // subnormal input: DAZ
        x[13] = 1e-36; // small enough that a partial sum could go subnormal
        let mut got = vec![0.0; k];
        rows_sums(&x, r, k, 0, k, SumMap::Identity, &mut got);
        for c in 0..k {
            let want = sum_p(r, true, |row| x[row * k + c].daz());
            assert_eq!(got[c].to_bits(), want.to_bits());
        }
    }

    #[test]
    fn runs_sum_matches_reference() {
        for &(a, c, b) in &[(2, 3, 9), (4, 2, 16), (3, 5, 7), (1, 1, 33), (5, 2, 6)] {
            let x = data(a * c * b, (a + 7 * c + 13 * b) as u64);
            for ch in 0..c {
                for mean in [None, Some(0.25f32)] {
                    let got = runs_sum(&x, (a, c, b), ch, true, mean);
                    let want = sum_p(a * b, true, |row| {
                        let v = x[((row / b) * c + ch) * b + row % b];
                        match mean {
                            None => v,
                            Some(m) => (v - m) * (v - m),
                        }
                    });
                    assert_eq!(got.to_bits(), want.to_bits(), "{a} {c} {b} ch {ch}");
                }
            }
        }
    }

    #[test]
    fn outer_moments_match_reference() {
        for &(a, k, b) in &[
            (2, 3, 9),
            (4, 8, 16),
            (3, 11, 7),
            (1, 9, 33),
            (5, 2, 24),
            (2, 9, 5003),
            (300, 8, 4100),
        ] {
            let x = data(a * k * b, (a + 3 * k + 5 * b) as u64);
            let rt = (a * b) as f32;
            let fin = |s: f32| s.div(rt);
            let mut c0 = 0;
            while c0 < k {
                let n = (k - c0).min(8);
                let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
                outer_moments(&x, (a, k, b), c0, &fin, &mut m, &mut v);
                for j in 0..n {
                    let ch = c0 + j;
                    let q = |f: &dyn Fn(f32) -> f32| {
                        let mut acc = 0.0f32;
                        for jb in 0..b {
                            for ia in 0..a {
                                acc = acc.add(f(x[(ia * k + ch) * b + jb]));
                            }
                        }
                        acc
                    };
                    let want_m = fin(q(&|v| v));
                    let want_v = q(&|v| {
                        let d = v.sub(want_m);
                        d.mul(d)
                    });
                    assert_eq!(m[j].to_bits(), want_m.to_bits(), "{a} {k} {b} ch {ch}");
                    assert_eq!(v[j].to_bits(), want_v.to_bits(), "{a} {k} {b} ch {ch}");
                }
                c0 += n;
            }
        }
    }

    #[test]
    fn affine_matches_reference_for_every_layout() {
        for &(c, b) in &[(3, 1), (8, 1), (13, 1), (4, 5), (2, 16), (3, 37), (256, 1)] {
            let n = c * b * 7 + 5;
            let x = data(n, (c * 17 + b) as u64);
            let prm = Affine {
                p: (0..c).map(|i| i as f32 * 0.7 - 1.0).collect(),
                q: (0..c).map(|i| 1.0 / (1.0 + i as f32)).collect(),
                r: (0..c).map(|i| i as f32 * -0.2).collect(),
            };
            for form in [Form::F1, Form::F2] {
                for start in [0usize, 3, c * b] {
                    for stream in [false, true] {
                        let mut y = vec![0.0; n];
                        let plan = AffinePlan::new(form, &prm, c, b);
                        affine(&plan, &x, &mut y, start, stream);
                        let mut want = vec![0.0; n];
                        affine_scalar(form, &prm, &x, &mut want, start, (c, b));
                        assert_eq!(y, want, "c {c} b {b} {form:?} start {start}");
                    }
                }
            }
        }
    }

    #[test]
    fn affine_flushes_like_tf() {
        let c = 8;
        let x: Vec<f32> = vec![1e-39, -1e-39, 1.0, 2.0, 1e-38, 3.0, 0.5, 1e-30];
        let prm = Affine {
            p: vec![0.0; c],
            q: vec![1e-10; c],
            r: vec![0.0; c],
        };
        let mut y = vec![9.0; 8];
        affine(&AffinePlan::new(Form::F1, &prm, c, 1), &x, &mut y, 0, false);
        assert_eq!(y[0].to_bits(), 0);
        // −1e-39 reads as −0; (−0 − 0)·q = −0; −0 + 0 = +0.
        assert_eq!(y[1].to_bits(), 0);
        assert_eq!(y[4], 0.0);
        assert_eq!(y[7], 0.0);
        assert_eq!(y[2], 1e-10);
    }
}
