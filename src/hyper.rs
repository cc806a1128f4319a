//! Batch-norm hyper-parameters (epsilon, momentum, axis, center, scale,
//! fused, serving mode), each with where it came from.
//!
//! A checkpoint holds the four tensors but none of these; they live, when
//! anywhere, in graphs and Keras metadata. [`recover`] reads, in order of
//! trust:
//!
//! 1. tf_keras `keras_metadata.pb` / `user_object.metadata` JSON: the
//!    layer's own config (exact Python floats), read as inert data;
//! 2. graph nodes of `saved_model.pb` (or a TF1 `<prefix>.meta` beside a
//!    checkpoint): `FusedBatchNorm{,V2,V3}` attrs with op defaults filled in
//!    where `stripped_default_attrs` removed them, the Keras 3 / non-fused
//!    `Rsqrt(AddV2(variance, Const ε))` constant, and momenta from the
//!    moving-average update subgraphs (the `graph` module);
//! 3. which variables exist (center/scale);
//! 4. TF's defaults, marked as such.
//!
//! A value found in more than one place is compared at the precision TF
//! stores it (f32); disagreements go to [`LayerHyper::conflicts`] and the
//! more trusted value is kept.
//!
//! Values from graphs are f32; they are reported as the shortest decimal
//! that rounds to that f32 (`0.01f32` → `0.01`), which is the Python float
//! the layer was built with whenever that float had few digits. A momentum
//! seen only as a decay `f32(1 − m)` is the shortest `m` that reproduces it.

mod consts;
mod graph;
mod keras;
mod merge;

use serde::Serialize;

use crate::error::Result;
use crate::layers::{BnLayer, BnRole};
use crate::source::Source;

pub use graph::{MAX_CALL_DEPTH, MAX_STEPS, MAX_VALUE_DEPTH};

use graph::{GraphFindings, Site, VarIndex};
use merge::merge;
use keras::KerasBn;

/// TF's defaults for the Keras-style layer APIs (docs/bn-arithmetic.md#defaults-and-flags).
pub const DEFAULT_EPSILON: f64 = 1e-3;
/// Default momentum (TF convention: weight of the old value).
pub const DEFAULT_MOMENTUM: f64 = 0.99;
/// Default channel axis (last).
pub const DEFAULT_AXIS: i64 = -1;

/// Where a hyper-parameter value came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HyperSource {
    /// A graph node: a fused op's attribute (or its op default where the
    /// attribute was stripped), a decomposed form's ε constant, or an update
    /// subgraph's decay.
    Graph {
        /// File name (`saved_model.pb`, `model.ckpt.meta`).
        file: String,
        /// The function holding the node; `None` for the top-level graph.
        function: Option<String>,
        /// Node name.
        node: String,
        /// How the value was read (`attr epsilon`, `Const …/add/y`, …).
        detail: String,
    },
    /// tf_keras `keras_metadata.pb` or `user_object.metadata` JSON.
    KerasMetadata {
        /// `keras_metadata.pb`, or `saved_model.pb` for `user_object.metadata`.
        file: String,
        /// Node path in the metadata (`root.layer_with_weights-1`).
        path: String,
    },
    /// A Keras model config: `config.json` of a `.keras` archive, the
    /// `model_config` attribute of a Keras 2 `.h5`, or a config given with
    /// `--hyper`.
    KerasConfig {
        /// `m.keras: config.json`, `m.h5: model_config`, or the sidecar.
        file: String,
        /// JSON path of the layer's config (`config.layers[3].config`).
        path: String,
    },
    /// Implied by which variables the checkpoint holds (no `beta` ⇒
    /// `center=False`, no `gamma` ⇒ `scale=False`).
    Variables,
    /// TF's default for the API.
    Default,
    /// Given on the command line or by the caller.
    Flag,
    /// Declared in a `--hyper` sidecar file.
    Sidecar {
        /// The sidecar as given.
        file: String,
    },
}

impl HyperSource {
    fn graph(site: &Site, detail: impl Into<String>) -> HyperSource {
        HyperSource::Graph {
            file: site.file.clone(),
            function: site.function.clone(),
            node: site.node.clone(),
            detail: detail.into(),
        }
    }

    fn keras(k: &KerasBn) -> HyperSource {
        if k.model_config {
            HyperSource::KerasConfig {
                file: k.file.clone(),
                path: k.path.clone(),
            }
        } else {
            HyperSource::KerasMetadata {
                file: k.file.clone(),
                path: k.path.clone(),
            }
        }
    }
}

impl std::fmt::Display for HyperSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HyperSource::Graph {
                file,
                function,
                node,
                detail,
            } => {
                write!(f, "{file}: ")?;
                if let Some(func) = function {
                    write!(f, "{func}/")?;
                }
                write!(f, "{node} ({detail})")
            }
            HyperSource::KerasMetadata { file, path } | HyperSource::KerasConfig { file, path } => {
                write!(f, "{file}: {path}")
            }
            HyperSource::Variables => f.write_str("variables present"),
            HyperSource::Default => f.write_str("default"),
            HyperSource::Flag => f.write_str("flag"),
            HyperSource::Sidecar { file } => write!(f, "sidecar {file}"),
        }
    }
}

/// A value and its provenance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sourced<T> {
    /// The value.
    pub value: T,
    /// Where it came from.
    pub source: HyperSource,
}

impl Sourced<bool> {
    /// True when the value is `false` (for `skip_serializing_if`).
    pub fn value_is_false(&self) -> bool {
        !self.value
    }
}

impl<T> Sourced<Option<T>> {
    /// True when no value is known (for `skip_serializing_if`).
    pub fn value_is_none(&self) -> bool {
        self.value.is_none()
    }
}

impl<T> Sourced<T> {
    /// A TF default.
    pub fn default_value(value: T) -> Self {
        Sourced {
            value,
            source: HyperSource::Default,
        }
    }

    /// A value given by the user.
    pub fn flag(value: T) -> Self {
        Sourced {
            value,
            source: HyperSource::Flag,
        }
    }

    fn new(value: T, source: HyperSource) -> Self {
        Sourced { value, source }
    }

    /// True when the value is TF's default (nothing in the files said).
    pub fn is_default(&self) -> bool {
        self.source == HyperSource::Default
    }

    /// True when the user declared the value (a flag or a sidecar).
    pub fn is_declared(&self) -> bool {
        matches!(self.source, HyperSource::Flag | HyperSource::Sidecar { .. })
    }
}

/// A setting that came from TF's defaults rather than from the files or the
/// user: what a verdict rests on without proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Assumed {
    /// ε.
    Epsilon,
    /// The momentum.
    Momentum,
    /// The channel axis.
    Axis,
    /// Whether the fused kernel ran (only for APIs with a choice:
    /// `tf1-layers`, `tf-keras`).
    Fused,
    /// What the stored moving variance holds, where it rests on an assumed
    /// `fused` (export).
    VarianceConvention,
}

impl Assumed {
    /// Every kind, in report order.
    pub const ALL: [Assumed; 5] = [
        Assumed::Epsilon,
        Assumed::Momentum,
        Assumed::Axis,
        Assumed::Fused,
        Assumed::VarianceConvention,
    ];

    /// `epsilon`, `momentum`, `axis`, `fused`, `moving_variance convention`.
    pub fn label(self) -> &'static str {
        match self {
            Assumed::Epsilon => "epsilon",
            Assumed::Momentum => "momentum",
            Assumed::Axis => "axis",
            Assumed::Fused => "fused",
            Assumed::VarianceConvention => "moving_variance convention",
        }
    }

    /// Parses [`Assumed::label`].
    fn from_label(s: &str) -> Option<Assumed> {
        Assumed::ALL.into_iter().find(|a| a.label() == s.trim())
    }

    /// The name of the declared setting that supplies it (`epsilon`,
    /// `momentum`, `axis`, `fused`, `variance`: a sidecar's keys).
    pub fn setting(self) -> &'static str {
        match self {
            Assumed::Epsilon => "epsilon",
            Assumed::Momentum => "momentum",
            Assumed::Axis => "axis",
            Assumed::Fused => "fused",
            Assumed::VarianceConvention => "variance",
        }
    }

    /// Labels joined with `, `.
    pub fn join(list: &[Assumed]) -> String {
        list.iter()
            .map(|a| a.label())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

crate::label::display_label!(Assumed);

impl Serialize for Assumed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.label())
    }
}

/// True for the APIs where `fused` is the layer's choice (`tf1-layers`,
/// `tf-keras`); the others always (`fused`) or never (`keras3`, `nn`) run
/// the fused kernel.
pub fn has_fused_choice(api: crate::bn::BnApi) -> bool {
    matches!(api, crate::bn::BnApi::Tf1Layers | crate::bn::BnApi::TfKeras)
}

/// The settings of `h` that rest on TF's defaults for a layer that follows
/// `api`: ε, momentum (not for a hand-written `nn` layer without update
/// code), axis, and `fused` where the API has that choice.
/// The moving-variance convention is export's to add (it depends on
/// whether the user declared it).
pub fn assumed(h: &LayerHyper, api: crate::bn::BnApi) -> Vec<Assumed> {
    let mut out = Vec::new();
    if h.epsilon.is_default() {
        out.push(Assumed::Epsilon);
    }
    // A hand-written `tf.nn` layer has a momentum only through the update
    // code the graph shows; without one there is none to assume.
    let stateless = api == crate::bn::BnApi::Nn && h.nn_update.value.is_none();
    if h.momentum.is_default() && !stateless {
        out.push(Assumed::Momentum);
    }
    if h.axis.is_default() {
        out.push(Assumed::Axis);
    }
    if has_fused_choice(api) && h.fused.is_default() {
        out.push(Assumed::Fused);
    }
    out
}

/// TF's default `renorm_momentum`.
pub const DEFAULT_RENORM_MOMENTUM: f64 = 0.99;

/// Batch renormalization's clipping (`renorm_clipping`): `r` into
/// `[rmin, rmax]`, `d` into `[−dmax, dmax]`; a missing bound does not clip.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct RenormClipping {
    /// Upper bound of `r`.
    pub rmax: Option<f64>,
    /// Lower bound of `r`.
    pub rmin: Option<f64>,
    /// Bound of `|d|`.
    pub dmax: Option<f64>,
}

impl std::fmt::Display for RenormClipping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        for (name, v) in [
            ("rmax", self.rmax),
            ("rmin", self.rmin),
            ("dmax", self.dmax),
        ] {
            if let Some(v) = v {
                parts.push(format!("{name} {v}"));
            }
        }
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// How a BN node on a serving path runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServingMode {
    /// Moving statistics (`is_training=false`).
    Inference,
    /// Batch statistics: almost always a bug in a serving graph.
    Training,
}

/// Every hyper-parameter of one layer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerHyper {
    /// ε added to the variance (TF/Keras default 1e-3; PyTorch 1e-5). Kept
    /// as the f64 Python holds (a graph's f32 attr widens exactly).
    pub epsilon: Sourced<f64>,
    /// Moving-average momentum in TF's convention (weight of the old value;
    /// default 0.99; PyTorch's momentum is 1 − this).
    pub momentum: Sourced<f64>,
    /// Channel axis, normalized to be non-negative where the rank is known,
    /// else as given (−1 = last).
    pub axis: Sourced<i64>,
    /// Whether β is used.
    pub center: Sourced<bool>,
    /// Whether γ is used.
    pub scale: Sourced<bool>,
    /// Whether the fused kernel ran (None = unknown).
    pub fused: Sourced<Option<bool>>,
    /// The mode of the BN node on the serving path (None = no serving graph).
    pub serving_mode: Sourced<Option<ServingMode>>,
    /// Batch renormalization's clipping of `r` and `d` (`renorm_clipping`;
    /// default: none). Only a tf_keras config holds it.
    pub renorm_clipping: Sourced<RenormClipping>,
    /// Batch renormalization's own momentum (`renorm_momentum`; default
    /// 0.99). Only a tf_keras config holds it.
    pub renorm_momentum: Sourced<f64>,
    /// Ghost batches (`virtual_batch_size`; default none). Only a tf_keras
    /// config holds it.
    pub virtual_batch_size: Sourced<Option<u64>>,
    /// Keras 3's `synchronized` (cross-replica statistics in training);
    /// only a Keras 3 config holds it. Omitted from JSON when unknown.
    #[serde(skip_serializing_if = "Sourced::value_is_none")]
    pub synchronized: Sourced<Option<bool>>,
    /// The layer's dtype policy (`float32`, `mixed_float16`, …) as a Keras
    /// config names it. Omitted from JSON when unknown.
    #[serde(skip_serializing_if = "Sourced::value_is_none")]
    pub dtype_policy: Sourced<Option<String>>,
    /// How hand-written code updates the moving statistics next to
    /// `tf.nn.batch_normalization` (the graph's assigns); only graph-found
    /// `nn` layers have one. Omitted from JSON when unknown.
    #[serde(skip_serializing_if = "Sourced::value_is_none")]
    pub nn_update: Sourced<Option<crate::bn::MovingUpdate>>,
    /// True when TF's Grappler rewrites the layer's inference-mode fused op
    /// into element-wise ops before running it (constant parameters, as in
    /// a frozen graph), so inference computes the non-fused formula.
    /// Omitted from JSON when false.
    #[serde(skip_serializing_if = "Sourced::value_is_false")]
    pub inference_rewritten: Sourced<bool>,
    /// Disagreements between sources, reported rather than resolved.
    pub conflicts: Vec<String>,
}

impl LayerHyper {
    /// TF's defaults for a layer, with center/scale implied by which
    /// variables exist.
    pub fn defaults(layer: &BnLayer) -> LayerHyper {
        LayerHyper {
            epsilon: Sourced::default_value(DEFAULT_EPSILON),
            momentum: Sourced::default_value(DEFAULT_MOMENTUM),
            axis: Sourced::default_value(DEFAULT_AXIS),
            center: Sourced::new(layer.var(BnRole::Beta).is_some(), HyperSource::Variables),
            scale: Sourced::new(layer.var(BnRole::Gamma).is_some(), HyperSource::Variables),
            fused: Sourced::default_value(None),
            serving_mode: Sourced::default_value(None),
            renorm_clipping: Sourced::default_value(RenormClipping::default()),
            renorm_momentum: Sourced::default_value(DEFAULT_RENORM_MOMENTUM),
            virtual_batch_size: Sourced::default_value(None),
            synchronized: Sourced::default_value(None),
            dtype_policy: Sourced::default_value(None),
            nn_update: Sourced::default_value(None),
            inference_rewritten: Sourced::default_value(false),
            conflicts: Vec::new(),
        }
    }

    /// True when epsilon and momentum are both TF's defaults (nothing in
    /// the files told us).
    pub fn only_defaults(&self) -> bool {
        self.epsilon.is_default() && self.momentum.is_default()
    }

    /// Replaces values with the caller's (`--epsilon`, `--momentum`,
    /// `--axis`), marked [`HyperSource::Flag`]. Returns one note per value
    /// that differed from what was recovered, naming the replaced source.
    pub fn apply_overrides(
        &mut self,
        epsilon: Option<f64>,
        momentum: Option<f64>,
        axis: Option<i64>,
    ) -> Vec<String> {
        let mut notes = Vec::new();
        fn set<T: PartialEq + std::fmt::Display + Clone>(
            slot: &mut Sourced<T>,
            new: Option<T>,
            name: &str,
            notes: &mut Vec<String>,
        ) {
            if let Some(v) = new {
                if slot.value != v {
                    notes.push(format!(
                        "{name} {v} from the command line replaces {} ({})",
                        slot.value, slot.source
                    ));
                }
                *slot = Sourced::flag(v);
            }
        }
        set(&mut self.epsilon, epsilon, "epsilon", &mut notes);
        set(&mut self.momentum, momentum, "momentum", &mut notes);
        set(&mut self.axis, axis, "axis", &mut notes);
        notes
    }
}

/// Everything [`recover_all`] finds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recovered {
    /// Per layer, in the order given.
    pub layers: Vec<LayerHyper>,
    /// Batch-norm nodes on a serving path that run in training mode but read
    /// no variable of a known layer (`file: function/node`).
    pub unattached_serving_training: Vec<String>,
    /// The files that were read for hyper-parameters (`saved_model.pb`,
    /// `keras_metadata.pb`, `model.ckpt.meta`).
    pub files: Vec<String>,
}

/// Recovers the hyper-parameters of `layers` (in the same order) from
/// whatever `source` holds. Errors only for files that are present but
/// broken: a malformed `.meta`, a function that calls itself
/// ([`crate::Error::FunctionRecursion`]), calls nested deeper than
/// [`MAX_CALL_DEPTH`], a constant whose bytes contradict its shape.
pub fn recover(source: &Source, layers: &[BnLayer]) -> Result<Vec<LayerHyper>> {
    Ok(recover_all(source, layers)?.layers)
}

/// What the files beside the variables say: the graph's findings, the
/// tf_keras configs, and which files were read.
struct Scan {
    findings: GraphFindings,
    keras: Vec<KerasBn>,
    files: Vec<String>,
}

/// The graph's names for the variables of `source`, with `layers`' keys
/// marked by layer and role.
fn var_index(source: &Source, layers: &[BnLayer]) -> Result<VarIndex> {
    let mut vars = VarIndex::default();
    for (i, l) in layers.iter().enumerate() {
        for (role, v) in &l.variables {
            vars.layer_of_key.insert(v.key.clone(), (i, *role));
        }
    }
    if source.format() == crate::source::SourceFormat::FrozenGraphDef {
        vars.const_keys = source.variables().iter().map(|v| v.key.clone()).collect();
    }
    if let Some(sm) = source.saved_model() {
        for v in sm.variable_nodes()? {
            if let Some(key) = v.checkpoint_key {
                vars.keys_by_name
                    .entry(v.name.clone())
                    .or_default()
                    .push(key.clone());
                vars.key_of_node.insert(v.node_id, key);
            }
        }
    }
    Ok(vars)
}

/// Scans the graph that comes with `source` (`saved_model.pb`, or a TF1
/// `<prefix>.meta`) and the tf_keras configs.
fn scan(source: &Source, vars: &VarIndex) -> Result<Scan> {
    let mut out = Scan {
        findings: GraphFindings::default(),
        keras: Vec::new(),
        files: Vec::new(),
    };
    if let Some(sm) = source.saved_model() {
        let file = crate::savedmodel::SAVED_MODEL_PB;
        out.findings = graph::scan(sm.meta_graph(), file, sm.pb_path(), vars)?;
        out.files.push(file.to_string());
        out.keras = keras::configs(sm, vars)?;
        if sm.keras_metadata().is_some() {
            out.files
                .push(crate::savedmodel::KERAS_METADATA_PB.to_string());
        }
    } else if !source.keras_layers().is_empty() {
        out.keras = keras::from_model_config(source.keras_layers(), vars);
        let mut files: Vec<String> = source
            .keras_layers()
            .iter()
            .map(|l| l.file.clone())
            .collect();
        files.dedup();
        out.files.extend(files);
    } else if let Some((meta_path, meta)) = source.meta_graph() {
        let file = meta_path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.findings = graph::scan(meta, &file, meta_path, vars)?;
        out.files.push(file);
    }
    Ok(out)
}

/// Batch-norm layers that only the graph reveals: every batch-norm
/// computation (fused op or the decomposed `tf.nn.batch_normalization`
/// form) whose variables no layer of `known` owns, traced back through
/// reads, identities and control flow to the variables, whatever their
/// names. Sites reading the same moving variance are one layer. A layer
/// needs a moving mean and a moving variance that are model variables of
/// `source` with as many elements as every other variable of the layer.
pub(crate) fn graph_layers(source: &Source, known: &[BnLayer]) -> Result<Vec<BnLayer>> {
    let vars = var_index(source, known)?;
    let found = scan(source, &vars)?.findings;
    type Found = (
        String,
        std::collections::BTreeMap<BnRole, String>,
        Site,
        bool,
    );
    let mut by_variance: Vec<Found> = Vec::new();
    for u in &found.unknown {
        let Some(var) = u.roles.get(&BnRole::MovingVariance) else {
            continue;
        };
        match by_variance.iter_mut().find(|(v, ..)| v == var) {
            Some((_, roles, _, fused)) => {
                for (r, k) in &u.roles {
                    roles.entry(*r).or_insert_with(|| k.clone());
                }
                *fused |= u.fused;
            }
            None => by_variance.push((var.clone(), u.roles.clone(), u.site.clone(), u.fused)),
        }
    }
    let mut out = Vec::new();
    for (_, roles, site, fused) in by_variance {
        let api = if fused {
            crate::bn::BnApi::Fused
        } else {
            crate::bn::BnApi::Nn
        };
        if !roles.contains_key(&BnRole::MovingMean) {
            continue;
        }
        let mut refs = std::collections::BTreeMap::new();
        for (role, key) in &roles {
            let Some(v) = source.variable(key) else {
                continue;
            };
            if v.role != crate::source::VariableRole::Model || !v.dtype.is_bn_float() {
                continue;
            }
            refs.insert(
                *role,
                crate::layers::VarRef {
                    key: v.key.clone(),
                    name: v.name.clone(),
                    shape: v.shape.clone(),
                    dtype: v.dtype,
                },
            );
        }
        let (Some(mean), Some(_)) = (
            refs.get(&BnRole::MovingMean),
            refs.get(&BnRole::MovingVariance),
        ) else {
            continue;
        };
        let channels: u64 = mean.shape.iter().product();
        let (dtype, mean_name) = (mean.dtype, mean.name.clone());
        if refs
            .values()
            .any(|v| v.shape.iter().product::<u64>() != channels)
        {
            continue;
        }
        let names: Vec<&str> = refs.values().map(|v| v.name.as_str()).collect();
        let name = common_scope(&names)
            .or_else(|| site.node.rsplit_once('/').map(|(s, _)| s.to_string()))
            .map(|s| strip_op_scopes(&s).to_string())
            .unwrap_or(mean_name);
        out.push(BnLayer {
            name,
            object_path: None,
            channels,
            dtype,
            variables: refs,
            found_by: crate::layers::FoundBy::Graph,
            api: Some(api),
        });
    }
    Ok(out)
}

/// `scope` without the trailing name scopes TF's batch-norm code opens
/// inside a layer (`…/bn/batchnorm`, `…/bn/cond`, `…/bn/FusedBatchNormV3`,
/// a resource read's `…/ReadVariableOp`), so that a layer found through the
/// reads in a frozen graph is named after the layer (`…/bn`). A scope made
/// only of such names is kept as it is.
fn strip_op_scopes(scope: &str) -> &str {
    let internal = |c: &str| {
        c == "batchnorm"
            || c == "cond"
            || c.strip_prefix("cond_")
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            || c.starts_with("FusedBatchNorm")
            || c.starts_with("ReadVariableOp")
            || c.starts_with("Cast")
    };
    let mut s = scope;
    while let Some((head, last)) = s.rsplit_once('/') {
        if !internal(last) {
            break;
        }
        s = head;
    }
    s
}

/// The longest common `/`-separated scope of `names` (`a/bn/scale`,
/// `a/bn/offset` → `a/bn`); `None` when they share none.
fn common_scope(names: &[&str]) -> Option<String> {
    let first: Vec<&str> = names.first()?.split('/').collect();
    let mut n = first.len().saturating_sub(1);
    for name in &names[1..] {
        let parts: Vec<&str> = name.split('/').collect();
        let same = first
            .iter()
            .zip(&parts[..parts.len().saturating_sub(1)])
            .take_while(|(a, b)| a == b)
            .count();
        n = n.min(same);
    }
    (n > 0).then(|| first[..n].join("/"))
}

/// [`recover`], plus what the lint needs beyond the layers.
pub fn recover_all(source: &Source, layers: &[BnLayer]) -> Result<Recovered> {
    let vars = var_index(source, layers)?;
    let Scan {
        findings,
        keras,
        files,
    } = scan(source, &vars)?;

    let out = layers
        .iter()
        .enumerate()
        .map(|(i, l)| merge(l, i, &findings, &keras))
        .collect();
    let unattached_serving_training = findings
        .bn
        .iter()
        .filter(|s| s.layer.is_none() && s.serving && s.training)
        .map(|s| format!("{}: {}", s.site.file, s.site.describe()))
        .collect();
    Ok(Recovered {
        layers: out,
        unattached_serving_training,
        files,
    })
}

/// True when `op` is a fused batch-norm op (`FusedBatchNorm{,V2,V3}`).
pub(crate) fn graph_fused_op(op: &str) -> bool {
    graph::fused_op(op).is_some()
}

/// A batch-norm node of the file's graph that reads a known layer's
/// variables (verify's own-graph check runs it).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GraphBn {
    /// Index of the layer.
    pub layer: usize,
    /// The fused op, or the decomposed form's `Rsqrt`.
    pub node: String,
    /// The function holding it (`None`: the top-level graph).
    pub function: Option<String>,
    /// Batch statistics (the training branch).
    pub training: bool,
    /// The channel axis the node implies, where known.
    pub axis: Option<i64>,
    /// The input rank the node implies, where known.
    pub rank: Option<usize>,
}

/// Every batch-norm node of the graph beside `source` that reads one of
/// `layers`' variables, in graph order.
pub(crate) fn graph_bn_nodes(source: &Source, layers: &[BnLayer]) -> Result<Vec<GraphBn>> {
    let vars = var_index(source, layers)?;
    let found = scan(source, &vars)?.findings;
    Ok(found
        .bn
        .into_iter()
        .filter_map(|s| {
            Some(GraphBn {
                layer: s.layer?,
                node: s.site.node,
                function: s.site.function,
                training: s.training,
                axis: s.axis.as_ref().map(|a| a.0),
                rank: s.axis.as_ref().and_then(|a| a.1),
            })
        })
        .collect())
}

/// The TF API whose semantics a checkpoint's naming style implies: TF1 names
/// → `tf1-layers`, tf_keras → `tf-keras`, Keras 3 → `keras3`; plain TF2
/// object graphs (no Keras structure, e.g. `model.export`) → `keras3`, the
/// only Keras that writes such archives by default in TF 2.21.
pub fn default_api(style: crate::source::NamingStyle) -> crate::bn::BnApi {
    use crate::bn::BnApi;
    use crate::source::NamingStyle;
    match style {
        NamingStyle::Tf1 => BnApi::Tf1Layers,
        NamingStyle::TfKeras => BnApi::TfKeras,
        NamingStyle::Keras3 | NamingStyle::Tf2 => BnApi::Keras3,
    }
}

/// The API whose arithmetic `layer` follows: what the file shows for it
/// ([`BnLayer::api`]), else what the naming style implies.
pub fn layer_api(source: &Source, layer: &BnLayer) -> crate::bn::BnApi {
    layer.api.unwrap_or_else(|| default_api(source.style()))
}

/// Which variance a layer's stored `moving_variance` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VarianceConvention {
    /// Averages of the biased batch variance (Σ(x−μ)²/R): Keras 3, tf_keras
    /// non-fused, TF1 non-fused. burn's `running_var` convention.
    Biased,
    /// Averages of the Bessel-corrected batch variance (Σ(x−μ)²/(R−1)): the
    /// fused kernel (TF1 4-D layers, tf_keras fused, raw op). PyTorch's and
    /// candle's `running_var` convention.
    Bessel,
}

/// What the stored moving variance of a layer following `api` holds, with
/// its provenance: for `tf1-layers` and `tf-keras` it follows `fused` (and
/// its source), for the other APIs the API fixes it ([`HyperSource::Default`]).
pub fn moving_variance_of(api: crate::bn::BnApi, h: &LayerHyper) -> Sourced<VarianceConvention> {
    Sourced {
        value: variance_convention(api, h.fused.value),
        source: if has_fused_choice(api) {
            h.fused.source.clone()
        } else {
            HyperSource::Default
        },
    }
}

/// [`assumed`], plus the moving-variance convention where it rests on an
/// assumed `fused` (what an export declares in its metadata).
pub fn assumed_with_variance(
    h: &LayerHyper,
    api: crate::bn::BnApi,
    moving_variance: &Sourced<VarianceConvention>,
) -> Vec<Assumed> {
    let mut out = assumed(h, api);
    if has_fused_choice(api) && h.fused.is_default() && !moving_variance.is_declared() {
        out.push(Assumed::VarianceConvention);
    }
    out
}

/// The variance convention of an API; `fused` says whether the fused kernel
/// ran (None = unknown, taken as TF's usual choice for 4-D inputs: fused for
/// `tf1-layers` and `tf-keras`).
pub fn variance_convention(api: crate::bn::BnApi, fused: Option<bool>) -> VarianceConvention {
    use crate::bn::BnApi;
    match api {
        BnApi::Fused => VarianceConvention::Bessel,
        BnApi::Keras3 | BnApi::Nn => VarianceConvention::Biased,
        BnApi::Tf1Layers | BnApi::TfKeras => {
            if fused.unwrap_or(true) {
                VarianceConvention::Bessel
            } else {
                VarianceConvention::Biased
            }
        }
    }
}

crate::label::from_label!(Assumed, "setting");
