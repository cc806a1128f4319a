//! Opening whatever path the user gives (a checkpoint in any of its path
//! forms, or a SavedModel folder) and listing its variables with their names,
//! object paths and roles.
//!
//! A *key* is what the bundle stores a tensor under; a *name* is the
//! variable's own name (TF1: the key itself; TF2: the object graph's
//! `full_name`, e.g. `batch_normalization/gamma`); an *object path* is a
//! chain of local names from the checkpoint root
//! (`model/layer_with_weights-1/gamma`). A TF2 variable is stored once, under
//! its shortest path, but is reachable through every path listed.

use std::borrow::Cow;
use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::bundle::{Bundle, BundleFormat};
use crate::error::Result;
use crate::mapping::LayerMapping;
use crate::objgraph::ObjectGraph;
use crate::proto::saved_model::MetaGraphDef;
use crate::savedmodel::SavedModel;
use crate::{DType, Tensor};

/// The key TF2 stores the serialized object graph under.
pub const OBJECT_GRAPH_KEY: &str = "_CHECKPOINTABLE_OBJECT_GRAPH";

/// What a variable is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VariableRole {
    /// A model variable (weights, batch-norm parameters and statistics).
    Model,
    /// A per-variable optimizer slot (`/Adam`, `.OPTIMIZER_SLOT`, Keras
    /// optimizer `m`/`v` state).
    OptimizerSlot,
    /// Other optimizer state (iteration counters, learning rates,
    /// `beta1_power`).
    OptimizerState,
    /// An `ExponentialMovingAverage` shadow copy.
    EmaShadow,
    /// Bookkeeping: `save_counter`, `global_step`, the object graph itself.
    Bookkeeping,
}

/// How the variables were named, which tells which TF API wrote them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NamingStyle {
    /// Name-based TF1 checkpoint (`tf.compat.v1.train.Saver`).
    Tf1,
    /// Object-based checkpoint written by tf_keras (Keras 2).
    TfKeras,
    /// Object-based checkpoint written by Keras 3.
    Keras3,
    /// Object-based checkpoint of plain `tf.Module`s / `tf.Variable`s.
    Tf2,
}

impl NamingStyle {
    /// A short lowercase label (`tf1`, `tf_keras`, `keras3`, `tf2`).
    pub fn label(self) -> &'static str {
        match self {
            NamingStyle::Tf1 => "tf1",
            NamingStyle::TfKeras => "tf_keras",
            NamingStyle::Keras3 => "keras3",
            NamingStyle::Tf2 => "tf2",
        }
    }
}

/// One variable of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Variable {
    /// Key in the bundle.
    pub key: String,
    /// The variable's own name.
    pub name: String,
    /// Object paths from the root (TF2 only; shortest first).
    pub paths: Vec<String>,
    /// Element type.
    pub dtype: DType,
    /// Shape.
    pub shape: Vec<u64>,
    /// True when the bundle stores it as slices.
    pub partitioned: bool,
    /// What it is for.
    pub role: VariableRole,
}

/// The kind of file or folder that was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceFormat {
    /// V2 tensor bundle.
    CheckpointV2,
    /// V1 legacy checkpoint.
    CheckpointV1,
    /// SavedModel folder.
    SavedModel,
    /// Keras 3 `.keras` archive (zip: `config.json`, `metadata.json`,
    /// `model.weights.h5`).
    KerasArchive,
    /// Keras 3 `.weights.h5` (weights only, no config).
    Keras3WeightsH5,
    /// Keras 2 / tf_keras whole-model `.h5` (`model_config` + `model_weights`).
    Keras2H5,
    /// Keras 2 / tf_keras `save_weights` `.h5` (weights only, no config).
    Keras2WeightsH5,
    /// A frozen `GraphDef` (`.pb`): the variables are `Const` nodes.
    FrozenGraphDef,
}

impl SourceFormat {
    /// True for the formats TensorFlow's checkpoint reader opens (bundles
    /// and SavedModels); Keras HDF5 files and frozen graphs have no TF
    /// reader.
    pub fn tf_readable(self) -> bool {
        matches!(
            self,
            SourceFormat::CheckpointV2 | SourceFormat::CheckpointV1 | SourceFormat::SavedModel
        )
    }

    /// A short lowercase label, as serialized.
    pub fn label(self) -> &'static str {
        match self {
            SourceFormat::CheckpointV2 => "checkpoint_v2",
            SourceFormat::CheckpointV1 => "checkpoint_v1",
            SourceFormat::SavedModel => "saved_model",
            SourceFormat::KerasArchive => "keras_archive",
            SourceFormat::Keras3WeightsH5 => "keras3_weights_h5",
            SourceFormat::Keras2H5 => "keras2_h5",
            SourceFormat::Keras2WeightsH5 => "keras2_weights_h5",
            SourceFormat::FrozenGraphDef => "frozen_graph_def",
        }
    }
}

/// Where a [`Source`]'s tensors live.
#[derive(Debug)]
#[doc(hidden)]
pub enum Store {
    /// A TF tensor bundle (V2 memory-mapped, or V1).
    Bundle(Bundle),
    /// Tensors decoded into memory at open (Keras HDF5 datasets, frozen
    /// graph constants).
    Memory(MemoryStore),
}

/// Tensors held in memory, sorted by key, with the files they came from.
#[derive(Debug, Default)]
#[doc(hidden)]
pub struct MemoryStore {
    files: Vec<PathBuf>,
    tensors: Vec<(String, Tensor)>,
}

impl MemoryStore {
    /// A store over `tensors` (any order; a key given twice keeps the last),
    /// read from `files`.
    pub fn new(files: Vec<PathBuf>, tensors: Vec<(String, Tensor)>) -> MemoryStore {
        let mut tensors = tensors;
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        tensors.reverse();
        tensors.dedup_by(|a, b| a.0 == b.0);
        tensors.reverse();
        MemoryStore { files, tensors }
    }

    /// The files the tensors were read from.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Every `(key, tensor)`, sorted by key.
    pub fn tensors(&self) -> &[(String, Tensor)] {
        &self.tensors
    }

    /// The tensor stored under `key`.
    pub fn get(&self, key: &str) -> Option<&Tensor> {
        self.tensors
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| &self.tensors[i].1)
    }
}

impl Store {
    /// The files read.
    pub fn files(&self) -> &[PathBuf] {
        match self {
            Store::Bundle(b) => b.files(),
            Store::Memory(m) => m.files(),
        }
    }

    fn missing(&self, key: &str) -> crate::Error {
        crate::Error::KeyNotFound {
            path: self.files().first().cloned().unwrap_or_default(),
            key: key.to_string(),
        }
    }

    /// Reads a tensor by key (bundles: crc-checked, see `Bundle::read`).
    pub fn read(&self, key: &str) -> Result<Tensor> {
        match self {
            Store::Bundle(b) => b.read(key),
            Store::Memory(m) => m.get(key).cloned().ok_or_else(|| self.missing(key)),
        }
    }

    /// A fixed-width tensor's little-endian bytes (see `Bundle::read_raw`).
    pub fn read_raw(&self, key: &str) -> Result<Cow<'_, [u8]>> {
        match self {
            Store::Bundle(b) => b.read_raw(key),
            Store::Memory(m) => {
                let t = m.get(key).ok_or_else(|| self.missing(key))?;
                t.bytes()
                    .map(Cow::Borrowed)
                    .ok_or_else(|| crate::Error::DTypeUnreadable {
                        path: m.files.first().cloned().unwrap_or_default(),
                        key: key.to_string(),
                        dtype: t.dtype,
                    })
            }
        }
    }

    /// As [`Store::read_raw`], with a bundle's crc check left to the caller
    /// (see `Bundle::read_raw_then_check`); memory tensors need none.
    pub fn read_raw_then_check(&self, key: &str) -> Result<crate::bundle::Deferred<'_>> {
        match self {
            Store::Bundle(b) => b.read_raw_then_check(key),
            Store::Memory(_) => Ok(crate::bundle::Deferred {
                bytes: self.read_raw(key)?,
                check: None,
            }),
        }
    }

    /// True when `key` holds fixed-width elements (so its bytes can be
    /// exported), false for strings and absent keys.
    pub fn is_fixed_width(&self, key: &str) -> bool {
        match self {
            Store::Bundle(b) => b.entry(key).is_some_and(|e| e.num_bytes.is_some()),
            Store::Memory(m) => m.get(key).is_some_and(|t| t.bytes().is_some()),
        }
    }
}

/// A layer's entry in a Keras model config (`config.json` of a `.keras`
/// archive, the `model_config` attribute of a Keras 2 `.h5`, or a config
/// given with `--hyper`), read as inert JSON and paired with the variables
/// that hold its weights. Only the Keras readers (`crate::keras`) make
/// these; discovery and hyper-parameter recovery read them.
#[derive(Debug, Clone, PartialEq)]
pub struct KerasLayerConfig {
    /// The layer's path of names from the model (`bn`, `inner/bn`).
    pub path: String,
    /// The config's `class_name` (`BatchNormalization`, …).
    pub class_name: String,
    /// The layer's `config` object.
    pub config: serde_json::Value,
    /// Where the config came from (`m.keras: config.json`,
    /// `m.h5: model_config`, a sidecar's path).
    pub file: String,
    /// JSON path of the layer's `config` object in that file
    /// (`config.layers[3].config`).
    pub json_path: String,
    /// The rank of the layer's input, where the config says it
    /// (`build_config.input_shape`, a `batch_input_shape`) or the layers
    /// before it imply it.
    pub input_rank: Option<usize>,
    /// True for a Keras 2 / tf_keras config, whose BatchNormalization
    /// chooses the fused kernel when built (its config never records
    /// `fused`, so Keras rebuilds the layer with `fused=None`).
    pub tf_keras: bool,
    /// The variables holding the layer's weights, as `(weight name, key)`
    /// with Keras's weight names (`gamma`, `moving_mean`, …), in the order
    /// the layer creates them.
    pub weights: Vec<(String, String)>,
}

/// An opened checkpoint or SavedModel.
pub struct Source {
    path: PathBuf,
    format: SourceFormat,
    store: Store,
    saved_model: Option<SavedModel>,
    object_graph: Option<ObjectGraph>,
    variables: Vec<Variable>,
    style: NamingStyle,
    declared: Vec<LayerMapping>,
    meta: Option<(PathBuf, MetaGraphDef)>,
    notes: Vec<String>,
    keras: Vec<KerasLayerConfig>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("style", &self.style)
            .field("variables", &self.variables.len())
            .finish()
    }
}

impl Source {
    /// Opens a checkpoint (any path form [`Bundle::open`] accepts) or a
    /// SavedModel folder; [`Source::open`] dispatches every other format
    /// before it comes here.
    pub(crate) fn open_tf(path: &Path) -> Result<Source> {
        if SavedModel::is_saved_model_dir(path) {
            let sm = SavedModel::open(path)?;
            let bundle =
                match sm.variables() {
                    Some(_) => Bundle::open(path.join("variables").join("variables"))?,
                    None => return Err(crate::Error::SavedModelInvalid {
                        path: path.to_path_buf(),
                        what:
                            "SavedModel has no variables/ bundle, so it holds no batch-norm values"
                                .into(),
                    }),
                };
            return Source::build(path, SourceFormat::SavedModel, bundle, Some(sm));
        }
        let bundle = Bundle::open(path)?;
        let format = match bundle.format() {
            BundleFormat::V2 { .. } => SourceFormat::CheckpointV2,
            BundleFormat::V1 { .. } => SourceFormat::CheckpointV1,
        };
        Source::build(path, format, bundle, None)
    }

    fn build(
        path: &Path,
        format: SourceFormat,
        bundle: Bundle,
        saved_model: Option<SavedModel>,
    ) -> Result<Source> {
        let object_graph = ObjectGraph::from_bundle(&bundle)?;
        let mut notes: Vec<String> = bundle
            .resolution_note()
            .map(str::to_string)
            .into_iter()
            .collect();
        let meta = if saved_model.is_none() {
            match read_meta_beside(bundle.prefix()) {
                Ok(m) => m,
                Err(note) => {
                    notes.push(note);
                    None
                }
            }
        } else {
            None
        };
        let (variables, style) = match &object_graph {
            Some(graph) => classify_tf2(&bundle, graph, saved_model.as_ref()),
            None => (classify_tf1(&bundle), NamingStyle::Tf1),
        };
        Ok(Source {
            path: path.to_path_buf(),
            format,
            store: Store::Bundle(bundle),
            saved_model,
            object_graph,
            variables,
            style,
            declared: Vec::new(),
            meta,
            notes,
            keras: Vec::new(),
        })
    }

    /// Every file this source reads or depends on, for refusing an output
    /// that would overwrite one of them: the bundle's index and data files
    /// (V1: its files); the `checkpoint` state file and `PREFIX.meta`
    /// beside a checkpoint, when present; and for a SavedModel every file
    /// in its folder and in `variables/`.
    pub fn input_files(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = self.store.files().to_vec();
        let is_file = |p: &PathBuf| p.is_file();
        let bundle = match &self.store {
            Store::Bundle(b) => b,
            Store::Memory(_) => return out,
        };
        match &self.saved_model {
            Some(_) => {
                for dir in [self.path.clone(), self.path.join("variables")] {
                    if let Ok(rd) = std::fs::read_dir(&dir) {
                        out.extend(rd.flatten().map(|e| e.path()).filter(is_file));
                    }
                }
            }
            None => {
                let prefix = bundle.prefix();
                let mut meta = prefix.as_os_str().to_os_string();
                meta.push(".meta");
                let dir = match prefix.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                out.extend(
                    [PathBuf::from(meta), dir.join("checkpoint")]
                        .into_iter()
                        .filter(is_file),
                );
            }
        }
        out
    }

    /// The path as given to [`Source::open`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What kind of file this is.
    pub fn format(&self) -> SourceFormat {
        self.format
    }

    /// The naming style, which implies the TF API that wrote the variables.
    pub fn style(&self) -> NamingStyle {
        self.style
    }

    /// Things the user should know about how the path was read (e.g. a
    /// `checkpoint` file that named another machine's path).
    pub fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    /// The TF1 graph saved beside a checkpoint (`<prefix>.meta`), with its
    /// path, when there is one and it could be read. A `.meta` that is not a
    /// regular file or does not decode is not an error: the variables are
    /// still there; [`Source::notes`] says why the graph was left out.
    #[doc(hidden)]
    pub fn meta_graph(&self) -> Option<(&Path, &MetaGraphDef)> {
        self.meta.as_ref().map(|(p, m)| (p.as_path(), m))
    }

    /// Declares which variables form layers, for names that follow no
    /// convention (see `crate::mapping`); layer discovery
    /// (`crate::find::discover`) honours them before anything else.
    pub fn declare_layers(&mut self, mappings: Vec<LayerMapping>) {
        self.declared = mappings;
    }

    /// The mappings given to [`Source::declare_layers`].
    pub fn declared_layers(&self) -> &[LayerMapping] {
        &self.declared
    }

    /// The underlying tensor bundle, for checkpoints and SavedModels.
    #[doc(hidden)]
    pub fn bundle(&self) -> Option<&Bundle> {
        match &self.store {
            Store::Bundle(b) => Some(b),
            Store::Memory(_) => None,
        }
    }

    /// Where the tensors live.
    #[doc(hidden)]
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The SavedModel, when a SavedModel folder was opened.
    #[doc(hidden)]
    pub fn saved_model(&self) -> Option<&SavedModel> {
        self.saved_model.as_ref()
    }

    /// The TF2 object graph, when the checkpoint has one.
    #[doc(hidden)]
    pub fn object_graph(&self) -> Option<&ObjectGraph> {
        self.object_graph.as_ref()
    }

    /// Every variable, sorted by key.
    pub fn variables(&self) -> &[Variable] {
        &self.variables
    }

    /// The variable stored under `key`.
    pub fn variable(&self, key: &str) -> Option<&Variable> {
        self.variables
            .binary_search_by(|v| v.key.as_str().cmp(key))
            .ok()
            .map(|i| &self.variables[i])
    }

    /// Reads a tensor by key (crc-checked; see `Bundle::read`).
    pub fn read(&self, key: &str) -> Result<Tensor> {
        self.store.read(key)
    }

    /// A source over tensors decoded in memory (Keras HDF5 files, frozen
    /// graphs): `variables` describe the tensors in `store` (one per key),
    /// `graph` is a graph to discover layers and settings in (a frozen
    /// `GraphDef` wrapped in a `MetaGraphDef`), `notes` what the user should
    /// know about how the file was read.
    #[doc(hidden)]
    pub fn from_memory(
        path: &Path,
        format: SourceFormat,
        store: MemoryStore,
        variables: Vec<Variable>,
        style: NamingStyle,
        graph: Option<MetaGraphDef>,
        notes: Vec<String>,
    ) -> Source {
        let mut variables = variables;
        variables.sort_by(|a, b| a.key.cmp(&b.key));
        Source {
            path: path.to_path_buf(),
            format,
            store: Store::Memory(store),
            saved_model: None,
            object_graph: None,
            variables,
            style,
            declared: Vec::new(),
            meta: graph.map(|g| (path.to_path_buf(), g)),
            notes,
            keras: Vec::new(),
        }
    }

    /// Attaches the layer configs of a Keras model config, paired with this
    /// source's variables (the Keras readers call it).
    #[doc(hidden)]
    pub fn set_keras_layers(&mut self, layers: Vec<KerasLayerConfig>) {
        self.keras = layers;
    }

    /// The layer configs of the Keras model config that came with the file
    /// (or with `--hyper`); empty for other formats.
    pub fn keras_layers(&self) -> &[KerasLayerConfig] {
        &self.keras
    }

    /// Adds a note on how the file was read ([`Source::notes`]).
    #[doc(hidden)]
    pub fn push_note(&mut self, note: String) {
        self.notes.push(note);
    }
}

/// A TF1 `.meta` larger than this is not read (protobufs cannot exceed
/// 2 GiB).
const MAX_META_BYTES: u64 = i32::MAX as u64;

/// `<prefix>.meta` beside a checkpoint (TF1 `Saver` writes it by default):
/// `Ok(None)` when there is none, `Err(note)` when there is one that cannot
/// be used (not a regular file — never opened, so a FIFO cannot block —,
/// too large, unreadable, not a MetaGraphDef).
fn read_meta_beside(prefix: &Path) -> std::result::Result<Option<(PathBuf, MetaGraphDef)>, String> {
    let mut name = prefix.as_os_str().to_os_string();
    name.push(".meta");
    let path = PathBuf::from(name);
    let left_out =
        "its graph is left out, so hyper-parameters come from the variables and TF's defaults";
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}; {left_out}", path.display())),
    };
    if !meta.is_file() {
        return Err(format!(
            "{}: not a regular file; {left_out}",
            path.display()
        ));
    }
    if meta.len() > MAX_META_BYTES {
        return Err(format!(
            "{}: {} bytes is over the 2 GiB protobuf limit; {left_out}",
            path.display(),
            meta.len()
        ));
    }
    // Opened as a regular file only (the path may have been swapped for a
    // FIFO since the check above).
    let bytes =
        crate::fsx::read_regular(&path, MAX_META_BYTES).map_err(|e| format!("{e}; {left_out}"))?;
    match crate::proto::decode_proto::<MetaGraphDef>(&bytes, &path, "meta graph", "MetaGraphDef") {
        Ok(m) => Ok(Some((path, m))),
        Err(e) => Err(format!("{e}; {left_out}")),
    }
}

/// Optimizer slot suffixes TF1 optimizers append to a variable's name.
const TF1_SLOT_SUFFIXES: &[&str] = &[
    "Adam",
    "Adam_1",
    "AdamW",
    "AdamW_1",
    "Momentum",
    "RMSProp",
    "RMSProp_1",
    "Adagrad",
    "AdagradDA",
    "Adadelta",
    "Adadelta_1",
    "Ftrl",
    "Ftrl_1",
    "Nadam",
    "Nadam_1",
    "Adamax",
    "Adamax_1",
];

/// TF1 optimizer bookkeeping variables (not per-variable slots).
const TF1_OPTIMIZER_STATE: &[&str] = &["beta1_power", "beta2_power"];

fn last_component(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

fn role_from_name(key: &str) -> VariableRole {
    let last = last_component(key);
    if key == OBJECT_GRAPH_KEY || last == "global_step" || key.starts_with("save_counter/") {
        VariableRole::Bookkeeping
    } else if key
        .split('/')
        .any(|c| c.starts_with("ExponentialMovingAverage"))
    {
        VariableRole::EmaShadow
    } else if key.contains("/.OPTIMIZER_SLOT/") {
        VariableRole::OptimizerSlot
    } else if TF1_OPTIMIZER_STATE.contains(&last) {
        VariableRole::OptimizerState
    } else if key.contains('/') && TF1_SLOT_SUFFIXES.contains(&last) {
        VariableRole::OptimizerSlot
    } else {
        VariableRole::Model
    }
}

fn classify_tf1(bundle: &Bundle) -> Vec<Variable> {
    bundle
        .entries()
        .iter()
        .map(|e| Variable {
            key: e.key.clone(),
            name: e.key.clone(),
            paths: Vec::new(),
            dtype: e.dtype,
            shape: e.shape.clone(),
            partitioned: e.partitioned,
            role: role_from_name(&e.key),
        })
        .collect()
}

/// Child names that mark a node as an optimizer (tf_keras and Keras 3
/// optimizers keep their state as plain child nodes, not slot variables).
const OPTIMIZER_MARKERS: &[&str] = &["iter", "_iterations", "iterations", "iteration"];

fn is_optimizer_node(graph: &ObjectGraph, node: usize, slot_owners: &HashSet<usize>) -> bool {
    if slot_owners.contains(&node) {
        return true;
    }
    let children = graph.children(node);
    let has_marker = children
        .iter()
        .any(|(_, n)| OPTIMIZER_MARKERS.contains(&n.as_str()));
    let has_state = children.iter().any(|(_, n)| {
        matches!(
            n.as_str(),
            "_variables" | "learning_rate" | "_learning_rate" | "_trainable_variables"
        )
    });
    has_marker && has_state
}

/// Nodes reachable from the root without passing through an optimizer.
fn model_reachable(graph: &ObjectGraph, optimizer_nodes: &HashSet<usize>) -> Vec<bool> {
    let n = graph.node_count();
    let mut seen = vec![false; n];
    let mut queue = VecDeque::new();
    if n > 0 {
        seen[0] = true;
        queue.push_back(0usize);
    }
    while let Some(node) = queue.pop_front() {
        for (child, _) in graph.children(node) {
            let child = *child;
            if child < n && !seen[child] && !optimizer_nodes.contains(&child) {
                seen[child] = true;
                queue.push_back(child);
            }
        }
    }
    seen
}

fn detect_style(
    graph: &ObjectGraph,
    bundle: &Bundle,
    saved_model: Option<&SavedModel>,
) -> NamingStyle {
    if let Some(sm) = saved_model {
        if sm
            .keras_layers()
            .map(|l| l.iter().any(|m| m.identifier.starts_with("_tf_keras")))
            .unwrap_or(false)
        {
            return NamingStyle::TfKeras;
        }
    }
    let mut tf_keras = false;
    let mut keras3 = false;
    for node in 0..graph.node_count() {
        for (_, name) in graph.children(node) {
            if name.starts_with("layer_with_weights-") || name.starts_with("layer-") {
                tf_keras = true;
            }
            // `_all_variables`: Keras 3's `model.export` archive keeps the
            // backing tf.Variables of its Keras variables there (tf_keras's
            // archive has no such list), so an exported SavedModel names
            // the same style as the model's checkpoint.
            if name == "_operations"
                || name == "_functional"
                || name == "_kernel"
                || name == "_all_variables"
            {
                keras3 = true;
            }
        }
    }
    let _ = bundle;
    if keras3 {
        NamingStyle::Keras3
    } else if tf_keras {
        NamingStyle::TfKeras
    } else {
        NamingStyle::Tf2
    }
}

fn classify_tf2(
    bundle: &Bundle,
    graph: &ObjectGraph,
    saved_model: Option<&SavedModel>,
) -> (Vec<Variable>, NamingStyle) {
    let obj_vars = graph.variables();
    let slot_owners: HashSet<usize> = obj_vars
        .iter()
        .filter_map(|v| v.slot.as_ref().map(|s| s.optimizer_node_id))
        .collect();
    let optimizer_nodes: HashSet<usize> = (0..graph.node_count())
        .filter(|&n| is_optimizer_node(graph, n, &slot_owners))
        .collect();
    let reachable = model_reachable(graph, &optimizer_nodes);
    let style = detect_style(graph, bundle, saved_model);

    let by_key: std::collections::HashMap<&str, &crate::objgraph::ObjVariable> = obj_vars
        .iter()
        .map(|v| (v.checkpoint_key.as_str(), v))
        .collect();

    let variables = bundle
        .entries()
        .iter()
        .map(|e| {
            let obj = by_key.get(e.key.as_str());
            let mut role = role_from_name(&e.key);
            if let Some(obj) = obj {
                if role == VariableRole::Model {
                    if obj.slot.is_some() {
                        role = VariableRole::OptimizerSlot;
                    } else if !reachable.get(obj.node_id).copied().unwrap_or(false) {
                        // Keras optimizers keep `m`/`v` per variable and a few
                        // scalars; the per-variable ones are slots.
                        role = if e.shape.is_empty() {
                            VariableRole::OptimizerState
                        } else {
                            VariableRole::OptimizerSlot
                        };
                    }
                }
            }
            Variable {
                key: e.key.clone(),
                name: obj
                    .map(|o| o.full_name.clone())
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| strip_attribute_suffix(&e.key).to_string()),
                paths: obj.map(|o| o.paths.clone()).unwrap_or_default(),
                dtype: e.dtype,
                shape: e.shape.clone(),
                partitioned: e.partitioned,
                role,
            }
        })
        .collect();
    (variables, style)
}

/// `a/b/.ATTRIBUTES/VARIABLE_VALUE` → `a/b`.
pub fn strip_attribute_suffix(key: &str) -> &str {
    match key.find("/.ATTRIBUTES/") {
        Some(i) => &key[..i],
        None => key,
    }
}

crate::label::display_label!(NamingStyle, SourceFormat);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tf1_roles_from_names() {
        assert_eq!(role_from_name("bn/gamma"), VariableRole::Model);
        assert_eq!(role_from_name("bn/gamma/Adam"), VariableRole::OptimizerSlot);
        assert_eq!(
            role_from_name("bn/gamma/Adam_1"),
            VariableRole::OptimizerSlot
        );
        assert_eq!(role_from_name("beta1_power"), VariableRole::OptimizerState);
        assert_eq!(role_from_name("global_step"), VariableRole::Bookkeeping);
        assert_eq!(
            role_from_name("bn/moving_mean/ExponentialMovingAverage"),
            VariableRole::EmaShadow
        );
        assert_eq!(role_from_name(OBJECT_GRAPH_KEY), VariableRole::Bookkeeping);
        assert_eq!(
            role_from_name("save_counter/.ATTRIBUTES/VARIABLE_VALUE"),
            VariableRole::Bookkeeping
        );
        // A top-level variable that happens to be called "Momentum" is a model variable.
        assert_eq!(role_from_name("Momentum"), VariableRole::Model);
    }

    #[test]
    fn attribute_suffix_is_stripped() {
        assert_eq!(
            strip_attribute_suffix("m/bn/gamma/.ATTRIBUTES/VARIABLE_VALUE"),
            "m/bn/gamma"
        );
        assert_eq!(strip_attribute_suffix("bn/gamma"), "bn/gamma");
    }
}
