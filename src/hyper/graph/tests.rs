//! Hand-built graphs: TF1 `cond` branches, resources through calls and
//! `If` branches, every fused op name, malformed constants.

use std::collections::BTreeMap;

use super::*;
use crate::proto::graph::{op_def::ArgDef, AttrValue, FunctionDefLibrary, NameAttrList, OpDef};
use crate::proto::saved_model::{SignatureDef, TensorInfo};
use crate::proto::tensor::TensorProto;

fn node(name: &str, op: &str, inputs: &[&str], attrs: Vec<(&str, attr_value::Value)>) -> NodeDef {
    NodeDef {
        name: name.into(),
        op: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        device: String::new(),
        attr: attrs
            .into_iter()
            .map(|(k, v)| (k.to_string(), AttrValue { value: Some(v) }))
            .collect(),
    }
}

fn func(name: &str) -> attr_value::Value {
    attr_value::Value::Func(NameAttrList {
        name: name.into(),
        attr: BTreeMap::new(),
    })
}

fn serving(output: &str) -> BTreeMap<String, SignatureDef> {
    let mut outputs = BTreeMap::new();
    outputs.insert(
        "y".to_string(),
        TensorInfo {
            name: output.into(),
            dtype: 1,
            tensor_shape: None,
        },
    );
    let mut sigs = BTreeMap::new();
    sigs.insert(
        "serving_default".to_string(),
        SignatureDef {
            inputs: BTreeMap::new(),
            outputs,
            method_name: String::new(),
        },
    );
    sigs
}

fn tf1_index() -> VarIndex {
    let mut v = VarIndex::default();
    for role in [
        BnRole::Gamma,
        BnRole::Beta,
        BnRole::MovingMean,
        BnRole::MovingVariance,
    ] {
        v.layer_of_key
            .insert(format!("bn/{}", role.tf_name()), (0, role));
    }
    v
}

/// TF1 `tf.cond` on a training placeholder: ref variables read through
/// `…/read` and `Switch`, a `FusedBatchNorm` (V1) in the training branch
/// and a `FusedBatchNormV2` with stripped attrs in the inference branch.
#[test]
fn tf1_cond_branches_and_every_fused_op_name() {
    let mut nodes = vec![
        node("x", "Placeholder", &[], vec![]),
        node("is_training", "Placeholder", &[], vec![]),
    ];
    for v in ["gamma", "beta", "moving_mean", "moving_variance"] {
        nodes.push(node(&format!("bn/{v}"), "VariableV2", &[], vec![]));
        nodes.push(node(
            &format!("bn/{v}/read"),
            "Identity",
            &[&format!("bn/{v}")],
            vec![],
        ));
        nodes.push(node(
            &format!("cond/Switch_{v}"),
            "Switch",
            &[&format!("bn/{v}/read"), "is_training"],
            vec![],
        ));
    }
    let ins = |k: usize| {
        vec![
            "x".to_string(),
            format!("cond/Switch_gamma:{k}"),
            format!("cond/Switch_beta:{k}"),
            format!("cond/Switch_moving_mean:{k}"),
            format!("cond/Switch_moving_variance:{k}"),
        ]
    };
    let mut train = node(
        "cond/FusedBatchNorm",
        "FusedBatchNorm",
        &[],
        vec![
            ("epsilon", attr_value::Value::F(1e-3)),
            ("is_training", attr_value::Value::B(true)),
        ],
    );
    train.input = ins(1);
    let mut infer = node(
        "cond/FusedBatchNorm_1",
        "FusedBatchNormV2",
        &[],
        vec![("is_training", attr_value::Value::B(false))],
    );
    infer.input = ins(0);
    nodes.push(train);
    nodes.push(infer);
    nodes.push(node(
        "cond/Merge",
        "Merge",
        &["cond/FusedBatchNorm_1", "cond/FusedBatchNorm"],
        vec![],
    ));
    let meta = MetaGraphDef {
        graph_def: Some(GraphDef {
            node: nodes,
            ..Default::default()
        }),
        signature_def: serving("cond/Merge:0"),
        ..Default::default()
    };
    let g = scan(&meta, "model.ckpt.meta", Path::new("m.meta"), &tf1_index()).unwrap();
    assert!(g.has_serving);
    assert_eq!(g.bn.len(), 2, "{:?}", g.bn);
    let train =
        g.bn.iter()
            .find(|s| s.form == Form::Fused("FusedBatchNorm"))
            .unwrap();
    assert_eq!(
        (train.layer, train.training, train.serving),
        (Some(0), true, true)
    );
    assert_eq!(train.epsilon, 1e-3);
    let infer =
        g.bn.iter()
            .find(|s| s.form == Form::Fused("FusedBatchNormV2"))
            .unwrap();
    assert_eq!(
        (infer.layer, infer.training, infer.serving),
        (Some(0), false, true)
    );
    assert_eq!(infer.epsilon, 1e-4);
    assert!(
        infer.epsilon_detail.contains("op default"),
        "{}",
        infer.epsilon_detail
    );
    assert_eq!(infer.axis.as_ref().map(|a| a.0), Some(3));
}

fn arg(name: &str, ty: i32) -> ArgDef {
    ArgDef {
        name: name.into(),
        r#type: ty,
        ..Default::default()
    }
}

fn function(name: &str, args: Vec<ArgDef>, nodes: Vec<NodeDef>) -> FunctionDef {
    FunctionDef {
        signature: Some(OpDef {
            name: name.into(),
            input_arg: args,
            ..Default::default()
        }),
        node_def: nodes,
        ..Default::default()
    }
}

/// TF2: `VarHandleOp`s → `StatefulPartitionedCall` → `If` → branch
/// functions whose resource arguments are read; a training trace no
/// signature calls stays off the serving path.
#[test]
fn resources_flow_through_calls_and_if_branches() {
    let vars = ["gamma", "beta", "moving_mean", "moving_variance"];
    let mut top = vec![node("x", "Placeholder", &[], vec![])];
    for v in vars {
        top.push(node(
            &format!("h_{v}"),
            "VarHandleOp",
            &[],
            vec![(
                "shared_name",
                attr_value::Value::S(format!("bn/{v}").into_bytes()),
            )],
        ));
    }
    top.push(node(
        "call",
        "StatefulPartitionedCall",
        &[
            "x",
            "h_gamma",
            "h_beta",
            "h_moving_mean",
            "h_moving_variance",
        ],
        vec![("f", func("outer"))],
    ));
    let res_args = || {
        let mut a = vec![arg("x", 1)];
        a.extend(["g", "b", "m", "v"].map(|n| arg(n, DT_RESOURCE)));
        a
    };
    let outer = function(
        "outer",
        res_args(),
        vec![
            node("pred", "Const", &[], vec![]),
            node(
                "if",
                "StatelessIf",
                &["pred", "x", "g", "b", "m", "v"],
                vec![
                    ("then_branch", func("infer")),
                    ("else_branch", func("infer")),
                ],
            ),
        ],
    );
    let mut body = vec![];
    for (r, n) in ["g", "b", "m", "v"].iter().zip(vars) {
        body.push(node(&format!("read_{n}"), "ReadVariableOp", &[r], vec![]));
    }
    let fbn = |name: &str, training: bool| {
        let mut n = node(
            name,
            "FusedBatchNormV3",
            &[],
            vec![
                ("epsilon", attr_value::Value::F(0.01)),
                ("is_training", attr_value::Value::B(training)),
                ("data_format", attr_value::Value::S(b"NCHW".to_vec())),
            ],
        );
        n.input = std::iter::once("x".to_string())
            .chain(vars.iter().map(|v| format!("read_{v}:value:0")))
            .collect();
        n
    };
    let mut infer_nodes = body.clone();
    infer_nodes.push(fbn("FusedBatchNormV3", false));
    let mut train_nodes = body;
    train_nodes.push(fbn("FusedBatchNormV3", true));
    let meta = MetaGraphDef {
        graph_def: Some(GraphDef {
            node: top,
            library: Some(FunctionDefLibrary {
                function: vec![
                    outer,
                    function("infer", res_args(), infer_nodes),
                    function("train_trace", res_args(), train_nodes),
                ],
                gradient: vec![],
            }),
            ..Default::default()
        }),
        signature_def: serving("call:0"),
        ..Default::default()
    };
    let mut index = VarIndex::default();
    for (i, v) in vars.iter().enumerate() {
        let key = format!("model/bn/{v}/.ATTRIBUTES/VARIABLE_VALUE");
        index
            .keys_by_name
            .insert(format!("bn/{v}"), vec![key.clone()]);
        index.layer_of_key.insert(
            key,
            (
                0,
                [
                    BnRole::Gamma,
                    BnRole::Beta,
                    BnRole::MovingMean,
                    BnRole::MovingVariance,
                ][i],
            ),
        );
    }
    let g = scan(&meta, "saved_model.pb", Path::new("saved_model.pb"), &index).unwrap();
    let infer =
        g.bn.iter()
            .find(|s| s.site.function.as_deref() == Some("infer"))
            .unwrap();
    assert_eq!(
        (infer.layer, infer.training, infer.serving),
        (Some(0), false, true)
    );
    assert_eq!(infer.axis.as_ref().map(|a| (a.0, a.1)), Some((1, Some(4))));
    // Walked on its own: no bindings, so no layer, and not serving.
    let train =
        g.bn.iter()
            .find(|s| s.site.function.as_deref() == Some("train_trace"))
            .unwrap();
    assert_eq!(
        (train.layer, train.training, train.serving),
        (None, true, false)
    );
}

#[test]
fn a_malformed_epsilon_constant_is_a_typed_error() {
    // reliability case 45 on the ε constant of a decomposed form.
    let mut eps = TensorProto {
        dtype: 1,
        tensor_shape: Some(Default::default()),
        ..Default::default()
    };
    eps.tensor_content = vec![1, 2, 3];
    let nodes = vec![
        node("bn/moving_variance", "VariableV2", &[], vec![]),
        node(
            "eps",
            "Const",
            &[],
            vec![("value", attr_value::Value::Tensor(eps))],
        ),
        node("add", "AddV2", &["bn/moving_variance", "eps"], vec![]),
        node("rsqrt", "Rsqrt", &["add"], vec![]),
    ];
    let meta = MetaGraphDef {
        graph_def: Some(GraphDef {
            node: nodes,
            ..Default::default()
        }),
        ..Default::default()
    };
    match scan(&meta, "m.meta", Path::new("m.meta"), &tf1_index()) {
        Err(Error::SavedModelInvalid { what, .. }) => {
            assert!(what.contains("tensor_content has 3 bytes"), "{what}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn input_forms() {
    assert_eq!(input_node("^a/b"), "a/b");
    assert_eq!(input_node("a/b:1"), "a/b");
    assert_eq!(input_node("FusedBatchNormV3:y:0"), "FusedBatchNormV3");
    assert_eq!(input_index("a:2"), 2);
    assert_eq!(input_index("n:output:3"), 3);
    assert_eq!(input_index("arg"), 0);
}

#[test]
fn every_fused_op_is_in_the_table() {
    for op in ["FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3"] {
        let f = fused_op(op).unwrap();
        assert_eq!((f.epsilon, f.exponential_avg_factor), (1e-4, 1.0));
        assert_eq!((f.data_format, f.is_training), ("NHWC", true));
    }
    assert!(fused_op("BatchNormWithGlobalNormalization").is_none());
}

fn f32_const(name: &str, v: f32, inputs: &[&str]) -> NodeDef {
    let t = TensorProto {
        dtype: 1,
        tensor_shape: Some(Default::default()),
        float_val: vec![v],
        ..Default::default()
    };
    node(
        name,
        "Const",
        inputs,
        vec![("value", attr_value::Value::Tensor(t))],
    )
}

/// TF 1.x layers given a `training` tensor pick the momentum in a second
/// cond (seen in musicnn's TF 1.12 graphs): `sub = 1 − Merge(Const 1.0,
/// Const m)`, `AssignSub(moving_mean, (moving_mean − batch)·sub)`.
#[test]
fn momentum_from_a_cond_merge_of_constants() {
    let nodes = vec![
        node("bn/moving_mean", "VariableV2", &[], vec![]),
        node(
            "bn/moving_mean/read",
            "Identity",
            &["bn/moving_mean"],
            vec![],
        ),
        node("batch_mean", "Placeholder", &[], vec![]),
        node("training", "Placeholder", &[], vec![]),
        node("cond_1/Switch", "Switch", &["training", "training"], vec![]),
        node("cond_1/switch_t", "Identity", &["cond_1/Switch:1"], vec![]),
        node("cond_1/switch_f", "Identity", &["cond_1/Switch"], vec![]),
        f32_const("cond_1/Const", 0.9, &["^cond_1/switch_t"]),
        f32_const("cond_1/Const_1", 1.0, &["^cond_1/switch_f"]),
        node(
            "cond_1/Merge",
            "Merge",
            &["cond_1/Const_1", "cond_1/Const"],
            vec![],
        ),
        f32_const("AssignMovingAvg/sub/x", 1.0, &[]),
        node(
            "AssignMovingAvg/sub",
            "Sub",
            &["AssignMovingAvg/sub/x", "cond_1/Merge"],
            vec![],
        ),
        node(
            "AssignMovingAvg/sub_1",
            "Sub",
            &["bn/moving_mean/read", "batch_mean"],
            vec![],
        ),
        node(
            "AssignMovingAvg/mul",
            "Mul",
            &["AssignMovingAvg/sub_1", "AssignMovingAvg/sub"],
            vec![],
        ),
        node(
            "AssignMovingAvg",
            "AssignSub",
            &["bn/moving_mean", "AssignMovingAvg/mul"],
            vec![],
        ),
    ];
    let meta = MetaGraphDef {
        graph_def: Some(GraphDef {
            node: nodes,
            ..Default::default()
        }),
        ..Default::default()
    };
    let g = scan(&meta, "m.meta", Path::new("m.meta"), &tf1_index()).unwrap();
    assert_eq!(g.momentum.len(), 1, "{:?}", g.momentum);
    assert_eq!(g.momentum[0].momentum, 0.9);
    assert!(
        g.momentum[0].detail.contains("cond_1/Const"),
        "{}",
        g.momentum[0].detail
    );
}

/// Graph-based discovery: a hand-written `tf.nn.batch_normalization` on
/// variables with custom names, read through `Switch` in a cond's
/// inference branch, is reported with each variable's role.
#[test]
fn hand_written_batch_norm_is_traced_to_its_variables() {
    let mut nodes = vec![
        node("x", "Placeholder", &[], vec![]),
        node("training", "Placeholder", &[], vec![]),
    ];
    for v in ["scale", "offset", "pop_mean", "pop_var"] {
        nodes.push(node(&format!("bn/{v}"), "VariableV2", &[], vec![]));
        nodes.push(node(
            &format!("bn/{v}/read"),
            "Identity",
            &[&format!("bn/{v}")],
            vec![],
        ));
        nodes.push(node(
            &format!("cond/Switch_{v}"),
            "Switch",
            &[&format!("bn/{v}/read"), "training"],
            vec![],
        ));
    }
    nodes.extend([
        f32_const("cond/batchnorm/add/y", 1e-4, &[]),
        node(
            "cond/batchnorm/add",
            "AddV2",
            &["cond/Switch_pop_var", "cond/batchnorm/add/y"],
            vec![],
        ),
        node(
            "cond/batchnorm/Rsqrt",
            "Rsqrt",
            &["cond/batchnorm/add"],
            vec![],
        ),
        node(
            "cond/batchnorm/mul",
            "Mul",
            &["cond/batchnorm/Rsqrt", "cond/Switch_scale"],
            vec![],
        ),
        node(
            "cond/batchnorm/mul_1",
            "Mul",
            &["x", "cond/batchnorm/mul"],
            vec![],
        ),
        node(
            "cond/batchnorm/mul_2",
            "Mul",
            &["cond/Switch_pop_mean", "cond/batchnorm/mul"],
            vec![],
        ),
        node(
            "cond/batchnorm/sub",
            "Sub",
            &["cond/Switch_offset", "cond/batchnorm/mul_2"],
            vec![],
        ),
        node(
            "cond/batchnorm/add_1",
            "AddV2",
            &["cond/batchnorm/mul_1", "cond/batchnorm/sub"],
            vec![],
        ),
    ]);
    let meta = MetaGraphDef {
        graph_def: Some(GraphDef {
            node: nodes,
            ..Default::default()
        }),
        ..Default::default()
    };
    // No known layer: every variable is the layer's to find.
    let g = scan(&meta, "m.meta", Path::new("m.meta"), &VarIndex::default()).unwrap();
    assert_eq!(g.unknown.len(), 1, "{:?}", g.unknown);
    let u = &g.unknown[0];
    assert!(!u.fused);
    let key = |r: BnRole| u.roles.get(&r).map(String::as_str);
    assert_eq!(key(BnRole::Gamma), Some("bn/scale"));
    assert_eq!(key(BnRole::Beta), Some("bn/offset"));
    assert_eq!(key(BnRole::MovingMean), Some("bn/pop_mean"));
    assert_eq!(key(BnRole::MovingVariance), Some("bn/pop_var"));
}
