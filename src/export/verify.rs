//! `--verify`: read a written file back with the `safetensors` crate and
//! compare it with what the plan says it must hold, bit for bit.
//!
//! The crate's parser checks the container itself (header length, UTF-8
//! JSON, offsets that tile the data area with no gap, overlap or trailing
//! byte, sizes that match dtype × shape: docs/reliability.md#crafted-inputs,
//! case 47). Then every
//! planned tensor must be present with its dtype and shape, no other tensor
//! may be, the metadata must be the planned map, and each tensor's bytes
//! must equal the checkpoint's bytes after the declared cast, read again
//! from the checkpoint (crc checked again), or the constant / folded values
//! recomputed from it.

use std::path::Path;

use safetensors::SafeTensors;
use serde::Serialize;

use super::mapped::release;
use super::plan::ExportPlan;
use crate::error::{Error, Result};
use crate::source::Source;

/// The outcome of [`verify_file`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Tensors compared.
    pub tensors: usize,
    /// Data bytes compared.
    pub bytes: u64,
    /// One line per difference; empty when the file is exactly as planned.
    pub mismatches: Vec<String>,
}

impl VerifyReport {
    /// True when nothing differed.
    pub fn ok(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// Compares the safetensors file at `path` with `plan` (see the module
/// docs). A file that is not valid safetensors is an
/// [`Error::SafetensorsRead`]; differences are listed in the report.
pub fn verify_file(source: &Source, plan: &ExportPlan, path: &Path) -> Result<VerifyReport> {
    verify_file_with_progress(source, plan, path, &mut |_, _| {})
}

/// [`verify_file`], calling `progress(bytes checked, bytes planned)` after
/// each tensor (for a progress bar).
pub fn verify_file_with_progress(
    source: &Source,
    plan: &ExportPlan,
    path: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<VerifyReport> {
    let total: u64 = plan.tensors.iter().map(|t| t.nbytes).sum();
    let file = crate::fsx::open_regular(path)?;
    // SAFETY: read-only map of the file tfbn just wrote; a concurrent
    // truncation by another process would fault, the accepted cost of
    // mapping (see bundle::map_file).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    let bad = |e: safetensors::SafeTensorError| Error::SafetensorsRead {
        path: path.to_path_buf(),
        what: e.to_string(),
    };
    let (_, header) = SafeTensors::read_metadata(&map).map_err(bad)?;
    let st = SafeTensors::deserialize(&map).map_err(bad)?;

    let mut report = VerifyReport::default();
    let found = header.metadata().clone().unwrap_or_default();
    let found: std::collections::BTreeMap<String, String> = found.into_iter().collect();
    if found != plan.metadata {
        let mut keys: Vec<&String> = found.keys().chain(plan.metadata.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            if found.get(k) != plan.metadata.get(k) {
                report.mismatches.push(format!(
                    "metadata {k:?}: file has {:?}, expected {:?}",
                    found.get(k),
                    plan.metadata.get(k)
                ));
            }
        }
    }
    let planned: std::collections::BTreeSet<&str> =
        plan.tensors.iter().map(|t| t.name.as_str()).collect();
    for name in st.names() {
        if !planned.contains(name) {
            report
                .mismatches
                .push(format!("{name}: in the file but not planned"));
        }
    }
    for t in &plan.tensors {
        let view = match st.tensor(&t.name) {
            Ok(v) => v,
            Err(_) => {
                report
                    .mismatches
                    .push(format!("{}: missing from the file", t.name));
                continue;
            }
        };
        let want_dtype = t.dtype.to_safetensors();
        if Some(view.dtype()) != want_dtype {
            report.mismatches.push(format!(
                "{}: dtype {:?}, expected {:?}",
                t.name,
                view.dtype(),
                want_dtype
            ));
            continue;
        }
        let shape: Vec<u64> = view.shape().iter().map(|&d| d as u64).collect();
        if shape != t.shape {
            report.mismatches.push(format!(
                "{}: shape {shape:?}, expected {:?}",
                t.name, t.shape
            ));
            continue;
        }
        let want = t.produce(source, &plan.layers)?;
        let got = view.data();
        if got != want.as_ref() {
            let at = got
                .iter()
                .zip(want.iter())
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(want.len()));
            report.mismatches.push(format!(
                "{}: bytes differ from the checkpoint's{} (first at byte {at} of {})",
                t.name,
                if t.dtype == source_dtype(t) {
                    ""
                } else {
                    " after the cast"
                },
                want.len()
            ));
        }
        report.tensors += 1;
        report.bytes += t.nbytes;
        progress(report.bytes, total);
        release(got);
        if let std::borrow::Cow::Borrowed(b) = &want {
            release(b);
        }
    }
    Ok(report)
}

fn source_dtype(t: &super::plan::PlannedExport) -> crate::DType {
    match &t.origin {
        super::plan::TensorOrigin::Checkpoint { stored, .. } => *stored,
        _ => t.dtype,
    }
}
