#!/usr/bin/env python3
"""Write testdata/wild/<id>.json: what TensorFlow itself says about each
wild-corpus artifact (run scripts/fetch-wild.sh first).

    .venv/bin/python scripts/wild/truth.py [--only ID ...]

Per artifact:
  variables  every key TF's reader lists, with dtype, shape and the sha256 of
             reader.get_tensor(key) as little-endian row-major bytes. String
             tensors: sha256 of the concatenation, over the elements in
             row-major order, of (u64 little-endian byte length, bytes).
             keras_h5: every dataset h5py lists (its full path is the key).
  layers     the BN layers, identified by hand from the package's own source
             (tables below, each with a file:line reference) or, where the
             package ships no model-building code (tempocnn, fer), from the
             model_config JSON Keras wrote into the file. Channels and keys are
             cross-checked against the reader before anything is written.
  apply      one layer, inference mode, computed by the artifact's own TF
             graph (TF1: import_meta_graph + restore, the BN's input tensor fed
             directly, the cond's bool placeholder fed False, the cond's Merge
             fetched) or by the Keras layer object the package's loader builds.
             Input float32, x[i] = ((i*7919) % 1000) / 250 - 2 for the flat
             row-major index i.
  apply_training  the same with the training branch (batch statistics).

Runs with oneDNN off (TF_ENABLE_ONEDNN_OPTS=0, set below before TF loads).
"""

import argparse
import hashlib
import json
import os
import re
import struct
import sys

os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["TF_USE_LEGACY_KERAS"] = "1"

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import corpus  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

FORMULA = "((i*7919)%1000)/250-2"


def cache_dir():
    c = os.environ.get("TFBN_WILD_CACHE")
    if c:
        return c
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tfbn", "wild")


def formula_input(shape):
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.int64)
    x = ((i * 7919) % 1000).astype(np.float32) / np.float32(250.0) - np.float32(2.0)
    return x.reshape(shape).astype(np.float32)


def digest(arr, dtype_name):
    if dtype_name == "string":
        h = hashlib.sha256()
        flat = np.asarray(arr, dtype=object).reshape(-1)
        for e in flat:
            b = e if isinstance(e, bytes) else str(e).encode()
            h.update(struct.pack("<Q", len(b)))
            h.update(b)
        return h.hexdigest()
    a = np.ascontiguousarray(np.asarray(arr))
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return hashlib.sha256(a.tobytes(order="C")).hexdigest()


def out_record(y):
    y = np.ascontiguousarray(np.asarray(y, dtype=np.float32))
    return {
        "output_sha256": hashlib.sha256(y.astype("<f4").tobytes()).hexdigest(),
        "output_head": [float(v) for v in y.reshape(-1)[:8]],
        "output_shape": list(y.shape),
    }


# --------------------------------------------------------------------------
# Variables as TF's reader lists them.

def ckpt_variables(reader):
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    out = []
    for k in sorted(shapes):
        dn = dtypes[k].name
        out.append({"key": k, "dtype": dn, "shape": [int(d) for d in shapes[k]],
                    "sha256": digest(reader.get_tensor(k), dn)})
    return out


def open_reader(art, path):
    """TF's reader for the artifact, and notes on how it had to be opened."""
    notes = []
    if art["format"] == "saved_model":
        prefix = os.path.join(path, "variables", "variables")
        return tf.train.load_checkpoint(prefix), notes, prefix
    try:
        r = tf.train.load_checkpoint(path)
        notes.append(f"tf.train.load_checkpoint(<{art['open']}>) works")
        return r, notes, path
    except Exception as e:  # noqa: BLE001 - the message is the point
        msg = str(e).splitlines()[0]
        ck = os.path.join(path, "checkpoint")
        named = ""
        if os.path.isfile(ck):
            m = re.search(r'model_checkpoint_path: "([^"]*)"', open(ck).read())
            named = f" (its 'checkpoint' file names {m.group(1)!r})" if m else ""
        notes.append(f"tf.train.load_checkpoint(<{art['open']}>) fails{named}: {msg}")
    prefix = path.rstrip("/") + "/"
    r = tf.compat.v1.train.NewCheckpointReader(prefix)
    notes.append(f"read with tf.compat.v1.train.NewCheckpointReader(<{art['open']}>/) -- "
                 "the prefix is the folder plus '/', the files have an empty basename; "
                 "this is also what the package's saver.restore(sess, folder + '/') uses")
    return r, notes, prefix


def h5_variables(path):
    import h5py
    out = []
    with h5py.File(path, "r") as h:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                a = obj[()]
                dn = np.dtype(obj.dtype).name if obj.dtype.kind not in "SOU" else "string"
                out.append({"key": name, "dtype": dn, "shape": list(obj.shape),
                            "sha256": digest(a, dn)})
        h.visititems(visit)
    return sorted(out, key=lambda v: v["key"])


# --------------------------------------------------------------------------
# Layers identified by hand from the package source.

# musicnn/models.py (musicnn 0.1.0): every BN is
# tf.compat.v1.layers.batch_normalization(<x>, training=is_training) with the
# defaults (axis=-1, momentum=0.99, epsilon=1e-3, center, scale); the scope
# names follow creation order. is_training is a tf.bool placeholder
# (extractor.py:137), so training is a tensor and TF builds tf.cond.
MUSICNN = [
    # (scope, channels expected from the code, input rank, line, quote)
    ("batch_normalization", 1, 4, 58, "normalized_input = tf.compat.v1.layers.batch_normalization(expand_input, training=is_training)  # frontend input, expand_dims(x, 3)"),
    ("batch_normalization_1", 204, 4, 108, "bn_conv = ...batch_normalization(conv, training=is_training)  # timbral_block f74: int(1.6*128) filters"),
    ("batch_normalization_2", 204, 4, 108, "bn_conv = ...batch_normalization(conv, training=is_training)  # timbral_block f77"),
    ("batch_normalization_3", 51, 4, 122, "bn_conv = ...batch_normalization(conv, training=is_training)  # tempo_block s1: int(1.6*32) filters"),
    ("batch_normalization_4", 51, 4, 122, "bn_conv = ...batch_normalization(conv, training=is_training)  # tempo_block s2"),
    ("batch_normalization_5", 51, 4, 122, "bn_conv = ...batch_normalization(conv, training=is_training)  # tempo_block s3"),
    ("batch_normalization_6", 64, 4, 140, "bn_conv1 = ...batch_normalization(conv1, training=is_training)  # midend"),
    ("batch_normalization_7", 64, 4, 150, "bn_conv2 = ...batch_normalization(conv2, training=is_training)  # midend"),
    ("batch_normalization_8", 64, 4, 161, "bn_conv3 = ...batch_normalization(conv3, training=is_training)  # midend"),
    ("batch_normalization_9", 1506, 2, 177, "flat_pool = ...batch_normalization(flat_pool, training=is_training)  # backend, 2*(561+3*64) features"),
    ("batch_normalization_10", 200, 2, 182, "bn_dense = ...batch_normalization(dense, training=is_training)  # backend dense 200 units"),
]
VGG = [
    ("batch_normalization", 1, 4, 195, "bn_input = tf.compat.v1.layers.batch_normalization(input_layer, training=is_training)  # expand_dims(x, 3)"),
    ("batch_normalization_1", 128, 4, 203, "bn_conv1 = ...batch_normalization(conv1, training=is_training)  # after 1CNN"),
    ("batch_normalization_2", 128, 4, 213, "bn_conv2 = ...batch_normalization(conv2, training=is_training)  # after 2CNN"),
    ("batch_normalization_3", 128, 4, 223, "bn_conv3 = ...batch_normalization(conv3, training=is_training)  # after 3CNN"),
    ("batch_normalization_4", 128, 4, 233, "bn_conv4 = ...batch_normalization(conv4, training=is_training)  # after 4CNN"),
    ("batch_normalization_5", 128, 4, 243, "bn_conv5 = ...batch_normalization(conv5, training=is_training)  # after 5CNN"),
]

# Which layer each TF1 artifact applies (small shapes; fused and non-fused).
APPLY_LAYER = {
    "musicnn-msd-musicnn": "batch_normalization_6",
    "musicnn-mtt-musicnn": "batch_normalization_10",
    "musicnn-msd-vgg": "batch_normalization",
    "musicnn-mtt-vgg": "batch_normalization_5",
    "musicnn-mtt-vgg-nometa": "batch_normalization_5",
    "basic-pitch-nmp": "batch_normalization_2",
    "tempocnn-cnn": "BN1",
    "tempocnn-fcn": "BN2",
    "tempocnn-deeptemp-k8": "BN3",
    "fer-emotion": "batch_normalization_4",
}


def musicnn_layers(art, vars_by_key):
    table = VGG if "vgg" in art["id"] else MUSICNN
    layers = []
    for scope, ch, rank, line, quote in table:
        keys = {r: f"{scope}/{r}" for r in ("gamma", "beta", "moving_mean", "moving_variance")}
        for k in keys.values():
            got = vars_by_key[k]["shape"]
            assert got == [ch], f"{art['id']}: {k} has shape {got}, the code implies [{ch}]"
        layers.append({
            "name": scope, "channels": ch, "keys": keys,
            "epsilon": 0.001, "momentum": 0.99, "axis": [rank - 1], "input_rank": rank,
            "center": True, "scale": True,
            "fused": rank == 4,
            "api": "tf1-layers",
            "training_flag": "tensor (tf.cond on a tf.bool placeholder)",
            "source_ref": f"musicnn/models.py:{line} - {quote}",
        })
    return layers


# basic_pitch/models.py (basic-pitch 0.4.0): tfkl.BatchNormalization() with
# the defaults (axis=-1, momentum=0.99, epsilon=1e-3) at lines 169, 215, 226
# and 280. Line 215's layer is dead: its Conv2D/BN/ReLU result x_contours is
# overwritten at line 218 by a new Conv2D on x before use, so the functional
# model (and the SavedModel) has three BN layers.
BASIC_PITCH = [
    # (layer_with_weights index, channels, line, quote)
    (0, 1, 169, "x = tfkl.BatchNormalization()(x)  # get_cqt(use_batchnorm=True), after tf.expand_dims(x, -1)"),
    (2, 8, 226, "x_contours = tfkl.BatchNormalization()(x_contours)  # after Conv2D(8, (3, 39))"),
    (6, 32, 280, "x_onset = tfkl.BatchNormalization()(x_onset)  # after Conv2D(n_filters_onsets=32, (5, 5), strides=(1, 3))"),
]


def saved_model_layer_names(sm_dir):
    """Keras layer names of the BN objects, from the user_object metadata the
    TF 2.4 writer stored in saved_model.pb (keyed by the object's path)."""
    from tensorflow.core.protobuf import saved_model_pb2
    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString(open(os.path.join(sm_dir, "saved_model.pb"), "rb").read())
    og = sm.meta_graphs[0].object_graph_def
    names = {}
    for ch in og.nodes[0].children:
        node = og.nodes[ch.node_id]
        if node.WhichOneof("kind") == "user_object" and node.user_object.metadata:
            meta = json.loads(node.user_object.metadata)
            if meta.get("class_name") == "BatchNormalization":
                names[ch.local_name] = meta
    return names, len(og.nodes)


def basic_pitch_layers(path, vars_by_key):
    meta, _ = saved_model_layer_names(path)
    layers = []
    for idx, ch, line, quote in BASIC_PITCH:
        lw = f"layer_with_weights-{idx}"
        m = meta[lw]
        cfg = m["config"]
        keys = {r: f"{lw}/{r}/.ATTRIBUTES/VARIABLE_VALUE" for r in ("gamma", "beta", "moving_mean", "moving_variance")}
        for k in keys.values():
            assert vars_by_key[k]["shape"] == [ch], (k, vars_by_key[k]["shape"], ch)
        axis = cfg["axis"]
        axis = axis if isinstance(axis, list) else [axis]
        assert (cfg["epsilon"], cfg["momentum"]) == (0.001, 0.99), cfg
        layers.append({
            "name": cfg["name"], "channels": ch, "keys": keys,
            "epsilon": cfg["epsilon"], "momentum": cfg["momentum"], "axis": [a % 4 for a in axis],
            "input_rank": 4, "center": cfg["center"], "scale": cfg["scale"], "fused": True,
            "api": "tf-keras",
            "training_flag": "python-bool (Keras learning phase; the SavedModel serves inference)",
            "source_ref": f"basic_pitch/models.py:{line} - {quote}",
            "object_path": f"root.{lw}",
        })
    return layers


def h5_layers(path, model):
    """From the file's model_config (the package ships no builder code)."""
    import h5py
    layers = []
    with h5py.File(path, "r") as h:
        cfg = json.loads(h.attrs["model_config"])
        mw = h["model_weights"]
        for lc in cfg["config"]["layers"]:
            if lc["class_name"] != "BatchNormalization":
                continue
            c = lc["config"]
            name = c["name"]
            wn = [w.decode() if isinstance(w, bytes) else w for w in mw[name].attrs["weight_names"]]
            keys = {"gamma": None, "beta": None}
            for w in wn:
                role = w.split("/")[-1].split(":")[0]
                keys[role] = f"model_weights/{name}/{w}"
            layer = model.get_layer(name)
            rank = len(layer.input_shape)
            axis = c["axis"] if isinstance(c["axis"], list) else [c["axis"]]
            ch = int(mw[keys["moving_mean"]].shape[0]) if False else int(h[keys["moving_mean"]].shape[0])
            layers.append({
                "name": name, "channels": ch, "keys": keys,
                "epsilon": c["epsilon"], "momentum": c["momentum"],
                "axis": [a % rank for a in axis], "axis_as_written": c["axis"],
                "input_rank": rank, "center": c["center"], "scale": c["scale"],
                "fused": rank in (4, 5) and [a % rank for a in axis] in ([rank - 1], [1]),
                "api": "tf-keras",
                "training_flag": "python-bool (Keras learning phase)",
                "source_ref": f"{os.path.basename(path)}: model_config layer {name!r} "
                              f"(written by Keras {h.attrs['keras_version']}); weight_names {wn}",
            })
    return layers


# --------------------------------------------------------------------------
# Apply: the artifact's own computation.

def tf1_apply(meta_path, prefix, scope, modes):
    """Import the author's graph, restore, feed the BN's input tensor and the
    cond's predicate, fetch the cond output."""
    g = tf.Graph()
    out = {}
    with g.as_default():
        from tensorflow.core.protobuf import meta_graph_pb2
        mgd = meta_graph_pb2.MetaGraphDef()
        mgd.ParseFromString(open(meta_path, "rb").read())
        stripped, import_error = 0, None
        try:
            with tf.Graph().as_default():
                tf.compat.v1.train.import_meta_graph(mgd, clear_devices=True)
        except ValueError as e:
            # TF 1.11/1.12 wrote _output_shapes on FusedBatchNormGrad nodes
            # that today's importer rejects; they are annotations only.
            import_error = str(e).splitlines()[0]
            for node in mgd.graph_def.node:
                if "_output_shapes" in node.attr:
                    del node.attr["_output_shapes"]
                    stripped += 1
        saver = tf.compat.v1.train.import_meta_graph(mgd, clear_devices=True)
        ops = {op.name: op for op in g.get_operations()}
        base = next(n for n in ops if n.endswith("/" + scope + "/cond/pred_id"))
        base = base[: base.index(scope) + len(scope)]
        pred = ops[base + "/cond/pred_id"].inputs[0]
        fused = base + "/cond/FusedBatchNorm_1" in ops
        if fused:
            sw = ops[base + "/cond/FusedBatchNorm_1"].inputs[0].op
            assert sw.type == "Switch", sw.type
            x = sw.inputs[0]
            y = ops[base + "/cond/Merge"].outputs[0]
            eps = ops[base + "/cond/FusedBatchNorm_1"].get_attr("epsilon")
        else:
            x = ops[base + "/batchnorm/mul_1"].inputs[0]
            y = ops[base + "/batchnorm/add_1"].outputs[0]
            eps = float(tf.get_static_value(ops[base + "/batchnorm/add/y"].outputs[0])) \
                if base + "/batchnorm/add/y" in ops else None
        shape = [2] + [d if d is not None else 5 for d in x.shape.as_list()[1:]]
        xv = formula_input(shape)
        with tf.compat.v1.Session(graph=g) as sess:
            saver.restore(sess, prefix)
            for mode in modes:
                yv = sess.run(y, {x: xv, pred: mode == "training"})
                out[mode] = {
                    "layer": scope, "input_shape": shape, "input_formula": FORMULA,
                    "feed": x.name, "fetch": y.name,
                    "predicate": f"{pred.name} = {mode == 'training'}",
                    "computed_by": "tf.compat.v1 import_meta_graph(.meta) + Saver.restore, Session.run",
                    **out_record(yv),
                }
    return out, {"fused_in_graph": fused, "epsilon_in_graph": eps, "stripped_output_shapes": stripped, "import_error": import_error}


def keras_layer_apply(layer, input_shape, modes, how):
    shape = [2] + [d if d is not None else 5 for d in list(input_shape)[1:]]
    xv = formula_input(shape)
    out = {}
    for mode in modes:  # inference first: a training call updates the moving stats
        yv = layer(tf.constant(xv), training=(mode == "training")).numpy()
        out[mode] = {
            "layer": layer.name, "input_shape": shape, "input_formula": FORMULA,
            "feed": "layer call argument (eager)", "fetch": "layer call result",
            "computed_by": how, **out_record(yv),
        }
    return out


def load_keras(path):
    import tf_keras
    return tf_keras.models.load_model(path, compile=False)


# --------------------------------------------------------------------------

def cpu_vendor():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def truth_for(art, cache):
    path = os.path.join(cache, art["id"], art["open"])
    t = {"id": art["id"], "tf_version": tf.__version__,
         "onednn": "off (TF_ENABLE_ONEDNN_OPTS=0)",
         # TF's float32 rsqrt starts from the CPU's RSQRTPS estimate, whose
         # table differs between vendors: outputs are bitwise per vendor.
         "cpu_vendor": cpu_vendor(),
         "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count(),
         "input_formula": FORMULA}
    notes = []
    layer_name = APPLY_LAYER[art["id"]]
    if art["format"] in ("checkpoint_v2", "saved_model"):
        reader, n, prefix = open_reader(art, path)
        notes += n
        t["variables"] = ckpt_variables(reader)
        vk = {v["key"]: v for v in t["variables"]}
        if art["format"] == "checkpoint_v2":
            t["layers"] = musicnn_layers(art, vk)
            if art["has_graph"]:
                meta, ck_prefix = os.path.join(path, ".meta"), prefix
            else:
                # Same archive folder with its graph (musicnn-mtt-vgg): the
                # artifact's own computation needs the .meta this view omits.
                sib = os.path.join(cache, art["id"].replace("-nometa", ""), art["open"])
                meta, ck_prefix = os.path.join(sib, ".meta"), prefix
                notes.append("apply computed with the .meta of musicnn-mtt-vgg (same archive folder) "
                             "restored from this artifact's own .index/.data")
            ap, g = tf1_apply(meta, ck_prefix, layer_name, ["inference", "training"])
            lay = next(l for l in t["layers"] if l["name"] == layer_name)
            assert g["fused_in_graph"] == lay["fused"], (g, lay)
            if g["epsilon_in_graph"] is not None:
                assert abs(g["epsilon_in_graph"] - lay["epsilon"]) < 1e-9, g
            t["apply"], t["apply_training"] = ap["inference"], ap["training"]
            if g["import_error"]:
                notes.append(f"import_meta_graph of the .meta as written fails in TF {tf.__version__}: "
                             f"{g['import_error']} -- apply strips the _output_shapes attr from the "
                             f"{g['stripped_output_shapes']} nodes that have it, then imports")
        else:
            _, nodes = saved_model_layer_names(path)
            t["layers"] = basic_pitch_layers(path, vk)
            notes.append(f"saved_model.pb object graph has {nodes} nodes; "
                         f"variables/ object graph: see _CHECKPOINTABLE_OBJECT_GRAPH")
            try:
                from tensorflow.core.protobuf import trackable_object_graph_pb2
                og = trackable_object_graph_pb2.TrackableObjectGraph()
                og.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
                notes[-1] = (f"saved_model.pb object graph has {nodes} nodes, the one in "
                             f"variables/ (_CHECKPOINTABLE_OBJECT_GRAPH) has {len(og.nodes)}")
            except Exception as e:  # noqa: BLE001
                notes.append(f"could not parse _CHECKPOINTABLE_OBJECT_GRAPH: {e}")
            model = load_keras(path)
            layer = model.get_layer(layer_name)
            ap = keras_layer_apply(layer, layer.input_shape, ["inference", "training"],
                                   "tf_keras.models.load_model(SavedModel, compile=False).get_layer(name)(x, training=…)")
            t["apply"], t["apply_training"] = ap["inference"], ap["training"]
    elif art["format"] == "keras_h5":
        t["variables"] = h5_variables(path)
        notes.append("variables listed by h5py (every dataset, optimizer_weights included); "
                     "keys are HDF5 dataset paths")
        model = load_keras(path)
        t["layers"] = h5_layers(path, model)
        layer = model.get_layer(layer_name)
        ap = keras_layer_apply(layer, layer.input_shape, ["inference", "training"],
                               "tf_keras.models.load_model(h5, compile=False).get_layer(name)(x, training=…), "
                               "as the package loads it")
        t["apply"], t["apply_training"] = ap["inference"], ap["training"]
    t["reader_notes"] = [n.replace(cache.rstrip("/"), "<cache>") for n in notes]
    return t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*")
    a = ap.parse_args()
    cache = cache_dir()
    arts = json.load(open(os.path.join(ROOT, "testdata", "wild", "artifacts.json")))
    for art in arts:
        if a.only and art["id"] not in a.only:
            continue
        t = truth_for(art, cache)
        p = os.path.join(ROOT, "testdata", "wild", f"{art['id']}.json")
        with open(p, "w") as f:
            json.dump(t, f, indent=1, sort_keys=True, ensure_ascii=False)
            f.write("\n")
        print(f"{art['id']}: {len(t['variables'])} variables, {len(t['layers'])} BN layers, "
              f"apply {t['apply']['layer']} {t['apply']['input_shape']}", flush=True)


if __name__ == "__main__":
    main()
