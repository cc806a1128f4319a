//! Frozen `GraphDef`s: a `.pb` file holding a bare `GraphDef` whose
//! variables were turned into `Const` nodes (TF1
//! `graph_util.convert_variables_to_constants`, TF2
//! `convert_variables_to_constants_v2`). The weights are the float `Const`
//! nodes of rank one or more, stored under their node names; scalar
//! constants (epsilon, shape pieces) stay hyper-parameters of the graph.
//! Batch-norm layers are found in the graph as in `.meta` files
//! ([`crate::find`]), their constants standing for variables.
//! See `docs/formats.md#frozen-graphs`.

use std::path::Path;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::proto::graph::GraphDef;
use crate::proto::saved_model::MetaGraphDef;
use crate::proto::tensor::TensorProto;
use crate::source::{MemoryStore, NamingStyle, Source, SourceFormat, Variable, VariableRole};
use crate::tensor::{Tensor, TensorData};

/// Protobufs cannot exceed 2 GiB.
const MAX_GRAPH_BYTES: u64 = i32::MAX as u64;

/// Most elements the constants of one graph may expand to, together, from
/// short value lists (`float_val` with fewer values than the shape holds:
/// TF repeats the last one). A budget for the whole graph, not per
/// constant: a few bytes per node would otherwise allocate 512 MiB each.
/// Constants stored as `tensor_content` are bounded by the file.
const MAX_SPLAT_ELEMENTS: u64 = 1 << 26;

/// True when `path` names a `.pb` file other than a SavedModel's
/// `saved_model.pb`: a candidate frozen graph.
pub fn is_candidate(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "pb")
        && path.file_name().is_some_and(|n| n != "saved_model.pb")
}

/// Opens a frozen `GraphDef` as a [`Source`]: its float constants of rank
/// ≥ 1 as variables (key = name = node name), its graph for discovery.
pub fn open(path: &Path) -> Result<Source> {
    let bytes = crate::fsx::read_regular(path, MAX_GRAPH_BYTES)?;
    let graph: GraphDef = crate::proto::decode_proto(&bytes, path, "frozen graph", "GraphDef")?;
    drop(bytes);
    if graph.node.is_empty() || graph.node.iter().any(|n| n.op.is_empty()) {
        return Err(Error::GraphDefInvalid {
            path: path.to_path_buf(),
            what: "not a frozen GraphDef: it decodes to no nodes or to nodes without an op \
                   (a SavedModel's graph is read from its folder, a TF1 graph from beside its \
                   checkpoint)"
                .into(),
        });
    }
    let mut tensors = Vec::new();
    let mut variables = Vec::new();
    let mut splat_left = MAX_SPLAT_ELEMENTS;
    for node in &graph.node {
        if !matches!(node.op.as_str(), "Const" | "HostConst") {
            continue;
        }
        let Some(t) = node.attr_tensor("value") else {
            continue;
        };
        let Some(tensor) = decode(t, &mut splat_left).map_err(|what| Error::ConstantInvalid {
            path: path.to_path_buf(),
            node: node.name.clone(),
            what,
        })?
        else {
            continue;
        };
        if tensor.shape.is_empty() {
            continue;
        }
        variables.push(Variable {
            key: node.name.clone(),
            name: node.name.clone(),
            paths: Vec::new(),
            dtype: tensor.dtype,
            shape: tensor.shape.clone(),
            partitioned: false,
            role: VariableRole::Model,
        });
        tensors.push((node.name.clone(), tensor));
    }
    let notes = if variables.is_empty() {
        vec!["the graph holds no float constants of rank ≥ 1, so no weights".to_string()]
    } else {
        Vec::new()
    };
    let meta = MetaGraphDef {
        graph_def: Some(graph),
        ..Default::default()
    };
    Ok(Source::from_memory(
        path,
        SourceFormat::FrozenGraphDef,
        MemoryStore::new(vec![path.to_path_buf()], tensors),
        variables,
        NamingStyle::Tf1,
        Some(meta),
        notes,
    ))
}

/// A float constant's value as a tensor (little-endian bytes); `Ok(None)`
/// for other dtypes. Errors when the bytes contradict the shape, or when
/// repeating a short value list would take more than `splat_left`
/// elements (which it then spends).
pub(crate) fn decode(
    t: &TensorProto,
    splat_left: &mut u64,
) -> std::result::Result<Option<Tensor>, String> {
    let dtype = match DType::from_tf(t.dtype) {
        Some(d @ (DType::F32 | DType::F64 | DType::F16 | DType::BF16)) => d,
        _ => return Ok(None),
    };
    let width: u64 = match dtype {
        DType::F64 => 8,
        DType::F32 => 4,
        _ => 2,
    };
    let mut shape = Vec::new();
    for d in t.tensor_shape.iter().flat_map(|s| s.dim.iter()) {
        shape.push(
            u64::try_from(d.size)
                .map_err(|_| format!("dimension {} is negative or unknown", d.size))?,
        );
    }
    let elements = shape
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .ok_or("its shape overflows 64 bits")?;
    let nbytes = elements
        .checked_mul(width)
        .ok_or("its size overflows 64 bits")?;
    let bytes = if !t.tensor_content.is_empty() {
        if t.tensor_content.len() as u64 != nbytes {
            return Err(format!(
                "tensor_content has {} bytes but {elements} elements of {width} bytes need {nbytes}",
                t.tensor_content.len()
            ));
        }
        t.tensor_content.clone()
    } else {
        let given = match dtype {
            DType::F32 => t.float_val.len(),
            DType::F64 => t.double_val.len(),
            _ => t.half_val.len(),
        } as u64;
        if given > elements {
            return Err(format!(
                "lists {given} values but its shape holds {elements}"
            ));
        }
        if given < elements {
            if elements > *splat_left {
                return Err(format!(
                    "{given} values would repeat to {elements} elements; with the graph's other \
                     repeated constants that is over the {MAX_SPLAT_ELEMENTS} tfbn expands"
                ));
            }
            *splat_left -= elements;
        }
        let n = usize::try_from(elements).map_err(|_| "too many elements for this machine")?;
        let mut out = Vec::with_capacity(n.saturating_mul(width as usize));
        // TF repeats the last value given over the remaining elements
        // (zeros when none is given).
        for i in 0..n {
            match dtype {
                DType::F32 => {
                    let v = t.float_val.get(i).or(t.float_val.last()).copied();
                    out.extend_from_slice(&v.unwrap_or(0.0).to_le_bytes());
                }
                DType::F64 => {
                    let v = t.double_val.get(i).or(t.double_val.last()).copied();
                    out.extend_from_slice(&v.unwrap_or(0.0).to_le_bytes());
                }
                _ => {
                    let v = t.half_val.get(i).or(t.half_val.last()).copied();
                    out.extend_from_slice(&(v.unwrap_or(0) as u16).to_le_bytes());
                }
            }
        }
        out
    };
    Ok(Some(Tensor {
        dtype,
        shape,
        data: TensorData::Bytes(bytes),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::tensor::{tensor_shape_proto::Dim, TensorShapeProto};

    fn decode(t: &TensorProto) -> std::result::Result<Option<Tensor>, String> {
        super::decode(t, &mut { MAX_SPLAT_ELEMENTS })
    }

    fn proto(dtype: i32, dims: &[i64]) -> TensorProto {
        TensorProto {
            dtype,
            tensor_shape: Some(TensorShapeProto {
                dim: dims
                    .iter()
                    .map(|&size| Dim {
                        size,
                        name: String::new(),
                    })
                    .collect(),
                unknown_rank: false,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn float_val_repeats_its_last_value() {
        let mut t = proto(1, &[3]);
        t.float_val = vec![1.5, 2.0];
        let got = decode(&t).unwrap().unwrap();
        let vals: Vec<f32> = got
            .bytes()
            .unwrap()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(vals, [1.5, 2.0, 2.0]);
    }

    #[test]
    fn content_must_match_shape() {
        let mut t = proto(1, &[2]);
        t.tensor_content = vec![0; 12];
        assert!(decode(&t).unwrap_err().contains("12 bytes"));
    }

    #[test]
    fn huge_splat_is_refused_not_allocated() {
        let mut t = proto(1, &[1 << 20, 1 << 20]);
        t.float_val = vec![1.0];
        assert!(decode(&t).unwrap_err().contains("repeat"));
    }

    #[test]
    fn repeated_constants_share_one_budget() {
        let mut t = proto(2, &[(MAX_SPLAT_ELEMENTS / 2 + 1) as i64]);
        t.double_val = vec![1.0];
        let mut left = MAX_SPLAT_ELEMENTS / 2;
        assert!(super::decode(&t, &mut left).unwrap_err().contains("repeat"));
        let mut small = proto(1, &[3]);
        small.float_val = vec![1.0];
        let mut left = 3;
        assert!(super::decode(&small, &mut left).unwrap().is_some());
        assert_eq!(left, 0);
        assert!(super::decode(&small, &mut left).is_err());
    }

    #[test]
    fn negative_dims_and_overflow_are_errors() {
        assert!(decode(&proto(1, &[-1])).is_err());
        assert!(decode(&proto(1, &[1 << 40, 1 << 40])).is_err());
    }

    #[test]
    fn ints_are_not_weights() {
        assert!(decode(&proto(3, &[2])).unwrap().is_none());
    }
}
