//! Keras model configs (`config.json` in a `.keras` archive, the
//! `model_config` attribute of a Keras 2 `.h5`): the layer list, walked
//! into nested Functional and Sequential models, read as inert JSON.
//!
//! A model config is `{"class_name": …, "config": {"name": …, "layers":
//! [LAYER, …]}}`, each LAYER `{"class_name": …, "config": {"name": …,
//! …}}`; a layer whose `config` has its own `layers` is a nested model,
//! and the layers inside it are named `<model>/<layer>`. Very old Keras 2
//! Sequential configs hold the list directly as `config`. A subclassed
//! model's config lists no layers at all.

use serde_json::Value;

/// The most layers (nested ones included) a config may list.
pub const MAX_LAYERS: usize = 1_000_000;
/// The deepest model nesting followed.
pub const MAX_NESTING: usize = 64;

/// One layer of a config.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Path of names from the model (`inner/bn`).
    pub path: String,
    /// `class_name`.
    pub class_name: String,
    /// The layer's `config` object.
    pub config: Value,
    /// JSON path of `config` in the document (`config.layers[3].config`).
    pub json_path: String,
    /// Rank of the layer's input where the config says it, or where the
    /// layers before it imply it ([`infer_ranks`]).
    pub input_rank: Option<usize>,
    /// True when the rank was implied rather than recorded.
    pub rank_inferred: bool,
    /// Where Keras 3 stores the layer's variables in its weights file:
    /// `layers/<class name in snake case, numbered per list>`, nested
    /// models' layers under theirs (`layers/sequential/layers/…`).
    pub keras3_group: String,
}

/// What a config holds, and what could not be followed.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Every layer, depth first, in list order.
    pub layers: Vec<Entry>,
    /// The model's own class (`Functional`, `Sequential`, a subclass).
    pub model_class: Option<String>,
    /// True when the model lists its layers (Functional, Sequential);
    /// false for a subclassed model's config.
    pub lists_layers: bool,
    /// What was left out, for the user.
    pub notes: Vec<String>,
}

/// Why a document is not a model config.
pub fn check(doc: &Value) -> std::result::Result<(), String> {
    let obj = doc.as_object().ok_or("the top level is not an object")?;
    if !obj.get("class_name").is_some_and(Value::is_string) {
        return Err("no \"class_name\" string at the top level".into());
    }
    if !obj.contains_key("config") {
        return Err("no \"config\" at the top level".into());
    }
    Ok(())
}

/// True when `doc` looks like a Keras model config.
pub fn is_model_config(doc: &Value) -> bool {
    check(doc).is_ok()
}

/// Walks a model config.
pub fn parse(doc: &Value) -> Parsed {
    let mut out = Parsed {
        model_class: doc
            .get("class_name")
            .and_then(Value::as_str)
            .map(str::to_string),
        ..Parsed::default()
    };
    let config = doc.get("config");
    let list = layer_list(config);
    out.lists_layers = list.is_some();
    if let Some((layers, at)) = list {
        let sequential = out.model_class.as_deref() == Some("Sequential");
        walk(
            layers,
            &format!("config{at}"),
            "",
            "",
            sequential,
            0,
            &mut out,
        );
    }
    out
}

/// A model's layer list and its JSON path suffix.
fn layer_list(config: Option<&Value>) -> Option<(&Vec<Value>, &'static str)> {
    match config? {
        Value::Array(a) => Some((a, "")),
        Value::Object(o) => match o.get("layers") {
            Some(Value::Array(a)) => Some((a, ".layers")),
            _ => None,
        },
        _ => None,
    }
}

fn walk(
    layers: &[Value],
    at: &str,
    prefix: &str,
    group: &str,
    sequential: bool,
    depth: usize,
    out: &mut Parsed,
) {
    let ranks = infer_ranks(layers);
    let mut used: std::collections::BTreeMap<String, usize> = Default::default();
    if depth > MAX_NESTING {
        out.notes.push(format!(
            "{at}: models nest deeper than {MAX_NESTING} levels; the layers below are left out"
        ));
        return;
    }
    for (i, layer) in layers.iter().enumerate() {
        if out.layers.len() >= MAX_LAYERS {
            out.notes.push(format!(
                "the config lists more than {MAX_LAYERS} layers; the rest are left out"
            ));
            return;
        }
        let here = format!("{at}[{i}]");
        let class_name = layer
            .get("class_name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let config = layer.get("config").cloned().unwrap_or(Value::Null);
        let name = config
            .get("name")
            .and_then(Value::as_str)
            .or_else(|| layer.get("name").and_then(Value::as_str));
        let Some(name) = name else {
            out.notes.push(format!(
                "{here}: a {class_name} layer without a name is left out"
            ));
            continue;
        };
        let path = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        // Keras 3's group: the class name in snake case, numbered per
        // list (a Sequential's input layer is not one of its layers).
        let keras3_group = if sequential && class_name == "InputLayer" {
            String::new()
        } else {
            let base = to_snake_case(&class_name);
            let n = used.entry(base.clone()).or_insert(0);
            let own = if *n == 0 {
                base.clone()
            } else {
                format!("{base}_{n}")
            };
            *n += 1;
            format!("{group}layers/{own}")
        };
        if let Some((inner, suffix)) = layer_list(Some(&config)) {
            walk(
                inner,
                &format!("{here}.config{suffix}"),
                &path,
                &format!("{keras3_group}/"),
                class_name == "Sequential",
                depth + 1,
                out,
            );
            continue;
        }
        let recorded = input_rank(layer, &config);
        let implied = ranks.get(i).copied().flatten();
        out.layers.push(Entry {
            path,
            class_name,
            config,
            json_path: format!("{here}.config"),
            input_rank: recorded.or(implied),
            rank_inferred: recorded.is_none() && implied.is_some(),
            keras3_group,
        });
    }
}

/// The input rank a layer entry records: Keras 3's
/// `build_config.input_shape`, else a `batch_input_shape` /
/// `batch_shape` in its config.
fn input_rank(layer: &Value, config: &Value) -> Option<usize> {
    let shape = layer
        .get("build_config")
        .and_then(|b| b.get("input_shape"))
        .or_else(|| config.get("batch_input_shape"))
        .or_else(|| config.get("batch_shape"))?;
    let dims = shape.as_array()?;
    // A list of shapes (several inputs) says nothing about one rank.
    if dims.iter().any(Value::is_array) {
        return None;
    }
    Some(dims.len())
}

/// The name a layer entry goes by in its list.
fn entry_name(layer: &Value) -> Option<&str> {
    layer
        .get("config")
        .and_then(|c| c.get("name"))
        .and_then(Value::as_str)
        .or_else(|| layer.get("name").and_then(Value::as_str))
}

/// The layer feeding an entry: Keras 2's first inbound node
/// (`[[["conv1", 0, 0, {}]]]`), Keras 3's `keras_history`, or (no inbound
/// nodes: a Sequential) the entry before it.
fn inbound(layers: &[Value], i: usize) -> Option<usize> {
    let layer = &layers[i];
    let name: Option<&str> = match layer.get("inbound_nodes") {
        Some(Value::Array(nodes)) if !nodes.is_empty() => {
            let first = &nodes[0];
            match first {
                Value::Array(conns) => conns
                    .first()
                    .and_then(|c| c.as_array())
                    .and_then(|c| c.first())
                    .and_then(Value::as_str),
                Value::Object(o) => o
                    .get("args")
                    .and_then(Value::as_array)
                    .and_then(|a| a.first())
                    .and_then(|t| t.get("config"))
                    .and_then(|c| c.get("keras_history"))
                    .and_then(Value::as_array)
                    .and_then(|h| h.first())
                    .and_then(Value::as_str),
                _ => None,
            }
        }
        Some(Value::Array(_)) => return None,
        _ => return i.checked_sub(1),
    };
    let name = name?;
    layers.iter().position(|l| entry_name(l) == Some(name))
}

/// Per layer of one list, the rank of its input where the config records
/// it or the layers before it imply it: an `InputLayer`'s shape, then
/// through layers that keep the rank (convolutions, pooling, dense,
/// activations, normalization, dropout, merges) or set it (`Flatten` → 2,
/// global pooling → 2, `Reshape` → its target's + 1). Any other layer
/// stops the inference.
pub fn infer_ranks(layers: &[Value]) -> Vec<Option<usize>> {
    let n = layers.len();
    let mut out: Vec<Option<Option<usize>>> = vec![None; n];
    fn output(
        layers: &[Value],
        i: usize,
        memo: &mut Vec<Option<Option<usize>>>,
        depth: usize,
    ) -> Option<usize> {
        if depth > 10_000 {
            return None;
        }
        let layer = &layers[i];
        let class = layer
            .get("class_name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let config = layer.get("config").unwrap_or(&Value::Null);
        let input = input_of(layers, i, memo, depth);
        match class {
            "InputLayer" => input,
            "Flatten" => Some(2),
            c if c.starts_with("Global") => {
                if config.get("keepdims").and_then(Value::as_bool) == Some(true) {
                    input
                } else {
                    Some(2)
                }
            }
            "Reshape" => config
                .get("target_shape")
                .and_then(Value::as_array)
                .map(|t| t.len() + 1),
            c if c.starts_with("Conv")
                || c.ends_with("Pooling1D")
                || c.ends_with("Pooling2D")
                || c.ends_with("Pooling3D")
                || c.starts_with("ZeroPadding")
                || c.starts_with("Cropping")
                || c.starts_with("UpSampling")
                || c.starts_with("SeparableConv")
                || c.starts_with("DepthwiseConv")
                || c.contains("Normalization")
                || c.contains("Dropout")
                || c.ends_with("ReLU")
                || matches!(
                    c,
                    "Dense"
                        | "Activation"
                        | "ELU"
                        | "PReLU"
                        | "Softmax"
                        | "Permute"
                        | "Add"
                        | "Subtract"
                        | "Multiply"
                        | "Average"
                        | "Maximum"
                        | "Minimum"
                        | "Concatenate"
                        | "GaussianNoise"
                ) =>
            {
                input
            }
            _ => None,
        }
    }
    fn input_of(
        layers: &[Value],
        i: usize,
        memo: &mut Vec<Option<Option<usize>>>,
        depth: usize,
    ) -> Option<usize> {
        if let Some(v) = memo[i] {
            return v;
        }
        memo[i] = Some(None); // a cycle ends here
        let layer = &layers[i];
        let config = layer.get("config").unwrap_or(&Value::Null);
        let v = input_rank(layer, config).or_else(|| {
            let from = inbound(layers, i)?;
            if from == i {
                return None;
            }
            output(layers, from, memo, depth + 1)
        });
        memo[i] = Some(v);
        v
    }
    (0..n).map(|i| input_of(layers, i, &mut out, 0)).collect()
}

/// Keras 3's `naming.to_snake_case`: drop non-word characters, `_` before
/// an upper-case letter that starts a lower-case run (`BatchNormalization`
/// → `Batch_Normalization`), then between a lower-case letter and an
/// upper-case one, and lower-case the result (`Conv2D` → `conv2d`,
/// `GlobalAveragePooling2D` → `global_average_pooling2d`). Each step scans
/// left to right without overlapping matches, as Python's `re.sub` does.
pub fn to_snake_case(name: &str) -> String {
    let chars: Vec<char> = name
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    // (.)([A-Z][a-z]+) -> \1_\2
    let mut step = Vec::with_capacity(chars.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        let upper_then_lower = i + 2 < chars.len()
            && chars[i + 1].is_ascii_uppercase()
            && chars[i + 2].is_ascii_lowercase();
        if upper_then_lower {
            let mut end = i + 2;
            while end < chars.len() && chars[end].is_ascii_lowercase() {
                end += 1;
            }
            step.push(chars[i]);
            step.push('_');
            step.extend_from_slice(&chars[i + 1..end]);
            i = end;
        } else {
            step.push(chars[i]);
            i += 1;
        }
    }
    // ([a-z])([A-Z]) -> \1_\2
    let mut out = String::with_capacity(step.len() + 8);
    let mut i = 0;
    while i < step.len() {
        if i + 1 < step.len() && step[i].is_ascii_lowercase() && step[i + 1].is_ascii_uppercase() {
            out.push(step[i]);
            out.push('_');
            out.push(step[i + 1]);
            i += 2;
        } else {
            out.push(step[i]);
            i += 1;
        }
    }
    out.to_lowercase()
}

/// Class names of Keras batch-norm layers.
pub fn is_batch_norm(class_name: &str) -> bool {
    matches!(
        class_name,
        "BatchNormalization"
            | "BatchNormalizationV1"
            | "BatchNormalizationV2"
            | "SyncBatchNormalization"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_models_name_their_layers_by_path() {
        let doc: Value = serde_json::from_str(
            r#"{"class_name": "Functional", "config": {"name": "m", "layers": [
                {"class_name": "InputLayer", "config": {"name": "x", "batch_input_shape": [null, 4]}},
                {"class_name": "BatchNormalization", "config": {"name": "bn", "axis": -1},
                 "build_config": {"input_shape": [null, 8, 4]}},
                {"class_name": "Sequential", "config": {"name": "inner", "layers": [
                    {"class_name": "BatchNormalization", "config": {"name": "bn"}}]}}]}}"#,
        )
        .unwrap();
        let p = parse(&doc);
        let paths: Vec<&str> = p.layers.iter().map(|l| l.path.as_str()).collect();
        assert_eq!(paths, ["x", "bn", "inner/bn"]);
        assert_eq!(p.layers[1].input_rank, Some(3));
        assert_eq!(p.layers[1].json_path, "config.layers[1].config");
        assert_eq!(
            p.layers[2].json_path,
            "config.layers[2].config.layers[0].config"
        );
        assert!(p.lists_layers);
    }

    #[test]
    fn snake_case_follows_keras() {
        for (class, want) in [
            ("BatchNormalization", "batch_normalization"),
            ("Conv2D", "conv2d"),
            ("GlobalAveragePooling2D", "global_average_pooling2d"),
            ("InputLayer", "input_layer"),
            ("Dense", "dense"),
            ("SyncBatchNormalization", "sync_batch_normalization"),
            ("Functional", "functional"),
            ("MyBNBlock", "my_bn_block"),
        ] {
            assert_eq!(to_snake_case(class), want, "{class}");
        }
    }

    #[test]
    fn old_sequential_lists_layers_directly() {
        let doc: Value = serde_json::from_str(
            r#"{"class_name": "Sequential", "config": [{"class_name": "BatchNormalization", "config": {"name": "b"}}]}"#,
        )
        .unwrap();
        let p = parse(&doc);
        assert_eq!(p.layers[0].json_path, "config[0].config");
        let sub: Value =
            serde_json::from_str(r#"{"class_name": "Net", "config": {"name": "net"}}"#).unwrap();
        assert!(!parse(&sub).lists_layers);
        assert!(check(&serde_json::json!([1])).is_err());
    }
}
