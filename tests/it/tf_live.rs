//! Tests that need a live TensorFlow (loaded at run time through the
//! `tensorflow` crate): TF's reader against the corpus, and tfbn's TF-side
//! batch-norm graphs against the goldens TF's Python APIs wrote.
//!
//! Without TensorFlow these tests print that they were skipped and why, and
//! return. With `TFBN_REQUIRE_TF=1` (set by `scripts/test.sh`) a missing
//! TensorFlow fails them instead.

use std::path::Path;

use tfbn::parity::{compare, ChannelLayout};
use tfbn::source::Source;
use tfbn::testing::npy::{read_npy, NpyArray};
use tfbn::testing::prepare::{prepare_layer, Overrides};
use tfbn::tf::bn::TfBatchNorm;
use tfbn::tf::{Backend, LoadOptions, TfRuntime};
use tfbn::{FloatArray, FloatDType};

use crate::common::{fixtures, root};

/// TensorFlow for this test process (Eigen backend), or `None` after
/// printing why the calling test is skipped. Panics instead when
/// `TFBN_REQUIRE_TF=1`.
pub fn live_tf(test: &str) -> Option<&'static TfRuntime> {
    match tfbn::tf::load(&LoadOptions {
        tf_lib: None,
        backend: Some(Backend::Eigen),
    }) {
        Ok(rt) => Some(rt),
        Err(e) => {
            if std::env::var("TFBN_REQUIRE_TF").is_ok_and(|v| v == "1") {
                panic!("{test}: TFBN_REQUIRE_TF=1 but TensorFlow cannot be loaded: {e}");
            }
            eprintln!(
                "SKIPPED {test}: no TensorFlow ({e}); run scripts/setup-tensorflow.sh, \
                 or set TFBN_REQUIRE_TF=1 to make this a failure"
            );
            None
        }
    }
}

#[test]
fn tf_reader_returns_the_bytes_tensorflow_python_returned() {
    let Some(rt) = live_tf("tf_reader_returns_the_bytes_tensorflow_python_returned") else {
        return;
    };
    let mut checked = 0;
    for fx in fixtures() {
        let source = Source::open(fx.open_path()).unwrap();
        if !fx.tf_readable() {
            let e = tfbn::tf::read::read_source(rt, &source).unwrap_err();
            assert!(
                e.to_string().contains("TensorFlow has no reader"),
                "{}: {e}",
                fx.name
            );
            continue;
        }
        let got = tfbn::tf::read::read_source(rt, &source)
            .unwrap_or_else(|e| panic!("{}: TF read failed: {e}", fx.name));
        let by_key: std::collections::HashMap<&str, &tfbn::Tensor> =
            got.iter().map(|(k, t)| (k.as_str(), t)).collect();
        for var in fx.variables() {
            let key = var["key"].as_str().unwrap();
            let t = by_key
                .get(key)
                .unwrap_or_else(|| panic!("{}: {key} not read through TF", fx.name));
            fx.assert_tensor(var, t);
            checked += 1;
        }
        // And the comparison `inspect --reader both` makes.
        let c = tfbn::tf::read::compare_readers(rt, &source).unwrap();
        assert!(c.mismatches.is_empty(), "{}: {:?}", fx.name, c.mismatches);
        assert_eq!(c.compared, fx.variables().len(), "{}", fx.name);
    }
    assert!(
        checked > 100 || crate::common::narrowed(),
        "only {checked} variables checked"
    );
}

#[test]
fn inspect_reader_both_agrees_on_every_fixture() {
    if live_tf("inspect_reader_both_agrees_on_every_fixture").is_none() {
        return;
    }
    for fx in fixtures() {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_tfbn"))
            .args(["inspect", "--reader", "both", "--json"])
            .arg(fx.open_path())
            .output()
            .unwrap();
        if !fx.tf_readable() {
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(2), "{}: {err}", fx.name);
            assert!(
                err.contains("TensorFlow has no reader"),
                "{}: {err}",
                fx.name
            );
            continue;
        }
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}: {}",
            fx.name,
            String::from_utf8_lossy(&o.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["reader"]["mode"], "both", "{}", fx.name);
        assert_eq!(
            v["reader"]["read"].as_u64().unwrap() as usize,
            fx.variables().len(),
            "{}",
            fx.name
        );
        assert_eq!(
            v["reader"]["mismatches"],
            serde_json::json!([]),
            "{}",
            fx.name
        );
    }
}

fn f32s(path: &Path) -> (Vec<usize>, Vec<f32>) {
    match read_npy(path).unwrap_or_else(|e| panic!("{e}")) {
        NpyArray::F32(a) => (a.shape().to_vec(), a.iter().copied().collect()),
        other => panic!("{}: not float32 ({})", path.display(), other.descr()),
    }
}

thread_local! {
    /// The CPU vendor of the goldens being compared, when it is not this
    /// host's (set by [`golden_vendor_here`]).
    static CROSS_VENDOR: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Reads the vendor of the goldens described by `env_json` and sets the
/// comparison mode of [`assert_bitwise`] for them: bit for bit on the same
/// CPU vendor; on another, within
/// [`crate::common::CROSS_VENDOR_ULP_OF_MAX`] (TF's own `rsqrt` estimate
/// differs between vendors), said on stderr.
fn golden_vendor_here(env_json: &Path) {
    let env: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env_json).unwrap()).unwrap();
    let vendor = env["cpu_vendor"].as_str().map(str::to_string);
    let cross =
        (!crate::common::same_vendor(vendor.as_deref())).then(|| vendor.unwrap_or_default());
    CROSS_VENDOR.with(|c| *c.borrow_mut() = cross);
}

fn assert_bitwise(what: &str, want: &[f32], got: &[f32], layout: ChannelLayout) {
    let c = compare(want, got, layout).unwrap();
    if let Some(vendor) = CROSS_VENDOR.with(|c| c.borrow().clone()) {
        eprintln!(
            "CROSS-VENDOR {what}: golden from {vendor}: {}/{} bitwise equal, {} ULP of max",
            c.bitwise_equal, c.n, c.max_ulp_of_max
        );
        assert!(
            c.max_ulp_of_max as f64 <= crate::common::CROSS_VENDOR_ULP_OF_MAX,
            "{what}: {} ULP of max from TF's golden written on {vendor}",
            c.max_ulp_of_max
        );
        return;
    }
    assert_eq!(
        c.bitwise_equal, c.n,
        "{what}: {}/{} bitwise equal, max {} ULP, worst index {:?} (TF golden {:?}, tfbn's TF graph {:?})",
        c.bitwise_equal, c.n, c.max_ulp, c.worst_index, c.worst_expected, c.worst_actual
    );
}

/// tfbn's TF-side graphs (the ops each API's Python code calls) give what the
/// API itself gave when the corpus was written: every layer golden, both
/// modes, bit for bit (Eigen).
#[test]
fn tf_side_graphs_reproduce_each_apis_goldens() {
    let Some(rt) = live_tf("tf_side_graphs_reproduce_each_apis_goldens") else {
        return;
    };
    let mut checked = 0;
    for fx in fixtures() {
        let source = Source::open(fx.open_path()).unwrap();
        let layers = tfbn::testing::find::discover(&source);
        let recovered = tfbn::testing::hyper::recover(&source, &layers).unwrap();
        for l in fx.layers() {
            let name = l["name"].as_str().unwrap();
            let golden = fx.dir.join(l["golden"].as_str().unwrap());
            // Mixed-precision layers (float16 inputs) are checked through
            // `apply` (tests/it/keras.rs); this graph harness feeds float32.
            if l["input_dtype"].as_str().is_some_and(|d| d != "float32") {
                continue;
            }
            golden_vendor_here(&golden.join("eigen/env.json"));
            // Match by name, else by the moving mean's key (or an alias).
            let mm = &l["variables"]["moving_mean"];
            let mut keys: Vec<&str> = vec![mm["key"].as_str().unwrap()];
            if let Some(a) = mm["aliases"].as_array() {
                keys.extend(a.iter().filter_map(|k| k.as_str()));
            }
            let layer = tfbn::testing::layers::find(&layers, name)
                .or_else(|| {
                    layers.iter().find(|d| {
                        d.var(tfbn::testing::layers::BnRole::MovingMean)
                            .is_some_and(|v| keys.contains(&v.key.as_str()))
                    })
                })
                .unwrap_or_else(|| panic!("{}: layer {name} not found", fx.name));
            let h = &l["hyper"];
            let hyper = tfbn::testing::hyper::LayerHyper::defaults(layer);
            let mut declared = tfbn::declared::Declared::default();
            for (what, value) in [
                ("epsilon", h["epsilon"].to_string()),
                ("momentum", h["momentum"].to_string()),
                ("axis", h["axis"][0].to_string()),
            ] {
                // (a hand-written layer in a frozen graph has no momentum)
                if value == "null" {
                    continue;
                }
                declared.push(tfbn::declared::Declaration::parse_flag(what, &value).unwrap());
            }
            let overrides = Overrides {
                declared,
                api: l["api"].as_str().unwrap().parse::<tfbn::bn::BnApi>().ok(),
            };
            let mut p = prepare_layer(&source, layer, &hyper, &overrides).unwrap();
            p.config.fused = h["fused"].as_bool();
            // Whether Grappler rewrites the op is a fact of the graph
            // (frozen graphs), not of the layer's arguments.
            let i = layers.iter().position(|d| std::ptr::eq(d, layer)).unwrap();
            p.config.inference_rewritten = recovered[i].inference_rewritten.value;
            p.config.virtual_batch_size = h["virtual_batch_size"].as_u64().map(|v| v as usize);
            p.config.nn_update = match h["nn_update"].as_str() {
                Some("interpolate") => Some(tfbn::bn::MovingUpdate::Interpolate),
                Some("assign_sub") => Some(tfbn::bn::MovingUpdate::AssignSub),
                _ => None,
            };
            if let (Some(rn), Some(clip)) = (p.config.renorm.as_mut(), h.get("renorm_clipping")) {
                rn.rmax = clip["rmax"].as_f64();
                rn.rmin = clip["rmin"].as_f64();
                rn.dmax = clip["dmax"].as_f64();
                rn.renorm_momentum = h["renorm_momentum"].as_f64().unwrap();
            }
            let (shape, x) = f32s(&golden.join("input.npy"));
            let axis = h["axis"][0].as_u64().unwrap() as usize;
            let ylayout = ChannelLayout::of(&shape, axis);
            let c = shape[axis];
            let v = ChannelLayout::last(c);
            let what = |s: &str| format!("{}/{name} {s}", fx.name);

            let g = TfBatchNorm::new(rt, &p.config, &shape, false, &p.params).unwrap();
            let out = g.run(&x, &p.params).unwrap();
            assert_bitwise(
                &what("inference y"),
                &f32s(&golden.join("eigen/inference_y.npy")).1,
                &out.y,
                ylayout,
            );

            let e = |f: &str| golden.join("eigen").join(f);
            // Frozen graphs hold inference only.
            if !e("training_y.npy").is_file() && fx.manifest["format"] == "frozen_graphdef" {
                checked += 1;
                continue;
            }
            let g = TfBatchNorm::new(rt, &p.config, &shape, true, &p.params).unwrap();
            let out = g.run(&x, &p.params).unwrap();
            assert_bitwise(
                &what("training y"),
                &f32s(&e("training_y.npy")).1,
                &out.y,
                ylayout,
            );
            assert_bitwise(
                &what("moving_mean"),
                &f32s(&e("training_moving_mean.npy")).1,
                out.moving_mean.as_ref().unwrap(),
                v,
            );
            assert_bitwise(
                &what("moving_variance"),
                &f32s(&e("training_moving_variance.npy")).1,
                out.moving_variance.as_ref().unwrap(),
                v,
            );
            if e("training_batch_mean.npy").is_file() {
                assert_bitwise(
                    &what("batch_mean"),
                    &f32s(&e("training_batch_mean.npy")).1,
                    out.batch_mean.as_ref().unwrap(),
                    v,
                );
                assert_bitwise(
                    &what("batch_variance"),
                    &f32s(&e("training_batch_variance.npy")).1,
                    out.batch_variance.as_ref().unwrap(),
                    v,
                );
            }
            if e("training_moving_stddev.npy").is_file() {
                let r = out.renorm.as_ref().unwrap();
                assert_bitwise(
                    &what("moving_stddev"),
                    &f32s(&e("training_moving_stddev.npy")).1,
                    &r.moving_stddev,
                    v,
                );
                assert_bitwise(
                    &what("renorm_mean"),
                    &f32s(&e("training_renorm_mean.npy")).1,
                    &r.renorm_mean,
                    v,
                );
                assert_bitwise(
                    &what("renorm_stddev"),
                    &f32s(&e("training_renorm_stddev.npy")).1,
                    &r.renorm_stddev,
                    v,
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 20 || crate::common::narrowed(),
        "only {checked} layers checked"
    );
}

/// The raw-op goldens of `testdata/ops` (float32 cases): FusedBatchNormV3
/// through the `fused` API and moments + batch_normalization through `nn`.
#[test]
fn tf_side_graphs_reproduce_the_raw_op_goldens() {
    let Some(rt) = live_tf("tf_side_graphs_reproduce_the_raw_op_goldens") else {
        return;
    };
    let dir = root().join("testdata/ops");
    golden_vendor_here(&dir.join("goldens/eigen/env.json"));
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected/manifest.json")).unwrap())
            .unwrap();
    let mut checked = 0;
    for case in m["cases"].as_array().unwrap() {
        if case["T"] != "float32" {
            continue;
        }
        let id = case["id"].as_str().unwrap();
        let input = |n: &str| f32s(&dir.join(case["inputs"][n]["file"].as_str().unwrap())).1;
        let output = |n: &str| {
            f32s(
                &dir.join("goldens/eigen")
                    .join(case["outputs"][n]["file"].as_str().unwrap()),
            )
            .1
        };
        let fused = case["op"] == "FusedBatchNormV3";
        let training = if fused {
            case["is_training"].as_bool().unwrap()
        } else {
            !case["inference"].as_bool().unwrap()
        };
        let has_stats = fused || !training;
        let c = case["channels"].as_u64().unwrap() as usize;
        let params = tfbn::bn::BnParams {
            gamma: Some(input("scale")),
            beta: Some(input("offset")),
            moving_mean: if has_stats {
                input("mean")
            } else {
                vec![0.0; c]
            },
            moving_variance: if has_stats {
                input("variance")
            } else {
                vec![1.0; c]
            },
            renorm: None,
        };
        let cfg = tfbn::bn::BnConfig {
            api: if fused {
                tfbn::bn::BnApi::Fused
            } else {
                tfbn::bn::BnApi::Nn
            },
            epsilon: case["epsilon"].as_f64().unwrap(),
            // exponential_avg_factor = 1 − momentum.
            momentum: 1.0 - case["exponential_avg_factor"].as_f64().unwrap_or(1.0),
            axis: case["channel_axis"].as_i64().unwrap() as isize,
            ..Default::default()
        };
        let shape: Vec<usize> = case["x_shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let g = TfBatchNorm::new(rt, &cfg, &shape, training, &params).unwrap();
        let out = g.run(&input("x"), &params).unwrap();
        let layout = ChannelLayout::of(&shape, cfg.axis as usize);
        assert_bitwise(&format!("{id} y"), &output("y"), &out.y, layout);
        if training {
            let (bm, bv) = if fused {
                ("batch_mean", "batch_variance")
            } else {
                ("mean", "variance")
            };
            let v = ChannelLayout::last(c);
            assert_bitwise(
                &format!("{id} {bm}"),
                &output(bm),
                out.batch_mean.as_ref().unwrap(),
                v,
            );
            assert_bitwise(
                &format!("{id} {bv}"),
                &output(bv),
                out.batch_variance.as_ref().unwrap(),
                v,
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 10 || crate::common::narrowed(),
        "only {checked} cases checked"
    );
}

/// A 16-bit `.npy` of `testdata/ops_nn_half` (`float16` as `<f2`,
/// `bfloat16` as `<u2` bit patterns) as a [`FloatArray`].
fn half_vec(path: &Path, dtype: &str) -> (Vec<usize>, FloatArray) {
    let a = read_npy(path).unwrap_or_else(|e| panic!("{e}"));
    let shape = a.shape().to_vec();
    let v = match (dtype, a) {
        ("float16", NpyArray::F16(a)) => FloatArray::F16(a),
        ("bfloat16", a) => FloatArray::BF16(a.into_bf16().unwrap()),
        (d, a) => panic!("{}: {d} stored as {}", path.display(), a.descr()),
    };
    (shape, v)
}

/// Bit patterns of a 16-bit vector, or of a `float32` one narrowed exactly
/// to `like`'s type (the graph's batch moments are widened 16-bit values).
fn half_bits(v: &FloatArray, like: FloatDType) -> Vec<u16> {
    match (v, like) {
        (FloatArray::F16(v), _) => v.iter().map(|x| x.to_bits()).collect(),
        (FloatArray::BF16(v), _) => v.iter().map(|x| x.to_bits()).collect(),
        (FloatArray::F32(v), FloatDType::F16) => v
            .iter()
            .map(|&x| {
                let h = half::f16::from_f32(x);
                assert!(
                    h.to_f32().to_bits() == x.to_bits() || x.is_nan(),
                    "{x} is not a float16"
                );
                if x.is_nan() {
                    // Widening keeps the payload: narrow by the bits.
                    let b = x.to_bits();
                    (((b >> 16) & 0x8000) | 0x7C00 | ((b >> 13) & 0x3FF)) as u16
                } else {
                    h.to_bits()
                }
            })
            .collect(),
        (FloatArray::F32(v), FloatDType::BF16) => v
            .iter()
            .map(|&x| {
                assert_eq!(x.to_bits() & 0xFFFF, 0, "{x} is not a bfloat16");
                (x.to_bits() >> 16) as u16
            })
            .collect(),
        (v, d) => panic!("{:?} output for {d}", v.dtype()),
    }
}

/// Asserts two bit-pattern vectors are equal, naming the first difference.
fn assert_same_bits(what: &str, got: &[u16], want: &[u16]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let diff = got.iter().zip(want).filter(|(a, b)| a != b).count();
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!(
            "{what}: {diff}/{} differ; first at {i}: tfbn's TF graph {:#06x}, TF golden {:#06x}",
            got.len(),
            got[i],
            want[i]
        );
    }
}

/// The 16-bit `nn` goldens of `testdata/ops_nn_half`: tfbn's TF graph for
/// `nn` on `float16` / `bfloat16` (moments with TF's float16 upcast,
/// batch_normalization in 16 bits, the parameters cast to the input's
/// type) gives what `tf.nn.moments` + `tf.nn.batch_normalization` gave in
/// Python, bit for bit, special values and empty batches included.
#[test]
fn tf_side_nn_graph_reproduces_the_16_bit_goldens() {
    let Some(rt) = live_tf("tf_side_nn_graph_reproduces_the_16_bit_goldens") else {
        return;
    };
    let dir = root().join("testdata/ops_nn_half");
    let env_json = dir.join("goldens/eigen/env.json");
    let env: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&env_json).unwrap()).unwrap();
    golden_vendor_here(&env_json);
    if env["threads"].as_u64() != Some(rt.host.threads as u64) {
        // Full reductions (the one-channel cases) depend on the thread count.
        eprintln!(
            "SKIPPED tf_side_nn_graph_reproduces_the_16_bit_goldens: goldens from another \
             thread count ({} threads here)",
            rt.host.threads
        );
        return;
    }
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected/manifest.json")).unwrap())
            .unwrap();
    let mut checked = std::collections::BTreeSet::new();
    for case in m["cases"].as_array().unwrap() {
        let id = case["id"].as_str().unwrap();
        let t = case["T"].as_str().unwrap();
        let dtype = t.parse::<FloatDType>().unwrap();
        let input = |n: &str| half_vec(&dir.join(case["inputs"][n]["file"].as_str().unwrap()), t);
        let golden = |n: &str| {
            let f = case["outputs"][n]["file"].as_str().unwrap();
            half_bits(&half_vec(&dir.join("goldens/eigen").join(f), t).1, dtype)
        };
        // The parameters were 16-bit tensors: widened to float32 (exact),
        // the graph casts them back.
        let param = |n: &str| input(n).1.to_f32_lossy();
        let training = !case["inference"].as_bool().unwrap();
        let c = case["channels"].as_u64().unwrap() as usize;
        let params = tfbn::bn::BnParams {
            gamma: Some(param("scale")),
            beta: Some(param("offset")),
            moving_mean: if training {
                vec![0.0; c]
            } else {
                param("mean")
            },
            moving_variance: if training {
                vec![1.0; c]
            } else {
                param("variance")
            },
            renorm: None,
        };
        let cfg = tfbn::bn::BnConfig {
            api: tfbn::bn::BnApi::Nn,
            epsilon: case["epsilon"].as_f64().unwrap(),
            axis: case["channel_axis"].as_i64().unwrap() as isize,
            ..Default::default()
        };
        let (shape, x) = input("x");
        let g = TfBatchNorm::new_typed(rt, &cfg, &shape, dtype, training, &params)
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        let out = g.run_typed(&g.feeds(&x, &params).unwrap()).unwrap();
        assert_eq!(out.y.dtype(), dtype, "{id}");
        assert_same_bits(&format!("{id} y"), &half_bits(&out.y, dtype), &golden("y"));
        if training {
            let names: Vec<&str> = out.stats.iter().map(|(n, _)| *n).collect();
            assert_eq!(names, ["batch_mean", "batch_variance"], "{id}");
            for (stat, file) in [("batch_mean", "mean"), ("batch_variance", "variance")] {
                let v = out.stat(stat).unwrap();
                assert_eq!(v.dtype(), FloatDType::F32, "{id} {stat}");
                assert_same_bits(&format!("{id} {stat}"), &half_bits(v, dtype), &golden(file));
            }
        } else {
            assert!(out.stats.is_empty(), "{id}");
        }
        checked.insert(id.to_string());
    }
    assert_eq!(checked.len(), 18, "{checked:?}");
}

/// A second load with another backend is refused: TF reads
/// `TF_ENABLE_ONEDNN_OPTS` once.
#[test]
fn one_process_runs_one_backend() {
    if live_tf("one_process_runs_one_backend").is_none() {
        return;
    }
    let e = tfbn::tf::load(&LoadOptions {
        tf_lib: None,
        backend: Some(Backend::OneDnn),
    })
    .unwrap_err();
    assert!(e.to_string().contains("separate process"), "{e}");
}

/// What TF itself accepts, which `dtype_not_applicable` and the graphs rely
/// on: `FusedBatchNormV3` refuses `float64` (its `T`), and runs `float16`
/// and `bfloat16` with `float32` statistics; the Keras 3 graph runs every
/// type.
#[test]
fn tf_accepts_the_types_verify_runs() {
    let Some(rt) = live_tf("tf_accepts_the_types_verify_runs") else {
        return;
    };
    let shape = [2, 3, 4, 5];
    let params = tfbn::bn::BnParams::initial(5, false);
    let cfg = |api| tfbn::bn::BnConfig {
        api,
        ..Default::default()
    };
    let e = TfBatchNorm::new_typed(
        rt,
        &cfg(tfbn::bn::BnApi::Fused),
        &shape,
        FloatDType::F64,
        true,
        &params,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("double") && e.contains("not in the list of allowed values"),
        "{e}"
    );
    let x: Vec<f64> = (0..120).map(|i| (i % 7) as f64 * 0.25).collect();
    for api in [tfbn::bn::BnApi::Fused, tfbn::bn::BnApi::Keras3] {
        for dtype in FloatDType::ALL {
            if api == tfbn::bn::BnApi::Fused && dtype == FloatDType::F64 {
                continue;
            }
            let g = TfBatchNorm::new_typed(rt, &cfg(api), &shape, dtype, true, &params)
                .unwrap_or_else(|e| panic!("{api} {dtype}: {e}"));
            let out = g
                .run_typed(&g.feeds(&FloatArray::from_f64(dtype, &x), &params).unwrap())
                .unwrap();
            assert_eq!(out.y.dtype(), dtype, "{api}");
            assert_eq!(out.y.len(), 120);
            let mm = out.stat("moving_mean").unwrap();
            assert_eq!(mm.dtype(), dtype.stats_dtype(), "{api} {dtype}");
        }
    }
}

/// Every test here and in `verify` that needs TensorFlow says so when it is
/// missing: without `TFBN_REQUIRE_TF` it passes, printing `SKIPPED <name>`;
/// with `TFBN_REQUIRE_TF=1` it fails, saying TF cannot be loaded. Checked by
/// running this test binary again with TF made unfindable.
#[test]
fn live_tests_skip_or_fail_loudly_without_tensorflow() {
    // Tests in these modules that need no TensorFlow.
    const NO_TF: [&str; 3] = [
        "verify::bad_input_exits_2",
        "verify::missing_tensorflow_exits_2_and_lists_what_was_tried",
        "tf_live::live_tests_skip_or_fail_loudly_without_tensorflow",
    ];
    let exe = std::env::current_exe().unwrap();
    let run = |require: bool| {
        let mut c = std::process::Command::new(&exe);
        c.args([
            "verify::",
            "tf_live::",
            "--skip",
            "live_tests_skip_or_fail_loudly",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("TFBN_TF_EXPLICIT_ONLY", "1")
        .env("TFBN_TF_LIB", "/nonexistent/tensorflow")
        .env_remove("TFBN_REQUIRE_TF");
        if require {
            c.env("TFBN_REQUIRE_TF", "1");
        }
        let o = c.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (o.status.success(), text)
    };
    let listed = std::process::Command::new(&exe)
        .args(["verify::", "tf_live::", "--list"])
        .output()
        .unwrap();
    let live: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .filter(|n| !NO_TF.contains(n))
        .map(str::to_string)
        .collect();
    assert!(live.len() >= 15 || crate::common::narrowed(), "{live:?}");

    let (ok, text) = run(false);
    assert!(
        ok,
        "without TFBN_REQUIRE_TF every test passes (skips):\n{text}"
    );
    for name in &live {
        let short = name.rsplit("::").next().unwrap();
        assert!(
            text.contains(&format!("SKIPPED {short}: no TensorFlow")),
            "{name} does not say it was skipped:\n{text}"
        );
    }

    let (ok, text) = run(true);
    assert!(!ok, "with TFBN_REQUIRE_TF=1 the live tests must fail");
    for name in &live {
        assert!(
            text.contains(&format!("test {name} ... FAILED")),
            "{name} did not fail with TFBN_REQUIRE_TF=1:\n{text}"
        );
        let short = name.rsplit("::").next().unwrap();
        assert!(
            text.contains(&format!(
                "{short}: TFBN_REQUIRE_TF=1 but TensorFlow cannot be loaded"
            )),
            "{name} failed without saying why:\n{text}"
        );
    }
}
