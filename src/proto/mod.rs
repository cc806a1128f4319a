//! Protobuf messages TF writes, as hand-written prost derives (checked in;
//! no protoc at build time). Field numbers: `docs/formats.md`.

pub mod bundle;
pub mod graph;
pub mod keras;
pub mod saved_model;
pub mod tensor;
pub mod trackable;

use std::path::Path;

use crate::error::{Error, Result};

/// Decodes one protobuf message, turning a decode failure (including
/// prost's 100-level recursion limit) into [`Error::ProtoDecode`] naming
/// the file, the part of it (`what`) and the message type.
pub(crate) fn decode_proto<M: prost::Message + Default>(
    bytes: &[u8],
    path: &Path,
    what: &str,
    message: &'static str,
) -> Result<M> {
    M::decode(bytes).map_err(|source| Error::ProtoDecode {
        path: path.to_path_buf(),
        what: what.to_string(),
        message,
        source,
    })
}
