"""Keras 3 fixtures: functional, Sequential and subclassed models trained one
Adam step, saved as object-based checkpoints; the functional one also as a
SavedModel (tf.saved_model.save) and through Model.export.

Runs with TF_USE_LEGACY_KERAS unset.
"""

import os
import sys

import keras
import numpy as np
import tensorflow as tf

from . import common

SEED = 3000
FIXTURES = ("keras3_functional", "keras3_sequential", "keras3_subclassed", "keras3_saved_model", "keras3_export")
API = "keras3"
ROLES = ("gamma", "beta", "moving_mean", "moving_variance", "moving_stddev", "renorm_mean", "renorm_stddev")
L = keras.layers


def functional():
    inp = keras.Input((6, 6, 3), name="image")
    h = L.Conv2D(8, 3, padding="same", name="conv1")(inp)
    h = L.BatchNormalization(name="bn", epsilon=1e-2, momentum=0.9)(h)
    h = L.ReLU()(h)
    h = L.Conv2D(12, 3, padding="same", name="conv2")(h)
    h = L.BatchNormalization(name="bn_default")(h)
    h = L.ReLU()(h)
    h = L.GlobalAveragePooling2D()(h)
    h = L.Dense(6, name="fc1")(h)
    h = L.BatchNormalization(name="bn_dense", epsilon=2e-5, momentum=0.95, scale=False)(h)
    h = L.Dense(6, name="fc2")(h)
    h = L.BatchNormalization(name="bn_renorm", renorm=True, center=False, momentum=0.9)(h)
    out = L.Dense(3, name="logits")(h)
    return keras.Model(inp, out, name="functional_bn")


def sequential():
    # Default layer names (batch_normalization, batch_normalization_1, ...),
    # and a channels-first BN (axis=1 on a 4D tensor) after a Permute.
    return keras.Sequential(
        [
            keras.Input((6, 6, 3)),
            L.Conv2D(8, 3, padding="same"),
            L.BatchNormalization(),
            L.ReLU(),
            L.Permute((3, 1, 2)),
            L.BatchNormalization(axis=1, epsilon=1e-2, momentum=0.9),
            L.GlobalAveragePooling2D(data_format="channels_first"),
            L.Dense(6),
            L.BatchNormalization(epsilon=1e-4, momentum=0.95),
            L.Dense(3),
        ]
    )


class Net(keras.Model):
    """Two BN attributes (bn, bn2). The model builds its layers on its first
    call, inside its own name scope, so the variables' TF names (the
    checkpoint's full_name) are `net/gamma` etc. for BOTH layers: they
    collide, while keys (`model/bn/...`, `model/bn2/...`) and Keras paths
    (`net/batch_normalization/gamma`) do not."""

    def __init__(self):
        super().__init__(name="net")
        self.conv = L.Conv2D(8, 3, padding="same")
        self.bn = L.BatchNormalization(epsilon=1e-2, momentum=0.9)
        self.pool = L.GlobalAveragePooling2D()
        self.fc = L.Dense(6)
        self.bn2 = L.BatchNormalization(epsilon=2e-5, momentum=0.95)
        self.head = L.Dense(3)

    def call(self, x, training=None):
        h = self.bn(self.conv(x), training=training)
        h = self.pool(keras.ops.relu(h))
        h = self.bn2(self.fc(h), training=training)
        return self.head(h)


def subclassed():
    m = Net()
    m(np.zeros((1, 6, 6, 3), np.float32))
    return m


BUILDERS = {
    "keras3_functional": functional,
    "keras3_sequential": sequential,
    "keras3_subclassed": subclassed,
    "keras3_saved_model": functional,
    "keras3_export": functional,
}


def build_model(fixture):
    keras.backend.clear_session()
    keras.utils.set_random_seed(SEED)
    return BUILDERS[fixture]()


_trained = {}


def trained_model(fixture):
    """Build and train one Adam step (batch 8). The functional model is trained
    once per process and shared by keras3_functional/saved_model/export."""
    builder = BUILDERS[fixture]
    if builder not in _trained:
        model = build_model(fixture)
        opt = keras.optimizers.Adam(learning_rate=1e-2)
        model.compile(opt, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        rng = np.random.default_rng(SEED)
        x = rng.normal(0.5, 2.0, size=(8, 6, 6, 3)).astype(np.float32)
        y = rng.integers(0, 3, size=(8,)).astype(np.int64)
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        _trained[builder] = (model, opt)
    return _trained[builder]


def bn_layers(model):
    return [l for l in model.layers if isinstance(l, L.BatchNormalization)]


def layer_input_shape(layer):
    return layer._build_shapes_dict["input_shape"]


def live_hyper(layer):
    return common.hyper_dict(
        layer.epsilon,
        layer.momentum,
        layer.axis,
        len(layer_input_shape(layer)),
        layer.center,
        layer.scale,
        None,
        layer.renorm,
        getattr(layer, "virtual_batch_size", None),
    )


def ref_for(v, keys):
    """V for a Keras 3 variable: its primary key (the node of the Keras
    Variable), plus aliases: keys of other nodes holding the same value, i.e.
    the backing tf.Variable (Model.export saves both)."""
    key, full_name, _ = keys[id(v)]
    aliases = []
    if id(v.value) in keys:
        aliases.append(keys[id(v.value)][0])
    return common.var_ref(v.path, key, full_name, aliases)


def layer_entries(fixture, fixture_dir, model, keys):
    out = []
    for layer in bn_layers(model):
        variables = {}
        for role in ROLES:
            v = getattr(layer, role, None)
            if v is None:
                if role in ("gamma", "beta", "moving_mean", "moving_variance"):
                    variables[role] = None
                continue
            variables[role] = ref_for(v, keys)
        out.append(
            common.layer_entry(fixture_dir, fixture, layer.name, API, variables, live_hyper(layer), layer_input_shape(layer))
        )
    return out


def capture_saved_model_root(fn):
    """Run fn() and return the object it passed to TF's SavedModel writer.

    Model.export builds a private ExportArchive and hands its trackable to
    tf.saved_model.save; TF's key matching needs that root object. A profile
    hook on the writer's entry point sees it without changing what is written.
    """
    from tensorflow.python.saved_model import save as save_lib

    code = save_lib.save.__code__
    roots = []

    def prof(frame, event, arg):
        if event == "call" and frame.f_code is code:
            roots.append(frame.f_locals["obj"])

    old = sys.getprofile()
    sys.setprofile(prof)
    try:
        fn()
    finally:
        sys.setprofile(old)
    assert len(roots) == 1, roots
    return roots[0]


def build(fixture, fixture_dir):
    model, opt = trained_model(fixture)
    save_type = "checkpoint"
    if fixture in ("keras3_functional", "keras3_sequential", "keras3_subclassed"):
        root = tf.train.Checkpoint(model=model, optimizer=opt)
        path = root.save(os.path.join(fixture_dir, "ckpt", "ckpt"))
        open_rel = prefix_rel = os.path.relpath(path, fixture_dir)
        fmt = "v2"
        writer = "tf.train.Checkpoint(model=model, optimizer=optimizer).save (Keras 3 model)"
        kind = {
            "keras3_functional": "functional model",
            "keras3_sequential": "Sequential model (default layer names)",
            "keras3_subclassed": "subclassed model `Net` with attributes conv, bn, fc, bn2, head",
        }[fixture]
        title = (
            f"Keras {keras.__version__} {kind}, trained one Adam step with `model.fit`, saved with "
            "`tf.train.Checkpoint(model=model, optimizer=opt).save('ckpt/ckpt')`."
        )
    elif fixture == "keras3_saved_model":
        path = os.path.join(fixture_dir, "savedmodel")
        tf.saved_model.save(model, path)
        root = model
        save_type = "savedmodel"
        open_rel, prefix_rel = "savedmodel", "savedmodel/variables/variables"
        fmt = "saved_model"
        writer = "tf.saved_model.save(model, dir) (Keras 3 functional model)"
        title = (
            "The keras3_functional model and training, saved with `tf.saved_model.save(model, 'savedmodel')`. "
            "Keras 3 writes no keras_metadata.pb: epsilon/momentum/axis are not stored as config anywhere."
        )
    else:
        path = os.path.join(fixture_dir, "savedmodel")
        root = capture_saved_model_root(lambda: model.export(path, format="tf_saved_model", verbose=False))
        save_type = "savedmodel"
        open_rel, prefix_rel = "savedmodel", "savedmodel/variables/variables"
        fmt = "saved_model"
        writer = "keras Model.export(dir, format='tf_saved_model') (Keras 3 functional model)"
        title = (
            "The keras3_functional model and training, exported with `model.export('savedmodel')` (inference "
            "only, endpoint `serve`). Every variable is stored twice: `variables/N` (the Keras variable) and "
            "`_all_variables/M` (its backing tf.Variable; order not tied to N); the manifest lists the second "
            "as `aliases`. No optimizer state."
        )
    prefix = os.path.join(fixture_dir, prefix_rel)
    keys = common.object_graph_keys(prefix, root, save_type)
    layers = layer_entries(fixture, fixture_dir, model, keys)
    variables = common.dump_variables(prefix, fixture_dir)
    # The optimizer also tracks the model's trainable variables
    # (optimizer/_trainable_variables/N); those stay layer/other keys.
    opt_keys = common.reachable_keys(keys, opt, model.variables) if id(opt) in {id(o) for o in tf.train.TrackableView(root).descendants()} else set()
    other = {k for (k, _, _) in keys.values()} - opt_keys
    non_layer = common.classify(variables, layers, opt_keys, (), other)
    manifest = {
        "fixture": fixture,
        "open": open_rel,
        "variables_prefix": prefix_rel,
        "writer": writer,
        "format": fmt,
        "tf_version": tf.__version__,
        "keras_version": keras.__version__,
        "variables": variables,
        "layers": layers,
        "non_layer": non_layer,
    }
    common.write_json(os.path.join(fixture_dir, "expected", "manifest.json"), manifest)
    notes = key_notes(layers)
    common.write_readme(fixture_dir, fixture, title, notes + layer_lines(layers))


def key_notes(layers):
    out = []
    for l in layers[:1]:
        g = l["variables"]["gamma"] or l["variables"]["beta"]
        mm = l["variables"]["moving_mean"]
        out.append(
            f"e.g. layer `{l['name']}`: trainable `{g['name']}` stored under `{g['key']}` (full_name "
            f"`{g['full_name']}`), moving_mean under `{mm['key']}`"
        )
    full = [v["full_name"] for l in layers for v in l["variables"].values() if v is not None]
    dup = sorted({n for n in full if full.count(n) > 1})
    if dup:
        out.append("full_name collisions between layers (the keys differ): " + ", ".join(f"`{n}`" for n in dup))
    return out


def layer_lines(layers):
    out = []
    for l in layers:
        h = l["hyper"]
        flags = [k for k in ("renorm",) if h[k]] + [k + "=False" for k in ("center", "scale") if not h[k]]
        out.append(
            "layer `%s`: C=%d, epsilon=%g, momentum=%g, axis=%s%s; input %s"
            % (
                l["name"],
                l["channels"],
                h["epsilon"],
                h["momentum"],
                h["axis"],
                "".join(", " + f for f in flags),
                l["input_shape"],
            )
        )
    return out


# ---------------------------------------------------------------- goldens


def restored_model(fixture, fixture_dir, manifest):
    model = build_model(fixture)
    prefix = os.path.join(fixture_dir, manifest["variables_prefix"])
    if fixture == "keras3_saved_model":
        # The SavedModel's object graph is rooted at the model itself.
        # (The wrapper's own save_counter is not in a SavedModel, so no
        # assert_existing_objects_matched; check_restored() covers the layers.)
        tf.train.Checkpoint(model).restore(prefix).expect_partial()
    elif fixture == "keras3_export":
        # The export root is a private archive object; restore through TF's
        # SavedModel loader, whose `variables` list is the model's variables
        # in order (ExportArchive.track), checked by name and shape.
        loaded = tf.saved_model.load(os.path.join(fixture_dir, manifest["open"]))
        assert len(loaded.variables) == len(model.variables)
        for kv, lv in zip(model.variables, loaded.variables):
            assert lv.name.split(":")[0] == kv.path and tuple(lv.shape) == tuple(kv.shape), (lv.name, kv.path)
            kv.assign(lv.numpy())
    else:
        tf.train.Checkpoint(model=model).restore(prefix).expect_partial().assert_existing_objects_matched()
    return model


def goldens(fixture, fixture_dir, onednn):
    manifest = common.read_json(os.path.join(fixture_dir, "expected", "manifest.json"))
    results = {l["name"]: {} for l in manifest["layers"]}
    for training in (False, True):
        # One freshly restored model per mode; each layer is called once per
        # mode and only touches its own variables.
        model = restored_model(fixture, fixture_dir, manifest)
        for layer in manifest["layers"]:
            live = model.get_layer(layer["name"])
            assert type(live) is L.BatchNormalization, type(live)
            common.check_hyper(layer, live_hyper(live))
            for role, ref in layer["variables"].items():
                v = getattr(live, role, None)
                assert (v is None) == (ref is None), (layer["name"], role)
                if ref is not None:
                    assert v.path == ref["name"], (v.path, ref["name"])
            if not training:
                common.check_restored(fixture_dir, manifest, layer, lambda role: getattr(live, role))
            x = tf.constant(common.load_input(fixture_dir, layer))
            y = np.asarray(live(x, training=training))
            r = results[layer["name"]]
            if not training:
                r["inference_y"] = y
                continue
            r["training_y"] = y
            for role in ("moving_mean", "moving_variance", "moving_stddev", "renorm_mean", "renorm_stddev"):
                v = getattr(live, role, None)
                if v is not None:
                    r["training_" + role] = np.asarray(v.numpy())
    for layer in manifest["layers"]:
        out = common.mode_dir(fixture_dir, layer, onednn)
        common.write_mode_goldens(out, results[layer["name"]], common.golden_env(API, layer["name"], onednn))
