//! Keras 3 `.keras` archives: a zip holding `config.json` (the model
//! config), `metadata.json` (Keras version, date) and `model.weights.h5`
//! (the weights). Members are read into memory with their declared sizes
//! checked first: a member larger than [`MAX_MEMBER_BYTES`], or one whose
//! declared size its compressed bytes cannot produce (a zip bomb), is
//! refused before anything is allocated, and no read goes past the
//! declared size.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// The most bytes a member may expand to.
pub const MAX_MEMBER_BYTES: u64 = 8 << 30;
/// The largest expansion deflate can reach (1032:1), with a margin.
const MAX_RATIO: u64 = 1100;
/// The most bytes an archive file may have.
const MAX_ARCHIVE_BYTES: u64 = 16 << 30;

/// The members of a `.keras` archive that tfbn reads.
pub struct Archive {
    /// `config.json`, parsed.
    pub config: Option<serde_json::Value>,
    /// `metadata.json`, parsed.
    pub metadata: Option<serde_json::Value>,
    /// `model.weights.h5`.
    pub weights: Vec<u8>,
}

fn invalid(path: &Path, why: impl Into<String>) -> Error {
    Error::KerasArchiveInvalid {
        path: path.to_path_buf(),
        why: why.into(),
    }
}

/// Reads the archive at `path`.
pub fn read(path: &Path) -> Result<Archive> {
    let bytes = crate::fsx::read_regular(path, MAX_ARCHIVE_BYTES)?;
    let archive_len = bytes.len() as u64;
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| invalid(path, format!("zip: {e}")))?;
    let weights = member(&mut zip, path, archive_len, "model.weights.h5")?
        .ok_or_else(|| invalid(path, "no model.weights.h5 member"))?;
    let json = |zip: &mut zip::ZipArchive<_>, name: &str| -> Result<Option<serde_json::Value>> {
        match member(zip, path, archive_len, name)? {
            None => Ok(None),
            Some(b) => {
                serde_json::from_slice(&b)
                    .map(Some)
                    .map_err(|e| Error::KerasConfigInvalid {
                        path: path.to_path_buf(),
                        file: name.to_string(),
                        why: format!("JSON: {e}"),
                    })
            }
        }
    };
    let config = json(&mut zip, "config.json")?;
    let metadata = json(&mut zip, "metadata.json")?;
    Ok(Archive {
        config,
        metadata,
        weights,
    })
}

/// One member's bytes, `None` when the archive has no such member.
fn member<R: std::io::Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    path: &Path,
    archive_len: u64,
    name: &str,
) -> Result<Option<Vec<u8>>> {
    let mut f = match zip.by_name(name) {
        Ok(f) => f,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(invalid(path, format!("{name}: {e}"))),
    };
    let size = f.size();
    // The compressed bytes lie inside the archive, whatever the header says.
    let compressed = f.compressed_size().min(archive_len);
    let limit = MAX_MEMBER_BYTES.min(compressed.saturating_mul(MAX_RATIO).max(1 << 16));
    if size > limit {
        return Err(Error::SizeOverLimit {
            path: path.to_path_buf(),
            what: format!("archive member {name}"),
            bytes: size,
            limit,
        });
    }
    // Grown as bytes arrive, so a header that lies costs nothing up front.
    let cap = usize::try_from(size.min(64 << 20)).unwrap_or(0);
    let mut out = Vec::with_capacity(cap);
    (&mut f)
        .take(size)
        .read_to_end(&mut out)
        .map_err(|e| invalid(path, format!("{name}: {e}")))?;
    if out.len() as u64 != size {
        return Err(invalid(
            path,
            format!("{name}: {} bytes for {size} declared", out.len()),
        ));
    }
    Ok(Some(out))
}
