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
//! statistics' f64 bits), so [`compare`] can apply a real tolerance
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

use std::fmt::Write as _;

use crate::error::{Error, Result};

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

fn fnv1a(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

fn channel_stats(values: &[f64], shape: &[usize], axis: usize) -> Vec<ChannelStats> {
    let c = shape.get(axis).copied().unwrap_or(1).max(1);
    let inner: usize = shape.iter().skip(axis + 1).product();
    let inner = inner.max(1);
    let mut acc = vec![
        (
            0f64,
            0f64,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0u64,
            0u64,
            0u64
        );
        c
    ];
    for (i, &v) in values.iter().enumerate() {
        let ch = (i / inner) % c;
        let a = &mut acc[ch];
        if v.is_nan() {
            a.4 += 1;
        } else if v.is_infinite() {
            a.5 += 1;
        } else {
            a.0 += v;
            a.2 = a.2.min(v);
            a.3 = a.3.max(v);
            a.6 += 1;
        }
    }
    let means: Vec<f64> = acc
        .iter()
        .map(|a| if a.6 == 0 { f64::NAN } else { a.0 / a.6 as f64 })
        .collect();
    for (i, &v) in values.iter().enumerate() {
        let ch = (i / inner) % c;
        if v.is_finite() {
            acc[ch].1 += (v - means[ch]) * (v - means[ch]);
        }
    }
    acc.iter()
        .zip(&means)
        .map(|(a, &m)| ChannelStats {
            mean: m,
            std: if a.6 == 0 {
                f64::NAN
            } else {
                (a.1 / a.6 as f64).sqrt()
            },
            min: if a.6 == 0 { f64::NAN } else { a.2 },
            max: if a.6 == 0 { f64::NAN } else { a.3 },
            nan: a.4,
            inf: a.5,
        })
        .collect()
}

fn quantize(v: f64, quantum: f64) -> i64 {
    if v.is_nan() {
        i64::MIN
    } else {
        (v / quantum).round() as i64
    }
}

impl ArraySnapshot {
    /// Builds the snapshot of `values` (row-major, widened exactly to f64)
    /// with statistics over `channel_axis`.
    pub fn new(
        name: &str,
        dtype: ValueType,
        shape: &[usize],
        channel_axis: usize,
        values: &[f64],
        opts: &SnapshotOptions,
    ) -> Result<ArraySnapshot> {
        let count: usize = shape.iter().product();
        if count != values.len() {
            return Err(Error::InvalidArgument(format!(
                "snapshot {name}: shape {shape:?} holds {count} values, got {}",
                values.len()
            )));
        }
        if !shape.is_empty() && channel_axis >= shape.len() {
            return Err(Error::InvalidArgument(format!(
                "snapshot {name}: channel axis {channel_axis} out of range for rank {}",
                shape.len()
            )));
        }
        let channels = channel_stats(values, shape, channel_axis);
        let scale = values
            .iter()
            .filter(|v| v.is_finite())
            .fold(0f64, |m, v| m.max(v.abs()));
        let quantum = if scale > 0.0 {
            scale * opts.digest_quantum
        } else {
            opts.digest_quantum
        };
        // Round the quantum to 2 significant digits so it prints exactly.
        let quantum: f64 = format!("{quantum:.1e}").parse().unwrap_or(quantum);
        let mut digest = 0xcbf2_9ce4_8422_2325u64;
        digest = fnv1a(digest, dtype.name().as_bytes());
        for d in shape {
            digest = fnv1a(digest, &(*d as u64).to_le_bytes());
        }
        for ch in &channels {
            digest = fnv1a(digest, &quantize(ch.mean, quantum).to_le_bytes());
            digest = fnv1a(digest, &quantize(ch.std, quantum).to_le_bytes());
            digest = fnv1a(digest, &ch.nan.to_le_bytes());
            digest = fnv1a(digest, &ch.inf.to_le_bytes());
        }
        let n = values.len();
        let k = opts.samples.min(n);
        let samples = (0..k)
            .map(|i| {
                // Spread evenly, first and last included.
                let idx = if k <= 1 { 0 } else { i * (n - 1) / (k - 1) };
                (idx, values[idx])
            })
            .collect();
        Ok(ArraySnapshot {
            name: name.to_string(),
            dtype,
            shape: shape.to_vec(),
            channel_axis,
            channels,
            samples,
            values: (n <= opts.max_exact).then(|| values.to_vec()),
            digest,
            quantum,
        })
    }

    fn write(&self, out: &mut String, digits: usize) {
        let p = digits.saturating_sub(1);
        let num = |v: f64| -> String {
            if v.is_nan() {
                "nan".into()
            } else {
                format!("{v:.p$e}")
            }
        };
        let _ = writeln!(out, "== {}", self.name);
        let _ = writeln!(out, "dtype {}", self.dtype.name());
        let _ = writeln!(out, "shape {:?}", self.shape);
        let _ = writeln!(out, "channel_axis {}", self.channel_axis);
        let _ = writeln!(
            out,
            "digest {:016x} (quantum {:.1e})",
            self.digest, self.quantum
        );
        let _ = writeln!(
            out,
            "channel  {:<14}{:<14}{:<14}{:<14}nan inf",
            "mean", "std", "min", "max"
        );
        for (i, c) in self.channels.iter().enumerate() {
            let _ = writeln!(
                out,
                "{:<9}{:<14}{:<14}{:<14}{:<14}{} {}",
                i,
                num(c.mean),
                num(c.std),
                num(c.min),
                num(c.max),
                c.nan,
                c.inf
            );
        }
        for (i, v) in &self.samples {
            let _ = writeln!(out, "sample [{i}] {}", num(*v));
        }
        match &self.values {
            Some(values) => {
                let _ = writeln!(out, "exact values {}", values.len());
                for chunk in values.chunks(8) {
                    let words: Vec<String> = chunk.iter().map(|v| self.hex(*v)).collect();
                    let _ = writeln!(out, "{}", words.join(" "));
                }
            }
            None => {
                let _ = writeln!(out, "exact channels {}", self.channels.len());
                for c in &self.channels {
                    let _ = writeln!(
                        out,
                        "{:016x} {:016x} {:016x} {:016x}",
                        c.mean.to_bits(),
                        c.std.to_bits(),
                        c.min.to_bits(),
                        c.max.to_bits()
                    );
                }
            }
        }
    }

    fn hex(&self, v: f64) -> String {
        match self.dtype {
            ValueType::F64 => format!("{:016x}", v.to_bits()),
            _ => format!("{:08x}", (v as f32).to_bits()),
        }
    }

    fn unhex(&self, s: &str) -> Option<f64> {
        match self.dtype {
            ValueType::F64 => u64::from_str_radix(s, 16).ok().map(f64::from_bits),
            _ => u32::from_str_radix(s, 16)
                .ok()
                .map(|b| f32::from_bits(b) as f64),
        }
    }
}

const HEADER: &str = "tfbn-snapshot v1";

impl Snapshot {
    /// Adds an array.
    pub fn push(&mut self, a: ArraySnapshot) {
        self.arrays.push(a);
    }

    /// The text form (deterministic: same values, same bytes).
    pub fn to_text(&self, opts: &SnapshotOptions) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{HEADER}");
        for l in &self.layers {
            let _ = writeln!(out, "layer {}", l.name);
            let _ = writeln!(out, "  settings {}", l.settings);
            let assumed = if l.assumed.is_empty() {
                "none".to_string()
            } else {
                l.assumed.join(", ")
            };
            let _ = writeln!(out, "  assumed {assumed}");
        }
        for a in &self.arrays {
            a.write(&mut out, opts.digits);
        }
        out
    }

    /// Parses a text form written by [`Snapshot::to_text`].
    pub fn parse(text: &str) -> Result<Snapshot> {
        let bad = |line: usize, what: &str| {
            Error::InvalidArgument(format!("snapshot line {}: {what}", line + 1))
        };
        let lines: Vec<&str> = text.lines().collect();
        let mut i = lines
            .iter()
            .position(|l| l.trim() == HEADER)
            .ok_or_else(|| bad(0, &format!("no `{HEADER}` header")))?
            + 1;
        let mut snap = Snapshot::default();
        while let Some(name) = lines.get(i).and_then(|l| l.strip_prefix("layer ")) {
            let field = |j: usize, key: &str| -> Result<String> {
                lines
                    .get(j)
                    .and_then(|l| l.strip_prefix(key))
                    .map(|v| v.trim().to_string())
                    .ok_or_else(|| bad(j, &format!("expected `{}`", key.trim())))
            };
            let settings = field(i + 1, "  settings ")?;
            let assumed = field(i + 2, "  assumed ")?;
            snap.layers.push(SnapshotLayer {
                name: name.trim().to_string(),
                settings,
                assumed: if assumed == "none" {
                    Vec::new()
                } else {
                    assumed.split(", ").map(str::to_string).collect()
                },
            });
            i += 3;
        }
        while i < lines.len() {
            let line = lines[i].trim_end();
            if line.is_empty() {
                i += 1;
                continue;
            }
            let name = line
                .strip_prefix("== ")
                .ok_or_else(|| bad(i, "expected `== <name>`"))?;
            let field = |j: usize, key: &str| -> Result<&str> {
                lines
                    .get(j)
                    .and_then(|l| l.strip_prefix(key))
                    .map(str::trim)
                    .ok_or_else(|| bad(j, &format!("expected `{key}`")))
            };
            let dtype = ValueType::parse(field(i + 1, "dtype ")?)
                .ok_or_else(|| bad(i + 1, "unknown dtype"))?;
            let shape_s = field(i + 2, "shape ")?;
            let shape: Vec<usize> = shape_s
                .trim_matches(|c| c == '[' || c == ']')
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().map_err(|_| bad(i + 2, "bad shape")))
                .collect::<Result<_>>()?;
            let channel_axis: usize = field(i + 3, "channel_axis ")?
                .parse()
                .map_err(|_| bad(i + 3, "bad channel axis"))?;
            let digest_s = field(i + 4, "digest ")?;
            let (dhex, rest) = digest_s.split_once(' ').unwrap_or((digest_s, ""));
            let digest = u64::from_str_radix(dhex, 16).map_err(|_| bad(i + 4, "bad digest"))?;
            let quantum: f64 = rest
                .trim_start_matches("(quantum ")
                .trim_end_matches(')')
                .parse()
                .map_err(|_| bad(i + 4, "bad quantum"))?;
            i += 6; // skip the channel table header
            let mut a = ArraySnapshot {
                name: name.to_string(),
                dtype,
                shape,
                channel_axis,
                channels: Vec::new(),
                samples: Vec::new(),
                values: None,
                digest,
                quantum,
            };
            // Channel rows and samples are informative; the exact section is
            // what comparisons use.
            let mut rows = 0usize;
            while i < lines.len() && !lines[i].starts_with("exact ") {
                if let Some(s) = lines[i].strip_prefix("sample [") {
                    let (idx, v) = s.split_once("] ").ok_or_else(|| bad(i, "bad sample"))?;
                    let idx = idx.parse().map_err(|_| bad(i, "bad sample index"))?;
                    let v = if v == "nan" {
                        f64::NAN
                    } else {
                        v.parse().map_err(|_| bad(i, "bad sample"))?
                    };
                    a.samples.push((idx, v));
                } else {
                    rows += 1;
                }
                i += 1;
            }
            let exact = lines
                .get(i)
                .ok_or_else(|| bad(i, "missing exact section"))?;
            let count: usize = exact
                .rsplit(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| bad(i, "bad exact count"))?;
            i += 1;
            if exact.starts_with("exact values") {
                let mut values = Vec::with_capacity(count.min(1 << 20));
                while values.len() < count {
                    let l = lines.get(i).ok_or_else(|| bad(i, "truncated values"))?;
                    for w in l.split_whitespace() {
                        values.push(a.unhex(w).ok_or_else(|| bad(i, "bad hex value"))?);
                    }
                    i += 1;
                }
                let expected: usize = a.shape.iter().product();
                if values.len() != expected {
                    return Err(bad(i, "value count does not match the shape"));
                }
                a.channels = channel_stats(&values, &a.shape, a.channel_axis);
                a.values = Some(values);
            } else {
                if count != rows {
                    return Err(bad(i, "channel count does not match the table"));
                }
                for _ in 0..count {
                    let l = lines.get(i).ok_or_else(|| bad(i, "truncated channels"))?;
                    let b: Vec<f64> = l
                        .split_whitespace()
                        .map(|w| u64::from_str_radix(w, 16).map(f64::from_bits))
                        .collect::<std::result::Result<_, _>>()
                        .map_err(|_| bad(i, "bad channel bits"))?;
                    if b.len() != 4 {
                        return Err(bad(i, "expected 4 values per channel"));
                    }
                    a.channels.push(ChannelStats {
                        mean: b[0],
                        std: b[1],
                        min: b[2],
                        max: b[3],
                        nan: 0,
                        inf: 0,
                    });
                    i += 1;
                }
            }
            snap.arrays.push(a);
        }
        Ok(snap)
    }
}

pub use crate::parity::Tolerance;

/// True when `new` is within `tol` of `old`, both values of `dtype` (held
/// exactly in `f64`); `scale` is the old array's largest finite magnitude.
/// The rule is [`Tolerance::accepts_element`] in the dtype's own precision.
fn within(old: f64, new: f64, tol: Tolerance, dtype: ValueType, scale: f64) -> bool {
    match dtype {
        ValueType::F64 => tol.accepts_element(old, new, scale),
        ValueType::F32 => tol.accepts_element(old as f32, new as f32, scale),
        ValueType::F16 => tol.accepts_element(f16_of(old), f16_of(new), scale),
        ValueType::BF16 => tol.accepts_element(bf16_of(old), bf16_of(new), scale),
    }
}

/// A float16 value held in `f64` back in float16 (exact: it came from one,
/// through `f32`, so one rounding step cannot move it).
fn f16_of(v: f64) -> half::f16 {
    half::f16::from_f32(v as f32)
}

/// A bfloat16 value held in `f64` back in bfloat16 (exact, as [`f16_of`]).
fn bf16_of(v: f64) -> half::bf16 {
    half::bf16::from_f32(v as f32)
}

/// One value that moved beyond the tolerance.
#[derive(Debug, Clone, PartialEq)]
pub struct Drift {
    /// Array name.
    pub array: String,
    /// What moved: an element (`[flat index]`), a channel statistic, or a
    /// structural change (dtype, shape, missing array).
    pub what: String,
    /// Channel of the element, when known.
    pub channel: Option<usize>,
    /// Old value.
    pub old: f64,
    /// New value.
    pub new: f64,
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.array, self.what)?;
        if let Some(c) = self.channel {
            write!(f, " (channel {c})")?;
        }
        if self.old.is_finite() || self.new.is_finite() || self.old.is_nan() || self.new.is_nan() {
            write!(f, ": old {:e}, new {:e}", self.old, self.new)?;
            if self.old.is_finite() && self.new.is_finite() {
                // The distance in the values' own precision: float32 when
                // both are float32 values (every 16- and 32-bit snapshot).
                let (o32, n32) = (self.old as f32, self.new as f32);
                let ulps = if f64::from(o32) == self.old && f64::from(n32) == self.new {
                    crate::parity::ulp_distance(o32, n32)
                } else {
                    crate::parity::ulp_distance(self.old, self.new)
                };
                write!(f, " ({ulps} ULP)")?;
            }
        }
        Ok(())
    }
}

/// Compares two snapshots under `tol`. Returns every array's first and worst
/// drift (at most two per array), empty when everything is within the
/// tolerance; and every layer whose recorded settings or assumptions
/// changed (where the old snapshot records them).
pub fn compare(old: &Snapshot, new: &Snapshot, tol: Tolerance) -> Vec<Drift> {
    let mut drifts = Vec::new();
    let structural = |array: &str, what: String| Drift {
        array: array.to_string(),
        what,
        channel: None,
        old: f64::NAN,
        new: f64::NAN,
    };
    for o in &old.layers {
        let name = format!("layer {}", o.name);
        match new.layers.iter().find(|n| n.name == o.name) {
            None if !new.layers.is_empty() => {
                drifts.push(structural(&name, "missing in the new snapshot".into()))
            }
            None => {}
            Some(n) => {
                if o.settings != n.settings {
                    drifts.push(structural(
                        &name,
                        format!("settings were {}, now {}", o.settings, n.settings),
                    ));
                }
                if o.assumed != n.assumed {
                    let show = |a: &[String]| {
                        if a.is_empty() {
                            "none".to_string()
                        } else {
                            a.join(", ")
                        }
                    };
                    drifts.push(structural(
                        &name,
                        format!(
                            "assumed were {}, now {}",
                            show(&o.assumed),
                            show(&n.assumed)
                        ),
                    ));
                }
            }
        }
    }
    for o in &old.arrays {
        let Some(n) = new.arrays.iter().find(|n| n.name == o.name) else {
            drifts.push(structural(&o.name, "missing in the new snapshot".into()));
            continue;
        };
        if o.dtype != n.dtype || o.shape != n.shape || o.channel_axis != n.channel_axis {
            drifts.push(structural(
                &o.name,
                format!(
                    "was {} {:?} (axis {}), now {} {:?} (axis {})",
                    o.dtype.name(),
                    o.shape,
                    o.channel_axis,
                    n.dtype.name(),
                    n.shape,
                    n.channel_axis
                ),
            ));
            continue;
        }
        let inner: usize = o
            .shape
            .iter()
            .skip(o.channel_axis + 1)
            .product::<usize>()
            .max(1);
        let c = o.shape.get(o.channel_axis).copied().unwrap_or(1).max(1);
        match (&o.values, &n.values) {
            (Some(ov), Some(nv)) => {
                let scale = crate::parity::finite_scale(ov.iter().copied());
                let mut first: Option<usize> = None;
                let mut worst: Option<(usize, f64)> = None;
                for (i, (&a, &b)) in ov.iter().zip(nv).enumerate() {
                    if !within(a, b, tol, o.dtype, scale) {
                        first.get_or_insert(i);
                        let d = if a.is_nan() != b.is_nan() {
                            f64::INFINITY
                        } else {
                            (a - b).abs()
                        };
                        if worst.is_none_or(|(_, w)| d > w) {
                            worst = Some((i, d));
                        }
                    }
                }
                let mut seen = Vec::new();
                for i in first.into_iter().chain(worst.map(|w| w.0)) {
                    if seen.contains(&i) {
                        continue;
                    }
                    seen.push(i);
                    drifts.push(Drift {
                        array: o.name.clone(),
                        what: format!("value [{i}]"),
                        channel: Some((i / inner) % c),
                        old: ov[i],
                        new: nv[i],
                    });
                }
            }
            _ => {
                let scale = crate::parity::finite_scale(
                    o.channels
                        .iter()
                        .flat_map(|s| [s.mean, s.std, s.min, s.max]),
                );
                for (ch, (a, b)) in o.channels.iter().zip(&n.channels).enumerate() {
                    for (stat, x, y) in [
                        ("mean", a.mean, b.mean),
                        ("std", a.std, b.std),
                        ("min", a.min, b.min),
                        ("max", a.max, b.max),
                    ] {
                        if !within(x, y, tol, o.dtype, scale) {
                            drifts.push(Drift {
                                array: o.name.clone(),
                                what: format!("channel {stat}"),
                                channel: Some(ch),
                                old: x,
                                new: y,
                            });
                        }
                    }
                }
            }
        }
    }
    for n in &new.arrays {
        if !old.arrays.iter().any(|o| o.name == n.name) {
            drifts.push(structural(
                &n.name,
                "new array, not in the old snapshot".into(),
            ));
        }
    }
    drifts
}

/// insta integration (feature `insta`): a [`insta::Comparator`] that
/// compares tfbn snapshot texts under a tolerance and prints what moved.
#[cfg(feature = "insta")]
pub mod insta_glue {
    pub use insta;

    use super::{compare, Snapshot, Tolerance};

    /// Compares numeric snapshots under a tolerance; texts that are not tfbn
    /// snapshots fall back to plain equality.
    #[derive(Debug, Clone, Copy)]
    pub struct NumericComparator {
        /// The tolerance.
        pub tolerance: Tolerance,
    }

    impl insta::Comparator for NumericComparator {
        fn matches(&self, reference: &insta::Snapshot, test: &insta::Snapshot) -> bool {
            let text = |s: &insta::Snapshot| s.contents().as_text().map(|t| t.to_string());
            let (Some(old), Some(new)) = (text(reference), text(test)) else {
                return insta::DefaultComparator.matches(reference, test);
            };
            match (Snapshot::parse(&old), Snapshot::parse(&new)) {
                (Ok(o), Ok(n)) => {
                    let drifts = compare(&o, &n, self.tolerance);
                    for d in &drifts {
                        eprintln!("tfbn snapshot drift ({}): {d}", self.tolerance);
                    }
                    drifts.is_empty()
                }
                _ => old == new,
            }
        }

        fn dyn_clone(&self) -> Box<dyn insta::Comparator> {
            Box::new(*self)
        }
    }

    /// Settings with the numeric comparator for `tolerance` bound.
    pub fn settings(tolerance: Tolerance) -> insta::Settings {
        let mut s = insta::Settings::clone_current();
        s.set_comparator(Box::new(NumericComparator { tolerance }));
        s
    }
}

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

/// A seeded, reproducible input: normal values (mean 0.5, sd 2) plus a
/// per-channel offset, so every channel has its own statistics. Same seed,
/// same shape → same bits on every machine (SplitMix64 + Box–Muller in f64,
/// rounded once to f32).
pub fn seeded_input(shape: &[usize], channel_axis: usize, seed: u64) -> ndarray::ArrayD<f32> {
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let inner: usize = shape
        .iter()
        .skip(channel_axis + 1)
        .product::<usize>()
        .max(1);
    let c = shape.get(channel_axis).copied().unwrap_or(1).max(1);
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|i| {
            let u1 = ((next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            let u2 = (next() >> 11) as f64 / (1u64 << 53) as f64;
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            let ch = (i / inner) % c;
            (0.5 + 2.0 * z + 0.25 * ch as f64) as f32
        })
        .collect();
    ndarray::ArrayD::from_shape_vec(shape.to_vec(), values)
        .unwrap_or_else(|_| ndarray::ArrayD::zeros(vec![0]))
}

/// What [`snapshot_layers`] runs.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerSnapshotPlan {
    /// Layer names (as [`crate::find::discover`] names them); empty = all.
    pub layers: Vec<String>,
    /// Run inference.
    pub inference: bool,
    /// Run training.
    pub training: bool,
    /// Input seed.
    pub seed: u64,
    /// Batch size.
    pub batch: usize,
    /// Spatial size (H, W) of the 4-D input.
    pub spatial: (usize, usize),
}

impl Default for LayerSnapshotPlan {
    fn default() -> Self {
        LayerSnapshotPlan {
            layers: Vec::new(),
            inference: true,
            training: true,
            seed: 0,
            batch: 4,
            spatial: (5, 5),
        }
    }
}

fn push_input(
    snap: &mut Snapshot,
    name: &str,
    y: &crate::bn::BnInput,
    axis: usize,
    opts: &SnapshotOptions,
) -> Result<()> {
    use crate::bn::BnInput;
    let dtype = match y {
        BnInput::F32(_) => ValueType::F32,
        BnInput::F64(_) => ValueType::F64,
        BnInput::F16(_) => ValueType::F16,
        BnInput::BF16(_) => ValueType::BF16,
    };
    snap.push(ArraySnapshot::new(
        name,
        dtype,
        y.shape(),
        axis,
        &y.to_f64_vec(),
        opts,
    )?);
    Ok(())
}

fn push_vec(snap: &mut Snapshot, name: &str, v: &[f32], opts: &SnapshotOptions) -> Result<()> {
    let values: Vec<f64> = v.iter().map(|&x| x as f64).collect();
    snap.push(ArraySnapshot::new(
        name,
        ValueType::F32,
        &[v.len()],
        0,
        &values,
        opts,
    )?);
    Ok(())
}

/// Runs a checkpoint's batch-norm layers natively on seeded inputs and
/// snapshots their outputs (y; in training also the batch and moving
/// statistics).
pub fn snapshot_layers(
    source: &crate::source::Source,
    plan: &LayerSnapshotPlan,
    overrides: &crate::prepare::Overrides,
    opts: &SnapshotOptions,
) -> Result<Snapshot> {
    let layers = crate::find::discover(source);
    overrides.declared.check(&layers)?;
    let hypers = crate::hyper::recover(source, &layers)?;
    for want in &plan.layers {
        if crate::layers::find(&layers, want).is_none() {
            return Err(Error::LayerNotFound {
                name: want.clone(),
                known: layers
                    .iter()
                    .map(|l| l.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    let mut snap = Snapshot::default();
    for (layer, hyper) in layers.iter().zip(&hypers) {
        if !plan.layers.is_empty()
            && !plan
                .layers
                .iter()
                .any(|n| crate::layers::find(&layers, n).is_some_and(|l| l.name == layer.name))
        {
            continue;
        }
        let p = crate::prepare::prepare_layer(source, layer, hyper, overrides)?;
        snap.layers.push(SnapshotLayer {
            name: layer.name.clone(),
            settings: p.settings_line(),
            assumed: p.assumed_labels().into_iter().map(String::from).collect(),
        });
        let c = layer.channels as usize;
        let axis = p.config.resolved_axis(4).unwrap_or(3);
        let (h, w) = plan.spatial;
        let mut shape = vec![plan.batch, h, w];
        shape.insert(axis.min(3), c);
        let shape: Vec<usize> = shape.into_iter().take(4).collect();
        let x = crate::bn::BnInput::F32(seeded_input(&shape, axis, plan.seed));
        if plan.inference {
            let r = crate::bn::inference(&p.config, &p.params, &x)?;
            push_input(
                &mut snap,
                &format!("{}/inference/y", layer.name),
                &r.y,
                axis,
                opts,
            )?;
        }
        if plan.training {
            let r = crate::bn::training(&p.config, &p.params, &x)?;
            let base = format!("{}/training", layer.name);
            push_input(&mut snap, &format!("{base}/y"), &r.y, axis, opts)?;
            if let Some(m) = &r.batch_mean {
                push_vec(&mut snap, &format!("{base}/batch_mean"), m, opts)?;
            }
            if let Some(v) = &r.batch_variance {
                push_vec(&mut snap, &format!("{base}/batch_variance"), v, opts)?;
            }
            push_vec(
                &mut snap,
                &format!("{base}/moving_mean"),
                &r.moving_mean,
                opts,
            )?;
            push_vec(
                &mut snap,
                &format!("{base}/moving_variance"),
                &r.moving_variance,
                opts,
            )?;
        }
    }
    Ok(snap)
}
