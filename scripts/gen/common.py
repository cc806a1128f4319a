"""Helpers shared by every fixture group of scripts/gen_testdata.py.

Everything here runs inside a worker process that has already imported
TensorFlow with the right environment (TF_USE_LEGACY_KERAS, TF_ENABLE_ONEDNN_OPTS).
Nothing in the corpus is typed by hand: variable bytes come from TF's own
checkpoint reader, checkpoint keys from TF's own matching, goldens from TF ops.
"""

import contextlib
import json
import os
import struct
import zlib

import numpy as np
import tensorflow as tf

# Batch size of every golden input.
GOLDEN_BATCH = 4


# ---------------------------------------------------------------- files


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, sort_keys=True, indent=1)
        f.write("\n")


def write_checkpointless_manifest(fixture_dir, fixture, writer, cases):
    """`expected/manifest.json` of a fixture of raw-op goldens (no
    checkpoint): the usual schema with no variables or layers, plus `cases`;
    an empty `variables.bin` keeps the fixture layout uniform."""
    os.makedirs(os.path.join(fixture_dir, "expected"), exist_ok=True)
    open(os.path.join(fixture_dir, "expected", "variables.bin"), "wb").close()
    manifest = {
        "fixture": fixture,
        "open": None,
        "variables_prefix": None,
        "writer": writer,
        "format": None,
        "tf_version": tf.__version__,
        "keras_version": None,
        "variables": [],
        "layers": [],
        "non_layer": {"bookkeeping": [], "ema": [], "optimizer": [], "other": []},
        "cases": cases,
    }
    write_json(os.path.join(fixture_dir, "expected", "manifest.json"), manifest)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def save_npy(path, arr):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    arr = np.asarray(arr)
    if arr.dtype.name == "bfloat16":
        # .npy has no bfloat16; store the bit patterns (documented in testdata/README.md).
        arr = arr.view(np.uint16)
    np.save(path, np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")), allow_pickle=False)


def write_readme(fixture_dir, fixture, title, lines):
    text = [f"# {fixture}", "", title, ""]
    text += [f"- {line}" for line in lines]
    text += [
        "",
        "Every file here was written by TensorFlow (see testdata/README.md for the",
        "manifest schema and the golden layout).",
        "",
        f"regenerate with: .venv/bin/python scripts/gen_testdata.py --only {fixture}",
        "",
    ]
    with open(os.path.join(fixture_dir, "README.md"), "w") as f:
        f.write("\n".join(text))


# ---------------------------------------------------------------- versions / host


def keras3_version():
    import keras

    return keras.__version__


def tf_keras_version():
    import tf_keras

    return tf_keras.__version__


def cpu_info():
    vendor, model = None, None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if vendor is None and line.startswith("vendor_id"):
                    vendor = line.split(":", 1)[1].strip()
                elif model is None and line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                if vendor and model:
                    break
    except OSError:
        pass
    return vendor, model


def intra_op_threads():
    n = tf.config.threading.get_intra_op_parallelism_threads()
    return n if n else os.cpu_count()


def golden_env(api, layer, onednn):
    vendor, model = cpu_info()
    return {
        "tf_version": tf.__version__,
        "onednn": int(onednn),
        "cpu_vendor": vendor,
        "cpu_model": model,
        "threads": intra_op_threads(),
        "api": api,
        "layer": layer,
    }


# ---------------------------------------------------------------- variables.bin


def dtype_name(tf_dtype):
    """numpy-style dtype name ('float32', 'bfloat16', 'string', ...)."""
    return tf.as_dtype(tf_dtype).name


def dump_variables(prefix, fixture_dir, extra=None):
    """List every key TF's reader sees at `prefix`, write expected/variables.bin.

    Returns the manifest "variables" list (sorted by key). `extra` maps a key
    to additional fields merged into its entry (e.g. "partitions").
    """
    reader = tf.train.load_checkpoint(prefix)
    dtypes = reader.get_variable_to_dtype_map()
    shapes = reader.get_variable_to_shape_map()
    out = []
    blob = bytearray()
    for key in sorted(dtypes):
        dt = tf.as_dtype(dtypes[key])
        value = reader.get_tensor(key)
        entry = {"key": key, "dtype": dtype_name(dt), "shape": [int(d) for d in shapes[key]]}
        if dt == tf.string:
            arr = np.asarray(value, dtype=object)
            entry["strings_hex"] = [bytes(s).hex() for s in arr.reshape(-1)]
        else:
            arr = np.asarray(value)
            if dt == tf.bfloat16:
                assert arr.dtype.name == "bfloat16", arr.dtype
            assert list(arr.shape) == entry["shape"], (key, arr.shape, entry["shape"])
            raw = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
            assert len(raw) == arr.size * dt.size, (key, len(raw))
            entry["offset"] = len(blob)
            entry["nbytes"] = len(raw)
            blob += raw
        if extra and key in extra:
            entry.update(extra[key])
        out.append(entry)
    os.makedirs(os.path.join(fixture_dir, "expected"), exist_ok=True)
    with open(os.path.join(fixture_dir, "expected", "variables.bin"), "wb") as f:
        f.write(bytes(blob))
    return out


def count_index_data_blocks(index_path):
    """Number of data blocks in a V2 .index (= entries of its SSTable index block).

    Used only to prove that the `multiblock` fixture really has several blocks;
    it reads the footer and the index block's restart count (LevelDB table
    format: the index block restarts at every entry).
    """
    with open(index_path, "rb") as f:
        data = f.read()
    footer = data[-48:]
    assert footer[40:] == struct.pack("<Q", 0xDB4775248B80FB57), "bad magic"

    def varint(buf, pos):
        shift, val = 0, 0
        while True:
            b = buf[pos]
            pos += 1
            val |= (b & 0x7F) << shift
            if b < 0x80:
                return val, pos
            shift += 7

    pos = 0
    _, pos = varint(footer, pos)  # metaindex offset
    _, pos = varint(footer, pos)  # metaindex size
    off, pos = varint(footer, pos)
    size, pos = varint(footer, pos)
    block = data[off : off + size]
    (num_restarts,) = struct.unpack("<I", block[-4:])
    return num_restarts


# ---------------------------------------------------------------- object graph keys


@contextlib.contextmanager
def _children_save_type(save_type):
    """Make TrackableView.children() walk the graph as a SavedModel save does.

    The variables bundle of a SavedModel is written with save_type
    'savedmodel', under which tf_keras adds save-time children (e.g.
    `keras_api/metrics/0/...`). CheckpointView.match() always asks for the
    'checkpoint' children, so for a SavedModel we switch the default."""
    from tensorflow.python.checkpoint import trackable_view

    from tensorflow.python.util import object_identity

    orig = trackable_view.TrackableView.__dict__["children"]
    # SavedModel saving passes one serialization cache to every call.
    cache = object_identity.ObjectIdentityDictionary()

    def children(cls, obj, save_type=save_type, **kwargs):
        if save_type == "savedmodel":
            kwargs.setdefault("cache", cache)
        return orig.__func__(cls, obj, save_type, **kwargs)

    trackable_view.TrackableView.children = classmethod(children)
    try:
        yield
    finally:
        trackable_view.TrackableView.children = orig


def object_graph_keys(prefix, root, save_type="checkpoint"):
    """TF's own mapping from live trackables to checkpoint keys.

    CheckpointView(prefix).match(root) pairs object-graph node ids with the
    live objects reachable from `root`; each variable node carries its
    checkpoint_key and full_name. Returns {id(obj): (key, full_name, obj)}.
    save_type: 'checkpoint' for Checkpoint.save/Saver bundles, 'savedmodel'
    for the variables/ bundle of a SavedModel.
    """
    from tensorflow.core.protobuf import trackable_object_graph_pb2
    from tensorflow.python.checkpoint import checkpoint_view
    from tensorflow.python.trackable import base

    reader = tf.train.load_checkpoint(prefix)
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    st = {"checkpoint": base.SaveType.CHECKPOINT, "savedmodel": base.SaveType.SAVEDMODEL}[save_type]
    with _children_save_type(st):
        matched = checkpoint_view.CheckpointView(prefix).match(root)
    out = {}
    for node_id, obj in matched.items():
        attrs = [a for a in graph.nodes[node_id].attributes if a.name == "VARIABLE_VALUE"]
        if not attrs:
            continue
        assert len(attrs) == 1, (node_id, attrs)
        assert id(obj) not in out, f"object matched twice: {obj}"
        out[id(obj)] = (attrs[0].checkpoint_key, attrs[0].full_name, obj)
    return out


# ---------------------------------------------------------------- classification


def reachable_keys(keys, obj, exclude_objs=()):
    """Checkpoint keys of every matched trackable reachable from `obj` (TF's
    TrackableView), minus those of `exclude_objs` (e.g. the model's own
    variables, which a Keras 3 optimizer also tracks)."""
    excluded = {id(o) for o in exclude_objs}
    out = set()
    for o in tf.train.TrackableView(obj).descendants():
        if id(o) in keys and id(o) not in excluded:
            out.add(keys[id(o)][0])
    return out


def classify(variables, layers, optimizer_keys=(), ema_keys=(), other_keys=()):
    """Build the manifest's "non_layer" section and check that every key the
    reader lists is accounted for exactly once (a layer variable or alias, or
    one non_layer group)."""
    all_keys = {v["key"] for v in variables}
    layer_keys = set()
    for layer in layers:
        for v in layer["variables"].values():
            if v is None:
                continue
            layer_keys.add(v["key"])
            layer_keys.update(v.get("aliases", []))
    bookkeeping_names = ("_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter/.ATTRIBUTES/VARIABLE_VALUE", "global_step")
    bookkeeping = {k for k in all_keys if k in bookkeeping_names}
    groups = {
        "optimizer": set(optimizer_keys),
        "ema": set(ema_keys),
        "other": set(other_keys) - layer_keys - bookkeeping,
        "bookkeeping": bookkeeping,
    }
    seen = set(layer_keys)
    for name, keys in groups.items():
        missing = keys - all_keys
        assert not missing, f"{name} keys not in checkpoint: {sorted(missing)}"
        dup = keys & seen
        assert not dup, f"{name} keys classified twice: {sorted(dup)}"
        seen |= keys
    left = all_keys - seen
    assert not left, f"unclassified checkpoint keys: {sorted(left)}"
    return {name: sorted(keys) for name, keys in sorted(groups.items())}


# ---------------------------------------------------------------- layers / goldens


def layer_seed(fixture, layer):
    return zlib.crc32(f"{fixture}/{layer}".encode())


def golden_dir_name(layer_name):
    return layer_name.replace("/", "__")


def make_input(shape, axis, seed):
    """Seeded float32 golden input: normal(0.5, 2) scaled and shifted per channel
    along `axis` so that every channel has different, non-trivial statistics."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.5, 2.0, size=shape)
    c = shape[axis]
    bshape = [1] * len(shape)
    bshape[axis] = c
    scale = np.linspace(0.5, 3.0, c).reshape(bshape)
    offset = np.linspace(-1.5, 2.5, c).reshape(bshape)
    return (x * scale + offset).astype(np.float32)


def golden_input_shape(layer_shape):
    """Batch GOLDEN_BATCH + the layer's own non-batch dims."""
    dims = [int(d) for d in list(layer_shape)[1:]]
    return [GOLDEN_BATCH] + dims


def var_ref(name, key, full_name=None, aliases=None):
    v = {"name": name, "key": key}
    if full_name is not None:
        v["full_name"] = full_name
    if aliases:
        v["aliases"] = sorted(aliases)
    return v


def layer_entry(fixture_dir, fixture, name, api, variables, hyper, layer_shape, batch_stats=None):
    """Manifest entry for one BN layer; also writes goldens/<dir>/input.npy."""
    shape = golden_input_shape(layer_shape)
    axis = hyper["axis"]
    assert len(axis) == 1, axis
    golden = "goldens/" + golden_dir_name(name)
    x = make_input(shape, axis[0], layer_seed(fixture, name))
    save_npy(os.path.join(fixture_dir, golden, "input.npy"), x)
    return {
        "name": name,
        "channels": int(shape[axis[0]]),
        "api": api,
        "variables": variables,
        "hyper": hyper,
        "input_shape": shape,
        "input_dtype": "float32",
        "golden": golden,
        "batch_stats": batch_stats,
    }


def hyper_dict(epsilon, momentum, axis, rank, center, scale, fused, renorm, virtual_batch_size):
    if isinstance(axis, int):
        axis = [axis]
    axis = sorted(int(a) % rank for a in axis)
    return {
        "epsilon": float(epsilon),
        "momentum": float(momentum),
        "axis": axis,
        "center": bool(center),
        "scale": bool(scale),
        "fused": None if fused is None else bool(fused),
        "renorm": bool(renorm),
        "virtual_batch_size": None if virtual_batch_size is None else int(virtual_batch_size),
    }


def write_mode_goldens(out_dir, arrays, env):
    """arrays: {"inference_y": ..., "training_y": ..., ...} -> <name>.npy + env.json."""
    for name, arr in arrays.items():
        if arr is None:
            continue
        save_npy(os.path.join(out_dir, name + ".npy"), arr)
    write_json(os.path.join(out_dir, "env.json"), env)


def mode_dir(fixture_dir, layer, onednn):
    return os.path.join(fixture_dir, layer["golden"], "onednn" if onednn else "eigen")


def load_input(fixture_dir, layer):
    x = np.load(os.path.join(fixture_dir, layer["golden"], "input.npy"))
    assert list(x.shape) == layer["input_shape"] and x.dtype == np.float32
    return x


def check_restored(fixture_dir, manifest, layer, get_var):
    """After TF's own restore, each layer variable must hold exactly the bytes
    that the manifest says are stored under its key (an independent check of
    the key mapping)."""
    reader = tf.train.load_checkpoint(os.path.join(fixture_dir, manifest["variables_prefix"]))
    for role, ref in layer["variables"].items():
        if ref is None:
            continue
        got = np.asarray(get_var(role).numpy())
        want = reader.get_tensor(ref["key"])
        assert got.dtype == want.dtype and np.array_equal(got, want), (layer["name"], role, ref["key"])


def check_hyper(layer, live):
    """The layer rebuilt/revived for goldens must have the manifest's hyper."""
    want = layer["hyper"]
    for k, v in want.items():
        if k == "fused" and v is None:
            continue
        got = live[k]
        if isinstance(v, float):
            ok = np.float32(v) == np.float32(got) and float(v) == float(got)
        else:
            ok = v == got
        assert ok, f"{layer['name']}: hyper {k}: manifest {v!r}, live {got!r}"
