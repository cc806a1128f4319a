"""Keras 2 fixtures of an older TensorFlow: the bundled `keras` 2.x package
(TF 2.12 .. 2.15, where it is `tf.keras`) or `tf_keras` (TF >= 2.16, with
TF_USE_LEGACY_KERAS=1). One small functional model, trained two
SGD(momentum 0.9) steps, written as

  savedmodel  Model.save('savedmodel', save_format='tf') (keras_metadata.pb)
  ckpt        tf.train.Checkpoint(model=model, optimizer=opt).save('ckpt/ckpt')
  weights     Model.save_weights('weights/weights', save_format='tf')

The BN layer code is Keras 2's (`api`: tf-keras, as for the TF 2.21 tf_keras
fixtures).
"""

import os

import tensorflow as tf

import spec  # noqa: E402  (scripts/gen_versions/, on sys.path in the worker)

if spec.keras3_era(tf.__version__):
    assert os.environ.get("TF_USE_LEGACY_KERAS") == "1"
    import tf_keras as K

    KERAS_VERSION = K.__version__
    KERAS_NAME = f"tf_keras {KERAS_VERSION}"
else:
    # What users of these releases called: tf.keras (the bundled keras 2.x
    # package's public API; `import keras` would give its internal modules,
    # whose optimizers differ in TF 2.12).
    import keras

    K = tf.keras
    KERAS_VERSION = keras.__version__
    KERAS_NAME = f"tf.keras (keras {KERAS_VERSION})"

from gen import common

import util

assert KERAS_VERSION.startswith("2."), KERAS_VERSION

SEED = 1212
API = "tf-keras"
ROLES = ("gamma", "beta", "moving_mean", "moving_variance", "moving_stddev", "renorm_mean", "renorm_stddev")


def build_model():
    """conv -> BN NHWC (fused; eps 1e-2, momentum 0.9) -> permute to NCHW
    -> BN axis=1 (fused NCHW; defaults) -> channels-first pool -> dense
    -> BN rank 2 (non-fused; eps 2e-5, momentum 0.95) = the output."""
    K.backend.clear_session()
    K.utils.set_random_seed(SEED)
    L = K.layers
    inp = K.Input(util.SAMPLE_SHAPE, name="image")
    h = L.Conv2D(6, 3, padding="same", name="conv1")(inp)
    h = L.BatchNormalization(name="bn_conv", epsilon=1e-2, momentum=0.9)(h)
    h = L.Permute((3, 1, 2), name="to_nchw")(h)
    h = L.BatchNormalization(axis=1, name="bn_nchw")(h)
    h = L.GlobalAveragePooling2D(data_format="channels_first", name="pool")(h)
    h = L.Dense(4, name="fc1")(h)
    # The last BN's output is the model's output (4 logits for 3 classes):
    # one layer fewer keeps the SavedModels' traced functions small.
    out = L.BatchNormalization(name="bn_dense", epsilon=2e-5, momentum=0.95)(h)
    return K.Model(inp, out, name="bn_versions")


_trained = None


def trained_model():
    """Build and train 2 steps (batch 4) once per process; every fixture of a
    run shares the trained weights."""
    global _trained
    if _trained is None:
        model = build_model()
        if spec.VERSIONS[tf.__version__].get("k2_optimizer") == "legacy":
            opt = K.optimizers.legacy.SGD(learning_rate=0.05, momentum=0.9)
        else:
            opt = K.optimizers.SGD(learning_rate=0.05, momentum=0.9)
        model.compile(opt, K.losses.SparseCategoricalCrossentropy(from_logits=True))
        x, y = util.training_data(SEED)
        model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
        _trained = (model, opt)
    return _trained


def bn_layers(model):
    return [l for l in model.layers if isinstance(l, K.layers.BatchNormalization)]


def var_name(v):
    return v.name[:-2] if v.name.endswith(":0") else v.name


def live_hyper(layer):
    return common.hyper_dict(
        layer.epsilon,
        layer.momentum,
        list(layer.axis),
        len(layer.input_shape),
        layer.center,
        layer.scale,
        layer.fused,
        layer.renorm,
        layer.virtual_batch_size,
    )


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
            key, full_name, _ = keys[id(v)]
            variables[role] = common.var_ref(var_name(v), key, full_name)
        out.append(
            common.layer_entry(fixture_dir, fixture, layer.name, API, variables, live_hyper(layer), layer.input_shape)
        )
    return out


def build(fixture, kind, fixture_dir):
    model, opt = trained_model()
    kv = KERAS_NAME
    ocls = type(opt)
    trained = (
        f"{kv} functional model (TF {tf.__version__}), trained 2 steps of `{ocls.__module__}.{ocls.__name__}`"
        "(momentum 0.9) with `model.fit`"
    )
    if kind == "ckpt":
        root = tf.train.Checkpoint(model=model, optimizer=opt)
        path = root.save(os.path.join(fixture_dir, "ckpt", "ckpt"))
        open_rel = prefix_rel = os.path.relpath(path, fixture_dir)
        fmt = "v2"
        writer = f"tf.train.Checkpoint(model=model, optimizer=optimizer).save ({kv} model)"
        title = f"{trained}, saved with `tf.train.Checkpoint(model=model, optimizer=opt).save('ckpt/ckpt')`."
        save_type = "checkpoint"
    elif kind == "weights":
        prefix = os.path.join(fixture_dir, "weights", "weights")
        model.save_weights(prefix, save_format="tf")
        root = model
        open_rel = prefix_rel = "weights/weights"
        fmt = "v2"
        writer = f"{kv} Model.save_weights(prefix, save_format='tf')"
        title = (
            f"{trained}, saved with `model.save_weights('weights/weights', save_format='tf')`: a V2 checkpoint "
            "whose object graph is rooted at the model (keys `layer_with_weights-N/...`; the compiled model "
            "tracks its optimizer, so its state is saved too)."
        )
        save_type = "checkpoint"
    elif kind == "savedmodel":
        path = os.path.join(fixture_dir, "savedmodel")
        model.save(path, save_format="tf", include_optimizer=True)
        root = model
        open_rel, prefix_rel = "savedmodel", "savedmodel/variables/variables"
        fmt = "saved_model"
        writer = f"{kv} Model.save(dir, save_format='tf') (SavedModel with keras_metadata.pb)"
        title = (
            f"{trained}, saved with `model.save('savedmodel', save_format='tf')`: a SavedModel with "
            "`keras_metadata.pb` and `variables/variables.*`."
        )
        save_type = "savedmodel"
    else:
        raise ValueError(kind)
    prefix = os.path.join(fixture_dir, prefix_rel)
    keys = common.object_graph_keys(prefix, root, save_type)
    layers = layer_entries(fixture, fixture_dir, model, keys)
    variables = common.dump_variables(prefix, fixture_dir)
    opt_keys = common.reachable_keys(keys, opt, model.variables) | util.slot_keys(prefix)
    other = {k for (k, _, _) in keys.values()} - opt_keys
    non_layer = common.classify(variables, layers, opt_keys, (), other)
    manifest = {
        "fixture": fixture,
        "open": open_rel,
        "variables_prefix": prefix_rel,
        "writer": writer,
        "format": fmt,
        "tf_version": tf.__version__,
        "keras_version": KERAS_VERSION,
        "variables": variables,
        "layers": layers,
        "non_layer": non_layer,
    }
    common.write_json(os.path.join(fixture_dir, "expected", "manifest.json"), manifest)
    util.write_readme(fixture_dir, fixture, title, util.layer_lines(layers))


# ---------------------------------------------------------------- goldens


def restored_model(kind, fixture_dir, manifest):
    path = os.path.join(fixture_dir, manifest["open"])
    if kind == "ckpt":
        model = build_model()
        tf.train.Checkpoint(model=model).restore(path).expect_partial().assert_existing_objects_matched()
        return model
    if kind == "weights":
        # The layer API's own reader; the uncompiled model has no optimizer,
        # so the checkpoint's optimizer state stays unmatched.
        model = build_model()
        model.load_weights(path).expect_partial().assert_existing_objects_matched()
        return model
    K.backend.clear_session()
    return K.models.load_model(path)


def goldens(fixture, kind, fixture_dir, onednn):
    manifest = common.read_json(os.path.join(fixture_dir, "expected", "manifest.json"))
    results = {l["name"]: {} for l in manifest["layers"]}
    for training in (False, True):
        # A freshly restored model per mode: each layer is called once per mode
        # and touches only its own variables, so every call starts from the
        # checkpoint's values.
        model = restored_model(kind, fixture_dir, manifest)
        for layer in manifest["layers"]:
            live = model.get_layer(layer["name"])
            assert type(live) is K.layers.BatchNormalization, type(live)
            common.check_hyper(layer, live_hyper(live))
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
