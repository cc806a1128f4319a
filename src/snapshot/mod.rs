//! Numerical snapshots for CI: a stable, reviewable text form of arrays (and
//! of whole batch-norm layers' outputs) that catches real drift and ignores
//! last-bit noise.
//!
//! A snapshot document holds one block per array:
//!
//! ```text
//! tfbn-snapshot v1
//! == bn/inference/y
//! dtype float32
//! shape [4, 5, 5, 8]
//! channel_axis 3
//! digest 9c1f0d3a5b7e2f41 (quantum 1.2e-4)
//! channel  mean          std           min           max
//! 0        1.23457e-1    9.87654e-1    -2.34567e0    3.45678e0
//! …
//! sample [0] 1.23456e-1
//! …
//! exact f32 8
//! 3f8ccccd 3f8ccccd …
//! ```
//!
//! The upper part is for people: per-channel statistics rounded to
//! [`SnapshotOptions::digits`] significant digits and a few sampled values.
//! The `exact` section holds every value's bits (up to
//! [`SnapshotOptions::max_exact`] values; beyond that, the per-channel
//! statistics' f64 bits), so [`drifts`] can apply a real tolerance
//! ([`Tolerance`], shared with `tfbn verify`: `exact`, `ulp:N`, `ulp-of-max:N`,
//! `abs:X`, `rel:X`) and name the channel and value that
//! moved. The digest hashes the per-channel mean and standard deviation
//! quantized to `quantum` (a fraction of the array's largest magnitude): it
//! stays put under noise well below the quantum and changes for drift above
//! it; a value sitting on a quantization boundary can flip it, which is why
//! the comparator, not the digest, decides.
//!
//! With the `insta` feature, `insta_glue` plugs the comparison into insta
//! snapshots: see `assert_numeric_snapshot!`.

/// Options for building a snapshot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SnapshotOptions {
    /// Significant digits of the human-readable statistics. Default 6.
    pub digits: usize,
    /// Sampled values shown per array. Default 8.
    pub samples: usize,
    /// Arrays up to this many elements keep every value's bits. Default 65 536.
    pub max_exact: usize,
    /// Digest quantum as a fraction of the array's largest finite
    /// magnitude. Default 1e-4.
    pub digest_quantum: f64,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            digits: 6,
            samples: 8,
            max_exact: 1 << 16,
            digest_quantum: 1e-4,
        }
    }
}

/// Element type of a snapshotted array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// `float32`.
    F32,
    /// `float64`.
    F64,
    /// `float16` (values held as f32).
    F16,
    /// `bfloat16` (values held as f32).
    BF16,
}

impl ValueType {
    fn name(self) -> &'static str {
        match self {
            ValueType::F32 => "float32",
            ValueType::F64 => "float64",
            ValueType::F16 => "float16",
            ValueType::BF16 => "bfloat16",
        }
    }

    fn parse(s: &str) -> Option<ValueType> {
        Some(match s {
            "float32" => ValueType::F32,
            "float64" => ValueType::F64,
            "float16" => ValueType::F16,
            "bfloat16" => ValueType::BF16,
            _ => return None,
        })
    }
}

/// Statistics of one channel (NaN and ±Inf are counted, not averaged).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChannelStats {
    /// Mean of the finite values.
    pub mean: f64,
    /// Population standard deviation of the finite values.
    pub std: f64,
    /// Smallest finite value.
    pub min: f64,
    /// Largest finite value.
    pub max: f64,
    /// Number of NaN values.
    pub nan: u64,
    /// Number of infinite values.
    pub inf: u64,
}

/// One array of a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct ArraySnapshot {
    /// Name (e.g. `layer/mode/output`).
    pub name: String,
    /// Element type.
    pub dtype: ValueType,
    /// Shape.
    pub shape: Vec<usize>,
    /// Channel axis the statistics are taken over.
    pub channel_axis: usize,
    /// Per-channel statistics.
    pub channels: Vec<ChannelStats>,
    /// Sampled (flat index, value) pairs.
    pub samples: Vec<(usize, f64)>,
    /// Every value, when the array is small enough.
    pub values: Option<Vec<f64>>,
    /// The noise-tolerant digest.
    pub digest: u64,
    /// The digest's quantum.
    pub quantum: f64,
}

/// The settings one layer ran with, as a snapshot's header records them:
/// a later change of a value or of its source (a declared ε replacing an
/// assumed one) shows as drift.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotLayer {
    /// Layer name.
    pub name: String,
    /// `epsilon V (source); momentum V (source); axis …; fused …; api …`.
    pub settings: String,
    /// The settings assumed from TF's defaults (`epsilon`, …).
    pub assumed: Vec<String>,
}

/// A whole snapshot document.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    /// Per layer, the settings it ran with (header lines `layer NAME`,
    /// `  settings …`, `  assumed …`); empty in snapshots written before
    /// tfbn recorded them.
    pub layers: Vec<SnapshotLayer>,
    /// The arrays, in the order they were added.
    pub arrays: Vec<ArraySnapshot>,
}

mod compare;
mod format;
#[cfg(feature = "insta")]
pub mod insta_glue;
mod layers;

pub use crate::parity::Tolerance;
pub use compare::{drifts, Drift};
pub use layers::{seeded_input, snapshot_layers, LayerSnapshotPlan};

/// Asserts a tfbn [`Snapshot`] against an insta snapshot under a tolerance
/// string (`"exact"`, `"ulp:4"`, `"abs:1e-6"`, `"rel:1e-5"`):
///
/// ```no_run
/// # #[cfg(feature = "insta")]
/// # {
/// let snapshot = tfbn::snapshot::Snapshot::default(); // e.g. from snapshot_layers
/// tfbn::assert_numeric_snapshot!("bn_outputs", &snapshot, "ulp:4");
/// # }
/// ```
#[cfg(feature = "insta")]
#[macro_export]
macro_rules! assert_numeric_snapshot {
    ($name:expr, $snapshot:expr, $tolerance:expr) => {{
        let tol = $crate::snapshot::Tolerance::parse($tolerance).expect("tolerance");
        let text = ($snapshot).to_text(&$crate::snapshot::SnapshotOptions::default());
        $crate::snapshot::insta_glue::settings(tol).bind(|| {
            $crate::snapshot::insta_glue::insta::assert_snapshot!($name, text);
        });
    }};
}
