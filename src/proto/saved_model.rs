//! `tensorflow/core/protobuf/{saved_model,meta_graph,saver,saved_object_graph}.proto`:
//! `saved_model.pb` (`docs/formats.md#savedmodel-messages`). Hand-written prost
//! derives; fields tfbn never reads (collections, asset defs, function specs,
//! structured signatures, `serialized_user_proto`, …) are left out, and prost
//! skips them.

use std::collections::BTreeMap;

use super::graph::GraphDef;
use super::tensor::{TensorShapeProto, VersionDef};
use super::trackable::trackable_object::{ObjectReference, SlotVariableReference};

/// `SavedModel`: the root message of `saved_model.pb`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SavedModel {
    /// Schema version (1).
    #[prost(int64, tag = "1")]
    pub saved_model_schema_version: i64,
    /// Meta graphs, usually one tagged `serve`.
    #[prost(message, repeated, tag = "2")]
    pub meta_graphs: Vec<MetaGraphDef>,
}

/// `MetaGraphDef`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetaGraphDef {
    /// Tags and writer versions.
    #[prost(message, optional, tag = "1")]
    pub meta_info_def: Option<meta_graph_def::MetaInfoDef>,
    /// The graph.
    #[prost(message, optional, tag = "2")]
    pub graph_def: Option<GraphDef>,
    /// How to save and restore (TF1 SavedModels).
    #[prost(message, optional, tag = "3")]
    pub saver_def: Option<SaverDef>,
    /// Signatures by key (`serving_default`, …).
    #[prost(btree_map = "string, message", tag = "5")]
    pub signature_def: BTreeMap<String, SignatureDef>,
    /// TF2 object graph (absent in TF1 SavedModels).
    #[prost(message, optional, tag = "7")]
    pub object_graph_def: Option<SavedObjectGraph>,
}

impl MetaGraphDef {
    /// The meta graph's tags (`serve`, `train`, …).
    pub fn tags(&self) -> &[String] {
        self.meta_info_def
            .as_ref()
            .map(|m| m.tags.as_slice())
            .unwrap_or(&[])
    }

    /// True when the writer removed default-valued attributes from nodes,
    /// so a missing attribute means its op default.
    pub fn stripped_default_attrs(&self) -> bool {
        self.meta_info_def
            .as_ref()
            .is_some_and(|m| m.stripped_default_attrs)
    }
}

/// Nested messages of [`MetaGraphDef`].
pub mod meta_graph_def {
    use std::collections::BTreeMap;

    /// `MetaGraphDef.MetaInfoDef`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetaInfoDef {
        /// User-supplied version string.
        #[prost(string, tag = "1")]
        pub meta_graph_version: String,
        /// Tags identifying this meta graph.
        #[prost(string, repeated, tag = "4")]
        pub tags: Vec<String>,
        /// `tf.__version__` of the writer.
        #[prost(string, tag = "5")]
        pub tensorflow_version: String,
        /// `tf.__git_version__` of the writer.
        #[prost(string, tag = "6")]
        pub tensorflow_git_version: String,
        /// Default-valued node attributes were removed.
        #[prost(bool, tag = "7")]
        pub stripped_default_attrs: bool,
        /// Function aliases.
        #[prost(btree_map = "string, string", tag = "8")]
        pub function_aliases: BTreeMap<String, String>,
    }
}

/// `SaverDef`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SaverDef {
    /// Tensor holding the checkpoint filename.
    #[prost(string, tag = "1")]
    pub filename_tensor_name: String,
    /// Save op output.
    #[prost(string, tag = "2")]
    pub save_tensor_name: String,
    /// Restore op.
    #[prost(string, tag = "3")]
    pub restore_op_name: String,
    /// Checkpoints to keep.
    #[prost(int32, tag = "4")]
    pub max_to_keep: i32,
    /// Sharded save.
    #[prost(bool, tag = "5")]
    pub sharded: bool,
    /// Keep-every interval.
    #[prost(float, tag = "6")]
    pub keep_checkpoint_every_n_hours: f32,
    /// Checkpoint format: 0 LEGACY, 1 V1, 2 V2.
    #[prost(int32, tag = "7")]
    pub version: i32,
}

/// `SignatureDef`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SignatureDef {
    /// Inputs by key.
    #[prost(btree_map = "string, message", tag = "1")]
    pub inputs: BTreeMap<String, TensorInfo>,
    /// Outputs by key.
    #[prost(btree_map = "string, message", tag = "2")]
    pub outputs: BTreeMap<String, TensorInfo>,
    /// Method name (`tensorflow/serving/predict`).
    #[prost(string, tag = "3")]
    pub method_name: String,
}

/// `TensorInfo` (dense tensors only; sparse and composite encodings are
/// skipped).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorInfo {
    /// Graph tensor name (`serving_default_x:0`).
    #[prost(string, tag = "1")]
    pub name: String,
    /// `DataType` code.
    #[prost(int32, tag = "2")]
    pub dtype: i32,
    /// Shape.
    #[prost(message, optional, tag = "3")]
    pub tensor_shape: Option<TensorShapeProto>,
}

/// `SavedObjectGraph`: the TF2 object graph of a SavedModel. Its nodes pair
/// with the variables bundle's `TrackableObjectGraph` by local names from the
/// root, not by id (`SavedModel::variable_nodes`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SavedObjectGraph {
    /// Objects; node 0 is the root.
    #[prost(message, repeated, tag = "1")]
    pub nodes: Vec<SavedObject>,
    /// Concrete functions by name (a `FunctionDef` signature name).
    #[prost(btree_map = "string, message", tag = "2")]
    pub concrete_functions: BTreeMap<String, SavedConcreteFunction>,
}

/// `SavedConcreteFunction`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SavedConcreteFunction {
    /// Node ids of the objects (variables) bound to the function's trailing
    /// `DT_RESOURCE` arguments, in order.
    #[prost(int32, repeated, tag = "2")]
    pub bound_inputs: Vec<i32>,
}

/// `SavedObject`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SavedObject {
    /// Named edges (the checkpoint's object graph has the same names).
    #[prost(message, repeated, tag = "1")]
    pub children: Vec<ObjectReference>,
    /// Legacy optimizer slots.
    #[prost(message, repeated, tag = "3")]
    pub slot_variables: Vec<SlotVariableReference>,
    /// What the object is.
    #[prost(oneof = "saved_object::Kind", tags = "4, 5, 6, 7, 8, 9, 10, 12")]
    pub kind: Option<saved_object::Kind>,
    /// Name of a registered (`tf.saved_model` registered) class.
    #[prost(string, tag = "13")]
    pub registered_name: String,
    /// Dependencies needed to restore this object.
    #[prost(message, repeated, tag = "15")]
    pub dependencies: Vec<ObjectReference>,
    /// Registered saver name.
    #[prost(string, tag = "16")]
    pub registered_saver: String,
}

/// Nested messages of [`SavedObject`].
pub mod saved_object {
    use super::{
        CapturedTensor, SavedAsset, SavedBareConcreteFunction, SavedConstant, SavedFunction,
        SavedResource, SavedUserObject, SavedVariable,
    };

    /// The `kind` oneof of `SavedObject`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Kind {
        /// A Python object (layer, model, module, …).
        #[prost(message, tag = "4")]
        UserObject(SavedUserObject),
        /// An asset file.
        #[prost(message, tag = "5")]
        Asset(SavedAsset),
        /// A `tf.function`.
        #[prost(message, tag = "6")]
        Function(SavedFunction),
        /// A variable.
        #[prost(message, tag = "7")]
        Variable(SavedVariable),
        /// A concrete function without a polymorphic wrapper.
        #[prost(message, tag = "8")]
        BareConcreteFunction(SavedBareConcreteFunction),
        /// A constant.
        #[prost(message, tag = "9")]
        Constant(SavedConstant),
        /// A resource (lookup table, …).
        #[prost(message, tag = "10")]
        Resource(SavedResource),
        /// A captured tensor.
        #[prost(message, tag = "12")]
        CapturedTensor(CapturedTensor),
    }
}

/// `SavedUserObject`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SavedUserObject {
    /// Kind, e.g. `_tf_keras_layer`, `_generic_user_object`.
    #[prost(string, tag = "1")]
    pub identifier: String,
    /// Version of the identifier's format.
    #[prost(message, optional, tag = "2")]
    pub version: Option<VersionDef>,
    /// Keras JSON metadata (older writers; tf_keras now writes it to
    /// `keras_metadata.pb`). Inert data: never executed.
    #[prost(string, tag = "3")]
    pub metadata: String,
}

/// `SavedAsset`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SavedAsset {
    /// Index into `MetaGraphDef.asset_file_def`.
    #[prost(int32, tag = "1")]
    pub asset_file_def_index: i32,
}

/// `SavedFunction`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SavedFunction {
    /// Names of its concrete functions.
    #[prost(string, repeated, tag = "1")]
    pub concrete_functions: Vec<String>,
}

/// `SavedBareConcreteFunction`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SavedBareConcreteFunction {
    /// Name of the concrete function.
    #[prost(string, tag = "1")]
    pub concrete_function_name: String,
    /// Keyword argument names.
    #[prost(string, repeated, tag = "2")]
    pub argument_keywords: Vec<String>,
    /// Number of positional arguments allowed.
    #[prost(int64, tag = "3")]
    pub allowed_positional_arguments: i64,
}

/// `SavedConstant`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SavedConstant {
    /// Name of the `Const` node in the graph.
    #[prost(string, tag = "1")]
    pub operation: String,
}

/// `SavedVariable`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SavedVariable {
    /// `DataType` code.
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    /// Shape.
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
    /// Trainable.
    #[prost(bool, tag = "3")]
    pub trainable: bool,
    /// `VariableSynchronization` code.
    #[prost(int32, tag = "4")]
    pub synchronization: i32,
    /// `VariableAggregation` code.
    #[prost(int32, tag = "5")]
    pub aggregation: i32,
    /// Variable name (`batch_normalization/gamma`).
    #[prost(string, tag = "6")]
    pub name: String,
    /// Device.
    #[prost(string, tag = "7")]
    pub device: String,
}

/// `SavedResource`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SavedResource {
    /// Device.
    #[prost(string, tag = "1")]
    pub device: String,
}

/// `CapturedTensor`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CapturedTensor {
    /// Tensor name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Concrete function that captures it.
    #[prost(string, tag = "2")]
    pub concrete_function: String,
}
