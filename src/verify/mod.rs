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
mod dump;
pub mod inputs;
mod native;
pub mod own_graph;
mod report;
mod run;

use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::{ArrayD, IxDyn};

pub use inputs::InputCase;
pub use own_graph::OwnGraphRun;
pub use report::{
    CaseSummary, HyperJson, LayerReport, ModeReport, OutputReport, Status, Summary, Timing,
    VerifyReport, SCHEMA_VERSION,
};

use crate::bn::{self, BnApi, BnConfig, BnParams};
use crate::dtype::FloatDType;
use crate::dtype::{flat, FloatArray};
use crate::error::{Error, Result};
use crate::layers::{self, BnLayer};
use crate::npy::{write_npy, NpyArray};
use crate::parity::{compare, ChannelLayout, Comparison, Tolerance};
use crate::prepare::{prepare_layer, Overrides, PreparedLayer};
use crate::source::Source;
use crate::tf::bn::{dtype_not_applicable, tf_path, TfBatchNorm, TypedOutputs};
use crate::tf::{Backend, LoadOptions, TfRuntime};
use diagnose::{Cause, Evidence, SideOutputs};
use dump::*;
use native::*;
use run::*;

pub use crate::bn::Mode;

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
    fn from_label(s: &str) -> Option<Fault> {
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
    /// Element types of the inputs (`x`, `y`), each run on both sides as
    /// the API runs it in TF ([`TfBatchNorm::new_typed`]). Default
    /// `[FloatDType::F32]`; empty means the default.
    pub dtypes: Vec<FloatDType>,
    /// Write inputs and both sides' outputs as `.npy` here.
    pub dump: Option<PathBuf>,
    /// Self-test: break the native side on purpose.
    pub inject_fault: Option<Fault>,
    /// Where to find TensorFlow.
    pub tf_lib: Option<PathBuf>,
    /// Accept TF's defaults for settings nothing declared or recorded:
    /// rows that rest on them pass (and still list them in `assumed`)
    /// instead of being [`Status::Unproven`].
    pub assume_defaults: bool,
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
            dtypes: vec![FloatDType::F32],
            dump: None,
            inject_fault: None,
            tf_lib: None,
            assume_defaults: false,
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
        return Err(Error::InvalidArgument(
            "the batch size must be at least 1".into(),
        ));
    }
    if settings.modes.is_empty() {
        return Err(Error::InvalidArgument("nothing to verify: no modes".into()));
    }
    let case_list = if settings.cases.is_empty() {
        default_cases(rt.host.backend)
    } else {
        settings.cases.clone()
    };
    let mut dtypes = if settings.dtypes.is_empty() {
        vec![FloatDType::F32]
    } else {
        settings.dtypes.clone()
    };
    // Report order, once each.
    dtypes.sort();
    dtypes.dedup();
    let settings = &VerifySettings {
        cases: case_list,
        dtypes,
        ..settings.clone()
    };
    let all = crate::find::discover(source);
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
    settings.overrides.declared.check(&all)?;
    let hypers = crate::hyper::recover(source, &all)?;
    let own = own_graph::OwnContext::new(source, &all);
    let mut layer_reports = Vec::new();
    for layer in selected {
        let idx = all.iter().position(|l| l == layer).unwrap_or(0);
        let hyper = hypers
            .get(idx)
            .cloned()
            .unwrap_or_else(|| crate::hyper::LayerHyper::defaults(layer));
        let prepared = prepare_layer(source, layer, &hyper, &settings.overrides);
        layer_reports.push(match prepared {
            Ok(p) => verify_layer(rt, &p, settings, &own, source, idx)?,
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
        dtypes: settings.dtypes.clone(),
        injected_fault: settings.inject_fault,
        // Nothing verified is not a pass (not-applicable rows verify nothing),
        // and neither is a row that rests on a guess.
        passed: summary.failed == 0
            && summary.unproven == 0
            && summary.own_graph_failed == 0
            && summary.passed > 0,
        assume_defaults: settings.assume_defaults,
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
        axis_source: p.hyper.axis.source.to_string(),
        center: p.config.center,
        scale: p.config.scale,
        fused: p.config.fused,
        fused_source: p.hyper.fused.source.to_string(),
        moving_variance: Some(p.moving_variance.value),
        moving_variance_source: p.moving_variance.source.to_string(),
        renorm: p.config.renorm.is_some(),
    }
}

/// The assumed settings a row of `mode` depends on: ε, the axis and `fused`
/// always; the momentum in training, where the API keeps moving statistics.
pub fn depends_on(p: &PreparedLayer, mode: Mode) -> Vec<crate::hyper::Assumed> {
    use crate::hyper::Assumed;
    p.assumed
        .iter()
        .copied()
        .filter(|a| match a {
            Assumed::Epsilon | Assumed::Axis | Assumed::Fused => true,
            Assumed::Momentum => mode == Mode::Training && p.api != BnApi::Nn,
            Assumed::VarianceConvention => false,
        })
        .collect()
}

fn verify_layer(
    rt: &TfRuntime,
    p: &PreparedLayer,
    settings: &VerifySettings,
    own: &own_graph::OwnContext,
    source: &Source,
    layer_index: usize,
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
    if p.params.moving_mean.is_empty() {
        notes.push("the layer has no channels".into());
    }
    let mut layer_path = None;
    let mut modes = Vec::new();
    for &dtype in &settings.dtypes {
        let cfg = &config_for_dtype(&cfg, p, dtype, &mut notes);
        let path = tf_path(cfg, shape.len(), axis, dtype).ok();
        layer_path = layer_path.or(path);
        for &mode in &settings.modes {
            let row = Row { mode, dtype, path };
            if let Some(why) = dtype_not_applicable(cfg, dtype) {
                modes.push(row.error(Status::NotApplicable, why));
                continue;
            }
            let t_tf = Instant::now();
            let graph =
                TfBatchNorm::new_typed(rt, cfg, &shape, dtype, mode == Mode::Training, &p.params);
            let build_ms = t_tf.elapsed().as_secs_f64() * 1e3;
            let graph = match graph {
                Ok(g) => g,
                Err(e) => {
                    // TF's own refusal of the type (an op's type constraint,
                    // no kernel for it) means the API cannot take it.
                    let status = if refuses_dtype(&e) {
                        Status::NotApplicable
                    } else {
                        Status::Unsupported
                    };
                    modes.push(row.error(status, format!("TensorFlow side: {e}")));
                    continue;
                }
            };
            let mut m = run_mode(
                rt, p, cfg, &graph, &shape, axis, row, settings, tolerance, build_ms,
            )?;
            m.assumed = depends_on(p, mode);
            if m.status == Status::Pass && !m.assumed.is_empty() && !settings.assume_defaults {
                m.status = Status::Unproven;
            }
            modes.push(m);
        }
    }
    let (own_graph, own_graph_runs) = if settings.dtypes.contains(&FloatDType::F32) {
        let mut cfg32 = cfg.clone();
        cfg32.intra_op_threads = Some(rt.host.threads);
        own_graph::check(
            rt,
            own,
            source,
            layer_index,
            p,
            &cfg32,
            shape.len(),
            settings,
            tolerance,
        )
    } else {
        ("not runnable: float32 inputs only".to_string(), Vec::new())
    };
    if own_graph.starts_with("failed") {
        notes.push(format!(
            "the file's own graph disagrees with the settings tfbn recovered ({own_graph}); \
             declare the right epsilon, momentum, axis or variance, or check the layer's mapping"
        ));
    }
    // The file's own graph, run in a mode with the settings tfbn assumed,
    // proves them for that mode when it agrees: `y` checks ε, the axis and
    // the kernel; the compared moving statistics check the momentum.
    for m in modes.iter_mut().filter(|m| m.status == Status::Unproven) {
        let proven = own_graph_runs.iter().any(|r| {
            r.mode == m.mode
                && r.status == Status::Pass
                && (!m.assumed.contains(&crate::hyper::Assumed::Momentum)
                    || r.outputs.iter().any(|o| o.name.starts_with("moving_")))
        });
        if proven {
            m.status = Status::Pass;
            let note = format!(
                "{}: the assumed {} agree with the file's own graph",
                m.mode.label(),
                crate::hyper::Assumed::join(&m.assumed)
            );
            if !notes.contains(&note) {
                notes.push(note);
            }
        }
    }
    let unproven: Vec<crate::hyper::Assumed> = p
        .assumed
        .iter()
        .copied()
        .filter(|a| {
            modes
                .iter()
                .any(|m| m.status == Status::Unproven && m.assumed.contains(a))
        })
        .collect();
    if !unproven.is_empty() {
        notes.push(format!(
            "unproven: both sides ran with TF's default {} (nothing in the files records {}); \
             declare {} for this layer, or accept TF's defaults explicitly",
            crate::hyper::Assumed::join(&unproven),
            if unproven.len() == 1 { "it" } else { "them" },
            if unproven.len() == 1 { "it" } else { "them" },
        ));
    }
    let passed = modes.iter().all(|m| m.status.is_ok())
        && modes.iter().any(|m| m.status == Status::Pass)
        && !own_graph.starts_with("failed");
    Ok(LayerReport {
        own_graph,
        own_graph_runs,
        name: p.layer.name.clone(),
        api: p.api,
        api_source: p.api_source.to_string(),
        path: layer_path,
        channels: p.layer.channels,
        input_shape: shape,
        hyper: layer_hyper_json(p, &cfg),
        assumed: p.assumed.clone(),
        tolerance,
        notes,
        passed,
        modes,
    })
}

crate::label::from_label!(Fault, "fault");
