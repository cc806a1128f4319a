"""tf_keras (Keras 2, TF 2.21) writers of the Keras-file fixtures
(gen/kfile.py, flavour k2): whole-model `.h5` and weights-only `.h5`, the
chunked-`layer_names` model, and an h5py dense-attribute rewrite.

Runs with TF_USE_LEGACY_KERAS=1.
"""

import tf_keras

from . import kfile

kfile.setup(tf_keras, "k2", f"tf_keras {tf_keras.__version__}")


def build(fixture, fixture_dir):
    kfile.build(fixture, fixture_dir)


def goldens(fixture, fixture_dir, onednn):
    kfile.goldens(fixture, fixture_dir, onednn)
