//! The native batch-norm layer against TensorFlow's own outputs.
//!
//! Goes over every layer of every fixture under `testdata/` (and every case
//! of the `ops` fixture), reads the layer's hyper-parameters from its
//! `expected/manifest.json` and its variables from `expected/variables.bin`
//! (not through the library's checkpoint reader), runs
//! `tfbn::bn::{inference, training}` on `input.npy` and compares:
//!
//! * with `eigen/` (TF_ENABLE_ONEDNN_OPTS=0): **bit for bit**, every element
//!   of every output. A golden written on a CPU of another vendor (its
//!   `env.json` `cpu_vendor` differs from [`host_cpu_vendor`]) cannot match
//!   bit for bit (`RSQRTPS` differs between vendors); such goldens are held
//!   to [`FOREIGN_VENDOR_BUDGET`] instead, and the test says so.
//! * with `onednn/` (TF_ENABLE_ONEDNN_OPTS=1): within [`ONEDNN_BUDGET`]
//!   ULPs. oneDNN uses other formulas (`O-JIT` with an FMA, `O-nspc`) and
//!   thread-split sums (docs/bn-arithmetic.md#onednn), so it is close, not equal.
//!   The measured worst case is printed.
//!
//! **ULP metric.** For an output element `a` against golden `b` the error is
//! `|a − b| / ulp(s)` where `s` is the largest `|golden|` of that channel
//! (for `y`) or of the whole vector (for per-channel statistics): the error
//! in units of the last place at the tensor's own scale. Plain ULP distance
//! blows up for values that cancel to nearly zero (a moving mean of 1e-4
//! updated from batch means of 0.1), where an absolute error of 1e-9 is
//! dozens of ULPs of the tiny value and says nothing about parity.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};
use serde_json::Value;
use tfbn::bn::{
    fused_batch_norm_v3, host_cpu_vendor, inference, training, BnApi, BnConfig, BnParams,
    MovingUpdate, RenormConfig, RenormState,
};
use tfbn::testing::npy::{read_npy, NpyArray};
use tfbn::FloatArray;

/// ULP budget (at the channel's scale, see the module docs) for oneDNN
/// goldens. TF's oneDNN batch norm normalizes with `(x − mean)·(1/√(var+eps))`
/// then an FMA, or `gamma/√(var+eps)` (docs/bn-arithmetic.md#onednn), and sums with
/// per-thread partials; against the Eigen arithmetic that gives a
/// few ULPs on y and on the statistics at the corpus's small batches.
const ONEDNN_BUDGET: f64 = 16.0;

/// ULP budget for Eigen goldens written on another CPU vendor: the packet
/// rsqrt differs by up to ~2 ulp between vendors
/// (docs/bn-arithmetic.md#rsqrt), which moves y by a
/// few ULPs at the channel's scale.
const FOREIGN_VENDOR_BUDGET: f64 = 16.0;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

/// An output tensor in the element type TF wrote it in.
#[derive(Debug, Clone)]
enum Out {
    F32(Vec<f32>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
}

impl Out {
    fn len(&self) -> usize {
        match self {
            Out::F32(v) => v.len(),
            Out::F16(v) => v.len(),
            Out::BF16(v) => v.len(),
        }
    }

    fn bits(&self, i: usize) -> u32 {
        match self {
            Out::F32(v) => v[i].to_bits(),
            Out::F16(v) => v[i].to_bits() as u32,
            Out::BF16(v) => v[i].to_bits() as u32,
        }
    }

    fn value(&self, i: usize) -> f64 {
        match self {
            Out::F32(v) => v[i] as f64,
            Out::F16(v) => v[i].to_f64(),
            Out::BF16(v) => v[i].to_f64(),
        }
    }

    /// The spacing of this type's floats at magnitude `s`.
    fn ulp_at(&self, s: f64) -> f64 {
        let s = s.abs();
        let (mant, min_exp) = match self {
            Out::F32(_) => (23, -126),
            Out::F16(_) => (10, -14),
            Out::BF16(_) => (7, -126),
        };
        let e = if s > 0.0 {
            s.log2().floor() as i32
        } else {
            min_exp
        };
        2f64.powi(e.max(min_exp) - mant)
    }

    fn from_input(y: FloatArray) -> Out {
        match y {
            FloatArray::F32(a) => Out::F32(a.iter().copied().collect()),
            FloatArray::F16(a) => Out::F16(a.iter().copied().collect()),
            FloatArray::BF16(a) => Out::BF16(a.iter().copied().collect()),
            FloatArray::F64(a) => Out::F32(a.iter().map(|&v| v as f32).collect()),
        }
    }
}

/// One native output to compare: its golden file name, the values, and the
/// channel of each element (`None` for per-channel statistics).
struct Produced {
    file: String,
    out: Out,
    channel_of: Option<(usize, usize)>, // (channels, elements per run): ch = (i / b) % c
}

fn read_golden(path: &Path, dtype: &str) -> Out {
    let arr = read_npy(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match (dtype, arr) {
        ("bfloat16", a @ NpyArray::U16(_)) => match a.into_bf16() {
            Ok(v) => Out::BF16(v.iter().copied().collect()),
            Err(e) => panic!("{}: {e}", path.display()),
        },
        (_, NpyArray::F32(a)) => Out::F32(a.iter().copied().collect()),
        (_, NpyArray::F16(a)) => Out::F16(a.iter().copied().collect()),
        (d, other) => panic!("{}: unexpected {} for {d}", path.display(), other.descr()),
    }
}

/// Result of comparing one output.
struct Verdict {
    equal: usize,
    total: usize,
    worst: f64,
    first_diff: Option<String>,
}

fn compare(p: &Produced, golden: &Out) -> Verdict {
    assert_eq!(p.out.len(), golden.len(), "{}: length", p.file);
    let n = golden.len();
    // Channel scales for y.
    let scales: Option<Vec<f64>> = p.channel_of.map(|(c, b)| {
        let mut s = vec![0.0f64; c.max(1)];
        for i in 0..n {
            let ch = (i / b) % c;
            let v = golden.value(i).abs();
            if v.is_finite() && v > s[ch] {
                s[ch] = v;
            }
        }
        s
    });
    let vector_scale = (0..n)
        .map(|i| golden.value(i).abs())
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let mut v = Verdict {
        equal: 0,
        total: n,
        worst: 0.0,
        first_diff: None,
    };
    for i in 0..n {
        let (a, b) = (p.out.value(i), golden.value(i));
        let same_bits = p.out.bits(i) == golden.bits(i) || (a.is_nan() && b.is_nan());
        if same_bits {
            v.equal += 1;
            continue;
        }
        let (ch, scale) = match (&scales, p.channel_of) {
            (Some(s), Some((c, bb))) => {
                let ch = (i / bb) % c;
                (ch, s[ch])
            }
            _ => (i, vector_scale),
        };
        let err = if a.is_nan() || b.is_nan() || a.is_infinite() || b.is_infinite() {
            f64::INFINITY
        } else {
            (a - b).abs() / golden.ulp_at(scale)
        };
        if err > v.worst {
            v.worst = err;
        }
        if v.first_diff.is_none() {
            v.first_diff = Some(format!(
                "element {i} (channel {ch}): native {a:e} ({:#x}), golden {b:e} ({:#x}), {err:.2} ulp",
                p.out.bits(i),
                golden.bits(i)
            ));
        }
    }
    v
}

// ---------------------------------------------------------------- layers

fn variable_bytes<'a>(manifest: &Value, blob: &'a [u8], key: &str) -> (&'a [u8], String) {
    let vars = manifest["variables"].as_array().expect("variables list");
    let entry = vars
        .iter()
        .find(|v| v["key"].as_str() == Some(key))
        .unwrap_or_else(|| panic!("variable key {key:?} not in the manifest"));
    let off = entry["offset"].as_u64().expect("offset") as usize;
    let len = entry["nbytes"].as_u64().expect("nbytes") as usize;
    let end = off.checked_add(len).expect("offset + nbytes overflows");
    assert!(
        end <= blob.len(),
        "{key}: bytes past the end of variables.bin"
    );
    (
        &blob[off..end],
        entry["dtype"].as_str().unwrap_or("").to_string(),
    )
}

fn decode_f32(bytes: &[u8], dtype: &str) -> Vec<f32> {
    match dtype {
        "float32" => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        "float16" => bytes
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        "bfloat16" => bytes
            .chunks_exact(2)
            .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => panic!("layer variable of type {other}"),
    }
}

fn layer_config(layer: &Value) -> BnConfig {
    let h = &layer["hyper"];
    let api = layer["api"]
        .as_str()
        .expect("api")
        .parse::<BnApi>()
        .expect("known api");
    let axis = h["axis"].as_array().expect("axis list");
    assert_eq!(axis.len(), 1, "multi-axis batch norm");
    BnConfig {
        epsilon: h["epsilon"].as_f64().expect("epsilon"),
        momentum: h["momentum"].as_f64().expect("momentum"),
        axis: axis[0].as_i64().expect("axis") as isize,
        center: h["center"].as_bool().expect("center"),
        scale: h["scale"].as_bool().expect("scale"),
        fused: h["fused"].as_bool(),
        renorm: h["renorm"].as_bool().unwrap_or(false).then(|| {
            // Written only where a generator records them (tfkeras_ghost).
            let clip = &h["renorm_clipping"];
            RenormConfig {
                rmax: clip["rmax"].as_f64(),
                rmin: clip["rmin"].as_f64(),
                dmax: clip["dmax"].as_f64(),
                renorm_momentum: h["renorm_momentum"]
                    .as_f64()
                    .unwrap_or(RenormConfig::default().renorm_momentum),
            }
        }),
        virtual_batch_size: h["virtual_batch_size"].as_u64().map(|v| v as usize),
        intra_op_threads: None,
        api,
        // Hand-written tf.nn layers record their moving-average update.
        nn_update: match h["nn_update"].as_str() {
            None => None,
            Some("interpolate") => Some(MovingUpdate::Interpolate),
            Some("assign_sub") => Some(MovingUpdate::AssignSub),
            Some(other) => panic!("unknown nn_update {other:?}"),
        },
        // A fact of a graph (frozen graphs), which this sweep skips.
        inference_rewritten: false,
    }
}

fn layer_params(manifest: &Value, blob: &[u8], layer: &Value) -> BnParams {
    let vars = &layer["variables"];
    let get = |role: &str| -> Option<Vec<f32>> {
        let v = &vars[role];
        let key = v["key"].as_str()?;
        let (bytes, dtype) = variable_bytes(manifest, blob, key);
        Some(decode_f32(bytes, &dtype))
    };
    let renorm = match (
        get("moving_stddev"),
        get("renorm_mean"),
        get("renorm_stddev"),
    ) {
        (Some(a), Some(b), Some(c)) => Some(RenormState {
            moving_stddev: a,
            renorm_mean: b,
            renorm_stddev: c,
        }),
        _ => None,
    };
    BnParams {
        gamma: get("gamma"),
        beta: get("beta"),
        moving_mean: get("moving_mean").expect("moving_mean"),
        moving_variance: get("moving_variance").expect("moving_variance"),
        renorm,
    }
}

fn run_layer(
    fixture_dir: &Path,
    manifest: &Value,
    blob: &[u8],
    layer: &Value,
) -> (Vec<Produced>, usize) {
    let cfg = layer_config(layer);
    let params = layer_params(manifest, blob, layer);
    let gdir = fixture_dir.join(layer["golden"].as_str().expect("golden"));
    let x = match read_npy(gdir.join("input.npy")) {
        Ok(NpyArray::F32(a)) => a,
        Ok(other) => panic!("input.npy is {}", other.descr()),
        Err(e) => panic!("{e}"),
    };
    let shape = x.shape().to_vec();
    let axis = cfg.resolved_axis(shape.len()).expect("axis");
    let c = shape[axis];
    let b: usize = shape[axis + 1..].iter().product();
    let input = FloatArray::F32(x);
    let inf = inference(&cfg, &params, &input).unwrap_or_else(|e| panic!("inference: {e}"));
    let tr = training(&cfg, &params, &input).unwrap_or_else(|e| panic!("training: {e}"));
    let stat = |file: &str, v: Vec<f32>| Produced {
        file: file.into(),
        out: Out::F32(v),
        channel_of: None,
    };
    let mut out = vec![
        Produced {
            file: "inference_y.npy".into(),
            out: Out::from_input(inf.y),
            channel_of: Some((c, b)),
        },
        Produced {
            file: "training_y.npy".into(),
            out: Out::from_input(tr.y),
            channel_of: Some((c, b)),
        },
        stat("training_moving_mean.npy", tr.moving_mean),
        stat("training_moving_variance.npy", tr.moving_variance),
    ];
    if let Some(m) = tr.batch_mean {
        out.push(stat("training_batch_mean.npy", m));
    }
    if let Some(v) = tr.batch_variance {
        out.push(stat("training_batch_variance.npy", v));
    }
    if let Some(r) = tr.renorm {
        out.push(stat("training_moving_stddev.npy", r.moving_stddev));
        out.push(stat("training_renorm_mean.npy", r.renorm_mean));
        out.push(stat("training_renorm_stddev.npy", r.renorm_stddev));
    }
    (out, c)
}

// ---------------------------------------------------------------- ops cases

fn read_input(fixture_dir: &Path, r: &Value) -> FloatArray {
    let path = fixture_dir.join(r["file"].as_str().expect("file"));
    let arr = read_npy(&path).unwrap_or_else(|e| panic!("{e}"));
    match (r["dtype"].as_str().unwrap_or(""), arr) {
        ("bfloat16", a) => FloatArray::BF16(a.into_bf16().unwrap_or_else(|e| panic!("{e}"))),
        (_, NpyArray::F32(a)) => FloatArray::F32(a),
        (_, NpyArray::F16(a)) => FloatArray::F16(a),
        (_, NpyArray::F64(a)) => FloatArray::F64(a),
        (d, other) => panic!("{}: {} for {d}", path.display(), other.descr()),
    }
}

fn vec_f32(x: &FloatArray) -> Vec<f32> {
    x.to_f64_vec().into_iter().map(|v| v as f32).collect()
}

/// Statistics (returned widened to `f32`) in the golden's element type. A
/// value that type cannot hold exactly stays `f32`, so its bits differ from
/// the golden's and the comparison fails.
fn stat_out(v: Vec<f32>, dtype: &str) -> Out {
    let exact16 = |to: fn(f32) -> f32| {
        v.iter()
            .all(|&x| x.is_nan() || to(x).to_bits() == x.to_bits())
    };
    match dtype {
        "float16" if exact16(|x| f16::from_f32(x).to_f32()) => {
            Out::F16(v.iter().map(|&x| f16::from_f32(x)).collect())
        }
        "bfloat16" if exact16(|x| bf16::from_f32(x).to_f32()) => {
            Out::BF16(v.iter().map(|&x| bf16::from_f32(x)).collect())
        }
        _ => Out::F32(v),
    }
}

fn run_case(fixture_dir: &Path, case: &Value) -> Vec<(Produced, String)> {
    let inputs = &case["inputs"];
    let x = read_input(fixture_dir, &inputs["x"]);
    let get = |n: &str| -> Option<Vec<f32>> {
        inputs
            .get(n)
            .filter(|v| !v.is_null())
            .map(|r| vec_f32(&read_input(fixture_dir, r)))
    };
    let axis = case["channel_axis"].as_u64().expect("channel_axis") as usize;
    let shape = x.shape().to_vec();
    let c = shape[axis];
    let b: usize = shape[axis + 1..].iter().product();
    let eps = case["epsilon"].as_f64().expect("epsilon");
    let outputs = &case["outputs"];
    let dtype_of = |n: &str| {
        outputs[n]["dtype"]
            .as_str()
            .unwrap_or("float32")
            .to_string()
    };
    let y_of = |y: FloatArray| {
        (
            Produced {
                file: "y".into(),
                out: Out::from_input(y),
                channel_of: Some((c, b)),
            },
            dtype_of("y"),
        )
    };
    let stat = |name: &str, v: Vec<f32>| {
        let dtype = dtype_of(name);
        (
            Produced {
                file: name.into(),
                out: stat_out(v, &dtype),
                channel_of: None,
            },
            dtype,
        )
    };
    match case["op"].as_str() {
        Some("FusedBatchNormV3") => {
            let training = case["is_training"].as_bool().expect("is_training");
            let factor = case["exponential_avg_factor"].as_f64().unwrap_or(1.0) as f32;
            let o = fused_batch_norm_v3(
                &x,
                &get("scale").expect("scale"),
                &get("offset").expect("offset"),
                &get("mean").expect("mean"),
                &get("variance").expect("variance"),
                eps as f32,
                factor,
                axis,
                training,
            )
            .unwrap_or_else(|e| panic!("{}: {e}", case["id"]));
            let mut v = vec![y_of(o.y)];
            if training {
                v.push(stat("batch_mean", o.batch_mean));
                v.push(stat("batch_variance", o.batch_variance));
                v.push(stat("reserve_space_1", o.reserve_space_1));
                v.push(stat("reserve_space_2", o.reserve_space_2));
            }
            v
        }
        Some("moments+batch_normalization") => {
            let cfg = BnConfig {
                api: BnApi::Nn,
                epsilon: eps,
                axis: axis as isize,
                ..Default::default()
            };
            let params = BnParams {
                gamma: get("scale"),
                beta: get("offset"),
                moving_mean: get("mean").unwrap_or_else(|| vec![0.0; c]),
                moving_variance: get("variance").unwrap_or_else(|| vec![1.0; c]),
                renorm: None,
            };
            if case["inference"].as_bool().unwrap_or(false) {
                let r = inference(&cfg, &params, &x).unwrap_or_else(|e| panic!("{e}"));
                vec![y_of(r.y)]
            } else {
                let r = training(&cfg, &params, &x).unwrap_or_else(|e| panic!("{e}"));
                vec![
                    y_of(r.y),
                    stat("mean", r.batch_mean.expect("mean")),
                    stat("variance", r.batch_variance.expect("variance")),
                ]
            }
        }
        other => panic!("unknown op {other:?}"),
    }
}

// ---------------------------------------------------------------- driver

#[derive(Default)]
struct Tally {
    units: usize,
    outputs: usize,
    outputs_equal: usize,
    elements: usize,
    elements_equal: usize,
    worst: f64,
    worst_where: String,
    failures: Vec<String>,
    notes: Vec<String>,
}

impl Tally {
    fn add(&mut self, what: &str, v: &Verdict, exact: bool, budget: f64) {
        self.outputs += 1;
        self.elements += v.total;
        self.elements_equal += v.equal;
        if v.equal == v.total {
            self.outputs_equal += 1;
        }
        if v.worst > self.worst {
            self.worst = v.worst;
            self.worst_where = what.to_string();
        }
        let ok = if exact {
            v.equal == v.total
        } else {
            v.worst <= budget
        };
        if !ok {
            self.failures.push(format!(
                "{what}: {}/{} equal, worst {:.2} ulp; first difference at {}",
                v.equal,
                v.total,
                v.worst,
                v.first_diff.as_deref().unwrap_or("-")
            ));
        }
    }
}

fn vendor_of(env_path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(env_path).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["cpu_vendor"].as_str().map(str::to_string)
}

/// Runs every layer and case and compares with the goldens of `mode`.
fn sweep(mode: &str) -> Option<Tally> {
    let root = corpus();
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(&root)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("expected/manifest.json").is_file())
        .collect();
    fixtures.sort();
    if fixtures.is_empty() {
        return None;
    }
    let host = host_cpu_vendor();
    let mut t = Tally::default();
    let mut per_fixture: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for dir in fixtures {
        let fixture = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(dir.join("expected/manifest.json")).expect("manifest");
        let manifest: Value = serde_json::from_str(&text).expect("manifest JSON");
        // A frozen graph's arithmetic depends on the graph itself (Grappler
        // rewrites fused ops with constant inputs), which this layer-only
        // sweep does not read: tests/it/apply.rs runs those goldens through
        // the settings tfbn recovers from the graph.
        if manifest["format"] == "frozen_graphdef" {
            t.notes
                .push(format!("{fixture}: frozen graph, run by tests/it/apply.rs"));
            continue;
        }
        let blob = std::fs::read(dir.join("expected/variables.bin")).unwrap_or_default();
        for layer in manifest["layers"].as_array().into_iter().flatten() {
            let name = layer["name"].as_str().unwrap_or("?");
            // Mixed-precision Keras layers (float16 inputs) run through
            // `tfbn apply` in tests/it/keras.rs and tests/it/apply.rs.
            if layer["input_dtype"]
                .as_str()
                .is_some_and(|d| d != "float32")
            {
                t.notes.push(format!(
                    "{fixture}/{name}: float16 input, run by tests/it/keras.rs"
                ));
                continue;
            }
            let gdir = dir.join(layer["golden"].as_str().unwrap_or("")).join(mode);
            if !gdir.join("env.json").is_file() {
                t.notes
                    .push(format!("{fixture}/{name}: no {mode} goldens yet"));
                continue;
            }
            let exact = mode == "eigen"
                && vendor_of(&gdir.join("env.json")).as_deref() == Some(host.as_str());
            if mode == "eigen" && !exact {
                t.notes.push(format!(
                    "{fixture}/{name}: golden from another CPU vendor, ULP budget"
                ));
            }
            let budget = if mode == "eigen" {
                FOREIGN_VENDOR_BUDGET
            } else {
                ONEDNN_BUDGET
            };
            let (produced, _) = run_layer(&dir, &manifest, &blob, layer);
            t.units += 1;
            for p in produced {
                let path = gdir.join(&p.file);
                if !path.is_file() {
                    continue;
                }
                let golden = read_golden(&path, "float32");
                let v = compare(&p, &golden);
                t.add(
                    &format!(
                        "{fixture}/{name} [{}] {}",
                        layer["api"].as_str().unwrap_or(""),
                        p.file
                    ),
                    &v,
                    exact,
                    budget,
                );
                let e = per_fixture.entry(fixture.clone()).or_default();
                e.0 += 1;
                e.1 += (v.equal == v.total) as usize;
            }
        }
        for case in manifest["cases"].as_array().into_iter().flatten() {
            let id = case["id"].as_str().unwrap_or("?");
            let gdir = dir.join("goldens").join(mode);
            if !gdir.join("env.json").is_file() {
                t.notes
                    .push(format!("{fixture}/{id}: no {mode} goldens yet"));
                continue;
            }
            let exact = mode == "eigen"
                && vendor_of(&gdir.join("env.json")).as_deref() == Some(host.as_str());
            let budget = if mode == "eigen" {
                FOREIGN_VENDOR_BUDGET
            } else {
                ONEDNN_BUDGET
            };
            t.units += 1;
            for (p, dtype) in run_case(&dir, case) {
                let rel = case["outputs"][&p.file]["file"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                let path = gdir.join(&rel);
                if !path.is_file() {
                    t.failures
                        .push(format!("{fixture}/{id}: golden {rel} missing"));
                    continue;
                }
                let golden = read_golden(&path, &dtype);
                let v = compare(&p, &golden);
                t.add(&format!("{fixture}/{id} {}", p.file), &v, exact, budget);
                let e = per_fixture.entry(fixture.clone()).or_default();
                e.0 += 1;
                e.1 += (v.equal == v.total) as usize;
            }
        }
    }
    println!("== {mode} goldens (host CPU vendor {host}) ==");
    for (f, (n, eq)) in &per_fixture {
        println!("  {f:<22} {eq:>3}/{n:<3} outputs bitwise equal");
    }
    println!(
        "  total: {} layers/cases, {}/{} outputs bitwise equal, {}/{} elements; worst {:.2} ulp{}",
        t.units,
        t.outputs_equal,
        t.outputs,
        t.elements_equal,
        t.elements,
        t.worst,
        if t.worst > 0.0 {
            format!(" at {}", t.worst_where)
        } else {
            String::new()
        }
    );
    for n in &t.notes {
        println!("  note: {n}");
    }
    Some(t)
}

#[test]
fn eigen_goldens_are_bitwise_equal() {
    let Some(t) = sweep("eigen") else {
        println!("no fixtures under {} yet", corpus().display());
        return;
    };
    assert!(t.units > 0, "no layers or cases with eigen goldens");
    assert!(
        t.failures.is_empty(),
        "{} of {} outputs differ from the eigen goldens:\n{}",
        t.failures.len(),
        t.outputs,
        t.failures.join("\n")
    );
}

#[test]
fn onednn_goldens_are_within_budget() {
    let Some(t) = sweep("onednn") else {
        println!("no fixtures under {} yet", corpus().display());
        return;
    };
    println!(
        "  oneDNN budget {ONEDNN_BUDGET} ulp at the channel's scale; measured worst {:.2}",
        t.worst
    );
    assert!(
        t.failures.is_empty(),
        "{} of {} outputs exceed {ONEDNN_BUDGET} ulp against the onednn goldens:\n{}",
        t.failures.len(),
        t.outputs,
        t.failures.join("\n")
    );
}

/// `tf.nn.moments` + `tf.nn.batch_normalization` in float16 and bfloat16
/// (the `ops_nn_half` fixture): every output bit for bit, every case run.
#[test]
fn nn_half_precision_goldens_are_bitwise_equal() {
    let dir = corpus().join("ops_nn_half");
    let text = std::fs::read_to_string(dir.join("expected/manifest.json")).expect("manifest");
    let manifest: Value = serde_json::from_str(&text).expect("manifest JSON");
    let gdir = dir.join("goldens/eigen");
    if vendor_of(&gdir.join("env.json")).as_deref() != Some(host_cpu_vendor().as_str()) {
        println!(
            "ops_nn_half goldens come from another CPU vendor; the sweep applies the ULP budget"
        );
        return;
    }
    let mut dtypes = std::collections::BTreeSet::new();
    let (mut compared, mut expected) = (0, 0);
    for case in manifest["cases"].as_array().expect("cases") {
        expected += case["outputs"].as_object().map_or(0, |o| o.len());
        dtypes.insert(case["T"].as_str().unwrap_or("").to_string());
        for (p, dtype) in run_case(&dir, case) {
            let rel = case["outputs"][&p.file]["file"].as_str().expect("file");
            let golden = read_golden(&gdir.join(rel), &dtype);
            assert!(
                !matches!(golden, Out::F32(_)),
                "{}: {rel} is not a 16-bit golden",
                case["id"]
            );
            let v = compare(&p, &golden);
            assert_eq!(
                v.equal,
                v.total,
                "{} {}: {}",
                case["id"],
                p.file,
                v.first_diff.unwrap_or_default()
            );
            compared += 1;
        }
    }
    assert!(
        dtypes.contains("float16") && dtypes.contains("bfloat16"),
        "{dtypes:?}"
    );
    assert_eq!(compared, expected, "outputs compared");
}

#[test]
fn ulp_metric_is_scaled_by_the_channel() {
    let p = Produced {
        file: "y".into(),
        out: Out::F32(vec![1.0, 1e-6 + 1.2e-7]),
        channel_of: Some((1, 2)),
    };
    let g = Out::F32(vec![1.0, 1e-6]);
    let v = compare(&p, &g);
    assert_eq!(v.equal, 1);
    assert!((v.worst - 1.0).abs() < 0.05, "{}", v.worst);
    let _ = ArrayD::<f32>::zeros(IxDyn(&[1]));
}
