//! The report of `tfbn verify` and its JSON form (`--json`, schema
//! [`SCHEMA_VERSION`]; fields are only ever added).
//!
//! ```json
//! {
//!   "schema": 1,
//!   "path": "testdata/tf1_trained/ckpt/model.ckpt",
//!   "style": "tf1",
//!   "host": {"backend": "eigen", "tf_version": "2.21.0", "cpu_vendor": "AuthenticAMD", "threads": 2},
//!   "tolerance": "exact",
//!   "seed": 0, "batch": 4,
//!   "cases": ["normal", "large_offset", "near_constant", "tiny"],
//!   "dtypes": ["float32"],
//!   "injected_fault": null,
//!   "passed": true,
//!   "assume_defaults": false,
//!   "summary": {"layers": 3, "layers_passed": 3, "modes": 6, "passed": 6, "failed": 0, "unproven": 0, "not_applicable": 0,
//!               "own_graph_passed": 3, "own_graph_failed": 0},
//!   "layers": [{
//!     "name": "batch_normalization", "api": "tf1-layers", "api_source": "naming style",
//!     "path": "fused", "channels": 8, "input_shape": [4, 5, 6, 8], "tolerance": "exact",
//!     "hyper": {"epsilon": 0.001, "epsilon_source": "...", "momentum": 0.99, "momentum_source": "...",
//!               "axis": -1, "axis_source": "...", "center": true, "scale": true, "fused": true,
//!               "fused_source": "...", "moving_variance": "bessel", "moving_variance_source": "...",
//!               "renorm": false},
//!     "assumed": ["epsilon", "momentum", "axis", "fused"],
//!     "notes": [], "passed": true,
//!     "own_graph": "passed | failed: epsilon? | not runnable: TF2 function | not runnable: … | none",
//!     "own_graph_runs": [{"node": "batch_normalization/FusedBatchNormV3", "mode": "training",
//!                         "input_shape": [4, 5, 6, 8], "status": "pass", "error": null,
//!                         "outputs": [...], "causes": []}],
//!     "modes": [{
//!       "mode": "training", "dtype": "float32 | float16 | bfloat16 | float64",
//!       "path": "fused | non_fused | null",
//!       "status": "pass | fail | unproven | unsupported | error | not_applicable", "error": null,
//!       "assumed": ["epsilon"],
//!       "outputs": [{"name": "y", "n": 3840, "bitwise_equal": 3840, "bitwise_fraction": 1.0,
//!                    "max_ulp": 0, "max_ulp_of_max": 0, "max_abs": 0.0, "max_rel": 0.0,
//!                    "worst": null | {"case": "tiny", "index": 17, "channel": 1, "tf": 0.5, "native": 0.50000006},
//!                    "passed": true}, ...],
//!       "cases": [{"case": "normal", "bitwise_fraction": 1.0, "passed": true}, ...],
//!       "causes": [{"kind": "epsilon | momentum | bessel | layout | backend | arithmetic", "message": "..."}],
//!       "timing_ms": {"tensorflow": 3.1, "native": 0.2}
//!     }]
//!   }],
//!   "timing": {"load_tf_ms": 900.0, "total_ms": 1500.0}
//! }
//! ```
//!
//! `modes` holds one row per input type (`dtypes`, `--dtype`) and mode, in
//! that order; a `not_applicable` row (the API refuses the type in TF, e.g.
//! the raw fused op on `float64`) says why in `error` and counts neither as
//! passed nor as failed. `passed` needs at least one passing row.
//!
//! A row whose two sides agree but that depends on a setting assumed from
//! TF's defaults (ε, the axis, `fused` where the API has the choice, and in
//! training the momentum) is `unproven`, not `pass`: both sides were built
//! from the same guess, so their agreement says nothing about the model.
//! The row's `assumed` lists those settings and the layer's `notes` say
//! how to declare them; `--assume-defaults` accepts the defaults
//! (`assume_defaults: true`, rows pass, `assumed` still lists them).
//!
//! `max_ulp` is `18446744073709551615` (`u64::MAX`) where a NaN meets a
//! number; `max_abs`/`max_rel` that are infinite are written as `null`
//! (JSON has no infinity).

use serde::Serialize;

use super::{FloatDType, InputCase, Mode};
use crate::bn::BnApi;
use crate::hyper::{Assumed, VarianceConvention};
use crate::layers::BnLayer;
use crate::parity::{Comparison, Tolerance};
use crate::source::NamingStyle;
use crate::tf::bn::TfPath;
use crate::tf::HostInfo;

/// Version of the JSON layout.
pub const SCHEMA_VERSION: u32 = 1;

/// The verdict of one layer in one mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every output of every case within the tolerance.
    Pass,
    /// Some output outside the tolerance.
    Fail,
    /// Both sides agree, but the row rests on settings assumed from TF's
    /// defaults (listed in the row's `assumed`): agreement proves nothing
    /// about the model, since both sides were built from the same guess.
    /// Counts as neither passed nor failed; the run exits 1.
    Unproven,
    /// One side cannot run this configuration (counts as a failure).
    Unsupported,
    /// A side failed while running (counts as a failure).
    Error,
    /// The API itself refuses this input type in TF (e.g. `FusedBatchNormV3`
    /// on `float64`): nothing to compare, neither a pass nor a failure.
    NotApplicable,
}

impl Status {
    /// Not a failure: [`Status::Pass`] or [`Status::NotApplicable`].
    pub fn is_ok(self) -> bool {
        matches!(self, Status::Pass | Status::NotApplicable)
    }
}

/// The worst element of an output over all cases.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Worst {
    /// The input case.
    pub case: InputCase,
    /// Flat index.
    pub index: usize,
    /// Channel.
    pub channel: Option<usize>,
    /// TF's value.
    pub tf: Option<f64>,
    /// The native value.
    pub native: Option<f64>,
}

fn api_label<S: serde::Serializer>(v: &BnApi, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.label())
}

fn finite_or_none<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() {
        s.serialize_f64(*v)
    } else {
        s.serialize_none()
    }
}

/// One output (`y`, `batch_mean`, …) compared over all input cases.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputReport {
    /// `y`, `batch_mean`, `batch_variance`, `moving_mean`,
    /// `moving_variance`, `moving_stddev`, `renorm_mean`, `renorm_stddev`.
    pub name: &'static str,
    /// Elements compared (all cases).
    pub n: usize,
    /// Elements with identical bits.
    pub bitwise_equal: usize,
    /// `bitwise_equal / n`.
    pub bitwise_fraction: f64,
    /// Largest ULP distance.
    pub max_ulp: u64,
    /// Largest error in ULPs of the largest magnitude of TF's array (see
    /// `parity::Comparison::max_ulp_of_max`).
    pub max_ulp_of_max: u64,
    /// Largest absolute error (`null` if infinite).
    #[serde(serialize_with = "finite_or_none")]
    pub max_abs: f64,
    /// Largest relative error (`null` if infinite).
    #[serde(serialize_with = "finite_or_none")]
    pub max_rel: f64,
    /// The worst element, `null` when all are equal.
    pub worst: Option<Worst>,
    /// Within the tolerance in every case.
    pub passed: bool,
}

impl OutputReport {
    pub(super) fn new(
        name: &'static str,
        c: &Comparison,
        case: InputCase,
        tol: Tolerance,
    ) -> OutputReport {
        let mut o = OutputReport {
            name,
            n: 0,
            bitwise_equal: 0,
            bitwise_fraction: 1.0,
            max_ulp: 0,
            max_ulp_of_max: 0,
            max_abs: 0.0,
            max_rel: 0.0,
            worst: None,
            passed: true,
        };
        o.add(c, case, tol);
        o
    }

    pub(super) fn add(&mut self, c: &Comparison, case: InputCase, tol: Tolerance) {
        let worse = c.worst_index.is_some()
            && (self.worst.is_none()
                || c.max_ulp > self.max_ulp
                || (c.max_ulp == self.max_ulp && c.max_abs > self.max_abs));
        if worse {
            self.worst = c.worst_index.map(|index| Worst {
                case,
                index,
                channel: c.worst_channel,
                tf: c.worst_expected,
                native: c.worst_actual,
            });
        }
        self.n += c.n;
        self.bitwise_equal += c.bitwise_equal;
        self.bitwise_fraction = if self.n == 0 {
            1.0
        } else {
            self.bitwise_equal as f64 / self.n as f64
        };
        self.max_ulp = self.max_ulp.max(c.max_ulp);
        self.max_ulp_of_max = self.max_ulp_of_max.max(c.max_ulp_of_max);
        self.max_abs = self.max_abs.max(c.max_abs);
        self.max_rel = self.max_rel.max(c.max_rel);
        self.passed &= tol.accepts(c);
    }
}

/// One input case of one mode.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseSummary {
    /// The case.
    pub case: InputCase,
    /// Bitwise-equal fraction over all outputs of the case.
    pub bitwise_fraction: f64,
    /// Every output within the tolerance.
    pub passed: bool,
}

/// Milliseconds spent per side (all cases; TF includes building the graph
/// and session).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct ModeTiming {
    /// TensorFlow.
    pub tensorflow: f64,
    /// The native layer.
    pub native: f64,
}

/// One layer in one mode and input type (a row of the report).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModeReport {
    /// The mode.
    pub mode: Mode,
    /// The type of the input and `y` (`float32`, `float16`, `bfloat16`,
    /// `float64`); the statistics are `float32` (`float64` for `float64`).
    pub dtype: FloatDType,
    /// The kernel TF runs for this type (`null` if TF cannot run the
    /// layout).
    pub path: Option<TfPath>,
    /// The verdict.
    pub status: Status,
    /// Why a side could not run (`unsupported` / `error`), or why the API
    /// does not take the type (`not_applicable`).
    pub error: Option<String>,
    /// Each output over all cases.
    pub outputs: Vec<OutputReport>,
    /// Each case.
    pub cases: Vec<CaseSummary>,
    /// Likely causes of a failure (empty when it passed or nothing fits).
    pub causes: Vec<super::diagnose::Cause>,
    /// Time per side.
    pub timing_ms: ModeTiming,
    /// The settings this row depends on that were assumed from TF's
    /// defaults (with `--assume-defaults` the row may pass regardless).
    pub assumed: Vec<Assumed>,
}

impl ModeReport {
    pub(super) fn error(
        mode: Mode,
        dtype: FloatDType,
        path: Option<TfPath>,
        status: Status,
        error: String,
    ) -> ModeReport {
        ModeReport {
            mode,
            dtype,
            path,
            status,
            error: Some(error),
            outputs: Vec::new(),
            cases: Vec::new(),
            causes: Vec::new(),
            timing_ms: ModeTiming::default(),
            assumed: Vec::new(),
        }
    }

    /// Bitwise-equal fraction over every output and case.
    pub fn bitwise_fraction(&self) -> f64 {
        let n: usize = self.outputs.iter().map(|o| o.n).sum();
        let e: usize = self.outputs.iter().map(|o| o.bitwise_equal).sum();
        if n == 0 {
            1.0
        } else {
            e as f64 / n as f64
        }
    }

    /// Largest ULP distance of any output.
    pub fn max_ulp(&self) -> u64 {
        self.outputs.iter().map(|o| o.max_ulp).max().unwrap_or(0)
    }

    /// Largest error in ULPs of the array's largest magnitude, of any output.
    pub fn max_ulp_of_max(&self) -> u64 {
        self.outputs
            .iter()
            .map(|o| o.max_ulp_of_max)
            .max()
            .unwrap_or(0)
    }

    /// Largest absolute error of any output.
    pub fn max_abs(&self) -> f64 {
        self.outputs.iter().map(|o| o.max_abs).fold(0.0, f64::max)
    }

    /// The output with the largest ULP distance, if any differs.
    pub fn worst_output(&self) -> Option<&OutputReport> {
        self.outputs
            .iter()
            .filter(|o| o.worst.is_some())
            .max_by(|a, b| {
                a.max_ulp
                    .cmp(&b.max_ulp)
                    .then(a.max_abs.total_cmp(&b.max_abs))
            })
    }
}

/// The hyper-parameters both sides ran with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HyperJson {
    /// ε.
    pub epsilon: f64,
    /// Where ε came from.
    pub epsilon_source: String,
    /// Momentum (TF convention).
    pub momentum: f64,
    /// Where the momentum came from.
    pub momentum_source: String,
    /// Channel axis as run: 1 (channels-first) or −1 (channels-last).
    pub axis: i64,
    /// Where the axis came from.
    pub axis_source: String,
    /// β used.
    pub center: bool,
    /// γ used.
    pub scale: bool,
    /// The layer's `fused` argument, if known.
    pub fused: Option<bool>,
    /// Where `fused` came from.
    pub fused_source: String,
    /// What the stored moving variance holds (`biased`, `bessel`).
    pub moving_variance: Option<VarianceConvention>,
    /// Where that came from.
    pub moving_variance_source: String,
    /// Batch renormalization.
    pub renorm: bool,
}

/// One layer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerReport {
    /// Layer name.
    pub name: String,
    /// The API both sides reproduce (`fused`, `tf1-layers`, `tf-keras`,
    /// `keras3`, `nn`).
    #[serde(serialize_with = "api_label")]
    pub api: BnApi,
    /// Where the API choice came from (`flag`, `naming style`).
    pub api_source: String,
    /// The kernel TF runs for the first type run (`float32` by default;
    /// each row has its own), `null` if TF cannot run the layout.
    pub path: Option<TfPath>,
    /// Channels.
    pub channels: u64,
    /// The input shape.
    pub input_shape: Vec<usize>,
    /// Hyper-parameters.
    pub hyper: HyperJson,
    /// Settings assumed from TF's defaults (`epsilon`, `momentum`, `axis`,
    /// `fused`): nothing in the files recorded them and nobody declared
    /// them.
    pub assumed: Vec<Assumed>,
    /// The tolerance the verdict applied to this layer.
    pub tolerance: Tolerance,
    /// Notes (overrides, assumptions).
    pub notes: Vec<String>,
    /// Every row passed or was not applicable, and at least one passed.
    pub passed: bool,
    /// Each row: every requested type, each mode.
    pub modes: Vec<ModeReport>,
    /// The file's own graph run for this layer (see
    /// [`super::own_graph`]): `passed`, `failed: epsilon?` (the likely
    /// settings), `not runnable: TF2 function`, `not runnable: …`, or
    /// `none` (the file holds no graph, or none of its nodes reads the
    /// layer). A failure fails the layer.
    pub own_graph: String,
    /// The graph's batch-norm nodes run for `own_graph`.
    pub own_graph_runs: Vec<super::OwnGraphRun>,
}

impl LayerReport {
    pub(super) fn unsupported(layer: &BnLayer, why: String) -> LayerReport {
        LayerReport {
            name: layer.name.clone(),
            api: BnApi::default(),
            api_source: String::new(),
            path: None,
            channels: layer.channels,
            input_shape: Vec::new(),
            hyper: HyperJson {
                epsilon: f64::NAN,
                epsilon_source: String::new(),
                momentum: f64::NAN,
                momentum_source: String::new(),
                axis: -1,
                axis_source: String::new(),
                center: false,
                scale: false,
                fused: None,
                fused_source: String::new(),
                moving_variance: None,
                moving_variance_source: String::new(),
                renorm: false,
            },
            assumed: Vec::new(),
            tolerance: Tolerance::Exact,
            notes: vec![why.clone()],
            passed: false,
            own_graph: "not run".into(),
            own_graph_runs: Vec::new(),
            modes: vec![ModeReport::error(
                Mode::Inference,
                FloatDType::F32,
                None,
                Status::Unsupported,
                why,
            )],
        }
    }
}

/// Counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Layers verified.
    pub layers: usize,
    /// Layers whose every mode passed.
    pub layers_passed: usize,
    /// Layer × type × mode rows.
    pub modes: usize,
    /// Rows that passed.
    pub passed: usize,
    /// Rows that failed (fail, unsupported or error).
    pub failed: usize,
    /// Rows whose sides agree but that rest on assumed settings.
    pub unproven: usize,
    /// Rows whose API does not take the type in TF (neither passed nor
    /// failed).
    pub not_applicable: usize,
    /// Layers whose own graph agreed with the native layer.
    pub own_graph_passed: usize,
    /// Layers whose own graph disagreed with the native layer (the run
    /// fails).
    pub own_graph_failed: usize,
}

impl Summary {
    pub(super) fn of(layers: &[LayerReport]) -> Summary {
        let modes: usize = layers.iter().map(|l| l.modes.len()).sum();
        let count = |s: Status| {
            layers
                .iter()
                .flat_map(|l| &l.modes)
                .filter(|m| m.status == s)
                .count()
        };
        let passed = count(Status::Pass);
        let not_applicable = count(Status::NotApplicable);
        let unproven = count(Status::Unproven);
        Summary {
            layers: layers.len(),
            layers_passed: layers.iter().filter(|l| l.passed).count(),
            modes,
            passed,
            failed: modes - passed - not_applicable - unproven,
            unproven,
            not_applicable,
            own_graph_passed: layers.iter().filter(|l| l.own_graph == "passed").count(),
            own_graph_failed: layers
                .iter()
                .filter(|l| l.own_graph.starts_with("failed"))
                .count(),
        }
    }
}

/// Loading and total time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Timing {
    /// Finding and loading TensorFlow.
    pub load_tf_ms: f64,
    /// Everything.
    pub total_ms: f64,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifyReport {
    /// [`SCHEMA_VERSION`].
    pub schema: u32,
    /// Path as given.
    pub path: String,
    /// Naming style of the checkpoint.
    pub style: NamingStyle,
    /// Backend, TF version, CPU vendor, threads.
    pub host: HostInfo,
    /// The verdict's tolerance: the one given, else the backend's rule
    /// (`exact`, or `ulp-of-max:max(64,2*sqrt(R))` for oneDNN, R = values per
    /// channel; each layer lists the one it got).
    pub tolerance: String,
    /// Seed of the inputs.
    pub seed: u64,
    /// Batch size.
    pub batch: usize,
    /// Input cases.
    pub cases: Vec<InputCase>,
    /// Input types run (each layer has a row per type and mode).
    pub dtypes: Vec<FloatDType>,
    /// The self-test fault, if any.
    pub injected_fault: Option<super::Fault>,
    /// Every layer passed: no row failed, none rests on an assumed
    /// setting (unless `assume_defaults`), and at least one passed.
    pub passed: bool,
    /// `--assume-defaults`: rows resting on TF's defaults were accepted.
    pub assume_defaults: bool,
    /// Counts.
    pub summary: Summary,
    /// Each layer.
    pub layers: Vec<LayerReport>,
    /// Time.
    pub timing: Timing,
}
