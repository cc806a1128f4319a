//! TF2 object-based checkpoints: mapping bundle keys to variable names and
//! object paths through the `TrackableObjectGraph` stored at
//! `_CHECKPOINTABLE_OBJECT_GRAPH` (`docs/formats.md#tf2-object-graphs`).
//!
//! # How keys, names and paths relate
//!
//! A TF2 checkpoint saves an object graph, not a list of variables. Node 0 is
//! the root (the `tf.train.Checkpoint`, or the model for `save_weights`);
//! every node lists its children as named edges. When TF saves, it walks the
//! graph breadth-first from the root, visiting children in the order they
//! are listed, and gives each object the path of the walk that reached it
//! first. The path's components are the edge names, each escaped
//! (`.` → `..`, then `/` → `.S`; `tensorflow/python/checkpoint/
//! trackable_view.py`, `checkpoint.py::_escape_local_name`) and joined
//! with `/`. A variable's value is then stored under
//! `<path>/.ATTRIBUTES/VARIABLE_VALUE`.
//!
//! Three consequences matter to tfbn:
//!
//! * **A variable is stored once, under its shortest path.** An object
//!   reachable along several paths (tf_keras `layer-N` next to
//!   `layer_with_weights-N`; Keras 3 + Adam, where the optimizer's
//!   `_trainable_variables/N` is shorter than the model's
//!   `_operations/N/gamma`) appears under one key only. So keys must never be
//!   derived from layer paths; [`ObjVariable::checkpoint_key`] is the key
//!   TF wrote, read from the graph, and [`ObjVariable::paths`] lists every
//!   path to the node (shortest first) so that a variable can still be
//!   grouped under the layer whose path is longer.
//! * **`full_name` is the variable's own name** (`bn/gamma`,
//!   `sequential/batch_normalization/gamma`), chosen by the layer that
//!   created it and unrelated to the key path. Keras 3 may drop the layer
//!   name (`sub/gamma`).
//! * **Legacy optimizer slots** are not children of anything: the optimizer
//!   node lists them in `slot_variables`, and their key is
//!   `<variable path>/.OPTIMIZER_SLOT/<optimizer path>/<slot>/.ATTRIBUTES/VARIABLE_VALUE`.
//!   tfbn synthesizes those paths for slot nodes. The newer Keras optimizers
//!   keep their state as plain child nodes (`optimizer/_variables/N`)
//!   instead.
//!
//! # Bounds
//!
//! The graph comes from a file, so it is checked before it is walked: child
//! and slot node ids must be in range, cycles are harmless (the walk only
//! follows simple paths, and each node keeps at most
//! [`MAX_PATHS_PER_NODE`] paths), and the total work and path bytes are
//! capped so that a crafted graph cannot make tfbn build quadratic output.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use crate::bundle::Bundle;
use crate::error::{Error, Result};
use crate::proto::decode_proto;
use crate::proto::trackable::TrackableObjectGraph;

/// The bundle key holding the serialized object graph.
pub const OBJECT_GRAPH_KEY: &str = "_CHECKPOINTABLE_OBJECT_GRAPH";

/// The attribute name of a variable's value.
pub const VARIABLE_VALUE: &str = "VARIABLE_VALUE";

/// Most paths kept per node (shortest first).
pub const MAX_PATHS_PER_NODE: usize = 8;

/// Longest path (in escaped bytes) tfbn builds. Real keys are a few hundred
/// bytes; a longer shortest path is rejected, longer aliases are skipped.
pub const MAX_PATH_BYTES: usize = 16 * 1024;

/// Total bytes of all materialized paths of one graph.
const MAX_TOTAL_PATH_BYTES: usize = 256 * 1024 * 1024;

/// Parent-chain steps spent checking that alias paths are simple; once
/// spent, no more aliases are added (shortest paths are always complete).
const MAX_ALIAS_STEPS: usize = 50_000_000;

/// A parsed and validated `TrackableObjectGraph`.
#[derive(Debug, Clone)]
pub struct ObjectGraph {
    path: PathBuf,
    proto: TrackableObjectGraph,
    children: Vec<Vec<(usize, String)>>,
    /// Paths of nodes that have attributes or are slots; empty for others.
    paths: Vec<Vec<String>>,
    /// For each node, the slot reference naming it, if any.
    slot_of: Vec<Option<SlotRef>>,
}

/// One saved tensor of an object: normally a variable's `VARIABLE_VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjVariable {
    /// Node id in the object graph.
    pub node_id: usize,
    /// Attribute name (`VARIABLE_VALUE` for variables; other saveables use
    /// other names).
    pub attribute: String,
    /// The bundle key TF wrote (`attributes[..].checkpoint_key`).
    pub checkpoint_key: String,
    /// The variable's own name (`attributes[..].full_name`), may be empty.
    pub full_name: String,
    /// Object paths from the root to this node, shortest first (breadth-first
    /// order, children in order), at most [`MAX_PATHS_PER_NODE`]. Each path
    /// is written as in a key: escaped components joined by `/`. The first
    /// one normally equals the key without `/.ATTRIBUTES/<attribute>`. For a
    /// legacy slot the paths are the synthesized
    /// `<variable path>/.OPTIMIZER_SLOT/<optimizer path>/<slot>` ones.
    pub paths: Vec<String>,
    /// Set when this node is a legacy optimizer slot variable.
    pub slot: Option<SlotRef>,
}

/// Where a legacy optimizer slot variable belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRef {
    /// The optimizer node listing the slot.
    pub optimizer_node_id: usize,
    /// The variable the slot belongs to.
    pub original_node_id: usize,
    /// Slot name (`m`, `v`, `momentum`, …), unescaped.
    pub slot_name: String,
}

/// Escapes one object-path component the way TF does in checkpoint keys:
/// `.` → `..`, then `/` → `.S`.
pub fn escape_local_name(name: &str) -> String {
    name.replace('.', "..").replace('/', ".S")
}

/// Undoes [`escape_local_name`]. Returns `None` for a `.` followed by
/// anything but `.` or `S`.
pub fn unescape_local_name(escaped: &str) -> Option<String> {
    let mut out = String::with_capacity(escaped.len());
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        if c == '.' {
            match chars.next() {
                Some('.') => out.push('.'),
                Some('S') => out.push('/'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

fn escaped_len(name: &str) -> usize {
    name.len() + name.bytes().filter(|&b| b == b'.' || b == b'/').count()
}

impl ObjectGraph {
    /// Parses and validates a serialized `TrackableObjectGraph`; `path` names
    /// the file in errors.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<ObjectGraph> {
        let proto: TrackableObjectGraph =
            decode_proto(bytes, path, OBJECT_GRAPH_KEY, "TrackableObjectGraph")?;
        ObjectGraph::from_proto(proto, path)
    }

    /// Validates an already decoded graph.
    pub fn from_proto(proto: TrackableObjectGraph, path: &Path) -> Result<ObjectGraph> {
        let n = proto.nodes.len();
        let invalid = |what: String| Error::ObjectGraphInvalid {
            path: path.to_path_buf(),
            what,
        };
        let children = proto
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                node.children
                    .iter()
                    .map(|c| {
                        let id = node_index(c.node_id, n).ok_or_else(|| {
                            invalid(format!(
                                "node {i}: child {:?} points to node {}, but there are {n} nodes",
                                c.local_name, c.node_id
                            ))
                        })?;
                        Ok((id, c.local_name.clone()))
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;

        let mut slot_of: Vec<Option<SlotRef>> = vec![None; n];
        for (i, node) in proto.nodes.iter().enumerate() {
            for s in &node.slot_variables {
                let bad = |which: &str, id: i32| {
                    invalid(format!(
                        "node {i}: slot {:?} has {which} node {id}, but there are {n} nodes",
                        s.slot_name
                    ))
                };
                let orig = node_index(s.original_variable_node_id, n)
                    .ok_or_else(|| bad("original variable", s.original_variable_node_id))?;
                let slot = node_index(s.slot_variable_node_id, n)
                    .ok_or_else(|| bad("slot variable", s.slot_variable_node_id))?;
                if slot_of[slot].is_none() {
                    slot_of[slot] = Some(SlotRef {
                        optimizer_node_id: i,
                        original_node_id: orig,
                        slot_name: s.slot_name.clone(),
                    });
                }
            }
        }

        let wanted: Vec<bool> = proto
            .nodes
            .iter()
            .zip(&slot_of)
            .map(|(node, slot)| !node.attributes.is_empty() || slot.is_some())
            .collect();
        // Slot paths are built from the paths of the variable and the
        // optimizer, so those are needed too.
        let mut need = wanted.clone();
        for s in slot_of.iter().flatten() {
            need[s.optimizer_node_id] = true;
            need[s.original_node_id] = true;
        }
        let mut paths = enumerate_paths(&children, &need, path)?;

        let mut budget =
            MAX_TOTAL_PATH_BYTES.saturating_sub(paths.iter().flatten().map(String::len).sum());
        let mut slot_paths: Vec<(usize, Vec<String>)> = Vec::new();
        for (node, slot) in slot_of.iter().enumerate() {
            let Some(s) = slot else { continue };
            let mut synth = Vec::new();
            'outer: for vp in &paths[s.original_node_id] {
                for op in &paths[s.optimizer_node_id] {
                    if synth.len() == MAX_PATHS_PER_NODE {
                        break 'outer;
                    }
                    let p = format!(
                        "{vp}/.OPTIMIZER_SLOT/{op}/{}",
                        escape_local_name(&s.slot_name)
                    );
                    if p.len() > MAX_PATH_BYTES {
                        continue;
                    }
                    budget = budget.checked_sub(p.len()).ok_or_else(|| {
                        invalid(format!(
                            "object paths exceed {MAX_TOTAL_PATH_BYTES} bytes in total"
                        ))
                    })?;
                    synth.push(p);
                }
            }
            for p in &paths[node] {
                if synth.len() == MAX_PATHS_PER_NODE {
                    break;
                }
                synth.push(p.clone());
            }
            slot_paths.push((node, synth));
        }
        for (node, p) in slot_paths {
            paths[node] = p;
        }
        for (i, p) in paths.iter_mut().enumerate() {
            if !wanted[i] {
                p.clear();
            }
        }

        Ok(ObjectGraph {
            path: path.to_path_buf(),
            proto,
            children,
            paths,
            slot_of,
        })
    }

    /// Reads the object graph of a V2 bundle; `None` when the bundle has no
    /// `_CHECKPOINTABLE_OBJECT_GRAPH` (a name-based TF1 checkpoint).
    pub fn from_bundle(bundle: &Bundle) -> Result<Option<ObjectGraph>> {
        if bundle.entry(OBJECT_GRAPH_KEY).is_none() {
            return Ok(None);
        }
        let tensor = bundle.read(OBJECT_GRAPH_KEY)?;
        let path = bundle.prefix();
        let bytes = match tensor.strings() {
            Some([one]) if tensor.shape.is_empty() => one,
            _ => {
                return Err(Error::ObjectGraphInvalid {
                    path: path.to_path_buf(),
                    what: format!(
                        "{OBJECT_GRAPH_KEY} is a {} tensor of shape {:?}, not a scalar string",
                        tensor.dtype, tensor.shape
                    ),
                })
            }
        };
        ObjectGraph::decode(bytes, path).map(Some)
    }

    /// The file the graph came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The decoded protobuf.
    pub fn proto(&self) -> &TrackableObjectGraph {
        &self.proto
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.proto.nodes.len()
    }

    /// The children of `node` as `(child id, local name)`, in stored order;
    /// names are unescaped. Empty for an out-of-range `node`.
    pub fn children(&self, node: usize) -> &[(usize, String)] {
        self.children.get(node).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The paths of `node` as in [`ObjVariable::paths`]; empty for nodes
    /// without attributes that are not slots.
    pub fn paths(&self, node: usize) -> &[String] {
        self.paths.get(node).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Set when `node` is a legacy optimizer slot variable.
    pub fn slot(&self, node: usize) -> Option<&SlotRef> {
        self.slot_of.get(node).and_then(Option::as_ref)
    }

    /// Every saved tensor: one entry per attribute of every node, in node
    /// order, then attribute order.
    pub fn variables(&self) -> Vec<ObjVariable> {
        let mut out = Vec::new();
        for (i, node) in self.proto.nodes.iter().enumerate() {
            for a in &node.attributes {
                out.push(ObjVariable {
                    node_id: i,
                    attribute: a.name.clone(),
                    checkpoint_key: a.checkpoint_key.clone(),
                    full_name: a.full_name.clone(),
                    paths: self.paths[i].clone(),
                    slot: self.slot_of[i].clone(),
                });
            }
        }
        out
    }
}

/// A proto node id as an index below `n`.
pub(crate) fn node_index(id: i32, n: usize) -> Option<usize> {
    usize::try_from(id).ok().filter(|&i| i < n)
}

/// One step of the path walk: `node` reached from entry `parent` over its
/// `child`-th edge.
struct PathEntry {
    node: usize,
    /// (parent entry, index of the edge in the parent node's children).
    parent: Option<(usize, usize)>,
    /// Escaped length of the path in bytes.
    bytes: usize,
}

/// Every node's paths from node 0, shortest first, at most
/// [`MAX_PATHS_PER_NODE`] each, materialized only where `wanted`.
///
/// The walk is TF's breadth-first walk (children in order), extended so that
/// a node reached again keeps the new path as an alias as long as it has
/// room and the path is simple. The first path of each node is exactly the
/// one TF used for its keys: it is reached from the earliest entry of its
/// earliest parent, and every node's first entry precedes its aliases.
/// `children` must hold only in-range ids.
pub(crate) fn enumerate_paths(
    children: &[Vec<(usize, String)>],
    wanted: &[bool],
    file: &Path,
) -> Result<Vec<Vec<String>>> {
    let n = children.len();
    let mut out: Vec<Vec<String>> = vec![Vec::new(); n];
    if n == 0 {
        return Ok(out);
    }
    let mut arena: Vec<PathEntry> = vec![PathEntry {
        node: 0,
        parent: None,
        bytes: 0,
    }];
    let mut per_node: Vec<Vec<usize>> = vec![Vec::new(); n];
    per_node[0].push(0);
    let mut queue = VecDeque::from([0usize]);
    let mut alias_steps = MAX_ALIAS_STEPS;

    while let Some(e) = queue.pop_front() {
        let (node, bytes) = (arena[e].node, arena[e].bytes);
        for (edge, (child, name)) in children[node].iter().enumerate() {
            let child = *child;
            let have = per_node[child].len();
            if have >= MAX_PATHS_PER_NODE {
                continue;
            }
            let sep = usize::from(e != 0);
            let child_bytes = bytes.saturating_add(sep).saturating_add(escaped_len(name));
            if have > 0 {
                // An alias: must be simple, bounded and within budget.
                if child_bytes > MAX_PATH_BYTES || alias_steps == 0 {
                    continue;
                }
                let mut on_path = false;
                let mut cur = Some(e);
                while let Some(c) = cur {
                    if alias_steps == 0 {
                        on_path = true; // out of budget: treat as rejected
                        break;
                    }
                    alias_steps -= 1;
                    if arena[c].node == child {
                        on_path = true;
                        break;
                    }
                    cur = arena[c].parent.map(|(p, _)| p);
                }
                if on_path {
                    continue;
                }
            }
            // A first path is always recorded: a node first reached by a
            // path through itself is impossible in a breadth-first walk.
            let id = arena.len();
            arena.push(PathEntry {
                node: child,
                parent: Some((e, edge)),
                bytes: child_bytes,
            });
            per_node[child].push(id);
            queue.push_back(id);
        }
    }

    let mut total = 0usize;
    let mut components: Vec<&str> = Vec::new();
    for (node, entries) in per_node.iter().enumerate() {
        if !wanted.get(node).copied().unwrap_or(false) {
            continue;
        }
        for (k, &e) in entries.iter().enumerate() {
            if arena[e].bytes > MAX_PATH_BYTES {
                if k == 0 {
                    return Err(Error::ObjectGraphInvalid {
                        path: file.to_path_buf(),
                        what: format!(
                            "node {node}: shortest object path is {} bytes, over tfbn's limit of {MAX_PATH_BYTES}",
                            arena[e].bytes
                        ),
                    });
                }
                continue;
            }
            total = total.saturating_add(arena[e].bytes);
            if total > MAX_TOTAL_PATH_BYTES {
                return Err(Error::ObjectGraphInvalid {
                    path: file.to_path_buf(),
                    what: format!("object paths exceed {MAX_TOTAL_PATH_BYTES} bytes in total"),
                });
            }
            components.clear();
            let mut cur = e;
            while let Some((p, edge)) = arena[cur].parent {
                components.push(&children[arena[p].node][edge].1);
                cur = p;
            }
            let mut s = String::with_capacity(arena[e].bytes);
            for (j, c) in components.iter().rev().enumerate() {
                if j > 0 {
                    s.push('/');
                }
                s.push_str(&escape_local_name(c));
            }
            out[node].push(s);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
