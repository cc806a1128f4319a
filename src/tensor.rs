//! An owned tensor as read from a checkpoint: dtype, shape and the element
//! bytes exactly as TensorFlow stores them (little-endian, row-major).

use crate::dtype::DType;

/// The values of a [`Tensor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TensorData {
    /// Fixed-width elements, little-endian, row-major; `len = count × width`.
    Bytes(Vec<u8>),
    /// `DT_STRING` elements, row-major.
    Strings(Vec<Vec<u8>>),
}

/// A tensor value read from a checkpoint or SavedModel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tensor {
    /// Element type.
    pub dtype: DType,
    /// Dimensions; empty for a scalar.
    pub shape: Vec<u64>,
    /// The elements.
    pub data: TensorData,
}

impl Tensor {
    /// Number of elements (the product of `shape`; 1 for a scalar).
    ///
    /// Shapes come from validated entries, so the product fits in `u64`;
    /// it saturates rather than wraps if it ever does not.
    pub fn num_elements(&self) -> u64 {
        self.shape
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .unwrap_or(u64::MAX)
    }

    /// The raw little-endian bytes of a fixed-width tensor.
    pub fn bytes(&self) -> Option<&[u8]> {
        match &self.data {
            TensorData::Bytes(b) => Some(b),
            TensorData::Strings(_) => None,
        }
    }

    /// The elements of a string tensor.
    pub fn strings(&self) -> Option<&[Vec<u8>]> {
        match &self.data {
            TensorData::Strings(s) => Some(s),
            TensorData::Bytes(_) => None,
        }
    }

    /// The values widened to `f64`, for float, integer and bool tensors
    /// (f16 and bf16 widen exactly). `None` for strings and complex types.
    pub fn to_f64_vec(&self) -> Option<Vec<f64>> {
        let b = self.bytes()?;
        macro_rules! conv {
            ($t:ty, $n:expr, $f:expr) => {
                b.chunks_exact($n)
                    .map(|c| {
                        let mut a = [0u8; $n];
                        a.copy_from_slice(c);
                        #[allow(clippy::redundant_closure_call)]
                        ($f)(<$t>::from_le_bytes(a))
                    })
                    .collect()
            };
        }
        Some(match self.dtype {
            DType::F32 => conv!(f32, 4, |v: f32| v as f64),
            DType::F64 => conv!(f64, 8, |v: f64| v),
            DType::F16 => conv!(u16, 2, |v: u16| half::f16::from_bits(v).to_f64()),
            DType::BF16 => conv!(u16, 2, |v: u16| half::bf16::from_bits(v).to_f64()),
            DType::I8 => b.iter().map(|&v| v as i8 as f64).collect(),
            DType::U8 | DType::Bool => b.iter().map(|&v| v as f64).collect(),
            DType::I16 => conv!(i16, 2, |v: i16| v as f64),
            DType::U16 => conv!(u16, 2, |v: u16| v as f64),
            DType::I32 => conv!(i32, 4, |v: i32| v as f64),
            DType::U32 => conv!(u32, 4, |v: u32| v as f64),
            DType::I64 => conv!(i64, 8, |v: i64| v as f64),
            DType::U64 => conv!(u64, 8, |v: u64| v as f64),
            _ => return None,
        })
    }

    /// The values as `f32`, for f32, f16 and bf16 tensors (exact), and f64
    /// (rounded). `None` otherwise.
    pub fn to_f32_vec(&self) -> Option<Vec<f32>> {
        match self.dtype {
            DType::F32 => Some(
                self.bytes()?
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            DType::F16 | DType::BF16 | DType::F64 => {
                Some(self.to_f64_vec()?.into_iter().map(|v| v as f32).collect())
            }
            _ => None,
        }
    }
}
