//! Keras files: Keras 3 `.keras` archives and `.weights.h5`, Keras 2 /
//! tf_keras whole-model and weights-only `.h5` (docs/formats.md#keras-files).
//!
//! Every dataset of the weights HDF5 file becomes a variable whose *key* is
//! its path from the file's root (no leading slash; for a `.keras` archive,
//! the path inside its `model.weights.h5`) and whose *name* is
//! `<layer path>/<weight name>` without `:0`:
//!
//! | file | key | name |
//! |---|---|---|
//! | Keras 3 | `layers/batch_normalization/vars/0` | `bn/gamma` |
//! | Keras 2 whole model | `model_weights/bn/bn/gamma:0` | `bn/gamma` |
//! | Keras 2 weights only | `bn/bn/gamma:0` | `bn/gamma` |
//!
//! Keras 3 stores a layer's variables by index (`vars/0`, `vars/1`, …) in
//! the order its `build` creates them; for a BatchNormalization that is
//! gamma (with `scale`), beta (with `center`), moving_mean,
//! moving_variance, then renorm's moving_stddev, renorm_mean and
//! renorm_stddev. The model config says which of `center`/`scale` are on;
//! without one, a count that two settings explain (3 or 6 vectors) is not
//! guessed: the layer is left for the user to declare (`--bn`, or a
//! config with `--hyper`). Other Keras 3 variables are named by index
//! (`conv1/0`).
//!
//! The model config (`config.json`, `model_config`, or one given with
//! `--hyper`) is attached to the [`Source`] as [`KerasLayerConfig`]s, which
//! layer discovery and hyper-parameter recovery read.

mod archive;
pub mod config;
mod h5;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::source::{
    KerasLayerConfig, MemoryStore, NamingStyle, Source, SourceFormat, Variable, VariableRole,
};
use crate::Tensor;

pub use archive::MAX_MEMBER_BYTES;
pub use h5::{MAX_DATASET_BYTES, MAX_DEPTH, MAX_OBJECTS};

/// Which Keras container a file is, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// An HDF5 file (`.h5`, `.weights.h5`).
    Hdf5,
    /// A Keras 3 `.keras` zip archive.
    Archive,
}

/// The most bytes an HDF5 file may have (it is read into memory).
const MAX_FILE_BYTES: u64 = 16 << 30;

/// A Keras model config from outside the weights file (`--hyper m.keras`
/// or `--hyper config.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalConfig {
    /// The file as given.
    pub file: String,
    /// The config document.
    pub doc: Value,
}

/// Opens a Keras file as a [`Source`].
pub fn open(path: &Path, container: Container) -> Result<Source> {
    open_with(path, container, None)
}

/// Reads `path` as a Keras model config when it is one: a `.keras` archive
/// (its `config.json`), a Keras 2 whole-model `.h5` (its `model_config`),
/// or a JSON file holding a model config (top-level `class_name` and
/// `config`, as `model.to_json()` writes it). `Ok(None)`: some other file (a `--hyper`
/// sidecar of declarations).
pub fn read_config_file(path: &Path) -> Result<Option<ExternalConfig>> {
    let file = path.to_string_lossy().into_owned();
    let invalid = |file: &str, why: String| Error::KerasConfigInvalid {
        path: path.to_path_buf(),
        file: file.to_string(),
        why,
    };
    match crate::sniff::identify(path) {
        Some(crate::sniff::Foreign::KerasZip) => {
            let a = archive::read(path)?;
            let doc = a.config.ok_or_else(|| Error::KerasArchiveInvalid {
                path: path.to_path_buf(),
                why: "no config.json member".into(),
            })?;
            config::check(&doc).map_err(|why| invalid("config.json", why))?;
            return Ok(Some(ExternalConfig { file, doc }));
        }
        Some(crate::sniff::Foreign::Hdf5) => {
            let h5 = h5::H5::from_bytes(crate::fsx::read_regular(path, MAX_FILE_BYTES)?, path)?;
            let text = h5.string(&h5.root()?, "model_config")?.ok_or_else(|| {
                invalid(
                    "model_config",
                    "the file has no model_config attribute (weights-only files hold no config)"
                        .into(),
                )
            })?;
            let doc: Value = serde_json::from_str(&text)
                .map_err(|e| invalid("model_config", format!("JSON: {e}")))?;
            config::check(&doc).map_err(|why| invalid("model_config", why))?;
            return Ok(Some(ExternalConfig { file, doc }));
        }
        _ => {}
    }
    let bytes = crate::fsx::read_regular(path, 256 << 20)?;
    let text = String::from_utf8_lossy(&bytes);
    if !text.trim_start().starts_with('{') {
        return Ok(None);
    }
    let Ok(doc) = serde_json::from_str::<Value>(&text) else {
        return Ok(None);
    };
    Ok(config::is_model_config(&doc).then_some(ExternalConfig { file, doc }))
}

/// Re-reads a Keras `source` with the model config `cfg` (given with
/// `--hyper`) in place of the file's own: its layers, their variables'
/// roles and their settings then come from `cfg`, with `cfg`'s file as
/// provenance. Layers declared on `source` are kept.
pub fn with_config(source: Source, cfg: &ExternalConfig) -> Result<Source> {
    let container = match source.format() {
        SourceFormat::KerasArchive => Container::Archive,
        SourceFormat::Keras3WeightsH5 | SourceFormat::Keras2H5 | SourceFormat::Keras2WeightsH5 => {
            Container::Hdf5
        }
        other => {
            return Err(Error::KerasConfigNotApplicable {
                path: source.path().to_path_buf(),
                config: cfg.file.clone(),
                format: other.label(),
            })
        }
    };
    let declared = source.declared_layers().to_vec();
    let mut out = open_with(source.path(), container, Some(cfg))?;
    out.declare_layers(declared);
    Ok(out)
}

/// The weights file's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Keras 3: objects with `vars/N` datasets.
    Keras3,
    /// Keras 2: layer groups with `weight_names`, under this prefix.
    Keras2 { whole_model: bool },
}

/// One dataset, with what the reader made of it.
struct Var {
    key: String,
    name: String,
    tensor: Tensor,
    role: VariableRole,
}

/// A Keras 3 object (a layer, a model, the optimizer): a group with a
/// `vars` child.
#[derive(Debug)]
struct Object {
    /// HDF5 path of the group (`layers/batch_normalization`).
    h5_path: String,
    /// Path of names (`inner/bn`); empty for the model itself.
    layer_path: String,
    /// `vars/N` keys by index.
    vars: Vec<(usize, String)>,
    /// True under the top-level `optimizer` group.
    optimizer: bool,
    /// True when `vars` carries the layer's `name` (recent Keras 3).
    named: bool,
}

fn open_with(
    path: &Path,
    container: Container,
    external: Option<&ExternalConfig>,
) -> Result<Source> {
    let file_name = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_string_lossy().into_owned());
    let mut notes = Vec::new();
    let (bytes, own_config, h5_path) = match container {
        Container::Archive => {
            let a = archive::read(path)?;
            if let Some(v) = a
                .metadata
                .as_ref()
                .and_then(|m| m.get("keras_version"))
                .and_then(Value::as_str)
            {
                notes.push(format!("written by Keras {v}"));
            }
            let cfg = a
                .config
                .map(|doc| (doc, format!("{file_name}: config.json")));
            (a.weights, cfg, path.join("model.weights.h5"))
        }
        Container::Hdf5 => (
            crate::fsx::read_regular(path, MAX_FILE_BYTES)?,
            None,
            path.to_path_buf(),
        ),
    };
    let h5 = h5::H5::from_bytes(bytes, &h5_path)?;
    let root = h5.root()?;
    let (root_groups, root_datasets) = h5.members(&root)?;
    let root_attrs = h5.attribute_names(&root)?;
    let has_attr = |n: &str| root_attrs.iter().any(|a| a == n);
    let layout = if container == Container::Archive {
        Layout::Keras3
    } else if has_attr("model_config") || root_groups.iter().any(|g| g == "model_weights") {
        Layout::Keras2 { whole_model: true }
    } else if has_attr("layer_names") || has_attr("layer_names0") {
        Layout::Keras2 { whole_model: false }
    } else if root_groups.iter().any(|g| g == "vars" || g == "layers") {
        Layout::Keras3
    } else {
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.iter().take(8).cloned().collect::<Vec<_>>().join(", ")
            }
        };
        return Err(Error::Hdf5NotKeras {
            path: path.to_path_buf(),
            what: format!(
                "top-level groups: {}; datasets: {}; attributes: {}",
                list(&root_groups),
                list(&root_datasets),
                list(&root_attrs)
            ),
        });
    };
    let format = match (container, layout) {
        (Container::Archive, _) => SourceFormat::KerasArchive,
        (_, Layout::Keras3) => SourceFormat::Keras3WeightsH5,
        (_, Layout::Keras2 { whole_model: true }) => SourceFormat::Keras2H5,
        (_, Layout::Keras2 { whole_model: false }) => SourceFormat::Keras2WeightsH5,
    };

    // The model config: a sidecar's wins over the file's own.
    let own_config = match (own_config, layout) {
        (Some(c), _) => Some(c),
        (None, Layout::Keras2 { .. }) => match h5.string(&root, "model_config")? {
            Some(text) => {
                let doc: Value =
                    serde_json::from_str(&text).map_err(|e| Error::KerasConfigInvalid {
                        path: path.to_path_buf(),
                        file: "model_config".into(),
                        why: format!("JSON: {e}"),
                    })?;
                Some((doc, format!("{file_name}: model_config")))
            }
            None => None,
        },
        (None, Layout::Keras3) => None,
    };
    if let Some((doc, file)) = &own_config {
        if let Err(why) = config::check(doc) {
            return Err(Error::KerasConfigInvalid {
                path: path.to_path_buf(),
                file: file.clone(),
                why,
            });
        }
    }
    if let Layout::Keras2 { .. } = layout {
        if let Some(v) = h5.string(&root, "keras_version")? {
            notes.push(format!("written by Keras {v}"));
        }
    }
    let config_doc: Option<(Value, String)> = match external {
        Some(e) => {
            if own_config.is_some() {
                notes.push(format!(
                    "the model config {} replaces the file's own",
                    e.file
                ));
            }
            Some((e.doc.clone(), e.file.clone()))
        }
        None => own_config,
    };
    let parsed = config_doc.as_ref().map(|(doc, _)| config::parse(doc));
    if let Some(p) = &parsed {
        notes.extend(p.notes.iter().cloned());
        // A negative axis stays as written where nothing tells the rank.
        let kept: Vec<&str> = p
            .layers
            .iter()
            .filter(|e| config::is_batch_norm(&e.class_name) && e.input_rank.is_none())
            .filter(|e| {
                let a = e.config.get("axis");
                let first = a.and_then(|a| a.as_array().and_then(|l| l.first())).or(a);
                first.and_then(Value::as_i64).is_some_and(|v| v < 0)
            })
            .map(|e| e.path.as_str())
            .collect();
        if !kept.is_empty() {
            notes.push(format!(
                "{}: a negative axis is kept as written (−1 = last), the config recording no \
                 input rank for these layers",
                kept.join(", ")
            ));
        }
    }

    // Every dataset.
    let mut tensors: BTreeMap<String, Tensor> = BTreeMap::new();
    let mut skipped = Vec::new();
    for d in h5.datasets()? {
        match d.tensor {
            Some(t) => {
                tensors.insert(d.key, t);
            }
            None => skipped.push(format!("{} ({})", d.key, d.skipped.unwrap_or_default())),
        }
    }
    if !skipped.is_empty() {
        notes.push(format!(
            "{} dataset(s) left out, their element types having no TF dtype: {}",
            skipped.len(),
            skipped.join(", ")
        ));
    }

    let (vars, keras_layers, style) = match layout {
        Layout::Keras3 => {
            let (v, k) = keras3(
                &h5,
                &mut tensors,
                parsed.as_ref(),
                config_doc.as_ref().map(|c| c.1.as_str()),
                &mut notes,
            )?;
            (v, k, NamingStyle::Keras3)
        }
        Layout::Keras2 { whole_model } => {
            let (v, k) = keras2(
                &h5,
                whole_model,
                &mut tensors,
                parsed.as_ref(),
                config_doc.as_ref().map(|c| c.1.as_str()),
                &mut notes,
            )?;
            (v, k, NamingStyle::TfKeras)
        }
    };
    if config_doc.is_none() {
        notes.push(
            "no model config: settings are TF's defaults unless declared (the model's .keras \
             file or its config JSON declares them)"
                .into(),
        );
    }
    let mut variables = Vec::with_capacity(vars.len());
    let mut store = Vec::with_capacity(vars.len());
    for v in vars {
        variables.push(Variable {
            key: v.key.clone(),
            name: v.name,
            paths: Vec::new(),
            dtype: v.tensor.dtype,
            shape: v.tensor.shape.clone(),
            partitioned: false,
            role: v.role,
        });
        store.push((v.key, v.tensor));
    }
    let mut source = Source::from_memory(
        path,
        format,
        MemoryStore::new(vec![path.to_path_buf()], store),
        variables,
        style,
        None,
        notes,
    );
    source.set_keras_layers(keras_layers);
    Ok(source)
}

/// Config entries by layer path.
fn by_path(parsed: Option<&config::Parsed>) -> BTreeMap<&str, &config::Entry> {
    parsed
        .map(|p| p.layers.iter().map(|e| (e.path.as_str(), e)).collect())
        .unwrap_or_default()
}

fn layer_config(
    e: &config::Entry,
    file: &str,
    weights: Vec<(String, String)>,
    tf_keras: bool,
) -> KerasLayerConfig {
    KerasLayerConfig {
        tf_keras,
        path: e.path.clone(),
        class_name: e.class_name.clone(),
        config: e.config.clone(),
        file: file.to_string(),
        json_path: e.json_path.clone(),
        input_rank: e.input_rank,
        weights,
    }
}

fn role_of_optimizer(t: &Tensor) -> VariableRole {
    if t.shape.is_empty() {
        VariableRole::OptimizerState
    } else {
        VariableRole::OptimizerSlot
    }
}

/// Keras's names for a batch norm's weights: the role names.
const BN_WEIGHTS: [&str; 7] = crate::mapping::ROLE_NAMES;

/// A config flag (`center`, `scale`, `renorm`), TF's default when absent.
fn flag(config: &Value, name: &str, default: bool) -> bool {
    config.get(name).and_then(Value::as_bool).unwrap_or(default)
}

/// The weight names a Keras 3 BatchNormalization creates, in order.
fn bn_order(center: bool, scale: bool, renorm: bool) -> Vec<&'static str> {
    let mut out = Vec::new();
    if scale {
        out.push("gamma");
    }
    if center {
        out.push("beta");
    }
    out.extend(["moving_mean", "moving_variance"]);
    if renorm {
        out.extend(["moving_stddev", "renorm_mean", "renorm_stddev"]);
    }
    out
}

/// True when a Keras 3 group name is Keras's name for a batch-norm class
/// (`batch_normalization`, `batch_normalization_3`,
/// `sync_batch_normalization`).
fn is_bn_group_name(name: &str) -> bool {
    let base = match name.rsplit_once('_') {
        Some((b, n)) if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => b,
        _ => name,
    };
    matches!(base, "batch_normalization" | "sync_batch_normalization")
}

/// True when a layer name suggests a normalization (`bn`, `bn_top`,
/// `batch_norm1`, `norm`).
fn looks_like_bn(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.split(|c: char| !c.is_ascii_alphanumeric())
        .any(|w| w.starts_with("bn") || w.ends_with("bn"))
        || n.contains("batch_norm")
        || n.contains("batchnorm")
        || n.contains("norm")
}

fn keras3(
    h5: &h5::H5,
    tensors: &mut BTreeMap<String, Tensor>,
    parsed: Option<&config::Parsed>,
    config_file: Option<&str>,
    notes: &mut Vec<String>,
) -> Result<(Vec<Var>, Vec<KerasLayerConfig>)> {
    let mut objects = Vec::new();
    let root = h5.root()?;
    k3_walk(h5, &root, "", "", 0, false, &mut objects)?;
    let entries = by_path(parsed);
    // Files without `name` attributes (older Keras 3): the config's layers
    // by the group Keras 3 stores them under.
    let by_group: BTreeMap<&str, &config::Entry> = parsed
        .map(|p| {
            p.layers
                .iter()
                .filter(|e| !e.keras3_group.is_empty())
                .map(|e| (e.keras3_group.as_str(), e))
                .collect()
        })
        .unwrap_or_default();
    let mut vars = Vec::new();
    let mut configs = Vec::new();
    let mut seen_paths: std::collections::BTreeSet<String> = Default::default();
    let mut ambiguous = Vec::new();
    for obj in &mut objects {
        if !obj.named {
            if let Some(e) = by_group.get(obj.h5_path.as_str()) {
                obj.layer_path = e.path.clone();
            }
        }
    }
    for obj in &objects {
        seen_paths.insert(obj.layer_path.clone());
        let group_name = obj.h5_path.rsplit('/').next().unwrap_or_default();
        let vectors: Vec<&Tensor> = obj
            .vars
            .iter()
            .filter_map(|(_, k)| tensors.get(k))
            .collect();
        let equal_vectors = !vectors.is_empty()
            && vectors
                .iter()
                .all(|t| t.shape.len() == 1 && t.shape == vectors[0].shape);
        let entry = entries.get(obj.layer_path.as_str()).copied();
        let mut roles: Option<Vec<&'static str>> = None;
        if obj.optimizer {
            // named below
        } else if let Some(e) = entry.filter(|e| config::is_batch_norm(&e.class_name)) {
            let order = bn_order(
                flag(&e.config, "center", true),
                flag(&e.config, "scale", true),
                flag(&e.config, "renorm", false),
            );
            if order.len() == obj.vars.len() && equal_vectors {
                let weights = order
                    .iter()
                    .zip(&obj.vars)
                    .map(|(r, (_, k))| (r.to_string(), k.clone()))
                    .collect();
                if let Some(file) = config_file {
                    configs.push(layer_config(e, file, weights, false));
                }
                roles = Some(order);
            } else {
                notes.push(format!(
                    "{}: the config's BatchNormalization {} has {} variables where its settings \
                     make {}; left out",
                    obj.h5_path,
                    e.path,
                    obj.vars.len(),
                    order.len()
                ));
            }
        } else if entry.is_none() && equal_vectors {
            // No config entry (weights only, or inside a subclassed model):
            // the group's class name or the layer's name and the variables'
            // count and shapes.
            let named_bn = is_bn_group_name(group_name)
                || looks_like_bn(group_name)
                || looks_like_bn(&obj.layer_path);
            if named_bn {
                match obj.vars.len() {
                    4 => roles = Some(bn_order(true, true, false)),
                    7 => roles = Some(bn_order(true, true, true)),
                    2 if is_bn_group_name(group_name) => {
                        roles = Some(bn_order(false, false, false))
                    }
                    5 if is_bn_group_name(group_name) => roles = Some(bn_order(false, false, true)),
                    3 | 6 if is_bn_group_name(group_name) || looks_like_bn(group_name) => {
                        ambiguous.push(format!("{} ({})", obj.layer_path, obj.h5_path));
                    }
                    _ => {}
                }
            }
        }
        for (i, (index, key)) in obj.vars.iter().enumerate() {
            let Some(tensor) = tensors.remove(key) else {
                continue;
            };
            let (name, role) = if obj.optimizer {
                (format!("optimizer/{index}"), role_of_optimizer(&tensor))
            } else {
                let leaf = match roles.as_ref().and_then(|r| r.get(i)) {
                    Some(r) => r.to_string(),
                    None => index.to_string(),
                };
                let name = if obj.layer_path.is_empty() {
                    leaf
                } else {
                    format!("{}/{leaf}", obj.layer_path)
                };
                (name, VariableRole::Model)
            };
            vars.push(Var {
                key: key.clone(),
                name,
                tensor,
                role,
            });
        }
    }
    if !ambiguous.is_empty() {
        notes.push(format!(
            "{}: batch norm with center or scale off, and no config says which (3 or 6 vectors); \
             give the model's config (its .keras file or config JSON), or declare the roles \
             as a layer mapping `LAYER:gamma=0,moving_mean=1,moving_variance=2`",
            ambiguous.join(", ")
        ));
    }
    // Datasets outside any `vars` group keep their key as name.
    for (key, tensor) in std::mem::take(tensors) {
        let role = if key.starts_with("optimizer/") {
            role_of_optimizer(&tensor)
        } else {
            VariableRole::Model
        };
        vars.push(Var {
            name: key.clone(),
            key,
            tensor,
            role,
        });
    }
    if let Some(p) = parsed {
        let missing: Vec<&str> = p
            .layers
            .iter()
            .filter(|e| config::is_batch_norm(&e.class_name) && !seen_paths.contains(&e.path))
            .map(|e| e.path.as_str())
            .collect();
        if !missing.is_empty() {
            notes.push(format!(
                "the config's batch norm(s) {} have no variables in the weights file",
                missing.join(", ")
            ));
        }
        if !p.lists_layers {
            notes.push(format!(
                "the config of {} lists no layers (a subclassed model): batch norms are found \
                 by their variables, with TF's default settings",
                p.model_class.as_deref().unwrap_or("the model")
            ));
        }
    }
    Ok((vars, configs))
}

fn k3_walk(
    h5: &h5::H5,
    g: &hdf5_reader::group::Group,
    h5_path: &str,
    prefix: &str,
    depth: usize,
    optimizer: bool,
    out: &mut Vec<Object>,
) -> Result<()> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    let (groups, _) = h5.members(g)?;
    let join = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_string()
        } else {
            format!("{a}/{b}")
        }
    };
    let mut layer_path = prefix.to_string();
    if groups.iter().any(|n| n == "vars") {
        let vg = g.group("vars").map_err(|e| Error::Hdf5Unreadable {
            path: h5.path.clone(),
            why: e.to_string(),
        })?;
        let (_, datasets) = h5.members(&vg)?;
        let mut vars: Vec<(usize, String)> = datasets
            .iter()
            .filter_map(|d| {
                d.parse::<usize>()
                    .ok()
                    .map(|i| (i, join(&join(h5_path, "vars"), d)))
            })
            .collect();
        vars.sort();
        let given = h5.string(&vg, "name")?;
        let named = given.is_some();
        if !h5_path.is_empty() && !optimizer {
            let own = h5_path.rsplit('/').next().unwrap_or_default().to_string();
            layer_path = join(prefix, &given.unwrap_or(own));
        }
        out.push(Object {
            h5_path: h5_path.to_string(),
            layer_path: layer_path.clone(),
            vars,
            optimizer,
            named,
        });
    }
    for name in groups.iter().filter(|n| *n != "vars") {
        let child = g.group(name).map_err(|e| Error::Hdf5Unreadable {
            path: h5.path.clone(),
            why: e.to_string(),
        })?;
        let opt = optimizer || (h5_path.is_empty() && name == "optimizer");
        k3_walk(
            h5,
            &child,
            &join(h5_path, name),
            &layer_path,
            depth + 1,
            opt,
            out,
        )?;
    }
    Ok(())
}

/// The name of a Keras 2 weight: the weight's own name (TF's variable name,
/// `bn/gamma:0`) from the layer's name on (`net/block/bn/gamma:0` in layer
/// `block` → `block/bn/gamma`), else prefixed with the layer's name (`bn/gamma:0`
/// in nested model `inner` → `inner/bn/gamma`); a scope that is the layer's
/// name uniquified by TF (`bn_1/gamma:0` in layer `bn`) counts as the
/// layer's.
pub fn keras2_name(layer: &str, weight: &str) -> String {
    let w = match weight.rsplit_once(':') {
        Some((w, n)) if n.bytes().all(|c| c.is_ascii_digit()) => w,
        _ => weight,
    };
    let comps: Vec<&str> = w.split('/').collect();
    if let Some(i) = comps.iter().position(|c| *c == layer) {
        return comps[i..].join("/");
    }
    if comps.len() == 2 {
        if let Some(rest) = comps[0].strip_prefix(layer) {
            if rest.len() > 1
                && rest.starts_with('_')
                && rest[1..].bytes().all(|c| c.is_ascii_digit())
            {
                return format!("{layer}/{}", comps[1]);
            }
        }
    }
    format!("{layer}/{w}")
}

fn keras2(
    h5: &h5::H5,
    whole_model: bool,
    tensors: &mut BTreeMap<String, Tensor>,
    parsed: Option<&config::Parsed>,
    config_file: Option<&str>,
    notes: &mut Vec<String>,
) -> Result<(Vec<Var>, Vec<KerasLayerConfig>)> {
    let prefix = if whole_model { "model_weights/" } else { "" };
    let mut vars = Vec::new();
    let Some(wg) = h5.group(prefix.trim_end_matches('/'))? else {
        notes.push("the file has no model_weights group: no weights".into());
        return Ok((Vec::new(), Vec::new()));
    };
    let layer_names = match h5.chunked_strings(&wg, "layer_names")? {
        Some(l) => l,
        None => {
            let (groups, _) = h5.members(&wg)?;
            groups
        }
    };
    for layer in &layer_names {
        let Some(lg) = h5.group(&format!("{prefix}{layer}"))? else {
            notes.push(format!("layer {layer} is listed but has no group"));
            continue;
        };
        let weights: Vec<String> = h5.chunked_strings(&lg, "weight_names")?.unwrap_or_default();
        for w in weights {
            let key = format!("{prefix}{layer}/{w}");
            let Some(tensor) = tensors.remove(&key) else {
                continue;
            };
            vars.push(Var {
                key,
                name: keras2_name(layer, &w),
                tensor,
                role: VariableRole::Model,
            });
        }
    }
    // Everything else: optimizer state, weights no list names.
    for (key, tensor) in std::mem::take(tensors) {
        let (name, role) = if let Some(rest) = key.strip_prefix("optimizer_weights/") {
            let n = rest.rsplit_once(':').map_or(rest, |(a, _)| a).to_string();
            let r = role_of_optimizer(&tensor);
            (format!("optimizer/{n}"), r)
        } else {
            let rel = key.strip_prefix(prefix).unwrap_or(&key);
            let name = match rel.split_once('/') {
                Some((layer, w)) => keras2_name(layer, w),
                None => rel.to_string(),
            };
            (name, VariableRole::Model)
        };
        vars.push(Var {
            key,
            name,
            tensor,
            role,
        });
    }
    // Pair the config's batch norms with the weights by name.
    let mut configs = Vec::new();
    if let (Some(p), Some(file)) = (parsed, config_file) {
        let by_name: BTreeMap<&str, &Var> = vars
            .iter()
            .filter(|v| v.role == VariableRole::Model)
            .map(|v| (v.name.as_str(), v))
            .collect();
        for e in p
            .layers
            .iter()
            .filter(|e| config::is_batch_norm(&e.class_name))
        {
            let weights: Vec<(String, String)> = BN_WEIGHTS
                .iter()
                .filter_map(|w| {
                    let v = by_name.get(format!("{}/{w}", e.path).as_str())?;
                    Some((w.to_string(), v.key.clone()))
                })
                .collect();
            if weights.is_empty() {
                notes.push(format!(
                    "the config's batch norm {} has no variables in the weights file",
                    e.path
                ));
                continue;
            }
            configs.push(layer_config(e, file, weights, true));
        }
    }
    Ok((vars, configs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keras2_names_start_at_the_layer() {
        assert_eq!(keras2_name("bn", "bn/gamma:0"), "bn/gamma");
        assert_eq!(keras2_name("inner", "bn/gamma:0"), "inner/bn/gamma");
        assert_eq!(keras2_name("block", "net/block/bn/beta:0"), "block/bn/beta");
        assert_eq!(
            keras2_name("batch_normalization_1", "batch_normalization_1_1/beta:0"),
            "batch_normalization_1/beta"
        );
        assert_eq!(keras2_name("bn", "bnx_1/beta:0"), "bn/bnx_1/beta");
    }

    #[test]
    fn bn_orders_follow_build() {
        assert_eq!(
            bn_order(false, true, false),
            ["gamma", "moving_mean", "moving_variance"]
        );
        assert_eq!(bn_order(true, true, true).len(), 7);
        assert!(is_bn_group_name("batch_normalization_12"));
        assert!(!is_bn_group_name("batch_normalization_x"));
        assert!(looks_like_bn("bn_top"));
    }
}
