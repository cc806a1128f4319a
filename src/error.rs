//! The one error type of the library. Each variant is named after the
//! invariant the input broke, and carries the file (and key, where there is
//! one) so that a one-line message tells the user where to look.

use std::path::PathBuf;

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong reading, checking or writing files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- I/O and paths ------------------------------------------------
    /// The operating system refused a read or write.
    #[error("{path}: {source}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The path is none of the forms tfbn understands.
    #[error("{path}: not a checkpoint, checkpoint folder or SavedModel ({why})")]
    PathNotRecognized {
        /// Path as given.
        path: PathBuf,
        /// What was looked for.
        why: String,
    },
    /// The file is of a format tfbn recognises but does not read (HDF5,
    /// ONNX, TFLite, PyTorch, …): what it is and how to get a file tfbn
    /// reads.
    #[error("{path}: {what}")]
    FormatNotRead {
        /// The file.
        path: PathBuf,
        /// What it is, and what to do.
        what: &'static str,
    },
    /// TensorFlow has no reader for this format (Keras HDF5 files, frozen
    /// graphs): a cross-check through TF is not possible.
    #[error("{path}: TensorFlow has no reader for {format} files, so there is nothing to cross-check the native reading against (the test suite cross-checks these with h5py or the graph itself)")]
    TfHasNoReader {
        /// The file.
        path: PathBuf,
        /// The format's label.
        format: &'static str,
    },
    /// An HDF5 file's structure is broken or uses a feature the decoder does
    /// not support (the decoder says which).
    #[error("{path}: not a readable HDF5 file: {why}")]
    Hdf5Unreadable {
        /// The file (a `.keras` archive names its member).
        path: PathBuf,
        /// The decoder's account.
        why: String,
    },
    /// An HDF5 file that holds no Keras weights: neither Keras 2's
    /// `layer_names` / `model_weights` nor Keras 3's `…/vars` groups.
    #[error("{path}: an HDF5 file, but not one Keras wrote ({what}); tfbn reads Keras .h5, .weights.h5 and .keras files")]
    Hdf5NotKeras {
        /// The file.
        path: PathBuf,
        /// What its top level holds.
        what: String,
    },
    /// A `.keras` archive is not a zip tfbn can read, or lacks a member
    /// Keras always writes.
    #[error("{path}: not a readable .keras archive: {why}")]
    KerasArchiveInvalid {
        /// The archive.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// An archive member or HDF5 dataset declares more bytes than tfbn
    /// will hold in memory (or more than its compressed size can expand
    /// to): refused before anything is allocated.
    #[error("{path}: {what} declares {bytes} bytes, over the limit of {limit}")]
    SizeOverLimit {
        /// The file.
        path: PathBuf,
        /// The member or dataset.
        what: String,
        /// Declared size.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// A Keras model config (`config.json`, `model_config`) is not the JSON
    /// Keras writes.
    #[error("{path}: {file} is not a Keras model config: {why}")]
    KerasConfigInvalid {
        /// The file holding it.
        path: PathBuf,
        /// `config.json`, `model_config`, …
        file: String,
        /// What is wrong.
        why: String,
    },
    /// A Keras model config was given for a file that is not a Keras
    /// weights file, so it has nothing to describe.
    #[error("{path}: a Keras model config ({config}) describes Keras weights files, and this is a {format} source")]
    KerasConfigNotApplicable {
        /// The source.
        path: PathBuf,
        /// The config as given.
        config: String,
        /// The source's format label.
        format: &'static str,
    },
    /// The folder an output would go into does not exist (tfbn does not
    /// create folders).
    #[error("{path}: the folder {folder} does not exist (tfbn creates files, not folders)")]
    OutputFolderMissing {
        /// The output as given.
        path: PathBuf,
        /// Its folder.
        folder: PathBuf,
    },
    /// A declared layer mapping (`[GLOB:]ROLE=NAME,…`) does not parse.
    #[error("layer mapping {mapping:?}: {why}")]
    LayerMappingInvalid {
        /// The mapping as written.
        mapping: String,
        /// What is wrong with it.
        why: String,
    },
    /// tfbn reads data only from regular files: a FIFO would block the
    /// read, a device may never end.
    #[error("{path}: is {kind}, not a regular file (tfbn reads data only from regular files)")]
    FileNotRegular {
        /// Path as given.
        path: PathBuf,
        /// What it is instead (`a FIFO`, `a folder`, `a character device` …).
        kind: &'static str,
    },
    /// A file is larger than tfbn reads whole for its kind.
    #[error("{path}: {len} bytes is over the limit of {limit} bytes for this file")]
    FileTooLarge {
        /// File.
        path: PathBuf,
        /// Its length (or what was read of it).
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// A declared setting (`epsilon` as `[GLOB=]VALUE`, …) does not parse or
    /// is out of range.
    #[error("{declaration}: {why}")]
    DeclarationInvalid {
        /// The declaration as written.
        declaration: String,
        /// What is wrong with it.
        why: String,
    },
    /// A settings sidecar (TOML or JSON) does not parse or holds a value out
    /// of range.
    #[error("sidecar {file}: {why}")]
    HyperFileInvalid {
        /// The sidecar as given.
        file: String,
        /// What is wrong with it.
        why: String,
    },
    /// An output file exists and replacing it was not asked for.
    #[error("{path}: already exists; it is replaced only when that is asked for")]
    OutputExists {
        /// Output path.
        path: PathBuf,
    },

    /// An output path must name a regular file (or nothing yet).
    #[error("{path}: is {kind}; the output must be a file path")]
    OutputNotAFile {
        /// Output path.
        path: PathBuf,
        /// What is there (`a folder`, `a FIFO` …).
        kind: &'static str,
    },
    /// An output must not be one of the files being read.
    #[error("{path}: is the input file {input}; writing it would destroy what is being read, so it is refused even where replacing files is allowed")]
    OutputIsInput {
        /// Output path.
        path: PathBuf,
        /// The input file it is (same device and inode).
        input: PathBuf,
    },

    // ---- SSTable layer ------------------------------------------------
    /// File shorter than the 48-byte footer.
    #[error("{path}: {len} bytes is too short for a table (footer is 48 bytes)")]
    TableTooShort {
        /// File.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// Footer magic is not 0xdb4775248b80fb57.
    #[error("{path}: footer magic {found:#018x} is not the table magic 0xdb4775248b80fb57")]
    FooterMagicMismatch {
        /// File.
        path: PathBuf,
        /// Magic found.
        found: u64,
    },
    /// A block handle points outside the file.
    #[error(
        "{path}: block at offset {offset} size {size} runs past the end of the {len}-byte file"
    )]
    BlockOutOfBounds {
        /// File.
        path: PathBuf,
        /// Block offset.
        offset: u64,
        /// Block size.
        size: u64,
        /// File length.
        len: u64,
    },
    /// The masked crc32c of a block does not match its trailer.
    #[error("{path}: block at offset {offset}: crc32c mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    BlockCrcMismatch {
        /// File.
        path: PathBuf,
        /// Block offset.
        offset: u64,
        /// Unmasked crc stored in the trailer.
        stored: u32,
        /// crc computed over the block and type byte.
        computed: u32,
    },
    /// Block compression type is not 0 (raw).
    #[error("{path}: block at offset {offset} has compression type {block_type}; only raw (0) is supported")]
    BlockTypeUnsupported {
        /// File.
        path: PathBuf,
        /// Block offset.
        offset: u64,
        /// Type byte.
        block_type: u8,
    },
    /// The bytes of a block do not decode (bad varint, restart array,
    /// shared prefix, entry running past the block …).
    #[error("{path}: block at offset {offset}: {what}")]
    BlockCorrupt {
        /// File.
        path: PathBuf,
        /// Block offset.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// Keys are not strictly increasing (out of order or duplicated).
    #[error("{path}: key {key:?} is not greater than the key before it (keys must be unique and sorted)")]
    KeysNotSorted {
        /// File.
        path: PathBuf,
        /// The offending key.
        key: String,
    },

    // ---- Bundle layer -------------------------------------------------
    /// No header entry at the empty key.
    #[error("{path}: no bundle header (the first key must be empty)")]
    HeaderMissing {
        /// File.
        path: PathBuf,
    },
    /// The header is not a BundleHeaderProto, or holds impossible values.
    #[error("{path}: bundle header: {what}")]
    HeaderInvalid {
        /// File.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The header's version says this reader must not read the file.
    #[error("{path}: written for readers ≥ {min_consumer} (bad consumers {bad_consumers:?}); tfbn reads version 1")]
    VersionUnsupported {
        /// File.
        path: PathBuf,
        /// Header min_consumer.
        min_consumer: i32,
        /// Header bad_consumers.
        bad_consumers: Vec<i32>,
    },
    /// An entry's value is not a valid BundleEntryProto.
    #[error("{path}: key {key:?}: entry is not a valid BundleEntryProto: {what}")]
    EntryInvalid {
        /// File.
        path: PathBuf,
        /// Key.
        key: String,
        /// What is wrong.
        what: String,
    },
    /// A dtype code that tfbn does not know.
    #[error("{path}: key {key:?}: unknown dtype code {code}")]
    DTypeUnknown {
        /// File.
        path: PathBuf,
        /// Key.
        key: String,
        /// Code.
        code: i32,
    },
    /// A dtype tfbn can list but not read (resource, variant, sub-byte).
    #[error("{path}: key {key:?}: dtype {dtype} cannot be read as data")]
    DTypeUnreadable {
        /// File.
        path: PathBuf,
        /// Key.
        key: String,
        /// The dtype.
        dtype: crate::DType,
    },
    /// A negative or unknown dimension.
    #[error(
        "{path}: key {key:?}: dimension {index} is {size}; stored shapes must be non-negative"
    )]
    ShapeNegativeDim {
        /// File.
        path: PathBuf,
        /// Key.
        key: String,
        /// Dimension index.
        index: usize,
        /// Its size.
        size: i64,
    },
    /// The element count or byte size overflows 64 bits.
    #[error("{path}: key {key:?}: shape {shape:?} overflows 64 bits")]
    ShapeOverflow {
        /// File.
        path: PathBuf,
        /// Key.
        key: String,
        /// The dimensions.
        shape: Vec<i64>,
    },
    /// `size` ≠ elements × width (or a string tensor smaller than its
    /// lengths alone).
    #[error("{path}: key {key:?}: stored size {size} does not match {expected} ({what})")]
    SizeMismatch {
        /// File.
        path: PathBuf,
        /// Key.
        key: String,
        /// Entry size.
        size: u64,
        /// Expected size.
        expected: u64,
        /// How the expectation was formed.
        what: String,
    },
    /// `shard_id` is not below `num_shards`.
    #[error("{path}: key {key:?}: shard_id {shard_id} is not below num_shards {num_shards}")]
    ShardIdOutOfRange {
        /// Index file.
        path: PathBuf,
        /// Key.
        key: String,
        /// Entry shard id.
        shard_id: i32,
        /// Header shard count.
        num_shards: i32,
    },
    /// A data shard named by the header does not exist.
    #[error("{path}: data shard missing (the index says there are {num_shards})")]
    ShardMissing {
        /// Expected shard path.
        path: PathBuf,
        /// Header shard count.
        num_shards: i32,
    },
    /// `[offset, offset+size)` lies outside the shard.
    #[error(
        "{path}: key {key:?}: bytes [{offset}, {offset}+{size}) lie past the {len}-byte shard"
    )]
    OffsetPastShardEnd {
        /// Shard file.
        path: PathBuf,
        /// Key.
        key: String,
        /// Entry offset.
        offset: u64,
        /// Entry size.
        size: u64,
        /// Shard length.
        len: u64,
    },
    /// The tensor bytes do not match the entry's masked crc32c.
    #[error("{path}: key {key:?}: data crc32c mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    EntryCrcMismatch {
        /// Shard file.
        path: PathBuf,
        /// Key.
        key: String,
        /// Unmasked stored crc.
        stored: u32,
        /// Computed crc.
        computed: u32,
    },
    /// A string tensor's framing is broken (length crc, lengths past the
    /// data, …).
    #[error("{path}: key {key:?}: string tensor: {what}")]
    StringFramingInvalid {
        /// Shard file.
        path: PathBuf,
        /// Key.
        key: String,
        /// What is wrong.
        what: String,
    },
    /// A partitioned tensor's slices are invalid: bad rank, out of bounds,
    /// overlapping, or not covering the tensor.
    #[error("{path}: key {key:?}: slices: {what}")]
    SliceInvalid {
        /// Index file.
        path: PathBuf,
        /// Key.
        key: String,
        /// What is wrong.
        what: String,
    },
    /// Every slice entry must be listed by its variable's full entry;
    /// without the check a variable whose full entry is gone would vanish
    /// from the listing without a word.
    #[error("{path}: variable {variable:?}: slice {slice} is stored but no full-tensor entry lists it ({count} slice entries unlisted); the variable's index entry is missing or incomplete")]
    SliceOrphaned {
        /// Index file (V1: the file holding the slice).
        path: PathBuf,
        /// The variable the slice key names.
        variable: String,
        /// The first such slice key, as `name[start,length:…]`.
        slice: String,
        /// How many slice entries have no full entry.
        count: usize,
    },
    /// The key is not in the checkpoint.
    #[error("{path}: no key {key:?}")]
    KeyNotFound {
        /// Checkpoint.
        path: PathBuf,
        /// Key.
        key: String,
    },
    /// A tensor would need more memory than tfbn allows for one tensor.
    #[error(
        "{path}: key {key:?}: {bytes} bytes exceeds the limit of {limit} bytes for one tensor"
    )]
    TensorTooLarge {
        /// File.
        path: PathBuf,
        /// Key.
        key: String,
        /// Bytes needed.
        bytes: u64,
        /// Limit.
        limit: u64,
    },

    // ---- Protobufs, SavedModels and object graphs ---------------------
    /// Bytes that should be a protobuf message are not.
    #[error("{path}: {what}: not a valid {message}: {source}")]
    ProtoDecode {
        /// File.
        path: PathBuf,
        /// Which part of the file.
        what: String,
        /// Message type.
        message: &'static str,
        /// Decoder error.
        #[source]
        source: prost::DecodeError,
    },
    /// A protobuf nests deeper than tfbn follows.
    #[error("{path}: {what}: nesting deeper than {limit} levels")]
    RecursionLimit {
        /// File.
        path: PathBuf,
        /// Where.
        what: String,
        /// The limit.
        limit: usize,
    },
    /// A SavedModel's structure is inconsistent (missing meta graph,
    /// node ids out of range, …).
    #[error("{path}: {what}")]
    SavedModelInvalid {
        /// File.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A `.pb` given as a frozen graph is not a usable `GraphDef`.
    #[error("{path}: {what}")]
    GraphDefInvalid {
        /// File.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A graph constant's bytes contradict its dtype or shape, or it
    /// expands to more elements than tfbn decodes.
    #[error("{path}: constant {node:?}: {what}")]
    ConstantInvalid {
        /// File.
        path: PathBuf,
        /// The `Const` node.
        node: String,
        /// What is wrong.
        what: String,
    },
    /// A graph function calls itself, directly or through other functions
    /// (CVE-2022-23591: such a GraphDef overflowed TF's stack).
    #[error("{path}: function {function:?} calls itself ({chain})")]
    FunctionRecursion {
        /// File holding the graph.
        path: PathBuf,
        /// The function that is re-entered.
        function: String,
        /// The call chain, `a → b → a`.
        chain: String,
    },
    /// Walking a graph would take more steps than tfbn allows.
    #[error("{path}: {what}: more than {limit} steps")]
    GraphWalkLimit {
        /// File holding the graph.
        path: PathBuf,
        /// What was being walked.
        what: String,
        /// The limit.
        limit: usize,
    },
    /// A TF2 object graph is inconsistent with the checkpoint.
    #[error("{path}: object graph: {what}")]
    ObjectGraphInvalid {
        /// File.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A tensor does not have the dtype or shape the caller requires.
    #[error("{key}: {what}")]
    TensorMismatch {
        /// Key or name.
        key: String,
        /// What is wrong.
        what: String,
    },

    // ---- Writing --------------------------------------------------------
    /// safetensors serialization failed.
    #[error("{path}: cannot write safetensors: {what}")]
    SafetensorsWrite {
        /// Output path.
        path: PathBuf,
        /// What went wrong.
        what: String,
    },
    /// A safetensors file could not be read back.
    #[error("{path}: not a valid safetensors file: {what}")]
    SafetensorsRead {
        /// File.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A `.npy` file is malformed or holds an unsupported dtype.
    #[error("{path}: {what}")]
    NpyInvalid {
        /// File.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A layer name given by the user matches no layer.
    #[error("no batch-norm layer named {name:?} (layers: {known})")]
    LayerNotFound {
        /// Name asked for.
        name: String,
        /// Comma-separated list of layer names.
        known: String,
    },
    /// A layer pattern given to a setting (the layer selection, a rename,
    /// a declared `epsilon` …) matches none of the layers it applies to.
    #[error(
        "{setting}{} pattern {pattern:?} matches no batch-norm layer (layers: {known})",
        sidecar.as_ref().map(|f| format!(" (sidecar {f})")).unwrap_or_default()
    )]
    PatternMatchesNoLayer {
        /// The setting the pattern belongs to: `layers`, `rename`,
        /// `epsilon`, …
        setting: &'static str,
        /// The sidecar that declared it, when one did (else the caller's
        /// own options).
        sidecar: Option<String>,
        /// The pattern as given.
        pattern: String,
        /// Comma-separated list of layer names.
        known: String,
    },
    /// Two selected batch-norm layers map to one module name under the
    /// preset and renames.
    #[error(
        "export: layers {first:?} and {second:?} both map to module {module:?}; rename one of them"
    )]
    ExportLayerNamesCollide {
        /// The module name.
        module: String,
        /// The first layer.
        first: String,
        /// The second layer.
        second: String,
    },
    /// Tensor names in an exported file must be unique (and not the
    /// reserved `__metadata__`).
    #[error("export: tensor name {name:?} is not unique: {what}")]
    ExportNamesNotUnique {
        /// The name.
        name: String,
        /// Where the clash comes from.
        what: String,
    },
    /// A batch-norm layer's variables must hold one value per channel.
    #[error("layer {layer:?}: variables disagree in size: {what}")]
    LayerShapesDisagree {
        /// Layer name.
        layer: String,
        /// The sizes found.
        what: String,
    },
    /// Arguments that cannot work together.
    #[error("{0}")]
    InvalidArgument(String),

    // ---- TensorFlow (loaded at run time) -------------------------------
    /// No place tfbn looks for TensorFlow gave a library that loads.
    #[error(
        "TensorFlow could not be loaded; tried:{}\n\
         Fix: install TensorFlow's Python package, `python3 -m pip install tensorflow-cpu==2.21.0` \
         (or `tensorflow==2.21.0`), into the `python3` on PATH or a `.venv` in the current folder; \
         or point tfbn at an installed one with TFBN_TF_LIB=DIR, DIR being the \
         `tensorflow` package folder (`python3 -c 'import tensorflow, os; \
         print(os.path.dirname(tensorflow.__file__))'`) holding libtensorflow_cc.so.2 and \
         libtensorflow_framework.so.2",
        describe_tried(tried)
    )]
    TensorFlowUnavailable {
        /// Each place tried: its folder (empty for a setting that gave
        /// none) and a message naming the place and why it did not work.
        tried: Vec<(PathBuf, String)>,
    },
    /// A library file the dynamic loader would map is not a complete
    /// shared object for this machine, or lacks the symbols tfbn calls
    /// (checked before loading: a truncated library kills the process with
    /// SIGBUS, a foreign one panics on the first call).
    #[error("{path}: not a usable library: {what}")]
    LibraryInvalid {
        /// The library file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A batch-norm node of a file's graph cannot be cut out and run on its
    /// own (verify's own-graph check): the node is missing, is no batch
    /// norm, or its output does not depend on an input tfbn can feed.
    #[error("the graph's node {node} cannot run on its own: {why}")]
    OwnGraphNotRunnable {
        /// The batch-norm node.
        node: String,
        /// Why.
        why: String,
    },
    /// TensorFlow was loaded but an operation failed.
    #[error("TensorFlow: {what}: {status}")]
    TensorFlowFailed {
        /// What tfbn asked TF to do.
        what: String,
        /// TF's status message.
        status: String,
    },
}

/// The places TF was looked for, one per line (for
/// [`Error::TensorFlowUnavailable`]).
pub fn describe_tried(tried: &[(PathBuf, String)]) -> String {
    let mut s = String::new();
    for (_, why) in tried {
        s.push_str(&format!("\n  - {why}"));
    }
    s
}

impl Error {
    /// Builds an [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
