//! The HDF5 side of Keras files, over the pure-Rust `hdf5-reader` decoder
//! (docs/design/hdf5.md): every dataset of a file as a [`Tensor`], and the
//! string attributes Keras writes (`layer_names`, `weight_names`,
//! `model_config`, Keras 3's `name`), in every storage h5py uses (variable
//! or fixed length, scalar or array, split into `NAME0`, `NAME1`, … when a
//! list outgrows the 64 KiB object header).

use std::path::{Path, PathBuf};

use hdf5_reader::group::Group;
use hdf5_reader::{Datatype, Hdf5File, OpenOptions};

use crate::error::{Error, Result};
use crate::{DType, Tensor};

/// The most bytes one dataset may decode to (a Keras weight is far
/// smaller; the whole model is held in memory).
pub const MAX_DATASET_BYTES: u64 = 8 << 30;
/// The most bytes one HDF5 object header may span.
const MAX_HEADER_BYTES: usize = 16 << 20;
/// The most groups and datasets a file may hold (a model with a million
/// weights is not a Keras file).
pub const MAX_OBJECTS: usize = 1_000_000;
/// The deepest group nesting followed.
pub const MAX_DEPTH: usize = 64;
/// The most bytes one dataset, and all datasets together, may decode to
/// per byte of the file: deflate's largest expansion (1032:1) with a
/// margin, as for `.keras` archive members. A dataset whose chunks were
/// never written decodes to its fill value from no bytes at all, so a
/// bound per dataset alone would let a file of many small dataset headers
/// ask for gigabytes.
const MAX_RATIO: u64 = 1100;

/// An opened HDF5 file, with the path it is reported under.
pub struct H5 {
    pub(crate) file: Hdf5File,
    pub(crate) path: PathBuf,
    /// The file's length: no dataset, and no file's datasets together,
    /// decode to more than deflate can expand it to (Keras never leaves
    /// datasets unwritten, which would decode to fill values out of
    /// nothing).
    len: u64,
}

/// One dataset of the file.
#[derive(Debug)]
pub struct Dataset {
    /// Its path from the root, without a leading slash.
    pub key: String,
    /// Its value; `None` when its element type has no TF dtype (compound,
    /// reference, …): the reason is in `skipped`.
    pub tensor: Option<Tensor>,
    /// Why the dataset was left out.
    pub skipped: Option<String>,
}

fn unreadable(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Hdf5Unreadable {
        path: path.to_path_buf(),
        why: e.to_string(),
    }
}

impl H5 {
    /// Decodes an HDF5 file held in memory; `path` names it in errors.
    pub fn from_bytes(bytes: Vec<u8>, path: &Path) -> Result<H5> {
        let len = bytes.len() as u64;
        let opts = OpenOptions {
            max_read_bytes: usize::try_from(MAX_DATASET_BYTES).unwrap_or(usize::MAX),
            max_object_header_bytes: MAX_HEADER_BYTES,
            ..OpenOptions::default()
        };
        let file = Hdf5File::from_vec_with_options(bytes, opts).map_err(|e| unreadable(path, e))?;
        Ok(H5 {
            file,
            path: path.to_path_buf(),
            len,
        })
    }

    /// The root group.
    pub fn root(&self) -> Result<Group> {
        self.file
            .root_group()
            .map_err(|e| unreadable(&self.path, e))
    }

    /// The group at `path` (`a/b`), `None` when there is none.
    pub fn group(&self, path: &str) -> Result<Option<Group>> {
        let mut g = self.root()?;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            let (groups, _) = g.member_names().map_err(|e| unreadable(&self.path, e))?;
            if !groups.iter().any(|n| n == part) {
                return Ok(None);
            }
            g = g.group(part).map_err(|e| unreadable(&self.path, e))?;
        }
        Ok(Some(g))
    }

    /// Child group and dataset names of `g`.
    pub fn members(&self, g: &Group) -> Result<(Vec<String>, Vec<String>)> {
        g.member_names().map_err(|e| unreadable(&self.path, e))
    }

    /// Every dataset in the file, depth first, groups and datasets in name
    /// order. Each, and all together, may decode to at most [`MAX_RATIO`]
    /// times the file's length (at least 1 MiB), checked against each
    /// dataset's declared size before it is read.
    pub fn datasets(&self) -> Result<Vec<Dataset>> {
        let mut out = Vec::new();
        let mut count = 0usize;
        let mut left = self.len.saturating_mul(MAX_RATIO).max(1 << 20);
        self.walk(&self.root()?, "", 0, &mut count, &mut left, &mut out)?;
        Ok(out)
    }

    fn walk(
        &self,
        g: &Group,
        prefix: &str,
        depth: usize,
        count: &mut usize,
        left: &mut u64,
        out: &mut Vec<Dataset>,
    ) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(unreadable(
                &self.path,
                format!("groups nest deeper than {MAX_DEPTH} levels at {prefix}"),
            ));
        }
        let (mut groups, mut datasets) = self.members(g)?;
        groups.sort();
        datasets.sort();
        *count = count.saturating_add(groups.len() + datasets.len());
        if *count > MAX_OBJECTS {
            return Err(unreadable(
                &self.path,
                format!("more than {MAX_OBJECTS} groups and datasets"),
            ));
        }
        let join = |name: &str| {
            if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}/{name}")
            }
        };
        for name in &datasets {
            let key = join(name);
            let ds = g.dataset(name).map_err(|e| unreadable(&self.path, e))?;
            out.push(self.read(&ds, key, left)?);
        }
        for name in &groups {
            let child = g.group(name).map_err(|e| unreadable(&self.path, e))?;
            self.walk(&child, &join(name), depth + 1, count, left, out)?;
        }
        Ok(())
    }

    fn read(&self, ds: &hdf5_reader::Dataset, key: String, left: &mut u64) -> Result<Dataset> {
        let dtype = match dtype_of(ds.dtype()) {
            Ok(d) => d,
            Err(why) => {
                return Ok(Dataset {
                    key,
                    tensor: None,
                    skipped: Some(why),
                })
            }
        };
        let shape = ds.shape().to_vec();
        let count = shape
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| unreadable(&self.path, format!("{key}: shape {shape:?} overflows")))?;
        let width = dtype.byte_width().unwrap_or(1) as u64;
        let bytes = count.saturating_mul(width);
        let limit = MAX_DATASET_BYTES.min(self.len.saturating_mul(MAX_RATIO).max(1 << 20));
        if bytes > limit {
            return Err(Error::SizeOverLimit {
                path: self.path.clone(),
                what: format!("dataset {key}"),
                bytes,
                limit,
            });
        }
        if bytes > *left {
            return Err(Error::SizeOverLimit {
                path: self.path.clone(),
                what: format!(
                    "dataset {key} (all datasets together may decode to {MAX_RATIO}× the \
                     file's size)"
                ),
                bytes,
                limit: *left,
            });
        }
        *left -= bytes;
        let data = ds
            .read_native_bytes()
            .map_err(|e| unreadable(&self.path, format!("{key}: {e}")))?;
        if data.len() as u64 != bytes {
            return Err(unreadable(
                &self.path,
                format!("{key}: {} bytes decoded for {bytes} declared", data.len()),
            ));
        }
        Ok(Dataset {
            key,
            tensor: Some(Tensor {
                dtype,
                shape,
                data: crate::tensor::TensorData::Bytes(data),
            }),
            skipped: None,
        })
    }

    /// A string attribute of `g` as a list: an array attribute's elements,
    /// a scalar's one string, `Some(vec![])` for the empty float array
    /// Keras writes for a layer without weights; `None` when absent.
    pub fn strings(&self, g: &Group, name: &str) -> Result<Option<Vec<String>>> {
        let attrs = g.attributes().map_err(|e| unreadable(&self.path, e))?;
        let Some(a) = attrs.into_iter().find(|a| a.name == name) else {
            return Ok(None);
        };
        if a.shape.iter().product::<u64>() == 0 && !a.shape.is_empty() {
            return Ok(Some(Vec::new()));
        }
        a.read_strings()
            .map(Some)
            .map_err(|e| unreadable(&self.path, format!("attribute {name}: {e}")))
    }

    /// A list attribute Keras 2 may split into `NAME0`, `NAME1`, … when it
    /// outgrows the object header (`layer_names`, `weight_names`): the
    /// whole attribute when present, else the numbered parts in order.
    pub fn chunked_strings(&self, g: &Group, name: &str) -> Result<Option<Vec<String>>> {
        if let Some(v) = self.strings(g, name)? {
            return Ok(Some(v));
        }
        let mut out: Option<Vec<String>> = None;
        for i in 0usize.. {
            match self.strings(g, &format!("{name}{i}"))? {
                Some(part) => out.get_or_insert_with(Vec::new).extend(part),
                None => break,
            }
            if i > MAX_OBJECTS {
                break;
            }
        }
        Ok(out)
    }

    /// One string attribute (the first element of an array).
    pub fn string(&self, g: &Group, name: &str) -> Result<Option<String>> {
        Ok(self.strings(g, name)?.and_then(|v| v.into_iter().next()))
    }

    /// Names of `g`'s attributes.
    pub fn attribute_names(&self, g: &Group) -> Result<Vec<String>> {
        Ok(g.attributes()
            .map_err(|e| unreadable(&self.path, e))?
            .into_iter()
            .map(|a| a.name)
            .collect())
    }
}

/// The TF dtype of an HDF5 element type, or why there is none.
fn dtype_of(t: &Datatype) -> std::result::Result<DType, String> {
    Ok(match t {
        Datatype::FloatingPoint { size: 2, .. } => DType::F16,
        Datatype::FloatingPoint { size: 4, .. } => DType::F32,
        Datatype::FloatingPoint { size: 8, .. } => DType::F64,
        Datatype::FixedPoint { size, signed, .. } => match (size, signed) {
            (1, true) => DType::I8,
            (2, true) => DType::I16,
            (4, true) => DType::I32,
            (8, true) => DType::I64,
            (1, false) => DType::U8,
            (2, false) => DType::U16,
            (4, false) => DType::U32,
            (8, false) => DType::U64,
            _ => return Err(format!("{size}-byte integers have no TF dtype")),
        },
        // h5py writes NumPy bools as an enum over int8.
        Datatype::Enum { base, members }
            if members.len() == 2
                && matches!(**base, Datatype::FixedPoint { size: 1, .. })
                && members.iter().any(|m| m.name == "FALSE")
                && members.iter().any(|m| m.name == "TRUE") =>
        {
            DType::Bool
        }
        other => return Err(format!("element type {} has no TF dtype", kind(other))),
    })
}

fn kind(t: &Datatype) -> &'static str {
    match t {
        Datatype::FixedPoint { .. } => "integer",
        Datatype::FloatingPoint { .. } => "float",
        Datatype::String { .. } => "string",
        Datatype::Compound { .. } => "compound",
        Datatype::Array { .. } => "array",
        Datatype::Enum { .. } => "enum",
        Datatype::VarLen { .. } => "variable-length",
        Datatype::Opaque { .. } => "opaque",
        Datatype::Reference { .. } => "reference",
        Datatype::Bitfield { .. } => "bitfield",
    }
}
