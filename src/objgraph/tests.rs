//! Unit tests of the object-graph mapping.

use super::*;
use crate::proto::trackable::trackable_object::{
    ObjectReference, SerializedTensor, SlotVariableReference,
};
use crate::proto::trackable::TrackableObject;
use prost::Message;

/// A node with `children` (name, id) and, when `key` is given, one
/// VARIABLE_VALUE attribute.
fn node(children: &[(&str, i32)], var: Option<(&str, &str)>) -> TrackableObject {
    TrackableObject {
        children: children
            .iter()
            .map(|&(n, id)| ObjectReference {
                node_id: id,
                local_name: n.to_string(),
            })
            .collect(),
        attributes: var
            .map(|(full_name, key)| SerializedTensor {
                name: VARIABLE_VALUE.to_string(),
                full_name: full_name.to_string(),
                checkpoint_key: key.to_string(),
            })
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

/// Encodes the graph and decodes it back through the public API.
fn graph(nodes: Vec<TrackableObject>) -> Result<ObjectGraph> {
    let bytes = TrackableObjectGraph { nodes }.encode_to_vec();
    ObjectGraph::decode(&bytes, Path::new("test.index"))
}

fn paths_of(g: &ObjectGraph, node: usize) -> Vec<&str> {
    g.paths(node).iter().map(String::as_str).collect()
}

#[test]
fn escaping_matches_tf() {
    assert_eq!(escape_local_name("x/y"), "x.Sy");
    assert_eq!(escape_local_name("a.b"), "a..b");
    assert_eq!(escape_local_name("a./"), "a...S");
    assert_eq!(escape_local_name("./."), "...S..");
    for name in ["x/y", "a.b", "a./", "./.", "plain", ""] {
        assert_eq!(
            unescape_local_name(&escape_local_name(name)).as_deref(),
            Some(name)
        );
    }
    assert_eq!(unescape_local_name("a.x"), None);
    assert_eq!(unescape_local_name("a."), None);
}

#[test]
fn paths_are_escaped_like_keys() {
    let g = graph(vec![
        node(&[("m", 1)], None),
        node(&[("d", 2)], None),
        node(&[("x/y", 3), ("a.b", 4)], None),
        node(&[], Some(("x", "m/d/x.Sy/.ATTRIBUTES/VARIABLE_VALUE"))),
        node(&[], Some(("ab", "m/d/a..b/.ATTRIBUTES/VARIABLE_VALUE"))),
    ])
    .unwrap();
    let vars = g.variables();
    assert_eq!(vars.len(), 2);
    for v in &vars {
        assert_eq!(v.attribute, VARIABLE_VALUE);
        assert_eq!(
            v.checkpoint_key,
            format!("{}/.ATTRIBUTES/VARIABLE_VALUE", v.paths[0])
        );
    }
    assert_eq!(vars[0].paths, ["m/d/x.Sy"]);
    assert_eq!(vars[0].full_name, "x");
    assert_eq!(vars[1].paths, ["m/d/a..b"]);
    // Children keep the raw names.
    assert_eq!(g.children(2)[0], (3, "x/y".to_string()));
    assert!(g.children(99).is_empty());
}

/// Keras 3 Functional + Adam: the optimizer's path is shorter, so the
/// key is under `optimizer/_trainable_variables/N`, but the model path
/// is kept as the second path.
#[test]
fn shortest_path_first_then_longer_model_path() {
    let g = graph(vec![
        node(&[("model", 1), ("optimizer", 2)], None),
        node(&[("_operations", 3)], None),
        node(&[("_trainable_variables", 7)], None),
        node(&[("0", 4), ("1", 5)], None),
        node(&[], None),
        node(&[("gamma", 6)], None),
        node(
            &[],
            Some((
                "bn/gamma",
                "optimizer/_trainable_variables/0/.ATTRIBUTES/VARIABLE_VALUE",
            )),
        ),
        node(&[("0", 6)], None),
    ])
    .unwrap();
    assert_eq!(
        paths_of(&g, 6),
        [
            "optimizer/_trainable_variables/0",
            "model/_operations/1/gamma"
        ]
    );
    // Nodes without attributes get no paths.
    assert!(g.paths(5).is_empty());
}

/// tf_keras `layer-N` aliases next to `layer_with_weights-N`, and the
/// children-in-order tie break at equal depth.
#[test]
fn aliases_in_breadth_first_order() {
    let g = graph(vec![
        node(&[("layer_with_weights-0", 1), ("layer-0", 1)], None),
        node(&[("gamma", 2)], None),
        node(&[], Some(("batch_normalization/gamma", "k"))),
    ])
    .unwrap();
    assert_eq!(
        paths_of(&g, 2),
        ["layer_with_weights-0/gamma", "layer-0/gamma"]
    );

    let g = graph(vec![
        node(&[("b", 1), ("a", 2)], None),
        node(&[("v", 3)], None),
        node(&[("v", 3)], None),
        node(&[], Some(("v", "b/v/.ATTRIBUTES/VARIABLE_VALUE"))),
    ])
    .unwrap();
    assert_eq!(paths_of(&g, 3), ["b/v", "a/v"]);
}

#[test]
fn at_most_eight_paths() {
    let edges: Vec<(String, i32)> = (0..12).map(|i| (format!("alias{i}"), 1)).collect();
    let edges: Vec<(&str, i32)> = edges.iter().map(|(n, i)| (n.as_str(), *i)).collect();
    let g = graph(vec![node(&edges, None), node(&[], Some(("v", "k")))]).unwrap();
    let p = paths_of(&g, 1);
    assert_eq!(p.len(), MAX_PATHS_PER_NODE);
    assert_eq!(p[0], "alias0");
    assert_eq!(p[7], "alias7");
}

/// 40 stacked diamonds have 2^40 paths to the bottom; the walk keeps 8.
#[test]
fn exponential_path_count_is_bounded() {
    let mut nodes = Vec::new();
    let levels = 40;
    for l in 0..levels {
        let top = 3 * l;
        nodes.push(node(&[("l", top + 1), ("r", top + 2)], None));
        nodes.push(node(&[("d", top + 3)], Some(("l", "kl"))));
        nodes.push(node(&[("d", top + 3)], Some(("r", "kr"))));
    }
    nodes.push(node(&[], Some(("bottom", "kb"))));
    let g = graph(nodes).unwrap();
    let bottom = 3 * levels as usize;
    let p = paths_of(&g, bottom);
    assert_eq!(p.len(), MAX_PATHS_PER_NODE);
    assert!(p[0].starts_with("l/d/l/d/"));
    assert_eq!(p[0].split('/').count(), 2 * levels as usize);
}

#[test]
fn cycles_terminate_and_paths_stay_simple() {
    // 2 points back to the root, to 1 and to itself.
    let g = graph(vec![
        node(&[("a", 1)], None),
        node(&[("b", 2)], None),
        node(
            &[("back", 0), ("loop", 1), ("self", 2)],
            Some(("v", "a/b/k")),
        ),
    ])
    .unwrap();
    assert_eq!(paths_of(&g, 2), ["a/b"]);

    // 1 and 2 reach each other: aliases exist, but never through a node
    // twice (no `c/a2/b`).
    let g = graph(vec![
        node(&[("a", 1), ("c", 2)], None),
        node(&[("b", 2)], Some(("one", "k1"))),
        node(&[("a2", 1)], Some(("two", "k2"))),
    ])
    .unwrap();
    assert_eq!(paths_of(&g, 1), ["a", "c/a2"]);
    assert_eq!(paths_of(&g, 2), ["c", "a/b"]);
}

#[test]
fn unreachable_variable_has_no_path() {
    let g = graph(vec![node(&[], None), node(&[], Some(("v", "orphan")))]).unwrap();
    let vars = g.variables();
    assert_eq!(vars[0].checkpoint_key, "orphan");
    assert!(vars[0].paths.is_empty());
}

#[test]
fn legacy_slots_get_synthesized_paths() {
    let mut opt = node(&[("iter", 5)], None);
    opt.slot_variables.push(SlotVariableReference {
        original_variable_node_id: 3,
        slot_name: "m".to_string(),
        slot_variable_node_id: 4,
    });
    let g = graph(vec![
        node(&[("net", 1), ("opt", 2)], None),
        node(&[("w.1", 3)], None),
        opt,
        node(&[], Some(("w", "net/w..1/.ATTRIBUTES/VARIABLE_VALUE"))),
        node(
            &[],
            Some((
                "w/Adam",
                "net/w..1/.OPTIMIZER_SLOT/opt/m/.ATTRIBUTES/VARIABLE_VALUE",
            )),
        ),
        node(&[], Some(("iter", "opt/iter/.ATTRIBUTES/VARIABLE_VALUE"))),
    ])
    .unwrap();
    let vars = g.variables();
    let slot = vars.iter().find(|v| v.node_id == 4).unwrap();
    assert_eq!(slot.paths, ["net/w..1/.OPTIMIZER_SLOT/opt/m"]);
    assert_eq!(
        slot.checkpoint_key,
        format!("{}/.ATTRIBUTES/VARIABLE_VALUE", slot.paths[0])
    );
    assert_eq!(
        slot.slot,
        Some(SlotRef {
            optimizer_node_id: 2,
            original_node_id: 3,
            slot_name: "m".to_string()
        })
    );
    assert!(vars
        .iter()
        .filter(|v| v.node_id != 4)
        .all(|v| v.slot.is_none()));
}

#[test]
fn several_attributes_give_several_entries() {
    let mut n = node(&[], None);
    for name in ["VARIABLE_VALUE", "OBJECT_CONFIG_JSON"] {
        n.attributes.push(SerializedTensor {
            name: name.to_string(),
            full_name: "x".to_string(),
            checkpoint_key: format!("x/.ATTRIBUTES/{name}"),
        });
    }
    let g = graph(vec![node(&[("x", 1)], None), n]).unwrap();
    let vars = g.variables();
    assert_eq!(vars.len(), 2);
    assert_eq!(vars[1].attribute, "OBJECT_CONFIG_JSON");
    assert_eq!(vars[1].paths, ["x"]);
}

#[test]
fn out_of_range_child_is_rejected() {
    for bad in [2, -1, i32::MAX] {
        let err = graph(vec![node(&[("a", 1)], None), node(&[("b", bad)], None)]).unwrap_err();
        match err {
            Error::ObjectGraphInvalid { what, .. } => {
                assert!(what.contains("node 1"), "{what}");
                assert!(what.contains(&bad.to_string()), "{what}");
            }
            e => panic!("wrong error {e:?}"),
        }
    }
}

#[test]
fn out_of_range_slot_is_rejected() {
    let mut opt = node(&[], None);
    opt.slot_variables.push(SlotVariableReference {
        original_variable_node_id: 0,
        slot_name: "m".to_string(),
        slot_variable_node_id: 7,
    });
    let err = graph(vec![node(&[("opt", 1)], None), opt]).unwrap_err();
    assert!(
        matches!(&err, Error::ObjectGraphInvalid { what, .. } if what.contains("slot") && what.contains('7')),
        "{err}"
    );
}

#[test]
fn garbage_is_a_decode_error() {
    let err = ObjectGraph::decode(&[0x0a, 0xff, 0xff, 0x01], Path::new("x.index")).unwrap_err();
    match err {
        Error::ProtoDecode { message, path, .. } => {
            assert_eq!(message, "TrackableObjectGraph");
            assert_eq!(path, Path::new("x.index"));
        }
        e => panic!("wrong error {e:?}"),
    }
}

#[test]
fn empty_graph_is_fine() {
    let g = ObjectGraph::decode(&[], Path::new("x")).unwrap();
    assert_eq!(g.node_count(), 0);
    assert!(g.variables().is_empty());
}

#[test]
fn overlong_shortest_path_is_rejected() {
    let long = "n".repeat(MAX_PATH_BYTES + 1);
    let err = graph(vec![node(&[(&long, 1)], None), node(&[], Some(("v", "k")))]).unwrap_err();
    assert!(matches!(err, Error::ObjectGraphInvalid { .. }), "{err}");
}
