//! TensorFlow's `DataType` enum (`tensorflow/core/framework/types.proto`) and
//! the facts tfbn needs about each value: its name, its element width and how
//! it maps onto safetensors and NumPy; the four floating types batch norm
//! runs in ([`FloatDType`]) and an array tagged with one of them
//! ([`FloatArray`]).
//!
//! Labels follow one scheme: `Display` writes TF's name (`float32`,
//! `bfloat16`, …), `FromStr` reads TF's name or the short one (`f32`,
//! `bf16`, …), and `short()` gives the short one for narrow columns.

use std::fmt;
use std::str::FromStr;

use half::{bf16, f16};

use crate::label::UnknownLabel;
use ndarray::{ArrayD, IxDyn};

/// A TensorFlow data type, as stored in `BundleEntryProto.dtype`,
/// `TensorProto.dtype` and node attributes.
///
/// `_REF` variants (base value + 100) are folded onto their base type by
/// [`DType::from_tf`]; `DT_INVALID` (0) and unknown values are rejected there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DType {
    /// `DT_FLOAT` (1): IEEE binary32.
    F32,
    /// `DT_DOUBLE` (2): IEEE binary64.
    F64,
    /// `DT_INT32` (3).
    I32,
    /// `DT_UINT8` (4).
    U8,
    /// `DT_INT16` (5).
    I16,
    /// `DT_INT8` (6).
    I8,
    /// `DT_STRING` (7): variable-length byte strings.
    String,
    /// `DT_COMPLEX64` (8): pairs of binary32 (re, im).
    Complex64,
    /// `DT_INT64` (9).
    I64,
    /// `DT_BOOL` (10): one byte, 0 or 1.
    Bool,
    /// `DT_QINT8` (11).
    QI8,
    /// `DT_QUINT8` (12).
    QU8,
    /// `DT_QINT32` (13).
    QI32,
    /// `DT_BFLOAT16` (14).
    BF16,
    /// `DT_QINT16` (15).
    QI16,
    /// `DT_QUINT16` (16).
    QU16,
    /// `DT_UINT16` (17).
    U16,
    /// `DT_COMPLEX128` (18): pairs of binary64.
    Complex128,
    /// `DT_HALF` (19): IEEE binary16.
    F16,
    /// `DT_RESOURCE` (20): a handle, never stored as data.
    Resource,
    /// `DT_VARIANT` (21): opaque, stored with its own framing.
    Variant,
    /// `DT_UINT32` (22).
    U32,
    /// `DT_UINT64` (23).
    U64,
    /// `DT_FLOAT8_E5M2` (24).
    F8E5M2,
    /// `DT_FLOAT8_E4M3FN` (25).
    F8E4M3FN,
    /// `DT_FLOAT8_E4M3FNUZ` (26).
    F8E4M3FNUZ,
    /// `DT_FLOAT8_E4M3B11FNUZ` (27).
    F8E4M3B11FNUZ,
    /// `DT_FLOAT8_E5M2FNUZ` (28).
    F8E5M2FNUZ,
    /// `DT_INT4` (29).
    I4,
    /// `DT_UINT4` (30).
    U4,
    /// `DT_INT2` (31).
    I2,
    /// `DT_UINT2` (32).
    U2,
    /// `DT_FLOAT4_E2M1FN` (33).
    F4E2M1FN,
}

const TABLE: &[(DType, i32, &str)] = &[
    (DType::F32, 1, "float32"),
    (DType::F64, 2, "float64"),
    (DType::I32, 3, "int32"),
    (DType::U8, 4, "uint8"),
    (DType::I16, 5, "int16"),
    (DType::I8, 6, "int8"),
    (DType::String, 7, "string"),
    (DType::Complex64, 8, "complex64"),
    (DType::I64, 9, "int64"),
    (DType::Bool, 10, "bool"),
    (DType::QI8, 11, "qint8"),
    (DType::QU8, 12, "quint8"),
    (DType::QI32, 13, "qint32"),
    (DType::BF16, 14, "bfloat16"),
    (DType::QI16, 15, "qint16"),
    (DType::QU16, 16, "quint16"),
    (DType::U16, 17, "uint16"),
    (DType::Complex128, 18, "complex128"),
    (DType::F16, 19, "float16"),
    (DType::Resource, 20, "resource"),
    (DType::Variant, 21, "variant"),
    (DType::U32, 22, "uint32"),
    (DType::U64, 23, "uint64"),
    (DType::F8E5M2, 24, "float8_e5m2"),
    (DType::F8E4M3FN, 25, "float8_e4m3fn"),
    (DType::F8E4M3FNUZ, 26, "float8_e4m3fnuz"),
    (DType::F8E4M3B11FNUZ, 27, "float8_e4m3b11fnuz"),
    (DType::F8E5M2FNUZ, 28, "float8_e5m2fnuz"),
    (DType::I4, 29, "int4"),
    (DType::U4, 30, "uint4"),
    (DType::I2, 31, "int2"),
    (DType::U2, 32, "uint2"),
    (DType::F4E2M1FN, 33, "float4_e2m1fn"),
];

impl DType {
    /// Maps a TF `DataType` code to a [`DType`]; `_REF` codes (100 + base)
    /// map onto their base. Returns `None` for `DT_INVALID` and unknown codes.
    pub fn from_tf(code: i32) -> Option<DType> {
        let base = if code > 100 { code - 100 } else { code };
        TABLE
            .iter()
            .find(|(_, c, _)| *c == base)
            .map(|(d, _, _)| *d)
    }

    /// The TF `DataType` code (without the `_REF` offset).
    pub fn tf_code(self) -> i32 {
        TABLE
            .iter()
            .find(|(d, _, _)| *d == self)
            .map(|(_, c, _)| *c)
            .unwrap_or(0)
    }

    /// TensorFlow's Python name for the type (`float32`, `bfloat16`, …).
    pub fn name(self) -> &'static str {
        TABLE
            .iter()
            .find(|(d, _, _)| *d == self)
            .map(|(_, _, n)| *n)
            .unwrap_or("invalid")
    }

    /// Parses a name as printed by [`DType::name`].
    pub fn from_name(name: &str) -> Option<DType> {
        TABLE
            .iter()
            .find(|(_, _, n)| *n == name)
            .map(|(d, _, _)| *d)
    }

    /// Bytes per element in a tensor bundle's data file, or `None` for types
    /// that are not stored as fixed-width elements (string, resource,
    /// variant, and the sub-byte types, which TF packs differently).
    pub fn byte_width(self) -> Option<usize> {
        use DType::*;
        Some(match self {
            U8 | I8 | Bool | QI8 | QU8 | F8E5M2 | F8E4M3FN | F8E4M3FNUZ | F8E4M3B11FNUZ
            | F8E5M2FNUZ => 1,
            I16 | QI16 | QU16 | U16 | BF16 | F16 => 2,
            F32 | I32 | QI32 | U32 => 4,
            F64 | I64 | U64 | Complex64 => 8,
            Complex128 => 16,
            String | Resource | Variant | I4 | U4 | I2 | U2 | F4E2M1FN => return None,
        })
    }

    /// True for the floating-point types a batch-norm layer can hold.
    pub fn is_bn_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
    }

    /// The safetensors dtype with the same element encoding, if any.
    pub fn to_safetensors(self) -> Option<safetensors::Dtype> {
        use safetensors::Dtype as S;
        Some(match self {
            DType::F32 => S::F32,
            DType::F64 => S::F64,
            DType::F16 => S::F16,
            DType::BF16 => S::BF16,
            DType::I8 => S::I8,
            DType::U8 => S::U8,
            DType::I16 => S::I16,
            DType::U16 => S::U16,
            DType::I32 => S::I32,
            DType::U32 => S::U32,
            DType::I64 => S::I64,
            DType::U64 => S::U64,
            DType::Bool => S::BOOL,
            DType::F8E5M2 => S::F8_E5M2,
            DType::F8E4M3FN => S::F8_E4M3,
            _ => return None,
        })
    }

    /// The TF type for a safetensors dtype, where one exists.
    pub fn from_safetensors(d: safetensors::Dtype) -> Option<DType> {
        use safetensors::Dtype as S;
        Some(match d {
            S::F32 => DType::F32,
            S::F64 => DType::F64,
            S::F16 => DType::F16,
            S::BF16 => DType::BF16,
            S::I8 => DType::I8,
            S::U8 => DType::U8,
            S::I16 => DType::I16,
            S::U16 => DType::U16,
            S::I32 => DType::I32,
            S::U32 => DType::U32,
            S::I64 => DType::I64,
            S::U64 => DType::U64,
            S::BOOL => DType::Bool,
            S::F8_E5M2 => DType::F8E5M2,
            S::F8_E4M3 => DType::F8E4M3FN,
            _ => return None,
        })
    }
}

impl serde::Serialize for DType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DType {
    type Err = UnknownLabel;

    /// TF's name, or a floating type's short name (`f32`, `bf16`, …).
    fn from_str(s: &str) -> Result<DType, UnknownLabel> {
        DType::from_name(s.trim())
            .or_else(|| s.parse::<FloatDType>().ok().map(DType::from))
            .ok_or_else(|| UnknownLabel {
                what: "type",
                text: s.to_string(),
            })
    }
}

/// The element type of a batch-norm input and output (`x`, `y`): the four
/// floating types TF's batch-norm kernels take.
///
/// TF keeps the layer's variables and statistics in `float32` for `float32`,
/// `float16` and `bfloat16` inputs (the fused op's `U`, the Keras layers'
/// upcast), and in `float64` for a `float64` layer
/// ([`FloatDType::stats_dtype`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum FloatDType {
    /// `float32`.
    #[serde(rename = "float32")]
    F32,
    /// `float16` (IEEE half).
    #[serde(rename = "float16")]
    F16,
    /// `bfloat16`.
    #[serde(rename = "bfloat16")]
    BF16,
    /// `float64`.
    #[serde(rename = "float64")]
    F64,
}

impl FloatDType {
    /// Every type, in report order.
    pub const ALL: [FloatDType; 4] = [
        FloatDType::F32,
        FloatDType::F16,
        FloatDType::BF16,
        FloatDType::F64,
    ];

    /// TF's name: `float32`, `float16`, `bfloat16`, `float64`.
    pub fn name(self) -> &'static str {
        DType::from(self).name()
    }

    /// The short name: `f32`, `f16`, `bf16`, `f64`.
    pub fn short(self) -> &'static str {
        match self {
            FloatDType::F32 => "f32",
            FloatDType::F16 => "f16",
            FloatDType::BF16 => "bf16",
            FloatDType::F64 => "f64",
        }
    }

    /// The type of the layer's variables and statistics: `float64` for a
    /// `float64` input, `float32` otherwise.
    pub fn stats_dtype(self) -> FloatDType {
        match self {
            FloatDType::F64 => FloatDType::F64,
            _ => FloatDType::F32,
        }
    }
}

impl From<FloatDType> for DType {
    fn from(d: FloatDType) -> DType {
        match d {
            FloatDType::F32 => DType::F32,
            FloatDType::F16 => DType::F16,
            FloatDType::BF16 => DType::BF16,
            FloatDType::F64 => DType::F64,
        }
    }
}

impl TryFrom<DType> for FloatDType {
    type Error = DType;

    /// The floating type, or the [`DType`] back when it is not one.
    fn try_from(d: DType) -> Result<FloatDType, DType> {
        Ok(match d {
            DType::F32 => FloatDType::F32,
            DType::F16 => FloatDType::F16,
            DType::BF16 => FloatDType::BF16,
            DType::F64 => FloatDType::F64,
            other => return Err(other),
        })
    }
}

impl fmt::Display for FloatDType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FloatDType {
    type Err = UnknownLabel;

    /// The short name or TF's name, case-insensitive (`half` too).
    fn from_str(s: &str) -> Result<FloatDType, UnknownLabel> {
        let t = s.trim().to_ascii_lowercase();
        if t == "half" {
            return Ok(FloatDType::F16);
        }
        FloatDType::ALL
            .into_iter()
            .find(|d| d.short() == t || d.name() == t)
            .ok_or_else(|| UnknownLabel {
                what: "type",
                text: s.to_string(),
            })
    }
}

/// The elements of `a` (an array or a view) in row-major order, borrowed
/// where the layout is standard, copied once otherwise.
pub(crate) fn flat<S>(a: &ndarray::ArrayBase<S, IxDyn>) -> std::borrow::Cow<'_, [S::Elem]>
where
    S: ndarray::Data,
    S::Elem: Clone,
{
    match a.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(a.iter().cloned().collect()),
    }
}

/// An array of one of the floating types batch norm runs in: a layer's
/// input and output, a parameter as stored, TF's fetched results. Any
/// memory layout is accepted where one is read; the constructors here make
/// standard (row-major) layout.
#[derive(Debug, Clone, PartialEq)]
pub enum FloatArray {
    /// `float32`.
    F32(ArrayD<f32>),
    /// `float64`.
    F64(ArrayD<f64>),
    /// `float16` (batch norm computes in `float32` and rounds back to
    /// nearest-even).
    F16(ArrayD<f16>),
    /// `bfloat16` (likewise).
    BF16(ArrayD<bf16>),
}

impl FloatArray {
    /// The array's shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            FloatArray::F32(a) => a.shape(),
            FloatArray::F64(a) => a.shape(),
            FloatArray::F16(a) => a.shape(),
            FloatArray::BF16(a) => a.shape(),
        }
    }

    /// The element type.
    pub fn dtype(&self) -> FloatDType {
        match self {
            FloatArray::F32(_) => FloatDType::F32,
            FloatArray::F16(_) => FloatDType::F16,
            FloatArray::BF16(_) => FloatDType::BF16,
            FloatArray::F64(_) => FloatDType::F64,
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        match self {
            FloatArray::F32(a) => a.len(),
            FloatArray::F16(a) => a.len(),
            FloatArray::BF16(a) => a.len(),
            FloatArray::F64(a) => a.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A one-dimensional array of `values` rounded to `dtype` (to nearest,
    /// ties to even).
    pub fn from_f64(dtype: FloatDType, values: &[f64]) -> FloatArray {
        fn vec1<T>(v: Vec<T>) -> ArrayD<T> {
            ndarray::Array1::from(v).into_dyn()
        }
        match dtype {
            FloatDType::F32 => FloatArray::F32(vec1(values.iter().map(|&v| v as f32).collect())),
            FloatDType::F16 => FloatArray::F16(vec1(values.iter().map(|&v| f16::from_f64(v)).collect())),
            FloatDType::BF16 => {
                FloatArray::BF16(vec1(values.iter().map(|&v| bf16::from_f64(v)).collect()))
            }
            FloatDType::F64 => FloatArray::F64(vec1(values.to_vec())),
        }
    }

    /// `float32` values widened to `dtype`'s statistics type
    /// ([`FloatDType::stats_dtype`]), one-dimensional: the layer's
    /// variables as a layer of that type holds them.
    pub fn params(dtype: FloatDType, values: &[f32]) -> FloatArray {
        match dtype.stats_dtype() {
            FloatDType::F64 => FloatArray::F64(
                ndarray::Array1::from_iter(values.iter().map(|&v| f64::from(v))).into_dyn(),
            ),
            _ => FloatArray::F32(ndarray::Array1::from(values.to_vec()).into_dyn()),
        }
    }

    /// The same elements (in row-major order) with another shape of the
    /// same size.
    pub fn reshaped(&self, shape: &[usize]) -> Result<FloatArray, ndarray::ShapeError> {
        let sh = IxDyn(shape);
        Ok(match self {
            FloatArray::F32(a) => FloatArray::F32(ArrayD::from_shape_vec(sh, a.iter().copied().collect())?),
            FloatArray::F16(a) => FloatArray::F16(ArrayD::from_shape_vec(sh, a.iter().copied().collect())?),
            FloatArray::BF16(a) => FloatArray::BF16(ArrayD::from_shape_vec(sh, a.iter().copied().collect())?),
            FloatArray::F64(a) => FloatArray::F64(ArrayD::from_shape_vec(sh, a.iter().copied().collect())?),
        })
    }

    /// Every element widened to `f64` (exact), in row-major order.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match self {
            FloatArray::F32(a) => a.iter().map(|&v| f64::from(v)).collect(),
            FloatArray::F64(a) => a.iter().copied().collect(),
            FloatArray::F16(a) => a.iter().map(|v| v.to_f64()).collect(),
            FloatArray::BF16(a) => a.iter().map(|v| v.to_f64()).collect(),
        }
    }

    /// Every element as `f32`, in row-major order: exact for `float32`,
    /// `float16` and `bfloat16`, rounded to nearest for `float64`.
    pub fn to_f32_lossy(&self) -> Vec<f32> {
        match self {
            FloatArray::F32(a) => a.iter().copied().collect(),
            FloatArray::F16(a) => a.iter().map(|x| x.to_f32()).collect(),
            FloatArray::BF16(a) => a.iter().map(|x| x.to_f32()).collect(),
            FloatArray::F64(a) => a.iter().map(|&x| x as f32).collect(),
        }
    }

    /// The `float32` elements as one slice, when that is the type and the
    /// layout is standard.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match self {
            FloatArray::F32(a) => a.as_slice(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_ref_types_fold() {
        for (d, code, name) in TABLE {
            assert_eq!(DType::from_tf(*code), Some(*d));
            assert_eq!(DType::from_tf(*code + 100), Some(*d));
            assert_eq!(d.tf_code(), *code);
            assert_eq!(DType::from_name(name), Some(*d));
        }
        assert_eq!(DType::from_tf(0), None);
        assert_eq!(DType::from_tf(34), None);
        assert_eq!(DType::from_tf(-1), None);
        assert_eq!(DType::from_tf(100), None);
    }
}
