"""tf_keras (Keras 2) fixtures: one functional model holding every BN flavour
tf_keras has, saved as an object-based checkpoint and as a SavedModel.

Runs with TF_USE_LEGACY_KERAS=1.
"""

import os

import numpy as np
import tensorflow as tf
import tf_keras as K

from . import common

SEED = 2021
FIXTURES = ("tfkeras_ckpt", "tfkeras_savedmodel")
API = "tf-keras"
ROLES = ("gamma", "beta", "moving_mean", "moving_variance", "moving_stddev", "renorm_mean", "renorm_stddev")


def build_model():
    """conv -> BN fused (axis -1) -> permute to NCHW -> BN axis=1 (fused NCHW)
    -> permute back -> conv -> BN center=False -> pool -> dense -> BN 2D
    (non-fused) -> dense -> BN scale=False -> dense -> BN renorm -> dense."""
    K.backend.clear_session()
    K.utils.set_random_seed(SEED)
    L = K.layers
    inp = K.Input((6, 6, 3), name="image")
    h = L.Conv2D(8, 3, padding="same", name="conv1")(inp)
    h = L.BatchNormalization(name="bn_fused", epsilon=1e-2, momentum=0.9)(h)
    h = L.ReLU()(h)
    h = L.Permute((3, 1, 2), name="to_nchw")(h)
    h = L.BatchNormalization(axis=1, name="bn_nchw", epsilon=2e-5, momentum=0.95)(h)
    h = L.Permute((2, 3, 1), name="to_nhwc")(h)
    h = L.Conv2D(10, 3, padding="same", name="conv2")(h)
    h = L.BatchNormalization(center=False, name="bn_nocenter")(h)
    h = L.ReLU()(h)
    h = L.GlobalAveragePooling2D()(h)
    h = L.Dense(6, name="fc1")(h)
    h = L.BatchNormalization(name="bn_dense")(h)
    h = L.Dense(6, name="fc2")(h)
    h = L.BatchNormalization(scale=False, name="bn_noscale", epsilon=1e-4, momentum=0.95)(h)
    h = L.Dense(6, name="fc3")(h)
    h = L.BatchNormalization(renorm=True, name="bn_renorm", momentum=0.9)(h)
    out = L.Dense(3, name="logits")(h)
    return K.Model(inp, out, name="tfkeras_bn")


def make_optimizer():
    return K.optimizers.SGD(learning_rate=0.05, momentum=0.9)


_trained = None


def fit(model, input_shape, seed):
    """Compile with SGD(momentum 0.9) and train 2 steps of batch 4 on seeded
    data of `input_shape` (per sample). Returns the optimizer."""
    opt = make_optimizer()
    model.compile(opt, K.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(seed)
    x = rng.normal(0.5, 2.0, size=(8,) + tuple(input_shape)).astype(np.float32)
    y = rng.integers(0, 3, size=(8,)).astype(np.int64)
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    return opt


def trained_model():
    """Build and train (2 steps of batch 4) once per process; both fixtures of
    a run share the same trained weights."""
    global _trained
    if _trained is None:
        model = build_model()
        opt = fit(model, (6, 6, 3), SEED)
        _trained = (model, opt)
    return _trained


def bn_layers(model):
    return [l for l in model.layers if isinstance(l, K.layers.BatchNormalization)]


def var_name(v):
    return v.name[:-2] if v.name.endswith(":0") else v.name


def live_hyper(layer):
    rank = len(layer.input_shape)
    return common.hyper_dict(
        layer.epsilon,
        layer.momentum,
        list(layer.axis),
        rank,
        layer.center,
        layer.scale,
        layer.fused,
        layer.renorm,
        layer.virtual_batch_size,
    )


def layer_entries(fixture, fixture_dir, model, keys, hyper=None):
    hyper = hyper or live_hyper
    out = []
    for layer in bn_layers(model):
        variables = {}
        for role in ROLES:
            v = getattr(layer, role, None)
            if v is None:
                if role in ("gamma", "beta", "moving_mean", "moving_variance"):
                    variables[role] = None
                continue
            key, full_name, _ = keys[id(v)]
            variables[role] = common.var_ref(var_name(v), key, full_name)
        out.append(
            common.layer_entry(fixture_dir, fixture, layer.name, API, variables, hyper(layer), layer.input_shape)
        )
    return out


def build(fixture, fixture_dir):
    model, opt = trained_model()
    if fixture == "tfkeras_ckpt":
        root = tf.train.Checkpoint(model=model, optimizer=opt)
        path = root.save(os.path.join(fixture_dir, "ckpt", "ckpt"))
        open_rel = os.path.relpath(path, fixture_dir)
        prefix_rel = open_rel
        writer = "tf.train.Checkpoint(model=model, optimizer=optimizer).save (tf_keras model)"
        fmt = "v2"
        title = (
            "tf_keras 2.21 functional model, trained 2 SGD(momentum 0.9) steps with `model.fit`, saved with "
            "`tf.train.Checkpoint(model=model, optimizer=opt).save('ckpt/ckpt')`."
        )
        notes = [
            "keys look like `model/layer_with_weights-N/gamma/.ATTRIBUTES/VARIABLE_VALUE`; full_name is the "
            "variable name (`bn_fused/gamma`); optimizer state under `optimizer/_variables/N` (full_name `SGD/m/...`)",
        ]
    else:
        path = os.path.join(fixture_dir, "savedmodel")
        model.save(path, save_format="tf", include_optimizer=True)
        root = model
        open_rel = "savedmodel"
        prefix_rel = "savedmodel/variables/variables"
        writer = "tf_keras Model.save(dir, save_format='tf') (SavedModel with keras_metadata.pb)"
        fmt = "saved_model"
        title = (
            "The same tf_keras model and training as tfkeras_ckpt, saved with `model.save('savedmodel', "
            "save_format='tf')`: a SavedModel with `keras_metadata.pb` (the layers' JSON config, incl. epsilon, "
            "momentum, axis) and `variables/variables.*`."
        )
        notes = ["variable keys are relative to the model (root): `layer_with_weights-N/...`, optimizer under `optimizer/...`"]
    write_fixture(fixture, fixture_dir, model, opt, root, fmt, open_rel, prefix_rel, writer, title, notes)


def write_fixture(
    fixture, fixture_dir, model, opt, root, fmt, open_rel, prefix_rel, writer, title, notes, hyper=None, lines=None
):
    """The manifest and README of a written tf_keras model. hyper(layer) ->
    dict and lines(layers) -> README lines default to this module's."""
    lines = lines or layer_lines
    prefix = os.path.join(fixture_dir, prefix_rel)
    keys = common.object_graph_keys(prefix, root, "savedmodel" if fmt == "saved_model" else "checkpoint")
    layers = layer_entries(fixture, fixture_dir, model, keys, hyper=hyper)
    variables = common.dump_variables(prefix, fixture_dir)
    opt_keys = common.reachable_keys(keys, opt, model.variables)
    # everything else the model tracks: conv/dense weights, and in the
    # SavedModel also the compiled loss metric (keras_api/metrics/0/{total,count}).
    other = {k for (k, _, _) in keys.values()} - opt_keys
    non_layer = common.classify(variables, layers, opt_keys, (), other)
    manifest = {
        "fixture": fixture,
        "open": open_rel,
        "variables_prefix": prefix_rel,
        "writer": writer,
        "format": fmt,
        "tf_version": tf.__version__,
        "keras_version": K.__version__,
        "variables": variables,
        "layers": layers,
        "non_layer": non_layer,
    }
    common.write_json(os.path.join(fixture_dir, "expected", "manifest.json"), manifest)
    common.write_readme(fixture_dir, fixture, title, notes + lines(layers))


def layer_lines(layers):
    out = []
    for l in layers:
        h = l["hyper"]
        flags = [k for k in ("renorm",) if h[k]] + [k + "=False" for k in ("center", "scale") if not h[k]]
        out.append(
            "layer `%s`: C=%d, epsilon=%g, momentum=%g, axis=%s, fused=%s%s; input %s"
            % (
                l["name"],
                l["channels"],
                h["epsilon"],
                h["momentum"],
                h["axis"],
                h["fused"],
                "".join(", " + f for f in flags),
                l["input_shape"],
            )
        )
    return out


# ---------------------------------------------------------------- goldens


def restored_model(fixture, fixture_dir, manifest):
    if fixture == "tfkeras_ckpt":
        model = build_model()
        status = tf.train.Checkpoint(model=model).restore(os.path.join(fixture_dir, manifest["open"]))
        status.expect_partial().assert_existing_objects_matched()
        return model
    K.backend.clear_session()
    return K.models.load_model(os.path.join(fixture_dir, manifest["open"]))


def goldens(fixture, fixture_dir, onednn, restore=None, hyper=None):
    """restore(fixture, fixture_dir, manifest) -> model and hyper(layer) ->
    dict default to this module's (other tf_keras fixtures pass their own)."""
    restore = restore or restored_model
    hyper = hyper or live_hyper
    manifest = common.read_json(os.path.join(fixture_dir, "expected", "manifest.json"))
    results = {l["name"]: {} for l in manifest["layers"]}
    for training in (False, True):
        # One freshly restored model per mode. Each layer is called once per
        # mode and only touches its own variables, so every call starts from
        # the checkpoint's values.
        model = restore(fixture, fixture_dir, manifest)
        for layer in manifest["layers"]:
            live = model.get_layer(layer["name"])
            assert type(live) is K.layers.BatchNormalization, type(live)
            common.check_hyper(layer, hyper(live))
            for role, ref in layer["variables"].items():
                v = getattr(live, role, None)
                assert (v is None) == (ref is None), (layer["name"], role)
                if ref is not None:
                    assert var_name(v) == ref["name"], (var_name(v), ref["name"])
            if not training:
                common.check_restored(fixture_dir, manifest, layer, lambda role: getattr(live, role))
            x = tf.constant(common.load_input(fixture_dir, layer))
            y = live(x, training=training).numpy()
            r = results[layer["name"]]
            if not training:
                r["inference_y"] = y
                continue
            r["training_y"] = y
            for role in ("moving_mean", "moving_variance", "moving_stddev", "renorm_mean", "renorm_stddev"):
                v = getattr(live, role, None)
                if v is not None:
                    r["training_" + role] = v.numpy()
    for layer in manifest["layers"]:
        out = common.mode_dir(fixture_dir, layer, onednn)
        common.write_mode_goldens(out, results[layer["name"]], common.golden_env(API, layer["name"], onednn))
