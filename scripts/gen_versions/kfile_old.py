"""Keras-file fixtures (`kfile_k215_*`) written by the Keras 2 of an older
TensorFlow (`tf.keras` = the bundled keras 2.x package, TF <= 2.15): the
generator is scripts/gen/kfile.py (flavour k2), run in that release's venv by
scripts/gen_versions.py (group kfile_old):

  h5       Model.save('m.h5')          (HDF5 whole model)
  weights  Model.save_weights('w.h5')  (HDF5 weights only)
"""

import tensorflow as tf

import spec  # noqa: E402  (scripts/gen_versions/, on sys.path in the worker)

assert not spec.keras3_era(tf.__version__), "kfile_old is for the tf.keras of TF <= 2.15"

import keras  # noqa: E402  (the bundled keras 2.x: its version)

from gen import kfile  # noqa: E402

kfile.setup(tf.keras, "k2", f"tf.keras (keras {keras.__version__})")
kfile.set_keras_version(keras.__version__)


def build(fixture, kind, fixture_dir):
    kfile.build(fixture, fixture_dir)


def goldens(fixture, kind, fixture_dir, onednn):
    kfile.goldens(fixture, fixture_dir, onednn)
