"""Names of the Keras-file fixtures and their worker groups (plain Python:
imported by the drivers, which import no TensorFlow). The table itself is
gen/kfile.py's FIXTURES; it is repeated here as names only and checked
against it by gen/kfile.py."""

_MODELS_K3 = ("cnn", "nested", "subclassed", "mixed")
_MODELS_TFK_H5 = ("cnn", "nested", "mixed")
_MODELS_TFK_W = ("cnn", "nested", "subclassed", "mixed")

# fixture -> gen_testdata group
KFILE_FIXTURES = {}
for _m in _MODELS_K3:
    KFILE_FIXTURES[f"kfile_k3_{_m}_keras"] = "kfile_k3"
    KFILE_FIXTURES[f"kfile_k3_{_m}_weights"] = "kfile_k3"
KFILE_FIXTURES["kfile_h5py_k3_gzip_weights"] = "kfile_k3"
for _m in _MODELS_TFK_H5:
    KFILE_FIXTURES[f"kfile_tfk_{_m}_h5"] = "kfile_k2"
for _m in _MODELS_TFK_W:
    KFILE_FIXTURES[f"kfile_tfk_{_m}_weights"] = "kfile_k2"
KFILE_FIXTURES["kfile_tfk_chunked_h5"] = "kfile_k2"
KFILE_FIXTURES["kfile_h5py_k2_dense_attrs_weights"] = "kfile_k2"

# written by scripts/gen_versions.py (TF 2.15.1 venv, group kfile_old)
# fixture -> (TF version, gen_versions group, kind)
KFILE_OLD_FIXTURES = {
    "kfile_k215_cnn_h5": ("2.15.1", "kfile_old", "h5"),
    "kfile_k215_cnn_weights": ("2.15.1", "kfile_old", "weights"),
    "kfile_k215_nested_h5": ("2.15.1", "kfile_old", "h5"),
}
