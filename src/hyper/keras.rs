//! Batch-norm configs in tf_keras's `keras_metadata.pb` (or the older
//! `SavedUserObject.metadata` JSON), read as inert data
//! ([`crate::savedmodel::SavedModel::keras_layers`]; nothing is executed).

use serde_json::Value;

use crate::error::Result;
use crate::hyper::RenormClipping;
use crate::layers::BnRole;
use crate::proto::saved_model::saved_object::Kind;
use crate::savedmodel::{SavedModel, KERAS_METADATA_PB, SAVED_MODEL_PB};

use super::graph::VarIndex;

/// One BatchNormalization layer's config.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KerasBn {
    /// Index of the layer it configures.
    pub layer: usize,
    /// `keras_metadata.pb`, or `saved_model.pb` for `user_object.metadata`.
    pub file: String,
    /// Node path (`root.layer_with_weights-1`).
    pub path: String,
    /// `config.epsilon`.
    pub epsilon: Option<f64>,
    /// `config.momentum`.
    pub momentum: Option<f64>,
    /// `config.axis` when it names one axis (tf_keras writes a list).
    pub axis: Option<i64>,
    /// `config.center`.
    pub center: Option<bool>,
    /// `config.scale`.
    pub scale: Option<bool>,
    /// `config.fused` when set to a bool (null = TF's choice).
    pub fused: Option<bool>,
    /// `config.renorm_clipping`: `Some` when the config has the key (an
    /// empty clipping for null).
    pub renorm_clipping: Option<RenormClipping>,
    /// `config.renorm_momentum`.
    pub renorm_momentum: Option<f64>,
    /// `config.virtual_batch_size`: `Some(None)` when the config says null.
    pub virtual_batch_size: Option<Option<u64>>,
    /// `config.synchronized` (Keras 3).
    pub synchronized: Option<bool>,
    /// The dtype policy's name (`config.dtype`: a string, or a
    /// `DTypePolicy` / `Policy` object).
    pub dtype_policy: Option<String>,
    /// True for a Keras model config ([`crate::source::KerasLayerConfig`]),
    /// false for SavedModel metadata.
    pub model_config: bool,
}

use crate::keras::config::is_batch_norm;

/// The BatchNormalization configs of a SavedModel, each tied to a layer
/// through the object graph: the metadata's node owns `moving_mean` (or
/// another BN variable) whose checkpoint key belongs to the layer.
pub(crate) fn configs(sm: &SavedModel, vars: &VarIndex) -> Result<Vec<KerasBn>> {
    let metas = sm.keras_layers()?;
    let Some(graph) = sm.object_graph() else {
        return Ok(Vec::new());
    };
    let file = if sm.keras_metadata().is_some() {
        KERAS_METADATA_PB
    } else {
        SAVED_MODEL_PB
    };
    let mut out = Vec::new();
    for m in metas {
        if !m.class_name.as_deref().is_some_and(is_batch_norm) {
            continue;
        }
        let Some(node) = m.node_id.and_then(|id| graph.nodes.get(id)) else {
            continue;
        };
        let n = graph.nodes.len();
        let layer = node.children.iter().find_map(|c| {
            BnRole::from_leaf(&c.local_name)?;
            let child = crate::objgraph::node_index(c.node_id, n)?;
            if !matches!(graph.nodes[child].kind, Some(Kind::Variable(_))) {
                return None;
            }
            let key = vars.key_of_node.get(&child)?;
            vars.layer_of_key.get(key).map(|(l, _)| *l)
        });
        let Some(layer) = layer else { continue };
        out.push(parse(
            layer,
            file.to_string(),
            m.node_path.clone(),
            &m.config,
            None,
            false,
        ));
    }
    Ok(out)
}

/// The BatchNormalization configs of a Keras model config, each tied to the
/// layer that owns one of its weights.
pub(crate) fn from_model_config(
    layers: &[crate::source::KerasLayerConfig],
    vars: &VarIndex,
) -> Vec<KerasBn> {
    let mut out = Vec::new();
    for l in layers.iter().filter(|l| is_batch_norm(&l.class_name)) {
        let Some(layer) = l
            .weights
            .iter()
            .find_map(|(_, key)| vars.layer_of_key.get(key).map(|(i, _)| *i))
        else {
            continue;
        };
        let mut k = parse(
            layer,
            l.file.clone(),
            l.json_path.clone(),
            &l.config,
            l.input_rank,
            true,
        );
        // tf_keras never writes `fused`: Keras rebuilds the layer with
        // `fused=None`, and its build picks the fused kernel for a rank-4
        // or 5 input with the channel axis 1 or last, without renorm or
        // ghost batches. With the input rank known that is a fact of the
        // file.
        if l.tf_keras && k.fused.is_none() && l.config.get("fused").is_none() {
            if let (Some(rank), Some(axis)) = (l.input_rank, k.axis) {
                let renorm = l.config.get("renorm").and_then(Value::as_bool) == Some(true);
                let ghost = matches!(k.virtual_batch_size, Some(Some(_)));
                k.fused = Some(
                    usize::try_from(axis)
                        .is_ok_and(|a| matches!(rank, 4 | 5) && (a == 1 || a + 1 == rank))
                        && !renorm
                        && !ghost,
                );
            }
        }
        out.push(k);
    }
    out
}

/// One BatchNormalization config object. A negative axis is made
/// non-negative with `input_rank` where known.
fn parse(
    layer: usize,
    file: String,
    path: String,
    c: &Value,
    input_rank: Option<usize>,
    model_config: bool,
) -> KerasBn {
    // null: off; a number: the size (0 is kept, for the layer to
    // refuse); anything else is left unrecovered.
    let virtual_batch_size = match c.get("virtual_batch_size") {
        Some(Value::Null) => Some(None),
        Some(v) => v.as_u64().map(Some),
        None => None,
    };
    let axis = match c.get("axis") {
        Some(Value::Array(a)) if a.len() == 1 => a[0].as_i64(),
        Some(v) => v.as_i64(),
        None => None,
    };
    // With ghost batches, build() shifts the layer's axis by one for the
    // inserted dimension and the saved config keeps the shifted value
    // (`[4]` for a 4-D input; tf_keras cannot load such a model back).
    let axis = match (axis, virtual_batch_size) {
        (Some(a), Some(Some(_))) if a > 0 => Some(a - 1),
        (a, _) => a,
    };
    let axis = match (axis, input_rank.and_then(|r| i64::try_from(r).ok())) {
        (Some(a), Some(r)) if a < 0 && a >= -r => Some(a + r),
        (a, _) => a,
    };
    // null: no clipping; an object: its bounds; anything else is not a
    // config Keras writes and is left unrecovered.
    let renorm_clipping = match c.get("renorm_clipping") {
        Some(Value::Null) => Some(RenormClipping::default()),
        Some(Value::Object(o)) => {
            let get = |k: &str| o.get(k).and_then(Value::as_f64);
            Some(RenormClipping {
                rmax: get("rmax"),
                rmin: get("rmin"),
                dmax: get("dmax"),
            })
        }
        _ => None,
    };
    KerasBn {
        layer,
        file,
        path,
        epsilon: c.get("epsilon").and_then(Value::as_f64),
        momentum: c.get("momentum").and_then(Value::as_f64),
        axis,
        center: c.get("center").and_then(Value::as_bool),
        scale: c.get("scale").and_then(Value::as_bool),
        fused: c.get("fused").and_then(Value::as_bool),
        renorm_clipping,
        renorm_momentum: c.get("renorm_momentum").and_then(Value::as_f64),
        virtual_batch_size,
        // (Read from model configs only; SavedModel metadata keeps its
        // established report.)
        synchronized: c
            .get("synchronized")
            .and_then(Value::as_bool)
            .filter(|_| model_config),
        dtype_policy: match c.get("dtype").filter(|_| model_config) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Object(o)) => o
                .get("config")
                .and_then(|c| c.get("name"))
                .and_then(Value::as_str)
                .map(str::to_string),
            _ => None,
        },
        model_config,
    }
}
