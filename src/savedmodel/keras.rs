//! Keras layer metadata of a SavedModel, parsed as inert JSON.
//!
//! tf_keras `model.save(dir)` writes each layer's JSON (`class_name`,
//! `config` with `axis`, `momentum`, `epsilon`, …) to `keras_metadata.pb`;
//! older writers kept it in `SavedUserObject.metadata`. Keras 3 stores none
//! at all (`_generic_user_object` nodes with empty metadata,
//! `docs/formats.md#keras-metadata`).
//!
//! The JSON is only ever data: a `Lambda` layer's pickled function or a
//! custom class name is a string in [`KerasLayerMeta::config`], never
//! resolved or run (CVE-2024-3660).

use serde_json::Value;

use crate::error::{Error, Result};
use crate::objgraph::{enumerate_paths, unescape_local_name};
use crate::proto::saved_model::saved_object::Kind;

use super::SavedModel;

/// One Keras object's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct KerasLayerMeta {
    /// `SavedObjectGraph` node id, when known.
    pub node_id: Option<usize>,
    /// Python-style path, e.g. `root.layer_with_weights-1`.
    pub node_path: String,
    /// Identifier, e.g. `_tf_keras_layer`, `_tf_keras_sequential`.
    pub identifier: String,
    /// JSON `class_name` (`BatchNormalization`).
    pub class_name: Option<String>,
    /// JSON `name`, else `config.name`.
    pub name: Option<String>,
    /// JSON `config` (`Value::Null` when absent or unparsable).
    pub config: Value,
    /// Why the metadata JSON could not be parsed, when it could not.
    pub metadata_error: Option<String>,
}

impl SavedModel {
    /// Keras metadata of every Keras object: from `keras_metadata.pb` when
    /// present, else from the non-empty `user_object.metadata` of the object
    /// graph's nodes (node paths then follow the shortest path from the
    /// root). Empty for Keras 3 SavedModels, which store no layer configs.
    ///
    /// A metadata string that is not JSON does not fail the call: the entry
    /// gets [`KerasLayerMeta::metadata_error`]. A `keras_metadata.pb` node id
    /// outside the object graph is [`Error::SavedModelInvalid`].
    pub fn keras_layers(&self) -> Result<Vec<KerasLayerMeta>> {
        let node_count = self.object_graph().map(|g| g.nodes.len());
        if let Some(meta) = self.keras_metadata() {
            return meta
                .nodes
                .iter()
                .map(|n| {
                    let node_id = match (usize::try_from(n.node_id), node_count) {
                        (Ok(id), Some(count)) if id < count => Some(id),
                        (Ok(id), None) => Some(id),
                        _ => {
                            return Err(Error::SavedModelInvalid {
                                path: self.keras_metadata_path.clone(),
                                what: format!(
                                    "{:?}: node_id {} is not a node of saved_model.pb's object graph ({} nodes)",
                                    n.node_path,
                                    n.node_id,
                                    node_count.unwrap_or(0)
                                ),
                            })
                        }
                    };
                    Ok(layer_meta(node_id, n.node_path.clone(), &n.identifier, &n.metadata))
                })
                .collect();
        }

        let Some(graph) = self.object_graph() else {
            return Ok(Vec::new());
        };
        let wanted: Vec<bool> = graph
            .nodes
            .iter()
            .map(|n| matches!(&n.kind, Some(Kind::UserObject(u)) if !u.metadata.is_empty()))
            .collect();
        let paths = enumerate_paths(&self.object_children(), &wanted, self.pb_path())?;
        Ok(graph
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, node)| match &node.kind {
                Some(Kind::UserObject(u)) if !u.metadata.is_empty() => Some(layer_meta(
                    Some(i),
                    paths[i].first().map(|p| python_path(p)).unwrap_or_default(),
                    &u.identifier,
                    &u.metadata,
                )),
                _ => None,
            })
            .collect())
    }
}

fn layer_meta(
    node_id: Option<usize>,
    node_path: String,
    identifier: &str,
    json: &str,
) -> KerasLayerMeta {
    let (value, metadata_error) = match parse_metadata_json(json) {
        Ok(v) => (v, None),
        Err(e) => (Value::Null, Some(e)),
    };
    let class_name = value
        .get("class_name")
        .and_then(Value::as_str)
        .map(str::to_string);
    let config = value.get("config").cloned().unwrap_or(Value::Null);
    let name = value
        .get("name")
        .and_then(Value::as_str)
        .or_else(|| config.get("name").and_then(Value::as_str))
        .map(str::to_string);
    KerasLayerMeta {
        node_id,
        node_path,
        identifier: identifier.to_string(),
        class_name,
        name,
        config,
        metadata_error,
    }
}

/// Parses Keras metadata JSON. Python's `json.dumps` writes non-finite
/// floats as the bare tokens `NaN`, `Infinity` and `-Infinity`, which are
/// not JSON; they are kept as the strings `"NaN"`, `"Infinity"` and
/// `"-Infinity"`. serde_json's own nesting limit (128) bounds recursion.
pub(crate) fn parse_metadata_json(json: &str) -> std::result::Result<Value, String> {
    match serde_json::from_str(json) {
        Ok(v) => Ok(v),
        Err(first) => {
            let fixed = quote_non_finite(json);
            if fixed.len() == json.len() {
                return Err(first.to_string());
            }
            serde_json::from_str(&fixed).map_err(|_| first.to_string())
        }
    }
}

/// Quotes `NaN`, `Infinity` and `-Infinity` tokens outside strings.
fn quote_non_finite(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + 16);
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = json;
    while let Some(c) = rest.chars().next() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if let Some(tok) = ["NaN", "Infinity", "-Infinity"]
            .into_iter()
            .find(|t| rest.starts_with(t))
        {
            out.push('"');
            out.push_str(tok);
            out.push('"');
            rest = &rest[tok.len()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Keras-style `root.a.b` path from a key-style path (escaped components
/// joined by `/`): the unescaped local names joined by `.`.
fn python_path(key_path: &str) -> String {
    let mut out = String::from("root");
    if key_path.is_empty() {
        return out;
    }
    for component in key_path.split('/') {
        out.push('.');
        match unescape_local_name(component) {
            Some(name) => out.push_str(&name),
            None => out.push_str(component),
        }
    }
    out
}
