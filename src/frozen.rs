//! Frozen `GraphDef`s (`.pb` files holding a graph whose variables were
//! turned into `Const` nodes).

use std::path::Path;

use crate::error::Result;
use crate::source::Source;

/// True when `path` is a regular file that is not a SavedModel's
/// `saved_model.pb` and whose name says it may hold a `GraphDef` (`.pb`,
/// `.pbtxt` is not read).
pub fn is_candidate(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "pb")
        && path.file_name().is_some_and(|n| n != "saved_model.pb")
}

/// Opens a frozen `GraphDef` as a [`Source`].
pub fn open(path: &Path) -> Result<Source> {
    Err(crate::Error::FormatNotRead {
        path: path.to_path_buf(),
        what: "a frozen GraphDef, which tfbn does not read yet",
    })
}
