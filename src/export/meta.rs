//! The `__metadata__` of exported files.
//!
//! safetensors metadata is a flat string → string map. Besides `format`
//! (set for the target's loaders, see [`Preset::format`]), every key tfbn
//! writes starts with `tfbn.`:
//!
//! | key | value |
//! |---|---|
//! | `tfbn.version`, `tfbn.mode` | tool version; `layers` or `all-variables` |
//! | `tfbn.source`, `tfbn.naming_style` | the path given to tfbn; `tf1`, `tf_keras`, `keras3`, `tf2` |
//! | `tfbn.preset`, `tfbn.dtype`, `tfbn.fold` | the export options (`tfbn.fold`: `false`, or the folding formula) |
//! | `tfbn.variance_policy` | `declared`: running variances are written as stored, never converted |
//! | `tfbn.layers` | JSON list of the module paths, in file order |
//! | `tfbn.key.<tensor>` | the checkpoint key a tensor was read from |
//! | `tfbn.layer.<module>.<field>` | per layer, see below |
//!
//! Per-layer fields: `tf_name`, `object_path`, `channels`, `dtype`,
//! `<variable>_key` (the checkpoint key of each variable the layer has);
//! `epsilon`, `momentum_tf` (weight of the old value, TF's convention),
//! `momentum_torch` (`1 − momentum_tf`, the weight of the new value, for
//! PyTorch, candle and burn), `axis`, `api` (the TF API whose arithmetic the
//! layer follows), `fused`, and `moving_variance` (`biased` or `bessel`),
//! each with a `<field>_source`: `graph: …`, `keras_metadata: …`,
//! `variables`, `default`, `flag` or `sidecar: FILE`. `assumed` is a JSON
//! list of the settings that rest on TF's defaults rather than the files or
//! a declaration (`epsilon`, `momentum`, `axis`, `fused`, `moving_variance
//! convention`; `[]` when none). Then `target_running_var` (the
//! preset's convention), `gamma` / `beta` (`stored`, `ones …`, `zeros …`,
//! `absent …`), and where they apply `renorm`, `num_batches_tracked`,
//! `reshaped`, `serving_mode`, `conflicts`.
//!
//! Numbers are decimal strings any float parser reads (`0.001`); momenta
//! are rounded to 15 significant digits, so `1 − 0.99` reads `0.01`.

use std::collections::BTreeMap;

use super::plan::{LayerPlan, PlannedExport, TensorOrigin};
use super::preset::Preset;
use super::ExportOptions;
use crate::bn::BnApi;
use crate::hyper::{Assumed, HyperSource, VarianceConvention};
use crate::layers::{BnLayer, BnRole};
use crate::source::Source;

/// Metadata prefix of one layer's fields.
pub fn layer_prefix(module: &str) -> String {
    format!("tfbn.layer.{module}.")
}

/// A sorted metadata map under construction.
#[derive(Debug, Default)]
pub struct Meta(BTreeMap<String, String>);

impl Meta {
    /// Sets `key` to `value`.
    pub fn set(&mut self, key: impl Into<String>, value: impl AsRef<str>) {
        self.0.insert(key.into(), value.as_ref().to_string());
    }

    /// The finished map.
    pub fn into_map(self) -> BTreeMap<String, String> {
        self.0
    }
}

/// A decimal string for `v`, rounded to 15 significant digits (the digits
/// an f64 holds reliably), so that `1 − 0.99` prints as `0.01`.
pub fn fmt_decimal(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let rounded: f64 = format!("{v:.14e}").parse().unwrap_or(v);
    rounded.to_string()
}

/// `kind` or `kind: detail` for a [`HyperSource`] (`graph: saved_model.pb:
/// …/FusedBatchNormV3 (attr epsilon)`, `default`, `flag`).
pub fn source_label(s: &HyperSource) -> String {
    let kind = serde_json::to_value(s)
        .ok()
        .and_then(|v| v.get("kind").and_then(|k| k.as_str().map(String::from)))
        .unwrap_or_else(|| "unknown".into());
    if let HyperSource::Sidecar { file } = s {
        return format!("sidecar: {file}");
    }
    let shown = s.to_string();
    if shown == kind || shown.is_empty() {
        kind
    } else if matches!(s, HyperSource::Variables) {
        "variables".into()
    } else {
        format!("{kind}: {shown}")
    }
}

fn variance_label(v: VarianceConvention) -> &'static str {
    match v {
        VarianceConvention::Biased => "biased",
        VarianceConvention::Bessel => "bessel",
    }
}

/// The folding formula as written to `tfbn.fold`.
pub const FOLD_FORMULA: &str =
    "y = x * scale + shift; scale = gamma * (1 / sqrt(moving_variance + epsilon)), \
shift = beta - moving_mean * scale, each op rounded in float32 (float64 for float64 layers); \
|y - y_tf| <= 2^-19 * (|x * scale| + |moving_mean * scale| + |beta|)";

/// The metadata of a layer export.
pub(crate) fn layers_metadata(
    source: &Source,
    opts: &ExportOptions,
    plans: &[LayerPlan],
    tensors: &[PlannedExport],
    layers: &[BnLayer],
) -> BTreeMap<String, String> {
    let preset = opts.preset;
    let mut m = Meta::default();
    m.set("format", preset.format());
    m.set("tfbn.version", env!("CARGO_PKG_VERSION"));
    m.set("tfbn.mode", "layers");
    m.set("tfbn.preset", preset.label());
    m.set("tfbn.source", source.path().to_string_lossy());
    m.set("tfbn.naming_style", source.style().label());
    m.set("tfbn.dtype", opts.dtype.to_string());
    m.set("tfbn.fold", if opts.fold { FOLD_FORMULA } else { "false" });
    m.set(
        "tfbn.variance_policy",
        "declared: moving variances are written as stored, never converted \
         (see tfbn.layer.<module>.moving_variance and target_running_var)",
    );
    let modules: Vec<&str> = plans.iter().map(|p| p.module.as_str()).collect();
    m.set(
        "tfbn.layers",
        serde_json::to_string(&modules).unwrap_or_default(),
    );
    for t in tensors {
        if let TensorOrigin::Checkpoint { key, .. } = &t.origin {
            m.set(format!("tfbn.key.{}", t.name), key);
        }
    }
    for (p, l) in plans.iter().zip(layers) {
        layer_fields(&mut m, preset, opts.fold, source, p, l);
    }
    m.into_map()
}

fn layer_fields(
    m: &mut Meta,
    preset: Preset,
    fold: bool,
    source: &Source,
    p: &LayerPlan,
    l: &BnLayer,
) {
    let pre = layer_prefix(&p.module);
    let mut set = |k: &str, v: &str| m.set(format!("{pre}{k}"), v);
    set("tf_name", &p.tf_name);
    if let Some(o) = &l.object_path {
        set("object_path", o);
    }
    set("channels", &p.channels.to_string());
    set("dtype", p.dtype.name());
    for (role, key) in &p.keys {
        set(&format!("{}_key", role.tf_name()), key);
    }
    let h = &p.hyper;
    set("epsilon", &fmt_decimal(p.hyper_epsilon()));
    set("epsilon_source", &source_label(&h.epsilon.source));
    let mom = p.hyper_momentum();
    set("momentum_tf", &fmt_decimal(mom));
    set("momentum_torch", &fmt_decimal(1.0 - mom));
    set("momentum_source", &source_label(&h.momentum.source));
    set("axis", &h.axis.value.to_string());
    set("axis_source", &source_label(&h.axis.source));
    set("api", p.api.value.label());
    let api_source = match &p.api.source {
        HyperSource::Default => format!("default (naming style {})", source.style().label()),
        s => source_label(s),
    };
    set("api_source", &api_source);
    set(
        "fused",
        &match h.fused.value {
            Some(b) => b.to_string(),
            None => "unknown".into(),
        },
    );
    set("fused_source", &source_label(&h.fused.source));
    set("moving_variance", variance_label(p.moving_variance.value));
    let mut mv_source = source_label(&p.moving_variance.source);
    if h.fused.value.is_none()
        && matches!(p.api.value, BnApi::Tf1Layers | BnApi::TfKeras)
        && !p.moving_variance.is_declared()
    {
        mv_source.push_str(" (fused kernel assumed, TF's choice for 4-D inputs)");
    }
    set("moving_variance_source", &mv_source);
    if let Some(t) = preset.running_var_convention() {
        set("target_running_var", variance_label(t));
    }
    let assumed: Vec<&str> = p.assumed.iter().map(|a| a.label()).collect();
    set(
        "assumed",
        &serde_json::to_string(&assumed).unwrap_or_default(),
    );
    if !fold {
        for (role, param, fill) in [
            (BnRole::Gamma, "weight", "ones"),
            (BnRole::Beta, "bias", "zeros"),
        ] {
            let field = role.tf_name();
            let value = if l.var(role).is_some() {
                "stored".to_string()
            } else if preset.needs_affine() {
                format!(
                    "{fill}: the layer has no {field} ({} off) and {preset} needs {}",
                    if role == BnRole::Gamma {
                        "scale"
                    } else {
                        "center"
                    },
                    preset.leaf(super::preset::Slot::Var(role)).unwrap_or(param)
                )
            } else {
                format!(
                    "absent: the layer has no {field} ({} off)",
                    if role == BnRole::Gamma {
                        "scale"
                    } else {
                        "center"
                    }
                )
            };
            set(field, &value);
        }
        if l.is_renorm() {
            set(
                "renorm",
                if preset == Preset::Tf {
                    "exported: moving_stddev, renorm_mean, renorm_stddev"
                } else {
                    "not exported: moving_stddev, renorm_mean, renorm_stddev \
                     (inference uses moving_mean and moving_variance only)"
                },
            );
        }
        if preset == Preset::Pytorch {
            set(
                "num_batches_tracked",
                "0: TF keeps no per-layer batch count; PyTorch reads it only when momentum=None",
            );
        }
        if preset.flattens_shapes() {
            let reshaped: Vec<String> = l
                .variables
                .iter()
                .filter(|(_, v)| v.shape.len() != 1)
                .map(|(r, v)| format!("{} {:?}", r.tf_name(), v.shape))
                .collect();
            if !reshaped.is_empty() {
                set(
                    "reshaped",
                    &format!("written as [{}]: {}", p.channels, reshaped.join(", ")),
                );
            }
        }
    }
    if let Some(mode) = h.serving_mode.value {
        let mode = serde_json::to_value(mode)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        set("serving_mode", &mode);
    }
    if !h.conflicts.is_empty() {
        set(
            "conflicts",
            &serde_json::to_string(&h.conflicts).unwrap_or_default(),
        );
    }
}

/// One-line notes for the user: defaults that were assumed and stored
/// conventions that differ from the target's.
pub(crate) fn notes(opts: &ExportOptions, plans: &[LayerPlan]) -> Vec<String> {
    let mut notes = Vec::new();
    let assumed: Vec<String> = plans
        .iter()
        .filter(|p| !p.assumed.is_empty())
        .map(|p| format!("{} ({})", p.tf_name, Assumed::join(&p.assumed)))
        .collect();
    if !assumed.is_empty() {
        let names: Vec<&str> = assumed.iter().map(String::as_str).collect();
        notes.push(format!(
            "{} layer(s) rest on TF's defaults (no graph or Keras metadata records them; \
             written as tfbn.layer.<module>.assumed): {}; declare them (epsilon, momentum, \
             axis, fused, variance) for those layers",
            assumed.len(),
            abbreviate(&names)
        ));
    }
    if let Some(target) = opts.preset.running_var_convention() {
        let differ: Vec<&str> = plans
            .iter()
            .filter(|p| p.moving_variance.value != target)
            .map(|p| p.tf_name.as_str())
            .collect();
        if !differ.is_empty() && !opts.fold {
            notes.push(format!(
                "{} layer(s) store a {} moving variance where {}'s training update uses the {} one: {}; \
                 written as stored and declared in the metadata (inference is unaffected)",
                differ.len(),
                if target == VarianceConvention::Bessel { "biased" } else { "Bessel-corrected" },
                opts.preset,
                if target == VarianceConvention::Bessel { "Bessel-corrected" } else { "biased" },
                abbreviate(&differ)
            ));
        }
    }
    notes
}

fn abbreviate(names: &[&str]) -> String {
    if names.len() <= 4 {
        names.join(", ")
    } else {
        format!("{}, … ({} more)", names[..3].join(", "), names.len() - 3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_the_ones_people_type() {
        assert_eq!(fmt_decimal(1.0 - 0.99), "0.01");
        assert_eq!(fmt_decimal(1.0 - 0.9), "0.1");
        assert_eq!(fmt_decimal(0.001), "0.001");
        assert_eq!(fmt_decimal(2e-5), "0.00002");
        assert_eq!(fmt_decimal(0.99), "0.99");
        assert_eq!(fmt_decimal(1.001e-5), "0.00001001");
    }

    #[test]
    fn sources_have_a_kind() {
        assert_eq!(source_label(&HyperSource::Default), "default");
        assert_eq!(source_label(&HyperSource::Flag), "flag");
        assert_eq!(source_label(&HyperSource::Variables), "variables");
        assert_eq!(
            source_label(&HyperSource::Sidecar {
                file: "h.toml".into()
            }),
            "sidecar: h.toml"
        );
    }
}
