//! The batch-norm patterns the walker recognizes in a function body or
//! graph: fused ops ([`super::FUSED_OPS`]), the decomposed
//! `Rsqrt(AddV2(variance, Const ε))` form, and the moving-average updates
//! that carry the momentum (docs/bn-arithmetic.md#moving-averages).

use crate::bn::MovingUpdate;
use crate::error::Result;
use crate::layers::BnRole;
use crate::proto::graph::NodeDef;

use super::super::consts::{
    axis_of_format, const_ints, const_scalar, momentum_from_decay, python_float,
};
use std::collections::BTreeMap;

use super::{
    data_inputs, input_index, input_node, BnSite, Body, Form, FusedOp, MomentumSite, Site,
    UnknownBn, Val, Walker, MAX_VALUE_DEPTH,
};

/// A constant expression of the update subgraph: its value, and when it
/// is `1 − c`, the constant `c` (TF1 fused: `sub(1, Const momentum)`).
struct ConstExpr {
    value: f32,
    one_minus: Option<(f32, String)>,
    node: String,
}

impl<'a> Walker<'a> {
    pub(super) fn fused(
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
        let grappler_rewrite = (!training)
            .then(|| grappler_rewrites(body, node, &inputs))
            .flatten();
        let site = body.site(&self.file, node);
        if layer.is_none() {
            let roles = [
                (1, BnRole::Gamma),
                (2, BnRole::Beta),
                (3, BnRole::MovingMean),
                (4, BnRole::MovingVariance),
            ]
            .iter()
            .filter_map(|&(i, role)| {
                let key = self.var_key(body, inputs.get(i)?)?;
                Some((role, key))
            })
            .collect();
            self.unknown_bn(site.clone(), roles, true);
        }
        if let (Some(layer), true) = (layer, training && factor != 1.0) {
            // tf_keras passes exponential_avg_factor = 1 − momentum, computed
            // on the Python float (docs/bn-arithmetic.md#moving-averages).
            self.momentum
                .entry((site.clone(), layer))
                .or_insert(MomentumSite {
                    site: site.clone(),
                    layer,
                    momentum: momentum_from_decay(factor),
                    detail: format!("exponential_avg_factor {factor} = f32(1 − momentum)"),
                    form: None,
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
            grappler_rewrite,
            serving,
        });
        Ok(())
    }

    /// `Rsqrt(AddV2(v, Const ε))` where `v` is a layer's moving variance
    /// (inference) or a batch variance (training, tied to the layer by the
    /// γ that multiplies the result or by the name scope's variable reads).
    pub(super) fn decomposed(
        &mut self,
        body: &Body<'a>,
        node: &'a NodeDef,
        serving: bool,
    ) -> Result<()> {
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
                Some(_) => return Ok(()),
                None => {
                    if let Some(variance) = b.first() {
                        self.decomposed_unknown(body, node, variance.clone());
                    }
                    return Ok(());
                }
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
            grappler_rewrite: None,
            serving,
        });
        Ok(())
    }

    /// The first checkpoint key `input` reads, when it traces to a variable.
    fn var_key(&self, body: &Body<'a>, input: &str) -> Option<String> {
        match body.resolve(self.vars, input) {
            Val::Var(b) => b.first().cloned(),
            _ => None,
        }
    }

    fn unknown_bn(&mut self, site: Site, roles: BTreeMap<BnRole, String>, fused: bool) {
        if !roles.is_empty() {
            self.unknown
                .entry(site.clone())
                .or_insert(UnknownBn { site, roles, fused });
        }
    }

    /// Graph-based discovery of the decomposed form
    /// `x·(γ·rsqrt(var+ε)) + (β − mean·γ·rsqrt(var+ε))` (`tf.nn.batch_normalization`,
    /// Keras 3, non-fused layers), with `variance` a variable no known layer
    /// owns: γ multiplies the `Rsqrt`, the mean multiplies that product, β is
    /// what the product of the mean is subtracted from (absent: `Neg`).
    fn decomposed_unknown(&mut self, body: &Body<'a>, rsqrt: &'a NodeDef, variance: String) {
        let mut roles = BTreeMap::from([(BnRole::MovingVariance, variance)]);
        let consumers = |n: &NodeDef| -> Vec<&'a NodeDef> {
            body.consumers
                .get(n.name.as_str())
                .map(|c| c.to_vec())
                .unwrap_or_default()
        };
        let other_var = |mul: &NodeDef, not: &str| -> Option<String> {
            data_inputs(mul)
                .filter(|i| input_node(i) != not)
                .find_map(|i| self.var_key(body, i))
        };
        // `mean·inv` is recognised by what consumes it: `β − mean·inv`, or
        // `−(mean·inv)` without β. Any other product of `inv` with a variable
        // is `inv·γ`, the new `inv`.
        let mean_product = |c: &NodeDef| -> Option<Option<String>> {
            for d in consumers(c) {
                let ins: Vec<&str> = data_inputs(d).collect();
                match d.op.as_str() {
                    "Sub" if ins.len() == 2 && input_node(ins[1]) == c.name => {
                        return Some(self.var_key(body, ins[0]));
                    }
                    "Neg" => return Some(None),
                    _ => {}
                }
            }
            None
        };
        let mut inv: &NodeDef = rsqrt;
        for _ in 0..2 {
            let mut next = None;
            for c in consumers(inv) {
                if c.op != "Mul" {
                    continue;
                }
                let Some(v) = other_var(c, &inv.name) else {
                    continue;
                };
                match mean_product(c) {
                    Some(beta) => {
                        roles.insert(BnRole::MovingMean, v);
                        if let Some(b) = beta {
                            roles.insert(BnRole::Beta, b);
                        }
                        next = None;
                        break;
                    }
                    None if inv.name == rsqrt.name && next.is_none() => {
                        roles.insert(BnRole::Gamma, v);
                        next = Some(c);
                    }
                    None => {}
                }
            }
            match next {
                Some(c) if !roles.contains_key(&BnRole::MovingMean) => inv = c,
                _ => break,
            }
        }
        let site = body.site(&self.file, rsqrt);
        self.unknown_bn(site, roles, false);
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
        for n in body.nodes.iter().filter(|n| {
            matches!(
                n.op.as_str(),
                "ReadVariableOp" | "Identity" | "Switch" | "RefSwitch"
            ) && n.name.starts_with(scope)
        }) {
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
        self.statistics_axis_at(body, input, 0)
    }

    /// [`Self::statistics_axis`] at `Merge` nesting `depth` (bounded, so a
    /// crafted chain of merges cannot exhaust the stack).
    fn statistics_axis_at(
        &self,
        body: &Body<'a>,
        input: &str,
        depth: usize,
    ) -> Result<Option<(i64, Option<usize>, String)>> {
        if depth > 8 {
            return Ok(None);
        }
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
                // A frozen graph's weight constant stands for its variable.
                "Const" | "HostConst" if self.vars.const_keys.contains(&node.name) => break,
                // TF 1.x non-fused layers with a `training` tensor feed one
                // batchnorm subgraph from `Merge(moving, batch)`: the batch
                // branch's reduction tells the rank too, so it wins.
                // …or, in graphs TF 2 builds from TF1 code (control flow
                // v2), from `If(training, batch, moving)`: the branch
                // arguments (after the predicate) play the Merge's part.
                "Merge" | "RefMerge" | "If" | "StatelessIf" => {
                    let skip = usize::from(node.op.ends_with("If"));
                    let mut best = None;
                    for i in data_inputs(node).skip(skip) {
                        match self.statistics_axis_at(body, i, depth + 1)? {
                            Some(a) if a.1.is_some() => return Ok(Some(a)),
                            Some(a) => best = best.or(Some(a)),
                            None => {}
                        }
                    }
                    return Ok(best);
                }
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
            // TF 1.x layers called with a `training` tensor pick the
            // momentum with a cond: `Merge(Const 1.0 (inference), Const m
            // (training))`. The value other than 1 is the momentum.
            Val::Op(n) if matches!(n.op.as_str(), "Merge" | "RefMerge") => {
                let mut values = Vec::new();
                for i in data_inputs(n) {
                    match self.const_expr(body, i, depth + 1)? {
                        Some(c) => values.push(c),
                        None => return Ok(None),
                    }
                }
                let not_one: Vec<&ConstExpr> = values.iter().filter(|c| c.value != 1.0).collect();
                Ok(match not_one.as_slice() {
                    [c] => Some(ConstExpr {
                        value: c.value,
                        one_minus: None,
                        node: format!("{} (the training branch of {})", c.node, n.name),
                    }),
                    _ => None,
                })
            }
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
    pub(super) fn update(&mut self, body: &Body<'a>, node: &'a NodeDef) -> Result<()> {
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
            let form = if node.op.starts_with("AssignSub") {
                MovingUpdate::AssignSub
            } else {
                MovingUpdate::Interpolate
            };
            self.momentum
                .entry((site.clone(), layer))
                .or_insert(MomentumSite {
                    site,
                    layer,
                    momentum,
                    detail,
                    form: Some(form),
                });
        }
        Ok(())
    }
}

/// Whether TF's Grappler replaces the inference-mode fused op `node` with
/// element-wise ops before it runs (its remapper does so for a `float32` op
/// whose side outputs nobody reads and whose scale and variance — or four of
/// its five inputs — are constants once constant folding has run, as in a
/// frozen graph; docs/bn-arithmetic.md#grappler-rewrite). The reason, when
/// it does.
fn grappler_rewrites(body: &Body<'_>, node: &NodeDef, inputs: &[&str]) -> Option<String> {
    if node.attr_type("T").unwrap_or(1) != 1 {
        return None;
    }
    let side_outputs_read = body
        .consumers
        .get(node.name.as_str())
        .into_iter()
        .flatten()
        .flat_map(|c| data_inputs(c))
        .any(|i| input_node(i) == node.name && input_index(i) != 0);
    if side_outputs_read {
        return None;
    }
    let constant: Vec<bool> = (0..5)
        .map(|i| inputs.get(i).is_some_and(|x| folds_to_constant(body, x)))
        .collect();
    let count = constant.iter().filter(|&&c| c).count();
    (constant[1] && constant[4] || count >= 4).then(|| {
        "Grappler's remapper rewrites this inference op (constant scale and variance) into \
         element-wise ops"
            .to_string()
    })
}

/// True when constant folding turns `input` into a constant: a `Const`
/// reached through ops that only pass or reshape their first input.
fn folds_to_constant(body: &Body<'_>, input: &str) -> bool {
    let mut input = input;
    for _ in 0..MAX_VALUE_DEPTH {
        let Some(node) = body.node(input) else {
            return false;
        };
        match node.op.as_str() {
            "Const" | "HostConst" => return true,
            "Identity" | "Snapshot" | "Cast" | "Reshape" | "Squeeze" | "ExpandDims"
            | "StopGradient" => match data_inputs(node).next() {
                Some(i) => input = i,
                None => return false,
            },
            _ => return false,
        }
    }
    false
}
