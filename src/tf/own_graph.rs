//! A layer's own nodes, cut out of the file's graph and run in TensorFlow.
//!
//! `verify` rebuilds each layer from TF's ops as its API would call them
//! ([`super::bn`]); that proves tfbn's arithmetic, but both sides then run
//! the settings tfbn *recovered*. Running the batch-norm node the file's own
//! graph holds (a TF1 `.meta`, a TF1-style SavedModel, a frozen `GraphDef`)
//! closes that gap: a wrongly recovered ε, momentum, axis or layout makes
//! the graph and the native layer disagree.
//!
//! [`extract`] takes a `GraphDef`, the batch-norm node's name (a fused op,
//! or the `Rsqrt` of the decomposed `tf.nn.batch_normalization` form) and
//! the names of the variables whose updates to fetch, and returns the
//! smallest graph that computes the layer's output from its input:
//!
//! * the input tensor (the fused op's first input; for the decomposed form
//!   the tensor multiplied by `rsqrt(var + ε)·γ`) becomes a placeholder;
//! * every variable read becomes a placeholder named after the node it
//!   replaces (`VariableV2`, or the `ReadVariableOp` of a `VarHandleOp`),
//!   fed with the checkpoint's value; constants (frozen graphs' weights)
//!   stay;
//! * TF1 control flow is taken apart: each `Switch` forwards its data input
//!   (the branch that holds the node is the one run), control inputs are
//!   dropped (they order assigns the cut graph does not hold), reference
//!   types become their value types, and attributes starting with `_`
//!   (`_output_shapes`, `_class`) are dropped — so graphs written by old
//!   TF versions import into the TF that tfbn loads;
//! * a moving-average update (`Assign`, `AssignSub`, `AssignVariableOp`,
//!   `AssignSubVariableOp` of a named variable, depending on the input) is
//!   fetched through its value input: the new value (`Assign*`) or the
//!   amount subtracted (`AssignSub*`; the caller subtracts it from the old
//!   value in the variable's type, as the kernel does).
//!
//! [`OwnGraph::new`] imports the result and [`OwnGraph::run`] runs it.

use std::collections::{HashMap, HashSet, VecDeque};

use prost::Message;
use tensorflow::{Graph, ImportGraphDefOptions, Operation, SessionRunArgs, Tensor};

use super::graph::session_as_deployed;
use super::{tf_error, TfRuntime};
use crate::error::{Error, Result};
use crate::proto::graph::{attr_value, AttrValue, GraphDef, NodeDef};

/// The placeholder that stands for the layer's input.
pub const INPUT_NAME: &str = "tfbn_own_graph/x";

/// `DT_FLOAT`.
const DT_FLOAT: i32 = 1;
/// `DT_BOOL`.
const DT_BOOL: i32 = 10;
/// Reference types are their value type plus this.
const DT_REF_OFFSET: i32 = 100;
/// Longest chain followed forward from a decomposed form's `Rsqrt` to `y`.
const MAX_FORWARD: usize = 6;

/// How a fetched update becomes the variable's new value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKind {
    /// The fetched tensor is the new value (`Assign`, `AssignVariableOp`).
    Replace,
    /// The new value is the old one minus the fetched tensor (`AssignSub`,
    /// `AssignSubVariableOp`).
    Subtract,
}

/// A moving-average update found for a variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The variable's name in the graph (as the caller gave it).
    pub variable: String,
    /// The assign node.
    pub node: String,
    /// The tensor fetched: `(node, output index)`.
    pub fetch: (String, i32),
    /// How it becomes the new value.
    pub kind: UpdateKind,
}

/// A variable read the cut graph takes as a feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableFeed {
    /// The placeholder (named after the node it replaces).
    pub placeholder: String,
    /// The variable's name in the graph (`VariableV2` node name,
    /// `VarHandleOp` `shared_name`).
    pub variable: String,
}

/// The smallest graph computing a batch-norm node's output from its input.
#[derive(Debug, Clone, PartialEq)]
pub struct Extracted {
    /// The cut graph.
    pub graph_def: GraphDef,
    /// The node asked for.
    pub bn_node: String,
    /// The tensor the input placeholder replaces (`node:index`).
    pub input_tensor: String,
    /// The output `y`: `(node, output index)`.
    pub y: (String, i32),
    /// The variables to feed.
    pub variables: Vec<VariableFeed>,
    /// The updates found, one per requested variable at most.
    pub updates: Vec<Update>,
    /// A fused op (else the decomposed form).
    pub fused: bool,
    /// A fused op's `data_format` (`NHWC` where absent).
    pub data_format: Option<String>,
    /// The input's element type (`DT_*`).
    pub input_dtype: i32,
    /// A TF1 cond's boolean placeholder and the value that takes the
    /// node's branch (fed on every run).
    pub branch: Option<(String, bool)>,
    /// Boolean placeholders the cut graph reads (a TF1 `training` flag
    /// selecting batch or moving statistics through a cond outside the
    /// node); without a [`branch`](Self::branch) they are fed the mode.
    pub predicates: Vec<String>,
}

/// `node:index` of an input reference (`name`, `name:k`, `^name`).
fn tensor_of(input: &str) -> (&str, i32) {
    let input = input.strip_prefix('^').unwrap_or(input);
    match input.rsplit_once(':') {
        Some((n, k)) => match k.parse() {
            Ok(k) => (n, k),
            Err(_) => (input, 0),
        },
        None => (input, 0),
    }
}

fn data_inputs(node: &NodeDef) -> impl Iterator<Item = &str> {
    node.input
        .iter()
        .map(String::as_str)
        .filter(|i| !i.starts_with('^'))
}

struct Index<'g> {
    by_name: HashMap<&'g str, &'g NodeDef>,
    consumers: HashMap<&'g str, Vec<&'g NodeDef>>,
}

impl<'g> Index<'g> {
    fn new(graph: &'g GraphDef) -> Index<'g> {
        let by_name: HashMap<&str, &NodeDef> =
            graph.node.iter().map(|n| (n.name.as_str(), n)).collect();
        let mut consumers: HashMap<&str, Vec<&NodeDef>> = HashMap::new();
        for n in &graph.node {
            for i in data_inputs(n) {
                consumers.entry(tensor_of(i).0).or_default().push(n);
            }
        }
        Index { by_name, consumers }
    }

    /// The tensor an input carries once `Switch`es forward their data input.
    fn through_switch(&self, input: &str) -> (String, i32) {
        let (mut name, mut index) = tensor_of(input);
        for _ in 0..64 {
            match self.by_name.get(name) {
                Some(n) if matches!(n.op.as_str(), "Switch" | "RefSwitch") => {
                    match data_inputs(n).next() {
                        Some(i) => (name, index) = tensor_of(i),
                        None => break,
                    }
                }
                _ => break,
            }
        }
        (name.to_string(), index)
    }

    /// The variable a resource or reference input names: a `VariableV2`
    /// (its node name) or a `VarHandleOp` (its `shared_name`), through
    /// switches and identities.
    fn variable_of(&self, input: &str) -> Option<String> {
        let mut input = self.through_switch(input).0;
        for _ in 0..64 {
            let n = self.by_name.get(input.as_str())?;
            match n.op.as_str() {
                "VariableV2" | "Variable" => return Some(n.name.clone()),
                "VarHandleOp" => {
                    return Some(
                        n.attr_str("shared_name")
                            .filter(|s| !s.is_empty())
                            .unwrap_or(&n.name)
                            .to_string(),
                    )
                }
                "Identity" | "RefIdentity" | "Enter" | "RefEnter" => {
                    input = self.through_switch(data_inputs(n).next()?).0;
                }
                _ => return None,
            }
        }
        None
    }

    /// A TF1 cond pivot: an `Identity` of a `Switch` output.
    fn is_pivot(&self, name: &str) -> bool {
        self.by_name.get(name).is_some_and(|n| {
            n.op == "Identity"
                && data_inputs(n).next().is_some_and(|i| {
                    self.by_name
                        .get(tensor_of(i).0)
                        .is_some_and(|s| matches!(s.op.as_str(), "Switch" | "RefSwitch"))
                })
        })
    }

    /// Nodes downstream of `from` (data edges, switches forwarded), at most
    /// `depth` edges away.
    fn downstream(&self, from: &str, depth: usize) -> HashSet<&'g str> {
        let mut seen = HashSet::new();
        let mut queue = VecDeque::from([(from.to_string(), 0usize)]);
        while let Some((name, d)) = queue.pop_front() {
            if d >= depth {
                continue;
            }
            for c in self.consumers.get(name.as_str()).into_iter().flatten() {
                if seen.insert(c.name.as_str()) {
                    queue.push_back((c.name.clone(), d + 1));
                }
            }
        }
        seen
    }
}

fn not_runnable(node: &str, why: impl Into<String>) -> Error {
    Error::OwnGraphNotRunnable {
        node: node.to_string(),
        why: why.into(),
    }
}

/// The decomposed form's output and input: from `Rsqrt`, the `Mul(x, k)`
/// (k downstream of the `Rsqrt`) whose consumer `Add`/`AddV2` adds another
/// tensor downstream of the `Rsqrt` (`β − mean·k`).
fn decomposed_ends(idx: &Index, rsqrt: &str) -> Option<((String, i32), String)> {
    let down = idx.downstream(rsqrt, MAX_FORWARD);
    let mut muls: Vec<&NodeDef> = down
        .iter()
        .filter_map(|n| idx.by_name.get(n).copied())
        .filter(|n| n.op == "Mul")
        .collect();
    muls.sort_by(|a, b| a.name.cmp(&b.name));
    for mul in muls {
        let ins: Vec<&str> = data_inputs(mul).collect();
        if ins.len() != 2 {
            continue;
        }
        let outside: Vec<&str> = ins
            .iter()
            .copied()
            .filter(|i| {
                let n = tensor_of(i).0;
                n != rsqrt && !down.contains(n)
            })
            .collect();
        let [x] = outside.as_slice() else {
            continue;
        };
        for add in idx.consumers.get(mul.name.as_str()).into_iter().flatten() {
            if !matches!(add.op.as_str(), "Add" | "AddV2") {
                continue;
            }
            let other_downstream = data_inputs(add)
                .filter(|i| tensor_of(i).0 != mul.name)
                .any(|i| down.contains(tensor_of(i).0));
            if other_downstream {
                return Some(((add.name.clone(), 0), x.to_string()));
            }
        }
    }
    None
}

/// Cuts the layer at `bn_node` out of `graph` (see the module doc);
/// `moving` names the variables (graph names) whose updates to fetch.
pub fn extract(graph: &GraphDef, bn_node: &str, moving: &[String]) -> Result<Extracted> {
    let idx = Index::new(graph);
    let node = idx
        .by_name
        .get(bn_node)
        .copied()
        .ok_or_else(|| not_runnable(bn_node, "no such node in the graph"))?;
    let fused = crate::hyper::graph_fused_op(&node.op);
    let (y, x_input, input_dtype) = if fused {
        let x = data_inputs(node)
            .next()
            .ok_or_else(|| not_runnable(bn_node, "the fused op has no input"))?;
        (
            (node.name.clone(), 0),
            x.to_string(),
            node.attr_type("T").unwrap_or(DT_FLOAT),
        )
    } else if node.op == "Rsqrt" {
        let (y, x) = decomposed_ends(&idx, bn_node).ok_or_else(|| {
            not_runnable(
                bn_node,
                "no x·rsqrt(var + ε) + (β − mean·…) after the Rsqrt",
            )
        })?;
        let dt = idx
            .by_name
            .get(y.0.as_str())
            .and_then(|n| n.attr_type("T"))
            .unwrap_or(DT_FLOAT);
        (y, x, dt)
    } else {
        return Err(not_runnable(
            bn_node,
            format!("{} is not a batch-norm op", node.op),
        ));
    };
    let x_tensor = idx.through_switch(&x_input);

    // Updates: assigns of the named variables whose value depends on x.
    let mut updates = Vec::new();
    for var in moving {
        let found = graph.node.iter().find_map(|n| {
            let kind = match n.op.as_str() {
                "Assign" | "AssignVariableOp" => UpdateKind::Replace,
                "AssignSub" | "AssignSubVariableOp" => UpdateKind::Subtract,
                _ => return None,
            };
            let ins: Vec<&str> = data_inputs(n).collect();
            if ins.len() != 2 || idx.variable_of(ins[0]).as_deref() != Some(var.as_str()) {
                return None;
            }
            let (v, k) = tensor_of(ins[1]);
            let value = (v.to_string(), k);
            let (_, reaches) = ancestors(&idx, std::slice::from_ref(&value), &x_tensor);
            reaches.then(|| Update {
                variable: var.clone(),
                node: n.name.clone(),
                fetch: value,
                kind,
            })
        });
        updates.extend(found);
    }

    let mut fetches = vec![y.clone()];
    fetches.extend(updates.iter().map(|u| u.fetch.clone()));
    let (keep, reaches) = ancestors(&idx, &fetches, &x_tensor);
    if !reaches {
        return Err(not_runnable(
            bn_node,
            "the output does not depend on the input",
        ));
    }

    let mut out = GraphDef {
        node: Vec::new(),
        versions: graph.versions.clone(),
        ..Default::default()
    };
    out.node.push(placeholder(INPUT_NAME, input_dtype));
    let mut variables = Vec::new();
    for n in &graph.node {
        if !keep.contains(n.name.as_str()) {
            continue;
        }
        match n.op.as_str() {
            "VariableV2" | "Variable" => {
                let dt = n.attr_type("dtype").unwrap_or(DT_FLOAT);
                out.node.push(placeholder(&n.name, dt));
                variables.push(VariableFeed {
                    placeholder: n.name.clone(),
                    variable: n.name.clone(),
                });
                continue;
            }
            "ReadVariableOp" => {
                if let Some(var) = data_inputs(n).next().and_then(|i| idx.variable_of(i)) {
                    let dt = n.attr_type("dtype").unwrap_or(DT_FLOAT);
                    out.node.push(placeholder(&n.name, dt));
                    variables.push(VariableFeed {
                        placeholder: n.name.clone(),
                        variable: var,
                    });
                    continue;
                }
            }
            _ => {}
        }
        out.node.push(cleaned(&idx, n, &x_tensor));
    }
    let branch = branch_of(&idx, bn_node).filter(|(p, _)| keep.contains(p.as_str()));
    let predicates = graph
        .node
        .iter()
        .filter(|n| keep.contains(n.name.as_str()))
        .filter(|n| matches!(n.op.as_str(), "Placeholder" | "PlaceholderWithDefault"))
        .filter(|n| n.attr_type("dtype") == Some(DT_BOOL))
        .map(|n| n.name.clone())
        .collect();
    let data_format = fused.then(|| node.attr_str("data_format").unwrap_or("NHWC").to_string());
    Ok(Extracted {
        graph_def: out,
        bn_node: bn_node.to_string(),
        input_tensor: format!("{}:{}", x_tensor.0, x_tensor.1),
        y,
        variables,
        updates,
        fused,
        data_format,
        input_dtype,
        branch,
        predicates,
    })
}

/// The nodes the fetches need, stopping at the input tensor and at
/// variable reads (which become placeholders), and whether any path reaches
/// the input. Control inputs are followed only to a TF1 cond's pivots
/// (`switch_t`/`switch_f`), which keep a branch's constants dead when the
/// branch is not taken.
fn ancestors<'g>(
    idx: &Index<'g>,
    fetches: &[(String, i32)],
    x: &(String, i32),
) -> (HashSet<&'g str>, bool) {
    let mut keep: HashSet<&str> = HashSet::new();
    let mut reaches = false;
    let mut queue: VecDeque<(String, i32)> = fetches.iter().cloned().collect();
    while let Some(t) = queue.pop_front() {
        if &t == x {
            reaches = true;
            continue;
        }
        let Some(n) = idx.by_name.get(t.0.as_str()).copied() else {
            continue;
        };
        if !keep.insert(n.name.as_str()) {
            continue;
        }
        match n.op.as_str() {
            "VariableV2" | "Variable" => continue,
            "ReadVariableOp"
                if data_inputs(n)
                    .next()
                    .and_then(|i| idx.variable_of(i))
                    .is_some() =>
            {
                continue
            }
            _ => {}
        }
        for i in data_inputs(n) {
            let (name, k) = tensor_of(i);
            queue.push_back((name.to_string(), k));
        }
        for i in n.input.iter().filter_map(|i| i.strip_prefix('^')) {
            if idx.is_pivot(i) {
                queue.push_back((i.to_string(), 0));
            }
        }
    }
    (keep, reaches)
}

/// The boolean placeholder that selects the branch holding `node`, and the
/// value that selects it: the first `Switch` on the way back from the node
/// (its output 1 is the true branch), its predicate traced through
/// identities to a `Placeholder` or `PlaceholderWithDefault`.
fn branch_of(idx: &Index, node: &str) -> Option<(String, bool)> {
    let mut seen = HashSet::new();
    let mut queue = VecDeque::from([node.to_string()]);
    while let Some(name) = queue.pop_front() {
        let n = idx.by_name.get(name.as_str())?;
        for i in data_inputs(n) {
            let (src, k) = tensor_of(i);
            let Some(s) = idx.by_name.get(src) else {
                continue;
            };
            if matches!(s.op.as_str(), "Switch" | "RefSwitch") {
                let mut pred = data_inputs(s).nth(1)?;
                for _ in 0..64 {
                    let p = idx.by_name.get(tensor_of(pred).0)?;
                    match p.op.as_str() {
                        "Placeholder" | "PlaceholderWithDefault" => {
                            return Some((p.name.clone(), k == 1))
                        }
                        "Identity" => pred = data_inputs(p).next()?,
                        _ => return None,
                    }
                }
                return None;
            }
            // Past a Merge the node is outside the cond: no branch holds it.
            if s.op == "Merge" || s.op == "RefMerge" {
                continue;
            }
            if seen.insert(src.to_string()) && seen.len() < 10_000 {
                queue.push_back(src.to_string());
            }
        }
    }
    None
}

fn placeholder(name: &str, dtype: i32) -> NodeDef {
    let mut n = NodeDef {
        name: name.to_string(),
        op: "Placeholder".into(),
        ..Default::default()
    };
    n.attr.insert(
        "dtype".into(),
        AttrValue {
            value: Some(attr_value::Value::Type(base_type(dtype))),
        },
    );
    n
}

fn base_type(t: i32) -> i32 {
    if t > DT_REF_OFFSET {
        t - DT_REF_OFFSET
    } else {
        t
    }
}

/// A kept node as the cut graph holds it: the input tensor replaced by the
/// placeholder, control inputs only to cond pivots, value types for
/// reference types, no `_` attributes, no device.
fn cleaned(idx: &Index, n: &NodeDef, x: &(String, i32)) -> NodeDef {
    let mut c = n.clone();
    c.device.clear();
    c.op = match n.op.as_str() {
        "RefIdentity" => "Identity".into(),
        "RefSwitch" => "Switch".into(),
        "RefEnter" => "Enter".into(),
        "RefMerge" => "Merge".into(),
        op => op.to_string(),
    };
    c.input = n
        .input
        .iter()
        .filter_map(|i| {
            if let Some(ctl) = i.strip_prefix('^') {
                return idx.is_pivot(ctl).then(|| i.clone());
            }
            let (name, k) = tensor_of(i);
            Some(if name == x.0 && k == x.1 {
                INPUT_NAME.to_string()
            } else {
                i.clone()
            })
        })
        .collect();
    c.attr.retain(|k, _| !k.starts_with('_'));
    for v in c.attr.values_mut() {
        match &mut v.value {
            Some(attr_value::Value::Type(t)) => *t = base_type(*t),
            Some(attr_value::Value::List(l)) => {
                for t in &mut l.r#type {
                    *t = base_type(*t);
                }
            }
            _ => {}
        }
    }
    c
}

/// Looks up a variable's value by its graph name: `(dims, values)`.
pub type ValueOf<'a> = dyn Fn(&str) -> Result<(Vec<u64>, Vec<f32>)> + 'a;

/// A cut graph imported into TF, with a session.
pub struct OwnGraph {
    session: tensorflow::Session,
    x: Operation,
    feeds: Vec<(Operation, String)>,
    y: (Operation, i32),
    updates: Vec<(Operation, i32)>,
    branch: Option<(Operation, bool)>,
    predicates: Vec<Operation>,
    /// What was cut out.
    pub extracted: Extracted,
}

/// What the layer's own nodes computed.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnOutputs {
    /// `y`.
    pub y: Vec<f32>,
    /// The fetched update tensors, in [`Extracted::updates`] order (before
    /// [`UpdateKind`] is applied).
    pub updates: Vec<Vec<f32>>,
}

impl Extracted {
    /// Gives the input placeholder a fully known shape. Grappler decides
    /// some rewrites from static shapes (a float32 inference batch norm
    /// with constant scale and variance becomes multiply-add; for NCHW it
    /// needs the rank to broadcast along the channel axis), so the cut
    /// graph is run with the shape the file's graph would have known.
    pub fn set_input_shape(&mut self, dims: &[usize]) {
        use crate::proto::tensor::{tensor_shape_proto::Dim, TensorShapeProto};
        let shape = TensorShapeProto {
            dim: dims
                .iter()
                .map(|&d| Dim {
                    size: i64::try_from(d).unwrap_or(-1),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        if let Some(n) = self
            .graph_def
            .node
            .iter_mut()
            .find(|n| n.name == INPUT_NAME)
        {
            n.attr.insert(
                "shape".into(),
                AttrValue {
                    value: Some(attr_value::Value::Shape(shape)),
                },
            );
        }
    }
}

impl OwnGraph {
    /// Imports `extracted` into a fresh graph and opens a session (the
    /// runtime's thread count; no graph optimizer, as for the rebuilt
    /// layers).
    pub fn new(rt: &TfRuntime, extracted: Extracted) -> Result<OwnGraph> {
        if extracted.input_dtype != DT_FLOAT {
            return Err(not_runnable(
                &extracted.bn_node,
                format!(
                    "its input is DT {} (only float32 graphs are run)",
                    extracted.input_dtype
                ),
            ));
        }
        let mut graph = Graph::new();
        let bytes = extracted.graph_def.encode_to_vec();
        graph
            .import_graph_def(&bytes, &ImportGraphDefOptions::new())
            .map_err(|s| tf_error("importing the layer's own nodes", s))?;
        let op = |name: &str| {
            graph
                .operation_by_name_required(name)
                .map_err(|s| tf_error(format!("finding {name}"), s))
        };
        let x = op(INPUT_NAME)?;
        let feeds = extracted
            .variables
            .iter()
            .map(|v| Ok((op(&v.placeholder)?, v.variable.clone())))
            .collect::<Result<Vec<_>>>()?;
        let y = (op(&extracted.y.0)?, extracted.y.1);
        let updates = extracted
            .updates
            .iter()
            .map(|u| Ok((op(&u.fetch.0)?, u.fetch.1)))
            .collect::<Result<Vec<_>>>()?;
        let branch = match &extracted.branch {
            Some((name, v)) => Some((op(name)?, *v)),
            None => None,
        };
        let predicates = extracted
            .predicates
            .iter()
            .map(|p| op(p))
            .collect::<Result<Vec<_>>>()?;
        let session = session_as_deployed(&graph, rt.host.threads)?;
        Ok(OwnGraph {
            session,
            x,
            feeds,
            y,
            updates,
            branch,
            predicates,
            extracted,
        })
    }

    /// Runs the nodes on `x` (`dims`, row-major) with the variables'
    /// values from `value_of(variable name)`: `(dims, values)`. The node's
    /// branch is taken when it sits in a cond; otherwise every boolean
    /// placeholder is fed `training` (TF1's `training` flag convention).
    pub fn run(
        &self,
        training: bool,
        x: &[f32],
        dims: &[usize],
        value_of: &ValueOf<'_>,
    ) -> Result<OwnOutputs> {
        super::graph::check_dims(dims)?;
        let x = super::graph::tensor(dims, x)?;
        let mut tensors: Vec<Tensor<f32>> = Vec::new();
        for (_, var) in &self.feeds {
            let (shape, v) = value_of(var)?;
            tensors.push(
                Tensor::new(&shape)
                    .with_values(&v)
                    .map_err(|s| tf_error(format!("feeding {var}"), s))?,
            );
        }
        let flag = |v: bool| {
            Tensor::<bool>::new(&[])
                .with_values(&[v])
                .map_err(|s| tf_error("feeding the branch", s))
        };
        let preds: Vec<(&Operation, Tensor<bool>)> = match &self.branch {
            Some((op, v)) => vec![(op, flag(*v)?)],
            None => self
                .predicates
                .iter()
                .map(|op| Ok((op, flag(training)?)))
                .collect::<Result<_>>()?,
        };
        let mut args = SessionRunArgs::new();
        args.add_feed(&self.x, 0, &x);
        for (op, t) in &preds {
            args.add_feed(op, 0, t);
        }
        for ((op, _), t) in self.feeds.iter().zip(&tensors) {
            args.add_feed(op, 0, t);
        }
        let y_tok = args.request_fetch(&self.y.0, self.y.1);
        let toks: Vec<_> = self
            .updates
            .iter()
            .map(|(op, i)| args.request_fetch(op, *i))
            .collect();
        self.session
            .run(&mut args)
            .map_err(|s| tf_error("running the layer's own nodes", s))?;
        let e = |s| tf_error("fetching an output of the layer's own nodes", s);
        let y = args.fetch::<f32>(y_tok).map_err(e)?.to_vec();
        let updates = toks
            .into_iter()
            .map(|t| Ok(args.fetch::<f32>(t).map_err(e)?.to_vec()))
            .collect::<Result<Vec<_>>>()?;
        Ok(OwnOutputs { y, updates })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, op: &str, inputs: &[&str]) -> NodeDef {
        NodeDef {
            name: name.into(),
            op: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    /// A TF1 cond around a hand-written batch norm: both branches, switches,
    /// a reference variable and an assign under the training branch.
    fn cond_graph() -> GraphDef {
        let mut v = node("bn/pop_var", "VariableV2", &[]);
        v.attr.insert(
            "dtype".into(),
            AttrValue {
                value: Some(attr_value::Value::Type(DT_FLOAT)),
            },
        );
        GraphDef {
            node: vec![
                node("x", "Placeholder", &[]),
                node("is_training", "PlaceholderWithDefault", &[]),
                v,
                node("bn/pop_var/read", "Identity", &["bn/pop_var"]),
                node("bn/cond/pred_id", "Identity", &["is_training"]),
                node("bn/cond/sw_x", "Switch", &["x", "bn/cond/pred_id"]),
                node(
                    "bn/cond/sw_v",
                    "Switch",
                    &["bn/pop_var/read", "bn/cond/pred_id"],
                ),
                node(
                    "bn/cond/ref",
                    "RefSwitch",
                    &["bn/pop_var", "bn/cond/pred_id"],
                ),
                node("bn/cond/eps", "Const", &["^bn/cond/switch_f"]),
                node("bn/cond/add", "AddV2", &["bn/cond/sw_v", "bn/cond/eps"]),
                node("bn/cond/Rsqrt", "Rsqrt", &["bn/cond/add"]),
                node("bn/cond/mul", "Mul", &["bn/cond/sw_x", "bn/cond/Rsqrt"]),
                node("bn/cond/mean", "Const", &[]),
                node("bn/cond/mul_1", "Mul", &["bn/cond/mean", "bn/cond/Rsqrt"]),
                node("bn/cond/neg", "Neg", &["bn/cond/mul_1"]),
                node("bn/cond/add_1", "AddV2", &["bn/cond/mul", "bn/cond/neg"]),
                node("bn/cond/upd", "Mul", &["bn/cond/sw_x:1", "bn/cond/eps"]),
                node(
                    "bn/cond/Assign",
                    "Assign",
                    &["bn/cond/ref:1", "bn/cond/upd"],
                ),
                node("unrelated", "FusedBatchNormGrad", &["x"]),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn decomposed_cut_out_of_a_cond() {
        let g = cond_graph();
        let e = extract(&g, "bn/cond/Rsqrt", &["bn/pop_var".into()]).unwrap();
        assert_eq!(e.y, ("bn/cond/add_1".to_string(), 0));
        assert_eq!(e.input_tensor, "x:0");
        assert!(!e.fused);
        let names: Vec<&str> = e.graph_def.node.iter().map(|n| n.name.as_str()).collect();
        assert!(!names.contains(&"unrelated"), "{names:?}");
        assert!(!names.contains(&"x"), "the input is cut: {names:?}");
        // The branch: the switch's true output feeds the node's branch? No:
        // output 0 (the false branch) feeds this Rsqrt's variance.
        assert_eq!(e.branch, Some(("is_training".to_string(), false)));
        // The variable became a placeholder; the identity reading it stays.
        let v = e
            .graph_def
            .node
            .iter()
            .find(|n| n.name == "bn/pop_var")
            .unwrap();
        assert_eq!(v.op, "Placeholder");
        assert_eq!(e.variables.len(), 1);
        // Inputs forward through switches to the placeholder, control
        // inputs are gone.
        let sw = e
            .graph_def
            .node
            .iter()
            .find(|n| n.name == "bn/cond/sw_x")
            .unwrap();
        assert_eq!(
            sw.input,
            vec![INPUT_NAME.to_string(), "bn/cond/pred_id".into()]
        );
        let eps = e
            .graph_def
            .node
            .iter()
            .find(|n| n.name == "bn/cond/eps")
            .unwrap();
        assert!(eps.input.is_empty());
        // The update: Assign of pop_var, its value depends on x.
        assert_eq!(e.updates.len(), 1);
        assert_eq!(e.updates[0].kind, UpdateKind::Replace);
        assert_eq!(e.updates[0].fetch, ("bn/cond/upd".to_string(), 0));
    }

    #[test]
    fn missing_and_foreign_nodes_are_not_runnable() {
        let g = cond_graph();
        for n in ["nope", "bn/cond/add"] {
            let e = extract(&g, n, &[]).unwrap_err();
            assert!(matches!(e, Error::OwnGraphNotRunnable { .. }), "{e}");
        }
    }

    #[test]
    fn ref_types_become_value_types_and_private_attrs_go() {
        let g = cond_graph();
        let idx = Index::new(&g);
        let mut n = node("r", "RefIdentity", &["bn/cond/ref:1", "^bn/cond/eps"]);
        n.attr.insert(
            "T".into(),
            AttrValue {
                value: Some(attr_value::Value::Type(DT_FLOAT + DT_REF_OFFSET)),
            },
        );
        n.attr.insert("_output_shapes".into(), AttrValue::default());
        let c = cleaned(&idx, &n, &("x".into(), 0));
        assert_eq!(c.op, "Identity");
        assert_eq!(c.input, vec!["bn/cond/ref:1".to_string()]);
        assert_eq!(c.attr_type("T"), Some(DT_FLOAT));
        assert!(!c.attr.contains_key("_output_shapes"));
    }
}
