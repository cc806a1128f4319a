"""tf_keras fixture for the hyper-parameters only a layer's config holds:
ghost batches (`virtual_batch_size`) and batch renormalization with clipping
(`renorm_clipping`, `renorm_momentum`). Saved as a SavedModel, whose
`keras_metadata.pb` carries each layer's JSON config.

Runs with TF_USE_LEGACY_KERAS=1.
"""

import os

import tf_keras as K

from . import common
from . import tfkeras

SEED = 2026
FIXTURES = ("tfkeras_ghost",)
API = tfkeras.API


def build_model():
    """conv -> BN with virtual_batch_size 2 (NHWC, non-fused) -> pool -> dense
    -> BN renorm clipped on r and d -> dense -> BN renorm clipped on rmax only
    -> dense."""
    K.backend.clear_session()
    K.utils.set_random_seed(SEED)
    L = K.layers
    inp = K.Input((5, 5, 3), name="image")
    h = L.Conv2D(8, 3, padding="same", name="conv1")(inp)
    h = L.BatchNormalization(virtual_batch_size=2, name="bn_ghost", epsilon=1e-3, momentum=0.9)(h)
    h = L.ReLU()(h)
    h = L.GlobalAveragePooling2D()(h)
    h = L.Dense(6, name="fc1")(h)
    h = L.BatchNormalization(
        renorm=True,
        renorm_clipping={"rmax": 1.25, "rmin": 0.875, "dmax": 0.0625},
        renorm_momentum=0.9,
        momentum=0.95,
        name="bn_clip",
    )(h)
    h = L.Dense(6, name="fc2")(h)
    h = L.BatchNormalization(renorm=True, renorm_clipping={"rmax": 1.125}, renorm_momentum=0.8, name="bn_rmax")(h)
    out = L.Dense(3, name="logits")(h)
    return K.Model(inp, out, name="tfkeras_ghost")


def live_hyper(layer):
    h = tfkeras.live_hyper(layer)
    if layer.virtual_batch_size is not None:
        # build() shifts layer.axis by one for the ghost dimension; the
        # manifest records the axis of the layer's input.
        rank = len(layer.input_shape)
        h["axis"] = sorted((int(a) - 1) % rank for a in layer.axis)
    clip = getattr(layer, "renorm_clipping", None)
    if layer.renorm:
        h["renorm_clipping"] = None if clip is None else {k: (None if clip.get(k) is None else float(clip[k])) for k in ("rmax", "rmin", "dmax")}
        h["renorm_momentum"] = float(layer.renorm_momentum)
    return h


def layer_lines(layers):
    """tfkeras.layer_lines plus the ghost batch and the renorm extras."""
    out = []
    for l, line in zip(layers, tfkeras.layer_lines(layers)):
        h = l["hyper"]
        extra = ""
        if h.get("virtual_batch_size") is not None:
            extra += ", virtual_batch_size=%d" % h["virtual_batch_size"]
        if "renorm_clipping" in h:
            extra += ", renorm_clipping=%s, renorm_momentum=%g" % (h["renorm_clipping"], h["renorm_momentum"])
        out.append(line.replace("; input", extra + "; input"))
    return out


def build(fixture, fixture_dir):
    model = build_model()
    opt = tfkeras.fit(model, (5, 5, 3), SEED)
    model.save(os.path.join(fixture_dir, "savedmodel"), save_format="tf", include_optimizer=True)
    title = (
        "tf_keras 2.21 functional model with a ghost-batch BN (`virtual_batch_size=2`) and two renorm BNs "
        "with `renorm_clipping` and `renorm_momentum`, trained 2 SGD(momentum 0.9) steps with `model.fit`, "
        "saved with `model.save('savedmodel', save_format='tf')`. Only `keras_metadata.pb` holds these "
        "hyper-parameters."
    )
    notes = ["variable keys are relative to the model (root): `layer_with_weights-N/...`, optimizer under `optimizer/...`"]
    tfkeras.write_fixture(
        fixture,
        fixture_dir,
        model,
        opt,
        model,
        "saved_model",
        "savedmodel",
        "savedmodel/variables/variables",
        "tf_keras Model.save(dir, save_format='tf') (SavedModel with keras_metadata.pb)",
        title,
        notes,
        hyper=live_hyper,
        lines=layer_lines,
    )


def restored_model(fixture, fixture_dir, manifest):
    """Rebuilt and restored from the SavedModel's variables: tf_keras cannot
    load this SavedModel back, because a ghost-batch layer's saved config
    holds the axis shifted by one (`[4]` on 4-D input)."""
    model = build_model()
    status = model.load_weights(os.path.join(fixture_dir, manifest["variables_prefix"]))
    status.expect_partial().assert_existing_objects_matched()
    return model


def goldens(fixture, fixture_dir, onednn):
    tfkeras.goldens(fixture, fixture_dir, onednn, restore=restored_model, hyper=live_hyper)
