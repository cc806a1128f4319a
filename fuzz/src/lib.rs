//! The entry points of tfbn's fuzz targets, one function per target.
//!
//! Each fuzz target in `fuzz/fuzz_targets/` is a one-line call of a
//! function here, and `tests/it/fuzz_regressions.rs` includes this file
//! (`#[path]`) to run every saved input under `tests/fuzz-regressions/TARGET/`
//! through the same function, so a crash found by the fuzzer stays a test
//! of `cargo test` after it is fixed. The file depends on `tfbn` and `std`
//! only for that reason.
//!
//! Every function takes a scratch folder (created by the caller, reused
//! between calls: each call writes every file it needs) and the fuzzer's
//! bytes. It returns the first error of the reading it drives, or `Ok`;
//! either is fine. What is not fine is a panic, an abort, a stack overflow,
//! a hang or a runaway allocation. Input layouts are described per target
//! and produced for the seed corpora by `scripts/fuzz.sh`.

use std::path::Path;

use tfbn::source::Source;
use tfbn::testing::bundle::table::Table;
use tfbn::testing::bundle::write::TableBuilder;
use tfbn::testing::bundle::Bundle;
use tfbn::Result;

/// A fuzz entry point: scratch folder, input bytes.
pub type Entry = fn(&Path, &[u8]) -> Result<()>;

/// Every target, by its name in `fuzz/Cargo.toml`.
pub const TARGETS: &[(&str, Entry)] = &[
    ("table", table),
    ("entries", entries),
    ("v1", v1),
    ("checkpoint", checkpoint),
    ("savedmodel", savedmodel),
    ("graphdef", graphdef),
    ("frozen", frozen),
    ("hdf5", hdf5),
    ("keras_config", keras_config),
    ("npy", npy),
];

/// Splits `n` bytes off the front of `input`.
fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if input.len() < n {
        return None;
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Some(head)
}

/// A little-endian u32 off the front of `input`, as a length.
fn take_len(input: &mut &[u8]) -> Option<usize> {
    take(input, 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

fn write(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create scratch folder");
    }
    std::fs::write(path, bytes).expect("write scratch file");
}

/// Reads every entry of a bundle, both as a tensor and as raw bytes (the
/// result is that of `read`: `read_raw` refuses string tensors by design).
fn read_all(bundle: &Bundle) -> Result<()> {
    let mut first = Ok(());
    for entry in bundle.entries() {
        let read = bundle.read(&entry.key).map(drop);
        let _ = bundle.read_raw(&entry.key);
        if first.is_ok() {
            first = read;
        }
    }
    first
}

/// Everything tfbn does with an opened source short of running a layer:
/// read every variable, find the layers (naming and graph), recover their
/// hyper-parameters, and build the `inspect` report.
fn use_source(source: &Source) -> Result<()> {
    let mut first = Ok(());
    for v in source.variables() {
        let r = source.read(&v.key).map(drop);
        if first.is_ok() {
            first = r;
        }
    }
    let layers = tfbn::testing::find::discover(source);
    let recovered = tfbn::testing::hyper::recover_all(source, &layers).map(drop);
    let report = tfbn::inspect::inspect(source).map(drop);
    first.and(recovered).and(report)
}

/// `table`: the bytes are an SSTable (the `.index` container); open it,
/// walk the index block and every data block it names.
pub fn table(_dir: &Path, input: &[u8]) -> Result<()> {
    let path = Path::new("fuzz.index");
    let table = Table::open(path, input)?;
    let _ = table.block(table.footer().metaindex);
    let mut entries = 0usize;
    table.for_each(|key, value| {
        entries += key.len() + value.len();
        Ok(())
    })
}

/// `entries`: a list of index entries written through `TableBuilder` with
/// correct block crcs, so mutations reach the bundle header, entry, shard
/// and slice checks instead of stopping at a block checksum.
///
/// Layout: a byte `n`, then `n` records of {u8 key length, key, u16 LE
/// value length, value}, then the data shard (everything left). Records
/// may be unsorted or duplicated on purpose.
pub fn entries(dir: &Path, input: &[u8]) -> Result<()> {
    let mut rest = input;
    let Some(&[count]) = take(&mut rest, 1) else {
        return Ok(());
    };
    let mut table = TableBuilder::new(4096, 16);
    for _ in 0..count {
        let Some(&[klen]) = take(&mut rest, 1) else {
            return Ok(());
        };
        let Some(key) = take(&mut rest, klen as usize) else {
            return Ok(());
        };
        let Some(vlen) = take(&mut rest, 2) else {
            return Ok(());
        };
        let Some(value) = take(&mut rest, u16::from_le_bytes([vlen[0], vlen[1]]) as usize) else {
            return Ok(());
        };
        table.add(key, value);
    }
    write(&dir.join("e.index"), &table.finish());
    write(&dir.join("e.data-00000-of-00001"), rest);
    let bundle = Bundle::open(dir.join("e"))?;
    read_all(&bundle)
}

/// `v1`: the bytes are a V1 checkpoint file (an SSTable of
/// `SavedTensorSlices`); open it as a source and use it.
pub fn v1(dir: &Path, input: &[u8]) -> Result<()> {
    let path = dir.join("v1").join("model.ckpt");
    write(&path, input);
    let bundle = Bundle::open(&path)?;
    let first = read_all(&bundle);
    drop(bundle);
    let source = Source::open(&path)?;
    first.and(use_source(&source))
}

/// `checkpoint`: a whole V2 checkpoint.
///
/// Layout: u32 LE index length, the index, a byte `s` (shards = `s % 4 +
/// 1`), `shards - 1` u32 LE lengths, then the data shards back to back
/// (the last one takes everything left). Missing bytes are empty files.
pub fn checkpoint(dir: &Path, input: &[u8]) -> Result<()> {
    let mut rest = input;
    let n = take_len(&mut rest).unwrap_or(0).min(rest.len());
    let index = take(&mut rest, n).unwrap_or_default();
    let shards = take(&mut rest, 1).map_or(1, |s| s[0] as usize % 4 + 1);
    let mut lens = Vec::with_capacity(shards);
    for _ in 1..shards {
        lens.push(take_len(&mut rest).unwrap_or(0));
    }
    let dir = dir.join("v2");
    write(&dir.join("ckpt.index"), index);
    for i in 0..shards {
        let data = match lens.get(i) {
            Some(&len) => {
                let len = len.min(rest.len());
                take(&mut rest, len).unwrap_or_default()
            }
            None => std::mem::take(&mut rest),
        };
        write(&dir.join(format!("ckpt.data-{i:05}-of-{shards:05}")), data);
    }
    let prefix = dir.join("ckpt");
    let bundle = Bundle::open(&prefix)?;
    let first = read_all(&bundle);
    drop(bundle);
    let source = Source::open(&prefix)?;
    first.and(use_source(&source))
}

/// A checkpoint bundle the fuzzed graphs are paired with: (index, data).
type Fixture = (&'static [u8], &'static [u8]);

/// SavedModel `variables/` bundles, chosen by the first input byte.
const SAVED_MODEL_VARIABLES: [Fixture; 4] = [
    (
        include_bytes!("../../testdata/tf2_16_savedmodel/savedmodel/variables/variables.index"),
        include_bytes!(
            "../../testdata/tf2_16_savedmodel/savedmodel/variables/variables.data-00000-of-00001"
        ),
    ),
    (
        include_bytes!(
            "../../testdata/tfkeras_training_serving/savedmodel/variables/variables.index"
        ),
        include_bytes!(
            "../../testdata/tfkeras_training_serving/savedmodel/variables/variables.data-00000-of-00001"
        ),
    ),
    (
        include_bytes!("../../testdata/keras3_saved_model/savedmodel/variables/variables.index"),
        include_bytes!(
            "../../testdata/keras3_saved_model/savedmodel/variables/variables.data-00000-of-00001"
        ),
    ),
    (
        include_bytes!("../../testdata/tf2_12_savedmodel/savedmodel/variables/variables.index"),
        include_bytes!(
            "../../testdata/tf2_12_savedmodel/savedmodel/variables/variables.data-00000-of-00001"
        ),
    ),
];

/// `savedmodel`: a SavedModel folder with a fuzzed `saved_model.pb` (and
/// `keras_metadata.pb`) beside a real `variables/` bundle, so that the
/// object-graph pairing, Keras metadata and graph walks all run.
///
/// Layout: a byte choosing the variables bundle (`% 4`: tf2_16,
/// tfkeras_training_serving, keras3_saved_model, tf2_12), u32 LE length
/// of `saved_model.pb`, its bytes, then `keras_metadata.pb` (everything
/// left; absent when nothing is left).
pub fn savedmodel(dir: &Path, input: &[u8]) -> Result<()> {
    let mut rest = input;
    let Some(&[which]) = take(&mut rest, 1) else {
        return Ok(());
    };
    let (index, data) = SAVED_MODEL_VARIABLES[which as usize % SAVED_MODEL_VARIABLES.len()];
    let n = take_len(&mut rest).unwrap_or(0).min(rest.len());
    let pb = take(&mut rest, n).unwrap_or_default();
    let dir = dir.join("sm");
    write(&dir.join("variables").join("variables.index"), index);
    write(
        &dir.join("variables").join("variables.data-00000-of-00001"),
        data,
    );
    write(&dir.join("saved_model.pb"), pb);
    let keras = dir.join("keras_metadata.pb");
    if rest.is_empty() {
        let _ = std::fs::remove_file(&keras);
    } else {
        write(&keras, rest);
    }
    let sm = tfbn::testing::savedmodel::SavedModel::open(&dir)?;
    let nodes = sm.variable_nodes().map(drop);
    let keras = sm.keras_layers().map(drop);
    drop(sm);
    let source = Source::open(&dir)?;
    nodes.and(keras).and(use_source(&source))
}

/// TF1 checkpoints the fuzzed `.meta` graphs sit beside.
const TF1_CHECKPOINTS: [Fixture; 2] = [
    (
        include_bytes!("../../testdata/tf1_trained/ckpt/model.ckpt.index"),
        include_bytes!("../../testdata/tf1_trained/ckpt/model.ckpt.data-00000-of-00001"),
    ),
    (
        include_bytes!("../../testdata/tf1_handwritten/ckpt/model.ckpt.index"),
        include_bytes!("../../testdata/tf1_handwritten/ckpt/model.ckpt.data-00000-of-00001"),
    ),
];

/// `graphdef`: a fuzzed `model.ckpt.meta` (a `MetaGraphDef`) beside a real
/// TF1 checkpoint; opening the source decodes it, and layer discovery and
/// hyper-parameter recovery walk it (fused ops, the decomposed form, the
/// moving-average updates).
///
/// Layout: a byte choosing the checkpoint (`% 2`: tf1_trained,
/// tf1_handwritten), then the `.meta` bytes.
pub fn graphdef(dir: &Path, input: &[u8]) -> Result<()> {
    let mut rest = input;
    let Some(&[which]) = take(&mut rest, 1) else {
        return Ok(());
    };
    let (index, data) = TF1_CHECKPOINTS[which as usize % TF1_CHECKPOINTS.len()];
    let dir = dir.join("tf1");
    write(&dir.join("model.ckpt.index"), index);
    write(&dir.join("model.ckpt.data-00000-of-00001"), data);
    write(&dir.join("model.ckpt.meta"), rest);
    let source = Source::open(dir.join("model.ckpt"))?;
    use_source(&source)
}

/// `frozen`: the bytes are a frozen `GraphDef` (`frozen.pb`); opening it
/// turns its float constants into variables, and discovery and recovery
/// walk its graph as they walk a `.meta`. The path goes through
/// `Source::open`'s dispatch (the foreign-format sniff first).
pub fn frozen(dir: &Path, input: &[u8]) -> Result<()> {
    let path = dir.join("frozen.pb");
    write(&path, input);
    let source = Source::open(&path)?;
    use_source(&source)
}

/// `hdf5`: the bytes are a Keras file: HDF5 (`.h5`, `.weights.h5`) or a
/// `.keras` zip archive (which holds one); `Source::open` sniffs which.
/// Opening reads every dataset into variables and attaches the model
/// config; then the source checks run, and the file is read again as a
/// `--hyper` model config (`model_config` attribute, `config.json`).
pub fn hdf5(dir: &Path, input: &[u8]) -> Result<()> {
    let path = dir.join("model.h5");
    write(&path, input);
    let config = tfbn::testing::keras::read_config_file(&path).map(drop);
    let source = Source::open(&path)?;
    config.and(use_source(&source))
}

/// Keras weights files the fuzzed configs are applied to.
const KERAS_WEIGHTS: [&[u8]; 2] = [
    include_bytes!("../../testdata/kfile_k3_cnn_weights/m.weights.h5"),
    include_bytes!("../../testdata/kfile_tfk_cnn_weights/w.h5"),
];

/// `keras_config`: the bytes are a Keras model config (JSON, as
/// `config.json` or `model.to_json()` hold it), given as `--hyper` to a
/// real weights file: read as a config file, checked and parsed, then used
/// in place of the file's own (`keras::with_config`), and the source
/// checks run with its layers and settings.
///
/// Layout: a byte choosing the weights (`% 2`: Keras 3
/// `kfile_k3_cnn_weights`, tf_keras `kfile_tfk_cnn_weights`), then the
/// JSON.
pub fn keras_config(dir: &Path, input: &[u8]) -> Result<()> {
    let mut rest = input;
    let Some(&[which]) = take(&mut rest, 1) else {
        return Ok(());
    };
    let weights = dir.join("weights.h5");
    write(
        &weights,
        KERAS_WEIGHTS[which as usize % KERAS_WEIGHTS.len()],
    );
    let config = dir.join("config.json");
    write(&config, rest);
    let Some(cfg) = tfbn::testing::keras::read_config_file(&config)? else {
        return Ok(());
    };
    let _ = tfbn::testing::keras::config::check(&cfg.doc);
    let _ = tfbn::testing::keras::config::parse(&cfg.doc);
    let source = Source::open(&weights)?;
    let source = tfbn::testing::keras::with_config(source, &cfg)?;
    use_source(&source)
}

/// `npy`: the bytes are a `.npy` file, parsed in memory and read from a
/// file (the streamed reader).
pub fn npy(dir: &Path, input: &[u8]) -> Result<()> {
    let path = dir.join("input.npy");
    let parsed = tfbn::testing::npy::parse_npy(input, &path).map(drop);
    write(&path, input);
    let read = tfbn::testing::npy::read_npy(&path).map(drop);
    parsed.and(read)
}

/// One scratch folder per process, for the fuzz targets.
pub fn scratch() -> &'static Path {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tfbn-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create scratch folder");
        dir
    })
}
