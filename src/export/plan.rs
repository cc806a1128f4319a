//! From a source and [`ExportOptions`] to an [`ExportPlan`]: which tensors
//! to write, under which names, where each one's bytes come from, and the
//! metadata. Planning reads only the few small variables `--fold` needs;
//! the bulk of the data is read while writing ([`super::write_plan`]).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Serialize;

use super::cast::{cast_bytes, encode_constant, DtypeCast};
use super::fold;
use super::meta::{self, Meta};
use super::preset::{Preset, Slot};
use super::ExportOptions;
use crate::bn::BnApi;
use crate::error::{Error, Result};
use crate::find::discover;
use crate::hyper::{
    assumed_with_variance, layer_api, moving_variance_of, recover, Assumed, HyperSource,
    LayerHyper, Sourced, VarianceConvention,
};
use crate::layers::{BnLayer, BnRole};
use crate::source::Source;
use crate::DType;

/// A `--rename FROM=TO` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rename {
    /// A module path (or TF layer name), or a prefix of one that ends at a
    /// component boundary.
    pub from: String,
    /// Its replacement; empty strips the prefix.
    pub to: String,
}

/// Where the bytes of an exported tensor come from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TensorOrigin {
    /// A checkpoint tensor, cast from `stored` to the written dtype.
    Checkpoint {
        /// Checkpoint key.
        key: String,
        /// Stored dtype.
        stored: DType,
    },
    /// A constant the target needs but the layer lacks (γ = 1, β = 0,
    /// `num_batches_tracked` = 0).
    Constant {
        /// The value of every element.
        value: f64,
    },
    /// `--fold` output of layer `layer` (index into [`ExportPlan::layers`]).
    Folded {
        /// Layer index.
        layer: usize,
        /// Scale (`true`) or shift (`false`).
        scale: bool,
    },
}

/// One tensor of the output file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedExport {
    /// Name in the file.
    pub name: String,
    /// Element type as written.
    pub dtype: DType,
    /// Shape as written.
    pub shape: Vec<u64>,
    /// Byte length.
    pub nbytes: u64,
    /// Where the bytes come from.
    pub origin: TensorOrigin,
}

/// One exported batch-norm layer and its conventions.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerPlan {
    /// The layer's TF name.
    pub tf_name: String,
    /// Its module path in the file (after `--rename`).
    pub module: String,
    /// Channels.
    pub channels: u64,
    /// dtype of the moving statistics.
    pub dtype: DType,
    /// Checkpoint keys by role.
    pub keys: BTreeMap<BnRole, String>,
    /// Recovered (or given) hyper-parameters.
    pub hyper: LayerHyper,
    /// The TF API whose semantics the layer follows.
    pub api: Sourced<BnApi>,
    /// What the stored moving variance holds.
    pub moving_variance: Sourced<VarianceConvention>,
    /// Settings that rest on TF's defaults, the moving-variance convention
    /// included where it rests on an assumed `fused`
    /// (`crate::hyper::assumed_with_variance`).
    pub assumed: Vec<Assumed>,
}

/// Everything an export will write.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportPlan {
    /// Tensors in file order.
    pub tensors: Vec<PlannedExport>,
    /// The `__metadata__` map.
    pub metadata: BTreeMap<String, String>,
    /// Exported layers (empty for `--all-variables`).
    pub layers: Vec<LayerPlan>,
    /// Keys not written, with the reason.
    pub skipped: Vec<(String, String)>,
    /// Things the user should know (defaults used, conventions that differ
    /// from the target's).
    pub notes: Vec<String>,
}

impl PlannedExport {
    /// The bytes to write, little-endian, for a writer that streams them:
    /// borrowed from the checkpoint's memory map with their crc check still
    /// to run where no cast is needed (`crate::bundle::Bundle::read_raw_then_check`),
    /// else as [`Self::produce`] (checked).
    pub fn produce_streamed<'a>(
        &self,
        source: &'a Source,
        layers: &[LayerPlan],
    ) -> Result<crate::bundle::Deferred<'a>> {
        match &self.origin {
            TensorOrigin::Checkpoint { key, stored } if *stored == self.dtype => {
                source.store().read_raw_then_check(key)
            }
            _ => Ok(crate::bundle::Deferred {
                bytes: self.produce(source, layers)?,
                check: None,
            }),
        }
    }

    /// The tensor's bytes, read (crc-checked), cast or computed.
    pub fn produce<'a>(&self, source: &'a Source, layers: &[LayerPlan]) -> Result<Cow<'a, [u8]>> {
        match &self.origin {
            TensorOrigin::Checkpoint { key, stored } => {
                let raw = source.store().read_raw(key)?;
                cast_bytes(&self.name, *stored, self.dtype, raw)
            }
            TensorOrigin::Constant { value } => {
                let n = self.shape.iter().product::<u64>();
                Ok(Cow::Owned(encode_constant(self.dtype, *value, n)?))
            }
            TensorOrigin::Folded { layer, scale } => {
                let l = layers.get(*layer).ok_or_else(|| {
                    Error::InvalidArgument(format!("{}: no layer {layer} in the plan", self.name))
                })?;
                let (s, t, dtype) = fold_layer(source, l)?;
                let bytes = if *scale { s } else { t };
                cast_bytes(&self.name, dtype, self.dtype, Cow::Owned(bytes))
            }
        }
    }
}

/// The layer's folded scale and shift as LE bytes, and their dtype
/// (`float64` for `float64` layers, else `float32`).
fn fold_layer(source: &Source, l: &LayerPlan) -> Result<(Vec<u8>, Vec<u8>, DType)> {
    let read = |role: BnRole| -> Result<Option<crate::Tensor>> {
        match l.keys.get(&role) {
            Some(k) => Ok(Some(source.read(k)?)),
            None => Ok(None),
        }
    };
    let need = |t: Option<crate::Tensor>, role: BnRole| {
        t.ok_or_else(|| Error::LayerShapesDisagree {
            layer: l.tf_name.clone(),
            what: format!("no {} to fold", role.tf_name()),
        })
    };
    let gamma = read(BnRole::Gamma)?;
    let beta = read(BnRole::Beta)?;
    let mean = need(read(BnRole::MovingMean)?, BnRole::MovingMean)?;
    let var = need(read(BnRole::MovingVariance)?, BnRole::MovingVariance)?;
    let not_float = |t: &crate::Tensor| Error::TensorMismatch {
        key: l.tf_name.clone(),
        what: format!("cannot fold {} variables", t.dtype),
    };
    if l.dtype == DType::F64 {
        let v64 = |t: &crate::Tensor| t.to_f64_vec().ok_or_else(|| not_float(t));
        let g = gamma.as_ref().map(v64).transpose()?;
        let b = beta.as_ref().map(v64).transpose()?;
        let f = fold::fold_f64(
            &l.tf_name,
            g.as_deref(),
            b.as_deref(),
            &v64(&mean)?,
            &v64(&var)?,
            l.hyper_epsilon(),
        )?;
        let enc = |v: &[f64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        Ok((enc(&f.scale), enc(&f.shift), DType::F64))
    } else {
        let v32 = |t: &crate::Tensor| t.to_f32_vec().ok_or_else(|| not_float(t));
        let g = gamma.as_ref().map(v32).transpose()?;
        let b = beta.as_ref().map(v32).transpose()?;
        // TF rounds the Python float ε to the tensor type (f32) once.
        let eps = l.hyper_epsilon() as f32;
        let f = fold::fold_f32(
            &l.tf_name,
            g.as_deref(),
            b.as_deref(),
            &v32(&mean)?,
            &v32(&var)?,
            eps,
        )?;
        let enc = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        Ok((enc(&f.scale), enc(&f.shift), DType::F32))
    }
}

impl LayerPlan {
    /// ε as the Python float TF was given.
    pub fn hyper_epsilon(&self) -> f64 {
        #[allow(clippy::useless_conversion)]
        f64::from(self.hyper.epsilon.value)
    }

    /// Momentum in TF's convention.
    pub fn hyper_momentum(&self) -> f64 {
        #[allow(clippy::useless_conversion)]
        f64::from(self.hyper.momentum.value)
    }
}

/// `*` matches any run of characters (`/` and `.` included), `?` any one
/// character; everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// True when `pattern` names `layer`: its TF name, object path, or module
/// path under `preset` (before renaming).
fn layer_matches(pattern: &str, layer: &BnLayer, preset: Preset) -> bool {
    glob_match(pattern, &layer.name)
        || layer
            .object_path
            .as_deref()
            .is_some_and(|p| glob_match(pattern, p))
        || glob_match(pattern, &preset.module_path(&layer.name))
}

fn known_names(layers: &[BnLayer]) -> String {
    let names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// Applies the first matching rename rule; records which rules were used.
fn rename(module: &str, rules: &[Rename], preset: Preset, used: &mut [bool]) -> Result<String> {
    let sep = preset.separator();
    for (i, r) in rules.iter().enumerate() {
        let from = preset.module_path(&r.from);
        let rest = if module == from {
            Some("")
        } else {
            module
                .strip_prefix(from.as_str())
                .filter(|rest| rest.starts_with(sep))
        };
        if let Some(rest) = rest {
            used[i] = true;
            let renamed = if r.to.is_empty() {
                rest.trim_start_matches(sep).to_string()
            } else {
                format!("{}{rest}", r.to)
            };
            if renamed.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "rename {}={} leaves layer {module:?} without a name",
                    r.from, r.to
                )));
            }
            return Ok(renamed);
        }
    }
    Ok(module.to_string())
}

/// Plans a batch-norm export (see the crate README for the layout).
pub fn plan_layers(source: &Source, opts: &ExportOptions) -> Result<ExportPlan> {
    let all = discover(source);
    let preset = opts.preset;

    // --layers
    let selected: Vec<usize> = if opts.layers.is_empty() {
        (0..all.len()).collect()
    } else {
        for p in &opts.layers {
            if !all.iter().any(|l| layer_matches(p, l, preset)) {
                return Err(Error::PatternMatchesNoLayer {
                    setting: "layers",
                    sidecar: None,
                    pattern: p.clone(),
                    known: known_names(&all),
                });
            }
        }
        (0..all.len())
            .filter(|&i| {
                opts.layers
                    .iter()
                    .any(|p| layer_matches(p, &all[i], preset))
            })
            .collect()
    };
    let layers: Vec<BnLayer> = selected.iter().map(|&i| all[i].clone()).collect();
    let mut hypers = recover(source, &layers)?;

    // --epsilon / --momentum / --axis / --fused / --variance / --hyper
    opts.declared.check(&all)?;
    let mut notes = Vec::new();
    for (l, h) in layers.iter().zip(hypers.iter_mut()) {
        let changed = opts.declared.apply(l, h);
        notes.extend(changed.into_iter().map(|n| format!("{}: {n}", l.name)));
    }

    // Module paths.
    let mut used = vec![false; opts.rename.len()];
    let mut modules = Vec::with_capacity(layers.len());
    for l in &layers {
        modules.push(rename(
            &preset.module_path(&l.name),
            &opts.rename,
            preset,
            &mut used,
        )?);
    }
    if let Some(i) = used.iter().position(|u| !u) {
        return Err(Error::PatternMatchesNoLayer {
            setting: "rename",
            sidecar: None,
            pattern: opts.rename[i].from.clone(),
            known: known_names(&layers),
        });
    }
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for (m, l) in modules.iter().zip(&layers) {
        if let Some(prev) = seen.insert(m.as_str(), l.name.as_str()) {
            return Err(Error::ExportLayerNamesCollide {
                module: m.clone(),
                first: prev.to_string(),
                second: l.name.clone(),
            });
        }
    }

    let mut plans = Vec::with_capacity(layers.len());
    let mut tensors = Vec::new();
    for (i, ((l, h), module)) in layers.iter().zip(hypers).zip(modules).enumerate() {
        check_channels(l)?;
        let api = Sourced {
            value: layer_api(source, l),
            source: HyperSource::Default,
        };
        let moving_variance = opts
            .declared
            .variance(l)
            .unwrap_or_else(|| moving_variance_of(api.value, &h));
        let assumed = assumed_with_variance(&h, api.value, &moving_variance);
        let plan = LayerPlan {
            tf_name: l.name.clone(),
            module: module.clone(),
            channels: l.channels,
            dtype: l.dtype,
            keys: l
                .variables
                .iter()
                .map(|(r, v)| (*r, v.key.clone()))
                .collect(),
            hyper: h,
            api: api.clone(),
            moving_variance,
            assumed,
        };
        for slot in preset.slots(opts.fold) {
            if let Some(t) = plan_slot(l, &plan, i, slot, preset, opts.dtype)? {
                tensors.push(t);
            }
        }
        plans.push(plan);
    }
    let metadata = meta::layers_metadata(source, opts, &plans, &tensors, &layers);
    notes.extend(meta::notes(opts, &plans));
    Ok(ExportPlan {
        tensors,
        metadata,
        layers: plans,
        skipped: Vec::new(),
        notes,
    })
}

/// Every variable of the layer must hold `channels` elements.
fn check_channels(l: &BnLayer) -> Result<()> {
    for (role, v) in &l.variables {
        let n: Option<u64> = v.shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        if n != Some(l.channels) {
            return Err(Error::LayerShapesDisagree {
                layer: l.name.clone(),
                what: format!(
                    "{} has shape {:?}, moving_mean has {} elements",
                    role.tf_name(),
                    v.shape,
                    l.channels
                ),
            });
        }
    }
    Ok(())
}

fn bytes_of(dtype: DType, shape: &[u64], name: &str) -> Result<u64> {
    let width = dtype.byte_width().ok_or_else(|| {
        Error::InvalidArgument(format!("{name}: dtype {dtype} has no fixed width"))
    })? as u64;
    shape
        .iter()
        .try_fold(width, |a, &d| a.checked_mul(d))
        .ok_or_else(|| {
            Error::InvalidArgument(format!("{name}: size of shape {shape:?} overflows 64 bits"))
        })
}

fn plan_slot(
    l: &BnLayer,
    plan: &LayerPlan,
    index: usize,
    slot: Slot,
    preset: Preset,
    cast: DtypeCast,
) -> Result<Option<PlannedExport>> {
    let Some(name) = preset.tensor_name(&plan.module, slot) else {
        return Ok(None);
    };
    let c = l.channels;
    let (dtype, shape, origin) = match slot {
        Slot::Var(role) => match l.var(role) {
            Some(v) => {
                if v.dtype.to_safetensors().is_none() {
                    return Err(Error::TensorMismatch {
                        key: v.key.clone(),
                        what: format!("dtype {} cannot be stored in safetensors", v.dtype),
                    });
                }
                let shape = if preset.flattens_shapes() {
                    vec![c]
                } else {
                    v.shape.clone()
                };
                let origin = TensorOrigin::Checkpoint {
                    key: v.key.clone(),
                    stored: v.dtype,
                };
                (cast.target(v.dtype), shape, origin)
            }
            None => {
                let value = match role {
                    BnRole::Gamma if preset.needs_affine() => 1.0,
                    BnRole::Beta if preset.needs_affine() => 0.0,
                    _ => return Ok(None),
                };
                (
                    cast.target(l.dtype),
                    vec![c],
                    TensorOrigin::Constant { value },
                )
            }
        },
        Slot::NumBatchesTracked => (
            DType::I64,
            Vec::new(),
            TensorOrigin::Constant { value: 0.0 },
        ),
        Slot::FoldScale | Slot::FoldShift => {
            let computed = if l.dtype == DType::F64 {
                DType::F64
            } else {
                DType::F32
            };
            let origin = TensorOrigin::Folded {
                layer: index,
                scale: slot == Slot::FoldScale,
            };
            (cast.target(computed), vec![c], origin)
        }
    };
    let nbytes = bytes_of(dtype, &shape, &name)?;
    Ok(Some(PlannedExport {
        name,
        dtype,
        shape,
        nbytes,
        origin,
    }))
}

/// Plans `--all-variables`: every numeric variable under its checkpoint
/// key; strings (and dtypes safetensors cannot hold) are skipped and listed.
pub fn plan_all_variables(source: &Source, opts: &ExportOptions) -> Result<ExportPlan> {
    let mut tensors = Vec::new();
    let mut skipped = Vec::new();
    let store = source.store();
    for v in source.variables() {
        if !store.is_fixed_width(&v.key) || v.dtype.to_safetensors().is_none() {
            skipped.push((
                v.key.clone(),
                format!("dtype {} cannot be stored in safetensors", v.dtype),
            ));
            continue;
        }
        let dtype = opts.dtype.target(v.dtype);
        let nbytes = bytes_of(dtype, &v.shape, &v.key)?;
        tensors.push(PlannedExport {
            name: v.key.clone(),
            dtype,
            shape: v.shape.clone(),
            nbytes,
            origin: TensorOrigin::Checkpoint {
                key: v.key.clone(),
                stored: v.dtype,
            },
        });
    }
    let mut m = Meta::default();
    m.set("format", "tf");
    m.set("tfbn.version", env!("CARGO_PKG_VERSION"));
    m.set("tfbn.mode", "all-variables");
    m.set("tfbn.source", source.path().to_string_lossy());
    m.set("tfbn.naming_style", source.style().label());
    m.set("tfbn.dtype", opts.dtype.to_string());
    if !skipped.is_empty() {
        let keys: Vec<&str> = skipped.iter().map(|(k, _)| k.as_str()).collect();
        m.set(
            "tfbn.skipped",
            serde_json::to_string(&keys).unwrap_or_default(),
        );
    }
    Ok(ExportPlan {
        tensors,
        metadata: m.into_map(),
        layers: Vec::new(),
        skipped,
        notes: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*", "a/b.c"));
        assert!(glob_match("bn*", "bn_1"));
        assert!(glob_match("*/BatchNorm", "conv1/BatchNorm"));
        assert!(glob_match("bn_?", "bn_1"));
        assert!(!glob_match("bn_?", "bn_12"));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(!glob_match("a*b*c", "aXbYbZ"));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "a"));
    }

    #[test]
    fn renames_whole_components_only() {
        let rules = vec![
            Rename {
                from: "model".into(),
                to: "".into(),
            },
            Rename {
                from: "conv1/BatchNorm".into(),
                to: "stem.bn".into(),
            },
        ];
        let mut used = vec![false; 2];
        let p = Preset::Candle;
        assert_eq!(rename("model.bn", &rules, p, &mut used).unwrap(), "bn");
        assert_eq!(
            rename("modelx.bn", &rules, p, &mut used).unwrap(),
            "modelx.bn"
        );
        assert_eq!(
            rename("conv1.BatchNorm", &rules, p, &mut used).unwrap(),
            "stem.bn"
        );
        assert_eq!(used, vec![true, true]);
        assert!(rename("model", &rules, p, &mut used).is_err());
    }
}
