//! `tensorflow/core/protobuf/tensor_bundle.proto` (V2 bundles) and
//! `tensorflow/core/util/saved_tensor_slice.proto` (V1 checkpoints), as
//! hand-written prost derives. Field numbers:
//! `docs/formats.md#bundle-header-and-entries` and `#v1-checkpoints`. No protoc is needed to build.
//!
//! Enum fields (`endianness`, `dtype`, `type`) are kept as plain `int32` so
//! that an unknown value decodes and is reported by the bundle reader with
//! the key it belongs to, instead of failing inside prost.

use super::tensor::{TensorProto, TensorShapeProto, TensorSliceProto, VersionDef};

/// `BundleHeaderProto.Endianness::LITTLE`.
pub const ENDIANNESS_LITTLE: i32 = 0;
/// `BundleHeaderProto.Endianness::BIG`.
pub const ENDIANNESS_BIG: i32 = 1;

/// `BundleHeaderProto`: the value at the empty key of a V2 `.index` file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BundleHeaderProto {
    /// Number of data files (`.data-SSSSS-of-NNNNN`).
    #[prost(int32, tag = "1")]
    pub num_shards: i32,
    /// Byte order of the tensor data: [`ENDIANNESS_LITTLE`] or [`ENDIANNESS_BIG`].
    #[prost(int32, tag = "2")]
    pub endianness: i32,
    /// Writer and reader versions.
    #[prost(message, optional, tag = "3")]
    pub version: Option<VersionDef>,
}

/// `BundleEntryProto`: where one tensor's bytes live and how to check them.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BundleEntryProto {
    /// `DataType` code.
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    /// Shape (present even for scalars).
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
    /// Index of the data file holding the bytes.
    #[prost(int32, tag = "3")]
    pub shard_id: i32,
    /// Byte offset in that file.
    #[prost(int64, tag = "4")]
    pub offset: i64,
    /// Byte length.
    #[prost(int64, tag = "5")]
    pub size: i64,
    /// Masked crc32c of the bytes (see `bundle::crc`).
    #[prost(fixed32, tag = "6")]
    pub crc32c: u32,
    /// Non-empty for a partitioned tensor: the slices stored under their
    /// own slice keys.
    #[prost(message, repeated, tag = "7")]
    pub slices: Vec<TensorSliceProto>,
}

/// `SavedSliceMeta`: one tensor of a V1 checkpoint and the slices saved of it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SavedSliceMeta {
    /// Tensor name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Full shape.
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
    /// `DataType` code.
    #[prost(int32, tag = "3")]
    pub r#type: i32,
    /// The slices saved in this file.
    #[prost(message, repeated, tag = "4")]
    pub slice: Vec<TensorSliceProto>,
}

/// `SavedTensorSliceMeta`: the table of contents of a V1 file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SavedTensorSliceMeta {
    /// Every tensor with slices in this file.
    #[prost(message, repeated, tag = "1")]
    pub tensor: Vec<SavedSliceMeta>,
    /// Writer and reader versions.
    #[prost(message, optional, tag = "2")]
    pub versions: Option<VersionDef>,
}

/// `SavedSlice`: the values of one slice of one tensor.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SavedSlice {
    /// Tensor name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Which slice.
    #[prost(message, optional, tag = "2")]
    pub slice: Option<TensorSliceProto>,
    /// The values: only the typed value field is set (no dtype, no shape).
    #[prost(message, optional, tag = "3")]
    pub data: Option<TensorProto>,
}

/// `SavedTensorSlices`: every value of a V1 file; `meta` at the empty key,
/// `data` under each slice key.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SavedTensorSlices {
    /// Table of contents (empty key only).
    #[prost(message, optional, tag = "1")]
    pub meta: Option<SavedTensorSliceMeta>,
    /// One slice's values (slice keys only).
    #[prost(message, optional, tag = "2")]
    pub data: Option<SavedSlice>,
}
