#!/usr/bin/env python3
"""Check tfbn's safetensors exports the way a Python consumer reads them.

    .venv/bin/python scripts/check_safetensors.py \
        --check testdata/tf1_trained/expected/manifest.json OUT.safetensors pytorch keep \
        [--check MANIFEST FILE PRESET DTYPE ...]

Each file is read with `safetensors.numpy.load_file` (and its metadata with
`safetensors.safe_open`), never with tfbn's code. For every batch-norm layer
the fixture's manifest lists, the file must hold the tensors the preset names
(tf: `<layer>/gamma` ..., pytorch and candle: `<module>.weight`, `.bias`,
`.running_mean`, `.running_var`, pytorch also `.num_batches_tracked`; burn:
`.gamma`, `.beta`, `.running_mean`, `.running_var`), with values equal, bit
for bit, to the bytes TensorFlow's own reader returned (`expected/
variables.bin`), cast to DTYPE (`keep`, `f32` or `f16`) by NumPy's
round-to-nearest-even `astype`. Missing gamma/beta must be ones/zeros where
the preset needs them and absent otherwise. No other tensor may be present.
The metadata must carry the preset's `format`, the module list and each
layer's conventions.

Exit status 0 when every check passes, 1 otherwise (each failure printed).
Needs numpy and safetensors only.
"""

import argparse
import json
import os
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

LEAVES = {
    "tf": {"gamma": "gamma", "beta": "beta", "moving_mean": "moving_mean", "moving_variance": "moving_variance",
           "moving_stddev": "moving_stddev", "renorm_mean": "renorm_mean", "renorm_stddev": "renorm_stddev"},
    "pytorch": {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"},
    "candle": {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"},
    "burn": {"gamma": "gamma", "beta": "beta", "moving_mean": "running_mean", "moving_variance": "running_var"},
}
FORMAT = {"tf": "tf", "pytorch": "pt", "candle": "pt", "burn": "safetensors"}
NP_DTYPES = {"float32": "<f4", "float64": "<f8", "float16": "<f2", "int64": "<i8", "int32": "<i4"}
CAST = {"keep": None, "f32": np.float32, "f16": np.float16}


def check_one(manifest_path, path, preset, dtype, problems):
    def fail(msg):
        problems.append(f"{path}: {msg}")

    manifest = json.load(open(manifest_path))
    blob = open(os.path.join(os.path.dirname(manifest_path), "variables.bin"), "rb").read()
    by_key = {v["key"]: v for v in manifest["variables"]}
    sep = "/" if preset == "tf" else "."

    tensors = load_file(path)
    with safe_open(path, framework="np") as f:
        meta = f.metadata() or {}

    if meta.get("format") != FORMAT[preset]:
        fail(f"format is {meta.get('format')!r}, expected {FORMAT[preset]!r}")
    if meta.get("tfbn.preset") != preset:
        fail(f"tfbn.preset is {meta.get('tfbn.preset')!r}")
    modules = json.loads(meta.get("tfbn.layers", "[]"))
    if len(modules) != len(manifest["layers"]):
        fail(f"{len(modules)} layers in tfbn.layers, the manifest has {len(manifest['layers'])}")

    # The module of each manifest layer: the one whose moving-mean tensor
    # declares the manifest's moving_mean key.
    mean_leaf = LEAVES[preset]["moving_mean"]
    module_of_key = {}
    for m in modules:
        key = meta.get(f"tfbn.key.{m}{sep}{mean_leaf}")
        if key is not None:
            module_of_key[key] = m

    expected_names = set()
    checked = 0
    for layer in manifest["layers"]:
        mean_key = layer["variables"]["moving_mean"]["key"]
        module = module_of_key.get(mean_key)
        if module is None:
            fail(f"layer {layer['name']}: no module declares {mean_key}")
            continue
        # A layer is named after the writer's layer, possibly inside its
        # model's name scope (graph nodes of a frozen Keras model:
        # `model/bn`), or, for one found through its variables, after their
        # common scope (`hand/scale`, `hand/offset` -> `hand`).
        keys = [v["key"] for v in layer["variables"].values() if v]
        parts = [k.split("/")[:-1] for k in keys]
        common = []
        for comps in zip(*parts):
            if len(set(comps)) != 1:
                break
            common.append(comps[0])
        dot = (lambda n: n) if preset == "tf" else (lambda n: n.replace("/", "."))
        name = layer["name"]
        allowed = module == dot(name) or module.endswith(dot("/" + name)) \
            or (common and module == dot("/".join(common)))
        if not allowed and meta.get(f"tfbn.layer.{module}.object_path") is None:
            fail(f"layer {name}: module {module!r}, expected {dot(name)!r} (or inside a model "
                 f"scope, or {dot('/'.join(common))!r})")
        pre = f"tfbn.layer.{module}."
        for field in ("epsilon", "momentum_tf", "momentum_torch", "axis", "api", "moving_variance",
                      "epsilon_source", "momentum_source", "moving_variance_source"):
            if pre + field not in meta:
                fail(f"{module}: metadata {pre + field} missing")
        try:
            eps = float(meta[pre + "epsilon"])
            m_tf = float(meta[pre + "momentum_tf"])
            m_torch = float(meta[pre + "momentum_torch"])
            if not eps >= 0 or abs((1.0 - m_tf) - m_torch) > 1e-12:
                fail(f"{module}: epsilon {eps}, momentum_tf {m_tf}, momentum_torch {m_torch} inconsistent")
        except (KeyError, ValueError) as e:
            fail(f"{module}: unreadable conventions: {e}")
        if meta.get(pre + "moving_variance") not in ("biased", "bessel"):
            fail(f"{module}: moving_variance {meta.get(pre + 'moving_variance')!r}")

        channels = layer["channels"]
        for role, leaf in LEAVES[preset].items():
            name = f"{module}{sep}{leaf}"
            var = layer["variables"].get(role)
            if var is None:
                if preset != "tf" and role in ("gamma", "beta"):
                    fill = 1.0 if role == "gamma" else 0.0
                    expected_names.add(name)
                    got = tensors.get(name)
                    if got is None or got.shape != (channels,) or not np.all(got == fill):
                        fail(f"{name}: expected {channels} x {fill} for the missing {role}")
                continue
            expected_names.add(name)
            got = tensors.get(name)
            if got is None:
                fail(f"{name}: missing")
                continue
            info = by_key[var["key"]]
            want = np.frombuffer(blob[info["offset"]:info["offset"] + info["nbytes"]],
                                 dtype=NP_DTYPES[info["dtype"]])
            shape = tuple(info["shape"]) if preset == "tf" else (channels,)
            want = want.reshape(shape)
            if CAST[dtype] is not None:
                want = want.astype(CAST[dtype])
            if got.dtype != want.dtype or got.shape != want.shape:
                fail(f"{name}: {got.dtype}{got.shape}, expected {want.dtype}{want.shape}")
            elif got.tobytes() != want.tobytes():
                fail(f"{name}: values differ from TensorFlow's ({var['key']})")
            if meta.get(f"tfbn.key.{name}") != var["key"]:
                fail(f"{name}: tfbn.key is {meta.get('tfbn.key.' + name)!r}, expected {var['key']!r}")
            checked += 1
        if preset == "pytorch":
            name = f"{module}.num_batches_tracked"
            expected_names.add(name)
            got = tensors.get(name)
            if got is None or got.dtype != np.int64 or got.shape != () or int(got) != 0:
                fail(f"{name}: expected a 0-d int64 zero")
    extra = set(tensors) - expected_names
    if extra:
        fail(f"unexpected tensors: {sorted(extra)}")
    return checked


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", nargs=4, action="append", required=True,
                    metavar=("MANIFEST", "FILE", "PRESET", "DTYPE"))
    args = ap.parse_args(argv)
    problems = []
    tensors = 0
    for manifest, path, preset, dtype in args.check:
        if preset not in LEAVES or dtype not in CAST:
            problems.append(f"{path}: unknown preset {preset!r} or dtype {dtype!r}")
            continue
        try:
            tensors += check_one(manifest, path, preset, dtype, problems)
        except Exception as e:  # a file the reader rejects is a failure, not a crash
            problems.append(f"{path}: {type(e).__name__}: {e}")
    for p in problems:
        print("FAIL", p)
    print(f"checked {len(args.check)} files, {tensors} tensors, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
