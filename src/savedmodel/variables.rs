//! SavedModel variable nodes → checkpoint keys of the `variables/` bundle.

use crate::dtype::DType;
use crate::error::Result;
use std::collections::VecDeque;

use crate::objgraph::{enumerate_paths, node_index, ObjectGraph, VARIABLE_VALUE};
use crate::proto::saved_model::saved_object::Kind;
use crate::proto::saved_model::SavedObjectGraph;

use super::SavedModel;

/// A variable node of a SavedModel's object graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedVariable {
    /// Node id in the `SavedObjectGraph` (the bundle's object graph may
    /// number its nodes differently; see [`SavedModel::variable_nodes`]).
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
    /// The two object graphs (the `SavedObjectGraph` in `saved_model.pb` and
    /// the bundle's `TrackableObjectGraph`) are matched the way TF's loader
    /// restores a SavedModel: both are walked from the root, pairing children
    /// by local name, and slot variables by their optimizer, original
    /// variable and slot name. Node ids are never compared: writers before
    /// TF 2.5 list more nodes in `saved_model.pb` (functions, constants) than
    /// in the checkpoint. A variable node the checkpoint does not reach has
    /// no key.
    pub fn variable_nodes(&self) -> Result<Vec<SavedVariable>> {
        let Some(graph) = self.object_graph() else {
            return Ok(Vec::new());
        };
        let ckpt = match self.variables() {
            Some(bundle) => ObjectGraph::from_bundle(bundle)?,
            None => None,
        };
        let children = self.object_children();
        let to_ckpt = match &ckpt {
            Some(ckpt) => match_by_local_names(graph, &children, ckpt),
            None => vec![None; graph.nodes.len()],
        };
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
            let checkpoint_key = ckpt.as_ref().zip(to_ckpt[i]).and_then(|(g, c)| {
                let attrs = &g.proto().nodes.get(c)?.attributes;
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

/// For every `SavedObjectGraph` node, the bundle graph node it is restored
/// from: a breadth-first walk from both roots that pairs children by local
/// name, then slot variables through their (already paired) optimizer and
/// original variable. The first pairing of a node wins, as in TF's restore,
/// which visits each object once.
fn match_by_local_names(
    graph: &SavedObjectGraph,
    children: &[Vec<(usize, String)>],
    ckpt: &ObjectGraph,
) -> Vec<Option<usize>> {
    let n = graph.nodes.len();
    let m = ckpt.node_count();
    let mut to_ckpt: Vec<Option<usize>> = vec![None; n];
    let mut taken = vec![false; m];
    if n == 0 || m == 0 {
        return to_ckpt;
    }
    let mut queue = VecDeque::from([(0usize, 0usize)]);
    to_ckpt[0] = Some(0);
    taken[0] = true;
    let mut pair = |s: usize, c: usize, to: &mut Vec<Option<usize>>, q: &mut VecDeque<_>| {
        if s < n && c < m && to[s].is_none() && !taken[c] {
            to[s] = Some(c);
            taken[c] = true;
            q.push_back((s, c));
        }
    };
    loop {
        while let Some((s, c)) = queue.pop_front() {
            let saved_kids = &children[s];
            for (ckid, name) in ckpt.children(c) {
                if let Some((skid, _)) = saved_kids.iter().find(|(_, sn)| sn == name) {
                    pair(*skid, *ckid, &mut to_ckpt, &mut queue);
                }
            }
        }
        // Slot variables hang off their optimizer, not off a named edge.
        let mut added = false;
        for (s, node) in graph.nodes.iter().enumerate() {
            let Some(c) = to_ckpt[s] else { continue };
            let Some(cnode) = ckpt.proto().nodes.get(c) else {
                continue;
            };
            for slot in &node.slot_variables {
                let (Some(orig_s), Some(slot_s)) = (
                    node_index(slot.original_variable_node_id, n),
                    node_index(slot.slot_variable_node_id, n),
                ) else {
                    continue;
                };
                if to_ckpt[slot_s].is_some() {
                    continue;
                }
                let Some(orig_c) = to_ckpt[orig_s] else {
                    continue;
                };
                let found = cnode.slot_variables.iter().find(|cs| {
                    cs.slot_name == slot.slot_name
                        && node_index(cs.original_variable_node_id, m) == Some(orig_c)
                });
                if let Some(slot_c) = found.and_then(|cs| node_index(cs.slot_variable_node_id, m)) {
                    let before = queue.len();
                    pair(slot_s, slot_c, &mut to_ckpt, &mut queue);
                    added |= queue.len() > before;
                }
            }
        }
        if !added {
            return to_ckpt;
        }
    }
}
