#!/usr/bin/env python3
"""Regenerate the tfbn fixture corpus under testdata/ with real TensorFlow.

    .venv/bin/python scripts/gen_testdata.py [--only NAME ...] [--list]

Every fixture is rebuilt from scratch with fixed seeds: TF writes the
checkpoint / SavedModel, TF's own reader provides the expected variable bytes,
TF's own matching provides the checkpoint keys, and the goldens are outputs of
the layer's own API. See testdata/README.md for the layout and the manifest.

TensorFlow settings that must be fixed before TF is imported are handled by
running each group of fixtures in worker subprocesses of this same script:

  group    TF_USE_LEGACY_KERAS   fixtures
  tf1      1                     TF1 graph + Saver fixtures, format corners
  tfkeras  1                     tf_keras (Keras 2)
  keras3   unset                 Keras 3
  ops      unset                 raw-op goldens, no checkpoint
  ops_nn_half unset              tf.nn moments + batch_normalization in float16/bfloat16
  serving  1                     tf_keras SavedModel with a training-mode serving signature
  tfkeras_ghost 1                tf_keras ghost batches
  kfile_k3 unset                 Keras 3 .keras / .weights.h5 files (gen/kfile.py)
  kfile_k2 1                     tf_keras .h5 / weights .h5 files (gen/kfile.py)
  frozen   1                     frozen GraphDefs (TF2 convert_variables_to_constants_v2, TF1 graph_util)

Per group: one "build" worker (TF_ENABLE_ONEDNN_OPTS=0) writes checkpoints,
manifests and golden inputs; then one "goldens" worker per oneDNN setting
(0 -> goldens/<layer>/eigen, 1 -> goldens/<layer>/onednn) restores from the
written files and runs the layers. Fixtures are assembled in
testdata/.tfbn-tmp-<name> and swapped into place only when every worker of the
run succeeded.
"""

import argparse
import importlib
import os
import shutil
import subprocess
import sys
import time

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(SCRIPTS)
TESTDATA = os.path.join(ROOT, "testdata")

# fixture -> group, in generation order.
FIXTURES = {
    "tf1_trained": "tf1",
    "tf1_no_update_ops": "tf1",
    "tf1_v1_format": "tf1",
    "sharded": "tf1",
    "partitioned": "tf1",
    "slim_ema": "tf1",
    "multiblock": "tf1",
    "dtypes": "tf1",
    "tf1_handwritten": "tf1",
    "tfkeras_ckpt": "tfkeras",
    "tfkeras_savedmodel": "tfkeras",
    "keras3_functional": "keras3",
    "keras3_sequential": "keras3",
    "keras3_subclassed": "keras3",
    "keras3_saved_model": "keras3",
    "keras3_export": "keras3",
    "ops": "ops",
    "ops_nn_half": "ops_nn_half",
    "tfkeras_training_serving": "serving",
    "tfkeras_ghost": "tfkeras_ghost",
}
# Keras files (.keras, .weights.h5, Keras 2 .h5) and frozen GraphDefs
# (gen/kfile.py, gen/frozen.py); the kfile_k215_* ones come from
# scripts/gen_versions.py.
sys.path.insert(0, SCRIPTS)
from gen.kfile_fixtures import KFILE_FIXTURES  # noqa: E402 (plain Python, no TF)

FIXTURES.update(KFILE_FIXTURES)
FIXTURES["frozen_tf2"] = "frozen"
FIXTURES["frozen_tf1"] = "frozen"
GROUPS = {
    "tf1": {"module": "gen.tf1", "legacy_keras": True},
    "tfkeras": {"module": "gen.tfkeras", "legacy_keras": True},
    "keras3": {"module": "gen.keras3", "legacy_keras": False},
    "ops": {"module": "gen.ops", "legacy_keras": False},
    "ops_nn_half": {"module": "gen.ops_nn_half", "legacy_keras": False},
    "serving": {"module": "gen.serving", "legacy_keras": True},
    "tfkeras_ghost": {"module": "gen.tfkeras_ghost", "legacy_keras": True},
    "kfile_k3": {"module": "gen.kfile_k3", "legacy_keras": False},
    "kfile_k2": {"module": "gen.kfile_k2", "legacy_keras": True},
    "frozen": {"module": "gen.frozen", "legacy_keras": True},
}


def tmp_dir(fixture):
    return os.path.join(TESTDATA, ".tfbn-tmp-" + fixture)


def worker_env(group, onednn):
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["TF_ENABLE_ONEDNN_OPTS"] = str(onednn)
    env["PYTHONHASHSEED"] = "0"
    env["CUDA_VISIBLE_DEVICES"] = ""
    if GROUPS[group]["legacy_keras"]:
        env["TF_USE_LEGACY_KERAS"] = "1"
    else:
        env.pop("TF_USE_LEGACY_KERAS", None)
    return env


def run_worker(group, phase, onednn, fixtures, log_dir):
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", group, "--_phase", phase, "--_onednn", str(onednn)]
    cmd += fixtures
    label = f"{group}/{phase}" + (f"/{'onednn' if onednn else 'eigen'}" if phase == "goldens" else "")
    log = os.path.join(log_dir, label.replace("/", "-") + ".log")
    t0 = time.time()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, env=worker_env(group, onednn), stdout=subprocess.PIPE, stderr=f, text=True)
    for line in proc.stdout.splitlines():
        print(f"  [{label}] {line}")
    if proc.returncode != 0:
        with open(log) as f:
            tail = f.read()[-6000:]
        sys.stderr.write(f"gen_testdata: worker {label} failed (exit {proc.returncode}); stderr tail:\n{tail}\n")
        return False
    print(f"  [{label}] done in {time.time() - t0:.1f}s")
    return True


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", metavar="NAME", help="regenerate only these fixtures")
    ap.add_argument("--list", action="store_true", help="list fixture names and exit")
    ap.add_argument("--_worker", help=argparse.SUPPRESS)
    ap.add_argument("--_phase", choices=["build", "goldens"], help=argparse.SUPPRESS)
    ap.add_argument("--_onednn", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("fixtures", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args._worker:
        return worker(args._worker, args._phase, args._onednn, args.fixtures)
    if args.list:
        for name, group in FIXTURES.items():
            print(f"{name}\t{group}")
        return 0

    selected = list(FIXTURES) if not args.only else args.only
    unknown = [n for n in selected if n not in FIXTURES]
    if unknown:
        ap.error(f"unknown fixture(s): {', '.join(unknown)} (known: {', '.join(FIXTURES)})")
    selected = [n for n in FIXTURES if n in selected]

    t_start = time.time()
    os.makedirs(TESTDATA, exist_ok=True)
    log_dir = os.path.join(TESTDATA, ".tfbn-tmp-logs")
    shutil.rmtree(log_dir, ignore_errors=True)
    os.makedirs(log_dir)
    for name in selected:
        shutil.rmtree(tmp_dir(name), ignore_errors=True)

    ok = True
    for group in GROUPS:
        names = [n for n in selected if FIXTURES[n] == group]
        if not names:
            continue
        print(f"{group}: {' '.join(names)}")
        for phase, onednn in (("build", 0), ("goldens", 0), ("goldens", 1)):
            if not run_worker(group, phase, onednn, names, log_dir):
                ok = False
                break
        if not ok:
            break

    if ok:
        ok = sanity_check(selected)

    if not ok:
        for name in selected:
            shutil.rmtree(tmp_dir(name), ignore_errors=True)
        print(f"gen_testdata: FAILED; logs in {os.path.relpath(log_dir, ROOT)}; testdata/ left unchanged", file=sys.stderr)
        return 1

    for name in selected:
        final = os.path.join(TESTDATA, name)
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp_dir(name), final)
    shutil.rmtree(log_dir, ignore_errors=True)
    print(f"gen_testdata: wrote {len(selected)} fixture(s) in {time.time() - t_start:.1f}s")
    return 0


def sanity_check(selected):
    """numpy-only plausibility check of every generated layer golden (gen/sanity.py)."""
    sys.path.insert(0, SCRIPTS)
    from gen import sanity

    print("sanity: goldens vs a float64 numpy batch norm from the manifest's bytes")
    for name in selected:
        try:
            if name == "ops":
                report = sanity.check_ops(tmp_dir(name))
            elif name.startswith(("kfile_", "frozen_")):
                report = importlib.import_module("gen.kfile_h5").check_fixture(tmp_dir(name))
            elif name == "ops_nn_half":
                report = importlib.import_module("gen.ops_nn_half").sanity(tmp_dir(name))
            else:
                report = sanity.check_fixture(tmp_dir(name))
        except AssertionError as e:
            print(f"gen_testdata: sanity check of {name} failed: {e}", file=sys.stderr)
            return False
        for r in report:
            diff = r.get("eigen_vs_onednn_max_abs")
            print(
                f"  {name}/{r['layer']}: max rel err {r['max_rel_err_vs_f64']:.1e}"
                + (f", eigen vs onednn max |diff| {diff:.1e}" if diff is not None else "")
                + (" (eigen == onednn bitwise)" if r["bitwise_equal"] else "")
            )
    return True


def worker(group, phase, onednn, fixtures):
    sys.path.insert(0, SCRIPTS)
    assert os.environ.get("TF_ENABLE_ONEDNN_OPTS") == str(onednn)
    mod = importlib.import_module(GROUPS[group]["module"])
    if hasattr(mod, "init"):
        mod.init(phase)
    for name in fixtures:
        t0 = time.time()
        fixture_dir = tmp_dir(name)
        if phase == "build":
            shutil.rmtree(fixture_dir, ignore_errors=True)
            os.makedirs(fixture_dir)
            mod.build(name, fixture_dir)
        else:
            mod.goldens(name, fixture_dir, onednn)
        print(f"{phase} {name}: {time.time() - t0:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BrokenPipeError:  # e.g. `--list | head`
        sys.stderr.close()
        sys.exit(0)
