//! One layer's settings from every place that records them: the Keras
//! config first, then the graph's sites (serving ones first), then what the
//! variables show, then TF's defaults. Each field is one [`Merge::field`]
//! call over its candidates in that order; a candidate that disagrees with
//! the chosen one becomes a conflict.

use super::consts;
use super::graph::{BnSite, Form, GraphFindings};
use super::keras::KerasBn;
use super::{HyperSource, LayerHyper, RenormClipping, ServingMode, Sourced};
use crate::layers::{BnLayer, BnRole};

/// Equal at the precision TF stores hyper-parameters in graphs.
fn same_f32(a: &f64, b: &f64) -> bool {
    *a as f32 == *b as f32
}

/// Equal as momenta: the same f32, or the same decay `f32(1 − m)`.
fn same_momentum(a: &f64, b: &f64) -> bool {
    same_f32(a, b) || crate::bn::decay_python(*a) == crate::bn::decay_python(*b)
}

/// Serving sites first, then inference traces, then the rest.
fn site_rank(s: &BnSite) -> (bool, bool) {
    (!s.serving, s.training)
}

/// The candidates of one layer and the conflicts found so far.
struct Merge<'a> {
    keras: Vec<&'a KerasBn>,
    sites: Vec<&'a BnSite>,
    conflicts: Vec<String>,
}

impl<'a> Merge<'a> {
    /// The Keras config's value of a field, where one says.
    fn keras<T>(&self, f: impl Fn(&KerasBn) -> Option<T>) -> Vec<(T, HyperSource)> {
        self.keras
            .iter()
            .filter_map(|k| Some((f(k)?, HyperSource::keras(k))))
            .collect()
    }

    /// The first candidate, with every other that disagrees recorded as a
    /// conflict (once per distinct value).
    fn field<T: Clone + std::fmt::Display>(
        &mut self,
        name: &str,
        candidates: Vec<(T, HyperSource)>,
        same: impl Fn(&T, &T) -> bool,
    ) -> Option<Sourced<T>> {
        let mut it = candidates.into_iter();
        let (value, source) = it.next()?;
        let mut reported: Vec<T> = Vec::new();
        for (v, s) in it {
            if !same(&value, &v) && !reported.iter().any(|r| same(r, &v)) {
                self.conflicts
                    .push(format!("{name}: {value} from {source}, but {v} from {s}"));
                reported.push(v);
            }
        }
        Some(Sourced::new(value, source))
    }

    /// A field only a Keras config records.
    fn keras_only<T: Clone + PartialEq + std::fmt::Display>(
        &mut self,
        name: &str,
        f: impl Fn(&KerasBn) -> Option<T>,
    ) -> Option<Sourced<T>> {
        let candidates = self.keras(f);
        self.field(name, candidates, |a, b| a == b)
    }
}

/// The settings of `layer` (the `index`-th) from the graph's findings and
/// the Keras configs.
pub(super) fn merge(
    layer: &BnLayer,
    index: usize,
    g: &GraphFindings,
    keras: &[KerasBn],
) -> LayerHyper {
    let mut h = LayerHyper::defaults(layer);
    let mut sites: Vec<&BnSite> = g.bn.iter().filter(|s| s.layer == Some(index)).collect();
    sites.sort_by_key(|s| site_rank(s));
    let mut m = Merge {
        keras: keras.iter().filter(|k| k.layer == index).collect(),
        sites,
        conflicts: Vec::new(),
    };

    epsilon_and_momentum(&mut m, &mut h, layer, index, g);
    keras_only(&mut m, &mut h);
    axis(&mut m, &mut h);
    renorm_extras(&mut m, &mut h);
    center_and_scale(&mut m, &mut h, layer);
    fused(&mut m, &mut h, layer);
    serving(&mut m, &mut h);
    h.conflicts = m.conflicts;
    h
}

fn epsilon_and_momentum(
    m: &mut Merge<'_>,
    h: &mut LayerHyper,
    layer: &BnLayer,
    index: usize,
    g: &GraphFindings,
) {
    let mut eps = m.keras(|k| k.epsilon);
    eps.extend(m.sites.iter().map(|s| {
        (
            consts::python_float(s.epsilon),
            HyperSource::graph(&s.site, s.epsilon_detail.clone()),
        )
    }));
    if let Some(v) = m.field("epsilon", eps, same_f32) {
        h.epsilon = v;
    }

    let mut mom = m.keras(|k| k.momentum);
    mom.extend(
        g.momentum
            .iter()
            .filter(|u| u.layer == index)
            .map(|u| (u.momentum, HyperSource::graph(&u.site, u.detail.clone()))),
    );
    if let Some(v) = m.field("momentum", mom, same_momentum) {
        h.momentum = v;
    }

    // A hand-written update's form (graph-found `nn` layers), from the
    // first site that shows one.
    let hand_written = layer.api == Some(crate::bn::BnApi::Nn);
    if let Some(u) = g
        .momentum
        .iter()
        .find(|u| hand_written && u.layer == index && u.form.is_some())
    {
        h.nn_update = Sourced::new(u.form, HyperSource::graph(&u.site, u.detail.clone()));
    }
}

/// Keras 3's `synchronized`, the dtype policy and ghost batches: only a
/// config records them.
fn keras_only(m: &mut Merge<'_>, h: &mut LayerHyper) {
    if let Some(v) = m.keras_only("synchronized", |k| Some(DisplayOpt(Some(k.synchronized?)))) {
        h.synchronized = Sourced::new(v.value.0, v.source);
    }
    if let Some(v) = m.keras_only("dtype_policy", |k| k.dtype_policy.clone()) {
        h.dtype_policy = Sourced::new(Some(v.value), v.source);
    }
    if let Some(v) = m.keras_only("virtual_batch_size", |k| {
        Some(DisplayU64(k.virtual_batch_size?))
    }) {
        h.virtual_batch_size = Sourced::new(v.value.0, v.source);
    }
}

/// Renorm's clipping and momentum: only a config records them.
fn renorm_extras(m: &mut Merge<'_>, h: &mut LayerHyper) {
    if let Some(v) = m.keras_only::<RenormClipping>("renorm_clipping", |k| k.renorm_clipping) {
        h.renorm_clipping = v;
    }
    let rmom = m.keras(|k| k.renorm_momentum);
    if let Some(v) = m.field("renorm_momentum", rmom, same_f32) {
        h.renorm_momentum = v;
    }
}

/// The config's axis, normalized with the rank the graph implies; else the
/// graph's (a fused op's layout, a decomposed form's reshape or reduction
/// axes).
fn axis(m: &mut Merge<'_>, h: &mut LayerHyper) {
    // With ghost batches the graph runs the layer on x reshaped to
    // (vbs, B / vbs, …) with [1, …, 1, C] variables: its reductions and
    // broadcasts do not name the layer's axis, so only the config's counts.
    let ghost = h.virtual_batch_size.value.is_some();
    let graph_axes: Vec<(i64, Option<usize>, HyperSource)> = m
        .sites
        .iter()
        .filter(|_| !ghost)
        .filter_map(|s| {
            let (axis, rank, detail) = s.axis.clone()?;
            Some((axis, rank, HyperSource::graph(&s.site, detail)))
        })
        .collect();
    let rank = graph_axes.iter().find_map(|a| a.1).map(|r| r as i64);
    let normalize = |a: i64| match rank {
        Some(r) if a < 0 && a >= -r => a + r,
        _ => a,
    };
    let mut axes = m.keras(|k| k.axis.map(normalize));
    axes.extend(graph_axes.into_iter().map(|(a, _, s)| (normalize(a), s)));
    if let Some(v) = m.field("axis", axes, |a, b| a == b) {
        h.axis = v;
    }
}

/// Config, then a fused op fed a constant (tf_keras passes zeros / ones),
/// then which variables exist.
fn center_and_scale(m: &mut Merge<'_>, h: &mut LayerHyper, layer: &BnLayer) {
    if let Some(v) = input_kept(m, layer, "center", |k| k.center, |s| s.offset_const) {
        h.center = v;
    }
    if let Some(v) = input_kept(m, layer, "scale", |k| k.scale, |s| s.scale_const) {
        h.scale = v;
    }
}

/// Whether the layer keeps β (`center`) or γ (`scale`): `constant` says
/// whether a site's fused op reads a constant for that input.
fn input_kept(
    m: &mut Merge<'_>,
    layer: &BnLayer,
    name: &str,
    keras: impl Fn(&KerasBn) -> Option<bool>,
    constant: impl Fn(&BnSite) -> Option<bool>,
) -> Option<Sourced<bool>> {
    let (input, role) = match name {
        "center" => ("offset", BnRole::Beta),
        _ => ("scale", BnRole::Gamma),
    };
    let mut candidates = m.keras(keras);
    candidates.extend(m.sites.iter().filter_map(|s| {
        let c = constant(s)?;
        let what = if c { "is a constant" } else { "reads a variable" };
        Some((!c, HyperSource::graph(&s.site, format!("{input} input {what}"))))
    }));
    candidates.push((layer.var(role).is_some(), HyperSource::Variables));
    m.field(name, candidates, |a, b| a == b)
}

/// The config when it says, else the form the graph runs; and Grappler's
/// rewrite of an inference fused op.
fn fused(m: &mut Merge<'_>, h: &mut LayerHyper, layer: &BnLayer) {
    let mut fused = m.keras(|k| Some(DisplayOpt(Some(k.fused?))));
    fused.extend(m.sites.iter().map(|s| {
        let (v, what) = match s.form {
            Form::Fused(op) => (true, op.to_string()),
            Form::Decomposed => (false, "Rsqrt(AddV2(variance, ε))".to_string()),
        };
        (DisplayOpt(Some(v)), HyperSource::graph(&s.site, what))
    }));
    // A layer with renorm variables never ran the fused kernel: tf_keras and
    // the TF1 layers fall back to the non-fused path when `renorm=True`.
    let has_renorm = [
        BnRole::RenormMean,
        BnRole::RenormStddev,
        BnRole::MovingStddev,
    ]
    .iter()
    .any(|r| layer.var(*r).is_some());
    if has_renorm {
        fused.push((DisplayOpt(Some(false)), HyperSource::Variables));
    }
    if let Some(v) = m.field("fused", fused, |a, b| a == b) {
        h.fused = Sourced::new(v.value.0, v.source);
    }
    // Serving sites come first.
    if let Some((s, why)) = m
        .sites
        .iter()
        .find_map(|s| s.grappler_rewrite.as_ref().map(|w| (s, w)))
    {
        h.inference_rewritten = Sourced::new(true, HyperSource::graph(&s.site, why.clone()));
    }
}

/// Training anywhere on a serving path wins.
fn serving(m: &mut Merge<'_>, h: &mut LayerHyper) {
    let serving: Vec<&&BnSite> = m.sites.iter().filter(|s| s.serving).collect();
    let training = serving.iter().find(|s| s.training);
    let inference = serving.iter().find(|s| !s.training);
    if let Some(t) = training {
        h.serving_mode = Sourced::new(
            Some(ServingMode::Training),
            HyperSource::graph(&t.site, t.training_detail.clone()),
        );
        if let Some(i) = inference {
            m.conflicts.push(format!(
                "serving_mode: training at {}: {}, but inference at {}: {}",
                t.site.file,
                t.site.describe(),
                i.site.file,
                i.site.describe()
            ));
        }
    } else if let Some(i) = inference {
        h.serving_mode = Sourced::new(
            Some(ServingMode::Inference),
            HyperSource::graph(&i.site, i.training_detail.clone()),
        );
    }
}

/// `Option<u64>` that prints as the number or `none`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct DisplayU64(Option<u64>);

impl std::fmt::Display for DisplayU64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(v) => write!(f, "{v}"),
            None => f.write_str("none"),
        }
    }
}

/// `Option<bool>` that prints as `true`, `false` or `unknown`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct DisplayOpt(Option<bool>);

impl std::fmt::Display for DisplayOpt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(b) => write!(f, "{b}"),
            None => f.write_str("unknown"),
        }
    }
}
