//! Batch norm as TF graphs hold it: `FusedBatchNorm{,V2,V3}` nodes, the
//! decomposed `Rsqrt(AddV2(variance, Const ε))` form (Keras 3, non-fused
//! tf_keras and TF1 layers), and the moving-average update subgraphs that
//! carry the momentum (`docs/formats.md#graphs`,
//! `docs/bn-arithmetic.md#moving-averages`).
//!
//! Nodes are tied to checkpoint variables through their inputs:
//! `ReadVariableOp` → a resource that is a function argument (bound, at the
//! outermost concrete function, to object-graph variable nodes by
//! `bound_inputs`, and passed positionally through `PartitionedCall`,
//! `StatefulPartitionedCall`, `If`, `Case` and `While`), a `VarHandleOp`
//! (`shared_name`), or a TF1 `VariableV2` (through its `…/read` identity).
//!
//! Every walk is bounded: function calls nest at most [`MAX_CALL_DEPTH`]
//! deep, a function that re-enters itself is [`Error::FunctionRecursion`],
//! value tracing follows at most [`MAX_VALUE_DEPTH`] edges, and the whole
//! walk visits at most [`MAX_STEPS`] nodes. A function body is walked once
//! per distinct binding of its resource arguments, so call trees that fan
//! out over shared functions stay linear.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::layers::BnRole;
use crate::proto::graph::{attr_value, FunctionDef, GraphDef, NodeDef};
use crate::proto::saved_model::MetaGraphDef;
use crate::proto::tensor::TensorProto;

mod patterns;

/// Deepest chain of function calls followed.
pub const MAX_CALL_DEPTH: usize = 64;
/// Longest chain of value edges (`Identity`, `Cast`, `ReadVariableOp`, …)
/// followed from one input back to its source.
pub const MAX_VALUE_DEPTH: usize = 64;
/// Most nodes visited in one graph, over all functions and bindings.
pub const MAX_STEPS: usize = 20_000_000;

/// `DT_RESOURCE`.
const DT_RESOURCE: i32 = 20;

/// How a fused batch-norm op is read. One table for every op name TF has
/// used, so that no sibling is silently missed (another converter, tract,
/// once knew only `FusedBatchNorm`). TF ≥ 2.2 gives all three the same attributes and
/// defaults (`tensorflow/core/ops/nn_ops.cc`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct FusedOp {
    /// Op name.
    pub name: &'static str,
    /// Default of `epsilon`.
    pub epsilon: f32,
    /// Default of `exponential_avg_factor`.
    pub exponential_avg_factor: f32,
    /// Default of `data_format`.
    pub data_format: &'static str,
    /// Default of `is_training`.
    pub is_training: bool,
}

/// Every fused batch-norm op, with its op-definition defaults (used where
/// `stripped_default_attrs` removed an attribute).
pub(crate) const FUSED_OPS: [FusedOp; 3] = [
    FusedOp {
        name: "FusedBatchNorm",
        epsilon: 1e-4,
        exponential_avg_factor: 1.0,
        data_format: "NHWC",
        is_training: true,
    },
    FusedOp {
        name: "FusedBatchNormV2",
        epsilon: 1e-4,
        exponential_avg_factor: 1.0,
        data_format: "NHWC",
        is_training: true,
    },
    FusedOp {
        name: "FusedBatchNormV3",
        epsilon: 1e-4,
        exponential_avg_factor: 1.0,
        data_format: "NHWC",
        is_training: true,
    },
];

/// The table entry for `op`, when it is a fused batch norm.
pub(crate) fn fused_op(op: &str) -> Option<&'static FusedOp> {
    FUSED_OPS.iter().find(|f| f.name == op)
}

/// Where in a file a value was found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Site {
    /// File name (`saved_model.pb`, `model.ckpt.meta`).
    pub file: String,
    /// Function holding the node (None: the top-level graph).
    pub function: Option<String>,
    /// Node name.
    pub node: String,
}

impl Site {
    /// `function/node` or `node`.
    pub fn describe(&self) -> String {
        match &self.function {
            Some(f) => format!("{f}/{}", self.node),
            None => self.node.clone(),
        }
    }
}

/// Which form a batch-norm computation takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// A fused op (the table entry's name).
    Fused(&'static str),
    /// `Rsqrt(AddV2(variance, ε))`.
    Decomposed,
}

/// One batch-norm computation found in a graph.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BnSite {
    /// Where.
    pub site: Site,
    /// Index of the layer whose variables it reads (None: none matched).
    pub layer: Option<usize>,
    /// Fused op or decomposed.
    pub form: Form,
    /// ε as the graph holds it (f32 attr or constant).
    pub epsilon: f32,
    /// How ε was found: `attr epsilon`, `attr epsilon absent: op default`,
    /// `Const <name>`.
    pub epsilon_detail: String,
    /// Batch statistics (fused `is_training`, or a decomposed form fed by a
    /// batch variance instead of the moving variance).
    pub training: bool,
    /// How the mode was found.
    pub training_detail: String,
    /// Fused: `exponential_avg_factor` (attr or default).
    pub exponential_avg_factor: Option<f32>,
    /// Fused: `data_format` (attr or default).
    pub data_format: Option<String>,
    /// The channel axis the node implies, the input rank where known, and
    /// how: a fused op's `data_format`, a decomposed form's `Reshape` of the
    /// statistics or the `Mean`'s reduction axes, or −1 when the moving
    /// variance broadcasts unreshaped (last axis).
    pub axis: Option<(i64, Option<usize>, String)>,
    /// Fused: γ input is a constant (tf_keras `scale=False`).
    pub scale_const: Option<bool>,
    /// Fused, inference: why Grappler rewrites the op into element-wise
    /// ops before it runs (`None`: it runs as written).
    pub grappler_rewrite: Option<String>,
    /// Fused: β input is a constant (tf_keras `center=False`).
    pub offset_const: Option<bool>,
    /// Reached from a serving signature.
    pub serving: bool,
}

/// A momentum read off a moving-average update.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MomentumSite {
    /// Where.
    pub site: Site,
    /// The layer updated.
    pub layer: usize,
    /// The momentum as Python held it (the shortest decimal consistent with
    /// the graph's f32 constants).
    pub momentum: f64,
    /// How it was derived.
    pub detail: String,
    /// The form of an explicit assign (`None`: a fused op's own average).
    pub form: Option<crate::bn::MovingUpdate>,
}

/// Everything one graph says about batch norm.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct GraphFindings {
    /// Batch-norm computations, one per (site, layer).
    pub bn: Vec<BnSite>,
    /// Momenta from update subgraphs and `exponential_avg_factor`s.
    pub momentum: Vec<MomentumSite>,
    /// Batch-norm computations whose variables belong to no known layer,
    /// with the checkpoint key found for each role (graph-based discovery).
    pub unknown: Vec<UnknownBn>,
    /// The meta graph has at least one serving signature.
    pub has_serving: bool,
}

/// A batch-norm computation reading variables that no known layer owns:
/// which variable feeds which role, read off the op's inputs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UnknownBn {
    /// Where.
    pub site: Site,
    /// Role → checkpoint key (only roles fed by a variable).
    pub roles: BTreeMap<BnRole, String>,
    /// A fused op (else the decomposed form).
    pub fused: bool,
}

/// How variables are named in the graph and which layer each belongs to.
#[derive(Debug, Default)]
pub(crate) struct VarIndex {
    /// Checkpoint key → (layer index, role).
    pub layer_of_key: HashMap<String, (usize, BnRole)>,
    /// Variable name (`VarHandleOp.shared_name`, TF1 op name) → keys.
    pub keys_by_name: HashMap<String, Vec<String>>,
    /// `SavedObjectGraph` node id → checkpoint key.
    pub key_of_node: HashMap<usize, String>,
    /// Frozen graphs: the `Const` nodes that hold weights (their names are
    /// their keys), traced like variables.
    pub const_keys: HashSet<String>,
}

impl VarIndex {
    fn layer_of(&self, keys: &[String]) -> Option<(usize, BnRole)> {
        keys.iter().find_map(|k| self.layer_of_key.get(k).copied())
    }

    /// The keys of the variable named `name`. Without an object graph (TF1
    /// graphs, TF1 SavedModels) a variable's name is its checkpoint key.
    fn keys_for_name(&self, name: &str) -> Option<Binding> {
        match self.keys_by_name.get(name) {
            Some(keys) => Some(Rc::from(keys.as_slice())),
            None if self.keys_by_name.is_empty() => Some(Rc::from(vec![name.to_string()])),
            None => None,
        }
    }
}

/// The checkpoint keys a resource (or a read of it) stands for.
type Binding = Rc<[String]>;

/// What an input traces back to.
enum Val<'a> {
    /// A variable (resource handle or value read from it).
    Var(Binding),
    /// A constant.
    Const(&'a NodeDef, &'a TensorProto),
    /// Computed by another node.
    Op(&'a NodeDef),
    /// An unbound argument, a missing node, or too deep.
    Unknown,
}

/// A function body or the top-level graph, with its argument bindings.
struct Body<'a> {
    function: Option<&'a str>,
    nodes: &'a [NodeDef],
    by_name: HashMap<&'a str, &'a NodeDef>,
    args: HashMap<&'a str, usize>,
    env: Vec<Option<Binding>>,
    consumers: HashMap<&'a str, Vec<&'a NodeDef>>,
}

/// The node a graph or function input refers to (`name`, `name:k`,
/// `name:out:k`, `^name`).
fn input_node(input: &str) -> &str {
    let input = input.strip_prefix('^').unwrap_or(input);
    input.split(':').next().unwrap_or(input)
}

/// The output index of an input (`name:k` or `name:out:k`; 0 when absent).
fn input_index(input: &str) -> usize {
    input
        .rsplit(':')
        .next()
        .filter(|_| input.contains(':'))
        .and_then(|k| k.parse().ok())
        .unwrap_or(0)
}

fn data_inputs(node: &NodeDef) -> impl Iterator<Item = &str> {
    node.input
        .iter()
        .map(String::as_str)
        .filter(|i| !i.starts_with('^'))
}

impl<'a> Body<'a> {
    fn new(
        function: Option<&'a str>,
        nodes: &'a [NodeDef],
        arg_names: Vec<&'a str>,
        env: Vec<Option<Binding>>,
    ) -> Body<'a> {
        let by_name = nodes.iter().map(|n| (n.name.as_str(), n)).collect();
        let args = arg_names
            .into_iter()
            .enumerate()
            .map(|(i, a)| (a, i))
            .collect();
        let mut consumers: HashMap<&str, Vec<&NodeDef>> = HashMap::new();
        for n in nodes {
            for i in data_inputs(n) {
                consumers.entry(input_node(i)).or_default().push(n);
            }
        }
        Body {
            function,
            nodes,
            by_name,
            args,
            env,
            consumers,
        }
    }

    fn node(&self, input: &str) -> Option<&'a NodeDef> {
        self.by_name.get(input_node(input)).copied()
    }

    fn site(&self, file: &str, node: &NodeDef) -> Site {
        Site {
            file: file.to_string(),
            function: self.function.map(str::to_string),
            node: node.name.clone(),
        }
    }

    /// Follows value-preserving edges back from `input` to a variable, a
    /// constant or the computing node.
    fn resolve(&self, vars: &VarIndex, input: &str) -> Val<'a> {
        let mut input = input;
        for _ in 0..MAX_VALUE_DEPTH {
            let name = input_node(input);
            if let Some(&i) = self.args.get(name) {
                return match self.env.get(i) {
                    Some(Some(b)) => Val::Var(b.clone()),
                    _ => Val::Unknown,
                };
            }
            let Some(node) = self.by_name.get(name).copied() else {
                return Val::Unknown;
            };
            let first = || data_inputs(node).next();
            let next = match node.op.as_str() {
                // A read or a view of its input: the same values (for our
                // purposes) as the variable or tensor it reads.
                "ReadVariableOp" | "Identity" | "RefIdentity" | "Snapshot" | "Cast" | "Reshape"
                | "Squeeze" | "ExpandDims" | "StopGradient" | "Switch" | "RefSwitch" | "Enter"
                | "RefEnter" => first(),
                "IdentityN" => data_inputs(node).nth(input_index(input)),
                "VarHandleOp" => {
                    let name = node
                        .attr_str("shared_name")
                        .filter(|s| !s.is_empty())
                        .unwrap_or(&node.name);
                    return vars.keys_for_name(name).map_or(Val::Unknown, Val::Var);
                }
                "VariableV2" | "Variable" => {
                    return vars
                        .keys_for_name(&node.name)
                        .map_or(Val::Unknown, Val::Var)
                }
                "Const" | "HostConst" if vars.const_keys.contains(&node.name) => {
                    return Val::Var(Rc::from(vec![node.name.clone()]))
                }
                "Const" | "HostConst" => {
                    return match node.attr_tensor("value") {
                        Some(t) => Val::Const(node, t),
                        None => Val::Op(node),
                    }
                }
                _ => return Val::Op(node),
            };
            match next {
                Some(n) => input = n,
                None => return Val::Unknown,
            }
        }
        Val::Unknown
    }

    fn resolve_layer(&self, vars: &VarIndex, input: &str) -> Option<(usize, BnRole)> {
        match self.resolve(vars, input) {
            Val::Var(b) => vars.layer_of(&b),
            _ => None,
        }
    }
}

/// The walker over one meta graph.
struct Walker<'a> {
    file: String,
    path: &'a Path,
    vars: &'a VarIndex,
    library: HashMap<&'a str, &'a FunctionDef>,
    bound: HashMap<&'a str, Vec<Option<Binding>>>,
    visited: HashSet<(String, u64, bool)>,
    walked: HashSet<String>,
    stack: Vec<String>,
    steps: usize,
    bn: BTreeMap<(Site, Option<usize>), BnSite>,
    momentum: BTreeMap<(Site, usize), MomentumSite>,
    unknown: BTreeMap<Site, UnknownBn>,
}

/// Scans one meta graph (a SavedModel's or a TF1 `.meta`): every batch-norm
/// node and update subgraph in the top-level graph and in every function,
/// marking those reachable from a serving signature.
pub(crate) fn scan(
    meta: &MetaGraphDef,
    file: &str,
    path: &Path,
    vars: &VarIndex,
) -> Result<GraphFindings> {
    let Some(graph) = &meta.graph_def else {
        return Ok(GraphFindings::default());
    };
    let library: HashMap<&str, &FunctionDef> = graph
        .library
        .iter()
        .flat_map(|l| l.function.iter())
        .filter_map(|f| f.signature.as_ref().map(|s| (s.name.as_str(), f)))
        .collect();
    let mut bound: HashMap<&str, Vec<Option<Binding>>> = HashMap::new();
    if let Some(og) = &meta.object_graph_def {
        for (name, cf) in &og.concrete_functions {
            let keys = cf
                .bound_inputs
                .iter()
                .map(|&id| {
                    usize::try_from(id)
                        .ok()
                        .and_then(|id| vars.key_of_node.get(&id))
                        .map(|k| Rc::from(vec![k.clone()]))
                })
                .collect();
            bound.insert(name.as_str(), keys);
        }
    }
    let mut w = Walker {
        file: file.to_string(),
        path,
        vars,
        library,
        bound,
        visited: HashSet::new(),
        walked: HashSet::new(),
        stack: Vec::new(),
        steps: 0,
        bn: BTreeMap::new(),
        momentum: BTreeMap::new(),
        unknown: BTreeMap::new(),
    };

    let serving = serving_nodes(meta, graph);
    let top = Body::new(None, &graph.node, Vec::new(), Vec::new());
    // Serving pass first, so that sites reached both ways keep the flag.
    for node in graph
        .node
        .iter()
        .filter(|n| serving.contains(n.name.as_str()))
    {
        w.visit(&top, node, true, 0)?;
    }
    for node in &graph.node {
        w.visit(&top, node, false, 0)?;
    }
    // Functions no graph node calls (tf_keras layer call functions, training
    // traces): walked on their own, with their bound_inputs.
    let mut names: Vec<&str> = w.library.keys().copied().collect();
    names.sort_unstable();
    for name in names {
        if !w.walked.contains(name) {
            w.walk_function(name, Vec::new(), false, 0)?;
        }
    }
    Ok(GraphFindings {
        bn: w.bn.into_values().collect(),
        unknown: w.unknown.into_values().collect(),
        momentum: w.momentum.into_values().collect(),
        has_serving: !serving.is_empty(),
    })
}

/// Top-level nodes the serving signatures' outputs depend on. Signatures
/// whose key starts with `__` (`__saved_model_init_op`) are not serving.
fn serving_nodes<'g>(meta: &MetaGraphDef, graph: &'g GraphDef) -> HashSet<&'g str> {
    let by_name: HashMap<&str, &NodeDef> =
        graph.node.iter().map(|n| (n.name.as_str(), n)).collect();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut queue: VecDeque<&NodeDef> = VecDeque::new();
    for (key, sig) in &meta.signature_def {
        if key.starts_with("__") {
            continue;
        }
        for out in sig.outputs.values() {
            if let Some(n) = by_name.get(input_node(&out.name)) {
                if seen.insert(n.name.as_str()) {
                    queue.push_back(n);
                }
            }
        }
    }
    while let Some(node) = queue.pop_front() {
        for i in &node.input {
            if let Some(n) = by_name.get(input_node(i)) {
                if seen.insert(n.name.as_str()) {
                    queue.push_back(n);
                }
            }
        }
    }
    seen
}

/// Ops that call a function with their inputs as its arguments, and which
/// inputs those are (the rest of the attrs' functions get no bindings).
fn call_targets<'n>(
    node: &'n NodeDef,
    library: &HashMap<&str, &FunctionDef>,
) -> Vec<(&'n str, bool, usize)> {
    // (function, inputs map positionally, index of the first argument input)
    let mut out = Vec::new();
    let func = |name: &str| match node.attr.get(name).and_then(|a| a.value.as_ref()) {
        Some(attr_value::Value::Func(f)) => Some(f.name.as_str()),
        _ => None,
    };
    match node.op.as_str() {
        "PartitionedCall" | "StatefulPartitionedCall" | "SymbolicGradient" => {
            if let Some(f) = func("f") {
                out.push((f, true, 0));
            }
        }
        "If" | "StatelessIf" => {
            for b in ["then_branch", "else_branch"] {
                if let Some(f) = func(b) {
                    out.push((f, true, 1));
                }
            }
        }
        "While" | "StatelessWhile" => {
            for b in ["cond", "body"] {
                if let Some(f) = func(b) {
                    out.push((f, true, 0));
                }
            }
        }
        "Case" | "StatelessCase" => {
            if let Some(Some(attr_value::Value::List(l))) =
                node.attr.get("branches").map(|a| a.value.as_ref())
            {
                for f in &l.func {
                    out.push((f.name.as_str(), true, 1));
                }
            }
        }
        _ => {}
    }
    if out.is_empty() {
        if library.contains_key(node.op.as_str()) {
            // A function used as an op.
            out.push((node.op.as_str(), true, 0));
        }
        // Any other function-valued attr (dataset maps, …): its arguments
        // do not line up with the node's inputs.
        for (_, a) in node.attr.iter() {
            match &a.value {
                Some(attr_value::Value::Func(f)) => out.push((f.name.as_str(), false, 0)),
                Some(attr_value::Value::List(l)) => {
                    out.extend(l.func.iter().map(|f| (f.name.as_str(), false, 0)))
                }
                _ => {}
            }
        }
    }
    out
}

impl<'a> Walker<'a> {
    fn step(&mut self) -> Result<()> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(Error::GraphWalkLimit {
                path: self.path.to_path_buf(),
                what: "walking the graph and its functions".into(),
                limit: MAX_STEPS,
            });
        }
        Ok(())
    }

    fn invalid(&self, what: String) -> Error {
        Error::SavedModelInvalid {
            path: self.path.to_path_buf(),
            what,
        }
    }

    fn walk_function(
        &mut self,
        name: &str,
        mut env: Vec<Option<Binding>>,
        serving: bool,
        depth: usize,
    ) -> Result<()> {
        if self.stack.iter().any(|s| s == name) {
            let mut chain: Vec<&str> = self.stack.iter().map(String::as_str).collect();
            chain.push(name);
            return Err(Error::FunctionRecursion {
                path: self.path.to_path_buf(),
                function: name.to_string(),
                chain: chain.join(" → "),
            });
        }
        if depth > MAX_CALL_DEPTH {
            return Err(Error::RecursionLimit {
                path: self.path.to_path_buf(),
                what: format!("function calls ({} → {name})", self.stack.join(" → ")),
                limit: MAX_CALL_DEPTH,
            });
        }
        let Some(&f) = self.library.get(name) else {
            return Ok(());
        };
        let library_name: &'a str = f.signature.as_ref().map_or("", |s| s.name.as_str());
        let arg_names: Vec<&'a str> = f
            .signature
            .iter()
            .flat_map(|s| s.input_arg.iter())
            .map(|a| a.name.as_str())
            .collect();
        env.resize(arg_names.len(), None);
        if let Some(bound) = self.bound.get(name) {
            // bound_inputs feed the trailing resource arguments, in order;
            // they name object-graph nodes, so they win over what a caller's
            // inputs resolved to.
            if let Some(start) = arg_names.len().checked_sub(bound.len()) {
                let types = f.signature.iter().flat_map(|s| s.input_arg.iter());
                for ((slot, b), arg) in env[start..]
                    .iter_mut()
                    .zip(bound.iter())
                    .zip(types.skip(start))
                {
                    if b.is_some() && arg.r#type == DT_RESOURCE {
                        *slot = b.clone();
                    }
                }
            }
        }
        let mut h = DefaultHasher::new();
        for b in &env {
            b.as_deref().hash(&mut h);
        }
        if !self.visited.insert((name.to_string(), h.finish(), serving)) {
            return Ok(());
        }
        self.walked.insert(name.to_string());
        self.stack.push(name.to_string());
        let body = Body::new(Some(library_name), &f.node_def, arg_names, env);
        for node in body.nodes {
            self.visit(&body, node, serving, depth)?;
        }
        self.stack.pop();
        Ok(())
    }

    fn visit(
        &mut self,
        body: &Body<'a>,
        node: &'a NodeDef,
        serving: bool,
        depth: usize,
    ) -> Result<()> {
        self.step()?;
        if let Some(op) = fused_op(&node.op) {
            self.fused(body, node, op, serving)?;
        } else if node.op == "Rsqrt" {
            self.decomposed(body, node, serving)?;
        } else if matches!(
            node.op.as_str(),
            "AssignSubVariableOp" | "AssignSub" | "AssignVariableOp" | "Assign"
        ) {
            self.update(body, node)?;
        }
        for (callee, positional, first) in call_targets(node, &self.library) {
            let env = if positional {
                data_inputs(node)
                    .skip(first)
                    .map(|i| match body.resolve(self.vars, i) {
                        Val::Var(b) => Some(b),
                        _ => None,
                    })
                    .collect()
            } else {
                Vec::new()
            };
            self.walk_function(callee, env, serving, depth + 1)?;
        }
        Ok(())
    }

    fn record(&mut self, site: BnSite) {
        let key = (site.site.clone(), site.layer);
        match self.bn.get_mut(&key) {
            Some(old) => old.serving |= site.serving,
            None => {
                self.bn.insert(key, site);
            }
        }
    }
}

#[cfg(test)]
mod tests;
