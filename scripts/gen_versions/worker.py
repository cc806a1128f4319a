"""Worker of scripts/gen_versions.py, run by the Python of an old TensorFlow's
venv (never by the project venv):

    <venv>/bin/python scripts/gen_versions/worker.py --group k2|k3 \
        --phase build|goldens --onednn 0|1 --staging DIR FIXTURE...

TF_USE_LEGACY_KERAS and TF_ENABLE_ONEDNN_OPTS are set by the driver before
this process imports TensorFlow. Each fixture is written to DIR/<fixture>.
"""

import argparse
import importlib
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.dirname(HERE)


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--group", required=True, choices=["k2", "k3", "kfile_old"])
    ap.add_argument("--phase", required=True, choices=["build", "goldens"])
    ap.add_argument("--onednn", type=int, required=True)
    ap.add_argument("--staging", required=True)
    ap.add_argument("fixtures", nargs="+")
    args = ap.parse_args(argv)
    assert os.environ.get("TF_ENABLE_ONEDNN_OPTS") == str(args.onednn)
    # scripts/ for gen.common (the main generator's helpers), this folder for
    # spec / k2 / k3.
    sys.path[:0] = [SCRIPTS, HERE]
    import spec

    mod = importlib.import_module(args.group)
    table = spec.fixtures()
    for name in args.fixtures:
        version, group, kind = table[name]
        assert group == args.group, (name, group, args.group)
        import tensorflow as tf

        assert tf.__version__ == version, f"{name}: wants TF {version}, this venv has {tf.__version__}"
        t0 = time.time()
        fixture_dir = os.path.join(args.staging, name)
        if args.phase == "build":
            os.makedirs(fixture_dir)
            mod.build(name, kind, fixture_dir)
        else:
            mod.goldens(name, kind, fixture_dir, args.onednn)
        print(f"{args.phase} {name}: {time.time() - t0:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
