//! Protobuf messages TF writes, as hand-written prost derives (checked in;
//! no protoc at build time). Field numbers: `docs/formats.md`.

pub mod bundle;
pub mod graph;
pub mod keras;
pub mod saved_model;
pub mod tensor;
pub mod trackable;
