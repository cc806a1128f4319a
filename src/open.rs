//! [`Source::open`]: which reader a path goes to. Above the readers
//! (`source` for checkpoints and SavedModels, `keras`, `frozen`) so that
//! none of them imports another: each builds a [`Source`], this module
//! picks one.

use std::path::Path;

use crate::error::{Error, Result};
use crate::sniff::Foreign;
use crate::source::Source;

impl Source {
    /// Opens whatever `path` names: a checkpoint (any path form
    /// `crate::bundle::Bundle::open` accepts), a SavedModel folder, a
    /// Keras file (`.keras`, `.h5`, `.weights.h5`) or a frozen graph
    /// (`.pb`). Files of other formats tfbn recognises (ONNX, TFLite,
    /// PyTorch, …) are [`Error::FormatNotRead`], saying what they are.
    pub fn open(path: impl AsRef<Path>) -> Result<Source> {
        let path = path.as_ref();
        if path.is_file() {
            match crate::sniff::identify(path) {
                Some(Foreign::Hdf5) => {
                    return crate::keras::open(path, crate::keras::Container::Hdf5)
                }
                Some(Foreign::KerasZip) => {
                    return crate::keras::open(path, crate::keras::Container::Archive)
                }
                Some(f) => {
                    return Err(Error::FormatNotRead {
                        path: path.to_path_buf(),
                        what: f.explain(),
                    })
                }
                None => {}
            }
            if crate::frozen::is_candidate(path) {
                return crate::frozen::open(path);
            }
        }
        Source::open_tf(path)
    }
}
