//! `tensorflow/core/framework/{tensor,tensor_shape,tensor_slice,versions}.proto`,
//! hand-written prost derives (field numbers from TF 2.21's descriptors;
//! see `docs/formats.md#bundle-header-and-entries` and `#constants`). No protoc is needed to build.

/// `TensorShapeProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    /// Dimensions, outermost first.
    #[prost(message, repeated, tag = "2")]
    pub dim: Vec<tensor_shape_proto::Dim>,
    /// True when the rank itself is unknown.
    #[prost(bool, tag = "3")]
    pub unknown_rank: bool,
}

/// Nested messages of [`TensorShapeProto`].
pub mod tensor_shape_proto {
    /// One dimension. `size` is −1 when unknown.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dim {
        /// Size of the dimension (−1 = unknown).
        #[prost(int64, tag = "1")]
        pub size: i64,
        /// Optional name.
        #[prost(string, tag = "2")]
        pub name: String,
    }
}

/// `VersionDef`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VersionDef {
    /// Version of the writer.
    #[prost(int32, tag = "1")]
    pub producer: i32,
    /// Oldest reader version that can read this.
    #[prost(int32, tag = "2")]
    pub min_consumer: i32,
    /// Reader versions that must not read this.
    #[prost(int32, repeated, tag = "3")]
    pub bad_consumers: Vec<i32>,
}

/// `TensorSliceProto`: one extent per dimension.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorSliceProto {
    /// Extents, one per dimension.
    #[prost(message, repeated, tag = "1")]
    pub extent: Vec<tensor_slice_proto::Extent>,
}

/// Nested messages of [`TensorSliceProto`].
pub mod tensor_slice_proto {
    /// `[start, start + length)`; no length means the whole dimension.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Extent {
        /// First index.
        #[prost(int64, tag = "1")]
        pub start: i64,
        /// Number of indices; `None` = the full dimension.
        #[prost(int64, optional, tag = "2")]
        pub length: Option<i64>,
    }
}

/// `TensorProto` (the subset of fields TF writes for dense values).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// `DataType` code.
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    /// Shape.
    #[prost(message, optional, tag = "2")]
    pub tensor_shape: Option<TensorShapeProto>,
    /// Version number (unused by tfbn).
    #[prost(int32, tag = "3")]
    pub version_number: i32,
    /// Raw little-endian element bytes.
    #[prost(bytes = "vec", tag = "4")]
    pub tensor_content: Vec<u8>,
    /// DT_FLOAT values.
    #[prost(float, repeated, tag = "5")]
    pub float_val: Vec<f32>,
    /// DT_DOUBLE values.
    #[prost(double, repeated, tag = "6")]
    pub double_val: Vec<f64>,
    /// DT_INT32, DT_INT16, DT_INT8, DT_UINT8, DT_UINT16 values.
    #[prost(int32, repeated, tag = "7")]
    pub int_val: Vec<i32>,
    /// DT_STRING values.
    #[prost(bytes = "vec", repeated, tag = "8")]
    pub string_val: Vec<Vec<u8>>,
    /// DT_COMPLEX64 values as (re, im) pairs.
    #[prost(float, repeated, tag = "9")]
    pub scomplex_val: Vec<f32>,
    /// DT_INT64 values.
    #[prost(int64, repeated, tag = "10")]
    pub int64_val: Vec<i64>,
    /// DT_BOOL values.
    #[prost(bool, repeated, tag = "11")]
    pub bool_val: Vec<bool>,
    /// DT_COMPLEX128 values as (re, im) pairs.
    #[prost(double, repeated, tag = "12")]
    pub dcomplex_val: Vec<f64>,
    /// DT_HALF and DT_BFLOAT16 values, as bit patterns in the low 16 bits.
    #[prost(int32, repeated, tag = "13")]
    pub half_val: Vec<i32>,
    /// DT_UINT32 values.
    #[prost(uint32, repeated, tag = "16")]
    pub uint32_val: Vec<u32>,
    /// DT_UINT64 values.
    #[prost(uint64, repeated, tag = "17")]
    pub uint64_val: Vec<u64>,
}
