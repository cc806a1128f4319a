//! TensorFlow's `DataType` enum (`tensorflow/core/framework/types.proto`) and
//! the facts tfbn needs about each value: its name, its element width and how
//! it maps onto safetensors and NumPy.

use std::fmt;

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
