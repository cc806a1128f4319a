#!/usr/bin/env python3
"""Write the testdata/tf2_<minor>_<kind> fixtures with older TensorFlow releases.

    scripts/setup-tf-versions.sh                       # once: one venv per release
    .venv/bin/python scripts/gen_versions.py           # every fixture
    .venv/bin/python scripts/gen_versions.py --only tf2_12_ckpt tf2_16_export
    .venv/bin/python scripts/gen_versions.py --list

This driver imports no TensorFlow. For each TF release (spec.VERSIONS in
scripts/gen_versions/spec.py) it runs scripts/gen_versions/worker.py with the
Python of that release's venv
(${TFBN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tfbn}/venvs/tf-<ver>/), once per
group (k2: Keras 2, TF_USE_LEGACY_KERAS=1; k3: Keras 3) and phase:

  build    (TF_ENABLE_ONEDNN_OPTS=0) trains the model, writes the checkpoint /
           SavedModel, the manifest (TF's own reader and key matching of that
           release) and the golden inputs;
  goldens  once with TF_ENABLE_ONEDNN_OPTS=0 (-> eigen/) and once with 1
           (-> onednn/): restores the written files and runs each layer's own
           API in that release.

Manifest and golden layout are those of scripts/gen_testdata.py
(testdata/README.md); the workers use its scripts/gen/common.py helpers.
Fixtures are assembled in a staging folder outside testdata/, checked with
scripts/gen/sanity.py and only then swapped into testdata/.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(SCRIPTS)
TESTDATA = os.path.join(ROOT, "testdata")
WORKER = os.path.join(SCRIPTS, "gen_versions", "worker.py")

sys.path.insert(0, os.path.join(SCRIPTS, "gen_versions"))
import spec  # noqa: E402


def cache_dir():
    c = os.environ.get("TFBN_CACHE")
    if c:
        return c
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "tfbn")


def venv_python(version):
    return os.path.join(cache_dir(), "venvs", f"tf-{version}", "bin", "python")


def worker_env(version, group, onednn):
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["TF_ENABLE_ONEDNN_OPTS"] = str(onednn)
    env["PYTHONHASHSEED"] = "0"
    env["CUDA_VISIBLE_DEVICES"] = ""
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    # TF 2.15's tf.keras already honours TF_USE_LEGACY_KERAS (and then wants
    # tf_keras); it is set only where Keras 3 is the default.
    if spec.GROUPS[group]["legacy_keras"] and spec.keras3_era(version):
        env["TF_USE_LEGACY_KERAS"] = "1"
    else:
        env.pop("TF_USE_LEGACY_KERAS", None)
    return env


def run_worker(version, group, phase, onednn, names, staging, log_dir):
    cmd = [venv_python(version), WORKER, "--group", group, "--phase", phase, "--onednn", str(onednn)]
    cmd += ["--staging", staging] + names
    label = f"tf-{version}/{group}/{phase}" + (f"/{'onednn' if onednn else 'eigen'}" if phase == "goldens" else "")
    log = os.path.join(log_dir, label.replace("/", "-") + ".log")
    t0 = time.time()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, env=worker_env(version, group, onednn), stdout=subprocess.PIPE, stderr=f, text=True, cwd=ROOT)
    for line in proc.stdout.splitlines():
        print(f"  [{label}] {line}")
    if proc.returncode != 0:
        with open(log) as f:
            tail = f.read()[-6000:]
        sys.stderr.write(f"gen_versions: worker {label} failed (exit {proc.returncode}); stderr tail:\n{tail}\n")
        return False
    print(f"  [{label}] done in {time.time() - t0:.1f}s", flush=True)
    return True


def sanity_check(staging, names):
    sys.path.insert(0, SCRIPTS)
    from gen import sanity

    print("sanity: goldens vs a float64 numpy batch norm from the manifest's bytes")
    for name in names:
        try:
            if name.startswith("kfile_"):
                from gen import kfile_h5

                report = kfile_h5.check_fixture(os.path.join(staging, name))
            else:
                report = sanity.check_fixture(os.path.join(staging, name))
        except AssertionError as e:
            print(f"gen_versions: sanity check of {name} failed: {e}", file=sys.stderr)
            return False
        for r in report:
            diff = r.get("eigen_vs_onednn_max_abs")
            print(
                f"  {name}/{r['layer']}: max rel err {r['max_rel_err_vs_f64']:.1e}"
                + (f", eigen vs onednn max |diff| {diff:.1e}" if diff is not None else "")
                + (" (eigen == onednn bitwise)" if r["bitwise_equal"] else "")
            )
    return True


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", metavar="NAME", help="regenerate only these fixtures")
    ap.add_argument("--list", action="store_true", help="list fixture names (fixture, TF version, group, kind)")
    ap.add_argument("--keep-staging", action="store_true", help="leave the staging folder in place on failure")
    args = ap.parse_args(argv)

    table = spec.fixtures()
    if args.list:
        for name, (version, group, kind) in table.items():
            print(f"{name}\t{version}\t{group}\t{kind}")
        return 0
    selected = list(table) if not args.only else args.only
    unknown = [n for n in selected if n not in table]
    if unknown:
        ap.error(f"unknown fixture(s): {', '.join(unknown)} (known: {', '.join(table)})")
    selected = [n for n in table if n in selected]

    missing = sorted({table[n][0] for n in selected if not os.access(venv_python(table[n][0]), os.X_OK)})
    if missing:
        print(
            f"gen_versions: no venv for TF {', '.join(missing)} under {cache_dir()}/venvs; "
            f"run scripts/setup-tf-versions.sh {' '.join(missing)}",
            file=sys.stderr,
        )
        return 2

    t_start = time.time()
    staging = tempfile.mkdtemp(prefix="tfbn-gen-versions-")
    log_dir = os.path.join(staging, "logs")
    os.makedirs(log_dir)
    ok = True
    batches = []  # (version, group, names)
    for name in selected:
        version, group, _ = table[name]
        if batches and batches[-1][:2] == (version, group):
            batches[-1][2].append(name)
        else:
            batches.append((version, group, [name]))
    for version, group, names in batches:
        print(f"tf-{version} {group}: {' '.join(names)}", flush=True)
        for phase, onednn in (("build", 0), ("goldens", 0), ("goldens", 1)):
            if not run_worker(version, group, phase, onednn, names, staging, log_dir):
                ok = False
                break
        if not ok:
            break
    if ok:
        ok = sanity_check(staging, selected)
    if not ok:
        if args.keep_staging:
            print(f"gen_versions: FAILED; staging and logs kept in {staging}; testdata/ left unchanged", file=sys.stderr)
        else:
            shutil.rmtree(staging, ignore_errors=True)
            print("gen_versions: FAILED; testdata/ left unchanged", file=sys.stderr)
        return 1

    for name in selected:
        final = os.path.join(TESTDATA, name)
        incoming = os.path.join(TESTDATA, ".tfbn-tmp-" + name)
        shutil.rmtree(incoming, ignore_errors=True)
        shutil.copytree(os.path.join(staging, name), incoming)
        shutil.rmtree(final, ignore_errors=True)
        os.rename(incoming, final)
    shutil.rmtree(staging, ignore_errors=True)
    print(f"gen_versions: wrote {len(selected)} fixture(s) in {time.time() - t_start:.1f}s")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(0)
