//! Finding a source's batch-norm layers, whatever wrote them:
//!
//! 1. **naming**: variables that follow a TF or Keras naming convention
//!    (`…/gamma`, `…/moving_mean`; [`crate::layers::by_naming`]);
//! 2. **graph**: where the file holds a graph (a TF1 `<prefix>.meta`
//!    beside the checkpoint, `saved_model.pb`), every batch-norm op whose
//!    inputs trace back to variables that step 1 did not claim — hand-written
//!    `tf.nn.batch_normalization` with custom names, fused ops on renamed
//!    variables.
//!
//! Before both, layers the user declared ([`crate::mapping`], given to
//! [`Source::declare_layers`]) claim their variables. Each layer says how it
//! was found ([`crate::layers::FoundBy`]).

use std::collections::{BTreeMap, HashSet};

use crate::layers::{by_naming, BnLayer, BnRole, FoundBy, VarRef};
use crate::source::{strip_attribute_suffix, Source, VariableRole};

/// Every batch-norm layer of `source`: those found by naming first, then
/// those only the graph reveals, in key order of their `moving_mean`. A
/// graph that cannot be read adds nothing here (the hyper-parameter
/// recovery reports it).
pub fn discover(source: &Source) -> Vec<BnLayer> {
    let mut layers = declared(source);
    let mut claimed: HashSet<String> = layers
        .iter()
        .flat_map(|l| l.variables.values().map(|v| v.key.clone()))
        .collect();
    let from_config = keras_config(source, &claimed);
    claimed.extend(
        from_config
            .iter()
            .flat_map(|l| l.variables.values().map(|v| v.key.clone())),
    );
    layers.extend(from_config);
    layers.extend(
        by_naming(source)
            .into_iter()
            .filter(|l| !l.variables.values().any(|v| claimed.contains(&v.key))),
    );
    if let Ok(more) = crate::hyper::graph_layers(source, &layers) {
        layers.extend(more);
    }
    dedupe_names(&mut layers);
    layers.sort_by(|a, b| {
        let ka = a.var(BnRole::MovingMean).map_or("", |v| v.key.as_str());
        let kb = b.var(BnRole::MovingMean).map_or("", |v| v.key.as_str());
        crate::layers::natural_cmp(ka, kb)
    });
    layers
}

/// The batch-norm layers a Keras model config lists, with the variables
/// the Keras reader paired them with ([`Source::keras_layers`]), where none
/// is already claimed.
fn keras_config(source: &Source, claimed: &HashSet<String>) -> Vec<BnLayer> {
    let mut out = Vec::new();
    for k in source.keras_layers() {
        if !crate::keras::config::is_batch_norm(&k.class_name) {
            continue;
        }
        let mut variables = BTreeMap::new();
        for (weight, key) in &k.weights {
            let (Some(role), Some(v)) = (BnRole::from_leaf(weight), source.variable(key)) else {
                continue;
            };
            if v.role != VariableRole::Model || claimed.contains(key) {
                continue;
            }
            variables.insert(
                role,
                VarRef {
                    key: v.key.clone(),
                    name: v.name.clone(),
                    shape: v.shape.clone(),
                    dtype: v.dtype,
                },
            );
        }
        let (Some(mean), Some(_)) = (
            variables.get(&BnRole::MovingMean),
            variables.get(&BnRole::MovingVariance),
        ) else {
            continue;
        };
        let object_path = mean
            .key
            .rsplit_once('/')
            .map(|(scope, _)| scope.trim_end_matches("/vars").to_string());
        out.push(BnLayer {
            name: k.path.clone(),
            object_path,
            channels: mean.shape.iter().product(),
            dtype: mean.dtype,
            variables,
            found_by: FoundBy::KerasConfig,
            api: None,
        });
    }
    out
}

/// Layer names must identify layers: a name taken twice gets the moving
/// mean's key instead, on every layer that shares it.
fn dedupe_names(layers: &mut [BnLayer]) {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for l in layers.iter() {
        *counts.entry(l.name.clone()).or_default() += 1;
    }
    for l in layers.iter_mut() {
        if counts.get(&l.name).copied().unwrap_or(0) > 1 {
            if let Some(k) = l.var(BnRole::MovingMean).map(|v| v.key.clone()) {
                l.name = k;
            }
        }
    }
}

/// The layers the source's declared mappings describe: per mapping, every
/// scope that matches it and holds a moving mean and a moving variance
/// under the declared names. A variable is placed by its name and, for
/// object-based checkpoints, also by its key's object path.
fn declared(source: &Source) -> Vec<BnLayer> {
    let mappings = source.declared_layers();
    if mappings.is_empty() {
        return Vec::new();
    }
    let mut groups: BTreeMap<(usize, String), BTreeMap<BnRole, VarRef>> = BTreeMap::new();
    for v in source.variables() {
        if v.role != VariableRole::Model {
            continue;
        }
        let names = [v.name.as_str(), strip_attribute_suffix(&v.key)];
        'var: for name in names {
            let Some((scope, leaf)) = name.rsplit_once('/') else {
                continue;
            };
            for (i, m) in mappings.iter().enumerate() {
                let Some(role) = m.role_of(scope, leaf).and_then(BnRole::from_leaf) else {
                    continue;
                };
                groups
                    .entry((i, scope.to_string()))
                    .or_default()
                    .entry(role)
                    .or_insert_with(|| VarRef {
                        key: v.key.clone(),
                        name: v.name.clone(),
                        shape: v.shape.clone(),
                        dtype: v.dtype,
                    });
                break 'var;
            }
        }
    }
    let mut out: Vec<BnLayer> = Vec::new();
    let mut taken: HashSet<String> = HashSet::new();
    for ((_, scope), variables) in groups {
        let (Some(mean), Some(_)) = (
            variables.get(&BnRole::MovingMean),
            variables.get(&BnRole::MovingVariance),
        ) else {
            continue;
        };
        if variables.values().any(|v| taken.contains(&v.key)) {
            continue;
        }
        taken.extend(variables.values().map(|v| v.key.clone()));
        out.push(BnLayer {
            name: scope,
            object_path: None,
            channels: mean.shape.iter().product(),
            dtype: mean.dtype,
            variables,
            found_by: FoundBy::Declared,
            api: None,
        });
    }
    out
}
