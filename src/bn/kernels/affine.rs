//! The element-wise pass `y = ((x − p)·q) + r` (F1) or `y = (x·q) + r`
//! (F2): per element and order-free, so any SIMD width and any split over
//! threads give TF's bits.

use crate::bn::ftz::TfFloat;
#[cfg(target_arch = "x86_64")]
use crate::bn::ftz::{tiny_key, TINY_KEY_LIMIT};

#[cfg(target_arch = "x86_64")]
use super::has_avx2;

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
    let threads = crate::bn::par::threads_for(n);
    if reverse {
        crate::bn::par::zip_blocks_rev(x, y, threads, 1 << 16, |start, xs, ys| {
            affine(&plan, xs, ys, start, stream);
        });
    } else {
        crate::bn::par::zip_chunks(x, y, threads, 64, |start, xs, ys| {
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
    //! AVX2 bodies of the element-wise pass; the caller guarantees AVX2 and
    //! the slice bounds stated on the safe wrappers.

    use super::*;
    use crate::bn::kernels::simd::{key_below, key_min};
    use std::arch::x86_64::*;

    pub(super) fn sfence() {
        // SAFETY: SSE is baseline on x86-64.
        unsafe { _mm_sfence() };
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
    use crate::bn::kernels::testdata::data;

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
