//! Comparing two snapshots under a tolerance and naming what moved.

use super::*;

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
pub fn drifts(old: &Snapshot, new: &Snapshot, tol: Tolerance) -> Vec<Drift> {
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
