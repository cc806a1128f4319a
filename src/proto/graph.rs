//! `tensorflow/core/framework/{graph,node_def,attr_value,function,op_def}.proto`:
//! the graph a SavedModel stores (`docs/formats.md#graphdef-and-functions`). Hand-written
//! prost derives; fields tfbn never reads are left out (prost skips unknown
//! fields).
//!
//! `AttrValue` is recursive (through `NameAttrList.attr` and
//! `ListValue.func`); prost's decoder stops at 100 nested messages with a
//! `DecodeError`, so a recursion bomb is an error, not a stack overflow
//! (`docs/reliability.md#crafted-inputs`, case 43).

use std::collections::BTreeMap;

use super::tensor::{TensorProto, TensorShapeProto, VersionDef};

/// `GraphDef`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphDef {
    /// Top-level nodes.
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeDef>,
    /// Functions (TF2 SavedModels keep the compute here).
    #[prost(message, optional, tag = "2")]
    pub library: Option<FunctionDefLibrary>,
    /// Deprecated single version number.
    #[prost(int32, tag = "3")]
    pub version: i32,
    /// Producer / consumer versions.
    #[prost(message, optional, tag = "4")]
    pub versions: Option<VersionDef>,
}

/// `NodeDef`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeDef {
    /// Unique name within its graph or function.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Op type, e.g. `FusedBatchNormV3`.
    #[prost(string, tag = "2")]
    pub op: String,
    /// Inputs: `node`, `node:k`, `^control` in a GraphDef; an argument name,
    /// `node:out_arg:k` or `^node` inside a function.
    #[prost(string, repeated, tag = "3")]
    pub input: Vec<String>,
    /// Requested device.
    #[prost(string, tag = "4")]
    pub device: String,
    /// Attributes. Default-valued ones are absent when the meta graph has
    /// `stripped_default_attrs`.
    #[prost(btree_map = "string, message", tag = "5")]
    pub attr: BTreeMap<String, AttrValue>,
}

impl NodeDef {
    /// The attribute `name` when it holds a float (`f`).
    pub fn attr_f32(&self, name: &str) -> Option<f32> {
        match self.attr.get(name)?.value {
            Some(attr_value::Value::F(f)) => Some(f),
            _ => None,
        }
    }

    /// The attribute `name` when it holds a bool (`b`).
    pub fn attr_bool(&self, name: &str) -> Option<bool> {
        match self.attr.get(name)?.value {
            Some(attr_value::Value::B(b)) => Some(b),
            _ => None,
        }
    }

    /// The attribute `name` when it holds UTF-8 bytes (`s`), e.g.
    /// `data_format`. Non-UTF-8 bytes give `None`.
    pub fn attr_str(&self, name: &str) -> Option<&str> {
        match &self.attr.get(name)?.value {
            Some(attr_value::Value::S(s)) => std::str::from_utf8(s).ok(),
            _ => None,
        }
    }

    /// The attribute `name` when it holds an integer (`i`).
    pub fn attr_i64(&self, name: &str) -> Option<i64> {
        match self.attr.get(name)?.value {
            Some(attr_value::Value::I(i)) => Some(i),
            _ => None,
        }
    }

    /// The attribute `name` when it holds a `DataType` code (`type`), e.g.
    /// `T` or `U` of `FusedBatchNormV3`.
    pub fn attr_type(&self, name: &str) -> Option<i32> {
        match self.attr.get(name)?.value {
            Some(attr_value::Value::Type(t)) => Some(t),
            _ => None,
        }
    }

    /// The attribute `name` when it holds a function reference (`func`),
    /// e.g. `f` of `StatefulPartitionedCall`.
    pub fn attr_func(&self, name: &str) -> Option<&NameAttrList> {
        match &self.attr.get(name)?.value {
            Some(attr_value::Value::Func(f)) => Some(f),
            _ => None,
        }
    }

    /// The attribute `name` when it holds a tensor (`tensor`), e.g. `value`
    /// of `Const`.
    pub fn attr_tensor(&self, name: &str) -> Option<&TensorProto> {
        match &self.attr.get(name)?.value {
            Some(attr_value::Value::Tensor(t)) => Some(t),
            _ => None,
        }
    }
}

/// `AttrValue`: one node attribute.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttrValue {
    /// The value; `None` when the attribute was set to nothing.
    #[prost(oneof = "attr_value::Value", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10")]
    pub value: Option<attr_value::Value>,
}

/// Nested messages of [`AttrValue`].
pub mod attr_value {
    use super::{NameAttrList, TensorProto, TensorShapeProto};

    /// The `value` oneof of `AttrValue`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        /// A list of values.
        #[prost(message, tag = "1")]
        List(ListValue),
        /// Bytes (usually a UTF-8 string).
        #[prost(bytes = "vec", tag = "2")]
        S(Vec<u8>),
        /// An integer.
        #[prost(int64, tag = "3")]
        I(i64),
        /// A float.
        #[prost(float, tag = "4")]
        F(f32),
        /// A bool.
        #[prost(bool, tag = "5")]
        B(bool),
        /// A `DataType` code.
        #[prost(int32, tag = "6")]
        Type(i32),
        /// A shape.
        #[prost(message, tag = "7")]
        Shape(TensorShapeProto),
        /// A tensor.
        #[prost(message, tag = "8")]
        Tensor(TensorProto),
        /// A placeholder name in a function body.
        #[prost(string, tag = "9")]
        Placeholder(String),
        /// A function reference.
        #[prost(message, tag = "10")]
        Func(NameAttrList),
    }

    /// `AttrValue.ListValue`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListValue {
        /// Byte strings.
        #[prost(bytes = "vec", repeated, tag = "2")]
        pub s: Vec<Vec<u8>>,
        /// Integers.
        #[prost(int64, repeated, tag = "3")]
        pub i: Vec<i64>,
        /// Floats.
        #[prost(float, repeated, tag = "4")]
        pub f: Vec<f32>,
        /// Bools.
        #[prost(bool, repeated, tag = "5")]
        pub b: Vec<bool>,
        /// `DataType` codes.
        #[prost(int32, repeated, tag = "6")]
        pub r#type: Vec<i32>,
        /// Shapes.
        #[prost(message, repeated, tag = "7")]
        pub shape: Vec<TensorShapeProto>,
        /// Tensors.
        #[prost(message, repeated, tag = "8")]
        pub tensor: Vec<TensorProto>,
        /// Function references.
        #[prost(message, repeated, tag = "9")]
        pub func: Vec<NameAttrList>,
    }
}

/// `NameAttrList`: a function name with attributes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NameAttrList {
    /// Function name (a key of [`FunctionDefLibrary::function`] by
    /// `signature.name`).
    #[prost(string, tag = "1")]
    pub name: String,
    /// Attributes.
    #[prost(btree_map = "string, message", tag = "2")]
    pub attr: BTreeMap<String, AttrValue>,
}

/// `FunctionDefLibrary`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FunctionDefLibrary {
    /// Functions.
    #[prost(message, repeated, tag = "1")]
    pub function: Vec<FunctionDef>,
    /// Gradient registrations.
    #[prost(message, repeated, tag = "2")]
    pub gradient: Vec<GradientDef>,
}

/// `GradientDef`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GradientDef {
    /// The function.
    #[prost(string, tag = "1")]
    pub function_name: String,
    /// Its gradient function.
    #[prost(string, tag = "2")]
    pub gradient_func: String,
}

/// `FunctionDef`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FunctionDef {
    /// Name and arguments.
    #[prost(message, optional, tag = "1")]
    pub signature: Option<OpDef>,
    /// Body.
    #[prost(message, repeated, tag = "3")]
    pub node_def: Vec<NodeDef>,
    /// Output arg name → `node:out_arg:k`.
    #[prost(btree_map = "string, string", tag = "4")]
    pub ret: BTreeMap<String, String>,
    /// Function attributes.
    #[prost(btree_map = "string, message", tag = "5")]
    pub attr: BTreeMap<String, AttrValue>,
    /// Control output name → node name.
    #[prost(btree_map = "string, string", tag = "6")]
    pub control_ret: BTreeMap<String, String>,
    /// Per-argument attributes, by argument index.
    #[prost(btree_map = "uint32, message", tag = "7")]
    pub arg_attr: BTreeMap<u32, function_def::ArgAttrs>,
}

/// Nested messages of [`FunctionDef`].
pub mod function_def {
    use std::collections::BTreeMap;

    use super::AttrValue;

    /// `FunctionDef.ArgAttrs`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ArgAttrs {
        /// Attributes of one argument (`_user_specified_name`, …).
        #[prost(btree_map = "string, message", tag = "1")]
        pub attr: BTreeMap<String, AttrValue>,
    }
}

/// `OpDef` (the parts a function signature uses).
#[derive(Clone, PartialEq, prost::Message)]
pub struct OpDef {
    /// Op or function name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Inputs, in order.
    #[prost(message, repeated, tag = "2")]
    pub input_arg: Vec<op_def::ArgDef>,
    /// Outputs, in order.
    #[prost(message, repeated, tag = "3")]
    pub output_arg: Vec<op_def::ArgDef>,
    /// Control outputs.
    #[prost(string, repeated, tag = "20")]
    pub control_output: Vec<String>,
}

/// Nested messages of [`OpDef`].
pub mod op_def {
    /// `OpDef.ArgDef`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ArgDef {
        /// Argument name.
        #[prost(string, tag = "1")]
        pub name: String,
        /// Free-text description.
        #[prost(string, tag = "2")]
        pub description: String,
        /// `DataType` code (`DT_RESOURCE` = 20 for captured variables).
        #[prost(int32, tag = "3")]
        pub r#type: i32,
        /// Attribute giving the type, when not fixed.
        #[prost(string, tag = "4")]
        pub type_attr: String,
        /// Attribute giving the repeat count.
        #[prost(string, tag = "5")]
        pub number_attr: String,
        /// Attribute giving a list of types.
        #[prost(string, tag = "6")]
        pub type_list_attr: String,
        /// Reference argument.
        #[prost(bool, tag = "16")]
        pub is_ref: bool,
    }
}
