//! One layer in one mode and type: TF's graph and the native layer run on
//! every input case, compared element by element, diagnosed where they differ.

use super::*;

/// Which row of the report a run fills: mode, input type and TF's kernel.
#[derive(Debug, Clone, Copy)]
pub(super) struct Row {
    pub(super) mode: Mode,
    pub(super) dtype: FloatDType,
    pub(super) path: Option<crate::tf::bn::TfPath>,
}

impl Row {
    pub(super) fn error(self, status: Status, why: impl Into<String>) -> ModeReport {
        ModeReport::error(self.mode, self.dtype, self.path, status, why.into())
    }
}

/// True when TF refused to build a graph because of its element type: an
/// op's type constraint (`not in the list of allowed values`) or no kernel
/// registered for it.
pub(super) fn refuses_dtype(e: &Error) -> bool {
    let m = e.to_string();
    m.contains("not in the list of allowed values")
        || m.contains("No OpKernel was registered")
        || m.contains("Could not find device for node")
}

/// Compares two outputs of the same type.
pub(super) fn compare_vecs(
    tf: &FloatArray,
    native: &FloatArray,
    layout: ChannelLayout,
) -> Result<Comparison> {
    match (tf, native) {
        (FloatArray::F32(a), FloatArray::F32(b)) => compare(&flat(a), &flat(b), layout),
        (FloatArray::F16(a), FloatArray::F16(b)) => compare(&flat(a), &flat(b), layout),
        (FloatArray::BF16(a), FloatArray::BF16(b)) => compare(&flat(a), &flat(b), layout),
        (FloatArray::F64(a), FloatArray::F64(b)) => compare(&flat(a), &flat(b), layout),
        (a, b) => Err(Error::InvalidArgument(format!(
            "TF gave {} values, the native side {}",
            a.dtype().name(),
            b.dtype().name()
        ))),
    }
}

/// One compared output: name, TF's values, the native values, layout.
type OutputPair<'a> = (
    &'static str,
    &'a FloatArray,
    Option<&'a FloatArray>,
    ChannelLayout,
);

/// The outputs compared, in report order: only what TF exposes (TF always
/// gives `y`).
pub(super) fn output_pairs<'a>(
    tf: &'a TypedOutputs,
    nat: &'a TypedOutputs,
    y_layout: ChannelLayout,
    c: usize,
) -> Vec<OutputPair<'a>> {
    let mut out = vec![("y", &tf.y, Some(&nat.y), y_layout)];
    for (name, v) in &tf.stats {
        out.push((name, v, nat.stat(name), ChannelLayout::last(c)));
    }
    out
}

/// Generates a case's input in `dtype` (the `f64` recipe rounded once).
pub(super) fn case_input(
    case: InputCase,
    shape: &[usize],
    axis: usize,
    dtype: FloatDType,
    seed: u64,
    salt: u64,
) -> FloatArray {
    FloatArray::from_f64(dtype, &inputs::generate_f64(case, shape, axis, seed, salt))
}

/// Diagnosis view of one side's outputs (`f32`; `float64` rounded).
pub(super) struct DiagSide {
    y: Vec<f32>,
    moving_mean: Option<Vec<f32>>,
    moving_variance: Option<Vec<f32>>,
}

impl DiagSide {
    fn of(o: &TypedOutputs) -> DiagSide {
        let stat = |n: &str| o.stat(n).map(FloatArray::to_f32_lossy);
        DiagSide {
            y: o.y.to_f32_lossy(),
            moving_mean: stat("moving_mean"),
            moving_variance: stat("moving_variance"),
        }
    }

    fn view(&self) -> SideOutputs<'_> {
        SideOutputs {
            y: &self.y,
            moving_mean: self.moving_mean.as_deref(),
            moving_variance: self.moving_variance.as_deref(),
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn run_mode(
    rt: &TfRuntime,
    p: &PreparedLayer,
    cfg: &BnConfig,
    graph: &TfBatchNorm,
    shape: &[usize],
    axis: usize,
    row: Row,
    settings: &VerifySettings,
    tolerance: Tolerance,
    build_ms: f64,
) -> Result<ModeReport> {
    let training = row.mode == Mode::Training;
    let native_cfg = faulty_config(cfg, settings.inject_fault);
    let salt = inputs::name_salt(&p.layer.name);
    let c = shape[axis];
    let rows = shape.iter().product::<usize>() / c.max(1);
    let y_layout = ChannelLayout::of(shape, axis);
    let mut outputs: Vec<OutputReport> = Vec::new();
    let mut cases = Vec::new();
    let mut causes: Vec<Cause> = Vec::new();
    let mut evidence: Option<(FloatArray, TypedOutputs, TypedOutputs)> = None;
    let (mut tf_ms, mut native_ms) = (build_ms, 0.0);
    for &case in &settings.cases {
        let x = case_input(case, shape, axis, row.dtype, settings.seed, salt);
        let t = Instant::now();
        let tf = match graph.feeds(&x, &p.params).and_then(|f| graph.run_typed(&f)) {
            Ok(o) => o,
            Err(e) => return Ok(row.error(Status::Error, format!("TensorFlow side: {e}"))),
        };
        tf_ms += t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let nat = native_outputs(&native_cfg, &p.params, &x, shape, training);
        native_ms += t.elapsed().as_secs_f64() * 1e3;
        let mut nat = match nat {
            Ok(o) => o,
            Err(e) => return Ok(row.error(Status::Unsupported, format!("native side: {e}"))),
        };
        if training && settings.inject_fault == Some(Fault::Bessel) {
            let fused = graph.path() == crate::tf::bn::TfPath::Fused;
            let xs = x.to_f64_vec();
            let (_, var, _) = diagnose::channel_moments(&xs, shape, axis);
            inject_bessel(&mut nat, cfg, fused, rows, &var);
        }
        if let Some(dir) = &settings.dump {
            dump_case(dir, &p.layer.name, row, case, shape, &x, &tf, &nat)?;
        }
        let mut case_ok = true;
        let mut case_equal = 0usize;
        let mut case_n = 0usize;
        for (name, t, n, layout) in output_pairs(&tf, &nat, y_layout, c) {
            let cmp = match n {
                Some(n) => compare_vecs(t, n, layout)?,
                None => {
                    return Ok(row.error(
                        Status::Unsupported,
                        format!("native side: produced no {name}, which TF does"),
                    ))
                }
            };
            case_ok &= tolerance.accepts(&cmp);
            case_equal += cmp.bitwise_equal;
            case_n += cmp.n;
            match outputs.iter_mut().find(|o| o.name == name) {
                Some(o) => o.add(&cmp, case, tolerance),
                None => outputs.push(OutputReport::new(name, &cmp, case, tolerance)),
            }
        }
        // The diagnosis reads one failing case: the normal one when it
        // fails (the best conditioned), else the first that fails.
        if !case_ok && (evidence.is_none() || case == InputCase::Normal) {
            evidence = Some((x.clone(), tf.clone(), nat.clone()));
        }
        cases.push(CaseSummary {
            case,
            bitwise_fraction: if case_n == 0 {
                1.0
            } else {
                case_equal as f64 / case_n as f64
            },
            passed: case_ok,
        });
    }
    let passed = cases.iter().all(|c| c.passed);
    if let Some((x, tf, nat)) = &evidence {
        let x = x.to_f32_lossy();
        let (tf, nat) = (DiagSide::of(tf), DiagSide::of(nat));
        let ev = Evidence {
            config: cfg,
            params: &p.params,
            x: &x,
            shape,
            axis,
            training,
            tf: tf.view(),
            native: nat.view(),
        };
        causes = diagnose::diagnose(&ev);
    }
    if !passed && causes.is_empty() {
        let max_ulp = outputs.iter().map(|o| o.max_ulp).max().unwrap_or(0);
        let max_rel = outputs.iter().map(|o| o.max_rel).fold(0.0, f64::max);
        causes.extend(diagnose::fallback(rt.host.backend, max_ulp, max_rel));
    }
    Ok(ModeReport {
        mode: row.mode,
        dtype: row.dtype,
        path: row.path,
        status: if passed { Status::Pass } else { Status::Fail },
        error: None,
        outputs,
        cases,
        causes,
        timing_ms: report::ModeTiming {
            tensorflow: tf_ms,
            native: native_ms,
        },
        assumed: Vec::new(),
    })
}
