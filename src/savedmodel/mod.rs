//! SavedModel folders (`docs/formats.md#savedmodel`): `saved_model.pb`, the
//! optional tf_keras `keras_metadata.pb`, and the `variables/` bundle.
//!
//! The variables bundle is an ordinary TF2 object-based checkpoint. A
//! variable node of the SavedModel's `SavedObjectGraph` is stored under the
//! `checkpoint_key` of the node of the bundle's `TrackableObjectGraph` it
//! pairs with when both graphs are walked from the root by local names, as
//! TF's loader does ([`SavedModel::variable_nodes`]). Node ids are not
//! compared (older writers list more nodes in `saved_model.pb`), and
//! variable names are never matched: Keras 3 `model.export` keeps separate,
//! same-named nodes for every variable under `variables/N` and
//! `_all_variables/N`, and only the graph structure tells them apart.
//!
//! Keras layer configs are read as inert JSON data ([`SavedModel::keras_layers`]);
//! nothing in them is ever executed (CVE-2024-3660: a Lambda layer is just
//! a string here).

mod keras;
mod variables;

use std::path::{Path, PathBuf};

use crate::bundle::Bundle;
use crate::error::{Error, Result};
use crate::proto::keras::SavedMetadata;
use crate::proto::saved_model::{MetaGraphDef, SavedModel as SavedModelProto, SavedObjectGraph};

pub use keras::KerasLayerMeta;
pub use variables::SavedVariable;

/// File name of the binary SavedModel protobuf.
pub const SAVED_MODEL_PB: &str = "saved_model.pb";
/// File name of the text SavedModel protobuf (not supported).
pub const SAVED_MODEL_PBTXT: &str = "saved_model.pbtxt";
/// File name of tf_keras's Keras metadata.
pub const KERAS_METADATA_PB: &str = "keras_metadata.pb";

/// Protobuf messages are limited to 2 GiB; TF cannot write a larger
/// `saved_model.pb`, so tfbn does not read one.
const MAX_PROTO_FILE_BYTES: u64 = i32::MAX as u64;

/// An opened SavedModel folder.
#[derive(Debug)]
pub struct SavedModel {
    dir: PathBuf,
    pb_path: PathBuf,
    proto: SavedModelProto,
    meta_index: usize,
    keras_metadata: Option<SavedMetadata>,
    keras_metadata_path: PathBuf,
    variables: Option<Bundle>,
}

impl SavedModel {
    /// True when `path` is a folder holding `saved_model.pb` or
    /// `saved_model.pbtxt`.
    pub fn is_saved_model_dir(path: &Path) -> bool {
        path.is_dir()
            && (path.join(SAVED_MODEL_PB).is_file() || path.join(SAVED_MODEL_PBTXT).is_file())
    }

    /// Opens a SavedModel folder: parses `saved_model.pb`, `keras_metadata.pb`
    /// when present, and opens `variables/variables` as a bundle when
    /// `variables/variables.index` exists (a SavedModel without variables is
    /// valid). A text-format `saved_model.pbtxt` is refused with
    /// [`Error::SavedModelInvalid`].
    pub fn open(dir: impl AsRef<Path>) -> Result<SavedModel> {
        let dir = dir.as_ref().to_path_buf();
        let pb_path = dir.join(SAVED_MODEL_PB);
        if !pb_path.is_file() {
            let txt = dir.join(SAVED_MODEL_PBTXT);
            if txt.is_file() {
                return Err(Error::SavedModelInvalid {
                    path: txt,
                    what:
                        "text-format SavedModels are not supported; re-save the model, or convert \
                           it to saved_model.pb with TensorFlow"
                            .to_string(),
                });
            }
            return Err(Error::PathNotRecognized {
                path: dir,
                why: format!("no {SAVED_MODEL_PB} or {SAVED_MODEL_PBTXT} in the folder"),
            });
        }
        let bytes = read_proto_file(&pb_path)?;
        let proto: SavedModelProto = decode_proto(&bytes, &pb_path, SAVED_MODEL_PB, "SavedModel")?;
        drop(bytes);
        let meta_index = proto
            .meta_graphs
            .iter()
            .position(|m| m.tags().iter().any(|t| t == "serve"))
            .or(if proto.meta_graphs.is_empty() {
                None
            } else {
                Some(0)
            })
            .ok_or_else(|| Error::SavedModelInvalid {
                path: pb_path.clone(),
                what: "the SavedModel has no meta graph".to_string(),
            })?;
        if let Some(graph) = &proto.meta_graphs[meta_index].object_graph_def {
            validate_object_graph(graph, &pb_path)?;
        }

        let keras_metadata_path = dir.join(KERAS_METADATA_PB);
        // `exists`, not `is_file`: a FIFO or folder in its place is an error
        // (read_proto_file refuses it), not a silent loss of the Keras config.
        let keras_metadata = if keras_metadata_path.exists() {
            let bytes = read_proto_file(&keras_metadata_path)?;
            Some(decode_proto::<SavedMetadata>(
                &bytes,
                &keras_metadata_path,
                KERAS_METADATA_PB,
                "SavedMetadata",
            )?)
        } else {
            None
        };

        let prefix = dir.join("variables").join("variables");
        let variables = if prefix.with_extension("index").is_file() {
            Some(Bundle::open(&prefix)?)
        } else {
            None
        };

        Ok(SavedModel {
            dir,
            pb_path,
            proto,
            meta_index,
            keras_metadata,
            keras_metadata_path,
            variables,
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of `saved_model.pb`.
    pub fn pb_path(&self) -> &Path {
        &self.pb_path
    }

    /// The whole decoded `saved_model.pb`.
    pub fn proto(&self) -> &SavedModelProto {
        &self.proto
    }

    /// The meta graph tagged `serve`, else the first one.
    pub fn meta_graph(&self) -> &MetaGraphDef {
        &self.proto.meta_graphs[self.meta_index]
    }

    /// The `variables/variables` bundle, when the SavedModel has one.
    pub fn variables(&self) -> Option<&Bundle> {
        self.variables.as_ref()
    }

    /// The TF2 object graph of the chosen meta graph (absent in TF1
    /// SavedModels). Child, slot and bound-input ids were checked at
    /// [`SavedModel::open`].
    pub fn object_graph(&self) -> Option<&SavedObjectGraph> {
        self.meta_graph().object_graph_def.as_ref()
    }

    /// The decoded `keras_metadata.pb` (tf_keras `model.save` only).
    pub fn keras_metadata(&self) -> Option<&SavedMetadata> {
        self.keras_metadata.as_ref()
    }
}

/// Checks every node id a `SavedObjectGraph` holds against its node count.
fn validate_object_graph(graph: &SavedObjectGraph, file: &Path) -> Result<()> {
    let n = graph.nodes.len();
    let bad = |what: String| Error::SavedModelInvalid {
        path: file.to_path_buf(),
        what: format!("object graph: {what}"),
    };
    for (i, node) in graph.nodes.iter().enumerate() {
        for c in node.children.iter().chain(&node.dependencies) {
            if crate::objgraph::node_index(c.node_id, n).is_none() {
                return Err(bad(format!(
                    "node {i}: child {:?} points to node {}, but there are {n} nodes",
                    c.local_name, c.node_id
                )));
            }
        }
        for s in &node.slot_variables {
            for id in [s.original_variable_node_id, s.slot_variable_node_id] {
                if crate::objgraph::node_index(id, n).is_none() {
                    return Err(bad(format!(
                        "node {i}: slot {:?} refers to node {id}, but there are {n} nodes",
                        s.slot_name
                    )));
                }
            }
        }
    }
    for (name, f) in &graph.concrete_functions {
        for &id in &f.bound_inputs {
            if crate::objgraph::node_index(id, n).is_none() {
                return Err(bad(format!(
                    "concrete function {name:?}: bound input {id} is not a node (there are {n})"
                )));
            }
        }
    }
    Ok(())
}

/// Reads a whole protobuf file, refusing files over 2 GiB (no valid
/// protobuf is that large).
fn read_proto_file(path: &Path) -> Result<Vec<u8>> {
    crate::fsx::read_regular(path, MAX_PROTO_FILE_BYTES).map_err(|e| match e {
        Error::FileTooLarge { len, .. } => Error::SavedModelInvalid {
            path: path.to_path_buf(),
            what: format!("{len} bytes is over the 2 GiB protobuf limit"),
        },
        other => other,
    })
}

pub(crate) use crate::proto::decode_proto;

#[cfg(test)]
mod tests;
