//! Batch norm as TF graphs hold it: `FusedBatchNorm{,V2,V3}` nodes, the
//! decomposed `Rsqrt(AddV2(variance, Const ε))` form (Keras 3, non-fused
//! tf_keras and TF1 layers), and the moving-average update subgraphs that
//! carry the momentum (`shared/format-spec.md` §3.4–3.5, bn-semantics §3.4).
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
/// used, so that no sibling is silently missed (style.md: tract knew only
/// `FusedBatchNorm`). TF ≥ 2.2 gives all three the same attributes and
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
}

/// Everything one graph says about batch norm.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct GraphFindings {
    /// Batch-norm computations, one per (site, layer).
    pub bn: Vec<BnSite>,
    /// Momenta from update subgraphs and `exponential_avg_factor`s.
    pub momentum: Vec<MomentumSite>,
    /// The meta graph has at least one serving signature.
    pub has_serving: bool,
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

/// One float constant that holds a single value (or the same value in every
/// element). `Ok(None)` for a non-float or non-uniform constant; an error
/// when its bytes contradict its shape (reliability case 45).
pub(crate) fn const_scalar(t: &TensorProto) -> std::result::Result<Option<f64>, String> {
    let width = match t.dtype {
        1 => 4,  // DT_FLOAT
        2 => 8,  // DT_DOUBLE
        14 => 2, // DT_BFLOAT16
        19 => 2, // DT_HALF
        _ => return Ok(None),
    };
    let mut elements: u64 = 1;
    for d in t.tensor_shape.iter().flat_map(|s| s.dim.iter()) {
        let size = u64::try_from(d.size).map_err(|_| {
            format!(
                "constant has dimension {}; shapes must be non-negative",
                d.size
            )
        })?;
        elements = elements
            .checked_mul(size)
            .ok_or_else(|| "constant's shape overflows 64 bits".to_string())?;
    }
    let values: Vec<f64> = if !t.tensor_content.is_empty() {
        let expected = elements.saturating_mul(width);
        if t.tensor_content.len() as u64 != expected {
            return Err(format!(
                "constant's tensor_content has {} bytes but {elements} elements of {width} bytes need {expected}",
                t.tensor_content.len()
            ));
        }
        t.tensor_content
            .chunks_exact(width as usize)
            .map(|c| match (t.dtype, c) {
                (1, &[a, b, c, d]) => f32::from_le_bytes([a, b, c, d]) as f64,
                (2, c) => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(c);
                    f64::from_le_bytes(b)
                }
                (14, &[a, b]) => half::bf16::from_bits(u16::from_le_bytes([a, b])).to_f64(),
                (19, &[a, b]) => half::f16::from_bits(u16::from_le_bytes([a, b])).to_f64(),
                _ => f64::NAN,
            })
            .collect()
    } else {
        let vals: Vec<f64> = match t.dtype {
            1 => t.float_val.iter().map(|&v| v as f64).collect(),
            2 => t.double_val.clone(),
            14 => t
                .half_val
                .iter()
                .map(|&v| half::bf16::from_bits(v as u16).to_f64())
                .collect(),
            _ => t
                .half_val
                .iter()
                .map(|&v| half::f16::from_bits(v as u16).to_f64())
                .collect(),
        };
        if vals.len() as u64 > elements {
            return Err(format!(
                "constant lists {} values but its shape holds {elements}",
                vals.len()
            ));
        }
        // TF fills the remaining elements with the last value given.
        vals
    };
    let Some(&first) = values.first() else {
        return Ok(None);
    };
    if values.iter().all(|v| v.to_bits() == first.to_bits()) {
        Ok(Some(first))
    } else {
        Ok(None)
    }
}

/// The elements of an integer constant (`DT_INT32`, `DT_INT64`);
/// `Ok(None)` for other dtypes or more than 64 elements, an error when its
/// bytes contradict its shape.
pub(crate) fn const_ints(t: &TensorProto) -> std::result::Result<Option<Vec<i64>>, String> {
    let width: usize = match t.dtype {
        3 => 4, // DT_INT32
        9 => 8, // DT_INT64
        _ => return Ok(None),
    };
    let mut elements: u64 = 1;
    for d in t.tensor_shape.iter().flat_map(|s| s.dim.iter()) {
        let size = u64::try_from(d.size).map_err(|_| {
            format!(
                "constant has dimension {}; shapes must be non-negative",
                d.size
            )
        })?;
        elements = elements
            .checked_mul(size)
            .ok_or_else(|| "constant's shape overflows 64 bits".to_string())?;
    }
    if elements > 64 {
        return Ok(None);
    }
    let n = elements as usize;
    if !t.tensor_content.is_empty() {
        if t.tensor_content.len() != n * width {
            return Err(format!(
                "constant's tensor_content has {} bytes but {n} elements of {width} bytes need {}",
                t.tensor_content.len(),
                n * width
            ));
        }
        return Ok(Some(
            t.tensor_content
                .chunks_exact(width)
                .map(|c| match *c {
                    [a, b, c, d] => i32::from_le_bytes([a, b, c, d]) as i64,
                    [a, b, c, d, e, f, g, h] => i64::from_le_bytes([a, b, c, d, e, f, g, h]),
                    _ => 0,
                })
                .collect(),
        ));
    }
    let vals: Vec<i64> = if width == 4 {
        t.int_val.iter().map(|&v| v as i64).collect()
    } else {
        t.int64_val.clone()
    };
    if vals.len() > n {
        return Err(format!(
            "constant lists {} values but its shape holds {n}",
            vals.len()
        ));
    }
    let mut out = vals;
    // TF fills the remaining elements with the last value given.
    if let Some(&last) = out.last() {
        out.resize(n, last);
    }
    Ok(Some(out))
}

/// The channel axis and input rank a fused op's `data_format` implies.
pub(crate) fn axis_of_format(format: &str) -> Option<(i64, usize)> {
    match format {
        "NHWC" => Some((3, 4)),
        "NCHW" => Some((1, 4)),
        "NDHWC" => Some((4, 5)),
        "NCDHW" => Some((1, 5)),
        _ => None,
    }
}

/// The Python float a graph's f32 was made from, as far as the f32 tells:
/// the shortest decimal that rounds to it (`0.01f32` → `0.01`).
pub(crate) fn python_float(v: f32) -> f64 {
    format!("{v}").parse().unwrap_or(v as f64)
}

/// The momentum `m` with the fewest significant digits for which
/// `f32(1 − m)` (computed in double, as Keras does) equals `decay`.
pub(crate) fn momentum_from_decay(decay: f32) -> f64 {
    let approx = 1.0 - decay as f64;
    for digits in 1..=17 {
        let m: f64 = format!("{:.*e}", digits - 1, approx)
            .parse()
            .unwrap_or(approx);
        if crate::bn::decay_python(m) == decay {
            return m;
        }
    }
    approx
}

/// A constant expression of the update subgraph: its value, and when it
/// is `1 − c`, the constant `c` (TF1 fused: `sub(1, Const momentum)`).
struct ConstExpr {
    value: f32,
    one_minus: Option<(f32, String)>,
    node: String,
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

    fn fused(
        &mut self,
        body: &Body<'a>,
        node: &'a NodeDef,
        op: &'static FusedOp,
        serving: bool,
    ) -> Result<()> {
        let inputs: Vec<&str> = data_inputs(node).collect();
        let layer = [
            (3, BnRole::MovingMean),
            (4, BnRole::MovingVariance),
            (1, BnRole::Gamma),
            (2, BnRole::Beta),
        ]
        .iter()
        .find_map(|&(i, _)| inputs.get(i).and_then(|x| body.resolve_layer(self.vars, x)))
        .map(|(l, _)| l);
        let bad_attr = |attr: &str, kind: &str| {
            self.invalid(format!(
                "node {:?} ({}): attr {attr} is not a {kind}",
                node.name, node.op
            ))
        };
        let (epsilon, epsilon_detail) = match node.attr.get("epsilon") {
            Some(_) => (
                node.attr_f32("epsilon")
                    .ok_or_else(|| bad_attr("epsilon", "float"))?,
                "attr epsilon".to_string(),
            ),
            None => (
                op.epsilon,
                format!("attr epsilon absent: op default {}", op.epsilon),
            ),
        };
        let (training, training_detail) = match node.attr.get("is_training") {
            Some(_) => {
                let t = node
                    .attr_bool("is_training")
                    .ok_or_else(|| bad_attr("is_training", "bool"))?;
                (t, format!("attr is_training = {t}"))
            }
            None => (
                op.is_training,
                format!("attr is_training absent: op default {}", op.is_training),
            ),
        };
        let factor = match node.attr.get("exponential_avg_factor") {
            Some(_) => node
                .attr_f32("exponential_avg_factor")
                .ok_or_else(|| bad_attr("exponential_avg_factor", "float"))?,
            None => op.exponential_avg_factor,
        };
        let data_format = match node.attr.get("data_format") {
            Some(_) => node
                .attr_str("data_format")
                .ok_or_else(|| bad_attr("data_format", "string"))?,
            None => op.data_format,
        };
        let is_const = |i: usize| {
            inputs
                .get(i)
                .map(|x| matches!(body.resolve(self.vars, x), Val::Const(..)))
        };
        let site = body.site(&self.file, node);
        if let (Some(layer), true) = (layer, training && factor != 1.0) {
            // tf_keras passes exponential_avg_factor = 1 − momentum, computed
            // on the Python float (bn-semantics §3.4).
            self.momentum
                .entry((site.clone(), layer))
                .or_insert(MomentumSite {
                    site: site.clone(),
                    layer,
                    momentum: momentum_from_decay(factor),
                    detail: format!("exponential_avg_factor {factor} = f32(1 − momentum)"),
                });
        }
        let axis = axis_of_format(data_format)
            .map(|(a, rank)| (a, Some(rank), format!("data_format {data_format}")));
        self.record(BnSite {
            site,
            layer,
            form: Form::Fused(op.name),
            epsilon,
            epsilon_detail,
            training,
            training_detail,
            exponential_avg_factor: Some(factor),
            data_format: Some(data_format.to_string()),
            axis,
            scale_const: is_const(1),
            offset_const: is_const(2),
            serving,
        });
        Ok(())
    }

    /// `Rsqrt(AddV2(v, Const ε))` where `v` is a layer's moving variance
    /// (inference) or a batch variance (training, tied to the layer by the
    /// γ that multiplies the result or by the name scope's variable reads).
    fn decomposed(&mut self, body: &Body<'a>, node: &'a NodeDef, serving: bool) -> Result<()> {
        let Some(add) = data_inputs(node).next().and_then(|i| body.node(i)) else {
            return Ok(());
        };
        if !matches!(add.op.as_str(), "AddV2" | "Add") {
            return Ok(());
        }
        let ins: Vec<&str> = data_inputs(add).collect();
        if ins.len() != 2 {
            return Ok(());
        }
        let vals = [
            body.resolve(self.vars, ins[0]),
            body.resolve(self.vars, ins[1]),
        ];
        let (eps_node, eps_tensor, other, other_input) = match (&vals[0], &vals[1]) {
            (_, Val::Const(n, t)) => (*n, *t, &vals[0], ins[0]),
            (Val::Const(n, t), _) => (*n, *t, &vals[1], ins[1]),
            _ => return Ok(()),
        };
        let epsilon = match const_scalar(eps_tensor) {
            Ok(Some(e)) => e as f32,
            Ok(None) => return Ok(()),
            Err(e) => return Err(self.invalid(format!("node {:?}: {e}", eps_node.name))),
        };
        let (layer, training, training_detail) = match other {
            Val::Var(b) => match self.vars.layer_of(b) {
                Some((l, BnRole::MovingVariance)) => (
                    l,
                    false,
                    format!("{} adds ε to the moving variance", add.name),
                ),
                _ => return Ok(()),
            },
            Val::Const(..) => return Ok(()),
            _ => match self.batch_layer(body, node) {
                Some(l) => (l, true, format!("{} adds ε to a batch variance", add.name)),
                None => return Ok(()),
            },
        };
        let axis = self.statistics_axis(body, other_input)?;
        self.record(BnSite {
            site: body.site(&self.file, node),
            layer: Some(layer),
            form: Form::Decomposed,
            epsilon,
            epsilon_detail: format!("Const {}", eps_node.name),
            training,
            training_detail,
            exponential_avg_factor: None,
            data_format: None,
            axis,
            scale_const: None,
            offset_const: None,
            serving,
        });
        Ok(())
    }

    /// The layer of a decomposed batch norm fed by batch statistics: the γ
    /// read that multiplies the `Rsqrt`, else the only layer whose variables
    /// are read in the same name scope (`…/batchnorm/Rsqrt` → `…/`).
    fn batch_layer(&self, body: &Body<'a>, rsqrt: &NodeDef) -> Option<usize> {
        for c in body
            .consumers
            .get(rsqrt.name.as_str())
            .into_iter()
            .flatten()
        {
            if c.op != "Mul" {
                continue;
            }
            for i in data_inputs(c).filter(|i| input_node(i) != rsqrt.name) {
                if let Some((l, BnRole::Gamma)) = body.resolve_layer(self.vars, i) {
                    return Some(l);
                }
            }
        }
        let scope = &rsqrt.name[..rsqrt.name.rfind("batchnorm/")?];
        let mut found: Option<usize> = None;
        for n in body
            .nodes
            .iter()
            .filter(|n| n.op == "ReadVariableOp" && n.name.starts_with(scope))
        {
            if let Some((l, _)) = body.resolve_layer(self.vars, &n.name) {
                match found {
                    Some(f) if f != l => return None,
                    _ => found = Some(l),
                }
            }
        }
        found
    }

    /// The channel axis of a decomposed batch norm, from the variance fed
    /// to `AddV2`: a `Reshape` to `[1, C, 1, 1]` (Keras 3 with a channel
    /// axis other than the last), a `Mean` over the other axes (batch
    /// statistics), or none of these (the statistics broadcast over the
    /// last axis).
    fn statistics_axis(
        &self,
        body: &Body<'a>,
        input: &str,
    ) -> Result<Option<(i64, Option<usize>, String)>> {
        let mut input = input;
        for _ in 0..MAX_VALUE_DEPTH {
            let name = input_node(input);
            if body.args.contains_key(name) {
                break;
            }
            let Some(node) = body.node(input) else {
                return Ok(None);
            };
            let second = || data_inputs(node).nth(1);
            match node.op.as_str() {
                "Identity" | "Cast" | "Squeeze" | "StopGradient" | "Switch" | "Enter"
                | "ExpandDims" | "Snapshot" => match data_inputs(node).next() {
                    Some(i) => input = i,
                    None => return Ok(None),
                },
                "ReadVariableOp" | "VarHandleOp" | "VariableV2" | "Variable" => break,
                "Reshape" => {
                    let Some(dims) = second().map(|i| self.int_const(body, i)).transpose()? else {
                        return Ok(None);
                    };
                    let Some(dims) = dims else { return Ok(None) };
                    let channel: Vec<usize> = (0..dims.len()).filter(|&i| dims[i] != 1).collect();
                    return Ok(match channel.as_slice() {
                        [c] => Some((
                            *c as i64,
                            Some(dims.len()),
                            format!("{} reshapes the statistics to {dims:?}", node.name),
                        )),
                        _ => None,
                    });
                }
                "Mean" => {
                    let Some(axes) = second().map(|i| self.int_const(body, i)).transpose()? else {
                        return Ok(None);
                    };
                    let Some(mut axes) = axes else {
                        return Ok(None);
                    };
                    axes.sort_unstable();
                    axes.dedup();
                    let rank = axes.len() + 1;
                    let kept: Vec<i64> = (0..rank as i64).filter(|a| !axes.contains(a)).collect();
                    return Ok(match kept.as_slice() {
                        [c] if axes.iter().all(|&a| a >= 0 && (a as usize) < rank) => Some((
                            *c,
                            Some(rank),
                            format!("{} reduces over axes {axes:?}", node.name),
                        )),
                        _ => None,
                    });
                }
                _ => return Ok(None),
            }
        }
        Ok(Some((
            -1,
            None,
            "the moving variance broadcasts over the last axis".to_string(),
        )))
    }

    fn int_const(&self, body: &Body<'a>, input: &str) -> Result<Option<Vec<i64>>> {
        match body.resolve(self.vars, input) {
            Val::Const(n, t) => {
                const_ints(t).map_err(|e| self.invalid(format!("node {:?}: {e}", n.name)))
            }
            _ => Ok(None),
        }
    }

    fn const_expr(&self, body: &Body<'a>, input: &str, depth: usize) -> Result<Option<ConstExpr>> {
        if depth > 8 {
            return Ok(None);
        }
        match body.resolve(self.vars, input) {
            Val::Const(n, t) => match const_scalar(t) {
                Ok(Some(v)) => Ok(Some(ConstExpr {
                    value: v as f32,
                    one_minus: None,
                    node: n.name.clone(),
                })),
                Ok(None) => Ok(None),
                Err(e) => Err(self.invalid(format!("node {:?}: {e}", n.name))),
            },
            Val::Op(n) if n.op == "Sub" => {
                let ins: Vec<&str> = data_inputs(n).collect();
                if ins.len() != 2 {
                    return Ok(None);
                }
                let (Some(x), Some(y)) = (
                    self.const_expr(body, ins[0], depth + 1)?,
                    self.const_expr(body, ins[1], depth + 1)?,
                ) else {
                    return Ok(None);
                };
                Ok(Some(ConstExpr {
                    value: x.value - y.value,
                    one_minus: (x.value == 1.0).then_some((y.value, y.node)),
                    node: n.name.clone(),
                }))
            }
            _ => Ok(None),
        }
    }

    /// Momentum from a moving-average update of a layer's moving mean or
    /// variance:
    /// - `AssignSub(var, (var − batch)·decay)` (TF1 and tf_keras non-fused:
    ///   `decay = f32(1 − m)`; TF1 fused: `decay = 1 − Const m` in f32);
    /// - `Assign(var, var·m + batch·(1 − m))` (Keras 3).
    fn update(&mut self, body: &Body<'a>, node: &'a NodeDef) -> Result<()> {
        let ins: Vec<&str> = data_inputs(node).collect();
        if ins.len() != 2 {
            return Ok(());
        }
        let target = match body.resolve(self.vars, ins[0]) {
            Val::Var(b) => b,
            _ => return Ok(()),
        };
        let Some((layer, BnRole::MovingMean | BnRole::MovingVariance)) =
            self.vars.layer_of(&target)
        else {
            return Ok(());
        };
        let Some(value) = body.node(ins[1]) else {
            return Ok(());
        };
        let site = body.site(&self.file, node);
        let found = if node.op.starts_with("AssignSub") {
            if value.op != "Mul" {
                return Ok(());
            }
            let mut found = None;
            for i in data_inputs(value) {
                if let Some(c) = self.const_expr(body, i, 0)? {
                    found = Some(match c.one_minus {
                        Some((m, m_node)) => (
                            python_float(m),
                            format!("decay {} = 1 − Const {m_node} (momentum {m})", c.node),
                        ),
                        None => (
                            momentum_from_decay(c.value),
                            format!("decay Const {} = {} = f32(1 − momentum)", c.node, c.value),
                        ),
                    });
                    break;
                }
            }
            found
        } else {
            if !matches!(value.op.as_str(), "AddV2" | "Add") {
                return Ok(());
            }
            let mut found = None;
            for term in data_inputs(value).filter_map(|i| body.node(i)) {
                if term.op != "Mul" {
                    continue;
                }
                let t: Vec<&str> = data_inputs(term).collect();
                if t.len() != 2 {
                    continue;
                }
                for (a, b) in [(t[0], t[1]), (t[1], t[0])] {
                    let reads_target =
                        matches!(body.resolve(self.vars, a), Val::Var(ref v) if *v == target);
                    if reads_target {
                        if let Some(c) = self.const_expr(body, b, 0)? {
                            found = Some((
                                python_float(c.value),
                                format!("old value × Const {} = momentum", c.node),
                            ));
                        }
                    }
                }
            }
            found
        };
        if let Some((momentum, detail)) = found {
            self.momentum
                .entry((site.clone(), layer))
                .or_insert(MomentumSite {
                    site,
                    layer,
                    momentum,
                    detail,
                });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_forms() {
        assert_eq!(input_node("^a/b"), "a/b");
        assert_eq!(input_node("a/b:1"), "a/b");
        assert_eq!(input_node("FusedBatchNormV3:y:0"), "FusedBatchNormV3");
        assert_eq!(input_index("a:2"), 2);
        assert_eq!(input_index("n:output:3"), 3);
        assert_eq!(input_index("arg"), 0);
    }

    #[test]
    fn python_values_from_f32() {
        assert_eq!(python_float(0.001f32), 0.001);
        assert_eq!(python_float(2e-5f32), 2e-5);
        assert_eq!(python_float(1.001e-5f32), 1.001e-5);
        assert_eq!(momentum_from_decay(crate::bn::decay_python(0.99)), 0.99);
        assert_eq!(momentum_from_decay(crate::bn::decay_python(0.95)), 0.95);
        assert_eq!(momentum_from_decay(crate::bn::decay_python(0.9)), 0.9);
        assert_eq!(momentum_from_decay(crate::bn::decay_python(0.997)), 0.997);
        assert_eq!(momentum_from_decay(crate::bn::decay_python(0.8)), 0.8);
    }

    #[test]
    fn every_fused_op_is_in_the_table() {
        for op in ["FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3"] {
            let f = fused_op(op).unwrap();
            assert_eq!((f.epsilon, f.exponential_avg_factor), (1e-4, 1.0));
            assert_eq!((f.data_format, f.is_training), ("NHWC", true));
        }
        assert!(fused_op("BatchNormWithGlobalNormalization").is_none());
    }

    fn scalar(dtype: i32) -> TensorProto {
        TensorProto {
            dtype,
            tensor_shape: Some(Default::default()),
            ..Default::default()
        }
    }

    #[test]
    fn constants_from_every_encoding() {
        // float_val, as TF writes scalars: 08 01 12 00 2A 04 6F 12 83 3A.
        let t: TensorProto = prost::Message::decode(
            &[0x08, 0x01, 0x12, 0x00, 0x2A, 0x04, 0x6F, 0x12, 0x83, 0x3A][..],
        )
        .unwrap();
        assert_eq!(const_scalar(&t).unwrap(), Some(0.001f32 as f64));
        let mut t = scalar(1);
        t.tensor_content = 1e-5f32.to_le_bytes().to_vec();
        assert_eq!(const_scalar(&t).unwrap(), Some(1e-5f32 as f64));
        let mut t = scalar(2);
        t.double_val = vec![1e-3];
        assert_eq!(const_scalar(&t).unwrap(), Some(1e-3));
        let mut t = scalar(19);
        t.half_val = vec![half::f16::from_f32(0.5).to_bits() as i32];
        assert_eq!(const_scalar(&t).unwrap(), Some(0.5));
        // Not a float: not an ε.
        let mut t = scalar(3);
        t.int_val = vec![1];
        assert_eq!(const_scalar(&t).unwrap(), None);
        // Case 45: content length ≠ shape × width.
        let mut t = scalar(1);
        t.tensor_content = vec![0; 7];
        assert!(const_scalar(&t).is_err());
        // A vector of different values is not a scalar ε.
        let mut t = scalar(1);
        t.tensor_shape = Some(crate::proto::tensor::TensorShapeProto {
            dim: vec![crate::proto::tensor::tensor_shape_proto::Dim {
                size: 2,
                name: String::new(),
            }],
            unknown_rank: false,
        });
        t.float_val = vec![1.0, 2.0];
        assert_eq!(const_scalar(&t).unwrap(), None);
        t.float_val = vec![1.0, 2.0, 3.0];
        assert!(const_scalar(&t).is_err());
    }
}

#[cfg(test)]
mod graph_tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::proto::graph::{op_def::ArgDef, AttrValue, FunctionDefLibrary, NameAttrList, OpDef};
    use crate::proto::saved_model::{SignatureDef, TensorInfo};

    fn node(
        name: &str,
        op: &str,
        inputs: &[&str],
        attrs: Vec<(&str, attr_value::Value)>,
    ) -> NodeDef {
        NodeDef {
            name: name.into(),
            op: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            device: String::new(),
            attr: attrs
                .into_iter()
                .map(|(k, v)| (k.to_string(), AttrValue { value: Some(v) }))
                .collect(),
        }
    }

    fn func(name: &str) -> attr_value::Value {
        attr_value::Value::Func(NameAttrList {
            name: name.into(),
            attr: BTreeMap::new(),
        })
    }

    fn serving(output: &str) -> BTreeMap<String, SignatureDef> {
        let mut outputs = BTreeMap::new();
        outputs.insert(
            "y".to_string(),
            TensorInfo {
                name: output.into(),
                dtype: 1,
                tensor_shape: None,
            },
        );
        let mut sigs = BTreeMap::new();
        sigs.insert(
            "serving_default".to_string(),
            SignatureDef {
                inputs: BTreeMap::new(),
                outputs,
                method_name: String::new(),
            },
        );
        sigs
    }

    fn tf1_index() -> VarIndex {
        let mut v = VarIndex::default();
        for role in [
            BnRole::Gamma,
            BnRole::Beta,
            BnRole::MovingMean,
            BnRole::MovingVariance,
        ] {
            v.layer_of_key
                .insert(format!("bn/{}", role.tf_name()), (0, role));
        }
        v
    }

    /// TF1 `tf.cond` on a training placeholder: ref variables read through
    /// `…/read` and `Switch`, a `FusedBatchNorm` (V1) in the training branch
    /// and a `FusedBatchNormV2` with stripped attrs in the inference branch.
    #[test]
    fn tf1_cond_branches_and_every_fused_op_name() {
        let mut nodes = vec![
            node("x", "Placeholder", &[], vec![]),
            node("is_training", "Placeholder", &[], vec![]),
        ];
        for v in ["gamma", "beta", "moving_mean", "moving_variance"] {
            nodes.push(node(&format!("bn/{v}"), "VariableV2", &[], vec![]));
            nodes.push(node(
                &format!("bn/{v}/read"),
                "Identity",
                &[&format!("bn/{v}")],
                vec![],
            ));
            nodes.push(node(
                &format!("cond/Switch_{v}"),
                "Switch",
                &[&format!("bn/{v}/read"), "is_training"],
                vec![],
            ));
        }
        let ins = |k: usize| {
            vec![
                "x".to_string(),
                format!("cond/Switch_gamma:{k}"),
                format!("cond/Switch_beta:{k}"),
                format!("cond/Switch_moving_mean:{k}"),
                format!("cond/Switch_moving_variance:{k}"),
            ]
        };
        let mut train = node(
            "cond/FusedBatchNorm",
            "FusedBatchNorm",
            &[],
            vec![
                ("epsilon", attr_value::Value::F(1e-3)),
                ("is_training", attr_value::Value::B(true)),
            ],
        );
        train.input = ins(1);
        let mut infer = node(
            "cond/FusedBatchNorm_1",
            "FusedBatchNormV2",
            &[],
            vec![("is_training", attr_value::Value::B(false))],
        );
        infer.input = ins(0);
        nodes.push(train);
        nodes.push(infer);
        nodes.push(node(
            "cond/Merge",
            "Merge",
            &["cond/FusedBatchNorm_1", "cond/FusedBatchNorm"],
            vec![],
        ));
        let meta = MetaGraphDef {
            graph_def: Some(GraphDef {
                node: nodes,
                ..Default::default()
            }),
            signature_def: serving("cond/Merge:0"),
            ..Default::default()
        };
        let g = scan(&meta, "model.ckpt.meta", Path::new("m.meta"), &tf1_index()).unwrap();
        assert!(g.has_serving);
        assert_eq!(g.bn.len(), 2, "{:?}", g.bn);
        let train =
            g.bn.iter()
                .find(|s| s.form == Form::Fused("FusedBatchNorm"))
                .unwrap();
        assert_eq!(
            (train.layer, train.training, train.serving),
            (Some(0), true, true)
        );
        assert_eq!(train.epsilon, 1e-3);
        let infer =
            g.bn.iter()
                .find(|s| s.form == Form::Fused("FusedBatchNormV2"))
                .unwrap();
        assert_eq!(
            (infer.layer, infer.training, infer.serving),
            (Some(0), false, true)
        );
        assert_eq!(infer.epsilon, 1e-4);
        assert!(
            infer.epsilon_detail.contains("op default"),
            "{}",
            infer.epsilon_detail
        );
        assert_eq!(infer.axis.as_ref().map(|a| a.0), Some(3));
    }

    fn arg(name: &str, ty: i32) -> ArgDef {
        ArgDef {
            name: name.into(),
            r#type: ty,
            ..Default::default()
        }
    }

    fn function(name: &str, args: Vec<ArgDef>, nodes: Vec<NodeDef>) -> FunctionDef {
        FunctionDef {
            signature: Some(OpDef {
                name: name.into(),
                input_arg: args,
                ..Default::default()
            }),
            node_def: nodes,
            ..Default::default()
        }
    }

    /// TF2: `VarHandleOp`s → `StatefulPartitionedCall` → `If` → branch
    /// functions whose resource arguments are read; a training trace no
    /// signature calls stays off the serving path.
    #[test]
    fn resources_flow_through_calls_and_if_branches() {
        let vars = ["gamma", "beta", "moving_mean", "moving_variance"];
        let mut top = vec![node("x", "Placeholder", &[], vec![])];
        for v in vars {
            top.push(node(
                &format!("h_{v}"),
                "VarHandleOp",
                &[],
                vec![(
                    "shared_name",
                    attr_value::Value::S(format!("bn/{v}").into_bytes()),
                )],
            ));
        }
        top.push(node(
            "call",
            "StatefulPartitionedCall",
            &[
                "x",
                "h_gamma",
                "h_beta",
                "h_moving_mean",
                "h_moving_variance",
            ],
            vec![("f", func("outer"))],
        ));
        let res_args = || {
            let mut a = vec![arg("x", 1)];
            a.extend(["g", "b", "m", "v"].map(|n| arg(n, DT_RESOURCE)));
            a
        };
        let outer = function(
            "outer",
            res_args(),
            vec![
                node("pred", "Const", &[], vec![]),
                node(
                    "if",
                    "StatelessIf",
                    &["pred", "x", "g", "b", "m", "v"],
                    vec![
                        ("then_branch", func("infer")),
                        ("else_branch", func("infer")),
                    ],
                ),
            ],
        );
        let mut body = vec![];
        for (r, n) in ["g", "b", "m", "v"].iter().zip(vars) {
            body.push(node(&format!("read_{n}"), "ReadVariableOp", &[r], vec![]));
        }
        let fbn = |name: &str, training: bool| {
            let mut n = node(
                name,
                "FusedBatchNormV3",
                &[],
                vec![
                    ("epsilon", attr_value::Value::F(0.01)),
                    ("is_training", attr_value::Value::B(training)),
                    ("data_format", attr_value::Value::S(b"NCHW".to_vec())),
                ],
            );
            n.input = std::iter::once("x".to_string())
                .chain(vars.iter().map(|v| format!("read_{v}:value:0")))
                .collect();
            n
        };
        let mut infer_nodes = body.clone();
        infer_nodes.push(fbn("FusedBatchNormV3", false));
        let mut train_nodes = body;
        train_nodes.push(fbn("FusedBatchNormV3", true));
        let meta = MetaGraphDef {
            graph_def: Some(GraphDef {
                node: top,
                library: Some(FunctionDefLibrary {
                    function: vec![
                        outer,
                        function("infer", res_args(), infer_nodes),
                        function("train_trace", res_args(), train_nodes),
                    ],
                    gradient: vec![],
                }),
                ..Default::default()
            }),
            signature_def: serving("call:0"),
            ..Default::default()
        };
        let mut index = VarIndex::default();
        for (i, v) in vars.iter().enumerate() {
            let key = format!("model/bn/{v}/.ATTRIBUTES/VARIABLE_VALUE");
            index
                .keys_by_name
                .insert(format!("bn/{v}"), vec![key.clone()]);
            index.layer_of_key.insert(
                key,
                (
                    0,
                    [
                        BnRole::Gamma,
                        BnRole::Beta,
                        BnRole::MovingMean,
                        BnRole::MovingVariance,
                    ][i],
                ),
            );
        }
        let g = scan(&meta, "saved_model.pb", Path::new("saved_model.pb"), &index).unwrap();
        let infer =
            g.bn.iter()
                .find(|s| s.site.function.as_deref() == Some("infer"))
                .unwrap();
        assert_eq!(
            (infer.layer, infer.training, infer.serving),
            (Some(0), false, true)
        );
        assert_eq!(infer.axis.as_ref().map(|a| (a.0, a.1)), Some((1, Some(4))));
        // Walked on its own: no bindings, so no layer, and not serving.
        let train =
            g.bn.iter()
                .find(|s| s.site.function.as_deref() == Some("train_trace"))
                .unwrap();
        assert_eq!(
            (train.layer, train.training, train.serving),
            (None, true, false)
        );
    }

    #[test]
    fn a_malformed_epsilon_constant_is_a_typed_error() {
        // reliability case 45 on the ε constant of a decomposed form.
        let mut eps = TensorProto {
            dtype: 1,
            tensor_shape: Some(Default::default()),
            ..Default::default()
        };
        eps.tensor_content = vec![1, 2, 3];
        let nodes = vec![
            node("bn/moving_variance", "VariableV2", &[], vec![]),
            node(
                "eps",
                "Const",
                &[],
                vec![("value", attr_value::Value::Tensor(eps))],
            ),
            node("add", "AddV2", &["bn/moving_variance", "eps"], vec![]),
            node("rsqrt", "Rsqrt", &["add"], vec![]),
        ];
        let meta = MetaGraphDef {
            graph_def: Some(GraphDef {
                node: nodes,
                ..Default::default()
            }),
            ..Default::default()
        };
        match scan(&meta, "m.meta", Path::new("m.meta"), &tf1_index()) {
            Err(Error::SavedModelInvalid { what, .. }) => {
                assert!(what.contains("tensor_content has 3 bytes"), "{what}")
            }
            other => panic!("{other:?}"),
        }
    }
}
