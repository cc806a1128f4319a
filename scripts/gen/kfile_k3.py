"""Keras 3 writers of the Keras-file fixtures (gen/kfile.py, flavour k3):
`.keras` and `.weights.h5`, and an h5py gzip rewrite of a `.weights.h5`.

Runs with TF_USE_LEGACY_KERAS unset.
"""

import keras

from . import kfile

kfile.setup(keras, "k3", f"Keras {keras.__version__}")


def build(fixture, fixture_dir):
    kfile.build(fixture, fixture_dir)


def goldens(fixture, fixture_dir, onednn):
    kfile.goldens(fixture, fixture_dir, onednn)
