"""The fixture matrix of scripts/gen_versions.py (plain Python, no TensorFlow:
imported by the driver in the project venv and by the workers in the old ones).

version -> the fixtures written by that TensorFlow release. Each fixture has a
`group` (the worker module, which decides the Keras and TF_USE_LEGACY_KERAS)
and a `kind` (how the model is written).

  group  module               Keras                                 TF_USE_LEGACY_KERAS
  k2     gen_versions/k2.py   Keras 2: `tf.keras` (bundled keras 2.x,     1 where TF >= 2.16
                              TF <= 2.15), `tf_keras` (TF >= 2.16)  (else unset)
  k3     gen_versions/k3.py   Keras 3 (TF >= 2.16)                  unset

  kind        writer
  savedmodel  k2: Model.save(dir, save_format='tf'); k3: tf.saved_model.save(model, dir)
  export      k3: Model.export(dir) (format tf_saved_model)
  ckpt        tf.train.Checkpoint(model=model, optimizer=optimizer).save(prefix)
  weights     k2: Model.save_weights(prefix, save_format='tf')
"""

# Kept in step with scripts/setup-tf-versions.sh (the venvs' pins).
VERSIONS = {
    # k2_optimizer "legacy": tf.keras.optimizers.legacy.SGD (OptimizerV2, state
    # in slot variables `<var>/.OPTIMIZER_SLOT/optimizer/momentum/...`, as
    # every TF <= 2.10 Keras checkpoint); otherwise the Keras 2.11+ optimizer
    # (`optimizer/_variables/N`).
    "2.12.1": {
        "tag": "tf2_12",
        "fixtures": [("savedmodel", "k2"), ("ckpt", "k2"), ("weights", "k2")],
        "k2_optimizer": "legacy",
    },
    "2.13.1": {"tag": "tf2_13", "fixtures": [("savedmodel", "k2"), ("ckpt", "k2"), ("weights", "k2")]},
    "2.15.1": {"tag": "tf2_15", "fixtures": [("savedmodel", "k2"), ("ckpt", "k2"), ("weights", "k2")]},
    "2.16.2": {
        "tag": "tf2_16",
        "fixtures": [("savedmodel", "k3"), ("export", "k3"), ("ckpt", "k3"), ("weights", "k2")],
    },
}

GROUPS = {"k2": {"legacy_keras": True}, "k3": {"legacy_keras": False}, "kfile_old": {"legacy_keras": True}}


def _kfile_old():
    """The Keras-file fixtures an old release writes (group kfile_old:
    gen_versions/kfile_old.py over scripts/gen/kfile.py), from
    scripts/gen/kfile_fixtures.py (plain Python)."""
    import os
    import sys

    scripts = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    from gen.kfile_fixtures import KFILE_OLD_FIXTURES

    return KFILE_OLD_FIXTURES


def fixtures():
    """fixture name -> (version, group, kind), in generation order."""
    out = {}
    for version, v in VERSIONS.items():
        for kind, group in v["fixtures"]:
            out[f"{v['tag']}_{kind}"] = (version, group, kind)
        for name, (ver, group, kind) in _kfile_old().items():
            if ver == version:
                out[name] = (ver, group, kind)
    return out


def keras3_era(version):
    """TF >= 2.16: tf.keras is Keras 3 unless TF_USE_LEGACY_KERAS=1."""
    return tuple(int(p) for p in version.split(".")[:2]) >= (2, 16)
