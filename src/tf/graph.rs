//! Small helpers over the `tensorflow` crate's graph API: session options,
//! placeholders, constants and the element-wise ops batch norm is made of,
//! each mapping TF's status to [`Error::TensorFlowFailed`] with the op's name.

use tensorflow::{
    ops, BFloat16, DataType, Graph, Operation, Output, Scope, Session, SessionOptions, Shape,
    Tensor, TensorType,
};

use super::tf_error;
use crate::error::{Error, Result};

/// Protobuf wire helpers for the few `ConfigProto` fields tfbn sets (no
/// protobuf dependency for three fields).
fn varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn field_varint(out: &mut Vec<u8>, field: u32, v: u64) {
    // Wire type 0 (varint).
    varint(out, (field as u64) << 3);
    varint(out, v);
}

fn field_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    varint(out, ((field as u64) << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A serialized `ConfigProto`:
///
/// * `intra_op_parallelism_threads` (2) = `threads`, `inter_op_parallelism_threads` (5) = 1:
///   the thread count is part of a result (oneDNN's sums), so it is set, not
///   left to TF;
/// * `graph_options` (10) → `optimizer_options` (3) → `opt_level` (3) = `L0`
///   (−1): no constant folding or CSE by the classic graph optimizer;
/// * `graph_options` → `rewrite_options` (10) → `disable_meta_optimizer`
///   (19) = true: no Grappler, whose remapper would replace an inference
///   `FusedBatchNorm` by other ops (docs/bn-arithmetic.md#which-kernel-runs). Ops then run as TF's
///   eager mode runs them, one kernel each.
pub(crate) fn config_proto(threads: usize) -> Vec<u8> {
    let mut optimizer = Vec::new();
    field_varint(&mut optimizer, 3, (-1i64) as u64);
    let mut rewrite = Vec::new();
    field_varint(&mut rewrite, 19, 1);
    let mut graph = Vec::new();
    field_bytes(&mut graph, 3, &optimizer);
    field_bytes(&mut graph, 10, &rewrite);
    let mut config = Vec::new();
    field_varint(&mut config, 2, threads.max(1) as u64);
    field_varint(&mut config, 5, 1);
    field_bytes(&mut config, 10, &graph);
    config
}

/// A session over `graph` with [`config_proto`].
pub(crate) fn session(graph: &Graph, threads: usize) -> Result<Session> {
    session_with(graph, &config_proto(threads))
}

/// `ConfigProto` bytes with `threads` intra-op threads, one inter-op
/// thread and TF's default graph optimizations (Grappler on): how a user's
/// session runs a file's own graph.
pub(crate) fn config_proto_default_optimizations(threads: usize) -> Vec<u8> {
    let mut config = Vec::new();
    field_varint(&mut config, 2, threads.max(1) as u64);
    field_varint(&mut config, 5, 1);
    config
}

/// A session over a file's own graph, optimized as TF optimizes it for a
/// user (Grappler's rewrites included: a frozen graph's float32 inference
/// batch norm with constant statistics becomes multiply-add there).
pub(crate) fn session_as_deployed(graph: &Graph, threads: usize) -> Result<Session> {
    session_with(graph, &config_proto_default_optimizations(threads))
}

fn session_with(graph: &Graph, config: &[u8]) -> Result<Session> {
    let mut opts = SessionOptions::new();
    opts.set_config(config)
        .map_err(|s| tf_error("session options", s))?;
    Session::new(&opts, graph).map_err(|s| tf_error("creating a session", s))
}

/// A graph under construction.
pub(crate) struct G {
    pub scope: Scope,
}

fn dims_u64(dims: &[usize]) -> Vec<u64> {
    dims.iter().map(|&d| d as u64).collect()
}

/// A tensor of `dims` holding `values` (row-major).
pub(crate) fn tensor<T: TensorType + Clone>(dims: &[usize], values: &[T]) -> Result<Tensor<T>> {
    Tensor::new(&dims_u64(dims))
        .with_values(values)
        .map_err(|s| tf_error("making a tensor", s))
}

macro_rules! binary {
    ($($name:ident => $f:path),* $(,)?) => {
        $(
            #[allow(dead_code)]
            pub(crate) fn $name(&mut self, a: impl Into<Output>, b: impl Into<Output>) -> Result<Output> {
                $f(a, b, &mut self.scope)
                    .map(Output::from)
                    .map_err(|s| tf_error(concat!("building ", stringify!($name)), s))
            }
        )*
    };
}

macro_rules! unary {
    ($($name:ident => $f:path),* $(,)?) => {
        $(
            #[allow(dead_code)]
            pub(crate) fn $name(&mut self, a: impl Into<Output>) -> Result<Output> {
                $f(a, &mut self.scope)
                    .map(Output::from)
                    .map_err(|s| tf_error(concat!("building ", stringify!($name)), s))
            }
        )*
    };
}

impl G {
    /// A new, empty graph.
    pub(crate) fn new() -> G {
        G {
            scope: Scope::new_root_scope(),
        }
    }

    /// A placeholder of `dtype` and fixed `dims`.
    pub(crate) fn placeholder(&mut self, dtype: DataType, dims: &[usize]) -> Result<Operation> {
        let shape = Shape::from(Some(
            dims.iter().map(|&d| Some(d as i64)).collect::<Vec<_>>(),
        ));
        ops::Placeholder::new()
            .dtype(dtype)
            .shape(shape)
            .build(&mut self.scope)
            .map_err(|s| tf_error("building a placeholder", s))
    }

    /// A constant tensor.
    pub(crate) fn constant<T: TensorType + Clone>(
        &mut self,
        dims: &[usize],
        values: &[T],
    ) -> Result<Output> {
        let t = tensor(dims, values)?;
        ops::constant(t, &mut self.scope)
            .map(Output::from)
            .map_err(|s| tf_error("building a constant", s))
    }

    /// A scalar `float32` constant: how TF converts a Python float that
    /// meets a `float32` tensor (rounded to nearest).
    pub(crate) fn scalar_f32(&mut self, v: f32) -> Result<Output> {
        self.constant(&[], &[v])
    }

    /// A scalar constant of `dtype` holding the Python float `v`: how TF
    /// converts a Python float that meets a tensor of that type (through a
    /// numpy scalar of that type): exact for `float64`, rounded to nearest
    /// for `float32`, rounded to nearest directly from the double for
    /// `float16` (numpy's `npy_double_to_half`) and through `float32` for
    /// `bfloat16` (ml_dtypes' `bfloat16(double)` constructor).
    pub(crate) fn scalar(&mut self, dtype: DataType, v: f64) -> Result<Output> {
        match dtype {
            DataType::Double => self.constant(&[], &[v]),
            DataType::Half => self.constant(&[], &[half::f16::from_f64(v)]),
            DataType::BFloat16 => {
                // Round to nearest even here: the `tensorflow` crate's
                // `From<f32>` truncates, which is exact for a widened bfloat16.
                let b = half::bf16::from_f32(v as f32);
                self.constant(&[], &[BFloat16::from(b.to_f32())])
            }
            _ => self.scalar_f32(v as f32),
        }
    }

    /// `tf.cast(x, dtype)` (round to nearest even when narrowing).
    pub(crate) fn cast(&mut self, x: impl Into<Output>, dtype: DataType) -> Result<Output> {
        ops::Cast::new()
            .DstT(dtype)
            .build(x, &mut self.scope)
            .map(Output::from)
            .map_err(|s| tf_error("building Cast", s))
    }

    /// A 1-D `int32` constant (axes, shapes).
    pub(crate) fn i32s(&mut self, v: &[i32]) -> Result<Output> {
        self.constant(&[v.len()], v)
    }

    binary! {
        add => ops::add_v2,
        sub => ops::sub,
        mul => ops::mul,
        div => ops::real_div,
        maximum => ops::maximum,
        minimum => ops::minimum,
        squared_difference => ops::squared_difference,
        reshape => ops::reshape,
    }

    unary! {
        rsqrt => ops::rsqrt,
        sqrt => ops::sqrt,
        neg => ops::neg,
        relu => ops::relu,
        identity => ops::identity,
    }

    /// `tf.reduce_mean(x, axes, keepdims)`: the `Mean` op.
    pub(crate) fn mean(
        &mut self,
        x: impl Into<Output>,
        axes: &[usize],
        keep_dims: bool,
    ) -> Result<Output> {
        let axes: Vec<i32> = axes.iter().map(|&a| a as i32).collect();
        let axes = self.i32s(&axes)?;
        ops::Mean::new()
            .keep_dims(keep_dims)
            .build(x, axes, &mut self.scope)
            .map(Output::from)
            .map_err(|s| tf_error("building Mean", s))
    }

    /// Takes the graph out for a session.
    pub(crate) fn graph(&self) -> impl std::ops::Deref<Target = Graph> + '_ {
        self.scope.graph()
    }
}

/// Rejects shapes TF cannot take (dimensions beyond `i64`).
pub(crate) fn check_dims(dims: &[usize]) -> Result<()> {
    if dims.iter().any(|&d| i64::try_from(d).is_err()) {
        return Err(Error::InvalidArgument(format!(
            "shape {dims:?} is too large for TensorFlow"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_proto_bytes() {
        // intra 2, inter 1, graph_options { optimizer_options { opt_level: L0 }
        // rewrite_options { disable_meta_optimizer: true } }
        let c = config_proto(2);
        let mut want = vec![0x10, 2, 0x28, 1, 0x52, 18, 0x1A, 11, 0x18];
        want.extend_from_slice(&[0xFF; 9]);
        want.push(0x01);
        want.extend_from_slice(&[0x52, 3, 0x98, 0x01, 0x01]);
        assert_eq!(c, want);
    }
}
