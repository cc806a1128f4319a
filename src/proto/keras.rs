//! `keras/protobuf/saved_metadata.proto` (tf_keras): `keras_metadata.pb`
//! next to `saved_model.pb` (`docs/formats.md#keras-metadata`).

use super::tensor::VersionDef;

/// `SavedMetadata`: Keras JSON metadata for the SavedModel's objects.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SavedMetadata {
    /// One entry per Keras object.
    #[prost(message, repeated, tag = "1")]
    pub nodes: Vec<SavedObject>,
}

/// `SavedObject` of `saved_metadata.proto` (not the SavedModel one).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SavedObject {
    /// Index into the SavedModel's `SavedObjectGraph.nodes`.
    #[prost(int32, tag = "2")]
    pub node_id: i32,
    /// Python path, e.g. `root.layer_with_weights-1`.
    #[prost(string, tag = "3")]
    pub node_path: String,
    /// Identifier, e.g. `_tf_keras_layer`.
    #[prost(string, tag = "4")]
    pub identifier: String,
    /// JSON metadata (`class_name`, `config`, …). Inert data.
    #[prost(string, tag = "5")]
    pub metadata: String,
    /// Metadata format version.
    #[prost(message, optional, tag = "6")]
    pub version: Option<VersionDef>,
}
