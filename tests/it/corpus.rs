//! Every fixture read natively equals what TensorFlow's own reader returned,
//! bit for bit, and layer discovery finds exactly the layers the generator
//! built.

use std::collections::BTreeSet;

use tfbn::source::{Source, VariableRole};
use tfbn::testing::find::discover;
use tfbn::testing::layers::BnRole;
use tfbn::TensorData;

use crate::common::fixtures;

#[test]
fn every_variable_equals_tensorflows_value_bit_for_bit() {
    let mut checked = 0usize;
    for fx in fixtures() {
        let source = Source::open(fx.open_path())
            .unwrap_or_else(|e| panic!("{}: open failed: {e}", fx.name));
        let ours: BTreeSet<&str> = source.variables().iter().map(|v| v.key.as_str()).collect();
        let theirs: BTreeSet<&str> = fx
            .listed_variables()
            .iter()
            .map(|v| v["key"].as_str().unwrap())
            .collect();
        assert_eq!(ours, theirs, "{}: key sets differ", fx.name);
        for var in fx.listed_variables() {
            let key = var["key"].as_str().unwrap();
            let t = source
                .read(key)
                .unwrap_or_else(|e| panic!("{}: {key}: {e}", fx.name));
            fx.assert_tensor(var, &t);
            // The borrowed fast path returns the same bytes.
            if let TensorData::Bytes(b) = &t.data {
                let raw = source.store().read_raw(key).unwrap();
                assert_eq!(raw.as_ref(), b.as_slice(), "{}: {key}: read_raw", fx.name);
            }
            checked += 1;
        }
    }
    assert!(
        checked > 100 || crate::common::narrowed(),
        "only {checked} variables checked"
    );
}

fn key_of(v: &serde_json::Value) -> Option<&str> {
    if v.is_null() {
        None
    } else {
        Some(v["key"].as_str().expect("layer variable key"))
    }
}

#[test]
fn discovery_finds_exactly_the_generators_layers() {
    let mut total = 0;
    for fx in fixtures() {
        let source = Source::open(fx.open_path()).unwrap();
        let found = discover(&source);
        let expected = fx.layers();
        assert_eq!(
            found.len(),
            expected.len(),
            "{}: found {:?}, expected {:?}",
            fx.name,
            found.iter().map(|l| &l.name).collect::<Vec<_>>(),
            expected.iter().map(|l| &l["name"]).collect::<Vec<_>>()
        );
        for want in expected {
            let vars = &want["variables"];
            let mean_key = key_of(&vars["moving_mean"]).unwrap();
            let layer = found
                .iter()
                .find(|l| l.var(BnRole::MovingMean).map(|v| v.key.as_str()) == Some(mean_key))
                .unwrap_or_else(|| panic!("{}: no layer owns {mean_key}", fx.name));
            assert_eq!(
                layer.channels,
                want["channels"].as_u64().unwrap(),
                "{}: {}",
                fx.name,
                layer.name
            );
            for role in BnRole::ALL {
                let want_key = vars.get(role.tf_name()).and_then(key_of);
                let got_key = layer.var(role).map(|v| v.key.as_str());
                assert_eq!(got_key, want_key, "{}: {}: {:?}", fx.name, layer.name, role);
            }
            total += 1;
        }
    }
    assert!(
        total >= 20 || crate::common::narrowed(),
        "only {total} layers checked"
    );
}

#[test]
fn optimizer_slots_and_ema_shadows_are_never_layers_and_are_reported() {
    for fx in fixtures() {
        let source = Source::open(fx.open_path()).unwrap();
        let non_layer = &fx.manifest["non_layer"];
        for (group, roles) in [
            (
                "optimizer",
                &[VariableRole::OptimizerSlot, VariableRole::OptimizerState][..],
            ),
            ("ema", &[VariableRole::EmaShadow][..]),
            ("bookkeeping", &[VariableRole::Bookkeeping][..]),
        ] {
            for key in non_layer[group].as_array().into_iter().flatten() {
                let key = key.as_str().unwrap();
                let v = source
                    .variable(key)
                    .unwrap_or_else(|| panic!("{}: {key} not listed", fx.name));
                assert!(
                    roles.contains(&v.role),
                    "{}: {key} is {:?}, expected one of {roles:?}",
                    fx.name,
                    v.role
                );
            }
        }
        let layer_keys: BTreeSet<String> = discover(&source)
            .iter()
            .flat_map(|l| l.variables.values().map(|v| v.key.clone()))
            .collect();
        for v in source.variables() {
            if v.role != VariableRole::Model {
                assert!(
                    !layer_keys.contains(&v.key),
                    "{}: {} in a layer",
                    fx.name,
                    v.key
                );
            }
        }
    }
}
