//! The own-graph check: where the file holds a runnable graph (a TF1
//! `.meta`, a TF1-style SavedModel, a frozen `GraphDef`), each layer's own
//! batch-norm node is cut out of it ([`crate::tf::own_graph`]), fed the
//! verify input and the checkpoint's variables, and compared with the native
//! layer run with the settings tfbn recovered — so a wrongly recovered ε,
//! momentum, axis or layout fails instead of passing with both sides built
//! from the same mistake.
//!
//! The verdict per layer ([`LayerReport::own_graph`](super::LayerReport)):
//! `passed`; `failed: epsilon?` (the likely settings, from [`super::diagnose`]);
//! `not runnable: TF2 function` (a TF2 SavedModel: its nodes live in
//! functions, which run only as a whole); `not runnable: …` (why);
//! `none` (the file holds no graph, or no node of it reads the layer).

use std::collections::HashMap;

use serde::Serialize;

use super::diagnose::{self, Cause, Evidence, SideOutputs};
use super::report::OutputReport;
use super::{case_input, inputs, native_outputs, Mode, Status, VerifySettings};
use crate::bn::BnConfig;
use crate::dtype::FloatDType;
use crate::error::Result;
use crate::hyper::GraphBn;
use crate::layers::{BnLayer, BnRole};
use crate::parity::{compare, ChannelLayout, Tolerance};
use crate::prepare::PreparedLayer;
use crate::proto::graph::GraphDef;
use crate::source::Source;
use crate::tf::own_graph::{extract, OwnGraph, UpdateKind};
use crate::tf::TfRuntime;

/// `passed`.
pub const PASSED: &str = "passed";
/// `none`.
pub const NONE: &str = "none";
/// `not runnable: TF2 function`.
pub const TF2_FUNCTION: &str = "not runnable: TF2 function";

/// One batch-norm node of the file's graph run for a layer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OwnGraphRun {
    /// The node (fused op, or the decomposed form's `Rsqrt`).
    pub node: String,
    /// The branch it belongs to.
    pub mode: Mode,
    /// The input shape fed (the graph's rank and channel axis).
    pub input_shape: Vec<usize>,
    /// `pass`, `fail` or `error`.
    pub status: Status,
    /// Why it could not run.
    pub error: Option<String>,
    /// `y`, and the moving statistics where the graph updates them.
    pub outputs: Vec<OutputReport>,
    /// Likely causes of a failure.
    pub causes: Vec<Cause>,
}

/// What the file's graph offers every layer.
pub(crate) struct OwnContext<'s> {
    graph: Option<&'s GraphDef>,
    nodes: Vec<GraphBn>,
    why_not: Option<String>,
}

impl<'s> OwnContext<'s> {
    /// The graph beside `source` and its batch-norm nodes.
    pub(crate) fn new(source: &'s Source, all: &[BnLayer]) -> OwnContext<'s> {
        let graph = match source.saved_model() {
            Some(sm) => sm.meta_graph().graph_def.as_ref(),
            None => source.meta_graph().and_then(|(_, m)| m.graph_def.as_ref()),
        };
        let (nodes, why_not) = match graph {
            None => (Vec::new(), None),
            Some(_) => match crate::hyper::graph_bn_nodes(source, all) {
                Ok(n) => (n, None),
                Err(e) => (Vec::new(), Some(format!("not runnable: {e}"))),
            },
        };
        OwnContext {
            graph,
            nodes,
            why_not,
        }
    }
}

/// The graph's name for a layer variable (TF1: its key).
fn graph_name(layer: &BnLayer, role: BnRole) -> Option<String> {
    layer.variables.get(&role).map(|v| v.key.clone())
}

/// The checkpoint value of the variable the graph names `name`.
fn value_of(source: &Source, name: &str) -> Result<(Vec<u64>, Vec<f32>)> {
    let key = match source.variable(name) {
        Some(v) => v.key.clone(),
        None => source
            .variables()
            .iter()
            .find(|v| v.name == name)
            .map(|v| v.key.clone())
            .unwrap_or_else(|| name.to_string()),
    };
    let t = source.read(&key)?;
    let shape = t.shape.clone();
    let v = t
        .to_f32_vec()
        .ok_or_else(|| crate::error::Error::OwnGraphNotRunnable {
            node: name.to_string(),
            why: format!("variable {key} is not float32"),
        })?;
    Ok((shape, v))
}

/// The input shape for a node: the graph's rank (else the rebuilt layer's)
/// with the channels where the graph puts them; and that axis.
fn shape_for(
    node: &GraphBn,
    data_format: Option<&str>,
    fallback_rank: usize,
    batch: usize,
    channels: usize,
) -> (Vec<usize>, usize) {
    let rank = node
        .rank
        .unwrap_or(if data_format.is_some() {
            4
        } else {
            fallback_rank
        })
        .max(2);
    let axis = match data_format {
        Some(f) if f.starts_with("NC") => 1,
        Some(_) => rank - 1,
        None => match node.axis {
            Some(a) if a < 0 => (rank as i64 + a).clamp(0, rank as i64 - 1) as usize,
            Some(a) => (a as usize).min(rank - 1),
            None => rank - 1,
        },
    };
    let mut shape = vec![batch];
    shape.extend((0..rank - 2).map(|i| 5 + i));
    shape.insert(axis.max(1), channels);
    (shape, axis.max(1))
}

/// The own-graph verdict of one layer and the runs behind it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check(
    rt: &TfRuntime,
    ctx: &OwnContext,
    source: &Source,
    layer_index: usize,
    p: &PreparedLayer,
    cfg: &BnConfig,
    fallback_rank: usize,
    settings: &VerifySettings,
    tolerance: Tolerance,
) -> (String, Vec<OwnGraphRun>) {
    let Some(graph) = ctx.graph else {
        return (NONE.into(), Vec::new());
    };
    if let Some(why) = &ctx.why_not {
        return (why.clone(), Vec::new());
    }
    let mine: Vec<&GraphBn> = ctx
        .nodes
        .iter()
        .filter(|n| n.layer == layer_index)
        .collect();
    let top: Vec<&GraphBn> = mine
        .iter()
        .copied()
        .filter(|n| n.function.is_none())
        .collect();
    if top.is_empty() {
        return if mine.is_empty() {
            (NONE.into(), Vec::new())
        } else {
            (TF2_FUNCTION.into(), Vec::new())
        };
    }
    let moving: Vec<String> = [BnRole::MovingMean, BnRole::MovingVariance]
        .into_iter()
        .filter_map(|r| graph_name(&p.layer, r))
        .collect();
    // A node that does not show the rank (an inference branch has no
    // reduction) takes the rank its sibling in the other branch shows.
    let fallback_rank = mine.iter().find_map(|n| n.rank).unwrap_or(fallback_rank);
    let mut runs = Vec::new();
    for node in top {
        let mode = if node.training {
            Mode::Training
        } else {
            Mode::Inference
        };
        if !settings.modes.contains(&mode) {
            continue;
        }
        runs.push(run_node(
            rt,
            graph,
            node,
            mode,
            source,
            p,
            cfg,
            &moving,
            fallback_rank,
            settings,
            tolerance,
        ));
    }
    (verdict(&runs), runs)
}

/// `passed`, `failed: a? b?`, or `not runnable: …`.
fn verdict(runs: &[OwnGraphRun]) -> String {
    if runs.is_empty() {
        return "not runnable: no node of the graph in the modes verified".into();
    }
    let failed: Vec<&OwnGraphRun> = runs.iter().filter(|r| r.status == Status::Fail).collect();
    if !failed.is_empty() {
        let mut kinds: Vec<&str> = failed
            .iter()
            .flat_map(|r| r.causes.iter().map(|c| c.kind))
            .collect();
        kinds.dedup();
        let mut seen = Vec::new();
        kinds.retain(|k| {
            let new = !seen.contains(k);
            seen.push(*k);
            new
        });
        return if kinds.is_empty() {
            "failed".into()
        } else {
            format!(
                "failed: {}",
                kinds
                    .iter()
                    .map(|k| format!("{k}?"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        };
    }
    if runs.iter().any(|r| r.status == Status::Pass) {
        return PASSED.into();
    }
    let why = runs
        .iter()
        .find_map(|r| r.error.clone())
        .unwrap_or_else(|| "no run".into());
    format!("not runnable: {why}")
}

#[allow(clippy::too_many_arguments)]
fn run_node(
    rt: &TfRuntime,
    graph: &GraphDef,
    node: &GraphBn,
    mode: Mode,
    source: &Source,
    p: &PreparedLayer,
    cfg: &BnConfig,
    moving: &[String],
    fallback_rank: usize,
    settings: &VerifySettings,
    tolerance: Tolerance,
) -> OwnGraphRun {
    let mut run = OwnGraphRun {
        node: node.node.clone(),
        mode,
        input_shape: Vec::new(),
        status: Status::Error,
        error: None,
        outputs: Vec::new(),
        causes: Vec::new(),
    };
    // An inference branch updates nothing (and a training branch's
    // assigns are dead there).
    let moving = if mode == Mode::Training { moving } else { &[] };
    let mut extracted = match extract(graph, &node.node, moving) {
        Ok(e) => e,
        Err(e) => {
            run.error = Some(e.to_string());
            return run;
        }
    };
    let c = p.layer.channels as usize;
    let (shape, axis) = shape_for(
        node,
        extracted.data_format.as_deref(),
        fallback_rank,
        settings.batch,
        c,
    );
    extracted.set_input_shape(&shape);
    let own = match OwnGraph::new(rt, extracted) {
        Ok(o) => o,
        Err(e) => {
            run.error = Some(e.to_string());
            return run;
        }
    };
    run.input_shape = shape.clone();
    let training = mode == Mode::Training;
    let salt = inputs::name_salt(&p.layer.name);
    let y_layout = ChannelLayout::of(&shape, axis);
    let olds: HashMap<String, Vec<f32>> = own
        .extracted
        .updates
        .iter()
        .filter_map(|u| Some((u.variable.clone(), value_of(source, &u.variable).ok()?.1)))
        .collect();
    let stat_of = |var: &str| {
        if graph_name(&p.layer, BnRole::MovingMean).as_deref() == Some(var) {
            "moving_mean"
        } else {
            "moving_variance"
        }
    };
    let mut evidence = None;
    let mut passed = true;
    for &case in &settings.cases {
        let x = case_input(case, &shape, axis, FloatDType::F32, settings.seed, salt);
        let Some(xs) = x.as_f32() else {
            continue;
        };
        let got = match own.run(training, xs, &shape, &|v| value_of(source, v)) {
            Ok(g) => g,
            Err(e) => {
                run.error = Some(e.to_string());
                return run;
            }
        };
        let nat = match native_outputs(cfg, &p.params, &x, &shape, training) {
            Ok(n) => n,
            Err(e) => {
                // The native side cannot take the graph's layout: the
                // settings disagree with the graph.
                run.status = Status::Fail;
                run.causes.push(Cause {
                    kind: "layout",
                    message: format!(
                        "the native layer cannot run the graph's input {shape:?} (channels on axis {axis}): {e}"
                    ),
                });
                return run;
            }
        };
        let nat_y = nat.y.to_f32_lossy();
        let mut pairs: Vec<(&'static str, Vec<f32>, Vec<f32>, ChannelLayout)> =
            vec![("y", got.y.clone(), nat_y, y_layout)];
        let mut tf_stats: HashMap<&'static str, Vec<f32>> = HashMap::new();
        for (u, v) in own.extracted.updates.iter().zip(&got.updates) {
            let name = stat_of(&u.variable);
            let new: Vec<f32> = match (u.kind, olds.get(&u.variable)) {
                (UpdateKind::Replace, _) => v.clone(),
                (UpdateKind::Subtract, Some(old)) => {
                    old.iter().zip(v).map(|(a, b)| a - b).collect()
                }
                (UpdateKind::Subtract, None) => continue,
            };
            if let Some(n) = nat.stat(name) {
                pairs.push((name, new.clone(), n.to_f32_lossy(), ChannelLayout::last(c)));
            }
            tf_stats.insert(name, new);
        }
        let mut case_ok = true;
        for (name, t, n, layout) in &pairs {
            let cmp = match compare(t, n, *layout) {
                Ok(c) => c,
                Err(e) => {
                    run.status = Status::Fail;
                    run.causes.push(Cause {
                        kind: "layout",
                        message: format!("{name}: {e}"),
                    });
                    return run;
                }
            };
            case_ok &= tolerance.accepts(&cmp);
            match run.outputs.iter_mut().find(|o| o.name == *name) {
                Some(o) => o.add(&cmp, case, tolerance),
                None => run
                    .outputs
                    .push(OutputReport::new(name, &cmp, case, tolerance)),
            }
        }
        if !case_ok {
            passed = false;
            if evidence.is_none() || case == super::InputCase::Normal {
                evidence = Some((xs.to_vec(), pairs, tf_stats));
            }
        }
    }
    run.status = if passed { Status::Pass } else { Status::Fail };
    if let Some((xs, pairs, tf_stats)) = &evidence {
        let y_of = |i: usize| pairs.first().map(|p| if i == 0 { &p.1 } else { &p.2 });
        let (Some(tf_y), Some(nat_y)) = (y_of(0), y_of(1)) else {
            return run;
        };
        let nat_stat = |n: &str| pairs.iter().find(|p| p.0 == n).map(|p| p.2.as_slice());
        let ev = Evidence {
            config: cfg,
            params: &p.params,
            x: xs,
            shape: &shape,
            axis,
            training,
            tf: SideOutputs {
                y: tf_y,
                moving_mean: tf_stats.get("moving_mean").map(Vec::as_slice),
                moving_variance: tf_stats.get("moving_variance").map(Vec::as_slice),
            },
            native: SideOutputs {
                y: nat_y,
                moving_mean: nat_stat("moving_mean"),
                moving_variance: nat_stat("moving_variance"),
            },
        };
        run.causes = diagnose::diagnose(&ev);
        if run.causes.is_empty() {
            let max_ulp = run.outputs.iter().map(|o| o.max_ulp).max().unwrap_or(0);
            let max_rel = run.outputs.iter().map(|o| o.max_rel).fold(0.0, f64::max);
            run.causes
                .extend(diagnose::fallback(rt.host.backend, max_ulp, max_rel));
        }
    }
    run
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(rank: Option<usize>, axis: Option<i64>) -> GraphBn {
        GraphBn {
            layer: 0,
            node: "n".into(),
            function: None,
            training: false,
            axis,
            rank,
        }
    }

    #[test]
    fn shapes_follow_the_graph() {
        assert_eq!(
            shape_for(&node(None, None), Some("NHWC"), 2, 4, 8),
            (vec![4, 5, 6, 8], 3)
        );
        assert_eq!(
            shape_for(&node(None, None), Some("NCHW"), 2, 4, 8),
            (vec![4, 8, 5, 6], 1)
        );
        assert_eq!(
            shape_for(&node(Some(2), Some(1)), None, 4, 4, 6),
            (vec![4, 6], 1)
        );
        assert_eq!(
            shape_for(&node(Some(4), Some(-1)), None, 2, 4, 6),
            (vec![4, 5, 6, 6], 3)
        );
    }

    fn run(status: Status, kinds: &[&'static str]) -> OwnGraphRun {
        OwnGraphRun {
            node: "n".into(),
            mode: Mode::Training,
            input_shape: Vec::new(),
            status,
            error: None,
            outputs: Vec::new(),
            causes: kinds
                .iter()
                .map(|k| Cause {
                    kind: k,
                    message: String::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn verdicts_name_the_settings() {
        assert_eq!(verdict(&[run(Status::Pass, &[])]), "passed");
        assert_eq!(
            verdict(&[
                run(Status::Pass, &[]),
                run(Status::Fail, &["epsilon", "epsilon", "momentum"])
            ]),
            "failed: epsilon? momentum?"
        );
        assert!(verdict(&[]).starts_with("not runnable"));
    }
}
