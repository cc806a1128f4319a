//! Reading an exported file back for `tfbn inspect FILE.safetensors`: its
//! tensors, and for files tfbn wrote, each layer with its conventions as
//! the metadata declares them (see [`super::meta`] for the keys).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::SafeTensors;
use serde::Serialize;

use super::meta::layer_prefix;
use crate::error::{Error, Result};

/// Version of the JSON layout of [`SafetensorsReport`].
pub const SCHEMA_VERSION: u32 = 1;

/// One tensor of the file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TensorEntry {
    /// Name.
    pub name: String,
    /// safetensors dtype (`F32`, `I64`, …).
    pub dtype: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// `[begin, end)` in the data area.
    pub data_offsets: [usize; 2],
}

/// One exported layer, as the metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportedLayer {
    /// Module path in the file.
    pub module: String,
    /// Every `tfbn.layer.<module>.<field>` value, by field.
    pub fields: BTreeMap<String, String>,
    /// Tensors of this layer (`<module>.` / `<module>/` prefix), in file order.
    pub tensors: Vec<String>,
}

impl ExportedLayer {
    /// A field's value, or `"-"`.
    pub fn get(&self, field: &str) -> &str {
        self.fields.get(field).map(String::as_str).unwrap_or("-")
    }
}

/// What `tfbn inspect` shows for a safetensors file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SafetensorsReport {
    /// Layout version.
    pub schema: u32,
    /// The file.
    pub path: PathBuf,
    /// Always `"safetensors"`.
    pub format: &'static str,
    /// File size in bytes.
    pub bytes: u64,
    /// True when the metadata has `tfbn.version`.
    pub written_by_tfbn: bool,
    /// The whole `__metadata__` map.
    pub metadata: BTreeMap<String, String>,
    /// Layers listed in `tfbn.layers` (empty for other files and for
    /// `--all-variables` exports).
    pub layers: Vec<ExportedLayer>,
    /// Every tensor.
    pub tensors: Vec<TensorEntry>,
}

/// True when `path` looks like a safetensors file: a file named
/// `*.safetensors`, or one whose first 8 bytes are a header length followed
/// by `{`.
pub fn is_safetensors_file(path: &Path) -> bool {
    if !path.is_file() {
        return false;
    }
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
    {
        return true;
    }
    let mut head = [0u8; 9];
    let Ok(mut file) = crate::fsx::open_regular(path) else {
        return false;
    };
    match std::io::Read::read_exact(&mut file, &mut head) {
        Ok(()) => {
            let n = u64::from_le_bytes([
                head[0], head[1], head[2], head[3], head[4], head[5], head[6], head[7],
            ]);
            head[8] == b'{' && n > 1 && n < 100_000_000
        }
        Err(_) => false,
    }
}

/// Reads `path` (validated by the `safetensors` crate) into a report.
pub fn describe(path: &Path) -> Result<SafetensorsReport> {
    let file = crate::fsx::open_regular(path)?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    // SAFETY: read-only map; only the header is read. A concurrent
    // truncation by another process would fault (see bundle::map_file).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    let bad = |e: safetensors::SafeTensorError| Error::SafetensorsRead {
        path: path.to_path_buf(),
        what: e.to_string(),
    };
    let (_, header) = SafeTensors::read_metadata(&map).map_err(bad)?;
    let metadata: BTreeMap<String, String> = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut tensors = Vec::new();
    for name in header.offset_keys() {
        if let Some(info) = header.info(&name) {
            tensors.push(TensorEntry {
                dtype: format!("{:?}", info.dtype),
                shape: info.shape.clone(),
                data_offsets: [info.data_offsets.0, info.data_offsets.1],
                name,
            });
        }
    }
    let written_by_tfbn = metadata.contains_key("tfbn.version");
    let modules: Vec<String> = metadata
        .get("tfbn.layers")
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    let layers = modules
        .into_iter()
        .map(|module| {
            let prefix = layer_prefix(&module);
            let fields = metadata
                .iter()
                .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|f| (f.to_string(), v.clone())))
                .filter(|(f, _)| !f.contains('.'))
                .collect();
            let tensors = tensors
                .iter()
                .filter(|t| {
                    t.name.strip_prefix(module.as_str()).is_some_and(|rest| {
                        (rest.starts_with('.') || rest.starts_with('/'))
                            && !rest[1..].contains(['.', '/'])
                    })
                })
                .map(|t| t.name.clone())
                .collect();
            ExportedLayer {
                module,
                fields,
                tensors,
            }
        })
        .collect();
    Ok(SafetensorsReport {
        schema: SCHEMA_VERSION,
        path: path.to_path_buf(),
        format: "safetensors",
        bytes: len,
        written_by_tfbn,
        metadata,
        layers,
        tensors,
    })
}
