"""tf.nn.moments + tf.nn.batch_normalization on float16 and bfloat16 inputs.

TF 2.21 (python/ops/nn_impl.py, core/kernels/reduction_ops.h):
  * moments casts a float16 input to float32, reduces in float32 and casts
    the mean and variance back to float16;
  * a bfloat16 input is not cast by moments, but the bfloat16 Mean kernel
    sums in float32 and divides in float32 before rounding to bfloat16, while
    SquaredDifference runs in bfloat16 (every operation rounded);
  * batch_normalization then runs in the input's type: rsqrt, the products
    and the sums all round to 16 bits.
Every parameter (scale, offset and, for inference, mean and variance) is fed
in the input's type, as TF requires for these element-wise ops.

Layout (relative to testdata/ops_nn_half), the `ops` fixture's schema:
  inputs/<case>/<name>.npy           x, scale, offset[, mean, variance]
  goldens/<mode>/env.json            mode = eigen (TF_ENABLE_ONEDNN_OPTS=0) | onednn (=1)
  goldens/<mode>/<case>/<name>.npy   y, and mean / variance for training cases
bfloat16 arrays are stored as '<u2' bit patterns; the manifest names each
array's dtype.
"""

import os

import numpy as np
import tensorflow as tf

from . import common
from . import ops

FIXTURES = ("ops_nn_half",)
SEED = 4343


def case(id, T, layout, c, eps, inference=False, shape=None, edge=False):
    d = dict(id=id, op="moments+batch_normalization", T=T, data_format=layout, channels=c,
             epsilon=eps, inference=inference)
    if shape is not None:
        d["shape"] = shape
    if edge:
        d["edge"] = True
    return d


CASES = []
for _t, _s in (("float16", "f16"), ("bfloat16", "bf16")):
    CASES += [
        # R = 30: four partial sums on channels 0..7, sequential on 8..12; the
        # rsqrt packet path on 0..7 and the scalar tail on 8..12.
        case(f"nn_{_s}_nhwc_c13_train", _t, "NHWC", 13, 1e-3),
        # channels-first reduction (pattern Q), C < 8: all-tail rsqrt.
        case(f"nn_{_s}_nchw_c3_train", _t, "NCHW", 3, 1e-5),
        # 2-D, R = 20, C = 64: packets only.
        case(f"nn_{_s}_2d_c64_train", _t, "NC", 64, 1e-2),
        case(f"nn_{_s}_nhwc_c13_infer", _t, "NHWC", 13, 1e-3, inference=True),
        # Edge cases (see edge_values): NaN, Inf, -0, 16-bit subnormals, huge
        # values, a near-constant channel; C = 9 puts channel 8 on the tail.
        case(f"nn_{_s}_nhwc_c9_edge_train", _t, "NHWC", 9, 1e-3, shape=[2, 2, 5, 9], edge=True),
        case(f"nn_{_s}_nhwc_c9_edge_infer", _t, "NHWC", 9, 1e-3, inference=True, shape=[2, 2, 5, 9], edge=True),
        # R = 1 (the reduction is a copy) and an empty batch (NaN moments).
        case(f"nn_{_s}_nhwc_c5_r1_train", _t, "NHWC", 5, 1e-3, shape=[1, 1, 1, 5]),
        case(f"nn_{_s}_2d_c4_empty_train", _t, "NC", 4, 1e-3, shape=[0, 4]),
        # One channel: the reduction collapses to a full reduction (Eigen's
        # full reducer, not the column reducer).
        case(f"nn_{_s}_2d_c1_train", _t, "NC", 1, 1e-3, shape=[3000, 1]),
    ]


def x_shape(case):
    if "shape" in case:
        return list(case["shape"])
    c = case["channels"]
    fmt = case["data_format"]
    if fmt == "NC":
        return [20, c]
    if fmt == "NCHW":
        return [2, c, 3, 5]
    return [2, 3, 5, c]


def channel_axis(case):
    return 1 if case["data_format"] in ("NCHW", "NC") else len(x_shape(case)) - 1


def edge_values(x, t):
    """Special values per channel of a channels-last float32 array (rounded to
    `t` afterwards): 0 NaN, 1 +Inf, 2 near-constant (one value one 16-bit ulp
    up), 3 all -0, 4 16-bit subnormals among normal values, 5 huge (the f32
    sum overflows for bfloat16, x*inv overflows float16), 6 one -Inf."""
    rows = x.reshape(-1, x.shape[-1])
    ulp = 2.0**-10 if t == "float16" else 2.0**-7
    tiny = 3e-7 if t == "float16" else 1e-39
    huge = 60000.0 if t == "float16" else 2e38
    rows[1, 0] = np.nan
    rows[2, 1] = np.inf
    rows[:, 2] = 1.5
    rows[3, 2] = 1.5 + 1.5 * ulp
    rows[:, 3] = -0.0
    rows[::2, 4] = tiny
    rows[1::4, 4] = -tiny
    rows[:, 5] = huge
    rows[0, 5] = -huge
    rows[4, 6] = -np.inf
    return x


def make_inputs(case, rng):
    shape = x_shape(case)
    c = case["channels"]
    x = common.make_input(shape, channel_axis(case), rng.integers(2**31))
    t = case["T"]
    if case.get("edge"):
        x = edge_values(x, t)
    variance = rng.uniform(0.5, 2.0, c).astype(np.float32)
    if case.get("edge") and case["inference"]:
        # +Inf, NaN, -eps (var + eps = 0) and 0 variances.
        variance[:4] = [np.inf, np.nan, -case["epsilon"], 0.0]
    return {
        "x": tf.cast(tf.constant(x), t),
        "scale": tf.cast(tf.constant(rng.uniform(0.5, 1.5, c).astype(np.float32)), t),
        "offset": tf.cast(tf.constant(rng.normal(0.0, 0.5, c).astype(np.float32)), t),
        "mean": tf.cast(tf.constant(rng.normal(0.0, 1.0, c).astype(np.float32)), t),
        "variance": tf.cast(tf.constant(variance), t),
    }


def build(fixture, fixture_dir):
    rng = np.random.default_rng(SEED)
    cases = []
    for c in CASES:
        inp = make_inputs(c, rng)
        used = ["x", "scale", "offset"] + (["mean", "variance"] if c["inference"] else [])
        inputs = {}
        for name in used:
            a = ops.arr(inp[name])
            rel = f"inputs/{c['id']}/{name}.npy"
            common.save_npy(os.path.join(fixture_dir, rel), a)
            inputs[name] = ops.array_ref(rel, a)
        outs = ops.run_case(c, inp)
        entry = {k: v for k, v in c.items() if k not in ("shape", "edge")}
        if c.get("edge"):
            entry["edge_values"] = edge_values.__doc__.split(":", 1)[1].strip().replace("\n", " ")
        entry.update(
            {
                "U": c["T"],
                "x_shape": x_shape(c),
                "channel_axis": channel_axis(c),
                "axes": [i for i in range(len(x_shape(c))) if i != channel_axis(c)],
                "inputs": inputs,
                "outputs": {k: {"file": f"{c['id']}/{k}.npy", "dtype": v.dtype.name, "shape": list(v.shape)}
                            for k, v in outs.items()},
            }
        )
        cases.append(entry)
    common.write_checkpointless_manifest(
        fixture_dir,
        fixture,
        "none (no checkpoint): eager tf.nn.moments + tf.nn.batch_normalization in float16/bfloat16",
        cases,
    )
    common.write_readme(
        fixture_dir,
        fixture,
        "`tf.nn.moments(x, axes, keepdims=True)` + `tf.nn.batch_normalization(x, mean, variance, offset, "
        "scale, epsilon)` with float16 and bfloat16 inputs, every parameter in the input's type. "
        "Same schema as the `ops` fixture (op `moments+batch_normalization`).",
        [
            "float16: moments casts x to float32, reduces in float32 and rounds mean/variance back to float16",
            "bfloat16: no cast in moments; the bfloat16 Mean kernel sums and divides in float32 then rounds, "
            "SquaredDifference rounds every step to bfloat16",
            "batch_normalization runs in the input's type (rsqrt, products and sums each rounded to 16 bits)",
            "cases: NHWC C=13 (R=30), NCHW C=3 (R=30), 2-D C=64 (R=20) in training; NHWC C=13 inference "
            "with given mean/variance",
            "edge cases (NHWC C=9, R=20, training and inference): per channel NaN, +Inf, near-constant, all -0, "
            "16-bit subnormals, huge values, -Inf (manifest `edge_values`); inference variances +Inf, NaN, -eps, 0",
            "R = 1 (`_r1`, the reduction is a copy), an empty batch (`_empty`, shape [0, 4]: NaN moments) and "
            "one channel (`_c1`, shape [3000, 1]: a full reduction)",
            "inputs under `inputs/<case>/`, outputs under `goldens/eigen/<case>/` (TF_ENABLE_ONEDNN_OPTS=0) and "
            "`goldens/onednn/<case>/` (=1), one env.json per mode in `goldens/<mode>/`",
            "bfloat16 arrays are stored as '<u2' bit patterns (the manifest says `bfloat16`)",
            f"seed {SEED}; generator: scripts/gen/ops_nn_half.py",
        ],
    )


def goldens(fixture, fixture_dir, onednn):
    import ml_dtypes

    manifest = common.read_json(os.path.join(fixture_dir, "expected", "manifest.json"))
    mode = "onednn" if onednn else "eigen"
    root = os.path.join(fixture_dir, "goldens", mode)
    for c in manifest["cases"]:
        inp = {}
        for name, ref in c["inputs"].items():
            a = np.load(os.path.join(fixture_dir, ref["file"]))
            if ref["dtype"] == "bfloat16":
                a = a.view(ml_dtypes.bfloat16)
            inp[name] = tf.constant(a)
        outs = ops.run_case(c, inp)
        assert sorted(outs) == sorted(c["outputs"]), c["id"]
        for name, a in outs.items():
            ref = c["outputs"][name]
            assert a.dtype.name == ref["dtype"] and list(a.shape) == ref["shape"], (c["id"], name)
            common.save_npy(os.path.join(root, ref["file"]), a)
    common.write_json(os.path.join(root, "env.json"), common.golden_env("tf.nn", None, onednn))


def sanity(fixture_dir):
    """Goldens vs a float64 batch norm, with 16-bit tolerances on every output."""
    from . import sanity as s

    m = common.read_json(os.path.join(fixture_dir, "expected", "manifest.json"))
    tol = {"float16": 5e-3, "bfloat16": 3e-2}
    report = []
    for c in m["cases"]:
        rows = int(np.prod(c["x_shape"])) // c["channels"]
        if "edge_values" in c or rows <= 1:
            # Special values, an empty batch, or R = 1 (x*inv + (beta - mean*inv)
            # cancels to beta in 16 bits): by design far from a float64 batch
            # norm; the Rust tests compare them bit for bit.
            continue
        inp = {k: s._load(os.path.join(fixture_dir, r["file"]), r["dtype"]) for k, r in c["inputs"].items()}
        x = inp["x"]
        axis = c["channel_axis"]
        red = tuple(i for i in range(x.ndim) if i != axis)
        bshape = [1] * x.ndim
        bshape[axis] = c["channels"]
        scale, offset = inp["scale"].reshape(bshape), inp["offset"].reshape(bshape)
        want = {}
        if c["inference"]:
            mean, var = inp["mean"], inp["variance"]
        else:
            mean, var = x.mean(axis=red), x.var(axis=red)
            want["mean"], want["variance"] = mean, var
        want["y"] = (x - mean.reshape(bshape)) / np.sqrt(var.reshape(bshape) + c["epsilon"]) * scale + offset
        assert sorted(want) == sorted(c["outputs"]), c["id"]
        worst, same = 0.0, True
        for name, ref in c["outputs"].items():
            got = {}
            for mode in ("eigen", "onednn"):
                got[mode] = s._load(os.path.join(fixture_dir, "goldens", mode, ref["file"]), ref["dtype"])
                # y carries the error of 16-bit statistics and arithmetic: a few 16-bit ulps of |y| ~ 4.
                t = tol[ref["dtype"]] * (4 if name == "y" else 1)
                worst = max(worst, s._close(f"ops_nn_half/{c['id']}/{mode}/{name}", got[mode], want[name], t))
            same = same and np.array_equal(got["eigen"], got["onednn"])
        report.append({"layer": c["id"], "max_rel_err_vs_f64": worst, "bitwise_equal": same})
    return report
