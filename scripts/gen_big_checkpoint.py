#!/usr/bin/env python3
"""Write a large V2 checkpoint for the read benchmarks.

    .venv/bin/python scripts/gen_big_checkpoint.py [OUT_PREFIX] [--gib 1.0] [--variables 16]

Writes OUT_PREFIX.index and OUT_PREFIX.data-00000-of-00001 (default prefix
bench-data/big/ckpt; bench-data/ is git-ignored) with `tf.train.Checkpoint`:
N float32 variables of equal size (seeded random values), plus a BN-like
quadruple so tools that look for layers find one. Keys are
`v00/.ATTRIBUTES/VARIABLE_VALUE` ... and `bn/{gamma,beta,moving_mean,
moving_variance}/.ATTRIBUTES/VARIABLE_VALUE`. The actual prefix written is
printed (tf.train.Checkpoint.write writes exactly OUT_PREFIX, no "-1").
"""

import argparse
import os
import sys
import time


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("prefix", nargs="?", default=None, help="output prefix (default bench-data/big/ckpt)")
    ap.add_argument("--gib", type=float, default=1.0, help="total float32 payload in GiB (default 1.0)")
    ap.add_argument("--variables", type=int, default=16, help="number of big variables (default 16, at least 16)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.variables < 16:
        ap.error("--variables must be at least 16")
    if args.gib <= 0:
        ap.error("--gib must be positive")

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    prefix = args.prefix or os.path.join(root, "bench-data", "big", "ckpt")
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    total = int(args.gib * (1 << 30)) // 4
    per = total // args.variables
    cols = 1024
    rows = max(1, per // cols)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    tracked = {}
    for i in range(args.variables):
        arr = rng.standard_normal((rows, cols), dtype=np.float32)
        tracked["v%02d" % i] = tf.Variable(arr, name="v%02d" % i)
        del arr
    c = 256
    bn = tf.Module()
    bn.gamma = tf.Variable(rng.uniform(0.5, 1.5, c).astype(np.float32))
    bn.beta = tf.Variable(rng.normal(0, 0.1, c).astype(np.float32))
    bn.moving_mean = tf.Variable(rng.normal(0, 1, c).astype(np.float32))
    bn.moving_variance = tf.Variable(rng.uniform(0.5, 2.0, c).astype(np.float32))
    tracked["bn"] = bn
    path = tf.train.Checkpoint(**tracked).write(prefix)
    size = sum(
        os.path.getsize(os.path.join(os.path.dirname(path), f))
        for f in os.listdir(os.path.dirname(path) or ".")
        if f.startswith(os.path.basename(path) + ".")
    )
    print(
        f"wrote {path} ({args.variables} x [{rows}, {cols}] float32 + BN[{c}], {size / (1 << 30):.3f} GiB on disk) "
        f"in {time.time() - t0:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
