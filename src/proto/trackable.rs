//! `tensorflow/core/protobuf/trackable_object_graph.proto`: the object graph
//! a TF2 object-based checkpoint stores at `_CHECKPOINTABLE_OBJECT_GRAPH`
//! (`docs/formats.md#trackableobjectgraph`). Hand-written prost derives.

/// `TrackableObjectGraph`: every object the checkpoint saw; node 0 is the
/// root object that was passed to `tf.train.Checkpoint` (or the model for
/// `save_weights`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TrackableObjectGraph {
    /// The objects, indexed by node id.
    #[prost(message, repeated, tag = "1")]
    pub nodes: Vec<TrackableObject>,
}

/// `TrackableObjectGraph.TrackableObject`: one object, its named edges and
/// the tensors saved for it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TrackableObject {
    /// Named edges to other objects, in TF's iteration order (the order the
    /// breadth-first walk that built the keys used).
    #[prost(message, repeated, tag = "1")]
    pub children: Vec<trackable_object::ObjectReference>,
    /// Tensors saved for this object (`VARIABLE_VALUE` for a variable).
    #[prost(message, repeated, tag = "2")]
    pub attributes: Vec<trackable_object::SerializedTensor>,
    /// Legacy (TF1-style / `tf.compat.v1` and tf_keras legacy) optimizer slot
    /// variables; they sit on the optimizer's node.
    #[prost(message, repeated, tag = "3")]
    pub slot_variables: Vec<trackable_object::SlotVariableReference>,
    /// A registered saver that saves this object instead of its attributes.
    #[prost(message, optional, tag = "4")]
    pub registered_saver: Option<RegisteredSaver>,
    /// Whether this object or any descendant has checkpoint values.
    #[prost(message, optional, tag = "5")]
    pub has_checkpoint_values: Option<BoolValue>,
}

/// Nested messages of [`TrackableObject`].
pub mod trackable_object {
    /// `ObjectReference`: a named edge to another node.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ObjectReference {
        /// Target node id.
        #[prost(int32, tag = "1")]
        pub node_id: i32,
        /// Edge name, unescaped (escaping happens only in keys).
        #[prost(string, tag = "2")]
        pub local_name: String,
    }

    /// `SerializedTensor`: one saved tensor of an object.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SerializedTensor {
        /// Attribute name, e.g. `VARIABLE_VALUE`.
        #[prost(string, tag = "1")]
        pub name: String,
        /// The variable's own name (`bn/gamma`), unrelated to the key path.
        #[prost(string, tag = "2")]
        pub full_name: String,
        /// The bundle key holding the value.
        #[prost(string, tag = "3")]
        pub checkpoint_key: String,
    }

    /// `SlotVariableReference`: a legacy optimizer slot.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SlotVariableReference {
        /// Node id of the variable the slot belongs to.
        #[prost(int32, tag = "1")]
        pub original_variable_node_id: i32,
        /// Slot name (`m`, `v`, `momentum`, …).
        #[prost(string, tag = "2")]
        pub slot_name: String,
        /// Node id of the slot variable itself.
        #[prost(int32, tag = "3")]
        pub slot_variable_node_id: i32,
    }
}

/// `RegisteredSaver`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RegisteredSaver {
    /// Name of the registered saver.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Unique name of the object that uses it.
    #[prost(string, tag = "2")]
    pub object_name: String,
}

/// `google.protobuf.BoolValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BoolValue {
    /// The value.
    #[prost(bool, tag = "1")]
    pub value: bool,
}
