"""Keras-file fixtures (`kfile_*`): models saved by Keras itself as `.keras`
(Keras 3), `.weights.h5` (Keras 3), whole-model `.h5` and weights-only `.h5`
(Keras 2), plus two h5py rewrites of weights files.

One module for every Keras flavour; the caller picks the flavour with
`setup(...)` before anything else:

  flavour  Keras module                         caller
  k3       keras (Keras 3)                      gen/kfile_k3.py (gen_testdata, TF_USE_LEGACY_KERAS unset)
  k2       tf_keras (TF 2.21)                   gen/kfile_k2.py (gen_testdata, TF_USE_LEGACY_KERAS=1)
  k2       tf.keras = keras 2.15 (TF 2.15.1)    gen_versions/kfile_old.py (gen_versions)

Truth: keys are found by content. Every BN variable is set to seeded random
values after one training step (so every value is distinct), the file is
written by Keras, and each BN variable's key is the one dataset of the
weights HDF5 that holds exactly its bytes (h5py reads the file). The goldens
phase loads the file back with Keras's own loader and asserts that each BN
variable holds the bytes the manifest names.
"""

import os

import numpy as np
import tensorflow as tf

from . import common, kfile_h5, kfile_models

K = None
FLAVOUR = None
KERAS_VERSION = None
KERAS_NAME = None
BUILDERS = None
CUSTOM = None

ROLES = ("gamma", "beta", "moving_mean", "moving_variance", "moving_stddev", "renorm_mean", "renorm_stddev")
SEED = 7070

# fixture -> (writer tag, model, format, variant)
#   writer: k3 = Keras 3 (.venv), tfk = tf_keras 2.21 (.venv), k215 = tf.keras 2.15 (TF 2.15.1 venv)
#   variant: None = the file as Keras wrote it; "gzip" / "dense_attrs" = h5py rewrite
FIXTURES = {}
for _m in ("cnn", "nested", "subclassed", "mixed"):
    FIXTURES[f"kfile_k3_{_m}_keras"] = ("k3", _m, "keras3_keras", None)
    FIXTURES[f"kfile_k3_{_m}_weights"] = ("k3", _m, "keras3_weights_h5", None)
FIXTURES["kfile_h5py_k3_gzip_weights"] = ("k3", "cnn", "keras3_weights_h5", "gzip")
for _m in ("cnn", "nested", "mixed"):
    FIXTURES[f"kfile_tfk_{_m}_h5"] = ("tfk", _m, "keras2_h5", None)
for _m in ("cnn", "nested", "subclassed", "mixed"):
    FIXTURES[f"kfile_tfk_{_m}_weights"] = ("tfk", _m, "keras2_weights_h5", None)
FIXTURES["kfile_tfk_chunked_h5"] = ("tfk", "chunked", "keras2_h5", None)
FIXTURES["kfile_h5py_k2_dense_attrs_weights"] = ("tfk", "cnn", "keras2_weights_h5", "dense_attrs")
FIXTURES["kfile_k215_cnn_h5"] = ("k215", "cnn", "keras2_h5", None)
FIXTURES["kfile_k215_cnn_weights"] = ("k215", "cnn", "keras2_weights_h5", None)
FIXTURES["kfile_k215_nested_h5"] = ("k215", "nested", "keras2_h5", None)

from . import kfile_fixtures as _kf  # noqa: E402

assert {n for n, t in FIXTURES.items() if t[0] != "k215"} == set(_kf.KFILE_FIXTURES), "kfile_fixtures.py out of step"
assert {n for n, t in FIXTURES.items() if t[0] == "k215"} == set(_kf.KFILE_OLD_FIXTURES), "kfile_fixtures.py out of step"

FILE_NAMES = {
    "keras3_keras": "m.keras",
    "keras3_weights_h5": "m.weights.h5",
    "keras2_h5": "m.h5",
    "keras2_weights_h5": "w.h5",
}


def setup(keras_module, flavour, keras_name):
    global K, FLAVOUR, KERAS_VERSION, KERAS_NAME, BUILDERS, CUSTOM
    K = keras_module
    FLAVOUR = flavour
    KERAS_VERSION = keras_module.__version__ if hasattr(keras_module, "__version__") else keras_name
    KERAS_NAME = keras_name
    BUILDERS, CUSTOM = kfile_models.make(K)


def set_keras_version(v):
    global KERAS_VERSION
    KERAS_VERSION = v


def api():
    return "keras3" if FLAVOUR == "k3" else "tf-keras"


# ---------------------------------------------------------------- model


def build_model(model_name):
    K.backend.clear_session()
    K.utils.set_random_seed(SEED)
    return BUILDERS[model_name]()


def resolve(model, path):
    """The layer at a `/`-separated path of Keras layer names."""
    obj = model
    for part in path.split("/"):
        if hasattr(obj, "get_layer"):
            obj = obj.get_layer(part)
        else:
            hits = [v for v in vars(obj).values() if isinstance(v, K.layers.Layer) and v.name == part]
            assert len(hits) == 1, (path, part, hits)
            obj = hits[0]
    assert type(obj) is K.layers.BatchNormalization, (path, type(obj))
    return obj


def bn_roles(layer):
    out = {}
    for role in ROLES:
        v = getattr(layer, role, None)
        if v is not None:
            out[role] = v
    return out


def randomize_bn(model, model_name):
    """Seeded random values for every BN variable (distinct per layer and
    role: the key discovery matches by content)."""
    for path in kfile_models.BN_PATHS[model_name]:
        layer = resolve(model, path)
        rng = np.random.default_rng(common.layer_seed("kfile/" + model_name, path))
        for role, v in bn_roles(layer).items():
            shape = tuple(v.shape)
            if role in ("gamma",):
                val = rng.uniform(0.5, 1.5, shape)
            elif role in ("beta", "moving_mean", "renorm_mean"):
                val = rng.normal(0.0, 0.8, shape)
            else:  # variance / stddev
                val = rng.uniform(0.3, 2.5, shape)
            v.assign(val.astype(np.float32))


_trained = {}


def trained_model(model_name):
    """Build, train one step (batch 8; SGD momentum 0.9 for Keras 2, Adam for
    Keras 3, so the files carry optimizer state), then randomize the BN
    variables. Cached per process (the fixtures of one model share it)."""
    if model_name not in _trained:
        model = build_model(model_name)
        opt = K.optimizers.Adam(learning_rate=1e-2) if FLAVOUR == "k3" else K.optimizers.SGD(learning_rate=0.05, momentum=0.9)
        model.compile(opt, K.losses.SparseCategoricalCrossentropy(from_logits=True))
        rng = np.random.default_rng(SEED)
        x = rng.normal(0.5, 2.0, size=(8,) + kfile_models.INPUT_SHAPES[model_name]).astype(np.float32)
        y = rng.integers(0, kfile_models.N_CLASSES, size=(8,)).astype(np.int64)
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        randomize_bn(model, model_name)
        _trained[model_name] = model
    return _trained[model_name]


def input_shape(layer):
    if FLAVOUR == "k3":
        s = layer._build_shapes_dict["input_shape"]
    else:
        s = layer._build_input_shape
        s = s.as_list() if hasattr(s, "as_list") else list(s)
    return [None if d is None else int(d) for d in s]


def policy_name(layer):
    p = layer.dtype_policy
    return p.name


def to_jsonable(obj):
    """get_config() -> plain JSON (ListWrapper/DictWrapper/tuples/numpy)."""
    if isinstance(obj, dict) or hasattr(obj, "items"):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) or type(obj).__name__ == "ListWrapper":
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (bool, int, float, str)) or obj is None:
        return obj
    raise TypeError(f"not JSON: {type(obj)} {obj!r}")


def live_hyper(layer):
    """hyper as the layer's own get_config() says (axis normalised to a
    sorted list of non-negative ints for the input rank)."""
    cfg = to_jsonable(layer.get_config())
    rank = len(input_shape(layer))
    fused = None if FLAVOUR == "k3" else layer.fused
    h = common.hyper_dict(
        cfg["epsilon"],
        cfg["momentum"],
        cfg["axis"],
        rank,
        cfg["center"],
        cfg["scale"],
        fused,
        cfg.get("renorm", False),
        cfg.get("virtual_batch_size"),
    )
    clip = cfg.get("renorm_clipping")
    h["renorm_clipping"] = None if clip is None else {k: clip.get(k) for k in ("rmax", "rmin", "dmax")}
    h["renorm_momentum"] = cfg.get("renorm_momentum")
    h["synchronized"] = cfg.get("synchronized")
    h["dtype_policy"] = policy_name(layer)
    return h, cfg


def check_hyper(layer, live):
    want = layer["hyper"]
    for k, v in want.items():
        got = live[k]
        if isinstance(v, float):
            ok = float(v) == float(got)
        else:
            ok = v == got
        assert ok, f"{layer['name']}: hyper {k}: manifest {v!r}, live {got!r}"


# ---------------------------------------------------------------- build


def write_files(fixture, fixture_dir, model):
    _, model_name, fmt, variant = FIXTURES[fixture]
    name = FILE_NAMES[fmt]
    path = os.path.join(fixture_dir, name)
    if variant is None:
        if fmt == "keras3_weights_h5" or fmt == "keras2_weights_h5":
            model.save_weights(path)
        else:
            model.save(path)
        return name, None
    src = os.path.join(fixture_dir, ".keras-src-" + name)
    model.save_weights(src)
    if variant == "gzip":
        kfile_h5.rewrite_gzip(src, path)
    else:
        kfile_h5.rewrite_dense_attrs(src, path)
    os.remove(src)
    return name, variant


def writer_text(fmt, variant):
    base = {
        "keras3_keras": "Keras Model.save('m.keras')",
        "keras3_weights_h5": "Keras Model.save_weights('m.weights.h5')",
        "keras2_h5": "Keras 2 Model.save('m.h5') (HDF5 whole model)",
        "keras2_weights_h5": "Keras 2 Model.save_weights('w.h5') (HDF5 weights only)",
    }[fmt]
    if variant == "gzip":
        return base + ", rewritten by h5py: datasets chunked + shuffle + gzip"
    if variant == "dense_attrs":
        return base + ", rewritten by h5py with libver='latest' and dense attribute storage"
    return base


def dense_attribute_check(path):
    """Every object with attributes holds more than the compact maximum
    (HDF5 default 8), i.e. its attributes are in dense storage."""
    import h5py

    with h5py.File(path, "r") as h5:
        objs = [h5] + [h5[n] for n in _names(h5)]
        for obj in objs:
            n = h5py.h5o.get_info(obj.id).num_attrs
            if isinstance(obj, h5py.Group):
                max_compact, _ = obj.id.get_create_plist().get_attr_phase_change()
                assert n > max_compact, (obj.name, n, max_compact)


def _names(h5):
    out = []
    h5.visit(out.append)
    return out


def layer_name_attrs(h5):
    """Names of the attributes that hold Keras 2's `layer_names` (plain or
    chunked `layer_names0`, `layer_names1`, ...), on the group that has them."""
    grp = h5["model_weights"] if "model_weights" in h5 else h5
    return sorted(k for k in grp.attrs if k.startswith("layer_names"))


def h5_facts(h5, fmt):
    """Storage facts of the weights HDF5 (string attribute types, chunking,
    compression, attribute storage), from h5py's low-level view."""
    import h5py

    facts = {"attribute_types": {}, "dataset_layouts": {}}
    # Superblock version of the file (0: libver 'earliest', 3: 'latest' /
    # SWMR-era files; from the file-creation property list).
    facts["superblock_version"] = int(h5.id.get_create_plist().get_version()[0])
    types = {}

    def attr_types(objname, obj):
        for k in obj.attrs:
            dt = obj.attrs.get_id(k).dtype
            info = h5py.check_string_dtype(dt)
            if info is not None:
                desc = ("vlen" if info.length is None else f"fixed{info.length}") + "-" + info.encoding
            else:
                desc = dt.str
            shape = obj.attrs.get_id(k).shape
            types.setdefault(k.rstrip("0123456789") if k.startswith("layer_names") else k, set()).add(
                f"{desc} shape {list(shape)}"
            )

    attr_types("/", h5)
    h5.visititems(attr_types)
    facts["attribute_types"] = {k: sorted(v) for k, v in sorted(types.items())}
    layouts = set()

    def ds_layout(name, obj):
        if isinstance(obj, h5py.Dataset):
            layouts.add(
                "chunked" if obj.chunks else "contiguous" if obj.id.get_create_plist().get_layout() == h5py.h5d.CONTIGUOUS else "compact"
            )
            if obj.compression:
                layouts.add(f"filter {obj.compression}" + ("+shuffle" if obj.shuffle else ""))

    h5.visititems(ds_layout)
    facts["dataset_layouts"] = sorted(layouts)
    if any(h5py.h5o.get_info(h5[n].id).num_attrs > 8 for n in [*_names(h5), "/"] if isinstance(h5[n], h5py.Group)):
        facts["dense_attribute_storage"] = True
    if fmt.startswith("keras2"):
        facts["layer_names_attributes"] = layer_name_attrs(h5)
    return facts


def build(fixture, fixture_dir):
    writer, model_name, fmt, variant = FIXTURES[fixture]
    model = trained_model(model_name)
    file_name, _ = write_files(fixture, fixture_dir, model)
    with kfile_h5.open_weights_h5(os.path.join(fixture_dir, file_name)) as h5:
        values = kfile_h5.datasets(h5)
        facts = h5_facts(h5, fmt)
    if model_name == "chunked":
        assert len(facts["layer_names_attributes"]) >= 2 and "layer_names" not in facts["layer_names_attributes"], facts
    if variant == "gzip":
        assert "filter gzip+shuffle" in facts["dataset_layouts"], facts
    if variant == "dense_attrs":
        dense_attribute_check(os.path.join(fixture_dir, file_name))
    variables = kfile_h5.write_expected(fixture_dir, values)

    layers = []
    layer_keys = set()
    for path in kfile_models.BN_PATHS[model_name]:
        layer = resolve(model, path)
        variables_ref = {}
        for role, v in bn_roles(layer).items():
            key = kfile_h5.match_key(values, v.numpy(), f"{fixture}: {path}/{role}")
            variables_ref[role] = {"key": key, "name": f"{path}/{role}"}
            layer_keys.add(key)
        hyper, cfg = live_hyper(layer)
        shape = input_shape(layer)
        # A 700-character layer name is no folder name: such goldens go to a short one.
        gname = path if len(path) < 100 else "bn_long_name"
        entry = common.layer_entry(fixture_dir, fixture, gname, api(), variables_ref, hyper, shape)
        entry["name"] = path
        if hyper["dtype_policy"] == "mixed_float16":
            # The layer computes in float16: the golden input is float16.
            gpath = os.path.join(fixture_dir, entry["golden"], "input.npy")
            common.save_npy(gpath, np.load(gpath).astype(np.float16))
            entry["input_dtype"] = "float16"
        entry["config"] = cfg
        entry["class_name"] = type(layer).__name__
        layers.append(entry)

    optimizer = sorted(k for k in (v["key"] for v in variables) if k.startswith(("optimizer", "optimizer_weights/")))
    other = sorted(v["key"] for v in variables if v["key"] not in layer_keys and v["key"] not in optimizer)
    manifest = {
        "fixture": fixture,
        "open": file_name,
        "variables_prefix": None,
        "weights_h5": "model.weights.h5 (member of the .keras zip)" if fmt == "keras3_keras" else file_name,
        "writer": writer_text(fmt, variant),
        "format": fmt,
        "rewritten_by_h5py": variant,
        "tf_version": tf.__version__,
        "keras_version": KERAS_VERSION,
        "keras": KERAS_NAME,
        "h5py_version": _h5py_version(),
        "model": model_name,
        "model_class": type(model).__name__,
        "h5": facts,
        "variables": variables,
        "layers": layers,
        "non_layer": {"bookkeeping": [], "ema": [], "optimizer": optimizer, "other": other},
    }
    common.write_json(os.path.join(fixture_dir, "expected", "manifest.json"), manifest)
    write_readme(fixture, fixture_dir, manifest)


def _h5py_version():
    import h5py

    return {"h5py": h5py.__version__, "hdf5": h5py.version.hdf5_version}


MODEL_TEXT = {
    "cnn": "functional CNN: `bn_nhwc` (NHWC) -> Permute -> `bn_nchw` (axis=1 on NCHW data) -> Permute back -> conv "
    "-> `bn_nocenter` (center=False) -> pool -> dense -> `bn_noscale` (scale=False, rank 2) -> dense -> "
    "`bn_renorm` (renorm, renorm_clipping {rmax 2.5, rmin 0.4, dmax 3}, renorm_momentum 0.8, rank 2)",
    "nested": "functional over sequences (8 x 5): Conv1D -> `bn_seq` (rank 3) -> Sequential `inner` [Conv1D `c`, "
    "BN `bn`] (BN path `inner/bn`, rank 3) -> pool -> dense -> `bn_dense` (rank 2)",
    "subclassed": "subclassed model `Net` (registered `tfbn>Net`): custom layer `block` (registered `tfbn>Block`: "
    "Conv2D `conv` + BN `bn`, path `block/bn`) -> pool -> Dense `fc` -> BN `bn_top` (rank 2) -> Dense `head`",
    "mixed": "functional model built under the `mixed_float16` policy: conv -> `bn_conv` -> pool -> dense -> `bn_fc`; "
    "BN variables are float32, the layers compute in float16 (golden inputs/outputs float16)",
    "chunked": "functional: conv -> one BN whose name is 700 characters long -> 100 `Activation('linear')` layers "
    "-> pool -> dense: the fixed-width `layer_names` attribute (103 x 700 bytes) is over HDF5's 64 KiB "
    "object-header limit, so Keras 2 splits it into `layer_names0`, `layer_names1`, ...",
}


def write_readme(fixture, fixture_dir, m):
    writer, model_name, fmt, variant = FIXTURES[fixture]
    title = (
        f"{m['keras']} (TF {m['tf_version']}) {MODEL_TEXT[model_name]}. Trained one step with `model.fit`, then "
        f"every BN variable set to seeded random values; written with {m['writer']} as `{m['open']}`."
    )
    lines = []
    if variant is not None:
        lines.append(
            "h5py (not Keras) wrote this file: it is a copy, same groups, attributes and values, of the file "
            "Keras wrote, in a layout Keras itself does not use ("
            + ("chunked + shuffle + gzip datasets" if variant == "gzip" else "libver='latest', 12 filler "
               "attributes `tfbn_filler_NN` on every group so that all group attributes (incl. `layer_names`, "
               "`weight_names`) sit in dense attribute storage")
            + "); the goldens come from Keras loading this rewritten file."
        )
    if fmt == "keras3_keras":
        lines.append("`m.keras` is a zip: `config.json` (layer configs), `metadata.json`, `model.weights.h5`; keys are paths inside `model.weights.h5`")
    lines.append(f"HDF5 facts: {m['h5']}")
    lines.append("`expected/h5_variables.json`: every dataset as h5py reads it (dtype, shape, sha256 of the little-endian bytes)")
    for l in m["layers"]:
        h = l["hyper"]
        flags = [k for k in ("renorm",) if h[k]] + [k + "=False" for k in ("center", "scale") if not h[k]]
        keys = ", ".join(f"{r} `{v['key']}`" for r, v in l["variables"].items())
        name = l["name"] if len(l["name"]) < 60 else l["name"][:40] + "...(700 chars)"
        lines.append(
            "layer `%s`: C=%d, epsilon=%g, momentum=%g, axis=%s, policy %s%s; input %s %s; keys: %s"
            % (name, l["channels"], h["epsilon"], h["momentum"], h["axis"], h["dtype_policy"],
               "".join(", " + f for f in flags), l["input_dtype"], l["input_shape"], keys if len(keys) < 2000 else "(see manifest)")
        )
    text = [f"# {fixture}", "", title, ""] + [f"- {x}" for x in lines] + [""]
    if writer == "k215":
        text += [
            "Every file here was written by the TensorFlow release named in expected/manifest.json (its own venv;",
            "see testdata/README.md, \"Keras files\").",
            "",
            f"regenerate with: scripts/setup-tf-versions.sh 2.15.1 && .venv/bin/python scripts/gen_versions.py --only {fixture}",
        ]
    else:
        text += [
            "Every file here was written by TensorFlow/Keras" + (" and h5py" if variant else "") + " (see testdata/README.md, \"Keras files\").",
            "",
            f"regenerate with: .venv/bin/python scripts/gen_testdata.py --only {fixture}",
        ]
    with open(os.path.join(fixture_dir, "README.md"), "w") as f:
        f.write("\n".join(text) + "\n")


# ---------------------------------------------------------------- goldens


def restored_model(fixture, fixture_dir, manifest):
    _, model_name, fmt, variant = FIXTURES[fixture]
    path = os.path.join(fixture_dir, manifest["open"])
    if fmt in ("keras3_keras", "keras2_h5"):
        K.backend.clear_session()
        return K.models.load_model(path, compile=False)
    model = build_model(model_name)
    model.load_weights(path)
    return model


def goldens(fixture, fixture_dir, onednn):
    manifest = common.read_json(os.path.join(fixture_dir, "expected", "manifest.json"))
    with open(os.path.join(fixture_dir, "expected", "variables.bin"), "rb") as f:
        blob = f.read()
    stored = {v["key"]: v for v in manifest["variables"]}
    results = {l["name"]: {} for l in manifest["layers"]}
    for training in (False, True):
        model = restored_model(fixture, fixture_dir, manifest)
        for layer in manifest["layers"]:
            live = resolve(model, layer["name"])
            check_hyper(layer, live_hyper(live)[0])
            roles = bn_roles(live)
            assert sorted(roles) == sorted(layer["variables"]), (layer["name"], sorted(roles))
            if not training:
                for role, ref in layer["variables"].items():
                    v = stored[ref["key"]]
                    got = kfile_h5.le_bytes(roles[role].numpy())
                    assert got == blob[v["offset"] : v["offset"] + v["nbytes"]], (layer["name"], role, ref["key"])
            x = np.load(os.path.join(fixture_dir, layer["golden"], "input.npy"))
            assert x.dtype.name == layer["input_dtype"] and list(x.shape) == layer["input_shape"]
            y = np.asarray(live(tf.constant(x), training=training))
            assert y.dtype.name == layer["input_dtype"], (layer["name"], y.dtype)
            r = results[layer["name"]]
            if not training:
                r["inference_y"] = y
                continue
            r["training_y"] = y
            for role in ("moving_mean", "moving_variance", "moving_stddev", "renorm_mean", "renorm_stddev"):
                if role in roles:
                    r["training_" + role] = np.asarray(roles[role].numpy())
    for layer in manifest["layers"]:
        out = common.mode_dir(fixture_dir, layer, onednn)
        common.write_mode_goldens(out, results[layer["name"]], common.golden_env(api(), layer["name"], onednn))
