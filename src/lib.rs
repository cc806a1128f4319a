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
//! The data flow, one module per step:
//!
//! 1. [`bundle`] reads TF's V2 tensor bundles (sharded, partitioned, any
//!    endianness) and V1 legacy checkpoints natively, checking every crc.
//! 2. [`objgraph`] maps TF2 object-based checkpoint keys to variable names and
//!    object paths; [`savedmodel`] opens SavedModels (`saved_model.pb`,
//!    `keras_metadata.pb`, `variables/`).
//! 3. [`source`] opens any supported path and lists its variables with their
//!    role (model, optimizer slot, EMA shadow, bookkeeping).
//! 4. [`layers`] groups variables into batch-norm layers for every naming
//!    style (TF1 scopes, TF-slim, tf_keras, Keras 3).
//! 5. [`export`] writes the layers (named for TF, PyTorch, candle or burn,
//!    with every convention in the metadata) or all variables to safetensors
//!    files, deterministically and atomically.
//!
//! No TensorFlow is needed for any of it.

pub mod bn;
pub mod bundle;
#[cfg(feature = "candle")]
pub mod candle;
pub mod cleanup;
pub mod declared;
pub mod dtype;
pub mod error;
pub mod export;
pub mod find;
pub mod frozen;
pub mod fsio;
pub mod fsx;
pub mod hyper;
pub mod inspect;
pub mod keras;
pub mod layers;
pub mod lint;
pub mod mapping;
pub mod model;
pub mod npy;
pub mod objgraph;
mod open;
pub mod parity;
pub mod prepare;
pub mod proto;
pub mod savedmodel;
pub mod snapshot;
pub mod sniff;
pub mod source;
pub mod tensor;
#[cfg(feature = "tf")]
pub mod tf;
#[cfg(feature = "tf")]
pub mod verify;

pub use bn::Mode;
pub use dtype::DType;
pub use error::{Error, Result};
pub use model::{open, open_with, FloatArray, Layer, Model, OpenOptions, Role};
pub use tensor::{Tensor, TensorData};
