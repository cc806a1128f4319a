"""Raw-op goldens without a checkpoint: tf.raw_ops.FusedBatchNormV3 in several
dtypes / layouts / modes, and tf.nn.moments + tf.nn.batch_normalization.

Layout (relative to testdata/ops):
  inputs/<case>/<name>.npy           x, scale, offset, mean, variance (what the op was fed)
  goldens/<mode>/env.json            mode = eigen (TF_ENABLE_ONEDNN_OPTS=0) | onednn (=1)
  goldens/<mode>/<case>/<name>.npy   the op's outputs
bfloat16 arrays are stored as '<u2' bit patterns; the manifest names each
array's dtype.
"""

import os

import numpy as np
import tensorflow as tf

from . import common

FIXTURES = ("ops",)
SEED = 4242

# Spatial sizes: R = N*H*W = 30 (>= 16 and not a multiple of 4, so the column
# reduction takes its 4-partial-sum path and a tail), 5D R = 32, and R = 1.
NHWC_NHW = (2, 3, 5)
NDHWC_NDHW = (2, 2, 2, 4)


def fbn(id, T, fmt, c, training, factor=1.0, eps=1e-3, nhw=None):
    return dict(
        id=id, op="FusedBatchNormV3", T=T, data_format=fmt, channels=c, is_training=training,
        exponential_avg_factor=factor, epsilon=eps, nhw=nhw,
    )


def mom(id, layout, c, eps, inference=False):
    return dict(id=id, op="moments+batch_normalization", T="float32", data_format=layout, channels=c,
                epsilon=eps, inference=inference)


CASES = [
    fbn("fbn_f32_nhwc_c3_train", "float32", "NHWC", 3, True, 1.0),
    fbn("fbn_f32_nhwc_c13_train_f06", "float32", "NHWC", 13, True, 0.6, 1e-5),
    fbn("fbn_f32_nhwc_c64_train", "float32", "NHWC", 64, True, 1.0, 1e-2),
    fbn("fbn_f32_nhwc_c64_train_f06", "float32", "NHWC", 64, True, 0.6),
    fbn("fbn_f32_nhwc_c3_infer", "float32", "NHWC", 3, False, eps=1e-5),
    fbn("fbn_f32_nhwc_c13_infer", "float32", "NHWC", 13, False),
    fbn("fbn_f32_nhwc_c64_infer", "float32", "NHWC", 64, False, eps=1e-2),
    fbn("fbn_f32_nchw_c13_train", "float32", "NCHW", 13, True, 1.0),
    fbn("fbn_f32_nchw_c64_infer", "float32", "NCHW", 64, False),
    fbn("fbn_f32_ndhwc_c13_train_f06", "float32", "NDHWC", 13, True, 0.6),
    fbn("fbn_f32_ndhwc_c3_infer", "float32", "NDHWC", 3, False),
    fbn("fbn_f32_nhwc_c13_train_r1", "float32", "NHWC", 13, True, 1.0, nhw=(1, 1, 1)),
    fbn("fbn_f16_nhwc_c13_train", "float16", "NHWC", 13, True, 1.0),
    fbn("fbn_f16_nchw_c3_infer", "float16", "NCHW", 3, False),
    fbn("fbn_f16_nhwc_c64_infer", "float16", "NHWC", 64, False),
    fbn("fbn_bf16_nhwc_c64_train_f06", "bfloat16", "NHWC", 64, True, 0.6),
    fbn("fbn_bf16_nhwc_c13_infer", "bfloat16", "NHWC", 13, False),
    fbn("fbn_bf16_nchw_c3_train", "bfloat16", "NCHW", 3, True, 1.0),
    mom("moments_nhwc_c13", "NHWC", 13, 1e-3),
    mom("moments_nchw_c3", "NCHW", 3, 1e-5),
    mom("moments_2d_c64", "NC", 64, 1e-2),
    mom("batchnorm_nhwc_c13_infer", "NHWC", 13, 1e-3, inference=True),
]


def x_shape(case):
    c = case["channels"]
    fmt = case["data_format"]
    if fmt == "NC":
        return [8, c]
    if fmt == "NDHWC":
        return list(NDHWC_NDHW) + [c]
    nhw = case.get("nhw") or NHWC_NHW
    if fmt == "NCHW":
        return [nhw[0], c, nhw[1], nhw[2]]
    return list(nhw) + [c]


def channel_axis(case):
    return 1 if case["data_format"] in ("NCHW", "NC") else len(x_shape(case)) - 1


def make_inputs(case, rng):
    shape = x_shape(case)
    c = case["channels"]
    x = common.make_input(shape, channel_axis(case), rng.integers(2**31))
    return {
        "x": tf.cast(tf.constant(x), case["T"]),
        "scale": tf.constant(rng.uniform(0.5, 1.5, c).astype(np.float32)),
        "offset": tf.constant(rng.normal(0.0, 0.5, c).astype(np.float32)),
        "mean": tf.constant(rng.normal(0.0, 1.0, c).astype(np.float32)),
        "variance": tf.constant(rng.uniform(0.5, 2.0, c).astype(np.float32)),
    }


def arr(t):
    return np.asarray(t.numpy())


def run_case(case, inp):
    if case["op"] == "FusedBatchNormV3":
        out = tf.raw_ops.FusedBatchNormV3(
            x=inp["x"],
            scale=inp["scale"],
            offset=inp["offset"],
            mean=inp["mean"],
            variance=inp["variance"],
            epsilon=case["epsilon"],
            exponential_avg_factor=case["exponential_avg_factor"],
            data_format=case["data_format"],
            is_training=case["is_training"],
        )
        if not case["is_training"]:
            return {"y": arr(out.y)}
        return {
            "y": arr(out.y),
            "batch_mean": arr(out.batch_mean),
            "batch_variance": arr(out.batch_variance),
            "reserve_space_1": arr(out.reserve_space_1),
            "reserve_space_2": arr(out.reserve_space_2),
        }
    axis = channel_axis(case)
    rank = len(x_shape(case))
    axes = [i for i in range(rank) if i != axis]
    bshape = [1] * rank
    bshape[axis] = case["channels"]
    gamma = tf.reshape(inp["scale"], bshape)
    beta = tf.reshape(inp["offset"], bshape)
    if case["inference"]:
        m = tf.reshape(inp["mean"], bshape)
        v = tf.reshape(inp["variance"], bshape)
        y = tf.nn.batch_normalization(inp["x"], m, v, beta, gamma, case["epsilon"])
        return {"y": arr(y)}
    m, v = tf.nn.moments(inp["x"], axes=axes, keepdims=True)
    y = tf.nn.batch_normalization(inp["x"], m, v, beta, gamma, case["epsilon"])
    return {"y": arr(y), "mean": arr(tf.reshape(m, [-1])), "variance": arr(tf.reshape(v, [-1]))}


def array_ref(path, a):
    return {"file": path, "dtype": a.dtype.name, "shape": list(a.shape)}


def build(fixture, fixture_dir):
    rng = np.random.default_rng(SEED)
    cases = []
    for case in CASES:
        inp = make_inputs(case, rng)
        used = ["x", "scale", "offset"]
        if case["op"] == "FusedBatchNormV3" or case.get("inference"):
            used += ["mean", "variance"]
        inputs = {}
        for name in used:
            a = arr(inp[name])
            rel = f"inputs/{case['id']}/{name}.npy"
            common.save_npy(os.path.join(fixture_dir, rel), a)
            inputs[name] = array_ref(rel, a)
        # output names/dtypes from one dry run (the goldens phase rewrites the values)
        outs = run_case(case, inp)
        entry = {k: v for k, v in case.items() if k not in ("nhw",)}
        entry.update(
            {
                "U": "float32",
                "x_shape": x_shape(case),
                "channel_axis": channel_axis(case),
                "inputs": inputs,
                "outputs": {k: {"file": f"{case['id']}/{k}.npy", "dtype": v.dtype.name, "shape": list(v.shape)} for k, v in outs.items()},
            }
        )
        if case["op"] == "FusedBatchNormV3":
            entry.pop("inference", None)
        else:
            entry["axes"] = [i for i in range(len(x_shape(case))) if i != channel_axis(case)]
            for k in ("exponential_avg_factor", "is_training"):
                entry.pop(k, None)
        cases.append(entry)
    common.write_checkpointless_manifest(
        fixture_dir,
        fixture,
        "none (no checkpoint): eager tf.raw_ops.FusedBatchNormV3 / tf.nn.moments + tf.nn.batch_normalization",
        cases,
    )
    common.write_readme(
        fixture_dir,
        fixture,
        "Goldens of raw TF batch-norm ops, no checkpoint. Each case in `expected/manifest.json` `cases` "
        "names the op, its attributes, its input files and its output files.",
        [
            "FusedBatchNormV3 (eager `tf.raw_ops`): T in float32/float16/bfloat16 (U float32), NHWC/NCHW/NDHWC, "
            "C in {3, 13, 64}, is_training true/false, exponential_avg_factor 1.0 and 0.6, one R=1 case",
            "moments cases: `tf.nn.moments(x, axes, keepdims=True)` then `tf.nn.batch_normalization(x, mean, "
            "variance, offset, scale, epsilon)`; the `_infer` case feeds the given mean/variance instead",
            "inputs under `inputs/<case>/`, outputs under `goldens/eigen/<case>/` (TF_ENABLE_ONEDNN_OPTS=0) and "
            "`goldens/onednn/<case>/` (=1), one env.json per mode in `goldens/<mode>/`",
            "R = N*H*W = 30 for 4D cases (2x3x5), 32 for 5D (2x2x2x4), 1 for the `_r1` case, 8 for the 2D case",
            "bfloat16 arrays are stored as '<u2' bit patterns (the manifest says `bfloat16`)",
        ],
    )


def goldens(fixture, fixture_dir, onednn):
    import ml_dtypes

    manifest = common.read_json(os.path.join(fixture_dir, "expected", "manifest.json"))
    mode = "onednn" if onednn else "eigen"
    root = os.path.join(fixture_dir, "goldens", mode)
    for case in manifest["cases"]:
        inp = {}
        for name, ref in case["inputs"].items():
            a = np.load(os.path.join(fixture_dir, ref["file"]))
            if ref["dtype"] == "bfloat16":
                a = a.view(ml_dtypes.bfloat16)
            inp[name] = tf.constant(a)
        spec = dict(case)
        spec.setdefault("inference", False)
        outs = run_case(spec, inp)
        assert sorted(outs) == sorted(case["outputs"]), case["id"]
        for name, a in outs.items():
            ref = case["outputs"][name]
            assert a.dtype.name == ref["dtype"] and list(a.shape) == ref["shape"], (case["id"], name)
            common.save_npy(os.path.join(root, ref["file"]), a)
    common.write_json(os.path.join(root, "env.json"), common.golden_env("tf.raw_ops", None, onednn))
