"""HDF5 helpers and the numpy-only sanity check of the Keras-file (`kfile_*`)
and frozen-GraphDef (`frozen_*`) fixtures. No TensorFlow here: the sanity
check runs in the driver process of scripts/gen_testdata.py and
scripts/gen_versions.py.

TF has no reader for Keras HDF5 files, so the cross-check source of a
Keras-file fixture is h5py: `expected/h5_variables.json` lists every dataset
of the weights HDF5 (key = its path from the root without the leading
slash), and `expected/variables.bin` + the manifest's `variables` hold the
same bytes, laid out as for the checkpoint fixtures.
"""

import hashlib
import io
import json
import os
import shutil
import tempfile
import zipfile

import numpy as np


def open_weights_h5(path):
    """h5py.File of the weights HDF5 at `path`: the file itself, or for a
    Keras 3 `.keras` archive its member `model.weights.h5` (read in memory)."""
    import h5py

    if path.endswith(".keras"):
        with zipfile.ZipFile(path) as z:
            data = z.read("model.weights.h5")
        return h5py.File(io.BytesIO(data), "r")
    return h5py.File(path, "r")


def le_bytes(arr):
    arr = np.asarray(arr)
    return np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()


def datasets(h5):
    """{key: numpy array} of every dataset (visit order of h5py; keys sorted later)."""
    import h5py

    out = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            out[name] = obj[()]

    h5.visititems(visit)
    return out


def dataset_dtype_name(arr):
    dt = np.asarray(arr).dtype
    assert dt.kind in "fiub", f"non-numeric dataset dtype {dt}"
    return "bool" if dt.kind == "b" else dt.name


def write_expected(fixture_dir, values):
    """expected/h5_variables.json ({key: {dtype, shape, sha256}}) and
    expected/variables.bin; returns the manifest `variables` list (sorted by
    key, offsets tiling variables.bin)."""
    inventory = {}
    variables = []
    blob = bytearray()
    for key in sorted(values):
        arr = np.asarray(values[key])
        raw = le_bytes(arr)
        dt = dataset_dtype_name(arr)
        shape = [int(d) for d in arr.shape]
        inventory[key] = {"dtype": dt, "shape": shape, "sha256": hashlib.sha256(raw).hexdigest()}
        variables.append({"key": key, "dtype": dt, "shape": shape, "offset": len(blob), "nbytes": len(raw)})
        blob += raw
    os.makedirs(os.path.join(fixture_dir, "expected"), exist_ok=True)
    with open(os.path.join(fixture_dir, "expected", "variables.bin"), "wb") as f:
        f.write(bytes(blob))
    with open(os.path.join(fixture_dir, "expected", "h5_variables.json"), "w") as f:
        json.dump(inventory, f, sort_keys=True, indent=1)
        f.write("\n")
    return variables


def match_key(values, arr, what):
    """The one dataset holding exactly the bytes (and dtype, shape) of `arr`."""
    arr = np.asarray(arr)
    raw = le_bytes(arr)
    hits = [
        k
        for k, v in values.items()
        if np.asarray(v).dtype == arr.dtype and np.asarray(v).shape == arr.shape and le_bytes(v) == raw
    ]
    assert len(hits) == 1, f"{what}: {len(hits)} datasets hold its bytes: {hits}"
    return hits[0]


def attr_summary(h5):
    """Where the HDF5 file keeps Keras metadata: every attribute name per
    object (for the README / manifest notes)."""
    import h5py

    out = {"/": sorted(h5.attrs.keys())}

    def visit(name, obj):
        if len(obj.attrs):
            out[name] = sorted(obj.attrs.keys())

    h5.visititems(visit)
    return out


# ---------------------------------------------------------------- h5py rewrites


def rewrite_gzip(src, dst):
    """Copy every group, attribute and dataset of `src` into a new file whose
    datasets (non-scalar) are chunked, shuffled and gzip-compressed."""
    import h5py

    with h5py.File(src, "r") as fi, h5py.File(dst, "w") as fo:
        _copy(fi, fo, gzip=True, extra_attrs=0)


def rewrite_dense_attrs(src, dst, extra_attrs=12):
    """Copy into a `libver='latest'` file where every group gets `extra_attrs`
    filler attributes *before* the real ones: more than 8 attributes on an
    object switch HDF5 from compact (object header) to dense attribute
    storage (fractal heap + v2 B-tree name index), so the Keras attributes
    (`layer_names`, `weight_names`, ...) are stored densely. The filler
    attributes are named `tfbn_filler_NN` (int32 scalars)."""
    import h5py

    # As h5py.File(dst, 'w', libver='latest'), but with object modification
    # times off (v2 object headers would store them), so reruns write the
    # same bytes.
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_LATEST, h5py.h5f.LIBVER_LATEST)
    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    fcpl.set_obj_track_times(False)
    fid = h5py.h5f.create(os.fsencode(dst), h5py.h5f.ACC_TRUNC, fcpl=fcpl, fapl=fapl)
    with h5py.File(src, "r") as fi, h5py.File(fid) as fo:
        _copy(fi, fo, gzip=False, extra_attrs=extra_attrs)


def _copy(gi, go, gzip, extra_attrs):
    import h5py

    for i in range(extra_attrs):
        go.attrs["tfbn_filler_%02d" % i] = np.int32(i)
    for k in gi.attrs:
        # Keep the stored type (fixed-width vs variable-length strings) as is.
        aid = gi.attrs.get_id(k)
        go.attrs.create(k, gi.attrs[k], dtype=aid.dtype)
    for name, obj in gi.items():
        if isinstance(obj, h5py.Group):
            gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
            gcpl.set_obj_track_times(False)
            sub = h5py.Group(h5py.h5g.create(go.id, name.encode("utf-8"), gcpl=gcpl))
            _copy(obj, sub, gzip, extra_attrs)
        else:
            data = obj[()]
            if gzip and np.asarray(data).ndim > 0 and np.asarray(data).size > 0:
                chunks = tuple(max(1, (d + 1) // 2) for d in np.asarray(data).shape)
                ds = go.create_dataset(
                    name, data=data, chunks=chunks, compression="gzip", compression_opts=6, shuffle=True, track_times=False
                )
            else:
                ds = go.create_dataset(name, data=data, track_times=False)
            for k in obj.attrs:
                ds.attrs.create(k, obj.attrs[k], dtype=obj.attrs.get_id(k).dtype)


# ---------------------------------------------------------------- sanity


def check_fixture(fixture_dir):
    """scripts/gen/sanity.py's check, plus: h5_variables.json agrees with
    variables.bin; float16 goldens (mixed_float16 layers) are checked on a
    float32 copy with a float16-sized tolerance; frozen fixtures (inference
    goldens only) get an inference-only check."""
    from . import sanity

    with open(os.path.join(fixture_dir, "expected", "manifest.json")) as f:
        m = json.load(f)
    inv_path = os.path.join(fixture_dir, "expected", "h5_variables.json")
    if os.path.exists(inv_path):
        with open(inv_path) as f:
            inv = json.load(f)
        with open(os.path.join(fixture_dir, "expected", "variables.bin"), "rb") as f:
            blob = f.read()
        assert sorted(inv) == [v["key"] for v in m["variables"]], "h5_variables.json keys != manifest variables"
        for v in m["variables"]:
            raw = blob[v["offset"] : v["offset"] + v["nbytes"]]
            assert hashlib.sha256(raw).hexdigest() == inv[v["key"]]["sha256"], v["key"]
    if m["format"] == "frozen_graphdef":
        return check_frozen(fixture_dir, m)
    if all(l["input_dtype"] == "float32" for l in m["layers"]):
        return sanity.check_fixture(fixture_dir)
    # float16 layers: a float32 copy of the goldens, and a looser tolerance.
    tmp = tempfile.mkdtemp(prefix="tfbn-kfile-sanity-")
    try:
        copy = os.path.join(tmp, "f")
        shutil.copytree(fixture_dir, copy)
        for root, _, files in os.walk(os.path.join(copy, "goldens")):
            for name in files:
                if name.endswith(".npy"):
                    p = os.path.join(root, name)
                    a = np.load(p)
                    if a.dtype == np.float16:
                        np.save(p, a.astype(np.float32))
        orig = sanity._close

        def loose(name, got, want, tol=2e-4):
            return orig(name, got, want, tol=max(tol, 1e-2))

        sanity._close = loose
        try:
            return sanity.check_fixture(copy)
        finally:
            sanity._close = orig
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_frozen(fixture_dir, m):
    from . import sanity

    with open(os.path.join(fixture_dir, "expected", "variables.bin"), "rb") as f:
        blob = f.read()
    values = {}
    end = 0
    for v in m["variables"]:
        dt = np.dtype(sanity.NP_DTYPES[v["dtype"]])
        assert v["offset"] == end, v["key"]
        end += v["nbytes"]
        values[v["key"]] = np.frombuffer(blob, dt, int(np.prod(v["shape"], dtype=np.int64)), v["offset"]).reshape(v["shape"])
    assert end == len(blob)
    report = []
    for l in m["layers"]:
        c = l["channels"]
        var = {r: values[ref["key"]].astype(np.float64).reshape(-1) for r, ref in l["variables"].items()}
        gamma = var.get("gamma", np.ones(c))
        beta = var.get("beta", np.zeros(c))
        eps = float(np.float32(l["hyper"]["epsilon"]))
        x = np.load(os.path.join(fixture_dir, l["golden"], "input.npy")).astype(np.float64)
        axis = l["hyper"]["axis"][0]
        bshape = [1] * x.ndim
        bshape[axis] = c
        b = lambda a: a.reshape(bshape)  # noqa: E731
        want = (x - b(var["moving_mean"])) / np.sqrt(b(var["moving_variance"]) + eps) * b(gamma) + b(beta)
        outs = {}
        worst = 0.0
        for mode in ("eigen", "onednn"):
            y = np.load(os.path.join(fixture_dir, l["golden"], mode, "inference_y.npy"))
            assert y.dtype == np.float32
            outs[mode] = y
            worst = max(worst, sanity._close(f"{l['name']}/{mode}/inference_y", y, want))
        report.append(
            {
                "layer": l["name"],
                "max_rel_err_vs_f64": worst,
                "eigen_vs_onednn_max_abs": float(np.abs(outs["eigen"].astype(np.float64) - outs["onednn"]).max()),
                "bitwise_equal": bool(np.array_equal(outs["eigen"], outs["onednn"])),
            }
        )
    return report
