//! The native side of a verify run: the configuration per input type and
//! injected fault, and the layer's outputs in the form TF gives them.

use super::*;

/// The native side's configuration under an injected fault.
pub(super) fn faulty_config(cfg: &BnConfig, fault: Option<Fault>) -> BnConfig {
    let mut c = cfg.clone();
    match fault {
        Some(Fault::Epsilon) => c.epsilon *= 10.0,
        Some(Fault::Momentum) => c.momentum = 1.0 - c.momentum,
        _ => {}
    }
    c
}

/// The configuration both sides run for inputs of `dtype`.
///
/// A `fused = true` that tfbn read from the graph says that the fused kernel
/// ran for the layer's own (`float32`) inputs, not that `fused=True` was
/// passed: fed `float64`, such a layer takes the non-fused path (tf_keras's
/// `_fused_can_be_used`), so for `float64` it becomes "TF decides". A
/// `fused = true` from the Keras config or a flag is the layer's argument
/// and stays (TF then raises: not applicable).
pub(super) fn config_for_dtype(
    cfg: &BnConfig,
    p: &PreparedLayer,
    dtype: FloatDType,
    notes: &mut Vec<String>,
) -> BnConfig {
    let mut c = cfg.clone();
    let observed = matches!(
        p.hyper.fused.source,
        crate::hyper::HyperSource::Graph { .. }
    );
    if dtype == FloatDType::F64 && c.fused == Some(true) && observed {
        c.fused = None;
        let note = "float64: fused=true was read from the graph (the kernel that ran for float32),                     so TF's rule decides (non-fused for float64)"
            .to_string();
        if !notes.contains(&note) {
            notes.push(note);
        }
    }
    c
}

/// A training step as TF gives it: `y`, and the statistics named as in
/// [`TypedOutputs::stats`]; `wrap` makes a [`FloatArray`] of the
/// statistics' type.
pub(super) fn training_outputs<T>(
    cfg: &BnConfig,
    r: bn::Training<T>,
    wrap: fn(Vec<T>) -> FloatArray,
) -> TypedOutputs {
    let mut stats: Vec<(&'static str, FloatArray)> = Vec::new();
    stats.extend(r.batch_mean.map(|v| ("batch_mean", wrap(v))));
    stats.extend(r.batch_variance.map(|v| ("batch_variance", wrap(v))));
    // nn has no moving statistics, unless hand-written code updates them.
    if cfg.api != BnApi::Nn || cfg.nn_update.is_some() {
        stats.push(("moving_mean", wrap(r.moving_mean)));
        stats.push(("moving_variance", wrap(r.moving_variance)));
    }
    if let Some(rn) = r.renorm {
        stats.push(("moving_stddev", wrap(rn.moving_stddev)));
        stats.push(("renorm_mean", wrap(rn.renorm_mean)));
        stats.push(("renorm_stddev", wrap(rn.renorm_stddev)));
    }
    TypedOutputs { y: r.y, stats }
}

/// Native outputs in the same form as TF's: `y` in the input's type, the
/// statistics in `float32` (`float64` for a `float64` input, whose layer
/// holds `float64` variables).
pub(super) fn native_outputs(
    cfg: &BnConfig,
    params: &BnParams,
    x: &FloatArray,
    shape: &[usize],
    training: bool,
) -> Result<TypedOutputs> {
    let input = x
        .reshaped(shape)
        .map_err(|e| Error::InvalidArgument(format!("input shape {shape:?}: {e}")))?;
    if let FloatArray::F64(a) = &input {
        let p64 = params.to_f64();
        if !training {
            let y = bn::inference_f64(cfg, &p64, a.view())?;
            return Ok(TypedOutputs {
                y: FloatArray::F64(y),
                stats: Vec::new(),
            });
        }
        let r = bn::training_f64(cfg, &p64, a.view())?;
        return Ok(training_outputs(cfg, r, |v| {
            FloatArray::F64(ndarray::Array1::from(v).into_dyn())
        }));
    }
    if !training {
        let r = bn::inference(cfg, params, &input)?;
        return Ok(TypedOutputs {
            y: r.y,
            stats: Vec::new(),
        });
    }
    let r = bn::training(cfg, params, &input)?;
    Ok(training_outputs(cfg, r, |v| {
        FloatArray::F32(ndarray::Array1::from(v).into_dyn())
    }))
}

/// The Bessel fault: re-averages the native moving variance with the other
/// variance convention, `new' = new + w·v_biased·(k' − k)`.
pub(super) fn inject_bessel(
    out: &mut TypedOutputs,
    cfg: &BnConfig,
    path_fused: bool,
    rows: usize,
    x_var_biased: &[f64],
) {
    let Some((_, mv)) = out.stats.iter_mut().find(|(n, _)| *n == "moving_variance") else {
        return;
    };
    let w = match (cfg.api, path_fused) {
        (BnApi::Keras3, _) => 1.0 - cfg.momentum,
        _ => bn::decay_python(cfg.momentum) as f64,
    };
    let bessel = rows as f64 / (rows.max(2) - 1) as f64;
    // Fused keeps the corrected variance: make it biased; else the reverse.
    let dk = if path_fused {
        1.0 - bessel
    } else {
        bessel - 1.0
    };
    let shift = |v: f64, b: f64| v + w * b * dk;
    match mv {
        FloatArray::F32(v) => v
            .iter_mut()
            .zip(x_var_biased)
            .for_each(|(v, &b)| *v = shift(*v as f64, b) as f32),
        FloatArray::F64(v) => v
            .iter_mut()
            .zip(x_var_biased)
            .for_each(|(v, &b)| *v = shift(*v, b)),
        // Statistics are never 16-bit.
        FloatArray::F16(_) | FloatArray::BF16(_) => {}
    }
}
