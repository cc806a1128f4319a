//! Hyper-parameters recovered from every fixture equal what the generator
//! set (the manifest's `layers[].hyper`), with the provenance each format
//! allows; graph walking survives recursion bombs and self-calling
//! functions.
//!
//! Which fixture holds what, and where:
//!
//! | fixture | epsilon | momentum |
//! |---|---|---|
//! | `tf1_trained` | `model.ckpt.meta`: `FusedBatchNormV3` attr (fused), `batchnorm/add/y` Const (non-fused) | `model.ckpt.meta`: AssignMovingAvg decay (`1 − Const momentum` fused, `Const f32(1 − m)` non-fused) |
//! | `tfkeras_savedmodel`, `tfkeras_training_serving` | `keras_metadata.pb` config (graph agrees) | `keras_metadata.pb` config (graph agrees) |
//! | `keras3_saved_model`, `keras3_export` | `saved_model.pb`: the decomposed form's ε Const | default (Keras 3 stores none) |
//! | every plain checkpoint (`tf1_no_update_ops`, `tf1_v1_format`, `sharded`, `partitioned`, `slim_ema`, `tfkeras_ckpt`, `keras3_functional`, `keras3_sequential`, `keras3_subclassed`) | default | default |

use std::path::{Path, PathBuf};

use prost::Message;
use serde_json::Value;
use tfbn::source::Source;
use tfbn::testing::find::discover;
use tfbn::testing::hyper::{recover, recover_all, HyperSource, LayerHyper, ServingMode};
use tfbn::testing::layers::{BnLayer, BnRole};
use tfbn::testing::proto::graph::{attr_value, AttrValue, FunctionDef, NameAttrList, NodeDef};
use tfbn::testing::proto::saved_model::SavedModel as SavedModelProto;
use tfbn::Error;

use crate::common::{fixture, fixtures, Fixture};

/// Where a fixture's epsilon and momentum must come from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Origin {
    /// A graph node in this file.
    Graph(&'static str),
    /// tf_keras metadata in `keras_metadata.pb`.
    Keras,
    /// A Keras model config (`config.json` of a `.keras`, `model_config`
    /// of a Keras 2 `.h5`).
    KerasConfig,
    /// TF's default.
    Default,
}

/// (fixture, epsilon from, momentum from). Every fixture with layers is
/// listed, so a new fixture must say what it holds.
const PROVENANCE: &[(&str, Origin, Origin)] = &[
    (
        "tf1_trained",
        Origin::Graph("model.ckpt.meta"),
        Origin::Graph("model.ckpt.meta"),
    ),
    (
        "tf1_handwritten",
        Origin::Graph("model.ckpt.meta"),
        Origin::Graph("model.ckpt.meta"),
    ),
    ("tfkeras_savedmodel", Origin::Keras, Origin::Keras),
    ("tfkeras_ghost", Origin::Keras, Origin::Keras),
    ("tfkeras_training_serving", Origin::Keras, Origin::Keras),
    (
        "keras3_saved_model",
        Origin::Graph("saved_model.pb"),
        Origin::Default,
    ),
    (
        "keras3_export",
        Origin::Graph("saved_model.pb"),
        Origin::Default,
    ),
    // Frozen graphs keep ε in the graph; their update subgraphs are pruned.
    ("frozen_tf1", Origin::Graph("frozen.pb"), Origin::Default),
    ("frozen_tf2", Origin::Graph("frozen.pb"), Origin::Default),
    // Older TF releases (scripts/gen_versions.py).
    ("tf2_12_savedmodel", Origin::Keras, Origin::Keras),
    ("tf2_13_savedmodel", Origin::Keras, Origin::Keras),
    ("tf2_15_savedmodel", Origin::Keras, Origin::Keras),
    (
        "tf2_16_savedmodel",
        Origin::Graph("saved_model.pb"),
        Origin::Default,
    ),
    (
        "tf2_16_export",
        Origin::Graph("saved_model.pb"),
        Origin::Default,
    ),
    ("tf2_12_ckpt", Origin::Default, Origin::Default),
    ("tf2_13_ckpt", Origin::Default, Origin::Default),
    ("tf2_15_ckpt", Origin::Default, Origin::Default),
    ("tf2_16_ckpt", Origin::Default, Origin::Default),
    ("tf2_12_weights", Origin::Default, Origin::Default),
    ("tf2_13_weights", Origin::Default, Origin::Default),
    ("tf2_15_weights", Origin::Default, Origin::Default),
    ("tf2_16_weights", Origin::Default, Origin::Default),
    ("tf1_no_update_ops", Origin::Default, Origin::Default),
    ("tf1_v1_format", Origin::Default, Origin::Default),
    ("sharded", Origin::Default, Origin::Default),
    ("partitioned", Origin::Default, Origin::Default),
    ("slim_ema", Origin::Default, Origin::Default),
    ("tfkeras_ckpt", Origin::Default, Origin::Default),
    ("keras3_functional", Origin::Default, Origin::Default),
    ("keras3_sequential", Origin::Default, Origin::Default),
    ("keras3_subclassed", Origin::Default, Origin::Default),
    // Keras files (scripts/gen/kfile*.py): the model config of a `.keras` or
    // Keras 2 `.h5`; weights-only files and a subclassed model's inner
    // layers (its config lists none) hold nothing.
    (
        "kfile_k3_cnn_keras",
        Origin::KerasConfig,
        Origin::KerasConfig,
    ),
    (
        "kfile_k3_mixed_keras",
        Origin::KerasConfig,
        Origin::KerasConfig,
    ),
    (
        "kfile_k3_nested_keras",
        Origin::KerasConfig,
        Origin::KerasConfig,
    ),
    (
        "kfile_k3_subclassed_keras",
        Origin::Default,
        Origin::Default,
    ),
    (
        "kfile_tfk_chunked_h5",
        Origin::KerasConfig,
        Origin::KerasConfig,
    ),
    ("kfile_tfk_cnn_h5", Origin::KerasConfig, Origin::KerasConfig),
    (
        "kfile_tfk_mixed_h5",
        Origin::KerasConfig,
        Origin::KerasConfig,
    ),
    (
        "kfile_tfk_nested_h5",
        Origin::KerasConfig,
        Origin::KerasConfig,
    ),
    ("kfile_k3_cnn_weights", Origin::Default, Origin::Default),
    ("kfile_k3_mixed_weights", Origin::Default, Origin::Default),
    ("kfile_k3_nested_weights", Origin::Default, Origin::Default),
    (
        "kfile_k3_subclassed_weights",
        Origin::Default,
        Origin::Default,
    ),
    ("kfile_tfk_cnn_weights", Origin::Default, Origin::Default),
    ("kfile_tfk_mixed_weights", Origin::Default, Origin::Default),
    ("kfile_tfk_nested_weights", Origin::Default, Origin::Default),
    (
        "kfile_tfk_subclassed_weights",
        Origin::Default,
        Origin::Default,
    ),
    (
        "kfile_h5py_k3_gzip_weights",
        Origin::Default,
        Origin::Default,
    ),
    (
        "kfile_h5py_k2_dense_attrs_weights",
        Origin::Default,
        Origin::Default,
    ),
    // tf.keras 2.15 (scripts/gen_versions.py).
    (
        "kfile_k215_cnn_h5",
        Origin::KerasConfig,
        Origin::KerasConfig,
    ),
    (
        "kfile_k215_nested_h5",
        Origin::KerasConfig,
        Origin::KerasConfig,
    ),
    ("kfile_k215_cnn_weights", Origin::Default, Origin::Default),
];

fn from_of(s: &HyperSource) -> Origin {
    match s {
        HyperSource::Graph { file, .. } => Origin::Graph(if file == "model.ckpt.meta" {
            "model.ckpt.meta"
        } else if file == "saved_model.pb" {
            "saved_model.pb"
        } else if file == "frozen.pb" {
            "frozen.pb"
        } else {
            panic!("unexpected graph file {file}")
        }),
        HyperSource::KerasMetadata { file, .. } => {
            assert_eq!(file, "keras_metadata.pb");
            Origin::Keras
        }
        HyperSource::KerasConfig { file, .. } => {
            assert!(
                file.ends_with(": config.json") || file.ends_with(": model_config"),
                "{file}"
            );
            Origin::KerasConfig
        }
        HyperSource::Default => Origin::Default,
        other => panic!("unexpected source {other:?}"),
    }
}

/// The manifest entry of a discovered layer (matched by its moving_mean key).
fn manifest_layer<'a>(fx: &'a Fixture, layer: &BnLayer) -> &'a Value {
    let key = &layer.var(BnRole::MovingMean).unwrap().key;
    fx.all_layers()
        .iter()
        .find(|l| l["variables"]["moving_mean"]["key"].as_str() == Some(key))
        .unwrap_or_else(|| panic!("{}: no manifest layer owns {key}", fx.name))
}

fn recovered(path: &Path) -> (Vec<BnLayer>, Vec<LayerHyper>) {
    let source = Source::open(path).unwrap();
    let layers = discover(&source);
    let hyper = recover(&source, &layers).unwrap();
    assert_eq!(hyper.len(), layers.len());
    (layers, hyper)
}

/// The checks every fixture passes, whatever its format: recovered values
/// equal the generator's wherever they are not defaults.
fn check_against_manifest(fx: &Fixture, layers: &[BnLayer], hyper: &[LayerHyper]) {
    for (l, h) in layers.iter().zip(hyper) {
        let want = &manifest_layer(fx, l)["hyper"];
        let ctx = format!("{}/{}", fx.name, l.name);
        assert!(h.conflicts.is_empty(), "{ctx}: {:?}", h.conflicts);
        if !h.epsilon.is_default() {
            // A frozen graph's manifest holds ε as the graph's float32
            // (widened); tfbn gives the Python float behind it.
            let want_eps = want["epsilon"].as_f64().unwrap();
            if fx.manifest["format"] == "frozen_graphdef" {
                assert_eq!(h.epsilon.value as f32, want_eps as f32, "{ctx}: epsilon");
            } else {
                assert_eq!(h.epsilon.value, want_eps, "{ctx}: epsilon");
            }
        }
        if !h.momentum.is_default() {
            assert_eq!(
                h.momentum.value,
                want["momentum"].as_f64().unwrap(),
                "{ctx}: momentum"
            );
        }
        let axis = want["axis"][0].as_i64().unwrap();
        let rank = manifest_layer(fx, l)["input_shape"]
            .as_array()
            .unwrap()
            .len() as i64;
        if !h.axis.is_default() {
            let got = if h.axis.value < 0 {
                h.axis.value + rank
            } else {
                h.axis.value
            };
            assert_eq!(got, axis, "{ctx}: axis ({})", h.axis.source);
        }
        assert_eq!(
            h.center.value,
            want["center"].as_bool().unwrap(),
            "{ctx}: center"
        );
        assert_eq!(
            h.scale.value,
            want["scale"].as_bool().unwrap(),
            "{ctx}: scale"
        );
        match (want["fused"].as_bool(), h.fused.value) {
            (Some(w), Some(g)) => assert_eq!(g, w, "{ctx}: fused ({})", h.fused.source),
            // Keras 3 has no fused path; its graphs show the decomposed form.
            (None, g) => assert_ne!(g, Some(true), "{ctx}: fused"),
            (Some(_), None) => assert!(h.fused.is_default(), "{ctx}"),
        }
        // Ghost batches and renorm's extras: only a Keras config holds
        // them; the generators record them where they set them.
        if !h.virtual_batch_size.is_default() {
            assert_eq!(
                h.virtual_batch_size.value,
                want["virtual_batch_size"].as_u64(),
                "{ctx}: virtual_batch_size"
            );
        }
        if want["virtual_batch_size"].as_u64().is_some() {
            assert!(!h.virtual_batch_size.is_default(), "{ctx}: ghost layer");
        }
        // (A weights-only Keras file holds no config: its defaults are
        // marked as such.)
        if let Some(clip) = want
            .get("renorm_clipping")
            .filter(|c| !c.is_null() && !h.renorm_clipping.is_default())
        {
            assert_eq!(
                h.renorm_clipping.value,
                tfbn::testing::hyper::RenormClipping {
                    rmax: clip["rmax"].as_f64(),
                    rmin: clip["rmin"].as_f64(),
                    dmax: clip["dmax"].as_f64(),
                },
                "{ctx}: renorm_clipping"
            );
            assert_eq!(
                Some(h.renorm_momentum.value),
                want["renorm_momentum"].as_f64(),
                "{ctx}: renorm_momentum"
            );
        }
        // Renorm layers never run the fused kernel, and their variables say
        // so even where no graph or config does.
        if want["renorm"].as_bool() == Some(true) {
            assert_eq!(h.fused.value, Some(false), "{ctx}: renorm layer fused");
        }
    }
}

#[test]
fn epsilon_and_momentum_equal_the_generators_with_their_provenance() {
    let mut checked = 0;
    for fx in fixtures() {
        if fx.layers().is_empty() {
            continue;
        }
        let &(_, eps_from, mom_from) = PROVENANCE
            .iter()
            .find(|p| p.0 == fx.name)
            .unwrap_or_else(|| panic!("{}: add the fixture to PROVENANCE", fx.name));
        let (layers, hyper) = recovered(&fx.open_path());
        check_against_manifest(&fx, &layers, &hyper);
        for (l, h) in layers.iter().zip(&hyper) {
            let ctx = format!("{}/{}", fx.name, l.name);
            assert_eq!(
                from_of(&h.epsilon.source),
                eps_from,
                "{ctx}: {}",
                h.epsilon.source
            );
            assert_eq!(
                from_of(&h.momentum.source),
                mom_from,
                "{ctx}: {}",
                h.momentum.source
            );
            if eps_from == Origin::Default {
                assert_eq!(h.epsilon.value, 1e-3, "{ctx}");
            }
            if mom_from == Origin::Default {
                assert_eq!(h.momentum.value, 0.99, "{ctx}");
            }
            assert_eq!(
                h.only_defaults(),
                eps_from == Origin::Default && mom_from == Origin::Default,
                "{ctx}"
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 30 || crate::common::narrowed(),
        "only {checked} layers checked"
    );
}

#[test]
fn tf1_meta_graph_gives_every_value_and_its_node() {
    let fx = fixture("tf1_trained");
    let (layers, hyper) = recovered(&fx.open_path());
    let by_name = |n: &str| {
        let i = layers.iter().position(|l| l.name == n).unwrap();
        &hyper[i]
    };
    let h = by_name("batch_normalization_1");
    assert_eq!(
        h.epsilon.source,
        HyperSource::Graph {
            file: "model.ckpt.meta".into(),
            function: None,
            node: "batch_normalization_1/FusedBatchNormV3".into(),
            detail: "attr epsilon".into(),
        }
    );
    assert_eq!((h.epsilon.value, h.momentum.value), (0.01, 0.9));
    assert_eq!(h.axis.value, 3);
    assert_eq!(h.fused.value, Some(true));
    // A TF1 training graph has no serving signature.
    assert_eq!(h.serving_mode.value, None);
    let h = by_name("batch_normalization_2");
    let HyperSource::Graph { node, detail, .. } = &h.momentum.source else {
        panic!("{:?}", h.momentum.source)
    };
    assert_eq!(
        node,
        "batch_normalization_2/AssignMovingAvg/AssignSubVariableOp"
    );
    assert!(detail.contains("AssignMovingAvg/decay"), "{detail}");
    assert_eq!(
        (h.epsilon.value, h.momentum.value, h.axis.value),
        (2e-5, 0.95, 1)
    );
    assert_eq!(h.fused.value, Some(false));
}

#[test]
fn serving_mode_follows_the_serving_signature_only() {
    for fx in fixtures() {
        if fx.layers().is_empty() {
            continue;
        }
        let (layers, hyper) = recovered(&fx.open_path());
        for (l, h) in layers.iter().zip(&hyper) {
            let want = match fx.name.as_str() {
                "tfkeras_training_serving" => Some(ServingMode::Training),
                // These also hold training traces (tf_keras layer call
                // functions) that no signature reaches.
                "tfkeras_savedmodel" | "tfkeras_ghost" | "keras3_saved_model" | "keras3_export"
                | "tf2_12_savedmodel" | "tf2_13_savedmodel" | "tf2_15_savedmodel"
                | "tf2_16_savedmodel" | "tf2_16_export" => Some(ServingMode::Inference),
                _ => None,
            };
            assert_eq!(h.serving_mode.value, want, "{}/{}", fx.name, l.name);
        }
    }
}

// ---------------------------------------------------------------- edited copies

/// Copies a fixture's SavedModel folder.
fn copy_saved_model(fx: &Fixture, dir: &Path) -> PathBuf {
    let src = fx.open_path();
    let dst = dir.join("savedmodel");
    std::fs::create_dir_all(dst.join("variables")).unwrap();
    for f in ["saved_model.pb", "keras_metadata.pb"] {
        if src.join(f).is_file() {
            std::fs::copy(src.join(f), dst.join(f)).unwrap();
        }
    }
    for e in std::fs::read_dir(src.join("variables")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join("variables").join(e.file_name())).unwrap();
    }
    dst
}

fn read_pb(dir: &Path) -> SavedModelProto {
    SavedModelProto::decode(
        std::fs::read(dir.join("saved_model.pb"))
            .unwrap()
            .as_slice(),
    )
    .unwrap()
}

fn write_pb(dir: &Path, sm: &SavedModelProto) {
    std::fs::write(dir.join("saved_model.pb"), sm.encode_to_vec()).unwrap();
}

#[test]
fn graph_alone_gives_the_keras_configs_values() {
    // Without keras_metadata.pb, tf_keras SavedModels still hold epsilon in
    // their FusedBatchNormV3 attrs / ε constants (with stripped defaults
    // filled in) and momentum in the training traces' exponential_avg_factor
    // and AssignMovingAvg decays.
    for name in ["tfkeras_savedmodel", "tfkeras_training_serving"] {
        let fx = fixture(name);
        let tmp = tempfile::tempdir().unwrap();
        let dir = copy_saved_model(&fx, tmp.path());
        std::fs::remove_file(dir.join("keras_metadata.pb")).unwrap();
        let (layers, hyper) = recovered(&dir);
        check_against_manifest(&fx, &layers, &hyper);
        for (l, h) in layers.iter().zip(&hyper) {
            let ctx = format!("{name}/{}", l.name);
            assert!(
                matches!(&h.epsilon.source, HyperSource::Graph { file, .. } if file == "saved_model.pb"),
                "{ctx}: {}",
                h.epsilon.source
            );
            assert!(
                matches!(h.momentum.source, HyperSource::Graph { .. }),
                "{ctx}: {}",
                h.momentum.source
            );
        }
        if name == "tfkeras_training_serving" {
            // epsilon 1e-4 equals FusedBatchNormV3's default: the attr is
            // stripped and the op default fills in.
            let h = &hyper[layers.iter().position(|l| l.name == "bn_fused").unwrap()];
            let HyperSource::Graph { detail, .. } = &h.epsilon.source else {
                unreachable!()
            };
            assert!(detail.contains("op default"), "{detail}");
            assert_eq!(h.epsilon.value, 1e-4);
        }
    }
}

#[test]
fn older_user_object_metadata_is_read_too() {
    // Move each layer's JSON from keras_metadata.pb into the object graph's
    // SavedUserObject.metadata, as older writers stored it.
    let fx = fixture("tfkeras_savedmodel");
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_saved_model(&fx, tmp.path());
    let meta = tfbn::testing::proto::keras::SavedMetadata::decode(
        std::fs::read(dir.join("keras_metadata.pb"))
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    std::fs::remove_file(dir.join("keras_metadata.pb")).unwrap();
    let mut sm = read_pb(&dir);
    let og = sm.meta_graphs[0].object_graph_def.as_mut().unwrap();
    for n in &meta.nodes {
        if let Some(tfbn::testing::proto::saved_model::saved_object::Kind::UserObject(u)) =
            &mut og.nodes[n.node_id as usize].kind
        {
            u.metadata = n.metadata.clone();
        }
    }
    write_pb(&dir, &sm);
    let (layers, hyper) = recovered(&dir);
    check_against_manifest(&fx, &layers, &hyper);
    for h in &hyper {
        assert!(
            matches!(&h.epsilon.source, HyperSource::KerasMetadata { file, .. } if file == "saved_model.pb"),
            "{}",
            h.epsilon.source
        );
    }
}

#[test]
fn disagreeing_sources_are_reported_not_resolved() {
    // Edit one FusedBatchNormV3's epsilon so that the graph and the Keras
    // config disagree.
    let fx = fixture("tfkeras_savedmodel");
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_saved_model(&fx, tmp.path());
    let mut sm = read_pb(&dir);
    let lib = sm.meta_graphs[0]
        .graph_def
        .as_mut()
        .unwrap()
        .library
        .as_mut()
        .unwrap();
    let mut edited = 0;
    for f in &mut lib.function {
        for n in &mut f.node_def {
            if n.name == "tfkeras_bn/bn_fused/FusedBatchNormV3" {
                n.attr.insert(
                    "epsilon".into(),
                    AttrValue {
                        value: Some(attr_value::Value::F(0.5)),
                    },
                );
                edited += 1;
            }
        }
    }
    assert!(edited > 0);
    write_pb(&dir, &sm);
    let (layers, hyper) = recovered(&dir);
    let h = &hyper[layers.iter().position(|l| l.name == "bn_fused").unwrap()];
    assert_eq!(h.epsilon.value, 0.01, "the Keras config is kept");
    assert_eq!(h.conflicts.len(), 1, "{:?}", h.conflicts);
    assert!(
        h.conflicts[0].starts_with("epsilon: 0.01 from keras_metadata.pb"),
        "{}",
        h.conflicts[0]
    );
    assert!(
        h.conflicts[0].contains("0.5 from saved_model.pb"),
        "{}",
        h.conflicts[0]
    );
}

#[test]
fn overrides_replace_values_and_say_what_they_replaced() {
    let fx = fixture("tfkeras_savedmodel");
    let (_, mut hyper) = recovered(&fx.open_path());
    let h = &mut hyper[0];
    let notes = h.apply_overrides(Some(1e-5), Some(0.01), None);
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes[0].contains("keras_metadata.pb"), "{}", notes[0]);
    assert_eq!((h.epsilon.value, h.momentum.value), (1e-5, 0.01));
    assert_eq!(h.epsilon.source, HyperSource::Flag);
    assert_ne!(h.axis.source, HyperSource::Flag);
    // Overriding with the same value replaces silently.
    let notes = h.apply_overrides(None, None, Some(h.axis.value));
    assert!(notes.is_empty());
    assert_eq!(h.axis.source, HyperSource::Flag);
}

// ---------------------------------------------------------------- hostile graphs

fn call(name: &str, f: &str) -> NodeDef {
    let mut n = NodeDef {
        name: name.into(),
        op: "StatefulPartitionedCall".into(),
        ..Default::default()
    };
    n.attr.insert(
        "f".into(),
        AttrValue {
            value: Some(attr_value::Value::Func(NameAttrList {
                name: f.into(),
                attr: Default::default(),
            })),
        },
    );
    n
}

fn function(name: &str, nodes: Vec<NodeDef>) -> FunctionDef {
    FunctionDef {
        signature: Some(tfbn::testing::proto::graph::OpDef {
            name: name.into(),
            ..Default::default()
        }),
        node_def: nodes,
        ..Default::default()
    }
}

/// A copy of `tfkeras_training_serving` whose serving function also calls
/// `entry`, with `extra` added to the function library.
fn saved_model_calling(entry: &str, extra: Vec<FunctionDef>) -> (tempfile::TempDir, PathBuf) {
    let fx = fixture("tfkeras_training_serving");
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_saved_model(&fx, tmp.path());
    let mut sm = read_pb(&dir);
    let lib = sm.meta_graphs[0]
        .graph_def
        .as_mut()
        .unwrap()
        .library
        .as_mut()
        .unwrap();
    let serve = lib
        .function
        .iter_mut()
        .find(|f| {
            f.signature
                .as_ref()
                .unwrap()
                .name
                .starts_with("__inference_serve_in_training_mode")
        })
        .unwrap();
    serve.node_def.push(call("hook", entry));
    lib.function.extend(extra);
    write_pb(&dir, &sm);
    (tmp, dir)
}

fn recover_at(dir: &Path) -> tfbn::Result<Vec<LayerHyper>> {
    let source = Source::open(dir)?;
    let layers = discover(&source);
    recover(&source, &layers)
}

#[test]
fn self_calling_function_is_a_typed_error() {
    let (_tmp, dir) =
        saved_model_calling("loop", vec![function("loop", vec![call("again", "loop")])]);
    match recover_at(&dir) {
        Err(Error::FunctionRecursion {
            function, chain, ..
        }) => {
            assert_eq!(function, "loop");
            assert!(chain.ends_with("loop → loop"), "{chain}");
        }
        other => panic!("{other:?}"),
    }
    // inspect goes through the same walk.
    let source = Source::open(&dir).unwrap();
    assert!(matches!(
        tfbn::inspect::inspect(&source),
        Err(Error::FunctionRecursion { .. })
    ));
}

#[test]
fn mutually_recursive_functions_are_a_typed_error() {
    let (_tmp, dir) = saved_model_calling(
        "ping",
        vec![
            function("ping", vec![call("c", "pong")]),
            function("pong", vec![call("c", "ping")]),
        ],
    );
    match recover_at(&dir) {
        Err(Error::FunctionRecursion {
            function, chain, ..
        }) => {
            assert_eq!(function, "ping");
            assert!(chain.ends_with("ping → pong → ping"), "{chain}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn call_chains_deeper_than_the_limit_are_a_typed_error() {
    let n = 10 * tfbn::testing::hyper::MAX_CALL_DEPTH;
    let chain: Vec<FunctionDef> = (0..n)
        .map(|i| function(&format!("f{i}"), vec![call("c", &format!("f{}", i + 1))]))
        .collect();
    let (_tmp, dir) = saved_model_calling("f0", chain);
    match recover_at(&dir) {
        Err(Error::RecursionLimit { limit, what, .. }) => {
            assert_eq!(limit, tfbn::testing::hyper::MAX_CALL_DEPTH);
            assert!(what.contains("function calls"), "{what}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn call_trees_that_fan_out_are_walked_once_per_function() {
    // f_i calls f_{i+1} twice: 2^40 paths, 40 functions. Each function is
    // walked once per argument binding, so this finishes at once.
    let depth = 40;
    let tree: Vec<FunctionDef> = (0..depth)
        .map(|i| {
            let next = format!("g{}", i + 1);
            function(&format!("g{i}"), vec![call("a", &next), call("b", &next)])
        })
        .collect();
    let (_tmp, dir) = saved_model_calling("g0", tree);
    let start = std::time::Instant::now();
    let hyper = recover_at(&dir).unwrap();
    assert!(start.elapsed().as_secs() < 10);
    assert_eq!(hyper.len(), 2);
}

/// `AttrValue{func: NameAttrList{attr: {"a": AttrValue{func: …}}}}`, `depth`
/// levels deep, as raw protobuf bytes.
fn nested_attr(depth: usize) -> Vec<u8> {
    fn len_delimited(field: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        prost::encoding::encode_key(field, prost::encoding::WireType::LengthDelimited, &mut out);
        prost::encoding::encode_varint(payload.len() as u64, &mut out);
        out.extend_from_slice(payload);
        out
    }
    let mut attr = Vec::new(); // empty AttrValue
    for _ in 0..depth {
        // map entry {1: "a", 2: attr}
        let mut entry = len_delimited(1, b"a");
        entry.extend(len_delimited(2, &attr));
        // NameAttrList {1: "f", 2: entry}
        let mut list = len_delimited(1, b"f");
        list.extend(len_delimited(2, &entry));
        // AttrValue {10: list}
        attr = len_delimited(10, &list);
    }
    attr
}

#[test]
fn protobuf_recursion_bomb_in_saved_model_pb_is_a_typed_error() {
    // docs/reliability.md#crafted-inputs, case 43: a NodeDef attr nested 10 000 levels deep.
    let mut entry = Vec::new();
    prost::encoding::string::encode(1, &"bomb".to_string(), &mut entry);
    prost::encoding::bytes::encode(2, &nested_attr(10_000), &mut entry);
    let mut node = Vec::new();
    prost::encoding::string::encode(1, &"n".to_string(), &mut node);
    prost::encoding::bytes::encode(5, &entry, &mut node);
    let mut graph = Vec::new();
    prost::encoding::bytes::encode(1, &node, &mut graph);
    let mut meta = Vec::new();
    prost::encoding::bytes::encode(2, &graph, &mut meta);
    let mut sm = Vec::new();
    prost::encoding::bytes::encode(2, &meta, &mut sm);

    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("saved_model.pb"), &sm).unwrap();
    match tfbn::testing::savedmodel::SavedModel::open(tmp.path()) {
        Err(Error::ProtoDecode { what, .. }) => assert_eq!(what, "saved_model.pb"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn recover_all_reports_files_read() {
    let fx = fixture("tfkeras_savedmodel");
    let source = Source::open(fx.open_path()).unwrap();
    let layers = discover(&source);
    let r = recover_all(&source, &layers).unwrap();
    assert_eq!(r.files, ["saved_model.pb", "keras_metadata.pb"]);
    assert!(r.unattached_serving_training.is_empty());
    let fx = fixture("tf1_no_update_ops");
    let source = Source::open(fx.open_path()).unwrap();
    let r = recover_all(&source, &discover(&source)).unwrap();
    assert!(r.files.is_empty());
}

/// A tf_keras config with values no tf_keras writes: a ghost batch of 0 is
/// recovered as written and refused by the layer with a typed error; a
/// clipping or a renorm momentum of the wrong type is left unrecovered
/// (TF's defaults, marked as such).
#[test]
fn malformed_ghost_and_clipping_configs_are_typed_errors_or_defaults() {
    let fx = fixture("tfkeras_ghost");
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_saved_model(&fx, tmp.path());
    let path = dir.join("keras_metadata.pb");
    let mut meta = tfbn::testing::proto::keras::SavedMetadata::decode(
        std::fs::read(&path).unwrap().as_slice(),
    )
    .unwrap();
    let mut edited = 0;
    for n in &mut meta.nodes {
        let Ok(mut v) = serde_json::from_str::<Value>(&n.metadata) else {
            continue;
        };
        match v["config"]["name"].as_str() {
            Some("bn_ghost") => v["config"]["virtual_batch_size"] = serde_json::json!(0),
            Some("bn_clip") => {
                v["config"]["renorm_clipping"] = serde_json::json!("rmax");
                v["config"]["renorm_momentum"] = serde_json::json!([0.9]);
            }
            _ => continue,
        }
        n.metadata = v.to_string();
        edited += 1;
    }
    assert_eq!(edited, 2);
    std::fs::write(&path, meta.encode_to_vec()).unwrap();

    let (layers, hyper) = recovered(&dir);
    let at = |name: &str| layers.iter().position(|l| l.name == name).unwrap();
    let ghost = &hyper[at("bn_ghost")];
    assert_eq!(ghost.virtual_batch_size.value, Some(0));
    let clip = &hyper[at("bn_clip")];
    assert!(
        clip.renorm_clipping.is_default(),
        "{:?}",
        clip.renorm_clipping
    );
    assert!(
        clip.renorm_momentum.is_default(),
        "{:?}",
        clip.renorm_momentum
    );

    let source = Source::open(&dir).unwrap();
    let p = tfbn::testing::prepare::prepare_layer(
        &source,
        &layers[at("bn_ghost")],
        ghost,
        &tfbn::testing::prepare::Overrides::default(),
    )
    .unwrap();
    let x = tfbn::FloatArray::F32(ndarray::ArrayD::zeros(ndarray::IxDyn(&[4, 5, 5, 8])));
    match tfbn::bn::training(&p.config, &p.params, &x) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("virtual_batch_size"), "{m}"),
        other => panic!("expected a typed error, got {:?}", other.map(|_| ())),
    }
}
