//! SavedModel folders built in temp dirs from prost-encoded messages, and
//! hand-built protobuf attacks.

use std::path::Path;

use prost::Message;

use super::keras::parse_metadata_json;
use super::*;
use crate::proto::graph::{attr_value, AttrValue, GraphDef, NodeDef};
use crate::proto::keras::{SavedMetadata, SavedObject as KerasObject};
use crate::proto::saved_model::meta_graph_def::MetaInfoDef;
use crate::proto::saved_model::saved_object::Kind;
use crate::proto::saved_model::{
    SavedConcreteFunction, SavedObject, SavedUserObject, SavedVariable as SavedVariableProto,
};
use crate::proto::tensor::{tensor_shape_proto::Dim, TensorShapeProto};
use crate::proto::trackable::trackable_object::ObjectReference;

fn child(name: &str, id: i32) -> ObjectReference {
    ObjectReference {
        node_id: id,
        local_name: name.to_string(),
    }
}

fn user_object(children: Vec<ObjectReference>, identifier: &str, metadata: &str) -> SavedObject {
    SavedObject {
        children,
        kind: Some(Kind::UserObject(SavedUserObject {
            identifier: identifier.to_string(),
            version: None,
            metadata: metadata.to_string(),
        })),
        ..Default::default()
    }
}

fn variable(name: &str, dims: &[i64]) -> SavedObject {
    SavedObject {
        kind: Some(Kind::Variable(SavedVariableProto {
            dtype: 1,
            shape: Some(TensorShapeProto {
                dim: dims
                    .iter()
                    .map(|&size| Dim {
                        size,
                        name: String::new(),
                    })
                    .collect(),
                unknown_rank: false,
            }),
            trainable: true,
            name: name.to_string(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn meta_graph(tags: &[&str], nodes: Vec<SavedObject>) -> MetaGraphDef {
    MetaGraphDef {
        meta_info_def: Some(MetaInfoDef {
            tags: tags.iter().map(|t| t.to_string()).collect(),
            tensorflow_version: "2.21.0".to_string(),
            stripped_default_attrs: true,
            ..Default::default()
        }),
        object_graph_def: Some(SavedObjectGraph {
            nodes,
            concrete_functions: Default::default(),
        }),
        ..Default::default()
    }
}

fn write_saved_model(dir: &Path, metas: Vec<MetaGraphDef>) {
    let sm = SavedModelProto {
        saved_model_schema_version: 1,
        meta_graphs: metas,
    };
    std::fs::write(dir.join(SAVED_MODEL_PB), sm.encode_to_vec()).unwrap();
}

/// A tf_keras-like Sequential: root → BN layer (aliased as `layer-0` and
/// `layer_with_weights-0`) → gamma, beta.
fn tf_keras_nodes(metadata_in_object: bool) -> Vec<SavedObject> {
    let bn_json = r#"{"name": "batch_normalization", "class_name": "BatchNormalization",
        "config": {"name": "batch_normalization", "axis": [3], "momentum": 0.99,
                   "epsilon": 0.001, "center": true, "scale": true}}"#;
    vec![
        user_object(
            vec![child("layer_with_weights-0", 1), child("layer-0", 1)],
            "_tf_keras_sequential",
            "",
        ),
        user_object(
            vec![child("gamma", 2), child("beta", 3)],
            "_tf_keras_layer",
            if metadata_in_object { bn_json } else { "" },
        ),
        variable("batch_normalization/gamma", &[3]),
        variable("batch_normalization/beta", &[3]),
    ]
}

#[test]
fn opens_a_folder_with_keras_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    assert!(!SavedModel::is_saved_model_dir(dir));
    write_saved_model(
        dir,
        vec![
            meta_graph(&["train"], vec![]),
            meta_graph(&["serve"], tf_keras_nodes(false)),
        ],
    );
    let km = SavedMetadata {
        nodes: vec![
            KerasObject {
                node_id: 0,
                node_path: "root".to_string(),
                identifier: "_tf_keras_sequential".to_string(),
                metadata: r#"{"class_name": "Sequential", "name": "sequential", "config": {}}"#
                    .to_string(),
                version: None,
            },
            KerasObject {
                node_id: 1,
                node_path: "root.layer_with_weights-0".to_string(),
                identifier: "_tf_keras_layer".to_string(),
                metadata: r#"{"class_name": "BatchNormalization", "name": "batch_normalization",
                    "config": {"axis": [3], "epsilon": 0.001, "momentum": 0.99, "gamma_constraint": NaN}}"#
                    .to_string(),
                version: None,
            },
        ],
    };
    std::fs::write(dir.join(KERAS_METADATA_PB), km.encode_to_vec()).unwrap();
    assert!(SavedModel::is_saved_model_dir(dir));

    let sm = SavedModel::open(dir).unwrap();
    assert_eq!(sm.dir(), dir);
    assert_eq!(sm.meta_graph().tags(), ["serve"]);
    assert!(sm.meta_graph().stripped_default_attrs());
    assert!(sm.variables().is_none());
    assert_eq!(sm.object_graph().unwrap().nodes.len(), 4);

    let vars = sm.variable_nodes().unwrap();
    assert_eq!(vars.len(), 2);
    assert_eq!(vars[0].node_id, 2);
    assert_eq!(vars[0].name, "batch_normalization/gamma");
    assert_eq!(vars[0].dtype, Some(crate::DType::F32));
    assert_eq!(vars[0].shape, [3]);
    assert!(vars[0].trainable);
    assert_eq!(vars[0].checkpoint_key, None);
    assert_eq!(
        vars[0].paths,
        ["layer_with_weights-0/gamma", "layer-0/gamma"]
    );

    let layers = sm.keras_layers().unwrap();
    assert_eq!(layers.len(), 2);
    let bn = &layers[1];
    assert_eq!(bn.node_id, Some(1));
    assert_eq!(bn.node_path, "root.layer_with_weights-0");
    assert_eq!(bn.identifier, "_tf_keras_layer");
    assert_eq!(bn.class_name.as_deref(), Some("BatchNormalization"));
    assert_eq!(bn.name.as_deref(), Some("batch_normalization"));
    assert_eq!(bn.config["epsilon"].as_f64(), Some(0.001));
    assert_eq!(bn.config["axis"][0].as_i64(), Some(3));
    assert_eq!(bn.config["gamma_constraint"], "NaN");
    assert_eq!(bn.metadata_error, None);
}

#[test]
fn keras_layers_fall_back_to_user_object_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    write_saved_model(
        tmp.path(),
        vec![meta_graph(&["serve"], tf_keras_nodes(true))],
    );
    let sm = SavedModel::open(tmp.path()).unwrap();
    let layers = sm.keras_layers().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0].node_id, Some(1));
    assert_eq!(layers[0].node_path, "root.layer_with_weights-0");
    assert_eq!(layers[0].config["momentum"].as_f64(), Some(0.99));
}

/// A Lambda layer's config is data: a string, never run.
#[test]
fn lambda_config_is_inert_data() {
    let json = r#"{"class_name": "Lambda", "config": {"function": ["4wEAAAAAAAAA", null, null],
        "function_type": "lambda", "module": "os"}}"#;
    let v = parse_metadata_json(json).unwrap();
    assert_eq!(v["class_name"], "Lambda");
    assert_eq!(v["config"]["function"][0], "4wEAAAAAAAAA");
}

#[test]
fn metadata_json_quirks() {
    let v = parse_metadata_json(r#"{"a": NaN, "b": -Infinity, "c": [Infinity], "d": "NaN x"}"#)
        .unwrap();
    assert_eq!(v["a"], "NaN");
    assert_eq!(v["b"], "-Infinity");
    assert_eq!(v["c"][0], "Infinity");
    assert_eq!(v["d"], "NaN x");
    // Escaped quotes inside strings do not end them.
    let v = parse_metadata_json(r#"{"s": "a\"NaN", "t": NaN}"#).unwrap();
    assert_eq!(v["s"], "a\"NaN");
    assert!(parse_metadata_json("{not json").is_err());
    // serde_json's nesting limit turns a JSON bomb into an error.
    let bomb = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(parse_metadata_json(&bomb).is_err());
}

#[test]
fn broken_metadata_json_is_reported_not_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = tf_keras_nodes(false);
    nodes[1] = user_object(
        vec![child("gamma", 2), child("beta", 3)],
        "_tf_keras_layer",
        "{oops",
    );
    write_saved_model(tmp.path(), vec![meta_graph(&["serve"], nodes)]);
    let layers = SavedModel::open(tmp.path())
        .unwrap()
        .keras_layers()
        .unwrap();
    assert_eq!(layers.len(), 1);
    assert!(layers[0].metadata_error.is_some());
    assert_eq!(layers[0].config, serde_json::Value::Null);
}

#[test]
fn keras_metadata_node_out_of_range_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    write_saved_model(
        tmp.path(),
        vec![meta_graph(&["serve"], tf_keras_nodes(false))],
    );
    let km = SavedMetadata {
        nodes: vec![KerasObject {
            node_id: 9,
            node_path: "root.x".to_string(),
            ..Default::default()
        }],
    };
    std::fs::write(tmp.path().join(KERAS_METADATA_PB), km.encode_to_vec()).unwrap();
    let err = SavedModel::open(tmp.path())
        .unwrap()
        .keras_layers()
        .unwrap_err();
    assert!(matches!(err, Error::SavedModelInvalid { .. }), "{err}");
}

#[test]
fn first_meta_graph_without_serve_tag() {
    let tmp = tempfile::tempdir().unwrap();
    write_saved_model(
        tmp.path(),
        vec![
            meta_graph(&["train"], vec![]),
            meta_graph(&["eval"], vec![]),
        ],
    );
    let sm = SavedModel::open(tmp.path()).unwrap();
    assert_eq!(sm.meta_graph().tags(), ["train"]);
    assert!(sm.variable_nodes().unwrap().is_empty());
    assert!(sm.keras_layers().unwrap().is_empty());
}

#[test]
fn no_meta_graph_is_invalid() {
    let tmp = tempfile::tempdir().unwrap();
    write_saved_model(tmp.path(), vec![]);
    let err = SavedModel::open(tmp.path()).unwrap_err();
    assert!(matches!(err, Error::SavedModelInvalid { .. }), "{err}");
}

#[test]
fn pbtxt_is_refused_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join(SAVED_MODEL_PBTXT),
        "saved_model_schema_version: 1\n",
    )
    .unwrap();
    assert!(SavedModel::is_saved_model_dir(tmp.path()));
    let err = SavedModel::open(tmp.path()).unwrap_err();
    match &err {
        Error::SavedModelInvalid { path, what } => {
            assert!(path.ends_with(SAVED_MODEL_PBTXT));
            assert!(what.contains("not supported"), "{what}");
        }
        e => panic!("wrong error {e:?}"),
    }
}

#[test]
fn missing_folder_is_not_recognized() {
    let tmp = tempfile::tempdir().unwrap();
    let err = SavedModel::open(tmp.path().join("nope")).unwrap_err();
    assert!(matches!(err, Error::PathNotRecognized { .. }), "{err}");
}

#[test]
fn garbage_saved_model_pb_is_a_decode_error() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join(SAVED_MODEL_PB), [0x12, 0x80]).unwrap();
    let err = SavedModel::open(tmp.path()).unwrap_err();
    match &err {
        Error::ProtoDecode { message, path, .. } => {
            assert_eq!(*message, "SavedModel");
            assert!(path.ends_with(SAVED_MODEL_PB));
        }
        e => panic!("wrong error {e:?}"),
    }
}

#[test]
fn out_of_range_ids_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = tf_keras_nodes(false);
    nodes[1].children.push(child("ghost", 4));
    write_saved_model(tmp.path(), vec![meta_graph(&["serve"], nodes)]);
    let err = SavedModel::open(tmp.path()).unwrap_err();
    match &err {
        Error::SavedModelInvalid { what, .. } => assert!(what.contains("node 1"), "{what}"),
        e => panic!("wrong error {e:?}"),
    }

    let mut mg = meta_graph(&["serve"], tf_keras_nodes(false));
    mg.object_graph_def
        .as_mut()
        .unwrap()
        .concrete_functions
        .insert(
            "__inference_call_1".to_string(),
            SavedConcreteFunction {
                bound_inputs: vec![2, -3],
            },
        );
    write_saved_model(tmp.path(), vec![mg]);
    let err = SavedModel::open(tmp.path()).unwrap_err();
    assert!(
        matches!(&err, Error::SavedModelInvalid { what, .. } if what.contains("-3")),
        "{err}"
    );
}

/// Keras 3 `model.export`: every variable also sits under `_all_variables/N`
/// as a separate, same-named node. Node ids, not names, keep them apart.
#[test]
fn export_duplicates_stay_separate_nodes() {
    let tmp = tempfile::tempdir().unwrap();
    let nodes = vec![
        user_object(
            vec![child("variables", 1), child("_all_variables", 2)],
            "_generic_user_object",
            "",
        ),
        user_object(vec![child("0", 3)], "trackable_list_wrapper", ""),
        user_object(vec![child("0", 4)], "trackable_list_wrapper", ""),
        variable("bn/gamma", &[3]),
        variable("bn/gamma", &[3]),
    ];
    write_saved_model(tmp.path(), vec![meta_graph(&["serve"], nodes)]);
    let vars = SavedModel::open(tmp.path())
        .unwrap()
        .variable_nodes()
        .unwrap();
    assert_eq!(vars.len(), 2);
    assert_eq!((vars[0].node_id, vars[1].node_id), (3, 4));
    assert_eq!(vars[0].paths, ["variables/0"]);
    assert_eq!(vars[1].paths, ["_all_variables/0"]);
}

/// `AttrValue{list{func[{attr{"a": AttrValue{…}}}]}}`, `depth` times, built
/// byte by byte.
fn attr_value_bomb(depth: usize) -> Vec<u8> {
    fn ld(field: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(payload.len() + 8);
        prost::encoding::encode_key(field, prost::encoding::WireType::LengthDelimited, &mut out);
        prost::encoding::encode_varint(payload.len() as u64, &mut out);
        out.extend_from_slice(payload);
        out
    }
    let mut attr_value: Vec<u8> = Vec::new();
    for _ in 0..depth {
        let mut entry = ld(1, b"a");
        entry.extend(ld(2, &attr_value));
        let name_attr_list = ld(2, &entry);
        let list_value = ld(9, &name_attr_list);
        attr_value = ld(1, &list_value);
    }
    attr_value
}

#[test]
fn attr_value_recursion_bomb_is_a_typed_error() {
    // Shallow nesting decodes fine.
    let ok = AttrValue::decode(attr_value_bomb(10).as_slice()).unwrap();
    assert!(matches!(ok.value, Some(attr_value::Value::List(_))));
    // Deep nesting hits prost's limit: an error, not a stack overflow. Run
    // on a small stack to be sure the limit, not luck, stops it.
    let bytes = attr_value_bomb(2000);
    let err = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || {
            decode_proto::<AttrValue>(&bytes, Path::new("bomb.pb"), "attr", "AttrValue")
                .unwrap_err()
        })
        .unwrap()
        .join()
        .unwrap();
    match &err {
        Error::ProtoDecode {
            message, source, ..
        } => {
            assert_eq!(*message, "AttrValue");
            assert!(source.to_string().contains("recursion limit"), "{source}");
        }
        e => panic!("wrong error {e:?}"),
    }
}

/// docs/reliability.md#crafted-inputs, case 43: the bomb inside a node attribute of
/// `saved_model.pb`.
#[test]
fn saved_model_recursion_bomb_is_a_typed_error() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeDef {
        name: "n".to_string(),
        op: "Const".to_string(),
        ..Default::default()
    };
    let mg = MetaGraphDef {
        graph_def: Some(GraphDef {
            node: vec![node],
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut bytes = SavedModelProto {
        saved_model_schema_version: 1,
        meta_graphs: vec![mg],
    }
    .encode_to_vec();
    // Splice an attr map entry holding the bomb into the NodeDef by
    // re-encoding the nesting: SavedModel.2 > MetaGraphDef.2 > GraphDef.1 >
    // NodeDef.5 > entry{1 key, 2 value}.
    fn ld(field: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        prost::encoding::encode_key(field, prost::encoding::WireType::LengthDelimited, &mut out);
        prost::encoding::encode_varint(payload.len() as u64, &mut out);
        out.extend_from_slice(payload);
        out
    }
    let mut entry = ld(1, b"value");
    entry.extend(ld(2, &attr_value_bomb(300)));
    let node_def = ld(5, &entry);
    let graph_def = ld(1, &node_def);
    let meta = ld(2, &graph_def);
    bytes.extend(ld(2, &meta));
    std::fs::write(tmp.path().join(SAVED_MODEL_PB), bytes).unwrap();

    let path = tmp.path().to_path_buf();
    let err = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || SavedModel::open(path).unwrap_err())
        .unwrap()
        .join()
        .unwrap();
    assert!(
        matches!(
            &err,
            Error::ProtoDecode {
                message: "SavedModel",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("recursion limit"), "{err}");
}

#[test]
fn node_def_attr_helpers() {
    let mut n = NodeDef {
        name: "bn/FusedBatchNormV3".to_string(),
        op: "FusedBatchNormV3".to_string(),
        ..Default::default()
    };
    let mut set = |k: &str, v: attr_value::Value| {
        n.attr.insert(k.to_string(), AttrValue { value: Some(v) });
    };
    set("epsilon", attr_value::Value::F(0.001));
    set("is_training", attr_value::Value::B(false));
    set("data_format", attr_value::Value::S(b"NHWC".to_vec()));
    set("T", attr_value::Value::Type(1));
    set("n", attr_value::Value::I(7));
    let n = NodeDef::decode(n.encode_to_vec().as_slice()).unwrap();
    assert_eq!(n.attr_f32("epsilon"), Some(0.001));
    assert_eq!(n.attr_bool("is_training"), Some(false));
    assert_eq!(n.attr_str("data_format"), Some("NHWC"));
    assert_eq!(n.attr_type("T"), Some(1));
    assert_eq!(n.attr_i64("n"), Some(7));
    assert_eq!(n.attr_f32("is_training"), None);
    assert_eq!(n.attr_f32("missing"), None);
}

mod with_bundle {
    use super::*;
    use crate::bundle::write_v2;
    use crate::objgraph::{ObjectGraph, OBJECT_GRAPH_KEY};
    use crate::proto::trackable::trackable_object::SerializedTensor;
    use crate::proto::trackable::{TrackableObject, TrackableObjectGraph};
    use crate::{DType, Tensor, TensorData};

    fn f32_tensor(values: &[f32]) -> Tensor {
        Tensor {
            dtype: DType::F32,
            shape: vec![values.len() as u64],
            data: TensorData::Bytes(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        }
    }

    fn string_scalar(bytes: Vec<u8>) -> Tensor {
        Tensor {
            dtype: DType::String,
            shape: vec![],
            data: TensorData::Strings(vec![bytes]),
        }
    }

    /// The checkpoint graph mirroring `nodes` (same children), with a
    /// VARIABLE_VALUE attribute on each node listed in `keys`.
    fn ckpt_graph(nodes: &[SavedObject], keys: &[(usize, &str, &str)]) -> TrackableObjectGraph {
        TrackableObjectGraph {
            nodes: nodes
                .iter()
                .enumerate()
                .map(|(i, n)| TrackableObject {
                    children: n.children.clone(),
                    attributes: keys
                        .iter()
                        .filter(|(id, _, _)| *id == i)
                        .map(|&(_, full_name, key)| SerializedTensor {
                            name: "VARIABLE_VALUE".to_string(),
                            full_name: full_name.to_string(),
                            checkpoint_key: key.to_string(),
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
        }
    }

    fn write_variables(dir: &Path, graph: Option<&TrackableObjectGraph>, keys: &[&str]) {
        let vars = dir.join("variables");
        std::fs::create_dir_all(&vars).unwrap();
        let value = f32_tensor(&[1.0, 2.0, 3.0]);
        let graph_tensor = graph.map(|g| string_scalar(g.encode_to_vec()));
        let mut tensors: Vec<(&str, &Tensor)> = keys.iter().map(|k| (*k, &value)).collect();
        if let Some(t) = &graph_tensor {
            tensors.push((OBJECT_GRAPH_KEY, t));
        }
        write_v2(&vars.join("variables"), &tensors).unwrap();
    }

    const GAMMA: &str = "layer_with_weights-0/gamma/.ATTRIBUTES/VARIABLE_VALUE";
    const BETA: &str = "layer_with_weights-0/beta/.ATTRIBUTES/VARIABLE_VALUE";

    #[test]
    fn variable_nodes_take_keys_from_the_bundle_graph() {
        let tmp = tempfile::tempdir().unwrap();
        let nodes = tf_keras_nodes(false);
        let graph = ckpt_graph(
            &nodes,
            &[
                (2, "batch_normalization/gamma", GAMMA),
                (3, "batch_normalization/beta", BETA),
            ],
        );
        write_variables(tmp.path(), Some(&graph), &[GAMMA, BETA]);
        write_saved_model(tmp.path(), vec![meta_graph(&["serve"], nodes)]);

        let sm = SavedModel::open(tmp.path()).unwrap();
        let bundle = sm.variables().unwrap();
        assert!(bundle.entry(GAMMA).is_some());
        let vars = sm.variable_nodes().unwrap();
        assert_eq!(vars[0].checkpoint_key.as_deref(), Some(GAMMA));
        assert_eq!(vars[1].checkpoint_key.as_deref(), Some(BETA));
        // The key is the first path plus the attribute suffix.
        assert_eq!(
            vars[0].checkpoint_key.as_deref(),
            Some(format!("{}/.ATTRIBUTES/VARIABLE_VALUE", vars[0].paths[0]).as_str())
        );

        let og = ObjectGraph::from_bundle(bundle).unwrap().unwrap();
        assert_eq!(og.node_count(), 4);
        let ov = og.variables();
        assert_eq!(ov[0].checkpoint_key, GAMMA);
        assert_eq!(ov[0].full_name, "batch_normalization/gamma");
        assert_eq!(ov[0].paths, vars[0].paths);
    }

    /// A TF 2.4-style SavedModel: `saved_model.pb` lists more nodes than the
    /// checkpoint (functions and constants interleaved, so every id after
    /// the first extra node is shifted). Keys follow the names, not the ids.
    #[test]
    fn extra_saved_nodes_are_matched_by_local_name() {
        let tmp = tempfile::tempdir().unwrap();
        let nodes = tf_keras_nodes(false);
        let graph = ckpt_graph(
            &nodes,
            &[
                (2, "batch_normalization/gamma", GAMMA),
                (3, "batch_normalization/beta", BETA),
            ],
        );
        // Saved graph: root, a function node, the layer, a constant, then
        // the variables; children point at the new ids.
        let mut saved = vec![
            user_object(
                vec![
                    child("layer_with_weights-0", 2),
                    child("layer-0", 2),
                    child("signatures", 1),
                ],
                "_tf_keras_sequential",
                "",
            ),
            SavedObject::default(),
            user_object(
                vec![child("beta", 5), child("gamma", 4), child("eps", 3)],
                "_tf_keras_layer",
                "",
            ),
            SavedObject::default(),
            variable("batch_normalization/gamma", &[3]),
            variable("batch_normalization/beta", &[3]),
        ];
        saved.push(variable("unreached", &[3]));
        write_variables(tmp.path(), Some(&graph), &[GAMMA, BETA]);
        write_saved_model(tmp.path(), vec![meta_graph(&["serve"], saved)]);
        let vars = SavedModel::open(tmp.path())
            .unwrap()
            .variable_nodes()
            .unwrap();
        let key = |name: &str| {
            vars.iter()
                .find(|v| v.name == name)
                .and_then(|v| v.checkpoint_key.clone())
        };
        assert_eq!(key("batch_normalization/gamma").as_deref(), Some(GAMMA));
        assert_eq!(key("batch_normalization/beta").as_deref(), Some(BETA));
        assert_eq!(key("unreached"), None);
    }

    /// Children listed in another order in the checkpoint still pair by name.
    #[test]
    fn reordered_children_pair_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let nodes = tf_keras_nodes(false);
        let mut graph = ckpt_graph(&nodes, &[(2, "g", GAMMA), (3, "b", BETA)]);
        graph.nodes[1].children.swap(0, 1);
        write_variables(tmp.path(), Some(&graph), &[GAMMA, BETA]);
        write_saved_model(tmp.path(), vec![meta_graph(&["serve"], nodes)]);
        let vars = SavedModel::open(tmp.path())
            .unwrap()
            .variable_nodes()
            .unwrap();
        assert_eq!(vars[0].checkpoint_key.as_deref(), Some(GAMMA));
        assert_eq!(vars[1].checkpoint_key.as_deref(), Some(BETA));
    }

    #[test]
    fn bundle_without_object_graph_is_tf1() {
        let tmp = tempfile::tempdir().unwrap();
        write_variables(tmp.path(), None, &["bn/gamma"]);
        let bundle = crate::bundle::Bundle::open(tmp.path().join("variables/variables")).unwrap();
        assert!(ObjectGraph::from_bundle(&bundle).unwrap().is_none());
    }

    #[test]
    fn object_graph_key_with_wrong_dtype_is_invalid() {
        let tmp = tempfile::tempdir().unwrap();
        write_variables(tmp.path(), None, &[OBJECT_GRAPH_KEY]);
        let bundle = crate::bundle::Bundle::open(tmp.path().join("variables/variables")).unwrap();
        let err = ObjectGraph::from_bundle(&bundle).unwrap_err();
        assert!(matches!(err, Error::ObjectGraphInvalid { .. }), "{err}");
    }

    #[test]
    fn corrupt_object_graph_in_bundle_is_a_decode_error() {
        let tmp = tempfile::tempdir().unwrap();
        let vars = tmp.path().join("variables");
        std::fs::create_dir_all(&vars).unwrap();
        let t = string_scalar(vec![0x0a, 0x05, 0x0a]);
        write_v2(&vars.join("variables"), &[(OBJECT_GRAPH_KEY, &t)]).unwrap();
        let bundle = crate::bundle::Bundle::open(vars.join("variables")).unwrap();
        let err = ObjectGraph::from_bundle(&bundle).unwrap_err();
        assert!(
            matches!(
                &err,
                Error::ProtoDecode {
                    message: "TrackableObjectGraph",
                    ..
                }
            ),
            "{err}"
        );
    }
}
