"""Plausibility check of a generated fixture, numpy only (no TensorFlow).

Catches generator bugs (a variable restored from the wrong key, a golden of
the wrong mode, a manifest whose bytes do not match its shape) by comparing
each golden with a float64 textbook batch norm computed from the manifest's
own expected bytes. The tolerances are loose on purpose: bit-exact parity is
the Rust side's job, this only has to tell "right layer, right values" from
"wrong".
"""

import json
import os

import numpy as np

NP_DTYPES = {
    "float32": "<f4",
    "float64": "<f8",
    "float16": "<f2",
    "int64": "<i8",
    "int32": "<i4",
    "int16": "<i2",
    "int8": "i1",
    "uint8": "u1",
    "bool": "u1",
    "complex64": "<c8",
    "bfloat16": "<u2",
}


def _close(name, got, want, tol=2e-4):
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    if got.ndim != want.ndim and got.size == want.size and want.ndim == 1:
        # Ghost-batch layers keep their variables as [1, …, 1, C].
        got = got.reshape(want.shape)
    assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
    err = np.abs(got - want) / (1.0 + np.abs(want))
    worst = float(err.max()) if err.size else 0.0
    assert worst <= tol, f"{name}: max relative error {worst:.3g} > {tol}"
    return worst


def check_fixture(fixture_dir):
    with open(os.path.join(fixture_dir, "expected", "manifest.json")) as f:
        m = json.load(f)
    with open(os.path.join(fixture_dir, "expected", "variables.bin"), "rb") as f:
        blob = f.read()

    values = {}
    end = 0
    for v in m["variables"]:
        if v["dtype"] == "string":
            assert "strings_hex" in v and int(np.prod(v["shape"])) == len(v["strings_hex"]), v["key"]
            continue
        dt = np.dtype(NP_DTYPES[v["dtype"]])
        count = int(np.prod(v["shape"], dtype=np.int64))
        assert v["nbytes"] == count * dt.itemsize, v["key"]
        assert v["offset"] == end, f"{v['key']}: offsets must tile variables.bin in key order"
        end += v["nbytes"]
        values[v["key"]] = np.frombuffer(blob, dt, count, v["offset"]).reshape(v["shape"])
    assert end == len(blob), "variables.bin has trailing bytes"

    keys = {v["key"] for v in m["variables"]}
    report = []
    for layer in m["layers"]:
        report.append(check_layer(fixture_dir, m, layer, values, keys))
    return report


def _var(layer, values, role):
    ref = layer["variables"].get(role)
    if ref is None:
        return None
    val = values[ref["key"]].astype(np.float64).reshape(-1)
    for alias in ref.get("aliases", []):
        assert np.array_equal(values[alias].reshape(-1), values[ref["key"]].reshape(-1)), (ref, alias)
    return val


def check_layer(fixture_dir, m, layer, values, keys):
    for ref in layer["variables"].values():
        if ref is not None:
            assert ref["key"] in keys, f"{layer['name']}: key {ref['key']!r} not in the checkpoint"
    h = layer["hyper"]
    c = layer["channels"]
    eps = float(np.float32(h["epsilon"]))
    mom = float(np.float32(h["momentum"]))
    gamma = _var(layer, values, "gamma")
    beta = _var(layer, values, "beta")
    mm = _var(layer, values, "moving_mean")
    mv = _var(layer, values, "moving_variance")
    gamma = np.ones(c) if gamma is None else gamma
    beta = np.zeros(c) if beta is None else beta

    gdir = os.path.join(fixture_dir, layer["golden"])
    x = np.load(os.path.join(gdir, "input.npy")).astype(np.float64)
    axis = h["axis"][0]
    red = tuple(i for i in range(x.ndim) if i != axis)
    bshape = [1] * x.ndim
    bshape[axis] = c

    def b(v):
        return v.reshape(bshape)

    ref_inf = (x - b(mm)) / np.sqrt(b(mv) + eps) * b(gamma) + b(beta)
    bm = x.mean(axis=red)
    bv_biased = x.var(axis=red)
    n = x.size // c
    bv_bessel = bv_biased * n / max(n - 1, 1)
    vbs = h.get("virtual_batch_size")
    clip = h.get("renorm_clipping") or {}
    if h["renorm"]:
        rs = np.maximum(_var(layer, values, "renorm_stddev"), np.sqrt(eps))
        sd = np.sqrt(bv_biased + eps)
        r = sd / rs
        d = (bm - _var(layer, values, "renorm_mean")) / rs
        if clip.get("rmin") is not None:
            r = np.maximum(r, clip["rmin"])
        if clip.get("rmax") is not None:
            r = np.minimum(r, clip["rmax"])
        if clip.get("dmax") is not None:
            d = np.clip(d, -clip["dmax"], clip["dmax"])
        ref_train = ((x - b(bm)) / b(sd) * b(r) + b(d)) * b(gamma) + b(beta)
    elif vbs is not None:
        # Ghost batches: x as (vbs, G, ...); sample i*G + g is in ghost g.
        # The moving averages take the mean over ghosts of their statistics.
        groups = x.shape[0] // vbs
        xg = x.reshape((vbs, groups) + x.shape[1:])
        gred = tuple(i for i in range(xg.ndim) if i not in (1, axis + 1))
        gm = xg.mean(axis=gred, keepdims=True)
        gv = xg.var(axis=gred, keepdims=True)
        gshape = [1] * xg.ndim
        gshape[axis + 1] = c
        ref_train = ((xg - gm) / np.sqrt(gv + eps) * gamma.reshape(gshape) + beta.reshape(gshape)).reshape(x.shape)
        bm = gm.mean(axis=1).reshape(c)
        bv_biased = gv.mean(axis=1).reshape(c)
    else:
        ref_train = (x - b(bm)) / np.sqrt(b(bv_biased) + eps) * b(gamma) + b(beta)
    bessel = h["fused"] is True  # TF1 fused and tf_keras fused update with the Bessel-corrected variance
    bv_update = bv_bessel if bessel else bv_biased

    worst = 0.0
    outs = {}
    for mode in ("eigen", "onednn"):
        d = os.path.join(gdir, mode)
        with open(os.path.join(d, "env.json")) as f:
            env = json.load(f)
        assert env["onednn"] == (mode == "onednn"), env
        o = {name[:-4]: np.load(os.path.join(d, name)) for name in os.listdir(d) if name.endswith(".npy")}
        outs[mode] = o
        tag = f"{layer['name']}/{mode}"
        worst = max(worst, _close(tag + "/inference_y", o["inference_y"], ref_inf))
        worst = max(worst, _close(tag + "/training_y", o["training_y"], ref_train, tol=1e-3 if h["renorm"] else 2e-4))
        worst = max(worst, _close(tag + "/training_moving_mean", o["training_moving_mean"], mm * mom + bm * (1 - mom)))
        if not h["renorm"]:
            worst = max(
                worst,
                _close(tag + "/training_moving_variance", o["training_moving_variance"], mv * mom + bv_update * (1 - mom)),
            )
        if "training_batch_mean" in o:
            kind = layer["batch_stats"]["variance"]
            want_m = bm
            want_v = bv_bessel if kind == "bessel" else bv_biased
            if kind == "kernel-averaged":
                # FusedBatchNormV3 with exponential_avg_factor = 1 - momentum:
                # outputs 1 and 2 are the new running statistics.
                want_m = mm * mom + bm * (1 - mom)
                want_v = mv * mom + bv_bessel * (1 - mom)
            worst = max(worst, _close(tag + "/training_batch_mean", o["training_batch_mean"], want_m))
            worst = max(worst, _close(tag + "/training_batch_variance", o["training_batch_variance"], want_v))
        for name, arr in o.items():
            assert arr.dtype == np.float32, (tag, name, arr.dtype)
    assert sorted(outs["eigen"]) == sorted(outs["onednn"]), layer["name"]
    diff = max(
        float(np.abs(outs["eigen"][k].astype(np.float64) - outs["onednn"][k]).max()) for k in outs["eigen"]
    )
    same = all(np.array_equal(outs["eigen"][k], outs["onednn"][k]) for k in outs["eigen"])
    return {"layer": layer["name"], "max_rel_err_vs_f64": worst, "eigen_vs_onednn_max_abs": diff, "bitwise_equal": same}


def _load(path, dtype):
    a = np.load(path)
    if dtype == "bfloat16":
        # '<u2' bit patterns -> float32 (bf16 is the top half of a binary32)
        a = (a.astype(np.uint32) << 16).view(np.float32)
    return a.astype(np.float64)


def check_ops(fixture_dir):
    """Raw-op goldens vs a float64 reference of each case's documented math."""
    with open(os.path.join(fixture_dir, "expected", "manifest.json")) as f:
        m = json.load(f)
    tol = {"float32": 2e-4, "float16": 5e-3, "bfloat16": 3e-2}
    report = []
    for case in m["cases"]:
        inp = {k: _load(os.path.join(fixture_dir, r["file"]), r["dtype"]) for k, r in case["inputs"].items()}
        x = inp["x"]
        axis = case["channel_axis"]
        red = tuple(i for i in range(x.ndim) if i != axis)
        bshape = [1] * x.ndim
        bshape[axis] = case["channels"]
        eps = float(np.float32(case["epsilon"]))
        scale, offset = inp["scale"].reshape(bshape), inp["offset"].reshape(bshape)
        want = {}
        training = case.get("is_training", not case.get("inference", False))
        if training:
            mean, var = x.mean(axis=red), x.var(axis=red)
            want["y"] = (x - mean.reshape(bshape)) / np.sqrt(var.reshape(bshape) + eps) * scale + offset
            if case["op"] == "FusedBatchNormV3":
                f = case["exponential_avg_factor"]
                n = x.size // case["channels"]
                bessel = var * n / max(n - 1, 1)
                want["batch_mean"] = (1 - f) * inp["mean"] + f * mean
                want["batch_variance"] = (1 - f) * inp["variance"] + f * bessel
                want["reserve_space_1"] = mean
                want["reserve_space_2"] = var
            else:
                want["mean"], want["variance"] = mean, var
        else:
            mean, var = inp["mean"].reshape(bshape), inp["variance"].reshape(bshape)
            want["y"] = (x - mean) / np.sqrt(var + eps) * scale + offset
        assert sorted(want) == sorted(case["outputs"]), (case["id"], sorted(want), sorted(case["outputs"]))
        worst, same = 0.0, True
        for name, ref in case["outputs"].items():
            got = {}
            for mode in ("eigen", "onednn"):
                got[mode] = _load(os.path.join(fixture_dir, "goldens", mode, ref["file"]), ref["dtype"])
                t = tol[ref["dtype"]] if name == "y" else 2e-4
                worst = max(worst, _close(f"ops/{case['id']}/{mode}/{name}", got[mode], want[name], t))
            same = same and np.array_equal(got["eigen"], got["onednn"])
        report.append({"layer": case["id"], "max_rel_err_vs_f64": worst, "bitwise_equal": same})
    return report
