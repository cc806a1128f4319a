"""A tf_keras SavedModel whose serving signature runs batch norm in training
mode: `serving_default` is `model(x, training=True)`, the classic export bug
(batch statistics at inference time, and every request moves the moving
averages). `tfbn lint` must flag it (`training-mode-in-serving`), while a
normal SavedModel, whose function library also holds training traces that no
signature reaches (tfkeras_savedmodel), must not be flagged.

Runs with TF_USE_LEGACY_KERAS=1.
"""

import os

import numpy as np
import tensorflow as tf
import tf_keras as K

from . import common
from . import tfkeras

SEED = 2106
FIXTURES = ("tfkeras_training_serving",)
API = "tf-keras"


def build_model():
    """conv -> BN fused (epsilon 1e-4, the FusedBatchNormV3 op default, so a
    SavedModel with stripped_default_attrs holds no epsilon attr; momentum
    0.8) -> relu -> pool -> dense -> BN 2D non-fused (epsilon 3e-3,
    momentum 0.95) -> dense."""
    K.backend.clear_session()
    K.utils.set_random_seed(SEED)
    L = K.layers
    inp = K.Input((5, 5, 3), name="image")
    h = L.Conv2D(8, 3, padding="same", name="conv1")(inp)
    h = L.BatchNormalization(name="bn_fused", epsilon=1e-4, momentum=0.8)(h)
    h = L.ReLU()(h)
    h = L.GlobalAveragePooling2D()(h)
    h = L.Dense(6, name="fc1")(h)
    h = L.BatchNormalization(name="bn_dense", epsilon=3e-3, momentum=0.95)(h)
    out = L.Dense(3, name="logits")(h)
    return K.Model(inp, out, name="training_serving")


def build(fixture, fixture_dir):
    assert fixture in FIXTURES, fixture
    model = build_model()
    model.compile(K.optimizers.SGD(learning_rate=0.05), K.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(SEED)
    x = rng.normal(0.5, 2.0, size=(8, 5, 5, 3)).astype(np.float32)
    y = rng.integers(0, 3, size=(8,)).astype(np.int64)
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)

    @tf.function(input_signature=[tf.TensorSpec([None, 5, 5, 3], tf.float32, name="image")])
    def serve_in_training_mode(image):
        # The bug under test: training=True in the exported signature.
        return {"logits": model(image, training=True)}

    path = os.path.join(fixture_dir, "savedmodel")
    model.save(
        path,
        save_format="tf",
        include_optimizer=False,
        signatures={"serving_default": serve_in_training_mode.get_concrete_function()},
    )
    open_rel = "savedmodel"
    prefix_rel = "savedmodel/variables/variables"
    prefix = os.path.join(fixture_dir, prefix_rel)
    keys = common.object_graph_keys(prefix, model, "savedmodel")
    layers = tfkeras.layer_entries(fixture, fixture_dir, model, keys)
    variables = common.dump_variables(prefix, fixture_dir)
    other = {k for (k, _, _) in keys.values()}
    non_layer = common.classify(variables, layers, (), (), other)
    manifest = {
        "fixture": fixture,
        "open": open_rel,
        "variables_prefix": prefix_rel,
        "writer": "tf_keras Model.save(dir, save_format='tf', signatures={'serving_default': model(x, training=True)})",
        "format": "saved_model",
        "tf_version": tf.__version__,
        "keras_version": K.__version__,
        "variables": variables,
        "layers": layers,
        "non_layer": non_layer,
    }
    common.write_json(os.path.join(fixture_dir, "expected", "manifest.json"), manifest)
    title = (
        "tf_keras 2.21 functional model, trained 2 SGD steps with `model.fit`, saved with `model.save('savedmodel', "
        "save_format='tf', include_optimizer=False, signatures={'serving_default': f})` where `f(image)` returns "
        "`model(image, training=True)`: the serving signature runs batch norm in training mode (batch statistics, "
        "and a moving-average update on every call). `tfbn lint` reports `training-mode-in-serving` for both layers."
    )
    notes = [
        "the serving function's FusedBatchNormV3 has no `epsilon` and no `is_training` attr (stripped_default_attrs: "
        "both equal the op defaults 0.0001 and true); its `exponential_avg_factor` is f32(1 - 0.8)",
        "keras_metadata.pb holds the layers' configs; the function library also holds inference traces of each layer "
        "that no signature reaches",
    ]
    common.write_readme(fixture_dir, fixture, title, notes + tfkeras.layer_lines(layers))


def goldens(fixture, fixture_dir, onednn):
    # The layers are ordinary tf_keras layers; their goldens come from the
    # model revived with tf_keras.models.load_model, as for tfkeras_savedmodel.
    tfkeras.goldens(fixture, fixture_dir, onednn)
