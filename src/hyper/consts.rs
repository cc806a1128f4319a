//! Graph constants as TF writes them (`TensorProto` `float_val`,
//! `tensor_content`, `half_val`, …; `docs/formats.md#constants`), and the
//! Python floats behind TF's f32 hyper-parameters.

use crate::proto::tensor::TensorProto;

/// The number of elements `t`'s shape holds, checked: an error for a
/// negative dimension or a product beyond 64 bits.
fn element_count(t: &TensorProto) -> std::result::Result<u64, String> {
    t.tensor_shape
        .iter()
        .flat_map(|s| s.dim.iter())
        .try_fold(1u64, |elements, d| {
            let size = u64::try_from(d.size).map_err(|_| {
                format!(
                    "constant has dimension {}; shapes must be non-negative",
                    d.size
                )
            })?;
            elements
                .checked_mul(size)
                .ok_or_else(|| "constant's shape overflows 64 bits".to_string())
        })
}

/// One float constant that holds a single value (or the same value in every
/// element). `Ok(None)` for a non-float or non-uniform constant; an error
/// when its bytes contradict its shape (reliability case 45).
pub(crate) fn const_scalar(t: &TensorProto) -> std::result::Result<Option<f64>, String> {
    let width = match t.dtype {
        1 => 4,  // DT_FLOAT
        2 => 8,  // DT_DOUBLE
        14 => 2, // DT_BFLOAT16
        19 => 2, // DT_HALF
        _ => return Ok(None),
    };
    let elements = element_count(t)?;
    let values: Vec<f64> = if !t.tensor_content.is_empty() {
        let expected = elements.saturating_mul(width);
        if t.tensor_content.len() as u64 != expected {
            return Err(format!(
                "constant's tensor_content has {} bytes but {elements} elements of {width} bytes need {expected}",
                t.tensor_content.len()
            ));
        }
        t.tensor_content
            .chunks_exact(width as usize)
            .map(|c| match (t.dtype, c) {
                (1, &[a, b, c, d]) => f32::from_le_bytes([a, b, c, d]) as f64,
                (2, c) => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(c);
                    f64::from_le_bytes(b)
                }
                (14, &[a, b]) => half::bf16::from_bits(u16::from_le_bytes([a, b])).to_f64(),
                (19, &[a, b]) => half::f16::from_bits(u16::from_le_bytes([a, b])).to_f64(),
                _ => f64::NAN,
            })
            .collect()
    } else {
        let vals: Vec<f64> = match t.dtype {
            1 => t.float_val.iter().map(|&v| v as f64).collect(),
            2 => t.double_val.clone(),
            14 => t
                .half_val
                .iter()
                .map(|&v| half::bf16::from_bits(v as u16).to_f64())
                .collect(),
            _ => t
                .half_val
                .iter()
                .map(|&v| half::f16::from_bits(v as u16).to_f64())
                .collect(),
        };
        if vals.len() as u64 > elements {
            return Err(format!(
                "constant lists {} values but its shape holds {elements}",
                vals.len()
            ));
        }
        // TF fills the remaining elements with the last value given.
        vals
    };
    let Some(&first) = values.first() else {
        return Ok(None);
    };
    if values.iter().all(|v| v.to_bits() == first.to_bits()) {
        Ok(Some(first))
    } else {
        Ok(None)
    }
}

/// The elements of an integer constant (`DT_INT32`, `DT_INT64`);
/// `Ok(None)` for other dtypes or more than 64 elements, an error when its
/// bytes contradict its shape.
pub(crate) fn const_ints(t: &TensorProto) -> std::result::Result<Option<Vec<i64>>, String> {
    let width: usize = match t.dtype {
        3 => 4, // DT_INT32
        9 => 8, // DT_INT64
        _ => return Ok(None),
    };
    let elements = element_count(t)?;
    if elements > 64 {
        return Ok(None);
    }
    let n = elements as usize;
    if !t.tensor_content.is_empty() {
        if t.tensor_content.len() != n * width {
            return Err(format!(
                "constant's tensor_content has {} bytes but {n} elements of {width} bytes need {}",
                t.tensor_content.len(),
                n * width
            ));
        }
        return Ok(Some(
            t.tensor_content
                .chunks_exact(width)
                .map(|c| match *c {
                    [a, b, c, d] => i32::from_le_bytes([a, b, c, d]) as i64,
                    [a, b, c, d, e, f, g, h] => i64::from_le_bytes([a, b, c, d, e, f, g, h]),
                    _ => 0,
                })
                .collect(),
        ));
    }
    let vals: Vec<i64> = if width == 4 {
        t.int_val.iter().map(|&v| v as i64).collect()
    } else {
        t.int64_val.clone()
    };
    if vals.len() > n {
        return Err(format!(
            "constant lists {} values but its shape holds {n}",
            vals.len()
        ));
    }
    let mut out = vals;
    // TF fills the remaining elements with the last value given.
    if let Some(&last) = out.last() {
        out.resize(n, last);
    }
    Ok(Some(out))
}

/// The channel axis and input rank a fused op's `data_format` implies.
pub(crate) fn axis_of_format(format: &str) -> Option<(i64, usize)> {
    match format {
        "NHWC" => Some((3, 4)),
        "NCHW" => Some((1, 4)),
        "NDHWC" => Some((4, 5)),
        "NCDHW" => Some((1, 5)),
        _ => None,
    }
}

/// The Python float a graph's f32 was made from, as far as the f32 tells:
/// the shortest decimal that rounds to it (`0.01f32` → `0.01`).
pub(crate) fn python_float(v: f32) -> f64 {
    format!("{v}").parse().unwrap_or(v as f64)
}

/// The momentum `m` with the fewest significant digits for which
/// `f32(1 − m)` (computed in double, as Keras does) equals `decay`.
pub(crate) fn momentum_from_decay(decay: f32) -> f64 {
    let approx = 1.0 - decay as f64;
    for digits in 1..=17 {
        let m: f64 = format!("{:.*e}", digits - 1, approx)
            .parse()
            .unwrap_or(approx);
        if crate::bn::decay_python(m) == decay {
            return m;
        }
    }
    approx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_values_from_f32() {
        assert_eq!(python_float(0.001f32), 0.001);
        assert_eq!(python_float(2e-5f32), 2e-5);
        assert_eq!(python_float(1.001e-5f32), 1.001e-5);
        assert_eq!(momentum_from_decay(crate::bn::decay_python(0.99)), 0.99);
        assert_eq!(momentum_from_decay(crate::bn::decay_python(0.95)), 0.95);
        assert_eq!(momentum_from_decay(crate::bn::decay_python(0.9)), 0.9);
        assert_eq!(momentum_from_decay(crate::bn::decay_python(0.997)), 0.997);
        assert_eq!(momentum_from_decay(crate::bn::decay_python(0.8)), 0.8);
    }

    fn scalar(dtype: i32) -> TensorProto {
        TensorProto {
            dtype,
            tensor_shape: Some(Default::default()),
            ..Default::default()
        }
    }

    #[test]
    fn constants_from_every_encoding() {
        // float_val, as TF writes scalars: 08 01 12 00 2A 04 6F 12 83 3A.
        let t: TensorProto = prost::Message::decode(
            &[0x08, 0x01, 0x12, 0x00, 0x2A, 0x04, 0x6F, 0x12, 0x83, 0x3A][..],
        )
        .unwrap();
        assert_eq!(const_scalar(&t).unwrap(), Some(0.001f32 as f64));
        let mut t = scalar(1);
        t.tensor_content = 1e-5f32.to_le_bytes().to_vec();
        assert_eq!(const_scalar(&t).unwrap(), Some(1e-5f32 as f64));
        let mut t = scalar(2);
        t.double_val = vec![1e-3];
        assert_eq!(const_scalar(&t).unwrap(), Some(1e-3));
        let mut t = scalar(19);
        t.half_val = vec![half::f16::from_f32(0.5).to_bits() as i32];
        assert_eq!(const_scalar(&t).unwrap(), Some(0.5));
        // Not a float: not an ε.
        let mut t = scalar(3);
        t.int_val = vec![1];
        assert_eq!(const_scalar(&t).unwrap(), None);
        // Case 45: content length ≠ shape × width.
        let mut t = scalar(1);
        t.tensor_content = vec![0; 7];
        assert!(const_scalar(&t).is_err());
        // A vector of different values is not a scalar ε.
        let mut t = scalar(1);
        t.tensor_shape = Some(crate::proto::tensor::TensorShapeProto {
            dim: vec![crate::proto::tensor::tensor_shape_proto::Dim {
                size: 2,
                name: String::new(),
            }],
            unknown_rank: false,
        });
        t.float_val = vec![1.0, 2.0];
        assert_eq!(const_scalar(&t).unwrap(), None);
        t.float_val = vec![1.0, 2.0, 3.0];
        assert!(const_scalar(&t).is_err());
    }
}
