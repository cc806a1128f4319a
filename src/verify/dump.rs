//! `--dump DIR`: each case's input and both sides' outputs as `.npy` files.

use super::*;

/// `<layer name with / → __>`.
pub(super) fn layer_dir(name: &str) -> String {
    name.replace('/', "__")
}

/// An `.npy` array of `dims` holding `v` in its own type (`bfloat16` as
/// `<u2` bit patterns, the corpus convention).
pub(super) fn npy_of(dims: &[usize], v: &FloatArray) -> Result<NpyArray> {
    let sh = IxDyn(dims);
    let bad = |e: ndarray::ShapeError| Error::InvalidArgument(format!("dump {dims:?}: {e}"));
    Ok(match v {
        FloatArray::F32(v) => {
            NpyArray::F32(ArrayD::from_shape_vec(sh, v.iter().copied().collect()).map_err(bad)?)
        }
        FloatArray::F64(v) => {
            NpyArray::F64(ArrayD::from_shape_vec(sh, v.iter().copied().collect()).map_err(bad)?)
        }
        FloatArray::F16(v) => {
            NpyArray::F16(ArrayD::from_shape_vec(sh, v.iter().copied().collect()).map_err(bad)?)
        }
        FloatArray::BF16(v) => NpyArray::from_bf16(
            &ArrayD::from_shape_vec(sh, v.iter().copied().collect()).map_err(bad)?,
        ),
    })
}

/// Writes `DIR/<layer>/<dtype>/<mode>/<case>/`: `x.npy`, and per side
/// `{tf,native}_y.npy` (the input's type) and each statistic.
#[allow(clippy::too_many_arguments)]
pub(super) fn dump_case(
    dir: &Path,
    layer: &str,
    row: Row,
    case: InputCase,
    shape: &[usize],
    x: &FloatArray,
    tf: &TypedOutputs,
    nat: &TypedOutputs,
) -> Result<()> {
    let d = dir
        .join(layer_dir(layer))
        .join(row.dtype.short())
        .join(row.mode.label())
        .join(case.label());
    std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
    let write = |name: &str, dims: &[usize], v: &FloatArray| -> Result<()> {
        write_npy(d.join(format!("{name}.npy")), &npy_of(dims, v)?)
    };
    write("x", shape, x)?;
    for (side, o) in [("tf", tf), ("native", nat)] {
        write(&format!("{side}_y"), shape, &o.y)?;
        for (name, v) in &o.stats {
            write(&format!("{side}_{name}"), &[v.len()], v)?;
        }
    }
    Ok(())
}
