//! The per-API semantics on top of the two kernels: which kernel runs, what
//! the layer feeds it, and how each API turns batch statistics into new
//! moving statistics (`docs/bn-arithmetic.md`: #which-kernel-runs,
//! #moving-averages, #defaults-and-flags, #renorm).

use super::config::{
    decay_python, decay_v1_fused, BnApi, BnConfig, KernelPath, MovingUpdate, RenormConfig,
};
use super::ftz::TfFloat;
use super::fused::{self, Layout};
use super::nonfused::{f2_factors, moments, moments_on_one_thread, Elem};
use super::par;
use super::{BnParams, RenormState, TrainingStats};
use crate::error::{Error, Result};

fn mismatch(what: impl Into<String>, detail: String) -> Error {
    Error::TensorMismatch {
        key: what.into(),
        what: detail,
    }
}

fn check_len<T>(name: &str, v: &[T], c: usize) -> Result<()> {
    if v.len() != c {
        return Err(mismatch(
            name,
            format!("has {} values; the input has {c} channels", v.len()),
        ));
    }
    Ok(())
}

/// Checks the shape against the data and the parameters against the
/// channel count; returns the resolved axis and the `(a, c, b)` view.
pub(super) fn prepare<T: TfFloat>(
    cfg: &BnConfig,
    p: &BnParams<T>,
    x_len: usize,
    shape: &[usize],
) -> Result<(usize, Layout)> {
    let rank = shape.len();
    let axis = cfg.resolved_axis(rank)?;
    let l = Layout::new(shape, axis);
    cfg.check_validity(rank, l.c)?;
    let n: usize = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::InvalidArgument(format!("input shape {shape:?} overflows")))?;
    if n != x_len {
        return Err(mismatch(
            "input",
            format!("shape {shape:?} needs {n} values, the data has {x_len}"),
        ));
    }
    let c = l.c;
    check_len("moving_mean", &p.moving_mean, c)?;
    check_len("moving_variance", &p.moving_variance, c)?;
    if let Some(g) = &p.gamma {
        check_len("gamma", g, c)?;
    }
    if let Some(b) = &p.beta {
        check_len("beta", b, c)?;
    }
    if let Some(r) = &p.renorm {
        check_len("moving_stddev", &r.moving_stddev, c)?;
        check_len("renorm_mean", &r.renorm_mean, c)?;
        check_len("renorm_stddev", &r.renorm_stddev, c)?;
    }
    Ok((axis, l))
}

/// `gamma` as the layer feeds it: `None` when `scale` is off.
pub(super) fn gamma_of<'a, T>(cfg: &BnConfig, p: &'a BnParams<T>) -> Result<Option<&'a [T]>> {
    if !cfg.scale {
        return Ok(None);
    }
    match &p.gamma {
        Some(g) => Ok(Some(g)),
        None => Err(mismatch(
            "gamma",
            "scale is on but no gamma was given".into(),
        )),
    }
}

/// `beta` as the layer feeds it: `None` when `center` is off.
pub(super) fn beta_of<'a, T>(cfg: &BnConfig, p: &'a BnParams<T>) -> Result<Option<&'a [T]>> {
    if !cfg.center {
        return Ok(None);
    }
    match &p.beta {
        Some(b) => Ok(Some(b)),
        None => Err(mismatch(
            "beta",
            "center is on but no beta was given".into(),
        )),
    }
}

/// The fused kernel's scale and offset: with `scale`/`center` off, tf_keras
/// passes constant ones and zeros (so `−0 + 0 = +0` happens).
fn fused_scale_offset<T: Elem>(
    cfg: &BnConfig,
    p: &BnParams<T>,
    c: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let to32 = |v: &[T]| -> Vec<f32> { v.iter().map(|x| x.to_f64() as f32).collect() };
    let g = match gamma_of(cfg, p)? {
        Some(g) => to32(g),
        None => vec![1.0; c],
    };
    let b = match beta_of(cfg, p)? {
        Some(b) => to32(b),
        None => vec![0.0; c],
    };
    Ok((g, b))
}

fn f32_of<T: Elem>(v: &[T]) -> Vec<f32> {
    v.iter().map(|x| x.to_f64() as f32).collect()
}

fn no_f32() -> Error {
    Error::InvalidArgument("FusedBatchNormV3 runs in float32 only".into())
}

/// Inference: `y` from the moving statistics (or, for [`BnApi::Nn`], the
/// given mean and variance).
pub(crate) fn inference<T: Elem>(
    cfg: &BnConfig,
    p: &BnParams<T>,
    x: &[T],
    shape: &[usize],
    y: &mut [T],
) -> Result<()> {
    let (axis, l) = prepare(cfg, p, x.len(), shape)?;
    if y.len() != x.len() {
        return Err(mismatch(
            "y",
            format!("has {} values, the input {}", y.len(), x.len()),
        ));
    }
    let is_f64 = T::as_f32(x).is_none();
    let path = match cfg.path(shape.len(), axis, is_f64)? {
        // Grappler's element-wise rewrite of a float32 fused op.
        KernelPath::Fused if cfg.inference_rewritten && T::as_f32(x).is_some() => {
            KernelPath::NonFused
        }
        p => p,
    };
    match path {
        KernelPath::Fused => {
            let (g, b) = fused_scale_offset(cfg, p, l.c)?;
            let x32 = T::as_f32(x).ok_or_else(no_f32)?;
            let y32 = T::as_f32_mut(y).ok_or_else(no_f32)?;
            fused::inference(
                x32,
                l,
                &g,
                &b,
                &f32_of(&p.moving_mean),
                &f32_of(&p.moving_variance),
                cfg.epsilon as f32,
                y32,
            );
        }
        KernelPath::NonFused => {
            let (q, s) = f2_factors(
                &p.moving_mean,
                &p.moving_variance,
                gamma_of(cfg, p)?,
                beta_of(cfg, p)?,
                T::from_f64(cfg.epsilon),
                l.c,
            );
            T::apply_f2(x, y, &q, &s, (l.c, l.b));
        }
    }
    Ok(())
}

/// Training: `y` from the batch statistics, and the statistics and moving
/// averages the API produces.
pub(crate) fn training<T: Elem>(
    cfg: &BnConfig,
    p: &BnParams<T>,
    x: &[T],
    shape: &[usize],
    y: &mut [T],
) -> Result<TrainingStats<T>> {
    let (axis, l) = prepare(cfg, p, x.len(), shape)?;
    if y.len() != x.len() {
        return Err(mismatch(
            "y",
            format!("has {} values, the input {}", y.len(), x.len()),
        ));
    }
    let is_f64 = T::as_f32(x).is_none();
    match cfg.path(shape.len(), axis, is_f64)? {
        KernelPath::Fused => fused_training(cfg, p, x, l, y),
        KernelPath::NonFused => nonfused_training(cfg, p, x, shape, axis, l, y),
    }
}

fn fused_training<T: Elem>(
    cfg: &BnConfig,
    p: &BnParams<T>,
    x: &[T],
    l: Layout,
    y: &mut [T],
) -> Result<TrainingStats<T>> {
    let (g, b) = fused_scale_offset(cfg, p, l.c)?;
    let x32 = T::as_f32(x).ok_or_else(no_f32)?;
    let y32 = T::as_f32_mut(y).ok_or_else(no_f32)?;
    let old_mean = f32_of(&p.moving_mean);
    let old_var = f32_of(&p.moving_variance);
    // tf.compat.v1 graph mode calls the kernel with factor 1 and updates
    // the variables itself; TF2 Keras and the raw op use the kernel's
    // exponential average with f = f32(1 − m).
    let factor = match cfg.api {
        BnApi::Tf1Layers => 1.0,
        _ => decay_python(cfg.momentum),
    };
    let out = fused::training(
        x32,
        l,
        &g,
        &b,
        &old_mean,
        &old_var,
        cfg.epsilon as f32,
        factor,
        y32,
    );
    let (moving_mean, moving_variance) = match cfg.api {
        BnApi::Tf1Layers => {
            let decay = decay_v1_fused(cfg.momentum);
            let upd = |old: &[f32], new: &[f32]| -> Vec<f32> {
                old.iter()
                    .zip(new)
                    .map(|(&o, &n)| o.sub(o.sub(n).mul(decay)))
                    .collect()
            };
            (
                upd(&old_mean, &out.batch_mean),
                upd(&old_var, &out.batch_variance),
            )
        }
        _ => (out.batch_mean.clone(), out.batch_variance.clone()),
    };
    Ok(TrainingStats {
        batch_mean: T::from_f32_vec(out.batch_mean),
        batch_variance: T::from_f32_vec(out.batch_variance),
        moving_mean: T::from_f32_vec(moving_mean),
        moving_variance: T::from_f32_vec(moving_variance),
        renorm: None,
    })
}

/// Renorm's `r` and `d` (docs/bn-arithmetic.md#renorm) and the batch standard deviation.
struct RenormTerms<T> {
    r: Vec<T>,
    d: Vec<T>,
    stddev: Vec<T>,
}

fn renorm_terms<T: Elem>(
    cfg: &BnConfig,
    rn: &RenormConfig,
    st: &RenormState<T>,
    mean: &[T],
    var: &[T],
) -> RenormTerms<T> {
    let eps = T::from_f64(cfg.epsilon);
    let floor = eps.sqrt();
    let mut r = Vec::with_capacity(mean.len());
    let mut d = Vec::with_capacity(mean.len());
    let mut stddev = Vec::with_capacity(mean.len());
    for i in 0..mean.len() {
        let s = var[i].add(eps).sqrt();
        let rs = st.renorm_stddev[i].max_nan(floor);
        let mut ri = s.div(rs);
        let mut di = mean[i].sub(st.renorm_mean[i]).div(rs);
        if let Some(rmin) = rn.rmin {
            ri = ri.max_nan(T::from_f64(rmin));
        }
        if let Some(rmax) = rn.rmax {
            ri = ri.min_nan(T::from_f64(rmax));
        }
        if let Some(dmax) = rn.dmax {
            let (lo, hi) = (T::from_f64(-dmax), T::from_f64(dmax));
            di = if cfg.api == BnApi::Keras3 {
                // tf.clip_by_value: minimum first, then maximum.
                di.min_nan(hi).max_nan(lo)
            } else {
                di.max_nan(lo).min_nan(hi)
            };
        }
        r.push(ri);
        d.push(di);
        stddev.push(s);
    }
    RenormTerms { r, d, stddev }
}

#[allow(clippy::too_many_arguments)]
fn nonfused_training<T: Elem>(
    cfg: &BnConfig,
    p: &BnParams<T>,
    x: &[T],
    shape: &[usize],
    axis: usize,
    l: Layout,
    y: &mut [T],
) -> Result<TrainingStats<T>> {
    let c = l.c;
    let threads = cfg
        .intra_op_threads
        .unwrap_or_else(par::host_threads)
        .max(1);
    let eps = T::from_f64(cfg.epsilon);

    // Moments, per ghost batch when there are virtual batches: the input is
    // reshaped to (v, B/v, …) and dimension 1 is kept.
    let (mean, var, groups) = match cfg.virtual_batch_size {
        Some(v) => {
            let batch = shape[0];
            if batch % v != 0 {
                return Err(Error::InvalidArgument(format!(
                    "batch norm: virtual_batch_size {v} does not divide the batch size {batch}"
                )));
            }
            let g = batch / v;
            let mut shape_r = vec![v, g];
            shape_r.extend_from_slice(&shape[1..]);
            let reduced: Vec<bool> = (0..shape_r.len())
                .map(|i| i != 1 && i != axis + 1)
                .collect();
            let (m, s) = moments(x, &shape_r, &reduced, threads);
            (m, s, g)
        }
        None => {
            let reduced: Vec<bool> = (0..shape.len()).map(|i| i != axis).collect();
            let stats = || moments(x, shape, &reduced, threads);
            let (m, s) = if moments_on_one_thread(x, shape, &reduced) {
                // One thread streams the rows; another faults in y meanwhile.
                par::prefault_while(y, stats)
            } else {
                stats()
            };
            (m, s, 1)
        }
    };
    // One update per step from the average over ghost batches
    // (tf.reduce_mean over dimension 1 of the keepdims moments).
    let (new_mean, new_var) = if cfg.virtual_batch_size.is_some() {
        let avg = |v: &[T]| moments(v, &[groups, c], &[true, false], threads).0;
        (avg(&mean), avg(&var))
    } else {
        (mean.clone(), var.clone())
    };

    let gamma = gamma_of(cfg, p)?;
    let beta = beta_of(cfg, p)?;
    let mut renorm_state = None;
    let (q, s) = match &cfg.renorm {
        Some(rn) => {
            let st = p.renorm.as_ref().ok_or_else(|| {
                mismatch(
                    "renorm",
                    "renorm is on but moving_stddev / renorm_mean / renorm_stddev were not given"
                        .into(),
                )
            })?;
            let t = renorm_terms(cfg, rn, st, &new_mean, &new_var);
            let g2: Vec<T> = match gamma {
                Some(g) => t.r.iter().zip(g).map(|(&r, &g)| r.mul(g)).collect(),
                None => t.r.clone(),
            };
            let mut b2: Vec<T> = match gamma {
                Some(g) => t.d.iter().zip(g).map(|(&d, &g)| d.mul(g)).collect(),
                None => t.d.clone(),
            };
            if let Some(b) = beta {
                for (x, &bb) in b2.iter_mut().zip(b) {
                    *x = x.add(bb);
                }
            }
            renorm_state = Some((rn, st, t));
            f2_factors(&mean, &var, Some(&g2), Some(&b2), eps, c)
        }
        None => f2_factors(&mean, &var, gamma, beta, eps, c),
    };
    if groups > 1 {
        let per = x.len() / shape[0].max(1);
        T::apply_f2_ghost(x, y, &q, &s, per, groups, (c, l.b));
    } else {
        T::apply_f2(x, y, &q, &s, (c, l.b));
    }

    // Moving statistics.
    let m = cfg.momentum;
    let keras3 = |old: &[T], new: &[T], m: f64| -> Vec<T> {
        let (a, b) = (T::from_f64(m), T::from_f64(1.0 - m));
        old.iter()
            .zip(new)
            .map(|(&o, &n)| o.mul(a).add(n.mul(b)))
            .collect()
    };
    let assign_sub = |old: &[T], new: &[T], m: f64| -> Vec<T> {
        // tf.convert_to_tensor(1.0 - m) is float32, cast to the variable's type.
        let decay = T::from_f64(decay_python(m) as f64);
        old.iter()
            .zip(new)
            .map(|(&o, &n)| o.sub(o.sub(n).mul(decay)))
            .collect()
    };
    let keras3_form = match (cfg.api, cfg.nn_update) {
        (BnApi::Nn, Some(form)) => form == MovingUpdate::Interpolate,
        (api, _) => api == BnApi::Keras3,
    };
    let update = |old: &[T], new: &[T], m: f64| -> Vec<T> {
        if keras3_form {
            keras3(old, new, m)
        } else {
            assign_sub(old, new, m)
        }
    };
    let (moving_mean, moving_variance, renorm) = match (cfg.api, renorm_state) {
        (BnApi::Nn, _) if cfg.nn_update.is_none() => {
            (p.moving_mean.clone(), p.moving_variance.clone(), None)
        }
        (_, None) => (
            update(&p.moving_mean, &new_mean, m),
            update(&p.moving_variance, &new_var, m),
            None,
        ),
        (_, Some((rn, st, t))) => {
            let rm = rn.renorm_momentum;
            let renorm_mean = update(&st.renorm_mean, &new_mean, rm);
            let renorm_stddev = update(&st.renorm_stddev, &t.stddev, rm);
            let moving_mean = update(&p.moving_mean, &new_mean, m);
            let moving_stddev = update(&st.moving_stddev, &t.stddev, m);
            let moving_variance = moving_stddev
                .iter()
                .map(|&s| s.mul(s).sub(eps).relu())
                .collect();
            (
                moving_mean,
                moving_variance,
                Some(RenormState {
                    moving_stddev,
                    renorm_mean,
                    renorm_stddev,
                }),
            )
        }
    };
    Ok(TrainingStats {
        batch_mean: new_mean,
        batch_variance: new_var,
        moving_mean,
        moving_variance,
        renorm,
    })
}
