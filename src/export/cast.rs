//! `--dtype`: the element type floating-point tensors are written in.
//!
//! Only floating-point tensors (`float16`, `bfloat16`, `float32`,
//! `float64`) are cast; integer and boolean tensors are written as stored.
//! Every cast rounds once, from the stored value straight to the target
//! type, to nearest with ties to even (IEEE 754 default; NumPy's `astype`
//! gives the same bits for every finite value). Widening casts are exact.

use std::borrow::Cow;

use half::{bf16, f16};
use serde::Serialize;

use crate::dtype::FloatDType;
use crate::error::{Error, Result};
use crate::label::UnknownLabel;
use crate::DType;

/// The element type of exported floating-point tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DtypeCast {
    /// Write every tensor in its stored type.
    #[default]
    Keep,
    /// Round every floating-point tensor once (to nearest, ties to even)
    /// to this type; other tensors keep theirs.
    To(FloatDType),
}

impl DtypeCast {
    /// Every choice: keep, then each floating type.
    pub const ALL: [DtypeCast; 5] = [
        DtypeCast::Keep,
        DtypeCast::To(FloatDType::F32),
        DtypeCast::To(FloatDType::F16),
        DtypeCast::To(FloatDType::BF16),
        DtypeCast::To(FloatDType::F64),
    ];

    /// The type a tensor stored as `stored` is written in.
    pub fn target(self, stored: DType) -> DType {
        match self {
            DtypeCast::To(t) if stored.is_bn_float() => t.into(),
            _ => stored,
        }
    }
}

impl std::fmt::Display for DtypeCast {
    /// `keep`, or TF's name of the target type.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DtypeCast::Keep => f.write_str("keep"),
            DtypeCast::To(t) => t.fmt(f),
        }
    }
}

impl std::str::FromStr for DtypeCast {
    type Err = UnknownLabel;

    /// `keep`, or a floating type's short or TF name.
    fn from_str(s: &str) -> std::result::Result<DtypeCast, UnknownLabel> {
        if s.trim().eq_ignore_ascii_case("keep") {
            return Ok(DtypeCast::Keep);
        }
        s.parse().map(DtypeCast::To)
    }
}

impl Serialize for DtypeCast {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Converts little-endian elements of type `from` to `to` (both floating
/// point, or equal). Borrows when the types are equal.
pub fn cast_bytes<'a>(
    name: &str,
    from: DType,
    to: DType,
    bytes: Cow<'a, [u8]>,
) -> Result<Cow<'a, [u8]>> {
    if from == to {
        return Ok(bytes);
    }
    if !from.is_bn_float() || !to.is_bn_float() {
        return Err(Error::InvalidArgument(format!(
            "{name}: cannot cast {from} to {to}; only floating-point tensors are cast"
        )));
    }
    let width = from.byte_width().unwrap_or(1);
    if bytes.len() % width != 0 {
        return Err(Error::TensorMismatch {
            key: name.to_string(),
            what: format!(
                "{} bytes is not a whole number of {from} elements",
                bytes.len()
            ),
        });
    }
    let n = bytes.len() / width;
    let out_width = to.byte_width().unwrap_or(1);
    let mut out = Vec::with_capacity(n * out_width);
    for chunk in bytes.chunks_exact(width) {
        let v = Value::decode(from, chunk);
        v.encode(to, &mut out);
    }
    Ok(Cow::Owned(out))
}

/// One floating-point element in its stored precision.
#[derive(Debug, Clone, Copy)]
enum Value {
    F64(f64),
    F32(f32),
    F16(f16),
    BF16(bf16),
}

impl Value {
    fn decode(dtype: DType, b: &[u8]) -> Value {
        let mut a8 = [0u8; 8];
        a8[..b.len().min(8)].copy_from_slice(&b[..b.len().min(8)]);
        match dtype {
            DType::F64 => Value::F64(f64::from_le_bytes(a8)),
            DType::F32 => Value::F32(f32::from_le_bytes([a8[0], a8[1], a8[2], a8[3]])),
            DType::F16 => Value::F16(f16::from_le_bytes([a8[0], a8[1]])),
            _ => Value::BF16(bf16::from_le_bytes([a8[0], a8[1]])),
        }
    }

    /// Rounds once to `to` (ties to even) and appends the LE bytes.
    fn encode(self, to: DType, out: &mut Vec<u8>) {
        match to {
            DType::F64 => out.extend_from_slice(&self.to_f64().to_le_bytes()),
            DType::F32 => {
                let v = match self {
                    Value::F64(v) => v as f32,
                    Value::F32(v) => v,
                    Value::F16(v) => v.to_f32(),
                    Value::BF16(v) => v.to_f32(),
                };
                out.extend_from_slice(&v.to_le_bytes())
            }
            DType::F16 => {
                let v = match self {
                    Value::F64(v) => f16::from_f32(f64_to_f32_round_to_odd(v)),
                    Value::F32(v) => f16::from_f32(v),
                    Value::F16(v) => v,
                    Value::BF16(v) => f16::from_f32(v.to_f32()),
                };
                out.extend_from_slice(&v.to_le_bytes())
            }
            _ => {
                let v = match self {
                    Value::F64(v) => bf16::from_f32(f64_to_f32_round_to_odd(v)),
                    Value::F32(v) => bf16::from_f32(v),
                    Value::F16(v) => bf16::from_f32(v.to_f32()),
                    Value::BF16(v) => v,
                };
                out.extend_from_slice(&v.to_le_bytes())
            }
        }
    }

    fn to_f64(self) -> f64 {
        match self {
            Value::F64(v) => v,
            Value::F32(v) => v as f64,
            Value::F16(v) => v.to_f64(),
            Value::BF16(v) => v.to_f64(),
        }
    }
}

/// Encodes `values` (given as `f64`, exactly representable or rounded once)
/// in `dtype`, little-endian. Integer types take the value truncated toward
/// zero (used for constants such as 0 and 1 only).
pub fn encode_constant(dtype: DType, value: f64, count: u64) -> Result<Vec<u8>> {
    let width = dtype.byte_width().ok_or_else(|| {
        Error::InvalidArgument(format!("cannot write a constant of dtype {dtype}"))
    })?;
    let mut one = Vec::with_capacity(width);
    match dtype {
        DType::F64 | DType::F32 | DType::F16 | DType::BF16 => {
            Value::F64(value).encode(dtype, &mut one)
        }
        DType::I64 => one.extend_from_slice(&(value as i64).to_le_bytes()),
        DType::I32 => one.extend_from_slice(&(value as i32).to_le_bytes()),
        _ => {
            return Err(Error::InvalidArgument(format!(
                "cannot write a constant of dtype {dtype}"
            )))
        }
    }
    let total = usize::try_from(count)
        .ok()
        .and_then(|c| c.checked_mul(width))
        .ok_or_else(|| Error::InvalidArgument(format!("{count} elements do not fit in memory")))?;
    let mut out = Vec::with_capacity(total);
    for _ in 0..count {
        out.extend_from_slice(&one);
    }
    Ok(out)
}

/// f64 → f32 with round-to-odd: truncate toward zero and set the last bit
/// when anything was dropped. Rounding that f32 once more to a type with at
/// most 22 significand bits (f16, bf16) then equals a single correct
/// rounding of the f64, with no double-rounding error.
fn f64_to_f32_round_to_odd(v: f64) -> f32 {
    let r = v as f32;
    if !r.is_finite() || r as f64 == v {
        return r;
    }
    // `as` rounded to nearest; step back toward zero if it rounded away.
    let mut bits = r.to_bits();
    if (r as f64).abs() > v.abs() {
        bits -= 1;
    }
    f32::from_bits(bits | 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn casts_round_to_nearest_even_once() {
        let vals = [
            1.0f32,
            1.0 + f32::EPSILON,
            65504.0,
            1e-8,
            -0.0,
            f32::INFINITY,
            0.1,
        ];
        let out = cast_bytes("t", DType::F32, DType::F16, Cow::Owned(f32s(&vals))).unwrap();
        let want: Vec<u8> = vals
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect();
        assert_eq!(out.as_ref(), want.as_slice());
        let out = cast_bytes("t", DType::F32, DType::BF16, Cow::Owned(f32s(&vals))).unwrap();
        let want: Vec<u8> = vals
            .iter()
            .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
            .collect();
        assert_eq!(out.as_ref(), want.as_slice());
        // f64 → f16 rounds once (no double rounding through f32).
        let x = 1.0f64 + 2f64.powi(-11) + 2f64.powi(-40);
        let out = cast_bytes(
            "t",
            DType::F64,
            DType::F16,
            Cow::Owned(x.to_le_bytes().to_vec()),
        )
        .unwrap();
        // `half`'s own from_f64 goes through f32 and rounds twice (1.0 here).
        assert_eq!(out.as_ref(), f16::from_bits(0x3C01).to_le_bytes());
        let out = cast_bytes(
            "t",
            DType::F64,
            DType::BF16,
            Cow::Owned(
                (1.0f64 + 2f64.powi(-8) + 2f64.powi(-40))
                    .to_le_bytes()
                    .to_vec(),
            ),
        )
        .unwrap();
        assert_eq!(out.as_ref(), bf16::from_bits(0x3F81).to_le_bytes());
    }

    #[test]
    fn equal_types_borrow() {
        let b = f32s(&[1.0]);
        assert!(matches!(
            cast_bytes("t", DType::F32, DType::F32, Cow::Borrowed(&b)).unwrap(),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            DtypeCast::To(FloatDType::F16).target(DType::I64),
            DType::I64
        );
    }

    #[test]
    fn constants() {
        assert_eq!(
            encode_constant(DType::F32, 1.0, 2).unwrap(),
            f32s(&[1.0, 1.0])
        );
        assert_eq!(encode_constant(DType::I64, 0.0, 1).unwrap(), vec![0u8; 8]);
    }
}
