//! # tfbn
//!
//! Move TensorFlow batch-normalization layers out of TensorFlow and prove
//! that nothing changed on the way.
//!
//! Start at [`open`]: it reads any supported file (checkpoints in every
//! path form, SavedModels, Keras files, frozen graphs) and returns a
//! [`Model`] whose [`Layer`]s carry their settings with where each came
//! from, their parameters as stored, and the layer itself to run (see
//! [`model`] for an example).
//!
//! Beyond the facade, the public modules are the ones a user builds on:
//!
//! - [`source`]: an opened file and its variables, each with its role
//!   (model, optimizer slot, EMA shadow, bookkeeping);
//! - [`declared`]: settings declared by the user (per-layer globs, sidecar
//!   files), the way [`OpenOptions`] takes them;
//! - [`bn`]: the batch-norm layer itself, bit for bit with TF's CPU
//!   arithmetic per API, in both modes;
//! - [`export`]: safetensors files named for TF, PyTorch, candle or burn,
//!   with every convention in the metadata, written atomically;
//! - [`inspect`] and [`lint`]: the reports `tfbn inspect` and `tfbn lint`
//!   print, as data;
//! - [`snapshot`] and [`parity`]: numeric snapshots for a user's CI and the
//!   tolerances they compare with;
//! - `verify` and `tf` (feature `tf`): the same layers run in live
//!   TensorFlow, and TF's own reader;
//! - `candle` (feature `candle`): a candle `VarBuilder` backend serving the
//!   layers straight from TF files.
//!
//! How the modules stack up, from bytes to the command line, is in
//! `ARCHITECTURE.md`.
//!
//! No TensorFlow is needed for any of it.

#![deny(missing_docs)]

mod label;

// The deliberate public API: the facade (re-exported below) and the
// modules a user builds on.
pub mod bn;
#[cfg(feature = "candle")]
pub mod candle;
pub mod declared;
pub mod error;
pub mod export;
pub mod inspect;
pub mod lint;
pub mod model;
pub mod parity;
pub mod snapshot;
pub mod source;
#[cfg(feature = "tf")]
pub mod tf;
#[cfg(feature = "tf")]
pub mod verify;

/// Declares modules that are crate-private, or — with the `internals`
/// feature, which tfbn's own command line, tests and fuzz targets turn on —
/// public but hidden from the docs and reached through [`testing`]. Items
/// only those users call are dead code in a plain library build, hence the
/// `allow` there.
macro_rules! internal_modules {
    ($($name:ident),* $(,)?) => {$(
        #[cfg(feature = "internals")]
        #[doc(hidden)]
        pub mod $name;
        #[cfg(not(feature = "internals"))]
        #[allow(dead_code, unused_imports)]
        mod $name;
    )*};
}

internal_modules!(
    bundle, cleanup, dtype, find, frozen, fsio, fsx, host, hyper, keras, layers, mapping, npy,
    objgraph, prepare, proto, savedmodel, sniff, tensor
);
mod open;

/// tfbn's internals for its own command line, tests and fuzz targets (the
/// `internals` feature): not part of the supported API, and free to change
/// in any release.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod testing {
    pub use crate::{
        bundle, cleanup, dtype, find, frozen, fsio, fsx, host, hyper, keras, layers, mapping, npy,
        objgraph, prepare, proto, savedmodel, sniff, tensor,
    };
}

pub use bn::Mode;
pub use dtype::{DType, FloatArray, FloatDType};
pub use error::{Error, Result};
pub use label::UnknownLabel;
pub use model::{open, open_with, Layer, Model, OpenOptions, Role};
pub use tensor::{Tensor, TensorData};
