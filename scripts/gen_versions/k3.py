"""Keras 3 fixtures of the first Keras-3-era TensorFlow (TF 2.16 with an early
Keras 3). The same small functional model as k2.py, trained two Adam steps,
written as

  savedmodel  tf.saved_model.save(model, 'savedmodel')
  export      model.export('savedmodel') (format tf_saved_model)
  ckpt        tf.train.Checkpoint(model=model, optimizer=opt).save('ckpt/ckpt')

Runs with TF_USE_LEGACY_KERAS unset.
"""

import contextlib
import inspect
import os
import sys

import keras
import numpy as np
import tensorflow as tf

from gen import common

import util

assert keras.__version__.startswith("3."), keras.__version__

SEED = 1616
API = "keras3"
ROLES = ("gamma", "beta", "moving_mean", "moving_variance", "moving_stddev", "renorm_mean", "renorm_stddev")
L = keras.layers


def build_model():
    """conv -> BN NHWC (eps 1e-2, momentum 0.9) -> permute to NCHW -> BN
    axis=1 (defaults) -> channels-first pool -> dense -> BN rank 2
    (eps 2e-5, momentum 0.95) = the output."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(SEED)
    inp = keras.Input(util.SAMPLE_SHAPE, name="image")
    h = L.Conv2D(6, 3, padding="same", name="conv1")(inp)
    h = L.BatchNormalization(name="bn_conv", epsilon=1e-2, momentum=0.9)(h)
    h = L.Permute((3, 1, 2), name="to_nchw")(h)
    h = L.BatchNormalization(axis=1, name="bn_nchw")(h)
    h = L.GlobalAveragePooling2D(data_format="channels_first", name="pool")(h)
    h = L.Dense(4, name="fc1")(h)
    # The last BN's output is the model's output (4 logits for 3 classes):
    # one layer fewer keeps the SavedModels' traced functions small.
    out = L.BatchNormalization(name="bn_dense", epsilon=2e-5, momentum=0.95)(h)
    return keras.Model(inp, out, name="bn_versions")


_trained = None


def trained_model():
    global _trained
    if _trained is None:
        model = build_model()
        opt = keras.optimizers.Adam(learning_rate=1e-2)
        model.compile(opt, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        x, y = util.training_data(SEED)
        model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
        _trained = (model, opt)
    return _trained


def bn_layers(model):
    return [l for l in model.layers if isinstance(l, L.BatchNormalization)]


def layer_input_shape(layer):
    return tuple(layer.input.shape)


def live_hyper(layer):
    return common.hyper_dict(
        layer.epsilon,
        layer.momentum,
        layer.axis,
        len(layer_input_shape(layer)),
        layer.center,
        layer.scale,
        None,
        getattr(layer, "renorm", False),
        getattr(layer, "virtual_batch_size", None),
    )


def ref_for(v, keys):
    """The Keras variable's key, plus aliases: keys of other nodes holding the
    same value (the backing tf.Variable; Model.export saves both)."""
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
    """Run fn() and return the object it handed to TF's SavedModel writer
    (Model.export saves a private ExportArchive; TF's key matching needs it).
    A profile hook on the writer's entry point sees it without changing what
    is written."""
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


def build(fixture, kind, fixture_dir):
    model, opt = trained_model()
    kv = f"Keras {keras.__version__}"
    trained = f"{kv} functional model (TF {tf.__version__}), trained 2 Adam steps with `model.fit`"
    save_type = "checkpoint"
    if kind == "ckpt":
        root = tf.train.Checkpoint(model=model, optimizer=opt)
        path = root.save(os.path.join(fixture_dir, "ckpt", "ckpt"))
        open_rel = prefix_rel = os.path.relpath(path, fixture_dir)
        fmt = "v2"
        writer = f"tf.train.Checkpoint(model=model, optimizer=optimizer).save ({kv} model)"
        title = f"{trained}, saved with `tf.train.Checkpoint(model=model, optimizer=opt).save('ckpt/ckpt')`."
    elif kind == "savedmodel":
        path = os.path.join(fixture_dir, "savedmodel")
        tf.saved_model.save(model, path)
        root = model
        save_type = "savedmodel"
        open_rel, prefix_rel = "savedmodel", "savedmodel/variables/variables"
        fmt = "saved_model"
        writer = f"tf.saved_model.save(model, dir) ({kv} functional model)"
        title = (
            f"{trained}, saved with `tf.saved_model.save(model, 'savedmodel')` (no Keras config stored: "
            "epsilon/momentum/axis are only in the traced graphs)."
        )
    elif kind == "export":
        path = os.path.join(fixture_dir, "savedmodel")
        kwargs = {"format": "tf_saved_model"} if "format" in inspect.signature(model.export).parameters else {}
        if "verbose" in inspect.signature(model.export).parameters:
            kwargs["verbose"] = False
        # (Keras 3.3 export has no `verbose` and prints its endpoints.)
        with contextlib.redirect_stdout(sys.stderr):
            root = capture_saved_model_root(lambda: model.export(path, **kwargs))
        save_type = "savedmodel"
        open_rel, prefix_rel = "savedmodel", "savedmodel/variables/variables"
        fmt = "saved_model"
        writer = f"keras Model.export(dir) ({kv} functional model)"
        title = (
            f"{trained}, exported with `model.export('savedmodel')` (inference only, endpoint `serve`); the "
            "manifest lists any second key holding the same variable as `aliases`. No optimizer state."
        )
    else:
        raise ValueError(kind)
    prefix = os.path.join(fixture_dir, prefix_rel)
    keys = common.object_graph_keys(prefix, root, save_type)
    layers = layer_entries(fixture, fixture_dir, model, keys)
    variables = common.dump_variables(prefix, fixture_dir)
    reachable = {id(o) for o in tf.train.TrackableView(root).descendants()}
    opt_keys = common.reachable_keys(keys, opt, model.variables) if id(opt) in reachable else set()
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
    util.write_readme(fixture_dir, fixture, title, util.layer_lines(layers))


# ---------------------------------------------------------------- goldens


def restored_model(kind, fixture_dir, manifest):
    model = build_model()
    prefix = os.path.join(fixture_dir, manifest["variables_prefix"])
    if kind == "savedmodel":
        # Object graph rooted at the model itself (no save_counter, so no
        # assert_existing_objects_matched; check_restored covers the layers).
        tf.train.Checkpoint(model).restore(prefix).expect_partial()
    elif kind == "export":
        # TF's SavedModel loader; its `variables` are the model's variables in
        # order (ExportArchive.track), checked by shape (and name where the
        # backing tf.Variable carries the Keras path).
        loaded = tf.saved_model.load(os.path.join(fixture_dir, manifest["open"]))
        assert len(loaded.variables) == len(model.variables)
        for kv, lv in zip(model.variables, loaded.variables):
            assert tuple(lv.shape) == tuple(kv.shape), (lv.name, kv.path)
            assert lv.name.split(":")[0] in (kv.path, kv.name), (lv.name, kv.path)
            kv.assign(lv.numpy())
    else:
        tf.train.Checkpoint(model=model).restore(prefix).expect_partial().assert_existing_objects_matched()
    return model


def goldens(fixture, kind, fixture_dir, onednn):
    manifest = common.read_json(os.path.join(fixture_dir, "expected", "manifest.json"))
    results = {l["name"]: {} for l in manifest["layers"]}
    for training in (False, True):
        model = restored_model(kind, fixture_dir, manifest)
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
