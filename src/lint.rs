//! `tfbn lint`: the pitfalls that make a TF batch-norm layer compute
//! something other than its files suggest (docs/bn-arithmetic.md#pitfalls), each reported
//! as a [`Finding`] with a stable [`Code`], a [`Severity`], the layer, and
//! one sentence on why it matters and how to fix it.
//!
//! Values are read (crc-checked) only for the variables of batch-norm
//! layers, plus a few scalars and optimizer slots to decide whether a
//! checkpoint was trained.

use serde::Serialize;

use crate::bn::BnApi;
use crate::declared::Declared;
use crate::error::{Error, Result};
use crate::find::discover;
use crate::hyper::{self, Assumed, LayerHyper, ServingMode, Sourced, VarianceConvention};
use crate::layers::{BnLayer, BnRole};
use crate::source::{Source, VariableRole};

/// How bad a finding is. Ordered: `Info < Warning < Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing (conventions).
    Info,
    /// Probably fine on TF 2.21, likely wrong elsewhere, or a guess.
    Warning,
    /// The layer computes garbage or not what was meant.
    Error,
}

impl Severity {
    /// `info`, `warning` or `error`.
    pub fn label(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }

    /// Parses [`Severity::label`].
    fn from_label(s: &str) -> Option<Severity> {
        match s.trim().to_ascii_lowercase().as_str() {
            "info" => Some(Severity::Info),
            "warning" | "warn" => Some(Severity::Warning),
            "error" => Some(Severity::Error),
            _ => None,
        }
    }
}

crate::label::display_label!(Severity);

/// The stable code of a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Code {
    /// `moving_mean` all 0 and `moving_variance` all 1 in a trained
    /// checkpoint.
    #[serde(rename = "stats-never-updated")]
    StatsNeverUpdated,
    /// `moving_variance` negative, NaN or infinite.
    #[serde(rename = "variance-invalid")]
    VarianceInvalid,
    /// `moving_mean` NaN or infinite.
    #[serde(rename = "mean-invalid")]
    MeanInvalid,
    /// γ zero (or negligible next to √(var + ε)) for some channels.
    #[serde(rename = "dead-channels")]
    DeadChannels,
    /// A BN node on a serving signature's path runs in training mode.
    #[serde(rename = "training-mode-in-serving")]
    TrainingModeInServing,
    /// ε below 1.001e-5.
    #[serde(rename = "epsilon-below-1.001e-5")]
    EpsilonBelowCudnnMin,
    /// A layer's variables disagree on their element counts.
    #[serde(rename = "shape-mismatch")]
    ShapeMismatch,
    /// A setting (ε, momentum, axis, `fused`) is stored nowhere and was not
    /// declared: TF's default is assumed (one finding per setting).
    #[serde(rename = "unknown-hyperparameters")]
    UnknownHyperparameters,
    /// Two sources disagree on a hyper-parameter.
    #[serde(rename = "hyperparameter-conflict")]
    HyperparameterConflict,
    /// Which variance convention `moving_variance` follows.
    #[serde(rename = "variance-convention")]
    VarianceConvention,
}

impl Code {
    /// Every code, in report order.
    pub const ALL: [Code; 10] = [
        Code::ShapeMismatch,
        Code::MeanInvalid,
        Code::VarianceInvalid,
        Code::StatsNeverUpdated,
        Code::TrainingModeInServing,
        Code::DeadChannels,
        Code::EpsilonBelowCudnnMin,
        Code::HyperparameterConflict,
        Code::UnknownHyperparameters,
        Code::VarianceConvention,
    ];

    /// The code as printed (`stats-never-updated`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Code::StatsNeverUpdated => "stats-never-updated",
            Code::VarianceInvalid => "variance-invalid",
            Code::MeanInvalid => "mean-invalid",
            Code::DeadChannels => "dead-channels",
            Code::TrainingModeInServing => "training-mode-in-serving",
            Code::EpsilonBelowCudnnMin => "epsilon-below-1.001e-5",
            Code::ShapeMismatch => "shape-mismatch",
            Code::UnknownHyperparameters => "unknown-hyperparameters",
            Code::HyperparameterConflict => "hyperparameter-conflict",
            Code::VarianceConvention => "variance-convention",
        }
    }

    /// Parses [`Code::as_str`].
    fn from_label(s: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str() == s.trim())
    }

    /// The severity every finding of this code has.
    pub fn severity(self) -> Severity {
        match self {
            Code::StatsNeverUpdated
            | Code::VarianceInvalid
            | Code::MeanInvalid
            | Code::TrainingModeInServing
            | Code::ShapeMismatch => Severity::Error,
            Code::DeadChannels
            | Code::EpsilonBelowCudnnMin
            | Code::UnknownHyperparameters
            | Code::HyperparameterConflict => Severity::Warning,
            Code::VarianceConvention => Severity::Info,
        }
    }

    /// Why it matters and how to fix it, in one sentence.
    pub fn help(self) -> &'static str {
        match self {
            Code::StatsNeverUpdated => {
                "TF1 updates the moving statistics only through the ops in UPDATE_OPS, so inference \
                 with these values does not normalize at all: make the train op depend on \
                 tf.compat.v1.get_collection(UPDATE_OPS) and retrain, or re-estimate the statistics \
                 over training data."
            }
            Code::VarianceInvalid => {
                "rsqrt of a negative or NaN variance is NaN, so these channels output NaN (an \
                 infinite one outputs β): the checkpoint is corrupt or training diverged, so \
                 restore an earlier checkpoint."
            }
            Code::MeanInvalid => {
                "a NaN or infinite mean makes every output of the channel NaN: the checkpoint is \
                 corrupt or training diverged, so restore an earlier checkpoint."
            }
            Code::DeadChannels => {
                "these channels output β whatever the input, which is harmless for parity but \
                 usually means pruned or collapsed units: drop them downstream or check training."
            }
            Code::TrainingModeInServing => {
                "a serving graph in training mode normalizes each request with its own batch \
                 statistics (and may update the moving averages), so results depend on the batch: \
                 export the model called with training=False."
            }
            Code::EpsilonBelowCudnnMin => {
                "TF 2.21's CPU kernels honour it, but older TF wrappers and cuDNN paths raise ε to \
                 1.001e-5, so other runtimes compute different results: pass this ε explicitly to \
                 every consumer, or use ε ≥ 1.001e-5 when retraining."
            }
            Code::ShapeMismatch => {
                "a layer's variables must hold one value per channel, so this layer cannot run: the \
                 checkpoint mixes variables of different layers or was edited, so check its keys."
            }
            Code::UnknownHyperparameters => {
                "checkpoints store only variables (and Keras 3 SavedModels only ε), so TF's \
                 default is assumed and a verify that rests on it proves nothing: declare the value \
                 the layer was built with (per layer, or in a sidecar), or read a SavedModel or TF1 \
                 .meta that stores it."
            }
            Code::HyperparameterConflict => {
                "two files or functions disagree and tfbn kept the more trusted one (Keras config, \
                 then serving graph): check which value the model ran with and pass it explicitly."
            }
            Code::VarianceConvention => {
                "PyTorch's and candle's running_var is Bessel-corrected and burn's is biased; \
                 inference uses the stored value either way, but a consumer that keeps training \
                 with the other convention mixes in values off by R/(R−1) (R = values per channel \
                 in a batch)."
            }
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Stable code.
    pub code: Code,
    /// Severity (fixed per code).
    pub severity: Severity,
    /// The layer's name; for a graph node that belongs to no known layer,
    /// the node (`saved_model.pb: function/node`); `None` for the whole
    /// file.
    pub layer: Option<String>,
    /// What was found, with the numbers.
    pub message: String,
    /// Why it matters and how to fix it ([`Code::help`]).
    pub help: &'static str,
}

impl Finding {
    fn new(code: Code, layer: Option<&str>, message: String) -> Finding {
        Finding {
            code,
            severity: code.severity(),
            layer: layer.map(str::to_string),
            message,
            help: code.help(),
        }
    }
}

/// Every finding for one source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LintReport {
    /// Findings, by layer (model order), then by [`Code::ALL`] order.
    pub findings: Vec<Finding>,
    /// Findings an [`Allow`] silenced (same order); they never fail a run.
    pub allowed: Vec<Finding>,
}

/// `CODE[=LAYER_GLOB]`: silences findings of `code` (for the layers the
/// glob matches, or everywhere), as clippy's `allow` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allow {
    /// The code.
    pub code: Code,
    /// Layer glob (`*`, `?`); `None`: every finding of the code, file-level
    /// ones included.
    pub layer_glob: Option<String>,
}

impl std::str::FromStr for Allow {
    type Err = Error;

    fn from_str(text: &str) -> Result<Allow> {
        let (code, glob) = match text.split_once('=') {
            Some((c, g)) => (c, Some(g.to_string())),
            None => (text, None),
        };
        let code = Code::from_label(code).ok_or_else(|| Error::DeclarationInvalid {
            declaration: format!("allow {text}"),
            why: format!(
                "unknown code {code:?}; codes are {}",
                Code::ALL.map(|c| c.as_str()).join(", ")
            ),
        })?;
        Ok(Allow {
            code,
            layer_glob: glob,
        })
    }
}

impl Allow {
    /// True when this allowance silences `f`.
    pub fn covers(&self, f: &Finding) -> bool {
        f.code == self.code
            && match (&self.layer_glob, &f.layer) {
                (None, _) => true,
                (Some(g), Some(l)) => crate::mapping::glob_match(g, l),
                (Some(_), None) => false,
            }
    }
}

/// What [`lint_with`] takes besides the source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LintSettings {
    /// Declared settings, applied before linting (a declared ε is not
    /// assumed).
    pub declared: Declared,
    /// Findings to silence.
    pub allow: Vec<Allow>,
}

impl LintReport {
    /// True when some finding is at least `deny`.
    pub fn fails(&self, deny: Severity) -> bool {
        self.findings.iter().any(|f| f.severity >= deny)
    }

    /// The most severe finding's severity.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }
}

/// A channel is dead when `|γ| / √(var + ε)` is below this: its output
/// moves by less than one part in a million of the input's spread.
pub const DEAD_CHANNEL_SCALE: f64 = 1e-6;

/// cuDNN's `CUDNN_BN_MIN_EPSILON`, which older TF wrappers enforced.
pub const CUDNN_MIN_EPSILON: f64 = 1.001e-5;

/// Lints every batch-norm layer of `source` (nothing declared, nothing
/// allowed).
pub fn lint(source: &Source) -> Result<LintReport> {
    lint_with(source, &LintSettings::default())
}

/// Lints every batch-norm layer of `source` with the declared settings
/// applied; findings an allowance covers go to [`LintReport::allowed`].
pub fn lint_with(source: &Source, settings: &LintSettings) -> Result<LintReport> {
    let layers = discover(source);
    settings.declared.check(&layers)?;
    let mut recovered = hyper::recover_all(source, &layers)?;
    for (l, h) in layers.iter().zip(recovered.layers.iter_mut()) {
        settings.declared.apply(l, h);
    }
    let training_evidence = std::cell::RefCell::new(None);
    let mut findings = Vec::new();
    for node in &recovered.unattached_serving_training {
        findings.push(Finding::new(
            Code::TrainingModeInServing,
            Some(node),
            "this batch-norm node on a serving signature's path runs in training mode (it reads \
             no variable of a known layer)"
                .to_string(),
        ));
    }
    for (layer, h) in layers.iter().zip(&recovered.layers) {
        let mut out = lint_layer(
            source,
            layer,
            h,
            hyper::layer_api(source, layer),
            settings.declared.variance(layer),
            &recovered.files,
            &training_evidence,
        )?;
        out.sort_by_key(|f| Code::ALL.iter().position(|c| *c == f.code));
        findings.extend(out);
    }
    let (allowed, findings) = findings
        .into_iter()
        .partition(|f| settings.allow.iter().any(|a| a.covers(f)));
    Ok(LintReport { findings, allowed })
}

/// Float values of a layer variable; `None` when absent or not floating.
fn values(source: &Source, layer: &BnLayer, role: BnRole) -> Result<Option<Vec<f64>>> {
    let Some(v) = layer.var(role) else {
        return Ok(None);
    };
    if !v.dtype.is_bn_float() {
        return Ok(None);
    }
    Ok(source.read(&v.key)?.to_f64_vec())
}

/// Up to `n` channel indices, as `0, 3, 5, …`.
fn some_channels(idx: &[usize], n: usize) -> String {
    let mut s: Vec<String> = idx.iter().take(n).map(|i| i.to_string()).collect();
    if idx.len() > n {
        s.push("…".into());
    }
    s.join(", ")
}

/// What every rule sees of one layer.
struct LayerCtx<'a> {
    source: &'a Source,
    layer: &'a BnLayer,
    name: Option<&'a str>,
    h: &'a LayerHyper,
    api: BnApi,
    variance: Option<Sourced<VarianceConvention>>,
    files: &'a [String],
    mean: Option<Vec<f64>>,
    var: Option<Vec<f64>>,
    gamma: Option<Vec<f64>>,
    beta: Option<Vec<f64>>,
    /// Whether the checkpoint was trained, computed once per run.
    training_evidence: &'a std::cell::RefCell<Option<Option<String>>>,
}

impl LayerCtx<'_> {
    fn finding(&self, code: Code, message: String) -> Finding {
        Finding::new(code, self.name, message)
    }
}

/// One lint rule: the code it reports and the check.
type Rule = fn(&LayerCtx<'_>) -> Option<Finding>;

/// The per-layer rules, one per code; [`Code::UnknownHyperparameters`]
/// (one finding per assumed setting) and [`Code::HyperparameterConflict`]
/// (one per conflict) are listed in [`lint_layer`].
const RULES: &[(Code, Rule)] = &[
    (Code::ShapeMismatch, shape_mismatch),
    (Code::MeanInvalid, mean_invalid),
    (Code::VarianceInvalid, variance_invalid),
    (Code::StatsNeverUpdated, stats_never_updated),
    (Code::DeadChannels, dead_channels),
    (Code::TrainingModeInServing, training_mode_in_serving),
    (Code::EpsilonBelowCudnnMin, epsilon_below_cudnn_min),
    (Code::VarianceConvention, variance_convention),
];

fn lint_layer(
    source: &Source,
    layer: &BnLayer,
    h: &LayerHyper,
    api: BnApi,
    variance: Option<Sourced<VarianceConvention>>,
    files: &[String],
    training_evidence: &std::cell::RefCell<Option<Option<String>>>,
) -> Result<Vec<Finding>> {
    let ctx = LayerCtx {
        source,
        layer,
        name: Some(layer.name.as_str()),
        h,
        api,
        variance,
        files,
        mean: values(source, layer, BnRole::MovingMean)?,
        var: values(source, layer, BnRole::MovingVariance)?,
        gamma: values(source, layer, BnRole::Gamma)?,
        beta: values(source, layer, BnRole::Beta)?,
        training_evidence,
    };
    let mut out: Vec<Finding> = RULES
        .iter()
        .filter_map(|(code, rule)| rule(&ctx).inspect(|f| debug_assert_eq!(f.code, *code)))
        .collect();
    out.extend(
        h.conflicts
            .iter()
            .map(|c| ctx.finding(Code::HyperparameterConflict, c.clone())),
    );
    out.extend(unknown_hyperparameters(&ctx));
    Ok(out)
}

fn shape_mismatch(c: &LayerCtx<'_>) -> Option<Finding> {
    if c.layer.shapes_agree() {
        return None;
    }
    let shapes: Vec<String> = c
        .layer
        .variables
        .iter()
        .map(|(r, v)| format!("{} {:?}", r.tf_name(), v.shape))
        .collect();
    Some(c.finding(
        Code::ShapeMismatch,
        format!(
            "variables have different element counts: {}",
            shapes.join(", ")
        ),
    ))
}

fn mean_invalid(c: &LayerCtx<'_>) -> Option<Finding> {
    let mean = c.mean.as_ref()?;
    let bad: Vec<usize> = (0..mean.len()).filter(|&i| !mean[i].is_finite()).collect();
    (!bad.is_empty()).then(|| {
        c.finding(
            Code::MeanInvalid,
            format!(
                "moving_mean is NaN or infinite in {} of {} channels ({})",
                bad.len(),
                mean.len(),
                some_channels(&bad, 8)
            ),
        )
    })
}

fn variance_invalid(c: &LayerCtx<'_>) -> Option<Finding> {
    let var = c.var.as_ref()?;
    let count = |f: &dyn Fn(f64) -> bool| var.iter().filter(|&&v| f(v)).count();
    let (neg, nan, inf) = (
        count(&|v| v < 0.0),
        count(&|v| v.is_nan()),
        count(&|v| v.is_infinite()),
    );
    if neg + nan + inf == 0 {
        return None;
    }
    let bad: Vec<usize> = (0..var.len())
        .filter(|&i| !(var[i] >= 0.0 && var[i].is_finite()))
        .collect();
    Some(c.finding(
        Code::VarianceInvalid,
        format!(
            "moving_variance is negative in {neg}, NaN in {nan} and infinite in {inf} of {} \
             channels ({})",
            var.len(),
            some_channels(&bad, 8)
        ),
    ))
}

fn stats_never_updated(c: &LayerCtx<'_>) -> Option<Finding> {
    let (mean, var) = (c.mean.as_ref()?, c.var.as_ref()?);
    let initial =
        !mean.is_empty() && mean.iter().all(|&m| m == 0.0) && var.iter().all(|&v| v == 1.0);
    if !initial {
        return None;
    }
    let own = match (&c.gamma, &c.beta) {
        (Some(g), _) if g.iter().any(|&x| x != 1.0) => {
            Some("its gamma moved from its initial 1".to_string())
        }
        (_, Some(b)) if b.iter().any(|&x| x != 0.0) => {
            Some("its beta moved from its initial 0".to_string())
        }
        _ => None,
    };
    let evidence = match own {
        Some(e) => e,
        None => c
            .training_evidence
            .borrow_mut()
            .get_or_insert_with(|| checkpoint_trained(c.source).unwrap_or(None))
            .clone()?,
    };
    Some(c.finding(
        Code::StatsNeverUpdated,
        format!(
            "moving_mean is all 0 and moving_variance all 1 (their initial values), but the \
             checkpoint was trained: {evidence}"
        ),
    ))
}

fn dead_channels(c: &LayerCtx<'_>) -> Option<Finding> {
    let gamma = c.gamma.as_ref()?;
    let eps = c.h.epsilon.value;
    let dead: Vec<usize> = (0..gamma.len())
        .filter(|&i| {
            let g = gamma[i];
            if g == 0.0 {
                return true;
            }
            let v = c
                .var
                .as_ref()
                .and_then(|v| v.get(i).copied())
                .filter(|v| v.is_finite() && *v >= 0.0)
                .unwrap_or(1.0);
            g.is_finite() && g.abs() / (v + eps).sqrt() < DEAD_CHANNEL_SCALE
        })
        .collect();
    (!dead.is_empty()).then(|| {
        c.finding(
            Code::DeadChannels,
            format!(
                "{} of {} channels have gamma = 0 or |gamma|/√(var+ε) < {DEAD_CHANNEL_SCALE:e} \
                 ({})",
                dead.len(),
                gamma.len(),
                some_channels(&dead, 8)
            ),
        )
    })
}

fn training_mode_in_serving(c: &LayerCtx<'_>) -> Option<Finding> {
    (c.h.serving_mode.value == Some(ServingMode::Training)).then(|| {
        c.finding(
            Code::TrainingModeInServing,
            format!(
                "a serving signature runs this layer in training mode ({})",
                c.h.serving_mode.source
            ),
        )
    })
}

fn epsilon_below_cudnn_min(c: &LayerCtx<'_>) -> Option<Finding> {
    let eps = &c.h.epsilon;
    ((eps.value as f32) < CUDNN_MIN_EPSILON as f32).then(|| {
        c.finding(
            Code::EpsilonBelowCudnnMin,
            format!("epsilon {} ({}) is below 1.001e-5", eps.value, eps.source),
        )
    })
}

/// One finding per setting that rests on TF's default.
fn unknown_hyperparameters(c: &LayerCtx<'_>) -> Vec<Finding> {
    let h = c.h;
    let read = if c.files.is_empty() {
        "the checkpoint stores none".to_string()
    } else {
        let verb = if c.files.len() == 1 {
            "stores"
        } else {
            "store"
        };
        format!("{} {verb} none for this layer", c.files.join(" and "))
    };
    let mut out = Vec::new();
    for a in hyper::assumed(h, c.api) {
        let value = match a {
            Assumed::Epsilon => h.epsilon.value.to_string(),
            Assumed::Momentum => h.momentum.value.to_string(),
            Assumed::Axis => h.axis.value.to_string(),
            Assumed::Fused => "auto (fused where the input allows it)".to_string(),
            Assumed::VarianceConvention => continue,
        };
        out.push(c.finding(
            Code::UnknownHyperparameters,
            format!(
                "{a}: {read}; TF's default {value} is assumed (declare {} for this layer)",
                a.setting()
            ),
        ));
    }
    out
}

fn variance_convention(c: &LayerCtx<'_>) -> Option<Finding> {
    let (h, api) = (c.h, c.api);
    let fused = h.fused.value;
    let convention = c
        .variance
        .as_ref()
        .map(|v| v.value)
        .unwrap_or_else(|| hyper::variance_convention(api, fused));
    let what = match convention {
        VarianceConvention::Bessel => "Bessel-corrected",
        VarianceConvention::Biased => "biased",
    };
    let why = match (&c.variance, convention) {
        (Some(v), _) => format!("declared ({})", v.source),
        (None, VarianceConvention::Bessel) => match fused {
            Some(true) => format!("the fused kernel ran ({})", h.fused.source),
            _ => {
                "assumed fused, as TF chooses for 4-D/5-D inputs; the files do not say".to_string()
            }
        },
        (None, VarianceConvention::Biased) => match (api, fused) {
            (BnApi::Keras3, _) => "Keras 3 always uses tf.nn.moments".to_string(),
            _ => format!("the non-fused path ran ({})", h.fused.source),
        },
    };
    Some(c.finding(
        Code::VarianceConvention,
        format!(
            "moving_variance averages the {what} batch variance ({api}: {why}); PyTorch-style \
             running_var is Bessel-corrected"
        ),
    ))
}

/// Evidence that the checkpoint was trained, independent of any one layer:
/// a positive `global_step` or optimizer iteration count, or a non-zero
/// optimizer slot.
fn checkpoint_trained(source: &Source) -> Result<Option<String>> {
    const COUNTERS: &[&str] = &[
        "global_step",
        "iter",
        "iterations",
        "_iterations",
        "iteration",
    ];
    for v in source.variables() {
        let last = crate::source::strip_attribute_suffix(&v.key)
            .rsplit('/')
            .next()
            .unwrap_or("");
        let counter = matches!(
            v.role,
            VariableRole::Bookkeeping | VariableRole::OptimizerState
        ) && COUNTERS.contains(&last)
            && v.shape.is_empty();
        if !counter {
            continue;
        }
        if let Some(x) = source
            .read(&v.key)?
            .to_f64_vec()
            .and_then(|x| x.first().copied())
        {
            if x > 0.0 {
                return Ok(Some(format!("{} = {x}", v.name)));
            }
        }
    }
    for v in source
        .variables()
        .iter()
        .filter(|v| v.role == VariableRole::OptimizerSlot && v.dtype.is_bn_float())
    {
        if let Some(x) = source.read(&v.key)?.to_f64_vec() {
            if x.iter().any(|&x| x != 0.0) {
                return Ok(Some(format!("optimizer slot {} is non-zero", v.name)));
            }
        }
    }
    Ok(None)
}

crate::label::from_label!(Severity, "severity");

crate::label::from_label!(Code, "lint code");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_order_and_parse() {
        assert!(Severity::Info < Severity::Warning && Severity::Warning < Severity::Error);
        for s in [Severity::Info, Severity::Warning, Severity::Error] {
            assert_eq!(Severity::from_label(s.label()), Some(s));
        }
        assert_eq!(Severity::from_label("fatal"), None);
    }

    #[test]
    fn codes_serialize_as_printed() {
        for c in Code::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
            assert!(c.help().ends_with('.'), "{c}");
        }
    }

    #[test]
    fn allowances_parse_and_cover_by_code_and_layer() {
        let a: Allow = "dead-channels=head/*".parse().unwrap();
        let f = |layer: Option<&str>| Finding::new(Code::DeadChannels, layer, "x".into());
        assert!(a.covers(&f(Some("head/bn"))));
        assert!(!a.covers(&f(Some("stem/bn"))));
        assert!(!a.covers(&f(None)));
        let a: Allow = "dead-channels".parse().unwrap();
        assert!(a.covers(&f(None)) && a.covers(&f(Some("stem/bn"))));
        assert!(!a.covers(&Finding::new(Code::MeanInvalid, None, "x".into())));
        assert!("no-such-code".parse::<Allow>().is_err());
    }

    #[test]
    fn every_code_has_one_rule() {
        for c in Code::ALL {
            let n = RULES.iter().filter(|(code, _)| *code == c).count();
            let special = matches!(
                c,
                Code::UnknownHyperparameters | Code::HyperparameterConflict
            );
            assert_eq!(n, usize::from(!special), "{c}");
        }
    }

    #[test]
    fn report_fails_at_or_above_deny() {
        let r = LintReport {
            findings: vec![Finding::new(Code::DeadChannels, Some("bn"), "x".into())],
            allowed: Vec::new(),
        };
        assert!(r.fails(Severity::Warning) && r.fails(Severity::Info));
        assert!(!r.fails(Severity::Error));
        assert_eq!(r.worst(), Some(Severity::Warning));
    }
}
