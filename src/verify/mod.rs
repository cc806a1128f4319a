//! `tfbn verify`: runs every batch-norm layer of a checkpoint through
//! TensorFlow's own ops and through the native layer ([`crate::bn`]) on the
//! same seeded inputs and the same variables, and compares the results.
//!
//! Per layer and mode ([`Mode`]) the report ([`VerifyReport`]) gives, for
//! each output (`y`, and after a training step the batch statistics, the
//! moving statistics and the renorm variables), the bitwise-equal fraction,
//! the largest ULP distance, absolute and relative error and the worst
//! channel, over every input case ([`InputCase`]); the verdict against the
//! tolerance ([`default_tolerance`] unless given); and, where a layer fails,
//! the likely cause ([`diagnose`]).
//!
//! Both sides run the same configuration ([`crate::prepare::prepare_layer`]:
//! the recovered hyper-parameters, the API the naming style implies, the
//! caller's overrides). A deliberate fault can be injected into the native
//! side only ([`Fault`]) to check that failures are caught and named.

pub mod diagnose;
pub mod inputs;
mod report;

use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::{ArrayD, IxDyn};

pub use inputs::InputCase;
pub use report::{
    CaseSummary, HyperJson, LayerReport, ModeReport, OutputReport, Status, Summary, Timing,
    VerifyReport, SCHEMA_VERSION,
};

use crate::bn::{self, BnApi, BnConfig, BnInput, BnParams};
use crate::error::{Error, Result};
use crate::layers::{self, BnLayer};
use crate::npy::{write_npy, NpyArray};
use crate::parity::{compare, ChannelLayout, Tolerance};
use crate::prepare::{prepare_layer, Overrides, PreparedLayer};
use crate::source::Source;
use crate::tf::bn::{tf_path, TfBatchNorm, TfBnOutputs};
use crate::tf::{Backend, LoadOptions, TfRuntime};
use diagnose::{Cause, Evidence, SideOutputs};

/// Inference (moving statistics) or training (batch statistics and one
/// update of the moving statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `training=False`.
    Inference,
    /// `training=True`, one step.
    Training,
}

impl Mode {
    /// `inference` or `training`.
    pub fn label(self) -> &'static str {
        match self {
            Mode::Inference => "inference",
            Mode::Training => "training",
        }
    }
}

/// A fault injected into the native side only, to check that verify catches
/// and names it (a self-test; `--inject-fault`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The native side uses 10× the layer's epsilon.
    Epsilon,
    /// The native side takes the momentum in PyTorch's convention
    /// (`1 − m`).
    Momentum,
    /// The native side's moving variance averages the batch variance with
    /// the other Bessel convention (biased ↔ corrected).
    Bessel,
}

impl Fault {
    /// Parses `epsilon`, `momentum` or `bessel`.
    pub fn parse(s: &str) -> Option<Fault> {
        match s.trim().to_ascii_lowercase().as_str() {
            "epsilon" => Some(Fault::Epsilon),
            "momentum" => Some(Fault::Momentum),
            "bessel" => Some(Fault::Bessel),
            _ => None,
        }
    }
}

/// The input shape: the spatial dimensions between batch and channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spatial {
    /// Per layer: `[N, C]` for a tf_keras / v1 layer that ran non-fused
    /// without renorm (a dense layer), else `[N, 5, 6, C]` (channels where
    /// the layer's axis says).
    Auto,
    /// These dimensions (empty: `[N, C]`; `[H, W]`: 4-D; `[D, H, W]`: 5-D).
    Dims(Vec<usize>),
}

/// What to verify and how.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifySettings {
    /// Layers to verify (names or object paths); empty: all.
    pub layers: Vec<String>,
    /// Modes to run. Default both.
    pub modes: Vec<Mode>,
    /// Hyper-parameter and API overrides, applied to both sides.
    pub overrides: Overrides,
    /// TF's backend. Default [`Backend::Eigen`].
    pub backend: Backend,
    /// The verdict's tolerance; `None`: [`default_tolerance`] of the backend
    /// (per layer).
    pub tolerance: Option<Tolerance>,
    /// Batch size `N`. Default 4.
    pub batch: usize,
    /// Spatial dimensions. Default [`Spatial::Auto`].
    pub spatial: Spatial,
    /// Seed of the inputs. Default 0.
    pub seed: u64,
    /// Input cases; empty (the default): [`default_cases`] of the backend.
    pub cases: Vec<InputCase>,
    /// Write inputs and both sides' outputs as `.npy` here.
    pub dump: Option<PathBuf>,
    /// Self-test: break the native side on purpose.
    pub inject_fault: Option<Fault>,
    /// Where to find TensorFlow.
    pub tf_lib: Option<PathBuf>,
}

impl Default for VerifySettings {
    fn default() -> Self {
        VerifySettings {
            layers: Vec::new(),
            modes: vec![Mode::Inference, Mode::Training],
            overrides: Overrides::default(),
            backend: Backend::Eigen,
            tolerance: None,
            batch: 4,
            spatial: Spatial::Auto,
            seed: 0,
            cases: Vec::new(),
            dump: None,
            inject_fault: None,
            tf_lib: None,
        }
    }
}

/// The oneDNN budget in ULPs of each output's largest magnitude
/// ([`Tolerance::UlpOfMax`]) for a layer with `R` values per channel:
/// `max(64, 2·⌈√R⌉)`.
///
/// oneDNN normalises with `γ/√(var+ε)` instead of Eigen's `rsqrt`, and sums
/// the batch statistics per thread in another order, so outputs move by a
/// few ULPs of their scale, growing with the length of the sums like a
/// random walk. Measured on every fixture (AMD EPYC, AVX2, 2 threads,
/// TF 2.21; `normal` and `tiny` inputs): at most 2 in inference; in training
/// 6 at R = 120 (the default shape), 49 at R = 12 544, 101 at R = 100 352,
/// 279 at R = 200 704 (about 0.3–0.6·√R). An element-wise ULP budget cannot
/// work: where `y` crosses zero its own ULP is tiny (thousands of ULPs apart
/// on `normal` inputs).
pub fn onednn_budget(rows: usize) -> u64 {
    let root = (rows as f64).sqrt().ceil() as u64;
    (2 * root).max(64)
}

/// The default verdict for a layer with `rows` values per channel:
/// [`Tolerance::Exact`] for Eigen (the native layer reproduces it bit for
/// bit), [`Tolerance::UlpOfMax`]`(`[`onednn_budget`]`(rows))` for oneDNN.
pub fn default_tolerance(backend: Backend, rows: usize) -> Tolerance {
    match backend {
        Backend::Eigen => Tolerance::Exact,
        Backend::OneDnn => Tolerance::UlpOfMax(onednn_budget(rows)),
    }
}

/// How the report names the tolerance: the one given, else the default rule.
fn tolerance_label(backend: Backend, given: Option<Tolerance>) -> String {
    match (given, backend) {
        (Some(t), _) => t.to_string(),
        (None, Backend::Eigen) => Tolerance::Exact.to_string(),
        (None, Backend::OneDnn) => "ulp-of-max:max(64,2*sqrt(R))".into(),
    }
}

/// The default input cases: all of them for Eigen; [`InputCase::Normal`]
/// and [`InputCase::Tiny`] for oneDNN, whose training results on the
/// ill-conditioned cases differ from Eigen's as much as the conditioning
/// allows (measured: `y` 4·10⁴ ULPs of its scale apart at a 10⁴ offset,
/// 5·10⁵ on near-constant channels), which no budget separates from a real
/// fault. Ask for them with `--cases` to see the numbers.
pub fn default_cases(backend: Backend) -> Vec<InputCase> {
    match backend {
        Backend::Eigen => InputCase::ALL.to_vec(),
        Backend::OneDnn => vec![InputCase::Normal, InputCase::Tiny],
    }
}

/// Loads TensorFlow with the settings' backend and verifies `source`.
pub fn verify(source: &Source, settings: &VerifySettings) -> Result<VerifyReport> {
    let t0 = Instant::now();
    let rt = crate::tf::load(&LoadOptions {
        tf_lib: settings.tf_lib.clone(),
        backend: Some(settings.backend),
    })?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let mut report = verify_with(rt, source, settings)?;
    report.timing.load_tf_ms = load_ms;
    report.timing.total_ms = t0.elapsed().as_secs_f64() * 1e3;
    Ok(report)
}

/// [`verify`] with a loaded runtime.
pub fn verify_with(
    rt: &TfRuntime,
    source: &Source,
    settings: &VerifySettings,
) -> Result<VerifyReport> {
    if settings.batch == 0 {
        return Err(Error::InvalidArgument("--batch must be at least 1".into()));
    }
    if settings.modes.is_empty() {
        return Err(Error::InvalidArgument("nothing to verify: no modes".into()));
    }
    let case_list = if settings.cases.is_empty() {
        default_cases(rt.host.backend)
    } else {
        settings.cases.clone()
    };
    let settings = &VerifySettings {
        cases: case_list,
        ..settings.clone()
    };
    let all = layers::discover(source);
    let selected: Vec<&BnLayer> = if settings.layers.is_empty() {
        all.iter().collect()
    } else {
        settings
            .layers
            .iter()
            .map(|name| {
                layers::find(&all, name).ok_or_else(|| Error::LayerNotFound {
                    name: name.clone(),
                    known: all
                        .iter()
                        .map(|l| l.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            })
            .collect::<Result<_>>()?
    };
    let hypers = crate::hyper::recover(source, &all)?;
    let mut layer_reports = Vec::new();
    for layer in selected {
        let idx = all.iter().position(|l| l == layer).unwrap_or(0);
        let hyper = hypers
            .get(idx)
            .cloned()
            .unwrap_or_else(|| crate::hyper::LayerHyper::defaults(layer));
        let prepared = prepare_layer(source, layer, &hyper, &settings.overrides);
        layer_reports.push(match prepared {
            Ok(p) => verify_layer(rt, &p, settings)?,
            Err(e) => LayerReport::unsupported(layer, e.to_string()),
        });
    }
    let summary = Summary::of(&layer_reports);
    Ok(VerifyReport {
        schema: SCHEMA_VERSION,
        path: source.path().to_string_lossy().into_owned(),
        style: source.style(),
        host: rt.host.clone(),
        tolerance: tolerance_label(rt.host.backend, settings.tolerance),
        seed: settings.seed,
        batch: settings.batch,
        cases: settings.cases.clone(),
        injected_fault: settings.inject_fault,
        // Nothing verified is not a pass.
        passed: summary.failed == 0 && summary.layers > 0,
        summary,
        layers: layer_reports,
        timing: Timing::default(),
    })
}

/// The input shape of a layer.
fn input_shape(p: &PreparedLayer, settings: &VerifySettings) -> Result<(Vec<usize>, usize)> {
    let c = usize::try_from(p.layer.channels)
        .map_err(|_| Error::InvalidArgument(format!("{}: too many channels", p.layer.name)))?;
    let spatial: Vec<usize> = match &settings.spatial {
        Spatial::Dims(d) => d.clone(),
        Spatial::Auto => {
            let dense = matches!(p.config.api, BnApi::TfKeras | BnApi::Tf1Layers)
                && p.config.fused == Some(false)
                && p.config.renorm.is_none();
            if dense {
                Vec::new()
            } else {
                vec![5, 6]
            }
        }
    };
    let rank = spatial.len() + 2;
    let axis = channel_axis(p.config.axis).rem_euclid(rank as isize) as usize;
    let mut shape = vec![settings.batch];
    shape.extend_from_slice(&spatial);
    shape.insert(axis, c);
    Ok((shape, axis))
}

/// The layer's channel axis for an input of any rank: 1 stays channels-first;
/// every other axis is taken as channels-last (−1). A recovered axis is
/// normalized for the layer's own rank (3 for NHWC), which would name
/// another dimension of a 2-D or 5-D verify input.
fn channel_axis(axis: isize) -> isize {
    if axis == 1 {
        1
    } else {
        -1
    }
}

fn layer_hyper_json(p: &PreparedLayer, cfg: &BnConfig) -> HyperJson {
    HyperJson {
        epsilon: p.config.epsilon,
        epsilon_source: p.hyper.epsilon.source.to_string(),
        momentum: p.config.momentum,
        momentum_source: p.hyper.momentum.source.to_string(),
        axis: cfg.axis as i64,
        center: p.config.center,
        scale: p.config.scale,
        fused: p.config.fused,
        renorm: p.config.renorm.is_some(),
    }
}

fn verify_layer(
    rt: &TfRuntime,
    p: &PreparedLayer,
    settings: &VerifySettings,
) -> Result<LayerReport> {
    let mut notes = p.notes.clone();
    let (shape, axis) = match input_shape(p, settings) {
        Ok(s) => s,
        Err(e) => return Ok(LayerReport::unsupported(&p.layer, e.to_string())),
    };
    let rows = shape.iter().product::<usize>() / shape[axis].max(1);
    let tolerance = settings
        .tolerance
        .unwrap_or_else(|| default_tolerance(rt.host.backend, rows));
    let mut cfg = p.config.clone();
    cfg.axis = channel_axis(cfg.axis);
    cfg.intra_op_threads = Some(rt.host.threads);
    let path = tf_path(&cfg, shape.len(), axis).ok();
    if p.params.moving_mean.is_empty() {
        notes.push("the layer has no channels".into());
    }
    let mut modes = Vec::new();
    for &mode in &settings.modes {
        let training = mode == Mode::Training;
        let t_tf = Instant::now();
        let graph = TfBatchNorm::new(rt, &cfg, &shape, training, &p.params);
        let build_ms = t_tf.elapsed().as_secs_f64() * 1e3;
        let graph = match graph {
            Ok(g) => g,
            Err(e) => {
                modes.push(ModeReport::error(
                    mode,
                    Status::Unsupported,
                    format!("TensorFlow side: {e}"),
                ));
                continue;
            }
        };
        modes.push(run_mode(
            rt, p, &cfg, &graph, &shape, axis, mode, settings, tolerance, build_ms,
        )?);
    }
    let passed = modes.iter().all(|m| m.status == Status::Pass);
    Ok(LayerReport {
        name: p.layer.name.clone(),
        api: p.api,
        api_source: p.api_source.to_string(),
        path,
        channels: p.layer.channels,
        input_shape: shape,
        hyper: layer_hyper_json(p, &cfg),
        tolerance,
        notes,
        passed,
        modes,
    })
}

/// The native side's configuration under an injected fault.
fn faulty_config(cfg: &BnConfig, fault: Option<Fault>) -> BnConfig {
    let mut c = cfg.clone();
    match fault {
        Some(Fault::Epsilon) => c.epsilon *= 10.0,
        Some(Fault::Momentum) => c.momentum = 1.0 - c.momentum,
        _ => {}
    }
    c
}

/// Native outputs in the same form as TF's.
fn native_outputs(
    cfg: &BnConfig,
    params: &BnParams,
    x: &[f32],
    shape: &[usize],
    training: bool,
) -> Result<TfBnOutputs> {
    let arr = ArrayD::from_shape_vec(IxDyn(shape), x.to_vec())
        .map_err(|e| Error::InvalidArgument(format!("input shape {shape:?}: {e}")))?;
    let input = BnInput::F32(arr);
    let y_of = |y: BnInput| -> Result<Vec<f32>> {
        match y {
            BnInput::F32(a) => Ok(a.iter().copied().collect()),
            other => Err(Error::InvalidArgument(format!(
                "the native layer returned {} for a float32 input",
                other.dtype_name()
            ))),
        }
    };
    if !training {
        let r = bn::inference(cfg, params, &input)?;
        return Ok(TfBnOutputs {
            y: y_of(r.y)?,
            batch_mean: None,
            batch_variance: None,
            moving_mean: None,
            moving_variance: None,
            renorm: None,
        });
    }
    let r = bn::training(cfg, params, &input)?;
    let nn = cfg.api == BnApi::Nn;
    Ok(TfBnOutputs {
        y: y_of(r.y)?,
        batch_mean: r.batch_mean,
        batch_variance: r.batch_variance,
        moving_mean: (!nn).then_some(r.moving_mean),
        moving_variance: (!nn).then_some(r.moving_variance),
        renorm: r.renorm,
    })
}

/// The Bessel fault: re-averages the native moving variance with the other
/// variance convention, `new' = new + w·v_biased·(k' − k)`.
fn inject_bessel(
    out: &mut TfBnOutputs,
    cfg: &BnConfig,
    path_fused: bool,
    rows: usize,
    x_var_biased: &[f64],
) {
    let Some(mv) = out.moving_variance.as_mut() else {
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
    for (v, &b) in mv.iter_mut().zip(x_var_biased) {
        *v = (*v as f64 + w * b * dk) as f32;
    }
}

fn biased_var(x: &[f32], shape: &[usize], axis: usize) -> Vec<f64> {
    let l = ChannelLayout::of(shape, axis);
    let c = l.channels.max(1);
    let mut sum = vec![0.0f64; c];
    let mut n = vec![0usize; c];
    let ch = |i: usize| (i / l.inner.max(1)) % c;
    for (i, &v) in x.iter().enumerate() {
        sum[ch(i)] += v as f64;
        n[ch(i)] += 1;
    }
    let mean: Vec<f64> = sum
        .iter()
        .zip(&n)
        .map(|(s, &k)| s / k.max(1) as f64)
        .collect();
    let mut sq = vec![0.0f64; c];
    for (i, &v) in x.iter().enumerate() {
        let d = v as f64 - mean[ch(i)];
        sq[ch(i)] += d * d;
    }
    sq.iter()
        .zip(&n)
        .map(|(s, &k)| s / k.max(1) as f64)
        .collect()
}

/// One compared output: name, TF's values, the native values, layout.
type OutputPair<'a> = (
    &'static str,
    Option<&'a [f32]>,
    Option<&'a [f32]>,
    ChannelLayout,
);

/// The outputs compared, in report order.
fn output_pairs<'a>(
    tf: &'a TfBnOutputs,
    nat: &'a TfBnOutputs,
    y_layout: ChannelLayout,
    c: usize,
) -> Vec<OutputPair<'a>> {
    let v = ChannelLayout::last(c);
    let s = |o: &'a Option<Vec<f32>>| o.as_deref();
    let mut out = vec![
        ("y", Some(tf.y.as_slice()), Some(nat.y.as_slice()), y_layout),
        ("batch_mean", s(&tf.batch_mean), s(&nat.batch_mean), v),
        (
            "batch_variance",
            s(&tf.batch_variance),
            s(&nat.batch_variance),
            v,
        ),
        ("moving_mean", s(&tf.moving_mean), s(&nat.moving_mean), v),
        (
            "moving_variance",
            s(&tf.moving_variance),
            s(&nat.moving_variance),
            v,
        ),
    ];
    if let (Some(a), Some(b)) = (&tf.renorm, &nat.renorm) {
        out.push((
            "moving_stddev",
            Some(&a.moving_stddev),
            Some(&b.moving_stddev),
            v,
        ));
        out.push(("renorm_mean", Some(&a.renorm_mean), Some(&b.renorm_mean), v));
        out.push((
            "renorm_stddev",
            Some(&a.renorm_stddev),
            Some(&b.renorm_stddev),
            v,
        ));
    } else if tf.renorm.is_some() || nat.renorm.is_some() {
        let (a, b) = (tf.renorm.as_ref(), nat.renorm.as_ref());
        out.push((
            "moving_stddev",
            a.map(|r| r.moving_stddev.as_slice()),
            b.map(|r| r.moving_stddev.as_slice()),
            v,
        ));
    }
    // Only what TF exposes is compared; TF always gives y.
    out.retain(|(_, t, _, _)| t.is_some());
    out
}

#[allow(clippy::too_many_arguments)]
fn run_mode(
    rt: &TfRuntime,
    p: &PreparedLayer,
    cfg: &BnConfig,
    graph: &TfBatchNorm,
    shape: &[usize],
    axis: usize,
    mode: Mode,
    settings: &VerifySettings,
    tolerance: Tolerance,
    build_ms: f64,
) -> Result<ModeReport> {
    let training = mode == Mode::Training;
    let native_cfg = faulty_config(cfg, settings.inject_fault);
    let salt = inputs::name_salt(&p.layer.name);
    let c = shape[axis];
    let rows = shape.iter().product::<usize>() / c.max(1);
    let y_layout = ChannelLayout::of(shape, axis);
    let mut outputs: Vec<OutputReport> = Vec::new();
    let mut cases = Vec::new();
    let mut causes: Vec<Cause> = Vec::new();
    let mut evidence: Option<(Vec<f32>, TfBnOutputs, TfBnOutputs)> = None;
    let (mut tf_ms, mut native_ms) = (build_ms, 0.0);
    for &case in &settings.cases {
        let x = inputs::generate(case, shape, axis, settings.seed, salt);
        let t = Instant::now();
        let tf = match graph.run(&x, &p.params) {
            Ok(o) => o,
            Err(e) => {
                return Ok(ModeReport::error(
                    mode,
                    Status::Error,
                    format!("TensorFlow side: {e}"),
                ))
            }
        };
        tf_ms += t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let nat = native_outputs(&native_cfg, &p.params, &x, shape, training);
        native_ms += t.elapsed().as_secs_f64() * 1e3;
        let mut nat = match nat {
            Ok(o) => o,
            Err(e) => {
                return Ok(ModeReport::error(
                    mode,
                    Status::Unsupported,
                    format!("native side: {e}"),
                ));
            }
        };
        if training && settings.inject_fault == Some(Fault::Bessel) {
            let fused = graph.path() == crate::tf::bn::TfPath::Fused;
            inject_bessel(&mut nat, cfg, fused, rows, &biased_var(&x, shape, axis));
        }
        if let Some(dir) = &settings.dump {
            dump_case(dir, &p.layer.name, mode, case, shape, &x, &tf, &nat)?;
        }
        let mut case_ok = true;
        let mut case_equal = 0usize;
        let mut case_n = 0usize;
        for (name, t, n, layout) in output_pairs(&tf, &nat, y_layout, c) {
            let cmp = match n {
                Some(n) => compare(t.unwrap_or(&[]), n, layout)?,
                None => {
                    return Ok(ModeReport::error(
                        mode,
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
        let ev = Evidence {
            config: cfg,
            params: &p.params,
            x,
            shape,
            axis,
            training,
            tf: SideOutputs {
                y: &tf.y,
                moving_mean: tf.moving_mean.as_deref(),
                moving_variance: tf.moving_variance.as_deref(),
            },
            native: SideOutputs {
                y: &nat.y,
                moving_mean: nat.moving_mean.as_deref(),
                moving_variance: nat.moving_variance.as_deref(),
            },
        };
        causes = diagnose::diagnose(&ev);
    }
    if !passed && causes.is_empty() {
        let max_ulp = outputs.iter().map(|o| o.max_ulp).max().unwrap_or(0);
        let max_rel = outputs.iter().map(|o| o.max_rel).fold(0.0, f64::max);
        causes.extend(diagnose::fallback(rt.host.backend, max_ulp, max_rel));
    }
    Ok(ModeReport {
        mode,
        status: if passed { Status::Pass } else { Status::Fail },
        error: None,
        outputs,
        cases,
        causes,
        timing_ms: report::ModeTiming {
            tensorflow: tf_ms,
            native: native_ms,
        },
    })
}

/// `<layer name with / → __>`.
fn layer_dir(name: &str) -> String {
    name.replace('/', "__")
}

#[allow(clippy::too_many_arguments)]
fn dump_case(
    dir: &Path,
    layer: &str,
    mode: Mode,
    case: InputCase,
    shape: &[usize],
    x: &[f32],
    tf: &TfBnOutputs,
    nat: &TfBnOutputs,
) -> Result<()> {
    let d = dir
        .join(layer_dir(layer))
        .join(mode.label())
        .join(case.label());
    std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
    let write = |name: &str, dims: &[usize], v: &[f32]| -> Result<()> {
        let a = ArrayD::from_shape_vec(IxDyn(dims), v.to_vec())
            .map_err(|e| Error::InvalidArgument(format!("dump {name}: {e}")))?;
        write_npy(d.join(format!("{name}.npy")), &NpyArray::F32(a))
    };
    write("x", shape, x)?;
    for (side, o) in [("tf", tf), ("native", nat)] {
        write(&format!("{side}_y"), shape, &o.y)?;
        let stats = [
            ("batch_mean", &o.batch_mean),
            ("batch_variance", &o.batch_variance),
            ("moving_mean", &o.moving_mean),
            ("moving_variance", &o.moving_variance),
        ];
        for (name, v) in stats {
            if let Some(v) = v {
                write(&format!("{side}_{name}"), &[v.len()], v)?;
            }
        }
        if let Some(r) = &o.renorm {
            write(
                &format!("{side}_moving_stddev"),
                &[r.moving_stddev.len()],
                &r.moving_stddev,
            )?;
            write(
                &format!("{side}_renorm_mean"),
                &[r.renorm_mean.len()],
                &r.renorm_mean,
            )?;
            write(
                &format!("{side}_renorm_stddev"),
                &[r.renorm_stddev.len()],
                &r.renorm_stddev,
            )?;
        }
    }
    Ok(())
}
