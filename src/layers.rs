//! Grouping variables into batch-normalization layers, for every naming
//! style TF has used:
//!
//! | style | example key of gamma |
//! |---|---|
//! | TF1 `tf.compat.v1.layers` | `conv1/batch_normalization/gamma` |
//! | TF-slim (no gamma by default) | `conv1/BatchNorm/beta` |
//! | tf_keras object graph | `model/layer_with_weights-1/gamma/.ATTRIBUTES/VARIABLE_VALUE` |
//! | Keras 3 object graph | `model/_operations/2/gamma/.ATTRIBUTES/VARIABLE_VALUE`, or only under `optimizer/_trainable_variables/N/…` |
//!
//! A layer is the set of variables owned by one object (TF2: the parent
//! object path; TF1: the name scope) that holds both `moving_mean` and
//! `moving_variance`. `gamma` and `beta` are optional (`scale=False`,
//! `center=False`, TF-slim), and renorm adds `moving_stddev`, `renorm_mean`
//! and `renorm_stddev`. Only [`VariableRole::Model`] variables are
//! considered: optimizer slots and EMA shadows never form layers.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::source::{strip_attribute_suffix, NamingStyle, Source, Variable, VariableRole};
use crate::DType;

/// The variables a batch-norm layer can own, in TF's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BnRole {
    /// Scale γ (absent with `scale=False`).
    Gamma,
    /// Offset β (absent with `center=False`).
    Beta,
    /// Moving mean.
    MovingMean,
    /// Moving variance.
    MovingVariance,
    /// Renorm: moving standard deviation.
    MovingStddev,
    /// Renorm: renorm mean.
    RenormMean,
    /// Renorm: renorm standard deviation.
    RenormStddev,
}

impl BnRole {
    /// Every role, in the order reports list them.
    pub const ALL: [BnRole; 7] = [
        BnRole::Gamma,
        BnRole::Beta,
        BnRole::MovingMean,
        BnRole::MovingVariance,
        BnRole::MovingStddev,
        BnRole::RenormMean,
        BnRole::RenormStddev,
    ];

    /// TF's variable name for the role (`gamma`, `moving_mean`, …).
    pub fn tf_name(self) -> &'static str {
        match self {
            BnRole::Gamma => "gamma",
            BnRole::Beta => "beta",
            BnRole::MovingMean => "moving_mean",
            BnRole::MovingVariance => "moving_variance",
            BnRole::MovingStddev => "moving_stddev",
            BnRole::RenormMean => "renorm_mean",
            BnRole::RenormStddev => "renorm_stddev",
        }
    }

    /// Parses a leaf name. Keras 3 and tf_keras sometimes number duplicate
    /// names inside one layer (`gamma_1`), which is not a BN variable.
    pub fn from_leaf(leaf: &str) -> Option<BnRole> {
        BnRole::ALL.into_iter().find(|r| r.tf_name() == leaf)
    }
}

/// A reference to one variable of a layer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VarRef {
    /// Key in the checkpoint.
    pub key: String,
    /// The variable's own name.
    pub name: String,
    /// Shape as stored.
    pub shape: Vec<u64>,
    /// Element type.
    pub dtype: DType,
}

/// One batch-normalization layer found in a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BnLayer {
    /// The layer's name: the TF1 scope, or the Keras variable-name prefix
    /// (`batch_normalization_1`, `sequential/bn`); when two layers would
    /// share a name (Keras 3 subclassed models can drop the layer name), the
    /// object path instead.
    pub name: String,
    /// The owning object's path in a TF2 object graph.
    pub object_path: Option<String>,
    /// Number of channels (elements of `moving_mean`).
    pub channels: u64,
    /// dtype of the moving statistics.
    pub dtype: DType,
    /// The variables by role.
    pub variables: BTreeMap<BnRole, VarRef>,
    /// How the layer was found.
    pub found_by: FoundBy,
    /// The TF API the file itself shows for this layer, where it does (a
    /// graph-found layer: `fused` for a fused op, `nn` for
    /// `tf.nn.batch_normalization`); `None`: the naming style's API applies.
    pub api: Option<crate::bn::BnApi>,
}

/// How a layer was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FoundBy {
    /// Its variables' names follow a TF or Keras naming convention
    /// (`…/gamma`, `…/moving_mean`, …).
    Naming,
    /// A batch-norm op of the file's graph reads its variables.
    Graph,
    /// The user declared which variables form it (a name mapping).
    Declared,
    /// A Keras model config lists it as a batch-norm layer, paired with its
    /// variables (Keras files: `config.json`, `model_config`, `--hyper`).
    KerasConfig,
}

impl FoundBy {
    /// `naming`, `graph`, `declared` or `keras_config`.
    pub fn label(self) -> &'static str {
        match self {
            FoundBy::Naming => "naming",
            FoundBy::Graph => "graph",
            FoundBy::Declared => "declared",
            FoundBy::KerasConfig => "keras_config",
        }
    }
}

impl BnLayer {
    /// The variable for `role`, if the layer has it.
    pub fn var(&self, role: BnRole) -> Option<&VarRef> {
        self.variables.get(&role)
    }

    /// True when all variables hold the same number of elements.
    pub fn shapes_agree(&self) -> bool {
        let counts: Vec<u64> = self
            .variables
            .values()
            .map(|v| v.shape.iter().product())
            .collect();
        counts.windows(2).all(|w| w[0] == w[1])
    }

    /// True when the layer carries renorm variables.
    pub fn is_renorm(&self) -> bool {
        self.variables.contains_key(&BnRole::RenormMean)
            || self.variables.contains_key(&BnRole::RenormStddev)
    }
}

/// Where a variable sits for grouping.
struct Placement {
    /// Owner id: the TF1 scope, the owning object's path, or (for layouts
    /// without layer structure) `name:` + the variable-name prefix.
    owner: String,
    /// Role inside the owner.
    role: BnRole,
    /// The layer name this variable suggests.
    display: String,
    /// True when the owner is an object path.
    by_object: bool,
}

fn placement(v: &Variable, style: NamingStyle) -> Option<Placement> {
    if style == NamingStyle::Tf1 {
        let (owner, leaf) = v.key.rsplit_once('/')?;
        return Some(Placement {
            owner: owner.to_string(),
            role: BnRole::from_leaf(leaf)?,
            display: owner.to_string(),
            by_object: false,
        });
    }
    let name = v.name.strip_suffix(":0").unwrap_or(&v.name);
    let name_split = name.rsplit_once('/');
    // The first model path that names a BN variable: a Keras optimizer keeps
    // its own references (`optimizer/_trainable_variables/N`, also reachable
    // as `model/optimizer/…`), which are storage places, not owners.
    let through_optimizer = |p: &str| {
        p.split('/')
            .any(|c| c == "optimizer" || c == "_trainable_variables")
    };
    let candidates = v
        .paths
        .iter()
        .map(String::as_str)
        .chain(std::iter::once(strip_attribute_suffix(&v.key)));
    for path in candidates.filter(|p| !through_optimizer(p)) {
        let Some((owner, leaf)) = path.rsplit_once('/') else {
            continue;
        };
        if let Some(role) = BnRole::from_leaf(leaf) {
            let display = name_split
                .map(|(p, _)| p.to_string())
                .unwrap_or_else(|| owner.to_string());
            return Some(Placement {
                owner: owner.to_string(),
                role,
                display,
                by_object: true,
            });
        }
    }
    // `model.export` lists variables flat (`variables/N`, `_all_variables/M`)
    // with no layer structure: only the variable names tell the layer.
    let (prefix, leaf) = name_split?;
    Some(Placement {
        owner: format!("name:{prefix}"),
        role: BnRole::from_leaf(leaf)?,
        display: prefix.to_string(),
        by_object: false,
    })
}

/// `model.export` stores each variable twice; the `_all_variables/` copy is
/// the duplicate.
fn is_duplicate_listing(key: &str) -> bool {
    key.starts_with("_all_variables/")
}

/// The batch-norm layers whose variables follow a naming convention, in key
/// order of their `moving_mean` (the first step of
/// [`crate::find::discover`]).
pub fn by_naming(source: &Source) -> Vec<BnLayer> {
    let style = source.style();
    // owner → (display names seen, by object path, variables by role)
    type Group<'a> = (Vec<String>, bool, BTreeMap<BnRole, &'a Variable>);
    let mut groups: BTreeMap<String, Group<'_>> = BTreeMap::new();
    for v in source.variables() {
        if v.role != VariableRole::Model {
            continue;
        }
        let Some(p) = placement(v, style) else {
            continue;
        };
        let entry = groups.entry(p.owner).or_default();
        entry.0.push(p.display);
        entry.1 = p.by_object;
        let slot = entry.2.entry(p.role).or_insert(v);
        if is_duplicate_listing(&slot.key) && !is_duplicate_listing(&v.key) {
            *slot = v;
        }
    }

    let mut layers: Vec<BnLayer> = Vec::new();
    for (owner, (displays, by_object, vars)) in groups {
        let (Some(mean), Some(_)) = (
            vars.get(&BnRole::MovingMean),
            vars.get(&BnRole::MovingVariance),
        ) else {
            continue;
        };
        let channels = mean.shape.iter().product();
        let name = most_common(&displays).unwrap_or_else(|| owner.clone());
        layers.push(BnLayer {
            name,
            object_path: by_object.then(|| owner.clone()),
            channels,
            dtype: mean.dtype,
            variables: vars
                .iter()
                .map(|(r, v)| {
                    (
                        *r,
                        VarRef {
                            key: v.key.clone(),
                            name: v.name.clone(),
                            shape: v.shape.clone(),
                            dtype: v.dtype,
                        },
                    )
                })
                .collect(),
            found_by: FoundBy::Naming,
            api: None,
        });
    }

    // Names must identify layers: fall back to the object path where two
    // layers share a display name.
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for l in &layers {
        *counts.entry(l.name.clone()).or_default() += 1;
    }
    for l in &mut layers {
        if counts.get(&l.name).copied().unwrap_or(0) > 1 {
            if let Some(p) = &l.object_path {
                l.name = p.clone();
            }
        }
    }
    layers.sort_by(|a, b| {
        let ka = a.var(BnRole::MovingMean).map_or("", |v| v.key.as_str());
        let kb = b.var(BnRole::MovingMean).map_or("", |v| v.key.as_str());
        natural_cmp(ka, kb)
    });
    layers
}

/// Compares keys with runs of digits taken as numbers, so that
/// `_operations/10` sorts after `_operations/2` (model order).
pub(crate) fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for ((da, sa), (db, sb)) in ca.iter().zip(cb.iter()) {
        let ord = if *da && *db {
            let (ta, tb) = (sa.trim_start_matches('0'), sb.trim_start_matches('0'));
            ta.len().cmp(&tb.len()).then(ta.cmp(tb))
        } else {
            sa.cmp(sb)
        };
        if ord != std::cmp::Ordering::Equal {
            return ord;
        }
    }
    ca.len().cmp(&cb.len())
}

fn most_common(names: &[String]) -> Option<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for n in names {
        *counts.entry(n.as_str()).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
        .map(|(n, _)| n.to_string())
}

/// Finds a layer by name, object path or the scope of any of its keys.
pub fn find<'a>(layers: &'a [BnLayer], name: &str) -> Option<&'a BnLayer> {
    layers.iter().find(|l| l.name == name).or_else(|| {
        layers
            .iter()
            .find(|l| l.object_path.as_deref() == Some(name))
    })
}

crate::label::display_label!(FoundBy);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_takes_numbers_as_numbers() {
        use std::cmp::Ordering::*;
        assert_eq!(natural_cmp("variables/4/x", "variables/20/x"), Less);
        assert_eq!(natural_cmp("a/10", "a/9"), Greater);
        assert_eq!(natural_cmp("bn", "bn_1"), Less);
        assert_eq!(natural_cmp("a/02", "a/2"), Equal);
        assert_eq!(natural_cmp("", "a"), Less);
    }

    #[test]
    fn leaves_map_to_roles() {
        assert_eq!(
            BnRole::from_leaf("moving_variance"),
            Some(BnRole::MovingVariance)
        );
        assert_eq!(BnRole::from_leaf("gamma_1"), None);
        for r in BnRole::ALL {
            assert_eq!(BnRole::from_leaf(r.tf_name()), Some(r));
        }
    }
}
