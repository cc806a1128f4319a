//! Keras files: Keras 3 `.keras` archives and `.weights.h5`, Keras 2 /
//! tf_keras whole-model and weights-only `.h5`.

use std::path::Path;

use crate::error::Result;
use crate::source::Source;

/// Which Keras container a file is, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// An HDF5 file (`.h5`, `.weights.h5`).
    Hdf5,
    /// A Keras 3 `.keras` zip archive.
    Archive,
}

/// Opens a Keras file as a [`Source`].
pub fn open(path: &Path, container: Container) -> Result<Source> {
    let what = match container {
        Container::Hdf5 => crate::sniff::Foreign::Hdf5.explain(),
        Container::Archive => crate::sniff::Foreign::KerasZip.explain(),
    };
    Err(crate::Error::FormatNotRead {
        path: path.to_path_buf(),
        what,
    })
}
