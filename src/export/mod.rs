//! Writing checkpoint tensors to safetensors files.
//!
//! [`export_all_variables`] writes every numeric variable verbatim under its
//! checkpoint key; strings (and dtypes safetensors cannot hold) are skipped
//! and listed. Output is deterministic and atomic (see [`writer`]).

pub mod writer;

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::Result;
use crate::source::Source;

/// Options shared by export modes.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Replace an existing output file.
    pub force: bool,
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExportSummary {
    /// Tensors written.
    pub tensors: usize,
    /// Bytes of the output file.
    pub bytes: u64,
    /// Keys not written, with the reason.
    pub skipped: Vec<(String, String)>,
}

/// Writes every numeric variable of `source` to `out`, under its checkpoint
/// key, bit for bit. `progress` receives the data bytes written so far and
/// the total.
pub fn export_all_variables(
    source: &Source,
    out: &Path,
    opts: &ExportOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ExportSummary> {
    let mut planned = Vec::new();
    let mut skipped = Vec::new();
    let bundle = source.bundle();
    for v in source.variables() {
        let Some(entry) = bundle.entry(&v.key) else {
            continue;
        };
        let (Some(nbytes), Some(_)) = (entry.num_bytes, v.dtype.to_safetensors()) else {
            skipped.push((
                v.key.clone(),
                format!("dtype {} cannot be stored in safetensors", v.dtype),
            ));
            continue;
        };
        let key = v.key.clone();
        planned.push(writer::PlannedTensor {
            name: v.key.clone(),
            dtype: v.dtype,
            shape: v.shape.clone(),
            nbytes,
            bytes: Box::new(move || bundle.read_raw(&key)),
        });
    }
    let total: u64 = planned.iter().map(|t| t.nbytes).sum();
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "tf".to_string());
    meta.insert("tfbn.version".to_string(), env!("CARGO_PKG_VERSION").to_string());
    meta.insert("tfbn.mode".to_string(), "all-variables".to_string());
    meta.insert(
        "tfbn.source".to_string(),
        source.path().to_string_lossy().into_owned(),
    );
    meta.insert(
        "tfbn.naming_style".to_string(),
        source.style().label().to_string(),
    );
    if !skipped.is_empty() {
        let keys: Vec<&str> = skipped.iter().map(|(k, _)| k.as_str()).collect();
        meta.insert(
            "tfbn.skipped".to_string(),
            serde_json::to_string(&keys).unwrap_or_default(),
        );
    }
    let bytes = writer::write_safetensors(out, &planned, &meta, opts.force, &mut |w| {
        progress(w, total)
    })?;
    Ok(ExportSummary {
        tensors: planned.len(),
        bytes,
        skipped,
    })
}
