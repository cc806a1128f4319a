//! SavedModel variable nodes → checkpoint keys of the `variables/` bundle.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::objgraph::{enumerate_paths, ObjectGraph, VARIABLE_VALUE};
use crate::proto::saved_model::saved_object::Kind;

use super::SavedModel;

/// A variable node of a SavedModel's object graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedVariable {
    /// Node id in the `SavedObjectGraph` (and in the bundle's object graph).
    pub node_id: usize,
    /// The variable's name (`SavedVariable.name`, e.g.
    /// `batch_normalization/gamma`).
    pub name: String,
    /// Element type; `None` for a code tfbn does not know.
    pub dtype: Option<DType>,
    /// Dimensions (−1 = unknown); empty for a scalar or an unknown rank.
    pub shape: Vec<i64>,
    /// Trainable.
    pub trainable: bool,
    /// Key of the value in `variables/`: the `VARIABLE_VALUE` attribute (else
    /// the first attribute) of the same node in the bundle's object graph.
    /// `None` without a bundle, or when that node saved nothing.
    pub checkpoint_key: Option<String>,
    /// Object paths from the root, shortest first, as in
    /// [`crate::objgraph::ObjVariable::paths`].
    pub paths: Vec<String>,
}

impl SavedModel {
    /// The variable nodes of the object graph, in node order, each with its
    /// checkpoint key. Empty for a TF1 SavedModel (no object graph).
    ///
    /// Node *i* of the `SavedObjectGraph` is node *i* of the bundle's
    /// `TrackableObjectGraph`; the node counts must agree, else
    /// [`Error::SavedModelInvalid`].
    pub fn variable_nodes(&self) -> Result<Vec<SavedVariable>> {
        let Some(graph) = self.object_graph() else {
            return Ok(Vec::new());
        };
        let ckpt = match self.variables() {
            Some(bundle) => ObjectGraph::from_bundle(bundle)?,
            None => None,
        };
        if let Some(ckpt) = &ckpt {
            if ckpt.node_count() != graph.nodes.len() {
                return Err(Error::SavedModelInvalid {
                    path: self.pb_path().to_path_buf(),
                    what: format!(
                        "the object graph has {} nodes but variables/ has {}; node ids cannot be matched",
                        graph.nodes.len(),
                        ckpt.node_count()
                    ),
                });
            }
        }
        let children = self.object_children();
        if let Some(ckpt) = &ckpt {
            // TF writes both graphs from one walk, so the edges agree too
            // (checked on tf_keras and Keras 3 SavedModels); anything else
            // means node ids cannot be trusted to line up.
            if let Some(i) = (0..children.len()).find(|&i| children[i] != ckpt.children(i)) {
                return Err(Error::SavedModelInvalid {
                    path: self.pb_path().to_path_buf(),
                    what: format!(
                        "node {i} has different children in the object graph and in variables/; \
                         node ids cannot be matched"
                    ),
                });
            }
        }
        let wanted: Vec<bool> = graph
            .nodes
            .iter()
            .map(|n| matches!(n.kind, Some(Kind::Variable(_))))
            .collect();
        let mut paths = enumerate_paths(&children, &wanted, self.pb_path())?;

        let mut out = Vec::new();
        for (i, node) in graph.nodes.iter().enumerate() {
            let Some(Kind::Variable(v)) = &node.kind else {
                continue;
            };
            let checkpoint_key = ckpt.as_ref().and_then(|g| {
                let attrs = &g.proto().nodes[i].attributes;
                attrs
                    .iter()
                    .find(|a| a.name == VARIABLE_VALUE)
                    .or(attrs.first())
                    .map(|a| a.checkpoint_key.clone())
            });
            let shape = v
                .shape
                .as_ref()
                .filter(|s| !s.unknown_rank)
                .map(|s| s.dim.iter().map(|d| d.size).collect())
                .unwrap_or_default();
            out.push(SavedVariable {
                node_id: i,
                name: v.name.clone(),
                dtype: DType::from_tf(v.dtype),
                shape,
                trainable: v.trainable,
                checkpoint_key,
                paths: std::mem::take(&mut paths[i]),
            });
        }
        Ok(out)
    }

    /// Children of every `SavedObjectGraph` node as `(id, local name)`
    /// (ids were range-checked at open).
    pub(crate) fn object_children(&self) -> Vec<Vec<(usize, String)>> {
        let Some(graph) = self.object_graph() else {
            return Vec::new();
        };
        let n = graph.nodes.len();
        graph
            .nodes
            .iter()
            .map(|node| {
                node.children
                    .iter()
                    .filter_map(|c| {
                        crate::objgraph::node_index(c.node_id, n)
                            .map(|id| (id, c.local_name.clone()))
                    })
                    .collect()
            })
            .collect()
    }
}
