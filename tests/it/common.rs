//! The fixture corpus under `testdata/`, as written by
//! `scripts/gen_testdata.py` (every byte from TensorFlow; schema in
//! `testdata/README.md`).

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Runs the real binary with `args`.
pub fn tfbn(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tfbn"))
        .args(args)
        .output()
        .expect("run tfbn")
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One fixture and its manifest.
pub struct Fixture {
    pub name: String,
    pub dir: PathBuf,
    pub manifest: Value,
}

impl Fixture {
    /// The path a reader opens.
    pub fn open_path(&self) -> PathBuf {
        self.dir
            .join(self.manifest["open"].as_str().expect("manifest.open"))
    }

    /// The same path relative to the repository root (for stable snapshots).
    pub fn rel_open_path(&self) -> PathBuf {
        Path::new("testdata")
            .join(&self.name)
            .join(self.manifest["open"].as_str().expect("manifest.open"))
    }

    /// The manifest's variables.
    pub fn variables(&self) -> &Vec<Value> {
        self.manifest["variables"]
            .as_array()
            .expect("manifest.variables")
    }

    /// The manifest's variables that tfbn lists: all of them, except for a
    /// frozen graph, whose manifest lists every numeric `Const` while tfbn
    /// takes the float constants of rank ≥ 1 as the graph's weights (shape
    /// pieces, axes and scalar hyper-parameters like ε are not weights).
    pub fn listed_variables(&self) -> Vec<&Value> {
        let frozen = self.manifest["format"] == "frozen_graphdef";
        self.variables()
            .iter()
            .filter(|v| {
                !frozen
                    || (matches!(
                        v["dtype"].as_str(),
                        Some("float32" | "float64" | "float16" | "bfloat16")
                    ) && v["shape"].as_array().is_some_and(|s| !s.is_empty()))
            })
            .collect()
    }

    /// True when TensorFlow has a reader for the fixture's format
    /// (checkpoints and SavedModels; not Keras HDF5 files or frozen graphs,
    /// whose values the manifest holds as h5py or the graph gave them).
    pub fn tf_readable(&self) -> bool {
        let f = self.manifest["format"].as_str().unwrap_or("");
        !(f.starts_with("keras") || f == "frozen_graphdef")
    }

    /// The manifest's BN layers that tfbn finds in the file alone: all of
    /// them, except in a Keras 3 weights-only file (`.weights.h5`, no
    /// config) a layer with `center` or `scale` off, whose three stored
    /// vectors do not say which is off and which tfbn leaves to a
    /// declaration (tests/it/keras.rs covers those with `--hyper`).
    pub fn layers(&self) -> Vec<Value> {
        self.all_layers()
            .iter()
            .filter(|l| !self.needs_declaration(l))
            .cloned()
            .collect()
    }

    /// Every BN layer of the manifest.
    pub fn all_layers(&self) -> &Vec<Value> {
        self.manifest["layers"].as_array().expect("manifest.layers")
    }

    /// True for a layer of a Keras 3 weights-only file with `center` or
    /// `scale` off (see [`Fixture::layers`]).
    pub fn needs_declaration(&self, layer: &Value) -> bool {
        self.manifest["format"] == "keras3_weights_h5"
            && (layer["hyper"]["center"] == false || layer["hyper"]["scale"] == false)
    }

    /// True for a Keras weights-only file (no model config: settings that
    /// only a config holds, like renorm's clipping, are TF's defaults).
    pub fn weights_only(&self) -> bool {
        matches!(
            self.manifest["format"].as_str(),
            Some("keras3_weights_h5" | "keras2_weights_h5")
        )
    }

    /// Asserts that `t`, read for manifest variable `var`, is what
    /// TensorFlow's reader returned: dtype, shape and every byte (or string).
    pub fn assert_tensor(&self, var: &Value, t: &tfbn::Tensor) {
        let key = var["key"].as_str().unwrap();
        let dtype = tfbn::DType::from_name(var["dtype"].as_str().unwrap()).unwrap();
        assert_eq!(t.dtype, dtype, "{}: {key}", self.name);
        let shape: Vec<u64> = var["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        assert_eq!(t.shape, shape, "{}: {key}: shape", self.name);
        match &t.data {
            tfbn::TensorData::Bytes(b) => {
                assert_eq!(b, &self.expected_bytes(var), "{}: {key}: bytes", self.name)
            }
            tfbn::TensorData::Strings(s) => {
                let want: Vec<Vec<u8>> = var["strings_hex"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| unhex(h.as_str().unwrap()))
                    .collect();
                assert_eq!(s, &want, "{}: {key}: strings", self.name);
            }
        }
    }

    /// The raw bytes TF's reader returned for a fixed-width variable.
    pub fn expected_bytes(&self, var: &Value) -> Vec<u8> {
        let all = std::fs::read(self.dir.join("expected/variables.bin")).expect("variables.bin");
        let off = var["offset"].as_u64().expect("offset") as usize;
        let n = var["nbytes"].as_u64().expect("nbytes") as usize;
        all[off..off + n].to_vec()
    }
}

/// Every checkpoint fixture with a manifest. Panics when the corpus is missing, so a
/// checkout without fixtures cannot pass the corpus tests by finding none.
/// True when `TFBN_ONLY_FIXTURES` narrows the fixture-wide tests (corpus
/// size minimums then do not apply).
pub fn narrowed() -> bool {
    std::env::var_os("TFBN_ONLY_FIXTURES").is_some()
}

pub fn fixtures() -> Vec<Fixture> {
    let mut out = all_fixtures();
    // For development only: `TFBN_ONLY_FIXTURES=frozen_,kfile_k3` runs the
    // fixture-wide tests on fixtures whose names start with one of these.
    if let Ok(only) = std::env::var("TFBN_ONLY_FIXTURES") {
        let prefixes: Vec<&str> = only.split(',').collect();
        out.retain(|f| prefixes.iter().any(|p| f.name.starts_with(p)));
    }
    out
}

fn all_fixtures() -> Vec<Fixture> {
    let dir = root().join("testdata");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("testdata/ exists") {
        let path = entry.expect("dir entry").path();
        let manifest = path.join("expected/manifest.json");
        if manifest.is_file() {
            let text = std::fs::read_to_string(&manifest).expect("manifest readable");
            let manifest: Value = serde_json::from_str(&text).expect("manifest is JSON");
            // Op-level fixtures (no checkpoint) are for the layer tests.
            if manifest.get("open").and_then(Value::as_str).is_none() {
                continue;
            }
            out.push(Fixture {
                name: path.file_name().unwrap().to_string_lossy().into_owned(),
                dir: path,
                manifest,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(
        out.len() >= 10,
        "expected the full fixture corpus under testdata/, found {} fixtures",
        out.len()
    );
    out
}

/// The fixture called `name`.
pub fn fixture(name: &str) -> Fixture {
    all_fixtures()
        .into_iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("fixture {name} missing"))
}

/// Decodes a manifest hex string.
pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

impl Fixture {
    /// The layer's name as tfbn finds it, looked up by the manifest
    /// layer's moving_mean key (manifest names are the writer's).
    pub fn tfbn_name(&self, layer: &Value) -> String {
        let key = layer["variables"]["moving_mean"]["key"].as_str().unwrap();
        let source = tfbn::source::Source::open(self.open_path()).unwrap();
        tfbn::testing::find::discover(&source)
            .into_iter()
            .find(|l| {
                l.var(tfbn::testing::layers::BnRole::MovingMean)
                    .is_some_and(|v| v.key == key)
            })
            .map(|l| l.name)
            .unwrap_or_else(|| panic!("{}: no layer with {key}", self.name))
    }

    /// A `--hyper` sidecar (JSON, in `dir`) declaring every layer's true
    /// settings as the manifest records them (what TF built the layer
    /// with): ε, momentum, the channel axis (the last one written as −1,
    /// which names the same dimension for any input rank verify feeds), and
    /// `fused` where the API has the choice (`null` → `auto`).
    pub fn hyper_sidecar(&self, dir: &Path) -> PathBuf {
        let mut layers = serde_json::Map::new();
        for l in self.layers() {
            let h = &l["hyper"];
            let rank = l["input_shape"].as_array().unwrap().len() as i64;
            let axis = h["axis"][0].as_i64().unwrap();
            let mut entry = serde_json::json!({
                "epsilon": h["epsilon"],
                "axis": if axis == rank - 1 { -1 } else { axis },
            });
            // A hand-written layer in a frozen graph has no momentum.
            if !h["momentum"].is_null() {
                entry["momentum"] = h["momentum"].clone();
            }
            if matches!(l["api"].as_str(), Some("tf-keras" | "tf1-layers")) {
                entry["fused"] = match h["fused"].as_bool() {
                    Some(b) => Value::Bool(b),
                    None => Value::String("auto".into()),
                };
            }
            layers.insert(self.tfbn_name(&l), entry);
        }
        let path = dir.join(format!("{}.hyper.json", self.name));
        let doc = serde_json::json!({ "layers": layers });
        std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        path
    }
}

/// The CPU vendor TF ran on when a golden folder was written
/// (`<golden>/eigen/env.json`; `golden` may be the `eigen/` folder itself
/// or a file in it), if recorded.
pub fn golden_vendor(golden: &Path) -> Option<String> {
    let env = [golden.join("eigen/env.json"), golden.join("env.json")]
        .into_iter()
        .chain(golden.parent().map(|p| p.join("env.json")))
        .find(|p| p.is_file())?;
    let text = std::fs::read_to_string(env).ok()?;
    let env: Value = serde_json::from_str(&text).ok()?;
    env["cpu_vendor"].as_str().map(str::to_string)
}

/// Whether outputs TF computed on `vendor` can be matched bit for bit on
/// this host. TF's float32 `rsqrt` starts from the CPU's `RSQRTPS`
/// estimate, whose table differs between vendors (docs/bn-arithmetic.md,
/// "rsqrt"), so batch-norm outputs differ by a few ULP from one vendor to
/// another; tfbn reproduces the host's. An unrecorded vendor counts as
/// this one (the check stays bitwise).
pub fn same_vendor(vendor: Option<&str>) -> bool {
    vendor.is_none_or(|v| v == tfbn::bn::host_cpu_vendor())
}

/// The bound for outputs TF computed on another CPU vendor: the largest
/// difference, in units in the last place of the golden's largest
/// magnitude. Bit-exactness on this host is proven against live TF by the
/// `verify` tests; these comparisons then show only that nothing else
/// moved. Measured: at most 3 ULP of max over 1,032 outputs (goldens from
/// an AMD EPYC, host an Intel Xeon with AVX-512); the bound leaves a
/// factor 2.7.
pub const CROSS_VENDOR_ULP_OF_MAX: f64 = 8.0;

fn values_and_ulp(a: &tfbn::testing::npy::NpyArray) -> (Vec<f64>, fn(f64) -> f64) {
    use tfbn::testing::npy::NpyArray;
    fn ulp_with(m: f64, mantissa: i32, min_exp: i32) -> f64 {
        let e = if m > 0.0 {
            m.log2().floor() as i32
        } else {
            min_exp
        };
        2f64.powi(e.max(min_exp) - mantissa)
    }
    match a {
        NpyArray::F32(a) => (a.iter().map(|&v| f64::from(v)).collect(), |m| {
            ulp_with(m, 23, -126)
        }),
        NpyArray::F64(a) => (a.iter().copied().collect(), |m| ulp_with(m, 52, -1022)),
        NpyArray::F16(a) => (a.iter().map(|v| v.to_f64()).collect(), |m| {
            ulp_with(m, 10, -14)
        }),
        NpyArray::U16(a) => (
            a.iter()
                .map(|&v| f64::from(f32::from_bits(u32::from(v) << 16)))
                .collect(),
            |m| ulp_with(m, 7, -126),
        ),
        other => panic!("unexpected dtype {other:?}"),
    }
}

fn npy_bits(a: &tfbn::testing::npy::NpyArray) -> Vec<u64> {
    use tfbn::testing::npy::NpyArray;
    match a {
        NpyArray::F32(a) => a.iter().map(|v| v.to_bits() as u64).collect(),
        NpyArray::F64(a) => a.iter().map(|v| v.to_bits()).collect(),
        NpyArray::F16(a) => a.iter().map(|v| v.to_bits() as u64).collect(),
        NpyArray::U16(a) => a.iter().map(|&v| v as u64).collect(),
        other => panic!("unexpected dtype {other:?}"),
    }
}

/// Compares an output with TF's golden: bit for bit when the golden was
/// written on this host's CPU vendor, else within
/// [`CROSS_VENDOR_ULP_OF_MAX`], saying so on stderr (never silently).
/// Returns whether the comparison was bitwise.
pub fn assert_matches_golden(
    ours: &tfbn::testing::npy::NpyArray,
    golden: &tfbn::testing::npy::NpyArray,
    vendor: Option<&str>,
    what: &str,
) -> bool {
    let (a, b) = (npy_bits(ours), npy_bits(golden));
    assert_eq!(a.len(), b.len(), "{what}: sizes differ");
    let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    if same_vendor(vendor) {
        let first = a.iter().zip(&b).position(|(x, y)| x != y);
        assert!(
            first.is_none(),
            "{what}: element {} differs: ours {:#x}, TF {:#x} ({differ} of {} differ)",
            first.unwrap_or(0),
            a[first.unwrap_or(0)],
            b[first.unwrap_or(0)],
            a.len()
        );
        return true;
    }
    let (x, ulp) = values_and_ulp(ours);
    let (y, _) = values_and_ulp(golden);
    let max = y.iter().fold(0f64, |m, v| m.max(v.abs()));
    let worst = x.iter().zip(&y).fold(0f64, |m, (p, q)| {
        if p.is_nan() && q.is_nan() {
            m
        } else {
            m.max((p - q).abs())
        }
    });
    let in_ulps = worst / ulp(max);
    eprintln!(
        "CROSS-VENDOR {what}: golden from {}, host {}: {differ} of {} differ, at most {in_ulps} ULP of max",
        vendor.unwrap_or("?"),
        tfbn::bn::host_cpu_vendor(),
        a.len()
    );
    assert!(
        in_ulps <= CROSS_VENDOR_ULP_OF_MAX,
        "{what}: {in_ulps} ULP of max from TF's golden (goldens from {}; bound {CROSS_VENDOR_ULP_OF_MAX})",
        vendor.unwrap_or("?")
    );
    false
}
