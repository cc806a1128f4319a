//! The snapshot text: building an array's snapshot (per-channel statistics,
//! digest, samples, exact bits) and writing and parsing the document.

use std::fmt::Write as _;

use super::*;
use crate::error::{Error, Result};

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
