//! Recognising files by their first bytes: Keras HDF5 and `.keras` files go
//! to [`crate::keras`]; for files tfbn does not read the answer says what the
//! file is and how to get one tfbn reads, instead of a table-format error
//! about a file that never was a checkpoint.

use std::io::Read;
use std::path::Path;

/// A file format tfbn recognises but does not read as a TF checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Foreign {
    /// HDF5 (`\x89HDF\r\n\x1a\n`): Keras `.h5` / `.weights.h5`, read by
    /// [`crate::keras`].
    Hdf5,
    /// A zip holding `config.json` and `model.weights.h5`: Keras 3 `.keras`,
    /// read by [`crate::keras`].
    KerasZip,
    /// A zip holding `data.pkl`: PyTorch `.pt` / `.pth`.
    PyTorchZip,
    /// A zip of `.npy` members: NumPy `.npz`.
    Npz,
    /// Any other zip.
    Zip,
    /// A FlatBuffer with the `TFL3` identifier: TensorFlow Lite.
    TfLite,
    /// A TF.js `model.json` (`modelTopology` / `weightsManifest`).
    TfJs,
    /// An ONNX model (`.onnx`, a ModelProto).
    Onnx,
    /// A safetensors file.
    Safetensors,
}

impl Foreign {
    /// What the file is and how to get a file tfbn reads, for a one-line
    /// message.
    pub fn explain(self) -> &'static str {
        match self {
            Foreign::Hdf5 => {
                "an HDF5 file; tfbn reads the ones Keras writes (.h5, .weights.h5, and inside \
                 .keras archives)"
            }
            Foreign::KerasZip => "a Keras 3 .keras archive, which tfbn reads natively",
            Foreign::PyTorchZip => {
                "a PyTorch checkpoint (.pt/.pth: a zip with data.pkl); tfbn reads TensorFlow \
                 files, and unpickling a PyTorch file could run code, so it is not opened"
            }
            Foreign::Npz => {
                "a NumPy .npz archive; tfbn reads TensorFlow checkpoints and SavedModels"
            }
            Foreign::Zip => "a zip archive; tfbn reads TensorFlow checkpoints and SavedModels",
            Foreign::TfLite => {
                "a TensorFlow Lite model: its converter folds batch norm into the preceding \
                 layer's weights, so there are no batch-norm variables left to read; use the \
                 checkpoint or SavedModel it was converted from"
            }
            Foreign::TfJs => {
                "a TensorFlow.js model.json; tfbn reads the TF checkpoint or SavedModel it was \
                 converted from"
            }
            Foreign::Onnx => {
                "an ONNX model; tfbn reads the TF checkpoint or SavedModel it was converted from"
            }
            Foreign::Safetensors => {
                "a safetensors file (`tfbn inspect` lists its tensors; the other commands read \
                 TensorFlow checkpoints and SavedModels)"
            }
        }
    }
}

/// How much of a file is looked at.
const HEAD: usize = 64 * 1024;

/// The foreign format of the regular file at `path`, if it is one tfbn
/// recognises. Reads at most the first 64 KiB; never opens a non-regular
/// file.
pub fn identify(path: &Path) -> Option<Foreign> {
    let mut head = Vec::with_capacity(HEAD);
    crate::fsx::open_regular(path)
        .ok()?
        .take(HEAD as u64)
        .read_to_end(&mut head)
        .ok()?;
    identify_bytes(&head, path)
}

/// [`identify`] on the first bytes of a file (`path` for its extension).
pub fn identify_bytes(head: &[u8], path: &Path) -> Option<Foreign> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let contains = |needle: &[u8]| head.windows(needle.len()).any(|w| w == needle);
    if head.starts_with(b"\x89HDF\r\n\x1a\n") {
        return Some(Foreign::Hdf5);
    }
    if head.starts_with(b"PK\x03\x04") {
        return Some(
            if contains(b"model.weights.h5")
                || contains(b"config.json") && ext.as_deref() == Some("keras")
            {
                Foreign::KerasZip
            } else if contains(b"data.pkl") {
                Foreign::PyTorchZip
            } else if contains(b".npy") {
                Foreign::Npz
            } else {
                Foreign::Zip
            },
        );
    }
    if head.len() >= 8 && &head[4..8] == b"TFL3" {
        return Some(Foreign::TfLite);
    }
    let text_start = head.iter().position(|b| !b.is_ascii_whitespace());
    if text_start.is_some_and(|i| head[i] == b'{')
        && (contains(b"\"modelTopology\"") || contains(b"\"weightsManifest\""))
    {
        return Some(Foreign::TfJs);
    }
    if ext.as_deref() == Some("onnx") {
        return Some(Foreign::Onnx);
    }
    if ext.as_deref() == Some("safetensors") || looks_like_safetensors(head) {
        return Some(Foreign::Safetensors);
    }
    None
}

/// A u64 header length, then a JSON object.
fn looks_like_safetensors(head: &[u8]) -> bool {
    head.len() > 9
        && u64::from_le_bytes(head[..8].try_into().unwrap_or([0xff; 8])) < 100_000_000
        && head[8] == b'{'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_first_bytes() {
        let p = Path::new("x");
        assert_eq!(
            identify_bytes(b"\x89HDF\r\n\x1a\n\0\0", p),
            Some(Foreign::Hdf5)
        );
        assert_eq!(
            identify_bytes(b"PK\x03\x04....config.json....model.weights.h5", p),
            Some(Foreign::KerasZip)
        );
        assert_eq!(
            identify_bytes(b"PK\x03\x04....archive/data.pkl", p),
            Some(Foreign::PyTorchZip)
        );
        assert_eq!(
            identify_bytes(b"PK\x03\x04....w.npy", p),
            Some(Foreign::Npz)
        );
        assert_eq!(
            identify_bytes(b"PK\x03\x04....other", p),
            Some(Foreign::Zip)
        );
        assert_eq!(
            identify_bytes(b"\x1c\0\0\0TFL3\0\0", p),
            Some(Foreign::TfLite)
        );
        assert_eq!(
            identify_bytes(b" {\"format\": \"layers-model\", \"modelTopology\": {}}", p),
            Some(Foreign::TfJs)
        );
        assert_eq!(
            identify_bytes(b"\x08\x07", Path::new("m.onnx")),
            Some(Foreign::Onnx)
        );
        assert_eq!(
            identify_bytes(b"\x02\0\0\0\0\0\0\0{}", p),
            Some(Foreign::Safetensors)
        );
        // A TF table (V1 checkpoint) is none of these.
        assert_eq!(identify_bytes(b"\0\x01\x02\x03 some table bytes", p), None);
    }
}
